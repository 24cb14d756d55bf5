//! The checks of a module against ABI version 1 and its manifest: the version marker, the
//! exports a plugin must have and the imports the host provides. Loading stops at the first
//! problem; `crmkit plugin inspect` lists them all.
use wasmtime::{ExternType, FuncType, Module};

use crate::abi;
use crate::manifest::Manifest;

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A function type as a message shows it: `(i32, i32) -> i64`.
pub(crate) fn signature(ft: &FuncType) -> String {
    let params: Vec<String> = ft.params().map(|t| t.to_string()).collect();
    let results: Vec<String> = ft.results().map(|t| t.to_string()).collect();
    format!("({}) -> ({})", params.join(", "), results.join(", "))
}

fn func_is(ty: Option<ExternType>, params: &[&str], results: &[&str]) -> Result<(), String> {
    let want = format!("({}) -> ({})", params.join(", "), results.join(", "));
    match ty {
        None => Err(format!("is not exported (it must be a function {want})")),
        Some(ExternType::Func(ft)) if signature(&ft) == want => Ok(()),
        Some(ExternType::Func(ft)) => Err(format!("is a function {}, it must be {want}", signature(&ft))),
        Some(other) => Err(format!("is not a function ({other:?}), it must be a function {want}")),
    }
}

/// Checks the exports version 1 asks for: the version marker, `memory`, the allocator and
/// every hook export the manifest names. The first problem, with the export at fault.
pub(crate) fn check_exports(module: &Module, manifest: &Manifest) -> Result<(), (Option<String>, String)> {
    export_problems(module, Some(manifest)).into_iter().next().map_or(Ok(()), Err)
}

/// The ABI version marker `module` exports, as a version and the export's name, or why there
/// is none that this host runs.
pub(crate) fn marker(module: &Module) -> Result<(u32, String), String> {
    let markers: Vec<(String, Option<u32>)> = module
        .exports()
        .filter_map(|e| {
            e.name().strip_prefix(abi::MARKER_PREFIX).map(|v| (e.name().to_string(), v.parse::<u32>().ok()))
        })
        .collect();
    let supported = abi::supported();
    match markers.as_slice() {
        [] => Err(format!(
            "exports no ABI version marker (a function {}N, e.g. {}1); supported: {supported}",
            abi::MARKER_PREFIX,
            abi::MARKER_PREFIX
        )),
        [(name, Some(v))] if !abi::SUPPORTED.contains(v) => {
            Err(format!("found ABI version {v} (export {name}), supported: {supported}"))
        }
        [(name, Some(v))] => Ok((*v, name.clone())),
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
            Err(format!(
                "exports {} as its ABI version marker: exactly one crmkit_abi_vN with a number N is expected; supported: {supported}",
                names.join(", ")
            ))
        }
    }
}

/// Every way `module`'s exports fall short of version 1: the version marker (and, given a
/// manifest, its agreement with `abi`), `memory`, the allocator and every hook export the
/// manifest names — each with the export at fault when it is a hook's.
pub(crate) fn export_problems(module: &Module, manifest: Option<&Manifest>) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    match (marker(module), manifest) {
        (Err(m), _) => out.push((None, m)),
        (Ok((v, name)), Some(manifest)) if v != manifest.abi => out.push((
            None,
            format!("the module is ABI version {v} (export {name}), plugin.toml says abi = {}", manifest.abi),
        )),
        (Ok(_), _) => {}
    }
    match module.get_export(abi::MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(ExternType::Memory(_)) => {
            out.push((None, "exports a 64-bit or shared memory; version 1 takes a plain 32-bit memory".into()))
        }
        _ => out.push((None, "exports no memory named \"memory\"".into())),
    }
    if let Err(m) = func_is(module.get_export(abi::ALLOC), &["i32"], &["i32"]) {
        out.push((None, format!("{}: {m}", abi::ALLOC)));
    }
    if let Some(ty) = module.get_export(abi::RESET) {
        if let Err(m) = func_is(Some(ty), &[], &[]) {
            out.push((None, format!("{}: {m}", abi::RESET)));
        }
    }
    for (point, export) in manifest.map(|m| &m.hooks).into_iter().flatten() {
        if let Err(m) = func_is(module.get_export(export), &["i32", "i32"], &["i64"]) {
            out.push((Some(export.clone()), format!("the hook export for {point} {m}")));
        }
    }
    out
}

/// Checks every import is one the host provides to this plugin; whether it reads.
pub(crate) fn check_imports(module: &Module, manifest: &Manifest) -> Result<bool, String> {
    let (problems, reads) = import_problems(module, Some(manifest.capabilities.as_slice()));
    problems.into_iter().next().map_or(Ok(reads), Err)
}

/// The type version 1 gives the import `name` of its namespace, when it has one.
fn import_type(name: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match name {
        "log" => Some((&["i32", "i32", "i32"], &[])),
        "now_ms" | "config" => Some((&[], &["i64"])),
        n if abi::CAPABILITIES.contains(&n) => Some((&["i32", "i32"], &["i64"])),
        _ => None,
    }
}

/// Every import of `module` the host does not provide (another namespace, WASI, an unknown
/// name, a wrong type) and, given the manifest's `capabilities`, every read it does not
/// request; and whether it imports a read.
pub(crate) fn import_problems(module: &Module, capabilities: Option<&[String]>) -> (Vec<String>, bool) {
    let provided = || {
        format!(
            "version 1 provides {}.{{{}}}",
            abi::NAMESPACE,
            abi::FREE_IMPORTS.iter().chain(abi::CAPABILITIES).copied().collect::<Vec<_>>().join(", ")
        )
    };
    let (mut out, mut reads) = (Vec::new(), false);
    for i in module.imports() {
        let full = format!("{}.{}", i.module(), i.name());
        if abi::WASI.contains(&i.module()) {
            out.push(format!("imports {full}: WASI is not part of ABI version 1 (build without WASI: a core module with no imports besides {})", abi::NAMESPACE));
            continue;
        }
        let Some((params, results)) = import_type(i.name()).filter(|_| i.module() == abi::NAMESPACE) else {
            out.push(format!("imports {full}, which the host does not provide ({})", provided()));
            continue;
        };
        if let Err(m) = func_is(Some(i.ty()), params, results) {
            out.push(format!("imports {full}, which {}", m.replacen("is not exported", "is missing", 1)));
            continue;
        }
        if abi::CAPABILITIES.contains(&i.name()) {
            reads = true;
            if capabilities.is_some_and(|c| !c.iter().any(|c| c == i.name())) {
                out.push(format!(
                    "imports {full}, which needs capability {}: plugin.toml does not request it (capabilities = [\"{}\"])",
                    i.name(),
                    i.name()
                ));
            }
        }
    }
    (out, reads)
}
