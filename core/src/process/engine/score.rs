//! `deal.score`: after an operation has changed a deal, the engine asks the bound scoring
//! model for the deal's win probability and keeps the answer on the deal, in the same
//! transaction; `Engine::rescore` asks again for many deals at once.

use super::{Cx, Engine};
use crate::hooks::{Answer, HookPoint, Subject};
use crate::id::DealId;
use crate::model::{Deal, DealScore, DealStatus, EntityKind};
use crate::progress::{Meter, Progress};
use crate::store::{Reader, Store, WriteTxn};
use crate::Result;

/// What a rescoring did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rescored {
    /// Deals asked about.
    pub deals: u64,
    /// Deals whose score changed (and was written).
    pub changed: u64,
    /// Deals left with no score (every handler answered null).
    pub unscored: u64,
    /// Deals whose probability is set by hand: their score is kept beside it.
    pub manual: u64,
}

impl Engine {
    /// Whether a `deal.score` handler is bound for any process kind.
    pub fn scores(&self) -> bool {
        self.hooks().stats().iter().any(|s| s.point == HookPoint::DealScore)
    }

    /// Asks `deal.score` about deal `id` as it is stored and keeps the answer: the deal as
    /// stored afterwards (a new version only when the score changed).
    pub fn score(&self, tx: &mut WriteTxn<'_>, id: DealId) -> Result<Deal> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let deal: Deal = tx.load(id)?;
            cx.score(tx, deal)
        })
    }

    /// Scores the open deals (in progress or on hold) again, or every deal with `all`, in
    /// one transaction of `actor`: a handler's fault stops it and nothing is written.
    /// Nothing is asked or written when no `deal.score` handler is bound.
    pub fn rescore(
        &self,
        store: &Store,
        actor: Option<crate::id::UserId>,
        all: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Rescored> {
        let mut done = Rescored::default();
        if !self.scores() {
            return Ok(done);
        }
        store.transact(actor, |tx| {
            let mut ids = Vec::new();
            tx.for_each::<Deal>(|d| {
                if all || !d.status.is_closed() {
                    ids.push((d.id, d.score.clone()));
                }
                true
            })?;
            let mut meter = Meter::start(progress, "score", ids.len() as u64);
            for (id, before) in ids {
                let deal = self.score(tx, id)?;
                done.deals += 1;
                done.changed += u64::from(deal.score != before);
                done.unscored += u64::from(deal.score.is_none());
                done.manual += u64::from(deal.probability_manual);
                meter.add(1);
            }
            meter.finish();
            Ok(())
        })?;
        Ok(done)
    }
}

impl Cx<'_> {
    /// Asks the `deal.score` handlers bound for the deal's kind, in order; the first score
    /// wins. A changed score is written as the engine's own change: the deal's probability
    /// follows it unless the probability is set by hand or the deal is closed. A fault
    /// (a failure or a wrong answer) fails the operation.
    pub(super) fn score(&self, tx: &mut WriteTxn<'_>, mut deal: Deal) -> Result<Deal> {
        let point = HookPoint::DealScore;
        if !self.hooks.any(point, Some(&deal.kind)) {
            return Ok(deal);
        }
        let kind = deal.kind.clone();
        let mut found = None;
        {
            let input = self.input(&*tx, point, Some(&kind), EntityKind::Deal, None, Some(Subject::Deal(&deal)), None);
            for asked in self.hooks.ask(&input) {
                if let (name, Answer::Score(Some(s))) = asked? {
                    found = Some(DealScore {
                        probability: s.probability,
                        factors: s.factors,
                        model: s.model,
                        handler: name.to_string(),
                        at: self.now,
                    });
                    break;
                }
            }
        }
        let follows = !deal.probability_manual && deal.status != DealStatus::Won && deal.status != DealStatus::Lost;
        let same = match (&deal.score, &found) {
            // The same score, and the probability (a stage may have set another) follows it.
            (Some(a), Some(b)) => a.same_result(b) && (!follows || deal.probability == Some(b.percent())),
            (None, None) => true,
            _ => false,
        };
        if same {
            return Ok(deal);
        }
        if let Some(s) = &found {
            if follows {
                deal.probability = Some(s.percent());
            }
        }
        deal.score = found;
        tx.as_engine(|tx| tx.update(deal))
    }
}
