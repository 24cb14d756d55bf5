//! The table of hook points: each point's name, family, kind and answer, written once.
//! Adding a point is one row here plus its input in `wire.rs`; no adapter changes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A family of hook points: the part of the engine that asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookFamily {
    /// The sales process and the records it writes: deals, tasks, interactions, any entity
    /// saved.
    Process,
    /// Scoring models: what the engine asks to estimate a deal.
    Scoring,
    /// Loyalty rules: what a sale earns on a card.
    Loyalty,
    /// Relationship strategies: which segment a partner is in.
    Strategy,
    /// Claims work: the steps of a client's claim.
    Claims,
}

impl HookFamily {
    /// The name docs and tools use.
    pub fn name(self) -> &'static str {
        match self {
            HookFamily::Process => "process",
            HookFamily::Scoring => "scoring",
            HookFamily::Loyalty => "loyalty",
            HookFamily::Strategy => "strategy",
            HookFamily::Claims => "claims",
        }
    }
}

/// What a hook point expects back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// May veto the change with a message.
    Guard,
    /// Returns actions the engine applies in the same transaction.
    Reaction,
    /// Computes a value the engine uses.
    Computation,
}

/// The type of a point's answer: what a handler must hand back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnswerType {
    /// Allow or reject ([`Answer::Allow`](super::Answer::Allow),
    /// [`Answer::Reject`](super::Answer::Reject)).
    Verdict,
    /// A list of actions ([`Answer::Actions`](super::Answer::Actions)).
    Actions,
    /// A stage id, or nothing for the default ([`Answer::Stage`](super::Answer::Stage)).
    Stage,
    /// A user's login, or nothing for the default ([`Answer::Assignee`](super::Answer::Assignee)).
    Assignee,
    /// A probability with its factors, or nothing ([`Answer::Score`](super::Answer::Score)).
    Score,
    /// A partner segment's id, or nothing to keep the partner's
    /// ([`Answer::Segment`](super::Answer::Segment)).
    Segment,
    /// Points a sale earns, or nothing for the program's own rate
    /// ([`Answer::Points`](super::Answer::Points)).
    Points,
}

impl AnswerType {
    /// What a handler must answer, in words (for the "wrong answer" fault).
    pub fn expected(self) -> &'static str {
        match self {
            AnswerType::Verdict => {
                "a verdict: true or null (allow), false or a message (reject), {\"reject\": \"…\", \"field\": \"…\"} or {\"allow\": true}"
            }
            AnswerType::Actions => "a list of actions (or null for none)",
            AnswerType::Stage => "a stage id (text) or null for the default route",
            AnswerType::Assignee => "a user's login (text) or null for the default rule",
            AnswerType::Segment => "a segment id of [[strategies]] (text) or null to keep the partner's segment",
            AnswerType::Points => {
                "points {\"points\": 0 or more (a number or decimal text), \"reason\": \"…\"} or null for the program's own rate"
            }
            AnswerType::Score => {
                "a score {\"probability\": 0 to 100, \"factors\": [{\"name\": \"…\", \"value\": …, \"contribution\": …}], \"model\": \"…\"} or null for none"
            }
        }
    }
}

macro_rules! hook_points {
    ($($name:ident = $text:literal, $family:ident, $kind:ident, $answer:ident;)*) => {
        /// A point where the engine calls hook handlers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum HookPoint { $(#[serde(rename = $text)] $name,)* }

        impl HookPoint {
            /// Every hook point.
            pub const ALL: &'static [HookPoint] = &[$(HookPoint::$name,)*];

            /// The name config and handlers use (`deal.before_transition`).
            pub fn name(self) -> &'static str {
                match self { $(HookPoint::$name => $text,)* }
            }

            /// The family the point belongs to.
            pub fn family(self) -> HookFamily {
                match self { $(HookPoint::$name => HookFamily::$family,)* }
            }

            /// Guard, reaction or computation.
            pub fn kind(self) -> HookKind {
                match self { $(HookPoint::$name => HookKind::$kind,)* }
            }

            /// What a handler at this point answers.
            pub fn answer_type(self) -> AnswerType {
                match self { $(HookPoint::$name => AnswerType::$answer,)* }
            }
        }
    };
}

hook_points! {
    DealBeforeCreate = "deal.before_create", Process, Guard, Verdict;
    DealBeforeTransition = "deal.before_transition", Process, Guard, Verdict;
    DealBeforeClose = "deal.before_close", Process, Guard, Verdict;
    TaskBeforeComplete = "task.before_complete", Process, Guard, Verdict;
    EntityBeforeSave = "entity.before_save", Process, Guard, Verdict;
    DealAfterTransition = "deal.after_transition", Process, Reaction, Actions;
    DealAfterClose = "deal.after_close", Process, Reaction, Actions;
    TaskAfterComplete = "task.after_complete", Process, Reaction, Actions;
    InteractionAfterCreate = "interaction.after_create", Process, Reaction, Actions;
    DealRoute = "deal.route", Process, Computation, Stage;
    TaskAssignee = "task.assignee", Process, Computation, Assignee;
    DealScore = "deal.score", Scoring, Computation, Score;
    LoyaltyAccrue = "loyalty.accrue", Loyalty, Computation, Points;
    PartnerStrategy = "partner.strategy", Strategy, Computation, Segment;
    ClaimBeforeTransition = "claim.before_transition", Claims, Guard, Verdict;
    ClaimAfterTransition = "claim.after_transition", Claims, Reaction, Actions;
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
