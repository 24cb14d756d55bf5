//! The deal page: the deal's file as one timeline (stage steps, tasks, interactions,
//! documents, attachments, audit entries, oldest first), and its actions — move, hold,
//! resume, win, lose with the reason and the competitor, reopen — each a form for the
//! process engine, a refusal shown next to the field it names.

use crmkit_core::deal_file::{DealFile, FileItem};
use crmkit_core::model::{DealStatus, ListItem};
use crmkit_core::process::ProcessKindSpec;
use maud::{html, Markup};

use super::i18n::t;

pub use super::pages::Refusal;

/// What the deal page shows.
pub struct DealPage<'a> {
    pub file: &'a DealFile,
    pub partner: &'a str,
    pub manager: &'a str,
    pub kind: Option<&'a ProcessKindSpec>,
    pub loss_reasons: Vec<&'a ListItem>,
    pub csrf: &'a str,
    pub refusal: Option<&'a Refusal>,
    pub may_act: bool,
}

fn summary(item: &FileItem) -> (&'static str, String) {
    match item {
        FileItem::Step(s) => (
            "step",
            format!(
                "{}: {} → {}{}",
                s.how.name(),
                s.from_stage.as_deref().unwrap_or("—"),
                s.to_stage.as_deref().unwrap_or("—"),
                s.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
            ),
        ),
        FileItem::Task(t) => ("task", format!("{} [{}]", t.title, t.status.name())),
        FileItem::Interaction(i) => ("interaction", format!("{}: {}", i.kind.name(), i.subject)),
        FileItem::Document(d) => {
            ("document", format!("{} {} {} {}", d.kind.name(), d.number, d.amount.amount, d.amount.currency))
        }
        FileItem::Attachment(a) => ("attachment", a.name.clone()),
        FileItem::Audit(a) => ("audit", format!("{:?} {} v{}", a.op, a.entity.kind, a.version)),
    }
}

fn form(lang: &str, p: &DealPage<'_>, action: &str, fields: Markup) -> Markup {
    let d = &p.file.deal;
    html! {
        form.action method="post" action={ "/deal/" (d.id) "/" (action) } data-action=(action) {
            input type="hidden" name="csrf" value=(p.csrf);
            input type="hidden" name="version" value=(d.version);
            (super::pages::refused(p.refusal, action))
            (fields)
            button type="submit" { (t(lang, action)) }
        }
    }
}

/// The page.
pub fn page(lang: &str, p: &DealPage<'_>) -> Markup {
    let d = &p.file.deal;
    let stages: Vec<(&str, &str)> =
        p.kind.map(|k| k.stages.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect()).unwrap_or_default();
    let comment =
        |lang: &str| html! { input type="text" name="comment" maxlength="2000" placeholder=(t(lang, "comment")); };
    html! {
        h1 { (d.title) }
        section.card.deal-head {
            table {
                tbody {
                    tr { th { (t(lang, "partner")) } td { (p.partner) } }
                    tr { th { (t(lang, "kind")) } td { (p.kind.map_or(d.kind.as_str(), |k| k.name.as_str())) } }
                    tr { th { (t(lang, "stage")) } td.stage { (d.stage.as_deref().unwrap_or("—")) } }
                    tr { th { (t(lang, "status")) } td.status { (d.status.name()) } }
                    tr { th { (t(lang, "amount")) } td { (d.amount.amount) " " (d.amount.currency) } }
                    tr { th { (t(lang, "manager")) } td { (p.manager) } }
                    @if let Some(pr) = d.probability { tr { th { (t(lang, "probability")) } td { (pr) "%" } } }
                    @if let Some(r) = &d.loss_reason { tr { th { (t(lang, "loss_reason")) } td.loss-reason { (r) } } }
                }
            }
        }
        @if p.may_act {
            section.card.actions {
                h2 { (t(lang, "actions")) }
                @match d.status {
                    DealStatus::InProgress => {
                        @if !stages.is_empty() {
                            (form(lang, p, "move", html! {
                                select name="stage" aria-label=(t(lang, "move_to")) {
                                    @for (id, name) in &stages { @if Some(*id) != d.stage.as_deref() { option value=(id) { (name) } } }
                                }
                                (comment(lang))
                            }))
                        }
                        (form(lang, p, "hold", comment(lang)))
                        (form(lang, p, "win", comment(lang)))
                        (form(lang, p, "lose", html! {
                            select name="reason" aria-label=(t(lang, "loss_reason")) {
                                option value="" { "—" }
                                @for r in &p.loss_reasons { option value=(r.id) { (r.name) } }
                            }
                            input type="text" name="competitor" placeholder=(t(lang, "competitor_id"));
                            (comment(lang))
                        }))
                    }
                    DealStatus::OnHold => { (form(lang, p, "resume", comment(lang))) }
                    DealStatus::Won | DealStatus::Lost => {
                        (form(lang, p, "reopen", html! {
                            select name="stage" aria-label=(t(lang, "stage")) {
                                option value="" { "—" }
                                @for (id, name) in &stages { option value=(id) { (name) } }
                            }
                            (comment(lang))
                        }))
                    }
                }
            }
        }
        section.card.timeline {
            h2 { (t(lang, "timeline")) " (" (p.file.total) ")" }
            table {
                thead { tr { th { (t(lang, "when")) } th { (t(lang, "kind")) } th { (t(lang, "what")) } } }
                tbody {
                    @for item in &p.file.items {
                        @let (kind, text) = summary(item);
                        tr data-item=(kind) {
                            td.num { (item.at().to_string().get(..16).unwrap_or_default().replace('T', " ")) }
                            td { (kind) }
                            td { (text) }
                        }
                    }
                }
            }
        }
    }
}
