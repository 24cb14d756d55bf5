//! Reading requests and writing responses: bodies whole or piece by piece within their
//! limits, JSON of a given type with the failing field named, query strings, JSON answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{ApiError, Code};

/// How long a client may take to send a JSON body whole, and the longest pause between
/// pieces of a streamed upload.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// A response body: whole, or streamed (attachment downloads).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A whole response body.
pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt as _;
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty response body.
pub(super) fn empty() -> Body {
    full(Bytes::new())
}

pub(super) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .expect("a valid response")
}

/// The query parameters of a request, decoded as a form (`application/x-www-form-urlencoded`,
/// by `form_urlencoded`, the WHATWG rules browsers follow): `+` is a space, a `%` not
/// followed by two hex digits stays as it is, bytes that are not UTF-8 become U+FFFD. A
/// parameter given twice is a 400 naming it.
pub(super) fn query(q: &str) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if out.contains_key(k.as_ref()) {
            return Err(ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadQuery,
                &k,
                format!("the query gives {k} more than once"),
            ));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

/// Refuses a JSON body without `Content-Type: application/json` (or, for a PATCH,
/// `application/merge-patch+json`); a `charset` parameter, if any, is `utf-8`.
fn json_content_type(req: &Request<Incoming>) -> Result<(), ApiError> {
    let refuse =
        |m: String| ApiError::at(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::UnsupportedMediaType, "Content-Type", m);
    let Some(value) = req.headers().get("content-type") else {
        return Err(refuse("the body is JSON: say so with Content-Type: application/json".into()));
    };
    let text = value.to_str().map_err(|_| refuse("Content-Type is not ASCII".into()))?;
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or_default().trim();
    // A PATCH is a JSON merge patch (RFC 7396), which has its own type too.
    let patch = req.method() == hyper::Method::PATCH && media.eq_ignore_ascii_case("application/merge-patch+json");
    if !media.eq_ignore_ascii_case("application/json") && !patch {
        return Err(refuse(format!("Content-Type \"{text}\" is not application/json")));
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")) {
            return Err(refuse(format!("Content-Type \"{text}\": a JSON body takes no parameter but charset=utf-8")));
        }
    }
    Ok(())
}

/// The body of a request as JSON: at most [`MAX_BODY`] bytes, UTF-8.
pub(super) async fn body_json(req: Request<Incoming>) -> Result<serde_json::Value, ApiError> {
    json_content_type(&req)?;
    let bytes = read_body(req).await?;
    // Not JSON at all is a bad request; JSON of the wrong shape is unprocessable.
    let mut value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Code::BadJson, format!("the body is not JSON: {e}")))?;
    check_money(&mut value, &mut String::new())?;
    Ok(value)
}

/// Refuses an amount of money in `value` (an object of `amount` and `currency`, the
/// OpenAPI document's `Money`) that is not the plain decimal string the schema declares:
/// digits with one optional `.` and a leading `-`, no exponent, `+`, spaces or `_`, and no
/// more fraction digits than its currency has (JSON numbers fail the type check after). A
/// good amount is rewritten with its currency's minor units (`"10.5"` RUB: `"10.50"`).
fn check_money(value: &mut serde_json::Value, path: &mut String) -> Result<(), ApiError> {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(amount)), Some(Value::String(currency)), 2) =
                (map.get("amount"), map.get("currency"), map.len())
            {
                match crmkit_core::values::Money::parse(amount, currency) {
                    // Written with the currency's minor units, as an import writes it.
                    Ok(m) => {
                        map.insert("amount".into(), Value::String(m.amount.to_string()));
                    }
                    Err(e) => {
                        let field = if path.is_empty() { "amount".to_string() } else { format!("{path}.amount") };
                        let message = format!("{field}: {e}");
                        return Err(ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, &field, message));
                    }
                }
            }
            for (key, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check_money(v, path)?;
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_money(v, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The body of an action (`move`, `complete`, …): JSON of type `T`, an empty body taken as
/// `{}` (the version may come in If-Match alone); a body that is not empty needs the JSON
/// Content-Type.
pub(super) async fn action_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let typed_json = json_content_type(&req);
    let bytes = read_body(req).await?;
    let text: &[u8] = match bytes.iter().all(u8::is_ascii_whitespace) {
        true => b"{}",
        false => {
            typed_json?;
            &bytes
        }
    };
    let mut value = serde_json::from_slice(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, Code::BadJson, format!("the body is not JSON: {e}")))?;
    check_money(&mut value, &mut String::new())?;
    typed(value)
}

/// What every action on an entity (`POST /api/v1/deals/{id}/move`, …) starts with: the
/// caller writes, `action` is one of `actions` (else 404 naming them), the id is one of a
/// `what`, and the body reads as `T`; with the version `If-Match` names, if any.
pub(super) async fn action_request<I, T>(
    caller: &super::Caller,
    what: &str,
    id: &str,
    action: &str,
    actions: &[&str],
    req: Request<Incoming>,
) -> Result<(I, Option<u64>, T), ApiError>
where
    I: std::str::FromStr,
    I::Err: std::fmt::Display,
    T: serde::de::DeserializeOwned,
{
    super::may_write(caller)?;
    if !actions.contains(&action) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NoRoute,
            format!("a {what} has no action \"{action}\" ({})", actions.join(", ")),
        ));
    }
    let id: I = super::parse_id(what, id)?;
    let header = super::entities::if_match(&req)?;
    Ok((id, header, action_body(req).await?))
}

/// The most a web form's body may hold.
const MAX_FORM: usize = 64 * 1024;

/// A web form's body (`application/x-www-form-urlencoded`), at most [`MAX_FORM`] bytes.
pub(super) async fn form_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let form = req.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType,
            "a form is sent as application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_body(req).await?;
    if bytes.len() > MAX_FORM {
        return Err(too_large());
    }
    Ok(bytes)
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
        Err(e) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, Code::BadBody, format!("the body could not be read: {e}")))
        }
    }
}

/// The body of a request as JSON of type `T` ([`body_json`]); errors name the field.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    typed(body_json(req).await?)
}

/// A JSON value as type `T`; errors name the field.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = format!("the body: {}", e.inner());
        match field.as_str() {
            "." => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, message),
            _ => ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, &field, message),
        }
    })
}

fn too_slow() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        Code::TooSlow,
        format!("the body did not arrive within {} s; nothing was written", BODY_TIMEOUT.as_secs()),
    )
}

/// The next piece of a streamed body: `None` at its end; a client silent for longer than
/// [`BODY_TIMEOUT`] or a connection that broke is an error naming how much had arrived.
pub(super) async fn next_piece(body: &mut Incoming, received: u64) -> Result<Option<Bytes>, ApiError> {
    use http_body_util::BodyExt as _;
    loop {
        let frame = match tokio::time::timeout(BODY_TIMEOUT, body.frame()).await {
            Err(_) => return Err(too_slow()),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Code::CutOff,
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
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::TooLarge,
        format!("the body is over the limit of {MAX_BODY} bytes"),
    )
}
