//! The sales process engine: process kinds and their stages, the deal lifecycle, tasks,
//! the stage history, and the hook interface extensions implement.

pub mod condition;
mod engine;
pub mod hooks;
mod monitor;
pub mod spec;

pub use engine::{Engine, ImportStep, Outcome};
pub use hooks::{Action, Answer, Fault, Handler, HookInput, HookKind, HookPoint, Hooks, Subject, Transition, View};
pub use monitor::{sla_breaches, SlaBreach};
pub use spec::{
    Assignee, CallLimits, Guidance, HookBinding, Mode, ProcessKindSpec, ProcessSettings, Route, ScriptSettings,
    StageSpec, TaskTemplate,
};
