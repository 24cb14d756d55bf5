//! Reads: the `Reader` trait every read goes through, shared by snapshots and write
//! transactions, and `Snapshot`, the committed state at one instant.

use std::ops::Bound;
use std::sync::Arc;

use super::aggregates::{FunnelKey, FunnelRollupKey, FunnelTotals};
use super::codec::{decode, decode_kv};
use super::external_keys::external_key;
use super::kv::{self, KvRead};
use super::postings::{self, prefix_end};
use super::tables::{entity_table, Table, AUDIT, AUDIT_BY_ENTITY, BLOBS, EXTERNAL_KEYS, STAGE_HISTORY};
use crate::audit::{AuditEntry, AuditOp};
use crate::config::Settings;
use crate::id::{AuditId, DealId, RawId, TaskId, TypedId, UserId};
use crate::model::{ContentHash, Entity, EntityKind, EntityRef, Index, StageChange, Task, TaskStatus, User};
use crate::time::{Clock, Timestamp};
use crate::{Error, Result};

fn id_suffix(key: &[u8]) -> Option<RawId> {
    key.len().checked_sub(16).and_then(|at| RawId::from_bytes(&key[at..]))
}

/// Reads shared by snapshots and write transactions (which see their own writes).
pub trait Reader {
    #[doc(hidden)]
    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    #[doc(hidden)]
    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        match self.kv_get(t, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
    #[doc(hidden)]
    fn kv_contains(&self, t: Table, key: &[u8]) -> Result<bool> {
        Ok(self.kv_get(t, key)?.is_some())
    }
    #[doc(hidden)]
    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()>;
    /// The settings in force.
    fn settings(&self) -> &Settings;
    /// Now, by the installation's clock (the one writes take their times from).
    fn now(&self) -> Timestamp;

    /// How many entities of `kind` there are (a snapshot knows without reading them).
    fn count(&self, kind: EntityKind) -> Result<u64> {
        let mut n = 0;
        self.kv_scan(entity_table(kind), Bound::Unbounded, Bound::Unbounded, false, &mut |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// The entity with this id, if any.
    fn get<E: Entity>(&self, id: E::Id) -> Result<Option<E>> {
        Ok(self.get_shared::<E>(id)?.map(|e| Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone())))
    }

    /// The entity with this id, shared with other readers rather than copied (what a
    /// read-only caller such as an API response wants).
    fn get_shared<E: Entity>(&self, id: E::Id) -> Result<Option<Arc<E>>> {
        let raw = id.raw();
        let decoder =
            |bytes: &[u8]| decode_kv::<E>(bytes, || format!("{} {raw}", E::KIND)).map(|e| Arc::new(e) as kv::Decoded);
        let found = self.kv_get_decoded(entity_table(E::KIND), &raw.to_bytes(), &decoder)?;
        Ok(found
            .map(|d| d.downcast::<E>().unwrap_or_else(|_| unreachable!("{} records decode as their type", E::KIND))))
    }

    /// The entity with this id, or [`Error::NotFound`].
    fn load<E: Entity>(&self, id: E::Id) -> Result<E> {
        self.get(id)?.ok_or(Error::NotFound { kind: E::KIND, id: id.raw() })
    }

    /// Whether an entity of `kind` has this id.
    fn exists(&self, kind: EntityKind, id: RawId) -> Result<bool> {
        self.kv_contains(entity_table(kind), &id.to_bytes())
    }

    #[doc(hidden)]
    /// Index changes a write transaction has not applied yet.
    fn pending(&self, index: Index, prefix: &[u8]) -> Option<&postings::Delta> {
        let _ = (index, prefix);
        None
    }

    #[doc(hidden)]
    /// What a write transaction's pending writes change in the funnel totals.
    fn pending_funnel_totals(&self) -> Result<Option<std::collections::BTreeMap<FunnelKey, FunnelTotals>>> {
        Ok(None)
    }

    /// The funnel totals of process kind `kind` (every kind: `None`): per kind, manager and
    /// line, what the deals add up to, as kept at write time (see [`FunnelTotals`]).
    fn funnel_totals(&self, kind: Option<&str>) -> Result<std::collections::BTreeMap<FunnelKey, FunnelTotals>> {
        super::aggregates::read_totals(self, kind, self.pending_funnel_totals()?)
    }

    /// The rollup lines of the funnel totals of process kind `kind` (every kind: `None`):
    /// per kind and line, what the deals of every manager add up to — the sum of the lines
    /// of [`Reader::funnel_totals`] over the managers, kept at write time beside them.
    fn funnel_rollup(&self, kind: Option<&str>) -> Result<std::collections::BTreeMap<FunnelRollupKey, FunnelTotals>> {
        super::aggregates::read_rollup(self, kind, self.pending_funnel_totals()?)
    }

    #[doc(hidden)]
    /// This reader as a snapshot that several threads may read at once, when it is one.
    fn snapshot(&self) -> Option<&Snapshot> {
        None
    }

    #[doc(hidden)]
    /// The rows of scan layout `table` (`deal_rows`, `deal_heads`, `document_rows`,
    /// `deal_documents`, `interaction_rows`, `task_rows`, `shipment_rows`) that a write transaction's pending writes touch.
    fn pending_rows(&self, _table: super::tables::Table) -> Result<Option<super::rows::PendingRows>> {
        Ok(None)
    }

    /// Visits every deal as the scan layout keeps it — its narrow row with its whole stage
    /// history — in id (creation) order, until `f` returns `false`. One row is held at a
    /// time; `f` gets the same [`DealRow`](super::DealRow) refilled.
    fn scan_deals(&self, f: &mut dyn FnMut(&super::DealRow) -> bool) -> Result<()> {
        self.scan_deals_in(super::Span::ALL, f)
    }

    /// [`Reader::scan_deals`] over the rows in `span` only.
    fn scan_deals_in(&self, span: super::Span, f: &mut dyn FnMut(&super::DealRow) -> bool) -> Result<()> {
        super::scan::scan(self, span, self.pending_rows(super::tables::DEAL_ROWS)?, f)
    }

    /// Visits every deal's head — the fields the reports over every deal read, and how it
    /// stands now — in id (creation) order, until `f` returns `false`. One head is held at
    /// a time; `f` gets the same [`DealHead`](super::DealHead) refilled.
    fn scan_deal_heads(&self, f: &mut dyn FnMut(&super::DealHead) -> bool) -> Result<()> {
        self.scan_deal_heads_in(super::Span::ALL, f)
    }

    /// An instant no step of any deal's history is after (none: no deal has had one): from
    /// it on every deal's head tells how the deal stands ([`DealHead::closing_at`](super::DealHead::closing_at)).
    /// Kept by every commit that writes a step; never falls, so it may lie after every
    /// step there is once the deal of the latest one is deleted.
    fn latest_step_at(&self) -> Result<Option<crate::time::Timestamp>> {
        super::deal_heads::latest_step(self)
    }

    /// [`Reader::scan_deal_heads`] over the heads in `span` only.
    fn scan_deal_heads_in(&self, span: super::Span, f: &mut dyn FnMut(&super::DealHead) -> bool) -> Result<()> {
        super::deal_heads::scan(self, span, self.pending_rows(super::tables::DEAL_HEADS)?, f)
    }

    /// Visits every document as the scan layout keeps it — its narrow row: what the
    /// reports over every document read — in id (creation) order, until `f` returns
    /// `false`. One row is held at a time; `f` gets the same
    /// [`DocumentRow`](super::DocumentRow) refilled.
    fn scan_documents(&self, f: &mut dyn FnMut(&super::DocumentRow) -> bool) -> Result<()> {
        self.scan_documents_in(super::Span::ALL, f)
    }

    /// [`Reader::scan_documents`] over the rows in `span` only.
    fn scan_documents_in(&self, span: super::Span, f: &mut dyn FnMut(&super::DocumentRow) -> bool) -> Result<()> {
        super::document_rows::scan(self, span, self.pending_rows(super::tables::DOCUMENT_ROWS)?, f)
    }

    /// Visits the documents of every deal that has any — what the reports over deals and
    /// their documents read of each, oldest first — in deal id (creation) order, until `f`
    /// returns `false`. One deal's row is held at a time; `f` gets the same
    /// [`DealDocuments`](super::DealDocuments) refilled.
    fn scan_deal_documents(&self, f: &mut dyn FnMut(&super::DealDocuments) -> bool) -> Result<()> {
        self.scan_deal_documents_in(super::Span::ALL, f)
    }

    /// [`Reader::scan_deal_documents`] over the deals in `span` only.
    fn scan_deal_documents_in(
        &self,
        span: super::Span,
        f: &mut dyn FnMut(&super::DealDocuments) -> bool,
    ) -> Result<()> {
        super::deal_documents::scan(self, span, self.pending_rows(super::tables::DEAL_DOCUMENTS)?, f)
    }

    /// Visits every completed shipment (the documents counted as revenue) as the scan
    /// layout keeps it — its document row — in id (creation) order, until `f` returns
    /// `false`. One row is held at a time; `f` gets the same
    /// [`DocumentRow`](super::DocumentRow) refilled.
    fn scan_shipments(&self, f: &mut dyn FnMut(&super::DocumentRow) -> bool) -> Result<()> {
        self.scan_shipments_in(super::Span::ALL, f)
    }

    /// [`Reader::scan_shipments`] over the rows in `span` only.
    fn scan_shipments_in(&self, span: super::Span, f: &mut dyn FnMut(&super::DocumentRow) -> bool) -> Result<()> {
        super::shipment_rows::scan(self, span, self.pending_rows(super::tables::SHIPMENT_ROWS)?, f)
    }

    /// Visits every interaction as the scan layout keeps it — its narrow row: what the
    /// reports over every interaction read — in id (creation) order, until `f` returns
    /// `false`. One row is held at a time.
    fn scan_interactions(&self, f: &mut dyn FnMut(&super::InteractionRow) -> bool) -> Result<()> {
        self.scan_interactions_in(super::Span::ALL, f)
    }

    /// [`Reader::scan_interactions`] over the rows in `span` only.
    fn scan_interactions_in(&self, span: super::Span, f: &mut dyn FnMut(&super::InteractionRow) -> bool) -> Result<()> {
        super::interaction_rows::scan(self, span, self.pending_rows(super::tables::INTERACTION_ROWS)?, f)
    }

    /// Visits every task as the scan layout keeps it — its narrow row: what the reports
    /// over every task read — in id (creation) order, until `f` returns `false`. One row
    /// is held at a time.
    fn scan_tasks(&self, f: &mut dyn FnMut(&super::TaskRow) -> bool) -> Result<()> {
        self.scan_tasks_in(super::Span::ALL, f)
    }

    /// [`Reader::scan_tasks`] over the rows in `span` only.
    fn scan_tasks_in(&self, span: super::Span, f: &mut dyn FnMut(&super::TaskRow) -> bool) -> Result<()> {
        super::task_rows::scan(self, span, self.pending_rows(super::tables::TASK_ROWS)?, f)
    }

    /// Ids in `index` under `prefix`, in id (creation) order, after `after`, at most `limit`.
    fn ids_by(&self, index: Index, prefix: &[u8], after: Option<RawId>, limit: usize) -> Result<Vec<RawId>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut pending = self.pending(index, prefix).map(|d| d.range((lower, Bound::Unbounded)).peekable());
        let table = index.table();
        let scan = |from: Bound<&[u8]>, to: Bound<&[u8]>, rev: bool, visit: kv::Visit<'_>| {
            self.kv_scan(table, from, to, rev, visit)
        };
        postings::scan(&scan, prefix, after, &mut |id| {
            if let Some(p) = pending.as_mut() {
                while let Some((&d, &add)) = p.peek() {
                    if d > id {
                        break;
                    }
                    if d < id && add {
                        out.push(d);
                        if out.len() >= limit {
                            return false;
                        }
                    }
                    p.next();
                    if d == id {
                        if add {
                            out.push(id);
                        }
                        return out.len() < limit;
                    }
                }
            }
            out.push(id);
            out.len() < limit
        })?;
        if let Some(p) = pending {
            out.extend(p.filter(|(_, add)| **add).map(|(d, _)| *d).take(limit - out.len().min(limit)));
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Entities in `index` under `prefix` (see [`Reader::ids_by`]).
    fn find<E: Entity>(&self, index: Index, prefix: &[u8], after: Option<RawId>, limit: usize) -> Result<Vec<E>> {
        debug_assert!(index.owner().is_none_or(|o| o == E::KIND));
        self.ids_by(index, prefix, after, limit)?.into_iter().map(|id| self.load::<E>(E::Id::from_raw(id))).collect()
    }

    /// Entities of a kind in creation order, after `after`, at most `limit`.
    fn list<E: Entity>(&self, after: Option<E::Id>, limit: usize) -> Result<Vec<E>> {
        let mut out = Vec::new();
        let mut err = None;
        let from = after.map(|a| a.raw().to_bytes());
        let start = from.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(k.as_slice()));
        self.kv_scan(entity_table(E::KIND), start, Bound::Unbounded, false, &mut |k, v| {
            if out.len() >= limit {
                return false;
            }
            match decode::<E>(v, || format!("{} {:?}", E::KIND, RawId::from_bytes(k))) {
                Ok(e) => out.push(e),
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            true
        })?;
        err.map_or(Ok(out), Err)
    }

    /// Visits every entity of a kind in creation order until `f` returns `false`.
    fn for_each<E: Entity>(&self, mut f: impl FnMut(E) -> bool) -> Result<()> {
        let mut err = None;
        self.kv_scan(entity_table(E::KIND), Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| match decode::<E>(
            v,
            || format!("{} {:?}", E::KIND, RawId::from_bytes(k)),
        ) {
            Ok(e) => f(e),
            Err(e) => {
                err = Some(e);
                false
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    /// [`Reader::for_each`] over the records whose ids are in `span` only.
    fn for_each_in<E: Entity>(&self, span: super::Span, mut f: impl FnMut(E) -> bool) -> Result<()> {
        each_in_span(self, entity_table(E::KIND), span, &mut |k, v| {
            Ok(f(decode::<E>(v, || format!("{} {:?}", E::KIND, RawId::from_bytes(k)))?))
        })
    }

    /// The name of every partner whose id is in `span`, in id order, read from its record
    /// without decoding the rest, until `f` returns `false` (reports that name many
    /// partners).
    fn partner_names_in(
        &self,
        span: super::Span,
        f: &mut dyn FnMut(crate::id::PartnerId, String) -> bool,
    ) -> Result<()> {
        use crate::model::Partner;
        each_in_span(self, entity_table(EntityKind::Partner), span, &mut |k, v| {
            let id = RawId::from_bytes(k).ok_or_else(|| crate::Error::Corrupt {
                what: format!("partner key {k:02x?}"),
                message: "not an id".into(),
            })?;
            let name = super::codec::decode_name(v, Partner::NAME_FIELD, || format!("partner {id}"))?;
            Ok(f(crate::id::PartnerId(id), name))
        })
    }

    /// Every entry of an index as `(prefix, id)` pairs (for consistency checks; committed
    /// state only).
    fn index_entries(&self, index: Index) -> Result<Vec<(Vec<u8>, RawId)>> {
        let mut out = Vec::new();
        self.kv_scan(index.table(), Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
            let prefix = &k[..k.len().saturating_sub(16)];
            out.extend(postings::ids(v).map(|id| (prefix.to_vec(), id)));
            true
        })?;
        Ok(out)
    }

    /// The user with this login.
    fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let prefix = crate::model::text_prefix(&[login]);
        Ok(self.find::<User>(Index::UserByLogin, &prefix, None, 1)?.pop())
    }

    /// The whole history of one entity, oldest first: its creation (read from the record,
    /// or from the last state kept by its deletion), every update and the deletion.
    fn audit_of<E: Entity>(&self, id: E::Id) -> Result<Vec<AuditEntry>> {
        let stored = self.audit_entries_of(id.raw())?;
        let created = match self.get::<E>(id)? {
            Some(e) => {
                let m = e.meta();
                Some((m.created_at, m.created_by))
            }
            None => stored.iter().find(|a| a.op == AuditOp::Delete).and_then(|d| {
                let field = |name: &str| d.changes.iter().find(|c| c.field == name).and_then(|c| c.old.clone());
                let at = field("created_at").and_then(|v| serde_json::from_value(v).ok())?;
                let by = field("created_by").and_then(|v| serde_json::from_value(v).ok()).flatten();
                Some((at, by))
            }),
        };
        let mut out = Vec::with_capacity(stored.len() + 1);
        if let Some((at, actor)) = created {
            out.push(AuditEntry {
                id: AuditId(id.raw()),
                at,
                actor,
                entity: EntityRef { kind: E::KIND, id: id.raw() },
                op: AuditOp::Create,
                changes: Vec::new(),
                version: 1,
            });
        }
        out.extend(stored);
        Ok(out)
    }

    /// The stored audit entries (updates and deletes) of one entity, oldest first.
    fn audit_entries_of(&self, id: RawId) -> Result<Vec<AuditEntry>> {
        let prefix = id.to_bytes();
        let ids = {
            let mut ids = Vec::new();
            let end = prefix_end(&prefix);
            self.kv_scan(
                AUDIT_BY_ENTITY,
                Bound::Included(&prefix[..]),
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                false,
                &mut |k, _| {
                    ids.extend(id_suffix(k));
                    true
                },
            )?;
            ids
        };
        ids.into_iter().map(|a| self.audit_entry(AuditId(a))).collect()
    }

    /// One audit entry.
    fn audit_entry(&self, id: AuditId) -> Result<AuditEntry> {
        let bytes = self
            .kv_get(AUDIT, &id.0.to_bytes())?
            .ok_or(Error::Corrupt { what: format!("audit entry {id}"), message: "indexed but missing".into() })?;
        decode(&bytes, || format!("audit entry {id}"))
    }

    /// The stored audit log (updates and deletes) in time order, after `after`, at most
    /// `limit`. Creations are the records themselves: their ids are time-ordered.
    fn audit_log(&self, after: Option<AuditId>, limit: usize) -> Result<Vec<AuditEntry>> {
        let from = after.map(|a| a.0.to_bytes());
        let mut out = Vec::new();
        let mut err = None;
        self.kv_scan(
            AUDIT,
            from.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(&k[..])),
            Bound::Unbounded,
            false,
            &mut |_, v| {
                if out.len() >= limit {
                    return false;
                }
                match decode(v, || "audit entry".to_string()) {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        err = Some(e);
                        return false;
                    }
                }
                true
            },
        )?;
        err.map_or(Ok(out), Err)
    }

    /// The stage history of a deal, step by step.
    fn stage_history(&self, deal: DealId) -> Result<Vec<StageChange>> {
        let mut out = Vec::new();
        let mut err = None;
        let prefix = deal.0.to_bytes();
        let end = prefix_end(&prefix);
        self.kv_scan(
            STAGE_HISTORY,
            Bound::Included(&prefix[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |_, v| match decode::<StageChange>(v, || format!("stage history of deal {deal}")) {
                Ok(c) => {
                    out.push(c);
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            },
        )?;
        err.map_or(Ok(out), Err)
    }

    /// The entity of `kind` an import registered under the external key `key` (`None`
    /// when no live entity has it).
    fn external_key(&self, kind: EntityKind, key: &str) -> Result<Option<RawId>> {
        match self.kv_get(EXTERNAL_KEYS, &external_key(kind, key))?.and_then(|v| RawId::from_bytes(&v)) {
            Some(id) if self.exists(kind, id)? => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// Visits the external keys of the live entities of `kind`, in key order, until `f`
    /// returns `false`.
    fn for_each_external_key(&self, kind: EntityKind, mut f: impl FnMut(&str, RawId) -> bool) -> Result<()> {
        let prefix = external_key(kind, "");
        let end = prefix_end(&prefix);
        let mut from = prefix.clone();
        let mut first = true;
        loop {
            // Read in slices, so that `f` may read the store between them.
            let mut slice: Vec<(Vec<u8>, RawId)> = Vec::new();
            self.kv_scan(
                EXTERNAL_KEYS,
                if first { Bound::Included(&from[..]) } else { Bound::Excluded(&from[..]) },
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                false,
                &mut |k, v| {
                    if let Some(id) = RawId::from_bytes(v) {
                        slice.push((k.to_vec(), id));
                    }
                    slice.len() < 4096
                },
            )?;
            first = false;
            let Some((last, _)) = slice.last() else { return Ok(()) };
            from = last.clone();
            for (k, id) in &slice {
                if self.exists(kind, *id)? && !f(&String::from_utf8_lossy(&k[prefix.len()..]), *id) {
                    return Ok(());
                }
            }
        }
    }

    /// The external keys of one entity, in key order. This scans the keys of its kind:
    /// meant for merges and checks, not for hot paths.
    fn external_keys_of(&self, kind: EntityKind, id: RawId) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.for_each_external_key(kind, |k, of| {
            if of == id {
                out.push(k.to_string());
            }
            true
        })?;
        Ok(out)
    }

    /// The number of steps in a deal's stage history.
    fn stage_steps(&self, deal: DealId) -> Result<u32> {
        let prefix = deal.0.to_bytes();
        let end = prefix_end(&prefix);
        let mut n = 0;
        self.kv_scan(
            STAGE_HISTORY,
            Bound::Included(&prefix[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            true,
            &mut |k, _| {
                n = k[16..].try_into().map(u32::from_be_bytes).unwrap_or(0) + 1;
                false
            },
        )?;
        Ok(n)
    }

    /// Visits every step of every deal's history, deal by deal in creation order, until `f`
    /// returns `false`.
    fn for_each_stage_change(&self, mut f: impl FnMut(StageChange) -> bool) -> Result<()> {
        let mut err = None;
        self.kv_scan(
            STAGE_HISTORY,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            &mut |_, v| match decode::<StageChange>(v, || "stage history".to_string()) {
                Ok(c) => f(c),
                Err(e) => {
                    err = Some(e);
                    false
                }
            },
        )?;
        err.map_or(Ok(()), Err)
    }

    /// A user's tasks in one status, oldest first.
    fn tasks_of(&self, executor: UserId, status: TaskStatus, limit: usize) -> Result<Vec<Task>> {
        self.find(Index::TaskByExecutor, &crate::model::task_executor_prefix(executor, status), None, limit)
    }

    /// The tasks of a deal, oldest first.
    fn tasks_of_deal(&self, deal: DealId) -> Result<Vec<Task>> {
        self.find(Index::TaskByDeal, &deal.0.to_bytes(), None, usize::MAX)
    }

    /// Open tasks due before `now`, the most overdue first.
    fn overdue_tasks(&self, now: Timestamp, limit: usize) -> Result<Vec<Task>> {
        let end = crate::model::task_due_prefix(now);
        let mut ids = Vec::new();
        self.kv_scan(Index::TaskOpenByDue.table(), Bound::Unbounded, Bound::Excluded(&end), false, &mut |_, v| {
            ids.extend(postings::ids(v));
            ids.len() < limit
        })?;
        ids.truncate(limit);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.load::<Task>(TaskId(id))?);
        }
        Ok(out)
    }

    /// The stored content with this hash.
    /// Visits the stored content with this hash chunk by chunk (up to 1 MiB each), without
    /// holding all of it; `false` from `visit` stops. Returns whether the content exists.
    fn blob_chunks(&self, hash: &ContentHash, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool> {
        let mut found = false;
        let end = prefix_end(&hash.0);
        self.kv_scan(
            BLOBS,
            Bound::Included(&hash.0[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |_, v| {
                found = true;
                visit(v)
            },
        )?;
        Ok(found)
    }

    fn blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>> {
        let mut out: Option<Vec<u8>> = None;
        let end = prefix_end(&hash.0);
        self.kv_scan(
            BLOBS,
            Bound::Included(&hash.0[..]),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            false,
            &mut |_, v| {
                out.get_or_insert_with(Vec::new).extend_from_slice(v);
                true
            },
        )?;
        Ok(out)
    }
}

/// What [`each_in_span`] hands each record's key and value to: `false` stops, an error
/// stops with it.
type VisitRecord<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Hands the key and value of every record of `table` whose id is in `span` to `visit`, in
/// id order, until it answers `false` or fails (then with its error).
fn each_in_span(
    r: &(impl Reader + ?Sized),
    table: Table,
    span: super::Span,
    visit: &mut VisitRecord<'_>,
) -> Result<()> {
    if let (Some(from), Some(to)) = (span.from, span.to) {
        if from >= to {
            return Ok(());
        }
    }
    let (from, to) = (span.from.map(RawId::to_bytes), span.to.map(RawId::to_bytes));
    let lower = from.as_ref().map_or(Bound::Unbounded, |b| Bound::Included(&b[..]));
    let upper = to.as_ref().map_or(Bound::Unbounded, |b| Bound::Excluded(&b[..]));
    let mut err = None;
    r.kv_scan(table, lower, upper, false, &mut |k, v| match visit(k, v) {
        Ok(go) => go,
        Err(e) => {
            err = Some(e);
            false
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// A read-only snapshot: sees the state committed when it was taken, for as long as it lives.
pub struct Snapshot {
    pub(super) kv: Box<dyn KvRead>,
    pub(super) settings: Arc<Settings>,
    pub(super) clock: Arc<dyn Clock>,
}

impl Snapshot {
    /// The number of steps in the stage history of all deals.
    pub(crate) fn stage_history_len(&self) -> Result<u64> {
        Ok(self.kv.len(STAGE_HISTORY)?)
    }
}

impl Reader for Snapshot {
    fn snapshot(&self) -> Option<&Snapshot> {
        Some(self)
    }

    fn count(&self, kind: EntityKind) -> Result<u64> {
        Ok(self.kv.len(entity_table(kind))?)
    }

    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(t, key)?)
    }
    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        Ok(self.kv.get_decoded(t, key, decode)?)
    }
    fn kv_contains(&self, t: Table, key: &[u8]) -> Result<bool> {
        Ok(self.kv.contains(t, key)?)
    }
    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()> {
        Ok(self.kv.scan(t, from, to, reverse, visit)?)
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
