//! The stage history of a deal: one step per change of stage or status, appended and never
//! changed. Every process statistic (funnel, conversion, dwell times, losses by stage) is
//! computed from it.

use serde::{Deserialize, Serialize};

use super::DealStatus;
use crate::id::{DealId, UserId};
use crate::time::Timestamp;

/// How a step came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The deal was created (the first step).
    Create,
    /// A person moved it.
    Manual,
    /// A managed process moved it along its route.
    Route,
    /// Put on hold.
    Hold,
    /// Taken off hold.
    Resume,
    /// Closed as won.
    Won,
    /// Closed as lost.
    Lost,
    /// A closed deal was reopened.
    Reopen,
}

impl How {
    /// Every value.
    pub const ALL: [How; 8] =
        [How::Create, How::Manual, How::Route, How::Hold, How::Resume, How::Won, How::Lost, How::Reopen];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            How::Create => "create",
            How::Manual => "manual",
            How::Route => "route",
            How::Hold => "hold",
            How::Resume => "resume",
            How::Won => "won",
            How::Lost => "lost",
            How::Reopen => "reopen",
        }
    }
}

/// One step of a deal's stage history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageChange {
    pub deal: DealId,
    /// 0 for the creation, then 1, 2, … without gaps.
    pub step: u32,
    pub at: Timestamp,
    /// Who made the change (`None`: the system).
    pub actor: Option<UserId>,
    pub how: How,
    pub from_stage: Option<String>,
    pub to_stage: Option<String>,
    /// `None` on the creation step.
    pub from_status: Option<DealStatus>,
    pub to_status: DealStatus,
    /// The time spent in the stage the deal left, in milliseconds: set when the step leaves
    /// a stage (a move, or a close), not on hold, resume or reopen (a reopened deal was in no
    /// stage while it was closed).
    pub dwell_ms: Option<i64>,
    /// The loss reason, a hold comment, or the reason for a manual move.
    pub note: Option<String>,
    /// Brought in from another system with its original time.
    pub imported: bool,
}

impl StageChange {
    /// The first step of `deal`: its creation, in the stage and status it starts in.
    pub fn created(deal: &super::Deal, at: Timestamp, actor: Option<UserId>) -> StageChange {
        StageChange {
            deal: deal.id,
            step: 0,
            at,
            actor,
            how: How::Create,
            from_stage: None,
            to_stage: deal.stage.clone(),
            from_status: None,
            to_status: deal.status,
            dwell_ms: None,
            note: None,
            imported: false,
        }
    }
}
