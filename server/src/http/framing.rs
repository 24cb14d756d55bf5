//! Requests hyper refuses before any handler sees them — a broken request line, bytes a
//! path may not hold, headers over the limit, a bad or doubled Content-Length — answered
//! with the API's JSON error instead of hyper's own bodiless 400, 414 or 431.
//!
//! hyper answers such a request itself and closes the connection; it has no hook to shape
//! that answer. Each HTTP/1 connection is therefore read and written through [`JsonErrors`],
//! which keeps the bytes read since the last answer and, when hyper's write ends with its
//! automatic error head (a status line of 400, 414 or 431 and nothing but `content-length:
//! 0`, `date` and `connection` lines — an answer no handler gives, since every one of theirs
//! has a JSON body), writes the JSON error in its place. What was wrong is told from the
//! bytes read: the part of the request line, the header or the Content-Length at fault.
//! HTTP/2 connections (the client's preface) pass through untouched: h2 refuses bad frames
//! with its own protocol errors.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Code;

/// The most bytes of a request kept to tell what was wrong with it.
const KEPT: usize = 96 * 1024;

/// A connection whose automatic error answers are rewritten as JSON.
pub(super) struct JsonErrors<T> {
    inner: T,
    /// What the client sent since the last answer began (at most [`KEPT`] bytes).
    seen: Vec<u8>,
    /// Whether the client spoke HTTP/2: then nothing is looked at.
    h2: bool,
    /// A JSON answer being written, and how much of it has been.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> JsonErrors<T> {
    pub(super) fn new(inner: T) -> JsonErrors<T> {
        JsonErrors { inner, seen: Vec::new(), h2: false, pending: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        if !this.h2 {
            let room = KEPT.saturating_sub(this.seen.len());
            let new = &buf.filled()[before..];
            this.seen.extend_from_slice(&new[..new.len().min(room)]);
            if this.seen.starts_with(b"PRI * HTTP/2.0") {
                this.h2 = true;
                this.seen = Vec::new();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is left of a JSON answer; ready once it is all written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if this.h2 {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if let Some((at, status)) = automatic_error(buf).filter(|_| !this.seen.is_empty()) {
            // What came before hyper's head (the end of an earlier answer) goes first, as is.
            let mut out = buf[..at].to_vec();
            out.extend_from_slice(&json_answer(status, &this.seen));
            this.seen = Vec::new();
            this.pending = Some((out, 0));
            ready!(this.poll_pending(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        if buf.starts_with(b"HTTP/1.") {
            // An answer begins: what was read so far was its request.
            this.seen.clear();
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Written whole, so that hyper's head arrives in one piece (hyper flattens its buffers
    // for a writer that does not take vectors).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Where hyper's automatic error head starts in `buf` (which it ends), and its status.
fn automatic_error(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let body = &buf[..buf.len() - 2];
    let at = body.windows(9).rposition(|w| w == b"HTTP/1.1 ")?;
    let text = std::str::from_utf8(&body[at..]).ok()?;
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let status = match lines.next()? {
        "HTTP/1.1 400 Bad Request" => 400,
        "HTTP/1.1 414 URI Too Long" => 414,
        "HTTP/1.1 431 Request Header Fields Too Large" => 431,
        _ => return None,
    };
    let mut zero_length = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            zero_length = true;
        } else if !(lower.starts_with("date: ") || lower.starts_with("connection: ")) {
            return None;
        }
    }
    zero_length.then_some((at, status))
}

/// The JSON answer for hyper's `status`, saying what was wrong with `request`.
fn json_answer(status: u16, request: &[u8]) -> Vec<u8> {
    let (code, field, message) = match status {
        414 => (Code::UriTooLong, Some("path"), "the request target is too long".to_string()),
        431 => (
            Code::HeadersTooLarge,
            None,
            format!("the request head is over the limit of {} KiB", super::serve::MAX_HEAD / 1024),
        ),
        _ => {
            let (field, message) = diagnose(request);
            (Code::BadRequest, field, message)
        }
    };
    let body = json!({ "code": code.name(), "message": message, "field": field }).to_string();
    let reason = hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

/// What is wrong with the head of `request`, and the part of it at fault.
fn diagnose(request: &[u8]) -> (Option<&'static str>, String) {
    let generic = "the request is not well-formed HTTP/1.1".to_string();
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Err(e) => {
            // How far the request line got tells which part of it is at fault.
            let line_end = request.iter().position(|&b| b == b'\n').unwrap_or(request.len());
            let line = String::from_utf8_lossy(&request[..line_end]);
            let parts: Vec<&str> = line.trim_end().split(' ').collect();
            let part = match e {
                httparse::Error::Token if req.method.is_none() => Some("method"),
                httparse::Error::Token if req.path.is_none() => Some("path"),
                httparse::Error::Version => Some("version"),
                httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::TooManyHeaders => {
                    Some("headers")
                }
                _ if parts.len() != 3 => Some("request line"),
                _ => None,
            };
            let message = match part {
                Some("method") => "the request line's method is not a token".to_string(),
                Some("path") => "the path holds bytes a request target may not hold (spaces, controls, non-ASCII: percent-encode them)".to_string(),
                Some("version") => "the request line's version is not HTTP/1.0 or HTTP/1.1".to_string(),
                Some("headers") => format!("a header is malformed ({e})"),
                Some(_) => "the request line is not METHOD PATH HTTP/1.1".to_string(),
                None => format!("{generic} ({e})"),
            };
            (part, message)
        }
        Ok(_) => {
            // The head parses: hyper refused its framing.
            let lengths: Vec<&[u8]> =
                req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| h.value).collect();
            let te = req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
            let numeric = |v: &&[u8]| !v.is_empty() && v.iter().all(u8::is_ascii_digit);
            if let Some(bad) = lengths.iter().find(|v| !numeric(v)) {
                let v = String::from_utf8_lossy(bad);
                (Some("Content-Length"), format!("Content-Length \"{v}\" is not a whole number of bytes"))
            } else if lengths.len() > 1 && lengths.windows(2).any(|w| w[0] != w[1]) {
                (Some("Content-Length"), "the request has several Content-Length headers that disagree".to_string())
            } else if te && !lengths.is_empty() {
                (Some("Transfer-Encoding"), "the request has both Transfer-Encoding and Content-Length".to_string())
            } else if te {
                (Some("Transfer-Encoding"), "only a Transfer-Encoding ending in chunked is understood".to_string())
            } else if !lengths.is_empty() {
                (Some("Content-Length"), "Content-Length is too large".to_string())
            } else {
                (None, generic)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_error_head_is_told_from_the_apis_answers() {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_error(head), Some((0, 400)));
        let after = [b"{\"a\":1}".as_slice(), head].concat();
        assert_eq!(automatic_error(&after), Some((7, 400)));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(automatic_error(ours), None);
        assert_eq!(automatic_error(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"), None);
    }

    #[test]
    fn what_was_wrong_is_named() {
        assert_eq!(diagnose(b"GET /a b HTTP/1.1\r\n\r\n").0, Some("version"));
        assert_eq!(diagnose(b"G@T / HTTP/1.1\r\n\r\n").0, Some("method"));
        assert_eq!(diagnose(b"GET /\x01 HTTP/1.1\r\n\r\n").0, Some("path"));
        assert_eq!(diagnose(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").0, Some("Content-Length"));
        assert_eq!(
            diagnose(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").0,
            Some("Content-Length")
        );
        assert_eq!(diagnose(b"GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n").0, Some("headers"));
    }
}
