//! The example plugins of plugins/examples/, built from their sources (Rust and C by
//! plugins/examples/build.sh, WAT by the `wat` crate), installed with their manifests into
//! an installation's plugins folder and run by the process engine on a real store: the Rust
//! scoring model stores its score and factors on the deal and reads the partner only when
//! granted; the C and WAT guards allow one change and refuse another with nothing written.
//! The scoring model is also the shipped Rhai script's and a plain Rust function's
//! (bench/src/score_model.rs, what `crmkit-bench score` measures): the three agree deal by deal.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::model::{Deal, PartnerRole};
use crmkit_core::process::{Engine, Hooks};
use crmkit_core::store::Reader;
use crmkit_core::Error;
use crmkit_wasm::{PluginHost, WasmProvider, WasmSettings};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common::{new_deal, refused, Fixture};

#[path = "../../bench/src/score_model.rs"]
mod score_model;

/// The grant the scoring model needs to load.
const GRANTED: &str = "grants.rust_score = [\"read_partner\"]";

pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples")
}

/// Runs build.sh once for the Rust and C examples; a missing toolchain fails the tests with
/// build.sh's message.
fn built() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(examples().join("build.sh"))
            .args(["rust", "c"])
            .output()
            .map_err(|e| format!("running plugins/examples/build.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "plugins/examples/build.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(examples().join("out"))
    });
    match built {
        Ok(p) => p,
        Err(m) => panic!("{m}"),
    }
}

/// The module of example `name`: built by build.sh, or compiled from its WAT.
fn module(name: &str) -> Vec<u8> {
    match name {
        "wat_guard" => wat::parse_file(examples().join("wat-guard/wat_guard.wat")).unwrap(),
        _ => std::fs::read(built().join(name).join(format!("{name}.wasm"))).unwrap(),
    }
}

/// Installs example `name` (folder `folder`) into `plugins`: its module and its manifest with
/// the module's SHA-256 written in.
pub(crate) fn install_example(plugins: &Path, name: &str, folder: &str) {
    install(plugins, name, folder)
}

fn install(plugins: &Path, name: &str, folder: &str) {
    let wasm = module(name);
    let sha: String = Sha256::digest(&wasm).iter().map(|b| format!("{b:02x}")).collect();
    let manifest = std::fs::read_to_string(examples().join(folder).join("plugin.toml")).unwrap();
    let manifest: String = manifest
        .lines()
        .map(|l| if l.starts_with("sha256 = ") { format!("sha256 = \"{sha}\"\n") } else { format!("{l}\n") })
        .collect();
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.wasm")), &wasm).unwrap();
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
}

/// An installation with the examples `names` installed, `wasm` added to `[runtimes.wasm]` and
/// `bindings` as its only hooks: the store, the engine, the plugins folder.
fn installation(
    names: &[&str],
    wasm: &str,
    bindings: &[(&str, &str)],
) -> Result<(Fixture, Engine, tempfile::TempDir), String> {
    let plugins = tempfile::tempdir().unwrap();
    for name in names {
        install(plugins.path(), name, &name.replace('_', "-"));
    }
    let mut config = format!("{DEFAULT_CONFIG}\n[runtimes.wasm]\n{wasm}\n");
    for (point, handler) in bindings {
        config.push_str(&format!("\n[[hooks]]\npoint = \"{point}\"\nhandler = \"{handler}\"\n"));
    }
    let mut settings = Settings::parse(&config, Path::new("crmkit.toml")).unwrap();
    settings.hooks.retain(|b| b.runtime == "wasm");
    let fx = Fixture::with_settings(settings.clone());
    let host = PluginHost::new(plugins.path(), None, &WasmSettings::from_settings(&settings).unwrap())
        .unwrap()
        .with_clock(fx.clock.clone());
    let errors = host.load_all();
    if !errors.is_empty() {
        return Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
    }
    let mut hooks = Hooks::new();
    hooks.provider(Arc::new(WasmProvider::new(Arc::new(host))));
    let engine = Engine::new(&settings, hooks).unwrap();
    Ok((fx, engine, plugins))
}

/// The model's answer as the manifest's coefficients give it for `z`.
fn logistic(z: f64) -> f64 {
    (1000.0 / (1.0 + (-z).exp())).round() / 10.0
}

#[test]
fn the_rust_model_scores_deals_reading_their_partner_and_the_score_is_stored() {
    let (fx, engine, _plugins) =
        installation(&["rust_score"], GRANTED, &[("deal.score", "rust_score.wasm::score_deal")]).unwrap();
    let manager = fx.user("m.petrova");
    let mut key = fx.partner("Альфа", PartnerRole::Client);
    key.segment = Some("key".into());
    let key = fx.store.transact(None, |tx| tx.update(key.clone())).unwrap();
    let supplier = fx.partner("Бета", PartnerRole::Supplier);

    let mut d = new_deal(key.id, manager, 10_000);
    d.source = Some("website".into());
    let d = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, d)).unwrap();
    let s = d.score.clone().expect("scored");
    let factors: Vec<_> = s.factors.iter().map(|f| (f.name.as_str(), f.value.clone(), f.contribution)).collect();
    assert_eq!(
        factors,
        vec![
            ("intercept", json!(null), 0.2),
            ("amount", json!("10000"), 0.9),
            ("stage", json!("qualification"), -1.6),
            ("source", json!("website"), 0.0),
            ("days_to_stage", json!(0), 0.0),
            ("partner_role", json!("client"), 0.4),
            ("partner_segment", json!("key"), 0.5),
        ]
    );
    let z = 0.2 + 0.9 - 1.6 + 0.4 + 0.5;
    assert_eq!(
        (s.probability, s.model.as_deref(), s.handler.as_str()),
        (logistic(z), Some("logistic-v2"), "rust_score.wasm::score_deal")
    );
    assert_eq!(d.probability, Some(logistic(z).round() as u8), "the probability follows the score");
    assert_eq!(fx.store.read().unwrap().load::<Deal>(d.id).unwrap(), d, "stored as returned");

    // Thirty days on, in the next stage: the stage's and the days' terms change.
    fx.clock.advance(30 * 86_400_000);
    let d =
        fx.store.transact(Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None)).unwrap();
    let s = d.score.clone().unwrap();
    let of = |name: &str| s.factors.iter().find(|f| f.name == name).map(|f| (f.value.clone(), f.contribution)).unwrap();
    assert_eq!((of("stage"), of("days_to_stage")), ((json!("needs_analysis"), -0.9), (json!(30), -0.36)));
    assert_eq!(s.probability, logistic(0.2 + 0.9 - 0.9 - 0.36 + 0.4 + 0.5));

    // A supplier without a segment, a deal of the pivot's amount without a source.
    let d = fx
        .store
        .transact(Some(manager), |tx| engine.create_deal(tx, new_deal(supplier.id, manager, 1_000_000)))
        .unwrap();
    let s = d.score.unwrap();
    let partner: Vec<_> =
        s.factors.iter().filter(|f| f.name.starts_with("partner")).map(|f| (f.value.clone(), f.contribution)).collect();
    assert_eq!(partner, vec![(json!("supplier"), 0.1), (json!(null), 0.0)]);
    assert_eq!(s.probability, logistic(0.2 - 1.6 + 0.1));
}

#[test]
fn the_rust_model_the_shipped_script_and_a_native_function_score_every_deal_alike() {
    use score_model::{agree, deal, partner, Ways};
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "rust_score", "rust-score");
    let config = format!("{DEFAULT_CONFIG}\n[runtimes.wasm]\n{GRANTED}\n");
    let settings = Settings::parse(&config, Path::new("crmkit.toml")).unwrap();
    let fx = Fixture::with_settings(settings.clone());
    let ids: Vec<_> = fx.store.transact(None, |tx| (0..40).map(|i| Ok(tx.create(partner(i))?.id)).collect()).unwrap();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let ways = Ways::new(&settings, plugins.path(), &scripts, 1000).unwrap();
    assert_eq!(
        ways.script_coefficients().unwrap(),
        ways.config,
        "scripts/scoring/logistic.rhai's coefficients() and plugins/examples/rust-score/plugin.toml's [config]"
    );

    let view = fx.store.read().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..400 {
        let d = deal(i, &ids);
        let native = ways.native(&d, &view).unwrap();
        let (wasm, rhai) = (ways.wasm(&d, &view).unwrap(), ways.rhai(&d, &view).unwrap());
        // A kept instance answers as a fresh one: nothing of a call is left for the next.
        let kept = ways.wasm_kept(&d, &view).unwrap();
        for (way, s) in [("wasm", &wasm), ("wasm, kept instance", &kept), ("rhai", &rhai)] {
            assert!(agree(&native, s.probability), "deal {i}: {way} {} against native {native:?}", s.probability);
            let factors: Vec<_> = s.factors.iter().map(|f| (f.name.as_str(), f.contribution)).collect();
            assert_eq!(factors.len(), native.factors.len(), "deal {i}: {way} {factors:?} against {native:?}");
            for ((name, c), (native_name, n)) in factors.iter().zip(&native.factors) {
                assert!(
                    name == native_name && (c - n).abs() < 1e-4 + 1e-9,
                    "deal {i}: {way} {factors:?} against {native:?}"
                );
            }
            assert_eq!(s.model.as_deref(), Some(ways.model.model.as_str()));
        }
        // The two runtimes also saw the same values.
        let values = |s: &crmkit_core::hooks::Score| s.factors.iter().map(|f| f.value.clone()).collect::<Vec<_>>();
        assert_eq!(values(&wasm), values(&rhai), "deal {i}");
        seen.insert((native.probability * 10.0).round() as i64);
    }
    assert!(seen.len() > 100, "the deals are varied enough to test the model: {} probabilities", seen.len());

    // A partner that is not there: no partner terms, in any of the three.
    let mut orphan = deal(0, &ids);
    orphan.partner = crmkit_core::id::PartnerId::default();
    let native = ways.native(&orphan, &view).unwrap();
    assert_eq!(native.factors.len(), 5);
    for s in [
        ways.wasm(&orphan, &view).unwrap(),
        ways.wasm_kept(&orphan, &view).unwrap(),
        ways.rhai(&orphan, &view).unwrap(),
    ] {
        assert!(agree(&native, s.probability) && s.factors.len() == 5, "{s:?} against {native:?}");
    }
}

#[test]
fn the_rust_model_does_not_load_without_its_grant() {
    for wasm in ["", "grants.rust_score = [\"read_deal\"]"] {
        let err = installation(&["rust_score", "c_guard", "wat_guard"], wasm, &[]).err().expect("refused");
        assert_eq!(
            err,
            "plugin rust_score: capability read_partner is requested in plugin.toml but not granted to this plugin (runtimes.wasm.grants.rust_score)",
            "{wasm:?}: the others load"
        );
    }
}

#[test]
fn the_c_guard_refuses_a_small_deal_entering_its_stage_and_allows_a_large_one() {
    let (fx, engine, _plugins) =
        installation(&["c_guard"], "", &[("deal.before_transition", "c_guard.wasm::guard")]).unwrap();
    let manager = fx.user("m.petrova");
    let p = fx.partner("Альфа", PartnerRole::Client);
    let create = |amount| {
        let mut d = new_deal(p.id, manager, amount);
        d.source = Some("website".into());
        fx.store.transact(Some(manager), |tx| engine.create_deal(tx, d)).unwrap()
    };
    let small = create(10_000);
    let err =
        refused(&fx.store, Some(manager), |tx| engine.move_deal(tx, small.id, small.version, "needs_analysis", None));
    let Error::Rejected { handler, message, field, .. } = &err else { panic!("not a rejection: {err}") };
    assert_eq!(
        (handler.as_str(), message.as_str(), field.as_deref()),
        (
            "c_guard.wasm::guard",
            "a deal enters needs_analysis from an amount of 50000, this one is 10000",
            Some("amount")
        )
    );
    let large = create(50_000);
    let moved = fx
        .store
        .transact(Some(manager), |tx| engine.move_deal(tx, large.id, large.version, "needs_analysis", None))
        .unwrap();
    assert_eq!(moved.stage.as_deref(), Some("needs_analysis"));
}

#[test]
fn the_wat_guard_refuses_a_hold_and_allows_a_move() {
    let (fx, engine, _plugins) =
        installation(&["wat_guard"], "", &[("deal.before_transition", "wat_guard.wasm::guard")]).unwrap();
    let manager = fx.user("m.petrova");
    let p = fx.partner("Альфа", PartnerRole::Client);
    let mut d = new_deal(p.id, manager, 10_000);
    d.source = Some("website".into());
    let d = fx.store.transact(Some(manager), |tx| engine.create_deal(tx, d)).unwrap();
    let err = refused(&fx.store, Some(manager), |tx| engine.hold(tx, d.id, d.version, "back in May"));
    let Error::Rejected { handler, message, .. } = &err else { panic!("not a rejection: {err}") };
    assert_eq!(
        (handler.as_str(), message.as_str()),
        ("wat_guard.wasm::guard", "deals are not put on hold here: move them on or close them")
    );
    let moved =
        fx.store.transact(Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None)).unwrap();
    assert_eq!(moved.stage.as_deref(), Some("needs_analysis"));
}
