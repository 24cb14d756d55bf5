//! The composed reads of one partner or one deal: a partner's dossier and a deal's file,
//! each from one snapshot and scoped to the caller.

use crmkit_core::id::DealId;
use crmkit_core::model::Deal;
use hyper::{Response, StatusCode};

use super::{access, entities, json_response, parse_id, query, ApiError, App, Body, Caller, Code};

/// `GET /api/v1/partners/{id}/dossier`: everything about a partner the caller may see.
pub(super) fn get_dossier(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, ApiError> {
    let id: crmkit_core::id::PartnerId = parse_id("partner", id)?;
    let r = app.inst.store().read()?;
    entities::visible::<crmkit_core::model::Partner>(&r, caller, id.0)?;
    let options =
        crmkit_core::dossier::DossierOptions { classes: Some(app.inst.client_classes()?), ..Default::default() };
    let mut d = crmkit_core::dossier::dossier(&r, id, options)?;
    access::scope_dossier(&r, caller, &mut d)?;
    Ok(json_response(StatusCode::OK, &serde_json::to_value(&d).expect("a dossier serializes")))
}

/// `GET /api/v1/deals/{id}/file?kinds=&from=&to=&offset=&limit=`: a deal with its
/// participants and, in time order, its stage changes, interactions, documents, tasks and
/// attachments.
pub(super) fn get_deal_file(app: &App, caller: &Caller, id: &str, q: &str) -> Result<Response<Body>, ApiError> {
    use crmkit_core::deal_file::{FileQuery, ItemKind};
    let id: DealId = parse_id("deal", id)?;
    let q = query(q)?;
    let bad = |field: &str, m: String| ApiError::at(StatusCode::BAD_REQUEST, Code::BadQuery, field, m);
    let mut fq = FileQuery { limit: entities::page_limit(&q)?, ..FileQuery::default() };
    if let Some(kinds) = q.get("kinds") {
        for k in kinds.split(',').filter(|k| !k.is_empty()) {
            fq.kinds
                .push(ItemKind::from_name(k).ok_or_else(|| bad("kinds", format!("\"{k}\" is not a kind of item")))?);
        }
    }
    for (field, slot) in [("from", &mut fq.from), ("to", &mut fq.to)] {
        if let Some(at) = q.get(field) {
            let t = crmkit_core::time::Timestamp::parse(at)
                .map_err(|_| bad(field, format!("\"{at}\" is not an instant like 2026-06-30T10:00:00Z")))?;
            *slot = Some(t);
        }
    }
    if let Some(o) = q.get("offset") {
        fq.offset = o.parse().map_err(|_| bad("offset", format!("\"{o}\" is not a number")))?;
    }
    let r = app.inst.store().read()?;
    entities::visible::<Deal>(&r, caller, id.0)?;
    let file = crmkit_core::deal_file::deal_file(&r, id, &fq)?;
    Ok(json_response(StatusCode::OK, &serde_json::to_value(&file).expect("a deal file serializes")))
}
