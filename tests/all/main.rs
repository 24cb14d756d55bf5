//! The integration tests of crmkit: one binary, one module per topic.

mod api;
mod cli;
mod common;
mod config;
mod demo;
mod dossier;
mod golden;
mod graph;
mod hooks;
mod index_model;
mod process;
mod scripting;
mod store;
mod transfer;
mod validation;
