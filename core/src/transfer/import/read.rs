//! The reading side: the CSV header against our columns, and the thread that reads rows,
//! converts them against a snapshot and hands them to the writer in file order.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;

use serde_json::{Map, Value};

use super::convert::{Converter, Plan};
use super::row::{field_err, kind_of, RawRow, Row, RowSource};
use super::{ImportOptions, Importer, RowError};
use crate::model::Entity;
use crate::store::Store;
use crate::transfer::columns::{Column, KEY};
use crate::transfer::csv::{CsvError, CsvReader, Record};
use crate::{Error, Result};

/// What the reading thread hands the writing one, in file order.
pub(super) enum Item<E> {
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

/// Rows per message between the threads.
const CHUNK: usize = 1024;

/// Where rows come from: a CSV reader past its header (with our columns' field numbers),
/// or JSONL lines.
pub(super) enum Source<R> {
    Csv(CsvReader<R>, Vec<Option<usize>>),
    Jsonl(R),
}

impl Importer<'_> {
    /// Reads the CSV header: the field number of each of our columns. `None` when the
    /// header is refused (the reason is in the report).
    pub(super) fn header<R: BufRead>(&mut self, reader: &mut CsvReader<R>) -> Result<Option<Vec<Option<usize>>>> {
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
}

/// The reading thread: reads rows, converts them against a snapshot (taken again every
/// batch, so later rows see what earlier batches wrote), and sends them in file order.
pub(super) fn read_rows<E: Entity, R: BufRead>(
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
                    Err(e) => return out.finish(Item::Fatal(Error::Io { path: PathBuf::from("input"), error: e })),
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
        CsvError::Io(e) => Err(Error::Io { path: PathBuf::from("input"), error: e }),
        CsvError::UnterminatedQuote { line } | CsvError::AfterQuote { line, .. } => {
            Ok(RowError { row: 0, line, key: None, field: String::new(), message: e.to_string() })
        }
    }
}
