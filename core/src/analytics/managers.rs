//! The managers report: per manager and period, deals opened, won and lost, win rate,
//! revenue, average deal, cycle time, calls, meetings and e-mails, tasks done and overdue,
//! conversion against the team's, and the coverage of the period's `[[plans]]`.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde_json::Value;

use super::scope::{dec, fold_deals, median_mean_days, percent, Scope};
use super::{column, split, Filter, Rows};
use crate::hooks::View;
use crate::id::{DealId, IdMap, UserId};
use crate::model::{DealStatus, InteractionKind, TaskStatus};
use crate::report::ColumnType;
use crate::store::{DealHead, InteractionRow, TaskRow};
use crate::time::Timestamp;
use crate::values::{Currency, Money};

/// One manager's figures.
#[derive(Default)]
struct Figures {
    opened: u64,
    won: u64,
    lost: u64,
    /// Won deals and revenue per currency.
    revenue: BTreeMap<Currency, (u64, Decimal)>,
    cycle_ms: Vec<i64>,
    calls: u64,
    meetings: u64,
    emails: u64,
    tasks_done: u64,
    tasks_overdue: u64,
    /// Deals opened in the period, and those of them won by the instant.
    cohort: u64,
    cohort_won: u64,
    /// Won revenue within the periods of the plans in scope, in their currency.
    plan_revenue: Decimal,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.opened += o.opened;
        self.won += o.won;
        self.lost += o.lost;
        for (c, (n, a)) in &o.revenue {
            let e = self.revenue.entry(*c).or_default();
            e.0 += n;
            e.1 += a;
        }
        self.cycle_ms.extend_from_slice(&o.cycle_ms);
        self.calls += o.calls;
        self.meetings += o.meetings;
        self.emails += o.emails;
        self.tasks_done += o.tasks_done;
        self.tasks_overdue += o.tasks_overdue;
        self.cohort += o.cohort;
        self.cohort_won += o.cohort_won;
        self.plan_revenue += o.plan_revenue;
    }
}

/// A plan in scope, configured or stored.
struct Plan {
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    amount: Money,
}

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    // Tasks fall overdue against the clock; everything else is replayed to the end of time.
    let now = view.now();
    let scope = Scope::new(view, filter, Timestamp(i64::MAX))?;
    let overdue_at = filter.instant(now);
    let settings = view.settings();

    // The plans in scope: those lying within the period, by manager.
    // Config's `[[plans]]` and the plans stored over the API count alike.
    let within = |p: &Plan| filter.from.is_none_or(|f| p.from >= f) && filter.to.is_none_or(|t| p.to <= t);
    let mut plans: HashMap<UserId, Vec<Plan>> = HashMap::new();
    for (id, person) in &scope.people {
        let configured = settings.plans.iter().filter(|p| p.manager == person.login);
        for p in configured.map(|p| Plan { from: p.from, to: p.to, amount: p.amount }).filter(|p| within(p)) {
            plans.entry(*id).or_default().push(p);
        }
    }
    view.each_plan(&mut |p| {
        let plan = Plan { from: p.from, to: p.to, amount: p.amount };
        if scope.people.contains_key(&p.manager) && within(&plan) {
            plans.entry(p.manager).or_default().push(plan);
        }
        true
    })
    .map_err(|e| e.to_string())?;

    // The team's deals' managers, for interactions and tasks that name only their deal:
    // one map per part of the scan.
    let deals = fold_deals(
        view,
        &scope,
        || (IdMap::<UserId, Figures>::default(), IdMap::<DealId, UserId>::default()),
        |(figures, deal_manager), d: &DealHead, closed| {
            if !scope.team_deal(d) {
                return Ok(());
            }
            deal_manager.insert(d.id, d.manager);
            let f = figures.entry(d.manager).or_default();
            let close = closed.as_ref();
            let won_at = close.filter(|c| c.status == DealStatus::Won).map(|c| c.at);
            if scope.in_period(d.created_at) {
                f.opened += 1;
                f.cohort += 1;
                if won_at.is_some() {
                    f.cohort_won += 1;
                }
            }
            if let Some(c) = close.filter(|c| scope.in_period(c.at)) {
                if c.status == DealStatus::Won {
                    f.won += 1;
                    let e = f.revenue.entry(d.amount.currency).or_default();
                    e.0 += 1;
                    e.1 += d.amount.amount;
                    f.cycle_ms.push(c.at.0 - d.created_at.0);
                } else {
                    f.lost += 1;
                }
            }
            if let (Some(at), Some(mine)) = (won_at, plans.get(&d.manager)) {
                let day = at.date();
                if mine.iter().any(|p| p.from <= day && day <= p.to && p.amount.currency == d.amount.currency) {
                    f.plan_revenue += d.amount.amount;
                }
            }
            Ok(())
        },
    )?;
    let (mut parts, deal_managers): (Vec<_>, Vec<_>) = deals.into_iter().unzip();

    // Whether an interaction or task of `deal` (none: of no deal) counts for the team, and
    // its deal's manager: one of no deal counts unless the filter names a process kind.
    let counts = |deal: Option<DealId>| match deal {
        Some(id) => deal_managers.iter().find_map(|m| m.get(&id)).copied().map(Some),
        None if filter.kind.is_some() => None,
        None => Some(None),
    };
    // With no kind, department or segment named and every deal created by the instant,
    // every deal is the team's, so an interaction or task of a deal counts whatever the
    // deal: the store refuses to delete a deal an interaction or a task names. Its deal's
    // manager is then looked up only for an interaction without an author.
    let every_deal = filter.kind.is_none()
        && filter.department.is_none()
        && filter.segment.is_none()
        && scope.nothing_after(view)?;
    parts.extend(split::fold(view, IdMap::<UserId, Figures>::default, |figures, i: &InteractionRow| {
        if !scope.in_period(i.at) || i.kind == InteractionKind::Note {
            return Ok(());
        }
        let manager = match i.deal {
            Some(_) if every_deal && i.author.is_some() => None,
            deal => match counts(deal) {
                Some(manager) => manager,
                None => return Ok(()),
            },
        };
        if filter.segment.is_some() && !scope.in_segment(i.partner) {
            return Ok(());
        }
        let Some(who) = i.author.or(manager) else { return Ok(()) };
        if !scope.in_department(who) {
            return Ok(());
        }
        let f = figures.entry(who).or_default();
        match i.kind {
            InteractionKind::Call => f.calls += 1,
            InteractionKind::Meeting => f.meetings += 1,
            InteractionKind::Email => f.emails += 1,
            InteractionKind::Note => {}
        }
        Ok(())
    })?);
    parts.extend(split::fold(view, IdMap::<UserId, Figures>::default, |figures, t: &TaskRow| {
        let of_no_deal_in_segment = t.deal.is_none() && filter.segment.is_some();
        if !(every_deal && t.deal.is_some()) && counts(t.deal).is_none()
            || of_no_deal_in_segment
            || !scope.in_department(t.executor)
            || t.created_at > scope.instant
        {
            return Ok(());
        }
        let finished = t.finished_at.filter(|f| *f <= scope.instant);
        let done = t.status == TaskStatus::Done && finished.is_some_and(|f| scope.in_period(f));
        // Overdue: due in the period and passed (by the instant, or now), not finished by then.
        let overdue = t.due.is_some_and(|due| {
            due < overdue_at
                && scope.start.is_none_or(|s| due >= s)
                && scope.end.is_none_or(|e| due < e)
                && finished.is_none_or(|f| f > due)
        });
        if done || overdue {
            let f = figures.entry(t.executor).or_default();
            f.tasks_done += u64::from(done);
            f.tasks_overdue += u64::from(overdue);
        }
        Ok(())
    })?);
    drop(deal_managers);
    let mut figures: IdMap<UserId, Figures> = IdMap::default();
    for part in parts {
        for (id, f) in part {
            figures.entry(id).or_default().add(&f);
        }
    }

    // Every active manager of the department the view covers is listed, idle or not.
    for (id, p) in &scope.people {
        if p.sells && scope.in_department(*id) && view.covers(*id) {
            figures.entry(*id).or_default();
        }
    }
    let mut team = Figures::default();
    for f in figures.values() {
        team.add(f);
    }
    let team_conversion = percent(team.cohort_won, team.cohort);
    let mut rows: Vec<(String, Option<UserId>, Figures)> = figures
        .into_iter()
        .filter(|(id, _)| filter.manager.is_none_or(|m| m == *id))
        .map(|(id, f)| (scope.people.get(&id).map_or_else(|| id.to_string(), |p| p.login.clone()), Some(id), f))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.push(("(team)".to_string(), None, team));

    let columns = vec![
        column("manager", ColumnType::Text),
        column("name", ColumnType::Text),
        column("department", ColumnType::Text),
        column("opened", ColumnType::Int),
        column("won", ColumnType::Int),
        column("lost", ColumnType::Int),
        column("win_rate_pct", ColumnType::Decimal),
        column("currency", ColumnType::Text),
        column("revenue", ColumnType::Decimal),
        column("average_deal", ColumnType::Decimal),
        column("revenue_other_currencies", ColumnType::Text),
        column("median_cycle_days", ColumnType::Decimal),
        column("calls", ColumnType::Int),
        column("meetings", ColumnType::Int),
        column("emails", ColumnType::Int),
        column("tasks_done", ColumnType::Int),
        column("tasks_overdue", ColumnType::Int),
        column("conversion_pct", ColumnType::Decimal),
        column("team_conversion_pct", ColumnType::Decimal),
        column("plan", ColumnType::Decimal),
        column("plan_currency", ColumnType::Text),
        column("plan_revenue", ColumnType::Decimal),
        column("plan_coverage_pct", ColumnType::Decimal),
    ];
    let currency = settings.default_currency;
    let all_plans: Vec<&Plan> =
        plans.iter().filter(|(id, _)| scope.in_department(**id)).flat_map(|(_, p)| p.iter()).collect();
    let rows = rows
        .into_iter()
        .map(|(login, id, mut f)| {
            let person = id.and_then(|id| scope.people.get(&id));
            let (won_here, revenue) = f.revenue.get(&currency).copied().unwrap_or((0, Decimal::ZERO));
            let average = (won_here > 0).then(|| (revenue / Decimal::from(won_here)).round_dp(currency.minor_units()));
            let others: Vec<String> =
                f.revenue.iter().filter(|(c, _)| **c != currency).map(|(c, (_, a))| format!("{a} {c}")).collect();
            let (median_cycle, _) = median_mean_days(&mut f.cycle_ms);
            let mine: Vec<&Plan> = match id {
                Some(id) => plans.get(&id).map(|p| p.iter().collect()).unwrap_or_default(),
                None => all_plans.clone(),
            };
            let plan_currency = mine.first().map(|p| p.amount.currency);
            // The team's plans may mix currencies: then no single figure sums them.
            let plan = plan_currency
                .filter(|c| mine.iter().all(|p| p.amount.currency == *c))
                .map(|_| mine.iter().map(|p| p.amount.amount).sum::<Decimal>());
            let coverage = plan
                .filter(|p| !p.is_zero())
                .map(|p| (f.plan_revenue * Decimal::ONE_HUNDRED / p).round_dp(1).normalize());
            vec![
                Value::from(login),
                person.map_or(Value::Null, |p| Value::from(p.name.clone())),
                person.and_then(|p| p.department.clone()).map_or(Value::Null, Value::from),
                Value::from(f.opened),
                Value::from(f.won),
                Value::from(f.lost),
                dec(percent(f.won, f.won + f.lost)),
                Value::from(currency.to_string()),
                dec(Some(revenue)),
                dec(average),
                Value::from(others.join("; ")),
                dec(median_cycle),
                Value::from(f.calls),
                Value::from(f.meetings),
                Value::from(f.emails),
                Value::from(f.tasks_done),
                Value::from(f.tasks_overdue),
                dec(percent(f.cohort_won, f.cohort)),
                dec(team_conversion),
                dec(plan),
                plan_currency.filter(|_| plan.is_some()).map_or(Value::Null, |c| Value::from(c.to_string())),
                dec(plan.map(|_| f.plan_revenue)),
                dec(coverage),
            ]
        })
        .collect();
    Ok((columns, rows))
}
