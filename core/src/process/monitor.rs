//! Watching running deals against their process: which deals have stayed in a stage longer
//! than its SLA.

use crate::model::{text_prefix, Deal, DealStatus};
use crate::store::{Index, Reader};
use crate::time::Timestamp;
use crate::Result;

/// A deal past its stage's SLA.
#[derive(Clone, Debug, PartialEq)]
pub struct SlaBreach {
    pub deal: Deal,
    /// When the deal entered the stage.
    pub entered_at: Timestamp,
    /// The stage's SLA, in milliseconds.
    pub sla_ms: i64,
    /// How far past the SLA it is at `now`, in milliseconds.
    pub over_ms: i64,
}

/// Deals in progress that have been in their stage longer than its SLA at `now`, the most
/// overdue first, at most `limit`. Deals on hold are left out: the clock of a paused deal
/// is not the manager's. Reads the deals of each stage that has an SLA through the stage
/// index.
pub fn sla_breaches(r: &impl Reader, now: Timestamp, limit: usize) -> Result<Vec<SlaBreach>> {
    let mut out = Vec::new();
    for kind in &r.settings().process_kinds {
        for stage in &kind.stages {
            let Some(sla_ms) = stage.sla_ms else { continue };
            let prefix = text_prefix(&[&kind.id, &stage.id]);
            let mut after = None;
            loop {
                let page: Vec<Deal> = r.find(Index::DealByStage, &prefix, after, 1000)?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.0);
                for deal in page {
                    if deal.status != DealStatus::InProgress {
                        continue;
                    }
                    let entered_at = deal.stage_entered_at.unwrap_or(deal.created_at);
                    let over_ms = now.0 - entered_at.0 - sla_ms;
                    if over_ms > 0 {
                        out.push(SlaBreach { deal, entered_at, sla_ms, over_ms });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| b.over_ms.cmp(&a.over_ms).then(a.deal.id.cmp(&b.deal.id)));
    out.truncate(limit);
    Ok(out)
}
