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
/// value keeps its meaning even if the field's declaration changes later. A multi-valued enum
/// field (`multiple = true`) holds an `enum_set`: distinct declared values, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomValue {
    String(String),
    Number(Decimal),
    Money(Money),
    Date(#[serde(deserialize_with = "crate::values::date::input::date")] NaiveDate),
    Bool(bool),
    Enum(String),
    Ref(RawId),
    /// The values of an enum field declared with `multiple = true` (schema 6 and later).
    EnumSet(Vec<String>),
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
            CustomValue::EnumSet(_) => "enum_set",
        }
    }

    /// Whether the value matches `wanted` as a list filter does: equal, or for a
    /// multi-valued field, holding it.
    pub fn holds(&self, wanted: &CustomValue) -> bool {
        match (self, wanted) {
            (CustomValue::EnumSet(set), CustomValue::Enum(w)) => set.contains(w),
            (v, w) => v == w,
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
    /// One of the listed values; with `multiple`, a set of them.
    Enum {
        values: Vec<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        multiple: bool,
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

    /// Whether the field holds several values (an enum with `multiple = true`).
    pub fn is_multiple(&self) -> bool {
        matches!(self, CustomFieldType::Enum { multiple: true, .. })
    }

    /// What a value of the field is, in words for messages: `enum`, `enum_set (multiple)`.
    fn describe(&self) -> &'static str {
        if self.is_multiple() {
            "enum_set (a list of the declared values: the field has multiple = true)"
        } else {
            self.name()
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

impl CustomFieldDef {
    /// The value a list filter `custom.NAME=TEXT` on field `def` asks for: the text read as the
    /// field's type (an enum value must be declared); money fields are not filtered on.
    pub fn filter_value(&self, text: &str) -> Result<CustomValue, String> {
        Ok(match &self.ty {
            CustomFieldType::String => CustomValue::String(text.to_string()),
            CustomFieldType::Number => {
                CustomValue::Number(text.parse().map_err(|_| format!("\"{text}\" is not a number like 12.5"))?)
            }
            CustomFieldType::Date => CustomValue::Date(crate::values::date::parse(text)?),
            CustomFieldType::Bool => match text {
                "true" => CustomValue::Bool(true),
                "false" => CustomValue::Bool(false),
                _ => return Err(format!("\"{text}\" is not true or false")),
            },
            CustomFieldType::Enum { values, .. } => {
                if !values.iter().any(|v| v == text) {
                    return Err(format!("\"{text}\" is not one of the allowed values ({})", values.join(", ")));
                }
                CustomValue::Enum(text.to_string())
            }
            CustomFieldType::Reference { .. } => CustomValue::Ref(text.parse().map_err(|e: crate::id::IdError| e.0)?),
            CustomFieldType::Money => return Err("is a money field; lists are not filtered by money".into()),
        })
    }
}

/// Checks the values of a multi-valued enum field: each declared, none twice (a set is refused
/// rather than folded, so what is stored is what was sent), not empty when required.
fn check_set(
    kind: EntityKind,
    field: &str,
    set: &[String],
    values: &[String],
    required: bool,
) -> Result<(), FieldError> {
    for (i, v) in set.iter().enumerate() {
        if !values.contains(v) {
            return Err(FieldError::new(
                kind,
                field,
                format!("\"{v}\" is not one of the allowed values ({})", values.join(", ")),
            ));
        }
        if set[..i].contains(v) {
            return Err(FieldError::new(kind, field, format!("lists \"{v}\" twice; each value may appear once")));
        }
    }
    if required && set.is_empty() {
        return Err(FieldError::new(kind, field, "is a required custom field and must hold at least one value"));
    }
    Ok(())
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
            (CustomFieldType::Enum { values, multiple: false }, CustomValue::Enum(v)) => {
                if !values.contains(v) {
                    return Err(FieldError::new(
                        kind,
                        field,
                        format!("\"{v}\" is not one of the allowed values ({})", values.join(", ")),
                    ));
                }
                true
            }
            (CustomFieldType::Enum { values, multiple: true }, CustomValue::EnumSet(set)) => {
                check_set(kind, &field, set, values, def.required)?;
                true
            }
            _ => false,
        };
        if !ok {
            return Err(FieldError::new(
                kind,
                field,
                format!("expected a {} value, got a {} value", def.ty.describe(), value.type_name()),
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
