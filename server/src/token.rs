//! API tokens: random, shown once, kept only as their SHA-256 in the installation's
//! `data/tokens.jsonl`, each with the user and the role it acts in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crmkit_core::model::Role;
use crmkit_core::store::Reader;
use crmkit_core::Installation;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A stored token: its hash, never the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Token {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// The login of the user the token acts for.
    pub login: String,
    /// The one role of the user's the token acts in.
    pub role: Role,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Whether it was revoked; a revoked token is kept, and refused.
    #[serde(default)]
    pub revoked: bool,
}

impl Token {
    /// The short id that names a token in `crmkit token revoke`: the first 12 hex digits of
    /// its hash.
    pub fn id(&self) -> &str {
        self.hash.get(..12).unwrap_or(&self.hash)
    }
}

fn file(inst: &Installation) -> PathBuf {
    inst.dir().join("data").join("tokens.jsonl")
}

/// SHA-256 of a token, hex.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every stored token.
pub fn load(dir: &Path) -> Result<Vec<Token>> {
    crate::jsonl::read(&dir.join("data").join("tokens.jsonl"), "a token record")
}

fn save(inst: &Installation, tokens: &[Token]) -> Result<()> {
    crate::jsonl::write(&file(inst), tokens)
}

/// The role named `name`, or an error listing the roles.
pub fn role(name: &str) -> Result<Role> {
    Role::from_name(name).with_context(|| format!("\"{name}\" is not a role: admin, head, manager or viewer"))
}

/// `N` random bytes from the operating system's generator (`getrandom`).
pub fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("getting random bytes: {e}"))?;
    Ok(bytes)
}

/// Creates a token for `login` acting as `role` (one of the user's roles); returns it.
pub fn create(inst: &Installation, login: &str, role: Role) -> Result<String> {
    let user =
        inst.store().read()?.user_by_login(login)?.with_context(|| format!("no user has the login \"{login}\""))?;
    if !user.active {
        bail!("user \"{login}\" is deactivated");
    }
    if !user.roles.contains(&role) {
        bail!("user \"{login}\" does not have the role {}", role.name());
    }
    let token = format!("crmk_{}", random::<32>()?.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut tokens = load(inst.dir())?;
    tokens.push(Token {
        hash: hash(&token),
        login: login.to_string(),
        role,
        created: crmkit_core::time::Clock::now(&crmkit_core::time::SystemClock).to_string(),
        revoked: false,
    });
    save(inst, &tokens)?;
    Ok(token)
}

/// Revokes the token whose id (or the token itself) is `which`.
pub fn revoke(inst: &Installation, which: &str) -> Result<Token> {
    let mut tokens = load(inst.dir())?;
    let h = hash(which);
    let found: Vec<usize> = (0..tokens.len())
        .filter(|&i| tokens[i].hash == h || (which.len() >= 8 && tokens[i].hash.starts_with(which)))
        .collect();
    let i = match found.as_slice() {
        [i] => *i,
        [] => bail!("no token has the id \"{which}\""),
        _ => bail!("several tokens start with \"{which}\": give more of the id"),
    };
    tokens[i].revoked = true;
    let revoked = tokens[i].clone();
    save(inst, &tokens)?;
    Ok(revoked)
}
