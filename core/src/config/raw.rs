//! The raw layer: mirrors the TOML exactly. Unknown keys are errors (`deny_unknown_fields`)
//! and values keep their spans, so that validation can say where a value is wrong.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub installation: Installation,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub attachments: Attachments,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub lists: Lists,
    #[serde(default)]
    pub partner_link_types: Vec<Item>,
    #[serde(default)]
    pub contact_link_types: Vec<Item>,
    #[serde(default)]
    pub participant_link_types: Vec<Item>,
    #[serde(default)]
    pub custom_fields: BTreeMap<Spanned<String>, Vec<CustomField>>,
    #[serde(default)]
    pub process_kinds: Vec<ProcessKind>,
    #[serde(default)]
    pub process: Process,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub plans: Vec<Plan>,
    #[serde(default)]
    pub analytics: Analytics,
    #[serde(default)]
    pub strategies: Vec<Strategy>,
    #[serde(default)]
    pub strategy: StrategyRun,
    #[serde(default)]
    pub claim_types: Vec<ClaimType>,
    /// Each runtime's own section, which the runtime reads and checks.
    #[serde(default)]
    pub runtimes: BTreeMap<Spanned<String>, Spanned<toml::Table>>,
    /// The section limits and runtimes replaced: refused with where its keys went.
    pub scripting: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Analytics {
    pub abc_xyz: Option<AbcXyz>,
    pub bcg: Option<Bcg>,
    #[serde(default)]
    pub win_probability: WinProbability,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbcXyz {
    pub a: Option<Spanned<f64>>,
    pub b: Option<Spanned<f64>>,
    pub c: Option<Spanned<f64>>,
    pub x: Option<Spanned<f64>>,
    pub y: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bcg {
    pub share: Option<Spanned<f64>>,
    pub growth: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WinProbability {
    pub method: Option<Spanned<String>>,
    pub fields: Option<Spanned<Vec<Spanned<String>>>>,
    pub amount_bands: Option<Vec<Spanned<toml::Value>>>,
    pub smoothing: Option<Spanned<f64>>,
    pub prior_weight: Option<Spanned<f64>>,
    pub min_deals: Option<Spanned<u64>>,
    pub refit_minutes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub manager: Spanned<String>,
    pub period: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub amount: Spanned<String>,
    pub currency: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub segment: Spanned<String>,
    pub name: Spanned<String>,
    pub contact_every_days: Spanned<u32>,
    pub manager_level: Option<Spanned<String>>,
    pub discount_policy: Option<Spanned<String>>,
    #[serde(default)]
    pub actions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimType {
    pub id: Spanned<String>,
    pub name: Spanned<String>,
    pub due_days: Option<Spanned<u32>>,
    pub settled_amount_required: Option<bool>,
    pub causes: Spanned<Vec<Item>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StrategyRun {
    pub run_every_hours: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub timeout_ms: Option<Spanned<u64>>,
    pub report_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub max_reaction_depth: Option<Spanned<u32>>,
    pub complete_others_tasks: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    pub point: Spanned<String>,
    pub handler: Spanned<String>,
    pub runtime: Option<Spanned<String>>,
    #[serde(default)]
    pub kinds: Vec<Spanned<String>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub max_operations: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guidance {
    pub title: Spanned<String>,
    pub url: Option<String>,
    pub file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub assignee: Option<Spanned<String>>,
    pub due: Option<Spanned<String>>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: Spanned<String>,
    pub when: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Installation {
    pub name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub path: Option<String>,
    pub cache_mb: Option<Spanned<u64>>,
    pub record_cache_mb: Option<Spanned<u64>>,
    pub quick_repair: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub currency: Option<Spanned<String>>,
    pub phone_region: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Attachments {
    pub max_size_mb: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub login: Spanned<String>,
    pub name: Spanned<String>,
    pub email: Option<Spanned<String>>,
    pub department: Option<String>,
    pub roles: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    pub loss_reasons: Option<Vec<Item>>,
    pub sources: Option<Vec<Item>>,
    pub participant_roles: Option<Vec<Item>>,
    pub decision_roles: Option<Vec<Item>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: Spanned<String>,
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub name: Spanned<String>,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    #[serde(default)]
    pub required: bool,
    pub values: Option<Spanned<Vec<Spanned<String>>>>,
    pub target: Option<Spanned<String>>,
    pub multiple: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessKind {
    pub id: Spanned<String>,
    pub name: String,
    pub mode: Option<Spanned<String>>,
    pub loss_reasons: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub require_competitor: bool,
    #[serde(default)]
    pub require_loss_comment: bool,
    pub reopen_roles: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub guidance: Vec<Guidance>,
    #[serde(default)]
    pub stages: Vec<Stage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: Spanned<String>,
    pub name: String,
    pub sla: Option<Spanned<String>>,
    pub probability: Option<Spanned<i64>>,
    #[serde(default)]
    pub required_fields: Vec<Spanned<String>>,
    #[serde(default)]
    pub checklist: Vec<Item>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub guidance: Vec<Guidance>,
    pub to: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub exit_when: Option<Spanned<String>>,
}
