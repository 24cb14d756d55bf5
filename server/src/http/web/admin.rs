//! Administration, for admins: users and their roles (a new user, roles and the active
//! flag changed, a password set or reset), API tokens (created — the secret shown once —
//! and revoked), the scripts and plugins with their state, each hook handler's calls,
//! faults and last fault, and their reload; and an import of a file with its per-row
//! report. Every form goes through the API's own operations, so a refusal is the API's.

use std::collections::BTreeMap;
use std::sync::Arc;

use crmkit_core::id::{TypedId, UserId};
use crmkit_core::model::{Role, User};
use crmkit_core::store::Reader;
use crmkit_core::transfer::Report;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::super::{ApiError, App, Body, Caller};
use super::i18n::t;
use super::{pages, Reply, Who};

/// The kinds of entity a file may carry, as the import names them.
const IMPORTS: [&str; 9] = [
    "partners",
    "counterparties",
    "contacts",
    "loyalty_programs",
    "loyalty_cards",
    "deals",
    "interactions",
    "documents",
    "claims",
];

/// What a form posted on the page led to, shown above its section.
pub enum Outcome {
    /// A form refused: which one, the message and the field it names.
    Refused(pages::Refusal),
    /// A token created: its secret, shown this once.
    Token { login: String, secret: String },
    /// A password set for a login.
    Password(String),
    /// The reload's answer: whether it applied, and why not.
    Reloaded { applied: bool, errors: Vec<String> },
    /// An import's report, and whether the file was refused whole.
    Imported { entity: String, report: Box<Report>, refused: bool },
}

struct State<'a> {
    users: Vec<(User, bool)>,
    tokens: Vec<crate::token::Token>,
    app: &'a App,
    csrf: &'a str,
    outcome: Option<&'a Outcome>,
}

fn refusal<'a>(s: &'a State<'_>) -> Option<&'a pages::Refusal> {
    match s.outcome {
        Some(Outcome::Refused(r)) => Some(r),
        _ => None,
    }
}

fn csrf(s: &State<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn users(lang: &str, s: &State<'_>) -> Markup {
    html! {
        section.card.users {
            h2 { (t(lang, "users")) " (" (s.users.len()) ")" }
            @if let Some(Outcome::Password(login)) = s.outcome { p.ok role="status" { (t(lang, "password_set")) ": " (login) } }
            table {
                thead { tr { th { (t(lang, "login")) } th { (t(lang, "name")) } th { (t(lang, "department")) } th { (t(lang, "roles")) } th { (t(lang, "password")) } } }
                tbody {
                    @for (u, has_password) in &s.users {
                        @let action = format!("user-{}", u.id);
                        @let password = format!("password-{}", u.id);
                        tr data-user=(u.login) class=[(!u.active).then_some("inactive")] {
                            td { (u.login) }
                            td { (u.name) }
                            td { (u.department.as_deref().unwrap_or("—")) }
                            td {
                                form.roles method="post" action={ "/admin/users/" (u.id) } {
                                    (csrf(s))
                                    input type="hidden" name="version" value=(u.version);
                                    (pages::refused(refusal(s), &action))
                                    @for r in Role::ALL {
                                        label { input type="checkbox" name="role" value=(r.name()) checked[u.roles.contains(&r)]; " " (r.name()) }
                                    }
                                    label { input type="checkbox" name="active" value="true" checked[u.active]; " " (t(lang, "active")) }
                                    button type="submit" { (t(lang, "save")) }
                                }
                            }
                            td {
                                form.password method="post" action={ "/admin/password/" (u.id) } {
                                    (csrf(s))
                                    (pages::refused(refusal(s), &password))
                                    input type="password" name="password" autocomplete="new-password" minlength=(crate::password::MIN_CHARS)
                                        placeholder=(if *has_password { t(lang, "reset_password") } else { t(lang, "set_password") })
                                        aria-label=(t(lang, "password"));
                                    button type="submit" { (if *has_password { t(lang, "reset_password") } else { t(lang, "set_password") }) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (t(lang, "new_user")) }
            form.new-user method="post" action="/admin/users" {
                (csrf(s))
                (pages::refused(refusal(s), "new-user"))
                input type="text" name="login" placeholder=(t(lang, "login")) required;
                input type="text" name="name" placeholder=(t(lang, "name")) required;
                input type="text" name="department" placeholder=(t(lang, "department"));
                select name="role" aria-label=(t(lang, "role")) { @for r in Role::ALL { option value=(r.name()) selected[r == Role::Manager] { (r.name()) } } }
                button type="submit" { (t(lang, "create")) }
            }
        }
    }
}

fn tokens(lang: &str, s: &State<'_>) -> Markup {
    html! {
        section.card.tokens {
            h2 { (t(lang, "tokens")) " (" (s.tokens.len()) ")" }
            @if let Some(Outcome::Token { login, secret }) = s.outcome {
                div.ok.secret role="status" {
                    p { (t(lang, "token_created")) " " strong { (login) } }
                    code.token { (secret) }
                }
            }
            (pages::refused(refusal(s), "token"))
            table {
                thead { tr { th { "id" } th { (t(lang, "login")) } th { (t(lang, "role")) } th { (t(lang, "created")) } th {} } }
                tbody {
                    @for tk in &s.tokens {
                        tr data-token=(tk.id()) class=[tk.revoked.then_some("inactive")] {
                            td { code { (tk.id()) } }
                            td { (tk.login) }
                            td { (tk.role.name()) }
                            td.num { (tk.created.get(..16).unwrap_or(&tk.created).replace('T', " ")) }
                            td {
                                @if tk.revoked { (t(lang, "revoked")) } @else {
                                    form.revoke method="post" action={ "/admin/tokens/" (tk.id()) "/revoke" } {
                                        (csrf(s))
                                        button type="submit" { (t(lang, "revoke")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.new-token method="post" action="/admin/tokens" {
                (csrf(s))
                input type="text" name="login" placeholder=(t(lang, "login")) required;
                select name="role" aria-label=(t(lang, "role")) { @for r in Role::ALL { option value=(r.name()) { (r.name()) } } }
                button type="submit" { (t(lang, "new_token")) }
            }
        }
    }
}

fn scripts(lang: &str, s: &State<'_>) -> Markup {
    let app = s.app;
    let stats = app.bound.engine().hooks().stats();
    html! {
        section.card.scripts {
            h2 { (t(lang, "scripts_and_plugins")) }
            @if let Some(Outcome::Reloaded { applied, errors }) = s.outcome {
                @if *applied { p.ok role="status" { (t(lang, "reloaded")) } } @else {
                    div.error role="alert" { p { (t(lang, "reload_refused")) } ul { @for e in errors { li { (e) } } } }
                }
            }
            table {
                thead { tr { th { (t(lang, "script")) } th { (t(lang, "in_use")) } th { (t(lang, "state")) } } }
                tbody {
                    @for sc in app.scripts.status() {
                        tr data-script=(sc.file) {
                            td { (sc.file) }
                            td { (if sc.in_use { "✓" } else { "—" }) }
                            td { @match &sc.error { Some(e) => span.error-text { (e) }, None => (t(lang, "compiles")) } }
                        }
                    }
                    @for p in app.bound.plugins().status() {
                        tr data-plugin=(p.name) {
                            td { (p.name) " " (p.version.as_deref().unwrap_or("")) " (wasm)" }
                            td { (if p.in_use { "✓" } else { "—" }) }
                            td {
                                @match &p.error { Some(e) => span.error-text { (e) }, None => (t(lang, "loads")) }
                                @if p.pending { " · " (t(lang, "pending")) }
                            }
                        }
                    }
                }
            }
            h2 { (t(lang, "hook_handlers")) }
            table.handlers {
                thead { tr { th { (t(lang, "hook_point")) } th { (t(lang, "handler")) } th.num { (t(lang, "calls")) } th.num { (t(lang, "faults")) } th { (t(lang, "last_fault")) } } }
                tbody {
                    @for h in &stats {
                        tr data-handler=(h.handler) {
                            td { (h.point.name()) }
                            td { (h.handler) }
                            td.num { (h.calls) }
                            td.num { (h.faults) }
                            td { @if let Some(f) = &h.last_fault { span.error-text { (f) } } @else { "—" } }
                        }
                    }
                }
            }
            form.reload method="post" action="/admin/reload" {
                (csrf(s))
                button type="submit" { (t(lang, "reload")) }
            }
        }
    }
}

fn import(lang: &str, s: &State<'_>) -> Markup {
    html! {
        section.card.import {
            h2 { (t(lang, "import")) }
            form.import method="post" action="/admin/import" enctype="multipart/form-data" {
                (csrf(s))
                (pages::refused(refusal(s), "import"))
                select name="entity" aria-label=(t(lang, "kind")) { @for e in IMPORTS { option value=(e) { (e) } } }
                select name="format" aria-label=(t(lang, "format")) {
                    option value="" { (t(lang, "format_by_name")) }
                    option value="csv" { "CSV" }
                    option value="jsonl" { "JSON lines" }
                }
                input type="text" name="delimiter" maxlength="1" size="2" placeholder="," aria-label=(t(lang, "delimiter"));
                label { input type="checkbox" name="atomic" value="true"; " " (t(lang, "atomic")) }
                label { input type="checkbox" name="dry_run" value="true"; " " (t(lang, "dry_run")) }
                input type="file" name="file" accept=".csv,.jsonl,.ndjson,text/csv" aria-label=(t(lang, "file"));
                button type="submit" { (t(lang, "import")) }
            }
            @if let Some(Outcome::Imported { entity, report, refused }) = s.outcome {
                div.report data-refused=(refused) {
                    p class=(if *refused { "error" } else { "ok" }) role="status" {
                        (entity) ": " (t(lang, if *refused { "import_refused" } else if report.written { "import_written" } else { "import_nothing_written" }))
                    }
                    table.counts {
                        tbody {
                            tr { th { (t(lang, "rows")) } td.num.rows { (report.rows) } }
                            tr { th { (t(lang, "created_rows")) } td.num.created { (report.created) } }
                            tr { th { (t(lang, "updated_rows")) } td.num.updated { (report.updated) } }
                            tr { th { (t(lang, "unchanged_rows")) } td.num.unchanged { (report.unchanged) } }
                            tr { th { (t(lang, "failed_rows")) } td.num.failed { (report.failed) } }
                        }
                    }
                    @if let Some(stop) = &report.stopped { p.error.stopped { (stop.to_string()) } }
                    @if !report.errors.is_empty() {
                        table.row-errors {
                            thead { tr { th.num { (t(lang, "row")) } th.num { (t(lang, "line")) } th { (t(lang, "key")) } th { (t(lang, "field")) } th { (t(lang, "message")) } } }
                            tbody {
                                @for e in &report.errors {
                                    tr data-row=(e.row) {
                                        td.num { (e.row) } td.num { (e.line) } td { (e.key.as_deref().unwrap_or("—")) } td.field { (e.field) } td.message { (e.message) }
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

/// The administration page, with what the last form led to.
fn show(
    app: &Arc<App>,
    reply: Reply,
    caller: &Caller,
    csrf: &str,
    outcome: Option<Outcome>,
    status: StatusCode,
) -> Result<Response<Body>, ApiError> {
    let lang = reply.lang;
    let r = app.inst.store().read()?;
    let with_password: std::collections::BTreeSet<String> = crate::password::load(app.inst.dir())
        .map_err(|e| ApiError::internal("reading the passwords", e))?
        .into_iter()
        .map(|p| p.login)
        .collect();
    let mut all = Vec::new();
    r.for_each::<User>(|u| {
        let has = with_password.contains(&u.login);
        all.push((u, has));
        true
    })?;
    all.sort_by(|a, b| a.0.login.cmp(&b.0.login));
    let known = app.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
    let state = State { users: all, tokens: known, app, csrf, outcome: outcome.as_ref() };
    let content = html! {
        h1 { (t(lang, "administration")) }
        (users(lang, &state))
        (tokens(lang, &state))
        (scripts(lang, &state))
        (import(lang, &state))
    };
    let viewer = pages::Viewer { name: &caller.user.name, role: caller.role, csrf };
    Ok(reply.page(status, t(lang, "administration"), Some(&viewer), content))
}

/// Answers the administration paths (`/admin`, `/admin/…`) for a signed-in admin; anyone
/// else gets a 403 page.
pub(super) async fn handle(
    app: &Arc<App>,
    reply: Reply,
    who: Who<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (login, role, csrf) = who;
    let lang = reply.lang;
    let Some(caller) = super::signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    if role != Role::Admin {
        let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
        let m = pages::message(t(lang, "admins_only"));
        return Ok(reply.page(StatusCode::FORBIDDEN, t(lang, "administration"), Some(&viewer), m));
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return match path.as_str() {
            "/admin" => show(app, reply, &caller, csrf, None, StatusCode::OK),
            _ => Ok(super::not_found(reply)),
        };
    }
    if method != Method::POST {
        return Ok(super::not_found(reply));
    }
    if path == "/admin/import" {
        return import_file(app, reply, &caller, csrf, req).await;
    }
    let Some(form) = super::own_form(req, csrf).await? else { return Ok(super::refused(reply)) };
    let refused = |reply: Reply, form_id: &str, e: ApiError| {
        let (r, status) = pages::Refusal::of(form_id, &e);
        show(app, reply, &caller, csrf, Some(Outcome::Refused(r)), status)
    };
    let rest: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
    match rest.as_slice() {
        ["users"] => {
            let text = |k: &str| form.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
            let mut body = Map::new();
            body.insert("login".into(), json!(text("login").unwrap_or_default()));
            body.insert("name".into(), json!(text("name").unwrap_or_default()));
            if let Some(d) = text("department") {
                body.insert("department".into(), json!(d));
            }
            body.insert("roles".into(), json!([text("role").unwrap_or_else(|| "manager".into())]));
            let body = match super::super::entities::new_entity::<User>(&caller, body) {
                Ok(b) => b,
                Err(e) => return refused(reply, "new-user", e),
            };
            let who_writes = caller.clone();
            let done = app
                .writer
                .write(Some((caller.user.id, role)), move |engine, tx| {
                    super::super::entities::create_entity::<User>(engine, tx, &who_writes, body)
                })
                .await;
            match done {
                Ok(_) => Ok(reply.redirect("/admin")),
                Err(e) => refused(reply, "new-user", e),
            }
        }
        ["users", id] => {
            let form_id = format!("user-{id}");
            let Ok(id) = id.parse::<UserId>() else { return Ok(super::not_found(reply)) };
            let version = form.get("version").and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
            let roles: Vec<Value> = form.all("role").into_iter().map(|r| json!(r)).collect();
            let mut patch = Map::new();
            patch.insert("roles".into(), Value::Array(roles));
            patch.insert("active".into(), json!(form.get("active").is_some()));
            let who_writes = caller.clone();
            let done = app
                .writer
                .write(Some((caller.user.id, role)), move |engine, tx| {
                    super::super::entities::patch_entity::<User>(
                        engine,
                        tx,
                        &who_writes,
                        id.raw(),
                        version,
                        patch,
                        false,
                    )
                })
                .await;
            match done {
                Ok(_) => Ok(reply.redirect("/admin")),
                Err(e) => refused(reply, &form_id, e),
            }
        }
        ["password", id] => {
            let form_id = format!("password-{id}");
            let Ok(id) = id.parse::<UserId>() else { return Ok(super::not_found(reply)) };
            let password = form.get("password").cloned().unwrap_or_default();
            match super::super::admin::set_user_password(app, id, password).await {
                Ok(login) => show(app, reply, &caller, csrf, Some(Outcome::Password(login)), StatusCode::OK),
                Err(e) => refused(reply, &form_id, e),
            }
        }
        ["tokens"] => {
            let login = form.get("login").map(|l| l.trim().to_string()).unwrap_or_default();
            let Some(token_role) = form.get("role").and_then(|r| Role::ALL.into_iter().find(|x| x.name() == r)) else {
                let e = ApiError::at(
                    StatusCode::BAD_REQUEST,
                    super::super::Code::BadBody,
                    "role",
                    format!("choose one of the roles: {}", Role::ALL.map(|r| r.name()).join(", ")),
                );
                return refused(reply, "token", e);
            };
            match super::super::admin::new_token(app, &login, token_role) {
                Ok(body) => {
                    let secret = body["token"].as_str().unwrap_or_default().to_string();
                    show(app, reply, &caller, csrf, Some(Outcome::Token { login, secret }), StatusCode::CREATED)
                }
                Err(e) => refused(reply, "token", e),
            }
        }
        ["tokens", id, "revoke"] => match super::super::admin::revoke(app, id) {
            Ok(_) => Ok(reply.redirect("/admin")),
            Err(e) => refused(reply, "token", e),
        },
        ["reload"] => {
            let r = crate::script::reload(&app.inst, &app.scripts, &app.bound);
            let errors: Vec<String> =
                r.script_errors.iter().chain(&r.plugin_errors).chain(&r.config_errors).cloned().collect();
            for e in &errors {
                tracing::warn!("reload: {e}");
            }
            let status = if r.applied { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            show(app, reply, &caller, csrf, Some(Outcome::Reloaded { applied: r.applied, errors }), status)
        }
        _ => Ok(super::not_found(reply)),
    }
}

/// An import from the page's form: the file and its options, run as the API's import runs
/// (one at a time, the same limits), answered with its per-row report.
async fn import_file(
    app: &Arc<App>,
    reply: Reply,
    caller: &Caller,
    csrf: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    use std::io::{Read as _, Seek as _};
    let refused = |reply: Reply, e: ApiError| {
        let (r, status) = pages::Refusal::of("import", &e);
        show(app, reply, caller, csrf, Some(Outcome::Refused(r)), status)
    };
    // A form from another site is refused before its body is read.
    if !super::same_origin(&req) {
        return Ok(super::refused(reply));
    }
    let content_type = req.headers().get("content-type").and_then(|c| c.to_str().ok()).unwrap_or_default();
    let Some(boundary) = super::multipart::boundary(content_type) else { return Ok(super::refused(reply)) };
    let running = match super::super::import::claim(app) {
        Ok(r) => r,
        Err(e) => return refused(reply, e),
    };
    let (max, limit) = (512 << 20, "the import limit");
    let mut spooled = match super::super::files::spool(app, req, max, limit).await {
        Ok(f) => f,
        Err(e) => return refused(reply, e),
    };
    let parts = match super::multipart::split(spooled.as_file_mut(), &boundary) {
        Ok(p) => p,
        Err(m) => {
            return refused(reply, ApiError::at(StatusCode::BAD_REQUEST, super::super::Code::BadBody, "file", m));
        }
    };
    if parts.fields.get("csrf").map(String::as_str) != Some(csrf) {
        return Ok(super::refused(reply));
    }
    let Some(file) = parts.file else {
        let e =
            ApiError::at(StatusCode::BAD_REQUEST, super::super::Code::BadBody, "file", t(reply.lang, "choose_file"));
        return refused(reply, e);
    };
    let entity = parts.fields.get("entity").cloned().unwrap_or_default();
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for k in ["format", "delimiter", "atomic", "dry_run"] {
        if let Some(v) = parts.fields.get(k).filter(|v| !v.trim().is_empty()) {
            params.insert(k.to_string(), v.trim().to_string());
        }
    }
    // The format by the file's name when the form does not say.
    if !params.contains_key("format") {
        let name = file.name.to_lowercase();
        if name.ends_with(".csv") {
            params.insert("format".into(), "csv".into());
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            params.insert("format".into(), "jsonl".into());
        }
    }
    let opts = match super::super::import::options(&entity, &params, file.mime.as_deref()) {
        Ok(o) => o,
        Err(e) => return refused(reply, e),
    };
    let (held, held_limit) = super::super::import::limit(&opts);
    if file.len > held {
        return refused(reply, super::super::files::over_limit("file", held, held_limit));
    }
    let mut input = spooled.reopen().map_err(|e| ApiError::internal("an import's temporary file", e))?;
    input
        .seek(std::io::SeekFrom::Start(file.offset))
        .map_err(|e| ApiError::internal("an import's temporary file", e))?;
    let input = input.take(file.len);
    match super::super::import::run(app, caller, &entity, opts, running, input).await {
        Ok((report, refused_whole)) => {
            let status = if refused_whole { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let outcome = Outcome::Imported { entity, report: Box::new(report), refused: refused_whole };
            show(app, reply, caller, csrf, Some(outcome), status)
        }
        Err(e) => refused(reply, e),
    }
}
