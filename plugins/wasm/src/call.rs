//! One hook call: a fresh instance of the plugin under its limits (an epoch deadline, a
//! memory cap, caps on input and answer size and on host calls, fuel when configured), its
//! input placed through the plugin's allocator and its answer read back and checked.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use crmkit_core::hooks::{CallLimits, View};
use crmkit_core::time::Clock;
use wasmtime::{Engine, Memory, ResourceLimiter, Store, Trap};

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

/// What one call's store holds.
pub(crate) struct State {
    pub(crate) memory_bytes: usize,
    pub(crate) host_calls: u32,
    pub(crate) max_host_calls: u32,
    pub(crate) max_answer_bytes: usize,
    pub(crate) config: Arc<[u8]>,
    pub(crate) clock: Arc<dyn Clock>,
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
        if desired > 100_000 {
            let m = format!("a table would grow to {desired} elements, past the limit of 100000");
            self.fault = Some(m.clone());
            return Err(wasmtime::Error::msg(m));
        }
        Ok(true)
    }
}

impl PluginHost {
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

/// `memory[at..at + len]`, or why it is not in memory.
pub(crate) fn guest_bytes(mem: &[u8], at: u32, len: u32) -> Result<&[u8], String> {
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
