//! Retention and churn by cohort month: the clients who first bought in a month (a cohort),
//! and month by month after it how many of them bought again and how many never did after.
//!
//! A purchase is a completed shipment (the revenue ABC/XYZ, BCG and RFM count), by its date.

use std::collections::BTreeMap;

use chrono::Datelike;
use rust_decimal::Decimal;
use serde_json::Value;

use super::clients::{last_day, today, DocScope};
use super::scope::dec;
use super::{column, split, Filter, Rows};
use crate::hooks::View;
use crate::id::{IdMap, PartnerId};
use crate::report::ColumnType;
use crate::store::DocumentRow;

pub(super) const ABOUT: &str = "clients by the month of their first purchase (completed shipment): month by month after it, how many bought again (retention) and how many never bought after (churn), in counts and percent";

/// A month as a number: year × 12 + month − 1.
type Month = i32;

fn month_of(d: chrono::NaiveDate) -> Month {
    d.year() * 12 + d.month0() as i32
}

fn month_name(m: Month) -> String {
    format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1)
}

/// `part` of `whole` in percent, to one decimal.
fn pct(part: u64, whole: u64) -> Decimal {
    (Decimal::from(part) * Decimal::ONE_HUNDRED / Decimal::from(whole.max(1))).round_dp(1).normalize()
}

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = DocScope::new(view, filter)?;
    let to = last_day(filter, today(view));
    // Each client's months with a purchase, in order: the whole history up to the last day
    // (a cohort is the month of the first purchase ever, whatever the period).
    let parts = split::fold_shipments(view, IdMap::<PartnerId, Vec<Month>>::default, |clients, d: &DocumentRow| {
        if !scope.counts(d, None, to) {
            return Ok(());
        }
        add(clients.entry(d.partner).or_default(), month_of(d.date));
        Ok(())
    })?;
    let mut clients: IdMap<PartnerId, Vec<Month>> = IdMap::default();
    for part in parts {
        for (p, months) in part {
            let mine = clients.entry(p).or_default();
            for m in months {
                add(mine, m);
            }
        }
    }
    let last = month_of(to);
    let first = filter.from.map(month_of);
    // Per cohort: its size, the clients active at each month after it, and how many had
    // their last purchase at each month after it.
    let mut cohorts: BTreeMap<Month, (u64, Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for months in clients.values() {
        let (Some(&start), Some(&end)) = (months.first(), months.last()) else { continue };
        if first.is_some_and(|f| start < f) {
            continue;
        }
        let span = (last - start + 1) as usize;
        let (size, active, ended) = cohorts.entry(start).or_insert_with(|| (0, vec![0; span], vec![0; span]));
        *size += 1;
        for m in months {
            active[(m - start) as usize] += 1;
        }
        ended[(end - start) as usize] += 1;
    }

    let columns = vec![
        column("cohort", ColumnType::Text),
        column("clients", ColumnType::Int),
        column("month", ColumnType::Text),
        column("months_since", ColumnType::Int),
        column("active", ColumnType::Int),
        column("retention_pct", ColumnType::Decimal),
        column("churned", ColumnType::Int),
        column("churn_pct", ColumnType::Decimal),
    ];
    let mut rows = Vec::new();
    for (start, (size, active, ended)) in cohorts {
        // Churned at month k: the clients whose last purchase was before it.
        let mut churned = 0;
        for (k, a) in active.iter().enumerate() {
            rows.push(vec![
                Value::from(month_name(start)),
                Value::from(size),
                Value::from(month_name(start + k as Month)),
                Value::from(k as u64),
                Value::from(*a),
                dec(Some(pct(*a, size))),
                Value::from(churned),
                dec(Some(pct(churned, size))),
            ]);
            churned += ended[k];
        }
    }
    Ok((columns, rows))
}

/// Adds `month` to a client's months (in order, each once). Shipments come mostly in date
/// order: most repeat the last month or follow it.
fn add(months: &mut Vec<Month>, month: Month) {
    match months.last() {
        Some(m) if *m == month => {}
        Some(m) if *m > month => {
            if let Err(i) = months.binary_search(&month) {
                months.insert(i, month);
            }
        }
        _ => months.push(month),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_numbered_and_named_and_kept_once_in_order() {
        let d = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
        assert_eq!(month_name(month_of(d("2025-12-31"))), "2025-12");
        assert_eq!(month_of(d("2026-01-01")) - month_of(d("2025-12-31")), 1);
        let mut months = Vec::new();
        for m in [5, 5, 7, 6, 7, 1, 9] {
            add(&mut months, m);
        }
        assert_eq!(months, vec![1, 5, 6, 7, 9]);
        assert_eq!(pct(1, 3), Decimal::new(333, 1));
    }
}
