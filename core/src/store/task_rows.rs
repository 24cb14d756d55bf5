//! The scan layout of tasks: every task as one narrow row — what the reports over every
//! task read of it (the managers report's tasks done and overdue) — in its own table, kept
//! by every commit that writes tasks, so that those reports read one compact row per task
//! instead of the full record (title, description, stage, required, who finished it and the
//! audit fields stay out).
//!
//! A row is a function of the task's record alone ([`TaskRow::encode`]). A commit rewrites
//! the rows of the tasks among its pending changes and deletes those of the tasks it
//! deletes; a write transaction's own scans see its pending writes. `crmkit check` compares
//! every row with the records. Written by hand like the deal rows (the pieces are shared in
//! `rows.rs`); layout (integers little-endian, an optional value a 0/1 byte then the
//! value):
//!
//! ```text
//! version (1) · created_at (i64 ms) · executor (16) · due? (i64 ms) · status (1)
//! · deal? (16) · finished_at? (i64 ms)
//! ```

use super::kv::KvError;
use super::rows::{self, put_opt_id, put_opt_time, Cursor, PendingRows, Span, Texts};
use super::tables::TASK_ROWS;
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, RawId, TaskId, UserId};
use crate::model::{EntityKind, Task, TaskStatus};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::Result;

/// The row format this build writes.
const VERSION: u8 = 1;

const STATUSES: [TaskStatus; 3] = [TaskStatus::Open, TaskStatus::Done, TaskStatus::Cancelled];

/// A task as the scan layout keeps it: the fields the reports over every task read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskRow {
    pub id: TaskId,
    pub created_at: Timestamp,
    /// Who has to do it.
    pub executor: UserId,
    pub due: Option<Timestamp>,
    pub status: TaskStatus,
    /// The deal it belongs to.
    pub deal: Option<DealId>,
    /// When it was done or cancelled.
    pub finished_at: Option<Timestamp>,
}

impl TaskRow {
    /// The row of `t`, encoded.
    pub fn encode(t: &Task) -> Vec<u8> {
        let mut w = Vec::with_capacity(62);
        w.push(VERSION);
        w.extend_from_slice(&t.created_at.0.to_le_bytes());
        w.extend_from_slice(&t.executor.0.to_bytes());
        put_opt_time(&mut w, t.due);
        w.push(STATUSES.iter().position(|s| *s == t.status).expect("listed") as u8);
        put_opt_id(&mut w, t.deal.map(|d| d.0));
        put_opt_time(&mut w, t.finished_at);
        w
    }

    /// The stored row of task `id`, decoded.
    pub(crate) fn decode(id: TaskId, bytes: &[u8]) -> std::result::Result<TaskRow, KvError> {
        // No texts in this row.
        let mut texts = Texts::default();
        let mut r = Cursor::new(bytes, "task", id.0, &mut texts);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown row format {version}")));
        }
        let created_at = Timestamp(r.i64()?);
        let executor = UserId(r.id()?);
        let due = r.opt_i64()?.map(Timestamp);
        let status = r.u8()?;
        let status = *STATUSES.get(usize::from(status)).ok_or_else(|| r.corrupt(format!("status {status}")))?;
        let deal = r.opt_id()?.map(DealId);
        let finished_at = r.opt_i64()?.map(Timestamp);
        r.end("finish instant")?;
        Ok(TaskRow { id, created_at, executor, due, status, deal, finished_at })
    }
}

/// Visits every task row in `span` that `r` sees, in id order, with `pending` rows in place of
/// the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&TaskRow) -> bool,
) -> Result<()> {
    rows::scan(r, TASK_ROWS, "task", span, pending, &mut |id, bytes| Ok(f(&TaskRow::decode(TaskId(id), bytes)?)))
}

impl WriteTxn<'_> {
    /// The rows of the tasks the pending changes write, as they stand in the transaction.
    pub(super) fn pending_task_rows(&self) -> Result<PendingRows> {
        self.pending_rows_of(TaskRow::encode)
    }
}

/// Every task's row as its record makes it, in id order.
fn expected_rows(r: &impl Reader, f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>) -> Result<()> {
    rows::each_record(r, &mut |t: &Task| f(t.id.0, TaskRow::encode(t)))
}

impl Store {
    /// Checks every stored task row against the row the task's record makes; returns one
    /// line per difference, naming the task.
    pub fn verify_task_rows(&self) -> Result<Vec<String>> {
        self.verify_task_rows_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_task_rows`], reporting its stage `"task rows"` to `progress`: the
    /// tasks read.
    pub fn verify_task_rows_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Task)?;
        let mut meter = Meter::start(progress, "task rows", total);
        let misread = |id: RawId, got: &[u8]| match TaskRow::decode(TaskId(id), got) {
            Ok(_) => "differs from what its record makes".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let problems = rows::verify(&r, TASK_ROWS, "task", &mut meter, &mut |f| expected_rows(&r, f), &misread)?;
        meter.finish();
        Ok(problems)
    }
}
