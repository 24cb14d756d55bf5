//! The calibration report: a backtest of the win-probability models. The built-in model is
//! fitted from the deals closed by the cutoff (`as_of`), the deals open at the cutoff are
//! scored as they stood then (their stage replayed from the history) — by both built-in
//! methods, by the kind's base rate, and by every bound `deal.score` handler — and the
//! scores are compared with how the deals ended: Brier score, log loss and a reliability
//! table per model, side by side.

use serde_json::Value;

use super::model::{replay, Attributes, Directory, Facts, Model, HANDLER};
use super::scope::{dec, percent};
use super::win_probability::fdec;
use super::{column, end_of, Filter, Rows};
use crate::config::ScoringMethod;
use crate::hooks::{Answer, HookInput, HookPoint, Hooks, Subject, View};
use crate::model::{DealStatus, EntityKind};
use crate::report::ColumnType;
use crate::time::Timestamp;

pub(super) const ABOUT: &str = "a backtest: fitted from the deals closed by as_of (required), the deals open then scored as they stood and compared with how they ended (by to, default now): Brier score, log loss and a reliability table for the kind's base rate, both built-in methods and each bound deal.score handler";

/// Probabilities are clipped to [EPS, 1 - EPS] for the log loss.
pub const EPS: f64 = 0.001;

/// The reliability table's bins: ten, each ten percentage points wide.
const BINS: usize = 10;

/// One model's scores against the outcomes.
#[derive(Default)]
struct Tally {
    deals: u64,
    /// Deals the model gave no score.
    unscored: u64,
    won: u64,
    predicted: f64,
    brier: f64,
    log_loss: f64,
    /// Per bin: deals, the sum of their probabilities, and the won among them.
    bins: [(u64, f64, u64); BINS],
}

impl Tally {
    fn add(&mut self, p: f64, won: bool) {
        let y = if won { 1.0 } else { 0.0 };
        self.deals += 1;
        self.won += u64::from(won);
        self.predicted += p;
        self.brier += (p - y) * (p - y);
        let q = p.clamp(EPS, 1.0 - EPS);
        self.log_loss -= y * q.ln() + (1.0 - y) * (1.0 - q).ln();
        let bin = ((p * BINS as f64).floor() as usize).min(BINS - 1);
        self.bins[bin].0 += 1;
        self.bins[bin].1 += p;
        self.bins[bin].2 += u64::from(won);
    }
}

pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    run_with(view, filter, None)
}

/// The report, with the handlers bound at `deal.score` in `hooks` scored beside the
/// built-in methods.
pub(super) fn run_with(view: &dyn View, filter: &Filter, hooks: Option<&Hooks>) -> Result<Rows, String> {
    let Some(as_of) = filter.as_of else {
        return Err("parameter as_of: the calibration report needs the cutoff day (as_of=YYYY-MM-DD)".into());
    };
    let cutoff = end_of(as_of);
    let outcome_at = match filter.to {
        Some(to) if to <= as_of => {
            return Err(format!("parameter to: the outcomes are read after the cutoff ({as_of}), not on {to}"))
        }
        Some(to) => end_of(to),
        None => Timestamp(i64::MAX),
    };
    let settings = &view.settings().win_probability;
    let kind_ok = |k: &str| filter.kind.as_deref().is_none_or(|f| f == k);
    let start = filter.from.map(Timestamp::start_of);
    let model = Model::fit(view, settings, cutoff, cutoff, &|d, at| kind_ok(&d.kind) && start.is_none_or(|s| at >= s))?;
    let scope = filter.deals(view)?;
    let names = Directory::read(view, super::model::needs_partners(settings))?;
    let mut tallies: Vec<(String, Tally)> =
        ["base_rate", "stages", "bayes"].iter().map(|n| (n.to_string(), Tally::default())).collect();
    let point = HookPoint::DealScore;
    let none = Attributes::default();
    super::scope::each_deal_with_history(view, &|d| scope.admits(d), &mut |deal, steps| {
        let Some(then) = replay(steps, cutoff) else { return Ok(()) };
        if !matches!(then.status, DealStatus::InProgress | DealStatus::OnHold) {
            return Ok(());
        }
        let Some(end) = replay(steps, outcome_at) else { return Ok(()) };
        let won = match end.status {
            DealStatus::Won => true,
            DealStatus::Lost => false,
            _ => return Ok(()),
        };
        let stage = then.stage;
        let attrs = model.attributes(&Facts::of_row(deal, model.fields())?, &names);
        let base = model.score(ScoringMethod::Stages, &deal.kind, None, &none);
        tallies[0].1.add(base.probability / 100.0, won);
        tallies[1].1.add(model.score(ScoringMethod::Stages, &deal.kind, stage, &attrs).probability / 100.0, won);
        tallies[2].1.add(model.score(ScoringMethod::Bayes, &deal.kind, stage, &attrs).probability / 100.0, won);
        let Some(hooks) = hooks.filter(|h| h.any(point, Some(&deal.kind))) else { return Ok(()) };
        // A handler reads the deal's whole record, as it stood at the cutoff.
        let Some(mut as_then) = view.deal(deal.id).map_err(|e| e.to_string())? else { return Ok(()) };
        as_then.stage = then.stage.map(str::to_string);
        as_then.status = then.status;
        as_then.closed_at = None;
        as_then.loss_reason = None;
        as_then.competitor = None;
        as_then.score = None;
        let input = HookInput {
            hook: point,
            process_kind: Some(&deal.kind),
            entity: EntityKind::Deal,
            actor: None,
            before: None,
            after: Some(Subject::Deal(&as_then)),
            transition: None,
            task: None,
            depth: 0,
            now: cutoff,
            view,
            loyalty: None,
            strategy: None,
            claim_step: None,
        };
        for asked in hooks.ask(&input) {
            let (name, answer) = asked.map_err(|e| e.to_string())?;
            if name == HANDLER {
                continue;
            }
            let at = match tallies.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    tallies.push((name.to_string(), Tally::default()));
                    tallies.len() - 1
                }
            };
            match answer {
                Answer::Score(Some(s)) => tallies[at].1.add(s.probability / 100.0, won),
                _ => tallies[at].1.unscored += 1,
            }
        }
        Ok(())
    })?;

    let columns = vec![
        column("model", ColumnType::Text),
        column("bin", ColumnType::Text),
        column("deals", ColumnType::Int),
        column("unscored", ColumnType::Int),
        column("mean_predicted_pct", ColumnType::Decimal),
        column("observed_win_pct", ColumnType::Decimal),
        column("brier", ColumnType::Decimal),
        column("log_loss", ColumnType::Decimal),
    ];
    let mut rows = Vec::new();
    let mean = |sum: f64, n: u64| if n == 0 { Value::Null } else { fdec(sum * 100.0 / n as f64, 1) };
    let per_deal = |sum: f64, n: u64| if n == 0 { Value::Null } else { fdec(sum / n as f64, 4) };
    for (name, t) in &tallies {
        rows.push(vec![
            Value::from(name.as_str()),
            Value::from("all"),
            Value::from(t.deals),
            Value::from(t.unscored),
            mean(t.predicted, t.deals),
            dec(percent(t.won, t.deals)),
            per_deal(t.brier, t.deals),
            per_deal(t.log_loss, t.deals),
        ]);
        for (i, (n, sum, won)) in t.bins.iter().enumerate() {
            rows.push(vec![
                Value::from(name.as_str()),
                Value::from(format!("{}-{}%", i * 10, i * 10 + 10)),
                Value::from(*n),
                Value::Null,
                mean(*sum, *n),
                dec(percent(*won, *n)),
                Value::Null,
                Value::Null,
            ]);
        }
    }
    Ok((columns, rows))
}
