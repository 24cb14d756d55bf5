//! The relationship strategies over a demo installation's client partners (100,000 in the
//! 1,000,000-deal demo): the clients' classes, the evaluation through the shipped Rhai rule,
//! and with `--apply` the writes, twice (the second must write nothing new).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use crmkit::say;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

/// `crmkit-bench strategy --dir D [--apply]`. The installation's config and scripts are set
/// to the shipped demo ones first (a demo made by an older version has no strategies).
pub fn strategy(dir: &Path, apply: bool) -> Result<()> {
    std::fs::write(dir.join("config/crmkit.toml"), crmkit_demo::DEMO_CONFIG)?;
    for (name, text) in crmkit_core::installation::SHIPPED_SCRIPTS {
        let path = dir.join("scripts").join(name);
        std::fs::create_dir_all(path.parent().expect("a folder"))?;
        std::fs::write(path, text)?;
    }
    let t = Instant::now();
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let (engine, _runtimes) = crmkit::engine_and_scripts(&inst)?;
    let opened = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let classes = inst.client_classes()?;
    let classed = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let today = inst.store().clock().now().date();
    let ev = crmkit_core::strategy::evaluate(&inst.store().read()?, engine.hooks(), &classes, today)?;
    let evaluated = t.elapsed().as_secs_f64();
    let n = ev.outcomes.len() + ev.faults.len();
    ensure!(ev.faults.is_empty(), "the rule faulted: {:?}", ev.faults.first());
    let calls: u64 = engine.hooks().stats().iter().map(|s| s.calls).sum();
    let nanos: u64 = engine.hooks().stats().iter().map(|s| s.nanos).sum();
    say!(
        "crmkit-bench strategy: {n} client partners of {} ({} due for contact, {} change segment)",
        dir.display(),
        ev.outcomes.iter().filter(|o| o.overdue).count(),
        ev.outcomes.iter().filter(|o| o.changes()).count()
    );
    say!("  open with scripts and plugins  {opened:>8.2} s");
    say!("  the clients' classes           {classed:>8.2} s");
    say!(
        "  evaluate (rule + figures)      {evaluated:>8.2} s   {:.0} partners/s; the rule {:.2} s of it ({} calls, {:.1} µs each)",
        n as f64 / evaluated,
        nanos as f64 / 1e9,
        calls,
        nanos as f64 / 1e3 / calls.max(1) as f64
    );
    say!("  a `crmkit strategy` run: {:.2} s (classes and evaluation)", classed + evaluated);
    if apply {
        for round in ["first", "second"] {
            let t = Instant::now();
            let ev = crmkit_core::strategy::evaluate(&inst.store().read()?, engine.hooks(), &classes, today)?;
            let e = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let w = inst.store().transact(None, |tx| crmkit_core::strategy::apply(tx, &engine, &ev))?;
            say!(
                "  --apply, {round} run: evaluate {e:.2} s, apply {:.2} s: {} segments changed, {} tasks created, {} open already, {} without executor",
                t.elapsed().as_secs_f64(),
                w.segments_changed,
                w.tasks_created,
                w.tasks_open_already,
                w.without_executor
            );
        }
    }
    Ok(())
}
