//! The fixed set of tables and secondary indexes, and what each index refers to.

use crate::model::EntityKind;

/// A table of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its name in the backend.
    pub name: &'static str,
    /// Its position in per-table arrays.
    pub slot: usize,
}

/// Schema facts: `format`, `schema_version`, `id_seq`.
pub const META: Table = Table { name: "meta", slot: 0 };
/// The audit log, keyed by audit id (time-ordered).
pub const AUDIT: Table = Table { name: "audit", slot: 1 };
/// Audit entries per entity: entity id ++ audit id.
pub const AUDIT_BY_ENTITY: Table = Table { name: "audit_by_entity", slot: 2 };
/// Attachment content: SHA-256 ++ chunk number (u32, big-endian) → bytes.
pub const BLOBS: Table = Table { name: "blobs", slot: 3 };
/// The stage history of deals: deal id ++ step number (u32, big-endian). Only appended to.
pub const STAGE_HISTORY: Table = Table { name: "stage_history", slot: 4 };
/// External keys (the ids records had in the system they were imported from): entity kind
/// name ++ 0 ++ key → entity id. Re-running an import finds what it wrote before. A key of
/// a deleted entity stays until a new entity takes it; lookups skip it.
pub const EXTERNAL_KEYS: Table = Table { name: "external_keys", slot: 5 };

const FIRST_ENTITY_SLOT: usize = 6;
const FIRST_INDEX_SLOT: usize = FIRST_ENTITY_SLOT + EntityKind::ALL.len();

/// The number of tables.
pub const TABLE_COUNT: usize = FIRST_INDEX_SLOT + Index::ALL.len();

/// Every table, in slot order.
pub fn all_tables() -> Vec<Table> {
    let mut t = vec![META, AUDIT, AUDIT_BY_ENTITY, BLOBS, STAGE_HISTORY, EXTERNAL_KEYS];
    t.extend(EntityKind::ALL.iter().map(|k| entity_table(*k)));
    t.extend(Index::ALL.iter().map(|i| i.table()));
    debug_assert!(t.iter().enumerate().all(|(i, t)| t.slot == i));
    t
}

/// The table holding the records of `kind`, keyed by id (named by the entity's
/// [`Entity::TABLE`](crate::model::Entity::TABLE)).
pub fn entity_table(kind: EntityKind) -> Table {
    let name = crate::with_kind!(kind, E => <E as crate::model::Entity>::TABLE);
    let n = EntityKind::ALL.iter().position(|k| *k == kind).expect("every kind is listed");
    Table { name, slot: FIRST_ENTITY_SLOT + n }
}

/// What the key prefix of an index refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A value, not an entity (names, statuses, hashes).
    Value,
    /// The id of an entity of this kind.
    Kind(EntityKind),
    /// The id of an entity of any kind.
    Any,
}

macro_rules! indexes {
    ($($name:ident = $table:literal, $owner:expr, $target:expr, $field:literal;)*) => {
        /// A secondary index. Entries are `prefix ++ entity id` with the owner's kind as value.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Index { $($name,)* }

        impl Index {
            /// Every index.
            pub const ALL: &'static [Index] = &[$(Index::$name,)*];

            /// The index's table.
            pub fn table(self) -> Table {
                let slot = FIRST_INDEX_SLOT + Index::ALL.iter().position(|i| *i == self).expect("listed");
                match self { $(Index::$name => Table { name: $table, slot },)* }
            }

            /// The kind of entity whose entries the index holds (`None`: several kinds).
            pub fn owner(self) -> Option<EntityKind> {
                match self { $(Index::$name => $owner,)* }
            }

            /// What the prefix refers to.
            pub fn target(self) -> Target {
                match self { $(Index::$name => $target,)* }
            }

            /// The field the index is built from (for messages).
            pub fn field(self) -> &'static str {
                match self { $(Index::$name => $field,)* }
            }
        }
    };
}

use EntityKind as K;
use Target::{Any, Kind, Value};

const fn o(k: EntityKind) -> Option<EntityKind> {
    Some(k)
}

indexes! {
    CounterpartyByTaxId = "ix_counterparty_tax_id", o(K::Counterparty), Value, "tax_id";
    PartnerByName = "ix_partner_name", o(K::Partner), Value, "name";
    PartnerByParent = "ix_partner_parent", o(K::Partner), Kind(K::Partner), "parent";
    PartnerByManager = "ix_partner_manager", o(K::Partner), Kind(K::User), "manager";
    PartnerByCounterparty = "ix_partner_counterparty", o(K::Partner), Kind(K::Counterparty), "counterparties";
    PartnerLinkByPartner = "ix_partner_link_partner", o(K::PartnerLink), Kind(K::Partner), "from/to";
    ContactByPartner = "ix_contact_partner", o(K::Contact), Kind(K::Partner), "partner";
    ContactByEmail = "ix_contact_email", o(K::Contact), Value, "emails";
    ContactLinkByContact = "ix_contact_link_contact", o(K::ContactLink), Kind(K::Contact), "from/to";
    UserByLogin = "ix_user_login", o(K::User), Value, "login";
    DealByPartner = "ix_deal_partner", o(K::Deal), Kind(K::Partner), "partner";
    DealByManager = "ix_deal_manager", o(K::Deal), Kind(K::User), "manager";
    DealByStage = "ix_deal_stage", o(K::Deal), Value, "kind/stage";
    DealByStatus = "ix_deal_status", o(K::Deal), Value, "status";
    DealByCounterparty = "ix_deal_counterparty", o(K::Deal), Kind(K::Counterparty), "counterparty";
    DealByCompetitor = "ix_deal_competitor", o(K::Deal), Kind(K::Partner), "competitor";
    ParticipantByDeal = "ix_participant_deal", o(K::Participant), Kind(K::Deal), "deal";
    ParticipantByPartner = "ix_participant_partner", o(K::Participant), Kind(K::Partner), "partner";
    ParticipantByContact = "ix_participant_contact", o(K::Participant), Kind(K::Contact), "contact";
    ParticipantLinkByParticipant = "ix_participant_link_participant", o(K::ParticipantLink), Kind(K::Participant), "from/to";
    InteractionByPartner = "ix_interaction_partner", o(K::Interaction), Kind(K::Partner), "partner";
    InteractionByDeal = "ix_interaction_deal", o(K::Interaction), Kind(K::Deal), "deal";
    InteractionByContact = "ix_interaction_contact", o(K::Interaction), Kind(K::Contact), "contacts";
    DocumentByPartner = "ix_document_partner", o(K::Document), Kind(K::Partner), "partner";
    DocumentByDeal = "ix_document_deal", o(K::Document), Kind(K::Deal), "deal";
    DocumentByCounterparty = "ix_document_counterparty", o(K::Document), Kind(K::Counterparty), "counterparty";
    AttachmentByOwner = "ix_attachment_owner", o(K::Attachment), Any, "owner";
    AttachmentByContent = "ix_attachment_content", o(K::Attachment), Value, "content";
    TaskByExecutor = "ix_task_executor", o(K::Task), Value, "executor/status";
    TaskByDeal = "ix_task_deal", o(K::Task), Kind(K::Deal), "deal";
    TaskOpenByDue = "ix_task_open_due", o(K::Task), Value, "due";
    CustomRef = "ix_custom_ref", None, Any, "custom reference";
}

impl Index {
    /// Whether two entities may not share a prefix.
    pub fn unique(self) -> bool {
        matches!(self, Index::UserByLogin)
    }
}
