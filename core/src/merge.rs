//! Merging two duplicate partners: everything that refers to the duplicate moves to the
//! partner that stays, then the duplicate is deleted. Every change goes through the store,
//! so each is validated and audited; the final delete refuses if anything still refers to
//! the duplicate, so a merge cannot leave orphans.

use serde::Serialize;

use crate::id::{
    AttachmentId, ContactId, DealId, DocumentId, InteractionId, ParticipantId, PartnerId, PartnerLinkId, RawId, TypedId,
};
use crate::model::{
    Attachment, ContactPerson, Counterparty, CustomValue, Deal, Document, Entity, EntityKind, Interaction, Participant,
    Partner, PartnerLink, User,
};
use crate::store::{Index, Reader, WriteTxn};
use crate::{Error, Result};

/// What a merge moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    pub deals: usize,
    pub contacts: usize,
    pub interactions: usize,
    pub documents: usize,
    pub participants: usize,
    /// Deals lost to the duplicate as a competitor.
    pub lost_to: usize,
    pub links_moved: usize,
    /// Links between the two, or the same as one the partner that stays has: dropped.
    pub links_dropped: usize,
    pub children: usize,
    pub counterparties: usize,
    pub attachments: usize,
    pub custom_refs: usize,
    /// Loyalty cards the duplicate held.
    pub loyalty_cards: usize,
    /// Claims the duplicate made.
    pub claims: usize,
}

/// Merges partner `duplicate` into `keep` inside `tx`, all or nothing.
pub fn merge_partners(tx: &mut WriteTxn<'_>, keep: PartnerId, duplicate: PartnerId) -> Result<MergeReport> {
    tx.attempt(|tx| merge(tx, keep, duplicate))
}

fn ids(tx: &WriteTxn<'_>, index: Index, of: PartnerId) -> Result<Vec<RawId>> {
    tx.ids_by(index, &of.raw().to_bytes(), None, usize::MAX)
}

fn merge(tx: &mut WriteTxn<'_>, keep: PartnerId, dup: PartnerId) -> Result<MergeReport> {
    if keep == dup {
        return Err(Error::NotAllowed(format!("partner {keep} cannot be merged into itself")));
    }
    let mut report = MergeReport::default();
    let mut k: Partner = tx.load(keep)?;
    let d: Partner = tx.load(dup)?;
    // The partner that stays takes the duplicate's place in the group if it sat under it.
    let mut at = k.parent;
    let mut depth = 0;
    while let Some(p) = at {
        if p == dup && depth > 0 {
            return Err(Error::NotAllowed(format!(
                "partner {keep} lies deeper inside the group of {dup}: merge {dup} into its direct member, or the other way round"
            )));
        }
        depth += 1;
        at = tx.load::<Partner>(p)?.parent;
    }
    if k.parent == Some(dup) {
        k.parent = d.parent;
    }
    for role in &d.roles {
        if !k.roles.contains(role) {
            k.roles.push(*role);
        }
    }
    for c in &d.counterparties {
        if !k.counterparties.contains(c) {
            k.counterparties.push(*c);
            report.counterparties += 1;
        }
    }
    if k.manager.is_none() {
        k.manager = d.manager;
    }
    if k.segment.is_none() {
        k.segment = d.segment.clone();
    }
    for (name, value) in &d.custom {
        k.custom.entry(name.clone()).or_insert_with(|| value.clone());
    }
    tx.update(k)?;

    for id in ids(tx, Index::PartnerByParent, dup)? {
        let mut child: Partner = tx.load(PartnerId(id))?;
        if child.id == keep {
            continue;
        }
        child.parent = Some(keep);
        tx.update(child)?;
        report.children += 1;
    }
    for id in ids(tx, Index::DealByPartner, dup)? {
        let mut deal: Deal = tx.load(DealId(id))?;
        deal.partner = keep;
        tx.update(deal)?;
        report.deals += 1;
    }
    for id in ids(tx, Index::DealByCompetitor, dup)? {
        let mut deal: Deal = tx.load(DealId(id))?;
        deal.competitor = Some(keep);
        // The loss stays the same loss: only who won it is now known under one name.
        tx.as_engine(|tx| tx.update(deal))?;
        report.lost_to += 1;
    }
    for id in ids(tx, Index::ContactByPartner, dup)? {
        let mut c: ContactPerson = tx.load(ContactId(id))?;
        c.partner = keep;
        tx.update(c)?;
        report.contacts += 1;
    }
    // The duplicate's loyalty cards, with their ledgers, before the documents that name them:
    // a sale's card is held by its partner or one of its contact persons.
    for id in ids(tx, Index::LoyaltyCardByPartner, dup)? {
        let mut card: crate::model::LoyaltyCard = tx.load(crate::id::LoyaltyCardId(id))?;
        card.partner = Some(keep);
        tx.update(card)?;
        report.loyalty_cards += 1;
    }
    for id in ids(tx, Index::DocumentByPartner, dup)? {
        let mut doc: Document = tx.load(DocumentId(id))?;
        doc.partner = keep;
        tx.update(doc)?;
        report.documents += 1;
    }
    // Its claims, after the contacts and documents they may name; a claim's client changes
    // only by a merge.
    for id in ids(tx, Index::ClaimByPartner, dup)? {
        let mut claim: crate::model::Claim = tx.load(crate::id::ClaimId(id))?;
        claim.partner = keep;
        tx.as_engine(|tx| tx.update(claim))?;
        report.claims += 1;
    }
    for id in ids(tx, Index::InteractionByPartner, dup)? {
        let mut it: Interaction = tx.load(InteractionId(id))?;
        it.partner = keep;
        tx.update(it)?;
        report.interactions += 1;
    }
    for id in ids(tx, Index::ParticipantByPartner, dup)? {
        let mut p: Participant = tx.load(ParticipantId(id))?;
        p.partner = Some(keep);
        tx.update(p)?;
        report.participants += 1;
    }
    let kept_links: Vec<PartnerLink> = ids(tx, Index::PartnerLinkByPartner, keep)?
        .into_iter()
        .map(|id| tx.load(PartnerLinkId(id)))
        .collect::<Result<_>>()?;
    for id in ids(tx, Index::PartnerLinkByPartner, dup)? {
        let mut link: PartnerLink = tx.load(PartnerLinkId(id))?;
        if link.from == dup {
            link.from = keep;
        }
        if link.to == dup {
            link.to = keep;
        }
        let same = kept_links.iter().any(|l| l.link_type == link.link_type && l.from == link.from && l.to == link.to);
        if link.from == link.to || same {
            tx.delete::<PartnerLink>(link.id, link.version)?;
            report.links_dropped += 1;
        } else {
            tx.update(link)?;
            report.links_moved += 1;
        }
    }
    for id in tx.ids_by(Index::AttachmentByOwner, &dup.raw().to_bytes(), None, usize::MAX)? {
        let mut a: Attachment = tx.load(AttachmentId(id))?;
        if a.owner.kind == EntityKind::Partner && a.owner.id == dup.raw() {
            a.owner.id = keep.raw();
            tx.update(a)?;
            report.attachments += 1;
        }
    }
    for id in tx.ids_by(Index::CustomRef, &dup.raw().to_bytes(), None, usize::MAX)? {
        report.custom_refs += retarget::<Counterparty>(tx, id, dup, keep)?
            + retarget::<Partner>(tx, id, dup, keep)?
            + retarget::<ContactPerson>(tx, id, dup, keep)?
            + retarget::<User>(tx, id, dup, keep)?
            + retarget::<Deal>(tx, id, dup, keep)?
            + retarget::<Interaction>(tx, id, dup, keep)?
            + retarget::<Document>(tx, id, dup, keep)?;
    }
    // A re-run of the import that brought the duplicate in finds the survivor.
    tx.move_external_keys(EntityKind::Partner, dup.raw(), keep.raw())?;
    let d: Partner = tx.load(dup)?;
    tx.delete::<Partner>(dup, d.version)?;
    Ok(report)
}

/// Points the custom reference fields of entity `id` (if it is an `E`) at `keep` instead of
/// `dup`; returns how many it changed.
fn retarget<E: Entity>(tx: &mut WriteTxn<'_>, id: RawId, dup: PartnerId, keep: PartnerId) -> Result<usize> {
    let Some(mut e) = tx.get::<E>(E::Id::from_raw(id))? else { return Ok(0) };
    let mut changed = 0;
    let mut custom = e.custom().cloned().unwrap_or_default();
    for v in custom.values_mut() {
        if *v == CustomValue::Ref(dup.raw()) {
            *v = CustomValue::Ref(keep.raw());
            changed += 1;
        }
    }
    if changed > 0 {
        set_custom(&mut e, custom);
        tx.update(e)?;
    }
    Ok(changed)
}

fn set_custom<E: Entity>(e: &mut E, custom: crate::model::CustomFields) {
    let any = e as &mut dyn std::any::Any;
    if let Some(x) = any.downcast_mut::<Counterparty>() {
        x.custom = custom;
    } else if let Some(x) = any.downcast_mut::<Partner>() {
        x.custom = custom;
    } else if let Some(x) = any.downcast_mut::<ContactPerson>() {
        x.custom = custom;
    } else if let Some(x) = any.downcast_mut::<User>() {
        x.custom = custom;
    } else if let Some(x) = any.downcast_mut::<Deal>() {
        x.custom = custom;
    } else if let Some(x) = any.downcast_mut::<Interaction>() {
        x.custom = custom;
    } else if let Some(x) = any.downcast_mut::<Document>() {
        x.custom = custom;
    }
}
