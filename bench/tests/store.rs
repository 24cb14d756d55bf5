//! `crmkit-bench store` as it is run: the binary on a small demo prints every figure, and
//! measures an existing installation with `--reuse`.

use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmkit-bench")).args(args).current_dir(cwd).output().expect("crmkit-bench runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_store_benchmark_runs_and_prints_its_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let dir = dir.to_str().unwrap();
    let args =
        ["store", "--deals", "300", "--reads", "2000", "--cache-mb", "64", "--record-cache-mb", "16", "--dir", dir];
    let o = bench(&args, tmp.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for figure in [
        "bulk load:",
        "entities/s",
        "raw redb on this machine:",
        "inserts/s",
        "bulk load / raw redb inserts:",
        "file size:",
        "open database: median",
        "point read of a deal by id",
    ] {
        assert!(out.contains(figure), "missing {figure:?} in {out}");
    }
    assert!(!Path::new(dir).join("raw-redb-inserts.redb").exists(), "the raw insert file is removed");
    let o = bench(&["store", "--dir", dir, "--reuse", "--reads", "1000"], tmp.path());
    assert!(o.status.success() && !text(&o).contains("bulk load:"), "{}", text(&o));
}
