//! `GET /api/v1/strategies`: the strategies config gives each segment, how many of the
//! caller's client partners are in each, and the last run; `POST /api/v1/strategies/run`
//! (admins): a run, applied with `apply=true`; and the server's own runs on the schedule of
//! `[strategy] run_every_hours`.

use std::sync::Arc;

use crmkit_core::model::{Partner, PartnerRole, Role};
use crmkit_core::strategy::{self, Summary};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::access::Caller;
use super::{json_response, query, ApiError, App, Body, Code};

/// `GET /api/v1/strategies`.
pub(super) fn get(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, &overview(app, caller)?))
}

/// The strategies, how many client partners are in each segment — a manager's own (those
/// they manage), those of a head's department's managers, every one for admins and
/// viewers — and the last run: the API's answer and the web page's. A manager's and a
/// head's counts read their partners by manager, not every partner.
pub(super) fn overview(app: &App, caller: &Caller) -> Result<serde_json::Value, ApiError> {
    use crmkit_core::id::TypedId;
    use crmkit_core::model::User;
    use crmkit_core::store::{Index, Reader};
    let r = app.inst.store().read()?;
    let mut segments = std::collections::BTreeMap::<String, u64>::new();
    let mut count = |p: &Partner| {
        if p.has_role(PartnerRole::Client) {
            *segments.entry(p.segment.clone().unwrap_or_default()).or_default() += 1;
        }
    };
    let managers: Option<Vec<crmkit_core::id::UserId>> = match caller.role {
        Role::Admin | Role::Viewer => None,
        Role::Manager => Some(vec![caller.user.id]),
        Role::Head => {
            let mut ids = Vec::new();
            r.for_each::<User>(|u| {
                ids.push(u.id);
                true
            })?;
            let mut covered = Vec::new();
            for id in ids {
                if caller.covers(&r, id)? {
                    covered.push(id);
                }
            }
            Some(covered)
        }
    };
    match managers {
        None => r.for_each::<Partner>(|p| {
            count(&p);
            true
        })?,
        Some(ids) => {
            for m in ids {
                for p in r.find::<Partner>(Index::PartnerByManager, &m.raw().to_bytes(), None, usize::MAX)? {
                    count(&p);
                }
            }
        }
    }
    let last = crate::strategy::last_run(&app.inst).map_err(|e| ApiError::internal("the last strategy run", e))?;
    Ok(json!({ "strategies": app.inst.settings().strategies, "segments": segments, "last_run": last }))
}

/// Evaluates on a snapshot (on the blocking pool) and, applying, writes through the writer
/// as `actor`; keeps and answers the summary.
pub(super) async fn run_now(
    app: Arc<App>,
    actor: Option<(crmkit_core::id::UserId, Role)>,
    apply: bool,
) -> Result<Summary, ApiError> {
    let engine = app.bound.engine();
    let reading = app.clone();
    let ev = tokio::task::spawn_blocking(move || crate::strategy::evaluate(&reading.inst, &engine))
        .await
        .map_err(|e| ApiError::internal("a strategy run stopped", e))?
        .map_err(|e| ApiError::internal("the strategy run", e))?;
    let ev = Arc::new(ev);
    let written = if apply {
        let ev = ev.clone();
        let w = app
            .writer
            .write(actor, move |engine, tx| {
                let applied = strategy::apply(tx, engine, &ev)?;
                Ok(serde_json::to_value(applied).expect("a summary serializes"))
            })
            .await?;
        Some(serde_json::from_value(w).map_err(|e| ApiError::internal("the strategy run", e))?)
    } else {
        None
    };
    let summary = Summary::of(&ev, written, app.inst.store().clock().now());
    crate::strategy::keep(&app.inst, &summary).map_err(|e| ApiError::internal("keeping the strategy run", e))?;
    Ok(summary)
}

/// `POST /api/v1/strategies/run?apply=true|false` (admins).
pub(super) async fn run(app: &Arc<App>, caller: &Caller, q: &str) -> Result<Response<Body>, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, "running the strategies is for admins"));
    }
    let q = query(q)?;
    let apply = match q.get("apply").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadQuery,
                "apply",
                format!("apply \"{other}\" is not true or false"),
            ))
        }
    };
    let summary = run_now(app.clone(), Some((caller.user.id, caller.role)), apply).await?;
    Ok(json_response(StatusCode::OK, &json!(summary)))
}

/// Runs the strategies, applying, `every` so often (the first run `every` after the
/// server starts) until `stopping` says so.
pub(super) async fn schedule(
    app: Arc<App>,
    every: std::time::Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        match run_now(app.clone(), None, true).await {
            Ok(s) => tracing::info!(
                partners = s.partners,
                changed = s.changed,
                overdue = s.overdue,
                tasks = s.written.as_ref().map_or(0, |w| w.tasks_created),
                faults = s.faults.len(),
                "strategies run"
            ),
            Err(e) => tracing::warn!("the scheduled strategy run failed: {}", e.into_core()),
        }
    }
}
