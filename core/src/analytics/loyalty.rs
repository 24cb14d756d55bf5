//! Loyalty programs at work: per program, the cards issued and how many are in use (an
//! accrual or a redemption in the last 90 days of the period), dormant, blocked or expired;
//! the points accrued, redeemed and expired in the period; and what is left on the cards at
//! the period's end — the points outstanding and their value in money, the program's
//! liability to its card holders.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::clients::{last_day, today};
use super::scope::dec;
use super::{column, Filter, Rows};
use crate::hooks::View;
use crate::id::{LoyaltyCardId, LoyaltyProgramId, PartnerId};
use crate::model::{CardStatus, EntryKind, LoyaltyCard, LoyaltyProgram};
use crate::report::ColumnType;

pub(super) const ABOUT: &str = "per loyalty program: cards issued (all, in the period), active (an accrual or redemption in the 90 days to the period's end), dormant, blocked, expired; points accrued, redeemed and expired in the period, the turnover counted; the points outstanding at the period's end and their value (the points liability)";

/// A card is active when it earned or spent within this many days of the period's end.
pub const ACTIVE_DAYS: i64 = 90;

/// One program's figures.
#[derive(Default)]
struct Figures {
    cards: u64,
    issued: u64,
    active: u64,
    dormant: u64,
    blocked: u64,
    expired: u64,
    accrued: Decimal,
    redeemed: Decimal,
    expired_points: Decimal,
    turnover: Decimal,
    outstanding: Decimal,
}

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let e = |e: crate::Error| e.to_string();
    let to = last_day(filter, today(view));
    let from = filter.from.unwrap_or(NaiveDate::MIN);
    let mut programs: BTreeMap<LoyaltyProgramId, LoyaltyProgram> = BTreeMap::new();
    view.each_loyalty_program(&mut |p| {
        programs.insert(p.id, p.clone());
        true
    })
    .map_err(e)?;
    // The cards the filter admits (by their holder's manager, department and segment), with
    // their program and status.
    let mut holders: BTreeMap<PartnerId, bool> = BTreeMap::new();
    let mut cards: BTreeMap<LoyaltyCardId, LoyaltyCard> = BTreeMap::new();
    let mut failed = None;
    view.each_loyalty_card(&mut |c| {
        if c.issued > to {
            return true;
        }
        match admitted(view, filter, c, &mut holders) {
            Ok(true) => {
                cards.insert(c.id, c.clone());
                true
            }
            Ok(false) => true,
            Err(m) => {
                failed = Some(m);
                false
            }
        }
    })
    .map_err(e)?;
    if let Some(m) = failed {
        return Err(m);
    }
    // Each card's balance at the period's end and its last accrual or redemption by then.
    let mut state: BTreeMap<LoyaltyCardId, (Decimal, Option<NaiveDate>)> = BTreeMap::new();
    let mut figures: BTreeMap<LoyaltyProgramId, Figures> = BTreeMap::new();
    view.each_loyalty_entry(&mut |entry| {
        let Some(card) = cards.get(&entry.card) else { return true };
        if entry.date > to {
            return true;
        }
        let s = state.entry(entry.card).or_default();
        s.0 += entry.points;
        if matches!(entry.kind, EntryKind::Accrual | EntryKind::Redemption) {
            s.1 = s.1.max(Some(entry.date));
        }
        if entry.date >= from {
            let f = figures.entry(card.program).or_default();
            match entry.kind {
                EntryKind::Accrual => {
                    f.accrued += entry.points;
                    f.turnover += entry.turnover;
                }
                EntryKind::Redemption => f.redeemed -= entry.points,
                EntryKind::Expiry => f.expired_points -= entry.points,
                EntryKind::Correction | EntryKind::Transfer => {}
            }
        }
        true
    })
    .map_err(e)?;
    let active_since = to - chrono::Duration::days(ACTIVE_DAYS - 1);
    for card in cards.values() {
        let f = figures.entry(card.program).or_default();
        let (balance, last) = state.get(&card.id).copied().unwrap_or_default();
        f.cards += 1;
        f.issued += u64::from(card.issued >= from);
        f.outstanding += balance;
        match card.status {
            CardStatus::Blocked => f.blocked += 1,
            CardStatus::Expired => f.expired += 1,
            CardStatus::Active if last.is_some_and(|d| d >= active_since) => f.active += 1,
            CardStatus::Active => f.dormant += 1,
        }
    }

    let columns = vec![
        column("program", ColumnType::Text),
        column("kind", ColumnType::Text),
        column("currency", ColumnType::Text),
        column("cards", ColumnType::Int),
        column("issued", ColumnType::Int),
        column("active", ColumnType::Int),
        column("dormant", ColumnType::Int),
        column("blocked", ColumnType::Int),
        column("expired", ColumnType::Int),
        column("accrued", ColumnType::Decimal),
        column("redeemed", ColumnType::Decimal),
        column("expired_points", ColumnType::Decimal),
        column("turnover", ColumnType::Decimal),
        column("outstanding", ColumnType::Decimal),
        column("liability", ColumnType::Decimal),
    ];
    let mut rows = Vec::new();
    for (id, p) in &programs {
        let Some(f) = figures.get(id) else { continue };
        let liability = p.point_value.map(|v| (f.outstanding.max(Decimal::ZERO) * v).round_dp(2));
        rows.push(vec![
            Value::from(p.name.clone()),
            Value::from(p.kind.name()),
            Value::from(p.currency.to_string()),
            Value::from(f.cards),
            Value::from(f.issued),
            Value::from(f.active),
            Value::from(f.dormant),
            Value::from(f.blocked),
            Value::from(f.expired),
            dec(Some(f.accrued.normalize())),
            dec(Some(f.redeemed.normalize())),
            dec(Some(f.expired_points.normalize())),
            dec(Some(f.turnover.normalize())),
            dec(Some(f.outstanding.normalize())),
            dec(liability.map(|l| l.normalize())),
        ]);
    }
    Ok((columns, rows))
}

/// Whether the filter admits `card`: its holder's partner (a contact person's partner)
/// is managed by the filter's manager, in its department, of its segment.
fn admitted(
    view: &dyn View,
    filter: &Filter,
    card: &LoyaltyCard,
    memo: &mut BTreeMap<PartnerId, bool>,
) -> Result<bool, String> {
    if filter.manager.is_none() && filter.department.is_none() && filter.segment.is_none() {
        return Ok(true);
    }
    let partner = match (card.partner, card.contact) {
        (Some(p), _) => p,
        (None, Some(c)) => match view.contact(c).map_err(|e| e.to_string())? {
            Some(person) => person.partner,
            None => return Ok(false),
        },
        (None, None) => return Ok(false),
    };
    if let Some(known) = memo.get(&partner) {
        return Ok(*known);
    }
    let p = view.partner(partner).map_err(|e| e.to_string())?;
    let ok = match p {
        None => false,
        Some(p) => {
            let manager = p.manager;
            let by_manager = filter.manager.is_none_or(|m| manager == Some(m));
            let by_segment = filter.segment.as_ref().is_none_or(|s| p.segment.as_ref() == Some(s));
            let by_department = match &filter.department {
                None => true,
                Some(d) => match manager {
                    Some(m) => {
                        view.user(m).map_err(|e| e.to_string())?.is_some_and(|u| u.department.as_ref() == Some(d))
                    }
                    None => false,
                },
            };
            by_manager && by_segment && by_department
        }
    };
    memo.insert(partner, ok);
    Ok(ok)
}
