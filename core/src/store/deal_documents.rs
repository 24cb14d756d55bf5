//! The deals' documents: for every deal that has documents, what the reports over deals and
//! their documents read of each (kind, state, creation, due day, amount) — one narrow row
//! per deal, keyed by the deal's id like its head (`deal_heads.rs`). The execution report
//! reads a row per deal beside the heads instead of every document's row and a map from
//! deals to what their documents add up to: about forty bytes per document, and the
//! documents of a deal together.
//!
//! A row is a function of the deal's documents' records (oldest first). A commit rewrites
//! the rows of the deals whose documents it writes — the deal a written document belongs
//! to, and the one it left — from the documents as the transaction stands, and deletes the
//! row of a deal left without documents; a write transaction's own scans see its pending
//! writes. `crmkit check` compares every row with the records. Layout (integers
//! little-endian, an optional value a 0/1 byte then the value):
//!
//! ```text
//! version (1) · count (LEB128), then each document, oldest first: kind (1) · state (1)
//! · created_at (i64 ms) · due? (i32 days from 0001-01-01) · amount (Decimal, 16)
//! · currency (3)
//! ```

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};

use super::document_rows::{kind_byte, state_byte, KINDS, STATES};
use super::kv::KvError;
use super::rows::{self, put_len, Cursor, PendingRows, Span, Texts};
use super::tables::{entity_table, DEAL_DOCUMENTS};
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, DocumentId, RawId, TypedId};
use crate::model::{Deal, Document, DocumentKind, DocumentState, EntityKind, Index};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::values::{Currency, Money};
use crate::Result;

/// The row format this build writes.
const VERSION: u8 = 1;

/// One document of a deal, as its deal's row keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DealDocument {
    pub kind: DocumentKind,
    pub state: DocumentState,
    pub created_at: Timestamp,
    pub due: Option<NaiveDate>,
    pub amount: Money,
}

/// A deal's documents, oldest first. Decoding into a kept row reuses its list.
#[derive(Clone, Debug, PartialEq)]
pub struct DealDocuments {
    pub deal: DealId,
    pub documents: Vec<DealDocument>,
}

impl Default for DealDocuments {
    fn default() -> DealDocuments {
        DealDocuments { deal: DealId(RawId::default()), documents: Vec::new() }
    }
}

impl DealDocuments {
    /// The row of a deal whose documents are `docs` (oldest first); none without any.
    pub fn encode(docs: &[Document]) -> Option<Vec<u8>> {
        if docs.is_empty() {
            return None;
        }
        let mut w = Vec::with_capacity(2 + docs.len() * 39);
        w.push(VERSION);
        put_len(&mut w, docs.len());
        for d in docs {
            w.push(kind_byte(d.kind));
            w.push(state_byte(d.state));
            w.extend_from_slice(&d.created_at.0.to_le_bytes());
            match d.due {
                Some(due) => {
                    w.push(1);
                    w.extend_from_slice(&due.num_days_from_ce().to_le_bytes());
                }
                None => w.push(0),
            }
            w.extend_from_slice(&d.amount.amount.serialize());
            w.extend_from_slice(d.amount.currency.as_str().as_bytes());
        }
        Some(w)
    }

    /// Fills the row from the stored row of deal `deal`, reusing its list.
    pub(crate) fn decode_into(&mut self, deal: DealId, bytes: &[u8]) -> std::result::Result<(), KvError> {
        self.decode_with(deal, bytes, &mut Texts::default())
    }

    fn decode_with(&mut self, deal: DealId, bytes: &[u8], texts: &mut Texts) -> std::result::Result<(), KvError> {
        let mut r = Cursor::new(bytes, "deal with documents", deal.0, texts);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown row format {version}")));
        }
        self.deal = deal;
        let count = r.len()?;
        // Each document takes 30 bytes at least: a count past what is there is damage.
        if count == 0 || count > bytes.len() / 30 {
            return Err(r.corrupt(format!("{count} documents in {} bytes", bytes.len())));
        }
        self.documents.clear();
        let mut currency = Currency::RUB;
        for _ in 0..count {
            let kind = r.u8()?;
            let kind = *KINDS.get(usize::from(kind)).ok_or_else(|| r.corrupt(format!("kind {kind}")))?;
            let state = r.u8()?;
            let state = *STATES.get(usize::from(state)).ok_or_else(|| r.corrupt(format!("state {state}")))?;
            let created_at = Timestamp(r.i64()?);
            let due = if r.flag()? { Some(r.date("due date")?) } else { None };
            let amount = r.decimal()?;
            currency = r.currency(currency)?;
            self.documents.push(DealDocument { kind, state, created_at, due, amount: Money { amount, currency } });
        }
        r.end("the last document")
    }
}

/// The row of deal `deal` as `r` sees its documents (none: it has none).
fn row_of(r: &(impl Reader + ?Sized), deal: DealId) -> Result<Option<Vec<u8>>> {
    let docs: Vec<Document> = r.find(Index::DocumentByDeal, &deal.raw().to_bytes(), None, usize::MAX)?;
    Ok(DealDocuments::encode(&docs))
}

/// Visits every row in `span` that `r` sees, in deal id order, with `pending` rows in place
/// of the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DealDocuments) -> bool,
) -> Result<()> {
    let mut row = DealDocuments::default();
    let mut texts = Texts::default();
    rows::scan(r, DEAL_DOCUMENTS, "deal with documents", span, pending, &mut |id, bytes| {
        row.decode_with(DealId(id), bytes, &mut texts)?;
        Ok(f(&row))
    })
}

impl WriteTxn<'_> {
    /// The rows of the deals whose documents the pending changes write, as they stand in
    /// the transaction: the deals documents join or leave (the index of documents by deal
    /// has pending changes under them) and the deals of the documents written.
    pub(super) fn pending_deal_documents(&self) -> Result<PendingRows> {
        let mut deals: BTreeSet<RawId> = self
            .postings
            .keys()
            .filter(|(index, _)| *index == Index::DocumentByDeal)
            .filter_map(|(_, prefix)| RawId::from_bytes(prefix))
            .collect();
        let table = entity_table(EntityKind::Document);
        for key in self.changes.tables[table.slot].keys() {
            let Some(id) = RawId::from_bytes(key) else { continue };
            if let Some(deal) = self.get_shared::<Document>(DocumentId(id))?.and_then(|d| d.deal) {
                deals.insert(deal.0);
            }
        }
        let mut out = PendingRows::new();
        for deal in deals {
            out.insert(deal.to_bytes(), row_of(self, DealId(deal))?);
        }
        Ok(out)
    }
}

/// A file from before schema 15 gets every deal's row written once from its documents'
/// records, in batches.
pub(super) fn build<'s>(store: &'s Store, tx: WriteTxn<'s>) -> Result<WriteTxn<'s>> {
    let row = |tx: &WriteTxn<'_>, d: &Deal| row_of(tx, d.id);
    rows::build_in_batches::<Deal>(store, tx, DEAL_DOCUMENTS, &row, rows::BATCH)
}

impl Store {
    /// Checks every stored row of a deal's documents against the row its documents'
    /// records make; returns one line per difference, naming the deal.
    pub fn verify_deal_documents(&self) -> Result<Vec<String>> {
        self.verify_deal_documents_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_deal_documents`], reporting its stage `"deal documents"` to
    /// `progress`: the deals read.
    pub fn verify_deal_documents_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Deal)?;
        // Counted by the deals read (those with documents are compared).
        let mut meter = Meter::start(progress, "deal documents", total);
        let mut expected = |f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>| {
            rows::each_record(&r, &mut |d: &Deal| {
                meter.add(1);
                match row_of(&r, d.id)? {
                    Some(bytes) => f(d.id.0, bytes),
                    None => Ok(()),
                }
            })
        };
        let misread = |id: RawId, got: &[u8]| match DealDocuments::default().decode_into(DealId(id), got) {
            Ok(()) => "differs from what its documents' records make".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let mut ignore = progress::ignore;
        let mut compared = Meter::start(&mut ignore, "deal documents", 0);
        let problems = rows::verify(&r, DEAL_DOCUMENTS, "deal with documents", &mut compared, &mut expected, &misread)?;
        meter.finish();
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::id::PartnerId;

    #[test]
    fn a_row_keeps_each_document_in_order_and_refuses_damage_naming_the_deal() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let mut invoice = Document::new(
            DocumentKind::Invoice,
            "СЧ-1",
            day,
            PartnerId(RawId(7)),
            Money::new(Decimal::new(1500, 0), Currency::RUB),
        );
        invoice.state = DocumentState::Issued;
        invoice.due = NaiveDate::from_ymd_opt(2026, 3, 15);
        invoice.created_at = Timestamp(1_000);
        let mut payment = Document::new(
            DocumentKind::Payment,
            "ПП-1",
            day,
            PartnerId(RawId(7)),
            Money::new(Decimal::new(99, 1), Currency::USD),
        );
        payment.state = DocumentState::Completed;
        payment.created_at = Timestamp(2_000);
        assert_eq!(DealDocuments::encode(&[]), None, "a deal without documents has no row");
        let bytes = DealDocuments::encode(&[invoice.clone(), payment.clone()]).unwrap();
        let deal = DealId(RawId(42));
        let mut row = DealDocuments::default();
        row.decode_into(deal, &bytes).unwrap();
        let keep = |d: &Document| DealDocument {
            kind: d.kind,
            state: d.state,
            created_at: d.created_at,
            due: d.due,
            amount: d.amount,
        };
        assert_eq!(row, DealDocuments { deal, documents: vec![keep(&invoice), keep(&payment)] });
        // Decoding into the kept row replaces its list.
        row.decode_into(deal, &DealDocuments::encode(&[payment.clone()]).unwrap()).unwrap();
        assert_eq!(row.documents, vec![keep(&payment)]);

        let err = row.decode_into(deal, &bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(err.contains(&deal.to_string()) && err.contains("cut short"), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        let err = row.decode_into(deal, &longer).unwrap_err().to_string();
        assert!(err.contains(&deal.to_string()), "{err}");
        let mut other = bytes.clone();
        other[0] = 9;
        let err = row.decode_into(deal, &other).unwrap_err().to_string();
        assert!(err.contains("unknown row format 9"), "{err}");
        let mut many = bytes;
        many[1] = 0x7f;
        let err = row.decode_into(deal, &many).unwrap_err().to_string();
        assert!(err.contains("127 documents"), "{err}");
    }
}
