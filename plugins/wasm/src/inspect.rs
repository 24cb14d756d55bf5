//! One module file looked at from outside, for `crmkit plugin inspect`: what it exports and
//! imports, the ABI version its marker says, and — given the manifest beside it — every way
//! the two disagree. The same checks as loading, listed in full rather than stopping at the
//! first, and without an installation (grants and caps are the installation's, not looked at).

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, ExternType, Module};

use crate::abi;
use crate::check::{export_problems, hex, import_problems, marker, signature};
use crate::manifest::Manifest;

/// What a module exports and imports, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// The module's SHA-256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: usize,
    /// The ABI version its marker says and the marker's name, or why it has none this host
    /// runs.
    pub abi: Result<(u32, String), String>,
    /// Each export, in the module's order: its name and type (`func (i32, i32) -> (i64)`,
    /// `memory 1 page(s)`, …).
    pub exports: Vec<(String, String)>,
    /// Each import as `namespace.name` and its type.
    pub imports: Vec<(String, String)>,
    /// Every problem found, each a sentence naming what is wrong; none: the module loads
    /// as far as the module and the manifest can tell.
    pub problems: Vec<String>,
}

/// Looks at the module `bytes` (the file `file_name`, `NAME.wasm`), against `manifest` when
/// one is given. An error: the bytes are not a core WebAssembly module at all.
pub fn inspect(file_name: &str, bytes: &[u8], manifest: Option<&Manifest>) -> Result<Inspection, String> {
    if !bytes.starts_with(b"\0asm") {
        return Err(format!("{file_name} is not a WebAssembly module (it does not start with \\0asm)"));
    }
    if bytes.get(4..8) != Some(&[1, 0, 0, 0][..]) {
        return Err(format!(
            "{file_name} is not a core WebAssembly module of version 1 (a component or another binary version); ABI version 1 takes core modules"
        ));
    }
    let engine = Engine::new(&Config::new()).map_err(|e| format!("the engine: {e}"))?;
    let module = Module::new(&engine, bytes).map_err(|e| format!("{file_name} does not compile: {e:#}"))?;
    let sha256 = hex(&Sha256::digest(bytes));
    let mut problems = Vec::new();
    if let Some(m) = manifest {
        let stem = file_name.strip_suffix(".wasm").unwrap_or(file_name);
        if m.name != stem {
            problems.push(format!(
                "plugin.toml names the plugin \"{}\", the module is {file_name}: a plugin's module is NAME.wasm",
                m.name
            ));
        }
        if !abi::SUPPORTED.contains(&m.abi) {
            problems.push(format!(
                "plugin.toml: abi = {}: found ABI version {}, supported: {}",
                m.abi,
                m.abi,
                abi::supported()
            ));
        }
        if m.sha256 != sha256 {
            problems.push(sha_mismatch(file_name, &sha256, &m.sha256));
        }
    }
    problems.extend(export_problems(&module, manifest).into_iter().map(|(export, m)| match export {
        Some(e) => format!("export {e}: {m}"),
        None => m,
    }));
    problems.extend(import_problems(&module, manifest.map(|m| m.capabilities.as_slice())).0);
    Ok(Inspection {
        sha256,
        size: bytes.len(),
        abi: marker(&module),
        exports: module.exports().map(|e| (e.name().to_string(), describe(&e.ty()))).collect(),
        imports: module.imports().map(|i| (format!("{}.{}", i.module(), i.name()), describe(&i.ty()))).collect(),
        problems,
    })
}

/// The message of a module that is not the one its manifest names.
pub(crate) fn sha_mismatch(file: &str, found: &str, declared: &str) -> String {
    format!(
        "the SHA-256 of {file} is {found}, plugin.toml says {declared}: the module is not the one the manifest was written for"
    )
}

/// A type as the inspection shows it.
fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => format!("func {}", signature(f)),
        ExternType::Memory(m) => {
            let max = m.maximum().map(|x| format!(" (at most {x})")).unwrap_or_default();
            let bits = if m.is_64() { ", 64-bit" } else { "" };
            let shared = if m.is_shared() { ", shared" } else { "" };
            format!("memory {} page(s){max}{bits}{shared}", m.minimum())
        }
        ExternType::Global(g) => format!("global {}{}", if g.mutability().is_var() { "mut " } else { "" }, g.content()),
        ExternType::Table(t) => format!("table {} of {}", t.minimum(), t.element()),
        ExternType::Tag(_) => "tag".to_string(),
    }
}
