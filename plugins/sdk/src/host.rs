//! The host imports of namespace `crmkit_v1`, wrapped: text in, typed values out. A read
//! import is linked only when the manifest asks for its capability and the installation
//! grants it; a plugin that calls `read_partner` must list `read_partner` in `capabilities`.

use alloc::boxed::Box;
use alloc::vec::Vec;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Deal, Error, Partner};

mod ffi {
    #[link(wasm_import_module = "crmkit_v1")]
    extern "C" {
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn now_ms() -> i64;
        pub fn config() -> i64;
        pub fn read_partner(ptr: *const u8, len: i32) -> i64;
        pub fn read_deal(ptr: *const u8, len: i32) -> i64;
        pub fn read_deal_history(ptr: *const u8, len: i32) -> i64;
        pub fn read_deal_documents(ptr: *const u8, len: i32) -> i64;
        pub fn read_deal_interactions(ptr: *const u8, len: i32) -> i64;
        pub fn read_partner_deals(ptr: *const u8, len: i32) -> i64;
    }
}

/// A log line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// A line to the server's log.
pub fn log(level: Level, text: &str) {
    // SAFETY: the host reads `text.len()` bytes at its address.
    unsafe { ffi::log(level as i32, text.as_ptr(), text.len() as i32) }
}

/// The instant of the operation the hook is called for (the input's `now`), from the
/// installation's clock: milliseconds since 1970-01-01 UTC.
pub fn now_ms() -> i64 {
    // SAFETY: no arguments.
    unsafe { ffi::now_ms() }
}

/// The manifest's `[config]`, read as `T`.
pub fn config<T: DeserializeOwned>() -> Result<T, Error> {
    // SAFETY: the host answers with bytes it placed through `crmkit_alloc`.
    let bytes = unsafe { take(ffi::config()) };
    serde_json::from_slice(bytes).map_err(|e| Error(alloc::format!("the plugin's [config]: {e}")))
}

/// The partner `id`, or `None`. Capability `read_partner`.
pub fn read_partner(id: &str) -> Result<Option<Partner>, Error> {
    read(ffi::read_partner, "read_partner", id)
}

/// The deal `id`, or `None`. Capability `read_deal`.
pub fn read_deal(id: &str) -> Result<Option<Deal>, Error> {
    read(ffi::read_deal, "read_deal", id)
}

/// The deal's stage history, step by step. Capability `read_deal_history`.
pub fn read_deal_history(deal: &str) -> Result<Vec<Value>, Error> {
    read(ffi::read_deal_history, "read_deal_history", deal)
}

/// The deal's documents. Capability `read_deal_documents`.
pub fn read_deal_documents(deal: &str) -> Result<Vec<Value>, Error> {
    read(ffi::read_deal_documents, "read_deal_documents", deal)
}

/// The deal's interactions. Capability `read_deal_interactions`.
pub fn read_deal_interactions(deal: &str) -> Result<Vec<Value>, Error> {
    read(ffi::read_deal_interactions, "read_deal_interactions", deal)
}

/// The partner's deals. Capability `read_partner_deals`.
pub fn read_partner_deals(partner: &str) -> Result<Vec<Deal>, Error> {
    read(ffi::read_partner_deals, "read_partner_deals", partner)
}

fn read<T: DeserializeOwned>(import: unsafe extern "C" fn(*const u8, i32) -> i64, name: &str, id: &str) -> Result<T, Error> {
    // SAFETY: the host reads `id.len()` bytes at its address and answers with bytes it placed
    // through `crmkit_alloc`.
    let bytes = unsafe { take(import(id.as_ptr(), id.len() as i32)) };
    serde_json::from_slice(bytes).map_err(|e| Error(alloc::format!("{name}(\"{id}\"): {e}")))
}

/// The bytes of a packed `ptr << 32 | len` the host handed over. They are never freed (the
/// instance lives for one call), hence `'static`.
unsafe fn take(packed: i64) -> &'static [u8] {
    let (ptr, len) = ((packed as u64 >> 32) as usize, (packed as u64 & 0xffff_ffff) as usize);
    if len == 0 {
        return &[];
    }
    core::slice::from_raw_parts(ptr as *const u8, len)
}

/// Leaves `bytes` in memory and packs their address and length for the host.
pub(crate) fn give(bytes: Vec<u8>) -> i64 {
    let bytes: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
    (((bytes.as_ptr() as usize as u64) << 32) | bytes.len() as u64) as i64
}

/// Logs at `info`.
pub fn info(text: &str) {
    log(Level::Info, text)
}

/// Logs at `warn`.
pub fn warn(text: &str) {
    log(Level::Warn, text)
}
