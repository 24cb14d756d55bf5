//! `crmkit analytics REPORT DIR`: a built-in report (docs/analytics.md) in the terminal, as
//! CSV or JSON, or — for the reports that draw one — as an SVG chart; the same tables
//! `GET /api/v1/analytics/REPORT` answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use crmkit_core::analytics::{self, Analytics, AnalyticsWithHooks};
use crmkit_core::hooks::Hooks;
use crmkit_core::report::{ReportSource as _, Reports, Table};

/// The parameters of `crmkit analytics`, as the command line gives them.
pub struct Args<'a> {
    pub report: &'a str,
    pub dir: &'a Path,
    /// The report's parameters by name (`kind`, `from`, …), the ones given.
    pub params: BTreeMap<String, String>,
    pub format: &'a str,
}

/// The built-in reports alone, checked as every report is (parameters, table); with the
/// installation's `hooks`, the calibration report also backtests the bound `deal.score`
/// handlers.
pub fn reports(hooks: Option<Hooks>) -> Reports {
    let mut reports = Reports::new();
    match hooks {
        Some(hooks) => reports.add(Arc::new(AnalyticsWithHooks(hooks))),
        None => reports.add(Arc::new(Analytics)),
    };
    reports
}

/// Why report `name` cannot be drawn, if it cannot: it has no chart (the message names
/// the reports that have one).
pub fn no_chart(name: &str) -> Option<String> {
    let charts = analytics::charts();
    (!charts.contains(&name)).then(|| format!("report {name} has no chart: svg is for {}", charts.join(", ")))
}

/// Report `name`'s table drawn as SVG.
pub fn svg(name: &str, table: &Table) -> Result<String, String> {
    analytics::chart(name, table).unwrap_or_else(|| Err(no_chart(name).unwrap_or_default()))
}

/// Runs `crmkit analytics`.
pub fn run(args: Args<'_>) -> Result<()> {
    if !["table", "csv", "json", "svg"].contains(&args.format) {
        bail!("\"{}\" is not a format: table, csv, json or svg", args.format);
    }
    let known = Analytics.reports().iter().any(|r| r.name == args.report);
    if known && args.format == "svg" {
        if let Some(m) = no_chart(args.report) {
            bail!("--format svg: {m}");
        }
    }
    let inst = crate::console::installation(args.dir)?;
    // The calibration report backtests the bound deal.score handlers too: their scripts and
    // plugins are loaded for it.
    let hooks = match args.report {
        "calibration" => Some(crate::script::engine(&inst)?.hooks().clone()),
        _ => None,
    };
    let snapshot = inst.store().read()?;
    let table = reports(hooks).run(args.report, &args.params, &snapshot)?;
    if args.format == "svg" {
        let out = svg(args.report, &table).map_err(|m| anyhow::anyhow!(m))?;
        say!("{}", out.trim_end());
        return Ok(());
    }
    crate::script::print_table(&table, args.format)
}
