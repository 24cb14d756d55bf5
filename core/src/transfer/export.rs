//! Export: the entities of a kind as CSV or JSONL, in the columns import reads.
//!
//! Rows come in creation order (partners: every parent before its members), so importing
//! an export into a fresh installation creates the records in the same order and a second
//! export is the same file. A record's key is its external key, or its crmkit id when it
//! has none; references are written the same way.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Map, Value};

use super::columns::{self, Column, Ty, KEY};
use super::{csv, Format};
use crate::id::{DealId, PartnerId, RawId, TypedId, UserId};
use crate::model::{
    ContactPerson, Counterparty, CustomFieldType, Deal, Document, Entity, EntityKind, Interaction, Partner, User,
};
use crate::progress::{self, Meter, Progress};
use crate::store::Reader;
use crate::{Error, Result};

/// Writes every entity of `kind` to `out`; returns the number of rows.
pub fn export<R: Reader>(r: &R, kind: EntityKind, format: Format, delimiter: u8, out: &mut dyn Write) -> Result<u64> {
    export_with_progress(r, kind, format, delimiter, out, &mut progress::ignore)
}

/// [`export`], reporting its stage `"export"` to `progress`: the rows written of the
/// entities of `kind`.
pub fn export_with_progress<R: Reader>(
    r: &R,
    kind: EntityKind,
    format: Format,
    delimiter: u8,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64> {
    let columns = columns::columns(kind, r.settings())
        .ok_or_else(|| Error::NotAllowed(format!("{kind} cannot be exported")))?
        .into_iter()
        .filter(|c| c.exported)
        .collect::<Vec<_>>();
    let meter = Meter::start(progress, "export", r.count(kind)?);
    let mut x =
        Exporter { r, columns, format, delimiter, keys: HashMap::new(), logins: HashMap::new(), rows: 0, meter };
    if format == Format::Csv {
        let names: Vec<&str> = x.columns.iter().map(|c| c.name.as_str()).collect();
        csv::write_record(out, &names, delimiter).map_err(io)?;
    }
    use EntityKind as K;
    match kind {
        K::Counterparty => x.all::<Counterparty>(out)?,
        K::Partner => x.partners(out)?,
        K::Contact => x.all::<ContactPerson>(out)?,
        K::Deal => x.all::<Deal>(out)?,
        K::Interaction => x.all::<Interaction>(out)?,
        K::Document => x.all::<Document>(out)?,
        K::LoyaltyProgram => x.all::<crate::model::LoyaltyProgram>(out)?,
        K::LoyaltyCard => x.all::<crate::model::LoyaltyCard>(out)?,
        K::Claim => x.all::<crate::model::Claim>(out)?,
        _ => unreachable!("columns() knows only these"),
    }
    let rows = x.rows;
    x.meter.finish();
    Ok(rows)
}

fn io(e: std::io::Error) -> Error {
    Error::Io { path: "output".into(), error: e }
}

struct Exporter<'r, 'p, R> {
    r: &'r R,
    columns: Vec<Column>,
    format: Format,
    delimiter: u8,
    /// Per kind, the first external key of each entity that has one.
    keys: HashMap<EntityKind, HashMap<RawId, String>>,
    logins: HashMap<UserId, String>,
    rows: u64,
    meter: Meter<'p>,
}

impl<R: Reader> Exporter<'_, '_, R> {
    fn all<E: Entity>(&mut self, out: &mut dyn Write) -> Result<()> {
        let mut err = None;
        self.r.for_each::<E>(|e| match self.row(&e, out) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    /// Partners, each parent before its members: by depth in the group tree, then by id.
    fn partners(&mut self, out: &mut dyn Write) -> Result<()> {
        let mut all: Vec<Partner> = Vec::new();
        self.r.for_each::<Partner>(|p| {
            all.push(p);
            true
        })?;
        let parents: HashMap<PartnerId, Option<PartnerId>> = all.iter().map(|p| (p.id, p.parent)).collect();
        let depth = |mut id: PartnerId| {
            let mut d = 0usize;
            while let Some(Some(parent)) = parents.get(&id) {
                d += 1;
                id = *parent;
                if d > parents.len() {
                    break;
                }
            }
            d
        };
        let mut ordered: Vec<(usize, Partner)> = all.into_iter().map(|p| (depth(p.id), p)).collect();
        ordered.sort_by_key(|(d, p)| (*d, p.id));
        for (_, p) in &ordered {
            self.row(p, out)?;
        }
        Ok(())
    }

    fn row<E: Entity>(&mut self, e: &E, out: &mut dyn Write) -> Result<()> {
        let v = serde_json::to_value(e).expect("entities serialize");
        let id = e.id().raw();
        let mut cells = Vec::with_capacity(self.columns.len());
        for i in 0..self.columns.len() {
            let column = self.columns[i].clone();
            let value = if column.name == KEY {
                Value::String(self.key_of(E::KIND, id)?)
            } else if matches!(column.ty, Ty::History) {
                self.history(DealId::from_raw(id))?
            } else {
                let at = get_path(&v, &column.path).cloned().unwrap_or(Value::Null);
                self.cell(&column, at)?
            };
            cells.push((column, value));
        }
        self.rows += 1;
        self.meter.add(1);
        match self.format {
            Format::Csv => {
                let texts: Vec<String> = cells.iter().map(|(c, v)| csv_text(c, v)).collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                csv::write_record(out, &refs, self.delimiter).map_err(io)
            }
            Format::Jsonl => {
                let obj: Map<String, Value> = cells.into_iter().map(|(c, v)| (c.name, v)).collect();
                serde_json::to_writer(&mut *out, &obj).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)
            }
        }
    }

    /// The value of a column as export writes it: references as keys, users as logins.
    fn cell(&mut self, column: &Column, v: Value) -> Result<Value> {
        Ok(match (&column.ty, v) {
            (_, Value::Null) => Value::Null,
            (Ty::Key(kind), Value::String(id)) => Value::String(self.key_of_text(*kind, &id)?),
            (Ty::Keys(kind), Value::Array(ids)) => {
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(Value::String(self.key_of_text(*kind, id.as_str().unwrap_or_default())?));
                }
                Value::Array(out)
            }
            (Ty::Login, Value::String(id)) => Value::String(self.login_of(&id)?),
            (Ty::Custom(def), Value::Object(tagged)) => {
                let Some((_, inner)) = tagged.into_iter().next() else { return Ok(Value::Null) };
                match (&def.ty, inner) {
                    (CustomFieldType::Money, Value::Object(m)) => Value::String(format!(
                        "{} {}",
                        m.get("amount").and_then(Value::as_str).unwrap_or_default(),
                        m.get("currency").and_then(Value::as_str).unwrap_or_default()
                    )),
                    (CustomFieldType::Reference { target }, Value::String(id)) => {
                        Value::String(self.key_of_text(*target, &id)?)
                    }
                    (CustomFieldType::Bool, b) => b,
                    (_, other) => other,
                }
            }
            (_, v) => v,
        })
    }

    fn key_of_text(&mut self, kind: EntityKind, id: &str) -> Result<String> {
        let raw: RawId =
            id.parse().map_err(|e| Error::Corrupt { what: format!("reference \"{id}\""), message: format!("{e}") })?;
        self.key_of(kind, raw)
    }

    /// An entity's key in files: its first external key, or its id. The keys of a kind
    /// are read once, on first use.
    fn key_of(&mut self, kind: EntityKind, id: RawId) -> Result<String> {
        if !self.keys.contains_key(&kind) {
            let mut map = HashMap::new();
            self.r.for_each_external_key(kind, |key, id| {
                map.entry(id).or_insert_with(|| key.to_string());
                true
            })?;
            self.keys.insert(kind, map);
        }
        Ok(self.keys[&kind].get(&id).cloned().unwrap_or_else(|| id.to_string()))
    }

    fn login_of(&mut self, id: &str) -> Result<String> {
        let id: UserId = id
            .parse()
            .map_err(|e| Error::Corrupt { what: format!("user reference \"{id}\""), message: format!("{e}") })?;
        if let Some(l) = self.logins.get(&id) {
            return Ok(l.clone());
        }
        let login = self.r.load::<User>(id)?.login;
        self.logins.insert(id, login.clone());
        Ok(login)
    }

    /// A deal's stage history as import reads it.
    fn history(&mut self, deal: DealId) -> Result<Value> {
        let mut steps = Vec::new();
        for s in self.r.stage_history(deal)? {
            let mut m = Map::new();
            m.insert("at".into(), Value::String(s.at.to_string()));
            m.insert("how".into(), Value::String(s.how.name().into()));
            if let Some(st) = s.to_stage {
                m.insert("stage".into(), Value::String(st));
            }
            m.insert("status".into(), Value::String(s.to_status.name().into()));
            if let Some(a) = s.actor {
                m.insert("by".into(), Value::String(self.login_of(&a.to_string())?));
            }
            if let Some(n) = s.note {
                m.insert("note".into(), Value::String(n));
            }
            steps.push(Value::Object(m));
        }
        Ok(Value::Array(steps))
    }
}

fn get_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return None;
    }
    path.split('.').try_fold(v, |cur, part| cur.get(part))
}

/// A cell's CSV text: lists joined with `; ` (as JSON when an item holds a `;`), nested
/// values as JSON.
fn csv_text(column: &Column, v: &Value) -> String {
    match (&column.ty, v) {
        (_, Value::Null) => String::new(),
        (_, Value::String(s)) => s.clone(),
        (Ty::List | Ty::Keys(_) | Ty::EnumList(_) | Ty::Custom(_), Value::Array(items)) => {
            let texts: Vec<&str> = items.iter().map(|i| i.as_str().unwrap_or_default()).collect();
            if texts.iter().any(|t| t.contains(';') || t.starts_with('[')) {
                v.to_string()
            } else {
                texts.join("; ")
            }
        }
        (_, other) => other.to_string(),
    }
}
