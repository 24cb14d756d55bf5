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
//! the other rows of its batch are written and the batch commits. With
//! [`ImportOptions::atomic`] the whole file is one transaction and any bad row leaves the
//! database as it was. A file that cannot be read on (an unterminated quote, a broken
//! header) stops the import: batches committed before stay, the open batch is not written.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::columns::{self, Column, Empty, Ty, KEY};
use super::csv::{CsvError, CsvReader, Record};
use super::{Format, Mapping};
use crate::id::{RawId, TypedId, UserId};
use crate::model::{CustomFieldType, Deal, DealStatus, Entity, EntityKind, EntityRef, How};
use crate::process::{Engine, ImportStep};
use crate::store::{Index, Reader, Store, WriteTxn};
use crate::time::Timestamp;
use crate::{Error, Result};

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
    /// The whole file in one transaction: any bad row and nothing is written.
    pub atomic: bool,
    /// Check everything, write nothing.
    pub dry_run: bool,
    /// Where relative attachment paths start (the input file's directory); `None`: an
    /// `attachments` column is refused (a file uploaded to a server names no local files).
    pub base_dir: Option<PathBuf>,
}

impl ImportOptions {
    /// Options for `kind` in `format`, with no mapping, batches of 10,000 rows.
    pub fn new(kind: EntityKind, format: Format) -> ImportOptions {
        ImportOptions {
            kind,
            format,
            mapping: Mapping::default(),
            delimiter: None,
            batch_rows: 10_000,
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
    /// Whether anything was written (false for a dry run, a refused atomic import, or a
    /// file refused at its header).
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

/// A cell of a row: text from CSV, a value from JSONL.
enum Cell<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl Cell<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Cell::Text(s) => s.trim().is_empty(),
            Cell::Json(Value::Null) => true,
            Cell::Json(Value::String(s)) => s.trim().is_empty(),
            Cell::Json(Value::Array(a)) => a.is_empty(),
            Cell::Json(_) => false,
        }
    }

    /// The cell as text (JSON strings, numbers and booleans read as their text).
    fn text(&self) -> Result<std::borrow::Cow<'_, str>, String> {
        match self {
            Cell::Text(s) => Ok(std::borrow::Cow::Borrowed(s.trim())),
            Cell::Json(Value::String(s)) => Ok(std::borrow::Cow::Borrowed(s.trim())),
            Cell::Json(v @ (Value::Number(_) | Value::Bool(_))) => Ok(std::borrow::Cow::Owned(v.to_string())),
            Cell::Json(v) => Err(format!("expected a single value, got {}", kind_of(v))),
        }
    }

    /// The cell as a list: a JSON array, JSON array text, or `;`-separated text.
    fn list(&self) -> Result<Vec<String>, String> {
        let from_array = |a: &Vec<Value>| {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_string()),
                    Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                    _ => Err(format!("a list holds text values, not {}", kind_of(v))),
                })
                .collect::<Result<Vec<String>, String>>()
        };
        match self {
            Cell::Json(Value::Array(a)) => from_array(a),
            _ => {
                let text = self.text()?;
                if text.starts_with('[') {
                    match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Array(a)) => return from_array(&a),
                        _ => return Err(format!("\"{text}\" starts like a JSON array but is not one")),
                    }
                }
                Ok(text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            }
        }
    }

    /// The cell as a JSON value: JSONL values as they are, CSV text parsed.
    fn json(&self) -> Result<Value, String> {
        match self {
            Cell::Json(v) => Ok((*v).clone()),
            Cell::Text(s) => serde_json::from_str(s).map_err(|e| format!("is not valid JSON: {e}")),
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A row read from the file.
struct Row<'a> {
    source: RowSource<'a>,
}

enum RowSource<'a> {
    /// A CSV record and, per column, its field number.
    Csv(&'a Record, &'a [Option<usize>]),
    /// A JSONL object and, per column, the key the file uses for it.
    Json(&'a Map<String, Value>, &'a [Option<String>]),
}

impl Row<'_> {
    /// The cell of column `i`; `None` when the file has no such column.
    fn cell(&self, i: usize) -> Result<Option<Cell<'_>>, String> {
        match &self.source {
            RowSource::Csv(rec, at) => match at[i] {
                Some(f) => std::str::from_utf8(rec.field(f)).map(|s| Some(Cell::Text(s))).map_err(|e| {
                    format!(
                        "is not valid UTF-8 (a broken byte sequence at byte {} of the value); save the file as UTF-8 (it may be in Windows-1251)",
                        e.valid_up_to() + 1
                    )
                }),
                None => Ok(None),
            },
            RowSource::Json(obj, keys) => Ok(keys[i].as_ref().and_then(|k| obj.get(k)).map(Cell::Json)),
        }
    }
}

/// What one row asks for.
struct Prepared {
    key: String,
    /// Values to set, by column number.
    sets: Vec<(usize, Option<Value>)>,
    history: Option<Vec<ImportStep>>,
    stage: Option<Option<String>>,
    status: Option<DealStatus>,
    attachments: Vec<PathBuf>,
}

/// A row made into an entity: the stored one it updates (if any) and the new form.
struct Plan<E> {
    p: Prepared,
    old: Option<E>,
    new: E,
}

/// A row as read, kept for the writer to convert again against its transaction.
enum RawRow {
    Csv(Record),
    Json(Map<String, Value>, Vec<Option<String>>),
}

/// What the reading thread hands the writing one, in file order.
enum Item<E> {
    /// A row converted against a snapshot.
    Ready { n: u64, line: u64, plan: Box<Plan<E>> },
    /// A row the snapshot could not convert (an error, or a reference to a record of
    /// this import the snapshot does not see yet): the writer converts it again.
    Retry { n: u64, line: u64, raw: RawRow },
    /// A row that cannot be read, or whose key an earlier row has.
    Failed { n: u64, line: u64, key: Option<String>, error: (String, String) },
    /// How far the reading is, in bytes.
    Progress(u64),
    /// The file cannot be read on.
    Stop(RowError),
    /// Reading failed (I/O).
    Fatal(Error),
}

type RowFailure = (Option<String>, (String, String));

fn field_err(field: &str, message: impl Into<String>) -> (String, String) {
    (field.to_string(), message.into())
}

/// Turns rows into entities: conversions and reference lookups, against any reader.
struct Converter<'a> {
    columns: Arc<[Column]>,
    opts: &'a ImportOptions,
    /// Resolved references: per kind, key → id.
    refs: HashMap<EntityKind, HashMap<String, RawId>>,
    logins: HashMap<String, UserId>,
}

/// Rows per message between the threads.
const CHUNK: usize = 1024;

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
        })
    }

    /// Imports what `input` holds, calling `progress` now and then. One thread reads and
    /// converts rows, the calling thread writes them.
    pub fn run(mut self, input: impl Read + Send, progress: &mut dyn FnMut(Progress)) -> Result<Report> {
        crate::with_kind!(
            self.opts.kind,
            only [Counterparty, Partner, Contact, Deal, Interaction, Document],
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
            let io = |e: std::io::Error| Error::Io { path: PathBuf::from("input"), source: e };
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

    /// Reads the CSV header: the field number of each of our columns. `None` when the
    /// header is refused (the reason is in the report).
    fn header<R: BufRead>(&mut self, reader: &mut CsvReader<R>) -> Result<Option<Vec<Option<usize>>>> {
        let mut header = Record::default();
        match reader.read(&mut header) {
            Ok(true) => {}
            Ok(false) => {
                self.file_error(
                    1,
                    "",
                    "the file is empty: a CSV file starts with a header row naming its columns".into(),
                );
                return Ok(None);
            }
            Err(e) => {
                self.report.stopped = Some(csv_stop(e)?);
                return Ok(None);
            }
        }
        let mut at: Vec<Option<usize>> = vec![None; self.columns.len()];
        for f in 0..header.len() {
            let Ok(name) = std::str::from_utf8(header.field(f)) else {
                self.file_error(1, "", format!("header column {} is not valid UTF-8; save the file as UTF-8", f + 1));
                return Ok(None);
            };
            let name = name.trim();
            match our_column(&self.columns, self.opts, name) {
                Ok(Some(i)) => {
                    if at[i].is_some() {
                        self.file_error(1, name, format!("two columns of the header are {}", self.columns[i].name));
                        return Ok(None);
                    }
                    at[i] = Some(f);
                }
                Ok(None) => {}
                Err(m) => {
                    self.file_error(1, name, m);
                    return Ok(None);
                }
            }
        }
        if let Some(missing) = missing_required(&self.columns, |i| at[i].is_some()) {
            self.file_error(1, "", format!("the header lacks the required column(s) {missing}"));
            return Ok(None);
        }
        Ok(Some(at))
    }

    fn file_error(&mut self, line: u64, field: &str, message: String) {
        self.report.stopped = Some(RowError { row: 0, line, key: None, field: field.to_string(), message });
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

    fn single_transaction(&self) -> bool {
        self.opts.atomic || self.opts.dry_run
    }

    /// Writes the rows the reader sends, batch by batch.
    fn write_all<E: Entity + PartialEq>(
        &mut self,
        receive: &std::sync::mpsc::Receiver<Vec<Item<E>>>,
        at: &[Option<usize>],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let mut batch = Batch::new(self.store, self.actor)?;
        self.check_foreign_commits();
        let mut cx = self.converter();
        for chunk in receive.iter() {
            for item in chunk {
                match item {
                    Item::Ready { n, line, plan } => {
                        self.report.rows = n;
                        batch.rows += 1;
                        self.write_planned(&mut batch.tx, n, line, *plan)?;
                    }
                    Item::Retry { n, line, raw } => {
                        self.report.rows = n;
                        batch.rows += 1;
                        let source = match &raw {
                            RawRow::Csv(rec) => RowSource::Csv(rec, at),
                            RawRow::Json(obj, keys) => RowSource::Json(obj, keys),
                        };
                        let row = Row { source };
                        match cx.prepare(&batch.tx, &row).and_then(|p| cx.plan::<E, _>(&batch.tx, p)) {
                            Ok(plan) => self.write_planned(&mut batch.tx, n, line, plan)?,
                            Err((key, e)) => self.row_error(n, line, key, e),
                        }
                    }
                    Item::Failed { n, line, key, error } => {
                        self.report.rows = n;
                        self.row_error(n, line, key, error);
                    }
                    Item::Progress(bytes) => progress(Progress { bytes, rows: self.report.rows }),
                    Item::Stop(e) => {
                        // The open batch is not written.
                        drop(batch);
                        self.report.discarded += self.open.iter().sum::<u64>();
                        self.open = [0; 3];
                        self.report.stopped = Some(e);
                        return Ok(());
                    }
                    Item::Fatal(e) => return Err(e),
                }
                if batch.rows >= self.opts.batch_rows && !self.single_transaction() {
                    batch = batch.commit_and_renew(&mut self.report)?;
                    self.count_open_batch();
                    self.own_commits += 1;
                    self.check_foreign_commits();
                }
            }
        }
        if self.opts.dry_run || (self.opts.atomic && !self.report.errors.is_empty()) {
            // What the file would have done; `written` stays false.
            self.count_open_batch();
            return Ok(());
        }
        batch.commit(&mut self.report)?;
        self.count_open_batch();
        Ok(())
    }

    fn count_open_batch(&mut self) {
        let [created, updated, unchanged] = std::mem::take(&mut self.open);
        self.report.created += created;
        self.report.updated += updated;
        self.report.unchanged += unchanged;
    }

    /// Called with a batch's transaction open (nobody else can commit until it ends).
    fn check_foreign_commits(&mut self) {
        if self.store.commit_count() != self.commits_at_start + self.own_commits {
            self.foreign_commits = true;
        }
    }

    fn row_error(&mut self, row: u64, line: u64, key: Option<String>, (field, message): (String, String)) {
        self.report.failed += 1;
        self.report.errors.push(RowError { row, line, key, field, message });
    }

    /// Writes one converted row in its own savepoint: all of it or nothing.
    fn write_planned<E: Entity + PartialEq>(
        &mut self,
        tx: &mut WriteTxn<'_>,
        n: u64,
        line: u64,
        plan: Plan<E>,
    ) -> Result<()> {
        let key = plan.p.key.clone();
        // A row is written whole or not at all. Creating and updating are each one engine
        // operation, all-or-nothing by themselves, and the key (checked when read, and
        // known free) cannot fail after them; attachments and keys that must be looked up
        // again need a savepoint around the row.
        let whole = plan.p.attachments.is_empty() && !self.foreign_commits;
        let result = if whole { self.write_entity(tx, plan) } else { tx.attempt(|tx| self.write_entity(tx, plan)) };
        match result {
            Ok(Written::Created) => self.open[0] += 1,
            Ok(Written::Updated) => self.open[1] += 1,
            Ok(Written::Unchanged) => self.open[2] += 1,
            Err(e) => {
                let failure = row_failure(e)?;
                self.row_error(n, line, Some(key), failure);
            }
        }
        Ok(())
    }

    fn write_entity<E: Entity + PartialEq>(&self, tx: &mut WriteTxn<'_>, plan: Plan<E>) -> Result<Written> {
        let Plan { p, old, new } = plan;
        let (written, id) = match old {
            Some(old) => {
                let id = old.id().raw();
                if let Some(deal) = (&old as &dyn std::any::Any).downcast_ref::<Deal>() {
                    self.check_deal_state(tx, deal, &p)?;
                }
                if new == old {
                    (Written::Unchanged, id)
                } else {
                    self.engine.update(tx, new)?;
                    (Written::Updated, id)
                }
            }
            None => {
                let created = match (&new as &dyn std::any::Any).downcast_ref::<Deal>() {
                    Some(deal) => self.create_deal(tx, deal.clone(), &p)?.id.raw(),
                    None => self.engine.create(tx, new)?.id().raw(),
                };
                tx.put_external_key(E::KIND, &p.key, created, !self.foreign_commits)?;
                (Written::Created, created)
            }
        };
        let attached = self.attach(tx, EntityRef { kind: E::KIND, id }, &p.attachments)?;
        Ok(if attached && written == Written::Unchanged { Written::Updated } else { written })
    }
}

/// Where rows come from: a CSV reader past its header (with our columns' field numbers),
/// or JSONL lines.
enum Source<R> {
    Csv(CsvReader<R>, Vec<Option<usize>>),
    Jsonl(R),
}

/// The reading thread: reads rows, converts them against a snapshot (taken again every
/// batch, so later rows see what earlier batches wrote), and sends them in file order.
fn read_rows<E: Entity, R: BufRead>(
    store: &Store,
    mut cx: Converter<'_>,
    source: Source<R>,
    send: SyncSender<Vec<Item<E>>>,
) {
    let mut out = Out { send, chunk: Vec::with_capacity(CHUNK), open: true };
    let refresh = cx.opts.batch_rows.max(1) as u64;
    let mut snapshot = match store.read() {
        Ok(s) => s,
        Err(e) => return out.finish(Item::Fatal(e)),
    };
    // Keys of this file's rows seen so far, with their row number.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut n = 0u64;
    let next = |n: u64, snapshot: &mut crate::store::Snapshot| -> Result<()> {
        if n.is_multiple_of(refresh) {
            *snapshot = store.read()?;
        }
        Ok(())
    };
    match source {
        Source::Csv(mut reader, at) => {
            let mut rec = Record::default();
            loop {
                match reader.read(&mut rec) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        let item = match csv_stop(e) {
                            Ok(stop) => Item::Stop(stop),
                            Err(e) => Item::Fatal(e),
                        };
                        return out.finish(item);
                    }
                }
                n += 1;
                if let Err(e) = next(n, &mut snapshot) {
                    return out.finish(Item::Fatal(e));
                }
                let row = Row { source: RowSource::Csv(&rec, &at) };
                let line = rec.line;
                let item = match repeated(&mut seen, &row, n) {
                    Some((key, error)) => Item::Failed { n, line, key: Some(key), error },
                    None => match cx.prepare(&snapshot, &row).and_then(|p| cx.plan::<E, _>(&snapshot, p)) {
                        Ok(plan) => Item::Ready { n, line, plan: Box::new(plan) },
                        Err(_) => Item::Retry { n, line, raw: RawRow::Csv(rec.clone()) },
                    },
                };
                if !out.push(item, reader.bytes) {
                    return;
                }
            }
            let bytes = reader.bytes;
            out.push(Item::Progress(bytes), bytes);
        }
        Source::Jsonl(mut input) => {
            let mut buf = Vec::new();
            let (mut line, mut bytes) = (0u64, 0u64);
            loop {
                buf.clear();
                let read = match input.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(e) => return out.finish(Item::Fatal(Error::Io { path: PathBuf::from("input"), source: e })),
                };
                line += 1;
                bytes += read as u64;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                n += 1;
                if let Err(e) = next(n, &mut snapshot) {
                    return out.finish(Item::Fatal(e));
                }
                let item = match json_row(&cx, &buf) {
                    Err(error) => Item::Failed { n, line, key: None, error },
                    Ok((obj, keys)) => {
                        let row = Row { source: RowSource::Json(&obj, &keys) };
                        match repeated(&mut seen, &row, n) {
                            Some((key, error)) => Item::Failed { n, line, key: Some(key), error },
                            None => match cx.prepare(&snapshot, &row).and_then(|p| cx.plan::<E, _>(&snapshot, p)) {
                                Ok(plan) => Item::Ready { n, line, plan: Box::new(plan) },
                                Err(_) => Item::Retry { n, line, raw: RawRow::Json(obj, keys) },
                            },
                        }
                    }
                };
                if !out.push(item, bytes) {
                    return;
                }
            }
            out.push(Item::Progress(bytes), bytes);
        }
    }
    out.flush();
}

/// Remembers row `n`'s key; when an earlier row has it, the key and the error.
fn repeated(seen: &mut HashMap<String, u64>, row: &Row<'_>, n: u64) -> Option<(String, (String, String))> {
    let key = match row.cell(0) {
        Ok(Some(c)) => c.text().ok()?.into_owned(),
        _ => return None,
    };
    if key.is_empty() {
        return None;
    }
    match seen.get(&key) {
        Some(first) => {
            let e = field_err(KEY, format!("\"{key}\" is also the key of row {first}; a key names one record"));
            Some((key, e))
        }
        None => {
            seen.insert(key, n);
            None
        }
    }
}

/// A JSONL object and, per column, the key the file uses for it.
type JsonRow = (Map<String, Value>, Vec<Option<String>>);

/// A JSONL line as an object, with the key each of our columns has in it.
fn json_row(cx: &Converter<'_>, line: &[u8]) -> std::result::Result<JsonRow, (String, String)> {
    let obj = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(o)) => o,
        Ok(v) => return Err(field_err("", format!("a line holds one JSON object, not {}", kind_of(&v)))),
        Err(e) => {
            return Err(field_err(
                "",
                match std::str::from_utf8(line) {
                    Err(u) => format!(
                        "is not valid UTF-8 (a broken byte sequence at byte {}); save the file as UTF-8",
                        u.valid_up_to() + 1
                    ),
                    Ok(_) => format!("is not valid JSON: {e}"),
                },
            ))
        }
    };
    let mut keys: Vec<Option<String>> = vec![None; cx.columns.len()];
    for name in obj.keys() {
        match our_column(&cx.columns, cx.opts, name) {
            Ok(Some(i)) => keys[i] = Some(name.clone()),
            Ok(None) => {}
            Err(m) => return Err(field_err(name, m)),
        }
    }
    if let Some(missing) = missing_required(&cx.columns, |i| keys[i].is_some()) {
        return Err(field_err("", format!("the row lacks the required field(s) {missing}")));
    }
    Ok((obj, keys))
}

/// The sending end of the reading thread, in chunks.
struct Out<E> {
    send: SyncSender<Vec<Item<E>>>,
    chunk: Vec<Item<E>>,
    open: bool,
}

impl<E> Out<E> {
    /// Queues an item; `false` once the writer has stopped listening.
    fn push(&mut self, item: Item<E>, bytes: u64) -> bool {
        self.chunk.push(item);
        if self.chunk.len() >= CHUNK {
            self.chunk.push(Item::Progress(bytes));
            self.flush();
        }
        self.open
    }

    fn flush(&mut self) {
        if !self.chunk.is_empty() && self.open {
            let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
            self.open = self.send.send(chunk).is_ok();
        }
    }

    fn finish(mut self, item: Item<E>) {
        self.chunk.push(item);
        self.flush();
    }
}

/// Maps a file's column name to one of ours: `Ok(None)` for a column the mapping drops.
fn our_column(columns: &[Column], opts: &ImportOptions, name: &str) -> std::result::Result<Option<usize>, String> {
    let ours = match opts.mapping.get(name) {
        Some(None) => return Ok(None),
        Some(Some(to)) => to.as_str(),
        None => name,
    };
    match columns.iter().position(|c| c.name.eq_ignore_ascii_case(ours.trim())) {
        Some(i) => Ok(Some(i)),
        None => Err(format!(
            "\"{name}\" is not a column of {} files (columns: {}); map it to one with a mapping, or to \"-\" to ignore it",
            opts.kind,
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The required columns `present` says are missing, joined; `None` when none is.
fn missing_required(columns: &[Column], present: impl Fn(usize) -> bool) -> Option<String> {
    let missing: Vec<&str> =
        columns.iter().enumerate().filter(|(i, c)| c.required && !present(*i)).map(|(_, c)| c.name.as_str()).collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A CSV error that stops the import, as the problem of the file it is.
fn csv_stop(e: CsvError) -> Result<RowError> {
    match e {
        CsvError::Io(e) => Err(Error::Io { path: PathBuf::from("input"), source: e }),
        CsvError::UnterminatedQuote { line } | CsvError::AfterQuote { line, .. } => {
            Ok(RowError { row: 0, line, key: None, field: String::new(), message: e.to_string() })
        }
    }
}

impl Converter<'_> {
    /// Reads and converts a row's cells; references are resolved against what the
    /// transaction sees (earlier rows included).
    fn prepare<R: Reader>(&mut self, tx: &R, row: &Row<'_>) -> std::result::Result<Prepared, RowFailure> {
        let key_at = 0;
        let key = match row.cell(key_at) {
            Ok(Some(c)) if !c.is_empty() => match c.text() {
                Ok(k) => k.into_owned(),
                Err(m) => return Err((None, field_err(KEY, m))),
            },
            Ok(_) => {
                return Err((
                    None,
                    field_err(KEY, "is required: the external key makes a re-run update rather than duplicate"),
                ))
            }
            Err(m) => return Err((None, field_err(KEY, m))),
        };
        if let Err(e) = crate::store::check_external_key(self.opts.kind, &key) {
            return Err((Some(key), (e.field, e.message)));
        }
        let fail = |e: (String, String)| (Some(key.clone()), e);
        let mut p = Prepared {
            key: key.clone(),
            sets: Vec::new(),
            history: None,
            stage: None,
            status: None,
            attachments: Vec::new(),
        };
        for i in 1..self.columns.len() {
            let name = self.columns[i].name.clone();
            let cell = row.cell(i).map_err(|m| fail(field_err(&name, m)))?;
            let Some(cell) = cell else { continue };
            let empty = cell.is_empty();
            let column = &self.columns[i];
            if empty {
                match column.empty {
                    Empty::Required => return Err(fail(field_err(&name, "is required and must not be empty"))),
                    Empty::Default => {}
                    Empty::Null => p.sets.push((i, Some(Value::Null))),
                    Empty::Blank => p.sets.push((i, None)),
                }
                if name == "stage" {
                    p.stage = Some(None);
                }
                continue;
            }
            match &column.ty {
                Ty::History => {
                    let steps = self.history(tx, &cell).map_err(|m| fail(field_err(&name, m)))?;
                    p.history = Some(steps);
                }
                Ty::Attachments => {
                    let list = cell.list().map_err(|m| fail(field_err(&name, m)))?;
                    match &self.opts.base_dir {
                        _ if list.is_empty() => {}
                        Some(base) => p.attachments = list.iter().map(|f| base.join(f)).collect(),
                        None => {
                            let m =
                                "files are not read from the server's disk: attach them through /api/v1/attachments";
                            return Err(fail(field_err(&name, m)));
                        }
                    }
                }
                _ if name == "stage" => {
                    p.stage = Some(Some(cell.text().map_err(|m| fail(field_err(&name, m)))?.into_owned()))
                }
                _ if name == "status" => {
                    let v = self.convert(tx, i, &cell).map_err(|m| fail(field_err(&name, m)))?;
                    p.status = serde_json::from_value(v).ok();
                }
                _ => {
                    let v = self.convert(tx, i, &cell).map_err(|m| fail(field_err(&name, m)))?;
                    p.sets.push((i, Some(v)));
                }
            }
        }
        Ok(p)
    }

    /// The JSON value column `i` puts into the entity.
    fn convert<R: Reader>(&mut self, tx: &R, i: usize, cell: &Cell<'_>) -> std::result::Result<Value, String> {
        let ty = self.columns[i].ty.clone();
        Ok(match ty {
            Ty::Text => Value::String(cell.text()?.into_owned()),
            Ty::Enum(names) => Value::String(one_of(&cell.text()?, names)?),
            Ty::EnumList(names) => Value::Array(
                cell.list()?
                    .iter()
                    .map(|s| one_of(s, names).map(Value::String))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            Ty::Int(max) => {
                let t = cell.text()?;
                match t.parse::<u64>() {
                    Ok(n) if n <= max => Value::from(n),
                    Ok(n) => return Err(format!("{n} is more than {max}")),
                    Err(_) => return Err(format!("expected a whole number from 0 to {max}, got \"{t}\"")),
                }
            }
            Ty::Amount => {
                let t = cell.text()?;
                let t = t.replace([' ', '\u{a0}'], "").replace(',', ".");
                if t.parse::<rust_decimal::Decimal>().is_err() || t.contains(['e', 'E', '+']) {
                    return Err(format!("expected an amount like 1234.50, got \"{}\"", cell.text()?));
                }
                Value::String(t)
            }
            Ty::Currency => {
                let t = cell.text()?;
                crate::values::Currency::parse(&t).map_err(|e| e.to_string())?;
                Value::String(t.into_owned())
            }
            Ty::Date => Value::String(parse_date(&cell.text()?)?.to_string()),
            Ty::Time => Value::String(parse_time(&cell.text()?)?.to_string()),
            Ty::Key(kind) => Value::String(self.resolve(tx, kind, &cell.text()?)?.to_string()),
            Ty::Keys(kind) => {
                let mut out = Vec::new();
                for k in cell.list()? {
                    out.push(Value::String(self.resolve(tx, kind, &k)?.to_string()));
                }
                Value::Array(out)
            }
            Ty::Login => Value::String(self.login(tx, &cell.text()?)?.to_string()),
            Ty::List => Value::Array(cell.list()?.into_iter().map(Value::String).collect()),
            Ty::Json(check) => {
                let v = cell.json()?;
                check(&v)?;
                v
            }
            Ty::Custom(def) => {
                let t = || cell.text().map(|t| t.into_owned());
                let (tag, v) = match &def.ty {
                    CustomFieldType::String => ("string", Value::String(t()?)),
                    CustomFieldType::Number => {
                        let s = t()?.replace(',', ".");
                        s.parse::<rust_decimal::Decimal>().map_err(|_| format!("expected a number, got \"{s}\""))?;
                        ("number", Value::String(s))
                    }
                    CustomFieldType::Money => {
                        let s = t()?;
                        let (amount, currency) = s.rsplit_once(' ').ok_or_else(|| {
                            format!("expected an amount and a currency like \"1500.00 RUB\", got \"{s}\"")
                        })?;
                        let m =
                            crate::values::Money::parse(amount.trim(), currency.trim()).map_err(|e| e.to_string())?;
                        ("money", serde_json::to_value(m).expect("money serializes"))
                    }
                    CustomFieldType::Date => ("date", Value::String(parse_date(&t()?)?.to_string())),
                    CustomFieldType::Bool => {
                        let s = t()?.to_lowercase();
                        let b = match s.as_str() {
                            "true" | "yes" | "1" | "да" => true,
                            "false" | "no" | "0" | "нет" => false,
                            _ => return Err(format!("expected true or false, got \"{s}\"")),
                        };
                        ("bool", Value::Bool(b))
                    }
                    CustomFieldType::Enum { .. } => ("enum", Value::String(t()?)),
                    CustomFieldType::Reference { target } => {
                        ("ref", Value::String(self.resolve(tx, *target, &t()?)?.to_string()))
                    }
                };
                let mut m = Map::new();
                m.insert(tag.to_string(), v);
                Value::Object(m)
            }
            Ty::History | Ty::Attachments => unreachable!("handled by prepare"),
        })
    }

    /// The id of the `kind` entity with external key (or id) `key`.
    fn resolve<R: Reader>(&mut self, tx: &R, kind: EntityKind, key: &str) -> std::result::Result<RawId, String> {
        if let Some(id) = self.refs.get(&kind).and_then(|m| m.get(key)) {
            return Ok(*id);
        }
        match find_key(tx, kind, key).map_err(|e| e.to_string())? {
            Some(id) => {
                self.refs.entry(kind).or_default().insert(key.to_string(), id);
                Ok(id)
            }
            None => Err(format!(
                "no {kind} has the key \"{key}\" (not in the installation, nor in an earlier row of this file); import the {kind} records first"
            )),
        }
    }

    fn login<R: Reader>(&mut self, tx: &R, login: &str) -> std::result::Result<UserId, String> {
        if let Some(id) = self.logins.get(login) {
            return Ok(*id);
        }
        match tx.user_by_login(login).map_err(|e| e.to_string())? {
            Some(u) => {
                self.logins.insert(login.to_string(), u.id);
                Ok(u.id)
            }
            None => Err(format!("no user has the login \"{login}\"")),
        }
    }

    /// A deal's history from its JSON form: `[{"at", "how", "stage", "status", "by", "note"}]`.
    fn history<R: Reader>(&mut self, tx: &R, cell: &Cell<'_>) -> std::result::Result<Vec<ImportStep>, String> {
        let Value::Array(steps) = cell.json()? else {
            return Err("expected a JSON array of steps".into());
        };
        let mut out = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let step: HistoryStep = serde_json::from_value(s.clone()).map_err(|e| format!("step {i}: {e}"))?;
            let how = How::ALL
                .iter()
                .copied()
                .find(|h| h.name() == step.how)
                .ok_or_else(|| format!("step {i}: \"{}\" is not a kind of step", step.how))?;
            let to_status = serde_json::from_value(Value::String(step.status.clone()))
                .map_err(|_| format!("step {i}: \"{}\" is not a deal status", step.status))?;
            let actor = match step.by.as_deref().filter(|b| !b.is_empty()) {
                Some(login) => Some(self.login(tx, login).map_err(|m| format!("step {i}: {m}"))?),
                None => None,
            };
            out.push(ImportStep {
                at: parse_time(&step.at).map_err(|m| format!("step {i}: {m}"))?,
                how,
                to_stage: step.stage,
                to_status,
                actor,
                note: step.note,
            });
        }
        Ok(out)
    }

    /// The entity a prepared row makes: the stored one with the row's values, or a new one.
    fn plan<E: Entity, R: Reader>(&self, r: &R, mut p: Prepared) -> std::result::Result<Plan<E>, RowFailure> {
        let key = p.key.clone();
        let fail = |e: Error| (Some(key.clone()), ("".to_string(), e.to_string()));
        let old: Option<E> = match find_key(r, E::KIND, &p.key).map_err(fail)? {
            Some(id) => Some(r.load(E::Id::from_raw(id)).map_err(fail)?),
            None => None,
        };
        let mut v = match &old {
            Some(old) => serde_json::to_value(old).expect("entities serialize"),
            None => template::<E>(),
        };
        self.apply(&mut v, &mut p);
        let new: E = serde_json::from_value(v).map_err(|e| (Some(key.clone()), ("".to_string(), e.to_string())))?;
        Ok(Plan { p, old, new })
    }

    /// Moves the row's values into an entity's JSON form.
    fn apply(&self, v: &mut Value, p: &mut Prepared) {
        for (i, value) in p.sets.drain(..) {
            let column = &self.columns[i];
            if column.path.is_empty() {
                continue;
            }
            let value = match value {
                Some(v) => v,
                None => match column.ty {
                    Ty::Text => Value::String(String::new()),
                    _ => Value::Array(Vec::new()),
                },
            };
            let custom = matches!(column.ty, Ty::Custom(_));
            set_path(v, &column.path, value, custom);
        }
    }
}

/// The entity of `kind` with external key `key`, or with `key` as its id.
fn find_key<R: Reader>(r: &R, kind: EntityKind, key: &str) -> Result<Option<RawId>> {
    if let Some(id) = r.external_key(kind, key)? {
        return Ok(Some(id));
    }
    match key.parse::<RawId>() {
        Ok(id) if r.exists(kind, id)? => Ok(Some(id)),
        _ => Ok(None),
    }
}

impl Importer<'_> {
    fn create_deal(&self, tx: &mut WriteTxn<'_>, mut deal: Deal, p: &Prepared) -> Result<Deal> {
        let kind = tx.settings().process_kind(&deal.kind).cloned();
        let first = kind.as_ref().and_then(|k| k.stages.first().map(|s| s.id.clone()));
        match &p.history {
            Some(steps) => {
                let last = steps.last();
                deal.stage = last.and_then(|s| s.to_stage.clone());
                deal.status = last.map_or(DealStatus::InProgress, |s| s.to_status);
                if let Some(Some(stage)) = &p.stage {
                    if deal.stage.as_deref() != Some(stage) {
                        return Err(history_field(format!(
                            "ends in stage {}, but the stage column says \"{stage}\"",
                            deal.stage.as_deref().unwrap_or("(none)")
                        )));
                    }
                }
                if let Some(status) = p.status {
                    if status != deal.status {
                        return Err(history_field(format!(
                            "ends {}, but the status column says {}",
                            deal.status.name(),
                            status.name()
                        )));
                    }
                }
                self.engine.import_deal(tx, deal, steps.clone())
            }
            None => {
                let stage = p.stage.clone().flatten();
                let status = p.status.unwrap_or(DealStatus::InProgress);
                if (stage.is_some() && stage != first) || status != DealStatus::InProgress {
                    return Err(history_field(format!(
                        "a deal brought in {} {} needs its history (the steps that took it there)",
                        status.name(),
                        stage.map(|s| format!("in stage \"{s}\"")).unwrap_or_default()
                    )));
                }
                deal.stage = None;
                self.engine.create_deal(tx, deal)
            }
        }
    }

    /// An existing deal's stage, status and history are the engine's: a file may repeat
    /// them, not change them.
    fn check_deal_state(&self, tx: &WriteTxn<'_>, deal: &Deal, p: &Prepared) -> Result<()> {
        if let Some(Some(stage)) = &p.stage {
            if deal.stage.as_deref() != Some(stage) {
                return Err(crate::model::FieldError::new(
                    EntityKind::Deal,
                    "stage",
                    format!(
                        "the deal is in stage {}; import does not move deals (the process engine does)",
                        deal.stage.as_deref().unwrap_or("(none)")
                    ),
                )
                .into());
            }
        }
        if let Some(status) = p.status {
            if status != deal.status {
                return Err(crate::model::FieldError::new(
                    EntityKind::Deal,
                    "status",
                    format!("the deal is {}; import does not close or reopen deals", deal.status.name()),
                )
                .into());
            }
        }
        if let Some(steps) = &p.history {
            let stored = tx.stage_history(deal.id)?;
            let same = stored.len() == steps.len()
                && stored.iter().zip(steps).all(|(a, b)| {
                    a.at == b.at
                        && a.how == b.how
                        && a.to_stage == b.to_stage
                        && a.to_status == b.to_status
                        && a.actor == b.actor
                        && a.note == b.note
                });
            if !same {
                return Err(history_field(format!(
                    "differs from the stored history of {} steps; a deal's history is only appended to, by the process engine",
                    stored.len()
                )));
            }
        }
        Ok(())
    }

    /// Attaches the files not yet attached to `owner` under the same name and content;
    /// whether it attached any.
    fn attach(&self, tx: &mut WriteTxn<'_>, owner: EntityRef, files: &[PathBuf]) -> Result<bool> {
        if files.is_empty() {
            return Ok(false);
        }
        let max = tx.settings().attachment_max_bytes;
        let existing: Vec<crate::model::Attachment> =
            tx.find(Index::AttachmentByOwner, &owner.id.to_bytes(), None, usize::MAX)?;
        let mut any = false;
        for path in files {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let attachment_error = |m: String| {
                Error::from(crate::model::FieldError::new(
                    owner.kind,
                    "attachments",
                    format!("{}: {m}", path.display()),
                ))
            };
            let file = std::fs::File::open(path).map_err(|e| attachment_error(e.to_string()))?;
            let mut content = Vec::new();
            file.take(max + 1).read_to_end(&mut content).map_err(|e| attachment_error(e.to_string()))?;
            if content.len() as u64 > max {
                return Err(attachment_error(format!(
                    "is more than {max} bytes, the limit for attachments (attachments.max_size_mb)"
                )));
            }
            let hash = crate::model::ContentHash::of(&content);
            if existing.iter().any(|a| a.name == name && a.content == hash) {
                continue;
            }
            tx.attach(owner, &name, mime_of(path), &content).map_err(|e| attachment_error(e.to_string()))?;
            any = true;
        }
        Ok(any)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    Created,
    Updated,
    Unchanged,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryStep {
    at: String,
    how: String,
    #[serde(default)]
    stage: Option<String>,
    status: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

fn history_field(message: String) -> Error {
    crate::model::FieldError::new(EntityKind::Deal, "history", message).into()
}

/// The write transaction of the current batch.
struct Batch<'s> {
    store: &'s Store,
    actor: Option<UserId>,
    tx: WriteTxn<'s>,
    rows: usize,
}

impl<'s> Batch<'s> {
    fn new(store: &'s Store, actor: Option<UserId>) -> Result<Batch<'s>> {
        Ok(Batch { store, actor, tx: store.write(actor)?, rows: 0 })
    }

    fn commit(self, report: &mut Report) -> Result<()> {
        self.tx.commit()?;
        report.written = true;
        Ok(())
    }

    fn commit_and_renew(self, report: &mut Report) -> Result<Batch<'s>> {
        let (store, actor) = (self.store, self.actor);
        self.commit(report)?;
        Ok(Batch { store, actor, tx: store.write(actor)?, rows: 0 })
    }
}

/// A row's failure as (field, message); errors that are not the row's fault pass through.
fn row_failure(e: Error) -> Result<(String, String)> {
    Ok(match e {
        Error::Invalid(f) => (f.field, f.message),
        Error::Rejected { hook, handler, message, field } => {
            (field.unwrap_or_default(), format!("refused by {handler} ({hook}): {message}"))
        }
        Error::HookFault { hook, handler, message } => {
            (String::new(), format!("handler {handler} failed in {hook}: {message}"))
        }
        Error::Storage(_) | Error::Io { .. } | Error::Corrupt { .. } => return Err(e),
        other => (String::new(), other.to_string()),
    })
}

/// The JSON form a new entity starts from: bookkeeping fields the store overwrites, and a
/// deal's initial status.
fn template<E: Entity>() -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(RawId::default().to_string()));
    m.insert("version".into(), Value::from(0));
    m.insert("created_at".into(), Value::String(Timestamp::default().to_string()));
    m.insert("updated_at".into(), Value::String(Timestamp::default().to_string()));
    if E::KIND == EntityKind::Deal {
        m.insert("status".into(), Value::String("in_progress".into()));
    }
    Value::Object(m)
}

/// Sets `value` at the dotted `path`, making objects on the way; a `null` custom value
/// removes the field.
fn set_path(v: &mut Value, path: &str, value: Value, custom: bool) {
    let mut cur = v;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut().expect("made an object");
        if parts.peek().is_none() {
            if custom && value.is_null() {
                obj.remove(part);
            } else {
                obj.insert(part.to_string(), value);
            }
            return;
        }
        cur = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

fn one_of(value: &str, names: &[&str]) -> std::result::Result<String, String> {
    let v = value.trim().to_lowercase();
    if names.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!("\"{value}\" is not one of: {}", names.join(", ")))
    }
}

/// A date as `2026-03-01` or `01.03.2026`.
pub(crate) fn parse_date(s: &str) -> std::result::Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%d.%m.%Y"))
        .map_err(|_| format!("expected a date like 2026-03-01 or 01.03.2026, got \"{s}\""))
}

/// An instant as RFC 3339, or `2026-03-01 09:30[:00]` in UTC.
pub(crate) fn parse_time(s: &str) -> std::result::Result<Timestamp, String> {
    if let Ok(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(Timestamp(t.and_utc().timestamp_millis()));
        }
    }
    Err(format!("expected a time like 2026-03-01T09:30:00Z or 2026-03-01 09:30 (UTC), got \"{s}\""))
}

fn mime_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xls") => "application/vnd.ms-excel",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}
