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

/// Fields that change on every write and say nothing by themselves.
const BOOKKEEPING: [&str; 6] = ["id", "version", "created_at", "updated_at", "created_by", "updated_by"];

/// The fields that differ between two JSON forms of an entity.
pub(crate) fn diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !BOOKKEEPING.contains(&k.as_str()))
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
