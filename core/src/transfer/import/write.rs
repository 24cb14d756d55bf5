//! The writing side: rows written batch by batch through the process engine, each whole
//! or not at all, deals with their history, attachments, and a failed row as its error.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use super::convert::{Plan, Prepared};
use super::read::Item;
use super::row::{RawRow, Row, RowSource};
use super::{Importer, Progress, Report, RowError};
use crate::id::{TypedId, UserId};
use crate::model::{Deal, DealStatus, Entity, EntityKind, EntityRef};
use crate::store::{Durability, Index, Reader, Store, WriteTxn};
use crate::{Error, Result};

impl Importer<'_> {
    fn single_transaction(&self) -> bool {
        self.opts.atomic || self.opts.dry_run
    }

    /// Writes the rows the reader sends, batch by batch.
    pub(super) fn write_all<E: Entity + PartialEq>(
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
                if !self.single_transaction() && batch.full(self.opts) {
                    // A batch ended by its time commits without waiting for the disk until
                    // `batch_rows` rows are owed one; the next durable commit (the import's
                    // or anyone's) makes them durable too.
                    self.unsynced += batch.rows;
                    let durable = self.unsynced >= self.opts.batch_rows;
                    if durable {
                        self.unsynced = 0;
                    } else {
                        batch.tx.set_durability(Durability::Deferred);
                    }
                    let changed = self.open_changes();
                    batch = batch.commit_and_renew(&mut self.report, changed)?;
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
        let changed = self.open_changes();
        batch.commit(&mut self.report, changed)?;
        self.count_open_batch();
        Ok(())
    }

    /// Whether the open batch created or changed something (a batch of unchanged rows,
    /// committed, writes nothing).
    fn open_changes(&self) -> bool {
        self.open[0] + self.open[1] > 0
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
            tx.attach(owner, &name, crate::model::mime_of_name(&name), &content)
                .map_err(|e| attachment_error(e.to_string()))?;
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

fn history_field(message: String) -> Error {
    crate::model::FieldError::new(EntityKind::Deal, "history", message).into()
}

/// The write transaction of the current batch.
struct Batch<'s> {
    store: &'s Store,
    actor: Option<UserId>,
    tx: WriteTxn<'s>,
    rows: usize,
    /// When the batch got the writer.
    began: Instant,
}

impl<'s> Batch<'s> {
    fn new(store: &'s Store, actor: Option<UserId>) -> Result<Batch<'s>> {
        let tx = store.write(actor)?;
        Ok(Batch { store, actor, tx, rows: 0, began: Instant::now() })
    }

    /// Whether the batch has its rows, or has been writing for its time while another
    /// writer waits.
    fn full(&self, opts: &super::ImportOptions) -> bool {
        self.rows >= opts.batch_rows
            || opts.batch_time.is_some_and(|t| self.began.elapsed() >= t && self.store.writers_waiting())
    }

    /// Commits the batch; the report says written once a batch that `changed` something
    /// is committed.
    fn commit(self, report: &mut Report, changed: bool) -> Result<()> {
        self.tx.commit()?;
        report.written |= changed;
        Ok(())
    }

    fn commit_and_renew(self, report: &mut Report, changed: bool) -> Result<Batch<'s>> {
        let (store, actor) = (self.store, self.actor);
        self.commit(report, changed)?;
        Batch::new(store, actor)
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
