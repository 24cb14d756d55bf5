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

use std::collections::BTreeMap;
use std::ops::Bound;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::codec::{decode, encode};
use super::kv::KvError;
use super::tables::{entity_table, DEAL_ROWS};
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
    pub title: String,
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
            title: String::new(),
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
        let mut r = Cursor { bytes, at: 0, deal: id };
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown row format {version}")));
        }
        self.id = id;
        r.str_into(&mut self.kind)?;
        r.str_into(&mut self.title)?;
        self.partner = PartnerId(r.id()?);
        r.opt_str_into(&mut self.stage)?;
        self.status = r.status()?;
        self.manager = UserId(r.id()?);
        let amount = Decimal::deserialize(r.take(16)?.try_into().expect("16 bytes"));
        let code = r.take(3)?;
        let currency = match self.amount.currency.as_str().as_bytes() == code {
            true => self.amount.currency,
            false => std::str::from_utf8(code)
                .map_err(|_| r.corrupt("currency is not text".into()))?
                .parse::<Currency>()
                .map_err(|e| r.corrupt(format!("currency: {e}")))?,
        };
        self.amount = Money { amount, currency };
        self.expected_close = match r.flag()? {
            true => {
                let days = i32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
                Some(NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| r.corrupt("expected close".into()))?)
            }
            false => None,
        };
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
            s.from_status = if r.flag()? { Some(r.status()?) } else { None };
            s.to_status = r.status()?;
            s.dwell_ms = r.opt_i64()?;
            r.opt_str_into(&mut s.note)?;
            s.imported = r.flag()?;
        }
        if r.at != bytes.len() {
            return Err(r.corrupt(format!("{} bytes after the last step", bytes.len() - r.at)));
        }
        Ok(())
    }
}

fn status_byte(s: DealStatus) -> u8 {
    DealStatus::ALL.iter().position(|x| *x == s).expect("listed") as u8
}

fn put_len(w: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            w.push(b);
            return;
        }
        w.push(b | 0x80);
    }
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

fn put_opt_str(w: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            w.push(1);
            put_str(w, s);
        }
        None => w.push(0),
    }
}

fn put_opt_id(w: &mut Vec<u8>, id: Option<RawId>) {
    match id {
        Some(id) => {
            w.push(1);
            w.extend_from_slice(&id.to_bytes());
        }
        None => w.push(0),
    }
}

fn put_opt_time(w: &mut Vec<u8>, t: Option<Timestamp>) {
    match t {
        Some(t) => {
            w.push(1);
            w.extend_from_slice(&t.0.to_le_bytes());
        }
        None => w.push(0),
    }
}

/// Reads a row, naming the deal in every error.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    deal: DealId,
}

impl<'a> Cursor<'a> {
    #[cold]
    fn corrupt(&self, message: String) -> KvError {
        KvError::Corrupt {
            what: format!("scan row of deal {}", self.deal),
            message: format!("{message} at byte {}", self.at),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], KvError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| self.corrupt("cut short".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    #[inline]
    fn u8(&mut self) -> std::result::Result<u8, KvError> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    fn flag(&mut self) -> std::result::Result<bool, KvError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.corrupt(format!("flag {b}"))),
        }
    }

    #[inline]
    fn i64(&mut self) -> std::result::Result<i64, KvError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    #[inline]
    fn opt_i64(&mut self) -> std::result::Result<Option<i64>, KvError> {
        Ok(if self.flag()? { Some(self.i64()?) } else { None })
    }

    #[inline]
    fn id(&mut self) -> std::result::Result<RawId, KvError> {
        let b = self.take(16)?;
        RawId::from_bytes(b).ok_or_else(|| self.corrupt("id".into()))
    }

    #[inline]
    fn opt_id(&mut self) -> std::result::Result<Option<RawId>, KvError> {
        Ok(if self.flag()? { Some(self.id()?) } else { None })
    }

    #[inline]
    fn status(&mut self) -> std::result::Result<DealStatus, KvError> {
        let b = self.u8()?;
        DealStatus::ALL.get(usize::from(b)).copied().ok_or_else(|| self.corrupt(format!("status {b}")))
    }

    #[inline]
    fn len(&mut self) -> std::result::Result<usize, KvError> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.corrupt("length too long".into()))
    }

    #[inline]
    fn str_into(&mut self, out: &mut String) -> std::result::Result<(), KvError> {
        let n = self.len()?;
        let b = self.take(n)?;
        // Kinds, stages and reasons repeat from row to row: text equal to what the kept row
        // holds is valid already and stays.
        if out.as_bytes() != b {
            let s = std::str::from_utf8(b).map_err(|_| self.corrupt("text is not UTF-8".into()))?;
            out.clear();
            out.push_str(s);
        }
        Ok(())
    }

    #[inline]
    fn opt_str_into(&mut self, out: &mut Option<String>) -> std::result::Result<(), KvError> {
        if !self.flag()? {
            *out = None;
            return Ok(());
        }
        match out {
            Some(s) => self.str_into(s),
            None => {
                let mut s = String::new();
                self.str_into(&mut s)?;
                *out = Some(s);
                Ok(())
            }
        }
    }
}

/// The pending rows of a write transaction: per deal it writes, the row it has now (`None`:
/// deleted).
pub(super) type PendingRows = BTreeMap<[u8; 16], Option<Vec<u8>>>;

/// Visits every row `r` sees, in deal id order, with `pending` rows in place of the stored
/// ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DealRow) -> bool,
) -> Result<()> {
    let mut row = DealRow::default();
    let mut pending = pending.unwrap_or_default().into_iter().peekable();
    let mut err: Option<crate::Error> = None;
    let mut go = true;
    let mut visit = |key: &[u8], bytes: &[u8], row: &mut DealRow, err: &mut Option<crate::Error>| -> bool {
        let Some(id) = RawId::from_bytes(key) else {
            *err = Some(crate::Error::Corrupt {
                what: format!("scan row key {key:02x?}"),
                message: "not a deal id".into(),
            });
            return false;
        };
        match row.decode_into(DealId(id), bytes) {
            Ok(()) => f(row),
            Err(e) => {
                *err = Some(e.into());
                false
            }
        }
    };
    r.kv_scan(DEAL_ROWS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
        while let Some((pk, _)) = pending.peek() {
            if pk.as_slice() > k {
                break;
            }
            let (pk, pv) = pending.next().expect("peeked");
            if pk.as_slice() == k {
                // The pending row replaces the stored one (or deletes it).
                return match pv {
                    Some(v) => {
                        go = visit(&pk, &v, &mut row, &mut err);
                        go
                    }
                    None => true,
                };
            }
            if let Some(v) = pv {
                if !visit(&pk, &v, &mut row, &mut err) {
                    go = false;
                    return false;
                }
            }
        }
        go = visit(k, v, &mut row, &mut err);
        go
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if go {
        for (pk, pv) in pending {
            if let Some(v) = pv {
                if !visit(&pk, &v, &mut row, &mut err) {
                    break;
                }
            }
        }
    }
    err.map_or(Ok(()), Err)
}

impl WriteTxn<'_> {
    /// The rows of the deals the pending changes write, as they stand in the transaction.
    pub(super) fn pending_rows(&self) -> Result<PendingRows> {
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
        for (k, row) in self.pending_rows()? {
            match row {
                Some(v) => self.changes.put(DEAL_ROWS, k.to_vec(), v),
                None => self.changes.delete(DEAL_ROWS, k.to_vec()),
            }
        }
        Ok(())
    }

    /// Replaces every stored row with the one the records make (the migration that
    /// introduces the layout).
    pub(super) fn rebuild_rows(&mut self) -> Result<()> {
        let mut keys = Vec::new();
        self.kv_scan(DEAL_ROWS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, _| {
            keys.push(k.to_vec());
            true
        })?;
        for k in keys {
            self.changes.delete(DEAL_ROWS, k);
        }
        let mut rows = Vec::new();
        expected_rows(self, &mut |id, row| {
            rows.push((id, row));
            Ok(())
        })?;
        for (id, row) in rows {
            self.changes.put(DEAL_ROWS, id.0.to_bytes().to_vec(), row);
        }
        Ok(())
    }
}

/// Every deal's row as its record and history make it, in id order.
fn expected_rows(r: &impl Reader, f: &mut dyn FnMut(DealId, Vec<u8>) -> Result<()>) -> Result<()> {
    let mut after = None;
    loop {
        let page: Vec<Deal> = r.list(after, 1024)?;
        for d in &page {
            f(d.id, DealRow::encode(d, &r.stage_history(d.id)?))?;
        }
        match page.last() {
            Some(d) if page.len() == 1024 => after = Some(d.id),
            _ => return Ok(()),
        }
    }
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
        let mut problems = Vec::new();
        // Stored keys and deal ids both come in id order: walked side by side.
        let mut keys: Vec<[u8; 16]> = Vec::new();
        r.kv_scan(DEAL_ROWS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, _| {
            keys.push(k.try_into().unwrap_or([0xff; 16]));
            true
        })?;
        let mut next = keys.iter().peekable();
        let extra = |k: &[u8; 16], problems: &mut Vec<String>| {
            let name = RawId::from_bytes(k).map_or_else(|| format!("{k:02x?}"), |id| DealId(id).to_string());
            problems.push(format!("scan row of deal {name}: stored, but there is no such deal"));
        };
        expected_rows(&r, &mut |id, want| {
            meter.add(1);
            let key = id.0.to_bytes();
            while let Some(k) = next.next_if(|k| **k < key) {
                extra(k, &mut problems);
            }
            next.next_if(|k| **k == key);
            match r.kv_get(DEAL_ROWS, &key)? {
                Some(got) if got == want => {}
                Some(got) => {
                    let mut row = DealRow::default();
                    let what = match row.decode_into(id, &got) {
                        Ok(()) => "differs from what its record and stage history make".to_string(),
                        Err(e) => format!("cannot be read ({e})"),
                    };
                    problems.push(format!("scan row of deal {id}: {what}"));
                }
                None => problems.push(format!("scan row of deal {id}: missing")),
            }
            Ok(())
        })?;
        for k in next {
            extra(k, &mut problems);
        }
        meter.finish();
        Ok(problems)
    }
}
