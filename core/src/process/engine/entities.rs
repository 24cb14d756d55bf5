//! Entities written through the engine outside a deal's steps: `entity.before_save`
//! guards before the write, an interaction's `interaction.after_create` reactions after it,
//! a completed sale's accrual on its loyalty cards.

use super::reactions::subject;
use super::Cx;
use crate::hooks::{HookPoint, Subject};
use crate::model::{Deal, Document, Entity, EntityKind, Interaction};
use crate::store::{Reader, WriteTxn};
use crate::Result;

impl Cx<'_> {
    /// Saves a deal through `entity.before_save` guards (no change of stage or status).
    pub(super) fn save(&self, tx: &mut WriteTxn<'_>, deal: Deal) -> Result<Deal> {
        self.update(tx, deal)
    }

    pub(super) fn create<E: Entity>(&self, tx: &mut WriteTxn<'_>, entity: E) -> Result<E> {
        if E::KIND == EntityKind::Deal {
            let deal = (&entity as &dyn std::any::Any).downcast_ref::<Deal>().expect("a deal").clone();
            let deal = self.create_deal(tx, deal)?;
            return Ok((&deal as &dyn std::any::Any).downcast_ref::<E>().expect("a deal").clone());
        }
        let mut entity = entity;
        if self.hooks.any(HookPoint::EntityBeforeSave, None) {
            // Checked before a handler sees it, as the write checks it after.
            tx.check(&mut entity, None)?;
            let after = subject(&entity);
            self.guard(&self.input(&*tx, HookPoint::EntityBeforeSave, None, E::KIND, None, Some(after), None))?;
        }
        let e = tx.create(entity)?;
        if let Some(doc) = (&e as &dyn std::any::Any).downcast_ref::<Document>() {
            self.accrue_sale(tx, doc)?;
        }
        if let Some(it) = (&e as &dyn std::any::Any).downcast_ref::<Interaction>() {
            let deal = match it.deal {
                Some(d) => Some(tx.load::<Deal>(d)?),
                None => None,
            };
            let kind = deal.as_ref().map(|d| d.kind.as_str());
            if self.hooks.any(HookPoint::InteractionAfterCreate, kind) {
                let input = self.input(
                    &*tx,
                    HookPoint::InteractionAfterCreate,
                    kind,
                    EntityKind::Interaction,
                    None,
                    Some(Subject::Interaction(it)),
                    None,
                );
                let actions = self.react(&input, deal.as_ref().map(|d| d.id))?;
                if let Some(deal) = deal {
                    self.deeper().apply(tx, deal.id, None, actions)?;
                }
            }
        }
        Ok(e)
    }

    pub(super) fn update<E: Entity>(&self, tx: &mut WriteTxn<'_>, mut entity: E) -> Result<E> {
        let kind_of = |e: &E| (e as &dyn std::any::Any).downcast_ref::<Deal>().map(|d| d.kind.clone());
        let pkind = kind_of(&entity);
        if self.hooks.any(HookPoint::EntityBeforeSave, pkind.as_deref()) {
            let before: E = tx.load(entity.id())?;
            tx.check(&mut entity, Some(&before))?;
            let input = self.input(
                &*tx,
                HookPoint::EntityBeforeSave,
                pkind.as_deref(),
                E::KIND,
                Some(subject(&before)),
                Some(subject(&entity)),
                None,
            );
            self.guard(&input)?;
        }
        let e = tx.update(entity)?;
        if let Some(doc) = (&e as &dyn std::any::Any).downcast_ref::<Document>() {
            self.accrue_sale(tx, doc)?;
        }
        Ok(e)
    }
}
