//! The store: entities, secondary indexes, the audit log and attachment content, kept
//! consistent in one transaction per write, over an ordered key-value [`kv::Backend`]: a
//! redb file ([`redb::RedbBackend`], the default), memory ([`memory::MemoryBackend`]) or any
//! other.
//!
//! Records are encoded as described in `docs/storage.md`: one format byte followed by a
//! MessagePack map with field names, so fields can be added without touching old files.
//! Keys are big-endian ids, so every table iterates in creation order.

mod cache;
#[cfg(test)]
mod conformance;
pub mod kv;
pub mod memory;
pub(crate) mod postings;
pub mod redb;
mod schema;
pub mod tables;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::model::{Index, Target};
pub use kv::{Durability, KvError};
#[doc(hidden)]
pub use schema::force_schema_version;
pub use schema::SCHEMA_VERSION;
pub use tables::Table;

use crate::audit::{self, AuditEntry, AuditOp};
use crate::config::Settings;
use crate::id::{AuditId, DealId, RawId, TaskId, TypedId, UserId};
use crate::model::{
    custom, Attachment, ContentHash, Cx, Entity, EntityKind, EntityRef, FieldError, IndexEntry, Meta, Participant,
    Partner, Ref, Requirement, StageChange, Task, TaskStatus, User,
};
use crate::time::{Clock, Timestamp};
use crate::{Error, Result};
use kv::{Backend, Changes, KvRead, KvWrite};
use postings::prefix_end;
use tables::{entity_table, AUDIT, AUDIT_BY_ENTITY, BLOBS, EXTERNAL_KEYS, META, STAGE_HISTORY};

/// Record format byte: MessagePack, structs as maps with field names (schema 1 files).
const FORMAT_MSGPACK_NAMED: u8 = 1;
/// Record format byte: MessagePack, structs as arrays in field order (what this build writes).
const FORMAT_MSGPACK_COMPACT: u8 = 2;
/// Attachment content is stored in chunks of this size.
const BLOB_CHUNK: usize = 1 << 20;
/// The longest external key, in characters.
pub const MAX_EXTERNAL_KEY: usize = 200;

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_MSGPACK_COMPACT);
    rmp_serde::encode::write(&mut out, value).expect("entities always serialize");
    out
}

/// Decodes a stored record (for benchmarks and tools).
#[doc(hidden)]
pub fn decode_record<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode(bytes, || "record".to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl Fn() -> String) -> Result<T> {
    Ok(decode_kv(bytes, what)?)
}

/// [`decode`] for a [`kv::Decode`] function, which fails with the backend's error type.
fn decode_kv<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl Fn() -> String) -> Result<T, KvError> {
    match bytes.split_first() {
        Some((&(FORMAT_MSGPACK_NAMED | FORMAT_MSGPACK_COMPACT), body)) => {
            rmp_serde::from_slice(body).map_err(|e| KvError::Corrupt { what: what(), message: e.to_string() })
        }
        Some((b, _)) => Err(KvError::Corrupt { what: what(), message: format!("unknown record format {b}") }),
        None => Err(KvError::Corrupt { what: what(), message: "empty record".into() }),
    }
}

fn id_suffix(key: &[u8]) -> Option<RawId> {
    key.len().checked_sub(16).and_then(|at| RawId::from_bytes(&key[at..]))
}

/// Counts of what a store holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Entities per kind.
    pub entities: BTreeMap<EntityKind, u64>,
    pub audit_entries: u64,
    /// Steps in the stage history of all deals.
    pub stage_history_steps: u64,
    pub blob_chunks: u64,
    pub schema_version: u32,
    /// Size of the database file in bytes (0 for a backend without a file).
    pub file_bytes: u64,
}

/// An open crmkit database.
pub struct Store {
    backend: Stack,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    /// Write transactions committed since the store was opened.
    commits: std::sync::atomic::AtomicU64,
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
        let store = Store { backend, settings, clock, commits: Default::default() };
        schema::prepare(&store)?;
        Ok(store)
    }

    /// Creates a new database file at `path` (the folder must exist; the file must not).
    pub fn create(path: &Path, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Store> {
        let backend = redb::RedbBackend::create(path, settings.cache_bytes)?;
        Store::with_backend(backend, settings, clock)
    }

    /// Opens an existing database file, migrating an older schema.
    pub fn open(path: &Path, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Store> {
        let backend = redb::RedbBackend::open(path, settings.cache_bytes)?;
        Store::with_backend(backend, settings, clock)
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

    /// How many write transactions were committed since the store was opened: a caller
    /// that knows how many were its own can tell whether anyone else wrote meanwhile.
    pub fn commit_count(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
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
        Ok(Snapshot { kv: self.backend.read()?, settings: self.settings.clone() })
    }

    /// Starts the single write transaction; `actor` is recorded in the audit log.
    pub fn write(&self, actor: Option<UserId>) -> Result<WriteTxn<'_>> {
        let kv = self.backend.write()?;
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

    /// Checks that every secondary index holds exactly what the records say; returns one
    /// line per disagreement (empty when the database is consistent).
    /// Works one entity kind at a time, so memory follows the largest kind, not the file.
    pub fn verify_indexes(&self) -> Result<Vec<String>> {
        let r = self.read()?;
        let mut problems = Vec::new();
        let mut custom_refs = postings::Lists::new();
        for kind in EntityKind::ALL {
            let mut expected = schema::expected_postings_of(&r, kind)?;
            let refs: Vec<_> = expected.keys().filter(|(i, _)| *i == Index::CustomRef).cloned().collect();
            for key in refs {
                let mut ids = expected.remove(&key).unwrap_or_default();
                custom_refs.entry(key).or_default().append(&mut ids);
            }
            for index in Index::ALL.iter().filter(|i| i.owner() == Some(kind)) {
                compare_index(&r, *index, &expected, &mut problems)?;
            }
        }
        for ids in custom_refs.values_mut() {
            ids.sort();
        }
        compare_index(&r, Index::CustomRef, &custom_refs, &mut problems)?;
        Ok(problems)
    }

    /// Checks attachments against the stored content: every attachment's content is there
    /// and as long as its size says, and no content is kept that no attachment refers to.
    /// Returns the problems found.
    pub fn verify_attachments(&self) -> Result<Vec<String>> {
        let r = self.read()?;
        let mut problems = Vec::new();
        let mut sizes: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        r.kv_scan(BLOBS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
            if let Ok(hash) = <[u8; 32]>::try_from(&k[..32.min(k.len())]) {
                *sizes.entry(hash).or_default() += v.len() as u64;
            }
            true
        })?;
        let mut referenced = std::collections::BTreeSet::new();
        r.for_each::<Attachment>(|a| {
            match sizes.get(&a.content.0) {
                None => problems.push(format!(
                    "attachment {} ({}): its content {} is not stored",
                    a.id,
                    a.name,
                    a.content.hex()
                )),
                Some(&n) if n != a.size => problems.push(format!(
                    "attachment {} ({}): {} bytes are stored for its content, its size says {}",
                    a.id, a.name, n, a.size
                )),
                Some(_) => {}
            }
            referenced.insert(a.content.0);
            true
        })?;
        for hash in sizes.keys().filter(|h| !referenced.contains(*h)) {
            problems.push(format!("content {} is stored but no attachment refers to it", ContentHash(*hash).hex()));
        }
        Ok(problems)
    }

    /// Counts per entity kind and the file size.
    pub fn stats(&self) -> Result<Stats> {
        let r = self.backend.read()?;
        let mut entities = BTreeMap::new();
        for k in EntityKind::ALL {
            entities.insert(k, r.len(entity_table(k))?);
        }
        Ok(Stats {
            entities,
            audit_entries: r.len(AUDIT)?,
            stage_history_steps: r.len(STAGE_HISTORY)?,
            blob_chunks: r.len(BLOBS)?,
            schema_version: schema::stored_version(r.as_ref())?.unwrap_or(0),
            file_bytes: self.path().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len()),
        })
    }
}

/// Compares the stored entries of `index` with the expected lists (which may hold other
/// indexes too), adding a line per difference.
fn compare_index(r: &Snapshot, index: Index, expected: &postings::Lists, problems: &mut Vec<String>) -> Result<()> {
    let mut stored: BTreeMap<Vec<u8>, Vec<RawId>> = BTreeMap::new();
    for (prefix, id) in r.index_entries(index)? {
        stored.entry(prefix).or_default().push(id);
    }
    for ((_, prefix), want) in expected.iter().filter(|((i, _), _)| *i == index) {
        match stored.get(prefix) {
            Some(got) if got == want => {}
            Some(got) => {
                problems.push(format!("{index:?} {prefix:02x?}: stored {} ids, records say {}", got.len(), want.len()))
            }
            None => problems.push(format!("{index:?} {prefix:02x?}: missing ({} ids)", want.len())),
        }
    }
    for prefix in stored.keys().filter(|p| !expected.contains_key(&(index, (*p).clone()))) {
        problems.push(format!("{index:?} {prefix:02x?}: stored but no record has it"));
    }
    Ok(())
}

/// Reads shared by snapshots and write transactions (which see their own writes).
pub trait Reader {
    #[doc(hidden)]
    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    #[doc(hidden)]
    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        match self.kv_get(t, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
    #[doc(hidden)]
    fn kv_contains(&self, t: Table, key: &[u8]) -> Result<bool> {
        Ok(self.kv_get(t, key)?.is_some())
    }
    #[doc(hidden)]
    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()>;
    /// The settings in force.
    fn settings(&self) -> &Settings;

    /// The entity with this id, if any.
    fn get<E: Entity>(&self, id: E::Id) -> Result<Option<E>> {
        Ok(self.get_shared::<E>(id)?.map(|e| Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone())))
    }

    /// The entity with this id, shared with other readers rather than copied (what a
    /// read-only caller such as an API response wants).
    fn get_shared<E: Entity>(&self, id: E::Id) -> Result<Option<Arc<E>>> {
        let raw = id.raw();
        let decoder =
            |bytes: &[u8]| decode_kv::<E>(bytes, || format!("{} {raw}", E::KIND)).map(|e| Arc::new(e) as kv::Decoded);
        let found = self.kv_get_decoded(entity_table(E::KIND), &raw.to_bytes(), &decoder)?;
        Ok(found
            .map(|d| d.downcast::<E>().unwrap_or_else(|_| unreachable!("{} records decode as their type", E::KIND))))
    }

    /// The entity with this id, or [`Error::NotFound`].
    fn load<E: Entity>(&self, id: E::Id) -> Result<E> {
        self.get(id)?.ok_or(Error::NotFound { kind: E::KIND, id: id.raw() })
    }

    /// Whether an entity of `kind` has this id.
    fn exists(&self, kind: EntityKind, id: RawId) -> Result<bool> {
        self.kv_contains(entity_table(kind), &id.to_bytes())
    }

    #[doc(hidden)]
    /// Index changes a write transaction has not applied yet.
    fn pending(&self, index: Index, prefix: &[u8]) -> Option<&postings::Delta> {
        let _ = (index, prefix);
        None
    }

    /// Ids in `index` under `prefix`, in id (creation) order, after `after`, at most `limit`.
    fn ids_by(&self, index: Index, prefix: &[u8], after: Option<RawId>, limit: usize) -> Result<Vec<RawId>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut pending = self.pending(index, prefix).map(|d| d.range((lower, Bound::Unbounded)).peekable());
        let table = index.table();
        let scan = |from: Bound<&[u8]>, to: Bound<&[u8]>, rev: bool, visit: kv::Visit<'_>| {
            self.kv_scan(table, from, to, rev, visit)
        };
        postings::scan(&scan, prefix, after, &mut |id| {
            if let Some(p) = pending.as_mut() {
                while let Some((&d, &add)) = p.peek() {
                    if d > id {
                        break;
                    }
                    if d < id && add {
                        out.push(d);
                        if out.len() >= limit {
                            return false;
                        }
                    }
                    p.next();
                    if d == id {
                        if add {
                            out.push(id);
                        }
                        return out.len() < limit;
                    }
                }
            }
            out.push(id);
            out.len() < limit
        })?;
        if let Some(p) = pending {
            out.extend(p.filter(|(_, add)| **add).map(|(d, _)| *d).take(limit - out.len().min(limit)));
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Entities in `index` under `prefix` (see [`Reader::ids_by`]).
    fn find<E: Entity>(&self, index: Index, prefix: &[u8], after: Option<RawId>, limit: usize) -> Result<Vec<E>> {
        debug_assert!(index.owner().is_none_or(|o| o == E::KIND));
        self.ids_by(index, prefix, after, limit)?.into_iter().map(|id| self.load::<E>(E::Id::from_raw(id))).collect()
    }

    /// Entities of a kind in creation order, after `after`, at most `limit`.
    fn list<E: Entity>(&self, after: Option<E::Id>, limit: usize) -> Result<Vec<E>> {
        let mut out = Vec::new();
        let mut err = None;
        let from = after.map(|a| a.raw().to_bytes());
        let start = from.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(k.as_slice()));
        self.kv_scan(entity_table(E::KIND), start, Bound::Unbounded, false, &mut |k, v| {
            if out.len() >= limit {
                return false;
            }
            match decode::<E>(v, || format!("{} {:?}", E::KIND, RawId::from_bytes(k))) {
                Ok(e) => out.push(e),
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            true
        })?;
        err.map_or(Ok(out), Err)
    }

    /// Visits every entity of a kind in creation order until `f` returns `false`.
    fn for_each<E: Entity>(&self, mut f: impl FnMut(E) -> bool) -> Result<()> {
        let mut err = None;
        self.kv_scan(entity_table(E::KIND), Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| match decode::<E>(
            v,
            || format!("{} {:?}", E::KIND, RawId::from_bytes(k)),
        ) {
            Ok(e) => f(e),
            Err(e) => {
                err = Some(e);
                false
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    /// Every entry of an index as `(prefix, id)` pairs (for consistency checks; committed
    /// state only).
    fn index_entries(&self, index: Index) -> Result<Vec<(Vec<u8>, RawId)>> {
        let mut out = Vec::new();
        self.kv_scan(index.table(), Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
            let prefix = &k[..k.len().saturating_sub(16)];
            out.extend(postings::ids(v).map(|id| (prefix.to_vec(), id)));
            true
        })?;
        Ok(out)
    }

    /// The user with this login.
    fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let prefix = crate::model::text_prefix(&[login]);
        Ok(self.find::<User>(Index::UserByLogin, &prefix, None, 1)?.pop())
    }

    /// The whole history of one entity, oldest first: its creation (read from the record,
    /// or from the last state kept by its deletion), every update and the deletion.
    fn audit_of<E: Entity>(&self, id: E::Id) -> Result<Vec<AuditEntry>> {
        let stored = self.audit_entries_of(id.raw())?;
        let created = match self.get::<E>(id)? {
            Some(e) => {
                let m = e.meta();
                Some((m.created_at, m.created_by))
            }
            None => stored.iter().find(|a| a.op == AuditOp::Delete).and_then(|d| {
                let field = |name: &str| d.changes.iter().find(|c| c.field == name).and_then(|c| c.old.clone());
                let at = field("created_at").and_then(|v| serde_json::from_value(v).ok())?;
                let by = field("created_by").and_then(|v| serde_json::from_value(v).ok()).flatten();
                Some((at, by))
            }),
        };
        let mut out = Vec::with_capacity(stored.len() + 1);
        if let Some((at, actor)) = created {
            out.push(AuditEntry {
                id: AuditId(id.raw()),
                at,
                actor,
                entity: EntityRef { kind: E::KIND, id: id.raw() },
                op: AuditOp::Create,
                changes: Vec::new(),
                version: 1,
            });
        }
        out.extend(stored);
        Ok(out)
    }

    /// The stored audit entries (updates and deletes) of one entity, oldest first.
    fn audit_entries_of(&self, id: RawId) -> Result<Vec<AuditEntry>> {
        let prefix = id.to_bytes();
        let ids = {
            let mut ids = Vec::new();
            let end = prefix_end(&prefix);
            self.kv_scan(
                AUDIT_BY_ENTITY,
                Bound::Included(&prefix[..]),
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                false,
                &mut |k, _| {
                    ids.extend(id_suffix(k));
                    true
                },
            )?;
            ids
        };
        ids.into_iter().map(|a| self.audit_entry(AuditId(a))).collect()
    }

    /// One audit entry.
    fn audit_entry(&self, id: AuditId) -> Result<AuditEntry> {
        let bytes = self
            .kv_get(AUDIT, &id.0.to_bytes())?
            .ok_or(Error::Corrupt { what: format!("audit entry {id}"), message: "indexed but missing".into() })?;
        decode(&bytes, || format!("audit entry {id}"))
    }

    /// The stored audit log (updates and deletes) in time order, after `after`, at most
    /// `limit`. Creations are the records themselves: their ids are time-ordered.
    fn audit_log(&self, after: Option<AuditId>, limit: usize) -> Result<Vec<AuditEntry>> {
        let from = after.map(|a| a.0.to_bytes());
        let mut out = Vec::new();
        let mut err = None;
        self.kv_scan(
            AUDIT,
            from.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..])),
            Bound::Unbounded,
            false,
            &mut |_, v| {
                if out.len() >= limit {
                    return false;
                }
                match decode(v, || "audit entry".to_string()) {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        err = Some(e);
                        return false;
                    }
                }
                true
            },
        )?;
        err.map_or(Ok(out), Err)
    }

    /// The stage history of a deal, step by step.
    fn stage_history(&self, deal: DealId) -> Result<Vec<StageChange>> {
        let mut out = Vec::new();
        let mut err = None;
        let prefix = deal.0.to_bytes();
        let end = prefix_end(&prefix);
        self.kv_scan(
            STAGE_HISTORY,
            Bound::Included(&prefix[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |_, v| match decode::<StageChange>(v, || format!("stage history of deal {deal}")) {
                Ok(c) => {
                    out.push(c);
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            },
        )?;
        err.map_or(Ok(out), Err)
    }

    /// The entity of `kind` an import registered under the external key `key` (`None`
    /// when no live entity has it).
    fn external_key(&self, kind: EntityKind, key: &str) -> Result<Option<RawId>> {
        match self.kv_get(EXTERNAL_KEYS, &external_key(kind, key))?.and_then(|v| RawId::from_bytes(&v)) {
            Some(id) if self.exists(kind, id)? => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// Visits the external keys of the live entities of `kind`, in key order, until `f`
    /// returns `false`.
    fn for_each_external_key(&self, kind: EntityKind, mut f: impl FnMut(&str, RawId) -> bool) -> Result<()> {
        let prefix = external_key(kind, "");
        let end = prefix_end(&prefix);
        let mut from = prefix.clone();
        let mut first = true;
        loop {
            // Read in slices, so that `f` may read the store between them.
            let mut slice: Vec<(Vec<u8>, RawId)> = Vec::new();
            self.kv_scan(
                EXTERNAL_KEYS,
                if first { Bound::Included(&from[..]) } else { Bound::Excluded(&from[..]) },
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                false,
                &mut |k, v| {
                    if let Some(id) = RawId::from_bytes(v) {
                        slice.push((k.to_vec(), id));
                    }
                    slice.len() < 4096
                },
            )?;
            first = false;
            let Some((last, _)) = slice.last() else { return Ok(()) };
            from = last.clone();
            for (k, id) in &slice {
                if self.exists(kind, *id)? && !f(&String::from_utf8_lossy(&k[prefix.len()..]), *id) {
                    return Ok(());
                }
            }
        }
    }

    /// The external keys of one entity, in key order. This scans the keys of its kind:
    /// meant for merges and checks, not for hot paths.
    fn external_keys_of(&self, kind: EntityKind, id: RawId) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.for_each_external_key(kind, |k, of| {
            if of == id {
                out.push(k.to_string());
            }
            true
        })?;
        Ok(out)
    }

    /// The number of steps in a deal's stage history.
    fn stage_steps(&self, deal: DealId) -> Result<u32> {
        let prefix = deal.0.to_bytes();
        let end = prefix_end(&prefix);
        let mut n = 0;
        self.kv_scan(
            STAGE_HISTORY,
            Bound::Included(&prefix[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            true,
            &mut |k, _| {
                n = k[16..].try_into().map(u32::from_be_bytes).unwrap_or(0) + 1;
                false
            },
        )?;
        Ok(n)
    }

    /// Visits every step of every deal's history, deal by deal in creation order, until `f`
    /// returns `false`.
    fn for_each_stage_change(&self, mut f: impl FnMut(StageChange) -> bool) -> Result<()> {
        let mut err = None;
        self.kv_scan(
            STAGE_HISTORY,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            &mut |_, v| match decode::<StageChange>(v, || "stage history".to_string()) {
                Ok(c) => f(c),
                Err(e) => {
                    err = Some(e);
                    false
                }
            },
        )?;
        err.map_or(Ok(()), Err)
    }

    /// A user's tasks in one status, oldest first.
    fn tasks_of(&self, executor: UserId, status: TaskStatus, limit: usize) -> Result<Vec<Task>> {
        self.find(Index::TaskByExecutor, &crate::model::task_executor_prefix(executor, status), None, limit)
    }

    /// The tasks of a deal, oldest first.
    fn tasks_of_deal(&self, deal: DealId) -> Result<Vec<Task>> {
        self.find(Index::TaskByDeal, &deal.0.to_bytes(), None, usize::MAX)
    }

    /// Open tasks due before `now`, the most overdue first.
    fn overdue_tasks(&self, now: Timestamp, limit: usize) -> Result<Vec<Task>> {
        let end = crate::model::task_due_prefix(now);
        let mut ids = Vec::new();
        self.kv_scan(Index::TaskOpenByDue.table(), Bound::Unbounded, Bound::Excluded(&end), false, &mut |_, v| {
            ids.extend(postings::ids(v));
            ids.len() < limit
        })?;
        ids.truncate(limit);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.load::<Task>(TaskId(id))?);
        }
        Ok(out)
    }

    /// The stored content with this hash.
    /// Visits the stored content with this hash chunk by chunk (up to 1 MiB each), without
    /// holding all of it; `false` from `visit` stops. Returns whether the content exists.
    fn blob_chunks(&self, hash: &ContentHash, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool> {
        let mut found = false;
        let end = prefix_end(&hash.0);
        self.kv_scan(
            BLOBS,
            Bound::Included(&hash.0[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |_, v| {
                found = true;
                visit(v)
            },
        )?;
        Ok(found)
    }

    fn blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>> {
        let mut out: Option<Vec<u8>> = None;
        let end = prefix_end(&hash.0);
        self.kv_scan(
            BLOBS,
            Bound::Included(&hash.0[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |_, v| {
                out.get_or_insert_with(Vec::new).extend_from_slice(v);
                true
            },
        )?;
        Ok(out)
    }
}

/// A read-only snapshot: sees the state committed when it was taken, for as long as it lives.
pub struct Snapshot {
    kv: Box<dyn KvRead>,
    settings: Arc<Settings>,
}

impl Snapshot {
    /// The number of steps in the stage history of all deals.
    pub(crate) fn stage_history_len(&self) -> Result<u64> {
        Ok(self.kv.len(STAGE_HISTORY)?)
    }
}

impl Reader for Snapshot {
    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(t, key)?)
    }
    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        Ok(self.kv.get_decoded(t, key, decode)?)
    }
    fn kv_contains(&self, t: Table, key: &[u8]) -> Result<bool> {
        Ok(self.kv.contains(t, key)?)
    }
    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()> {
        Ok(self.kv.scan(t, from, to, reverse, visit)?)
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// The write transaction. Each operation checks everything before it changes anything, so
/// a refused operation leaves the transaction as it was; dropping the transaction without
/// [`WriteTxn::commit`] writes nothing.
pub struct WriteTxn<'s> {
    store: &'s Store,
    kv: Box<dyn KvWrite>,
    changes: Changes,
    actor: Option<UserId>,
    /// The one role the actor acts in (an API token's), when not all of theirs.
    acting_role: Option<crate::model::Role>,
    /// The last sequence number handed out.
    seq: u64,
    /// Whether `seq` moved and must be stored at commit.
    seq_used: bool,
    durability: Durability,
    /// Index changes, applied to the posting chunks at commit.
    postings: BTreeMap<(Index, Vec<u8>), postings::Delta>,
    /// Open savepoints; while there are any, index changes are recorded in `postings_undo`.
    savepoints: u32,
    postings_undo: Vec<PostingUndo>,
    /// Set while the process engine writes a deal's stage and status.
    engine_writes_state: bool,
    /// The instant writes are stamped with, while an engine operation runs.
    now: Option<Timestamp>,
    /// Records found in the committed state the transaction started from, which does not
    /// change under it: reference checks of a bulk load ask about the same few over and over.
    in_base: std::cell::RefCell<std::collections::HashSet<(usize, RawId)>>,
    /// Set while `attach` creates the attachment record for content it stores.
    attaching: bool,
}

/// An index change before it was overwritten: the list, the id, and the earlier pending
/// change of that id (`None`: untouched).
type PostingUndo = ((Index, Vec<u8>), RawId, Option<bool>);

/// Where [`WriteTxn::rollback`] returns to.
#[must_use]
pub(crate) struct Savepoint {
    changes: usize,
    postings: usize,
    seq: u64,
    seq_used: bool,
}

impl Reader for WriteTxn<'_> {
    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.changes.get(t, key) {
            Some(v) => Ok(v.map(<[u8]>::to_vec)),
            None => Ok(self.kv.base().get(t, key)?),
        }
    }

    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        match self.changes.get(t, key) {
            Some(Some(bytes)) => Ok(Some(decode(bytes)?)),
            Some(None) => Ok(None),
            None => Ok(self.kv.base().get_decoded(t, key, decode)?),
        }
    }

    fn kv_contains(&self, t: Table, key: &[u8]) -> Result<bool> {
        match self.changes.get(t, key) {
            Some(v) => Ok(v.is_some()),
            None => {
                let Some(id) = RawId::from_bytes(key).filter(|_| key.len() == 16) else {
                    return Ok(self.kv.base().contains(t, key)?);
                };
                if self.in_base.borrow().contains(&(t.slot, id)) {
                    return Ok(true);
                }
                let found = self.kv.base().contains(t, key)?;
                if found {
                    let mut known = self.in_base.borrow_mut();
                    if known.len() >= 100_000 {
                        known.clear();
                    }
                    known.insert((t.slot, id));
                }
                Ok(found)
            }
        }
    }

    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()> {
        let pending = &self.changes.tables[t.slot];
        if pending.is_empty() {
            return Ok(self.kv.base().scan(t, from, to, reverse, visit)?);
        }
        // Merge the pending changes in the range with the base scan; pending wins on equal keys.
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (from, to);
        type Pending<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;
        let mut overlay: Pending<'_> = if reverse {
            Box::new(pending.range::<[u8], _>(range).rev())
        } else {
            Box::new(pending.range::<[u8], _>(range))
        };
        let mut next = overlay.next();
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut stopped = false;
        self.kv.base().scan(t, from, to, reverse, &mut |k, v| {
            while let Some((ok, ov)) = next {
                if before(ok, k) {
                    if let Some(ov) = ov {
                        if !visit(ok, ov) {
                            stopped = true;
                            return false;
                        }
                    }
                    next = overlay.next();
                } else {
                    break;
                }
            }
            match next {
                Some((ok, ov)) if ok.as_slice() == k => {
                    next = overlay.next();
                    match ov {
                        Some(ov) => {
                            if !visit(k, ov) {
                                stopped = true;
                                return false;
                            }
                            true
                        }
                        None => true,
                    }
                }
                _ => {
                    if !visit(k, v) {
                        stopped = true;
                        return false;
                    }
                    true
                }
            }
        })?;
        while let (false, Some((ok, ov))) = (stopped, next) {
            if let Some(ov) = ov {
                if !visit(ok, ov) {
                    break;
                }
            }
            next = overlay.next();
        }
        Ok(())
    }

    fn settings(&self) -> &Settings {
        &self.store.settings
    }

    fn pending(&self, index: Index, prefix: &[u8]) -> Option<&postings::Delta> {
        self.postings.get(&(index, prefix.to_vec()))
    }
}

impl WriteTxn<'_> {
    /// How the commit is flushed (default: immediately durable).
    pub fn set_durability(&mut self, d: Durability) {
        self.durability = d;
    }

    /// Makes `actor` the acting user of what follows in the transaction (loaders use it to
    /// record who took each step of many deals in one transaction).
    pub fn set_actor(&mut self, actor: Option<UserId>) {
        self.actor = actor;
    }

    /// Limits what the process engine lets the actor do to one of their roles (an API token
    /// acts in one role); `None`: all of the user's roles.
    pub fn set_acting_role(&mut self, role: Option<crate::model::Role>) {
        self.acting_role = role;
    }

    /// The role the actor acts in, if limited to one.
    pub fn acting_role(&self) -> Option<crate::model::Role> {
        self.acting_role
    }

    /// The acting user recorded in the audit log.
    pub fn actor(&self) -> Option<UserId> {
        self.actor
    }

    /// The settings writes are validated against.
    pub fn settings_arc(&self) -> Arc<Settings> {
        self.store.settings.clone()
    }

    /// The current instant of the store's clock.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(|| self.store.clock.now())
    }

    /// Makes `now` the instant of everything written until it is unpinned (`None`); returns
    /// the previous pin. The process engine stamps all writes of one operation alike.
    pub(crate) fn pin_now(&mut self, now: Option<Timestamp>) -> Option<Timestamp> {
        std::mem::replace(&mut self.now, now)
    }

    /// Commits everything written in the transaction.
    pub fn commit(mut self) -> Result<()> {
        if self.seq_used {
            self.changes.put(META, schema::ID_SEQ.to_vec(), self.seq.to_be_bytes().to_vec());
        }
        for ((index, prefix), delta) in &self.postings {
            postings::apply(self.kv.base(), *index, prefix, delta, &mut self.changes)?;
        }
        // Counted before the backend lets the next writer in, so that a writer never sees
        // a commit it cannot count (a failed commit counts too: that only makes a caller
        // look again).
        self.store.commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.kv.commit(self.changes, self.durability)?)
    }

    /// Runs `f`; if it fails, everything it wrote is taken back, so the transaction is as it
    /// was before the call (and may go on and commit).
    pub fn attempt<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let sp = self.savepoint();
        match f(self) {
            Ok(r) => {
                self.release(sp);
                Ok(r)
            }
            Err(e) => {
                self.rollback(sp);
                Err(e)
            }
        }
    }

    pub(crate) fn savepoint(&mut self) -> Savepoint {
        self.savepoints += 1;
        Savepoint {
            changes: self.changes.mark(),
            postings: self.postings_undo.len(),
            seq: self.seq,
            seq_used: self.seq_used,
        }
    }

    pub(crate) fn release(&mut self, _sp: Savepoint) {
        self.savepoints -= 1;
        if self.savepoints == 0 {
            self.changes.stop_recording();
            self.postings_undo.clear();
        }
    }

    pub(crate) fn rollback(&mut self, sp: Savepoint) {
        self.changes.rollback(sp.changes);
        while self.postings_undo.len() > sp.postings {
            let (list, id, old) = self.postings_undo.pop().expect("longer than the savepoint");
            let delta = self.postings.entry(list.clone()).or_default();
            match old {
                Some(add) => {
                    delta.insert(id, add);
                }
                None => {
                    delta.remove(&id);
                    if delta.is_empty() {
                        self.postings.remove(&list);
                    }
                }
            }
        }
        self.seq = sp.seq;
        self.seq_used = sp.seq_used;
        self.release(sp);
    }

    /// Runs `f` with the process engine's permission to change a deal's stage and status.
    pub(crate) fn as_engine<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let was = std::mem::replace(&mut self.engine_writes_state, true);
        let r = f(self);
        self.engine_writes_state = was;
        r
    }

    /// Appends step `change.step` of a deal's stage history, which the caller knows to be
    /// the next one (the deal record counts its steps).
    pub(crate) fn append_counted_stage_change(&mut self, change: &StageChange) {
        self.changes.put(STAGE_HISTORY, history_key(change.deal, change.step), encode(change));
    }

    /// Appends the next step of a deal's stage history; `change.step` must be the next
    /// number.
    pub(crate) fn append_stage_change(&mut self, change: &StageChange) -> Result<()> {
        let next = self.stage_steps(change.deal)?;
        if change.step != next {
            return Err(Error::NotAllowed(format!(
                "deal {}: stage history step {} cannot be written, the next one is {next}",
                change.deal, change.step
            )));
        }
        self.changes.put(STAGE_HISTORY, history_key(change.deal, change.step), encode(change));
        Ok(())
    }

    /// The id the next creation at `at` gets (not handed out yet).
    fn peek_id(&self, at: Timestamp) -> RawId {
        RawId::new(at.0, self.seq + 1)
    }

    /// Hands out an id: the next sequence number at `at`.
    fn next_id(&mut self, at: Timestamp) -> RawId {
        self.seq += 1;
        self.seq_used = true;
        RawId::new(at.0, self.seq)
    }

    /// Creates `entity`: assigns id, version 1 and instants, checks it, writes it with its
    /// index entries and an audit entry. Returns the stored form.
    pub fn create<E: Entity>(&mut self, entity: E) -> Result<E> {
        self.create_inner(entity, None)
    }

    /// Creates an entity brought in from elsewhere with its original creation instant.
    pub(crate) fn create_imported<E: Entity>(&mut self, entity: E, created_at: Timestamp) -> Result<E> {
        self.create_inner(entity, Some(created_at))
    }

    fn create_inner<E: Entity>(&mut self, mut entity: E, created_at: Option<Timestamp>) -> Result<E> {
        if E::CREATED_BY_ATTACH && !self.attaching {
            return Err(Error::NotAllowed(
                "attachments are created by attach or attach_from, which store their content".into(),
            ));
        }
        let now = self.now();
        let created = created_at.unwrap_or(now);
        let id = self.peek_id(created);
        let actor = self.actor;
        entity.set_meta(Meta {
            id,
            version: 1,
            created_at: created,
            updated_at: now,
            created_by: actor,
            updated_by: actor,
        });
        entity.stamp(now);
        self.check(&mut entity, None)?;
        let entries = entries_of(&entity);
        self.check_unique::<E>(&entries, id)?;
        let first_step = if self.engine_writes_state {
            None
        } else {
            let settings = self.store.settings.clone();
            entity.created_outside_engine(Cx { rules: &*settings }, self.actor)?
        };
        // Everything is checked: from here on nothing can fail.
        let taken = self.next_id(created);
        debug_assert_eq!(taken, id);
        let kept = entity.clone();
        self.changes.put_decoded(entity_table(E::KIND), id.to_bytes().to_vec(), encode(&entity), || Arc::new(kept));
        if let Some(step) = first_step {
            self.changes.put(STAGE_HISTORY, history_key(step.deal, 0), encode(&step));
        }
        for e in entries {
            self.index_change(e, id, true);
        }
        // The create is recorded by the record itself (id, created_at, created_by); see
        // `Reader::audit_of`.
        Ok(entity)
    }

    /// Replaces the stored entity with `entity`, whose `version` must be the stored one.
    /// A write that changes nothing is not recorded and keeps the version.
    pub fn update<E: Entity>(&mut self, mut entity: E) -> Result<E> {
        let meta = entity.meta();
        let old: Arc<E> =
            self.get_shared(entity.id())?.ok_or(Error::NotFound { kind: E::KIND, id: entity.id().raw() })?;
        let old: &E = old.as_ref();
        let old_meta = old.meta();
        if old_meta.version != meta.version {
            return Err(Error::Conflict { kind: E::KIND, id: meta.id, given: meta.version, stored: old_meta.version });
        }
        let now = self.now();
        entity.set_meta(Meta {
            id: meta.id,
            version: old_meta.version + 1,
            created_at: old_meta.created_at,
            updated_at: now,
            created_by: old_meta.created_by,
            updated_by: self.actor,
        });
        entity.stamp(now);
        old.check_change(&entity, self.engine_writes_state)?;
        self.check(&mut entity, Some(old))?;
        let record = encode(&entity);
        let changes = audit::diff_records(old, &encode(old), &entity, &record);
        // The engine's own bookkeeping (a step count) is not audited, but is written.
        if changes.is_empty() && !self.engine_writes_state {
            return Ok(old.clone());
        }
        let old_entries = entries_of(old);
        let new_entries = entries_of(&entity);
        let added: Vec<&IndexEntry> = new_entries.iter().filter(|e| !old_entries.contains(e)).collect();
        self.check_unique::<E>(&added.iter().map(|e| (*e).clone()).collect::<Vec<_>>(), meta.id)?;
        let added: Vec<IndexEntry> = added.into_iter().cloned().collect();
        for e in old_entries.into_iter().filter(|e| !new_entries.contains(e)) {
            self.index_change(e, meta.id, false);
        }
        for e in added {
            self.index_change(e, meta.id, true);
        }
        let kept = entity.clone();
        self.changes.put_decoded(entity_table(E::KIND), meta.id.to_bytes().to_vec(), record, || Arc::new(kept));
        let version = entity.meta().version;
        if !changes.is_empty() {
            self.audit(now, E::KIND, meta.id, AuditOp::Update, changes, version);
        }
        Ok(entity)
    }

    /// Deletes the entity if `version` is the stored one and nothing refers to it.
    pub fn delete<E: Entity>(&mut self, id: E::Id, version: u64) -> Result<()> {
        let raw = id.raw();
        if let Some(why) = E::NEVER_DELETED {
            return Err(Error::NotAllowed(format!("{} {raw} cannot be deleted: {why}", E::KIND)));
        }
        let old: E = self.load(id)?;
        let stored = old.meta().version;
        if stored != version {
            return Err(Error::Conflict { kind: E::KIND, id: raw, given: version, stored });
        }
        self.check_unreferenced(E::KIND, raw)?;
        let history = if E::HAS_HISTORY { self.stage_steps(DealId(raw))? } else { 0 };
        old.check_delete(self.engine_writes_state, history).map_err(Error::NotAllowed)?;
        let blob_keys = match old.content() {
            Some(hash) => self.blob_keys_released(hash, raw)?,
            None => Vec::new(),
        };
        // Everything is checked: from here on nothing can fail.
        for e in entries_of(&old) {
            self.index_change(e, raw, false);
        }
        self.changes.delete(entity_table(E::KIND), raw.to_bytes().to_vec());
        if E::HAS_HISTORY && history == 1 {
            self.changes.delete(STAGE_HISTORY, history_key(DealId(raw), 0));
        }
        for k in blob_keys {
            self.changes.delete(BLOBS, k);
        }

        let now = self.now();
        self.audit(now, E::KIND, raw, AuditOp::Delete, audit::snapshot(&to_json(&old)), stored);
        Ok(())
    }

    /// Registers `key` as an external key of the entity `id` of `kind`: the id the record
    /// has in the system it came from. A key names one live entity of a kind; an entity may
    /// have several keys.
    pub fn set_external_key(&mut self, kind: EntityKind, key: &str, id: RawId) -> Result<()> {
        if !self.exists(kind, id)? {
            return Err(Error::NotFound { kind, id });
        }
        self.put_external_key(kind, key, id, false)
    }

    /// [`WriteTxn::set_external_key`] for an entity the caller has just created. `known_free`:
    /// the caller has made sure no live entity has the key.
    pub(crate) fn put_external_key(&mut self, kind: EntityKind, key: &str, id: RawId, known_free: bool) -> Result<()> {
        let bad = |m: String| Error::from(FieldError::new(kind, "key", m));
        check_external_key(kind, key)?;
        match if known_free { None } else { self.external_key(kind, key)? } {
            Some(other) if other == id => return Ok(()),
            Some(other) => return Err(bad(format!("\"{key}\" is already the key of {kind} {other}"))),
            None => {}
        }
        self.changes.put(EXTERNAL_KEYS, external_key(kind, key), id.to_bytes().to_vec());
        Ok(())
    }

    /// Moves the external keys of `from` to `to` (both of `kind`): a merge of duplicates
    /// leaves the survivor findable by the duplicate's keys.
    pub(crate) fn move_external_keys(&mut self, kind: EntityKind, from: RawId, to: RawId) -> Result<()> {
        for key in self.external_keys_of(kind, from)? {
            self.changes.put(EXTERNAL_KEYS, external_key(kind, &key), to.to_bytes().to_vec());
        }
        Ok(())
    }

    /// Attaches what `reader` yields (a file, a request body): reads at most the configured
    /// limit and refuses, without storing anything, as soon as there is more.
    pub fn attach_from(
        &mut self,
        owner: EntityRef,
        name: &str,
        mime: &str,
        reader: &mut dyn std::io::Read,
    ) -> Result<Attachment> {
        let max = self.store.settings.attachment_max_bytes;
        let mut content = Vec::new();
        let read = std::io::Read::take(reader, max + 1).read_to_end(&mut content);
        read.map_err(|e| Error::Io { path: PathBuf::from(name), source: e })?;
        if content.len() as u64 > max {
            return Err(FieldError::new(
                EntityKind::Attachment,
                "content",
                format!("is more than {max} bytes, the limit (attachments.max_size_mb)"),
            )
            .into());
        }
        self.attach(owner, name, mime, &content)
    }

    /// Stores `content` (once per hash) and attaches it to `owner` under `name`.
    pub fn attach(&mut self, owner: EntityRef, name: &str, mime: &str, content: &[u8]) -> Result<Attachment> {
        let max = self.store.settings.attachment_max_bytes;
        if content.len() as u64 > max {
            return Err(FieldError::new(
                EntityKind::Attachment,
                "content",
                format!("is {} bytes; the limit is {max} bytes (attachments.max_size_mb)", content.len()),
            )
            .into());
        }
        let hash = ContentHash::of(content);
        let stored = self.kv_contains(BLOBS, &blob_key(&hash, 0))?;
        self.attaching = true;
        let created = self.create(Attachment {
            id: Default::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            owner,
            name: name.to_string(),
            mime: mime.to_string(),
            size: content.len() as u64,
            content: hash,
        });
        self.attaching = false;
        let attachment = created?;
        if !stored {
            for (i, chunk) in content.chunks(BLOB_CHUNK).enumerate() {
                self.changes.put(BLOBS, blob_key(&hash, i as u32), chunk.to_vec());
            }
            if content.is_empty() {
                self.changes.put(BLOBS, blob_key(&hash, 0), Vec::new());
            }
        }
        Ok(attachment)
    }

    /// The blob chunks to delete when attachment `released_by` goes: all of them if no
    /// other attachment has the same content.
    fn blob_keys_released(&self, hash: &ContentHash, released_by: RawId) -> Result<Vec<Vec<u8>>> {
        let others = self.ids_by(Index::AttachmentByContent, &hash.0, None, 2)?;
        if others.iter().any(|id| *id != released_by) {
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        let end = prefix_end(&hash.0);
        self.kv_scan(
            BLOBS,
            Bound::Included(&hash.0[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |k, _| {
                keys.push(k.to_vec());
                true
            },
        )?;
        Ok(keys)
    }

    fn index_change(&mut self, entry: IndexEntry, id: RawId, add: bool) {
        let list = (entry.index, entry.prefix);
        if self.savepoints > 0 {
            let old = self.postings.get(&list).and_then(|d| d.get(&id).copied());
            self.postings_undo.push((list.clone(), id, old));
        }
        self.postings.entry(list).or_default().insert(id, add);
    }

    fn audit(
        &mut self,
        at: Timestamp,
        kind: EntityKind,
        id: RawId,
        op: AuditOp,
        changes: Vec<audit::FieldChange>,
        version: u64,
    ) {
        let audit_id = self.next_id(at);
        let entry = AuditEntry {
            id: AuditId(audit_id),
            at,
            actor: self.actor,
            entity: EntityRef { kind, id },
            op,
            changes,
            version,
        };
        self.changes.put(AUDIT, audit_id.to_bytes().to_vec(), encode(&entry));
        let mut k = id.to_bytes().to_vec();
        k.extend_from_slice(&audit_id.to_bytes());
        self.changes.put(AUDIT_BY_ENTITY, k, Vec::new());
    }

    /// Normalizes and validates an entity, and checks every reference it makes.
    /// References the stored version `old` already made are not checked again: what they
    /// point at cannot be deleted while they do.
    fn check<E: Entity>(&self, entity: &mut E, old: Option<&E>) -> Result<()> {
        let settings = self.store.settings.clone();
        let cx = Cx { rules: &*settings };
        entity.normalize(cx)?;
        entity.validate(cx)?;
        let mut refs = Vec::new();
        entity.refs(&mut refs);
        if let Some(values) = entity.custom() {
            custom::check(E::KIND, values, settings.custom_fields_of(E::KIND), Some(&mut refs))?;
        }
        let old_refs = old.map(|old| crate::model::references(old, &*settings)).unwrap_or_default();
        for r in refs.iter().filter(|r| !old_refs.contains(r)) {
            self.check_ref(E::KIND, r)?;
        }
        Ok(())
    }

    fn check_ref(&self, kind: EntityKind, r: &Ref) -> Result<()> {
        let fail = |m: String| -> Result<()> { Err(FieldError::new(kind, r.field.clone(), m).into()) };
        if !self.exists(r.kind, r.id)? {
            return fail(format!("refers to {} {}, which does not exist", r.kind, r.id));
        }
        match r.must {
            None => Ok(()),
            Some(Requirement::PartnerRole(role)) => {
                let p: Partner = self.load(crate::id::PartnerId(r.id))?;
                if p.has_role(role) {
                    Ok(())
                } else {
                    fail(format!("partner {} (\"{}\") does not have the {} role", r.id, p.name, role.name()))
                }
            }
            Some(Requirement::CounterpartyOf(partner)) => {
                let p: Partner = self.load(partner)?;
                if p.counterparties.iter().any(|c| c.raw() == r.id) {
                    Ok(())
                } else {
                    fail(format!("counterparty {} is not one of partner {}'s counterparties", r.id, p.id))
                }
            }
            Some(Requirement::ParticipantOf(deal)) => {
                let p: Participant = self.load(crate::id::ParticipantId(r.id))?;
                if p.deal == deal {
                    Ok(())
                } else {
                    fail(format!("participant {} belongs to deal {}, not to deal {deal}", r.id, p.deal))
                }
            }
            Some(Requirement::DealOf(partner)) => {
                let d: crate::model::Deal = self.load(crate::id::DealId(r.id))?;
                if d.partner == partner {
                    Ok(())
                } else {
                    fail(format!("deal {} is partner {}'s, not partner {partner}'s", r.id, d.partner))
                }
            }
            Some(Requirement::DealConcerns(partner)) => {
                let d: crate::model::Deal = self.load(crate::id::DealId(r.id))?;
                let takes_part = || -> Result<bool> {
                    let ids = self.ids_by(Index::ParticipantByPartner, &partner.raw().to_bytes(), None, usize::MAX)?;
                    for id in ids {
                        if self.load::<Participant>(crate::id::ParticipantId(id))?.deal == d.id {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                };
                if d.partner == partner || takes_part()? {
                    Ok(())
                } else {
                    fail(format!("deal {} is neither partner {partner}'s nor has it as a participant", r.id))
                }
            }
            Some(Requirement::NotDescendantOf(me)) => {
                let mut at = Some(crate::id::PartnerId(r.id));
                let mut steps = 0;
                while let Some(p) = at {
                    if p == me {
                        return fail("would make the partner its own ancestor (a cycle in the group)".into());
                    }
                    steps += 1;
                    if steps > 10_000 {
                        return fail("the group chain is too deep".into());
                    }
                    at = self.load::<Partner>(p)?.parent;
                }
                Ok(())
            }
        }
    }

    fn check_unique<E: Entity>(&self, entries: &[IndexEntry], me: RawId) -> Result<()> {
        for e in entries.iter().filter(|e| e.index.unique()) {
            if let Some(other) = self.ids_by(e.index, &e.prefix, None, 2)?.into_iter().find(|id| *id != me) {
                let value = String::from_utf8_lossy(e.prefix.strip_suffix(&[0]).unwrap_or(&e.prefix)).into_owned();
                return Err(Error::Duplicate { kind: E::KIND, field: e.index.field(), value, other });
            }
        }
        Ok(())
    }

    fn check_unreferenced(&self, kind: EntityKind, id: RawId) -> Result<()> {
        let prefix = id.to_bytes();
        for index in Index::ALL.iter().copied() {
            let refers = match index.target() {
                Target::Kind(k) => k == kind,
                Target::Any => true,
                Target::Value => false,
            };
            if !refers {
                continue;
            }
            let count = self.ids_by(index, &prefix, None, 1000)?.into_iter().filter(|r| *r != id).count();
            if count > 0 {
                return Err(Error::Referenced {
                    kind,
                    id,
                    by: index.owner().map_or_else(|| "other".to_string(), |k| k.name().to_string()),
                    field: index.field(),
                    count,
                });
            }
        }
        Ok(())
    }
}

/// Whether `key` may be an external key: not empty, no surrounding spaces, no control
/// characters, at most [`MAX_EXTERNAL_KEY`] characters.
pub fn check_external_key(kind: EntityKind, key: &str) -> std::result::Result<(), FieldError> {
    let bad = |m: String| FieldError::new(kind, "key", m);
    if key.trim().is_empty() || key.trim().len() != key.len() {
        return Err(bad(format!("\"{key}\" is not an external key: it must be non-empty, without surrounding spaces")));
    }
    if key.chars().count() > MAX_EXTERNAL_KEY {
        return Err(bad(format!("is longer than {MAX_EXTERNAL_KEY} characters")));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(bad(format!("contains the control character {c:?}")));
    }
    Ok(())
}

/// The key of an external key in [`EXTERNAL_KEYS`].
fn external_key(kind: EntityKind, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.name().len() + 1 + key.len());
    k.extend_from_slice(kind.name().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The key of step `step` of a deal's stage history.
fn history_key(deal: DealId, step: u32) -> Vec<u8> {
    let mut k = deal.0.to_bytes().to_vec();
    k.extend_from_slice(&step.to_be_bytes());
    k
}

fn blob_key(hash: &ContentHash, chunk: u32) -> Vec<u8> {
    let mut k = hash.0.to_vec();
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

fn to_json<E: Entity>(e: &E) -> serde_json::Value {
    serde_json::to_value(e).expect("entities always serialize")
}

/// The index entries of an entity, including those of its custom reference fields.
fn entries_of<E: Entity>(entity: &E) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    entity.index_entries(&mut out);
    if let Some(values) = entity.custom() {
        for v in values.values() {
            if let crate::model::CustomValue::Ref(id) = v {
                out.push(IndexEntry { index: Index::CustomRef, prefix: id.to_bytes().to_vec() });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
