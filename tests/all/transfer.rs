//! Bulk import and export: round trips, re-runs, and every kind of bad input the import
//! meets, each leaving the database as the chosen policy says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crmkit_core::config::Settings;
use crmkit_core::model::{CustomValue, Deal, EntityKind, Interaction, Partner, User};
use crmkit_core::process::{Answer, Engine, HookInput, HookPoint, Hooks, Subject};
use crmkit_core::store::{Reader, Store};
use crmkit_core::time::SystemClock;
use crmkit_core::transfer::{self, Format, ImportOptions, Importer, Mapping, Report};
use crmkit_core::Installation;
use crmkit_demo as demo;

use crate::common::{dump, native_engine, Fixture};

fn import_with(
    store: &Store,
    engine: &Engine,
    kind: EntityKind,
    format: Format,
    text: &[u8],
    f: impl FnOnce(&mut ImportOptions),
) -> Report {
    let mut opts = ImportOptions::new(kind, format);
    f(&mut opts);
    Importer::new(store, engine, None, &opts).unwrap().run(text, &mut |_| {}).unwrap()
}

fn import(store: &Store, kind: EntityKind, text: &str) -> Report {
    import_with(store, &Engine::without_hooks(), kind, Format::Csv, text.as_bytes(), |_| {})
}

fn export(store: &Store, kind: EntityKind, format: Format) -> String {
    let mut out = Vec::new();
    transfer::export(&store.read().unwrap(), kind, format, b',', &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The kinds in the order a migration imports them (each refers only to earlier ones).
const ORDER: [EntityKind; 9] = transfer::columns::KINDS;

/// A fresh installation with the demo's config and users (users are not imported).
fn fresh_like(source: &Installation) -> (tempfile::TempDir, Installation) {
    let dir = tempfile::tempdir().unwrap();
    let inst = Installation::init(&dir.path().join("fresh"), Some(demo::DEMO_CONFIG), Arc::new(SystemClock)).unwrap();
    let mut users = Vec::new();
    source
        .store()
        .read()
        .unwrap()
        .for_each::<User>(|u| {
            users.push(u);
            true
        })
        .unwrap();
    inst.store()
        .transact(None, |tx| {
            for u in users {
                if tx.user_by_login(&u.login)?.is_none() {
                    tx.create(u)?;
                }
            }
            Ok(())
        })
        .unwrap();
    (dir, inst)
}

#[test]
fn export_import_into_a_fresh_installation_and_export_again_gives_the_same_files() {
    let (_d, source, _) = crate::demo::make(150, 11);
    for format in [Format::Csv, Format::Jsonl] {
        let (_fd, fresh) = fresh_like(&source);
        for kind in ORDER {
            let first = export(source.store(), kind, format);
            let rows = first.lines().count() as u64 - u64::from(format == Format::Csv);
            assert!(rows > 0, "{kind}: the demo has some");
            let r = import_with(fresh.store(), &Engine::without_hooks(), kind, format, first.as_bytes(), |_| {});
            assert_eq!((r.failed, r.created), (0, rows), "{kind} {format:?}: {:?}", r.errors.first());
            let second = export(fresh.store(), kind, format);
            assert_eq!(first, second, "{kind} {format:?}: the second export differs");
        }
        // The histories came along: every deal has as many steps as in the source.
        let (a, b) = (source.store().stats().unwrap(), fresh.store().stats().unwrap());
        assert_eq!(a.stage_history_steps, b.stage_history_steps);
        assert!(fresh.store().verify_histories().unwrap().is_empty());
        assert!(fresh.store().verify_indexes().unwrap().is_empty());
        assert_eq!(fresh.store().verify_funnel_totals().unwrap(), Vec::<String>::new());
        assert_eq!(fresh.store().verify_scan_rows().unwrap(), Vec::<String>::new());
        assert_eq!(fresh.store().verify_document_rows().unwrap(), Vec::<String>::new());
        assert_eq!(fresh.store().verify_interaction_rows().unwrap(), Vec::<String>::new());
        assert_eq!(fresh.store().verify_task_rows().unwrap(), Vec::<String>::new());
        crate::interaction_rows::assert_rows_match(&fresh.store().read().unwrap());
        // Running the same files again changes nothing at all.
        let before = dump(fresh.store());
        for kind in ORDER {
            let text = export(fresh.store(), kind, format);
            let r = import_with(fresh.store(), &Engine::without_hooks(), kind, format, text.as_bytes(), |_| {});
            assert_eq!((r.created, r.updated, r.failed), (0, 0, 0), "{kind}: {:?}", r.errors.first());
        }
        assert_eq!(before, dump(fresh.store()), "a re-run wrote something");
    }
}

/// A store with two partners brought in by key, `P1` and `P2`.
fn with_partners() -> Fixture {
    let fx = Fixture::new();
    let r = import(&fx.store, EntityKind::Partner, "key,name,roles\nP1,Альфа,client\nP2,Бета,client; supplier\n");
    assert_eq!((r.created, r.failed), (2, 0), "{:?}", r.errors);
    fx
}

fn interactions(n: usize, bad: impl Fn(usize) -> Option<String>) -> String {
    let mut s = String::from("key,kind,at,subject,partner\n");
    for i in 1..=n {
        match bad(i) {
            Some(line) => s.push_str(&line),
            None => s.push_str(&format!("I{i},call,2026-02-01T10:00:00Z,Звонок {i},P1")),
        }
        s.push('\n');
    }
    s
}

fn count<E: crmkit_core::model::Entity>(store: &Store) -> usize {
    let mut n = 0;
    store
        .read()
        .unwrap()
        .for_each::<E>(|_| {
            n += 1;
            true
        })
        .unwrap();
    n
}

#[test]
fn an_edited_export_updates_in_place_and_a_rerun_of_the_source_file_never_duplicates() {
    let fx = with_partners();
    let r = import(&fx.store, EntityKind::Partner, "key,name,roles\nP1,Альфа,client\nP2,Бета,client; supplier\n");
    assert_eq!((r.created, r.updated, r.unchanged), (0, 0, 2));
    let text = export(&fx.store, EntityKind::Partner, Format::Csv);
    let edited = text.replace("Бета", "Бета Плюс");
    let r = import(&fx.store, EntityKind::Partner, &edited);
    assert_eq!((r.created, r.updated, r.unchanged), (0, 1, 1), "{:?}", r.errors);
    assert_eq!(count::<Partner>(&fx.store), 2);
    let p2 = fx.store.read().unwrap().external_key(EntityKind::Partner, "P2").unwrap().unwrap();
    let p: Partner = fx.store.read().unwrap().load(crmkit_core::id::PartnerId(p2)).unwrap();
    assert_eq!(p.name, "Бета Плюс");
    assert_eq!(p.roles.len(), 2);
}

#[test]
fn a_missing_required_column_stops_before_any_row_and_writes_nothing() {
    let fx = with_partners();
    let before = dump(&fx.store);
    let r = import(&fx.store, EntityKind::Interaction, "key,kind,subject,partner\nI1,call,Звонок,P1\n");
    let stop = r.stopped.expect("refused");
    assert_eq!((stop.row, stop.line), (0, 1));
    assert!(stop.message.contains("required column(s) at"), "{}", stop.message);
    assert_eq!((r.rows, r.written), (0, false));
    assert_eq!(before, dump(&fx.store));
    // An unknown column is refused too, with the known ones listed; a mapping renames or
    // drops columns.
    let r = import(&fx.store, EntityKind::Partner, "key,name,roles,Регион\nP3,Гамма,client,Сибирь\n");
    let stop = r.stopped.expect("refused");
    assert_eq!(stop.field, "Регион");
    assert!(stop.message.contains("columns: key, name, roles"), "{}", stop.message);
    let mut mapping =
        Mapping::parse_toml("[columns]\n\"Код\" = \"key\"\n\"Наименование\" = \"name\"\n\"Регион\" = \"-\"\n").unwrap();
    mapping.insert("Роли", "roles");
    let r = import_with(
        &fx.store,
        &Engine::without_hooks(),
        EntityKind::Partner,
        Format::Csv,
        "Код;Наименование;Роли;Регион\nP3;Гамма;client;Сибирь\n".as_bytes(),
        |o| o.mapping = mapping,
    );
    assert_eq!((r.created, r.failed), (1, 0), "{:?}", r.stopped);
}

#[test]
fn a_wrong_type_in_row_5000_is_reported_there_and_skipped_while_the_rest_goes_in() {
    let fx = with_partners();
    let bad = |i: usize| (i == 5000).then(|| format!("I{i},call,вчера,Звонок,P1"));
    let text = interactions(6000, bad);
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.batch_rows = 1000
        });
    assert_eq!((r.rows, r.created, r.failed), (6000, 5999, 1));
    let e = &r.errors[0];
    assert_eq!((e.row, e.line, e.key.as_deref(), e.field.as_str()), (5000, 5001, Some("I5000"), "at"));
    assert!(e.message.contains("\"вчера\""), "{}", e.message);
    assert_eq!(count::<Interaction>(&fx.store), 5999);
    assert!(fx.store.read().unwrap().external_key(EntityKind::Interaction, "I5000").unwrap().is_none());
}

#[test]
fn an_atomic_import_with_one_bad_row_writes_nothing_and_a_dry_run_never_writes() {
    let fx = with_partners();
    let before = dump(&fx.store);
    let text = interactions(3000, |i| (i == 2999).then(|| format!("I{i},call,2026-02-01T10:00:00Z,Звонок,P404")));
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.atomic = true;
            o.batch_rows = 100;
        });
    assert_eq!((r.created, r.failed, r.written), (2999, 1, false));
    assert_eq!(before, dump(&fx.store), "an atomic import with a bad row wrote something");
    let text = interactions(500, |_| None);
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.dry_run = true
        });
    assert_eq!((r.created, r.failed, r.written), (500, 0, false));
    assert_eq!(before, dump(&fx.store), "a dry run wrote something");
}

#[test]
fn a_key_twice_in_one_file_is_refused_on_its_second_row() {
    let fx = with_partners();
    let text = interactions(5, |i| (i == 4).then(|| "I2,email,2026-02-01T10:00:00Z,Повтор,P1".to_string()));
    let r = import(&fx.store, EntityKind::Interaction, &text);
    assert_eq!((r.created, r.failed), (4, 1));
    let e = &r.errors[0];
    assert_eq!((e.row, e.field.as_str()), (4, "key"));
    assert!(e.message.contains("also the key of row 2"), "{}", e.message);
}

#[test]
fn broken_utf8_names_the_row_and_column() {
    let fx = with_partners();
    let mut text = interactions(3, |_| None).into_bytes();
    let needle = "Звонок 2".as_bytes();
    let at = text.windows(needle.len()).position(|w| w == needle).unwrap();
    text.splice(at..at + 2, [0xC7]); // "З" as Windows-1251 writes it
    let r = import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, &text, |_| {});
    assert_eq!((r.created, r.failed), (2, 1));
    let e = &r.errors[0];
    assert_eq!((e.row, e.field.as_str()), (2, "subject"));
    assert!(e.message.contains("not valid UTF-8"), "{}", e.message);
    // In JSONL the whole line is unreadable: the row is named, its neighbours go in.
    let mut lines =
        b"{\"key\":\"J1\",\"kind\":\"note\",\"at\":\"2026-02-01T10:00:00Z\",\"subject\":\"a\",\"partner\":\"P1\"}\n"
            .to_vec();
    lines.extend_from_slice(
        b"{\"key\":\"J2\",\"kind\":\"note\",\"at\":\"2026-02-01T10:00:00Z\",\"subject\":\"\xC3\",\"partner\":\"P1\"}\n",
    );
    let r = import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Jsonl, &lines, |_| {});
    assert_eq!((r.created, r.failed, r.errors[0].row), (1, 1, 2));
    assert!(r.errors[0].message.contains("UTF-8"), "{}", r.errors[0].message);
}

#[test]
fn an_unterminated_quote_stops_the_import_and_its_open_batch_is_not_written() {
    let fx = with_partners();
    let text = interactions(7, |i| (i == 6).then(|| "I6,call,2026-02-01T10:00:00Z,\"Звонок без конца,P1".to_string()));
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.batch_rows = 4
        });
    let stop = r.stopped.clone().expect("stopped");
    assert_eq!(stop.line, 7, "the line the quote opened on");
    assert!(stop.message.contains("unterminated quote"), "{}", stop.message);
    // Rows 1–4 were a committed batch; row 5 was in the batch the broken row ends.
    assert_eq!(count::<Interaction>(&fx.store), 4);
    // The report counts what was written, and the valid row the stop dropped.
    assert_eq!((r.created, r.discarded, r.written), (4, 1, true));
    assert!(fx.store.read().unwrap().external_key(EntityKind::Interaction, "I5").unwrap().is_none());
}

#[test]
fn a_reference_to_an_unknown_partner_names_the_key() {
    let fx = with_partners();
    let r = import(
        &fx.store,
        EntityKind::Interaction,
        "key,kind,at,subject,partner\nI1,call,2026-02-01T10:00:00Z,Звонок,P9\n",
    );
    let e = &r.errors[0];
    assert_eq!((e.row, e.field.as_str()), (1, "partner"));
    assert!(e.message.contains("no partner has the key \"P9\""), "{}", e.message);
    assert_eq!(count::<Interaction>(&fx.store), 0);
}

#[test]
fn a_row_whose_attachment_is_over_the_limit_is_skipped_whole_and_the_rest_of_its_batch_goes_in() {
    let mut settings = Settings::builtin();
    settings.attachment_max_bytes = 1024;
    let fx = Fixture::with_settings(settings);
    let r = import(&fx.store, EntityKind::Partner, "key,name,roles\nP1,Альфа,client\n");
    assert_eq!(r.created, 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), b"a short note").unwrap();
    std::fs::write(dir.path().join("big.pdf"), vec![7u8; 4096]).unwrap();
    let text = "key,kind,at,subject,partner,attachments\n\
                I1,email,2026-02-01T10:00:00Z,Письмо,P1,small.txt\n\
                I2,email,2026-02-01T11:00:00Z,Письмо с КП,P1,small.txt; big.pdf\n\
                I3,email,2026-02-01T12:00:00Z,Ответ,P1,\n";
    let base = dir.path().to_path_buf();
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.base_dir = Some(base.clone())
        });
    assert_eq!((r.created, r.failed), (2, 1), "{:?}", r.errors);
    let e = &r.errors[0];
    assert_eq!((e.row, e.field.as_str()), (2, "attachments"));
    assert!(e.message.contains("big.pdf") && e.message.contains("1024 bytes"), "{}", e.message);
    // Row 2 left nothing behind: no interaction, and its first attachment is not stored
    // twice — the one blob is row 1's.
    let stats = fx.store.stats().unwrap();
    assert_eq!(stats.entities[&EntityKind::Attachment], 1);
    assert_eq!(count::<Interaction>(&fx.store), 2);
    // Re-running attaches nothing again.
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.base_dir = Some(base)
        });
    assert_eq!((r.created, r.updated, r.unchanged, r.failed), (0, 0, 2, 1));
    assert_eq!(fx.store.stats().unwrap().entities[&EntityKind::Attachment], 1);
}

#[test]
fn every_row_passes_the_guards_and_a_refusal_names_the_handler() {
    let fx = with_partners();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut hooks = Hooks::new();
    let seen = calls.clone();
    hooks.register("no_spam", move |i: &HookInput<'_>| {
        seen.fetch_add(1, Ordering::Relaxed);
        let subject = match &i.after {
            Some(Subject::Interaction(it)) => it.subject.clone(),
            _ => String::new(),
        };
        Ok(if subject.contains("реклама") {
            Answer::Reject { message: "no advertising in the journal".into(), field: Some("subject".into()) }
        } else {
            Answer::Allow
        })
    });
    hooks.bind(HookPoint::EntityBeforeSave, "no_spam", &[]).unwrap();
    let engine = native_engine(hooks);
    let text = interactions(10, |i| (i == 7).then(|| "I7,email,2026-02-01T10:00:00Z,реклама,P1".to_string()));
    let r = import_with(&fx.store, &engine, EntityKind::Interaction, Format::Csv, text.as_bytes(), |_| {});
    assert_eq!((r.created, r.failed), (9, 1));
    assert_eq!(calls.load(Ordering::Relaxed), 10);
    let e = &r.errors[0];
    assert_eq!((e.row, e.field.as_str()), (7, "subject"));
    assert!(e.message.contains("no_spam") && e.message.contains("no advertising"), "{}", e.message);
}

#[test]
fn deals_come_with_their_history_and_a_file_cannot_rewrite_it() {
    let fx = with_partners();
    let manager = fx.user("m.ivanova");
    let _ = manager;
    let history = r#"[{"at":"2025-01-10T09:00:00Z","how":"create","stage":"qualification","status":"in_progress","by":"m.ivanova"},{"at":"2025-01-20T09:00:00Z","how":"manual","stage":"needs_analysis","status":"in_progress","by":"m.ivanova"},{"at":"2025-02-01T09:00:00Z","how":"won","stage":"needs_analysis","status":"won","by":"m.ivanova"}]"#;
    let quoted = history.replace('"', "\"\"");
    let text = format!(
        "key,title,kind,partner,manager,amount,currency,history\nD1,Поставка,b2b_sale,P1,m.ivanova,150000.00,RUB,\"{quoted}\"\nD2,Новая,b2b_sale,P1,m.ivanova,1000,RUB,\n"
    );
    let r = import(&fx.store, EntityKind::Deal, &text);
    assert_eq!((r.created, r.failed), (2, 0), "{:?}", r.errors);
    let snap = fx.store.read().unwrap();
    let d1 = crmkit_core::id::DealId(snap.external_key(EntityKind::Deal, "D1").unwrap().unwrap());
    let deal: Deal = snap.load(d1).unwrap();
    assert_eq!(deal.status.name(), "won");
    let steps = snap.stage_history(d1).unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s.imported));
    assert_eq!(steps[1].dwell_ms, Some(10 * 86_400_000));
    drop(snap);
    assert_eq!(fx.store.verify_funnel_totals().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_scan_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_document_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_interaction_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_task_rows().unwrap(), Vec::<String>::new());
    // The same file again: nothing changes. A changed history is refused.
    let r = import(&fx.store, EntityKind::Deal, &text);
    assert_eq!((r.unchanged, r.failed), (2, 0), "{:?}", r.errors);
    let before = dump(&fx.store);
    let r = import(&fx.store, EntityKind::Deal, &text.replace("2025-02-01", "2025-02-03"));
    assert_eq!((r.failed, r.errors[0].field.as_str()), (1, "history"));
    assert!(r.errors[0].message.contains("only appended to"), "{}", r.errors[0].message);
    // A deal brought in won without its history is refused.
    let r = import(
        &fx.store,
        EntityKind::Deal,
        "key,title,kind,partner,manager,amount,currency,status\nD3,Старая,b2b_sale,P1,m.ivanova,10,RUB,won\n",
    );
    assert_eq!((r.failed, r.errors[0].field.as_str()), (1, "history"));
    assert_eq!(before, dump(&fx.store));
}

#[test]
fn a_merge_leaves_the_duplicate_s_key_with_the_survivor() {
    let fx = with_partners();
    let snap = fx.store.read().unwrap();
    let (p1, p2) = (
        crmkit_core::id::PartnerId(snap.external_key(EntityKind::Partner, "P1").unwrap().unwrap()),
        crmkit_core::id::PartnerId(snap.external_key(EntityKind::Partner, "P2").unwrap().unwrap()),
    );
    drop(snap);
    fx.store.transact(None, |tx| crmkit_core::merge::merge_partners(tx, p1, p2)).unwrap();
    assert_eq!(fx.store.verify_funnel_totals().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_scan_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_document_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_interaction_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_task_rows().unwrap(), Vec::<String>::new());
    let snap = fx.store.read().unwrap();
    assert_eq!(snap.external_key(EntityKind::Partner, "P2").unwrap(), Some(p1.0));
    assert_eq!(snap.external_keys_of(EntityKind::Partner, p1.0).unwrap(), vec!["P1".to_string(), "P2".to_string()]);
    drop(snap);
    let r = import(&fx.store, EntityKind::Partner, "key,name,roles\nP2,Бета,client\n");
    assert_eq!((r.created, r.updated), (0, 1));
    assert_eq!(count::<Partner>(&fx.store), 1);
}

#[test]
fn a_key_that_cannot_be_a_key_is_refused_and_its_row_leaves_nothing() {
    let fx = with_partners();
    let long = "K".repeat(201);
    let text = format!("key,kind,at,subject,partner\n{long},call,2026-02-01T10:00:00Z,Звонок,P1\nOK1,call,2026-02-01T10:00:00Z,Звонок,P1\n");
    let r = import(&fx.store, EntityKind::Interaction, &text);
    assert_eq!((r.created, r.failed), (1, 1));
    assert_eq!((r.errors[0].row, r.errors[0].field.as_str()), (1, "key"));
    assert!(r.errors[0].message.contains("longer than 200"), "{}", r.errors[0].message);
    assert_eq!(count::<Interaction>(&fx.store), 1);
}

#[test]
fn a_multi_valued_field_imports_from_a_list_cell_exports_the_same_and_refuses_a_value_twice() {
    let fx = with_partners();
    let deals = |rows: &str| format!("key,title,kind,partner,manager,amount,currency,custom.equipment\n{rows}");
    fx.user("m.ivanova");
    let text = deals("D1,Насосы,b2b_sale,P1,m.ivanova,1000,RUB,pumps; automation\nD2,Без оборудования,b2b_sale,P1,m.ivanova,1000,RUB,\n");
    let r = import(&fx.store, EntityKind::Deal, &text);
    assert_eq!((r.created, r.failed), (2, 0), "{:?}", r.errors);
    let snap = fx.store.read().unwrap();
    let d1: Deal =
        snap.load(crmkit_core::id::DealId(snap.external_key(EntityKind::Deal, "D1").unwrap().unwrap())).unwrap();
    let d2: Deal =
        snap.load(crmkit_core::id::DealId(snap.external_key(EntityKind::Deal, "D2").unwrap().unwrap())).unwrap();
    drop(snap);
    let set = |v: &[&str]| CustomValue::EnumSet(v.iter().map(|s| s.to_string()).collect());
    assert_eq!(d1.custom["equipment"], set(&["pumps", "automation"]));
    assert!(!d2.custom.contains_key("equipment"));

    // Exported `;`-separated in CSV and as an array in JSON lines; both read back unchanged.
    let csv = export(&fx.store, EntityKind::Deal, Format::Csv);
    assert!(csv.lines().any(|l| l.ends_with(",pumps; automation")), "{csv}");
    let jsonl = export(&fx.store, EntityKind::Deal, Format::Jsonl);
    assert!(jsonl.contains(r#""custom.equipment":["pumps","automation"]"#), "{jsonl}");
    let r = import(&fx.store, EntityKind::Deal, &csv);
    assert_eq!((r.unchanged, r.failed), (2, 0), "{:?}", r.errors);
    let r = import_with(&fx.store, &Engine::without_hooks(), EntityKind::Deal, Format::Jsonl, jsonl.as_bytes(), |_| {});
    assert_eq!((r.unchanged, r.failed), (2, 0), "{:?}", r.errors);

    // A value twice or one not declared: the row is refused, naming the field; nothing is written.
    let before = dump(&fx.store);
    let r = import(&fx.store, EntityKind::Deal, &deals("D3,Дубль,b2b_sale,P1,m.ivanova,1000,RUB,pumps; valves; pumps\nD4,Лодки,b2b_sale,P1,m.ivanova,1000,RUB,boats\n"));
    assert_eq!((r.created, r.failed), (0, 2), "{:?}", r.errors);
    assert_eq!(r.errors[0].field, "custom.equipment");
    assert!(r.errors[0].message.contains("\"pumps\" twice"), "{}", r.errors[0].message);
    assert_eq!(r.errors[1].field, "custom.equipment");
    assert!(r.errors[1].message.contains("\"boats\" is not one of the allowed values"), "{}", r.errors[1].message);
    assert_eq!(before, dump(&fx.store));
}

#[test]
fn imported_e_mails_and_ibans_are_checked_as_the_api_checks_them() {
    let fx = with_partners();
    let r = import(
        &fx.store,
        EntityKind::Contact,
        "key,partner,name,emails\nC1,P1,Петров,info@пример.рф; Sales@Müller.de\n",
    );
    assert_eq!((r.created, r.failed), (1, 0), "{:?}", r.errors);
    let csv = export(&fx.store, EntityKind::Contact, Format::Csv);
    assert!(csv.contains("info@xn--e1afmkfd.xn--p1ai; Sales@xn--mller-kva.de"), "{csv}");

    let before = dump(&fx.store);
    let r = import(&fx.store, EntityKind::Contact, "key,partner,name,emails\nC2,P1,Сидоров,info@xn--zz.рф\n");
    assert_eq!((r.created, r.failed), (0, 1));
    assert_eq!(r.errors[0].field, "emails[0]");
    assert!(r.errors[0].message.contains("not a valid internationalized domain name"), "{}", r.errors[0].message);
    let account = |iban: &str| {
        let json = format!(r#"[{{"bank":"Commerzbank","account":"{iban}","currency":"EUR"}}]"#).replace('"', "\"\"");
        format!("key,kind,name,country,bank_accounts\nK1,legal_entity,Muster GmbH,DE,\"{json}\"\n")
    };
    let r = import(&fx.store, EntityKind::Counterparty, &account("DE5137040044053201300"));
    assert_eq!((r.created, r.failed), (0, 1));
    assert_eq!(r.errors[0].field, "bank_accounts[0].account");
    assert!(r.errors[0].message.contains("length and layout of a DE IBAN"), "{}", r.errors[0].message);
    assert_eq!(before, dump(&fx.store));
    let r = import(&fx.store, EntityKind::Counterparty, &account("DE89370400440532013000"));
    assert_eq!((r.created, r.failed), (1, 0), "{:?}", r.errors);
}

#[test]
fn imported_files_get_the_mime_type_crmkit_attach_gives_them() {
    let fx = with_partners();
    let dir = tempfile::tempdir().unwrap();
    let names = ["scan.JPG", "offer.odt", "letter.eml", "photo.webp", "notes"];
    for n in names {
        std::fs::write(dir.path().join(n), n.as_bytes()).unwrap();
    }
    let text = format!(
        "key,kind,at,subject,partner,attachments\nI1,email,2026-02-01T10:00:00Z,Письмо,P1,{}\n",
        names.join("; ")
    );
    let base = dir.path().to_path_buf();
    let r =
        import_with(&fx.store, &Engine::without_hooks(), EntityKind::Interaction, Format::Csv, text.as_bytes(), |o| {
            o.base_dir = Some(base)
        });
    assert_eq!((r.created, r.failed), (1, 0), "{:?}", r.errors);
    let attachments: Vec<crmkit_core::model::Attachment> = fx.store.read().unwrap().list(None, 100).unwrap();
    assert_eq!(attachments.len(), names.len());
    for a in attachments {
        assert_eq!(a.mime, crmkit_core::model::mime_of_name(&a.name), "{}", a.name);
    }
    let mime = |n: &str| crmkit_core::model::mime_of_name(n);
    assert_eq!(
        [mime("scan.JPG"), mime("offer.odt"), mime("letter.eml"), mime("photo.webp"), mime("notes")],
        [
            "image/jpeg",
            "application/vnd.oasis.opendocument.text",
            "message/rfc822",
            "image/webp",
            "application/octet-stream"
        ]
    );
}
