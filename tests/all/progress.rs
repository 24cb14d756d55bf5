//! The progress of the long operations: core reports check, export and backup stage by
//! stage with counts that rise to the total at a bounded rate, and `crmkit check` writes
//! no bar where its output is not a terminal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crmkit_core::model::{Deal, EntityKind, EntityRef};
use crmkit_core::progress::{Progress, REPORT_EVERY};
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::transfer::{self, Format};
use crmkit_core::Installation;

use crate::cli::binary;

/// A demo installation of 300 deals, with `files` attachments on its deals.
fn site(files: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    crmkit::make_demo(&dir, 300, 11, false, false, Some((16, 16)), false).unwrap();
    let inst = Installation::open(&dir, Arc::new(SystemClock)).unwrap();
    let store = inst.store();
    let deals: Vec<Deal> = store.read().unwrap().list::<Deal>(None, 1000).unwrap();
    store
        .transact(None, |tx| {
            for i in 0..files {
                let owner =
                    EntityRef { kind: EntityKind::Deal, id: crmkit_core::id::TypedId::raw(deals[i % deals.len()].id) };
                tx.attach(owner, &format!("offer-{i}.txt"), "text/plain", format!("offer number {i}").as_bytes())?;
            }
            Ok(())
        })
        .unwrap();
    (tmp, dir)
}

/// Collects what one operation reports.
#[derive(Default)]
struct Seen(Vec<Progress>);

impl Seen {
    fn record(&mut self) -> impl FnMut(Progress) + '_ {
        |p| self.0.push(p)
    }

    /// The reports of `stage`: they start at 0, rise by at least `REPORT_EVERY` between two
    /// reports (the last may close a shorter gap), never pass the total, and end at it.
    /// Returns the total.
    fn stage(&self, stage: &str) -> u64 {
        let reports: Vec<&Progress> = self.0.iter().filter(|p| p.stage == stage).collect();
        assert!(reports.len() >= 2, "{stage}: {reports:?}");
        let total = reports[0].total;
        assert!(reports.iter().all(|p| p.total == total), "{stage}: the total changed: {reports:?}");
        assert_eq!(reports[0].done, 0, "{stage} starts at 0");
        assert_eq!(reports.last().unwrap().done, total, "{stage} ends at its total");
        for pair in reports.windows(2) {
            assert!(pair[1].done > pair[0].done || total == 0, "{stage}: not increasing: {pair:?}");
            assert!(pair[1].done <= total);
        }
        for pair in reports[..reports.len() - 1].windows(2) {
            assert!(pair[1].done - pair[0].done >= REPORT_EVERY, "{stage}: reported too often: {pair:?}");
        }
        assert!(reports.len() as u64 <= total / REPORT_EVERY + 2, "{stage}: {} reports of {total}", reports.len());
        total
    }

    fn stages(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for p in &self.0 {
            if out.last() != Some(&p.stage) {
                out.push(p.stage);
            }
        }
        out
    }
}

#[test]
fn check_export_and_backup_report_rising_counts_up_to_their_totals() {
    let (tmp, dir) = site(600);
    let inst = Installation::open(&dir, Arc::new(SystemClock)).unwrap();
    let store = inst.store();
    let stats = store.stats().unwrap();
    let records: u64 = stats.entities.values().sum();

    let mut seen = Seen::default();
    assert_eq!(store.verify_indexes_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_histories_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_funnel_totals_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_scan_rows_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_deal_heads_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_document_rows_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_interaction_rows_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_task_rows_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_shipment_rows_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_deal_documents_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_attachments_with_progress(&mut seen.record()).unwrap(), Vec::<String>::new());
    assert_eq!(
        seen.stages(),
        [
            "indexes",
            "stage histories",
            "funnel totals",
            "scan rows",
            "deal heads",
            "document rows",
            "interaction rows",
            "task rows",
            "shipment rows",
            "deal documents",
            "attachments"
        ]
    );
    assert_eq!(seen.stage("funnel totals"), 300, "one per deal");
    assert_eq!(seen.stage("scan rows"), 300, "one per deal");
    assert_eq!(seen.stage("deal heads"), 300, "one per deal");
    let documents = store.read().unwrap().count(crmkit_core::model::EntityKind::Document).unwrap();
    assert!(documents > 0);
    assert_eq!(seen.stage("document rows"), documents, "one per document");
    for (stage, kind) in [("interaction rows", EntityKind::Interaction), ("task rows", EntityKind::Task)] {
        let n = store.read().unwrap().count(kind).unwrap();
        assert!(n > 0, "the demo has records of {kind}");
        assert_eq!(seen.stage(stage), n, "one per record of {kind}");
    }
    assert_eq!(seen.stage("shipment rows"), documents, "one per document read");
    assert_eq!(seen.stage("deal documents"), 300, "one per deal read");
    // Every record, and the index entries besides.
    assert!(seen.stage("indexes") > records, "{records}");
    assert_eq!(seen.stage("stage histories"), 300);
    assert_eq!(seen.stage("attachments"), 600 + stats.blob_chunks);

    for kind in [EntityKind::Partner, EntityKind::Deal, EntityKind::Interaction] {
        let mut seen = Seen::default();
        let mut out = Vec::new();
        let r = store.read().unwrap();
        let rows = transfer::export_with_progress(&r, kind, Format::Csv, b',', &mut out, &mut seen.record()).unwrap();
        assert_eq!(seen.stage("export"), rows, "{kind}");
        assert_eq!(rows, stats.entities[&kind], "{kind}");
        // The same file as without progress.
        let mut plain = Vec::new();
        transfer::export(&r, kind, Format::Csv, b',', &mut plain).unwrap();
        assert_eq!(out, plain, "{kind}");
    }

    let mut seen = Seen::default();
    let out = tmp.path().join("backup.redb");
    let copied = store.back_up_with_progress(&out, &mut seen.record()).unwrap();
    assert_eq!(seen.stage("backup"), copied.entries);
    assert!(copied.entries > records);
    assert_eq!(seen.stages(), ["backup"]);
}

#[test]
fn check_in_a_pipe_prints_its_lines_and_no_bar() {
    let (_tmp, dir) = site(3);
    let steps = {
        let inst = Installation::open(&dir, Arc::new(SystemClock)).unwrap();
        inst.store().stats().unwrap().stage_history_steps
    };
    let o = Command::new(binary()).args(["check", dir.to_str().unwrap()]).stderr(Stdio::piped()).output().unwrap();
    assert!(o.status.success());
    let (out, err) = (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap());
    assert_eq!(err, "", "nothing on stderr in a pipe");
    let database = dir.join("data/crmkit.redb");
    assert_eq!(
        out,
        format!(
            "config: ok (1 users, 4 process kinds, 5 custom fields)\n\
             database: ok ({}, schema version 18, indexes consistent, {steps} stage history steps consistent, funnel totals, scan rows and heads match the deals, document, revenue, interaction and task rows and the deals' documents match their records, loyalty cards match their ledgers, attachments match their content)\n\
             scripts: ok (10 compiled, 6 bindings to script functions checked)\n\
             plugins: ok (0 loaded, 0 bindings to plugin exports checked)\n",
            database.display()
        )
    );
    assert!(!out.contains('\x1b') && !out.contains('\r'));
}

/// `text` without terminal control sequences (`ESC [ digits letter`) and carriage returns.
fn visible(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// What every frame of a stage's bar ends with.
const FRAME: &str = " left)";

/// `script` (util-linux) runs a command on a pseudo-terminal and keeps what it drew.
fn on_a_terminal(command: &str, log: &Path) -> String {
    let status = Command::new("script")
        .args(["-qfec", command, log.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("script (util-linux) runs");
    assert!(status.success(), "{command}");
    String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned()
}

#[test]
fn on_a_terminal_check_draws_a_bar_and_clears_it_before_its_verdict() {
    let (tmp, dir) = site(3);
    let drawn = on_a_terminal(&format!("{} check {}", binary().display(), dir.display()), &tmp.path().join("log"));
    assert!(drawn.contains(FRAME) && drawn.contains("stage histories "), "{drawn}");
    assert!(drawn.contains('\x1b'), "a bar is drawn: {drawn}");
    // The bar is cleared before the verdict: after its last frame come only the cursor
    // moves and line clearing, no text.
    let verdict = drawn.find("database: ok (").expect("the verdict");
    let after_bar = &drawn[drawn[..verdict].rfind(FRAME).expect("a frame before the verdict") + FRAME.len()..verdict];
    assert!(after_bar.contains("\x1b[2K"), "{after_bar:?}");
    assert_eq!(visible(after_bar).trim(), "", "{after_bar:?}");
    assert!(!drawn[verdict..].contains(FRAME), "no bar after the verdict");
    assert!(drawn.contains("scripts: ok (10 compiled"), "{drawn}");
}

#[test]
fn a_command_run_by_a_server_on_a_terminal_draws_no_bar_there_or_at_the_client() {
    let (tmp, dir) = site(3);
    let log = tmp.path().join("server.log");
    // The server's stderr is a terminal, as under an operator's shell.
    let serve = format!("{} serve {} --addr 127.0.0.1:0", binary().display(), dir.display());
    let mut server = Command::new("script")
        .args(["-qfec", &serve, log.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs");
    let socket = dir.join("data/control/crmkit.sock");
    let waited = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(waited.elapsed().as_secs() < 30, "no command socket");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let client =
        on_a_terminal(&format!("{} check {}", binary().display(), dir.display()), &tmp.path().join("client.log"));
    let _ = server.kill();
    let _ = server.wait();
    assert!(client.contains("database: ok ("), "{client}");
    assert!(!client.contains('\x1b') && !client.contains(FRAME), "no bar at the client: {client:?}");
    let served = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(served.contains("listening on"), "{served}");
    assert!(!served.contains(FRAME), "no bar on the server's terminal: {served:?}");
}
