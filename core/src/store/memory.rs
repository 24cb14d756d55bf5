//! An in-memory backend: the second implementation of [`Backend`], for tests, tools and
//! embedders that keep nothing on disk.
//!
//! The committed state is one `Arc<BTreeMap>` per table. A snapshot clones those `Arc`s, so
//! it keeps every table as it was, however many commits follow. A commit changes a table in
//! place when no snapshot holds it any more and otherwise copies it first (copy on write),
//! then publishes the new tables at once. Writers take turns: [`Backend::write`] waits while
//! another write transaction lives, and a commit is published before the next writer gets
//! the slot — so commits become visible in the order writers took the slot, the order the
//! record cache numbers them in.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use super::kv::{Backend, Changes, Durability, KvError, KvRead, KvWrite, Visit};
use super::tables::{Table, TABLE_COUNT};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Tables = Vec<Arc<Map>>;
type Pending = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

struct Shared {
    /// The latest committed state.
    tables: RwLock<Tables>,
    /// Whether a write transaction holds the writer slot.
    writing: Mutex<bool>,
    /// Signalled when the writer slot is given back.
    slot_free: Condvar,
}

impl Shared {
    /// The latest committed state, kept as it is for as long as the caller holds it.
    fn snapshot(&self) -> Tables {
        self.tables.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn writing(&self) -> MutexGuard<'_, bool> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A crmkit database held in memory, gone when it is dropped (a store gives it back with
/// [`Store::into_backend`](super::Store::into_backend)).
///
/// Transactions behave as with the redb file: snapshots are isolated from later commits, a
/// single writer at a time, a write transaction dropped without committing writes nothing,
/// and savepoints (kept by the store above the backend) work alike. Durability settings
/// have nothing to do here. A commit copies each table it changes that an open snapshot
/// still holds, so this backend suits databases that fit comfortably in memory.
///
/// ```
/// # use std::sync::Arc;
/// # use crmkit_core::{config::Settings, store::{memory::MemoryBackend, Store}, time::SystemClock};
/// let store = Store::with_backend(MemoryBackend::new(), Arc::new(Settings::builtin()), Arc::new(SystemClock))?;
/// assert_eq!(store.path(), None);
/// # Ok::<(), crmkit_core::Error>(())
/// ```
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

impl MemoryBackend {
    /// An empty database ([`Store::with_backend`](super::Store::with_backend) sets up crmkit's
    /// schema in it).
    pub fn new() -> MemoryBackend {
        let shared = Shared {
            tables: RwLock::new((0..TABLE_COUNT).map(|_| Arc::new(Map::new())).collect()),
            writing: Mutex::new(false),
            slot_free: Condvar::new(),
        };
        MemoryBackend { shared: Arc::new(shared) }
    }
}

impl Default for MemoryBackend {
    fn default() -> MemoryBackend {
        MemoryBackend::new()
    }
}

impl Backend for MemoryBackend {
    fn read(&self) -> Result<Box<dyn KvRead>, KvError> {
        Ok(Box::new(MemoryRead { tables: self.shared.snapshot() }))
    }

    fn write(&self) -> Result<Box<dyn KvWrite>, KvError> {
        let mut writing = self.shared.writing();
        while *writing {
            writing = self.shared.slot_free.wait(writing).unwrap_or_else(PoisonError::into_inner);
        }
        *writing = true;
        drop(writing);
        let slot = WriterSlot(self.shared.clone());
        // With the writer slot held, the latest state is the one the transaction starts from.
        let base = MemoryRead { tables: self.shared.snapshot() };
        Ok(Box::new(MemoryWrite { slot, base }))
    }

    fn describe(&self) -> String {
        "the in-memory database".into()
    }
}

/// The writer slot, given back when the write transaction ends (committed or dropped).
struct WriterSlot(Arc<Shared>);

impl Drop for WriterSlot {
    fn drop(&mut self) {
        *self.0.writing() = false;
        self.0.slot_free.notify_one();
    }
}

/// A snapshot: the tables as they were committed when it was taken.
struct MemoryRead {
    tables: Tables,
}

/// Whether a range between these bounds holds no key at all (`BTreeMap::range` refuses
/// such ranges, an ordered store answers them with nothing).
fn empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b)) | (Bound::Excluded(a), Bound::Included(b)) => {
            a >= b
        }
        _ => false,
    }
}

impl KvRead for MemoryRead {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.tables[t.slot].get(key).cloned())
    }

    fn contains(&self, t: Table, key: &[u8]) -> Result<bool, KvError> {
        Ok(self.tables[t.slot].contains_key(key))
    }

    fn scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<(), KvError> {
        if empty_range(from, to) {
            return Ok(());
        }
        let range = self.tables[t.slot].range::<[u8], _>((from, to));
        if reverse {
            for (k, v) in range.rev() {
                if !visit(k, v) {
                    break;
                }
            }
        } else {
            for (k, v) in range {
                if !visit(k, v) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn len(&self, t: Table) -> Result<u64, KvError> {
        Ok(self.tables[t.slot].len() as u64)
    }
}

/// The write transaction: holds the writer slot and reads the state it started from.
struct MemoryWrite {
    slot: WriterSlot,
    base: MemoryRead,
}

fn apply(map: &mut Map, entries: Pending) {
    for (k, v) in entries {
        match v {
            Some(v) => map.insert(k, v),
            None => map.remove(&k),
        };
    }
}

impl KvWrite for MemoryWrite {
    fn base(&self) -> &dyn KvRead {
        &self.base
    }

    fn commit(self: Box<Self>, changes: Changes, _durability: Durability) -> Result<(), KvError> {
        let MemoryWrite { slot, base } = *self;
        // The base's references would make every changed table look held by a snapshot.
        drop(base);
        let shared = &slot.0;
        // Tables an open snapshot holds are copied, with the changes, before the state is
        // locked, so readers wait only for the swap. Only the writer changes the state, so
        // it is still `current` when the lock is taken.
        let mut copied: Vec<(usize, Arc<Map>)> = Vec::new();
        let mut in_place: Vec<(usize, Pending)> = Vec::new();
        {
            let current = shared.snapshot();
            for (i, entries) in changes.tables.into_iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                // One reference is the published state's, one `current`'s; any other is a
                // snapshot's.
                if Arc::strong_count(&current[i]) > 2 {
                    let mut map = Map::clone(&current[i]);
                    apply(&mut map, entries);
                    copied.push((i, Arc::new(map)));
                } else {
                    in_place.push((i, entries));
                }
            }
        }
        let mut tables = shared.tables.write().unwrap_or_else(PoisonError::into_inner);
        for (i, map) in copied {
            tables[i] = map;
        }
        for (i, entries) in in_place {
            // A snapshot taken since the check above makes this copy after all.
            apply(Arc::make_mut(&mut tables[i]), entries);
        }
        drop(tables);
        // Published: now the next writer may start.
        drop(slot);
        Ok(())
    }
}
