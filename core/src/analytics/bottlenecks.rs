//! The bottlenecks report: per stage of each process kind, how long deals stay (the visits
//! that ended in the period: median, 90th percentile, longest), how many left it lost, how
//! many overstayed the stage's SLA, which deals sit in it now and how many of them are stuck
//! (past the stage's SLA, or past its 90th percentile when it has none), and the median of
//! the instant's month against the month before. One pass over the deals' rows with their
//! stage history (split across the cores); what is held is a duration per finished visit and
//! per deal in a stage now, never the deals.

use std::collections::HashMap;

use chrono::Datelike;
use rust_decimal::Decimal;
use serde_json::Value;

use super::scope::{days, dec, percent};
use super::{column, split, Filter, Rows};
use crate::hooks::View;
use crate::model::{DealStatus, How, StageChange};
use crate::process::spec::ProcessKindSpec;
use crate::report::ColumnType;
use crate::store::DealRow;
use crate::time::Timestamp;

pub(super) const ABOUT: &str = "per stage: time in it (median, 90th percentile, longest) of the visits that ended in the period, how many left it lost, SLA breaches, deals in it now and how many are stuck, the median this month against the month before";

/// What one stage gathers.
#[derive(Default)]
struct Stage {
    /// The time spent in each visit that ended in the period, in ms.
    dwell: Vec<i64>,
    /// Visits that ended in the period with the deal lost.
    dropped: u64,
    /// Visits that ended in the period past the stage's SLA.
    breaches: u64,
    /// How long each deal in the stage at the instant has been in it, in ms.
    now: Vec<i64>,
    /// Visits that ended in the instant's month, and in the month before.
    this_month: Vec<i64>,
    previous_month: Vec<i64>,
}

impl Stage {
    /// Adds what another part of the scan gathered for the same stage.
    fn absorb(&mut self, other: Stage) {
        self.dwell.extend(other.dwell);
        self.dropped += other.dropped;
        self.breaches += other.breaches;
        self.now.extend(other.now);
        self.this_month.extend(other.this_month);
        self.previous_month.extend(other.previous_month);
    }
}

pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let settings = view.settings();
    let kinds: Vec<&ProcessKindSpec> = settings
        .process_kinds
        .iter()
        .filter(|k| !k.stages.is_empty() && filter.kind.as_ref().is_none_or(|f| *f == k.id))
        .collect();
    if kinds.is_empty() {
        let k = filter.kind.as_deref().unwrap_or_default();
        return Err(format!("parameter kind: process kind \"{k}\" has no stages to find bottlenecks in"));
    }
    let empty =
        || -> Vec<Vec<Stage>> { kinds.iter().map(|k| k.stages.iter().map(|_| Stage::default()).collect()).collect() };
    let kind_of: HashMap<&str, usize> = kinds.iter().enumerate().map(|(i, k)| (k.id.as_str(), i)).collect();
    // Without `as_of`, now by the installation's clock.
    let now = filter.instant(view.now());
    let months = month_of(now);
    let scope = filter.deals(view)?;
    let visit = |tallies: &mut Vec<Vec<Stage>>, deal: &DealRow, steps: &[StageChange]| {
        let Some(&k) = kind_of.get(deal.kind.as_str()) else { return };
        let spec = kinds[k];
        let index = |stage: &Option<String>| stage.as_deref().and_then(|s| spec.stages.iter().position(|x| x.id == s));
        let mut state: Option<(Option<usize>, DealStatus, Timestamp)> = None;
        for c in steps.iter().filter(|c| c.at <= now) {
            if let (Some(from), Some(dwell)) = (index(&c.from_stage), c.dwell_ms) {
                if filter.in_period(c.at) {
                    let stage = &mut tallies[k][from];
                    stage.dwell.push(dwell);
                    stage.dropped += u64::from(c.to_status == DealStatus::Lost);
                    stage.breaches += u64::from(spec.stages[from].sla_ms.is_some_and(|sla| dwell > sla));
                }
                let month = month_of(c.at);
                if month == months {
                    tallies[k][from].this_month.push(dwell);
                } else if month == previous(months) {
                    tallies[k][from].previous_month.push(dwell);
                }
            }
            let enters = matches!(c.how, How::Create | How::Reopen) || c.from_stage != c.to_stage;
            let entered = match state {
                Some((_, _, at)) if !enters => at,
                _ => c.at,
            };
            state = Some((index(&c.to_stage), c.to_status, entered));
        }
        if let Some((Some(stage), DealStatus::InProgress, entered)) = state {
            tallies[k][stage].now.push(now.0 - entered.0);
        }
    };
    let mut parts = split::fold(view, empty, |tallies, deal: &DealRow| {
        if !deal.steps.is_empty() && scope.admits(deal) {
            visit(tallies, deal, &deal.steps);
        }
        Ok(())
    })?
    .into_iter();
    let mut tallies = parts.next().unwrap_or_else(empty);
    for part in parts {
        for (stages, more) in tallies.iter_mut().zip(part) {
            for (stage, more) in stages.iter_mut().zip(more) {
                stage.absorb(more);
            }
        }
    }

    let columns = vec![
        column("kind", ColumnType::Text),
        column("stage", ColumnType::Text),
        column("stage_name", ColumnType::Text),
        column("visits", ColumnType::Int),
        column("p50_days", ColumnType::Decimal),
        column("p90_days", ColumnType::Decimal),
        column("max_days", ColumnType::Decimal),
        column("dropped", ColumnType::Int),
        column("drop_off_pct", ColumnType::Decimal),
        column("sla_days", ColumnType::Decimal),
        column("sla_breaches", ColumnType::Int),
        column("in_stage_now", ColumnType::Int),
        column("stuck_now", ColumnType::Int),
        column("p50_days_this_month", ColumnType::Decimal),
        column("p50_days_previous_month", ColumnType::Decimal),
    ];
    let mut rows = Vec::new();
    for (spec, stages) in kinds.iter().zip(tallies.iter_mut()) {
        for (s, t) in spec.stages.iter().zip(stages.iter_mut()) {
            t.dwell.sort_unstable();
            let p90 = rank(&t.dwell, 90);
            let limit = s.sla_ms.or(p90);
            let stuck = limit.map_or(0, |l| t.now.iter().filter(|&&d| d > l).count());
            t.this_month.sort_unstable();
            t.previous_month.sort_unstable();
            let in_days = |ms: Option<i64>| dec(ms.map(|ms| days(Decimal::from(ms))));
            rows.push(vec![
                Value::String(spec.id.clone()),
                Value::String(s.id.clone()),
                Value::String(s.name.clone()),
                Value::from(t.dwell.len() as u64),
                in_days(rank(&t.dwell, 50)),
                in_days(p90),
                in_days(t.dwell.last().copied()),
                Value::from(t.dropped),
                dec(percent(t.dropped, t.dwell.len() as u64)),
                in_days(s.sla_ms),
                Value::from(t.breaches),
                Value::from(t.now.len() as u64),
                Value::from(stuck as u64),
                in_days(rank(&t.this_month, 50)),
                in_days(rank(&t.previous_month, 50)),
            ]);
        }
    }
    Ok((columns, rows))
}

/// The `pct`th percentile of sorted `values` by the nearest rank (the median of an even
/// count is the lower of the middle two), none when empty.
fn rank(values: &[i64], pct: usize) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let at = (pct * values.len()).div_ceil(100).max(1) - 1;
    values.get(at).copied()
}

/// A month as `year * 12 + month0`.
fn month_of(t: Timestamp) -> i32 {
    let d = t.date();
    d.year() * 12 + d.month0() as i32
}

fn previous(month: i32) -> i32 {
    month - 1
}
