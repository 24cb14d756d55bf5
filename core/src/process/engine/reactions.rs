//! Asking the hooks from inside an operation: the input handlers see, guards' answers,
//! reactions' actions and how they are applied to the deal (`set_field` among them).

use rust_decimal::Decimal;

use super::{deal_field, process, Cx};
use crate::config::Settings;
use crate::hooks::{Action, Answer, HookInput, HookPoint, Subject, Transition, View};
use crate::id::{DealId, TypedId};
use crate::model::{
    CustomFieldType, CustomValue, Deal, DealStatus, Entity, EntityKind, Interaction, InteractionKind, Task,
};
use crate::store::{Reader, WriteTxn};
use crate::{Error, Result};

impl Cx<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input<'a>(
        &'a self,
        view: &'a dyn View,
        hook: HookPoint,
        kind: Option<&'a str>,
        entity: EntityKind,
        before: Option<Subject<'a>>,
        after: Option<Subject<'a>>,
        transition: Option<&'a Transition>,
    ) -> HookInput<'a> {
        HookInput {
            hook,
            process_kind: kind,
            entity,
            actor: self.actor.as_deref(),
            before,
            after,
            transition,
            task: None,
            depth: self.depth,
            now: self.now,
            view,
            loyalty: None,
            strategy: None,
            claim_step: None,
        }
    }

    pub(super) fn guard(&self, input: &HookInput<'_>) -> Result<()> {
        for asked in self.hooks.ask(input) {
            if let (name, Answer::Reject { message, field }) = asked? {
                return Err(Error::Rejected { hook: input.hook.name(), handler: name.to_string(), message, field });
            }
        }
        Ok(())
    }

    /// Asks the reactions bound at `input.hook` and returns their actions, in order, to be
    /// applied to `deal`.
    pub(super) fn react(&self, input: &HookInput<'_>, deal: Option<DealId>) -> Result<Vec<Action>> {
        let actions = self.actions(input)?;
        if !actions.is_empty() && deal.is_none() {
            return Err(Error::NotAllowed(format!(
                "{}: reactions asked for {} action(s), but the {} belongs to no deal for them to act on",
                input.hook,
                actions.len(),
                input.entity
            )));
        }
        match (self.too_deep(input, actions.len()), deal) {
            (Some(message), Some(d)) => Err(process(d, message)),
            (Some(message), None) => Err(Error::NotAllowed(message)),
            (None, _) => Ok(actions),
        }
    }

    /// Asks the reactions bound at `input.hook` and returns their actions, in order, for
    /// the entity the hook is about (a claim) to apply.
    pub(super) fn react_on(&self, input: &HookInput<'_>) -> Result<Vec<Action>> {
        let actions = self.actions(input)?;
        match self.too_deep(input, actions.len()) {
            Some(message) => Err(Error::NotAllowed(message)),
            None => Ok(actions),
        }
    }

    fn actions(&self, input: &HookInput<'_>) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        for asked in self.hooks.ask(input) {
            if let (_, Answer::Actions(mut a)) = asked? {
                actions.append(&mut a);
            }
        }
        Ok(actions)
    }

    /// Why `more` actions asked at this depth would make the cascade too deep, if they would.
    fn too_deep(&self, input: &HookInput<'_>, more: usize) -> Option<String> {
        (more > 0 && self.depth >= self.settings.process.max_reaction_depth).then(|| {
            format!(
                "reaction cascade too deep: {} asked for {more} more action(s) at depth {}; process.max_reaction_depth is {}",
                input.hook,
                self.depth + 1,
                self.settings.process.max_reaction_depth
            )
        })
    }

    /// The user a reaction's action names by login.
    pub(super) fn executor(&self, tx: &WriteTxn<'_>, login: &str) -> std::result::Result<crate::id::UserId, String> {
        match tx.user_by_login(login) {
            Ok(Some(u)) => Ok(u.id),
            Ok(None) => Err(format!("a reaction's create_task names user \"{login}\", who does not exist")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The instant `minutes` after the operation's, for a reaction's task.
    pub(super) fn due_in(&self, minutes: i64) -> std::result::Result<crate::time::Timestamp, String> {
        match minutes.checked_mul(60_000).filter(|ms| (0..=3650 * 86_400_000).contains(ms)) {
            Some(ms) => Ok(self.now.plus_millis(ms)),
            None => Err(format!("a reaction's create_task is due in {minutes} minutes: between 0 and ten years")),
        }
    }

    pub(super) fn deeper(&self) -> Cx<'_> {
        Cx {
            settings: self.settings.clone(),
            actor: self.actor.clone(),
            hooks: self.hooks,
            depth: self.depth + 1,
            now: self.now,
        }
    }

    /// Applies a reaction's actions to `deal`.
    pub(super) fn apply(
        &self,
        tx: &mut WriteTxn<'_>,
        deal: DealId,
        _task: Option<&Task>,
        actions: Vec<Action>,
    ) -> Result<()> {
        for action in actions {
            let current: Deal = tx.load(deal)?;
            match action {
                Action::CreateTask { title, description, executor, due_in_minutes, required } => {
                    let mut task = Task::new(title, current.manager);
                    task.description = description;
                    if let Some(login) = executor {
                        task.executor = self
                            .executor(tx, &login)
                            .map_err(|message| Error::Process { deal: deal.raw(), message })?;
                    }
                    task.deal = Some(deal);
                    task.stage = current.stage.clone().filter(|_| current.status == DealStatus::InProgress);
                    task.required = required && task.stage.is_some();
                    task.due = due_in_minutes
                        .map(|m| self.due_in(m))
                        .transpose()
                        .map_err(|message| Error::Process { deal: deal.raw(), message })?;
                    self.create(tx, task)?;
                }
                Action::SetField { field, value } => {
                    let mut d = current;
                    set_field(&mut d, &field, value, &self.settings)?;
                    let d = self.update(tx, d)?;
                    self.auto_advance(tx, d)?;
                }
                Action::AddNote { subject, body } => {
                    let mut note = Interaction::new(InteractionKind::Note, self.now(tx), current.partner, subject);
                    note.body = body;
                    note.deal = Some(deal);
                    self.create(tx, note)?;
                }
                Action::PutOnHold { comment } => {
                    if current.status == DealStatus::InProgress {
                        self.hold(tx, current, &comment)?;
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) fn subject<E: Entity>(e: &E) -> Subject<'_> {
    use crate::model::{ContactPerson, Counterparty, Document, Partner};
    let any = e as &dyn std::any::Any;
    if let Some(d) = any.downcast_ref::<Deal>() {
        Subject::Deal(d)
    } else if let Some(t) = any.downcast_ref::<Task>() {
        Subject::Task(t)
    } else if let Some(i) = any.downcast_ref::<Interaction>() {
        Subject::Interaction(i)
    } else if let Some(p) = any.downcast_ref::<Partner>() {
        Subject::Partner(p)
    } else if let Some(c) = any.downcast_ref::<Counterparty>() {
        Subject::Counterparty(c)
    } else if let Some(c) = any.downcast_ref::<ContactPerson>() {
        Subject::Contact(c)
    } else if let Some(d) = any.downcast_ref::<Document>() {
        Subject::Document(d)
    } else {
        Subject::Other(serde_json::to_value(e).expect("entities serialize"))
    }
}

/// Sets a deal field from a reaction's JSON value.
pub(super) fn set_field(d: &mut Deal, field: &str, value: serde_json::Value, settings: &Settings) -> Result<()> {
    use serde_json::Value as J;
    let bad = |m: String| deal_field(field, format!("set_field: {m}"));
    let text = |v: &J| -> Result<Option<String>> {
        match v {
            J::Null => Ok(None),
            J::String(s) => Ok(Some(s.clone())),
            other => Err(bad(format!("expected a string, got {other}"))),
        }
    };
    let decimal = |v: &J| -> Result<Decimal> {
        match v {
            J::Number(n) => n.to_string().parse::<Decimal>().map_err(|e| bad(format!("{n}: {e}"))),
            J::String(s) => s.parse::<Decimal>().map_err(|e| bad(format!("\"{s}\": {e}"))),
            other => Err(bad(format!("expected a number, got {other}"))),
        }
    };
    match field {
        "probability" => {
            d.probability = match &value {
                J::Null => None,
                v => {
                    let n = decimal(v)?;
                    Some(u8::try_from(n.trunc().mantissa()).map_err(|_| bad(format!("{n} is not a percentage")))?)
                }
            }
        }
        "amount" => d.amount.amount = decimal(&value)?,
        "expected_close" => {
            d.expected_close = match text(&value)? {
                None => None,
                Some(s) => Some(crate::values::date::parse(&s).map_err(bad)?),
            }
        }
        "source" => d.source = text(&value)?,
        "comment" => d.comment = text(&value)?.unwrap_or_default(),
        "title" => d.title = text(&value)?.unwrap_or_default(),
        other => {
            let Some(name) = other.strip_prefix("custom.") else {
                return Err(bad(
                    "only probability, amount, expected_close, source, comment, title and custom.NAME can be set"
                        .into(),
                ));
            };
            let Some(def) = settings.custom_fields_of(EntityKind::Deal).iter().find(|f| f.name == name) else {
                return Err(bad(format!("\"{name}\" is not a custom field of deals")));
            };
            if value.is_null() {
                d.custom.remove(name);
                return Ok(());
            }
            let v = match &def.ty {
                CustomFieldType::String => CustomValue::String(text(&value)?.unwrap_or_default()),
                CustomFieldType::Enum { multiple: true, .. } => {
                    let items = value.as_array().ok_or_else(|| {
                        bad(format!(
                            "custom.{name} holds several values: expected a list like [\"a\", \"b\"], got {value}"
                        ))
                    })?;
                    let mut set = Vec::with_capacity(items.len());
                    for item in items {
                        let s = item
                            .as_str()
                            .ok_or_else(|| bad(format!("expected text values in the list, got {item}")))?;
                        set.push(s.to_string());
                    }
                    CustomValue::EnumSet(set)
                }
                CustomFieldType::Enum { .. } => CustomValue::Enum(text(&value)?.unwrap_or_default()),
                CustomFieldType::Number => CustomValue::Number(decimal(&value)?),
                CustomFieldType::Bool => CustomValue::Bool(
                    value.as_bool().ok_or_else(|| bad(format!("expected true or false, got {value}")))?,
                ),
                CustomFieldType::Date => {
                    let s = text(&value)?.unwrap_or_default();
                    CustomValue::Date(crate::values::date::parse(&s).map_err(bad)?)
                }
                CustomFieldType::Money => {
                    CustomValue::Money(serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?)
                }
                CustomFieldType::Reference { .. } => {
                    let s = text(&value)?.unwrap_or_default();
                    CustomValue::Ref(crate::id::RawId::parse(&s).map_err(|e| bad(e.0))?)
                }
            };
            d.custom.insert(name.to_string(), v);
        }
    }
    Ok(())
}
