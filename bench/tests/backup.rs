//! `crmkit-bench backup` as it is run: on a small demo it serves the installation, takes
//! backups through the server's socket while clients write, and restores and checks them.

use std::path::Path;
use std::process::Command;

#[test]
fn the_backup_benchmark_runs_through_the_server_and_checks_its_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let args = ["backup", "--deals", "100", "--clients", "2", "--seconds", "1", "--rounds", "2", "--dir"];
    let o = Command::new(env!("CARGO_BIN_EXE_crmkit-bench"))
        .args(args)
        .arg(&dir)
        .current_dir(tmp.path())
        .output()
        .expect("crmkit-bench runs");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    for figure in [
        "round 2:",
        "API writes alone:",
        "backup, no writes:",
        "backup while the clients write:",
        "MiB/s",
        "times the time without writes",
        "API writes during that backup:",
        // The command's own line, sent back by the server over its socket.
        "backed up ",
        "database: ok",
        "checked (`crmkit restore`, `crmkit check`): clean",
    ] {
        assert!(out.contains(figure), "missing {figure:?} in {out}");
    }
    assert!(!out.contains("error"), "{out}");
    // The server stopped and removed its socket; the demo stays, with the writes in it.
    assert!(!dir.join("data/control/crmkit.sock").exists(), "{out}");
    assert!(Path::new(&dir).join("data/crmkit.redb").exists());
}
