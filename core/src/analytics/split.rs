//! Scans split across the machine's cores. A report folds the rows of a table into
//! accumulators — one per thread — and merges them after. A view that several threads may
//! read at once ([`View::shared`], a snapshot) is cut by id into spans the threads take in
//! turn; any other view (a write transaction's, a department's) is read whole on the
//! calling thread into one accumulator. Whatever the split, the merged result is the same:
//! a report's folds only add, count and collect, and it orders what it prints itself.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::hooks::View;
use crate::id::{PartnerId, RawId};
use crate::model::Partner;
use crate::store::tables::{self, Table};
use crate::store::{DealDocuments, DealHead, DealRow, DocumentRow, InteractionRow, Reader, Snapshot, Span, TaskRow};
use crate::Result;

/// The most threads one report uses.
const MAX_THREADS: usize = 8;

/// Spans per thread: enough that a thread which drew dense spans (ids follow creation
/// time, and years differ in how much they hold) is not left working alone at the end.
const SPANS_PER_THREAD: usize = 8;

/// A row of the scan layout, as the split scans read it.
pub(crate) trait Row: Sync {
    /// The table the rows are kept in.
    fn table() -> Table;
    /// Every row `view` passes.
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()>;
    /// The rows of `snapshot` in `span`.
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()>;
}

impl Row for DealRow {
    fn table() -> Table {
        tables::DEAL_ROWS
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.scan_deals(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.scan_deals_in(span, f)
    }
}

impl Row for DealHead {
    fn table() -> Table {
        tables::DEAL_HEADS
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.scan_deal_heads(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.scan_deal_heads_in(span, f)
    }
}

impl Row for DocumentRow {
    fn table() -> Table {
        tables::DOCUMENT_ROWS
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.scan_documents(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.scan_documents_in(span, f)
    }
}

impl Row for DealDocuments {
    fn table() -> Table {
        tables::DEAL_DOCUMENTS
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.scan_deal_documents(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.scan_deal_documents_in(span, f)
    }
}

impl Row for InteractionRow {
    fn table() -> Table {
        tables::INTERACTION_ROWS
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.scan_interactions(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.scan_interactions_in(span, f)
    }
}

impl Row for TaskRow {
    fn table() -> Table {
        tables::TASK_ROWS
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.scan_tasks(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.scan_tasks_in(span, f)
    }
}

impl Row for Partner {
    fn table() -> Table {
        tables::entity_table(crate::model::EntityKind::Partner)
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.each_partner(f)
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.for_each_in::<Partner>(span, |p| f(&p))
    }
}

/// A partner's name, as the partners' names are read (a snapshot reads the names alone
/// from the records).
pub(super) struct PartnerName {
    id: PartnerId,
    name: String,
}

impl Row for PartnerName {
    fn table() -> Table {
        tables::entity_table(crate::model::EntityKind::Partner)
    }
    fn scan(view: &dyn View, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        view.each_partner(&mut |p: &Partner| f(&PartnerName { id: p.id, name: p.name.clone() }))
    }
    fn scan_in(snapshot: &Snapshot, span: Span, f: &mut dyn FnMut(&Self) -> bool) -> Result<()> {
        snapshot.partner_names_in(span, &mut |id, name| f(&PartnerName { id, name }))
    }
}

/// The names of the partners in `ids`, read a span of the partners per thread.
pub(super) fn partner_names(
    view: &dyn View,
    ids: &std::collections::HashSet<PartnerId>,
) -> Result<std::collections::HashMap<PartnerId, String>, String> {
    let parts = fold(view, std::collections::HashMap::new, |names, p: &PartnerName| {
        if ids.contains(&p.id) {
            names.insert(p.id, p.name.clone());
        }
        Ok(())
    })?;
    let mut parts = parts.into_iter();
    let mut names = parts.next().unwrap_or_default();
    parts.for_each(|p| names.extend(p));
    Ok(names)
}

/// How many threads a report's scans use: the machine's cores, at most [`MAX_THREADS`].
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS)
}

/// Folds every row of kind `R` that `view` passes: `step` adds a row to an accumulator
/// made by `init`; the accumulators come back in no particular order, one per thread that
/// read any (at least one). `step` returns `Err` to stop the whole scan with that error.
pub(crate) fn fold<R: Row, A: Send>(
    view: &dyn View,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, &R) -> Result<(), String> + Sync,
) -> Result<Vec<A>, String> {
    fold_from(view, Source { table: R::table(), whole: R::scan, span: R::scan_in }, init, step)
}

/// [`fold`] over the completed shipments only (the revenue rows).
pub(super) fn fold_shipments<A: Send>(
    view: &dyn View,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, &DocumentRow) -> Result<(), String> + Sync,
) -> Result<Vec<A>, String> {
    let source = Source {
        table: tables::SHIPMENT_ROWS,
        whole: |view: &dyn View, f: &mut dyn FnMut(&DocumentRow) -> bool| view.scan_shipments(f),
        span: |s: &Snapshot, span, f: &mut dyn FnMut(&DocumentRow) -> bool| s.scan_shipments_in(span, f),
    };
    fold_from(view, source, init, step)
}

/// What a scan hands each row to, until it answers `false`.
type Visit<'a, R> = &'a mut dyn FnMut(&R) -> bool;

/// Where a fold reads its rows: every row a view passes, or a snapshot's rows in a span.
struct Source<R> {
    table: Table,
    whole: fn(&dyn View, Visit<'_, R>) -> Result<()>,
    span: fn(&Snapshot, Span, Visit<'_, R>) -> Result<()>,
}

fn fold_from<R: Row, A: Send>(
    view: &dyn View,
    source: Source<R>,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, &R) -> Result<(), String> + Sync,
) -> Result<Vec<A>, String> {
    let threads = threads();
    let Some(snapshot) = view.shared().filter(|_| threads > 1) else {
        let mut acc = init();
        let mut failed = None;
        (source.whole)(view, &mut |r| match step(&mut acc, r) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })
        .map_err(|e| e.to_string())?;
        return failed.map_or(Ok(vec![acc]), Err);
    };
    let spans = spans(snapshot, &source, threads * SPANS_PER_THREAD).map_err(|e| e.to_string())?;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let work = || -> Result<A, String> {
        let mut acc = init();
        let mut failed = None;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&span) = spans.get(i) else { break };
            (source.span)(snapshot, span, &mut |r| {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                match step(&mut acc, r) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        stop.store(true, Ordering::Relaxed);
                        false
                    }
                }
            })
            .map_err(|e| {
                stop.store(true, Ordering::Relaxed);
                e.to_string()
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        Ok(acc)
    };
    let results: Vec<Result<A, String>> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.min(spans.len())).map(|_| s.spawn(work)).collect();
        let mut results = vec![work()];
        for h in helpers {
            results.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        results
    });
    results.into_iter().collect()
}

/// `f` of each of `parts` (the accumulators of a [`fold`]), each on a thread of its own
/// (the first on the calling one), in their order.
pub(super) fn each<T: Sync, A: Send>(parts: &[T], f: impl Fn(&T) -> A + Sync) -> Vec<A> {
    let f = &f;
    std::thread::scope(|s| {
        let helpers: Vec<_> = parts.iter().skip(1).map(|p| s.spawn(move || f(p))).collect();
        let mut out: Vec<A> = parts.first().map(f).into_iter().collect();
        out.extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        out
    })
}

/// `0..n` cut into a range per thread (one range when `n` is small), for [`each`].
pub(super) fn ranges(n: usize) -> Vec<std::ops::Range<usize>> {
    const AT_LEAST: usize = 4096;
    let parts = threads().min(n / AT_LEAST).max(1);
    (0..parts).map(|i| n * i / parts..n * (i + 1) / parts).collect()
}

/// Cuts the ids of the source's table into about `n` spans of equal width between its
/// first and last id; the first and last spans are open, so every row falls in one span.
fn spans<R>(snapshot: &Snapshot, source: &Source<R>, n: usize) -> Result<Vec<Span>> {
    let end = |reverse: bool| -> Result<Option<RawId>> {
        let mut id = None;
        snapshot.kv_scan(source.table, Bound::Unbounded, Bound::Unbounded, reverse, &mut |k, _| {
            id = RawId::from_bytes(k);
            false
        })?;
        Ok(id)
    };
    let (Some(first), Some(last)) = (end(false)?, end(true)?) else { return Ok(vec![Span::ALL]) };
    let step = (last.0.saturating_sub(first.0) / n.max(1) as u128).max(1);
    let mut spans = Vec::with_capacity(n);
    let mut from = None;
    for i in 1..n as u128 {
        let cut = RawId(first.0 + step * i);
        if cut > last {
            break;
        }
        spans.push(Span { from, to: Some(cut) });
        from = Some(cut);
    }
    spans.push(Span { from, to: None });
    Ok(spans)
}
