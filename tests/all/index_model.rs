//! Property test: after any sequence of creates, updates, deletes and process steps — valid
//! or not — the stored records equal an in-memory reference model (which says itself what a
//! process step does to a deal and its stage history, or how the engine refuses it), every
//! secondary index equals a naive recomputation from the model, every deal's stage history
//! is the model's and consistent with the deal, and refused operations changed nothing — on
//! every backend.

use std::collections::{BTreeMap, BTreeSet};

use crmkit_core::id::{RawId, TypedId, UserId};
use crmkit_core::model::{
    text_prefix, ContactPerson, Deal, DealStatus, EntityKind, How, Interaction, InteractionKind, Partner, PartnerRole,
    Role, StageChange, User,
};
use crmkit_core::process::{check_history, Engine, Outcome};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::{Clock, Timestamp};
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
        // Half of the steps go to the first two deals (the first with a zero amount), so that
        // deals get as far as a contract.
        6 => (prop_oneof![i.clone(), 0usize..2], step(), 0usize..4, proptest::bool::weighted(0.1))
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
    /// Each deal's stage history.
    histories: BTreeMap<RawId, Vec<StageChange>>,
    /// Deals deleted: their history went with them.
    deleted: Vec<RawId>,
}

impl Model {
    /// Takes in the deal `sent` for creation by `actor` (through the engine or the store),
    /// which the store gave the id of `stored`: it starts in the first stage, in progress, at
    /// `now`, with the stage's probability when the engine creates it, and one step of
    /// history.
    fn create_deal(&mut self, sent: Deal, stored: &Deal, via_engine: bool, actor: UserId, now: Timestamp) {
        let d = Deal {
            id: stored.id,
            version: 1,
            created_at: now,
            updated_at: now,
            created_by: Some(actor),
            updated_by: Some(actor),
            probability: via_engine.then_some(B2B[0].1),
            stage_entered_at: Some(now),
            history_steps: 1,
            ..sent
        };
        assert_eq!(stored, &d, "the created deal");
        self.histories.insert(d.id.raw(), vec![creation(&d)]);
        self.deals.insert(d.id.raw(), d);
    }
}

fn nth<T: Clone>(m: &BTreeMap<RawId, T>, i: usize) -> Option<T> {
    (!m.is_empty()).then(|| m.values().nth(i % m.len()).cloned().expect("in range"))
}

const STAGES: [&str; 6] = ["qualification", "needs_analysis", "proposal", "negotiation", "contract", "nonexistent"];

/// The b2b_sale stages of the built-in config, in order: id, probability, the stages each
/// may move to (the next and the previous one; a contract only back to negotiation).
const B2B: [(&str, u8, &[usize]); 5] = [
    ("qualification", 10, &[1]),
    ("needs_analysis", 25, &[2, 0]),
    ("proposal", 45, &[3, 1]),
    ("negotiation", 65, &[4, 2]),
    ("contract", 85, &[3]),
];

/// A refusal as the model predicts it: the kind of error, and the field of an invalid one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Conflict,
    Process,
    Invalid(String),
    Forbidden,
}

impl Refusal {
    fn of(err: &Error) -> Refusal {
        match err {
            Error::Conflict { kind: EntityKind::Deal, .. } => Refusal::Conflict,
            Error::Process { .. } => Refusal::Process,
            Error::Invalid(f) if f.entity == EntityKind::Deal => Refusal::Invalid(f.field.clone()),
            Error::Forbidden(_) => Refusal::Forbidden,
            other => panic!("an error no process step should give: {other:?}"),
        }
    }
}

/// The b2b_sale process as the model sees it, written out from its rules rather than taken
/// from the engine: what `step` by `who` (a head or not) at `now` makes of `d`, and the step
/// it adds to the history (none for a checklist change), or how the engine must refuse it.
fn expected(
    d: &Deal,
    step: &Step,
    who: UserId,
    head: bool,
    now: Timestamp,
) -> Result<(Deal, Option<StageChange>), Refusal> {
    let at = STAGES.iter().position(|s| Some(*s) == d.stage.as_deref()).expect("a b2b_sale stage");
    let invalid = |field: &str| Err(Refusal::Invalid(field.to_string()));
    let closed = d.status.is_closed();
    let mut new = d.clone();
    let (how, note) = match *step {
        Step::Move(to) => {
            if d.status != DealStatus::InProgress {
                return Err(Refusal::Process);
            }
            if to >= B2B.len() {
                return invalid("stage");
            }
            if to == at || !B2B[at].2.contains(&to) {
                return Err(Refusal::Process);
            }
            // Leaving forward needs the stage's fields and checklist.
            if to > at {
                match at {
                    0 if d.source.is_none() => return invalid("source"),
                    1 if !d.checklist.iter().any(|i| i == "needs_recorded") => return invalid("checklist"),
                    2 if d.amount.amount.is_zero() => return invalid("amount"),
                    2 if d.expected_close.is_none() => return invalid("expected_close"),
                    _ => {}
                }
            }
            new.stage = Some(STAGES[to].to_string());
            new.probability = Some(B2B[to].1);
            (How::Manual, None)
        }
        Step::Neighbour(_) => unreachable!("resolved to a move"),
        Step::Check(done) => {
            if d.status != DealStatus::InProgress {
                return Err(Refusal::Process);
            }
            if at != 1 {
                return invalid("checklist");
            }
            new.checklist = if done { vec!["needs_recorded".to_string()] } else { Vec::new() };
            // A save that changes nothing is no new version; a checklist is no step.
            if new.checklist != d.checklist {
                (new.version, new.updated_at, new.updated_by) = (d.version + 1, now, Some(who));
            }
            return Ok((new, None));
        }
        Step::Hold if d.status == DealStatus::InProgress => {
            new.status = DealStatus::OnHold;
            (How::Hold, Some("waiting for the budget".to_string()))
        }
        Step::Resume if d.status == DealStatus::OnHold => {
            new.status = DealStatus::InProgress;
            (How::Resume, None)
        }
        Step::Hold | Step::Resume => return Err(Refusal::Process),
        Step::Won | Step::Lost { .. } if closed => return Err(Refusal::Process),
        Step::Won => {
            (new.status, new.probability, new.closed_at) = (DealStatus::Won, Some(100), Some(now));
            (How::Won, None)
        }
        Step::Lost { known_reason: false } => return invalid("loss_reason"),
        Step::Lost { known_reason: true } => {
            (new.status, new.probability, new.closed_at) = (DealStatus::Lost, Some(0), Some(now));
            new.loss_reason = Some("price".into());
            (How::Lost, Some("price".to_string()))
        }
        Step::Reopen(to) => {
            if !closed {
                return Err(Refusal::Process);
            }
            if !head {
                return Err(Refusal::Forbidden);
            }
            // Where it was closed, or a stage it may move to from there.
            let to = to.unwrap_or(at);
            if to >= B2B.len() {
                return invalid("stage");
            }
            if to != at && !B2B[at].2.contains(&to) {
                return Err(Refusal::Process);
            }
            new.stage = Some(STAGES[to].to_string());
            (new.status, new.closed_at, new.loss_reason, new.competitor) = (DealStatus::InProgress, None, None, None);
            new.probability = Some(B2B[to].1);
            (How::Reopen, None)
        }
    };
    // One step of the history: a new version, the time spent in the stage it leaves (a
    // move or a close; not a reopen, hold or resume), a fresh stage clock and checklist on
    // entering a stage (a reopen enters one).
    let leaves = matches!(how, How::Won | How::Lost) || (new.stage != d.stage && how != How::Reopen);
    if new.stage != d.stage || how == How::Reopen {
        new.stage_entered_at = Some(now);
        new.checklist.clear();
    }
    (new.version, new.updated_at, new.updated_by) = (d.version + 1, now, Some(who));
    new.history_steps = d.history_steps + 1;
    let change = StageChange {
        deal: d.id,
        step: d.history_steps,
        at: now,
        actor: Some(who),
        how,
        from_stage: d.stage.clone(),
        to_stage: new.stage.clone(),
        from_status: Some(d.status),
        to_status: new.status,
        dwell_ms: leaves.then(|| now.0 - d.stage_entered_at.expect("set").0),
        note,
        imported: false,
    };
    Ok((new, Some(change)))
}

/// The first step of a deal's history, as the model expects it.
fn creation(d: &Deal) -> StageChange {
    StageChange {
        deal: d.id,
        step: 0,
        at: d.created_at,
        actor: d.created_by,
        how: How::Create,
        from_stage: None,
        to_stage: Some(STAGES[0].to_string()),
        from_status: None,
        to_status: DealStatus::InProgress,
        dwell_ms: None,
        note: None,
        imported: false,
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
    // A partner with a few deals to start from, so that process steps have deals to work on.
    let mut p = Partner::new("P", PartnerRole::Client);
    p.manager = Some(managers[0]);
    let p = fx.store.transact(None, |tx| tx.create(p)).unwrap();
    m.partners.insert(p.id.raw(), p.clone());
    for i in 0..4 {
        let mut d = new_deal(p.id, managers[i % 3], 100 * i as i64);
        d.source = (i != 3).then(|| "website".to_string());
        let sent = d.clone();
        let d = fx.store.transact(Some(managers[i % 3]), |tx| engine.create_deal(tx, d)).unwrap();
        m.create_deal(sent, &d, true, managers[i % 3], fx.clock.now());
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
                let sent = d.clone();
                let r = fx.store.transact(Some(managers[manager]), |tx| {
                    if via_engine {
                        engine.create_deal(tx, d)
                    } else {
                        tx.create(d)
                    }
                });
                match r {
                    Ok(d) => {
                        m.create_deal(sent, &d, via_engine, managers[manager], fx.clock.now());
                        (true, amount >= 0, None)
                    }
                    Err(e) => {
                        assert_eq!(Refusal::of(&e), Refusal::Invalid("amount".into()), "{e}");
                        (false, amount >= 0, Some(e))
                    }
                }
            }
            Op::UpdateDeal { deal, manager, source, stale } => {
                let Some(mut d) = nth(&m.deals, deal) else { continue };
                let old = d.clone();
                d.manager = managers[manager];
                d.source = source.then(|| "exhibition".to_string());
                // An update that changes nothing is no new version.
                let mut want = d.clone();
                if want != old {
                    (want.version, want.updated_at, want.updated_by) = (old.version + 1, fx.clock.now(), None);
                }
                if stale {
                    d.version -= 1;
                }
                match fx.store.transact(None, |tx| tx.update(d)) {
                    Ok(d) => {
                        assert_eq!(d, want, "the updated deal");
                        m.deals.insert(d.id.raw(), want);
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
                let want = if stale {
                    Err(Refusal::Conflict)
                } else {
                    expected(&d, &step, actors[actor], actor == 3, fx.clock.now())
                };
                let version = if stale { d.version - 1 } else { d.version };
                let r = fx.store.transact(Some(actors[actor]), |tx| match step {
                    Step::Move(to) => engine.move_deal(tx, d.id, version, STAGES[to], None),
                    Step::Neighbour(_) => unreachable!("resolved to a move"),
                    Step::Check(done) => engine.set_checked(tx, d.id, version, "needs_recorded", done),
                    Step::Hold => engine.hold(tx, d.id, version, "waiting for the budget"),
                    Step::Resume => engine.resume(tx, d.id, version, ""),
                    Step::Won => engine.close(tx, d.id, version, Outcome::Won { comment: String::new() }),
                    Step::Lost { known_reason } => {
                        let reason = if known_reason { "price" } else { "weather" };
                        engine.close(
                            tx,
                            d.id,
                            version,
                            Outcome::Lost { reason: reason.into(), competitor: None, comment: String::new() },
                        )
                    }
                    Step::Reopen(to) => engine.reopen(tx, d.id, version, to.map(|s| STAGES[s]), ""),
                });
                match (r, want) {
                    (Ok(new), Ok((deal, change))) => {
                        // The model's deal, not the engine's answer, is what the model keeps.
                        assert_eq!(new, deal, "{step:?} of {d:?}");
                        m.deals.insert(d.id.raw(), deal);
                        m.histories.get_mut(&d.id.raw()).expect("a deal of the model").extend(change);
                        (true, true, None)
                    }
                    (Err(e), Err(refusal)) => {
                        assert_eq!(Refusal::of(&e), refusal, "{step:?} of {d:?}: {e}");
                        if let Error::Process { deal, .. } = &e {
                            assert_eq!(*deal, d.id.raw(), "{e}");
                        }
                        (false, false, Some(e))
                    }
                    (Ok(new), Err(refusal)) => {
                        panic!("{step:?} of {d:?} was accepted ({new:?}); the model expects {refusal:?}")
                    }
                    (Err(e), Ok(_)) => panic!("{step:?} of {d:?} was refused ({e}); the model expects it to go"),
                }
            }
            Op::DeleteDeal { deal } => {
                let Some(d) = nth(&m.deals, deal) else { continue };
                let referenced = m.interactions.values().any(|i| i.deal == Some(d.id));
                let moved = m.histories[&d.id.raw()].len() > 1;
                let r = fx.store.transact(None, |tx| tx.delete::<Deal>(d.id, d.version));
                if r.is_ok() {
                    m.deals.remove(&d.id.raw());
                    m.histories.remove(&d.id.raw());
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
        check_histories(&fx, &m);
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

/// Every deal is the model's, and its stage history is the model's, step for step (and
/// passes the product's own consistency check too); a deleted deal's history went with it.
fn check_histories(fx: &Fixture, m: &Model) {
    let r = fx.store.read().unwrap();
    for (id, d) in &m.deals {
        let stored: Deal = r.load(d.id).unwrap();
        assert_eq!(&stored, d, "the stored deal differs from the model");
        let history = r.stage_history(d.id).unwrap();
        assert_eq!(history, m.histories[id], "the stage history of deal {} differs from the model", d.id);
        check_history(&stored, &history, fx.store.settings()).unwrap_or_else(|e| panic!("{e}: {history:#?}"));
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
