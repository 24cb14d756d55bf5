//! Partners: the business-relationship objects (clients, suppliers, competitors, …) that own
//! counterparties, form groups and link to each other.

use serde::{Deserialize, Serialize};

use super::rules::{in_list, optional_text, required_text, trim, trim_opt};
use super::Index;
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, ListId, Ref, Requirement};
use crate::id::{CounterpartyId, PartnerId, PartnerLinkId, UserId};
use crate::time::Timestamp;

/// A role a partner plays for us; roles combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerRole {
    Client,
    Supplier,
    Competitor,
    Other,
}

impl PartnerRole {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            PartnerRole::Client => "client",
            PartnerRole::Supplier => "supplier",
            PartnerRole::Competitor => "competitor",
            PartnerRole::Other => "other",
        }
    }
}

/// A business-relationship object: a client, supplier, competitor or other; may stand for a
/// group of companies (children point at it through `parent`) or an independent division.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partner {
    pub id: PartnerId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub name: String,
    /// At least one role; kept sorted and without repeats.
    pub roles: Vec<PartnerRole>,
    /// The group or head company this partner belongs to.
    #[serde(default)]
    pub parent: Option<PartnerId>,
    /// The responsible manager.
    #[serde(default)]
    pub manager: Option<UserId>,
    /// Segment name (set by strategy rules later; free text now).
    #[serde(default)]
    pub segment: Option<String>,
    /// The legal subjects this partner acts through.
    #[serde(default)]
    pub counterparties: Vec<CounterpartyId>,
    /// Where the partner came from (configured list `sources`).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub custom: CustomFields,
}

impl Partner {
    /// The position of `name` among the fields as stored (a record is written field by
    /// field in declaration order), for reading the name alone.
    pub(crate) const NAME_FIELD: usize = 6;

    /// A new partner with a name and one role; the store assigns id and instants.
    pub fn new(name: impl Into<String>, role: PartnerRole) -> Partner {
        Partner {
            id: PartnerId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            name: name.into(),
            roles: vec![role],
            parent: None,
            manager: None,
            segment: None,
            counterparties: Vec::new(),
            source: None,
            comment: String::new(),
            custom: CustomFields::new(),
        }
    }

    /// Whether the partner has `role`.
    pub fn has_role(&self, role: PartnerRole) -> bool {
        self.roles.contains(&role)
    }
}

impl Entity for Partner {
    const KIND: EntityKind = EntityKind::Partner;
    const TABLE: &'static str = "partners";
    type Id = PartnerId;
    entity_meta!(PartnerId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.name);
        self.roles.sort();
        self.roles.dedup();
        self.counterparties.sort();
        self.counterparties.dedup();
        trim_opt(&mut self.segment);
        trim_opt(&mut self.source);
        Ok(())
    }

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        required_text(k, "name", &self.name, 300)?;
        if self.roles.is_empty() {
            return Err(FieldError::new(
                k,
                "roles",
                "a partner needs at least one role (client, supplier, competitor, other)",
            ));
        }
        if let Some(seg) = &self.segment {
            required_text(k, "segment", seg, 100)?;
        }
        if let Some(src) = &self.source {
            in_list(k, "source", src, cx.rules.list(ListId::Sources))?;
        }
        optional_text(k, "comment", &self.comment, 10_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        if let Some(p) = self.parent {
            out.push(Ref::new("parent", EntityKind::Partner, p).must(Requirement::NotDescendantOf(self.id)));
        }
        if let Some(m) = self.manager {
            out.push(Ref::new("manager", EntityKind::User, m));
        }
        for (i, c) in self.counterparties.iter().enumerate() {
            out.push(Ref::new(format!("counterparties[{i}]"), EntityKind::Counterparty, *c));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_text(Index::PartnerByName, &[&self.name.to_lowercase()]));
        if let Some(p) = self.parent {
            out.push(IndexEntry::by_id(Index::PartnerByParent, p));
        }
        if let Some(m) = self.manager {
            out.push(IndexEntry::by_id(Index::PartnerByManager, m));
        }
        for c in &self.counterparties {
            out.push(IndexEntry::by_id(Index::PartnerByCounterparty, *c));
        }
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}

/// A typed, directed link between two partners (`from` is the holding, the recommender, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerLink {
    pub id: PartnerLinkId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub from: PartnerId,
    pub to: PartnerId,
    /// A link type id from config (`partner_link_types`).
    pub link_type: String,
    #[serde(default)]
    pub note: String,
}

impl PartnerLink {
    /// A new link; the store assigns id and instants.
    pub fn new(from: PartnerId, to: PartnerId, link_type: impl Into<String>) -> PartnerLink {
        PartnerLink {
            id: PartnerLinkId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            from,
            to,
            link_type: link_type.into(),
            note: String::new(),
        }
    }
}

impl Entity for PartnerLink {
    const KIND: EntityKind = EntityKind::PartnerLink;
    const TABLE: &'static str = "partner_links";
    type Id = PartnerLinkId;
    entity_meta!(PartnerLinkId);

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        if self.from == self.to {
            return Err(FieldError::new(k, "to", "a partner cannot be linked to itself"));
        }
        in_list(k, "link_type", &self.link_type, cx.rules.list(ListId::PartnerLinkTypes))?;
        optional_text(k, "note", &self.note, 2000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("from", EntityKind::Partner, self.from));
        out.push(Ref::new("to", EntityKind::Partner, self.to));
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::PartnerLinkByPartner, self.from));
        out.push(IndexEntry::by_id(Index::PartnerLinkByPartner, self.to));
    }
}
