//! A deal-scoring model for crmkit's `deal.score`: logistic regression over the deal's
//! amount, stage, source and the days it took to reach its stage, and its partner's roles and
//! segment (read through the `read_partner` capability), coefficients in the manifest's
//! `[config]`. It is the model of the shipped script `scripts/scoring/logistic.rhai`, term for
//! term and with the same coefficients. Each term is a factor of the answer, rounded to 4
//! decimals; the probability is 100 / (1 + e^-z), z their sum, rounded to 0.1.

#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crmkit_sdk::serde::Deserialize;
use crmkit_sdk::{hook, host, json, parse_time_ms, Error, Factor, Input, Score, Value};

/// The coefficients, from `[config]`.
#[derive(Deserialize)]
#[serde(crate = "crmkit_sdk::serde", deny_unknown_fields)]
struct Model {
    model: String,
    intercept: f64,
    /// The amount the amount's term is measured from, in currency units.
    amount_pivot: f64,
    /// Per tenfold of the amount above (or below) the pivot.
    amount_per_tenfold: f64,
    /// Per day from the deal's creation to its current stage (or to its close).
    per_day_to_stage: f64,
    #[serde(default)]
    stage: BTreeMap<String, f64>,
    #[serde(default)]
    source: BTreeMap<String, f64>,
    #[serde(default)]
    partner_role: BTreeMap<String, f64>,
    #[serde(default)]
    partner_segment: BTreeMap<String, f64>,
}

fn lookup(table: &BTreeMap<String, f64>, key: Option<&str>) -> f64 {
    key.and_then(|k| table.get(k)).copied().unwrap_or(0.0)
}

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |v| json!(v))
}

/// Rounded to `places` decimals, so the stored factors read well.
fn round(x: f64, places: i32) -> f64 {
    let m = libm::pow(10.0, places as f64);
    libm::round(x * m) / m
}

/// The day (since 1970-01-01) of an RFC 3339 time as the contract writes it, in UTC.
fn day(what: &str, time: &str) -> Result<i64, Error> {
    parse_time_ms(time)
        .map(|ms| ms.div_euclid(86_400_000))
        .ok_or_else(|| Error(format!("the deal's {what} {time:?} is not a time")))
}

fn score(input: Input) -> Result<Option<Score>, Error> {
    let deal = input.deal()?;
    let m: Model = host::config()?;
    let mut factors = Vec::new();
    let mut add = |name: &str, value: Value, contribution: f64| {
        factors.push(Factor { name: name.into(), value, contribution: round(contribution, 4) });
    };
    add("intercept", Value::Null, m.intercept);

    let amount =
        deal.amount_f64().ok_or_else(|| Error(format!("the deal's amount {:?} is not a number", deal.amount)))?;
    let tenfolds = if amount < 1.0 { 0.0 } else { libm::log(amount / m.amount_pivot) / libm::log(10.0) };
    add("amount", json!(deal.amount), m.amount_per_tenfold * tenfolds);

    add("stage", text(deal.stage.as_deref()), lookup(&m.stage, deal.stage.as_deref()));
    add("source", text(deal.source.as_deref()), lookup(&m.source, deal.source.as_deref()));

    let (what, reached) = match (&deal.closed_at, &deal.stage_entered_at) {
        (Some(t), _) => ("closed_at", t),
        (None, Some(t)) => ("stage_entered_at", t),
        (None, None) => ("created_at", &deal.created_at),
    };
    let days = day(what, reached)? - day("created_at", &deal.created_at)?;
    add("days_to_stage", json!(days), m.per_day_to_stage * days as f64);

    match host::read_partner(&deal.partner)? {
        Some(p) => {
            // The strongest of the partner's roles counts (the first of equals).
            let mut best: Option<(&String, f64)> = None;
            for role in &p.roles {
                if let Some(&c) = m.partner_role.get(role) {
                    if best.is_none_or(|(_, b)| c > b) {
                        best = Some((role, c));
                    }
                }
            }
            match best {
                Some((role, c)) => add("partner_role", json!(role), c),
                None => add("partner_role", json!(p.roles.join(",")), 0.0),
            }
            add("partner_segment", text(p.segment.as_deref()), lookup(&m.partner_segment, p.segment.as_deref()));
        }
        None => host::warn(&format!("deal {}: partner {} not found", deal.id, deal.partner)),
    }

    let z: f64 = factors.iter().map(|f| f.contribution).sum();
    let probability = round(100.0 / (1.0 + libm::exp(-z)), 1);
    Ok(Some(Score { probability, factors, model: Some(m.model) }))
}

hook!(score_deal, score);
