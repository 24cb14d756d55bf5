//! RFM segments of clients: how recently each bought (recency), how often (frequency) and
//! how much (monetary), each scored 1–5 by quintile among the clients of its currency, and a
//! segment named from recency and frequency — the loyalty analysis that says whom to keep,
//! whom to win back and whom to let go.
//!
//! A purchase is a completed shipment (the revenue ABC/XYZ and BCG count), by its date.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::clients::{last_day, today, DocScope};
use super::scope::dec;
use super::{column, split, Filter, Rows};
use crate::hooks::View;
use crate::id::{IdMap, PartnerId};
use crate::report::ColumnType;
use crate::store::DocumentRow;
use crate::values::Currency;

pub(super) const ABOUT: &str = "clients by recency, frequency and monetary value of their purchases (completed shipments) in the period, each scored 1–5 by quintile within the currency, and the segment recency and frequency name: champions, loyal, new, promising, needs attention, at risk, hibernating, lost";

/// A client's purchases in one currency.
#[derive(Clone, Copy)]
pub(super) struct Purchases {
    last: NaiveDate,
    count: u64,
    revenue: Decimal,
}

/// The segment of a client scored `r` for recency and `f` for frequency (the first rule
/// that holds).
pub fn segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (4.., 4..) => "champions",
        (3.., 3..) => "loyal",
        (4.., 1) => "new",
        (4.., _) => "promising",
        (..=2, 3..) => "at risk",
        (1, 1) => "lost",
        (..=2, _) => "hibernating",
        _ => "needs attention",
    }
}

/// The quintile score of each of `values` (1–5): 1 + ⌊5 × the share of values below it⌋,
/// so that equal values score alike and the best fifth scores 5.
fn quintiles<T: PartialOrd + Copy>(values: &[T]) -> Vec<u8> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = values.len().max(1);
    values.iter().map(|v| 1 + (5 * sorted.partition_point(|s| s < v) / n) as u8).collect()
}

/// A client scored: its id, purchases and the scores for recency, frequency and monetary.
pub(super) type Scored = (PartnerId, Purchases, u8, u8, u8);

/// Every client with a purchase from `from` (none: the first) to `to` that `scope` admits,
/// scored among the clients of its currency.
pub(super) fn scores(
    view: &dyn View,
    scope: &DocScope,
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> Result<BTreeMap<Currency, Vec<Scored>>, String> {
    let parts =
        split::fold_shipments(view, IdMap::<(PartnerId, Currency), Purchases>::default, |clients, d: &DocumentRow| {
            if !scope.counts(d, from, to) {
                return Ok(());
            }
            let p = clients.entry((d.partner, d.amount.currency)).or_insert(Purchases {
                last: d.date,
                count: 0,
                revenue: Decimal::ZERO,
            });
            p.last = p.last.max(d.date);
            p.count += 1;
            p.revenue += d.amount.amount;
            Ok(())
        })?;
    let mut clients: IdMap<(PartnerId, Currency), Purchases> = IdMap::default();
    for part in parts {
        for (key, p) in part {
            clients
                .entry(key)
                .and_modify(|mine| {
                    mine.last = mine.last.max(p.last);
                    mine.count += p.count;
                    mine.revenue += p.revenue;
                })
                .or_insert(p);
        }
    }
    let mut by_currency: BTreeMap<Currency, Vec<(PartnerId, Purchases)>> = BTreeMap::new();
    for ((p, c), purchases) in clients {
        by_currency.entry(c).or_default().push((p, purchases));
    }
    let mut out = BTreeMap::new();
    for (currency, list) in by_currency {
        // Recency scores the other way round: fewer days since the last purchase is better.
        let days: Vec<i64> = list.iter().map(|(_, p)| -(to - p.last).num_days()).collect();
        let r = quintiles(&days);
        let f = quintiles(&list.iter().map(|(_, p)| p.count).collect::<Vec<_>>());
        let m = quintiles(&list.iter().map(|(_, p)| p.revenue).collect::<Vec<_>>());
        let scored = list.into_iter().enumerate().map(|(i, (p, purchases))| (p, purchases, r[i], f[i], m[i])).collect();
        out.insert(currency, scored);
    }
    Ok(out)
}

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = DocScope::new(view, filter)?;
    let to = last_day(filter, today(view));
    let by_currency = scores(view, &scope, filter.from, to)?;
    let ids: HashSet<PartnerId> = by_currency.values().flatten().map(|s| s.0).collect();
    let names = split::partner_names(view, &ids)?;

    let columns = vec![
        column("currency", ColumnType::Text),
        column("partner", ColumnType::Text),
        column("name", ColumnType::Text),
        column("last_purchase", ColumnType::Text),
        column("recency_days", ColumnType::Int),
        column("purchases", ColumnType::Int),
        column("revenue", ColumnType::Decimal),
        column("r", ColumnType::Int),
        column("f", ColumnType::Int),
        column("m", ColumnType::Int),
        column("rfm", ColumnType::Text),
        column("segment", ColumnType::Text),
    ];
    let mut rows = Vec::new();
    for (currency, list) in by_currency {
        let mut scored: Vec<(u8, u8, u8, String, PartnerId, Purchases)> = list
            .into_iter()
            .map(|(p, purchases, r, f, m)| {
                let name = names.get(&p).cloned().unwrap_or_else(|| p.to_string());
                (r, f, m, name, p, purchases)
            })
            .collect();
        // The best first: scores, then revenue, then name and id (the order is total).
        scored.sort_by(|a, b| {
            (b.0, b.1, b.2)
                .cmp(&(a.0, a.1, a.2))
                .then_with(|| b.5.revenue.cmp(&a.5.revenue))
                .then_with(|| (&a.3, a.4).cmp(&(&b.3, b.4)))
        });
        for (r, f, m, name, p, purchases) in scored {
            rows.push(vec![
                Value::from(currency.to_string()),
                Value::from(p.to_string()),
                Value::from(name),
                Value::from(purchases.last.to_string()),
                Value::from((to - purchases.last).num_days()),
                Value::from(purchases.count),
                dec(Some(purchases.revenue)),
                Value::from(r),
                Value::from(f),
                Value::from(m),
                Value::from(format!("{r}{f}{m}")),
                Value::from(segment(r, f)),
            ]);
        }
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recency_and_frequency_score_names_one_segment() {
        let mut seen = std::collections::BTreeMap::new();
        for r in 1..=5 {
            for f in 1..=5 {
                *seen.entry(segment(r, f)).or_insert(0) += 1;
            }
        }
        // champions: R 4–5 × F 4–5; loyal: R 3–5 × F 3–5 less those; new: R 4–5, F 1;
        // promising: R 4–5, F 2; needs attention: R 3, F 1–2; at risk: R 1–2 × F 3–5;
        // lost: R 1, F 1; hibernating: R 1–2, F 1–2 less lost.
        let want = [
            ("at risk", 6),
            ("champions", 4),
            ("hibernating", 3),
            ("lost", 1),
            ("loyal", 5),
            ("needs attention", 2),
            ("new", 2),
            ("promising", 2),
        ];
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn quintiles_score_equal_values_alike_and_the_best_fifth_five() {
        assert_eq!(quintiles(&[10, 20, 30, 40, 50]), vec![1, 2, 3, 4, 5]);
        assert_eq!(quintiles(&[7, 7, 7]), vec![1, 1, 1]);
        // Ten values: two per fifth; a tie takes the score of the first of them.
        assert_eq!(quintiles(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 9]), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(quintiles(&[3, 1, 2]), vec![4, 1, 2]);
        assert_eq!(quintiles::<i64>(&[]), Vec::<u8>::new());
    }
}
