//! The lost-deals, managers and bottlenecks reports on a small sales history made by hand
//! through the process engine on a real store, with every figure worked out by hand and
//! written out;
//! each filter changes the figures as it should; `[[plans]]` in config and their errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crmkit_core::analytics::Analytics;
use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::id::{DealId, PartnerId, UserId};
use crmkit_core::model::{Deal, Interaction, InteractionKind, Partner, PartnerRole, Role, Task, User};
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::report::{cell_text, ReportError, Reports};
use crmkit_core::time::{Clock, Timestamp};
use crmkit_core::values::{Currency, Money};
use rust_decimal::Decimal;

use crate::common::{new_deal, Backend, Fixture, T0};

const DAY: i64 = 86_400_000;

/// The default config with two sellers declared and their plans: ann for March and for
/// April, bob for the first half of March.
fn settings() -> Settings {
    let text = format!(
        "{DEFAULT_CONFIG}
[[users]]
login = \"ann\"
name = \"Anna Smirnova\"
roles = [\"manager\"]

[[users]]
login = \"bob\"
name = \"Boris Orlov\"
roles = [\"manager\"]

[[plans]]
manager = \"ann\"
period = \"2026-03\"
amount = \"200000\"

[[plans]]
manager = \"ann\"
period = \"2026-04\"
amount = \"300000\"
currency = \"RUB\"

[[plans]]
manager = \"bob\"
from = \"2026-03-01\"
to = \"2026-03-15\"
amount = \"100000\"
"
    );
    Settings::parse(&text, Path::new("config/crmkit.toml")).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) struct Sales {
    pub(crate) fx: Fixture,
    reports: Reports,
}

impl Sales {
    /// Runs `report` with `params` (`name=value` pairs) through the report sources, as the
    /// CLI and the API do, and prints its table one row a line, cells joined with " | ".
    pub(crate) fn run(&self, report: &str, params: &[(&str, &str)]) -> Result<String, ReportError> {
        let params: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = self.fx.store.read().unwrap();
        let table = self.reports.run(report, &params, &r)?;
        let mut out = vec![table.columns().iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" | ")];
        for row in table.rows() {
            out.push(row.iter().map(cell_text).collect::<Vec<_>>().join(" | "));
        }
        Ok(out.join("\n"))
    }

    fn check(&self, report: &str, params: &[(&str, &str)], expected: &str) {
        let got = self.run(report, params).unwrap_or_else(|e| panic!("{report} {params:?}: {e}"));
        // Lines are compared trimmed: a row whose last cell is empty ends in a space.
        let got: Vec<&str> = got.lines().map(str::trim).collect();
        let want: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(got.join("\n"), want.join("\n"), "{report} {params:?}");
    }
}

/// The history, day by day from T0 (2026-03-02 09:00Z; day n is T0 + n days):
///
/// | deal | manager | kind        | amount  | created      | what happened                                       |
/// |------|---------|-------------|---------|--------------|-----------------------------------------------------|
/// | D1   | ann     | repeat_sale | 100000  | d0  03-02    | quote d2; lost d5 (03-07), price, to ПромЛидер        |
/// | D2   | ann     | repeat_sale | 200000  | d1  03-03    | lost d4 (03-06) in request, no_budget               |
/// | D3   | bob     | b2b_sale    | 300000  | d0  03-02    | lost d10 (03-12) in qualification, price, ПромЛидер |
/// | D4   | bob     | repeat_sale | 50000   | d2  03-04    | quote d3, order d6, won d8 (03-10)                  |
/// | D5   | ann     | repeat_sale | 400000  | d3  03-05    | lost d7 (03-09), no_decision; reopened d20; won d30 (04-01) |
/// | D6   | ann     | repeat_sale | 70000   | d25 03-27    | lost d33 (04-04) in request, terms                  |
/// | D7   | ann     | repeat_sale | 150000  | d4  03-06    | won d12 (03-14)                                     |
/// | D8   | bob     | repeat_sale | 20000   | d5  03-07    | open                                                |
///
/// D3's client is in segment "wholesale", the others' in "retail". Interactions: a call by
/// ann on D1 (d1), a meeting on D7 with no author (d5), an e-mail by bob on D2 (d6), a note
/// by ann (d6), a call by ann in April (d31). Tasks: ann's T1 due d3 done d2, T2 due d4
/// done d6 (late); bob's T3 due d10 still open, T4 due d40 open.
pub(crate) fn sales(backend: Backend) -> Sales {
    let fx = Fixture::on_with(backend, settings());
    let e = Engine::without_hooks();
    let at = |day: i64| fx.clock.set(T0.plus_millis(day * DAY));
    let user = |login: &str, name: &str, role: Role, department: &str| -> UserId {
        fx.store
            .transact(None, |tx| {
                let mut u = User::new(login, name, role);
                u.department = Some(department.into());
                Ok(tx.create(u)?.id)
            })
            .unwrap()
    };
    let ann = user("ann", "Anna Smirnova", Role::Manager, "Moscow");
    let bob = user("bob", "Boris Orlov", Role::Manager, "Kazan");
    let head = user("head", "Head of sales", Role::Head, "Moscow");
    let client = |name: &str, segment: &str| -> PartnerId {
        fx.store
            .transact(None, |tx| {
                let mut p = Partner::new(name, PartnerRole::Client);
                p.segment = Some(segment.into());
                Ok(tx.create(p)?.id)
            })
            .unwrap()
    };
    let retail = client("Ромашка", "retail");
    let wholesale = client("Лютик", "wholesale");
    let rival = fx.partner("ПромЛидер", PartnerRole::Competitor).id;
    let run = |actor: UserId, f: &mut dyn FnMut(&mut crmkit_core::store::WriteTxn<'_>) -> crmkit_core::Result<Deal>| {
        fx.store.transact(Some(actor), |tx| f(tx)).unwrap_or_else(|err| panic!("{err}"))
    };
    let create = |manager: UserId, partner: PartnerId, kind: &str, amount: i64| -> Deal {
        let mut d = new_deal(partner, manager, amount);
        d.kind = kind.into();
        d.stage = None;
        d.source = Some("referral".into());
        run(manager, &mut |tx| e.create_deal(tx, d.clone()))
    };
    let step = |d: &Deal, to: &str| run(d.manager, &mut |tx| e.move_deal(tx, d.id, d.version, to, None));
    let lose = |d: &Deal, reason: &str, competitor: Option<PartnerId>| {
        let outcome = || Outcome::Lost { reason: reason.into(), competitor, comment: String::new() };
        run(d.manager, &mut |tx| e.close(tx, d.id, d.version, outcome()))
    };
    let win =
        |d: &Deal| run(d.manager, &mut |tx| e.close(tx, d.id, d.version, Outcome::Won { comment: String::new() }));
    let talk = |kind: InteractionKind, deal: Option<DealId>, author: Option<UserId>| {
        let now: Timestamp = fx.clock.now();
        fx.store
            .transact(None, |tx| {
                let mut i = Interaction::new(kind, now, retail, "talk");
                i.deal = deal;
                i.author = author;
                tx.create(i)
            })
            .unwrap();
    };
    let task = |executor: UserId, due_day: i64| -> Task {
        fx.store
            .transact(None, |tx| {
                let mut t = Task::new("call back", executor);
                t.due = Some(T0.plus_millis(due_day * DAY));
                tx.create(t)
            })
            .unwrap()
    };
    let done = |t: &Task| {
        fx.store.transact(Some(t.executor), |tx| e.complete_task(tx, t.id, t.version)).unwrap_or_else(|e| panic!("{e}"))
    };

    at(0);
    let d1 = create(ann, retail, "repeat_sale", 100_000);
    let d3 = create(bob, wholesale, "b2b_sale", 300_000);
    let t1 = task(ann, 3);
    let t2 = task(ann, 4);
    task(bob, 10);
    task(bob, 40);
    at(1);
    let d2 = create(ann, retail, "repeat_sale", 200_000);
    talk(InteractionKind::Call, Some(d1.id), Some(ann));
    at(2);
    let d1 = step(&d1, "quote");
    let d4 = create(bob, retail, "repeat_sale", 50_000);
    done(&t1);
    at(3);
    let d5 = create(ann, retail, "repeat_sale", 400_000);
    let d4 = step(&d4, "quote");
    at(4);
    lose(&d2, "no_budget", None);
    let d7 = create(ann, retail, "repeat_sale", 150_000);
    at(5);
    lose(&d1, "price", Some(rival));
    create(bob, retail, "repeat_sale", 20_000);
    talk(InteractionKind::Meeting, Some(d7.id), None);
    at(6);
    let d4 = step(&d4, "order");
    done(&t2);
    talk(InteractionKind::Email, Some(d2.id), Some(bob));
    talk(InteractionKind::Note, None, Some(ann));
    at(7);
    let d5 = lose(&d5, "no_decision", None);
    at(8);
    win(&d4);
    at(10);
    lose(&d3, "price", Some(rival));
    at(12);
    win(&d7);
    at(20);
    let d5 = run(head, &mut |tx| e.reopen(tx, d5.id, d5.version, None, ""));
    at(25);
    let d6 = create(ann, retail, "repeat_sale", 70_000);
    at(30);
    win(&d5);
    at(31);
    talk(InteractionKind::Call, None, Some(ann));
    at(33);
    lose(&d6, "terms", None);

    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    Sales { fx, reports }
}

const LOST_HEADER: &str =
    "dimension | key | value | currency | deals | share_pct | amount | median_days_to_loss | mean_days_to_loss";

#[test]
fn lost_deals_now_by_every_cut() {
    let s = sales(Backend::Redb);
    // D1, D2, D3 and D6 are lost now; D5 was lost, then reopened and won.
    s.check(
        "lost",
        &[],
        &format!(
            "{LOST_HEADER}
             total |  | all lost deals | RUB | 4 | 100 | 670000 | 6.5 | 6.5
             reason | price | Price higher than the competitor's | RUB | 2 | 50 | 400000 | 7.5 | 7.5
             reason | no_budget | Client has no budget | RUB | 1 | 25 | 200000 | 3 | 3
             reason | terms | Delivery or payment terms | RUB | 1 | 25 | 70000 | 8 | 8
             stage | qualification | Qualification | RUB | 1 | 25 | 300000 | 10 | 10
             stage | request | Request | RUB | 2 | 50 | 270000 | 5.5 | 5.5
             stage | quote | Quote | RUB | 1 | 25 | 100000 | 5 | 5
             competitor |  | (none recorded) | RUB | 2 | 50 | 270000 | 5.5 | 5.5
             competitor | RIVAL | ПромЛидер | RUB | 2 | 50 | 400000 | 7.5 | 7.5
             manager | ann | Anna Smirnova | RUB | 3 | 75 | 370000 | 5 | 5.3
             manager | bob | Boris Orlov | RUB | 1 | 25 | 300000 | 10 | 10
             kind | repeat_sale | Repeat sale | RUB | 3 | 75 | 370000 | 5 | 5.3
             kind | b2b_sale | B2B sale | RUB | 1 | 25 | 300000 | 10 | 10
             month | 2026-03 | 2026-03 | RUB | 3 | 75 | 600000 | 5 | 6
             month | 2026-04 | 2026-04 | RUB | 1 | 25 | 70000 | 8 | 8"
        )
        .replace("RIVAL", &rival(&s)),
    );
    // The chart: a bar per value of each cut, as long as its deals; the longest of a cut
    // spans the chart (310 px), half as many deals half as long.
    let r = s.fx.store.read().unwrap();
    let table = s.reports.run("lost", &BTreeMap::new(), &r).unwrap();
    let svg = crmkit_core::analytics::chart("lost", &table).unwrap().unwrap();
    crate::analytics::well_formed(&svg);
    assert_eq!(svg.matches("class=\"bar\"").count(), 15, "{svg}");
    assert!(svg.contains(">Price higher than the competito…<"), "a long label is cut: {svg}");
    assert!(svg.contains("width=\"310\" height=\"22\" fill=\"#4682b4\"><title>Price higher"), "{svg}");
    assert!(svg.contains("width=\"155\" height=\"22\" fill=\"#4682b4\"><title>Client has no budget: 1 deals (25.0%), 200000 RUB lost"), "{svg}");
    assert!(svg.contains(">2 (50.0%)<"), "{svg}");
}

/// The competitor's id as text.
fn rival(s: &Sales) -> String {
    use crmkit_core::store::Reader;
    let r = s.fx.store.read().unwrap();
    let mut found = String::new();
    r.for_each::<Partner>(|p| {
        if p.roles.contains(&PartnerRole::Competitor) {
            found = p.id.to_string();
        }
        true
    })
    .unwrap();
    found
}

#[test]
fn lost_deals_narrowed_by_kind_manager_department_segment_and_period() {
    let s = sales(Backend::Memory);
    let only_d3 = format!(
        "{LOST_HEADER}
         total |  | all lost deals | RUB | 1 | 100 | 300000 | 10 | 10
         reason | price | Price higher than the competitor's | RUB | 1 | 100 | 300000 | 10 | 10
         stage | qualification | Qualification | RUB | 1 | 100 | 300000 | 10 | 10
         competitor | RIVAL | ПромЛидер | RUB | 1 | 100 | 300000 | 10 | 10
         manager | bob | Boris Orlov | RUB | 1 | 100 | 300000 | 10 | 10
         kind | b2b_sale | B2B sale | RUB | 1 | 100 | 300000 | 10 | 10
         month | 2026-03 | 2026-03 | RUB | 1 | 100 | 300000 | 10 | 10"
    )
    .replace("RIVAL", &rival(&s));
    s.check("lost", &[("kind", "b2b_sale")], &only_d3);
    s.check("lost", &[("manager", "bob")], &only_d3);
    s.check("lost", &[("department", "Kazan")], &only_d3);
    s.check("lost", &[("segment", "wholesale")], &only_d3);
    // ann's: D1 (5 days), D2 (3) and D6 (8).
    s.check(
        "lost",
        &[("manager", "ann")],
        &format!(
            "{LOST_HEADER}
             total |  | all lost deals | RUB | 3 | 100 | 370000 | 5 | 5.3
             reason | no_budget | Client has no budget | RUB | 1 | 33.3 | 200000 | 3 | 3
             reason | terms | Delivery or payment terms | RUB | 1 | 33.3 | 70000 | 8 | 8
             reason | price | Price higher than the competitor's | RUB | 1 | 33.3 | 100000 | 5 | 5
             stage | request | Request | RUB | 2 | 66.7 | 270000 | 5.5 | 5.5
             stage | quote | Quote | RUB | 1 | 33.3 | 100000 | 5 | 5
             competitor |  | (none recorded) | RUB | 2 | 66.7 | 270000 | 5.5 | 5.5
             competitor | RIVAL | ПромЛидер | RUB | 1 | 33.3 | 100000 | 5 | 5
             manager | ann | Anna Smirnova | RUB | 3 | 100 | 370000 | 5 | 5.3
             kind | repeat_sale | Repeat sale | RUB | 3 | 100 | 370000 | 5 | 5.3
             month | 2026-03 | 2026-03 | RUB | 2 | 66.7 | 300000 | 4 | 4
             month | 2026-04 | 2026-04 | RUB | 1 | 33.3 | 70000 | 8 | 8"
        )
        .replace("RIVAL", &rival(&s)),
    );
    // Lost from 7 to 31 March: D1 (03-07) and D3 (03-12); D2 (03-06) is a day early.
    let got = s.run("lost", &[("from", "2026-03-07"), ("to", "2026-03-31")]).unwrap();
    assert_eq!(got.lines().nth(1), Some("total |  | all lost deals | RUB | 2 | 100 | 400000 | 7.5 | 7.5"), "{got}");
    // Up to 6 March: D2 only.
    let got = s.run("lost", &[("to", "2026-03-06")]).unwrap();
    assert_eq!(got.lines().nth(1), Some("total |  | all lost deals | RUB | 1 | 100 | 200000 | 3 | 3"), "{got}");
}

#[test]
fn lost_deals_as_of_a_past_date_count_a_loss_later_undone() {
    let s = sales(Backend::Redb);
    // On 15 March D5 was lost (03-09, 4 days) and not yet reopened; D6 did not exist.
    // Days to loss: D2 3, D5 4, D1 5, D3 10 — median 4.5, mean 22/4 = 5.5.
    s.check(
        "lost",
        &[("as_of", "2026-03-15")],
        &format!(
            "{LOST_HEADER}
             total |  | all lost deals | RUB | 4 | 100 | 1000000 | 4.5 | 5.5
             reason | price | Price higher than the competitor's | RUB | 2 | 50 | 400000 | 7.5 | 7.5
             reason | no_budget | Client has no budget | RUB | 1 | 25 | 200000 | 3 | 3
             reason | no_decision | Client made no decision | RUB | 1 | 25 | 400000 | 4 | 4
             stage | qualification | Qualification | RUB | 1 | 25 | 300000 | 10 | 10
             stage | request | Request | RUB | 2 | 50 | 600000 | 3.5 | 3.5
             stage | quote | Quote | RUB | 1 | 25 | 100000 | 5 | 5
             competitor |  | (none recorded) | RUB | 2 | 50 | 600000 | 3.5 | 3.5
             competitor | RIVAL | ПромЛидер | RUB | 2 | 50 | 400000 | 7.5 | 7.5
             manager | ann | Anna Smirnova | RUB | 3 | 75 | 700000 | 4 | 4
             manager | bob | Boris Orlov | RUB | 1 | 25 | 300000 | 10 | 10
             kind | repeat_sale | Repeat sale | RUB | 3 | 75 | 700000 | 4 | 4
             kind | b2b_sale | B2B sale | RUB | 1 | 25 | 300000 | 10 | 10
             month | 2026-03 | 2026-03 | RUB | 4 | 100 | 1000000 | 4.5 | 5.5"
        )
        .replace("RIVAL", &rival(&s)),
    );
    // On 5 March nothing was lost yet.
    assert_eq!(s.run("lost", &[("as_of", "2026-03-05")]).unwrap(), LOST_HEADER);
}

const MANAGERS_HEADER: &str = "manager | name | department | opened | won | lost | win_rate_pct | currency | revenue | average_deal | revenue_other_currencies | median_cycle_days | calls | meetings | emails | tasks_done | tasks_overdue | conversion_pct | team_conversion_pct | plan | plan_currency | plan_revenue | plan_coverage_pct";

#[test]
fn managers_in_march() {
    let s = sales(Backend::Redb);
    // ann: opened D1 D2 D5 D6 D7; won D7 (03-14, 8 days); lost D1 D2 (D5's loss was undone,
    // D6 was lost in April); of the 5 opened, D5 and D7 are won by now: 40%. Plan: March's
    // 200000 (April's is outside the period), D7's 150000 won in it: 75%.
    // bob: opened D3 D4 D8; won D4 (03-10, 6 days); lost D3; of 3 opened, 1 won. Plan
    // 1–15 March 100000, D4's 50000: 50%. The team: 8 opened, 3 of them won: 37.5%; plans
    // 300000, won in them 200000: 66.7%.
    s.check(
        "managers",
        &[("from", "2026-03-01"), ("to", "2026-03-31")],
        &format!(
            "{MANAGERS_HEADER}
             ann | Anna Smirnova | Moscow | 5 | 1 | 2 | 33.3 | RUB | 150000 | 150000 |  | 8 | 1 | 1 | 0 | 2 | 1 | 40 | 37.5 | 200000 | RUB | 150000 | 75
             bob | Boris Orlov | Kazan | 3 | 1 | 1 | 50 | RUB | 50000 | 50000 |  | 6 | 0 | 0 | 1 | 0 | 1 | 33.3 | 37.5 | 100000 | RUB | 50000 | 50
             (team) |  |  | 8 | 2 | 3 | 40 | RUB | 200000 | 100000 |  | 7 | 1 | 1 | 1 | 2 | 2 | 37.5 | 37.5 | 300000 | RUB | 200000 | 66.7"
        ),
    );
}

#[test]
fn managers_narrowed_and_as_of() {
    let s = sales(Backend::Memory);
    // As of 15 March: D6 did not exist, D5 was lost and not yet won; ann's cohort D1 D2 D5
    // D7 has D7 won (25%), the team's 7 has D4 and D7 (28.6%).
    s.check(
        "managers",
        &[("from", "2026-03-01"), ("to", "2026-03-31"), ("as_of", "2026-03-15")],
        &format!(
            "{MANAGERS_HEADER}
             ann | Anna Smirnova | Moscow | 4 | 1 | 3 | 25 | RUB | 150000 | 150000 |  | 8 | 1 | 1 | 0 | 2 | 1 | 25 | 28.6 | 200000 | RUB | 150000 | 75
             bob | Boris Orlov | Kazan | 3 | 1 | 1 | 50 | RUB | 50000 | 50000 |  | 6 | 0 | 0 | 1 | 0 | 1 | 33.3 | 28.6 | 100000 | RUB | 50000 | 50
             (team) |  |  | 7 | 2 | 4 | 33.3 | RUB | 200000 | 100000 |  | 7 | 1 | 1 | 1 | 2 | 2 | 28.6 | 28.6 | 300000 | RUB | 200000 | 66.7"
        ),
    );
    // Only B2B sales: D3, bob's, lost; no interactions or tasks belong to such a deal.
    s.check(
        "managers",
        &[("from", "2026-03-01"), ("to", "2026-03-31"), ("kind", "b2b_sale")],
        &format!(
            "{MANAGERS_HEADER}
             ann | Anna Smirnova | Moscow | 0 | 0 | 0 |  | RUB | 0 |  |  |  | 0 | 0 | 0 | 0 | 0 |  | 0 | 200000 | RUB | 0 | 0
             bob | Boris Orlov | Kazan | 1 | 0 | 1 | 0 | RUB | 0 |  |  |  | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 100000 | RUB | 0 | 0
             (team) |  |  | 1 | 0 | 1 | 0 | RUB | 0 |  |  |  | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 300000 | RUB | 0 | 0"
        ),
    );
    // bob alone, against the whole team, over all time, now (by the installation's clock)
    // being d45: his task due 11 April (d40) is overdue too; ann's April plan joins the
    // team's (500000 + 100000), with D5's 400000 won on 1 April in it; D6 is the team's
    // fourth loss.
    s.fx.clock.set(T0.plus_millis(45 * DAY));
    s.check(
        "managers",
        &[("manager", "bob")],
        &format!(
            "{MANAGERS_HEADER}
             bob | Boris Orlov | Kazan | 3 | 1 | 1 | 50 | RUB | 50000 | 50000 |  | 6 | 0 | 0 | 1 | 0 | 2 | 33.3 | 37.5 | 100000 | RUB | 50000 | 50
             (team) |  |  | 8 | 3 | 4 | 42.9 | RUB | 600000 | 200000 |  | 8 | 2 | 1 | 1 | 2 | 3 | 37.5 | 37.5 | 600000 | RUB | 600000 | 100"
        ),
    );
    // On d39 the task due d40 is not overdue yet.
    s.fx.clock.set(T0.plus_millis(39 * DAY));
    let got = s.run("managers", &[("manager", "bob")]).unwrap();
    let bob: Vec<&str> = got.lines().nth(1).unwrap().split(" | ").collect();
    assert_eq!((bob[15], bob[16]), ("0", "1"), "tasks done and overdue on d39: {got}");
    // The department narrows the rows and the team.
    let got = s.run("managers", &[("department", "Moscow"), ("to", "2026-03-31")]).unwrap();
    let rows: Vec<&str> = got.lines().skip(1).collect();
    assert_eq!(
        rows,
        [
            "ann | Anna Smirnova | Moscow | 5 | 1 | 2 | 33.3 | RUB | 150000 | 150000 |  | 8 | 1 | 1 | 0 | 2 | 1 | 40 | 40 | 200000 | RUB | 150000 | 75",
            "(team) |  |  | 5 | 1 | 2 | 33.3 | RUB | 150000 | 150000 |  | 8 | 1 | 1 | 0 | 2 | 1 | 40 | 40 | 200000 | RUB | 150000 | 75",
        ]
    );
}

#[test]
fn parameters_are_checked() {
    let s = sales(Backend::Memory);
    let err = |report: &str, params: &[(&str, &str)]| s.run(report, params).expect_err("refused").to_string();
    assert_eq!(err("lost", &[("manager", "zed")]), "report lost: parameter manager: there is no user \"zed\"");
    assert_eq!(
        err("managers", &[("from", "2026-03-31"), ("to", "2026-03-01")]),
        "report managers: parameter to: the period ends (2026-03-01) before it starts (2026-03-31)"
    );
    assert!(err("lost", &[("kind", "barter")])
        .starts_with("report lost: parameter kind: there is no process kind \"barter\""));
    assert!(err("managers", &[("month", "2026-03")]).starts_with("report managers: it has no parameter \"month\""));
    assert!(err("lost", &[("as_of", "15.03.2026")]).starts_with("report lost: parameter as_of: "));
}

/// Parses a config of one stageless kind, the users ann and bob, and `plans`.
fn plans(plans: &str) -> Result<Settings, String> {
    let text = format!(
        "[[users]]\nlogin = \"ann\"\nname = \"Ann\"\nroles = [\"manager\"]\n\
         [[users]]\nlogin = \"bob\"\nname = \"Bob\"\nroles = [\"manager\"]\n\
         [[process_kinds]]\nid = \"p\"\nname = \"P\"\nmode = \"stageless\"\n{plans}\n\
         [lists]\nloss_reasons = [{{ id = \"price\", name = \"Price\" }}]\n"
    );
    Settings::parse(&text, Path::new("config/crmkit.toml")).map_err(|e| e.to_string())
}

#[test]
fn plans_in_config() {
    let ok = plans(
        "[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\namount = \"1500000.5\"\n\
         [[plans]]\nmanager = \"ann\"\nfrom = \"2026-03-01\"\nto = \"2026-06-30\"\namount = \"10\"\n\
         [[plans]]\nmanager = \"bob\"\nperiod = \"2026-02\"\namount = \"900\"\ncurrency = \"USD\"\n",
    )
    .unwrap();
    let got: Vec<String> = ok
        .plans
        .iter()
        .map(|p| {
            format!("{} {}..{} {} {} line {}", p.manager, p.from, p.to, p.amount.amount, p.amount.currency, p.line)
        })
        .collect();
    assert_eq!(
        got,
        [
            "ann 2026-02-01..2026-02-28 1500000.50 RUB line 14",
            "ann 2026-03-01..2026-06-30 10.00 RUB line 18",
            "bob 2026-02-01..2026-02-28 900.00 USD line 23",
        ]
    );
    assert_eq!(ok.plans[2].amount, Money::new(Decimal::new(90000, 2), Currency::parse("USD").unwrap()));

    let err = |text: &str| plans(text).expect_err("refused");
    assert_eq!(
        err("[[plans]]\nmanager = \"zed\"\nperiod = \"2026-02\"\namount = \"1\"\n"),
        "config/crmkit.toml:14:11: plans.manager: there is no user \"zed\" in [[users]] (ann, bob)"
    );
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-13\"\namount = \"1\"\n"),
        "config/crmkit.toml:15:10: plans.period: \"2026-13\" is not a month written YYYY-MM (like 2026-03)"
    );
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\nfrom = \"2026-02-01\"\nto = \"2026-02-10\"\namount = \"1\"\n"),
        "config/crmkit.toml:15:10: plans: give either period (a month) or from and to, not both"
    );
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nfrom = \"2026-02-01\"\namount = \"1\"\n"),
        "config/crmkit.toml:15:8: plans: a plan needs period = \"YYYY-MM\", or both from and to (YYYY-MM-DD)"
    );
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nfrom = \"2026-02-10\"\nto = \"2026-02-01\"\namount = \"1\"\n"),
        "config/crmkit.toml:16:6: plans.to: the plan ends (2026-02-01) before it starts (2026-02-10)"
    );
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\namount = \"0\"\n"),
        "config/crmkit.toml:16:10: plans.amount must be above zero, got 0.00"
    );
    assert!(err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\namount = \"1.005\"\n")
        .starts_with("config/crmkit.toml:16:10: plans.amount: "));
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\namount = \"1\"\n\
             [[plans]]\nmanager = \"ann\"\nfrom = \"2026-02-20\"\nto = \"2026-03-10\"\namount = \"1\"\n"),
        "config/crmkit.toml:18:11: plans: ann's plan for 2026-02-20..2026-03-10 overlaps the one for 2026-02-01..2026-02-28 (line 14)"
    );
    assert_eq!(
        err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\namount = \"1\"\n\
             [[plans]]\nmanager = \"ann\"\nperiod = \"2026-03\"\namount = \"1\"\ncurrency = \"EUR\"\n"),
        "config/crmkit.toml:21:12: plans: ann's plans are in RUB, so this one cannot be in EUR (line 14)"
    );
    assert!(err("[[plans]]\nmanager = \"ann\"\nperiod = \"2026-02\"\namount = \"1\"\nquota = 3\n")
        .starts_with("config/crmkit.toml:17:1: unknown key \"quota\" in [[plans]]"));
}

const BOTTLENECKS_HEADER: &str = "kind | stage | stage_name | visits | p50_days | p90_days | max_days | dropped | drop_off_pct | sla_days | sla_breaches | in_stage_now | stuck_now | p50_days_this_month | p50_days_previous_month";

/// The repeat sales' stages (request: SLA 2 days, quote and order: 5) by hand. As of 20
/// March the visits that ended are — request: D4 1 day, D1 2, D2 3 (lost), D5 4 (lost), D7 8
/// (won from it); quote: D1 3 (lost), D4 3; order: D4 2 (won). D8 has sat in request since
/// the 7th: 13.6 days, past its SLA. The nearest-rank median of five is the third.
#[test]
fn bottlenecks_by_hand() {
    let s = sales(Backend::Redb);
    s.check(
        "bottlenecks",
        &[("kind", "repeat_sale"), ("as_of", "2026-03-20")],
        &format!(
            "{BOTTLENECKS_HEADER}
            repeat_sale | request | Request | 5 | 3 | 8 | 8 | 2 | 40 | 2 | 3 | 1 | 1 | 3 | 
            repeat_sale | quote | Quote | 2 | 3 | 3 | 3 | 1 | 50 | 5 | 0 | 0 | 0 | 3 | 
            repeat_sale | order | Order | 1 | 2 | 2 | 2 | 0 | 0 | 5 | 0 | 0 | 0 | 2 | "
        ),
    );
    // The visits that ended from 6 March on: request loses D1's and D4's.
    s.check(
        "bottlenecks",
        &[("kind", "repeat_sale"), ("as_of", "2026-03-20"), ("from", "2026-03-06")],
        &format!(
            "{BOTTLENECKS_HEADER}
            repeat_sale | request | Request | 3 | 4 | 8 | 8 | 2 | 66.7 | 2 | 3 | 1 | 1 | 3 | 
            repeat_sale | quote | Quote | 2 | 3 | 3 | 3 | 1 | 50 | 5 | 0 | 0 | 0 | 3 | 
            repeat_sale | order | Order | 1 | 2 | 2 | 2 | 0 | 0 | 5 | 0 | 0 | 0 | 2 | "
        ),
    );
    // As of 5 March: D1 and D4 have left request (2 and 1 days); D2 (since the 3rd, past
    // its SLA) and D5 (since the 5th) sit in it, D1 and D4 in quote, within theirs.
    s.check(
        "bottlenecks",
        &[("kind", "repeat_sale"), ("as_of", "2026-03-05")],
        &format!(
            "{BOTTLENECKS_HEADER}
            repeat_sale | request | Request | 2 | 1 | 2 | 2 | 0 | 0 | 2 | 0 | 2 | 1 | 1 | 
            repeat_sale | quote | Quote | 0 |  |  |  | 0 |  | 5 | 0 | 2 | 0 |  | 
            repeat_sale | order | Order | 0 |  |  |  | 0 |  | 5 | 0 | 0 | 0 |  | "
        ),
    );
    // bob's deals only: D4 (request 1, quote 3, order 2, won) and D8, in request since the 7th.
    s.check(
        "bottlenecks",
        &[("kind", "repeat_sale"), ("as_of", "2026-03-20"), ("manager", "bob")],
        &format!(
            "{BOTTLENECKS_HEADER}
            repeat_sale | request | Request | 1 | 1 | 1 | 1 | 0 | 0 | 2 | 0 | 1 | 1 | 1 | 
            repeat_sale | quote | Quote | 1 | 3 | 3 | 3 | 0 | 0 | 5 | 0 | 0 | 0 | 3 | 
            repeat_sale | order | Order | 1 | 2 | 2 | 2 | 0 | 0 | 5 | 0 | 0 | 0 | 2 | "
        ),
    );
}
