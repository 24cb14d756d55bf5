//! What the model asks of an installation's settings, as a trait, so that validation does
//! not depend on the configuration module that assembles them (`config::Settings`
//! implements [`Rules`]).

use serde::Serialize;

use super::{ClaimType, CustomFieldDef, Deal, EntityKind, FieldError, StageChange};
use crate::id::UserId;

/// One item of a configured list: its id and the name shown for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListItem {
    /// The identifier stored in records.
    pub id: String,
    /// The name shown for it.
    pub name: String,
}

/// A configured list of values (loss reasons, sources, link types, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct List {
    /// The list's name as config spells it (`lists.loss_reasons`).
    pub name: &'static str,
    /// The items, in config order.
    pub items: Vec<ListItem>,
}

impl List {
    /// Whether `id` is in the list.
    pub fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|i| i.id == id)
    }

    /// The ids, comma-separated (for messages).
    pub fn ids_joined(&self) -> String {
        self.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The name shown for `id` (the id itself if unknown).
    pub fn label<'a>(&'a self, id: &'a str) -> &'a str {
        self.items.iter().find(|i| i.id == id).map_or(id, |i| i.name.as_str())
    }
}

/// The configured lists a field's value may have to be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListId {
    /// `lists.loss_reasons`.
    LossReasons,
    /// `lists.sources`.
    Sources,
    /// `lists.participant_roles`.
    ParticipantRoles,
    /// `lists.decision_roles`.
    DecisionRoles,
    /// The partner link types (built in and configured).
    PartnerLinkTypes,
    /// The contact link types (built in and configured).
    ContactLinkTypes,
    /// The participant link types (built in and configured).
    ParticipantLinkTypes,
}

/// What validating an entity may consult: the configured lists and custom fields, the
/// process kinds and their stages, the default phone region, and the process's rule for a
/// deal created outside the process engine.
pub trait Rules: Send + Sync {
    /// The configured list `list`.
    fn list(&self, list: ListId) -> &List;
    /// The custom fields declared for `kind`.
    fn custom_fields_of(&self, kind: EntityKind) -> &[CustomFieldDef];
    /// The ISO 3166 region of phone numbers written without a country code.
    fn phone_region(&self) -> &str;
    /// The ids of the configured process kinds, in config order.
    fn process_kinds(&self) -> Vec<&str>;
    /// The stage ids of process kind `kind` in order (empty for a stageless kind); `None`
    /// when no such kind is configured.
    fn stages_of(&self, kind: &str) -> Option<Vec<&str>>;
    /// The first step of the stage history of `deal`, created outside the process engine:
    /// refuses what only the engine may create and sets what the step fixes on the deal.
    fn creation_step(&self, deal: &mut Deal, actor: Option<UserId>) -> Result<StageChange, FieldError>;
    /// The configured claim types with their causes (`[[claim_types]]`), in config order.
    fn claim_types(&self) -> &[ClaimType];
}
