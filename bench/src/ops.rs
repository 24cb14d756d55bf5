//! Operations figures: how long a database takes to reopen after its writing process was
//! killed (with and without redb's quick-repair), how long API writes wait while a large
//! import runs over HTTP, and how long `crmkit backup` takes beside a serving server and
//! what it costs the writes meanwhile.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crmkit::say;
use crmkit_core::config::{Settings, CONFIG_FILE};
use crmkit_core::id::PartnerId;
use crmkit_core::model::{EntityKind, Interaction, InteractionKind, Partner, Role, User};
use crmkit_core::store::redb::{RedbBackend, RedbOptions};
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

use super::{median, percentile};

/// Sets `database.quick_repair` in config text.
pub fn with_quick_repair(config: &str, on: bool) -> String {
    let line = format!("quick_repair = {on}");
    let set = config.replacen("quick_repair = true", &line, 1).replacen("quick_repair = false", &line, 1);
    assert!(set.contains(&line), "the config has a quick_repair line");
    set
}

/// `crmkit-bench recovery`: builds the demo in `dir` unless it holds one, then, for each
/// setting of quick-repair, a child process writes to it (one interaction per durable
/// commit) until it is killed with SIGKILL, and the database is opened again.
pub fn recovery(dir: &Path, deals: usize, seconds: u64, rounds: usize) -> Result<()> {
    if !dir.join(CONFIG_FILE).exists() {
        say!("crmkit-bench recovery: building a demo with {deals} deals in {}", dir.display());
        crmkit::make_demo(dir, deals, 42, true, true, Some((4096, 1024)), false)?;
    }
    let config = dir.join(CONFIG_FILE);
    let original = std::fs::read_to_string(&config)?;
    let settings = Settings::load_installation(dir)?;
    let path = settings.database.clone();
    say!(
        "crmkit-bench recovery: {} ({:.0} MiB), a writer killed after {seconds} s, {rounds} round(s) per setting",
        path.display(),
        std::fs::metadata(&path)?.len() as f64 / (1 << 20) as f64
    );
    let mut result = Ok(());
    'rounds: for round in 1..=rounds {
        for quick in [false, true] {
            std::fs::write(&config, with_quick_repair(&original, quick))?;
            if let Err(e) = kill_and_reopen(dir, &path, quick, seconds, settings.cache_bytes, round) {
                result = Err(e);
                break 'rounds;
            }
        }
    }
    std::fs::write(&config, original)?;
    result
}

fn kill_and_reopen(dir: &Path, path: &Path, quick: bool, seconds: u64, cache_bytes: usize, round: usize) -> Result<()> {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("recovery-writer")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut lines = out.lines();
    // The child says when it has opened the database and how many commits it has made.
    let mut opened = String::new();
    let mut first: Option<(Instant, u64)> = None;
    let mut last = (Instant::now(), 0u64);
    for line in lines.by_ref() {
        let line = line?;
        if let Some(ms) = line.strip_prefix("opened ") {
            opened = ms.to_string();
        } else if let Some(n) = line.strip_prefix("commits ") {
            let n: u64 = n.parse()?;
            last = (Instant::now(), n);
            let (t0, _) = *first.get_or_insert(last);
            if t0.elapsed() >= Duration::from_secs(seconds) {
                break;
            }
        }
    }
    let (t0, n0) = first.context("the writer made no commits")?;
    child.kill()?; // SIGKILL
    child.wait()?;
    let rate = (last.1 - n0) as f64 / last.0.duration_since(t0).as_secs_f64();
    let started = Instant::now();
    let backend = RedbBackend::open(path, RedbOptions { cache_bytes, quick_repair: quick })?;
    let reopen = started.elapsed();
    let repaired = backend.repaired().is_some();
    drop(backend);
    let started = Instant::now();
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let clean = started.elapsed();
    drop(inst);
    say!(
        "round {round}, quick_repair = {quick}: the writer opened in {opened} ms, made {rate:.0} durable commits/s; killed; redb reopened in {:.1} ms ({}); then a clean Installation::open {:.1} ms",
        reopen.as_secs_f64() * 1e3,
        if repaired { "full repair" } else { "no repair needed" },
        clean.as_secs_f64() * 1e3
    );
    Ok(())
}

/// The child of `recovery`: opens the installation and writes one interaction per durable
/// commit until it is killed, saying how far it is every 100 ms.
pub fn recovery_writer(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let mut out = std::io::stdout();
    writeln!(out, "opened {:.1}", started.elapsed().as_secs_f64() * 1e3)?;
    let store = inst.store();
    let partner = store.read()?.list::<Partner>(None, 1)?.remove(0).id;
    let mut said = Instant::now();
    for n in 0u64.. {
        let at = store.clock().now();
        store.transact(None, |tx| {
            tx.create(Interaction::new(InteractionKind::Note, at, partner, format!("Запись {n}")))
        })?;
        if said.elapsed() >= Duration::from_millis(100) {
            writeln!(out, "commits {}", n + 1)?;
            out.flush()?;
            said = Instant::now();
        }
    }
    Ok(())
}

/// Writes a CSV file of `rows` interactions over `partners` partners (`P0`…), authored by
/// `bench.manager`.
pub fn interactions_csv(file: &Path, rows: usize, partners: usize) -> Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(file)?);
    writeln!(w, "key,kind,direction,at,duration_min,subject,body,partner,author")?;
    let kinds =
        [("call", "outgoing", "12"), ("email", "incoming", ""), ("meeting", "outgoing", "60"), ("note", "", "")];
    for i in 0..rows {
        let (kind, dir, minutes) = kinds[i % kinds.len()];
        let day = 1 + i % 28;
        let (h, m) = (8 + i % 10, i % 60);
        writeln!(
            w,
            "X{i:08},{kind},{dir},2025-03-{day:02}T{h:02}:{m:02}:00Z,{minutes},Обсуждение поставки {},\"Клиент просит уточнить сроки, цену и условия оплаты\",P{},bench.manager",
            i % 977,
            i % partners
        )?;
    }
    w.flush()?;
    Ok(())
}

/// An installation with a manager and `partners` partners, for imports of interactions.
fn import_target(dir: &Path, partners: usize, quick: bool) -> Result<Arc<Installation>> {
    use crmkit_core::process::Engine;
    use crmkit_core::transfer::{Format, ImportOptions, Importer};
    let config = with_quick_repair(crmkit_core::config::DEFAULT_CONFIG, quick);
    let inst = Installation::init(dir, Some(&config), Arc::new(SystemClock))?;
    let store = inst.store();
    store.transact(None, |tx| tx.create(User::new("bench.manager", "Bench Manager", Role::Manager)))?;
    let mut text = String::from("key,name,roles,manager\n");
    for p in 0..partners {
        text.push_str(&format!("P{p},Клиент {p},client,bench.manager\n"));
    }
    let opts = ImportOptions::new(EntityKind::Partner, Format::Csv);
    Importer::new(store, &Engine::without_hooks(), None, &opts)?.run(text.as_bytes(), &mut |_| {})?;
    Ok(Arc::new(inst))
}

/// `crmkit-bench import-http`: a CSV file of `rows` interactions uploaded to `POST
/// /api/v1/import/interactions` of a server on loopback, first alone, then into a fresh
/// installation while `clients` clients POST interactions one after another; the latency of
/// those writes before and during the import.
pub fn import_http(rows: usize, partners: usize, clients: usize, quick: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("interactions.csv");
    interactions_csv(&file, rows, partners)?;
    let size = std::fs::metadata(&file)?.len();
    say!(
        "crmkit-bench import-http: {rows} interactions ({:.0} MiB of CSV) over {partners} partners uploaded over loopback; {clients} clients writing; quick_repair = {quick}",
        size as f64 / (1 << 20) as f64
    );
    for writing in [false, true] {
        let dir = tmp.path().join(if writing { "busy" } else { "alone" });
        let inst = import_target(&dir, partners, quick)?;
        let token = crmkit::token::create(&inst, "admin", Role::Admin)?;
        let tokens = crmkit::token::load(&dir)?;
        let partner = inst.store().read()?.list::<Partner>(None, 1)?.remove(0).id;
        let (engine, scripts) = crmkit::engine_and_scripts(&inst)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let file = file.clone();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(crmkit::Served::new(inst, tokens, engine, scripts)?.run(listener, async move {
                let _ = stopped.await;
            }));
            let auth = format!("Authorization: Bearer {token}\r\n");
            let post = post_interaction(&token, partner);
            if writing {
                let mut before = super::load(addr, clients, 3, post.clone()).await?;
                report_writes("API writes before the import", &mut before);
            }
            let running = Arc::new(AtomicBool::new(true));
            let writes = writing.then(|| tokio::spawn(super::load_while(addr, clients, running.clone(), post)));
            let started = Instant::now();
            let answer = upload(addr, &auth, &file, size).await;
            let took = started.elapsed();
            running.store(false, Ordering::SeqCst);
            let report = answer?;
            let created = report["created"].as_u64().unwrap_or(0);
            anyhow::ensure!(created == rows as u64, "the import did not create every row: {report}");
            say!(
                "import over HTTP{}: {rows} rows in {:.2} s (upload included): {:.0} rows/s",
                if writing { " while the API writes" } else { ", alone" },
                took.as_secs_f64(),
                rows as f64 / took.as_secs_f64()
            );
            if let Some(w) = writes {
                let mut during = w.await??;
                report_writes("API writes during the import", &mut during);
            }
            let _ = stop.send(());
            server.await?;
            anyhow::Ok(())
        })?;
    }
    Ok(())
}

/// The request of a durable API write: `POST /api/v1/interactions`, a call with `partner`,
/// numbered `n`.
fn post_interaction(token: &str, partner: PartnerId) -> Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> {
    let auth = format!("Authorization: Bearer {token}\r\n");
    Arc::new(move |n| {
        let body = format!(
            "{{\"kind\":\"call\",\"direction\":\"outgoing\",\"at\":\"2026-03-02T10:00:00Z\",\"subject\":\"Звонок {n}\",\"partner\":\"{partner}\"}}"
        );
        format!(
            "POST /api/v1/interactions HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

/// The figures of a run of API writes: writes/s, median and p99 latency.
struct Writes {
    rate: f64,
    median: Duration,
    p99: Duration,
}

/// Says the figures of the writes in `l`; `None` when no write was answered.
fn report_writes(what: &str, l: &mut super::Load) -> Option<Writes> {
    if l.latencies.is_empty() {
        say!("{what}: no write was answered ({} failed)", l.failed);
        return None;
    }
    let max = l.latencies.iter().max().copied().unwrap_or_default();
    let w = Writes {
        rate: l.ok as f64 / l.took.as_secs_f64(),
        median: median(l.latencies.clone()),
        p99: percentile(&mut l.latencies, 0.99),
    };
    say!(
        "{what}: {} ok, {} failed, {:.0}/s; latency median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.ok,
        l.failed,
        w.rate,
        w.median.as_secs_f64() * 1e3,
        w.p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    Some(w)
}

/// Uploads `file` as a CSV import of interactions and returns the report.
async fn upload(addr: std::net::SocketAddr, auth: &str, file: &Path, size: u64) -> Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/v1/import/interactions HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: text/csv\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let body = std::fs::read(file)?;
    s.write_all(&body).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").context("an HTTP answer")?;
    anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "the import answered {}", String::from_utf8_lossy(&answer));
    Ok(serde_json::from_slice(&answer[at + 4..])?)
}

/// `crmkit-bench backup`: the demo in `dir` (built there unless it holds an installation; a
/// temporary one of `deals` deals without `dir`) served on loopback, and `crmkit backup DIR
/// OUT` run through the server's socket as the command line runs it. Each round: `clients`
/// clients write alone for `seconds`, then the backup runs on the idle server, then again
/// while the clients write; the writes' figures during it against theirs alone; the backup
/// taken under writes is restored into a copy of the installation and `crmkit check`ed.
pub fn backup(dir: Option<&Path>, deals: usize, clients: usize, seconds: u64, rounds: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => tmp.path().join("demo"),
    };
    if !dir.join(CONFIG_FILE).exists() {
        say!("crmkit-bench backup: building a demo with {deals} deals in {}", dir.display());
        crmkit::make_demo(&dir, deals, 42, true, true, None, true)?;
    }
    let inst = Arc::new(Installation::open(&dir, Arc::new(SystemClock))?);
    let database = inst.settings().database.clone();
    let token = crmkit::token::create(&inst, "admin", Role::Admin)?;
    let tokens = crmkit::token::load(&dir)?;
    let partner = inst.store().read()?.list::<Partner>(None, 1)?.pop().context("the installation has no partner")?.id;
    let (engine, scripts) = crmkit::engine_and_scripts(&inst)?;
    say!(
        "crmkit-bench backup: {} ({:.0} MiB), `crmkit backup` through the server's socket; {clients} clients writing (durable POST /api/v1/interactions); {seconds} s of writes alone, {rounds} round(s); backups in {}",
        database.display(),
        std::fs::metadata(&database)?.len() as f64 / (1 << 20) as f64,
        tmp.path().display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (work, installation) = (tmp.path().to_path_buf(), dir.clone());
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crmkit::Served::new(inst, tokens, engine, scripts)?.run(listener, async move {
            let _ = stopped.await;
        }));
        let post = post_interaction(&token, partner);
        let mut result = Ok(());
        for round in 1..=rounds {
            result = backup_round(&installation, &work, addr, clients, seconds, round, post.clone()).await;
            if result.is_err() {
                break;
            }
        }
        let _ = stop.send(());
        anyhow::ensure!(server.await?, "the server did not let go of the store");
        result
    })
}

/// One round of [`backup`].
async fn backup_round(
    dir: &Path,
    work: &Path,
    addr: std::net::SocketAddr,
    clients: usize,
    seconds: u64,
    round: usize,
    post: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
) -> Result<()> {
    say!("round {round}:");
    let mut alone = super::load(addr, clients, seconds, post.clone()).await?;
    let base = report_writes("  API writes alone", &mut alone).context("no write was answered without a backup")?;

    let quiet = work.join(format!("quiet-{round}.redb"));
    let took = backup_through_server(dir, &quiet).await?;
    let size = std::fs::metadata(&quiet)?.len();
    say_backup("  backup, no writes", took, size);
    std::fs::remove_file(&quiet)?;

    let out = work.join(format!("busy-{round}.redb"));
    let running = Arc::new(AtomicBool::new(true));
    let writes = tokio::spawn(super::load_while(addr, clients, running.clone(), post));
    let took_busy = backup_through_server(dir, &out).await;
    running.store(false, Ordering::SeqCst);
    let mut during = writes.await??;
    let took_busy = took_busy?;
    let size = std::fs::metadata(&out)?.len();
    say_backup("  backup while the clients write", took_busy, size);
    say!("    {:.2} times the time without writes", took_busy.as_secs_f64() / took.as_secs_f64());
    if let Some(w) = report_writes("  API writes during that backup", &mut during) {
        say!(
            "    to the writes alone: median {:.2}x, p99 {:.2}x, writes/s {:.2}x",
            w.median.as_secs_f64() / base.median.as_secs_f64(),
            w.p99.as_secs_f64() / base.p99.as_secs_f64(),
            w.rate / base.rate
        );
    }
    let restored = work.join(format!("restored-{round}"));
    let took_check = check_backup(dir, &out, &restored).await?;
    say!(
        "  the backup restored into a copy of the installation and checked (`crmkit restore`, `crmkit check`): clean, check {:.2} s",
        took_check.as_secs_f64()
    );
    std::fs::remove_file(&out)?;
    std::fs::remove_dir_all(&restored)?;
    Ok(())
}

fn say_backup(what: &str, took: Duration, size: u64) {
    say!(
        "{what}: {:.3} s, {:.1} MiB file, {:.1} MiB/s",
        took.as_secs_f64(),
        size as f64 / (1 << 20) as f64,
        size as f64 / (1 << 20) as f64 / took.as_secs_f64()
    );
}

/// Runs a command line as the `crmkit` binary does, on a thread of its own (it blocks).
async fn crmkit_command(args: Vec<String>) -> Result<()> {
    let line = args.join(" ");
    let code = tokio::task::spawn_blocking(move || crmkit::cli::run_command_line(&args)).await?;
    anyhow::ensure!(code == 0, "`{line}` exited with status {code}");
    Ok(())
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// `crmkit backup DIR OUT` while the server serves DIR (so through its socket: the database
/// is the server's to open); how long it took, as the command line's user waits for it.
async fn backup_through_server(dir: &Path, out: &Path) -> Result<Duration> {
    let started = Instant::now();
    crmkit_command(vec!["crmkit".into(), "backup".into(), arg(dir), arg(out)]).await?;
    Ok(started.elapsed())
}

/// Restores `backup` into `restored`, a copy of the installation in `dir` without its
/// `data/` folder, and runs `crmkit check` on it; how long the check took.
async fn check_backup(dir: &Path, backup: &Path, restored: &Path) -> Result<Duration> {
    copy_installation(dir, restored)?;
    let database = Settings::load_installation(restored)?.database;
    anyhow::ensure!(
        database.starts_with(restored),
        "the database of {} is {}, outside the installation: a copy of it cannot be restored into",
        dir.display(),
        database.display()
    );
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crmkit_command(vec!["crmkit".into(), "restore".into(), arg(backup), arg(restored)]).await?;
    let started = Instant::now();
    crmkit_command(vec!["crmkit".into(), "check".into(), arg(restored)]).await?;
    Ok(started.elapsed())
}

/// Copies the installation in `from` to the new folder `to`, all but its `data/` folder
/// (the database, tokens, the control socket): config, scripts, plugins, guidance files.
fn copy_installation(from: &Path, to: &Path) -> Result<()> {
    fn copy(from: &Path, to: &Path, top: bool) -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
            let entry = entry?;
            let (source, target) = (entry.path(), to.join(entry.file_name()));
            let kind = entry.file_type()?;
            if top && entry.file_name() == "data" {
                continue;
            } else if kind.is_dir() {
                copy(&source, &target, false)?;
            } else if kind.is_file() {
                std::fs::copy(&source, &target).with_context(|| format!("copying {}", source.display()))?;
            }
        }
        Ok(())
    }
    copy(from, to, true)
}
