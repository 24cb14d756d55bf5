//! The scan layout of interactions and tasks kept at write time: every row says what its
//! record says (compared field by field, not through the row codec) on both backends, a
//! write transaction scans its own creates, updates and deletes, a deleted record takes its
//! row away, and `crmkit check` names a damaged row, a missing one and a stray one.

use std::sync::Arc;

use crmkit_core::hooks::{Hooks, View};
use crmkit_core::id::{InteractionId, RawId, TaskId};
use crmkit_core::model::{Interaction, InteractionKind, Task, TaskStatus};
use crmkit_core::store::kv::Changes;
use crmkit_core::store::tables::{INTERACTION_ROWS, TASK_ROWS};
use crmkit_core::store::{InteractionRow, Reader, Store, TaskRow};
use crmkit_core::time::{SystemClock, Timestamp};

use crate::common::{free_moving_settings as settings, native_engine, Backend, Fixture, T0};
use crate::scan_rows::{checked_demo, damage, said_all, stray};

const HOUR: i64 = 3_600_000;

/// What `r` scans of interactions.
fn interaction_rows(r: &(impl Reader + ?Sized)) -> Vec<InteractionRow> {
    let mut rows = Vec::new();
    Reader::scan_interactions(r, &mut |i| {
        rows.push(*i);
        true
    })
    .unwrap();
    rows
}

/// What `r` scans of tasks.
fn task_rows(r: &(impl Reader + ?Sized)) -> Vec<TaskRow> {
    let mut rows = Vec::new();
    Reader::scan_tasks(r, &mut |t| {
        rows.push(*t);
        true
    })
    .unwrap();
    rows
}

/// Asserts that `r` scans one row per interaction and one per task, in id order, each
/// saying what the record says.
pub(crate) fn assert_rows_match(r: &(impl Reader + ?Sized)) {
    let mut interactions: Vec<Interaction> = Vec::new();
    r.for_each::<Interaction>(|i| {
        interactions.push(i);
        true
    })
    .unwrap();
    let rows = interaction_rows(r);
    assert_eq!(
        rows.iter().map(|i| i.id).collect::<Vec<_>>(),
        interactions.iter().map(|i| i.id).collect::<Vec<_>>(),
        "interaction rows"
    );
    for (row, i) in rows.iter().zip(&interactions) {
        let fields = (row.kind, row.at, row.partner, row.deal, row.author);
        assert_eq!(fields, (i.kind, i.at, i.partner, i.deal, i.author), "interaction {}", i.id);
    }
    let mut tasks: Vec<Task> = Vec::new();
    r.for_each::<Task>(|t| {
        tasks.push(t);
        true
    })
    .unwrap();
    let rows = task_rows(r);
    assert_eq!(
        rows.iter().map(|t| t.id).collect::<Vec<_>>(),
        tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        "task rows"
    );
    for (row, t) in rows.iter().zip(&tasks) {
        let fields = (row.created_at, row.executor, row.due, row.status, row.deal, row.finished_at);
        assert_eq!(fields, (t.created_at, t.executor, t.due, t.status, t.deal, t.finished_at), "task {}", t.id);
    }
}

#[test]
fn every_row_says_what_the_record_says_on_both_backends() {
    for backend in [Backend::Redb, Backend::Memory] {
        let fx = Fixture::on_with(backend, settings());
        let (partner, manager) = fx.client("Альфа");
        let deal = fx.deal(partner.id, manager, 5_000);
        let engine = native_engine(Hooks::new());
        let (call, note, open, done) = fx
            .store
            .transact(Some(manager), |tx| {
                let mut call = Interaction::new(InteractionKind::Call, Timestamp(T0.0 - HOUR), partner.id, "Звонок");
                call.deal = Some(deal.id);
                call.author = Some(manager);
                call.body = "обсудили сроки поставки".into();
                let note = Interaction::new(InteractionKind::Note, Timestamp(T0.0 + HOUR), partner.id, "Заметка");
                let mut open = Task::new("Подготовить КП", manager);
                open.due = Some(Timestamp(T0.0 + 24 * HOUR));
                open.deal = Some(deal.id);
                let done = Task::new("Позвонить", manager);
                Ok((tx.create(call)?, tx.create(note)?, tx.create(open)?, tx.create(done)?))
            })
            .unwrap();
        fx.clock.advance(HOUR);
        fx.store.transact(Some(manager), |tx| engine.complete_task(tx, done.id, done.version)).unwrap();
        let r = fx.store.read().unwrap();
        assert_rows_match(&r);
        let rows = interaction_rows(&r);
        assert_eq!(
            rows,
            [
                InteractionRow {
                    id: call.id,
                    kind: InteractionKind::Call,
                    at: call.at,
                    partner: partner.id,
                    deal: Some(deal.id),
                    author: Some(manager),
                },
                InteractionRow {
                    id: note.id,
                    kind: InteractionKind::Note,
                    at: note.at,
                    partner: partner.id,
                    deal: None,
                    author: None,
                },
            ]
        );
        let tasks = task_rows(&r);
        assert_eq!(
            (tasks[0].id, tasks[0].status, tasks[0].due, tasks[0].finished_at),
            (open.id, TaskStatus::Open, open.due, None)
        );
        assert_eq!((tasks[1].id, tasks[1].status, tasks[1].deal), (done.id, TaskStatus::Done, None));
        assert!(tasks[1].finished_at.is_some(), "the finished task's instant");
        drop(r);
        // An update rewrites the rows.
        let mut call: Interaction = fx.store.read().unwrap().get(call.id).unwrap().unwrap();
        call.kind = InteractionKind::Meeting;
        call.deal = None;
        call.author = None;
        let mut open: Task = fx.store.read().unwrap().get(open.id).unwrap().unwrap();
        open.due = None;
        open.title = "Подготовить КП и спецификацию".into();
        fx.store
            .transact(Some(manager), |tx| {
                tx.update(call.clone())?;
                tx.update(open.clone())
            })
            .unwrap();
        let r = fx.store.read().unwrap();
        assert_rows_match(&r);
        assert_eq!((interaction_rows(&r)[0].kind, interaction_rows(&r)[0].deal), (InteractionKind::Meeting, None));
        assert_eq!(task_rows(&r)[0].due, None);
        drop(r);
        assert_eq!(fx.store.verify_interaction_rows().unwrap(), Vec::<String>::new());
        assert_eq!(fx.store.verify_task_rows().unwrap(), Vec::<String>::new());
    }
}

#[test]
fn a_write_transaction_scans_its_own_writes_and_a_deleted_record_leaves_no_row() {
    let fx = Fixture::on_with(Backend::Redb, settings());
    let (partner, manager) = fx.client("Альфа");
    let deal = fx.deal(partner.id, manager, 900);
    let (interactions, tasks): (Vec<InteractionId>, Vec<TaskId>) = fx
        .store
        .transact(Some(manager), |tx| {
            let mut is = Vec::new();
            let mut ts = Vec::new();
            for n in 0..3 {
                let at = Timestamp(T0.0 - n * HOUR);
                is.push(tx.create(Interaction::new(InteractionKind::Email, at, partner.id, format!("Письмо {n}")))?.id);
                ts.push(tx.create(Task::new(format!("Задача {n}"), manager))?.id);
            }
            Ok((is, ts))
        })
        .unwrap();
    let mut tx = fx.store.write(Some(manager)).unwrap();
    // A new record, a changed one and a deleted one of each, all pending.
    let mut new_call = Interaction::new(InteractionKind::Call, T0, partner.id, "Звонок");
    new_call.deal = Some(deal.id);
    let new_call = tx.create(new_call).unwrap();
    let mut changed: Interaction = tx.get(interactions[1]).unwrap().unwrap();
    changed.author = Some(manager);
    tx.update(changed).unwrap();
    let gone: Interaction = tx.get(interactions[0]).unwrap().unwrap();
    tx.delete::<Interaction>(gone.id, gone.version).unwrap();
    let mut new_task = Task::new("Выставить счёт", manager);
    new_task.deal = Some(deal.id);
    let new_task = tx.create(new_task).unwrap();
    let mut changed: Task = tx.get(tasks[1]).unwrap().unwrap();
    changed.due = Some(Timestamp(T0.0 + 48 * HOUR));
    tx.update(changed).unwrap();
    let gone: Task = tx.get(tasks[0]).unwrap().unwrap();
    tx.delete::<Task>(gone.id, gone.version).unwrap();

    assert_rows_match(&tx);
    let inside = (interaction_rows(&tx), task_rows(&tx));
    assert_eq!(inside.0.iter().map(|i| i.id).collect::<Vec<_>>(), [interactions[1], interactions[2], new_call.id]);
    assert_eq!(inside.0[0].author, Some(manager));
    assert_eq!(inside.1.iter().map(|t| t.id).collect::<Vec<_>>(), [tasks[1], tasks[2], new_task.id]);
    assert_eq!((inside.1[0].due, inside.1[2].deal), (Some(Timestamp(T0.0 + 48 * HOUR)), Some(deal.id)));
    // Through the reports' view too, and a scan stopped early stops.
    let mut seen = (0, 0);
    View::scan_interactions(&tx, &mut |_| {
        seen.0 += 1;
        seen.0 < 2
    })
    .unwrap();
    View::scan_tasks(&tx, &mut |_| {
        seen.1 += 1;
        false
    })
    .unwrap();
    assert_eq!(seen, (2, 1));
    // Others see none of it until the commit, and all of it after.
    let before = fx.store.read().unwrap();
    assert_eq!(interaction_rows(&before).iter().map(|i| i.id).collect::<Vec<_>>(), interactions);
    assert_eq!(task_rows(&before).iter().map(|t| t.id).collect::<Vec<_>>(), tasks);
    drop(before);
    tx.commit().unwrap();
    let r = fx.store.read().unwrap();
    assert_eq!((interaction_rows(&r), task_rows(&r)), inside);
    assert_rows_match(&r);
    assert_eq!(r.kv_get(INTERACTION_ROWS, &interactions[0].0.to_bytes()).unwrap(), None, "the deleted one's row");
    assert_eq!(r.kv_get(TASK_ROWS, &tasks[0].0.to_bytes()).unwrap(), None, "the deleted task's row");
    drop(r);
    assert_eq!(fx.store.verify_interaction_rows().unwrap(), Vec::<String>::new());
    assert_eq!(fx.store.verify_task_rows().unwrap(), Vec::<String>::new());
}

#[test]
fn check_names_a_damaged_a_missing_and_a_stray_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let check = checked_demo(&dir);

    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    assert_rows_match(&store.read().unwrap());
    let is: Vec<RawId> = interaction_rows(&store.read().unwrap()).iter().map(|i| i.id.0).collect();
    let ts: Vec<RawId> = task_rows(&store.read().unwrap()).iter().map(|t| t.id.0).collect();
    assert!(is.len() >= 4 && ts.len() >= 4, "the demo has interactions and tasks: {} {}", is.len(), ts.len());
    // Of each table: the first row gets the second's bytes; the third goes; a row for an id
    // no record has appears; the fourth is cut short.
    let mut changes = Changes::new();
    let mut want = Vec::new();
    for (table, noun, ids) in [(INTERACTION_ROWS, "interaction", &is), (TASK_ROWS, "task", &ts)] {
        let raw = |id: RawId| store.read().unwrap().kv_get(table, &id.to_bytes()).unwrap().unwrap();
        let (first, second) = (raw(ids[0]), raw(ids[1]));
        assert_ne!(first, second, "{noun}");
        let stray = stray(ids[2].to_bytes());
        let cut = raw(ids[3]);
        changes.put(table, ids[0].to_bytes().to_vec(), second.clone());
        changes.delete(table, ids[2].to_bytes().to_vec());
        changes.put(table, stray.to_vec(), second);
        changes.put(table, ids[3].to_bytes().to_vec(), cut[..cut.len() - 1].to_vec());
        let stray_id = RawId::from_bytes(&stray).unwrap();
        want.extend([
            format!("scan layout problem: scan row of {noun} {}: differs from what its record makes", ids[0]),
            format!("scan layout problem: scan row of {noun} {}: missing", ids[2]),
            format!("scan layout problem: scan row of {noun} {stray_id}: stored, but there is no such {noun}"),
            format!("scan layout problem: scan row of {noun} {}: cannot be read (", ids[3]),
        ]);
    }
    damage(store, changes);
    want.push("8 scan layout problem(s)".to_string());
    said_all(&check(), &want);
    // The reports' scans refuse the damaged rows, naming the record.
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    let r = store.read().unwrap();
    let err = Reader::scan_interactions(&r, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains(&format!("scan row of interaction {}", is[3])) && err.contains("cut short"), "{err}");
    let err = Reader::scan_tasks(&r, &mut |_| true).unwrap_err().to_string();
    assert!(err.contains(&format!("scan row of task {}", ts[3])) && err.contains("cut short"), "{err}");
}

#[test]
fn the_migration_to_schema_12_writes_every_row_afresh_whatever_the_tables_held() {
    let fx = Fixture::on_with(Backend::Redb, settings());
    let (partner, manager) = fx.client("Альфа");
    let (interaction, task) = fx
        .store
        .transact(Some(manager), |tx| {
            let i = tx.create(Interaction::new(InteractionKind::Meeting, T0, partner.id, "Встреча"))?;
            Ok((i.id, tx.create(Task::new("Отчёт о встрече", manager))?.id))
        })
        .unwrap();
    // A file of schema 11 whose new tables hold what a run that stopped half way (or an
    // older build writing since) may leave: a wrong row, a missing one and a stray one.
    let mut changes = Changes::new();
    changes.put(INTERACTION_ROWS, interaction.0.to_bytes().to_vec(), vec![1, 2, 3]);
    changes.put(INTERACTION_ROWS, stray(interaction.0.to_bytes()).to_vec(), vec![1]);
    changes.delete(TASK_ROWS, task.0.to_bytes().to_vec());
    changes.put(TASK_ROWS, stray(task.0.to_bytes()).to_vec(), vec![1]);
    let path = fx.dir.path().join("crm.redb");
    let tmp = fx.dir;
    damage(fx.store, changes);
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    assert_eq!(store.verify_interaction_rows().unwrap().len(), 2);
    assert_eq!(store.verify_task_rows().unwrap().len(), 2);
    crmkit_core::store::force_schema_version(&store, 11).unwrap();
    drop(store);

    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, crmkit_core::store::SCHEMA_VERSION);
    assert_eq!(store.verify_interaction_rows().unwrap(), Vec::<String>::new());
    assert_eq!(store.verify_task_rows().unwrap(), Vec::<String>::new());
    assert_rows_match(&store.read().unwrap());
    drop(tmp);
}
