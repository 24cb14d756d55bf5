//! The deal file (досье сделки): everything a deal has gathered, in time order — its stage
//! history, tasks, interactions, documents, attachments and audit entries — with the deal
//! environment (participants and their links), paged and filterable by kind and period.

use serde::Serialize;

use crate::audit::AuditEntry;
use crate::id::{AttachmentId, DealId, DocumentId, InteractionId, ParticipantId, ParticipantLinkId, TypedId};
use crate::model::{Attachment, Deal, Document, Interaction, Participant, ParticipantLink, StageChange, Task};
use crate::store::{Index, Reader};
use crate::time::Timestamp;
use crate::Result;

/// One thing in a deal's file.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "item", rename_all = "snake_case")]
pub enum FileItem {
    Step(StageChange),
    Task(Task),
    Interaction(Interaction),
    Document(Document),
    Attachment(Attachment),
    Audit(AuditEntry),
}

/// The kinds of [`FileItem`], for filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Step,
    Task,
    Interaction,
    Document,
    Attachment,
    Audit,
}

impl ItemKind {
    /// Every kind.
    pub const ALL: [ItemKind; 6] = [
        ItemKind::Step,
        ItemKind::Task,
        ItemKind::Interaction,
        ItemKind::Document,
        ItemKind::Attachment,
        ItemKind::Audit,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Step => "step",
            ItemKind::Task => "task",
            ItemKind::Interaction => "interaction",
            ItemKind::Document => "document",
            ItemKind::Attachment => "attachment",
            ItemKind::Audit => "audit",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<ItemKind> {
        ItemKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl FileItem {
    /// When it happened: a step's time, a task's creation, an interaction's time, a
    /// document's or attachment's registration, an audit entry's time.
    pub fn at(&self) -> Timestamp {
        match self {
            FileItem::Step(s) => s.at,
            FileItem::Task(t) => t.created_at,
            FileItem::Interaction(i) => i.at,
            FileItem::Document(d) => d.created_at,
            FileItem::Attachment(a) => a.created_at,
            FileItem::Audit(a) => a.at,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ItemKind {
        match self {
            FileItem::Step(_) => ItemKind::Step,
            FileItem::Task(_) => ItemKind::Task,
            FileItem::Interaction(_) => ItemKind::Interaction,
            FileItem::Document(_) => ItemKind::Document,
            FileItem::Attachment(_) => ItemKind::Attachment,
            FileItem::Audit(_) => ItemKind::Audit,
        }
    }
}

/// Which part of the file to return.
#[derive(Clone, Debug, Default)]
pub struct FileQuery {
    /// Only these kinds (all when empty).
    pub kinds: Vec<ItemKind>,
    /// Only items at or after this instant.
    pub from: Option<Timestamp>,
    /// Only items before this instant.
    pub to: Option<Timestamp>,
    /// Items to skip (of those that match), for the next page.
    pub offset: usize,
    /// Items per page (0: all).
    pub limit: usize,
}

/// A deal's file.
#[derive(Clone, Debug, Serialize)]
pub struct DealFile {
    pub deal: Deal,
    pub participants: Vec<Participant>,
    pub participant_links: Vec<ParticipantLink>,
    /// The page of items, in time order (oldest first; ties in the order listed above).
    pub items: Vec<FileItem>,
    /// How many items match the query in all.
    pub total: usize,
}

/// Reads a deal's file from one consistent view.
pub fn deal_file<R: Reader>(r: &R, deal: DealId, q: &FileQuery) -> Result<DealFile> {
    let d: Deal = r.load(deal)?;
    let want = |k: ItemKind| q.kinds.is_empty() || q.kinds.contains(&k);
    let by = |index: Index| r.ids_by(index, &deal.raw().to_bytes(), None, usize::MAX);
    let mut items = Vec::new();
    if want(ItemKind::Step) {
        items.extend(r.stage_history(deal)?.into_iter().map(FileItem::Step));
    }
    if want(ItemKind::Task) {
        items.extend(r.tasks_of_deal(deal)?.into_iter().map(FileItem::Task));
    }
    if want(ItemKind::Interaction) {
        for id in by(Index::InteractionByDeal)? {
            items.push(FileItem::Interaction(r.load(InteractionId(id))?));
        }
    }
    if want(ItemKind::Document) {
        for id in by(Index::DocumentByDeal)? {
            items.push(FileItem::Document(r.load(DocumentId(id))?));
        }
    }
    if want(ItemKind::Attachment) {
        for id in by(Index::AttachmentByOwner)? {
            items.push(FileItem::Attachment(r.load(AttachmentId(id))?));
        }
    }
    if want(ItemKind::Audit) {
        items.extend(r.audit_of::<Deal>(deal)?.into_iter().map(FileItem::Audit));
    }
    items.retain(|i| q.from.is_none_or(|f| i.at() >= f) && q.to.is_none_or(|t| i.at() < t));
    // Stable: items of one instant keep the order they were gathered in.
    items.sort_by_key(FileItem::at);
    let total = items.len();
    let items: Vec<FileItem> =
        items.into_iter().skip(q.offset).take(if q.limit == 0 { usize::MAX } else { q.limit }).collect();

    let mut participants = Vec::new();
    let mut links = Vec::new();
    for id in by(Index::ParticipantByDeal)? {
        participants.push(r.load::<Participant>(ParticipantId(id))?);
        for link in r.ids_by(Index::ParticipantLinkByParticipant, &id.to_bytes(), None, usize::MAX)? {
            if !links.contains(&link) {
                links.push(link);
            }
        }
    }
    let participant_links =
        links.into_iter().map(|id| r.load::<ParticipantLink>(ParticipantLinkId(id))).collect::<Result<Vec<_>>>()?;
    Ok(DealFile { deal: d, participants, participant_links, items, total })
}
