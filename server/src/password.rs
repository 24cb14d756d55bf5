//! Passwords for the web page: kept only as Argon2id hashes (PHC strings, which carry their
//! salt and parameters) in the installation's `data/passwords.jsonl`, one record per login.
//! Set by `crmkit user passwd` and by an admin over the API; checked when a person signs in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use crmkit_core::store::Reader;
use crmkit_core::Installation;
use serde::{Deserialize, Serialize};

/// The fewest characters a password has.
pub const MIN_CHARS: usize = 10;
/// The most characters a password has (hashing is deliberately slow; this bounds it).
pub const MAX_CHARS: usize = 256;

/// A stored password: its hash, never the password.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stored {
    /// The user's login.
    pub login: String,
    /// Argon2id, in the PHC string format.
    pub hash: String,
    /// When it was set (RFC 3339).
    pub set: String,
}

fn file(dir: &Path) -> PathBuf {
    dir.join("data").join("passwords.jsonl")
}

/// Every stored password.
pub fn load(dir: &Path) -> Result<Vec<Stored>> {
    crate::jsonl::read(&file(dir), "a password record")
}

/// Why `password` is not one a person may set, if it is not.
pub fn weakness(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Some(format!("a password has at least {MIN_CHARS} characters, this one {chars}"));
    }
    if chars > MAX_CHARS {
        return Some(format!("a password has at most {MAX_CHARS} characters, this one {chars}"));
    }
    if password.chars().any(char::is_control) {
        return Some("a password has no control characters".into());
    }
    let first = password.chars().next();
    if password.chars().all(|c| Some(c) == first) {
        return Some("a password is not one character repeated".into());
    }
    None
}

/// The Argon2id hash of `password`, with a fresh salt.
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&crate::token::random::<16>()?).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
}

/// Whether `password` is the one stored as `hash`.
pub fn matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Sets the password of the active user `login`.
pub fn set(inst: &Installation, login: &str, password: &str) -> Result<()> {
    let user =
        inst.store().read()?.user_by_login(login)?.with_context(|| format!("no user has the login \"{login}\""))?;
    if !user.active {
        bail!("user \"{login}\" is deactivated");
    }
    if let Some(why) = weakness(password) {
        bail!("{why}");
    }
    let hash = hash(password)?;
    let mut all = load(inst.dir())?;
    all.retain(|s| s.login != login);
    all.push(Stored {
        login: login.to_string(),
        hash,
        set: crmkit_core::time::Clock::now(&crmkit_core::time::SystemClock).to_string(),
    });
    save(inst.dir(), &all)
}

/// Whether `login` has a password and `password` is it.
pub fn check(dir: &Path, login: &str, password: &str) -> Result<bool> {
    Ok(load(dir)?.iter().find(|s| s.login == login).is_some_and(|s| matches(&s.hash, password)))
}

fn save(dir: &Path, all: &[Stored]) -> Result<()> {
    crate::jsonl::write(&file(dir), all)
}
