//! Secondary indexes as posting chunks: the ids under one index value are kept sorted in
//! chunks of at most [`CHUNK`] ids, keyed by `prefix ++ first id of the chunk`.
//!
//! A write transaction collects index changes per `(index, prefix)` and applies them at
//! commit, rewriting each touched chunk once. Bulk loads thus cost about one B-tree write
//! per touched chunk instead of one per entry, and a scan reads 64 ids per key.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::kv::{Changes, KvRead};
use crate::id::RawId;
use crate::model::Index;
use crate::Result;

/// The most ids a chunk holds.
pub(crate) const CHUNK: usize = 64;

/// A range scan over one index table: `(from, to, reverse, visit)`.
pub(crate) type ScanFn<'a> = dyn Fn(Bound<&[u8]>, Bound<&[u8]>, bool, super::kv::Visit<'_>) -> Result<()> + 'a;

/// Every posting list: sorted ids per `(index, prefix)`.
pub(crate) type Lists = BTreeMap<(Index, Vec<u8>), Vec<RawId>>;

/// Pending changes of one posting list: `true` adds the id, `false` removes it.
pub(crate) type Delta = BTreeMap<RawId, bool>;

fn key(prefix: &[u8], first: RawId) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&first.to_bytes());
    k
}

/// The ids of a chunk value.
pub(crate) fn ids(value: &[u8]) -> impl Iterator<Item = RawId> + '_ {
    value.chunks_exact(16).filter_map(RawId::from_bytes)
}

fn encode(ids: &[RawId]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ids.len() * 16);
    for id in ids {
        v.extend_from_slice(&id.to_bytes());
    }
    v
}

/// The first key after every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Scans the ids of one posting list in order, starting after `after`, until `visit`
/// returns `false`.
pub(crate) fn scan(
    kv: &ScanFn<'_>,
    prefix: &[u8],
    after: Option<RawId>,
    visit: &mut dyn FnMut(RawId) -> bool,
) -> Result<()> {
    let end = prefix_end(prefix);
    let end = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    // Start at the chunk holding `after`, if any.
    let mut start = prefix.to_vec();
    if let Some(a) = after {
        let probe = key(prefix, a);
        kv(Bound::Included(prefix), Bound::Included(&probe), true, &mut |k, _| {
            start = k.to_vec();
            false
        })?;
    }
    kv(Bound::Included(&start), end, false, &mut |_, v| {
        for id in ids(v) {
            if after.is_some_and(|a| id <= a) {
                continue;
            }
            if !visit(id) {
                return false;
            }
        }
        true
    })
}

/// Writes a whole posting list (sorted ids) as fresh chunks.
pub(crate) fn write_fresh(index: Index, prefix: &[u8], sorted: &[RawId], changes: &mut Changes) {
    for piece in sorted.chunks(CHUNK) {
        changes.put(index.table(), key(prefix, piece[0]), encode(piece));
    }
}

/// Applies the pending changes of one posting list to the chunks stored in `base`, writing
/// the rewritten chunks into `changes`.
pub(crate) fn apply(
    base: &dyn KvRead,
    index: Index,
    prefix: &[u8],
    delta: &Delta,
    changes: &mut Changes,
) -> Result<()> {
    let table = index.table();
    let end = prefix_end(prefix);
    let end_bound = || end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let pending: Vec<(RawId, bool)> = delta.iter().map(|(k, v)| (*k, *v)).collect();
    let mut i = 0;
    while i < pending.len() {
        let id = pending[i].0;
        // The chunk that holds `id`: the last one starting at or before it, else the first.
        let mut chunk: Option<(Vec<u8>, Vec<u8>)> = None;
        let probe = key(prefix, id);
        base.scan(table, Bound::Included(prefix), Bound::Included(&probe), true, &mut |k, v| {
            chunk = Some((k.to_vec(), v.to_vec()));
            false
        })?;
        if chunk.is_none() {
            base.scan(table, Bound::Included(prefix), end_bound(), false, &mut |k, v| {
                chunk = Some((k.to_vec(), v.to_vec()));
                false
            })?;
        }
        // Pending ids up to the next chunk's start belong to this one.
        let mut upper: Option<RawId> = None;
        if let Some((k, _)) = &chunk {
            base.scan(table, Bound::Excluded(k.as_slice()), end_bound(), false, &mut |k, _| {
                upper = RawId::from_bytes(&k[k.len() - 16..]);
                false
            })?;
        }
        let mut set: Vec<RawId> = chunk.as_ref().map(|(_, v)| ids(v).collect()).unwrap_or_default();
        let before = set.clone();
        while i < pending.len() && upper.is_none_or(|u| pending[i].0 < u) {
            let (id, add) = pending[i];
            match (set.binary_search(&id), add) {
                (Err(at), true) => set.insert(at, id),
                (Ok(at), false) => {
                    set.remove(at);
                }
                _ => {}
            }
            i += 1;
        }
        if set == before {
            continue;
        }
        if let Some((k, _)) = chunk {
            changes.delete(table, k);
        }
        for piece in set.chunks(CHUNK) {
            changes.put(table, key(prefix, piece[0]), encode(piece));
        }
    }
    Ok(())
}
