//! The built-in reports written as SQL for `crmkit-bench analytics`: one entry per report
//! (crmkit's name and parameters, the SQL, the columns that identify a row), the same text
//! for SQLite and DuckDB but for the one expression that turns an instant into a month.
//!
//! The column mapping is in the SQL: a result column is named after the crmkit column it is
//! compared with, and a name ending in `@N` holds an integer in units of 10^-N (amounts in
//! minor units, percentages in tenths), which is how the SQL keeps every number exact. The
//! rounding is crmkit's, written with integer arithmetic: `/` divides integers in both
//! engines (DuckDB is run with `SET integer_division = true`). Columns a report has and its
//! SQL does not name are not compared; each entry says which and why.

use crmkit_core::time::Timestamp;

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
}

impl Ctx {
    /// The context of a report run with `params` (only `as_of` is read).
    pub fn new(
        engine: Engine,
        currencies: Vec<String>,
        default_currency: String,
        as_of: Option<&str>,
    ) -> Result<Ctx, String> {
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
        Ok(Ctx { engine, currencies, default_currency, instant, month_start, previous_month_start })
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
        not_compared: "revenue_other_currencies (free text), plan, plan_currency, plan_revenue, plan_coverage_pct \
             (config's [[plans]], not loaded into the engines)",
        sql: managers,
    },
];

/// `n / d` rounded half to even, for `n >= 0` and `d > 0` (rust_decimal's `round_dp`).
fn half_even(n: &str, d: &str) -> String {
    format!(
        "(({n}) / ({d}) + CASE WHEN 2 * (({n}) % ({d})) > ({d}) \
         OR (2 * (({n}) % ({d})) = ({d}) AND (({n}) / ({d})) % 2 = 1) THEN 1 ELSE 0 END)"
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
    format!(
        "WITH h AS (
  SELECT deal, MAX(step) AS last_step, MAX(CASE WHEN {CLOSES} THEN step END) AS closing
  FROM steps x WHERE x.at <= {now} GROUP BY deal
),
closed AS (
  SELECT h.deal, z.to_status AS status, c.at
  FROM h JOIN steps z ON z.deal = h.deal AND z.step = h.last_step JOIN steps c ON c.deal = h.deal AND c.step = h.closing
  WHERE z.to_status IN ('won', 'lost')
),
team AS (SELECT id, manager, currency, amount, created_at FROM deals WHERE created_at <= {now}),
deal_figures AS (
  SELECT d.manager AS who, COUNT(*) AS opened,
    SUM(CASE WHEN c.status = 'won' THEN 1 ELSE 0 END) AS won,
    SUM(CASE WHEN c.status = 'lost' THEN 1 ELSE 0 END) AS lost,
    SUM(CASE WHEN c.status = 'won' AND d.currency = '{cur}' THEN d.amount ELSE 0 END) AS revenue,
    SUM(CASE WHEN c.status = 'won' AND d.currency = '{cur}' THEN 1 ELSE 0 END) AS won_here
  FROM team d LEFT JOIN closed c ON c.deal = d.id GROUP BY d.manager
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
    COALESCE(w.done, 0) AS done, COALESCE(w.overdue, 0) AS overdue
  FROM people p JOIN users u ON u.id = p.who LEFT JOIN deal_figures f ON f.who = p.who
  LEFT JOIN cycle_median m ON m.who = p.who LEFT JOIN contacts c ON c.who = p.who LEFT JOIN work w ON w.who = p.who
),
sums AS (
  SELECT SUM(opened) AS opened, SUM(won) AS won, SUM(lost) AS lost, SUM(revenue) AS revenue, SUM(won_here) AS won_here,
    SUM(calls) AS calls, SUM(meetings) AS meetings, SUM(emails) AS emails, SUM(done) AS done, SUM(overdue) AS overdue
  FROM per
)
SELECT login AS manager, name, department, opened, won, lost, {} AS \"win_rate_pct@1\", '{cur}' AS currency,
  revenue AS \"revenue@2\", CASE WHEN won_here > 0 THEN {} END AS \"average_deal@2\",
  median AS \"median_cycle_days@1\", calls, meetings, emails, done AS tasks_done, overdue AS tasks_overdue,
  {} AS \"conversion_pct@1\", (SELECT {} FROM sums) AS \"team_conversion_pct@1\"
FROM per
UNION ALL
SELECT '(team)', NULL, NULL, opened, won, lost, {}, '{cur}', revenue, CASE WHEN won_here > 0 THEN {} END,
  (SELECT median FROM team_median), calls, meetings, emails, done, overdue, {}, {}
FROM sums",
        median_days("ms"),
        median_days("ms"),
        rate("won", "won + lost"),
        half_even("revenue", "won_here"),
        rate("won", "opened"),
        rate("won", "opened"),
        rate("won", "won + lost"),
        half_even("revenue", "won_here"),
        rate("won", "opened"),
        rate("won", "opened"),
    )
}
