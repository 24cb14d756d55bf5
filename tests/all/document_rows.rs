//! The scan layout of documents kept at write time: every document's row says what its
//! record says (compared field by field, not through the row codec), a write transaction
//! scans its own writes, a deleted document takes its row away, and `crmkit check` names a
//! damaged row, a missing one and a stray one.

use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::hooks::View;
use crmkit_core::id::{DealId, DocumentId, PartnerId};
use crmkit_core::model::{Document, DocumentKind, DocumentLine, DocumentState};
use crmkit_core::store::kv::Changes;
use crmkit_core::store::tables::DOCUMENT_ROWS;
use crmkit_core::store::{DocumentLineRow, DocumentRow, Reader, Store};
use crmkit_core::time::SystemClock;
use crmkit_core::values::{Currency, Money};
use rust_decimal::Decimal;

use crate::common::{free_moving_settings as settings, new_deal, Backend, Fixture};
use crate::scan_rows::{checked_demo, damage, said_all, stray};

/// What `r` scans.
fn scanned(r: &(impl Reader + ?Sized)) -> Vec<DocumentRow> {
    let mut rows = Vec::new();
    Reader::scan_documents(r, &mut |d| {
        rows.push(d.clone());
        true
    })
    .unwrap();
    rows
}

/// Asserts that `r` scans one row per document, in id order, each saying what the
/// document's record says.
pub(crate) fn assert_rows_match(r: &(impl Reader + ?Sized)) {
    let rows = scanned(r);
    let mut docs: Vec<Document> = Vec::new();
    r.for_each::<Document>(|d| {
        docs.push(d);
        true
    })
    .unwrap();
    assert_eq!(rows.iter().map(|d| d.id).collect::<Vec<_>>(), docs.iter().map(|d| d.id).collect::<Vec<_>>());
    for (row, d) in rows.iter().zip(&docs) {
        let fields = (row.created_at, row.kind, row.state, row.date, row.due, row.partner, row.deal, row.amount);
        let record = (d.created_at, d.kind, d.state, d.date, d.due, d.partner, d.deal, d.amount);
        assert_eq!(fields, record, "document {}", d.id);
        let lines: Vec<(&str, Decimal, Decimal)> = row
            .lines()
            .map(|l| {
                let l = l.unwrap();
                (l.item, l.qty, l.price)
            })
            .collect();
        let want: Vec<(&str, Decimal, Decimal)> = d.lines.iter().map(|l| (l.item.as_str(), l.qty, l.price)).collect();
        assert_eq!(lines, want, "lines of document {}", d.id);
    }
    // The deals' documents are kept by the same commits.
    crate::deal_documents::assert_deal_documents_match(r);
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A document with `lines` as (item, qty, price); its amount is their sum.
fn doc(
    kind: DocumentKind,
    number: &str,
    partner: PartnerId,
    deal: Option<DealId>,
    lines: &[(&str, i64, &str)],
) -> Document {
    let mut total = Decimal::ZERO;
    let mut d = Document::new(kind, number, day(2026, 3, 2), partner, Money::zero(Currency::RUB));
    for (item, qty, price) in lines {
        let price: Decimal = price.parse().unwrap();
        total += Decimal::from(*qty) * price;
        d.lines
            .push(DocumentLine { item: item.to_string(), qty: Decimal::from(*qty), unit: Some("шт".into()), price });
    }
    d.amount = Money::new(total, Currency::RUB);
    d.deal = deal;
    d
}

#[test]
fn every_row_says_what_the_record_says_on_both_backends() {
    for backend in [Backend::Redb, Backend::Memory] {
        let fx = Fixture::on_with(backend, settings());
        let (partner, manager) = fx.client("Альфа");
        let deal = fx.deal(partner.id, manager, 5_000);
        let (a, b) = fx
            .store
            .transact(Some(manager), |tx| {
                let mut a = doc(DocumentKind::Invoice, "СЧ-1", partner.id, Some(deal.id), &[("Насос", 2, "1200.50")]);
                a.due = Some(day(2026, 3, 20));
                a.state = DocumentState::Issued;
                a.comment = "оплата в два этапа".into();
                let b = doc(DocumentKind::Payment, "П-1", partner.id, None, &[]);
                Ok((tx.create(a)?, tx.create(b)?))
            })
            .unwrap();
        assert_rows_match(&fx.store.read().unwrap());
        let rows = scanned(&fx.store.read().unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].id, rows[1].id), (a.id, b.id));
        assert_eq!(
            rows[0].lines().map(Result::unwrap).collect::<Vec<_>>(),
            [DocumentLineRow { item: "Насос", qty: Decimal::from(2), price: "1200.50".parse().unwrap() }]
        );
        assert_eq!(rows[1].deal, None);
        // An update rewrites the row: new state, lines and due date.
        let mut a: Document = fx.store.read().unwrap().get(a.id).unwrap().unwrap();
        a.state = DocumentState::Completed;
        a.due = None;
        a.lines.push(DocumentLine {
            item: "Клапан".into(), qty: Decimal::ONE, unit: None, price: Decimal::from(99)
        });
        a.amount = Money::new(a.amount.amount + Decimal::from(99), Currency::RUB);
        fx.store.transact(Some(manager), |tx| tx.update(a.clone())).unwrap();
        let r = fx.store.read().unwrap();
        assert_rows_match(&r);
        let first = &scanned(&r)[0];
        assert_eq!((first.state, first.due, first.lines().count()), (DocumentState::Completed, None, 2));
        assert_eq!(fx.store.verify_document_rows().unwrap(), Vec::<String>::new());
    }
}

#[test]
fn a_write_transaction_scans_its_own_writes_and_a_deleted_document_leaves_no_row() {
    let fx = Fixture::on_with(Backend::Redb, settings());
    let (partner, manager) = fx.client("Альфа");
    let deal = fx.store.transact(Some(manager), |tx| tx.create(new_deal(partner.id, manager, 900))).unwrap();
    let ids: Vec<DocumentId> = fx
        .store
        .transact(Some(manager), |tx| {
            (0..3)
                .map(|i| {
                    Ok(tx
                        .create(doc(DocumentKind::Order, &format!("З-{i}"), partner.id, None, &[("Насос", 1, "10")]))?
                        .id)
                })
                .collect()
        })
        .unwrap();
    let mut tx = fx.store.write(Some(manager)).unwrap();
    // A new document, a changed one and a deleted one, all pending.
    let added =
        tx.create(doc(DocumentKind::Shipment, "Р-1", partner.id, Some(deal.id), &[("Клапан", 3, "7")])).unwrap();
    let mut changed: Document = tx.get(ids[1]).unwrap().unwrap();
    changed.deal = Some(deal.id);
    changed.state = DocumentState::Agreed;
    tx.update(changed).unwrap();
    let gone: Document = tx.get(ids[0]).unwrap().unwrap();
    tx.delete::<Document>(gone.id, gone.version).unwrap();
    assert_rows_match(&tx);
    let inside = scanned(&tx);
    assert_eq!(inside.iter().map(|d| d.id).collect::<Vec<_>>(), vec![ids[1], ids[2], added.id]);
    assert_eq!((inside[0].deal, inside[0].state), (Some(deal.id), DocumentState::Agreed));
    // Through the reports' view too, and a scan stopped early stops.
    let mut seen = 0;
    View::scan_documents(&tx, &mut |_| {
        seen += 1;
        seen < 2
    })
    .unwrap();
    assert_eq!(seen, 2);
    // Others see none of it until the commit, and all of it after.
    assert_eq!(scanned(&fx.store.read().unwrap()).iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    tx.commit().unwrap();
    let r = fx.store.read().unwrap();
    assert_eq!(scanned(&r), inside);
    assert_rows_match(&r);
    assert_eq!(r.kv_get(DOCUMENT_ROWS, &ids[0].0.to_bytes()).unwrap(), None, "the deleted document's row");
    drop(r);
    assert_eq!(fx.store.verify_document_rows().unwrap(), Vec::<String>::new());
}

#[test]
fn check_names_a_damaged_a_missing_and_a_stray_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let check = checked_demo(&dir);

    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    assert_rows_match(&store.read().unwrap());
    let ids: Vec<DocumentId> = scanned(&store.read().unwrap()).iter().map(|d| d.id).collect();
    assert!(ids.len() >= 3, "the demo has documents: {}", ids.len());
    let raw = |id: DocumentId| store.read().unwrap().kv_get(DOCUMENT_ROWS, &id.0.to_bytes()).unwrap().unwrap();
    // The first document's row gets the second's bytes; the third's row goes; a row for an
    // id no document has appears; the fourth's row is cut short.
    let (first, second) = (raw(ids[0]), raw(ids[1]));
    assert_ne!(first, second);
    let stray = stray(ids[2].0.to_bytes());
    let cut = raw(ids[3]);
    let mut changes = Changes::new();
    changes.put(DOCUMENT_ROWS, ids[0].0.to_bytes().to_vec(), second.clone());
    changes.delete(DOCUMENT_ROWS, ids[2].0.to_bytes().to_vec());
    changes.put(DOCUMENT_ROWS, stray.to_vec(), second);
    changes.put(DOCUMENT_ROWS, ids[3].0.to_bytes().to_vec(), cut[..cut.len() - 1].to_vec());
    damage(store, changes);

    let stray_id = DocumentId(crmkit_core::id::RawId::from_bytes(&stray).unwrap());
    said_all(
        &check(),
        &[
            format!("scan layout problem: scan row of document {}: differs from what its record makes", ids[0]),
            format!("scan layout problem: scan row of document {}: missing", ids[2]),
            format!("scan layout problem: scan row of document {stray_id}: stored, but there is no such document"),
            format!("scan layout problem: scan row of document {}: cannot be read (", ids[3]),
            "4 scan layout problem(s)".to_string(),
        ],
    );
    // A report reading the damaged row's lines is refused, naming the document.
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    let mut err = String::new();
    Reader::scan_documents(&store.read().unwrap(), &mut |d| match d.lines().find_map(Result::err) {
        Some(e) => {
            err = e.to_string();
            false
        }
        None => true,
    })
    .unwrap();
    assert!(err.contains(&format!("scan row of document {}", ids[3])) && err.contains("cut short"), "{err}");
}

/// The ids of the completed shipments `r` scans.
fn shipments(r: &(impl Reader + ?Sized)) -> Vec<DocumentId> {
    let mut ids = Vec::new();
    Reader::scan_shipments(r, &mut |d| {
        assert_eq!((d.kind, d.state), (DocumentKind::Shipment, DocumentState::Completed), "{d:?}");
        ids.push(d.id);
        true
    })
    .unwrap();
    ids
}

#[test]
fn a_shipment_has_a_revenue_row_while_it_is_completed_on_both_backends_and_in_a_write() {
    for backend in [Backend::Redb, Backend::Memory] {
        let fx = Fixture::on_with(backend, settings());
        let (partner, manager) = fx.client("Альфа");
        let (a, b, c) = fx
            .store
            .transact(Some(manager), |tx| {
                let mut a = doc(DocumentKind::Shipment, "О-1", partner.id, None, &[("Насос", 2, "1200.50")]);
                a.state = DocumentState::Completed;
                let b = doc(DocumentKind::Shipment, "О-2", partner.id, None, &[("Клапан", 1, "99")]);
                let mut c = doc(DocumentKind::Invoice, "СЧ-1", partner.id, None, &[("Насос", 2, "1200.50")]);
                c.state = DocumentState::Completed;
                Ok((tx.create(a)?, tx.create(b)?, tx.create(c)?))
            })
            .unwrap();
        // Only the completed shipment is revenue; its row is its document row, byte for byte.
        let r = fx.store.read().unwrap();
        assert_eq!(shipments(&r), vec![a.id], "{backend:?}");
        let key = a.id.0.to_bytes();
        assert_eq!(
            r.kv_get(crmkit_core::store::tables::SHIPMENT_ROWS, &key).unwrap(),
            r.kv_get(DOCUMENT_ROWS, &key).unwrap()
        );
        drop(r);
        // In a write: the second completed, the first cancelled, both pending.
        let mut tx = fx.store.write(Some(manager)).unwrap();
        let mut b2: Document = tx.get(b.id).unwrap().unwrap();
        b2.state = DocumentState::Completed;
        tx.update(b2).unwrap();
        let mut a2: Document = tx.get(a.id).unwrap().unwrap();
        a2.state = DocumentState::Cancelled;
        tx.update(a2).unwrap();
        assert_eq!(shipments(&tx), vec![b.id], "{backend:?}");
        assert_eq!(shipments(&fx.store.read().unwrap()), vec![a.id], "others see none of it yet");
        tx.commit().unwrap();
        assert_eq!(shipments(&fx.store.read().unwrap()), vec![b.id]);
        // A deleted shipment takes its row away; the invoice never had one.
        let b3: Document = fx.store.read().unwrap().get(b.id).unwrap().unwrap();
        fx.store.transact(Some(manager), |tx| tx.delete::<Document>(b3.id, b3.version)).unwrap();
        assert_eq!(shipments(&fx.store.read().unwrap()), Vec::<DocumentId>::new());
        assert_eq!(fx.store.verify_shipment_rows().unwrap(), Vec::<String>::new());
        let _ = c;
    }
}

#[test]
fn check_names_a_stray_a_missing_and_a_damaged_revenue_row() {
    use crmkit_core::store::tables::SHIPMENT_ROWS;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let check = checked_demo(&dir);
    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    let ids = shipments(&store.read().unwrap());
    assert!(ids.len() >= 2, "the demo has completed shipments: {}", ids.len());
    let others: Vec<DocumentId> = scanned(&store.read().unwrap())
        .into_iter()
        .filter(|d| d.kind != DocumentKind::Shipment || d.state != DocumentState::Completed)
        .map(|d| d.id)
        .collect();
    let raw = |id: DocumentId| store.read().unwrap().kv_get(DOCUMENT_ROWS, &id.0.to_bytes()).unwrap().unwrap();
    // An order gets a revenue row; the first shipment's goes; the second's is cut short.
    let (order, cut) = (raw(others[0]), raw(ids[1]));
    let mut changes = Changes::new();
    changes.put(SHIPMENT_ROWS, others[0].0.to_bytes().to_vec(), order);
    changes.delete(SHIPMENT_ROWS, ids[0].0.to_bytes().to_vec());
    changes.put(SHIPMENT_ROWS, ids[1].0.to_bytes().to_vec(), cut[..cut.len() - 1].to_vec());
    damage(store, changes);
    said_all(
        &check(),
        &[
            format!("scan layout problem: scan row of shipment {}: stored, but there is no such shipment", others[0]),
            format!("scan layout problem: scan row of shipment {}: missing", ids[0]),
            format!("scan layout problem: scan row of shipment {}: cannot be read (", ids[1]),
            "3 scan layout problem(s)".to_string(),
        ],
    );
}
