//! The loyalty operations: a completed sale earns on a card (`loyalty.accrue`, or the
//! program's own rate), points are redeemed and corrected, cards are blocked and reissued
//! (the balance and turnover carried over), and points and cards expire. Each writes ledger
//! entries and keeps the card's sums in the same transaction; nothing else writes either.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{Cx, Engine};
use crate::hooks::{Answer, HookPoint, Loyalty, Subject};
use crate::id::{DocumentId, LoyaltyCardId, LoyaltyProgramId, TypedId};
use crate::model::{
    CardStatus, Document, DocumentKind, DocumentState, EntityKind, EntryKind, FieldError, LoyaltyCard, LoyaltyEntry,
    LoyaltyProgram, ProgramKind,
};
use crate::store::{Index, Reader, WriteTxn};
use crate::time::Timestamp;
use crate::{Error, Result};

/// What an expiry run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Cards looked at.
    pub cards: u64,
    /// Cards past their or their program's last day, now expired.
    pub cards_expired: u64,
    /// Expiry entries written.
    pub entries: u64,
    /// Points taken off by them.
    pub points: Decimal,
}

fn card_error(field: &str, message: impl Into<String>) -> Error {
    FieldError::new(EntityKind::LoyaltyCard, field, message).into()
}

fn entry_error(field: &str, message: impl Into<String>) -> Error {
    FieldError::new(EntityKind::LoyaltyEntry, field, message).into()
}

/// The last day `card` may be used: its own or its program's, whichever comes first.
pub fn last_day(card: &LoyaltyCard, program: &LoyaltyProgram) -> Option<NaiveDate> {
    match (card.expires, program.valid_to) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why `card` of `program` cannot earn or redeem on `day`, if it cannot.
pub fn unusable(card: &LoyaltyCard, program: &LoyaltyProgram, day: NaiveDate) -> Option<String> {
    let n = &card.number;
    match card.status {
        CardStatus::Active => {}
        CardStatus::Blocked if card.status_note.is_empty() => return Some(format!("card {n} is blocked")),
        CardStatus::Blocked => return Some(format!("card {n} is blocked ({})", card.status_note)),
        CardStatus::Expired => return Some(format!("card {n} has expired")),
    }
    if day < card.issued {
        return Some(format!("card {n} is issued on {}, after {day}", card.issued));
    }
    if let Some(end) = last_day(card, program) {
        if day > end {
            return Some(format!("card {n} expired on {end}"));
        }
    }
    if !program.valid_on(day) {
        return Some(format!("card {n}'s program \"{}\" is not valid on {day}", program.name));
    }
    None
}

/// The entries of `card`'s ledger, in the order they were written (their ids' sequence
/// numbers: a clock set back does not reorder them).
pub fn ledger(r: &impl Reader, card: LoyaltyCardId) -> Result<Vec<LoyaltyEntry>> {
    let mut ids = r.ids_by(Index::LoyaltyEntryByCard, &card.raw().to_bytes(), None, usize::MAX)?;
    ids.sort_by_key(|id| id.seq());
    let mut entries = Vec::with_capacity(ids.len());
    for id in ids {
        entries.push(r.load::<LoyaltyEntry>(crate::id::LoyaltyEntryId::from_raw(id))?);
    }
    Ok(entries)
}

/// What does not add up in the loyalty ledgers, one line each (empty: nothing): every
/// entry's balance is its card's running sum, and each card's balance, turnover, number of
/// entries and last activity are its ledger's.
pub fn verify(r: &impl Reader) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut cards = Vec::new();
    r.for_each::<LoyaltyCard>(|c| {
        cards.push(c);
        true
    })?;
    for card in cards {
        let n = &card.number;
        let (mut balance, mut turnover, mut last) = (Decimal::ZERO, Decimal::ZERO, None);
        let entries = ledger(r, card.id)?;
        for e in &entries {
            balance += e.points;
            turnover += e.turnover;
            last = last.max(Some(e.date));
            if e.balance != balance {
                problems.push(format!(
                    "card {n}: entry {} says a balance of {}, the ledger sums to {balance}",
                    e.id, e.balance
                ));
            }
        }
        let sums = [
            ("balance", card.balance.to_string(), balance.to_string()),
            ("turnover", card.turnover.to_string(), turnover.to_string()),
            ("entries", card.entries.to_string(), entries.len().to_string()),
            ("last activity", format!("{:?}", card.last_activity), format!("{last:?}")),
        ];
        for (what, kept, summed) in sums {
            if kept != summed {
                problems.push(format!("card {n}: its {what} is {kept}, its ledger says {summed}"));
            }
        }
    }
    Ok(problems)
}

/// The entries of `card`'s ledger and of the cards it was reissued from, without the
/// transfers between them: the card's points as if it had been one card all along, so that
/// a reissue does not renew the points it carries over.
fn lineage(r: &impl Reader, card: &LoyaltyCard) -> Result<Vec<LoyaltyEntry>> {
    let mut entries = Vec::new();
    let mut at = Some(card.id);
    let mut seen = 0;
    while let Some(id) = at {
        let c: LoyaltyCard = r.load(id)?;
        entries.extend(ledger(r, id)?.into_iter().filter(|e| e.kind != EntryKind::Transfer));
        at = c.reissued_from;
        seen += 1;
        if seen > 1_000 {
            break;
        }
    }
    Ok(entries)
}

/// A new entry of `kind` on `day` moving `points`.
fn entry(kind: EntryKind, date: NaiveDate, points: Decimal) -> LoyaltyEntry {
    LoyaltyEntry {
        id: Default::default(),
        version: 0,
        created_at: Timestamp::default(),
        updated_at: Timestamp::default(),
        created_by: None,
        updated_by: None,
        card: LoyaltyCardId::default(),
        kind,
        date,
        points,
        turnover: Decimal::ZERO,
        balance: Decimal::ZERO,
        document: None,
        other_card: None,
        rule: None,
        comment: String::new(),
    }
}

impl Engine {
    /// Spends `points` (above 0, at most the balance) of an active bonus card, on the day of
    /// the operation; `document` is the purchase they pay, if any.
    pub fn redeem(
        &self,
        tx: &mut WriteTxn<'_>,
        card: LoyaltyCardId,
        points: Decimal,
        document: Option<DocumentId>,
        comment: &str,
    ) -> Result<LoyaltyEntry> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            if points <= Decimal::ZERO {
                return Err(entry_error("points", format!("a redemption spends more than 0 points, got {points}")));
            }
            let card: LoyaltyCard = tx.load(card)?;
            let program: LoyaltyProgram = tx.load(card.program)?;
            if program.kind != ProgramKind::Bonus {
                return Err(card_error(
                    "program",
                    format!("card {}'s program \"{}\" gives a discount, not points", card.number, program.name),
                ));
            }
            let day = cx.now.date();
            if let Some(why) = unusable(&card, &program, day) {
                return Err(card_error("status", format!("{why}: it redeems nothing")));
            }
            if points > card.balance {
                return Err(entry_error(
                    "points",
                    format!("redeems {points} points, but card {} has {}", card.number, card.balance),
                ));
            }
            let mut e = entry(EntryKind::Redemption, day, -points);
            e.document = document;
            e.comment = comment.trim().to_string();
            cx.post(tx, card, e)
        })
    }

    /// Corrects a card's points (up or down, not below 0) and, when `turnover` is given, its
    /// turnover, with the reason; any card, whatever its status.
    pub fn correct(
        &self,
        tx: &mut WriteTxn<'_>,
        card: LoyaltyCardId,
        points: Decimal,
        turnover: Decimal,
        comment: &str,
    ) -> Result<LoyaltyEntry> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            if comment.trim().is_empty() {
                return Err(entry_error("comment", "a correction needs its reason"));
            }
            let card: LoyaltyCard = tx.load(card)?;
            if card.balance + points < Decimal::ZERO {
                return Err(entry_error(
                    "points",
                    format!("takes {} points, but card {} has {}", -points, card.number, card.balance),
                ));
            }
            if card.turnover + turnover < Decimal::ZERO {
                return Err(entry_error(
                    "turnover",
                    format!("takes {} off a turnover of {} on card {}", -turnover, card.turnover, card.number),
                ));
            }
            let mut e = entry(EntryKind::Correction, cx.now.date(), points);
            e.turnover = turnover;
            e.comment = comment.trim().to_string();
            cx.post(tx, card, e)
        })
    }

    /// Blocks an active card (lost, stolen, misused) with the reason: it neither earns nor
    /// redeems; its balance stays for a reissue.
    pub fn block(&self, tx: &mut WriteTxn<'_>, card: LoyaltyCardId, version: u64, reason: &str) -> Result<LoyaltyCard> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let mut card = current(tx, card, version)?;
            if reason.trim().is_empty() {
                return Err(card_error("status_note", "blocking a card needs its reason"));
            }
            if card.status != CardStatus::Active {
                return Err(card_error(
                    "status",
                    format!("card {} is {}, not active", card.number, card.status.name()),
                ));
            }
            card.status = CardStatus::Blocked;
            card.status_note = reason.trim().to_string();
            tx.as_engine(|tx| tx.update(card))
        })
    }

    /// Issues `new` (its number and codes, issue and expiry days) in place of card `card`,
    /// active or blocked: same program and holder; the old card is blocked and its balance
    /// and turnover move to the new one by a pair of transfer entries.
    pub fn reissue(
        &self,
        tx: &mut WriteTxn<'_>,
        card: LoyaltyCardId,
        version: u64,
        mut new: LoyaltyCard,
    ) -> Result<LoyaltyCard> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let old = current(tx, card, version)?;
            if old.status == CardStatus::Expired {
                return Err(card_error("status", format!("card {} has expired: nothing to carry over", old.number)));
            }
            let successors = tx.ids_by(Index::LoyaltyCardByPredecessor, &old.id.raw().to_bytes(), None, 1)?;
            if let Some(next) = successors.first() {
                return Err(card_error("status", format!("card {} is already reissued as card {next}", old.number)));
            }
            new.program = old.program;
            new.partner = old.partner;
            new.contact = old.contact;
            new.reissued_from = Some(old.id);
            new.status = CardStatus::Active;
            new.status_note = String::new();
            new.balance = Decimal::ZERO;
            new.turnover = Decimal::ZERO;
            new.entries = 0;
            new.last_activity = None;
            let new = tx.as_engine(|tx| tx.create(new))?;
            let day = cx.now.date();
            let (balance, turnover) = (old.balance, old.turnover);
            let mut old = old;
            if old.status == CardStatus::Active {
                old.status = CardStatus::Blocked;
                old.status_note = format!("reissued as {}", new.number);
            }
            let mut old = tx.as_engine(|tx| tx.update(old))?;
            if balance.is_zero() && turnover.is_zero() {
                return Ok(new);
            }
            let mut out = entry(EntryKind::Transfer, day, -balance);
            out.turnover = -turnover;
            out.other_card = Some(new.id);
            out.comment = format!("carried over to card {}", new.number);
            cx.post(tx, old.clone(), out)?;
            old = tx.load(old.id)?;
            let mut into = entry(EntryKind::Transfer, day, balance);
            into.turnover = turnover;
            into.other_card = Some(old.id);
            into.comment = format!("carried over from card {}", old.number);
            let new_id = new.id;
            cx.post(tx, new, into)?;
            tx.load(new_id)
        })
    }

    /// Expires, as of `today`: the active cards past their or their program's last day
    /// (their points with them), and on the other cards of bonus programs with
    /// `points_expire_days`, the points accrued that many days ago or earlier that later
    /// spending has not used (the oldest points are spent first). Running it again the same
    /// day writes nothing.
    pub fn expire(&self, tx: &mut WriteTxn<'_>, today: NaiveDate) -> Result<Expired> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let mut programs = BTreeMap::<LoyaltyProgramId, LoyaltyProgram>::new();
            tx.for_each::<LoyaltyProgram>(|p| {
                programs.insert(p.id, p);
                true
            })?;
            let mut cards = Vec::new();
            tx.for_each::<LoyaltyCard>(|c| {
                cards.push(c);
                true
            })?;
            let mut done = Expired::default();
            for card in cards {
                done.cards += 1;
                let program = &programs[&card.program];
                let end = last_day(&card, program);
                if card.status == CardStatus::Active && end.is_some_and(|end| end < today) {
                    let end = end.expect("checked");
                    let id = card.id;
                    let balance = card.balance;
                    if balance > Decimal::ZERO {
                        let mut e = entry(EntryKind::Expiry, today, -card.balance);
                        e.comment = format!("the card expired on {end}");
                        cx.post(tx, card, e)?;
                        done.entries += 1;
                    }
                    let mut card: LoyaltyCard = tx.load(id)?;
                    done.points += balance.max(Decimal::ZERO);
                    card.status = CardStatus::Expired;
                    card.status_note = format!("expired on {end}");
                    tx.as_engine(|tx| tx.update(card))?;
                    done.cards_expired += 1;
                    continue;
                }
                let Some(days) = program.points_expire_days else { continue };
                if card.balance <= Decimal::ZERO {
                    continue;
                }
                let cutoff = today - chrono::Duration::days(i64::from(days));
                let (mut earned_by_cutoff, mut spent) = (Decimal::ZERO, Decimal::ZERO);
                for e in lineage(&*tx, &card)? {
                    if e.points > Decimal::ZERO && e.date <= cutoff {
                        earned_by_cutoff += e.points;
                    } else if e.points < Decimal::ZERO {
                        spent -= e.points;
                    }
                }
                let due = (earned_by_cutoff - spent).min(card.balance);
                if due > Decimal::ZERO {
                    let mut e = entry(EntryKind::Expiry, today, -due);
                    e.comment = format!("points accrued by {cutoff}, {days} days before {today}");
                    cx.post(tx, card, e)?;
                    done.entries += 1;
                    done.points += due;
                }
            }
            Ok(done)
        })
    }

    /// Lets a completed sale earn on its cards, as creating or completing it through the
    /// engine does: for sales written before their cards, or by another path. A sale that
    /// has earned on a card does not earn on it again.
    pub fn accrue(&self, tx: &mut WriteTxn<'_>, document: DocumentId) -> Result<Vec<LoyaltyEntry>> {
        let cx = self.cx(tx)?;
        cx.attempt(tx, |tx| {
            let doc: Document = tx.load(document)?;
            cx.accrue_sale(tx, &doc)
        })
    }
}

/// The stored card, if the caller has its current version.
fn current(tx: &WriteTxn<'_>, id: LoyaltyCardId, version: u64) -> Result<LoyaltyCard> {
    let card: LoyaltyCard = tx.load(id)?;
    if card.version != version {
        return Err(Error::Conflict {
            kind: EntityKind::LoyaltyCard,
            id: id.raw(),
            given: version,
            stored: card.version,
        });
    }
    Ok(card)
}

/// The accruals of `doc` that stand: per card, its latest accrual unless as many have been
/// taken back (a correction naming the document is a taking back).
fn standing_accruals(tx: &WriteTxn<'_>, doc: &Document) -> Result<Vec<LoyaltyEntry>> {
    let mut by_card: BTreeMap<LoyaltyCardId, (Option<LoyaltyEntry>, u32, u32)> = BTreeMap::new();
    let mut ids = tx.ids_by(Index::LoyaltyEntryByDocument, &doc.id.raw().to_bytes(), None, usize::MAX)?;
    ids.sort_by_key(|id| id.seq());
    for id in ids {
        let e: LoyaltyEntry = tx.load(crate::id::LoyaltyEntryId::from_raw(id))?;
        let slot = by_card.entry(e.card).or_default();
        match e.kind {
            EntryKind::Accrual => {
                slot.1 += 1;
                slot.0 = Some(e);
            }
            EntryKind::Correction => slot.2 += 1,
            _ => {}
        }
    }
    Ok(by_card.into_values().filter(|(_, a, r)| a > r).filter_map(|(e, ..)| e).collect())
}

/// Whether a document of this kind in this state is a sale a card earns on.
pub fn is_sale(kind: DocumentKind, state: DocumentState) -> bool {
    matches!(kind, DocumentKind::Payment | DocumentKind::Shipment) && state == DocumentState::Completed
}

impl Cx<'_> {
    /// Writes `e` on `card` and keeps the card's sums: the entry's balance is the card's
    /// after it.
    fn post(&self, tx: &mut WriteTxn<'_>, mut card: LoyaltyCard, mut e: LoyaltyEntry) -> Result<LoyaltyEntry> {
        e.card = card.id;
        e.balance = card.balance + e.points;
        card.balance = e.balance;
        card.turnover += e.turnover;
        card.entries += 1;
        card.last_activity = card.last_activity.max(Some(e.date));
        let e = tx.as_engine(|tx| tx.create(e))?;
        tx.as_engine(|tx| tx.update(card))?;
        Ok(e)
    }

    /// A completed sale (a payment or shipment, as each card's program says) earns on the
    /// card it names — which must be usable on the sale's day and in the sale's currency —
    /// or else on each of its partner's own usable cards; once per card.
    pub(super) fn accrue_sale(&self, tx: &mut WriteTxn<'_>, doc: &Document) -> Result<Vec<LoyaltyEntry>> {
        let mut written = Vec::new();
        let standing = standing_accruals(tx, doc)?;
        if !is_sale(doc.kind, doc.state) {
            // No longer a sale (cancelled, reopened, another kind): what it earned is taken
            // back, even below a balance of 0 when the points were spent.
            for a in standing {
                if a.points.is_zero() && a.turnover.is_zero() {
                    continue;
                }
                let card: LoyaltyCard = tx.load(a.card)?;
                let mut e = entry(EntryKind::Correction, self.now.date(), -a.points);
                e.turnover = -a.turnover;
                e.document = Some(doc.id);
                e.comment = format!("document {} is no longer a completed sale: its accrual taken back", doc.number);
                written.push(self.post(tx, card, e)?);
            }
            return Ok(written);
        }
        let named = doc.card.is_some();
        let ids = match doc.card {
            Some(c) => vec![c],
            None => tx
                .ids_by(Index::LoyaltyCardByPartner, &doc.partner.raw().to_bytes(), None, usize::MAX)?
                .into_iter()
                .map(LoyaltyCardId::from_raw)
                .collect(),
        };
        if ids.is_empty() {
            return Ok(written);
        }
        let earned: Vec<LoyaltyCardId> = standing.iter().map(|a| a.card).collect();
        let refuse = |m: String| -> Error { FieldError::new(EntityKind::Document, "card", m).into() };
        if let (Some(named), Some(other)) = (doc.card, earned.first()) {
            if !earned.contains(&named) {
                let other: LoyaltyCard = tx.load(*other)?;
                return Err(refuse(format!(
                    "the sale has earned on card {} already: it does not earn on another (a correction moves points)",
                    other.number
                )));
            }
        }
        for id in ids {
            if earned.contains(&id) {
                continue;
            }
            let card: LoyaltyCard = tx.load(id)?;
            let program: LoyaltyProgram = tx.load(card.program)?;
            if program.accrue_on != doc.kind {
                continue;
            }
            if let Some(why) = unusable(&card, &program, doc.date) {
                if named {
                    return Err(refuse(format!("{why}: it earns nothing on the sale")));
                }
                continue;
            }
            if doc.amount.currency != program.currency {
                if named {
                    return Err(refuse(format!(
                        "the sale is in {}, card {}'s program \"{}\" counts {}",
                        doc.amount.currency, card.number, program.name, program.currency
                    )));
                }
                continue;
            }
            let sale = doc.amount.amount;
            let (points, rule, reason) = match program.kind {
                ProgramKind::Discount => (Decimal::ZERO, None, None),
                ProgramKind::Bonus => self.points(tx, doc, &card, &program)?,
            };
            let mut e = entry(EntryKind::Accrual, doc.date, points);
            e.turnover = sale;
            e.document = Some(doc.id);
            e.rule = rule;
            e.comment = reason.unwrap_or_default();
            written.push(self.post(tx, card, e)?);
        }
        Ok(written)
    }

    /// The points a sale earns on a bonus card: the first `loyalty.accrue` answer, held to
    /// the sale (the points may not be worth more than it), or else the program's rate.
    fn points(
        &self,
        tx: &WriteTxn<'_>,
        doc: &Document,
        card: &LoyaltyCard,
        program: &LoyaltyProgram,
    ) -> Result<(Decimal, Option<String>, Option<String>)> {
        let point = HookPoint::LoyaltyAccrue;
        let sale = doc.amount.amount;
        let value = program.point_value.unwrap_or(Decimal::ONE);
        if self.hooks.any(point, None) {
            let loyalty = Loyalty { card, program, sale_amount: sale };
            let mut input = self.input(tx, point, None, EntityKind::Document, None, Some(Subject::Document(doc)), None);
            input.loyalty = Some(&loyalty);
            for asked in self.hooks.ask(&input) {
                if let (name, Answer::Points(Some(p))) = asked? {
                    let worth = p.points * value;
                    if worth > sale {
                        return Err(Error::HookFault {
                            hook: point.name(),
                            handler: name.to_string(),
                            message: format!(
                                "answered {} points, worth {worth} {}: more than the sale's {sale} (document {})",
                                p.points, program.currency, doc.number
                            ),
                        });
                    }
                    return Ok((p.points, Some(name.to_string()), p.reason));
                }
            }
        }
        match program.accrual_pct {
            Some(pct) => {
                let points = (sale * pct / Decimal::ONE_HUNDRED / value)
                    .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                    .normalize();
                Ok((points, Some("program".to_string()), Some(format!("{pct}% of the sale"))))
            }
            None => Ok((Decimal::ZERO, None, None)),
        }
    }
}
