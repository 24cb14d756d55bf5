//! The hook contract as written: every point of docs/hooks.md exists and every existing
//! point is there, every input example reads into the contract's types, every answer example
//! passes core's check of answers, and what a real call serializes is that contract.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crmkit_core::hooks::wire::{InputV1, SubjectV1};
use crmkit_core::hooks::{accept, Answer, HookInput, HookPoint, Hooks, Reply};
use crmkit_core::model::PartnerRole;
use serde_json::Value;

use crate::common::{native_engine, new_deal, Fixture};

/// One point's section of docs/hooks.md: its name, input example and answer examples.
struct Section {
    point: String,
    inputs: Vec<String>,
    answers: Vec<String>,
}

fn sections() -> Vec<Section> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/hooks.md")).unwrap();
    let mut out: Vec<Section> = Vec::new();
    let mut block: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some((tag, body)) = &mut block {
            if line == "```" {
                let s = out.last_mut().expect("a code block before the first point");
                match tag.as_str() {
                    "json input" => s.inputs.push(std::mem::take(body)),
                    _ => s.answers.push(std::mem::take(body)),
                }
                block = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(name) = line.strip_prefix("### `").and_then(|l| l.strip_suffix('`')) {
            out.push(Section { point: name.to_string(), inputs: Vec::new(), answers: Vec::new() });
        } else if let Some(tag) =
            line.strip_prefix("```").filter(|t| t.starts_with("json input") || t.starts_with("json answer"))
        {
            block = Some((tag.to_string(), String::new()));
        }
    }
    out
}

#[test]
fn docs_describe_every_point_and_only_those() {
    let documented: BTreeSet<String> = sections().into_iter().map(|s| s.point).collect();
    let existing: BTreeSet<String> = HookPoint::ALL.iter().map(|p| p.name().to_string()).collect();
    assert_eq!(documented, existing, "docs/hooks.md and HookPoint::ALL differ");
}

#[test]
fn docs_examples_are_the_contract() {
    for s in sections() {
        let point = HookPoint::from_name(&s.point).unwrap();
        assert_eq!(s.inputs.len(), 1, "{}: one input example", s.point);
        assert!(!s.answers.is_empty(), "{}: at least one answer example", s.point);
        let json: Value = serde_json::from_str(&s.inputs[0]).unwrap_or_else(|e| panic!("{}: {e}", s.point));
        let input: InputV1 =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{}: the input example: {e}", s.point));
        assert_eq!(input.hook, point, "{}: the example is of another point", s.point);
        assert_eq!(input.v, 1);
        // Nothing in the example is lost or added on the way through the types.
        assert_eq!(serde_json::to_value(&input).unwrap(), json, "{}: the example does not round-trip", s.point);
        // The subject is the entity the input says.
        for subject in [&input.before, &input.after].into_iter().flatten() {
            let kind = match subject {
                SubjectV1::Deal(_) => "deal",
                SubjectV1::Task(_) => "task",
                SubjectV1::Interaction(_) => "interaction",
                SubjectV1::Partner(_) => "partner",
                SubjectV1::Counterparty(_) => "counterparty",
                SubjectV1::Contact(_) => "contact",
                SubjectV1::Document(_) => "document",
                SubjectV1::Claim(_) => "claim",
                SubjectV1::Record(_) => "record",
            };
            let expected = if point == HookPoint::TaskAssignee { "deal" } else { input.entity.name() };
            assert_eq!(kind, expected, "{}: the subject is not a {expected}", s.point);
        }
        for a in &s.answers {
            let v: Value = serde_json::from_str(a).unwrap_or_else(|e| panic!("{}: {e}", s.point));
            let answer = accept(point, "docs", Reply::Json(v.clone()))
                .unwrap_or_else(|e| panic!("{}: the answer example {v} is refused: {e}", s.point));
            assert_eq!(answer.answer_type(), point.answer_type());
        }
    }
}

#[test]
fn a_real_call_serializes_to_the_contract() {
    let fx = Fixture::new();
    let manager = fx.user("a.ivanova");
    let partner = fx.partner("Альфа", PartnerRole::Client);
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut hooks = Hooks::new();
    let record = seen.clone();
    hooks.register("record", move |input: &HookInput<'_>| -> Result<Answer, _> {
        record.lock().unwrap().push(serde_json::to_value(input).unwrap());
        Ok(Answer::Allow)
    });
    hooks.bind(HookPoint::DealBeforeTransition, "record", &[]).unwrap();
    hooks.bind(HookPoint::EntityBeforeSave, "record", &[]).unwrap();
    let engine = native_engine(hooks);
    let mut deal = new_deal(partner.id, manager, 1000);
    deal.source = Some("website".into());
    let deal = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, deal)).unwrap();
    fx.store.transact(Some(manager), |tx| engine.move_deal(tx, deal.id, deal.version, "needs_analysis", None)).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "entity.before_save on create, then before_transition and entity.before_save");
    for json in seen.iter() {
        let input: InputV1 = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(serde_json::to_value(&input).unwrap(), *json);
        assert_eq!(input.actor.as_ref().map(|a| a.login.as_str()), Some("a.ivanova"));
        let Some(SubjectV1::Deal(after)) = &input.after else { panic!("not a deal: {json}") };
        assert_eq!(after.amount.to_string(), "1000");
        assert_eq!(json["after"]["amount"], Value::String("1000".into()), "amounts are decimal text");
    }
    let moved: InputV1 = serde_json::from_value(seen[1].clone()).unwrap();
    assert_eq!(moved.hook, HookPoint::DealBeforeTransition);
    let t = moved.transition.unwrap();
    assert_eq!((t.from_stage.as_deref(), t.to_stage.as_deref()), (Some("qualification"), Some("needs_analysis")));
}

/// The example of a block of docs/hooks.md tagged `tag` (```json TAG).
fn doc_block(tag: &str) -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/hooks.md")).unwrap();
    let start = text.find(&format!("```json {tag}\n")).unwrap_or_else(|| panic!("no ```json {tag} block"));
    let body = &text[start..].split_once('\n').unwrap().1;
    let body = &body[..body.find("\n```").unwrap()];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("```json {tag}: {e}"))
}

/// The names of an object's members, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

/// What a real operation hands a handler carries the engine's clock as `now`, and the deal's
/// stored score and manual flag; what the reads answer is the contract's step and user, key
/// for key with the examples of docs/hooks.md.
#[test]
fn the_input_has_the_time_and_the_deal_its_score_and_reads_answer_the_contract() {
    use crmkit_core::hooks::wire::{self, StageChangeV1, UserV1};
    use crmkit_core::model::{StageChange, User};
    use crmkit_core::store::Reader;

    let fx = Fixture::new();
    let manager = fx.user("a.ivanova");
    let partner = fx.partner("Альфа", PartnerRole::Client);
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut hooks = Hooks::new();
    hooks.register("model", |_: &HookInput<'_>| -> Result<Reply, _> {
        Ok(Reply::Json(serde_json::json!({
            "probability": 27.5,
            "factors": [{"name": "amount", "value": "1000", "contribution": -1.5}],
            "model": "m-1"
        })))
    });
    let record = seen.clone();
    hooks.register("record", move |input: &HookInput<'_>| -> Result<Answer, _> {
        record.lock().unwrap().push(serde_json::to_value(input).unwrap());
        Ok(Answer::Allow)
    });
    hooks.bind(HookPoint::DealScore, "model", &[]).unwrap();
    hooks.bind(HookPoint::DealBeforeTransition, "record", &[]).unwrap();
    let engine = native_engine(hooks);
    let mut deal = new_deal(partner.id, manager, 1000);
    deal.source = Some("website".into());
    let deal = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, deal)).unwrap();
    fx.clock.advance(90_000);
    let now = fx.store.clock().now();
    fx.store.transact(Some(manager), |tx| engine.move_deal(tx, deal.id, deal.version, "needs_analysis", None)).unwrap();

    let seen = seen.lock().unwrap();
    let json = &seen[0];
    assert_eq!(json["now"], Value::String(now.to_string()), "the engine's clock, as RFC 3339 text");
    assert_eq!(json["now"], json["after"]["stage_entered_at"], "the instant the step stamps");
    let input: InputV1 = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(input.now, now);
    assert_eq!(json["before"]["probability_manual"], Value::Bool(false));
    assert_eq!(
        json["before"]["score"],
        serde_json::json!({
            "probability": 27.5,
            "factors": [{"name": "amount", "value": "1000", "contribution": -1.5}],
            "model": "m-1",
            "handler": "model",
            "at": deal.created_at.to_string()
        }),
        "the score as the deal stores it"
    );
    let Some(SubjectV1::Deal(after)) = &input.after else { panic!("not a deal") };
    assert_eq!(after.score.as_ref().map(|s| s.probability), Some(27.5));

    // The reads: a deal's history and a user, in their contract forms.
    let view = fx.store.read().unwrap();
    let history: Vec<StageChange> = view.stage_history(deal.id).unwrap();
    assert_eq!(history.len(), 2);
    let steps = serde_json::to_value(wire::history(&history)).unwrap();
    let example = doc_block("step");
    serde_json::from_value::<StageChangeV1>(example.clone()).expect("the example is a step");
    for step in steps.as_array().unwrap() {
        assert_eq!(keys(step), keys(&example), "a step has the documented members");
    }
    assert_eq!(steps[1]["how"], "manual");
    assert_eq!(steps[1]["at"], Value::String(now.to_string()));
    assert_eq!(steps[1]["dwell_ms"], 90_000);
    // Version 1's step is what `read_deal_history` has always answered: the stored step's
    // serde form, member for member.
    assert_eq!(steps, serde_json::to_value(&history).unwrap());
    let round: Vec<StageChangeV1> = serde_json::from_value(steps.clone()).unwrap();
    assert_eq!(serde_json::to_value(round).unwrap(), steps, "a step round-trips");

    let user: User = view.load(manager).unwrap();
    let wire_user = serde_json::to_value(UserV1::from(&user)).unwrap();
    let example = doc_block("user");
    serde_json::from_value::<UserV1>(example.clone()).expect("the example is a user");
    assert_eq!(keys(&wire_user), keys(&example), "a user has the documented members");
    assert_eq!(wire_user["login"], "a.ivanova");
}
