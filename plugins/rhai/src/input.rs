//! A hook's input written as contract JSON (version 1, docs/hooks.md) read into the same
//! `ctx` the engine hands a script: `crmkit script run --input ctx.json` tries a function on
//! exactly what it will see. Input that is not the contract is refused, naming the field.

use std::fmt;
use std::sync::Arc;

use crmkit_core::config::Settings;
use crmkit_core::hooks::wire::{
    ContactV1, CounterpartyV1, DealV1, DocumentV1, FactorV1, InputV1, InteractionV1, PartnerV1, ScoreV1, SubjectV1,
    TaskV1, VERSION,
};
use crmkit_core::model::score;
use crmkit_core::model::{CustomFieldType, CustomFields, CustomValue, Deal, DealScore, EntityKind, ScoreFactor};
use crmkit_core::time::Timestamp;
use crmkit_core::values::{Currency, Money};
use rhai::Dynamic;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Input that is not version 1 of the hook contract: where (a path such as
/// `after.amount`; empty for the whole input) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for InputError {}

fn at(path: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError { path: path.into(), message: message.into() }
}

/// `value` read as `T`; an error names the path below `prefix` where it went wrong.
fn read<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix, inner.as_str()) {
            (p, ".") => p.to_string(),
            ("", i) => i.to_string(),
            (p, i) => format!("{p}.{i}"),
        };
        at(path, e.into_inner().to_string())
    })
}

/// The `ctx` a script function is called with for the hook input `text` (contract JSON,
/// `"v": 1`), read against the installation's `settings` (a deal's custom fields take their
/// declared types): the same typed values, with the same getters, as the engine's call.
/// An input written without `now` (added to version 1 later) is read as if it said `now`.
pub fn context_from_json(text: &str, settings: &Settings, now: Timestamp) -> Result<Dynamic, InputError> {
    let json: Value = serde_json::from_str(text).map_err(|e| at("", format!("not JSON: {e}")))?;
    let Value::Object(mut fields) = json else {
        return Err(at("", "the input is a JSON object of the hook contract (docs/hooks.md, \"The input\")"));
    };
    match fields.get("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION.into()) => {}
        Some(other) => {
            return Err(at("v", format!("this program speaks version {VERSION} of the contract, not {other}")))
        }
        None => return Err(at("v", format!("missing: the contract's version ({VERSION})"))),
    }
    fields.entry("now").or_insert_with(|| Value::String(now.to_string()));
    // The entity decides what `before` and `after` are, so they are read after it.
    let before = fields.insert("before".into(), Value::Null).unwrap_or(Value::Null);
    let after = fields.insert("after".into(), Value::Null).unwrap_or(Value::Null);
    let input: InputV1 = read("", Value::Object(fields))?;
    let before = subject("before", input.entity, before, settings)?;
    let after = subject("after", input.entity, after, settings)?;
    crate::api::wire_context(&input, before, after).map_err(|e| at("", e))
}

/// `before` or `after` as the script sees it: a deal as the typed deal, anything else as the
/// object map of its contract form.
fn subject(path: &str, entity: EntityKind, value: Value, settings: &Settings) -> Result<Dynamic, InputError> {
    if value.is_null() {
        return Ok(Dynamic::UNIT);
    }
    let wire = match entity {
        EntityKind::Deal => return deal(path, read(path, value)?, settings).map(|d| Dynamic::from(Arc::new(d))),
        EntityKind::Task => SubjectV1::Task(read::<TaskV1>(path, value)?),
        EntityKind::Interaction => SubjectV1::Interaction(read::<InteractionV1>(path, value)?),
        EntityKind::Partner => SubjectV1::Partner(read::<PartnerV1>(path, value)?),
        EntityKind::Counterparty => SubjectV1::Counterparty(read::<CounterpartyV1>(path, value)?),
        EntityKind::Contact => SubjectV1::Contact(read::<ContactV1>(path, value)?),
        EntityKind::Document => SubjectV1::Document(read::<DocumentV1>(path, value)?),
        EntityKind::Claim => {
            let claim = read::<crmkit_core::hooks::wire::ClaimV1>(path, value)?;
            return crate::api::claim(&claim).map_err(|e| at(path, e));
        }
        _ => SubjectV1::Record(read(path, value)?),
    };
    rhai::serde::to_dynamic(wire).map_err(|e| at(path, e.to_string()))
}

/// The deal a contract deal stands for, its custom values typed by their declarations.
fn deal(path: &str, d: DealV1, settings: &Settings) -> Result<Deal, InputError> {
    let currency = Currency::parse(&d.currency).map_err(|e| at(format!("{path}.currency"), e.to_string()))?;
    let mut custom = CustomFields::new();
    let defs = settings.custom_fields_of(EntityKind::Deal);
    for (name, value) in d.custom {
        let here = format!("{path}.custom.{name}");
        let Some(def) = defs.iter().find(|f| f.name == name) else {
            let declared: Vec<&str> = defs.iter().map(|f| f.name.as_str()).collect();
            return Err(at(
                here,
                format!(
                    "no custom field \"{name}\" is declared for deals (declared: {})",
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                ),
            ));
        };
        if value.is_null() {
            continue;
        }
        custom.insert(name, custom_value(&here, &def.ty, value)?);
    }
    let mut deal = Deal::new(d.title, d.partner, d.kind, d.stage, d.manager, Money::new(d.amount, currency));
    deal.id = d.id;
    deal.version = d.version;
    deal.created_at = d.created_at;
    deal.updated_at = d.updated_at;
    deal.counterparty = d.counterparty;
    deal.status = d.status;
    deal.expected_close = d.expected_close;
    deal.probability = d.probability;
    deal.probability_manual = d.probability_manual;
    if let Some(s) = &d.score {
        let factors: Vec<ScoreFactor> = s.factors.iter().map(factor).collect();
        score::check(s.probability, &factors, s.model.as_deref()).map_err(|m| at(format!("{path}.score"), m))?;
    }
    deal.score = d.score.map(|s| score(*s));
    deal.source = d.source;
    deal.loss_reason = d.loss_reason;
    deal.competitor = d.competitor;
    deal.comment = d.comment;
    deal.closed_at = d.closed_at;
    deal.stage_entered_at = d.stage_entered_at;
    deal.checklist = d.checklist;
    deal.custom = custom;
    Ok(deal)
}

/// The stored score a contract score stands for.
fn score(s: ScoreV1) -> DealScore {
    DealScore {
        probability: s.probability,
        factors: s.factors.iter().map(factor).collect(),
        model: s.model,
        handler: s.handler,
        at: s.at,
    }
}

fn factor(f: &FactorV1) -> ScoreFactor {
    ScoreFactor { name: f.name.clone(), value: f.value.clone(), contribution: f.contribution }
}

/// A custom value in its plain contract form, read as the declared type.
fn custom_value(path: &str, ty: &CustomFieldType, value: Value) -> Result<CustomValue, InputError> {
    let wrong =
        |expected: &str, got: &Value| at(path, format!("expected {expected} (a {} field), got {got}", ty.name()));
    let text = |v: &Value, expected: &str| v.as_str().map(str::to_string).ok_or_else(|| wrong(expected, v));
    Ok(match ty {
        CustomFieldType::String => CustomValue::String(text(&value, "text")?),
        CustomFieldType::Enum { values, multiple: false } => {
            let v = text(&value, "text")?;
            if !values.contains(&v) {
                return Err(at(path, format!("\"{v}\" is not one of {}", values.join(", "))));
            }
            CustomValue::Enum(v)
        }
        CustomFieldType::Enum { values, multiple: true } => {
            let items = value.as_array().ok_or_else(|| wrong("a list of texts", &value))?;
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                let v = text(item, "text")?;
                if !values.contains(&v) {
                    return Err(at(path, format!("\"{v}\" is not one of {}", values.join(", "))));
                }
                if set.contains(&v) {
                    return Err(at(path, format!("lists \"{v}\" twice")));
                }
                set.push(v);
            }
            CustomValue::EnumSet(set)
        }
        CustomFieldType::Number => {
            let v = match &value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(wrong("a decimal as text, like \"12.5\"", other)),
            };
            CustomValue::Number(v.parse().map_err(|_| wrong("a decimal as text, like \"12.5\"", &value))?)
        }
        CustomFieldType::Money => {
            let m: MoneyV1 = read(path, value)?;
            CustomValue::Money(Money::parse(&m.amount, &m.currency).map_err(|e| at(path, e.to_string()))?)
        }
        CustomFieldType::Date => {
            let v = text(&value, "a date like \"2026-03-01\"")?;
            CustomValue::Date(crmkit_core::values::date::parse(&v).map_err(|e| at(path, e))?)
        }
        CustomFieldType::Bool => CustomValue::Bool(value.as_bool().ok_or_else(|| wrong("true or false", &value))?),
        CustomFieldType::Reference { .. } => {
            let v = text(&value, "an id")?;
            CustomValue::Ref(v.parse().map_err(|_| wrong("an id of 26 characters", &value))?)
        }
    })
}

/// A money custom value as the contract writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyV1 {
    amount: String,
    currency: String,
}
