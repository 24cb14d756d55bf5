//! The web page: where managers, heads and administrators work, served by `crmkit serve`
//! on the API's port. Pages are rendered on the server (maud templates, every value
//! escaped) and need no JavaScript to read. A person signs in with a login and a password
//! (Argon2id hashes in `data/passwords.jsonl`); the session is a random id in an HttpOnly,
//! SameSite=Strict cookie, kept in memory (a restart signs everyone out) and ended after
//! `CRMKIT_WEB_SESSION_SECONDS` without a request (8 hours by default). Every state-changing
//! form carries a CSRF token, and a form posted from another origin is refused; failed
//! sign-ins are throttled per login and per address. Every page is sent with a
//! Content-Security-Policy that allows no inline script, and reads the store with the same
//! role rules as the API.

mod admin;
mod analytics;
mod board;
mod claims;
mod deal;
mod i18n;
mod multipart;
mod pages;
mod partners;
mod programs;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crmkit_core::id::TypedId;
use crmkit_core::model::{Deal, DealStatus, Interaction, Partner, Role, Task, TaskStatus};
use crmkit_core::store::{Index, Reader};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;
use sha2::{Digest, Sha256};

use super::{full, ApiError, App, Body, Caller};

/// The paths the web page answers; every other path is the API's.
pub(super) fn serves(path: &str) -> bool {
    matches!(
        path,
        "/" | "/sign-in"
            | "/sign-out"
            | "/work"
            | "/board"
            | "/board/move"
            | "/board/task"
            | "/partners"
            | "/analytics"
            | "/claims"
    ) || path.starts_with("/assets/")
        || path.starts_with("/deal/")
        || path.starts_with("/partner/")
        || path.starts_with("/claim/")
        || path.starts_with("/attachment/")
        || path == "/admin"
        || path.starts_with("/admin/")
        || matches!(path, "/cards" | "/strategies" | "/strategies/run" | "/claims/new")
        || path.starts_with("/card/")
}

/// Failed sign-ins a login, or an address, may have in [`THROTTLE_WINDOW`].
const MAX_FAILURES: usize = 5;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A deal with no change of stage for this long is stuck.
const STUCK: i64 = 30 * 86_400_000;

const CSS: &str = include_str!("crmkit.css");
const JS: &str = include_str!("crmkit.js");

/// An asset's path: named by its content, so that it is cached for good.
fn asset_path(content: &str, ext: &str) -> String {
    let hash: String = Sha256::digest(content.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("/assets/crmkit.{hash}.{ext}")
}

static CSS_PATH: LazyLock<String> = LazyLock::new(|| asset_path(CSS, "css"));
static JS_PATH: LazyLock<String> = LazyLock::new(|| asset_path(JS, "js"));

/// A signed-in person's session.
struct Session {
    login: String,
    role: Role,
    csrf: String,
    last: Instant,
}

/// The web page's state: sessions and failed sign-ins, in memory.
pub(super) struct Web {
    /// By the SHA-256 of the session id (the id itself is only in the cookie).
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    idle: Duration,
}

impl Web {
    pub(super) fn new() -> Web {
        let idle = std::env::var("CRMKIT_WEB_SESSION_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| *s > 0.0 && s.is_finite())
            .map_or(Duration::from_secs(8 * 3600), Duration::from_secs_f64);
        Web { sessions: Mutex::default(), failures: Mutex::default(), idle }
    }

    /// The session a request's cookie names, still alive: its login, role and CSRF token.
    fn session(&self, req: &Request<Incoming>) -> Option<(String, Role, String)> {
        let id = cookie(req, "crmkit_session")?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(&id);
        let alive = sessions.get(&key).is_some_and(|s| s.last.elapsed() < self.idle);
        if !alive {
            sessions.remove(&key);
            return None;
        }
        let s = sessions.get_mut(&key).expect("alive");
        s.last = Instant::now();
        Some((s.login.clone(), s.role, s.csrf.clone()))
    }

    /// Ends every session of `login` (its password changed).
    pub(super) fn end_sessions_of(&self, login: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, s| s.login != login);
    }

    /// Whether `keys` (a login, an address) have had too many failed sign-ins lately.
    fn throttled(&self, keys: &[String]) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|k| {
            let list = f.entry(k.clone()).or_default();
            list.retain(|t| t.elapsed() < THROTTLE_WINDOW);
            list.len() >= MAX_FAILURES
        })
    }

    fn failed(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            f.entry(k.clone()).or_default().push(Instant::now());
        }
    }
}

fn digest(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex() -> Result<String, ApiError> {
    let bytes = crate::token::random::<32>().map_err(|e| ApiError::internal("drawing a random id", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The value of cookie `name`.
fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers().get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Whether a request is the browser's own: its `Origin`, when it sends one, is this host.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok()) else { return true };
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

/// What a page answer needs: the language, and the `Set-Cookie` headers to send.
struct Reply {
    lang: &'static str,
    cookies: Vec<String>,
    secure: bool,
}

impl Reply {
    fn of(req: &Request<Incoming>) -> Reply {
        let mut cookies = Vec::new();
        let query = req.uri().query().unwrap_or_default();
        let asked = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.into_owned())
            .filter(|l| i18n::LANGUAGES.contains(&l.as_str()));
        let secure = req.headers().get("x-forwarded-proto").is_some_and(|p| p.as_bytes() == b"https");
        let lang = match asked {
            Some(l) => {
                cookies.push(format!("crmkit_lang={l}; Path=/; Max-Age=31536000; SameSite=Strict"));
                i18n::choose(Some(&l), None)
            }
            None => i18n::choose(
                cookie(req, "crmkit_lang").as_deref(),
                req.headers().get("accept-language").and_then(|a| a.to_str().ok()),
            ),
        };
        Reply { lang, cookies, secure }
    }

    fn cookie(&mut self, c: String) {
        self.cookies.push(if self.secure { c + "; Secure" } else { c });
    }

    fn page(
        self,
        status: StatusCode,
        title: &str,
        viewer: Option<&pages::Viewer<'_>>,
        content: Markup,
    ) -> Response<Body> {
        let html = pages::layout(self.lang, title, viewer, (&CSS_PATH, &JS_PATH), content).into_string();
        let mut b = Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store");
        for c in self.cookies {
            b = b.header("set-cookie", c);
        }
        secured(b).body(full(html)).expect("a valid response")
    }

    fn redirect(self, to: &str) -> Response<Body> {
        let mut b = Response::builder().status(StatusCode::SEE_OTHER).header("location", to);
        for c in self.cookies {
            b = b.header("set-cookie", c);
        }
        secured(b).body(super::empty()).expect("a valid response")
    }
}

/// The headers every page is sent with: no inline script, no framing, no sniffing.
fn secured(b: hyper::http::response::Builder) -> hyper::http::response::Builder {
    b.header(
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "same-origin")
    .header("x-frame-options", "DENY")
}

/// Answers a request for a web path ([`serves`]).
pub(super) async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let mut reply = Reply::of(&req);
    let lang = reply.lang;
    if let Some(asset) = path.strip_prefix("/assets/") {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(reply.page(StatusCode::METHOD_NOT_ALLOWED, "405", None, pages::message("GET")));
        }
        let (content, kind) = match format!("/assets/{asset}") {
            p if p == *CSS_PATH => (CSS, "text/css; charset=utf-8"),
            p if p == *JS_PATH => (JS, "text/javascript; charset=utf-8"),
            _ => return Ok(not_found(reply)),
        };
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", kind)
            .header("cache-control", "public, max-age=31536000, immutable")
            .header("x-content-type-options", "nosniff")
            .body(full(Bytes::from_static(content.as_bytes())))
            .expect("a valid response"));
    }
    let session = app.web.session(&req);
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/") => Ok(reply.redirect(if session.is_some() { "/work" } else { "/sign-in" })),
        (Method::GET | Method::HEAD, "/sign-in") => {
            if session.is_some() {
                return Ok(reply.redirect("/work"));
            }
            let expired = cookie(&req, "crmkit_session").is_some();
            let pre = random_hex()?;
            reply.cookie(format!("crmkit_pre={pre}; Path=/sign-in; HttpOnly; SameSite=Strict"));
            if expired {
                reply.cookie("crmkit_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict".into());
            }
            let message = expired.then(|| i18n::t(lang, "session_expired"));
            let status = if expired { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
            Ok(reply.page(status, i18n::t(lang, "sign_in"), None, pages::sign_in(lang, &pre, "", message)))
        }
        (Method::POST, "/sign-in") => sign_in(app, req, reply).await,
        (Method::POST, "/sign-out") => {
            let form = form(req).await?;
            match &session {
                Some((_, _, csrf)) if form.get("csrf") == Some(csrf) => {}
                _ => return Ok(refused(reply)),
            }
            if let Some(id) = form.cookie_session {
                app.web.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(&id));
            }
            reply.cookie("crmkit_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict".into());
            Ok(reply.redirect("/sign-in"))
        }
        (Method::GET | Method::HEAD, "/work") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            work(app, reply, &login, role, &csrf)
        }
        (Method::GET | Method::HEAD, "/board") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let query = req.uri().query().unwrap_or_default().to_string();
            board::show(app, reply, (&login, role, &csrf), &query, None)
        }
        (Method::POST, "/board/move" | "/board/task") => {
            let change = if path == "/board/move" { board::Change::Move } else { board::Change::Task };
            let json = req
                .headers()
                .get("accept")
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/json"));
            let form = form(req).await?;
            let Some((login, role, csrf)) = session else {
                return Ok(if json {
                    json_refusal(StatusCode::UNAUTHORIZED, i18n::t(lang, "session_expired"), None)
                } else {
                    reply.redirect("/sign-in")
                });
            };
            if !form.same_origin || form.get("csrf") != Some(&csrf) {
                return Ok(if json {
                    json_refusal(StatusCode::FORBIDDEN, i18n::t(lang, "forbidden_form"), None)
                } else {
                    refused(reply)
                });
            }
            board::change(app, reply, (&login, role, &csrf), &form, json, change).await
        }
        (Method::GET | Method::HEAD, "/analytics") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let Some(caller) = signed_in(app, &login, role)? else { return Ok(reply.redirect("/sign-in")) };
            let viewer_name = caller.user.name.clone();
            let viewer = pages::Viewer { name: &viewer_name, role, csrf: &csrf };
            if role == Role::Manager {
                let m = pages::message(i18n::t(lang, "reports_not_for_managers"));
                return Ok(reply.page(StatusCode::FORBIDDEN, i18n::t(lang, "analytics"), Some(&viewer), m));
            }
            let query = req.uri().query().unwrap_or_default().to_string();
            let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .filter(|(k, v)| k != "lang" && !v.is_empty())
                .collect();
            let name = params.iter().position(|(k, _)| k == "report").map(|i| params.remove(i).1);
            let name = name.unwrap_or_else(|| "funnel".to_string());
            let builtins = crate::analytics::reports(Some(app.bound.engine().hooks().clone()));
            let names: Vec<String> = builtins.list().into_iter().map(|r| r.name).collect();
            let q: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
            let table = match super::reports::table(app, &builtins, &caller, &name, &q) {
                Ok(t) => t,
                Err(e) => {
                    let (message, _, status) = e.parts();
                    return Ok(reply.page(status, i18n::t(lang, "analytics"), Some(&viewer), pages::message(message)));
                }
            };
            let chart = match crate::analytics::no_chart(&name) {
                Some(_) => None,
                None => crate::analytics::svg(&name, &table).ok(),
            };
            let kinds: Vec<(String, String)> =
                app.inst.settings().process_kinds.iter().map(|k| (k.id.clone(), k.name.clone())).collect();
            let content = analytics::page(lang, &names, &name, &kinds, &params, chart.as_deref(), &table);
            Ok(reply.page(StatusCode::OK, i18n::t(lang, "analytics"), Some(&viewer), content))
        }
        (Method::GET | Method::HEAD, "/claims") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let r = app.inst.store().read().map_err(ApiError::from)?;
            let Some(caller) = caller(&r, &login, role)? else { return Ok(reply.redirect("/sign-in")) };
            let mut seen: Vec<crmkit_core::model::Claim> = Vec::new();
            caller
                .each_readable(&r, &mut |c: crmkit_core::model::Claim| {
                    seen.push(c);
                    true
                })
                .map_err(ApiError::from)?;
            // Open claims first, the one due first first; then the latest others.
            seen.sort_by(|a, b| match (a.status.is_open(), b.status.is_open()) {
                (true, true) => (a.due_by(), a.id).cmp(&(b.due_by(), b.id)),
                (true, false) => std::cmp::Ordering::Less,
                (false, true) => std::cmp::Ordering::Greater,
                (false, false) => b.id.cmp(&a.id),
            });
            seen.truncate(500);
            let mut rows = Vec::new();
            for c in seen {
                let name = r.get::<Partner>(c.partner).map_err(ApiError::from)?.map(|p| p.name).unwrap_or_default();
                rows.push((c, name));
            }
            let today = r.now().date();
            let viewer = pages::Viewer { name: &caller.user.name, role, csrf: &csrf };
            Ok(reply.page(StatusCode::OK, i18n::t(lang, "claims"), Some(&viewer), claims::list(lang, &rows, today)))
        }
        (method, p) if p.starts_with("/claim/") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let Some((id, action)) = record_path::<crmkit_core::id::ClaimId>(p, "/claim/") else {
                return Ok(not_found(reply));
            };
            match (method, action) {
                (Method::GET | Method::HEAD, None) => claim_page(app, reply, &login, role, &csrf, id, None),
                (Method::POST, Some(action)) => match own_form(req, &csrf).await? {
                    Some(form) => claim_step(app, reply, &login, role, &csrf, id, &action, &form).await,
                    None => Ok(refused(reply)),
                },
                _ => Ok(not_found(reply)),
            }
        }
        (Method::GET | Method::HEAD, "/partners") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let query = req.uri().query().unwrap_or_default().to_string();
            let q = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "q").map(|(_, v)| v.into_owned());
            let q = q.unwrap_or_default();
            let r = app.inst.store().read().map_err(ApiError::from)?;
            let Some(caller) = caller(&r, &login, role)? else { return Ok(reply.redirect("/sign-in")) };
            let found = partners::search(&r, &caller, &q, 50)?;
            let viewer = pages::Viewer { name: &caller.user.name, role, csrf: &csrf };
            Ok(reply.page(
                StatusCode::OK,
                i18n::t(lang, "partners"),
                Some(&viewer),
                partners::search_page(lang, &q, &found),
            ))
        }
        (Method::GET | Method::HEAD, p) if p.starts_with("/partner/") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let Ok(id) = p["/partner/".len()..].parse::<crmkit_core::id::PartnerId>() else {
                return Ok(not_found(reply));
            };
            let r = app.inst.store().read().map_err(ApiError::from)?;
            let Some(caller) = caller(&r, &login, role)? else { return Ok(reply.redirect("/sign-in")) };
            let Some(partner) = r.get::<Partner>(id).map_err(ApiError::from)? else { return Ok(not_found(reply)) };
            if !caller.may(&r, super::access::Access::Read, &partner).map_err(ApiError::from)? {
                return Ok(not_found(reply));
            }
            // The timeline's page: the interactions before the one the query names.
            let query = req.uri().query().unwrap_or_default().to_string();
            let before =
                form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "before").map(|(_, v)| v.into_owned());
            let before = match before.map(|b| b.parse::<crmkit_core::id::InteractionId>()) {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => return Ok(not_found(reply)),
            };
            let options = crmkit_core::dossier::DossierOptions {
                classes: app.inst.client_classes().ok(),
                timeline_before: before,
                ..Default::default()
            };
            let mut d = crmkit_core::dossier::dossier(&r, id, options).map_err(ApiError::from)?;
            // What of the partner lies outside the caller's scope, as the API's dossier.
            super::access::scope_dossier(&r, &caller, &mut d).map_err(ApiError::from)?;
            let counterparties = d.counterparties.clone();
            let viewer = pages::Viewer { name: &caller.user.name, role, csrf: &csrf };
            Ok(reply.page(
                StatusCode::OK,
                &partner.name,
                Some(&viewer),
                partners::dossier_page(lang, &d, &counterparties),
            ))
        }
        (method, p) if p.starts_with("/deal/") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let Some((id, action)) = record_path::<crmkit_core::id::DealId>(p, "/deal/") else {
                return Ok(not_found(reply));
            };
            let who = (login.as_str(), role, csrf.as_str());
            match (method, action.as_deref()) {
                (Method::GET | Method::HEAD, None) => {
                    let timeline = deal::Timeline::parse(req.uri().query().unwrap_or_default());
                    deal::render(app, reply, who, id, None, None, &timeline)
                }
                (Method::POST, Some("attach")) => deal::upload(app, reply, who, id, req).await,
                (Method::POST, Some(action)) => match own_form(req, &csrf).await? {
                    Some(form) => deal::act(app, reply, who, id, action, &form).await,
                    None => Ok(refused(reply)),
                },
                _ => Ok(not_found(reply)),
            }
        }
        (Method::GET | Method::HEAD, "/cards") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let query = req.uri().query().unwrap_or_default().to_string();
            programs::cards(app, reply, (&login, role, &csrf), &query)
        }
        (method, p) if p.starts_with("/card/") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let Some((id, action)) = record_path::<crmkit_core::id::LoyaltyCardId>(p, "/card/") else {
                return Ok(not_found(reply));
            };
            let who = (login.as_str(), role, csrf.as_str());
            match (method, action) {
                (Method::GET | Method::HEAD, None) => programs::card(app, reply, who, id, None),
                (Method::POST, Some(action)) => match own_form(req, &csrf).await? {
                    Some(form) => programs::card_action(app, reply, who, id, &action, &form).await,
                    None => Ok(refused(reply)),
                },
                _ => Ok(not_found(reply)),
            }
        }
        (Method::GET | Method::HEAD, "/strategies") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            programs::strategies(app, reply, (&login, role, &csrf), None)
        }
        (Method::POST, "/strategies/run") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            match own_form(req, &csrf).await? {
                Some(form) => programs::run_strategies(app, reply, (&login, role, &csrf), &form).await,
                None => Ok(refused(reply)),
            }
        }
        (Method::GET | Method::HEAD, "/claims/new") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            let query = req.uri().query().unwrap_or_default().to_string();
            let values = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            programs::new_claim(app, reply, (&login, role, &csrf), &values, None)
        }
        (Method::POST, "/claims/new") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            match own_form(req, &csrf).await? {
                Some(form) => programs::register_claim(app, reply, (&login, role, &csrf), &form).await,
                None => Ok(refused(reply)),
            }
        }
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            admin::handle(app, reply, (&login, role, &csrf), req).await
        }
        (Method::GET | Method::HEAD, p) if p.starts_with("/attachment/") => {
            let Some((login, role, csrf)) = session else { return Ok(reply.redirect("/sign-in")) };
            deal::download(app, reply, (&login, role, &csrf), &p["/attachment/".len()..])
        }
        _ => Ok(reply.page(StatusCode::METHOD_NOT_ALLOWED, "405", None, pages::message(i18n::t(lang, "not_found")))),
    }
}

/// A claim's page, with a refused step's message in its form.
fn claim_page(
    app: &Arc<App>,
    reply: Reply,
    login: &str,
    role: Role,
    csrf: &str,
    id: crmkit_core::id::ClaimId,
    refusal: Option<(claims::Refusal, StatusCode)>,
) -> Result<Response<Body>, ApiError> {
    let lang = reply.lang;
    let r = app.inst.store().read().map_err(ApiError::from)?;
    let Some(caller) = caller(&r, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    let Some(c) = r.get::<crmkit_core::model::Claim>(id).map_err(ApiError::from)? else { return Ok(not_found(reply)) };
    if !caller.may(&r, super::access::Access::Read, &c).map_err(ApiError::from)? {
        return Ok(not_found(reply));
    }
    let partner = r.get::<Partner>(c.partner).map_err(ApiError::from)?.map(|p| p.name).unwrap_or_default();
    let may_act = role != Role::Viewer && caller.may(&r, super::access::Access::Write, &c).map_err(ApiError::from)?;
    let (refusal, status) = split(refusal);
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    let content = claims::page(lang, &c, &partner, csrf, refusal.as_ref(), may_act);
    Ok(reply.page(status, &c.subject, Some(&viewer), content))
}

/// A claim's step from its page, through the process engine as the API's steps.
#[allow(clippy::too_many_arguments)]
async fn claim_step(
    app: &Arc<App>,
    reply: Reply,
    login: &str,
    role: Role,
    csrf: &str,
    id: crmkit_core::id::ClaimId,
    action: &str,
    form: &Form,
) -> Result<Response<Body>, ApiError> {
    use crmkit_core::model::{Claim, Decision, EntityKind, FieldError};
    let Some(caller) = signed_in(app, login, role)? else { return Ok(reply.redirect("/sign-in")) };
    if !super::claims::ACTIONS.contains(&action) {
        return Ok(not_found(reply));
    }
    let text = |name: &str| form.get(name).map(|v| v.trim().to_string()).unwrap_or_default();
    let version = form.get("version").and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
    let (comment, reason, reply_text, until, decision, settled) =
        (text("comment"), text("reason"), text("reply"), text("until"), text("decision"), text("settled"));
    let action_name = action.to_string();
    let who = caller.clone();
    let done = app
        .writer
        .write(Some((caller.user.id, role)), move |engine, tx| {
            let claim: Claim = super::entities::writable(&*tx, &who, id.raw())?;
            let field = |f: &str, m: String| -> crmkit_core::Error { FieldError::new(EntityKind::Claim, f, m).into() };
            let c = match action_name.as_str() {
                "review" => engine.review_claim(tx, id, version, &comment)?,
                "postpone" => {
                    let until = crmkit_core::values::date::parse(&until).map_err(|m| field("postponed_until", m))?;
                    engine.postpone_claim(tx, id, version, until, &reason)?
                }
                "decide" => {
                    let decision = Decision::ALL
                        .into_iter()
                        .find(|d| d.name() == decision)
                        .ok_or_else(|| field("decision", format!("\"{decision}\" is not a decision")))?;
                    let settled = match settled.as_str() {
                        "" => None,
                        s => {
                            let amount = s
                                .parse::<rust_decimal::Decimal>()
                                .map_err(|_| field("settled", format!("\"{s}\" is not an amount")))?;
                            let currency = claim.claimed.map_or(tx.settings().default_currency, |m| m.currency);
                            Some(crmkit_core::values::Money::new(amount, currency))
                        }
                    };
                    engine.decide_claim(tx, id, version, decision, settled, &reply_text)?
                }
                "close" => engine.close_claim(tx, id, version, &comment)?,
                _ => engine.reopen_claim(tx, id, version, &reason)?,
            };
            Ok(serde_json::json!({ "version": c.version }))
        })
        .await;
    match done {
        Ok(_) => Ok(reply.redirect(&format!("/claim/{id}"))),
        Err(e) => claim_page(app, reply, login, role, csrf, id, Some(pages::Refusal::of(action, &e))),
    }
}

/// The record a path names and the action after it: `/deal/ID` or `/deal/ID/ACTION`.
fn record_path<I: std::str::FromStr>(path: &str, prefix: &str) -> Option<(I, Option<String>)> {
    let rest = path.strip_prefix(prefix)?;
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, Some(action.to_string())),
        None => (rest, None),
    };
    Some((id.parse().ok()?, action))
}

/// A form posted from this site's page with the session's token; `None` for any other.
async fn own_form(req: Request<Incoming>, csrf: &str) -> Result<Option<Form>, ApiError> {
    let form = form(req).await?;
    Ok((form.same_origin && form.get("csrf").is_some_and(|c| c == csrf)).then_some(form))
}

/// The page saying there is no such page.
fn not_found(reply: Reply) -> Response<Body> {
    let lang = reply.lang;
    reply.page(StatusCode::NOT_FOUND, "404", None, pages::message(i18n::t(lang, "not_found")))
}

/// A state-changing form that did not come from this site's page: 403, nothing done.
fn refused(reply: Reply) -> Response<Body> {
    let lang = reply.lang;
    reply.page(StatusCode::FORBIDDEN, "403", None, pages::message(i18n::t(lang, "forbidden_form")))
}

/// A posted form's fields, with the session cookie it came with and whether it is the
/// site's own.
struct Form {
    fields: HashMap<String, String>,
    /// Every field in order, repeated ones (checkboxes of one name) each.
    pairs: Vec<(String, String)>,
    cookie_session: Option<String>,
    cookie_pre: Option<String>,
    same_origin: bool,
    address: String,
}

impl Form {
    fn get(&self, name: &str) -> Option<&String> {
        self.fields.get(name)
    }

    /// Every value of a field sent more than once.
    fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

async fn form(req: Request<Incoming>) -> Result<Form, ApiError> {
    let cookie_session = cookie(&req, "crmkit_session");
    let cookie_pre = cookie(&req, "crmkit_pre");
    let same_origin = same_origin(&req);
    let address = req
        .extensions()
        .get::<super::metrics::Peer>()
        .map(|p| p.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let bytes = super::body::form_body(req).await?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let fields = pairs.iter().cloned().collect();
    Ok(Form { fields, pairs, cookie_session, cookie_pre, same_origin, address })
}

async fn sign_in(app: &Arc<App>, req: Request<Incoming>, mut reply: Reply) -> Result<Response<Body>, ApiError> {
    let lang = reply.lang;
    let form = form(req).await?;
    let pre_ok = form.cookie_pre.as_ref().is_some_and(|c| form.get("csrf") == Some(c));
    if !form.same_origin || !pre_ok {
        return Ok(refused(reply));
    }
    let login = form.get("login").map(|l| l.trim().to_string()).unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let keys = [format!("login:{}", login.to_lowercase()), format!("address:{}", form.address)];
    let again = |mut reply: Reply, status: StatusCode, key: &str| -> Result<Response<Body>, ApiError> {
        let pre = random_hex()?;
        reply.cookie(format!("crmkit_pre={pre}; Path=/sign-in; HttpOnly; SameSite=Strict"));
        let message = i18n::t(reply.lang, key);
        Ok(reply.page(status, i18n::t(lang, "sign_in"), None, pages::sign_in(lang, &pre, &login, Some(message))))
    };
    if app.web.throttled(&keys) {
        return again(reply, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    }
    let user = app.inst.store().read().map_err(ApiError::from)?.user_by_login(&login).map_err(ApiError::from)?;
    let dir = app.inst.dir().to_path_buf();
    let (pw, stored_login) = (password.clone(), login.clone());
    // Argon2 is slow on purpose: off the async threads.
    let matches = tokio::task::spawn_blocking(move || crate::password::check(&dir, &stored_login, &pw))
        .await
        .map_err(|e| ApiError::internal("checking a password", e))?
        .map_err(|e| ApiError::internal("checking a password", e))?;
    let user = match user.filter(|u| u.active && matches) {
        Some(u) => u,
        None => {
            app.web.failed(&keys);
            return again(reply, StatusCode::UNAUTHORIZED, "bad_credentials");
        }
    };
    let Some(role) = user.roles.first().copied() else {
        app.web.failed(&keys);
        return again(reply, StatusCode::UNAUTHORIZED, "bad_credentials");
    };
    let id = random_hex()?;
    let csrf = random_hex()?;
    app.web
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(digest(&id), Session { login: user.login.clone(), role, csrf, last: Instant::now() });
    reply.cookie(format!("crmkit_session={id}; Path=/; HttpOnly; SameSite=Strict"));
    reply.cookie("crmkit_pre=; Path=/sign-in; Max-Age=0; HttpOnly; SameSite=Strict".into());
    Ok(reply.redirect("/work"))
}

/// A refusal as JSON, for the board's script: `{"message", "field"}`.
fn json_refusal(status: StatusCode, message: &str, field: Option<&str>) -> Response<Body> {
    let body = serde_json::json!({ "message": message, "field": field }).to_string();
    secured(Response::builder().status(status).header("content-type", "application/json"))
        .body(full(body))
        .expect("a valid response")
}

/// A refusal to show and the status to answer with: 200 when there is none.
fn split<T>(refusal: Option<(T, StatusCode)>) -> (Option<T>, StatusCode) {
    match refusal {
        Some((r, s)) => (Some(r), s),
        None => (None, StatusCode::OK),
    }
}

/// The signed-in person: login, role, the session's CSRF token.
type Who<'a> = (&'a str, Role, &'a str);

/// The signed-in person of `login` acting as `role`, from a fresh snapshot; `None` when the
/// user is gone or deactivated (back to the sign-in page).
fn signed_in(app: &App, login: &str, role: Role) -> Result<Option<Caller>, ApiError> {
    let r = app.inst.store().read()?;
    caller(&r, login, role)
}

/// The signed-in person, as the API's role rules know them.
fn caller(r: &impl Reader, login: &str, role: Role) -> Result<Option<Caller>, ApiError> {
    Ok(r.user_by_login(login).map_err(ApiError::from)?.filter(|u| u.active).map(|user| Caller { user, role }))
}

fn reply_for(lang: &'static str) -> Reply {
    Reply { lang, cookies: Vec::new(), secure: false }
}

fn refused_with(reply: Reply, field: &str) -> Response<Body> {
    let lang = reply.lang;
    reply.page(
        StatusCode::BAD_REQUEST,
        "400",
        None,
        pages::message(&format!("{}: {field}", i18n::t(lang, "forbidden_form"))),
    )
}

/// "My work" of the signed-in person.
fn work(app: &Arc<App>, reply: Reply, login: &str, role: Role, csrf: &str) -> Result<Response<Body>, ApiError> {
    let lang = reply.lang;
    let r = app.inst.store().read().map_err(ApiError::from)?;
    let Some(user) = r.user_by_login(login).map_err(ApiError::from)?.filter(|u| u.active) else {
        return Ok(reply.redirect("/sign-in"));
    };
    let caller = Caller { user, role };
    let now = r.now();
    let today = now.date();
    let mine: Vec<Task> = r.tasks_of(caller.user.id, TaskStatus::Open, 1000).map_err(ApiError::from)?;
    let (mut overdue, mut day, mut later) = (Vec::new(), Vec::new(), Vec::new());
    for t in &mine {
        match t.due {
            Some(d) if d < now => overdue.push(t),
            Some(d) if d.date() == today => day.push(t),
            _ => later.push(t),
        }
    }
    overdue.sort_by_key(|t| t.due);
    day.sort_by_key(|t| t.due);
    // The caller's deals in progress: past their stage's SLA, without a change for a month,
    // or with no open task (no next step).
    let deals: Vec<Deal> =
        r.find(Index::DealByManager, &caller.user.id.raw().to_bytes(), None, usize::MAX).map_err(ApiError::from)?;
    let mut attention = Vec::new();
    let mut interactions: Vec<(Interaction, String)> = Vec::new();
    let partner_name = |id| -> Result<String, ApiError> {
        Ok(r.get::<Partner>(id).map_err(ApiError::from)?.map(|p| p.name).unwrap_or_default())
    };
    for d in deals.iter().filter(|d| d.status == DealStatus::InProgress) {
        let entered = d.stage_entered_at.unwrap_or(d.created_at);
        let sla = d
            .stage
            .as_deref()
            .and_then(|s| r.settings().process_kind(&d.kind)?.stages.iter().find(|x| x.id == s)?.sla_ms);
        let mut reasons = Vec::new();
        if sla.is_some_and(|ms| now.0 - entered.0 > ms) {
            reasons.push("sla_breached");
        }
        if now.0 - entered.0 > STUCK {
            reasons.push("stuck");
        }
        let open = r.tasks_of_deal(d.id).map_err(ApiError::from)?.iter().any(|t| t.status == TaskStatus::Open);
        if !open {
            reasons.push("no_next_step");
        }
        if let Some(last) = r
            .ids_by(Index::InteractionByDeal, &d.id.raw().to_bytes(), None, usize::MAX)
            .map_err(ApiError::from)?
            .into_iter()
            .max()
        {
            let i: Interaction = r.load(crmkit_core::id::InteractionId(last)).map_err(ApiError::from)?;
            let name = partner_name(i.partner)?;
            interactions.push((i, name));
        }
        if !reasons.is_empty() {
            attention.push(pages::Attention { deal: d, partner: partner_name(d.partner)?, reasons });
        }
    }
    interactions.sort_by_key(|(i, _)| std::cmp::Reverse(i.at));
    interactions.truncate(10);
    let w = pages::Work { now, overdue, today: day, later, deals: attention, interactions };
    let viewer = pages::Viewer { name: &caller.user.name, role, csrf };
    Ok(reply.page(StatusCode::OK, i18n::t(lang, "my_work"), Some(&viewer), pages::work(lang, &w)))
}
