//! The deal page: the deal's file as one timeline (stage steps, tasks, interactions,
//! documents, attachments, audit entries, oldest first); its participants and the links
//! between them; its attachments, uploaded and downloaded; an edit of its fields; and its
//! actions — move, hold, resume, win, lose with the reason and the competitor, reopen —
//! each a form for the process engine, a refusal shown next to the field it names. An edit
//! from a version someone has changed since is explained field by field: what the person
//! saw, what they wrote and what the deal holds now; the form keeps their changes over the
//! newer values, to be saved again.

use std::sync::Arc;

use crmkit_core::deal_file::{DealFile, FileItem, FileQuery, ItemKind};
use crmkit_core::id::{AttachmentId, DealId, PartnerId, TypedId};
use crmkit_core::model::{
    Attachment, ContactPerson, Deal, DealStatus, EntityKind, EntityRef, FieldError, ListItem, Participant,
    ParticipantLink, Partner, PartnerRole, Role, User,
};
use crmkit_core::process::{Outcome, ProcessKindSpec};
use crmkit_core::store::{Index, Reader};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::super::access::Access;
use super::super::{ApiError, App, Body, Caller};
use super::i18n::t;
use super::{pages, Form, Reply, Who};

pub use super::pages::Refusal;

/// Timeline items per page.
const PER_PAGE: usize = 100;

/// Which of the deal's file the timeline shows: the kinds of item (every kind when none)
/// and the page (from 1; none: the last, the latest items).
#[derive(Default)]
pub struct Timeline {
    pub kinds: Vec<ItemKind>,
    pub page: Option<usize>,
}

impl Timeline {
    /// The timeline a query asks for (`kind=task&kind=step&page=2`); what it does not name
    /// well is left out.
    pub fn parse(query: &str) -> Timeline {
        let mut t = Timeline::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "kind" => t.kinds.extend(ItemKind::ALL.into_iter().filter(|x| x.name() == v)),
                "page" => t.page = v.parse().ok().filter(|p| *p >= 1),
                _ => {}
            }
        }
        t
    }

    /// The page's address with these kinds.
    fn href(&self, deal: DealId, page: usize) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for k in &self.kinds {
            s.append_pair("kind", k.name());
        }
        s.append_pair("page", &page.to_string());
        format!("/deal/{deal}?{}#timeline", s.finish())
    }
}

/// The fields the page's edit form changes, in its order.
const EDITABLE: [&str; 5] = ["title", "amount", "expected_close", "probability", "comment"];

/// The values of the editable fields of `d`, as the form shows them.
fn values_of(d: &Deal) -> Vec<String> {
    vec![
        d.title.clone(),
        d.amount.amount.to_string(),
        d.expected_close.map(|c| c.to_string()).unwrap_or_default(),
        d.probability.map(|p| p.to_string()).unwrap_or_default(),
        d.comment.clone(),
    ]
}

/// The edit form's state: what it shows, the values it was opened with (sent back, to see
/// what the person changed) and the version; with a stale edit's explanation.
pub struct Edit {
    pub mine: Vec<String>,
    pub was: Vec<String>,
    pub version: u64,
    pub stale: Option<Stale>,
}

/// A stale edit: the version the form was opened at, the one stored, and each field that
/// differs — what the person saw, what they wrote, what is stored now.
pub struct Stale {
    pub given: u64,
    pub stored: u64,
    pub rows: Vec<(&'static str, String, String, String)>,
}

/// A participant as the page lists it: who, their role, influence, attitude and note.
pub struct Member {
    pub participant: Participant,
    pub name: String,
    pub competitor: bool,
}

/// What the deal page shows.
pub struct DealPage<'a> {
    pub file: &'a DealFile,
    pub partner: &'a str,
    pub manager: &'a str,
    pub kind: Option<&'a ProcessKindSpec>,
    pub loss_reasons: Vec<&'a ListItem>,
    pub members: &'a [Member],
    pub links: &'a [(ParticipantLink, String, String)],
    pub attachments: &'a [Attachment],
    pub edit: Edit,
    pub timeline: &'a Timeline,
    /// The timeline's page shown, and how many there are.
    pub page: (usize, usize),
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
            (pages::refused(p.refusal, action))
            (fields)
            button type="submit" { (t(lang, action)) }
        }
    }
}

fn edit_form(lang: &str, p: &DealPage<'_>) -> Markup {
    let d = &p.file.deal;
    let e = &p.edit;
    let input = |i: usize| -> Markup {
        let field = EDITABLE[i];
        let kind = match field {
            "expected_close" => "date",
            "amount" | "probability" => "number",
            _ => "text",
        };
        html! {
            label for={ "edit-" (field) } { (t(lang, field)) }
            @if field == "comment" {
                textarea id={ "edit-" (field) } name=(field) rows="3" maxlength="2000" { (e.mine[i]) }
            } @else {
                input id={ "edit-" (field) } type=(kind) name=(field) value=(e.mine[i])
                    step=[(kind == "number").then_some("any")] min=[(kind == "number").then_some("0")]
                    max=[(field == "probability").then_some("100")];
            }
            input type="hidden" name={ "was_" (field) } value=(e.was[i]);
        }
    };
    html! {
        section.card.edit {
            h2 { (t(lang, "edit")) }
            @if let Some(s) = &e.stale {
                div.error.stale role="alert" {
                    p { (t(lang, "stale_edit")) " (" (t(lang, "version")) " " (s.given) " → " (s.stored) ")" }
                    table {
                        thead { tr { th { (t(lang, "field")) } th { (t(lang, "you_saw")) } th { (t(lang, "you_wrote")) } th { (t(lang, "now")) } } }
                        tbody {
                            @for (field, was, mine, now) in &s.rows {
                                tr data-field=(field) class=(if mine != was && now != was && mine != now { "clash" } else { "changed" }) {
                                    td { (t(lang, field)) } td.was { (was) } td.mine { (mine) } td.now { (now) }
                                }
                            }
                        }
                    }
                }
            }
            form.edit method="post" action={ "/deal/" (d.id) "/edit" } data-action="edit" {
                input type="hidden" name="csrf" value=(p.csrf);
                input type="hidden" name="version" value=(e.version);
                (pages::refused(p.refusal, "edit"))
                div.fields { @for i in 0..EDITABLE.len() { (input(i)) } }
                button type="submit" { (t(lang, "save")) }
            }
        }
    }
}

/// The word the API names a value by.
fn word<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn people(lang: &str, p: &DealPage<'_>) -> Markup {
    html! {
        section.card.participants {
            h2 { (t(lang, "participants")) " (" (p.members.len()) ")" }
            @if p.members.is_empty() { p.empty { (t(lang, "no_participants")) } } @else {
                table {
                    thead { tr { th { (t(lang, "who")) } th { (t(lang, "role")) } th { (t(lang, "influence")) } th { (t(lang, "attitude")) } th { (t(lang, "note")) } } }
                    tbody {
                        @for m in p.members {
                            tr data-participant=(m.participant.id) {
                                td {
                                    @if let Some(pid) = m.participant.partner { a href={ "/partner/" (pid) } { (m.name) } } @else { (m.name) }
                                }
                                td { (m.participant.role) }
                                td { (m.participant.influence.map_or("—".to_string(), word)) }
                                td { (m.participant.attitude.map_or("—".to_string(), word)) }
                                td { (m.participant.note) }
                            }
                        }
                    }
                }
            }
            @if !p.links.is_empty() {
                h2 { (t(lang, "links")) }
                ul.links {
                    @for (l, from, to) in p.links { li { (from) " → " (to) ": " (l.link_type) @if !l.note.is_empty() { " (" (l.note) ")" } } }
                }
            }
        }
    }
}

fn files(lang: &str, p: &DealPage<'_>) -> Markup {
    let d = &p.file.deal;
    html! {
        section.card.attachments {
            h2 { (t(lang, "attachments")) " (" (p.attachments.len()) ")" }
            @if p.attachments.is_empty() { p.empty { (t(lang, "no_attachments")) } } @else {
                table {
                    thead { tr { th { (t(lang, "file")) } th.num { (t(lang, "size")) } th { (t(lang, "type")) } th { (t(lang, "when")) } } }
                    tbody {
                        @for a in p.attachments {
                            tr data-attachment=(a.id) {
                                td { a.download href={ "/attachment/" (a.id) } download=(a.name) { (a.name) } }
                                td.num { (crate::cli::human_bytes(a.size)) }
                                td { (a.mime) }
                                td.num { (a.created_at.to_string().get(..16).unwrap_or_default().replace('T', " ")) }
                            }
                        }
                    }
                }
            }
            @if p.may_act {
                form.upload method="post" action={ "/deal/" (d.id) "/attach" } enctype="multipart/form-data" data-action="attach" {
                    input type="hidden" name="csrf" value=(p.csrf);
                    (pages::refused(p.refusal, "attach"))
                    input type="file" name="file" aria-label=(t(lang, "file"));
                    button type="submit" { (t(lang, "upload")) }
                }
            }
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
    let competitors: Vec<&Member> = p.members.iter().filter(|m| m.competitor).collect();
    html! {
        h1 { (d.title) }
        section.card.deal-head {
            table {
                tbody {
                    tr { th { (t(lang, "partner")) } td { a href={ "/partner/" (d.partner) } { (p.partner) } } }
                    tr { th { (t(lang, "kind")) } td { (p.kind.map_or(d.kind.as_str(), |k| k.name.as_str())) } }
                    tr { th { (t(lang, "stage")) } td.stage { (d.stage.as_deref().unwrap_or("—")) } }
                    tr { th { (t(lang, "status")) } td.status { (d.status.name()) } }
                    tr { th { (t(lang, "amount")) } td.amount { (d.amount.amount) " " (d.amount.currency) } }
                    tr { th { (t(lang, "manager")) } td { (p.manager) } }
                    @if let Some(c) = d.expected_close { tr { th { (t(lang, "expected_close")) } td { (c) } } }
                    @if let Some(pr) = d.probability { tr { th { (t(lang, "probability")) } td { (pr) "%" } } }
                    @if let Some(r) = &d.loss_reason { tr { th { (t(lang, "loss_reason")) } td.loss-reason { (r) } } }
                    @if !d.comment.is_empty() { tr { th { (t(lang, "comment")) } td.comment { (d.comment) } } }
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
                            select name="competitor" aria-label=(t(lang, "competitor")) {
                                option value="" { (t(lang, "competitor")) ": —" }
                                @for m in &competitors {
                                    @if let Some(id) = m.participant.partner { option value=(id) { (m.name) } }
                                }
                            }
                            input type="text" name="competitor_id" placeholder=(t(lang, "competitor_id"));
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
            (edit_form(lang, p))
        }
        (people(lang, p))
        (files(lang, p))
        section.card.timeline id="timeline" {
            h2 { (t(lang, "timeline")) " (" (p.file.total) ")" }
            form.kinds method="get" action={ "/deal/" (d.id) "#timeline" } {
                @for k in ItemKind::ALL {
                    label { input type="checkbox" name="kind" value=(k.name()) checked[p.timeline.kinds.contains(&k)]; " " (k.name()) }
                }
                button type="submit" { (t(lang, "show")) }
            }
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
            @let (page, pages) = p.page;
            @if pages > 1 {
                nav.pages {
                    @if page > 1 { a.prev href=(p.timeline.href(d.id, page - 1)) { "←" } " " }
                    span { (page) " / " (pages) }
                    @if page < pages { " " a.next href=(p.timeline.href(d.id, page + 1)) { "→" } }
                }
            }
        }
    }
}

/// The deal page, with a refused action's message in its form, or the edit form's state
/// after a refused or stale edit.
pub(super) fn show(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    id: DealId,
    refusal: Option<(Refusal, StatusCode)>,
    edit: Option<Edit>,
) -> Result<Response<Body>, ApiError> {
    render(app, reply, who, id, refusal, edit, &Timeline::default())
}

/// The deal page with the timeline `timeline` asks for.
pub(super) fn render(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    id: DealId,
    refusal: Option<(Refusal, StatusCode)>,
    edit: Option<Edit>,
    timeline: &Timeline,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let r = app.inst.store().read()?;
    let Some(caller) = super::caller(&r, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let Some(d) = r.get::<Deal>(id)? else { return Ok(super::not_found(reply)) };
    if !caller.may(&r, Access::Read, &d)? {
        return Ok(super::not_found(reply));
    }
    // The page asked for, the last (the latest items) by default.
    let mut q = FileQuery { kinds: timeline.kinds.clone(), limit: PER_PAGE, ..FileQuery::default() };
    q.offset = timeline.page.map_or(0, |p| (p - 1) * PER_PAGE);
    let mut file = crmkit_core::deal_file::deal_file(&r, id, &q)?;
    let pages = file.total.div_ceil(PER_PAGE).max(1);
    let page = match timeline.page {
        Some(p) => p,
        None => {
            if pages > 1 {
                q.offset = (pages - 1) * PER_PAGE;
                file = crmkit_core::deal_file::deal_file(&r, id, &q)?;
            }
            pages
        }
    };
    let partner = r.get::<Partner>(d.partner)?.map(|p| p.name).unwrap_or_default();
    let manager = r.get::<User>(d.manager)?.map(|u| u.name).unwrap_or_default();
    let settings = r.settings();
    let kind = settings.process_kind(&d.kind);
    let loss_reasons = kind
        .map(|k| {
            settings
                .lists
                .loss_reasons
                .items
                .iter()
                .filter(|i| k.loss_reasons.is_empty() || k.loss_reasons.contains(&i.id))
                .collect()
        })
        .unwrap_or_default();
    // The participants and their links.
    // The participants and their links, as the deal's file read them.
    let mut members = Vec::new();
    for p in &file.participants {
        let (name, competitor) = match (p.partner, p.contact) {
            (Some(pid), _) => match r.get::<Partner>(pid)? {
                Some(x) => (x.name.clone(), x.roles.contains(&PartnerRole::Competitor)),
                None => (pid.to_string(), false),
            },
            (None, Some(cid)) => (r.get::<ContactPerson>(cid)?.map(|c| c.name).unwrap_or_default(), false),
            (None, None) => (String::new(), false),
        };
        members.push(Member { participant: p.clone(), name, competitor });
    }
    let name =
        |pid| members.iter().find(|x: &&Member| x.participant.id == pid).map(|x| x.name.clone()).unwrap_or_default();
    let links: Vec<(ParticipantLink, String, String)> =
        file.participant_links.iter().map(|l| (l.clone(), name(l.from), name(l.to))).collect();
    let owner = EntityRef { kind: EntityKind::Deal, id: id.raw() };
    let attachments: Vec<Attachment> = r
        .find::<Attachment>(Index::AttachmentByOwner, &id.raw().to_bytes(), None, usize::MAX)?
        .into_iter()
        .filter(|a| a.owner == owner)
        .collect();
    let (refusal, mut status) = super::split(refusal);
    let edit =
        edit.unwrap_or_else(|| Edit { mine: values_of(&d), was: values_of(&d), version: d.version, stale: None });
    if edit.stale.is_some() {
        status = StatusCode::CONFLICT;
    }
    let may_act = role != Role::Viewer && caller.may(&r, Access::Write, &d)?;
    let page = DealPage {
        file: &file,
        partner: &partner,
        manager: &manager,
        kind,
        loss_reasons,
        members: &members,
        links: &links,
        attachments: &attachments,
        edit,
        timeline,
        page: (page, pages),
        csrf,
        refusal: refusal.as_ref(),
        may_act,
    };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    Ok(reply.page(status, &d.title, Some(&viewer), self::page(lang, &page)))
}

/// A deal's action from its page, through the process engine as the API's actions; `edit`
/// changes its fields as the API's `PATCH` does.
pub(super) async fn act(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    id: DealId,
    action: &str,
    form: &Form,
) -> Result<Response<Body>, ApiError> {
    let (login, role, _) = who;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    if action == "edit" {
        return edit(app, reply, who, caller, id, form).await;
    }
    if !["move", "hold", "resume", "win", "lose", "reopen"].contains(&action) {
        return Ok(super::not_found(reply));
    }
    let text = |name: &str| form.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let version = form.get("version").and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
    let (stage, comment, reason) = (text("stage"), text("comment"), text("reason"));
    // A competitor chosen from the deal's, or named by id.
    let competitor = text("competitor").or_else(|| text("competitor_id"));
    let action_name = action.to_string();
    let who_writes = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, role)), move |engine, tx| {
            super::super::entities::writable::<Deal>(&*tx, &who_writes, id.raw())?;
            let competitor = match competitor {
                None => None,
                Some(c) => Some(
                    c.parse::<PartnerId>()
                        .map_err(|e| FieldError::new(EntityKind::Deal, "competitor", format!("\"{c}\": {e}")))?,
                ),
            };
            let c = comment.clone().unwrap_or_default();
            let d = match action_name.as_str() {
                "move" => {
                    engine.move_deal(tx, id, version, stage.as_deref().unwrap_or_default(), comment.as_deref())?
                }
                "hold" => engine.hold(tx, id, version, &c)?,
                "resume" => engine.resume(tx, id, version, &c)?,
                "win" => engine.close(tx, id, version, Outcome::Won { comment: c })?,
                "lose" => engine.close(
                    tx,
                    id,
                    version,
                    Outcome::Lost { reason: reason.unwrap_or_default(), competitor, comment: c },
                )?,
                _ => engine.reopen(tx, id, version, stage.as_deref(), &c)?,
            };
            Ok(json!({ "version": d.version }))
        })
        .await;
    match done {
        Ok(_) => Ok(reply.redirect(&format!("/deal/{id}"))),
        Err(e) => show(app, reply, who, id, Some(Refusal::of(action, &e)), None),
    }
}

/// The edit form: a JSON merge patch of the fields the person changed (against the values
/// the form was opened with), written as the API's `PATCH` is. A stale version shows each
/// field that differs, and keeps what the person wrote in the form over the newer version.
async fn edit(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    caller: Caller,
    id: DealId,
    form: &Form,
) -> Result<Response<Body>, ApiError> {
    let field = |name: &str| form.get(name).map(|v| v.trim().to_string()).unwrap_or_default();
    let mine: Vec<String> = EDITABLE.iter().map(|f| field(f)).collect();
    let was: Vec<String> = EDITABLE.iter().map(|f| field(&format!("was_{f}"))).collect();
    let version = form.get("version").and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
    let mut patch = Map::new();
    let mut bad = None;
    for (i, name) in EDITABLE.iter().enumerate() {
        if mine[i] == was[i] {
            continue;
        }
        let v = mine[i].as_str();
        let value = match *name {
            "amount" => match v.parse::<rust_decimal::Decimal>() {
                Ok(a) => json!({ "amount": a.to_string() }),
                Err(_) => {
                    bad = Some((*name, format!("\"{v}\" is not an amount")));
                    break;
                }
            },
            "probability" if v.is_empty() => Value::Null,
            "probability" => match v.parse::<u8>() {
                Ok(p) => json!(p),
                Err(_) => {
                    bad = Some((*name, format!("\"{v}\" is not a whole percentage from 0 to 100")));
                    break;
                }
            },
            "expected_close" if v.is_empty() => Value::Null,
            "expected_close" => match crmkit_core::values::date::parse(v) {
                Ok(d) => json!(d.to_string()),
                Err(m) => {
                    bad = Some((*name, m));
                    break;
                }
            },
            _ => json!(v),
        };
        patch.insert(name.to_string(), value);
    }
    if let Some((name, message)) = bad {
        let e: ApiError = crmkit_core::Error::from(FieldError::new(EntityKind::Deal, name, message)).into();
        let edit = Edit { mine, was, version, stale: None };
        return show(app, reply, who, id, Some(Refusal::of("edit", &e)), Some(edit));
    }
    if patch.is_empty() {
        return Ok(reply.redirect(&format!("/deal/{id}")));
    }
    let set_by_hand = patch.get("probability").is_some_and(|p| !p.is_null());
    let role = caller.role;
    let who_writes = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, role)), move |engine, tx| {
            super::super::entities::patch_entity::<Deal>(engine, tx, &who_writes, id.raw(), version, patch, set_by_hand)
        })
        .await;
    let e = match done {
        Ok(_) => return Ok(reply.redirect(&format!("/deal/{id}"))),
        Err(e) => e,
    };
    // Stale: explain each field that differs, and keep the person's changes over the newer
    // version, for them to save again or change.
    let now = app.inst.store().read()?.get::<Deal>(id)?;
    if let Some(now) = now.filter(|d| d.version != version) {
        let current = values_of(&now);
        let rows = EDITABLE
            .iter()
            .enumerate()
            .filter(|(i, _)| current[*i] != was[*i] || mine[*i] != was[*i])
            .map(|(i, f)| (*f, was[i].clone(), mine[i].clone(), current[i].clone()))
            .collect();
        let stale = Stale { given: version, stored: now.version, rows };
        // The form keeps what the person changed and takes the newer values elsewhere, so
        // that saving again writes only their changes.
        let kept = (0..EDITABLE.len()).map(|i| if mine[i] != was[i] { mine[i].clone() } else { current[i].clone() });
        let edit = Edit { mine: kept.collect(), was: current, version: now.version, stale: Some(stale) };
        return show(app, reply, who, id, None, Some(edit));
    }
    let edit = Edit { mine, was, version, stale: None };
    show(app, reply, who, id, Some(Refusal::of("edit", &e)), Some(edit))
}

/// An upload from the deal page's form (`multipart/form-data`): stored as the API's upload
/// stores it, with the same limits; a refusal is shown at the form, nothing written.
pub(super) async fn upload(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    id: DealId,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    // A form from another site is refused before its body is read.
    if !super::same_origin(&req) {
        return Ok(super::refused(reply));
    }
    let content_type = req.headers().get("content-type").and_then(|c| c.to_str().ok()).unwrap_or_default();
    let Some(boundary) = super::multipart::boundary(content_type) else { return Ok(super::refused(reply)) };
    let refuse = |reply: Reply, e: ApiError| show(app, reply, who, id, Some(Refusal::of("attach", &e)), None);
    let max = app.inst.settings().attachment_max_bytes;
    // The file and the form's few fields around it.
    let mut spooled = match super::super::files::spool(app, req, max + 64 * 1024, "attachments.max_size_mb").await {
        Ok(f) => f,
        Err(e) => return refuse(reply, e),
    };
    let parts = {
        let file = spooled.as_file_mut();
        match super::multipart::split(file, &boundary) {
            Ok(p) => p,
            Err(m) => {
                return refuse(reply, ApiError::at(StatusCode::BAD_REQUEST, super::super::Code::BadBody, "content", m))
            }
        }
    };
    if parts.fields.get("csrf").map(String::as_str) != Some(csrf) {
        return Ok(super::refused(reply));
    }
    let Some(file) = parts.file else {
        let lang = reply.lang;
        let e = ApiError::at(StatusCode::BAD_REQUEST, super::super::Code::BadBody, "content", t(lang, "choose_file"));
        return refuse(reply, e);
    };
    if file.len > max {
        return refuse(reply, super::super::files::over_limit("content", max, "attachments.max_size_mb"));
    }
    let owner = EntityRef { kind: EntityKind::Deal, id: id.raw() };
    let mime = file
        .mime
        .filter(|m| !m.is_empty() && m != "application/octet-stream")
        .unwrap_or_else(|| crmkit_core::model::mime_of_name(&file.name).to_string());
    let stored = async {
        super::super::files::may_attach(app, &caller, owner)?;
        super::super::files::attach(app, &caller, owner, file.name, mime, spooled, (file.offset, file.len)).await
    };
    match stored.await {
        Ok(_) => Ok(reply.redirect(&format!("/deal/{id}"))),
        Err(e) => refuse(reply, e),
    }
}

/// An attachment's content for the signed-in person, as the API's download serves it.
pub(super) fn download(app: &Arc<App>, reply: Reply, who: Who<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let (login, role, _) = who;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    if id.parse::<AttachmentId>().is_err() {
        return Ok(super::not_found(reply));
    }
    match super::super::files::download(app, &caller, id) {
        Ok(mut response) => {
            let h = response.headers_mut();
            h.insert("x-content-type-options", hyper::header::HeaderValue::from_static("nosniff"));
            h.insert("content-security-policy", hyper::header::HeaderValue::from_static("sandbox"));
            h.insert("cache-control", hyper::header::HeaderValue::from_static("private, no-store"));
            Ok(response)
        }
        Err(e) if e.parts().2 == StatusCode::NOT_FOUND => Ok(super::not_found(reply)),
        Err(e) => Err(e),
    }
}
