//! The demo company: deterministic, valid, and shaped like a real sales department whose
//! deals went through the process engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crmkit_core::id::{DealId, PartnerId};
use crmkit_core::model::{
    Deal, DealStatus, Document, DocumentKind, DocumentState, EntityKind, How, Interaction, Participant, Partner,
    PartnerRole, Role, StageChange, Task, TaskStatus, User,
};
use crmkit_core::process::{check_history, Mode};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::ManualClock;
use crmkit_core::Installation;
use crmkit_demo::{self as demo, DemoOptions};

const DAY: i64 = 86_400_000;

pub fn make(deals: usize, seed: u64) -> (tempfile::TempDir, Installation, demo::Summary) {
    let dir = tempfile::tempdir().unwrap();
    let opts = DemoOptions::new(deals, seed);
    let clock = Arc::new(ManualClock::new(opts.start));
    let inst = Installation::init(&dir.path().join("demo"), Some(demo::DEMO_CONFIG), clock.clone()).unwrap();
    let summary = demo::populate(inst.store(), &clock, &opts, &mut |_| {}).unwrap();
    (dir, inst, summary)
}

/// One demo of 2000 deals, made once for the tests that only read it. A static is never
/// dropped, so it lives in a folder of its own under the build's temporary folder, made
/// again by each run, rather than in a temporary folder no one would remove.
pub fn company() -> &'static (std::path::PathBuf, Installation, demo::Summary) {
    static COMPANY: OnceLock<(std::path::PathBuf, Installation, demo::Summary)> = OnceLock::new();
    COMPANY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-company");
        let _ = std::fs::remove_dir_all(&dir);
        let opts = DemoOptions::new(2000, 42);
        let clock = Arc::new(ManualClock::new(opts.start));
        let inst = Installation::init(&dir, Some(demo::DEMO_CONFIG), clock.clone()).unwrap();
        let summary = demo::populate(inst.store(), &clock, &opts, &mut |_| {}).unwrap();
        (dir, inst, summary)
    })
}

/// Every deal with its stage history.
fn histories(inst: &Installation) -> Vec<(Deal, Vec<StageChange>)> {
    let r = inst.store().read().unwrap();
    let mut deals = Vec::new();
    r.for_each::<Deal>(|d| {
        deals.push(d.clone());
        true
    })
    .unwrap();
    deals
        .into_iter()
        .map(|d| {
            let steps = r.stage_history(d.id).unwrap();
            (d, steps)
        })
        .collect()
}

fn median(mut v: Vec<i64>) -> i64 {
    assert!(!v.is_empty());
    v.sort_unstable();
    v[v.len() / 2]
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
    let (_d, inst, summary) = company();
    assert_eq!(inst.store().verify_indexes().unwrap(), Vec::<String>::new());
    // Every loyalty card's sums are its ledger's, redemptions written in time with the sales.
    assert_eq!(crmkit_core::process::loyalty::verify(&inst.store().read().unwrap()).unwrap(), Vec::<String>::new());
    let r = inst.store().read().unwrap();
    // Claims in every status and with every decision, each with its steps, some overdue.
    let claims: Vec<crmkit_core::model::Claim> = r.list(None, usize::MAX).unwrap();
    let statuses: std::collections::BTreeSet<_> = claims.iter().map(|c| c.status).collect();
    let recent: Vec<_> = claims
        .iter()
        .map(|c| (c.registered_on(), c.status))
        .filter(|(d, _)| *d > DemoOptions::new(2000, 42).end.date() - chrono::Days::new(40))
        .collect();
    assert_eq!(statuses.len(), 4, "claims in every status: {statuses:?} of {}: {recent:?}", claims.len());
    let decisions: std::collections::BTreeSet<_> = claims.iter().filter_map(|c| c.decision).collect();
    assert_eq!(decisions.len(), 3, "every decision: {decisions:?}");
    let today = DemoOptions::new(2000, 42).end.date();
    assert!(claims.iter().any(|c| c.is_overdue(today)), "some claims overdue");
    assert!(claims.iter().all(|c| c.steps.last().map(|s| s.to) == Some(c.status)), "steps end where the claim is");
    assert!(claims.iter().any(|c| c.steps.iter().any(|s| s.action == crmkit_core::model::ClaimAction::Reopen)));
    // What the generator was asked for: the deals, one client per ten deals (members of
    // holdings included), the twelve competitors, a head per department, the managers and
    // an analyst who reads.
    let opts = DemoOptions::new(2000, 42);
    let users: Vec<User> = r.list(None, usize::MAX).unwrap();
    let (heads, managers) = (
        users.iter().filter(|u| u.roles.contains(&Role::Head)).count(),
        users.iter().filter(|u| u.roles == [Role::Manager]).count(),
    );
    assert_eq!(
        (users.len(), heads, managers),
        (1 + 3 + opts.managers + 1, 3, opts.managers),
        "the admin, heads, managers"
    );
    assert!(users.iter().any(|u| u.roles == [Role::Viewer]), "the analyst");
    let partners: Vec<Partner> = r.list(None, usize::MAX).unwrap();
    let clients = partners.iter().filter(|p| p.has_role(PartnerRole::Client)).count();
    assert_eq!((partners.len(), clients), (opts.partners + 12, opts.partners));
    // The summary counts what a scan of each kind's records finds (the installation's admin
    // was there before the demo), and the audit entries the log holds.
    for k in EntityKind::ALL {
        let mut scanned = 0u64;
        crmkit_core::with_kind!(k, E => r.for_each::<E>(|_| {
            scanned += 1;
            true
        }))
        .unwrap();
        let expected = if k == EntityKind::User { scanned - 1 } else { scanned };
        assert_eq!(summary.counts.get(&k).copied().unwrap_or(0), expected, "{k}");
        if k != EntityKind::Attachment {
            assert!(scanned > 0, "no {k} in the demo");
        }
    }
    assert_eq!(summary.counts[&EntityKind::Deal], opts.deals as u64);
    let mut audit = 0u64;
    let mut after = None;
    loop {
        let page = r.audit_log(after, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        audit += page.len() as u64;
    }
    assert_eq!(summary.audit_entries, audit);
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut pipeline = BTreeMap::new();
    let mut lost_with_competitor = 0;
    r.for_each::<Deal>(|d| {
        *by_status.entry(d.status.name()).or_default() += 1;
        *by_kind.entry(d.kind.clone()).or_default() += 1;
        lost_with_competitor += usize::from(d.competitor.is_some());
        if !d.status.is_closed() {
            *pipeline.entry(d.amount.currency).or_default() += d.amount.amount;
        }
        true
    })
    .unwrap();
    assert_eq!(by_status, summary.deals_by_status);
    assert_eq!(pipeline, summary.pipeline);
    for s in DealStatus::ALL {
        assert!(by_status.get(s.name()).copied().unwrap_or(0) > 20, "too few {s:?} deals: {by_status:?}");
    }
    assert_eq!(by_kind.len(), 4, "{by_kind:?}");
    assert!(lost_with_competitor > 50);
    let won = by_status["won"] as f64;
    let lost = by_status["lost"] as f64;
    assert!((0.25..0.6).contains(&(won / (won + lost))), "win rate {:.2}", won / (won + lost));

    // Holdings with members, and competitors.
    let holdings = partners
        .iter()
        .filter(|p| !r.ids_by(Index::PartnerByParent, &p.id.0.to_bytes(), None, 1).unwrap().is_empty())
        .count();
    assert!(holdings >= 3, "{holdings} holdings");
    assert_eq!(partners.iter().filter(|p| p.has_role(PartnerRole::Competitor)).count(), 12);
}

#[test]
fn every_deal_has_a_history_the_engine_wrote() {
    let (_d, inst, _) = company();
    let settings = inst.settings();
    let all = histories(inst);
    let mut statuses = BTreeSet::new();
    let mut hows = BTreeSet::new();
    let mut backs = 0;
    for (d, steps) in &all {
        check_history(d, steps, settings).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(steps[0].at, d.created_at, "deal {} was created at another time than its history says", d.id);
        let kind = settings.process_kind(&d.kind).unwrap();
        for s in steps {
            statuses.insert(s.to_status);
            hows.insert(s.how);
            assert!(!s.imported);
            let pos = |st: &Option<String>| st.as_deref().and_then(|x| kind.position(x));
            if s.how == How::Manual && pos(&s.to_stage) < pos(&s.from_stage) {
                backs += 1;
            }
        }
        // Managed routes only move forward by their route; manual ones only by hand.
        let forward_by = if kind.mode == Mode::Managed { How::Route } else { How::Manual };
        for s in &steps[1..] {
            if s.from_stage != s.to_stage && s.how != How::Reopen {
                let pos = |st: &Option<String>| st.as_deref().and_then(|x| kind.position(x));
                if pos(&s.to_stage) > pos(&s.from_stage) {
                    assert_eq!(s.how, forward_by, "deal {} ({})", d.id, d.kind);
                }
            }
        }
    }
    assert_eq!(statuses, DealStatus::ALL.into_iter().collect(), "steps into every status");
    assert_eq!(hows, How::ALL.into_iter().collect(), "every kind of step");
    let count = |how: How| all.iter().flat_map(|(_, s)| s).filter(|s| s.how == how).count();
    assert!(
        count(How::Hold) > 40 && count(How::Resume) > 20,
        "holds {}, resumes {}",
        count(How::Hold),
        count(How::Resume)
    );
    assert!(count(How::Reopen) >= 5, "{} reopened", count(How::Reopen));
    assert!(backs >= 20, "{backs} steps back");
    // A reopened deal was reopened by a head, not by the system or its manager.
    let r = inst.store().read().unwrap();
    for s in all.iter().flat_map(|(_, s)| s).filter(|s| s.how == How::Reopen) {
        let head: crmkit_core::model::User = r.load(s.actor.expect("a person reopens")).unwrap();
        assert!(head.roles.contains(&crmkit_core::model::Role::Head), "{} reopened deal {}", head.login, s.deal);
    }
    // Every other step names who took it: the deal's manager, or (a managed route moved on by
    // a completed task) the task's executor.
    for (d, steps) in &all {
        for s in steps.iter().filter(|s| s.how != How::Reopen) {
            let actor = s.actor.unwrap_or_else(|| panic!("deal {} step {} has no actor", d.id, s.step));
            if s.how != How::Route {
                assert_eq!(actor, d.manager, "deal {} step {} ({})", d.id, s.step, s.how.name());
            }
        }
    }
}

#[test]
fn losses_happen_at_every_stage_more_often_early() {
    let (_d, inst, _) = company();
    let settings = inst.settings();
    let mut lost_at: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let all = histories(inst);
    for (d, steps) in &all {
        for s in steps.iter().filter(|s| s.how == How::Lost) {
            let stage = s.from_stage.clone().unwrap_or_default();
            *lost_at
                .entry(settings.process_kind(&d.kind).unwrap().id.as_str())
                .or_default()
                .entry(stage)
                .or_default() += 1;
        }
    }
    for kind in settings.process_kinds.iter().filter(|k| !k.stages.is_empty()) {
        let at = &lost_at[kind.id.as_str()];
        assert!(at.len() >= 2, "{}: lost only at {at:?}", kind.id);
        let first = at.get(&kind.stages[0].id).copied().unwrap_or(0);
        let last = at.get(&kind.stages[kind.stages.len() - 1].id).copied().unwrap_or(0);
        assert!(first > last, "{}: {first} lost at the start, {last} at the end", kind.id);
    }
    for kind in ["b2b_sale", "repeat_sale"] {
        let stages = &settings.process_kind(kind).unwrap().stages;
        assert_eq!(lost_at[kind].len(), stages.len(), "{kind}: lost at {:?}", lost_at[kind]);
    }
    // Deals lost on price or product mostly name the competitor of their environment.
    let r = inst.store().read().unwrap();
    let (mut to_rival, mut named) = (0, 0);
    for (d, _) in all.iter().filter(|(d, _)| d.status == DealStatus::Lost) {
        let Some(c) = d.competitor else { continue };
        assert!(matches!(d.loss_reason.as_deref(), Some("price" | "competitor_product")), "{:?}", d.loss_reason);
        named += 1;
        let env: Vec<Participant> = r.find(Index::ParticipantByDeal, &d.id.0.to_bytes(), None, usize::MAX).unwrap();
        to_rival += usize::from(env.iter().any(|p| p.partner == Some(c)));
    }
    assert!(to_rival * 3 > named * 2, "{to_rival} of {named} competitors were in the deal");
}

#[test]
fn dwell_times_differ_by_stage_manager_and_client() {
    let (_d, inst, _) = company();
    let all = histories(inst);
    let r = inst.store().read().unwrap();
    // How long deals stay in a stage before going on, per kind and stage.
    let mut dwell: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    let mut by_segment: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut by_manager: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut segment_of: BTreeMap<PartnerId, String> = BTreeMap::new();
    for (d, steps) in &all {
        for s in steps.iter().filter(|s| matches!(s.how, How::Manual | How::Route)) {
            let ms = s.dwell_ms.expect("a move has a dwell");
            assert!(ms > 0, "deal {} left {:?} at once", d.id, s.from_stage);
            dwell.entry((d.kind.clone(), s.from_stage.clone().unwrap())).or_default().push(ms);
            if d.kind == "b2b_sale" {
                let seg = segment_of
                    .entry(d.partner)
                    .or_insert_with(|| r.load::<Partner>(d.partner).unwrap().segment.unwrap_or_default());
                by_segment.entry(seg.clone()).or_default().push(ms);
                by_manager.entry(d.manager.to_string()).or_default().push(ms);
            }
        }
    }
    let medians: BTreeMap<_, _> = dwell.into_iter().map(|(k, v)| (k, median(v))).collect();
    let days = |kind: &str, stage: &str| medians[&(kind.to_string(), stage.to_string())] as f64 / DAY as f64;
    assert!(days("b2b_sale", "negotiation") > 2.0 * days("b2b_sale", "qualification"), "{medians:?}");
    assert!(days("b2b_sale", "negotiation") > 3.0 * days("repeat_sale", "request"), "{medians:?}");
    assert!(days("tender", "documentation") > 2.0 * days("tender", "announcement"), "{medians:?}");
    let segment = |s: &str| median(by_segment[s].clone());
    assert!(segment("key") > segment("small"), "key accounts are no slower than small clients");
    let managers: Vec<i64> = by_manager.into_values().filter(|v| v.len() > 100).map(median).collect();
    let (fast, slow) = (managers.iter().min().unwrap(), managers.iter().max().unwrap());
    assert!(*slow as f64 > 1.4 * *fast as f64, "managers all work alike: {managers:?}");
    // Stuck deals: open, and in their stage for many months.
    let today = DemoOptions::new(0, 0).end;
    let stuck = all
        .iter()
        .filter(|(d, _)| d.status == DealStatus::InProgress)
        .filter(|(d, _)| d.stage_entered_at.is_some_and(|t| today.0 - t.0 > 120 * DAY))
        .count();
    assert!(stuck >= 10, "{stuck} stuck deals");
}

#[test]
fn managed_deals_move_as_their_tasks_get_done() {
    let (_d, inst, _) = company();
    let r = inst.store().read().unwrap();
    let today = DemoOptions::new(0, 0).end;
    let mut tasks: BTreeMap<DealId, Vec<Task>> = BTreeMap::new();
    r.for_each::<Task>(|t| {
        tasks.entry(t.deal.expect("stage tasks belong to deals")).or_default().push(t.clone());
        true
    })
    .unwrap();
    let (mut done, mut open, mut approvals) = (0, 0, 0);
    let mut deals = 0;
    for (d, history) in histories(inst) {
        if d.kind != "tender" {
            assert!(!tasks.contains_key(&d.id), "deal {} of a manual kind has tasks", d.id);
            continue;
        }
        deals += 1;
        for t in &tasks[&d.id] {
            match t.status {
                TaskStatus::Done => {
                    done += 1;
                    assert!(t.finished_at.unwrap() <= today);
                }
                TaskStatus::Open => {
                    open += 1;
                    assert!(!d.status.is_closed(), "deal {} is closed with an open task", d.id);
                    assert_eq!(t.stage, d.stage, "an open task of another stage");
                }
                TaskStatus::Cancelled => {}
            }
            approvals += usize::from(t.stage.as_deref() == Some("approval"));
        }
        // The route went through approval exactly when the bid was large.
        let approved = history.iter().any(|s| s.to_stage.as_deref() == Some("approval"));
        let large = d.amount.amount >= 5_000_000.into();
        let past_documentation =
            history.iter().any(|s| s.how == How::Route && s.from_stage.as_deref() == Some("documentation"));
        if past_documentation {
            assert_eq!(approved, large, "deal {} of {}", d.id, d.amount.amount);
        }
    }
    assert!(deals > 100 && done > deals && open > 5 && approvals > 10, "{deals} {done} {open} {approvals}");
    assert!(!r.overdue_tasks(today, 10).unwrap().is_empty(), "nothing overdue today");
}

#[test]
fn interactions_and_documents_fit_the_history() {
    let (_d, inst, _) = company();
    let r = inst.store().read().unwrap();
    let today = DemoOptions::new(0, 0).end;
    let mut deals: BTreeMap<DealId, Deal> = BTreeMap::new();
    r.for_each::<Deal>(|d| {
        deals.insert(d.id, d.clone());
        true
    })
    .unwrap();
    let mut talks = 0;
    r.for_each::<Interaction>(|i| {
        let d = &deals[&i.deal.expect("demo interactions belong to deals")];
        assert!(
            d.created_at <= i.at && i.at <= d.closed_at.unwrap_or(today),
            "interaction {} outside deal {}",
            i.id,
            d.id
        );
        talks += 1;
        true
    })
    .unwrap();
    assert!(talks > 2 * deals.len(), "{talks} interactions");
    let mut orders = BTreeSet::new();
    r.for_each::<Document>(|doc| {
        let d = &deals[&doc.deal.expect("demo documents belong to deals")];
        assert!(d.created_at <= doc.created_at && doc.created_at <= today, "document {} of deal {}", doc.number, d.id);
        match doc.kind {
            DocumentKind::Quote => {
                let expected = match d.status {
                    DealStatus::Won => DocumentState::Agreed,
                    DealStatus::Lost => DocumentState::Cancelled,
                    _ => DocumentState::Issued,
                };
                assert_eq!(doc.state, expected, "quote {} of deal {}", doc.number, d.id);
                assert!(d.closed_at.is_none_or(|c| doc.created_at <= c));
            }
            _ => {
                assert_eq!(d.status, DealStatus::Won, "{:?} {} of an unwon deal", doc.kind, doc.number);
                assert!(d.closed_at.is_some_and(|c| c <= doc.created_at));
                if doc.kind == DocumentKind::Order {
                    orders.insert(d.id);
                }
            }
        }
        true
    })
    .unwrap();
    assert_eq!(orders.len(), deals.values().filter(|d| d.status == DealStatus::Won).count(), "an order per won deal");
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
            for t in tx.list::<Task>(None, 200)? {
                tx.update(t)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(crate::common::dump(store) == before);
}

/// The multi-valued `equipment` field the demo config declares is filled on most deals, with
/// declared values only, each once, in the declared order; projects supply more kinds at once.
#[test]
fn deals_record_their_equipment_as_declared() {
    use crmkit_core::model::{CustomFieldType, CustomValue};
    let (_, inst, _) = company();
    let settings = inst.store().settings();
    let def = settings.custom_fields_of(EntityKind::Deal).iter().find(|d| d.name == "equipment").expect("declared");
    let CustomFieldType::Enum { values, multiple: true } = &def.ty else { panic!("{:?}", def.ty) };
    let deals = histories(inst);
    let mut filled = 0;
    let mut sizes: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (d, _) in &deals {
        let Some(v) = d.custom.get("equipment") else { continue };
        let CustomValue::EnumSet(set) = v else { panic!("deal {}: {v:?}", d.id) };
        assert!(!set.is_empty(), "deal {}", d.id);
        let positions: Vec<usize> = set
            .iter()
            .map(|x| values.iter().position(|y| y == x).unwrap_or_else(|| panic!("deal {}: {x} is not declared", d.id)))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "deal {}: {set:?}", d.id);
        seen.extend(set.iter().cloned());
        filled += 1;
        let e = sizes.entry(d.kind.as_str()).or_default();
        e.0 += 1;
        e.1 += set.len();
    }
    let share = filled as f64 / deals.len() as f64;
    assert!((0.6..0.9).contains(&share), "{filled} of {} deals have equipment", deals.len());
    assert_eq!(seen.len(), values.len(), "every declared value is used: {seen:?}");
    let mean = |kind: &str| sizes[kind].1 as f64 / sizes[kind].0 as f64;
    assert!(mean("project") > mean("b2b_sale") + 0.5, "{sizes:?}");
    // One value is held by some deals, not all: a list filter on it picks deals out.
    let pumps = deals
        .iter()
        .filter(|(d, _)| d.custom.get("equipment").is_some_and(|v| v.holds(&CustomValue::Enum("pumps".into()))))
        .count();
    assert!(pumps > 0 && pumps < filled, "{pumps} of {filled}");
}
