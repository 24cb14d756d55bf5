//! The JSON a handler sees: version 1 of the hook contract. These types are written for
//! handlers, not taken from the stored records, so the records may change without a
//! script or plugin noticing; a change here is a new version, never an edit of this one.
//! docs/hooks.md documents every type with an example, and a test reads those examples
//! back into these types.
//!
//! Conventions: ids are 26-character text; times are RFC 3339 text (UTC); dates are
//! `YYYY-MM-DD`; decimal amounts are text (`"1500000.00"`) so no precision is lost;
//! a field without a value is `null`. Custom field values are plain: text, enum, date and
//! reference values as text, numbers as decimal text, booleans as booleans, money as
//! `{"amount": "…", "currency": "…"}`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::point::HookPoint;
use super::registry::{ClaimTransition, HookInput, Subject, Transition};
use crate::id::{
    ClaimId, ContactId, CounterpartyId, DealId, DocumentId, InteractionId, LoyaltyCardId, LoyaltyProgramId, PartnerId,
    TaskId, UserId,
};
use crate::model::{
    Attitude, CardStatus, Claim, ClaimAction, ClaimStatus, ContactPerson, Counterparty, CounterpartyKind, CustomFields,
    CustomValue, Deal, DealScore, DealStatus, Decision, Direction, Document, DocumentKind, DocumentState, EntityKind,
    How, Interaction, InteractionKind, LoyaltyCard, LoyaltyProgram, Partner, PartnerRole, ProgramKind, Role,
    StageChange, Task, TaskStatus, User,
};
use crate::time::Timestamp;

/// The version of the contract these types are.
pub const VERSION: u32 = 1;

/// A hook call's input, as a handler that speaks JSON receives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputV1 {
    /// The contract version: 1.
    pub v: u32,
    /// The hook point.
    pub hook: HookPoint,
    /// The deal's process kind, when the hook concerns a deal or one of its tasks.
    pub process_kind: Option<String>,
    /// The kind of entity the hook is about (`deal`, `task`, `interaction`, …).
    pub entity: EntityKind,
    /// The acting user (`null`: the system).
    pub actor: Option<ActorV1>,
    /// The entity as stored before the change (`null` on creation).
    pub before: Option<SubjectV1>,
    /// The entity as it will be stored (for `deal.route` and `task.assignee`: the deal as it is).
    pub after: Option<SubjectV1>,
    /// The change of stage or status (transition and close hooks).
    pub transition: Option<TransitionV1>,
    /// `task.assignee`: the task about to be created.
    pub task: Option<TaskV1>,
    /// How many reactions deep this call is (0: a direct request).
    pub depth: u32,
    /// The instant of the operation the call belongs to, from the engine's clock: every
    /// stamp the operation writes (`updated_at`, a step's `at`, a task's due time) is taken
    /// from it. Added to version 1.
    pub now: Timestamp,
    /// `loyalty.accrue`: the card the sale earns on, its program and the sale's amount
    /// (absent at every other point). Added to version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty: Option<LoyaltyV1>,
    /// `partner.strategy`: the partner's figures the segment is decided on (absent at every
    /// other point). Added to version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyV1>,
    /// `claim.before_transition` and `claim.after_transition`: the step the claim takes
    /// (absent at every other point). Added to version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_step: Option<ClaimStepV1>,
}

/// The entity a hook is about; which one is told by the input's `entity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubjectV1 {
    Deal(DealV1),
    Task(TaskV1),
    Interaction(InteractionV1),
    Partner(PartnerV1),
    Counterparty(CounterpartyV1),
    Contact(ContactV1),
    Document(DocumentV1),
    /// Added to version 1.
    Claim(ClaimV1),
    /// Any other entity (links, participants, users, attachments, …), in the form the HTTP
    /// API gives it (`/openapi.json`).
    Record(serde_json::Map<String, Value>),
}

/// The acting user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorV1 {
    pub id: UserId,
    pub login: String,
    pub name: String,
    pub email: Option<String>,
    pub department: Option<String>,
    /// The roles the user acts in (`admin`, `head`, `manager`, `viewer`).
    pub roles: Vec<Role>,
}

/// A change of a deal's stage or status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionV1 {
    /// `manual` (moved by hand), `route` (a managed route), `hold`, `resume`, `won`, `lost`,
    /// `reopen`.
    pub how: How,
    pub from_stage: Option<String>,
    pub to_stage: Option<String>,
    pub from_status: DealStatus,
    pub to_status: DealStatus,
    /// The loss reason, hold comment or move reason.
    pub note: Option<String>,
    /// Whether the change closes the deal (`how` is `won` or `lost`): `to_status` is the
    /// outcome, `to_stage` the stage it is closed in. Added to version 1; absent means false.
    #[serde(default)]
    pub closes: bool,
    /// Whether the deal leaves its stage `from_stage`: moved to another stage (by hand or by
    /// its route), or closed. Hold, resume and reopen leave no stage. Added to version 1;
    /// absent means false.
    #[serde(default)]
    pub leaves_stage: bool,
}

/// A deal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealV1 {
    pub id: DealId,
    /// Goes up by one with every stored change.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub title: String,
    pub partner: PartnerId,
    pub counterparty: Option<CounterpartyId>,
    /// The process kind's id.
    pub kind: String,
    /// The current stage's id (`null` for a stageless kind).
    pub stage: Option<String>,
    /// `in_progress`, `won`, `lost`, `on_hold`.
    pub status: DealStatus,
    pub manager: UserId,
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    pub expected_close: Option<NaiveDate>,
    /// Win probability, percent.
    pub probability: Option<u8>,
    /// Whether `probability` was set by hand (or given when the deal was created): a
    /// scoring model's score and a stage's default leave it as it is. Added to version 1;
    /// absent means false.
    #[serde(default)]
    pub probability_manual: bool,
    /// The score the `deal.score` handler gave the deal, as stored (`null`: none). Added to
    /// version 1; absent means null. Boxed: most deals are handed around without reading it.
    #[serde(default)]
    pub score: Option<Box<ScoreV1>>,
    pub source: Option<String>,
    pub loss_reason: Option<String>,
    pub competitor: Option<PartnerId>,
    pub comment: String,
    pub closed_at: Option<Timestamp>,
    pub stage_entered_at: Option<Timestamp>,
    /// The checklist items of the current stage ticked off.
    pub checklist: Vec<String>,
    pub custom: BTreeMap<String, Value>,
}

/// A deal's stored score: what the `deal.score` handler answered (`probability`, `factors`,
/// `model`, the answer's members) and which handler answered it when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreV1 {
    /// The win probability in percent, 0 to 100, a decimal number as the model gave it.
    pub probability: f64,
    /// The factors that produced it, in the model's order.
    pub factors: Vec<FactorV1>,
    /// The model's name and version, if it gave one.
    pub model: Option<String>,
    /// The handler that computed it, as its binding names it (`scoring.rhai::score`).
    pub handler: String,
    /// When the score last changed.
    pub at: Timestamp,
}

/// One factor of a score: what the model looked at, what it found, and its part in the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorV1 {
    pub name: String,
    /// Text, a number, a boolean or null.
    pub value: Value,
    /// In the model's own unit; positive raises the probability.
    pub contribution: f64,
}

/// One step of a deal's stage history, as the history reads (`read_deal_history`, Rhai's
/// `history`) give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageChangeV1 {
    pub deal: DealId,
    /// 0 for the creation, then 1, 2, … without gaps.
    pub step: u32,
    pub at: Timestamp,
    /// Who made the change (`null`: the system).
    pub actor: Option<UserId>,
    /// `create`, `manual`, `route`, `hold`, `resume`, `won`, `lost`, `reopen`.
    pub how: How,
    pub from_stage: Option<String>,
    pub to_stage: Option<String>,
    /// `null` on the creation step.
    pub from_status: Option<DealStatus>,
    pub to_status: DealStatus,
    /// The time spent in the stage left, in milliseconds, when the step leaves a stage (a
    /// move or a close); `null` otherwise.
    pub dwell_ms: Option<i64>,
    /// The loss reason, a hold comment, or the reason for a manual move.
    pub note: Option<String>,
    /// Brought in from another system with its original time.
    pub imported: bool,
}

/// A user, as the user reads of scripts give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserV1 {
    pub id: UserId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub login: String,
    pub name: String,
    pub email: Option<String>,
    pub department: Option<String>,
    /// `admin`, `head`, `manager`, `viewer`.
    pub roles: Vec<Role>,
    /// Whether the user may sign in and be given work.
    pub active: bool,
    pub custom: BTreeMap<String, Value>,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskV1 {
    pub id: TaskId,
    pub version: u64,
    pub created_at: Timestamp,
    pub title: String,
    pub description: String,
    pub executor: UserId,
    pub due: Option<Timestamp>,
    /// `open`, `done`, `cancelled`.
    pub status: TaskStatus,
    pub deal: Option<DealId>,
    /// The stage that created the task.
    pub stage: Option<String>,
    /// Whether the stage cannot be left while the task is open.
    pub required: bool,
    pub finished_at: Option<Timestamp>,
    pub finished_by: Option<UserId>,
}

/// An interaction: a call, meeting, e-mail or note.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionV1 {
    pub id: InteractionId,
    pub version: u64,
    pub created_at: Timestamp,
    pub kind: InteractionKind,
    pub direction: Option<Direction>,
    pub at: Timestamp,
    pub duration_min: Option<u32>,
    pub subject: String,
    pub body: String,
    pub partner: PartnerId,
    pub deal: Option<DealId>,
    pub contacts: Vec<ContactId>,
    pub author: Option<UserId>,
    pub custom: BTreeMap<String, Value>,
}

/// A partner: the business relationship.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerV1 {
    pub id: PartnerId,
    pub version: u64,
    pub created_at: Timestamp,
    pub name: String,
    pub roles: Vec<PartnerRole>,
    /// The group this partner belongs to.
    pub parent: Option<PartnerId>,
    pub manager: Option<UserId>,
    pub segment: Option<String>,
    pub counterparties: Vec<CounterpartyId>,
    pub source: Option<String>,
    pub comment: String,
    pub custom: BTreeMap<String, Value>,
}

/// A counterparty: the legal subject. Addresses and bank accounts are not part of
/// version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterpartyV1 {
    pub id: CounterpartyId,
    pub version: u64,
    pub created_at: Timestamp,
    /// `legal_entity`, `sole_trader`, `individual`.
    pub kind: CounterpartyKind,
    pub name: String,
    pub full_name: String,
    /// ISO 3166 code.
    pub country: String,
    pub tax_id: Option<String>,
    pub kpp: Option<String>,
    pub reg_number: Option<String>,
    pub custom: BTreeMap<String, Value>,
}

/// A contact person of a partner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactV1 {
    pub id: ContactId,
    pub version: u64,
    pub created_at: Timestamp,
    pub partner: PartnerId,
    pub name: String,
    pub position: String,
    /// E.164.
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub decision_role: Option<String>,
    pub attitude: Option<Attitude>,
    pub comment: String,
    pub custom: BTreeMap<String, Value>,
}

/// A client's claim. Added to version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimV1 {
    pub id: ClaimId,
    pub version: u64,
    pub created_at: Timestamp,
    pub partner: PartnerId,
    pub counterparty: Option<CounterpartyId>,
    pub contact: Option<ContactId>,
    pub deal: Option<DealId>,
    pub document: Option<DocumentId>,
    /// The claim type's id (`[[claim_types]]`).
    pub kind: String,
    /// The cause's id, one of the type's.
    pub cause: String,
    pub subject: String,
    pub description: String,
    /// The amount claimed (null: none named).
    pub claimed: Option<Decimal>,
    /// The amount the decision settles (null: none, or not decided).
    pub settled: Option<Decimal>,
    /// The currency of `claimed` and `settled` (null: neither is named).
    pub currency: Option<String>,
    pub responsible: UserId,
    pub registered: NaiveDate,
    pub due: NaiveDate,
    pub postponed_until: Option<NaiveDate>,
    /// `registered`, `under_review`, `decided`, `closed`.
    pub status: ClaimStatus,
    /// `satisfied`, `partly_satisfied`, `rejected` (null: not decided).
    pub decision: Option<Decision>,
    /// The reply given to the client with the decision.
    pub reply: String,
    pub decided_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    /// How many steps its lifecycle has taken, the registration included.
    pub steps: u32,
    pub custom: BTreeMap<String, Value>,
}

/// The step a claim takes (`claim.before_transition`, `claim.after_transition`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimStepV1 {
    /// `review`, `postpone`, `decide`, `close`, `reopen`.
    pub action: ClaimAction,
    pub from_status: ClaimStatus,
    pub to_status: ClaimStatus,
    /// The review comment, the postponement's or reopening's reason, the decision's reply or
    /// the closing comment (null: none).
    pub note: Option<String>,
}

/// A document: a quote, invoice, order, waybill or payment. Its lines are not part of
/// version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentV1 {
    pub id: DocumentId,
    pub version: u64,
    pub created_at: Timestamp,
    pub kind: DocumentKind,
    pub number: String,
    pub date: NaiveDate,
    pub partner: PartnerId,
    pub deal: Option<DealId>,
    pub counterparty: Option<CounterpartyId>,
    pub amount: Decimal,
    pub currency: String,
    pub state: DocumentState,
    pub comment: String,
    pub custom: BTreeMap<String, Value>,
    /// When it falls due (added within version 1: absent is read as null).
    #[serde(default)]
    pub due: Option<NaiveDate>,
    /// The loyalty card presented on the sale (added within version 1: absent is read as
    /// null).
    #[serde(default)]
    pub card: Option<LoyaltyCardId>,
}

/// `partner.strategy`: what the partner's segment is decided on — its segment now, its
/// classes among the clients, its deals, its last contact and its loyalty cards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyV1 {
    /// The partner's segment now (null: none).
    pub segment: Option<String>,
    /// Per currency it had revenue in: the twelve full months' revenue and the classes the
    /// dossier shows (empty: no revenue in the last two years).
    pub classes: Vec<ClassV1>,
    /// Deals in progress or on hold.
    pub open_deals: u32,
    /// Deals won, ever.
    pub won_deals: u32,
    /// The day of the latest interaction (null: never contacted).
    pub last_contact: Option<NaiveDate>,
    /// Days from it to the run's day (null: never contacted).
    pub days_since_contact: Option<i64>,
    /// The loyalty cards the partner and its contact persons hold.
    pub loyalty: Vec<CardSummaryV1>,
    /// Its claims awaiting a decision (registered or under review). Added to version 1;
    /// absent means 0.
    #[serde(default)]
    pub open_claims: u32,
    /// Its claims registered in the 365 days to the run's day. Added to version 1; absent
    /// means 0.
    #[serde(default)]
    pub recent_claims: u32,
}

/// A client's classes in one currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassV1 {
    /// ISO 4217 code.
    pub currency: String,
    /// Revenue (completed shipments) in the twelve full months before the run.
    pub revenue: Decimal,
    /// `AX` … `CZ`, null without revenue in the months.
    pub abc_xyz: Option<String>,
    /// `star`, `cash cow`, `question mark` or `dog`.
    pub bcg: String,
    /// RFM scores (`535`), null without a purchase in the months.
    pub rfm: Option<String>,
    /// The RFM segment (`loyal`, `at risk`, …).
    pub rfm_segment: Option<String>,
}

/// A loyalty card, in short.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSummaryV1 {
    pub number: String,
    /// The program's name.
    pub program: String,
    pub status: CardStatus,
    pub balance: Decimal,
    pub turnover: Decimal,
}

/// `loyalty.accrue`: the card a sale earns on, its program, and the sale's amount.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoyaltyV1 {
    pub card: CardV1,
    pub program: ProgramV1,
    /// The sale's amount, in the program's currency.
    pub sale_amount: Decimal,
}

/// A loyalty card, with the sums of its ledger before the sale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardV1 {
    pub id: LoyaltyCardId,
    pub number: String,
    /// `active`, `blocked`, `expired`.
    pub status: CardStatus,
    /// The holder: a partner or a contact person (the other is null).
    pub partner: Option<PartnerId>,
    pub contact: Option<ContactId>,
    pub issued: NaiveDate,
    pub expires: Option<NaiveDate>,
    /// Points on the card.
    pub balance: Decimal,
    /// The sales counted on the card so far (its cumulative turnover), in the program's
    /// currency.
    pub turnover: Decimal,
    /// Entries in its ledger.
    pub entries: u32,
    /// The day of its latest entry.
    pub last_activity: Option<NaiveDate>,
}

/// A loyalty program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramV1 {
    pub id: LoyaltyProgramId,
    pub name: String,
    /// `discount` or `bonus`.
    pub kind: ProgramKind,
    /// ISO 4217 code.
    pub currency: String,
    /// What one point is worth (bonus programs).
    pub point_value: Option<Decimal>,
    /// The program's own rate, in percent of a sale (bonus programs; null: none).
    pub accrual_pct: Option<Decimal>,
    /// The discount in percent (discount programs).
    pub discount_pct: Option<Decimal>,
}

impl From<&LoyaltyCard> for CardV1 {
    fn from(c: &LoyaltyCard) -> CardV1 {
        CardV1 {
            id: c.id,
            number: c.number.clone(),
            status: c.status,
            partner: c.partner,
            contact: c.contact,
            issued: c.issued,
            expires: c.expires,
            balance: c.balance,
            turnover: c.turnover,
            entries: c.entries,
            last_activity: c.last_activity,
        }
    }
}

impl From<&LoyaltyProgram> for ProgramV1 {
    fn from(p: &LoyaltyProgram) -> ProgramV1 {
        ProgramV1 {
            id: p.id,
            name: p.name.clone(),
            kind: p.kind,
            currency: p.currency.to_string(),
            point_value: p.point_value,
            accrual_pct: p.accrual_pct,
            discount_pct: p.discount_pct,
        }
    }
}

/// Custom field values in their plain form.
pub fn custom(values: &CustomFields) -> BTreeMap<String, Value> {
    values
        .iter()
        .map(|(k, v)| {
            let v = match v {
                CustomValue::String(s) | CustomValue::Enum(s) => Value::String(s.clone()),
                CustomValue::Number(n) => Value::String(n.to_string()),
                CustomValue::Money(m) => {
                    serde_json::json!({ "amount": m.amount.to_string(), "currency": m.currency.to_string() })
                }
                CustomValue::Date(d) => Value::String(d.to_string()),
                CustomValue::Bool(b) => Value::Bool(*b),
                CustomValue::Ref(id) => Value::String(id.to_string()),
                CustomValue::EnumSet(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
            };
            (k.to_string(), v)
        })
        .collect()
}

impl From<&Deal> for DealV1 {
    fn from(d: &Deal) -> DealV1 {
        DealV1 {
            id: d.id,
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
            title: d.title.clone(),
            partner: d.partner,
            counterparty: d.counterparty,
            kind: d.kind.clone(),
            stage: d.stage.clone(),
            status: d.status,
            manager: d.manager,
            amount: d.amount.amount,
            currency: d.amount.currency.to_string(),
            expected_close: d.expected_close,
            probability: d.probability,
            probability_manual: d.probability_manual,
            score: d.score.as_ref().map(|s| Box::new(ScoreV1::from(s))),
            source: d.source.clone(),
            loss_reason: d.loss_reason.clone(),
            competitor: d.competitor,
            comment: d.comment.clone(),
            closed_at: d.closed_at,
            stage_entered_at: d.stage_entered_at,
            checklist: d.checklist.clone(),
            custom: custom(&d.custom),
        }
    }
}

impl From<&DealScore> for ScoreV1 {
    fn from(s: &DealScore) -> ScoreV1 {
        ScoreV1 {
            probability: s.probability,
            factors: s
                .factors
                .iter()
                .map(|f| FactorV1 { name: f.name.clone(), value: f.value.clone(), contribution: f.contribution })
                .collect(),
            model: s.model.clone(),
            handler: s.handler.clone(),
            at: s.at,
        }
    }
}

impl From<&StageChange> for StageChangeV1 {
    fn from(c: &StageChange) -> StageChangeV1 {
        StageChangeV1 {
            deal: c.deal,
            step: c.step,
            at: c.at,
            actor: c.actor,
            how: c.how,
            from_stage: c.from_stage.clone(),
            to_stage: c.to_stage.clone(),
            from_status: c.from_status,
            to_status: c.to_status,
            dwell_ms: c.dwell_ms,
            note: c.note.clone(),
            imported: c.imported,
        }
    }
}

impl From<&User> for UserV1 {
    fn from(u: &User) -> UserV1 {
        UserV1 {
            id: u.id,
            version: u.version,
            created_at: u.created_at,
            updated_at: u.updated_at,
            login: u.login.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            department: u.department.clone(),
            roles: u.roles.clone(),
            active: u.active,
            custom: custom(&u.custom),
        }
    }
}

/// A deal's stage history in its contract form, step by step: what `read_deal_history`
/// answers.
pub fn history(changes: &[StageChange]) -> Vec<StageChangeV1> {
    changes.iter().map(StageChangeV1::from).collect()
}

impl From<&Task> for TaskV1 {
    fn from(t: &Task) -> TaskV1 {
        TaskV1 {
            id: t.id,
            version: t.version,
            created_at: t.created_at,
            title: t.title.clone(),
            description: t.description.clone(),
            executor: t.executor,
            due: t.due,
            status: t.status,
            deal: t.deal,
            stage: t.stage.clone(),
            required: t.required,
            finished_at: t.finished_at,
            finished_by: t.finished_by,
        }
    }
}

impl From<&Interaction> for InteractionV1 {
    fn from(i: &Interaction) -> InteractionV1 {
        InteractionV1 {
            id: i.id,
            version: i.version,
            created_at: i.created_at,
            kind: i.kind,
            direction: i.direction,
            at: i.at,
            duration_min: i.duration_min,
            subject: i.subject.clone(),
            body: i.body.clone(),
            partner: i.partner,
            deal: i.deal,
            contacts: i.contacts.clone(),
            author: i.author,
            custom: custom(&i.custom),
        }
    }
}

impl From<&Partner> for PartnerV1 {
    fn from(p: &Partner) -> PartnerV1 {
        PartnerV1 {
            id: p.id,
            version: p.version,
            created_at: p.created_at,
            name: p.name.clone(),
            roles: p.roles.clone(),
            parent: p.parent,
            manager: p.manager,
            segment: p.segment.clone(),
            counterparties: p.counterparties.clone(),
            source: p.source.clone(),
            comment: p.comment.clone(),
            custom: custom(&p.custom),
        }
    }
}

impl From<&Counterparty> for CounterpartyV1 {
    fn from(c: &Counterparty) -> CounterpartyV1 {
        CounterpartyV1 {
            id: c.id,
            version: c.version,
            created_at: c.created_at,
            kind: c.kind,
            name: c.name.clone(),
            full_name: c.full_name.clone(),
            country: c.country.clone(),
            tax_id: c.tax_id.clone(),
            kpp: c.kpp.clone(),
            reg_number: c.reg_number.clone(),
            custom: custom(&c.custom),
        }
    }
}

impl From<&ContactPerson> for ContactV1 {
    fn from(c: &ContactPerson) -> ContactV1 {
        ContactV1 {
            id: c.id,
            version: c.version,
            created_at: c.created_at,
            partner: c.partner,
            name: c.name.clone(),
            position: c.position.clone(),
            phones: c.phones.clone(),
            emails: c.emails.clone(),
            decision_role: c.decision_role.clone(),
            attitude: c.attitude,
            comment: c.comment.clone(),
            custom: custom(&c.custom),
        }
    }
}

impl From<&Document> for DocumentV1 {
    fn from(d: &Document) -> DocumentV1 {
        DocumentV1 {
            id: d.id,
            version: d.version,
            created_at: d.created_at,
            kind: d.kind,
            number: d.number.clone(),
            date: d.date,
            partner: d.partner,
            deal: d.deal,
            counterparty: d.counterparty,
            amount: d.amount.amount,
            currency: d.amount.currency.to_string(),
            state: d.state,
            comment: d.comment.clone(),
            custom: custom(&d.custom),
            due: d.due,
            card: d.card,
        }
    }
}

impl From<&Claim> for ClaimV1 {
    fn from(c: &Claim) -> ClaimV1 {
        let currency = c.claimed.as_ref().or(c.settled.as_ref()).map(|m| m.currency.to_string());
        ClaimV1 {
            id: c.id,
            version: c.version,
            created_at: c.created_at,
            partner: c.partner,
            counterparty: c.counterparty,
            contact: c.contact,
            deal: c.deal,
            document: c.document,
            kind: c.kind.clone(),
            cause: c.cause.clone(),
            subject: c.subject.clone(),
            description: c.description.clone(),
            claimed: c.claimed.as_ref().map(|m| m.amount),
            settled: c.settled.as_ref().map(|m| m.amount),
            currency,
            responsible: c.responsible,
            registered: c.registered_on(),
            due: c.due.unwrap_or_else(|| c.registered_on()),
            postponed_until: c.postponed_until,
            status: c.status,
            decision: c.decision,
            reply: c.reply.clone(),
            decided_at: c.decided_at,
            closed_at: c.closed_at,
            steps: c.steps.len() as u32,
            custom: custom(&c.custom),
        }
    }
}

impl From<&ClaimTransition> for ClaimStepV1 {
    fn from(t: &ClaimTransition) -> ClaimStepV1 {
        ClaimStepV1 { action: t.action, from_status: t.from, to_status: t.to, note: t.note.clone() }
    }
}

impl From<&User> for ActorV1 {
    fn from(u: &User) -> ActorV1 {
        ActorV1 {
            id: u.id,
            login: u.login.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            department: u.department.clone(),
            roles: u.roles.clone(),
        }
    }
}

impl From<&Transition> for TransitionV1 {
    fn from(t: &Transition) -> TransitionV1 {
        TransitionV1 {
            how: t.how,
            from_stage: t.from_stage.clone(),
            to_stage: t.to_stage.clone(),
            from_status: t.from_status,
            to_status: t.to_status,
            note: t.note.clone(),
            closes: t.closes(),
            leaves_stage: t.leaves_stage(),
        }
    }
}

impl Transition {
    /// Whether the change closes the deal (won or lost).
    pub fn closes(&self) -> bool {
        matches!(self.how, How::Won | How::Lost)
    }

    /// Whether the deal leaves its stage: moved to another one (by hand or by its route), or
    /// closed. A hold, a resume and a reopen leave no stage.
    pub fn leaves_stage(&self) -> bool {
        self.closes() || (matches!(self.how, How::Manual | How::Route) && self.from_stage != self.to_stage)
    }
}

impl From<&Subject<'_>> for SubjectV1 {
    fn from(s: &Subject<'_>) -> SubjectV1 {
        match s {
            Subject::Deal(d) => SubjectV1::Deal((*d).into()),
            Subject::Task(t) => SubjectV1::Task((*t).into()),
            Subject::Interaction(i) => SubjectV1::Interaction((*i).into()),
            Subject::Partner(p) => SubjectV1::Partner((*p).into()),
            Subject::Counterparty(c) => SubjectV1::Counterparty((*c).into()),
            Subject::Contact(c) => SubjectV1::Contact((*c).into()),
            Subject::Document(d) => SubjectV1::Document((*d).into()),
            Subject::Claim(c) => SubjectV1::Claim((*c).into()),
            Subject::Other(v) => SubjectV1::Record(match v {
                Value::Object(m) => m.clone(),
                other => {
                    let mut m = serde_json::Map::new();
                    m.insert("value".into(), other.clone());
                    m
                }
            }),
        }
    }
}

impl From<&HookInput<'_>> for InputV1 {
    fn from(i: &HookInput<'_>) -> InputV1 {
        InputV1 {
            v: VERSION,
            hook: i.hook,
            process_kind: i.process_kind.map(str::to_string),
            entity: i.entity,
            actor: i.actor.map(ActorV1::from),
            before: i.before.as_ref().map(SubjectV1::from),
            after: i.after.as_ref().map(SubjectV1::from),
            transition: i.transition.map(TransitionV1::from),
            task: i.task.map(TaskV1::from),
            depth: i.depth,
            now: i.now,
            loyalty: i.loyalty.map(|l| LoyaltyV1 {
                card: l.card.into(),
                program: l.program.into(),
                sale_amount: l.sale_amount,
            }),
            strategy: i.strategy.cloned(),
            claim_step: i.claim_step.map(ClaimStepV1::from),
        }
    }
}
