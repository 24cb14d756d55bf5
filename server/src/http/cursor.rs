//! List cursors: where a page stopped, sealed so that a cursor tells nothing — a list scans
//! entities the caller may not see, and the id it stopped at must not show that they exist.
//!
//! A cursor is the 16 bytes of an id sealed with XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) under the installation's `data/cursor.key`, with a random 24-byte
//! nonce and the list it belongs to as associated data, written in hex. It survives
//! restarts; someone without the key can neither read an id out of it, nor make or bend
//! one, nor use one list's cursor in another: any of those fails the AEAD's tag check.

use std::path::Path;

use anyhow::{Context, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use crmkit_core::id::RawId;

/// Nonce, sealed id and tag.
const NONCE: usize = 24;
const SEALED: usize = NONCE + 16 + 16;

/// Seals and opens cursors with one installation's key.
pub struct Cursors {
    aead: XChaCha20Poly1305,
}

/// Why a cursor does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("is not a cursor (it should be {} hex digits): cut short, or not one", SEALED * 2)]
    Malformed,
    #[error("is not a cursor of this list given by this server: of another list, or changed")]
    Foreign,
}

impl Cursors {
    /// The installation's key, made on first use, readable by its owner only.
    pub fn load_or_create(dir: &Path) -> Result<Cursors> {
        let path = dir.join("data").join("cursor.key");
        let hex = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_key(&path)?,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let key = unhex::<32>(&hex).with_context(|| format!("{} is not 64 hex digits", path.display()))?;
        Ok(Cursors { aead: XChaCha20Poly1305::new(&key.into()) })
    }

    /// The cursor of `list` (a resource path) stopped at `id`.
    pub fn seal(&self, list: &str, id: RawId) -> Result<String, getrandom::Error> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce)?;
        let sealed = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &id.to_bytes(), aad: list.as_bytes() })
            .expect("16 bytes seal");
        Ok(nonce.iter().chain(&sealed).map(|b| format!("{b:02x}")).collect())
    }

    /// The id a cursor of `list` was sealed from.
    pub fn open(&self, list: &str, cursor: &str) -> Result<RawId, CursorError> {
        let bytes = unhex::<SEALED>(cursor).ok_or(CursorError::Malformed)?;
        let (nonce, sealed) = bytes.split_at(NONCE);
        let id = self
            .aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: list.as_bytes() })
            .map_err(|_| CursorError::Foreign)?;
        RawId::from_bytes(&id).ok_or(CursorError::Foreign)
    }
}

/// `N` bytes written as `2N` lower-case hex digits.
fn unhex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * N || !digits.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(std::str::from_utf8(&digits[2 * i..2 * i + 2]).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Writes a new key to `path` unless another process just did; the key in the file.
fn make_key(path: &Path) -> Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key: String = crate::token::random::<32>()?.iter().map(|b| format!("{b:02x}")).collect();
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            f.write_all(key.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_string())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_to_its_id_in_its_list_only_and_shows_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let c = Cursors::load_or_create(dir.path()).unwrap();
        let id: RawId = "01KJPWD6M0000000000000000T".parse().unwrap();
        let sealed = c.seal("deals", id).unwrap();
        assert_eq!(c.open("deals", &sealed), Ok(id));
        assert!(!sealed.contains(&format!("{:x}", u128::from_be_bytes(id.to_bytes()))));
        // The next id seals to something unrelated; a bent cursor, or one of another list,
        // does not open.
        let next: RawId = "01KJPWD6M0000000000000000V".parse().unwrap();
        assert_ne!(c.seal("deals", next).unwrap()[48..], sealed[48..]);
        // The same id seals differently each time.
        assert_ne!(c.seal("deals", id).unwrap(), sealed);
        for at in [0, 50, sealed.len() - 1] {
            let mut bent = sealed.clone().into_bytes();
            bent[at] = if bent[at] == b'0' { b'1' } else { b'0' };
            assert_eq!(c.open("deals", std::str::from_utf8(&bent).unwrap()), Err(CursorError::Foreign));
        }
        assert_eq!(c.open("partners", &sealed), Err(CursorError::Foreign));
        assert_eq!(c.open("deals", &sealed[..sealed.len() - 2]), Err(CursorError::Malformed));
        assert_eq!(c.open("deals", "not a cursor"), Err(CursorError::Malformed));
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("data")).unwrap();
        assert_eq!(Cursors::load_or_create(other.path()).unwrap().open("deals", &sealed), Err(CursorError::Foreign));
        // The key is kept, for its owner only: another server of the installation opens the
        // same cursor.
        assert_eq!(Cursors::load_or_create(dir.path()).unwrap().open("deals", &sealed), Ok(id));
        let mode = std::fs::metadata(dir.path().join("data/cursor.key")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }
}
