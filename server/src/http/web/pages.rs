//! The pages, as maud templates: checked when the server is compiled, every value escaped
//! (a partner named `<img src=x onerror=alert(1)>` is shown as those characters).

use crmkit_core::model::{Deal, Interaction, Role, Task};
use crmkit_core::time::Timestamp;
use maud::{html, Markup, DOCTYPE};

use super::i18n::{t, LANGUAGES};

/// An action a page's form asked for and the process refused: which form, the message and
/// the field it names.
pub struct Refusal {
    pub action: String,
    pub message: String,
    pub field: Option<String>,
}

impl Refusal {
    /// The refusal of `action` by `e`, with the status to answer it with.
    pub fn of(action: &str, e: &super::super::ApiError) -> (Refusal, hyper::StatusCode) {
        let (message, field, status) = e.parts();
        (Refusal { action: action.to_string(), message: message.to_string(), field: field.map(str::to_string) }, status)
    }
}

/// The refusal of the form of `action`, when `refusal` is one: its message after the field.
pub fn refused(refusal: Option<&Refusal>, action: &str) -> Markup {
    html! {
        @if let Some(r) = refusal.filter(|r| r.action == action) {
            p.error.refusal role="alert" data-field=[r.field.as_deref()] {
                @if let Some(f) = &r.field { strong { (f) } ": " }
                (r.message)
            }
        }
    }
}

/// Who a page is for: their name, role and the session's CSRF token (none before sign-in).
pub struct Viewer<'a> {
    pub name: &'a str,
    pub role: Role,
    pub csrf: &'a str,
}

fn role_key(role: Role) -> &'static str {
    match role {
        Role::Admin => "role_admin",
        Role::Head => "role_head",
        Role::Manager => "role_manager",
        Role::Viewer => "role_viewer",
    }
}

/// The frame of every page: the head with the stylesheet, the top bar for a signed-in
/// person, the content and the language links.
pub fn layout(lang: &str, title: &str, viewer: Option<&Viewer<'_>>, assets: (&str, &str), content: Markup) -> Markup {
    let (stylesheet, script) = assets;
    html! {
        (DOCTYPE)
        html lang=(lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (t(lang, "app")) }
                link rel="stylesheet" href=(stylesheet);
                script src=(script) defer {}
            }
            body {
                @if let Some(v) = viewer {
                    header.top {
                        span.brand { (t(lang, "app")) }
                        nav { a href="/work" { (t(lang, "my_work")) } a href="/board" { (t(lang, "board")) } a href="/partners" { (t(lang, "partners")) } a href="/claims" { (t(lang, "claims")) } a href="/cards" { (t(lang, "loyalty_cards")) } a href="/strategies" { (t(lang, "strategies")) } @if v.role != Role::Manager { a href="/analytics" { (t(lang, "analytics")) } } @if v.role == Role::Admin { a href="/admin" { (t(lang, "administration")) } } }
                        span.who { (t(lang, "signed_in_as")) " " strong { (v.name) } " · " (t(lang, role_key(v.role))) }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { (t(lang, "sign_out")) }
                        }
                    }
                }
                main { (content) }
                footer.langs {
                    @for (i, l) in LANGUAGES.iter().enumerate() {
                        @if i > 0 { " · " }
                        @if *l == lang { strong { (t(l, "language")) } } @else { a href={ "?lang=" (l) } { (t(l, "language")) } }
                    }
                }
            }
        }
    }
}

/// The sign-in form, with a message when there is one.
pub fn sign_in(lang: &str, pre_csrf: &str, login: &str, message: Option<&str>) -> Markup {
    html! {
        form.sign-in method="post" action="/sign-in" {
            h1 { (t(lang, "sign_in")) }
            @if let Some(m) = message { p.error role="alert" { (m) } }
            input type="hidden" name="csrf" value=(pre_csrf);
            label for="login" { (t(lang, "login")) }
            input #login name="login" type="text" autocomplete="username" required value=(login);
            label for="password" { (t(lang, "password")) }
            input #password name="password" type="password" autocomplete="current-password" required;
            button type="submit" { (t(lang, "sign_in")) }
        }
    }
}

/// A message page (not found, a refused form).
pub fn message(text: &str) -> Markup {
    html! { section.card { p { (text) } } }
}

/// A deal needing attention and why.
pub struct Attention<'a> {
    pub deal: &'a Deal,
    pub partner: String,
    pub reasons: Vec<&'static str>,
}

/// What "My work" shows.
pub struct Work<'a> {
    pub now: Timestamp,
    pub overdue: Vec<&'a Task>,
    pub today: Vec<&'a Task>,
    pub later: Vec<&'a Task>,
    pub deals: Vec<Attention<'a>>,
    pub interactions: Vec<(Interaction, String)>,
}

fn when(t: Timestamp) -> String {
    let s = t.to_string();
    s.get(..16).map(|s| s.replace('T', " ")).unwrap_or(s)
}

fn tasks(lang: &str, title_key: &str, list: &[&Task], now: Timestamp) -> Markup {
    html! {
        section.card {
            h2 { (t(lang, title_key)) " (" (list.len()) ")" }
            @if list.is_empty() { p.empty { (t(lang, "no_tasks")) } } @else {
                table {
                    thead { tr { th { (t(lang, "task")) } th.num { (t(lang, "due")) } } }
                    tbody {
                        @for task in list {
                            tr {
                                td { (task.title) }
                                td.num {
                                    @match task.due {
                                        Some(d) if task.is_overdue(now) => span.overdue { (when(d)) },
                                        Some(d) => (when(d)),
                                        None => "—",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// "My work": today's and overdue tasks, deals needing attention, recent interactions.
pub fn work(lang: &str, w: &Work<'_>) -> Markup {
    html! {
        h1 { (t(lang, "my_work")) }
        (tasks(lang, "tasks_overdue", &w.overdue, w.now))
        (tasks(lang, "tasks_today", &w.today, w.now))
        section.card {
            h2 { (t(lang, "deals_attention")) " (" (w.deals.len()) ")" }
            @if w.deals.is_empty() { p.empty { (t(lang, "no_deals")) } } @else {
                table {
                    thead { tr {
                        th { (t(lang, "deal")) } th { (t(lang, "partner")) } th { (t(lang, "why")) }
                        th { (t(lang, "stage")) } th.num { (t(lang, "amount")) }
                    } }
                    tbody {
                        @for a in &w.deals {
                            tr {
                                td { a href={ "/deal/" (a.deal.id) } { (a.deal.title) } }
                                td { a href={ "/partner/" (a.deal.partner) } { (a.partner) } }
                                td.overdue { @for (i, r) in a.reasons.iter().enumerate() { @if i > 0 { "; " } (t(lang, r)) } }
                                td { (a.deal.stage.as_deref().unwrap_or("—")) }
                                td.num { (a.deal.amount.amount) " " (a.deal.amount.currency) }
                            }
                        }
                    }
                }
            }
        }
        (tasks(lang, "tasks_later", &w.later, w.now))
        section.card {
            h2 { (t(lang, "recent_interactions")) }
            @if w.interactions.is_empty() { p.empty { (t(lang, "no_interactions")) } } @else {
                table {
                    thead { tr { th { (t(lang, "when")) } th { (t(lang, "kind")) } th { (t(lang, "partner")) } th { (t(lang, "subject")) } } }
                    tbody {
                        @for (i, partner) in &w.interactions {
                            tr { td.num { (when(i.at)) } td { (i.kind.name()) } td { (partner) } td { (i.subject) } }
                        }
                    }
                }
            }
        }
    }
}
