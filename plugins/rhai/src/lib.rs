//! crmkit's Rhai runtime: `.rhai` files in an installation's `scripts/` folder answer the
//! process engine's hooks. Core does not depend on this crate; it implements core's
//! [`Handler`](crmkit_core::hooks::Handler) through its
//! [`RhaiProvider`] like any other handler.
//!
//! A binding names a script function as `FILE::FUNCTION`, the file relative to `scripts/`:
//!
//! ```toml
//! [[hooks]]
//! point = "deal.before_transition"
//! handler = "guards.rhai::quote_before_leaving_proposal"
//! ```
//!
//! One [`rhai::Engine`] serves every script of an installation; each file is compiled once
//! and kept until it changes ([`ScriptHost::reload_changed`]). A call runs under the
//! installation's limits (`[limits]` and `[runtimes.rhai]`), which a binding may change: operations and wall
//! time are counted per call, call depth, expression depth and the sizes of strings, arrays
//! and maps per engine. Scripts have no file system, network or process access; `eval` is
//! not part of the language they are compiled with, and `import` reaches only `scripts/`.

mod api;
mod host;
mod input;
pub mod report;
mod scan;
mod settings;

pub use api::signatures;
pub use host::{RhaiProvider, ScriptError, ScriptHandler, ScriptHost, ScriptStatus, RUNTIME};
pub use input::{context_from_json, InputError};
pub use report::RhaiReports;
pub use settings::RhaiSettings;
