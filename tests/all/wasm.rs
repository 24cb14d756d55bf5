//! WASM plugins bound in config and run by the process engine on a real store: a guard
//! refuses with its message, a faulting plugin refuses the write naming plugin, export and
//! cause, and in every refusal nothing is written.

use std::path::Path;
use std::sync::Arc;

use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::process::{Engine, Hooks};
use crmkit_core::Error;
use crmkit_wasm::{PluginHost, WasmProvider, WasmSettings};

use crate::common::{new_deal, refused, Fixture};
use crate::skeleton::{BASE, MARKER};

/// Rejects a move to `needs_analysis` with "needs a quote first", allows anything else.
fn quote_guard() -> String {
    crate::plugin_cli::guard("needs_analysis", "needs a quote first")
}

fn write_plugin(plugins: &Path, name: &str, imports: &str, body: &str, manifest: &str) {
    let wasm = wat::parse_str(format!("(module {imports} {BASE} {MARKER} {body})")).unwrap();
    let hooks = "[hooks]\n\"deal.before_transition\" = \"guard\"";
    crmkit_wasm::install(plugins, name, "1.0.0", &wasm, &format!("{manifest}\n{hooks}")).unwrap();
}

/// An engine on a real store whose config binds `handler` at `deal.before_transition`, the
/// plugins folder holding the test's plugins.
fn engine(handler: &str) -> (Fixture, Engine, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    write_plugin(plugins.path(), "quote", "", &quote_guard(), "");
    write_plugin(plugins.path(), "trap", "", r#"(func (export "guard") (param i32 i32) (result i64) unreachable)"#, "");
    // Refuses every move before 2026-03-04 by the clock `now_ms` answers.
    write_plugin(
        plugins.path(),
        "clock",
        r#"(import "crmkit_v1" "now_ms" (func $now (result i64)))"#,
        r#"(data (i32.const 128) "{\"reject\":\"not before 2026-03-04\"}")
           (data (i32.const 256) "null")
           (func (export "guard") (param i32 i32) (result i64)
             (if (i64.lt_s (call $now) (i64.const 1772582400000)) (then (return (call $pack (i32.const 128) (i32.const 34)))))
             (call $pack (i32.const 256) (i32.const 4)))"#,
        "",
    );
    // Reads the same partner again and again, past the cap on host calls.
    write_plugin(
        plugins.path(),
        "reader",
        r#"(import "crmkit_v1" "read_partner" (func $read (param i32 i32) (result i64)))"#,
        r#"(data (i32.const 64) "01JN8W6ZQ0000000000000000P")
           (func (export "guard") (param i32 i32) (result i64)
             (loop $l (drop (call $read (i32.const 64) (i32.const 26))) (br $l)) (i64.const 0))"#,
        "capabilities = [\"read_partner\"]",
    );
    let config = format!(
        "{DEFAULT_CONFIG}\n[runtimes.wasm]\nmax_host_calls = 50\ngrants.reader = [\"read_partner\"]\n\n[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"{handler}\"\n"
    );
    let settings = Settings::parse(&config, Path::new("crmkit.toml")).unwrap();
    let wasm = WasmSettings::from_settings(&settings).unwrap();
    let host = PluginHost::new(plugins.path(), None, &wasm).unwrap();
    assert_eq!(host.load_all(), vec![]);
    let mut hooks = Hooks::new();
    hooks.provider(Arc::new(WasmProvider::new(Arc::new(host))));
    // The default config's bindings of the shipped Rhai scripts are left out: the plugin alone.
    let mut settings = settings;
    settings.hooks.retain(|b| b.runtime == "wasm");
    let engine = Engine::new(&settings, hooks).unwrap();
    (Fixture::with_settings(settings), engine, plugins)
}

#[test]
fn a_plugin_guard_refuses_and_faults_refuse_with_nothing_written() {
    for (handler, expected) in [
        ("quote.wasm::guard", "needs a quote first"),
        ("trap.wasm::guard", "plugin trap, export guard: trapped"),
        (
            "reader.wasm::guard",
            "plugin reader, export guard: made more than 50 host calls in one call (the last: read_partner",
        ),
    ] {
        let (fx, engine, _plugins) = engine(handler);
        let manager = fx.user("m.petrova");
        let p = fx.partner("Альфа", crmkit_core::model::PartnerRole::Client);
        let mut d = new_deal(p.id, manager, 10_000);
        d.source = Some("website".into());
        let d = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, d.clone())).unwrap();
        let err = refused(&fx.store, Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None));
        let text = match &err {
            Error::Rejected { handler: h, message, field, .. } => {
                assert_eq!(h, handler);
                assert_eq!(field.as_deref(), Some("stage"));
                message.clone()
            }
            other => other.to_string(),
        };
        assert!(text.contains(expected), "{handler}: {text:?} does not contain {expected:?}");
        // The engine goes on serving: the next write it is asked for is made.
        let again = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(p.id, manager, 5))).unwrap();
        assert_eq!(again.version, 1);
    }
}

#[test]
fn now_ms_answers_the_engines_clock() {
    let (fx, engine, _plugins) = engine("clock.wasm::guard");
    let manager = fx.user("m.petrova");
    let p = fx.partner("Альфа", crmkit_core::model::PartnerRole::Client);
    let mut d = new_deal(p.id, manager, 10_000);
    d.source = Some("website".into());
    let d = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, d.clone())).unwrap();
    assert!(fx.store.clock().now().to_string().starts_with("2026-03-02"), "{}", fx.store.clock().now());
    match refused(&fx.store, Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None)) {
        Error::Rejected { message, .. } => assert_eq!(message, "not before 2026-03-04"),
        other => panic!("expected a rejection, got {other}"),
    }
    fx.clock.advance(2 * 86_400_000);
    let moved =
        fx.store.transact(Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None)).unwrap();
    assert_eq!(moved.stage.as_deref(), Some("needs_analysis"));
}
