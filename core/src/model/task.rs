//! Tasks: work assigned to an employee, usually created by a deal's stage on entry.

use serde::{Deserialize, Serialize};

use super::rules::{optional_text, refuse_changed, required_text, trim};
use super::Index;
use super::{entity_meta, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref, StageChange};
use crate::id::{ClaimId, DealId, TaskId, UserId};
use crate::time::Timestamp;

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Open,
    Done,
    Cancelled,
}

impl TaskStatus {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Done => "done",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// A piece of work for one executor, with a due instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it, or whose step made a stage create it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Who has to do it.
    pub executor: UserId,
    #[serde(default)]
    pub due: Option<Timestamp>,
    pub status: TaskStatus,
    /// The deal it belongs to.
    #[serde(default)]
    pub deal: Option<DealId>,
    /// The stage of the deal that created it.
    #[serde(default)]
    pub stage: Option<String>,
    /// Whether the stage cannot be left while the task is open.
    #[serde(default)]
    pub required: bool,
    /// When it was done or cancelled.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// Who did or cancelled it.
    #[serde(default)]
    pub finished_by: Option<UserId>,
    /// The claim it is work on (last: records from before schema 17 end before it).
    #[serde(default)]
    pub claim: Option<ClaimId>,
}

impl Task {
    /// A new open task; the store assigns id and instants.
    pub fn new(title: impl Into<String>, executor: UserId) -> Task {
        Task {
            id: TaskId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            title: title.into(),
            description: String::new(),
            executor,
            due: None,
            status: TaskStatus::Open,
            deal: None,
            stage: None,
            claim: None,
            required: false,
            finished_at: None,
            finished_by: None,
        }
    }

    /// Whether the task is open and its due instant has passed at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        self.status == TaskStatus::Open && self.due.is_some_and(|d| d < now)
    }
}

/// The index prefix of a user's tasks in one status.
pub fn executor_prefix(executor: UserId, status: TaskStatus) -> Vec<u8> {
    let mut p = executor.0.to_bytes().to_vec();
    p.push(status as u8);
    p
}

/// The index prefix of open tasks due at `due`: the instant, big-endian, offset so that
/// byte order is time order.
pub fn due_prefix(due: Timestamp) -> Vec<u8> {
    ((due.0 as u64) ^ (1 << 63)).to_be_bytes().to_vec()
}

impl Entity for Task {
    const KIND: EntityKind = EntityKind::Task;
    const TABLE: &'static str = "tasks";
    type Id = TaskId;
    entity_meta!(TaskId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.title);
        Ok(())
    }

    /// A task created outside the engine is open; it is finished through the engine.
    fn created_outside_engine(
        &mut self,
        _cx: Cx<'_>,
        _actor: Option<UserId>,
    ) -> Result<Option<StageChange>, FieldError> {
        if self.status != TaskStatus::Open {
            return Err(FieldError::new(
                Self::KIND,
                "status",
                "a new task is open; it is finished through the process engine",
            ));
        }
        Ok(None)
    }

    /// Outside the process engine, a task's state does not change (who may finish a task,
    /// and whether a stage's work is done, are process rules), nor anything of a finished
    /// task: the managers' figures count it as it was.
    fn check_change(&self, new: &Self, by_engine: bool) -> Result<(), FieldError> {
        if by_engine {
            return Ok(());
        }
        let changed = [
            ("status", self.status != new.status),
            ("finished_at", self.finished_at != new.finished_at),
            ("finished_by", self.finished_by != new.finished_by),
            ("required", self.required != new.required),
            ("stage", self.stage != new.stage),
            ("deal", self.deal != new.deal),
            ("claim", self.claim != new.claim),
        ];
        refuse_changed(
            Self::KIND,
            &changed,
            "changes only through the process engine (complete_task, cancel_task), which applies who may finish it",
        )?;
        if self.status != TaskStatus::Open {
            let changed = [
                ("title", self.title != new.title),
                ("description", self.description != new.description),
                ("executor", self.executor != new.executor),
                ("due", self.due != new.due),
            ];
            refuse_changed(Self::KIND, &changed, "does not change once the task is done or cancelled")?;
        }
        Ok(())
    }

    /// A task a stage created is the process's: only the engine deletes it.
    fn check_delete(&self, by_engine: bool, _history_steps: u32) -> Result<(), String> {
        if self.stage.is_some() && !by_engine {
            return Err(format!(
                "task {} was created by stage \"{}\" of its deal's process and cannot be deleted; a head may cancel it",
                self.id,
                self.stage.as_deref().unwrap_or_default()
            ));
        }
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        required_text(k, "title", &self.title, 300)?;
        optional_text(k, "description", &self.description, 10_000)?;
        match (self.status, self.finished_at) {
            (TaskStatus::Open, Some(_)) => {
                return Err(FieldError::new(k, "finished_at", "is only set on a done or cancelled task"))
            }
            (TaskStatus::Done | TaskStatus::Cancelled, None) => {
                return Err(FieldError::new(k, "finished_at", "is required on a done or cancelled task"))
            }
            _ => {}
        }
        if self.stage.is_some() && self.deal.is_none() {
            return Err(FieldError::new(k, "stage", "is only set on a task of a deal"));
        }
        Ok(())
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("executor", EntityKind::User, self.executor));
        if let Some(d) = self.deal {
            out.push(Ref::new("deal", EntityKind::Deal, d));
        }
        if let Some(c) = self.claim {
            out.push(Ref::new("claim", EntityKind::Claim, c));
        }
        if let Some(u) = self.finished_by {
            out.push(Ref::new("finished_by", EntityKind::User, u));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry { index: Index::TaskByExecutor, prefix: executor_prefix(self.executor, self.status) });
        if let Some(d) = self.deal {
            out.push(IndexEntry::by_id(Index::TaskByDeal, d));
        }
        if let Some(c) = self.claim {
            out.push(IndexEntry::by_id(Index::TaskByClaim, c));
        }
        if let (TaskStatus::Open, Some(due)) = (self.status, self.due) {
            out.push(IndexEntry { index: Index::TaskOpenByDue, prefix: due_prefix(due) });
        }
    }
}
