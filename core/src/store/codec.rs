//! The record codec: one format byte, then MessagePack. Every record the store keeps (entities,
//! audit entries, stage history steps) goes through `encode` and `decode` here.

use super::kv::KvError;
use crate::Result;

/// Record format byte: MessagePack, structs as maps with field names (schema 1 files).
const FORMAT_MSGPACK_NAMED: u8 = 1;
/// Record format byte: MessagePack, structs as arrays in field order (what this build writes).
const FORMAT_MSGPACK_COMPACT: u8 = 2;

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_MSGPACK_COMPACT);
    rmp_serde::encode::write(&mut out, value).expect("entities always serialize");
    out
}

/// Decodes a stored record (for benchmarks and tools).
#[doc(hidden)]
pub fn decode_record<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode(bytes, || "record".to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl Fn() -> String) -> Result<T> {
    Ok(decode_kv(bytes, what)?)
}

/// [`decode`] for a [`kv::Decode`] function, which fails with the backend's error type.
pub(super) fn decode_kv<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl Fn() -> String) -> Result<T, KvError> {
    match bytes.split_first() {
        Some((&(FORMAT_MSGPACK_NAMED | FORMAT_MSGPACK_COMPACT), body)) => {
            rmp_serde::from_slice(body).map_err(|e| KvError::Corrupt { what: what(), message: e.to_string() })
        }
        Some((b, _)) => Err(KvError::Corrupt { what: what(), message: format!("unknown record format {b}") }),
        None => Err(KvError::Corrupt { what: what(), message: "empty record".into() }),
    }
}
