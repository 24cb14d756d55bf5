//! `crmkit stats`: what is in an installation — entities, deals by status and the pipeline of
//! open deals per process kind and stage — as a terminal table or JSON with the same figures.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use crmkit_core::dossier::Amounts;
use crmkit_core::model::{Deal, DealStatus, EntityKind};
use crmkit_core::process::spec::ProcessKindSpec;
use crmkit_core::store::{Reader, Stats};
use serde::Serialize;

use crate::cli::human_bytes;
use crate::dossier::amounts;
use crate::Format;

/// Everything `crmkit stats` shows.
#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    store: Stats,
    /// One row per status, in the order of [`DealStatus::ALL`], zero rows included.
    deals_by_status: Vec<StatusRow>,
    /// Open deals (in progress or on hold) per process kind and stage: the configured kinds
    /// in config order, each kind's stages in route order (empty stages included), then
    /// what deals hold that config no longer names.
    pipeline: Vec<PipelineRow>,
}

#[derive(Serialize)]
struct StatusRow {
    status: &'static str,
    count: u64,
    /// The deals' amounts summed per currency.
    amount: Amounts,
}

#[derive(Serialize)]
struct PipelineRow {
    kind: String,
    /// The kind's name in config; `None` for a kind config no longer has.
    kind_name: Option<String>,
    /// `None` for deals without a stage (a stageless kind).
    stage: Option<String>,
    /// The stage's name in config; `None` without a stage or for a stage the kind's route
    /// no longer has.
    stage_name: Option<String>,
    count: u64,
    amount: Amounts,
}

impl PipelineRow {
    /// `Kind name / Stage name`, ids where config has no name.
    fn label(&self) -> String {
        let kind = self.kind_name.as_deref().unwrap_or(&self.kind);
        match (&self.stage_name, &self.stage) {
            (Some(name), _) => format!("{kind} / {name}"),
            (None, Some(id)) => format!("{kind} / {id}"),
            (None, None) => kind.to_string(),
        }
    }
}

/// Counts and amounts of one group of deals.
#[derive(Default)]
struct Tally {
    count: u64,
    amount: Amounts,
}

impl Tally {
    fn add(&mut self, d: &Deal) {
        self.count += 1;
        *self.amount.entry(d.amount.currency).or_default() += d.amount.amount;
    }
}

fn report(inst: &crmkit_core::Installation) -> Result<Report> {
    let store = inst.store().stats()?;
    let mut by_status: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut open: BTreeMap<(String, Option<String>), Tally> = BTreeMap::new();
    inst.store().read()?.for_each::<Deal>(|d| {
        by_status.entry(d.status.name()).or_default().add(&d);
        if matches!(d.status, DealStatus::InProgress | DealStatus::OnHold) {
            open.entry((d.kind.clone(), d.stage.clone())).or_default().add(&d);
        }
        true
    })?;
    let deals_by_status = DealStatus::ALL
        .iter()
        .map(|s| {
            let t = by_status.remove(s.name()).unwrap_or_default();
            StatusRow { status: s.name(), count: t.count, amount: t.amount }
        })
        .collect();
    Ok(Report { store, deals_by_status, pipeline: pipeline(&inst.settings().process_kinds, open) })
}

/// The pipeline rows: configured stages first, in route order, then whatever is left.
fn pipeline(kinds: &[ProcessKindSpec], mut open: BTreeMap<(String, Option<String>), Tally>) -> Vec<PipelineRow> {
    let mut rows = Vec::new();
    let mut row = |kind: &str, kind_name: Option<&str>, stage: Option<&str>, stage_name: Option<&str>, t: Tally| {
        rows.push(PipelineRow {
            kind: kind.to_string(),
            kind_name: kind_name.map(str::to_string),
            stage: stage.map(str::to_string),
            stage_name: stage_name.map(str::to_string),
            count: t.count,
            amount: t.amount,
        })
    };
    for k in kinds {
        if k.stages.is_empty() {
            let t = open.remove(&(k.id.clone(), None)).unwrap_or_default();
            row(&k.id, Some(&k.name), None, None, t);
        }
        for s in &k.stages {
            let t = open.remove(&(k.id.clone(), Some(s.id.clone()))).unwrap_or_default();
            row(&k.id, Some(&k.name), Some(&s.id), Some(&s.name), t);
        }
        // Stages the route no longer has (or no stage in a kind that now has stages).
        let left: Vec<_> = open.keys().filter(|(kind, _)| *kind == k.id).cloned().collect();
        for key in left {
            let t = open.remove(&key).unwrap_or_default();
            row(&k.id, Some(&k.name), key.1.as_deref(), None, t);
        }
    }
    // Kinds config no longer has.
    for ((kind, stage), t) in open {
        row(&kind, None, stage.as_deref(), None, t);
    }
    rows
}

/// Runs `crmkit stats DIR`.
pub fn run(dir: &Path, format: Format) -> Result<()> {
    let inst = crate::console::installation(dir)?;
    let r = report(&inst)?;
    if format == Format::Json {
        say!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let labels: Vec<String> = r.pipeline.iter().map(PipelineRow::label).collect();
    let w = labels.iter().map(|l| l.chars().count()).chain([24]).max().unwrap_or(24);
    say!("{:<w$}  {:>12}", "entity", "count");
    for k in EntityKind::ALL {
        say!("{:<w$}  {:>12}", k.name(), r.store.entities[&k]);
    }
    say!("{:<w$}  {:>12}", "audit entries", r.store.audit_entries);
    say!("{:<w$}  {:>12}", "history steps", r.store.stage_history_steps);
    say!("{:<w$}  {:>12}", "file size", human_bytes(r.store.file_bytes));
    say!("");
    say!("{:<w$}  {:>12}  amount", "deals by status", "count");
    for s in &r.deals_by_status {
        say!("{:<w$}  {:>12}  {}", s.status.replace('_', " "), s.count, amounts(&s.amount));
    }
    say!("");
    say!("{:<w$}  {:>12}  amount", "pipeline (open deals)", "count");
    for (p, label) in r.pipeline.iter().zip(&labels) {
        say!("{:<w$}  {:>12}  {}", label, p.count, amounts(&p.amount));
    }
    Ok(())
}
