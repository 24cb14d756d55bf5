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

/// The text field at `position` (0-based, in field order) of a stored record — the `name`
/// of a record that has one there — read without decoding the other fields: they are
/// skipped, not copied. A record written by schema 1 (fields by name) gives its `name`.
pub(crate) fn decode_name(bytes: &[u8], position: usize, what: impl Fn() -> String) -> Result<String> {
    use serde::de::DeserializeSeed as _;
    let corrupt = |message: String| crate::Error::from(KvError::Corrupt { what: what(), message });
    match bytes.split_first() {
        Some((&(FORMAT_MSGPACK_NAMED | FORMAT_MSGPACK_COMPACT), body)) => {
            let mut de = rmp_serde::Deserializer::from_read_ref(body);
            NameAt(position).deserialize(&mut de).map_err(|e| corrupt(e.to_string()))
        }
        Some((b, _)) => Err(corrupt(format!("unknown record format {b}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Reads the text at a field position of a record (an array), or its `name` (a map).
struct NameAt(usize);

impl<'de> serde::de::DeserializeSeed<'de> for NameAt {
    type Value = String;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NameAt {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a record with text at field {}", self.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<String, A::Error> {
        use serde::de::{Error as _, IgnoredAny};
        for n in 0..self.0 {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(A::Error::invalid_length(n, &self));
            }
        }
        let name: String = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(self.0, &self))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(name)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<String, A::Error> {
        use serde::de::{Error as _, IgnoredAny};
        let mut name = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "name" {
                name = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        name.ok_or_else(|| A::Error::missing_field("name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Partner, PartnerRole};

    #[test]
    fn a_partners_name_is_read_alone_from_a_compact_and_a_named_record_and_a_short_one_is_refused() {
        let mut p = Partner::new("ООО «Ромашка»", PartnerRole::Client);
        p.segment = Some("retail".into());
        let compact = encode(&p);
        assert_eq!(decode_name(&compact, Partner::NAME_FIELD, || "partner".into()).unwrap(), p.name);
        let mut named = vec![FORMAT_MSGPACK_NAMED];
        rmp_serde::encode::write_named(&mut named, &p).unwrap();
        assert_eq!(decode_name(&named, Partner::NAME_FIELD, || "partner".into()).unwrap(), p.name);
        // The field before the name is no text; a record cut short or of another format is
        // refused, naming it.
        let err = decode_name(&compact, Partner::NAME_FIELD - 1, || "partner X".into()).unwrap_err().to_string();
        assert!(err.contains("partner X"), "{err}");
        let err = decode_name(&compact[..12], Partner::NAME_FIELD, || "partner X".into()).unwrap_err().to_string();
        assert!(err.contains("partner X"), "{err}");
        assert!(decode_name(&[7, 1, 2], 0, || "partner X".into())
            .unwrap_err()
            .to_string()
            .contains("unknown record format 7"));
    }
}
