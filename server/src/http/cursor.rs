//! List cursors: where a page stopped, sealed so that a cursor tells nothing — a list scans
//! entities the caller may not see, and the id it stopped at must not show that they exist.
//!
//! A cursor is the 16 bytes of an id through a four-round Feistel network keyed by the
//! installation's `data/cursor.key` (SHA-256 as the round function), followed by a tag over
//! it and the list it belongs to, written in hex. It survives restarts; someone without the
//! key can neither read an id out of it, nor make or bend one, nor use one list's cursor in
//! another.

use std::path::Path;

use anyhow::{Context, Result};
use crmkit_core::id::RawId;
use sha2::{Digest, Sha256};

/// Seals and opens cursors with one installation's key.
pub struct Cursors {
    key: [u8; 32],
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

    /// The tag of a sealed position in `list`.
    fn tag(&self, list: &str, sealed: &str) -> String {
        let digest = Sha256::new()
            .chain_update(self.key)
            .chain_update(b"tag")
            .chain_update(list.as_bytes())
            .chain_update([0])
            .chain_update(sealed.as_bytes())
            .finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The cursor of `list` (a resource path) stopped at `id`.
    pub fn seal(&self, list: &str, id: RawId) -> String {
        let b = id.to_bytes();
        let (mut l, mut r) = (halve(&b[..8]), halve(&b[8..]));
        for i in 0..4 {
            (l, r) = (r, l ^ self.round(i, r));
        }
        let sealed = format!("{l:016x}{r:016x}");
        let tag = self.tag(list, &sealed);
        format!("{sealed}{tag}")
    }

    /// The id a cursor of `list` was sealed from (`None`: not a cursor of this list of this
    /// installation).
    pub fn open(&self, list: &str, cursor: &str) -> Option<RawId> {
        let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if cursor.len() != 48 || !lower_hex(cursor) {
            return None;
        }
        let (sealed, tag) = cursor.split_at(32);
        if self.tag(list, sealed) != tag {
            return None;
        }
        let (mut l, mut r) =
            (u64::from_str_radix(&sealed[..16], 16).ok()?, u64::from_str_radix(&sealed[16..], 16).ok()?);
        for i in (0..4).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&l.to_be_bytes());
        b[8..].copy_from_slice(&r.to_be_bytes());
        RawId::from_bytes(&b)
    }
}

fn halve(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
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
        let sealed = c.seal("deals", id);
        assert_eq!(c.open("deals", &sealed), Some(id));
        assert!(!sealed.contains(&format!("{:x}", u128::from_be_bytes(id.to_bytes()))));
        // The next id seals to something unrelated; a bent cursor, or one of another list,
        // does not open.
        let next: RawId = "01KJPWD6M0000000000000000V".parse().unwrap();
        assert_ne!(c.seal("deals", next)[..16], sealed[..16]);
        let mut bent = sealed.clone().into_bytes();
        bent[0] = if bent[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(c.open("deals", std::str::from_utf8(&bent).unwrap()), None);
        assert_eq!(c.open("partners", &sealed), None);
        assert_eq!(c.open("deals", "not a cursor"), None);
        // The key is kept, for its owner only: another server of the installation opens the
        // same cursor.
        assert_eq!(Cursors::load_or_create(dir.path()).unwrap().open("deals", &sealed), Some(id));
        let mode = std::fs::metadata(dir.path().join("data/cursor.key")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }
}
