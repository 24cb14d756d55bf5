//! Sales plans set over the API beside config's `[[plans]]`: the managers report counts
//! both, a manager's plans never overlap nor mix currencies whichever way they were set, and
//! only admins and heads (for their department) set them.

use chrono::NaiveDate;
use crmkit_core::model::Plan;
use crmkit_core::values::{Currency, Money};
use serde_json::json;

use crate::analytics_lost::sales;
use crate::api::{Office, Served};
use crate::common::Backend;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn rub(amount: i64) -> Money {
    Money::new(amount.into(), Currency::RUB)
}

#[test]
fn stored_plans_join_the_configured_ones_and_never_overlap_them() {
    let s = sales(Backend::Redb);
    let store = &s.fx.store;
    let line = |login: &str, n: usize| {
        store.settings().plans.iter().filter(|p| p.manager == login).nth(n).map(|p| p.line).unwrap()
    };
    let (ann, bob) = {
        let r = store.read().unwrap();
        let id = |login| crmkit_core::store::Reader::user_by_login(&r, login).unwrap().unwrap().id;
        (id("ann"), id("bob"))
    };
    // bob's configured plan covers 1–15 March (100000); a stored one the rest of the month.
    let second_half =
        store.transact(None, |tx| tx.create(Plan::new(bob, day(2026, 3, 16), day(2026, 3, 31), rub(50_000))));
    let second_half = second_half.unwrap();
    let got = s.run("managers", &[("from", "2026-03-01"), ("to", "2026-03-31"), ("manager", "bob")]).unwrap();
    let bob_row: Vec<&str> = got.lines().nth(1).unwrap().split(" | ").collect();
    // plan, its currency, D4's 50000 won on 10 March, and 50000 / 150000.
    assert_eq!(bob_row[19..], ["150000", "RUB", "50000", "33.3"], "{got}");

    let before = s.fx.dump();
    let refused = |plan: Plan| s.fx.refused(None, move |tx| tx.create(plan)).to_string();
    let e = refused(Plan::new(bob, day(2026, 3, 10), day(2026, 3, 20), rub(1)));
    assert!(
        e.contains(&format!(
            "manager: bob's plan from 2026-03-10 to 2026-03-20 overlaps the plan of config line {}, from 2026-03-01 to 2026-03-15",
            line("bob", 0)
        )),
        "{e}"
    );
    let e = refused(Plan::new(bob, day(2026, 3, 31), day(2026, 4, 30), rub(1)));
    assert!(e.contains(&format!("overlaps plan {}, from 2026-03-16 to 2026-03-31", second_half.id)), "{e}");
    let e = refused(Plan::new(ann, day(2026, 5, 1), day(2026, 5, 31), Money::new(10.into(), Currency::USD)));
    assert!(
        e.contains(&format!(
            "ann's plans are in RUB (the plan of config line {}), so this one cannot be in USD",
            line("ann", 0)
        )),
        "{e}"
    );
    let e = refused(Plan::new(ann, day(2026, 5, 31), day(2026, 5, 1), rub(1)));
    assert!(e.contains("to: the plan ends (2026-05-01) before it starts (2026-05-31)"), "{e}");
    let e = refused(Plan::new(ann, day(2026, 5, 1), day(2026, 5, 31), rub(0)));
    assert!(e.contains("amount: must be above zero"), "{e}");
    let e = refused(Plan::new(
        ann,
        day(2026, 5, 1),
        day(2026, 5, 31),
        Money::new("10.005".parse().unwrap(), Currency::RUB),
    ));
    assert!(e.contains("amount: 10.005 RUB has more than the 2 decimal places"), "{e}");
    // Moving the stored plan onto the configured one is refused the same way.
    let mut moved = second_half.clone();
    moved.from = day(2026, 3, 15);
    let e = s.fx.refused(None, move |tx| tx.update(moved)).to_string();
    assert!(e.contains("overlaps the plan of config line"), "{e}");
    assert!(s.fx.dump() == before, "a refused plan wrote something");
    // A change that keeps its period clear passes: a plan does not clash with itself.
    let mut noted = second_half;
    noted.comment = "вторая половина марта".into();
    noted.amount = rub(60_000);
    store.transact(None, |tx| tx.update(noted)).unwrap();
}

#[test]
fn admins_and_heads_set_plans_over_the_api_and_a_clash_writes_nothing() {
    let office = Office::new();
    let (north, south) = (office.north.to_string(), office.south.to_string());
    let head = office.site.with(|inst| {
        let r = inst.store().read().unwrap();
        crmkit_core::store::Reader::user_by_login(&r, "head").unwrap().unwrap().id.to_string()
    });
    let server = Served::start(&office.site);
    let plan = |manager: &str, from: &str, to: &str| {
        json!({ "manager": manager, "from": from, "to": to, "amount": { "amount": "500000", "currency": "RUB" } })
            .to_string()
    };
    let (status, march) =
        server.send("POST", "/api/v1/plans", office.token("boss"), plan(&north, "2026-03-01", "2026-03-31").as_bytes());
    assert_eq!(status, 201, "{march}");
    let (status, april) =
        server.send("POST", "/api/v1/plans", office.token("head"), plan(&north, "2026-04-01", "2026-04-30").as_bytes());
    assert_eq!(status, 201, "{april}");
    server.stop();
    let before = office.site.dump();
    let server = Served::start(&office.site);
    for (login, body, status, code, says) in [
        ("head", plan(&head, "2026-03-01", "2026-03-31"), 403, "forbidden", ""),
        ("head", plan(&south, "2026-03-01", "2026-03-31"), 403, "forbidden", ""),
        ("north", plan(&north, "2026-05-01", "2026-05-31"), 403, "forbidden", ""),
        ("watcher", plan(&north, "2026-05-01", "2026-05-31"), 403, "forbidden", ""),
        (
            "boss",
            plan(&north, "2026-03-20", "2026-04-10"),
            422,
            "invalid",
            "north's plan from 2026-03-20 to 2026-04-10 overlaps plan",
        ),
        (
            "boss",
            plan(&north, "2026-05-31", "2026-05-01"),
            422,
            "invalid",
            "the plan ends (2026-05-01) before it starts",
        ),
        (
            "boss",
            plan("01JN8W6ZQ0000000000000000Z", "2026-05-01", "2026-05-31"),
            422,
            "invalid",
            "which does not exist",
        ),
    ] {
        let (got, answer) = server.send("POST", "/api/v1/plans", office.token(login), body.as_bytes());
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{login} {body}: {answer}");
        assert!(answer.to_string().contains(says), "{login} {body}: {answer}");
    }
    // Moving April onto March is refused too.
    let id = april["id"].as_str().unwrap();
    let (status, answer) = server.send(
        "PATCH",
        &format!("/api/v1/plans/{id}"),
        office.token("boss"),
        json!({ "version": april["version"], "from": "2026-03-31" }).to_string().as_bytes(),
    );
    assert_eq!((status, answer["code"].as_str()), (422, Some("invalid")), "{answer}");
    assert!(answer.to_string().contains("overlaps plan"), "{answer}");
    // The manager reads their own plans; the other manager sees none of them.
    let (_, mine) = server.request("GET", &format!("/api/v1/plans?manager={north}"), Some(office.token("north")));
    assert_eq!(mine["items"].as_array().unwrap().len(), 2, "{mine}");
    let (_, theirs) = server.request("GET", "/api/v1/plans", Some(office.token("south")));
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    server.stop();
    assert!(office.site.dump() == before, "a refused plan wrote something");
}

#[test]
fn a_config_plan_that_overlaps_a_stored_one_stops_the_installation_opening() {
    let site = crate::cli::Site::new(|c| {
        format!("{c}\n[[users]]\nlogin = \"ivanov\"\nname = \"Иван Иванов\"\nroles = [\"manager\"]\n")
    });
    let stored = site.with(|inst| {
        let r = inst.store().read().unwrap();
        let ivanov = crmkit_core::store::Reader::user_by_login(&r, "ivanov").unwrap().unwrap().id;
        inst.store()
            .transact(None, |tx| tx.create(Plan::new(ivanov, day(2026, 3, 1), day(2026, 3, 31), rub(100))))
            .unwrap()
    });
    let config = site.dir.join("config/crmkit.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // The plan's line is its `manager` key's, after a blank line and `[[plans]]`.
    let line = text.lines().count() + 3;
    std::fs::write(
        &config,
        format!("{text}\n[[plans]]\nmanager = \"ivanov\"\nperiod = \"2026-03\"\namount = \"100\"\n"),
    )
    .unwrap();
    let Err(e) = crmkit_core::Installation::open(&site.dir, std::sync::Arc::new(crmkit_core::time::SystemClock)) else {
        panic!("the installation opened with an overlapping plan")
    };
    assert_eq!(
        e.to_string(),
        format!(
            "{}:{line}:1: plans: ivanov's plan from 2026-03-01 to 2026-03-31 overlaps plan {} stored in the database, from 2026-03-01 to 2026-03-31",
            config.display(),
            stored.id
        )
    );
    // Another month is fine.
    std::fs::write(
        &config,
        format!("{text}\n[[plans]]\nmanager = \"ivanov\"\nperiod = \"2026-04\"\namount = \"100\"\n"),
    )
    .unwrap();
    crmkit_core::Installation::open(&site.dir, std::sync::Arc::new(crmkit_core::time::SystemClock)).unwrap();
}
