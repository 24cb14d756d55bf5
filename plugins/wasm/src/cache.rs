//! Compiled plugin code on disk, so a second start does not compile again. Entries are keyed
//! by the module's SHA-256 and the engine's compatibility hash (wasmtime's version and the
//! settings code depends on), and sealed with a key only this host's folder holds: an entry
//! is deserialized — which runs it as native code — only when its seal shows this host wrote
//! it. A file copied in, edited or truncated is compiled over, never loaded.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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
        let read_key = || std::fs::read(&key_file).ok().and_then(|k| <[u8; 32]>::try_from(k).ok());
        let key = match read_key() {
            Some(k) => k,
            None => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| std::io::Error::other(e.to_string()))?;
                // Made beside and linked into place, which fails when another host made it
                // first: every host then seals with the one key the folder keeps.
                let tag: String = k[..8].iter().map(|b| format!("{b:02x}")).collect();
                let made = dir.join(format!("key.tmp{}-{tag}", std::process::id()));
                write_atomically(&made, &k)?;
                let linked = std::fs::hard_link(&made, &key_file);
                let _ = std::fs::remove_file(&made);
                match linked {
                    Ok(()) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_key() {
                        Some(theirs) => theirs,
                        // A key file of the wrong length: replaced.
                        None => {
                            write_atomically(&key_file, &k)?;
                            k
                        }
                    },
                    Err(e) => return Err(e),
                }
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
        // The tag is compared in constant time.
        mac(&self.key, name.as_bytes(), &code).verify_slice(&bytes).is_ok().then_some(code)
    }

    /// Keeps the compiled code of the module with `sha256`.
    pub(crate) fn put(&self, sha256: &str, code: &[u8]) -> std::io::Result<()> {
        let file = self.file(sha256);
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut bytes = mac(&self.key, name.as_bytes(), code).finalize().into_bytes().to_vec();
        bytes.extend_from_slice(code);
        write_atomically(&file, &bytes)
    }
}

/// Writes `file` whole or not at all, readable and writable by the owner only. The
/// temporary name is the process's and a count's, so two hosts of one process writing at
/// once do not take each other's file.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = file.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// The HMAC-SHA-256 of `name` and `code` under `key`: the name binds the entry to its
/// module and engine, so one sealed entry cannot stand in for another.
fn mac(key: &[u8; 32], name: &[u8], code: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name);
    mac.update(code);
    mac
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

    #[test]
    fn hosts_of_one_process_write_one_entry_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = wasmtime::Engine::default();
        let sha = "cd".repeat(32);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| Cache::open(dir.path(), &engine).unwrap().put(&sha, b"compiled code").unwrap());
            }
        });
        let cache = Cache::open(dir.path(), &engine).unwrap();
        assert_eq!(cache.get(&sha).as_deref(), Some(&b"compiled code"[..]));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(cache.file(&sha)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
