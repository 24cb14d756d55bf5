//! The tests' HTTP client for ordinary requests: hyper's own HTTP/1.1 client, a connection
//! per request, every answer held against openapi.json. Tests of clients that do not speak
//! HTTP properly (hostile.rs, slow, stalled, idle or cut-off clients, `100 Continue`)
//! write their bytes on raw sockets instead and read the answer with [`Answer::parse`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;

/// One request to the server at `addr` (`host:port`) on a connection of its own, closed after
/// the answer (`Connection: close`): `token` as a bearer token, then `headers` as given, and
/// `body` typed `application/json` unless `headers` name a Content-Type. The answer is held
/// against openapi.json. `None` when no answer came: the server could not be reached or
/// closed the connection first (it was killed, say).
pub(crate) fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<Answer> {
    let verb = hyper::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{method:?}: {e}"));
    let mut request =
        hyper::Request::builder().method(verb).uri(path).header("host", "crmkit").header("connection", "close");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(b) = body {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            request = request.header("content-type", "application/json");
        }
        request = request.header("content-length", b.len());
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
        .unwrap_or_else(|e| panic!("{method} {path} is no request hyper sends: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let answer = runtime.block_on(send(addr, request))?;
    contract::holds(method, path, &answer);
    Some(answer)
}

/// Sends `request` over a new connection to `addr` and reads the whole answer.
async fn send(addr: &str, request: hyper::Request<Full<Bytes>>) -> Option<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(EarlyAnswer(stream))).await.ok()?;
    // The connection is driven beside the request; it ends once the answer is read.
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.into_body().collect().await.ok()?.to_bytes().to_vec();
    let _ = connection.await;
    Some(Answer { status, headers, body })
}

/// A connection on which the server may answer before it has read the whole body (a 413 from
/// the declared length) and close: what is left of the body is dropped once the server's side
/// is closed, and the answer is read, as curl does. hyper's client alone gives up on the
/// broken pipe with the answer unread.
struct EarlyAnswer(tokio::net::TcpStream);

impl tokio::io::AsyncRead for EarlyAnswer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for EarlyAnswer {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.0).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if closed(&e) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Whether `e` says the server closed its side of the connection.
fn closed(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
}

/// An HTTP response as a client reads it.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Header names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The answer in `raw`, bytes read off a raw socket by the tests of clients that do not
    /// speak HTTP properly; status 0 when nothing came (the connection was closed).
    pub(crate) fn parse(raw: &[u8]) -> Answer {
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            assert!(raw.is_empty(), "no complete response: {}", String::from_utf8_lossy(raw));
            // No answer at all: the connection was closed.
            return Answer { status: 0, headers: Vec::new(), body: Vec::new() };
        };
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
            body = dechunk(&body);
        }
        Answer { status, headers, body }
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The API's own contract, `server/src/http/openapi.json`, held against every answer
/// [`exchange`] receives: the route, method and status must be declared (or a `default`
/// answer), and a JSON body must validate against the schema declared for them.
mod contract {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use serde_json::{json, Value};

    use super::Answer;

    fn doc() -> &'static Value {
        static DOC: OnceLock<Value> = OnceLock::new();
        DOC.get_or_init(|| serde_json::from_str(include_str!("../../server/src/http/openapi.json")).unwrap())
    }

    /// The documented path template `path` (query string aside) falls under, the one with the
    /// most literal segments when several do, as the router prefers them.
    fn template(path: &str) -> Option<&'static str> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        doc()["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|t| {
                let parts: Vec<&str> = t.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(p, s)| p.starts_with('{') && !s.is_empty() || p == s)
            })
            .max_by_key(|t| t.split('/').filter(|p| !p.starts_with('{')).count())
            .map(String::as_str)
    }

    /// `value` with its `$ref` to `#/components/responses/...` followed.
    fn resolved(value: &'static Value) -> &'static Value {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/responses/")) {
            Some(name) => &doc()["components"]["responses"][name],
            None => value,
        }
    }

    /// A validator for `schema`, whose `$ref`s point into the document's components.
    fn validator(key: String, schema: &Value) -> Arc<jsonschema::Validator> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(v) = cache.lock().unwrap().get(&key) {
            return v.clone();
        }
        let root = json!({ "components": doc()["components"], "allOf": [schema] });
        let built = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema of {key} does not compile: {e}"));
        let built = Arc::new(built);
        cache.lock().unwrap().insert(key, built.clone());
        built
    }

    /// Panics, naming what disagrees, when `answer` to `method path` is not what the document
    /// declares.
    pub(super) fn holds(method: &str, path: &str, answer: &Answer) {
        // The bodiless answers every route has; the web page's HTML is not the API's.
        if method == "HEAD" || method == "OPTIONS" || crate::web::is_page(path) {
            return;
        }
        let json = answer.header("content-type").is_some_and(|t| t.starts_with("application/json"));
        // Methods are case-sensitive: `get` is no method of any route.
        let documented = method.bytes().all(|b| b.is_ascii_uppercase());
        let operation = template(path).filter(|_| documented).map(|t| (t, &doc()["paths"][t][method.to_lowercase()]));
        let (key, declared) = match operation {
            Some((t, op)) if op.is_object() => {
                let status = answer.status.to_string();
                let declared = op["responses"].get(&status).or_else(|| op["responses"].get("default"));
                let declared = declared.unwrap_or_else(|| {
                    panic!(
                        "openapi.json declares no {status} (and no default) for {method} {t}; the server answered {}",
                        answer.text()
                    )
                });
                (format!("{method} {t} {status}"), resolved(declared))
            }
            // Outside the routes (no route, wrong method): the error every answer of the
            // kind has.
            _ => {
                assert!(answer.status >= 400, "{method} {path} is not documented but answered {}", answer.status);
                ("error".to_string(), &doc()["components"]["responses"]["Error"])
            }
        };
        let content = declared["content"].as_object();
        if answer.body.is_empty() && !json {
            assert!(content.is_none(), "{key} is declared with a body and came without one");
            return;
        }
        let content =
            content.unwrap_or_else(|| panic!("{key} is declared without a body and came with one: {}", answer.text()));
        if !json {
            let got = answer.header("content-type").unwrap_or("");
            assert!(
                content.keys().any(|k| k == "*/*" || got.starts_with(k.as_str())),
                "{key} came as {got}, declared as {:?}",
                content.keys().collect::<Vec<_>>()
            );
            return;
        }
        let schema = content
            .get("application/json")
            .and_then(|c| c.get("schema"))
            .unwrap_or_else(|| panic!("{key} came as JSON, which openapi.json does not declare for it"));
        let body: Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{key} came as JSON that does not parse: {e}: {}", answer.text()));
        let v = validator(key.clone(), schema);
        let errors: Vec<String> = v.iter_errors(&body).map(|e| format!("at {}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{key} disagrees with openapi.json:\n{}\nthe body: {body}", errors.join("\n"));
    }
}

/// The content of a chunked HTTP/1.1 body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
    out
}
