//! Native scans a report script asks for instead of visiting every deal in Rhai:
//! `tally_deals` groups the deals by the keys the script names and counts and sums them in
//! one pass in Rust, and `analytics` runs a built-in report. A script over a million deals
//! then handles a few thousand rows, not a million calls of its closure.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crmkit_core::analytics::Analytics;
use crmkit_core::hooks::View;
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::DealStatus;
use crmkit_core::report::{ColumnType, ReportSource};
use crmkit_core::store::DealRow;
use rhai::{Dynamic, Map};
use rust_decimal::Decimal;

/// The keys deals can be grouped by, each with what it is.
pub const KEYS: &[(&str, &str)] = &[
    ("manager", "the manager's login"),
    ("kind", "the process kind's id"),
    ("stage", "the stage's id (() for a stageless deal)"),
    ("status", "in_progress, on_hold, won or lost"),
    ("partner", "the partner's name"),
    ("competitor", "the competitor's name (() when none is named)"),
    ("loss_reason", "the loss reason (() when none)"),
    ("source", "the deal's source (() when none)"),
    ("currency", "the amount's currency code"),
    ("created_month", "YYYY-MM the deal was created"),
    ("expected_close_month", "YYYY-MM of the expected close date (() when none)"),
    ("closed_month", "YYYY-MM the deal was won or lost (() while open)"),
];

/// What a script asked `tally_deals` for, checked.
pub struct Tally {
    by: Vec<String>,
    statuses: Option<Vec<DealStatus>>,
    kind: Option<String>,
}

impl Tally {
    /// Reads `tally_deals`' options: `by` (an array of keys, required), `status` (an array
    /// of statuses) and `kind` (a process kind), each named when wrong.
    pub fn from_options(options: &Map) -> Result<Tally, String> {
        let mut tally = Tally { by: Vec::new(), statuses: None, kind: None };
        for (key, value) in options {
            match key.as_str() {
                "by" => {
                    let keys =
                        value.clone().into_array().map_err(|t| format!("tally_deals: by is {t}, not an array"))?;
                    for k in keys {
                        let k = k.into_string().map_err(|t| format!("tally_deals: by holds a {t}, not a key"))?;
                        if !KEYS.iter().any(|(name, _)| *name == k) {
                            return Err(format!(
                                "tally_deals: by: \"{k}\" is not a key (keys: {})",
                                KEYS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                            ));
                        }
                        tally.by.push(k);
                    }
                }
                "status" => {
                    let list =
                        value.clone().into_array().map_err(|t| format!("tally_deals: status is {t}, not an array"))?;
                    let mut statuses = Vec::new();
                    for s in list {
                        let s = s.into_string().map_err(|t| format!("tally_deals: status holds a {t}"))?;
                        let status = DealStatus::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| {
                            format!(
                                "tally_deals: status: \"{s}\" is not a status ({})",
                                DealStatus::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
                            )
                        })?;
                        statuses.push(status);
                    }
                    tally.statuses = Some(statuses);
                }
                "kind" => {
                    tally.kind =
                        Some(value.clone().into_string().map_err(|t| format!("tally_deals: kind is {t}, not text"))?)
                }
                other => return Err(format!("tally_deals: unknown option \"{other}\" (options: by, status, kind)")),
            }
        }
        if tally.by.is_empty() {
            return Err("tally_deals: by must name at least one key, e.g. #{ by: [\"manager\"] }".into());
        }
        Ok(tally)
    }

    /// One pass over the deals of `view`: a row per group — its keys in the order of `by`,
    /// then the number of deals and their amount (summed as the amounts stand: add
    /// `currency` to the keys to keep currencies apart) — sorted by the keys. Rows are
    /// arrays, not maps: Rhai counts every entry of every map a value holds against
    /// `max_map_size`, which a few thousand small maps would pass.
    pub fn run(&self, view: &dyn View) -> Result<rhai::Array, String> {
        let mut names = Names::default();
        let mut groups: HashMap<Vec<Option<String>>, (i64, Decimal)> = HashMap::new();
        let mut failed = None;
        // The deal's keys, written into the same strings deal after deal: a group already
        // seen costs no allocation.
        let mut key: Vec<Option<String>> = vec![None; self.by.len()];
        view.scan_deals(&mut |d| {
            if self.statuses.as_ref().is_some_and(|s| !s.contains(&d.status))
                || self.kind.as_ref().is_some_and(|k| *k != d.kind)
            {
                return true;
            }
            for (k, out) in self.by.iter().zip(key.iter_mut()) {
                if let Err(e) = names.value_into(view, d, k, out) {
                    failed = Some(e);
                    return false;
                }
            }
            let group = match groups.get_mut(&key) {
                Some(g) => g,
                None => groups.entry(key.clone()).or_insert((0, Decimal::ZERO)),
            };
            group.0 += 1;
            group.1 += d.amount.amount;
            true
        })
        .map_err(|e| format!("tally_deals: {e}"))?;
        if let Some(e) = failed {
            return Err(format!("tally_deals: {e}"));
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(groups
            .into_iter()
            .map(|(key, (deals, amount))| {
                let mut row: rhai::Array = key.into_iter().map(|v| v.map_or(Dynamic::UNIT, Dynamic::from)).collect();
                row.push(Dynamic::from_int(deals));
                row.push(Dynamic::from_decimal(amount));
                Dynamic::from_array(row)
            })
            .collect())
    }
}

/// Logins and partner names looked up once each.
#[derive(Default)]
struct Names {
    logins: HashMap<UserId, String>,
    partners: HashMap<PartnerId, String>,
}

impl Names {
    fn login(&mut self, view: &dyn View, id: UserId) -> Result<&str, crmkit_core::Error> {
        Ok(match self.logins.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(view.user(id)?.map_or_else(|| id.to_string(), |u| u.login)),
        })
    }

    fn partner(&mut self, view: &dyn View, id: PartnerId) -> Result<&str, crmkit_core::Error> {
        Ok(match self.partners.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(view.partner(id)?.map_or_else(|| id.to_string(), |p| p.name)),
        })
    }

    /// Writes deal `d`'s value of `key` into `out`, reusing its string (none: the deal has
    /// no such value, or there is no such key).
    fn value_into(
        &mut self,
        view: &dyn View,
        d: &DealRow,
        key: &str,
        out: &mut Option<String>,
    ) -> Result<(), crmkit_core::Error> {
        use chrono::Datelike;
        let text: Option<&str> = match key {
            "manager" => Some(self.login(view, d.manager)?),
            "kind" => Some(&d.kind),
            "stage" => d.stage.as_deref(),
            "status" => Some(d.status.name()),
            "partner" => Some(self.partner(view, d.partner)?),
            "competitor" => match d.competitor {
                Some(c) => Some(self.partner(view, c)?),
                None => None,
            },
            "loss_reason" => d.loss_reason.as_deref(),
            "source" => d.source.as_deref(),
            "currency" => Some(d.amount.currency.as_str()),
            "created_month" | "expected_close_month" | "closed_month" => {
                let day = match key {
                    "created_month" => Some(d.created_at.date()),
                    "expected_close_month" => d.expected_close,
                    _ => d.closed_at.map(|t| t.date()),
                };
                let Some(day) = day else {
                    *out = None;
                    return Ok(());
                };
                let s = out.get_or_insert_with(String::new);
                s.clear();
                let _ = write!(s, "{:04}-{:02}", day.year(), day.month());
                return Ok(());
            }
            _ => None,
        };
        match text {
            Some(t) => {
                let s = out.get_or_insert_with(String::new);
                s.clear();
                s.push_str(t);
            }
            None => *out = None,
        }
        Ok(())
    }
}

/// Runs built-in report `name` with `params` over `view`: `#{ columns, rows }` as a report
/// script returns them — each column a map of `name` and `type`, each row an array in
/// column order (decimals as decimals, dates as text) — so a script can pass it on or
/// reshape it.
pub fn analytics(view: &dyn View, name: &str, params: &BTreeMap<String, String>) -> Result<Map, String> {
    let source = Analytics;
    if !source.reports().iter().any(|r| r.name == name) {
        let known: Vec<String> = source.reports().into_iter().map(|r| r.name).collect();
        return Err(format!(
            "analytics: there is no built-in report \"{name}\" (reports: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ));
    }
    let (columns, rows) = source.run(name, params, view).map_err(|e| format!("analytics: {e}"))?;
    let rows: rhai::Array = rows
        .into_iter()
        .map(|row| {
            let cells: rhai::Array = columns
                .iter()
                .zip(row)
                .map(|(c, v)| match (c.ty, &v) {
                    (ColumnType::Decimal, serde_json::Value::String(s)) => {
                        s.parse::<Decimal>().map(Dynamic::from_decimal).unwrap_or_else(|_| s.clone().into())
                    }
                    _ => rhai::serde::to_dynamic(&v).unwrap_or(Dynamic::UNIT),
                })
                .collect();
            Dynamic::from_array(cells)
        })
        .collect();
    let columns: rhai::Array = columns
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("name".into(), c.name.clone().into());
            m.insert("type".into(), c.ty.name().into());
            Dynamic::from_map(m)
        })
        .collect();
    let mut out = Map::new();
    out.insert("columns".into(), Dynamic::from_array(columns));
    out.insert("rows".into(), Dynamic::from_array(rows));
    Ok(out)
}

/// A key cell of [`join_rows`], ordered as `tally_deals` orders its keys: `()` first, then
/// booleans, numbers and text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyCell {
    Unit,
    Bool(bool),
    Number(Decimal),
    Text(String),
}

impl KeyCell {
    fn of(v: &Dynamic) -> Option<KeyCell> {
        if v.is_unit() {
            Some(KeyCell::Unit)
        } else if let Ok(b) = v.as_bool() {
            Some(KeyCell::Bool(b))
        } else if let Ok(i) = v.as_int() {
            Some(KeyCell::Number(Decimal::from(i)))
        } else if let Some(d) = v.clone().try_cast::<Decimal>() {
            Some(KeyCell::Number(d.normalize()))
        } else if v.is_string() {
            Some(KeyCell::Text(v.clone().into_string().ok()?))
        } else {
            None
        }
    }
}

/// `join_rows(left, right, keys)`: the rows of two tables (arrays of row arrays) matched on
/// their first `keys` cells — one row per key found in either, sorted by the keys: the key
/// cells, then the rest of the left row, then the rest of the right row, `()` for each cell
/// of a side that has no row with the key (a side with no rows at all is taken to be as wide
/// as the other). Built natively in one go: a script that merged
/// two long tables itself, pushing row by row, pays Rhai's size check of the whole result
/// on every push.
pub fn join_rows(left: rhai::Array, right: rhai::Array, keys: i64) -> Result<rhai::Array, String> {
    let keys = usize::try_from(keys).ok().filter(|k| *k > 0).ok_or_else(|| {
        format!("join_rows: keys is {keys}; it is how many leading cells of a row make its key (1 or more)")
    })?;
    let mut joined: BTreeMap<Vec<KeyCell>, (rhai::Array, Option<rhai::Array>, Option<rhai::Array>)> = BTreeMap::new();
    let mut widths = [None::<usize>; 2];
    for (side, (name, rows)) in [("left", left), ("right", right)].into_iter().enumerate() {
        for (n, row) in rows.into_iter().enumerate() {
            let where_ = || format!("join_rows: {name} row {}", n + 1);
            let row = row.into_array().map_err(|t| format!("{}: is {t}, not an array", where_()))?;
            if row.len() < keys {
                return Err(format!("{}: has {} cells, fewer than the {keys} key cells", where_(), row.len()));
            }
            match widths[side] {
                Some(w) if w != row.len() => {
                    return Err(format!("{}: has {} cells where the rows before have {w}", where_(), row.len()))
                }
                _ => widths[side] = Some(row.len()),
            }
            let mut key = Vec::with_capacity(keys);
            for (i, cell) in row[..keys].iter().enumerate() {
                key.push(KeyCell::of(cell).ok_or_else(|| {
                    format!(
                        "{}: key cell {} is {}; keys are text, numbers, booleans or ()",
                        where_(),
                        i + 1,
                        cell.type_name()
                    )
                })?);
            }
            let mut row = row;
            let rest = row.split_off(keys);
            let entry = joined.entry(key).or_insert_with(|| (row, None, None));
            let slot = if side == 0 { &mut entry.1 } else { &mut entry.2 };
            if slot.is_some() {
                return Err(format!(
                    "{}: its key is on an earlier {name} row too; keys must be unique per side",
                    where_()
                ));
            }
            *slot = Some(rest);
        }
    }
    // A side without rows has no width of its own: it is taken to be as wide as the other
    // (two tallies of the same keys are).
    let [lw, rw] = match widths {
        [Some(l), Some(r)] => [l - keys, r - keys],
        [Some(w), None] | [None, Some(w)] => [w - keys, w - keys],
        [None, None] => [0, 0],
    };
    Ok(joined
        .into_values()
        .map(|(mut row, l, r)| {
            row.extend(l.unwrap_or_else(|| vec![Dynamic::UNIT; lw]));
            row.extend(r.unwrap_or_else(|| vec![Dynamic::UNIT; rw]));
            Dynamic::from_array(row)
        })
        .collect())
}
