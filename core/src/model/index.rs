//! The secondary indexes, declared with the model: what each index holds entries of, what
//! its key prefix refers to (which drives "cannot delete, N records refer to it") and the
//! field it is built from. Entities list their entries in [`Entity::index_entries`]; the
//! store maps each index to a table of its name.
//!
//! [`Entity::index_entries`]: super::Entity::index_entries

use super::EntityKind;

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

            /// The index's stable name: the store keeps its entries in a table of this name.
            pub fn name(self) -> &'static str {
                match self { $(Index::$name => $table,)* }
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
    ContactByPhone = "ix_contact_phone", o(K::Contact), Value, "phones";
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
    PlanByManager = "ix_plan_manager", o(K::Plan), Kind(K::User), "manager";
    DocumentByCard = "ix_document_card", o(K::Document), Kind(K::LoyaltyCard), "card";
    LoyaltyCardByNumber = "ix_loyalty_card_number", o(K::LoyaltyCard), Value, "number";
    LoyaltyCardByBarcode = "ix_loyalty_card_barcode", o(K::LoyaltyCard), Value, "barcode";
    LoyaltyCardByMagneticCode = "ix_loyalty_card_magnetic_code", o(K::LoyaltyCard), Value, "magnetic_code";
    LoyaltyCardByProgram = "ix_loyalty_card_program", o(K::LoyaltyCard), Kind(K::LoyaltyProgram), "program";
    LoyaltyCardByPartner = "ix_loyalty_card_partner", o(K::LoyaltyCard), Kind(K::Partner), "partner";
    LoyaltyCardByContact = "ix_loyalty_card_contact", o(K::LoyaltyCard), Kind(K::Contact), "contact";
    LoyaltyCardByPredecessor = "ix_loyalty_card_reissued_from", o(K::LoyaltyCard), Kind(K::LoyaltyCard), "reissued_from";
    LoyaltyEntryByCard = "ix_loyalty_entry_card", o(K::LoyaltyEntry), Kind(K::LoyaltyCard), "card";
    LoyaltyEntryByDocument = "ix_loyalty_entry_document", o(K::LoyaltyEntry), Kind(K::Document), "document";
    ClaimByPartner = "ix_claim_partner", o(K::Claim), Kind(K::Partner), "partner";
    ClaimByResponsible = "ix_claim_responsible", o(K::Claim), Kind(K::User), "responsible";
    ClaimByStatus = "ix_claim_status", o(K::Claim), Value, "status";
    ClaimByDeal = "ix_claim_deal", o(K::Claim), Kind(K::Deal), "deal";
    ClaimByDocument = "ix_claim_document", o(K::Claim), Kind(K::Document), "document";
    ClaimByCounterparty = "ix_claim_counterparty", o(K::Claim), Kind(K::Counterparty), "counterparty";
    ClaimByContact = "ix_claim_contact", o(K::Claim), Kind(K::Contact), "contact";
    TaskByClaim = "ix_task_claim", o(K::Task), Kind(K::Claim), "claim";
    CustomRef = "ix_custom_ref", None, Any, "custom reference";
}

impl Index {
    /// Whether two entities may not share a prefix.
    pub fn unique(self) -> bool {
        matches!(
            self,
            Index::UserByLogin
                | Index::LoyaltyCardByNumber
                | Index::LoyaltyCardByBarcode
                | Index::LoyaltyCardByMagneticCode
        )
    }
}
