//! External keys: the ids records have in the systems they came from, kept in one table from
//! (kind, key) to id and written with the record.

use super::tables::EXTERNAL_KEYS;
use super::{Reader, WriteTxn};
use crate::id::RawId;
use crate::model::{EntityKind, FieldError};
use crate::{Error, Result};

/// The longest external key, in characters.
pub const MAX_EXTERNAL_KEY: usize = 200;

impl WriteTxn<'_> {
    /// Registers `key` as an external key of the entity `id` of `kind`: the id the record
    /// has in the system it came from. A key names one live entity of a kind; an entity may
    /// have several keys.
    pub fn set_external_key(&mut self, kind: EntityKind, key: &str, id: RawId) -> Result<()> {
        if !self.exists(kind, id)? {
            return Err(Error::NotFound { kind, id });
        }
        self.put_external_key(kind, key, id, false)
    }

    /// [`WriteTxn::set_external_key`] for an entity the caller has just created. `known_free`:
    /// the caller has made sure no live entity has the key.
    pub(crate) fn put_external_key(&mut self, kind: EntityKind, key: &str, id: RawId, known_free: bool) -> Result<()> {
        let bad = |m: String| Error::from(FieldError::new(kind, "key", m));
        check_external_key(kind, key)?;
        match if known_free { None } else { self.external_key(kind, key)? } {
            Some(other) if other == id => return Ok(()),
            Some(other) => return Err(bad(format!("\"{key}\" is already the key of {kind} {other}"))),
            None => {}
        }
        self.changes.put(EXTERNAL_KEYS, external_key(kind, key), id.to_bytes().to_vec());
        Ok(())
    }

    /// Moves the external keys of `from` to `to` (both of `kind`): a merge of duplicates
    /// leaves the survivor findable by the duplicate's keys.
    pub(crate) fn move_external_keys(&mut self, kind: EntityKind, from: RawId, to: RawId) -> Result<()> {
        for key in self.external_keys_of(kind, from)? {
            self.changes.put(EXTERNAL_KEYS, external_key(kind, &key), to.to_bytes().to_vec());
        }
        Ok(())
    }
}

/// Whether `key` may be an external key: not empty, no surrounding spaces, no control
/// characters, at most [`MAX_EXTERNAL_KEY`] characters.
pub fn check_external_key(kind: EntityKind, key: &str) -> std::result::Result<(), FieldError> {
    let bad = |m: String| FieldError::new(kind, "key", m);
    if key.trim().is_empty() || key.trim().len() != key.len() {
        return Err(bad(format!("\"{key}\" is not an external key: it must be non-empty, without surrounding spaces")));
    }
    if key.chars().count() > MAX_EXTERNAL_KEY {
        return Err(bad(format!("is longer than {MAX_EXTERNAL_KEY} characters")));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(bad(format!("contains the control character {c:?}")));
    }
    Ok(())
}

/// The key of an external key in [`EXTERNAL_KEYS`].
pub(super) fn external_key(kind: EntityKind, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.name().len() + 1 + key.len());
    k.extend_from_slice(kind.name().as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}
