//! The win-probability report: what the built-in model has learnt — per process kind and
//! stage, the closed deals that reached the stage, how many were won and the win rate onward —
//! and the open deals in scope with the model's probability, the weighted amount and the
//! factors that moved it most, the largest weighted amounts first.

use rust_decimal::Decimal;
use serde_json::Value;

use super::model::{replay, top_factors, Directory, Facts, Model};
use super::scope::{dec, percent};
use super::{column, Filter, Rows};
use crate::hooks::View;
use crate::model::DealStatus;
use crate::report::ColumnType;

pub(super) const ABOUT: &str = "the built-in model ([analytics.win_probability]): per kind and stage the closed deals that reached it, won, the win rate onward and the model's probability; then the open deals with their probability, weighted amount and top factors (the 100 largest weighted amounts)";

/// The most open deals listed.
pub const DEAL_LIMIT: usize = 100;

/// How many factors a deal row shows.
const TOP: usize = 3;

/// `x` rounded to `dp` decimals, as a decimal cell.
pub(super) fn fdec(x: f64, dp: u32) -> Value {
    dec(Decimal::try_from(x).ok().map(|d| d.round_dp(dp)))
}

pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let settings = &view.settings().win_probability;
    let instant = filter.instant(view.now());
    let kind_ok = |k: &str| filter.kind.as_deref().is_none_or(|f| f == k);
    let scope = filter.deals(view)?;
    // Partners' names are read whatever the fields: a factor shows the partner's name.
    let names = Directory::read(view, true)?;
    // The open deals in scope are gathered in the fit's pass and scored after it.
    let mut open: Vec<Open> = Vec::new();
    let fields = super::model::fitted_fields(settings);
    let model = Model::fit_visiting(
        view,
        settings,
        &names,
        instant,
        instant,
        &|d, at| kind_ok(&d.kind) && filter.in_period(at),
        &mut |deal, steps| {
            if !scope.admits(deal) {
                return Ok(());
            }
            let Some(r) = replay(steps, instant) else { return Ok(()) };
            if !matches!(r.status, DealStatus::InProgress | DealStatus::OnHold) {
                return Ok(());
            }
            open.push(Open {
                id: deal.id,
                kind: deal.kind.clone(),
                stage: r.stage.map(str::to_string),
                title: deal.title().map_err(|e| e.to_string())?.to_string(),
                manager: deal.manager,
                amount: deal.amount,
                attributes: super::model::attributes(&Facts::of_row(deal, &fields)?, &fields, settings, &names),
            });
            Ok(())
        },
    )?;
    let method = settings.method;

    let columns = vec![
        column("row", ColumnType::Text),
        column("kind", ColumnType::Text),
        column("stage", ColumnType::Text),
        column("deal", ColumnType::Text),
        column("title", ColumnType::Text),
        column("manager", ColumnType::Text),
        column("closed", ColumnType::Int),
        column("won", ColumnType::Int),
        column("win_rate_onward_pct", ColumnType::Decimal),
        column("probability_pct", ColumnType::Decimal),
        column("amount", ColumnType::Decimal),
        column("currency", ColumnType::Text),
        column("weighted_amount", ColumnType::Decimal),
        column("top_factors", ColumnType::Text),
    ];
    let mut rows = Vec::new();
    let empty = super::model::Attributes::default();
    for spec in view.settings().process_kinds.iter().filter(|k| kind_ok(&k.id)) {
        let fit = model.kinds.get(&spec.id).cloned().unwrap_or_default();
        let base = model.score(method, &spec.id, None, &empty);
        rows.push(vec![
            Value::from("kind"),
            Value::from(spec.id.as_str()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::from(fit.total.closed()),
            Value::from(fit.total.won),
            dec(percent(fit.total.won, fit.total.closed())),
            fdec(base.probability, 2),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
        for stage in &spec.stages {
            let c = fit.stages.get(&stage.id).copied().unwrap_or_default();
            let s = model.score(method, &spec.id, Some(&stage.id), &empty);
            rows.push(vec![
                Value::from("stage"),
                Value::from(spec.id.as_str()),
                Value::from(stage.id.as_str()),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::from(c.closed()),
                Value::from(c.won),
                dec(percent(c.won, c.closed())),
                fdec(s.probability, 2),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ]);
        }
    }

    // (weighted amount, row), the largest kept.
    let mut largest: Vec<(Decimal, Vec<Value>)> = Vec::new();
    for deal in open {
        let s = model.score(method, &deal.kind, deal.stage.as_deref(), &deal.attributes);
        let p = Decimal::try_from(s.probability).unwrap_or_default();
        let weighted = (deal.amount.amount * p / Decimal::ONE_HUNDRED).round_dp(2);
        largest.push((
            weighted,
            vec![
                Value::from("deal"),
                Value::from(deal.kind),
                deal.stage.map_or(Value::Null, Value::from),
                Value::from(deal.id.to_string()),
                Value::from(deal.title),
                Value::from(super::model::Names::login(&names, deal.manager).into_owned()),
                Value::Null,
                Value::Null,
                Value::Null,
                fdec(s.probability, 2),
                dec(Some(deal.amount.amount)),
                Value::from(deal.amount.currency.to_string()),
                dec(Some(weighted)),
                Value::from(top_factors(&s.factors, TOP)),
            ],
        ));
        if largest.len() >= 2 * DEAL_LIMIT {
            keep_largest(&mut largest);
        }
    }
    keep_largest(&mut largest);
    rows.extend(largest.into_iter().map(|(_, row)| row));
    Ok((columns, rows))
}

/// An open deal in scope, as the fit's pass saw it: what scoring it and its row need.
struct Open {
    id: crate::id::DealId,
    kind: String,
    stage: Option<String>,
    title: String,
    manager: crate::id::UserId,
    amount: crate::values::Money,
    attributes: super::model::Attributes,
}

/// Sorts by weighted amount, largest first (then by deal id), and keeps [`DEAL_LIMIT`].
fn keep_largest(open: &mut Vec<(Decimal, Vec<Value>)>) {
    open.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1[3].as_str().cmp(&b.1[3].as_str())));
    open.truncate(DEAL_LIMIT);
}
