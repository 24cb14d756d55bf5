//! WASM plugins from the command line and the API, run for real (the binary, wasmtime,
//! modules written in WAT): `crmkit plugin inspect|check|run` with their exact output and
//! exit status, `crmkit check` naming a plugin that no longer loads, and the scripts status
//! and reload covering plugins — a changed module is put in use without a restart, a broken
//! one keeps the running version.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::api::Served;
use crate::cli::{binary, ok, Site};
use crate::skeleton::{BASE, MARKER};

/// Rejects a move to `stage` (it finds `"to_stage":"STAGE"` in its input) with `message`,
/// allows anything else.
pub(crate) fn guard(stage: &str, message: &str) -> String {
    let reject = format!(r#"{{"reject":"{message}","field":"stage"}}"#);
    let needle = format!(r#""to_stage":"{stage}""#);
    format!(
        r#"
  (data (i32.const 64) "{}")
  (data (i32.const 128) "{}")
  (data (i32.const 1024) "null")
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $j i32) (local $end i32)
    (local.set $end (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const {})))
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
            (if (i32.eq (local.get $j) (i32.const {}))
              (then (return (call $pack (i32.const 128) (i32.const {})))))
            (br $cmp)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (call $pack (i32.const 1024) (i32.const 4)))
"#,
        needle.replace('"', "\\\""),
        reject.replace('"', "\\\""),
        needle.len(),
        needle.len(),
        reject.len()
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes plugin `name` into `plugins/NAME/`: the module (`imports`, [`BASE`], `body`) and
/// its manifest declaring `guard` for `deal.before_transition`; the module's bytes.
pub(crate) fn write_plugin(plugins: &Path, name: &str, imports: &str, body: &str) -> Vec<u8> {
    let wasm = wat::parse_str(format!("(module {imports} {BASE} {body})")).unwrap();
    crmkit_wasm::install(plugins, name, "1.0.0", &wasm, "\n[hooks]\n\"deal.before_transition\" = \"guard\"").unwrap();
    wasm
}

/// A good guard plugin refusing a move to negotiation, as [`write_plugin`] writes it.
pub(crate) fn good_plugin(plugins: &Path, name: &str, message: &str) -> Vec<u8> {
    write_plugin(plugins, name, "", &format!("{MARKER} {}", guard("negotiation", message)))
}

/// What a command printed and how it ended, `DIR` for `dir`.
#[derive(Debug, PartialEq, Eq)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Ran {
    let o = Command::new(binary()).args(args).output().expect("crmkit runs");
    let d = dir.to_str().unwrap();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(d, "DIR");
    Ran { code: o.status.code(), stdout: clean(&o.stdout), stderr: clean(&o.stderr) }
}

/// A deal moving from proposal to `to`, as the engine's input has it (docs/hooks.md).
pub(crate) fn move_to(to: &str) -> String {
    format!(
        r#"{{"v":1,"hook":"deal.before_transition","process_kind":"b2b_sale","entity":"deal","actor":null,"before":null,"after":null,"transition":{{"how":"manual","from_stage":"proposal","to_stage":"{to}","from_status":"in_progress","to_status":"in_progress","note":null,"closes":false,"leaves_stage":true}},"task":null,"depth":0}}"#
    )
}

#[test]
fn inspect_lists_a_module_and_names_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path();
    let wasm = good_plugin(plugins, "quote", "needs a quote first");
    let sha = hex(&Sha256::digest(&wasm));
    let file = plugins.join("quote/quote.wasm");
    let good = run(plugins, &["plugin", "inspect", file.to_str().unwrap()]);
    assert_eq!(
        good,
        Ran {
            code: Some(0),
            stdout: format!(
                "module: DIR/quote/quote.wasm ({} bytes, sha256 {sha})\n\
                 abi: 1 (export crmkit_abi_v1)\n\
                 exports: 4\n  memory: memory 1 page(s)\n  crmkit_alloc: func (i32) -> (i32)\n  crmkit_abi_v1: func () -> ()\n  guard: func (i32, i32) -> (i64)\n\
                 imports: 0\n\
                 manifest: DIR/quote/plugin.toml (quote 1.0.0, abi 1)\n  hook deal.before_transition: export guard\n\
                 ok\n",
                wasm.len()
            ),
            stderr: String::new(),
        }
    );

    // No version marker, and an import it is not given a capability for.
    let nomark = write_plugin(
        plugins,
        "nomark",
        r#"(import "crmkit_v1" "read_deal" (func $read (param i32 i32) (result i64)))"#,
        &guard("negotiation", "no"),
    );
    let file = plugins.join("nomark/nomark.wasm");
    let bad = run(plugins, &["plugin", "inspect", file.to_str().unwrap()]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stdout.starts_with(&format!("module: DIR/nomark/nomark.wasm ({} bytes", nomark.len())), "{bad:?}");
    assert!(bad.stdout.contains("abi: none this host runs (supported: 1)\n"), "{bad:?}");
    assert!(bad.stdout.contains("imports: 1\n  crmkit_v1.read_deal: func (i32, i32) -> (i64)\n"), "{bad:?}");
    assert_eq!(
        bad.stderr,
        "problem: exports no ABI version marker (a function crmkit_abi_vN, e.g. crmkit_abi_v1); supported: 1\n\
         problem: imports crmkit_v1.read_deal, which needs capability read_deal: plugin.toml does not request it (capabilities = [\"read_deal\"])\n\
         error: DIR/nomark/nomark.wasm: 2 problem(s)\n"
    );

    // The module changed after its manifest was written: the SHA-256 differs.
    let changed = good_plugin(plugins, "quote", "a quote is needed");
    let manifest = std::fs::read_to_string(plugins.join("quote/plugin.toml")).unwrap();
    std::fs::write(plugins.join("quote/plugin.toml"), manifest.replace(&hex(&Sha256::digest(&changed)), &sha)).unwrap();
    let file = plugins.join("quote/quote.wasm");
    let mismatch = run(plugins, &["plugin", "inspect", file.to_str().unwrap()]);
    assert_eq!(mismatch.code, Some(1), "{mismatch:?}");
    assert_eq!(
        mismatch.stderr,
        format!(
            "problem: the SHA-256 of quote.wasm is {}, plugin.toml says {sha}: the module is not the one the manifest was written for\n\
             error: DIR/quote/quote.wasm: 1 problem(s)\n",
            hex(&Sha256::digest(&changed))
        )
    );

    // A module alone (no manifest beside it) is checked against the ABI only.
    let alone = tmp.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(plugins.join("quote/quote.wasm"), alone.join("x.wasm")).unwrap();
    let r = run(plugins, &["plugin", "inspect", alone.join("x.wasm").to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.ends_with("manifest: none (DIR/alone/plugin.toml is not there; the module alone was checked)\nok\n"),
        "{r:?}"
    );

    // Not WebAssembly at all.
    std::fs::write(alone.join("text.wasm"), "hello").unwrap();
    let r = run(plugins, &["plugin", "inspect", alone.join("text.wasm").to_str().unwrap()]);
    assert_eq!(
        r,
        Ran {
            code: Some(1),
            stdout: String::new(),
            stderr: "error: text.wasm is not a WebAssembly module (it does not start with \\0asm)\n".into()
        }
    );
}

/// An installation whose config binds `good.wasm::guard` before a transition.
fn site() -> Site {
    Site::new(|c| format!("{c}\n[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"good.wasm::guard\"\n"))
}

#[test]
fn check_names_each_plugin_that_does_not_load_and_so_does_crmkit_check() {
    let site = site();
    let plugins = site.dir.join("plugins");
    good_plugin(&plugins, "good", "needs a quote first");
    let broken = good_plugin(&plugins, "broken", "x");
    let mut edited = broken.clone();
    *edited.last_mut().unwrap() ^= 1; // one byte of the module changed after its manifest
    std::fs::write(plugins.join("broken/broken.wasm"), &edited).unwrap();
    let (found, declared) = (hex(&Sha256::digest(&edited)), hex(&Sha256::digest(&broken)));
    let why = format!(
        "plugin broken: the SHA-256 of DIR/plugins/broken/broken.wasm is {found}, plugin.toml says {declared}: the module is not the one the manifest was written for"
    );
    let r = run(&site.dir, &["plugin", "check", site.dir()]);
    assert_eq!(
        r,
        Ran {
            code: Some(1),
            stdout: "plugin good 1.0.0: ok (abi 1; hooks: deal.before_transition -> guard; capabilities: none; instances: fresh)\n\
                     binding deal.before_transition -> good.wasm::guard: ok\n"
                .into(),
            stderr: format!("error: {why}\nerror: 1 of 2 plugin(s) do not load: broken\n"),
        }
    );
    let c = run(&site.dir, &["check", site.dir()]);
    assert_eq!(c.code, Some(1), "{c:?}");
    assert!(c.stderr.ends_with(&format!("error: {why}\nerror: 1 plugin problem(s)\n")), "{c:?}");

    // Mended: both load, and check counts them and the binding.
    std::fs::write(plugins.join("broken/broken.wasm"), &broken).unwrap();
    let r = run(&site.dir, &["plugin", "check", site.dir()]);
    assert_eq!((r.code, r.stderr.as_str()), (Some(0), ""), "{r:?}");
    assert!(r.stdout.starts_with("plugin broken 1.0.0: ok"), "{r:?}");
    let c = ok(&["check", site.dir()]);
    assert!(c.contains("plugins: ok (2 loaded, 1 bindings to plugin exports checked)\n"), "{c}");

    // A binding to an export the manifest does not declare is named.
    let config = site.dir.join("config/crmkit.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("good.wasm::guard", "good.wasm::other")).unwrap();
    let r = run(&site.dir, &["plugin", "check", site.dir()]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.stderr,
        "error: binding deal.before_transition -> good.wasm::other: plugin good does not declare export other for \
         deal.before_transition in its plugin.toml (it declares guard for it)\n\
         error: 1 binding(s) to plugin exports cannot be made\n"
    );
}

#[test]
fn run_prints_the_answer_as_the_engine_takes_it_or_the_fault() {
    let site = site();
    let plugins = site.dir.join("plugins");
    good_plugin(&plugins, "good", "needs a quote first");
    write_plugin(
        &plugins,
        "trap",
        "",
        &format!(r#"{MARKER} (func (export "guard") (param i32 i32) (result i64) unreachable)"#),
    );
    // An answer that is not a verdict.
    write_plugin(
        &plugins,
        "wrong",
        "",
        &format!(
            r#"{MARKER} (data (i32.const 64) "42") (func (export "guard") (param i32 i32) (result i64) (call $pack (i32.const 64) (i32.const 2)))"#
        ),
    );
    let work = tempfile::tempdir().unwrap();
    let (reject, allow) = (work.path().join("reject.json"), work.path().join("allow.json"));
    std::fs::write(&reject, move_to("negotiation")).unwrap();
    std::fs::write(&allow, move_to("closing")).unwrap();
    let (reject, allow) = (reject.to_str().unwrap(), allow.to_str().unwrap());
    let d = site.dir();
    let r = run(&site.dir, &["plugin", "run", d, "good", "deal.before_transition", "--input", reject]);
    assert_eq!(
        r,
        Ran {
            code: Some(0),
            stdout: "{\n  \"reject\": {\n    \"message\": \"needs a quote first\",\n    \"field\": \"stage\"\n  }\n}\n"
                .into(),
            stderr: String::new()
        }
    );
    // The export's name does as well as the point's.
    let r = run(&site.dir, &["plugin", "run", d, "good", "guard", "--input", allow]);
    assert_eq!(r, Ran { code: Some(0), stdout: "\"allow\"\n".into(), stderr: String::new() });
    let r = run(&site.dir, &["plugin", "run", d, "trap", "guard", "--input", allow]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.starts_with(
            "error: deal.before_transition: handler trap.wasm::guard failed: plugin trap, export guard: trapped"
        ),
        "{r:?}"
    );
    let r = run(&site.dir, &["plugin", "run", d, "wrong", "guard", "--input", allow]);
    assert_eq!(
        r.stderr,
        "error: deal.before_transition: handler wrong.wasm::guard failed: answered a number (42); \
         deal.before_transition expects a verdict: true or null (allow), false or a message (reject), \
         {\"reject\": \"…\", \"field\": \"…\"} or {\"allow\": true}\n",
        "{r:?}"
    );
    // Input that is not the contract is refused as `script run` refuses it, naming the field.
    let bad = work.path().join("bad.json");
    std::fs::write(&bad, move_to("closing").replace("\"v\":1", "\"v\":2")).unwrap();
    let r = run(&site.dir, &["plugin", "run", d, "good", "guard", "--input", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("not a hook input of the contract (docs/hooks.md): v: this program speaks version 1"),
        "{r:?}"
    );
    let r = run(&site.dir, &["plugin", "run", d, "good", "deal.before_close", "--input", allow]);
    assert_eq!(
        r.stderr,
        "error: plugin good declares no export for deal.before_close in its plugin.toml (it declares deal.before_transition -> guard)\n"
    );
    let r = run(&site.dir, &["plugin", "run", d, "nobody", "guard", "--input", allow]);
    assert!(r.stderr.starts_with("error: plugin nobody: there is no plugin nobody in DIR/plugins"), "{r:?}");
}

/// A deal of the b2b process in `site`, at its first stage, managed by petrov; its id.
fn new_deal(site: &Site) -> String {
    use crmkit_core::model::PartnerRole;
    let manager = site.manager();
    let partner = site.partner("Альфа", PartnerRole::Client);
    site.with(|inst| {
        let mut settings = inst.settings().clone();
        settings.hooks.clear();
        let engine = crmkit_core::process::Engine::new(&settings, crmkit_core::hooks::Hooks::new()).unwrap();
        let mut d = crate::common::new_deal(partner, manager, 10_000);
        d.source = Some("website".into());
        inst.store().transact(None, |tx| Ok(engine.create_deal(tx, d)?.id.to_string())).unwrap()
    })
}

#[test]
fn the_scripts_status_and_reload_cover_plugins() {
    let site = site();
    let plugins = site.dir.join("plugins");
    let first =
        write_plugin(&plugins, "good", "", &format!("{MARKER} {}", guard("needs_analysis", "needs a quote first")));
    let deal = new_deal(&site);
    let boss = ok(&["token", "create", site.dir(), "--user", "admin", "--role", "admin"]).trim().to_string();
    let server = Served::start(&site);
    let (status, s) = server.request("GET", "/api/v1/scripts", Some(&boss));
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s["plugins"],
        serde_json::json!([{
            "name": "good", "in_use": true, "error": null, "pending": false, "version": "1.0.0", "abi": 1,
            "sha256": hex(&Sha256::digest(&first)), "hooks": {"deal.before_transition": "guard"}, "capabilities": [], "reuses_instances": false
        }])
    );
    assert_eq!(
        s["plugin_bindings"],
        serde_json::json!([{"point": "deal.before_transition", "handler": "good.wasm::guard", "kinds": []}])
    );
    let move_deal = |version: u64| {
        let body = format!(r#"{{"version":{version},"stage":"needs_analysis"}}"#);
        server.send("POST", &format!("/api/v1/deals/{deal}/move"), &boss, body.as_bytes())
    };
    let (status, e) = move_deal(1);
    assert_eq!(
        (status, e["code"].as_str(), e["message"].as_str(), e["field"].as_str()),
        (422, Some("rejected"), Some("good.wasm::guard: needs a quote first"), Some("stage")),
        "{e}"
    );

    // A changed module, not yet reloaded: pending; the old one still answers.
    let second =
        write_plugin(&plugins, "good", "", &format!("{MARKER} {}", guard("needs_analysis", "a signed quote first")));
    let (_, s) = server.request("GET", "/api/v1/scripts", Some(&boss));
    assert_eq!(
        (s["plugins"][0]["pending"].as_bool(), s["plugins"][0]["in_use"].as_bool()),
        (Some(true), Some(true)),
        "{s}"
    );
    assert!(move_deal(1).1["message"].as_str().unwrap().ends_with("needs a quote first"));
    let (status, r) = server.send("POST", "/api/v1/scripts/reload", &boss, b"");
    assert_eq!((status, r["applied"].as_bool()), (200, Some(true)), "{r}");
    assert_eq!(r["plugins"][0]["sha256"], hex(&Sha256::digest(&second)), "{r}");
    assert!(move_deal(1).1["message"].as_str().unwrap().ends_with("a signed quote first"));

    // A broken module: the reload says why, and the running version stays in use.
    let mut broken = second.clone();
    *broken.last_mut().unwrap() ^= 1;
    std::fs::write(plugins.join("good/good.wasm"), &broken).unwrap();
    let (status, r) = server.send("POST", "/api/v1/scripts/reload", &boss, b"");
    assert_eq!((status, r["applied"].as_bool()), (422, Some(false)), "{r}");
    let why = r["plugin_errors"][0].as_str().unwrap();
    assert!(why.starts_with("plugin good: the SHA-256 of ") && why.contains("plugin.toml says"), "{r}");
    assert_eq!(r["errors"], serde_json::json!([why]));
    let status_now = &r["plugins"][0];
    assert_eq!(
        (status_now["in_use"].as_bool(), status_now["error"].as_str(), status_now["sha256"].as_str()),
        (Some(true), Some(why), Some(hex(&Sha256::digest(&second)).as_str())),
        "{r}"
    );
    assert!(move_deal(1).1["message"].as_str().unwrap().ends_with("a signed quote first"));
    // A new plugin appears beside it: listed, pending, not in use until a reload.
    good_plugin(&plugins, "extra", "x");
    let (_, s) = server.request("GET", "/api/v1/scripts", Some(&boss));
    let extra = s["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "extra").unwrap().clone();
    assert_eq!((extra["in_use"].as_bool(), extra["pending"].as_bool()), (Some(false), Some(true)), "{s}");
    server.stop();
}

#[test]
fn docs_list_every_wasm_key_with_its_default() {
    use crmkit_core::config::{Settings, DEFAULT_CONFIG};
    use crmkit_wasm::WasmSettings;
    let defaults = serde_json::to_value(WasmSettings::default()).unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/plugins.md")).unwrap();
    let table: Vec<(String, String)> = text
        .split("## `[runtimes.wasm]`")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].trim_matches('`').to_string())
        })
        .collect();
    let documented: Vec<&str> = table.iter().map(|(k, _)| k.as_str()).collect();
    // Every field but the call time, which is `[limits]`' (docs/scripting.md lists it).
    let mut expected: Vec<String> = defaults
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "timeout_ms")
        .map(|k| if k == "grants" { "runtimes.wasm.grants.NAME".to_string() } else { format!("runtimes.wasm.{k}") })
        .collect();
    expected.sort();
    let mut sorted = documented.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "docs/plugins.md's [runtimes.wasm] table");
    // Each default as written is the default, and each key is one config takes.
    let mut section = String::from("[runtimes.wasm]\n");
    for (key, default) in &table {
        let field = key.strip_prefix("runtimes.wasm.").unwrap();
        match field {
            "fuel" => assert_eq!((defaults["fuel"].is_null(), default.as_str()), (true, "none")),
            "grants.NAME" => assert_eq!((defaults["grants"].to_string(), default.as_str()), ("{}".into(), "[]")),
            _ => {
                assert_eq!(defaults[field].to_string(), *default, "{key}");
                section += &format!("{field} = {default}\n");
            }
        }
    }
    let settings = Settings::parse(&format!("{DEFAULT_CONFIG}\n{section}"), Path::new("crmkit.toml")).unwrap();
    assert_eq!(WasmSettings::from_settings(&settings).unwrap(), WasmSettings::default());
    // The default config's commented sample is the same keys and values.
    let sample: String = DEFAULT_CONFIG
        .lines()
        .skip_while(|l| *l != "# [runtimes.wasm]")
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim_start_matches("# ")))
        .collect();
    let sample = Settings::parse(&format!("{DEFAULT_CONFIG}\n{sample}"), Path::new("crmkit.toml")).unwrap();
    let sample = WasmSettings::from_settings(&sample).unwrap();
    assert_eq!(
        WasmSettings { grants: Default::default(), ..sample.clone() },
        WasmSettings::default(),
        "config/crmkit.toml's [runtimes.wasm] sample"
    );
    assert!(sample.grants.contains_key("scoring"), "{sample:?}");
}
