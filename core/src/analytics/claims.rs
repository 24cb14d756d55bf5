//! Claims work: the claims registered in the period, and the state of every claim at the
//! period's end, in total and by type, cause, partner and responsible person — how many were
//! registered, how many wait for their decision at the end and how many of those are past
//! the day they were due by, how many were decided in the period and how (satisfied, partly,
//! rejected), the amounts claimed and settled, and how long a decision took. Each claim's
//! state at a day is replayed from its steps, so a period in the past reads as it stood then.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::clients::{last_day, today};
use super::scope::dec;
use super::{column, Filter, Rows};
use crate::hooks::View;
use crate::id::{PartnerId, UserId};
use crate::model::{Claim, ClaimAction, ClaimStatus, ClaimStep, Decision};
use crate::report::ColumnType;
use crate::values::Currency;

pub(super) const ABOUT: &str = "claims in total and by type, cause, partner and responsible person: registered in the period, open and overdue at its end, decided in it (satisfied, partly satisfied, rejected), amounts claimed (of those registered) and settled (of those decided), days from registration to decision (average and median); per currency";

/// How a claim stood at the end of a day, replayed from its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub status: ClaimStatus,
    /// The day its answer was due by then (a postponement's, or the due date).
    pub due_by: NaiveDate,
    /// Its decision step standing then (none when undecided or reopened since).
    pub decided: Option<(NaiveDate, Decision)>,
}

/// How `claim` stood at the end of `day` (`None`: not registered yet).
pub fn standing(claim: &Claim, day: NaiveDate) -> Option<Standing> {
    let mut out: Option<Standing> = None;
    let due = claim.due.unwrap_or_else(|| claim.registered_on());
    let mut decision: Option<&ClaimStep> = None;
    for s in claim.steps.iter().take_while(|s| s.at.date() <= day) {
        let o = out.get_or_insert(Standing { status: s.to, due_by: due, decided: None });
        o.status = s.to;
        match s.action {
            ClaimAction::Postpone => o.due_by = s.until.unwrap_or(o.due_by),
            ClaimAction::Decide => decision = Some(s),
            ClaimAction::Reopen => decision = None,
            _ => {}
        }
        o.decided = decision.and_then(|d| Some((d.at.date(), d.decision?)));
    }
    out.filter(|_| claim.registered_on() <= day)
}

/// One row's figures.
#[derive(Default)]
struct Figures {
    registered: u64,
    open: u64,
    overdue: u64,
    decided: u64,
    satisfied: u64,
    partly: u64,
    rejected: u64,
    claimed: Decimal,
    settled: Decimal,
    days: Vec<i64>,
}

/// A row's key: the dimension, the key within it, and the currency.
type Key = (u8, String, Currency);

const DIMENSIONS: [&str; 5] = ["total", "type", "cause", "partner", "responsible"];

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let e = |e: crate::Error| e.to_string();
    let to = last_day(filter, today(view));
    let from = filter.from.unwrap_or(NaiveDate::MIN);
    let settings = view.settings();
    let default_currency = settings.default_currency;
    let mut figures: BTreeMap<Key, Figures> = BTreeMap::new();
    let mut names: BTreeMap<(u8, String), String> = BTreeMap::new();
    let mut partners: BTreeMap<PartnerId, Option<(String, Option<String>)>> = BTreeMap::new();
    let mut users: BTreeMap<UserId, Option<(String, String, Option<String>)>> = BTreeMap::new();
    let mut failed: Option<String> = None;
    view.each_claim(&mut |c| {
        let Some(now) = standing(c, to) else { return true };
        let r = (|| -> Result<bool, String> {
            let user = match users.get(&c.responsible) {
                Some(u) => u.clone(),
                None => {
                    let u =
                        view.user(c.responsible).map_err(|e| e.to_string())?.map(|u| (u.login, u.name, u.department));
                    users.insert(c.responsible, u.clone());
                    u
                }
            };
            let partner = match partners.get(&c.partner) {
                Some(p) => p.clone(),
                None => {
                    let p = view.partner(c.partner).map_err(|e| e.to_string())?.map(|p| (p.name, p.segment));
                    partners.insert(c.partner, p.clone());
                    p
                }
            };
            let by_manager = filter.manager.is_none_or(|m| m == c.responsible);
            let by_department =
                filter.department.as_ref().is_none_or(|d| user.as_ref().and_then(|u| u.2.as_ref()) == Some(d));
            let by_segment =
                filter.segment.as_ref().is_none_or(|s| partner.as_ref().and_then(|p| p.1.as_ref()) == Some(s));
            if !(by_manager && by_department && by_segment) {
                return Ok(true);
            }
            let currency = c.claimed.or(c.settled).map_or(default_currency, |m| m.currency);
            let type_name = settings.claim_types.iter().find(|t| t.id == c.kind);
            let cause_name = type_name.and_then(|t| t.causes.iter().find(|x| x.id == c.cause));
            let keys = [
                (0u8, String::new(), String::new()),
                (1, c.kind.clone(), type_name.map_or(c.kind.clone(), |t| t.name.clone())),
                (2, format!("{}/{}", c.kind, c.cause), cause_name.map_or(c.cause.clone(), |x| x.name.clone())),
                (3, c.partner.to_string(), partner.as_ref().map_or(String::new(), |p| p.0.clone())),
                (
                    4,
                    user.as_ref().map_or(c.responsible.to_string(), |u| u.0.clone()),
                    user.as_ref().map_or(String::new(), |u| u.1.clone()),
                ),
            ];
            let registered = c.registered_on();
            let in_period = |d: NaiveDate| d >= from && d <= to;
            for (dim, key, name) in keys {
                names.entry((dim, key.clone())).or_insert(name);
                let f = figures.entry((dim, key, currency)).or_default();
                if in_period(registered) {
                    f.registered += 1;
                    f.claimed += c.claimed.map_or(Decimal::ZERO, |m| m.amount);
                }
                if now.status.is_open() {
                    f.open += 1;
                    f.overdue += u64::from(to > now.due_by);
                }
                if let Some((day, decision)) = now.decided.filter(|(d, _)| in_period(*d)) {
                    f.decided += 1;
                    match decision {
                        Decision::Satisfied => f.satisfied += 1,
                        Decision::PartlySatisfied => f.partly += 1,
                        Decision::Rejected => f.rejected += 1,
                    }
                    // The settlement of the decision that stands: the claim's own while it
                    // is decided, else the step's.
                    let step = c.steps.iter().rev().find(|s| s.action == ClaimAction::Decide && s.at.date() <= to);
                    f.settled += step.and_then(|s| s.settled).map_or(Decimal::ZERO, |m| m.amount);
                    f.days.push((day - registered).num_days());
                }
            }
            Ok(true)
        })();
        match r {
            Ok(go) => go,
            Err(m) => {
                failed = Some(m);
                false
            }
        }
    })
    .map_err(e)?;
    if let Some(m) = failed {
        return Err(m);
    }
    let columns = vec![
        column("by", ColumnType::Text),
        column("key", ColumnType::Text),
        column("name", ColumnType::Text),
        column("currency", ColumnType::Text),
        column("registered", ColumnType::Int),
        column("open", ColumnType::Int),
        column("overdue", ColumnType::Int),
        column("decided", ColumnType::Int),
        column("satisfied", ColumnType::Int),
        column("partly_satisfied", ColumnType::Int),
        column("rejected", ColumnType::Int),
        column("claimed", ColumnType::Decimal),
        column("settled", ColumnType::Decimal),
        column("avg_days_to_decide", ColumnType::Decimal),
        column("median_days_to_decide", ColumnType::Decimal),
    ];
    // Within a dimension, the most claims first.
    let mut ordered: Vec<(&Key, &Figures)> = figures.iter().collect();
    ordered.sort_by(|(a, fa), (b, fb)| {
        (a.0, std::cmp::Reverse(fa.registered + fa.open), &a.1, a.2).cmp(&(
            b.0,
            std::cmp::Reverse(fb.registered + fb.open),
            &b.1,
            b.2,
        ))
    });
    let mut rows = Vec::new();
    for ((dim, key, currency), f) in ordered {
        let mut days = f.days.clone();
        days.sort_unstable();
        let avg = (!days.is_empty())
            .then(|| (Decimal::from(days.iter().sum::<i64>()) / Decimal::from(days.len())).round_dp(1));
        let median = match days.len() {
            0 => None,
            n if n % 2 == 1 => Some(Decimal::from(days[n / 2])),
            n => Some(Decimal::from(days[n / 2 - 1] + days[n / 2]) / Decimal::TWO),
        };
        rows.push(vec![
            Value::from(DIMENSIONS[*dim as usize]),
            Value::from(key.clone()),
            Value::from(names.get(&(*dim, key.clone())).cloned().unwrap_or_default()),
            Value::from(currency.to_string()),
            Value::from(f.registered),
            Value::from(f.open),
            Value::from(f.overdue),
            Value::from(f.decided),
            Value::from(f.satisfied),
            Value::from(f.partly),
            Value::from(f.rejected),
            dec(Some(f.claimed)),
            dec(Some(f.settled)),
            dec(avg),
            dec(median),
        ]);
    }
    Ok((columns, rows))
}
