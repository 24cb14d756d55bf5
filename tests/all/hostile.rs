//! Clients that do not speak HTTP properly, over raw sockets to a real `crmkit serve`: every
//! answer the server gives them, even those refused before any route is looked at, is the
//! API's JSON error, and nothing is written.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use serde_json::Value;

use crate::api::Served;
use crate::cli::Site;
use crate::client::Answer;

/// Sends `raw` on a connection of its own and reads the answer until the server closes.
fn send(addr: &str, raw: &[u8]) -> Answer {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read everything.
    let _ = s.write_all(raw);
    // Read until the answer is whole: the connection may be kept alive after it.
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| got.len() >= end + 4 + n) {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    Answer::parse(&got)
}

/// Asserts that `a` is a JSON error `{code, message, field}` and returns its code and field.
fn json_error(a: &Answer, what: &str) -> (String, Value) {
    assert_eq!(a.header("content-type"), Some("application/json"), "{what}: {}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    let obj =
        v.as_object().unwrap_or_else(|| panic!("{what}: not a JSON object: {:?}", String::from_utf8_lossy(&a.body)));
    assert!(obj.len() == 3 && obj["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
    assert!(obj["field"].is_null() || obj["field"].is_string(), "{what}: {v}");
    (obj["code"].as_str().unwrap_or_else(|| panic!("{what}: {v}")).to_string(), obj["field"].clone())
}

#[test]
fn requests_refused_before_routing_are_answered_with_json_errors_naming_the_fault() {
    let site = Site::new(|c| c);
    let before = site.dump();
    let server = Served::start(&site);
    let long_header = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    // What is sent, and the status, code and field of the answer.
    type Case<'a> = (&'a str, Vec<u8>, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("garbage", b"\x16\x03\x01 hello\r\n\r\n".to_vec(), 400, "bad_request", Some("method")),
        (
            "a space in the path",
            b"GET /api/v1/deals x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "bad_request",
            Some("version"),
        ),
        (
            "a control byte in the path",
            b"GET /api/\x01 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "bad_request",
            Some("path"),
        ),
        (
            "a method that is no token",
            b"G(T /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "bad_request",
            Some("method"),
        ),
        ("HTTP/1.2", b"GET /health HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), 400, "bad_request", Some("version")),
        ("HTTP/3.0", b"GET /health HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(), 400, "bad_request", Some("version")),
        (
            "a negative Content-Length",
            b"POST /api/v1/partners HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
            400,
            "bad_request",
            Some("Content-Length"),
        ),
        (
            "two Content-Lengths that disagree",
            b"POST /api/v1/partners HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            400,
            "bad_request",
            Some("Content-Length"),
        ),
        (
            "a header name with a space",
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".to_vec(),
            400,
            "bad_request",
            Some("headers"),
        ),
        ("a head over the limit", long_header.into_bytes(), 431, "headers_too_large", None),
    ];
    for (what, raw, status, code, field) in cases {
        let a = send(&server.addr, &raw);
        assert_eq!(a.status, status, "{what}: {}", String::from_utf8_lossy(&a.body));
        let (got, at) = json_error(&a, what);
        assert_eq!(got, code, "{what}");
        assert_eq!(at.as_str(), field, "{what}: {}", String::from_utf8_lossy(&a.body));
    }
    // After a good request on a kept-alive connection, a bad one is answered in JSON too.
    let a = send(&server.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /\x7f HTTP/1.1\r\n\r\n");
    assert_eq!(a.status, 200);
    server.stop();
    assert_eq!(site.dump(), before);
}

/// Every byte in every part of a request line and a header, and broken framings: whatever
/// the server answers is JSON; a refused write writes nothing.
#[test]
fn a_sweep_of_malformed_heads_gets_json_answers_only() {
    let site = Site::new(|c| c);
    let before = site.dump();
    let server = Served::start(&site);
    let mut heads: Vec<Vec<u8>> = Vec::new();
    for b in (0u8..=0x20).chain(0x7f..=0xff).chain([b'"', b'<', b'>', b'\\', b'^', b'`', b'{', b'|', b'}']) {
        heads.push(
            [b"POST /api/v1/part".as_slice(), &[b], b"ners HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"]
                .concat(),
        );
        heads.push([b"PO".as_slice(), &[b], b"ST /api/v1/partners HTTP/1.1\r\nHost: x\r\n\r\n"].concat());
        heads.push([b"GET /health HTTP/1.1\r\nX-A".as_slice(), &[b], b"b: 1\r\n\r\n"].concat());
    }
    for version in ["HTTP/0.9", "HTTP/1.2", "HTTP/2", "HTTP/2.0", "HTTP/1", "http/1.1", "HTTPS/1.1", ""] {
        heads.push(format!("GET /health {version}\r\nHost: x\r\n\r\n").into_bytes());
    }
    for length in ["-1", "1e3", "0x10", "+5", "1, 2", " ", "99999999999999999999999"] {
        heads.push(
            format!("POST /api/v1/partners HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}").into_bytes(),
        );
    }
    heads.push(b"POST /api/v1/partners HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}".to_vec());
    heads.push(b"POST /api/v1/partners HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}".to_vec());
    heads.push(b"GET\r\n\r\n".to_vec());
    heads.push(b"GET  /health  HTTP/1.1\r\n\r\n".to_vec());
    let mut refused = 0;
    for raw in &heads {
        let what = String::from_utf8_lossy(raw).into_owned();
        let a = send(&server.addr, raw);
        assert_ne!(a.status, 0, "{what:?} was not answered");
        if a.status >= 400 {
            refused += 1;
        }
        let v = a.json();
        assert!(v.is_object(), "{what:?}: status {} with {:?}", a.status, String::from_utf8_lossy(&a.body));
        if a.status >= 400 {
            json_error(&a, &what);
        }
    }
    assert!(refused > 200, "{refused} of {} refused", heads.len());
    server.stop();
    assert_eq!(site.dump(), before);
}
