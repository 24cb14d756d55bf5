//! The Rhai runtime's limits: its own section of config, `[runtimes.rhai]`, read and checked
//! here (core knows only the limits every runtime shares, `[limits]`).

use crmkit_core::config::{ConfigError, Settings};
use serde::Deserialize;
use toml::Spanned;

/// The limits of scripts for the whole installation: `[runtimes.rhai]`, with the time budgets
/// of `[limits]`. A binding may set its own `timeout_ms` and `max_operations`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RhaiSettings {
    /// Wall-clock time a hook call may take, in milliseconds (`limits.timeout_ms`).
    pub timeout_ms: u64,
    /// Operations (statements, expressions, calls) a hook call may run.
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_depth: usize,
    /// Nested expressions (in statements; functions get half).
    pub max_expr_depth: usize,
    /// The longest string, in bytes.
    pub max_string_size: usize,
    /// The most items of an array.
    pub max_array_size: usize,
    /// The most entries of an object map.
    pub max_map_size: usize,
    /// Whether scripts may `import` other scripts (from `scripts/` only).
    pub imports: bool,
    /// Wall-clock time a report may take, in milliseconds (`limits.report_timeout_ms`).
    pub report_timeout_ms: u64,
    /// Operations a report may run.
    pub report_max_operations: u64,
}

impl Default for RhaiSettings {
    fn default() -> Self {
        let shared = crmkit_core::hooks::Limits::default();
        RhaiSettings {
            timeout_ms: shared.timeout_ms,
            max_operations: 1_000_000,
            max_call_depth: 48,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
            imports: true,
            report_timeout_ms: shared.report_timeout_ms,
            report_max_operations: 2_000_000_000,
        }
    }
}

/// The part of the config file this runtime reads; everything else is core's.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    runtimes: Runtimes,
}

#[derive(Deserialize, Default)]
struct Runtimes {
    #[serde(default)]
    rhai: Raw,
}

/// `[runtimes.rhai]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    max_operations: Option<Spanned<u64>>,
    report_max_operations: Option<Spanned<u64>>,
    max_call_depth: Option<Spanned<usize>>,
    max_expr_depth: Option<Spanned<usize>>,
    max_string_size: Option<Spanned<usize>>,
    max_array_size: Option<Spanned<usize>>,
    max_map_size: Option<Spanned<usize>>,
    imports: Option<bool>,
}

impl RhaiSettings {
    /// The installation's Rhai limits: `[runtimes.rhai]` checked (an unknown key, a wrong
    /// type or a zero is an error naming the file, line and key), with `[limits]`' times.
    pub fn from_settings(settings: &Settings) -> Result<RhaiSettings, ConfigError> {
        let raw = settings.runtime_section::<File>()?.runtimes.rhai;
        let d = RhaiSettings::default();
        let positive = |v: Option<Spanned<usize>>, key: &str, default: usize| -> Result<usize, ConfigError> {
            settings.positive(v.map(|v| (v.span(), *v.get_ref() as u64)), key, default as u64).map(|n| n as usize)
        };
        let positive64 = |v: Option<Spanned<u64>>, key: &str, default: u64| {
            settings.positive(v.map(|v| (v.span(), *v.get_ref())), key, default)
        };
        Ok(RhaiSettings {
            timeout_ms: settings.limits.timeout_ms,
            max_operations: positive64(raw.max_operations, "runtimes.rhai.max_operations", d.max_operations)?,
            max_call_depth: positive(raw.max_call_depth, "runtimes.rhai.max_call_depth", d.max_call_depth)?,
            max_expr_depth: positive(raw.max_expr_depth, "runtimes.rhai.max_expr_depth", d.max_expr_depth)?,
            max_string_size: positive(raw.max_string_size, "runtimes.rhai.max_string_size", d.max_string_size)?,
            max_array_size: positive(raw.max_array_size, "runtimes.rhai.max_array_size", d.max_array_size)?,
            max_map_size: positive(raw.max_map_size, "runtimes.rhai.max_map_size", d.max_map_size)?,
            imports: raw.imports.unwrap_or(d.imports),
            report_timeout_ms: settings.limits.report_timeout_ms,
            report_max_operations: positive64(
                raw.report_max_operations,
                "runtimes.rhai.report_max_operations",
                d.report_max_operations,
            )?,
        })
    }
}
