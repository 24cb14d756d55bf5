//! The sales process engine through its public surface: every refused step is a typed error
//! that leaves the database byte-for-byte as it was (even when the transaction goes on and
//! commits), and every accepted one leaves a stage history that tells exactly what happened.
//! Each test runs on every backend.

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};

use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::hooks::{
    Action, Answer, Fault, Handler, HandlerProvider, HookBinding, HookInput, HookPoint, Hooks, Subject,
};
use crmkit_core::id::{DealId, PartnerId, RawId, TypedId, UserId};
use crmkit_core::model::{
    CustomValue, Deal, DealStatus, EntityKind, How, Interaction, InteractionKind, PartnerRole, Role, StageChange, Task,
    TaskStatus, User,
};
use crmkit_core::process::{check_history, Engine, ImportStep, Outcome};
use crmkit_core::store::{Index, Reader, WriteTxn};
use crmkit_core::time::Timestamp;
use crmkit_core::Error;
use proptest::prelude::*;

use crate::common::{native_engine, new_deal, on_every_backend, Backend, Fixture, T0};

on_every_backend! {
    a_transition_the_current_stage_does_not_allow,
    leaving_a_stage_with_a_required_field_empty,
    leaving_a_stage_with_a_checklist_item_undone,
    closing_as_lost_needs_a_reason_of_the_kind,
    the_winning_competitor_must_be_a_competitor,
    a_managed_route_cannot_be_skipped_by_hand,
    a_closed_or_held_deal_does_not_move,
    only_the_executor_or_a_head_completes_a_task,
    two_moves_of_the_same_version_conflict,
    the_first_guard_that_rejects_wins,
    a_guard_that_fails_aborts_the_step_and_is_named,
    a_reaction_that_fails_takes_the_step_back,
    a_reaction_cascade_deeper_than_the_limit_writes_nothing,
    reopening_is_for_heads,
    imported_histories_must_be_whole_and_end_where_the_deal_is,
    a_manual_deal_from_creation_to_won,
    a_managed_tender_moves_itself_as_its_tasks_are_done,
    large_bids_branch_to_an_approval_by_the_head,
    hooks_choose_the_route_and_the_assignee,
    a_stageless_project_only_changes_status,
    reactions_apply_in_the_same_transaction,
    an_interaction_triggers_its_reactions,
    open_and_overdue_tasks,
    config_binds_handlers_the_program_registers,
    deals_past_their_stage_sla,
    what_the_engine_owns_cannot_be_changed_around_it,
    reopening_does_not_skip_the_route_and_counts_no_dwell,
    a_deal_resumed_after_its_tasks_were_done_moves_on,
    reactions_with_bad_requests_are_errors_not_panics,
    imports_follow_the_rules_of_the_kind,
    reactions_see_the_deal_exactly_as_it_is_stored,
    an_imported_deal_on_hold_in_a_managed_stage_can_go_on,
    closing_a_deal_is_leaving_its_stage,
    every_step_asks_the_guards_of_leaving,
    cancelling_a_task_is_not_completing_it,
    an_unknown_competitor_is_refused_before_any_hook,
    the_comment_of_a_step_is_free_text_with_its_rule,
    a_hook_sets_a_date_by_the_rule_of_dates,
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The default config with what these tests need on top: b2b_sale loses only for some of
/// the reasons, repeat_sale wants the competitor and a comment. (The tender's bid task goes
/// to whoever the `task.assignee` hook names, as in the default config.)
fn settings() -> Settings {
    let mut text = DEFAULT_CONFIG.to_string();
    let mut edit = |from: &str, to: &str| {
        assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once in the default config");
        text = text.replacen(from, to, 1);
    };
    edit(
        "id = \"b2b_sale\"\nname = \"B2B sale\"\nmode = \"manual\"\n",
        "id = \"b2b_sale\"\nname = \"B2B sale\"\nmode = \"manual\"\nloss_reasons = [\"price\", \"competitor_product\", \"no_budget\", \"no_decision\"]\n",
    );
    edit(
        "id = \"repeat_sale\"\nname = \"Repeat sale\"\nmode = \"manual\"\n",
        "id = \"repeat_sale\"\nname = \"Repeat sale\"\nmode = \"manual\"\nrequire_competitor = true\nrequire_loss_comment = true\n",
    );
    Settings::parse(&text, Path::new("process-test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// A sales department: two managers and a head in Moscow, a head in Kazan (created first,
/// so only the department decides who approves Moscow's bids), a tender specialist, a
/// client and a competitor.
struct World {
    fx: Fixture,
    client: PartnerId,
    competitor: PartnerId,
    ivanov: UserId,
    petrov: UserId,
    kuznetsov: UserId,
    sidorova: UserId,
    specialist: UserId,
}

fn world(backend: Backend) -> World {
    world_with(backend, settings())
}

fn world_with(backend: Backend, settings: Settings) -> World {
    let fx = Fixture::on_with(backend, settings);
    let user = |login: &str, role: Role, department: &str| {
        fx.store
            .transact(None, |tx| {
                let mut u = User::new(login, format!("User {login}"), role);
                u.department = Some(department.into());
                Ok(tx.create(u)?.id)
            })
            .unwrap()
    };
    let kuznetsov = user("kuznetsov", Role::Head, "Kazan sales");
    let ivanov = user("ivanov", Role::Manager, "Moscow sales");
    let petrov = user("petrov", Role::Manager, "Moscow sales");
    let sidorova = user("sidorova", Role::Head, "Moscow sales");
    let specialist = user("tender.specialist", Role::Manager, "Tenders");
    let client = fx.partner("Ромашка", PartnerRole::Client).id;
    let competitor = fx.partner("ПромЛидер", PartnerRole::Competitor).id;
    World { fx, client, competitor, ivanov, petrov, kuznetsov, sidorova, specialist }
}

impl World {
    /// Runs `f` in a transaction by `actor` and commits it.
    fn run<R>(&self, actor: UserId, f: impl FnOnce(&mut WriteTxn<'_>) -> crmkit_core::Result<R>) -> R {
        self.fx.store.transact(Some(actor), f).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `op` in a transaction by `actor` that commits whatever `op` says, expects `op` to
    /// be refused, and checks it wrote nothing at all.
    fn refused<R: std::fmt::Debug>(
        &self,
        actor: UserId,
        op: impl FnOnce(&mut WriteTxn<'_>) -> crmkit_core::Result<R>,
    ) -> Error {
        let before = self.fx.dump();
        let mut err = None;
        self.fx
            .store
            .transact(Some(actor), |tx| {
                err = Some(op(tx).expect_err("the step must be refused"));
                Ok(())
            })
            .unwrap();
        assert!(self.fx.dump() == before, "a refused step changed the database: {err:?}");
        err.expect("set above")
    }

    /// A new deal of `kind` for the client, managed by ivanov, created through `engine`.
    fn deal(&self, engine: &Engine, kind: &str, amount: i64) -> Deal {
        let mut d = new_deal(self.client, self.ivanov, amount);
        d.kind = kind.into();
        d.stage = None;
        d.source = Some("referral".into());
        self.run(self.ivanov, |tx| engine.create_deal(tx, d))
    }

    fn load(&self, id: DealId) -> Deal {
        self.fx.store.read().unwrap().load(id).unwrap()
    }

    fn login(&self, user: Option<UserId>) -> String {
        user.map_or("system".into(), |u| self.fx.store.read().unwrap().load::<User>(u).unwrap().login)
    }

    fn tasks(&self, deal: DealId) -> Vec<Task> {
        self.fx.store.read().unwrap().tasks_of_deal(deal).unwrap()
    }

    /// The one open task of a deal.
    fn open_task(&self, deal: DealId) -> Task {
        let open: Vec<Task> = self.tasks(deal).into_iter().filter(|t| t.status == TaskStatus::Open).collect();
        assert_eq!(open.len(), 1, "{open:#?}");
        open.into_iter().next().expect("one")
    }

    /// Checks the deal's stage history, step by step, against `expected` (one line per step,
    /// see [`World::step_line`]), and that it is consistent with the deal.
    fn check_history(&self, deal: DealId, expected: &str) {
        let r = self.fx.store.read().unwrap();
        let d: Deal = r.load(deal).unwrap();
        let steps = r.stage_history(deal).unwrap();
        check_history(&d, &steps, self.fx.store.settings()).unwrap_or_else(|e| panic!("{e}"));
        assert!(steps.iter().all(|s| s.deal == deal));
        let got: Vec<String> = steps.iter().map(|s| self.step_line(s)).collect();
        let want: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(got, want, "stage history of {}", d.title);
    }

    /// `step how from -> to at +T dwell D by LOGIN [note "…"] [imported]`; times relative to T0.
    fn step_line(&self, s: &StageChange) -> String {
        let place = |stage: &Option<String>, status: Option<DealStatus>| {
            format!("{}/{}", stage.as_deref().unwrap_or("-"), status.map_or("-", DealStatus::name))
        };
        let mut line = format!(
            "{} {} {} -> {} at {} dwell {} by {}",
            s.step,
            s.how.name(),
            place(&s.from_stage, s.from_status),
            place(&s.to_stage, Some(s.to_status)),
            offset(s.at),
            s.dwell_ms.map_or("-".into(), duration),
            self.login(s.actor)
        );
        if let Some(n) = &s.note {
            line += &format!(" note {n:?}");
        }
        if s.imported {
            line += " imported";
        }
        line
    }

    /// The deal's tasks, one line each: `title | executor | due +T | stage | required | status`.
    fn check_tasks(&self, deal: DealId, expected: &str) {
        let got: Vec<String> = self
            .tasks(deal)
            .iter()
            .map(|t| {
                format!(
                    "{} | {} | due {} | {} | {} | {}",
                    t.title,
                    self.login(Some(t.executor)),
                    t.due.map_or("-".into(), offset),
                    t.stage.as_deref().unwrap_or("-"),
                    if t.required { "required" } else { "optional" },
                    t.status.name()
                )
            })
            .collect();
        let want: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(got, want, "tasks of deal {deal}");
    }

    fn advance(&self, ms: i64) {
        self.fx.clock.advance(ms);
    }
}

/// `1d2h30m`, `0`.
fn duration(ms: i64) -> String {
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("d", DAY), ("h", HOUR), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            out += &format!("{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// An instant as `+1d2h` or `-30d` from T0.
fn offset(t: Timestamp) -> String {
    let ms = t.0 - T0.0;
    if ms < 0 {
        format!("-{}", duration(-ms))
    } else {
        format!("+{}", duration(ms))
    }
}

/// A native handler from a closure.
fn handler(f: impl Fn(&HookInput<'_>) -> Result<Answer, Fault> + Send + Sync + 'static) -> impl Handler {
    f
}

fn lost(reason: &str) -> Outcome {
    Outcome::Lost { reason: reason.into(), competitor: None, comment: String::new() }
}

fn process_error(err: &Error, deal: DealId, needle: &str) {
    match err {
        Error::Process { deal: d, message } => {
            assert_eq!(*d, deal.raw(), "{err}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        other => panic!("expected a process error, got {other:?}"),
    }
}

fn invalid(err: &Error, field: &str, needle: &str) {
    match err {
        Error::Invalid(f) => {
            assert_eq!((f.entity, f.field.as_str()), (EntityKind::Deal, field), "{err}");
            assert!(f.message.contains(needle), "{:?} lacks {needle:?}", f.message);
        }
        other => panic!("expected an invalid deal.{field}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Bad input: a clear typed error, nothing written.

fn a_transition_the_current_stage_does_not_allow(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "proposal", None));
    process_error(
        &err,
        d.id,
        "cannot move from stage \"qualification\" to \"proposal\": the stages it may move to are needs_analysis",
    );
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "shipping", None));
    invalid(&err, "stage", "\"shipping\" is not a stage of process kind \"b2b_sale\"");
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "qualification", None));
    process_error(&err, d.id, "already in stage \"qualification\"");

    // The contract stage only goes back to negotiation.
    let d = w.run(w.ivanov, |tx| {
        let d = e.move_deal(tx, d.id, d.version, "needs_analysis", None)?;
        let mut d = e.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
        for to in ["proposal", "negotiation", "contract"] {
            d = e.move_deal(tx, d.id, d.version, to, None)?;
        }
        Ok(d)
    });
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "proposal", None));
    process_error(
        &err,
        d.id,
        "cannot move from stage \"contract\" to \"proposal\": the stages it may move to are negotiation",
    );
}

fn leaving_a_stage_with_a_required_field_empty(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let mut d = new_deal(w.client, w.ivanov, 1000);
    d.source = None;
    let d = w.run(w.ivanov, |tx| e.create_deal(tx, d));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    invalid(
        &err,
        "source",
        "the deal cannot leave stage \"qualification\": source is required before leaving stage \"qualification\"",
    );
    assert_eq!(
        e.unmet(&w.fx.store.read().unwrap(), &d).unwrap(),
        ["source: is required before leaving stage \"qualification\""]
    );
}

fn leaving_a_stage_with_a_checklist_item_undone(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    let d = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "proposal", None));
    invalid(&err, "checklist", "\"needs_recorded\" (Needs and budget recorded) is not done");
    // Only the current stage's items can be ticked off.
    let err = w.refused(w.ivanov, |tx| e.set_checked(tx, d.id, d.version, "contract_signed", true));
    invalid(&err, "checklist", "\"contract_signed\" is not a checklist item of the current stage (needs_recorded)");
    // Ticked off, it goes; unticked, it does not.
    let d = w.run(w.ivanov, |tx| e.set_checked(tx, d.id, d.version, "needs_recorded", true));
    assert_eq!(d.checklist, ["needs_recorded"]);
    let d = w.run(w.ivanov, |tx| e.set_checked(tx, d.id, d.version, "needs_recorded", false));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "proposal", None));
    invalid(&err, "checklist", "is not done");
}

fn closing_as_lost_needs_a_reason_of_the_kind(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, lost("  ")));
    invalid(&err, "loss_reason", "is required to close a deal as lost");
    // "terms" is a configured loss reason, but not one of b2b_sale's.
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, lost("terms")));
    invalid(
        &err,
        "loss_reason",
        "\"terms\" is not a loss reason of process kind \"b2b_sale\" (price, competitor_product, no_budget, no_decision)",
    );
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, lost("weather")));
    invalid(&err, "loss_reason", "\"weather\" is not a loss reason");
}

fn the_winning_competitor_must_be_a_competitor(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    let outcome =
        |competitor| Outcome::Lost { reason: "price".into(), competitor: Some(competitor), comment: String::new() };
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, outcome(w.client)));
    invalid(&err, "competitor", "does not have the competitor role");
    let ghost = PartnerId(RawId::new(1, 999));
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, outcome(ghost)));
    invalid(&err, "competitor", "does not exist");

    // repeat_sale wants the competitor and a comment on every loss.
    let r = w.deal(&e, "repeat_sale", 1000);
    let err = w.refused(w.ivanov, |tx| e.close(tx, r.id, r.version, lost("price")));
    invalid(&err, "competitor", "process kind \"repeat_sale\" requires the winning competitor");
    let no_comment = Outcome::Lost { reason: "price".into(), competitor: Some(w.competitor), comment: " ".into() };
    let err = w.refused(w.ivanov, |tx| e.close(tx, r.id, r.version, no_comment));
    invalid(&err, "comment", "requires a comment on a lost deal");
    let full = Outcome::Lost { reason: "price".into(), competitor: Some(w.competitor), comment: "10% cheaper".into() };
    let r = w.run(w.ivanov, |tx| e.close(tx, r.id, r.version, full));
    assert_eq!((r.status, r.competitor, r.comment.as_str()), (DealStatus::Lost, Some(w.competitor), "10% cheaper"));
}

fn a_managed_route_cannot_be_skipped_by_hand(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "tender", 1000);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "documentation", None));
    process_error(&err, d.id, "process kind \"tender\" is managed");
    let err = w.refused(w.ivanov, |tx| e.advance(tx, d.id, d.version));
    invalid(&err, "tasks", "required task \"Study the tender documentation\"");
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, Outcome::Won));
    process_error(&err, d.id, "a deal is won from the end of its route, not from stage \"announcement\"");
    // In documentation, "bid" is a stage it may go to, but only the route takes it there.
    let task = w.open_task(d.id);
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    let d = w.load(d.id);
    assert_eq!(d.stage.as_deref(), Some("documentation"));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "bid", None));
    process_error(&err, d.id, "cannot be reached from \"documentation\" by hand (skipping a stage is not allowed)");
    // Manual kinds do not advance.
    let m = w.deal(&e, "b2b_sale", 1000);
    let err = w.refused(w.ivanov, |tx| e.advance(tx, m.id, m.version));
    process_error(&err, m.id, "process kind \"b2b_sale\" is manual: move its deals by hand");
}

fn a_closed_or_held_deal_does_not_move(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    let held = w.run(w.ivanov, |tx| e.hold(tx, d.id, d.version, "holidays"));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, held.id, held.version, "needs_analysis", None));
    process_error(&err, d.id, "is on hold: resume it before moving it");
    let err = w.refused(w.ivanov, |tx| e.hold(tx, held.id, held.version, "again"));
    process_error(&err, d.id, "is on_hold: only a deal in progress can be put on hold");
    let won = w.run(w.ivanov, |tx| e.close(tx, held.id, held.version, Outcome::Won));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, won.id, won.version, "needs_analysis", None));
    process_error(&err, d.id, "is closed (won): reopen it before moving it");
    let err = w.refused(w.ivanov, |tx| e.close(tx, won.id, won.version, lost("price")));
    process_error(&err, d.id, "is already closed (won)");
    let err = w.refused(w.ivanov, |tx| e.resume(tx, won.id, won.version));
    process_error(&err, d.id, "is won, not on hold");
    // A stageless deal has no stage to move to.
    let p = w.deal(&e, "project", 1000);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, p.id, p.version, "proposal", None));
    process_error(&err, p.id, "process kind \"project\" has no stages");
    // And the store refuses stage and status changes that bypass the engine.
    let mut bypass = w.load(p.id);
    bypass.status = DealStatus::Won;
    let err = w.refused(w.ivanov, |tx| tx.update(bypass));
    invalid(&err, "status", "changes only through the process engine");
}

fn only_the_executor_or_a_head_completes_a_task(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "tender", 1000);
    let task = w.open_task(d.id);
    assert_eq!(task.executor, w.ivanov);
    let err = w.refused(w.petrov, |tx| e.complete_task(tx, task.id, task.version));
    match &err {
        Error::Forbidden(m) => assert!(
            m.contains("petrov may not complete task") && m.contains("only admin, head may finish others' tasks"),
            "{m}"
        ),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let err = w.refused(w.petrov, |tx| e.cancel_task(tx, task.id, task.version));
    assert!(matches!(&err, Error::Forbidden(m) if m.contains("may not cancel")), "{err:?}");
    let err = w.refused(w.sidorova, |tx| e.complete_task(tx, task.id, task.version + 1));
    assert!(matches!(err, Error::Conflict { kind: EntityKind::Task, .. }), "{err:?}");
    // A head may; the task records who did it, and the route moves on.
    w.advance(HOUR);
    let done = w.run(w.sidorova, |tx| e.complete_task(tx, task.id, task.version));
    assert_eq!(
        (done.status, done.finished_by, done.finished_at),
        (TaskStatus::Done, Some(w.sidorova), Some(T0.plus_millis(HOUR)))
    );
    assert_eq!(w.load(d.id).stage.as_deref(), Some("documentation"));
    let err = w.refused(w.ivanov, |tx| e.complete_task(tx, done.id, done.version));
    assert!(matches!(&err, Error::NotAllowed(m) if m.contains("is already done")), "{err:?}");
}

fn two_moves_of_the_same_version_conflict(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    // Two users read version 1 and move the deal at the same moment: the store serializes
    // the writes, and the second one finds the deal changed.
    let start = Barrier::new(2);
    let results: Vec<crmkit_core::Result<Deal>> = std::thread::scope(|s| {
        let handles: Vec<_> = [w.ivanov, w.petrov]
            .into_iter()
            .map(|user| {
                let (w, e, start, d) = (&w, &e, &start, &d);
                s.spawn(move || {
                    start.wait();
                    w.fx.store.transact(Some(user), |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (ok, err): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!((ok.len(), err.len()), (1, 1), "{ok:?} {err:?}");
    let err = err.into_iter().next().unwrap().unwrap_err();
    assert!(matches!(err, Error::Conflict { kind: EntityKind::Deal, given: 1, stored: 2, .. }), "{err}");
    assert_eq!(w.fx.store.read().unwrap().stage_history(d.id).unwrap().len(), 2, "one move recorded");
    // The same, one after the other.
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    assert!(matches!(err, Error::Conflict { given: 1, stored: 2, .. }), "{err}");
}

fn the_first_guard_that_rejects_wins(backend: Backend) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut hooks = Hooks::new();
    for (name, answer) in [
        ("allow_all", Answer::Allow),
        (
            "require_quote",
            Answer::Reject { message: "attach the signed quote first".into(), field: Some("documents".into()) },
        ),
        ("require_budget", Answer::Reject { message: "no budget".into(), field: None }),
    ] {
        let calls = calls.clone();
        hooks.register(
            name,
            handler(move |input| {
                calls.lock().unwrap().push((name, input.hook, input.transition.map(|t| t.to_stage.clone())));
                Ok(answer.clone())
            }),
        );
    }
    for name in ["allow_all", "require_quote", "require_budget"] {
        hooks.bind(HookPoint::DealBeforeTransition, name, &["b2b_sale"]).unwrap();
    }
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "b2b_sale", 1000);
    calls.lock().unwrap().clear();
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    match &err {
        Error::Rejected { hook, handler, message, field } => {
            assert_eq!(
                (*hook, handler.as_str(), message.as_str(), field.as_deref()),
                ("deal.before_transition", "require_quote", "attach the signed quote first", Some("documents"))
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "deal.before_transition: require_quote refused (documents): attach the signed quote first"
    );
    let to = Some(Some("needs_analysis".to_string()));
    assert_eq!(
        *calls.lock().unwrap(),
        [
            ("allow_all", HookPoint::DealBeforeTransition, to.clone()),
            ("require_quote", HookPoint::DealBeforeTransition, to)
        ],
        "the guards after the first rejection are not asked"
    );
    // Guards bound to other kinds are not asked.
    let t = w.deal(&e, "tender", 1000);
    let task = w.open_task(t.id);
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    assert_eq!(w.load(t.id).stage.as_deref(), Some("documentation"));
}

fn a_guard_that_fails_aborts_the_step_and_is_named(backend: Backend) {
    let mut hooks = Hooks::new();
    hooks.register("flaky_script", handler(|_| Err(Fault("line 3: variable `quote` is not defined".into()))));
    hooks.register("confused", handler(|_| Ok(Answer::Stage(None))));
    hooks.bind(HookPoint::DealBeforeClose, "flaky_script", &[]).unwrap();
    hooks.bind(HookPoint::DealBeforeTransition, "confused", &[]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "b2b_sale", 1000);
    // A close asks the guards of leaving the stage first: the confused one faults there.
    let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, Outcome::Won));
    assert!(matches!(&err, Error::HookFault { hook: "deal.before_transition", handler, .. } if handler == "confused"));
    let mut hooks = Hooks::new();
    hooks.register("flaky_script", handler(|_| Err(Fault("line 3: variable `quote` is not defined".into()))));
    hooks.bind(HookPoint::DealBeforeClose, "flaky_script", &[]).unwrap();
    let closing = native_engine(hooks);
    let err = w.refused(w.ivanov, |tx| closing.close(tx, d.id, d.version, Outcome::Won));
    match &err {
        Error::HookFault { hook, handler, message } => assert_eq!(
            (*hook, handler.as_str(), message.as_str()),
            ("deal.before_close", "flaky_script", "line 3: variable `quote` is not defined")
        ),
        other => panic!("expected a fault, got {other:?}"),
    }
    // A guard answering something that is not a guard's answer is a fault too.
    let err = w.refused(w.ivanov, |tx| e.hold(tx, d.id, d.version, "later"));
    match &err {
        Error::HookFault { hook, handler, message } => {
            assert_eq!((*hook, handler.as_str()), ("deal.before_transition", "confused"));
            assert!(message.contains("answered Stage(None); deal.before_transition expects a verdict"), "{message}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn a_reaction_that_fails_takes_the_step_back(backend: Backend) {
    let mut hooks = Hooks::new();
    hooks.register("notify", handler(|_| Err(Fault("out of fuel".into()))));
    hooks.bind(HookPoint::DealAfterTransition, "notify", &["b2b_sale"]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "b2b_sale", 1000);
    // The move is written before the reaction runs; the fault takes all of it back.
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    assert!(
        matches!(&err, Error::HookFault { hook: "deal.after_transition", handler, .. } if handler == "notify"),
        "{err:?}"
    );
}

/// Reactions: after every manual move of a b2b deal one puts it on hold and adds a note, and
/// every note leads to another note while `again(depth)` says so.
fn cascading(again: impl Fn(u32) -> bool + Send + Sync + 'static) -> Engine {
    let mut hooks = Hooks::new();
    hooks.register(
        "hold_and_note",
        handler(|input| {
            Ok(Answer::Actions(if input.transition.is_some_and(|t| t.how == How::Manual) {
                vec![
                    Action::PutOnHold { comment: "waiting".into() },
                    Action::AddNote { subject: "moved".into(), body: String::new() },
                ]
            } else {
                Vec::new()
            }))
        }),
    );
    hooks.register(
        "note_again",
        handler(move |input| {
            Ok(Answer::Actions(if again(input.depth) {
                vec![Action::AddNote { subject: format!("note at depth {}", input.depth), body: String::new() }]
            } else {
                Vec::new()
            }))
        }),
    );
    hooks.bind(HookPoint::DealAfterTransition, "hold_and_note", &["b2b_sale"]).unwrap();
    hooks.bind(HookPoint::InteractionAfterCreate, "note_again", &["b2b_sale"]).unwrap();
    native_engine(hooks)
}

fn a_reaction_cascade_deeper_than_the_limit_writes_nothing(backend: Backend) {
    let w = world(backend);
    let e = cascading(|_| true);
    let d = w.deal(&e, "b2b_sale", 1000);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    process_error(&err, d.id, "reaction cascade too deep: interaction.after_create asked for 1 more action(s) at depth 4; process.max_reaction_depth is 3");

    // Within the limit the whole cascade happens: the move, the hold and the note it
    // causes (depth 1), and the notes each note causes (depths 2 and 3).
    let e = cascading(|depth| depth < 3);
    let d = w.deal(&e, "b2b_sale", 1000);
    let d = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    assert_eq!(d.status, DealStatus::OnHold);
    let r = w.fx.store.read().unwrap();
    let notes: Vec<String> = r
        .find::<Interaction>(Index::InteractionByDeal, &d.id.raw().to_bytes(), None, 100)
        .unwrap()
        .into_iter()
        .map(|i| i.subject)
        .collect();
    assert_eq!(notes, ["moved", "note at depth 1", "note at depth 2"]);
    drop(r);

    // A smaller limit in config stops the same cascade earlier.
    let text = DEFAULT_CONFIG.replace("max_reaction_depth = 3", "max_reaction_depth = 1");
    let w = world_with(backend, Settings::parse(&text, Path::new("depth.toml")).unwrap());
    let d = w.deal(&e, "b2b_sale", 1000);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    process_error(&err, d.id, "at depth 2; process.max_reaction_depth is 1");
}

fn reopening_is_for_heads(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1000);
    let d = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    w.advance(DAY);
    let lost = w.run(w.ivanov, |tx| e.close(tx, d.id, d.version, lost("no_budget")));
    let err = w.refused(w.ivanov, |tx| e.reopen(tx, lost.id, lost.version, None));
    match &err {
        Error::Forbidden(m) => assert_eq!(
            m,
            &format!(
                "ivanov may not reopen deal {}: process kind \"b2b_sale\" lets only admin, head reopen deals",
                d.id
            )
        ),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let err = w.refused(w.sidorova, |tx| e.reopen(tx, lost.id, lost.version, Some("signing")));
    invalid(&err, "stage", "\"signing\" is not a stage of process kind \"b2b_sale\"");
    let err = w.refused(w.sidorova, |tx| e.reopen(tx, d.id, d.version, None));
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    w.advance(DAY);
    let open = w.run(w.sidorova, |tx| e.reopen(tx, lost.id, lost.version, None));
    assert_eq!(
        (open.status, open.stage.as_deref(), open.closed_at, open.loss_reason.as_deref(), open.probability),
        (DealStatus::InProgress, Some("needs_analysis"), None, None, Some(25))
    );
    let err = w.refused(w.sidorova, |tx| e.reopen(tx, open.id, open.version, None));
    process_error(&err, d.id, "is in_progress, not closed");
    w.check_history(
        d.id,
        "0 create -/- -> qualification/in_progress at +0 dwell - by ivanov
         1 manual qualification/in_progress -> needs_analysis/in_progress at +0 dwell 0 by ivanov
         2 lost needs_analysis/in_progress -> needs_analysis/lost at +1d dwell 1d by ivanov note \"no_budget\"
         3 reopen needs_analysis/lost -> needs_analysis/in_progress at +2d dwell - by sidorova",
    );
}

fn imported_histories_must_be_whole_and_end_where_the_deal_is(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let step = |days: i64, how: How, stage: &str, status: DealStatus| ImportStep {
        at: T0.plus_millis(days * DAY),
        how,
        to_stage: Some(stage.into()),
        to_status: status,
        actor: None,
        note: None,
    };
    let good = || {
        vec![
            step(-30, How::Create, "qualification", DealStatus::InProgress),
            step(-25, How::Manual, "needs_analysis", DealStatus::InProgress),
            step(-20, How::Manual, "proposal", DealStatus::InProgress),
            step(-12, How::Hold, "proposal", DealStatus::OnHold),
            step(-10, How::Won, "proposal", DealStatus::Won),
        ]
    };
    let won_deal = || {
        let mut d = new_deal(w.client, w.ivanov, 70_000);
        d.stage = Some("proposal".into());
        d.status = DealStatus::Won;
        d
    };
    let cases: Vec<(&str, Vec<ImportStep>, &str)> = vec![
        ("no steps", Vec::new(), "needs at least its creation step"),
        ("first step not the creation", good()[1..].to_vec(), "step 0: the first step is the creation, not manual"),
        (
            "unordered times",
            {
                let mut s = good();
                s[2].at = T0.plus_millis(-26 * DAY);
                s
            },
            "step 2: 2026-02-04T09:00:00.000Z is before the previous step (2026-02-05T09:00:00.000Z)",
        ),
        (
            "a stage not of the kind",
            {
                let mut s = good();
                s[1].to_stage = Some("award".into());
                s
            },
            "step 1: \"award\" is not a stage of process kind \"b2b_sale\"",
        ),
        (
            "not ending in the deal's state",
            good()[..4].to_vec(),
            "the steps end in proposal/on_hold, but the deal is in proposal/won",
        ),
        (
            "a second creation",
            {
                let mut s = good();
                s[1].how = How::Create;
                s
            },
            "step 1: only the first step is the creation",
        ),
        (
            "in the future",
            {
                let mut s = good();
                s[4].at = T0.plus_millis(DAY);
                s
            },
            "step 4: 2026-03-03T09:00:00.000Z is in the future",
        ),
        (
            "a hold that changes the stage",
            {
                let mut s = good();
                s[3].to_stage = Some("negotiation".into());
                s[4].to_stage = Some("negotiation".into());
                s
            },
            "a hold step does not change the stage",
        ),
    ];
    for (what, steps, needle) in cases {
        let mut deal = won_deal();
        if what == "a hold that changes the stage" {
            deal.stage = Some("negotiation".into());
        }
        let err = w.refused(w.ivanov, |tx| e.import_deal(tx, deal, steps));
        match &err {
            Error::Invalid(f) => {
                assert_eq!(f.field, "history", "{what}: {err}");
                assert!(f.message.contains(needle), "{what}: {:?} lacks {needle:?}", f.message);
            }
            other => panic!("{what}: expected an invalid history, got {other:?}"),
        }
    }

    // A whole history is stored as it was, marked imported; the deal keeps its old times.
    let mut steps = good();
    steps[1].actor = Some(w.petrov);
    steps[4].note = Some("signed".into());
    let d = w.run(w.ivanov, |tx| e.import_deal(tx, won_deal(), steps));
    assert_eq!(d.created_at, T0.plus_millis(-30 * DAY));
    assert_eq!(d.id.raw().millis(), T0.plus_millis(-30 * DAY).0, "the id tells the original creation time");
    assert_eq!((d.closed_at, d.stage_entered_at), (Some(T0.plus_millis(-10 * DAY)), Some(T0.plus_millis(-20 * DAY))));
    w.check_history(
        d.id,
        "0 create -/- -> qualification/in_progress at -30d dwell - by system imported
         1 manual qualification/in_progress -> needs_analysis/in_progress at -25d dwell 5d by petrov imported
         2 manual needs_analysis/in_progress -> proposal/in_progress at -20d dwell 5d by system imported
         3 hold proposal/in_progress -> proposal/on_hold at -12d dwell - by system imported
         4 won proposal/on_hold -> proposal/won at -10d dwell 10d by system note \"signed\" imported",
    );
}

// ---------------------------------------------------------------------------------------
// The life of a deal in each mode.

fn a_manual_deal_from_creation_to_won(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "b2b_sale", 1_250_000);
    assert_eq!((d.probability, d.stage_entered_at), (Some(10), Some(T0)));
    w.advance(DAY);
    let d = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    w.advance(2 * DAY);
    let d = w.run(w.ivanov, |tx| {
        let d = e.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
        e.move_deal(tx, d.id, d.version, "proposal", None)
    });
    assert_eq!((d.probability, d.checklist.len()), (Some(45), 0));
    w.advance(DAY);
    let d =
        w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", Some("the client changed the scope")));
    // Back in needs_analysis, its checklist starts over.
    w.advance(DAY);
    let err = w.refused(w.sidorova, |tx| e.move_deal(tx, d.id, d.version, "proposal", None));
    invalid(&err, "checklist", "is not done");
    let d = w.run(w.sidorova, |tx| {
        let d = e.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
        e.move_deal(tx, d.id, d.version, "proposal", None)
    });
    w.advance(2 * DAY);
    let d = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "negotiation", None));
    w.advance(3 * DAY + 2 * HOUR);
    let d = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "contract", None));
    w.advance(DAY);
    let d = w.run(w.ivanov, |tx| e.close(tx, d.id, d.version, Outcome::Won));
    assert_eq!(
        (d.status, d.stage.as_deref(), d.closed_at, d.probability),
        (DealStatus::Won, Some("contract"), Some(T0.plus_millis(11 * DAY + 2 * HOUR)), Some(100))
    );
    w.check_history(
        d.id,
        "0 create -/- -> qualification/in_progress at +0 dwell - by ivanov
         1 manual qualification/in_progress -> needs_analysis/in_progress at +1d dwell 1d by ivanov
         2 manual needs_analysis/in_progress -> proposal/in_progress at +3d dwell 2d by ivanov
         3 manual proposal/in_progress -> needs_analysis/in_progress at +4d dwell 1d by ivanov note \"the client changed the scope\"
         4 manual needs_analysis/in_progress -> proposal/in_progress at +5d dwell 1d by sidorova
         5 manual proposal/in_progress -> negotiation/in_progress at +7d dwell 2d by ivanov
         6 manual negotiation/in_progress -> contract/in_progress at +10d2h dwell 3d2h by ivanov
         7 won contract/in_progress -> contract/won at +11d2h dwell 1d by ivanov",
    );
    assert!(w.tasks(d.id).is_empty(), "a manual process creates no tasks");
}

fn a_managed_tender_moves_itself_as_its_tasks_are_done(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let mut d = new_deal(w.client, w.ivanov, 2_000_000);
    d.kind = "tender".into();
    d.stage = None;
    let d = w.run(w.ivanov, |tx| e.create_deal(tx, d));
    w.check_tasks(d.id, "Study the tender documentation | ivanov | due +2d | announcement | required | open");

    w.advance(DAY);
    let task = w.open_task(d.id);
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    w.check_tasks(
        d.id,
        "Study the tender documentation | ivanov | due +2d | announcement | required | done
         Prepare the bid documents | ivanov | due +8d | documentation | required | open",
    );

    // The bid documents are done, but the tender number is missing: the deal waits.
    w.advance(DAY);
    let task = w.open_task(d.id);
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    let d = w.load(d.id);
    assert_eq!(d.stage.as_deref(), Some("documentation"));
    assert_eq!(
        e.unmet(&w.fx.store.read().unwrap(), &d).unwrap(),
        ["custom.tender_number: is required before leaving stage \"documentation\""]
    );
    let err = w.refused(w.ivanov, |tx| e.advance(tx, d.id, d.version));
    invalid(&err, "custom.tender_number", "is required before leaving stage \"documentation\"");

    // Filling it in is enough: below 5,000,000 the route skips the approval.
    w.advance(HOUR);
    let mut numbered = d.clone();
    numbered.custom.insert("tender_number".into(), CustomValue::String("0373200001226000042".into()));
    let d = w.run(w.ivanov, |tx| e.update(tx, numbered));
    assert_eq!((d.stage.as_deref(), d.probability), (Some("bid"), Some(50)));
    w.advance(2 * DAY);
    let task = w.open_task(d.id);
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    let d = w.load(d.id);
    assert_eq!(d.stage.as_deref(), Some("award"));
    // Award is the end of the route: no tasks, and nothing to advance to.
    let err = w.refused(w.ivanov, |tx| e.advance(tx, d.id, d.version));
    process_error(&err, d.id, "is in \"award\", the end of its route: close it as won or lost");
    w.advance(5 * DAY);
    let d = w.run(w.ivanov, |tx| e.close(tx, d.id, d.version, Outcome::Won));
    w.check_history(
        d.id,
        "0 create -/- -> announcement/in_progress at +0 dwell - by ivanov
         1 route announcement/in_progress -> documentation/in_progress at +1d dwell 1d by ivanov
         2 route documentation/in_progress -> bid/in_progress at +2d1h dwell 1d1h by ivanov
         3 route bid/in_progress -> award/in_progress at +4d1h dwell 2d by ivanov
         4 won award/in_progress -> award/won at +9d1h dwell 5d by ivanov",
    );
    w.check_tasks(
        d.id,
        "Study the tender documentation | ivanov | due +2d | announcement | required | done
         Prepare the bid documents | ivanov | due +8d | documentation | required | done
         Submit the bid on the tender platform | ivanov | due +5d1h | bid | required | done",
    );
}

/// A tender of `amount` with its tender number, in announcement.
fn tender(w: &World, e: &Engine, amount: i64) -> Deal {
    let mut d = new_deal(w.client, w.ivanov, amount);
    d.kind = "tender".into();
    d.stage = None;
    d.custom.insert("tender_number".into(), CustomValue::String("0373200001226000042".into()));
    w.run(w.ivanov, |tx| e.create_deal(tx, d))
}

/// A day later, `actor` completes the deal's open task.
fn next_day_complete(w: &World, e: &Engine, deal: DealId, actor: UserId) -> Deal {
    w.advance(DAY);
    let task = w.open_task(deal);
    w.run(actor, |tx| e.complete_task(tx, task.id, task.version));
    w.load(deal)
}

/// A tender of `amount` taken through announcement and documentation by its manager.
fn tender_to_documentation_end(w: &World, e: &Engine, amount: i64) -> Deal {
    let d = tender(w, e, amount);
    next_day_complete(w, e, d.id, w.ivanov);
    next_day_complete(w, e, d.id, w.ivanov)
}

fn large_bids_branch_to_an_approval_by_the_head(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let small = tender_to_documentation_end(&w, &e, 4_999_999);
    assert_eq!(small.stage.as_deref(), Some("bid"));
    let d = tender_to_documentation_end(&w, &e, 5_000_000);
    assert_eq!(d.stage.as_deref(), Some("approval"));
    // The head of ivanov's department approves, not the head who happens to come first.
    let task = w.open_task(d.id);
    assert_eq!(
        (task.title.as_str(), task.executor, task.due),
        ("Approve the bid price", w.sidorova, Some(T0.plus_millis(6 * DAY)))
    );
    assert_eq!(w.fx.store.read().unwrap().tasks_of(w.kuznetsov, TaskStatus::Open, 10).unwrap(), []);
    w.advance(HOUR);
    w.run(w.sidorova, |tx| e.complete_task(tx, task.id, task.version));
    w.check_history(
        d.id,
        "0 create -/- -> announcement/in_progress at +2d dwell - by ivanov
         1 route announcement/in_progress -> documentation/in_progress at +3d dwell 1d by ivanov
         2 route documentation/in_progress -> approval/in_progress at +4d dwell 1d by ivanov
         3 route approval/in_progress -> bid/in_progress at +4d1h dwell 1h by sidorova",
    );
    w.check_history(
        small.id,
        "0 create -/- -> announcement/in_progress at +0 dwell - by ivanov
         1 route announcement/in_progress -> documentation/in_progress at +1d dwell 1d by ivanov
         2 route documentation/in_progress -> bid/in_progress at +2d dwell 1d by ivanov",
    );

    // Without an active head in the department, any head approves; without any, the route
    // stops with a message saying why, and the task that would have moved it stays open.
    let w = world(backend);
    let deactivate = |w: &World, user: UserId| {
        w.fx.store
            .transact(None, |tx| {
                let mut u: User = tx.load(user)?;
                u.active = false;
                tx.update(u)
            })
            .unwrap();
    };
    deactivate(&w, w.sidorova);
    let d = tender_to_documentation_end(&w, &e, 6_000_000);
    assert_eq!(w.open_task(d.id).executor, w.kuznetsov);
    deactivate(&w, w.kuznetsov);
    let d = tender(&w, &e, 6_000_000);
    next_day_complete(&w, &e, d.id, w.ivanov);
    let task = w.open_task(d.id);
    let err = w.refused(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    process_error(&err, d.id, "task \"Approve the bid price\": no active user has the head role");
}

fn hooks_choose_the_route_and_the_assignee(backend: Backend) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut hooks = Hooks::new();
    hooks.register(
        "approval_decision",
        handler(|input| {
            let Some(Subject::Deal(d)) = &input.after else { return Err(Fault("no deal".into())) };
            Ok(Answer::Stage(if d.comment.contains("rework") {
                Some("documentation".into())
            } else if d.comment.contains("jump") {
                Some("award".into())
            } else {
                None
            }))
        }),
    );
    let log = seen.clone();
    hooks.register(
        "bid_specialist",
        handler(move |input| {
            let task = input.task.expect("task.assignee gets the task");
            log.lock().unwrap().push((input.process_kind.map(str::to_string), task.title.clone()));
            Ok(Answer::Assignee(Some("tender.specialist".into())))
        }),
    );
    hooks.bind(HookPoint::DealRoute, "approval_decision", &["tender"]).unwrap();
    hooks.bind(HookPoint::TaskAssignee, "bid_specialist", &["tender"]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);

    // The head sends the bid back for rework instead of on to the bid.
    let d = tender_to_documentation_end(&w, &e, 8_000_000);
    assert_eq!(d.stage.as_deref(), Some("approval"));
    let mut d = d;
    d.comment = "price too low, rework".into();
    let d = w.run(w.sidorova, |tx| e.update(tx, d));
    w.advance(HOUR);
    let task = w.open_task(d.id);
    w.run(w.sidorova, |tx| e.complete_task(tx, task.id, task.version));
    let d = w.load(d.id);
    assert_eq!(d.stage.as_deref(), Some("documentation"));
    let history = w.fx.store.read().unwrap().stage_history(d.id).unwrap();
    assert_eq!(
        w.step_line(history.last().unwrap()),
        "3 route approval/in_progress -> documentation/in_progress at +2d1h dwell 1h by sidorova"
    );
    // Documentation starts over with a new task; done, it goes to approval again.
    let mut d = d;
    d.comment = "jump".into();
    let d = w.run(w.ivanov, |tx| e.update(tx, d));
    let task = w.open_task(d.id);
    assert_eq!(task.title, "Prepare the bid documents");
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    let d = w.load(d.id);
    assert_eq!(d.stage.as_deref(), Some("approval"));
    // A route hook choosing a stage the current one cannot go to is a fault.
    let task = w.open_task(d.id);
    let err = w.refused(w.sidorova, |tx| e.complete_task(tx, task.id, task.version));
    match &err {
        Error::HookFault { hook, handler, message } => {
            assert_eq!((*hook, handler.as_str()), ("deal.route", "approval_decision"));
            assert!(
                message.contains("chose stage \"award\", which stage \"approval\" cannot move to (bid, documentation)"),
                "{message}"
            );
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    let mut d = d;
    d.comment = String::new();
    let d = w.run(w.ivanov, |tx| e.update(tx, d));
    w.run(w.sidorova, |tx| e.complete_task(tx, task.id, task.version));
    let d = w.load(d.id);
    assert_eq!(d.stage.as_deref(), Some("bid"));
    // The bid task's assignee is the hook's.
    let task = w.open_task(d.id);
    assert_eq!((task.title.as_str(), task.executor), ("Submit the bid on the tender platform", w.specialist));
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("tender".to_string()), "Submit the bid on the tender platform".to_string())]
    );
    assert_eq!(w.fx.store.read().unwrap().tasks_of(w.specialist, TaskStatus::Open, 10).unwrap(), [task]);

    // Without the hook bound, the task goes to the manager; naming a user who does not
    // exist is the hook's fault.
    let mut hooks = Hooks::new();
    hooks.register("nobody", handler(|_| Ok(Answer::Assignee(Some("ghost".into())))));
    hooks.bind(HookPoint::TaskAssignee, "nobody", &[]).unwrap();
    let ghostly = native_engine(hooks);
    let plain = Engine::without_hooks();
    let d = tender_to_documentation_end(&w, &plain, 10_000);
    assert_eq!(w.open_task(d.id).executor, w.ivanov);
    let d = tender(&w, &ghostly, 10_000);
    next_day_complete(&w, &ghostly, d.id, w.ivanov);
    let task = w.open_task(d.id);
    let err = w.refused(w.ivanov, |tx| ghostly.complete_task(tx, task.id, task.version));
    match &err {
        Error::HookFault { hook, handler, message } => {
            assert_eq!((*hook, handler.as_str()), ("task.assignee", "nobody"));
            assert!(message.contains("there is no user \"ghost\""), "{message}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn a_stageless_project_only_changes_status(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "project", 30_000_000);
    assert_eq!((d.stage.as_deref(), d.probability), (None, None));
    w.advance(DAY);
    let d = w.run(w.ivanov, |tx| e.hold(tx, d.id, d.version, "  waiting for funding "));
    w.advance(10 * DAY);
    let d = w.run(w.petrov, |tx| e.resume(tx, d.id, d.version));
    w.advance(2 * DAY);
    let outcome =
        Outcome::Lost { reason: "no_budget".into(), competitor: None, comment: "frozen until next year".into() };
    let d = w.run(w.ivanov, |tx| e.close(tx, d.id, d.version, outcome));
    assert_eq!(
        (d.status, d.loss_reason.as_deref(), d.comment.as_str(), d.probability),
        (DealStatus::Lost, Some("no_budget"), "frozen until next year", Some(0))
    );
    w.check_history(
        d.id,
        "0 create -/- -> -/in_progress at +0 dwell - by ivanov
         1 hold -/in_progress -> -/on_hold at +1d dwell - by ivanov note \"waiting for funding\"
         2 resume -/on_hold -> -/in_progress at +11d dwell - by petrov
         3 lost -/in_progress -> -/lost at +13d dwell 13d by ivanov note \"no_budget\"",
    );
}

fn reactions_apply_in_the_same_transaction(backend: Backend) {
    let depths = Arc::new(Mutex::new(Vec::new()));
    let log = depths.clone();
    let mut hooks = Hooks::new();
    hooks.register(
        "on_stage",
        handler(move |input| {
            let t = input.transition.expect("a transition");
            log.lock().unwrap().push((t.how, input.depth));
            Ok(Answer::Actions(match (t.how, t.to_stage.as_deref()) {
                (How::Manual, Some("proposal")) => vec![
                    Action::CreateTask {
                        title: "Send the quote".into(),
                        description: "Use the quote template".into(),
                        executor: Some("petrov".into()),
                        due_in_minutes: Some(120),
                        required: false,
                    },
                    Action::SetField { field: "probability".into(), value: 55.into() },
                    Action::SetField { field: "custom.delivery_region".into(), value: "volga".into() },
                    Action::AddNote { subject: "Quote stage reached".into(), body: "Prepare the quote".into() },
                ],
                (How::Manual, Some("negotiation")) => {
                    vec![Action::PutOnHold { comment: "waiting for the client's lawyers".into() }]
                }
                _ => Vec::new(),
            }))
        }),
    );
    hooks.bind(HookPoint::DealAfterTransition, "on_stage", &["b2b_sale"]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "b2b_sale", 1000);
    let d = w.run(w.ivanov, |tx| {
        let d = e.move_deal(tx, d.id, d.version, "needs_analysis", None)?;
        e.set_checked(tx, d.id, d.version, "needs_recorded", true)
    });
    w.advance(HOUR);

    // Inside the transaction the move and everything the reaction did are visible together;
    // dropped, the transaction leaves none of it.
    let before = w.fx.dump();
    {
        let mut tx = w.fx.store.write(Some(w.ivanov)).unwrap();
        let moved = e.move_deal(&mut tx, d.id, d.version, "proposal", None).unwrap();
        assert_eq!(moved.probability, Some(55));
        assert_eq!(moved.custom.get("delivery_region"), Some(&CustomValue::Enum("volga".into())));
        assert_eq!(tx.tasks_of_deal(d.id).unwrap().len(), 1);
        assert_eq!(
            tx.find::<Interaction>(Index::InteractionByDeal, &d.id.raw().to_bytes(), None, 10).unwrap().len(),
            1
        );
    }
    assert!(w.fx.dump() == before);

    let moved = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "proposal", None));
    assert_eq!((moved.stage.as_deref(), moved.probability), (Some("proposal"), Some(55)));
    w.check_tasks(d.id, "Send the quote | petrov | due +3h | proposal | optional | open");
    let r = w.fx.store.read().unwrap();
    let notes = r.find::<Interaction>(Index::InteractionByDeal, &d.id.raw().to_bytes(), None, 10).unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (notes[0].kind, notes[0].subject.as_str(), notes[0].body.as_str(), notes[0].partner, notes[0].at),
        (InteractionKind::Note, "Quote stage reached", "Prepare the quote", w.client, T0.plus_millis(HOUR))
    );
    drop(r);

    w.advance(DAY);
    let held = w.run(w.ivanov, |tx| e.move_deal(tx, moved.id, moved.version, "negotiation", None));
    assert_eq!((held.stage.as_deref(), held.status), (Some("negotiation"), DealStatus::OnHold));
    w.check_history(
        d.id,
        "0 create -/- -> qualification/in_progress at +0 dwell - by ivanov
         1 manual qualification/in_progress -> needs_analysis/in_progress at +0 dwell 0 by ivanov
         2 manual needs_analysis/in_progress -> proposal/in_progress at +1h dwell 1h by ivanov
         3 manual proposal/in_progress -> negotiation/in_progress at +1d1h dwell 1d by ivanov
         4 hold negotiation/in_progress -> negotiation/on_hold at +1d1h dwell - by ivanov note \"waiting for the client's lawyers\"",
    );
    // Each reaction saw how deep it was: the hold came from a reaction.
    let calls = depths.lock().unwrap().clone();
    assert_eq!(calls[calls.len() - 2..], [(How::Manual, 0), (How::Hold, 1)]);
}

fn an_interaction_triggers_its_reactions(backend: Backend) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut hooks = Hooks::new();
    hooks.register(
        "follow_up",
        handler(move |input| {
            let Some(Subject::Interaction(it)) = &input.after else { return Err(Fault("no interaction".into())) };
            let json = serde_json::to_value(it).unwrap();
            log.lock().unwrap().push((input.entity, input.process_kind.map(str::to_string), json["subject"].clone()));
            Ok(Answer::Actions(vec![Action::CreateTask {
                title: format!("Follow up: {}", json["subject"].as_str().unwrap_or("")),
                description: String::new(),
                executor: None,
                due_in_minutes: Some(24 * 60),
                required: false,
            }]))
        }),
    );
    hooks.bind(HookPoint::InteractionAfterCreate, "follow_up", &[]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "repeat_sale", 1000);
    w.advance(HOUR);
    let mut call = Interaction::new(InteractionKind::Call, T0, w.client, "Price request");
    call.deal = Some(d.id);
    let call = w.run(w.petrov, |tx| e.create(tx, call));
    assert_eq!(call.created_by, Some(w.petrov));
    w.check_tasks(d.id, "Follow up: Price request | ivanov | due +1d1h | request | optional | open");
    assert_eq!(
        *seen.lock().unwrap(),
        [(EntityKind::Interaction, Some("repeat_sale".to_string()), serde_json::json!("Price request"))]
    );
}

fn open_and_overdue_tasks(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    // Tenders created a day apart: each has its study task due two days later.
    let mut deals = Vec::new();
    for _ in 0..3 {
        deals.push(w.deal(&e, "tender", 1000));
        w.advance(DAY);
    }
    let mut other = new_deal(w.client, w.petrov, 1000);
    other.kind = "tender".into();
    other.stage = None;
    let other = w.run(w.petrov, |tx| e.create_deal(tx, other));
    let study: Vec<Task> = deals.iter().map(|d| w.open_task(d.id)).collect();
    let petrovs = w.open_task(other.id);
    assert_eq!(study.iter().map(|t| t.due).collect::<Vec<_>>(), [2, 3, 4].map(|d| Some(T0.plus_millis(d * DAY))));

    let r = w.fx.store.read().unwrap();
    assert_eq!(r.tasks_of(w.ivanov, TaskStatus::Open, 10).unwrap(), study);
    assert_eq!(r.tasks_of(w.ivanov, TaskStatus::Open, 2).unwrap(), study[..2]);
    assert_eq!(r.tasks_of(w.petrov, TaskStatus::Open, 10).unwrap(), std::slice::from_ref(&petrovs));
    // At +3d1ms the first two are overdue, the most overdue first; the one due now is not.
    let now = T0.plus_millis(3 * DAY + 1);
    assert_eq!(r.overdue_tasks(now, 10).unwrap(), study[..2]);
    assert_eq!(r.overdue_tasks(T0.plus_millis(3 * DAY), 10).unwrap(), study[..1]);
    assert_eq!(r.overdue_tasks(now, 1).unwrap(), study[..1]);
    assert!(study[0].is_overdue(now) && !study[2].is_overdue(now));
    drop(r);

    // Done and cancelled tasks are neither open nor overdue.
    let done = w.run(w.ivanov, |tx| e.complete_task(tx, study[0].id, study[0].version));
    // A manager cannot call off the route's required work; a head can.
    let refused = w.fx.store.transact(Some(w.ivanov), |tx| e.cancel_task(tx, study[1].id, study[1].version));
    assert!(matches!(refused, Err(Error::Forbidden(ref m)) if m.contains("required by stage")), "{refused:?}");
    let cancelled = w.run(w.sidorova, |tx| e.cancel_task(tx, study[1].id, study[1].version));
    assert_eq!((done.status, cancelled.status), (TaskStatus::Done, TaskStatus::Cancelled));
    let r = w.fx.store.read().unwrap();
    let open = r.tasks_of(w.ivanov, TaskStatus::Open, 10).unwrap();
    assert!(open.contains(&study[2]) && !open.iter().any(|t| t.id == study[0].id || t.id == study[1].id));
    assert_eq!(r.tasks_of(w.ivanov, TaskStatus::Done, 10).unwrap(), [done]);
    assert_eq!(r.tasks_of(w.ivanov, TaskStatus::Cancelled, 10).unwrap(), [cancelled]);
    assert_eq!(r.overdue_tasks(T0.plus_millis(4 * DAY + 1), 10).unwrap(), [study[2].clone()]);
    assert_eq!(r.overdue_tasks(T0.plus_millis(5 * DAY + 1), 10).unwrap()[..2], [study[2].clone(), petrovs]);
    drop(r);
    assert_eq!(w.fx.store.verify_indexes().unwrap(), Vec::<String>::new());

    // Closing a deal cancels its open stage tasks.
    let d = w.load(deals[2].id);
    w.run(w.ivanov, |tx| e.close(tx, d.id, d.version, lost("price")));
    assert_eq!(w.tasks(d.id)[0].status, TaskStatus::Cancelled);
}

// ---------------------------------------------------------------------------------------
// Any sequence of steps keeps every history consistent.

#[derive(Debug, Clone)]
enum Op {
    Create {
        kind: usize,
        big: bool,
    },
    /// To the next stage of the deal's kind (`Some(true)`), the previous one (`Some(false)`),
    /// or any stage of any kind (`None`, with `stage`).
    Move {
        deal: usize,
        next: Option<bool>,
        stage: usize,
    },
    Advance {
        deal: usize,
    },
    Check {
        deal: usize,
        done: bool,
    },
    Hold {
        deal: usize,
    },
    Resume {
        deal: usize,
    },
    Won {
        deal: usize,
    },
    Lost {
        deal: usize,
        known_reason: bool,
    },
    Reopen {
        deal: usize,
        stage: Option<usize>,
    },
    Number {
        deal: usize,
    },
    Complete {
        task: usize,
    },
    Cancel {
        task: usize,
    },
}

const KINDS: [&str; 3] = ["b2b_sale", "tender", "project"];
const ALL_STAGES: [&str; 11] = [
    "qualification",
    "needs_analysis",
    "proposal",
    "negotiation",
    "contract",
    "announcement",
    "documentation",
    "approval",
    "bid",
    "award",
    "nowhere",
];

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..16;
    prop_oneof![
        2 => (0usize..3, any::<bool>()).prop_map(|(kind, big)| Op::Create { kind, big }),
        6 => (i.clone(), proptest::option::weighted(0.8, proptest::bool::weighted(0.7)), 0usize..11)
            .prop_map(|(deal, next, stage)| Op::Move { deal, next, stage }),
        2 => i.clone().prop_map(|deal| Op::Advance { deal }),
        2 => (i.clone(), any::<bool>()).prop_map(|(deal, done)| Op::Check { deal, done }),
        1 => i.clone().prop_map(|deal| Op::Hold { deal }),
        1 => i.clone().prop_map(|deal| Op::Resume { deal }),
        1 => i.clone().prop_map(|deal| Op::Won { deal }),
        1 => (i.clone(), any::<bool>()).prop_map(|(deal, known_reason)| Op::Lost { deal, known_reason }),
        2 => (i.clone(), proptest::option::weighted(0.3, 0usize..11))
            .prop_map(|(deal, stage)| Op::Reopen { deal, stage }),
        1 => i.clone().prop_map(|deal| Op::Number { deal }),
        4 => i.clone().prop_map(|task| Op::Complete { task }),
        1 => i.prop_map(|task| Op::Cancel { task }),
    ]
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

/// Tries one random step through the engine.
fn step(
    w: &World,
    e: &Engine,
    tx: &mut WriteTxn<'_>,
    op: Op,
    deals: &[Deal],
    tasks: &[Task],
    stale: bool,
) -> crmkit_core::Result<()> {
    let version = |d: &Deal| if stale { d.version + 1 } else { d.version };
    let deal = |i: usize| pick(deals, i).ok_or(Error::NotAllowed("no deals yet".into()));
    match op {
        Op::Create { kind, big } => {
            let mut d = new_deal(w.client, w.ivanov, if big { 6_000_000 } else { 100_000 });
            d.kind = KINDS[kind].into();
            d.stage = None;
            d.source = Some("website".into());
            e.create_deal(tx, d).map(drop)
        }
        Op::Move { deal: i, next, stage } => {
            let d = deal(i)?;
            let stages = &w.fx.store.settings().process_kind(&d.kind).expect("a kind").stages;
            let at = stages.iter().position(|s| Some(&s.id) == d.stage.as_ref());
            let to = match (next, at) {
                (None, _) | (_, None) => ALL_STAGES[stage],
                (Some(true), Some(at)) => stages.get(at + 1).map_or("nowhere", |s| s.id.as_str()),
                (Some(false), Some(at)) => at.checked_sub(1).map_or("nowhere", |p| stages[p].id.as_str()),
            };
            e.move_deal(tx, d.id, version(&d), to, None).map(drop)
        }
        Op::Advance { deal: i } => deal(i).and_then(|d| e.advance(tx, d.id, version(&d)).map(drop)),
        Op::Check { deal: i, done } => {
            deal(i).and_then(|d| e.set_checked(tx, d.id, version(&d), "needs_recorded", done).map(drop))
        }
        Op::Hold { deal: i } => deal(i).and_then(|d| e.hold(tx, d.id, version(&d), "pause").map(drop)),
        Op::Resume { deal: i } => deal(i).and_then(|d| e.resume(tx, d.id, version(&d)).map(drop)),
        Op::Won { deal: i } => deal(i).and_then(|d| e.close(tx, d.id, version(&d), Outcome::Won).map(drop)),
        Op::Lost { deal: i, known_reason } => deal(i)
            .and_then(|d| e.close(tx, d.id, version(&d), lost(if known_reason { "price" } else { "terms" })).map(drop)),
        Op::Reopen { deal: i, stage } => {
            deal(i).and_then(|d| e.reopen(tx, d.id, version(&d), stage.map(|s| ALL_STAGES[s])).map(drop))
        }
        Op::Number { deal: i } => deal(i).and_then(|mut d| {
            d.custom.insert("tender_number".into(), CustomValue::String("42".into()));
            d.version = version(&d);
            e.update(tx, d).map(drop)
        }),
        Op::Complete { task } | Op::Cancel { task } => {
            let t = pick(tasks, task).ok_or(Error::NotAllowed("no open tasks".into()))?;
            let v = if stale { t.version + 1 } else { t.version };
            if matches!(op, Op::Complete { .. }) {
                e.complete_task(tx, t.id, v).map(drop)
            } else {
                e.cancel_task(tx, t.id, v).map(drop)
            }
        }
    }
}

/// Runs each `(op, actor, stale, wait)`: after `wait` ms, user `actor` (ivanov, petrov,
/// sidorova) tries `op`, with a version one ahead of the stored one when `stale`. After each,
/// every deal's history must be consistent with the deal and extend the one seen before.
fn run_random(ops: Vec<(Op, usize, bool, i64)>, backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let users = [w.ivanov, w.petrov, w.sidorova];
    for (kind, amount) in [("b2b_sale", 1000), ("tender", 1000), ("tender", 5_000_000), ("project", 1000)] {
        w.deal(&e, kind, amount);
    }
    let mut seen: std::collections::BTreeMap<DealId, Vec<StageChange>> = Default::default();
    let (tried, mut accepted) = (ops.len(), 0);
    for (op, actor, stale, wait) in ops {
        w.advance(wait);
        let r = w.fx.store.read().unwrap();
        let deals: Vec<Deal> = r.list(None, usize::MAX).unwrap();
        let tasks: Vec<Task> =
            r.list::<Task>(None, usize::MAX).unwrap().into_iter().filter(|t| t.status == TaskStatus::Open).collect();
        drop(r);
        let actor = users[actor];
        let before = w.fx.dump();
        // The transaction commits whatever the step says: a refused step must have taken
        // back everything it wrote by itself.
        let mut result: crmkit_core::Result<()> = Ok(());
        w.fx.store
            .transact(Some(actor), |tx| {
                result = step(&w, &e, tx, op.clone(), &deals, &tasks, stale);
                Ok(())
            })
            .unwrap();
        match &result {
            Ok(()) => {
                assert!(!stale || matches!(op, Op::Create { .. }), "{op:?} with a stale version was accepted");
                accepted += 1;
            }
            Err(err) => {
                assert!(
                    matches!(
                        err,
                        Error::Process { .. }
                            | Error::Invalid(_)
                            | Error::Forbidden(_)
                            | Error::Conflict { .. }
                            | Error::NotAllowed(_)
                    ),
                    "{op:?}: {err:?}"
                );
                assert!(w.fx.dump() == before, "{op:?} was refused ({err}) but wrote something");
            }
        }

        let r = w.fx.store.read().unwrap();
        for d in r.list::<Deal>(None, usize::MAX).unwrap() {
            let history = r.stage_history(d.id).unwrap();
            check_history(&d, &history, w.fx.store.settings())
                .unwrap_or_else(|e| panic!("after {op:?}: {e}\n{history:#?}"));
            let earlier = seen.insert(d.id, history.clone()).unwrap_or_default();
            assert!(
                history.len() >= earlier.len() && history[..earlier.len()] == earlier[..],
                "after {op:?}: the history of {} was rewritten",
                d.id
            );
            assert!(d.stage_entered_at.is_some());
            // Open stage tasks belong to the deal's current stage of a deal not closed.
            for t in r.tasks_of_deal(d.id).unwrap() {
                if t.status == TaskStatus::Open && t.stage.is_some() {
                    assert!(!d.status.is_closed() && t.stage == d.stage, "after {op:?}: {t:#?} of {d:#?}");
                }
            }
        }
    }
    assert_eq!(w.fx.store.verify_indexes().unwrap(), Vec::<String>::new());
    // An engine that refused everything would keep every history consistent: ask that a
    // good part of the steps went through.
    if tried >= 20 {
        assert!(accepted * 10 >= tried, "only {accepted} of {tried} steps were accepted");
    }
}

/// Random steps, each with its actor, whether its version is stale, and the time before it.
fn steps() -> impl Strategy<Value = Vec<(Op, usize, bool, i64)>> {
    proptest::collection::vec(
        (op(), 0usize..3, proptest::bool::weighted(0.1), prop_oneof![Just(0i64), 1i64..3 * DAY]),
        1..50,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_steps_keeps_histories_consistent_and_append_only_on_redb(ops in steps()) {
        run_random(ops, Backend::Redb);
    }

    #[test]
    fn any_sequence_of_steps_keeps_histories_consistent_and_append_only_on_memory(ops in steps()) {
        run_random(ops, Backend::Memory);
    }
}

fn config_binds_handlers_the_program_registers(backend: Backend) {
    // A guard bound in config for b2b_sale only: other kinds do not see it.
    let text = format!(
        "{DEFAULT_CONFIG}\n[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"no_moves\"\nkinds = [\"b2b_sale\"]\n"
    );
    let settings = Settings::parse(&text, Path::new("hooks.toml")).unwrap();
    let w = world_with(backend, settings.clone());
    // The default config binds the shipped scripts: here a stand-in for the Rhai runtime
    // answers for them, found by the bindings' runtime as the real one would be.
    struct AllowAll;
    impl HandlerProvider for AllowAll {
        fn runtime(&self) -> &str {
            "rhai"
        }
        fn handler(&self, b: &HookBinding) -> Result<Arc<dyn Handler>, String> {
            assert!(b.handler.contains(".rhai::"), "{b:?}");
            Ok(Arc::new(handler(|_| Ok(Answer::Allow))))
        }
    }
    let mut scripts = Hooks::new();
    scripts.provider(Arc::new(AllowAll));
    let mut hooks = scripts.clone();
    hooks.register("no_moves", handler(|_| Ok(Answer::Reject { message: "frozen".into(), field: None })));
    let e = Engine::new(&settings, hooks).unwrap();
    let b2b = w.deal(&e, "b2b_sale", 100);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, b2b.id, b2b.version, "needs_analysis", None));
    assert!(matches!(&err, Error::Rejected { handler, message, .. } if handler == "no_moves" && message == "frozen"));
    let repeat = w.deal(&e, "repeat_sale", 100);
    let moved = w.run(w.ivanov, |tx| e.move_deal(tx, repeat.id, repeat.version, "quote", None));
    assert_eq!(moved.stage.as_deref(), Some("quote"));

    // A binding to a handler nobody registered names the handler, the hook point and the
    // binding's line; a binding to a runtime that is not there says which runtimes are.
    let err = Engine::new(&settings, scripts).unwrap_err().to_string();
    assert!(
        err.contains("hooks.toml:")
            && err.contains("no_moves bound to deal.before_transition: native handler \"no_moves\" is not registered"),
        "{err}"
    );
    let err = Engine::new(&settings, Hooks::new()).unwrap_err().to_string();
    assert_eq!(err.lines().count(), 4, "every binding that cannot be made is listed: {err}");
    assert!(err.contains("no rhai runtime is available here (runtimes: native)"), "{err}");

    // A panicking native handler is a fault: named, the write refused, the engine goes on.
    let mut hooks = Hooks::new();
    hooks.register("boom", handler(|_| panic!("the handler broke")));
    hooks.bind(HookPoint::DealBeforeTransition, "boom", &["repeat_sale"]).unwrap();
    let e = native_engine(hooks);
    let before = w.fx.dump();
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, moved.id, moved.version, "order", None));
    assert_eq!(err.to_string(), "deal.before_transition: handler boom failed: panicked: the handler broke");
    assert_eq!(w.fx.dump(), before);
    let b2b_moved = w.run(w.ivanov, |tx| e.move_deal(tx, b2b.id, b2b.version, "needs_analysis", None));
    assert_eq!(b2b_moved.stage.as_deref(), Some("needs_analysis"));

    // Config errors name the line: an unknown hook point, a kind that does not exist.
    let bad = DEFAULT_CONFIG.to_string() + "\n[[hooks]]\npoint = \"deal.before_lunch\"\nhandler = \"x\"\n";
    let err = Settings::parse(&bad, Path::new("hooks.toml")).unwrap_err().to_string();
    assert!(err.starts_with("hooks.toml:") && err.contains("unknown hook point \"deal.before_lunch\""), "{err}");
    let bad =
        DEFAULT_CONFIG.to_string() + "\n[[hooks]]\npoint = \"deal.route\"\nhandler = \"x\"\nkinds = [\"barter\"]\n";
    let err = Settings::parse(&bad, Path::new("hooks.toml")).unwrap_err().to_string();
    assert!(err.contains("\"barter\" is not a process kind"), "{err}");
}

fn deals_past_their_stage_sla(backend: Backend) {
    use crmkit_core::process::sla_breaches;
    let w = world(backend);
    let e = Engine::without_hooks();
    // qualification has an SLA of 5 days, request (repeat_sale) of 2 days.
    let slow = w.deal(&e, "b2b_sale", 100);
    let quick = w.deal(&e, "repeat_sale", 100);
    let held = w.deal(&e, "repeat_sale", 100);
    w.run(w.ivanov, |tx| e.hold(tx, held.id, held.version, "waiting for the budget"));
    w.advance(3 * DAY);
    let r = w.fx.store.read().unwrap();
    let now = crmkit_core::time::Clock::now(&*w.fx.clock);
    let breaches = sla_breaches(&r, now, 10).unwrap();
    assert_eq!(breaches.iter().map(|b| b.deal.id).collect::<Vec<_>>(), [quick.id]);
    assert_eq!((breaches[0].sla_ms, breaches[0].over_ms), (2 * DAY, DAY));
    drop(r);
    // Moving on restarts the stage's clock.
    w.run(w.ivanov, |tx| e.move_deal(tx, quick.id, quick.version, "quote", None));
    w.advance(3 * DAY);
    let r = w.fx.store.read().unwrap();
    let now = crmkit_core::time::Clock::now(&*w.fx.clock);
    let breaches = sla_breaches(&r, now, 10).unwrap();
    assert_eq!(breaches.iter().map(|b| (b.deal.id, b.over_ms)).collect::<Vec<_>>(), [(slow.id, DAY)]);
    assert_eq!(sla_breaches(&r, now, 0).unwrap(), []);
}

fn what_the_engine_owns_cannot_be_changed_around_it(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let t = tender(&w, &e, 100);
    let task = w.open_task(t.id);

    // A task's state: not by a plain update, not by deleting a stage's task.
    let err = w.refused(w.petrov, |tx| {
        let mut done = task.clone();
        done.status = TaskStatus::Done;
        done.finished_at = Some(T0);
        e.update(tx, done)
    });
    assert!(matches!(&err, Error::Invalid(f) if f.entity == EntityKind::Task && f.field == "status"), "{err}");
    let err = w.refused(w.ivanov, |tx| tx.delete::<Task>(task.id, task.version));
    assert!(err.to_string().contains("cannot be deleted"), "{err}");

    // A deal's kind, and a closed deal's loss reason.
    let err = w.refused(w.ivanov, |tx| {
        let mut d = w.load(t.id);
        d.kind = "repeat_sale".into();
        d.stage = Some("request".into());
        tx.update(d)
    });
    invalid(&err, "kind", "process engine");
    let b2b = w.deal(&e, "b2b_sale", 100);
    let b2b = w.run(w.ivanov, |tx| e.close(tx, b2b.id, b2b.version, lost("price")));
    let err = w.refused(w.ivanov, |tx| {
        let mut d = b2b.clone();
        d.loss_reason = Some("no_budget".into());
        tx.update(d)
    });
    invalid(&err, "loss_reason", "process engine");

    // Deals created without the engine start at the start, and not in a managed kind.
    let err = w.refused(w.ivanov, |tx| {
        let mut d = new_deal(w.client, w.ivanov, 10);
        d.stage = Some("proposal".into());
        tx.create(d)
    });
    invalid(&err, "stage", "starts in its first stage");
    let err = w.refused(w.ivanov, |tx| {
        let mut d = new_deal(w.client, w.ivanov, 10);
        d.kind = "tender".into();
        d.stage = Some("announcement".into());
        tx.create(d)
    });
    invalid(&err, "kind", "managed");
}

fn reopening_does_not_skip_the_route_and_counts_no_dwell(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let t = tender(&w, &e, 100);
    let t = next_day_complete(&w, &e, t.id, w.ivanov); // announcement → documentation
    let t = w.run(w.ivanov, |tx| e.close(tx, t.id, t.version, lost("price")));
    w.advance(10 * DAY);
    let err = w.refused(w.sidorova, |tx| e.reopen(tx, t.id, t.version, Some("award")));
    process_error(&err, t.id, "cannot be reopened in stage \"award\"");
    let t = w.run(w.sidorova, |tx| e.reopen(tx, t.id, t.version, Some("announcement")));
    let history = w.fx.store.read().unwrap().stage_history(t.id).unwrap();
    let reopen = history.last().unwrap();
    assert_eq!((reopen.how, reopen.dwell_ms), (How::Reopen, None));
    check_history(&t, &history, w.fx.store.settings()).unwrap();
    // The reopened stage's tasks are there again, due from the reopening.
    assert_eq!(w.open_task(t.id).stage.as_deref(), Some("announcement"));
}

fn a_deal_resumed_after_its_tasks_were_done_moves_on(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let t = tender(&w, &e, 100);
    let t = w.run(w.ivanov, |tx| e.hold(tx, t.id, t.version, "client on vacation"));
    let task = w.open_task(t.id);
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    assert_eq!(w.load(t.id).stage.as_deref(), Some("announcement"), "a held deal stays");
    let t = w.load(t.id);
    let t = w.run(w.ivanov, |tx| e.resume(tx, t.id, t.version));
    assert_eq!(t.stage.as_deref(), Some("documentation"));
}

fn reactions_with_bad_requests_are_errors_not_panics(backend: Backend) {
    let w = world(backend);
    let mut hooks = Hooks::new();
    hooks.register(
        "far_future",
        handler(|_| {
            Ok(Answer::Actions(vec![Action::CreateTask {
                title: "Later".into(),
                description: String::new(),
                executor: None,
                due_in_minutes: Some(i64::MAX),
                required: false,
            }]))
        }),
    );
    hooks.bind(HookPoint::DealAfterTransition, "far_future", &[]).unwrap();
    hooks.bind(HookPoint::InteractionAfterCreate, "far_future", &[]).unwrap();
    let e = native_engine(hooks);
    let d = w.deal(&e, "b2b_sale", 100);
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    process_error(&err, d.id, "between 0 and ten years");
    // An interaction without a deal gives its reactions nothing to act on.
    let err = w.refused(w.ivanov, |tx| e.create(tx, Interaction::new(InteractionKind::Call, T0, w.client, "Звонок")));
    assert!(err.to_string().contains("belongs to no deal"), "{err}");
}

fn imports_follow_the_rules_of_the_kind(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let step = |days: i64, how: How, stage: &str, status: DealStatus, note: Option<&str>| ImportStep {
        at: T0.plus_millis(days * DAY),
        how,
        to_stage: Some(stage.into()),
        to_status: status,
        actor: None,
        note: note.map(str::to_string),
    };
    let tender_deal = |stage: &str, status: DealStatus| {
        let mut d = new_deal(w.client, w.ivanov, 100);
        d.kind = "tender".into();
        d.stage = Some(stage.into());
        d.status = status;
        if status == DealStatus::Lost {
            d.loss_reason = Some("price".into());
        }
        d
    };
    let ip = DealStatus::InProgress;
    let err = w.refused(w.ivanov, |tx| {
        let steps =
            vec![step(-9, How::Create, "announcement", ip, None), step(-8, How::Manual, "documentation", ip, None)];
        e.import_deal(tx, tender_deal("documentation", ip), steps)
    });
    invalid(&err, "history", "forward steps are route steps");
    let err = w.refused(w.ivanov, |tx| {
        let steps = vec![
            step(-9, How::Create, "announcement", ip, None),
            step(-8, How::Lost, "announcement", DealStatus::Lost, Some("weather")),
        ];
        e.import_deal(tx, tender_deal("announcement", DealStatus::Lost), steps)
    });
    invalid(&err, "history", "loss reason");
    // A valid one, still running in a managed stage, gets that stage's tasks.
    let steps = vec![step(-9, How::Create, "announcement", ip, None), step(-8, How::Route, "documentation", ip, None)];
    let d = w.run(w.ivanov, |tx| e.import_deal(tx, tender_deal("documentation", ip), steps));
    assert_eq!(w.open_task(d.id).stage.as_deref(), Some("documentation"));
}

#[test]
fn a_stage_cannot_route_to_itself() {
    let text = DEFAULT_CONFIG.replacen("to = [\"negotiation\"]", "to = [\"contract\"]", 1);
    let err = Settings::parse(&text, Path::new("self.toml")).unwrap_err().to_string();
    assert!(err.starts_with("self.toml:") && err.contains("cannot move to itself"), "{err}");
}

fn reactions_see_the_deal_exactly_as_it_is_stored(backend: Backend) {
    let w = world(backend);
    let seen: Arc<Mutex<Vec<Deal>>> = Arc::default();
    let log = seen.clone();
    let mut hooks = Hooks::new();
    hooks.register(
        "watch",
        handler(move |i: &HookInput<'_>| {
            if let Some(Subject::Deal(d)) = &i.after {
                log.lock().unwrap().push((*d).clone());
            }
            Ok(Answer::Actions(vec![Action::SetField { field: "comment".into(), value: "seen".into() }]))
        }),
    );
    hooks.bind(HookPoint::DealAfterTransition, "watch", &[]).unwrap();
    let e = native_engine(hooks);
    let d = w.deal(&e, "b2b_sale", 100);
    w.advance(HOUR);
    let moved = w.run(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    let mut shown = seen.lock().unwrap()[0].clone();
    // The reaction's own field is the only difference.
    assert_eq!(moved.comment, "seen");
    shown.comment = "seen".into();
    assert_eq!(shown, moved);
}

fn an_imported_deal_on_hold_in_a_managed_stage_can_go_on(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let step = |days: i64, how: How, stage: &str, status: DealStatus| ImportStep {
        at: T0.plus_millis(days * DAY),
        how,
        to_stage: Some(stage.into()),
        to_status: status,
        actor: None,
        note: None,
    };
    let mut d = new_deal(w.client, w.ivanov, 100);
    d.kind = "tender".into();
    d.stage = Some("documentation".into());
    d.status = DealStatus::OnHold;
    d.custom.insert("tender_number".into(), CustomValue::String("0373200001226000042".into()));
    let steps = vec![
        step(-9, How::Create, "announcement", DealStatus::InProgress),
        step(-8, How::Route, "documentation", DealStatus::InProgress),
        step(-7, How::Hold, "documentation", DealStatus::OnHold),
    ];
    let d = w.run(w.ivanov, |tx| e.import_deal(tx, d, steps));
    let d = w.run(w.ivanov, |tx| e.resume(tx, d.id, d.version));
    let d = next_day_complete(&w, &e, d.id, w.ivanov);
    assert_eq!(d.stage.as_deref(), Some("bid"));
}

/// Cancelling a task: not another's (a manager), not a required stage task even one's own
/// (only heads may call the route's work off), not a stale version, not once it is done or
/// cancelled. Each refusal commits its transaction and leaves the database as it was.
fn cancelling_a_task_is_refused_to_the_wrong_user_and_in_the_wrong_state(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let d = w.deal(&e, "tender", 1000);
    let task = w.open_task(d.id);
    assert!(task.required && task.stage.is_some() && task.executor == w.ivanov, "{task:#?}");
    let err = w.refused(w.petrov, |tx| e.cancel_task(tx, task.id, task.version));
    assert!(
        matches!(&err, Error::Forbidden(m) if m.starts_with("petrov may not cancel task") && m.contains("another user's")),
        "{err:?}"
    );
    let err = w.refused(w.ivanov, |tx| e.cancel_task(tx, task.id, task.version));
    assert!(
        matches!(&err, Error::Forbidden(m) if m.starts_with("ivanov may not cancel task") && m.contains("required by stage \"announcement\"")),
        "{err:?}"
    );
    let err = w.refused(w.sidorova, |tx| e.cancel_task(tx, task.id, task.version + 1));
    assert!(matches!(err, Error::Conflict { kind: EntityKind::Task, given: 2, stored: 1, .. }), "{err:?}");
    // A head may; after that nobody can cancel or complete it again.
    let cancelled = w.run(w.sidorova, |tx| e.cancel_task(tx, task.id, task.version));
    assert_eq!((cancelled.status, cancelled.finished_by), (TaskStatus::Cancelled, Some(w.sidorova)));
    for actor in [w.ivanov, w.sidorova] {
        let err = w.refused(actor, |tx| e.cancel_task(tx, cancelled.id, cancelled.version));
        assert!(matches!(&err, Error::NotAllowed(m) if m.ends_with("is already cancelled")), "{err:?}");
        let err = w.refused(actor, |tx| e.complete_task(tx, cancelled.id, cancelled.version));
        assert!(matches!(&err, Error::NotAllowed(m) if m.ends_with("is already cancelled")), "{err:?}");
    }
    // A done task cannot be cancelled either.
    let b2b = w.deal(&e, "b2b_sale", 1000);
    let mut own = Task::new("Позвонить клиенту", w.ivanov);
    own.due = Some(T0.plus_millis(DAY));
    own.deal = Some(b2b.id);
    let own = w.run(w.ivanov, |tx| tx.create(own));
    let done = w.run(w.ivanov, |tx| e.complete_task(tx, own.id, own.version));
    let err = w.refused(w.ivanov, |tx| e.cancel_task(tx, done.id, done.version));
    assert!(matches!(&err, Error::NotAllowed(m) if m.ends_with("is already done")), "{err:?}");
}

/// The engine's creation of a deal refuses what the store refuses, naming the field: an
/// unknown kind, partner or manager, a negative amount, more decimals than the currency has,
/// a stage that is not the kind's first. Nothing is written, even when the transaction
/// commits.
fn create_deal_refuses_bad_input_naming_the_field(backend: Backend) {
    let w = world(backend);
    let e = Engine::without_hooks();
    let good = || {
        let mut d = new_deal(w.client, w.ivanov, 1000);
        d.stage = None;
        d.source = Some("referral".into());
        d
    };
    let check = |d: Deal, field: &str, needle: &str| {
        let err = w.refused(w.ivanov, |tx| e.create_deal(tx, d));
        match &err {
            Error::Invalid(f) => {
                assert_eq!((f.entity, f.field.as_str()), (EntityKind::Deal, field), "{err}");
                assert!(f.message.contains(needle), "{:?} lacks {needle:?}", f.message);
            }
            Error::Process { message, .. } if field == "-" => assert!(message.contains(needle), "{message}"),
            other => panic!("{field}: expected an invalid field, got {other:?}"),
        }
    };
    check(Deal { kind: "barter".into(), ..good() }, "kind", "\"barter\" is not a configured process kind");
    check(Deal { partner: PartnerId(RawId::new(1, 999)), ..good() }, "partner", "does not exist");
    check(Deal { manager: UserId(RawId::new(1, 998)), ..good() }, "manager", "does not exist");
    let negative = crmkit_core::values::Money::new(rust_decimal::Decimal::from(-1), crmkit_core::values::Currency::RUB);
    check(Deal { amount: negative, ..good() }, "amount", "must not be negative");
    let fractions =
        crmkit_core::values::Money::new(rust_decimal::Decimal::new(10_005, 3), crmkit_core::values::Currency::RUB);
    check(Deal { amount: fractions, ..good() }, "amount", "decimal places");
    check(Deal { title: " ".into(), ..good() }, "title", "required");
    // A deal in progress names no winning competitor.
    check(Deal { competitor: Some(w.competitor), ..good() }, "competitor", "only recorded on a lost deal");
    // And the same deal goes through.
    let d = w.run(w.ivanov, |tx| e.create_deal(tx, good()));
    assert_eq!((d.stage.as_deref(), d.status), (Some("qualification"), DealStatus::InProgress));
}

#[test]
fn engine_refusals_of_tasks_and_new_deals() {
    for backend in [Backend::Redb, Backend::Memory] {
        cancelling_a_task_is_refused_to_the_wrong_user_and_in_the_wrong_state(backend);
        create_deal_refuses_bad_input_naming_the_field(backend);
    }
}

// ---------------------------------------------------------------------------------------
// Closing is leaving the stage; references and free text are checked before any hook.

/// What a guard saw of each step: the point, how, whether it closes, whether it leaves.
type Seen = Arc<Mutex<Vec<(HookPoint, How, bool, bool)>>>;

/// A guard bound to `deal.before_transition` only, refusing every step it sees out of
/// "qualification" — and recording what it saw.
fn leaving_guard() -> (Engine, Seen) {
    let seen: Seen = Arc::default();
    let mut hooks = Hooks::new();
    let record = seen.clone();
    hooks.register(
        "stay",
        handler(move |input| {
            let t = input.transition.expect("a transition");
            record.lock().unwrap().push((input.hook, t.how, t.closes(), t.leaves_stage()));
            let wire = serde_json::to_value(input).unwrap();
            assert_eq!(wire["transition"]["closes"], t.closes());
            assert_eq!(wire["transition"]["leaves_stage"], t.leaves_stage());
            if t.leaves_stage() && t.from_stage.as_deref() == Some("qualification") {
                Ok(Answer::Reject { message: "not out of qualification".into(), field: Some("stage".into()) })
            } else {
                Ok(Answer::Allow)
            }
        }),
    );
    hooks.bind(HookPoint::DealBeforeTransition, "stay", &[]).unwrap();
    (native_engine(hooks), seen)
}

fn closing_a_deal_is_leaving_its_stage(backend: Backend) {
    let w = world(backend);
    let (e, seen) = leaving_guard();
    let d = w.deal(&e, "b2b_sale", 1000);
    let rejected = |err: &Error| {
        assert!(
            matches!(err, Error::Rejected { hook: "deal.before_transition", handler, .. } if handler == "stay"),
            "{err:?}"
        )
    };
    rejected(&w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, Outcome::Won)));
    let full = Outcome::Lost { reason: "price".into(), competitor: Some(w.competitor), comment: "cheaper".into() };
    rejected(&w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, full.clone())));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (HookPoint::DealBeforeTransition, How::Won, true, true),
            (HookPoint::DealBeforeTransition, How::Lost, true, true)
        ]
    );
    // Out of another stage the guard lets both through, and deal.before_close is asked after it.
    let mut hooks = Hooks::new();
    let order: Arc<Mutex<Vec<HookPoint>>> = Arc::default();
    let o = order.clone();
    hooks.register(
        "order",
        handler(move |input| {
            o.lock().unwrap().push(input.hook);
            Ok(Answer::Allow)
        }),
    );
    for p in [HookPoint::EntityBeforeSave, HookPoint::DealBeforeClose, HookPoint::DealBeforeTransition] {
        hooks.bind(p, "order", &[]).unwrap();
    }
    let ordered = native_engine(hooks);
    let d = w.run(w.ivanov, |tx| ordered.move_deal(tx, d.id, d.version, "needs_analysis", None));
    order.lock().unwrap().clear();
    let won = w.run(w.ivanov, |tx| ordered.close(tx, d.id, d.version, Outcome::Won));
    assert_eq!(
        *order.lock().unwrap(),
        [HookPoint::DealBeforeTransition, HookPoint::DealBeforeClose, HookPoint::EntityBeforeSave]
    );
    assert_eq!(won.status, DealStatus::Won);
}

fn every_step_asks_the_guards_of_leaving(backend: Backend) {
    let w = world(backend);
    let (e, seen) = leaving_guard();
    let d = w.deal(&e, "b2b_sale", 1000);
    // A hold, a resume and a reopen leave no stage: the guard sees them and lets them be.
    let d = w.run(w.ivanov, |tx| e.hold(tx, d.id, d.version, "budget in May"));
    let d = w.run(w.ivanov, |tx| e.resume(tx, d.id, d.version));
    let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", None));
    assert!(matches!(err, Error::Rejected { hook: "deal.before_transition", .. }), "{err:?}");
    let closed = w.run(w.sidorova, |tx| Engine::without_hooks().close(tx, d.id, d.version, Outcome::Won));
    let d = w.run(w.sidorova, |tx| e.reopen(tx, closed.id, closed.version, None));
    assert_eq!((d.status, d.stage.as_deref()), (DealStatus::InProgress, Some("qualification")));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (HookPoint::DealBeforeTransition, How::Hold, false, false),
            (HookPoint::DealBeforeTransition, How::Resume, false, false),
            (HookPoint::DealBeforeTransition, How::Manual, false, true),
            (HookPoint::DealBeforeTransition, How::Reopen, false, false),
        ]
    );
}

fn cancelling_a_task_is_not_completing_it(backend: Backend) {
    let seen: Arc<Mutex<Vec<(HookPoint, TaskStatus)>>> = Arc::default();
    let mut hooks = Hooks::new();
    let record = seen.clone();
    hooks.register(
        "tasks",
        handler(move |input| {
            if let Some(Subject::Task(t)) = &input.after {
                record.lock().unwrap().push((input.hook, t.status));
                if t.status == TaskStatus::Cancelled && t.required {
                    return Ok(Answer::Reject { message: "required work is not called off".into(), field: None });
                }
            }
            Ok(Answer::Allow)
        }),
    );
    hooks.bind(HookPoint::TaskBeforeComplete, "tasks", &[]).unwrap();
    hooks.bind(HookPoint::EntityBeforeSave, "tasks", &[]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "tender", 1000);
    let task = w.open_task(d.id);
    assert!(task.required);
    seen.lock().unwrap().clear();
    let err = w.refused(w.sidorova, |tx| e.cancel_task(tx, task.id, task.version));
    assert!(matches!(err, Error::Rejected { hook: "entity.before_save", .. }), "{err:?}");
    assert_eq!(*seen.lock().unwrap(), [(HookPoint::EntityBeforeSave, TaskStatus::Cancelled)]);
    seen.lock().unwrap().clear();
    w.run(w.ivanov, |tx| e.complete_task(tx, task.id, task.version));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[..2],
        [(HookPoint::TaskBeforeComplete, TaskStatus::Done), (HookPoint::EntityBeforeSave, TaskStatus::Done)]
    );
}

fn an_unknown_competitor_is_refused_before_any_hook(backend: Backend) {
    let asked: Arc<Mutex<Vec<HookPoint>>> = Arc::default();
    let mut hooks = Hooks::new();
    let a = asked.clone();
    hooks.register(
        "reads_the_competitor",
        handler(move |input| {
            a.lock().unwrap().push(input.hook);
            if let Some(Subject::Deal(d)) = &input.after {
                if let Some(c) = d.competitor {
                    assert!(input.view.partner(c).unwrap().is_some(), "a hook met a missing partner");
                }
            }
            Ok(match input.hook.answer_type() {
                crmkit_core::hooks::AnswerType::Actions => Answer::Actions(vec![]),
                _ => Answer::Allow,
            })
        }),
    );
    for p in [
        HookPoint::DealBeforeTransition,
        HookPoint::DealBeforeClose,
        HookPoint::EntityBeforeSave,
        HookPoint::DealAfterClose,
    ] {
        hooks.bind(p, "reads_the_competitor", &[]).unwrap();
    }
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "b2b_sale", 1000);
    asked.lock().unwrap().clear();
    let lose = |competitor: PartnerId| Outcome::Lost {
        reason: "price".into(),
        competitor: Some(competitor),
        comment: "they were cheaper".into(),
    };
    // No such record; a record of another kind (a user, the deal itself); a partner who is no
    // competitor.
    let ghost = PartnerId(RawId::new(1, 999));
    for (id, needle) in [
        (ghost, format!("refers to partner {ghost}, which does not exist")),
        (PartnerId(w.ivanov.raw()), format!("refers to partner {}, which does not exist", w.ivanov)),
        (PartnerId(d.id.raw()), "which does not exist".to_string()),
        (w.client, "does not have the competitor role".to_string()),
    ] {
        let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, lose(id)));
        invalid(&err, "competitor", &needle);
    }
    assert!(asked.lock().unwrap().is_empty(), "hooks were asked: {:?}", asked.lock().unwrap());
    let lost = w.run(w.ivanov, |tx| e.close(tx, d.id, d.version, lose(w.competitor)));
    assert_eq!(lost.competitor, Some(w.competitor));
}

fn the_comment_of_a_step_is_free_text_with_its_rule(backend: Backend) {
    let w = world(backend);
    let (guarded, _) = leaving_guard();
    for e in [Engine::without_hooks(), guarded] {
        let d = w.deal(&e, "b2b_sale", 1000);
        let long = "ж".repeat(2001);
        for bad in [long.as_str(), "a\0b", "\u{1b}[2J\u{1b}[31mred"] {
            let err = w.refused(w.ivanov, |tx| e.hold(tx, d.id, d.version, bad));
            invalid(&err, "comment", if bad.len() > 2000 { "the limit is 2000" } else { "control character" });
            let err = w.refused(w.ivanov, |tx| e.move_deal(tx, d.id, d.version, "needs_analysis", Some(bad)));
            invalid(&err, "comment", if bad.len() > 2000 { "the limit is 2000" } else { "control character" });
            let outcome = Outcome::Lost { reason: "price".into(), competitor: None, comment: bad.repeat(5) };
            let err = w.refused(w.ivanov, |tx| e.close(tx, d.id, d.version, outcome));
            invalid(&err, "comment", if bad.len() > 2000 { "the limit is 10000" } else { "control character" });
        }
        // Line breaks and tabs are text; the note is kept trimmed.
        let d = w.run(w.ivanov, |tx| e.hold(tx, d.id, d.version, "  до мая\n\tбюджет  "));
        let steps = w.fx.store.read().unwrap().stage_history(d.id).unwrap();
        assert_eq!(steps.last().unwrap().note.as_deref(), Some("до мая\n\tбюджет"));
    }
    // An imported history's notes obey the same rule.
    let e = Engine::without_hooks();
    let mut d = new_deal(w.client, w.ivanov, 100);
    d.status = DealStatus::OnHold;
    let steps = vec![
        ImportStep {
            at: T0.plus_millis(-2 * DAY),
            how: How::Create,
            to_stage: Some("qualification".into()),
            to_status: DealStatus::InProgress,
            actor: None,
            note: None,
        },
        ImportStep {
            at: T0.plus_millis(-DAY),
            how: How::Hold,
            to_stage: Some("qualification".into()),
            to_status: DealStatus::OnHold,
            actor: None,
            note: Some("\u{7}beep".into()),
        },
    ];
    let err = w.refused(w.ivanov, |tx| e.import_deal(tx, d, steps));
    invalid(&err, "history", "step 1: note contains the control character");
}

fn a_hook_sets_a_date_by_the_rule_of_dates(backend: Backend) {
    let value: Arc<Mutex<serde_json::Value>> = Arc::default();
    let mut hooks = Hooks::new();
    let v = value.clone();
    hooks.register(
        "set_close",
        handler(move |_| {
            let value = v.lock().unwrap().clone();
            Ok(Answer::Actions(vec![Action::SetField { field: "expected_close".into(), value }]))
        }),
    );
    hooks.bind(HookPoint::DealAfterTransition, "set_close", &[]).unwrap();
    let e = native_engine(hooks);
    let w = world(backend);
    let d = w.deal(&e, "b2b_sale", 1000);
    for (bad, needle) in [
        ("+99999-01-01", "is not a date written YYYY-MM-DD"),
        ("-0001-01-01", "is not a date written YYYY-MM-DD"),
        ("2026-7-1", "is not a date written YYYY-MM-DD"),
        ("1899-12-31", "1899-12-31 is outside the dates a field holds (1900-01-01 to 2999-12-31)"),
    ] {
        *value.lock().unwrap() = serde_json::Value::String(bad.into());
        let err = w.refused(w.ivanov, |tx| e.hold(tx, d.id, d.version, ""));
        invalid(&err, "expected_close", needle);
    }
    *value.lock().unwrap() = serde_json::Value::String("2026-07-01".into());
    let held = w.run(w.ivanov, |tx| e.hold(tx, d.id, d.version, ""));
    assert_eq!(held.expected_close.map(|d| d.to_string()).as_deref(), Some("2026-07-01"));
}
