//! The audit log: who changed which entity when, and how.
//!
//! Every update and delete the store performs appends one entry in the same transaction: an
//! update records the changed fields with their old and new values, a delete the last state.
//! A creation is recorded by the record itself — its time-ordered id, `created_at` and
//! `created_by` — which keeps bulk loads at one write per entity; `Reader::audit_of` reads
//! the whole history back, creation first.

use serde::{Deserialize, Serialize};

use crate::id::{AuditId, UserId};
use crate::model::EntityRef;
use crate::time::Timestamp;

/// What happened to the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOp {
    Create,
    Update,
    Delete,
}

/// One changed field. Values are shown as the API shows them (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default)]
    pub old: Option<serde_json::Value>,
    #[serde(default)]
    pub new: Option<serde_json::Value>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: Timestamp,
    /// The acting user; `None` for the system (config sync, migrations).
    pub actor: Option<UserId>,
    pub entity: EntityRef,
    pub op: AuditOp,
    /// For updates, the changed fields; for deletes, every field of the last state.
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    /// The entity's version after the change (the deleted version for deletes).
    pub version: u64,
}

/// Fields that change on every write and say nothing by themselves (`stage_entered_at` and
/// `history_steps` of a deal follow from its stage history).
fn is_bookkeeping(key: &str) -> bool {
    matches!(
        key,
        "id" | "version"
            | "created_at"
            | "updated_at"
            | "created_by"
            | "updated_by"
            | "stage_entered_at"
            | "history_steps"
    )
}

/// The fields that differ between two JSON forms of an entity.
pub(crate) fn diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !is_bookkeeping(k))
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| FieldChange { field: k.clone(), old: o.get(k).cloned(), new: n.get(k).cloned() })
        .collect()
}

/// Every field of a JSON form, as removed values (the last state of a deleted entity).
pub(crate) fn snapshot(old: &serde_json::Value) -> Vec<FieldChange> {
    old.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| FieldChange { field: k.clone(), old: Some(v.clone()), new: None })
        .collect()
}

/// The fields that differ between two versions of an entity whose records (compact
/// MessagePack arrays, one element per field, after a format byte) are `old_record` and
/// `new_record`: the elements are compared as bytes, and only the fields that differ are
/// turned into JSON. Gives what [`diff`] gives on the JSON forms.
pub(crate) fn diff_records<E: Serialize>(old: &E, old_record: &[u8], new: &E, new_record: &[u8]) -> Vec<FieldChange> {
    let (Some(olds), Some(news)) = (msgpack::elements(old_record.get(1..)), msgpack::elements(new_record.get(1..)))
    else {
        return diff_of(old, new);
    };
    let mut names = fields::Collect::Names(Vec::with_capacity(olds.len()));
    if new.serialize(fields::Fields(&mut names)).is_err() {
        return diff_of(old, new);
    }
    let fields::Collect::Names(names) = names else { unreachable!("collected names") };
    if names.len() != olds.len() || names.len() != news.len() {
        return diff_of(old, new);
    }
    let at: Vec<usize> = (0..names.len())
        .filter(|i| old_record[olds[*i].clone()] != new_record[news[*i].clone()] && !is_bookkeeping(names[*i]))
        .collect();
    if at.is_empty() {
        return Vec::new();
    }
    let keys: Vec<&'static str> = at.iter().map(|i| names[*i]).collect();
    let json = |e: &E| -> Option<Vec<(&'static str, serde_json::Value)>> {
        let mut c = fields::Collect::JsonAt { at: at.clone(), next: 0, values: Vec::with_capacity(at.len()) };
        e.serialize(fields::Fields(&mut c)).ok()?;
        let fields::Collect::JsonAt { values, .. } = c else { return None };
        Some(values)
    };
    let (Some(old_values), Some(new_values)) = (json(old), json(new)) else { return diff_of(old, new) };
    let mut out: Vec<FieldChange> = keys
        .iter()
        .map(|k| FieldChange {
            field: k.to_string(),
            old: old_values.iter().find(|(ok, _)| ok == k).map(|(_, v)| v.clone()),
            new: new_values.iter().find(|(nk, _)| nk == k).map(|(_, v)| v.clone()),
        })
        .collect();
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// Finding the elements of a MessagePack array without decoding them.
mod msgpack {
    use std::ops::Range;

    /// The byte ranges of the elements of the array `buf` holds (and nothing after it).
    pub fn elements(buf: Option<&[u8]>) -> Option<Vec<Range<usize>>> {
        let buf = buf?;
        let (n, mut at) = match *buf.first()? {
            m @ 0x90..=0x9f => ((m & 0x0f) as usize, 1),
            0xdc => (u16::from_be_bytes(buf.get(1..3)?.try_into().ok()?) as usize, 3),
            0xdd => (u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize, 5),
            _ => return None,
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let end = skip(buf, at, 0)?;
            // Ranges are into the record, which has the format byte in front.
            out.push(at + 1..end + 1);
            at = end;
        }
        (at == buf.len()).then_some(out)
    }

    /// The end of the value that starts at `at`.
    fn skip(buf: &[u8], at: usize, depth: u32) -> Option<usize> {
        if depth > 64 {
            return None;
        }
        let len = |from: usize, width: usize| -> Option<usize> {
            let b = buf.get(from..from + width)?;
            Some(b.iter().fold(0usize, |n, x| (n << 8) | *x as usize))
        };
        let m = *buf.get(at)?;
        let end = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => at + 1,
            0x80..=0x8f => return items(buf, at + 1, 2 * (m & 0x0f) as usize, depth),
            0x90..=0x9f => return items(buf, at + 1, (m & 0x0f) as usize, depth),
            0xa0..=0xbf => at + 1 + (m & 0x1f) as usize,
            0xc4 | 0xd9 => at + 2 + len(at + 1, 1)?,
            0xc5 | 0xda => at + 3 + len(at + 1, 2)?,
            0xc6 | 0xdb => at + 5 + len(at + 1, 4)?,
            0xc7 => at + 3 + len(at + 1, 1)?,
            0xc8 => at + 4 + len(at + 1, 2)?,
            0xc9 => at + 6 + len(at + 1, 4)?,
            0xca | 0xce | 0xd2 => at + 5,
            0xcb | 0xcf | 0xd3 => at + 9,
            0xcc | 0xd0 => at + 2,
            0xcd | 0xd1 => at + 3,
            0xd4 => at + 3,
            0xd5 => at + 4,
            0xd6 => at + 6,
            0xd7 => at + 10,
            0xd8 => at + 18,
            0xdc => return items(buf, at + 3, len(at + 1, 2)?, depth),
            0xdd => return items(buf, at + 5, len(at + 1, 4)?, depth),
            0xde => return items(buf, at + 3, 2 * len(at + 1, 2)?, depth),
            0xdf => return items(buf, at + 5, 2 * len(at + 1, 4)?, depth),
            0xc1 => return None,
        };
        (end <= buf.len()).then_some(end)
    }

    fn items(buf: &[u8], mut at: usize, n: usize, depth: u32) -> Option<usize> {
        for _ in 0..n {
            at = skip(buf, at, depth + 1)?;
        }
        Some(at)
    }
}

/// The fields that differ between two versions of an entity, as [`diff`] would find them
/// from their JSON forms, but without building those: each top-level field is encoded to
/// bytes and compared, and only the fields that differ are turned into JSON.
pub(crate) fn diff_of<E: Serialize>(old: &E, new: &E) -> Vec<FieldChange> {
    let mut olds = fields::Collect::Bytes { buf: Vec::with_capacity(512), fields: Vec::with_capacity(32) };
    if old.serialize(fields::Fields(&mut olds)).is_err() {
        return diff(&to_value(old), &to_value(new));
    }
    let fields::Collect::Bytes { buf, fields } = olds else { unreachable!("collected bytes") };
    let mut news =
        fields::Collect::Changed { old: buf, fields, next: 0, scratch: Vec::with_capacity(256), changed: Vec::new() };
    if new.serialize(fields::Fields(&mut news)).is_err() {
        return diff(&to_value(old), &to_value(new));
    }
    let fields::Collect::Changed { changed, .. } = news else { unreachable!("collected changes") };
    if changed.is_empty() {
        return Vec::new();
    }
    let keys: Vec<&'static str> = changed.iter().map(|(k, _)| *k).collect();
    let mut olds = fields::Collect::Json { keys, values: Vec::new() };
    if old.serialize(fields::Fields(&mut olds)).is_err() {
        return diff(&to_value(old), &to_value(new));
    }
    let fields::Collect::Json { values: old_values, .. } = olds else { unreachable!("collected values") };
    let mut out: Vec<FieldChange> = changed
        .into_iter()
        .map(|(k, new)| FieldChange {
            field: k.to_string(),
            old: old_values.iter().find(|(ok, _)| *ok == k).map(|(_, v)| v.clone()),
            new: Some(new),
        })
        .collect();
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn to_value<E: Serialize>(e: &E) -> serde_json::Value {
    serde_json::to_value(e).expect("entities serialize")
}

/// A serializer that sees only the top-level fields of a struct.
mod fields {
    use serde::ser::{self, Impossible, Serialize};

    use super::is_bookkeeping;

    /// What to collect per field.
    pub enum Collect {
        /// Every field's name, in order.
        Names(Vec<&'static str>),
        /// The JSON of the fields at these positions (ascending).
        JsonAt { at: Vec<usize>, next: usize, values: Vec<(&'static str, serde_json::Value)> },
        /// The encoded bytes of every field, one after the other in `buf`.
        Bytes { buf: Vec<u8>, fields: Vec<(&'static str, std::ops::Range<usize>)> },
        /// The JSON of every field whose bytes differ from the collected ones.
        Changed {
            old: Vec<u8>,
            fields: Vec<(&'static str, std::ops::Range<usize>)>,
            /// The position of the next field: both versions serialize in the same order.
            next: usize,
            scratch: Vec<u8>,
            changed: Vec<(&'static str, serde_json::Value)>,
        },
        /// The JSON of the listed fields.
        Json { keys: Vec<&'static str>, values: Vec<(&'static str, serde_json::Value)> },
    }

    #[derive(Debug)]
    pub struct NotAStruct(String);

    impl std::fmt::Display for NotAStruct {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for NotAStruct {}

    impl ser::Error for NotAStruct {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            NotAStruct(msg.to_string())
        }
    }

    pub struct Fields<'a>(pub &'a mut Collect);

    pub struct Struct<'a>(&'a mut Collect);

    impl ser::SerializeStruct for Struct<'_> {
        type Ok = ();
        type Error = NotAStruct;

        fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), NotAStruct> {
            match self.0 {
                Collect::Names(names) => {
                    names.push(key);
                    return Ok(());
                }
                Collect::JsonAt { at, next, values } => {
                    if at.binary_search(next).is_ok() {
                        values.push((key, serde_json::to_value(value).map_err(|e| NotAStruct(e.to_string()))?));
                    }
                    *next += 1;
                    return Ok(());
                }
                _ => {}
            }
            if is_bookkeeping(key) {
                return Ok(());
            }
            let json = || serde_json::to_value(value).map_err(|e| NotAStruct(e.to_string()));
            match self.0 {
                Collect::Bytes { buf, fields } => {
                    let start = buf.len();
                    rmp_serde::encode::write(buf, value).map_err(|e| NotAStruct(e.to_string()))?;
                    fields.push((key, start..buf.len()));
                }
                Collect::Changed { old, fields, next, scratch, changed } => {
                    scratch.clear();
                    rmp_serde::encode::write(scratch, value).map_err(|e| NotAStruct(e.to_string()))?;
                    let at = match fields.get(*next) {
                        Some((k, _)) if std::ptr::eq(*k, key) || *k == key => *next,
                        _ => fields.iter().position(|(k, _)| *k == key).unwrap_or(usize::MAX),
                    };
                    *next = at.wrapping_add(1);
                    let before = fields.get(at).map(|(_, r)| &old[r.clone()]);
                    if before != Some(scratch.as_slice()) {
                        changed.push((key, json()?));
                    }
                }
                Collect::Names(_) | Collect::JsonAt { .. } => unreachable!("handled above"),
                Collect::Json { keys, values } => {
                    if keys.contains(&key) {
                        values.push((key, json()?));
                    }
                }
            }
            Ok(())
        }

        fn end(self) -> Result<(), NotAStruct> {
            Ok(())
        }
    }

    macro_rules! refuse {
        ($($name:ident($($arg:ty),*);)*) => {$(
            fn $name(self, $(_: $arg),*) -> Result<(), NotAStruct> {
                Err(NotAStruct("not a struct".into()))
            }
        )*};
    }

    impl<'a> ser::Serializer for Fields<'a> {
        type Ok = ();
        type Error = NotAStruct;
        type SerializeSeq = Impossible<(), NotAStruct>;
        type SerializeTuple = Impossible<(), NotAStruct>;
        type SerializeTupleStruct = Impossible<(), NotAStruct>;
        type SerializeTupleVariant = Impossible<(), NotAStruct>;
        type SerializeMap = Impossible<(), NotAStruct>;
        type SerializeStruct = Struct<'a>;
        type SerializeStructVariant = Impossible<(), NotAStruct>;

        refuse! {
            serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
            serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64); serialize_f32(f32);
            serialize_f64(f64); serialize_char(char); serialize_str(&str); serialize_bytes(&[u8]);
            serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
            serialize_unit_variant(&'static str, u32, &'static str);
        }

        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<(), NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotAStruct> {
            Ok(Struct(self.0))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, NotAStruct> {
            Err(NotAStruct("not a struct".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Deal, DealStatus};
    use crate::values::{Currency, Money};

    #[test]
    fn the_field_diff_agrees_with_the_json_diff() {
        let old = Deal::new(
            "A",
            Default::default(),
            "k",
            Some("s1".into()),
            Default::default(),
            Money::new(5.into(), Currency::RUB),
        );
        let mut new = old.clone();
        assert!(diff_of(&old, &new).is_empty());
        new.stage = Some("s2".into());
        new.status = DealStatus::OnHold;
        new.amount = Money::new(7.into(), Currency::USD);
        new.version = 9;
        new.probability = Some(40);
        let json = diff(&to_value(&old), &to_value(&new));
        assert_eq!(diff_of(&old, &new), json);
        let (a, b) = (crate::store::encode(&old), crate::store::encode(&new));
        assert_eq!(diff_records(&old, &a, &new, &b), json);
        assert!(diff_records(&old, &a, &old, &a).is_empty());
        assert_eq!(json.len(), 4);
    }
}
