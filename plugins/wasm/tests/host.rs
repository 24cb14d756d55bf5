//! The plugin host run for real: modules written here in WAT, compiled by wasmtime, loaded
//! through their manifests and called; every way a plugin can be wrong is refused or stopped
//! with its plugin, export and cause named, and the host goes on serving the others.

use std::path::Path;
use std::time::{Duration, Instant};

use crmkit_core::hooks::{accept, Answer, CallLimits, HookPoint, Reply};
use crmkit_wasm::{Compiled, PluginError, PluginHost, WasmSettings};

#[path = "support/skeleton.rs"]
mod skeleton;
use skeleton::BASE;

/// A guard that rejects a move to the negotiation stage and allows anything else: it looks
/// for `"to_stage":"negotiation"` in its input.
const GUARD: &str = r#"
  (func (export "crmkit_abi_v1"))
  (data (i32.const 64) "\"to_stage\":\"negotiation\"")
  (data (i32.const 128) "{\"reject\":\"Negotiation starts from an agreed quote\",\"field\":\"stage\"}")
  (data (i32.const 256) "null")
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $j i32) (local $end i32)
    (local.set $end (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 24)))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (local.get $i) (local.get $end)))
        (local.set $j (i32.const 0))
        (block $miss
          (loop $cmp
            (br_if $miss (i32.ne (i32.load8_u (i32.add (local.get $i) (local.get $j)))
                                 (i32.load8_u (i32.add (i32.const 64) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (if (i32.eq (local.get $j) (i32.const 24))
              (then (return (call $pack (i32.const 128) (i32.const 68)))))
            (br $cmp)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (call $pack (i32.const 256) (i32.const 4)))
"#;

const MOVE_TO_NEGOTIATION: &str = r#"{"v":1,"hook":"deal.before_transition","transition":{"how":"manual","from_stage":"proposal","to_stage":"negotiation"}}"#;
const MOVE_TO_PROPOSAL: &str = r#"{"v":1,"hook":"deal.before_transition","transition":{"how":"manual","from_stage":"lead","to_stage":"proposal"}}"#;

/// A plugin folder `name` in `plugins`, from `body` (WAT inside `(module …)` after
/// [`BASE`]) and the manifest's lines besides name, version, abi and sha256.
fn plugin(plugins: &Path, name: &str, body: &str, manifest: &str) -> Vec<u8> {
    let wasm = wat::parse_str(format!("(module {body} {BASE})")).unwrap();
    write(plugins, name, &wasm, manifest);
    wasm
}

fn write(plugins: &Path, name: &str, wasm: &[u8], manifest: &str) {
    crmkit_wasm::install(plugins, name, "1.0.0", wasm, manifest).unwrap();
}

const HOOK: &str = "[hooks]\n\"deal.before_transition\" = \"guard\"";

fn call(host: &PluginHost, plugin: &str, input: &str) -> Result<serde_json::Value, PluginError> {
    host.call(plugin, "guard", input.as_bytes(), None, CallLimits::default())
}

#[track_caller]
fn fails(result: Result<impl std::fmt::Debug, PluginError>, parts: &[&str]) {
    let e = result.unwrap_err().to_string();
    for p in parts {
        assert!(e.contains(p), "{e:?} does not contain {p:?}");
    }
}

fn settings() -> WasmSettings {
    WasmSettings { timeout_ms: 100, ..WasmSettings::default() }
}

#[test]
fn a_wat_guard_allows_and_rejects_by_reading_its_input() {
    let dir = tempfile::tempdir().unwrap();
    plugin(dir.path(), "quote_guard", GUARD, HOOK);
    let host = PluginHost::new(dir.path(), None, &settings()).unwrap();
    assert_eq!(host.load_all(), vec![]);
    let point = HookPoint::DealBeforeTransition;
    let reject = call(&host, "quote_guard", MOVE_TO_NEGOTIATION).unwrap();
    assert_eq!(
        accept(point, "quote_guard.wasm::guard", Reply::Json(reject)).unwrap(),
        Answer::Reject { message: "Negotiation starts from an agreed quote".into(), field: Some("stage".into()) }
    );
    let allow = call(&host, "quote_guard", MOVE_TO_PROPOSAL).unwrap();
    assert_eq!(accept(point, "quote_guard.wasm::guard", Reply::Json(allow)).unwrap(), Answer::Allow);
}

#[test]
fn compiled_code_is_kept_and_taken_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let cache = dir.path().join("cache");
    plugin(&plugins, "quote_guard", GUARD, HOOK);
    let first = PluginHost::new(&plugins, Some(&cache), &settings()).unwrap();
    assert!(matches!(first.load("quote_guard").unwrap().compiled, Compiled::Now { .. }));
    let second = PluginHost::new(&plugins, Some(&cache), &settings()).unwrap();
    assert_eq!(second.load("quote_guard").unwrap().compiled, Compiled::FromCache);
    assert!(call(&second, "quote_guard", MOVE_TO_NEGOTIATION).unwrap().get("reject").is_some());
    // An entry replaced by someone else is compiled over, not run.
    for e in std::fs::read_dir(&cache).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "cwasm") {
            let mut bytes = std::fs::read(e.path()).unwrap();
            let n = bytes.len();
            bytes[n / 2] ^= 0xff;
            std::fs::write(e.path(), bytes).unwrap();
        }
    }
    let third = PluginHost::new(&plugins, Some(&cache), &settings()).unwrap();
    assert!(matches!(third.load("quote_guard").unwrap().compiled, Compiled::Now { .. }));
}

#[test]
fn the_manifest_config_reaches_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
      (import "crmkit_v1" "config" (func $config (result i64)))
      (func (export "crmkit_abi_v1"))
      (func (export "guard") (param i32 i32) (result i64) (call $config))"#;
    plugin(dir.path(), "configured", body, &format!("{HOOK}\n[config]\nthreshold = 70\nname = \"x\""));
    let host = PluginHost::new(dir.path(), None, &settings()).unwrap();
    host.load_all();
    assert_eq!(call(&host, "configured", "{}").unwrap(), serde_json::json!({"threshold": 70, "name": "x"}));
}

/// Every bad module the host can tell, each refused at load with its cause, while a good
/// plugin beside them loads and answers.
#[test]
fn bad_modules_are_refused_at_load_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    plugin(p, "good", GUARD, HOOK);
    write(p, "not_wasm", b"#!/bin/sh\necho hi\n", HOOK);
    plugin(p, "no_marker", &GUARD.replace("(func (export \"crmkit_abi_v1\"))", ""), HOOK);
    plugin(p, "version2", &GUARD.replace("crmkit_abi_v1", "crmkit_abi_v2"), HOOK);
    let wasm = wat::parse_str(format!("(module {GUARD} {BASE})")).unwrap();
    write(p, "sha_mismatch", &wasm, HOOK);
    let manifest = p.join("sha_mismatch/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let sha = text.split('"').nth(5).unwrap().to_string();
    std::fs::write(&manifest, text.replace(&sha, &"0".repeat(64))).unwrap();
    plugin(p, "no_export", GUARD, "[hooks]\n\"deal.before_transition\" = \"gaurd\"");
    plugin(
        p,
        "wrong_signature",
        r#"(func (export "crmkit_abi_v1")) (func (export "guard") (param i32) (result i32) (i32.const 0))"#,
        HOOK,
    );
    let unknown_import = format!(r#"(import "crmkit_v1" "write_deal" (func (param i32 i32))) {GUARD}"#);
    plugin(p, "unknown_import", &unknown_import, HOOK);
    let env_import = format!(r#"(import "env" "abort" (func (param i32))) {GUARD}"#);
    plugin(p, "env_import", &env_import, HOOK);
    let wasi =
        format!(r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {GUARD}"#);
    plugin(p, "wasi", &wasi, HOOK);
    let reads = format!(r#"(import "crmkit_v1" "read_partner" (func (param i32 i32) (result i64))) {GUARD}"#);
    plugin(p, "not_requested", &reads, HOOK);
    plugin(p, "not_granted", &reads, &format!("capabilities = [\"read_partner\"]\n{HOOK}"));
    plugin(p, "greedy", GUARD, &format!("{HOOK}\n[limits]\nmemory_mb = 4096"));
    let wrong_import_sig = format!(r#"(import "crmkit_v1" "now_ms" (func (result i32))) {GUARD}"#);
    plugin(p, "wrong_import_sig", &wrong_import_sig, HOOK);

    let host = PluginHost::new(p, None, &settings()).unwrap();
    let errors = host.load_all();
    let of = |name: &str| errors.iter().find(|e| e.plugin == name).map(|e| e.to_string()).unwrap_or_default();
    let has = |name: &str, parts: &[&str]| {
        let e = of(name);
        for part in parts {
            assert!(e.contains(part), "{name}: {e:?} does not contain {part:?}");
        }
    };
    has("not_wasm", &["plugin not_wasm:", "not_wasm.wasm is not a WebAssembly module"]);
    has("no_marker", &["exports no ABI version marker", "crmkit_abi_v1", "supported: 1"]);
    has("version2", &["found ABI version 2 (export crmkit_abi_v2), supported: 1"]);
    has("sha_mismatch", &[&format!("is {sha}, plugin.toml says {}", "0".repeat(64))]);
    has("no_export", &["plugin no_export, export gaurd:", "deal.before_transition is not exported"]);
    has("wrong_signature", &["export guard:", "is a function (i32) -> (i32), it must be (i32, i32) -> (i64)"]);
    has("unknown_import", &["imports crmkit_v1.write_deal, which the host does not provide"]);
    has("env_import", &["imports env.abort, which the host does not provide"]);
    has("wasi", &["imports wasi_snapshot_preview1.fd_write: WASI is not part of ABI version 1"]);
    has("not_requested", &["imports crmkit_v1.read_partner, which needs capability read_partner"]);
    has(
        "not_granted",
        &["capability read_partner is requested in plugin.toml but not granted", "runtimes.wasm.grants.not_granted"],
    );
    has("greedy", &["limits.memory_mb = 4096", "at most 64 (runtimes.wasm.max_memory_mb)"]);
    has("wrong_import_sig", &["imports crmkit_v1.now_ms, which is a function () -> (i32), it must be () -> (i64)"]);
    assert_eq!(of("good"), "");
    assert_eq!(errors.len(), 13, "{errors:#?}");
    // The good one serves; a refused one says why when called.
    assert!(call(&host, "good", MOVE_TO_NEGOTIATION).unwrap().get("reject").is_some());
    fails(call(&host, "version2", MOVE_TO_NEGOTIATION), &["found ABI version 2"]);

    // Granted, the capability links.
    let mut granted = settings();
    granted.grants.insert("not_granted".into(), vec!["read_partner".into()]);
    let host = PluginHost::new(p, None, &granted).unwrap();
    host.load("not_granted").unwrap();
}

/// Every way a call can go wrong, each stopped and named, the host serving the good plugin
/// after each.
#[test]
fn faulting_calls_are_stopped_and_named_and_the_host_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let marker = r#"(func (export "crmkit_abi_v1"))"#;
    let guard = |name: &str, body: &str| {
        plugin(p, name, &format!("{marker} (func (export \"guard\") (param i32 i32) (result i64) {body})"), HOOK)
    };
    plugin(p, "good", GUARD, HOOK);
    guard("trap", "unreachable");
    guard("spin", "(loop $l (br $l)) (i64.const 0)");
    guard("grow", "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i64.const 0)");
    guard("out_of_bounds", "(call $pack (i32.const 65000) (i32.const 1000))");
    guard("huge_pointer", "(i64.const -1)");
    plugin(
        p,
        "not_json",
        &format!(
            r#"{marker} (data (i32.const 16) "allow!") (func (export "guard") (param i32 i32) (result i64) (call $pack (i32.const 16) (i32.const 6)))"#
        ),
        HOOK,
    );
    plugin(
        p,
        "wrong_schema",
        &format!(
            r#"{marker} (data (i32.const 16) "42") (func (export "guard") (param i32 i32) (result i64) (call $pack (i32.const 16) (i32.const 2)))"#
        ),
        HOOK,
    );
    plugin(
        p,
        "own_error",
        &format!(
            r#"{marker} (data (i32.const 16) "{{\"error\":\"no model\"}}") (func (export "guard") (param i32 i32) (result i64) (call $pack (i32.const 16) (i32.const 20)))"#
        ),
        HOOK,
    );
    guard("oversized", "(call $pack (i32.const 0) (i32.const 5000))");
    let garbage_alloc = GUARD.to_string() + r#"(func (export "crmkit_alloc") (param i32) (result i32) (i32.const -8))"#;
    let wasm = wat::parse_str(format!(
        "(module (memory (export \"memory\") 1) (func $pack (param $ptr i32) (param $len i32) (result i64) (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))) {garbage_alloc})"
    ))
    .unwrap();
    write(p, "garbage_alloc", &wasm, HOOK);
    plugin(
        p,
        "chatty",
        &format!(
            r#"(import "crmkit_v1" "now_ms" (func $now (result i64))) {marker} (func (export "guard") (param i32 i32) (result i64) (loop $l (drop (call $now)) (br $l)) (i64.const 0))"#
        ),
        HOOK,
    );

    let limits = WasmSettings { max_answer_bytes: 4096, max_host_calls: 100, ..settings() };
    let host = PluginHost::new(p, None, &limits).unwrap();
    assert_eq!(host.load_all(), vec![]);
    let good = |host: &PluginHost| assert!(call(host, "good", MOVE_TO_NEGOTIATION).unwrap().get("reject").is_some());

    fails(call(&host, "trap", "{}"), &["plugin trap, export guard: trapped", "unreachable"]);
    good(&host);
    let started = Instant::now();
    fails(call(&host, "spin", "{}"), &["plugin spin, export guard: stopped after 100 ms, its time limit"]);
    let took = started.elapsed();
    // How soon is a figure of the benchmark (docs/benchmarks.md); here only that the loop
    // does not run on, with room for a loaded machine.
    assert!(took < Duration::from_secs(5), "a 100 ms limit stopped the loop after {took:?}");
    good(&host);
    fails(call(&host, "grow", "{}"), &["plugin grow, export guard: memory would grow", "past its limit of 16 MiB"]);
    good(&host);
    fails(call(&host, "out_of_bounds", "{}"), &["export guard: answered a pointer and length that reach past its memory (65000..66000, memory is 65536 bytes)"]);
    fails(call(&host, "huge_pointer", "{}"), &["more than runtimes.wasm.max_answer_bytes (4096)"]);
    fails(call(&host, "not_json", "{}"), &["export guard: answered something that is not JSON", "allow!"]);
    let wrong = call(&host, "wrong_schema", "{}").unwrap();
    let e = accept(HookPoint::DealBeforeTransition, "wrong_schema.wasm::guard", Reply::Json(wrong)).unwrap_err();
    assert!(e.to_string().contains("handler wrong_schema.wasm::guard failed: answered a number (42)"), "{e}");
    fails(call(&host, "own_error", "{}"), &["plugin own_error, export guard: reported an error: no model"]);
    fails(call(&host, "oversized", "{}"), &["answered 5000 bytes, more than runtimes.wasm.max_answer_bytes (4096)"]);
    fails(
        call(&host, "garbage_alloc", "{}"),
        &["export guard: crmkit_alloc(2) returned 4294967288, which is not room for 2 bytes"],
    );
    fails(
        call(&host, "chatty", "{}"),
        &["plugin chatty, export guard: made more than 100 host calls in one call (the last: now_ms"],
    );
    let big = "x".repeat(limits.max_input_bytes + 1);
    fails(call(&host, "good", &big), &["the input is", "more than runtimes.wasm.max_input_bytes"]);
    good(&host);
}

#[test]
fn fuel_stops_a_call_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"(func (export "crmkit_abi_v1")) (func (export "guard") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#;
    plugin(dir.path(), "spin", body, HOOK);
    plugin(dir.path(), "good", GUARD, HOOK);
    let host =
        PluginHost::new(dir.path(), None, &WasmSettings { fuel: Some(1_000_000), timeout_ms: 1000, ..settings() })
            .unwrap();
    host.load_all();
    fails(call(&host, "spin", "{}"), &["ran out of fuel (1000000 units"]);
    let few = CallLimits { max_operations: Some(50), ..CallLimits::default() };
    fails(host.call("good", "guard", MOVE_TO_NEGOTIATION.as_bytes(), None, few), &["ran out of fuel (50 units"]);
    call(&host, "good", MOVE_TO_NEGOTIATION).unwrap();
}

/// A guard that counts its calls in a global and answers the count's last digit as `[N]`; an
/// input starting with `t` traps. `reset` is the body of its `crmkit_reset`, when it has one.
fn counter(reset: Option<&str>) -> String {
    let reset = reset.map(|body| format!(r#"(func (export "crmkit_reset") {body})"#)).unwrap_or_default();
    format!(
        r#"(func (export "crmkit_abi_v1"))
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 512) "[0]")
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 116)) (then unreachable))
    (i32.store8 (i32.const 513) (i32.add (i32.const 48) (i32.rem_u (global.get $calls) (i32.const 10))))
    (call $pack (i32.const 512) (i32.const 3)))
  {reset}"#
    )
}

/// The reset that frees what a call left: the allocator of [`BASE`] starts over.
const RESET: &str = "(global.set $heap (i32.const 4096))";

fn count(host: &PluginHost, plugin: &str) -> i64 {
    call(host, plugin, "{}").unwrap()[0].as_i64().unwrap()
}

#[test]
fn fresh_instances_keep_nothing_and_kept_ones_start_fresh_after_a_fault() {
    let dir = tempfile::tempdir().unwrap();
    plugin(dir.path(), "counter", &counter(Some(RESET)), HOOK);
    let fresh = PluginHost::new(dir.path(), None, &settings()).unwrap();
    let p = fresh.load("counter").unwrap();
    assert!(!p.reuses_instances());
    assert_eq!((count(&fresh, "counter"), count(&fresh, "counter"), count(&fresh, "counter")), (1, 1, 1));
    assert_eq!(p.idle_instances(), 0);

    let kept =
        PluginHost::new(dir.path(), None, &WasmSettings { reuse: vec!["counter".into()], ..settings() }).unwrap();
    let p = kept.load("counter").unwrap();
    assert!(p.reuses_instances());
    assert!(kept.status()[0].reuses_instances);
    assert_eq!((count(&kept, "counter"), count(&kept, "counter"), count(&kept, "counter")), (1, 2, 3));
    assert_eq!(p.idle_instances(), 1);
    fails(call(&kept, "counter", "trap"), &["plugin counter, export guard: trapped", "unreachable"]);
    assert_eq!(p.idle_instances(), 0, "a call that faults drops its instance");
    assert_eq!((count(&kept, "counter"), count(&kept, "counter")), (1, 2));
}

#[test]
fn a_kept_instance_lives_on_what_crmkit_reset_frees() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "[limits]\nmemory_mb = 1";
    plugin(dir.path(), "frees", &counter(Some(RESET)), &format!("{HOOK}\n{limits}"));
    plugin(dir.path(), "keeps", &counter(Some("")), &format!("{HOOK}\n{limits}"));
    let settings = WasmSettings { reuse: vec!["frees".into(), "keeps".into()], ..settings() };
    let host = PluginHost::new(dir.path(), None, &settings).unwrap();
    assert_eq!(host.load_all(), vec![]);
    // 100 KiB of input a call: a 1 MiB memory holds ten calls' worth unless they are freed.
    let input = format!("{{\"x\":\"{}\"}}", "y".repeat(100 << 10));
    let run = |plugin: &str| -> Result<(), PluginError> {
        for _ in 0..40 {
            host.call(plugin, "guard", input.as_bytes(), None, CallLimits::default())?;
        }
        Ok(())
    };
    run("frees").unwrap();
    fails(run("keeps"), &["plugin keeps, export guard: memory would grow", "past its limit of 1 MiB"]);
    // The instance that ran out is dropped: the next call starts in a fresh one.
    assert_eq!(count(&host, "keeps"), 1);
}

#[test]
fn a_kept_plugin_must_export_crmkit_reset() {
    let dir = tempfile::tempdir().unwrap();
    plugin(dir.path(), "counter", &counter(None), HOOK);
    plugin(dir.path(), "odd_reset", &(counter(None) + r#"(func (export "crmkit_reset") (param i32))"#), HOOK);
    let settings = WasmSettings { reuse: vec!["counter".into()], ..settings() };
    let host = PluginHost::new(dir.path(), None, &settings).unwrap();
    fails(
        host.load("counter"),
        &["plugin counter: runtimes.wasm.reuse lists counter, but it does not export crmkit_reset (a function () -> ())"],
    );
    fails(host.load("odd_reset"), &["plugin odd_reset: crmkit_reset: is a function (i32) -> (), it must be () -> ()"]);
}

#[test]
fn instances_kept_idle_give_up_their_slots_and_a_full_pool_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let spin = r#"(func (export "crmkit_abi_v1")) (func (export "guard") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#;
    plugin(dir.path(), "counter", &counter(Some(RESET)), HOOK);
    plugin(dir.path(), "spin", spin, &format!("{HOOK}\n[limits]\ntimeout_ms = 2000"));
    plugin(dir.path(), "good", GUARD, HOOK);
    let settings =
        WasmSettings { reuse: vec!["counter".into()], instance_slots: 1, max_timeout_ms: 5000, ..settings() };
    let host = PluginHost::new(dir.path(), None, &settings).unwrap();
    assert_eq!(host.load_all(), vec![]);
    assert_eq!(count(&host, "counter"), 1);
    let counter = host.plugin("counter").unwrap();
    assert_eq!(counter.idle_instances(), 1, "the kept instance holds the only slot");
    call(&host, "good", MOVE_TO_PROPOSAL).unwrap();
    assert_eq!(counter.idle_instances(), 0, "it gave the slot up for another plugin's call");

    std::thread::scope(|s| {
        // The spinning call may find the slot taken by one of the calls below: it tries
        // again until it holds the slot, and then holds it for its two seconds.
        let spinning = s.spawn(|| loop {
            match call(&host, "spin", "{}") {
                Err(e) if e.to_string().contains("no instance slot is free") => std::thread::yield_now(),
                other => break other,
            }
        });
        let refused = loop {
            assert!(!spinning.is_finished(), "the spinning call ended before a second call was tried");
            match call(&host, "good", MOVE_TO_PROPOSAL) {
                Err(e) => break e,
                Ok(_) => std::thread::yield_now(),
            }
        };
        assert!(
            refused.to_string().contains("plugin good, export guard: no instance slot is free: 1 instances run or are kept at once (runtimes.wasm.instance_slots)"),
            "{refused}"
        );
        fails(spinning.join().unwrap(), &["stopped after 2000 ms"]);
    });
    call(&host, "good", MOVE_TO_PROPOSAL).unwrap();
}

#[test]
fn install_writes_a_folder_the_host_loads_and_refuses_a_name_that_is_no_plugin_s() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(format!("(module {GUARD} {BASE})")).unwrap();
    let sha = crmkit_wasm::install(dir.path(), "quote_guard", "2.1.0", &wasm, HOOK).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("quote_guard/plugin.toml")).unwrap();
    assert!(
        manifest.starts_with(&format!("name = \"quote_guard\"\nversion = \"2.1.0\"\nabi = 1\nsha256 = \"{sha}\"\n"))
    );
    let host = PluginHost::new(dir.path(), None, &settings()).unwrap();
    assert_eq!(host.load_all(), vec![]);
    assert!(call(&host, "quote_guard", MOVE_TO_NEGOTIATION).unwrap().get("reject").is_some());

    let empty = tempfile::tempdir().unwrap();
    for (name, version) in [("../escape", "1.0.0"), ("Quote", "1.0.0"), ("", "1.0.0"), ("quote", " ")] {
        let e = crmkit_wasm::install(empty.path(), name, version, &wasm, HOOK).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{name:?} {version:?}: {e}");
    }
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "a refused install writes nothing");
}
