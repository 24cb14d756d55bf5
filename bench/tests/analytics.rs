//! `crmkit-bench analytics` as CI runs it: on a small demo, SQLite only (no Python, no
//! network), every built-in report's SQL must give crmkit's rows, and the report scripts run.

use std::process::Command;

#[test]
fn the_sql_of_every_report_equals_crmkit_on_a_small_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = Command::new(env!("CARGO_BIN_EXE_crmkit-bench"))
        .args(["analytics", "--deals", "400", "--no-duckdb", "--dir"])
        .arg(&dir)
        .current_dir(tmp.path())
        .output()
        .expect("crmkit-bench runs");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    for report in ["funnel", "bottlenecks", "lost", "managers"] {
        assert!(out.contains(&format!("{report}: SQLite equals crmkit (")), "{report} not compared in {out}");
    }
    assert!(!out.contains("DIFFERS"), "{out}");
    for figure in
        ["SQLite/crmkit", "peak MiB", "report script pipeline_by_manager", "report script losses_by_competitor"]
    {
        assert!(out.contains(figure), "missing {figure:?} in {out}");
    }
    // The files are kept beside the installation and reused on the next run.
    assert!(tmp.path().join("demo-sql").join("crmkit.sqlite").exists());
    let o = Command::new(env!("CARGO_BIN_EXE_crmkit-bench"))
        .args(["analytics", "--no-duckdb", "--dir"])
        .arg(&dir)
        .output()
        .expect("crmkit-bench runs");
    let again = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success() && again.contains("already hold this installation"), "{again}");
}
