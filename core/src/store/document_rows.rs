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
use super::tables::DOCUMENT_ROWS;
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, DocumentId, PartnerId, RawId};
use crate::model::{Document, DocumentKind, DocumentState, EntityKind};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::values::{Currency, Money};
use crate::Result;

/// The row format this build writes.
const VERSION: u8 = 1;

const KINDS: [DocumentKind; 5] =
    [DocumentKind::Quote, DocumentKind::Invoice, DocumentKind::Order, DocumentKind::Shipment, DocumentKind::Payment];
const STATES: [DocumentState; 5] = [
    DocumentState::Draft,
    DocumentState::Issued,
    DocumentState::Agreed,
    DocumentState::Completed,
    DocumentState::Cancelled,
];

/// A document as the scan layout keeps it: the fields the reports over every document
/// read. Decoding into a kept row reuses its lines' strings.
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
    pub lines: Vec<DocumentLineRow>,
}

/// A document line as the scan layout keeps it: the item, quantity and price (the unit
/// stays out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentLineRow {
    pub item: String,
    pub qty: Decimal,
    pub price: Decimal,
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
        w.push(KINDS.iter().position(|k| *k == doc.kind).expect("listed") as u8);
        w.push(STATES.iter().position(|s| *s == doc.state).expect("listed") as u8);
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
    pub(crate) fn decode_into(&mut self, id: DocumentId, bytes: &[u8]) -> std::result::Result<(), KvError> {
        self.decode_with(id, bytes, &mut Texts::default())
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
        let n = r.len()?;
        self.lines.truncate(n);
        for i in 0..n {
            if i == self.lines.len() {
                self.lines.push(DocumentLineRow { item: String::new(), qty: Decimal::ZERO, price: Decimal::ZERO });
            }
            let l = &mut self.lines[i];
            r.str_into(&mut l.item)?;
            l.qty = r.decimal()?;
            l.price = r.decimal()?;
        }
        r.end("last line")
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
    let mut row = DocumentRow::default();
    let mut texts = Texts::default();
    rows::scan(r, DOCUMENT_ROWS, "document", span, pending, &mut |id, bytes| {
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
        let misread = |id: RawId, got: &[u8]| match DocumentRow::default().decode_into(DocumentId(id), got) {
            Ok(()) => "differs from what its record makes".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let problems =
            rows::verify(&r, DOCUMENT_ROWS, "document", &mut meter, &mut |f| expected_rows(&r, f), &misread)?;
        meter.finish();
        Ok(problems)
    }
}
