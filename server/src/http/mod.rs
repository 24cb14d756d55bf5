//! `crmkit serve`: the CRM over HTTP — hyper 1 on tokio, HTTP/1.1 and HTTP/2, bearer
//! tokens, JSON errors, graceful shutdown on SIGINT and SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use crmkit_core::id::DealId;
use crmkit_core::model::{Deal, Role};
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::token::{self, Token};

/// The most connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a JSON body whole, and the longest pause between
/// pieces of a streamed upload.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long scripts still running on shutdown (a long report) may go on before they are
/// ended.
const SCRIPT_GRACE: Duration = Duration::from_secs(2);

/// What every request handler shares.
struct App {
    inst: Arc<Installation>,
    /// The API tokens, as `data/tokens.jsonl` has them; admins change both at once.
    tokens: std::sync::RwLock<Vec<Token>>,
    /// Held while the tokens file is written, so that requests only wait for the swap.
    token_writes: std::sync::Mutex<()>,
    writer: writer::Writer,
    scripts: Arc<crmkit_rhai::ScriptHost>,
    /// The installation's reports (its report scripts).
    reports: crmkit_core::report::Reports,
    /// The engine imports write through (the writer thread has its own).
    import_engine: Arc<crmkit_core::process::Engine>,
    /// Held while an import runs: one at a time.
    importing: Arc<tokio::sync::Mutex<()>>,
    /// Seals the cursors of lists.
    cursors: cursor::Cursors,
}

/// Where uploads wait until they are whole: `data/uploads`, emptied when a server starts.
fn uploads_dir(app: &App) -> std::path::PathBuf {
    app.inst.dir().join("data").join("uploads")
}

mod access;
mod cursor;
mod entities;
mod files;
mod import;
mod tasks;
mod writer;

pub(crate) use access::Caller;

/// The largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// A response body: whole, or streamed (attachment downloads).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A whole response body.
fn full(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt as _;
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty response body.
fn empty() -> Body {
    full(Bytes::new())
}

/// An error answer: `{ "code", "message", "field" }` with its status.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// An error about one field of the request.
    fn at(status: StatusCode, code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: Some(field.to_string()) }
    }

    /// A failure of the server itself: logged with what was being done, answered without
    /// details.
    fn internal(doing: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("{doing}: {e:#}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; see its log")
    }

    /// The same refusal as a core error, for a write running in the writer.
    fn into_core(self) -> crmkit_core::Error {
        crmkit_core::Error::Forbidden(self.message)
    }

    fn into_response(self) -> Response<Body> {
        json_response(self.status, &json!({ "code": self.code, "message": self.message, "field": self.field }))
    }
}

impl From<crmkit_core::Error> for ApiError {
    fn from(e: crmkit_core::Error) -> ApiError {
        use crmkit_core::Error as E;
        match e {
            E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            E::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::Invalid(f) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid",
                message: f.message.clone(),
                field: Some(f.field.clone()),
            },
            E::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            E::Rejected { message, field, handler, .. } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "rejected",
                message: format!("{handler}: {message}"),
                field,
            },
            E::Process { .. } | E::NotAllowed(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_allowed", e.to_string())
            }
            E::Referenced { .. } => ApiError::new(StatusCode::CONFLICT, "referenced", e.to_string()),
            E::Duplicate { .. } => ApiError::new(StatusCode::CONFLICT, "duplicate", e.to_string()),
            E::HookFault { .. } => {
                tracing::error!("{e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "hook_failed", e.to_string())
            }
            other => {
                tracing::error!("internal error: {other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; see its log")
            }
        }
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .expect("a valid response")
}

fn authenticate(app: &App, req: &Request<Incoming>) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let header = req
        .headers()
        .get("authorization")
        .ok_or_else(|| unauthorized("this needs a token: Authorization: Bearer TOKEN"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header is not \"Bearer TOKEN\""))?;
    let h = token::hash(token.trim());
    let (login, role) = app
        .tokens
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|t| t.hash == h && !t.revoked)
        .map(|t| (t.login.clone(), t.role))
        .ok_or_else(|| unauthorized("the token is not known, or was revoked"))?;
    let user = app
        .inst
        .store()
        .read()
        .map_err(ApiError::from)?
        .user_by_login(&login)
        .map_err(ApiError::from)?
        .filter(|u| u.active)
        .ok_or_else(|| unauthorized("the token's user no longer exists or is deactivated"))?;
    if !user.roles.contains(&role) {
        return Err(unauthorized("the token's role was taken from its user"));
    }
    Ok(Caller { user, role })
}

/// Runs a long read — a report, a dossier, a deal's file — on the blocking pool, so that
/// the async workers go on serving.
async fn blocking(
    f: impl FnOnce() -> Result<Response<Body>, ApiError> + Send + 'static,
) -> Result<Response<Body>, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal("a read stopped", e))?
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = std::time::Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::info!(%method, path, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    Ok(response)
}

/// The OpenAPI 3.1 document of the API; a test keeps it and [`ROUTES`] the same.
const OPENAPI: &str = include_str!("openapi.json");

/// The entity resources, with whether they take `DELETE` (users are deactivated, deals
/// and tasks closed, never deleted).
const RESOURCES: &[(&str, bool)] = &[
    ("partners", true),
    ("counterparties", true),
    ("contacts", true),
    ("partner-links", true),
    ("contact-links", true),
    ("users", false),
    ("deals", false),
    ("participants", true),
    ("participant-links", true),
    ("interactions", true),
    ("documents", true),
    ("tasks", false),
    ("attachments", true),
];

/// Every route the server answers: method and path template, as the OpenAPI document
/// writes them. The router recognizes requests by this table, first match first: fixed
/// paths come before the templates they would also match.
static ROUTES: std::sync::LazyLock<Vec<(&'static str, String)>> = std::sync::LazyLock::new(|| {
    let fixed = [
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/process-kinds"),
        ("get", "/api/v1/process-kinds/{id}"),
        ("get", "/api/v1/tasks/mine"),
        ("get", "/api/v1/tasks/overdue"),
        ("post", "/api/v1/tasks/{id}/{action}"),
        ("get", "/api/v1/deals/{id}/file"),
        ("post", "/api/v1/deals/{id}/{action}"),
        ("get", "/api/v1/partners/{id}/dossier"),
        ("get", "/api/v1/reports"),
        ("get", "/api/v1/reports/{name}"),
        ("get", "/api/v1/attachments/{id}/content"),
        ("post", "/api/v1/import/{entity}"),
        ("get", "/api/v1/scripts"),
        ("post", "/api/v1/scripts/reload"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
    ];
    let mut routes: Vec<(&'static str, String)> = fixed.iter().map(|(m, p)| (*m, p.to_string())).collect();
    for (name, deletable) in RESOURCES {
        routes.push(("get", format!("/api/v1/{name}")));
        routes.push(("post", format!("/api/v1/{name}")));
        routes.push(("get", format!("/api/v1/{name}/{{id}}")));
        routes.push(("patch", format!("/api/v1/{name}/{{id}}")));
        if *deletable {
            routes.push(("delete", format!("/api/v1/{name}/{{id}}")));
        }
    }
    routes
});

/// The route `method path` takes, with the values of its `{…}` segments.
fn find_route<'p>(method: &Method, path: &'p str) -> Option<(&'static str, Vec<&'p str>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Methods are case-sensitive: `get` is not GET.
    let name = match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => return None,
    };
    ROUTES.iter().find_map(|(m, template)| {
        if *m != name {
            return None;
        }
        let mut parts = template.trim_matches('/').split('/');
        let mut values = Vec::new();
        for s in &segments {
            let t = parts.next()?;
            if t.starts_with('{') {
                values.push(*s);
            } else if t != *s {
                return None;
            }
        }
        parts.next().is_none().then_some((template.as_str(), values))
    })
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let Some((template, values)) = find_route(req.method(), &path) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_route", format!("no resource {} {path}", req.method())));
    };
    let values: Vec<String> = values.into_iter().map(str::to_string).collect();
    match template {
        "/health" => return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
        "/openapi.json" => {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(full(Bytes::from_static(OPENAPI.as_bytes())))
                .expect("a valid response"))
        }
        _ => {}
    }
    let caller = authenticate(app, &req)?;
    let q = req.uri().query().unwrap_or("").to_string();
    match (req.method().as_str(), template) {
        ("GET", "/api/v1/me") => Ok(json_response(
            StatusCode::OK,
            &json!({ "id": caller.user.id, "login": caller.user.login, "name": caller.user.name, "role": caller.role }),
        )),
        ("GET", "/api/v1/process-kinds") => {
            Ok(json_response(StatusCode::OK, &json!({ "items": app.inst.settings().process_kinds })))
        }
        ("GET", "/api/v1/process-kinds/{id}") => {
            let kind = app.inst.settings().process_kind(&values[0]).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no process kind \"{}\"", values[0]))
            })?;
            Ok(json_response(StatusCode::OK, &json!(kind)))
        }
        ("GET", "/api/v1/tasks/mine") => tasks::mine(app, &caller, &q),
        ("GET", "/api/v1/tasks/overdue") => tasks::overdue(app, &caller, &q),
        ("POST", "/api/v1/tasks/{id}/{action}") => tasks::finish(app, &caller, &values[0], &values[1], req).await,
        ("GET", "/api/v1/deals/{id}/file") => {
            let app = app.clone();
            blocking(move || get_deal_file(&app, &caller, &values[0], &q)).await
        }
        ("POST", "/api/v1/deals/{id}/{action}") => deal_action(app, &caller, &values[0], &values[1], req).await,
        ("GET", "/api/v1/partners/{id}/dossier") => {
            let app = app.clone();
            blocking(move || get_dossier(&app, &caller, &values[0])).await
        }
        ("GET", "/api/v1/reports") => list_reports(app, &caller),
        ("GET", "/api/v1/reports/{name}") => {
            let app = app.clone();
            let accept = req.headers().get("accept").and_then(|a| a.to_str().ok()).unwrap_or_default();
            let csv = accept.contains("text/csv");
            blocking(move || get_report(&app, &caller, &values[0], &q, csv)).await
        }
        ("POST", "/api/v1/attachments") => files::upload(app, &caller, &q, req).await,
        ("GET", "/api/v1/attachments/{id}/content") => files::download(app, &caller, &values[0]),
        ("POST", "/api/v1/import/{entity}") => import::upload(app, &caller, &values[0], &q, req).await,
        ("GET", "/api/v1/scripts") => scripts_status(app, &caller),
        ("POST", "/api/v1/scripts/reload") => scripts_reload(app, &caller),
        ("GET", "/api/v1/tokens") => list_tokens(app, &caller),
        ("POST", "/api/v1/tokens") => create_token(app, &caller, req).await,
        ("DELETE", "/api/v1/tokens/{id}") => revoke_token(app, &caller, &values[0]),
        (method, template) => {
            let no_handler = || {
                tracing::error!("route {method} {template} has no handler");
                ApiError::new(StatusCode::NOT_FOUND, "no_route", format!("no resource {method} {path}"))
            };
            let mut parts = template.trim_start_matches("/api/v1/").split('/');
            let resource = parts.next().unwrap_or_default();
            let with_id = parts.next().is_some();
            entities::with_resource!(resource, E => match (method, with_id) {
                ("GET", false) => entities::list::<E>(app, &caller, &q),
                ("POST", false) => entities::create::<E>(app, &caller, req).await,
                ("GET", true) => entities::get::<E>(app, &caller, &values[0]),
                ("PATCH", true) => entities::update::<E>(app, &caller, &values[0], req).await,
                ("DELETE", true) => entities::delete::<E>(app, &caller, &values[0], req).await,
                _ => Err(no_handler()),
            }, else Err(no_handler()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_and_the_routes_are_the_same() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.clone())).collect();
        routed.sort();
        assert_eq!(documented, routed);
        // Every documented path parameter is a segment of its template, and back.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let mut in_path: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
            in_path.sort();
            for (method, op) in ops.as_object().unwrap() {
                let mut declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                declared.sort();
                assert_eq!(in_path, declared, "{method} {path}");
            }
        }
    }

    #[test]
    fn every_resource_of_the_table_is_served_by_the_entity_of_its_path() {
        use entities::Resource as _;
        for (name, _) in RESOURCES {
            entities::with_resource!(*name, E => assert_eq!(E::PATH, *name), else panic!("{name} has no entity"));
        }
    }

    #[test]
    fn requests_find_their_route_and_its_values() {
        let (t, v) = find_route(&Method::POST, "/api/v1/deals/01ABC/move").unwrap();
        assert_eq!((t, v), ("/api/v1/deals/{id}/{action}", vec!["01ABC", "move"]));
        assert_eq!(find_route(&Method::GET, "/api/v1/deals").unwrap().0, "/api/v1/deals");
        assert!(find_route(&Method::DELETE, "/api/v1/deals").is_none());
        assert!(find_route(&Method::GET, "/api/v1/nothing").is_none());
    }
}

/// The id in a path, or a 400 naming it.
fn parse_id<T: std::str::FromStr>(what: &str, id: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    id.parse()
        .map_err(|e| ApiError::at(StatusCode::BAD_REQUEST, "bad_id", "id", format!("\"{id}\" is not a {what} id: {e}")))
}

/// Refuses a write to a viewer.
fn may_write(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Viewer {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a viewer does not write"));
    }
    Ok(())
}

/// Refuses `what` to anyone but an admin.
fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("{what} are for admins")));
    }
    Ok(())
}

/// `GET /api/v1/scripts`: every script file — whether it compiles as it is now, whether a
/// compiled version is in use — and every hook binding to a script.
fn scripts_status(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "scripts")?;
    let bindings: Vec<_> = app
        .inst
        .settings()
        .hooks
        .iter()
        .filter(|b| b.runtime == crmkit_rhai::RUNTIME)
        .map(|b| json!({ "point": b.point, "handler": b.handler, "kinds": b.kinds }))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "scripts": app.scripts.status(), "bindings": bindings })))
}

/// `POST /api/v1/scripts/reload`: recompiles the edited scripts now; a script that no
/// longer compiles keeps its last good version and is listed with its error.
fn scripts_reload(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "scripts")?;
    let errors: Vec<String> = app.scripts.reload_changed().iter().map(ToString::to_string).collect();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(json_response(status, &json!({ "errors": errors, "scripts": app.scripts.status() })))
}

/// A token as an admin sees it: its id, never its hash.
fn token_json(t: &Token) -> serde_json::Value {
    json!({ "id": t.id(), "login": t.login, "role": t.role, "created": t.created, "revoked": t.revoked })
}

/// `GET /api/v1/tokens`: every token (admins).
fn list_tokens(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "tokens")?;
    let tokens = app.tokens.read().unwrap_or_else(|p| p.into_inner());
    Ok(json_response(StatusCode::OK, &json!({ "items": tokens.iter().map(token_json).collect::<Vec<_>>() })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    login: String,
    role: Role,
}

/// `POST /api/v1/tokens` `{ "login", "role" }`: a new token for a user acting in one of
/// their roles, shown in this answer only (admins).
async fn create_token(app: &App, caller: &Caller, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "tokens")?;
    let n: NewToken = json_body(req).await?;
    let _writing = app.token_writes.lock().unwrap_or_else(|p| p.into_inner());
    // The user's refusals (unknown, deactivated, without the role) are the caller's to fix.
    let secret = token::create(&app.inst, &n.login, n.role).map_err(|e| {
        let field = if e.to_string().contains("role") { "role" } else { "login" };
        ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, "invalid", field, e.to_string())
    })?;
    let fresh = token::load(app.inst.dir()).map_err(|e| ApiError::internal("reading the tokens", e))?;
    let mut body = fresh.iter().find(|t| t.hash == token::hash(&secret)).map(token_json).unwrap_or_default();
    *app.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    body["token"] = json!(secret);
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token at once (admins).
fn revoke_token(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "tokens")?;
    let _writing = app.token_writes.lock().unwrap_or_else(|p| p.into_inner());
    let known = app.tokens.read().unwrap_or_else(|p| p.into_inner()).iter().any(|t| t.id() == id);
    if id.len() < 12 || !known {
        return Err(ApiError::at(StatusCode::NOT_FOUND, "not_found", "id", format!("no token has the id \"{id}\"")));
    }
    let revoked = token::revoke(&app.inst, id).map_err(|e| ApiError::internal("revoking a token", e))?;
    let fresh = token::load(app.inst.dir()).map_err(|e| ApiError::internal("reading the tokens", e))?;
    *app.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    Ok(json_response(StatusCode::OK, &token_json(&revoked)))
}

/// The query parameters of a request, decoded.
fn query(q: &str) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut out = std::collections::BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| -> Result<String, ApiError> {
            let bytes = s.as_bytes();
            let mut raw = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'%' if i + 2 < bytes.len() => {
                        let hex =
                            std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                        raw.push(hex.ok_or_else(|| {
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                "bad_query",
                                format!("\"{s}\" has a broken %-escape"),
                            )
                        })?);
                        i += 3;
                    }
                    b'+' => {
                        raw.push(b' ');
                        i += 1;
                    }
                    b => {
                        raw.push(b);
                        i += 1;
                    }
                }
            }
            String::from_utf8(raw)
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "the query is not UTF-8"))
        };
        out.insert(decode(k)?, decode(v)?);
    }
    Ok(out)
}

/// The body of a deal action: the version the caller read, and what the action needs.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DealAction {
    /// The version acted on (or `If-Match`).
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    competitor: Option<crmkit_core::id::PartnerId>,
    /// `check`: the checklist item, and whether it is done (default: done).
    #[serde(default)]
    item: Option<String>,
    #[serde(default)]
    done: Option<bool>,
}

/// `POST /api/v1/deals/{id}/{move|check|hold|resume|win|lose|reopen}` with
/// `{ "version": N, … }`: a stale version is a 409.
async fn deal_action(
    app: &App,
    caller: &Caller,
    id: &str,
    action: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    use crmkit_core::process::Outcome;
    may_write(caller)?;
    let id: DealId = parse_id("deal", id)?;
    if !["move", "check", "hold", "resume", "win", "lose", "reopen"].contains(&action) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("a deal has no action \"{action}\" (move, check, hold, resume, win, lose, reopen)"),
        ));
    }
    let header = entities::if_match(&req)?;
    let a: DealAction = action_body(req).await?;
    let version = entities::version_named(header, a.version)?;
    let action = action.to_string();
    let caller = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            entities::writable::<Deal>(&*tx, &caller, id.0)?;
            if let Some(c) = a.competitor {
                use crmkit_core::model::EntityKind;
                entities::hidden_as_absent(&*tx, &caller, EntityKind::Deal, "competitor", EntityKind::Partner, c.0)?;
            }
            let v = version;
            let required = |field: &str, what: &str| {
                crmkit_core::model::FieldError::new(
                    crmkit_core::model::EntityKind::Deal,
                    field,
                    format!("is required to {what}"),
                )
            };
            let d = match action.as_str() {
                "move" => {
                    let stage = a.stage.as_deref().ok_or_else(|| required("stage", "move a deal"))?;
                    engine.move_deal(tx, id, v, stage, a.comment.as_deref())?
                }
                "check" => {
                    let item = a.item.as_deref().ok_or_else(|| required("item", "check a checklist item"))?;
                    engine.set_checked(tx, id, v, item, a.done.unwrap_or(true))?
                }
                "hold" => engine.hold(tx, id, v, a.comment.as_deref().unwrap_or(""))?,
                "resume" => engine.resume(tx, id, v)?,
                "win" => engine.close(tx, id, v, Outcome::Won)?,
                "lose" => engine.close(
                    tx,
                    id,
                    v,
                    Outcome::Lost {
                        reason: a.reason.unwrap_or_default(),
                        competitor: a.competitor,
                        comment: a.comment.unwrap_or_default(),
                    },
                )?,
                _ => engine.reopen(tx, id, v, a.stage.as_deref())?,
            };
            Ok(serde_json::to_value(&d).expect("entities serialize"))
        })
        .await?;
    Ok(entities::entity_response(StatusCode::OK, &done))
}

/// `GET /api/v1/reports`: the installation's reports, with the parameters each declares.
fn list_reports(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    if caller.role == Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "reports are for heads, admins and viewers"));
    }
    Ok(json_response(StatusCode::OK, &json!({ "reports": app.reports.list() })))
}

/// `GET /api/v1/reports/NAME?param=value`: a report script's table, as JSON or (with
/// `Accept: text/csv`) CSV. Admins and viewers report over every deal, heads over the deals of
/// their department; managers do not run reports.
fn get_report(app: &App, caller: &Caller, name: &str, q: &str, wants_csv: bool) -> Result<Response<Body>, ApiError> {
    if caller.role == Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "reports are for heads, admins and viewers"));
    }
    let params = query(q)?;
    let r = app.inst.store().read()?;
    // A head's report reads the deals of their department only.
    let department;
    let view: &dyn crmkit_core::process::View = match caller.role {
        Role::Head => {
            department = access::DepartmentView::new(&r, caller)?;
            &department
        }
        _ => &r,
    };
    let table = app.reports.run(name, &params, view).map_err(|e| {
        use crmkit_core::report::ReportError as E;
        let status = match e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, "report_failed", e.to_string())
    })?;
    if !wants_csv {
        let body = serde_json::to_value(&table)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        return Ok(json_response(StatusCode::OK, &body));
    }
    let out = table.to_csv();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .body(full(out))
        .expect("a valid response"))
}

/// `GET /api/v1/partners/{id}/dossier`: everything about a partner the caller may see.
fn get_dossier(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, ApiError> {
    let id: crmkit_core::id::PartnerId = parse_id("partner", id)?;
    let r = app.inst.store().read()?;
    entities::visible::<crmkit_core::model::Partner>(&r, caller, id.0)?;
    let mut d = crmkit_core::dossier::dossier(&r, id, Default::default())?;
    access::scope_dossier(&r, caller, &mut d)?;
    Ok(json_response(StatusCode::OK, &serde_json::to_value(&d).expect("a dossier serializes")))
}

/// `GET /api/v1/deals/{id}/file?kinds=&from=&to=&offset=&limit=`: a deal with its
/// participants and, in time order, its stage changes, interactions, documents, tasks and
/// attachments.
fn get_deal_file(app: &App, caller: &Caller, id: &str, q: &str) -> Result<Response<Body>, ApiError> {
    use crmkit_core::deal_file::{FileQuery, ItemKind};
    let id: DealId = parse_id("deal", id)?;
    let q = query(q)?;
    let bad = |field: &str, m: String| ApiError::at(StatusCode::BAD_REQUEST, "bad_query", field, m);
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

/// The body of a request as JSON: at most [`MAX_BODY`] bytes, UTF-8.
async fn body_json(req: Request<Incoming>) -> Result<serde_json::Value, ApiError> {
    let bytes = read_body(req).await?;
    // Not JSON at all is a bad request; JSON of the wrong shape is unprocessable.
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("the body is not JSON: {e}")))
}

/// The body of an action (`move`, `complete`, …): JSON of type `T`, an empty body taken as
/// `{}` (the version may come in If-Match alone).
async fn action_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = read_body(req).await?;
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    let value = serde_json::from_slice(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("the body is not JSON: {e}")))?;
    typed(value)
}

/// A request body whole: at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`].
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt as _;
    if let Some(len) = req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > MAX_BODY {
            return Err(too_large());
        }
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await else {
        return Err(too_slow());
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("the body could not be read: {e}"))),
    }
}

/// The body of a request as JSON of type `T` ([`body_json`]); errors name the field.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    typed(body_json(req).await?)
}

/// A JSON value as type `T`; errors name the field.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = format!("the body: {}", e.inner());
        match field.as_str() {
            "." => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            _ => ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &field, message),
        }
    })
}

fn too_slow() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "too_slow",
        format!("the body did not arrive within {} s; nothing was written", BODY_TIMEOUT.as_secs()),
    )
}

/// The next piece of a streamed body: `None` at its end; a client silent for longer than
/// [`BODY_TIMEOUT`] or a connection that broke is an error naming how much had arrived.
async fn next_piece(body: &mut Incoming, received: u64) -> Result<Option<Bytes>, ApiError> {
    use http_body_util::BodyExt as _;
    loop {
        let frame = match tokio::time::timeout(BODY_TIMEOUT, body.frame()).await {
            Err(_) => return Err(too_slow()),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "cut_off",
                    format!("the upload broke off after {received} bytes ({e}); nothing was stored"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the body is over the limit of {MAX_BODY} bytes"))
}

/// What a server needs: the installation, its tokens and its process engine.
pub struct Served {
    app: Arc<App>,
}

impl Served {
    /// The installation `inst` with `tokens`, writing through `engine`.
    pub fn new(
        inst: Arc<Installation>,
        tokens: Vec<Token>,
        engine: crmkit_core::process::Engine,
        scripts: Arc<crmkit_rhai::ScriptHost>,
    ) -> Result<Served> {
        let import_engine = Arc::new(crate::script::engine_on(&inst, &scripts)?);
        let writer = writer::Writer::start(inst.clone(), engine);
        let tokens = std::sync::RwLock::new(tokens);
        let cursors = cursor::Cursors::load_or_create(inst.dir())?;
        let app = App {
            inst,
            tokens,
            token_writes: std::sync::Mutex::new(()),
            writer,
            reports: crate::script::reports(&scripts),
            scripts,
            import_engine,
            importing: Arc::default(),
            cursors,
        };
        let uploads = uploads_dir(&app);
        if uploads.exists() {
            std::fs::remove_dir_all(&uploads).with_context(|| format!("emptying {}", uploads.display()))?;
        }
        std::fs::create_dir_all(&uploads).with_context(|| format!("creating {}", uploads.display()))?;
        Ok(Served { app: Arc::new(app) })
    }

    /// Serves connections from `listener` until `stop` completes, then lets requests in
    /// flight finish and stops the writer; whether everything let go of the store.
    pub async fn run(self, listener: TcpListener, stop: impl std::future::Future<Output = ()>) -> bool {
        let app = self.app;
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let graceful = GracefulShutdown::new();
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore stays open"),
                _ = &mut stop => break,
            };
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: wait a moment rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let service = hyper::service::service_fn(move |req| handle(app.clone(), req));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection ended: {e}");
                }
                drop(permit);
            });
        }
        // Requests in flight finish; reports still running after a moment are ended, so
        // that their requests answer at once.
        let finished = graceful.shutdown();
        tokio::pin!(finished);
        tokio::select! {
            _ = &mut finished => {}
            _ = tokio::time::sleep(SCRIPT_GRACE) => {
                app.scripts.stop_reports();
                tokio::select! {
                    _ = finished => {}
                    _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; stopping"),
                }
            }
        }
        // Reports whose clients went away end too; an import running finishes (its batches
        // are its own transactions); the writer finishes what it was given and commits.
        app.scripts.stop_reports();
        if tokio::time::timeout(SHUTDOWN_GRACE, app.importing.lock()).await.is_err() {
            tracing::warn!("an import is still running after {SHUTDOWN_GRACE:?}; it stops with the process");
        }
        let stopping = app.clone();
        let _ = tokio::task::spawn_blocking(move || stopping.writer.stop()).await;
        // The last reads let go of the store, which closes with the app.
        let mut app = app;
        let waited = std::time::Instant::now();
        loop {
            match Arc::try_unwrap(app) {
                Ok(_) => return true,
                Err(still) if waited.elapsed() < SHUTDOWN_GRACE => {
                    app = still;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    tracing::warn!("reads still hold the store after {SHUTDOWN_GRACE:?}; it closes with the process");
                    return false;
                }
            }
        }
    }
}

/// Serves the installation in `dir` on `addr` until SIGINT or SIGTERM; prints the address
/// it listens on first.
pub fn serve(dir: &Path, addr: &str) -> Result<()> {
    serve_then(dir, addr, |_| {})
}

/// [`serve`], calling `listening` with the URL once the socket is bound.
pub fn serve_then(dir: &Path, addr: &str, listening: impl FnOnce(&str)) -> Result<()> {
    let inst = Arc::new(Installation::open(dir, Arc::new(SystemClock))?);
    let tokens = token::load(dir)?;
    let (engine, scripts) = crate::script::engine_and_scripts(&inst)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let closed = runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        say!("listening on http://{local}");
        listening(&format!("http://{local}"));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            say!("shutting down: finishing requests in flight");
        };
        anyhow::Ok(Served::new(inst, tokens, engine, scripts)?.run(listener, stop).await)
    })?;
    // Work still on the blocking pool is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match closed {
        true => say!("stopped; the database is closed"),
        false => say!("stopped; reads were still running, so the database was not closed cleanly"),
    }
    Ok(())
}
