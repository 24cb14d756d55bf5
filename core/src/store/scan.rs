//! The scan layout: every deal as one narrow row — the fields reports group and sum by, and
//! its whole stage history — in its own table, kept by every commit that writes the deal or
//! a step of its history, so that a report over every deal reads one compact row per deal
//! instead of the full record and a separate run of history steps.
//!
//! A row is a function of the deal's record and its history alone ([`DealRow::encode`]).
//! A commit rewrites the rows of the deals it writes (found among its pending changes, like
//! the funnel totals) and deletes those of the deals it deletes; a write transaction's own
//! scans see its pending writes. `crmkit check` compares every row with the records.
//!
//! The row is written by hand, not through the record codec: decoding fills a row the
//! caller keeps, reusing its strings, so a scan over a million deals allocates next to
//! nothing. Layout (integers little-endian, a string is a LEB128 length and UTF-8 bytes, an
//! optional value a 0/1 byte then the value):
//!
//! ```text
//! version (1) · kind · title · partner (16) · stage? · status (1) · manager (16)
//! · amount (Decimal, 16) · currency (3) · expected_close? (i32 days from 0001-01-01)
//! · probability? (1) · probability_manual (1) · source? · loss_reason? · competitor? (16)
//! · created_at (i64 ms) · closed_at? · stage_entered_at? · custom (LEB128 length, then
//! the custom fields as a record; length 0: none) · steps (LEB128 count), each:
//! step (u32) · at (i64) · actor? (16) · how (1) · from_stage? · to_stage? · from_status? (1)
//! · to_status (1) · dwell_ms? (i64) · note? · imported (1)
//! ```

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::codec::{decode, encode};
use super::kv::KvError;
use super::rows::{self, put_len, put_opt_id, put_opt_str, put_opt_time, put_str, Cursor, PendingRows, Span, Texts};
use super::tables::{
    entity_table, DEAL_DOCUMENTS, DEAL_HEADS, DEAL_ROWS, DOCUMENT_ROWS, INTERACTION_ROWS, SHIPMENT_ROWS, TASK_ROWS,
};
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, PartnerId, RawId, UserId};
use crate::model::{CustomFields, Deal, DealStatus, EntityKind, How, StageChange};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::values::{Currency, Money};
use crate::Result;

/// The row format this build writes.
const VERSION: u8 = 1;

/// A deal as the scan layout keeps it: the fields reports read, and its stage history.
/// Decoding into a kept row reuses its strings and steps.
#[derive(Clone, Debug, PartialEq)]
pub struct DealRow {
    pub id: DealId,
    pub kind: String,
    /// The title, still as stored (reports seldom show it, and every title differs, so
    /// checking each one's text costs a scan more than any other field): see
    /// [`DealRow::title`].
    title: Vec<u8>,
    pub partner: PartnerId,
    pub stage: Option<String>,
    pub status: DealStatus,
    pub manager: UserId,
    pub amount: Money,
    pub expected_close: Option<NaiveDate>,
    pub probability: Option<u8>,
    pub probability_manual: bool,
    pub source: Option<String>,
    pub loss_reason: Option<String>,
    pub competitor: Option<PartnerId>,
    pub created_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub stage_entered_at: Option<Timestamp>,
    /// The custom fields, still encoded (most reports never look at them): see
    /// [`DealRow::custom`].
    custom: Vec<u8>,
    /// The stage history, step by step.
    pub steps: Vec<StageChange>,
}

impl Default for DealRow {
    fn default() -> DealRow {
        DealRow {
            id: DealId(RawId::from_bytes(&[0; 16]).expect("16 bytes")),
            kind: String::new(),
            title: Vec::new(),
            partner: PartnerId(RawId::from_bytes(&[0; 16]).expect("16 bytes")),
            stage: None,
            status: DealStatus::InProgress,
            manager: UserId(RawId::from_bytes(&[0; 16]).expect("16 bytes")),
            amount: Money { amount: Decimal::ZERO, currency: Currency::RUB },
            expected_close: None,
            probability: None,
            probability_manual: false,
            source: None,
            loss_reason: None,
            competitor: None,
            created_at: Timestamp(0),
            closed_at: None,
            stage_entered_at: None,
            custom: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl DealRow {
    /// The deal's title.
    pub fn title(&self) -> Result<&str> {
        std::str::from_utf8(&self.title).map_err(|_| crate::Error::Corrupt {
            what: format!("scan row of deal {}", self.id),
            message: "the title is not UTF-8".to_string(),
        })
    }

    /// The deal's custom fields.
    pub fn custom(&self) -> Result<CustomFields> {
        if self.custom.is_empty() {
            return Ok(CustomFields::new());
        }
        decode(&self.custom, || format!("custom fields of deal {}", self.id))
    }

    /// The row of `deal` with its history `steps`, encoded.
    pub fn encode(deal: &Deal, steps: &[StageChange]) -> Vec<u8> {
        let mut w = Vec::with_capacity(160 + steps.len() * 48);
        w.push(VERSION);
        put_str(&mut w, &deal.kind);
        put_str(&mut w, &deal.title);
        w.extend_from_slice(&deal.partner.0.to_bytes());
        put_opt_str(&mut w, deal.stage.as_deref());
        w.push(status_byte(deal.status));
        w.extend_from_slice(&deal.manager.0.to_bytes());
        w.extend_from_slice(&deal.amount.amount.serialize());
        w.extend_from_slice(deal.amount.currency.as_str().as_bytes());
        match deal.expected_close {
            Some(d) => {
                w.push(1);
                w.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
            }
            None => w.push(0),
        }
        match deal.probability {
            Some(p) => w.extend_from_slice(&[1, p]),
            None => w.push(0),
        }
        w.push(u8::from(deal.probability_manual));
        put_opt_str(&mut w, deal.source.as_deref());
        put_opt_str(&mut w, deal.loss_reason.as_deref());
        put_opt_id(&mut w, deal.competitor.map(|p| p.0));
        w.extend_from_slice(&deal.created_at.0.to_le_bytes());
        put_opt_time(&mut w, deal.closed_at);
        put_opt_time(&mut w, deal.stage_entered_at);
        if deal.custom.is_empty() {
            put_len(&mut w, 0);
        } else {
            let custom = encode(&deal.custom);
            put_len(&mut w, custom.len());
            w.extend_from_slice(&custom);
        }
        put_len(&mut w, steps.len());
        for s in steps {
            w.extend_from_slice(&s.step.to_le_bytes());
            w.extend_from_slice(&s.at.0.to_le_bytes());
            put_opt_id(&mut w, s.actor.map(|a| a.0));
            w.push(How::ALL.iter().position(|h| *h == s.how).expect("listed") as u8);
            put_opt_str(&mut w, s.from_stage.as_deref());
            put_opt_str(&mut w, s.to_stage.as_deref());
            match s.from_status {
                Some(st) => w.extend_from_slice(&[1, status_byte(st)]),
                None => w.push(0),
            }
            w.push(status_byte(s.to_status));
            match s.dwell_ms {
                Some(d) => {
                    w.push(1);
                    w.extend_from_slice(&d.to_le_bytes());
                }
                None => w.push(0),
            }
            put_opt_str(&mut w, s.note.as_deref());
            w.push(u8::from(s.imported));
        }
        w
    }

    /// Fills the row from the stored row of deal `id`, reusing its strings and steps.
    pub(crate) fn decode_into(&mut self, id: DealId, bytes: &[u8]) -> std::result::Result<(), KvError> {
        self.decode_with(id, bytes, &mut Texts::default())
    }

    /// [`DealRow::decode_into`] within a scan that found `texts` valid.
    pub(crate) fn decode_with(
        &mut self,
        id: DealId,
        bytes: &[u8],
        texts: &mut Texts,
    ) -> std::result::Result<(), KvError> {
        let mut r = Cursor::new(bytes, "deal", id.0, texts);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown row format {version}")));
        }
        self.id = id;
        r.str_into(&mut self.kind)?;
        let title = r.len()?;
        self.title.clear();
        self.title.extend_from_slice(r.take(title)?);
        self.partner = PartnerId(r.id()?);
        r.opt_str_into(&mut self.stage)?;
        self.status = status(&mut r)?;
        self.manager = UserId(r.id()?);
        let amount = r.decimal()?;
        self.amount = Money { amount, currency: r.currency(self.amount.currency)? };
        self.expected_close = if r.flag()? { Some(r.date("expected close")?) } else { None };
        self.probability = if r.flag()? { Some(r.u8()?) } else { None };
        self.probability_manual = r.flag()?;
        r.opt_str_into(&mut self.source)?;
        r.opt_str_into(&mut self.loss_reason)?;
        self.competitor = r.opt_id()?.map(PartnerId);
        self.created_at = Timestamp(r.i64()?);
        self.closed_at = r.opt_i64()?.map(Timestamp);
        self.stage_entered_at = r.opt_i64()?.map(Timestamp);
        let custom = r.len()?;
        self.custom.clear();
        self.custom.extend_from_slice(r.take(custom)?);
        let n = r.len()?;
        self.steps.truncate(n);
        for i in 0..n {
            if i == self.steps.len() {
                self.steps.push(StageChange {
                    deal: id,
                    step: 0,
                    at: Timestamp(0),
                    actor: None,
                    how: How::Create,
                    from_stage: None,
                    to_stage: None,
                    from_status: None,
                    to_status: DealStatus::InProgress,
                    dwell_ms: None,
                    note: None,
                    imported: false,
                });
            }
            let s = &mut self.steps[i];
            s.deal = id;
            s.step = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
            s.at = Timestamp(r.i64()?);
            s.actor = r.opt_id()?.map(UserId);
            let how = r.u8()?;
            s.how = *How::ALL.get(usize::from(how)).ok_or_else(|| r.corrupt(format!("step how {how}")))?;
            r.opt_str_into(&mut s.from_stage)?;
            r.opt_str_into(&mut s.to_stage)?;
            s.from_status = if r.flag()? { Some(status(&mut r)?) } else { None };
            s.to_status = status(&mut r)?;
            s.dwell_ms = r.opt_i64()?;
            r.opt_str_into(&mut s.note)?;
            s.imported = r.flag()?;
        }
        r.end("last step")
    }
}

pub(super) fn status_byte(s: DealStatus) -> u8 {
    DealStatus::ALL.iter().position(|x| *x == s).expect("listed") as u8
}

pub(super) fn status(r: &mut Cursor<'_>) -> std::result::Result<DealStatus, KvError> {
    let b = r.u8()?;
    DealStatus::ALL.get(usize::from(b)).copied().ok_or_else(|| r.corrupt(format!("status {b}")))
}

/// Visits every row in `span` that `r` sees, in deal id order, with `pending` rows in place of
/// the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DealRow) -> bool,
) -> Result<()> {
    let mut row = DealRow::default();
    let mut texts = Texts::default();
    rows::scan(r, DEAL_ROWS, "deal", span, pending, &mut |id, bytes| {
        row.decode_with(DealId(id), bytes, &mut texts)?;
        Ok(f(&row))
    })
}

impl WriteTxn<'_> {
    /// The rows of the deals the pending changes write, as they stand in the transaction.
    pub(super) fn pending_deal_rows(&self) -> Result<PendingRows> {
        let mut out = PendingRows::new();
        let deal_table = entity_table(EntityKind::Deal);
        for id in self.touched_deals() {
            let id = DealId(id);
            let row = match self.get_shared::<Deal>(id)? {
                Some(deal) => {
                    let in_base = self.kv.base().contains(deal_table, &id.0.to_bytes())?;
                    // A deal the committed state does not have has all its steps pending.
                    let history = if in_base { self.stage_history(id)? } else { self.pending_steps(id)? };
                    Some(DealRow::encode(&deal, &history))
                }
                None => None,
            };
            out.insert(id.0.to_bytes(), row);
        }
        Ok(out)
    }

    /// Writes the rows the pending changes make (called once, at commit).
    pub(super) fn write_row_changes(&mut self) -> Result<()> {
        let deals = self.pending_deal_rows()?;
        // The heads are derived from the deals' rows: encoded once.
        let (heads, latest) = super::deal_heads::heads_and_latest(&deals)?;
        super::deal_heads::raise_latest_step(self, latest)?;
        self.write_rows(DEAL_ROWS, deals);
        self.write_rows(DEAL_HEADS, heads);
        let documents = self.pending_document_rows()?;
        // The revenue rows are the completed shipments' among them: encoded once.
        let shipments = super::shipment_rows::revenue(&documents);
        self.write_rows(DOCUMENT_ROWS, documents);
        let deal_documents = self.pending_deal_documents()?;
        self.write_rows(DEAL_DOCUMENTS, deal_documents);
        let interactions = self.pending_interaction_rows()?;
        self.write_rows(INTERACTION_ROWS, interactions);
        let tasks = self.pending_task_rows()?;
        self.write_rows(TASK_ROWS, tasks);
        self.write_rows(SHIPMENT_ROWS, shipments);
        Ok(())
    }
}

/// Every deal's row as its record and history make it, in id order.
fn expected_rows(r: &impl Reader, f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>) -> Result<()> {
    rows::each_record(r, &mut |d: &Deal| f(d.id.0, DealRow::encode(d, &r.stage_history(d.id)?)))
}

impl Store {
    /// Checks every stored scan row against the row the deal's record and history make;
    /// returns one line per difference, naming the deal.
    pub fn verify_scan_rows(&self) -> Result<Vec<String>> {
        self.verify_scan_rows_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_scan_rows`], reporting its stage `"scan rows"` to `progress`: the
    /// deals read.
    pub fn verify_scan_rows_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Deal)?;
        let mut meter = Meter::start(progress, "scan rows", total);
        let misread = |id: RawId, got: &[u8]| match DealRow::default().decode_into(DealId(id), got) {
            Ok(()) => "differs from what its record and stage history make".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let problems = rows::verify(&r, DEAL_ROWS, "deal", &mut meter, &mut |f| expected_rows(&r, f), &misread)?;
        meter.finish();
        Ok(problems)
    }
}
