//! The command line beside a running server: every command that reaches the database runs
//! through `crmkit serve`'s socket with the output and exit status it has when run directly;
//! a stale socket or a held database is handled; `check` writes nothing; backups taken
//! under load restore with every acknowledged write.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::binary;
use crate::client;

/// What a command printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `crmkit args` in `cwd`, with the installation's folder written `DIR` in the output.
fn run(cwd: &Path, dir: &Path, args: &[&str]) -> Ran {
    let o = Command::new(binary()).args(args).current_dir(cwd).output().expect("crmkit runs");
    let dir = dir.to_str().unwrap();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(dir, "DIR");
    Ran { code: o.status.code(), stdout: clean(&o.stdout), stderr: clean(&o.stderr) }
}

/// A `crmkit serve` process on a loopback port, its command socket up; killed when dropped.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        use std::io::BufRead as _;
        let mut child = Command::new(binary())
            .args(["serve", dir.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("crmkit serve starts");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
        let socket = socket(dir);
        let waited = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(waited.elapsed() < Duration::from_secs(30), "no command socket at {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, addr }
    }

    /// Stops the server with SIGTERM, as an operator would.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("data/control/crmkit.sock")
}

/// A demo installation of `deals` deals in `root/name`.
fn demo(root: &Path, name: &str, deals: usize) -> PathBuf {
    let dir = root.join(name);
    crmkit::make_demo(&dir, deals, 7, false, false, Some((16, 16)), false).unwrap();
    dir
}

/// Copies the closed installation `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The commands compared, in order (later ones see what the import wrote): arguments, with
/// `DIR` for the installation; files are named relative to the working folder.
const COMMANDS: &[&[&str]] = &[
    &["check", "DIR"],
    &["stats", "DIR"],
    &["stats", "DIR", "--format", "json"],
    &["report", "DIR", "pipeline_by_manager"],
    &["report", "DIR", "pipeline_by_manager", "--format", "csv", "--param", "from=2020-01"],
    &["report", "DIR", "pipeline_by_manager", "--param", "nonsense=1"],
    &["report", "DIR", "no_such_report"],
    &["analytics", "funnel", "DIR"],
    &["analytics", "funnel", "DIR", "--format", "svg", "--as-of", "2026-01-31", "--kind", "b2b_sale"],
    &["analytics", "funnel", "DIR", "--kind", "nope"],
    &["export", "DIR", "--entity", "partners"],
    &["export", "DIR", "--entity", "deals", "--format", "jsonl", "--out", "deals.jsonl"],
    &["export", "DIR", "--entity", "nothing"],
    &["script", "check", "DIR"],
    &["script", "check", "DIR", "stages/guards.rhai"],
    &["script", "check", "DIR", "stages/missing.rhai"],
    &["script", "run", "DIR", "stages/guards.rhai", "quote_before_leaving_proposal", "--input", "ctx.json"],
    &["script", "run", "DIR", "stages/guards.rhai", "no_such_function"],
    &["plugin", "check", "DIR"],
    &["plugin", "inspect", "DIR/plugins/quote/quote.wasm"],
    &["plugin", "run", "DIR", "quote", "deal.before_transition", "--input", "ctx.json"],
    &["plugin", "run", "DIR", "quote", "guard", "--input", "allow.json"],
    &["plugin", "run", "DIR", "missing", "guard", "--input", "ctx.json"],
    &["import", "DIR", "--entity", "partners", "partners.csv", "--dry-run"],
    &["import", "DIR", "--entity", "partners", "partners.csv"],
    &["import", "DIR", "--entity", "partners", "missing.csv"],
    &["stats", "DIR"],
    &["score", "DIR"],
    &["check", "DIR"],
    &["backup", "DIR", "copy.redb"],
    &["backup", "DIR", "copy.redb"],
];

/// `ran` without the database file's size, which is larger while a server has the file
/// open (redb grows it ahead of writes) than after it closed it.
fn sizeless(mut ran: Ran) -> Ran {
    let keep = |line: &str| !(line.starts_with("file size") || line.trim_start().starts_with("\"file_bytes\""));
    ran.stdout = ran.stdout.lines().filter(|l| keep(l)).map(|l| format!("{l}\n")).collect();
    ran
}

/// The input of `script run`: a deal leaving the proposal stage, as the engine gives it.
const CONTEXT: &str = r#"{"v":1,"hook":"deal.before_transition","process_kind":"b2b_sale","entity":"deal","actor":{"id":"01JN8W6ZQ0000000000000000C","login":"a.ivanova","name":"Иванова Анна","email":"a.ivanova@example.ru","department":"Moscow sales","roles":["manager"]},"before":{"id":"01JN8W7A1G0000000000000010","version":4,"created_at":"2026-03-02T09:00:00.000Z","updated_at":"2026-03-05T14:30:00.000Z","title":"Поставка серверов, 40 шт.","partner":"01JN8W6ZQ0000000000000000P","counterparty":"01JN8W6ZQ0000000000000000K","kind":"b2b_sale","stage":"proposal","status":"in_progress","manager":"01JN8W6ZQ0000000000000000C","amount":"12500000.00","currency":"RUB","expected_close":"2026-04-30","probability":50,"source":"website","loss_reason":null,"competitor":null,"comment":"","closed_at":null,"stage_entered_at":"2026-03-05T14:30:00.000Z","checklist":["quote_sent"],"custom":{}},"after":{"id":"01JN8W7A1G0000000000000010","version":5,"created_at":"2026-03-02T09:00:00.000Z","updated_at":"2026-03-09T10:00:00.000Z","title":"Поставка серверов, 40 шт.","partner":"01JN8W6ZQ0000000000000000P","counterparty":"01JN8W6ZQ0000000000000000K","kind":"b2b_sale","stage":"negotiation","status":"in_progress","manager":"01JN8W6ZQ0000000000000000C","amount":"12500000.00","currency":"RUB","expected_close":"2026-04-30","probability":70,"source":"website","loss_reason":null,"competitor":null,"comment":"","closed_at":null,"stage_entered_at":"2026-03-09T10:00:00.000Z","checklist":[],"custom":{}},"transition":{"how":"manual","from_stage":"proposal","to_stage":"negotiation","from_status":"in_progress","to_status":"in_progress","note":null,"closes":false,"leaves_stage":true},"task":null,"depth":0}"#;

/// The files the commands read, written into a working folder.
fn inputs(work: &Path) {
    std::fs::create_dir_all(work).unwrap();
    std::fs::write(
        work.join("partners.csv"),
        "key,name,roles\nnew-1,Новый партнёр 1,client\nnew-2,,client\nnew-3,Новый партнёр 3,nonsense\nnew-4,Новый партнёр 4,supplier\n",
    )
    .unwrap();
    // A hook input of the contract (docs/hooks.md's deal.before_transition example, without
    // custom fields the demo does not declare).
    std::fs::write(work.join("ctx.json"), CONTEXT).unwrap();
    // The same move to another stage, which the plugin's guard allows.
    std::fs::write(work.join("allow.json"), CONTEXT.replace(r#""to_stage":"negotiation""#, r#""to_stage":"closing""#))
        .unwrap();
}

#[test]
fn every_command_prints_and_exits_the_same_through_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let base = demo(tmp.path(), "base", 300);
    crate::plugin_cli::good_plugin(&base.join("plugins"), "quote", "needs a quote first");
    let (direct, served) = (tmp.path().join("direct"), tmp.path().join("served"));
    copy_dir(&base, &direct);
    copy_dir(&base, &served);
    let (work_direct, work_served) = (tmp.path().join("work-direct"), tmp.path().join("work-served"));
    inputs(&work_direct);
    inputs(&work_served);
    let server = Server::start(&served);
    let mut failures = 0;
    for args in COMMANDS {
        let with =
            |dir: &Path| -> Vec<String> { args.iter().map(|a| a.replace("DIR", dir.to_str().unwrap())).collect() };
        let a = with(&direct);
        let b = with(&served);
        let here = sizeless(run(&work_direct, &direct, &a.iter().map(String::as_str).collect::<Vec<_>>()));
        let there = sizeless(run(&work_served, &served, &b.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(here, there, "crmkit {args:?}: run directly (left) and through the server (right) differ");
        if here.code != Some(0) {
            failures += 1;
        }
    }
    // The refusals above are real refusals, not a server that answers nothing.
    assert!((11..=12).contains(&failures), "{failures} commands failed");
    for file in ["deals.jsonl", "partners.errors.csv", "copy.redb"] {
        assert!(work_served.join(file).is_file(), "{file} was not written through the server");
    }
    assert_eq!(
        std::fs::read(work_direct.join("deals.jsonl")).unwrap(),
        std::fs::read(work_served.join("deals.jsonl")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(work_direct.join("partners.errors.csv")).unwrap(),
        std::fs::read_to_string(work_served.join("partners.errors.csv")).unwrap()
    );
    // The socket is the owner's alone, and goes with the server.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket(&served)), 0o600);
    assert_eq!(mode(socket(&served).parent().unwrap()), 0o700);
    server.stop();
    assert!(!socket(&served).exists(), "the socket outlived a clean shutdown");
    let after = run(tmp.path(), &served, &["check", served.to_str().unwrap()]);
    assert_eq!(after.code, Some(0), "{after:?}");
}

#[test]
fn a_stale_socket_is_passed_over_and_a_database_held_without_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), "d", 50);
    let d = dir.to_str().unwrap();
    let mut server = Server::start(&dir);
    server.child.kill().unwrap(); // SIGKILL: the socket file stays
    server.child.wait().unwrap();
    assert!(socket(&dir).exists());
    // The database was not closed: reading commands still work; check says what to do.
    let stats = run(tmp.path(), &dir, &["stats", d]);
    assert_eq!(stats.code, Some(0), "{stats:?}");
    let check = run(tmp.path(), &dir, &["check", d]);
    assert_eq!(check.code, Some(0), "{check:?}");
    // A server whose socket is gone: the database is held, and the message says by what.
    let server = Server::start(&dir);
    std::fs::remove_file(socket(&dir)).unwrap();
    let held = run(tmp.path(), &dir, &["stats", d]);
    assert_eq!(held.code, Some(1));
    assert!(
        held.stderr.contains("another process holds the database, and no crmkit server answers on")
            && held.stderr.contains("is already open in another process"),
        "{held:?}"
    );
    server.stop();
}

#[test]
fn check_writes_nothing_and_repair_is_its_own_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), "d", 50);
    let d = dir.to_str().unwrap();
    let file = dir.join("data/crmkit.redb");
    let state = || {
        let bytes = std::fs::read(&file).unwrap();
        (digest(&bytes), std::fs::metadata(&file).unwrap().modified().unwrap())
    };
    let before = state();
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..2 {
        let c = run(tmp.path(), &dir, &["check", d]);
        assert_eq!(c.code, Some(0), "{c:?}");
    }
    assert_eq!(state(), before, "crmkit check changed the database file");
    // A server killed mid-way leaves the file unrecovered: check says so and changes nothing;
    // repair recovers it; then check is clean.
    let mut server = Server::start(&dir);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed = state();
    let c = run(tmp.path(), &dir, &["check", d]);
    assert_eq!(c.code, Some(1), "{c:?}");
    assert!(c.stderr.contains("run `crmkit repair DIR`") && c.stderr.contains("not closed cleanly"), "{c:?}");
    assert_eq!(state(), killed, "a refused check changed the file");
    let r = run(tmp.path(), &dir, &["repair", d]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("repair: ") && r.stdout.contains("database: ok"), "{r:?}");
    let c = run(tmp.path(), &dir, &["check", d]);
    assert_eq!(c.code, Some(0), "{c:?}");
}

/// A 64-bit FNV-1a digest of `bytes` (any change of the file changes it but for chance).
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn a_backup_under_load_restores_with_every_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), "d", 300);
    let d = dir.to_str().unwrap();
    let token = run(tmp.path(), &dir, &["token", "create", d, "--user", "admin", "--role", "admin"]);
    assert_eq!(token.code, Some(0), "{token:?}");
    let token = token.stdout.trim().to_string();
    let server = Server::start(&dir);
    // Acknowledged writes, each with the moment its answer came and how long it took.
    let acknowledged: Mutex<Vec<(String, Instant, Duration)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let out = tmp.path().join("backup.redb");
    let (began, latency) = std::thread::scope(|s| {
        for client in 0..2 {
            let (addr, acknowledged, stop, token) = (&server.addr, &acknowledged, &stop, &token);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("Нагрузка {client}-{n}");
                    let body = format!(r#"{{"name":"{name}","roles":["client"]}}"#);
                    let sent = Instant::now();
                    let answer =
                        client::exchange(addr, "POST", "/api/v1/partners", Some(token), &[], Some(body.as_bytes()));
                    match answer.map(|a| (a.status, a.text())) {
                        Some((201, _)) => acknowledged.lock().unwrap().push((name, Instant::now(), sent.elapsed())),
                        other => panic!("{name}: {other:?}"),
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let began = Instant::now();
        let b = run(tmp.path(), &dir, &["backup", d, out.to_str().unwrap()]);
        let took = began.elapsed();
        assert_eq!(b.code, Some(0), "{b:?}");
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (began, took)
    });
    server.stop();
    let acknowledged = acknowledged.into_inner().unwrap();
    let before: Vec<&String> = acknowledged.iter().filter(|(_, at, _)| *at < began).map(|(n, _, _)| n).collect();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let quiet = median(acknowledged.iter().filter(|(_, at, _)| *at < began).map(|a| a.2).collect());
    let loaded: Vec<Duration> =
        acknowledged.iter().filter(|(_, at, _)| *at >= began && *at < began + latency).map(|a| a.2).collect();
    let during = loaded.len();
    println!(
        "backup of a 300-deal demo under load: {latency:?} (the crmkit process, through the server); {} writes \
         before it (median {quiet:?}), {during} during it (median {:?})",
        before.len(),
        median(loaded)
    );
    assert!(before.len() > 5, "only {} writes before the backup", before.len());
    assert!(during > 0, "no write was acknowledged while the backup ran");

    // Restore into a fresh installation: refused for a file that is not a backup, with nothing
    // replaced; then the backup comes back whole.
    let fresh = tmp.path().join("fresh");
    let f = fresh.to_str().unwrap();
    assert_eq!(run(tmp.path(), &fresh, &["init", f]).code, Some(0));
    let database = fresh.join("data/crmkit.redb");
    let original = std::fs::read(&database).unwrap();
    let junk = tmp.path().join("junk.redb");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let refused = run(tmp.path(), &fresh, &["restore", junk.to_str().unwrap(), f]);
    assert_eq!(refused.code, Some(1));
    assert!(refused.stderr.contains("is not a crmkit backup; nothing was replaced"), "{refused:?}");
    assert_eq!(std::fs::read(&database).unwrap(), original);
    let restored = run(tmp.path(), &fresh, &["restore", out.to_str().unwrap(), f]);
    assert_eq!(restored.code, Some(0), "{restored:?}");
    let check = run(tmp.path(), &fresh, &["check", f]);
    assert_eq!(check.code, Some(0), "{check:?}");
    let exported = run(tmp.path(), &fresh, &["export", f, "--entity", "partners"]);
    let missing: Vec<&&String> = before.iter().filter(|n| !exported.stdout.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged writes are not in the backup: {:?}", missing.len(), missing);

    // A restore is refused while a server holds the database, which stays as it was.
    let server = Server::start(&fresh);
    let busy = run(tmp.path(), &fresh, &["restore", out.to_str().unwrap(), f]);
    assert_eq!(busy.code, Some(1));
    assert!(busy.stderr.contains("a crmkit server is serving"), "{busy:?}");
    server.stop();
}

#[test]
fn score_prints_and_exits_the_same_through_a_running_server_and_counts_what_it_rescored() {
    let tmp = tempfile::tempdir().unwrap();
    let base = demo(tmp.path(), "base", 200);
    let (direct, served) = (tmp.path().join("direct"), tmp.path().join("served"));
    let both = |args: &[&str]| -> Ran {
        let with = |dir: &Path| -> Vec<String> {
            args.iter().map(|a| if *a == "DIR" { dir.to_str().unwrap().to_string() } else { a.to_string() }).collect()
        };
        let (a, b) = (with(&direct), with(&served));
        let here = run(tmp.path(), &direct, &a.iter().map(String::as_str).collect::<Vec<_>>());
        let there = run(tmp.path(), &served, &b.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(here, there, "crmkit {args:?}: run directly (left) and through the server (right) differ");
        here
    };
    // Without a binding: refused the same way both ways, nothing written.
    copy_dir(&base, &direct);
    copy_dir(&base, &served);
    let server = Server::start(&served);
    let unbound = both(&["score", "DIR"]);
    assert_eq!(unbound.code, Some(1), "{unbound:?}");
    assert!(unbound.stderr.contains("no deal.score handler is bound in DIR/config/crmkit.toml"), "{unbound:?}");
    server.stop();

    // The shipped model bound (the demo config's commented binding, uncommented).
    let config = base.join("config/crmkit.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let commented = "# [[hooks]]\n# point = \"deal.score\"\n# handler = \"scoring/logistic.rhai::win_probability\"\n";
    assert!(text.contains(commented), "the demo config carries the binding");
    // With a time limit of its own: what is compared is the two ways of running, not how
    // fast a loaded machine scores (the config's 20 ms is for a server's hooks).
    let bound = commented.replace("# ", "") + "timeout_ms = 5000\n";
    std::fs::write(&config, text.replace(commented, &bound)).unwrap();
    let (open, total) = {
        use crmkit_core::model::Deal;
        use crmkit_core::store::Reader as _;
        let inst = crmkit_core::installation::Installation::open_read_only(
            &base,
            std::sync::Arc::new(crmkit_core::time::SystemClock),
        )
        .unwrap();
        let r = inst.store().read().unwrap();
        let (mut open, mut total) = (0, 0);
        r.for_each::<Deal>(|d| {
            total += 1;
            open += usize::from(!d.status.is_closed());
            true
        })
        .unwrap();
        (open, total)
    };
    assert!(open > 0 && total > open, "{open} open of {total}");
    for dir in [&direct, &served] {
        std::fs::remove_dir_all(dir).unwrap();
        copy_dir(&base, dir);
    }
    let server = Server::start(&served);
    // The demo's deals were written without the model: every one is scored and changes.
    let first = both(&["score", "DIR"]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(
        first.stdout,
        format!("scored {open} open deals: {open} changed, 0 unchanged, 0 without a score, 0 with a probability set by hand (kept)\n")
    );
    let again = both(&["score", "DIR"]);
    assert_eq!(
        again.stdout,
        format!("scored {open} open deals: 0 changed, {open} unchanged, 0 without a score, 0 with a probability set by hand (kept)\n")
    );
    let closed = total - open;
    let all = both(&["score", "DIR", "--all"]);
    assert_eq!(
        all.stdout,
        format!("scored {total} deals: {closed} changed, {open} unchanged, 0 without a score, 0 with a probability set by hand (kept)\n")
    );
    server.stop();
    let check = run(tmp.path(), &served, &["check", served.to_str().unwrap()]);
    assert_eq!(check.code, Some(0), "{check:?}");
}
