//! The extension contract: named hook points where the engine asks handlers, the data it
//! passes and the answers it takes. Native Rust, Rhai scripts and WASM plugins implement the
//! same [`Handler`] trait; each runtime is found through its [`HandlerProvider`], and the
//! engine does not know which it calls. docs/hooks.md is the reference for every point.
//!
//! Three kinds of points:
//! - **guards** answer [`Answer::Allow`] or [`Answer::Reject`]; the first rejection wins;
//! - **reactions** answer [`Answer::Actions`], applied in the same transaction;
//! - **computations** answer a value ([`Answer::Stage`] for `deal.route`,
//!   [`Answer::Assignee`] for `task.assignee`, [`Answer::Score`] for `deal.score`,
//!   [`Answer::Points`] for `loyalty.accrue`); no value means "the default".
//!
//! Each point declares its answer type ([`HookPoint::answer_type`]); core checks every answer
//! against it. A handler that fails (a trap, an exhausted budget, a script error, a panic) or
//! answers the wrong type is a fault: the engine aborts the write and names the handler. A
//! fault is never a business answer.

mod answer;
mod binding;
mod point;
mod registry;
mod view;
pub mod wire;

pub use answer::{accept, Action, Answer, Points, Reply, Score};
pub use binding::{runtime_of, CallLimits, HookBinding, Limits};
pub use point::{AnswerType, HookFamily, HookKind, HookPoint};
pub use registry::{
    fault, ClaimTransition, Fault, Handler, HandlerProvider, HandlerStats, HookInput, Hooks, Loyalty, Subject,
    Transition, NATIVE,
};
pub use view::View;
