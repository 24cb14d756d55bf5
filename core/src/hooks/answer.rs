//! What handlers answer: the typed [`Answer`], the JSON forms scripts and plugins send, and
//! the one check that turns either into the answer a point accepts — or into the one
//! "wrong answer" fault naming the point, the handler and what was expected.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::point::{AnswerType, HookPoint};
use crate::model::score::{self, ScoreFactor};
use crate::Error;

/// What a handler answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// A guard lets the change happen.
    Allow,
    /// A guard refuses the change, with a message for the user and the field at fault.
    Reject {
        message: String,
        #[serde(default)]
        field: Option<String>,
    },
    /// A reaction's actions.
    Actions(Vec<Action>),
    /// `deal.route`: the next stage (`None`: the default route).
    Stage(Option<String>),
    /// `task.assignee`: the executor's login (`None`: the default rule).
    Assignee(Option<String>),
    /// `deal.score`: the deal's win probability and its factors (`None`: no score).
    Score(Option<Score>),
    /// `loyalty.accrue`: the points a sale earns (`None`: the program's own rate).
    Points(Option<Points>),
    /// `partner.strategy`: the partner's segment (`None`: it keeps the one it has).
    Segment(Option<String>),
}

/// A loyalty rule's answer: the points a sale earns, 0 or more, rounded to hundredths, and
/// why (kept on the ledger entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Points {
    pub points: rust_decimal::Decimal,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Points {
    /// Refuses what no rule may answer: below 0, beyond [`MAX_POINTS`], a reason that is no
    /// plain short text. Rounds the points to hundredths.
    ///
    /// [`MAX_POINTS`]: crate::model::MAX_POINTS
    fn checked(mut self) -> Result<Points, String> {
        if self.points.is_sign_negative() && !self.points.is_zero() {
            return Err(format!("points whose number is {}, below 0", self.points));
        }
        if self.points > crate::model::MAX_POINTS {
            return Err(format!("points whose number {} is beyond the most a card holds", self.points));
        }
        if let Some(r) = &self.reason {
            if r.chars().count() > 200 || r.chars().any(char::is_control) {
                return Err("points whose reason is not one line of at most 200 characters".into());
            }
        }
        self.points =
            self.points.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero).normalize();
        Ok(self)
    }
}

/// A scoring model's answer: the win probability in percent (0 to 100, a decimal number),
/// the factors that produced it and, if it says, the model's name and version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub probability: f64,
    pub factors: Vec<ScoreFactor>,
    #[serde(default)]
    pub model: Option<String>,
}

impl Answer {
    /// The type of answer this is.
    pub fn answer_type(&self) -> AnswerType {
        match self {
            Answer::Allow | Answer::Reject { .. } => AnswerType::Verdict,
            Answer::Actions(_) => AnswerType::Actions,
            Answer::Stage(_) => AnswerType::Stage,
            Answer::Assignee(_) => AnswerType::Assignee,
            Answer::Score(_) => AnswerType::Score,
            Answer::Points(_) => AnswerType::Points,
            Answer::Segment(_) => AnswerType::Segment,
        }
    }
}

/// A change a reaction asks for, applied in the same transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A task on the deal (or, for task hooks, on the task's deal).
    CreateTask {
        title: String,
        #[serde(default)]
        description: String,
        /// The executor's login; the deal's manager when absent.
        #[serde(default)]
        executor: Option<String>,
        /// Due this many minutes from now.
        #[serde(default)]
        due_in_minutes: Option<i64>,
        #[serde(default)]
        required: bool,
    },
    /// Sets a deal field (`probability`, `amount`, `expected_close`, `source`, `comment`,
    /// `custom.NAME`); `null` clears it.
    SetField { field: String, value: Value },
    /// A note (an interaction) on the deal's partner and the deal.
    AddNote {
        subject: String,
        #[serde(default)]
        body: String,
    },
    /// Puts the deal on hold.
    PutOnHold {
        #[serde(default)]
        comment: String,
    },
}

/// What a handler hands back: a typed answer (native handlers) or the JSON form of one
/// (scripts and plugins), which core reads against the point.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// An answer already typed.
    Answer(Answer),
    /// An answer in its JSON form (docs/hooks.md, "Answers").
    Json(Value),
}

impl From<Answer> for Reply {
    fn from(a: Answer) -> Reply {
        Reply::Answer(a)
    }
}

/// Reads `reply` as the answer `point` accepts; anything else is the "wrong answer" fault
/// of `handler`.
pub fn accept(point: HookPoint, handler: &str, reply: Reply) -> Result<Answer, Error> {
    let expected = point.answer_type();
    let wrong = |got: String| Error::HookFault {
        hook: point.name(),
        handler: handler.to_string(),
        message: format!("answered {got}; {point} expects {}", expected.expected()),
    };
    match reply {
        Reply::Answer(Answer::Score(Some(s))) if expected == AnswerType::Score => {
            match score::check(s.probability, &s.factors, s.model.as_deref()) {
                Ok(()) => Ok(Answer::Score(Some(s))),
                Err(m) => Err(wrong(format!("a score whose {m}"))),
            }
        }
        Reply::Answer(Answer::Points(Some(p))) if expected == AnswerType::Points => {
            p.checked().map(|p| Answer::Points(Some(p))).map_err(wrong)
        }
        Reply::Answer(a) if a.answer_type() == expected => Ok(a),
        Reply::Answer(a) => Err(wrong(format!("{a:?}"))),
        Reply::Json(v) => from_json(expected, v).map_err(wrong),
    }
}

/// The answer of type `t` that a JSON value stands for; what it was when it is none.
fn from_json(t: AnswerType, v: Value) -> Result<Answer, String> {
    let got = || describe(&v);
    match t {
        AnswerType::Verdict => match &v {
            Value::Null | Value::Bool(true) => Ok(Answer::Allow),
            Value::Bool(false) => Ok(Answer::Reject { message: "refused".into(), field: None }),
            Value::String(s) => Ok(Answer::Reject { message: s.clone(), field: None }),
            Value::Object(m) if m.get("allow") == Some(&Value::Bool(true)) && m.len() == 1 => Ok(Answer::Allow),
            Value::Object(m) if m.contains_key("reject") && m.keys().all(|k| k == "reject" || k == "field") => {
                let message = match &m["reject"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let field = match m.get("field") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => return Err(format!("a rejection whose field is {}", describe(other))),
                };
                Ok(Answer::Reject { message, field })
            }
            _ => Err(got()),
        },
        AnswerType::Actions => match v {
            Value::Null => Ok(Answer::Actions(Vec::new())),
            Value::Array(items) => {
                let mut actions = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let a = serde_json::from_value::<Action>(item).map_err(|e| {
                        format!("an action that is not understood (item {}: {e}; an action is like {{\"action\": \"create_task\", \"title\": \"…\"}})", i + 1)
                    })?;
                    actions.push(a);
                }
                Ok(Answer::Actions(actions))
            }
            _ => Err(got()),
        },
        AnswerType::Stage | AnswerType::Assignee | AnswerType::Segment => {
            let text = match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                _ => return Err(got()),
            };
            Ok(match t {
                AnswerType::Stage => Answer::Stage(text),
                AnswerType::Assignee => Answer::Assignee(text),
                _ => Answer::Segment(text),
            })
        }
        AnswerType::Points => match v {
            Value::Null => Ok(Answer::Points(None)),
            Value::Object(m) => points_from_json(m).map(|p| Answer::Points(Some(p))),
            _ => Err(got()),
        },
        AnswerType::Score => match v {
            Value::Null => Ok(Answer::Score(None)),
            Value::Object(m) => score_from_json(m).map(|s| Answer::Score(Some(s))),
            _ => Err(got()),
        },
    }
}

/// A score from its JSON form, strictly: `probability` and `factors` are required, `model`
/// may be left out, nothing else may be there; each factor has exactly `name`, `value` and
/// `contribution`.
fn score_from_json(m: serde_json::Map<String, Value>) -> Result<Score, String> {
    let bad = |what: String| format!("a score whose {what}");
    if let Some(k) = m.keys().find(|k| !["probability", "factors", "model"].contains(&k.as_str())) {
        return Err(bad(format!("member \"{k}\" is not one of probability, factors, model")));
    }
    let probability = match m.get("probability") {
        None => return Err(bad("probability is missing".into())),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => return Err(bad(format!("probability is {}, not a number", describe(other)))),
    };
    let items = match m.get("factors") {
        None => return Err(bad("factors are missing (an empty list when there are none)".into())),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(bad(format!("factors are {}, not a list", describe(other)))),
    };
    let mut factors = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(f) = item else {
            return Err(bad(format!(
                "factors[{i}] is {}, not a map with name, value and contribution",
                describe(item)
            )));
        };
        if let Some(k) = f.keys().find(|k| !["name", "value", "contribution"].contains(&k.as_str())) {
            return Err(bad(format!("factors[{i}] has member \"{k}\", not one of name, value, contribution")));
        }
        let name = match f.get("name") {
            Some(Value::String(s)) => s.clone(),
            None => return Err(bad(format!("factors[{i}].name is missing"))),
            Some(other) => return Err(bad(format!("factors[{i}].name is {}, not text", describe(other)))),
        };
        let Some(value) = f.get("value").cloned() else {
            return Err(bad(format!("factors[{i}].value is missing (null when the model saw none)")));
        };
        let contribution = match f.get("contribution") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            None => return Err(bad(format!("factors[{i}].contribution is missing"))),
            Some(other) => return Err(bad(format!("factors[{i}].contribution is {}, not a number", describe(other)))),
        };
        factors.push(ScoreFactor { name, value, contribution });
    }
    let model = match m.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(bad(format!("model is {}, not text", describe(other)))),
    };
    score::check(probability, &factors, model.as_deref()).map_err(bad)?;
    Ok(Score { probability, factors, model })
}

/// Points from their JSON form, strictly: `points` (a number or decimal text) is required,
/// `reason` (text) may be left out, nothing else may be there.
fn points_from_json(m: serde_json::Map<String, Value>) -> Result<Points, String> {
    use std::str::FromStr;
    if let Some(k) = m.keys().find(|k| !["points", "reason"].contains(&k.as_str())) {
        return Err(format!("points with member \"{k}\", not one of points, reason"));
    }
    let points = match m.get("points") {
        None => return Err("points without their number (\"points\")".into()),
        Some(Value::Number(n)) => rust_decimal::Decimal::from_str(&n.to_string())
            .or_else(|_| rust_decimal::Decimal::from_scientific(&n.to_string()))
            .map_err(|_| format!("points whose number {n} is not a decimal"))?,
        Some(Value::String(s)) => rust_decimal::Decimal::from_str(s.trim())
            .map_err(|_| format!("points whose number is text that is no decimal ({s:?})"))?,
        Some(other) => return Err(format!("points whose number is {}", describe(other))),
    };
    let reason = match m.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("points whose reason is {}, not text", describe(other))),
    };
    Points { points, reason }.checked()
}

/// A JSON value in a few words, for messages.
fn describe(v: &Value) -> String {
    let mut text = v.to_string();
    if text.len() > 80 {
        let mut cut = 77;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    let what = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    };
    format!("{what} ({text})")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(point: HookPoint, reply: Value, expected: Result<Answer, &str>) {
        let got = accept(point, "h", Reply::Json(reply)).map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(m), Err(part)) => assert!(m.contains(part), "{m:?} does not contain {part:?}"),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn json_answers_are_read_against_the_point() {
        let guard = HookPoint::DealBeforeTransition;
        check(guard, json!(null), Ok(Answer::Allow));
        check(guard, json!(true), Ok(Answer::Allow));
        check(guard, json!({"allow": true}), Ok(Answer::Allow));
        check(guard, json!(false), Ok(Answer::Reject { message: "refused".into(), field: None }));
        check(guard, json!("no quote"), Ok(Answer::Reject { message: "no quote".into(), field: None }));
        check(
            guard,
            json!({"reject": "no quote", "field": "documents"}),
            Ok(Answer::Reject { message: "no quote".into(), field: Some("documents".into()) }),
        );
        check(guard, json!(3), Err("answered a number (3); deal.before_transition expects a verdict"));
        check(guard, json!({"rejekt": "x"}), Err("answered a map"));
        check(guard, json!({"reject": "x", "field": 2}), Err("a rejection whose field is a number"));

        let reaction = HookPoint::DealAfterTransition;
        check(reaction, json!(null), Ok(Answer::Actions(vec![])));
        check(
            reaction,
            json!([{"action": "put_on_hold"}]),
            Ok(Answer::Actions(vec![Action::PutOnHold { comment: String::new() }])),
        );
        check(reaction, json!([{"action": "explode"}]), Err("item 1: unknown variant `explode`"));
        check(reaction, json!([{"action": "put_on_hold", "coment": "x"}]), Err("item 1: unknown field `coment`"));
        check(reaction, json!("x"), Err("deal.after_transition expects a list of actions"));

        check(HookPoint::DealRoute, json!("bid"), Ok(Answer::Stage(Some("bid".into()))));
        check(HookPoint::DealRoute, json!(null), Ok(Answer::Stage(None)));
        check(HookPoint::DealRoute, json!(1), Err("deal.route expects a stage id"));
        check(HookPoint::TaskAssignee, json!("anna"), Ok(Answer::Assignee(Some("anna".into()))));
        check(HookPoint::TaskAssignee, json!([]), Err("task.assignee expects a user's login"));

        let score = HookPoint::DealScore;
        let factor = ScoreFactor { name: "amount".into(), value: json!("1500.00"), contribution: -0.25 };
        check(score, json!(null), Ok(Answer::Score(None)));
        check(
            score,
            json!({"probability": 37.5, "factors": [{"name": "amount", "value": "1500.00", "contribution": -0.25}], "model": "m1"}),
            Ok(Answer::Score(Some(Score { probability: 37.5, factors: vec![factor], model: Some("m1".into()) }))),
        );
        check(
            score,
            json!({"probability": 0, "factors": []}),
            Ok(Answer::Score(Some(Score { probability: 0.0, factors: vec![], model: None }))),
        );
        check(
            score,
            json!({"probability": 101, "factors": []}),
            Err("a score whose probability is a percentage from 0 to 100, got 101"),
        );
        check(score, json!({"probability": -1, "factors": []}), Err("got -1"));
        check(score, json!({"probability": "50", "factors": []}), Err("probability is text (\"50\"), not a number"));
        check(score, json!({"factors": []}), Err("probability is missing"));
        check(score, json!({"probability": 5, "factors": {}}), Err("factors are a map ({}), not a list"));
        check(score, json!({"probability": 5}), Err("factors are missing"));
        check(
            score,
            json!({"probability": 5, "factors": [{"value": 1, "contribution": 1}]}),
            Err("factors[0].name is missing"),
        );
        check(
            score,
            json!({"probability": 5, "factors": [{"name": " ", "value": 1, "contribution": 1}]}),
            Err("factors[0].name is empty"),
        );
        check(
            score,
            json!({"probability": 5, "factors": [{"name": "a", "value": [1], "contribution": 1}]}),
            Err("factors[0].value is a list or a map"),
        );
        check(
            score,
            json!({"probability": 5, "factors": [{"name": "a", "value": 1}]}),
            Err("factors[0].contribution is missing"),
        );
        check(score, json!({"probability": 5, "factors": [], "why": 1}), Err("member \"why\" is not one of"));
        check(score, json!(50), Err("answered a number (50); deal.score expects a score"));

        let accrue = HookPoint::LoyaltyAccrue;
        let points = |p: &str, r: Option<&str>| {
            Ok(Answer::Points(Some(Points { points: p.parse().unwrap(), reason: r.map(str::to_string) })))
        };
        check(accrue, json!(null), Ok(Answer::Points(None)));
        check(accrue, json!({"points": 12.5}), points("12.5", None));
        check(accrue, json!({"points": "12.345", "reason": "gold"}), points("12.35", Some("gold")));
        check(accrue, json!({"points": 0}), points("0", None));
        check(accrue, json!({"points": -1}), Err("points whose number is -1, below 0"));
        check(accrue, json!({"points": "-0.5"}), Err("below 0"));
        check(accrue, json!({"points": 1e12}), Err("is beyond the most a card holds"));
        check(accrue, json!({"points": "lots"}), Err("text that is no decimal"));
        check(accrue, json!({"points": [1]}), Err("points whose number is a list"));
        check(accrue, json!({"reason": "x"}), Err("points without their number"));
        check(accrue, json!({"points": 1, "tier": "gold"}), Err("member \"tier\""));
        check(accrue, json!(5), Err("answered a number (5); loyalty.accrue expects points"));

        let strategy = HookPoint::PartnerStrategy;
        check(strategy, json!("key"), Ok(Answer::Segment(Some("key".into()))));
        check(strategy, json!(null), Ok(Answer::Segment(None)));
        check(strategy, json!(3), Err("partner.strategy expects a segment id of [[strategies]]"));
    }

    #[test]
    fn typed_answers_must_fit_the_point() {
        let err = accept(HookPoint::DealRoute, "native_route", Reply::Answer(Answer::Allow)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deal.route: handler native_route failed: answered Allow; deal.route expects a stage id (text) or null for the default route"
        );
        assert_eq!(accept(HookPoint::DealRoute, "h", Answer::Stage(None).into()).unwrap(), Answer::Stage(None));
    }
}
