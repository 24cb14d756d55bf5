//! The store on every backend: round trips, reopening, optimistic concurrency, deletes, the
//! audit log, attachments, damaged indexes and recognizing foreign data (and files).

on_every_backend! {
    every_entity_round_trips_and_survives_reopening,
    indexes_answer_the_common_questions,
    ids_are_time_ordered_so_creation_ranges_are_scans,
    a_stale_version_is_a_conflict_and_writes_nothing,
    an_update_that_changes_nothing_is_not_recorded,
    the_audit_log_records_every_change_with_who_and_what,
    deleting_a_referenced_entity_is_refused,
    a_partner_cannot_become_its_own_ancestor,
    logins_are_unique,
    attachment_content_is_stored_once_and_freed_with_its_last_reference,
    a_counterparty_can_serve_several_partners,
    long_posting_lists_split_into_chunks_and_stay_exact,
    snapshots_read_their_own_versions_through_the_record_cache,
    index_verification_finds_a_damaged_index,
    a_backend_holding_anything_else_is_refused,
    attachments_from_a_reader_stop_at_the_limit_and_come_back_in_chunks,
    an_attachments_content_is_written_only_by_attach_and_never_changes,
}

use std::sync::Arc;

use crmkit_core::audit::AuditOp;
use crmkit_core::config::Settings;
use crmkit_core::id::TypedId;
use crmkit_core::model::{
    Address, AddressKind, Attitude, BankAccount, ContactLink, ContactPerson, Counterparty, CounterpartyKind, Deal,
    DealStatus, Direction, Document, DocumentKind, DocumentLine, DocumentState, Entity, EntityKind, EntityRef,
    Influence, Interaction, InteractionKind, Participant, ParticipantLink, Partner, PartnerLink, PartnerRole, User,
};
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::store::kv::{Backend as _, Changes, Durability};
use crmkit_core::store::{force_schema_version, tables, Index, Reader, Store};
use crmkit_core::time::{ManualClock, Timestamp};
use crmkit_core::values::{ru, Currency, Money};
use crmkit_core::Error;
use rust_decimal::Decimal;

use crate::common::{on_every_backend, Backend, Fixture, T0};

/// One of every entity kind, linked together as a real company would be.
pub struct Company {
    pub counterparty: Counterparty,
    pub partner: Partner,
    pub holding: Partner,
    pub link: PartnerLink,
    pub boss: ContactPerson,
    pub buyer: ContactPerson,
    pub contact_link: ContactLink,
    pub manager: User,
    pub deal: Deal,
    pub participants: (Participant, Participant),
    pub participant_link: ParticipantLink,
    pub interaction: Interaction,
    pub document: Document,
}

pub fn company(fx: &Fixture) -> Company {
    fx.store
        .transact(None, |tx| {
            let manager = tx.create({
                let mut u = User::new("o.smirnova", "Смирнова Ольга", crmkit_core::model::Role::Manager);
                u.email = Some("o.smirnova@demo-company.ru".into());
                u.department = Some("Moscow sales".into());
                u
            })?;
            let counterparty = tx.create({
                let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "ООО «Вектор»");
                c.full_name = "Общество с ограниченной ответственностью «Вектор»".into();
                c.tax_id = Some(ru::complete_inn10("772801234"));
                c.kpp = Some("772801001".into());
                c.reg_number = Some(ru::complete_ogrn("102770012345"));
                c.addresses.push(Address {
                    kind: AddressKind::Legal, text: "г. Москва, ул. Ленина, д. 1".into()
                });
                c.bank_accounts.push(BankAccount {
                    bank: "ПАО Сбербанк".into(),
                    bik: Some("044525225".into()),
                    swift: None,
                    account: ru::complete_account("044525225", "40702810000000001234"),
                    corr_account: Some("30101810400000000225".into()),
                    currency: Currency::RUB,
                });
                c
            })?;
            let holding = tx.create(Partner::new("ГК «Вектор»", PartnerRole::Client))?;
            let partner = tx.create({
                let mut p = Partner::new("Вектор", PartnerRole::Client);
                p.roles.push(PartnerRole::Supplier);
                p.parent = Some(holding.id);
                p.manager = Some(manager.id);
                p.counterparties.push(counterparty.id);
                p.segment = Some("key".into());
                p.custom.insert("employees".into(), crmkit_core::model::CustomValue::Number(Decimal::from(250)));
                p
            })?;
            let link = tx.create(PartnerLink::new(holding.id, partner.id, "holding"))?;
            let boss = tx.create({
                let mut c = ContactPerson::new(partner.id, "Кузнецов Андрей Викторович");
                c.position = "Генеральный директор".into();
                c.decision_role = Some("decision_maker".into());
                c.phones.push("+7 495 123-45-67".into());
                c.emails.push("a.kuznetsov@vektor.ru".into());
                c.attitude = Some(Attitude::Supporter);
                c
            })?;
            let buyer = tx.create(ContactPerson::new(partner.id, "Попова Анна Сергеевна"))?;
            let contact_link = tx.create(ContactLink::new(buyer.id, boss.id, "reports_to"))?;
            let deal = tx.create({
                let mut d = crate::common::new_deal(partner.id, manager.id, 1_250_000);
                d.counterparty = Some(counterparty.id);
                d.source = Some("referral".into());
                d.probability = Some(20);
                d
            })?;
            let p1 = tx.create({
                let mut p = Participant::contact(deal.id, boss.id, "decision_maker");
                p.influence = Some(Influence::High);
                p
            })?;
            let competitor = tx.create(Partner::new("ПромЛидер", PartnerRole::Competitor))?;
            let p2 = tx.create(Participant::partner(deal.id, competitor.id, "competitor"))?;
            let participant_link = tx.create(ParticipantLink::new(deal.id, p2.id, p1.id, "influences"))?;
            let interaction = tx.create({
                let mut i = Interaction::new(InteractionKind::Call, T0, partner.id, "Уточнение потребности");
                i.deal = Some(deal.id);
                i.direction = Some(Direction::Outgoing);
                i.duration_min = Some(12);
                i.contacts.push(boss.id);
                i.author = Some(manager.id);
                i
            })?;
            let document = tx.create({
                let mut d = Document::new(
                    DocumentKind::Quote,
                    "КП-26-0000001",
                    T0.date(),
                    partner.id,
                    Money::new(Decimal::new(125_000_050, 2), Currency::RUB),
                );
                d.deal = Some(deal.id);
                d.counterparty = Some(counterparty.id);
                d.state = DocumentState::Issued;
                d.lines.push(DocumentLine {
                    item: "Шкаф управления".into(),
                    qty: Decimal::from(2),
                    unit: Some("шт".into()),
                    price: Decimal::new(62_500_025, 2),
                });
                d
            })?;
            Ok(Company {
                counterparty,
                partner,
                holding,
                link,
                boss,
                buyer,
                contact_link,
                manager,
                deal,
                participants: (p1, p2),
                participant_link,
                interaction,
                document,
            })
        })
        .unwrap()
}

fn same<E: Entity + PartialEq>(r: &impl Reader, e: &E) {
    assert_eq!(&r.load::<E>(e.id()).unwrap(), e, "{} does not round-trip", E::KIND);
}

fn check_all(r: &impl Reader, c: &Company) {
    same(r, &c.counterparty);
    same(r, &c.partner);
    same(r, &c.holding);
    same(r, &c.link);
    same(r, &c.boss);
    same(r, &c.buyer);
    same(r, &c.contact_link);
    same(r, &c.manager);
    same(r, &c.deal);
    same(r, &c.participants.0);
    same(r, &c.participants.1);
    same(r, &c.participant_link);
    same(r, &c.interaction);
    same(r, &c.document);
}

fn every_entity_round_trips_and_survives_reopening(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    assert_eq!(c.boss.phones, ["+74951234567"]);
    check_all(&fx.store.read().unwrap(), &c);
    let fx = fx.reopen();
    check_all(&fx.store.read().unwrap(), &c);
    let stats = fx.store.stats().unwrap();
    assert_eq!(stats.entities[&EntityKind::Partner], 3);
    assert_eq!(stats.entities[&EntityKind::Participant], 2);
    assert_eq!(stats.schema_version, crmkit_core::store::SCHEMA_VERSION);
}

fn indexes_answer_the_common_questions(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    let r = fx.store.read().unwrap();
    let by = |i: Index, p: &[u8]| r.ids_by(i, p, None, 100).unwrap();
    assert_eq!(by(Index::DealByPartner, &c.partner.id.raw().to_bytes()), [c.deal.id.raw()]);
    assert_eq!(by(Index::DealByManager, &c.manager.id.raw().to_bytes()), [c.deal.id.raw()]);
    assert_eq!(
        by(Index::DealByStage, &crmkit_core::model::text_prefix(&["b2b_sale", "qualification"])),
        [c.deal.id.raw()]
    );
    assert_eq!(by(Index::DealByStatus, &crmkit_core::model::text_prefix(&["in_progress"])), [c.deal.id.raw()]);
    assert_eq!(by(Index::InteractionByDeal, &c.deal.id.raw().to_bytes()), [c.interaction.id.raw()]);
    assert_eq!(by(Index::DocumentByPartner, &c.partner.id.raw().to_bytes()), [c.document.id.raw()]);
    let inn = c.counterparty.tax_id.clone().unwrap();
    assert_eq!(by(Index::CounterpartyByTaxId, &crmkit_core::model::text_prefix(&[&inn])), [c.counterparty.id.raw()]);
    assert_eq!(by(Index::ContactByPartner, &c.partner.id.raw().to_bytes()), [c.boss.id.raw(), c.buyer.id.raw()]);
    assert_eq!(by(Index::PartnerByCounterparty, &c.counterparty.id.raw().to_bytes()), [c.partner.id.raw()]);
    assert_eq!(by(Index::PartnerByParent, &c.holding.id.raw().to_bytes()), [c.partner.id.raw()]);
    assert_eq!(r.user_by_login("o.smirnova").unwrap().unwrap().id, c.manager.id);
}

fn ids_are_time_ordered_so_creation_ranges_are_scans(backend: Backend) {
    let fx = Fixture::on(backend);
    let (p, m) = fx.client("Альфа");
    let mut ids = Vec::new();
    for day in 0..5 {
        fx.clock.set(T0.plus_millis(day * 86_400_000));
        ids.push(fx.deal(p.id, m, 100 + day).id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ids[2].raw().millis(), T0.0 + 2 * 86_400_000);
    let r = fx.store.read().unwrap();
    // Deals created from day 2 on: a range scan from the first possible id of that day.
    let from = crmkit_core::id::DealId(crmkit_core::id::RawId::min_at(T0.0 + 2 * 86_400_000 - 1));
    let later: Vec<_> = r.list::<Deal>(Some(from), 100).unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(later, ids[2..]);
}

fn a_stale_version_is_a_conflict_and_writes_nothing(backend: Backend) {
    let fx = Fixture::on(backend);
    let (p, m) = fx.client("Бета");
    let d = fx.deal(p.id, m, 100);
    let mut first = d.clone();
    first.amount = Money::new(Decimal::from(200), Currency::RUB);
    let first = fx.store.transact(Some(m), |tx| tx.update(first)).unwrap();
    assert_eq!(first.version, 2);
    let mut stale = d.clone();
    stale.amount = Money::new(Decimal::from(300), Currency::RUB);
    let err = fx.refused(Some(m), |tx| tx.update(stale));
    assert!(matches!(err, Error::Conflict { given: 1, stored: 2, .. }), "{err}");
    assert!(err.to_string().contains("version 1"), "{err}");
    let err = fx.refused(Some(m), |tx| tx.delete::<Deal>(d.id, 1));
    assert!(matches!(err, Error::Conflict { .. }));
}

fn an_update_that_changes_nothing_is_not_recorded(backend: Backend) {
    let fx = Fixture::on(backend);
    let (p, m) = fx.client("Гамма");
    let d = fx.deal(p.id, m, 100);
    let before = fx.dump();
    let same = fx.store.transact(Some(m), |tx| tx.update(d.clone())).unwrap();
    assert_eq!(same.version, 1);
    assert!(fx.dump() == before);
}

fn the_audit_log_records_every_change_with_who_and_what(backend: Backend) {
    let fx = Fixture::on(backend);
    let (p, m) = fx.client("Дельта");
    let d = fx.deal(p.id, m, 100);
    fx.clock.advance(60_000);
    let outcome = Outcome::Lost { reason: "no_budget".into(), competitor: None, comment: String::new() };
    let lost = fx.store.transact(Some(m), |tx| Engine::without_hooks().close(tx, d.id, d.version, outcome)).unwrap();
    assert_eq!(lost.status, DealStatus::Lost);
    let r = fx.store.read().unwrap();
    let log = r.audit_of::<Deal>(d.id).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].op, log[0].actor, log[0].version, log[0].at), (AuditOp::Create, Some(m), 1, T0));
    assert_eq!(
        (log[1].op, log[1].actor, log[1].version, log[1].at),
        (AuditOp::Update, Some(m), 2, T0.plus_millis(60_000))
    );
    let fields: Vec<&str> = log[1].changes.iter().map(|c| c.field.as_str()).collect();
    // Closing stamps the time of the close; a lost deal has no chance left.
    assert_eq!(fields, ["closed_at", "loss_reason", "probability", "status"]);
    assert_eq!(log[1].changes[0].new, Some(T0.plus_millis(60_000).to_string().into()));
    assert_eq!(log[1].changes[2].new, Some(0.into()));
    assert_eq!(log[1].changes[3].old, Some("in_progress".into()));
    assert_eq!(log[1].changes[3].new, Some("lost".into()));
    drop(r);

    // A deal that went through its process keeps its history: it cannot be deleted.
    let err = fx.refused(Some(m), |tx| tx.delete::<Deal>(lost.id, lost.version));
    assert!(matches!(err, Error::NotAllowed(_)) && err.to_string().contains("close it as lost instead"), "{err}");

    // Deleting records the last state; the global log holds everything in time order.
    let other = fx.deal(p.id, m, 300);
    let mut bigger = other.clone();
    bigger.amount = Money::new(Decimal::from(400), Currency::RUB);
    let bigger = fx.store.transact(Some(m), |tx| tx.update(bigger)).unwrap();
    fx.store.transact(Some(m), |tx| tx.delete::<Deal>(bigger.id, bigger.version)).unwrap();
    let r = fx.store.read().unwrap();
    let log = r.audit_of::<Deal>(other.id).unwrap();
    assert_eq!(log.iter().map(|e| e.op).collect::<Vec<_>>(), [AuditOp::Create, AuditOp::Update, AuditOp::Delete]);
    assert!(log[2].changes.iter().any(|c| c.field == "title" && c.old == Some("Поставка оборудования".into())));
    assert!(log[2]
        .changes
        .iter()
        .any(|c| c.field == "amount" && c.old.as_ref().is_some_and(|v| v.to_string().contains("400"))));
    assert!(r.stage_history(other.id).unwrap().is_empty(), "a deleted deal's creation step goes with it");
    let all = r.audit_log(None, 1000).unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all.len() as u64, fx.store.stats().unwrap().audit_entries);
}

fn deleting_a_referenced_entity_is_refused(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    let err = fx.refused(None, |tx| tx.delete::<Partner>(c.partner.id, c.partner.version));
    assert!(matches!(err, Error::Referenced { .. }), "{err}");
    let err = fx.refused(None, |tx| tx.delete::<Counterparty>(c.counterparty.id, 1));
    assert!(err.to_string().contains("refer to it"), "{err}");
    let err = fx.refused(None, |tx| tx.delete::<User>(c.manager.id, 1));
    assert!(matches!(err, Error::NotAllowed(_)), "{err}");

    // Unreferenced things can go: the contact link, then the buyer.
    fx.store
        .transact(None, |tx| {
            tx.delete::<ContactLink>(c.contact_link.id, 1)?;
            tx.delete::<ContactPerson>(c.buyer.id, 1)
        })
        .unwrap();
    let r = fx.store.read().unwrap();
    assert!(r.get::<ContactPerson>(c.buyer.id).unwrap().is_none());
    assert_eq!(r.ids_by(Index::ContactByPartner, &c.partner.id.raw().to_bytes(), None, 10).unwrap(), [c.boss.id.raw()]);
}

fn a_partner_cannot_become_its_own_ancestor(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    let mut holding = c.holding.clone();
    holding.parent = Some(c.partner.id);
    let err = fx.refused(None, |tx| tx.update(holding));
    assert!(err.to_string().contains("cycle"), "{err}");
}

fn logins_are_unique(backend: Backend) {
    let fx = Fixture::on(backend);
    fx.user("i.petrov");
    let err = fx.refused(None, |tx| tx.create(User::new("i.petrov", "Другой", crmkit_core::model::Role::Viewer)));
    assert!(matches!(err, Error::Duplicate { field: "login", .. }), "{err}");
}

fn attachment_content_is_stored_once_and_freed_with_its_last_reference(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    let pdf = b"%PDF-1.7 quote".repeat(100_000); // 1.4 MB: two chunks
    let owner = |k, id| EntityRef { kind: k, id };
    let (a, b) = fx
        .store
        .transact(None, |tx| {
            let a = tx.attach(owner(EntityKind::Deal, c.deal.id.raw()), "КП.pdf", "application/pdf", &pdf)?;
            let b =
                tx.attach(owner(EntityKind::Document, c.document.id.raw()), "quote.pdf", "application/pdf", &pdf)?;
            Ok((a, b))
        })
        .unwrap();
    assert_eq!(a.content, b.content);
    assert_eq!(fx.store.stats().unwrap().blob_chunks, 2);
    assert_eq!(fx.store.read().unwrap().blob(&a.content).unwrap().unwrap(), pdf);

    // The document cannot go while a file hangs on it.
    let err = fx.refused(None, |tx| tx.delete::<Document>(c.document.id, 1));
    assert!(matches!(err, Error::Referenced { field: "owner", .. }), "{err}");

    fx.store.transact(None, |tx| tx.delete::<crmkit_core::model::Attachment>(a.id, 1)).unwrap();
    assert_eq!(fx.store.stats().unwrap().blob_chunks, 2, "still referenced by the second attachment");
    fx.store.transact(None, |tx| tx.delete::<crmkit_core::model::Attachment>(b.id, 1)).unwrap();
    assert_eq!(fx.store.stats().unwrap().blob_chunks, 0);
    assert!(fx.store.read().unwrap().blob(&a.content).unwrap().is_none());

    // Over the configured limit: refused, nothing stored.
    let big = vec![0u8; 26 * 1024 * 1024];
    let err = fx.refused(None, |tx| {
        tx.attach(owner(EntityKind::Deal, c.deal.id.raw()), "big.bin", "application/octet-stream", &big)
    });
    assert!(err.to_string().contains("limit"), "{err}");
}

fn a_counterparty_can_serve_several_partners(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    // The holding acts through its subsidiary's legal entity too.
    let mut holding = c.holding.clone();
    holding.counterparties.push(c.counterparty.id);
    let holding = fx.store.transact(None, |tx| tx.update(holding)).unwrap();
    let r = fx.store.read().unwrap();
    let partners =
        r.find::<Partner>(Index::PartnerByCounterparty, &c.counterparty.id.raw().to_bytes(), None, 10).unwrap();
    let mut names: Vec<&str> = partners.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["Вектор", "ГК «Вектор»"]);
    // A deal of the holding may now name that counterparty.
    let mut d = crate::common::new_deal(holding.id, c.manager.id, 500);
    d.counterparty = Some(c.counterparty.id);
    fx.store.transact(None, |tx| tx.create(d)).unwrap();
}

#[test]
fn both_backends_hold_the_same_bytes_after_the_same_writes() {
    let dumps: Vec<_> = [Backend::Redb, Backend::Memory]
        .into_iter()
        .map(|backend| {
            let fx = Fixture::on(backend);
            let c = company(&fx);
            fx.clock.advance(60_000);
            let outcome = Outcome::Won { comment: String::new() };
            fx.store
                .transact(Some(c.manager.id), |tx| {
                    Engine::without_hooks().close(tx, c.deal.id, c.deal.version, outcome)
                })
                .unwrap();
            fx.store.transact(None, |tx| tx.delete::<ContactLink>(c.contact_link.id, 1)).unwrap();
            fx.reopen().dump()
        })
        .collect();
    assert!(dumps[0] == dumps[1], "redb and memory differ after the same writes");
}

#[test]
fn foreign_files_are_recognized() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(Settings::builtin());
    let clock = Arc::new(ManualClock::new(Timestamp(0)));

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some text, long enough to have a header").unwrap();
    let err = Store::open(&text, settings.clone(), clock.clone()).err().expect("a text file is refused");
    assert!(matches!(err, Error::NotCrmkit { .. }) && err.to_string().contains("not a redb database"), "{err}");

    let plain = dir.path().join("plain.redb");
    {
        let db = redb::Database::create(&plain).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<u64, u64>::new("numbers")).unwrap().insert(1, 2).unwrap();
        tx.commit().unwrap();
    }
    let err = Store::open(&plain, settings.clone(), clock.clone()).err().expect("a foreign redb file is refused");
    assert!(err.to_string().contains("without crmkit's meta table"), "{err}");

    let newer = dir.path().join("newer.redb");
    let store = Store::create(&newer, settings.clone(), clock.clone()).unwrap();
    force_schema_version(&store, crmkit_core::store::SCHEMA_VERSION + 1).unwrap();
    drop(store);
    let err = Store::open(&newer, settings.clone(), clock.clone()).err().expect("a newer schema is refused");
    let current = crmkit_core::store::SCHEMA_VERSION;
    assert!(
        matches!(err, Error::NewerSchema { found, supported, .. } if found == current + 1 && supported == current),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade crmkit"), "{err}");

    let missing = dir.path().join("missing.redb");
    assert!(matches!(Store::open(&missing, settings, clock).err().unwrap(), Error::Io { .. }));
}

fn long_posting_lists_split_into_chunks_and_stay_exact(backend: Backend) {
    // 400 deals of one partner (several chunks of 64), then moves to another partner and
    // deletions scattered through the list, over several transactions.
    let fx = Fixture::on(backend);
    let (a, m) = fx.client("Омега");
    let (b, _) = fx.client("Сигма");
    let mut deals: Vec<Deal> = Vec::new();
    for batch in 0..4 {
        let made = fx
            .store
            .transact(None, |tx| {
                (0..100)
                    .map(|i| tx.create(crate::common::new_deal(a.id, m, batch * 100 + i)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        deals.extend(made);
    }
    let mut on_a: Vec<_> = deals.iter().map(|d| d.id.raw()).collect();
    let mut on_b = Vec::new();
    fx.store
        .transact(None, |tx| {
            for (i, d) in deals.iter().enumerate() {
                if i % 7 == 3 {
                    let mut moved = d.clone();
                    moved.partner = b.id;
                    moved.counterparty = None;
                    tx.update(moved)?;
                    on_b.push(d.id.raw());
                } else if i % 11 == 5 {
                    tx.delete::<Deal>(d.id, d.version)?;
                }
            }
            // Inside the transaction the index already answers with the pending changes.
            let seen = tx.ids_by(Index::DealByPartner, &b.id.raw().to_bytes(), None, 1000)?;
            assert_eq!(seen.len(), on_b.len());
            Ok(())
        })
        .unwrap();
    on_a.retain(|id| {
        let i = deals.iter().position(|d| d.id.raw() == *id).unwrap();
        i % 7 != 3 && i % 11 != 5
    });
    let r = fx.store.read().unwrap();
    assert_eq!(r.ids_by(Index::DealByPartner, &a.id.raw().to_bytes(), None, 1000).unwrap(), on_a);
    assert_eq!(r.ids_by(Index::DealByPartner, &b.id.raw().to_bytes(), None, 1000).unwrap(), on_b);
    // Paging through with `after` gives the same list.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = r.ids_by(Index::DealByPartner, &a.id.raw().to_bytes(), after, 37).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        paged.extend(page);
    }
    assert_eq!(paged, on_a);
    assert_eq!(fx.store.verify_indexes().unwrap(), Vec::<String>::new());
}

fn snapshots_read_their_own_versions_through_the_record_cache(backend: Backend) {
    // Old snapshots stay open while deals change; every read from every snapshot must give
    // the version that snapshot was taken at, however the shared record cache was filled.
    let fx = Fixture::on(backend);
    let (p, m) = fx.client("Кэш");
    let mut deals: Vec<Deal> = (0..8).map(|i| fx.deal(p.id, m, 100 + i)).collect();
    let mut open: Vec<(crmkit_core::store::Snapshot, Vec<Option<Deal>>)> = Vec::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut alive: Vec<Option<Deal>> = deals.iter().cloned().map(Some).collect();
    for step in 0..3000 {
        match next() % 5 {
            0 => {
                // Change a deal (or delete it, now and then).
                let i = (next() % deals.len() as u64) as usize;
                if let Some(d) = alive[i].clone() {
                    if next() % 10 == 0 {
                        fx.store.transact(None, |tx| tx.delete::<Deal>(d.id, d.version)).unwrap();
                        alive[i] = None;
                    } else {
                        let mut changed = d.clone();
                        changed.amount = Money::new(Decimal::from(step), Currency::RUB);
                        alive[i] = Some(fx.store.transact(None, |tx| tx.update(changed)).unwrap());
                    }
                }
            }
            1 => {
                open.push((fx.store.read().unwrap(), alive.clone()));
                if open.len() > 6 {
                    open.remove((next() % open.len() as u64) as usize);
                }
            }
            _ => {
                // Read from a random snapshot (or a fresh one).
                let i = (next() % deals.len() as u64) as usize;
                let id = deals[i].id;
                if open.is_empty() || next() % 4 == 0 {
                    let got = fx.store.read().unwrap().get::<Deal>(id).unwrap();
                    assert_eq!(got, alive[i], "a fresh snapshot at step {step}");
                } else {
                    let k = (next() % open.len() as u64) as usize;
                    let got = open[k].0.get::<Deal>(id).unwrap();
                    assert_eq!(got, open[k].1[i], "an old snapshot at step {step}");
                }
            }
        }
    }
    deals.clear();
}

fn index_verification_finds_a_damaged_index(backend: Backend) {
    let fx = Fixture::on(backend);
    let c = company(&fx);
    assert_eq!(fx.store.verify_indexes().unwrap(), Vec::<String>::new());
    let settings = fx.store.settings().clone();
    let kv = fx.store.into_backend();
    // Damage the data behind the store's back: drop the deals-by-partner chunk.
    let table = Index::DealByPartner.table();
    let mut key = c.partner.id.raw().to_bytes().to_vec();
    key.extend_from_slice(&c.deal.id.raw().to_bytes());
    assert!(kv.read().unwrap().contains(table, &key).unwrap(), "the chunk key is prefix ++ first id");
    let mut changes = Changes::new();
    changes.delete(table, key);
    kv.write().unwrap().commit(changes, Durability::Immediate).unwrap();
    let store = Store::with_backend(kv, settings, fx.clock.clone()).unwrap();
    let problems = store.verify_indexes().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("DealByPartner") && problems[0].contains("missing"), "{problems:?}");
}

fn a_backend_holding_anything_else_is_refused(backend: Backend) {
    let fx = Fixture::on(backend);
    let (settings, clock) = (fx.store.settings().clone(), fx.clock.clone());
    let name = fx.store.describe();
    let current = crmkit_core::store::SCHEMA_VERSION;

    // A newer schema asks for a newer crmkit.
    force_schema_version(&fx.store, current + 1).unwrap();
    let kv = fx.store.into_backend();
    let err = Store::with_backend(kv, settings.clone(), clock.clone()).err().expect("a newer schema is refused");
    assert!(
        matches!(&err, Error::NewerSchema { database, found, supported } if *database == name && *found == current + 1 && *supported == current),
        "{err}"
    );
    assert!(err.to_string().starts_with(&format!("{name} has schema version {}", current + 1)), "{err}");

    // Data without crmkit's meta entries is someone else's.
    let kv: Box<dyn crmkit_core::store::kv::Backend> = match backend {
        Backend::Redb => {
            let path = fx.dir.path().join("other.redb");
            Box::new(
                crmkit_core::store::redb::RedbBackend::create(
                    &path,
                    crmkit_core::store::redb::RedbOptions { cache_bytes: 1 << 20, quick_repair: true },
                )
                .unwrap(),
            )
        }
        Backend::Memory => Box::new(crmkit_core::store::memory::MemoryBackend::new()),
    };
    let name = kv.describe();
    let mut changes = Changes::new();
    changes.put(tables::AUDIT, b"key".to_vec(), b"value".to_vec());
    kv.write().unwrap().commit(changes, Durability::Immediate).unwrap();
    let err = Store::with_backend(kv, settings, clock).err().expect("foreign data is refused");
    assert_eq!(
        err.to_string(),
        format!("{name} is not a crmkit database: its meta table does not identify it as crmkit")
    );
}

fn attachments_from_a_reader_stop_at_the_limit_and_come_back_in_chunks(backend: Backend) {
    use crmkit_core::config::{Settings, DEFAULT_CONFIG};
    use crmkit_core::model::{EntityKind, EntityRef};

    let text = DEFAULT_CONFIG.replacen("max_size_mb = 25", "max_size_mb = 2", 1);
    let fx = Fixture::on_with(backend, Settings::parse(&text, std::path::Path::new("att.toml")).unwrap());
    let (p, m) = fx.client("Эпсилон");
    let owner = EntityRef { kind: EntityKind::Partner, id: p.id.0 };
    // Over the limit: refused after reading just past it; nothing stored.
    let mut endless = std::io::repeat(7);
    let err = fx.refused(Some(m), |tx| tx.attach_from(owner, "big.bin", "application/octet-stream", &mut endless));
    assert!(err.to_string().contains("more than 2097152 bytes"), "{err}");
    // Under it: stored once however often attached, read back in 1 MiB chunks.
    let content: Vec<u8> = (0..(3 << 19)).map(|i| (i % 251) as u8).collect();
    let a = fx
        .store
        .transact(Some(m), |tx| tx.attach_from(owner, "scan.pdf", "application/pdf", &mut content.as_slice()))
        .unwrap();
    let chunks_before = fx.store.stats().unwrap().blob_chunks;
    fx.store
        .transact(Some(m), |tx| tx.attach_from(owner, "copy.pdf", "application/pdf", &mut content.as_slice()))
        .unwrap();
    assert_eq!(fx.store.stats().unwrap().blob_chunks, chunks_before);
    let r = fx.store.read().unwrap();
    let mut sizes = Vec::new();
    let mut back = Vec::new();
    let found = r
        .blob_chunks(&a.content, &mut |c| {
            sizes.push(c.len());
            back.extend_from_slice(c);
            true
        })
        .unwrap();
    assert!(found && back == content && sizes == [1 << 20, 1 << 19], "{sizes:?}");
}

fn an_attachments_content_is_written_only_by_attach_and_never_changes(backend: Backend) {
    use crmkit_core::model::{Attachment, ContentHash, EntityRef};
    let fx = Fixture::on(backend);
    let p = fx.partner("Альфа", PartnerRole::Client);
    let owner = EntityRef { kind: EntityKind::Partner, id: p.id.raw() };
    let a = fx.store.transact(None, |tx| tx.attach(owner, "КП.txt", "text/plain", b"first")).unwrap();
    // A record pointing at content nobody stored is refused.
    let mut forged = a.clone();
    forged.content = ContentHash::of(b"never stored");
    let err = fx.refused(None, |tx| tx.create::<Attachment>(forged.clone()));
    assert!(err.to_string().contains("created by attach"), "{err}");
    // The content and size of an attachment do not change; its name may.
    let mut changed = a.clone();
    changed.content = ContentHash::of(b"second");
    changed.size = 6;
    let err = fx.refused(None, |tx| tx.update(changed.clone()));
    assert!(err.to_string().contains("attachment.content"), "{err}");
    let mut renamed = a.clone();
    renamed.name = "Коммерческое предложение.txt".into();
    let renamed = fx.store.transact(None, |tx| tx.update(renamed)).unwrap();
    assert_eq!(renamed.content, a.content);
    assert_eq!(fx.store.verify_attachments().unwrap(), Vec::<String>::new());
    fx.store.transact(None, |tx| tx.delete::<Attachment>(renamed.id, renamed.version)).unwrap();
    assert_eq!(fx.store.verify_attachments().unwrap(), Vec::<String>::new(), "the content went with it");
}
