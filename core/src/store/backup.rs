//! Backups and restores: a consistent copy of a database taken from one snapshot while
//! writes go on, and putting such a copy back.
//!
//! The contract, for every backend: [`Store::copy_into`] copies every table as one read
//! snapshot sees it into an empty backend, so the copy holds exactly the commits that
//! returned before the snapshot was taken and none after, and writers are never held up
//! (they only wait for the backend's own writer slot, which the copy never takes). A backup
//! is that copy in a crmkit database file ([`Store::back_up`]), whatever backend the store
//! runs on: a file any crmkit opens. What is about replacing a file belongs to the file's
//! backend ([`RedbBackend::replace_file`]).

use std::ops::Bound;
use std::path::Path;

use super::kv::{Backend, Changes, Durability};
use super::redb::RedbBackend;
use super::tables::all_tables;
use super::{schema, Store};
use crate::progress::{self, Meter, Progress};
use crate::{Error, Result};

/// Pending bytes after which a copy commits what it has and goes on in a new transaction
/// of the target (which no one else sees before the copy is done).
const COPY_CHUNK_BYTES: usize = 32 << 20;

/// What a copy wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Keys written, over all tables.
    pub entries: u64,
    /// Bytes of keys and values written.
    pub bytes: u64,
    /// The schema version of the copy.
    pub schema_version: u32,
}

impl Store {
    /// Copies the whole database, as one snapshot sees it, into `target`, which must be
    /// empty: every table, key for key. Writes to this store go on meanwhile; the copy has
    /// none that committed after the snapshot was taken.
    pub fn copy_into(&self, target: &dyn Backend) -> Result<Copied> {
        self.copy_into_with_progress(target, &mut progress::ignore)
    }

    /// [`Store::copy_into`], reporting its stage `"backup"` to `progress`: the entries
    /// copied, over all tables.
    pub fn copy_into_with_progress(&self, target: &dyn Backend, progress: &mut dyn FnMut(Progress)) -> Result<Copied> {
        {
            let r = target.read()?;
            for t in all_tables() {
                if r.len(t)? > 0 {
                    return Err(Error::NotAllowed(format!(
                        "{} is not empty (table {} has entries); a copy goes into an empty database only",
                        target.describe(),
                        t.name
                    )));
                }
            }
        }
        let snapshot = self.backend.read()?;
        let schema_version = schema::recognize(snapshot.as_ref(), &self.describe())?;
        let mut total = 0;
        for t in all_tables() {
            total += snapshot.len(t)?;
        }
        let mut meter = Meter::start(progress, "backup", total);
        let mut copied = Copied { entries: 0, bytes: 0, schema_version };
        let mut changes = Changes::new();
        let mut pending = 0usize;
        for t in all_tables() {
            // A scan stops at a full chunk, which is committed; the next resumes after the
            // last key copied, in the same snapshot.
            let mut after: Option<Vec<u8>> = None;
            loop {
                let mut full = false;
                let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                snapshot.scan(t, from, Bound::Unbounded, false, &mut |k, v| {
                    changes.put(t, k.to_vec(), v.to_vec());
                    pending += k.len() + v.len();
                    copied.entries += 1;
                    copied.bytes += (k.len() + v.len()) as u64;
                    meter.add(1);
                    full = pending >= COPY_CHUNK_BYTES;
                    !full
                })?;
                if !full {
                    break;
                }
                after = changes.tables[t.slot].keys().next_back().cloned();
                target.write()?.commit(std::mem::replace(&mut changes, Changes::new()), Durability::Deferred)?;
                pending = 0;
            }
        }
        target.write()?.commit(changes, Durability::Immediate)?;
        meter.finish();
        Ok(copied)
    }

    /// Writes a backup of the database to the new file `out`: a crmkit database file (redb)
    /// holding one snapshot's data ([`Store::copy_into`]), written beside `out` and renamed
    /// into place once it is whole and checked, so `out` never holds a partial backup.
    /// Refuses an `out` that exists.
    pub fn back_up(&self, out: &Path) -> Result<Copied> {
        self.back_up_with_progress(out, &mut progress::ignore)
    }

    /// [`Store::back_up`], reporting the copy to `progress`
    /// ([`Store::copy_into_with_progress`]).
    pub fn back_up_with_progress(&self, out: &Path, progress: &mut dyn FnMut(Progress)) -> Result<Copied> {
        let io = |error| Error::Io { path: out.to_path_buf(), error };
        if out.exists() {
            return Err(io(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file is already there")));
        }
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = out.with_file_name(format!(".{name}.partial"));
        let _ = std::fs::remove_file(&partial);
        let written = (|| {
            let target =
                RedbBackend::create(&partial, super::redb::RedbOptions { cache_bytes: 16 << 20, quick_repair: false })?;
            let copied = self.copy_into_with_progress(&target, progress)?;
            drop(target);
            Store::inspect_file(&partial)?;
            Ok::<Copied, Error>(copied)
        })();
        let copied = match written {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, out).map_err(io)?;
        if let Some(parent) = out.parent() {
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(copied)
    }

    /// Checks, writing nothing, that the file at `path` holds a crmkit database this build
    /// can open (a backup, say): a redb file with crmkit's meta table, a schema version up to
    /// this build's, closed cleanly. Its schema version (an older one is migrated when the
    /// database is next opened for writing).
    pub fn inspect_file(path: &Path) -> Result<u32> {
        let backend = RedbBackend::open_read_only(path, 0)?;
        let r = backend.read()?;
        schema::recognize(r.as_ref(), &path.display().to_string())
    }

    /// Restores the backup at `backup` as the database file `database`: checks the backup
    /// first ([`Store::inspect_file`]), then replaces the file atomically
    /// ([`RedbBackend::replace_file`], refused while the database is open for writing
    /// elsewhere). The bytes copied.
    pub fn restore_file(backup: &Path, database: &Path) -> Result<u64> {
        Store::inspect_file(backup)?;
        RedbBackend::replace_file(database, backup)
    }
}
