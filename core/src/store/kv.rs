//! The ordered key-value interface a storage backend implements.
//!
//! Everything above this module (records, indexes, audit, schema) is written against these
//! two traits, so a second backend — a distributed ordered KV store, say — is one new module
//! implementing them. Tables are fixed and known up front; keys and values are bytes, keys
//! ordered bytewise.
//!
//! Backends report failures as [`KvError`]; the store layers it into its own error type.
//! Savepoints are not a backend matter: a write transaction keeps its changes in
//! [`Changes`] until the commit, with an undo log for taking some of them back.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use super::tables::{Table, TABLE_COUNT};

/// What a backend can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The backend could not read or write: I/O, a lock held elsewhere, damage it detected.
    /// The message says what failed and where.
    #[error("{0}")]
    Backend(String),
    /// A stored value could not be decoded (see [`Decode`]).
    #[error("corrupt {what}: {message}")]
    Corrupt {
        /// What was being read, e.g. `deal 01J9…`.
        what: String,
        /// Why it could not be decoded.
        message: String,
    },
}

/// How hard a commit works to be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// The commit is durable (for a file: on disk) when `commit` returns.
    #[default]
    Immediate,
    /// Visible to readers at once, durable with the next immediate commit (bulk loads).
    Deferred,
}

/// A pending change before it was overwritten: table slot, key, and the earlier pending
/// change (`None`: the key was untouched).
type Undo = (usize, Vec<u8>, Option<Option<Vec<u8>>>);

/// The writes of one transaction, per table: `Some(value)` puts, `None` deletes.
#[derive(Debug, Default)]
pub struct Changes {
    /// Per table slot, the pending change of each key, in key order.
    pub tables: Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    /// While a savepoint is open: what each write replaced, so it can be taken back.
    undo: Option<Vec<Undo>>,
    /// Decoded forms of some written records, for a record cache to keep after the commit
    /// (read-after-write is common: a client shows the deal it just moved).
    pub(crate) decoded: BTreeMap<(usize, Vec<u8>), Decoded>,
}

/// How many written records a transaction keeps decoded for the cache (bulk loads write
/// many more; they are not worth keeping).
const MAX_DECODED: usize = 1024;

impl Changes {
    /// No changes.
    pub fn new() -> Changes {
        Changes { tables: (0..TABLE_COUNT).map(|_| BTreeMap::new()).collect(), undo: None, decoded: BTreeMap::new() }
    }

    /// Starts recording what writes replace; returns the position to roll back to.
    pub(crate) fn mark(&mut self) -> usize {
        self.undo.get_or_insert_with(Vec::new).len()
    }

    /// Takes back every write made since `mark`.
    pub(crate) fn rollback(&mut self, mark: usize) {
        let Some(undo) = &mut self.undo else { return };
        while undo.len() > mark {
            let (slot, key, old) = undo.pop().expect("longer than mark");
            self.decoded.remove(&(slot, key.clone()));
            match old {
                Some(v) => self.tables[slot].insert(key, v),
                None => self.tables[slot].remove(&key),
            };
        }
    }

    /// Stops recording (the outermost savepoint was released).
    pub(crate) fn stop_recording(&mut self) {
        self.undo = None;
    }

    fn record(&mut self, slot: usize, key: &[u8]) {
        if let Some(undo) = &mut self.undo {
            undo.push((slot, key.to_vec(), self.tables[slot].get(key).cloned()));
        }
    }

    /// The pending change of `key`: `None` when untouched, `Some(None)` when deleted.
    pub fn get(&self, t: Table, key: &[u8]) -> Option<Option<&[u8]>> {
        self.tables[t.slot].get(key).map(|v| v.as_deref())
    }

    /// Puts `value` at `key`, and its decoded form for the record cache.
    pub(crate) fn put_decoded(&mut self, t: Table, key: Vec<u8>, value: Vec<u8>, decoded: impl FnOnce() -> Decoded) {
        let keep = self.decoded.len() < MAX_DECODED;
        self.put(t, key.clone(), value);
        if keep {
            self.decoded.insert((t.slot, key), decoded());
        }
    }

    /// Puts `value` at `key`.
    pub fn put(&mut self, t: Table, key: Vec<u8>, value: Vec<u8>) {
        if !self.decoded.is_empty() {
            self.decoded.remove(&(t.slot, key.clone()));
        }
        self.record(t.slot, &key);
        self.tables[t.slot].insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, t: Table, key: Vec<u8>) {
        if !self.decoded.is_empty() {
            self.decoded.remove(&(t.slot, key.clone()));
        }
        self.record(t.slot, &key);
        self.tables[t.slot].insert(key, None);
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(BTreeMap::is_empty)
    }
}

/// A decoded record, shared between readers.
pub type Decoded = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// Turns stored bytes into a decoded record.
pub type Decode<'a> = dyn Fn(&[u8]) -> Result<Decoded, KvError> + 'a;

/// Called for each entry of a scan; returns `false` to stop.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> bool;

/// A consistent read-only view of the data.
pub trait KvRead: Send + Sync {
    /// The value at `key`.
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// The decoded value at `key`: `decode` turns stored bytes into a record, and a caching
    /// layer may hand out the record it decoded before instead.
    fn get_decoded(&self, t: Table, key: &[u8], decode: &Decode<'_>) -> Result<Option<Decoded>, KvError> {
        match self.get(t, key)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }
    /// Whether `key` has a value.
    fn contains(&self, t: Table, key: &[u8]) -> Result<bool, KvError> {
        Ok(self.get(t, key)?.is_some())
    }
    /// Visits the entries with keys in the range, in key order (or reverse).
    fn scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<(), KvError>;
    /// The number of entries in the table.
    fn len(&self, t: Table) -> Result<u64, KvError>;
}

/// The exclusive writer: reads the state the transaction started from, and commits changes.
pub trait KvWrite: Send + Sync {
    /// The state the transaction started from.
    fn base(&self) -> &dyn KvRead;
    /// Applies all changes atomically.
    fn commit(self: Box<Self>, changes: Changes, durability: Durability) -> Result<(), KvError>;
}

/// A storage backend.
///
/// What the store relies on: a snapshot from [`Backend::read`] sees every commit that
/// returned before it was taken and none that started after; writers take turns, so
/// [`Backend::write`] returns only once the previous writer committed (its changes visible
/// to every snapshot taken from then on) or was dropped (writing nothing). The record cache
/// numbers commits in the order writers take the slot, which these rules make the order in
/// which commits become visible.
pub trait Backend: Send + Sync {
    /// A snapshot of the latest committed state; never waits for writers.
    fn read(&self) -> Result<Box<dyn KvRead>, KvError>;
    /// Takes the single writer slot (waits for the current writer to finish).
    fn write(&self) -> Result<Box<dyn KvWrite>, KvError>;
    /// Names the database in messages: a file's path, "the in-memory database".
    fn describe(&self) -> String;
    /// The file the data lives in, for backends that keep it in one.
    fn path(&self) -> Option<&Path> {
        None
    }
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn read(&self) -> Result<Box<dyn KvRead>, KvError> {
        (**self).read()
    }
    fn write(&self) -> Result<Box<dyn KvWrite>, KvError> {
        (**self).write()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn path(&self) -> Option<&Path> {
        (**self).path()
    }
}
