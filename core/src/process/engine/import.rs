//! Deals brought in from another system with their past stage history: each step checked
//! as the engine would have allowed it, the history written with its original times.

use super::lifecycle::is_final;
use super::{deal_field, Cx, ImportStep};
use crate::id::TypedId;
use crate::model::{text, Deal, DealStatus, EntityKind, How, StageChange};
use crate::process::spec::Mode;
use crate::store::{Reader, WriteTxn};
use crate::Result;

impl Cx<'_> {
    pub(super) fn import_deal(&self, tx: &mut WriteTxn<'_>, mut deal: Deal, steps: Vec<ImportStep>) -> Result<Deal> {
        let kind = self.kind(&deal)?;
        let now = self.now(tx);
        let bad = |i: usize, m: String| deal_field("history", format!("step {i}: {m}"));
        let Some(first) = steps.first() else {
            return Err(deal_field("history", "an imported deal needs at least its creation step"));
        };
        if first.how != How::Create {
            return Err(bad(0, format!("the first step is the creation, not {}", first.how.name())));
        }
        // Build the history as the engine would have written it, checking each step.
        let mut changes: Vec<StageChange> = Vec::with_capacity(steps.len());
        let mut entered = first.at;
        let mut closed_at = None;
        for (i, s) in steps.iter().enumerate() {
            if s.at > now {
                return Err(bad(i, format!("{} is in the future", s.at)));
            }
            if s.at.0 < 0 {
                return Err(bad(i, format!("{} is before 1970", s.at)));
            }
            if let Some(note) = &s.note {
                text::check(note, text::NOTE_MAX).map_err(|m| bad(i, format!("note {m}")))?;
            }
            if let Some(actor) = s.actor {
                if !tx.exists(EntityKind::User, actor.raw())? {
                    return Err(bad(i, format!("user {actor} does not exist")));
                }
            }
            if let Some(st) = &s.to_stage {
                if kind.stage(st).is_none() {
                    return Err(bad(i, format!("\"{st}\" is not a stage of process kind \"{}\"", kind.id)));
                }
            } else if !kind.stages.is_empty() {
                return Err(bad(i, format!("a deal of process kind \"{}\" is always in a stage", kind.id)));
            }
            let prev = changes.last();
            if i > 0 && s.how == How::Create {
                return Err(bad(i, "only the first step is the creation".into()));
            }
            if let Some(p) = prev {
                if s.at < p.at {
                    return Err(bad(i, format!("{} is before the previous step ({})", s.at, p.at)));
                }
            } else if s.to_status != DealStatus::InProgress || s.to_stage != kind.stages.first().map(|x| x.id.clone()) {
                return Err(bad(i, "a deal is created in progress in the first stage of its kind".into()));
            }
            let from_stage = prev.and_then(|p| p.to_stage.clone());
            // The step must be one the engine would have allowed.
            if let (Some(from), Some(to)) = (from_stage.as_deref(), s.to_stage.as_deref()) {
                let spec = kind.stage(from).expect("checked on the previous step");
                let forward = kind.position(to) > kind.position(from);
                match s.how {
                    How::Manual | How::Route if from == to => {
                        return Err(bad(i, format!("a {} step must change the stage", s.how.name())))
                    }
                    How::Manual | How::Route if !spec.to.iter().any(|t| t == to) => {
                        return Err(bad(
                            i,
                            format!("stage \"{from}\" may not move to \"{to}\" ({})", spec.to.join(", ")),
                        ))
                    }
                    How::Manual if forward && kind.mode == Mode::Managed => {
                        return Err(bad(
                            i,
                            format!("process kind \"{}\" is managed: forward steps are route steps", kind.id),
                        ))
                    }
                    How::Route if kind.mode != Mode::Managed => {
                        return Err(bad(
                            i,
                            format!("process kind \"{}\" is {}: it has no route", kind.id, kind.mode.name()),
                        ))
                    }
                    How::Won if kind.mode == Mode::Managed && !is_final(kind, from) => {
                        return Err(bad(
                            i,
                            format!("a managed deal is won from the end of its route, not from \"{from}\""),
                        ))
                    }
                    How::Reopen if from != to && kind.mode == Mode::Managed && forward => {
                        return Err(bad(
                            i,
                            format!("a managed deal is reopened where it closed or earlier, not in \"{to}\""),
                        ))
                    }
                    How::Reopen if from != to && kind.mode == Mode::Manual && !spec.to.iter().any(|t| t == to) => {
                        return Err(bad(
                            i,
                            format!(
                                "a deal closed in \"{from}\" is reopened there or where it may move ({}), not in \"{to}\"",
                                spec.to.join(", ")
                            ),
                        ))
                    }
                    _ => {}
                }
            }
            if s.how == How::Lost {
                match s.note.as_deref() {
                    Some(reason) if kind.loss_reasons.iter().any(|r| r == reason) => {}
                    other => {
                        return Err(bad(
                            i,
                            format!(
                                "a lost step notes a loss reason of the kind ({}), not {other:?}",
                                kind.loss_reasons.join(", ")
                            ),
                        ))
                    }
                }
            }
            let leaves = prev.is_some()
                && (matches!(s.how, How::Won | How::Lost) || (from_stage != s.to_stage && s.how != How::Reopen));
            let change = StageChange {
                deal: deal.id,
                step: i as u32,
                at: s.at,
                actor: s.actor,
                how: s.how,
                from_stage,
                to_stage: s.to_stage.clone(),
                from_status: prev.map(|p| p.to_status),
                to_status: s.to_status,
                dwell_ms: leaves.then(|| s.at.0.saturating_sub(entered.0)),
                note: s.note.clone(),
                imported: true,
            };
            if change.from_stage != change.to_stage || s.how == How::Reopen {
                entered = s.at;
            }
            if matches!(s.how, How::Won | How::Lost) {
                closed_at = Some(s.at);
            }
            changes.push(change);
        }
        let last = changes.last().expect("not empty");
        deal.stage_entered_at = Some(entered);
        deal.closed_at = if deal.status.is_closed() { closed_at } else { None };
        if last.to_stage != deal.stage || last.to_status != deal.status {
            return Err(deal_field(
                "history",
                format!(
                    "the steps end in {}/{}, but the deal is in {}/{}",
                    last.to_stage.as_deref().unwrap_or("-"),
                    last.to_status.name(),
                    deal.stage.as_deref().unwrap_or("-"),
                    deal.status.name()
                ),
            ));
        }
        let created_at = first.at;
        deal.history_steps = changes.len() as u32;
        // A probability brought from the other system is someone's estimate there, kept as
        // set by hand on an open deal; a score is computed here, never brought in.
        deal.probability_manual = deal.probability.is_some() && !deal.status.is_closed();
        deal.score = None;
        let created = tx.as_engine(|tx| tx.create_imported(deal, created_at))?;
        for mut c in changes {
            c.deal = created.id;
            tx.append_stage_change(&c)?;
        }
        let history = tx.stage_history(created.id)?;
        crate::process::check_history(&created, &history, &self.settings).map_err(|m| deal_field("history", m))?;
        // A managed deal still running gets the tasks of the stage it is in.
        self.enter_stage(tx, &created, kind)?;
        Ok(created)
    }
}
