//! Integrity checks and counts: `verify_indexes` and `verify_attachments` compare what is
//! stored with what the records say, `stats` counts what a store holds.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::tables::{entity_table, AUDIT, BLOBS, STAGE_HISTORY};
use super::{postings, schema, Reader, Snapshot, Store};
use crate::id::RawId;
use crate::model::{Attachment, ContentHash, EntityKind, Index};
use crate::progress::{self, Meter, Progress};
use crate::Result;

/// Counts of what a store holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Entities per kind.
    pub entities: BTreeMap<EntityKind, u64>,
    pub audit_entries: u64,
    /// Steps in the stage history of all deals.
    pub stage_history_steps: u64,
    pub blob_chunks: u64,
    pub schema_version: u32,
    /// Size of the database file in bytes (0 for a backend without a file).
    pub file_bytes: u64,
}

impl Store {
    /// Checks that every secondary index holds exactly what the records say; returns one
    /// line per disagreement (empty when the database is consistent).
    /// Works one entity kind at a time, so memory follows the largest kind, not the file.
    pub fn verify_indexes(&self) -> Result<Vec<String>> {
        self.verify_indexes_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_indexes`], reporting its stage `"indexes"` to `progress`: the
    /// records read and the index entries compared.
    pub fn verify_indexes_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let mut total = 0;
        for kind in EntityKind::ALL {
            total += r.kv.len(entity_table(kind))?;
        }
        for index in Index::ALL {
            total += r.kv.len(index.table())?;
        }
        let mut meter = Meter::start(progress, "indexes", total);
        let mut problems = Vec::new();
        let mut custom_refs = postings::Lists::new();
        for kind in EntityKind::ALL {
            let mut expected = schema::expected_postings_of(&r, kind, &mut || meter.add(1))?;
            let refs: Vec<_> = expected.keys().filter(|(i, _)| *i == Index::CustomRef).cloned().collect();
            for key in refs {
                let mut ids = expected.remove(&key).unwrap_or_default();
                custom_refs.entry(key).or_default().append(&mut ids);
            }
            for index in Index::ALL.iter().filter(|i| i.owner() == Some(kind)) {
                compare_index(&r, *index, &expected, &mut problems, &mut meter)?;
            }
        }
        for ids in custom_refs.values_mut() {
            ids.sort();
        }
        compare_index(&r, Index::CustomRef, &custom_refs, &mut problems, &mut meter)?;
        meter.finish();
        Ok(problems)
    }

    /// Checks attachments against the stored content: every attachment's content is there
    /// and as long as its size says, and no content is kept that no attachment refers to.
    /// Returns the problems found.
    pub fn verify_attachments(&self) -> Result<Vec<String>> {
        self.verify_attachments_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_attachments`], reporting its stage `"attachments"` to `progress`:
    /// the content chunks and the attachments read.
    pub fn verify_attachments_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.kv.len(BLOBS)? + r.kv.len(entity_table(EntityKind::Attachment))?;
        let mut meter = Meter::start(progress, "attachments", total);
        let mut problems = Vec::new();
        let mut sizes: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        r.kv_scan(BLOBS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
            if let Ok(hash) = <[u8; 32]>::try_from(&k[..32.min(k.len())]) {
                *sizes.entry(hash).or_default() += v.len() as u64;
            }
            meter.add(1);
            true
        })?;
        let mut referenced = std::collections::BTreeSet::new();
        r.for_each::<Attachment>(|a| {
            match sizes.get(&a.content.0) {
                None => problems.push(format!(
                    "attachment {} ({}): its content {} is not stored",
                    a.id,
                    a.name,
                    a.content.hex()
                )),
                Some(&n) if n != a.size => problems.push(format!(
                    "attachment {} ({}): {} bytes are stored for its content, its size says {}",
                    a.id, a.name, n, a.size
                )),
                Some(_) => {}
            }
            referenced.insert(a.content.0);
            meter.add(1);
            true
        })?;
        for hash in sizes.keys().filter(|h| !referenced.contains(*h)) {
            problems.push(format!("content {} is stored but no attachment refers to it", ContentHash(*hash).hex()));
        }
        meter.finish();
        Ok(problems)
    }

    /// Counts per entity kind and the file size.
    pub fn stats(&self) -> Result<Stats> {
        let r = self.backend.read()?;
        let mut entities = BTreeMap::new();
        for k in EntityKind::ALL {
            entities.insert(k, r.len(entity_table(k))?);
        }
        Ok(Stats {
            entities,
            audit_entries: r.len(AUDIT)?,
            stage_history_steps: r.len(STAGE_HISTORY)?,
            blob_chunks: r.len(BLOBS)?,
            schema_version: schema::stored_version(r.as_ref())?.unwrap_or(0),
            file_bytes: self.path().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len()),
        })
    }
}

/// Compares the stored entries of `index` with the expected lists (which may hold other
/// indexes too), adding a line per difference.
fn compare_index(
    r: &Snapshot,
    index: Index,
    expected: &postings::Lists,
    problems: &mut Vec<String>,
    meter: &mut Meter<'_>,
) -> Result<()> {
    let mut stored: BTreeMap<Vec<u8>, Vec<RawId>> = BTreeMap::new();
    r.kv_scan(index.table(), Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
        let prefix = &k[..k.len().saturating_sub(16)];
        stored.entry(prefix.to_vec()).or_default().extend(postings::ids(v));
        meter.add(1);
        true
    })?;
    for ((_, prefix), want) in expected.iter().filter(|((i, _), _)| *i == index) {
        match stored.get(prefix) {
            Some(got) if got == want => {}
            Some(got) => {
                problems.push(format!("{index:?} {prefix:02x?}: stored {} ids, records say {}", got.len(), want.len()))
            }
            None => problems.push(format!("{index:?} {prefix:02x?}: missing ({} ids)", want.len())),
        }
    }
    for prefix in stored.keys().filter(|p| !expected.contains_key(&(index, (*p).clone()))) {
        problems.push(format!("{index:?} {prefix:02x?}: stored but no record has it"));
    }
    Ok(())
}
