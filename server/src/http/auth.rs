//! Who is calling: the bearer token checked against the tokens and its user, and the role
//! gates every handler shares (no writes for viewers, admin-only resources).

use crmkit_core::model::Role;
use crmkit_core::store::Reader;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::{ApiError, App, Caller, Code};
use crate::token;

pub(super) fn authenticate(app: &App, req: &Request<Incoming>) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, m);
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
    super::metrics::User::note(req, &user.login);
    Ok(Caller { user, role })
}

/// Refuses a write to a viewer.
pub(super) fn may_write(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Viewer {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, "a viewer does not write"));
    }
    Ok(())
}

/// Refuses `what` to anyone but an admin.
pub(super) fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, format!("{what} are for admins")));
    }
    Ok(())
}
