//! Claims work on a real store and over a real server: a claim is registered with its type's
//! due date, taken up, postponed, decided with the settled amount and the reply, closed and
//! reopened — every step appended and kept; the shipped rules guard the decision and give
//! the responsible person tasks; every refused step, request and reaction leaves the
//! database as it was.

use chrono::NaiveDate;
use crmkit_core::hooks::{Action, Answer, Fault, HookInput, HookPoint, Hooks};
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::{Claim, ClaimAction, ClaimStatus, Decision};
use crmkit_core::store::Reader;
use crmkit_core::values::{Currency, Money};
use crmkit_core::Error;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::api::{Office, Served};
use crate::common::{native_engine, Fixture};

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn rub(amount: &str) -> Money {
    Money::new(amount.parse::<Decimal>().unwrap(), Currency::RUB)
}

/// The config text with the shipped claim rules bound.
fn with_claim_rules(config: String) -> String {
    config
        + "\n[[hooks]]\npoint = \"claim.before_transition\"\nhandler = \"claims/rules.rhai::decision\"\n\
           \n[[hooks]]\npoint = \"claim.after_transition\"\nhandler = \"claims/rules.rhai::follow_up\"\n"
}

/// The north manager's client, in `office`.
fn north_client(office: &Office) -> PartnerId {
    office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut p =
                    crmkit_core::model::Partner::new("Северный клиент", crmkit_core::model::PartnerRole::Client);
                p.manager = Some(office.north);
                Ok(tx.create(p)?.id)
            })
            .unwrap()
    })
}

#[test]
fn over_the_api_a_claim_is_registered_reviewed_decided_closed_and_reopened_with_every_step_kept() {
    let office = Office::with_config(with_claim_rules);
    let partner = north_client(&office);
    let [head, north] = ["head", "north"].map(|l| office.token(l));
    let mut server = Served::start(&office.site);
    let claim = json!({
        "partner": partner, "kind": "quality", "cause": "damaged", "subject": "Разбиты корпуса двух серверов",
        "claimed": {"amount": "240000.00", "currency": "RUB"}, "registered": "2026-11-30"
    });
    let (status, c) = post(&server, north, "/api/v1/claims", claim);
    assert_eq!(status, 201, "{c}");
    // The type's ten days, the caller responsible, the registration step taken.
    assert_eq!((c["status"].as_str(), c["due"].as_str()), (Some("registered"), Some("2026-12-10")), "{c}");
    assert_eq!(c["responsible"], json!(office.north));
    assert_eq!(c["steps"].as_array().unwrap().len(), 1);
    assert_eq!(c["steps"][0]["action"], "register");
    let id = c["id"].as_str().unwrap().to_string();
    let step = |action: &str| format!("/api/v1/claims/{id}/{action}");

    let (status, c) = post(&server, north, &step("review"), json!({"version": 1, "comment": "фото получены"}));
    assert_eq!((status, c["status"].as_str()), (200, Some("under_review")), "{c}");
    // The reaction gave the responsible person a review task on the claim.
    let (_, tasks) = server.request("GET", &format!("/api/v1/tasks?claim={id}"), Some(north));
    let titles: Vec<&str> = tasks["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Review claim: Разбиты корпуса двух серверов"], "{tasks}");
    assert_eq!(tasks["items"][0]["executor"], json!(office.north));

    let postpone = json!({"version": 2, "until": "2026-12-15", "reason": "ждём экспертизу"});
    let (status, c) = post(&server, north, &step("postpone"), postpone);
    assert_eq!((status, c["postponed_until"].as_str()), (200, Some("2026-12-15")), "{c}");
    server.stop();

    // A manager may not settle more than 100,000 (the shipped guard): refused, nothing written.
    let before = office.site.dump();
    server = Served::start(&office.site);
    let decide = json!({"version": 3, "decision": "partly_satisfied", "settled": "150000", "reply": "Заменим корпуса"});
    let (status, answer) = post(&server, north, &step("decide"), decide.clone());
    assert_eq!((status, answer["code"].as_str(), answer["field"].as_str()), (422, Some("rejected"), Some("settled")));
    assert!(answer["message"].as_str().unwrap().contains("takes a head's decision"), "{answer}");
    server.stop();
    assert!(office.site.dump() == before, "a refused decision wrote something");
    let server = Served::start(&office.site);
    let step = |token: &str, action: &str, body: Value| post(&server, token, &step(action), body);
    let (status, c) = step(head, "decide", decide);
    assert_eq!((status, c["decision"].as_str()), (200, Some("partly_satisfied")), "{c}");
    assert_eq!(c["settled"], json!({"amount": "150000", "currency": "RUB"}));
    assert_eq!(c["reply"], "Заменим корпуса");
    let (_, tasks) = server.request("GET", &format!("/api/v1/tasks?claim={id}"), Some(north));
    assert_eq!(tasks["items"].as_array().unwrap().len(), 2, "a settlement task too: {tasks}");

    let (status, c) = step(north, "close", json!({"version": 4}));
    assert_eq!((status, c["status"].as_str()), (200, Some("closed")), "{c}");
    assert!(c["closed_at"].is_string());
    let (status, c) = step(north, "reopen", json!({"version": 5, "reason": "клиент не согласен с суммой"}));
    assert_eq!((status, c["status"].as_str(), &c["decision"]), (200, Some("under_review"), &Value::Null), "{c}");
    let actions: Vec<&str> = c["steps"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["register", "review", "postpone", "decide", "close", "reopen"]);
    // The decision's step keeps what was decided after the reopen cleared it.
    assert_eq!(c["steps"][3]["decision"], "partly_satisfied");
    assert_eq!(c["steps"][3]["settled"], json!({"amount": "150000", "currency": "RUB"}));
    assert_eq!(c["steps"][5]["note"], "клиент не согласен с суммой");
    // The claims report over the API: the reopened claim open again, its decision undone.
    let (status, report) = server.request("GET", "/api/v1/analytics/claims", Some(head));
    assert_eq!(status, 200, "{report}");
    let columns: Vec<&str> =
        report["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    let total = &report["rows"][0];
    let at = |name: &str| &total[columns.iter().position(|c| *c == name).unwrap()];
    assert_eq!(
        (at("by"), at("registered"), at("open"), at("decided")),
        (&json!("total"), &json!(1), &json!(1), &json!(0))
    );
    server.stop();
}

#[test]
fn every_bad_claim_request_is_refused_with_its_reason_and_writes_nothing() {
    let office = Office::new();
    let partner = north_client(&office);
    let other = north_client(&office);
    let [north, south, watcher] = ["north", "south", "watcher"].map(|l| office.token(l));
    let contact = office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| Ok(tx.create(crmkit_core::model::ContactPerson::new(other, "Чужой контакт"))?.id))
            .unwrap()
    });
    let server = Served::start(&office.site);
    let send = |token: &str, method: &str, path: &str, body: Value| {
        server.send(method, path, token, body.to_string().as_bytes())
    };
    let new = |kind: &str, cause: &str| {
        json!({"partner": partner, "kind": kind, "cause": cause, "subject": "Недопоставка",
               "claimed": {"amount": "1000.00", "currency": "RUB"}})
    };
    let (status, c) = send(north, "POST", "/api/v1/claims", new("delivery", "short"));
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let (status, reviewed) = send(north, "POST", &format!("/api/v1/claims/{id}/review"), json!({"version": 1}));
    assert_eq!(status, 200, "{reviewed}");
    server.stop();

    let before = office.site.dump();
    let server = Served::start(&office.site);
    let send = |token: &str, method: &str, path: &str, body: Value| {
        server.send(method, path, token, body.to_string().as_bytes())
    };
    let op = |what: &str| format!("/api/v1/claims/{id}/{what}");
    let decide = |decision: &str, settled: Value| json!({"version": 2, "decision": decision, "settled": settled, "reply": "Ответ клиенту"});
    let refusals: Vec<(&str, &str, String, Value, u16, &str, &str)> = vec![
        // A decision in the client's favour names the settled amount its type requires.
        (north, "POST", op("decide"), decide("satisfied", Value::Null), 422, "settled", "needs the settled amount"),
        (
            north,
            "POST",
            op("decide"),
            decide("partly_satisfied", json!("0")),
            422,
            "settled",
            "needs the settled amount",
        ),
        (north, "POST", op("decide"), decide("partly_satisfied", json!("1000")), 422, "settled", "settles less than"),
        (
            north,
            "POST",
            op("decide"),
            decide("satisfied", json!("1000.01")),
            422,
            "settled",
            "more than the 1000.00 RUB claimed",
        ),
        (
            north,
            "POST",
            op("decide"),
            decide("rejected", json!("10")),
            422,
            "settled",
            "a rejected claim settles nothing",
        ),
        (north, "POST", op("decide"), decide("satisfied", json!("1.001")), 422, "settled", "decimal places"),
        (
            north,
            "POST",
            op("decide"),
            json!({"version": 2, "decision": "satisfied", "settled": "1000"}),
            422,
            "reply",
            "the reply to the client is required",
        ),
        (
            north,
            "POST",
            op("decide"),
            json!({"version": 2, "reply": "x"}),
            422,
            "decision",
            "is required to decide a claim",
        ),
        (
            north,
            "POST",
            op("decide"),
            json!({"version": 2, "decision": "maybe", "reply": "x"}),
            422,
            "decision",
            "unknown variant `maybe`",
        ),
        // Only a decided claim is closed or reopened.
        (north, "POST", op("close"), json!({"version": 2}), 422, "status", "only a decided claim is closed"),
        (
            north,
            "POST",
            op("reopen"),
            json!({"version": 2, "reason": "ещё раз"}),
            422,
            "status",
            "only a decided or closed claim is reopened",
        ),
        (north, "POST", op("review"), json!({"version": 2}), 422, "status", "only a registered claim is taken up"),
        (
            north,
            "POST",
            op("postpone"),
            json!({"version": 2, "until": "2026-01-01", "reason": "ждём"}),
            422,
            "postponed_until",
            "later than the due date",
        ),
        (
            north,
            "POST",
            op("postpone"),
            json!({"version": 2, "until": "2099-01-01"}),
            422,
            "note",
            "the reason for the postponement is required",
        ),
        (
            north,
            "POST",
            op("postpone"),
            json!({"version": 2, "reason": "ждём"}),
            422,
            "postponed_until",
            "is required to postpone",
        ),
        (north, "POST", op("close"), json!({"version": 1}), 409, "", ""),
        (north, "POST", op("close"), json!({}), 400, "version", "names the version"),
        (north, "POST", op("explode"), json!({"version": 2}), 404, "", "has no action \"explode\""),
        (south, "POST", op("close"), json!({"version": 2}), 404, "", ""),
        (watcher, "POST", op("close"), json!({"version": 2}), 403, "", ""),
        // What a claim is and whose are checked on registration.
        (north, "POST", "/api/v1/claims".into(), new("warranty", "defect"), 422, "kind", "not a configured claim type"),
        (
            north,
            "POST",
            "/api/v1/claims".into(),
            new("delivery", "defect"),
            422,
            "cause",
            "not a cause of claim type delivery",
        ),
        (
            north,
            "POST",
            "/api/v1/claims".into(),
            json!({"partner": partner, "kind": "quality", "cause": "defect", "subject": " "}),
            422,
            "subject",
            "is required",
        ),
        (
            north,
            "POST",
            "/api/v1/claims".into(),
            json!({"partner": partner, "kind": "quality", "cause": "defect", "subject": "x", "contact": contact}),
            422,
            "contact",
            "not partner",
        ),
        (
            north,
            "POST",
            "/api/v1/claims".into(),
            json!({"partner": partner, "kind": "quality", "cause": "defect", "subject": "x", "registered": "2026-03-10", "due": "2026-03-01"}),
            422,
            "due",
            "before it is registered",
        ),
        (
            north,
            "POST",
            "/api/v1/claims".into(),
            json!({"partner": partner, "kind": "quality", "cause": "defect", "subject": "x", "status": "decided"}),
            422,
            "status",
            "",
        ),
        (
            north,
            "PATCH",
            format!("/api/v1/claims/{id}"),
            json!({"version": 2, "settled": {"amount": "5.00", "currency": "RUB"}}),
            422,
            "settled",
            "",
        ),
        (north, "PATCH", format!("/api/v1/claims/{id}"), json!({"version": 2, "partner": other}), 422, "partner", ""),
        (north, "DELETE", format!("/api/v1/claims/{id}"), json!({}), 405, "", ""),
    ];
    for (token, method, path, body, status, field, says) in refusals {
        let (got, answer) = send(token, method, &path, body.clone());
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"].as_str(), Some(field), "{method} {path} {body}: {answer}");
        }
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path} {body}: {answer} does not say {says:?}");
    }
    server.stop();
    assert!(office.site.dump() == before, "a refused request wrote something");
}

fn post(server: &Served, token: &str, path: &str, body: Value) -> (u16, Value) {
    server.send("POST", path, token, body.to_string().as_bytes())
}

/// A client, its manager, and a claim registered for it through the engine.
fn registered(fx: &Fixture, engine: &crmkit_core::process::Engine, kind: &str, cause: &str) -> (Claim, UserId) {
    let (p, manager) = fx.client("Альфа");
    let claim = fx
        .store
        .transact(Some(manager), |tx| {
            let mut c =
                Claim::new(p.id, kind, cause, "Медленно отвечает поддержка", manager, Some(day("2026-03-01")), None);
            c.claimed = Some(rub("5000.00"));
            engine.create(tx, c)
        })
        .unwrap();
    (claim, manager)
}

#[test]
fn a_type_that_settles_no_amount_is_satisfied_without_one_and_a_claim_keeps_its_steps() {
    let fx = Fixture::new();
    let engine = native_engine(Hooks::new());
    let (c, manager) = registered(&fx, &engine, "service", "support");
    assert_eq!(c.due, Some(day("2026-03-16")), "service claims are due in 15 days");
    let c = fx
        .store
        .transact(Some(manager), |tx| {
            engine.decide_claim(tx, c.id, c.version, Decision::Satisfied, None, "Извинились, назначили менеджера")
        })
        .unwrap();
    assert_eq!((c.status, c.settled, c.steps.len()), (ClaimStatus::Decided, None, 2));
    assert_eq!(c.steps[1].action, ClaimAction::Decide);
    // Outside the operations nothing of the lifecycle changes, and no step is rewritten.
    let mut rewritten = c.clone();
    rewritten.steps[0].note = Some("переписано".into());
    let err = fx.refused(Some(manager), |tx| tx.update(rewritten));
    assert!(err.to_string().contains("steps"), "{err}");
    let mut closed = c.clone();
    closed.status = ClaimStatus::Closed;
    let err = fx.refused(Some(manager), |tx| tx.update(closed));
    assert!(err.to_string().contains("claim operations"), "{err}");
    let err = fx.refused(Some(manager), |tx| tx.delete::<Claim>(c.id, c.version));
    assert!(err.to_string().contains("kept with its steps"), "{err}");
    // Reopened, a decision for the client needs no amount, but a rejection still settles none.
    let c =
        fx.store.transact(Some(manager), |tx| engine.reopen_claim(tx, c.id, c.version, "повторная жалоба")).unwrap();
    let err = fx.refused(Some(manager), |tx| {
        engine.decide_claim(tx, c.id, c.version, Decision::Rejected, Some(rub("1.00")), "Отказ")
    });
    assert!(err.to_string().contains("a rejected claim settles nothing"), "{err}");
    assert_eq!(fx.store.read().unwrap().load::<Claim>(c.id).unwrap().steps.len(), 3, "register, decide, reopen");
}

#[test]
fn a_guards_refusal_and_a_reaction_that_acts_on_a_deal_write_nothing() {
    let fx = Fixture::new();
    let mut hooks = Hooks::new();
    hooks.register("no_rejections", |i: &HookInput<'_>| {
        let step = i.claim_step.expect("a claim's step");
        Ok::<_, Fault>(match (step.action, i.after.as_ref()) {
            (ClaimAction::Decide, Some(crmkit_core::hooks::Subject::Claim(c)))
                if c.decision == Some(Decision::Rejected) =>
            {
                Answer::Reject { message: "claims are not rejected this month".into(), field: Some("decision".into()) }
            }
            _ => Answer::Allow,
        })
    });
    hooks.bind(HookPoint::ClaimBeforeTransition, "no_rejections", &[]).unwrap();
    hooks.register("on_review", |i: &HookInput<'_>| {
        let step = i.claim_step.expect("a claim's step");
        Ok::<_, Fault>(Answer::Actions(match step.action {
            ClaimAction::Review => vec![
                Action::CreateTask {
                    title: "Разобрать претензию".into(),
                    description: String::new(),
                    executor: None,
                    due_in_minutes: Some(60),
                    required: false,
                },
                Action::AddNote {
                    subject: "Претензия принята в работу".into(), body: String::new()
                },
            ],
            ClaimAction::Postpone => vec![Action::SetField { field: "comment".into(), value: json!("x") }],
            _ => Vec::new(),
        }))
    });
    hooks.bind(HookPoint::ClaimAfterTransition, "on_review", &[]).unwrap();
    let engine = native_engine(hooks);
    let (c, manager) = registered(&fx, &engine, "quality", "defect");
    let c = fx.store.transact(Some(manager), |tx| engine.review_claim(tx, c.id, c.version, "")).unwrap();
    let r = fx.store.read().unwrap();
    let tasks: Vec<_> = r
        .tasks_of(manager, crmkit_core::model::TaskStatus::Open, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|t| t.claim == Some(c.id))
        .collect();
    assert_eq!(tasks.len(), 1, "the review task, on the claim, for its responsible person");
    assert!(tasks[0].deal.is_none() && !tasks[0].required);
    drop(r);
    let err = fx.refused(Some(manager), |tx| {
        engine.decide_claim(tx, c.id, c.version, Decision::Rejected, None, "Брак не подтверждён экспертизой")
    });
    assert!(matches!(&err, Error::Rejected { message, .. } if message.contains("not rejected this month")), "{err}");
    let err = fx
        .refused(Some(manager), |tx| engine.postpone_claim(tx, c.id, c.version, day("2026-04-01"), "ждём экспертизу"));
    assert!(err.to_string().contains("set_field (comment) sets a deal's field"), "{err}");
}

/// The claims report, row `by`/`key`, as (registered, open, overdue, decided, satisfied,
/// partly, rejected, claimed, settled, avg days, median days).
type Line = (u64, u64, u64, u64, u64, u64, u64, String, String, Value, Value);

fn report(fx: &Fixture, params: &[(&str, &str)]) -> Vec<(String, String, Line)> {
    let r = fx.store.read().unwrap();
    let mut reports = crmkit_core::report::Reports::new();
    reports.add(std::sync::Arc::new(crmkit_core::analytics::Analytics));
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let t = reports.run("claims", &params, &r).unwrap();
    let names: Vec<&str> = t.columns().iter().map(|c| c.name.as_str()).collect();
    let at = |row: &[Value], name: &str| row[names.iter().position(|n| *n == name).unwrap()].clone();
    let n = |row: &[Value], name: &str| at(row, name).as_u64().unwrap();
    let s = |row: &[Value], name: &str| at(row, name).as_str().unwrap().to_string();
    t.rows()
        .iter()
        .map(|row| {
            (
                s(row, "by"),
                s(row, "key"),
                (
                    n(row, "registered"),
                    n(row, "open"),
                    n(row, "overdue"),
                    n(row, "decided"),
                    n(row, "satisfied"),
                    n(row, "partly_satisfied"),
                    n(row, "rejected"),
                    s(row, "claimed"),
                    s(row, "settled"),
                    at(row, "avg_days_to_decide"),
                    at(row, "median_days_to_decide"),
                ),
            )
        })
        .collect()
}

#[test]
fn the_claims_report_counts_by_type_cause_partner_and_person_as_the_claims_stood_at_the_periods_end() {
    let fx = Fixture::new();
    let engine = native_engine(Hooks::new());
    let (p, manager) = fx.client("Альфа");
    let new = |kind: &str, cause: &str, registered: &str, claimed: Option<&str>| {
        let mut c = Claim::new(p.id, kind, cause, "Претензия", manager, Some(day(registered)), None);
        c.claimed = claimed.map(rub);
        c
    };
    // T0 is 2026-03-02. A: decided satisfied the day after it was registered, then closed.
    // B: taken up, still open (due 03-12). C: rejected on 03-05, reopened on 03-06.
    let (a, c) = fx
        .store
        .transact(Some(manager), |tx| {
            let a = engine.create(tx, new("quality", "defect", "2026-03-01", Some("1000.00")))?;
            let a = engine.review_claim(tx, a.id, a.version, "")?;
            let a = engine.decide_claim(tx, a.id, a.version, Decision::Satisfied, Some(rub("1000.00")), "Возместим")?;
            engine.close_claim(tx, a.id, a.version, "")?;
            let b = engine.create(tx, new("quality", "damaged", "2026-03-02", Some("500.00")))?;
            engine.review_claim(tx, b.id, b.version, "")?;
            let c = engine.create(tx, new("delivery", "late", "2026-03-02", None))?;
            Ok((a, c))
        })
        .unwrap();
    fx.clock.advance(3 * 86_400_000);
    let c = fx
        .store
        .transact(Some(manager), |tx| {
            engine.decide_claim(tx, c.id, c.version, Decision::Rejected, None, "Срок соблюдён")
        })
        .unwrap();
    fx.clock.advance(86_400_000);
    fx.store.transact(Some(manager), |tx| engine.reopen_claim(tx, c.id, c.version, "клиент прислал акт")).unwrap();
    assert_eq!(a.due, Some(day("2026-03-11")));

    let rows = report(&fx, &[("to", "2026-03-20")]);
    let total = |rows: &[(String, String, Line)]| rows.iter().find(|(by, ..)| by == "total").unwrap().2.clone();
    let one = Value::from("1");
    assert_eq!(
        total(&rows),
        (3, 2, 2, 1, 1, 0, 0, "1500".into(), "1000".into(), one.clone(), one.clone()),
        "B and C open and past their due days (03-12, 03-07); A decided in a day"
    );
    let quality = rows.iter().find(|(by, key, _)| by == "type" && key == "quality").unwrap().2.clone();
    assert_eq!(quality, (2, 1, 1, 1, 1, 0, 0, "1500".into(), "1000".into(), one.clone(), one.clone()));
    let late = rows.iter().find(|(by, key, _)| by == "cause" && key == "delivery/late").unwrap().2.clone();
    assert_eq!(late.0, 1);
    let by: Vec<&str> = rows.iter().map(|(by, ..)| by.as_str()).collect();
    assert_eq!(by.first(), Some(&"total"));
    assert!(rows.iter().any(|(by, key, _)| by == "partner" && *key == p.id.to_string()));
    assert!(rows.iter().any(|(by, key, _)| by == "responsible" && key.starts_with("manager")));

    // As of 03-05, C stood rejected: two decisions, three days and one.
    let rows = report(&fx, &[("as_of", "2026-03-05")]);
    assert_eq!(total(&rows), (3, 1, 0, 2, 1, 0, 1, "1500".into(), "1000".into(), Value::from("2"), Value::from("2")));
    // A period without registrations still shows the backlog at its end.
    let rows = report(&fx, &[("from", "2026-03-15"), ("to", "2026-03-20")]);
    assert_eq!(total(&rows), (0, 2, 2, 0, 0, 0, 0, "0".into(), "0".into(), Value::Null, Value::Null));
    // Another manager's claims are not theirs.
    let other = fx.user("other");
    let login = fx.store.read().unwrap().load::<crmkit_core::model::User>(other).unwrap().login;
    assert!(report(&fx, &[("manager", login.as_str())]).is_empty());
}

#[test]
fn the_command_line_registers_and_works_a_claim_lists_and_shows_it_and_refuses_what_the_api_refuses() {
    use crate::cli::{fails, ok, Site};
    let site = Site::new(|c| c);
    site.manager();
    site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let p =
                    tx.create(crmkit_core::model::Partner::new("Альфа", crmkit_core::model::PartnerRole::Client))?;
                let doc = crmkit_core::model::Document::new(
                    crmkit_core::model::DocumentKind::Shipment,
                    "РН-17",
                    day("2026-11-20"),
                    p.id,
                    rub("12000.00"),
                );
                tx.create(doc)
            })
            .unwrap()
    });
    let dir = site.dir();
    let out = ok(&[
        "claims",
        "register",
        dir,
        "--partner",
        "Альфа",
        "--type",
        "delivery",
        "--cause",
        "short",
        "--subject",
        "Недовложение",
        "--claimed",
        "3000",
        "--document",
        "РН-17",
        "--as",
        "petrov",
    ]);
    assert!(out.starts_with("registered claim "), "{out}");
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    // Bad input: named, and nothing written.
    let before = site.dump();
    let refused = [
        (vec!["claims", "close", dir, &id, "--as", "petrov"], "only a decided claim is closed"),
        (
            vec!["claims", "decide", dir, &id, "--decision", "satisfied", "--reply", "Довезём", "--as", "petrov"],
            "needs the settled amount",
        ),
        (
            vec!["claims", "decide", dir, &id, "--decision", "partly_satisfied", "--settled", "3000", "--reply", "x"],
            "settles less than",
        ),
        (vec!["claims", "reopen", dir, &id, "--reason", "ещё"], "only a decided or closed claim is reopened"),
        (
            vec![
                "claims",
                "register",
                dir,
                "--partner",
                "Альфа",
                "--type",
                "warranty",
                "--cause",
                "x",
                "--subject",
                "x",
                "--as",
                "petrov",
            ],
            "not a configured claim type",
        ),
        (
            vec![
                "claims",
                "register",
                dir,
                "--partner",
                "Альфа",
                "--type",
                "delivery",
                "--cause",
                "late",
                "--subject",
                "x",
            ],
            "--responsible",
        ),
    ];
    for (args, says) in refused {
        let err = fails(&args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(site.dump() == before, "a refused command wrote something");
    ok(&["claims", "review", dir, &id, "--comment", "проверяем", "--as", "petrov"]);
    ok(&["claims", "postpone", dir, &id, "--until", "2099-01-01", "--reason", "ждём склад", "--as", "petrov"]);
    let out = ok(&[
        "claims",
        "decide",
        dir,
        &id,
        "--decision",
        "partly_satisfied",
        "--settled",
        "1500",
        "--reply",
        "Довезём половину",
    ]);
    assert!(out.contains("settling 1500 RUB"), "{out}");
    ok(&["claims", "close", dir, &id]);
    let out = ok(&["claims", "show", dir, &id]);
    for step in ["register", "review", "postpone", "decide", "close"] {
        assert!(out.contains(step), "{step}: {out}");
    }
    assert!(out.contains("decision: partly_satisfied settling 1500 RUB: Довезём половину"), "{out}");
    let out = ok(&["claims", "list", dir, "--status", "closed"]);
    assert!(out.contains("1 claim(s)") && out.contains("delivery/short"), "{out}");
    assert!(ok(&["claims", "list", dir, "--overdue"]).contains("0 claim(s)"));
    // A claim takes files like any record.
    let photo = site.file("photo.jpg", b"\xff\xd8 a photo");
    ok(&["attach", dir, &format!("claim:{id}"), &photo]);
    assert!(ok(&["attachments", dir, &format!("claim:{id}")]).contains("photo.jpg"));
    let out = ok(&["analytics", "claims", dir]);
    assert!(out.contains("total"), "{out}");
    // The dossier lists the partner's claims, and its JSON form has them whole.
    let out = ok(&["dossier", dir, "Альфа"]);
    assert!(out.contains("claims (1): 0 open, 0 overdue; claimed 3000 RUB, settled 1500 RUB"), "{out}");
    let d = crate::cli::json(&["dossier", dir, "Альфа"]);
    assert_eq!(d["claims"]["latest"][0]["settled"], json!({"amount": "1500", "currency": "RUB"}));
}

#[test]
fn claims_go_through_import_and_export_with_the_rules_of_the_api() {
    use crate::cli::{fails, ok, Site};
    let site = Site::new(|c| c);
    site.manager();
    site.partner("Альфа", crmkit_core::model::PartnerRole::Client);
    let dir = site.dir();
    let partners = site.file("partners.csv", "key,name,roles\nP1,Бета,client\n".as_bytes());
    ok(&["import", dir, "--entity", "partners", partners.as_str()]);
    let good = "key,partner,kind,cause,subject,claimed,currency,responsible,registered\n\
                C1,P1,quality,defect,Брак партии,2500.00,,petrov,2026-11-10\n\
                C2,P1,service,staff,Грубость,,,petrov,2026-11-12\n";
    let file = site.file("claims.csv", good.as_bytes());
    let out = ok(&["import", dir, "--entity", "claims", file.as_str()]);
    assert!(out.contains("2 created"), "{out}");
    let exported = ok(&["export", dir, "--entity", "claims"]);
    assert!(exported.contains("C1,") && exported.contains("2500.00,RUB,petrov,2026-11-10,2026-11-20"), "{exported}");
    assert!(exported.contains("C2,") && exported.contains(",,,petrov,2026-11-12,2026-11-27"), "{exported}");
    // What the API refuses, an import refuses: a cause of another type, a type config does
    // not have, no responsible person — each row named, and (atomic) nothing written.
    let before = site.dump();
    let bad = "key,partner,kind,cause,subject,responsible\n\
               C3,P1,delivery,defect,x,petrov\n\
               C4,P1,warranty,defect,x,petrov\n\
               C5,P1,quality,defect,x,\n";
    let file = site.file("bad.csv", bad.as_bytes());
    let err = fails(&["import", dir, "--entity", "claims", file.as_str(), "--atomic"]);
    for says in ["not a cause of claim type delivery", "not a configured claim type", "responsible"] {
        assert!(err.contains(says), "{says}: {err}");
    }
    assert!(site.dump() == before, "a refused import wrote something");
}

#[test]
fn a_partners_claims_reach_the_strategy_rule_and_move_with_a_merge() {
    let fx = Fixture::new();
    let engine = native_engine(Hooks::new());
    let (c, manager) = registered(&fx, &engine, "quality", "defect");
    let duplicate = c.partner;
    fx.store
        .transact(Some(manager), |tx| {
            let old = Claim::new(duplicate, "service", "staff", "Грубость", manager, Some(day("2025-01-10")), None);
            let old = engine.create(tx, old)?;
            engine.decide_claim(tx, old.id, old.version, Decision::Satisfied, None, "Извинились")
        })
        .unwrap();
    // The rule sees one open claim and the one registered in the year to the day.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut hooks = Hooks::new();
    let log = seen.clone();
    hooks.register("rule", move |i: &HookInput<'_>| -> Result<Answer, Fault> {
        let s = i.strategy.expect("the figures");
        log.lock().unwrap().push((s.open_claims, s.recent_claims));
        Ok(Answer::Segment(None))
    });
    hooks.bind(HookPoint::PartnerStrategy, "rule", &[]).unwrap();
    let day_of_run = day("2026-03-02");
    let classes = crmkit_core::analytics::client_classes(&fx.store.read().unwrap(), day_of_run).unwrap();
    crmkit_core::strategy::evaluate(&fx.store.read().unwrap(), &hooks, &classes, day_of_run).unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, 1)]);
    // Merged into another partner, the duplicate's claims go with it, their steps as taken.
    let (keep, _) = fx.client("Альфа-2");
    let report = fx.store.transact(None, |tx| crmkit_core::merge::merge_partners(tx, keep.id, duplicate)).unwrap();
    assert_eq!(report.claims, 2);
    let moved: Claim = fx.store.read().unwrap().load(c.id).unwrap();
    assert_eq!((moved.partner, moved.steps.len()), (keep.id, 1));
}
