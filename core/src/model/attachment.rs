//! Attachments: named references from any entity to file content stored once by SHA-256.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::rules::optional_text;
use super::Index;
use super::{entity_meta, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref};
use crate::id::{AttachmentId, RawId, UserId};
use crate::time::Timestamp;

/// The MIME type of a file by its name's extension, from one table (the `mime_guess` crate's,
/// kept from the shared MIME database and Apache's list) for every path that attaches a file
/// without saying its type: `crmkit attach`, an import's `attachments` column and an upload
/// without `Content-Type`. `application/octet-stream` for an unknown or missing extension.
pub fn mime_of_name(name: &str) -> &'static str {
    mime_guess::from_path(name).first_raw().unwrap_or("application/octet-stream")
}

/// The SHA-256 of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        use sha2::Digest;
        ContentHash(sha2::Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses lowercase or uppercase hex of 64 digits.
    pub fn parse_hex(s: &str) -> Option<ContentHash> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
        }
        Some(ContentHash(out))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ContentHash, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            ContentHash::parse_hex(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("\"{s}\" is not a SHA-256 in hex")))
        } else {
            let b: serde_bytes_compat::Bytes = Deserialize::deserialize(d)?;
            let arr: [u8; 32] = b.0.try_into().map_err(|_| serde::de::Error::custom("a SHA-256 has 32 bytes"))?;
            Ok(ContentHash(arr))
        }
    }
}

/// Deserializes a byte string without an extra dependency.
mod serde_bytes_compat {
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;

    pub struct Bytes(pub Vec<u8>);

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                    let mut v = Vec::new();
                    while let Some(b) = seq.next_element::<u8>()? {
                        v.push(b);
                    }
                    Ok(Bytes(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

/// A reference to any entity: its kind and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: EntityKind,
    pub id: RawId,
}

/// A file attached to an entity. The content is stored once per hash, however many
/// attachments share it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: AttachmentId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// The entity the file is attached to.
    pub owner: EntityRef,
    /// The file name as uploaded.
    pub name: String,
    /// MIME type (`application/pdf`).
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub content: ContentHash,
}

impl Entity for Attachment {
    const KIND: EntityKind = EntityKind::Attachment;
    const TABLE: &'static str = "attachments";
    type Id = AttachmentId;
    entity_meta!(AttachmentId);

    const CREATED_BY_ATTACH: bool = true;

    /// An attachment keeps its content: the stored bytes are shared by hash and freed by
    /// reference, so only `attach` writes them.
    fn check_change(&self, new: &Self, _by_engine: bool) -> Result<(), FieldError> {
        let changed = [("content", self.content != new.content), ("size", self.size != new.size)];
        super::rules::refuse_changed(
            Self::KIND,
            &changed,
            "an attachment's content does not change: attach the new file and detach the old one",
        )
    }

    fn content(&self) -> Option<&ContentHash> {
        Some(&self.content)
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        super::text::file_name(k, "name", &self.name)?;
        optional_text(k, "mime", &self.mime, 255)?;
        let m = &self.mime;
        let valid_mime =
            m.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !m.contains(char::is_whitespace));
        if !valid_mime {
            return Err(FieldError::new(k, "mime", format!("\"{m}\" is not a MIME type like application/pdf")));
        }
        if self.owner.kind == EntityKind::Attachment {
            return Err(FieldError::new(k, "owner", "an attachment cannot be attached to an attachment"));
        }
        Ok(())
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        out.push(Ref { field: "owner".into(), kind: self.owner.kind, id: self.owner.id, must: None });
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry { index: Index::AttachmentByOwner, prefix: self.owner.id.to_bytes().to_vec() });
        out.push(IndexEntry { index: Index::AttachmentByContent, prefix: self.content.0.to_vec() });
    }
}

#[cfg(test)]
mod tests {
    use super::mime_of_name;

    #[test]
    fn mime_types_come_from_the_extension_in_any_case() {
        let cases = [
            ("КП.pdf", "application/pdf"),
            ("scan.JPG", "image/jpeg"),
            ("price.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ("offer.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ("contract.odt", "application/vnd.oasis.opendocument.text"),
            ("letter.eml", "message/rfc822"),
            ("rows.csv", "text/csv"),
            ("photo.webp", "image/webp"),
            ("archive.7z", "application/x-7z-compressed"),
            ("README", "application/octet-stream"),
            ("data.unknownext", "application/octet-stream"),
        ];
        for (name, mime) in cases {
            assert_eq!(mime_of_name(name), mime, "{name}");
        }
    }
}
