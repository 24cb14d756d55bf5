//! The engine's error type: what was wrong and where, never just "invalid".

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::id::RawId;
use crate::model::{EntityKind, FieldError};
use crate::store::kv::KvError;

/// Everything the engine can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field breaks a rule; nothing was written.
    #[error("invalid {0}")]
    Invalid(FieldError),
    /// No entity of this kind has this id.
    #[error("{kind} {id} does not exist")]
    NotFound { kind: EntityKind, id: RawId },
    /// The entity changed since the caller read it; nothing was written.
    #[error("{kind} {id} was changed by someone else: you have version {given}, the stored one is {stored}")]
    Conflict { kind: EntityKind, id: RawId, given: u64, stored: u64 },
    /// Deleting the entity would leave others pointing at nothing; nothing was written.
    #[error("{kind} {id} cannot be deleted: {count} {by} record(s) refer to it through \"{field}\"")]
    Referenced { kind: EntityKind, id: RawId, by: String, field: &'static str, count: usize },
    /// A value that must be unique is taken.
    #[error("{kind}.{field}: \"{value}\" is already used by {kind} {other}")]
    Duplicate { kind: EntityKind, field: &'static str, value: String, other: RawId },
    /// An operation the entity kind does not allow.
    #[error("{0}")]
    NotAllowed(String),
    /// The sales process does not allow the step (a transition not allowed from the current
    /// stage, a skipped stage, a move of a closed deal, …); nothing was written.
    #[error("deal {deal}: {message}")]
    Process { deal: RawId, message: String },
    /// The acting user may not do this; nothing was written.
    #[error("{0}")]
    Forbidden(String),
    /// A guard handler refused the change; nothing was written.
    #[error("{hook}: {handler} refused{}: {message}", field.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    Rejected { hook: &'static str, handler: String, message: String, field: Option<String> },
    /// A hook handler failed (as opposed to refusing); the write was aborted.
    #[error("{hook}: handler {handler} failed: {message}")]
    HookFault { hook: &'static str, handler: String, message: String },
    /// Hook bindings that cannot be made, one per line with its place in config.
    #[error("{0}")]
    Bindings(String),
    /// The database is not a crmkit database. `database` names it as its backend does: a
    /// file's path, "the in-memory database".
    #[error("{database} is not a crmkit database: {reason}")]
    NotCrmkit { database: String, reason: String },
    /// The database was written by a newer crmkit.
    #[error(
        "{database} has schema version {found}; this crmkit reads versions up to {supported}: upgrade crmkit to open it"
    )]
    NewerSchema { database: String, found: u32, supported: u32 },
    /// The database is open for writing in another process (a running `crmkit serve`, say).
    #[error("{database} is already open in another process")]
    InUse { database: String },
    /// The database was not closed cleanly (the process holding it ended without closing
    /// it) and was opened read-only, which cannot recover it.
    #[error("{database} was not closed cleanly and needs recovery, which a read-only open cannot do")]
    NeedsRecovery { database: String },
    /// The database has an older schema, which only an open for writing migrates.
    #[error(
        "{database} has schema version {found}; this crmkit migrates it to {current} when it opens it for writing"
    )]
    OlderSchema { database: String, found: u32, current: u32 },
    /// A stored record could not be decoded.
    #[error("corrupt {what}: {message}")]
    Corrupt { what: String, message: String },
    /// Configuration error with file and line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(KvError),
    /// A file could not be read or written. The message says why once; the I/O error is
    /// kept as `error` (its `kind()` tells what happened), not as the error's source, so a
    /// printed chain does not repeat it.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// A field error is an invalid write. Its message is part of this error's, so it is not
/// also its source (a printed chain would say it twice).
impl From<FieldError> for Error {
    fn from(e: FieldError) -> Error {
        Error::Invalid(e)
    }
}

/// A value the backend could not decode is corrupt data, whoever noticed; anything else the
/// backend reports is a storage failure.
impl From<KvError> for Error {
    fn from(e: KvError) -> Error {
        match e {
            KvError::Corrupt { what, message } => Error::Corrupt { what, message },
            other => Error::Storage(other),
        }
    }
}

/// Results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::model::EntityKind;

    /// A message says its cause once: a printed chain (`{:#}` in the binary) adds nothing that
    /// the message already holds.
    #[test]
    fn messages_do_not_repeat_their_cause() {
        let io = Error::Io {
            path: "demo/data/crmkit.redb".into(),
            error: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file is already there"),
        };
        assert_eq!(io.to_string(), "demo/data/crmkit.redb: a file is already there");
        assert!(io.source().is_none());
        let invalid = Error::from(FieldError::new(EntityKind::Deal, "comment", "is too long"));
        assert_eq!(invalid.to_string(), "invalid deal.comment: is too long");
        assert!(invalid.source().is_none());
        let csv = crate::transfer::csv::CsvError::from(std::io::Error::other("disk gone"));
        assert_eq!(csv.to_string(), "disk gone");
        assert!(csv.source().is_none());
    }
}
