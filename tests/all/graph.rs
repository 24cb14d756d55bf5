//! The partner graph against naive recomputations over the demo company.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crmkit_core::graph::{
    deals_involving_partner, deals_touched_by_contact, group_rollup, neighbours, partners_of_counterparty, path,
};
use crmkit_core::id::PartnerId;
use crmkit_core::model::{Deal, DealStatus, Document, Interaction, Participant, Partner, PartnerLink, PartnerRole};
use crmkit_core::store::Reader;

fn all<E: crmkit_core::model::Entity>(r: &impl Reader) -> Vec<E> {
    let mut v = Vec::new();
    r.for_each::<E>(|e| {
        v.push(e);
        true
    })
    .unwrap();
    v
}

#[test]
fn groups_roll_up_what_their_members_have() {
    let (_dir, inst, _) = crate::demo::company();
    let r = inst.store().read().unwrap();
    let partners: Vec<Partner> = all(&r);
    let deals: Vec<Deal> = all(&r);
    let docs: Vec<Document> = all(&r);
    let member = partners.iter().find(|p| p.parent.is_some()).expect("the demo has holdings");
    let g = group_rollup(&r, member.id, 10_000).unwrap();
    // The head is the top of the member's chain; the members are the head's whole tree.
    let mut head = member.clone();
    while let Some(p) = head.parent {
        head = partners.iter().find(|x| x.id == p).unwrap().clone();
    }
    assert_eq!(g.head.id, head.id);
    let mut tree = BTreeSet::from([head.id]);
    let mut queue = VecDeque::from([head.id]);
    while let Some(p) = queue.pop_front() {
        for c in partners.iter().filter(|x| x.parent == Some(p)) {
            tree.insert(c.id);
            queue.push_back(c.id);
        }
    }
    assert_eq!(g.members.iter().map(|(p, _)| p.id).collect::<BTreeSet<_>>(), tree);
    assert!(tree.len() >= 2);
    let in_group = |p: PartnerId| tree.contains(&p);
    let won = deals.iter().filter(|d| in_group(d.partner) && d.status == DealStatus::Won).count();
    let open = deals.iter().filter(|d| in_group(d.partner) && !d.status.is_closed()).count();
    let documents = docs.iter().filter(|d| in_group(d.partner)).count();
    assert_eq!((g.total.won_deals, g.total.open_deals, g.total.documents), (won, open, documents));
    let per_member: usize = g.members.iter().map(|(_, f)| f.won_deals).sum();
    assert_eq!(per_member, won);
}

#[test]
fn links_form_a_graph_with_neighbours_and_paths() {
    let (_dir, inst, _) = crate::demo::company();
    let r = inst.store().read().unwrap();
    let links: Vec<PartnerLink> = all(&r);
    let p = links[0].from;
    let mine: BTreeSet<_> = links.iter().filter(|l| l.from == p || l.to == p).map(|l| l.id).collect();
    let got: BTreeSet<_> = neighbours(&r, p, None).unwrap().into_iter().map(|(l, _)| l.id).collect();
    assert_eq!(got, mine);
    let typed = neighbours(&r, p, Some(&links[0].link_type)).unwrap();
    assert!(!typed.is_empty() && typed.iter().all(|(l, _)| l.link_type == links[0].link_type));

    // Shortest paths, against a breadth-first search over all links in memory.
    let mut adj: BTreeMap<PartnerId, Vec<PartnerId>> = BTreeMap::new();
    for l in &links {
        adj.entry(l.from).or_default().push(l.to);
        adj.entry(l.to).or_default().push(l.from);
    }
    let mut dist = BTreeMap::from([(p, 0usize)]);
    let mut queue = VecDeque::from([p]);
    while let Some(x) = queue.pop_front() {
        for y in adj.get(&x).into_iter().flatten() {
            if !dist.contains_key(y) {
                dist.insert(*y, dist[&x] + 1);
                queue.push_back(*y);
            }
        }
    }
    assert_eq!(path(&r, p, p, 3).unwrap(), Some(Vec::new()));
    for (target, d) in dist.iter().filter(|(_, d)| **d > 0).take(20) {
        let chain = path(&r, p, *target, 6).unwrap().expect("reachable");
        assert_eq!(chain.len(), *d, "shortest");
        let mut at = p;
        for l in &chain {
            at = if l.from == at {
                l.to
            } else {
                assert_eq!(l.to, at);
                l.from
            };
        }
        assert_eq!(at, *target);
        if *d > 1 {
            assert_eq!(path(&r, p, *target, d - 1).unwrap(), None, "bounded depth");
        }
    }
}

#[test]
fn the_environment_across_deals() {
    let (_dir, inst, _) = crate::demo::company();
    let r = inst.store().read().unwrap();
    let deals: Vec<Deal> = all(&r);
    let participants: Vec<Participant> = all(&r);
    let interactions: Vec<Interaction> = all(&r);
    let partners: Vec<Partner> = all(&r);

    let competitor = partners.iter().find(|p| p.has_role(PartnerRole::Competitor)).unwrap().id;
    let got = deals_involving_partner(&r, competitor).unwrap();
    let expected: BTreeSet<_> = participants
        .iter()
        .filter(|p| p.partner == Some(competitor))
        .map(|p| p.deal)
        .chain(deals.iter().filter(|d| d.competitor == Some(competitor)).map(|d| d.id))
        .collect();
    assert_eq!(got.iter().map(|i| i.deal.id).collect::<BTreeSet<_>>(), expected);
    let lost_to_it = deals.iter().filter(|d| d.status == DealStatus::Lost && d.competitor == Some(competitor)).count();
    assert_eq!(got.iter().filter(|i| i.won_against_us).count(), lost_to_it);

    let contact = participants.iter().find_map(|p| p.contact).unwrap();
    let got = deals_touched_by_contact(&r, contact).unwrap();
    let expected: BTreeSet<_> = participants
        .iter()
        .filter(|p| p.contact == Some(contact))
        .map(|p| p.deal)
        .chain(interactions.iter().filter(|i| i.contacts.contains(&contact)).filter_map(|i| i.deal))
        .collect();
    assert_eq!(got.iter().map(|i| i.deal.id).collect::<BTreeSet<_>>(), expected);

    let with_cp = partners.iter().find(|p| !p.counterparties.is_empty()).unwrap();
    let cp = with_cp.counterparties[0];
    let expected: BTreeSet<_> = partners.iter().filter(|p| p.counterparties.contains(&cp)).map(|p| p.id).collect();
    let got: BTreeSet<_> = partners_of_counterparty(&r, cp).unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(got, expected);
}

#[test]
fn merging_duplicate_partners_moves_everything_and_leaves_no_orphans() {
    use crmkit_core::id::TypedId;
    use crmkit_core::merge::merge_partners;
    use crmkit_core::model::{ContactPerson, EntityKind, How};
    use crmkit_core::store::Index;

    let (_dir, inst, _) = crate::demo::make(400, 17);
    let store = inst.store();
    let r = store.read().unwrap();
    let deals: Vec<Deal> = all(&r);
    let partners: Vec<Partner> = all(&r);
    // Two clients with deals, neither in the other's group.
    let mut busy: Vec<PartnerId> = partners
        .iter()
        .filter(|p| p.parent.is_none() && deals.iter().filter(|d| d.partner == p.id).count() >= 3)
        .map(|p| p.id)
        .collect();
    busy.truncate(2);
    let (keep, dup) = (busy[0], busy[1]);
    let count = |r: &crmkit_core::store::Snapshot, index: Index, p: PartnerId| {
        r.ids_by(index, &p.raw().to_bytes(), None, usize::MAX).unwrap().len()
    };
    let indexes =
        [Index::DealByPartner, Index::DocumentByPartner, Index::InteractionByPartner, Index::ContactByPartner];
    let before: Vec<usize> = indexes.iter().map(|i| count(&r, *i, keep) + count(&r, *i, dup)).collect();
    let dup_deals: Vec<Deal> = deals.iter().filter(|d| d.partner == dup).cloned().collect();
    let dup_counterparties = partners.iter().find(|p| p.id == dup).unwrap().counterparties.clone();
    drop(r);

    // Refused: into itself, and nothing is written.
    let err = crate::common::refused(store, None, |tx| merge_partners(tx, keep, keep));
    assert!(err.to_string().contains("into itself"), "{err}");

    let report = store.transact(None, |tx| merge_partners(tx, keep, dup)).unwrap();
    assert_eq!(report.deals, dup_deals.len());
    let r = store.read().unwrap();
    assert!(r.get::<Partner>(dup).unwrap().is_none(), "the duplicate is gone");
    let after: Vec<usize> = indexes.iter().map(|i| count(&r, *i, keep)).collect();
    assert_eq!(after, before);
    for i in Index::ALL {
        assert_eq!(count(&r, *i, dup), 0, "{i:?} still refers to the duplicate");
    }
    let kept: Partner = r.load(keep).unwrap();
    assert!(dup_counterparties.iter().all(|c| kept.counterparties.contains(c)));
    // The moved deals keep their history and show the move in their audit.
    for d in &dup_deals {
        let moved: Deal = r.load(d.id).unwrap();
        assert_eq!((moved.partner, moved.stage.clone(), moved.status), (keep, d.stage.clone(), d.status));
        assert_eq!(r.stage_history(d.id).unwrap().first().map(|s| s.how), Some(How::Create));
        let audit = r.audit_of::<Deal>(d.id).unwrap();
        assert!(audit.last().unwrap().changes.iter().any(|c| c.field == "partner"), "{audit:?}");
    }
    let deleted = r.audit_entries_of(dup.raw()).unwrap();
    assert!(deleted.iter().any(|e| e.entity.kind == EntityKind::Partner), "the delete is audited");
    drop(r);
    assert_eq!(store.verify_indexes().unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_histories().unwrap(), Vec::<String>::new());
    let r = store.read().unwrap();
    let contacts: Vec<ContactPerson> = all(&r);
    assert!(contacts.iter().all(|c| c.partner != dup));
}

#[test]
fn a_merge_into_a_partner_deep_inside_the_duplicates_group_is_refused() {
    use crmkit_core::merge::merge_partners;

    let fx = crate::common::Fixture::new();
    let make = |name: &str, parent: Option<PartnerId>| {
        fx.store
            .transact(None, |tx| {
                let mut p = Partner::new(name, PartnerRole::Client);
                p.parent = parent;
                tx.create(p)
            })
            .unwrap()
            .id
    };
    let top = make("Холдинг", None);
    let division = make("Дивизион", Some(top));
    let company = make("Компания", Some(division));
    let err = fx.refused(None, |tx| merge_partners(tx, company, top));
    assert!(err.to_string().contains("deeper inside the group"), "{err}");
    // A direct member takes the duplicate's place at the top.
    fx.store.transact(None, |tx| merge_partners(tx, division, top)).unwrap();
    let r = fx.store.read().unwrap();
    assert_eq!(r.load::<Partner>(division).unwrap().parent, None);
    assert_eq!(r.load::<Partner>(company).unwrap().parent, Some(division));
}
