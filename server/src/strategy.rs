//! `crmkit strategy DIR [--apply]`, the API's run and the server's schedule: one way to run
//! the relationship strategies over an installation — evaluate on a snapshot, then (applying)
//! write through the engine — and the last run, kept beside the database for the API.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use crmkit_core::process::Engine;
use crmkit_core::strategy::{self, Evaluation, Summary};
use crmkit_core::Installation;

use crate::console;

/// Where the last run's summary is kept.
pub fn last_run_file(inst: &Installation) -> PathBuf {
    inst.dir().join("data/strategy-last-run.json")
}

/// The last run's summary, if there was one.
pub fn last_run(inst: &Installation) -> Result<Option<serde_json::Value>> {
    let path = last_run_file(inst);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Evaluates the strategies of `inst` on a snapshot, as of today by its clock.
pub fn evaluate(inst: &Installation, engine: &Engine) -> Result<Evaluation> {
    let classes = inst.client_classes()?;
    let snapshot = inst.store().read()?;
    let today = inst.store().clock().now().date();
    Ok(strategy::evaluate(&snapshot, engine.hooks(), &classes, today)?)
}

/// Keeps `summary` as the last run.
pub fn keep(inst: &Installation, summary: &Summary) -> Result<()> {
    let path = last_run_file(inst);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(summary)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// `crmkit strategy DIR [--apply]`.
pub fn run(dir: &Path, apply: bool) -> Result<()> {
    let inst = console::installation(dir)?;
    let engine = crate::script::engine(&inst)?;
    let ev = evaluate(&inst, &engine)?;
    let written = if apply { Some(inst.store().transact(None, |tx| strategy::apply(tx, &engine, &ev))?) } else { None };
    let summary = Summary::of(&ev, written, inst.store().clock().now());
    keep(&inst, &summary)?;
    say!(
        "{} client partner(s) as of {}: {} change segment, {} due for contact, {} could not be decided",
        summary.partners,
        ev.day.map(|d| d.to_string()).unwrap_or_default(),
        summary.changed,
        summary.overdue,
        summary.faults.len()
    );
    let segments: Vec<String> = summary
        .segments
        .iter()
        .map(|(s, n)| format!("{} {n}", if s.is_empty() { "(none)" } else { s.as_str() }))
        .collect();
    say!("segments: {}", segments.join(", "));
    for o in ev.outcomes.iter().filter(|o| o.changes()).take(50) {
        let seg = |s: &Option<String>| s.clone().unwrap_or_else(|| "(none)".into());
        say!("  {}: {} -> {}", o.name, seg(&o.from), seg(&o.to));
    }
    for o in ev.outcomes.iter().filter(|o| o.overdue).take(50) {
        let last = o.last_contact.map_or_else(|| "never contacted".to_string(), |d| format!("last contact {d}"));
        say!("  due: {} ({}, {last})", o.name, o.to.as_deref().unwrap_or("-"));
    }
    for f in &summary.faults {
        complain!("  not decided: {} ({}): {}", f.name, f.partner, f.message);
    }
    match &summary.written {
        Some(w) => say!(
            "applied: {} segment(s) changed, {} task(s) created, {} open already, {} partner(s) with no one to give them to, {} refused",
            w.segments_changed,
            w.tasks_created,
            w.tasks_open_already,
            w.without_executor,
            w.faults.len()
        ),
        None => say!("nothing written (--apply writes the segments and the recommended tasks)"),
    }
    if let Some(w) = &summary.written {
        for f in &w.faults {
            complain!("  refused: {} ({}): {}", f.name, f.partner, f.message);
        }
    }
    Ok(())
}
