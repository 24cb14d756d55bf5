//! The admin resources: the state of the installation's scripts and plugins and their
//! reload, and the API tokens (list, create, revoke).

use crmkit_core::model::Role;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::body::json_body;
use super::{admin_only, json_response, ApiError, App, Body, Caller, Code};
use crate::token::{self, Token};

/// `GET /api/v1/scripts`: every script file — whether it compiles as it is now, whether a
/// compiled version is in use — and every hook binding to a script; every plugin — whether
/// it loads as it is now, the version in use, its hooks and capabilities — and every hook
/// binding to a plugin export.
pub(super) fn scripts_status(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "scripts")?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "scripts": app.scripts.status(),
            "bindings": bindings(app, crmkit_rhai::RUNTIME),
            "plugins": app.bound.plugins().status(),
            "plugin_bindings": bindings(app, crmkit_wasm::RUNTIME),
        }),
    ))
}

/// The hook bindings in force that go to `runtime`: point, handler, kinds.
fn bindings(app: &App, runtime: &str) -> Vec<serde_json::Value> {
    app.bound
        .settings()
        .hooks
        .iter()
        .filter(|b| b.runtime == runtime)
        .map(|b| json!({ "point": b.point, "handler": b.handler, "kinds": b.kinds }))
        .collect()
}

/// `POST /api/v1/scripts/reload`: recompiles the edited scripts, loads the plugins as they
/// are on disk and re-reads the config, whose `[[hooks]]` bindings then take effect for the
/// next writes. A script that does not compile, a plugin that does not load, a binding that
/// cannot be made, a config that does not parse or one whose other sections changed (those
/// need a restart) keeps the bindings and plugins in force: the answer (422) lists why, each
/// with its file and line or its plugin. A script that no longer compiles keeps its last
/// good version.
pub(super) fn scripts_reload(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "scripts")?;
    let r = crate::script::reload(&app.inst, &app.scripts, &app.bound);
    if r.applied {
        tracing::info!("scripts, plugins and [[hooks]] bindings reloaded");
    } else {
        for e in r.script_errors.iter().chain(&r.plugin_errors).chain(&r.config_errors) {
            tracing::warn!("reload: {e}");
        }
    }
    let errors: Vec<&String> = r.script_errors.iter().chain(&r.plugin_errors).chain(&r.config_errors).collect();
    let status = if r.applied { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok(json_response(
        status,
        &json!({
            "applied": r.applied,
            "errors": errors,
            "script_errors": r.script_errors,
            "plugin_errors": r.plugin_errors,
            "config_errors": r.config_errors,
            "bindings": bindings(app, crmkit_rhai::RUNTIME),
            "scripts": app.scripts.status(),
            "plugin_bindings": bindings(app, crmkit_wasm::RUNTIME),
            "plugins": app.bound.plugins().status(),
        }),
    ))
}

/// A token as an admin sees it: its id, never its hash.
fn token_json(t: &Token) -> serde_json::Value {
    json!({ "id": t.id(), "login": t.login, "role": t.role, "created": t.created, "revoked": t.revoked })
}

/// `GET /api/v1/tokens`: every token (admins).
pub(super) fn list_tokens(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
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
pub(super) async fn create_token(
    app: &App,
    caller: &Caller,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "tokens")?;
    let n: NewToken = json_body(req).await?;
    let body = new_token(app, &n.login, n.role)?;
    Ok(json_response(StatusCode::CREATED, &body))
}

/// A new token for `login` acting as `role`: the token as an admin sees it, with its secret
/// (`token`), shown this once. The API's and the web page's.
pub(super) fn new_token(app: &App, login: &str, role: Role) -> Result<serde_json::Value, ApiError> {
    let _writing = app.token_writes.lock().unwrap_or_else(|p| p.into_inner());
    // The user's refusals (unknown, deactivated, without the role) are the caller's to fix.
    let secret = token::create(&app.inst, login, role).map_err(|e| {
        let field = if e.to_string().contains("role") { "role" } else { "login" };
        ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, field, e.to_string())
    })?;
    let fresh = token::load(app.inst.dir()).map_err(|e| ApiError::internal("reading the tokens", e))?;
    let mut body = fresh.iter().find(|t| t.hash == token::hash(&secret)).map(token_json).unwrap_or_default();
    *app.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    body["token"] = json!(secret);
    Ok(body)
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token at once (admins).
pub(super) fn revoke_token(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "tokens")?;
    Ok(json_response(StatusCode::OK, &revoke(app, id)?))
}

/// Revokes the token `id` at once: the API's and the web page's.
pub(super) fn revoke(app: &App, id: &str) -> Result<serde_json::Value, ApiError> {
    let _writing = app.token_writes.lock().unwrap_or_else(|p| p.into_inner());
    let known = app.tokens.read().unwrap_or_else(|p| p.into_inner()).iter().any(|t| t.id() == id);
    if id.len() < 12 || !known {
        return Err(ApiError::at(StatusCode::NOT_FOUND, Code::NotFound, "id", format!("no token has the id \"{id}\"")));
    }
    let revoked = token::revoke(&app.inst, id).map_err(|e| ApiError::internal("revoking a token", e))?;
    let fresh = token::load(app.inst.dir()).map_err(|e| ApiError::internal("reading the tokens", e))?;
    *app.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    Ok(token_json(&revoked))
}

/// The body of `PUT /api/v1/users/{id}/password`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `PUT /api/v1/users/{id}/password`: sets (or resets) a user's password for the web page
/// (admins); the user's open sessions end.
pub(super) async fn set_password(
    app: &App,
    caller: &Caller,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    admin_only(caller, "passwords")?;
    let id: crmkit_core::id::UserId = super::parse_id("user", id)?;
    let n: NewPassword = json_body(req).await?;
    let login = set_user_password(app, id, n.password).await?;
    Ok(json_response(StatusCode::OK, &json!({ "login": login, "password_set": true })))
}

/// Sets (or resets) the password of user `id`, refusing a weak one; the user's open
/// sessions end. Answers the user's login. The API's and the web page's.
pub(super) async fn set_user_password(
    app: &App,
    id: crmkit_core::id::UserId,
    password: String,
) -> Result<String, ApiError> {
    let user: crmkit_core::model::User = {
        use crmkit_core::store::Reader as _;
        let r = app.inst.store().read().map_err(ApiError::from)?;
        r.get(id).map_err(ApiError::from)?.ok_or_else(|| {
            ApiError::at(StatusCode::NOT_FOUND, Code::NotFound, "id", format!("no user has the id {id}"))
        })?
    };
    if let Some(why) = crate::password::weakness(&password) {
        return Err(ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, "password", why));
    }
    let inst = app.inst.clone();
    let login = user.login.clone();
    tokio::task::spawn_blocking(move || crate::password::set(&inst, &login, &password))
        .await
        .map_err(|e| ApiError::internal("setting a password", e))?
        .map_err(|e| ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, "password", e.to_string()))?;
    app.web.end_sessions_of(&user.login);
    Ok(user.login)
}
