//! Built-in sales analytics: reports computed from the stage history, the deals and their
//! documents, offered as one more [`ReportSource`] (runtime `native`) so they print, export
//! and chart like consultants' report scripts. Every report takes the same [`Filter`]
//! (process kind, period, as-of date, manager, department, partner segment) and reads the
//! store through the [`View`] scans, holding aggregates, not records.

mod bottlenecks;
mod calibration;
mod chart;
pub mod claims;
mod clients;
mod cohorts;
mod execution;
mod lost;
mod loyalty;
mod managers;
pub mod model;
mod rfm;
mod scope;
pub(crate) mod split;
mod win_probability;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::NaiveDate;
use serde_json::Value;

mod funnel;

pub use clients::{client_classes, ClientClass, ClientClasses};

use crate::hooks::View;
use crate::id::{PartnerId, UserId};
use crate::report::{Column, ColumnType, Parameter, ReportInfo, ReportSource, Table};
use crate::store::DealRow;
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
const BUILTINS: &[Builtin] = &[
    Builtin { name: "funnel", about: funnel::ABOUT, run: funnel::run },
    Builtin { name: "bottlenecks", about: bottlenecks::ABOUT, run: bottlenecks::run },
    Builtin {
        name: "lost",
        about: "lost deals of the period by reason, stage reached, competitor, manager, kind and month: deals, share, amount, days to loss",
        run: lost::run,
    },
    Builtin {
        name: "managers",
        about: "per manager: deals opened, won and lost, win rate, revenue, average deal, cycle time, calls, meetings, e-mails, tasks done and overdue, conversion against the team's, plan coverage",
        run: managers::run,
    },
    Builtin { name: "win-probability", about: win_probability::ABOUT, run: win_probability::run },
    Builtin { name: "calibration", about: calibration::ABOUT, run: calibration::run },
    Builtin { name: "execution", about: execution::ABOUT, run: execution::run },
    Builtin { name: "abc-xyz", about: clients::ABC_XYZ, run: clients::run_abc_xyz },
    Builtin { name: "bcg", about: clients::BCG, run: clients::run_bcg },
    Builtin { name: "rfm", about: rfm::ABOUT, run: rfm::run },
    Builtin { name: "cohorts", about: cohorts::ABOUT, run: cohorts::run },
    Builtin { name: "loyalty", about: loyalty::ABOUT, run: loyalty::run },
    Builtin { name: "claims", about: claims::ABOUT, run: claims::run },
];

/// The built-in reports that draw a chart, and how: from the report's table to an SVG
/// document.
const CHARTS: &[(&str, Draw)] = &[
    ("funnel", funnel::svg),
    ("bottlenecks", chart::bottlenecks),
    ("lost", chart::lost),
    ("managers", chart::managers),
    ("abc-xyz", chart::abc_xyz),
    ("bcg", clients::svg),
];

/// Draws a report's table as an SVG document.
type Draw = fn(&Table) -> Result<String, String>;

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

    /// The period as instants: from the start of `from` to the last millisecond of `to`
    /// (either end open when not given), and never past the instant `as_of` looks at.
    pub fn period(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        let start = self.from.map(Timestamp::start_of);
        let end = self.to.map(end_of);
        let end = match (end, self.as_of.map(end_of)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (start, end)
    }

    /// Whether `at` falls in [`Filter::period`].
    pub fn in_period(&self, at: Timestamp) -> bool {
        let (start, end) = self.period();
        start.is_none_or(|s| at >= s) && end.is_none_or(|e| at <= e)
    }

    /// Which deals the filter admits, made ready for a scan: the users of `department` and
    /// the partners of `segment` are looked up once. A department no user is in, or a segment
    /// no partner is in, is refused, naming the ones there are.
    pub fn deals(&self, view: &dyn View) -> Result<DealScope, String> {
        let mut scope = DealScope { kind: self.kind.clone(), manager: self.manager, ..DealScope::default() };
        if let Some(department) = &self.department {
            let (mut users, mut known) = (HashSet::new(), BTreeSet::new());
            view.each_user(&mut |u| {
                if let Some(d) = &u.department {
                    if d == department {
                        users.insert(u.id);
                    }
                    known.insert(d.clone());
                }
                true
            })
            .map_err(|e| e.to_string())?;
            if users.is_empty() {
                return Err(format!(
                    "parameter department: no user is in department \"{department}\" (departments: {})",
                    list(known)
                ));
            }
            scope.managers = Some(users);
        }
        if let Some(segment) = &self.segment {
            let (mut partners, mut known) = (HashSet::new(), BTreeSet::new());
            view.each_partner(&mut |p| {
                if let Some(s) = &p.segment {
                    if s == segment {
                        partners.insert(p.id);
                    }
                    known.insert(s.clone());
                }
                true
            })
            .map_err(|e| e.to_string())?;
            if partners.is_empty() {
                return Err(format!(
                    "parameter segment: no partner is in segment \"{segment}\" (segments: {})",
                    list(known)
                ));
            }
            scope.partners = Some(partners);
        }
        Ok(scope)
    }

    /// The instant the report looks at: the end of `as_of` (its last millisecond), else
    /// `now`.
    pub fn instant(&self, now: Timestamp) -> Timestamp {
        match self.as_of {
            Some(day) => end_of(day),
            None => now,
        }
    }
}

/// The last millisecond of `day`.
fn end_of(day: NaiveDate) -> Timestamp {
    Timestamp::start_of(day.succ_opt().unwrap_or(day)).plus_millis(-1)
}

/// `items` joined by commas, or `none`.
fn list(items: BTreeSet<String>) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// The deals a [`Filter`] admits, by what a deal record says: its kind, its manager (now),
/// the manager's department and the partner's segment (now).
#[derive(Clone, Debug, Default)]
pub struct DealScope {
    kind: Option<String>,
    manager: Option<UserId>,
    managers: Option<HashSet<UserId>>,
    partners: Option<HashSet<PartnerId>>,
}

impl DealScope {
    /// Whether the report counts `deal`.
    pub fn admits(&self, deal: &DealRow) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == deal.kind)
            && self.manager.is_none_or(|m| m == deal.manager)
            && self.managers.as_ref().is_none_or(|m| m.contains(&deal.manager))
            && self.partners.as_ref().is_none_or(|p| p.contains(&deal.partner))
    }

    /// Whether the report counts the deals of `kind` that `manager` holds, when the scope
    /// names no partners (`None` when it does: that takes the deal itself).
    pub fn admits_line(&self, kind: &str, manager: UserId) -> Option<bool> {
        self.partners.is_none().then(|| {
            self.kind.as_ref().is_none_or(|k| k == kind)
                && self.manager.is_none_or(|m| m == manager)
                && self.managers.as_ref().is_none_or(|m| m.contains(&manager))
        })
    }

    /// Whether the scope takes the deals of every manager: it names no manager, department
    /// or partners (the rollup lines of the funnel totals then add up its deals).
    pub fn takes_every_manager(&self) -> bool {
        self.partners.is_none() && self.manager.is_none() && self.managers.is_none()
    }

    /// Whether the report counts deals of `kind`.
    pub fn admits_kind(&self, kind: &str) -> bool {
        self.kind.as_ref().is_none_or(|k| k == kind)
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

/// The built-in reports with an installation's hook bindings: the calibration report also
/// backtests the handlers bound at `deal.score` (the others are the same as [`Analytics`]'s).
#[derive(Clone)]
pub struct AnalyticsWithHooks(pub crate::hooks::Hooks);

impl ReportSource for AnalyticsWithHooks {
    fn reports(&self) -> Vec<ReportInfo> {
        Analytics.reports()
    }

    fn run(&self, name: &str, params: &BTreeMap<String, String>, view: &dyn View) -> Result<Rows, String> {
        if name != "calibration" {
            return Analytics.run(name, params, view);
        }
        let filter = Filter::from_params(params, view).map_err(|m| format!("report {name}: {m}"))?;
        calibration::run_with(view, &filter, Some(&self.0)).map_err(|m| format!("report {name}: {m}"))
    }
}

/// The built-in reports that draw a chart (`--format svg`, `Accept: image/svg+xml`).
pub fn charts() -> Vec<&'static str> {
    CHARTS.iter().map(|(name, _)| *name).collect()
}

/// Report `name`'s `table` drawn as an SVG document; `None` when the report has no chart.
pub fn chart(name: &str, table: &Table) -> Option<Result<String, String>> {
    CHARTS.iter().find(|(n, _)| *n == name).map(|(n, draw)| draw(table).map_err(|m| format!("report {n}: chart: {m}")))
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
