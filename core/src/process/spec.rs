//! What config declares about sales processes: process kinds, their stages and routes,
//! the tasks stages create, and which hook handlers run where.

use serde::Serialize;

use super::condition::Condition;
use crate::model::ListItem;
use crate::model::Role;

/// How a process kind's deals move through their stages (as in 1C:ERP 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The route moves the deal: entering a stage creates its tasks, and when the required
    /// tasks are done and the exit conditions hold, the deal goes on by itself. Managers
    /// cannot skip stages forward.
    Managed,
    /// Managers move the deal to any allowed stage; guards and exit requirements still apply.
    Manual,
    /// No stages: the deal only has a status (a folder for a long project).
    Stageless,
}

impl Mode {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Managed => "managed",
            Mode::Manual => "manual",
            Mode::Stageless => "stageless",
        }
    }
}

/// A guidance document kept with a process kind or a stage: instructions, regulations,
/// document templates. Either a link or a file of the installation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Guidance {
    pub title: String,
    /// A URL.
    pub url: Option<String>,
    /// A path relative to the installation folder.
    pub file: Option<String>,
}

/// Who gets a task a stage creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignee {
    /// The deal's manager.
    Manager,
    /// The first active user with this role in the manager's department (else anywhere).
    Role(Role),
    /// A named user (login).
    User(String),
    /// The `task.assignee` hook decides (the manager when it has no answer).
    Hook,
}

/// A task a stage creates on entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskTemplate {
    pub title: String,
    pub description: String,
    pub assignee: Assignee,
    /// Due this long after the stage is entered, in milliseconds.
    pub due_ms: Option<i64>,
    /// The stage cannot be left while the task is open.
    pub required: bool,
}

/// A branch of a managed route: go to `to` when `when` holds (always when none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub to: String,
    #[serde(serialize_with = "condition_text")]
    pub when: Option<Condition>,
}

fn condition_text<S: serde::Serializer>(c: &Option<Condition>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&c.as_ref().map(Condition::text))
}

/// A stage of a process kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageSpec {
    pub id: String,
    pub name: String,
    /// How long a deal is expected to stay, in milliseconds.
    pub sla_ms: Option<i64>,
    /// The win probability a deal gets on entering the stage, in percent.
    pub probability: Option<u8>,
    /// Deal fields that must have a value before the deal leaves the stage forward
    /// (`amount`, `expected_close`, `custom.NAME`, …).
    pub required_fields: Vec<String>,
    /// Items a manager ticks off before the deal leaves the stage forward.
    pub checklist: Vec<ListItem>,
    /// Tasks created when a deal of a managed kind enters the stage.
    pub tasks: Vec<TaskTemplate>,
    pub guidance: Vec<Guidance>,
    /// The stages a deal may move to from here (besides closing, always allowed).
    pub to: Vec<String>,
    /// Managed kinds: the branches of the route, tried in order.
    pub routes: Vec<Route>,
    /// A further condition for leaving the stage forward.
    #[serde(serialize_with = "condition_text")]
    pub exit_when: Option<Condition>,
}

/// A process kind (вид сделки).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessKindSpec {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub stages: Vec<StageSpec>,
    /// The loss reasons this kind uses (ids of `lists.loss_reasons`).
    pub loss_reasons: Vec<String>,
    /// Whether a lost deal must name the winning competitor.
    pub require_competitor: bool,
    /// Whether a lost deal must carry a comment.
    pub require_loss_comment: bool,
    /// Who may reopen a closed deal.
    pub reopen_roles: Vec<Role>,
    pub guidance: Vec<Guidance>,
}

impl ProcessKindSpec {
    /// The stage with this id.
    pub fn stage(&self, id: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The position of a stage in the route.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }
}

/// Engine-wide process settings (`[process]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessSettings {
    /// How deep reactions may trigger further reactions.
    pub max_reaction_depth: u32,
    /// Roles that may complete or cancel another user's task.
    pub complete_others_tasks: Vec<Role>,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        ProcessSettings { max_reaction_depth: 3, complete_others_tasks: vec![Role::Admin, Role::Head] }
    }
}

/// Parses a duration written as `30m`, `4h`, `2d` or `1w`, in milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("\"{text}\" is not a duration like 30m, 4h, 2d or 1w"))?;
    let unit_ms = match unit.trim() {
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(format!("\"{text}\" is not a duration like 30m, 4h, 2d or 1w")),
    };
    if n > 3650 * 86_400_000 / unit_ms {
        return Err(format!("\"{text}\" is longer than ten years"));
    }
    Ok(n * unit_ms)
}
