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
        assert_eq!(json.len(), 4);
    }
}
