//! The hook registry: the [`Handler`] contract every runtime implements, the
//! [`HandlerProvider`] of each runtime that finds the handler a binding names, and
//! [`Hooks`], which binds handlers to points and calls them — one call path for every
//! runtime: a panic or a fault is named and refuses the write, an answer is checked against
//! the point before the engine sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::answer::{accept, Answer, Reply};
use super::binding::HookBinding;
use super::point::HookPoint;
use super::view::View;
use super::wire::InputV1;
use crate::model::{
    ContactPerson, Counterparty, Deal, DealStatus, Document, EntityKind, How, Interaction, LoyaltyCard, LoyaltyProgram,
    Partner, Task, User,
};
use crate::time::Timestamp;
use crate::{Error, Result};

/// The entity a hook is about, before or after the change, as native handlers read it;
/// handlers that speak JSON get its contract form ([`SubjectV1`](super::wire::SubjectV1)).
#[derive(Debug)]
pub enum Subject<'a> {
    Deal(&'a Deal),
    Task(&'a Task),
    Interaction(&'a Interaction),
    Partner(&'a Partner),
    Counterparty(&'a Counterparty),
    Contact(&'a ContactPerson),
    Document(&'a Document),
    Claim(&'a crate::model::Claim),
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

/// What a handler is called with. Native handlers read these typed values; serialized, it is
/// the versioned contract ([`InputV1`]) that scripts and plugins receive.
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
    /// The instant of the operation the call belongs to, from the engine's clock (the
    /// store's [`Clock`](crate::time::Clock)): what "now" is for the handler.
    pub now: Timestamp,
    /// The store as the write being decided sees it.
    pub view: &'a dyn View,
    /// `loyalty.accrue`: the card the sale earns on (`None` at every other point).
    pub loyalty: Option<&'a Loyalty<'a>>,
    /// `partner.strategy`: the partner's figures (`None` at every other point).
    pub strategy: Option<&'a super::wire::StrategyV1>,
    /// `claim.before_transition`, `claim.after_transition`: the claim's step (`None` at every
    /// other point).
    pub claim_step: Option<&'a ClaimTransition>,
}

/// The step a claim takes: what is done, from which status to which, with its note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimTransition {
    pub action: crate::model::ClaimAction,
    pub from: crate::model::ClaimStatus,
    pub to: crate::model::ClaimStatus,
    /// The review comment, a reason, the reply or the closing comment.
    pub note: Option<String>,
}

/// What `loyalty.accrue` is asked about besides the sale (the input's `after`): the card,
/// with its ledger's sums before the sale, its program, and the sale's amount in the
/// program's currency.
#[derive(Clone, Copy, Debug)]
pub struct Loyalty<'a> {
    pub card: &'a LoyaltyCard,
    pub program: &'a LoyaltyProgram,
    pub sale_amount: rust_decimal::Decimal,
}

impl HookInput<'_> {
    /// The input in its contract form.
    pub fn to_wire(&self) -> InputV1 {
        InputV1::from(self)
    }
}

impl Serialize for HookInput<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
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
            .field("now", &self.now)
            .field("loyalty", &self.loyalty)
            .field("strategy", &self.strategy)
            .field("claim_step", &self.claim_step)
            .finish()
    }
}

/// A handler failed: not an answer, an error. The write it was called for does not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fault(pub String);

/// Something that implements hooks: native Rust, a Rhai script, a WASM plugin. It hands
/// back a [`Reply`]: a typed [`Answer`] or its JSON form; core checks it against the point.
pub trait Handler: Send + Sync {
    /// Answers one call.
    fn call(&self, input: &HookInput<'_>) -> std::result::Result<Reply, Fault>;
}

impl<F, R> Handler for F
where
    F: Fn(&HookInput<'_>) -> std::result::Result<R, Fault> + Send + Sync,
    R: Into<Reply>,
{
    fn call(&self, input: &HookInput<'_>) -> std::result::Result<Reply, Fault> {
        self(input).map(Into::into)
    }
}

/// A runtime's way to the handlers bindings name: `native` (handlers the embedding program
/// registers), `rhai` (script functions), `wasm` (plugin exports). Registered with
/// [`Hooks::provider`]; the engine never knows which runtime a handler belongs to.
pub trait HandlerProvider: Send + Sync {
    /// The runtime's name, as a binding's `runtime` says it.
    fn runtime(&self) -> &str;

    /// The handler `binding` names, checked to exist and to fit its point; the error says
    /// what is wrong with it (the binding's place in config is added by the caller).
    fn handler(&self, binding: &HookBinding) -> std::result::Result<Arc<dyn Handler>, String>;
}

/// A bound handler.
#[derive(Clone)]
struct Bound {
    name: String,
    kinds: Vec<String>,
    handler: Arc<dyn Handler>,
    /// Its calls so far, shared by the clones of the registry.
    counts: Arc<Counts>,
}

/// One bound handler's calls, faults and time, counted as [`Hooks::ask`] calls it.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    faults: AtomicU64,
    nanos: AtomicU64,
    /// The message of its latest fault.
    last_fault: std::sync::Mutex<Option<String>>,
}

/// What one bound handler has done since it was bound: plain counters an embedding
/// program reads (the server's `/metrics` exports them); core keeps no metrics library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerStats {
    pub point: HookPoint,
    /// The handler's name as its binding gives it (`FILE.rhai::FUNCTION`, a native name).
    pub handler: String,
    /// Calls, faults among them (a failure, a panic, an answer of the wrong type) and the
    /// time spent in the handler, in nanoseconds.
    pub calls: u64,
    pub faults: u64,
    pub nanos: u64,
    /// The message of its latest fault, if it has had one.
    pub last_fault: Option<String>,
}

/// Handlers by runtime, and which of them run at each hook point, in order.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Native handlers by name.
    native: BTreeMap<String, Arc<dyn Handler>>,
    /// The other runtimes, by name.
    providers: BTreeMap<String, Arc<dyn HandlerProvider>>,
    bound: BTreeMap<HookPoint, Vec<Bound>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound: BTreeMap<&str, Vec<&str>> =
            self.bound.iter().map(|(p, b)| (p.name(), b.iter().map(|b| b.name.as_str()).collect())).collect();
        f.debug_struct("Hooks")
            .field("native", &self.native.keys().collect::<Vec<_>>())
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("bound", &bound)
            .finish()
    }
}

impl Hooks {
    /// No handlers.
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Makes a native handler available under `name` for bindings.
    pub fn register(&mut self, name: impl Into<String>, handler: impl Handler + 'static) -> &mut Self {
        self.native.insert(name.into(), Arc::new(handler));
        self
    }

    /// Makes a shared native handler available under `name`.
    pub fn register_shared(&mut self, name: impl Into<String>, handler: Arc<dyn Handler>) -> &mut Self {
        self.native.insert(name.into(), handler);
        self
    }

    /// Adds a runtime: bindings whose runtime is `provider.runtime()` find their handlers
    /// through it.
    pub fn provider(&mut self, provider: Arc<dyn HandlerProvider>) -> &mut Self {
        self.providers.insert(provider.runtime().to_string(), provider);
        self
    }

    /// The registered native handler names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.native.keys().map(String::as_str)
    }

    /// The runtimes registered besides `native`.
    pub fn runtimes(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// Runs native handler `name` at `point` for deals of `kinds` (all when empty), after
    /// the handlers bound there before.
    pub fn bind(&mut self, point: HookPoint, name: &str, kinds: &[&str]) -> Result<&mut Self> {
        let handler = self.native(name).map_err(|m| Error::Bindings(format!("hooks: {point}: {m}")))?;
        self.push(point, name, kinds.iter().map(|k| k.to_string()).collect(), handler);
        Ok(self)
    }

    fn native(&self, name: &str) -> std::result::Result<Arc<dyn Handler>, String> {
        self.native.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            format!(
                "native handler \"{name}\" is not registered (registered: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        })
    }

    fn push(&mut self, point: HookPoint, name: &str, kinds: Vec<String>, handler: Arc<dyn Handler>) {
        let counts = Arc::default();
        self.bound.entry(point).or_default().push(Bound { name: name.to_string(), kinds, handler, counts });
    }

    /// Binds what config's `[[hooks]]` say, in order, each through its runtime's provider.
    /// Every binding that cannot be made is listed in the error (with its place in config),
    /// and then none is bound.
    pub fn bind_all(&mut self, bindings: &[HookBinding]) -> Result<&mut Self> {
        let mut found = Vec::with_capacity(bindings.len());
        let mut problems = Vec::new();
        for b in bindings {
            let handler = match b.runtime.as_str() {
                NATIVE => self.native(&b.handler),
                runtime => match self.providers.get(runtime) {
                    Some(p) => p.handler(b),
                    None => Err(format!(
                        "no {runtime} runtime is available here (runtimes: {})",
                        std::iter::once(NATIVE).chain(self.runtimes()).collect::<Vec<_>>().join(", ")
                    )),
                },
            };
            match handler {
                Ok(h) => found.push((b, h)),
                Err(m) => problems.push(format!("{}: hooks: {} bound to {}: {m}", b.origin, b.handler, b.point)),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Bindings(problems.join("\n")));
        }
        for (b, h) in found {
            self.push(b.point, &b.handler, b.kinds.clone(), h);
        }
        Ok(self)
    }

    /// Whether anything is bound at `point` for `kind`.
    pub fn any(&self, point: HookPoint, kind: Option<&str>) -> bool {
        self.bound_at(point, kind).next().is_some()
    }

    /// The handlers bound at `point` that apply to `kind`, in order.
    fn bound_at<'a>(&'a self, point: HookPoint, kind: Option<&'a str>) -> impl Iterator<Item = &'a Bound> + 'a {
        self.bound
            .get(&point)
            .into_iter()
            .flatten()
            .filter(move |b| b.kinds.is_empty() || kind.is_some_and(|k| b.kinds.iter().any(|x| x == k)))
    }

    /// Every bound handler's calls, faults and time since it was bound, by point in order;
    /// a clone of this registry counts into the same figures.
    pub fn stats(&self) -> Vec<HandlerStats> {
        self.bound
            .iter()
            .flat_map(|(point, bound)| bound.iter().map(move |b| (*point, b)))
            .map(|(point, b)| HandlerStats {
                point,
                handler: b.name.clone(),
                calls: b.counts.calls.load(Ordering::Relaxed),
                faults: b.counts.faults.load(Ordering::Relaxed),
                nanos: b.counts.nanos.load(Ordering::Relaxed),
                last_fault: b.counts.last_fault.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            })
            .collect()
    }

    /// Asks the handlers bound at `input.hook` for `input.process_kind`, in order, lazily:
    /// each item is one handler's name and its answer, already checked against the point,
    /// or the fault that stops the write (a handler's failure, a panic, a wrong answer).
    pub fn ask<'a>(&'a self, input: &'a HookInput<'a>) -> impl Iterator<Item = Result<(&'a str, Answer)>> + 'a {
        self.bound_at(input.hook, input.process_kind).map(move |b| {
            let name = b.name.as_str();
            let started = std::time::Instant::now();
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.handler.call(input)));
            b.counts.calls.fetch_add(1, Ordering::Relaxed);
            b.counts.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let answer = called
                .map_err(|panic| fault(input.hook, name, format!("panicked: {}", panic_message(&panic))))
                .and_then(|reply| reply.map_err(|f| fault(input.hook, name, f.0)))
                .and_then(|reply| accept(input.hook, name, reply));
            if let Err(e) = &answer {
                b.counts.faults.fetch_add(1, Ordering::Relaxed);
                *b.counts.last_fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            Ok((name, answer?))
        })
    }
}

/// The runtime of handlers the embedding program registers.
pub const NATIVE: &str = "native";

/// A handler's failure as the engine reports it.
pub fn fault(point: HookPoint, handler: &str, message: String) -> Error {
    Error::HookFault { hook: point.name(), handler: handler.to_string(), message }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}
