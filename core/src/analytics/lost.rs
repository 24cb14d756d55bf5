//! The lost-deals report: the deals lost in the period, cut by reason, stage reached,
//! competitor, manager, process kind and month, with the lost amount and the time to loss —
//! every cut in one long table so it prints, exports and charts like any other report.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde_json::Value;

use super::scope::{closing, dec, median_mean_days, percent, Scope};
use super::{column, Filter, Rows};
use crate::hooks::View;
use crate::id::PartnerId;
use crate::model::DealStatus;
use crate::report::ColumnType;
use crate::time::Timestamp;
use crate::values::Currency;

/// The cuts, in the order their rows come.
const DIMENSIONS: [&str; 7] = ["total", "reason", "stage", "competitor", "manager", "kind", "month"];

/// What one cut's value gathers: its deals, amount and times to loss.
#[derive(Default)]
struct Cell {
    value: String,
    /// Where the value sorts in its cut when the cut has a natural order (stages, months).
    order: Option<(usize, usize)>,
    deals: u64,
    amount: Decimal,
    to_loss_ms: Vec<i64>,
}

/// A deal's place in one cut: the value's id (none where it has none), its name, and where
/// it sorts when the cut has a natural order.
type Cut = (Option<String>, String, Option<(usize, usize)>);

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = Scope::new(view, filter, Timestamp(i64::MAX))?;
    let settings = view.settings();
    // (cut, key, currency) → cell; the key is null where the value has no id.
    let mut cells: BTreeMap<(usize, Option<String>, Currency), Cell> = BTreeMap::new();
    let mut competitors: HashMap<PartnerId, String> = HashMap::new();
    let mut total = 0u64;
    let mut failure = None;
    view.scan_deals(&mut |d| {
        if !scope.deal(d) {
            return true;
        }
        let Some(loss) = closing(&d.steps, scope.instant) else { return true };
        if loss.status != DealStatus::Lost || !scope.in_period(loss.at) {
            return true;
        }
        total += 1;
        let kind = settings.process_kind(&d.kind);
        let reason = loss.note.as_deref().map(|r| {
            let name = settings.lists.loss_reasons.items.iter().find(|i| i.id == r).map_or(r, |i| &i.name);
            (r.to_string(), name.to_string())
        });
        let stage = loss.stage.as_deref().map(|s| {
            let position = kind.and_then(|k| k.stages.iter().position(|st| st.id == s));
            let name = kind.and_then(|k| k.stage(s)).map_or(s, |st| st.name.as_str());
            (s.to_string(), name.to_string(), position.unwrap_or(usize::MAX))
        });
        // The deal records the competitor of its last loss only.
        let competitor = match d.competitor.filter(|_| !loss.lost_again && d.status == DealStatus::Lost) {
            Some(id) => {
                let name = match competitors.get(&id) {
                    Some(n) => n.clone(),
                    None => match view.partner(id) {
                        Ok(p) => {
                            let n = p.map_or_else(|| id.to_string(), |p| p.name);
                            competitors.insert(id, n.clone());
                            n
                        }
                        Err(e) => {
                            failure = Some(e.to_string());
                            return false;
                        }
                    },
                };
                Some((id.to_string(), name))
            }
            None => None,
        };
        let manager = scope
            .people
            .get(&d.manager)
            .map_or_else(|| (d.manager.to_string(), d.manager.to_string()), |p| (p.login.clone(), p.name.clone()));
        let kind_position = settings.process_kinds.iter().position(|k| k.id == d.kind).unwrap_or(usize::MAX);
        let month = loss.at.date().format("%Y-%m").to_string();
        let cuts: [Cut; 7] = [
            (None, "all lost deals".into(), None),
            match reason {
                Some((id, name)) => (Some(id), name, None),
                None => (None, "(no reason recorded)".into(), None),
            },
            match stage {
                Some((id, name, position)) => (Some(id), name, Some((kind_position, position))),
                None => (None, "(no stage)".into(), Some((kind_position, usize::MAX))),
            },
            match competitor {
                Some((id, name)) => (Some(id), name, None),
                None => (None, "(none recorded)".into(), None),
            },
            (Some(manager.0), manager.1, None),
            (Some(d.kind.clone()), kind.map_or_else(|| d.kind.clone(), |k| k.name.clone()), None),
            (Some(month.clone()), month, None),
        ];
        for (dim, (key, value, order)) in cuts.into_iter().enumerate() {
            let cell = cells.entry((dim, key, d.amount.currency)).or_default();
            cell.value = value;
            cell.order = order;
            cell.deals += 1;
            cell.amount += d.amount.amount;
            cell.to_loss_ms.push(loss.at.0 - d.created_at.0);
        }
        true
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = failure {
        return Err(e);
    }

    // Within a cut: stages in route order, months in time order, the rest by deals (over
    // every currency) then name; the currencies of a value together.
    let mut per_key: HashMap<(usize, Option<String>), u64> = HashMap::new();
    for ((dim, key, _), cell) in &cells {
        *per_key.entry((*dim, key.clone())).or_default() += cell.deals;
    }
    let mut rows: Vec<_> = cells.into_iter().collect();
    rows.sort_by(|((da, ka, ca), a), ((db, kb, cb), b)| {
        let rank = |dim: usize, key: &Option<String>, cell: &Cell| {
            let deals = per_key[&(dim, key.clone())];
            (cell.order.unwrap_or((0, 0)), if DIMENSIONS[dim] == "month" { 0 } else { u64::MAX - deals })
        };
        da.cmp(db)
            .then_with(|| rank(*da, ka, a).cmp(&rank(*db, kb, b)))
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| ka.cmp(kb))
            .then_with(|| ca.cmp(cb))
    });
    let columns = vec![
        column("dimension", ColumnType::Text),
        column("key", ColumnType::Text),
        column("value", ColumnType::Text),
        column("currency", ColumnType::Text),
        column("deals", ColumnType::Int),
        column("share_pct", ColumnType::Decimal),
        column("amount", ColumnType::Decimal),
        column("median_days_to_loss", ColumnType::Decimal),
        column("mean_days_to_loss", ColumnType::Decimal),
    ];
    let rows = rows
        .into_iter()
        .map(|((dim, key, currency), mut cell)| {
            let (median, mean) = median_mean_days(&mut cell.to_loss_ms);
            vec![
                Value::from(DIMENSIONS[dim]),
                key.map_or(Value::Null, Value::from),
                Value::from(cell.value),
                Value::from(currency.to_string()),
                Value::from(cell.deals),
                dec(percent(cell.deals, total)),
                dec(Some(cell.amount)),
                dec(median),
                dec(mean),
            ]
        })
        .collect();
    Ok((columns, rows))
}
