//! Deals, and the deal environment: participants beyond the client and their links.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::rules::{in_list, money, optional_text, refuse_changed, required_text, trim, trim_opt};
use super::DealScore;
use super::Index;
use super::{
    entity_meta, Attitude, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, ListId, PartnerRole, Ref,
    Requirement, StageChange,
};
use crate::id::{ContactId, CounterpartyId, DealId, ParticipantId, ParticipantLinkId, PartnerId, UserId};
use crate::time::Timestamp;
use crate::values::Money;

/// Where a deal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    #[default]
    InProgress,
    Won,
    Lost,
    OnHold,
}

impl DealStatus {
    /// All statuses.
    pub const ALL: [DealStatus; 4] = [DealStatus::InProgress, DealStatus::Won, DealStatus::Lost, DealStatus::OnHold];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            DealStatus::InProgress => "in_progress",
            DealStatus::Won => "won",
            DealStatus::Lost => "lost",
            DealStatus::OnHold => "on_hold",
        }
    }

    /// Won or lost.
    pub fn is_closed(self) -> bool {
        matches!(self, DealStatus::Won | DealStatus::Lost)
    }
}

/// A started sale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    pub id: DealId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub title: String,
    /// The client.
    pub partner: PartnerId,
    /// The client's legal subject the deal is made with (one of the partner's).
    #[serde(default)]
    pub counterparty: Option<CounterpartyId>,
    /// The process kind (вид сделки) from config.
    pub kind: String,
    /// The current stage of the kind's route; none for a kind without stages.
    #[serde(default)]
    pub stage: Option<String>,
    pub status: DealStatus,
    /// The responsible manager.
    pub manager: UserId,
    /// The potential amount.
    pub amount: Money,
    #[serde(default, deserialize_with = "crate::values::date::input::optional")]
    pub expected_close: Option<NaiveDate>,
    /// Win probability in percent, 0–100.
    #[serde(default)]
    pub probability: Option<u8>,
    /// Where the deal came from (configured list `sources`).
    #[serde(default)]
    pub source: Option<String>,
    /// Why it was lost (configured list `loss_reasons`); required when lost.
    #[serde(default)]
    pub loss_reason: Option<String>,
    /// The competitor that won instead of us: a partner with the competitor role.
    #[serde(default)]
    pub competitor: Option<PartnerId>,
    #[serde(default)]
    pub comment: String,
    /// When it was closed as won or lost.
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
    #[serde(default)]
    pub custom: CustomFields,
    /// When the deal entered its current stage (set by the process engine).
    #[serde(default)]
    pub stage_entered_at: Option<Timestamp>,
    /// The checklist items of the current stage that are done (ids from the stage's config).
    #[serde(default)]
    pub checklist: Vec<String>,
    /// The number of steps in the deal's stage history (kept by the store and the engine).
    #[serde(default)]
    pub history_steps: u32,
    /// Whether `probability` was set by hand (or given when the deal was created or
    /// imported): a scoring model's score and a stage's default then leave it as it is.
    /// Schema 7 and later.
    #[serde(default)]
    pub probability_manual: bool,
    /// The score the `deal.score` handler gave the deal (`None`: none bound, or it gave
    /// none); kept beside a manual probability. Written only by the process engine.
    /// Schema 7 and later.
    #[serde(default)]
    pub score: Option<DealScore>,
}

impl Deal {
    /// A new in-progress deal; the store assigns id and instants.
    pub fn new(
        title: impl Into<String>,
        partner: PartnerId,
        kind: impl Into<String>,
        stage: Option<String>,
        manager: UserId,
        amount: Money,
    ) -> Deal {
        Deal {
            id: DealId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            title: title.into(),
            partner,
            counterparty: None,
            kind: kind.into(),
            stage,
            status: DealStatus::InProgress,
            manager,
            amount,
            expected_close: None,
            probability: None,
            source: None,
            loss_reason: None,
            competitor: None,
            comment: String::new(),
            closed_at: None,
            custom: CustomFields::new(),
            stage_entered_at: None,
            checklist: Vec::new(),
            history_steps: 0,
            probability_manual: false,
            score: None,
        }
    }
}

impl Entity for Deal {
    const KIND: EntityKind = EntityKind::Deal;
    const TABLE: &'static str = "deals";
    type Id = DealId;
    entity_meta!(DealId);

    fn stamp(&mut self, now: Timestamp) {
        if self.status.is_closed() && self.closed_at.is_none() {
            self.closed_at = Some(now);
        }
        if self.stage_entered_at.is_none() {
            self.stage_entered_at = Some(self.created_at);
        }
    }

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.title);
        trim_opt(&mut self.source);
        Ok(())
    }

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: &str, m: String| FieldError::new(k, f, m);
        required_text(k, "title", &self.title, 300)?;
        let Some(stages) = cx.rules.stages_of(&self.kind) else {
            return Err(e(
                "kind",
                format!("\"{}\" is not a configured process kind ({})", self.kind, cx.rules.process_kinds().join(", ")),
            ));
        };
        match (&self.stage, stages.is_empty()) {
            (None, false) => return Err(e("stage", format!("is required for process kind \"{}\"", self.kind))),
            (Some(s), true) => {
                return Err(e(
                    "stage",
                    format!("process kind \"{}\" has no stages, but stage \"{s}\" was given", self.kind),
                ))
            }
            (Some(s), false) if !stages.contains(&s.as_str()) => {
                return Err(e(
                    "stage",
                    format!("\"{s}\" is not a stage of process kind \"{}\" ({})", self.kind, stages.join(", ")),
                ));
            }
            _ => {}
        }
        money(k, "amount", &self.amount)?;
        if let Some(d) = self.expected_close {
            crate::values::date::check(d).map_err(|m| e("expected_close", m))?;
        }
        if let Some(p) = self.probability {
            if p > 100 {
                return Err(e("probability", format!("is a percentage from 0 to 100, got {p}")));
            }
        }
        if let Some(s) = &self.score {
            super::score::check(s.probability, &s.factors, s.model.as_deref()).map_err(|m| e("score", m))?;
        }
        if let Some(src) = &self.source {
            in_list(k, "source", src, cx.rules.list(ListId::Sources))?;
        }
        match (&self.loss_reason, self.status) {
            (None, DealStatus::Lost) => return Err(e("loss_reason", "is required when a deal is lost".into())),
            (Some(r), DealStatus::Lost) => in_list(k, "loss_reason", r, cx.rules.list(ListId::LossReasons))?,
            (Some(_), _) => return Err(e("loss_reason", "is only allowed on a lost deal".into())),
            (None, _) => {}
        }
        if self.competitor.is_some() && self.status != DealStatus::Lost {
            return Err(e("competitor", "the winning competitor is only recorded on a lost deal".into()));
        }
        match (self.closed_at, self.status.is_closed()) {
            (Some(_), false) => return Err(e("closed_at", "is only set on a won or lost deal".into())),
            (None, true) => return Err(e("closed_at", "is required on a won or lost deal".into())),
            (Some(at), true) if at < self.created_at => {
                return Err(e("closed_at", format!("{at} is before the deal was created ({})", self.created_at)))
            }
            _ => {}
        }
        optional_text(k, "comment", &self.comment, 10_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("partner", EntityKind::Partner, self.partner));
        out.push(Ref::new("manager", EntityKind::User, self.manager));
        if let Some(c) = self.counterparty {
            out.push(
                Ref::new("counterparty", EntityKind::Counterparty, c).must(Requirement::CounterpartyOf(self.partner)),
            );
        }
        if let Some(c) = self.competitor {
            out.push(
                Ref::new("competitor", EntityKind::Partner, c).must(Requirement::PartnerRole(PartnerRole::Competitor)),
            );
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::DealByPartner, self.partner));
        out.push(IndexEntry::by_id(Index::DealByManager, self.manager));
        out.push(IndexEntry::by_text(Index::DealByStage, &[&self.kind, self.stage.as_deref().unwrap_or("")]));
        out.push(IndexEntry::by_text(Index::DealByStatus, &[self.status.name()]));
        if let Some(c) = self.counterparty {
            out.push(IndexEntry::by_id(Index::DealByCounterparty, c));
        }
        if let Some(c) = self.competitor {
            out.push(IndexEntry::by_id(Index::DealByCompetitor, c));
        }
    }

    const HAS_HISTORY: bool = true;

    /// A deal created outside the engine starts its history with the creation step, by the
    /// process's rule ([`Rules::creation_step`](super::Rules::creation_step)).
    fn created_outside_engine(&mut self, cx: Cx<'_>, actor: Option<UserId>) -> Result<Option<StageChange>, FieldError> {
        self.history_steps = 1;
        if self.score.is_some() {
            return Err(FieldError::new(Self::KIND, "score", "is computed by the deal.score handler, not given"));
        }
        self.probability_manual = self.probability.is_some();
        cx.rules.creation_step(self, actor).map(Some)
    }

    /// Outside the process engine, a deal's kind, stage, status and their bookkeeping do
    /// not change (the stage history must record every change), nor a closed deal's loss
    /// reason and competitor (the history records the loss).
    /// A probability changed outside the engine was set by hand: it is flagged manual (and
    /// a cleared one is not); an unchanged one keeps the flag the write gives.
    fn follow_change(&self, new: &mut Self, by_engine: bool) {
        if !by_engine && self.probability != new.probability {
            new.probability_manual = new.probability.is_some();
        }
    }

    fn check_change(&self, new: &Self, by_engine: bool) -> Result<(), FieldError> {
        if by_engine {
            return Ok(());
        }
        if self.score != new.score {
            return Err(FieldError::new(
                Self::KIND,
                "score",
                "is computed by the deal.score handler when the deal changes (or by `crmkit score`), not set",
            ));
        }
        let closed = self.status.is_closed();
        let changed = [
            ("kind", self.kind != new.kind),
            ("stage", self.stage != new.stage),
            ("status", self.status != new.status),
            ("closed_at", self.closed_at != new.closed_at),
            ("stage_entered_at", self.stage_entered_at != new.stage_entered_at),
            ("history_steps", self.history_steps != new.history_steps),
            ("loss_reason", closed && self.loss_reason != new.loss_reason),
            ("competitor", closed && self.competitor != new.competitor),
        ];
        refuse_changed(
            Self::KIND,
            &changed,
            "changes only through the process engine (move, advance, hold, resume, close, reopen), which records it in the stage history",
        )
    }

    /// A deal that moved through its process keeps its history: only a deal with nothing
    /// but its creation step is deleted (the step with it).
    fn check_delete(&self, _by_engine: bool, history_steps: u32) -> Result<(), String> {
        if history_steps > 1 {
            return Err(format!(
                "deal {} cannot be deleted: it has moved through its process ({history_steps} steps of stage history), and the history is kept for the statistics; close it as lost instead",
                self.id
            ));
        }
        Ok(())
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}

/// How much a participant weighs on the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Influence {
    Low,
    Medium,
    High,
}

/// A member of a deal's environment: a partner (subcontractor, competitor, …) or a contact
/// person (influencer, decision maker, …), with a role and how they stand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: ParticipantId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub deal: DealId,
    /// Exactly one of `partner` and `contact` is set.
    #[serde(default)]
    pub partner: Option<PartnerId>,
    #[serde(default)]
    pub contact: Option<ContactId>,
    /// A role from the configured list `participant_roles`.
    pub role: String,
    #[serde(default)]
    pub influence: Option<Influence>,
    #[serde(default)]
    pub attitude: Option<Attitude>,
    #[serde(default)]
    pub note: String,
}

impl Participant {
    /// A new participant standing for a partner.
    pub fn partner(deal: DealId, partner: PartnerId, role: impl Into<String>) -> Participant {
        Participant::blank(deal, Some(partner), None, role.into())
    }

    /// A new participant standing for a contact person.
    pub fn contact(deal: DealId, contact: ContactId, role: impl Into<String>) -> Participant {
        Participant::blank(deal, None, Some(contact), role.into())
    }

    fn blank(deal: DealId, partner: Option<PartnerId>, contact: Option<ContactId>, role: String) -> Participant {
        Participant {
            id: ParticipantId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            deal,
            partner,
            contact,
            role,
            influence: None,
            attitude: None,
            note: String::new(),
        }
    }
}

impl Entity for Participant {
    const KIND: EntityKind = EntityKind::Participant;
    const TABLE: &'static str = "participants";
    type Id = ParticipantId;
    entity_meta!(ParticipantId);

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        if self.partner.is_some() == self.contact.is_some() {
            return Err(FieldError::new(k, "partner", "set exactly one of partner and contact"));
        }
        in_list(k, "role", &self.role, cx.rules.list(ListId::ParticipantRoles))?;
        optional_text(k, "note", &self.note, 2000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("deal", EntityKind::Deal, self.deal));
        if let Some(p) = self.partner {
            out.push(Ref::new("partner", EntityKind::Partner, p));
        }
        if let Some(c) = self.contact {
            out.push(Ref::new("contact", EntityKind::Contact, c));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::ParticipantByDeal, self.deal));
        if let Some(p) = self.partner {
            out.push(IndexEntry::by_id(Index::ParticipantByPartner, p));
        }
        if let Some(c) = self.contact {
            out.push(IndexEntry::by_id(Index::ParticipantByContact, c));
        }
    }
}

/// A link between two participants of the same deal (works for, influences, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantLink {
    pub id: ParticipantLinkId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub deal: DealId,
    pub from: ParticipantId,
    pub to: ParticipantId,
    /// A link type id from config (`participant_link_types`).
    pub link_type: String,
    #[serde(default)]
    pub note: String,
}

impl ParticipantLink {
    /// A new link inside `deal`.
    pub fn new(deal: DealId, from: ParticipantId, to: ParticipantId, link_type: impl Into<String>) -> ParticipantLink {
        ParticipantLink {
            id: ParticipantLinkId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            deal,
            from,
            to,
            link_type: link_type.into(),
            note: String::new(),
        }
    }
}

impl Entity for ParticipantLink {
    const KIND: EntityKind = EntityKind::ParticipantLink;
    const TABLE: &'static str = "participant_links";
    type Id = ParticipantLinkId;
    entity_meta!(ParticipantLinkId);

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        if self.from == self.to {
            return Err(FieldError::new(k, "to", "a participant cannot be linked to itself"));
        }
        in_list(k, "link_type", &self.link_type, cx.rules.list(ListId::ParticipantLinkTypes))?;
        optional_text(k, "note", &self.note, 2000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("deal", EntityKind::Deal, self.deal));
        out.push(Ref::new("from", EntityKind::Participant, self.from).must(Requirement::ParticipantOf(self.deal)));
        out.push(Ref::new("to", EntityKind::Participant, self.to).must(Requirement::ParticipantOf(self.deal)));
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::ParticipantLinkByParticipant, self.from));
        out.push(IndexEntry::by_id(Index::ParticipantLinkByParticipant, self.to));
    }
}
