//! Validation of custom field declarations: the field types and what each type needs.

use std::collections::BTreeSet;

use super::raw;
use super::source::Source;
use super::ConfigError;
use crate::model::{CustomFieldType, EntityKind};

impl Source<'_> {
    pub(super) fn field_type(&self, d: &raw::CustomField) -> Result<CustomFieldType, ConfigError> {
        let no_values = |what: &str| -> Result<(), ConfigError> {
            if let Some(v) = &d.values {
                return Err(self.error(v.span(), format!("\"values\" is only for enum fields, not {what}")));
            }
            Ok(())
        };
        let no_target = |what: &str| -> Result<(), ConfigError> {
            if let Some(t) = &d.target {
                return Err(self.error(t.span(), format!("\"target\" is only for reference fields, not {what}")));
            }
            Ok(())
        };
        let ty = d.ty.get_ref().as_str();
        if let (Some(m), false) = (&d.multiple, ty == "enum") {
            return Err(self.error(m.span(), format!("\"multiple\" is only for enum fields, not {ty}")));
        }
        match ty {
            "enum" => {
                no_target(ty)?;
                let Some(values) = &d.values else {
                    return Err(self.error(d.ty.span(), "an enum field needs \"values\""));
                };
                if values.get_ref().is_empty() {
                    return Err(self.error(values.span(), "an enum field needs at least one value"));
                }
                let mut seen = BTreeSet::new();
                for v in values.get_ref() {
                    if v.get_ref().trim().is_empty() || !seen.insert(v.get_ref().clone()) {
                        return Err(self.error(v.span(), format!("empty or duplicate enum value \"{}\"", v.get_ref())));
                    }
                }
                Ok(CustomFieldType::Enum {
                    values: values.get_ref().iter().map(|v| v.get_ref().clone()).collect(),
                    multiple: d.multiple.as_ref().is_some_and(|m| *m.get_ref()),
                })
            }
            "reference" => {
                no_values(ty)?;
                let Some(t) = &d.target else {
                    return Err(self.error(d.ty.span(), "a reference field needs \"target\" (an entity type)"));
                };
                let target = EntityKind::from_name(t.get_ref())
                    .ok_or_else(|| self.error(t.span(), format!("\"{}\" is not an entity type", t.get_ref())))?;
                Ok(CustomFieldType::Reference { target })
            }
            "string" | "number" | "money" | "date" | "bool" => {
                no_values(ty)?;
                no_target(ty)?;
                Ok(match ty {
                    "string" => CustomFieldType::String,
                    "number" => CustomFieldType::Number,
                    "money" => CustomFieldType::Money,
                    "date" => CustomFieldType::Date,
                    _ => CustomFieldType::Bool,
                })
            }
            other => Err(self.error(
                d.ty.span(),
                format!("unknown custom field type \"{other}\" (string, number, money, date, bool, enum, reference)"),
            )),
        }
    }
}
