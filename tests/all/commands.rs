//! The first commands as a user runs them — `init`, `check`, `demo`, `stats`, `dossier`,
//! `deal`, `group` — real processes on a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

fn crmkit(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmkit")).args(args).current_dir(cwd).output().expect("crmkit runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn init_check_demo_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    let o = crmkit(&["init", "acme"], root);
    assert!(o.status.success(), "{}", text(&o));
    assert!(root.join("acme/config/crmkit.toml").exists() && root.join("acme/data/crmkit.redb").exists());
    let o = crmkit(&["init", "acme"], root);
    assert!(!o.status.success() && text(&o).contains("already"), "{}", text(&o));

    let o = crmkit(&["check", "acme"], root);
    assert!(o.status.success() && text(&o).contains("indexes consistent"), "{}", text(&o));
    // The command line runs reports through core as the API does: declared parameters only.
    let o = crmkit(&["report", "acme", "losses_by_competitor", "--param", "top=3", "--format", "csv"], root);
    assert!(o.status.success() && text(&o).starts_with("competitor,loss_reason,deals,amount"), "{}", text(&o));
    let o = crmkit(&["report", "acme", "losses_by_competitor", "--param", "tpo=3"], root);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("report losses_by_competitor: it has no parameter \"tpo\" (it takes top)"),
        "{}",
        text(&o)
    );
    let o = crmkit(&["report", "acme", "nothing"], root);
    assert!(!o.status.success() && text(&o).contains("there is no report \"nothing\""), "{}", text(&o));

    let o = crmkit(&["demo", "--dir", "d", "--deals", "300", "--seed", "5", "--no-serve"], root);
    assert!(o.status.success(), "{}", text(&o));
    let summary = text(&o);
    assert!(summary.lines().any(|l| l.split_whitespace().eq(["deal", "300"])), "{summary}");
    // A demo replaces an earlier demo, but not another installation.
    let o = crmkit(&["demo", "--dir", "d", "--deals", "200", "--no-serve"], root);
    assert!(o.status.success(), "{}", text(&o));
    let o = crmkit(&["demo", "--dir", "acme", "--deals", "200", "--no-serve"], root);
    assert!(!o.status.success() && text(&o).contains("not a demo"), "{}", text(&o));

    let o = crmkit(&["stats", "d", "--format", "json"], root);
    assert!(o.status.success(), "{}", text(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["entities"]["deal"], 200);
    assert_eq!(stats["schema_version"], crmkit_core::store::SCHEMA_VERSION);

    // The dossier of a client with deals, by id and as JSON.
    let partner = {
        use crmkit_core::store::Reader;
        let inst =
            crmkit_core::Installation::open(&root.join("d"), std::sync::Arc::new(crmkit_core::time::SystemClock))
                .unwrap();
        let r = inst.store().read().unwrap();
        let deals: Vec<crmkit_core::model::Deal> = r.list(None, 1).unwrap();
        r.load::<crmkit_core::model::Partner>(deals[0].partner).unwrap()
    };
    let id = partner.id.to_string();
    let o = crmkit(&["dossier", "d", &id], root);
    let page = text(&o);
    assert!(o.status.success() && page.contains(&partner.name) && page.contains("timeline ("), "{page}");
    assert!(page.contains("deals: ") && page.contains("documents ("), "{page}");
    let o = crmkit(&["dossier", "d", &id, "--format", "json"], root);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["partner"]["id"], serde_json::json!(id));
    // A deal's file, and only its stage history.
    let deal = json["deals"]["open"][0]["id"].as_str().or(None).map(str::to_string);
    let deal = deal.unwrap_or_else(|| {
        use crmkit_core::store::Reader;
        let inst =
            crmkit_core::Installation::open(&root.join("d"), std::sync::Arc::new(crmkit_core::time::SystemClock))
                .unwrap();
        let deals: Vec<crmkit_core::model::Deal> = inst.store().read().unwrap().list(None, 1).unwrap();
        deals[0].id.to_string()
    });
    let o = crmkit(&["deal", "d", &deal], root);
    assert!(o.status.success() && text(&o).contains("create") && text(&o).contains("oldest first"), "{}", text(&o));
    let o = crmkit(&["deal", "d", &deal, "--only", "step", "--format", "json"], root);
    let file: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(file["items"].as_array().unwrap().iter().all(|i| i["type"] == "step"));
    let o = crmkit(&["deal", "d", &deal, "--only", "gossip"], root);
    assert!(!o.status.success() && text(&o).contains("\"gossip\" is not a kind of item"), "{}", text(&o));
    // The client's group (a partner alone is a group of one).
    let o = crmkit(&["group", "d", &id, "--format", "json"], root);
    let group: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(group["members"].as_array().unwrap().iter().any(|m| m[0]["id"] == serde_json::json!(id)), "{group}");
    let o = crmkit(&["group", "d", &id], root);
    assert!(o.status.success() && text(&o).contains("total"), "{}", text(&o));
    let o = crmkit(&["dossier", "d", "Нет такого"], root);
    assert!(!o.status.success() && text(&o).contains("no partner"), "{}", text(&o));
}

#[test]
fn a_broken_config_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert!(crmkit(&["init", "x"], root).status.success());
    let file = root.join("x/config/crmkit.toml");
    let broken = std::fs::read_to_string(&file).unwrap();
    let broken = broken.replacen("[defaults]", "[defaults]\ncurency = \"RUB\"", 1);
    std::fs::write(&file, &broken).unwrap();
    let o = crmkit(&["check", "x"], root);
    assert_eq!(o.status.code(), Some(1));
    let msg = text(&o);
    assert!(msg.contains("config/crmkit.toml:") && msg.contains("unknown key \"curency\" in [defaults]"), "{msg}");

    // The runtimes' own sections are checked by the runtimes, as strictly and as precisely.
    let fine = broken.replacen("[defaults]\ncurency = \"RUB\"", "[defaults]", 1);
    let line = fine.lines().position(|l| l == "[runtimes.rhai]").unwrap() + 2;
    std::fs::write(&file, fine.replacen("[runtimes.rhai]\n", "[runtimes.rhai]\nmax_call_dept = 10\n", 1)).unwrap();
    let msg = text(&crmkit(&["check", "x"], root));
    assert!(msg.contains(&format!("config/crmkit.toml:{line}:1: unknown key \"max_call_dept\"")), "{msg}");
    std::fs::write(&file, format!("{fine}\n[runtimes.lua]\nmax_operations = 5\n")).unwrap();
    let line = fine.lines().count() + 2;
    let msg = text(&crmkit(&["check", "x"], root));
    assert!(
        msg.contains(&format!(
            "config/crmkit.toml:{line}: [runtimes.lua]: no lua runtime is available here (runtimes: rhai, wasm)"
        )),
        "{msg}"
    );

    let o = crmkit(&["stats", "nowhere"], root);
    assert!(!o.status.success() && text(&o).contains("nowhere/config/crmkit.toml"), "{}", text(&o));
}
