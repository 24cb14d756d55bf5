//! The sales funnel: per stage of a process kind, the deals that reached it in the period and
//! their amount, the conversion from stage to stage, the deals in it now (or as of a past
//! day, replayed from the stage history) with the weighted pipeline and expected wins — and
//! its SVG chart.
//!
//! Without a period, a past day or a segment, the funnel adds up the funnel totals the store
//! keeps at write time, whatever the number of deals: for every manager's deals the rollup
//! lines ([`View::funnel_rollup`], a few per kind and stage), for a manager's or a
//! department's the lines of those managers ([`View::funnel_totals`]). Otherwise, one pass
//! over the stage history, joined deal by deal with a page of deal records at a time (both
//! come in id order): what is held per deal is the deal being read and one flag per stage,
//! so memory does not grow with the number of deals. Both give the same table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::{column, Filter, Rows};
use crate::hooks::View;
use crate::model::{DealStatus, How, StageChange};
use crate::process::spec::ProcessKindSpec;
use crate::report::{ColumnType, Table};
use crate::store::{DealRow, FunnelLine, FunnelTotals};
use crate::time::Timestamp;
use crate::values::{Currency, Money};

/// What the funnel shows.
pub(super) const ABOUT: &str = "per stage of a process kind: deals that reached it in the period, their amount, \
     conversion from the previous stage and from the first, deals in it now (or as of a day), the weighted \
     pipeline and expected wins; then the deals won in the period, and the kind's total";

/// Sums per currency.
type Amounts = BTreeMap<Currency, Decimal>;

/// What one stage (or the won line, or the total) adds up to.
#[derive(Default)]
struct Tally {
    reached: u64,
    reached_amount: Amounts,
    open: u64,
    open_amount: Amounts,
    weighted: Amounts,
    expected_wins: Decimal,
}

/// One process kind's funnel being added up.
struct KindTally<'k> {
    spec: &'k ProcessKindSpec,
    stages: HashMap<&'k str, usize>,
    tallies: Vec<Tally>,
    won: Tally,
    total: Tally,
}

/// The deal whose steps are being read: what the report needs of its row, and what its
/// steps said so far.
struct Current {
    amount: Money,
    /// Its stage now (position in the route) and status now.
    stage_now: Option<usize>,
    status: DealStatus,
    probability: Option<u8>,
    probability_manual: bool,
    created_at: Timestamp,
    kind: usize,
    /// The stages it entered in the period, by position in the route.
    reached: Vec<bool>,
    won: bool,
    /// Its stage (position) and status after the last step up to the instant; `None`
    /// before its first step (it did not exist yet).
    state: Option<(Option<usize>, DealStatus)>,
    steps: bool,
}

/// The funnel being computed.
struct Funnel<'v, 'k> {
    view: &'v dyn View,
    scope: super::DealScope,
    kinds: Vec<KindTally<'k>>,
    kind_index: HashMap<&'k str, usize>,
    /// The instant of `as_of`, when given: later steps are not seen.
    instant: Option<Timestamp>,
    /// The period's first and last instants, when bounded.
    period: (Option<Timestamp>, Option<Timestamp>),
    currencies: BTreeSet<Currency>,
}

/// The `funnel` report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let settings = view.settings();
    let kinds: Vec<&ProcessKindSpec> = match &filter.kind {
        Some(k) => {
            let spec = settings
                .process_kinds
                .iter()
                .find(|p| p.id == *k)
                .ok_or_else(|| format!("parameter kind: no kind {k}"))?;
            if spec.stages.is_empty() {
                return Err(format!(
                    "parameter kind: process kind \"{k}\" is {}: its deals have no stages to make a funnel of",
                    spec.mode.name()
                ));
            }
            vec![spec]
        }
        None => settings.process_kinds.iter().filter(|k| !k.stages.is_empty()).collect(),
    };
    let mut f = Funnel {
        view,
        scope: filter.deals(view)?,
        kind_index: kinds.iter().enumerate().map(|(i, k)| (k.id.as_str(), i)).collect(),
        kinds: kinds
            .into_iter()
            .map(|spec| KindTally {
                spec,
                stages: spec.stages.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect(),
                tallies: spec.stages.iter().map(|_| Tally::default()).collect(),
                won: Tally::default(),
                total: Tally::default(),
            })
            .collect(),
        instant: filter.as_of.map(|_| filter.instant(Timestamp(0))),
        period: filter.period(),
        currencies: BTreeSet::new(),
    };
    if filter.from.is_none() && filter.to.is_none() && filter.as_of.is_none() && f.add_totals(filter)? {
        return Ok(f.rows());
    }
    view.scan_deals(&mut |d| {
        let Some(mut cur) = f.start(d) else { return true };
        if d.steps.is_empty() {
            // A deal with no steps at all (only a damaged store has one).
            f.without_steps(cur);
            return true;
        }
        for c in &d.steps {
            f.step(&mut cur, c);
        }
        f.finish(cur);
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(f.rows())
}

impl<'k> Funnel<'_, 'k> {
    /// Adds up the funnel totals kept at write time; `false` (and nothing added) when they
    /// cannot give the funnel: the scope takes a segment, or a line names a stage the kind
    /// no longer has (the scan leaves such steps out).
    fn add_totals(&mut self, filter: &Filter) -> Result<bool, String> {
        if filter.segment.is_some() {
            return Ok(false);
        }
        let kind = filter.kind.as_deref();
        // Every manager's deals: the rollup lines, a few per stage; else the lines of the
        // managers the scope takes (the view has no rollup when it sees some managers only).
        let rollup = if self.scope.takes_every_manager() {
            self.view.funnel_rollup(kind).map_err(|e| e.to_string())?
        } else {
            None
        };
        let per_manager;
        let mut lines: Vec<(&str, &FunnelLine, &FunnelTotals)> = Vec::new();
        if let Some(rollup) = &rollup {
            lines.extend(
                rollup
                    .iter()
                    .filter(|(key, _)| self.scope.admits_kind(&key.kind))
                    .map(|(key, t)| (key.kind.as_str(), &key.line, t)),
            );
        } else {
            per_manager = self.view.funnel_totals(kind).map_err(|e| e.to_string())?;
            for (key, t) in &per_manager {
                match self.scope.admits_line(&key.kind, key.manager) {
                    None => return Ok(false),
                    Some(false) => continue,
                    Some(true) => lines.push((&key.kind, &key.line, t)),
                }
            }
        }
        let mut currencies = BTreeSet::new();
        let mut kinds: Vec<(usize, &FunnelLine, &FunnelTotals)> = Vec::new();
        for (kind, line, t) in lines {
            let Some(&k) = self.kind_index.get(kind) else { continue };
            if let FunnelLine::Stage(s) = line {
                if !self.kinds[k].stages.contains_key(s.as_str()) {
                    return Ok(false);
                }
            }
            kinds.push((k, line, t));
        }
        for (k, line, t) in kinds {
            let kind = &mut self.kinds[k];
            let add = |into: &mut Amounts, from: &Amounts| {
                for (c, a) in from {
                    *into.entry(*c).or_default() += *a;
                }
            };
            match line {
                FunnelLine::Deals => currencies.extend(t.currencies.iter().filter(|(_, n)| **n > 0).map(|(c, _)| *c)),
                FunnelLine::Reached | FunnelLine::Won => {
                    let tally = if *line == FunnelLine::Won { &mut kind.won } else { &mut kind.total };
                    tally.reached += t.deals as u64;
                    add(&mut tally.reached_amount, &t.amount);
                }
                FunnelLine::Stage(s) => {
                    let i = kind.stages[s.as_str()];
                    let tally = &mut kind.tallies[i];
                    tally.reached += t.deals as u64;
                    add(&mut tally.reached_amount, &t.amount);
                    for tally in [&mut kind.tallies[i], &mut kind.total] {
                        tally.open += t.open as u64;
                        add(&mut tally.open_amount, &t.open_amount);
                        add(&mut tally.weighted, &t.weighted);
                        tally.expected_wins += t.expected_wins;
                    }
                }
            }
        }
        self.currencies = currencies;
        Ok(true)
    }

    /// Reads one step of the deal's history.
    fn step(&self, cur: &mut Current, c: &StageChange) {
        if self.instant.is_some_and(|i| c.at > i) {
            return;
        }
        cur.steps = true;
        let kind = &self.kinds[cur.kind];
        let stage = c.to_stage.as_deref().and_then(|s| kind.stages.get(s).copied());
        cur.state = Some((stage, c.to_status));
        let in_period = self.in_period(c.at);
        let enters = matches!(c.how, How::Create | How::Reopen) || c.from_stage != c.to_stage;
        if let (true, Some(i)) = (enters, stage) {
            if in_period {
                cur.reached[i] = true;
            }
        }
        if c.how == How::Won && in_period {
            cur.won = true;
        }
    }

    fn in_period(&self, at: Timestamp) -> bool {
        let (start, end) = self.period;
        start.is_none_or(|s| at >= s) && end.is_none_or(|e| at <= e)
    }

    /// The state of a deal the report counts, before its steps; `None` for one it does not.
    fn start(&self, deal: &DealRow) -> Option<Current> {
        let kind = *self.kind_index.get(deal.kind.as_str())?;
        if !self.scope.admits(deal) {
            return None;
        }
        let spec = &self.kinds[kind];
        Some(Current {
            amount: deal.amount,
            stage_now: deal.stage.as_deref().and_then(|s| spec.stages.get(s).copied()),
            status: deal.status,
            probability: deal.probability,
            probability_manual: deal.probability_manual,
            created_at: deal.created_at,
            kind,
            reached: vec![false; spec.tallies.len()],
            won: false,
            state: None,
            steps: false,
        })
    }

    /// A deal without history: created, as the record says, in its stage and status.
    fn without_steps(&mut self, mut cur: Current) {
        if self.instant.is_none_or(|i| cur.created_at <= i) {
            cur.state = Some((cur.stage_now, cur.status));
            if let Some(i) = cur.stage_now.filter(|_| self.in_period(cur.created_at)) {
                cur.reached[i] = true;
            }
            cur.steps = true;
        }
        self.finish(cur);
    }

    /// Adds a deal whose steps are all read.
    fn finish(&mut self, cur: Current) {
        if !cur.steps {
            return; // created after the instant
        }
        let d = &cur;
        let money = d.amount.currency;
        self.currencies.insert(money);
        let kind = &mut self.kinds[cur.kind];
        let add = |a: &mut Amounts| *a.entry(money).or_default() += d.amount.amount;
        for (i, _) in cur.reached.iter().enumerate().filter(|(_, r)| **r) {
            kind.tallies[i].reached += 1;
            add(&mut kind.tallies[i].reached_amount);
        }
        if cur.reached.iter().any(|r| *r) {
            kind.total.reached += 1;
            add(&mut kind.total.reached_amount);
        }
        if cur.won {
            kind.won.reached += 1;
            add(&mut kind.won.reached_amount);
        }
        // Where it stands at the instant: the replayed state for a past day, else the record.
        let (stage, status) = match self.instant {
            Some(_) => cur.state.unwrap_or((None, d.status)),
            None => (d.stage_now, d.status),
        };
        if let (Some(i), DealStatus::InProgress | DealStatus::OnHold) = (stage, status) {
            // The history keeps no probabilities: as of a past day, a deal that stands where
            // it stood then, or whose probability was set by hand and is still open, has the
            // one it has now; any other had its stage's default then (closing sets 0 or 100).
            let now = d.stage_now;
            let probability = if self.instant.is_none()
                || (now == stage && d.status == status)
                || (d.probability_manual && !d.status.is_closed())
            {
                d.probability
            } else {
                kind.spec.stages[i].probability
            };
            for t in [&mut kind.tallies[i], &mut kind.total] {
                t.open += 1;
                add(&mut t.open_amount);
                if let Some(p) = probability {
                    let share = Decimal::from(p) / Decimal::from(100);
                    *t.weighted.entry(money).or_default() += d.amount.amount * share;
                    t.expected_wins += share;
                }
            }
        }
    }

    /// The table: per kind, its stages in route order, the won line and the total.
    fn rows(self) -> Rows {
        let default = self.view.settings().default_currency;
        let mut currencies = vec![default];
        currencies.extend(self.currencies.iter().filter(|c| **c != default));
        let mut columns = vec![
            column("kind", ColumnType::Text),
            column("row", ColumnType::Text),
            column("stage", ColumnType::Text),
            column("stage_name", ColumnType::Text),
            column("reached", ColumnType::Int),
            column("conversion_from_previous", ColumnType::Decimal),
            column("conversion_from_first", ColumnType::Decimal),
            column("open_now", ColumnType::Int),
            column("expected_wins", ColumnType::Decimal),
        ];
        for c in &currencies {
            for what in ["reached_amount", "open_amount", "weighted"] {
                columns.push(column(&format!("{what}_{c}"), ColumnType::Decimal));
            }
        }
        let mut rows = Vec::new();
        for k in &self.kinds {
            let first = k.tallies.first().map_or(0, |t| t.reached);
            let mut previous: Option<u64> = None;
            let mut line = |row: &str, stage: Option<&str>, name: &str, t: &Tally, prev: Option<u64>, open: bool| {
                let mut r = vec![
                    Value::from(k.spec.id.clone()),
                    Value::from(row),
                    stage.map_or(Value::Null, Value::from),
                    Value::from(name),
                    Value::from(t.reached),
                    prev.and_then(|p| percent(t.reached, p)).map_or(Value::Null, Value::from),
                    if row == "total" { None } else { percent(t.reached, first) }.map_or(Value::Null, Value::from),
                    if open { Value::from(t.open) } else { Value::Null },
                    if open { Value::from(fixed(t.expected_wins)) } else { Value::Null },
                ];
                for c in &currencies {
                    let sum = |a: &Amounts| fixed(a.get(c).copied().unwrap_or_default());
                    r.push(Value::from(sum(&t.reached_amount)));
                    r.push(if open { Value::from(sum(&t.open_amount)) } else { Value::Null });
                    r.push(if open { Value::from(sum(&t.weighted)) } else { Value::Null });
                }
                rows.push(r);
            };
            for (s, t) in k.spec.stages.iter().zip(&k.tallies) {
                line("stage", Some(&s.id), &s.name, t, previous, true);
                previous = Some(t.reached);
            }
            line("won", None, "won", &k.won, previous, false);
            line("total", None, "total", &k.total, None, true);
        }
        (columns, rows)
    }
}

/// `part` as a percentage of `whole` with two decimals; `None` when `whole` is zero.
fn percent(part: u64, whole: u64) -> Option<String> {
    (whole > 0).then(|| fixed(Decimal::from(part) * Decimal::from(100) / Decimal::from(whole)))
}

/// `d` rounded half away from zero to two decimals, written with both.
fn fixed(d: Decimal) -> String {
    let mut d = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(2);
    d.to_string()
}

/// The funnel's table as an SVG chart: per kind, a centred bar per stage and for the won
/// deals, as wide as the deals that reached it, labelled with the count and the conversion
/// from the previous line.
pub(super) fn svg(table: &Table) -> Result<String, String> {
    let at = |name: &str| {
        table.columns().iter().position(|c| c.name == name).ok_or_else(|| format!("the table has no column {name}"))
    };
    let (kind, row, name, reached, conv) =
        (at("kind")?, at("row")?, at("stage_name")?, at("reached")?, at("conversion_from_previous")?);
    // The kinds in table order, each with its bars.
    let mut blocks: Vec<(String, Vec<Bar>)> = Vec::new();
    for r in table.rows() {
        if r[row] == "total" {
            continue;
        }
        let k = r[kind].as_str().unwrap_or_default().to_string();
        if blocks.last().is_none_or(|(last, _)| *last != k) {
            blocks.push((k, Vec::new()));
        }
        let bar = (
            r[name].as_str().unwrap_or_default().to_string(),
            r[reached].as_u64().unwrap_or(0),
            r[conv].as_str().map(str::to_string),
        );
        blocks.last_mut().expect("pushed").1.push(bar);
    }
    const WIDTH: u32 = 720;
    const BAR: u32 = 28;
    const GAP: u32 = 8;
    const TITLE: u32 = 36;
    const LABELS: u32 = 220;
    let height: u32 = 16 + blocks.iter().map(|(_, bars)| TITLE + bars.len() as u32 * (BAR + GAP) + 16).sum::<u32>();
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<title>Sales funnel</title>"#);
    let span = WIDTH - LABELS - 16;
    let mut y = 16;
    for (k, bars) in &blocks {
        let _ = writeln!(o, r#"<text x="8" y="{}" font-size="16" font-weight="bold">{}</text>"#, y + 20, escape(k));
        y += TITLE;
        let most = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        for (label, count, conversion) in bars {
            let w = ((*count as f64 / most as f64) * span as f64).round().max(1.0) as u32;
            let x = LABELS + (span - w) / 2;
            let fill = if label == "won" { "#2e8b57" } else { "#4682b4" };
            let _ = writeln!(o, r#"<rect x="{x}" y="{y}" width="{w}" height="{BAR}" fill="{fill}"/>"#);
            let _ = writeln!(o, r#"<text x="8" y="{}">{}</text>"#, y + BAR / 2 + 5, escape(label));
            let text = match conversion {
                Some(c) => format!("{count} ({c}%)"),
                None => count.to_string(),
            };
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}" text-anchor="middle" fill="{}">{}</text>"#,
                LABELS + span / 2,
                y + BAR / 2 + 5,
                if w > 90 { "#ffffff" } else { "#000000" },
                escape(&text)
            );
            y += BAR + GAP;
        }
        y += 16;
    }
    o.push_str("</svg>\n");
    Ok(o)
}

/// A bar of the chart: its label, the deals that reached it, the conversion from the bar
/// before.
type Bar = (String, u64, Option<String>);

/// `s` with the characters XML gives a meaning escaped.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
