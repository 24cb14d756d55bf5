//! crmkit's WebAssembly runtime: compiled plugins in an installation's `plugins/` folder
//! answer the process engine's hooks, sandboxed. Core does not depend on this crate; it
//! implements core's [`Handler`](crmkit_core::hooks::Handler) through its [`WasmProvider`]
//! like any other runtime. The contract a plugin is written against is plugins/ABI.md.
//!
//! A plugin is a folder `plugins/NAME/` holding `plugin.toml` and `NAME.wasm`; a binding
//! names one of its exports as `NAME.wasm::EXPORT`:
//!
//! ```toml
//! [[hooks]]
//! point = "deal.before_transition"
//! handler = "quote_guard.wasm::before_transition"
//! ```
//!
//! One wasmtime engine serves every plugin of an installation; each module is checked
//! against its manifest and ABI version 1, compiled once (or taken from the sealed cache of
//! compiled code) and linked with the imports it is granted. Each call runs in a fresh
//! instance under its limits: an epoch deadline, a memory cap, caps on input and answer
//! size and on host calls, and fuel when configured.

mod abi;
mod cache;
mod call;
mod check;
mod host;
mod imports;
mod inspect;
mod install;
mod manifest;
mod provider;
mod settings;

pub use abi::{pack, supported, unpack, CAPABILITIES, MARKER_PREFIX, NAMESPACE, SUPPORTED};
pub use host::{Compiled, Plugin, PluginError, PluginHost, PluginStatus};
pub use inspect::{inspect, Inspection};
pub use install::install;
pub use manifest::Manifest;
pub use provider::{split_handler, PluginHandler, WasmProvider, RUNTIME};
pub use settings::WasmSettings;
