//! Claims (претензии): a client's complaint about goods, a delivery, a price or the service,
//! with the amount it claims, worked through a lifecycle — registered, under review, decided
//! (satisfied, partly satisfied or rejected, with the settled amount and the reply), closed,
//! reopened with a reason. Every step is kept on the claim, appended and never changed, as a
//! deal's stage history is; only the claim operations of the process engine take them.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::rules::{money, optional_text, refuse_changed, required_text, trim};
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, Index, IndexEntry, ListItem, Ref};
use super::{Requirement, StageChange};
use crate::id::{ClaimId, ContactId, CounterpartyId, DealId, DocumentId, PartnerId, UserId};
use crate::time::Timestamp;
use crate::values::Money;

/// A configured type of claim (`[[claim_types]]`): its causes, the days a claim of it is due
/// in, and whether a decision in the client's favour names the amount settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClaimType {
    pub id: String,
    pub name: String,
    /// The causes a claim of this type may name, in config order.
    pub causes: Vec<ListItem>,
    /// Days from registration to the due date, when a claim is registered without one.
    pub due_days: u32,
    /// Whether satisfying a claim of this type (fully or partly) settles an amount, which the
    /// decision must then name.
    pub settled_amount_required: bool,
}

/// Where a claim stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Received and recorded; nobody has taken it up.
    #[default]
    Registered,
    /// The responsible person is working on it.
    UnderReview,
    /// A decision is taken and the reply given; the settlement may still be under way.
    Decided,
    /// Done with.
    Closed,
}

impl ClaimStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ClaimStatus; 4] =
        [ClaimStatus::Registered, ClaimStatus::UnderReview, ClaimStatus::Decided, ClaimStatus::Closed];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ClaimStatus::Registered => "registered",
            ClaimStatus::UnderReview => "under_review",
            ClaimStatus::Decided => "decided",
            ClaimStatus::Closed => "closed",
        }
    }

    /// Whether the claim still waits for its decision (registered or under review).
    pub fn is_open(self) -> bool {
        matches!(self, ClaimStatus::Registered | ClaimStatus::UnderReview)
    }
}

/// What was decided on a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The claim is met in full.
    Satisfied,
    /// The claim is met in part.
    PartlySatisfied,
    /// The claim is refused.
    Rejected,
}

impl Decision {
    /// Every decision.
    pub const ALL: [Decision; 3] = [Decision::Satisfied, Decision::PartlySatisfied, Decision::Rejected];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Satisfied => "satisfied",
            Decision::PartlySatisfied => "partly_satisfied",
            Decision::Rejected => "rejected",
        }
    }
}

/// What a step of a claim's lifecycle did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimAction {
    /// Recorded (the first step).
    Register,
    /// Taken up for review.
    Review,
    /// The answer put off to a later day.
    Postpone,
    /// Decided, with the reply.
    Decide,
    /// Closed.
    Close,
    /// Reopened after a decision, with the reason.
    Reopen,
}

impl ClaimAction {
    /// Every action.
    pub const ALL: [ClaimAction; 6] = [
        ClaimAction::Register,
        ClaimAction::Review,
        ClaimAction::Postpone,
        ClaimAction::Decide,
        ClaimAction::Close,
        ClaimAction::Reopen,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ClaimAction::Register => "register",
            ClaimAction::Review => "review",
            ClaimAction::Postpone => "postpone",
            ClaimAction::Decide => "decide",
            ClaimAction::Close => "close",
            ClaimAction::Reopen => "reopen",
        }
    }

    /// The action named `name`.
    pub fn from_name(name: &str) -> Option<ClaimAction> {
        ClaimAction::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One step of a claim's lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimStep {
    /// 0 for the registration, then 1, 2, … without gaps.
    pub step: u32,
    pub at: Timestamp,
    /// Who took it (`None`: the system).
    pub actor: Option<UserId>,
    pub action: ClaimAction,
    /// `None` on the registration.
    pub from: Option<ClaimStatus>,
    pub to: ClaimStatus,
    /// A decision's: what was decided and the amount settled.
    #[serde(default)]
    pub decision: Option<Decision>,
    #[serde(default)]
    pub settled: Option<Money>,
    /// The reason (reopen, postpone), the review comment or the reply (decide).
    #[serde(default)]
    pub note: Option<String>,
    /// A postponement's: the day the answer was put off to.
    #[serde(default)]
    pub until: Option<NaiveDate>,
}

/// A client's claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub id: ClaimId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub created_by: Option<UserId>,
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// The client that makes the claim.
    pub partner: PartnerId,
    /// The legal entity the claim comes from: one of the partner's counterparties.
    #[serde(default)]
    pub counterparty: Option<CounterpartyId>,
    /// The client's contact person for it: one of the partner's.
    #[serde(default)]
    pub contact: Option<ContactId>,
    /// The deal it concerns (the partner's, or one it takes part in).
    #[serde(default)]
    pub deal: Option<DealId>,
    /// The document it concerns (an order, a shipment, a payment of the partner's).
    #[serde(default)]
    pub document: Option<DocumentId>,
    /// The claim's type: an id of `[[claim_types]]`.
    pub kind: String,
    /// Its cause: an id of the type's causes.
    pub cause: String,
    pub subject: String,
    #[serde(default)]
    pub description: String,
    /// The amount the client claims (none: the claim names no amount).
    #[serde(default)]
    pub claimed: Option<Money>,
    /// Who works on it.
    pub responsible: UserId,
    /// The day it was received; left out, the day it is written.
    #[serde(default)]
    pub registered: Option<NaiveDate>,
    /// The day the client is to have the answer by; left out, its type's `due_days` after
    /// the registration.
    #[serde(default)]
    pub due: Option<NaiveDate>,
    /// The later day the answer was put off to (a postponement), if any.
    #[serde(default)]
    pub postponed_until: Option<NaiveDate>,
    pub status: ClaimStatus,
    /// The decision, once taken (cleared by a reopen; the steps keep every one).
    #[serde(default)]
    pub decision: Option<Decision>,
    /// The amount settled by the decision.
    #[serde(default)]
    pub settled: Option<Money>,
    /// The reply given to the client with the decision.
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    pub decided_at: Option<Timestamp>,
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
    /// The lifecycle's steps, oldest first.
    #[serde(default)]
    pub steps: Vec<ClaimStep>,
    #[serde(default)]
    pub custom: CustomFields,
}

impl Claim {
    /// A new registered claim received on `registered`, due on `due`; the store assigns id
    /// and instants and takes the registration step.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        partner: PartnerId,
        kind: impl Into<String>,
        cause: impl Into<String>,
        subject: impl Into<String>,
        responsible: UserId,
        registered: Option<NaiveDate>,
        due: Option<NaiveDate>,
    ) -> Claim {
        Claim {
            id: ClaimId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            partner,
            counterparty: None,
            contact: None,
            deal: None,
            document: None,
            kind: kind.into(),
            cause: cause.into(),
            subject: subject.into(),
            description: String::new(),
            claimed: None,
            responsible,
            registered,
            due,
            postponed_until: None,
            status: ClaimStatus::Registered,
            decision: None,
            settled: None,
            reply: String::new(),
            decided_at: None,
            closed_at: None,
            steps: Vec::new(),
            custom: CustomFields::new(),
        }
    }

    /// The day the answer is due: the postponement's, or the due date (a stored claim has
    /// one).
    pub fn due_by(&self) -> NaiveDate {
        self.postponed_until.or(self.due).or(self.registered).unwrap_or_default()
    }

    /// The day it was registered (a stored claim has one).
    pub fn registered_on(&self) -> NaiveDate {
        self.registered.unwrap_or_default()
    }

    /// Whether the claim still waits for its decision after the day it was due by.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.status.is_open() && today > self.due_by()
    }

    /// The fields only the claim operations change, with whether `new` changes each.
    fn kept_by_operations(&self, new: &Claim) -> [(&'static str, bool); 8] {
        [
            ("status", self.status != new.status),
            ("decision", self.decision != new.decision),
            ("settled", self.settled != new.settled),
            ("reply", self.reply != new.reply),
            ("decided_at", self.decided_at != new.decided_at),
            ("closed_at", self.closed_at != new.closed_at),
            ("postponed_until", self.postponed_until != new.postponed_until),
            ("steps", self.steps != new.steps),
        ]
    }
}

/// The index prefix of claims in `status`.
pub fn status_prefix(status: ClaimStatus) -> Vec<u8> {
    super::text_prefix(&[status.name()])
}

impl Entity for Claim {
    const KIND: EntityKind = EntityKind::Claim;
    const TABLE: &'static str = "claims";
    type Id = ClaimId;
    entity_meta!(ClaimId);

    const NEVER_DELETED: Option<&'static str> =
        Some("a claim is kept with its steps for good; one registered in error is closed after a rejection");

    /// A new claim's registration step, taken by whoever writes it, and its registration
    /// day when it names none.
    fn stamp(&mut self, now: Timestamp) {
        if self.steps.is_empty() && self.version == 1 {
            self.registered.get_or_insert(now.date());
            self.steps.push(ClaimStep {
                step: 0,
                at: now,
                actor: self.created_by,
                action: ClaimAction::Register,
                from: None,
                to: ClaimStatus::Registered,
                decision: None,
                settled: None,
                note: None,
                until: None,
            });
        }
    }

    fn normalize(&mut self, cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.kind);
        trim(&mut self.cause);
        trim(&mut self.subject);
        trim(&mut self.reply);
        if let (None, Some(r), Some(t)) =
            (self.due, self.registered, cx.rules.claim_types().iter().find(|t| t.id == self.kind))
        {
            self.due = r.checked_add_days(chrono::Days::new(t.due_days.into()));
        }
        Ok(())
    }

    fn validate(&self, cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: &str, m: String| FieldError::new(k, f, m);
        let types = cx.rules.claim_types();
        let Some(ty) = types.iter().find(|t| t.id == self.kind) else {
            let ids: Vec<&str> = types.iter().map(|t| t.id.as_str()).collect();
            return Err(e(
                "kind",
                format!("\"{}\" is not a configured claim type ([[claim_types]]: {})", self.kind, ids.join(", ")),
            ));
        };
        if !ty.causes.iter().any(|c| c.id == self.cause) {
            let ids: Vec<&str> = ty.causes.iter().map(|c| c.id.as_str()).collect();
            return Err(e(
                "cause",
                format!("\"{}\" is not a cause of claim type {} ({})", self.cause, ty.id, ids.join(", ")),
            ));
        }
        required_text(k, "subject", &self.subject, 300)?;
        optional_text(k, "description", &self.description, 10_000)?;
        optional_text(k, "reply", &self.reply, 10_000)?;
        let (Some(registered), Some(due)) = (self.registered, self.due) else {
            let field = if self.registered.is_none() { "registered" } else { "due" };
            return Err(e(field, "is required".into()));
        };
        for (field, day) in [("registered", registered), ("due", due)]
            .into_iter()
            .chain(self.postponed_until.map(|p| ("postponed_until", p)))
        {
            crate::values::date::check(day).map_err(|m| e(field, m))?;
        }
        if due < registered {
            return Err(e("due", format!("the claim is due ({due}) before it is registered ({registered})")));
        }
        if let Some(p) = self.postponed_until {
            if p <= due {
                return Err(e("postponed_until", format!("a postponement is later than the due date {due}, got {p}")));
            }
        }
        if let Some(c) = &self.claimed {
            money(k, "claimed", c)?;
        }
        if let Some(s) = &self.settled {
            money(k, "settled", s)?;
            if let Some(c) = &self.claimed {
                if c.currency != s.currency {
                    return Err(e("settled", format!("is in {}, the claim in {}", s.currency, c.currency)));
                }
            }
        }
        let decided = matches!(self.status, ClaimStatus::Decided | ClaimStatus::Closed);
        match (decided, self.decision) {
            (true, None) => return Err(e("decision", format!("a {} claim has its decision", self.status.name()))),
            (false, Some(_)) => {
                return Err(e("decision", format!("a {} claim has no decision yet", self.status.name())))
            }
            _ => {}
        }
        if let Some(d) = self.decision {
            settlement(ty, d, self.claimed.as_ref(), self.settled.as_ref()).map_err(|m| e("settled", m))?;
        } else if self.settled.is_some() {
            return Err(e("settled", "is set by a decision".into()));
        }
        match (decided, self.decided_at) {
            (true, None) => return Err(e("decided_at", "is required on a decided claim".into())),
            (false, Some(_)) => return Err(e("decided_at", "is only set on a decided claim".into())),
            _ => {}
        }
        match (self.status == ClaimStatus::Closed, self.closed_at) {
            (true, None) => return Err(e("closed_at", "is required on a closed claim".into())),
            (false, Some(_)) => return Err(e("closed_at", "is only set on a closed claim".into())),
            _ => {}
        }
        for (i, s) in self.steps.iter().enumerate() {
            if s.step as usize != i {
                return Err(e(&format!("steps[{i}].step"), format!("steps are numbered 0, 1, …; got {}", s.step)));
            }
            if let Some(n) = &s.note {
                optional_text(k, &format!("steps[{i}].note"), n, 10_000)?;
            }
        }
        if let Some(last) = self.steps.last() {
            if last.to != self.status {
                return Err(e(
                    "status",
                    format!("is {}, but the last step left it {}", self.status.name(), last.to.name()),
                ));
            }
        }
        Ok(())
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("partner", EntityKind::Partner, self.partner));
        if let Some(c) = self.counterparty {
            out.push(
                Ref::new("counterparty", EntityKind::Counterparty, c).must(Requirement::CounterpartyOf(self.partner)),
            );
        }
        if let Some(c) = self.contact {
            out.push(Ref::new("contact", EntityKind::Contact, c).must(Requirement::ContactOf(self.partner)));
        }
        if let Some(d) = self.deal {
            out.push(Ref::new("deal", EntityKind::Deal, d).must(Requirement::DealConcerns(self.partner)));
        }
        if let Some(d) = self.document {
            out.push(Ref::new("document", EntityKind::Document, d).must(Requirement::DocumentOf(self.partner)));
        }
        out.push(Ref::new("responsible", EntityKind::User, self.responsible));
        for s in &self.steps {
            if let Some(a) = s.actor {
                out.push(Ref::new("steps.actor", EntityKind::User, a));
            }
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::ClaimByPartner, self.partner));
        out.push(IndexEntry::by_id(Index::ClaimByResponsible, self.responsible));
        out.push(IndexEntry { index: Index::ClaimByStatus, prefix: status_prefix(self.status) });
        if let Some(d) = self.deal {
            out.push(IndexEntry::by_id(Index::ClaimByDeal, d));
        }
        if let Some(d) = self.document {
            out.push(IndexEntry::by_id(Index::ClaimByDocument, d));
        }
        if let Some(c) = self.counterparty {
            out.push(IndexEntry::by_id(Index::ClaimByCounterparty, c));
        }
        if let Some(c) = self.contact {
            out.push(IndexEntry::by_id(Index::ClaimByContact, c));
        }
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }

    /// A claim written outside the engine starts registered, with nothing decided.
    fn created_outside_engine(
        &mut self,
        _cx: Cx<'_>,
        _actor: Option<UserId>,
    ) -> Result<Option<StageChange>, FieldError> {
        let fresh = Claim {
            steps: self.steps.clone(),
            ..Claim::new(self.partner, "", "", "", self.responsible, self.registered, self.due)
        };
        refuse_changed(
            Self::KIND,
            &fresh.kept_by_operations(self),
            "a new claim is registered; the claim operations (review, postpone, decide, close, reopen) change it",
        )?;
        let registration = |s: &ClaimStep| s.action == ClaimAction::Register && s.to == ClaimStatus::Registered;
        if self.steps.len() != 1 || !registration(&self.steps[0]) {
            return Err(FieldError::new(Self::KIND, "steps", "a new claim's steps are taken by the store"));
        }
        Ok(None)
    }

    fn check_change(&self, new: &Self, by_engine: bool) -> Result<(), FieldError> {
        let k = Self::KIND;
        if !by_engine {
            refuse_changed(k, &[("partner", self.partner != new.partner)], "is fixed: a claim stays with its client")?;
        }
        let kept = new.steps.len() >= self.steps.len() && new.steps[..self.steps.len()] == self.steps[..];
        if !kept {
            return Err(FieldError::new(k, "steps", "a claim's steps are kept as taken: new ones are appended"));
        }
        if !by_engine {
            refuse_changed(
                k,
                &self.kept_by_operations(new),
                "changes only through the claim operations (review, postpone, decide, close, reopen)",
            )?;
            if self.status == ClaimStatus::Closed {
                let changed = [
                    ("kind", self.kind != new.kind),
                    ("cause", self.cause != new.cause),
                    ("claimed", self.claimed != new.claimed),
                    ("subject", self.subject != new.subject),
                    ("description", self.description != new.description),
                    ("responsible", self.responsible != new.responsible),
                    ("due", self.due != new.due),
                ];
                refuse_changed(k, &changed, "does not change once the claim is closed; reopen it first")?;
            }
        }
        Ok(())
    }
}

/// Checks a decision's settled amount against the claim's type and claimed amount: a claim
/// satisfied (fully or partly) under a type that settles amounts names one above zero, a
/// partial one less than the claim, a rejection settles nothing; no settlement exceeds the
/// claim.
pub fn settlement(ty: &ClaimType, d: Decision, claimed: Option<&Money>, settled: Option<&Money>) -> Result<(), String> {
    let positive = settled.filter(|s| !s.amount.is_zero());
    match d {
        Decision::Rejected => {
            if positive.is_some() {
                return Err("a rejected claim settles nothing".into());
            }
        }
        Decision::Satisfied | Decision::PartlySatisfied => {
            if ty.settled_amount_required && positive.is_none() {
                return Err(format!(
                    "a claim of type {} decided {} needs the settled amount (above 0)",
                    ty.id,
                    d.name()
                ));
            }
        }
    }
    if let (Some(s), Some(c)) = (positive, claimed) {
        if s.currency == c.currency {
            if s.amount > c.amount {
                return Err(format!("settles {s}, more than the {c} claimed"));
            }
            if d == Decision::PartlySatisfied && s.amount == c.amount {
                return Err(format!("a partly satisfied claim settles less than the {c} claimed; this is satisfied"));
            }
        }
    }
    Ok(())
}
