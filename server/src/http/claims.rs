//! The steps of a claim — review, postpone, decide, close, reopen — each a write through the
//! process engine, with the version the caller read.

use chrono::NaiveDate;
use crmkit_core::id::ClaimId;
use crmkit_core::model::{Claim, Decision, EntityKind, FieldError};
use crmkit_core::store::Reader as _;
use crmkit_core::values::{Currency, Money};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rust_decimal::Decimal;

use super::{action_request, entities, ApiError, App, Body, Caller};

/// The body of a claim step: what each needs.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// The claim's version read (or `If-Match`).
    #[serde(default)]
    version: Option<u64>,
    /// `review`, `close`: a comment.
    #[serde(default)]
    comment: Option<String>,
    /// `postpone`, `reopen`: why (required).
    #[serde(default)]
    reason: Option<String>,
    /// `postpone`: the day the answer is put off to.
    #[serde(default, deserialize_with = "crmkit_core::values::date::input::optional")]
    until: Option<NaiveDate>,
    /// `decide`: `satisfied`, `partly_satisfied` or `rejected`.
    #[serde(default)]
    decision: Option<Decision>,
    /// `decide`: the amount settled, in the claim's currency (`currency` for a claim that
    /// names no amount; the installation's default currency otherwise).
    #[serde(default, deserialize_with = "super::loyalty::decimal")]
    settled: Option<Decimal>,
    #[serde(default)]
    currency: Option<String>,
    /// `decide`: the reply to the client (required).
    #[serde(default)]
    reply: Option<String>,
}

/// The steps a claim takes.
pub(super) const ACTIONS: [&str; 5] = ["review", "postpone", "decide", "close", "reopen"];

fn required(field: &str, what: &str) -> FieldError {
    FieldError::new(EntityKind::Claim, field, format!("is required to {what}"))
}

/// `POST /api/v1/claims/{id}/{review|postpone|decide|close|reopen}` with the version read
/// (`version` or `If-Match`): answers the claim with the step appended.
pub(super) async fn claim_action(
    app: &App,
    caller: &Caller,
    id: &str,
    action: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (id, header, a): (ClaimId, _, Step) = action_request(caller, "claim", id, action, &ACTIONS, req).await?;
    let version = entities::version_named(header, a.version)?;
    let action = action.to_string();
    let caller = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            let claim: Claim = entities::writable(&*tx, &caller, id.0)?;
            let comment = a.comment.as_deref().unwrap_or("");
            let c = match action.as_str() {
                "review" => engine.review_claim(tx, id, version, comment)?,
                "postpone" => {
                    let until = a.until.ok_or_else(|| required("postponed_until", "postpone a claim (\"until\")"))?;
                    engine.postpone_claim(tx, id, version, until, a.reason.as_deref().unwrap_or(""))?
                }
                "decide" => {
                    let decision = a.decision.ok_or_else(|| required("decision", "decide a claim"))?;
                    let settled = match a.settled {
                        None => None,
                        Some(amount) => {
                            let currency = match (&a.currency, &claim.claimed) {
                                (Some(c), _) => Currency::parse(c)
                                    .map_err(|e| FieldError::new(EntityKind::Claim, "currency", e.to_string()))?,
                                (None, Some(m)) => m.currency,
                                (None, None) => tx.settings().default_currency,
                            };
                            Some(Money::new(amount, currency))
                        }
                    };
                    engine.decide_claim(tx, id, version, decision, settled, a.reply.as_deref().unwrap_or(""))?
                }
                "close" => engine.close_claim(tx, id, version, comment)?,
                _ => engine.reopen_claim(tx, id, version, a.reason.as_deref().unwrap_or(""))?,
            };
            Ok(entities::to_json(&c))
        })
        .await?;
    Ok(entities::entity_response(StatusCode::OK, &done))
}
