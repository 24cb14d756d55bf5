//! Custom fields: typed extra values a consultant declares per entity type in config.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{EntityKind, FieldError, Ref};
use crate::id::RawId;
use crate::values::Money;

/// The custom values of one entity, by field name.
pub type CustomFields = BTreeMap<String, CustomValue>;

/// One custom value. Stored and shown tagged with its type (`{"date": "2026-03-01"}`), so a
/// value keeps its meaning even if the field's declaration changes later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomValue {
    String(String),
    Number(Decimal),
    Money(Money),
    Date(NaiveDate),
    Bool(bool),
    Enum(String),
    Ref(RawId),
}

impl CustomValue {
    /// The type name as config spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            CustomValue::String(_) => "string",
            CustomValue::Number(_) => "number",
            CustomValue::Money(_) => "money",
            CustomValue::Date(_) => "date",
            CustomValue::Bool(_) => "bool",
            CustomValue::Enum(_) => "enum",
            CustomValue::Ref(_) => "reference",
        }
    }
}

/// The type of a declared custom field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CustomFieldType {
    String,
    Number,
    Money,
    Date,
    Bool,
    /// One of the listed values.
    Enum {
        values: Vec<String>,
    },
    /// The id of an entity of the given kind.
    Reference {
        target: EntityKind,
    },
}

impl CustomFieldType {
    /// The type name as config spells it.
    pub fn name(&self) -> &'static str {
        match self {
            CustomFieldType::String => "string",
            CustomFieldType::Number => "number",
            CustomFieldType::Money => "money",
            CustomFieldType::Date => "date",
            CustomFieldType::Bool => "bool",
            CustomFieldType::Enum { .. } => "enum",
            CustomFieldType::Reference { .. } => "reference",
        }
    }
}

/// A custom field declared in config for one entity type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomFieldDef {
    /// The field name (`[a-z][a-z0-9_]*`).
    pub name: String,
    /// A label to show.
    pub label: String,
    /// Its type.
    #[serde(flatten)]
    pub ty: CustomFieldType,
    /// Whether every entity of the type must have a value.
    pub required: bool,
}

/// Checks custom values against the declarations for `kind`; collects reference fields.
pub(crate) fn check(
    kind: EntityKind,
    values: &CustomFields,
    defs: &[CustomFieldDef],
    refs: Option<&mut Vec<Ref>>,
) -> Result<(), FieldError> {
    for (name, value) in values {
        let field = format!("custom.{name}");
        let Some(def) = defs.iter().find(|d| &d.name == name) else {
            let known: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            let hint = if known.is_empty() {
                format!("no custom fields are declared for {kind}")
            } else {
                format!("declared: {}", known.join(", "))
            };
            return Err(FieldError::new(kind, field, format!("is not a declared custom field ({hint})")));
        };
        let ok = match (&def.ty, value) {
            (CustomFieldType::String, CustomValue::String(s)) => {
                super::rules::optional_text(kind, &field, s, 10_000)?;
                if def.required && s.trim().is_empty() {
                    return Err(FieldError::new(kind, field, "is a required custom field and must not be empty"));
                }
                true
            }
            (CustomFieldType::Money, CustomValue::Money(m)) => {
                super::rules::money(kind, &field, m)?;
                true
            }
            (CustomFieldType::Date, CustomValue::Date(d)) => {
                crate::values::date::check(*d).map_err(|m| FieldError::new(kind, &field, m))?;
                true
            }
            (CustomFieldType::Number, CustomValue::Number(_))
            | (CustomFieldType::Bool, CustomValue::Bool(_))
            | (CustomFieldType::Reference { .. }, CustomValue::Ref(_)) => true,
            (CustomFieldType::Enum { values }, CustomValue::Enum(v)) => {
                if !values.contains(v) {
                    return Err(FieldError::new(
                        kind,
                        field,
                        format!("\"{v}\" is not one of the allowed values ({})", values.join(", ")),
                    ));
                }
                true
            }
            _ => false,
        };
        if !ok {
            return Err(FieldError::new(
                kind,
                field,
                format!("expected a {} value, got a {} value", def.ty.name(), value.type_name()),
            ));
        }
    }
    for def in defs.iter().filter(|d| d.required) {
        if !values.contains_key(&def.name) {
            return Err(FieldError::new(kind, format!("custom.{}", def.name), "is a required custom field"));
        }
    }
    if let Some(refs) = refs {
        for def in defs {
            if let (CustomFieldType::Reference { target }, Some(CustomValue::Ref(id))) =
                (&def.ty, values.get(&def.name))
            {
                refs.push(Ref { field: format!("custom.{}", def.name), kind: *target, id: *id, must: None });
            }
        }
    }
    Ok(())
}
