//! The deal-scoring model of plugins/examples/rust-score and scripts/scoring/logistic.rhai
//! written as a plain Rust function over core's types, the deals and partners it is measured
//! on, and the rule by which two of its answers agree. Shared by `crmkit-bench score` and the
//! test that checks the three implementations deal by deal (tests/all/plugin_examples.rs).

use std::collections::BTreeMap;

use crmkit_core::id::{DealId, PartnerId, RawId, UserId};
use crmkit_core::model::{Deal, DealStatus, Partner, PartnerRole};
use crmkit_core::time::Timestamp;
use crmkit_core::values::{Currency, Money};

/// The coefficients: the example plugin's `[config]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub model: String,
    pub intercept: f64,
    pub amount_pivot: f64,
    pub amount_per_tenfold: f64,
    pub per_day_to_stage: f64,
    #[serde(default)]
    pub stage: BTreeMap<String, f64>,
    #[serde(default)]
    pub source: BTreeMap<String, f64>,
    #[serde(default)]
    pub partner_role: BTreeMap<String, f64>,
    #[serde(default)]
    pub partner_segment: BTreeMap<String, f64>,
}

impl Model {
    /// The `[config]` of a plugin manifest's text, as JSON (what the plugin reads through
    /// `config()`), and the model it gives.
    pub fn from_manifest(manifest: &str) -> Result<(serde_json::Value, Model), String> {
        let table: toml::Table = toml::from_str(manifest).map_err(|e| format!("plugin.toml: {e}"))?;
        let config = table.get("config").ok_or("plugin.toml has no [config]")?;
        let json = serde_json::to_value(config).map_err(|e| format!("plugin.toml [config]: {e}"))?;
        let model = serde_json::from_value(json.clone()).map_err(|e| format!("plugin.toml [config]: {e}"))?;
        Ok((json, model))
    }
}

/// The model's answer: the probability (rounded to 0.1 as the model rounds it), the same
/// before rounding, and each factor's contribution (rounded to 4 decimals).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub probability: f64,
    pub unrounded: f64,
    pub factors: Vec<(&'static str, f64)>,
}

fn lookup(table: &BTreeMap<String, f64>, key: Option<&str>) -> f64 {
    key.and_then(|k| table.get(k)).copied().unwrap_or(0.0)
}

fn rounded(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

const DAY_MS: i64 = 86_400_000;

/// The win probability of `deal`, whose partner is `partner` (`None`: not found).
pub fn win_probability(m: &Model, deal: &Deal, partner: Option<&Partner>) -> Scored {
    let mut factors = Vec::with_capacity(7);
    factors.push(("intercept", rounded(m.intercept)));
    let amount: f64 = rust_decimal::prelude::ToPrimitive::to_f64(&deal.amount.amount).unwrap_or(0.0);
    let tenfolds = if amount < 1.0 { 0.0 } else { (amount / m.amount_pivot).ln() / 10f64.ln() };
    factors.push(("amount", rounded(m.amount_per_tenfold * tenfolds)));
    factors.push(("stage", rounded(lookup(&m.stage, deal.stage.as_deref()))));
    factors.push(("source", rounded(lookup(&m.source, deal.source.as_deref()))));
    let reached = deal.closed_at.or(deal.stage_entered_at).unwrap_or(deal.created_at);
    let days = reached.0.div_euclid(DAY_MS) - deal.created_at.0.div_euclid(DAY_MS);
    factors.push(("days_to_stage", rounded(m.per_day_to_stage * days as f64)));
    if let Some(p) = partner {
        // The strongest of the partner's roles counts (the first of equals).
        let mut best: Option<f64> = None;
        for role in &p.roles {
            if let Some(&c) = m.partner_role.get(role.name()) {
                if best.is_none_or(|b| c > b) {
                    best = Some(c);
                }
            }
        }
        factors.push(("partner_role", rounded(best.unwrap_or(0.0))));
        factors.push(("partner_segment", rounded(lookup(&m.partner_segment, p.segment.as_deref()))));
    }
    let z: f64 = factors.iter().map(|f| f.1).sum();
    let unrounded = 100.0 / (1.0 + (-z).exp());
    Scored { probability: (unrounded * 10.0).round() / 10.0, unrounded, factors }
}

/// Whether `other`'s probability agrees with the native answer `native`: equal (to 1e-9), or
/// one rounding step (0.1) apart where the unrounded value sits so near the middle of two
/// steps that the last bits of `ln`/`exp` (or of a contribution's rounding) may tip it.
pub fn agree(native: &Scored, other: f64) -> bool {
    let diff = (native.probability - other).abs();
    if diff < 1e-9 {
        return true;
    }
    let tenths = native.unrounded * 10.0;
    diff < 0.1 + 1e-9 && (tenths - tenths.floor() - 0.5).abs() < 0.03
}

// The demo's deterministic generator, so that a run and the test see the same deals.
use crmkit_demo::Rng as Mix;

/// One of `from`, picked by `r`.
fn pick<'a, T>(r: &mut Mix, from: &'a [T]) -> &'a T {
    &from[r.below(from.len())]
}

/// Partner `i` of a set: mostly clients, some also suppliers, some suppliers, competitors or
/// others alone; segments key, smb, mid or none.
pub fn partner(i: usize) -> Partner {
    let mut r = Mix(i as u64 ^ 0x5EED);
    let (first, second) = match r.below(20) {
        0..=11 => (PartnerRole::Client, None),
        12..=14 => (PartnerRole::Client, Some(PartnerRole::Supplier)),
        15..=16 => (PartnerRole::Supplier, None),
        17 => (PartnerRole::Competitor, Some(PartnerRole::Client)),
        18 => (PartnerRole::Competitor, None),
        _ => (PartnerRole::Other, None),
    };
    let mut p = Partner::new(format!("Partner {i}"), first);
    if let Some(second) = second {
        p.roles.push(second);
        p.roles.sort();
    }
    p.segment = pick(&mut r, &[Some("key"), Some("smb"), Some("smb"), Some("mid"), None]).map(str::to_string);
    p
}

/// The stages of the default installation's process kinds.
const KINDS: [(&str, &[&str]); 3] = [
    ("b2b_sale", &["qualification", "needs_analysis", "proposal", "negotiation", "contract"]),
    ("tender", &["announcement", "documentation", "approval", "bid", "award"]),
    ("repeat_sale", &["request", "quote", "order"]),
];

const SOURCES: [Option<&str>; 8] = [
    Some("website"),
    Some("referral"),
    Some("cold_call"),
    Some("exhibition"),
    Some("existing_client"),
    Some("tender"),
    Some("partner_program"),
    None,
];

/// Deal `i`, of one of `partners`: a process kind and one of its stages, a source (now and
/// then one the model does not list, or none), an amount from 1,000 to 100,000,000 spread
/// evenly over its tenfolds, created in 2025–2026, in its stage since 0–120 days, one in six
/// closed (won or lost) up to 30 days later.
pub fn deal(i: usize, partners: &[PartnerId]) -> Deal {
    let mut r = Mix(i as u64);
    let (kind, stages) = pick(&mut r, &KINDS);
    let stage = pick(&mut r, stages).to_string();
    let partner = *pick(&mut r, partners);
    let cents = (10f64.powf(3.0 + 5.0 * (r.below(1_000_000) as f64 / 1_000_000.0)) * 100.0).round() as i64;
    let amount = Money::new(rust_decimal::Decimal::new(cents, 2), Currency::RUB);
    let mut d = Deal::new(format!("Deal {i}"), partner, *kind, Some(stage), UserId::default(), amount);
    let created = 1_735_689_600_000 + r.below(600 * DAY_MS as usize) as i64;
    d.id = DealId(RawId::new(created, i as u64));
    d.created_at = Timestamp(created);
    d.updated_at = d.created_at;
    d.source = pick(&mut r, &SOURCES).map(str::to_string);
    let entered = created + r.below(120 * DAY_MS as usize) as i64;
    d.stage_entered_at = Some(Timestamp(entered));
    if r.below(6) == 0 {
        d.status = if r.below(2) == 0 { DealStatus::Won } else { DealStatus::Lost };
        d.closed_at = Some(Timestamp(entered + r.below(30 * DAY_MS as usize) as i64));
        if d.status == DealStatus::Lost {
            d.loss_reason = Some("price".into());
        }
    }
    d
}

/// The plugin's binding, as an installation's config writes it.
pub const WASM_HANDLER: &str = "rust_score.wasm::score_deal";
/// The script's binding.
pub const RHAI_HANDLER: &str = "scoring/logistic.rhai::win_probability";

/// The model three ways: the example plugin through the WASM host, the shipped script through
/// the Rhai runtime (each bound on `deal.score` and asked through core's registry, as the
/// engine asks), and [`win_probability`] with the plugin's coefficients.
pub struct Ways {
    pub model: Model,
    /// The plugin's `[config]` as JSON.
    pub config: serde_json::Value,
    wasm: crmkit_core::hooks::Hooks,
    /// The plugin with its instances kept between calls (`runtimes.wasm.reuse`).
    wasm_kept: crmkit_core::hooks::Hooks,
    rhai: crmkit_core::hooks::Hooks,
    scripts: std::sync::Arc<crmkit_rhai::ScriptHost>,
}

impl Ways {
    /// The three over an installation's `settings` (which grant `rust_score` its
    /// `read_partner`), its plugins folder holding `rust_score/` and its scripts folder
    /// holding `scoring/logistic.rhai`. Each call may take `timeout_ms`.
    pub fn new(
        settings: &crmkit_core::config::Settings,
        plugins: &std::path::Path,
        scripts: &std::path::Path,
        timeout_ms: u64,
    ) -> Result<Ways, String> {
        use crmkit_core::hooks::{CallLimits, HookBinding, HookPoint, Hooks};
        use std::sync::Arc;
        let manifest = std::fs::read_to_string(plugins.join("rust_score/plugin.toml"))
            .map_err(|e| format!("{}: {e}", plugins.join("rust_score/plugin.toml").display()))?;
        let (config, model) = Model::from_manifest(&manifest)?;
        let wasm_settings = crmkit_wasm::WasmSettings::from_settings(settings).map_err(|e| e.to_string())?;
        let host = |settings: &crmkit_wasm::WasmSettings| -> Result<Arc<crmkit_wasm::PluginHost>, String> {
            let host = crmkit_wasm::PluginHost::new(plugins, None, settings).map_err(|e| e.to_string())?;
            let errors = host.load_all();
            if !errors.is_empty() {
                return Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
            }
            Ok(Arc::new(host))
        };
        let fresh = host(&wasm_settings)?;
        let kept = host(&crmkit_wasm::WasmSettings { reuse: vec!["rust_score".into()], ..wasm_settings.clone() })?;
        let rhai_settings = crmkit_rhai::RhaiSettings::from_settings(settings).map_err(|e| e.to_string())?;
        let script_host = Arc::new(crmkit_rhai::ScriptHost::new(scripts, &rhai_settings));
        let errors = script_host.load_all();
        if !errors.is_empty() {
            return Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
        }
        let limits = CallLimits { timeout_ms: Some(timeout_ms), ..CallLimits::default() };
        let bound = |provider: Arc<dyn crmkit_core::hooks::HandlerProvider>, handler: &str| -> Result<Hooks, String> {
            let mut hooks = Hooks::new();
            hooks.provider(provider);
            let mut binding = HookBinding::new(HookPoint::DealScore, handler);
            binding.limits = limits;
            hooks.bind_all(&[binding]).map_err(|e| e.to_string())?;
            Ok(hooks)
        };
        let wasm = bound(Arc::new(crmkit_wasm::WasmProvider::new(fresh)), WASM_HANDLER)?;
        let wasm_kept = bound(Arc::new(crmkit_wasm::WasmProvider::new(kept)), WASM_HANDLER)?;
        let rhai = bound(Arc::new(crmkit_rhai::RhaiProvider::new(script_host.clone())), RHAI_HANDLER)?;
        Ok(Ways { model, config, wasm, wasm_kept, rhai, scripts: script_host })
    }

    /// The script's `coefficients()` as JSON, to be compared with the plugin's `[config]`.
    pub fn script_coefficients(&self) -> Result<serde_json::Value, String> {
        let c = self
            .scripts
            .call("scoring/logistic.rhai", "coefficients", Vec::new(), crmkit_core::hooks::CallLimits::default())
            .map_err(|e| e.to_string())?;
        rhai::serde::from_dynamic(&c).map_err(|e| e.to_string())
    }

    /// The native answer for `deal`, its partner read from `view`.
    pub fn native(&self, deal: &Deal, view: &dyn crmkit_core::hooks::View) -> Result<Scored, String> {
        let partner = view.partner(deal.partner).map_err(|e| e.to_string())?;
        Ok(win_probability(&self.model, deal, partner.as_ref()))
    }

    /// The plugin's answer for `deal`.
    pub fn wasm(&self, deal: &Deal, view: &dyn crmkit_core::hooks::View) -> Result<crmkit_core::hooks::Score, String> {
        ask(&self.wasm, deal, view)
    }

    /// The plugin's answer for `deal` from an instance kept between calls.
    pub fn wasm_kept(
        &self,
        deal: &Deal,
        view: &dyn crmkit_core::hooks::View,
    ) -> Result<crmkit_core::hooks::Score, String> {
        ask(&self.wasm_kept, deal, view)
    }

    /// The script's answer for `deal`.
    pub fn rhai(&self, deal: &Deal, view: &dyn crmkit_core::hooks::View) -> Result<crmkit_core::hooks::Score, String> {
        ask(&self.rhai, deal, view)
    }
}

/// Asks `hooks` about `deal` as the engine asks `deal.score` after an operation.
fn ask(
    hooks: &crmkit_core::hooks::Hooks,
    deal: &Deal,
    view: &dyn crmkit_core::hooks::View,
) -> Result<crmkit_core::hooks::Score, String> {
    use crmkit_core::hooks::{Answer, HookInput, HookPoint, Subject};
    let input = HookInput {
        hook: HookPoint::DealScore,
        process_kind: Some(&deal.kind),
        entity: crmkit_core::model::EntityKind::Deal,
        actor: None,
        before: None,
        after: Some(Subject::Deal(deal)),
        transition: None,
        task: None,
        depth: 0,
        now: deal.updated_at,
        view,
        loyalty: None,
        strategy: None,
        claim_step: None,
    };
    let answer = match hooks.ask(&input).next() {
        Some(Ok((_, Answer::Score(Some(s))))) => Ok(s),
        Some(Ok((name, other))) => Err(format!("{name} answered {other:?} for deal {}", deal.id)),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no handler is bound on deal.score".into()),
    };
    answer
}
