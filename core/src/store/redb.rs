//! The embedded default backend: one redb file, and what concerns the file (recognizing it
//! before redb reads it, opening it read-only, compaction, replacing it with a backup).

use std::io::Read as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableError, TableHandle};

use super::kv::{Backend, Changes, Durability, KvError, KvRead, KvWrite, Visit};
use super::tables::{all_tables, Table, META, TABLE_COUNT};
use crate::Error;

type Bytes = &'static [u8];
type OpenTable = ReadOnlyTable<Bytes, Bytes>;
type Row<'a> = Result<(redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>), redb::StorageError>;

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn def(t: Table) -> Def {
    TableDefinition::new(t.name)
}

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

/// How a redb file is opened.
#[derive(Clone, Copy, Debug)]
pub struct RedbOptions {
    /// Memory for cached pages, in bytes.
    pub cache_bytes: usize,
    /// Whether every durable commit records the allocator state, in two phases (redb's
    /// quick-repair): a file whose process was killed then opens without being walked whole
    /// to rebuild that state, at the price of a second fsync and the state's pages per commit.
    pub quick_repair: bool,
}

impl RedbOptions {
    /// The options an installation's settings ask for.
    pub fn of(settings: &crate::config::Settings) -> RedbOptions {
        RedbOptions { cache_bytes: settings.cache_bytes, quick_repair: settings.quick_repair }
    }
}

/// A redb database file.
pub struct RedbBackend {
    db: Db,
    path: PathBuf,
    quick_repair: bool,
    /// How long opening took when the file had to be repaired (it was not closed cleanly
    /// and its last commit did not record the allocator state).
    repaired: Option<Duration>,
    turns: Arc<Turns>,
}

/// Write transactions in the order they were asked for. redb hands its one writer slot to
/// whichever waiting thread wakes first, so a thread that commits and at once begins again
/// (a bulk import's batches) could keep it from a writer that has been waiting meanwhile;
/// here each writer takes a ticket and waits for its turn.
#[derive(Default)]
struct Turns {
    /// The next ticket to hand out, and the ticket whose turn it is.
    state: Mutex<(u64, u64)>,
    next: Condvar,
}

impl Turns {
    fn take(self: &Arc<Self>) -> Turn {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = state.0;
        state.0 += 1;
        while state.1 != ticket {
            state = self.next.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        Turn(self.clone())
    }
}

/// A write transaction's turn, passed on when dropped.
struct Turn(Arc<Turns>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
        self.0.next.notify_all();
    }
}

/// The file opened for reading and writing (exclusively), or read-only (shared with other
/// readers, writing nothing to the file).
enum Db {
    Write(redb::Database),
    Read(redb::ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::Write(db) => db.begin_read(),
            Db::Read(db) => db.begin_read(),
        }
    }
}

impl RedbBackend {
    /// Opens an existing crmkit database file. Refuses, as not a crmkit database, a file that
    /// is not a redb file, one of a redb format this build cannot read, a damaged one and a
    /// redb file without crmkit's `meta` table; creates any table the file lacks (after a
    /// schema version that adds one). The schema itself is checked by
    /// [`Store::with_backend`](super::Store::with_backend).
    ///
    /// A file left by a process that did not close it (a crash, a kill) is repaired first:
    /// at once when its last commit recorded the allocator state ([`RedbOptions::quick_repair`]),
    /// otherwise by reading the whole file (see [`RedbBackend::repaired`]).
    pub fn open(path: &Path, opts: RedbOptions) -> Result<RedbBackend, Error> {
        check_file_header(path)?;
        let repairing = Arc::new(AtomicBool::new(false));
        let flag = repairing.clone();
        let started = Instant::now();
        let db = redb::Builder::new()
            .set_cache_size(opts.cache_bytes)
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let repaired = repairing.load(Ordering::Relaxed).then(|| started.elapsed());
        let backend = RedbBackend::over(Db::Write(db), path, opts, repaired);
        backend.require_meta()?;
        backend.ensure_tables()?;
        Ok(backend)
    }

    /// Opens an existing crmkit database file for reading only: nothing is written to the
    /// file, not even redb's "in use" mark, so its bytes and times stay as they were. Other
    /// read-only opens may share the file; an open for writing (a running server) may not
    /// ([`Error::InUse`]). A file that was not closed cleanly is refused
    /// ([`Error::NeedsRecovery`]): only an open for writing recovers it. Writes through this
    /// backend fail.
    pub fn open_read_only(path: &Path, cache_bytes: usize) -> Result<RedbBackend, Error> {
        check_file_header(path)?;
        let db =
            redb::Builder::new().set_cache_size(cache_bytes).open_read_only(path).map_err(|e| open_error(path, e))?;
        let opts = RedbOptions { cache_bytes, quick_repair: false };
        let backend = RedbBackend::over(Db::Read(db), path, opts, None);
        backend.require_meta()?;
        Ok(backend)
    }

    fn require_meta(&self) -> Result<(), Error> {
        if !self.has_table(META.name)? {
            return Err(Error::NotCrmkit {
                database: self.path.display().to_string(),
                reason: "it is a redb database without crmkit's meta table".into(),
            });
        }
        Ok(())
    }

    /// Replaces the database file at `database` with a copy of the file at `backup`,
    /// atomically: the copy is written beside the database, made durable, then renamed over
    /// it, so the path holds either the old database or the whole backup. Refuses, before
    /// touching anything, while another process has the database open for writing
    /// ([`Error::InUse`]), and keeps it from being opened for writing until the rename is
    /// done. What `backup` holds is the caller's to check first
    /// ([`Store::inspect_file`](super::Store::inspect_file)).
    pub fn replace_file(database: &Path, backup: &Path) -> Result<u64, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| Error::Io { path, error }
        };
        // A shared hold of the old file: refused while a writer has it, and it keeps writers
        // out until the new file is in place. A damaged or unrecovered file is replaced all
        // the same; that is what a restore is for.
        let _hold = match database.exists() {
            true => match RedbBackend::open_read_only(database, 0) {
                Ok(held) => Some(held),
                Err(e @ Error::InUse { .. }) => return Err(e),
                Err(_) => None,
            },
            false => None,
        };
        let name = database.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = database.with_file_name(format!(".{name}.restoring"));
        let copied = (|| {
            let bytes = std::fs::copy(backup, &partial).map_err(io(&partial))?;
            std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
            Ok::<u64, Error>(bytes)
        })();
        let bytes = match copied {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, database).map_err(io(database))?;
        if let Some(parent) = database.parent() {
            // The rename itself is durable once the folder is.
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(bytes)
    }

    /// Creates a new, empty database file: the folder must exist, the file must not (or be
    /// empty). Tables are made as they are first written; a store opened over it with
    /// [`Store::with_backend`](super::Store::with_backend) sets up a crmkit database in it.
    pub fn create(path: &Path, opts: RedbOptions) -> Result<RedbBackend, Error> {
        if path.exists() && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(true) {
            return Err(Error::Io {
                path: path.to_path_buf(),
                error: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file is already there"),
            });
        }
        let db = redb::Builder::new().set_cache_size(opts.cache_bytes).create(path).map_err(|e| open_error(path, e))?;
        let backend = RedbBackend::over(Db::Write(db), path, opts, None);
        // Every table from the start: a table no write ever touched would otherwise be
        // created by the first opening after, a write where a reader expects none.
        backend.ensure_tables()?;
        Ok(backend)
    }

    fn over(db: Db, path: &Path, opts: RedbOptions, repaired: Option<Duration>) -> RedbBackend {
        RedbBackend {
            db,
            path: path.to_path_buf(),
            quick_repair: opts.quick_repair,
            repaired,
            turns: Default::default(),
        }
    }

    /// When the file was not closed cleanly and had to be read whole to rebuild its
    /// allocator state on opening: how long opening took. `None` after a clean close, and
    /// after a crash when the last commit recorded the state (quick-repair).
    pub fn repaired(&self) -> Option<Duration> {
        self.repaired
    }

    /// Begins redb's write transaction with this file's commit settings.
    fn begin_write(&self) -> Result<redb::WriteTransaction, KvError> {
        let mut tx = self.writable()?.begin_write().map_err(storage)?;
        tx.set_quick_repair(self.quick_repair);
        Ok(tx)
    }

    /// Compacts the crmkit database file at `path`, which no store may have open: gives
    /// back the space of pages freed by earlier transactions. Returns the file size before
    /// and after.
    pub fn compact_file(path: &Path) -> Result<(u64, u64), Error> {
        check_file_header(path)?;
        let size =
            || std::fs::metadata(path).map(|m| m.len()).map_err(|e| Error::Io { path: path.to_path_buf(), error: e });
        let before = size()?;
        let mut db = redb::Database::open(path).map_err(|e| open_error(path, e))?;
        while db.compact().map_err(storage)? {}
        drop(db);
        Ok((before, size()?))
    }

    /// Creates any table the file lacks (after a schema migration adds one); writes nothing
    /// when it has them all.
    pub fn ensure_tables(&self) -> Result<(), KvError> {
        let present: Vec<String> = {
            let tx = self.db.begin_read().map_err(storage)?;
            let names = tx.list_tables().map_err(storage)?.map(|t| t.name().to_string()).collect();
            names
        };
        let missing: Vec<Table> = all_tables().into_iter().filter(|t| !present.iter().any(|p| p == t.name)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let _turn = self.turns.take();
        let tx = self.begin_write()?;
        for t in missing {
            tx.open_table(def(t)).map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    fn writable(&self) -> Result<&redb::Database, KvError> {
        match &self.db {
            Db::Write(db) => Ok(db),
            Db::Read(_) => Err(KvError::Backend(format!("{} is open read-only", self.path.display()))),
        }
    }

    /// Whether the file has a table with this name.
    pub fn has_table(&self, name: &str) -> Result<bool, KvError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let found = tx.list_tables().map_err(storage)?.any(|t| t.name() == name);
        Ok(found)
    }

    /// Rewrites the file compactly (after bulk loads).
    pub fn compact(&mut self) -> Result<(), KvError> {
        match &mut self.db {
            Db::Write(db) => db.compact().map_err(storage)?,
            Db::Read(_) => {
                return Err(KvError::Backend(format!("{} is open read-only", self.path.display())));
            }
        };
        Ok(())
    }
}

/// Rejects files that are not redb files before redb sees them.
fn check_file_header(path: &Path) -> Result<(), Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io { path: path.to_path_buf(), error: e })?;
    let mut head = [0u8; REDB_MAGIC.len()];
    let n = f.read(&mut head).map_err(|e| Error::Io { path: path.to_path_buf(), error: e })?;
    if n < head.len() || head != REDB_MAGIC {
        return Err(Error::NotCrmkit {
            database: path.display().to_string(),
            reason: "it is not a redb database file".into(),
        });
    }
    Ok(())
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse { database: path.display().to_string() },
        redb::DatabaseError::RepairAborted => Error::NeedsRecovery { database: path.display().to_string() },
        redb::DatabaseError::UpgradeRequired(v) => Error::NotCrmkit {
            database: path.display().to_string(),
            reason: format!("it is a redb file of format version {v}, which this build cannot read"),
        },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)) => {
            Error::NotCrmkit { database: path.display().to_string(), reason: format!("the file is damaged: {m}") }
        }
        other => Error::Storage(KvError::Backend(format!("{}: {other}", path.display()))),
    }
}

impl Backend for RedbBackend {
    fn read(&self) -> Result<Box<dyn KvRead>, KvError> {
        let tx = self.db.begin_read().map_err(storage)?;
        Ok(Box::new(RedbRead { tx, tables: Mutex::new((0..TABLE_COUNT).map(|_| None).collect()) }))
    }

    fn write(&self) -> Result<Box<dyn KvWrite>, KvError> {
        let turn = self.turns.take();
        let tx = self.begin_write()?;
        // With the writer slot held, a fresh read transaction sees exactly the state the
        // write transaction starts from.
        let base = self.read()?;
        Ok(Box::new(RedbWrite { tx, base, _turn: turn }))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// A read transaction with its tables opened on first use.
struct RedbRead {
    tx: redb::ReadTransaction,
    /// Per slot: not opened yet (`None`), absent from the file (`Some(None)`), or open.
    /// Behind a lock so that several threads may read the snapshot at once.
    tables: Mutex<Vec<Option<Option<Arc<OpenTable>>>>>,
}

impl RedbRead {
    /// Runs `f` on the open table, or returns `None` if the file has no such table.
    fn with<R>(
        &self,
        t: Table,
        f: impl FnOnce(&ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, KvError>,
    ) -> Result<Option<R>, KvError> {
        // The borrow ends before `f` runs, so `f` may read other tables (or this one).
        let table = {
            let mut tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = &mut tables[t.slot];
            if slot.is_none() {
                *slot = Some(match self.tx.open_table(def(t)) {
                    Ok(table) => Some(Arc::new(table)),
                    Err(TableError::TableDoesNotExist(_)) => None,
                    Err(e) => return Err(storage(e)),
                });
            }
            slot.as_ref().and_then(Option::clone)
        };
        match table {
            Some(table) => f(&table).map(Some),
            None => Ok(None),
        }
    }
}

impl KvRead for RedbRead {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let v = self.with(t, |table| Ok(table.get(key).map_err(storage)?.map(|v| v.value().to_vec())))?;
        Ok(v.flatten())
    }

    fn contains(&self, t: Table, key: &[u8]) -> Result<bool, KvError> {
        Ok(self.with(t, |table| Ok(table.get(key).map_err(storage)?.is_some()))?.unwrap_or(false))
    }

    fn scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<(), KvError> {
        self.with(t, |table| {
            let range = table.range::<&[u8]>((from, to)).map_err(storage)?;
            let mut step = |item: Row<'_>| {
                let (k, v) = item.map_err(storage)?;
                Ok::<bool, KvError>(visit(k.value(), v.value()))
            };
            if reverse {
                for item in range.rev() {
                    if !step(item)? {
                        break;
                    }
                }
            } else {
                for item in range {
                    if !step(item)? {
                        break;
                    }
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    fn len(&self, t: Table) -> Result<u64, KvError> {
        Ok(self.with(t, |table| table.len().map_err(storage))?.unwrap_or(0))
    }
}

struct RedbWrite {
    tx: redb::WriteTransaction,
    base: Box<dyn KvRead>,
    /// Dropped last: the next writer's turn comes once this transaction has ended.
    _turn: Turn,
}

impl KvWrite for RedbWrite {
    fn base(&self) -> &dyn KvRead {
        self.base.as_ref()
    }

    fn commit(self: Box<Self>, changes: Changes, durability: Durability) -> Result<(), KvError> {
        let RedbWrite { mut tx, base, _turn } = *self;
        drop(base);
        tx.set_durability(match durability {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Deferred => redb::Durability::None,
        })
        .map_err(storage)?;
        for (t, entries) in all_tables().into_iter().zip(changes.tables) {
            if entries.is_empty() {
                continue;
            }
            let mut table = tx.open_table(def(t)).map_err(storage)?;
            for (k, v) in entries {
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
                    }
                    None => {
                        table.remove(k.as_slice()).map_err(storage)?;
                    }
                }
            }
        }
        tx.commit().map_err(storage)
    }
}
