//! The revenue rows: the document row (`document_rows.rs`, the same bytes) of every
//! completed shipment — what ABC/XYZ, BCG and the dossier's classes count as revenue — in a
//! table of its own, kept by every commit that writes documents, so that those reports read
//! the shipments alone instead of every document's row (orders, invoices, payments and
//! quotes are most of them).
//!
//! A document has a row here exactly while it is a shipment in state `completed`: the
//! commit that completes one adds its row, one that changes it rewrites the row, and one
//! that cancels, reverts or deletes it takes the row away; a write transaction's own scans
//! see its pending writes. `crmkit check` compares the table with the records.

use super::document_rows::{self, DocumentRow};
use super::rows::{self, PendingRows, Span};
use super::tables::SHIPMENT_ROWS;
use super::{Reader, Store, WriteTxn};
use crate::id::RawId;
use crate::model::{Document, DocumentKind, DocumentState, EntityKind};
use crate::progress::{self, Meter, Progress};
use crate::Result;

/// Whether `doc` is revenue: a completed shipment.
pub(super) fn is_revenue(doc: &Document) -> bool {
    doc.kind == DocumentKind::Shipment && doc.state == DocumentState::Completed
}

/// The revenue row of `doc`: its document row when it is a completed shipment.
pub(super) fn row(doc: &Document) -> Option<Vec<u8>> {
    is_revenue(doc).then(|| DocumentRow::encode(doc))
}

/// Visits every revenue row in `span` that `r` sees, in id order, with `pending` rows in
/// place of the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DocumentRow) -> bool,
) -> Result<()> {
    super::document_rows::scan_table(r, SHIPMENT_ROWS, "shipment", span, pending, f)
}

impl WriteTxn<'_> {
    /// The revenue rows of the documents the pending changes write, as they stand in the
    /// transaction (`None`: none, for a document that is not, or no longer, revenue).
    pub(super) fn pending_shipment_rows(&self) -> Result<PendingRows> {
        Ok(revenue(&self.pending_document_rows()?))
    }
}

/// The revenue rows among pending document rows: a completed shipment's row as it is, every
/// other document's as none (so that a stored one goes).
pub(super) fn revenue(documents: &PendingRows) -> PendingRows {
    documents
        .iter()
        .map(|(id, row)| (*id, row.as_ref().filter(|r| document_rows::is_revenue_row(r)).cloned()))
        .collect()
}

impl Store {
    /// Checks the stored revenue rows against the completed shipments' records; returns
    /// one line per difference, naming the document.
    pub fn verify_shipment_rows(&self) -> Result<Vec<String>> {
        self.verify_shipment_rows_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_shipment_rows`], reporting its stage `"shipment rows"` to
    /// `progress`: the documents read.
    pub fn verify_shipment_rows_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Document)?;
        // Counted by the documents read (the shipments among them are compared).
        let mut meter = Meter::start(progress, "shipment rows", total);
        let mut expected = |f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>| {
            rows::each_record(&r, &mut |d: &Document| {
                meter.add(1);
                match row(d) {
                    Some(bytes) => f(d.id.0, bytes),
                    None => Ok(()),
                }
            })
        };
        let mut ignore = progress::ignore;
        let mut compared = Meter::start(&mut ignore, "shipment rows", 0);
        let problems =
            rows::verify(&r, SHIPMENT_ROWS, "shipment", &mut compared, &mut expected, &document_rows::misread)?;
        meter.finish();
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::id::PartnerId;
    use crate::values::{Currency, Money};

    #[test]
    fn a_row_is_revenue_by_its_bytes_exactly_when_its_document_is() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let amount = Money::zero(Currency::RUB);
        for kind in [
            DocumentKind::Quote,
            DocumentKind::Invoice,
            DocumentKind::Order,
            DocumentKind::Shipment,
            DocumentKind::Payment,
        ] {
            for state in [
                DocumentState::Draft,
                DocumentState::Issued,
                DocumentState::Agreed,
                DocumentState::Completed,
                DocumentState::Cancelled,
            ] {
                let mut doc = Document::new(kind, "№1", day, PartnerId(RawId(7)), amount);
                doc.state = state;
                let bytes = DocumentRow::encode(&doc);
                assert_eq!(document_rows::is_revenue_row(&bytes), is_revenue(&doc), "{kind:?} {state:?}");
            }
        }
    }
}
