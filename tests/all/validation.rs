//! Bad input: every rejected write names the field and leaves the database byte-for-byte
//! as it was.

use crmkit_core::id::{PartnerId, RawId, UserId};
use crmkit_core::model::{
    ContactPerson, Counterparty, CounterpartyKind, CustomValue, Deal, DealStatus, Document, DocumentKind, DocumentLine,
    Entity, EntityKind, Partner, PartnerRole,
};
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::store::{Reader, WriteTxn};
use crmkit_core::values::{Currency, Money};
use crmkit_core::Error;
use rust_decimal::Decimal;

use crate::common::{new_deal, Fixture};

/// Runs `write` in a transaction that commits anyway, expects it to fail with an invalid
/// `entity.field` whose message contains `needle`, and checks nothing was written.
fn rejects<R: std::fmt::Debug>(
    fx: &Fixture,
    entity: EntityKind,
    field: &str,
    needle: &str,
    write: impl FnOnce(&mut WriteTxn<'_>) -> crmkit_core::Result<R>,
) {
    let err = fx.refused(None, write);
    match &err {
        Error::Invalid(f) => {
            assert_eq!((f.entity, f.field.as_str()), (entity, field), "wrong field in: {err}");
            assert!(f.message.contains(needle), "message {:?} lacks {needle:?}", f.message);
        }
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

fn setup() -> (Fixture, Partner, UserId) {
    let fx = Fixture::new();
    let (p, m) = fx.client("Ромашка");
    (fx, p, m)
}

#[test]
fn missing_or_empty_required_fields() {
    let (fx, p, m) = setup();
    rejects(&fx, EntityKind::Partner, "name", "required", |tx| tx.create(Partner::new("   ", PartnerRole::Client)));
    rejects(&fx, EntityKind::Partner, "roles", "at least one role", |tx| {
        let mut x = Partner::new("Без ролей", PartnerRole::Client);
        x.roles.clear();
        tx.create(x)
    });
    rejects(&fx, EntityKind::Deal, "title", "required", |tx| {
        let mut d = new_deal(p.id, m, 100);
        d.title = String::new();
        tx.create(d)
    });
    rejects(&fx, EntityKind::Deal, "stage", "is required", |tx| {
        let mut d = new_deal(p.id, m, 100);
        d.stage = None;
        tx.create(d)
    });
    rejects(&fx, EntityKind::Contact, "name", "required", |tx| tx.create(ContactPerson::new(p.id, "")));
}

#[test]
fn inn_with_a_wrong_check_digit() {
    let (fx, ..) = setup();
    rejects(&fx, EntityKind::Counterparty, "tax_id", "check digit", |tx| {
        let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "ООО «Ошибка»");
        c.tax_id = Some("7707083895".into());
        tx.create(c)
    });
    rejects(&fx, EntityKind::Counterparty, "tax_id", "12 digits", |tx| {
        let mut c = Counterparty::new(CounterpartyKind::SoleTrader, "ИП Иванов");
        c.tax_id = Some("7707083893".into());
        tx.create(c)
    });
    // A foreign tax id is free text.
    fx.store
        .transact(None, |tx| {
            let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "Siemens AG");
            c.country = "DE".into();
            c.tax_id = Some("DE129274202".into());
            tx.create(c)
        })
        .unwrap();
}

#[test]
fn malformed_email_and_phone() {
    let (fx, p, _) = setup();
    rejects(&fx, EntityKind::Contact, "emails[1]", "@", |tx| {
        let mut c = ContactPerson::new(p.id, "Петров Иван");
        c.emails = vec!["ivan@romashka.ru".into(), "ivan.romashka.ru".into()];
        tx.create(c)
    });
    rejects(&fx, EntityKind::Contact, "phones[0]", "", |tx| {
        let mut c = ContactPerson::new(p.id, "Петров Иван");
        c.phones = vec!["12345".into()];
        tx.create(c)
    });
    let c = fx
        .store
        .transact(None, |tx| {
            let mut c = ContactPerson::new(p.id, "Петров Иван");
            c.phones = vec!["8 (912) 345-67-89".into()];
            c.emails = vec!["Ivan.Petrov@Romashka.RU".into()];
            tx.create(c)
        })
        .unwrap();
    assert_eq!(c.phones, ["+79123456789"]);
    assert_eq!(c.emails, ["Ivan.Petrov@romashka.ru"]);
}

#[test]
fn negative_amounts() {
    let (fx, p, m) = setup();
    rejects(&fx, EntityKind::Deal, "amount", "negative", |tx| tx.create(new_deal(p.id, m, -1)));
    rejects(&fx, EntityKind::Document, "lines[0].price", "negative", |tx| {
        let mut d = Document::new(DocumentKind::Invoice, "СЧ-1", day(2026, 3, 1), p.id, Money::zero(Currency::RUB));
        d.lines.push(DocumentLine {
            item: "Услуга".into(), qty: Decimal::ONE, unit: None, price: Decimal::from(-5)
        });
        tx.create(d)
    });
    rejects(&fx, EntityKind::Document, "amount", "add up to", |tx| {
        let mut d = Document::new(
            DocumentKind::Invoice,
            "СЧ-2",
            day(2026, 3, 1),
            p.id,
            Money::new(Decimal::from(100), Currency::RUB),
        );
        d.lines.push(DocumentLine {
            item: "Услуга".into(),
            qty: Decimal::from(3),
            unit: None,
            price: Decimal::from(30),
        });
        tx.create(d)
    });
}

#[test]
fn unknown_currency_code_is_refused_where_values_enter() {
    let (_fx, p, m) = setup();
    // Typed code cannot hold an unknown currency; the JSON entry point names the value.
    let mut json = serde_json::to_value(new_deal(p.id, m, 10)).unwrap();
    json["amount"]["currency"] = "RUR".into();
    let err = serde_json::from_value::<Deal>(json).unwrap_err().to_string();
    assert!(err.contains("RUR") && err.contains("ISO 4217"), "{err}");
    assert!(Money::parse("10.00", "XYZ").is_err());
    assert!(Money::parse("10.005", "RUB").is_err(), "more decimals than the currency has");
}

#[test]
fn references_to_missing_entities() {
    let (fx, p, m) = setup();
    let ghost = PartnerId(RawId::new(1, 999));
    rejects(&fx, EntityKind::Deal, "partner", "does not exist", |tx| tx.create(new_deal(ghost, m, 10)));
    rejects(&fx, EntityKind::Deal, "manager", "does not exist", |tx| {
        tx.create(new_deal(p.id, UserId(RawId::new(1, 7)), 10))
    });
    rejects(&fx, EntityKind::Partner, "parent", "does not exist", |tx| {
        let mut x = Partner::new("Дочка", PartnerRole::Client);
        x.parent = Some(ghost);
        tx.create(x)
    });
    // A counterparty that exists but is not the client's.
    let other = fx
        .store
        .transact(None, |tx| tx.create(Counterparty::new(CounterpartyKind::Individual, "Сидоров Пётр")))
        .unwrap();
    rejects(&fx, EntityKind::Deal, "counterparty", "not one of partner", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.counterparty = Some(other.id);
        tx.create(d)
    });
}

#[test]
fn lost_deal_rules() {
    // A deal's status only changes through the process engine; its rules and the store's
    // checks of the record both apply to a close.
    let (fx, p, m) = setup();
    let d = fx.deal(p.id, m, 1000);
    let engine = Engine::without_hooks();
    let lost = |reason: &str, competitor: Option<PartnerId>| Outcome::Lost {
        reason: reason.into(),
        competitor,
        comment: String::new(),
    };
    rejects(&fx, EntityKind::Deal, "loss_reason", "required", |tx| engine.close(tx, d.id, d.version, lost(" ", None)));
    rejects(&fx, EntityKind::Deal, "loss_reason", "not a loss reason of process kind \"b2b_sale\"", |tx| {
        engine.close(tx, d.id, d.version, lost("weather", None))
    });
    let not_a_competitor = fx.partner("Просто клиент", PartnerRole::Client);
    rejects(&fx, EntityKind::Deal, "competitor", "competitor role", |tx| {
        engine.close(tx, d.id, d.version, lost("price", Some(not_a_competitor.id)))
    });
    // Setting the status by hand is refused whatever the other fields say.
    rejects(&fx, EntityKind::Deal, "status", "process engine", |tx| {
        let mut x = d.clone();
        x.status = DealStatus::Lost;
        x.loss_reason = Some("price".into());
        tx.update(x)
    });
    let competitor = fx.partner("Конкурент", PartnerRole::Competitor);
    let lost =
        fx.store.transact(None, |tx| engine.close(tx, d.id, d.version, lost("price", Some(competitor.id)))).unwrap();
    assert_eq!(lost.version, 2);
    assert_eq!(
        (lost.status, lost.loss_reason.as_deref(), lost.competitor),
        (DealStatus::Lost, Some("price"), Some(competitor.id))
    );
}

#[test]
fn custom_fields_of_the_wrong_type_or_undeclared() {
    let (fx, p, m) = setup();
    rejects(&fx, EntityKind::Deal, "custom.tender_number", "expected a string value, got a number", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.custom.insert("tender_number".into(), CustomValue::Number(Decimal::ONE));
        tx.create(d)
    });
    rejects(&fx, EntityKind::Deal, "custom.delivery_region", "not one of the allowed values", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.custom.insert("delivery_region".into(), CustomValue::Enum("moon".into()));
        tx.create(d)
    });
    rejects(&fx, EntityKind::Deal, "custom.colour", "not a declared custom field", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.custom.insert("colour".into(), CustomValue::String("red".into()));
        tx.create(d)
    });
}

#[test]
fn unknown_process_kind_or_stage() {
    let (fx, p, m) = setup();
    rejects(&fx, EntityKind::Deal, "kind", "not a configured process kind", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.kind = "barter".into();
        tx.create(d)
    });
    rejects(&fx, EntityKind::Deal, "stage", "not a stage of process kind", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.stage = Some("award".into());
        tx.create(d)
    });
}

#[test]
fn a_refused_write_inside_a_transaction_leaves_earlier_writes_intact() {
    let (fx, p, m) = setup();
    let before = fx.dump();
    let mut tx = fx.store.write(None).unwrap();
    let ok = tx.create(new_deal(p.id, m, 10)).unwrap();
    let err = tx.create(new_deal(p.id, m, -10)).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert!(tx.get::<Deal>(ok.id).unwrap().is_some(), "the transaction still sees its own write");
    drop(tx);
    assert!(fx.dump() == before, "an uncommitted transaction wrote something");
    assert_eq!(ok.meta().version, 1);
}

#[test]
fn refused_writes_inside_a_committed_transaction_leave_no_trace() {
    // Two stores receive the same valid writes; one also sees refused ones in between. After
    // committing, both files hold exactly the same bytes.
    let engine = Engine::without_hooks();
    let run = |with_refusals: bool| {
        let (fx, p, m) = setup();
        fx.store
            .transact(Some(m), |tx| {
                let d = tx.create(new_deal(p.id, m, 10))?;
                if with_refusals {
                    assert!(tx.create(new_deal(p.id, m, -10)).is_err());
                    let mut stale = d.clone();
                    stale.version = 7;
                    assert!(tx.update(stale).is_err());
                    assert!(tx.delete::<Partner>(p.id, p.version).is_err());
                }
                if with_refusals {
                    let mut won = d.clone();
                    won.status = DealStatus::Won;
                    assert!(tx.update(won).is_err(), "the status changes only through the engine");
                    assert!(engine.move_deal(tx, d.id, d.version, "contract", None).is_err());
                    let no_reason = Outcome::Lost { reason: String::new(), competitor: None, comment: String::new() };
                    assert!(engine.close(tx, d.id, d.version, no_reason).is_err());
                    assert!(engine.close(tx, d.id, d.version + 1, Outcome::Won { comment: String::new() }).is_err());
                }
                engine.close(tx, d.id, d.version, Outcome::Won { comment: String::new() })?;
                tx.create(new_deal(p.id, m, 20))
            })
            .unwrap();
        fx.dump()
    };
    assert!(run(false) == run(true), "a refused write left something behind");
}

#[test]
fn amounts_with_more_decimals_than_the_currency_has() {
    let (fx, p, m) = setup();
    rejects(&fx, EntityKind::Deal, "amount", "decimal places", |tx| {
        let mut d = new_deal(p.id, m, 10);
        d.amount = Money::new(Decimal::new(10_005, 3), Currency::RUB);
        tx.create(d)
    });
}

#[test]
fn documents_and_interactions_stay_with_their_partner() {
    let (fx, p, m) = setup();
    let (other, _) = fx.client("Чужой");
    let deal = fx.deal(p.id, m, 1000);
    rejects(&fx, EntityKind::Document, "deal", "not partner", |tx| {
        let mut d = Document::new(DocumentKind::Quote, "КП-1", day(2026, 3, 1), other.id, Money::zero(Currency::RUB));
        d.deal = Some(deal.id);
        tx.create(d)
    });
    rejects(&fx, EntityKind::Interaction, "deal", "neither", |tx| {
        let mut i = crmkit_core::model::Interaction::new(
            crmkit_core::model::InteractionKind::Call,
            crate::common::T0,
            other.id,
            "Звонок",
        );
        i.deal = Some(deal.id);
        tx.create(i)
    });
    // Once the other partner takes part in the deal, its interactions may belong to it.
    fx.store
        .transact(None, |tx| {
            tx.create(crmkit_core::model::Participant::partner(deal.id, other.id, "subcontractor"))?;
            let mut i = crmkit_core::model::Interaction::new(
                crmkit_core::model::InteractionKind::Meeting,
                crate::common::T0,
                other.id,
                "Встреча с субподрядчиком",
            );
            i.deal = Some(deal.id);
            tx.create(i)
        })
        .unwrap();
}

#[test]
fn registration_numbers_follow_the_kind_of_subject() {
    let (fx, ..) = setup();
    rejects(&fx, EntityKind::Counterparty, "reg_number", "private person", |tx| {
        let mut c = Counterparty::new(CounterpartyKind::Individual, "Сидоров Пётр");
        c.reg_number = Some(crmkit_core::values::ru::complete_ogrn("304770012345").to_string());
        tx.create(c)
    });
    rejects(&fx, EntityKind::Counterparty, "reg_number", "starts with 1 or 5", |tx| {
        let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "ООО «Ромашка»");
        c.reg_number = Some(crmkit_core::values::ru::complete_ogrn("202770012345"));
        tx.create(c)
    });
}

#[test]
fn a_deal_cannot_close_before_it_was_created() {
    // With the clock set back (a skewed server), the engine's close would stamp a time
    // before the deal's creation; the store refuses the record.
    let (fx, p, m) = setup();
    let d = fx.deal(p.id, m, 1000);
    fx.clock.set(crate::common::T0.plus_millis(-86_400_000));
    rejects(&fx, EntityKind::Deal, "closed_at", "before the deal was created", |tx| {
        Engine::without_hooks().close(tx, d.id, d.version, Outcome::Won { comment: String::new() })
    });
}

#[test]
fn a_bank_account_is_in_the_currency_its_number_says() {
    let (fx, ..) = setup();
    rejects(&fx, EntityKind::Counterparty, "bank_accounts[0].account", "not USD", |tx| {
        let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "ООО «Валюта»");
        c.bank_accounts.push(crmkit_core::model::BankAccount {
            bank: "ПАО Сбербанк".into(),
            bik: Some("044525225".into()),
            swift: None,
            account: crmkit_core::values::ru::complete_account("044525225", "40702810000000001234"),
            corr_account: Some("30101810400000000225".into()),
            currency: Currency::USD,
        });
        tx.create(c)
    });
}

// ---------------------------------------------------------------------------------------
// Dates: YYYY-MM-DD from 1900-01-01 to 2999-12-31, on every field and every path.

fn day(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The default config with a custom date field on deals.
fn with_a_custom_date() -> Fixture {
    let text = format!(
        "{}\n[[custom_fields.deal]]\nname = \"signed_on\"\nlabel = \"Signed on\"\ntype = \"date\"\n",
        crmkit_core::config::DEFAULT_CONFIG
    );
    Fixture::with_settings(crmkit_core::config::Settings::parse(&text, std::path::Path::new("crmkit.toml")).unwrap())
}

#[test]
fn dates_outside_the_range_are_refused_on_every_date_field() {
    let fx = with_a_custom_date();
    let (p, m) = fx.client("Ромашка");
    let engine = Engine::without_hooks();
    for (date, needle) in [
        (day(99999, 1, 1), "+99999-01-01 is outside the dates a field holds (1900-01-01 to 2999-12-31)"),
        (day(-1, 1, 1), "is outside the dates a field holds"),
        (day(1899, 12, 31), "1899-12-31 is outside"),
        (day(3000, 1, 1), "3000-01-01 is outside"),
    ] {
        let deal = || {
            let mut d = new_deal(p.id, m, 100);
            d.expected_close = Some(date);
            d
        };
        rejects(&fx, EntityKind::Deal, "expected_close", needle, |tx| tx.create(deal()));
        rejects(&fx, EntityKind::Deal, "expected_close", needle, |tx| engine.create_deal(tx, deal()));
        rejects(&fx, EntityKind::Deal, "custom.signed_on", needle, |tx| {
            let mut d = new_deal(p.id, m, 100);
            d.custom.insert("signed_on".into(), CustomValue::Date(date));
            tx.create(d)
        });
        rejects(&fx, EntityKind::Document, "date", needle, |tx| {
            tx.create(Document::new(
                DocumentKind::Quote,
                "КП-1",
                date,
                p.id,
                Money::new(Decimal::from(5), Currency::RUB),
            ))
        });
    }
    // The ends of the range are dates.
    let mut d = new_deal(p.id, m, 100);
    d.expected_close = Some(day(1900, 1, 1));
    d.custom.insert("signed_on".into(), CustomValue::Date(day(2999, 12, 31)));
    let d = fx.store.transact(None, |tx| tx.create(d)).unwrap();
    // An update is held to it too.
    rejects(&fx, EntityKind::Deal, "expected_close", "outside", |tx| {
        let mut d: Deal = tx.load(d.id)?;
        d.expected_close = Some(day(20266, 3, 1));
        tx.update(d)
    });
}

fn import_text(fx: &Fixture, kind: EntityKind, text: &str) -> crmkit_core::transfer::Report {
    let opts = crmkit_core::transfer::ImportOptions::new(kind, crmkit_core::transfer::Format::Csv);
    crmkit_core::transfer::Importer::new(&fx.store, &Engine::without_hooks(), None, &opts)
        .unwrap()
        .run(text.as_bytes(), &mut |_| {})
        .unwrap()
}

#[test]
fn an_import_reads_dates_by_the_same_rule() {
    let fx = with_a_custom_date();
    fx.user("m.ivanova");
    let r = import_text(&fx, EntityKind::Partner, "key,name,roles\nP1,Альфа,client\n");
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    let before = fx.dump();
    let head = "key,title,kind,partner,manager,amount,currency,expected_close,custom.signed_on\n";
    let rows = [
        ("+99999-01-01", "2026-03-01", "expected_close", "is not a date written YYYY-MM-DD"),
        ("-0001-01-01", "2026-03-01", "expected_close", "is not a date written YYYY-MM-DD"),
        ("2026-3-1", "2026-03-01", "expected_close", "is not a date written YYYY-MM-DD"),
        ("1899-12-31", "2026-03-01", "expected_close", "1899-12-31 is outside"),
        ("31.12.1899", "2026-03-01", "expected_close", "1899-12-31 is outside"),
        ("2026-02-30", "2026-03-01", "expected_close", "is not a day of the calendar"),
        ("2026-06-30", "30.02.2026", "custom.signed_on", "is not a day of the calendar"),
        ("2026-06-30", "3000-01-01", "custom.signed_on", "3000-01-01 is outside"),
    ];
    let mut text = head.to_string();
    for (i, (close, signed, _, _)) in rows.iter().enumerate() {
        text += &format!("D{i},Сделка {i},b2b_sale,P1,m.ivanova,100,RUB,{close},{signed}\n");
    }
    let r = import_text(&fx, EntityKind::Deal, &text);
    assert_eq!((r.created, r.failed), (0, rows.len() as u64), "{:?}", r.errors);
    for (e, (_, _, field, needle)) in r.errors.iter().zip(rows) {
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(needle), "{e}");
    }
    assert!(fx.dump() == before, "refused rows wrote something");
    // Both spellings of a date in range are read.
    let r = import_text(
        &fx,
        EntityKind::Deal,
        &format!("{head}D1,Сделка,b2b_sale,P1,m.ivanova,100,RUB,30.06.2026,2026-03-01\n"),
    );
    assert_eq!((r.created, r.failed), (1, 0), "{:?}", r.errors);
}

// ---------------------------------------------------------------------------------------
// A loss's competitor and the free text of imports and the command line.

#[test]
fn an_imported_lost_deal_names_a_real_competitor() {
    let fx = Fixture::new();
    let manager = fx.user("m.ivanova");
    let r = import_text(&fx, EntityKind::Partner, "key,name,roles\nP1,Альфа,client\nC1,ПромЛидер,competitor\n");
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    let history = r#"[{"at":"2025-01-10T09:00:00Z","how":"create","stage":"qualification","status":"in_progress"},{"at":"2025-02-01T09:00:00Z","how":"lost","stage":"qualification","status":"lost","note":"price"}]"#
        .replace('"', "\"\"");
    let head = "key,title,kind,partner,manager,amount,currency,loss_reason,competitor,history\n";
    let before = fx.dump();
    let row = |key: &str, competitor: &str| {
        format!("{head}{key},Поставка,b2b_sale,P1,m.ivanova,1000,RUB,price,{competitor},\"{history}\"\n")
    };
    for (competitor, needle) in [
        ("C9".to_string(), "C9"),
        (manager.to_string(), "no partner has the key"),
        ("P1".to_string(), "does not have the competitor role"),
    ] {
        let r = import_text(&fx, EntityKind::Deal, &row("D1", &competitor));
        assert_eq!(r.failed, 1, "{competitor}: {:?}", r.errors);
        let e = &r.errors[0];
        assert_eq!(e.field, "competitor", "{e}");
        assert!(e.message.contains(needle), "{e}");
    }
    assert!(fx.dump() == before, "refused rows wrote something");
    let r = import_text(&fx, EntityKind::Deal, &row("D1", "C1"));
    assert_eq!((r.created, r.failed), (1, 0), "{:?}", r.errors);
}

#[test]
fn an_imported_history_keeps_its_notes_to_the_rule_of_free_text() {
    let fx = Fixture::new();
    fx.user("m.ivanova");
    let r = import_text(&fx, EntityKind::Partner, "key,name,roles\nP1,Альфа,client\n");
    assert_eq!(r.failed, 0, "{:?}", r.errors);
    let before = fx.dump();
    let long = "ж".repeat(2001);
    for (note, needle) in [
        ("a\\u0000b", "control character"),
        ("\\u001b[31mred", "control character"),
        (long.as_str(), "the limit is 2000"),
    ] {
        let history = format!(
            r#"[{{"at":"2025-01-10T09:00:00Z","how":"create","stage":"qualification","status":"in_progress"}},{{"at":"2025-02-01T09:00:00Z","how":"hold","stage":"qualification","status":"on_hold","note":"{note}"}}]"#
        )
        .replace('"', "\"\"");
        let text = format!("key,title,kind,partner,manager,amount,currency,history\nD1,Поставка,b2b_sale,P1,m.ivanova,1000,RUB,\"{history}\"\n");
        let r = import_text(&fx, EntityKind::Deal, &text);
        assert_eq!(r.failed, 1, "{:?}", r.errors);
        let e = &r.errors[0];
        assert_eq!(e.field, "history", "{e}");
        assert!(e.message.contains("step 1: note") && e.message.contains(needle), "{e}");
    }
    assert!(fx.dump() == before, "refused rows wrote something");
}

#[test]
fn a_file_name_from_the_command_line_is_one_line() {
    use crate::cli::{fails, Site};
    let site = Site::new(|c| c);
    let client = site.partner("Альфа", PartnerRole::Client);
    let file = site.file("offer.pdf", b"%PDF-1.4");
    let before = site.dump();
    // (A NUL cannot reach a program through its arguments.)
    for name in ["offer\r\nX-Injected: 1.pdf", "\u{1b}[31moffer.pdf", "../offer.pdf", "offer\u{7f}.pdf"] {
        let out = fails(&["attach", site.dir(), &format!("partner:{client}"), &file, "--name", name]);
        assert!(out.contains("attachment.name"), "{name:?}: {out}");
    }
    assert!(site.dump() == before, "a refused attach wrote something");
}

fn equipment(values: &[&str]) -> CustomValue {
    CustomValue::EnumSet(values.iter().map(|v| v.to_string()).collect())
}

#[test]
fn a_multi_valued_enum_field_holds_distinct_declared_values() {
    let (fx, p, m) = setup();
    let with = |v: CustomValue| {
        move |tx: &mut WriteTxn<'_>| {
            let mut d = new_deal(p.id, m, 100);
            d.custom.insert("equipment".into(), v);
            tx.create(d)
        }
    };
    rejects(
        &fx,
        EntityKind::Deal,
        "custom.equipment",
        "\"pumps\" twice",
        with(equipment(&["pumps", "valves", "pumps"])),
    );
    rejects(
        &fx,
        EntityKind::Deal,
        "custom.equipment",
        "\"boats\" is not one of the allowed values",
        with(equipment(&["pumps", "boats"])),
    );
    rejects(
        &fx,
        EntityKind::Deal,
        "custom.equipment",
        "expected a enum_set (a list of the declared values",
        with(CustomValue::Enum("pumps".into())),
    );
    rejects(&fx, EntityKind::Deal, "custom.delivery_region", "expected a enum value, got a enum_set value", |tx| {
        let mut d = new_deal(p.id, m, 100);
        d.custom.insert("delivery_region".into(), equipment(&["volga"]));
        tx.create(d)
    });
    // A good one is stored as given, and read back after a reopen.
    let d = fx.store.transact(None, with(equipment(&["valves", "pumps"]))).unwrap();
    let fx = fx.reopen();
    let back: Deal = fx.store.read().unwrap().get(d.id).unwrap().unwrap();
    assert_eq!(back.custom["equipment"], equipment(&["valves", "pumps"]));
    // An empty set is allowed where the field is not required, and a required field must
    // hold a value.
    fx.store.transact(None, with(equipment(&[]))).unwrap();
    let text = crmkit_core::config::DEFAULT_CONFIG.replace(
        "values = [\"pumps\", \"valves\", \"compressors\", \"heat_exchangers\", \"automation\"]\nmultiple = true",
        "values = [\"pumps\", \"valves\", \"compressors\", \"heat_exchangers\", \"automation\"]\nmultiple = true\nrequired = true",
    );
    let settings = crmkit_core::config::Settings::parse(&text, std::path::Path::new("c.toml")).unwrap();
    let fx = Fixture::with_settings(settings);
    let (p, m) = fx.client("Ромашка");
    rejects(&fx, EntityKind::Deal, "custom.equipment", "at least one value", |tx| {
        let mut d = new_deal(p.id, m, 100);
        d.custom.insert("equipment".into(), equipment(&[]));
        tx.create(d)
    });
    rejects(&fx, EntityKind::Deal, "custom.equipment", "is a required custom field", |tx| {
        tx.create(new_deal(p.id, m, 100))
    });
}

#[test]
fn internationalized_e_mail_domains_are_stored_in_their_ascii_form() {
    let (fx, p, _) = setup();
    let c = fx
        .store
        .transact(None, |tx| {
            let mut c = ContactPerson::new(p.id, "Петров Иван");
            c.emails = vec!["info@пример.рф".into(), "Sales@ПРИМЕР.РФ".into(), "kontakt@müller.de".into()];
            tx.create(c)
        })
        .unwrap();
    assert_eq!(c.emails, ["info@xn--e1afmkfd.xn--p1ai", "Sales@xn--e1afmkfd.xn--p1ai", "kontakt@xn--mller-kva.de"]);
    rejects(&fx, EntityKind::Contact, "emails[0]", "not a valid internationalized domain name", |tx| {
        let mut c = ContactPerson::new(p.id, "Петров Иван");
        c.emails = vec!["info@\u{301}пример.рф".into()];
        tx.create(c)
    });
    rejects(&fx, EntityKind::Contact, "emails[0]", "not a valid internationalized domain name", |tx| {
        let mut c = ContactPerson::new(p.id, "Петров Иван");
        c.emails = vec!["info@xn--zz.xn--p1ai".into()];
        tx.create(c)
    });
    // Users' addresses follow the same rule.
    rejects(&fx, EntityKind::User, "email", "'_' in the domain", |tx| {
        let mut u = crmkit_core::model::User::new("ivanov", "Иванов", crmkit_core::model::Role::Manager);
        u.email = Some("ivanov@компания_.рф".into());
        tx.create(u)
    });
}

#[test]
fn an_iban_has_its_country_s_length_and_layout() {
    let (fx, ..) = setup();
    let with = |account: &'static str| {
        move |tx: &mut WriteTxn<'_>| {
            let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "Muster GmbH");
            c.country = "DE".into();
            c.bank_accounts.push(crmkit_core::model::BankAccount {
                bank: "Commerzbank".into(),
                bik: None,
                swift: Some("COBADEFFXXX".into()),
                account: account.into(),
                corr_account: None,
                currency: Currency::EUR,
            });
            tx.create(c)
        }
    };
    let field = "bank_accounts[0].account";
    rejects(&fx, EntityKind::Counterparty, field, "length and layout of a DE IBAN", with("DE5137040044053201300"));
    rejects(&fx, EntityKind::Counterparty, field, "length and layout of a GB IBAN", with("GB25123412345698765432"));
    rejects(
        &fx,
        EntityKind::Counterparty,
        field,
        "\"ZZ\", which is not a country of the IBAN registry",
        with("ZZ591234567890123456"),
    );
    rejects(&fx, EntityKind::Counterparty, field, "mod-97", with("DE89370400440532013001"));
    fx.store.transact(None, with("DE89 3704 0044 0532 0130 00")).unwrap();
}
