//! Interactions: e-mails, calls, meetings and notes, attached to a partner and optionally
//! to one of its deals.

use serde::{Deserialize, Serialize};

use super::rules::{optional_text, trim};
use super::Index;
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref, Requirement};
use crate::id::{ContactId, DealId, InteractionId, PartnerId, UserId};
use crate::time::Timestamp;

/// What kind of contact an interaction records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    Email,
    Call,
    Meeting,
    Note,
}

impl InteractionKind {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            InteractionKind::Email => "email",
            InteractionKind::Call => "call",
            InteractionKind::Meeting => "meeting",
            InteractionKind::Note => "note",
        }
    }
}

/// Who started the contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// One contact with a partner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub id: InteractionId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub kind: InteractionKind,
    /// For e-mails and calls; none for notes.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// When it happened (or is planned, for a meeting).
    pub at: Timestamp,
    /// Length in minutes, for calls and meetings.
    #[serde(default)]
    pub duration_min: Option<u32>,
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// The partner it concerns.
    pub partner: PartnerId,
    /// The deal it belongs to, if any.
    #[serde(default)]
    pub deal: Option<DealId>,
    /// The contact persons who took part.
    #[serde(default)]
    pub contacts: Vec<ContactId>,
    /// The employee who recorded or held it.
    #[serde(default)]
    pub author: Option<UserId>,
    #[serde(default)]
    pub custom: CustomFields,
}

impl Interaction {
    /// A new interaction with `partner` at `at`.
    pub fn new(kind: InteractionKind, at: Timestamp, partner: PartnerId, subject: impl Into<String>) -> Interaction {
        Interaction {
            id: InteractionId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            kind,
            direction: None,
            at,
            duration_min: None,
            subject: subject.into(),
            body: String::new(),
            partner,
            deal: None,
            contacts: Vec::new(),
            author: None,
            custom: CustomFields::new(),
        }
    }
}

impl Entity for Interaction {
    const KIND: EntityKind = EntityKind::Interaction;
    const TABLE: &'static str = "interactions";
    type Id = InteractionId;
    entity_meta!(InteractionId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.subject);
        self.contacts.sort();
        self.contacts.dedup();
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        if self.subject.is_empty() && self.body.trim().is_empty() {
            return Err(FieldError::new(k, "subject", "an interaction needs a subject or a body"));
        }
        optional_text(k, "subject", &self.subject, 500)?;
        optional_text(k, "body", &self.body, 100_000)?;
        if self.kind == InteractionKind::Note && self.direction.is_some() {
            return Err(FieldError::new(k, "direction", "a note has no direction"));
        }
        if let Some(d) = self.duration_min {
            if d > 24 * 60 {
                return Err(FieldError::new(k, "duration_min", format!("{d} minutes is longer than a day")));
            }
        }
        Ok(())
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("partner", EntityKind::Partner, self.partner));
        if let Some(d) = self.deal {
            out.push(Ref::new("deal", EntityKind::Deal, d).must(Requirement::DealConcerns(self.partner)));
        }
        for (i, c) in self.contacts.iter().enumerate() {
            out.push(Ref::new(format!("contacts[{i}]"), EntityKind::Contact, *c));
        }
        if let Some(a) = self.author {
            out.push(Ref::new("author", EntityKind::User, a));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::InteractionByPartner, self.partner));
        if let Some(d) = self.deal {
            out.push(IndexEntry::by_id(Index::InteractionByDeal, d));
        }
        for c in &self.contacts {
            out.push(IndexEntry::by_id(Index::InteractionByContact, *c));
        }
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}
