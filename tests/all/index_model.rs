//! Property test: after any sequence of creates, updates and deletes — valid or not — the
//! stored records equal an in-memory reference model, every secondary index equals a naive
//! recomputation from the model, and refused operations changed nothing.

use std::collections::{BTreeMap, BTreeSet};

use crmkit_core::id::{RawId, TypedId, UserId};
use crmkit_core::model::{
    text_prefix, ContactPerson, Deal, DealStatus, Interaction, InteractionKind, Partner, PartnerRole,
};
use crmkit_core::store::{Index, Reader};
use crmkit_core::Error;
use proptest::prelude::*;

use crate::common::{new_deal, Fixture};

#[derive(Debug, Clone)]
enum Op {
    CreatePartner { parent: Option<usize>, manager: usize },
    ReparentPartner { partner: usize, parent: Option<usize> },
    DeletePartner { partner: usize },
    CreateDeal { partner: usize, manager: usize, amount: i64 },
    MoveDeal { deal: usize, stage: usize, status: usize, manager: usize, stale: bool },
    DeleteDeal { deal: usize },
    CreateContact { partner: usize },
    DeleteContact { contact: usize },
    CreateInteraction { deal: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..64;
    prop_oneof![
        (proptest::option::of(i.clone()), 0usize..3)
            .prop_map(|(parent, manager)| Op::CreatePartner { parent, manager }),
        (i.clone(), proptest::option::of(i.clone()))
            .prop_map(|(partner, parent)| Op::ReparentPartner { partner, parent }),
        i.clone().prop_map(|partner| Op::DeletePartner { partner }),
        (i.clone(), 0usize..3, -5i64..1000).prop_map(|(partner, manager, amount)| Op::CreateDeal {
            partner,
            manager,
            amount
        }),
        (i.clone(), 0usize..6, 0usize..4, 0usize..3, proptest::bool::weighted(0.15))
            .prop_map(|(deal, stage, status, manager, stale)| Op::MoveDeal { deal, stage, status, manager, stale }),
        i.clone().prop_map(|deal| Op::DeleteDeal { deal }),
        i.clone().prop_map(|partner| Op::CreateContact { partner }),
        i.clone().prop_map(|contact| Op::DeleteContact { contact }),
        i.prop_map(|deal| Op::CreateInteraction { deal }),
    ]
}

#[derive(Default)]
struct Model {
    partners: BTreeMap<RawId, Partner>,
    deals: BTreeMap<RawId, Deal>,
    contacts: BTreeMap<RawId, ContactPerson>,
    interactions: BTreeMap<RawId, Interaction>,
}

fn nth<T: Clone>(m: &BTreeMap<RawId, T>, i: usize) -> Option<T> {
    (!m.is_empty()).then(|| m.values().nth(i % m.len()).cloned().expect("in range"))
}

const STAGES: [&str; 6] = ["qualification", "needs_analysis", "proposal", "negotiation", "contract", "nonexistent"];

fn run(ops: Vec<Op>) {
    let fx = Fixture::new();
    let managers: Vec<UserId> = (0..3).map(|i| fx.user(&format!("mgr{i}"))).collect();
    let mut m = Model::default();
    for op in ops {
        let before = fx.dump();
        // (whether the store accepted it, whether the model says it must, the error if any)
        let (accepted, expected, error): (bool, bool, Option<Error>) = match op {
            Op::CreatePartner { parent, manager } => {
                let mut p = Partner::new(format!("P{}", m.partners.len()), PartnerRole::Client);
                p.parent = parent.and_then(|i| nth(&m.partners, i)).map(|x| x.id);
                p.manager = Some(managers[manager]);
                match fx.store.transact(None, |tx| tx.create(p)) {
                    Ok(p) => {
                        m.partners.insert(p.id.raw(), p);
                        (true, true, None)
                    }
                    Err(e) => (false, true, Some(e)),
                }
            }
            Op::ReparentPartner { partner, parent } => {
                let Some(mut p) = nth(&m.partners, partner) else { continue };
                let new_parent = parent.and_then(|i| nth(&m.partners, i)).map(|x| x.id);
                // A cycle: the new parent is p or has p among its ancestors.
                let mut at = new_parent;
                let mut cycle = false;
                while let Some(a) = at {
                    if a == p.id {
                        cycle = true;
                        break;
                    }
                    at = m.partners[&a.raw()].parent;
                }
                p.parent = new_parent;
                match fx.store.transact(None, |tx| tx.update(p)) {
                    Ok(p) => {
                        m.partners.insert(p.id.raw(), p);
                        (true, !cycle, None)
                    }
                    Err(e) => (false, !cycle, Some(e)),
                }
            }
            Op::DeletePartner { partner } => {
                let Some(p) = nth(&m.partners, partner) else { continue };
                let id = p.id;
                let referenced = m.partners.values().any(|x| x.parent == Some(id))
                    || m.deals.values().any(|d| d.partner == id)
                    || m.contacts.values().any(|c| c.partner == id)
                    || m.interactions.values().any(|i| i.partner == id);
                let r = fx.store.transact(None, |tx| tx.delete::<Partner>(id, p.version));
                if r.is_ok() {
                    m.partners.remove(&id.raw());
                }
                if let Err(e) = &r {
                    assert!(matches!(e, Error::Referenced { .. }), "{e}");
                }
                (r.is_ok(), !referenced, r.err())
            }
            Op::CreateDeal { partner, manager, amount } => {
                let Some(p) = nth(&m.partners, partner) else { continue };
                match fx.store.transact(None, |tx| tx.create(new_deal(p.id, managers[manager], amount))) {
                    Ok(d) => {
                        m.deals.insert(d.id.raw(), d);
                        (true, amount >= 0, None)
                    }
                    Err(e) => (false, amount >= 0, Some(e)),
                }
            }
            Op::MoveDeal { deal, stage, status, manager, stale } => {
                let Some(mut d) = nth(&m.deals, deal) else { continue };
                d.stage = Some(STAGES[stage].to_string());
                d.status = [DealStatus::InProgress, DealStatus::OnHold, DealStatus::Won, DealStatus::Lost][status];
                d.loss_reason = (d.status == DealStatus::Lost).then(|| "price".to_string());
                if !d.status.is_closed() {
                    d.closed_at = None;
                }
                d.manager = managers[manager];
                if stale {
                    d.version -= 1;
                }
                let valid = !stale && stage < 5;
                match fx.store.transact(None, |tx| tx.update(d)) {
                    Ok(d) => {
                        m.deals.insert(d.id.raw(), d);
                        (true, valid, None)
                    }
                    Err(e) => {
                        if stale {
                            assert!(matches!(e, Error::Conflict { .. }), "{e}");
                        }
                        (false, valid, Some(e))
                    }
                }
            }
            Op::DeleteDeal { deal } => {
                let Some(d) = nth(&m.deals, deal) else { continue };
                let referenced = m.interactions.values().any(|i| i.deal == Some(d.id));
                let r = fx.store.transact(None, |tx| tx.delete::<Deal>(d.id, d.version));
                if r.is_ok() {
                    m.deals.remove(&d.id.raw());
                }
                (r.is_ok(), !referenced, r.err())
            }
            Op::CreateContact { partner } => {
                let Some(p) = nth(&m.partners, partner) else { continue };
                let c = fx.store.transact(None, |tx| tx.create(ContactPerson::new(p.id, "Иванов Иван"))).unwrap();
                m.contacts.insert(c.id.raw(), c);
                (true, true, None)
            }
            Op::DeleteContact { contact } => {
                let Some(c) = nth(&m.contacts, contact) else { continue };
                let r = fx.store.transact(None, |tx| tx.delete::<ContactPerson>(c.id, c.version));
                m.contacts.remove(&c.id.raw());
                (r.is_ok(), true, r.err())
            }
            Op::CreateInteraction { deal } => {
                let Some(d) = nth(&m.deals, deal) else { continue };
                let mut i = Interaction::new(InteractionKind::Note, crate::common::T0, d.partner, "Заметка");
                i.deal = Some(d.id);
                let i = fx.store.transact(None, |tx| tx.create(i)).unwrap();
                m.interactions.insert(i.id.raw(), i);
                (true, true, None)
            }
        };
        assert_eq!(accepted, expected, "outcome differs from the model: {error:?}");
        if !accepted {
            assert!(fx.dump() == before, "a refused operation changed the database");
        }
        fx.clock.advance(1000);
    }
    check_against(&fx, &m);
}

fn check_against(fx: &Fixture, m: &Model) {
    assert_eq!(fx.store.verify_indexes().unwrap(), Vec::<String>::new());
    let r = fx.store.read().unwrap();
    let stored_partners: Vec<Partner> = r.list(None, usize::MAX).unwrap();
    assert_eq!(stored_partners, m.partners.values().cloned().collect::<Vec<_>>());
    let stored_deals: Vec<Deal> = r.list(None, usize::MAX).unwrap();
    assert_eq!(stored_deals, m.deals.values().cloned().collect::<Vec<_>>());
    let stored_contacts: Vec<ContactPerson> = r.list(None, usize::MAX).unwrap();
    assert_eq!(stored_contacts, m.contacts.values().cloned().collect::<Vec<_>>());

    let expect = |index: Index, pairs: Vec<(Vec<u8>, RawId)>| {
        let want: BTreeSet<_> = pairs.into_iter().collect();
        let got: BTreeSet<_> = r.index_entries(index).unwrap().into_iter().collect();
        assert_eq!(got, want, "index {index:?} disagrees with a naive scan");
    };
    expect(Index::DealByPartner, m.deals.values().map(|d| (d.partner.raw().to_bytes().to_vec(), d.id.raw())).collect());
    expect(Index::DealByManager, m.deals.values().map(|d| (d.manager.raw().to_bytes().to_vec(), d.id.raw())).collect());
    expect(
        Index::DealByStage,
        m.deals.values().map(|d| (text_prefix(&[&d.kind, d.stage.as_deref().unwrap_or("")]), d.id.raw())).collect(),
    );
    expect(Index::DealByStatus, m.deals.values().map(|d| (text_prefix(&[d.status.name()]), d.id.raw())).collect());
    expect(
        Index::PartnerByParent,
        m.partners.values().filter_map(|p| p.parent.map(|x| (x.raw().to_bytes().to_vec(), p.id.raw()))).collect(),
    );
    expect(
        Index::PartnerByManager,
        m.partners.values().filter_map(|p| p.manager.map(|x| (x.raw().to_bytes().to_vec(), p.id.raw()))).collect(),
    );
    expect(
        Index::PartnerByName,
        m.partners.values().map(|p| (text_prefix(&[&p.name.to_lowercase()]), p.id.raw())).collect(),
    );
    expect(
        Index::ContactByPartner,
        m.contacts.values().map(|c| (c.partner.raw().to_bytes().to_vec(), c.id.raw())).collect(),
    );
    expect(
        Index::InteractionByDeal,
        m.interactions.values().filter_map(|i| i.deal.map(|d| (d.raw().to_bytes().to_vec(), i.id.raw()))).collect(),
    );
    expect(
        Index::InteractionByPartner,
        m.interactions.values().map(|i| (i.partner.raw().to_bytes().to_vec(), i.id.raw())).collect(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn indexes_agree_with_a_naive_scan_after_random_operations(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
