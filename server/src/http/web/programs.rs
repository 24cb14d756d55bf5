//! Loyalty cards (found by number; a card's page with its ledger, redeem, correct, block
//! and reissue), relationship strategies (the segments with the caller's clients in each,
//! the last run, a run for admins) and a claim registered from the page. Each form goes
//! through the API's own operation, so a refusal is the API's.

use std::sync::Arc;

use crmkit_core::id::{LoyaltyCardId, PartnerId, TypedId};
use crmkit_core::model::{Deal, DealStatus, LoyaltyCard, LoyaltyEntry, LoyaltyProgram, Partner, Role};
use crmkit_core::store::{Index, Reader};
use hyper::{Response, StatusCode};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::super::access::Access;
use super::super::{ApiError, App, Body};
use super::i18n::t;
use super::{pages, Form, Reply, Who};

/// Ledger entries shown on a card's page (the latest).
const LEDGER: usize = 200;

fn query_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string())
}

/// `/cards?q=`: cards found by their number, barcode or magnetic code, as the caller may
/// see them.
pub(super) fn cards(app: &Arc<App>, reply: Reply, who: Who<'_>, query: &str) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let q = query_value(query, "q").unwrap_or_default();
    let r = app.inst.store().read()?;
    let mut found: Vec<LoyaltyCard> = Vec::new();
    if !q.is_empty() {
        let key = crmkit_core::model::text_prefix(&[&q]);
        for index in [Index::LoyaltyCardByNumber, Index::LoyaltyCardByBarcode, Index::LoyaltyCardByMagneticCode] {
            for c in r.find::<LoyaltyCard>(index, &key, None, 20)? {
                if !found.iter().any(|f| f.id == c.id) && caller.may(&r, Access::Read, &c)? {
                    found.push(c);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for c in found {
        let holder = match c.partner {
            Some(p) => r.get::<Partner>(p)?.map(|p| p.name).unwrap_or_default(),
            None => String::new(),
        };
        rows.push((c, holder));
    }
    let content = html! {
        h1 { (t(lang, "loyalty_cards")) }
        form.search method="get" action="/cards" {
            input type="search" name="q" value=(q) placeholder=(t(lang, "card_search_hint")) aria-label=(t(lang, "search"));
            button type="submit" { (t(lang, "search")) }
        }
        @if !q.is_empty() {
            section.card {
                @if rows.is_empty() { p.empty { (t(lang, "no_cards")) } } @else {
                    table.found {
                        thead { tr { th { (t(lang, "card_number")) } th { (t(lang, "partner")) } th { (t(lang, "status")) } th.num { (t(lang, "balance")) } } }
                        tbody {
                            @for (c, holder) in &rows {
                                tr { td { a href={ "/card/" (c.id) } { (c.number) } } td { (holder) } td { (c.status.name()) } td.num { (c.balance) } }
                            }
                        }
                    }
                }
            }
        }
    };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    Ok(reply.page(StatusCode::OK, t(lang, "loyalty_cards"), Some(&viewer), content))
}

/// A card's page: its facts, its latest ledger entries and the forms of its operations,
/// a refused one with its message at the form.
pub(super) fn card(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    id: LoyaltyCardId,
    refusal: Option<(pages::Refusal, StatusCode)>,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let r = app.inst.store().read()?;
    let Some(caller) = super::caller(&r, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let Some(c) = r.get::<LoyaltyCard>(id)? else { return Ok(super::not_found(reply)) };
    if !caller.may(&r, Access::Read, &c)? {
        return Ok(super::not_found(reply));
    }
    let program = r.get::<LoyaltyProgram>(c.program)?.map(|p| p.name).unwrap_or_default();
    let holder = match c.partner {
        Some(p) => r.get::<Partner>(p)?.map(|x| (p, x.name)),
        None => None,
    };
    let all = r.ids_by(Index::LoyaltyEntryByCard, &id.raw().to_bytes(), None, usize::MAX)?;
    let mut entries = Vec::new();
    for e in all.iter().rev().take(LEDGER) {
        entries.push(r.load::<LoyaltyEntry>(crmkit_core::id::LoyaltyEntryId(*e))?);
    }
    let may_act = role != Role::Viewer && caller.may(&r, Access::Write, &c)?;
    let may_correct = may_act && matches!(role, Role::Admin | Role::Head);
    let (refusal, status) = super::split(refusal);
    let form = |action: &str, fields: Markup| -> Markup {
        html! {
            form.action method="post" action={ "/card/" (c.id) "/" (action) } data-action=(action) {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="version" value=(c.version);
                (pages::refused(refusal.as_ref(), action))
                (fields)
                button type="submit" { (t(lang, &format!("card_{action}"))) }
            }
        }
    };
    let active = c.status.name() == "active";
    let content = html! {
        h1 { (t(lang, "loyalty_card")) " " (c.number) }
        section.card.card-head {
            table.facts {
                tbody {
                    tr { th { (t(lang, "program")) } td { (program) } }
                    tr { th { (t(lang, "partner")) } td { @if let Some((p, name)) = &holder { a href={ "/partner/" (p) } { (name) } } @else { "—" } } }
                    tr { th { (t(lang, "status")) } td.status { (c.status.name()) @if !c.status_note.is_empty() { " (" (c.status_note) ")" } } }
                    tr { th { (t(lang, "balance")) } td.balance { (c.balance) } }
                    tr { th { (t(lang, "turnover")) } td { (c.turnover) } }
                    tr { th { (t(lang, "issued")) } td { (c.issued) } }
                    @if let Some(e) = c.expires { tr { th { (t(lang, "expires")) } td { (e) } } }
                    @if let Some(b) = &c.barcode { tr { th { (t(lang, "barcode")) } td { (b) } } }
                    @if let Some(from) = c.reissued_from { tr { th { (t(lang, "reissued_from")) } td { a href={ "/card/" (from) } { (from) } } } }
                }
            }
        }
        @if may_act && active {
            section.card.actions {
                h2 { (t(lang, "actions")) }
                (form("redeem", html! {
                    input type="number" name="points" step="any" min="0" placeholder=(t(lang, "points")) aria-label=(t(lang, "points"));
                    input type="text" name="comment" maxlength="2000" placeholder=(t(lang, "comment"));
                }))
                @if may_correct {
                    (form("correct", html! {
                        input type="number" name="points" step="any" placeholder=(t(lang, "points")) aria-label=(t(lang, "points"));
                        input type="number" name="turnover" step="any" placeholder=(t(lang, "turnover")) aria-label=(t(lang, "turnover"));
                        input type="text" name="comment" maxlength="2000" placeholder=(t(lang, "reason"));
                    }))
                }
                (form("block", html! { input type="text" name="reason" maxlength="2000" placeholder=(t(lang, "reason")); }))
                (form("reissue", html! {
                    input type="text" name="number" placeholder=(t(lang, "new_card_number")) aria-label=(t(lang, "new_card_number"));
                    input type="date" name="expires" aria-label=(t(lang, "expires"));
                }))
            }
        }
        section.card.ledger {
            h2 { (t(lang, "ledger")) " (" (c.entries) ")" }
            table {
                thead { tr { th { (t(lang, "when")) } th { (t(lang, "kind")) } th.num { (t(lang, "points")) } th.num { (t(lang, "turnover")) } th.num { (t(lang, "balance")) } th { (t(lang, "comment")) } } }
                tbody {
                    @for e in &entries {
                        tr data-entry=(e.id) {
                            td.num { (e.date) } td { (e.kind.name()) } td.num { (e.points) } td.num { (e.turnover) } td.num { (e.balance) } td { (e.comment) }
                        }
                    }
                }
            }
        }
    };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    Ok(reply.page(status, &c.number, Some(&viewer), content))
}

/// A card's operation from its page, as the API's (`card_step`).
pub(super) async fn card_action(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    id: LoyaltyCardId,
    action: &str,
    form: &Form,
) -> Result<Response<Body>, ApiError> {
    let (login, role, _) = who;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    if !super::super::loyalty::ACTIONS.contains(&action) {
        return Ok(super::not_found(reply));
    }
    // The form's fields as the API's body: text, read as the API reads it.
    let mut body = Map::new();
    for k in ["points", "turnover", "comment", "reason", "number", "expires"] {
        if let Some(v) = form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            body.insert(k.to_string(), json!(v));
        }
    }
    let version = form.get("version").and_then(|v| v.parse::<u64>().ok());
    let a: super::super::loyalty::CardAction = match serde_json::from_value(Value::Object(body)) {
        Ok(a) => a,
        Err(e) => {
            let e = ApiError::at(StatusCode::BAD_REQUEST, super::super::Code::BadBody, "body", e.to_string());
            return card(app, reply, who, id, Some(pages::Refusal::of(action, &e)));
        }
    };
    let action_name = action.to_string();
    let who_writes = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, role)), move |engine, tx| {
            super::super::loyalty::card_step(engine, tx, &who_writes, id, &action_name, &a, version)
        })
        .await;
    match done {
        // A reissue goes to the new card.
        Ok(v) if action == "reissue" => {
            let new = v["id"].as_str().unwrap_or_default().to_string();
            Ok(reply.redirect(&format!("/card/{new}")))
        }
        Ok(_) => Ok(reply.redirect(&format!("/card/{id}"))),
        Err(e) => card(app, reply, who, id, Some(pages::Refusal::of(action, &e))),
    }
}

/// `/strategies`: each segment's strategy with the caller's clients in it, the last run,
/// and (admins) a run, applied or not, with its summary.
pub(super) fn strategies(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    ran: Option<Value>,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let o = super::super::strategies::overview(app, &caller)?;
    let segments = o["segments"].as_object().cloned().unwrap_or_default();
    let count = |segment: &str| segments.get(segment).and_then(Value::as_u64).unwrap_or(0);
    let strategies = o["strategies"].as_array().cloned().unwrap_or_default();
    let run_facts = |run: &Value| -> Markup {
        html! {
            table.facts.run {
                tbody {
                    tr { th { (t(lang, "when")) } td { (run["at"].as_str().unwrap_or("—")) } }
                    tr { th { (t(lang, "applied")) } td.applied { (run["applied"]) } }
                    tr { th { (t(lang, "partners")) } td.partners { (run["partners"]) } }
                    tr { th { (t(lang, "segments_changed")) } td.changed { (run["changed"]) } }
                    tr { th { (t(lang, "contact_overdue")) } td.overdue { (run["overdue"]) } }
                    @if let Some(w) = run["written"].as_object() {
                        tr { th { (t(lang, "tasks_created")) } td.tasks { (w.get("tasks_created").cloned().unwrap_or_default()) } }
                    }
                    tr { th { (t(lang, "faults")) } td { (run["faults"].as_array().map_or(0, Vec::len)) } }
                }
            }
        }
    };
    let content = html! {
        h1 { (t(lang, "strategies")) }
        section.card {
            table.strategies {
                thead { tr { th { (t(lang, "segment")) } th { (t(lang, "strategy")) } th.num { (t(lang, "contact_every_days")) } th { (t(lang, "manager_level")) } th { (t(lang, "discount_policy")) } th.num { (t(lang, "your_clients")) } } }
                tbody {
                    @for s in &strategies {
                        @let segment = s["segment"].as_str().unwrap_or_default();
                        tr data-segment=(segment) {
                            td { (segment) } td { (s["name"].as_str().unwrap_or_default()) }
                            td.num { (s["contact_every_days"]) } td { (s["manager_level"].as_str().unwrap_or_default()) }
                            td { (s["discount_policy"].as_str().unwrap_or_default()) } td.num.clients { (count(segment)) }
                        }
                    }
                    @if count("") > 0 { tr data-segment="" { td { "—" } td colspan="4" { (t(lang, "no_segment")) } td.num.clients { (count("")) } } }
                }
            }
        }
        @if let Some(run) = &ran {
            section.card.ran { h2 { (t(lang, "this_run")) } (run_facts(run)) }
        }
        section.card.last-run {
            h2 { (t(lang, "last_run")) }
            @if o["last_run"].is_null() { p.empty { (t(lang, "never_run")) } } @else { (run_facts(&o["last_run"])) }
            @if role == Role::Admin {
                form.run method="post" action="/strategies/run" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { input type="checkbox" name="apply" value="true"; " " (t(lang, "apply_run")) }
                    button type="submit" { (t(lang, "run_strategies")) }
                }
            }
        }
    };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    Ok(reply.page(StatusCode::OK, t(lang, "strategies"), Some(&viewer), content))
}

/// A strategy run from the page (admins), as the API's.
pub(super) async fn run_strategies(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    form: &Form,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    if role != Role::Admin {
        let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
        let m = pages::message(t(lang, "admins_only"));
        return Ok(reply.page(StatusCode::FORBIDDEN, t(lang, "strategies"), Some(&viewer), m));
    }
    let apply = form.get("apply").is_some();
    let summary = super::super::strategies::run_now(app.clone(), Some((caller.user.id, role)), apply).await?;
    strategies(app, reply, who, Some(json!(summary)))
}

/// The new claim's form: its partner (from the query), type and cause, subject,
/// description, amount claimed and deal; a refusal at its field with the values kept.
pub(super) fn new_claim(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    values: &std::collections::HashMap<String, String>,
    refusal: Option<(pages::Refusal, StatusCode)>,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let r = app.inst.store().read()?;
    let Some(caller) = super::caller(&r, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let value = |k: &str| values.get(k).cloned().unwrap_or_default();
    let partner = value("partner").parse::<PartnerId>().ok().map(|id| r.get::<Partner>(id)).transpose()?.flatten();
    let Some(partner) = partner.filter(|p| caller.may(&r, Access::Read, p).unwrap_or(false)) else {
        let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
        let m = pages::message(t(lang, "claim_needs_partner"));
        return Ok(reply.page(StatusCode::NOT_FOUND, t(lang, "new_claim"), Some(&viewer), m));
    };
    let deals: Vec<Deal> = r
        .find::<Deal>(Index::DealByPartner, &partner.id.raw().to_bytes(), None, 500)?
        .into_iter()
        .filter(|d| d.status != DealStatus::Lost && caller.may(&r, Access::Read, d).unwrap_or(false))
        .collect();
    let (refusal, status) = super::split(refusal);
    let types = &r.settings().claim_types;
    let content = html! {
        h1 { (t(lang, "new_claim")) ": " (partner.name) }
        section.card {
            form.new-claim method="post" action="/claims/new" data-action="new-claim" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="partner" value=(partner.id);
                (pages::refused(refusal.as_ref(), "new-claim"))
                div.fields {
                    label for="claim-kind" { (t(lang, "claim_type")) }
                    select id="claim-kind" name="kind" {
                        @for ct in types { option value=(ct.id) selected[value("kind") == ct.id] { (ct.name) } }
                    }
                    label for="claim-cause" { (t(lang, "cause")) }
                    select id="claim-cause" name="cause" {
                        option value="" { "—" }
                        @for ct in types {
                            optgroup label=(ct.name) {
                                @for c in &ct.causes { option value=(c.id) selected[value("cause") == c.id] { (c.name) } }
                            }
                        }
                    }
                    label for="claim-subject" { (t(lang, "subject")) }
                    input id="claim-subject" type="text" name="subject" maxlength="500" value=(value("subject"));
                    label for="claim-description" { (t(lang, "description")) }
                    textarea id="claim-description" name="description" rows="4" maxlength="20000" { (value("description")) }
                    label for="claim-claimed" { (t(lang, "claimed")) }
                    input id="claim-claimed" type="number" step="any" min="0" name="claimed" value=(value("claimed"));
                    label for="claim-deal" { (t(lang, "deal")) }
                    select id="claim-deal" name="deal" {
                        option value="" { "—" }
                        @for d in &deals { option value=(d.id) selected[value("deal") == d.id.to_string()] { (d.title) } }
                    }
                }
                button type="submit" { (t(lang, "register_claim")) }
            }
        }
    };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    Ok(reply.page(status, t(lang, "new_claim"), Some(&viewer), content))
}

/// Registers the claim of the form, as the API's `POST /api/v1/claims` does.
pub(super) async fn register_claim(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    form: &Form,
) -> Result<Response<Body>, ApiError> {
    let (login, role, _) = who;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let values: std::collections::HashMap<String, String> = form
        .fields
        .iter()
        .filter(|(k, _)| k.as_str() != "csrf")
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    let text = |k: &str| values.get(k).filter(|v| !v.is_empty()).cloned();
    let mut body = Map::new();
    for k in ["partner", "kind", "cause", "subject", "description", "deal"] {
        if let Some(v) = text(k) {
            body.insert(k.to_string(), json!(v));
        }
    }
    if let Some(amount) = text("claimed") {
        let currency = app.inst.settings().default_currency;
        body.insert("claimed".into(), json!({ "amount": amount, "currency": currency }));
    }
    let refuse =
        |reply: Reply, e: ApiError| new_claim(app, reply, who, &values, Some(pages::Refusal::of("new-claim", &e)));
    if let Err(e) = super::super::may_write(&caller) {
        return refuse(reply, e);
    }
    let body = match super::super::entities::new_entity::<crmkit_core::model::Claim>(&caller, body) {
        Ok(b) => b,
        Err(e) => return refuse(reply, e),
    };
    let who_writes = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, role)), move |engine, tx| {
            super::super::entities::create_entity::<crmkit_core::model::Claim>(engine, tx, &who_writes, body)
        })
        .await;
    match done {
        Ok(c) => Ok(reply.redirect(&format!("/claim/{}", c["id"].as_str().unwrap_or_default()))),
        Err(e) => refuse(reply, e),
    }
}
