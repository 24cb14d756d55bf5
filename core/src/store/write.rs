//! The write transaction: `WriteTxn`, its create, update and delete, savepoints and
//! `attempt`, the stage history appends, index changes and audit entries, and the commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::codec::encode;
use super::kv::{Changes, Durability, KvWrite};
use super::postings;
use super::tables::{entity_table, AUDIT, AUDIT_BY_ENTITY, BLOBS, META, STAGE_HISTORY};
use super::{schema, Reader, Store};
use crate::audit::{self, AuditEntry, AuditOp};
use crate::config::Settings;
use crate::id::{AuditId, DealId, RawId, TypedId, UserId};
use crate::model::{Cx, Entity, EntityKind, EntityRef, Index, IndexEntry, Meta, StageChange};
use crate::time::Timestamp;
use crate::{Error, Result};

/// The write transaction. Each operation checks everything before it changes anything, so
/// a refused operation leaves the transaction as it was; dropping the transaction without
/// [`WriteTxn::commit`] writes nothing.
pub struct WriteTxn<'s> {
    pub(super) store: &'s Store,
    pub(super) kv: Box<dyn KvWrite>,
    pub(super) changes: Changes,
    pub(super) actor: Option<UserId>,
    /// The one role the actor acts in (an API token's), when not all of theirs.
    pub(super) acting_role: Option<crate::model::Role>,
    /// The last sequence number handed out.
    pub(super) seq: u64,
    /// Whether `seq` moved and must be stored at commit.
    pub(super) seq_used: bool,
    pub(super) durability: Durability,
    /// Index changes, applied to the posting chunks at commit.
    pub(super) postings: BTreeMap<(Index, Vec<u8>), postings::Delta>,
    /// Open savepoints; while there are any, index changes are recorded in `postings_undo`.
    pub(super) savepoints: u32,
    pub(super) postings_undo: Vec<PostingUndo>,
    /// Set while the process engine writes a deal's stage and status.
    pub(super) engine_writes_state: bool,
    /// The instant writes are stamped with, while an engine operation runs.
    pub(super) now: Option<Timestamp>,
    /// Records found in the committed state the transaction started from, which does not
    /// change under it: reference checks of a bulk load ask about the same few over and over.
    pub(super) in_base: std::cell::RefCell<std::collections::HashSet<(usize, RawId)>>,
    /// Set while `attach` creates the attachment record for content it stores.
    pub(super) attaching: bool,
}

/// An index change before it was overwritten: the list, the id, and the earlier pending
/// change of that id (`None`: untouched).
type PostingUndo = ((Index, Vec<u8>), RawId, Option<bool>);

/// Where [`WriteTxn::rollback`] returns to.
#[must_use]
pub(crate) struct Savepoint {
    changes: usize,
    postings: usize,
    seq: u64,
    seq_used: bool,
}

impl WriteTxn<'_> {
    /// How the commit is flushed (default: immediately durable).
    pub fn set_durability(&mut self, d: Durability) {
        self.durability = d;
    }

    /// Makes `actor` the acting user of what follows in the transaction (loaders use it to
    /// record who took each step of many deals in one transaction).
    pub fn set_actor(&mut self, actor: Option<UserId>) {
        self.actor = actor;
    }

    /// Limits what the process engine lets the actor do to one of their roles (an API token
    /// acts in one role); `None`: all of the user's roles.
    pub fn set_acting_role(&mut self, role: Option<crate::model::Role>) {
        self.acting_role = role;
    }

    /// The role the actor acts in, if limited to one.
    pub fn acting_role(&self) -> Option<crate::model::Role> {
        self.acting_role
    }

    /// The acting user recorded in the audit log.
    pub fn actor(&self) -> Option<UserId> {
        self.actor
    }

    /// The settings writes are validated against.
    pub fn settings_arc(&self) -> Arc<Settings> {
        self.store.settings.clone()
    }

    /// The current instant of the store's clock.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(|| self.store.clock.now())
    }

    /// Makes `now` the instant of everything written until it is unpinned (`None`); returns
    /// the previous pin. The process engine stamps all writes of one operation alike.
    pub(crate) fn pin_now(&mut self, now: Option<Timestamp>) -> Option<Timestamp> {
        std::mem::replace(&mut self.now, now)
    }

    /// Commits everything written in the transaction.
    pub fn commit(mut self) -> Result<()> {
        self.write_funnel_changes()?;
        self.write_row_changes()?;
        if self.seq_used {
            self.changes.put(META, schema::ID_SEQ.to_vec(), self.seq.to_be_bytes().to_vec());
        }
        for ((index, prefix), delta) in &self.postings {
            postings::apply(self.kv.base(), *index, prefix, delta, &mut self.changes)?;
        }
        // Counted before the backend lets the next writer in, so that a writer never sees
        // a commit it cannot count (a failed commit counts too: that only makes a caller
        // look again).
        self.store.commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.kv.commit(self.changes, self.durability)?)
    }

    /// Runs `f`; if it fails, everything it wrote is taken back, so the transaction is as it
    /// was before the call (and may go on and commit).
    pub fn attempt<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let sp = self.savepoint();
        match f(self) {
            Ok(r) => {
                self.release(sp);
                Ok(r)
            }
            Err(e) => {
                self.rollback(sp);
                Err(e)
            }
        }
    }

    pub(crate) fn savepoint(&mut self) -> Savepoint {
        self.savepoints += 1;
        Savepoint {
            changes: self.changes.mark(),
            postings: self.postings_undo.len(),
            seq: self.seq,
            seq_used: self.seq_used,
        }
    }

    pub(crate) fn release(&mut self, _sp: Savepoint) {
        self.savepoints -= 1;
        if self.savepoints == 0 {
            self.changes.stop_recording();
            self.postings_undo.clear();
        }
    }

    pub(crate) fn rollback(&mut self, sp: Savepoint) {
        self.changes.rollback(sp.changes);
        while self.postings_undo.len() > sp.postings {
            let (list, id, old) = self.postings_undo.pop().expect("longer than the savepoint");
            let delta = self.postings.entry(list.clone()).or_default();
            match old {
                Some(add) => {
                    delta.insert(id, add);
                }
                None => {
                    delta.remove(&id);
                    if delta.is_empty() {
                        self.postings.remove(&list);
                    }
                }
            }
        }
        self.seq = sp.seq;
        self.seq_used = sp.seq_used;
        self.release(sp);
    }

    /// Runs `f` with the process engine's permission to change a deal's stage and status.
    pub(crate) fn as_engine<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let was = std::mem::replace(&mut self.engine_writes_state, true);
        let r = f(self);
        self.engine_writes_state = was;
        r
    }

    /// Appends step `change.step` of a deal's stage history, which the caller knows to be
    /// the next one (the deal record counts its steps).
    pub(crate) fn append_counted_stage_change(&mut self, change: &StageChange) {
        self.changes.put(STAGE_HISTORY, history_key(change.deal, change.step), encode(change));
    }

    /// Appends the next step of a deal's stage history; `change.step` must be the next
    /// number.
    pub(crate) fn append_stage_change(&mut self, change: &StageChange) -> Result<()> {
        let next = self.stage_steps(change.deal)?;
        if change.step != next {
            return Err(Error::NotAllowed(format!(
                "deal {}: stage history step {} cannot be written, the next one is {next}",
                change.deal, change.step
            )));
        }
        self.changes.put(STAGE_HISTORY, history_key(change.deal, change.step), encode(change));
        Ok(())
    }

    /// The id the next creation at `at` gets (not handed out yet).
    fn peek_id(&self, at: Timestamp) -> RawId {
        RawId::new(at.0, self.seq + 1)
    }

    /// Hands out an id: the next sequence number at `at`.
    fn next_id(&mut self, at: Timestamp) -> RawId {
        self.seq += 1;
        self.seq_used = true;
        RawId::new(at.0, self.seq)
    }

    /// Creates `entity`: assigns id, version 1 and instants, checks it, writes it with its
    /// index entries and an audit entry. Returns the stored form.
    pub fn create<E: Entity>(&mut self, entity: E) -> Result<E> {
        self.create_inner(entity, None)
    }

    /// Creates an entity brought in from elsewhere with its original creation instant.
    pub(crate) fn create_imported<E: Entity>(&mut self, entity: E, created_at: Timestamp) -> Result<E> {
        self.create_inner(entity, Some(created_at))
    }

    fn create_inner<E: Entity>(&mut self, mut entity: E, created_at: Option<Timestamp>) -> Result<E> {
        if E::CREATED_BY_ATTACH && !self.attaching {
            return Err(Error::NotAllowed(
                "attachments are created by attach or attach_from, which store their content".into(),
            ));
        }
        let now = self.now();
        let created = created_at.unwrap_or(now);
        let id = self.peek_id(created);
        let actor = self.actor;
        entity.set_meta(Meta {
            id,
            version: 1,
            created_at: created,
            updated_at: now,
            created_by: actor,
            updated_by: actor,
        });
        entity.stamp(now);
        self.check(&mut entity, None)?;
        let entries = entries_of(&entity);
        self.check_unique::<E>(&entries, id)?;
        let first_step = if self.engine_writes_state {
            None
        } else {
            let settings = self.store.settings.clone();
            entity.created_outside_engine(Cx { rules: &*settings }, self.actor)?
        };
        // Everything is checked: from here on nothing can fail.
        let taken = self.next_id(created);
        debug_assert_eq!(taken, id);
        let kept = entity.clone();
        self.changes.put_decoded(entity_table(E::KIND), id.to_bytes().to_vec(), encode(&entity), || Arc::new(kept));
        if let Some(step) = first_step {
            self.changes.put(STAGE_HISTORY, history_key(step.deal, 0), encode(&step));
        }
        for e in entries {
            self.index_change(e, id, true);
        }
        // The create is recorded by the record itself (id, created_at, created_by); see
        // `Reader::audit_of`.
        Ok(entity)
    }

    /// Replaces the stored entity with `entity`, whose `version` must be the stored one.
    /// A write that changes nothing is not recorded and keeps the version.
    pub fn update<E: Entity>(&mut self, mut entity: E) -> Result<E> {
        let meta = entity.meta();
        let old: Arc<E> =
            self.get_shared(entity.id())?.ok_or(Error::NotFound { kind: E::KIND, id: entity.id().raw() })?;
        let old: &E = old.as_ref();
        let old_meta = old.meta();
        if old_meta.version != meta.version {
            return Err(Error::Conflict { kind: E::KIND, id: meta.id, given: meta.version, stored: old_meta.version });
        }
        let now = self.now();
        entity.set_meta(Meta {
            id: meta.id,
            version: old_meta.version + 1,
            created_at: old_meta.created_at,
            updated_at: now,
            created_by: old_meta.created_by,
            updated_by: self.actor,
        });
        entity.stamp(now);
        old.follow_change(&mut entity, self.engine_writes_state);
        old.check_change(&entity, self.engine_writes_state)?;
        self.check(&mut entity, Some(old))?;
        let record = encode(&entity);
        let changes = audit::diff_records(old, &encode(old), &entity, &record);
        // The engine's own bookkeeping (a step count) is not audited, but is written.
        if changes.is_empty() && !self.engine_writes_state {
            return Ok(old.clone());
        }
        let old_entries = entries_of(old);
        let new_entries = entries_of(&entity);
        let added: Vec<&IndexEntry> = new_entries.iter().filter(|e| !old_entries.contains(e)).collect();
        self.check_unique::<E>(&added.iter().map(|e| (*e).clone()).collect::<Vec<_>>(), meta.id)?;
        let added: Vec<IndexEntry> = added.into_iter().cloned().collect();
        for e in old_entries.into_iter().filter(|e| !new_entries.contains(e)) {
            self.index_change(e, meta.id, false);
        }
        for e in added {
            self.index_change(e, meta.id, true);
        }
        let kept = entity.clone();
        self.changes.put_decoded(entity_table(E::KIND), meta.id.to_bytes().to_vec(), record, || Arc::new(kept));
        let version = entity.meta().version;
        if !changes.is_empty() {
            self.audit(now, E::KIND, meta.id, AuditOp::Update, changes, version);
        }
        Ok(entity)
    }

    /// Deletes the entity if `version` is the stored one and nothing refers to it.
    pub fn delete<E: Entity>(&mut self, id: E::Id, version: u64) -> Result<()> {
        let raw = id.raw();
        if let Some(why) = E::NEVER_DELETED {
            return Err(Error::NotAllowed(format!("{} {raw} cannot be deleted: {why}", E::KIND)));
        }
        let old: E = self.load(id)?;
        let stored = old.meta().version;
        if stored != version {
            return Err(Error::Conflict { kind: E::KIND, id: raw, given: version, stored });
        }
        self.check_unreferenced(E::KIND, raw)?;
        let history = if E::HAS_HISTORY { self.stage_steps(DealId(raw))? } else { 0 };
        old.check_delete(self.engine_writes_state, history).map_err(Error::NotAllowed)?;
        let blob_keys = match old.content() {
            Some(hash) => self.blob_keys_released(hash, raw)?,
            None => Vec::new(),
        };
        // Everything is checked: from here on nothing can fail.
        for e in entries_of(&old) {
            self.index_change(e, raw, false);
        }
        self.changes.delete(entity_table(E::KIND), raw.to_bytes().to_vec());
        if E::HAS_HISTORY && history == 1 {
            self.changes.delete(STAGE_HISTORY, history_key(DealId(raw), 0));
        }
        for k in blob_keys {
            self.changes.delete(BLOBS, k);
        }

        let now = self.now();
        self.audit(now, E::KIND, raw, AuditOp::Delete, audit::snapshot(&to_json(&old)), stored);
        Ok(())
    }

    fn index_change(&mut self, entry: IndexEntry, id: RawId, add: bool) {
        let list = (entry.index, entry.prefix);
        if self.savepoints > 0 {
            let old = self.postings.get(&list).and_then(|d| d.get(&id).copied());
            self.postings_undo.push((list.clone(), id, old));
        }
        self.postings.entry(list).or_default().insert(id, add);
    }

    fn audit(
        &mut self,
        at: Timestamp,
        kind: EntityKind,
        id: RawId,
        op: AuditOp,
        changes: Vec<audit::FieldChange>,
        version: u64,
    ) {
        let audit_id = self.next_id(at);
        let entry = AuditEntry {
            id: AuditId(audit_id),
            at,
            actor: self.actor,
            entity: EntityRef { kind, id },
            op,
            changes,
            version,
        };
        self.changes.put(AUDIT, audit_id.to_bytes().to_vec(), encode(&entry));
        let mut k = id.to_bytes().to_vec();
        k.extend_from_slice(&audit_id.to_bytes());
        self.changes.put(AUDIT_BY_ENTITY, k, Vec::new());
    }
}

/// The key of step `step` of a deal's stage history.
fn history_key(deal: DealId, step: u32) -> Vec<u8> {
    let mut k = deal.0.to_bytes().to_vec();
    k.extend_from_slice(&step.to_be_bytes());
    k
}

fn to_json<E: Entity>(e: &E) -> serde_json::Value {
    serde_json::to_value(e).expect("entities always serialize")
}

/// The index entries of an entity, including those of its custom reference fields.
pub(super) fn entries_of<E: Entity>(entity: &E) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    entity.index_entries(&mut out);
    if let Some(values) = entity.custom() {
        for v in values.values() {
            if let crate::model::CustomValue::Ref(id) = v {
                out.push(IndexEntry { index: Index::CustomRef, prefix: id.to_bytes().to_vec() });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
