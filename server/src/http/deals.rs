//! The actions on a deal (move, check, hold, resume, win, lose, reopen), each a write
//! through the process engine against the version the caller read.

use crmkit_core::id::DealId;
use crmkit_core::model::Deal;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{action_request, entities, ApiError, App, Body, Caller};

/// The body of a deal action: the version the caller read, and what the action needs.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DealAction {
    /// The version acted on (or `If-Match`).
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    competitor: Option<crmkit_core::id::PartnerId>,
    /// `check`: the checklist item, and whether it is done (default: done).
    #[serde(default)]
    item: Option<String>,
    #[serde(default)]
    done: Option<bool>,
}

/// `POST /api/v1/deals/{id}/{move|check|hold|resume|win|lose|reopen}` with
/// `{ "version": N, … }`: a stale version is a 409.
pub(super) async fn deal_action(
    app: &App,
    caller: &Caller,
    id: &str,
    action: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    use crmkit_core::process::Outcome;
    const ACTIONS: [&str; 7] = ["move", "check", "hold", "resume", "win", "lose", "reopen"];
    let (id, header, a): (DealId, _, DealAction) = action_request(caller, "deal", id, action, &ACTIONS, req).await?;
    let version = entities::version_named(header, a.version)?;
    let action = action.to_string();
    let caller = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            entities::writable::<Deal>(&*tx, &caller, id.0)?;
            if let Some(c) = a.competitor {
                use crmkit_core::model::EntityKind;
                entities::hidden_as_absent(&*tx, &caller, EntityKind::Deal, "competitor", EntityKind::Partner, c.0)?;
            }
            let v = version;
            let required = |field: &str, what: &str| {
                crmkit_core::model::FieldError::new(
                    crmkit_core::model::EntityKind::Deal,
                    field,
                    format!("is required to {what}"),
                )
            };
            let d = match action.as_str() {
                "move" => {
                    let stage = a.stage.as_deref().ok_or_else(|| required("stage", "move a deal"))?;
                    engine.move_deal(tx, id, v, stage, a.comment.as_deref())?
                }
                "check" => {
                    let item = a.item.as_deref().ok_or_else(|| required("item", "check a checklist item"))?;
                    engine.set_checked(tx, id, v, item, a.done.unwrap_or(true))?
                }
                "hold" => engine.hold(tx, id, v, a.comment.as_deref().unwrap_or(""))?,
                "resume" => engine.resume(tx, id, v, a.comment.as_deref().unwrap_or(""))?,
                "win" => engine.close(tx, id, v, Outcome::Won { comment: a.comment.unwrap_or_default() })?,
                "lose" => engine.close(
                    tx,
                    id,
                    v,
                    Outcome::Lost {
                        reason: a.reason.unwrap_or_default(),
                        competitor: a.competitor,
                        comment: a.comment.unwrap_or_default(),
                    },
                )?,
                _ => engine.reopen(tx, id, v, a.stage.as_deref(), a.comment.as_deref().unwrap_or(""))?,
            };
            Ok(serde_json::to_value(&d).expect("entities serialize"))
        })
        .await?;
    Ok(entities::entity_response(StatusCode::OK, &done))
}
