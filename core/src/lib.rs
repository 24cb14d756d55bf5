//! crmkit-core: the CRM engine as a library — the domain model, the store with its indexes
//! and audit log (on a redb file or in memory), configuration, the process engine and its
//! hooks, reports, import and export.
//!
//! Architecture invariant: this crate knows nothing of HTTP, async runtimes, Rhai or
//! wasmtime. Extensions reach it through data-only interfaces.

pub mod analytics;
pub mod audit;
pub mod config;
pub mod deal_file;
pub mod dossier;
mod error;
pub mod graph;
pub mod hooks;
pub mod id;
pub mod installation;
#[cfg(test)]
mod layers;
pub mod merge;
pub mod model;
pub mod process;
pub mod progress;
pub mod report;
pub mod store;
pub mod strategy;
pub mod time;
pub mod transfer;
pub mod values;

pub use error::{Error, Result};
pub use installation::Installation;
