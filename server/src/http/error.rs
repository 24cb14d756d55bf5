//! `ApiError`, the JSON error every handler answers with, and how core's errors map to
//! its status and stable code.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::{json_response, Body};

/// Declares [`Code`]: each stable code with its name on the wire and the statuses it comes
/// with. The README's list of error codes is kept equal to this table by a test.
macro_rules! codes {
    ($($variant:ident = $name:literal: $($status:literal)|+;)+) => {
        /// The stable `code` of an error answer: what clients branch on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Code {
            $($variant,)+
        }

        impl Code {
            /// Every code, in the README's order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Code] = &[$(Code::$variant,)+];

            /// The code as answered.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)+
                }
            }

            /// The statuses the code is answered with.
            pub(crate) fn statuses(self) -> &'static [u16] {
                match self {
                    $(Code::$variant => &[$($status),+],)+
                }
            }
        }
    };
}

codes! {
    BadRequest = "bad_request": 400;
    UriTooLong = "uri_too_long": 414;
    HeadersTooLarge = "headers_too_large": 431;
    BadQuery = "bad_query": 400;
    BadCursor = "bad_cursor": 400;
    BadJson = "bad_json": 400;
    BadBody = "bad_body": 400;
    BadId = "bad_id": 400;
    BadVersion = "bad_version": 400;
    CutOff = "cut_off": 400;
    Unauthorized = "unauthorized": 401;
    Forbidden = "forbidden": 403;
    NotFound = "not_found": 404;
    NoRoute = "no_route": 404;
    MethodNotAllowed = "method_not_allowed": 405;
    NotAcceptable = "not_acceptable": 406;
    TooSlow = "too_slow": 408;
    Conflict = "conflict": 409;
    Busy = "busy": 409;
    Referenced = "referenced": 409;
    Duplicate = "duplicate": 409;
    TooLarge = "too_large": 413;
    UnsupportedMediaType = "unsupported_media_type": 415;
    Invalid = "invalid": 422;
    Rejected = "rejected": 422;
    NotAllowed = "not_allowed": 422;
    ReportFailed = "report_failed": 404 | 422;
    Internal = "internal": 500;
    HookFailed = "hook_failed": 500;
    Stopping = "stopping": 503;
    NotWritten = "not_written": 503;
}

/// An error answer: `{ "code", "message", "field" }` with its status.
pub(crate) struct ApiError {
    status: StatusCode,
    code: Code,
    message: String,
    field: Option<String>,
}

impl ApiError {
    /// The message, the field it names and the status: what a web page shows of it.
    pub(super) fn parts(&self) -> (&str, Option<&str>, StatusCode) {
        (&self.message, self.field.as_deref(), self.status)
    }

    pub(super) fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        debug_assert!(code.statuses().contains(&status.as_u16()), "{} with {status}", code.name());
        ApiError { status, code, message: message.into(), field: None }
    }

    /// An error about one field of the request.
    pub(super) fn at(status: StatusCode, code: Code, field: &str, message: impl Into<String>) -> ApiError {
        debug_assert!(code.statuses().contains(&status.as_u16()), "{} with {status}", code.name());
        ApiError { status, code, message: message.into(), field: Some(field.to_string()) }
    }

    /// A failure of the server itself: logged with what was being done, answered without
    /// details.
    pub(super) fn internal(doing: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("{doing}: {e:#}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, "the server failed; see its log")
    }

    /// The same refusal as a core error, for a write running in the writer.
    pub(super) fn into_core(self) -> crmkit_core::Error {
        crmkit_core::Error::Forbidden(self.message)
    }

    pub(super) fn into_response(self) -> Response<Body> {
        json_response(self.status, &json!({ "code": self.code.name(), "message": self.message, "field": self.field }))
    }
}

impl From<crmkit_core::Error> for ApiError {
    fn from(e: crmkit_core::Error) -> ApiError {
        use crmkit_core::Error as E;
        match e {
            E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, e.to_string()),
            E::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, Code::Conflict, e.to_string()),
            E::Invalid(f) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: Code::Invalid,
                message: f.message.clone(),
                field: Some(f.field.clone()),
            },
            E::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, m),
            E::Rejected { message, field, handler, .. } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: Code::Rejected,
                message: format!("{handler}: {message}"),
                field,
            },
            E::Process { .. } | E::NotAllowed(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Code::NotAllowed, e.to_string())
            }
            E::Referenced { .. } => ApiError::new(StatusCode::CONFLICT, Code::Referenced, e.to_string()),
            E::Duplicate { .. } => ApiError::new(StatusCode::CONFLICT, Code::Duplicate, e.to_string()),
            E::HookFault { .. } => {
                tracing::error!("{e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::HookFailed, e.to_string())
            }
            other => {
                tracing::error!("internal error: {other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, "the server failed; see its log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table of error codes is the server's, code for code and status for
    /// status.
    #[test]
    fn the_readme_lists_every_error_code_with_its_statuses() {
        let readme = include_str!("../../../README.md");
        let listed: Vec<(String, Vec<u16>)> = readme
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.split(" | ");
                let code = cells.next()?.strip_suffix('`')?.to_string();
                let statuses = cells.next()?.split(", ").map(|s| s.parse().ok()).collect::<Option<Vec<u16>>>()?;
                Some((code, statuses))
            })
            .collect();
        let served: Vec<(String, Vec<u16>)> =
            Code::ALL.iter().map(|c| (c.name().to_string(), c.statuses().to_vec())).collect();
        assert_eq!(listed, served);
        // The OpenAPI document names them too.
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"].as_array().unwrap();
        let codes: Vec<&str> = codes.iter().filter_map(|c| c.as_str()).collect();
        assert_eq!(codes, Code::ALL.iter().map(|c| c.name()).collect::<Vec<_>>());
    }
}
