//! The scan layout of interactions: every interaction as one narrow row — what the reports
//! over every interaction read of it (the managers report's activity counts) — in its own
//! table, kept by every commit that writes interactions, so that those reports read one
//! compact row per interaction instead of the full record (subject, body, direction,
//! duration, contacts, custom fields and the audit fields stay out).
//!
//! A row is a function of the interaction's record alone ([`InteractionRow::encode`]). A
//! commit rewrites the rows of the interactions among its pending changes and deletes those
//! of the interactions it deletes; a write transaction's own scans see its pending writes.
//! `crmkit check` compares every row with the records. Written by hand like the deal rows
//! (the pieces are shared in `rows.rs`); layout (integers little-endian, an optional value a
//! 0/1 byte then the value):
//!
//! ```text
//! version (1) · kind (1) · at (i64 ms) · partner (16) · deal? (16) · author? (16)
//! ```

use super::kv::KvError;
use super::rows::{self, put_opt_id, Cursor, PendingRows, Span, Texts};
use super::tables::INTERACTION_ROWS;
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, InteractionId, PartnerId, RawId, UserId};
use crate::model::{EntityKind, Interaction, InteractionKind};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::Result;

/// The row format this build writes.
const VERSION: u8 = 1;

const KINDS: [InteractionKind; 4] =
    [InteractionKind::Email, InteractionKind::Call, InteractionKind::Meeting, InteractionKind::Note];

/// An interaction as the scan layout keeps it: the fields the reports over every
/// interaction read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InteractionRow {
    pub id: InteractionId,
    pub kind: InteractionKind,
    /// When it happened (or is planned, for a meeting).
    pub at: Timestamp,
    pub partner: PartnerId,
    pub deal: Option<DealId>,
    /// The employee who recorded or held it.
    pub author: Option<UserId>,
}

impl InteractionRow {
    /// The row of `i`, encoded.
    pub fn encode(i: &Interaction) -> Vec<u8> {
        let mut w = Vec::with_capacity(60);
        w.push(VERSION);
        w.push(KINDS.iter().position(|k| *k == i.kind).expect("listed") as u8);
        w.extend_from_slice(&i.at.0.to_le_bytes());
        w.extend_from_slice(&i.partner.0.to_bytes());
        put_opt_id(&mut w, i.deal.map(|d| d.0));
        put_opt_id(&mut w, i.author.map(|u| u.0));
        w
    }

    /// The stored row of interaction `id`, decoded.
    pub(crate) fn decode(id: InteractionId, bytes: &[u8]) -> std::result::Result<InteractionRow, KvError> {
        // No texts in this row.
        let mut texts = Texts::default();
        let mut r = Cursor::new(bytes, "interaction", id.0, &mut texts);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown row format {version}")));
        }
        let kind = r.u8()?;
        let kind = *KINDS.get(usize::from(kind)).ok_or_else(|| r.corrupt(format!("kind {kind}")))?;
        let at = Timestamp(r.i64()?);
        let partner = PartnerId(r.id()?);
        let deal = r.opt_id()?.map(DealId);
        let author = r.opt_id()?.map(UserId);
        r.end("author")?;
        Ok(InteractionRow { id, kind, at, partner, deal, author })
    }
}

/// Visits every interaction row in `span` that `r` sees, in id order, with `pending` rows in
/// place of the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&InteractionRow) -> bool,
) -> Result<()> {
    rows::scan(r, INTERACTION_ROWS, "interaction", span, pending, &mut |id, bytes| {
        Ok(f(&InteractionRow::decode(InteractionId(id), bytes)?))
    })
}

impl WriteTxn<'_> {
    /// The rows of the interactions the pending changes write, as they stand in the
    /// transaction.
    pub(super) fn pending_interaction_rows(&self) -> Result<PendingRows> {
        self.pending_rows_of(InteractionRow::encode)
    }
}

/// Every interaction's row as its record makes it, in id order.
fn expected_rows(r: &impl Reader, f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>) -> Result<()> {
    rows::each_record(r, &mut |i: &Interaction| f(i.id.0, InteractionRow::encode(i)))
}

impl Store {
    /// Checks every stored interaction row against the row the interaction's record makes;
    /// returns one line per difference, naming the interaction.
    pub fn verify_interaction_rows(&self) -> Result<Vec<String>> {
        self.verify_interaction_rows_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_interaction_rows`], reporting its stage `"interaction rows"` to
    /// `progress`: the interactions read.
    pub fn verify_interaction_rows_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Interaction)?;
        let mut meter = Meter::start(progress, "interaction rows", total);
        let misread = |id: RawId, got: &[u8]| match InteractionRow::decode(InteractionId(id), got) {
            Ok(_) => "differs from what its record makes".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let problems =
            rows::verify(&r, INTERACTION_ROWS, "interaction", &mut meter, &mut |f| expected_rows(&r, f), &misread)?;
        meter.finish();
        Ok(problems)
    }
}
