//! The plugin host: one wasmtime engine for an installation's plugins, each plugin loaded
//! once (checked against its manifest and the ABI, compiled or taken from the cache, linked
//! with the imports it is granted). Calls are in call.rs, the checks of a module in
//! check.rs, the host's imports in imports.rs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crmkit_core::time::{Clock, SystemClock};
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, InstancePre, Module, PoolingAllocationConfig};

use crate::abi;
use crate::cache::Cache;
use crate::call::{Idle, State, Ticker, MAX_TABLE_ELEMENTS};
use crate::check::{check_exports, check_imports, hex};
use crate::imports::linker;
use crate::manifest::Manifest;
use crate::settings::WasmSettings;

/// A plugin that cannot be loaded or a call that failed: which plugin, which export, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub plugin: String,
    /// The export called, for errors of a call or of one export.
    pub export: Option<String>,
    pub message: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}", self.plugin)?;
        if let Some(e) = &self.export {
            write!(f, ", export {e}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PluginError {}

impl PluginError {
    pub(crate) fn new(plugin: &str, export: Option<&str>, message: impl Into<String>) -> PluginError {
        PluginError { plugin: plugin.to_string(), export: export.map(str::to_string), message: message.into() }
    }
}

/// How a loaded plugin's code was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compiled {
    /// Compiled now, taking this long.
    Now { ms: u64 },
    /// Taken from the cache of compiled code.
    FromCache,
}

/// A loaded plugin: its manifest, checked module and the instance template of its calls.
pub struct Plugin {
    pub manifest: Manifest,
    /// The module file.
    pub path: PathBuf,
    pub compiled: Compiled,
    pub(crate) pre: InstancePre<State>,
    /// The memory it may use, in bytes.
    pub(crate) memory_bytes: usize,
    /// Its time per call when the binding does not say, in ms.
    pub(crate) timeout_ms: u64,
    pub(crate) config: Arc<[u8]>,
    /// Whether it imports a read (its calls then need the store).
    pub(crate) reads: bool,
    /// Its idle instances, when the installation lets it reuse them.
    pub(crate) idle: Option<Idle>,
}

impl Plugin {
    /// Whether its instances are kept between calls (`runtimes.wasm.reuse`).
    pub fn reuses_instances(&self) -> bool {
        self.idle.is_some()
    }

    /// How many of its instances wait for a call.
    pub fn idle_instances(&self) -> usize {
        self.idle.as_ref().map_or(0, Idle::len)
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("manifest", &self.manifest).field("path", &self.path).finish()
    }
}

/// A plugin as its host sees it (see [`PluginHost::status`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PluginStatus {
    /// Its name: its folder in the plugins folder.
    pub name: String,
    /// Whether a loaded version is in use (calls go to it).
    pub in_use: bool,
    /// Why the plugin as it is on disk now does not load (`None`: it loads).
    pub error: Option<String>,
    /// Whether the plugin on disk loads and differs from the version in use (or none is):
    /// loading it again would put it in use.
    pub pending: bool,
    /// The plugin's version, ABI version and module SHA-256 — of the version in use, else of
    /// the one on disk; `None` when neither is there to say.
    pub version: Option<String>,
    pub abi: Option<u32>,
    pub sha256: Option<String>,
    /// The export for each hook point it provides.
    pub hooks: BTreeMap<crmkit_core::hooks::HookPoint, String>,
    /// The capabilities it is linked with: requested in its manifest and granted by the
    /// installation (a plugin with a capability not granted does not load).
    pub capabilities: Vec<String>,
    /// Whether its instances are kept between calls (`runtimes.wasm.reuse`); false: every
    /// call runs in a fresh instance.
    pub reuses_instances: bool,
}

/// How much of a finished instance's memory and table stays mapped for the next instance
/// in its slot instead of being given back to the system and zeroed on the next use.
const KEEP_RESIDENT: usize = 1 << 20;

/// The plugins of one installation and the engine that runs them.
pub struct PluginHost {
    pub(crate) engine: Engine,
    dir: PathBuf,
    pub(crate) settings: WasmSettings,
    cache: Option<Cache>,
    pub(crate) clock: Arc<dyn Clock>,
    plugins: RwLock<BTreeMap<String, Arc<Plugin>>>,
    /// Why plugins that did not load did not.
    errors: RwLock<BTreeMap<String, PluginError>>,
    _ticker: Ticker,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost").field("dir", &self.dir).field("settings", &self.settings).finish()
    }
}

impl PluginHost {
    /// A host for the plugins in `dir` under `settings`, keeping compiled code in `cache`
    /// (when given and `settings.cache` is on). Nothing is loaded yet.
    pub fn new(dir: &Path, cache: Option<&Path>, settings: &WasmSettings) -> Result<PluginHost, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(settings.fuel.is_some());
        if settings.instance_slots > 0 {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(settings.instance_slots)
                .total_memories(settings.instance_slots)
                .total_tables(settings.instance_slots)
                .max_memory_size((settings.max_memory_mb as usize) << 20)
                .table_elements(MAX_TABLE_ELEMENTS)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::new("*", None, format!("the engine: {e}")))?;
        let cache =
            match cache.filter(|_| settings.cache) {
                Some(c) => Some(Cache::open(c, &engine).map_err(|e| {
                    PluginError::new("*", None, format!("the compiled-code cache {}: {e}", c.display()))
                })?),
                None => None,
            };
        Ok(PluginHost {
            _ticker: Ticker::start(&engine),
            engine,
            dir: dir.to_path_buf(),
            settings: settings.clone(),
            cache,
            clock: Arc::new(SystemClock),
            plugins: RwLock::new(BTreeMap::new()),
            errors: RwLock::new(BTreeMap::new()),
        })
    }

    /// The clock `now_ms` answers from in a [`call`](PluginHost::call) (default: the
    /// system's); the engine's calls answer their input's `now`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PluginHost {
        self.clock = clock;
        self
    }

    /// The rules the host was made with.
    pub fn settings(&self) -> &WasmSettings {
        &self.settings
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plugin folders (each holding `plugin.toml`), by name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("plugin.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// Loads every plugin of the folder; the errors of those that do not load.
    pub fn load_all(&self) -> Vec<PluginError> {
        self.names().iter().filter_map(|n| self.load(n).err()).collect()
    }

    /// The plugin in folder `name` as it is on disk now, checked and linked as [`load`] does,
    /// without putting it in use: the plugins in use stay as they are.
    ///
    /// [`load`]: PluginHost::load
    pub fn check(&self, name: &str) -> Result<Plugin, PluginError> {
        self.read_plugin(name)
    }

    /// Loads (or loads again) the plugin in folder `name`.
    pub fn load(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        let loaded = self.read_plugin(name).map(Arc::new);
        match &loaded {
            Ok(p) => {
                self.plugins.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), p.clone());
                self.errors.write().unwrap_or_else(|p| p.into_inner()).remove(name);
            }
            Err(e) => {
                self.errors.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), e.clone());
            }
        }
        loaded
    }

    /// The loaded plugin `name`, or why it is not loaded.
    pub fn plugin(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        if let Some(p) = self.plugins.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(p.clone());
        }
        if let Some(e) = self.errors.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Err(e.clone());
        }
        Err(PluginError::new(
            name,
            None,
            format!("there is no plugin {name} in {} (a folder with plugin.toml and {name}.wasm)", self.dir.display()),
        ))
    }

    /// Every plugin of the folder and every plugin in use: whether it loads as it is on disk
    /// now (loading it again from the compiled-code cache, without putting it in use), and
    /// what the version in use is.
    pub fn status(&self) -> Vec<PluginStatus> {
        let in_use = self.plugins.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut names: std::collections::BTreeSet<String> = self.names().into_iter().collect();
        names.extend(in_use.keys().cloned());
        names
            .into_iter()
            .map(|name| {
                let now = self.read_plugin(&name);
                let used = in_use.get(&name);
                let shown = used.map(|p| &p.manifest).or(now.as_ref().ok().map(|p| &p.manifest));
                PluginStatus {
                    in_use: used.is_some(),
                    error: now.as_ref().err().map(ToString::to_string),
                    pending: match (&now, used) {
                        (Ok(n), Some(u)) => n.manifest != u.manifest,
                        (Ok(_), None) => true,
                        (Err(_), _) => false,
                    },
                    version: shown.map(|m| m.version.clone()),
                    abi: shown.map(|m| m.abi),
                    sha256: shown.map(|m| m.sha256.clone()),
                    hooks: shown.map(|m| m.hooks.clone()).unwrap_or_default(),
                    capabilities: shown.map(|m| m.capabilities.clone()).unwrap_or_default(),
                    reuses_instances: used
                        .map(|p| p.reuses_instances())
                        .or(now.as_ref().ok().map(Plugin::reuses_instances))
                        .unwrap_or(false),
                    name,
                }
            })
            .collect()
    }

    /// The loaded plugins.
    pub fn loaded(&self) -> Vec<Arc<Plugin>> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn read_plugin(&self, name: &str) -> Result<Plugin, PluginError> {
        let err = |m: String| PluginError::new(name, None, m);
        let folder = self.dir.join(name);
        let manifest_file = folder.join("plugin.toml");
        let text =
            std::fs::read_to_string(&manifest_file).map_err(|e| err(format!("{}: {e}", manifest_file.display())))?;
        let manifest = Manifest::parse(&text).map_err(|m| err(format!("{}: {m}", manifest_file.display())))?;
        if manifest.name != name {
            return Err(err(format!(
                "{}: name \"{}\" differs from its folder's name \"{name}\"",
                manifest_file.display(),
                manifest.name
            )));
        }
        if !abi::SUPPORTED.contains(&manifest.abi) {
            return Err(err(format!(
                "{}: abi = {}: found ABI version {}, supported: {}",
                manifest_file.display(),
                manifest.abi,
                manifest.abi,
                abi::supported()
            )));
        }
        let path = folder.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let (module, compiled) = self.module(name, &path, &bytes, &manifest)?;
        check_exports(&module, &manifest).map_err(|(export, m)| PluginError::new(name, export.as_deref(), m))?;
        let granted = self.settings.grants.get(name).cloned().unwrap_or_default();
        for c in &manifest.capabilities {
            if !granted.contains(c) {
                return Err(err(format!(
                    "capability {c} is requested in plugin.toml but not granted to this plugin (runtimes.wasm.grants.{name})"
                )));
            }
        }
        let reads = check_imports(&module, &manifest).map_err(err)?;
        let reuse = self.settings.reuse.iter().any(|n| n == name);
        if reuse && module.get_export(abi::RESET).is_none() {
            return Err(err(format!(
                "runtimes.wasm.reuse lists {name}, but it does not export {} (a function () -> ()) to free what a call leaves; only a plugin that does can keep its instances",
                abi::RESET
            )));
        }
        let memory_mb = manifest.memory_mb.unwrap_or(self.settings.memory_mb);
        if memory_mb > self.settings.max_memory_mb {
            return Err(err(format!(
                "plugin.toml asks for limits.memory_mb = {memory_mb}; this installation allows at most {} (runtimes.wasm.max_memory_mb)",
                self.settings.max_memory_mb
            )));
        }
        let timeout_ms = manifest.timeout_ms.unwrap_or(self.settings.timeout_ms);
        if timeout_ms > self.settings.max_timeout_ms {
            return Err(err(format!(
                "plugin.toml asks for limits.timeout_ms = {timeout_ms}; this installation allows at most {} (runtimes.wasm.max_timeout_ms)",
                self.settings.max_timeout_ms
            )));
        }
        let linker = linker(&self.engine, &manifest.capabilities).map_err(|e| err(format!("linking: {e}")))?;
        let pre = linker.instantiate_pre(&module).map_err(|e| err(format!("linking: {e:#}")))?;
        let config: Arc<[u8]> = serde_json::to_vec(&manifest.config).unwrap_or_else(|_| b"{}".to_vec()).into();
        Ok(Plugin {
            manifest,
            path,
            compiled,
            pre,
            memory_bytes: (memory_mb as usize) << 20,
            timeout_ms,
            config,
            reads,
            idle: reuse.then(Idle::default),
        })
    }

    /// The module, checked to be the one the manifest names, compiled or from the cache.
    fn module(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        manifest: &Manifest,
    ) -> Result<(Module, Compiled), PluginError> {
        let err = |m: String| PluginError::new(name, None, m);
        if !bytes.starts_with(b"\0asm") {
            return Err(err(format!("{} is not a WebAssembly module (it does not start with \\0asm)", path.display())));
        }
        if bytes.get(4..8) != Some(&[1, 0, 0, 0][..]) {
            return Err(err(format!(
                "{} is not a core WebAssembly module of version 1 (a component or another binary version); ABI version 1 takes core modules",
                path.display()
            )));
        }
        let sha256 = hex(&Sha256::digest(bytes));
        if sha256 != manifest.sha256 {
            return Err(err(crate::inspect::sha_mismatch(&path.display().to_string(), &sha256, &manifest.sha256)));
        }
        if let Some(cache) = &self.cache {
            if let Some(code) = cache.get(&sha256) {
                if let Ok(m) = deserialize(&self.engine, &code) {
                    return Ok((m, Compiled::FromCache));
                }
            }
        }
        let started = Instant::now();
        let code = self
            .engine
            .precompile_module(bytes)
            .map_err(|e| err(format!("{} does not compile: {e:#}", path.display())))?;
        let module = deserialize(&self.engine, &code).map_err(|e| err(format!("{}: {e:#}", path.display())))?;
        let ms = started.elapsed().as_millis() as u64;
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.put(&sha256, &code) {
                tracing::warn!(target: "crmkit::plugin", plugin = name, "the compiled code is not cached: {e}");
            }
        }
        Ok((module, Compiled::Now { ms }))
    }
}

/// Runs native code compiled by this host's engine: the module was compiled just now, or
/// its cache entry is sealed with the key only this host's cache folder holds.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: `code` is what `Engine::precompile_module` of an engine of the same
    // compatibility produced, in this process or sealed by this host (cache.rs); wasmtime
    // checks the engine's compatibility again itself.
    unsafe { Module::deserialize(engine, code) }
}
