//! What a write checks before it changes anything: an entity's normalization, validation and
//! references, its unique values, and that nothing refers to an entity being deleted.

use super::{Reader, WriteTxn};
use crate::id::{RawId, TypedId};
use crate::model::{
    custom, Cx, Entity, EntityKind, FieldError, Index, IndexEntry, Participant, Partner, Ref, Requirement, Target,
};
use crate::{Error, Result};

impl WriteTxn<'_> {
    /// Normalizes and validates an entity, and checks every reference it makes.
    /// References the stored version `old` already made are not checked again: what they
    /// point at cannot be deleted while they do. The process engine calls it before any hook
    /// sees a change, so a handler never meets a reference to nothing.
    pub(crate) fn check<E: Entity>(&self, entity: &mut E, old: Option<&E>) -> Result<()> {
        let settings = self.store.settings.clone();
        let cx = Cx { rules: &*settings };
        entity.normalize(cx)?;
        entity.validate(cx)?;
        let mut refs = Vec::new();
        entity.refs(&mut refs);
        if let Some(values) = entity.custom() {
            custom::check(E::KIND, values, settings.custom_fields_of(E::KIND), Some(&mut refs))?;
        }
        let old_refs = old.map(|old| crate::model::references(old, &*settings)).unwrap_or_default();
        for r in refs.iter().filter(|r| !old_refs.contains(r)) {
            self.check_ref(E::KIND, r)?;
        }
        Ok(())
    }

    fn check_ref(&self, kind: EntityKind, r: &Ref) -> Result<()> {
        let fail = |m: String| -> Result<()> { Err(FieldError::new(kind, r.field.clone(), m).into()) };
        if !self.exists(r.kind, r.id)? {
            return fail(format!("refers to {} {}, which does not exist", r.kind, r.id));
        }
        match r.must {
            None => Ok(()),
            Some(Requirement::PartnerRole(role)) => {
                let p: Partner = self.load(crate::id::PartnerId(r.id))?;
                if p.has_role(role) {
                    Ok(())
                } else {
                    fail(format!("partner {} (\"{}\") does not have the {} role", r.id, p.name, role.name()))
                }
            }
            Some(Requirement::CounterpartyOf(partner)) => {
                let p: Partner = self.load(partner)?;
                if p.counterparties.iter().any(|c| c.raw() == r.id) {
                    Ok(())
                } else {
                    fail(format!("counterparty {} is not one of partner {}'s counterparties", r.id, p.id))
                }
            }
            Some(Requirement::ParticipantOf(deal)) => {
                let p: Participant = self.load(crate::id::ParticipantId(r.id))?;
                if p.deal == deal {
                    Ok(())
                } else {
                    fail(format!("participant {} belongs to deal {}, not to deal {deal}", r.id, p.deal))
                }
            }
            Some(Requirement::DealOf(partner)) => {
                let d: crate::model::Deal = self.load(crate::id::DealId(r.id))?;
                if d.partner == partner {
                    Ok(())
                } else {
                    fail(format!("deal {} is partner {}'s, not partner {partner}'s", r.id, d.partner))
                }
            }
            Some(Requirement::DealConcerns(partner)) => {
                let d: crate::model::Deal = self.load(crate::id::DealId(r.id))?;
                let takes_part = || -> Result<bool> {
                    let ids = self.ids_by(Index::ParticipantByPartner, &partner.raw().to_bytes(), None, usize::MAX)?;
                    for id in ids {
                        if self.load::<Participant>(crate::id::ParticipantId(id))?.deal == d.id {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                };
                if d.partner == partner || takes_part()? {
                    Ok(())
                } else {
                    fail(format!("deal {} is neither partner {partner}'s nor has it as a participant", r.id))
                }
            }
            Some(Requirement::PlanFits { plan, from, to, currency }) => {
                let user: crate::model::User = self.load(crate::id::UserId(r.id))?;
                let clash = |other_from, other_to, other_currency, which: String| -> Option<String> {
                    if other_currency != currency {
                        Some(format!(
                            "{}'s plans are in {other_currency} ({which}), so this one cannot be in {currency}",
                            user.login
                        ))
                    } else if other_from <= to && from <= other_to {
                        Some(format!(
                            "{}'s plan from {from} to {to} overlaps {which}, from {other_from} to {other_to}",
                            user.login
                        ))
                    } else {
                        None
                    }
                };
                for p in self.settings().plans.iter().filter(|p| p.manager == user.login) {
                    let which = format!("the plan of config line {}", p.line);
                    if let Some(m) = clash(p.from, p.to, p.amount.currency, which) {
                        return fail(m);
                    }
                }
                for id in self.ids_by(Index::PlanByManager, &r.id.to_bytes(), None, usize::MAX)? {
                    if id == plan.raw() {
                        continue;
                    }
                    let p: crate::model::Plan = self.load(crate::id::PlanId(id))?;
                    if let Some(m) = clash(p.from, p.to, p.amount.currency, format!("plan {}", p.id)) {
                        return fail(m);
                    }
                }
                Ok(())
            }
            Some(Requirement::CardHeldBy(partner)) => {
                let card: crate::model::LoyaltyCard = self.load(crate::id::LoyaltyCardId(r.id))?;
                let holder = match (card.partner, card.contact) {
                    (Some(p), _) => Some(p),
                    (None, Some(c)) => Some(self.load::<crate::model::ContactPerson>(c)?.partner),
                    (None, None) => None,
                };
                if holder == Some(partner) {
                    Ok(())
                } else {
                    fail(format!(
                        "card {} is held by neither partner {partner} nor one of its contact persons",
                        card.number
                    ))
                }
            }
            Some(Requirement::ContactOf(partner)) => {
                let c: crate::model::ContactPerson = self.load(crate::id::ContactId(r.id))?;
                if c.partner == partner {
                    Ok(())
                } else {
                    fail(format!(
                        "contact {} (\"{}\") is partner {}'s, not partner {partner}'s",
                        r.id, c.name, c.partner
                    ))
                }
            }
            Some(Requirement::DocumentOf(partner)) => {
                let d: crate::model::Document = self.load(crate::id::DocumentId(r.id))?;
                if d.partner == partner {
                    Ok(())
                } else {
                    fail(format!("document {} is partner {}'s, not partner {partner}'s", r.id, d.partner))
                }
            }
            Some(Requirement::NotDescendantOf(me)) => {
                let mut at = Some(crate::id::PartnerId(r.id));
                let mut steps = 0;
                while let Some(p) = at {
                    if p == me {
                        return fail("would make the partner its own ancestor (a cycle in the group)".into());
                    }
                    steps += 1;
                    if steps > 10_000 {
                        return fail("the group chain is too deep".into());
                    }
                    at = self.load::<Partner>(p)?.parent;
                }
                Ok(())
            }
        }
    }

    pub(super) fn check_unique<E: Entity>(&self, entries: &[IndexEntry], me: RawId) -> Result<()> {
        for e in entries.iter().filter(|e| e.index.unique()) {
            if let Some(other) = self.ids_by(e.index, &e.prefix, None, 2)?.into_iter().find(|id| *id != me) {
                let value = String::from_utf8_lossy(e.prefix.strip_suffix(&[0]).unwrap_or(&e.prefix)).into_owned();
                return Err(Error::Duplicate { kind: E::KIND, field: e.index.field(), value, other });
            }
        }
        Ok(())
    }

    pub(super) fn check_unreferenced(&self, kind: EntityKind, id: RawId) -> Result<()> {
        let prefix = id.to_bytes();
        for index in Index::ALL.iter().copied() {
            let refers = match index.target() {
                Target::Kind(k) => k == kind,
                Target::Any => true,
                Target::Value => false,
            };
            if !refers {
                continue;
            }
            let count = self.ids_by(index, &prefix, None, 1000)?.into_iter().filter(|r| *r != id).count();
            if count > 0 {
                return Err(Error::Referenced {
                    kind,
                    id,
                    by: index.owner().map_or_else(|| "other".to_string(), |k| k.name().to_string()),
                    field: index.field(),
                    count,
                });
            }
        }
        Ok(())
    }
}
