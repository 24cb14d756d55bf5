//! Bulk import: rows of a CSV or JSONL file become entities, through the same process
//! engine, validation and hooks as any other write.
//!
//! Every row carries an external key, the id the record has in the system it comes from.
//! A key seen before (or a crmkit id, as export writes for records without a key) updates
//! that entity; a new key creates one and remembers the key, so running the same file again
//! changes nothing. References to other entities are by key too.
//!
//! **Policy for bad rows:** a row that fails (a bad value, a broken reference, a guard's
//! refusal, an attachment over the limit) is skipped whole — nothing of it is written, not
//! even its attachments — and reported with its row number, the field and the message;
//! the other rows of its batch are written and the batch commits. A batch ends after
//! [`ImportOptions::batch_rows`] rows, or, when [`ImportOptions::batch_time`] is set, once
//! it has been writing that long while another writer waits: the import holds the
//! database's one writer only while a batch is open, and writers waiting meanwhile (the
//! API's) go before its next batch; such batches are made durable every `batch_rows` rows
//! and at the end. With
//! [`ImportOptions::atomic`] the whole file is one transaction and any bad row leaves the
//! database as it was. A file that cannot be read on (an unterminated quote, a broken
//! header) stops the import: batches committed before stay, the open batch is not written.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;

use super::columns::{self, Column};
use super::csv::CsvReader;
use super::{Format, Mapping};
use crate::id::UserId;
use crate::model::{Entity, EntityKind};
use crate::process::Engine;
use crate::store::Store;
use crate::{Error, Result};

mod convert;
mod keys;
mod read;
mod row;
mod write;

use convert::Converter;
use read::{read_rows, Item, Source};

/// How to import a file.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The kind of entity the rows are.
    pub kind: EntityKind,
    pub format: Format,
    /// File column names to ours.
    pub mapping: Mapping,
    /// The CSV delimiter; guessed from the header when `None`.
    pub delimiter: Option<u8>,
    /// Rows per committed batch.
    pub batch_rows: usize,
    /// When set, a batch also ends (and commits) once it has been writing this long while
    /// another writer waits for the database, so that other writes wait at most about this
    /// long for the import (the API's import: 5 ms); alone, an import writes whole batches
    /// of `batch_rows`. Such commits wait for the disk only once `batch_rows` rows are owed a
    /// durable commit, and at the end: a crash loses at most the rows since the last one,
    /// which running the file again writes (keys make it idempotent). Not for atomic
    /// imports and dry runs, which are one transaction.
    pub batch_time: Option<std::time::Duration>,
    /// The whole file in one transaction: any bad row and nothing is written.
    pub atomic: bool,
    /// Check everything, write nothing.
    pub dry_run: bool,
    /// Where relative attachment paths start (the input file's directory); `None`: an
    /// `attachments` column is refused (a file uploaded to a server names no local files).
    pub base_dir: Option<PathBuf>,
}

impl ImportOptions {
    /// Options for `kind` in `format`, with no mapping, batches of 10,000 rows and no time
    /// bound.
    pub fn new(kind: EntityKind, format: Format) -> ImportOptions {
        ImportOptions {
            kind,
            format,
            mapping: Mapping::default(),
            delimiter: None,
            batch_rows: 10_000,
            batch_time: None,
            atomic: false,
            dry_run: false,
            base_dir: Some(PathBuf::from(".")),
        }
    }
}

/// A row that was not imported, or a problem of the whole file (row 0).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// The data row, counting from 1 after a CSV header; 0 for the file itself.
    pub row: u64,
    /// The line of the file the row starts on.
    pub line: u64,
    /// The row's external key, when it was read.
    pub key: Option<String>,
    /// The column (or the entity field) at fault; empty when none is.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.row > 0 {
            write!(f, "row {} (line {})", self.row, self.line)?;
        } else if self.line > 0 {
            write!(f, "line {}", self.line)?;
        } else {
            f.write_str("file")?;
        }
        if !self.field.is_empty() {
            write!(f, ", {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Data rows read.
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    /// Rows whose entity already had these values.
    pub unchanged: u64,
    /// Rows skipped for errors.
    pub failed: u64,
    /// Every row error, in file order.
    pub errors: Vec<RowError>,
    /// The problem that stopped the import before the end of the file.
    pub stopped: Option<RowError>,
    /// Whether anything was written: a row created or changed and committed (false for a
    /// dry run, a refused atomic import, a file refused at its header, or a file whose rows
    /// were all unchanged or failed).
    pub written: bool,
    /// Valid rows of the batch a stop dropped: read and checked, not written.
    pub discarded: u64,
}

/// How far an import is.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub bytes: u64,
    pub rows: u64,
}

/// Runs one import; see the module documentation for the policy on bad rows.
pub struct Importer<'a> {
    store: &'a Store,
    engine: &'a Engine,
    actor: Option<UserId>,
    opts: &'a ImportOptions,
    columns: Arc<[Column]>,
    report: Report,
    /// The store's commit count when the import began, and the import's own commits: as
    /// long as nobody else commits, a key the reading thread found free in its snapshot
    /// (and no earlier row has) is free, and need not be looked up again.
    commits_at_start: u64,
    own_commits: u64,
    /// Whether someone else committed during the import: keys are then looked up again.
    foreign_commits: bool,
    /// Rows of the open batch created, updated and unchanged: counted in the report when
    /// the batch commits (or, for a dry run, when it ends).
    open: [u64; 3],
    /// Rows committed since the last durable commit of the import.
    unsynced: usize,
}

impl<'a> Importer<'a> {
    /// An importer of `opts.kind` into `store` acting as `actor`.
    pub fn new(store: &'a Store, engine: &'a Engine, actor: Option<UserId>, opts: &'a ImportOptions) -> Result<Self> {
        let columns = columns::columns(opts.kind, store.settings()).ok_or_else(|| {
            Error::NotAllowed(format!(
                "{} cannot be imported; files carry {}",
                opts.kind,
                columns::KINDS.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let columns: Arc<[Column]> = columns.into();
        Ok(Importer {
            store,
            engine,
            actor,
            opts,
            columns,
            report: Report::default(),
            commits_at_start: 0,
            own_commits: 0,
            foreign_commits: false,
            open: [0; 3],
            unsynced: 0,
        })
    }

    /// Imports what `input` holds, calling `progress` now and then. One thread reads and
    /// converts rows, the calling thread writes them.
    pub fn run(mut self, input: impl Read + Send, progress: &mut dyn FnMut(Progress)) -> Result<Report> {
        crate::with_kind!(
            self.opts.kind,
            only [Counterparty, Partner, Contact, LoyaltyProgram, LoyaltyCard, Deal, Interaction, Document, Claim],
            E => self.run_typed::<E>(input, progress)?,
            else other => return Err(Error::NotAllowed(format!("{other} cannot be imported")))
        );
        Ok(self.report)
    }

    fn converter(&self) -> Converter<'a> {
        Converter { columns: self.columns.clone(), opts: self.opts, refs: HashMap::new(), logins: HashMap::new() }
    }

    fn run_typed<E: Entity + PartialEq>(
        &mut self,
        input: impl Read + Send,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let mut input = std::io::BufReader::with_capacity(1 << 16, input);
        // The CSV header is read here: the writer needs its column positions too.
        if self.opts.format == Format::Csv {
            let io = |e: std::io::Error| Error::Io { path: PathBuf::from("input"), error: e };
            let delimiter = match self.opts.delimiter {
                Some(d) => d,
                None => super::csv::sniff_delimiter(input.fill_buf().map_err(io)?),
            };
            let mut reader = CsvReader::new(input, delimiter);
            let Some(at) = self.header(&mut reader)? else { return Ok(()) };
            return self.pipeline::<E, _>(Source::Csv(reader, at), progress);
        }
        self.pipeline::<E, _>(Source::Jsonl(input), progress)
    }

    /// Reads and converts on one thread, writes on this one.
    fn pipeline<E: Entity + PartialEq, R: BufRead + Send>(
        &mut self,
        source: Source<R>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Item<E>>>(32);
        let at = match &source {
            Source::Csv(_, at) => at.clone(),
            Source::Jsonl(_) => Vec::new(),
        };
        let (store, reading) = (self.store, self.converter());
        self.commits_at_start = store.commit_count();
        std::thread::scope(|scope| {
            scope.spawn(move || read_rows::<E, R>(store, reading, source, send));
            let result = self.write_all(&receive, &at, progress);
            // Let the reader finish: it stops at the first message it cannot send.
            drop(receive);
            result
        })
    }
}
