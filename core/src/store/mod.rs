//! The store: entities, secondary indexes, the audit log and attachment content, kept
//! consistent in one transaction per write, over an ordered key-value [`kv::Backend`]: a
//! redb file ([`redb::RedbBackend`], the default), memory ([`memory::MemoryBackend`]) or any
//! other.
//!
//! Records are encoded as described in `docs/storage.md`: one format byte followed by a
//! MessagePack map with field names, so fields can be added without touching old files.
//! Keys are big-endian ids, so every table iterates in creation order.

mod aggregates;
mod attachments;
mod backup;
mod cache;
mod checks;
mod codec;
#[cfg(test)]
mod conformance;
mod deal_documents;
mod deal_heads;
mod document_rows;
mod external_keys;
mod integrity;
mod interaction_rows;
pub mod kv;
pub mod memory;
mod overlay;
pub(crate) mod postings;
mod read;
pub mod redb;
mod rows;
mod scan;
mod schema;
mod shipment_rows;
pub mod tables;
mod task_rows;
mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use crate::model::{Index, Target};
pub use aggregates::{contribution, Amounts, FunnelKey, FunnelLine, FunnelRollupKey, FunnelTotals};
pub use backup::Copied;
pub use cache::CacheStats;
pub use codec::decode_record;
pub(crate) use codec::encode;
pub use deal_documents::{DealDocument, DealDocuments};
pub use deal_heads::{closing, Closing, DealHead};
pub use document_rows::{DocumentLineRow, DocumentLines, DocumentRow};
pub use external_keys::{check_external_key, MAX_EXTERNAL_KEY};
pub use integrity::Stats;
pub use interaction_rows::InteractionRow;
pub use kv::{Durability, KvError};
pub use read::{Reader, Snapshot};
pub use rows::Span;
pub use scan::DealRow;
#[doc(hidden)]
pub use schema::force_schema_version;
pub use schema::SCHEMA_VERSION;
pub use tables::Table;
pub use task_rows::TaskRow;
pub use write::WriteTxn;

use crate::config::Settings;
use crate::id::UserId;
use crate::model::EntityKind;
use crate::time::Clock;
use crate::Result;
use kv::{Backend, Changes, KvRead, KvWrite};
use tables::entity_table;
use write::entries_of;

/// An open crmkit database.
pub struct Store {
    backend: Stack,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    /// Write transactions committed since the store was opened.
    commits: std::sync::atomic::AtomicU64,
    /// Writers waiting in [`Store::write`] for the writer's slot.
    waiting: std::sync::atomic::AtomicUsize,
}

/// The backend a store was given, with the record cache in front when the settings give the
/// cache memory.
enum Stack {
    Bare(Box<dyn Backend>),
    Cached(cache::CachedBackend),
}

impl Stack {
    fn new(backend: Box<dyn Backend>, settings: &Settings) -> Stack {
        if settings.record_cache_bytes == 0 {
            return Stack::Bare(backend);
        }
        let entity_slots: Vec<usize> = EntityKind::ALL.iter().map(|k| entity_table(*k).slot).collect();
        Stack::Cached(cache::CachedBackend::new(backend, settings.record_cache_bytes, move |t| {
            entity_slots.contains(&t.slot)
        }))
    }

    fn inner(&self) -> &dyn Backend {
        match self {
            Stack::Bare(b) => b.as_ref(),
            Stack::Cached(c) => c,
        }
    }

    fn into_backend(self) -> Box<dyn Backend> {
        match self {
            Stack::Bare(b) => b,
            Stack::Cached(c) => c.into_inner(),
        }
    }

    fn read(&self) -> Result<Box<dyn KvRead>> {
        Ok(self.inner().read()?)
    }

    fn write(&self) -> Result<Box<dyn KvWrite>> {
        Ok(self.inner().write()?)
    }
}

impl Store {
    /// Opens a crmkit database over any backend, the one constructor every other goes
    /// through: an empty backend becomes a new database of the current schema; otherwise the
    /// backend must hold a crmkit database, whose schema is checked and, if older, migrated.
    pub fn with_backend(
        backend: impl Backend + 'static,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
    ) -> Result<Store> {
        let backend = Stack::new(Box::new(backend), &settings);
        let store = Store { backend, settings, clock, commits: Default::default(), waiting: Default::default() };
        schema::prepare(&store)?;
        Ok(store)
    }

    /// Creates a new database file at `path` (the folder must exist; the file must not).
    pub fn create(path: &Path, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Store> {
        let backend = redb::RedbBackend::create(path, redb::RedbOptions::of(&settings))?;
        Store::with_backend(backend, settings, clock)
    }

    /// Opens an existing database file, migrating an older schema.
    pub fn open(path: &Path, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Store> {
        let backend = redb::RedbBackend::open(path, redb::RedbOptions::of(&settings))?;
        Store::with_backend(backend, settings, clock)
    }

    /// Opens an existing database file for reading only, writing nothing to it: the file
    /// must hold a crmkit database of the current schema, closed cleanly (see
    /// [`redb::RedbBackend::open_read_only`]). Writes through the store fail.
    pub fn open_read_only(path: &Path, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Store> {
        let backend = redb::RedbBackend::open_read_only(path, settings.cache_bytes)?;
        Store::over_read_only(backend, settings, clock)
    }

    /// A store over a backend opened for reading only: checks, writing nothing, that it
    /// holds a crmkit database of the current schema.
    pub fn over_read_only(
        backend: impl Backend + 'static,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
    ) -> Result<Store> {
        let backend = Stack::new(Box::new(backend), &settings);
        let store = Store { backend, settings, clock, commits: Default::default(), waiting: Default::default() };
        schema::verify(&store)?;
        Ok(store)
    }

    /// A new database in memory ([`memory::MemoryBackend`]), gone when the store is dropped.
    pub fn in_memory(settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Store> {
        Store::with_backend(memory::MemoryBackend::new(), settings, clock)
    }

    /// Closes the store and gives back its backend, to open it again later with
    /// [`Store::with_backend`] (an in-memory database lives on in it).
    pub fn into_backend(self) -> Box<dyn Backend> {
        self.backend.into_backend()
    }

    /// The database file, for a backend that keeps one.
    pub fn path(&self) -> Option<&Path> {
        self.backend.inner().path()
    }

    /// Names the database in messages: the file's path, "the in-memory database".
    pub fn describe(&self) -> String {
        self.backend.inner().describe()
    }

    /// Whether a writer is waiting for the writer's slot: the holder of a long write (an
    /// import's batch) can end it early for them.
    pub fn writers_waiting(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// How many write transactions were committed since the store was opened: a caller
    /// that knows how many were its own can tell whether anyone else wrote meanwhile.
    pub fn commit_count(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How the record cache has served since the store was opened; `None` when the
    /// settings give it no memory (`record_cache_mb = 0`).
    pub fn record_cache_stats(&self) -> Option<CacheStats> {
        match &self.backend {
            Stack::Cached(c) => Some(c.stats()),
            Stack::Bare(_) => None,
        }
    }

    /// The settings writes are validated against.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The clock writes take "now" from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A consistent read-only snapshot of the latest committed state.
    pub fn read(&self) -> Result<Snapshot> {
        Ok(Snapshot { kv: self.backend.read()?, settings: self.settings.clone(), clock: self.clock.clone() })
    }

    /// Starts the single write transaction; `actor` is recorded in the audit log.
    pub fn write(&self, actor: Option<UserId>) -> Result<WriteTxn<'_>> {
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let kv = self.backend.write();
        self.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let kv = kv?;
        let seq = schema::stored_seq(kv.base())?;
        Ok(WriteTxn {
            store: self,
            kv,
            changes: Changes::new(),
            actor,
            acting_role: None,
            seq,
            seq_used: false,
            durability: Durability::Immediate,
            postings: BTreeMap::new(),
            savepoints: 0,
            postings_undo: Vec::new(),
            engine_writes_state: false,
            now: None,
            in_base: Default::default(),
            attaching: false,
        })
    }

    /// Runs `f` in a write transaction and commits if it succeeds; on an error nothing is
    /// written.
    pub fn transact<R>(&self, actor: Option<UserId>, f: impl FnOnce(&mut WriteTxn<'_>) -> Result<R>) -> Result<R> {
        let mut tx = self.write(actor)?;
        let r = f(&mut tx)?;
        tx.commit()?;
        Ok(r)
    }
}
