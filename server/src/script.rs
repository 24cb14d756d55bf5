//! Scripts from the command line: the process engine with an installation's script
//! handlers bound, `crmkit script check` and `crmkit script run`.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use crmkit_core::config::Settings;
use crmkit_core::hooks::{CallLimits, Hooks};
use crmkit_core::process::Engine;
use crmkit_core::report::ColumnType;
use crmkit_core::Installation;
use crmkit_rhai::{RhaiProvider, RhaiSettings, ScriptError, ScriptHost};
use crmkit_wasm::{PluginHost, WasmProvider, WasmSettings};

#[derive(Subcommand)]
pub enum What {
    /// Compile every script (or one) and check every binding of config to a script
    /// function: errors name file:line:column.
    Check {
        dir: std::path::PathBuf,
        /// One script, relative to scripts/.
        file: Option<String>,
    },
    /// Run one script function on an input, against the installation, and print what it
    /// answers (as JSON). Nothing is written.
    Run {
        dir: std::path::PathBuf,
        /// The script, relative to scripts/.
        file: String,
        /// The function.
        function: String,
        /// A JSON file with the hook's input as the contract writes it (docs/hooks.md, `"v": 1`):
        /// the function gets the same `ctx` the engine gives it. None: `()`.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
    },
}

impl What {
    /// The installation the command works on.
    pub fn dir(&self) -> &std::path::Path {
        match self {
            What::Check { dir, .. } | What::Run { dir, .. } => dir,
        }
    }
}

/// The scripts of an installation, compiled, and what does not compile. A config section
/// for a runtime this program does not have is an error naming its line.
pub fn host(inst: &Installation) -> Result<(Arc<ScriptHost>, Vec<ScriptError>)> {
    let settings = inst.settings();
    for (name, line) in &settings.runtimes {
        if name != crmkit_rhai::RUNTIME && name != crmkit_wasm::RUNTIME {
            bail!(
                "{}:{line}: [runtimes.{name}]: no {name} runtime is available here (runtimes: {}, {})",
                settings.source.file.display(),
                crmkit_rhai::RUNTIME,
                crmkit_wasm::RUNTIME
            );
        }
    }
    let limits = RhaiSettings::from_settings(settings)?;
    let host = Arc::new(ScriptHost::new(&inst.dir().join("scripts"), &limits).watch(std::time::Duration::from_secs(1)));
    let errors = host.load_all();
    Ok((host, errors))
}

/// The process engine of an installation: config's bindings, script handlers included.
pub fn engine(inst: &Installation) -> Result<Engine> {
    Ok(engine_and_scripts(inst)?.0)
}

/// The hosts a process engine calls: the installation's scripts (reports run on the same
/// host) and its plugins.
pub struct Runtimes {
    /// The Rhai scripts.
    pub scripts: Arc<ScriptHost>,
    /// The WASM plugins.
    pub plugins: Arc<PluginHost>,
}

/// The process engine and the script and plugin hosts it calls.
pub fn engine_and_scripts(inst: &Installation) -> Result<(Engine, Runtimes)> {
    let (host, errors) = host(inst)?;
    report_errors(&errors)?;
    let plugins = plugins(inst)?;
    let engine = Engine::new(inst.settings(), hooks(&host, &plugins))?;
    Ok((engine, Runtimes { scripts: host, plugins }))
}

/// The plugins of an installation (`[runtimes.wasm]`, the folder `plugins/` by default),
/// loaded, their compiled code kept in `data/plugin-cache/`. A plugin that does not load is
/// an error naming it, as a script that does not compile is.
pub fn plugins(inst: &Installation) -> Result<Arc<PluginHost>> {
    load_plugins(inst, inst.settings()).or_else(|errors| {
        for e in &errors {
            complain!("error: {e}");
        }
        bail!("{} plugin problem(s)", errors.len())
    })
}

/// A host for the plugins of an installation under `settings` (`[runtimes.wasm]`), its
/// compiled code kept in `data/plugin-cache/`; nothing loaded yet.
pub fn plugin_host(inst: &Installation, settings: &Settings) -> std::result::Result<PluginHost, String> {
    let wasm = WasmSettings::from_settings(settings).map_err(|e| e.to_string())?;
    let dir = inst.dir().join(&wasm.dir);
    let cache = inst.dir().join("data").join("plugin-cache");
    PluginHost::new(&dir, Some(&cache), &wasm).map_err(|e| e.to_string())
}

/// The plugins of an installation under `settings`, or every reason they do not load.
fn load_plugins(inst: &Installation, settings: &Settings) -> std::result::Result<Arc<PluginHost>, Vec<String>> {
    let host = plugin_host(inst, settings).map_err(|e| vec![e])?;
    let errors = host.load_all();
    if !errors.is_empty() {
        return Err(errors.iter().map(ToString::to_string).collect());
    }
    Ok(Arc::new(host))
}

/// The reports of an installation: the built-in analytics (docs/analytics.md), then its
/// report scripts, on `host` — a script named like a built-in report is not reached by
/// that name.
pub fn reports(host: &Arc<ScriptHost>) -> crmkit_core::report::Reports {
    let mut reports = crmkit_core::report::Reports::new();
    reports.add(Arc::new(crmkit_core::analytics::Analytics));
    reports.add(Arc::new(crmkit_rhai::RhaiReports::new(host.clone())));
    reports
}

/// The runtimes an installation's bindings may name: Rhai, on `host`, and WASM, the plugins
/// of `plugins`; and the native handlers built in: the win-probability model (`win_probability`,
/// docs/analytics.md).
pub fn hooks(host: &Arc<ScriptHost>, plugins: &Arc<PluginHost>) -> Hooks {
    let mut hooks = Hooks::new();
    crmkit_core::analytics::model::register(&mut hooks);
    hooks.provider(Arc::new(RhaiProvider::new(host.clone())));
    hooks.provider(Arc::new(WasmProvider::new(plugins.clone())));
    hooks
}

fn report_errors(errors: &[ScriptError]) -> Result<()> {
    for e in errors {
        complain!("error: {e}");
    }
    if !errors.is_empty() {
        bail!("{} script problem(s)", errors.len());
    }
    Ok(())
}

/// What [`check_installation`] found in order.
pub struct Checked {
    /// Scripts compiled.
    pub scripts: usize,
    /// Bindings to script functions.
    pub script_bindings: usize,
    /// Plugins loaded.
    pub plugins: usize,
    /// Bindings to plugin exports.
    pub plugin_bindings: usize,
}

/// Compiles the scripts, loads the plugins and checks the bindings to both: every script
/// that does not compile, or else every plugin that does not load, is an error naming it.
pub fn check_installation(inst: &Installation) -> Result<Checked> {
    let (host, errors) = host(inst)?;
    report_errors(&errors)?;
    let plugins = plugins(inst)?;
    Engine::new(inst.settings(), hooks(&host, &plugins))?;
    let count = |runtime: &str| inst.settings().hooks.iter().filter(|b| b.runtime == runtime).count();
    Ok(Checked {
        scripts: host.files().len(),
        script_bindings: count(crmkit_rhai::RUNTIME),
        plugins: plugins.loaded().len(),
        plugin_bindings: count(crmkit_wasm::RUNTIME),
    })
}

pub fn run(what: What) -> Result<()> {
    match what {
        What::Check { dir, file } => {
            let inst = crate::console::installation(&dir)?;
            match file {
                Some(f) => {
                    let host =
                        ScriptHost::new(&inst.dir().join("scripts"), &RhaiSettings::from_settings(inst.settings())?);
                    host.load(&f).map_err(|e| anyhow::anyhow!("{e}"))?;
                    say!("scripts/{f}: ok");
                }
                None => {
                    let c = check_installation(&inst)?;
                    say!(
                        "scripts: ok ({} scripts compiled, {} bindings to script functions checked)",
                        c.scripts,
                        c.script_bindings
                    );
                }
            }
            Ok(())
        }
        What::Run { dir, file, function, input } => {
            let inst = crate::console::installation(&dir)?;
            let (host, errors) = host(&inst)?;
            report_errors(&errors)?;
            let arg = match input {
                Some(path) => {
                    let text = std::fs::read_to_string(crate::console::path(&path))
                        .with_context(|| format!("reading {}", path.display()))?;
                    crmkit_rhai::context_from_json(&text, inst.settings(), inst.store().clock().now()).map_err(|e| {
                        anyhow::anyhow!("{}: not a hook input of the contract (docs/hooks.md): {e}", path.display())
                    })?
                }
                None => rhai::Dynamic::UNIT,
            };
            let snapshot = inst.store().read()?;
            let out = host
                .call_with(&snapshot, &file, &function, vec![arg], CallLimits::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let json: serde_json::Value = rhai::serde::from_dynamic(&out)
                .map_err(|e| anyhow::anyhow!("{file}::{function} answered a value JSON cannot hold: {e}"))?;
            say!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
    }
}

/// `crmkit report DIR NAME`: a report script's table.
pub fn report(dir: &std::path::Path, name: &str, params: &[String], format: &str) -> Result<()> {
    let inst = crate::console::installation(dir)?;
    let (host, errors) = host(&inst)?;
    report_errors(&errors)?;
    let mut args = std::collections::BTreeMap::new();
    for p in params {
        let (k, v) = p.split_once('=').with_context(|| format!("--param {p}: expected NAME=VALUE"))?;
        args.insert(k.trim().to_string(), v.to_string());
    }
    let snapshot = inst.store().read()?;
    let table = reports(&host).run(name, &args, &snapshot)?;
    print_table(&table, format)
}

/// Prints a report's table in `format`: `table` (aligned columns for the terminal), `csv` or
/// `json`.
pub fn print_table(table: &crmkit_core::report::Table, format: &str) -> Result<()> {
    let text = crmkit_core::report::cell_text;
    match format {
        "json" => say!("{}", serde_json::to_string_pretty(&table)?),
        "csv" => say!("{}", String::from_utf8_lossy(&table.to_csv()).trim_end()),
        "table" => {
            let cells: Vec<Vec<String>> = table.rows().iter().map(|r| r.iter().map(text).collect()).collect();
            let widths: Vec<usize> = table
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells.iter().map(|r| r[i].chars().count()).chain([c.name.chars().count()]).max().unwrap_or(0)
                })
                .collect();
            let line = |values: Vec<&str>| {
                values
                    .iter()
                    .zip(&widths)
                    .zip(table.columns())
                    .map(|((v, w), c)| {
                        if matches!(c.ty, ColumnType::Text | ColumnType::Date) {
                            format!("{v:<w$}")
                        } else {
                            format!("{v:>w$}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            say!("{}", line(table.columns().iter().map(|c| c.name.as_str()).collect()));
            for r in &cells {
                say!("{}", line(r.iter().map(String::as_str).collect()));
            }
            say!("({} rows)", cells.len());
        }
        other => bail!("\"{other}\" is not a format: table, csv or json"),
    }
    Ok(())
}

/// The hook bindings in force in a running server, the process engine that calls them and
/// the plugins it calls: a reload replaces them at once, and the writes after it run on the
/// new engine (a group of writes takes the engine once, when it starts).
pub struct Bound {
    current: std::sync::RwLock<(Arc<Engine>, Arc<Settings>, Arc<PluginHost>)>,
}

impl Bound {
    /// `engine`, made from `settings`' bindings, calling `plugins`.
    pub fn new(engine: Engine, settings: Arc<Settings>, plugins: Arc<PluginHost>) -> Bound {
        Bound { current: std::sync::RwLock::new((Arc::new(engine), settings, plugins)) }
    }

    /// The engine in force.
    pub fn engine(&self) -> Arc<Engine> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// The config whose `[[hooks]]` are in force (its other sections are the ones the
    /// server started with).
    pub fn settings(&self) -> Arc<Settings> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// The plugins the engine in force calls.
    pub fn plugins(&self) -> Arc<PluginHost> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).2.clone()
    }

    fn replace(&self, engine: Engine, settings: Arc<Settings>, plugins: Arc<PluginHost>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(engine), settings, plugins);
    }
}

/// What a reload did: the scripts that do not compile, the plugins that do not load, and why
/// the config was not applied. Empty lists: every edited script, every plugin as it is on
/// disk and the config's `[[hooks]]` are in force.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reloaded {
    /// Scripts that no longer compile (their last good version stays in use), file:line.
    pub script_errors: Vec<String>,
    /// Plugins that do not load (the plugins in use stay, all of them), each naming the
    /// plugin and why.
    pub plugin_errors: Vec<String>,
    /// Why the config's bindings were not applied, file:line (none: applied).
    pub config_errors: Vec<String>,
    /// Whether the config's `[[hooks]]` (and the scripts and plugins) are now in force.
    pub applied: bool,
}

/// Re-reads the installation's scripts, plugins and config and applies the config's
/// `[[hooks]]` bindings on the plugins as they are on disk: all of them or, when a script
/// does not compile, a plugin does not load, a binding cannot be made or another section of
/// config changed (those need a restart), none — the running bindings and plugins stay, and
/// the answer says why.
pub fn reload(inst: &Installation, host: &Arc<ScriptHost>, bound: &Bound) -> Reloaded {
    let mut out = Reloaded {
        script_errors: host.reload_changed().iter().map(ToString::to_string).collect(),
        ..Default::default()
    };
    // The watch may have compiled an edit already; what does not compile now is still an error.
    for s in host.status() {
        if let Some(e) = s.error {
            if !out.script_errors.contains(&e) {
                out.script_errors.push(e);
            }
        }
    }
    let settings = match Settings::load_installation(inst.dir()) {
        Ok(s) => s,
        Err(e) => {
            out.config_errors.push(e.to_string());
            return out;
        }
    };
    out.config_errors = changed_sections(&bound.settings(), &settings);
    if !out.config_errors.is_empty() || !out.script_errors.is_empty() {
        return out;
    }
    // Plugins load afresh: a new or changed module is picked up, or the reload says why not.
    let plugins = match load_plugins(inst, &settings) {
        Ok(p) => p,
        Err(errors) => {
            out.plugin_errors = errors;
            return out;
        }
    };
    match Engine::new(&settings, hooks(host, &plugins)) {
        Ok(engine) => {
            bound.replace(engine, Arc::new(settings), plugins);
            out.applied = true;
        }
        Err(e) => out.config_errors.extend(e.to_string().lines().map(str::to_string)),
    }
    out
}

/// The sections of config other than `[[hooks]]` that differ between the running config and
/// `new`, each as an error naming its place: a reload does not apply them.
fn changed_sections(running: &Settings, new: &Settings) -> Vec<String> {
    let table = |s: &Settings| toml::from_str::<toml::Table>(&s.source.text).unwrap_or_default();
    let (old, now) = (table(running), table(new));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(now.keys()).collect();
    let file = new.source.file.display();
    keys.into_iter()
        .filter(|k| k.as_str() != "hooks" && old.get(*k) != now.get(*k))
        .map(|k| {
            let line = line_of(&new.source.text, k).or_else(|| line_of(&running.source.text, k));
            let place = line.map_or(format!("{file}"), |l| format!("{file}:{l}"));
            format!(
                "{place}: [{k}] changed; a reload applies [[hooks]] bindings and scripts only: restart the server \
                 to apply it (nothing of this config was applied)"
            )
        })
        .collect()
}

/// The line where the top-level key or section `key` is first written.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let header = l.trim_start_matches('[');
            (l.starts_with('[') && (header.starts_with(&format!("{key}]")) || header.starts_with(&format!("{key}."))))
                || (l.starts_with(key) && l[key.len()..].trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}
