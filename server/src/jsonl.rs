//! The installation's small record files beside the database (`data/tokens.jsonl`,
//! `data/passwords.jsonl`): one JSON object per line, replaced whole on every change through
//! a file written beside it and renamed over it.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Every record of `path` (none when it does not exist); `what` names one in messages.
pub fn read<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not {what}", path.display(), i + 1)))
        .collect()
}

/// Replaces `path` with `records`, durably: written beside it, synced, renamed over it.
pub fn write<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut out = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    for r in records {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    }
    out.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}
