//! Golden databases: a small file written by each schema version is committed under
//! `tests/data/` and must open, unchanged in meaning, with every later version.
//!
//! `CRMKIT_BLESS=1 cargo test -p crmkit --test all golden` writes the file of the current schema
//! version (only do that when the schema version changes; never rewrite an old one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crmkit_core::config::Settings;
use crmkit_core::model::{
    Attachment, ContactLink, ContactPerson, Counterparty, CustomValue, Deal, Document, Entity, EntityKind, EntityRef,
    Interaction, Participant, ParticipantLink, Partner, PartnerLink, Task, TaskStatus, User,
};
use crmkit_core::process::{check_history, Engine, Outcome};
use crmkit_core::store::{Reader, Store, SCHEMA_VERSION};
use crmkit_core::time::ManualClock;
use serde_json::{json, Value};

use crate::common::T0;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(name)
}

fn all<E: Entity>(r: &impl Reader) -> Value {
    serde_json::to_value(r.list::<E>(None, usize::MAX).unwrap()).unwrap()
}

/// The histories of every entity of a kind, without audit ids (a creation has none of its
/// own since schema 2).
fn histories<E: Entity>(r: &impl Reader, out: &mut Vec<Value>) {
    for e in r.list::<E>(None, usize::MAX).unwrap() {
        for entry in r.audit_of::<E>(e.id()).unwrap() {
            out.push(serde_json::to_value(entry).unwrap());
        }
    }
}

/// Audit entries in a comparable form: sorted by time, entity and version, ids dropped.
fn normalize_audit(entries: &mut [Value]) {
    for e in entries.iter_mut() {
        e.as_object_mut().unwrap().remove("id");
    }
    entries.sort_by_key(|e| (e["at"].to_string(), e["entity"]["id"].to_string(), e["version"].as_u64()));
}

/// Whether `actual` holds everything `expected` says: objects may have gained fields
/// (added in later schema versions), everything else is equal.
fn holds(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let got = a.get(k).unwrap_or_else(|| panic!("{path}.{k} is missing"));
                holds(v, got, &format!("{path}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: different lengths");
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                holds(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path} differs"),
    }
}

/// Everything the file holds, as the API would show it.
fn contents(store: &Store) -> Value {
    let r = store.read().unwrap();
    let attachments: Vec<Attachment> = r.list(None, usize::MAX).unwrap();
    let blobs: Vec<String> =
        attachments.iter().map(|a| String::from_utf8(r.blob(&a.content).unwrap().unwrap()).unwrap()).collect();
    let audit = {
        let mut h = Vec::new();
        histories::<User>(&r, &mut h);
        histories::<Counterparty>(&r, &mut h);
        histories::<Partner>(&r, &mut h);
        histories::<PartnerLink>(&r, &mut h);
        histories::<ContactPerson>(&r, &mut h);
        histories::<ContactLink>(&r, &mut h);
        histories::<Deal>(&r, &mut h);
        histories::<Participant>(&r, &mut h);
        histories::<ParticipantLink>(&r, &mut h);
        histories::<Interaction>(&r, &mut h);
        histories::<Document>(&r, &mut h);
        histories::<Attachment>(&r, &mut h);
        histories::<Task>(&r, &mut h);
        normalize_audit(&mut h);
        h
    };
    let mut stage_history = Vec::new();
    r.for_each_stage_change(|c| {
        stage_history.push(serde_json::to_value(c).unwrap());
        true
    })
    .unwrap();
    json!({
        "users": all::<User>(&r),
        "counterparties": all::<Counterparty>(&r),
        "partners": all::<Partner>(&r),
        "partner_links": all::<PartnerLink>(&r),
        "contacts": all::<ContactPerson>(&r),
        "contact_links": all::<ContactLink>(&r),
        "deals": all::<Deal>(&r),
        "participants": all::<Participant>(&r),
        "participant_links": all::<ParticipantLink>(&r),
        "interactions": all::<Interaction>(&r),
        "documents": all::<Document>(&r),
        "attachments": attachments,
        "blobs": blobs,
        "audit": audit,
        "tasks": all::<Task>(&r),
        "stage_history": stage_history,
        "loyalty_programs": all::<crmkit_core::model::LoyaltyProgram>(&r),
        "loyalty_cards": all::<crmkit_core::model::LoyaltyCard>(&r),
        "loyalty_entries": all::<crmkit_core::model::LoyaltyEntry>(&r),
        "claims": all::<crmkit_core::model::Claim>(&r),
    })
}

/// Writes the golden file of the current schema version: the test company, since schema 4
/// deals of every process mode moved through the process engine, with tasks, since schema 5
/// an external key on the partner, and since schema 6 a multi-valued custom field.
fn bless(version: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("golden.redb");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Store::create(&path, Arc::new(Settings::builtin()), clock.clone()).unwrap();
    let fx_company = {
        // Reuse the test company on this store.
        let fx = crate::common::Fixture {
            dir: tempfile::tempdir().unwrap(),
            clock: clock.clone(),
            store,
            backend: crate::common::Backend::Redb,
        };
        let c = crate::store::company(&fx);
        let engine = Engine::without_hooks();
        let manager = c.manager.id;
        clock.advance(3_600_000);
        fx.store
            .transact(Some(manager), |tx| {
                tx.attach(
                    EntityRef { kind: EntityKind::Deal, id: c.deal.id.0 },
                    "КП.txt",
                    "text/plain",
                    "Коммерческое предложение".as_bytes(),
                )?;
                tx.set_external_key(EntityKind::Partner, "1C-000123", c.partner.id.0)?;
                let d = engine.move_deal(tx, c.deal.id, c.deal.version, "needs_analysis", None)?;
                let mut d = engine.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
                d.probability = Some(40);
                tx.update(d)
            })
            .unwrap();
        // A tender: its first task done moves it on and opens the next stage's task.
        let tender = fx
            .store
            .transact(Some(manager), |tx| {
                let mut d = crate::common::new_deal(c.partner.id, manager, 2_000_000);
                d.kind = "tender".into();
                d.stage = None;
                d.source = Some("tender".into());
                d.custom.insert("tender_number".into(), CustomValue::String("0373200001226000042".into()));
                if version >= 6 {
                    let set = vec!["pumps".to_string(), "automation".to_string()];
                    d.custom.insert("equipment".into(), CustomValue::EnumSet(set));
                }
                engine.create_deal(tx, d)
            })
            .unwrap();
        clock.advance(86_400_000);
        fx.store
            .transact(Some(manager), |tx| {
                let task = tx.tasks_of_deal(tender.id)?.remove(0);
                engine.complete_task(tx, task.id, task.version)
            })
            .unwrap();
        // A repeat sale put on hold, then lost to the competitor; a project won.
        let competitor = c.participants.1.partner.expect("a partner participant");
        let (repeat, project) = fx
            .store
            .transact(Some(manager), |tx| {
                let mut d = crate::common::new_deal(c.partner.id, manager, 80_000);
                d.kind = "repeat_sale".into();
                d.stage = None;
                let d = engine.create_deal(tx, d)?;
                let d = engine.hold(tx, d.id, d.version, "the client is moving offices")?;
                let mut p = crate::common::new_deal(c.partner.id, manager, 9_000_000);
                p.kind = "project".into();
                p.stage = None;
                p.title = "Модернизация цеха".into();
                Ok((d, engine.create_deal(tx, p)?))
            })
            .unwrap();
        clock.advance(7_200_000);
        fx.store
            .transact(Some(manager), |tx| {
                let lost = Outcome::Lost {
                    reason: "price".into(),
                    competitor: Some(competitor),
                    comment: "ПромЛидер дешевле на 12%".into(),
                };
                engine.close(tx, repeat.id, repeat.version, lost)?;
                engine.close(tx, project.id, project.version, Outcome::Won { comment: String::new() })
            })
            .unwrap();
        if version >= 16 {
            // A bonus card: a paid invoice earns on it by the program's rate, some is spent.
            use crmkit_core::model::{DocumentKind, DocumentState, LoyaltyCard, LoyaltyProgram};
            use rust_decimal::Decimal;
            clock.advance(3_600_000);
            fx.store
                .transact(Some(manager), |tx| {
                    let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
                    let mut program = LoyaltyProgram::bonus("Клуб", "RUB".parse().unwrap(), Decimal::ONE, day);
                    program.accrual_pct = Some(Decimal::new(3, 0));
                    program.points_expire_days = Some(365);
                    let program = tx.create(program)?;
                    let mut card = LoyaltyCard::new("7700000001", program.id, c.partner.id, day);
                    card.barcode = Some("2000000000015".into());
                    let card = tx.create(card)?;
                    let mut pay = Document::new(
                        DocumentKind::Payment,
                        "ПП-77",
                        T0.date(),
                        c.partner.id,
                        crmkit_core::values::Money::new(Decimal::new(1_234_500, 2), "RUB".parse().unwrap()),
                    );
                    pay.state = DocumentState::Completed;
                    pay.card = Some(card.id);
                    engine.create(tx, pay)?;
                    engine.redeem(tx, card.id, Decimal::new(100, 0), None, "оплата баллами")
                })
                .unwrap();
        }
        if version >= 17 {
            // A claim about the deal, taken up, partly satisfied and closed; its review task.
            use crmkit_core::model::{Claim, Decision};
            use rust_decimal::Decimal;
            clock.advance(3_600_000);
            fx.store
                .transact(Some(manager), |tx| {
                    let mut claim = Claim::new(
                        c.partner.id,
                        "quality",
                        "damaged",
                        "Повреждена упаковка двух серверов",
                        manager,
                        Some(T0.date()),
                        None,
                    );
                    claim.deal = Some(project.id);
                    claim.claimed =
                        Some(crmkit_core::values::Money::new(Decimal::new(24_000_000, 2), "RUB".parse().unwrap()));
                    let claim = engine.create(tx, claim)?;
                    let claim = engine.review_claim(tx, claim.id, claim.version, "фото получены")?;
                    let mut task = Task::new("Проверить претензию", manager);
                    task.claim = Some(claim.id);
                    engine.create(tx, task)?;
                    let money = crmkit_core::values::Money::new(Decimal::new(12_000_000, 2), "RUB".parse().unwrap());
                    let claim = engine.decide_claim(
                        tx,
                        claim.id,
                        claim.version,
                        Decision::PartlySatisfied,
                        Some(money),
                        "Заменим корпуса, доставку вернём",
                    )?;
                    engine.close_claim(tx, claim.id, claim.version, "")
                })
                .unwrap();
        }
        fx
    };
    let expected = contents(&fx_company.store);
    drop(fx_company);
    std::fs::copy(&path, data(&format!("golden-v{version}.redb"))).unwrap();
    std::fs::write(data(&format!("golden-v{version}.json")), serde_json::to_string_pretty(&expected).unwrap() + "\n")
        .unwrap();
}

#[test]
fn golden_files_of_every_schema_version_open_and_read_back() {
    if std::env::var_os("CRMKIT_BLESS").is_some() {
        bless(SCHEMA_VERSION);
    }
    for version in 1..=SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("golden.redb");
        std::fs::copy(data(&format!("golden-v{version}.redb")), &copy)
            .unwrap_or_else(|e| panic!("golden file for schema version {version} is missing: {e}"));
        let store = Store::open(&copy, Arc::new(Settings::builtin()), Arc::new(ManualClock::new(T0))).unwrap();
        assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION, "not migrated");
        assert_eq!(store.verify_indexes().unwrap(), Vec::<String>::new(), "indexes after migrating v{version}");
        // The funnel totals (schema 8) and their rollup lines (schema 10) are built from the
        // deals and their histories.
        assert_eq!(store.verify_funnel_totals().unwrap(), Vec::<String>::new(), "funnel totals of v{version}");
        // The scan rows (schema 9) too: one per deal.
        assert_eq!(store.verify_scan_rows().unwrap(), Vec::<String>::new(), "scan rows of v{version}");
        // And the document rows (schema 11): one per document, every one of them.
        assert_eq!(store.verify_document_rows().unwrap(), Vec::<String>::new(), "document rows of v{version}");
        crate::document_rows::assert_rows_match(&store.read().unwrap());
        // And the interaction and task rows (schema 12), written in batches by the migration.
        assert_eq!(store.verify_interaction_rows().unwrap(), Vec::<String>::new(), "interaction rows of v{version}");
        assert_eq!(store.verify_task_rows().unwrap(), Vec::<String>::new(), "task rows of v{version}");
        crate::interaction_rows::assert_rows_match(&store.read().unwrap());
        // And the revenue rows (schema 13): one per completed shipment.
        assert_eq!(store.verify_shipment_rows().unwrap(), Vec::<String>::new(), "shipment rows of v{version}");
        // And the deal heads (schema 14), derived from the scan rows in batches; the heads
        // are compared with the records field by field below too.
        assert_eq!(store.verify_deal_heads().unwrap(), Vec::<String>::new(), "deal heads of v{version}");
        crate::scan_rows::assert_rows_match(&store.read().unwrap());
        // And the deals' documents (schema 15), written deal by deal in batches.
        assert_eq!(store.verify_deal_documents().unwrap(), Vec::<String>::new(), "deals' documents of v{version}");
        crate::deal_documents::assert_deal_documents_match(&store.read().unwrap());
        // And the loyalty ledgers (schema 16): each card's sums are its entries'.
        assert_eq!(crmkit_core::process::loyalty::verify(&store.read().unwrap()).unwrap(), Vec::<String>::new());
        assert!(
            store.read().unwrap().count(EntityKind::Interaction).unwrap() > 0,
            "v{version} has interactions: the rows are checked against some"
        );
        assert!(
            version < 3 || !store.read().unwrap().funnel_totals(None).unwrap().is_empty(),
            "v{version} has deals: it has funnel totals"
        );
        assert!(
            version < 3 || !store.read().unwrap().funnel_rollup(None).unwrap().is_empty(),
            "v{version} has deals: it has rollup lines"
        );
        let mut expected: Value =
            serde_json::from_str(&std::fs::read_to_string(data(&format!("golden-v{version}.json"))).unwrap()).unwrap();
        normalize_audit(expected["audit"].as_array_mut().unwrap());
        holds(&expected, &contents(&store), &format!("golden-v{version}"));

        // Every deal has a stage history that ends where the deal is (reconstructed by the
        // migration for files older than schema 4).
        let r = store.read().unwrap();
        for d in r.list::<Deal>(None, usize::MAX).unwrap() {
            let history = r.stage_history(d.id).unwrap();
            check_history(&d, &history, &Settings::builtin())
                .unwrap_or_else(|e| panic!("golden-v{version}: {e}: {history:#?}"));
            assert_eq!(history.iter().all(|s| s.imported), version < 4, "golden-v{version}: {history:#?}");
        }
        if version >= 4 {
            let tasks = r.list::<Task>(None, usize::MAX).unwrap();
            let has = |status| tasks.iter().any(|t: &Task| t.status == status);
            assert!(has(TaskStatus::Done) && has(TaskStatus::Open), "golden-v{version}: {tasks:#?}");
        }
        if version >= 5 {
            let partner = r.external_key(EntityKind::Partner, "1C-000123").unwrap();
            let deals: Vec<Deal> = r.list(None, 1).unwrap();
            assert_eq!(partner, Some(deals[0].partner.0), "golden-v{version}: the partner's external key");
        }
        drop(r);

        // And it stays writable: a new deal gets an id after every stored one.
        let deals: Vec<Deal> = store.read().unwrap().list(None, 10).unwrap();
        let mut d = crate::common::new_deal(deals[0].partner, deals[0].manager, 10);
        d.title = "Новая сделка".into();
        let new = store.transact(None, |tx| tx.create(d)).unwrap();
        assert!(new.id > deals[0].id);
        drop(store);
        // Reopening the migrated file changes nothing more.
        let store = Store::open(&copy, Arc::new(Settings::builtin()), Arc::new(ManualClock::new(T0))).unwrap();
        assert_eq!(store.read().unwrap().get::<Deal>(new.id).unwrap().unwrap().title, "Новая сделка");
    }
}
