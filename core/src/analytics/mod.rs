//! Built-in sales analytics: reports computed from the stage history, the deals and their
//! documents, offered as one more [`ReportSource`] (runtime `native`) so they print, export
//! and chart like consultants' report scripts. Every report takes the same [`Filter`]
//! (process kind, period, as-of date, manager, department, partner segment) and reads the
//! store through the [`View`] scans, holding aggregates, not records.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;

use crate::hooks::View;
use crate::id::UserId;
use crate::report::{Column, ColumnType, Parameter, ReportInfo, ReportSource};
use crate::time::Timestamp;

/// A built-in report: its name, what it shows, and how it is computed.
struct Builtin {
    name: &'static str,
    about: &'static str,
    run: fn(&dyn View, &Filter) -> Result<Rows, String>,
}

/// A report's columns and rows, as [`ReportSource::run`] answers them.
pub type Rows = (Vec<Column>, Vec<Vec<Value>>);

/// The built-in reports, in the order they are listed.
const BUILTINS: &[Builtin] = &[];

/// The parameters every built-in report takes, with what they mean.
pub const PARAMETERS: &[(&str, &str)] = &[
    ("kind", "a process kind's id: only its deals (default: every kind)"),
    ("from", "YYYY-MM-DD: the period starts on this day (UTC; default: the first day there is)"),
    ("to", "YYYY-MM-DD: the period ends with this day (UTC; default: today)"),
    ("as_of", "YYYY-MM-DD: the state at the end of this day (UTC), replayed from the history (default: now)"),
    ("manager", "a user's login: only the deals this manager holds"),
    ("department", "a department: only the deals of managers in it"),
    ("segment", "a partner segment: only the deals of partners in it"),
];

/// Which deals and which time a report looks at: its parameters, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only deals of this process kind.
    pub kind: Option<String>,
    /// The period's first day.
    pub from: Option<NaiveDate>,
    /// The period's last day.
    pub to: Option<NaiveDate>,
    /// The state at the end of this day rather than now.
    pub as_of: Option<NaiveDate>,
    /// Only deals this manager holds.
    pub manager: Option<UserId>,
    /// Only deals of managers in this department.
    pub department: Option<String>,
    /// Only deals of partners in this segment.
    pub segment: Option<String>,
}

impl Filter {
    /// The filter `params` write, checked against the installation: an unknown kind or
    /// login, a date that is not `YYYY-MM-DD`, a period that ends before it starts — each
    /// named with the parameter.
    pub fn from_params(params: &BTreeMap<String, String>, view: &dyn View) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (name, value) in params {
            let date = || crate::values::date::parse(value).map_err(|e| format!("parameter {name}: {e}"));
            match name.as_str() {
                "kind" => {
                    if !view.settings().process_kinds.iter().any(|k| k.id == *value) {
                        let known: Vec<&str> = view.settings().process_kinds.iter().map(|k| k.id.as_str()).collect();
                        return Err(format!(
                            "parameter kind: there is no process kind \"{value}\" (kinds: {})",
                            known.join(", ")
                        ));
                    }
                    f.kind = Some(value.clone());
                }
                "from" => f.from = Some(date()?),
                "to" => f.to = Some(date()?),
                "as_of" => f.as_of = Some(date()?),
                "manager" => {
                    let user = view.user_with_login(value).map_err(|e| format!("parameter manager: {e}"))?;
                    let user = user.ok_or_else(|| format!("parameter manager: there is no user \"{value}\""))?;
                    f.manager = Some(user.id);
                }
                "department" => f.department = Some(value.clone()),
                "segment" => f.segment = Some(value.clone()),
                other => return Err(format!("there is no parameter \"{other}\"")),
            }
        }
        if let (Some(from), Some(to)) = (f.from, f.to) {
            if to < from {
                return Err(format!("parameter to: the period ends ({to}) before it starts ({from})"));
            }
        }
        Ok(f)
    }

    /// The instant the report looks at: the end of `as_of` (its last millisecond), else
    /// `now`.
    pub fn instant(&self, now: Timestamp) -> Timestamp {
        match self.as_of {
            Some(day) => Timestamp::start_of(day.succ_opt().unwrap_or(day)).plus_millis(-1),
            None => now,
        }
    }
}

/// A column of `name` and type `ty`.
pub fn column(name: &str, ty: ColumnType) -> Column {
    Column { name: name.to_string(), ty }
}

/// The built-in reports as a report source.
#[derive(Clone, Copy, Debug, Default)]
pub struct Analytics;

impl ReportSource for Analytics {
    fn reports(&self) -> Vec<ReportInfo> {
        BUILTINS
            .iter()
            .map(|b| ReportInfo {
                name: b.name.to_string(),
                runtime: "native".to_string(),
                parameters: Some(
                    PARAMETERS
                        .iter()
                        .map(|(n, d)| Parameter { name: n.to_string(), description: d.to_string() })
                        .collect(),
                ),
            })
            .collect()
    }

    fn run(&self, name: &str, params: &BTreeMap<String, String>, view: &dyn View) -> Result<Rows, String> {
        let report = BUILTINS.iter().find(|b| b.name == name).ok_or_else(|| format!("there is no report {name}"))?;
        let filter = Filter::from_params(params, view).map_err(|m| format!("report {name}: {m}"))?;
        (report.run)(view, &filter).map_err(|m| format!("report {name}: {m}"))
    }
}

/// What each built-in report shows, by name.
pub fn about() -> Vec<(&'static str, &'static str)> {
    BUILTINS.iter().map(|b| (b.name, b.about)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_the_last_instant_of_its_day() {
        let f = Filter { as_of: NaiveDate::from_ymd_opt(2026, 3, 31), ..Filter::default() };
        assert_eq!(f.instant(Timestamp(0)).to_string(), "2026-03-31T23:59:59.999Z");
        assert_eq!(Filter::default().instant(Timestamp(5)), Timestamp(5));
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert_eq!(Timestamp::start_of(day).to_string(), "2026-01-01T00:00:00.000Z");
    }
}
