//! The demo company: deterministic, valid, and shaped like a real sales department.

use std::collections::BTreeMap;
use std::sync::Arc;

use crmkit_core::demo::{self, DemoOptions};
use crmkit_core::model::{Deal, DealStatus, EntityKind, Partner, PartnerRole};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::ManualClock;
use crmkit_core::Installation;

fn make(deals: usize, seed: u64) -> (tempfile::TempDir, Installation, demo::Summary) {
    let dir = tempfile::tempdir().unwrap();
    let opts = DemoOptions::new(deals, seed);
    let clock = Arc::new(ManualClock::new(opts.start));
    let inst = Installation::init(&dir.path().join("demo"), Some(demo::DEMO_CONFIG), clock.clone()).unwrap();
    let summary = demo::populate(inst.store(), &clock, &opts, &mut |_| {}).unwrap();
    (dir, inst, summary)
}

#[test]
fn the_same_seed_gives_the_same_company() {
    let (_a, a, sa) = make(400, 7);
    let (_b, b, sb) = make(400, 7);
    assert_eq!(sa.counts, sb.counts);
    assert!(crate::common::dump(a.store()) == crate::common::dump(b.store()), "same seed, different data");
    let (_c, c, _) = make(400, 8);
    assert!(crate::common::dump(a.store()) != crate::common::dump(c.store()), "the seed changes nothing");
}

#[test]
fn the_demo_looks_like_a_sales_department() {
    let (_d, inst, summary) = make(3000, 42);
    let stats = inst.store().stats().unwrap();
    for k in EntityKind::ALL {
        if k != EntityKind::Attachment {
            assert!(stats.entities[&k] > 0, "no {k} in the demo");
        }
    }
    assert_eq!(stats.entities[&EntityKind::Deal], 3000);
    assert_eq!(inst.store().verify_indexes().unwrap(), Vec::<String>::new());
    assert_eq!(summary.counts[&EntityKind::Deal], 3000);
    let r = inst.store().read().unwrap();
    let mut by_status: BTreeMap<DealStatus, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost_with_competitor = 0;
    r.for_each::<Deal>(|d| {
        *by_status.entry(d.status).or_default() += 1;
        *by_kind.entry(d.kind.clone()).or_default() += 1;
        lost_with_competitor += usize::from(d.competitor.is_some());
        true
    })
    .unwrap();
    for s in DealStatus::ALL {
        assert!(by_status.get(&s).copied().unwrap_or(0) > 20, "too few {s:?} deals: {by_status:?}");
    }
    assert_eq!(by_kind.len(), 4, "{by_kind:?}");
    assert!(lost_with_competitor > 50);
    let won = by_status[&DealStatus::Won] as f64;
    let lost = by_status[&DealStatus::Lost] as f64;
    assert!((0.25..0.6).contains(&(won / (won + lost))), "win rate {:.2}", won / (won + lost));

    // Holdings with members, and competitors.
    let partners: Vec<Partner> = r.list(None, usize::MAX).unwrap();
    let holdings = partners
        .iter()
        .filter(|p| !r.ids_by(Index::PartnerByParent, &p.id.0.to_bytes(), None, 1).unwrap().is_empty())
        .count();
    assert!(holdings >= 3, "{holdings} holdings");
    assert_eq!(partners.iter().filter(|p| p.has_role(PartnerRole::Competitor)).count(), 12);
}

#[test]
fn every_demo_record_passes_validation_again() {
    // Re-saving a sample of every kind through the validating path changes nothing.
    let (_d, inst, _) = make(300, 3);
    let store = inst.store();
    let before = crate::common::dump(store);
    store
        .transact(None, |tx| {
            for d in tx.list::<Deal>(None, 200)? {
                tx.update(d)?;
            }
            for p in tx.list::<Partner>(None, 200)? {
                tx.update(p)?;
            }
            for c in tx.list::<crmkit_core::model::Counterparty>(None, 200)? {
                tx.update(c)?;
            }
            for c in tx.list::<crmkit_core::model::ContactPerson>(None, 200)? {
                tx.update(c)?;
            }
            for d in tx.list::<crmkit_core::model::Document>(None, 200)? {
                tx.update(d)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(crate::common::dump(store) == before);
}
