//! Key resolution: a reference's external key (or crmkit id) to the id of its record, a
//! login to its user, each remembered for the rest of the import.

use super::convert::Converter;
use crate::id::{RawId, UserId};
use crate::model::EntityKind;
use crate::store::Reader;
use crate::Result;

impl Converter<'_> {
    /// The id of the `kind` entity with external key (or id) `key`.
    pub(super) fn resolve<R: Reader>(
        &mut self,
        tx: &R,
        kind: EntityKind,
        key: &str,
    ) -> std::result::Result<RawId, String> {
        if let Some(id) = self.refs.get(&kind).and_then(|m| m.get(key)) {
            return Ok(*id);
        }
        match find_key(tx, kind, key).map_err(|e| e.to_string())? {
            Some(id) => {
                self.refs.entry(kind).or_default().insert(key.to_string(), id);
                Ok(id)
            }
            None => Err(format!(
                "no {kind} has the key \"{key}\" (not in the installation, nor in an earlier row of this file); import the {kind} records first"
            )),
        }
    }

    pub(super) fn login<R: Reader>(&mut self, tx: &R, login: &str) -> std::result::Result<UserId, String> {
        if let Some(id) = self.logins.get(login) {
            return Ok(*id);
        }
        match tx.user_by_login(login).map_err(|e| e.to_string())? {
            Some(u) => {
                self.logins.insert(login.to_string(), u.id);
                Ok(u.id)
            }
            None => Err(format!("no user has the login \"{login}\"")),
        }
    }
}

/// The entity of `kind` with external key `key`, or with `key` as its id.
pub(super) fn find_key<R: Reader>(r: &R, kind: EntityKind, key: &str) -> Result<Option<RawId>> {
    if let Some(id) = r.external_key(kind, key)? {
        return Ok(Some(id));
    }
    match key.parse::<RawId>() {
        Ok(id) if r.exists(kind, id)? => Ok(Some(id)),
        _ => Ok(None),
    }
}
