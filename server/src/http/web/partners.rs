//! Partners: the search (by the start of a name, a tax id, a contact person's e-mail
//! address or phone number, or an id)
//! and the dossier page — everything the API's dossier has, with the partner's group and
//! links.

use crmkit_core::dossier::{Amounts, Dossier};
use crmkit_core::id::{PartnerId, TypedId};
use crmkit_core::model::{ContactPerson, Counterparty, Partner};
use crmkit_core::store::{Index, Reader};
use maud::{html, Markup};

use super::super::access::Access;
use super::super::{ApiError, Caller};
use super::i18n::t;

/// Partners found by `q`, at most `limit`, those the caller may see, by name.
pub fn search(r: &impl Reader, caller: &Caller, q: &str, limit: usize) -> Result<Vec<Partner>, ApiError> {
    let q = q.trim();
    let mut ids: Vec<PartnerId> = Vec::new();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    if let Ok(id) = q.parse::<PartnerId>() {
        ids.push(id);
    }
    // Names are indexed lower-cased, each followed by a zero byte: the bytes of the start
    // of a name find every name that starts so.
    let start = q.to_lowercase();
    for id in r.ids_by(Index::PartnerByName, start.as_bytes(), None, limit * 4).map_err(ApiError::from)? {
        ids.push(PartnerId::from_raw(id));
    }
    let exact = crmkit_core::model::text_prefix(&[q]);
    for c in r.ids_by(Index::CounterpartyByTaxId, &exact, None, 20).map_err(ApiError::from)? {
        for p in r.ids_by(Index::PartnerByCounterparty, &c.to_bytes(), None, 20).map_err(ApiError::from)? {
            ids.push(PartnerId::from_raw(p));
        }
    }
    let email = crmkit_core::model::text_prefix(&[&q.to_lowercase()]);
    for c in r.find::<ContactPerson>(Index::ContactByEmail, &email, None, 20).map_err(ApiError::from)? {
        ids.push(c.partner);
    }
    // A phone number, written any way the configured region reads it.
    if q.chars().filter(char::is_ascii_digit).count() >= 5 {
        if let Ok(phone) = crmkit_core::values::phone::normalize_phone(q, &r.settings().phone_region) {
            let key = crmkit_core::model::text_prefix(&[&phone]);
            for c in r.find::<ContactPerson>(Index::ContactByPhone, &key, None, 20)? {
                ids.push(c.partner);
            }
        }
    }
    let mut out: Vec<Partner> = Vec::new();
    for id in ids {
        if out.iter().any(|p| p.id == id) {
            continue;
        }
        if let Some(p) = r.get::<Partner>(id).map_err(ApiError::from)? {
            if caller.may(r, Access::Read, &p).map_err(ApiError::from)? {
                out.push(p);
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out.sort_by_key(|p| p.name.to_lowercase());
    Ok(out)
}

/// The search page with its results.
pub fn search_page(lang: &str, q: &str, found: &[Partner]) -> Markup {
    html! {
        h1 { (t(lang, "partners")) }
        form.search method="get" action="/partners" {
            input type="search" name="q" value=(q) placeholder=(t(lang, "search_hint")) aria-label=(t(lang, "search"));
            button type="submit" { (t(lang, "search")) }
        }
        @if !q.trim().is_empty() {
            section.card {
                @if found.is_empty() { p.empty { (t(lang, "nothing_found")) } } @else {
                    table.found {
                        thead { tr { th { (t(lang, "partner")) } th { (t(lang, "roles")) } th { (t(lang, "segment")) } } }
                        tbody {
                            @for p in found {
                                tr {
                                    td { a href={ "/partner/" (p.id) } { (p.name) } }
                                    td { @for (i, r) in p.roles.iter().enumerate() { @if i > 0 { ", " } (r.name()) } }
                                    td { (p.segment.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn amounts(a: &Amounts) -> String {
    if a.is_empty() {
        return "0".into();
    }
    a.iter().map(|(c, v)| format!("{} {c}", v.normalize())).collect::<Vec<_>>().join(", ")
}

/// The dossier page.
pub fn dossier_page(lang: &str, d: &Dossier, counterparties: &[Counterparty]) -> Markup {
    let p = &d.partner;
    html! {
        h1 { (p.name) }
        nav.record-actions { a.new-claim href={ "/claims/new?partner=" (p.id) } { (t(lang, "register_claim")) } }
        section.card {
            table.facts {
                tbody {
                    tr { th { (t(lang, "roles")) } td { @for (i, r) in p.roles.iter().enumerate() { @if i > 0 { ", " } (r.name()) } } }
                    tr { th { (t(lang, "segment")) } td { (p.segment.as_deref().unwrap_or("—")) } }
                    tr { th { (t(lang, "last_contact")) } td { (d.last_contact.map(|t| t.date().to_string()).unwrap_or_else(|| "—".into())) } }
                    tr { th { (t(lang, "weighted_pipeline")) } td { (amounts(&d.weighted_pipeline)) } }
                    @for c in &d.classes.by_currency {
                        tr { th { (t(lang, "classes")) " " (c.currency) } td { (c.abc_xyz.as_deref().unwrap_or("—")) " · " (c.bcg) } }
                    }
                    @if let Some(s) = &d.strategy {
                        tr { th { (t(lang, "strategy")) } td { (s.strategy.name) " · " (t(lang, "next_contact")) " " (s.next_contact) } }
                    }
                }
            }
        }
        @if !d.group.parents.is_empty() || !d.group.members.is_empty() || !d.partner_links.is_empty() {
            section.card.group {
                h2 { (t(lang, "group_and_links")) }
                ul {
                    @for g in &d.group.parents { li { (t(lang, "parent")) ": " a href={ "/partner/" (g.id) } { (g.name) } } }
                    @for g in &d.group.members { li { (t(lang, "member")) ": " a href={ "/partner/" (g.id) } { (g.name) } } }
                    @for (link, other) in &d.partner_links { li { (link.link_type) ": " a href={ "/partner/" (other.id) } { (other.name) } } }
                }
            }
        }
        section.card {
            h2 { (t(lang, "deals")) }
            p { (t(lang, "won")) ": " (d.deals.won) " (" (amounts(&d.deals.won_amount)) ") · " (t(lang, "lost")) ": " (d.deals.lost) }
            @if !d.deals.open.is_empty() {
                table.open-deals {
                    thead { tr { th { (t(lang, "deal")) } th { (t(lang, "stage")) } th.num { (t(lang, "amount")) } } }
                    tbody {
                        @for deal in &d.deals.open {
                            tr { td { a href={ "/deal/" (deal.id) } { (deal.title) } } td { (deal.stage.as_deref().unwrap_or("—")) } td.num { (deal.amount.amount) " " (deal.amount.currency) } }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { (t(lang, "counterparties")) }
            ul { @for c in counterparties { li { (c.name) @if let Some(tax) = &c.tax_id { " · " (tax) } } } }
            h2 { (t(lang, "contacts")) }
            ul { @for c in &d.contacts { li { (c.name) @if !c.position.is_empty() { " · " (c.position) } @for e in &c.emails { " · " (e) } } } }
        }
        section.card {
            h2 { (t(lang, "documents")) " (" (d.documents.count) ")" }
            p { (t(lang, "receivable")) ": " (amounts(&d.documents.receivable)) }
            table {
                tbody {
                    @for doc in &d.documents.latest {
                        tr { td.num { (doc.date) } td { (doc.kind.name()) " " (doc.number) } td { (doc.state.name()) } td.num { (doc.amount.amount) " " (doc.amount.currency) } }
                    }
                }
            }
        }
        @if d.claims.count > 0 {
            section.card.claims {
                h2 { (t(lang, "claims")) " (" (d.claims.count) ")" }
                p { (t(lang, "open")) ": " (d.claims.open.len()) " · " (t(lang, "overdue")) ": " (d.claims.overdue) " · " (t(lang, "settled")) ": " (amounts(&d.claims.settled)) }
                table {
                    tbody {
                        @for c in d.claims.open.iter().chain(&d.claims.latest) {
                            tr { td.num { (c.registered_on()) } td { (c.status.name()) } td { (c.kind) "/" (c.cause) } td { (c.subject) } }
                        }
                    }
                }
            }
        }
        @if !d.loyalty_cards.is_empty() {
            section.card {
                h2 { (t(lang, "loyalty_cards")) }
                ul { @for c in &d.loyalty_cards { li { a href={ "/card/" (c.id) } { (c.number) } " · " (c.status.name()) " · " (c.balance) } } }
            }
        }
        section.card {
            h2 { (t(lang, "recent_interactions")) " (" (d.timeline.total) ")" }
            table {
                tbody {
                    @for i in &d.timeline.interactions {
                        tr data-interaction=(i.id) { td.num { (i.at.date()) } td { (i.kind.name()) } td { (i.subject) } }
                    }
                }
            }
            @if let Some(next) = d.timeline.next_before {
                nav.pages { a.next href={ "/partner/" (d.partner.id) "?before=" (next) } { (t(lang, "earlier")) " →" } }
            }
        }
    }
}
