//! Writing crmkit plugins in Rust: the types of plugin ABI version 1 (plugins/ABI.md) and
//! the hook contract (docs/hooks.md), the exports every plugin needs (`crmkit_abi_v1`,
//! `crmkit_alloc`), safe wrappers of the host imports and [`hook!`], which makes a hook a
//! plain Rust function.
//!
//! ```ignore
//! #![no_std]
//! extern crate alloc;
//! use crmkit_sdk::{hook, Input, Verdict};
//!
//! hook!(guard, |input: Input| -> Verdict {
//!     match input.transition.as_ref().and_then(|t| t.to_stage.as_deref()) {
//!         Some("negotiation") => Verdict::reject_field("Negotiation starts from a quote", "stage"),
//!         _ => Verdict::Allow,
//!     }
//! });
//! ```
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` as a `cdylib`. On
//! wasm32 the crate brings the plugin's global allocator (a bump allocator: each call runs in
//! a fresh instance, so nothing needs freeing) and a panic handler that logs the panic and
//! traps; the `runtime` feature (on by default) turns both off for other uses.

#![no_std]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

pub use serde;
pub use serde_json;
pub use serde_json::{json, Map, Value};

mod types;
pub use types::*;

#[cfg(target_arch = "wasm32")]
pub mod host;
#[cfg(all(target_arch = "wasm32", feature = "runtime"))]
mod runtime;

/// The ABI version this crate builds plugins for.
pub const ABI_VERSION: u32 = 1;

/// A plugin's own error: the hook answers `{"error": "…"}` with its text, and the host
/// reports the call as a fault naming plugin and export.
#[derive(Clone, Debug, PartialEq)]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<String> for Error {
    fn from(e: String) -> Error {
        Error(e)
    }
}

impl From<&str> for Error {
    fn from(e: &str) -> Error {
        Error(e.into())
    }
}

/// What a hook may return: its answer as JSON, or the plugin's own error.
pub trait Answer {
    fn into_json(self) -> Result<Value, Error>;
}

impl Answer for Value {
    fn into_json(self) -> Result<Value, Error> {
        Ok(self)
    }
}

impl Answer for Verdict {
    fn into_json(self) -> Result<Value, Error> {
        Ok(match self {
            Verdict::Allow => Value::Null,
            Verdict::Reject { message, field: None } => json!({ "reject": message }),
            Verdict::Reject { message, field: Some(f) } => json!({ "reject": message, "field": f }),
        })
    }
}

impl Answer for Score {
    fn into_json(self) -> Result<Value, Error> {
        Ok(serde_json::to_value(self)?)
    }
}

impl Answer for Vec<Action> {
    fn into_json(self) -> Result<Value, Error> {
        Ok(serde_json::to_value(self)?)
    }
}

/// A stage (`deal.route`) or a login (`task.assignee`).
impl Answer for String {
    fn into_json(self) -> Result<Value, Error> {
        Ok(Value::String(self))
    }
}

/// `None` answers `null`: no score, the default stage or assignee, no actions.
impl<A: Answer> Answer for Option<A> {
    fn into_json(self) -> Result<Value, Error> {
        self.map_or(Ok(Value::Null), A::into_json)
    }
}

impl<A: Answer, E: fmt::Display> Answer for Result<A, E> {
    fn into_json(self) -> Result<Value, Error> {
        self.map_err(|e| Error(e.to_string())).and_then(A::into_json)
    }
}

/// The answer bytes for `result`: the answer, or `{"error": "…"}`.
pub fn answer_bytes(result: Result<Value, Error>) -> Vec<u8> {
    let value = result.unwrap_or_else(|e| json!({ "error": e.0 }));
    serde_json::to_vec(&value).unwrap_or_else(|e| serde_json::to_vec(&json!({ "error": e.to_string() })).unwrap())
}

/// Runs a hook on the input at `ptr..ptr + len` and returns its answer packed as
/// `ptr << 32 | len`. What [`hook!`] expands to; not for direct use.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub fn __call<I: serde::de::DeserializeOwned, A: Answer>(ptr: i32, len: i32, hook: fn(I) -> A) -> i64 {
    // SAFETY: the host placed `len` bytes of input at `ptr`, memory it got from `crmkit_alloc`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) };
    let answer = match serde_json::from_slice::<I>(bytes) {
        Ok(input) => hook(input).into_json(),
        Err(e) => Err(Error(alloc::format!("the input is not what this hook reads: {e}"))),
    };
    host::give(answer_bytes(answer))
}

/// Exports a hook: `hook!(EXPORT, |input: TYPE| -> ANSWER { … })` or `hook!(EXPORT, FUNCTION)`.
///
/// `TYPE` is anything serde reads from the input JSON — usually [`Input`] — and `ANSWER` is an
/// [`Answer`]: [`Verdict`], [`Score`], `Vec<Action>`, `String`, [`Value`], an `Option` of one
/// (`None` answers `null`) or a `Result` of one (`Err` answers `{"error": …}`). The export is
/// `EXPORT(ptr: i32, len: i32) -> i64`, the name the manifest's `[hooks]` gives the point.
#[macro_export]
macro_rules! hook {
    ($export:ident, |$arg:ident : $input:ty| -> $answer:ty $body:block) => {
        #[no_mangle]
        pub extern "C" fn $export(ptr: i32, len: i32) -> i64 {
            fn run($arg: $input) -> $answer $body
            $crate::__call(ptr, len, run)
        }
    };
    ($export:ident, $function:path) => {
        #[no_mangle]
        pub extern "C" fn $export(ptr: i32, len: i32) -> i64 {
            $crate::__call(ptr, len, $function)
        }
    };
}

/// Milliseconds since 1970-01-01 UTC of an RFC 3339 time as the hook contract writes them
/// (`2026-03-02T09:00:00.000Z`, an offset also accepted); `None` when it is not one.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let s = text.get(from..to)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = text.get(start..(i).min(start + 3))?;
        ms = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let o = num(i + 1, i + 3)? * 60 + num(i + 4, i + 6)?;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm - offset_min) * 60_000 + ss * 1000 + ms)
}
