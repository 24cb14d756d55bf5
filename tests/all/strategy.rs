//! Relationship strategies: the `partner.strategy` rule names each client partner's segment
//! from its figures; a run reports segment changes and partners due for contact, a rule's
//! fault is that partner's alone, and applying writes the segments and the recommended tasks
//! once — a second run creates nothing new. Through the engine on a real store, the command
//! line on the demo with the shipped Rhai rule, and the API.

use std::path::Path;
use std::sync::Arc;

use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::hooks::{Answer, Fault, HookInput, HookPoint, Hooks, Subject};
use crmkit_core::model::{Interaction, InteractionKind, Partner, PartnerRole, Role, Task, TaskStatus, User};
use crmkit_core::store::Reader;
use crmkit_core::strategy::{apply, evaluate};
use crmkit_core::time::Timestamp;
use serde_json::json;

use crate::common::Fixture;

/// A rule answering by the partner's name: "Альфа" has open deals → key; "Бета" faults;
/// "Гамма" is named a segment with no strategy; the others keep theirs.
fn rule() -> Hooks {
    let mut hooks = Hooks::new();
    hooks.register("rule", |input: &HookInput<'_>| -> Result<Answer, Fault> {
        let Some(Subject::Partner(p)) = &input.after else { return Err(Fault("no partner".into())) };
        let figures = input.strategy.ok_or_else(|| Fault("no figures".into()))?;
        match p.name.as_str() {
            "Бета" => Err(Fault("the rule broke on Бета".into())),
            "Гамма" => Ok(Answer::Segment(Some("vip".into()))),
            _ if figures.last_contact.is_none() => Ok(Answer::Segment(Some("dormant".into()))),
            _ => Ok(Answer::Segment(Some("key".into()))),
        }
    });
    hooks.bind(HookPoint::PartnerStrategy, "rule", &[]).unwrap();
    hooks
}

#[test]
fn a_run_reports_changes_and_due_contacts_a_fault_is_one_partners_and_applying_twice_creates_nothing_new() {
    let mut settings = Settings::parse(DEFAULT_CONFIG, Path::new("crmkit.toml")).unwrap();
    settings.hooks.clear();
    let fx = Fixture::with_settings(settings.clone());
    let engine = crmkit_core::process::Engine::new(&settings, rule()).unwrap();
    let (head, manager) = fx
        .store
        .transact(None, |tx| {
            let mut h = User::new("head", "Head", Role::Head);
            h.department = Some("north".into());
            let mut m = User::new("ivanova", "Иванова", Role::Manager);
            m.department = Some("north".into());
            Ok((tx.create(h)?.id, tx.create(m)?.id))
        })
        .unwrap();
    let partners = fx
        .store
        .transact(None, |tx| {
            let mut out = Vec::new();
            // Two partners share the name Дельта: each gets its own tasks.
            for (name, segment) in
                [("Альфа", Some("standard")), ("Бета", None), ("Гамма", None), ("Дельта", None), ("Дельта", None)]
            {
                let mut p = Partner::new(name, PartnerRole::Client);
                p.manager = Some(manager);
                p.segment = segment.map(str::to_string);
                out.push(tx.create(p)?);
            }
            tx.create(Partner::new("Конкурент", PartnerRole::Competitor))?;
            // Альфа was called 20 days ago; the others never.
            let at = Timestamp(crate::common::T0.0 - 20 * 86_400_000);
            tx.create(Interaction::new(InteractionKind::Call, at, out[0].id, "Звонок"))?;
            Ok(out)
        })
        .unwrap();
    let today = crate::common::T0.date();
    let classes = crmkit_core::analytics::client_classes(&fx.store.read().unwrap(), today).unwrap();
    let ev = evaluate(&fx.store.read().unwrap(), engine.hooks(), &classes, today).unwrap();
    // Бета faults and Гамма is named a segment config has no strategy for: both reported.
    let faults: Vec<(&str, &str)> = ev.faults.iter().map(|f| (f.name.as_str(), f.message.as_str())).collect();
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert!(faults[0].1.contains("the rule broke on Бета"), "{faults:?}");
    assert!(
        faults[1].1.contains("named segment \"vip\", which has no [[strategies]] entry (key, develop"),
        "{faults:?}"
    );
    let outcomes: Vec<(&str, Option<&str>, Option<&str>, bool)> =
        ev.outcomes.iter().map(|o| (o.name.as_str(), o.from.as_deref(), o.to.as_deref(), o.overdue)).collect();
    // Альфа: key (every 14 days; 20 days since the call: due). Дельта: dormant (never
    // contacted: due).
    assert_eq!(
        outcomes,
        [
            ("Альфа", Some("standard"), Some("key"), true),
            ("Дельта", None, Some("dormant"), true),
            ("Дельта", None, Some("dormant"), true)
        ]
    );
    assert_eq!(ev.outcomes[0].due, Some(today - chrono::Duration::days(6)));
    // Evaluating wrote nothing; applying writes the segments and the tasks: a key account's
    // to the head of the manager's department, the others' to the manager.
    let before = fx.dump();
    let _ = evaluate(&fx.store.read().unwrap(), engine.hooks(), &classes, today).unwrap();
    assert!(fx.dump() == before);
    let done = fx.store.transact(None, |tx| apply(tx, &engine, &ev)).unwrap();
    assert_eq!((done.segments_changed, done.tasks_created, done.tasks_open_already), (3, 4, 0), "{done:?}");
    let r = fx.store.read().unwrap();
    let segment = |i: usize| r.load::<Partner>(partners[i].id).unwrap().segment;
    assert_eq!(
        (segment(0).as_deref(), segment(1), segment(2), segment(3).as_deref()),
        (Some("key"), None, None, Some("dormant"))
    );
    let titles = |who| -> Vec<String> {
        r.tasks_of(who, TaskStatus::Open, usize::MAX).unwrap().into_iter().map(|t: Task| t.title).collect()
    };
    assert_eq!(titles(head), ["Quarterly business review: Альфа", "Call about next quarter's needs: Альфа"]);
    assert_eq!(titles(manager), ["Call to win them back: Дельта", "Call to win them back: Дельта"]);
    let task = r.tasks_of(head, TaskStatus::Open, 1).unwrap().remove(0);
    assert!(
        task.description.contains("Strategy \"Key accounts\" (key): contact every 14 days, last contact"),
        "{}",
        task.description
    );
    drop(r);
    // The same run again: nothing new.
    let ev = evaluate(&fx.store.read().unwrap(), engine.hooks(), &classes, today).unwrap();
    let before = fx.dump();
    let again = fx.store.transact(None, |tx| apply(tx, &engine, &ev)).unwrap();
    assert_eq!((again.segments_changed, again.tasks_created, again.tasks_open_already), (0, 0, 4), "{again:?}");
    assert!(fx.dump() == before, "a second run wrote something");
    // The dossier shows the strategy and what to do next.
    let d = crmkit_core::dossier::dossier(&fx.store.read().unwrap(), partners[0].id, Default::default()).unwrap();
    let s = d.strategy.expect("a strategy");
    assert_eq!((s.segment.as_str(), s.overdue, s.next_actions.len()), ("key", true, 2));
    assert_eq!(s.strategy.name, "Key accounts");
}

#[test]
fn strategies_config_mistakes_name_file_line_and_key() {
    let cases = [
        ("[[strategies]]\nsegment = \"Key\"\nname = \"K\"\ncontact_every_days = 7\n", "strategies.segment: \"Key\" is not an id"),
        (
            "[[strategies]]\nsegment = \"k\"\nname = \"K\"\ncontact_every_days = 7\n[[strategies]]\nsegment = \"k\"\nname = \"K2\"\ncontact_every_days = 7\n",
            "strategies.segment: \"k\" has a strategy already (line",
        ),
        ("[[strategies]]\nsegment = \"k\"\nname = \"K\"\ncontact_every_days = 0\n", "strategies.contact_every_days: from 1 to 3660 days, got 0"),
        ("[[strategies]]\nsegment = \"k\"\nname = \"K\"\ncontact_every_days = 7\nmanager_level = \"ceo\"\n", "strategies.manager_level: \"ceo\" is not manager or head"),
        ("[[strategies]]\nsegment = \"k\"\nname = \"K\"\ncontact_every_days = 7\nactions = [\"a\", \"a\"]\n", "strategies.actions: \"a\" is listed twice"),
        ("[strategy]\nrun_every_hours = 100000\n", "strategy.run_every_hours: from 0.001 (3.6 seconds) to 8784 (a year), or 0 for never; got 100000"),
        ("[strategy]\nrun_every_hours = -1\n", "got -1"),
        ("[[strategies]]\nsegment = \"k\"\nname = \"K\"\ncontact_every_days = 7\nevery = 3\n", "unknown key \"every\""),
    ];
    // The default config with its [strategy] table left to the cases.
    let base = DEFAULT_CONFIG.replace("\n[strategy]\n", "\n");
    let lines = base.lines().count();
    for (text, expected) in cases {
        let err =
            Settings::parse(&format!("{base}\n{text}"), Path::new("config/crmkit.toml")).expect_err(text).to_string();
        assert!(err.starts_with("config/crmkit.toml:"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line > lines, "{text}: the error is on line {line}, in the case's text: {err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn the_command_line_runs_the_shipped_rule_on_the_demo_and_applying_twice_creates_nothing_new() {
    use crate::cli::ok;
    let (_tmp, inst, _) = crate::demo::make(600, 5);
    let dir = inst.dir().to_str().unwrap().to_string();
    drop(inst);
    let out = ok(&["strategy", &dir]);
    assert!(out.contains("client partner(s) as of") && out.contains("0 could not be decided"), "{out}");
    assert!(out.contains("segments: ") && out.contains("key "), "{out}");
    assert!(out.contains("nothing written"), "{out}");
    let out = ok(&["strategy", &dir, "--apply"]);
    let created: u64 = out.split("segment(s) changed, ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(created > 0, "{out}");
    let out = ok(&["strategy", &dir, "--apply"]);
    assert!(out.contains("applied: 0 segment(s) changed, 0 task(s) created"), "{out}");
    ok(&["check", &dir]);
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&dir).join("data/strategy-last-run.json")).unwrap())
            .unwrap();
    assert_eq!(last["written"]["tasks_created"], json!(0));
    let _ = Arc::new(());
}

#[test]
fn the_server_runs_the_strategies_on_the_schedule_of_its_config() {
    use crate::api::{Office, Served};
    let office = Office::with_config(|c| c.replace("# run_every_hours = 24", "run_every_hours = 0.001"));
    office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut p = Partner::new("Клиент", PartnerRole::Client);
                p.manager = Some(office.north);
                tx.create(p)
            })
            .unwrap()
    });
    let last = office.site.dir.join("data/strategy-last-run.json");
    let server = Served::start(&office.site);
    // Every 3.6 seconds: the first run comes within a few.
    let started = std::time::Instant::now();
    while !last.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "no scheduled run within a minute");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, body) = server.request("GET", "/api/v1/strategies", Some(office.token("boss")));
    server.stop();
    let run = &body["last_run"];
    assert_eq!((run["applied"].as_bool(), run["partners"].as_u64()), (Some(true), Some(1)), "{body}");
    assert_eq!(run["segments"], json!({"dormant": 1}), "{body}");
    assert_eq!(body["segments"], json!({"dormant": 1}), "the segment is written: {body}");
}

#[test]
fn over_the_api_admins_run_the_strategies_and_everyone_reads_them() {
    use crate::api::{Office, Served};
    let office = Office::new();
    let (north, boss) = (office.token("north"), office.token("boss"));
    office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut p = Partner::new("Северный клиент", PartnerRole::Client);
                p.manager = Some(office.north);
                tx.create(p)?;
                let mut p = Partner::new("Южный клиент", PartnerRole::Client);
                p.manager = Some(office.south);
                tx.create(p)
            })
            .unwrap()
    });
    let server = Served::start(&office.site);
    let (status, body) = server.request("GET", "/api/v1/strategies", Some(north));
    assert_eq!((status, body["last_run"].clone()), (200, json!(null)), "{body}");
    assert_eq!(body["strategies"].as_array().unwrap().len(), 6, "{body}");
    assert_eq!(body["segments"], json!({"": 1}), "a manager counts their own clients: {body}");
    let (status, _) = server.send("POST", "/api/v1/strategies/run?apply=true", north, b"{}");
    assert_eq!(status, 403);
    let (status, body) = server.send("POST", "/api/v1/strategies/run?apply=maybe", boss, b"{}");
    assert_eq!((status, body["field"].as_str()), (400, Some("apply")), "{body}");
    let (status, run) = server.send("POST", "/api/v1/strategies/run?apply=true", boss, b"{}");
    assert_eq!((status, run["partners"].as_u64(), run["applied"].as_bool()), (200, Some(2), Some(true)), "{run}");
    assert_eq!(run["segments"], json!({"dormant": 2}), "{run}");
    assert_eq!(run["written"]["tasks_created"], json!(2), "{run}");
    let (_, again) = server.send("POST", "/api/v1/strategies/run?apply=true", boss, b"{}");
    assert_eq!(
        (again["written"]["tasks_created"].clone(), again["written"]["tasks_open_already"].clone()),
        (json!(0), json!(2))
    );
    let (_, body) = server.request("GET", "/api/v1/strategies", Some(boss));
    assert_eq!(body["segments"], json!({"dormant": 2}));
    assert_eq!(body["last_run"]["written"]["tasks_open_already"], json!(2), "{body}");
    server.stop();
}
