//! A row of the file as the converter reads it: its cells (CSV text or JSONL values), the
//! raw row kept for a second conversion, and a row's failure as (field, message).

use serde_json::{Map, Value};

use super::super::csv::Record;

/// A cell of a row: text from CSV, a value from JSONL.
pub(super) enum Cell<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl Cell<'_> {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Cell::Text(s) => s.trim().is_empty(),
            Cell::Json(Value::Null) => true,
            Cell::Json(Value::String(s)) => s.trim().is_empty(),
            Cell::Json(Value::Array(a)) => a.is_empty(),
            Cell::Json(_) => false,
        }
    }

    /// The cell as text (JSON strings, numbers and booleans read as their text).
    pub(super) fn text(&self) -> Result<std::borrow::Cow<'_, str>, String> {
        match self {
            Cell::Text(s) => Ok(std::borrow::Cow::Borrowed(s.trim())),
            Cell::Json(Value::String(s)) => Ok(std::borrow::Cow::Borrowed(s.trim())),
            Cell::Json(v @ (Value::Number(_) | Value::Bool(_))) => Ok(std::borrow::Cow::Owned(v.to_string())),
            Cell::Json(v) => Err(format!("expected a single value, got {}", kind_of(v))),
        }
    }

    /// The cell as a list: a JSON array, JSON array text, or `;`-separated text.
    pub(super) fn list(&self) -> Result<Vec<String>, String> {
        let from_array = |a: &Vec<Value>| {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_string()),
                    Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                    _ => Err(format!("a list holds text values, not {}", kind_of(v))),
                })
                .collect::<Result<Vec<String>, String>>()
        };
        match self {
            Cell::Json(Value::Array(a)) => from_array(a),
            _ => {
                let text = self.text()?;
                if text.starts_with('[') {
                    match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Array(a)) => return from_array(&a),
                        _ => return Err(format!("\"{text}\" starts like a JSON array but is not one")),
                    }
                }
                Ok(text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            }
        }
    }

    /// The cell as a JSON value: JSONL values as they are, CSV text parsed.
    pub(super) fn json(&self) -> Result<Value, String> {
        match self {
            Cell::Json(v) => Ok((*v).clone()),
            Cell::Text(s) => serde_json::from_str(s).map_err(|e| format!("is not valid JSON: {e}")),
        }
    }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A row read from the file.
pub(super) struct Row<'a> {
    pub(super) source: RowSource<'a>,
}

pub(super) enum RowSource<'a> {
    /// A CSV record and, per column, its field number.
    Csv(&'a Record, &'a [Option<usize>]),
    /// A JSONL object and, per column, the key the file uses for it.
    Json(&'a Map<String, Value>, &'a [Option<String>]),
}

impl Row<'_> {
    /// The cell of column `i`; `None` when the file has no such column.
    pub(super) fn cell(&self, i: usize) -> Result<Option<Cell<'_>>, String> {
        match &self.source {
            RowSource::Csv(rec, at) => match at[i] {
                Some(f) => std::str::from_utf8(rec.field(f)).map(|s| Some(Cell::Text(s))).map_err(|e| {
                    format!(
                        "is not valid UTF-8 (a broken byte sequence at byte {} of the value); save the file as UTF-8 (it may be in Windows-1251)",
                        e.valid_up_to() + 1
                    )
                }),
                None => Ok(None),
            },
            RowSource::Json(obj, keys) => Ok(keys[i].as_ref().and_then(|k| obj.get(k)).map(Cell::Json)),
        }
    }
}

/// A row as read, kept for the writer to convert again against its transaction.
pub(super) enum RawRow {
    Csv(Record),
    Json(Map<String, Value>, Vec<Option<String>>),
}

pub(super) type RowFailure = (Option<String>, (String, String));

pub(super) fn field_err(field: &str, message: impl Into<String>) -> (String, String) {
    (field.to_string(), message.into())
}
