//! `[analytics.win_probability]`: how the built-in scoring model (the native `deal.score` handler
//! `win_probability`, and the win-probability and calibration reports) is fitted — the
//! method (the historical win rate onward from the stage, or naive Bayes), the fields naive
//! Bayes reads, the smoothing, the smallest counts it trusts and how often it refits.

use rust_decimal::Decimal;
use serde::Serialize;
use toml::Spanned;

use super::raw;
use super::source::Source;
use super::ConfigError;
use crate::model::CustomFieldDef;

/// The fields naive Bayes may read, besides `custom.NAME` (a deal custom field).
pub const BAYES_FIELDS: &[&str] = &["stage", "manager", "partner", "segment", "source", "amount_band"];

/// The two ways the built-in model estimates a deal's win probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoringMethod {
    /// The historical win rate onward from the deal's stage, combined with its manager's and
    /// partner's win rates (1C:ERP's way).
    Stages,
    /// Naive Bayes over the configured fields (Odoo's predictive lead scoring).
    Bayes,
}

impl ScoringMethod {
    /// Both methods, in the order reports list them.
    pub const ALL: [ScoringMethod; 2] = [ScoringMethod::Stages, ScoringMethod::Bayes];

    /// The name config gives it.
    pub fn name(self) -> &'static str {
        match self {
            ScoringMethod::Stages => "stages",
            ScoringMethod::Bayes => "bayes",
        }
    }
}

/// The built-in model's settings (`[analytics.win_probability]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WinProbability {
    /// The method the native handler and the win-probability report use.
    pub method: ScoringMethod,
    /// The fields naive Bayes reads, in order (`stage`, `manager`, `custom.NAME`, …).
    pub fields: Vec<String>,
    /// The upper bounds of the amount bands, ascending (`amount_band`).
    pub amount_bands: Vec<Decimal>,
    /// Laplace smoothing: the pseudo-count added to every count (α > 0).
    pub smoothing: Decimal,
    /// The stages method: how many deals at the kind's own win rate a stage's, manager's
    /// or partner's record is blended with (m > 0).
    pub prior_weight: Decimal,
    /// A stage, manager, partner or field value with fewer closed deals adds nothing.
    pub min_deals: u64,
    /// The fitted model is kept this many minutes, then fitted again.
    pub refit_minutes: u64,
}

impl Default for WinProbability {
    fn default() -> WinProbability {
        WinProbability {
            method: ScoringMethod::Stages,
            fields: ["stage", "manager", "partner", "source"].map(String::from).to_vec(),
            amount_bands: Vec::new(),
            smoothing: Decimal::ONE,
            prior_weight: Decimal::TEN,
            min_deals: 3,
            refit_minutes: 60,
        }
    }
}

impl Source<'_> {
    pub(super) fn win_probability(
        &self,
        raw: raw::WinProbability,
        deal_fields: &[CustomFieldDef],
    ) -> Result<WinProbability, ConfigError> {
        let d = WinProbability::default();
        let method = match &raw.method {
            None => d.method,
            Some(m) => match m.get_ref().as_str() {
                "stages" => ScoringMethod::Stages,
                "bayes" => ScoringMethod::Bayes,
                other => {
                    return Err(self.error(
                        m.span(),
                        format!("analytics.win_probability.method: \"{other}\" is not a method (stages, bayes)"),
                    ))
                }
            },
        };
        let mut amount_bands: Vec<Decimal> = Vec::new();
        for b in raw.amount_bands.iter().flatten() {
            let n = self.number(b, "analytics.win_probability.amount_bands")?;
            if n <= Decimal::ZERO {
                return Err(
                    self.error(b.span(), format!("analytics.win_probability.amount_bands: {n} is not above zero"))
                );
            }
            if let Some(last) = amount_bands.last() {
                if n <= *last {
                    return Err(self.error(
                        b.span(),
                        format!("analytics.win_probability.amount_bands must ascend: {n} comes after {last}"),
                    ));
                }
            }
            amount_bands.push(n);
        }
        let fields = match raw.fields {
            None => d.fields,
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(
                        self.error(list.span(), "analytics.win_probability.fields is empty: naive Bayes needs a field")
                    );
                }
                let mut fields: Vec<String> = Vec::new();
                for f in list.get_ref() {
                    let name = f.get_ref();
                    let known = match name.strip_prefix("custom.") {
                        Some(custom) => deal_fields.iter().any(|c| c.name == custom),
                        None => BAYES_FIELDS.contains(&name.as_str()),
                    };
                    if !known {
                        let customs: Vec<String> = deal_fields.iter().map(|c| format!("custom.{}", c.name)).collect();
                        return Err(self.error(
                            f.span(),
                            format!(
                                "analytics.win_probability.fields: \"{name}\" is not a field ({}{}{})",
                                BAYES_FIELDS.join(", "),
                                if customs.is_empty() { "" } else { ", " },
                                customs.join(", ")
                            ),
                        ));
                    }
                    if fields.contains(name) {
                        return Err(self
                            .error(f.span(), format!("analytics.win_probability.fields: \"{name}\" is listed twice")));
                    }
                    if name == "amount_band" && amount_bands.is_empty() {
                        return Err(self.error(
                            f.span(),
                            "analytics.win_probability.fields: amount_band needs analytics.win_probability.amount_bands (the bands' upper bounds)",
                        ));
                    }
                    fields.push(name.clone());
                }
                fields
            }
        };
        let positive = |v: &Option<Spanned<f64>>, key: &str, default: Decimal| -> Result<Decimal, ConfigError> {
            match v {
                None => Ok(default),
                Some(v) => {
                    let n = *v.get_ref();
                    match Decimal::try_from(n) {
                        Ok(x) if n.is_finite() && x > Decimal::ZERO => Ok(x.normalize()),
                        _ => Err(self.error(v.span(), format!("{key} must be above zero, got {n}"))),
                    }
                }
            }
        };
        Ok(WinProbability {
            method,
            fields,
            amount_bands,
            smoothing: positive(&raw.smoothing, "analytics.win_probability.smoothing", d.smoothing)?,
            prior_weight: positive(&raw.prior_weight, "analytics.win_probability.prior_weight", d.prior_weight)?,
            min_deals: self.positive_or(raw.min_deals, "analytics.win_probability.min_deals", d.min_deals)?,
            refit_minutes: self.positive_or(
                raw.refit_minutes,
                "analytics.win_probability.refit_minutes",
                d.refit_minutes,
            )?,
        })
    }

    fn number(&self, v: &Spanned<toml::Value>, key: &str) -> Result<Decimal, ConfigError> {
        let parsed = match v.get_ref() {
            toml::Value::Integer(i) => Some(Decimal::from(*i)),
            toml::Value::Float(f) => Decimal::try_from(*f).ok(),
            toml::Value::String(s) => s.trim().parse::<Decimal>().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| self.error(v.span(), format!("{key}: {} is not an amount", v.get_ref())))
    }
}
