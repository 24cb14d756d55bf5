//! The deal board of a process kind: a column per stage with the deals in progress the
//! caller may see, each card with its amount, partner, days in the stage and score,
//! filtered by manager, period (the expected close date, or the day a deal without one was
//! created) and amount, [`PER_COLUMN`] cards a column with pages for the rest. A card of a
//! manual kind is moved by its form (a stage to move to) or, with the page's script, by
//! dragging it to another column; a card of a managed kind shows the open tasks of its
//! stage instead, and completing one may move the deal on its route. Either way the change
//! is the process engine's, with its guards, and a refusal comes back on the card with its
//! message and the field it names.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::id::{DealId, TaskId, TypedId, UserId};
use crmkit_core::model::{Deal, DealStatus, Partner, Role, Task, TaskStatus, User};
use crmkit_core::process::{Mode, ProcessKindSpec};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::Timestamp;
use hyper::{Response, StatusCode};
use maud::{html, Markup};
use rust_decimal::Decimal;

use super::super::{ApiError, App, Body, Caller};
use super::i18n::t;
use super::{pages, Form, Reply, Who};

/// Cards shown per column page; the count says how many there are.
pub const PER_COLUMN: usize = 50;

/// A refusal shown on a card.
pub struct Refusal {
    pub deal: DealId,
    pub message: String,
    pub field: Option<String>,
}

/// The board's filters and the column paged, as the query names them: `kind`, `manager`,
/// `from`, `to` (days), `min`, `max` (amounts), `stage` and `page`.
#[derive(Default, Clone)]
pub struct Filter {
    pub kind: Option<String>,
    pub manager: Option<UserId>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub min: Option<Decimal>,
    pub max: Option<Decimal>,
    /// The column paged, and its page (from 1).
    pub stage: Option<String>,
    pub page: usize,
}

impl Filter {
    /// The filter a query asks for; a value that is not one names its parameter.
    pub fn parse(query: &str) -> Result<Filter, (String, String)> {
        let mut f = Filter { page: 1, ..Filter::default() };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let bad = |what: &str| (k.to_string(), format!("\"{v}\" is not {what}"));
            let date = || crmkit_core::values::date::parse(v).map_err(|_| bad("a day (YYYY-MM-DD)"));
            let amount = || v.parse::<Decimal>().map_err(|_| bad("an amount"));
            match k.as_ref() {
                "kind" => f.kind = Some(v.to_string()),
                "manager" => f.manager = Some(v.parse().map_err(|_| bad("a user id"))?),
                "from" => f.from = Some(date()?),
                "to" => f.to = Some(date()?),
                "min" => f.min = Some(amount()?),
                "max" => f.max = Some(amount()?),
                "stage" => f.stage = Some(v.to_string()),
                "page" => f.page = v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| bad("a page number"))?,
                _ => {}
            }
        }
        Ok(f)
    }

    /// The query of this filter, without the paged column.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                q.push((k, v));
            }
        };
        put("kind", self.kind.clone());
        put("manager", self.manager.map(|m| m.to_string()));
        put("from", self.from.map(|d| d.to_string()));
        put("to", self.to.map(|d| d.to_string()));
        put("min", self.min.map(|d| d.to_string()));
        put("max", self.max.map(|d| d.to_string()));
        q
    }

    /// The board's address with this filter and `stage`'s column at `page`.
    fn href(&self, stage: &str, page: usize) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.extend_pairs(self.query());
        s.append_pair("stage", stage);
        s.append_pair("page", &page.to_string());
        format!("/board?{}", s.finish())
    }

    fn keeps(&self, d: &Deal) -> bool {
        let day = d.expected_close.unwrap_or_else(|| d.created_at.date());
        self.from.is_none_or(|f| day >= f)
            && self.to.is_none_or(|t| day <= t)
            && self.min.is_none_or(|m| d.amount.amount >= m)
            && self.max.is_none_or(|m| d.amount.amount <= m)
    }
}

/// One column: the stage, the cards shown (with their partner's name and, for a managed
/// kind, the open tasks of the stage), how many deals are in it and the page shown.
pub struct Column<'a> {
    pub stage: &'a str,
    pub name: &'a str,
    pub cards: Vec<(Deal, String, Vec<Task>)>,
    pub total: usize,
    pub page: usize,
}

/// The deals of `kind` in progress that `caller` sees and `filter` keeps: managers their
/// own, heads their department's, admins and viewers everyone's — read by manager where
/// the scope or the filter names the managers, by stage otherwise.
fn deals(r: &impl Reader, caller: &Caller, kind: &ProcessKindSpec, filter: &Filter) -> Result<Vec<Deal>, ApiError> {
    let managers: Option<Vec<UserId>> = match (filter.manager, caller.role) {
        (Some(m), _) => Some(vec![m]),
        (None, Role::Manager) => Some(vec![caller.user.id]),
        (None, Role::Head) => {
            let mut ids = vec![caller.user.id];
            r.for_each::<User>(|u| {
                if u.id != caller.user.id && u.department.is_some() && u.department == caller.user.department {
                    ids.push(u.id);
                }
                true
            })
            .map_err(ApiError::from)?;
            Some(ids)
        }
        (None, Role::Admin | Role::Viewer) => None,
    };
    let mut found = Vec::new();
    let mut keep = |d: Deal| -> Result<(), ApiError> {
        if d.status == DealStatus::InProgress
            && d.kind == kind.id
            && filter.keeps(&d)
            && caller.may(r, super::super::access::Access::Read, &d).map_err(ApiError::from)?
        {
            found.push(d);
        }
        Ok(())
    };
    match managers {
        Some(ids) => {
            for m in ids {
                for d in r.find::<Deal>(Index::DealByManager, &m.raw().to_bytes(), None, usize::MAX)? {
                    keep(d)?;
                }
            }
        }
        None => {
            for stage in &kind.stages {
                let prefix = crmkit_core::model::text_prefix(&[&kind.id, &stage.id]);
                let mut after = None;
                loop {
                    let page: Vec<Deal> = r.find(Index::DealByStage, &prefix, after, 1000)?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id.raw());
                    for d in page {
                        keep(d)?;
                    }
                }
            }
        }
    }
    Ok(found)
}

/// The columns of `kind` as `caller` sees them through `filter`.
pub fn columns<'a>(
    r: &impl Reader,
    caller: &Caller,
    kind: &'a ProcessKindSpec,
    filter: &Filter,
) -> Result<Vec<Column<'a>>, ApiError> {
    let mut by_stage: HashMap<&str, Vec<Deal>> = HashMap::new();
    for d in deals(r, caller, kind, filter)? {
        if let Some(s) = kind.stages.iter().find(|s| Some(s.id.as_str()) == d.stage.as_deref()) {
            by_stage.entry(s.id.as_str()).or_default().push(d);
        }
    }
    let managed = kind.mode == Mode::Managed;
    let mut names: HashMap<crmkit_core::id::PartnerId, String> = HashMap::new();
    let mut out = Vec::new();
    for stage in &kind.stages {
        let mut all = by_stage.remove(stage.id.as_str()).unwrap_or_default();
        // The longest in the stage first: they wait the longest.
        all.sort_by_key(|d| (d.stage_entered_at.unwrap_or(d.created_at), d.id));
        let total = all.len();
        let page = if filter.stage.as_deref() == Some(stage.id.as_str()) { filter.page } else { 1 };
        let mut cards = Vec::new();
        for d in all.into_iter().skip((page - 1) * PER_COLUMN).take(PER_COLUMN) {
            let name = match names.get(&d.partner) {
                Some(n) => n.clone(),
                None => {
                    let n = r.get::<Partner>(d.partner)?.map(|p| p.name).unwrap_or_default();
                    names.insert(d.partner, n.clone());
                    n
                }
            };
            let tasks = if managed {
                let entered = d.stage_entered_at.unwrap_or(d.created_at);
                r.tasks_of_deal(d.id)?
                    .into_iter()
                    .filter(|t| {
                        t.status == TaskStatus::Open
                            && t.stage.as_deref() == d.stage.as_deref()
                            && t.created_at >= entered
                    })
                    .collect()
            } else {
                Vec::new()
            };
            cards.push((d, name, tasks));
        }
        out.push(Column { stage: &stage.id, name: &stage.name, cards, total, page });
    }
    Ok(out)
}

fn days_in_stage(d: &Deal, now: Timestamp) -> i64 {
    (now.0 - d.stage_entered_at.unwrap_or(d.created_at).0).max(0) / 86_400_000
}

/// What the board page shows.
#[derive(Clone, Copy)]
pub struct Board<'a> {
    /// Every process kind, for the links to their boards.
    pub kinds: &'a [ProcessKindSpec],
    pub kind: &'a ProcessKindSpec,
    pub columns: &'a [Column<'a>],
    pub filter: &'a Filter,
    /// The managers the caller may filter by (none for a manager).
    pub managers: &'a [(UserId, String)],
    pub now: Timestamp,
    pub csrf: &'a str,
    /// A move refused, shown on its card.
    pub refusal: Option<&'a Refusal>,
    /// Whether the cards carry their move forms (not for viewers).
    pub may_move: bool,
}

fn filters(lang: &str, b: &Board<'_>) -> Markup {
    let f = b.filter;
    let shown = |v: Option<String>| v.unwrap_or_default();
    html! {
        form.filters method="get" action="/board" {
            input type="hidden" name="kind" value=(b.kind.id);
            @if !b.managers.is_empty() {
                label { (t(lang, "manager")) " "
                    select name="manager" {
                        option value="" { "—" }
                        @for (id, name) in b.managers {
                            option value=(id) selected[f.manager == Some(*id)] { (name) }
                        }
                    }
                }
            }
            label title=(t(lang, "period_hint")) { (t(lang, "from")) " " input type="date" name="from" value=(shown(f.from.map(|d| d.to_string()))); }
            label { (t(lang, "to")) " " input type="date" name="to" value=(shown(f.to.map(|d| d.to_string()))); }
            label { (t(lang, "amount_from")) " " input type="number" step="any" min="0" name="min" value=(shown(f.min.map(|d| d.to_string()))); }
            label { (t(lang, "amount_to")) " " input type="number" step="any" min="0" name="max" value=(shown(f.max.map(|d| d.to_string()))); }
            button type="submit" { (t(lang, "show")) }
        }
    }
}

fn card(lang: &str, b: &Board<'_>, c: &Column<'_>, d: &Deal, partner: &str, tasks: &[Task]) -> Markup {
    let managed = b.kind.mode == Mode::Managed;
    let refused = b.refusal.filter(|r| r.deal == d.id);
    let back = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.extend_pairs(b.filter.query());
        if c.page > 1 {
            s.append_pair("stage", c.stage);
            s.append_pair("page", &c.page.to_string());
        }
        s.finish()
    };
    html! {
        article.card data-deal=(d.id) data-version=(d.version) data-movable=[(b.may_move && !managed).then_some("true")] {
            div.title {
                @if b.may_move && !managed { span.grip aria-hidden="true" { "⠿" } " " }
                a href={ "/deal/" (d.id) } { (d.title) }
            }
            div.partner { (partner) }
            div.facts {
                span.amount { (d.amount.amount) " " (d.amount.currency) }
                " · " span.days { (days_in_stage(d, b.now)) " " (t(lang, "days")) }
                @if let Some(s) = &d.score { " · " span.score { (format!("{:.0}", s.probability)) "%" } }
            }
            @if let Some(r) = refused {
                p.error.refusal role="alert" data-field=[r.field.as_deref()] {
                    @if let Some(f) = &r.field { strong { (f) } ": " }
                    (r.message)
                }
            }
            @if managed {
                ul.tasks {
                    @for task in tasks {
                        li data-task=(task.id) {
                            span { (task.title) @if task.required { " *" } }
                            @if let Some(due) = task.due {
                                " " span class=(if due < b.now { "due overdue" } else { "due" }) { (due.date()) }
                            }
                            @if b.may_move {
                                form.task method="post" action="/board/task" {
                                    input type="hidden" name="csrf" value=(b.csrf);
                                    input type="hidden" name="deal" value=(d.id);
                                    input type="hidden" name="task" value=(task.id);
                                    input type="hidden" name="version" value=(task.version);
                                    input type="hidden" name="back" value=(back);
                                    button type="submit" { (t(lang, "task_done")) }
                                }
                            }
                        }
                    }
                    @if tasks.is_empty() { li.empty { (t(lang, "no_open_tasks")) } }
                }
            } @else if b.may_move {
                form.move method="post" action="/board/move" {
                    input type="hidden" name="csrf" value=(b.csrf);
                    input type="hidden" name="deal" value=(d.id);
                    input type="hidden" name="version" value=(d.version);
                    input type="hidden" name="back" value=(back);
                    select name="stage" aria-label=(t(lang, "move_to")) {
                        @for other in b.columns.iter().filter(|o| o.stage != c.stage) {
                            option value=(other.stage) { (other.name) }
                        }
                    }
                    button type="submit" { (t(lang, "move")) }
                }
            }
        }
    }
}

/// The board page.
pub fn page(lang: &str, b: &Board<'_>) -> Markup {
    let managed = b.kind.mode == Mode::Managed;
    html! {
        h1 { (t(lang, "board")) ": " (b.kind.name) }
        nav.kinds {
            @for k in b.kinds {
                @if k.id == b.kind.id { strong { (k.name) } } @else { a href={ "/board?kind=" (k.id) } { (k.name) } }
                " "
            }
        }
        (filters(lang, b))
        @if managed { p.note { (t(lang, "board_managed")) } }
        div.board data-kind=(b.kind.id) {
            @for c in b.columns {
                section.column data-stage=(c.stage) {
                    h2 { (c.name) " " span.count { "(" (c.total) ")" } }
                    @for (d, partner, tasks) in &c.cards { (card(lang, b, c, d, partner, tasks)) }
                    @let pages = c.total.div_ceil(PER_COLUMN);
                    @if pages > 1 {
                        nav.pages {
                            @if c.page > 1 { a.prev href=(b.filter.href(c.stage, c.page - 1)) { "←" } " " }
                            span { (c.page) " / " (pages) }
                            @if c.page < pages { " " a.next href=(b.filter.href(c.stage, c.page + 1)) { "→" } }
                        }
                    }
                }
            }
        }
    }
}

/// The managers `caller` may filter the board by: a head's department, everyone's for
/// admins and viewers, none for a manager (the board is theirs).
fn managers(r: &impl Reader, caller: &Caller) -> Result<Vec<(UserId, String)>, ApiError> {
    let mut out = Vec::new();
    if caller.role == Role::Manager {
        return Ok(out);
    }
    let mut failed = None;
    r.for_each::<User>(|u| {
        if u.roles.iter().any(|r| matches!(r, Role::Manager | Role::Head)) {
            match caller.covers(r, u.id) {
                Ok(true) => out.push((u.id, u.name.clone())),
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The board of the kind the query names (the first configured by default), through its
/// filters, with a refusal on its card when a change was refused.
pub(super) fn show(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    query: &str,
    refusal: Option<(Refusal, StatusCode)>,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let r = app.inst.store().read()?;
    let Some(caller) = super::caller(&r, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    let filter = match Filter::parse(query) {
        Ok(f) => f,
        Err((field, message)) => {
            let m = pages::message(&format!("{field}: {message}"));
            return Ok(reply.page(StatusCode::BAD_REQUEST, t(lang, "board"), Some(&viewer), m));
        }
    };
    let kinds = &r.settings().process_kinds;
    let Some(spec) = filter.kind.as_deref().map_or(kinds.first(), |k| kinds.iter().find(|s| s.id == k)) else {
        return Ok(super::not_found(reply));
    };
    let columns = columns(&r, &caller, spec, &filter)?;
    let managers = managers(&r, &caller)?;
    let (refusal, status) = super::split(refusal);
    let b = Board {
        kinds,
        kind: spec,
        columns: &columns,
        filter: &filter,
        managers: &managers,
        now: r.now(),
        csrf,
        refusal: refusal.as_ref(),
        may_move: role != Role::Viewer,
    };
    Ok(reply.page(status, t(lang, "board"), Some(&viewer), page(lang, &b)))
}

/// What a card's form changes: the deal's stage, or one of its stage's tasks done.
pub(super) enum Change {
    Move,
    Task,
}

/// Moves a deal (`/board/move`) or completes a managed stage's task (`/board/task`) from
/// the board, through the process engine as the API's `move` and `complete` do; answers
/// JSON to the board's script (`Accept: application/json`), the board page otherwise.
pub(super) async fn change(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    form: &Form,
    json: bool,
    change: Change,
) -> Result<Response<Body>, ApiError> {
    let (login, role, _) = who;
    let lang = reply.lang;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let bad = |field: &str| {
        if json {
            Ok(super::json_refusal(StatusCode::BAD_REQUEST, &format!("{field}?"), Some(field)))
        } else {
            Ok(super::refused_with(super::reply_for(lang), field))
        }
    };
    let Some(deal) = form.get("deal").and_then(|d| d.parse::<DealId>().ok()) else { return bad("deal") };
    let Some(version) = form.get("version").and_then(|v| v.parse::<u64>().ok()) else { return bad("version") };
    let back = form.get("back").cloned().unwrap_or_default();
    let kind: Option<String> = app.inst.store().read()?.get::<Deal>(deal)?.map(|d| d.kind);
    let who_writes = caller.clone();
    let done = match change {
        Change::Move => {
            let Some(stage) = form.get("stage").cloned() else { return bad("stage") };
            app.writer
                .write(Some((caller.user.id, role)), move |engine, tx| {
                    super::super::entities::writable::<Deal>(&*tx, &who_writes, deal.raw())?;
                    let d = engine.move_deal(tx, deal, version, &stage, None)?;
                    Ok(serde_json::json!({ "version": d.version, "stage": d.stage }))
                })
                .await
        }
        Change::Task => {
            let Some(task) = form.get("task").and_then(|d| d.parse::<TaskId>().ok()) else { return bad("task") };
            app.writer
                .write(Some((caller.user.id, role)), move |engine, tx| {
                    let t = super::super::tasks::finish_task(engine, tx, &who_writes, task, version, true)?;
                    Ok(serde_json::json!({ "version": t.version, "status": t.status.name() }))
                })
                .await
        }
    };
    // The board the card was on, with its filters (only the board's own parameters, each
    // escaped again).
    let query = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        let pairs: Vec<(String, String)> = form_urlencoded::parse(back.as_bytes())
            .into_owned()
            .filter(|(k, _)| ["manager", "from", "to", "min", "max", "stage", "page"].contains(&k.as_str()))
            .collect();
        s.append_pair("kind", kind.as_deref().unwrap_or_default());
        s.extend_pairs(pairs);
        s.finish()
    };
    match done {
        Ok(answer) if json => {
            Ok(super::secured(Response::builder().status(StatusCode::OK).header("content-type", "application/json"))
                .body(super::super::full(answer.to_string()))
                .expect("a valid response"))
        }
        Ok(_) => Ok(reply.redirect(&format!("/board?{query}"))),
        Err(e) => {
            let (message, field, status) = e.parts();
            if json {
                return Ok(super::json_refusal(status, message, field));
            }
            let refusal = Refusal { deal, message: message.to_string(), field: field.map(str::to_string) };
            show(app, reply, who, &query, Some((refusal, status)))
        }
    }
}
