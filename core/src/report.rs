//! Reports: named tables computed over a read-only [`View`] of the store. A runtime offers
//! its reports through a [`ReportSource`] (the Rhai adapter's scripts in `scripts/reports/`
//! today; built-in analytics and plugins are more sources); [`Reports`] asks the sources by
//! name, checks the parameters against what the report declares and the table against its
//! columns, so the CLI, the API and any embedder get one behaviour and one set of messages.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::hooks::View;

/// The type of a report column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Text (JSON string).
    Text,
    /// A whole number (JSON number).
    Int,
    /// A decimal: its exact text, or a JSON number.
    Decimal,
    /// A date, `YYYY-MM-DD` text.
    Date,
}

impl ColumnType {
    /// Every type, as reports name them.
    pub const ALL: [ColumnType; 4] = [ColumnType::Text, ColumnType::Int, ColumnType::Decimal, ColumnType::Date];

    /// The name reports use (`text`, `int`, `decimal`, `date`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Int => "int",
            ColumnType::Decimal => "decimal",
            ColumnType::Date => "date",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Option<ColumnType> {
        ColumnType::ALL.into_iter().find(|t| t.name() == name)
    }

    fn admits(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) => true,
            (ColumnType::Int, Value::Number(n)) => n.is_i64(),
            (ColumnType::Decimal, Value::Number(_)) => true,
            (ColumnType::Decimal, Value::String(s)) => s.parse::<rust_decimal::Decimal>().is_ok(),
            (ColumnType::Text, Value::String(_)) => true,
            (ColumnType::Date, Value::String(s)) => crate::values::date::parse(s).is_ok(),
            _ => false,
        }
    }
}

/// A column of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// A report's result: columns and rows, each row one value per column (`null` where it has
/// none), every value of its column's type. Built only through [`Table::new`], which checks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    /// A table, if every row has a value of the right type for every column; else what is
    /// wrong and where (row numbers from 1).
    pub fn new(columns: Vec<Column>, rows: Vec<Vec<Value>>) -> Result<Table, String> {
        let mut names = std::collections::BTreeSet::new();
        for c in &columns {
            if c.name.is_empty() {
                return Err("a column has an empty name".to_string());
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("column {} appears twice", c.name));
            }
        }
        for (i, row) in rows.iter().enumerate() {
            if row.len() != columns.len() {
                return Err(format!("row {} has {} values for {} columns", i + 1, row.len(), columns.len()));
            }
            for (v, c) in row.iter().zip(&columns) {
                if !c.ty.admits(v) {
                    return Err(format!("row {}, column {}: {v} is not of type {}", i + 1, c.name, c.ty.name()));
                }
            }
        }
        Ok(Table { columns, rows })
    }

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows.
    pub fn rows(&self) -> &[Vec<Value>] {
        &self.rows
    }

    /// The table as CSV: a header row of column names, then the rows (decimals as their
    /// exact text, empty cells for nulls).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        crate::transfer::csv::write_record(&mut out, &names, b',').expect("writing to memory");
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(cell_text).collect();
            let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
            crate::transfer::csv::write_record(&mut out, &refs, b',').expect("writing to memory");
        }
        out
    }
}

/// A cell as plain text: strings as they are, nulls empty, numbers as JSON writes them.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A parameter a report declares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parameter {
    pub name: String,
    /// What it means and how to write it.
    pub description: String,
}

/// What a source says about one of its reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportInfo {
    pub name: String,
    /// The runtime that computes it (`rhai`, `native`, …).
    pub runtime: String,
    /// The parameters it takes; `None` when it does not declare them (any are passed on).
    pub parameters: Option<Vec<Parameter>>,
}

/// A report that could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// No source has a report of this name.
    #[error("there is no report \"{name}\"; the installation has {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NotFound { name: String, known: Vec<String> },
    /// A parameter the report does not declare.
    #[error("report {report}: it has no parameter \"{parameter}\" (it takes {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownParameter { report: String, parameter: String, known: Vec<String> },
    /// The report failed or returned something that is not a table: where and what.
    #[error("{0}")]
    Failed(String),
}

/// Something that computes reports: a runtime's scripts, built-in analytics, a plugin.
pub trait ReportSource: Send + Sync {
    /// The reports it offers.
    fn reports(&self) -> Vec<ReportInfo>;

    /// Computes report `name` with `params` over `view`: the columns and rows, which
    /// [`Reports`] checks into a [`Table`]. An error says where the report failed.
    fn run(
        &self,
        name: &str,
        params: &BTreeMap<String, String>,
        view: &dyn View,
    ) -> Result<(Vec<Column>, Vec<Vec<Value>>), String>;
}

/// The report sources of an installation, asked by name in the order they were added.
#[derive(Clone, Default)]
pub struct Reports {
    sources: Vec<Arc<dyn ReportSource>>,
}

impl fmt::Debug for Reports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reports").field("reports", &self.list()).finish()
    }
}

impl Reports {
    /// No sources.
    pub fn new() -> Reports {
        Reports::default()
    }

    /// Adds a source; a name an earlier source has stays with the earlier one.
    pub fn add(&mut self, source: Arc<dyn ReportSource>) -> &mut Self {
        self.sources.push(source);
        self
    }

    /// Every report, by name.
    pub fn list(&self) -> Vec<ReportInfo> {
        let mut seen = BTreeMap::new();
        for s in &self.sources {
            for r in s.reports() {
                seen.entry(r.name.clone()).or_insert(r);
            }
        }
        seen.into_values().collect()
    }

    /// Report `name` with `params` over `view`, checked.
    pub fn run(&self, name: &str, params: &BTreeMap<String, String>, view: &dyn View) -> Result<Table, ReportError> {
        let found = self.sources.iter().find_map(|s| s.reports().into_iter().find(|r| r.name == name).map(|r| (s, r)));
        let Some((source, info)) = found else {
            return Err(ReportError::NotFound {
                name: name.to_string(),
                known: self.list().into_iter().map(|r| r.name).collect(),
            });
        };
        if let Some(declared) = &info.parameters {
            if let Some(p) = params.keys().find(|p| !declared.iter().any(|d| &d.name == *p)) {
                return Err(ReportError::UnknownParameter {
                    report: name.to_string(),
                    parameter: p.clone(),
                    known: declared.iter().map(|d| d.name.clone()).collect(),
                });
            }
        }
        let (columns, rows) = source.run(name, params, view).map_err(ReportError::Failed)?;
        Table::new(columns, rows).map_err(|m| ReportError::Failed(format!("report {name}: {m}")))
    }
}
