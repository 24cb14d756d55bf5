//! Property test: after any sequence of creates, updates, deletes and process steps — valid
//! or not — the stored records equal an in-memory reference model, every secondary index
//! equals a naive recomputation from the model, every deal's stage history is consistent
//! with the deal, and refused operations changed nothing — on every backend.

use std::collections::{BTreeMap, BTreeSet};

use crmkit_core::id::{RawId, TypedId, UserId};
use crmkit_core::model::{
    text_prefix, ContactPerson, Deal, DealStatus, Interaction, InteractionKind, Partner, PartnerRole, Role, User,
};
use crmkit_core::process::{check_history, Engine, Outcome};
use crmkit_core::store::{Index, Reader};
use crmkit_core::Error;
use proptest::prelude::*;

use crate::common::{new_deal, Backend, Fixture};

/// A process engine operation; stage numbers index `STAGES`.
#[derive(Debug, Clone)]
enum Step {
    Move(usize),
    /// A move to the next stage (`true`) or the previous one.
    Neighbour(bool),
    Check(bool),
    Hold,
    Resume,
    Won,
    Lost {
        known_reason: bool,
    },
    Reopen(Option<usize>),
}

#[derive(Debug, Clone)]
enum Op {
    CreatePartner {
        parent: Option<usize>,
        manager: usize,
    },
    ReparentPartner {
        partner: usize,
        parent: Option<usize>,
    },
    DeletePartner {
        partner: usize,
    },
    CreateDeal {
        partner: usize,
        manager: usize,
        amount: i64,
        source: bool,
        via_engine: bool,
    },
    /// A store-level update of fields the process does not own.
    UpdateDeal {
        deal: usize,
        manager: usize,
        source: bool,
        stale: bool,
    },
    /// A step through the process engine, by user `actor` (the last one is a head).
    Process {
        deal: usize,
        step: Step,
        actor: usize,
        stale: bool,
    },
    DeleteDeal {
        deal: usize,
    },
    CreateContact {
        partner: usize,
    },
    DeleteContact {
        contact: usize,
    },
    CreateInteraction {
        deal: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0usize..6).prop_map(Step::Move),
        4 => proptest::bool::weighted(0.7).prop_map(Step::Neighbour),
        2 => any::<bool>().prop_map(Step::Check),
        1 => Just(Step::Hold),
        2 => Just(Step::Resume),
        1 => Just(Step::Won),
        1 => proptest::bool::weighted(0.8).prop_map(|known_reason| Step::Lost { known_reason }),
        3 => proptest::option::of(0usize..6).prop_map(Step::Reopen),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..64;
    prop_oneof![
        1 => (proptest::option::of(i.clone()), 0usize..3)
            .prop_map(|(parent, manager)| Op::CreatePartner { parent, manager }),
        1 => (i.clone(), proptest::option::of(i.clone()))
            .prop_map(|(partner, parent)| Op::ReparentPartner { partner, parent }),
        1 => i.clone().prop_map(|partner| Op::DeletePartner { partner }),
        2 => (i.clone(), 0usize..3, -5i64..1000, proptest::bool::weighted(0.7), any::<bool>()).prop_map(
            |(partner, manager, amount, source, via_engine)| {
                Op::CreateDeal { partner, manager, amount, source, via_engine }
            }
        ),
        1 => (i.clone(), 0usize..3, any::<bool>(), proptest::bool::weighted(0.15))
            .prop_map(|(deal, manager, source, stale)| Op::UpdateDeal { deal, manager, source, stale }),
        6 => (i.clone(), step(), 0usize..4, proptest::bool::weighted(0.1))
            .prop_map(|(deal, step, actor, stale)| Op::Process { deal, step, actor, stale }),
        1 => i.clone().prop_map(|deal| Op::DeleteDeal { deal }),
        1 => i.clone().prop_map(|partner| Op::CreateContact { partner }),
        1 => i.clone().prop_map(|contact| Op::DeleteContact { contact }),
        1 => i.prop_map(|deal| Op::CreateInteraction { deal }),
    ]
}

#[derive(Default)]
struct Model {
    partners: BTreeMap<RawId, Partner>,
    deals: BTreeMap<RawId, Deal>,
    contacts: BTreeMap<RawId, ContactPerson>,
    interactions: BTreeMap<RawId, Interaction>,
    /// The length of each deal's stage history.
    steps: BTreeMap<RawId, usize>,
    /// Deals deleted: their history went with them.
    deleted: Vec<RawId>,
}

fn nth<T: Clone>(m: &BTreeMap<RawId, T>, i: usize) -> Option<T> {
    (!m.is_empty()).then(|| m.values().nth(i % m.len()).cloned().expect("in range"))
}

const STAGES: [&str; 6] = ["qualification", "needs_analysis", "proposal", "negotiation", "contract", "nonexistent"];

/// The b2b_sale process as the model sees it: where `step` takes `d` (stage, status, and
/// whether it adds a step to the history), or `None` when the engine must refuse it.
fn expected(d: &Deal, step: &Step, head: bool) -> Option<(Option<String>, DealStatus, bool)> {
    let at = STAGES.iter().position(|s| Some(*s) == d.stage.as_deref()).expect("a b2b_sale stage");
    let closed = d.status.is_closed();
    let stays = |ok: bool, status| ok.then(|| (d.stage.clone(), status, true));
    match *step {
        Step::Move(to) => {
            // Neighbours, except that a contract only goes back to negotiation.
            let allowed = if at == 4 { to == 3 } else { to == at + 1 || to + 1 == at };
            let unmet = match at {
                0 => d.source.is_none(),
                1 => !d.checklist.iter().any(|i| i == "needs_recorded"),
                2 => d.amount.amount.is_zero() || d.expected_close.is_none(),
                _ => false,
            };
            let ok = d.status == DealStatus::InProgress && to < 5 && allowed && (to < at || !unmet);
            ok.then(|| (Some(STAGES[to].to_string()), DealStatus::InProgress, true))
        }
        Step::Neighbour(_) => unreachable!("resolved to a move"),
        Step::Check(_) => (at == 1 && d.status == DealStatus::InProgress).then(|| (d.stage.clone(), d.status, false)),
        Step::Hold => stays(d.status == DealStatus::InProgress, DealStatus::OnHold),
        Step::Resume => stays(d.status == DealStatus::OnHold, DealStatus::InProgress),
        Step::Won => stays(!closed, DealStatus::Won),
        Step::Lost { known_reason } => stays(!closed && known_reason, DealStatus::Lost),
        Step::Reopen(to) => {
            // Where it was closed, or a stage it may move to from there.
            let may_move = |s: usize| if at == 4 { s == 3 } else { s == at + 1 || s + 1 == at };
            let ok = closed && head && to.is_none_or(|s| s < 5 && (s == at || may_move(s)));
            ok.then(|| (to.map_or(d.stage.clone(), |s| Some(STAGES[s].to_string())), DealStatus::InProgress, true))
        }
    }
}

/// Partner names in several scripts: Cyrillic, a combining accent, an emoji, Latin.
const NAMES: [&str; 5] = ["Ромашка", "Cafe\u{301} Zoë", "🚀 Ракета", "Ёлка-Палка", "Acme"];

/// Runs `ops`; returns how many operations the store accepted and how many were tried.
fn run(ops: Vec<Op>, backend: Backend) -> (usize, usize) {
    let fx = Fixture::on(backend);
    let managers: Vec<UserId> = (0..3).map(|i| fx.user(&format!("mgr{i}"))).collect();
    let head = fx.store.transact(None, |tx| tx.create(User::new("head", "Head of sales", Role::Head))).unwrap().id;
    let actors = [managers[0], managers[1], managers[2], head];
    let engine = Engine::without_hooks();
    let mut m = Model::default();
    let mut histories = BTreeMap::new();
    // A partner with a few deals to start from, so that process steps have deals to work on.
    let mut p = Partner::new("P", PartnerRole::Client);
    p.manager = Some(managers[0]);
    let p = fx.store.transact(None, |tx| tx.create(p)).unwrap();
    m.partners.insert(p.id.raw(), p.clone());
    for i in 0..4 {
        let mut d = new_deal(p.id, managers[i % 3], 100 * i as i64);
        d.source = (i != 3).then(|| "website".to_string());
        let d = fx.store.transact(Some(managers[i % 3]), |tx| engine.create_deal(tx, d)).unwrap();
        m.steps.insert(d.id.raw(), 1);
        m.deals.insert(d.id.raw(), d);
    }
    let (mut accepted_ops, mut tried) = (0, 0);
    for op in ops {
        let before = fx.dump();
        // (whether the store accepted it, whether the model says it must, the error if any)
        let (accepted, expected, error): (bool, bool, Option<Error>) = match op {
            Op::CreatePartner { parent, manager } => {
                let name = format!("{} {}", NAMES[m.partners.len() % NAMES.len()], m.partners.len());
                let mut p = Partner::new(name.clone(), PartnerRole::Client);
                p.parent = parent.and_then(|i| nth(&m.partners, i)).map(|x| x.id);
                p.manager = Some(managers[manager]);
                let sent = (name, p.parent, p.manager);
                match fx.store.transact(None, |tx| tx.create(p)) {
                    Ok(p) => {
                        // The model keeps what it sent, not what came back.
                        assert_eq!((p.name.clone(), p.parent, p.manager), sent, "the stored partner");
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
            Op::CreateDeal { partner, manager, amount, source, via_engine } => {
                let Some(p) = nth(&m.partners, partner) else { continue };
                let mut d = new_deal(p.id, managers[manager], amount);
                d.source = source.then(|| "referral".to_string());
                let r = fx.store.transact(Some(managers[manager]), |tx| {
                    if via_engine {
                        engine.create_deal(tx, d)
                    } else {
                        tx.create(d)
                    }
                });
                match r {
                    Ok(d) => {
                        m.steps.insert(d.id.raw(), 1);
                        m.deals.insert(d.id.raw(), d);
                        (true, amount >= 0, None)
                    }
                    Err(e) => (false, amount >= 0, Some(e)),
                }
            }
            Op::UpdateDeal { deal, manager, source, stale } => {
                let Some(mut d) = nth(&m.deals, deal) else { continue };
                d.manager = managers[manager];
                d.source = source.then(|| "exhibition".to_string());
                if stale {
                    d.version -= 1;
                }
                match fx.store.transact(None, |tx| tx.update(d)) {
                    Ok(d) => {
                        m.deals.insert(d.id.raw(), d);
                        (true, !stale, None)
                    }
                    Err(e) => {
                        assert!(stale && matches!(e, Error::Conflict { .. }), "{e}");
                        (false, !stale, Some(e))
                    }
                }
            }
            Op::Process { deal, step, actor, stale } => {
                let Some(d) = nth(&m.deals, deal) else { continue };
                let step = match step {
                    Step::Neighbour(next) => {
                        let at = STAGES.iter().position(|s| Some(*s) == d.stage.as_deref()).expect("a stage");
                        Step::Move(if next { at + 1 } else { at.saturating_sub(1) })
                    }
                    step => step,
                };
                let want = if stale { None } else { expected(&d, &step, actor == 3) };
                let version = if stale { d.version - 1 } else { d.version };
                let r = fx.store.transact(Some(actors[actor]), |tx| match step {
                    Step::Move(to) => engine.move_deal(tx, d.id, version, STAGES[to], None),
                    Step::Neighbour(_) => unreachable!("resolved to a move"),
                    Step::Check(done) => engine.set_checked(tx, d.id, version, "needs_recorded", done),
                    Step::Hold => engine.hold(tx, d.id, version, "waiting for the budget"),
                    Step::Resume => engine.resume(tx, d.id, version),
                    Step::Won => engine.close(tx, d.id, version, Outcome::Won),
                    Step::Lost { known_reason } => {
                        let reason = if known_reason { "price" } else { "weather" };
                        engine.close(
                            tx,
                            d.id,
                            version,
                            Outcome::Lost { reason: reason.into(), competitor: None, comment: String::new() },
                        )
                    }
                    Step::Reopen(to) => engine.reopen(tx, d.id, version, to.map(|s| STAGES[s])),
                });
                match r {
                    Ok(new) => {
                        let (stage, status, adds) = want.clone().expect("accepted, so the model expected it");
                        assert_eq!((&new.stage, new.status), (&stage, status), "{step:?} of {d:?}");
                        *m.steps.get_mut(&d.id.raw()).expect("a deal of the model") += usize::from(adds);
                        m.deals.insert(d.id.raw(), new);
                        (true, true, None)
                    }
                    Err(e) => {
                        match &e {
                            Error::Conflict { .. } => assert!(stale, "{e}"),
                            Error::Forbidden(_) => assert!(matches!(step, Step::Reopen(_)) && actor < 3, "{e}"),
                            Error::Process { .. } | Error::Invalid(_) => {}
                            other => panic!("{step:?}: unexpected error {other:?}"),
                        }
                        (false, want.is_some(), Some(e))
                    }
                }
            }
            Op::DeleteDeal { deal } => {
                let Some(d) = nth(&m.deals, deal) else { continue };
                let referenced = m.interactions.values().any(|i| i.deal == Some(d.id));
                let moved = m.steps[&d.id.raw()] > 1;
                let r = fx.store.transact(None, |tx| tx.delete::<Deal>(d.id, d.version));
                if r.is_ok() {
                    m.deals.remove(&d.id.raw());
                    m.steps.remove(&d.id.raw());
                    m.deleted.push(d.id.raw());
                }
                if let Err(e) = &r {
                    assert!(matches!(e, Error::Referenced { .. } | Error::NotAllowed(_)), "{e}");
                }
                (r.is_ok(), !referenced && !moved, r.err())
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
        tried += 1;
        accepted_ops += usize::from(accepted);
        if !accepted {
            assert!(fx.dump() == before, "a refused operation changed the database");
        }
        check_histories(&fx, &m, &mut histories);
        fx.clock.advance(1000);
    }
    check_against(&fx, &m);
    (accepted_ops, tried)
}

/// Runs `ops` on both backends and asks that at least a fifth of the operations tried went
/// through: a store that refused everything would otherwise agree with a model it never
/// reaches.
fn run_everywhere(ops: Vec<Op>) {
    for backend in [Backend::Redb, Backend::Memory] {
        let (accepted, tried) = run(ops.clone(), backend);
        if tried >= 10 {
            assert!(accepted * 5 >= tried, "{backend:?}: only {accepted} of {tried} operations were accepted");
        }
    }
}

/// Every deal's stage history is well formed, ends in the deal's stage and status, has as
/// many steps as the model counted, and only grew by appending since the last look.
fn check_histories(fx: &Fixture, m: &Model, seen: &mut BTreeMap<RawId, Vec<crmkit_core::model::StageChange>>) {
    let r = fx.store.read().unwrap();
    for (id, d) in &m.deals {
        let stored: Deal = r.load(d.id).unwrap();
        assert_eq!(&stored, d, "the stored deal differs from the model");
        let history = r.stage_history(d.id).unwrap();
        check_history(&stored, &history, fx.store.settings()).unwrap_or_else(|e| panic!("{e}: {history:#?}"));
        assert_eq!(history.len(), m.steps[id], "steps of deal {}", d.id);
        let before = seen.insert(*id, history.clone()).unwrap_or_default();
        assert_eq!(history[..before.len()], before[..], "earlier steps of deal {} changed", d.id);
    }
    for id in &m.deleted {
        assert!(r.stage_history(crmkit_core::id::DealId(*id)).unwrap().is_empty(), "deleted deal {id} kept a history");
    }
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

fn floored((accepted, tried): (usize, usize)) {
    if tried >= 10 {
        assert!(accepted * 5 >= tried, "only {accepted} of {tried} operations were accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn indexes_agree_with_a_naive_scan_after_random_operations_on_redb(ops in proptest::collection::vec(op(), 1..60)) {
        floored(run(ops, Backend::Redb));
    }

    #[test]
    fn indexes_agree_with_a_naive_scan_after_random_operations_on_memory(ops in proptest::collection::vec(op(), 1..60)) {
        floored(run(ops, Backend::Memory));
    }
}

// The cases proptest once shrank failures to (tests/proptest-regressions/index_model.txt),
// as tests of their own. The two oldest were written before deals were created with a
// source and through the engine, and before process steps replaced a plain "move": they
// are given here in today's operations.

fn process(deal: usize, step: Step, actor: usize) -> Op {
    Op::Process { deal, step, actor, stale: false }
}

#[test]
fn a_new_partner_without_references_can_be_deleted() {
    run_everywhere(vec![Op::CreatePartner { parent: None, manager: 0 }, Op::DeletePartner { partner: 0 }]);
}

#[test]
fn a_deal_of_a_new_partner_with_a_contact_is_won_and_reopened() {
    run_everywhere(vec![
        Op::CreatePartner { parent: None, manager: 0 },
        Op::CreateDeal { partner: 0, manager: 0, amount: 0, source: true, via_engine: false },
        Op::CreateContact { partner: 0 },
        process(0, Step::Won, 0),
        process(0, Step::Reopen(Some(0)), 3),
    ]);
}

#[test]
fn a_move_a_win_and_a_checklist_change_of_other_deals() {
    run_everywhere(vec![
        process(5, Step::Neighbour(true), 0),
        process(21, Step::Won, 0),
        process(1, Step::Check(false), 0),
    ]);
}

#[test]
fn a_head_reopens_a_won_deal_into_another_stage() {
    run_everywhere(vec![process(31, Step::Won, 0), process(3, Step::Reopen(Some(2)), 3)]);
}
