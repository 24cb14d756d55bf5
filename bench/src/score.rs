//! Scoring deals with the example model three ways — the Rust plugin through the WASM host
//! (in fresh instances, and in instances kept between calls), the same model as the shipped
//! Rhai script, and natively — in one run: deals/s of each, their ratios, and a check that
//! they give every deal the same probability.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use crmkit::say;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

use crate::score_model::{agree, deal, partner, Ways};

/// Builds plugins/examples/rust-score with plugins/examples/build.sh (as the tests do) and
/// returns the folder holding its module and its manifest with the module's SHA-256.
fn built_plugin() -> Result<std::path::PathBuf> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples");
    let out = Command::new("bash")
        .arg(examples.join("build.sh"))
        .arg("rust")
        .output()
        .context("running plugins/examples/build.sh")?;
    if !out.status.success() {
        bail!(
            "plugins/examples/build.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(examples.join("out/rust_score"))
}

/// `crmkit-bench score`.
pub fn score(deals: usize, partners: usize, chunk: usize) -> Result<()> {
    ensure!(deals > 0 && partners > 0 && chunk > 0, "--deals, --partners and --chunk are at least 1");
    let plugin = built_plugin()?;
    let tmp = tempfile::tempdir()?;
    let config =
        format!("{}\n[runtimes.wasm]\ngrants.rust_score = [\"read_partner\"]\n", crmkit_core::config::DEFAULT_CONFIG);
    let inst = Installation::init(&tmp.path().join("bench"), Some(&config), Arc::new(SystemClock))?;
    let plugins = inst.dir().join("plugins");
    std::fs::create_dir_all(plugins.join("rust_score"))?;
    for file in ["rust_score.wasm", "plugin.toml"] {
        std::fs::copy(plugin.join(file), plugins.join("rust_score").join(file))
            .with_context(|| format!("copying {}", plugin.join(file).display()))?;
    }
    let store = inst.store();
    let ids: Vec<_> = store.transact(None, |tx| (0..partners).map(|i| Ok(tx.create(partner(i))?.id)).collect())?;
    // A call may take up to a second: the figure is the calls' speed, and a call that a busy
    // machine leaves waiting past the usual 20 ms must not end the run.
    let ways = Ways::new(store.settings(), &plugins, &inst.dir().join("scripts"), 1000).map_err(anyhow::Error::msg)?;
    let script = ways.script_coefficients().map_err(anyhow::Error::msg)?;
    ensure!(
        script == ways.config,
        "the coefficients differ: scripts/scoring/logistic.rhai coefficients() is\n{script}\nplugins/examples/rust-score/plugin.toml [config] is\n{}",
        ways.config
    );
    let view = store.read()?;

    say!(
        "crmkit-bench score: {deals} deals of {partners} partners (a redb installation; the partner read through the store), the model {} three ways, one after another on each chunk of {chunk} deals",
        ways.model.model
    );
    let (mut native_t, mut wasm_t, mut kept_t, mut rhai_t) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut steps, mut factor_rounding) = (0usize, 0usize);
    let mut next_report = deals / 10;
    let started = Instant::now();
    let mut from = 0;
    while from < deals {
        let batch: Vec<_> = (from..deals.min(from + chunk)).map(|i| deal(i, &ids)).collect();
        let t = Instant::now();
        let native = batch.iter().map(|d| ways.native(d, &view)).collect::<Result<Vec<_>, _>>();
        native_t += t.elapsed();
        let t = Instant::now();
        let wasm = batch.iter().map(|d| ways.wasm(d, &view)).collect::<Result<Vec<_>, _>>();
        wasm_t += t.elapsed();
        let t = Instant::now();
        let kept = batch.iter().map(|d| ways.wasm_kept(d, &view)).collect::<Result<Vec<_>, _>>();
        kept_t += t.elapsed();
        let t = Instant::now();
        let rhai = batch.iter().map(|d| ways.rhai(d, &view)).collect::<Result<Vec<_>, _>>();
        rhai_t += t.elapsed();
        let (native, wasm, kept, rhai) = (
            native.map_err(anyhow::Error::msg)?,
            wasm.map_err(anyhow::Error::msg)?,
            kept.map_err(anyhow::Error::msg)?,
            rhai.map_err(anyhow::Error::msg)?,
        );
        for (i, d) in batch.iter().enumerate() {
            let n = &native[i];
            for (way, s) in [("WASM", &wasm[i]), ("WASM (kept instance)", &kept[i]), ("Rhai", &rhai[i])] {
                if !agree(n, s.probability) {
                    bail!(
                        "deal {} ({}): the {way} model says {} %, the native one {} % ({:.6} unrounded)\n  {way} factors: {:?}\n  native factors: {:?}",
                        from + i,
                        d.id,
                        s.probability,
                        n.probability,
                        n.unrounded,
                        s.factors.iter().map(|f| (f.name.as_str(), f.contribution)).collect::<Vec<_>>(),
                        n.factors
                    );
                }
                steps += usize::from((n.probability - s.probability).abs() > 1e-9);
                let names: Vec<&str> = s.factors.iter().map(|f| f.name.as_str()).collect();
                let native_names: Vec<&str> = n.factors.iter().map(|f| f.0).collect();
                ensure!(
                    names == native_names,
                    "deal {}: the {way} model's factors are {names:?}, the native one's {native_names:?}",
                    from + i
                );
                for (f, (_, c)) in s.factors.iter().zip(&n.factors) {
                    let diff = (f.contribution - c).abs();
                    ensure!(
                        diff < 1e-4 + 1e-9,
                        "deal {}: the {way} model's {} is {}, the native one's {c}",
                        from + i,
                        f.name,
                        f.contribution
                    );
                    factor_rounding += usize::from(diff > 1e-9);
                }
            }
        }
        from += batch.len();
        if from >= next_report && from < deals {
            eprintln!("  {from} deals scored three ways in {:.0} s", started.elapsed().as_secs_f64());
            next_report += deals / 10;
        }
    }
    let rate = |t: Duration| deals as f64 / t.as_secs_f64();
    let (native, wasm, kept, rhai) = (rate(native_t), rate(wasm_t), rate(kept_t), rate(rhai_t));
    for (what, r, t) in [
        ("native Rust (a plain function, the partner read from the store)", native, native_t),
        ("WASM plugin rust_score.wasm::score_deal (fresh instance, JSON both ways, read_partner)", wasm, wasm_t),
        ("the same plugin, its instance kept between calls (runtimes.wasm.reuse)", kept, kept_t),
        ("Rhai script scoring/logistic.rhai::win_probability (partner() read)", rhai, rhai_t),
    ] {
        say!(
            "{what}: {r:.0} deals/s ({:.2} s, {:.2} µs a deal)",
            t.as_secs_f64(),
            t.as_secs_f64() * 1e6 / deals as f64
        );
    }
    say!(
        "ratios: native/WASM {:.1}x, WASM/Rhai {:.2}x, native/Rhai {:.1}x; kept/fresh WASM {:.2}x",
        native / wasm,
        wasm / rhai,
        native / rhai,
        kept / wasm
    );
    say!(
        "agreement: all {deals} deals within the model's rounding; {steps} probabilities one 0.1 step apart at a rounding midpoint, {factor_rounding} contributions one 0.0001 step apart"
    );
    Ok(())
}
