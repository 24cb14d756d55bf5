//! The CRM domain model: every entity the store keeps, and what each must satisfy.
//!
//! Each entity is a plain serde struct with an id, a `version` for optimistic concurrency
//! and created/updated instants. The [`Entity`] trait tells the store how to check one
//! (field rules, references it makes, index entries it needs) without the store knowing
//! any entity by name.

mod attachment;
mod claim;
mod contact;
mod counterparty;
pub(crate) mod custom;
mod deal;
mod document;
mod history;
mod index;
mod interaction;
mod loyalty;
mod partner;
mod plan;
pub mod score;
mod settings;
mod task;
pub mod text;
mod user;

pub use attachment::{mime_of_name, Attachment, ContentHash, EntityRef};
pub use claim::{
    settlement, status_prefix as claim_status_prefix, Claim, ClaimAction, ClaimStatus, ClaimStep, ClaimType, Decision,
};
pub use contact::{Attitude, ContactLink, ContactPerson};
pub use counterparty::{Address, AddressKind, BankAccount, Counterparty, CounterpartyKind};
pub use custom::{CustomFieldDef, CustomFieldType, CustomFields, CustomValue};
pub use deal::{Deal, DealStatus, Influence, Participant, ParticipantLink};
pub use document::{Document, DocumentKind, DocumentLine, DocumentState};
pub use history::{How, StageChange};
pub use index::{Index, Target};
pub use interaction::{Direction, Interaction, InteractionKind};
pub use loyalty::{CardStatus, EntryKind, LoyaltyCard, LoyaltyEntry, LoyaltyProgram, ProgramKind, MAX_POINTS};
pub use partner::{Partner, PartnerLink, PartnerRole};
pub use plan::Plan;
pub use score::{DealScore, ScoreFactor};
pub use settings::{List, ListId, ListItem, Rules};
pub use task::{due_prefix as task_due_prefix, executor_prefix as task_executor_prefix, Task, TaskStatus};
pub(crate) use user::check_login;
pub use user::{Role, User};

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::id::{RawId, TypedId};
use crate::time::Timestamp;

/// Every kind of entity the store keeps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Counterparty,
    Partner,
    PartnerLink,
    Contact,
    ContactLink,
    User,
    Deal,
    Participant,
    ParticipantLink,
    Interaction,
    Document,
    Attachment,
    Task,
    Plan,
    LoyaltyProgram,
    LoyaltyCard,
    LoyaltyEntry,
    Claim,
}

impl EntityKind {
    /// All kinds, in the order reports list them.
    pub const ALL: [EntityKind; 18] = [
        EntityKind::User,
        EntityKind::Counterparty,
        EntityKind::Partner,
        EntityKind::PartnerLink,
        EntityKind::Contact,
        EntityKind::ContactLink,
        EntityKind::Deal,
        EntityKind::Participant,
        EntityKind::ParticipantLink,
        EntityKind::Interaction,
        EntityKind::Document,
        EntityKind::Attachment,
        EntityKind::Task,
        EntityKind::Plan,
        EntityKind::LoyaltyProgram,
        EntityKind::LoyaltyCard,
        EntityKind::LoyaltyEntry,
        EntityKind::Claim,
    ];

    /// The snake_case name used in config, messages and the API.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Counterparty => "counterparty",
            EntityKind::Partner => "partner",
            EntityKind::PartnerLink => "partner_link",
            EntityKind::Contact => "contact",
            EntityKind::ContactLink => "contact_link",
            EntityKind::User => "user",
            EntityKind::Deal => "deal",
            EntityKind::Participant => "participant",
            EntityKind::ParticipantLink => "participant_link",
            EntityKind::Interaction => "interaction",
            EntityKind::Document => "document",
            EntityKind::Attachment => "attachment",
            EntityKind::Task => "task",
            EntityKind::Plan => "plan",
            EntityKind::LoyaltyProgram => "loyalty_program",
            EntityKind::LoyaltyCard => "loyalty_card",
            EntityKind::LoyaltyEntry => "loyalty_entry",
            EntityKind::Claim => "claim",
        }
    }

    /// The kind named `name` (as [`EntityKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether entities of this kind carry custom fields.
    pub fn has_custom_fields(self) -> bool {
        matches!(
            self,
            EntityKind::Counterparty
                | EntityKind::Partner
                | EntityKind::Contact
                | EntityKind::User
                | EntityKind::Deal
                | EntityKind::Interaction
                | EntityKind::Document
                | EntityKind::Claim
        )
    }
}

/// Runs `$body` with `$E` the entity type of the kind `$kind`: the one place that maps entity
/// kinds to their types. `with_kind!(kind, E => body)` covers every kind;
/// `with_kind!(kind, only [Deal, Task], E => body, else other => fallback)` only the listed
/// ones (so `body` is compiled for those types alone). A new kind is one line in the list
/// of all kinds and one `@type` line here.
#[macro_export]
macro_rules! with_kind {
    (@type Counterparty) => { $crate::model::Counterparty };
    (@type Partner) => { $crate::model::Partner };
    (@type PartnerLink) => { $crate::model::PartnerLink };
    (@type Contact) => { $crate::model::ContactPerson };
    (@type ContactLink) => { $crate::model::ContactLink };
    (@type User) => { $crate::model::User };
    (@type Deal) => { $crate::model::Deal };
    (@type Participant) => { $crate::model::Participant };
    (@type ParticipantLink) => { $crate::model::ParticipantLink };
    (@type Interaction) => { $crate::model::Interaction };
    (@type Document) => { $crate::model::Document };
    (@type Attachment) => { $crate::model::Attachment };
    (@type Task) => { $crate::model::Task };
    (@type Plan) => { $crate::model::Plan };
    (@type LoyaltyProgram) => { $crate::model::LoyaltyProgram };
    (@type LoyaltyCard) => { $crate::model::LoyaltyCard };
    (@type LoyaltyEntry) => { $crate::model::LoyaltyEntry };
    (@type Claim) => { $crate::model::Claim };
    (@every $kind:expr, $E:ident => $body:expr, [$($v:ident),*]) => {
        match $kind {
            $($crate::model::EntityKind::$v => {
                type $E = $crate::with_kind!(@type $v);
                $body
            })*
        }
    };
    ($kind:expr, only [$($v:ident),* $(,)?], $E:ident => $body:expr, else $other:pat => $none:expr) => {
        match $kind {
            $($crate::model::EntityKind::$v => {
                type $E = $crate::with_kind!(@type $v);
                $body
            })*
            $other => $none,
        }
    };
    ($kind:expr, $E:ident => $body:expr) => {
        $crate::with_kind!(@every $kind, $E => $body, [
            Counterparty, Partner, PartnerLink, Contact, ContactLink, User, Deal, Participant,
            ParticipantLink, Interaction, Document, Attachment, Task, Plan, LoyaltyProgram, LoyaltyCard,
            LoyaltyEntry, Claim
        ])
    };
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field value that breaks a rule: names the entity kind and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entity}.{field}: {message}")]
pub struct FieldError {
    /// The kind of entity being written.
    pub entity: EntityKind,
    /// The field, dotted for nested values (`bank_accounts[1].account`, `custom.tender`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(entity: EntityKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { entity, field: field.into(), message: message.into() }
    }
}

/// A reference an entity makes to another, checked on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// The referring field.
    pub field: String,
    /// The kind the id must belong to.
    pub kind: EntityKind,
    /// The referenced id.
    pub id: RawId,
    /// A further condition the referenced entity must meet.
    pub must: Option<Requirement>,
}

/// A condition on a referenced entity that needs a look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// The referenced partner has this role.
    PartnerRole(PartnerRole),
    /// The referenced counterparty is one of this partner's counterparties.
    CounterpartyOf(crate::id::PartnerId),
    /// The referenced participant belongs to this deal.
    ParticipantOf(crate::id::DealId),
    /// The referenced deal is this partner's.
    DealOf(crate::id::PartnerId),
    /// The referenced deal is this partner's or has it among its participants.
    DealConcerns(crate::id::PartnerId),
    /// The referenced partner is not this partner nor one of its descendants (no cycles
    /// in the group tree).
    NotDescendantOf(crate::id::PartnerId),
    /// The referenced user's other plans (stored, and configured in `[[plans]]`) neither
    /// overlap this plan's period nor are in another currency.
    PlanFits {
        plan: crate::id::PlanId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        currency: crate::values::Currency,
    },
    /// The referenced loyalty card is held by this partner or by one of its contact persons.
    CardHeldBy(crate::id::PartnerId),
    /// The referenced contact person is one of this partner's.
    ContactOf(crate::id::PartnerId),
    /// The referenced document is this partner's.
    DocumentOf(crate::id::PartnerId),
}

impl Ref {
    pub(crate) fn new(field: impl Into<String>, kind: EntityKind, id: impl TypedId) -> Ref {
        Ref { field: field.into(), kind, id: id.raw(), must: None }
    }

    pub(crate) fn must(mut self, r: Requirement) -> Ref {
        self.must = Some(r);
        self
    }
}

/// Every reference `e` makes: its fields' and its custom reference fields' (those of the
/// values declared in `rules`).
pub fn references<E: Entity>(e: &E, rules: &dyn Rules) -> Vec<Ref> {
    let mut refs = Vec::new();
    e.refs(&mut refs);
    if let Some(values) = e.custom() {
        custom::check(E::KIND, values, rules.custom_fields_of(E::KIND), Some(&mut refs)).ok();
    }
    refs
}

/// One entry of a secondary index: the index and the key prefix (the entity id is appended
/// by the store).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    /// Which index.
    pub index: Index,
    /// The indexed value, encoded so that byte order is value order.
    pub prefix: Vec<u8>,
}

impl IndexEntry {
    /// An entry keyed by another entity's id.
    pub fn by_id(index: Index, id: impl TypedId) -> IndexEntry {
        IndexEntry { index, prefix: id.raw().to_bytes().to_vec() }
    }

    /// An entry keyed by text (terminated by a zero byte so prefixes do not collide).
    pub fn by_text(index: Index, parts: &[&str]) -> IndexEntry {
        IndexEntry { index, prefix: text_prefix(parts) }
    }
}

/// The index prefix of a sequence of text parts: each part followed by a zero byte.
pub fn text_prefix(parts: &[&str]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parts.iter().map(|s| s.len() + 1).sum());
    for s in parts {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

/// What validation may consult: the installation's rules.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The configured lists, custom fields, process kinds and defaults.
    pub rules: &'a dyn Rules,
}

/// The common bookkeeping fields every entity has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub id: RawId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: Option<crate::id::UserId>,
    pub updated_by: Option<crate::id::UserId>,
}

/// What the store needs to know about an entity type.
pub trait Entity: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// The entity kind.
    const KIND: EntityKind;
    /// The name of the store's table of these records (part of the file format).
    const TABLE: &'static str;
    /// Its typed id.
    type Id: TypedId;

    /// The typed id.
    fn id(&self) -> Self::Id;
    /// Id, version and instants.
    fn meta(&self) -> Meta;
    /// Sets id, version and instants (the store does this on every write).
    fn set_meta(&mut self, meta: Meta);

    /// Sets fields that depend on the time of the write (a deal closed now gets `closed_at`).
    fn stamp(&mut self, now: Timestamp) {
        let _ = now;
    }
    /// Fills fields derived from others and canonicalizes values (trims names, normalizes
    /// e-mails and phones). Runs before [`Entity::validate`].
    fn normalize(&mut self, cx: Cx<'_>) -> Result<(), FieldError> {
        let _ = cx;
        Ok(())
    }
    /// Checks the entity's own fields against the rules and the settings.
    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError>;
    /// The references to other entities; the store checks each exists.
    fn refs(&self, out: &mut Vec<Ref>);
    /// The secondary-index entries of this entity.
    fn index_entries(&self, out: &mut Vec<IndexEntry>);
    /// Custom field values, for entity kinds that have them.
    fn custom(&self) -> Option<&CustomFields> {
        None
    }

    /// Whether records of this kind are created only by the store's `attach`, which stores
    /// their content with them.
    const CREATED_BY_ATTACH: bool = false;
    /// Why records of this kind are never deleted (`None`: they may be, when nothing refers
    /// to them).
    const NEVER_DELETED: Option<&'static str> = None;
    /// Whether each record has a stage history in the store, which a delete must reckon
    /// with.
    const HAS_HISTORY: bool = false;

    /// Called when the store creates the record outside the process engine, after it is
    /// validated: refuses a state only the engine may create, and returns the first step
    /// of the stage history the record starts with, if it has one.
    fn created_outside_engine(
        &mut self,
        cx: Cx<'_>,
        actor: Option<crate::id::UserId>,
    ) -> Result<Option<StageChange>, FieldError> {
        let _ = (cx, actor);
        Ok(None)
    }
    /// Sets what a change from the stored `self` to `new` implies for fields the record
    /// derives from it (a deal's probability set by hand is flagged manual); `by_engine`
    /// tells whether the process engine makes the change. Runs before [`Entity::check_change`].
    fn follow_change(&self, new: &mut Self, by_engine: bool) {
        let _ = (new, by_engine);
    }
    /// Refuses a change from the stored `self` to `new` that only the process engine may
    /// make (when `by_engine` is false) or that nobody may make.
    fn check_change(&self, new: &Self, by_engine: bool) -> Result<(), FieldError> {
        let _ = (new, by_engine);
        Ok(())
    }
    /// Refuses deleting the record, with the reason: `by_engine` tells whether the process
    /// engine deletes it, `history_steps` how many steps its stage history has.
    fn check_delete(&self, by_engine: bool, history_steps: u32) -> Result<(), String> {
        let _ = (by_engine, history_steps);
        Ok(())
    }
    /// The stored content the record refers to, released with the last record that does.
    fn content(&self) -> Option<&ContentHash> {
        None
    }
}

/// Implements the bookkeeping accessors of [`Entity`] for a struct with the standard
/// `id`, `version`, `created_at`, `updated_at` fields.
macro_rules! entity_meta {
    ($id:ty) => {
        fn id(&self) -> $id {
            self.id
        }
        fn meta(&self) -> $crate::model::Meta {
            $crate::model::Meta {
                id: $crate::id::TypedId::raw(self.id),
                version: self.version,
                created_at: self.created_at,
                updated_at: self.updated_at,
                created_by: self.created_by,
                updated_by: self.updated_by,
            }
        }
        fn set_meta(&mut self, m: $crate::model::Meta) {
            self.id = <$id as $crate::id::TypedId>::from_raw(m.id);
            self.version = m.version;
            self.created_at = m.created_at;
            self.updated_at = m.updated_at;
            self.created_by = m.created_by;
            self.updated_by = m.updated_by;
        }
    };
}
pub(crate) use entity_meta;

/// Helpers shared by the entity rules.
pub(crate) mod rules {
    use super::{EntityKind, FieldError, List};

    /// A trimmed name that must not be empty and has a length limit.
    pub fn required_text(kind: EntityKind, field: &str, value: &str, max: usize) -> Result<(), FieldError> {
        if value.trim().is_empty() {
            return Err(FieldError::new(kind, field, "is required and must not be empty"));
        }
        optional_text(kind, field, value, max)
    }

    /// Text with a length limit and no control characters but line breaks and tabs
    /// ([`super::text::check`]).
    pub fn optional_text(kind: EntityKind, field: &str, value: &str, max: usize) -> Result<(), FieldError> {
        super::text::field(kind, field, value, max)
    }

    /// An identifier from a configured list.
    pub fn in_list(kind: EntityKind, field: &str, value: &str, list: &List) -> Result<(), FieldError> {
        if list.contains(value) {
            Ok(())
        } else {
            Err(FieldError::new(
                kind,
                field,
                format!("\"{value}\" is not in the configured list {} ({})", list.name, list.ids_joined()),
            ))
        }
    }

    /// Trims an optional string; an empty one becomes `None`.
    pub fn trim_opt(v: &mut Option<String>) {
        if let Some(s) = v {
            trim(s);
            if s.is_empty() {
                *v = None;
            }
        }
    }

    /// An amount with no more decimals than its currency has and, unless allowed, not
    /// negative.
    pub fn money(kind: EntityKind, field: &str, m: &crate::values::Money) -> Result<(), FieldError> {
        if m.is_negative() {
            return Err(FieldError::new(kind, field, format!("must not be negative, got {m}")));
        }
        let minor = m.currency.minor_units();
        if m.amount.normalize().scale() > minor {
            return Err(FieldError::new(
                kind,
                field,
                format!("{} {} has more than the {minor} decimal places {} allows", m.amount, m.currency, m.currency),
            ));
        }
        Ok(())
    }

    /// The first field marked changed, as an error with `message`.
    pub fn refuse_changed(kind: EntityKind, fields: &[(&str, bool)], message: &str) -> Result<(), FieldError> {
        match fields.iter().find(|(_, changed)| *changed) {
            Some((field, _)) => Err(FieldError::new(kind, *field, message)),
            None => Ok(()),
        }
    }

    /// Trims a string in place.
    pub fn trim(s: &mut String) {
        let t = s.trim();
        if t.len() != s.len() {
            *s = t.to_string();
        }
    }
}
