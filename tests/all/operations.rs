//! Running the database as an operator meets it: a server killed with SIGKILL leaves a file
//! that reopens (at once with quick-repair) and checks clean, and a bulk import lets other
//! writes in between its batches instead of holding the one writer to its end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crmkit_core::config::Settings;
use crmkit_core::hooks::{Answer, HookInput, HookPoint, Hooks, Subject};
use crmkit_core::id::TypedId as _;
use crmkit_core::model::{EntityKind, Interaction, Partner, PartnerRole, Role, User};
use crmkit_core::store::redb::{RedbBackend, RedbOptions};
use crmkit_core::store::Reader;
use crmkit_core::transfer::{Format, ImportOptions, Importer};

use crate::api::Served;
use crate::cli::{ok, Site};
use crate::common::{native_engine, Backend, Fixture};

#[test]
fn quick_repair_is_on_by_default_and_a_setting_of_the_database() {
    let text = crmkit_core::config::DEFAULT_CONFIG;
    assert!(Settings::builtin().quick_repair);
    let off = Settings::parse(&text.replace("quick_repair = true", "quick_repair = false"), "t.toml".as_ref());
    assert!(!off.unwrap().quick_repair);
    let Err(e) = Settings::parse(&text.replace("quick_repair = true", "quick_repair = \"yes\""), "t.toml".as_ref())
    else {
        panic!("a string is not a boolean");
    };
    assert!(e.to_string().contains("quick_repair"), "{e}");
}

/// A server writing, killed with SIGKILL: with quick-repair its file opens without the
/// full repair, without it the file is read whole; either way every acknowledged write is
/// there and `crmkit check` finds the database consistent.
#[test]
fn a_killed_server_s_database_reopens_and_checks_clean() {
    for quick in [false, true] {
        let site = Site::new(|c| c.replace("quick_repair = true", &format!("quick_repair = {quick}")));
        let partner = site.partner("ООО «Север»", PartnerRole::Client);
        let token = ok(&["token", "create", site.dir(), "--user", "admin", "--role", "admin"]).trim().to_string();
        let mut server = Served::start(&site);
        for n in 0..20 {
            let body = format!(
                r#"{{"kind":"call","direction":"outgoing","at":"2026-03-02T10:00:00Z","subject":"Звонок {n}","partner":"{partner}"}}"#
            );
            let a = server.exchange("POST", "/api/v1/interactions", Some(&token), &[], Some(body.as_bytes()));
            assert_eq!(a.status, 201, "quick_repair = {quick}: {:?}", a.json());
        }
        server.kill();
        let path = site.dir.join("data/crmkit.redb");
        let backend = RedbBackend::open(&path, RedbOptions { cache_bytes: 16 << 20, quick_repair: quick }).unwrap();
        assert_eq!(
            backend.repaired().is_some(),
            !quick,
            "quick_repair = {quick}: the file is repaired by a full walk only without quick-repair"
        );
        drop(backend);
        let calls = site.with(|inst| {
            let r = inst.store().read().unwrap();
            r.list::<Interaction>(None, usize::MAX)
                .unwrap()
                .into_iter()
                .filter(|i| i.subject.starts_with("Звонок "))
                .count()
        });
        assert_eq!(calls, 20, "quick_repair = {quick}: every acknowledged write survives the kill");
        let report = ok(&["check", site.dir()]);
        assert!(report.contains("consistent"), "quick_repair = {quick}: {report}");
    }
}

/// The time bound ends a batch only for a writer that waits: alone, an import writes whole
/// batches of its row count however long they take (each row here takes over 1 ms against a
/// bound of 1 ms), so the file commits as few times as its rows ask.
#[test]
fn an_import_alone_keeps_its_batches_whole() {
    const ROWS: u64 = 120;
    let fx = Fixture::on(Backend::Redb);
    let store = &fx.store;
    store
        .transact(None, |tx| {
            let p = tx.create(Partner::new("P0", PartnerRole::Client))?;
            tx.set_external_key(EntityKind::Partner, "P0", p.id.raw())
        })
        .unwrap();
    let mut hooks = Hooks::new();
    hooks.register("slow", |_: &HookInput<'_>| {
        std::thread::sleep(Duration::from_millis(1));
        Ok(Answer::Allow)
    });
    hooks.bind(HookPoint::EntityBeforeSave, "slow", &[]).unwrap();
    let engine = native_engine(hooks);
    let mut text = String::from("key,kind,at,subject,partner\n");
    for n in 1..=ROWS {
        text.push_str(&format!("K{n},note,2026-03-01T10:00:00Z,row {n},P0\n"));
    }
    let mut opts = ImportOptions::new(EntityKind::Interaction, Format::Csv);
    opts.batch_rows = 50;
    opts.batch_time = Some(Duration::from_millis(1));
    let before = store.commit_count();
    let report = Importer::new(store, &engine, None, &opts).unwrap().run(text.as_bytes(), &mut |_| {}).unwrap();
    assert_eq!((report.created, report.failed), (ROWS, 0), "{:?}", report.errors.first());
    // 50 + 50 + 20 rows: three commits, not one per millisecond.
    assert_eq!(store.commit_count() - before, 3);
}

/// An import of one big batch (by rows) with a time bound: a write that asks for the
/// database while the import is running gets it between two batches. The handshake: once
/// the import reaches row 100 the other thread writes, and every later row waits (1 ms at a
/// time) until that write has committed, so without the time bound the write could only
/// come after the file's last row.
#[test]
fn a_write_gets_in_while_an_import_runs() {
    const ROWS: u64 = 2_000;
    let fx = Fixture::on(Backend::Redb);
    let store = &fx.store;
    store
        .transact(None, |tx| {
            tx.create(User::new("bench.manager", "Manager", Role::Manager))?;
            let p = tx.create(Partner::new("P0", PartnerRole::Client))?;
            tx.set_external_key(EntityKind::Partner, "P0", p.id.raw())
        })
        .unwrap();
    let reached = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicBool::new(false));
    let row_at_write = Arc::new(AtomicU64::new(0));
    let row_now = Arc::new(AtomicU64::new(0));
    let mut hooks = Hooks::new();
    let (r, w, now) = (reached.clone(), written.clone(), row_now.clone());
    hooks.register("pace", move |i: &HookInput<'_>| {
        if let Some(Subject::Interaction(it)) = &i.after {
            let n: u64 = it.subject.trim_start_matches("row ").parse().unwrap_or(0);
            now.store(n, Ordering::SeqCst);
            if n == 100 {
                r.store(true, Ordering::SeqCst);
            }
            // Waits for the other write, up to 2 s over the whole file.
            if n > 100 && !w.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(Answer::Allow)
    });
    hooks.bind(HookPoint::EntityBeforeSave, "pace", &[]).unwrap();
    let engine = native_engine(hooks);
    let mut text = String::from("key,kind,at,subject,partner\n");
    for n in 1..=ROWS {
        text.push_str(&format!("K{n},note,2026-03-01T10:00:00Z,row {n},P0\n"));
    }
    let mut opts = ImportOptions::new(EntityKind::Interaction, Format::Csv);
    opts.batch_rows = 1_000_000;
    opts.batch_time = Some(Duration::from_millis(5));
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !reached.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            store.transact(None, |tx| tx.create(Partner::new("ООО «Между»", PartnerRole::Client))).unwrap();
            row_at_write.store(row_now.load(Ordering::SeqCst), Ordering::SeqCst);
            written.store(true, Ordering::SeqCst);
        });
        Importer::new(store, &engine, None, &opts).unwrap().run(text.as_bytes(), &mut |_| {}).unwrap()
    });
    assert_eq!((report.created, report.failed), (ROWS, 0), "{:?}", report.errors.first());
    assert!(written.load(Ordering::SeqCst));
    let at = row_at_write.load(Ordering::SeqCst);
    assert!(at < ROWS, "the write committed only after the import's last row ({at})");
    let r = store.read().unwrap();
    assert_eq!(r.list::<Interaction>(None, usize::MAX).unwrap().len() as u64, ROWS);
    assert!(r.list::<Partner>(None, 10).unwrap().iter().any(|p| p.name == "ООО «Между»"));
}
