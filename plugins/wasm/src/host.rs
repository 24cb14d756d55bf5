//! The plugin host: one wasmtime engine for an installation's plugins, each plugin loaded
//! once (checked against its manifest and the ABI, compiled or taken from the cache, linked
//! with the imports it is granted), and each hook call run in a fresh instance under its
//! limits, its faults named by plugin, export and cause.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crmkit_core::hooks::wire::{DealV1, DocumentV1, InteractionV1, PartnerV1};
use crmkit_core::hooks::{CallLimits, View};
use crmkit_core::time::{Clock, SystemClock};
use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, ExternType, FuncType, InstancePre, Linker, Memory, Module, ResourceLimiter, Store, Trap,
};

use crate::abi;
use crate::cache::Cache;
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
    fn new(plugin: &str, export: Option<&str>, message: impl Into<String>) -> PluginError {
        PluginError { plugin: plugin.to_string(), export: export.map(str::to_string), message: message.into() }
    }
}

/// How often the deadline clock ticks: a call is stopped at most one tick after its time.
const TICK: Duration = Duration::from_millis(1);

/// Advances the engine's epoch every [`TICK`] until the host is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: &Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("crmkit-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("a thread for the plugins' deadline clock");
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
    pre: InstancePre<State>,
    /// The memory it may use, in bytes.
    memory_bytes: usize,
    /// Its time per call when the binding does not say, in ms.
    timeout_ms: u64,
    config: Arc<[u8]>,
    /// Whether it imports a read (its calls then need the store).
    reads: bool,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("manifest", &self.manifest).field("path", &self.path).finish()
    }
}

/// A read a plugin asks for, answered on the thread that holds the store.
type Ask = (&'static str, String);
type ReadAnswer = Result<Vec<u8>, String>;

/// What one call's store holds.
struct State {
    memory_bytes: usize,
    host_calls: u32,
    max_host_calls: u32,
    max_answer_bytes: usize,
    config: Arc<[u8]>,
    clock: Arc<dyn Clock>,
    plugin: Arc<str>,
    reads: Option<(Sender<Ask>, Receiver<ReadAnswer>)>,
    /// Why the host stopped the call, when it did (a trap says only "host error").
    fault: Option<String>,
}

impl ResourceLimiter for State {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let m = format!(
                "memory would grow from {} to {} MiB, past its limit of {} MiB (the manifest's limits.memory_mb, capped by runtimes.wasm.max_memory_mb)",
                current >> 20,
                desired.div_ceil(1 << 20),
                self.memory_bytes >> 20
            );
            self.fault = Some(m.clone());
            return Err(wasmtime::Error::msg(m));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > 100_000 {
            let m = format!("a table would grow to {desired} elements, past the limit of 100000");
            self.fault = Some(m.clone());
            return Err(wasmtime::Error::msg(m));
        }
        Ok(true)
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
}

/// The plugins of one installation and the engine that runs them.
pub struct PluginHost {
    engine: Engine,
    dir: PathBuf,
    settings: WasmSettings,
    cache: Option<Cache>,
    clock: Arc<dyn Clock>,
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

    /// The clock `now_ms` answers from (default: the system's).
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

    /// Calls `export` of `plugin` with `input` (the hook contract's JSON) under the limits
    /// of the plugin, changed by `limits`; its reads see `view` (none: a read is a fault).
    /// The answer JSON, or what went wrong.
    pub fn call(
        &self,
        plugin: &str,
        export: &str,
        input: &[u8],
        view: Option<&dyn View>,
        limits: CallLimits,
    ) -> Result<serde_json::Value, PluginError> {
        let p = self.plugin(plugin)?;
        let err = |m: String| PluginError::new(plugin, Some(export), m);
        if input.len() > self.settings.max_input_bytes {
            return Err(err(format!(
                "the input is {} bytes, more than runtimes.wasm.max_input_bytes ({})",
                input.len(),
                self.settings.max_input_bytes
            )));
        }
        let answer = match view {
            Some(view) if p.reads => std::thread::scope(|scope| {
                let (ask, asked) = std::sync::mpsc::channel::<Ask>();
                let (reply, replies) = std::sync::mpsc::channel::<ReadAnswer>();
                let run = scope.spawn(|| self.run(&p, export, input, Some((ask, replies)), limits));
                for (what, id) in asked {
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(view, what, &id)))
                        .unwrap_or_else(|_| Err("the store failed while reading (a panic)".to_string()));
                    if reply.send(answer).is_err() {
                        break;
                    }
                }
                run.join().unwrap_or_else(|_| Err("the plugin's thread panicked".to_string()))
            }),
            _ => self.run(&p, export, input, None, limits),
        };
        answer.map_err(err)
    }

    fn run(
        &self,
        p: &Plugin,
        export: &str,
        input: &[u8],
        reads: Option<(Sender<Ask>, Receiver<ReadAnswer>)>,
        limits: CallLimits,
    ) -> Result<serde_json::Value, String> {
        let timeout_ms = limits.timeout_ms.unwrap_or(p.timeout_ms);
        let state = State {
            memory_bytes: p.memory_bytes,
            host_calls: 0,
            max_host_calls: self.settings.max_host_calls,
            max_answer_bytes: self.settings.max_answer_bytes,
            config: p.config.clone(),
            clock: self.clock.clone(),
            plugin: p.manifest.name.as_str().into(),
            reads,
            fault: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(timeout_ms.div_ceil(TICK.as_millis() as u64) + 1);
        let fuel = limits.max_operations.or(self.settings.fuel);
        if let Some(fuel) = fuel.filter(|_| self.settings.fuel.is_some()) {
            store.set_fuel(fuel).map_err(|e| e.to_string())?;
        }
        let why = |store: &mut Store<State>, e: wasmtime::Error, during: &str| -> String {
            if let Some(f) = store.data_mut().fault.take() {
                return f;
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => format!(
                    "stopped after {timeout_ms} ms, its time limit (the binding's timeout_ms, the manifest's limits.timeout_ms or limits.timeout_ms)"
                ),
                Some(Trap::OutOfFuel) => format!(
                    "ran out of fuel ({} units: runtimes.wasm.fuel or the binding's max_operations)",
                    fuel.unwrap_or(0)
                ),
                Some(t) => format!("trapped {during}: {t}"),
                None => format!("failed {during}: {e:#}"),
            }
        };
        let instance = match p.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(why(&mut store, e, "while starting")),
        };
        let memory = instance.get_memory(&mut store, abi::MEMORY).ok_or("exports no memory")?;
        let ptr = place(&mut store, instance, memory, input).map_err(|e| why(&mut store, e, "placing the input"))?;
        let hook =
            instance.get_typed_func::<(i32, i32), i64>(&mut store, export).map_err(|e| format!("the export: {e}"))?;
        let packed = match hook.call(&mut store, (ptr as i32, input.len() as i32)) {
            Ok(v) => v,
            Err(e) => return Err(why(&mut store, e, "")),
        };
        let (at, len) = abi::unpack(packed);
        if len as usize > self.settings.max_answer_bytes {
            return Err(format!(
                "answered {len} bytes, more than runtimes.wasm.max_answer_bytes ({})",
                self.settings.max_answer_bytes
            ));
        }
        let bytes = guest_bytes(memory.data(&store), at, len)
            .map_err(|m| format!("answered a pointer and length that {m}"))?
            .to_vec();
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "answered something that is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            )
        })?;
        if let serde_json::Value::Object(m) = &value {
            if m.len() == 1 {
                if let Some(e) = m.get("error") {
                    let text = e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string());
                    return Err(format!("reported an error: {text}"));
                }
            }
        }
        Ok(value)
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
fn check_exports(module: &Module, manifest: &Manifest) -> Result<(), (Option<String>, String)> {
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
    for (point, export) in manifest.map(|m| &m.hooks).into_iter().flatten() {
        if let Err(m) = func_is(module.get_export(export), &["i32", "i32"], &["i64"]) {
            out.push((Some(export.clone()), format!("the hook export for {point} {m}")));
        }
    }
    out
}

/// Checks every import is one the host provides to this plugin; whether it reads.
fn check_imports(module: &Module, manifest: &Manifest) -> Result<bool, String> {
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

/// `memory[at..at + len]`, or why it is not in memory.
fn guest_bytes(mem: &[u8], at: u32, len: u32) -> Result<&[u8], String> {
    let end = at as u64 + len as u64;
    if end > mem.len() as u64 {
        return Err(format!("reach past its memory ({at}..{end}, memory is {} bytes)", mem.len()));
    }
    Ok(&mem[at as usize..end as usize])
}

/// Places `bytes` in guest memory through its allocator; where.
fn place(
    store: &mut impl wasmtime::AsContextMut<Data = State>,
    instance: wasmtime::Instance,
    memory: Memory,
    bytes: &[u8],
) -> wasmtime::Result<u32> {
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, abi::ALLOC)?;
    let at = alloc.call(&mut *store, bytes.len() as i32)? as u32;
    let size = memory.data_size(&*store) as u64;
    if at == 0 || at as u64 + bytes.len() as u64 > size {
        let m = format!(
            "{}({}) returned {at}, which is not room for {} bytes in its memory of {size} bytes",
            abi::ALLOC,
            bytes.len(),
            bytes.len()
        );
        store.as_context_mut().data_mut().fault = Some(m.clone());
        return Err(wasmtime::Error::msg(m));
    }
    memory.write(&mut *store, at as usize, bytes)?;
    Ok(at)
}

/// Counts a host call; past the cap, the call is stopped.
fn count(caller: &mut Caller<'_, State>, import: &str) -> wasmtime::Result<()> {
    let s = caller.data_mut();
    s.host_calls += 1;
    if s.host_calls > s.max_host_calls {
        let m = format!(
            "made more than {} host calls in one call (the last: {import}; runtimes.wasm.max_host_calls)",
            s.max_host_calls
        );
        s.fault = Some(m.clone());
        return Err(wasmtime::Error::msg(m));
    }
    Ok(())
}

fn fail(caller: &mut Caller<'_, State>, m: String) -> wasmtime::Error {
    caller.data_mut().fault = Some(m.clone());
    wasmtime::Error::msg(m)
}

/// The bytes at `ptr..ptr + len` of the caller's memory.
fn read_arg(caller: &mut Caller<'_, State>, import: &str, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let memory = caller.get_export(abi::MEMORY).and_then(|e| e.into_memory());
    let Some(memory) = memory else { return Err(fail(caller, format!("{import}: the plugin exports no memory"))) };
    match guest_bytes(memory.data(&*caller), ptr as u32, len as u32) {
        Ok(b) => Ok(b.to_vec()),
        Err(m) => Err(fail(caller, format!("{import} was given a pointer and length that {m}"))),
    }
}

/// Places `bytes` through the caller's allocator; the packed pointer and length.
fn give(caller: &mut Caller<'_, State>, import: &str, bytes: &[u8]) -> wasmtime::Result<i64> {
    if bytes.len() > caller.data().max_answer_bytes {
        let m = format!("{import}: the answer is {} bytes, more than runtimes.wasm.max_answer_bytes", bytes.len());
        return Err(fail(caller, m));
    }
    let memory = caller.get_export(abi::MEMORY).and_then(|e| e.into_memory());
    let alloc = caller.get_export(abi::ALLOC).and_then(|e| e.into_func());
    let (Some(memory), Some(alloc)) = (memory, alloc) else {
        return Err(fail(caller, format!("{import}: the plugin exports no memory or allocator")));
    };
    let alloc = alloc.typed::<i32, i32>(&*caller)?;
    let at = alloc.call(&mut *caller, bytes.len() as i32)? as u32;
    let size = memory.data_size(&*caller) as u64;
    if at == 0 || at as u64 + bytes.len() as u64 > size {
        let m = format!(
            "{}({}) returned {at} for {import}'s answer, which is not room for it in its memory of {size} bytes",
            abi::ALLOC,
            bytes.len()
        );
        return Err(fail(caller, m));
    }
    memory.write(&mut *caller, at as usize, bytes)?;
    Ok(abi::pack(at, bytes.len() as u32))
}

/// The imports a plugin with `capabilities` is linked with.
fn linker(engine: &Engine, capabilities: &[String]) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(abi::NAMESPACE, "log", |mut caller: Caller<'_, State>, level: i32, ptr: i32, len: i32| {
        count(&mut caller, "log")?;
        let bytes = read_arg(&mut caller, "log", ptr, len)?;
        let text = String::from_utf8_lossy(&bytes);
        let plugin = caller.data().plugin.clone();
        match level {
            0 => tracing::error!(target: "crmkit::plugin", plugin = &*plugin, "{text}"),
            1 => tracing::warn!(target: "crmkit::plugin", plugin = &*plugin, "{text}"),
            2 => tracing::info!(target: "crmkit::plugin", plugin = &*plugin, "{text}"),
            _ => tracing::debug!(target: "crmkit::plugin", plugin = &*plugin, "{text}"),
        }
        Ok(())
    })?;
    linker.func_wrap(abi::NAMESPACE, "now_ms", |mut caller: Caller<'_, State>| {
        count(&mut caller, "now_ms")?;
        Ok(caller.data().clock.now().0)
    })?;
    linker.func_wrap(abi::NAMESPACE, "config", |mut caller: Caller<'_, State>| {
        count(&mut caller, "config")?;
        let config = caller.data().config.clone();
        give(&mut caller, "config", &config)
    })?;
    for cap in abi::CAPABILITIES.iter().copied().filter(|c| capabilities.iter().any(|x| x == c)) {
        linker.func_wrap(abi::NAMESPACE, cap, move |mut caller: Caller<'_, State>, ptr: i32, len: i32| {
            count(&mut caller, cap)?;
            let id = read_arg(&mut caller, cap, ptr, len)?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let answer = match &caller.data().reads {
                None => Err(format!("{cap}: there is no store to read here")),
                Some((ask, answers)) => match ask.send((cap, id)) {
                    Ok(()) => answers.recv().unwrap_or_else(|_| Err(format!("{cap}: the store went away"))),
                    Err(_) => Err(format!("{cap}: the store went away")),
                },
            };
            match answer {
                Ok(bytes) => give(&mut caller, cap, &bytes),
                Err(m) => Err(fail(&mut caller, m)),
            }
        })?;
    }
    Ok(linker)
}

/// Answers one read: the record (or list) as the hook contract writes it, `null` when absent.
fn read(view: &dyn View, what: &str, id: &str) -> ReadAnswer {
    fn parse<T: std::str::FromStr>(what: &str, kind: &str, id: &str) -> Result<T, String> {
        id.parse::<T>().map_err(|_| format!("{what}: \"{id}\" is not a {kind} id"))
    }
    let err = |e: crmkit_core::Error| format!("{what}: {e}");
    let json = match what {
        "read_partner" => {
            serde_json::to_vec(&view.partner(parse(what, "partner", id)?).map_err(err)?.as_ref().map(PartnerV1::from))
        }
        "read_deal" => {
            serde_json::to_vec(&view.deal(parse(what, "deal", id)?).map_err(err)?.as_ref().map(DealV1::from))
        }
        "read_deal_history" => serde_json::to_vec(&view.history(parse(what, "deal", id)?).map_err(err)?),
        "read_deal_documents" => serde_json::to_vec(
            &view.documents(parse(what, "deal", id)?).map_err(err)?.iter().map(DocumentV1::from).collect::<Vec<_>>(),
        ),
        "read_deal_interactions" => serde_json::to_vec(
            &view
                .interactions(parse(what, "deal", id)?)
                .map_err(err)?
                .iter()
                .map(InteractionV1::from)
                .collect::<Vec<_>>(),
        ),
        "read_partner_deals" => serde_json::to_vec(
            &view.deals_of(parse(what, "partner", id)?).map_err(err)?.iter().map(DealV1::from).collect::<Vec<_>>(),
        ),
        other => return Err(format!("{other}: not a read of this host")),
    };
    json.map_err(|e| format!("{what}: {e}"))
}
