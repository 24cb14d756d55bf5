//! Custom reports as a [`ReportSource`]: `scripts/reports/NAME.rhai` defines
//! `report(params)`, which reads the store and returns a table —
//! `#{ columns: [#{ name, type }], rows: [[…], …] }` with the types `text`, `int`,
//! `decimal` and `date` — and may declare its parameters with `parameters()`, returning
//! `[#{ name: "from", description: "…" }, …]`. Core checks the parameters and the table.

use std::collections::BTreeMap;
use std::sync::Arc;

use crmkit_core::hooks::{CallLimits, View};
use crmkit_core::report::{Column, ColumnType, Parameter, ReportInfo, ReportSource};
use rhai::{Dynamic, Map};
use serde_json::Value;

use crate::{ScriptError, ScriptHost};

/// The file of report `name`.
pub fn report_file(name: &str) -> String {
    format!("reports/{name}.rhai")
}

/// The reports the host's folder has, by name.
pub fn reports(host: &ScriptHost) -> Vec<String> {
    host.files().iter().filter_map(|f| f.strip_prefix("reports/")?.strip_suffix(".rhai").map(str::to_string)).collect()
}

/// The reports of a script host's `scripts/reports/`.
pub struct RhaiReports {
    host: Arc<ScriptHost>,
}

impl RhaiReports {
    /// The reports of `host`.
    pub fn new(host: Arc<ScriptHost>) -> RhaiReports {
        RhaiReports { host }
    }

    /// The parameters report `file` declares (`None`: it defines no `parameters()`); an
    /// error when `parameters()` fails or answers something else than a list of them.
    fn parameters(&self, file: &str) -> Result<Option<Vec<Parameter>>, String> {
        if self.host.check_function(file, "parameters", 0).is_err() {
            return Ok(None);
        }
        let out = self.host.call(file, "parameters", Vec::new(), CallLimits::default()).map_err(|e| e.to_string())?;
        let shape = || {
            format!(
                "scripts/{file}: parameters() returns [#{{ name: \"…\", description: \"…\" }}, …], not {}",
                out.type_name()
            )
        };
        let list: Vec<BTreeMap<String, String>> = rhai::serde::from_dynamic(&out).map_err(|_| shape())?;
        list.into_iter()
            .map(|p| {
                let name = p.get("name").filter(|n| !n.is_empty()).ok_or_else(shape)?.clone();
                Ok(Parameter { name, description: p.get("description").cloned().unwrap_or_default() })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

impl ReportSource for RhaiReports {
    fn reports(&self) -> Vec<ReportInfo> {
        reports(&self.host)
            .into_iter()
            .map(|name| {
                // A broken declaration is reported when the report is run.
                let parameters = self.parameters(&report_file(&name)).unwrap_or(None);
                ReportInfo { name, runtime: crate::RUNTIME.to_string(), parameters }
            })
            .collect()
    }

    fn run(
        &self,
        name: &str,
        params: &BTreeMap<String, String>,
        view: &dyn View,
    ) -> Result<(Vec<Column>, Vec<Vec<Value>>), String> {
        let file = report_file(name);
        let host = &self.host;
        host.check_function(&file, "report", 1).map_err(|e| e.to_string())?;
        self.parameters(&file)?;
        let args: Map = params.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone()))).collect();
        let limits = CallLimits {
            timeout_ms: Some(host.limits().report_timeout_ms),
            max_operations: Some(host.limits().report_max_operations),
        };
        let out = host.call_report(view, &file, "report", vec![args.into()], limits).map_err(|e| e.to_string())?;
        table(out).map_err(|m| {
            ScriptError { file, line: None, column: None, function: Some("report".into()), message: m }.to_string()
        })
    }
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

/// Converts what `report` returned into columns and rows (core checks their types).
fn table(out: Dynamic) -> Result<(Vec<Column>, Vec<Vec<Value>>), String> {
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
            let name = c.get("name").cloned().ok_or_else(|| format!("column {} has no name", i + 1))?;
            let ty = c.get("type").map_or("text", String::as_str);
            let ty = ColumnType::from_name(ty).ok_or_else(|| {
                let types: Vec<&str> = ColumnType::ALL.iter().map(|t| t.name()).collect();
                format!("column {name}: \"{ty}\" is not a type ({})", types.join(", "))
            })?;
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
    Ok((columns, rows))
}
