//! WASM plugin figures: a guard's call with the hook contract's JSON both ways — in a fresh
//! instance from the pool of slots, in a fresh instance mapped for the call, and in an
//! instance kept between calls — how soon a spinning plugin is stopped, and loading ten
//! plugins compiled and then from the compiled-code cache.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use crmkit::say;
use crmkit_core::hooks::{CallLimits, HookInput};
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;
use crmkit_wasm::{Compiled, PluginHost, WasmSettings};

#[path = "../../plugins/wasm/tests/support/skeleton.rs"]
mod skeleton;
use skeleton::{BASE, MARKER};

/// A guard that reads its whole input (it counts the quotes in it, as a parser would touch
/// every byte) and answers `null`, allowing the change. `$salt` makes modules differ.
fn guard_wat(salt: u32) -> String {
    format!(
        r#"(module
  {BASE}
  (global $salt i32 (i32.const {salt}))
  {MARKER}
  (func (export "crmkit_reset") (global.set $heap (i32.const 4096)))
  (data (i32.const 16) "null")
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $quotes i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 34))
          (then (local.set $quotes (i32.add (local.get $quotes) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 4)))
  (func (export "spin") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))"#
    )
}

/// Writes plugin `name` (the guard with `salt`) into `plugins`: module and manifest.
fn install(plugins: &Path, name: &str, salt: u32, timeout_ms: u64) -> Result<()> {
    let module = wat::parse_str(guard_wat(salt))?;
    let manifest = format!("\n[hooks]\n\"deal.before_transition\" = \"guard\"\n\n[limits]\ntimeout_ms = {timeout_ms}");
    crmkit_wasm::install(plugins, name, "1.0.0", &module, &manifest)?;
    Ok(())
}
fn micros(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A deal as a plugin is given it when little more than the deal is asked about: about 300
/// bytes of JSON.
fn small_context(deal: &crmkit_core::model::Deal) -> serde_json::Value {
    serde_json::json!({
        "v": 1,
        "hook": "deal.score",
        "deal": {
            "id": deal.id.to_string(),
            "title": deal.title,
            "partner": deal.partner.to_string(),
            "stage": deal.stage,
            "status": "open",
            "amount": deal.amount.amount.to_string(),
            "currency": "RUB",
            "source": deal.source,
            "probability": deal.probability,
            "expected_close": deal.expected_close.map(|d| d.to_string()),
        }
    })
}

/// `crmkit-bench wasm`.
pub fn wasm(calls: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let inst = Installation::init(&tmp.path().join("bench"), None, Arc::new(SystemClock))?;
    let plugins = tmp.path().join("plugins");
    let cache = tmp.path().join("plugin-cache");
    const DEADLINE_MS: u64 = 20;
    install(&plugins, "guard", 0, DEADLINE_MS)?;
    let settings = WasmSettings::default();
    let host = PluginHost::new(&plugins, Some(&cache), &settings)?;
    host.load("guard")?;

    let (deal, transition) = super::guard_subject(&inst)?;
    let snapshot = inst.store().read()?;
    let input = super::guard_input(&deal, &transition, &snapshot);
    let full = serde_json::to_vec(&input.to_wire())?.len();
    let context = small_context(&deal);
    let small = serde_json::to_vec(&context)?.len();
    say!("crmkit-bench wasm: a guard, {calls} calls each way; the JSON written, the call made, the answer read");
    say!("| instance | input | median | p99 |");
    say!("| --- | --- | ---: | ---: |");
    let ways = [
        ("fresh, from the pool of slots (default)", WasmSettings::default()),
        (
            "fresh, memory mapped per call (instance_slots = 0)",
            WasmSettings { instance_slots: 0, ..WasmSettings::default() },
        ),
        ("kept between calls (reuse)", WasmSettings { reuse: vec!["guard".into()], ..WasmSettings::default() }),
    ];
    for (way, settings) in ways {
        let host = PluginHost::new(&plugins, Some(&cache), &settings)?;
        host.load("guard")?;
        // As the engine calls a plugin: the input written as JSON, the call, the answer read
        // as JSON and checked against the point.
        let guard = |input: &HookInput<'_>| -> Result<crmkit_core::hooks::Answer> {
            let json = serde_json::to_vec(&input.to_wire())?;
            let value = host.call("guard", "guard", &json, None, CallLimits::default())?;
            Ok(crmkit_core::hooks::accept(input.hook, "guard.wasm::guard", crmkit_core::hooks::Reply::Json(value))?)
        };
        let (median, p99) = super::time_calls(calls, || guard(&input))?;
        say!("| {way} | the engine's guard input, {full} bytes | {:.2} µs | {:.2} µs |", micros(median), micros(p99));
        let scored = || -> Result<serde_json::Value> {
            let json = serde_json::to_vec(&context)?;
            Ok(host.call("guard", "guard", &json, None, CallLimits::default())?)
        };
        let (median, p99) = super::time_calls(calls, scored)?;
        say!("| {way} | a deal context, {small} bytes | {:.2} µs | {:.2} µs |", micros(median), micros(p99));
    }

    let (median_stop, worst) = super::time_stops(|| {
        let stopped = host.call("guard", "spin", b"{}", None, CallLimits::default());
        anyhow::ensure!(stopped.is_err(), "the spinning plugin was not stopped");
        Ok(())
    })?;
    say!(
        "a spinning plugin stopped after: median {:.1} ms, worst {:.1} ms of 11 (its limit {DEADLINE_MS} ms; worst/limit {:.2})",
        median_stop.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3 / DEADLINE_MS as f64
    );

    let ten = tmp.path().join("ten");
    for i in 0..10 {
        install(&ten, &format!("plugin{i}"), i + 1, DEADLINE_MS)?;
    }
    let ten_cache = tmp.path().join("ten-cache");
    for start in ["first start (compiling)", "second start (compiled-code cache)"] {
        let t = Instant::now();
        let host = PluginHost::new(&ten, Some(&ten_cache), &settings)?;
        let errors = host.load_all();
        let took = t.elapsed();
        anyhow::ensure!(errors.is_empty(), "the plugins load: {errors:?}");
        let loaded = host.loaded();
        let compiled: Vec<u64> = loaded
            .iter()
            .filter_map(|p| match p.compiled {
                Compiled::Now { ms } => Some(ms),
                Compiled::FromCache => None,
            })
            .collect();
        say!(
            "{start}: 10 plugins loaded in {:.1} ms; {} compiled ({}), {} from the cache",
            took.as_secs_f64() * 1e3,
            compiled.len(),
            if compiled.is_empty() {
                "none".to_string()
            } else {
                format!("{} ms each", compiled.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))
            },
            loaded.len() - compiled.len()
        );
    }
    Ok(())
}
