//! `crmkit-bench`: the figures of docs/benchmarks.md — the store, the process engine, a big
//! dossier, bulk import, scripts, plugins, scoring and the HTTP API — measured outside the shipped `crmkit`
//! binary. Printed as medians from one run.

/// The same allocator as the `crmkit` binary, so that the figures are the binary's (the bulk
/// import's cross-thread frees depend on it, see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use crmkit::say;
use crmkit_core::id::DealId;
use crmkit_core::model::Deal;
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

mod analytics;
mod analytics_sql;
mod loyalty;
mod ops;
mod score;
mod score_model;
mod strategy;
mod wasm;
mod web;

#[derive(Parser)]
#[command(name = "crmkit-bench", about = "Benchmarks of crmkit: the figures of docs/benchmarks.md")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

fn main() {
    let cli = Cli::parse();
    // Benchmarks log only warnings, so that the log does not become what they measure; the
    // server started for its memory logs as `crmkit serve` does.
    use std::io::IsTerminal as _;
    let level = if matches!(cli.what, What::Serve { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(filter)
        .init();
    if let Err(e) = run(cli.what) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[derive(Subcommand)]
enum What {
    /// Bulk load of the demo, database open time, point reads of deals.
    Store {
        /// Deals in the demo that is loaded.
        #[arg(long, default_value_t = 1_000_000)]
        deals: usize,
        /// Where to build it (a temporary folder, removed afterwards, by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Point reads to time.
        #[arg(long, default_value_t = 200_000)]
        reads: usize,
        /// Page cache of the installation built, in MiB.
        #[arg(long, default_value_t = 4096)]
        cache_mb: u64,
        /// Record cache of the installation built, in MiB.
        #[arg(long, default_value_t = 1024)]
        record_cache_mb: u64,
        /// Measure an installation DIR already holds instead of building one.
        #[arg(long, requires = "dir")]
        reuse: bool,
    },
    /// The dossier of a partner with many deals, documents and interactions, and the
    /// roll-up of a holding of 100 partners.
    Dossier {
        /// Deals of the partner (each with an invoice and a payment).
        #[arg(long, default_value_t = 1_000)]
        deals: usize,
        /// Interactions with the partner.
        #[arg(long, default_value_t = 50_000)]
        interactions: usize,
    },
    /// Bulk import of interactions from a CSV file, with one guard bound on
    /// `entity.before_save`.
    Import {
        /// Rows in the file.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Partners the interactions are spread over (imported first).
        #[arg(long, default_value_t = 1_000)]
        partners: usize,
        /// Rows per committed batch.
        #[arg(long, default_value_t = 50_000)]
        batch: usize,
    },
    /// Rhai scripts: a guard's call cost with its real input, how fast `loop {}` is
    /// stopped, reloading 100 scripts.
    Script {
        /// Guard calls to time.
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
    },
    /// WASM plugins: a guard's call in a fresh instance with its real input, how soon a
    /// spinning plugin is stopped, ten plugins loaded compiling and from the cache.
    Wasm {
        /// Guard calls to time.
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
    },
    /// Scoring deals with the example model three ways: the Rust plugin through the WASM
    /// host, the same model as the shipped Rhai script, natively; deals/s and their ratios,
    /// the three checked to agree on every deal.
    Score {
        /// Deals scored (generated in memory, chunk by chunk).
        #[arg(long, default_value_t = 1_000_000)]
        deals: usize,
        /// Partners the deals belong to (stored in a redb installation, read by the model).
        #[arg(long, default_value_t = 10_000)]
        partners: usize,
        /// Deals each way scores before the next way scores them.
        #[arg(long, default_value_t = 10_000)]
        chunk: usize,
    },
    /// Loyalty accrual on many sales with one rule two ways: the shipped Rhai script and the C
    /// plugin built from its source, each on a copy of one installation; sales/s of each,
    /// the rule's own calls/s, and a check that both leave every card the same.
    Loyalty {
        /// Completed payments accrued.
        #[arg(long, default_value_t = 1_000_000)]
        sales: usize,
        /// Card holders the sales belong to, one bonus card each.
        #[arg(long, default_value_t = 10_000)]
        cards: usize,
        /// Sales accrued per committed transaction.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
    /// The relationship strategies over a demo's client partners: the classes, the shipped
    /// rule's evaluation, and with --apply the writes, twice. Sets the installation's config
    /// and scripts to the shipped demo ones first.
    Strategy {
        /// The installation (a `crmkit demo`).
        #[arg(long)]
        dir: PathBuf,
        /// Write the segments and tasks, and run again.
        #[arg(long)]
        apply: bool,
    },
    /// The HTTP API under load on loopback: GET of deals, POST of interactions (group
    /// commit), against a plain hyper hello-world measured in the same run.
    Http {
        /// Deals in the demo installation served.
        #[arg(long, default_value_t = 20_000)]
        deals: usize,
        /// Concurrent keep-alive clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Serve this existing demo installation instead of generating one (`crmkit demo
        /// --deals 1000000 --no-serve` makes one); the POSTed interactions stay in it. The
        /// idle memory of a server process on it (the code of `crmkit serve`) is measured
        /// first.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The web page on an installation (`crmkit demo --deals 1000000 --no-serve` makes a
    /// big one): the server's time per page for the manager whose open deals are nearest
    /// `--open` (a password is set for them), the page's CSS and JavaScript, and how soon
    /// their board is interactive in headless Chromium (chromedriver).
    Web {
        /// The installation.
        #[arg(long)]
        dir: PathBuf,
        /// Requests per page.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// The open deals of the manager signed in, about.
        #[arg(long, default_value_t = 500)]
        open: usize,
    },
    /// Serves an installation as `crmkit serve` does, with the same code: the process whose
    /// memory `http --dir` reads.
    #[command(hide = true)]
    Serve {
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Reopening a database after its writing process was killed with SIGKILL, with and
    /// without quick-repair (`database.quick_repair`), and the writer's durable commits/s.
    Recovery {
        /// The installation (the demo is built there first unless it holds one).
        #[arg(long)]
        dir: PathBuf,
        /// Deals of the demo built.
        #[arg(long, default_value_t = 1_000_000)]
        deals: usize,
        /// Seconds the writer writes before it is killed.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Kills per setting.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// The writing child of `recovery`, killed by it.
    #[command(hide = true)]
    RecoveryWriter { dir: PathBuf },
    /// A CSV import of interactions over HTTP, alone and while clients POST interactions:
    /// the import's rows/s and the latency of those writes.
    ImportHttp {
        /// Rows in the file.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Partners the interactions are spread over (imported first).
        #[arg(long, default_value_t = 1_000)]
        partners: usize,
        /// Clients writing one interaction after another during the import.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Commit without quick-repair.
        #[arg(long)]
        no_quick_repair: bool,
    },
    /// `crmkit backup` through the socket of a server on loopback, with no writes and while
    /// clients POST interactions: the backup's time and MiB/s, the writes' latency and rate
    /// against theirs alone; each backup taken under writes is restored and checked.
    Backup {
        /// Deals of the demo built.
        #[arg(long, default_value_t = 20_000)]
        deals: usize,
        /// The installation (the demo is built there first unless it holds one; the POSTed
        /// interactions stay in it). A temporary demo, removed afterwards, by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Clients writing one interaction after another.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Seconds the clients write alone, for the figures the backup's are compared to.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Rounds: writes alone, a backup alone, a backup while the clients write.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The built-in sales reports against SQLite and DuckDB on the same data, each report
    /// written as SQL: times (best and median of five), peak memory, the SQL results checked
    /// equal to crmkit's rows; then the shipped report scripts timed.
    Analytics {
        /// The installation (a demo is built there first unless it holds one). A temporary
        /// demo, removed afterwards, by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Deals of the demo built.
        #[arg(long, default_value_t = 1_000_000)]
        deals: usize,
        /// Where the SQLite and DuckDB files, the SQL of each report and the Python virtual
        /// environment are kept (reused while they hold the same installation). Default: DIR
        /// with `-sql` appended.
        #[arg(long)]
        sql_dir: Option<PathBuf>,
        /// The Python virtual environment with the `duckdb` package (made there with
        /// `python3 -m venv` and `pip install duckdb` when missing; default SQL_DIR/venv).
        #[arg(long)]
        venv: Option<PathBuf>,
        /// SQLite only: no Python, no DuckDB.
        #[arg(long)]
        no_duckdb: bool,
        /// Load SQLite and DuckDB again even if they hold this installation.
        #[arg(long)]
        reload: bool,
    },
    /// One engine's timed runs of one report, written as JSON: the child processes of
    /// `analytics`, so that each has its own peak memory.
    #[command(hide = true)]
    AnalyticsRun {
        engine: String,
        report: String,
        place: PathBuf,
        sql: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Stage transitions through the process engine with native guards and a reaction.
    Process {
        /// Transitions timed inside one transaction.
        #[arg(long, default_value_t = 20_000)]
        transitions: usize,
        /// Transitions committed one by one with immediate durability.
        #[arg(long, default_value_t = 300)]
        commits: usize,
        /// Commit without quick-repair.
        #[arg(long)]
        no_quick_repair: bool,
    },
}

fn run(what: What) -> Result<()> {
    match what {
        What::Store { deals, dir, reads, reuse, cache_mb, record_cache_mb } => {
            store(deals, dir, reads, reuse, cache_mb, record_cache_mb)
        }
        What::Process { transitions, commits, no_quick_repair } => process(transitions, commits, !no_quick_repair),
        What::Recovery { dir, deals, seconds, rounds } => ops::recovery(&dir, deals, seconds, rounds),
        What::RecoveryWriter { dir } => ops::recovery_writer(&dir),
        What::ImportHttp { rows, partners, clients, no_quick_repair } => {
            ops::import_http(rows, partners, clients, !no_quick_repair)
        }
        What::Backup { deals, dir, clients, seconds, rounds } => {
            ops::backup(dir.as_deref(), deals, clients, seconds, rounds)
        }
        What::Dossier { deals, interactions } => dossier(deals, interactions),
        What::Import { rows, partners, batch } => import(rows, partners, batch),
        What::Script { calls } => script(calls),
        What::Wasm { calls } => wasm::wasm(calls),
        What::Score { deals, partners, chunk } => score::score(deals, partners, chunk),
        What::Loyalty { sales, cards, batch } => loyalty::loyalty(sales, cards, batch),
        What::Strategy { dir, apply } => strategy::strategy(&dir, apply),
        What::Http { deals, clients, seconds, dir } => http(deals, clients, seconds, dir),
        What::Serve { dir, addr } => crmkit::serve(&dir, &addr),
        What::Web { dir, rounds, open } => web::run(&dir, rounds, open),
        What::Analytics { dir, deals, sql_dir, venv, no_duckdb, reload } => {
            analytics::analytics(analytics::Args { dir, deals, sql_dir, venv, duckdb: !no_duckdb, reload })
        }
        What::AnalyticsRun { engine, report, place, sql, out } => {
            analytics::run_one(&engine, &report, &place, sql.as_deref(), &out)
        }
    }
}

/// The engine's cost per transition: deals of the manual `b2b_sale` kind move between
/// their first two stages, with two native guards on `deal.before_transition` and one
/// reaction on `deal.after_transition`.
fn process(transitions: usize, commits: usize, quick_repair: bool) -> Result<()> {
    use crmkit_core::model::{Partner, PartnerRole, Role, User};
    use crmkit_core::process::{Action, Answer, Engine, HookInput, HookPoint, Hooks, Subject};
    use crmkit_core::store::Durability;
    use crmkit_core::values::{Currency, Money};

    let tmp = tempfile::tempdir()?;
    let config = ops::with_quick_repair(crmkit_core::config::DEFAULT_CONFIG, quick_repair);
    let inst = Installation::init(tmp.path(), Some(&config), Arc::new(SystemClock))?;
    let store = inst.store();
    let mut hooks = Hooks::new();
    hooks.register("amount_positive", |i: &HookInput<'_>| {
        Ok(match &i.after {
            Some(Subject::Deal(d)) if d.amount.amount.is_sign_negative() => {
                Answer::Reject { message: "no negative amounts".into(), field: Some("amount".into()) }
            }
            _ => Answer::Allow,
        })
    });
    hooks.register("no_viewers", |i: &HookInput<'_>| {
        Ok(match i.actor {
            Some(u) if u.roles == [Role::Viewer] => {
                Answer::Reject { message: "viewers cannot move deals".into(), field: None }
            }
            _ => Answer::Allow,
        })
    });
    hooks.register("probability_from_stage", |i: &HookInput<'_>| {
        Ok(match i.transition {
            Some(t) if t.to_stage.as_deref() == Some("needs_analysis") => {
                Answer::Actions(vec![Action::SetField { field: "probability".into(), value: serde_json::json!(30) }])
            }
            _ => Answer::Actions(Vec::new()),
        })
    });
    hooks.bind(HookPoint::DealBeforeTransition, "amount_positive", &[])?;
    hooks.bind(HookPoint::DealBeforeTransition, "no_viewers", &[])?;
    hooks.bind(HookPoint::DealAfterTransition, "probability_from_stage", &[])?;
    let engine = Engine::new(&natives_only(store.settings()), hooks)?;
    let deals_n = 1000;
    let (manager, deals) = store.transact(None, |tx| {
        let manager = tx.create(User::new("bench.manager", "Bench Manager", Role::Manager))?;
        let partner = tx.create(Partner::new("ООО «Бенч»", PartnerRole::Client))?;
        let mut deals = Vec::new();
        for i in 0..deals_n {
            let mut d = Deal::new(
                format!("Deal {i}"),
                partner.id,
                "b2b_sale",
                None,
                manager.id,
                Money::new((100_000 + i as i64).into(), Currency::RUB),
            );
            d.source = Some("website".into());
            deals.push(engine.create_deal(tx, d)?.id);
        }
        Ok((manager.id, deals))
    })?;

    say!(
        "crmkit-bench process: {transitions} transitions of {deals_n} deals, two guards on deal.before_transition, one reaction on deal.after_transition"
    );
    // The engine's own cost: each transition in its own transaction, timed up to (not
    // including) the commit, which is not durable here. Forward moves make the reaction set
    // a field (one more deal update); backward moves make it answer no actions.
    let mut forward = Vec::with_capacity(transitions / 2);
    let mut back = Vec::with_capacity(transitions / 2);
    for n in 0..transitions {
        let id = deals[n % deals_n];
        let mut tx = store.write(Some(manager))?;
        tx.set_durability(Durability::Deferred);
        let d: Deal = tx.load(id)?;
        let to = if d.stage.as_deref() == Some("qualification") { "needs_analysis" } else { "qualification" };
        let t = Instant::now();
        let moved = engine.move_deal(&mut tx, id, d.version, to, None)?;
        let took = t.elapsed();
        std::hint::black_box(moved);
        tx.commit()?;
        if to == "needs_analysis" {
            forward.push(took)
        } else {
            back.push(took)
        }
    }
    let mut all: Vec<Duration> = forward.iter().chain(back.iter()).copied().collect();
    say!(
        "transition in the engine (excluding the commit): median {:.2} µs, p99 {:.2} µs; forward (reaction sets a field) median {:.2} µs; back (reaction answers no actions) median {:.2} µs",
        median(all.clone()).as_secs_f64() * 1e6,
        percentile(&mut all, 0.99).as_secs_f64() * 1e6,
        median(forward).as_secs_f64() * 1e6,
        median(back).as_secs_f64() * 1e6
    );

    // One transition per durable commit.
    let started = Instant::now();
    for n in 0..commits {
        let id = deals[n % deals_n];
        let mut tx = store.write(Some(manager))?;
        let d: Deal = tx.load(id)?;
        let to = if d.stage.as_deref() == Some("qualification") { "needs_analysis" } else { "qualification" };
        engine.move_deal(&mut tx, id, d.version, to, None)?;
        tx.commit()?;
    }
    let took = started.elapsed();
    say!(
        "with Durability::Immediate, one transition per commit (quick_repair = {quick_repair}): {commits} in {:.2} s = {:.0} commits/s",
        took.as_secs_f64(),
        commits as f64 / took.as_secs_f64()
    );
    let r = store.read()?;
    let steps = r.stage_history(deals[0])?.len();
    say!("stage history of the first deal: {steps} steps");
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn store(
    deals: usize,
    dir: Option<PathBuf>,
    reads: usize,
    reuse: bool,
    cache_mb: u64,
    record_cache_mb: u64,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().join("bench"));
    if reuse {
        say!("crmkit-bench store: the installation in {}", dir.display());
    } else {
        say!("crmkit-bench store: demo with {deals} deals in {}", dir.display());
        let started = Instant::now();
        let summary = crmkit::make_demo(&dir, deals, 42, true, true, Some((cache_mb, record_cache_mb)), false)?;
        let load = started.elapsed();
        let entities = summary.entities();
        let load_rate = entities as f64 / load.as_secs_f64();
        say!(
            "bulk load: {entities} entities in {:.2} s = {:.0} entities/s (with {} audit entries of updates; \
             the demo company generated and every deal's history run through the process engine, with \
             indexes, reference checks and audit rows)",
            load.as_secs_f64(),
            load_rate,
            summary.audit_entries
        );
        let batch = crmkit_demo::DemoOptions::new(deals, 42).batch;
        let raw = raw_redb_inserts(&dir, &summary, batch, cache_mb)?;
        say!(
            "raw redb on this machine: {} inserts of {}-byte values (the load's records, in its mix of kinds) into one table, \
             committed durably every {batch}: {:.2} s = {:.0} inserts/s",
            raw.inserts,
            raw.mean_bytes,
            raw.took.as_secs_f64(),
            raw.rate()
        );
        say!("bulk load / raw redb inserts: {:.3}", load_rate / raw.rate());
    }

    // Open time: each open is a fresh process-level open of the file.
    let mut opens = Vec::new();
    let mut inst_opens = Vec::new();
    let db = crmkit_core::config::Settings::load_installation(&dir)?;
    for _ in 0..7 {
        let t = Instant::now();
        let s = crmkit_core::store::Store::open(&db.database, Arc::new(db.clone()), Arc::new(SystemClock))?;
        opens.push(t.elapsed());
        drop(s);
        let t = Instant::now();
        let i = Installation::open(&dir, Arc::new(SystemClock))?;
        inst_opens.push(t.elapsed());
        drop(i);
    }
    let inst = Installation::open(&dir, Arc::new(SystemClock))?;
    let stats = inst.store().stats()?;
    say!("file size: {} ({} bytes)", crmkit::human_bytes(stats.file_bytes), stats.file_bytes);
    say!(
        "open database: median {:.2} ms (installation with config and user sync: {:.2} ms), 7 runs",
        median(opens).as_secs_f64() * 1e3,
        median(inst_opens).as_secs_f64() * 1e3
    );

    // Point reads by id, over ids spread across the whole table.
    let snap = inst.store().read()?;
    let mut ids: Vec<DealId> = Vec::with_capacity(deals);
    snap.for_each::<Deal>(|d| {
        ids.push(d.id);
        true
    })?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut pick = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ids[(state % ids.len() as u64) as usize]
    };
    // Warm: every deal read once, so pages and records are in memory as they are on a
    // server that has run a while.
    for id in &ids {
        std::hint::black_box(snap.get::<Deal>(*id)?);
    }
    let mut shared = Vec::with_capacity(reads);
    for _ in 0..reads {
        let id = pick();
        let t = Instant::now();
        let d = snap.get::<Deal>(id)?;
        shared.push(t.elapsed());
        std::hint::black_box(d);
    }
    // The parts of a read: the key-value lookup alone, and decoding alone.
    let table = crmkit_core::store::tables::entity_table(crmkit_core::model::EntityKind::Deal);
    let mut raw = Vec::with_capacity(reads / 4);
    let mut decode = Vec::with_capacity(reads / 4);
    for _ in 0..reads / 4 {
        let id = pick();
        let t = Instant::now();
        let bytes = snap.kv_get(table, &id.0.to_bytes())?.expect("listed id");
        raw.push(t.elapsed());
        let t = Instant::now();
        let d: Deal = crmkit_core::store::decode_record(&bytes)?;
        decode.push(t.elapsed());
        std::hint::black_box(d);
    }
    say!(
        "without the record cache: key-value lookup median {:.2} µs, decoding the record median {:.2} µs ({} bytes for this deal)",
        median(raw).as_secs_f64() * 1e6,
        median(decode).as_secs_f64() * 1e6,
        snap.kv_get(table, &ids[0].0.to_bytes())?.map_or(0, |b| b.len())
    );
    let mut shared_reads = Vec::with_capacity(reads);
    for _ in 0..reads {
        let id = pick();
        let t = Instant::now();
        let d = snap.get_shared::<Deal>(id)?;
        shared_reads.push(t.elapsed());
        std::hint::black_box(d);
    }
    let mut fresh = Vec::with_capacity(reads / 4);
    for _ in 0..reads / 4 {
        let id = pick();
        let t = Instant::now();
        let s = inst.store().read()?;
        let d = s.get::<Deal>(id)?;
        fresh.push(t.elapsed());
        std::hint::black_box(d);
    }
    say!(
        "point read of a deal by id (warm, {reads} random ids): shared record median {:.2} µs, p99 {:.2} µs; \
         owned copy median {:.2} µs, p99 {:.2} µs; owned, with a new snapshot per read: median {:.2} µs",
        median(shared_reads.clone()).as_secs_f64() * 1e6,
        percentile(&mut shared_reads, 0.99).as_secs_f64() * 1e6,
        median(shared.clone()).as_secs_f64() * 1e6,
        percentile(&mut shared, 0.99).as_secs_f64() * 1e6,
        median(fresh).as_secs_f64() * 1e6
    );
    Ok(())
}

/// What plain redb inserts measured.
struct RawInserts {
    inserts: u64,
    mean_bytes: usize,
    took: Duration,
}

impl RawInserts {
    fn rate(&self) -> f64 {
        self.inserts as f64 / self.took.as_secs_f64()
    }
}

/// The floor the bulk load is measured against: plain redb inserts on the same machine and
/// disk, as many as the load wrote entities, of values copied from the load's records (a
/// pool sampled from each entity table in proportion to the entities of its kind), under
/// increasing 16-byte keys in one table, committed with immediate durability every `batch`
/// inserts as the load commits its batches, with the installation's page cache size. The
/// file is made in the installation's folder and removed.
fn raw_redb_inserts(dir: &Path, summary: &crmkit_demo::Summary, batch: usize, cache_mb: u64) -> Result<RawInserts> {
    const POOL: u64 = 4096;
    let inserts = summary.entities();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    {
        let inst = Installation::open(dir, Arc::new(SystemClock))?;
        let snap = inst.store().read()?;
        for (kind, n) in &summary.counts {
            let want = (POOL * n).div_ceil(inserts.max(1)).max(1) as usize;
            let mut taken = 0;
            let table = crmkit_core::store::tables::entity_table(*kind);
            let (from, to) = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
            snap.kv_scan(table, from, to, false, &mut |_, v| {
                pool.push(v.to_vec());
                taken += 1;
                taken < want
            })?;
        }
    }
    anyhow::ensure!(!pool.is_empty(), "the load wrote no records to copy");
    let mean_bytes = pool.iter().map(Vec::len).sum::<usize>() / pool.len();
    let path = dir.join("raw-redb-inserts.redb");
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let db = redb::Builder::new().set_cache_size((cache_mb as usize) << 20).create(&path)?;
    let records: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("records");
    let started = Instant::now();
    let mut done = 0u64;
    while done < inserts {
        let mut tx = db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        let end = (done + batch as u64).min(inserts);
        {
            let mut table = tx.open_table(records)?;
            for i in done..end {
                let value = &pool[(i % pool.len() as u64) as usize];
                table.insert(u128::from(i).to_be_bytes().as_slice(), value.as_slice())?;
            }
        }
        tx.commit()?;
        done = end;
    }
    let took = started.elapsed();
    drop(db);
    std::fs::remove_file(&path)?;
    Ok(RawInserts { inserts, mean_bytes, took })
}

/// The first page of a big partner's dossier, from a fresh snapshot of a reopened database
/// (cold record cache) and then warm.
fn dossier(deals: usize, interactions: usize) -> Result<()> {
    use crmkit_core::dossier::{dossier, DossierOptions};
    use crmkit_core::model::{
        Document, DocumentKind, DocumentState, Interaction, InteractionKind, Partner, PartnerRole, Role, User,
    };
    use crmkit_core::store::Durability;
    use crmkit_core::values::{Currency, Money};

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("bench");
    let inst = Installation::init(&dir, None, Arc::new(SystemClock))?;
    let store = inst.store();
    say!("crmkit-bench dossier: a partner with {deals} deals, {} documents and {interactions} interactions", 2 * deals);
    let (partner, deal_ids) = store.transact(None, |tx| {
        tx.set_durability(Durability::Deferred);
        let manager = tx.create(User::new("bench.manager", "Bench Manager", Role::Manager))?;
        let partner = tx.create(Partner::new("ООО «Большой клиент»", PartnerRole::Client))?;
        let mut ids = Vec::new();
        for i in 0..deals {
            let mut d = Deal::new(
                format!("Deal {i}"),
                partner.id,
                "b2b_sale",
                Some("qualification".into()),
                manager.id,
                Money::new((10_000 + i as i64).into(), Currency::RUB),
            );
            d.source = Some("website".into());
            let d = tx.create(d)?;
            for (kind, state) in
                [(DocumentKind::Invoice, DocumentState::Issued), (DocumentKind::Payment, DocumentState::Completed)]
            {
                let mut doc =
                    Document::new(kind, format!("{}-{i}", kind.name()), d.created_at.date(), partner.id, d.amount);
                doc.deal = Some(d.id);
                doc.state = state;
                if kind == DocumentKind::Invoice {
                    doc.lines.push(crmkit_core::model::DocumentLine {
                        item: "Service".into(),
                        qty: 1.into(),
                        unit: None,
                        price: d.amount.amount,
                    });
                }
                tx.create(doc)?;
            }
            ids.push(d.id);
        }
        Ok((partner.id, ids))
    })?;
    let mut left = interactions;
    while left > 0 {
        let n = left.min(10_000);
        store.transact(None, |tx| {
            tx.set_durability(Durability::Deferred);
            for i in 0..n {
                let mut it = Interaction::new(InteractionKind::Call, tx.now(), partner, format!("Call {i}"));
                it.deal = Some(deal_ids[i % deal_ids.len()]);
                tx.create(it)?;
            }
            Ok(())
        })?;
        left -= n;
    }
    store.transact(None, |_| Ok(()))?;
    drop(inst);

    let inst = Installation::open(&dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let t = Instant::now();
    let cold = dossier(&r, partner, DossierOptions::default())?;
    let cold_time = t.elapsed();
    let mut warm = Vec::new();
    for _ in 0..21 {
        let r = inst.store().read()?;
        let t = Instant::now();
        std::hint::black_box(dossier(&r, partner, DossierOptions::default())?);
        warm.push(t.elapsed());
    }
    let dossier_line = format!(
        "dossier, first page of the timeline ({} of {} interactions, {} deals, {} documents): cold {:.2} ms, warm median {:.2} ms (21 runs)",
        cold.timeline.interactions.len(),
        cold.timeline.total,
        cold.deals.won + cold.deals.lost + cold.deals.open.len(),
        cold.documents.count,
        cold_time.as_secs_f64() * 1e3,
        median(warm).as_secs_f64() * 1e3
    );
    say!("{dossier_line}");
    drop(r);
    drop(inst);
    holding(&dir)
}

/// The roll-up of a holding of 100 partners (a head, 9 divisions with 10 members each),
/// each with 10 deals and their invoices and payments.
fn holding(dir: &std::path::Path) -> Result<()> {
    use crmkit_core::graph::group_rollup;
    use crmkit_core::model::{Document, DocumentKind, DocumentState, Partner, PartnerRole};
    use crmkit_core::store::Durability;
    use crmkit_core::values::{Currency, Money};

    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let head = inst.store().transact(None, |tx| {
        tx.set_durability(Durability::Deferred);
        let manager = tx.user_by_login("bench.manager")?.expect("created above").id;
        let mut all = Vec::new();
        let head = tx.create(Partner::new("Холдинг «Бенч»", PartnerRole::Client))?;
        all.push(head.id);
        for div in 0..9 {
            let mut d = Partner::new(format!("Дивизион {div}"), PartnerRole::Client);
            d.parent = Some(head.id);
            let d = tx.create(d)?;
            all.push(d.id);
            for m in 0..10 {
                let mut p = Partner::new(format!("Компания {div}-{m}"), PartnerRole::Client);
                p.parent = Some(d.id);
                all.push(tx.create(p)?.id);
            }
        }
        for p in all {
            for i in 0..10 {
                let mut deal = Deal::new(
                    format!("Deal {i}"),
                    p,
                    "b2b_sale",
                    Some("qualification".into()),
                    manager,
                    Money::new((1_000 + i as i64).into(), Currency::RUB),
                );
                deal.source = Some("website".into());
                let deal = tx.create(deal)?;
                for kind in [DocumentKind::Invoice, DocumentKind::Payment] {
                    let mut doc =
                        Document::new(kind, format!("{}-{i}", kind.name()), deal.created_at.date(), p, deal.amount);
                    doc.deal = Some(deal.id);
                    doc.state = DocumentState::Completed;
                    if kind == DocumentKind::Invoice {
                        doc.lines.push(crmkit_core::model::DocumentLine {
                            item: "Service".into(),
                            qty: 1.into(),
                            unit: None,
                            price: deal.amount.amount,
                        });
                    }
                    tx.create(doc)?;
                }
            }
        }
        Ok(head.id)
    })?;
    drop(inst);
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let t = Instant::now();
    let cold = group_rollup(&r, head, 10_000)?;
    let cold_time = t.elapsed();
    let mut warm = Vec::new();
    for _ in 0..21 {
        let r = inst.store().read()?;
        let t = Instant::now();
        std::hint::black_box(group_rollup(&r, head, 10_000)?);
        warm.push(t.elapsed());
    }
    say!(
        "group roll-up of a holding of {} partners ({} deals, {} documents): cold {:.2} ms, warm median {:.2} ms (21 runs)",
        cold.members.len(),
        cold.total.open_deals + cold.total.won_deals + cold.total.lost_deals,
        cold.total.documents,
        cold_time.as_secs_f64() * 1e3,
        median(warm).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Imports `rows` interactions from a generated CSV file into fresh installations (three
/// times, for a median), with a native guard on `entity.before_save` that reads every row's
/// subject; then runs the same file again on the last one.
fn import(rows: usize, partners: usize, batch: usize) -> Result<()> {
    use crmkit_core::model::{EntityKind, Role, User};
    use crmkit_core::process::{Answer, Engine, HookInput, HookPoint, Hooks, Subject};
    use crmkit_core::transfer::{Format, ImportOptions, Importer};

    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("interactions.csv");
    ops::interactions_csv(&file, rows, partners)?;
    let size = std::fs::metadata(&file)?.len();
    say!(
        "crmkit-bench import: {rows} interactions ({:.0} MiB of CSV) over {partners} partners, batches of {batch} rows, one guard on entity.before_save",
        size as f64 / (1 << 20) as f64
    );
    let mut hooks = Hooks::new();
    hooks.register("no_advertising", |i: &HookInput<'_>| {
        let subject = match &i.after {
            Some(Subject::Interaction(it)) => it.subject.as_str(),
            _ => "",
        };
        Ok(if subject.contains("реклама") {
            Answer::Reject { message: "no advertising in the journal".into(), field: Some("subject".into()) }
        } else {
            Answer::Allow
        })
    });
    hooks.bind(HookPoint::EntityBeforeSave, "no_advertising", &[])?;
    let mut opts = ImportOptions::new(EntityKind::Interaction, Format::Csv);
    opts.batch_rows = batch;

    let mut times = Vec::new();
    let mut last = None;
    for run in 1..=3 {
        let dir = tmp.path().join(format!("bench{run}"));
        let inst = Installation::init(&dir, None, Arc::new(SystemClock))?;
        let store = inst.store();
        let engine = Engine::new(&natives_only(inst.settings()), hooks.clone())?;
        store.transact(None, |tx| tx.create(User::new("bench.manager", "Bench Manager", Role::Manager)))?;
        let mut text = String::from("key,name,roles,manager\n");
        for p in 0..partners {
            text.push_str(&format!("P{p},Клиент {p},client,bench.manager\n"));
        }
        let partner_opts = ImportOptions::new(EntityKind::Partner, Format::Csv);
        Importer::new(store, &Engine::without_hooks(), None, &partner_opts)?.run(text.as_bytes(), &mut |_| {})?;
        let t = Instant::now();
        let report = Importer::new(store, &engine, None, &opts)?.run(std::fs::File::open(&file)?, &mut |_| {})?;
        let took = t.elapsed();
        anyhow::ensure!(
            report.failed == 0 && report.created == rows as u64,
            "the import failed: {:?}",
            report.errors.first()
        );
        say!(
            "run {run}: {rows} rows created in {:.2} s: {:.0} rows/s",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64()
        );
        times.push(took);
        if let Some(previous) = last.replace(inst) {
            drop(previous);
            std::fs::remove_dir_all(tmp.path().join(format!("bench{}", run - 1)))?;
        }
    }
    let m = median(times);
    say!("import, median of 3: {:.2} s: {:.0} rows/s", m.as_secs_f64(), rows as f64 / m.as_secs_f64());
    let inst = last.expect("three runs");
    let t = Instant::now();
    let report =
        Importer::new(inst.store(), &Engine::new(&natives_only(inst.settings()), hooks.clone())?, None, &opts)?
            .run(std::fs::File::open(&file)?, &mut |_| {})?;
    let took = t.elapsed();
    say!(
        "the same file again: {} rows unchanged in {:.2} s: {:.0} rows/s",
        report.unchanged,
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// The cost of script hooks: a guard over a deal called with the input the engine builds
/// (the conversion of the deal into the script's value included), the time `loop {}` runs
/// before its limit stops it, and the compilation of 100 scripts.
/// The deal a bench guard is asked about, in a fresh installation, and the stage move it is
/// asked about: a big deal with its close date and source, leaving qualification.
pub(crate) fn guard_subject(inst: &Installation) -> Result<(Deal, crmkit_core::process::Transition)> {
    use crmkit_core::model::{Partner, PartnerRole, Role, User};
    use crmkit_core::values::{Currency, Money};
    let deal = inst.store().transact(None, |tx| {
        let manager = tx.create(User::new("bench.manager", "Bench Manager", Role::Manager))?;
        let partner = tx.create(Partner::new("ООО «Клиент»", PartnerRole::Client))?;
        let mut d = Deal::new(
            "Поставка",
            partner.id,
            "b2b_sale",
            Some("qualification".into()),
            manager.id,
            Money::new(2_500_000.into(), Currency::RUB),
        );
        d.source = Some("website".into());
        d.expected_close = crmkit_core::time::Timestamp::parse("2026-06-30T00:00:00Z").ok().map(|t| t.date());
        tx.create(d)
    })?;
    let transition = crmkit_core::process::Transition {
        how: crmkit_core::model::How::Manual,
        from_stage: Some("qualification".into()),
        to_stage: Some("needs_analysis".into()),
        from_status: deal.status,
        to_status: deal.status,
        note: None,
    };
    Ok((deal, transition))
}

/// What a guard on `deal.before_transition` is asked about `deal` making `transition`.
pub(crate) fn guard_input<'a>(
    deal: &'a Deal,
    transition: &'a crmkit_core::process::Transition,
    view: &'a dyn crmkit_core::hooks::View,
) -> crmkit_core::hooks::HookInput<'a> {
    use crmkit_core::hooks::{HookInput, HookPoint, Subject};
    HookInput {
        hook: HookPoint::DealBeforeTransition,
        process_kind: Some("b2b_sale"),
        entity: crmkit_core::model::EntityKind::Deal,
        actor: None,
        before: Some(Subject::Deal(deal)),
        after: Some(Subject::Deal(deal)),
        transition: Some(transition),
        task: None,
        depth: 0,
        now: deal.updated_at,
        view,
        loyalty: None,
        strategy: None,
        claim_step: None,
    }
}

/// Times `calls` calls of `call`, after 1,000 to warm up: the median and the p99.
pub(crate) fn time_calls<T>(calls: usize, mut call: impl FnMut() -> Result<T>) -> Result<(Duration, Duration)> {
    for _ in 0..1000 {
        call()?;
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let answer = call()?;
        times.push(t.elapsed());
        std::hint::black_box(answer);
    }
    let p99 = percentile(&mut times, 0.99);
    Ok((median(times), p99))
}

/// Times 11 runs of `stop`, a call that a limit must stop: the median and the worst.
pub(crate) fn time_stops(mut stop: impl FnMut() -> Result<()>) -> Result<(Duration, Duration)> {
    let mut stops = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        stop()?;
        stops.push(t.elapsed());
    }
    let worst = *stops.iter().max().expect("runs");
    Ok((median(stops), worst))
}

fn script(calls: usize) -> Result<()> {
    use crmkit_core::process::{CallLimits, Handler, HookInput};
    use crmkit_rhai::RhaiSettings;
    use crmkit_rhai::{ScriptHandler, ScriptHost};

    let tmp = tempfile::tempdir()?;
    let inst = Installation::init(&tmp.path().join("bench"), None, Arc::new(SystemClock))?;
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts)?;
    std::fs::write(
        scripts.join("guards.rhai"),
        r#"
// Big deals leave qualification only with an expected close date and a known source.
fn check(ctx) {
    let d = ctx.after;
    if ctx.transition != () && d.amount > 1000000 {
        if d.expected_close == () { return #{ reject: "a big deal needs an expected close date", field: "expected_close" }; }
        if d.source == () { return #{ reject: "a big deal needs its source", field: "source" }; }
    }
    true
}
fn spin(ctx) { loop { } }
"#,
    )?;
    let limits = RhaiSettings::default();
    let host = Arc::new(ScriptHost::new(&scripts, &limits));
    anyhow::ensure!(host.load_all().is_empty(), "the bench scripts compile");
    let (deal, transition) = guard_subject(&inst)?;
    let snapshot = inst.store().read()?;
    let guard = ScriptHandler::new(host.clone(), "guards.rhai", "check", CallLimits::default());
    let ask = |input: &HookInput<'_>| -> Result<crmkit_core::hooks::Answer> {
        let reply = guard.call(input).map_err(|f| anyhow::anyhow!("{}", f.0))?;
        Ok(crmkit_core::hooks::accept(input.hook, "guards.rhai::check", reply)?)
    };
    let input = guard_input(&deal, &transition, &snapshot);
    say!("crmkit-bench script: a guard over a deal, {calls} calls");
    let (median_call, p99) = time_calls(calls, || ask(&input))?;
    say!(
        "guard call with its input converted and its answer checked: median {:.2} µs, p99 {:.2} µs",
        median_call.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );

    let (median_stop, worst) = time_stops(|| {
        let e = host.call("guards.rhai", "spin", vec![rhai::Dynamic::UNIT], CallLimits::default());
        anyhow::ensure!(e.is_err(), "loop {{}} was not stopped");
        Ok(())
    })?;
    say!(
        "loop {{}} stopped after: median {:.1} ms, worst {:.1} ms of 11 (limits.timeout_ms = {})",
        median_stop.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        limits.timeout_ms
    );

    let many = tmp.path().join("many");
    std::fs::create_dir_all(&many)?;
    for i in 0..100 {
        let mut text = format!("// Script {i}: a guard and a scoring function.\n");
        text.push_str("fn check(ctx) {\n    let d = ctx.after;\n    if d.amount > 1000000 && d.expected_close == () { return `deal ${d.title} needs a date`; }\n    true\n}\n");
        text.push_str("fn score(ctx) {\n    let s = 0;\n    for x in ctx.after.checklist { s += 1; }\n    if ctx.after.source == \"referral\" { s += 10; }\n    switch ctx.after.stage { \"proposal\" => s += 5, \"negotiation\" => s += 8, _ => {} }\n    s\n}\n");
        std::fs::write(many.join(format!("s{i:03}.rhai")), text)?;
    }
    let mut loads = Vec::new();
    for _ in 0..5 {
        let h = ScriptHost::new(&many, &limits);
        let t = Instant::now();
        anyhow::ensure!(h.load_all().is_empty(), "the 100 scripts compile");
        loads.push(t.elapsed());
    }
    say!("compiling 100 scripts: median {:.1} ms of 5", median(loads).as_secs_f64() * 1e3);
    // Every file edited: a reload finds the 100 changes and compiles them.
    let h = ScriptHost::new(&many, &limits);
    anyhow::ensure!(h.load_all().is_empty(), "the 100 scripts compile");
    let mut reloads = Vec::new();
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(15));
        for i in 0..100 {
            let path = many.join(format!("s{i:03}.rhai"));
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(&path, format!("{text}// edit {round}\n"))?;
        }
        let t = Instant::now();
        anyhow::ensure!(h.reload_changed().is_empty(), "the edited scripts compile");
        reloads.push(t.elapsed());
    }
    say!("reloading 100 edited scripts: median {:.1} ms of 5", median(reloads).as_secs_f64() * 1e3);
    Ok(())
}

/// What a load run measured.
struct Load {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
    took: Duration,
}

/// `clients` keep-alive HTTP/1.1 connections to `addr`, each sending `request(n)` and
/// reading the answer, for `seconds`.
async fn load(
    addr: std::net::SocketAddr,
    clients: usize,
    seconds: u64,
    request: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
) -> Result<Load> {
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let timer = running.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        timer.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    load_while(addr, clients, running, request).await
}

/// [`load`] for as long as `running` holds.
async fn load_while(
    addr: std::net::SocketAddr,
    clients: usize,
    running: Arc<std::sync::atomic::AtomicBool>,
    request: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
) -> Result<Load> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (request, running) = (request.clone(), running.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            let mut buf = Vec::with_capacity(8192);
            let mut n = c as u64 * 1_000_003;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let t = Instant::now();
                s.write_all(&request(n)).await?;
                buf.clear();
                // Headers, then as many body bytes as Content-Length says.
                let (head_end, length) = loop {
                    let mut chunk = [0u8; 4096];
                    let got = s.read(&mut chunk).await?;
                    anyhow::ensure!(got > 0, "the server closed the connection");
                    buf.extend_from_slice(&chunk[..got]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        break (at + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let mut chunk = [0u8; 4096];
                    let got = s.read(&mut chunk).await?;
                    anyhow::ensure!(got > 0, "the server closed the connection");
                    buf.extend_from_slice(&chunk[..got]);
                }
                latencies.push(t.elapsed());
                if buf.starts_with(b"HTTP/1.1 2") {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            anyhow::Ok((ok, failed, latencies))
        }));
    }
    let mut total = Load { ok: 0, failed: 0, latencies: Vec::new(), took: Duration::ZERO };
    for t in tasks {
        let (ok, failed, mut l) = t.await??;
        total.ok += ok;
        total.failed += failed;
        total.latencies.append(&mut l);
    }
    total.took = started.elapsed();
    Ok(total)
}

fn report_load(what: &str, l: &mut Load) -> f64 {
    let rate = l.ok as f64 / l.took.as_secs_f64();
    let p99 = percentile(&mut l.latencies, 0.99);
    say!(
        "{what}: {:.0} req/s ({} ok, {} failed), median {:.2} ms, p99 {:.2} ms",
        rate,
        l.ok,
        l.failed,
        median(l.latencies.clone()).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    rate
}

/// The HTTP API on loopback against a plain hyper server measured in the same run.
fn http(deals: usize, clients: usize, seconds: u64, existing: Option<PathBuf>) -> Result<()> {
    use crmkit_core::time::ManualClock;
    use crmkit_demo::{self as demo, DemoOptions};

    let tmp = tempfile::tempdir()?;
    let dir = match existing {
        Some(dir) => {
            idle_rss(&dir)?;
            dir
        }
        None => {
            let dir = tmp.path().join("demo");
            let opts = DemoOptions::new(deals, 42);
            let clock = Arc::new(ManualClock::new(opts.start));
            let inst = Installation::init(&dir, Some(demo::DEMO_CONFIG), clock.clone())?;
            demo::populate(inst.store(), &clock, &opts, &mut |_| {})?;
            dir
        }
    };
    let inst = Arc::new(Installation::open(&dir, Arc::new(SystemClock))?);
    let token = crmkit::token::create(&inst, "admin", crmkit_core::model::Role::Admin)?;
    let snap = inst.store().read()?;
    let mut ids: Vec<String> = Vec::new();
    snap.for_each::<Deal>(|d| {
        ids.push(d.id.to_string());
        true
    })?;
    let deals = ids.len();
    let partner = snap.list::<crmkit_core::model::Partner>(None, 1)?.remove(0).id;
    drop(snap);
    let tokens = crmkit::token::load(&dir)?;
    let (engine, scripts) = crmkit::engine_and_scripts(&inst)?;
    say!("crmkit-bench http: {deals}-deal demo, {clients} keep-alive clients, {seconds} s per figure, loopback");

    let (kept, issued) = (inst.clone(), token.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // A plain hyper server: the ceiling of this machine and load generator.
        let hello = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hello_addr = hello.local_addr()?;
        let (stop_hello, hello_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            tokio::pin!(hello_stopped);
            loop {
                let (s, _) = tokio::select! { a = hello.accept() => match a { Ok(a) => a, Err(_) => continue }, _ = &mut hello_stopped => break };
                let _ = s.set_nodelay(true);
                let conn = builder
                    .serve_connection(
                        TokioIo::new(s),
                        hyper::service::service_fn(|_req| async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hello"))))
                        }),
                    )
                    .into_owned();
                tokio::spawn(conn);
            }
        });
        let plain: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> =
            Arc::new(|_| b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec());
        let mut l = load(hello_addr, clients, seconds, plain).await?;
        let base = report_load("plain hyper hello-world", &mut l);
        let _ = stop_hello.send(());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crmkit::Served::new(inst, tokens, engine, scripts)?.run(listener, async move {
            let _ = stopped.await;
        }));
        let ids = Arc::new(ids);
        let auth = format!("Authorization: Bearer {token}\r\n");
        let (get_ids, get_auth) = (ids.clone(), auth.clone());
        let get: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> = Arc::new(move |n| {
            let id = &get_ids[(n.wrapping_mul(2_654_435_761) % get_ids.len() as u64) as usize];
            format!("GET /api/v1/deals/{id} HTTP/1.1\r\nHost: bench\r\n{get_auth}\r\n").into_bytes()
        });
        let mut l = load(addr, clients, seconds, get).await?;
        let got = report_load("GET /api/v1/deals/{id}", &mut l);
        say!("  ratio to the plain server: {:.2}", got / base);
        let post: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> = Arc::new(move |n| {
            let body = format!(
                "{{\"kind\":\"call\",\"direction\":\"outgoing\",\"at\":\"2026-03-02T10:00:00Z\",\"subject\":\"Звонок {n}\",\"partner\":\"{partner}\"}}"
            );
            format!(
                "POST /api/v1/interactions HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        let mut l = load(addr, clients, seconds, post).await?;
        report_load("POST /api/v1/interactions, durable, group-committed", &mut l);
        let _ = stop.send(());
        server.await?;
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.trim_start_matches("VmRSS:").trim().to_string()))
            .unwrap_or_default();
        say!("process RSS after the runs (server, load generator and demo data): {rss}");
        anyhow::Ok(())
    })?;
    crmkit::token::revoke(&kept, &issued)?;
    Ok(())
}

/// The resident memory of a server process on `dir` (this program's hidden `serve`, the code
/// of `crmkit serve` with the same allocator): started, then idle after a
/// thousand reads of deals.
fn idle_rss(dir: &Path) -> Result<()> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let rss = |pid: u32| -> Result<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .map(|l| l.trim_start_matches("VmRSS:").trim())
            .unwrap_or("?")
            .to_string())
    };
    let token = {
        let inst = Installation::open(dir, Arc::new(SystemClock))?;
        crmkit::token::create(&inst, "admin", crmkit_core::model::Role::Admin)?
    };
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", &dir.to_string_lossy(), "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().context("the server's output")?).read_line(&mut first)?;
    let addr = first.trim().strip_prefix("listening on http://").context("the server did not start")?.to_string();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let started = rss(child.id())?;
    let list = format!("GET /api/v1/deals?limit=50 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    let mut after = None;
    for _ in 0..1000 {
        let mut s = std::net::TcpStream::connect(&addr)?;
        let path = match after.take() {
            Some(a) => list.replacen("limit=50", &format!("limit=50&after={a}"), 1),
            None => list.clone(),
        };
        s.write_all(path.as_bytes())?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let page: serde_json::Value =
            serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or_default();
        after = page["next"].as_str().map(str::to_string);
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle = rss(child.id())?;
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    child.wait()?;
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    crmkit::token::revoke(&inst, &token)?;
    say!(
        "idle server RSS (the code of `crmkit serve`, a process of its own) on {}: {started} after starting, {idle} after paging through 50,000 deals",
        dir.display()
    );
    Ok(())
}

/// The installation's settings without its `[[hooks]]` bindings: the benchmarks measure the
/// native handlers they bind themselves.
fn natives_only(settings: &crmkit_core::config::Settings) -> crmkit_core::config::Settings {
    let mut s = settings.clone();
    s.hooks.clear();
    s
}
