//! Installation configuration: `config/crmkit.toml` parsed in two layers.
//!
//! [`raw`] mirrors the TOML exactly (unknown keys are errors) and keeps source positions;
//! [`Settings`] is the validated value the rest of the engine reads. Every error names the
//! file, the line and the key: `config/crmkit.toml:14:1: unknown key "stgaes" in [[process_kinds]]`.

mod analytics;
mod claims;
mod custom_fields;
mod lists;
mod plans;
mod processes;
mod raw;
mod rules;
mod source;
mod strategies;
mod validate;
mod win_probability;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::hooks::{HookBinding, Limits};
use crate::model::{CustomFieldDef, EntityKind, Role};
use crate::process::spec::ProcessSettings;
pub use crate::process::spec::{ProcessKindSpec, StageSpec};
use crate::values::{Currency, Money};
use source::Source;
pub use win_probability::{ScoringMethod, WinProbability, BAYES_FIELDS};

/// The installation's config file, relative to the installation folder.
pub const CONFIG_FILE: &str = "config/crmkit.toml";

/// A configuration error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, as given to the loader.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a position.
    pub line: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

pub use crate::model::{List, ListItem};

/// The configured value lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lists {
    pub loss_reasons: List,
    pub sources: List,
    pub participant_roles: List,
    pub decision_roles: List,
}

/// A user declared in config; synchronized into the store when the installation opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSpec {
    pub login: String,
    pub name: String,
    pub email: Option<String>,
    pub department: Option<String>,
    pub roles: Vec<Role>,
}

/// Who a strategy's recommended tasks go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagerLevel {
    /// The partner's manager.
    Manager,
    /// The head of the partner's manager's department.
    Head,
}

/// The relationship strategy of a partner segment (`[[strategies]]`): how often the
/// partner is to be contacted, by whom, the discount policy, and the actions recommended
/// when contact is due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Strategy {
    /// The segment's id, as the `partner.strategy` rule names it.
    pub segment: String,
    pub name: String,
    /// Contact at least every this many days.
    pub contact_every_days: u32,
    pub manager_level: ManagerLevel,
    /// The discount policy, in words (empty: none said).
    pub discount_policy: String,
    /// The tasks recommended when contact is due, in order.
    pub actions: Vec<String>,
    /// The config line it is written on.
    #[serde(skip)]
    pub line: usize,
}

impl Settings {
    /// The strategy of `segment`.
    pub fn strategy(&self, segment: &str) -> Option<&Strategy> {
        self.strategies.iter().find(|s| s.segment == segment)
    }
}

/// A manager's sales plan for a period (`[[plans]]`): the revenue to win, in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The manager's login (a user of `[[users]]`).
    pub manager: String,
    /// The period's first day.
    pub from: NaiveDate,
    /// The period's last day.
    pub to: NaiveDate,
    /// The revenue planned.
    pub amount: Money,
    /// The line of config the plan starts on.
    pub line: usize,
}

/// The thresholds of the client classifications (`[analytics.*]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AnalyticsSettings {
    pub abc_xyz: AbcXyzSettings,
    pub bcg: BcgSettings,
}

/// ABC by the cumulative share of revenue, XYZ by the coefficient of variation of monthly
/// revenue, all in percent (`[analytics.abc_xyz]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbcXyzSettings {
    /// The share of revenue class A covers (default 80).
    pub a: Decimal,
    /// The share class B covers after A (default 15; C takes the rest).
    pub b: Decimal,
    /// The largest coefficient of variation of class X (default 10).
    pub x: Decimal,
    /// The largest coefficient of variation of class Y (default 25; above: Z).
    pub y: Decimal,
}

impl Default for AbcXyzSettings {
    fn default() -> Self {
        AbcXyzSettings { a: Decimal::from(80), b: Decimal::from(15), x: Decimal::from(10), y: Decimal::from(25) }
    }
}

/// Where the BCG matrix splits (`[analytics.bcg]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BcgSettings {
    /// The relative share (a client's revenue over the largest client's, in percent) from
    /// which a client's share is high (default 50).
    pub share: Decimal,
    /// The growth over the previous period, in percent, from which growth is high (default 10).
    pub growth: Decimal,
}

impl Default for BcgSettings {
    fn default() -> Self {
        BcgSettings { share: Decimal::from(50), growth: Decimal::from(10) }
    }
}

/// The validated configuration of an installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// A name for the installation (shown by the CLI).
    pub name: String,
    /// The database file (absolute, or relative to the working directory).
    pub database: PathBuf,
    /// Memory for cached database pages, in bytes.
    pub cache_bytes: usize,
    /// Memory for cached entity records (shared by all readers), in bytes; 0 turns it off.
    pub record_cache_bytes: usize,
    /// Whether every durable commit also records the file's allocator state (in two
    /// phases), so that a database whose process was killed reopens at once instead of
    /// being walked whole to rebuild it (`database.quick_repair`).
    pub quick_repair: bool,
    pub default_currency: Currency,
    /// ISO 3166 region for phone numbers written without a country code.
    pub phone_region: String,
    /// The largest attachment accepted, in bytes.
    pub attachment_max_bytes: u64,
    pub users: Vec<UserSpec>,
    pub lists: Lists,
    pub partner_link_types: List,
    pub contact_link_types: List,
    pub participant_link_types: List,
    pub custom_fields: BTreeMap<EntityKind, Vec<CustomFieldDef>>,
    pub process_kinds: Vec<ProcessKindSpec>,
    pub process: ProcessSettings,
    /// Hook bindings, in file order.
    pub hooks: Vec<HookBinding>,
    /// What every hook runtime's calls may take (`[limits]`).
    pub limits: Limits,
    /// The managers' sales plans, in file order (`[[plans]]`).
    pub plans: Vec<Plan>,
    /// The client classifications' thresholds (`[analytics.abc_xyz]`, `[analytics.bcg]`).
    pub analytics: AnalyticsSettings,
    /// How the built-in scoring model is fitted (`[analytics.win_probability]`).
    pub win_probability: WinProbability,
    /// The relationship strategies, one per partner segment, in file order
    /// (`[[strategies]]`).
    pub strategies: Vec<Strategy>,
    /// How often the server runs the strategies, applying them (`[strategy]
    /// run_every_hours`, a decimal number of hours; none: never).
    pub strategy_every: Option<std::time::Duration>,
    /// The claim types with their causes, in file order (`[[claim_types]]`).
    pub claim_types: Vec<crate::model::ClaimType>,
    /// The runtimes' own sections (`[runtimes.NAME]`), by name, with the line each starts
    /// on; each runtime reads its own with [`Settings::runtime_section`].
    pub runtimes: BTreeMap<String, usize>,
    /// The config text and its file, for the sections core leaves to the runtimes.
    pub source: ConfigSource,
}

/// The config as it was read: its file (for messages) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigSource {
    pub file: PathBuf,
    #[serde(skip)]
    pub text: std::sync::Arc<str>,
}

impl Settings {
    /// Reads the config text as `T`, a runtime's view of the file (usually a struct whose
    /// only field is `runtimes`, holding the runtime's own section with
    /// `deny_unknown_fields`). Errors name the file, line and key, as core's own do.
    pub fn runtime_section<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let source = Source { text: &self.source.text, file: &self.source.file };
        toml::from_str(&self.source.text).map_err(|e| source.toml_error(&e))
    }

    /// A config error at `span` of the config text (a span a runtime's section reported).
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        Source { text: &self.source.text, file: &self.source.file }.error(span, message)
    }

    /// A positive number of a runtime's section: `default` when `value` (its span and number)
    /// is not written, the number when it is above zero, else an error at its place naming
    /// `key` (e.g. `runtimes.wasm.memory_mb must be above zero, got 0`).
    pub fn positive(&self, value: Option<(Range<usize>, u64)>, key: &str, default: u64) -> Result<u64, ConfigError> {
        match value {
            None => Ok(default),
            Some((_, n)) if n > 0 => Ok(n),
            Some((span, n)) => Err(self.error_at(span, format!("{key} must be above zero, got {n}"))),
        }
    }

    /// The process kind with this id.
    pub fn process_kind(&self, id: &str) -> Option<&ProcessKindSpec> {
        self.process_kinds.iter().find(|k| k.id == id)
    }

    /// The custom fields declared for `kind`.
    pub fn custom_fields_of(&self, kind: EntityKind) -> &[CustomFieldDef] {
        self.custom_fields.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// Reads and validates `DIR/config/crmkit.toml`; a relative database path is taken
    /// relative to `dir`.
    pub fn load_installation(dir: &Path) -> Result<Settings, ConfigError> {
        let file = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut s = Settings::parse(&text, &file)?;
        if s.database.is_relative() {
            s.database = dir.join(&s.database);
        }
        Ok(s)
    }

    /// Parses and validates config text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Settings, ConfigError> {
        let raw: raw::Config = toml::from_str(text).map_err(|e| Source { text, file }.toml_error(&e))?;
        Source { text, file }.validate(raw)
    }

    /// Settings for tests and examples: the built-in lists and one process kind.
    pub fn builtin() -> Settings {
        Settings::parse(DEFAULT_CONFIG, Path::new("<built-in>")).expect("the built-in config is valid")
    }
}

/// The default installation's config, also used by `crmkit init`.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/crmkit.toml");
