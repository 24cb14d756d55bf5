//! A deal-scoring model for crmkit's `deal.score`: logistic regression over the deal's
//! amount, stage, source and age and its partner's roles and segment (read through the
//! `read_partner` capability), coefficients in the manifest's `[config]`. Each term is a
//! factor of the answer; the probability is 100 / (1 + e^-z), z their sum.

#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crmkit_sdk::serde::Deserialize;
use crmkit_sdk::{host, hook, json, parse_time_ms, Error, Factor, Input, Score, Value};

/// The coefficients, from `[config]`.
#[derive(Deserialize)]
#[serde(crate = "crmkit_sdk::serde", deny_unknown_fields)]
struct Model {
    model: String,
    intercept: f64,
    amount_log10: f64,
    age_days: f64,
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

/// Rounded to 4 decimals, so the stored factors read well.
fn round(x: f64, places: i32) -> f64 {
    let m = libm::pow(10.0, places as f64);
    libm::round(x * m) / m
}

fn score(input: Input) -> Result<Option<Score>, Error> {
    let deal = input.deal()?;
    let m: Model = host::config()?;
    let mut factors = Vec::new();
    let mut add = |name: &str, value: Value, contribution: f64| {
        factors.push(Factor { name: name.into(), value, contribution: round(contribution, 4) });
    };
    add("intercept", Value::Null, m.intercept);

    let amount = deal.amount_f64().ok_or_else(|| Error(format!("the deal's amount {:?} is not a number", deal.amount)))?;
    add("amount", json!(deal.amount), m.amount_log10 * libm::log10(amount.max(1.0)));

    add("stage", text(deal.stage.as_deref()), lookup(&m.stage, deal.stage.as_deref()));
    add("source", text(deal.source.as_deref()), lookup(&m.source, deal.source.as_deref()));

    let created = parse_time_ms(&deal.created_at)
        .ok_or_else(|| Error(format!("the deal's created_at {:?} is not a time", deal.created_at)))?;
    let days = ((host::now_ms() - created).max(0) / 86_400_000) as f64;
    add("age_days", json!(days), m.age_days * days);

    match host::read_partner(&deal.partner)? {
        Some(p) => {
            // The strongest of the partner's roles counts.
            let best = p
                .roles
                .iter()
                .filter_map(|r| m.partner_role.get(r).map(|c| (r, *c)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
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
