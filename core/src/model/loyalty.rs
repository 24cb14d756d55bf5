//! Loyalty: programs (a discount or bonus points), the cards issued under them and each card's
//! points ledger. A card's balance and turnover are the sums of its ledger's entries; the
//! loyalty operations of the process engine (accrual on a sale, redemption, correction,
//! expiry, reissue) write the entries and keep the sums on the card, and nothing else may.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::rules::{optional_text, refuse_changed, required_text, trim, trim_opt};
use super::Index;
use super::{entity_meta, Cx, DocumentKind, Entity, EntityKind, FieldError, IndexEntry, Ref, StageChange};
use crate::id::{ContactId, DocumentId, LoyaltyCardId, LoyaltyEntryId, LoyaltyProgramId, PartnerId, UserId};
use crate::time::Timestamp;
use crate::values::Currency;

/// The most points one entry moves, and a balance may reach: far beyond any real card, so a
/// rule that answers an absurd figure is caught before it is summed.
pub const MAX_POINTS: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// What a program gives its card holders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramKind {
    /// A discount on every purchase, in percent.
    Discount,
    /// Points accrued on purchases and redeemed for payment.
    Bonus,
}

impl ProgramKind {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ProgramKind::Discount => "discount",
            ProgramKind::Bonus => "bonus",
        }
    }
}

/// A loyalty program: its kind, the currency its sales and points are counted in, when it is
/// valid, and how its points are accrued and expire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyProgram {
    pub id: LoyaltyProgramId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub created_by: Option<UserId>,
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub name: String,
    /// Discount or bonus; fixed once created.
    pub kind: ProgramKind,
    /// The currency of the sales the program counts and of its points' value; fixed.
    pub currency: Currency,
    /// Discount programs: the discount in percent, above 0 and at most 100.
    #[serde(default)]
    pub discount_pct: Option<Decimal>,
    /// Bonus programs: what one point is worth in the program's currency, above 0.
    #[serde(default)]
    pub point_value: Option<Decimal>,
    /// Bonus programs: the points a sale earns when no `loyalty.accrue` rule answers, in
    /// percent of the sale's amount (none: no points without a rule).
    #[serde(default)]
    pub accrual_pct: Option<Decimal>,
    /// Bonus programs: points expire this many days after they are accrued, the oldest
    /// spent first (none: they do not expire).
    #[serde(default)]
    pub points_expire_days: Option<u32>,
    /// The sale a card earns on: a completed `payment` (paid) or `shipment` (shipped).
    pub accrue_on: DocumentKind,
    /// The program's first day.
    #[serde(deserialize_with = "crate::values::date::input::date")]
    pub valid_from: NaiveDate,
    /// Its last day (none: open-ended); its cards expire after it.
    #[serde(default, deserialize_with = "crate::values::date::input::optional")]
    pub valid_to: Option<NaiveDate>,
    #[serde(default)]
    pub comment: String,
}

impl LoyaltyProgram {
    /// A bonus program: `point_value` per point, earning on payments, valid from `from`.
    pub fn bonus(name: impl Into<String>, currency: Currency, point_value: Decimal, from: NaiveDate) -> Self {
        LoyaltyProgram {
            id: LoyaltyProgramId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            name: name.into(),
            kind: ProgramKind::Bonus,
            currency,
            discount_pct: None,
            point_value: Some(point_value),
            accrual_pct: None,
            points_expire_days: None,
            accrue_on: DocumentKind::Payment,
            valid_from: from,
            valid_to: None,
            comment: String::new(),
        }
    }

    /// A discount program of `pct` percent, valid from `from`.
    pub fn discount(name: impl Into<String>, currency: Currency, pct: Decimal, from: NaiveDate) -> Self {
        LoyaltyProgram {
            kind: ProgramKind::Discount,
            discount_pct: Some(pct),
            point_value: None,
            ..LoyaltyProgram::bonus(name, currency, Decimal::ONE, from)
        }
    }

    /// Whether the program is valid on `day`.
    pub fn valid_on(&self, day: NaiveDate) -> bool {
        self.valid_from <= day && self.valid_to.is_none_or(|to| day <= to)
    }
}

/// A decimal with at most `scale` decimal places within `(0, max]`, or an error for `field`.
fn positive(k: EntityKind, field: &str, v: Decimal, max: Decimal, scale: u32) -> Result<(), FieldError> {
    if v <= Decimal::ZERO || v > max {
        return Err(FieldError::new(k, field, format!("must be above 0 and at most {max}, got {v}")));
    }
    if v.normalize().scale() > scale {
        return Err(FieldError::new(k, field, format!("has more than {scale} decimal places: {v}")));
    }
    Ok(())
}

impl Entity for LoyaltyProgram {
    const KIND: EntityKind = EntityKind::LoyaltyProgram;
    const TABLE: &'static str = "loyalty_programs";
    type Id = LoyaltyProgramId;
    entity_meta!(LoyaltyProgramId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.name);
        trim(&mut self.comment);
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: &str, m: String| FieldError::new(k, f, m);
        required_text(k, "name", &self.name, 200)?;
        optional_text(k, "comment", &self.comment, 10_000)?;
        crate::values::date::check(self.valid_from).map_err(|m| e("valid_from", m))?;
        if let Some(to) = self.valid_to {
            crate::values::date::check(to).map_err(|m| e("valid_to", m))?;
            if to < self.valid_from {
                return Err(e("valid_to", format!("the program ends ({to}) before it starts ({})", self.valid_from)));
            }
        }
        if !matches!(self.accrue_on, DocumentKind::Payment | DocumentKind::Shipment) {
            return Err(e(
                "accrue_on",
                format!("is {}; a card earns on a sale: a payment or a shipment", self.accrue_on.name()),
            ));
        }
        let bonus_only = [
            ("point_value", self.point_value.is_some()),
            ("accrual_pct", self.accrual_pct.is_some()),
            ("points_expire_days", self.points_expire_days.is_some()),
        ];
        match self.kind {
            ProgramKind::Discount => {
                let Some(pct) = self.discount_pct else {
                    return Err(e("discount_pct", "a discount program needs its discount in percent".into()));
                };
                positive(k, "discount_pct", pct, Decimal::ONE_HUNDRED, 2)?;
                refuse_changed(k, &bonus_only, "belongs to bonus programs; a discount program has no points")?;
            }
            ProgramKind::Bonus => {
                refuse_changed(
                    k,
                    &[("discount_pct", self.discount_pct.is_some())],
                    "belongs to discount programs; a bonus program gives points",
                )?;
                let Some(value) = self.point_value else {
                    return Err(e("point_value", "a bonus program needs what one point is worth".into()));
                };
                positive(k, "point_value", value, Decimal::from(1_000_000), 4)?;
                if let Some(pct) = self.accrual_pct {
                    positive(k, "accrual_pct", pct, Decimal::ONE_HUNDRED, 2)?;
                }
                if let Some(days) = self.points_expire_days {
                    if !(1..=3660).contains(&days) {
                        return Err(e("points_expire_days", format!("must be from 1 to 3660 days, got {days}")));
                    }
                }
            }
        }
        Ok(())
    }

    fn refs(&self, _out: &mut Vec<Ref>) {}

    fn index_entries(&self, _out: &mut Vec<IndexEntry>) {}

    fn check_change(&self, new: &Self, _by_engine: bool) -> Result<(), FieldError> {
        refuse_changed(
            Self::KIND,
            &[("kind", self.kind != new.kind), ("currency", self.currency != new.currency)],
            "is fixed when the program is created: its cards and ledgers are counted in it",
        )
    }
}

/// Where a card stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    /// In use: earns and redeems.
    #[default]
    Active,
    /// Blocked (lost, stolen, reissued): neither earns nor redeems.
    Blocked,
    /// Past its or its program's last day.
    Expired,
}

impl CardStatus {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Blocked => "blocked",
            CardStatus::Expired => "expired",
        }
    }
}

/// A loyalty card: its number and codes, its program and holder (a partner or a contact
/// person), its status, and the sums of its ledger, which only the loyalty operations change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyCard {
    pub id: LoyaltyCardId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub created_by: Option<UserId>,
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// The card's number, unique among all cards.
    pub number: String,
    /// Its barcode, unique when given.
    #[serde(default)]
    pub barcode: Option<String>,
    /// Its magnetic stripe code, unique when given.
    #[serde(default)]
    pub magnetic_code: Option<String>,
    pub program: LoyaltyProgramId,
    /// The holder, when a partner holds it.
    #[serde(default)]
    pub partner: Option<PartnerId>,
    /// The holder, when a contact person holds it.
    #[serde(default)]
    pub contact: Option<ContactId>,
    /// Active when issued; blocked, reissued and expired by the loyalty operations.
    #[serde(default)]
    pub status: CardStatus,
    /// Why it is blocked or expired (empty: active).
    #[serde(default)]
    pub status_note: String,
    /// The day it was issued.
    #[serde(deserialize_with = "crate::values::date::input::date")]
    pub issued: NaiveDate,
    /// Its last day of use (none: its program's).
    #[serde(default, deserialize_with = "crate::values::date::input::optional")]
    pub expires: Option<NaiveDate>,
    /// The card it replaces: its balance and turnover carried over to this one.
    #[serde(default)]
    pub reissued_from: Option<LoyaltyCardId>,
    /// The points on the card: the sum of its entries' points.
    #[serde(default)]
    pub balance: Decimal,
    /// The sales counted on the card, in its program's currency: the sum of its entries'
    /// turnover.
    #[serde(default)]
    pub turnover: Decimal,
    /// How many entries its ledger has.
    #[serde(default)]
    pub entries: u32,
    /// The day of its latest entry.
    #[serde(default, deserialize_with = "crate::values::date::input::optional")]
    pub last_activity: Option<NaiveDate>,
    #[serde(default)]
    pub comment: String,
}

impl LoyaltyCard {
    /// A new active card of `program` numbered `number`, issued on `issued`, held by `partner`.
    pub fn new(number: impl Into<String>, program: LoyaltyProgramId, partner: PartnerId, issued: NaiveDate) -> Self {
        LoyaltyCard {
            id: LoyaltyCardId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            number: number.into(),
            barcode: None,
            magnetic_code: None,
            program,
            partner: Some(partner),
            contact: None,
            status: CardStatus::Active,
            status_note: String::new(),
            issued,
            expires: None,
            reissued_from: None,
            balance: Decimal::ZERO,
            turnover: Decimal::ZERO,
            entries: 0,
            last_activity: None,
            comment: String::new(),
        }
    }

    /// The fields only the loyalty operations set, with whether `other` differs in each.
    fn kept_by_operations(&self, other: &LoyaltyCard) -> [(&'static str, bool); 6] {
        [
            ("status", self.status != other.status),
            ("balance", self.balance != other.balance),
            ("turnover", self.turnover != other.turnover),
            ("entries", self.entries != other.entries),
            ("last_activity", self.last_activity != other.last_activity),
            ("reissued_from", self.reissued_from != other.reissued_from),
        ]
    }
}

/// A card number or code: 1 to 64 printable characters without spaces.
fn code(k: EntityKind, field: &str, v: &str) -> Result<(), FieldError> {
    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(FieldError::new(
            k,
            field,
            format!("must be 1 to 64 printable characters without spaces (letters, digits, signs), got {v:?}"),
        ));
    }
    Ok(())
}

impl Entity for LoyaltyCard {
    const KIND: EntityKind = EntityKind::LoyaltyCard;
    const TABLE: &'static str = "loyalty_cards";
    type Id = LoyaltyCardId;
    entity_meta!(LoyaltyCardId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.number);
        trim_opt(&mut self.barcode);
        trim_opt(&mut self.magnetic_code);
        trim(&mut self.status_note);
        trim(&mut self.comment);
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: &str, m: String| FieldError::new(k, f, m);
        code(k, "number", &self.number)?;
        if let Some(b) = &self.barcode {
            code(k, "barcode", b)?;
        }
        if let Some(m) = &self.magnetic_code {
            code(k, "magnetic_code", m)?;
        }
        match (self.partner, self.contact) {
            (Some(_), Some(_)) => {
                return Err(e("contact", "a card has one holder: a partner or a contact person, not both".into()))
            }
            (None, None) => return Err(e("partner", "a card needs its holder: a partner or a contact person".into())),
            _ => {}
        }
        crate::values::date::check(self.issued).map_err(|m| e("issued", m))?;
        if let Some(x) = self.expires {
            crate::values::date::check(x).map_err(|m| e("expires", m))?;
            if x < self.issued {
                return Err(e("expires", format!("the card expires ({x}) before it is issued ({})", self.issued)));
            }
        }
        if self.status == CardStatus::Active && !self.status_note.is_empty() {
            return Err(e("status_note", "an active card has no note on its status".into()));
        }
        optional_text(k, "status_note", &self.status_note, 1_000)?;
        optional_text(k, "comment", &self.comment, 10_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("program", EntityKind::LoyaltyProgram, self.program));
        if let Some(p) = self.partner {
            out.push(Ref::new("partner", EntityKind::Partner, p));
        }
        if let Some(c) = self.contact {
            out.push(Ref::new("contact", EntityKind::Contact, c));
        }
        if let Some(c) = self.reissued_from {
            out.push(Ref::new("reissued_from", EntityKind::LoyaltyCard, c));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_text(Index::LoyaltyCardByNumber, &[&self.number]));
        if let Some(b) = &self.barcode {
            out.push(IndexEntry::by_text(Index::LoyaltyCardByBarcode, &[b]));
        }
        if let Some(m) = &self.magnetic_code {
            out.push(IndexEntry::by_text(Index::LoyaltyCardByMagneticCode, &[m]));
        }
        out.push(IndexEntry::by_id(Index::LoyaltyCardByProgram, self.program));
        if let Some(p) = self.partner {
            out.push(IndexEntry::by_id(Index::LoyaltyCardByPartner, p));
        }
        if let Some(c) = self.contact {
            out.push(IndexEntry::by_id(Index::LoyaltyCardByContact, c));
        }
        if let Some(c) = self.reissued_from {
            out.push(IndexEntry::by_id(Index::LoyaltyCardByPredecessor, c));
        }
    }

    fn created_outside_engine(
        &mut self,
        _cx: Cx<'_>,
        _actor: Option<UserId>,
    ) -> Result<Option<StageChange>, FieldError> {
        let fresh = LoyaltyCard::new(self.number.clone(), self.program, PartnerId::default(), self.issued);
        refuse_changed(
            Self::KIND,
            &fresh.kept_by_operations(self),
            "starts active with an empty ledger; the loyalty operations (block, reissue, accrual, redeem) change it",
        )?;
        Ok(None)
    }

    fn check_change(&self, new: &Self, by_engine: bool) -> Result<(), FieldError> {
        let k = Self::KIND;
        refuse_changed(
            k,
            &[("program", self.program != new.program)],
            "is fixed: a card moves to another program by being reissued",
        )?;
        if !by_engine {
            refuse_changed(
                k,
                &self.kept_by_operations(new),
                "is kept by the loyalty operations (block, reissue, accrual, redeem, correct, expire)",
            )?;
        }
        Ok(())
    }

    fn check_delete(&self, _by_engine: bool, _history_steps: u32) -> Result<(), String> {
        if self.entries > 0 {
            return Err(format!(
                "card {} has {} ledger entries, kept for good; block it instead",
                self.number, self.entries
            ));
        }
        Ok(())
    }
}

/// What a ledger entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points (possibly none) earned on a sale, with the sale's amount as turnover.
    Accrual,
    /// Points spent.
    Redemption,
    /// Points past their days, or left on a card that expired.
    Expiry,
    /// A manual correction, up or down, with its reason.
    Correction,
    /// The balance and turnover moved from a card to the one reissued for it.
    Transfer,
}

impl EntryKind {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Accrual => "accrual",
            EntryKind::Redemption => "redemption",
            EntryKind::Expiry => "expiry",
            EntryKind::Correction => "correction",
            EntryKind::Transfer => "transfer",
        }
    }
}

/// One entry of a card's points ledger: append-only, written by the loyalty operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyEntry {
    pub id: LoyaltyEntryId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub created_by: Option<UserId>,
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub card: LoyaltyCardId,
    pub kind: EntryKind,
    /// The day it counts on (an accrual: the sale's date).
    #[serde(deserialize_with = "crate::values::date::input::date")]
    pub date: NaiveDate,
    /// Points in (positive) or out (negative).
    pub points: Decimal,
    /// The sales it adds to the card's turnover (an accrual: the sale's amount; a transfer:
    /// the turnover moved).
    #[serde(default)]
    pub turnover: Decimal,
    /// The card's balance after it.
    pub balance: Decimal,
    /// The sale an accrual is for, or the purchase a redemption pays.
    #[serde(default)]
    pub document: Option<DocumentId>,
    /// A transfer's other card.
    #[serde(default)]
    pub other_card: Option<LoyaltyCardId>,
    /// The rule that computed an accrual (`FILE.rhai::FUNCTION`, a plugin's export,
    /// `program` for the program's own rate).
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub comment: String,
}

impl Entity for LoyaltyEntry {
    const KIND: EntityKind = EntityKind::LoyaltyEntry;
    const TABLE: &'static str = "loyalty_entries";
    type Id = LoyaltyEntryId;
    entity_meta!(LoyaltyEntryId);
    const NEVER_DELETED: Option<&'static str> =
        Some("a card's points ledger is append-only; a correction undoes an entry");

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: &str, m: String| FieldError::new(k, f, m);
        crate::values::date::check(self.date).map_err(|m| e("date", m))?;
        for (field, v) in [("points", self.points), ("turnover", self.turnover), ("balance", self.balance)] {
            if v.abs() > MAX_POINTS {
                return Err(e(field, format!("{v} is beyond the most a card holds ({MAX_POINTS})")));
            }
            if v.normalize().scale() > 2 {
                return Err(e(field, format!("has more than 2 decimal places: {v}")));
            }
        }
        let sign_ok = match self.kind {
            EntryKind::Accrual => self.points >= Decimal::ZERO,
            EntryKind::Redemption | EntryKind::Expiry => self.points < Decimal::ZERO,
            EntryKind::Correction => !self.points.is_zero() || !self.turnover.is_zero(),
            EntryKind::Transfer => true,
        };
        if !sign_ok {
            let want = match self.kind {
                EntryKind::Accrual => "0 or more",
                EntryKind::Correction => "not 0",
                _ => "below 0",
            };
            return Err(e(
                "points",
                format!("an entry of kind {} moves {want} points, got {}", self.kind.name(), self.points),
            ));
        }
        optional_text(k, "comment", &self.comment, 1_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref::new("card", EntityKind::LoyaltyCard, self.card));
        if let Some(d) = self.document {
            out.push(Ref::new("document", EntityKind::Document, d));
        }
        if let Some(c) = self.other_card {
            out.push(Ref::new("other_card", EntityKind::LoyaltyCard, c));
        }
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::LoyaltyEntryByCard, self.card));
        if let Some(d) = self.document {
            out.push(IndexEntry::by_id(Index::LoyaltyEntryByDocument, d));
        }
    }

    fn created_outside_engine(
        &mut self,
        _cx: Cx<'_>,
        _actor: Option<UserId>,
    ) -> Result<Option<StageChange>, FieldError> {
        Err(FieldError::new(
            Self::KIND,
            "card",
            "ledger entries are written by the loyalty operations: accrual on a sale, redeem, correct, expire, reissue",
        ))
    }

    fn check_change(&self, _new: &Self, _by_engine: bool) -> Result<(), FieldError> {
        Err(FieldError::new(Self::KIND, "card", "the points ledger is append-only: an entry never changes"))
    }
}
