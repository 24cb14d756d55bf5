//! The deals' documents kept at write time: every deal's row lists what its documents'
//! records say (compared field by field with the records grouped by deal here, not through
//! the row codec or the index), a document that moves from one deal to another leaves the
//! first and joins the second, a deal left without documents loses its row, a write
//! transaction scans its own writes, and `crmkit check` names a damaged row, a missing one
//! and a stray one.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::hooks::View;
use crmkit_core::id::{DealId, RawId};
use crmkit_core::model::{Deal, Document, DocumentKind, DocumentState};
use crmkit_core::store::kv::Changes;
use crmkit_core::store::tables::DEAL_DOCUMENTS;
use crmkit_core::store::{DealDocument, DealDocuments, Reader, Store};
use crmkit_core::time::SystemClock;
use crmkit_core::values::{Currency, Money};
use rust_decimal::Decimal;

use crate::common::{free_moving_settings as settings, Backend, Fixture};
use crate::scan_rows::{checked_demo, damage, said_all, stray};

/// What `r` scans.
fn scanned(r: &(impl Reader + ?Sized)) -> Vec<DealDocuments> {
    let mut rows = Vec::new();
    Reader::scan_deal_documents(r, &mut |d| {
        rows.push(d.clone());
        true
    })
    .unwrap();
    rows
}

/// Asserts that `r` scans one row per deal with documents, in deal id order, each listing
/// what the deal's documents' records say, oldest first.
pub(crate) fn assert_deal_documents_match(r: &(impl Reader + ?Sized)) {
    let mut by_deal: BTreeMap<DealId, Vec<DealDocument>> = BTreeMap::new();
    r.for_each::<Document>(|d| {
        if let Some(deal) = d.deal {
            let kept =
                DealDocument { kind: d.kind, state: d.state, created_at: d.created_at, due: d.due, amount: d.amount };
            by_deal.entry(deal).or_default().push(kept);
        }
        true
    })
    .unwrap();
    let want: Vec<DealDocuments> =
        by_deal.into_iter().map(|(deal, documents)| DealDocuments { deal, documents }).collect();
    assert_eq!(scanned(r), want);
}

fn doc(kind: DocumentKind, state: DocumentState, deal: Option<DealId>, fx: &Fixture, amount: i64) -> Document {
    let partner = fx.store.read().unwrap().get::<Deal>(deal.unwrap_or(DealId(RawId(0)))).unwrap().map(|d| d.partner);
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let partner = partner.unwrap_or_else(|| fx.client("Без сделки").0.id);
    let mut d = Document::new(kind, "№", day, partner, Money::new(Decimal::from(amount), Currency::RUB));
    d.state = state;
    d.deal = deal;
    d
}

#[test]
fn each_deal_lists_its_documents_as_they_are_written_moved_and_deleted_on_both_backends() {
    use DocumentKind::{Invoice, Order, Payment};
    use DocumentState::{Completed, Issued};
    for backend in [Backend::Redb, Backend::Memory] {
        let fx = Fixture::on_with(backend, settings());
        let (partner, manager) = fx.client("Альфа");
        let (a, b, c) = (
            fx.deal(partner.id, manager, 1_000),
            fx.deal(partner.id, manager, 2_000),
            fx.deal(partner.id, manager, 3_000),
        );
        let docs = [
            doc(Order, Issued, Some(a.id), &fx, 1_000),
            doc(Invoice, Issued, Some(a.id), &fx, 1_000),
            doc(Payment, Completed, Some(b.id), &fx, 700),
            doc(Payment, Completed, None, &fx, 50),
        ];
        let ids: Vec<_> = fx
            .store
            .transact(Some(manager), |tx| {
                docs.into_iter().map(|d| Ok(tx.create(d)?.id)).collect::<crmkit_core::Result<Vec<_>>>()
            })
            .unwrap();
        let r = fx.store.read().unwrap();
        assert_deal_documents_match(&r);
        let rows = scanned(&r);
        // Deal C has no documents, so no row; the document without a deal is in none.
        assert_eq!(rows.iter().map(|r| (r.deal, r.documents.len())).collect::<Vec<_>>(), vec![(a.id, 2), (b.id, 1)]);
        drop(r);

        // The invoice moves from A to C and is paid late; B's payment is deleted, which
        // leaves B without documents.
        let mut tx = fx.store.write(Some(manager)).unwrap();
        let mut invoice: Document = tx.get(ids[1]).unwrap().unwrap();
        invoice.deal = Some(c.id);
        invoice.due = NaiveDate::from_ymd_opt(2026, 3, 20);
        invoice.amount = Money::new(Decimal::from(1_100), Currency::RUB);
        tx.update(invoice).unwrap();
        let payment: Document = tx.get(ids[2]).unwrap().unwrap();
        tx.delete::<Document>(payment.id, payment.version).unwrap();
        // The transaction scans its own writes; others see none of them until the commit.
        assert_deal_documents_match(&tx);
        let inside = scanned(&tx);
        assert_eq!(inside.iter().map(|r| (r.deal, r.documents.len())).collect::<Vec<_>>(), vec![(a.id, 1), (c.id, 1)]);
        assert_eq!(inside[1].documents[0].amount.amount, Decimal::from(1_100));
        let mut seen = 0;
        View::scan_deal_documents(&tx, &mut |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert_eq!(seen, 1, "a scan stopped early stops");
        assert_eq!(scanned(&fx.store.read().unwrap()), rows);
        tx.commit().unwrap();
        let r = fx.store.read().unwrap();
        assert_eq!(scanned(&r), inside);
        assert_deal_documents_match(&r);
        assert_eq!(r.kv_get(DEAL_DOCUMENTS, &b.id.0.to_bytes()).unwrap(), None, "B's row is gone");
        drop(r);
        assert_eq!(fx.store.verify_deal_documents().unwrap(), Vec::<String>::new(), "{backend:?}");
    }
}

#[test]
fn check_names_a_damaged_a_missing_and_a_stray_row_of_a_deals_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let check = checked_demo(&dir);

    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    assert_deal_documents_match(&store.read().unwrap());
    let deals: Vec<DealId> = scanned(&store.read().unwrap()).iter().map(|d| d.deal).collect();
    assert!(deals.len() >= 4, "the demo has deals with documents: {}", deals.len());
    let raw = |id: DealId| store.read().unwrap().kv_get(DEAL_DOCUMENTS, &id.0.to_bytes()).unwrap().unwrap();
    // The first deal's row gets the second's bytes; the third's row goes; a row for an id
    // no deal has appears; the fourth's row is cut short.
    let (first, second) = (raw(deals[0]), raw(deals[1]));
    assert_ne!(first, second);
    let stray = stray(deals[2].0.to_bytes());
    let cut = raw(deals[3]);
    let mut changes = Changes::new();
    changes.put(DEAL_DOCUMENTS, deals[0].0.to_bytes().to_vec(), second.clone());
    changes.delete(DEAL_DOCUMENTS, deals[2].0.to_bytes().to_vec());
    changes.put(DEAL_DOCUMENTS, stray.to_vec(), second);
    changes.put(DEAL_DOCUMENTS, deals[3].0.to_bytes().to_vec(), cut[..cut.len() - 1].to_vec());
    damage(store, changes);

    let stray_id = DealId(RawId::from_bytes(&stray).unwrap());
    said_all(
        &check(),
        &[
            format!(
                "scan layout problem: scan row of deal with documents {}: differs from what its documents' records make",
                deals[0]
            ),
            format!("scan layout problem: scan row of deal with documents {}: missing", deals[2]),
            format!(
                "scan layout problem: scan row of deal with documents {stray_id}: stored, but there is no such deal with documents"
            ),
            format!("scan layout problem: scan row of deal with documents {}: cannot be read (", deals[3]),
            "4 scan layout problem(s)".to_string(),
        ],
    );
    // A report reading the damaged row is refused, naming the deal.
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    let err = Reader::scan_deal_documents(&store.read().unwrap(), &mut |_| true).unwrap_err().to_string();
    assert!(err.contains(&deals[3].to_string()) && err.contains("cut short"), "{err}");
}
