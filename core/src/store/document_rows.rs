//! The scan layout of documents: every document as one narrow row — what the reports over
//! every document read of it (execution, ABC/XYZ, BCG, the dossier's classes) — in its own
//! table, kept by every commit that writes documents, so that those reports read one
//! compact row per document instead of the full record (number, comment, counterparty,
//! custom fields, units and the audit instants stay out).
//!
//! A row is a function of the document's record alone ([`DocumentRow::encode`]). A commit
//! rewrites the rows of the documents among its pending changes and deletes those of the
//! documents it deletes; a write transaction's own scans see its pending writes. `crmkit
//! check` compares every row with the records. Written by hand like the deal rows (the
//! pieces are shared in `rows.rs`); layout (integers little-endian, a string is a LEB128
//! length and UTF-8 bytes, an optional value a 0/1 byte then the value):
//!
//! ```text
//! version (1) · created_at (i64 ms) · kind (1) · state (1) · date (i32 days from
//! 0001-01-01) · due? (i32) · partner (16) · deal? (16) · amount (Decimal, 16)
//! · currency (3) · lines (LEB128 count), each: item · qty (Decimal, 16) · price (Decimal, 16)
//! ```

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::kv::KvError;
use super::rows::{self, put_len, put_opt_id, put_str, Cursor, PendingRows, Span, Texts};
use super::tables::{Table, DOCUMENT_ROWS};
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, DocumentId, PartnerId, RawId};
use crate::model::{Document, DocumentKind, DocumentState, EntityKind};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::values::{Currency, Money};
use crate::Result;

/// The row format this build writes.
const VERSION: u8 = 1;

pub(super) const KINDS: [DocumentKind; 5] =
    [DocumentKind::Quote, DocumentKind::Invoice, DocumentKind::Order, DocumentKind::Shipment, DocumentKind::Payment];
pub(super) const STATES: [DocumentState; 5] = [
    DocumentState::Draft,
    DocumentState::Issued,
    DocumentState::Agreed,
    DocumentState::Completed,
    DocumentState::Cancelled,
];

/// A document as the scan layout keeps it: the fields the reports over every document
/// read. Its lines stay as stored until [`DocumentRow::lines`] reads them (most reports
/// read none); decoding into a kept row reuses its buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentRow {
    pub id: DocumentId,
    pub created_at: Timestamp,
    pub kind: DocumentKind,
    pub state: DocumentState,
    pub date: NaiveDate,
    pub due: Option<NaiveDate>,
    pub partner: PartnerId,
    pub deal: Option<DealId>,
    pub amount: Money,
    /// How many lines, and their bytes as stored.
    line_count: usize,
    lines: Vec<u8>,
}

/// A document line as the scan layout keeps it: the item, quantity and price (the unit
/// stays out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocumentLineRow<'a> {
    pub item: &'a str,
    pub qty: Decimal,
    pub price: Decimal,
}

/// The lines of a [`DocumentRow`], decoded as they are read.
pub struct DocumentLines<'a> {
    id: DocumentId,
    bytes: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> DocumentLines<'a> {
    fn corrupt(&self, message: &str) -> crate::Error {
        crate::Error::Corrupt {
            what: format!("scan row of document {}", self.id),
            message: format!("{message} at byte {} of its lines", self.at),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or_else(|| self.corrupt("cut short"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn line(&mut self) -> Result<DocumentLineRow<'a>> {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = self.take(1)?[0];
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift >= 64 {
                return Err(self.corrupt("length too long"));
            }
        }
        let item = std::str::from_utf8(self.take(n)?).map_err(|_| self.corrupt("item is not UTF-8"))?;
        let mut decimal = || Ok::<_, crate::Error>(Decimal::deserialize(self.take(16)?.try_into().expect("16 bytes")));
        let qty = decimal()?;
        let price = decimal()?;
        if self.left == 0 && self.at != self.bytes.len() {
            return Err(self.corrupt("bytes after the last line"));
        }
        Ok(DocumentLineRow { item, qty, price })
    }
}

impl<'a> Iterator for DocumentLines<'a> {
    type Item = Result<DocumentLineRow<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let line = self.line();
        if line.is_err() {
            self.left = 0;
        }
        Some(line)
    }
}

impl Default for DocumentRow {
    fn default() -> DocumentRow {
        DocumentRow {
            id: DocumentId(RawId::from_bytes(&[0; 16]).expect("16 bytes")),
            created_at: Timestamp(0),
            kind: DocumentKind::Quote,
            state: DocumentState::Draft,
            date: NaiveDate::MIN,
            due: None,
            partner: PartnerId(RawId::from_bytes(&[0; 16]).expect("16 bytes")),
            deal: None,
            amount: Money { amount: Decimal::ZERO, currency: Currency::RUB },
            line_count: 0,
            lines: Vec::new(),
        }
    }
}

impl DocumentRow {
    /// The row of `doc`, encoded.
    pub fn encode(doc: &Document) -> Vec<u8> {
        let mut w = Vec::with_capacity(90 + doc.lines.iter().map(|l| 34 + l.item.len()).sum::<usize>());
        w.push(VERSION);
        w.extend_from_slice(&doc.created_at.0.to_le_bytes());
        w.push(kind_byte(doc.kind));
        w.push(state_byte(doc.state));
        w.extend_from_slice(&doc.date.num_days_from_ce().to_le_bytes());
        match doc.due {
            Some(d) => {
                w.push(1);
                w.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
            }
            None => w.push(0),
        }
        w.extend_from_slice(&doc.partner.0.to_bytes());
        put_opt_id(&mut w, doc.deal.map(|d| d.0));
        w.extend_from_slice(&doc.amount.amount.serialize());
        w.extend_from_slice(doc.amount.currency.as_str().as_bytes());
        put_len(&mut w, doc.lines.len());
        for l in &doc.lines {
            put_str(&mut w, &l.item);
            w.extend_from_slice(&l.qty.serialize());
            w.extend_from_slice(&l.price.serialize());
        }
        w
    }

    /// Fills the row from the stored row of document `id`, reusing its lines.
    /// The whole row is read, its lines too (as `crmkit check` reads it).
    pub(crate) fn decode_into(&mut self, id: DocumentId, bytes: &[u8]) -> std::result::Result<(), KvError> {
        self.decode_with(id, bytes, &mut Texts::default())?;
        match self.lines().find_map(Result::err) {
            Some(crate::Error::Corrupt { what, message }) => Err(KvError::Corrupt { what, message }),
            Some(e) => Err(KvError::Corrupt { what: format!("scan row of document {id}"), message: e.to_string() }),
            None => Ok(()),
        }
    }

    /// [`DocumentRow::decode_into`] within a scan that found `texts` valid.
    pub(crate) fn decode_with(
        &mut self,
        id: DocumentId,
        bytes: &[u8],
        texts: &mut Texts,
    ) -> std::result::Result<(), KvError> {
        let mut r = Cursor::new(bytes, "document", id.0, texts);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown row format {version}")));
        }
        self.id = id;
        self.created_at = Timestamp(r.i64()?);
        let kind = r.u8()?;
        self.kind = *KINDS.get(usize::from(kind)).ok_or_else(|| r.corrupt(format!("kind {kind}")))?;
        let state = r.u8()?;
        self.state = *STATES.get(usize::from(state)).ok_or_else(|| r.corrupt(format!("state {state}")))?;
        self.date = r.date("date")?;
        self.due = if r.flag()? { Some(r.date("due date")?) } else { None };
        self.partner = PartnerId(r.id()?);
        self.deal = r.opt_id()?.map(DealId);
        let amount = r.decimal()?;
        self.amount = Money { amount, currency: r.currency(self.amount.currency)? };
        self.line_count = r.len()?;
        self.lines.clear();
        self.lines.extend_from_slice(&r.bytes[r.at..]);
        if self.line_count == 0 {
            return r.end("line count");
        }
        Ok(())
    }

    /// The document's lines, decoded one by one as they are read; a damaged line ends
    /// them with an error naming the document.
    pub fn lines(&self) -> DocumentLines<'_> {
        DocumentLines { id: self.id, bytes: &self.lines, at: 0, left: self.line_count }
    }
}

/// Visits every document row in `span` that `r` sees, in id order, with `pending` rows in place
/// of the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DocumentRow) -> bool,
) -> Result<()> {
    scan_table(r, DOCUMENT_ROWS, "document", span, pending, f)
}

/// [`scan`] over `table`, a table of document rows (`document_rows`, `shipment_rows`) whose
/// records `noun` names.
pub(super) fn scan_table(
    r: &(impl Reader + ?Sized),
    table: Table,
    noun: &str,
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DocumentRow) -> bool,
) -> Result<()> {
    let mut row = DocumentRow::default();
    let mut texts = Texts::default();
    rows::scan(r, table, noun, span, pending, &mut |id, bytes| {
        row.decode_with(DocumentId(id), bytes, &mut texts)?;
        Ok(f(&row))
    })
}

impl WriteTxn<'_> {
    /// The rows of the documents the pending changes write, as they stand in the
    /// transaction.
    pub(super) fn pending_document_rows(&self) -> Result<PendingRows> {
        self.pending_rows_of(DocumentRow::encode)
    }
}

/// What `crmkit check` says of a stored document row (of `document_rows` or
/// `shipment_rows`) that is not the one its record makes.
pub(super) fn misread(id: RawId, got: &[u8]) -> String {
    match DocumentRow::default().decode_into(DocumentId(id), got) {
        Ok(()) => "differs from what its record makes".to_string(),
        Err(e) => format!("cannot be read ({e})"),
    }
}

/// Whether encoded row `bytes` is a completed shipment's (its kind and state bytes).
pub(super) fn is_revenue_row(bytes: &[u8]) -> bool {
    let (shipment, completed) = (kind_byte(DocumentKind::Shipment), state_byte(DocumentState::Completed));
    bytes.first() == Some(&VERSION) && bytes.get(9) == Some(&shipment) && bytes.get(10) == Some(&completed)
}

pub(super) fn kind_byte(kind: DocumentKind) -> u8 {
    KINDS.iter().position(|k| *k == kind).expect("listed") as u8
}

pub(super) fn state_byte(state: DocumentState) -> u8 {
    STATES.iter().position(|s| *s == state).expect("listed") as u8
}

/// Every document's row as its record makes it, in id order.
fn expected_rows(r: &impl Reader, f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>) -> Result<()> {
    rows::each_record(r, &mut |d: &Document| f(d.id.0, DocumentRow::encode(d)))
}

impl Store {
    /// Checks every stored document row against the row the document's record makes;
    /// returns one line per difference, naming the document.
    pub fn verify_document_rows(&self) -> Result<Vec<String>> {
        self.verify_document_rows_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_document_rows`], reporting its stage `"document rows"` to
    /// `progress`: the documents read.
    pub fn verify_document_rows_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Document)?;
        let mut meter = Meter::start(progress, "document rows", total);
        let problems =
            rows::verify(&r, DOCUMENT_ROWS, "document", &mut meter, &mut |f| expected_rows(&r, f), &misread)?;
        meter.finish();
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DocumentLine;

    #[test]
    fn lines_are_read_as_stored_and_a_damaged_one_names_the_document() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let amount = Money { amount: Decimal::new(15000, 2), currency: Currency::RUB };
        let mut doc = Document::new(DocumentKind::Shipment, "О-1", day, PartnerId(RawId(7)), amount);
        for (item, qty) in [("насос", 2), ("фланец", 10)] {
            let unit = Some("шт".to_string());
            doc.lines.push(DocumentLine { item: item.into(), qty: qty.into(), unit, price: Decimal::new(1250, 2) });
        }
        let id = DocumentId(RawId(42));
        let bytes = DocumentRow::encode(&doc);
        let mut row = DocumentRow::default();
        row.decode_into(id, &bytes).unwrap();
        let lines: Vec<_> = row.lines().map(|l| l.unwrap()).collect();
        let want = |item, qty: i64| DocumentLineRow { item, qty: qty.into(), price: Decimal::new(1250, 2) };
        assert_eq!(lines, vec![want("насос", 2), want("фланец", 10)]);
        // A scan reads the row up to its lines; the lines tell their damage when read. The
        // check, reading the row whole, names it at once.
        let cut = &bytes[..bytes.len() - 3];
        let e = row.decode_into(id, cut).unwrap_err().to_string();
        assert!(e.contains(&id.to_string()) && e.contains("cut short"), "{e}");
        row.decode_with(id, cut, &mut Texts::default()).unwrap();
        let read: Vec<_> = row.lines().collect();
        assert!(read[0].is_ok(), "{read:?}");
        let e = read[1].as_ref().unwrap_err().to_string();
        assert!(e.contains(&id.to_string()) && e.contains("cut short"), "{e}");
        let mut longer = bytes.clone();
        longer.push(0);
        row.decode_with(id, &longer, &mut Texts::default()).unwrap();
        let e = row.lines().last().unwrap().unwrap_err().to_string();
        assert!(e.contains("bytes after the last line"), "{e}");
        // A row without lines has nothing after its count.
        row.decode_into(id, &DocumentRow::encode(&Document { lines: Vec::new(), ..doc })).unwrap();
        assert_eq!(row.lines().count(), 0);
    }
}
