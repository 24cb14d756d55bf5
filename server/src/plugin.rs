//! WASM plugins from the command line: `crmkit plugin inspect` looks at one module and the
//! manifest beside it, `crmkit plugin check` loads every plugin of an installation as the
//! server would, and `crmkit plugin run` calls one export on a hook input and prints the
//! answer as the engine would take it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use crmkit_core::hooks::{accept, fault, CallLimits, HookPoint, Reply, View};
use crmkit_core::Installation;
use crmkit_wasm::{Manifest, PluginHost, WasmProvider};

use crate::console;

#[derive(Subcommand)]
pub enum What {
    /// A module's exports and imports with their types, the ABI version its marker says and,
    /// when a plugin.toml is beside it, whether the two agree (SHA-256, hooks and exports,
    /// capabilities and imports). Exit status 1 names every problem.
    Inspect {
        /// The module, NAME.wasm.
        file: PathBuf,
    },
    /// Load every plugin of the installation as the server does — its manifest, module,
    /// grants and limits — and check the bindings to plugin exports: one line per plugin and
    /// per binding; exit status 1 names each failure.
    Check { dir: PathBuf },
    /// Call one plugin export on a hook input, against the installation, and print its answer
    /// as the engine takes it (or the fault). Nothing is written.
    Run {
        dir: PathBuf,
        /// The plugin's name (its folder in the plugins folder).
        plugin: String,
        /// The hook point (`deal.before_transition`) or the export the manifest declares for it.
        hook: String,
        /// A JSON file with the hook's input as the contract writes it (docs/hooks.md, `"v": 1`),
        /// as `crmkit script run --input` reads it.
        #[arg(long)]
        input: PathBuf,
    },
}

impl What {
    /// The installation the command works on (`inspect` works on a file alone).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            What::Inspect { .. } => None,
            What::Check { dir } | What::Run { dir, .. } => Some(dir),
        }
    }
}

pub fn run(what: What) -> Result<()> {
    match what {
        What::Inspect { file } => inspect(&file),
        What::Check { dir } => {
            let inst = console::installation_read_only(&dir)?;
            check(&inst)
        }
        What::Run { dir, plugin, hook, input } => {
            let inst = console::installation_read_only(&dir)?;
            run_export(&inst, &plugin, &hook, &input)
        }
    }
}

/// `crmkit plugin inspect FILE.wasm`.
fn inspect(file: &Path) -> Result<()> {
    let bytes = std::fs::read(console::path(file)).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest_file = file.with_file_name("plugin.toml");
    let manifest = match std::fs::read_to_string(console::path(&manifest_file)) {
        Ok(text) => Some(Manifest::parse(&text).map_err(|m| anyhow::anyhow!("{}: {m}", manifest_file.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", manifest_file.display())),
    };
    let found = crmkit_wasm::inspect(&name, &bytes, manifest.as_ref()).map_err(|m| anyhow::anyhow!("{m}"))?;
    say!("module: {} ({} bytes, sha256 {})", file.display(), found.size, found.sha256);
    match &found.abi {
        Ok((v, marker)) => say!("abi: {v} (export {marker})"),
        Err(_) => say!("abi: none this host runs (supported: {})", crmkit_wasm::supported()),
    }
    say!("exports: {}", found.exports.len());
    for (name, ty) in &found.exports {
        say!("  {name}: {ty}");
    }
    say!("imports: {}", found.imports.len());
    for (name, ty) in &found.imports {
        say!("  {name}: {ty}");
    }
    match &manifest {
        None => say!("manifest: none ({} is not there; the module alone was checked)", manifest_file.display()),
        Some(m) => {
            say!("manifest: {} ({} {}, abi {})", manifest_file.display(), m.name, m.version, m.abi);
            for (point, export) in &m.hooks {
                say!("  hook {point}: export {export}");
            }
            for c in &m.capabilities {
                let used = found.imports.iter().any(|(i, _)| i == &format!("{}.{c}", crmkit_wasm::NAMESPACE));
                say!("  capability {c}: {}", if used { "imported" } else { "requested, not imported" });
            }
        }
    }
    if found.problems.is_empty() {
        say!("ok");
        return Ok(());
    }
    for p in &found.problems {
        complain!("problem: {p}");
    }
    bail!("{}: {} problem(s)", file.display(), found.problems.len())
}

/// A host for the installation's plugins as they are on disk now, under its config (nothing
/// loaded yet).
fn host(inst: &Installation) -> Result<PluginHost> {
    crate::script::plugin_host(inst, inst.settings()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `crmkit plugin check DIR`.
fn check(inst: &Installation) -> Result<()> {
    let host = host(inst)?;
    let names = host.names();
    if names.is_empty() {
        say!("plugins: none in {}", host.dir().display());
    }
    let mut failed = Vec::new();
    for name in &names {
        match host.load(name) {
            Ok(p) => {
                let m = &p.manifest;
                let hooks: Vec<String> = m.hooks.iter().map(|(p, e)| format!("{p} -> {e}")).collect();
                say!(
                    "plugin {name} {}: ok (abi {}; hooks: {}; capabilities: {}; instances: {})",
                    m.version,
                    m.abi,
                    if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") },
                    if m.capabilities.is_empty() { "none".to_string() } else { m.capabilities.join(", ") },
                    if p.reuses_instances() { "reused" } else { "fresh" }
                );
            }
            Err(e) => {
                complain!("error: {e}");
                failed.push(name.clone());
            }
        }
    }
    let provider = WasmProvider::new(std::sync::Arc::new(host));
    let mut bad_bindings = 0;
    for b in inst.settings().hooks.iter().filter(|b| b.runtime == crmkit_wasm::RUNTIME) {
        use crmkit_core::hooks::HandlerProvider as _;
        match provider.handler(b) {
            Ok(_) => say!("binding {} -> {}: ok", b.point, b.handler),
            Err(e) if failed.iter().any(|f| b.handler.starts_with(&format!("{f}.wasm::"))) => {
                say!("binding {} -> {}: not checked ({e})", b.point, b.handler)
            }
            Err(e) => {
                complain!("error: binding {} -> {}: {e}", b.point, b.handler);
                bad_bindings += 1;
            }
        }
    }
    match (failed.len(), bad_bindings) {
        (0, 0) => Ok(()),
        (0, b) => bail!("{b} binding(s) to plugin exports cannot be made"),
        (n, b) => bail!(
            "{n} of {} plugin(s) do not load: {}{}",
            names.len(),
            failed.join(", "),
            if b > 0 { format!("; {b} binding(s) to plugin exports cannot be made") } else { String::new() }
        ),
    }
}

/// The point and export `hook` names in `manifest`: a point it declares, or an export it
/// declares for exactly one point (else for the point the input names).
fn point_and_export(manifest: &Manifest, hook: &str, input_hook: Option<&str>) -> Result<(HookPoint, String)> {
    if let Some(point) = HookPoint::from_name(hook) {
        return match manifest.hooks.get(&point) {
            Some(export) => Ok((point, export.clone())),
            None => bail!(
                "plugin {} declares no export for {point} in its plugin.toml ({})",
                manifest.name,
                declared(manifest)
            ),
        };
    }
    let points: Vec<HookPoint> = manifest.hooks.iter().filter(|(_, e)| *e == hook).map(|(p, _)| *p).collect();
    match points.as_slice() {
        [] => bail!(
            "\"{hook}\" is neither a hook point nor an export plugin {} declares in its plugin.toml ({})",
            manifest.name,
            declared(manifest)
        ),
        [p] => Ok((*p, hook.to_string())),
        many => match many.iter().find(|p| Some(p.name()) == input_hook) {
            Some(p) => Ok((*p, hook.to_string())),
            None => bail!(
                "plugin {} declares export {hook} for {}: name the point instead",
                manifest.name,
                many.iter().map(|p| p.name()).collect::<Vec<_>>().join(" and ")
            ),
        },
    }
}

fn declared(m: &Manifest) -> String {
    if m.hooks.is_empty() {
        return "it declares none".to_string();
    }
    let list: Vec<String> = m.hooks.iter().map(|(p, e)| format!("{p} -> {e}")).collect();
    format!("it declares {}", list.join(", "))
}

/// `crmkit plugin run DIR PLUGIN HOOK --input FILE`.
fn run_export(inst: &Installation, plugin: &str, hook: &str, input: &Path) -> Result<()> {
    let host = host(inst)?;
    // A name that is no folder of the plugins folder is said so, not as a file not found.
    let p = if host.names().iter().any(|n| n == plugin) { host.load(plugin) } else { host.plugin(plugin) }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = std::fs::read_to_string(console::path(input)).with_context(|| format!("reading {}", input.display()))?;
    let not_input = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}: not a hook input of the contract (docs/hooks.md): {e}", input.display())
    };
    // The same reading of the input as `crmkit script run`: what one refuses, so does the other.
    let now = inst.store().clock().now();
    let _ctx = crmkit_rhai::context_from_json(&text, inst.settings(), now).map_err(|e| not_input(&e))?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| not_input(&e))?;
    // An input written without `now` (added to version 1 later) is given the installation's.
    if let Some(fields) = json.as_object_mut() {
        fields.entry("now").or_insert_with(|| serde_json::Value::String(now.to_string()));
    }
    let input_hook = json.get("hook").and_then(|h| h.as_str());
    let (point, export) = point_and_export(&p.manifest, hook, input_hook)?;
    if input_hook != Some(point.name()) {
        bail!(
            "{}: the input is for {}, the export {plugin}.wasm::{export} is for {point}",
            input.display(),
            input_hook.unwrap_or("no hook")
        );
    }
    let handler = format!("{plugin}.wasm::{export}");
    let snapshot = inst.store().read()?;
    let bytes = serde_json::to_vec(&json)?;
    // `now_ms` answers the input's `now`, as in the engine's calls.
    let at = json
        .get("now")
        .and_then(|n| n.as_str())
        .and_then(|n| crmkit_core::time::Timestamp::parse(n).ok())
        .unwrap_or(now);
    let reply = host
        .call_at(at, plugin, &export, &bytes, Some(&snapshot as &dyn View), CallLimits::default())
        .map_err(|e| fault(point, &handler, e.to_string()))?;
    let answer = accept(point, &handler, Reply::Json(reply))?;
    say!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
