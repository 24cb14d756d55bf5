//! Compiled plugin code on disk, so a second start does not compile again. Entries are keyed
//! by the module's SHA-256 and the engine's compatibility hash (wasmtime's version and the
//! settings code depends on), and sealed with a key only this host's folder holds: an entry
//! is deserialized — which runs it as native code — only when its seal shows this host wrote
//! it. A file copied in, edited or truncated is compiled over, never loaded.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The seal's length: an HMAC-SHA-256 tag.
const TAG: usize = 32;

/// A folder of compiled modules and the key that seals them.
pub(crate) struct Cache {
    dir: PathBuf,
    key: [u8; 32],
    /// The engine's compatibility, in every entry's name.
    engine: String,
}

impl Cache {
    /// The cache in `dir` (made when missing, with a new key) for `engine`.
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Cache> {
        std::fs::create_dir_all(dir)?;
        let key_file = dir.join("key");
        let key = match std::fs::read(&key_file) {
            Ok(k) if k.len() == 32 => k.try_into().expect("32 bytes"),
            _ => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| std::io::Error::other(e.to_string()))?;
                write_atomically(&key_file, &k)?;
                k
            }
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Cache { dir: dir.to_path_buf(), key, engine: format!("{:016x}", h.finish()) })
    }

    fn file(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine))
    }

    /// The compiled code of the module with `sha256`, when this host stored it.
    pub(crate) fn get(&self, sha256: &str) -> Option<Vec<u8>> {
        let file = self.file(sha256);
        let mut bytes = std::fs::read(&file).ok()?;
        if bytes.len() < TAG {
            return None;
        }
        let code = bytes.split_off(TAG);
        let name = file.file_name()?.to_string_lossy().into_owned();
        (hmac(&self.key, name.as_bytes(), &code) == bytes.as_slice()).then_some(code)
    }

    /// Keeps the compiled code of the module with `sha256`.
    pub(crate) fn put(&self, sha256: &str, code: &[u8]) -> std::io::Result<()> {
        let file = self.file(sha256);
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut bytes = hmac(&self.key, name.as_bytes(), code).to_vec();
        bytes.extend_from_slice(code);
        write_atomically(&file, &bytes)
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// HMAC-SHA-256 (RFC 2104) of `name` and `code` under `key`: the name binds the entry to
/// its module and engine, so one sealed entry cannot stand in for another.
fn hmac(key: &[u8; 32], name: &[u8], code: &[u8]) -> [u8; TAG] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update((name.len() as u64).to_le_bytes())
        .chain_update(name)
        .chain_update(code)
        .finalize();
    let outer = Sha256::new().chain_update(opad).chain_update(inner).finalize();
    outer.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sealed_entries_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let cache = Cache::open(dir.path(), &engine).unwrap();
        let sha = "ab".repeat(32);
        assert_eq!(cache.get(&sha), None);
        cache.put(&sha, b"compiled code").unwrap();
        assert_eq!(cache.get(&sha).as_deref(), Some(&b"compiled code"[..]));
        // Reopened, the same key: still found.
        let again = Cache::open(dir.path(), &engine).unwrap();
        assert_eq!(again.get(&sha).as_deref(), Some(&b"compiled code"[..]));
        // An entry edited by someone else is not taken.
        let file = cache.file(&sha);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(cache.get(&sha), None);
        // Nor one written without the key.
        std::fs::write(&file, [vec![0u8; 32], b"compiled code".to_vec()].concat()).unwrap();
        assert_eq!(cache.get(&sha), None);
        std::fs::write(&file, b"short").unwrap();
        assert_eq!(cache.get(&sha), None);
    }
}
