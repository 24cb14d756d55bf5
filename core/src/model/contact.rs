//! Contact persons of partners and the links between them.

use serde::{Deserialize, Serialize};

use super::rules::{in_list, optional_text, required_text, trim};
use super::Index;
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, ListId, Ref};
use crate::id::{ContactId, ContactLinkId, PartnerId, UserId};
use crate::time::Timestamp;
use crate::values::{email::normalize_email, phone::normalize_phone};

/// How a person (or a participant) stands towards us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Attitude {
    Supporter,
    #[default]
    Neutral,
    Opponent,
}

/// A person at a partner we deal with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactPerson {
    pub id: ContactId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub partner: PartnerId,
    pub name: String,
    #[serde(default)]
    pub position: String,
    /// Phone numbers in E.164 (`+79123456789`); input in local formats is normalized.
    #[serde(default)]
    pub phones: Vec<String>,
    /// E-mail addresses (domain lowercased).
    #[serde(default)]
    pub emails: Vec<String>,
    /// Role in the partner's decisions (configured list `decision_roles`).
    #[serde(default)]
    pub decision_role: Option<String>,
    #[serde(default)]
    pub attitude: Option<Attitude>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub custom: CustomFields,
}

impl ContactPerson {
    /// A new contact person of `partner`; the store assigns id and instants.
    pub fn new(partner: PartnerId, name: impl Into<String>) -> ContactPerson {
        ContactPerson {
            id: ContactId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            partner,
            name: name.into(),
            position: String::new(),
            phones: Vec::new(),
            emails: Vec::new(),
            decision_role: None,
            attitude: None,
            comment: String::new(),
            custom: CustomFields::new(),
        }
    }
}

impl Entity for ContactPerson {
    const KIND: EntityKind = EntityKind::Contact;
    const TABLE: &'static str = "contacts";
    type Id = ContactId;
    entity_meta!(ContactId);

    fn normalize(&mut self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        trim(&mut self.name);
        trim(&mut self.position);
        for (i, p) in self.phones.iter_mut().enumerate() {
            *p = normalize_phone(p, cx.rules.phone_region())
                .map_err(|e| FieldError::new(k, format!("phones[{i}]"), e.to_string()))?;
        }
        for (i, e) in self.emails.iter_mut().enumerate() {
            *e = normalize_email(e).map_err(|err| FieldError::new(k, format!("emails[{i}]"), err.to_string()))?;
        }
        Ok(())
    }

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        required_text(k, "name", &self.name, 200)?;
        optional_text(k, "position", &self.position, 200)?;
        if let Some(r) = &self.decision_role {
            in_list(k, "decision_role", r, cx.rules.list(ListId::DecisionRoles))?;
        }
        optional_text(k, "comment", &self.comment, 10_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("partner", EntityKind::Partner, self.partner));
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::ContactByPartner, self.partner));
        for e in &self.emails {
            out.push(IndexEntry::by_text(Index::ContactByEmail, &[e]));
        }
        for p in &self.phones {
            out.push(IndexEntry::by_text(Index::ContactByPhone, &[p]));
        }
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}

/// A typed, directed link between two contact persons (reports to, colleague, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactLink {
    pub id: ContactLinkId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub from: ContactId,
    pub to: ContactId,
    /// A link type id from config (`contact_link_types`).
    pub link_type: String,
    #[serde(default)]
    pub note: String,
}

impl ContactLink {
    /// A new link; the store assigns id and instants.
    pub fn new(from: ContactId, to: ContactId, link_type: impl Into<String>) -> ContactLink {
        ContactLink {
            id: ContactLinkId::default(),
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

impl Entity for ContactLink {
    const KIND: EntityKind = EntityKind::ContactLink;
    const TABLE: &'static str = "contact_links";
    type Id = ContactLinkId;
    entity_meta!(ContactLinkId);

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        if self.from == self.to {
            return Err(FieldError::new(k, "to", "a contact person cannot be linked to themselves"));
        }
        in_list(k, "link_type", &self.link_type, cx.rules.list(ListId::ContactLinkTypes))?;
        optional_text(k, "note", &self.note, 2000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("from", EntityKind::Contact, self.from));
        out.push(Ref::new("to", EntityKind::Contact, self.to));
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::ContactLinkByContact, self.from));
        out.push(IndexEntry::by_id(Index::ContactLinkByContact, self.to));
    }
}
