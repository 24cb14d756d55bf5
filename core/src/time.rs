//! Instants and the clock the caller supplies.
//!
//! The engine never reads the system time itself: every write takes "now" from a [`Clock`]
//! handed in by the caller, so tests, imports of old data and the demo generator can drive
//! time. Instants are stored as Unix milliseconds and shown as RFC 3339 in UTC.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant as a chrono value.
    pub fn to_chrono(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0).single().unwrap_or_default()
    }

    /// The instant of a chrono value (truncated to milliseconds).
    pub fn from_chrono(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t.timestamp_millis())
    }

    /// Parses RFC 3339 (`2026-03-01T09:30:00Z`, any offset).
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|e| format!("\"{s}\" is not an RFC 3339 time: {e}"))
    }

    /// The calendar date (UTC) of the instant.
    pub fn date(self) -> chrono::NaiveDate {
        self.to_chrono().date_naive()
    }

    /// The first instant of `day` (midnight, UTC).
    pub fn start_of(day: chrono::NaiveDate) -> Timestamp {
        Timestamp::from_chrono(day.and_time(chrono::NaiveTime::MIN).and_utc())
    }

    /// The instant `ms` milliseconds later.
    pub fn plus_millis(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_chrono().to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse(&s).map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

/// Where the engine gets "now" from.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_chrono(Utc::now())
    }
}

/// A clock that only moves when told to: for tests, imports and the demo generator.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(t.0))
    }

    /// Moves the clock to `t` (backwards too).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
