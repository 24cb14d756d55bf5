//! One hook call: an instance of the plugin under its limits (an epoch deadline, a memory
//! cap, caps on input and answer size and on host calls, fuel when configured), its input
//! placed through the plugin's allocator and its answer read back and checked.
//!
//! An instance serves one call and is dropped, unless the installation lets the plugin keep
//! its instances (`runtimes.wasm.reuse`): then a call that ends well hands its instance back
//! after the plugin's `crmkit_reset`, and the next call takes it warm. A call that faults
//! never hands its instance back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crmkit_core::hooks::{CallLimits, View};
use crmkit_core::time::Timestamp;
use wasmtime::{Engine, Instance, Memory, ResourceLimiter, Store, Trap, TypedFunc};

use crate::abi;
use crate::host::{Plugin, PluginError, PluginHost};
use crate::imports::{read, Ask, ReadAnswer};

/// How often the deadline clock ticks: a call is stopped at most one tick after its time.
const TICK: Duration = Duration::from_millis(1);

/// Advances the engine's epoch every [`TICK`] until the host is dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> Ticker {
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

/// What an instance's store holds; the per-call parts are set again for every call.
pub(crate) struct State {
    pub(crate) memory_bytes: usize,
    pub(crate) host_calls: u32,
    pub(crate) max_host_calls: u32,
    pub(crate) max_answer_bytes: usize,
    pub(crate) config: Arc<[u8]>,
    /// The call's instant, milliseconds since 1970 (`now_ms`).
    pub(crate) now_ms: i64,
    pub(crate) plugin: Arc<str>,
    pub(crate) reads: Option<(Sender<Ask>, Receiver<ReadAnswer>)>,
    /// Why the host stopped the call, when it did (a trap says only "host error").
    pub(crate) fault: Option<String>,
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
        if desired > MAX_TABLE_ELEMENTS {
            let m = format!("a table would grow to {desired} elements, past the limit of {MAX_TABLE_ELEMENTS}");
            self.fault = Some(m.clone());
            return Err(wasmtime::Error::msg(m));
        }
        Ok(true)
    }
}

/// The most elements a table may grow to.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The most instances a reused plugin keeps idle between calls.
const KEEP_IDLE: usize = 4;

/// A plugin's running instance with the exports a call uses, looked up once.
pub(crate) struct Live {
    store: Store<State>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    /// `crmkit_reset`, in an instance that is handed back after its calls.
    reset: Option<TypedFunc<(), ()>>,
    hooks: HashMap<String, TypedFunc<(i32, i32), i64>>,
}

/// The idle instances of a plugin the installation lets reuse them.
#[derive(Default)]
pub(crate) struct Idle {
    live: Mutex<Vec<Live>>,
}

impl Idle {
    fn take(&self) -> Option<Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give_back(&self, live: Live) {
        let mut idle = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP_IDLE {
            idle.push(live);
        }
    }

    /// How many instances wait for a call.
    pub(crate) fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops the waiting instances; how many there were.
    fn clear(&self) -> usize {
        std::mem::take(&mut *self.live.lock().unwrap_or_else(|p| p.into_inner())).len()
    }
}

impl PluginHost {
    /// Calls `export` of `plugin` with `input` (the hook contract's JSON) under the limits
    /// of the plugin, changed by `limits`; its reads see `view` (none: a read is a fault),
    /// and `now_ms` answers the host's clock. The answer JSON, or what went wrong.
    pub fn call(
        &self,
        plugin: &str,
        export: &str,
        input: &[u8],
        view: Option<&dyn View>,
        limits: CallLimits,
    ) -> Result<serde_json::Value, PluginError> {
        self.call_at(self.clock.now(), plugin, export, input, view, limits)
    }

    /// [`call`](PluginHost::call) at the instant `now`, which `now_ms` answers: the engine
    /// passes its hook input's `now`, so a plugin sees the time its input says.
    pub fn call_at(
        &self,
        now: Timestamp,
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
                let run = scope.spawn(|| self.run(&p, now, export, input, Some((ask, replies)), limits));
                for (what, id) in asked {
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(view, what, &id)))
                        .unwrap_or_else(|_| Err("the store failed while reading (a panic)".to_string()));
                    if reply.send(answer).is_err() {
                        break;
                    }
                }
                run.join().unwrap_or_else(|_| Err("the plugin's thread panicked".to_string()))
            }),
            _ => self.run(&p, now, export, input, None, limits),
        };
        answer.map_err(err)
    }

    /// One call in an idle instance of `p` when it keeps them, else in a new one.
    fn run(
        &self,
        p: &Plugin,
        now: Timestamp,
        export: &str,
        input: &[u8],
        reads: Option<(Sender<Ask>, Receiver<ReadAnswer>)>,
        limits: CallLimits,
    ) -> Result<serde_json::Value, String> {
        let timeout_ms = limits.timeout_ms.unwrap_or(p.timeout_ms);
        let fuel = limits.max_operations.or(self.settings.fuel).filter(|_| self.settings.fuel.is_some());
        let mut live = match p.idle.as_ref().and_then(Idle::take) {
            Some(live) => live,
            None => self.start(p, timeout_ms, fuel)?,
        };
        let state = live.store.data_mut();
        state.host_calls = 0;
        state.fault = None;
        state.reads = reads;
        state.now_ms = now.0;
        let answer = self.invoke(&mut live, export, input, timeout_ms, fuel);
        if let (Ok(_), Some(idle)) = (&answer, &p.idle) {
            live.store.data_mut().reads = None;
            if self.reset(&mut live, timeout_ms, fuel).is_ok() {
                idle.give_back(live);
            }
        }
        answer
    }

    /// A new instance of `p`, started under the call's limits. When every instance slot is
    /// taken, the instances kept idle give theirs up and it is tried once more.
    fn start(&self, p: &Plugin, timeout_ms: u64, fuel: Option<u64>) -> Result<Live, String> {
        match self.start_once(p, timeout_ms, fuel) {
            Err(Full(_)) if self.drop_idle() > 0 => self.start_once(p, timeout_ms, fuel),
            other => other,
        }
        .map_err(|(Full(m) | Other(m))| m)
    }

    /// Drops every plugin's idle instances; how many there were.
    fn drop_idle(&self) -> usize {
        self.loaded().iter().filter_map(|p| p.idle.as_ref()).map(Idle::clear).sum()
    }

    fn start_once(&self, p: &Plugin, timeout_ms: u64, fuel: Option<u64>) -> Result<Live, Started> {
        let state = State {
            memory_bytes: p.memory_bytes,
            host_calls: 0,
            max_host_calls: self.settings.max_host_calls,
            max_answer_bytes: self.settings.max_answer_bytes,
            config: p.config.clone(),
            now_ms: 0,
            plugin: p.manifest.name.as_str().into(),
            reads: None,
            fault: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        arm(&mut store, timeout_ms, fuel).map_err(Other)?;
        let instance = match p.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) if format!("{e:#}").contains("maximum concurrent") => {
                return Err(Full(format!(
                "no instance slot is free: {} instances run or are kept at once (runtimes.wasm.instance_slots): {e:#}",
                self.settings.instance_slots
            )))
            }
            Err(e) => return Err(Other(self.why(&mut store, e, "while starting", timeout_ms, fuel))),
        };
        let memory = instance.get_memory(&mut store, abi::MEMORY).ok_or(Other("exports no memory".into()))?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, abi::ALLOC).map_err(|e| Other(format!("{e}")))?;
        let reset = match p.idle {
            Some(_) => Some(
                instance
                    .get_typed_func::<(), ()>(&mut store, abi::RESET)
                    .map_err(|e| Other(format!("{}: {e}", abi::RESET)))?,
            ),
            None => None,
        };
        Ok(Live { store, instance, memory, alloc, reset, hooks: HashMap::new() })
    }

    /// Calls `export` in `live`: the input placed, the answer read back and checked.
    fn invoke(
        &self,
        live: &mut Live,
        export: &str,
        input: &[u8],
        timeout_ms: u64,
        fuel: Option<u64>,
    ) -> Result<serde_json::Value, String> {
        arm(&mut live.store, timeout_ms, fuel)?;
        let hook = match live.hooks.get(export) {
            Some(h) => h.clone(),
            None => {
                let h = live
                    .instance
                    .get_typed_func::<(i32, i32), i64>(&mut live.store, export)
                    .map_err(|e| format!("the export: {e}"))?;
                live.hooks.insert(export.to_string(), h.clone());
                h
            }
        };
        let ptr = place(&mut live.store, &live.alloc, live.memory, input, "")
            .map_err(|e| self.why(&mut live.store, e, "placing the input", timeout_ms, fuel))?;
        let packed = match hook.call(&mut live.store, (ptr as i32, input.len() as i32)) {
            Ok(v) => v,
            Err(e) => return Err(self.why(&mut live.store, e, "", timeout_ms, fuel)),
        };
        let (at, len) = abi::unpack(packed);
        if len as usize > self.settings.max_answer_bytes {
            return Err(format!(
                "answered {len} bytes, more than runtimes.wasm.max_answer_bytes ({})",
                self.settings.max_answer_bytes
            ));
        }
        let bytes = guest_bytes(live.memory.data(&live.store), at, len)
            .map_err(|m| format!("answered a pointer and length that {m}"))?;
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
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

    /// Lets the plugin free what the call left (`crmkit_reset`), under the call's limits.
    fn reset(&self, live: &mut Live, timeout_ms: u64, fuel: Option<u64>) -> Result<(), String> {
        let Some(reset) = live.reset.clone() else { return Err(format!("{} is not exported", abi::RESET)) };
        arm(&mut live.store, timeout_ms, fuel)?;
        reset.call(&mut live.store, ()).map_err(|e| self.why(&mut live.store, e, abi::RESET, timeout_ms, fuel))
    }

    /// What stopped a call, as its fault says it.
    fn why(
        &self,
        store: &mut Store<State>,
        e: wasmtime::Error,
        during: &str,
        timeout_ms: u64,
        fuel: Option<u64>,
    ) -> String {
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
    }
}

/// Why an instance did not start: every slot taken, or anything else.
enum Started {
    Full(String),
    Other(String),
}
use Started::{Full, Other};

/// Sets the call's deadline and fuel on `store`.
fn arm(store: &mut Store<State>, timeout_ms: u64, fuel: Option<u64>) -> Result<(), String> {
    store.set_epoch_deadline(timeout_ms.div_ceil(TICK.as_millis() as u64) + 1);
    if let Some(fuel) = fuel {
        store.set_fuel(fuel).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `memory[at..at + len]`, or why it is not in memory.
pub(crate) fn guest_bytes(mem: &[u8], at: u32, len: u32) -> Result<&[u8], String> {
    let end = at as u64 + len as u64;
    if end > mem.len() as u64 {
        return Err(format!("reach past its memory ({at}..{end}, memory is {} bytes)", mem.len()));
    }
    Ok(&mem[at as usize..end as usize])
}

/// Places `bytes` in guest memory through its allocator; where. `purpose` says what for in
/// a fault (` for read_partner's answer`; empty for the input).
pub(crate) fn place(
    store: &mut impl wasmtime::AsContextMut<Data = State>,
    alloc: &TypedFunc<i32, i32>,
    memory: Memory,
    bytes: &[u8],
    purpose: &str,
) -> wasmtime::Result<u32> {
    let at = alloc.call(&mut *store, bytes.len() as i32)? as u32;
    let size = memory.data_size(&*store) as u64;
    if at == 0 || at as u64 + bytes.len() as u64 > size {
        let m = format!(
            "{}({}) returned {at}{purpose}, which is not room for {} bytes in its memory of {size} bytes",
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
