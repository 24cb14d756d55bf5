//! The claim operations: a claim is taken up for review, its answer put off, decided (with
//! the settled amount and the reply), closed and reopened. Each is one step appended to the
//! claim, asked of the `claim.before_transition` guards before it is written and followed by
//! the `claim.after_transition` reactions' actions (tasks for the claim, notes on the
//! client) in the same transaction.

use chrono::NaiveDate;

use super::{Cx, Engine};
use crate::hooks::{Action, ClaimTransition, HookPoint, Subject};
use crate::id::{ClaimId, TypedId};
use crate::model::{
    Claim, ClaimAction, ClaimStatus, ClaimStep, Decision, EntityKind, FieldError, Interaction, InteractionKind, Task,
};

use crate::store::{Reader, WriteTxn};
use crate::values::Money;
use crate::{Error, Result};

fn claim_error(field: &str, message: impl Into<String>) -> Error {
    FieldError::new(EntityKind::Claim, field, message).into()
}

/// A reason, a reply or a comment a step requires: trimmed and not empty.
fn required(field: &str, text: &str, what: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(claim_error(field, format!("{what} is required")));
    }
    Ok(t.to_string())
}

impl Engine {
    /// Takes a registered claim up for review, with an optional comment.
    pub fn review_claim(&self, tx: &mut WriteTxn<'_>, id: ClaimId, version: u64, comment: &str) -> Result<Claim> {
        self.claim_step(tx, id, version, ClaimAction::Review, comment, |c| {
            if c.status != ClaimStatus::Registered {
                return Err(claim_error(
                    "status",
                    format!("claim {} is {}: only a registered claim is taken up for review", c.id, c.status.name()),
                ));
            }
            c.status = ClaimStatus::UnderReview;
            Ok(())
        })
    }

    /// Puts off the answer to a claim awaiting its decision to `until` (later than its due
    /// date and any earlier postponement), with the reason.
    pub fn postpone_claim(
        &self,
        tx: &mut WriteTxn<'_>,
        id: ClaimId,
        version: u64,
        until: NaiveDate,
        reason: &str,
    ) -> Result<Claim> {
        let reason = required("note", reason, "the reason for the postponement")?;
        self.claim_step(tx, id, version, ClaimAction::Postpone, &reason, |c| {
            if !c.status.is_open() {
                return Err(claim_error(
                    "status",
                    format!("claim {} is {}: only a claim awaiting its decision is postponed", c.id, c.status.name()),
                ));
            }
            if let Some(p) = c.postponed_until.filter(|p| until <= *p) {
                return Err(claim_error(
                    "postponed_until",
                    format!("the claim is postponed until {p} already; a new postponement is later, got {until}"),
                ));
            }
            c.postponed_until = Some(until);
            Ok(())
        })
    }

    /// Decides a claim awaiting its decision: satisfied, partly satisfied or rejected, with
    /// the amount settled (required when the claim's type settles amounts and the claim is
    /// satisfied, fully or partly; in the claim's currency) and the reply to the client.
    pub fn decide_claim(
        &self,
        tx: &mut WriteTxn<'_>,
        id: ClaimId,
        version: u64,
        decision: Decision,
        settled: Option<Money>,
        reply: &str,
    ) -> Result<Claim> {
        let reply = required("reply", reply, "the reply to the client")?;
        let now = self.cx(tx)?.now;
        self.claim_step(tx, id, version, ClaimAction::Decide, &reply, |c| {
            if !c.status.is_open() {
                return Err(claim_error(
                    "status",
                    format!("claim {} is {}: it is decided once; reopen it to decide again", c.id, c.status.name()),
                ));
            }
            if let (Some(s), Some(claimed)) = (&settled, &c.claimed) {
                if s.currency != claimed.currency {
                    return Err(claim_error(
                        "settled",
                        format!("is in {}, the claim in {}", s.currency, claimed.currency),
                    ));
                }
            }
            c.status = ClaimStatus::Decided;
            c.decision = Some(decision);
            c.settled = settled.filter(|s| !(decision == Decision::Rejected && s.is_zero()));
            c.reply = reply.clone();
            c.decided_at = Some(now);
            Ok(())
        })
    }

    /// Closes a decided claim, with an optional comment.
    pub fn close_claim(&self, tx: &mut WriteTxn<'_>, id: ClaimId, version: u64, comment: &str) -> Result<Claim> {
        let now = self.cx(tx)?.now;
        self.claim_step(tx, id, version, ClaimAction::Close, comment, |c| {
            if c.status != ClaimStatus::Decided {
                let why = match c.status {
                    ClaimStatus::Closed => "it is closed already".to_string(),
                    _ => "only a decided claim is closed; decide it first".to_string(),
                };
                return Err(claim_error("status", format!("claim {} is {}: {why}", c.id, c.status.name())));
            }
            c.status = ClaimStatus::Closed;
            c.closed_at = Some(now);
            Ok(())
        })
    }

    /// Reopens a decided or closed claim for review again, with the reason: its decision is
    /// cleared (its step keeps it).
    pub fn reopen_claim(&self, tx: &mut WriteTxn<'_>, id: ClaimId, version: u64, reason: &str) -> Result<Claim> {
        let reason = required("note", reason, "the reason for reopening")?;
        self.claim_step(tx, id, version, ClaimAction::Reopen, &reason, |c| {
            if c.status.is_open() {
                return Err(claim_error(
                    "status",
                    format!("claim {} is {}: only a decided or closed claim is reopened", c.id, c.status.name()),
                ));
            }
            c.status = ClaimStatus::UnderReview;
            c.decision = None;
            c.settled = None;
            c.reply.clear();
            c.decided_at = None;
            c.closed_at = None;
            Ok(())
        })
    }

    /// One step of a claim: `change` makes it on the current claim, the guards are asked,
    /// the claim is written with the step appended and the reactions' actions applied — all
    /// or nothing.
    fn claim_step(
        &self,
        tx: &mut WriteTxn<'_>,
        id: ClaimId,
        version: u64,
        action: ClaimAction,
        note: &str,
        change: impl FnOnce(&mut Claim) -> Result<()>,
    ) -> Result<Claim> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let before: Claim = tx.load(id)?;
            if before.version != version {
                return Err(Error::Conflict {
                    kind: EntityKind::Claim,
                    id: id.raw(),
                    given: version,
                    stored: before.version,
                });
            }
            let mut after = before.clone();
            change(&mut after)?;
            let note = Some(note.trim().to_string()).filter(|n| !n.is_empty());
            let step = ClaimStep {
                step: before.steps.len() as u32,
                at: cx.now,
                actor: tx.actor(),
                action,
                from: Some(before.status),
                to: after.status,
                decision: after.decision.filter(|_| action == ClaimAction::Decide),
                settled: after.settled.filter(|_| action == ClaimAction::Decide),
                note: note.clone(),
                until: after.postponed_until.filter(|_| action == ClaimAction::Postpone),
            };
            after.steps.push(step);
            tx.check(&mut after, Some(&before))?;
            let transition = ClaimTransition { action, from: before.status, to: after.status, note };
            if cx.hooks.any(HookPoint::ClaimBeforeTransition, None) {
                let mut input = cx.input(
                    &*tx,
                    HookPoint::ClaimBeforeTransition,
                    None,
                    EntityKind::Claim,
                    Some(Subject::Claim(&before)),
                    Some(Subject::Claim(&after)),
                    None,
                );
                input.claim_step = Some(&transition);
                cx.guard(&input)?;
            }
            let claim = tx.as_engine(|tx| tx.update(after))?;
            if cx.hooks.any(HookPoint::ClaimAfterTransition, None) {
                let mut input = cx.input(
                    &*tx,
                    HookPoint::ClaimAfterTransition,
                    None,
                    EntityKind::Claim,
                    Some(Subject::Claim(&before)),
                    Some(Subject::Claim(&claim)),
                    None,
                );
                input.claim_step = Some(&transition);
                let actions = cx.react_on(&input)?;
                cx.deeper().apply_to_claim(tx, &claim, actions)?;
            }
            Ok(claim)
        })
    }
}

impl Cx<'_> {
    /// Applies a claim reaction's actions: tasks on the claim (for its responsible person
    /// unless one is named) and notes on its client (and its deal).
    fn apply_to_claim(&self, tx: &mut WriteTxn<'_>, claim: &Claim, actions: Vec<Action>) -> Result<()> {
        let point = HookPoint::ClaimAfterTransition;
        let refuse = |m: String| Error::NotAllowed(format!("{point}: claim {}: {m}", claim.id));
        for action in actions {
            match action {
                Action::CreateTask { title, description, executor, due_in_minutes, required } => {
                    if required {
                        return Err(refuse(
                            "create_task's required holds a deal's stage; a claim's task is not required".into(),
                        ));
                    }
                    let mut task = Task::new(title, claim.responsible);
                    task.description = description;
                    if let Some(login) = executor {
                        task.executor = self.executor(tx, &login).map_err(refuse)?;
                    }
                    task.claim = Some(claim.id);
                    task.due = due_in_minutes.map(|m| self.due_in(m)).transpose().map_err(refuse)?;
                    self.create(tx, task)?;
                }
                Action::AddNote { subject, body } => {
                    let mut note = Interaction::new(InteractionKind::Note, self.now, claim.partner, subject);
                    note.body = body;
                    note.deal = claim.deal;
                    self.create(tx, note)?;
                }
                Action::SetField { field, .. } => {
                    return Err(refuse(format!(
                        "set_field ({field}) sets a deal's field; a claim changes only through its steps"
                    )))
                }
                Action::PutOnHold { .. } => {
                    return Err(refuse("put_on_hold holds a deal; a claim is postponed instead".into()))
                }
            }
        }
        Ok(())
    }
}
