//! Writing a plugin's folder from a module's bytes: the one step between compiling a plugin
//! and the host loading it, for embedders, tooling and tests.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::check::hex;

/// Writes plugin `name` into the plugins folder `plugins`: `NAME/NAME.wasm` holding `wasm`,
/// and `NAME/plugin.toml` opening with `name`, `version`, `abi = 1` and the module's
/// SHA-256, then `manifest` — the manifest's other keys and tables (`capabilities`,
/// `[hooks]`, `[limits]`, `[config]`; plugins/ABI.md). Answers the SHA-256 in hex.
///
/// It writes what it is given and does not check the module or the rest of the manifest:
/// loading does ([`PluginHost::load_all`](crate::PluginHost::load_all), `crmkit check`). A
/// `name` that is not a plugin's name (lowercase letters, digits, `_` and `-`, as the folder
/// is named after it) or an empty `version` is refused with `InvalidInput`, nothing written.
pub fn install(plugins: &Path, name: &str, version: &str, wasm: &[u8], manifest: &str) -> io::Result<String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("plugin name \"{name}\": a plugin's name is lowercase letters, digits, _ and -"),
        ));
    }
    if version.trim().is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("plugin {name}: the version is empty")));
    }
    let sha = hex(&Sha256::digest(wasm));
    let version = toml::Value::String(version.to_string());
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.wasm")), wasm)?;
    std::fs::write(
        dir.join("plugin.toml"),
        format!("name = \"{name}\"\nversion = {version}\nabi = 1\nsha256 = \"{sha}\"\n{manifest}\n"),
    )?;
    Ok(sha)
}
