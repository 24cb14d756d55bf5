//! The customer dossier against a naive recomputation over the same demo company.

use std::collections::BTreeMap;

use crmkit_core::dossier::{dossier, find_partner, Amounts, DossierOptions};
use crmkit_core::id::TypedId;
use crmkit_core::model::{
    ContactPerson, Deal, DealStatus, Document, DocumentKind, DocumentState, Interaction, Partner, Task, TaskStatus,
};
use crmkit_core::store::{Index, Reader};

fn add(a: &mut Amounts, m: &crmkit_core::values::Money) {
    *a.entry(m.currency).or_default() += m.amount;
}

#[test]
fn the_dossier_agrees_with_a_scan_of_everything() {
    let (_dir, inst, _) = crate::demo::company();
    let r = inst.store().read().unwrap();
    let (mut deals, mut partners, mut docs, mut inters, mut contacts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    r.for_each::<Deal>(|d| {
        deals.push(d);
        true
    })
    .unwrap();
    r.for_each::<Partner>(|p| {
        partners.push(p);
        true
    })
    .unwrap();
    r.for_each::<Document>(|d| {
        docs.push(d);
        true
    })
    .unwrap();
    r.for_each::<Interaction>(|i| {
        inters.push(i);
        true
    })
    .unwrap();
    r.for_each::<ContactPerson>(|c| {
        contacts.push(c);
        true
    })
    .unwrap();
    // The busiest client, and a member of a holding.
    let mut by_partner: BTreeMap<_, usize> = BTreeMap::new();
    for d in &deals {
        *by_partner.entry(d.partner).or_default() += 1;
    }
    let busiest = by_partner.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p).unwrap();
    let member = partners.iter().find(|p| p.parent.is_some()).map(|p| p.id).expect("the demo has holdings");

    for id in [busiest, member] {
        let d = dossier(&r, id, DossierOptions { timeline_limit: 7, ..Default::default() }).unwrap();
        let mine: Vec<&Deal> = deals.iter().filter(|x| x.partner == id).collect();
        let (mut won, mut lost, mut open) = (Amounts::new(), Amounts::new(), Amounts::new());
        for x in &mine {
            match x.status {
                DealStatus::Won => add(&mut won, &x.amount),
                DealStatus::Lost => add(&mut lost, &x.amount),
                _ => add(&mut open, &x.amount),
            }
        }
        assert_eq!(d.deals.won, mine.iter().filter(|x| x.status == DealStatus::Won).count());
        assert_eq!(d.deals.lost, mine.iter().filter(|x| x.status == DealStatus::Lost).count());
        assert_eq!(d.deals.open.len(), mine.iter().filter(|x| !x.status.is_closed()).count());
        assert_eq!((&d.deals.won_amount, &d.deals.lost_amount, &d.deals.open_amount), (&won, &lost, &open));
        let revenue: Amounts = d.revenue_by_month.values().fold(Amounts::new(), |mut acc, m| {
            for (c, v) in m {
                *acc.entry(*c).or_default() += v;
            }
            acc
        });
        assert_eq!(revenue, won);

        let my_docs: Vec<&Document> = docs.iter().filter(|x| x.partner == id).collect();
        let (mut invoiced, mut paid) = (Amounts::new(), Amounts::new());
        for x in &my_docs {
            let live = !matches!(x.state, DocumentState::Cancelled | DocumentState::Draft);
            if x.kind == DocumentKind::Invoice && live {
                add(&mut invoiced, &x.amount);
            }
            if x.kind == DocumentKind::Payment && x.state == DocumentState::Completed {
                add(&mut paid, &x.amount);
            }
        }
        assert_eq!((d.documents.count, &d.documents.invoiced, &d.documents.paid), (my_docs.len(), &invoiced, &paid));

        // The timeline: latest first, in pages that add up to everything.
        let mut mine_i: Vec<&Interaction> = inters.iter().filter(|x| x.partner == id).collect();
        mine_i.sort_by_key(|x| std::cmp::Reverse(x.id));
        assert_eq!(d.timeline.total, mine_i.len());
        let mut seen = Vec::new();
        let mut page = d.timeline.clone();
        loop {
            seen.extend(page.interactions.iter().map(|x| x.id));
            let Some(before) = page.next_before else { break };
            let opts = DossierOptions { timeline_limit: 7, timeline_before: Some(before), ..Default::default() };
            page = dossier(&r, id, opts).unwrap().timeline;
        }
        assert_eq!(seen, mine_i.iter().map(|x| x.id).collect::<Vec<_>>());
        assert_eq!(d.last_contact, mine_i.iter().take(7).map(|x| x.at).max());

        assert_eq!(d.contacts.len(), contacts.iter().filter(|c| c.partner == id).count());
        let p = partners.iter().find(|p| p.id == id).unwrap();
        assert_eq!(d.group.parents.first().map(|x| x.id), p.parent);
        let children: Vec<_> = partners.iter().filter(|x| x.parent == Some(id)).map(|x| x.id).collect();
        assert!(children.iter().all(|c| d.group.members.iter().any(|m| m.id == *c)));

        // The next task: the open one due first on the partner's open deals.
        let mut tasks: Vec<Task> = Vec::new();
        for x in mine.iter().filter(|x| !x.status.is_closed()) {
            tasks.extend(r.find::<Task>(Index::TaskByDeal, &x.id.raw().to_bytes(), None, usize::MAX).unwrap());
        }
        let first = tasks.iter().filter(|t| t.status == TaskStatus::Open).min_by_key(|t| (t.due.is_none(), t.due));
        assert_eq!(d.next_task.as_ref().map(|t| t.due), first.map(|t| t.due));

        // The whole value is JSON for the API, and the partner can be found by name.
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["partner"]["id"], serde_json::json!(id.to_string()));
        let by_name = find_partner(&r, &p.name.to_uppercase());
        if partners.iter().filter(|x| x.name.to_lowercase() == p.name.to_lowercase()).count() == 1 {
            assert_eq!(by_name.unwrap().id, id);
        }
    }
    assert!(find_partner(&r, "Нет такого").unwrap_err().to_string().contains("no partner"));
}

#[test]
fn a_deal_file_holds_everything_in_time_order_in_pages() {
    use crmkit_core::deal_file::{deal_file, FileQuery, ItemKind};
    use crmkit_core::model::{EntityKind, EntityRef, Participant};

    // Its own demo: the test writes an attachment, and the shared one must stay as made.
    let (_dir, inst, _) = crate::demo::make(300, 11);
    // A deal with a long history: a won one with documents.
    let r = inst.store().read().unwrap();
    let mut deals = Vec::new();
    r.for_each::<Deal>(|d| {
        deals.push(d);
        true
    })
    .unwrap();
    let deal = deals.iter().filter(|d| d.status == DealStatus::Won).max_by_key(|d| d.history_steps).unwrap();
    // An attachment on it, in a new transaction.
    let before = r.stage_history(deal.id).unwrap().len();
    drop(r);
    inst.store()
        .transact(None, |tx| {
            tx.attach(
                EntityRef { kind: EntityKind::Deal, id: deal.id.raw() },
                "contract.pdf",
                "application/pdf",
                b"%PDF",
            )
        })
        .unwrap();
    let r = inst.store().read().unwrap();

    let all = deal_file(&r, deal.id, &FileQuery::default()).unwrap();
    let count = |k: ItemKind| all.items.iter().filter(|i| i.kind() == k).count();
    assert_eq!(count(ItemKind::Step), before);
    let mut inters = 0;
    r.for_each::<Interaction>(|i| {
        inters += usize::from(i.deal == Some(deal.id));
        true
    })
    .unwrap();
    let mut docs = 0;
    r.for_each::<Document>(|d| {
        docs += usize::from(d.deal == Some(deal.id));
        true
    })
    .unwrap();
    let mut parts = 0;
    r.for_each::<Participant>(|p| {
        parts += usize::from(p.deal == deal.id);
        true
    })
    .unwrap();
    assert_eq!(
        (count(ItemKind::Interaction), count(ItemKind::Document), count(ItemKind::Attachment)),
        (inters, docs, 1)
    );
    assert_eq!(count(ItemKind::Audit), r.audit_of::<Deal>(deal.id).unwrap().len());
    assert_eq!(all.participants.len(), parts);
    assert!(all.items.windows(2).all(|w| w[0].at() <= w[1].at()), "time order");
    assert_eq!(all.total, all.items.len());

    // Pages add up to the whole; filters by kind and period.
    let mut paged = Vec::new();
    let mut q = FileQuery { limit: 3, ..Default::default() };
    loop {
        let page = deal_file(&r, deal.id, &q).unwrap();
        assert_eq!(page.total, all.total);
        if page.items.is_empty() {
            break;
        }
        paged.extend(page.items);
        q.offset += 3;
    }
    assert_eq!(paged, all.items);
    let steps = deal_file(&r, deal.id, &FileQuery { kinds: vec![ItemKind::Step], ..Default::default() }).unwrap();
    assert!(steps.items.iter().all(|i| i.kind() == ItemKind::Step) && steps.total == before);
    let mid = all.items[all.items.len() / 2].at();
    let late = deal_file(&r, deal.id, &FileQuery { from: Some(mid), ..Default::default() }).unwrap();
    let early = deal_file(&r, deal.id, &FileQuery { to: Some(mid), ..Default::default() }).unwrap();
    assert_eq!(late.total + early.total, all.total);
    assert!(late.items.iter().all(|i| i.at() >= mid) && early.items.iter().all(|i| i.at() < mid));
    assert!(serde_json::to_value(&all).unwrap()["items"][0]["type"] == "step");
}
