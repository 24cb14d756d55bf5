//! What config says about hooks: which handler of which runtime runs at a point, for which
//! process kinds, and the time it may take.

use serde::Serialize;

use super::point::HookPoint;

/// A hook binding (`[[hooks]]`): run `handler` of `runtime` at `point`, for the listed
/// process kinds (all when empty). Bindings of one point run in file order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookBinding {
    pub point: HookPoint,
    pub handler: String,
    /// The runtime that provides the handler: given in config, or by [`runtime_of`].
    pub runtime: String,
    pub kinds: Vec<String>,
    /// Limits of this binding's calls where they differ from the installation's.
    pub limits: CallLimits,
    /// Where the binding is written (`config/crmkit.toml:98`), for messages.
    #[serde(skip)]
    pub origin: String,
}

impl HookBinding {
    /// A binding of `handler` at `point` for every process kind, its runtime by [`runtime_of`].
    pub fn new(point: HookPoint, handler: &str) -> HookBinding {
        HookBinding {
            point,
            handler: handler.to_string(),
            runtime: runtime_of(handler).to_string(),
            kinds: Vec::new(),
            limits: CallLimits::default(),
            origin: "(program)".to_string(),
        }
    }
}

/// The runtime a handler name implies when config does not say: `FILE.rhai::FUNCTION` is a
/// Rhai script function, `FILE.wasm::EXPORT` a WASM plugin's export, anything else a native
/// handler the embedding program registers.
pub fn runtime_of(handler: &str) -> &'static str {
    match handler.rsplit_once("::") {
        Some((file, f)) if !f.is_empty() && file.ends_with(".rhai") => "rhai",
        Some((file, f)) if !f.is_empty() && file.ends_with(".wasm") => "wasm",
        _ => super::registry::NATIVE,
    }
}

/// Per-call limits a binding may tighten or loosen: `None` keeps the installation's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallLimits {
    /// Wall-clock time a call may take, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The work a call may do, in its runtime's unit: Rhai operations (statements,
    /// expressions, calls), WASM fuel.
    pub max_operations: Option<u64>,
}

/// What every runtime's calls may take, for the whole installation (`[limits]`); each
/// runtime's own limits (operations, fuel, memory, sizes) are in its section of config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Wall-clock time a hook call may take, in milliseconds.
    pub timeout_ms: u64,
    /// Wall-clock time a report may take, in milliseconds.
    pub report_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout_ms: 20, report_timeout_ms: 60_000 }
    }
}
