//! Users: the managers and other employees who own deals and act in the system.

use serde::{Deserialize, Serialize};

use super::rules::{optional_text, required_text, trim, trim_opt};
use super::Index;
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref};
use crate::id::UserId;
use crate::time::Timestamp;
use crate::values::email::normalize_email;

/// What a user may do (enforced by the API layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Configuration, scripts, users and tokens.
    Admin,
    /// Head of sales: all deals and reports of their department.
    Head,
    /// A sales manager: own deals and partners.
    Manager,
    /// Read-only.
    Viewer,
}

impl Role {
    /// Every role, from the most to the least rights.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Head, Role::Manager, Role::Viewer];

    /// The name config and the API use.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Head => "head",
            Role::Manager => "manager",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// An employee. Users are never deleted, only deactivated, so that every deal, task and
/// audit entry keeps a person behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// Unique login (`[a-z0-9._-]`, 2–64 characters).
    pub login: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    pub roles: Vec<Role>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub custom: CustomFields,
}

fn yes() -> bool {
    true
}

impl User {
    /// A new active user; the store assigns id and instants.
    pub fn new(login: impl Into<String>, name: impl Into<String>, role: Role) -> User {
        User {
            id: UserId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            login: login.into(),
            name: name.into(),
            email: None,
            department: None,
            roles: vec![role],
            active: true,
            custom: CustomFields::new(),
        }
    }
}

/// Checks a login: 2–64 characters of `a-z 0-9 . _ -`, starting with a letter.
pub(crate) fn check_login(login: &str) -> Result<(), String> {
    let ok_chars = login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let starts = login.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if !(2..=64).contains(&login.len()) || !ok_chars || !starts {
        return Err(format!(
            "login \"{login}\" must be 2–64 characters of a-z, 0-9, '.', '_', '-' and start with a letter"
        ));
    }
    Ok(())
}

impl Entity for User {
    const KIND: EntityKind = EntityKind::User;
    const TABLE: &'static str = "users";
    type Id = UserId;
    entity_meta!(UserId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.login);
        trim(&mut self.name);
        self.roles.sort();
        self.roles.dedup();
        trim_opt(&mut self.email);
        trim_opt(&mut self.department);
        if let Some(e) = &mut self.email {
            *e = normalize_email(e).map_err(|err| FieldError::new(Self::KIND, "email", err.to_string()))?;
        }
        Ok(())
    }

    const NEVER_DELETED: Option<&'static str> =
        Some("deactivate the user instead, so that their deals and history keep an owner");

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        check_login(&self.login).map_err(|m| FieldError::new(k, "login", m))?;
        required_text(k, "name", &self.name, 200)?;
        if let Some(d) = &self.department {
            optional_text(k, "department", d, 200)?;
        }
        if self.roles.is_empty() {
            return Err(FieldError::new(k, "roles", "a user needs at least one role (admin, head, manager, viewer)"));
        }
        Ok(())
    }

    fn refs(&self, _out: &mut Vec<Ref>) {}

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_text(Index::UserByLogin, &[&self.login]));
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}
