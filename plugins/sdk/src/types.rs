//! The hook contract's input and answers (docs/hooks.md) as Rust types. Reading is lenient
//! (unknown fields are ignored, missing ones take their default) because version 1 grows by
//! adding fields; answers are written exactly as the host checks them.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// Every hook's input.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Input {
    /// The contract version, 1.
    pub v: u32,
    /// The point, e.g. `deal.score`.
    pub hook: String,
    pub process_kind: Option<String>,
    /// What the point is about: `deal`, `task`, `interaction`, `partner`, …
    pub entity: String,
    /// The acting user; `None` for the system.
    pub actor: Option<Actor>,
    /// The entity as stored before the change; `None` on creation.
    pub before: Option<Value>,
    /// The entity as it will be stored.
    pub after: Option<Value>,
    pub transition: Option<Transition>,
    /// `task.assignee`: the task about to be created.
    pub task: Option<Value>,
    /// How many reactions deep the call is.
    pub depth: u32,
    /// The instant of the operation, from the engine's clock (RFC 3339); empty from a host
    /// older than the field.
    pub now: String,
    /// `loyalty.accrue`: the card, its program and the sale's amount (docs/hooks.md);
    /// `None` at every other point.
    pub loyalty: Option<Value>,
    /// `partner.strategy`: the partner's figures (docs/hooks.md); `None` at every other
    /// point.
    pub strategy: Option<Value>,
}

impl Input {
    /// `after` read as a deal (the points about deals).
    pub fn deal(&self) -> Result<Deal, Error> {
        let after = self.after.as_ref().ok_or_else(|| Error::new("the input has no deal (after is null)"))?;
        Ok(Deal::deserialize(after)?)
    }

    /// `before` read as a deal; `None` on creation.
    pub fn deal_before(&self) -> Result<Option<Deal>, Error> {
        Ok(self.before.as_ref().map(Deal::deserialize).transpose()?)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Actor {
    pub id: String,
    pub login: String,
    pub name: String,
    pub email: Option<String>,
    pub department: Option<String>,
    pub roles: Vec<String>,
}

/// A change of stage or status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Transition {
    /// `manual`, `route`, `hold`, `resume`, `won`, `lost`, `reopen`.
    pub how: String,
    pub from_stage: Option<String>,
    pub to_stage: Option<String>,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub note: Option<String>,
    /// Won or lost.
    pub closes: bool,
    /// The deal leaves `from_stage`.
    pub leaves_stage: bool,
}

/// A deal as the contract writes it: ids and times as text, the amount as decimal text.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Deal {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub title: String,
    pub partner: String,
    pub counterparty: Option<String>,
    pub kind: String,
    pub stage: Option<String>,
    pub status: String,
    pub manager: String,
    pub amount: String,
    pub currency: String,
    pub expected_close: Option<String>,
    pub probability: Option<u32>,
    /// Whether `probability` was set by hand.
    pub probability_manual: bool,
    /// The score the `deal.score` handler last gave the deal.
    pub score: Option<DealScore>,
    pub source: Option<String>,
    pub loss_reason: Option<String>,
    pub competitor: Option<String>,
    pub comment: String,
    pub closed_at: Option<String>,
    pub stage_entered_at: Option<String>,
    pub checklist: Vec<String>,
    pub custom: Map<String, Value>,
}

impl Deal {
    /// The amount as a float (`None` when it is not a number), for models.
    pub fn amount_f64(&self) -> Option<f64> {
        self.amount.parse().ok()
    }
}

/// A deal's stored score: the scoring model's answer, which handler gave it and when.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct DealScore {
    /// The win probability in percent, 0 to 100.
    pub probability: f64,
    /// Each `{"name", "value", "contribution"}`.
    pub factors: Vec<Value>,
    pub model: Option<String>,
    pub handler: String,
    pub at: String,
}

/// A partner, as `read_partner` gives it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Partner {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub name: String,
    /// `client`, `supplier`, …
    pub roles: Vec<String>,
    pub parent: Option<String>,
    pub manager: Option<String>,
    pub segment: Option<String>,
    pub counterparties: Vec<String>,
    pub source: Option<String>,
    pub comment: String,
    pub custom: Map<String, Value>,
}

/// A guard's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// `null`.
    Allow,
    /// `{"reject": message, "field": field}`.
    Reject { message: String, field: Option<String> },
}

impl Verdict {
    pub fn reject(message: impl Into<String>) -> Verdict {
        Verdict::Reject { message: message.into(), field: None }
    }

    /// A rejection naming the field at fault.
    pub fn reject_field(message: impl Into<String>, field: impl Into<String>) -> Verdict {
        Verdict::Reject { message: message.into(), field: Some(field.into()) }
    }
}

/// `deal.score`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    /// The win probability in percent, 0 to 100.
    pub probability: f64,
    /// At most 100.
    pub factors: Vec<Factor>,
    /// The model's name and version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// One factor of a score: what the model saw and its part in the score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Factor {
    /// 1 to 100 characters.
    pub name: String,
    /// Text up to 300 characters, a number, a boolean or null.
    pub value: Value,
    /// In the model's own unit (log-odds for a logistic model); positive raises the score.
    pub contribution: f64,
}

/// A reaction's action.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateTask {
        title: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// A login; the deal's manager when `None`.
        #[serde(skip_serializing_if = "Option::is_none")]
        executor: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        due_in_minutes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        required: Option<bool>,
    },
    SetField {
        /// `probability`, `amount`, `expected_close`, `source`, `comment`, `custom.NAME`.
        field: String,
        value: Value,
    },
    AddNote {
        subject: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    PutOnHold {
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
}
