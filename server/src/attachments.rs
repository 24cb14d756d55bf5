//! `crmkit attach`, `attachments`, `fetch` and `detach`: files attached to any entity, their
//! content stored once however many attachments share it.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use crmkit_core::id::{AttachmentId, RawId};
use crmkit_core::model::{Attachment, EntityKind, EntityRef};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;
use serde_json::json;

use crate::{acting_user, human_bytes, Format};

/// Parses `kind:id` (`deal:01J…`) into a reference to an entity.
pub fn parse_entity(s: &str) -> Result<EntityRef> {
    let kinds = || EntityKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let Some((kind, id)) = s.split_once(':') else {
        bail!("\"{s}\" is not an entity: write KIND:ID, like deal:ID, where KIND is one of {}", kinds());
    };
    let kind = EntityKind::from_name(kind.trim())
        .ok_or_else(|| anyhow!("\"{s}\": \"{kind}\" is not a kind of entity ({})", kinds()))?;
    let id: RawId = id.trim().parse().map_err(|e| anyhow!("\"{s}\": \"{id}\" is not an id: {e}"))?;
    Ok(EntityRef { kind, id })
}

/// Refuses a reference to an entity that does not exist.
fn existing<R: Reader>(r: &R, owner: EntityRef) -> Result<EntityRef> {
    if !r.exists(owner.kind, owner.id)? {
        bail!("{} {} does not exist", owner.kind, owner.id);
    }
    Ok(owner)
}

fn parse_attachment(id: &str) -> Result<AttachmentId> {
    id.trim().parse().map_err(|e| anyhow!("\"{id}\" is not an attachment id: {e}"))
}

fn load_attachment<R: Reader>(r: &R, id: AttachmentId) -> Result<Attachment> {
    r.get(id)?.ok_or_else(|| anyhow!("attachment {id} does not exist"))
}

/// What `crmkit attach` is asked to do.
pub struct AttachArgs<'a> {
    pub entity: &'a str,
    pub file: &'a Path,
    pub name: Option<&'a str>,
    pub mime: Option<&'a str>,
    pub login: Option<&'a str>,
    pub format: Format,
}

/// `crmkit attach`: streams a file into the store as an attachment of an entity; the
/// configured size limit is enforced while reading, and a refusal writes nothing.
pub fn attach(dir: &Path, a: AttachArgs<'_>) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let owner = parse_entity(a.entity)?;
    let name = match a.name {
        Some(n) => n.to_string(),
        None => a
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}: no file name to store; give one with --name", a.file.display()))?,
    };
    let mime = a.mime.unwrap_or_else(|| crmkit_core::model::mime_of_name(&name));
    let actor = {
        let r = inst.store().read()?;
        existing(&r, owner)?;
        acting_user(&r, a.login)?
    };
    let mut file = std::fs::File::open(a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let (att, already_stored) = inst
        .store()
        .transact(actor, |tx| {
            let att = tx.attach_from(owner, &name, mime, &mut file)?;
            // Content is stored while an attachment has it: another one means it was there.
            let sharing = tx.ids_by(Index::AttachmentByContent, &att.content.0, None, 2)?;
            let already = sharing.iter().any(|id| *id != att.id.0);
            Ok((att, already))
        })
        .with_context(|| {
            format!("attaching {} to {} {}: nothing was written", a.file.display(), owner.kind, owner.id)
        })?;
    if a.format == Format::Json {
        say!("{}", serde_json::to_string_pretty(&json!({ "attachment": att, "already_stored": already_stored }))?);
        return Ok(());
    }
    say!("attached \"{}\" to {} {} as attachment {}", att.name, owner.kind, owner.id, att.id);
    say!("  mime     {}", att.mime);
    say!("  size     {} bytes ({})", att.size, human_bytes(att.size));
    say!("  sha-256  {}", att.content.hex());
    if already_stored {
        say!("  content  already stored: shared with another attachment, not stored again");
    } else {
        say!("  content  stored");
    }
    Ok(())
}

/// `crmkit attachments`: the files attached to an entity, oldest first.
pub fn list(dir: &Path, entity: &str, format: Format) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let owner = existing(&r, parse_entity(entity)?)?;
    let mut found = Vec::new();
    for id in r.ids_by(Index::AttachmentByOwner, &owner.id.to_bytes(), None, usize::MAX)? {
        let att = load_attachment(&r, AttachmentId(id))?;
        if att.owner == owner {
            found.push(att);
        }
    }
    if format == Format::Json {
        say!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    say!("{} {}: {} attachment(s)", owner.kind, owner.id, found.len());
    if found.is_empty() {
        return Ok(());
    }
    say!("  {:<26}  {:<32}  {:<24}  {:>10}  {:<64}  created", "id", "name", "mime", "size", "sha-256");
    for att in &found {
        say!(
            "  {:<26}  {:<32}  {:<24}  {:>10}  {:<64}  {}",
            att.id,
            att.name,
            att.mime,
            human_bytes(att.size),
            att.content.hex(),
            att.created_at
        );
    }
    Ok(())
}

/// Writes the content of `att` to `out` chunk by chunk; returns the number of bytes.
fn copy_content<R: Reader>(r: &R, att: &Attachment, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    let mut failed = None;
    let found = r.blob_chunks(&att.content, &mut |chunk| match out.write_all(chunk) {
        Ok(()) => {
            written += chunk.len() as u64;
            true
        }
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    if !found {
        bail!("attachment {}: its content (sha-256 {}) is not in the database", att.id, att.content.hex());
    }
    if written != att.size {
        bail!("attachment {}: the stored content has {written} bytes, the attachment says {}", att.id, att.size);
    }
    Ok(written)
}

/// `crmkit fetch`: writes an attachment's content to stdout, or to `out` (which appears
/// only once it is complete).
pub fn fetch(dir: &Path, attachment: &str, out: Option<&Path>) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let att = load_attachment(&r, parse_attachment(attachment)?)?;
    let Some(path) = out else {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        if let Err(e) = copy_content(&r, &att, &mut lock) {
            // A reader that has gone away (`crmkit fetch … | head -c 10`) is not a failure.
            if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
                std::process::exit(0);
            }
            return Err(e.context(format!("writing attachment {} to stdout", att.id)));
        }
        return Ok(());
    };
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("writing {}: cannot create a file in {}", path.display(), folder.display()))?;
    let written = copy_content(&r, &att, tmp.as_file_mut())
        .with_context(|| format!("writing attachment {} to {}", att.id, path.display()))?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    say!("wrote {} bytes of \"{}\" (attachment {}) to {}", written, att.name, att.id, path.display());
    Ok(())
}

/// `crmkit detach`: deletes an attachment; the store frees its content with the last
/// attachment that has it.
pub fn detach(dir: &Path, attachment: &str, login: Option<&str>) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let (att, actor) = {
        let r = inst.store().read()?;
        (load_attachment(&r, parse_attachment(attachment)?)?, acting_user(&r, login)?)
    };
    let freed = inst
        .store()
        .transact(actor, |tx| {
            tx.delete::<Attachment>(att.id, att.version)?;
            Ok(!tx.blob_chunks(&att.content, &mut |_| false)?)
        })
        .with_context(|| format!("detaching attachment {} (\"{}\"): nothing was written", att.id, att.name))?;
    say!("detached \"{}\" (attachment {}) from {} {}", att.name, att.id, att.owner.kind, att.owner.id);
    if freed {
        say!(
            "its content ({}, sha-256 {}) had no other attachment and is freed",
            human_bytes(att.size),
            att.content.hex()
        );
    } else {
        say!("its content (sha-256 {}) stays: other attachments share it", att.content.hex());
    }
    Ok(())
}
