//! `crmkit serve`: the CRM over HTTP — hyper 1 on tokio, HTTP/1.1 and HTTP/2, bearer
//! tokens, JSON errors, graceful shutdown on SIGINT and SIGTERM.

use std::sync::Arc;

use crmkit_core::Installation;

use crate::token::Token;

/// What every request handler shares.
struct App {
    inst: Arc<Installation>,
    /// The API tokens, as `data/tokens.jsonl` has them; admins change both at once.
    tokens: std::sync::RwLock<Vec<Token>>,
    /// Held while the tokens file is written, so that requests only wait for the swap.
    token_writes: std::sync::Mutex<()>,
    writer: writer::Writer,
    scripts: Arc<crmkit_rhai::ScriptHost>,
    /// The installation's reports (its report scripts).
    reports: crmkit_core::report::Reports,
    /// The hook bindings in force and the engine calling them (writes and imports), which
    /// `POST /api/v1/scripts/reload` replaces.
    bound: Arc<crate::script::Bound>,
    /// Held while an import runs: one at a time.
    importing: Arc<tokio::sync::Mutex<()>>,
    /// Seals the cursors of lists.
    cursors: cursor::Cursors,
    /// What `GET /metrics` reports.
    metrics: metrics::Metrics,
    /// The web page's sessions and sign-in attempts.
    web: web::Web,
}

/// Where uploads wait until they are whole: `data/uploads`, emptied when a server starts.
fn uploads_dir(app: &App) -> std::path::PathBuf {
    app.inst.dir().join("data").join("uploads")
}

mod access;
mod admin;
mod auth;
mod body;
mod claims;
mod cursor;
mod deals;
mod dossier;
mod entities;
mod error;
mod files;
mod framing;
mod import;
mod loyalty;
mod metrics;
mod reports;
mod router;
mod serve;
mod strategies;
mod tasks;
mod web;
mod writer;

// What the handlers share, each reached from them as `super::…`.
pub(crate) use access::Caller;
use auth::{admin_only, may_write};
pub(crate) use body::Body;
use body::{action_request, body_json, empty, full, json_response, next_piece, query, BODY_TIMEOUT};
use error::{ApiError, Code};
use router::parse_id;
pub use serve::{serve, serve_then, Served};
