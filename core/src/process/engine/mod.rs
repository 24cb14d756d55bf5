//! The engine: every change of a deal's stage or status, and of tasks, goes through here.
//! Each operation works inside the caller's write transaction and is all-or-nothing: when it
//! fails (a rule, a guard, a handler fault) the transaction is as it was before the call.

use std::sync::Arc;

use super::spec::ProcessKindSpec;
use crate::config::Settings;
use crate::hooks::Hooks;
use crate::id::{DealId, PartnerId, TaskId, TypedId, UserId};
use crate::model::{Deal, DealStatus, Entity, EntityKind, FieldError, How, Task, TaskStatus, User};
use crate::store::{Reader, WriteTxn};
use crate::time::Timestamp;
use crate::{Error, Result};

mod claims;
mod entities;
mod import;
mod lifecycle;
mod loyalty;
mod reactions;
mod score;
mod tasks;

use lifecycle::unmet;
pub use loyalty::{is_sale, last_day, ledger, unusable, verify as verify_loyalty, Expired};
pub use score::Rescored;

/// How a deal is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Won {
        /// The step's comment, kept in the stage history (empty: none).
        comment: String,
    },
    Lost {
        /// An id of the kind's loss reasons.
        reason: String,
        /// The partner (with the competitor role) that won instead.
        competitor: Option<PartnerId>,
        comment: String,
    },
}

/// A step of a history brought in from another system, with its original time. The stage
/// and status it starts from are the previous step's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportStep {
    pub at: Timestamp,
    pub how: How,
    pub to_stage: Option<String>,
    pub to_status: DealStatus,
    pub actor: Option<UserId>,
    pub note: Option<String>,
}

/// The process engine: the rules of process kinds, plus the hook handlers it asks.
#[derive(Clone, Debug)]
pub struct Engine {
    hooks: Hooks,
}

/// What one operation works with.
struct Cx<'e> {
    settings: Arc<Settings>,
    actor: Option<Arc<User>>,
    hooks: &'e Hooks,
    depth: u32,
    /// The instant of the operation: every step, task and stamp it writes shares it.
    now: Timestamp,
}

impl Engine {
    /// An engine calling `hooks`: the bindings already made, then those of config's
    /// `[[hooks]]`, each found through its runtime's provider in `hooks`. Every binding that
    /// cannot be made (no such handler, no such runtime, a script function that does not
    /// exist) is named in the error, with its place in config.
    pub fn new(settings: &Settings, mut hooks: Hooks) -> Result<Engine> {
        hooks.bind_all(&settings.hooks)?;
        Ok(Engine { hooks })
    }

    /// An engine that calls no hooks at all, whatever config binds: for programs that
    /// replay or generate histories (the demo company) rather than serve users.
    pub fn without_hooks() -> Engine {
        Engine { hooks: Hooks::new() }
    }

    /// The hook handlers and bindings.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    fn cx(&self, tx: &WriteTxn<'_>) -> Result<Cx<'_>> {
        let actor = match tx.actor() {
            Some(id) => {
                let user =
                    tx.get_shared::<User>(id)?.ok_or(Error::NotFound { kind: EntityKind::User, id: id.raw() })?;
                // Acting in one role, the user may do what that role may, not what their others may.
                Some(match tx.acting_role() {
                    Some(role) if user.roles != [role] => {
                        let mut u = (*user).clone();
                        u.roles.retain(|r| *r == role);
                        Arc::new(u)
                    }
                    _ => user,
                })
            }
            None => None,
        };
        Ok(Cx { settings: tx.settings_arc(), actor, hooks: &self.hooks, depth: 0, now: tx.now() })
    }

    /// Creates a deal in the first stage of its kind, in progress, and (managed kinds) the
    /// first stage's tasks.
    pub fn create_deal(&self, tx: &mut WriteTxn<'_>, deal: Deal) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.create_deal(tx, deal)?;
            cx.score(tx, deal)
        })
    }

    /// Moves a deal by hand to `to`. Manual kinds: any stage the current one allows.
    /// Managed kinds: only back; the route moves deals forward ([`Engine::advance`]).
    pub fn move_deal(
        &self,
        tx: &mut WriteTxn<'_>,
        id: DealId,
        version: u64,
        to: &str,
        note: Option<&str>,
    ) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.move_deal(tx, id, version, to, note)?;
            cx.score(tx, deal)
        })
    }

    /// Managed kinds: moves the deal along its route if the stage's requirements hold;
    /// otherwise says what is missing.
    pub fn advance(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.current(tx, id, version)?;
            let deal = cx.advance(tx, deal)?;
            cx.score(tx, deal)
        })
    }

    /// Puts an in-progress deal on hold.
    pub fn hold(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, comment: &str) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.current(tx, id, version)?;
            let deal = cx.hold(tx, deal, comment)?;
            cx.score(tx, deal)
        })
    }

    /// Takes a deal off hold; `comment` (empty: none) is kept in the stage history.
    pub fn resume(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, comment: &str) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let old = cx.current(tx, id, version)?;
            if old.status != DealStatus::OnHold {
                return Err(process(id, format!("is {}, not on hold", old.status.name())));
            }
            let mut new = old.clone();
            new.status = DealStatus::InProgress;
            let deal = cx.transition(tx, old, new, How::Resume, Some(comment.to_string()))?;
            // Tasks done while the deal was on hold may have finished its stage.
            let deal = cx.auto_advance(tx, deal)?;
            cx.score(tx, deal)
        })
    }

    /// Closes a deal as won or lost.
    pub fn close(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, outcome: Outcome) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.close(tx, id, version, outcome)?;
            cx.score(tx, deal)
        })
    }

    /// Reopens a closed deal in `stage` (default: the stage it was closed in). Only users
    /// with one of the kind's `reopen_roles` may. `comment` (empty: none) is kept in the stage
    /// history.
    pub fn reopen(
        &self,
        tx: &mut WriteTxn<'_>,
        id: DealId,
        version: u64,
        stage: Option<&str>,
        comment: &str,
    ) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.reopen(tx, id, version, stage, comment)?;
            cx.score(tx, deal)
        })
    }

    /// Ticks a checklist item of the deal's current stage off (or back on).
    pub fn set_checked(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, item: &str, done: bool) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let mut deal = cx.current(tx, id, version)?;
            if deal.status != DealStatus::InProgress {
                return Err(process(id, format!("is {}: its checklist is for a deal in progress", deal.status.name())));
            }
            let kind = cx.kind(&deal)?;
            let stage = deal.stage.as_deref().and_then(|s| kind.stage(s));
            if !stage.is_some_and(|s| s.checklist.iter().any(|i| i.id == item)) {
                let known: Vec<&str> =
                    stage.map_or(Vec::new(), |s| s.checklist.iter().map(|i| i.id.as_str()).collect());
                return Err(FieldError::new(
                    EntityKind::Deal,
                    "checklist",
                    format!("\"{item}\" is not a checklist item of the current stage ({})", known.join(", ")),
                )
                .into());
            }
            deal.checklist.retain(|i| i != item);
            if done {
                deal.checklist.push(item.to_string());
                deal.checklist.sort();
            }
            let deal = cx.save(tx, deal)?;
            let deal = cx.auto_advance(tx, deal)?;
            cx.score(tx, deal)
        })
    }

    /// Creates any entity, asking `entity.before_save` guards first; an interaction then
    /// triggers `interaction.after_create` reactions. Deals go through [`Engine::create_deal`].
    pub fn create<E: Entity>(&self, tx: &mut WriteTxn<'_>, entity: E) -> Result<E> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.create(tx, entity))
    }

    /// Updates any entity, asking `entity.before_save` guards first. A deal's stage and
    /// status do not change this way.
    pub fn update<E: Entity>(&self, tx: &mut WriteTxn<'_>, entity: E) -> Result<E> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let e = cx.update(tx, entity)?;
            if let Some(deal) = (&e as &dyn std::any::Any).downcast_ref::<Deal>() {
                let deal = cx.auto_advance(tx, deal.clone())?;
                cx.score(tx, deal)?;
                return tx.load::<E>(e.id());
            }
            Ok(e)
        })
    }

    /// Completes a task: its executor may, and users with a role in
    /// `process.complete_others_tasks`. In a managed process this may move the deal on.
    pub fn complete_task(&self, tx: &mut WriteTxn<'_>, id: TaskId, version: u64) -> Result<Task> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.finish_and_score(tx, id, version, TaskStatus::Done))
    }

    /// Cancels an open task (same permissions as completing it).
    pub fn cancel_task(&self, tx: &mut WriteTxn<'_>, id: TaskId, version: u64) -> Result<Task> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.finish_and_score(tx, id, version, TaskStatus::Cancelled))
    }

    /// Brings in a deal from another system with its past stage history. The deal's
    /// `created_at` is the first step's time; the steps must be ordered, use the kind's
    /// stages, and end in the deal's stage and status.
    pub fn import_deal(&self, tx: &mut WriteTxn<'_>, deal: Deal, steps: Vec<ImportStep>) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.import_deal(tx, deal, steps)?;
            cx.score(tx, deal)
        })
    }

    /// What keeps the deal from leaving its current stage forward, one line each (empty:
    /// nothing).
    pub fn unmet(&self, r: &impl Reader, deal: &Deal) -> Result<Vec<String>> {
        let settings = r.settings();
        let Some(kind) = settings.process_kind(&deal.kind) else { return Ok(Vec::new()) };
        let Some(stage) = deal.stage.as_deref().and_then(|s| kind.stage(s)) else { return Ok(Vec::new()) };
        Ok(unmet(r, kind, stage, deal)?.into_iter().map(|(f, m)| format!("{f}: {m}")).collect())
    }
}

fn process(deal: DealId, message: impl Into<String>) -> Error {
    Error::Process { deal: deal.raw(), message: message.into() }
}

fn deal_field(field: &str, message: impl Into<String>) -> Error {
    FieldError::new(EntityKind::Deal, field, message).into()
}

impl Cx<'_> {
    /// Runs an operation all-or-nothing, with every write of it stamped with its instant.
    fn attempt<'a, R>(&self, tx: &mut WriteTxn<'a>, f: impl FnOnce(&mut WriteTxn<'a>) -> Result<R>) -> Result<R> {
        let was = tx.pin_now(Some(self.now));
        let r = tx.attempt(f);
        tx.pin_now(was);
        r
    }

    fn kind<'s>(&'s self, deal: &Deal) -> Result<&'s ProcessKindSpec> {
        self.settings
            .process_kind(&deal.kind)
            .ok_or_else(|| deal_field("kind", format!("\"{}\" is not a configured process kind", deal.kind)))
    }

    /// Finishes a task and, when that changed its deal (a managed deal moved on), scores
    /// the deal again.
    fn finish_and_score(&self, tx: &mut WriteTxn<'_>, id: TaskId, version: u64, to: TaskStatus) -> Result<Task> {
        let deal_before = match tx.load::<Task>(id)?.deal {
            Some(d) => Some((d, tx.load::<Deal>(d)?.version)),
            None => None,
        };
        let task = self.finish_task(tx, id, version, to)?;
        if let Some((d, v)) = deal_before {
            let deal: Deal = tx.load(d)?;
            if deal.version != v {
                self.score(tx, deal)?;
            }
        }
        Ok(task)
    }

    fn now(&self, _tx: &WriteTxn<'_>) -> Timestamp {
        self.now
    }

    /// The stored deal, if the caller has its current version.
    fn current(&self, tx: &WriteTxn<'_>, id: DealId, version: u64) -> Result<Deal> {
        let deal: Deal = tx.load(id)?;
        if deal.version != version {
            return Err(Error::Conflict { kind: EntityKind::Deal, id: id.raw(), given: version, stored: deal.version });
        }
        Ok(deal)
    }
}
