//! The WASM runtime's part of an installation's config, `[runtimes.wasm]`: where plugins are,
//! which capabilities each is granted, and the caps on what a plugin may ask for. Read and
//! checked here; core knows only the limits every runtime shares (`[limits]`).

use std::collections::BTreeMap;

use crmkit_core::config::{ConfigError, Settings};
use serde::Deserialize;
use toml::Spanned;

use crate::abi::CAPABILITIES;

/// The installation's rules for plugins: `[runtimes.wasm]`, with `[limits]`' call time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WasmSettings {
    /// The plugins folder, relative to the installation (`dir`, default `plugins`).
    pub dir: String,
    /// Wall-clock time a hook call may take when neither the binding nor the manifest says,
    /// in milliseconds (`limits.timeout_ms`).
    pub timeout_ms: u64,
    /// The most time per call a manifest or a binding may ask for (`max_timeout_ms`).
    pub max_timeout_ms: u64,
    /// Memory a plugin gets when its manifest does not say, in MiB (`memory_mb`).
    pub memory_mb: u64,
    /// The most memory a manifest may ask for, in MiB (`max_memory_mb`).
    pub max_memory_mb: u64,
    /// The largest input handed to a plugin, in bytes (`max_input_bytes`).
    pub max_input_bytes: usize,
    /// The largest answer taken from a plugin, in bytes (`max_answer_bytes`).
    pub max_answer_bytes: usize,
    /// Host calls (log, clock, config, reads) one hook call may make (`max_host_calls`).
    pub max_host_calls: u32,
    /// Fuel per call (`fuel`): when set, every call also stops after this much work,
    /// deterministically, whatever the machine's speed; a binding's `max_operations` changes
    /// it. Off by default: the epoch deadline alone bounds a call, and counting costs time.
    pub fuel: Option<u64>,
    /// Whether compiled code is kept on disk (`cache`, default true).
    pub cache: bool,
    /// The capabilities granted to each plugin, by plugin name (`[runtimes.wasm.grants]`).
    pub grants: BTreeMap<String, Vec<String>>,
    /// The plugins whose instances are kept between calls (`reuse`); every other call runs
    /// in a fresh instance.
    pub reuse: Vec<String>,
    /// How many instances may exist at once, running or idle (`instance_slots`): address
    /// space for them is reserved when the host starts and reused call after call. 0: each
    /// instance's memory is mapped when it starts and unmapped when it ends.
    pub instance_slots: u32,
}

impl Default for WasmSettings {
    fn default() -> Self {
        WasmSettings {
            dir: "plugins".to_string(),
            timeout_ms: crmkit_core::hooks::Limits::default().timeout_ms,
            max_timeout_ms: 1_000,
            memory_mb: 16,
            max_memory_mb: 64,
            max_input_bytes: 1 << 20,
            max_answer_bytes: 1 << 20,
            max_host_calls: 1_000,
            fuel: None,
            cache: true,
            grants: BTreeMap::new(),
            reuse: Vec::new(),
            instance_slots: 128,
        }
    }
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    runtimes: Runtimes,
}

#[derive(Deserialize, Default)]
struct Runtimes {
    #[serde(default)]
    wasm: Raw,
}

/// `[runtimes.wasm]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    dir: Option<Spanned<String>>,
    max_timeout_ms: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    max_memory_mb: Option<Spanned<u64>>,
    max_input_bytes: Option<Spanned<u64>>,
    max_answer_bytes: Option<Spanned<u64>>,
    max_host_calls: Option<Spanned<u64>>,
    fuel: Option<Spanned<u64>>,
    cache: Option<bool>,
    #[serde(default)]
    grants: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    reuse: Vec<Spanned<String>>,
    instance_slots: Option<Spanned<u64>>,
}

impl WasmSettings {
    /// The installation's plugin rules: `[runtimes.wasm]` checked (an unknown key, a wrong
    /// type, a zero or an unknown capability is an error naming the file, line and key).
    pub fn from_settings(settings: &Settings) -> Result<WasmSettings, ConfigError> {
        let raw = settings.runtime_section::<File>()?.runtimes.wasm;
        let d = WasmSettings::default();
        let positive = |v: Option<Spanned<u64>>, key: &str, default: u64| {
            settings.positive(v.map(|v| (v.span(), *v.get_ref())), key, default)
        };
        let dir = match raw.dir {
            None => d.dir,
            Some(s) if s.get_ref().trim().is_empty() => {
                return Err(settings.error_at(s.span(), "runtimes.wasm.dir must not be empty"))
            }
            Some(s) => s.into_inner(),
        };
        // A memory above the cap is named where it is written, else where the cap is.
        let memory_span = raw.memory_mb.as_ref().or(raw.max_memory_mb.as_ref()).map(Spanned::span);
        let max_memory_mb = positive(raw.max_memory_mb, "runtimes.wasm.max_memory_mb", d.max_memory_mb)?;
        let memory_mb = positive(raw.memory_mb, "runtimes.wasm.memory_mb", d.memory_mb.min(max_memory_mb))?;
        if memory_mb > max_memory_mb {
            let span = memory_span.unwrap_or_default();
            return Err(settings.error_at(
                span,
                format!("runtimes.wasm.memory_mb ({memory_mb}) is above runtimes.wasm.max_memory_mb ({max_memory_mb})"),
            ));
        }
        let mut grants = BTreeMap::new();
        for (plugin, caps) in raw.grants {
            let mut list = Vec::new();
            for c in caps.into_inner() {
                if !CAPABILITIES.contains(&c.get_ref().as_str()) {
                    return Err(settings.error_at(
                        c.span(),
                        format!(
                            "runtimes.wasm.grants.{plugin}: unknown capability \"{}\" (capabilities: {})",
                            c.get_ref(),
                            CAPABILITIES.join(", ")
                        ),
                    ));
                }
                list.push(c.into_inner());
            }
            grants.insert(plugin, list);
        }
        Ok(WasmSettings {
            dir,
            timeout_ms: settings.limits.timeout_ms,
            max_timeout_ms: positive(raw.max_timeout_ms, "runtimes.wasm.max_timeout_ms", d.max_timeout_ms)?,
            memory_mb,
            max_memory_mb,
            max_input_bytes: positive(raw.max_input_bytes, "runtimes.wasm.max_input_bytes", d.max_input_bytes as u64)?
                as usize,
            max_answer_bytes: positive(
                raw.max_answer_bytes,
                "runtimes.wasm.max_answer_bytes",
                d.max_answer_bytes as u64,
            )? as usize,
            max_host_calls: positive(raw.max_host_calls, "runtimes.wasm.max_host_calls", d.max_host_calls as u64)?
                .min(u32::MAX as u64) as u32,
            fuel: raw.fuel.map(|f| positive(Some(f), "runtimes.wasm.fuel", 0)).transpose()?,
            cache: raw.cache.unwrap_or(d.cache),
            grants,
            reuse: raw.reuse.into_iter().map(Spanned::into_inner).collect(),
            instance_slots: match raw.instance_slots {
                None => d.instance_slots,
                Some(s) if *s.get_ref() > MAX_SLOTS => {
                    return Err(settings.error_at(
                        s.span(),
                        format!("runtimes.wasm.instance_slots is {}, at most {MAX_SLOTS}", s.get_ref()),
                    ))
                }
                Some(s) => *s.get_ref() as u32,
            },
        })
    }
}

/// The most instance slots: each reserves 6 GiB of address space (4 GiB and its guard).
const MAX_SLOTS: u64 = 4096;
