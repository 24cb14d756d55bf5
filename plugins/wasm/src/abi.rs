//! The numbers and names of the plugin ABI (plugins/ABI.md) in one place: the versions this
//! host supports, the marker export that tells a module's version, the exports and imports
//! a module of version 1 has, and the capabilities that gate the reads.

/// The ABI versions this host runs.
pub const SUPPORTED: &[u32] = &[1];

/// The prefix of the version marker: a module of ABI version N exports a function
/// `crmkit_abi_vN` (no parameters, no results; never called).
pub const MARKER_PREFIX: &str = "crmkit_abi_v";

/// The namespace of version 1's host imports.
pub const NAMESPACE: &str = "crmkit_v1";

/// The allocator the host calls to place input and read answers in guest memory:
/// `(len: i32) -> i32`.
pub const ALLOC: &str = "crmkit_alloc";

/// The export a plugin offers to have its instance kept between calls: `() -> ()`, called
/// after each call that ended well, to free what the call left. Optional; used only for a
/// plugin the installation lets reuse its instances (`runtimes.wasm.reuse`).
pub const RESET: &str = "crmkit_reset";

/// The guest's linear memory.
pub const MEMORY: &str = "memory";

/// Imports every plugin may use.
pub const FREE_IMPORTS: &[&str] = &["log", "now_ms", "config"];

/// The reads a plugin may be granted: each is an import of the same name in
/// [`NAMESPACE`], linked only for a plugin whose manifest requests it and whose
/// installation grants it. `(ptr: i32, len: i32) -> i64`: an id in, JSON out.
pub const CAPABILITIES: &[&str] = &[
    "read_partner",
    "read_deal",
    "read_deal_history",
    "read_deal_documents",
    "read_deal_interactions",
    "read_partner_deals",
];

/// The namespaces of WASI, which version 1 does not provide.
pub const WASI: &[&str] = &["wasi_snapshot_preview1", "wasi_unstable", "wasi"];

/// The supported versions as a message says them: `1` or `1, 2`.
pub fn supported() -> String {
    SUPPORTED.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// Splits an answer's packed pointer and length: `ptr << 32 | len`.
pub fn unpack(packed: i64) -> (u32, u32) {
    let v = packed as u64;
    ((v >> 32) as u32, v as u32)
}

/// Packs a pointer and a length as imports and exports return them.
pub fn pack(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | len as u64) as i64
}
