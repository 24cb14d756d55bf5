//! Custom reports: `scripts/reports/NAME.rhai` defines `report(params)`, which reads the
//! store and returns a table — `#{ columns: [#{ name, type }], rows: [[…], …] }` with the
//! types `text`, `int`, `decimal` and `date`.

use std::collections::BTreeMap;

use crmkit_core::process::{CallLimits, View};
use rhai::{Dynamic, Map};
use serde::Serialize;
use serde_json::Value;

use crate::{ScriptError, ScriptHost};

/// A column of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// `text`, `int`, `decimal` or `date`.
    #[serde(rename = "type")]
    pub ty: String,
}

/// What a report returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    pub columns: Vec<Column>,
    /// One value per column; `null` where a row has none.
    pub rows: Vec<Vec<Value>>,
}

const TYPES: [&str; 4] = ["text", "int", "decimal", "date"];

impl Table {
    /// The table as CSV: a header row of column names, then the rows (decimals as their
    /// exact text, empty cells for nulls).
    pub fn to_csv(&self) -> Vec<u8> {
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut out = Vec::new();
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        crmkit_core::transfer::csv::write_record(&mut out, &names, b',').expect("writing to memory");
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(text).collect();
            let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
            crmkit_core::transfer::csv::write_record(&mut out, &refs, b',').expect("writing to memory");
        }
        out
    }
}

/// The file of report `name`.
pub fn report_file(name: &str) -> String {
    format!("reports/{name}.rhai")
}

/// The reports the host's folder has, by name.
pub fn reports(host: &ScriptHost) -> Vec<String> {
    host.files().iter().filter_map(|f| f.strip_prefix("reports/")?.strip_suffix(".rhai").map(str::to_string)).collect()
}

/// Runs report `name` with `params` over `view`, under the installation's report limits.
pub fn run_report(
    host: &ScriptHost,
    view: &dyn View,
    name: &str,
    params: &BTreeMap<String, String>,
) -> Result<Table, ScriptError> {
    let file = report_file(name);
    if !host.files().contains(&file) {
        let known = reports(host);
        return Err(ScriptError {
            file,
            line: None,
            column: None,
            function: None,
            message: format!(
                "there is no such report; the installation has {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        });
    }
    host.check_function(&file, "report", 1)?;
    let args: Map = params.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone()))).collect();
    let limits = CallLimits {
        timeout_ms: Some(host.limits().report_timeout_ms),
        max_operations: Some(host.limits().report_max_operations),
    };
    let out = host.call_report(view, &file, "report", vec![args.into()], limits)?;
    table(out).map_err(|m| ScriptError { file, line: None, column: None, function: Some("report".into()), message: m })
}

/// A cell as JSON: decimals as their exact text.
fn json_of(v: &Dynamic) -> Result<Value, String> {
    if v.is_unit() {
        return Ok(Value::Null);
    }
    if let Some(d) = v.clone().try_cast::<rust_decimal::Decimal>() {
        return Ok(Value::String(d.normalize().to_string()));
    }
    rhai::serde::from_dynamic(v).map_err(|e| format!("{} cannot be a cell: {e}", v.type_name()))
}

/// Checks and converts what `report` returned.
fn table(out: Dynamic) -> Result<Table, String> {
    let shape = "a report returns #{ columns: [#{ name: \"…\", type: \"text\" }, …], rows: [[…], …] }";
    let got = out.type_name();
    let map = out.try_cast::<Map>().ok_or_else(|| format!("returned {got}; {shape}"))?;
    let columns: Vec<Column> = map
        .get("columns")
        .and_then(|c| rhai::serde::from_dynamic::<Vec<BTreeMap<String, String>>>(c).ok())
        .ok_or_else(|| format!("has no list of columns: {shape}"))?
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.get("name").cloned().ok_or_else(|| format!("column {i} has no name"))?;
            let ty = c.get("type").cloned().unwrap_or_else(|| "text".into());
            if !TYPES.contains(&ty.as_str()) {
                return Err(format!("column {name}: \"{ty}\" is not a type ({})", TYPES.join(", ")));
            }
            Ok(Column { name, ty })
        })
        .collect::<Result<_, String>>()?;
    let rows = map.get("rows").ok_or_else(|| format!("has no rows: {shape}"))?;
    let rows: Vec<Vec<Value>> = rows
        .as_array_ref()
        .map_err(|_| format!("rows are {}, not an array: {shape}", rows.type_name()))?
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let row = row.as_array_ref().map_err(|_| format!("row {} is {}, not an array", i + 1, row.type_name()))?;
            row.iter().map(json_of).collect::<Result<Vec<_>, String>>().map_err(|e| format!("row {}: {e}", i + 1))
        })
        .collect::<Result<_, String>>()?;
    for (i, row) in rows.iter().enumerate() {
        if row.len() != columns.len() {
            return Err(format!("row {} has {} values for {} columns", i + 1, row.len(), columns.len()));
        }
        for (v, c) in row.iter().zip(&columns) {
            let fits = match (c.ty.as_str(), v) {
                (_, Value::Null) => true,
                ("int", Value::Number(n)) => n.is_i64(),
                ("decimal", Value::Number(_)) => true,
                ("decimal", Value::String(s)) => s.parse::<rust_decimal::Decimal>().is_ok(),
                ("text" | "date", Value::String(_)) => true,
                _ => false,
            };
            if !fits {
                return Err(format!("row {}, column {}: {v} is not of type {}", i + 1, c.name, c.ty));
            }
        }
    }
    Ok(Table { columns, rows })
}
