//! `ApiError`, the JSON error every handler answers with, and how core's errors map to
//! its status and stable code.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::{json_response, Body};

/// An error answer: `{ "code", "message", "field" }` with its status.
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// An error about one field of the request.
    pub(super) fn at(status: StatusCode, code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: Some(field.to_string()) }
    }

    /// A failure of the server itself: logged with what was being done, answered without
    /// details.
    pub(super) fn internal(doing: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("{doing}: {e:#}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; see its log")
    }

    /// The same refusal as a core error, for a write running in the writer.
    pub(super) fn into_core(self) -> crmkit_core::Error {
        crmkit_core::Error::Forbidden(self.message)
    }

    pub(super) fn into_response(self) -> Response<Body> {
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
