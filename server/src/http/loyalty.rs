//! The operations on loyalty cards — redeem, correct, block, reissue — each a write through
//! the process engine; a card's ledger; and the expiry run.

use chrono::NaiveDate;
use crmkit_core::id::{DocumentId, LoyaltyCardId};
use crmkit_core::model::{LoyaltyCard, LoyaltyEntry, Role};
use crmkit_core::store::{Index, Reader};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rust_decimal::Decimal;
use serde::Deserialize as _;
use serde_json::json;

use super::{action_request, entities, json_response, parse_id, query, ApiError, App, Body, Caller, Code};

/// The body of a card operation: what each needs.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CardAction {
    /// `block`, `reissue`: the card's version read (or `If-Match`).
    #[serde(default)]
    version: Option<u64>,
    /// `redeem`: the points spent; `correct`: the points added (negative: taken).
    #[serde(default, deserialize_with = "decimal")]
    points: Option<Decimal>,
    /// `correct`: the turnover added (negative: taken).
    #[serde(default, deserialize_with = "decimal")]
    turnover: Option<Decimal>,
    /// `redeem`: the purchase the points pay.
    #[serde(default)]
    document: Option<DocumentId>,
    /// `redeem`: a note; `correct`: the reason (required).
    #[serde(default)]
    comment: Option<String>,
    /// `block`: why.
    #[serde(default)]
    reason: Option<String>,
    /// `reissue`: the new card's number and codes, issue and expiry days.
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    barcode: Option<String>,
    #[serde(default)]
    magnetic_code: Option<String>,
    #[serde(default, deserialize_with = "crmkit_core::values::date::input::optional")]
    issued: Option<NaiveDate>,
    #[serde(default, deserialize_with = "crmkit_core::values::date::input::optional")]
    expires: Option<NaiveDate>,
}

/// A decimal written as text (`"12.50"`, as the API writes amounts) or as a JSON number.
pub(super) fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    use std::str::FromStr;
    let v = serde_json::Value::deserialize(d)?;
    let text = match &v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "{other} is not a decimal (text like \"12.50\", or a number)"
            )))
        }
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("\"{text}\" is not a decimal")))
}

/// The actions a card takes.
pub(super) const ACTIONS: [&str; 4] = ["redeem", "correct", "block", "reissue"];

/// `POST /api/v1/loyalty-cards/{id}/{redeem|correct|block|reissue}`: redeem and correct
/// answer the ledger entry written (corrections are admins' and heads'), block and reissue
/// the card (the new one for a reissue) and take the version read.
pub(super) async fn card_action(
    app: &App,
    caller: &Caller,
    id: &str,
    action: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (id, header, a): (LoyaltyCardId, _, CardAction) =
        action_request(caller, "loyalty card", id, action, &ACTIONS, req).await?;
    let needs_version = matches!(action, "block" | "reissue");
    let version = if needs_version { Some(entities::version_named(header, a.version)?) } else { None };
    let action = action.to_string();
    let caller = caller.clone();
    let status = if action == "block" { StatusCode::OK } else { StatusCode::CREATED };
    let done = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            card_step(engine, tx, &caller, id, &action, &a, version)
        })
        .await?;
    Ok(entities::entity_response(status, &done))
}

/// Card `id`'s operation `action` (of [`ACTIONS`]) as `caller`: the ledger entry a redeem or
/// a correction writes, the card a block changes, the new card of a reissue. Corrections
/// are admins' and heads'. The API's and the web page's.
pub(super) fn card_step(
    engine: &crmkit_core::process::Engine,
    tx: &mut crmkit_core::store::WriteTxn<'_>,
    caller: &Caller,
    id: LoyaltyCardId,
    action: &str,
    a: &CardAction,
    version: Option<u64>,
) -> crmkit_core::Result<serde_json::Value> {
    if action == "correct" && !matches!(caller.role, Role::Admin | Role::Head) {
        return Err(crmkit_core::Error::Forbidden("correcting a card's points is for admins and heads".into()));
    }
    let card: LoyaltyCard = entities::writable(&*tx, caller, id.0)?;
    let required = |field: &str, what: &str| {
        crmkit_core::model::FieldError::new(
            crmkit_core::model::EntityKind::LoyaltyEntry,
            field,
            format!("is required to {what}"),
        )
    };
    let version = |what: &str| {
        version.ok_or_else(|| {
            crmkit_core::model::FieldError::new(
                crmkit_core::model::EntityKind::LoyaltyCard,
                "version",
                format!("is required to {what} a card: the version read"),
            )
        })
    };
    Ok(match action {
        "redeem" => {
            let points = a.points.ok_or_else(|| required("points", "redeem points"))?;
            if let Some(d) = a.document {
                use crmkit_core::model::EntityKind;
                entities::hidden_as_absent(
                    &*tx,
                    caller,
                    EntityKind::LoyaltyEntry,
                    "document",
                    EntityKind::Document,
                    d.0,
                )?;
            }
            let e = engine.redeem(tx, id, points, a.document, a.comment.as_deref().unwrap_or(""))?;
            entities::to_json(&e)
        }
        "correct" => {
            let points = a.points.unwrap_or_default();
            let turnover = a.turnover.unwrap_or_default();
            let comment = a.comment.as_deref().unwrap_or("");
            let e = engine.correct(tx, id, points, turnover, comment)?;
            entities::to_json(&e)
        }
        "block" => {
            let c = engine.block(tx, id, version("block")?, a.reason.as_deref().unwrap_or(""))?;
            entities::to_json(&c)
        }
        _ => {
            let v = version("reissue")?;
            let number = a.number.clone().ok_or_else(|| {
                crmkit_core::model::FieldError::new(
                    crmkit_core::model::EntityKind::LoyaltyCard,
                    "number",
                    "is required to reissue a card: the new card's number",
                )
            })?;
            let today = tx.now().date();
            let partner = card.partner.unwrap_or_default();
            let mut new = LoyaltyCard::new(number, card.program, partner, a.issued.unwrap_or(today));
            new.barcode = a.barcode.clone();
            new.magnetic_code = a.magnetic_code.clone();
            new.expires = a.expires.or(card.expires);
            let c = engine.reissue(tx, id, v, new)?;
            entities::to_json(&c)
        }
    })
}

/// `GET /api/v1/loyalty-cards/{id}/ledger?after=&limit=`: the card's entries, oldest first,
/// with the card's balance and turnover.
pub(super) fn ledger(app: &App, caller: &Caller, id: &str, q: &str) -> Result<Response<Body>, ApiError> {
    let q = query(q)?;
    let limit = entities::page_limit(&q)?;
    let id: LoyaltyCardId = parse_id("loyalty card", id)?;
    let list = format!("loyalty-cards/{id}/ledger");
    let after = entities::after(app, &list, &q)?;
    let r = app.inst.store().read()?;
    let card: LoyaltyCard = entities::visible(&r, caller, id.0)?;
    use crmkit_core::id::TypedId;
    let mut items: Vec<LoyaltyEntry> =
        r.find(Index::LoyaltyEntryByCard, &card.id.raw().to_bytes(), after, limit + 1)?;
    let mut next = None;
    if items.len() > limit {
        items.truncate(limit);
        next = items.last().map(|e| entities::seal(app, &list, e.id.0)).transpose()?;
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "card": card.id,
            "number": card.number,
            "status": card.status,
            "balance": card.balance.to_string(),
            "turnover": card.turnover.to_string(),
            "entries": card.entries,
            "items": items,
            "next": next,
        }),
    ))
}

/// `POST /api/v1/loyalty/expire?date=YYYY-MM-DD` (admins): expires cards past their last
/// day and points past their program's days, as of `date` (today by default).
pub(super) async fn expire(app: &App, caller: &Caller, q: &str) -> Result<Response<Body>, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, "the expiry run is for admins"));
    }
    let q = query(q)?;
    let date = match q.get("date") {
        Some(d) => Some(crmkit_core::values::date::parse(d).map_err(|m| {
            ApiError::at(StatusCode::BAD_REQUEST, Code::BadQuery, "date", format!("date \"{d}\": {m}"))
        })?),
        None => None,
    };
    let caller = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            let today = date.unwrap_or_else(|| tx.now().date());
            let e = engine.expire(tx, today)?;
            Ok(json!({
                "date": today,
                "cards": e.cards,
                "cards_expired": e.cards_expired,
                "entries": e.entries,
                "points": e.points.to_string(),
            }))
        })
        .await?;
    Ok(json_response(StatusCode::OK, &done))
}
