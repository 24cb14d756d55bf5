//! `crmkit-bench analytics` as CI runs it: on a small demo, SQLite only (no Python, no
//! network), every built-in report's SQL must give crmkit's rows, and the report scripts run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The reports with SQL, each of which must be compared.
const REPORTS: &[&str] = &["funnel", "bottlenecks", "lost", "managers", "execution", "abc-xyz", "bcg"];

/// Runs `crmkit-bench analytics --no-duckdb --dir DIR` with `args`; its output, once it
/// succeeded and every report with SQL equalled crmkit's on rows of its own.
fn bench(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_crmkit-bench"))
        .arg("analytics")
        .args(args)
        .args(["--no-duckdb", "--dir"])
        .arg(dir)
        .current_dir(dir.parent().expect("a parent"))
        .output()
        .expect("crmkit-bench runs");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("DIFFERS"), "{out}");
    for report in REPORTS {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{report}: SQLite equals crmkit (")))
            .unwrap_or_else(|| panic!("{report} not compared in {out}"));
        let rows: usize = line
            .split_once('(')
            .and_then(|(_, r)| r.split_once(" rows"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no row count in {line}"));
        assert!(rows > 0, "{report} compared on no rows: {line}");
    }
    out
}

/// The values of a text column of the rows the SQL file `name` (kept beside the
/// installation) gives.
fn column(sql_dir: &Path, name: &str, col: &str) -> BTreeSet<String> {
    let db = rusqlite::Connection::open(sql_dir.join("crmkit.sqlite")).unwrap();
    db.create_scalar_function("sqrt", 1, rusqlite::functions::FunctionFlags::SQLITE_UTF8, |cx| {
        Ok(cx.get::<f64>(0)?.sqrt())
    })
    .unwrap();
    let sql = std::fs::read_to_string(sql_dir.join(format!("{name}.sqlite.sql"))).unwrap();
    let mut stmt = db.prepare(&sql).unwrap();
    let i = stmt.column_index(col).unwrap();
    stmt.query_map([], |r| r.get::<_, Option<String>>(i)).unwrap().filter_map(Result::unwrap).collect()
}

#[test]
fn the_sql_of_every_report_equals_crmkit_on_a_small_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = bench(&dir, &["--deals", "400"]);
    for figure in
        ["SQLite/crmkit", "peak MiB", "report script pipeline_by_manager", "report script losses_by_competitor"]
    {
        assert!(out.contains(figure), "missing {figure:?} in {out}");
    }
    // The files are kept beside the installation and reused on the next run.
    let sql_dir = tmp.path().join("demo-sql");
    assert!(sql_dir.join("crmkit.sqlite").exists());
    // The demo's plans are compared, not only their absence.
    assert!(column(&sql_dir, "managers", "plan_currency").contains("RUB"));
    let again = bench(&dir, &[]);
    assert!(again.contains("already hold this installation"), "{again}");

    // Thresholds that put the small demo's clients into every class and quadrant: the
    // config changed, so the tables are loaded again, the new thresholds with them.
    let config = dir.join("config").join("crmkit.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[analytics.abc_xyz]\na = 60\nb = 25\nx = 300\ny = 420\n\n[analytics.bcg]\nshare = 20\ngrowth = 50\n",
    );
    std::fs::write(&config, text).unwrap();
    let third = bench(&dir, &[]);
    assert!(third.contains("loaded into SQLite"), "{third}");
    let classes = column(&sql_dir, "abc-xyz", "class");
    let letters = |at: usize| classes.iter().map(|c| c[at..=at].to_string()).collect::<BTreeSet<_>>();
    assert_eq!(letters(0), BTreeSet::from(["A", "B", "C"].map(String::from)), "{classes:?}");
    assert_eq!(letters(1), BTreeSet::from(["X", "Y", "Z"].map(String::from)), "{classes:?}");
    assert_eq!(
        column(&sql_dir, "bcg", "quadrant"),
        BTreeSet::from(["cash cow", "dog", "question mark", "star"].map(String::from))
    );
}
