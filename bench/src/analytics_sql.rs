//! The built-in reports written as SQL for `crmkit-bench analytics`: one entry per report
//! (crmkit's name and parameters, the SQL, the columns that identify a row), the same text
//! for SQLite and DuckDB but for the expressions that turn an instant into a month or a day.
//!
//! The column mapping is in the SQL: a result column is named after the crmkit column it is
//! compared with, and a name ending in `@N` holds an integer in units of 10^-N (amounts in
//! minor units, percentages in tenths), which is how the SQL keeps every number exact. The
//! rounding is crmkit's, written with integer arithmetic: `/` divides integers in both
//! engines (DuckDB is run with `SET integer_division = true`). Columns a report has and its
//! SQL does not name are not compared; each entry says which and why.
//!
//! Dates (documents' dates and due dates, plans' periods, expected closes) are loaded as
//! `YYYY-MM-DD` text, which orders as the dates do.

use chrono::{Datelike as _, Months, NaiveDate};
use crmkit_core::time::Timestamp;
use crmkit_core::values::Currency;

/// Milliseconds in a day.
const DAY: i64 = 86_400_000;

/// The engine a query is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Duckdb,
}

/// What a report's SQL is written against: the engine, the loaded data's currencies, the
/// installation's default currency, and the instant and months the report's `as_of` names.
pub struct Ctx {
    pub engine: Engine,
    pub currencies: Vec<String>,
    pub default_currency: String,
    /// The last millisecond of `as_of` (`i64::MAX` without one).
    pub instant: i64,
    /// The first millisecond of the instant's month and of the month before.
    pub month_start: i64,
    pub previous_month_start: i64,
    /// The day `as_of` names (today without one): the last day the client classifications
    /// look at, and the day by which a document's due date has passed.
    pub day: NaiveDate,
}

impl Ctx {
    /// The context of a report run with `params` (only `as_of` is read).
    pub fn new(
        engine: Engine,
        currencies: Vec<String>,
        default_currency: String,
        as_of: Option<&str>,
    ) -> Result<Ctx, String> {
        let day = match as_of {
            Some(d) => crmkit_core::values::date::parse(d).map_err(|e| format!("as_of: {e}"))?,
            None => chrono::Utc::now().date_naive(),
        };
        let (instant, month_start, previous_month_start) = match as_of {
            Some(day) => {
                let date = |s: &str| crmkit_core::values::date::parse(s).map(|d| Timestamp::start_of(d).0);
                let start = date(day).map_err(|e| format!("as_of: {e}"))?;
                let (y, m): (i32, u32) = (day[..4].parse().unwrap_or(0), day[5..7].parse().unwrap_or(1));
                let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
                let month = date(&format!("{y:04}-{m:02}-01")).map_err(|e| format!("as_of: {e}"))?;
                let previous = date(&format!("{py:04}-{pm:02}-01")).map_err(|e| format!("as_of: {e}"))?;
                (start + DAY - 1, month, previous)
            }
            None => (i64::MAX, i64::MAX, i64::MAX),
        };
        Ok(Ctx { engine, currencies, default_currency, instant, month_start, previous_month_start, day })
    }

    /// `YYYY-MM-DD` of the instant `ms` (milliseconds since the epoch, UTC).
    fn day_of(&self, ms: &str) -> String {
        match self.engine {
            Engine::Sqlite => format!("date(({ms}) / 1000, 'unixepoch')"),
            Engine::Duckdb => format!("strftime(epoch_ms({ms}), '%Y-%m-%d')"),
        }
    }

    /// The BCG matrix's periods (crmkit's): the twelve months ending with `day`, from its
    /// first day, and the first day of the period of as many days just before it.
    fn bcg_periods(&self) -> (NaiveDate, NaiveDate) {
        let to = self.day;
        let from = to.checked_sub_months(Months::new(12)).and_then(|d| d.succ_opt()).unwrap_or(to);
        let days = (to - from).num_days() + 1;
        (from, from - chrono::Duration::days(days))
    }

    /// `YYYY-MM` of the instant `ms` (milliseconds since the epoch, UTC).
    fn month(&self, ms: &str) -> String {
        match self.engine {
            Engine::Sqlite => format!("strftime('%Y-%m', ({ms}) / 1000, 'unixepoch')"),
            Engine::Duckdb => format!("strftime(epoch_ms({ms}), '%Y-%m')"),
        }
    }
}

/// A report as SQL.
pub struct SqlReport {
    /// crmkit's name of the report.
    pub name: &'static str,
    /// The parameters it is run with, by crmkit and (written into the SQL) by the engines.
    pub params: &'static [(&'static str, &'static str)],
    /// The columns that identify a row (rows are matched by them, not by their order).
    pub key: &'static [&'static str],
    /// The crmkit columns not compared, and why.
    pub not_compared: &'static str,
    pub sql: fn(&Ctx) -> String,
}

/// The day the reports that look at "now" are run as of: after the demo's last day, so that
/// the whole history counts, and fixed, so that the stuck deals and overdue tasks do not
/// move between crmkit's run and the engines'.
const AS_OF: &[(&str, &str)] = &[("as_of", "2026-11-30")];

/// Every report with its SQL. A report is added with one entry here.
pub const REPORTS: &[SqlReport] = &[
    SqlReport { name: "funnel", params: &[], key: &["kind", "row", "stage"], not_compared: "", sql: funnel },
    SqlReport { name: "bottlenecks", params: AS_OF, key: &["kind", "stage"], not_compared: "", sql: bottlenecks },
    SqlReport { name: "lost", params: &[], key: &["dimension", "key", "currency"], not_compared: "", sql: lost },
    SqlReport {
        name: "managers",
        params: AS_OF,
        key: &["manager"],
        not_compared: "revenue_other_currencies (free text: each sum as written, 100 or 100.00, which minor units \
             do not keep)",
        sql: managers,
    },
    SqlReport {
        name: "execution",
        params: AS_OF,
        key: &["dimension", "key", "currency"],
        not_compared: "",
        sql: execution,
    },
    SqlReport { name: "abc-xyz", params: AS_OF, key: &["currency", "partner"], not_compared: "", sql: abc_xyz },
    SqlReport { name: "bcg", params: AS_OF, key: &["dimension", "currency", "key"], not_compared: "", sql: bcg },
    SqlReport {
        name: "rfm",
        params: AS_OF,
        key: &["currency", "partner"],
        not_compared: "recency_days (the days from last_purchase, which is compared, to as_of: the engines count \
             days between dates each its own way)",
        sql: rfm,
    },
    SqlReport { name: "cohorts", params: AS_OF, key: &["cohort", "month"], not_compared: "", sql: cohorts },
];

/// `n / d` rounded half to even, for `n >= 0` and `d > 0` (rust_decimal's `round_dp`).
fn half_even(n: &str, d: &str) -> String {
    format!(
        "(({n}) / ({d}) + CASE WHEN 2 * (({n}) % ({d})) > ({d}) \
         OR (2 * (({n}) % ({d})) = ({d}) AND (({n}) / ({d})) % 2 = 1) THEN 1 ELSE 0 END)"
    )
}

/// `n / d` rounded half to even, for any `n` and `d > 0` (the magnitude rounded, as
/// rust_decimal does).
fn half_even_signed(n: &str, d: &str) -> String {
    format!("(CASE WHEN ({n}) < 0 THEN -{} ELSE {} END)", half_even(&format!("-({n})"), d), half_even(n, d))
}

/// A non-negative floating-point `x` rounded to an integer half to even: crmkit turns its
/// floating-point figures into decimals (the shortest that reads back) and rounds those.
fn float_half_even(x: &str) -> String {
    format!(
        "(CAST(ROUND({x}) AS BIGINT) - CASE WHEN ROUND({x}) - ({x}) = 0.5 AND CAST(ROUND({x}) AS BIGINT) % 2 = 1 \
         THEN 1 ELSE 0 END)"
    )
}

/// `n / d` rounded half away from zero, for `n >= 0` and `d > 0`.
fn half_up(n: &str, d: &str) -> String {
    format!("((2 * ({n}) + ({d})) / (2 * ({d})))")
}

/// `part` of `whole` in percent, in tenths, half to even (analytics' `percent`); null for
/// no whole.
fn pct1(part: &str, whole: &str) -> String {
    format!("CASE WHEN ({whole}) > 0 THEN {} END", half_even(&format!("({part}) * 1000"), whole))
}

/// `part` of `whole` in percent, in hundredths, half away from zero (the funnel's).
fn pct2(part: &str, whole: &str) -> String {
    format!("CASE WHEN ({whole}) > 0 THEN {} END", half_up(&format!("({part}) * 10000"), whole))
}

/// `ms` in days, in tenths, half to even (analytics' `days`).
fn days1(ms: &str) -> String {
    half_even(&format!("({ms}) * 10"), &DAY.to_string())
}

/// The median of a window-ranked column `v` (rank `rn` of `n`) in days, in tenths: the mean
/// of the middle two of an even count.
fn median_days(v: &str) -> String {
    half_even(
        &format!("10 * (SUM(CASE WHEN rn = (n + 1) / 2 THEN {v} END) + SUM(CASE WHEN rn = (n + 2) / 2 THEN {v} END))"),
        &(2 * DAY).to_string(),
    )
}

/// The nearest-rank `pct`th percentile of a window-ranked `v`.
fn rank(v: &str, rn: &str, n: &str, pct: u32) -> String {
    format!("MAX(CASE WHEN {rn} = ({pct} * {n} + 99) / 100 THEN {v} END)")
}

/// `SUM(CASE WHEN {currency} = C THEN {value} ELSE 0 END) AS {prefix}_C` per currency.
fn per_currency(cx: &Ctx, currency: &str, value: &str, prefix: &str) -> String {
    cx.currencies
        .iter()
        .map(|c| format!("SUM(CASE WHEN {currency} = '{c}' THEN {value} ELSE 0 END) AS {prefix}_{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `f(C)` per currency, joined by commas.
fn each_currency(cx: &Ctx, f: impl Fn(&str) -> String) -> String {
    cx.currencies.iter().map(|c| f(c)).collect::<Vec<_>>().join(", ")
}

/// A step that enters its stage (the funnel's and the bottlenecks' rule).
const ENTERS: &str = "(h.how IN ('create', 'reopen') OR h.from_stage IS DISTINCT FROM h.to_stage)";

/// A step that closes its deal (analytics' `closings`).
const CLOSES: &str = "(to_status IN ('won', 'lost') AND (from_status IS NULL OR from_status <> to_status))";

fn funnel(cx: &Ctx) -> String {
    let reach_sums = per_currency(cx, "d.currency", "d.amount", "a");
    let open_sums = per_currency(cx, "d.currency", "d.amount", "o");
    let weighted = per_currency(cx, "d.currency", "d.amount * d.probability", "w");
    let open_total = each_currency(cx, |c| format!("SUM(o_{c}) AS o_{c}, SUM(w_{c}) AS w_{c}"));
    let stage_cols = each_currency(cx, |c| format!("r.a_{c}, o.o_{c}, o.w_{c}"));
    let stage_out = each_currency(cx, |c| {
        format!(
            "COALESCE(a_{c}, 0) AS \"reached_amount_{c}@2\", COALESCE(o_{c}, 0) AS \"open_amount_{c}@2\", {} AS \"weighted_{c}@2\"",
            half_up(&format!("COALESCE(w_{c}, 0)"), "100")
        )
    });
    let won_out = each_currency(cx, |c| format!("COALESCE(w.a_{c}, 0), NULL, NULL"));
    let total_out = each_currency(cx, |c| {
        format!("COALESCE(t.a_{c}, 0), COALESCE(ot.o_{c}, 0), {}", half_up(&format!("COALESCE(ot.w_{c}, 0)"), "100"))
    });
    let won_conv = (pct2("COALESCE(w.n, 0)", "l.n"), pct2("COALESCE(w.n, 0)", "f.n"));
    format!(
        "WITH entered AS (
  SELECT DISTINCT h.deal, s.kind, s.pos
  FROM steps h JOIN deals d ON d.id = h.deal JOIN stages s ON s.kind = d.kind AND s.id = h.to_stage
  WHERE {ENTERS}
),
reach AS (SELECT e.kind, e.pos, COUNT(*) AS n, {reach_sums} FROM entered e JOIN deals d ON d.id = e.deal GROUP BY e.kind, e.pos),
total AS (
  SELECT x.kind, COUNT(*) AS n, {reach_sums}
  FROM (SELECT DISTINCT deal, kind FROM entered) x JOIN deals d ON d.id = x.deal GROUP BY x.kind
),
won AS (
  SELECT d.kind, COUNT(*) AS n, {reach_sums}
  FROM (SELECT DISTINCT deal FROM steps WHERE how = 'won') x JOIN deals d ON d.id = x.deal
  WHERE d.kind IN (SELECT kind FROM stages) GROUP BY d.kind
),
open_now AS (
  SELECT d.kind, s.pos, COUNT(*) AS n, SUM(d.probability) AS p, {open_sums}, {weighted}
  FROM deals d JOIN stages s ON s.kind = d.kind AND s.id = d.stage
  WHERE d.status IN ('in_progress', 'on_hold') GROUP BY d.kind, s.pos
),
open_total AS (SELECT kind, SUM(n) AS n, SUM(p) AS p, {open_total} FROM open_now GROUP BY kind),
stage_rows AS (
  SELECT s.kind, s.pos, s.id AS stage, s.name AS stage_name, COALESCE(r.n, 0) AS n,
    LAG(COALESCE(r.n, 0)) OVER (PARTITION BY s.kind ORDER BY s.pos) AS prev,
    FIRST_VALUE(COALESCE(r.n, 0)) OVER (PARTITION BY s.kind ORDER BY s.pos) AS first_n,
    o.n AS open_n, o.p, {stage_cols}
  FROM stages s LEFT JOIN reach r ON r.kind = s.kind AND r.pos = s.pos LEFT JOIN open_now o ON o.kind = s.kind AND o.pos = s.pos
),
bounds AS (SELECT kind, MIN(pos) AS first_pos, MAX(pos) AS last_pos FROM stages GROUP BY kind)
SELECT kind, 'stage' AS \"row\", stage, stage_name, n AS reached,
  {} AS \"conversion_from_previous@2\", {} AS \"conversion_from_first@2\",
  COALESCE(open_n, 0) AS open_now, COALESCE(p, 0) AS \"expected_wins@2\", {stage_out}
FROM stage_rows
UNION ALL
SELECT b.kind, 'won', NULL, 'won', COALESCE(w.n, 0), {}, {}, NULL, NULL, {won_out}
FROM bounds b JOIN stage_rows f ON f.kind = b.kind AND f.pos = b.first_pos
JOIN stage_rows l ON l.kind = b.kind AND l.pos = b.last_pos LEFT JOIN won w ON w.kind = b.kind
UNION ALL
SELECT b.kind, 'total', NULL, 'total', COALESCE(t.n, 0), NULL, NULL, COALESCE(ot.n, 0), COALESCE(ot.p, 0), {total_out}
FROM bounds b LEFT JOIN total t ON t.kind = b.kind LEFT JOIN open_total ot ON ot.kind = b.kind",
        pct2("n", "prev"),
        pct2("n", "first_n"),
        won_conv.0,
        won_conv.1,
    )
}

fn bottlenecks(cx: &Ctx) -> String {
    let now = cx.instant;
    let (this, previous) = (cx.month_start, cx.previous_month_start);
    let in_days = |v: &str| days1(v);
    format!(
        "WITH v AS (
  SELECT s.kind, s.pos, h.dwell_ms AS dwell, h.to_status, s.sla_ms,
    CASE WHEN h.at >= {this} THEN 1 WHEN h.at >= {previous} THEN 2 ELSE 0 END AS bucket
  FROM steps h JOIN deals d ON d.id = h.deal JOIN stages s ON s.kind = d.kind AND s.id = h.from_stage
  WHERE h.dwell_ms IS NOT NULL AND h.at <= {now}
),
ranked AS (
  SELECT kind, pos, dwell, to_status, sla_ms, bucket,
    ROW_NUMBER() OVER (PARTITION BY kind, pos ORDER BY dwell) AS rn, COUNT(*) OVER (PARTITION BY kind, pos) AS n,
    ROW_NUMBER() OVER (PARTITION BY kind, pos, bucket ORDER BY dwell) AS mrn, COUNT(*) OVER (PARTITION BY kind, pos, bucket) AS mn
  FROM v
),
agg AS (
  SELECT kind, pos, COUNT(*) AS visits, MAX(dwell) AS longest,
    SUM(CASE WHEN to_status = 'lost' THEN 1 ELSE 0 END) AS dropped,
    SUM(CASE WHEN sla_ms IS NOT NULL AND dwell > sla_ms THEN 1 ELSE 0 END) AS breaches,
    {} AS p50, {} AS p90,
    MAX(CASE WHEN bucket = 1 AND mrn = (50 * mn + 99) / 100 THEN dwell END) AS p50_this,
    MAX(CASE WHEN bucket = 2 AND mrn = (50 * mn + 99) / 100 THEN dwell END) AS p50_previous
  FROM ranked GROUP BY kind, pos
),
last_steps AS (
  SELECT h.deal, MAX(h.step) AS step, MAX(CASE WHEN {ENTERS} THEN h.at END) AS entered
  FROM steps h WHERE h.at <= {now} GROUP BY h.deal
),
held_now AS (
  SELECT s.kind, s.pos, {now} - l.entered AS held
  FROM last_steps l JOIN steps h ON h.deal = l.deal AND h.step = l.step JOIN deals d ON d.id = l.deal
  JOIN stages s ON s.kind = d.kind AND s.id = h.to_stage
  WHERE h.to_status = 'in_progress'
),
now_agg AS (
  SELECT n.kind, n.pos, COUNT(*) AS here,
    SUM(CASE WHEN n.held > COALESCE(s.sla_ms, a.p90) THEN 1 ELSE 0 END) AS stuck
  FROM held_now n JOIN stages s ON s.kind = n.kind AND s.pos = n.pos LEFT JOIN agg a ON a.kind = n.kind AND a.pos = n.pos
  GROUP BY n.kind, n.pos
)
SELECT s.kind, s.id AS stage, s.name AS stage_name, COALESCE(a.visits, 0) AS visits,
  {} AS \"p50_days@1\", {} AS \"p90_days@1\", {} AS \"max_days@1\",
  COALESCE(a.dropped, 0) AS dropped, {} AS \"drop_off_pct@1\",
  {} AS \"sla_days@1\", COALESCE(a.breaches, 0) AS sla_breaches,
  COALESCE(na.here, 0) AS in_stage_now, COALESCE(na.stuck, 0) AS stuck_now,
  {} AS \"p50_days_this_month@1\", {} AS \"p50_days_previous_month@1\"
FROM stages s LEFT JOIN agg a ON a.kind = s.kind AND a.pos = s.pos LEFT JOIN now_agg na ON na.kind = s.kind AND na.pos = s.pos",
        rank("dwell", "rn", "n", 50),
        rank("dwell", "rn", "n", 90),
        in_days("a.p50"),
        in_days("a.p90"),
        in_days("a.longest"),
        pct1("a.dropped", "a.visits"),
        in_days("s.sla_ms"),
        in_days("a.p50_this"),
        in_days("a.p50_previous"),
    )
}

fn lost(cx: &Ctx) -> String {
    let month = cx.month("l.at");
    format!(
        "WITH h AS (
  SELECT deal, MAX(step) AS last_step, MAX(CASE WHEN {CLOSES} THEN step END) AS closing FROM steps GROUP BY deal
),
lost AS (
  SELECT d.id, d.kind, d.manager, d.currency, d.amount, d.status, d.competitor, c.at, c.to_stage AS stage, c.note,
    c.at - d.created_at AS ms
  FROM h JOIN steps z ON z.deal = h.deal AND z.step = h.last_step JOIN steps c ON c.deal = h.deal AND c.step = h.closing
  JOIN deals d ON d.id = h.deal
  WHERE z.to_status = 'lost'
),
cuts AS (
  SELECT 0 AS dim, 'total' AS dimension, NULL AS \"key\", 'all lost deals' AS value, currency, amount, ms FROM lost
  UNION ALL
  SELECT 1, 'reason', l.note, COALESCE(r.name, l.note, '(no reason recorded)'), l.currency, l.amount, l.ms
  FROM lost l LEFT JOIN loss_reasons r ON r.id = l.note
  UNION ALL
  SELECT 2, 'stage', l.stage, CASE WHEN l.stage IS NULL THEN '(no stage)' ELSE COALESCE(s.name, l.stage) END,
    l.currency, l.amount, l.ms
  FROM lost l LEFT JOIN stages s ON s.kind = l.kind AND s.id = l.stage
  UNION ALL
  SELECT 3, 'competitor', p.pid, COALESCE(p.name, '(none recorded)'), l.currency, l.amount, l.ms
  FROM lost l LEFT JOIN partners p ON p.id = l.competitor AND l.status = 'lost'
  UNION ALL
  SELECT 4, 'manager', u.login, u.name, l.currency, l.amount, l.ms FROM lost l JOIN users u ON u.id = l.manager
  UNION ALL
  SELECT 5, 'kind', l.kind, COALESCE(k.name, l.kind), l.currency, l.amount, l.ms
  FROM lost l LEFT JOIN kinds k ON k.id = l.kind
  UNION ALL
  SELECT 6, 'month', {month}, {month}, l.currency, l.amount, l.ms FROM lost l
),
ranked AS (
  SELECT dim, dimension, \"key\", value, currency, amount, ms,
    ROW_NUMBER() OVER (PARTITION BY dim, \"key\", currency ORDER BY ms) AS rn,
    COUNT(*) OVER (PARTITION BY dim, \"key\", currency) AS n
  FROM cuts
)
SELECT dimension, \"key\", MAX(value) AS value, currency, COUNT(*) AS deals,
  {} AS \"share_pct@1\", SUM(amount) AS \"amount@2\",
  {} AS \"median_days_to_loss@1\", {} AS \"mean_days_to_loss@1\"
FROM ranked GROUP BY dim, dimension, \"key\", currency",
        pct1("COUNT(*)", "(SELECT COUNT(*) FROM lost)"),
        median_days("ms"),
        half_even("10 * SUM(ms)", &format!("COUNT(*) * {DAY}")),
    )
}

fn managers(cx: &Ctx) -> String {
    let now = cx.instant;
    let cur = &cx.default_currency;
    let rate = |p: &str, w: &str| pct1(p, w);
    let closed = closed_by(now);
    let won_day = cx.day_of("c.at");
    // A plan's figure: the sum of its amounts when they share one currency.
    let plan_sum = "CASE WHEN COUNT(DISTINCT currency) = 1 THEN SUM(amount) END AS plan, \
                    CASE WHEN COUNT(DISTINCT currency) = 1 THEN MIN(currency) END AS plan_currency";
    format!(
        "WITH {closed},
plan_rows AS (SELECT manager, from_day, to_day, currency, amount FROM plans WHERE manager IS NOT NULL),
my_plans AS (SELECT manager AS who, {plan_sum} FROM plan_rows GROUP BY manager),
team_plans AS (SELECT {plan_sum} FROM plan_rows),
team AS (SELECT id, manager, currency, amount, created_at FROM deals WHERE created_at <= {now}),
deal_figures AS (
  SELECT d.manager AS who, COUNT(*) AS opened,
    SUM(CASE WHEN c.status = 'won' THEN 1 ELSE 0 END) AS won,
    SUM(CASE WHEN c.status = 'lost' THEN 1 ELSE 0 END) AS lost,
    SUM(CASE WHEN c.status = 'won' AND d.currency = '{cur}' THEN d.amount ELSE 0 END) AS revenue,
    SUM(CASE WHEN c.status = 'won' AND d.currency = '{cur}' THEN 1 ELSE 0 END) AS won_here
  FROM team d LEFT JOIN closed c ON c.deal = d.id GROUP BY d.manager
),
plan_won AS (
  SELECT d.manager AS who, SUM(d.amount) AS revenue
  FROM team d JOIN closed c ON c.deal = d.id
  WHERE c.status = 'won' AND EXISTS (
    SELECT 1 FROM plan_rows p
    WHERE p.manager = d.manager AND p.currency = d.currency AND p.from_day <= {won_day} AND {won_day} <= p.to_day
  )
  GROUP BY d.manager
),
cycles AS (
  SELECT d.manager AS who, c.at - d.created_at AS ms FROM team d JOIN closed c ON c.deal = d.id WHERE c.status = 'won'
),
cycle_ranked AS (
  SELECT who, ms, ROW_NUMBER() OVER (PARTITION BY who ORDER BY ms) AS rn, COUNT(*) OVER (PARTITION BY who) AS n FROM cycles
),
cycle_median AS (SELECT who, {} AS median FROM cycle_ranked GROUP BY who),
team_median AS (
  SELECT {} AS median
  FROM (SELECT ms, ROW_NUMBER() OVER (ORDER BY ms) AS rn, COUNT(*) OVER () AS n FROM cycles) x
),
contacts AS (
  SELECT COALESCE(i.author, d.manager) AS who,
    SUM(CASE WHEN i.kind = 'call' THEN 1 ELSE 0 END) AS calls,
    SUM(CASE WHEN i.kind = 'meeting' THEN 1 ELSE 0 END) AS meetings,
    SUM(CASE WHEN i.kind = 'email' THEN 1 ELSE 0 END) AS emails
  FROM interactions i LEFT JOIN team d ON d.id = i.deal
  WHERE i.at <= {now} AND i.kind <> 'note' AND (i.deal IS NULL OR d.id IS NOT NULL)
    AND COALESCE(i.author, d.manager) IS NOT NULL
  GROUP BY COALESCE(i.author, d.manager)
),
work AS (
  SELECT t.executor AS who,
    SUM(CASE WHEN t.status = 'done' AND t.finished_at <= {now} THEN 1 ELSE 0 END) AS done,
    SUM(CASE WHEN t.due < {now} AND (t.finished_at IS NULL OR t.finished_at > {now} OR t.finished_at > t.due)
      THEN 1 ELSE 0 END) AS overdue
  FROM tasks t LEFT JOIN team d ON d.id = t.deal
  WHERE (t.deal IS NULL OR d.id IS NOT NULL) AND t.created_at <= {now}
  GROUP BY t.executor
),
people AS (
  SELECT who FROM deal_figures UNION SELECT who FROM contacts
  UNION SELECT who FROM work WHERE done + overdue > 0
  UNION SELECT id FROM users WHERE active = 1 AND sells = 1
),
per AS (
  SELECT u.login, u.name, u.department, COALESCE(f.opened, 0) AS opened, COALESCE(f.won, 0) AS won,
    COALESCE(f.lost, 0) AS lost, COALESCE(f.revenue, 0) AS revenue, COALESCE(f.won_here, 0) AS won_here,
    m.median, COALESCE(c.calls, 0) AS calls, COALESCE(c.meetings, 0) AS meetings, COALESCE(c.emails, 0) AS emails,
    COALESCE(w.done, 0) AS done, COALESCE(w.overdue, 0) AS overdue,
    pl.plan, pl.plan_currency, COALESCE(pw.revenue, 0) AS plan_revenue
  FROM people p JOIN users u ON u.id = p.who LEFT JOIN deal_figures f ON f.who = p.who
  LEFT JOIN cycle_median m ON m.who = p.who LEFT JOIN contacts c ON c.who = p.who LEFT JOIN work w ON w.who = p.who
  LEFT JOIN my_plans pl ON pl.who = p.who LEFT JOIN plan_won pw ON pw.who = p.who
),
sums AS (
  SELECT SUM(opened) AS opened, SUM(won) AS won, SUM(lost) AS lost, SUM(revenue) AS revenue, SUM(won_here) AS won_here,
    SUM(calls) AS calls, SUM(meetings) AS meetings, SUM(emails) AS emails, SUM(done) AS done, SUM(overdue) AS overdue,
    SUM(plan_revenue) AS plan_revenue
  FROM per
)
SELECT login AS manager, name, department, opened, won, lost, {} AS \"win_rate_pct@1\", '{cur}' AS currency,
  revenue AS \"revenue@2\", CASE WHEN won_here > 0 THEN {} END AS \"average_deal@2\",
  median AS \"median_cycle_days@1\", calls, meetings, emails, done AS tasks_done, overdue AS tasks_overdue,
  {} AS \"conversion_pct@1\", (SELECT {} FROM sums) AS \"team_conversion_pct@1\",
  plan AS \"plan@2\", CASE WHEN plan IS NOT NULL THEN plan_currency END AS plan_currency,
  CASE WHEN plan IS NOT NULL THEN plan_revenue END AS \"plan_revenue@2\", {} AS \"plan_coverage_pct@1\"
FROM per
UNION ALL
SELECT '(team)', NULL, NULL, s.opened, s.won, s.lost, {}, '{cur}', s.revenue, CASE WHEN s.won_here > 0 THEN {} END,
  (SELECT median FROM team_median), s.calls, s.meetings, s.emails, s.done, s.overdue, {}, {},
  t.plan, CASE WHEN t.plan IS NOT NULL THEN t.plan_currency END, CASE WHEN t.plan IS NOT NULL THEN s.plan_revenue END, {}
FROM sums s CROSS JOIN team_plans t",
        median_days("ms"),
        median_days("ms"),
        rate("won", "won + lost"),
        half_even("revenue", "won_here"),
        rate("won", "opened"),
        rate("won", "opened"),
        rate("plan_revenue", "plan"),
        rate("s.won", "s.won + s.lost"),
        half_even("s.revenue", "s.won_here"),
        rate("s.won", "s.opened"),
        rate("s.won", "s.opened"),
        rate("s.plan_revenue", "t.plan"),
    )
}

/// The deals won by the instant and how each stood then (the lost and managers reports'
/// replay of the history): `h` the last step and the last closing step by the instant,
/// `closed` each deal closed then with its status and the instant it was closed.
fn closed_by(now: i64) -> String {
    format!(
        "h AS (
  SELECT deal, MAX(step) AS last_step, MAX(CASE WHEN {CLOSES} THEN step END) AS closing
  FROM steps x WHERE x.at <= {now} GROUP BY deal
),
closed AS (
  SELECT h.deal, z.to_status AS status, c.at
  FROM h JOIN steps z ON z.deal = h.deal AND z.step = h.last_step JOIN steps c ON c.deal = h.deal AND c.step = h.closing
  WHERE z.to_status IN ('won', 'lost')
)"
    )
}

fn execution(cx: &Ctx) -> String {
    let now = cx.instant;
    let today = cx.day;
    let closed = closed_by(now);
    let won_day = cx.day_of("c.at");
    let issued = "x.state IN ('issued', 'agreed', 'completed')";
    let sums = "SUM(amount) AS \"won_amount@2\", SUM(ordered) AS \"ordered@2\", SUM(invoiced) AS \"invoiced@2\", \
                SUM(paid) AS \"paid@2\", SUM(shipped) AS \"shipped@2\"";
    format!(
        "WITH {closed},
won AS (
  SELECT d.id, d.manager, d.partner, d.currency, d.amount,
    CASE WHEN d.expected_close IS NOT NULL AND {won_day} > d.expected_close THEN 1 ELSE 0 END AS late
  FROM closed c JOIN deals d ON d.id = c.deal
  WHERE c.status = 'won' AND d.created_at <= {now}
),
docs AS (
  SELECT w.id,
    SUM(CASE WHEN x.kind = 'order' AND {issued} THEN x.amount ELSE 0 END) AS ordered,
    SUM(CASE WHEN x.kind = 'invoice' AND {issued} THEN x.amount ELSE 0 END) AS invoiced,
    SUM(CASE WHEN x.kind = 'payment' AND x.state = 'completed' THEN x.amount ELSE 0 END) AS paid,
    SUM(CASE WHEN x.kind = 'shipment' AND x.state = 'completed' THEN x.amount ELSE 0 END) AS shipped,
    SUM(CASE WHEN x.kind = 'order' AND {issued} AND x.due < '{today}' THEN x.amount ELSE 0 END) AS orders_due,
    SUM(CASE WHEN x.kind = 'invoice' AND {issued} AND x.due < '{today}' THEN x.amount ELSE 0 END) AS invoices_due
  FROM won w JOIN documents x ON x.deal = w.id
  WHERE x.created_at <= {now} AND x.currency = w.currency
  GROUP BY w.id
),
per AS (
  SELECT w.manager, w.partner, w.currency, w.amount, w.late,
    COALESCE(x.ordered, 0) AS ordered, COALESCE(x.invoiced, 0) AS invoiced,
    COALESCE(x.paid, 0) AS paid, COALESCE(x.shipped, 0) AS shipped,
    CASE WHEN x.invoices_due - x.paid > 0 THEN x.invoices_due - x.paid ELSE 0 END AS overdue_payment,
    CASE WHEN x.orders_due - x.shipped > 0 THEN x.orders_due - x.shipped ELSE 0 END AS overdue_shipment
  FROM won w LEFT JOIN docs x ON x.id = w.id
),
cuts AS (
  SELECT 0 AS dim, 'manager' AS dimension, u.login AS \"key\", u.name AS name, p.*
  FROM per p JOIN users u ON u.id = p.manager
  UNION ALL
  SELECT 1, 'partner', c.pid, c.name, p.* FROM per p JOIN partners c ON c.id = p.partner
  UNION ALL
  SELECT 2, 'total', NULL, 'all won deals', p.* FROM per p
)
SELECT dimension, \"key\", MAX(name) AS name, currency, COUNT(*) AS won_deals, {sums},
  CASE WHEN SUM(invoiced) > SUM(paid) THEN SUM(invoiced) - SUM(paid) ELSE 0 END AS \"to_pay@2\",
  CASE WHEN SUM(ordered) > SUM(shipped) THEN SUM(ordered) - SUM(shipped) ELSE 0 END AS \"to_ship@2\",
  SUM(overdue_payment) AS \"overdue_payment@2\",
  SUM(CASE WHEN overdue_payment > 0 THEN 1 ELSE 0 END) AS overdue_payment_deals,
  SUM(overdue_shipment) AS \"overdue_shipment@2\",
  SUM(CASE WHEN overdue_shipment > 0 THEN 1 ELSE 0 END) AS overdue_shipment_deals,
  SUM(late) AS won_after_expected_close
FROM cuts GROUP BY dim, dimension, \"key\", currency"
    )
}

/// The month's index (year × 12 + month) of a `YYYY-MM` text.
fn month_index(ym: &str) -> String {
    format!("(CAST(substr({ym}, 1, 4) AS BIGINT) * 12 + CAST(substr({ym}, 6, 2) AS BIGINT))")
}

fn abc_xyz(cx: &Ctx) -> String {
    let to = cx.day;
    let last = i64::from(to.year()) * 12 + i64::from(to.month());
    let x = "(s.amount / 100.0)";
    // crmkit's coefficient of variation, in floating point as crmkit computes it: the
    // population deviation of the period's months (those without revenue as zeros) over
    // their mean, in percent, rounded to tenths.
    let cv = "sqrt((v.sq + (n.months - v.k) * c.mean * c.mean) / n.months) / c.mean * 100.0";
    let cv_tenths = float_half_even(&format!("({cv}) * 10.0"));
    format!(
        "WITH sales AS (
  SELECT partner, currency, substr(date, 1, 7) AS month, SUM(amount) AS amount
  FROM documents WHERE kind = 'shipment' AND state = 'completed' AND date <= '{to}'
  GROUP BY partner, currency, substr(date, 1, 7)
),
n AS (SELECT {last} - MIN({}) + 1 AS months FROM sales),
clients AS (
  SELECT s.partner, s.currency, SUM(s.amount) AS revenue, SUM(CASE WHEN s.amount > 0 THEN 1 ELSE 0 END) AS active,
    SUM({x}) / MAX(n.months) AS mean
  FROM sales s CROSS JOIN n GROUP BY s.partner, s.currency HAVING SUM(s.amount) > 0
),
spread AS (
  SELECT s.partner, s.currency, SUM(({x} - c.mean) * ({x} - c.mean)) AS sq, COUNT(*) AS k
  FROM sales s JOIN clients c ON c.partner = s.partner AND c.currency = s.currency
  GROUP BY s.partner, s.currency
),
ranked AS (
  SELECT c.currency, p.pid, p.name, c.revenue, c.active, n.months, {cv_tenths} AS cv,
    SUM(c.revenue) OVER (PARTITION BY c.currency) AS total,
    SUM(c.revenue) OVER (PARTITION BY c.currency ORDER BY c.revenue DESC, p.name, c.partner
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - c.revenue AS before
  FROM clients c JOIN spread v ON v.partner = c.partner AND v.currency = c.currency
  JOIN partners p ON p.id = c.partner CROSS JOIN n
),
classed AS (
  SELECT r.*,
    CASE WHEN r.before * 10000 < t.abc_a * r.total THEN 'A'
      WHEN r.before * 10000 < (t.abc_a + t.abc_b) * r.total THEN 'B' ELSE 'C' END AS abc,
    CASE WHEN r.cv * 10 <= t.xyz_x THEN 'X' WHEN r.cv * 10 <= t.xyz_y THEN 'Y' ELSE 'Z' END AS xyz
  FROM ranked r CROSS JOIN thresholds t
)
SELECT currency, pid AS partner, name, revenue AS \"revenue@2\", {} AS \"share_pct@2\",
  {} AS \"cumulative_pct@2\", abc, months, active AS months_with_revenue, {} AS \"mean_monthly@2\",
  cv AS \"cv_pct@1\", xyz, abc || xyz AS class
FROM classed",
        month_index("month"),
        half_even("revenue * 10000", "total"),
        half_even("(before + revenue) * 10000", "total"),
        half_even("revenue", "months"),
    )
}

/// RFM: per client and currency the last purchase, the purchases and their sum; each
/// scored 1 + ⌊5 × the clients of the currency below it ÷ their number⌋ (`RANK() - 1` is
/// how many are below), the segment named by the recency and frequency scores.
fn rfm(cx: &Ctx) -> String {
    let to = cx.day;
    format!(
        "WITH p AS (
  SELECT partner, currency, MAX(date) AS last, COUNT(*) AS purchases, SUM(amount) AS revenue
  FROM documents WHERE kind = 'shipment' AND state = 'completed' AND date <= '{to}'
  GROUP BY partner, currency
),
s AS (
  SELECT p.*, COUNT(*) OVER (PARTITION BY currency) AS n,
    RANK() OVER (PARTITION BY currency ORDER BY last) - 1 AS r_below,
    RANK() OVER (PARTITION BY currency ORDER BY purchases) - 1 AS f_below,
    RANK() OVER (PARTITION BY currency ORDER BY revenue) - 1 AS m_below
  FROM p
),
q AS (
  SELECT s.*, 1 + (5 * r_below) / n AS r, 1 + (5 * f_below) / n AS f, 1 + (5 * m_below) / n AS m FROM s
)
SELECT q.currency, pp.pid AS partner, pp.name, q.last AS last_purchase, q.purchases, q.revenue AS \"revenue@2\",
  q.r, q.f, q.m, CAST(q.r AS VARCHAR) || CAST(q.f AS VARCHAR) || CAST(q.m AS VARCHAR) AS rfm,
  CASE WHEN q.r >= 4 AND q.f >= 4 THEN 'champions' WHEN q.r >= 3 AND q.f >= 3 THEN 'loyal'
    WHEN q.r >= 4 AND q.f = 1 THEN 'new' WHEN q.r >= 4 THEN 'promising'
    WHEN q.r <= 2 AND q.f >= 3 THEN 'at risk' WHEN q.r = 1 AND q.f = 1 THEN 'lost'
    WHEN q.r <= 2 THEN 'hibernating' ELSE 'needs attention' END AS segment
FROM q JOIN partners pp ON pp.id = q.partner"
    )
}

/// Cohorts: each client's months with a purchase, its cohort the first of them; every
/// month from a cohort's to the last one, the clients active then and those whose last
/// purchase was before it.
fn cohorts(cx: &Ctx) -> String {
    let to = cx.day;
    let last = i64::from(to.year()) * 12 + i64::from(to.month());
    let ym = |m: &str| {
        format!(
            "CAST(({m} - 1) / 12 AS VARCHAR) || '-' || CASE WHEN ({m} - 1) % 12 + 1 < 10 THEN '0' ELSE '' END \
             || CAST(({m} - 1) % 12 + 1 AS VARCHAR)"
        )
    };
    format!(
        "WITH RECURSIVE m AS (
  SELECT DISTINCT partner, {month} AS month FROM documents
  WHERE kind = 'shipment' AND state = 'completed' AND date <= '{to}'
),
c AS (SELECT partner, MIN(month) AS cohort, MAX(month) AS last FROM m GROUP BY partner),
sizes AS (SELECT cohort, COUNT(*) AS clients FROM c GROUP BY cohort),
grid(cohort, month) AS (
  SELECT cohort, cohort FROM sizes
  UNION ALL SELECT cohort, month + 1 FROM grid WHERE month < {last}
),
active AS (SELECT c.cohort, m.month, COUNT(*) AS n FROM m JOIN c ON c.partner = m.partner GROUP BY c.cohort, m.month),
churned AS (
  SELECT g.cohort, g.month, COUNT(c.partner) AS n FROM grid g LEFT JOIN c ON c.cohort = g.cohort AND c.last < g.month
  GROUP BY g.cohort, g.month
)
SELECT {cohort} AS cohort, s.clients, {month_name} AS month, g.month - g.cohort AS months_since,
  COALESCE(a.n, 0) AS active, {retention} AS \"retention_pct@1\", h.n AS churned, {churn} AS \"churn_pct@1\"
FROM grid g JOIN sizes s ON s.cohort = g.cohort
LEFT JOIN active a ON a.cohort = g.cohort AND a.month = g.month
JOIN churned h ON h.cohort = g.cohort AND h.month = g.month",
        month = month_index("date"),
        cohort = ym("g.cohort"),
        month_name = ym("g.month"),
        retention = pct1("COALESCE(a.n, 0)", "s.clients"),
        churn = pct1("h.n", "s.clients"),
    )
}

/// A document line's amount, qty × price (both in units of 10^-4) rounded to the minor
/// units of `currency` (crmkit's), in hundredths.
fn line_amount(cx: &Ctx, currency: &str) -> String {
    let of = |units: u32| {
        let units = units.min(2);
        let rounded = half_even_signed("l.qty * l.price", &10i64.pow(8 - units).to_string());
        if units == 2 {
            rounded
        } else {
            format!("{rounded} * {}", 10i64.pow(2 - units))
        }
    };
    let odd: Vec<String> = cx
        .currencies
        .iter()
        .filter_map(|c| {
            let units = c.parse::<Currency>().map_or(2, |c| c.minor_units());
            (units != 2).then(|| format!("WHEN '{c}' THEN {}", of(units)))
        })
        .collect();
    if odd.is_empty() {
        of(2)
    } else {
        format!("CASE {currency} {} ELSE {} END", odd.join(" "), of(2))
    }
}

fn bcg(cx: &Ctx) -> String {
    let to = cx.day;
    let (from, previous_from) = cx.bcg_periods();
    let split = "SUM(CASE WHEN cur = 1 THEN amount ELSE 0 END) AS revenue, \
                 SUM(CASE WHEN cur = 0 THEN amount ELSE 0 END) AS previous";
    format!(
        "WITH shipments AS (
  SELECT id, partner, currency, amount, CASE WHEN date >= '{from}' THEN 1 ELSE 0 END AS cur
  FROM documents
  WHERE kind = 'shipment' AND state = 'completed' AND date >= '{previous_from}' AND date <= '{to}'
),
item_sales AS (
  SELECT l.item, s.currency, s.cur, {} AS amount FROM shipments s JOIN lines l ON l.document = s.id
),
sums AS (
  SELECT 'client' AS dimension, s.currency, p.pid AS \"key\", p.name, {split}
  FROM shipments s JOIN partners p ON p.id = s.partner GROUP BY s.currency, p.pid, p.name
  UNION ALL
  SELECT 'item', currency, item, item, {split} FROM item_sales GROUP BY currency, item
),
largest AS (SELECT *, MAX(revenue) OVER (PARTITION BY dimension, currency) AS largest FROM sums),
figures AS (
  SELECT dimension, currency, \"key\", name, revenue, previous,
    CASE WHEN previous > 0 THEN {} END AS growth, CASE WHEN largest > 0 THEN {} ELSE 0 END AS share
  FROM largest
)
SELECT dimension, currency, \"key\", name, revenue AS \"revenue@2\", previous AS \"previous_revenue@2\",
  growth AS \"growth_pct@2\", share AS \"relative_share_pct@2\",
  CASE WHEN share >= t.bcg_share THEN CASE WHEN growth IS NULL OR growth >= t.bcg_growth THEN 'star' ELSE 'cash cow' END
    ELSE CASE WHEN growth IS NULL OR growth >= t.bcg_growth THEN 'question mark' ELSE 'dog' END END AS quadrant
FROM figures CROSS JOIN thresholds t",
        line_amount(cx, "s.currency"),
        half_even_signed("(revenue - previous) * 10000", "previous"),
        half_even_signed("revenue * 10000", "largest"),
    )
}
