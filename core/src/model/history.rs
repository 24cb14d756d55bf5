//! The stage history of a deal: one step per change of stage or status, appended and never
//! changed. Every process statistic (funnel, conversion, dwell times, losses by stage) is
//! computed from it.

use serde::{Deserialize, Serialize};

use super::{Deal, DealStatus};
use crate::config::Settings;
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

/// Checks that `steps` are a complete, well-formed history that ends in the deal's current
/// stage and status; returns what is wrong.
pub fn check_history(deal: &Deal, steps: &[StageChange], settings: &Settings) -> Result<(), String> {
    let Some(first) = steps.first() else {
        return Err(format!("deal {} has no stage history", deal.id));
    };
    if first.how != How::Create || first.from_stage.is_some() || first.from_status.is_some() {
        return Err(format!("deal {}: step 0 is not the creation", deal.id));
    }
    let kind = settings.process_kind(&deal.kind);
    let mut entered = first.at;
    for (i, s) in steps.iter().enumerate() {
        let at = format!("deal {} step {i}", deal.id);
        if s.deal != deal.id || s.step as usize != i {
            return Err(format!("{at}: numbered {} of deal {}", s.step, s.deal));
        }
        if let (Some(stage), Some(kind)) = (&s.to_stage, kind) {
            if kind.stage(stage).is_none() {
                return Err(format!("{at}: \"{stage}\" is not a stage of process kind \"{}\"", kind.id));
            }
        }
        if i == 0 {
            continue;
        }
        let prev = &steps[i - 1];
        if s.at < prev.at {
            return Err(format!("{at}: at {} is before the previous step ({})", s.at, prev.at));
        }
        if s.from_stage != prev.to_stage || s.from_status != Some(prev.to_status) {
            return Err(format!(
                "{at}: starts from {:?}/{:?}, but the previous step ended in {:?}/{}",
                s.from_stage,
                s.from_status.map(DealStatus::name),
                prev.to_stage,
                prev.to_status.name()
            ));
        }
        let leaves = matches!(s.how, How::Won | How::Lost) || (s.from_stage != s.to_stage && s.how != How::Reopen);
        let expected_dwell = leaves.then(|| s.at.0.saturating_sub(entered.0));
        if s.dwell_ms != expected_dwell {
            return Err(format!("{at}: dwell {:?} ms, the steps say {expected_dwell:?}", s.dwell_ms));
        }
        if s.from_stage != s.to_stage || s.how == How::Reopen {
            entered = s.at;
        }
        let status_ok = match s.how {
            How::Create => false,
            How::Manual | How::Route => {
                s.from_status == Some(DealStatus::InProgress) && s.to_status == DealStatus::InProgress
            }
            How::Hold => s.from_status == Some(DealStatus::InProgress) && s.to_status == DealStatus::OnHold,
            How::Resume => s.from_status == Some(DealStatus::OnHold) && s.to_status == DealStatus::InProgress,
            How::Won | How::Lost => {
                matches!(s.from_status, Some(DealStatus::InProgress | DealStatus::OnHold))
                    && s.to_status == if s.how == How::Won { DealStatus::Won } else { DealStatus::Lost }
            }
            How::Reopen => s.from_status.is_some_and(DealStatus::is_closed) && s.to_status == DealStatus::InProgress,
        };
        if !status_ok {
            return Err(format!(
                "{at}: a {} step cannot go from {:?} to {}",
                s.how.name(),
                s.from_status.map(DealStatus::name),
                s.to_status.name()
            ));
        }
        if matches!(s.how, How::Hold | How::Resume | How::Won | How::Lost) && s.from_stage != s.to_stage {
            return Err(format!("{at}: a {} step does not change the stage", s.how.name()));
        }
    }
    if deal.history_steps as usize != steps.len() {
        return Err(format!(
            "deal {} counts {} history steps, {} are stored",
            deal.id,
            deal.history_steps,
            steps.len()
        ));
    }
    let last = steps.last().expect("not empty");
    if last.to_stage != deal.stage || last.to_status != deal.status {
        return Err(format!(
            "deal {}: the history ends in {:?}/{}, the deal is in {:?}/{}",
            deal.id,
            last.to_stage,
            last.to_status.name(),
            deal.stage,
            deal.status.name()
        ));
    }
    Ok(())
}
