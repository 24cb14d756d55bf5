//! Tasks as their executors see them: mine, overdue, and completing or cancelling one.

use crmkit_core::id::TaskId;
use crmkit_core::model::{Role, Task, TaskStatus};
use crmkit_core::store::{Index, Reader};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::access::Caller;
use super::entities::{self, page_limit};
use super::{json_response, query, ApiError, App, Body, Code};

/// `GET /api/v1/tasks/mine?status=open|done|cancelled&after=&limit=`: the caller's tasks
/// in one status (open by default), oldest first.
pub fn mine(app: &App, caller: &Caller, q: &str) -> Result<Response<Body>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(&q)?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("open") => TaskStatus::Open,
        Some("done") => TaskStatus::Done,
        Some("cancelled") => TaskStatus::Cancelled,
        Some(other) => {
            return Err(ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadQuery,
                "status",
                format!("status \"{other}\" is not open, done or cancelled"),
            ))
        }
    };
    let after = entities::after(app, "tasks/mine", &q)?;
    let r = app.inst.store().read()?;
    let prefix = crmkit_core::model::task_executor_prefix(caller.user.id, status);
    let mut items: Vec<Task> = r.find(Index::TaskByExecutor, &prefix, after, limit + 1)?;
    let mut next = None;
    if items.len() > limit {
        items.truncate(limit);
        next = items.last().map(|t| entities::seal(app, "tasks/mine", t.id.0)).transpose()?;
    }
    Ok(json_response(StatusCode::OK, &json!({ "items": items, "next": next })))
}

/// `GET /api/v1/tasks/overdue?limit=`: open tasks past their due time, the most overdue
/// first — a manager's own, a head's department's, everyone's for admins and viewers.
pub fn overdue(app: &App, caller: &Caller, q: &str) -> Result<Response<Body>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(&q)?;
    let r = app.inst.store().read()?;
    let now = app.inst.store().clock().now();
    // Everyone's for admins and viewers; otherwise the open tasks of the people the caller
    // covers (themselves, or their department), the overdue ones.
    let mut items: Vec<Task> = match caller.role {
        Role::Admin | Role::Viewer => r.overdue_tasks(now, limit)?,
        Role::Manager | Role::Head => {
            let mut people = vec![caller.user.id];
            if caller.role == Role::Head && caller.user.department.is_some() {
                r.for_each::<crmkit_core::model::User>(|u| {
                    if u.department == caller.user.department && u.id != caller.user.id {
                        people.push(u.id);
                    }
                    true
                })?;
            }
            let mut overdue = Vec::new();
            for who in people {
                let open = r.tasks_of(who, TaskStatus::Open, usize::MAX)?;
                overdue.extend(open.into_iter().filter(|t| t.is_overdue(now)));
            }
            overdue.sort_by_key(|t| (t.due, t.id));
            overdue
        }
    };
    items.truncate(limit);
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    #[serde(default)]
    version: Option<u64>,
}

/// Completes (or cancels) task `id` as `caller`: its executor finishes a task they can
/// see, whatever the deal; someone else needs a role the process settings allow — the role
/// the caller acts in. The API's and the web page's one rule.
pub fn finish_task(
    engine: &crmkit_core::process::Engine,
    tx: &mut crmkit_core::store::WriteTxn<'_>,
    caller: &Caller,
    id: TaskId,
    version: u64,
    complete: bool,
) -> crmkit_core::Result<Task> {
    let task: Task = entities::visible(&*tx, caller, id.0)?;
    let others = &tx.settings().process.complete_others_tasks;
    if task.executor != caller.user.id && !others.contains(&caller.role) {
        return Err(crmkit_core::Error::Forbidden(format!(
            "task {id} is another user's; finishing it takes one of the roles in process.complete_others_tasks"
        )));
    }
    match complete {
        true => engine.complete_task(tx, id, version),
        false => engine.cancel_task(tx, id, version),
    }
}

/// `POST /api/v1/tasks/{id}/complete|cancel` with `{ "version": N }` or `If-Match`: its
/// executor may, and the roles the process settings allow; completing a stage's task may
/// move its deal on.
pub async fn finish(
    app: &App,
    caller: &Caller,
    id: &str,
    action: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (id, header, f): (TaskId, _, Finish) =
        super::action_request(caller, "task", id, action, &["complete", "cancel"], req).await?;
    let complete = action == "complete";
    let version = entities::version_named(header, f.version)?;
    let caller = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            let t = finish_task(engine, tx, &caller, id, version, complete)?;
            Ok(entities::to_json(&t))
        })
        .await?;
    Ok(entities::entity_response(StatusCode::OK, &done))
}
