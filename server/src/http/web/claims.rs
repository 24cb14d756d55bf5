//! Claims on the web page: the list (open ones first, overdue marked) and a claim's page
//! with its steps and the forms of its next steps — review, postpone, decide, close,
//! reopen — each the process engine's, a refusal shown in its form at the field it names.

use chrono::NaiveDate;
use crmkit_core::model::{Claim, ClaimStatus, Decision};
use maud::{html, Markup};

use super::i18n::t;

pub use super::pages::Refusal;

/// The list page: `claims` with their partners' names.
pub fn list(lang: &str, claims: &[(Claim, String)], today: NaiveDate) -> Markup {
    html! {
        h1 { (t(lang, "claims")) " (" (claims.len()) ")" }
        section.card {
            @if claims.is_empty() { p.empty { (t(lang, "no_claims")) } } @else {
                table.claims {
                    thead { tr {
                        th { (t(lang, "registered")) } th { (t(lang, "due")) } th { (t(lang, "status")) }
                        th { (t(lang, "partner")) } th { (t(lang, "subject")) } th.num { (t(lang, "claimed")) }
                    } }
                    tbody {
                        @for (c, partner) in claims {
                            tr {
                                td.num { (c.registered_on()) }
                                td.num { @if c.is_overdue(today) { span.overdue { (c.due_by()) } } @else { (c.due_by()) } }
                                td { (c.status.name()) }
                                td { (partner) }
                                td { a href={ "/claim/" (c.id) } { (c.subject) } }
                                td.num { @if let Some(m) = c.claimed { (m.amount) " " (m.currency) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn form(lang: &str, c: &Claim, csrf: &str, refusal: Option<&Refusal>, action: &str, fields: Markup) -> Markup {
    html! {
        form.action method="post" action={ "/claim/" (c.id) "/" (action) } data-action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="version" value=(c.version);
            (super::pages::refused(refusal, action))
            (fields)
            button type="submit" { (t(lang, &format!("claim_{action}"))) }
        }
    }
}

/// A claim's page.
pub fn page(lang: &str, c: &Claim, partner: &str, csrf: &str, refusal: Option<&Refusal>, may_act: bool) -> Markup {
    let text = |name: &'static str, key: &'static str| html! { input type="text" name=(name) maxlength="10000" placeholder=(t(lang, key)); };
    html! {
        h1 { (c.subject) }
        section.card {
            table.facts { tbody {
                tr { th { (t(lang, "partner")) } td { (partner) } }
                tr { th { (t(lang, "kind")) } td { (c.kind) " / " (c.cause) } }
                tr { th { (t(lang, "status")) } td.status { (c.status.name()) } }
                tr { th { (t(lang, "registered")) } td { (c.registered_on()) } }
                tr { th { (t(lang, "due")) } td { (c.due_by()) } }
                @if let Some(m) = c.claimed { tr { th { (t(lang, "claimed")) } td { (m.amount) " " (m.currency) } } }
                @if let Some(d) = c.decision { tr { th { (t(lang, "decision")) } td.decision { (d.name()) } } }
                @if let Some(m) = c.settled { tr { th { (t(lang, "settled")) } td.settled { (m.amount) " " (m.currency) } } }
                @if !c.reply.is_empty() { tr { th { (t(lang, "reply")) } td { (c.reply) } } }
            } }
        }
        @if may_act {
            section.card.actions {
                h2 { (t(lang, "actions")) }
                @if c.status == ClaimStatus::Registered { (form(lang, c, csrf, refusal, "review", text("comment", "comment"))) }
                @if c.status.is_open() {
                    (form(lang, c, csrf, refusal, "postpone", html! {
                        input type="date" name="until" aria-label=(t(lang, "due"));
                        (text("reason", "reason"))
                    }))
                    (form(lang, c, csrf, refusal, "decide", html! {
                        select name="decision" aria-label=(t(lang, "decision")) {
                            @for d in Decision::ALL { option value=(d.name()) { (d.name()) } }
                        }
                        input type="text" name="settled" inputmode="decimal" placeholder=(t(lang, "settled"));
                        (text("reply", "reply"))
                    }))
                }
                @if c.status == ClaimStatus::Decided { (form(lang, c, csrf, refusal, "close", text("comment", "comment"))) }
                @if !c.status.is_open() { (form(lang, c, csrf, refusal, "reopen", text("reason", "reason"))) }
            }
        }
        section.card.steps {
            h2 { (t(lang, "steps")) }
            table { tbody {
                @for s in &c.steps {
                    tr {
                        td.num { (s.at.to_string().get(..16).unwrap_or_default().replace('T', " ")) }
                        td { (s.action.name()) }
                        td { (s.from.map_or("—", |f| f.name())) " → " (s.to.name()) }
                        td { (s.note.as_deref().unwrap_or_default()) }
                    }
                }
            } }
        }
    }
}
