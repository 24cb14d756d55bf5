//! Bulk import and export of partners, counterparties, contacts, deals, interactions and
//! documents as CSV or JSONL. What export writes, import reads back unchanged.

pub mod columns;
pub mod csv;
mod export;
mod import;

use std::collections::BTreeMap;
use std::path::Path;

pub use export::{export, export_with_progress};
pub use import::{ImportOptions, Importer, Progress, Report, RowError};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma- (or semicolon-) separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The format a file name's extension says (`.csv`, `.jsonl`, `.ndjson`).
    pub fn of_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" | "txt" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// The format named `name` (`csv`, `jsonl`).
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// How a file's column names map to crmkit's: a file column to a column name, or to
/// nothing (the column is ignored). Columns not mentioned keep their names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping(BTreeMap<String, Option<String>>);

impl Mapping {
    /// What the file column `name` maps to: `Some(None)` when it is ignored, `None` when
    /// the mapping does not mention it. Exact names first, then ignoring case.
    pub fn get(&self, name: &str) -> Option<&Option<String>> {
        self.0.get(name).or_else(|| {
            let lower = name.to_lowercase();
            self.0.iter().find(|(k, _)| k.to_lowercase() == lower).map(|(_, v)| v)
        })
    }

    /// Maps `from` to `to` (`-` ignores the column).
    pub fn insert(&mut self, from: &str, to: &str) {
        let to = to.trim();
        self.0.insert(from.trim().to_string(), (to != "-").then(|| to.to_string()));
    }

    /// A mapping file: a `[columns]` table of `"file column" = "crmkit column"` (or `"-"`).
    pub fn parse_toml(text: &str) -> Result<Mapping, String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut m = Mapping::default();
        if let Some(k) = doc.keys().find(|k| k.as_str() != "columns") {
            return Err(format!("unknown section \"{k}\"; a mapping file has one table, [columns]"));
        }
        let Some(cols) = doc.get("columns") else { return Ok(m) };
        let cols = cols.as_table().ok_or("columns must be a table of \"file column\" = \"crmkit column\"")?;
        for (from, to) in cols {
            let to = to.as_str().ok_or_else(|| format!("columns.\"{from}\": expected a column name or \"-\""))?;
            m.insert(from, to);
        }
        Ok(m)
    }

    /// Pairs `file column=crmkit column`, separated by commas.
    pub fn parse_pairs(text: &str) -> Result<Mapping, String> {
        let mut m = Mapping::default();
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (from, to) = pair.split_once('=').ok_or_else(|| format!("\"{pair}\" is not FILE_COLUMN=COLUMN"))?;
            m.insert(from, to);
        }
        Ok(m)
    }
}
