//! The integration tests of crmkit: one binary, one module per topic, a test target of the
//! `crmkit` package (server/Cargo.toml) so that Cargo builds the binary the CLI tests run.

mod analytics;
mod analytics_clients;
mod analytics_lost;
mod analytics_model;
pub(crate) mod api;
mod beside;
mod claims;
mod cli;
mod client;
mod commands;
mod common;
mod config;
mod deal_documents;
mod deal_heads;
mod demo;
mod document_rows;
mod dossier;
mod funnel_totals;
mod golden;
mod graph;
mod hooks;
mod hostile;
mod index_model;
mod interaction_rows;
mod loyalty;
mod operations;
mod ops;
mod plans;
mod plugin_cli;
mod plugin_examples;
mod process;
mod progress;
mod refusals;
mod scan_rows;
mod score;
mod script_tools;
mod scripting;
#[path = "../../plugins/wasm/tests/support/skeleton.rs"]
mod skeleton;
mod store;
mod strategy;
mod transfer;
mod validation;
mod wasm;
mod web;
