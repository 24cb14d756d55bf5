//! A deal's life inside an operation: creation, moves by hand and along a managed route,
//! hold, close and reopen, each written by `transition` with its history step, and what
//! keeps a deal from leaving its stage.

use super::reactions::set_field;
use super::{deal_field, process, Cx, Outcome};
use crate::hooks::{fault, Action, Answer, HookPoint, Subject, Transition};
use crate::id::DealId;
use crate::model::{text, Deal, DealStatus, EntityKind, How, StageChange, TaskStatus};
use crate::process::condition::field_is_set;
use crate::process::spec::{Mode, ProcessKindSpec, StageSpec};
use crate::store::{Reader, WriteTxn};
use crate::{Error, Result};

/// What keeps a deal from leaving `stage` forward: (field, message) pairs.
pub(super) fn unmet(
    r: &impl Reader,
    kind: &ProcessKindSpec,
    stage: &StageSpec,
    deal: &Deal,
) -> Result<Vec<(String, String)>> {
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
pub(super) fn is_final(kind: &ProcessKindSpec, stage: &str) -> bool {
    let pos = kind.position(stage).unwrap_or(0);
    let stage = &kind.stages[pos];
    pos + 1 == kind.stages.len() || !stage.to.iter().any(|t| kind.position(t).is_some_and(|p| p > pos))
}

impl Cx<'_> {
    pub(super) fn create_deal(&self, tx: &mut WriteTxn<'_>, mut deal: Deal) -> Result<Deal> {
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
        // A probability given with the deal is someone's estimate: kept as set by hand.
        deal.probability_manual = deal.probability.is_some();
        deal.score = None;
        if let Some(stage) = deal.stage.as_deref().and_then(|s| kind.stage(s)) {
            if deal.probability.is_none() {
                deal.probability = stage.probability;
            }
        }
        deal.stage_entered_at = Some(now);
        deal.checklist.clear();
        deal.history_steps = 1;
        let guards = [HookPoint::DealBeforeCreate, HookPoint::EntityBeforeSave];
        if guards.iter().any(|p| self.hooks.any(*p, Some(&kind.id))) {
            // Checked before a handler sees it, as every write is after.
            tx.check(&mut deal, None)?;
        }
        for point in guards {
            if self.hooks.any(point, Some(&kind.id)) {
                let input =
                    self.input(&*tx, point, Some(&kind.id), EntityKind::Deal, None, Some(Subject::Deal(&deal)), None);
                self.guard(&input)?;
            }
        }
        let deal = tx.as_engine(|tx| tx.create(deal))?;
        tx.append_stage_change(&StageChange::created(&deal, now, tx.actor()))?;
        self.enter_stage(tx, &deal, kind)?;
        Ok(deal)
    }

    pub(super) fn move_deal(
        &self,
        tx: &mut WriteTxn<'_>,
        id: DealId,
        version: u64,
        to: &str,
        note: Option<&str>,
    ) -> Result<Deal> {
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

    pub(super) fn advance(&self, tx: &mut WriteTxn<'_>, old: Deal) -> Result<Deal> {
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
    pub(super) fn auto_advance(&self, tx: &mut WriteTxn<'_>, deal: Deal) -> Result<Deal> {
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

    pub(super) fn hold(&self, tx: &mut WriteTxn<'_>, old: Deal, comment: &str) -> Result<Deal> {
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

    pub(super) fn close(&self, tx: &mut WriteTxn<'_>, id: DealId, version: u64, outcome: Outcome) -> Result<Deal> {
        let old = self.current(tx, id, version)?;
        let kind = self.kind(&old)?;
        if old.status.is_closed() {
            return Err(process(id, format!("is already closed ({})", old.status.name())));
        }
        let mut new = old.clone();
        let now = self.now(tx);
        new.closed_at = Some(now);
        let (how, note) = match outcome {
            Outcome::Won { comment } => {
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
                new.probability_manual = false;
                (How::Won, Some(comment))
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
                new.probability_manual = false;
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

    pub(super) fn reopen(
        &self,
        tx: &mut WriteTxn<'_>,
        id: DealId,
        version: u64,
        stage: Option<&str>,
        comment: &str,
    ) -> Result<Deal> {
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
        new.probability_manual = false;
        self.transition(tx, old, new, How::Reopen, Some(comment.to_string()))
    }

    /// Writes a change of stage or status with its history step, after the guards, and
    /// then runs the stage's entry and the reactions.
    pub(super) fn transition(
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
            // A probability set by hand stays; the stage's default replaces any other.
            if how != How::Reopen && !new.probability_manual {
                if let Some(p) = new.stage.as_deref().and_then(|s| kind.stage(s)).and_then(|s| s.probability) {
                    new.probability = Some(p);
                }
            }
        }
        // The step's comment obeys the rule of free text, and the deal as it will be is
        // checked (its fields and references) before any handler sees it: a handler never
        // meets a competitor that does not exist, and a refused step asks no one.
        let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &note {
            text::field(EntityKind::Deal, "comment", n, text::NOTE_MAX)?;
        }
        let closing = matches!(how, How::Won | How::Lost);
        // Closing a deal is leaving its stage: the guards of leaving are asked first, then
        // those of closing.
        let guards: &[HookPoint] = if closing {
            &[HookPoint::DealBeforeTransition, HookPoint::DealBeforeClose, HookPoint::EntityBeforeSave]
        } else {
            &[HookPoint::DealBeforeTransition, HookPoint::EntityBeforeSave]
        };
        let point = if closing { HookPoint::DealAfterClose } else { HookPoint::DealAfterTransition };
        if guards.iter().chain([&point]).any(|p| self.hooks.any(*p, Some(&kind.id))) {
            tx.check(&mut new, Some(&old))?;
        }
        let t = Transition {
            how,
            from_stage: old.stage.clone(),
            to_stage: new.stage.clone(),
            from_status: old.status,
            to_status: new.status,
            note: note.clone(),
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
}
