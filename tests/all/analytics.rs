//! The built-in analytics: the funnel over a hand-made history, its figures worked out by
//! hand; the funnel as of a past day against a database that stopped on that day; the
//! command line's formats and refusals; the API's formats, callers, scope and refusals; and
//! docs/analytics.md held to the reports and parameters there are.

use std::collections::BTreeMap;
use std::sync::Arc;

use crmkit_core::analytics::{Analytics, PARAMETERS};
use crmkit_core::hooks::Hooks;
use crmkit_core::id::DealId;
use crmkit_core::model::Deal;
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::report::{ReportSource as _, Reports};
use crmkit_core::store::{Reader as _, Store};
use crmkit_core::values::{Currency, Money};
use rust_decimal::Decimal;

use crate::common::{free_moving_settings as settings, new_deal, Fixture};

const DAY: i64 = 86_400_000;

/// One operation of the hand-made history, on deal `A`…`E`.
enum Op {
    Create(&'static str, i64, Currency),
    Move(&'static str, &'static str),
    Hold(&'static str),
    Resume(&'static str),
    Won(&'static str),
    Lost(&'static str),
    Reopen(&'static str),
    /// A probability set by hand (outside the engine, as a manager's edit is).
    Probability(&'static str, u8),
}

/// The history, day by day from 2026-03-02 (the fixture's first day), 09:00 UTC.
const SCRIPT: &[&[Op]] = &[
    // 2026-03-02
    &[
        Op::Create("A", 1000, Currency::RUB),
        Op::Create("B", 2000, Currency::RUB),
        Op::Create("C", 3000, Currency::RUB),
        Op::Create("D", 500, Currency::USD),
    ],
    // 03-03
    &[Op::Move("A", "needs_analysis"), Op::Move("B", "needs_analysis"), Op::Move("D", "needs_analysis")],
    // 03-04
    &[Op::Move("A", "proposal"), Op::Move("B", "proposal")],
    // 03-05
    &[Op::Lost("C"), Op::Hold("D")],
    // 03-06
    &[Op::Move("A", "negotiation"), Op::Move("B", "negotiation")],
    // 03-07
    &[Op::Move("A", "contract"), Op::Lost("B")],
    // 03-08
    &[Op::Won("A"), Op::Create("E", 4000, Currency::RUB), Op::Resume("D")],
    // 03-09
    &[Op::Move("E", "needs_analysis"), Op::Probability("E", 50)],
    // 03-10
    &[Op::Reopen("B")],
];

/// Plays the first `days` days of [`SCRIPT`] into a new store through the engine, the
/// clock at each day's 09:00.
fn play(days: usize) -> Fixture {
    let f = Fixture::with_settings(settings());
    let engine = Engine::new(f.store.settings(), Hooks::new()).unwrap();
    let (partner, manager) = f.client("Альфа");
    let mut ids: BTreeMap<&str, DealId> = BTreeMap::new();
    for (day, ops) in SCRIPT.iter().take(days).enumerate() {
        f.clock.set(crate::common::T0.plus_millis(day as i64 * DAY));
        for op in *ops {
            let name = match op {
                Op::Create(..) => None,
                Op::Move(n, _) | Op::Probability(n, _) => Some(*n),
                Op::Hold(n) | Op::Resume(n) | Op::Won(n) | Op::Lost(n) | Op::Reopen(n) => Some(*n),
            };
            let deal: Option<Deal> = name.map(|n| f.store.read().unwrap().get(ids[n]).unwrap().unwrap());
            let current = |_: &str| -> Deal { deal.clone().unwrap() };
            // A reopening is the system's (managers may not reopen); the rest the manager's.
            let actor = if matches!(op, Op::Reopen(_)) { None } else { Some(manager) };
            let created = f
                .store
                .transact(actor, |tx| {
                    match op {
                        Op::Create(name, amount, currency) => {
                            let mut d = new_deal(partner.id, manager, *amount);
                            d.amount = Money::new(Decimal::from(*amount), *currency);
                            return Ok(Some((*name, engine.create_deal(tx, d)?.id)));
                        }
                        Op::Move(name, to) => {
                            let d = current(name);
                            engine.move_deal(tx, d.id, d.version, to, None)?;
                        }
                        Op::Hold(name) => {
                            let d = current(name);
                            engine.hold(tx, d.id, d.version, "waits for the budget")?;
                        }
                        Op::Resume(name) => {
                            let d = current(name);
                            engine.resume(tx, d.id, d.version, "")?;
                        }
                        Op::Won(name) => {
                            let d = current(name);
                            engine.close(tx, d.id, d.version, Outcome::Won { comment: String::new() })?;
                        }
                        Op::Lost(name) => {
                            let d = current(name);
                            let reason = tx.settings().process_kinds[0].loss_reasons[0].clone();
                            let lost = Outcome::Lost { reason, competitor: None, comment: "lost".into() };
                            engine.close(tx, d.id, d.version, lost)?;
                        }
                        Op::Reopen(name) => {
                            let d = current(name);
                            engine.reopen(tx, d.id, d.version, None, "back")?;
                        }
                        Op::Probability(name, p) => {
                            let mut d = current(name);
                            d.probability = Some(*p);
                            engine.update(tx, d)?;
                        }
                    }
                    Ok(None)
                })
                .unwrap();
            if let Some((name, id)) = created {
                ids.insert(name, id);
            }
        }
    }
    f
}

/// The funnel of `store` with `params`, as CSV.
fn funnel(store: &Store, params: &[(&str, &str)]) -> String {
    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let table = reports.run("funnel", &params, &store.read().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(table.to_csv()).unwrap()
}

const HEADER: &str = "kind,row,stage,stage_name,reached,conversion_from_previous,conversion_from_first,open_now,expected_wins,reached_amount_RUB,open_amount_RUB,weighted_RUB,reached_amount_USD,open_amount_USD,weighted_USD\n";

#[test]
fn the_funnel_of_a_hand_made_history_has_the_figures_worked_out_by_hand() {
    let f = play(SCRIPT.len());
    // Reached: A B C D E entered qualification; A B D E needs analysis; A B proposal and
    // negotiation (B again when reopened, counted once); A contract; A won. Now: D (USD 500,
    // 25 %) and E (RUB 4000, 50 % by hand) in needs analysis, B (RUB 2000, reopened: 65 %)
    // in negotiation.
    let now = format!(
        "{HEADER}\
b2b_sale,stage,qualification,Qualification,5,,100.00,0,0.00,10000.00,0.00,0.00,500.00,0.00,0.00
b2b_sale,stage,needs_analysis,Needs analysis,4,80.00,80.00,2,0.75,7000.00,4000.00,2000.00,500.00,500.00,125.00
b2b_sale,stage,proposal,Proposal,2,50.00,40.00,0,0.00,3000.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,stage,negotiation,Negotiation,2,100.00,40.00,1,0.65,3000.00,2000.00,1300.00,0.00,0.00,0.00
b2b_sale,stage,contract,Contract,1,50.00,20.00,0,0.00,1000.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,won,,won,1,100.00,20.00,,,1000.00,,,0.00,,
b2b_sale,total,,total,5,,,3,1.40,10000.00,6000.00,3300.00,500.00,500.00,125.00
"
    );
    assert_eq!(funnel(&f.store, &[("kind", "b2b_sale")]), now);
    // The period 03-04..03-06 saw A and B enter proposal and negotiation, nothing else; the
    // deals in each stage are still those of now.
    let period = format!(
        "{HEADER}\
b2b_sale,stage,qualification,Qualification,0,,,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,stage,needs_analysis,Needs analysis,0,,,2,0.75,0.00,4000.00,2000.00,0.00,500.00,125.00
b2b_sale,stage,proposal,Proposal,2,,,0,0.00,3000.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,stage,negotiation,Negotiation,2,100.00,,1,0.65,3000.00,2000.00,1300.00,0.00,0.00,0.00
b2b_sale,stage,contract,Contract,0,0.00,,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,won,,won,0,,,,,0.00,,,0.00,,
b2b_sale,total,,total,2,,,3,1.40,3000.00,6000.00,3300.00,0.00,500.00,125.00
"
    );
    assert_eq!(funnel(&f.store, &[("kind", "b2b_sale"), ("from", "2026-03-04"), ("to", "2026-03-06")]), period);
    // At the end of 03-05: A and B in proposal (45 % then: A is won now, B elsewhere), C
    // lost, D on hold in needs analysis (25 %), E not yet there.
    let as_of = format!(
        "{HEADER}\
b2b_sale,stage,qualification,Qualification,4,,100.00,0,0.00,6000.00,0.00,0.00,500.00,0.00,0.00
b2b_sale,stage,needs_analysis,Needs analysis,3,75.00,75.00,1,0.25,3000.00,0.00,0.00,500.00,500.00,125.00
b2b_sale,stage,proposal,Proposal,2,66.67,50.00,2,0.90,3000.00,3000.00,1350.00,0.00,0.00,0.00
b2b_sale,stage,negotiation,Negotiation,0,0.00,0.00,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,stage,contract,Contract,0,,0.00,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00
b2b_sale,won,,won,0,,0.00,,,0.00,,,0.00,,
b2b_sale,total,,total,4,,,3,1.15,6000.00,3000.00,1350.00,500.00,500.00,125.00
"
    );
    assert_eq!(funnel(&f.store, &[("kind", "b2b_sale"), ("as_of", "2026-03-05")]), as_of);
    // Without a kind, every kind with stages has its block, in config order.
    let all = funnel(&f.store, &[]);
    let blocks: Vec<&str> =
        all.lines().skip(1).filter(|l| l.contains(",total,")).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(blocks, ["b2b_sale", "tender", "repeat_sale"]);
    assert!(all.contains("tender,stage,announcement,Tender announced,0,,,0,0.00,"), "{all}");
}

#[test]
fn the_funnel_as_of_a_past_day_is_the_funnel_of_a_database_that_stopped_that_day() {
    let full = play(SCRIPT.len());
    for (days, day) in [(1, "2026-03-02"), (3, "2026-03-04"), (4, "2026-03-05"), (6, "2026-03-07"), (8, "2026-03-09")] {
        let stopped = play(days);
        for kind in ["b2b_sale", "repeat_sale"] {
            assert_eq!(
                funnel(&full.store, &[("kind", kind), ("as_of", day)]),
                funnel(&stopped.store, &[("kind", kind)]),
                "as of {day}"
            );
        }
    }
    // As of a day before the first deal, the funnel is empty; as of today it is now's.
    let empty = funnel(&full.store, &[("kind", "b2b_sale"), ("as_of", "2026-03-01")]);
    assert!(empty.lines().skip(1).all(|l| l.split(',').nth(4) == Some("0")), "{empty}");
    assert_eq!(
        funnel(&full.store, &[("kind", "b2b_sale"), ("as_of", "2026-03-10")]),
        funnel(&full.store, &[("kind", "b2b_sale")])
    );
}

#[test]
fn the_funnel_filters_by_manager_department_and_segment_and_refuses_what_is_not_there() {
    let f = play(SCRIPT.len());
    let run = |params: &[(&str, &str)]| {
        let mut reports = Reports::new();
        reports.add(Arc::new(Analytics));
        let params: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        reports.run("funnel", &params, &f.store.read().unwrap()).map(|t| t.rows().len()).map_err(|e| e.to_string())
    };
    let manager = {
        let r = f.store.read().unwrap();
        let deal = r.list::<Deal>(None, 1).unwrap().remove(0);
        r.get::<crmkit_core::model::User>(deal.manager).unwrap().unwrap().login
    };
    let mine = funnel(&f.store, &[("kind", "b2b_sale"), ("manager", &manager)]);
    assert_eq!(mine, funnel(&f.store, &[("kind", "b2b_sale")]));
    // Another manager holds none of the deals.
    f.user("other");
    let theirs = funnel(&f.store, &[("kind", "b2b_sale"), ("manager", "other")]);
    assert!(theirs.lines().skip(1).all(|l| l.split(',').nth(4) == Some("0")), "{theirs}");
    let before = f.dump();
    for (params, message) in [
        (vec![("kind", "nope")], "report funnel: parameter kind: there is no process kind \"nope\""),
        (vec![("kind", "project")], "report funnel: parameter kind: process kind \"project\" is stageless"),
        (vec![("manager", "nobody")], "report funnel: parameter manager: there is no user \"nobody\""),
        (vec![("from", "2026-13-01")], "report funnel: parameter from: "),
        (
            vec![("to", "2026-03-01"), ("from", "2026-03-02")],
            "report funnel: parameter to: the period ends (2026-03-01) before it starts (2026-03-02)",
        ),
        (
            vec![("department", "east")],
            "report funnel: parameter department: no user is in department \"east\" (departments: ",
        ),
        (
            vec![("segment", "retail")],
            "report funnel: parameter segment: no partner is in segment \"retail\" (segments: ",
        ),
        (
            vec![("frm", "2026-03-01")],
            "report funnel: it has no parameter \"frm\" (it takes kind, from, to, as_of, manager, department, segment)",
        ),
    ] {
        let e = run(&params).expect_err(message);
        assert!(e.starts_with(message), "{params:?}: {e}");
    }
    assert_eq!(f.dump(), before, "a refused report changed the database");
}

#[test]
fn the_funnel_chart_is_well_formed_svg_with_a_bar_per_stage() {
    let f = play(SCRIPT.len());
    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    let params = BTreeMap::from([("kind".to_string(), "b2b_sale".to_string())]);
    let table = reports.run("funnel", &params, &f.store.read().unwrap()).unwrap();
    let svg = crmkit_core::analytics::chart("funnel", &table).unwrap().unwrap();
    well_formed(&svg);
    // Five stages and the won line; the labels carry the counts and conversions.
    assert_eq!(svg.matches("<rect ").count(), 6, "{svg}");
    for label in [">Qualification<", ">5<", ">4 (80.00%)<", ">1 (100.00%)<", ">won<"] {
        assert!(svg.contains(label), "{label} in {svg}");
    }
    assert!(crmkit_core::analytics::chart("no_such_report", &table).is_none());
    assert_eq!(crmkit_core::analytics::charts(), ["funnel", "bottlenecks", "lost", "managers", "abc-xyz", "bcg"]);
}

/// Checks `svg` is one well-formed XML element tree with an `svg` root: every tag closes in
/// order, attribute values are quoted, and text holds no bare `<` or `&`.
pub(crate) fn well_formed(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg.trim();
    assert!(rest.starts_with("<svg "), "{svg}");
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(!text.contains('>'), "a bare > in text: {text}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| entity.starts_with(e)),
                "a bare & in text: {text}"
            );
        }
        let end = rest[start..].find('>').expect("a tag closes") + start;
        let tag = &rest[start + 1..end];
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "</{name}> closes another element");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap());
        }
        rest = &rest[end + 1..];
        if open.is_empty() {
            assert!(rest.trim().is_empty(), "content after the root element: {rest}");
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

#[test]
fn docs_list_every_report_and_parameter() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/analytics.md")).unwrap();
    let sections: Vec<&str> = doc.lines().filter_map(|l| l.strip_prefix("## ")).map(str::trim).collect();
    let reports: Vec<String> = Analytics.reports().into_iter().map(|r| r.name).collect();
    let documented: Vec<&str> = sections
        .iter()
        .copied()
        .filter(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c == '_'))
        .collect();
    assert_eq!(documented, reports, "docs/analytics.md has a `## NAME` section per report, in order");
    // The parameters table: one row per parameter, in order.
    let params: Vec<&str> = doc
        .lines()
        .skip_while(|l| *l != "## Parameters")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(params, PARAMETERS.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    // Every column of the funnel is explained.
    let f = play(1);
    let csv = funnel(&f.store, &[("kind", "b2b_sale")]);
    for column in csv.lines().next().unwrap().split(',') {
        let generic = column.rsplit_once('_').map(|(base, _)| format!("{base}_CUR"));
        assert!(
            doc.contains(&format!("`{column}`")) || generic.is_some_and(|g| doc.contains(&format!("`{g}`"))),
            "docs/analytics.md does not explain column {column}"
        );
    }
}

#[test]
fn the_command_line_prints_the_funnel_as_a_table_csv_json_or_svg_and_refuses_what_is_wrong() {
    use crate::cli::{fails, ok};
    let office = crate::api::Office::new();
    crate::api::two_of_everything(&office);
    let dir = office.site.dir();
    let before = office.site.dump();
    let table = ok(&["analytics", "funnel", dir, "--kind", "b2b_sale"]);
    assert!(table.starts_with("kind      row    stage "), "{table}");
    assert!(
        table.lines().any(|l| l.split_whitespace().take(5).eq([
            "b2b_sale",
            "stage",
            "qualification",
            "Qualification",
            "2"
        ])),
        "{table}"
    );
    assert!(table.trim_end().ends_with("(7 rows)"), "{table}");
    let csv = ok(&["analytics", "funnel", dir, "--kind", "b2b_sale", "--format", "csv"]);
    // Two deals of RUB 1000 in qualification, made through the store: without a probability,
    // they add nothing to the expected wins and the weighted pipeline.
    assert_eq!(
        csv.lines().take(2).collect::<Vec<_>>(),
        [
            "kind,row,stage,stage_name,reached,conversion_from_previous,conversion_from_first,open_now,expected_wins,reached_amount_RUB,open_amount_RUB,weighted_RUB",
            "b2b_sale,stage,qualification,Qualification,2,,100.00,2,0.00,2000.00,2000.00,0.00",
        ]
    );
    // The same table as `crmkit report` gives it: the built-in reports are among the reports.
    assert_eq!(csv, ok(&["report", dir, "funnel", "--param", "kind=b2b_sale", "--format", "csv"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["analytics", "funnel", dir, "--format", "json", "--as-of", "2026-03-02"])).unwrap();
    assert_eq!(json["columns"][4], serde_json::json!({ "name": "reached", "type": "int" }));
    assert_eq!(json["rows"][0][4], 2);
    assert_eq!(json["rows"].as_array().unwrap().len(), 7 + 7 + 5);
    let svg = ok(&["analytics", "funnel", dir, "--kind", "b2b_sale", "--format", "svg", "--department", "north"]);
    well_formed(&svg);
    assert!(svg.contains(">1 (0.00%)<") || svg.contains(">1<"), "{svg}");
    for (args, message) in [
        (vec!["--format", "xml"], "\"xml\" is not a format: table, csv, json or svg"),
        (vec!["--kind", "nope"], "parameter kind: there is no process kind \"nope\""),
        (vec!["--as-of", "2026-02-30"], "parameter as_of: "),
        (
            vec!["--from", "2026-03-02", "--to", "2026-03-01"],
            "parameter to: the period ends (2026-03-01) before it starts (2026-03-02)",
        ),
        (vec!["--manager", "nobody"], "parameter manager: there is no user \"nobody\""),
        (
            vec!["--department", "east"],
            "parameter department: no user is in department \"east\" (departments: north, south)",
        ),
    ] {
        let mut all = vec!["analytics", "funnel", dir];
        all.extend(args.iter().copied());
        let said = fails(&all);
        assert!(said.contains(message), "{args:?}: {said}");
    }
    let said = fails(&["analytics", "nothing", dir]);
    assert!(
        said.contains(
            "there is no report \"nothing\"; the installation has abc-xyz, bcg, bottlenecks, calibration, claims, cohorts, execution, funnel"
        ),
        "{said}"
    );
    // A report without a chart refuses svg, naming those that have one.
    let said = fails(&["analytics", "rfm", dir, "--format", "svg"]);
    assert!(said.contains("report rfm has no chart") && said.contains("funnel"), "{said}");
    assert_eq!(office.site.dump(), before, "a report changed the database");
}

#[test]
fn the_api_answers_the_funnel_as_json_csv_or_svg_to_the_callers_and_over_the_deals_of_the_reports_route() {
    let office = crate::api::Office::new();
    crate::api::two_of_everything(&office);
    let before = office.site.dump();
    let server = crate::api::Served::start(&office.site);
    let path = "/api/v1/analytics/funnel?kind=b2b_sale";
    let reached = |login: &str| {
        let (status, body) = server.request("GET", path, Some(office.token(login)));
        assert_eq!(status, 200, "{login}: {body}");
        assert_eq!(body["rows"][0][2], "qualification");
        body["rows"][0][4].clone()
    };
    // Admins and viewers see both departments' deals, the head the north's only.
    assert_eq!((reached("boss"), reached("watcher"), reached("head")), (2.into(), 2.into(), 1.into()));
    let (status, body) = server.request("GET", path, Some(office.token("north")));
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    // The same table as the reports route gives, which lists the funnel among the reports.
    let (_, via_reports) = server.request("GET", "/api/v1/reports/funnel?kind=b2b_sale", Some(office.token("boss")));
    assert_eq!(server.request("GET", path, Some(office.token("boss"))).1, via_reports);
    let csv = server.exchange("GET", path, Some(office.token("head")), &[("accept", "text/csv")], None);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        csv.text().lines().nth(1).unwrap().starts_with("b2b_sale,stage,qualification,Qualification,1,"),
        "{}",
        csv.text()
    );
    let svg = server.exchange("GET", path, Some(office.token("boss")), &[("accept", "image/svg+xml")], None);
    assert_eq!(svg.status, 200, "{}", svg.text());
    assert!(svg.header("content-type").unwrap().starts_with("image/svg+xml"));
    well_formed(&svg.text());
    // Refused parameters name the parameter; nothing is there by another name.
    for (query, status, message) in [
        ("kind=nope", 422, "report funnel: parameter kind: there is no process kind \"nope\""),
        ("as_of=2026-02-30", 422, "report funnel: parameter as_of: "),
        ("from=2026-03-02&to=2026-03-01", 422, "report funnel: parameter to: the period ends"),
        ("manager=nobody", 422, "report funnel: parameter manager: there is no user \"nobody\""),
        ("segment=retail", 422, "report funnel: parameter segment: no partner is in segment \"retail\""),
        (
            "frm=2026-03-01",
            422,
            "report funnel: it has no parameter \"frm\" (it takes kind, from, to, as_of, manager, department, segment)",
        ),
    ] {
        let (got, body) =
            server.request("GET", &format!("/api/v1/analytics/funnel?{query}"), Some(office.token("boss")));
        assert_eq!((got, body["code"].as_str()), (status, Some("report_failed")), "{query}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with(message), "{query}: {body}");
    }
    // The other charts: a bar per row (the managers' without the team's, the lost deals' per
    // value of a cut), a matrix of nine cells per currency.
    for (report, mark) in [
        ("bottlenecks", "class=\"bar\""),
        ("lost", "class=\"bar\""),
        ("managers", "class=\"bar\""),
        ("abc-xyz", "class=\"cell\""),
    ] {
        let path = format!("/api/v1/analytics/{report}");
        let (status, table) = server.request("GET", &path, Some(office.token("boss")));
        assert_eq!(status, 200, "{report}: {table}");
        let rows = table["rows"].as_array().unwrap();
        let expected = match report {
            "managers" => rows.len() - 1,
            // A bar per value of a cut, its currencies together.
            "lost" => rows
                .iter()
                .map(|r| (r[0].to_string(), r[2].to_string()))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            "abc-xyz" => {
                let currencies: std::collections::BTreeSet<String> = rows.iter().map(|r| r[0].to_string()).collect();
                9 * currencies.len()
            }
            _ => rows.len(),
        };
        let svg = server.exchange("GET", &path, Some(office.token("boss")), &[("accept", "image/svg+xml")], None);
        assert_eq!(svg.status, 200, "{report}: {}", svg.text());
        well_formed(&svg.text());
        assert_eq!(svg.text().matches(mark).count(), expected, "{report}: {}", svg.text());
    }
    // A report without a chart: 406, naming what it is offered as.
    let lost = server.exchange(
        "GET",
        "/api/v1/analytics/rfm",
        Some(office.token("boss")),
        &[("accept", "image/svg+xml")],
        None,
    );
    assert_eq!(lost.status, 406, "{}", lost.text());
    assert!(lost.text().contains("not_acceptable"), "{}", lost.text());
    let (status, body) = server.request("GET", "/api/v1/analytics/pipeline_by_manager", Some(office.token("boss")));
    assert_eq!((status, body["code"].as_str()), (404, Some("report_failed")), "a script is no built-in report: {body}");
    server.stop();
    assert_eq!(office.site.dump(), before, "reading reports changed the database");
}

#[test]
fn every_scanning_report_split_across_threads_answers_what_it_answers_read_on_one_thread() {
    let (_, inst, _) = crate::demo::company();
    let store = inst.store();
    let settings = store.settings();
    let kind = settings.process_kinds[0].id.clone();
    let r = store.read().unwrap();
    let mut manager = None;
    r.for_each::<crmkit_core::model::User>(|u| {
        manager = Some(u.login.clone()).filter(|_| u.roles.contains(&crmkit_core::model::Role::Manager));
        manager.is_none()
    })
    .unwrap();
    let manager = manager.expect("the demo has managers");
    let today = store.clock().now().date();
    let year_ago = today - chrono::Days::new(365);
    let (today, year_ago) = (today.to_string(), year_ago.to_string());
    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    // A snapshot is read by the machine's threads, a write transaction by the calling one.
    assert!(crmkit_core::hooks::View::shared(&r).is_some());
    let tx = store.write(None).unwrap();
    assert!(crmkit_core::hooks::View::shared(&tx).is_none());
    let filters: [&[(&str, &str)]; 4] = [
        &[],
        &[("from", &year_ago), ("to", &today)],
        &[("kind", &kind)],
        &[("manager", &manager), ("as_of", &year_ago)],
    ];
    for report in ["bottlenecks", "lost", "managers", "execution", "abc-xyz", "bcg", "rfm", "cohorts", "loyalty"] {
        for filter in filters {
            let params: BTreeMap<String, String> = filter.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let split = reports.run(report, &params, &r).unwrap();
            let whole = reports.run(report, &params, &tx).unwrap();
            assert!(!split.rows().is_empty(), "{report} {filter:?} has rows");
            assert!(split.rows() == whole.rows(), "{report} {filter:?}: split and whole scans differ");
        }
    }
}
