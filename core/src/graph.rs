//! The partner graph: groups of companies with their roll-ups, partner links as a graph
//! (neighbours, the path between two partners), and the deal environment across deals (a
//! competitor's deals, the deals a contact person touched), read from one snapshot.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use crate::dossier::Amounts;
use crate::id::{
    ContactId, CounterpartyId, DealId, DocumentId, InteractionId, ParticipantId, PartnerId, PartnerLinkId,
};
use crate::id::{RawId, TypedId};
use crate::model::{
    Deal, DealStatus, Document, DocumentKind, DocumentState, Interaction, Participant, Partner, PartnerLink,
};
use crate::store::{Index, Reader};
use crate::Result;

fn ids<R: Reader>(r: &R, index: Index, of: RawId) -> Result<Vec<RawId>> {
    r.ids_by(index, &of.to_bytes(), None, usize::MAX)
}

/// The figures of one partner (or a whole group).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub open_deals: usize,
    pub won_deals: usize,
    pub lost_deals: usize,
    pub open_amount: Amounts,
    pub won_amount: Amounts,
    pub documents: usize,
    /// Invoices issued and not cancelled.
    pub invoiced: Amounts,
    /// Completed payments.
    pub paid: Amounts,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.open_deals += other.open_deals;
        self.won_deals += other.won_deals;
        self.lost_deals += other.lost_deals;
        self.documents += other.documents;
        for (to, from) in [
            (&mut self.open_amount, &other.open_amount),
            (&mut self.won_amount, &other.won_amount),
            (&mut self.invoiced, &other.invoiced),
            (&mut self.paid, &other.paid),
        ] {
            for (c, v) in from {
                *to.entry(*c).or_default() += v;
            }
        }
    }
}

/// A group of companies with its figures, per member and in total.
#[derive(Clone, Debug, Serialize)]
pub struct GroupRollup {
    /// The partner at the top of the group.
    pub head: Partner,
    /// Every member (the head first, then breadth first) with its own figures.
    pub members: Vec<(Partner, Figures)>,
    pub total: Figures,
}

/// The figures of one partner.
pub fn figures<R: Reader>(r: &R, partner: PartnerId) -> Result<Figures> {
    let mut f = Figures::default();
    for id in ids(r, Index::DealByPartner, partner.raw())? {
        let d = r
            .get_shared::<Deal>(DealId(id))?
            .ok_or(crate::Error::NotFound { kind: crate::model::EntityKind::Deal, id })?;
        let (c, a) = (d.amount.currency, d.amount.amount);
        match d.status {
            DealStatus::Won => {
                f.won_deals += 1;
                *f.won_amount.entry(c).or_default() += a;
            }
            DealStatus::Lost => f.lost_deals += 1,
            DealStatus::InProgress | DealStatus::OnHold => {
                f.open_deals += 1;
                *f.open_amount.entry(c).or_default() += a;
            }
        }
    }
    for id in ids(r, Index::DocumentByPartner, partner.raw())? {
        let d: std::sync::Arc<Document> = r
            .get_shared(DocumentId(id))?
            .ok_or(crate::Error::NotFound { kind: crate::model::EntityKind::Document, id })?;
        f.documents += 1;
        let (c, a) = (d.amount.currency, d.amount.amount);
        match (d.kind, d.state) {
            (_, DocumentState::Cancelled | DocumentState::Draft) => {}
            (DocumentKind::Invoice, _) => *f.invoiced.entry(c).or_default() += a,
            (DocumentKind::Payment, DocumentState::Completed) => *f.paid.entry(c).or_default() += a,
            _ => {}
        }
    }
    Ok(f)
}

/// The group `partner` belongs to, from its top, with every member's figures and the total.
/// `max_members` bounds a runaway tree.
pub fn group_rollup<R: Reader>(r: &R, partner: PartnerId, max_members: usize) -> Result<GroupRollup> {
    let mut head: Partner = r.load(partner)?;
    let mut seen = BTreeSet::from([head.id]);
    while let Some(parent) = head.parent {
        if !seen.insert(parent) {
            break;
        }
        head = r.load(parent)?;
    }
    let mut members = Vec::new();
    let mut total = Figures::default();
    let mut queue = VecDeque::from([head.clone()]);
    let mut visited = BTreeSet::from([head.id]);
    while let Some(p) = queue.pop_front() {
        if members.len() >= max_members {
            break;
        }
        for child in ids(r, Index::PartnerByParent, p.id.raw())? {
            if visited.insert(PartnerId(child)) {
                queue.push_back(r.load(PartnerId(child))?);
            }
        }
        let f = figures(r, p.id)?;
        total.add(&f);
        members.push((p, f));
    }
    Ok(GroupRollup { head, members, total })
}

/// The partners linked to `partner` (of `link_type`, or any), with the links.
pub fn neighbours<R: Reader>(
    r: &R,
    partner: PartnerId,
    link_type: Option<&str>,
) -> Result<Vec<(PartnerLink, Partner)>> {
    let mut out = Vec::new();
    for id in ids(r, Index::PartnerLinkByPartner, partner.raw())? {
        let link: PartnerLink = r.load(PartnerLinkId(id))?;
        if link_type.is_some_and(|t| t != link.link_type) {
            continue;
        }
        let other = if link.from == partner { link.to } else { link.from };
        out.push((link, r.load(other)?));
    }
    Ok(out)
}

/// The shortest chain of partner links from `from` to `to`, at most `max_depth` links long:
/// the links in order (empty when `from == to`), or `None` when there is none.
pub fn path<R: Reader>(r: &R, from: PartnerId, to: PartnerId, max_depth: usize) -> Result<Option<Vec<PartnerLink>>> {
    if from == to {
        return Ok(Some(Vec::new()));
    }
    let mut came: BTreeMap<PartnerId, PartnerLink> = BTreeMap::new();
    let mut level = vec![from];
    let mut seen = BTreeSet::from([from]);
    for _ in 0..max_depth {
        let mut next = Vec::new();
        for p in level {
            for id in ids(r, Index::PartnerLinkByPartner, p.raw())? {
                let link: PartnerLink = r.load(PartnerLinkId(id))?;
                let other = if link.from == p { link.to } else { link.from };
                if !seen.insert(other) {
                    continue;
                }
                came.insert(other, link);
                if other == to {
                    let mut chain = Vec::new();
                    let mut at = to;
                    while at != from {
                        let link = came[&at].clone();
                        at = if link.to == at { link.from } else { link.to };
                        chain.push(link);
                    }
                    chain.reverse();
                    return Ok(Some(chain));
                }
                next.push(other);
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(None)
}

/// A deal a partner or contact took part in, and how.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Involvement {
    pub deal: Deal,
    /// The participant records (roles, attitude) in that deal's environment.
    pub as_participant: Vec<Participant>,
    /// Whether the deal was lost to this partner (it is the deal's winning competitor).
    pub won_against_us: bool,
}

/// The deals where `partner` took part (as a competitor, subcontractor, …) or that were lost
/// to it, oldest first.
pub fn deals_involving_partner<R: Reader>(r: &R, partner: PartnerId) -> Result<Vec<Involvement>> {
    let mut by_deal: BTreeMap<DealId, Vec<Participant>> = BTreeMap::new();
    for id in ids(r, Index::ParticipantByPartner, partner.raw())? {
        let p: Participant = r.load(ParticipantId(id))?;
        by_deal.entry(p.deal).or_default().push(p);
    }
    for id in ids(r, Index::DealByCompetitor, partner.raw())? {
        by_deal.entry(DealId(id)).or_default();
    }
    let mut out = Vec::new();
    for (deal, as_participant) in by_deal {
        let deal: Deal = r.load(deal)?;
        let won_against_us = deal.status == DealStatus::Lost && deal.competitor == Some(partner);
        out.push(Involvement { deal, as_participant, won_against_us });
    }
    Ok(out)
}

/// The deals a contact person touched: as a participant of the environment, or in an
/// interaction recorded on the deal; oldest first.
pub fn deals_touched_by_contact<R: Reader>(r: &R, contact: ContactId) -> Result<Vec<Involvement>> {
    let mut by_deal: BTreeMap<DealId, Vec<Participant>> = BTreeMap::new();
    for id in ids(r, Index::ParticipantByContact, contact.raw())? {
        let p: Participant = r.load(ParticipantId(id))?;
        by_deal.entry(p.deal).or_default().push(p);
    }
    for id in ids(r, Index::InteractionByContact, contact.raw())? {
        let i: Interaction = r.load(InteractionId(id))?;
        if let Some(d) = i.deal {
            by_deal.entry(d).or_default();
        }
    }
    let mut out = Vec::new();
    for (deal, as_participant) in by_deal {
        out.push(Involvement { deal: r.load(deal)?, as_participant, won_against_us: false });
    }
    Ok(out)
}

/// The partners a counterparty serves.
pub fn partners_of_counterparty<R: Reader>(r: &R, counterparty: CounterpartyId) -> Result<Vec<Partner>> {
    ids(r, Index::PartnerByCounterparty, counterparty.raw())?.into_iter().map(|id| r.load(PartnerId(id))).collect()
}
