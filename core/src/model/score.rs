//! A deal's score: the win probability a scoring model (a `deal.score` handler) gave it, with
//! the factors that produced it, and the one check of a score's values that the answer of
//! a handler and a stored record both obey.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;

/// The most factors a score carries.
pub const MAX_FACTORS: usize = 100;
/// The longest factor name and model name, in characters.
pub const MAX_NAME: usize = 100;
/// The longest text value of a factor, in characters.
pub const MAX_VALUE_TEXT: usize = 300;

/// One factor of a score: what the model looked at, what it found, and how much that moved
/// the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreFactor {
    /// What the factor is (`amount`, `stage`, `source`, `days_in_stage`, …).
    pub name: String,
    /// The value the model saw: text, a number, a boolean or null.
    pub value: Value,
    /// Its part in the score, in the model's own unit (a logistic model: log-odds; an
    /// additive one: percentage points). Positive raises the probability.
    pub contribution: f64,
}

/// A deal's stored score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealScore {
    /// The win probability in percent, 0 to 100, a decimal number as the model gave it.
    pub probability: f64,
    /// The factors that produced it, in the model's order.
    pub factors: Vec<ScoreFactor>,
    /// The model's own name and version, if it gave one (`logistic-2024-06`).
    pub model: Option<String>,
    /// The handler that computed it, as its binding names it (`scoring.rhai::score`).
    pub handler: String,
    /// When it was computed: the write that last changed the score.
    pub at: Timestamp,
}

impl DealScore {
    /// Whether `other` says the same as this score, whenever either was computed.
    pub fn same_result(&self, other: &DealScore) -> bool {
        self.probability == other.probability
            && self.factors == other.factors
            && self.model == other.model
            && self.handler == other.handler
    }

    /// The probability as the deal's whole percent (half up).
    pub fn percent(&self) -> u8 {
        self.probability.round().clamp(0.0, 100.0) as u8
    }
}

/// Checks a score's probability, factors and model name; the message says which part is
/// wrong and how (`factors[2].name is empty`).
pub fn check(probability: f64, factors: &[ScoreFactor], model: Option<&str>) -> Result<(), String> {
    if !probability.is_finite() || !(0.0..=100.0).contains(&probability) {
        return Err(format!("probability is a percentage from 0 to 100, got {probability}"));
    }
    if factors.len() > MAX_FACTORS {
        return Err(format!("{} factors: at most {MAX_FACTORS}", factors.len()));
    }
    for (i, f) in factors.iter().enumerate() {
        check_name(&f.name).map_err(|m| format!("factors[{i}].name {m}"))?;
        match &f.value {
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
            Value::String(s) if s.chars().count() <= MAX_VALUE_TEXT => {}
            Value::String(_) => return Err(format!("factors[{i}].value is longer than {MAX_VALUE_TEXT} characters")),
            _ => {
                return Err(format!(
                    "factors[{i}].value is a list or a map; a factor's value is text, a number, a boolean or null"
                ))
            }
        }
        if !f.contribution.is_finite() {
            return Err(format!("factors[{i}].contribution is not a finite number"));
        }
    }
    if let Some(m) = model {
        check_name(m).map_err(|e| format!("model {e}"))?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("is longer than {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("has a control character".into());
    }
    Ok(())
}
