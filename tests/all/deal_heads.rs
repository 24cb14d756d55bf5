//! The deal heads the reports over every deal read when the present is enough: on a sales
//! history made by hand (losses, a reopening and a win after it, a loss to a competitor)
//! the lost-deals, managers and execution reports read from the heads answer exactly as the
//! same reports replaying every history to the same instant; a deal with a step after the
//! clock's now (won, then reopened after now) is counted as it stood then. The bound on
//! every step's instant rises with each later step, pending ones included, and never falls;
//! `crmkit check` names a damaged, a missing and a stray head, and a bound that falls short.

use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::hooks::View;
use crmkit_core::id::{DealId, RawId};
use crmkit_core::model::Deal;
use crmkit_core::process::Engine;
use crmkit_core::store::kv::Changes;
use crmkit_core::store::tables::{DEAL_HEADS, META};
use crmkit_core::store::{Reader, Store};
use crmkit_core::time::{SystemClock, Timestamp};
use rust_decimal::Decimal;

use crate::analytics_lost::sales;
use crate::common::{free_moving_settings as settings, Backend, T0};
use crate::scan_rows::{checked_demo, damage, heads, said_all, stray};

const DAY: i64 = 86_400_000;

/// The last millisecond of `day`.
fn end_of(day: &str) -> Timestamp {
    let day: NaiveDate = day.parse().unwrap();
    Timestamp::start_of(day.succ_opt().unwrap()).plus_millis(-1)
}

#[test]
fn reports_read_from_the_heads_answer_as_the_histories_replayed_to_the_same_instant() {
    for backend in [Backend::Redb, Backend::Memory] {
        let s = sales(backend);
        let r = s.fx.store.read().unwrap();
        let head = View::user_with_login(&r, "head").unwrap().unwrap().id;
        let deal = |amount: i64| -> Deal {
            let id = heads(&r).into_iter().find(|h| h.amount.amount == Decimal::from(amount)).unwrap().id;
            r.get(id).unwrap().unwrap()
        };
        let (d7, d8) = (deal(150_000), deal(20_000));
        drop(r);
        // D8 (open) is put on hold on 04-06: a step after 04-04 that changes none of the
        // three reports' figures, so that a report as of 04-04 must replay the histories.
        s.fx.clock.set(T0.plus_millis(35 * DAY));
        s.fx.store.transact(Some(head), |tx| Engine::without_hooks().hold(tx, d8.id, d8.version, "")).unwrap();
        let r = s.fx.store.read().unwrap();
        assert_eq!(Reader::latest_step_at(&r).unwrap(), Some(T0.plus_millis(35 * DAY)));
        crate::scan_rows::assert_rows_match(&r);
        drop(r);
        // The clock at the end of 04-04: the report without `as_of` reads the heads, the one
        // as of 04-04 the histories.
        s.fx.clock.set(end_of("2026-04-04"));
        for report in ["lost", "managers", "execution"] {
            let now = s.run(report, &[]).unwrap();
            let replayed = s.run(report, &[("as_of", "2026-04-04")]).unwrap();
            assert_eq!(now, replayed, "{report} on {backend:?}");
            assert!(now.lines().count() > 2, "{report} has rows: {now}");
        }
        // Won by then: D4 (50,000), D7 (150,000) and D5 (400,000, won 04-01 after its
        // reopening).
        let total = |execution: &str| execution.lines().find(|l| l.starts_with("total")).unwrap().to_string();
        let execution = s.run("execution", &[]).unwrap();
        assert!(total(&execution).starts_with("total |  | all won deals | RUB | 3 | 600000 |"), "{execution}");

        // D7 (won 03-14) is reopened by the head of sales on 04-07; the clock goes back to
        // the end of 04-04. D7's head says open, but execution looks at now, when D7 stood
        // won: its history tells.
        s.fx.clock.set(T0.plus_millis(36 * DAY));
        s.fx.store.transact(Some(head), |tx| Engine::without_hooks().reopen(tx, d7.id, d7.version, None, "")).unwrap();
        s.fx.clock.set(end_of("2026-04-04"));
        assert_eq!(heads(&s.fx.store.read().unwrap()).iter().find(|h| h.id == d7.id).unwrap().closing(), None);
        let execution = s.run("execution", &[]).unwrap();
        assert_eq!(execution, s.run("execution", &[("as_of", "2026-04-04")]).unwrap(), "{backend:?}");
        assert!(total(&execution).starts_with("total |  | all won deals | RUB | 3 | 600000 |"), "{execution}");

        // The clock back at the end of 03-31: D5's win (04-01) and D6's loss (04-04) lie
        // after now. Execution looks at now: D5 stood reopened then, not won; D7 won.
        s.fx.clock.set(end_of("2026-03-31"));
        let execution = s.run("execution", &[]).unwrap();
        assert_eq!(execution, s.run("execution", &[("as_of", "2026-03-31")]).unwrap(), "{backend:?}");
        assert!(total(&execution).starts_with("total |  | all won deals | RUB | 2 | 200000 |"), "{execution}");
    }
}

#[test]
fn check_names_a_damaged_a_missing_and_a_stray_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let check = checked_demo(&dir);

    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    let ids: Vec<DealId> = heads(&store.read().unwrap()).iter().map(|h| h.id).collect();
    let raw = |id: DealId| store.read().unwrap().kv_get(DEAL_HEADS, &id.0.to_bytes()).unwrap().unwrap();
    // The first deal's head gets the second's bytes; the third's goes; a head for an id no
    // deal has appears.
    let (first, second) = (raw(ids[0]), raw(ids[1]));
    assert_ne!(first, second);
    let stray = stray(ids[2].0.to_bytes());
    let mut changes = Changes::new();
    changes.put(DEAL_HEADS, ids[0].0.to_bytes().to_vec(), second.clone());
    changes.delete(DEAL_HEADS, ids[2].0.to_bytes().to_vec());
    changes.put(DEAL_HEADS, stray.to_vec(), second);
    // And the bound on every step's instant falls to the epoch.
    changes.put(META, b"latest_step_at".to_vec(), 0i64.to_be_bytes().to_vec());
    damage(store, changes);

    let stray_id = DealId(RawId::from_bytes(&stray).unwrap());
    said_all(
        &check(),
        &[
            format!(
                "scan layout problem: scan row of deal head {}: differs from what its record and stage history make",
                ids[0]
            ),
            format!("scan layout problem: scan row of deal head {}: missing", ids[2]),
            format!("scan layout problem: scan row of deal head {stray_id}: stored, but there is no such deal head"),
            "scan layout problem: the latest step's instant (1970-01-01".to_string(),
            ") is before the last step of deal ".to_string(),
            "4 scan layout problem(s)".to_string(),
        ],
    );
}

#[test]
fn the_latest_step_is_raised_by_every_commit_with_a_later_step_seen_pending_and_never_lowered() {
    let fx = crate::common::Fixture::with_settings(settings());
    let engine = Engine::without_hooks();
    let (partner, manager) = fx.client("Альфа");
    assert_eq!(Reader::latest_step_at(&fx.store.read().unwrap()).unwrap(), None, "no step yet");
    let a = fx
        .store
        .transact(Some(manager), |tx| engine.create_deal(tx, crate::common::new_deal(partner.id, manager, 100)))
        .unwrap();
    assert_eq!(Reader::latest_step_at(&fx.store.read().unwrap()).unwrap(), Some(T0));
    // A later step, pending: the transaction sees it, others do not until the commit.
    fx.clock.set(T0.plus_millis(DAY));
    let mut tx = fx.store.write(Some(manager)).unwrap();
    let b = engine.create_deal(&mut tx, crate::common::new_deal(partner.id, manager, 200)).unwrap();
    assert_eq!(Reader::latest_step_at(&tx).unwrap(), Some(T0.plus_millis(DAY)));
    assert_eq!(View::latest_step_at(&tx).unwrap(), Some(T0.plus_millis(DAY)));
    assert_eq!(Reader::latest_step_at(&fx.store.read().unwrap()).unwrap(), Some(T0));
    tx.commit().unwrap();
    assert_eq!(Reader::latest_step_at(&fx.store.read().unwrap()).unwrap(), Some(T0.plus_millis(DAY)));
    // A step taken with the clock set back does not lower it; nor does deleting the deal of
    // the latest step.
    fx.clock.set(T0.plus_millis(DAY / 2));
    let a: Deal = fx.store.read().unwrap().get(a.id).unwrap().unwrap();
    fx.store.transact(Some(manager), |tx| engine.hold(tx, a.id, a.version, "")).unwrap();
    let b: Deal = fx.store.read().unwrap().get(b.id).unwrap().unwrap();
    fx.store.transact(Some(manager), |tx| tx.delete::<Deal>(b.id, b.version)).unwrap();
    assert_eq!(Reader::latest_step_at(&fx.store.read().unwrap()).unwrap(), Some(T0.plus_millis(DAY)));
    assert_eq!(fx.store.verify_deal_heads().unwrap(), Vec::<String>::new());
}
