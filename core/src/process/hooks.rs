//! The extension interface: named hook points where the engine asks handlers, the data it
//! passes and the answers it takes. Everything crossing it is plain serde data, so a native
//! Rust closure, a Rhai script and a WASM module exchanging JSON implement it alike.
//!
//! Three kinds of hooks:
//! - **guards** answer [`Answer::Allow`] or [`Answer::Reject`]; the first rejection wins;
//! - **reactions** answer [`Answer::Actions`], applied in the same transaction;
//! - **computations** answer [`Answer::Stage`] (`deal.route`) or [`Answer::Assignee`]
//!   (`task.assignee`); no answer (`None`) means "the default".
//!
//! A handler that fails (a trap, an exhausted budget, a script error) returns a [`Fault`]:
//! the engine aborts the write and names the handler. A fault is never a business answer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::spec::HookBinding;
use crate::id::{DealId, PartnerId, TypedId, UserId};
use crate::model::{
    ContactPerson, Counterparty, Deal, DealStatus, Document, EntityKind, How, Interaction, Partner, Role, StageChange,
    Task, User,
};
use crate::store::{Index, Reader};
use crate::{Error, Result};

macro_rules! hook_points {
    ($($name:ident = $text:literal, $kind:ident;)*) => {
        /// A point where the engine calls hook handlers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum HookPoint { $(#[serde(rename = $text)] $name,)* }

        impl HookPoint {
            /// Every hook point.
            pub const ALL: &'static [HookPoint] = &[$(HookPoint::$name,)*];

            /// The name config and handlers use (`deal.before_transition`).
            pub fn name(self) -> &'static str {
                match self { $(HookPoint::$name => $text,)* }
            }

            /// Guard, reaction or computation.
            pub fn kind(self) -> HookKind {
                match self { $(HookPoint::$name => HookKind::$kind,)* }
            }
        }
    };
}

hook_points! {
    DealBeforeCreate = "deal.before_create", Guard;
    DealBeforeTransition = "deal.before_transition", Guard;
    DealBeforeClose = "deal.before_close", Guard;
    TaskBeforeComplete = "task.before_complete", Guard;
    EntityBeforeSave = "entity.before_save", Guard;
    DealAfterTransition = "deal.after_transition", Reaction;
    DealAfterClose = "deal.after_close", Reaction;
    TaskAfterComplete = "task.after_complete", Reaction;
    InteractionAfterCreate = "interaction.after_create", Reaction;
    DealRoute = "deal.route", Computation;
    TaskAssignee = "task.assignee", Computation;
}

impl HookPoint {
    /// The hook point named `name`.
    pub fn from_name(name: &str) -> Option<HookPoint> {
        HookPoint::ALL.iter().copied().find(|p| p.name() == name)
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a hook point expects back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    Guard,
    Reaction,
    Computation,
}

/// The entity a hook is about, before or after the change. Serialized as the entity's own
/// JSON form, whichever variant holds it; native handlers read the typed value.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Subject<'a> {
    Deal(&'a Deal),
    Task(&'a Task),
    Interaction(&'a Interaction),
    Partner(&'a Partner),
    Counterparty(&'a Counterparty),
    Contact(&'a ContactPerson),
    Document(&'a Document),
    /// Any other entity, as its JSON form.
    Other(serde_json::Value),
}

/// The change of stage or status a transition makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub how: How,
    pub from_stage: Option<String>,
    pub to_stage: Option<String>,
    pub from_status: DealStatus,
    pub to_status: DealStatus,
    /// The loss reason, hold comment or move reason.
    pub note: Option<String>,
}

/// What a handler may read besides its input: the store as the write being decided sees
/// it. Object-safe, so scripts and plugins reach it through their host functions.
pub trait View {
    /// A partner.
    fn partner(&self, id: PartnerId) -> Result<Option<Partner>>;
    /// A deal.
    fn deal(&self, id: DealId) -> Result<Option<Deal>>;
    /// A user.
    fn user(&self, id: UserId) -> Result<Option<User>>;
    /// The deals of a partner, oldest first.
    fn deals_of(&self, partner: PartnerId) -> Result<Vec<Deal>>;
    /// A deal's stage history, step by step.
    fn history(&self, deal: DealId) -> Result<Vec<StageChange>>;
    /// A deal's interactions, oldest first.
    fn interactions(&self, deal: DealId) -> Result<Vec<Interaction>>;
    /// A deal's documents, oldest first.
    fn documents(&self, deal: DealId) -> Result<Vec<Document>>;
    /// The active users with a role.
    fn users_with_role(&self, role: Role) -> Result<Vec<User>>;
    /// How many open tasks a user has.
    fn open_tasks(&self, user: UserId) -> Result<usize>;
    /// The user with a login.
    fn user_with_login(&self, login: &str) -> Result<Option<User>>;
    /// Visits every deal, oldest first, until `f` returns `false` (reports).
    fn each_deal(&self, f: &mut dyn FnMut(&Deal) -> bool) -> Result<()>;
    /// Deals after `after` (none: from the first), oldest first, at most `limit`.
    fn deals_page(&self, after: Option<DealId>, limit: usize) -> Result<Vec<Deal>>;
}

impl<R: Reader> View for R {
    fn partner(&self, id: PartnerId) -> Result<Option<Partner>> {
        self.get(id)
    }
    fn deal(&self, id: DealId) -> Result<Option<Deal>> {
        self.get(id)
    }
    fn user(&self, id: UserId) -> Result<Option<User>> {
        self.get(id)
    }
    fn deals_of(&self, partner: PartnerId) -> Result<Vec<Deal>> {
        self.find(Index::DealByPartner, &partner.raw().to_bytes(), None, usize::MAX)
    }
    fn history(&self, deal: DealId) -> Result<Vec<StageChange>> {
        self.stage_history(deal)
    }
    fn interactions(&self, deal: DealId) -> Result<Vec<Interaction>> {
        self.find(Index::InteractionByDeal, &deal.raw().to_bytes(), None, usize::MAX)
    }
    fn documents(&self, deal: DealId) -> Result<Vec<Document>> {
        self.find(Index::DocumentByDeal, &deal.raw().to_bytes(), None, usize::MAX)
    }
    fn users_with_role(&self, role: Role) -> Result<Vec<User>> {
        let mut out = Vec::new();
        self.for_each::<User>(|u| {
            if u.active && u.roles.contains(&role) {
                out.push(u);
            }
            true
        })?;
        Ok(out)
    }
    fn each_deal(&self, f: &mut dyn FnMut(&Deal) -> bool) -> Result<()> {
        self.for_each::<Deal>(|d| f(&d))
    }
    fn deals_page(&self, after: Option<DealId>, limit: usize) -> Result<Vec<Deal>> {
        self.list(after, limit)
    }
    fn user_with_login(&self, login: &str) -> Result<Option<User>> {
        Reader::user_by_login(self, login)
    }
    fn open_tasks(&self, user: UserId) -> Result<usize> {
        let prefix = crate::model::task_executor_prefix(user, crate::model::TaskStatus::Open);
        Ok(self.ids_by(Index::TaskByExecutor, &prefix, None, usize::MAX)?.len())
    }
}

/// What a handler is called with.
#[derive(Serialize)]
pub struct HookInput<'a> {
    pub hook: HookPoint,
    /// The deal's process kind, when the hook concerns a deal or one of its tasks.
    pub process_kind: Option<&'a str>,
    /// The kind of entity the hook is about.
    pub entity: EntityKind,
    /// The acting user (`None`: the system).
    pub actor: Option<&'a User>,
    /// The entity as stored before the change (`None` on creation).
    pub before: Option<Subject<'a>>,
    /// The entity as it will be stored (for `deal.route` and `task.assignee`: as it is).
    pub after: Option<Subject<'a>>,
    pub transition: Option<&'a Transition>,
    /// For `task.assignee`: the task about to be created.
    pub task: Option<&'a Task>,
    /// How many reactions deep this call is (0: a direct request).
    pub depth: u32,
    /// The store as the write being decided sees it.
    #[serde(skip)]
    pub view: &'a dyn View,
}

impl fmt::Debug for HookInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookInput")
            .field("hook", &self.hook)
            .field("process_kind", &self.process_kind)
            .field("entity", &self.entity)
            .field("actor", &self.actor.map(|a| &a.login))
            .field("before", &self.before)
            .field("after", &self.after)
            .field("transition", &self.transition)
            .field("task", &self.task)
            .field("depth", &self.depth)
            .finish()
    }
}

/// What a handler answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// A guard lets the change happen.
    Allow,
    /// A guard refuses the change, with a message for the user and the field at fault.
    Reject {
        message: String,
        #[serde(default)]
        field: Option<String>,
    },
    /// A reaction's actions.
    Actions(Vec<Action>),
    /// `deal.route`: the next stage (`None`: the default route).
    Stage(Option<String>),
    /// `task.assignee`: the executor's login (`None`: the default rule).
    Assignee(Option<String>),
}

/// A change a reaction asks for, applied in the same transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A task on the deal (or, for task hooks, on the task's deal).
    CreateTask {
        title: String,
        #[serde(default)]
        description: String,
        /// The executor's login; the deal's manager when absent.
        #[serde(default)]
        executor: Option<String>,
        /// Due this many minutes from now.
        #[serde(default)]
        due_in_minutes: Option<i64>,
        #[serde(default)]
        required: bool,
    },
    /// Sets a deal field (`probability`, `amount`, `expected_close`, `source`, `comment`,
    /// `custom.NAME`); `null` clears it.
    SetField { field: String, value: serde_json::Value },
    /// A note (an interaction) on the deal's partner and the deal.
    AddNote {
        subject: String,
        #[serde(default)]
        body: String,
    },
    /// Puts the deal on hold.
    PutOnHold {
        #[serde(default)]
        comment: String,
    },
}

/// A handler failed: not an answer, an error. The write it was called for does not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fault(pub String);

/// Something that implements hooks: native Rust, a Rhai script, a WASM plugin.
pub trait Handler: Send + Sync {
    /// Answers one call.
    fn call(&self, input: &HookInput<'_>) -> std::result::Result<Answer, Fault>;
}

impl<F> Handler for F
where
    F: Fn(&HookInput<'_>) -> std::result::Result<Answer, Fault> + Send + Sync,
{
    fn call(&self, input: &HookInput<'_>) -> std::result::Result<Answer, Fault> {
        self(input)
    }
}

/// A bound handler.
#[derive(Clone)]
struct Bound {
    name: String,
    kinds: Vec<String>,
    handler: Arc<dyn Handler>,
}

/// Named handlers and which of them run at each hook point, in order.
#[derive(Clone, Default)]
pub struct Hooks {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
    bound: BTreeMap<HookPoint, Vec<Bound>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound: BTreeMap<&str, Vec<&str>> =
            self.bound.iter().map(|(p, b)| (p.name(), b.iter().map(|b| b.name.as_str()).collect())).collect();
        f.debug_struct("Hooks")
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("bound", &bound)
            .finish()
    }
}

impl Hooks {
    /// No handlers.
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Makes a handler available under `name` for bindings.
    pub fn register(&mut self, name: impl Into<String>, handler: impl Handler + 'static) -> &mut Self {
        self.handlers.insert(name.into(), Arc::new(handler));
        self
    }

    /// Makes a shared handler available under `name`.
    pub fn register_shared(&mut self, name: impl Into<String>, handler: Arc<dyn Handler>) -> &mut Self {
        self.handlers.insert(name.into(), handler);
        self
    }

    /// The registered handler names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Runs handler `name` at `point` for deals of `kinds` (all when empty), after the
    /// handlers bound there before.
    pub fn bind(&mut self, point: HookPoint, name: &str, kinds: &[&str]) -> Result<&mut Self> {
        let handler = self.handlers.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            Error::NotAllowed(format!(
                "hooks: handler \"{name}\" bound to {point} is not registered (registered: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?;
        self.bound.entry(point).or_default().push(Bound {
            name: name.to_string(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            handler,
        });
        Ok(self)
    }

    /// Binds what config's `[[hooks]]` say, in order.
    pub fn bind_all(&mut self, bindings: &[HookBinding]) -> Result<&mut Self> {
        for b in bindings {
            let kinds: Vec<&str> = b.kinds.iter().map(String::as_str).collect();
            self.bind(b.point, &b.handler, &kinds)?;
        }
        Ok(self)
    }

    /// Whether anything is bound at `point` for `kind`.
    pub fn any(&self, point: HookPoint, kind: Option<&str>) -> bool {
        self.bound_at(point, kind).next().is_some()
    }

    /// The handlers bound at `point` that apply to `kind`, in order, with their names.
    pub(crate) fn bound_at<'a>(
        &'a self,
        point: HookPoint,
        kind: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a dyn Handler)> + 'a {
        self.bound.get(&point).into_iter().flatten().filter_map(move |b| {
            let applies = b.kinds.is_empty() || kind.is_some_and(|k| b.kinds.iter().any(|x| x == k));
            applies.then_some((b.name.as_str(), b.handler.as_ref()))
        })
    }
}
