//! The sales process engine: process kinds and their stages, the deal lifecycle, tasks,
//! the stage history, the loyalty operations, and the hook interface extensions implement.

pub mod condition;
mod engine;
mod history;
mod monitor;
pub mod spec;

pub use crate::hooks::{
    Action, Answer, CallLimits, Fault, Handler, HookBinding, HookInput, HookKind, HookPoint, Hooks, Reply, Subject,
    Transition, View,
};
pub use engine::{Engine, ImportStep, Outcome, Rescored};
/// Loyalty: the cards' ledgers and when a card may be used.
pub mod loyalty {
    pub use super::engine::{is_sale, last_day, ledger, unusable, verify_loyalty as verify, Expired};
}
pub use history::check_history;
pub(crate) use history::creation_step;
pub use monitor::{sla_breaches, SlaBreach};
pub use spec::{Assignee, Guidance, Mode, ProcessKindSpec, ProcessSettings, Route, StageSpec, TaskTemplate};
