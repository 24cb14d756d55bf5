//! Keeps core a stack: reads every `crate::…` path in `core/src/**/*.rs` and fails on an
//! edge that goes up the layers, so a module cannot start depending on one above it without
//! the edge being written into [`ALLOWED_UPWARD`] with its reason.
//!
//! Test modules (from a line `#[cfg(test)]` to the end of the file) are not read: a test may
//! use whatever it needs. `super::` paths stay inside a module and are not read either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom to top. A module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["id", "time", "values", "progress"],
    &["model"],
    // The store's backend interface: ordered tables of bytes, with an error type of its own.
    &["store::kv"],
    // The crate's one error type: wraps model's field errors, kv's (and config's, see below).
    &["error"],
    &["store", "audit"],
    &["hooks", "process"],
    // Assembles the parts: the validated settings, with process kinds and hook bindings.
    &["config"],
    &["dossier", "graph", "merge", "deal_file", "transfer", "installation", "report", "analytics", "strategy"],
];

/// Edges that go up the stack and are allowed for now: (from, to, why).
const ALLOWED_UPWARD: &[(&str, &str, &str)] = &[
    ("error", "config", "Error::Config wraps config's ConfigError"),
    (
        "store",
        "config",
        "the store holds the Settings it validates against and hands them to readers (Reader::settings)",
    ),
    ("process", "config", "the engine reads process kinds and process settings from Settings"),
    (
        "hooks",
        "config",
        "View::settings hands reports the Settings the store holds (process kinds, stages, plans), as Reader::settings does",
    ),
];

/// Modules that must not reach a module, directly or through others: (from, to).
const NEVER_REACHES: &[(&str, &str)] = &[("model", "config"), ("store::kv", "config")];

/// Reaches allowed for now: (from, to, why). None: kv fails with its own `KvError`.
const ALLOWED_REACHES: &[(&str, &str, &str)] = &[];

/// Items at the crate root and the module they come from.
const ROOT_ITEMS: &[(&str, &str)] =
    &[("Error", "error"), ("Result", "error"), ("Installation", "installation"), ("with_kind", "model")];

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module {module} is in no layer"))
}

/// The module a source file belongs to (`store/kv.rs` is `store::kv`, the backend interface).
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    match parts.as_slice() {
        [dir, file] if dir == "store" && file == "kv" => "store::kv".into(),
        [first, ..] => first.clone(),
        [] => unreachable!("a file has a name"),
    }
}

/// The modules `source` names through `crate::` paths, outside its test module.
fn uses(source: &str) -> BTreeSet<String> {
    let code = match source.find("\n#[cfg(test)]") {
        Some(at) => &source[..at],
        None => source,
    };
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` in a macro is read like `crate::`.
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(|n| n.trim().split("::").next().unwrap_or("")).collect()
        } else {
            vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")]
        };
        for name in names.into_iter().filter(|n| !n.is_empty() && *n != "self") {
            let module = ROOT_ITEMS.iter().find(|(item, _)| *item == name).map_or(name, |(_, m)| m);
            if module == "store" && rest.starts_with("store::kv") {
                out.insert("store::kv".to_string());
            } else {
                out.insert(module.to_string());
            }
        }
    }
    out
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            out.push((rel.display().to_string(), std::fs::read_to_string(&path).expect("a source file")));
        }
    }
}

/// Every edge `from → to` between modules, with a file that makes it.
fn edges(files: &[(String, String)]) -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for (rel, source) in files {
        if rel == "lib.rs" || rel == "layers.rs" {
            continue;
        }
        let from = module_of(Path::new(rel));
        for to in uses(source) {
            if to != from {
                edges.entry((from.clone(), to)).or_insert_with(|| rel.clone());
            }
        }
    }
    edges
}

/// The edges going up the stack that are not allowed, and the forbidden reaches.
fn violations(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let mut out = Vec::new();
    for ((from, to), file) in edges {
        let allowed = ALLOWED_UPWARD.iter().any(|(f, t, _)| f == from && t == to);
        if rank(to) > rank(from) && !allowed {
            out.push(format!("{file}: {from} uses {to}, a layer above it"));
        }
    }
    for (from, to) in NEVER_REACHES {
        let mut seen = BTreeSet::from([from.to_string()]);
        let mut todo = vec![(from.to_string(), vec![from.to_string()])];
        while let Some((at, path)) = todo.pop() {
            for (_, t) in edges.keys().filter(|(f, _)| *f == at) {
                let mut path = path.clone();
                path.push(t.clone());
                if t == to {
                    if !ALLOWED_REACHES.iter().any(|(a, b, _)| a == from && b == to) {
                        out.push(format!("{from} reaches {to}: {}", path.join(" → ")));
                    }
                    continue;
                }
                if seen.insert(t.clone()) {
                    todo.push((t.clone(), path));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_uses_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let edges = edges(&files);
    for (from, to) in edges.keys() {
        rank(from);
        rank(to);
    }
    let problems = violations(&edges);
    assert!(problems.is_empty(), "edges up the stack:\n{}", problems.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    let files = vec![
        ("model/deal.rs".to_string(), "use crate::config::Settings;\nuse crate::id::DealId;\n".to_string()),
        ("store/kv.rs".to_string(), "use crate::{Error, Result};\n#[cfg(test)]\nuse crate::config::X;\n".to_string()),
    ];
    let problems = violations(&edges(&files));
    assert_eq!(
        problems,
        vec![
            "model/deal.rs: model uses config, a layer above it".to_string(),
            "store/kv.rs: store::kv uses error, a layer above it".to_string(),
            "model reaches config: model → config".to_string()
        ]
    );
}
