//! Loyalty: programs, cards and their append-only points ledgers on a real store, through the
//! process engine — a completed sale earns on a card once, by the program's rate or a
//! `loyalty.accrue` rule (the shipped Rhai rule and the C plugin built from its source agree
//! sale by sale); redemptions never take a balance below 0; blocked and expired cards earn
//! nothing; a reissue carries the balance over; points expire oldest first; and every refusal
//! leaves the database as it was.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::hooks::{Fault, HookInput, HookPoint, Hooks};
use crmkit_core::id::{LoyaltyCardId, PartnerId, UserId};
use crmkit_core::model::{
    CardStatus, ContactPerson, Document, DocumentKind, DocumentState, EntryKind, LoyaltyCard, LoyaltyEntry,
    LoyaltyProgram,
};
use crmkit_core::process::{loyalty, Engine};
use crmkit_core::store::{Reader, WriteTxn};
use crmkit_core::values::{Currency, Money};
use crmkit_core::Error;
use rust_decimal::Decimal;
use serde_json::json;

use crate::common::{native_engine, Fixture};

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// A client, a bonus program (1 point = 1 RUB, 2% by its own rate, points for 90 days) and a
/// discount program, and the client's bonus card.
struct Club {
    fx: Fixture,
    partner: PartnerId,
    manager: UserId,
    bonus: LoyaltyProgram,
    discount: LoyaltyProgram,
    card: LoyaltyCard,
}

fn club() -> Club {
    let fx = Fixture::new();
    let (p, manager) = fx.client("Альфа");
    let (bonus, discount, card) = fx
        .store
        .transact(None, |tx| {
            let mut bonus = LoyaltyProgram::bonus("Бонусный клуб", Currency::RUB, Decimal::ONE, day("2026-01-01"));
            bonus.accrual_pct = Some(dec("2"));
            bonus.points_expire_days = Some(90);
            let bonus = tx.create(bonus)?;
            let discount =
                tx.create(LoyaltyProgram::discount("Скидка 5%", Currency::RUB, dec("5"), day("2026-01-01")))?;
            let card = tx.create(LoyaltyCard::new("1000001", bonus.id, p.id, day("2026-02-01")))?;
            Ok((bonus, discount, card))
        })
        .unwrap();
    Club { fx, partner: p.id, manager, bonus, discount, card }
}

fn payment(partner: PartnerId, number: &str, date: &str, amount: &str, card: Option<LoyaltyCardId>) -> Document {
    let mut d =
        Document::new(DocumentKind::Payment, number, day(date), partner, Money::new(dec(amount), Currency::RUB));
    d.state = DocumentState::Completed;
    d.card = card;
    d
}

fn card(fx: &Fixture, id: LoyaltyCardId) -> LoyaltyCard {
    fx.store.read().unwrap().load(id).unwrap()
}

fn ledger(fx: &Fixture, id: LoyaltyCardId) -> Vec<LoyaltyEntry> {
    loyalty::ledger(&fx.store.read().unwrap(), id).unwrap()
}

fn verified(fx: &Fixture) {
    assert_eq!(loyalty::verify(&fx.store.read().unwrap()).unwrap(), Vec::<String>::new());
}

#[test]
fn a_completed_sale_earns_once_on_the_card_it_names_or_the_partners_own() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    // A draft payment earns nothing; completing it earns 2% of it, once.
    let draft = fx
        .store
        .transact(Some(c.manager), |tx| {
            let mut d = payment(c.partner, "П-1", "2026-03-01", "10000.00", Some(c.card.id));
            d.state = DocumentState::Issued;
            engine.create(tx, d)
        })
        .unwrap();
    assert!(ledger(fx, c.card.id).is_empty());
    let done = fx
        .store
        .transact(Some(c.manager), |tx| {
            let mut d = draft.clone();
            d.state = DocumentState::Completed;
            engine.update(tx, d)
        })
        .unwrap();
    let entries = ledger(fx, c.card.id);
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e.kind, e.points, e.turnover, e.balance), (EntryKind::Accrual, dec("200"), dec("10000"), dec("200")));
    assert_eq!((e.document, e.date, e.rule.as_deref()), (Some(done.id), day("2026-03-01"), Some("program")));
    // Saving the completed sale again, or asking to accrue it again, earns nothing more.
    fx.store
        .transact(Some(c.manager), |tx| {
            let mut d = done.clone();
            d.comment = "оплачено".into();
            engine.update(tx, d)?;
            engine.accrue(tx, done.id)
        })
        .unwrap();
    assert_eq!(ledger(fx, c.card.id).len(), 1);
    // Cancelled, the sale's accrual is taken back (even below 0, had the points been spent);
    // completed again, it earns again.
    let cancelled = fx
        .store
        .transact(Some(c.manager), |tx| {
            let mut d: Document = tx.load(done.id)?;
            d.state = DocumentState::Cancelled;
            engine.update(tx, d)
        })
        .unwrap();
    let back = ledger(fx, c.card.id).pop().unwrap();
    assert_eq!(
        (back.kind, back.points, back.turnover, back.balance),
        (EntryKind::Correction, dec("-200"), dec("-10000"), dec("0"))
    );
    assert_eq!(back.document, Some(done.id));
    fx.store
        .transact(Some(c.manager), |tx| {
            let mut d = cancelled.clone();
            d.state = DocumentState::Completed;
            engine.update(tx, d)?;
            // Saved again as it is: nothing more.
            let d: Document = tx.load(done.id)?;
            engine.update(tx, d)
        })
        .unwrap();
    assert_eq!(ledger(fx, c.card.id).len(), 3);
    assert_eq!(card(fx, c.card.id).balance, dec("200"));
    // A sale naming no card earns on the partner's own active cards: the bonus card and a
    // discount card (whose ledger counts the turnover, with no points).
    let discount_card = fx
        .store
        .transact(None, |tx| tx.create(LoyaltyCard::new("2000001", c.discount.id, c.partner, day("2026-02-01"))))
        .unwrap();
    fx.store
        .transact(Some(c.manager), |tx| engine.create(tx, payment(c.partner, "П-2", "2026-03-02", "555.55", None)))
        .unwrap();
    let bonus = card(fx, c.card.id);
    assert_eq!((bonus.balance, bonus.turnover, bonus.entries), (dec("211.11"), dec("10555.55"), 4));
    assert_eq!(bonus.last_activity, Some(day("2026-03-02")));
    let discount = card(fx, discount_card.id);
    assert_eq!((discount.balance, discount.turnover, discount.entries), (dec("0"), dec("555.55"), 1));
    // A shipment is no sale for programs that earn on payments; an invoice no sale at all.
    fx.store
        .transact(Some(c.manager), |tx| {
            let mut s = payment(c.partner, "Р-1", "2026-03-03", "1000.00", Some(c.card.id));
            s.kind = DocumentKind::Shipment;
            engine.create(tx, s)?;
            let mut i = payment(c.partner, "С-1", "2026-03-03", "1000.00", Some(c.card.id));
            i.kind = DocumentKind::Invoice;
            engine.create(tx, i)
        })
        .unwrap();
    assert_eq!(card(fx, c.card.id).entries, 4);
    verified(fx);
}

#[test]
fn a_card_named_on_a_sale_must_be_the_partners_usable_and_in_the_sales_currency() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    let (other, _) = fx.client("Бета");
    // Another partner's card is refused on the reference.
    let err = fx.refused(Some(c.manager), |tx| {
        engine.create(tx, payment(other.id, "П-9", "2026-03-01", "100.00", Some(c.card.id)))
    });
    assert!(err.to_string().contains("document.card: card 1000001 is held by neither partner"), "{err}");
    // A sale that has earned on one card does not earn on another.
    let other_card = fx
        .store
        .transact(None, |tx| tx.create(LoyaltyCard::new("1000005", c.bonus.id, c.partner, day("2026-02-01"))))
        .unwrap();
    let earned = fx
        .store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-8", "2026-03-01", "100.00", Some(c.card.id)))
        })
        .unwrap();
    let err = fx.refused(Some(c.manager), |tx| {
        let mut d = earned.clone();
        d.card = Some(other_card.id);
        engine.update(tx, d)
    });
    assert!(err.to_string().contains("the sale has earned on card 1000001 already"), "{err}");
    // A contact person's card is the partner's.
    let contact = fx
        .store
        .transact(None, |tx| {
            let person = tx.create(ContactPerson::new(c.partner, "Иван Петров"))?;
            let mut card = LoyaltyCard::new("1000002", c.bonus.id, c.partner, day("2026-02-01"));
            card.partner = None;
            card.contact = Some(person.id);
            tx.create(card)
        })
        .unwrap();
    fx.store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-10", "2026-03-01", "100.00", Some(contact.id)))
        })
        .unwrap();
    assert_eq!(card(fx, contact.id).balance, dec("2"));
    // Before its issue day, in another currency: refused, nothing written.
    let err = fx.refused(Some(c.manager), |tx| {
        engine.create(tx, payment(c.partner, "П-11", "2026-01-15", "100.00", Some(c.card.id)))
    });
    assert!(err.to_string().contains("card 1000001 is issued on 2026-02-01, after 2026-01-15"), "{err}");
    let err = fx.refused(Some(c.manager), |tx| {
        let mut d = payment(c.partner, "П-12", "2026-03-01", "100.00", Some(c.card.id));
        d.amount = Money::new(dec("100.00"), Currency::EUR);
        engine.create(tx, d)
    });
    assert!(
        err.to_string().contains("the sale is in EUR, card 1000001's program \"Бонусный клуб\" counts RUB"),
        "{err}"
    );
}

#[test]
fn blocked_and_expired_cards_earn_and_redeem_nothing_and_nothing_is_written() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    fx.store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-1", "2026-03-01", "5000.00", Some(c.card.id)))
        })
        .unwrap();
    let blocked = fx
        .store
        .transact(Some(c.manager), |tx| engine.block(tx, c.card.id, card(fx, c.card.id).version, "утеряна"))
        .unwrap();
    assert_eq!((blocked.status, blocked.status_note.as_str()), (CardStatus::Blocked, "утеряна"));
    let err = fx.refused(Some(c.manager), |tx| {
        engine.create(tx, payment(c.partner, "П-2", "2026-03-02", "100.00", Some(c.card.id)))
    });
    assert_eq!(
        err.to_string(),
        "invalid document.card: card 1000001 is blocked (утеряна): it earns nothing on the sale"
    );
    let err = fx.refused(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("10"), None, ""));
    assert!(err.to_string().contains("card 1000001 is blocked (утеряна): it redeems nothing"), "{err}");
    let err = fx.refused(Some(c.manager), |tx| engine.block(tx, c.card.id, blocked.version, "дважды"));
    assert!(err.to_string().contains("card 1000001 is blocked, not active"), "{err}");
    // A sale naming no card skips the blocked one.
    fx.store
        .transact(Some(c.manager), |tx| engine.create(tx, payment(c.partner, "П-3", "2026-03-02", "100.00", None)))
        .unwrap();
    assert_eq!(card(fx, c.card.id).entries, 1);
    // A card past its last day earns nothing, before and after the expiry run marks it.
    let short = fx
        .store
        .transact(None, |tx| {
            let mut card = LoyaltyCard::new("1000003", c.bonus.id, c.partner, day("2026-02-01"));
            card.expires = Some(day("2026-02-28"));
            tx.create(card)
        })
        .unwrap();
    let err = fx.refused(Some(c.manager), |tx| {
        engine.create(tx, payment(c.partner, "П-4", "2026-03-05", "100.00", Some(short.id)))
    });
    assert!(err.to_string().contains("card 1000003 expired on 2026-02-28"), "{err}");
    fx.store.transact(None, |tx| engine.expire(tx, day("2026-03-05"))).unwrap();
    assert_eq!(card(fx, short.id).status, CardStatus::Expired);
    let err = fx.refused(Some(c.manager), |tx| {
        engine.create(tx, payment(c.partner, "П-5", "2026-02-10", "100.00", Some(short.id)))
    });
    assert!(err.to_string().contains("card 1000003 has expired"), "{err}");
    verified(fx);
}

#[test]
fn redeeming_more_than_the_balance_is_refused_and_the_ledger_never_changes() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    let sale = fx
        .store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-1", "2026-03-01", "1000.00", Some(c.card.id)))
        })
        .unwrap();
    let err = fx.refused(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("20.01"), None, ""));
    assert_eq!(err.to_string(), "invalid loyalty_entry.points: redeems 20.01 points, but card 1000001 has 20");
    for bad in ["0", "-5"] {
        let err = fx.refused(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec(bad), None, ""));
        assert!(err.to_string().contains("a redemption spends more than 0 points"), "{err}");
    }
    let spent = fx
        .store
        .transact(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("20"), Some(sale.id), "оплата"))
        .unwrap();
    assert_eq!((spent.kind, spent.points, spent.balance), (EntryKind::Redemption, dec("-20"), dec("0")));
    let err = fx.refused(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("0.01"), None, ""));
    assert!(err.to_string().contains("but card 1000001 has 0"), "{err}");
    // A correction needs its reason and takes at most the balance.
    let err = fx.refused(Some(c.manager), |tx| engine.correct(tx, c.card.id, dec("5"), Decimal::ZERO, " "));
    assert!(err.to_string().contains("a correction needs its reason"), "{err}");
    let err = fx.refused(Some(c.manager), |tx| engine.correct(tx, c.card.id, dec("-1"), Decimal::ZERO, "ошибка"));
    assert!(err.to_string().contains("takes 1 points, but card 1000001 has 0"), "{err}");
    let fixed =
        fx.store.transact(Some(c.manager), |tx| engine.correct(tx, c.card.id, dec("7.5"), dec("0"), "акция")).unwrap();
    assert_eq!((fixed.kind, fixed.balance), (EntryKind::Correction, dec("7.5")));
    // A clock set back gives the next entry an id of an earlier time: the ledger keeps the
    // order the entries were written in.
    fx.clock.set(crmkit_core::time::Timestamp::start_of(day("2026-02-15")));
    let late = fx.store.transact(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("2.5"), None, "")).unwrap();
    assert_eq!(late.balance, dec("5"));
    assert_eq!(ledger(fx, c.card.id).last().map(|e| e.id), Some(late.id));
    verified(fx);
    // The ledger is append-only: no entry is written, changed or deleted but by the operations.
    let first = ledger(fx, c.card.id).remove(0);
    let err = fx.refused(Some(c.manager), |tx: &mut WriteTxn<'_>| {
        let mut e = first.clone();
        e.points = dec("1000");
        tx.update(e)
    });
    assert!(err.to_string().contains("the points ledger is append-only"), "{err}");
    let err = fx.refused(Some(c.manager), |tx: &mut WriteTxn<'_>| tx.delete::<LoyaltyEntry>(first.id, first.version));
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = fx.refused(Some(c.manager), |tx: &mut WriteTxn<'_>| {
        let mut e = first.clone();
        e.points = dec("1000");
        tx.create(e)
    });
    assert!(err.to_string().contains("ledger entries are written by the loyalty operations"), "{err}");
    // Nor is a card's balance set by hand, nor a card with a ledger deleted.
    let now = card(fx, c.card.id);
    let err = fx.refused(Some(c.manager), |tx: &mut WriteTxn<'_>| {
        let mut k = now.clone();
        k.balance = dec("1000000");
        tx.update(k)
    });
    assert!(err.to_string().contains("loyalty_card.balance: is kept by the loyalty operations"), "{err}");
    let err = fx.refused(Some(c.manager), |tx: &mut WriteTxn<'_>| tx.delete::<LoyaltyCard>(now.id, now.version));
    assert!(matches!(err, Error::Referenced { .. } | Error::NotAllowed(_)), "{err}");
    let err = fx.refused(None, |tx: &mut WriteTxn<'_>| {
        let mut k = LoyaltyCard::new("1000009", c.bonus.id, c.partner, day("2026-02-01"));
        k.balance = dec("50");
        tx.create(k)
    });
    assert!(err.to_string().contains("loyalty_card.balance: starts active with an empty ledger"), "{err}");
    verified(fx);
}

#[test]
fn card_numbers_barcodes_and_magnetic_codes_are_unique() {
    let c = club();
    let fx = &c.fx;
    let err = fx.refused(None, |tx| tx.create(LoyaltyCard::new("1000001", c.bonus.id, c.partner, day("2026-02-01"))));
    assert!(matches!(err, Error::Duplicate { field: "number", .. }), "{err}");
    fx.store
        .transact(None, |tx| {
            let mut k = LoyaltyCard::new("1000002", c.bonus.id, c.partner, day("2026-02-01"));
            k.barcode = Some("4600000000017".into());
            k.magnetic_code = Some(";1000002=2912?".into());
            tx.create(k)
        })
        .unwrap();
    let err = fx.refused(None, |tx| {
        let mut k = LoyaltyCard::new("1000003", c.bonus.id, c.partner, day("2026-02-01"));
        k.barcode = Some("4600000000017".into());
        tx.create(k)
    });
    assert!(matches!(err, Error::Duplicate { field: "barcode", .. }), "{err}");
    let err = fx.refused(None, |tx| {
        let mut k = LoyaltyCard::new("1000003", c.bonus.id, c.partner, day("2026-02-01"));
        k.magnetic_code = Some(";1000002=2912?".into());
        tx.create(k)
    });
    assert!(matches!(err, Error::Duplicate { field: "magnetic_code", .. }), "{err}");
    for (number, what) in [("10 01", "without spaces"), ("", "1 to 64")] {
        let err = fx.refused(None, |tx| tx.create(LoyaltyCard::new(number, c.bonus.id, c.partner, day("2026-02-01"))));
        assert!(err.to_string().contains(what), "{err}");
    }
    let err = fx.refused(None, |tx| {
        let mut k = LoyaltyCard::new("1000004", c.bonus.id, c.partner, day("2026-02-01"));
        k.partner = None;
        tx.create(k)
    });
    assert!(err.to_string().contains("a card needs its holder"), "{err}");
}

#[test]
fn a_reissued_card_carries_the_balance_and_turnover_over_and_the_old_one_is_blocked() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    fx.store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-1", "2026-03-01", "30000.00", Some(c.card.id)))?;
            engine.redeem(tx, c.card.id, dec("100"), None, "")
        })
        .unwrap();
    let old = card(fx, c.card.id);
    assert_eq!((old.balance, old.turnover), (dec("500"), dec("30000")));
    let new = fx
        .store
        .transact(Some(c.manager), |tx| {
            let mut k = LoyaltyCard::new("1000100", old.program, c.partner, day("2026-03-02"));
            k.barcode = Some("4600000001007".into());
            engine.reissue(tx, old.id, old.version, k)
        })
        .unwrap();
    assert_eq!((new.balance, new.turnover, new.reissued_from), (dec("500"), dec("30000"), Some(old.id)));
    assert_eq!((new.status, new.partner, new.entries), (CardStatus::Active, Some(c.partner), 1));
    let old = card(fx, c.card.id);
    assert_eq!(
        (old.status, old.status_note.as_str(), old.balance),
        (CardStatus::Blocked, "reissued as 1000100", dec("0"))
    );
    let out = ledger(fx, old.id).pop().unwrap();
    assert_eq!(
        (out.kind, out.points, out.turnover, out.other_card),
        (EntryKind::Transfer, dec("-500"), dec("-30000"), Some(new.id))
    );
    // Once reissued, a card is not reissued again; its number is not reused.
    let err = fx.refused(Some(c.manager), |tx| {
        engine.reissue(tx, old.id, old.version, LoyaltyCard::new("1000101", old.program, c.partner, day("2026-03-10")))
    });
    assert!(err.to_string().contains("card 1000001 is already reissued as card"), "{err}");
    let err = fx.refused(Some(c.manager), |tx| {
        engine.reissue(tx, new.id, new.version, LoyaltyCard::new("1000001", old.program, c.partner, day("2026-03-10")))
    });
    assert!(matches!(err, Error::Duplicate { field: "number", .. }), "{err}");
    // The new card earns and redeems.
    fx.store.transact(Some(c.manager), |tx| engine.redeem(tx, new.id, dec("500"), None, "")).unwrap();
    assert_eq!(card(fx, new.id).balance, dec("0"));
    verified(fx);
}

#[test]
fn points_expire_oldest_first_and_expired_cards_lose_theirs_once() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    // 100 points on 2026-02-10, 50 on 2026-03-20; 30 spent on 2026-03-25 (from the oldest).
    fx.store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-1", "2026-02-10", "5000.00", Some(c.card.id)))?;
            engine.create(tx, payment(c.partner, "П-2", "2026-03-20", "2500.00", Some(c.card.id)))
        })
        .unwrap();
    fx.clock.set(crmkit_core::time::Timestamp::start_of(day("2026-03-25")));
    fx.store.transact(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("30"), None, "")).unwrap();
    // 90 days after 2026-02-10 is 2026-05-11: nothing is due the day before.
    let none = fx.store.transact(None, |tx| engine.expire(tx, day("2026-05-10"))).unwrap();
    assert_eq!((none.entries, none.points), (0, dec("0")));
    let done = fx.store.transact(None, |tx| engine.expire(tx, day("2026-05-11"))).unwrap();
    assert_eq!((done.entries, done.points, done.cards_expired), (1, dec("70"), 0));
    let e = ledger(fx, c.card.id).pop().unwrap();
    assert_eq!((e.kind, e.points, e.balance), (EntryKind::Expiry, dec("-70"), dec("50")));
    let again = fx.store.transact(None, |tx| engine.expire(tx, day("2026-05-11"))).unwrap();
    assert_eq!(again.entries, 0);
    // Past the program's last day the card expires with what is left.
    fx.store
        .transact(None, |tx| {
            let mut p: LoyaltyProgram = tx.load(c.bonus.id)?;
            p.valid_to = Some(day("2026-05-31"));
            tx.update(p)
        })
        .unwrap();
    let end = fx.store.transact(None, |tx| engine.expire(tx, day("2026-06-01"))).unwrap();
    assert_eq!((end.cards_expired, end.entries, end.points), (1, 1, dec("50")));
    let k = card(fx, c.card.id);
    assert_eq!((k.status, k.status_note.as_str(), k.balance), (CardStatus::Expired, "expired on 2026-05-31", dec("0")));
    let again = fx.store.transact(None, |tx| engine.expire(tx, day("2026-06-02"))).unwrap();
    assert_eq!((again.cards_expired, again.entries), (0, 0));
    verified(fx);
}

#[test]
fn programs_are_held_to_their_kind() {
    let fx = Fixture::new();
    type Edit = fn(&mut LoyaltyProgram);
    let cases: [(Edit, &str); 6] = [
        (|p| p.point_value = None, "loyalty_program.point_value: a bonus program needs what one point is worth"),
        (|p| p.point_value = Some(dec("0")), "must be above 0"),
        (|p| p.discount_pct = Some(dec("5")), "loyalty_program.discount_pct: belongs to discount programs"),
        (|p| p.accrue_on = DocumentKind::Invoice, "a card earns on a sale: a payment or a shipment"),
        (|p| p.valid_to = Some(day("2025-12-31")), "the program ends (2025-12-31) before it starts"),
        (|p| p.points_expire_days = Some(0), "must be from 1 to 3660 days"),
    ];
    for (edit, message) in cases {
        let err = fx.refused(None, |tx| {
            let mut p = LoyaltyProgram::bonus("Клуб", Currency::RUB, Decimal::ONE, day("2026-01-01"));
            edit(&mut p);
            tx.create(p)
        });
        assert!(err.to_string().contains(message), "{err} / {message}");
    }
    let err = fx.refused(None, |tx| {
        let mut p = LoyaltyProgram::discount("Скидка", Currency::RUB, dec("5"), day("2026-01-01"));
        p.points_expire_days = Some(30);
        tx.create(p)
    });
    assert!(err.to_string().contains("points_expire_days: belongs to bonus programs"), "{err}");
    let p = fx
        .store
        .transact(None, |tx| tx.create(LoyaltyProgram::discount("Скидка", Currency::RUB, dec("5"), day("2026-01-01"))))
        .unwrap();
    let err = fx.refused(None, |tx: &mut WriteTxn<'_>| {
        let mut q = p.clone();
        q.currency = Currency::EUR;
        tx.update(q)
    });
    assert!(err.to_string().contains("loyalty_program.currency: is fixed"), "{err}");
}

/// An installation binding `loyalty.accrue` to `handler` (a Rhai script function of the
/// shipped scripts, or a WASM plugin's export) with the club's data: the engine and fixture.
fn with_rule(handler: &str, plugins: Option<&Path>) -> (Club, Engine) {
    let mut config = format!("{DEFAULT_CONFIG}\n[[hooks]]\npoint = \"loyalty.accrue\"\nhandler = \"{handler}\"\n");
    if plugins.is_some() {
        config.push_str("\n[runtimes.wasm]\n");
    }
    let mut settings = Settings::parse(&config, Path::new("crmkit.toml")).unwrap();
    settings.hooks.retain(|b| b.point == HookPoint::LoyaltyAccrue);
    let mut hooks = Hooks::new();
    match plugins {
        None => {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in crmkit_core::installation::SHIPPED_SCRIPTS {
                let path = dir.path().join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            let rhai = crmkit_rhai::RhaiSettings::from_settings(&settings).unwrap();
            let host = Arc::new(crmkit_rhai::ScriptHost::new(dir.path(), &rhai));
            assert!(host.load_all().is_empty());
            hooks.provider(Arc::new(crmkit_rhai::RhaiProvider::new(host)));
            std::mem::forget(dir);
        }
        Some(dir) => {
            let wasm = crmkit_wasm::WasmSettings::from_settings(&settings).unwrap();
            let host = crmkit_wasm::PluginHost::new(dir, None, &wasm).unwrap();
            let errors = host.load_all();
            assert!(errors.is_empty(), "{errors:?}");
            hooks.provider(Arc::new(crmkit_wasm::WasmProvider::new(Arc::new(host))));
        }
    }
    let engine = Engine::new(&settings, hooks).unwrap();
    (club(), engine)
}

/// Sales of every size on the club's card, crossing the tiers: the ledger's (points, reason)
/// after each.
fn run_sales(c: &Club, engine: &Engine) -> Vec<(Decimal, String)> {
    let amounts = ["999.99", "12345.67", "0.01", "87654.33", "150000.00", "260000.50", "1.99", "333333.33", "7.77"];
    for (i, a) in amounts.iter().enumerate() {
        c.fx.store
            .transact(Some(c.manager), |tx| {
                engine.create(tx, payment(c.partner, &format!("П-{i}"), "2026-03-01", a, Some(c.card.id)))
            })
            .unwrap();
    }
    ledger(&c.fx, c.card.id).into_iter().map(|e| (e.points, e.comment)).collect()
}

#[test]
fn the_shipped_rhai_rule_and_the_c_plugin_accrue_the_same_points_on_the_same_sales() {
    let (c, rhai) = with_rule("loyalty/tiers.rhai::points_by_turnover", None);
    let by_rhai = run_sales(&c, &rhai);
    let plugins = tempfile::tempdir().unwrap();
    crate::plugin_examples::install_example(plugins.path(), "c_loyalty", "c-loyalty");
    let (c2, wasm) = with_rule("c_loyalty.wasm::accrue", Some(plugins.path()));
    let by_c = run_sales(&c2, &wasm);
    assert_eq!(by_rhai, by_c);
    // Tier 1 below 100,000 of turnover, 3% from there, 5% from 500,000; rounded down.
    assert_eq!(by_rhai[0], (dec("9.99"), "tier 1: 1% of the sale".to_string()));
    assert_eq!(by_rhai[3], (dec("876.54"), "tier 1: 1% of the sale".to_string()));
    assert_eq!(by_rhai[4], (dec("4500"), "tier 2: 3% of the sale".to_string()));
    assert_eq!(by_rhai[7], (dec("16666.66"), "tier 3: 5% of the sale".to_string()));
    assert_eq!(by_rhai[2].0, dec("0"));
    let entries = ledger(&c.fx, c.card.id);
    assert_eq!(entries[0].rule.as_deref(), Some("loyalty/tiers.rhai::points_by_turnover"));
    assert_eq!(ledger(&c2.fx, c2.card.id)[0].rule.as_deref(), Some("c_loyalty.wasm::accrue"));
    // The rule and the plugin read the same tiers.
    let manifest: toml::Table = toml::from_str(
        &std::fs::read_to_string(crate::plugin_examples::examples().join("c-loyalty/plugin.toml")).unwrap(),
    )
    .unwrap();
    let script = crmkit_core::installation::SHIPPED_SCRIPTS.iter().find(|(n, _)| *n == "loyalty/tiers.rhai").unwrap().1;
    let tiers = script.lines().find(|l| l.contains("thresholds:")).unwrap().trim();
    let list = |key: &str| -> String {
        let items: Vec<String> =
            manifest["config"][key].as_array().unwrap().iter().map(|v| v.as_integer().unwrap().to_string()).collect();
        format!("[{}]", items.join(", "))
    };
    assert_eq!(tiers, format!("#{{ thresholds: {}, percents: {} }}", list("thresholds"), list("percents")));
    verified(&c.fx);
    verified(&c2.fx);
}

/// A native `loyalty.accrue` rule answering `answer` whatever the sale.
fn answering(answer: serde_json::Value) -> Engine {
    let mut hooks = Hooks::new();
    let rule = move |_: &HookInput<'_>| -> Result<crmkit_core::hooks::Reply, Fault> {
        Ok(crmkit_core::hooks::Reply::Json(answer.clone()))
    };
    hooks.register("rule", rule);
    hooks.bind(HookPoint::LoyaltyAccrue, "rule", &[]).unwrap();
    native_engine(hooks)
}

#[test]
fn a_rule_answering_negative_or_absurd_points_is_refused_by_the_contract_and_nothing_is_written() {
    let c = club();
    let fx = &c.fx;
    let sale = |engine: &Engine| {
        let e = engine.clone();
        let (partner, card) = (c.partner, c.card.id);
        move |tx: &mut WriteTxn<'_>| e.create(tx, payment(partner, "П-1", "2026-03-01", "1000.00", Some(card)))
    };
    let cases = [
        (json!({"points": -5}), "points whose number is -5, below 0"),
        (json!({"points": "1000.01"}), "answered 1000.01 points, worth 1000.01 RUB: more than the sale's 1000.00"),
        (json!({"points": 1e15}), "beyond the most a card holds"),
        (json!({"points": "many"}), "text that is no decimal"),
        (json!(12), "loyalty.accrue expects points"),
    ];
    for (answer, message) in cases {
        let engine = answering(answer.clone());
        let err = fx.refused(Some(c.manager), sale(&engine));
        assert!(matches!(err, Error::HookFault { .. }), "{answer}: {err}");
        assert!(err.to_string().contains("loyalty.accrue: handler rule failed"), "{err}");
        assert!(err.to_string().contains(message), "{answer}: {err}");
    }
    // The whole sale's worth is not absurd; null is the program's rate.
    fx.store.transact(Some(c.manager), sale(&answering(json!({"points": "1000", "reason": "всё"})))).unwrap();
    assert_eq!(card(fx, c.card.id).balance, dec("1000"));
    verified(fx);
}

/// The north manager's client, in `office`.
fn north_client(office: &crate::api::Office) -> PartnerId {
    office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut p =
                    crmkit_core::model::Partner::new("Северный клиент", crmkit_core::model::PartnerRole::Client);
                p.manager = Some(office.north);
                Ok(tx.create(p)?.id)
            })
            .unwrap()
    })
}

#[test]
fn over_the_api_a_card_earns_redeems_is_blocked_and_reissued_in_its_holders_scope() {
    use crate::api::{Office, Served};
    let office = Office::new();
    let partner = north_client(&office);
    let [boss, head, north, south, watcher] = ["boss", "head", "north", "south", "watcher"].map(|l| office.token(l));
    let server = Served::start(&office.site);
    let send = |token: &str, method: &str, path: &str, body: serde_json::Value| {
        server.send(method, path, token, body.to_string().as_bytes())
    };
    let program = json!({
        "name": "Клуб", "kind": "bonus", "currency": "RUB", "point_value": "1", "accrual_pct": "3",
        "accrue_on": "payment", "valid_from": "2026-01-01"
    });
    assert_eq!(send(north, "POST", "/api/v1/loyalty-programs", program.clone()).0, 403);
    let (status, program) = send(boss, "POST", "/api/v1/loyalty-programs", program);
    assert_eq!(status, 201, "{program}");
    let card = json!({"number": "5550001", "program": program["id"], "partner": partner, "issued": "2026-02-01"});
    let (status, card) = send(north, "POST", "/api/v1/loyalty-cards", card);
    assert_eq!((status, card["status"].as_str(), card["balance"].as_str()), (201, Some("active"), Some("0")), "{card}");
    let id = card["id"].as_str().unwrap().to_string();
    // A sale over the API naming the card earns 3% on it.
    let sale = json!({
        "kind": "payment", "number": "ПП-1", "date": "2026-03-01", "partner": partner,
        "amount": {"amount": "1000.00", "currency": "RUB"}, "state": "completed", "card": id
    });
    let (status, doc) = send(north, "POST", "/api/v1/documents", sale);
    assert_eq!(status, 201, "{doc}");
    let (status, ledger) = server.request("GET", &format!("/api/v1/loyalty-cards/{id}/ledger"), Some(north));
    assert_eq!(
        (status, ledger["balance"].as_str(), ledger["entries"].as_u64()),
        (200, Some("30"), Some(1)),
        "{ledger}"
    );
    assert_eq!(ledger["items"][0]["document"], doc["id"]);
    server.stop();

    // Every refusal, and nothing written.
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let send = |token: &str, method: &str, path: &str, body: serde_json::Value| {
        server.send(method, path, token, body.to_string().as_bytes())
    };
    let op = |what: &str| format!("/api/v1/loyalty-cards/{id}/{what}");
    let refusals: Vec<(&str, String, serde_json::Value, u16, &str)> = vec![
        (north, op("redeem"), json!({"points": "30.01"}), 422, "redeems 30.01 points, but card 5550001 has 30"),
        (north, op("redeem"), json!({"points": -1}), 422, "a redemption spends more than 0 points"),
        (north, op("redeem"), json!({}), 422, "is required to redeem points"),
        (north, op("redeem"), json!({"points": "x"}), 422, "\"x\" is not a decimal"),
        (north, op("correct"), json!({"points": 5, "comment": "акция"}), 403, "for admins and heads"),
        (head, op("correct"), json!({"points": 5}), 422, "a correction needs its reason"),
        (north, op("block"), json!({"reason": "утеряна"}), 400, "names the version"),
        (north, op("block"), json!({"version": 2}), 422, "blocking a card needs its reason"),
        (north, op("reissue"), json!({"version": 2}), 422, "the new card's number"),
        (north, op("reissue"), json!({"version": 2, "number": "5550001"}), 409, "number"),
        (north, op("explode"), json!({}), 404, "has no action \"explode\""),
        (south, op("redeem"), json!({"points": 1}), 404, ""),
        (watcher, op("redeem"), json!({"points": 1}), 403, ""),
        (north, "/api/v1/loyalty/expire".into(), json!({}), 403, "for admins"),
        (
            north,
            "/api/v1/loyalty-cards".into(),
            json!({"number": "5550001", "program": program["id"], "partner": partner, "issued": "2026-02-01"}),
            409,
            "number",
        ),
        (
            north,
            "/api/v1/loyalty-cards".into(),
            json!({"number": "5550009", "program": program["id"], "partner": partner, "issued": "2026-02-01", "balance": "100"}),
            422,
            "balance",
        ),
        (boss, "/api/v1/loyalty-entries".into(), json!({"card": id}), 422, "set by the server"),
    ];
    for (token, path, body, status, says) in refusals {
        let (got, answer) = send(token, "POST", &path, body.clone());
        assert_eq!(got, status, "POST {path} {body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "POST {path} {body}: {answer} does not say {says:?}");
    }
    let (status, _) = server.request("GET", &format!("/api/v1/loyalty-cards/{id}/ledger"), Some(south));
    assert_eq!(status, 404);
    server.stop();
    assert!(office.site.dump() == before, "a refused request wrote something");

    let server = Served::start(&office.site);
    let send = |token: &str, method: &str, path: &str, body: serde_json::Value| {
        server.send(method, path, token, body.to_string().as_bytes())
    };
    let (status, spent) = send(north, "POST", &op("redeem"), json!({"points": 20, "comment": "скидка на заказ"}));
    assert_eq!(
        (status, spent["balance"].as_str(), spent["kind"].as_str()),
        (201, Some("10"), Some("redemption")),
        "{spent}"
    );
    let (status, fixed) = send(head, "POST", &op("correct"), json!({"points": "2.5", "comment": "акция"}));
    assert_eq!((status, fixed["balance"].as_str()), (201, Some("12.5")), "{fixed}");
    let (_, card) = server.request("GET", &format!("/api/v1/loyalty-cards/{id}"), Some(north));
    let (status, blocked) =
        send(north, "POST", &op("block"), json!({"version": card["version"], "reason": "украдена"}));
    assert_eq!((status, blocked["status"].as_str()), (200, Some("blocked")), "{blocked}");
    let (status, _) = send(north, "POST", &op("redeem"), json!({"points": 1}));
    assert_eq!(status, 422);
    let (status, new) =
        send(north, "POST", &op("reissue"), json!({"version": blocked["version"], "number": "5550002"}));
    assert_eq!(
        (status, new["balance"].as_str(), new["reissued_from"].as_str()),
        (201, Some("12.5"), Some(id.as_str())),
        "{new}"
    );
    let (_, list) = server.request("GET", &format!("/api/v1/loyalty-cards?partner={partner}"), Some(north));
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let (_, list) = server.request("GET", "/api/v1/loyalty-cards?number=5550002", Some(south));
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "another manager's client's cards are not listed: {list}");
    let (status, run) = send(boss, "POST", "/api/v1/loyalty/expire?date=2026-12-31", json!({}));
    assert_eq!((status, run["cards"].as_u64()), (200, Some(2)), "{run}");
    server.stop();
    crate::cli::ok(&["check", office.site.dir()]);
}

#[test]
fn the_command_line_imports_cards_and_redeems_blocks_reissues_accrues_and_expires_them() {
    use crate::cli::{fails, ok, Site};
    let site = Site::new(|c| c);
    let dir = site.dir();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    ok(&["import", dir, "--entity", "partners", &write("p.csv", "key,name,roles\nP1,Альфа,client\nP2,Бета,client\n")]);
    let programs = "key,name,kind,currency,point_value,accrual_pct,points_expire_days,accrue_on,valid_from\n\
                    BONUS,Клуб,bonus,RUB,1,5,30,payment,2026-01-01\n\
                    BAD,Сломанная,bonus,RUB,,5,,payment,2026-01-01\n";
    let out = fails(&["import", dir, "--entity", "loyalty-programs", &write("programs.csv", programs)]);
    assert!(out.contains("1 failed"), "{out}");
    let errors = std::fs::read_to_string(files.path().join("programs.errors.csv")).unwrap();
    assert!(errors.contains("a bonus program needs what one point is worth"), "{errors}");
    // A card with a number another has is refused, the rest written; a sale imported
    // completed earns on the card it names (by its key).
    let cards = "key,number,barcode,program,partner,issued\n\
                 C1,3300001,4600000000011,BONUS,P1,2026-02-01\n\
                 C2,3300001,,BONUS,P2,2026-02-01\n\
                 C3,3300002,,BONUS,P2,2026-02-01\n";
    let out = fails(&["import", dir, "--entity", "loyalty-cards", &write("cards.csv", cards)]);
    assert!(out.contains("1 failed"), "{out}");
    let sales = "key,kind,number,date,partner,amount,currency,state,card\n\
                 S1,payment,ПП-1,2026-03-01,P1,2000.00,RUB,completed,C1\n\
                 S2,payment,ПП-2,2026-03-02,P2,1000.00,RUB,completed,C1\n";
    let out = fails(&["import", dir, "--entity", "documents", &write("sales.csv", sales)]);
    assert!(out.contains("1 failed"), "{out}");
    let errors = std::fs::read_to_string(files.path().join("sales.errors.csv")).unwrap();
    assert!(errors.contains("card 3300001 is held by neither partner"), "{errors}");
    let out = ok(&["loyalty", "ledger", dir, "4600000000011"]);
    assert!(out.contains("card 3300001 (active): balance 100, turnover 2000.00"), "{out}");
    assert!(out.contains("accrual"), "{out}");
    // Refusals write nothing.
    let before = site.dump();
    for (args, says) in [
        (vec!["loyalty", "redeem", dir, "3300001", "100.01"], "redeems 100.01 points, but card 3300001 has 100"),
        (vec!["loyalty", "redeem", dir, "nope", "1"], "no loyalty card has the number"),
        (vec!["loyalty", "block", dir, "3300002", "--reason", " "], "blocking a card needs its reason"),
        (
            vec!["loyalty", "correct", dir, "3300002", "-5", "--comment", "ошибка"],
            "takes 5 points, but card 3300002 has 0",
        ),
        (vec!["loyalty", "reissue", dir, "3300002", "3300001"], "number"),
        (vec!["loyalty", "issue", dir, "3300001", "--program", "Клуб", "--partner", "Бета"], "number"),
        (vec!["loyalty", "issue", dir, "3300009", "--program", "Нет такой", "--partner", "Бета"], "no loyalty program"),
        (vec!["loyalty", "issue", dir, "33 09", "--program", "Клуб", "--partner", "Бета"], "without spaces"),
    ] {
        let out = fails(&args);
        assert!(out.contains(says), "{args:?}: {out}");
    }
    assert!(site.dump() == before, "a refused command wrote something");
    let out = ok(&["loyalty", "redeem", dir, "3300001", "40", "--comment", "оплата"]);
    assert!(out.contains("redeemed 40 points; the card has 60 left"), "{out}");
    let out = ok(&["loyalty", "block", dir, "3300002", "--reason", "утеряна"]);
    assert!(out.contains("blocked card 3300002 (утеряна)"), "{out}");
    let out = ok(&["loyalty", "reissue", dir, "3300001", "3300010"]);
    assert!(out.contains("issued card 3300010 in place of 3300001: balance 60, turnover 2000"), "{out}");
    let out = ok(&["loyalty", "cards", dir, "--partner", "Альфа"]);
    assert!(out.contains("3300010") && out.contains("blocked") && out.contains("2 card(s)"), "{out}");
    // Points older than 30 days expire; accruing again writes nothing new.
    let out = ok(&["loyalty", "expire", dir, "--date", "2026-12-31"]);
    assert!(out.contains("3 card(s) looked at: 0 expired, 1 expiry entr(ies) taking 60 points"), "{out}");
    let out = ok(&["loyalty", "accrue", dir]);
    assert!(out.contains("1 completed sale(s) looked at: 0 accrual(s) written"), "{out}");
    let out = ok(&[
        "loyalty",
        "issue",
        dir,
        "3300020",
        "--program",
        "Клуб",
        "--partner",
        "Бета",
        "--barcode",
        "4600000000202",
    ]);
    assert!(out.contains("issued card 3300020"), "{out}");
    let out = ok(&["loyalty", "ledger", dir, "4600000000202"]);
    assert!(out.contains("card 3300020 (active): balance 0, turnover 0"), "{out}");
    let out = ok(&["loyalty", "programs", dir]);
    assert!(out.contains("Клуб: bonus, a point worth 1 RUB, 5% of a sale, points for 30 days"), "{out}");
    ok(&["check", dir]);
}

#[test]
fn merging_a_partner_moves_its_cards_and_their_sales_to_the_partner_that_stays() {
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    let (keep, _) = fx.client("Бета");
    let person = fx.store.transact(None, |tx| tx.create(ContactPerson::new(c.partner, "Иван Петров"))).unwrap();
    let held = fx
        .store
        .transact(None, |tx| {
            let mut card = LoyaltyCard::new("1000002", c.bonus.id, c.partner, day("2026-02-01"));
            card.partner = None;
            card.contact = Some(person.id);
            tx.create(card)
        })
        .unwrap();
    fx.store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-1", "2026-03-01", "1000.00", Some(c.card.id)))?;
            engine.create(tx, payment(c.partner, "П-2", "2026-03-01", "500.00", Some(held.id)))
        })
        .unwrap();
    let report = fx.store.transact(None, |tx| crmkit_core::merge::merge_partners(tx, keep.id, c.partner)).unwrap();
    assert_eq!((report.loyalty_cards, report.documents, report.contacts), (1, 2, 1));
    assert_eq!(card(fx, c.card.id).partner, Some(keep.id));
    assert_eq!(card(fx, c.card.id).balance, dec("20"));
    assert_eq!(fx.store.verify_indexes().unwrap(), Vec::<String>::new());
    verified(fx);
}

#[test]
fn the_loyalty_report_counts_cards_by_use_and_the_points_left_as_a_liability_and_the_dossier_lists_the_cards() {
    use crmkit_core::analytics::Analytics;
    use crmkit_core::report::Reports;
    let c = club();
    let engine = native_engine(Hooks::new());
    let fx = &c.fx;
    let (blocked, dormant, discount) = fx
        .store
        .transact(None, |tx| {
            let b = tx.create(LoyaltyCard::new("1000002", c.bonus.id, c.partner, day("2026-02-01")))?;
            let d = tx.create(LoyaltyCard::new("1000003", c.bonus.id, c.partner, day("2026-02-01")))?;
            let k = tx.create(LoyaltyCard::new("2000001", c.discount.id, c.partner, day("2026-02-01")))?;
            Ok((b, d, k))
        })
        .unwrap();
    fx.store
        .transact(Some(c.manager), |tx| {
            engine.create(tx, payment(c.partner, "П-1", "2026-03-01", "5000.00", Some(c.card.id)))?;
            engine.create(tx, payment(c.partner, "П-2", "2026-03-10", "2500.00", Some(c.card.id)))?;
            engine.create(tx, payment(c.partner, "П-3", "2026-03-05", "1000.00", Some(discount.id)))?;
            engine.block(tx, blocked.id, blocked.version, "утеряна")
        })
        .unwrap();
    fx.clock.set(crmkit_core::time::Timestamp::start_of(day("2026-03-20")));
    fx.store.transact(Some(c.manager), |tx| engine.redeem(tx, c.card.id, dec("30"), None, "")).unwrap();
    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    let params = [("to".to_string(), "2026-03-31".to_string())].into();
    let table = reports.run("loyalty", &params, &fx.store.read().unwrap()).unwrap();
    let rows: Vec<String> = table.rows().iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    assert_eq!(
        rows,
        [
            r#"["Бонусный клуб","bonus","RUB",3,3,1,1,1,0,"150","30","0","7500","120","120"]"#,
            r#"["Скидка 5%","discount","RUB",1,1,1,0,0,0,"0","0","0","1000","0",null]"#,
        ]
    );
    // Before the redemption and the second sale: what was left then.
    let params = [("to".to_string(), "2026-03-05".to_string())].into();
    let table = reports.run("loyalty", &params, &fx.store.read().unwrap()).unwrap();
    assert_eq!(table.rows()[0][13], json!("100"));
    // Long after: nothing is active any more.
    let params = [("from".to_string(), "2026-09-01".to_string()), ("to".to_string(), "2026-09-30".to_string())].into();
    let table = reports.run("loyalty", &params, &fx.store.read().unwrap()).unwrap();
    assert_eq!((table.rows()[0][5].clone(), table.rows()[0][6].clone()), (json!(0), json!(2)));
    assert_eq!(table.rows()[0][9], json!("0"), "nothing accrued in September");
    let _ = dormant;
    // The dossier lists the partner's cards with their balances and programs.
    let d = crmkit_core::dossier::dossier(&fx.store.read().unwrap(), c.partner, Default::default()).unwrap();
    let cards: Vec<(&str, Decimal)> = d.loyalty_cards.iter().map(|k| (k.number.as_str(), k.balance)).collect();
    assert_eq!(cards, [("1000001", dec("120")), ("1000002", dec("0")), ("1000003", dec("0")), ("2000001", dec("0"))]);
    assert_eq!(d.loyalty_programs.len(), 2);
}
