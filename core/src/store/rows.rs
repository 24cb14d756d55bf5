//! What the tables of the scan layout (`deal_rows`, `document_rows`, `interaction_rows`,
//! `task_rows`) share: the hand-written row encoding's pieces (a writer's helpers and a
//! [`Cursor`] naming the record in every error), the scan that merges a write transaction's
//! pending rows with the stored ones, the pending rows of a table whose row is a function of
//! one record, the commit's writes, the migrations' build in committed batches, and the
//! check that walks the stored rows and the records side by side.
//!
//! Each table is keyed by its record's id (16 bytes), so both walks go in id order.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::kv::{Durability, KvError};
use super::tables::{entity_table, Table};
use super::{Reader, Store, WriteTxn};
use crate::id::{RawId, TypedId};
use crate::model::Entity;
use crate::progress::Meter;
use crate::time::Timestamp;
use crate::Result;

/// The pending rows of a write transaction in one table: per record it writes, the row it
/// has now (`None`: deleted).
pub(super) type PendingRows = BTreeMap<[u8; 16], Option<Vec<u8>>>;

pub(super) fn put_len(w: &mut Vec<u8>, mut n: usize) {
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

pub(super) fn put_str(w: &mut Vec<u8>, s: &str) {
    put_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

pub(super) fn put_opt_str(w: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            w.push(1);
            put_str(w, s);
        }
        None => w.push(0),
    }
}

pub(super) fn put_opt_id(w: &mut Vec<u8>, id: Option<RawId>) {
    match id {
        Some(id) => {
            w.push(1);
            w.extend_from_slice(&id.to_bytes());
        }
        None => w.push(0),
    }
}

pub(super) fn put_opt_time(w: &mut Vec<u8>, t: Option<Timestamp>) {
    match t {
        Some(t) => {
            w.push(1);
            w.extend_from_slice(&t.0.to_le_bytes());
        }
        None => w.push(0),
    }
}

/// Texts a scan has found to be UTF-8 already. The same few texts come back row after row
/// (kinds, stages, reasons, the usual notes, items), and checking each again costs a scan
/// more than any other part of decoding; a text found here is copied without the check.
/// Direct-mapped by length and first and last bytes: a text whose slot another took is
/// checked again and takes the slot.
pub(crate) struct Texts {
    slots: Vec<String>,
}

/// The slots of a [`Texts`] (a power of two: a slot is the top bits of a hash).
const TEXT_SLOTS: usize = 512;

impl Default for Texts {
    /// No slots yet: a row without texts costs its scan nothing.
    fn default() -> Texts {
        Texts { slots: Vec::new() }
    }
}

impl Texts {
    #[inline]
    fn slot(b: &[u8]) -> usize {
        let n = b.len();
        let word = |at: &[u8]| at.iter().take(8).fold(0u64, |w, &x| (w << 8) | u64::from(x));
        let head = word(b);
        let tail = word(&b[n.saturating_sub(8)..]);
        let h = (head ^ tail.rotate_left(29) ^ (n as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - TEXT_SLOTS.trailing_zeros())) as usize
    }

    /// Copies `b` into `out` when it is UTF-8; `false` when it is not.
    #[inline]
    fn copy_into(&mut self, b: &[u8], out: &mut String) -> bool {
        if self.slots.is_empty() {
            self.slots.resize(TEXT_SLOTS, String::new());
        }
        let slot = &mut self.slots[Texts::slot(b)];
        if slot.as_bytes() != b {
            let Ok(s) = std::str::from_utf8(b) else { return false };
            slot.clear();
            slot.push_str(s);
        }
        out.clear();
        out.push_str(slot);
        true
    }
}

/// Reads a row, naming its record (`noun` and id) in every error.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
    pub(super) noun: &'static str,
    pub(super) id: RawId,
    /// The texts found valid by the scan this row is part of.
    texts: &'a mut Texts,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8], noun: &'static str, id: RawId, texts: &'a mut Texts) -> Cursor<'a> {
        Cursor { bytes, at: 0, noun, id, texts }
    }

    #[cold]
    pub(super) fn corrupt(&self, message: String) -> KvError {
        KvError::Corrupt {
            what: format!("scan row of {} {}", self.noun, self.id),
            message: format!("{message} at byte {}", self.at),
        }
    }

    #[inline]
    pub(super) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], KvError> {
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
    pub(super) fn u8(&mut self) -> std::result::Result<u8, KvError> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    pub(super) fn flag(&mut self) -> std::result::Result<bool, KvError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.corrupt(format!("flag {b}"))),
        }
    }

    #[inline]
    pub(super) fn i32(&mut self) -> std::result::Result<i32, KvError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    #[inline]
    pub(super) fn i64(&mut self) -> std::result::Result<i64, KvError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    #[inline]
    pub(super) fn opt_i64(&mut self) -> std::result::Result<Option<i64>, KvError> {
        Ok(if self.flag()? { Some(self.i64()?) } else { None })
    }

    #[inline]
    pub(super) fn id(&mut self) -> std::result::Result<RawId, KvError> {
        let b = self.take(16)?;
        RawId::from_bytes(b).ok_or_else(|| self.corrupt("id".into()))
    }

    #[inline]
    pub(super) fn opt_id(&mut self) -> std::result::Result<Option<RawId>, KvError> {
        Ok(if self.flag()? { Some(self.id()?) } else { None })
    }

    /// An amount as `rust_decimal`'s 16-byte form.
    #[inline]
    pub(super) fn decimal(&mut self) -> std::result::Result<rust_decimal::Decimal, KvError> {
        Ok(rust_decimal::Decimal::deserialize(self.take(16)?.try_into().expect("16 bytes")))
    }

    /// A currency as its 3-letter code; `kept` (the kept row's) when the code is its.
    #[inline]
    pub(super) fn currency(
        &mut self,
        kept: crate::values::Currency,
    ) -> std::result::Result<crate::values::Currency, KvError> {
        let code = self.take(3)?;
        if kept.as_str().as_bytes() == code {
            return Ok(kept);
        }
        let code = std::str::from_utf8(code).map_err(|_| self.corrupt("currency is not text".into()))?;
        code.parse().map_err(|e| self.corrupt(format!("currency: {e}")))
    }

    /// A date as days from 0001-01-01.
    #[inline]
    pub(super) fn date(&mut self, what: &str) -> std::result::Result<chrono::NaiveDate, KvError> {
        let days = self.i32()?;
        chrono::NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| self.corrupt(format!("{what} {days}")))
    }

    #[inline]
    pub(super) fn len(&mut self) -> std::result::Result<usize, KvError> {
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
    pub(super) fn str_into(&mut self, out: &mut String) -> std::result::Result<(), KvError> {
        let n = self.len()?;
        let b = self.take(n)?;
        // Kinds, stages and reasons repeat from row to row: text equal to what the kept row
        // holds is valid already and stays.
        if out.as_bytes() != b && !self.texts.copy_into(b, out) {
            return Err(self.corrupt("text is not UTF-8".into()));
        }
        Ok(())
    }

    #[inline]
    pub(super) fn opt_str_into(&mut self, out: &mut Option<String>) -> std::result::Result<(), KvError> {
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

    /// Fails unless the whole row was read.
    pub(super) fn end(&self, after: &str) -> std::result::Result<(), KvError> {
        if self.at != self.bytes.len() {
            return Err(self.corrupt(format!("{} bytes after the {after}", self.bytes.len() - self.at)));
        }
        Ok(())
    }
}

/// A part of a table of the scan layout by id: the rows whose ids are at least `from` and
/// below `to` (`None` leaves that side open). A report splits a scan into spans that
/// several threads read at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub from: Option<RawId>,
    pub to: Option<RawId>,
}

impl Span {
    /// Every row.
    pub const ALL: Span = Span { from: None, to: None };

    /// Whether the span holds `id`.
    pub fn contains(&self, id: RawId) -> bool {
        self.from.is_none_or(|f| id >= f) && self.to.is_none_or(|t| id < t)
    }
}

/// Visits every row of `table` in `span` that `r` sees, in id order, with `pending` rows in
/// place of the stored ones, until `visit` returns `false` or fails. `noun` names the
/// records.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    table: Table,
    noun: &str,
    span: Span,
    pending: Option<PendingRows>,
    visit: &mut dyn FnMut(RawId, &[u8]) -> Result<bool>,
) -> Result<()> {
    if let (Some(from), Some(to)) = (span.from, span.to) {
        if from >= to {
            return Ok(());
        }
    }
    let mut pending = pending.unwrap_or_default();
    if span != Span::ALL {
        pending.retain(|k, _| span.contains(RawId::from_bytes(k).unwrap_or_default()));
    }
    let mut pending = pending.into_iter().peekable();
    let mut err: Option<crate::Error> = None;
    let mut go = true;
    let mut one = |key: &[u8], bytes: &[u8], err: &mut Option<crate::Error>| -> bool {
        let Some(id) = RawId::from_bytes(key) else {
            *err = Some(crate::Error::Corrupt {
                what: format!("scan row key {key:02x?}"),
                message: format!("not a {noun} id"),
            });
            return false;
        };
        match visit(id, bytes) {
            Ok(go) => go,
            Err(e) => {
                *err = Some(e);
                false
            }
        }
    };
    let (from, to) = (span.from.map(RawId::to_bytes), span.to.map(RawId::to_bytes));
    let lower = from.as_ref().map_or(Bound::Unbounded, |b| Bound::Included(&b[..]));
    let upper = to.as_ref().map_or(Bound::Unbounded, |b| Bound::Excluded(&b[..]));
    r.kv_scan(table, lower, upper, false, &mut |k, v| {
        while let Some((pk, _)) = pending.peek() {
            if pk.as_slice() > k {
                break;
            }
            let (pk, pv) = pending.next().expect("peeked");
            if pk.as_slice() == k {
                // The pending row replaces the stored one (or deletes it).
                return match pv {
                    Some(v) => {
                        go = one(&pk, &v, &mut err);
                        go
                    }
                    None => true,
                };
            }
            if let Some(v) = pv {
                if !one(&pk, &v, &mut err) {
                    go = false;
                    return false;
                }
            }
        }
        go = one(k, v, &mut err);
        go
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if go {
        for (pk, pv) in pending {
            if let Some(v) = pv {
                if !one(&pk, &v, &mut err) {
                    break;
                }
            }
        }
    }
    err.map_or(Ok(()), Err)
}

/// Visits every record of kind `E` that `r` sees, in id order, a page at a time.
pub(super) fn each_record<E: Entity>(r: &impl Reader, f: &mut dyn FnMut(&E) -> Result<()>) -> Result<()> {
    let mut after = None;
    loop {
        let page: Vec<E> = r.list(after, 1024)?;
        for e in &page {
            f(e)?;
        }
        match page.last() {
            Some(e) if page.len() == 1024 => after = Some(e.id()),
            _ => return Ok(()),
        }
    }
}

/// How many rows a migration that builds a table on its own ([`build_in_batches`]) holds
/// before it commits them: a few megabytes of pending rows, and few commits.
pub(super) const BATCH: usize = 50_000;

/// The row a record makes in a table being built (`None`: the record has none there).
pub(super) type RowOf<'a, 's, E> = dyn Fn(&WriteTxn<'s>, &E) -> Result<Option<Vec<u8>>> + 'a;

/// Empties `table`, then writes into it the row `encode` makes of every record of kind `E`
/// that has one (given the transaction, to read what else the row holds), in id order — committing
/// every `batch` rows ([`BATCH`]) and going on in a new transaction, so that memory holds
/// one batch of rows whatever the number of records (the migration that introduces the
/// table, on a file of millions of records). The commits it makes are
/// deferred: durable with the caller's commit of the transaction it returns, which holds
/// the last rows. Nothing else writes meanwhile (the store is opening); if the run stops
/// half way, the schema version is still the old one and the next opening starts over,
/// emptying the table first.
pub(super) fn build_in_batches<'s, E: Entity>(
    store: &'s Store,
    mut tx: WriteTxn<'s>,
    table: Table,
    encode: &RowOf<'_, 's, E>,
    batch: usize,
) -> Result<WriteTxn<'s>> {
    tx = empty_in_batches(store, tx, table, batch)?;
    let page_size = batch.min(1024);
    let mut after: Option<E::Id> = None;
    loop {
        let page: Vec<E> = tx.list(after, page_size)?;
        for e in &page {
            if let Some(row) = encode(&tx, e)? {
                tx.changes.put(table, e.id().raw().to_bytes().to_vec(), row);
            }
        }
        match page.last() {
            Some(e) if page.len() == page_size => after = Some(e.id()),
            _ => return Ok(tx),
        }
        if tx.changes.tables[table.slot].len() >= batch {
            tx = next_batch(store, tx)?;
        }
    }
}

/// Commits `tx` (deferred) and opens the transaction the next batch goes into.
fn next_batch<'s>(store: &'s Store, mut tx: WriteTxn<'s>) -> Result<WriteTxn<'s>> {
    tx.set_durability(Durability::Deferred);
    tx.commit()?;
    store.write(None)
}

/// Deletes every row of `table` — rows left by an earlier run of a build that stopped (or
/// written by an older build since) — `batch` at a time.
fn empty_in_batches<'s>(store: &'s Store, mut tx: WriteTxn<'s>, table: Table, batch: usize) -> Result<WriteTxn<'s>> {
    loop {
        let mut keys = Vec::new();
        tx.kv_scan(table, Bound::Unbounded, Bound::Unbounded, false, &mut |k, _| {
            keys.push(k.to_vec());
            keys.len() < batch
        })?;
        let last = keys.len() < batch;
        for k in keys {
            tx.changes.delete(table, k);
        }
        if last {
            return Ok(tx);
        }
        tx = next_batch(store, tx)?;
    }
}

/// [`build_in_batches`] for a table whose rows are derived from those of another: empties
/// `table`, then reads the stored rows of `from` `batch` at a time, in id order, and writes
/// what `derive` makes of each batch (`None`: no row), committing between batches.
pub(super) fn derive_in_batches<'s>(
    store: &'s Store,
    tx: WriteTxn<'s>,
    from: Table,
    table: Table,
    derive: &dyn Fn(&PendingRows) -> Result<PendingRows>,
    batch: usize,
) -> Result<WriteTxn<'s>> {
    let mut tx = empty_in_batches(store, tx, table, batch)?;
    let mut after: Option<[u8; 16]> = None;
    loop {
        let mut source = PendingRows::new();
        let lower = after.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..]));
        tx.kv_scan(from, lower, Bound::Unbounded, false, &mut |k, v| {
            source.insert(k.try_into().unwrap_or([0xff; 16]), Some(v.to_vec()));
            source.len() < batch
        })?;
        let last = source.len() < batch;
        after = source.keys().next_back().copied();
        for (k, row) in derive(&source)? {
            if let Some(row) = row {
                tx.changes.put(table, k.to_vec(), row);
            }
        }
        if last {
            return Ok(tx);
        }
        tx = next_batch(store, tx)?;
    }
}

impl WriteTxn<'_> {
    /// The rows of the records of kind `E` the pending changes write, as `encode` makes
    /// them from the records as they stand in the transaction (`None`: deleted) — for a
    /// table whose row is a function of its record alone.
    pub(super) fn pending_rows_of<E: Entity>(&self, encode: fn(&E) -> Vec<u8>) -> Result<PendingRows> {
        self.pending_rows_by::<E>(&|e| Some(encode(e)))
    }

    /// [`WriteTxn::pending_rows_of`] for a table that holds rows of some records only:
    /// `row` answers `None` for a record that has none.
    pub(super) fn pending_rows_by<E: Entity>(&self, row: &dyn Fn(&E) -> Option<Vec<u8>>) -> Result<PendingRows> {
        let table = entity_table(E::KIND);
        let ids: Vec<RawId> = self.changes.tables[table.slot].keys().filter_map(|k| RawId::from_bytes(k)).collect();
        let mut out = PendingRows::new();
        for id in ids {
            let row = self.get_shared::<E>(E::Id::from_raw(id))?.and_then(|e| row(&e));
            out.insert(id.to_bytes(), row);
        }
        Ok(out)
    }

    /// Writes `pending` into `table` (at commit).
    pub(super) fn write_rows(&mut self, table: Table, pending: PendingRows) {
        for (k, row) in pending {
            match row {
                Some(v) => self.changes.put(table, k.to_vec(), v),
                None => self.changes.delete(table, k.to_vec()),
            }
        }
    }
}

/// Hands each record's id and expected row to its argument, in id order.
pub(super) type Expected<'a> = &'a mut dyn FnMut(&mut dyn FnMut(RawId, Vec<u8>) -> Result<()>) -> Result<()>;

/// Compares the rows stored in `table` with those the records make: `expected` hands every
/// record's id and row to its argument, in id order; `misread` says why a stored row that
/// differs does (it differs, or it cannot be read). Returns one line per problem, naming the
/// record as `noun` and id; `meter` counts the records.
pub(super) fn verify(
    r: &impl Reader,
    table: Table,
    noun: &str,
    meter: &mut Meter<'_>,
    expected: Expected<'_>,
    misread: &dyn Fn(RawId, &[u8]) -> String,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    // Stored keys and record ids both come in id order: walked side by side.
    let mut keys: Vec<[u8; 16]> = Vec::new();
    r.kv_scan(table, Bound::Unbounded, Bound::Unbounded, false, &mut |k, _| {
        keys.push(k.try_into().unwrap_or([0xff; 16]));
        true
    })?;
    let mut next = keys.iter().peekable();
    let extra = |k: &[u8; 16], problems: &mut Vec<String>| {
        let name = RawId::from_bytes(k).map_or_else(|| format!("{k:02x?}"), |id| id.to_string());
        problems.push(format!("scan row of {noun} {name}: stored, but there is no such {noun}"));
    };
    expected(&mut |id, want| {
        meter.add(1);
        let key = id.to_bytes();
        while let Some(k) = next.next_if(|k| **k < key) {
            extra(k, &mut problems);
        }
        next.next_if(|k| **k == key);
        match r.kv_get(table, &key)? {
            Some(got) if got == want => {}
            Some(got) => problems.push(format!("scan row of {noun} {id}: {}", misread(id, &got))),
            None => problems.push(format!("scan row of {noun} {id}: missing")),
        }
        Ok(())
    })?;
    for k in next {
        extra(k, &mut problems);
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Settings;
    use crate::model::{Interaction, InteractionKind, Partner, PartnerRole};
    use crate::store::tables::INTERACTION_ROWS;
    use crate::store::InteractionRow;
    use crate::time::{SystemClock, Timestamp};

    /// The stored rows of `table`.
    fn stored(store: &Store, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .read()
            .unwrap()
            .kv_scan(table, Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn a_build_in_small_batches_commits_as_it_goes_and_leaves_exactly_the_rows_the_records_make() {
        let store = Store::in_memory(Arc::new(Settings::builtin()), Arc::new(SystemClock)).unwrap();
        let partner = store.transact(None, |tx| tx.create(Partner::new("Альфа", PartnerRole::Client))).unwrap();
        let ids: Vec<RawId> = store
            .transact(None, |tx| {
                (0..10)
                    .map(|n| {
                        let i =
                            Interaction::new(InteractionKind::Call, Timestamp(n), partner.id, format!("Звонок {n}"));
                        Ok(tx.create(i)?.id.0)
                    })
                    .collect()
            })
            .unwrap();
        let want = stored(&store, INTERACTION_ROWS);
        assert_eq!(want.len(), 10);
        // Rows an earlier run left: seven strays (more than a batch) and a wrong one.
        let mut tx = store.write(None).unwrap();
        for n in 0..7u8 {
            let mut k = ids[9].to_bytes();
            k[15] = k[15].wrapping_add(n + 1);
            tx.changes.put(INTERACTION_ROWS, k.to_vec(), vec![n]);
        }
        tx.changes.put(INTERACTION_ROWS, ids[0].to_bytes().to_vec(), vec![0xff]);
        tx.commit().unwrap();
        assert_eq!(stored(&store, INTERACTION_ROWS).len(), 17);

        let before = store.commits.load(std::sync::atomic::Ordering::SeqCst);
        let tx = store.write(None).unwrap();
        let tx = build_in_batches::<Interaction>(
            &store,
            tx,
            INTERACTION_ROWS,
            &|_, i| Ok(Some(InteractionRow::encode(i))),
            3,
        )
        .unwrap();
        assert!(tx.changes.tables[INTERACTION_ROWS.slot].len() <= 3, "the last transaction holds one batch at most");
        tx.commit().unwrap();
        let commits = store.commits.load(std::sync::atomic::Ordering::SeqCst) - before;
        // 17 stored rows emptied three at a time, then ten rows written three at a time.
        assert!(commits >= 8, "{commits} commits");
        assert_eq!(stored(&store, INTERACTION_ROWS), want);
        assert_eq!(store.verify_interaction_rows().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_derivation_in_small_batches_commits_as_it_goes_and_leaves_exactly_the_heads_the_deals_make() {
        use crate::model::Deal;
        use crate::store::tables::{DEAL_HEADS, DEAL_ROWS};
        use crate::values::Money;
        let store = Store::in_memory(Arc::new(Settings::builtin()), Arc::new(SystemClock)).unwrap();
        let partner = store.transact(None, |tx| tx.create(Partner::new("Альфа", PartnerRole::Client))).unwrap();
        let manager = store
            .transact(None, |tx| tx.create(crate::model::User::new("ann", "Ann", crate::model::Role::Manager)))
            .unwrap();
        let engine = crate::process::Engine::without_hooks();
        store
            .transact(Some(manager.id), |tx| {
                for n in 0..10 {
                    let amount = Money::new(rust_decimal::Decimal::from(100 + n), crate::values::Currency::RUB);
                    let d = Deal::new(format!("Сделка {n}"), partner.id, "b2b_sale", None, manager.id, amount);
                    engine.create_deal(tx, d)?;
                }
                Ok(())
            })
            .unwrap();
        let want = stored(&store, DEAL_HEADS);
        assert_eq!(want.len(), 10);
        // Heads an earlier run left: a stray and a wrong one.
        let mut tx = store.write(None).unwrap();
        let first = want[0].0.clone();
        let mut stray = first.clone();
        stray[15] ^= 0x5a;
        tx.changes.put(DEAL_HEADS, stray, vec![1]);
        tx.changes.put(DEAL_HEADS, first, vec![0xff]);
        tx.commit().unwrap();
        assert_eq!(stored(&store, DEAL_HEADS).len(), 11);

        let before = store.commits.load(std::sync::atomic::Ordering::SeqCst);
        let tx = store.write(None).unwrap();
        let derive = |rows: &PendingRows| crate::store::deal_heads::heads_of(rows);
        let tx = derive_in_batches(&store, tx, DEAL_ROWS, DEAL_HEADS, &derive, 3).unwrap();
        assert!(tx.changes.tables[DEAL_HEADS.slot].len() <= 3, "the last transaction holds one batch at most");
        tx.commit().unwrap();
        let commits = store.commits.load(std::sync::atomic::Ordering::SeqCst) - before;
        // 11 stored heads emptied three at a time, then ten heads written three at a time.
        assert!(commits >= 7, "{commits} commits");
        assert_eq!(stored(&store, DEAL_HEADS), want);
        assert_eq!(store.verify_deal_heads().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_text_is_copied_once_checked_and_one_that_is_not_utf8_is_refused_wherever_it_falls() {
        let mut texts = Texts::default();
        let mut out = String::from("kept");
        assert!(texts.copy_into("переговоры".as_bytes(), &mut out));
        assert_eq!(out, "переговоры");
        // Found in its slot the second time, and copied the same.
        out.clear();
        assert!(texts.copy_into("переговоры".as_bytes(), &mut out));
        assert_eq!(out, "переговоры");
        // Bytes sharing the text's length and ends (so its slot) but not UTF-8 are refused,
        // and the checked text stays usable.
        let mut bad = "переговоры".as_bytes().to_vec();
        bad[9] = 0xff;
        assert_eq!(Texts::slot(&bad), Texts::slot("переговоры".as_bytes()));
        assert!(!texts.copy_into(&bad, &mut out));
        assert!(texts.copy_into("переговоры".as_bytes(), &mut out));
        assert_eq!(out, "переговоры");
        // Every slot holds the text it was last given; a thousand texts all come back.
        for i in 0..1000 {
            let t = format!("stage-{i}");
            assert!(texts.copy_into(t.as_bytes(), &mut out));
            assert_eq!(out, t);
        }
        assert!(texts.copy_into(b"", &mut out));
        assert_eq!(out, "");
    }
}
