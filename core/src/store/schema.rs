//! Schema facts kept in the `meta` table, recognizing crmkit databases, and migrations —
//! written against the key-value interface, so they hold for every backend.
//!
//! `meta` holds `format` = `crmkit`, `schema_version` (u32, big-endian) and `id_seq` (u64,
//! big-endian, the last sequence number handed out). A backend with no data at all becomes a
//! new database. Otherwise opening checks, in order: the `meta` table's `format`, and the
//! schema version; an older version runs the migrations in [`MIGRATIONS`] one by one, each in
//! its own transaction. (What is about a file — is it a redb file at all — the file's
//! backend checks before.)

use super::kv::KvRead;
use super::tables::{all_tables, entity_table, AUDIT, AUDIT_BY_ENTITY, META};
use super::{postings, rows, DealRow, DocumentRow, InteractionRow, Store, TaskRow, WriteTxn};
use crate::id::{RawId, TypedId, UserId};
use crate::model::{Entity, EntityKind};
use crate::{Error, Result};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 18;

const FORMAT: &[u8] = b"format";
const FORMAT_VALUE: &[u8] = b"crmkit";
const VERSION: &[u8] = b"schema_version";
pub(super) const ID_SEQ: &[u8] = b"id_seq";
/// The instant of the latest step any deal's history has had (i64 ms, big-endian): see
/// `deal_heads.rs`.
pub(super) const LATEST_STEP: &[u8] = b"latest_step_at";

/// A step from schema version `n` to `n + 1` (index `n - 1`).
enum Migration {
    /// Writes everything in one transaction, which raises the version when it commits.
    InOne(fn(&mut WriteTxn<'_>) -> Result<()>),
    /// Writes more than one transaction should hold until its commit: commits as it goes,
    /// and returns the transaction, still open, that raises the version. Starts over from
    /// the beginning when a run stopped half way is run again.
    Batched(for<'s> fn(&'s Store) -> Result<WriteTxn<'s>>),
}

/// Migrations from each older schema version; version 1 is the first released schema.
const MIGRATIONS: &[Migration] = &[
    Migration::InOne(v1_to_v2),
    Migration::InOne(rebuild_indexes),
    Migration::InOne(v3_to_v4),
    Migration::InOne(v4_to_v5),
    Migration::InOne(v5_to_v6),
    Migration::InOne(v6_to_v7),
    Migration::InOne(v7_to_v8),
    Migration::Batched(v8_to_v9),
    Migration::InOne(v9_to_v10),
    Migration::Batched(v10_to_v11),
    Migration::Batched(v11_to_v12),
    Migration::Batched(v12_to_v13),
    Migration::Batched(v13_to_v14),
    Migration::Batched(v14_to_v15),
    Migration::InOne(v15_to_v16),
    Migration::InOne(v16_to_v17),
    Migration::InOne(v17_to_v18),
];

/// Rebuilds every secondary index from the records (schema 3 keeps indexes as posting
/// chunks; before, one key per entry).
fn rebuild_indexes(tx: &mut WriteTxn<'_>) -> Result<()> {
    use std::ops::Bound;

    use crate::store::{Index, Reader};

    for index in Index::ALL {
        let mut keys = Vec::new();
        tx.kv_scan(index.table(), Bound::Unbounded, Bound::Unbounded, false, &mut |k, _| {
            keys.push(k.to_vec());
            true
        })?;
        for k in keys {
            tx.changes.delete(index.table(), k);
        }
    }
    for ((index, prefix), ids) in expected_postings(tx)? {
        postings::write_fresh(index, &prefix, &ids, &mut tx.changes);
    }
    Ok(())
}

/// Every posting list as the records say it must be: sorted ids per `(index, prefix)`.
pub(super) fn expected_postings(r: &impl crate::store::Reader) -> Result<postings::Lists> {
    let mut lists = postings::Lists::new();
    for kind in EntityKind::ALL {
        for (key, mut ids) in expected_postings_of(r, kind, &mut || {})? {
            lists.entry(key).or_default().append(&mut ids);
        }
    }
    for ids in lists.values_mut() {
        ids.sort();
    }
    Ok(lists)
}

/// The posting-list entries the records of one kind make, sorted ids per `(index, prefix)`;
/// `each` is called once per record read.
pub(super) fn expected_postings_of(
    r: &impl crate::store::Reader,
    kind: EntityKind,
    each: &mut dyn FnMut(),
) -> Result<postings::Lists> {
    use postings::Lists;
    fn collect<E: Entity>(r: &impl crate::store::Reader, lists: &mut Lists, each: &mut dyn FnMut()) -> Result<()> {
        r.for_each::<E>(|e| {
            for entry in super::entries_of(&e) {
                lists.entry((entry.index, entry.prefix)).or_default().push(e.id().raw());
            }
            each();
            true
        })
    }
    let mut lists = Lists::new();
    crate::with_kind!(kind, E => collect::<E>(r, &mut lists, each))?;
    for ids in lists.values_mut() {
        ids.sort();
    }
    Ok(lists)
}

/// Schema 5 adds the external keys of imported records, in two new tables that start empty
/// (the store creates missing tables when it opens a file).
fn v4_to_v5(_tx: &mut WriteTxn<'_>) -> Result<()> {
    Ok(())
}

/// Schema 6 adds a kind of custom value, `enum_set` (the values of an enum field declared
/// with `multiple = true`). Stored records do not change; the version is raised so that an
/// older build refuses the file ("upgrade crmkit") instead of failing on such a value.
fn v5_to_v6(_tx: &mut WriteTxn<'_>) -> Result<()> {
    Ok(())
}

/// Schema 7 keeps a deal's score (`score`) and whether its probability was set by hand
/// (`probability_manual`). Every deal is written in the new form, without a score; an open
/// deal whose probability is not the one its stage gives was set by someone (a user, an
/// import, a rule) and is flagged manual, so that a scoring model bound later does not
/// replace it.
fn v6_to_v7(tx: &mut WriteTxn<'_>) -> Result<()> {
    use crate::model::Deal;
    use crate::store::Reader;
    let mut deals = Vec::new();
    tx.for_each::<Deal>(|d| {
        deals.push(d);
        true
    })?;
    let settings = tx.settings_arc();
    for mut d in deals {
        let stage_default = settings
            .process_kind(&d.kind)
            .and_then(|k| d.stage.as_deref().and_then(|s| k.stage(s)))
            .and_then(|s| s.probability);
        d.probability_manual = !d.status.is_closed() && d.probability.is_some() && d.probability != stage_default;
        d.score = None;
        tx.changes.put(entity_table(crate::model::EntityKind::Deal), d.id.0.to_bytes().to_vec(), super::encode(&d));
    }
    Ok(())
}

/// Schema 8 keeps the funnel totals (table `funnel_totals`), brought up to date by every
/// commit that writes deals; a file from before gets them computed once from its deals and
/// their stage histories.
fn v7_to_v8(tx: &mut WriteTxn<'_>) -> Result<()> {
    tx.rebuild_funnel_totals()
}

/// Schema 9 keeps the scan layout (table `deal_rows`): one narrow row per deal with its
/// stage history, brought up to date by every commit that writes deals; a file from before
/// gets every row written once from its deals and their stage histories, in batches like
/// [`v11_to_v12`].
fn v8_to_v9(store: &Store) -> Result<WriteTxn<'_>> {
    use super::tables::DEAL_ROWS;
    use crate::model::Deal;
    use crate::store::Reader;
    let encode = |tx: &WriteTxn<'_>, d: &Deal| Ok(Some(DealRow::encode(d, &tx.stage_history(d.id)?)));
    rows::build_in_batches::<Deal>(store, store.write(None)?, DEAL_ROWS, &encode, rows::BATCH)
}

/// Schema 10 keeps, beside the funnel totals of each manager, each kind's rollup lines (the
/// sum over every manager, keys starting with a 0 byte); a file from before gets its totals
/// computed again, rollup lines included.
fn v9_to_v10(tx: &mut WriteTxn<'_>) -> Result<()> {
    tx.rebuild_funnel_totals()
}

/// Schema 11 keeps the scan layout of documents (table `document_rows`): one narrow row per
/// document, brought up to date by every commit that writes documents; a file from before
/// gets every row written once from its documents, in batches like [`v11_to_v12`].
fn v10_to_v11(store: &Store) -> Result<WriteTxn<'_>> {
    use super::tables::DOCUMENT_ROWS;
    use crate::model::Document;
    let encode = |_: &WriteTxn<'_>, d: &Document| Ok(Some(DocumentRow::encode(d)));
    rows::build_in_batches::<Document>(store, store.write(None)?, DOCUMENT_ROWS, &encode, rows::BATCH)
}

/// Schema 12 keeps the scan layout of interactions and tasks (tables `interaction_rows` and
/// `task_rows`): one narrow row per record, brought up to date by every commit that writes
/// them; a file from before gets every row written once from its records — in batches of
/// [`rows::BATCH`], each committed before the next is read, since a file may hold millions
/// of interactions.
fn v11_to_v12(store: &Store) -> Result<WriteTxn<'_>> {
    use super::tables::{INTERACTION_ROWS, TASK_ROWS};
    use crate::model::{Interaction, Task};
    let tx = store.write(None)?;
    let interaction = |_: &WriteTxn<'_>, i: &Interaction| Ok(Some(InteractionRow::encode(i)));
    let task = |_: &WriteTxn<'_>, t: &Task| Ok(Some(TaskRow::encode(t)));
    let tx = rows::build_in_batches::<Interaction>(store, tx, INTERACTION_ROWS, &interaction, rows::BATCH)?;
    rows::build_in_batches::<Task>(store, tx, TASK_ROWS, &task, rows::BATCH)
}

/// Schema 13 keeps the revenue rows (table `shipment_rows`): the document row of every
/// completed shipment, brought up to date by every commit that writes documents; a file
/// from before gets them written once from its documents, in batches like [`v11_to_v12`].
fn v12_to_v13(store: &Store) -> Result<WriteTxn<'_>> {
    use super::tables::SHIPMENT_ROWS;
    use crate::model::Document;
    let revenue = |_: &WriteTxn<'_>, d: &Document| Ok(super::shipment_rows::row(d));
    rows::build_in_batches::<Document>(store, store.write(None)?, SHIPMENT_ROWS, &revenue, rows::BATCH)
}

/// Schema 14 keeps the deal heads (table `deal_heads`): each deal's head, derived from its
/// scan row by every commit that writes the row, and in `meta` the instant of the latest
/// step; a file from before gets them derived once from its stored scan rows (which
/// `crmkit check` holds equal to the records), in batches like [`v11_to_v12`].
fn v13_to_v14(store: &Store) -> Result<WriteTxn<'_>> {
    use super::tables::{DEAL_HEADS, DEAL_ROWS};
    let latest = std::cell::Cell::new(None);
    let derive = |rows: &rows::PendingRows| {
        let (heads, last) = super::deal_heads::heads_and_latest(rows)?;
        latest.set(latest.get().max(last));
        Ok(heads)
    };
    let mut tx = rows::derive_in_batches(store, store.write(None)?, DEAL_ROWS, DEAL_HEADS, &derive, rows::BATCH)?;
    super::deal_heads::raise_latest_step(&mut tx, latest.get())?;
    Ok(tx)
}

/// Schema 15 keeps the deals' documents (table `deal_documents`): each deal's documents in
/// a narrow row, brought up to date by every commit that writes documents; a file from
/// before gets them written once from the documents' records, deal by deal, in batches
/// like [`v11_to_v12`].
fn v14_to_v15(store: &Store) -> Result<WriteTxn<'_>> {
    super::deal_documents::build(store, store.write(None)?)
}

/// Schema 16 adds loyalty programs, cards and their ledgers (tables of their own, empty in a
/// file from before) and a document's loyalty card, which records from before lack: they
/// read as none. Nothing is rewritten.
fn v15_to_v16(_tx: &mut WriteTxn<'_>) -> Result<()> {
    Ok(())
}

/// Schema 17 adds claims (a table of their own, empty in a file from before) and a task's
/// claim, which tasks from before lack: they read as none. Nothing is rewritten.
fn v16_to_v17(_tx: &mut WriteTxn<'_>) -> Result<()> {
    Ok(())
}

/// Schema 18 indexes contact persons by their (normalized) phone numbers: the index is
/// written from the contacts' records.
fn v17_to_v18(tx: &mut WriteTxn<'_>) -> Result<()> {
    use crate::store::Index;
    for ((index, prefix), ids) in expected_postings_of(tx, EntityKind::Contact, &mut || {})? {
        if index == Index::ContactByPhone {
            postings::write_fresh(index, &prefix, &ids, &mut tx.changes);
        }
    }
    Ok(())
}

/// Schema 4 adds the stage history of deals (and tasks, which start empty). Deals from an
/// older file get the history their record tells: the creation in the current stage, and
/// the hold or the close. The steps are marked imported: their times are reconstructed.
fn v3_to_v4(tx: &mut WriteTxn<'_>) -> Result<()> {
    use crate::model::{Deal, DealStatus, How, StageChange};
    use crate::store::Reader;

    let mut deals = Vec::new();
    tx.for_each::<Deal>(|d| {
        deals.push(d);
        true
    })?;
    for mut d in deals {
        d.history_steps = if d.status == DealStatus::InProgress { 1 } else { 2 };
        tx.changes.put(
            super::tables::entity_table(crate::model::EntityKind::Deal),
            d.id.0.to_bytes().to_vec(),
            super::encode(&d),
        );
        let mut step = StageChange {
            deal: d.id,
            step: 0,
            at: d.created_at,
            actor: d.created_by,
            how: How::Create,
            from_stage: None,
            to_stage: d.stage.clone(),
            from_status: None,
            to_status: DealStatus::InProgress,
            dwell_ms: None,
            note: None,
            imported: true,
        };
        tx.append_stage_change(&step)?;
        let (how, at) = match d.status {
            DealStatus::InProgress => continue,
            DealStatus::OnHold => (How::Hold, d.updated_at),
            DealStatus::Won => (How::Won, d.closed_at.unwrap_or(d.updated_at)),
            DealStatus::Lost => (How::Lost, d.closed_at.unwrap_or(d.updated_at)),
        };
        step.step = 1;
        step.at = at;
        step.actor = d.updated_by;
        step.how = how;
        step.from_stage = d.stage.clone();
        step.from_status = Some(DealStatus::InProgress);
        step.to_status = d.status;
        step.dwell_ms = d.status.is_closed().then(|| at.0 - d.created_at.0);
        step.note = d.loss_reason.clone();
        tx.append_stage_change(&step)?;
    }
    Ok(())
}

/// Schema 2 keeps who created and last changed an entity in the record itself
/// (`created_by`, `updated_by`) instead of writing an audit entry per creation, and writes
/// records as compact arrays. Moves the actors of the stored audit entries into the records
/// and drops the creation entries.
fn v1_to_v2(tx: &mut WriteTxn<'_>) -> Result<()> {
    use std::collections::BTreeMap;

    use crate::audit::{AuditEntry, AuditOp};
    use crate::model::EntityRef;
    use crate::store::Reader;

    let log: Vec<AuditEntry> = tx.audit_log(None, usize::MAX)?;
    let mut actors: BTreeMap<EntityRef, (Option<UserId>, Option<UserId>)> = BTreeMap::new();
    for entry in &log {
        let slot = actors.entry(entry.entity).or_default();
        if entry.op == AuditOp::Create {
            slot.0 = entry.actor;
        }
        slot.1 = entry.actor;
        if entry.op == AuditOp::Create {
            tx.changes.delete(AUDIT, entry.id.0.to_bytes().to_vec());
            let mut k = entry.entity.id.to_bytes().to_vec();
            k.extend_from_slice(&entry.id.0.to_bytes());
            tx.changes.delete(AUDIT_BY_ENTITY, k);
        }
    }
    for (entity, (created_by, updated_by)) in actors {
        if tx.exists(entity.kind, entity.id)? {
            crate::with_kind!(entity.kind, E => set_actors::<E>(tx, entity.id, created_by, updated_by))?;
            continue;
        }
        // A deleted entity: its creator goes into the last state its deletion kept.
        if let Some(mut delete) = log.iter().find(|e| e.entity == entity && e.op == AuditOp::Delete).cloned() {
            delete.changes.push(crate::audit::FieldChange {
                field: "created_by".into(),
                old: Some(serde_json::to_value(created_by).expect("ids serialize")),
                new: None,
            });
            tx.changes.put(AUDIT, delete.id.0.to_bytes().to_vec(), super::encode(&delete));
        }
    }
    Ok(())
}

fn set_actors<E: Entity>(
    tx: &mut WriteTxn<'_>,
    id: RawId,
    created_by: Option<UserId>,
    updated_by: Option<UserId>,
) -> Result<()> {
    use crate::store::Reader;
    if let Some(mut e) = tx.get::<E>(E::Id::from_raw(id))? {
        let mut m = e.meta();
        m.created_by = created_by;
        m.updated_by = updated_by;
        e.set_meta(m);
        tx.changes.put(entity_table(E::KIND), id.to_bytes().to_vec(), super::encode(&e));
    }
    Ok(())
}

fn initialize(store: &Store) -> Result<()> {
    let mut tx = store.write(None)?;
    tx.changes.put(META, FORMAT.to_vec(), FORMAT_VALUE.to_vec());
    tx.changes.put(META, VERSION.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec());
    tx.changes.put(META, ID_SEQ.to_vec(), 0u64.to_be_bytes().to_vec());
    tx.commit()
}

/// Sets up a new database in an empty backend; otherwise checks that the backend holds a
/// crmkit database and migrates an older schema.
pub(super) fn prepare(store: &Store) -> Result<()> {
    let r = store.backend.read()?;
    let mut empty = true;
    for t in all_tables() {
        if r.len(t)? > 0 {
            empty = false;
            break;
        }
    }
    if empty {
        drop(r);
        return initialize(store);
    }
    if r.get(META, FORMAT)?.as_deref() != Some(FORMAT_VALUE) {
        return Err(Error::NotCrmkit {
            database: store.describe(),
            reason: "its meta table does not identify it as crmkit".into(),
        });
    }
    drop(r);
    migrate(store)
}

/// Checks, writing nothing, that the backend holds a crmkit database of the schema this
/// build writes (a read-only store cannot migrate an older one); the version found.
pub(super) fn verify(store: &Store) -> Result<u32> {
    let r = store.backend.read()?;
    let found = recognize(r.as_ref(), &store.describe())?;
    if found < SCHEMA_VERSION {
        return Err(Error::OlderSchema { database: store.describe(), found, current: SCHEMA_VERSION });
    }
    Ok(found)
}

/// The schema version of the crmkit database `r` reads, which this build can open (it may
/// need migrating); `database` names it in errors.
pub(super) fn recognize(r: &dyn KvRead, database: &str) -> Result<u32> {
    if r.get(META, FORMAT)?.as_deref() != Some(FORMAT_VALUE) {
        return Err(Error::NotCrmkit {
            database: database.to_string(),
            reason: "its meta table does not identify it as crmkit".into(),
        });
    }
    let found = stored_version(r)?.ok_or_else(|| Error::NotCrmkit {
        database: database.to_string(),
        reason: "its meta table has no schema version".into(),
    })?;
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema { database: database.to_string(), found, supported: SCHEMA_VERSION });
    }
    if found == 0 {
        return Err(Error::NotCrmkit {
            database: database.to_string(),
            reason: "schema version 0 was never released".into(),
        });
    }
    Ok(found)
}

pub(super) fn stored_version(r: &dyn KvRead) -> Result<Option<u32>> {
    Ok(r.get(META, VERSION)?.and_then(|v| v.try_into().ok()).map(u32::from_be_bytes))
}

pub(super) fn stored_seq(r: &dyn KvRead) -> Result<u64> {
    match r.get(META, ID_SEQ)? {
        Some(v) => v
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt { what: "meta.id_seq".into(), message: "not 8 bytes".into() }),
        None => Ok(0),
    }
}

fn migrate(store: &Store) -> Result<()> {
    let found = {
        let r = store.backend.read()?;
        stored_version(r.as_ref())?.ok_or_else(|| Error::NotCrmkit {
            database: store.describe(),
            reason: "its meta table has no schema version".into(),
        })?
    };
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema { database: store.describe(), found, supported: SCHEMA_VERSION });
    }
    if found == 0 {
        return Err(Error::NotCrmkit {
            database: store.describe(),
            reason: "schema version 0 was never released".into(),
        });
    }
    for v in found..SCHEMA_VERSION {
        let mut tx = match &MIGRATIONS[(v - 1) as usize] {
            Migration::InOne(step) => {
                let mut tx = store.write(None)?;
                step(&mut tx)?;
                tx
            }
            Migration::Batched(step) => step(store)?,
        };
        tx.changes.put(META, VERSION.to_vec(), (v + 1).to_be_bytes().to_vec());
        tx.commit()?;
    }
    Ok(())
}

/// Sets the stored schema version (tests use it to fake files from other versions).
#[doc(hidden)]
pub fn force_schema_version(store: &Store, version: u32) -> Result<()> {
    let mut tx = store.write(None)?;
    tx.changes.put(META, VERSION.to_vec(), version.to_be_bytes().to_vec());
    tx.commit()
}
