//! The consistency check of a deal's stage history: the process rules every step obeys,
//! kept next to the engine that writes the steps.

use super::{Mode, ProcessKindSpec};
use crate::config::Settings;
use crate::id::UserId;
use crate::model::{Deal, DealStatus, EntityKind, FieldError, How, StageChange};
use crate::progress::{self, Meter, Progress};
use crate::store::{Reader, Store};
use crate::{Error, Result};

impl Store {
    /// Checks every deal's stage history: numbered without gaps, each step starting where
    /// the previous ended, dwell times that add up, and ending in the deal's current stage
    /// and status. Returns one line per deal that fails (empty when all hold).
    pub fn verify_histories(&self) -> Result<Vec<String>> {
        self.verify_histories_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_histories`], reporting its stage `"stage histories"` to `progress`:
    /// the deals whose history was checked.
    pub fn verify_histories_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let mut meter = Meter::start(progress, "stage histories", r.count(EntityKind::Deal)?);
        let mut problems = Vec::new();
        let mut counted = 0u64;
        let mut failed: Option<Error> = None;
        r.for_each::<Deal>(|deal| match r.stage_history(deal.id) {
            Ok(steps) => {
                counted += steps.len() as u64;
                if let Err(m) = check_history(&deal, &steps, self.settings()) {
                    problems.push(m);
                }
                meter.add(1);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let steps = r.stage_history_len()?;
        if counted != steps {
            problems.push(format!("the stage history holds {steps} steps, but the deals' histories have {counted}: steps of deals that do not exist"));
        }
        meter.finish();
        Ok(problems)
    }
}

/// Checks that `steps` are a complete, well-formed history that ends in the deal's current
/// stage and status; returns what is wrong.
pub fn check_history(deal: &Deal, steps: &[StageChange], settings: &Settings) -> std::result::Result<(), String> {
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

/// The first step of the stage history of `deal` (of process kind `kind`, if configured),
/// created outside the process engine: a managed kind's deals are created by the engine,
/// which creates the first stage's tasks; others start in progress in their kind's first
/// stage. Sets what the step fixes on the deal (when it entered the stage, an empty
/// checklist).
pub(crate) fn creation_step(
    kind: Option<&ProcessKindSpec>,
    deal: &mut Deal,
    actor: Option<UserId>,
) -> std::result::Result<StageChange, FieldError> {
    if let Some(kind) = kind {
        if kind.mode == Mode::Managed {
            return Err(FieldError::new(
                EntityKind::Deal,
                "kind",
                format!(
                    "process kind \"{}\" is managed: its deals are created through the process engine, which creates the first stage's tasks",
                    kind.id
                ),
            ));
        }
        let first = kind.stages.first().map(|s| s.id.as_str());
        if deal.stage.as_deref() != first {
            return Err(FieldError::new(
                EntityKind::Deal,
                "stage",
                format!(
                    "a deal of process kind \"{}\" starts in its first stage ({}); a deal that got further elsewhere is imported with its stage history",
                    kind.id,
                    first.unwrap_or("none")
                ),
            ));
        }
    }
    deal.stage_entered_at = Some(deal.created_at);
    deal.checklist.clear();
    if deal.status != DealStatus::InProgress {
        return Err(FieldError::new(
            EntityKind::Deal,
            "status",
            format!(
                "a new deal is in progress, not {}: a deal closed elsewhere is imported with its stage history",
                deal.status.name()
            ),
        ));
    }
    Ok(StageChange::created(deal, deal.created_at, actor))
}
