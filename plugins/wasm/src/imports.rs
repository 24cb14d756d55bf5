//! What a plugin may call: `log`, `now_ms`, `config` and the reads its capabilities grant,
//! each counted against the call's cap of host calls. Reads are answered by the thread that
//! holds the store.
use crmkit_core::hooks::wire::{self, DealV1, DocumentV1, InteractionV1, PartnerV1};
use crmkit_core::hooks::View;
use wasmtime::{Caller, Engine, Linker};

use crate::abi;
use crate::call::{guest_bytes, place, State};

/// A read a plugin asks for, answered on the thread that holds the store.
pub(crate) type Ask = (&'static str, String);
pub(crate) type ReadAnswer = Result<Vec<u8>, String>;

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
    let at = place(caller, &alloc, memory, bytes, &format!(" for {import}'s answer"))?;
    Ok(abi::pack(at, bytes.len() as u32))
}

/// The imports a plugin with `capabilities` is linked with.
pub(crate) fn linker(engine: &Engine, capabilities: &[String]) -> wasmtime::Result<Linker<State>> {
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
        Ok(caller.data().now_ms)
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
pub(crate) fn read(view: &dyn View, what: &str, id: &str) -> ReadAnswer {
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
        "read_deal_history" => {
            serde_json::to_vec(&wire::history(&view.history(parse(what, "deal", id)?).map_err(err)?))
        }
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
