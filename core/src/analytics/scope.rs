//! What the lost-deals and managers reports share: the period and instant a [`Filter`]
//! names, which deals and users it lets through, and the replay of the stage history that
//! tells how each deal stood (won, lost, since when, in which stage) at that instant.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;

use super::{split, Filter};
use crate::hooks::View;
use crate::id::{PartnerId, UserId};
use crate::model::StageChange;
pub(super) use crate::store::{closing, Closing};
use crate::store::{DealHead, DealRow};
use crate::time::Timestamp;

/// Milliseconds in a day.
pub(super) const DAY_MS: i64 = 86_400_000;

/// A user as the reports name them.
pub(super) struct Person {
    pub login: String,
    pub name: String,
    pub department: Option<String>,
    /// Active and holding the manager role: listed by the managers report even when idle.
    pub sells: bool,
}

/// The filter resolved against the store: its period as instants, its users and segment.
pub(super) struct Scope<'f> {
    pub filter: &'f Filter,
    /// The instant the state is replayed to (the end of `as_of`, else the end of time).
    pub instant: Timestamp,
    /// The period's first instant.
    pub start: Option<Timestamp>,
    /// The first instant after the period.
    pub end: Option<Timestamp>,
    /// Every user (users are few next to deals).
    pub people: HashMap<UserId, Person>,
    /// The partners in the filter's segment (only when it names one).
    segment: Option<HashSet<PartnerId>>,
}

impl<'f> Scope<'f> {
    /// Resolves `filter`; without `as_of` the state is the current one.
    pub fn new(view: &dyn View, filter: &'f Filter, now: Timestamp) -> Result<Scope<'f>, String> {
        let mut people = HashMap::new();
        view.each_user(&mut |u| {
            let sells = u.active && u.roles.contains(&crate::model::Role::Manager);
            people.insert(
                u.id,
                Person { login: u.login.clone(), name: u.name.clone(), department: u.department.clone(), sells },
            );
            true
        })
        .map_err(|e| e.to_string())?;
        let segment = match &filter.segment {
            Some(seg) => {
                let mut ids = HashSet::new();
                view.each_partner(&mut |p| {
                    if p.segment.as_deref() == Some(seg.as_str()) {
                        ids.insert(p.id);
                    }
                    true
                })
                .map_err(|e| e.to_string())?;
                Some(ids)
            }
            None => None,
        };
        Ok(Scope {
            filter,
            instant: filter.instant(now),
            start: filter.from.map(Timestamp::start_of),
            end: filter.to.map(|d| Timestamp::start_of(d.succ_opt().unwrap_or(d))),
            people,
            segment,
        })
    }

    /// Whether `t` falls in the period and is not after the instant.
    pub fn in_period(&self, t: Timestamp) -> bool {
        t <= self.instant && self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t < e)
    }

    /// Whether `user` is in the filter's department (any user when it names none).
    pub fn in_department(&self, user: UserId) -> bool {
        match &self.filter.department {
            Some(dep) => self.people.get(&user).is_some_and(|p| p.department.as_deref() == Some(dep.as_str())),
            None => true,
        }
    }

    /// Whether `partner` is in the filter's segment (any partner when it names none).
    pub fn in_segment(&self, partner: PartnerId) -> bool {
        self.segment.as_ref().is_none_or(|s| s.contains(&partner))
    }

    /// Whether no step of any deal's history lies after the instant: every deal had been
    /// created by then, and its head tells how it stood.
    pub fn nothing_after(&self, view: &dyn View) -> Result<bool, String> {
        Ok(view.latest_step_at().map_err(|e| e.to_string())?.is_none_or(|latest| latest <= self.instant))
    }

    /// Whether the kind, department and segment let `deal` through (the team's deals).
    pub fn team_deal(&self, deal: &DealHead) -> bool {
        self.filter.kind.as_ref().is_none_or(|k| *k == deal.kind)
            && self.in_department(deal.manager)
            && self.in_segment(deal.partner)
            && deal.created_at <= self.instant
    }

    /// Whether the whole filter, manager included, lets `deal` through.
    pub fn deal(&self, deal: &DealHead) -> bool {
        self.team_deal(deal) && self.filter.manager.is_none_or(|m| m == deal.manager)
    }
}

/// Folds every deal with how it stood at the scope's instant if it was closed then, the
/// deal's scan split across the cores ([`split::fold`]); `step` filters what it counts.
/// Without `as_of`, or with one no step of any history is after, the deals' heads answer
/// (their closing holds from each deal's last step on; a deal with a step after the
/// instant — the clock's now, for a report that looks at it — has its history read after
/// the scan, on the calling thread). With an earlier `as_of` every deal's history is
/// replayed from its scan row, into a head filled from the row.
pub(super) fn fold_deals<A: Send>(
    view: &dyn View,
    scope: &Scope<'_>,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, &DealHead, Option<Closing<'_>>) -> Result<(), String> + Sync,
) -> Result<Vec<A>, String> {
    let instant = scope.instant;
    let heads_hold = scope.filter.as_of.is_none() || scope.nothing_after(view)?;
    if !heads_hold {
        let parts = split::fold(
            view,
            || (init(), DealHead::default()),
            |(acc, head), row: &DealRow| {
                head.fill(row);
                step(acc, head, closing(&row.steps, instant))
            },
        )?;
        return Ok(parts.into_iter().map(|(acc, _)| acc).collect());
    }
    let parts = split::fold(
        view,
        || (init(), Vec::new()),
        |(acc, later), head: &DealHead| match head.closing_at(instant) {
            Some(closed) => step(acc, head, closed),
            None => {
                later.push(head.clone());
                Ok(())
            }
        },
    )?;
    let (mut accs, later): (Vec<A>, Vec<Vec<DealHead>>) = parts.into_iter().unzip();
    let first = accs.first_mut().expect("a fold makes at least one accumulator");
    for head in later.iter().flatten() {
        let steps = view.history(head.id).map_err(|e| e.to_string())?;
        step(first, head, closing(&steps, instant))?;
    }
    Ok(accs)
}

/// Days in `ms` milliseconds, to one decimal.
pub(super) fn days(ms: Decimal) -> Decimal {
    (ms / Decimal::from(DAY_MS)).round_dp(1).normalize()
}

/// The median and the mean of `values` (milliseconds) in days, none when empty.
pub(super) fn median_mean_days(values: &mut [i64]) -> (Option<Decimal>, Option<Decimal>) {
    if values.is_empty() {
        return (None, None);
    }
    values.sort_unstable();
    let n = values.len();
    let median = if n % 2 == 1 {
        Decimal::from(values[n / 2])
    } else {
        (Decimal::from(values[n / 2 - 1]) + Decimal::from(values[n / 2])) / Decimal::TWO
    };
    let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
    let mean = Decimal::from_i128_with_scale(sum, 0) / Decimal::from(n as u64);
    (Some(days(median)), Some(days(mean)))
}

/// `part` of `whole` in percent, to one decimal (none when `whole` is zero).
pub(super) fn percent(part: u64, whole: u64) -> Option<Decimal> {
    (whole > 0).then(|| (Decimal::from(part) * Decimal::ONE_HUNDRED / Decimal::from(whole)).round_dp(1).normalize())
}

/// A decimal as a report value (its exact text without trailing zeros, so that amounts
/// written `100000` and `100000.00` print alike), or null.
pub(super) fn dec(d: Option<Decimal>) -> serde_json::Value {
    d.map_or(serde_json::Value::Null, |d| serde_json::Value::String(d.normalize().to_string()))
}

/// What [`each_deal_with_history`] calls with each deal and its steps; an error stops it.
pub(super) type Visit<'a> = dyn FnMut(&DealRow, &[StageChange]) -> Result<(), String> + 'a;

/// Visits every deal `admit` lets through with its stage history, in id order: one pass
/// over the scan layout, holding one deal at a time. A deal without steps (only a damaged
/// store has one) is passed over.
pub(super) fn each_deal_with_history(
    view: &dyn crate::hooks::View,
    admit: &dyn Fn(&DealRow) -> bool,
    f: &mut Visit<'_>,
) -> Result<(), String> {
    let mut failed = None;
    view.scan_deals(&mut |d| {
        if d.steps.is_empty() || !admit(d) {
            return true;
        }
        match f(d, &d.steps) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .map_err(|e| e.to_string())?;
    failed.map_or(Ok(()), Err)
}
