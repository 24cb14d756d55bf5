//! The engine: every change of a deal's stage or status, and of tasks, goes through here.
//! Each operation works inside the caller's write transaction and is all-or-nothing: when it
//! fails (a rule, a guard, a handler fault) the transaction is as it was before the call.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::condition::field_is_set;
use super::spec::{Assignee, Mode, ProcessKindSpec, StageSpec};
use crate::config::Settings;
use crate::hooks::{fault, Action, Answer, HookInput, HookPoint, Hooks, Subject, Transition, View};
use crate::id::{DealId, PartnerId, TaskId, TypedId, UserId};
use crate::model::{
    CustomFieldType, CustomValue, Deal, DealStatus, Entity, EntityKind, FieldError, How, Interaction, InteractionKind,
    StageChange, Task, TaskStatus, User,
};
use crate::store::{Reader, WriteTxn};
use crate::time::Timestamp;
use crate::{Error, Result};

/// How a deal is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Won,
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
        cx.attempt(tx, |tx| cx.create_deal(tx, deal))
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
        cx.attempt(tx, |tx| cx.move_deal(tx, id, version, to, note))
    }

    /// Managed kinds: moves the deal along its route if the stage's requirements hold;
    /// otherwise says what is missing.
    pub fn advance(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.current(tx, id, version)?;
            cx.advance(tx, deal)
        })
    }

    /// Puts an in-progress deal on hold.
    pub fn hold(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, comment: &str) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal = cx.current(tx, id, version)?;
            cx.hold(tx, deal, comment)
        })
    }

    /// Takes a deal off hold.
    pub fn resume(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let old = cx.current(tx, id, version)?;
            if old.status != DealStatus::OnHold {
                return Err(process(id, format!("is {}, not on hold", old.status.name())));
            }
            let mut new = old.clone();
            new.status = DealStatus::InProgress;
            let deal = cx.transition(tx, old, new, How::Resume, None)?;
            // Tasks done while the deal was on hold may have finished its stage.
            cx.auto_advance(tx, deal)
        })
    }

    /// Closes a deal as won or lost.
    pub fn close(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, outcome: Outcome) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.close(tx, id, version, outcome))
    }

    /// Reopens a closed deal in `stage` (default: the stage it was closed in). Only users
    /// with one of the kind's `reopen_roles` may.
    pub fn reopen(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, stage: Option<&str>) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.reopen(tx, id, version, stage))
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
            cx.auto_advance(tx, deal)
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
                cx.auto_advance(tx, deal.clone())?;
                return tx.load::<E>(e.id());
            }
            Ok(e)
        })
    }

    /// Completes a task: its executor may, and users with a role in
    /// `process.complete_others_tasks`. In a managed process this may move the deal on.
    pub fn complete_task(&self, tx: &mut WriteTxn<'_>, id: TaskId, version: u64) -> Result<Task> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.finish_task(tx, id, version, TaskStatus::Done))
    }

    /// Cancels an open task (same permissions as completing it).
    pub fn cancel_task(&self, tx: &mut WriteTxn<'_>, id: TaskId, version: u64) -> Result<Task> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.finish_task(tx, id, version, TaskStatus::Cancelled))
    }

    /// Brings in a deal from another system with its past stage history. The deal's
    /// `created_at` is the first step's time; the steps must be ordered, use the kind's
    /// stages, and end in the deal's stage and status.
    pub fn import_deal(&self, tx: &mut WriteTxn<'_>, deal: Deal, steps: Vec<ImportStep>) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| cx.import_deal(tx, deal, steps))
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

/// What keeps a deal from leaving `stage` forward: (field, message) pairs.
fn unmet(r: &impl Reader, kind: &ProcessKindSpec, stage: &StageSpec, deal: &Deal) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in &stage.required_fields {
        if !field_is_set(deal, f) {
            out.push((f.clone(), format!("is required before leaving stage \"{}\"", stage.id)));
        }
    }
    for item in &stage.checklist {
        if !deal.checklist.contains(&item.id) {
            out.push(("checklist".into(), format!("\"{}\" ({}) is not done", item.id, item.name)));
        }
    }
    let required = stage.tasks.iter().filter(|t| t.required).count();
    if kind.mode == Mode::Managed && required > 0 {
        // The required tasks of this visit of the stage: each must be finished (done, or
        // called off by someone allowed to), and all of them must exist.
        let entered = deal.stage_entered_at.unwrap_or(deal.created_at);
        let mut finished = 0;
        for t in r.tasks_of_deal(deal.id)? {
            if !t.required || t.stage.as_deref() != Some(stage.id.as_str()) || t.created_at < entered {
                continue;
            }
            match t.status {
                TaskStatus::Open => {
                    out.push(("tasks".into(), format!("required task \"{}\" ({}) is still open", t.title, t.id)))
                }
                TaskStatus::Done | TaskStatus::Cancelled => finished += 1,
            }
        }
        let open = out.iter().filter(|(f, _)| f == "tasks").count();
        if finished + open < required {
            out.push((
                "tasks".into(),
                format!(
                    "{} of the stage's {required} required task(s) were never created: the deal entered the stage outside its route",
                    required - finished - open
                ),
            ));
        }
    }
    if let Some(c) = &stage.exit_when {
        if !c.holds(deal) {
            out.push(("stage".into(), format!("the exit condition \"{c}\" of stage \"{}\" does not hold", stage.id)));
        }
    }
    Ok(out)
}

fn unmet_error(stage: &StageSpec, unmet: Vec<(String, String)>) -> Error {
    let field = unmet[0].0.clone();
    let all: Vec<String> = unmet.into_iter().map(|(f, m)| format!("{f} {m}")).collect();
    deal_field(&field, format!("the deal cannot leave stage \"{}\": {}", stage.id, all.join("; ")))
}

/// Whether a deal may be won from `stage` in a managed kind: the last stage, or one whose
/// route leads nowhere further.
fn is_final(kind: &ProcessKindSpec, stage: &str) -> bool {
    let pos = kind.position(stage).unwrap_or(0);
    let stage = &kind.stages[pos];
    pos + 1 == kind.stages.len() || !stage.to.iter().any(|t| kind.position(t).is_some_and(|p| p > pos))
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

    #[allow(clippy::too_many_arguments)]
    fn input<'a>(
        &'a self,
        view: &'a dyn View,
        hook: HookPoint,
        kind: Option<&'a str>,
        entity: EntityKind,
        before: Option<Subject<'a>>,
        after: Option<Subject<'a>>,
        transition: Option<&'a Transition>,
    ) -> HookInput<'a> {
        HookInput {
            hook,
            process_kind: kind,
            entity,
            actor: self.actor.as_deref(),
            before,
            after,
            transition,
            task: None,
            depth: self.depth,
            view,
        }
    }

    fn guard(&self, input: &HookInput<'_>) -> Result<()> {
        for asked in self.hooks.ask(input) {
            if let (name, Answer::Reject { message, field }) = asked? {
                return Err(Error::Rejected { hook: input.hook.name(), handler: name.to_string(), message, field });
            }
        }
        Ok(())
    }

    /// Asks the reactions bound at `input.hook` and returns their actions, in order, to be
    /// applied to `deal`.
    fn react(&self, input: &HookInput<'_>, deal: Option<DealId>) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        for asked in self.hooks.ask(input) {
            if let (_, Answer::Actions(mut a)) = asked? {
                actions.append(&mut a);
            }
        }
        if !actions.is_empty() && deal.is_none() {
            return Err(Error::NotAllowed(format!(
                "{}: reactions asked for {} action(s), but the {} belongs to no deal for them to act on",
                input.hook,
                actions.len(),
                input.entity
            )));
        }
        if !actions.is_empty() && self.depth >= self.settings.process.max_reaction_depth {
            let message = format!(
                "reaction cascade too deep: {} asked for {} more action(s) at depth {}; process.max_reaction_depth is {}",
                input.hook,
                actions.len(),
                self.depth + 1,
                self.settings.process.max_reaction_depth
            );
            return Err(match deal {
                Some(d) => process(d, message),
                None => Error::NotAllowed(message),
            });
        }
        Ok(actions)
    }

    fn deeper(&self) -> Cx<'_> {
        Cx {
            settings: self.settings.clone(),
            actor: self.actor.clone(),
            hooks: self.hooks,
            depth: self.depth + 1,
            now: self.now,
        }
    }

    /// Saves a deal through `entity.before_save` guards (no change of stage or status).
    fn save(&self, tx: &mut WriteTxn<'_>, deal: Deal) -> Result<Deal> {
        self.update(tx, deal)
    }

    fn create<E: Entity>(&self, tx: &mut WriteTxn<'_>, entity: E) -> Result<E> {
        if E::KIND == EntityKind::Deal {
            let deal = (&entity as &dyn std::any::Any).downcast_ref::<Deal>().expect("a deal").clone();
            let deal = self.create_deal(tx, deal)?;
            return Ok((&deal as &dyn std::any::Any).downcast_ref::<E>().expect("a deal").clone());
        }
        if self.hooks.any(HookPoint::EntityBeforeSave, None) {
            let after = subject(&entity);
            self.guard(&self.input(&*tx, HookPoint::EntityBeforeSave, None, E::KIND, None, Some(after), None))?;
        }
        let e = tx.create(entity)?;
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

    fn update<E: Entity>(&self, tx: &mut WriteTxn<'_>, entity: E) -> Result<E> {
        let kind_of = |e: &E| (e as &dyn std::any::Any).downcast_ref::<Deal>().map(|d| d.kind.clone());
        let pkind = kind_of(&entity);
        if self.hooks.any(HookPoint::EntityBeforeSave, pkind.as_deref()) {
            let before: E = tx.load(entity.id())?;
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
        tx.update(entity)
    }

    fn create_deal(&self, tx: &mut WriteTxn<'_>, mut deal: Deal) -> Result<Deal> {
        let kind = self.kind(&deal)?;
        if deal.status != DealStatus::InProgress {
            return Err(deal_field(
                "status",
                format!(
                    "a new deal is in progress, not {}; a closed deal from elsewhere is imported",
                    deal.status.name()
                ),
            ));
        }
        let first = kind.stages.first().map(|s| s.id.clone());
        match (&deal.stage, &first) {
            (None, _) => deal.stage = first.clone(),
            (Some(s), Some(f)) if s != f && kind.stage(s).is_some() => {
                return Err(deal_field(
                    "stage",
                    format!("a deal of process kind \"{}\" starts in its first stage \"{f}\", not \"{s}\"", kind.id),
                ))
            }
            _ => {}
        }
        let now = self.now(tx);
        if let Some(stage) = deal.stage.as_deref().and_then(|s| kind.stage(s)) {
            if deal.probability.is_none() {
                deal.probability = stage.probability;
            }
        }
        deal.stage_entered_at = Some(now);
        deal.checklist.clear();
        deal.history_steps = 1;
        for point in [HookPoint::DealBeforeCreate, HookPoint::EntityBeforeSave] {
            if self.hooks.any(point, Some(&kind.id)) {
                let input =
                    self.input(&*tx, point, Some(&kind.id), EntityKind::Deal, None, Some(Subject::Deal(&deal)), None);
                self.guard(&input)?;
            }
        }
        let deal = tx.as_engine(|tx| tx.create(deal))?;
        tx.append_stage_change(&StageChange {
            deal: deal.id,
            step: 0,
            at: now,
            actor: tx.actor(),
            how: How::Create,
            from_stage: None,
            to_stage: deal.stage.clone(),
            from_status: None,
            to_status: deal.status,
            dwell_ms: None,
            note: None,
            imported: false,
        })?;
        self.enter_stage(tx, &deal, kind)?;
        Ok(deal)
    }

    fn move_deal(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, to: &str, note: Option<&str>) -> Result<Deal> {
        let old = self.current(tx, id, version)?;
        let kind = self.kind(&old)?;
        let from = self.movable(&old, kind)?;
        if kind.stage(to).is_none() {
            let known: Vec<&str> = kind.stages.iter().map(|s| s.id.as_str()).collect();
            return Err(deal_field(
                "stage",
                format!("\"{to}\" is not a stage of process kind \"{}\" ({})", kind.id, known.join(", ")),
            ));
        }
        if from.id == to {
            return Err(process(id, format!("is already in stage \"{to}\"")));
        }
        if !from.to.iter().any(|t| t == to) {
            return Err(process(
                id,
                format!(
                    "cannot move from stage \"{}\" to \"{to}\": the stages it may move to are {}",
                    from.id,
                    if from.to.is_empty() { "none (close it instead)".to_string() } else { from.to.join(", ") }
                ),
            ));
        }
        let forward = kind.position(to) > kind.position(&from.id);
        if forward && kind.mode == Mode::Managed {
            return Err(process(
                id,
                format!(
                    "process kind \"{}\" is managed: its route moves deals forward, so \"{to}\" cannot be reached from \"{}\" by hand (skipping a stage is not allowed); complete the stage's tasks or advance it",
                    kind.id, from.id
                ),
            ));
        }
        if forward {
            let missing = unmet(tx, kind, from, &old)?;
            if !missing.is_empty() {
                return Err(unmet_error(from, missing));
            }
        }
        let mut new = old.clone();
        new.stage = Some(to.to_string());
        self.transition(tx, old, new, How::Manual, note.map(str::to_string))
    }

    /// The current stage of a deal that may move: in progress, of a kind with stages.
    fn movable<'k>(&self, deal: &Deal, kind: &'k ProcessKindSpec) -> Result<&'k StageSpec> {
        if kind.mode == Mode::Stageless {
            return Err(process(
                deal.id,
                format!("process kind \"{}\" has no stages; a deal of it only has a status", kind.id),
            ));
        }
        match deal.status {
            DealStatus::InProgress => {}
            DealStatus::OnHold => return Err(process(deal.id, "is on hold: resume it before moving it")),
            s => return Err(process(deal.id, format!("is closed ({}): reopen it before moving it", s.name()))),
        }
        deal.stage.as_deref().and_then(|s| kind.stage(s)).ok_or_else(|| process(deal.id, "has no current stage"))
    }

    fn advance(&self, tx: &mut WriteTxn<'_>, old: Deal) -> Result<Deal> {
        let kind = self.kind(&old)?;
        if kind.mode != Mode::Managed {
            return Err(process(
                old.id,
                format!("process kind \"{}\" is {}: move its deals by hand", kind.id, kind.mode.name()),
            ));
        }
        let from = self.movable(&old, kind)?;
        let missing = unmet(tx, kind, from, &old)?;
        if !missing.is_empty() {
            return Err(unmet_error(from, missing));
        }
        let to = self.route(tx, &old, kind, from)?;
        let mut new = old.clone();
        new.stage = Some(to);
        self.transition(tx, old, new, How::Route, None)
    }

    /// Moves a managed deal on if its stage has required tasks, all done, and nothing else
    /// is missing. Returns the deal as it is now.
    fn auto_advance(&self, tx: &mut WriteTxn<'_>, deal: Deal) -> Result<Deal> {
        let Ok(kind) = self.kind(&deal) else { return Ok(deal) };
        if kind.mode != Mode::Managed || deal.status != DealStatus::InProgress {
            return Ok(deal);
        }
        let Some(stage) = deal.stage.as_deref().and_then(|s| kind.stage(s)) else { return Ok(deal) };
        if !stage.tasks.iter().any(|t| t.required) || is_final(kind, &stage.id) {
            return Ok(deal);
        }
        if !unmet(tx, kind, stage, &deal)?.is_empty() {
            return Ok(deal);
        }
        self.advance(tx, deal)
    }

    /// The next stage of a managed route: the first branch whose condition holds, else the
    /// `deal.route` hook's answer, else the next stage in order.
    fn route(&self, tx: &WriteTxn<'_>, deal: &Deal, kind: &ProcessKindSpec, from: &StageSpec) -> Result<String> {
        let _ = tx;
        if let Some(r) = from.routes.iter().find(|r| r.when.as_ref().is_none_or(|c| c.holds(deal))) {
            return Ok(r.to.clone());
        }
        let point = HookPoint::DealRoute;
        let input = self.input(tx, point, Some(&kind.id), EntityKind::Deal, None, Some(Subject::Deal(deal)), None);
        for asked in self.hooks.ask(&input) {
            match asked? {
                (name, Answer::Stage(Some(s))) if !(from.to.contains(&s) && s != from.id) => {
                    return Err(fault(
                        point,
                        name,
                        format!(
                            "chose stage \"{s}\", which stage \"{}\" cannot move to ({})",
                            from.id,
                            from.to.join(", ")
                        ),
                    ))
                }
                (_, Answer::Stage(Some(s))) => return Ok(s),
                _ => {}
            }
        }
        // The default: the next stage in order if the stage may move there, else the first
        // later stage it may move to.
        let pos = kind.position(&from.id).unwrap_or(0);
        let next = kind.stages.get(pos + 1).filter(|n| from.to.contains(&n.id)).map(|n| n.id.clone());
        next.or_else(|| from.to.iter().find(|t| kind.position(t).is_some_and(|p| p > pos)).cloned()).ok_or_else(|| {
            process(deal.id, format!("is in \"{}\", the end of its route: close it as won or lost", from.id))
        })
    }

    fn hold(&self, tx: &mut WriteTxn<'_>, old: Deal, comment: &str) -> Result<Deal> {
        if old.status != DealStatus::InProgress {
            return Err(process(
                old.id,
                format!("is {}: only a deal in progress can be put on hold", old.status.name()),
            ));
        }
        let mut new = old.clone();
        new.status = DealStatus::OnHold;
        let note = (!comment.trim().is_empty()).then(|| comment.trim().to_string());
        self.transition(tx, old, new, How::Hold, note)
    }

    fn close(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, outcome: Outcome) -> Result<Deal> {
        let old = self.current(tx, id, version)?;
        let kind = self.kind(&old)?;
        if old.status.is_closed() {
            return Err(process(id, format!("is already closed ({})", old.status.name())));
        }
        let mut new = old.clone();
        let now = self.now(tx);
        new.closed_at = Some(now);
        let (how, note) = match outcome {
            Outcome::Won => {
                if kind.mode == Mode::Managed {
                    let stage = self.stage_of(&old, kind)?;
                    if !is_final(kind, &stage.id) {
                        return Err(process(
                            id,
                            format!(
                                "process kind \"{}\" is managed: a deal is won from the end of its route, not from stage \"{}\"",
                                kind.id, stage.id
                            ),
                        ));
                    }
                    let missing = unmet(tx, kind, stage, &old)?;
                    if !missing.is_empty() {
                        return Err(unmet_error(stage, missing));
                    }
                }
                new.status = DealStatus::Won;
                new.probability = Some(100);
                (How::Won, None)
            }
            Outcome::Lost { reason, competitor, comment } => {
                let reason = reason.trim().to_string();
                if reason.is_empty() {
                    return Err(deal_field("loss_reason", "is required to close a deal as lost"));
                }
                if !kind.loss_reasons.contains(&reason) {
                    return Err(deal_field(
                        "loss_reason",
                        format!(
                            "\"{reason}\" is not a loss reason of process kind \"{}\" ({})",
                            kind.id,
                            kind.loss_reasons.join(", ")
                        ),
                    ));
                }
                if kind.require_competitor && competitor.is_none() {
                    return Err(deal_field(
                        "competitor",
                        format!("process kind \"{}\" requires the winning competitor of a lost deal", kind.id),
                    ));
                }
                if kind.require_loss_comment && comment.trim().is_empty() {
                    return Err(deal_field(
                        "comment",
                        format!("process kind \"{}\" requires a comment on a lost deal", kind.id),
                    ));
                }
                new.status = DealStatus::Lost;
                new.probability = Some(0);
                new.loss_reason = Some(reason.clone());
                new.competitor = competitor;
                if !comment.trim().is_empty() {
                    new.comment = comment.trim().to_string();
                }
                (How::Lost, Some(reason))
            }
        };
        self.transition(tx, old, new, how, note)
    }

    fn stage_of<'k>(&self, deal: &Deal, kind: &'k ProcessKindSpec) -> Result<&'k StageSpec> {
        deal.stage.as_deref().and_then(|s| kind.stage(s)).ok_or_else(|| process(deal.id, "has no current stage"))
    }

    fn reopen(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, stage: Option<&str>) -> Result<Deal> {
        let old = self.current(tx, id, version)?;
        let kind = self.kind(&old)?;
        if !old.status.is_closed() {
            return Err(process(id, format!("is {}, not closed", old.status.name())));
        }
        if let Some(actor) = &self.actor {
            if !actor.roles.iter().any(|r| kind.reopen_roles.contains(r)) {
                let roles: Vec<&str> = kind.reopen_roles.iter().map(|r| r.name()).collect();
                return Err(Error::Forbidden(format!(
                    "{} may not reopen deal {id}: process kind \"{}\" lets only {} reopen deals",
                    actor.login,
                    kind.id,
                    roles.join(", ")
                )));
            }
        }
        let to = match stage {
            Some(s) if kind.stage(s).is_none() => {
                return Err(deal_field("stage", format!("\"{s}\" is not a stage of process kind \"{}\"", kind.id)))
            }
            Some(s) => {
                // Reopening does not skip the route: a managed deal goes back to where it
                // was closed or earlier; a manual one there or where that stage allows.
                let closed_in = old.stage.as_deref().unwrap_or_default();
                let allowed = s == closed_in
                    || match kind.mode {
                        Mode::Managed => kind.position(s) < kind.position(closed_in),
                        _ => kind.stage(closed_in).is_some_and(|st| st.to.iter().any(|t| t == s)),
                    };
                if !allowed {
                    return Err(process(
                        id,
                        format!(
                            "cannot be reopened in stage \"{s}\": it was closed in \"{closed_in}\", and process kind \"{}\" ({}) allows reopening there{}",
                            kind.id,
                            kind.mode.name(),
                            if kind.mode == Mode::Managed { " or in an earlier stage" } else { " or in a stage it may move to" }
                        ),
                    ));
                }
                Some(s.to_string())
            }
            None => old.stage.clone(),
        };
        let mut new = old.clone();
        new.stage = to;
        new.status = DealStatus::InProgress;
        new.closed_at = None;
        new.loss_reason = None;
        new.competitor = None;
        new.probability = new.stage.as_deref().and_then(|s| kind.stage(s)).and_then(|s| s.probability);
        self.transition(tx, old, new, How::Reopen, None)
    }

    /// Writes a change of stage or status with its history step, after the guards, and
    /// then runs the stage's entry and the reactions.
    fn transition(
        &self,
        tx: &mut WriteTxn<'_>,
        old: Deal,
        mut new: Deal,
        how: How,
        note: Option<String>,
    ) -> Result<Deal> {
        let kind = self.kind(&old)?;
        let now = self.now(tx);
        let stage_changes = old.stage != new.stage || how == How::Reopen;
        if stage_changes {
            new.stage_entered_at = Some(now);
            new.checklist.clear();
            if how != How::Reopen {
                if let Some(p) = new.stage.as_deref().and_then(|s| kind.stage(s)).and_then(|s| s.probability) {
                    new.probability = Some(p);
                }
            }
        }
        let t = Transition {
            how,
            from_stage: old.stage.clone(),
            to_stage: new.stage.clone(),
            from_status: old.status,
            to_status: new.status,
            note: note.clone(),
        };
        let closing = matches!(how, How::Won | How::Lost);
        let guards: &[HookPoint] = if closing {
            &[HookPoint::DealBeforeClose, HookPoint::EntityBeforeSave]
        } else {
            &[HookPoint::DealBeforeTransition, HookPoint::EntityBeforeSave]
        };
        for point in guards {
            if self.hooks.any(*point, Some(&kind.id)) {
                let input = self.input(
                    &*tx,
                    *point,
                    Some(&kind.id),
                    EntityKind::Deal,
                    Some(Subject::Deal(&old)),
                    Some(Subject::Deal(&new)),
                    Some(&t),
                );
                self.guard(&input)?;
            }
        }
        let step = match old.history_steps {
            0 => tx.stage_steps(old.id)?,
            n => n,
        };
        new.history_steps = step + 1;
        // The reactions see the deal as it will be stored. Fields they set on it are written
        // with the transition itself (one version, one audit entry); their other actions
        // follow once the transition is written.
        let point = if closing { HookPoint::DealAfterClose } else { HookPoint::DealAfterTransition };
        let mut later = Vec::new();
        let mut merged = false;
        if self.hooks.any(point, Some(&kind.id)) {
            // As it will be stored: the next version, changed now by the actor.
            let meta = (new.version, new.updated_at, new.updated_by);
            (new.version, new.updated_at, new.updated_by) = (old.version + 1, now, tx.actor());
            let input = self.input(
                &*tx,
                point,
                Some(&kind.id),
                EntityKind::Deal,
                Some(Subject::Deal(&old)),
                Some(Subject::Deal(&new)),
                Some(&t),
            );
            let actions = self.react(&input, Some(old.id));
            (new.version, new.updated_at, new.updated_by) = meta;
            for action in actions? {
                match action {
                    Action::SetField { field, value } => {
                        set_field(&mut new, &field, value, &self.settings)?;
                        merged = true;
                    }
                    other => later.push(other),
                }
            }
        }
        if merged && self.hooks.any(HookPoint::EntityBeforeSave, Some(&kind.id)) {
            let input = self.input(
                &*tx,
                HookPoint::EntityBeforeSave,
                Some(&kind.id),
                EntityKind::Deal,
                Some(Subject::Deal(&old)),
                Some(Subject::Deal(&new)),
                Some(&t),
            );
            self.guard(&input)?;
        }
        let entered = old.stage_entered_at.unwrap_or(old.created_at);
        // A reopen leaves no stage (the deal was closed); a close leaves its stage.
        let leaves = closing || (old.stage != new.stage && how != How::Reopen);
        let deal = tx.as_engine(|tx| tx.update(new))?;
        tx.append_counted_stage_change(&StageChange {
            deal: deal.id,
            step,
            at: now,
            actor: tx.actor(),
            how,
            from_stage: old.stage.clone(),
            to_stage: deal.stage.clone(),
            from_status: Some(old.status),
            to_status: deal.status,
            dwell_ms: leaves.then(|| now.0.saturating_sub(entered.0)),
            note,
            imported: false,
        });
        if kind.mode == Mode::Managed && (leaves || how == How::Reopen) {
            // The tasks of the stage left (or of the whole deal, when it closes) are moot.
            for task in tx.tasks_of_deal(deal.id)? {
                let moot =
                    task.status == TaskStatus::Open && task.stage.is_some() && (closing || task.stage == old.stage);
                if moot {
                    let mut t = task;
                    t.status = TaskStatus::Cancelled;
                    t.finished_at = Some(now);
                    t.finished_by = tx.actor();
                    tx.as_engine(|tx| tx.update(t))?;
                }
            }
        }
        if stage_changes && !closing {
            self.enter_stage(tx, &deal, kind)?;
        }
        if !later.is_empty() {
            self.deeper().apply(tx, deal.id, None, later)?;
            return tx.load(deal.id);
        }
        if merged && !closing {
            return self.auto_advance(tx, deal);
        }
        Ok(deal)
    }

    /// Creates the tasks of the deal's (new) stage, for managed kinds.
    /// (An imported deal may be on hold in its stage: it gets the stage's tasks too.)
    fn enter_stage(&self, tx: &mut WriteTxn<'_>, deal: &Deal, kind: &ProcessKindSpec) -> Result<()> {
        if kind.mode != Mode::Managed || deal.status.is_closed() {
            return Ok(());
        }
        let Some(stage) = deal.stage.as_deref().and_then(|s| kind.stage(s)) else { return Ok(()) };
        let now = self.now(tx);
        for tpl in &stage.tasks {
            let mut task = Task::new(tpl.title.clone(), deal.manager);
            task.description = tpl.description.clone();
            task.deal = Some(deal.id);
            task.stage = Some(stage.id.clone());
            task.required = tpl.required;
            task.due = tpl.due_ms.map(|ms| now.plus_millis(ms));
            task.executor = self.assignee(tx, deal, &kind.id, &tpl.assignee, &task)?;
            tx.create(task)?;
        }
        Ok(())
    }

    fn assignee(&self, tx: &WriteTxn<'_>, deal: &Deal, kind: &str, rule: &Assignee, task: &Task) -> Result<UserId> {
        let by_login = |login: &str, what: &str| -> Result<UserId> {
            match tx.user_by_login(login)? {
                Some(u) if u.active => Ok(u.id),
                Some(_) => Err(process(deal.id, format!("{what}: user \"{login}\" is deactivated"))),
                None => Err(process(deal.id, format!("{what}: there is no user \"{login}\""))),
            }
        };
        match rule {
            Assignee::Manager => Ok(deal.manager),
            Assignee::User(login) => by_login(login, "task assignee"),
            Assignee::Role(role) => {
                let manager: User = tx.load(deal.manager)?;
                let mut any = None;
                let mut same_dept = None;
                tx.for_each::<User>(|u| {
                    if u.active && u.roles.contains(role) {
                        if u.department.is_some() && u.department == manager.department {
                            same_dept = Some(u.id);
                            return false;
                        }
                        any = any.or(Some(u.id));
                    }
                    true
                })?;
                same_dept.or(any).ok_or_else(|| {
                    process(deal.id, format!("task \"{}\": no active user has the {} role", task.title, role.name()))
                })
            }
            Assignee::Hook => {
                let point = HookPoint::TaskAssignee;
                let mut input =
                    self.input(tx, point, Some(kind), EntityKind::Task, None, Some(Subject::Deal(deal)), None);
                input.task = Some(task);
                for asked in self.hooks.ask(&input) {
                    if let (name, Answer::Assignee(Some(login))) = asked? {
                        return by_login(&login, &format!("{point} handler {name}")).map_err(|e| match e {
                            Error::Process { message, .. } => fault(point, name, message),
                            e => e,
                        });
                    }
                }
                Ok(deal.manager)
            }
        }
    }

    fn finish_task(&self, tx: &mut WriteTxn<'_>, id: TaskId, version: u64, status: TaskStatus) -> Result<Task> {
        let old: Task = tx.load(id)?;
        if old.version != version {
            return Err(Error::Conflict { kind: EntityKind::Task, id: id.raw(), given: version, stored: old.version });
        }
        if old.status != TaskStatus::Open {
            return Err(Error::NotAllowed(format!("task {id} is already {}", old.status.name())));
        }
        if let Some(actor) = &self.actor {
            let others_ok = actor.roles.iter().any(|r| self.settings.process.complete_others_tasks.contains(r));
            if actor.id != old.executor && !others_ok {
                return Err(Error::Forbidden(format!(
                    "{} may not {} task {id} (\"{}\"): it is another user's, and only {} may finish others' tasks",
                    actor.login,
                    if status == TaskStatus::Done { "complete" } else { "cancel" },
                    old.title,
                    self.settings.process.complete_others_tasks.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                )));
            }
            // A required task of a stage is the route's work: only those who may finish
            // others' tasks may call it off, so a manager cannot skip a stage by cancelling.
            if status == TaskStatus::Cancelled && old.required && old.stage.is_some() && !others_ok {
                return Err(Error::Forbidden(format!(
                    "{} may not cancel task {id} (\"{}\"): it is required by stage \"{}\", and only {} may cancel required tasks",
                    actor.login,
                    old.title,
                    old.stage.as_deref().unwrap_or_default(),
                    self.settings.process.complete_others_tasks.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let deal = match old.deal {
            Some(d) => Some(tx.load::<Deal>(d)?),
            None => None,
        };
        let pkind = deal.as_ref().map(|d| d.kind.clone());
        let mut new = old.clone();
        new.status = status;
        new.finished_at = Some(self.now(tx));
        new.finished_by = tx.actor();
        if status == TaskStatus::Done {
            for point in [HookPoint::TaskBeforeComplete, HookPoint::EntityBeforeSave] {
                if self.hooks.any(point, pkind.as_deref()) {
                    let input = self.input(
                        &*tx,
                        point,
                        pkind.as_deref(),
                        EntityKind::Task,
                        Some(Subject::Task(&old)),
                        Some(Subject::Task(&new)),
                        None,
                    );
                    self.guard(&input)?;
                }
            }
        }
        let task = tx.as_engine(|tx| tx.update(new))?;
        if status == TaskStatus::Done && self.hooks.any(HookPoint::TaskAfterComplete, pkind.as_deref()) {
            let input = self.input(
                &*tx,
                HookPoint::TaskAfterComplete,
                pkind.as_deref(),
                EntityKind::Task,
                Some(Subject::Task(&old)),
                Some(Subject::Task(&task)),
                None,
            );
            let actions = self.react(&input, task.deal)?;
            if let (Some(d), false) = (task.deal, actions.is_empty()) {
                self.deeper().apply(tx, d, Some(&task), actions)?;
            }
        }
        if let Some(d) = task.deal {
            let deal: Deal = tx.load(d)?;
            if deal.stage == task.stage && task.required {
                self.auto_advance(tx, deal)?;
            }
        }
        Ok(task)
    }

    /// Applies a reaction's actions to `deal`.
    fn apply(&self, tx: &mut WriteTxn<'_>, deal: DealId, _task: Option<&Task>, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            let current: Deal = tx.load(deal)?;
            match action {
                Action::CreateTask { title, description, executor, due_in_minutes, required } => {
                    let mut task = Task::new(title, current.manager);
                    task.description = description;
                    if let Some(login) = executor {
                        task.executor = match tx.user_by_login(&login)? {
                            Some(u) => u.id,
                            None => {
                                return Err(Error::Process {
                                    deal: deal.raw(),
                                    message: format!(
                                        "a reaction's create_task names user \"{login}\", who does not exist"
                                    ),
                                })
                            }
                        };
                    }
                    task.deal = Some(deal);
                    task.stage = current.stage.clone().filter(|_| current.status == DealStatus::InProgress);
                    task.required = required && task.stage.is_some();
                    task.due = match due_in_minutes {
                        None => None,
                        Some(m) => match m.checked_mul(60_000).filter(|ms| (0..=3650 * 86_400_000).contains(ms)) {
                            Some(ms) => Some(self.now(tx).plus_millis(ms)),
                            None => {
                                return Err(Error::Process {
                                    deal: deal.raw(),
                                    message: format!(
                                        "a reaction's create_task is due in {m} minutes: between 0 and ten years"
                                    ),
                                })
                            }
                        },
                    };
                    self.create(tx, task)?;
                }
                Action::SetField { field, value } => {
                    let mut d = current;
                    set_field(&mut d, &field, value, &self.settings)?;
                    let d = self.update(tx, d)?;
                    self.auto_advance(tx, d)?;
                }
                Action::AddNote { subject, body } => {
                    let mut note = Interaction::new(InteractionKind::Note, self.now(tx), current.partner, subject);
                    note.body = body;
                    note.deal = Some(deal);
                    self.create(tx, note)?;
                }
                Action::PutOnHold { comment } => {
                    if current.status == DealStatus::InProgress {
                        self.hold(tx, current, &comment)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn import_deal(&self, tx: &mut WriteTxn<'_>, mut deal: Deal, steps: Vec<ImportStep>) -> Result<Deal> {
        let kind = self.kind(&deal)?;
        let now = self.now(tx);
        let bad = |i: usize, m: String| deal_field("history", format!("step {i}: {m}"));
        let Some(first) = steps.first() else {
            return Err(deal_field("history", "an imported deal needs at least its creation step"));
        };
        if first.how != How::Create {
            return Err(bad(0, format!("the first step is the creation, not {}", first.how.name())));
        }
        // Build the history as the engine would have written it, checking each step.
        let mut changes: Vec<StageChange> = Vec::with_capacity(steps.len());
        let mut entered = first.at;
        let mut closed_at = None;
        for (i, s) in steps.iter().enumerate() {
            if s.at > now {
                return Err(bad(i, format!("{} is in the future", s.at)));
            }
            if s.at.0 < 0 {
                return Err(bad(i, format!("{} is before 1970", s.at)));
            }
            if let Some(actor) = s.actor {
                if !tx.exists(EntityKind::User, actor.raw())? {
                    return Err(bad(i, format!("user {actor} does not exist")));
                }
            }
            if let Some(st) = &s.to_stage {
                if kind.stage(st).is_none() {
                    return Err(bad(i, format!("\"{st}\" is not a stage of process kind \"{}\"", kind.id)));
                }
            } else if !kind.stages.is_empty() {
                return Err(bad(i, format!("a deal of process kind \"{}\" is always in a stage", kind.id)));
            }
            let prev = changes.last();
            if i > 0 && s.how == How::Create {
                return Err(bad(i, "only the first step is the creation".into()));
            }
            if let Some(p) = prev {
                if s.at < p.at {
                    return Err(bad(i, format!("{} is before the previous step ({})", s.at, p.at)));
                }
            } else if s.to_status != DealStatus::InProgress || s.to_stage != kind.stages.first().map(|x| x.id.clone()) {
                return Err(bad(i, "a deal is created in progress in the first stage of its kind".into()));
            }
            let from_stage = prev.and_then(|p| p.to_stage.clone());
            // The step must be one the engine would have allowed.
            if let (Some(from), Some(to)) = (from_stage.as_deref(), s.to_stage.as_deref()) {
                let spec = kind.stage(from).expect("checked on the previous step");
                let forward = kind.position(to) > kind.position(from);
                match s.how {
                    How::Manual | How::Route if from == to => {
                        return Err(bad(i, format!("a {} step must change the stage", s.how.name())))
                    }
                    How::Manual | How::Route if !spec.to.iter().any(|t| t == to) => {
                        return Err(bad(
                            i,
                            format!("stage \"{from}\" may not move to \"{to}\" ({})", spec.to.join(", ")),
                        ))
                    }
                    How::Manual if forward && kind.mode == Mode::Managed => {
                        return Err(bad(
                            i,
                            format!("process kind \"{}\" is managed: forward steps are route steps", kind.id),
                        ))
                    }
                    How::Route if kind.mode != Mode::Managed => {
                        return Err(bad(
                            i,
                            format!("process kind \"{}\" is {}: it has no route", kind.id, kind.mode.name()),
                        ))
                    }
                    How::Won if kind.mode == Mode::Managed && !is_final(kind, from) => {
                        return Err(bad(
                            i,
                            format!("a managed deal is won from the end of its route, not from \"{from}\""),
                        ))
                    }
                    How::Reopen if from != to && kind.mode == Mode::Managed && forward => {
                        return Err(bad(
                            i,
                            format!("a managed deal is reopened where it closed or earlier, not in \"{to}\""),
                        ))
                    }
                    How::Reopen if from != to && kind.mode == Mode::Manual && !spec.to.iter().any(|t| t == to) => {
                        return Err(bad(
                            i,
                            format!(
                                "a deal closed in \"{from}\" is reopened there or where it may move ({}), not in \"{to}\"",
                                spec.to.join(", ")
                            ),
                        ))
                    }
                    _ => {}
                }
            }
            if s.how == How::Lost {
                match s.note.as_deref() {
                    Some(reason) if kind.loss_reasons.iter().any(|r| r == reason) => {}
                    other => {
                        return Err(bad(
                            i,
                            format!(
                                "a lost step notes a loss reason of the kind ({}), not {other:?}",
                                kind.loss_reasons.join(", ")
                            ),
                        ))
                    }
                }
            }
            let leaves = prev.is_some()
                && (matches!(s.how, How::Won | How::Lost) || (from_stage != s.to_stage && s.how != How::Reopen));
            let change = StageChange {
                deal: deal.id,
                step: i as u32,
                at: s.at,
                actor: s.actor,
                how: s.how,
                from_stage,
                to_stage: s.to_stage.clone(),
                from_status: prev.map(|p| p.to_status),
                to_status: s.to_status,
                dwell_ms: leaves.then(|| s.at.0.saturating_sub(entered.0)),
                note: s.note.clone(),
                imported: true,
            };
            if change.from_stage != change.to_stage || s.how == How::Reopen {
                entered = s.at;
            }
            if matches!(s.how, How::Won | How::Lost) {
                closed_at = Some(s.at);
            }
            changes.push(change);
        }
        let last = changes.last().expect("not empty");
        deal.stage_entered_at = Some(entered);
        deal.closed_at = if deal.status.is_closed() { closed_at } else { None };
        if last.to_stage != deal.stage || last.to_status != deal.status {
            return Err(deal_field(
                "history",
                format!(
                    "the steps end in {}/{}, but the deal is in {}/{}",
                    last.to_stage.as_deref().unwrap_or("-"),
                    last.to_status.name(),
                    deal.stage.as_deref().unwrap_or("-"),
                    deal.status.name()
                ),
            ));
        }
        let created_at = first.at;
        deal.history_steps = changes.len() as u32;
        let created = tx.as_engine(|tx| tx.create_imported(deal, created_at))?;
        for mut c in changes {
            c.deal = created.id;
            tx.append_stage_change(&c)?;
        }
        let history = tx.stage_history(created.id)?;
        super::check_history(&created, &history, &self.settings).map_err(|m| deal_field("history", m))?;
        // A managed deal still running gets the tasks of the stage it is in.
        self.enter_stage(tx, &created, kind)?;
        Ok(created)
    }
}

fn subject<E: Entity>(e: &E) -> Subject<'_> {
    use crate::model::{ContactPerson, Counterparty, Document, Partner};
    let any = e as &dyn std::any::Any;
    if let Some(d) = any.downcast_ref::<Deal>() {
        Subject::Deal(d)
    } else if let Some(t) = any.downcast_ref::<Task>() {
        Subject::Task(t)
    } else if let Some(i) = any.downcast_ref::<Interaction>() {
        Subject::Interaction(i)
    } else if let Some(p) = any.downcast_ref::<Partner>() {
        Subject::Partner(p)
    } else if let Some(c) = any.downcast_ref::<Counterparty>() {
        Subject::Counterparty(c)
    } else if let Some(c) = any.downcast_ref::<ContactPerson>() {
        Subject::Contact(c)
    } else if let Some(d) = any.downcast_ref::<Document>() {
        Subject::Document(d)
    } else {
        Subject::Other(serde_json::to_value(e).expect("entities serialize"))
    }
}

/// Sets a deal field from a reaction's JSON value.
fn set_field(d: &mut Deal, field: &str, value: serde_json::Value, settings: &Settings) -> Result<()> {
    use serde_json::Value as J;
    let bad = |m: String| deal_field(field, format!("set_field: {m}"));
    let text = |v: &J| -> Result<Option<String>> {
        match v {
            J::Null => Ok(None),
            J::String(s) => Ok(Some(s.clone())),
            other => Err(bad(format!("expected a string, got {other}"))),
        }
    };
    let decimal = |v: &J| -> Result<Decimal> {
        match v {
            J::Number(n) => n.to_string().parse::<Decimal>().map_err(|e| bad(format!("{n}: {e}"))),
            J::String(s) => s.parse::<Decimal>().map_err(|e| bad(format!("\"{s}\": {e}"))),
            other => Err(bad(format!("expected a number, got {other}"))),
        }
    };
    match field {
        "probability" => {
            d.probability = match &value {
                J::Null => None,
                v => {
                    let n = decimal(v)?;
                    Some(u8::try_from(n.trunc().mantissa()).map_err(|_| bad(format!("{n} is not a percentage")))?)
                }
            }
        }
        "amount" => d.amount.amount = decimal(&value)?,
        "expected_close" => {
            d.expected_close = match text(&value)? {
                None => None,
                Some(s) => Some(s.parse().map_err(|e| bad(format!("\"{s}\" is not a date: {e}")))?),
            }
        }
        "source" => d.source = text(&value)?,
        "comment" => d.comment = text(&value)?.unwrap_or_default(),
        "title" => d.title = text(&value)?.unwrap_or_default(),
        other => {
            let Some(name) = other.strip_prefix("custom.") else {
                return Err(bad(
                    "only probability, amount, expected_close, source, comment, title and custom.NAME can be set"
                        .into(),
                ));
            };
            let Some(def) = settings.custom_fields_of(EntityKind::Deal).iter().find(|f| f.name == name) else {
                return Err(bad(format!("\"{name}\" is not a custom field of deals")));
            };
            if value.is_null() {
                d.custom.remove(name);
                return Ok(());
            }
            let v = match &def.ty {
                CustomFieldType::String => CustomValue::String(text(&value)?.unwrap_or_default()),
                CustomFieldType::Enum { .. } => CustomValue::Enum(text(&value)?.unwrap_or_default()),
                CustomFieldType::Number => CustomValue::Number(decimal(&value)?),
                CustomFieldType::Bool => CustomValue::Bool(
                    value.as_bool().ok_or_else(|| bad(format!("expected true or false, got {value}")))?,
                ),
                CustomFieldType::Date => {
                    let s = text(&value)?.unwrap_or_default();
                    CustomValue::Date(s.parse().map_err(|e| bad(format!("\"{s}\" is not a date: {e}")))?)
                }
                CustomFieldType::Money => {
                    CustomValue::Money(serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?)
                }
                CustomFieldType::Reference { .. } => {
                    let s = text(&value)?.unwrap_or_default();
                    CustomValue::Ref(crate::id::RawId::parse(&s).map_err(|e| bad(e.0))?)
                }
            };
            d.custom.insert(name.to_string(), v);
        }
    }
    Ok(())
}
