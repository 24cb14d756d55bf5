//! Row conversion: a row's cells to the JSON values of its entity's fields, a deal's
//! history to steps, and the entity the row makes (the stored one changed, or a new one).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::keys::find_key;
use super::row::{field_err, Cell, Row, RowFailure};
use super::ImportOptions;
use crate::id::{RawId, TypedId, UserId};
use crate::model::{CustomFieldType, DealStatus, Entity, EntityKind, How};
use crate::process::ImportStep;
use crate::store::Reader;
use crate::time::Timestamp;
use crate::transfer::columns::{Column, Empty, Ty, KEY};
use crate::Error;

/// What one row asks for.
pub(super) struct Prepared {
    pub(super) key: String,
    /// Values to set, by column number.
    sets: Vec<(usize, Option<Value>)>,
    pub(super) history: Option<Vec<ImportStep>>,
    pub(super) stage: Option<Option<String>>,
    pub(super) status: Option<DealStatus>,
    pub(super) attachments: Vec<PathBuf>,
}

/// A row made into an entity: the stored one it updates (if any) and the new form.
pub(super) struct Plan<E> {
    pub(super) p: Prepared,
    pub(super) old: Option<E>,
    pub(super) new: E,
}

/// Turns rows into entities: conversions and reference lookups, against any reader.
pub(super) struct Converter<'a> {
    pub(super) columns: Arc<[Column]>,
    pub(super) opts: &'a ImportOptions,
    /// Resolved references: per kind, key → id.
    pub(super) refs: HashMap<EntityKind, HashMap<String, RawId>>,
    pub(super) logins: HashMap<String, UserId>,
}

impl Converter<'_> {
    /// Reads and converts a row's cells; references are resolved against what the
    /// transaction sees (earlier rows included).
    pub(super) fn prepare<R: Reader>(&mut self, tx: &R, row: &Row<'_>) -> std::result::Result<Prepared, RowFailure> {
        let key_at = 0;
        let key = match row.cell(key_at) {
            Ok(Some(c)) if !c.is_empty() => match c.text() {
                Ok(k) => k.into_owned(),
                Err(m) => return Err((None, field_err(KEY, m))),
            },
            Ok(_) => {
                return Err((
                    None,
                    field_err(KEY, "is required: the external key makes a re-run update rather than duplicate"),
                ))
            }
            Err(m) => return Err((None, field_err(KEY, m))),
        };
        if let Err(e) = crate::store::check_external_key(self.opts.kind, &key) {
            return Err((Some(key), (e.field, e.message)));
        }
        let fail = |e: (String, String)| (Some(key.clone()), e);
        let mut p = Prepared {
            key: key.clone(),
            sets: Vec::new(),
            history: None,
            stage: None,
            status: None,
            attachments: Vec::new(),
        };
        for i in 1..self.columns.len() {
            let name = self.columns[i].name.clone();
            let cell = row.cell(i).map_err(|m| fail(field_err(&name, m)))?;
            let Some(cell) = cell else { continue };
            let empty = cell.is_empty();
            let column = &self.columns[i];
            if empty {
                match column.empty {
                    Empty::Required => return Err(fail(field_err(&name, "is required and must not be empty"))),
                    Empty::Default => {}
                    Empty::Null => p.sets.push((i, Some(Value::Null))),
                    Empty::Blank => p.sets.push((i, None)),
                }
                if name == "stage" {
                    p.stage = Some(None);
                }
                continue;
            }
            match &column.ty {
                Ty::History => {
                    let steps = self.history(tx, &cell).map_err(|m| fail(field_err(&name, m)))?;
                    p.history = Some(steps);
                }
                Ty::Attachments => {
                    let list = cell.list().map_err(|m| fail(field_err(&name, m)))?;
                    match &self.opts.base_dir {
                        _ if list.is_empty() => {}
                        Some(base) => p.attachments = list.iter().map(|f| base.join(f)).collect(),
                        None => {
                            let m =
                                "files are not read from the server's disk: attach them through /api/v1/attachments";
                            return Err(fail(field_err(&name, m)));
                        }
                    }
                }
                _ if name == "stage" => {
                    p.stage = Some(Some(cell.text().map_err(|m| fail(field_err(&name, m)))?.into_owned()))
                }
                _ if name == "status" => {
                    let v = self.convert(tx, i, &cell).map_err(|m| fail(field_err(&name, m)))?;
                    p.status = serde_json::from_value(v).ok();
                }
                _ => {
                    let v = self.convert(tx, i, &cell).map_err(|m| fail(field_err(&name, m)))?;
                    p.sets.push((i, Some(v)));
                }
            }
        }
        Ok(p)
    }

    /// The JSON value column `i` puts into the entity.
    fn convert<R: Reader>(&mut self, tx: &R, i: usize, cell: &Cell<'_>) -> std::result::Result<Value, String> {
        let ty = self.columns[i].ty.clone();
        Ok(match ty {
            Ty::Text => Value::String(cell.text()?.into_owned()),
            Ty::Enum(names) => Value::String(one_of(&cell.text()?, names)?),
            Ty::EnumList(names) => Value::Array(
                cell.list()?
                    .iter()
                    .map(|s| one_of(s, names).map(Value::String))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            Ty::Int(max) => {
                let t = cell.text()?;
                match t.parse::<u64>() {
                    Ok(n) if n <= max => Value::from(n),
                    Ok(n) => return Err(format!("{n} is more than {max}")),
                    Err(_) => return Err(format!("expected a whole number from 0 to {max}, got \"{t}\"")),
                }
            }
            Ty::Amount => {
                let t = cell.text()?;
                let t = t.replace([' ', '\u{a0}'], "").replace(',', ".");
                if t.parse::<rust_decimal::Decimal>().is_err() || t.contains(['e', 'E', '+']) {
                    return Err(format!("expected an amount like 1234.50, got \"{}\"", cell.text()?));
                }
                Value::String(t)
            }
            Ty::Currency => {
                let t = cell.text()?;
                crate::values::Currency::parse(&t).map_err(|e| e.to_string())?;
                Value::String(t.into_owned())
            }
            Ty::Date => Value::String(parse_date(&cell.text()?)?.to_string()),
            Ty::Time => Value::String(parse_time(&cell.text()?)?.to_string()),
            Ty::Key(kind) => Value::String(self.resolve(tx, kind, &cell.text()?)?.to_string()),
            Ty::Keys(kind) => {
                let mut out = Vec::new();
                for k in cell.list()? {
                    out.push(Value::String(self.resolve(tx, kind, &k)?.to_string()));
                }
                Value::Array(out)
            }
            Ty::Login => Value::String(self.login(tx, &cell.text()?)?.to_string()),
            Ty::List => Value::Array(cell.list()?.into_iter().map(Value::String).collect()),
            Ty::Json(check) => {
                let v = cell.json()?;
                check(&v)?;
                v
            }
            Ty::Custom(def) => {
                let t = || cell.text().map(|t| t.into_owned());
                let (tag, v) = match &def.ty {
                    CustomFieldType::String => ("string", Value::String(t()?)),
                    CustomFieldType::Number => {
                        let s = t()?.replace(',', ".");
                        s.parse::<rust_decimal::Decimal>().map_err(|_| format!("expected a number, got \"{s}\""))?;
                        ("number", Value::String(s))
                    }
                    CustomFieldType::Money => {
                        let s = t()?;
                        let (amount, currency) = s.rsplit_once(' ').ok_or_else(|| {
                            format!("expected an amount and a currency like \"1500.00 RUB\", got \"{s}\"")
                        })?;
                        let m =
                            crate::values::Money::parse(amount.trim(), currency.trim()).map_err(|e| e.to_string())?;
                        ("money", serde_json::to_value(m).expect("money serializes"))
                    }
                    CustomFieldType::Date => ("date", Value::String(parse_date(&t()?)?.to_string())),
                    CustomFieldType::Bool => {
                        let s = t()?.to_lowercase();
                        let b = match s.as_str() {
                            "true" | "yes" | "1" | "да" => true,
                            "false" | "no" | "0" | "нет" => false,
                            _ => return Err(format!("expected true or false, got \"{s}\"")),
                        };
                        ("bool", Value::Bool(b))
                    }
                    // A multi-valued enum: `a; b` in CSV, a JSON array in either format.
                    CustomFieldType::Enum { multiple: true, .. } => {
                        ("enum_set", Value::Array(cell.list()?.into_iter().map(Value::String).collect()))
                    }
                    CustomFieldType::Enum { .. } => ("enum", Value::String(t()?)),
                    CustomFieldType::Reference { target } => {
                        ("ref", Value::String(self.resolve(tx, *target, &t()?)?.to_string()))
                    }
                };
                let mut m = Map::new();
                m.insert(tag.to_string(), v);
                Value::Object(m)
            }
            Ty::History | Ty::Attachments => unreachable!("handled by prepare"),
        })
    }

    /// A deal's history from its JSON form: `[{"at", "how", "stage", "status", "by", "note"}]`.
    fn history<R: Reader>(&mut self, tx: &R, cell: &Cell<'_>) -> std::result::Result<Vec<ImportStep>, String> {
        let Value::Array(steps) = cell.json()? else {
            return Err("expected a JSON array of steps".into());
        };
        let mut out = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let step: HistoryStep = serde_json::from_value(s.clone()).map_err(|e| format!("step {i}: {e}"))?;
            let how = How::ALL
                .iter()
                .copied()
                .find(|h| h.name() == step.how)
                .ok_or_else(|| format!("step {i}: \"{}\" is not a kind of step", step.how))?;
            let to_status = serde_json::from_value(Value::String(step.status.clone()))
                .map_err(|_| format!("step {i}: \"{}\" is not a deal status", step.status))?;
            let actor = match step.by.as_deref().filter(|b| !b.is_empty()) {
                Some(login) => Some(self.login(tx, login).map_err(|m| format!("step {i}: {m}"))?),
                None => None,
            };
            out.push(ImportStep {
                at: parse_time(&step.at).map_err(|m| format!("step {i}: {m}"))?,
                how,
                to_stage: step.stage,
                to_status,
                actor,
                note: step.note,
            });
        }
        Ok(out)
    }

    /// The entity a prepared row makes: the stored one with the row's values, or a new one.
    pub(super) fn plan<E: Entity, R: Reader>(
        &self,
        r: &R,
        mut p: Prepared,
    ) -> std::result::Result<Plan<E>, RowFailure> {
        let key = p.key.clone();
        let fail = |e: Error| (Some(key.clone()), ("".to_string(), e.to_string()));
        let old: Option<E> = match find_key(r, E::KIND, &p.key).map_err(fail)? {
            Some(id) => Some(r.load(E::Id::from_raw(id)).map_err(fail)?),
            None => None,
        };
        let mut v = match &old {
            Some(old) => serde_json::to_value(old).expect("entities serialize"),
            None => template::<E>(),
        };
        self.apply(&mut v, &mut p);
        if E::KIND == EntityKind::Claim {
            optional_money(&mut v, "claimed", r.settings().default_currency);
        }
        let new: E = serde_json::from_value(v).map_err(|e| (Some(key.clone()), ("".to_string(), e.to_string())))?;
        Ok(Plan { p, old, new })
    }

    /// Moves the row's values into an entity's JSON form.
    fn apply(&self, v: &mut Value, p: &mut Prepared) {
        for (i, value) in p.sets.drain(..) {
            let column = &self.columns[i];
            if column.path.is_empty() {
                continue;
            }
            let value = match value {
                Some(v) => v,
                None => match column.ty {
                    Ty::Text => Value::String(String::new()),
                    _ => Value::Array(Vec::new()),
                },
            };
            let custom = matches!(column.ty, Ty::Custom(_));
            set_path(v, &column.path, value, custom);
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryStep {
    at: String,
    how: String,
    #[serde(default)]
    stage: Option<String>,
    status: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// The JSON form a new entity starts from: bookkeeping fields the store overwrites, and a
/// deal's initial status.
fn template<E: Entity>() -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(RawId::default().to_string()));
    m.insert("version".into(), Value::from(0));
    m.insert("created_at".into(), Value::String(Timestamp::default().to_string()));
    m.insert("updated_at".into(), Value::String(Timestamp::default().to_string()));
    if E::KIND == EntityKind::Deal {
        m.insert("status".into(), Value::String("in_progress".into()));
    }
    if E::KIND == EntityKind::Claim {
        m.insert("status".into(), Value::String("registered".into()));
    }
    Value::Object(m)
}

/// An optional amount written as two columns (`claimed`, `currency`): no amount is no
/// money, and an amount without its currency is in `currency`.
fn optional_money(v: &mut Value, field: &str, currency: crate::values::Currency) {
    let Some(m) = v.get_mut(field).and_then(Value::as_object_mut) else { return };
    if m.get("amount").is_none_or(Value::is_null) {
        v[field] = Value::Null;
    } else if m.get("currency").is_none_or(Value::is_null) {
        m.insert("currency".into(), Value::String(currency.to_string()));
    }
}

/// Sets `value` at the dotted `path`, making objects on the way; a `null` custom value
/// removes the field.
fn set_path(v: &mut Value, path: &str, value: Value, custom: bool) {
    let mut cur = v;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut().expect("made an object");
        if parts.peek().is_none() {
            if custom && value.is_null() {
                obj.remove(part);
            } else {
                obj.insert(part.to_string(), value);
            }
            return;
        }
        cur = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

fn one_of(value: &str, names: &[&str]) -> std::result::Result<String, String> {
    let v = value.trim().to_lowercase();
    if names.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!("\"{value}\" is not one of: {}", names.join(", ")))
    }
}

/// A date as `2026-03-01` ([`crate::values::date::parse`]) or, as spreadsheets write it,
/// `01.03.2026`; either in the range of every date field.
pub(crate) fn parse_date(s: &str) -> std::result::Result<chrono::NaiveDate, String> {
    let s = s.trim();
    let b = s.as_bytes();
    let dotted = b.len() == 10
        && b[2] == b'.'
        && b[5] == b'.'
        && b.iter().enumerate().all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit());
    if !dotted {
        return crate::values::date::parse(s).map_err(|m| format!("{m}; 01.03.2026 is read too"));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%d.%m.%Y")
        .map_err(|_| format!("\"{s}\" is not a day of the calendar"))?;
    crate::values::date::check(d)?;
    Ok(d)
}

/// An instant as RFC 3339, or `2026-03-01 09:30[:00]` in UTC.
pub(crate) fn parse_time(s: &str) -> std::result::Result<Timestamp, String> {
    if let Ok(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(Timestamp(t.and_utc().timestamp_millis()));
        }
    }
    Err(format!("expected a time like 2026-03-01T09:30:00Z or 2026-03-01 09:30 (UTC), got \"{s}\""))
}
