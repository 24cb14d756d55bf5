//! `deal.score`: a bound scoring model's answer kept on the deal after each operation that
//! changes it, a probability set by hand kept and flagged, wrong answers refused with nothing
//! written, and rescoring after the model changed.

use std::sync::{Arc, Mutex};

use crmkit_core::hooks::{HookInput, HookPoint, Hooks, Reply, Subject};
use crmkit_core::model::{Deal, DealStatus};
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::store::Reader;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Value};

use crate::common::{native_engine, new_deal, Fixture};

/// A model scoring `amount / divisor` percent (at most 100), with the amount as its factor.
fn model(divisor: Arc<Mutex<f64>>) -> Engine {
    let mut hooks = Hooks::new();
    hooks.register("amount_model", move |input: &HookInput<'_>| -> Result<Reply, _> {
        let Some(Subject::Deal(d)) = &input.after else { panic!("deal.score is about a deal") };
        let amount = d.amount.amount.to_f64().unwrap();
        let p = (amount / *divisor.lock().unwrap()).min(100.0);
        Ok(Reply::Json(json!({
            "probability": p,
            "factors": [{"name": "amount", "value": d.amount.amount.to_string(), "contribution": p}],
            "model": "amount-v1"
        })))
    });
    hooks.bind(HookPoint::DealScore, "amount_model", &[]).unwrap();
    native_engine(hooks)
}

/// A deal that may leave its first stage.
fn sourced(mut d: Deal) -> Deal {
    d.source = Some("website".into());
    d
}

fn score_of(d: &Deal) -> f64 {
    d.score.as_ref().expect("a score").probability
}

#[test]
fn a_bound_model_scores_a_deal_on_create_update_transition_and_close() {
    let fx = Fixture::new();
    let (partner, manager) = fx.client("Альфа");
    let engine = model(Arc::new(Mutex::new(100.0)));
    let deal = fx
        .store
        .transact(Some(manager), |tx| engine.create_deal(tx, sourced(new_deal(partner.id, manager, 1234))))
        .unwrap();
    let s = deal.score.clone().unwrap();
    assert_eq!((s.probability, s.handler.as_str(), s.model.as_deref()), (12.34, "amount_model", Some("amount-v1")));
    assert_eq!(s.factors[0].name, "amount");
    assert_eq!(s.factors[0].value, json!("1234"));
    assert_eq!((deal.probability, deal.probability_manual), (Some(12), false), "the probability follows the score");
    assert_eq!(fx.store.read().unwrap().load::<Deal>(deal.id).unwrap(), deal, "stored as returned");

    let mut d = deal.clone();
    d.amount.amount = 5000.into();
    let d = fx.store.transact(Some(manager), |tx| engine.update(tx, d)).unwrap();
    assert_eq!((score_of(&d), d.probability), (50.0, Some(50)));

    // Entering a stage with a default probability: the model's probability still rules.
    let d =
        fx.store.transact(Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None)).unwrap();
    assert_eq!((score_of(&d), d.probability, d.stage.as_deref()), (50.0, Some(50), Some("needs_analysis")));

    // Closed: the outcome is the probability; the score is kept beside it.
    let d = fx
        .store
        .transact(Some(manager), |tx| engine.close(tx, d.id, d.version, Outcome::Won { comment: String::new() }))
        .unwrap();
    assert_eq!((d.status, d.probability, score_of(&d)), (DealStatus::Won, Some(100), 50.0));
}

#[test]
fn a_probability_set_by_hand_is_kept_and_flagged_beside_the_score() {
    let fx = Fixture::new();
    let (partner, manager) = fx.client("Бета");
    let engine = model(Arc::new(Mutex::new(100.0)));
    let deal = fx
        .store
        .transact(Some(manager), |tx| engine.create_deal(tx, sourced(new_deal(partner.id, manager, 2000))))
        .unwrap();
    let mut d = deal.clone();
    d.probability = Some(70);
    let d = fx.store.transact(Some(manager), |tx| engine.update(tx, d)).unwrap();
    assert_eq!((d.probability, d.probability_manual, score_of(&d)), (Some(70), true, 20.0));

    // The model and the stage's default leave it alone; the score moves on beside it.
    let mut d2 = d.clone();
    d2.amount.amount = 3000.into();
    let d = fx.store.transact(Some(manager), |tx| engine.update(tx, d2)).unwrap();
    let d =
        fx.store.transact(Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None)).unwrap();
    assert_eq!((d.probability, d.probability_manual, score_of(&d)), (Some(70), true, 30.0));

    // Cleared, it is the model's again.
    let mut d2 = d.clone();
    d2.probability = None;
    let d = fx.store.transact(Some(manager), |tx| engine.update(tx, d2)).unwrap();
    assert_eq!((d.probability, d.probability_manual), (Some(30), false));

    // Given with a new deal, it is manual from the start.
    let mut given = new_deal(partner.id, manager, 9000);
    given.probability = Some(5);
    let g = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, given)).unwrap();
    assert_eq!((g.probability, g.probability_manual, score_of(&g)), (Some(5), true, 90.0));

    // Outside the engine the score is not written.
    let mut forged = g.clone();
    forged.score.as_mut().unwrap().probability = 99.0;
    let err = fx.refused(Some(manager), |tx| tx.update(forged));
    assert!(err.to_string().contains("score"), "{err}");
}

#[test]
fn wrong_answers_are_faults_naming_the_handler_and_nothing_is_written() {
    let fx = Fixture::new();
    let (partner, manager) = fx.client("Гамма");
    let answer: Arc<Mutex<Value>> = Arc::new(Mutex::new(json!({"probability": 40, "factors": []})));
    let mut hooks = Hooks::new();
    let a = answer.clone();
    hooks.register("bad_model", move |_: &HookInput<'_>| -> Result<Reply, _> {
        Ok(Reply::Json(a.lock().unwrap().clone()))
    });
    hooks.bind(HookPoint::DealScore, "bad_model", &[]).unwrap();
    let engine = native_engine(hooks);
    let deal =
        fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, 100))).unwrap();
    assert_eq!(score_of(&deal), 40.0);
    let cases = [
        (json!({"probability": 101, "factors": []}), "probability is a percentage from 0 to 100, got 101"),
        (json!({"probability": -1, "factors": []}), "got -1"),
        (json!({"probability": "high", "factors": []}), "probability is text (\"high\"), not a number"),
        (json!({"probability": 5, "factors": "amount"}), "factors are text (\"amount\"), not a list"),
        (json!({"probability": 5, "factors": [{"value": 1, "contribution": 0.5}]}), "factors[0].name is missing"),
        (json!("likely"), "answered text (\"likely\"); deal.score expects a score"),
    ];
    for (reply, part) in cases {
        *answer.lock().unwrap() = reply.clone();
        let err = fx.refused(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, 100)));
        let text = err.to_string();
        assert!(text.starts_with("deal.score: handler bad_model failed: "), "{reply}: {text}");
        assert!(text.contains(part), "{reply}: {text:?} does not contain {part:?}");
        let mut d = deal.clone();
        d.comment = "changed".into();
        let err = fx.refused(Some(manager), |tx| engine.update(tx, d));
        assert!(err.to_string().contains(part), "update, {reply}: {err}");
    }
}

#[test]
fn without_a_binding_nothing_is_scored_and_rescoring_writes_nothing() {
    let fx = Fixture::new();
    let (partner, manager) = fx.client("Дельта");
    let engine = native_engine(Hooks::new());
    let d = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, 100))).unwrap();
    assert_eq!((d.score.clone(), d.probability, d.probability_manual), (None, Some(10), false), "the stage's default");
    let before = fx.dump();
    let done = engine.rescore(&fx.store, None, true, &mut |_| {}).unwrap();
    assert_eq!((engine.scores(), done.deals), (false, 0));
    assert!(fx.dump() == before, "nothing written");
}

#[test]
fn rescoring_after_the_model_changed_updates_open_deals_or_all() {
    let fx = Fixture::new();
    let (partner, manager) = fx.client("Эпсилон");
    let divisor = Arc::new(Mutex::new(100.0));
    let engine = model(divisor.clone());
    let mk = |amount| {
        fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, amount))).unwrap()
    };
    let open = mk(1000);
    let won = mk(2000);
    let won = fx
        .store
        .transact(Some(manager), |tx| engine.close(tx, won.id, won.version, Outcome::Won { comment: String::new() }))
        .unwrap();
    // Unchanged model: nothing changes, no version moves.
    let done = engine.rescore(&fx.store, None, false, &mut |_| {}).unwrap();
    assert_eq!((done.deals, done.changed), (1, 0));
    *divisor.lock().unwrap() = 50.0;
    let mut seen = Vec::new();
    let done = engine.rescore(&fx.store, None, false, &mut |p| seen.push(p)).unwrap();
    assert_eq!((done.deals, done.changed, done.unscored, done.manual), (1, 1, 0, 0));
    assert_eq!(seen.last().map(|p| (p.stage, p.done, p.total)), Some(("score", 1, 1)));
    let r = fx.store.read().unwrap();
    let o: Deal = r.load(open.id).unwrap();
    assert_eq!((score_of(&o), o.probability, o.version), (20.0, Some(20), open.version + 1));
    assert_eq!(score_of(&r.load::<Deal>(won.id).unwrap()), 20.0, "a closed deal is left without --all");
    drop(r);
    let done = engine.rescore(&fx.store, None, true, &mut |_| {}).unwrap();
    assert_eq!((done.deals, done.changed), (2, 1));
    let w: Deal = fx.store.read().unwrap().load(won.id).unwrap();
    assert_eq!((score_of(&w), w.probability), (40.0, Some(100)));
}

/// The shipped scoring model bound in an installation's config.
const SHIPPED_MODEL: &str =
    "\n[[hooks]]\npoint = \"deal.score\"\nhandler = \"scoring/logistic.rhai::win_probability\"\n";

#[test]
fn through_the_api_a_probability_set_by_hand_is_flagged_beside_the_score_and_cleared_is_the_models() {
    use crate::api::{Office, Served};
    use crmkit_core::model::PartnerRole;
    let office = Office::with_config(|c| format!("{c}{SHIPPED_MODEL}"));
    let partner = office.site.partner("Клиент", PartnerRole::Client);
    let server = Served::start(&office.site);
    let north = office.token("north");
    let body = format!(
        r#"{{"title":"Поставка насосов","partner":"{partner}","kind":"b2b_sale","source":"referral","amount":{{"amount":"750000","currency":"RUB"}}}}"#
    );
    let (status, d) = server.send("POST", "/api/v1/deals", north, body.as_bytes());
    assert_eq!(status, 201, "{d}");
    let model = d["score"]["probability"].as_f64().expect("scored on creation");
    assert_eq!(d["score"]["handler"], "scoring/logistic.rhai::win_probability");
    assert_eq!((d["probability"].as_f64(), &d["probability_manual"]), (Some(model.round()), &json!(false)), "{d}");
    let url = format!("/api/v1/deals/{}", d["id"].as_str().unwrap());

    // Set by hand: kept and flagged, the model's score beside it.
    let patch = json!({"version": d["version"], "probability": 80});
    let (status, d) = server.send("PATCH", &url, north, patch.to_string().as_bytes());
    assert_eq!(status, 200, "{d}");
    assert_eq!((&d["probability"], &d["probability_manual"]), (&json!(80), &json!(true)), "{d}");
    assert_eq!(d["score"]["probability"].as_f64(), Some(model), "{d}");
    let (_, read) = server.request("GET", &url, Some(north));
    assert_eq!(read, d, "read back as answered");

    // Cleared with null: the model's again.
    let patch = json!({"version": d["version"], "probability": null});
    let (status, d) = server.send("PATCH", &url, north, patch.to_string().as_bytes());
    assert_eq!(status, 200, "{d}");
    assert_eq!((d["probability"].as_f64(), &d["probability_manual"]), (Some(model.round()), &json!(false)), "{d}");
    server.stop();

    // What the engine keeps is refused on input, on a change as on a creation, naming the
    // field; nothing is written.
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let version = &d["version"];
    let forged_score =
        json!({"probability": 99, "factors": [], "model": null, "handler": "me", "at": "2026-03-02T09:00:00Z"});
    for (field, value) in [("score", forged_score.clone()), ("score", json!(null)), ("probability_manual", json!(true))]
    {
        let patch = json!({"version": version, field: value});
        let (status, e) = server.send("PATCH", &url, north, patch.to_string().as_bytes());
        assert_eq!((status, e["field"].as_str()), (422, Some(field)), "PATCH {patch}: {e}");
        let mut new: Value = serde_json::from_str(&body).unwrap();
        new[field] = value;
        let (status, e) = server.send("POST", "/api/v1/deals", north, new.to_string().as_bytes());
        assert_eq!((status, e["field"].as_str()), (422, Some(field)), "POST {new}: {e}");
    }
    server.stop();
    let after = office.site.dump();
    assert!(after == before, "a refused request wrote: {}", crate::common::dump_diff(&before, &after));
}
