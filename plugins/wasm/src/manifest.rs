//! A plugin's manifest, `plugin.toml` beside its module: who it is, the ABI version and the
//! module's SHA-256 it was built as, the hooks it provides, the capabilities and limits it
//! asks for and its own config values. Read and checked here, before the module is.

use std::collections::BTreeMap;

use crmkit_core::hooks::HookPoint;
use serde::Deserialize;

use crate::abi::CAPABILITIES;

/// A checked `plugin.toml`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// The ABI version the module is built for.
    pub abi: u32,
    /// The module's SHA-256, lowercase hex.
    pub sha256: String,
    /// The export that implements each hook point the plugin provides.
    pub hooks: BTreeMap<HookPoint, String>,
    /// The capabilities the plugin asks for (`read_partner`, …).
    pub capabilities: Vec<String>,
    /// Memory the plugin asks for, in MiB (`None`: the installation's `memory_mb`).
    pub memory_mb: Option<u64>,
    /// Time per call the plugin asks for, in ms (`None`: the installation's).
    pub timeout_ms: Option<u64>,
    /// The plugin's own config, handed to it as JSON by the `config` import.
    pub config: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    version: String,
    abi: u32,
    sha256: String,
    #[serde(default)]
    hooks: BTreeMap<String, String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    config: Option<toml::Table>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
}

impl Manifest {
    /// Reads and checks a manifest's text; the error says what is wrong (the caller adds
    /// the file).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(span) => format!("line {}: {msg}", text[..span.start].matches('\n').count() + 1),
                None => msg,
            }
        })?;
        if raw.name.is_empty()
            || !raw.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(format!(
                "name \"{}\": a plugin's name is lowercase letters, digits, _ and - (it is also its folder's name)",
                raw.name
            ));
        }
        if raw.version.trim().is_empty() {
            return Err("version must not be empty".into());
        }
        let sha256 = raw.sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("sha256 \"{}\" is not a SHA-256 in hex (64 characters)", raw.sha256));
        }
        let mut hooks = BTreeMap::new();
        for (point, export) in raw.hooks {
            let p = HookPoint::from_name(&point).ok_or_else(|| {
                let names: Vec<&str> = HookPoint::ALL.iter().map(|p| p.name()).collect();
                format!("hooks: unknown hook point \"{point}\" ({})", names.join(", "))
            })?;
            if export.is_empty() {
                return Err(format!("hooks: {point}: the export name must not be empty"));
            }
            hooks.insert(p, export);
        }
        for c in &raw.capabilities {
            if !CAPABILITIES.contains(&c.as_str()) {
                return Err(format!(
                    "capabilities: unknown capability \"{c}\" (capabilities: {})",
                    CAPABILITIES.join(", ")
                ));
            }
        }
        for (key, v) in [("limits.memory_mb", raw.limits.memory_mb), ("limits.timeout_ms", raw.limits.timeout_ms)] {
            if v == Some(0) {
                return Err(format!("{key} must be above zero"));
            }
        }
        let config = serde_json::to_value(raw.config.unwrap_or_default()).map_err(|e| format!("config: {e}"))?;
        Ok(Manifest {
            name: raw.name,
            version: raw.version,
            abi: raw.abi,
            sha256,
            hooks,
            capabilities: raw.capabilities,
            memory_mb: raw.limits.memory_mb,
            timeout_ms: raw.limits.timeout_ms,
            config,
        })
    }
}
