//! The fixed set of tables and secondary indexes, and what each index refers to.

use crate::model::{EntityKind, Index};

/// A table of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its name in the backend.
    pub name: &'static str,
    /// Its position in per-table arrays.
    pub slot: usize,
}

/// Schema facts: `format`, `schema_version`, `id_seq`.
pub const META: Table = Table { name: "meta", slot: 0 };
/// The audit log, keyed by audit id (time-ordered).
pub const AUDIT: Table = Table { name: "audit", slot: 1 };
/// Audit entries per entity: entity id ++ audit id.
pub const AUDIT_BY_ENTITY: Table = Table { name: "audit_by_entity", slot: 2 };
/// Attachment content: SHA-256 ++ chunk number (u32, big-endian) → bytes.
pub const BLOBS: Table = Table { name: "blobs", slot: 3 };
/// The stage history of deals: deal id ++ step number (u32, big-endian). Only appended to.
pub const STAGE_HISTORY: Table = Table { name: "stage_history", slot: 4 };
/// External keys (the ids records had in the system they were imported from): entity kind
/// name ++ 0 ++ key → entity id. Re-running an import finds what it wrote before. A key of
/// a deleted entity stays until a new entity takes it; lookups skip it.
pub const EXTERNAL_KEYS: Table = Table { name: "external_keys", slot: 5 };
/// The funnel totals: process kind ++ 0 ++ manager id ++ line tag (++ stage id) → what the
/// deals of that line add up to. Kept by every commit that writes deals or their stage
/// history (see `aggregates.rs`).
pub const FUNNEL_TOTALS: Table = Table { name: "funnel_totals", slot: 6 };

/// The scan layout: deal id → the deal's narrow row with its whole stage history, kept by
/// every commit that writes deals or their stage history (see `scan.rs`).
pub const DEAL_ROWS: Table = Table { name: "deal_rows", slot: 7 };

/// The scan layout of documents: document id → the document's narrow row, kept by every
/// commit that writes documents (see `document_rows.rs`).
pub const DOCUMENT_ROWS: Table = Table { name: "document_rows", slot: 8 };

/// The scan layout of interactions: interaction id → the interaction's narrow row, kept by
/// every commit that writes interactions (see `interaction_rows.rs`).
pub const INTERACTION_ROWS: Table = Table { name: "interaction_rows", slot: 9 };

/// The scan layout of tasks: task id → the task's narrow row, kept by every commit that
/// writes tasks (see `task_rows.rs`).
pub const TASK_ROWS: Table = Table { name: "task_rows", slot: 10 };

/// The revenue rows: document id → the document row of a completed shipment, kept by every
/// commit that writes documents (see `shipment_rows.rs`).
pub const SHIPMENT_ROWS: Table = Table { name: "shipment_rows", slot: 11 };

/// The deal heads: deal id → the deal's head (the fields the reports over every deal read,
/// and how it stands now), derived from its scan row by every commit that writes the row
/// (see `deal_heads.rs`).
pub const DEAL_HEADS: Table = Table { name: "deal_heads", slot: 12 };

/// The deals' documents: deal id → what the reports over deals and their documents read of
/// each of the deal's documents, kept by every commit that writes documents (see
/// `deal_documents.rs`).
pub const DEAL_DOCUMENTS: Table = Table { name: "deal_documents", slot: 13 };

const FIRST_ENTITY_SLOT: usize = 14;
const FIRST_INDEX_SLOT: usize = FIRST_ENTITY_SLOT + EntityKind::ALL.len();

/// The number of tables.
pub const TABLE_COUNT: usize = FIRST_INDEX_SLOT + Index::ALL.len();

/// Every table, in slot order.
pub fn all_tables() -> Vec<Table> {
    let mut t = vec![
        META,
        AUDIT,
        AUDIT_BY_ENTITY,
        BLOBS,
        STAGE_HISTORY,
        EXTERNAL_KEYS,
        FUNNEL_TOTALS,
        DEAL_ROWS,
        DOCUMENT_ROWS,
        INTERACTION_ROWS,
        TASK_ROWS,
        SHIPMENT_ROWS,
        DEAL_HEADS,
        DEAL_DOCUMENTS,
    ];
    t.extend(EntityKind::ALL.iter().map(|k| entity_table(*k)));
    t.extend(Index::ALL.iter().map(|i| i.table()));
    debug_assert!(t.iter().enumerate().all(|(i, t)| t.slot == i));
    t
}

/// The table holding the records of `kind`, keyed by id (named by the entity's
/// [`Entity::TABLE`](crate::model::Entity::TABLE)).
pub fn entity_table(kind: EntityKind) -> Table {
    let name = crate::with_kind!(kind, E => <E as crate::model::Entity>::TABLE);
    let n = EntityKind::ALL.iter().position(|k| *k == kind).expect("every kind is listed");
    Table { name, slot: FIRST_ENTITY_SLOT + n }
}

/// The table of a secondary index: named by the index's declaration in the model
/// ([`Index::name`]), after the fixed and entity tables.
impl Index {
    /// The index's table.
    pub fn table(self) -> Table {
        let slot = FIRST_INDEX_SLOT + Index::ALL.iter().position(|i| *i == self).expect("listed");
        Table { name: self.name(), slot }
    }
}
