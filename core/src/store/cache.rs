//! A shared cache of entity records in front of the backend, exact under MVCC.
//!
//! Every commit gets a generation number. A cached record is the latest version of its key
//! and remembers the generation it became valid at; a snapshot knows the generation it was
//! taken at (or an earlier one, which only costs hits), and uses a cached record only when
//! that record was already valid then. A commit first drops the records it overwrites and
//! notes when each key last changed, so a snapshot that read an older version can never put
//! it back as the latest.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::kv::{Backend, Changes, Decode, Decoded, Durability, KvError, KvRead, KvWrite, Visit};
use super::tables::{all_tables, Table};
use crate::id::IdHasher;

const SHARDS: usize = 16;
/// Keys whose last change is remembered per shard before the shard starts over.
const MAX_TOMBS: usize = 200_000;

/// A cached key: the table slot and the 16-byte id.
type Key = (u8, u128);

type Map<V> = HashMap<Key, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Shard {
    /// Latest versions: the decoded record, the memory it is counted for, and the
    /// generation it is valid from.
    records: Map<(Decoded, usize, u64)>,
    bytes: usize,
    /// The generation of each key's last change.
    changed: Map<u64>,
    /// Keys not in `changed` have not changed since this generation.
    unchanged_since: u64,
}

impl Shard {
    /// Drops about an eighth of the records (whichever the map yields first), so a full
    /// cache keeps most of what it holds instead of starting over.
    fn evict_some(&mut self) {
        let mut n = self.records.len() / 8 + 1;
        let mut freed = 0;
        self.records.retain(|_, (_, size, _)| {
            if n == 0 {
                return true;
            }
            n -= 1;
            freed += *size;
            false
        });
        self.bytes -= freed;
    }
}

struct Shared {
    /// The newest commit number every snapshot opened from now on is known to see.
    generation: AtomicU64,
    /// The last commit number handed out.
    numbered: AtomicU64,
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
    /// Which table slots hold entity records.
    cached: Vec<bool>,
    /// Lookups answered from the cache, and lookups of cached tables it could not answer.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Shared {
    /// The shard and cache key of a record key; `None` for keys that are not ids.
    fn shard(&self, t: Table, key: &[u8]) -> Option<(&Mutex<Shard>, Key)> {
        let id = u128::from_be_bytes(key.try_into().ok()?);
        let spread = (id as u64 ^ (id >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Some((&self.shards[(spread >> 59) as usize % SHARDS], (t.slot as u8, id)))
    }

    fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the record cache has done since the store was opened: plain counters an embedding
/// program (the server's `/metrics`) reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Record lookups the cache answered.
    pub hits: u64,
    /// Lookups of cached records it did not hold (read from the backend, then kept).
    pub misses: u64,
    /// Records held now, and the memory counted for them.
    pub entries: u64,
    pub bytes: u64,
    /// The memory it may use (`record_cache_mb`).
    pub budget_bytes: u64,
}

/// A backend with a record cache in front.
pub struct CachedBackend {
    inner: Box<dyn Backend>,
    shared: Arc<Shared>,
}

impl CachedBackend {
    /// Caches up to `budget_bytes` of the records of the tables `cached` selects.
    pub fn new(inner: Box<dyn Backend>, budget_bytes: usize, cached: impl Fn(Table) -> bool) -> CachedBackend {
        let shared = Shared {
            generation: AtomicU64::new(0),
            numbered: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget_bytes / SHARDS,
            cached: all_tables().into_iter().map(cached).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        };
        CachedBackend { inner, shared: Arc::new(shared) }
    }

    /// How the cache has served since it was made.
    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for shard in &self.shared.shards {
            let s = Shared::lock(shard);
            entries += s.records.len() as u64;
            bytes += s.bytes as u64;
        }
        CacheStats {
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            entries,
            bytes,
            budget_bytes: (self.shared.shard_budget * SHARDS) as u64,
        }
    }

    /// The backend behind the cache.
    pub fn into_inner(self) -> Box<dyn Backend> {
        self.inner
    }
}

impl Backend for CachedBackend {
    fn read(&self) -> Result<Box<dyn KvRead>, KvError> {
        let before = self.shared.generation.load(Ordering::SeqCst);
        let inner = self.inner.read()?;
        let after = self.shared.generation.load(Ordering::SeqCst);
        // The snapshot sees at least generation `before`; if a commit finished meanwhile we
        // cannot tell which, so the snapshot does without the cache.
        let generation = (before == after).then_some(before);
        Ok(Box::new(CachedRead { inner, generation, shared: self.shared.clone() }))
    }

    fn write(&self) -> Result<Box<dyn KvWrite>, KvError> {
        let inner = self.inner.write()?;
        // Writers take turns, so every commit before this one has reached the backend; one
        // may not have published its number yet, which only makes the cache answer less.
        let generation = Some(self.shared.generation.load(Ordering::SeqCst));
        Ok(Box::new(CachedWrite { inner, generation, shared: self.shared.clone() }))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn path(&self) -> Option<&std::path::Path> {
        self.inner.path()
    }
}

struct CachedRead {
    inner: Box<dyn KvRead>,
    generation: Option<u64>,
    shared: Arc<Shared>,
}

impl KvRead for CachedRead {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(t, key)
    }

    fn get_decoded(&self, t: Table, key: &[u8], decode: &Decode<'_>) -> Result<Option<Decoded>, KvError> {
        cached_get(self.inner.as_ref(), self.generation, &self.shared, t, key, decode)
    }

    fn contains(&self, t: Table, key: &[u8]) -> Result<bool, KvError> {
        self.inner.contains(t, key)
    }

    fn scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<(), KvError> {
        self.inner.scan(t, from, to, reverse, visit)
    }

    fn len(&self, t: Table) -> Result<u64, KvError> {
        self.inner.len(t)
    }
}

/// The writer. Its base is the latest committed state, so it reads decoded records through
/// the cache too.
struct CachedWrite {
    inner: Box<dyn KvWrite>,
    generation: Option<u64>,
    shared: Arc<Shared>,
}

impl KvRead for CachedWrite {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.base().get(t, key)
    }

    fn get_decoded(&self, t: Table, key: &[u8], decode: &Decode<'_>) -> Result<Option<Decoded>, KvError> {
        cached_get(self.inner.base(), self.generation, &self.shared, t, key, decode)
    }

    fn contains(&self, t: Table, key: &[u8]) -> Result<bool, KvError> {
        self.inner.base().contains(t, key)
    }

    fn scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<(), KvError> {
        self.inner.base().scan(t, from, to, reverse, visit)
    }

    fn len(&self, t: Table) -> Result<u64, KvError> {
        self.inner.base().len(t)
    }
}

impl KvWrite for CachedWrite {
    fn base(&self) -> &dyn KvRead {
        self
    }

    fn commit(self: Box<Self>, changes: Changes, durability: Durability) -> Result<(), KvError> {
        let shared = self.shared;
        // Numbers follow the backend's commit order: the next writer can only reach this
        // point after this commit's backend commit, which comes after this line.
        let next = shared.numbered.fetch_add(1, Ordering::SeqCst) + 1;
        let tables = all_tables();
        for (slot, entries) in changes.tables.iter().enumerate() {
            if !shared.cached[slot] {
                continue;
            }
            let t = tables[slot];
            for key in entries.keys() {
                let Some((shard, k)) = shared.shard(t, key) else { continue };
                let mut s = Shared::lock(shard);
                if let Some((_, old, _)) = s.records.remove(&k) {
                    s.bytes -= old;
                }
                if s.changed.len() >= MAX_TOMBS {
                    // Start over: forget everything, and trust nothing read before `next`.
                    s.changed.clear();
                    s.records.clear();
                    s.bytes = 0;
                    s.unchanged_since = next;
                }
                s.changed.insert(k, next);
            }
        }
        // What the transaction kept decoded goes in once the commit has happened, as the
        // version valid from this commit, unless a later commit changed the key meanwhile.
        let fresh: Vec<(Table, Vec<u8>, Decoded, usize)> = changes
            .decoded
            .iter()
            .filter(|((slot, _), _)| shared.cached[*slot])
            .filter_map(|((slot, key), record)| {
                let len = changes.tables[*slot].get(key)?.as_ref()?.len();
                Some((tables[*slot], key.clone(), record.clone(), 2 * len + 64))
            })
            .collect();
        self.inner.commit(changes, durability)?;
        for (t, key, record, size) in fresh {
            let Some((shard, k)) = shared.shard(t, &key) else { continue };
            let mut s = Shared::lock(shard);
            if s.changed.get(&k) != Some(&next) {
                continue;
            }
            if s.bytes + size > shared.shard_budget {
                s.evict_some();
            }
            s.bytes += size;
            if let Some((_, old, _)) = s.records.insert(k, (record, size, next)) {
                s.bytes -= old;
            }
        }
        // A later commit may already have published a higher number, which covers this one.
        shared.generation.fetch_max(next, Ordering::SeqCst);
        Ok(())
    }
}

/// A decoded record through the cache, for a view that has seen every commit up to
/// `generation` (`None`: do without the cache).
fn cached_get(
    inner: &dyn KvRead,
    generation: Option<u64>,
    shared: &Shared,
    t: Table,
    key: &[u8],
    decode: &Decode<'_>,
) -> Result<Option<Decoded>, KvError> {
    let cached = generation.filter(|_| shared.cached[t.slot]).zip(shared.shard(t, key));
    let Some((seen, (shard, k))) = cached else {
        return inner.get_decoded(t, key, decode);
    };
    let hit = Shared::lock(shard).records.get(&k).filter(|(_, _, from)| *from <= seen).map(|(r, _, _)| r.clone());
    if hit.is_some() {
        shared.hits.fetch_add(1, Ordering::Relaxed);
        return Ok(hit);
    }
    shared.misses.fetch_add(1, Ordering::Relaxed);
    let Some(bytes) = inner.get(t, key)? else { return Ok(None) };
    let record = decode(&bytes)?;
    // A decoded record takes about twice its stored size in memory.
    let size = 2 * bytes.len() + 64;
    let mut s = Shared::lock(shard);
    let valid_from = s.changed.get(&k).copied().unwrap_or(s.unchanged_since);
    // Only the latest version goes in: no change after the one this snapshot sees.
    if valid_from <= seen {
        if s.bytes + size > shared.shard_budget {
            s.evict_some();
        }
        s.bytes += size;
        if let Some((_, old, _)) = s.records.insert(k, (record.clone(), size, valid_from)) {
            s.bytes -= old;
        }
    }
    Ok(Some(record))
}
