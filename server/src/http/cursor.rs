//! List cursors: where a page stopped, sealed so that a cursor tells nothing — a list scans
//! entities the caller may not see, and the id it stopped at must not show that they exist.
//!
//! A cursor is the 16 bytes of an id through a four-round Feistel network keyed by the
//! installation's `data/cursor.key` (SHA-256 as the round function), written in hex. It
//! survives restarts; someone without the key can neither read an id out of it nor make one.

use std::path::Path;

use anyhow::{Context, Result};
use crmkit_core::id::RawId;
use sha2::{Digest, Sha256};

/// Seals and opens cursors with one installation's key.
pub struct Cursors {
    key: [u8; 32],
}

impl Cursors {
    /// The installation's key, made on first use.
    pub fn load_or_create(dir: &Path) -> Result<Cursors> {
        let path = dir.join("data").join("cursor.key");
        let hex = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: String = crate::token::random::<32>()?.iter().map(|b| format!("{b:02x}")).collect();
                std::fs::write(&path, &key).with_context(|| format!("writing {}", path.display()))?;
                key
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut key = [0u8; 32];
        for (i, slot) in key.iter_mut().enumerate() {
            *slot = hex
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("{} is not 64 hex digits", path.display()))?;
        }
        Ok(Cursors { key })
    }

    fn round(&self, i: u8, half: u64) -> u64 {
        let digest = Sha256::new().chain_update(self.key).chain_update([i]).chain_update(half.to_be_bytes()).finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// The cursor of a list stopped at `id`.
    pub fn seal(&self, id: RawId) -> String {
        let b = id.to_bytes();
        let (mut l, mut r) =
            (u64::from_be_bytes(b[..8].try_into().expect("8")), u64::from_be_bytes(b[8..].try_into().expect("8")));
        for i in 0..4 {
            (l, r) = (r, l ^ self.round(i, r));
        }
        format!("{l:016x}{r:016x}")
    }

    /// The id a cursor was sealed from (`None`: not a cursor of this installation).
    pub fn open(&self, cursor: &str) -> Option<RawId> {
        if cursor.len() != 32 || !cursor.is_ascii() {
            return None;
        }
        let (mut l, mut r) =
            (u64::from_str_radix(&cursor[..16], 16).ok()?, u64::from_str_radix(&cursor[16..], 16).ok()?);
        for i in (0..4).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&l.to_be_bytes());
        b[8..].copy_from_slice(&r.to_be_bytes());
        RawId::from_bytes(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_to_its_id_and_shows_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let c = Cursors::load_or_create(dir.path()).unwrap();
        let id: RawId = "01KJPWD6M0000000000000000T".parse().unwrap();
        let sealed = c.seal(id);
        assert_eq!(c.open(&sealed), Some(id));
        assert!(!sealed.contains(&format!("{:x}", u128::from_be_bytes(id.to_bytes()))));
        // The next id seals to something unrelated; a changed cursor opens to another id.
        let next: RawId = "01KJPWD6M0000000000000000V".parse().unwrap();
        assert_ne!(c.seal(next)[..16], sealed[..16]);
        let mut bent = sealed.clone().into_bytes();
        bent[0] = if bent[0] == b'0' { b'1' } else { b'0' };
        assert_ne!(c.open(std::str::from_utf8(&bent).unwrap()), Some(id));
        // The key is kept: another server of the installation opens the same cursor.
        assert_eq!(Cursors::load_or_create(dir.path()).unwrap().open(&sealed), Some(id));
        assert_eq!(c.open("not a cursor"), None);
    }
}
