//! The scan layout kept at write time: every deal's row says what its record and stage
//! history say (compared field by field, not through the row codec), a write transaction
//! scans its own writes, a deleted deal takes its row away, and `crmkit check` names a
//! damaged row, a missing one and a stray one.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use crmkit_core::hooks::{Hooks, View};
use crmkit_core::id::DealId;
use crmkit_core::model::{Deal, StageChange};
use crmkit_core::process::Engine;
use crmkit_core::store::kv::Changes;
use crmkit_core::store::tables::DEAL_ROWS;
use crmkit_core::store::{closing, DealHead, DealRow, Durability, Reader, Span, Store};
use crmkit_core::time::{SystemClock, Timestamp};

use crate::common::{free_moving_settings as settings, new_deal, Backend, Fixture};

/// What `r` scans, a row per deal.
fn scanned(r: &(impl Reader + ?Sized)) -> Vec<DealRow> {
    let mut rows = Vec::new();
    Reader::scan_deals(r, &mut |d| {
        rows.push(d.clone());
        true
    })
    .unwrap();
    rows
}

/// Asserts that `r` scans one row per deal, in id order, each saying what the deal's record
/// and stage history say.
pub(crate) fn assert_rows_match(r: &(impl Reader + ?Sized)) {
    let rows = scanned(r);
    let mut deals: Vec<Deal> = Vec::new();
    r.for_each::<Deal>(|d| {
        deals.push(d);
        true
    })
    .unwrap();
    assert_eq!(rows.iter().map(|d| d.id).collect::<Vec<_>>(), deals.iter().map(|d| d.id).collect::<Vec<_>>());
    for (row, d) in rows.iter().zip(&deals) {
        let fields = (
            (&row.kind, row.title().unwrap(), row.partner, &row.stage, row.status, row.manager, row.amount),
            (row.expected_close, row.probability, row.probability_manual, &row.source, &row.loss_reason),
            (row.competitor, row.created_at, row.closed_at, row.stage_entered_at),
        );
        let record = (
            (&d.kind, d.title.as_str(), d.partner, &d.stage, d.status, d.manager, d.amount),
            (d.expected_close, d.probability, d.probability_manual, &d.source, &d.loss_reason),
            (d.competitor, d.created_at, d.closed_at, d.stage_entered_at),
        );
        assert_eq!(fields, record, "deal {}", d.id);
        assert_eq!(row.custom().unwrap(), d.custom, "custom fields of deal {}", d.id);
        let history: Vec<StageChange> = r.stage_history(d.id).unwrap();
        assert_eq!(row.steps, history, "history of deal {}", d.id);
    }
    assert_heads_match(r, &deals);
}

/// What `r` scans of the deals' heads, a head per deal.
pub(crate) fn heads(r: &(impl Reader + ?Sized)) -> Vec<DealHead> {
    let mut heads = Vec::new();
    Reader::scan_deal_heads(r, &mut |h| {
        heads.push(h.clone());
        true
    })
    .unwrap();
    heads
}

/// Asserts that `r` scans one head per deal of `deals` (all of them, in id order), each
/// saying what the deal's record says and closed as its history replayed to the end of
/// time.
fn assert_heads_match(r: &(impl Reader + ?Sized), deals: &[Deal]) {
    let heads = heads(r);
    assert_eq!(heads.iter().map(|h| h.id).collect::<Vec<_>>(), deals.iter().map(|d| d.id).collect::<Vec<_>>());
    for (h, d) in heads.iter().zip(deals) {
        let fields = (&h.kind, h.partner, h.status, h.manager, h.amount, h.expected_close, h.competitor, h.created_at);
        let record = (&d.kind, d.partner, d.status, d.manager, d.amount, d.expected_close, d.competitor, d.created_at);
        assert_eq!(fields, record, "head of deal {}", d.id);
        let history: Vec<StageChange> = r.stage_history(d.id).unwrap();
        assert_eq!(h.last_step_at, history.last().map(|s| s.at), "last step of deal {}", d.id);
        assert_eq!(h.closing(), closing(&history, Timestamp(i64::MAX)), "closing of deal {}", d.id);
    }
}

#[test]
fn every_row_says_what_the_record_and_history_say_on_both_backends() {
    for backend in [Backend::Redb, Backend::Memory] {
        let fx = Fixture::on_with(backend, settings());
        let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
        let (partner, manager) = fx.client("Альфа");
        let other = fx.user("petrov");
        let mut tx = fx.store.write(Some(manager)).unwrap();
        let mut d = new_deal(partner.id, manager, 700);
        d.source = Some("exhibition".into());
        d.expected_close = chrono::NaiveDate::from_ymd_opt(2026, 3, 1);
        d.custom.insert("tender_number".into(), crmkit_core::model::CustomValue::String("Т-17".into()));
        let a = engine.create_deal(&mut tx, d).unwrap();
        let a = engine.move_deal(&mut tx, a.id, a.version, "needs_analysis", Some("после звонка")).unwrap();
        engine.create_deal(&mut tx, new_deal(partner.id, other, 300)).unwrap();
        tx.commit().unwrap();
        assert_rows_match(&fx.store.read().unwrap());
        // An update of the record alone (no step) rewrites the row too.
        let mut a: Deal = fx.store.read().unwrap().get(a.id).unwrap().unwrap();
        a.title = "Поставка насосов".into();
        a.manager = other;
        fx.store.transact(Some(manager), |tx| tx.update(a.clone())).unwrap();
        let r = fx.store.read().unwrap();
        assert_rows_match(&r);
        assert_eq!(scanned(&r)[0].title().unwrap(), "Поставка насосов");
        assert_eq!(scanned(&r)[0].steps.len(), 2);
        assert_eq!(fx.store.verify_scan_rows().unwrap(), Vec::<String>::new());
    }
}

#[test]
fn a_write_transaction_scans_its_own_writes_and_a_deleted_deal_leaves_no_row() {
    let fx = Fixture::on_with(Backend::Redb, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, manager) = fx.client("Альфа");
    let ids: Vec<DealId> = fx
        .store
        .transact(Some(manager), |tx| {
            (0..3).map(|i| Ok(engine.create_deal(tx, new_deal(partner.id, manager, 100 + i))?.id)).collect()
        })
        .unwrap();
    let mut tx = fx.store.write(Some(manager)).unwrap();
    // A new deal, a moved one and a deleted one, all pending.
    let added = engine.create_deal(&mut tx, new_deal(partner.id, manager, 900)).unwrap();
    let moved: Deal = tx.get(ids[1]).unwrap().unwrap();
    engine.move_deal(&mut tx, moved.id, moved.version, "needs_analysis", None).unwrap();
    let gone: Deal = tx.get(ids[0]).unwrap().unwrap();
    tx.delete::<Deal>(gone.id, gone.version).unwrap();
    assert_rows_match(&tx);
    let inside = scanned(&tx);
    assert_eq!(inside.iter().map(|d| d.id).collect::<Vec<_>>(), vec![ids[1], ids[2], added.id]);
    assert_eq!(inside[0].stage.as_deref(), Some("needs_analysis"));
    // A scan stopped early stops (the pending rows after the stop are not visited).
    let mut seen = 0;
    View::scan_deals(&tx, &mut |_| {
        seen += 1;
        seen < 2
    })
    .unwrap();
    assert_eq!(seen, 2);
    // Others see none of it until the commit, and all of it after.
    assert_eq!(scanned(&fx.store.read().unwrap()).len(), 3);
    tx.commit().unwrap();
    let r = fx.store.read().unwrap();
    assert_eq!(scanned(&r), inside);
    assert_rows_match(&r);
}

/// A demo site in `dir` that `crmkit check` passes, and the command that checks it.
pub(crate) fn checked_demo(dir: &Path) -> impl Fn() -> Output + '_ {
    crmkit::make_demo(dir, 60, 7, false, false, Some((16, 16)), false).unwrap();
    let check = || Command::new(crate::cli::binary()).args(["check", dir.to_str().unwrap()]).output().unwrap();
    let ok = check();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("funnel totals, scan rows and heads match the deals"));
    assert!(String::from_utf8_lossy(&ok.stdout)
        .contains("document, revenue, interaction and task rows and the deals' documents match their records"));
    check
}

/// `key` with its last byte changed: an id no record has.
pub(crate) fn stray(key: [u8; 16]) -> [u8; 16] {
    let mut k = key;
    k[15] ^= 0x5a;
    k
}

/// Writes `changes` straight into the backend of `store`, past every check.
pub(crate) fn damage(store: Store, changes: Changes) {
    let kv = store.into_backend();
    kv.write().unwrap().commit(changes, Durability::Immediate).unwrap();
}

/// Asserts that `o` failed and said every line of `want` on stderr.
pub(crate) fn said_all(o: &Output, want: &[String]) {
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    for want in want {
        assert!(said.contains(want), "{said}\nwanted: {want}");
    }
}

#[test]
fn check_names_a_damaged_a_missing_and_a_stray_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let check = checked_demo(&dir);

    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    assert_rows_match(&store.read().unwrap());
    let ids: Vec<DealId> = scanned(&store.read().unwrap()).iter().map(|d| d.id).collect();
    let raw = |id: DealId| store.read().unwrap().kv_get(DEAL_ROWS, &id.0.to_bytes()).unwrap().unwrap();
    // The first deal's row gets the second's bytes; the third's row goes; a row for an id
    // no deal has appears.
    let (first, second) = (raw(ids[0]), raw(ids[1]));
    assert_ne!(first, second);
    let stray = stray(ids[2].0.to_bytes());
    let mut changes = Changes::new();
    changes.put(DEAL_ROWS, ids[0].0.to_bytes().to_vec(), second.clone());
    changes.delete(DEAL_ROWS, ids[2].0.to_bytes().to_vec());
    changes.put(DEAL_ROWS, stray.to_vec(), second);
    damage(store, changes);

    let stray_id = DealId(crmkit_core::id::RawId::from_bytes(&stray).unwrap());
    said_all(
        &check(),
        &[
            format!(
                "scan layout problem: scan row of deal {}: differs from what its record and stage history make",
                ids[0]
            ),
            format!("scan layout problem: scan row of deal {}: missing", ids[2]),
            format!("scan layout problem: scan row of deal {stray_id}: stored, but there is no such deal"),
            "3 scan layout problem(s)".to_string(),
        ],
    );
}

/// The ids of the deals `r` scans in `span`.
fn ids_in(r: &(impl Reader + ?Sized), span: Span) -> Vec<DealId> {
    let mut ids = Vec::new();
    r.scan_deals_in(span, &mut |d| {
        ids.push(d.id);
        true
    })
    .unwrap();
    ids
}

#[test]
fn spans_cut_a_scan_into_parts_that_hold_every_row_once_on_both_backends_and_in_a_write() {
    for backend in [Backend::Redb, Backend::Memory] {
        let fx = Fixture::on_with(backend, settings());
        let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
        let (partner, manager) = fx.client("Альфа");
        let ids: Vec<DealId> = fx
            .store
            .transact(Some(manager), |tx| {
                (0..6).map(|i| Ok(engine.create_deal(tx, new_deal(partner.id, manager, 100 + i))?.id)).collect()
            })
            .unwrap();
        let mut tx = fx.store.write(Some(manager)).unwrap();
        let added = engine.create_deal(&mut tx, new_deal(partner.id, manager, 900)).unwrap().id;
        let gone: Deal = tx.get(ids[2]).unwrap().unwrap();
        tx.delete::<Deal>(gone.id, gone.version).unwrap();
        let r = fx.store.read().unwrap();
        // Cut at the third and fifth deal: below, between (from inclusive, to exclusive), above.
        let (a, b) = (Some(ids[2].0), Some(ids[4].0));
        let parts = [Span { from: None, to: a }, Span { from: a, to: b }, Span { from: b, to: None }];
        let stored: Vec<Vec<DealId>> = parts.iter().map(|s| ids_in(&r, *s)).collect();
        assert_eq!(stored, vec![ids[..2].to_vec(), ids[2..4].to_vec(), ids[4..].to_vec()], "{backend:?}");
        // In the write, the pending rows fall in their spans too: the deleted deal in none.
        let pending: Vec<Vec<DealId>> = parts.iter().map(|s| ids_in(&tx, *s)).collect();
        assert_eq!(pending, vec![ids[..2].to_vec(), vec![ids[3]], vec![ids[4], ids[5], added]], "{backend:?}");
        assert_eq!(ids_in(&tx, Span::ALL), pending.concat());
        // An empty span holds nothing.
        assert_eq!(ids_in(&r, Span { from: b, to: a }), Vec::<DealId>::new());
    }
}
