//! Attachments and their content: `attach` and `attach_from` store the content in chunks, once
//! per hash, with the attachment record; a delete releases the chunks no other attachment shares.

use std::io::Read as _;
use std::ops::Bound;
use std::path::PathBuf;

use super::postings::prefix_end;
use super::tables::BLOBS;
use super::{Reader, WriteTxn};
use crate::id::RawId;
use crate::model::{Attachment, ContentHash, EntityKind, EntityRef, FieldError, Index};
use crate::time::Timestamp;
use crate::{Error, Result};

/// Attachment content is stored in chunks of this size.
const BLOB_CHUNK: usize = 1 << 20;

impl WriteTxn<'_> {
    /// Attaches what `reader` yields (a file, a request body): reads at most the configured
    /// limit and refuses, without storing anything, as soon as there is more.
    pub fn attach_from(
        &mut self,
        owner: EntityRef,
        name: &str,
        mime: &str,
        reader: &mut dyn std::io::Read,
    ) -> Result<Attachment> {
        let max = self.store.settings.attachment_max_bytes;
        let mut content = Vec::new();
        let read = std::io::Read::take(reader, max + 1).read_to_end(&mut content);
        read.map_err(|e| Error::Io { path: PathBuf::from(name), error: e })?;
        if content.len() as u64 > max {
            return Err(FieldError::new(
                EntityKind::Attachment,
                "content",
                format!("is more than {max} bytes, the limit (attachments.max_size_mb)"),
            )
            .into());
        }
        self.attach(owner, name, mime, &content)
    }

    /// Stores `content` (once per hash) and attaches it to `owner` under `name`.
    pub fn attach(&mut self, owner: EntityRef, name: &str, mime: &str, content: &[u8]) -> Result<Attachment> {
        let max = self.store.settings.attachment_max_bytes;
        if content.len() as u64 > max {
            return Err(FieldError::new(
                EntityKind::Attachment,
                "content",
                format!("is {} bytes; the limit is {max} bytes (attachments.max_size_mb)", content.len()),
            )
            .into());
        }
        let hash = ContentHash::of(content);
        let stored = self.kv_contains(BLOBS, &blob_key(&hash, 0))?;
        self.attaching = true;
        let created = self.create(Attachment {
            id: Default::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            owner,
            name: name.to_string(),
            mime: mime.to_string(),
            size: content.len() as u64,
            content: hash,
        });
        self.attaching = false;
        let attachment = created?;
        if !stored {
            for (i, chunk) in content.chunks(BLOB_CHUNK).enumerate() {
                self.changes.put(BLOBS, blob_key(&hash, i as u32), chunk.to_vec());
            }
            if content.is_empty() {
                self.changes.put(BLOBS, blob_key(&hash, 0), Vec::new());
            }
        }
        Ok(attachment)
    }

    /// The blob chunks to delete when attachment `released_by` goes: all of them if no
    /// other attachment has the same content.
    pub(super) fn blob_keys_released(&self, hash: &ContentHash, released_by: RawId) -> Result<Vec<Vec<u8>>> {
        let others = self.ids_by(Index::AttachmentByContent, &hash.0, None, 2)?;
        if others.iter().any(|id| *id != released_by) {
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        let end = prefix_end(&hash.0);
        self.kv_scan(
            BLOBS,
            Bound::Included(&hash.0[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |k, _| {
                keys.push(k.to_vec());
                true
            },
        )?;
        Ok(keys)
    }
}

fn blob_key(hash: &ContentHash, chunk: u32) -> Vec<u8> {
    let mut k = hash.0.to_vec();
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}
