//! `crmkit import` and `crmkit export`: files of partners, counterparties, contacts, deals,
//! interactions and documents in and out of an installation.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crmkit_core::model::EntityKind;
use crmkit_core::store::Reader;
use crmkit_core::transfer::{self, csv, Format, ImportOptions, Importer, Mapping, Report};

use crate::progress::Bar;

/// The entity kind a command-line name means (`partners` or `partner`).
pub fn entity(name: &str) -> Result<EntityKind> {
    let n = name.trim().to_lowercase();
    let singular = match n.as_str() {
        "counterparties" => "counterparty",
        "partners" => "partner",
        "contacts" => "contact",
        "deals" => "deal",
        "interactions" => "interaction",
        "documents" => "document",
        "loyalty-programs" | "loyalty_programs" => "loyalty_program",
        "loyalty-cards" | "loyalty_cards" => "loyalty_card",
        "claims" => "claim",
        other => other,
    };
    EntityKind::from_name(singular).filter(|k| transfer::columns::KINDS.contains(k)).with_context(|| {
        format!("\"{name}\" is not an entity files carry: partners, counterparties, contacts, loyalty-programs, loyalty-cards, deals, interactions, documents or claims")
    })
}

fn delimiter(d: Option<char>) -> Result<Option<u8>> {
    match d {
        None => Ok(None),
        Some(c) if c.is_ascii() && c != '"' && c != '\n' && c != '\r' => Ok(Some(c as u8)),
        Some(c) => bail!("{c:?} cannot separate CSV fields; use , ; or a tab"),
    }
}

/// What `crmkit import` was asked.
pub struct ImportArgs {
    pub dir: PathBuf,
    pub entity: String,
    pub file: PathBuf,
    pub format: Option<String>,
    pub map: Option<String>,
    pub delimiter: Option<char>,
    pub batch: usize,
    pub atomic: bool,
    pub dry_run: bool,
    pub as_user: Option<String>,
}

/// The error report written next to `input`: `NAME.errors.csv`.
pub fn report_path(input: &Path) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "import".into());
    input.with_file_name(format!("{stem}.errors.csv"))
}

pub fn import(a: ImportArgs) -> Result<()> {
    let kind = entity(&a.entity)?;
    let format = match &a.format {
        Some(f) => Format::from_name(f).with_context(|| format!("\"{f}\" is not a format: csv or jsonl"))?,
        None => Format::of_path(&a.file).with_context(|| {
            format!("{}: cannot tell the format from the name; give --format csv or --format jsonl", a.file.display())
        })?,
    };
    let mapping = match &a.map {
        None => Mapping::default(),
        Some(m) if crate::console::path(Path::new(m)).is_file() => {
            let text = std::fs::read_to_string(crate::console::path(Path::new(m)))
                .with_context(|| format!("reading the mapping file {m}"))?;
            Mapping::parse_toml(&text).map_err(|e| anyhow::anyhow!("mapping file {m}: {e}"))?
        }
        Some(m) => Mapping::parse_pairs(m).map_err(|e| anyhow::anyhow!("--map: {e}"))?,
    };
    let inst = crate::console::installation(&a.dir)?;
    let store = inst.store();
    let actor = match &a.as_user {
        Some(login) => {
            Some(store.read()?.user_by_login(login)?.with_context(|| format!("no user has the login \"{login}\""))?.id)
        }
        None => None,
    };
    let engine = crate::script::engine(&inst)?;
    let mut opts = ImportOptions::new(kind, format);
    opts.mapping = mapping;
    opts.delimiter = delimiter(a.delimiter)?;
    opts.batch_rows = a.batch.max(1);
    opts.atomic = a.atomic;
    opts.dry_run = a.dry_run;
    let input = crate::console::path(&a.file);
    opts.base_dir = Some(input.parent().map(Path::to_path_buf).unwrap_or_default());
    let file = std::fs::File::open(&input).with_context(|| format!("opening {}", a.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let report = {
        let bar = Bar::new(size, "import [{bar:40}] {bytes}/{total_bytes} {msg} ({eta} left)");
        Importer::new(store, &engine, actor, &opts)?.run(file, &mut |p| {
            bar.bar().set_position(p.bytes);
            bar.bar().set_message(format!("{} rows", p.rows));
        })?
    };
    let report_file = report_path(&a.file);
    write_report(&report, &crate::console::path(&report_file))?;
    summarize(&report, &a, &report_file);
    if report.stopped.is_some() || report.failed > 0 {
        return Err(crate::console::Exit(1).into());
    }
    Ok(())
}

/// Writes the rows that failed as CSV (row, line, key, field, message); removes a report
/// of an earlier run when none did.
fn write_report(report: &Report, path: &Path) -> Result<()> {
    if report.errors.is_empty() && report.stopped.is_none() {
        if path.exists() {
            std::fs::remove_file(path).with_context(|| format!("removing the old report {}", path.display()))?;
        }
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("writing the error report {}", path.display()))?,
    );
    csv::write_record(&mut out, &["row", "line", "key", "field", "message"], b',')?;
    for e in report.errors.iter().chain(report.stopped.as_ref()) {
        let (row, line) = (e.row.to_string(), e.line.to_string());
        csv::write_record(&mut out, &[&row, &line, e.key.as_deref().unwrap_or(""), &e.field, &e.message], b',')?;
    }
    out.flush()?;
    Ok(())
}

fn summarize(r: &Report, a: &ImportArgs, report_file: &Path) {
    let what = if a.dry_run {
        "dry run, nothing written"
    } else if a.atomic && !r.written && (r.failed > 0 || r.stopped.is_some()) {
        "atomic import refused, nothing written"
    } else if !r.written {
        "imported, nothing written"
    } else {
        "imported"
    };
    say!(
        "{what}: {} rows read; {} created, {} updated, {} unchanged, {} failed",
        r.rows,
        r.created,
        r.updated,
        r.unchanged,
        r.failed
    );
    for e in r.errors.iter().take(10) {
        say!("  {e}");
    }
    if r.errors.len() > 10 {
        say!("  … and {} more", r.errors.len() - 10);
    }
    if let Some(s) = &r.stopped {
        say!("stopped: {s}");
        if !a.atomic && !a.dry_run && s.row == 0 && r.rows > 0 {
            say!(
                "  batches committed before this point stay; {} valid row(s) of the open batch and the rest of the file were not imported",
                r.discarded
            );
        }
    }
    if !r.errors.is_empty() || r.stopped.is_some() {
        say!("report: {}", report_file.display());
    }
}

/// `crmkit export`.
pub fn export(dir: &Path, entity_name: &str, format: &str, out: Option<&Path>, delim: Option<char>) -> Result<()> {
    let kind = entity(entity_name)?;
    let format = Format::from_name(format).with_context(|| format!("\"{format}\" is not a format: csv or jsonl"))?;
    let delimiter = delimiter(delim)?.unwrap_or(b',');
    let inst = crate::console::installation(dir)?;
    let r = inst.store().read()?;
    // Rows written to a terminal show how far the export is themselves, and a bar on the
    // same terminal would be torn up by them: a bar only for a file or a pipe.
    let bar = match out {
        None if std::io::stdout().is_terminal() => None,
        _ => Some(Bar::stages()),
    };
    let mut show = |p| {
        if let Some(b) = &bar {
            b.update(p)
        }
    };
    let rows = match out {
        Some(path) => {
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(crate::console::path(path))
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            let n = transfer::export_with_progress(&r, kind, format, delimiter, &mut w, &mut show)?;
            w.flush()?;
            n
        }
        None => {
            let mut w = std::io::BufWriter::new(crate::console::stdout());
            let n = transfer::export_with_progress(&r, kind, format, delimiter, &mut w, &mut show)?;
            w.flush()?;
            n
        }
    };
    drop(bar);
    if let Some(path) = out {
        say!("{rows} {kind} rows written to {}", path.display());
    }
    Ok(())
}
