//! Tasks inside an operation: a managed stage's tasks on entry and who gets each, and
//! completing or cancelling a task, which may move the deal on.

use super::{process, Cx};
use crate::hooks::{fault, Answer, HookPoint, Subject};
use crate::id::{TaskId, TypedId, UserId};
use crate::model::{Deal, EntityKind, Task, TaskStatus, User};
use crate::process::spec::{Assignee, Mode, ProcessKindSpec};
use crate::store::{Reader, WriteTxn};
use crate::{Error, Result};

impl Cx<'_> {
    /// Creates the tasks of the deal's (new) stage, for managed kinds.
    /// (An imported deal may be on hold in its stage: it gets the stage's tasks too.)
    pub(super) fn enter_stage(&self, tx: &mut WriteTxn<'_>, deal: &Deal, kind: &ProcessKindSpec) -> Result<()> {
        if kind.mode != Mode::Managed || deal.status.is_closed() {
            return Ok(());
        }
        let Some(stage) = deal.stage.as_deref().and_then(|s| kind.stage(s)) else { return Ok(()) };
        let now = self.now(tx);
        for tpl in &stage.tasks {
            let mut task = Task::new(tpl.title.clone(), deal.manager);
            task.description = tpl.description.clone();
            task.deal = Some(deal.id);
            task.stage = Some(stage.id.clone());
            task.required = tpl.required;
            task.due = tpl.due_ms.map(|ms| now.plus_millis(ms));
            task.executor = self.assignee(tx, deal, &kind.id, &tpl.assignee, &task)?;
            tx.create(task)?;
        }
        Ok(())
    }

    fn assignee(&self, tx: &WriteTxn<'_>, deal: &Deal, kind: &str, rule: &Assignee, task: &Task) -> Result<UserId> {
        let by_login = |login: &str, what: &str| -> Result<UserId> {
            match tx.user_by_login(login)? {
                Some(u) if u.active => Ok(u.id),
                Some(_) => Err(process(deal.id, format!("{what}: user \"{login}\" is deactivated"))),
                None => Err(process(deal.id, format!("{what}: there is no user \"{login}\""))),
            }
        };
        match rule {
            Assignee::Manager => Ok(deal.manager),
            Assignee::User(login) => by_login(login, "task assignee"),
            Assignee::Role(role) => {
                let manager: User = tx.load(deal.manager)?;
                let mut any = None;
                let mut same_dept = None;
                tx.for_each::<User>(|u| {
                    if u.active && u.roles.contains(role) {
                        if u.department.is_some() && u.department == manager.department {
                            same_dept = Some(u.id);
                            return false;
                        }
                        any = any.or(Some(u.id));
                    }
                    true
                })?;
                same_dept.or(any).ok_or_else(|| {
                    process(deal.id, format!("task \"{}\": no active user has the {} role", task.title, role.name()))
                })
            }
            Assignee::Hook => {
                let point = HookPoint::TaskAssignee;
                let mut input =
                    self.input(tx, point, Some(kind), EntityKind::Task, None, Some(Subject::Deal(deal)), None);
                input.task = Some(task);
                for asked in self.hooks.ask(&input) {
                    if let (name, Answer::Assignee(Some(login))) = asked? {
                        return by_login(&login, &format!("{point} handler {name}")).map_err(|e| match e {
                            Error::Process { message, .. } => fault(point, name, message),
                            e => e,
                        });
                    }
                }
                Ok(deal.manager)
            }
        }
    }

    pub(super) fn finish_task(
        &self,
        tx: &mut WriteTxn<'_>,
        id: TaskId,
        version: u64,
        status: TaskStatus,
    ) -> Result<Task> {
        let old: Task = tx.load(id)?;
        if old.version != version {
            return Err(Error::Conflict { kind: EntityKind::Task, id: id.raw(), given: version, stored: old.version });
        }
        if old.status != TaskStatus::Open {
            return Err(Error::NotAllowed(format!("task {id} is already {}", old.status.name())));
        }
        if let Some(actor) = &self.actor {
            let others_ok = actor.roles.iter().any(|r| self.settings.process.complete_others_tasks.contains(r));
            if actor.id != old.executor && !others_ok {
                return Err(Error::Forbidden(format!(
                    "{} may not {} task {id} (\"{}\"): it is another user's, and only {} may finish others' tasks",
                    actor.login,
                    if status == TaskStatus::Done { "complete" } else { "cancel" },
                    old.title,
                    self.settings.process.complete_others_tasks.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                )));
            }
            // A required task of a stage is the route's work: only those who may finish
            // others' tasks may call it off, so a manager cannot skip a stage by cancelling.
            if status == TaskStatus::Cancelled && old.required && old.stage.is_some() && !others_ok {
                return Err(Error::Forbidden(format!(
                    "{} may not cancel task {id} (\"{}\"): it is required by stage \"{}\", and only {} may cancel required tasks",
                    actor.login,
                    old.title,
                    old.stage.as_deref().unwrap_or_default(),
                    self.settings.process.complete_others_tasks.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let deal = match old.deal {
            Some(d) => Some(tx.load::<Deal>(d)?),
            None => None,
        };
        let pkind = deal.as_ref().map(|d| d.kind.clone());
        let mut new = old.clone();
        new.status = status;
        new.finished_at = Some(self.now(tx));
        new.finished_by = tx.actor();
        // Calling a task off is not completing it: `task.before_complete` is asked only of
        // a task marked done; both are changes through the engine, which `entity.before_save`
        // sees.
        let guards: &[HookPoint] = match status {
            TaskStatus::Done => &[HookPoint::TaskBeforeComplete, HookPoint::EntityBeforeSave],
            _ => &[HookPoint::EntityBeforeSave],
        };
        for point in guards {
            if self.hooks.any(*point, pkind.as_deref()) {
                let input = self.input(
                    &*tx,
                    *point,
                    pkind.as_deref(),
                    EntityKind::Task,
                    Some(Subject::Task(&old)),
                    Some(Subject::Task(&new)),
                    None,
                );
                self.guard(&input)?;
            }
        }
        let task = tx.as_engine(|tx| tx.update(new))?;
        if status == TaskStatus::Done && self.hooks.any(HookPoint::TaskAfterComplete, pkind.as_deref()) {
            let input = self.input(
                &*tx,
                HookPoint::TaskAfterComplete,
                pkind.as_deref(),
                EntityKind::Task,
                Some(Subject::Task(&old)),
                Some(Subject::Task(&task)),
                None,
            );
            let actions = self.react(&input, task.deal)?;
            if let (Some(d), false) = (task.deal, actions.is_empty()) {
                self.deeper().apply(tx, d, Some(&task), actions)?;
            }
        }
        if let Some(d) = task.deal {
            let deal: Deal = tx.load(d)?;
            if deal.stage == task.stage && task.required {
                self.auto_advance(tx, deal)?;
            }
        }
        Ok(task)
    }
}
