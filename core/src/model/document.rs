//! Documents gathered by a deal: quotes, invoices, customer orders, shipments, payments.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::rules::{money, optional_text, required_text, trim};
use super::Index;
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref, Requirement};
use crate::id::{CounterpartyId, DealId, DocumentId, LoyaltyCardId, PartnerId, UserId};
use crate::time::Timestamp;
use crate::values::Money;

/// What a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Quote,
    Invoice,
    Order,
    Shipment,
    Payment,
}

impl DocumentKind {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            DocumentKind::Quote => "quote",
            DocumentKind::Invoice => "invoice",
            DocumentKind::Order => "order",
            DocumentKind::Shipment => "shipment",
            DocumentKind::Payment => "payment",
        }
    }
}

/// Where a document is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DocumentState {
    /// Being prepared.
    #[default]
    Draft,
    /// Sent to the client / registered.
    Issued,
    /// Accepted or signed by the client.
    Agreed,
    /// Fulfilled: paid, shipped, received.
    Completed,
    Cancelled,
}

impl DocumentState {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            DocumentState::Draft => "draft",
            DocumentState::Issued => "issued",
            DocumentState::Agreed => "agreed",
            DocumentState::Completed => "completed",
            DocumentState::Cancelled => "cancelled",
        }
    }
}

/// A line of a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentLine {
    /// The product or service.
    pub item: String,
    pub qty: Decimal,
    #[serde(default)]
    pub unit: Option<String>,
    /// Price per unit, in the document's currency.
    pub price: Decimal,
}

/// A commercial document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: DocumentId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub kind: DocumentKind,
    pub number: String,
    #[serde(deserialize_with = "crate::values::date::input::date")]
    pub date: NaiveDate,
    pub partner: PartnerId,
    #[serde(default)]
    pub deal: Option<DealId>,
    /// The partner's legal subject on the document.
    #[serde(default)]
    pub counterparty: Option<CounterpartyId>,
    /// The total; when there are lines it must equal their sum.
    pub amount: Money,
    pub state: DocumentState,
    #[serde(default)]
    pub lines: Vec<DocumentLine>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub custom: CustomFields,
    /// When it falls due: an invoice's payment date, an order's or shipment's delivery date
    /// (none: no date was agreed). Not before [`Document::date`]. Schema 7 records without
    /// it read as none.
    #[serde(default, deserialize_with = "crate::values::date::input::optional")]
    pub due: Option<NaiveDate>,
    /// The loyalty card presented on the sale: a completed sale earns on it (none: on the
    /// partner's own active cards). Held by the partner or one of its contact persons.
    /// Schema 15 records without it read as none.
    #[serde(default)]
    pub card: Option<LoyaltyCardId>,
}

impl Document {
    /// A new draft document for `partner`.
    pub fn new(
        kind: DocumentKind,
        number: impl Into<String>,
        date: NaiveDate,
        partner: PartnerId,
        amount: Money,
    ) -> Document {
        Document {
            id: DocumentId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            kind,
            number: number.into(),
            date,
            partner,
            deal: None,
            counterparty: None,
            amount,
            state: DocumentState::Draft,
            lines: Vec::new(),
            comment: String::new(),
            custom: CustomFields::new(),
            due: None,
            card: None,
        }
    }

    /// The sum of the lines, each rounded to the currency's minor units.
    pub fn lines_total(&self) -> Result<Money, crate::values::ValueError> {
        let mut total = Money::zero(self.amount.currency);
        for l in &self.lines {
            total = total.checked_add(Money::new(l.price, self.amount.currency).mul_qty(l.qty)?)?;
        }
        Ok(total)
    }
}

impl Entity for Document {
    const KIND: EntityKind = EntityKind::Document;
    const TABLE: &'static str = "documents";
    type Id = DocumentId;
    entity_meta!(DocumentId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.number);
        for l in &mut self.lines {
            trim(&mut l.item);
        }
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: String, m: String| FieldError::new(k, f, m);
        required_text(k, "number", &self.number, 64)?;
        crate::values::date::check(self.date).map_err(|m| e("date".into(), m))?;
        if let Some(due) = self.due {
            crate::values::date::check(due).map_err(|m| e("due".into(), m))?;
            if due < self.date {
                return Err(e("due".into(), format!("falls due ({due}) before the document's date ({})", self.date)));
            }
        }
        money(k, "amount", &self.amount)?;
        for (i, l) in self.lines.iter().enumerate() {
            required_text(k, &format!("lines[{i}].item"), &l.item, 500)?;
            if l.qty <= Decimal::ZERO {
                return Err(e(format!("lines[{i}].qty"), format!("must be positive, got {}", l.qty)));
            }
            if l.price.is_sign_negative() {
                return Err(e(format!("lines[{i}].price"), format!("must not be negative, got {}", l.price)));
            }
        }
        if !self.lines.is_empty() {
            let total = self.lines_total().map_err(|err| e("lines".into(), err.to_string()))?;
            if total.amount != self.amount.amount {
                return Err(e("amount".into(), format!("is {} but the lines add up to {total}", self.amount)));
            }
        }
        optional_text(k, "comment", &self.comment, 10_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("partner", EntityKind::Partner, self.partner));
        if let Some(d) = self.deal {
            out.push(Ref::new("deal", EntityKind::Deal, d).must(Requirement::DealOf(self.partner)));
        }
        if let Some(c) = self.counterparty {
            out.push(
                Ref::new("counterparty", EntityKind::Counterparty, c).must(Requirement::CounterpartyOf(self.partner)),
            );
        }
        if let Some(c) = self.card {
            out.push(Ref::new("card", EntityKind::LoyaltyCard, c).must(Requirement::CardHeldBy(self.partner)));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::DocumentByPartner, self.partner));
        if let Some(d) = self.deal {
            out.push(IndexEntry::by_id(Index::DocumentByDeal, d));
        }
        if let Some(c) = self.counterparty {
            out.push(IndexEntry::by_id(Index::DocumentByCounterparty, c));
        }
        if let Some(c) = self.card {
            out.push(IndexEntry::by_id(Index::DocumentByCard, c));
        }
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}
