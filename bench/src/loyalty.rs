//! Loyalty accrual on many sales with the same rule — the shipped Rhai script
//! `loyalty/tiers.rhai`, and the C plugin `plugins/examples/c-loyalty` built from its source
//! in a fresh instance per call and in an instance kept between calls — each on its own copy
//! of one redb installation: sales/s of the whole accrual (the rule, the
//! ledger entry and the card's sums written, committed), the rule's own calls/s, their
//! ratios, and a check that both leave every card with the same balance and turnover.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use chrono::NaiveDate;
use crmkit::say;
use crmkit_core::id::{DocumentId, LoyaltyCardId};
use crmkit_core::model::{Document, DocumentKind, DocumentState, LoyaltyCard, LoyaltyProgram, Partner, PartnerRole};
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::values::{Currency, Money};
use crmkit_core::Installation;
use rust_decimal::Decimal;

const RHAI: &str = "loyalty/tiers.rhai::points_by_turnover";
const PLUGIN: &str = "c_loyalty.wasm::accrue";

/// Builds plugins/examples/c-loyalty with build.sh (as the tests do): the folder holding its
/// module and its manifest with the module's SHA-256.
fn built_plugin() -> Result<PathBuf> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples");
    let out = Command::new("bash").arg(examples.join("build.sh")).arg("c").output().context("running build.sh")?;
    if !out.status.success() {
        bail!(
            "plugins/examples/build.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(examples.join("out/c_loyalty"))
}

/// An installation at `dir` binding `loyalty.accrue` to `handler`, the C plugin installed
/// (its instances kept between calls with `keep`).
fn installation(dir: &Path, handler: &str, plugin: &Path, keep: bool) -> Result<Installation> {
    let reuse = if keep { "reuse = [\"c_loyalty\"]\n" } else { "" };
    let config = format!(
        "{}\n[runtimes.wasm]\n{reuse}\n[[hooks]]\npoint = \"loyalty.accrue\"\nhandler = \"{handler}\"\ntimeout_ms = 1000\n",
        crmkit_core::config::DEFAULT_CONFIG
    );
    let inst = Installation::init(dir, Some(&config), Arc::new(SystemClock))?;
    let to = inst.dir().join("plugins/c_loyalty");
    std::fs::create_dir_all(&to)?;
    for file in ["c_loyalty.wasm", "plugin.toml"] {
        std::fs::copy(plugin.join(file), to.join(file)).with_context(|| format!("copying {file}"))?;
    }
    Ok(inst)
}

/// The sale `i` of `sales`: a completed payment of partner `i % partners`, from 500.00 to
/// about 200,000.00 roubles, over the year 2026.
fn sale(i: usize, sales: usize, partners: &[crmkit_core::id::PartnerId]) -> Document {
    let cents = 50_000 + (i as i64 * 7_919_993) % 19_950_000;
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a day") + chrono::Duration::days((i * 364 / sales) as i64);
    let mut d = Document::new(
        DocumentKind::Payment,
        format!("ПП-{i:07}"),
        day,
        partners[i % partners.len()],
        Money::new(Decimal::new(cents, 2), Currency::RUB),
    );
    d.state = DocumentState::Completed;
    d
}

/// What one way did.
struct Run {
    label: &'static str,
    /// Sales/s of each committed batch.
    rates: Vec<f64>,
    total_s: f64,
    /// The rule's calls and the time spent in them.
    calls: u64,
    rule_s: f64,
    cards: Vec<(LoyaltyCardId, Decimal, Decimal)>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `crmkit-bench loyalty`.
pub fn loyalty(sales: usize, cards: usize, batch: usize) -> Result<()> {
    ensure!(sales > 0 && cards > 0 && batch > 0, "--sales, --cards and --batch are at least 1");
    let plugin = built_plugin()?;
    let tmp = tempfile::tempdir()?;
    let (first, second, third) = (tmp.path().join("rhai"), tmp.path().join("c"), tmp.path().join("c-kept"));
    say!("crmkit-bench loyalty: {sales} completed payments of {cards} card holders, a bonus program (a point a rouble), accrued through loyalty.accrue in committed batches of {batch}");
    let started = Instant::now();
    {
        let inst = installation(&first, RHAI, &plugin, false)?;
        let store = inst.store();
        let partners = store.transact(None, |tx| {
            let day = NaiveDate::from_ymd_opt(2025, 12, 1).expect("a day");
            let program = tx.create(LoyaltyProgram::bonus("Клуб", Currency::RUB, Decimal::ONE, day))?;
            let mut ids = Vec::with_capacity(cards);
            for i in 0..cards {
                let p = tx.create(Partner::new(format!("Клиент {i:06}"), PartnerRole::Client))?;
                tx.create(LoyaltyCard::new(format!("77{i:08}"), program.id, p.id, day))?;
                ids.push(p.id);
            }
            Ok(ids)
        })?;
        let mut from = 0;
        while from < sales {
            let to = sales.min(from + 50_000);
            store.transact(None, |tx| {
                for i in from..to {
                    tx.create(sale(i, sales, &partners))?;
                }
                Ok(())
            })?;
            from = to;
        }
    }
    // The other ways run on copies of the same database.
    let db = |dir: &Path| dir.join("data/crmkit.redb");
    for (dir, keep) in [(&second, false), (&third, true)] {
        installation(dir, PLUGIN, &plugin, keep)?;
        std::fs::copy(db(&first), db(dir)).context("copying the database")?;
    }
    say!(
        "  set up in {:.1} s: {} of database",
        started.elapsed().as_secs_f64(),
        crmkit::human_bytes(std::fs::metadata(db(&first))?.len())
    );

    let mut runs = Vec::new();
    for (label, dir) in [("Rhai script", &first), ("C plugin", &second), ("C, kept", &third)] {
        let inst = Installation::open(dir, Arc::new(SystemClock))?;
        let (engine, _runtimes) = crmkit::engine_and_scripts(&inst)?;
        let store = inst.store();
        let mut ids: Vec<DocumentId> = Vec::with_capacity(sales);
        store.read()?.for_each::<Document>(|d| {
            ids.push(d.id);
            true
        })?;
        let mut rates = Vec::new();
        let t = Instant::now();
        for chunk in ids.chunks(batch) {
            let b = Instant::now();
            let written = store.transact(None, |tx| {
                let mut n = 0;
                for id in chunk {
                    n += engine.accrue(tx, *id)?.len();
                }
                Ok(n)
            })?;
            ensure!(written == chunk.len(), "{label}: {written} accruals for {} sales", chunk.len());
            rates.push(chunk.len() as f64 / b.elapsed().as_secs_f64());
        }
        let total_s = t.elapsed().as_secs_f64();
        let stats = engine.hooks().stats();
        let (calls, nanos) = stats.iter().fold((0, 0), |(c, n), s| (c + s.calls, n + s.nanos));
        let mut balances = Vec::with_capacity(cards);
        store.read()?.for_each::<LoyaltyCard>(|c| {
            balances.push((c.id, c.balance, c.turnover));
            true
        })?;
        let problems = crmkit_core::process::loyalty::verify(&store.read()?)?;
        ensure!(problems.is_empty(), "{label}: the ledgers do not add up: {problems:?}");
        runs.push(Run { label, rates, total_s, calls, rule_s: nanos as f64 / 1e9, cards: balances });
    }
    ensure!(
        runs[0].cards == runs[1].cards && runs[1].cards == runs[2].cards,
        "the Rhai script and the C plugin left different balances"
    );
    let points: Decimal = runs[0].cards.iter().map(|(_, b, _)| *b).sum();
    say!(
        "  the three leave every card with the same balance and turnover ({} cards, {points} points in all); every ledger adds up",
        runs[0].cards.len()
    );
    say!("  {:<12} {:>14} {:>14} {:>16} {:>12}", "way", "sales/s med", "sales/s all", "rule calls/s", "rule share");
    for r in &mut runs {
        let med = median(&mut r.rates);
        say!(
            "  {:<12} {:>14.0} {:>14.0} {:>16.0} {:>11.0}%",
            r.label,
            med,
            sales as f64 / r.total_s,
            r.calls as f64 / r.rule_s,
            100.0 * r.rule_s / r.total_s
        );
    }
    let rate = |r: &Run| sales as f64 / r.total_s;
    let calls = |r: &Run| r.calls as f64 / r.rule_s;
    say!(
        "  against the Rhai script, the C plugin accrues {:.2}× the sales a second ({:.2}× with its instance kept); its rule alone answers {:.2}× the calls ({:.2}×)",
        rate(&runs[1]) / rate(&runs[0]),
        rate(&runs[2]) / rate(&runs[0]),
        calls(&runs[1]) / calls(&runs[0]),
        calls(&runs[2]) / calls(&runs[0])
    );
    Ok(())
}
