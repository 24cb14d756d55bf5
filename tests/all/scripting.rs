//! Rhai scripts behind the hook interface: answers, limits, and every way a script can be
//! wrong — each refused with a message naming the script, and nothing written.

use std::path::Path;
use std::sync::Arc;

use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::id::UserId;
use crmkit_core::model::{CustomValue, Deal, Task};
use crmkit_core::process::{Engine, Hooks};
use crmkit_core::store::Reader;
use crmkit_core::Error;
use crmkit_rhai::{RhaiProvider, ScriptError, ScriptHost};

use crate::common::{new_deal, refused, Fixture};

/// An installation whose config binds `hooks` (TOML `[[hooks]]` entries) and whose
/// `scripts/` holds `scripts` (name, text).
struct Scripted {
    fx: Fixture,
    scripts: tempfile::TempDir,
    host: Arc<ScriptHost>,
    engine: Engine,
    manager: UserId,
}

/// Builds the installation; what is wrong with its scripts or bindings, one line each.
fn scripted(hooks: &str, scripts: &[(&str, &str)]) -> Result<Scripted, Vec<String>> {
    scripted_with(|c| c, hooks, scripts)
}

/// [`scripted`] with the default config edited by `edit` first.
fn scripted_with(
    edit: impl FnOnce(String) -> String,
    hooks: &str,
    scripts: &[(&str, &str)],
) -> Result<Scripted, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    // The default config binds the shipped scripts.
    for (name, text) in crmkit_core::installation::SHIPPED_SCRIPTS.iter().chain(scripts) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let config = format!("{}\n{hooks}", edit(DEFAULT_CONFIG.to_string()));
    let settings = Settings::parse(&config, Path::new("crmkit.toml")).unwrap();
    let host = Arc::new(ScriptHost::new(dir.path(), &crmkit_rhai::RhaiSettings::from_settings(&settings).unwrap()));
    let errors = host.load_all();
    if !errors.is_empty() {
        return Err(errors.iter().map(ScriptError::to_string).collect());
    }
    let mut registry = Hooks::new();
    registry.provider(Arc::new(RhaiProvider::new(host.clone())));
    let engine =
        Engine::new(&settings, registry).map_err(|e| e.to_string().lines().map(str::to_string).collect::<Vec<_>>())?;
    let fx = Fixture::with_settings(settings);
    let manager = fx.user("m.petrova");
    Ok(Scripted { fx, scripts: dir, host, engine, manager })
}

impl Scripted {
    fn deal(&self, amount: i64) -> Deal {
        let p = self.fx.partner("Альфа", crmkit_core::model::PartnerRole::Client);
        let mut d = new_deal(p.id, self.manager, amount);
        d.source = Some("website".into());
        self.fx.store.transact(Some(self.manager), |tx| self.engine.create_deal(tx, d)).unwrap()
    }

    fn move_to(&self, d: &Deal, stage: &str) -> crmkit_core::Result<Deal> {
        self.fx.store.transact(Some(self.manager), |tx| self.engine.move_deal(tx, d.id, d.version, stage, None))
    }

    /// Tries the move in a transaction that commits anyway; expects it refused with nothing
    /// written.
    fn refused_move(&self, d: &Deal, stage: &str) -> Error {
        refused(&self.fx.store, Some(self.manager), |tx| self.engine.move_deal(tx, d.id, d.version, stage, None))
    }
}

const GUARD: &str = r#"[[hooks]]
point = "deal.before_transition"
handler = "guards.rhai::check"
"#;

#[test]
fn a_guard_script_allows_or_refuses_with_its_message_and_field() {
    let s = scripted(
        GUARD,
        &[(
            "guards.rhai",
            r#"
            // Big deals need an expected close date before the needs analysis.
            fn check(ctx) {
                let d = ctx.after;
                if ctx.transition.to_stage == "needs_analysis" && d.amount > 1000000 && d.expected_close == () {
                    return #{ reject: `deal "${d.title}" of ${d.amount} ${d.currency} needs an expected close date`, field: "expected_close" };
                }
                true
            }
            "#,
        )],
    )
    .unwrap();
    let small = s.deal(10_000);
    s.move_to(&small, "needs_analysis").unwrap();
    let mut big = s.deal(5_000_000);
    big.expected_close = None;
    let big = s.fx.store.transact(None, |tx| tx.update(big)).unwrap();
    let err = s.refused_move(&big, "needs_analysis");
    match &err {
        Error::Rejected { handler, message, field, .. } => {
            assert_eq!(handler, "guards.rhai::check");
            assert!(message.contains("5000000 RUB needs an expected close date"), "{message}");
            assert_eq!(field.as_deref(), Some("expected_close"));
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn a_syntax_error_names_the_file_line_and_column() {
    let errors = scripted("", &[("ok.rhai", "fn f(ctx) { true }"), ("bad/broken.rhai", "fn f(ctx) {\n  let x = ;\n}")])
        .err()
        .expect("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(text.starts_with("scripts/bad/broken.rhai:2:11:"), "{text}");
}

#[test]
fn a_binding_to_a_missing_function_or_with_the_wrong_arity_is_refused() {
    let errors =
        scripted(GUARD, &[("guards.rhai", "fn chek(ctx) { true }\nfn helper(a, b) { a }")]).err().expect("refused");
    let text = errors[0].to_string();
    assert!(text.contains("guards.rhai") && text.contains("defines no function check"), "{text}");
    assert!(text.contains("chek(ctx)"), "it lists what is there: {text}");
    let errors = scripted(GUARD, &[("guards.rhai", "fn check(a, b) { true }")]).err().expect("refused");
    assert!(errors[0].to_string().contains("takes 2 parameter(s)"), "{}", errors[0]);
    let errors = scripted(GUARD, &[]).err().expect("refused");
    assert!(errors[0].to_string().contains("cannot be read"), "{}", errors[0]);
}

/// A guard whose body is `body`; the deal is moved and must be refused with a fault whose
/// message contains `expected`; nothing is written.
fn faults(body: &str, expected: &[&str]) {
    faults_with("", body, expected)
}

/// [`faults`] with `binding` (TOML lines) added to the guard's binding.
fn faults_with(binding: &str, body: &str, expected: &[&str]) {
    let script = format!("fn check(ctx) {{\n{body}\n}}\nfn deep(n) {{ deep(n + 1) }}");
    let s = scripted(&format!("{GUARD}{binding}"), &[("guards.rhai", &script)]).unwrap();
    let d = s.deal(10_000);
    let err = s.refused_move(&d, "needs_analysis");
    let text = err.to_string();
    assert!(matches!(err, Error::HookFault { .. }), "not a fault: {text}");
    for e in expected {
        assert!(text.contains(e), "{text:?} does not say {e:?}");
    }
    // The engine keeps serving: the next write goes through.
    s.fx.store.transact(None, |tx| tx.update(s.fx.store.read()?.load::<Deal>(d.id)?)).unwrap();
}

#[test]
fn a_runtime_error_refuses_the_write_naming_script_function_and_line() {
    faults("  let amount = ctx.after.amount;\n  amount / 0", &["guards.rhai:3", "in check()", "Division by zero"]);
    faults("  ctx.after.no_such_field", &["guards.rhai:2", "no_such_field"]);
}

#[test]
fn runaway_scripts_are_stopped_by_their_limits() {
    // Each limit alone: an endless loop with the operations unlimited meets the time limit,
    // and with the time limit far away it meets the operations limit; each names the line.
    faults_with(
        "max_operations = 1000000000000\n",
        "  loop { }",
        &["scripts/guards.rhai:2:3: in check(): stopped after 20 ms"],
    );
    faults_with(
        "timeout_ms = 600000\nmax_operations = 5000\n",
        "  loop { }",
        &["scripts/guards.rhai:2:", "stopped after 5000 operations", "max_operations"],
    );
    // The call depth and the size of a value, with the time limit out of the way.
    faults_with("timeout_ms = 600000\n", "  deep(0)", &["scripts/guards.rhai:4:", "in deep(): calls nested too deep"]);
    faults_with(
        "timeout_ms = 600000\n",
        "  let s = \"x\";\n  loop { s += s; }",
        &["scripts/guards.rhai:3:", "a string grew past its limit"],
    );
}

/// Every limit stops the write it was asked about with the script, function and line where
/// it stopped the call, and nothing is written — as `crmkit script run` says it
/// (script_tools::script_run_names_the_line_where_a_limit_stopped_the_script).
#[test]
fn a_limit_names_the_script_function_and_line_where_it_stopped() {
    use crate::script_tools::{limited, RUNAWAY, STOPPED};
    for (function, place, what) in STOPPED {
        let hooks = format!("[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"runaway.rhai::{function}\"\n");
        let s = scripted_with(limited, &hooks, &[("runaway.rhai", RUNAWAY)]).unwrap();
        let d = s.deal(10_000);
        let err = s.refused_move(&d, "needs_analysis");
        let text = err.to_string();
        assert!(matches!(err, Error::HookFault { .. }), "not a fault: {text}");
        assert!(text.contains(&format!("handler runaway.rhai::{function} failed: scripts/{place}")), "{text}");
        assert!(text.contains(what), "{text:?} does not say {what:?}");
    }
}

#[test]
fn a_misspelled_variable_is_an_error_when_the_script_is_compiled() {
    let errors = scripted(
        GUARD,
        &[(
            "guards.rhai",
            "fn check(ctx) {\n    let amount = ctx.after.amount;\n    if amout > 5 { return false; }\n    true\n}",
        )],
    )
    .err()
    .expect("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("scripts/guards.rhai:3:8: Undefined variable: amout"), "{}", errors[0]);
    // Constants of the file's top level are not seen by functions: said so, not silently ().
    let errors =
        scripted("", &[("limits.rhai", "const LIMIT = 5;\nfn check(ctx) { ctx.after.amount < LIMIT }")]).err().unwrap();
    assert!(
        errors[0].contains("limits.rhai:2:36: Undefined variable: LIMIT") && errors[0].contains("top level"),
        "{errors:?}"
    );
    // Parameters, closures' captures, loop variables and imports are declared.
    scripted(
        "",
        &[
            ("lib/amounts.rhai", "fn big() { 1000000 }"),
            (
                "fine.rhai",
                "fn f(ctx) {\n  import \"lib/amounts\" as a;\n  let n = 0;\n  [1, 2].for_each(|x| n += x);\n  for (d, i) in [ctx] { n += i; }\n  n < a::big()\n}",
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
}

#[test]
fn the_shipped_scripts_compile_with_strict_variables() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let host = ScriptHost::new(&dir, &crmkit_rhai::RhaiSettings::default());
    assert_eq!(host.files().len(), 10);
    assert_eq!(host.load_all(), Vec::new());
}

#[test]
fn a_wrong_answer_is_a_fault_that_says_what_was_expected() {
    // One shape for every runtime: the point, the handler, what it answered, what was expected.
    faults(
        "  42",
        &["deal.before_transition: handler guards.rhai::check failed: answered a number (42); deal.before_transition expects a verdict"],
    );
    faults("  #{ reject: \"no\", feild: \"amount\" }", &["answered a map", "expects a verdict"]);
    faults("  Fn(\"check\")", &["guards.rhai", "returned Fn, which is not plain data"]);
}

#[test]
fn eval_is_not_in_the_language_and_import_reaches_only_scripts() {
    let errors = scripted("", &[("evil.rhai", "fn f(ctx) { eval(\"1\") }")]).err().expect("refused");
    assert!(errors[0].to_string().contains("eval is not available"), "{}", errors[0]);
    // Importing a neighbour works; a path out of scripts/ does not.
    let s = scripted(
        GUARD,
        &[
            ("lib/limits.rhai", "fn max_amount() { 1000000 }"),
            ("guards.rhai", "fn check(ctx) { import \"lib/limits\" as l; ctx.after.amount <= l::max_amount() }"),
            ("escape.rhai", "fn check(ctx) { import \"../../../etc/passwd\" as p; true }"),
        ],
    )
    .unwrap();
    let d = s.deal(5_000_000);
    let err = s.refused_move(&d, "needs_analysis");
    assert!(matches!(err, Error::Rejected { .. }), "{err}");
    let e = s.host.call("escape.rhai", "check", vec![rhai::Dynamic::UNIT], Default::default()).unwrap_err();
    assert!(e.message.contains("only scripts inside the installation's scripts/ folder"), "{e}");
}

#[test]
fn a_reaction_script_answers_actions_the_engine_applies() {
    let hooks = r#"[[hooks]]
point = "deal.after_transition"
handler = "reactions.rhai::follow_up"
"#;
    let s = scripted(
        hooks,
        &[(
            "reactions.rhai",
            r#"
            fn follow_up(ctx) {
                if ctx.transition.to_stage != "needs_analysis" { return []; }
                [#{ action: "create_task", title: `Call back about ${ctx.after.title}`, due_in_minutes: 1440 },
                 #{ action: "set_field", field: "probability", value: 30 }]
            }
            "#,
        )],
    )
    .unwrap();
    let d = s.deal(10_000);
    let moved = s.move_to(&d, "needs_analysis").unwrap();
    assert_eq!(moved.probability, Some(30));
    let tasks: Vec<Task> = s.fx.store.read().unwrap().tasks_of_deal(d.id).unwrap();
    assert!(tasks.iter().any(|t| t.title == "Call back about Поставка оборудования"), "{tasks:?}");
}

/// Writes `text` to the script at `path` and sets its modification time a second past the
/// one it had, as an edit later in time would: the host sees the change without the test
/// waiting for the clock (or depending on the file system's time resolution).
fn rewrite(path: &Path, text: &str) {
    let was = std::fs::metadata(path).and_then(|m| m.modified()).unwrap();
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(was + std::time::Duration::from_secs(1)).unwrap();
}

#[test]
fn a_changed_script_is_reloaded_and_a_broken_one_keeps_the_last_good_version() {
    let s = scripted(GUARD, &[("guards.rhai", "fn check(ctx) { true }")]).unwrap();
    let d = s.deal(10_000);
    let path = s.scripts.path().join("guards.rhai");
    rewrite(&path, "fn check(ctx) { \"closed for the audit\" }");
    assert_eq!(s.host.reload_changed(), Vec::new());
    let err = s.refused_move(&d, "needs_analysis");
    assert!(err.to_string().contains("closed for the audit"), "{err}");
    rewrite(&path, "fn check(ctx) { true ");
    let errors = s.host.reload_changed();
    assert_eq!(errors.len(), 1);
    let err = s.refused_move(&d, "needs_analysis");
    assert!(err.to_string().contains("closed for the audit"), "the last good version still runs: {err}");
}

// The shipped scripts, as the default config binds them.

#[test]
fn shipped_guard_no_leaving_the_proposal_without_a_quote() {
    use crmkit_core::model::{Document, DocumentKind, DocumentState};
    use crmkit_core::values::{Currency, Money};
    let s = scripted("", &[]).unwrap();
    let mut d = s.deal(300_000);
    d.expected_close = chrono::NaiveDate::from_ymd_opt(2026, 9, 1);
    let d = s.fx.store.transact(None, |tx| tx.update(d)).unwrap();
    let d = s.move_to(&d, "needs_analysis").unwrap();
    let d =
        s.fx.store
            .transact(Some(s.manager), |tx| s.engine.set_checked(tx, d.id, d.version, "needs_recorded", true))
            .unwrap();
    let d = s.move_to(&d, "proposal").unwrap();
    let err = s.refused_move(&d, "negotiation");
    match &err {
        Error::Rejected { handler, message, field, .. } => {
            assert_eq!(handler, "stages/guards.rhai::quote_before_leaving_proposal");
            assert!(message.contains("without a quote"), "{message}");
            assert_eq!(field.as_deref(), Some("documents"));
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // Going back is allowed without one; forward needs the quote, which the script reads
    // in the same transaction that moves the deal.
    let moved =
        s.fx.store
            .transact(Some(s.manager), |tx| {
                let mut q = Document::new(
                    DocumentKind::Quote,
                    "КП-17",
                    chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
                    d.partner,
                    Money::new(300_000.into(), Currency::RUB),
                );
                q.deal = Some(d.id);
                q.state = DocumentState::Issued;
                tx.create(q)?;
                s.engine.move_deal(tx, d.id, d.version, "negotiation", None)
            })
            .unwrap();
    assert_eq!(moved.stage.as_deref(), Some("negotiation"));
}

#[test]
fn shipped_reaction_a_call_back_task_90_days_after_a_loss_to_a_competitor() {
    use crmkit_core::model::{PartnerRole, TaskStatus};
    use crmkit_core::process::Outcome;
    let s = scripted("", &[]).unwrap();
    let rival = s.fx.partner("ПромЛидер", PartnerRole::Competitor);
    let d = s.deal(80_000);
    let lost = s
        .fx
        .store
        .transact(Some(s.manager), |tx| {
            let outcome =
                Outcome::Lost {
                    reason: "price".into(), competitor: Some(rival.id), comment: "дешевле на 12%".into()
                };
            s.engine.close(tx, d.id, d.version, outcome)
        })
        .unwrap();
    let tasks: Vec<Task> = s.fx.store.read().unwrap().tasks_of_deal(d.id).unwrap();
    let call_back = tasks.iter().find(|t| t.title.contains("Call back")).expect("the reaction's task");
    assert_eq!(call_back.title, "Call back: lost \"Поставка оборудования\" to ПромЛидер 90 days ago");
    assert_eq!(call_back.status, TaskStatus::Open);
    assert_eq!(call_back.executor, s.manager);
    assert_eq!(call_back.due.unwrap().0 - lost.closed_at.unwrap().0, 90 * 86_400_000);
    // A deal lost without a competitor gets no such task.
    let other = s.deal(10_000);
    s.fx.store
        .transact(Some(s.manager), |tx| {
            let outcome = Outcome::Lost { reason: "no_budget".into(), competitor: None, comment: String::new() };
            s.engine.close(tx, other.id, other.version, outcome)
        })
        .unwrap();
    let tasks: Vec<Task> = s.fx.store.read().unwrap().tasks_of_deal(other.id).unwrap();
    assert!(tasks.iter().all(|t| !t.title.contains("Call back")), "{tasks:?}");
}

/// Calls a script function bound at `point` directly, with a deal as `ctx.after` and the
/// store as it is.
fn ask_script(
    s: &Scripted,
    point: crmkit_core::process::HookPoint,
    handler: &str,
    deal: &Deal,
) -> crmkit_core::process::Answer {
    use crmkit_core::process::{Handler, HookInput, Subject};
    let (file, function) = handler.split_once("::").unwrap();
    let h = crmkit_rhai::ScriptHandler::new(s.host.clone(), file, function, Default::default());
    let view = s.fx.store.read().unwrap();
    let input = HookInput {
        hook: point,
        process_kind: Some(&deal.kind),
        entity: crmkit_core::model::EntityKind::Deal,
        actor: None,
        before: None,
        after: Some(Subject::Deal(deal)),
        transition: None,
        task: None,
        depth: 0,
        now: s.fx.store.clock().now(),
        view: &view,
        loyalty: None,
        strategy: None,
        claim_step: None,
    };
    let reply = h.call(&input).unwrap_or_else(|f| panic!("{}", f.0));
    crmkit_core::hooks::accept(point, handler, reply).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_assignee_managers_take_turns() {
    use crmkit_core::model::{Role, User};
    use crmkit_core::process::{Answer, HookPoint};
    let s = scripted("", &[]).unwrap();
    s.fx.store
        .transact(None, |tx| {
            tx.create(User::new("a.ivanov", "Алексей Иванов", Role::Manager))?;
            let mut away = User::new("z.away", "Уехавший", Role::Manager);
            away.active = false;
            tx.create(away)
        })
        .unwrap();
    // Each answer gets a task, as the engine would make it: the two active managers take
    // turns (by login at first), the inactive one never comes.
    let mut logins = Vec::new();
    for _ in 0..4 {
        let d = s.deal(10_000);
        let login = match ask_script(&s, HookPoint::TaskAssignee, "tasks/assignees.rhai::least_busy_manager", &d) {
            Answer::Assignee(Some(login)) => login,
            other => panic!("{other:?}"),
        };
        s.fx.store
            .transact(None, |tx| {
                let user = tx.user_by_login(&login)?.expect("a user");
                let mut t = Task::new("Submit the bid", user.id);
                t.deal = Some(d.id);
                tx.create(t)
            })
            .unwrap();
        logins.push(login);
    }
    assert_eq!(logins, ["a.ivanov", "m.petrova", "a.ivanov", "m.petrova"]);
}

#[test]
fn shipped_route_a_new_clients_bid_goes_through_approval() {
    use crmkit_core::process::{Answer, HookPoint, Outcome};
    let s = scripted("", &[]).unwrap();
    let handler = "stages/routes.rhai::approval_for_new_clients";
    let d = s.deal(2_000_000);
    assert_eq!(ask_script(&s, HookPoint::DealRoute, handler, &d), Answer::Stage(Some("approval".into())));
    // Small bids, and bids of clients we have won before, take the default route.
    let small = s.deal(500_000);
    assert_eq!(ask_script(&s, HookPoint::DealRoute, handler, &small), Answer::Stage(None));
    s.fx.store
        .transact(Some(s.manager), |tx| {
            s.engine.close(tx, small.id, small.version, Outcome::Won { comment: String::new() })
        })
        .unwrap();
    let again = s.fx.store.read().unwrap().load::<Deal>(d.id).unwrap();
    let same_partner = Deal { partner: small.partner, ..again };
    assert_eq!(ask_script(&s, HookPoint::DealRoute, handler, &same_partner), Answer::Stage(None));
}

/// Report `name` of `host`'s scripts, through core's reports as the CLI and the API run it.
fn run_report(
    host: &Arc<ScriptHost>,
    view: &dyn crmkit_core::hooks::View,
    name: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<crmkit_core::report::Table, crmkit_core::report::ReportError> {
    let mut reports = crmkit_core::report::Reports::new();
    reports.add(Arc::new(crmkit_rhai::RhaiReports::new(host.clone())));
    reports.run(name, params, view)
}

/// A host over the shipped scripts.
fn shipped_host() -> (tempfile::TempDir, Arc<ScriptHost>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in crmkit_core::installation::SHIPPED_SCRIPTS {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let host = ScriptHost::new(dir.path(), &Default::default());
    assert_eq!(host.load_all(), Vec::new());
    (dir, Arc::new(host))
}

#[test]
fn shipped_reports_add_up_to_the_deals_they_read() {
    use crmkit_core::model::DealStatus;
    use std::collections::BTreeMap;
    let (_tmp, inst, _) = crate::demo::company();
    let (_dir, host) = shipped_host();
    let snap = inst.store().read().unwrap();
    let deals: Vec<Deal> = snap.list(None, usize::MAX).unwrap();
    let count = |f: &dyn Fn(&Deal) -> bool| deals.iter().filter(|d| f(d)).count() as i64;
    let sum = |t: &crmkit_core::report::Table, col: &str| -> i64 {
        let i = t.columns().iter().position(|c| c.name == col).unwrap();
        t.rows().iter().map(|r| r[i].as_i64().unwrap()).sum()
    };

    let pipeline = run_report(&host, &snap, "pipeline_by_manager", &BTreeMap::new()).unwrap();
    assert_eq!(pipeline.columns().len(), 6);
    assert_eq!(sum(&pipeline, "won_deals"), count(&|d| d.status == DealStatus::Won));
    assert_eq!(
        sum(&pipeline, "open_deals"),
        count(&|d| matches!(d.status, DealStatus::InProgress | DealStatus::OnHold) && d.expected_close.is_some())
    );
    let mut rows = pipeline.rows().to_vec();
    rows.sort_by_key(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()));
    assert_eq!(rows, pipeline.rows(), "sorted by manager and month");
    // A period keeps only its months.
    let params =
        BTreeMap::from([("from".to_string(), "2025-03".to_string()), ("to".to_string(), "2025-05".to_string())]);
    let spring = run_report(&host, &snap, "pipeline_by_manager", &params).unwrap();
    assert!(!spring.rows().is_empty());
    assert!(
        spring.rows().iter().all(|r| ("2025-03".."2025-06").contains(&r[1].as_str().unwrap())),
        "{:?}",
        spring.rows()
    );

    let losses = run_report(&host, &snap, "losses_by_competitor", &BTreeMap::new()).unwrap();
    assert_eq!(sum(&losses, "deals"), count(&|d| d.status == DealStatus::Lost));
    let counts: Vec<i64> = losses.rows().iter().map(|r| r[2].as_i64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "most frequent first: {counts:?}");
    assert!(losses.rows().iter().any(|r| r[0] != "(none named)"), "the demo loses to competitors too");
    let top = run_report(&host, &snap, "losses_by_competitor", &BTreeMap::from([("top".into(), "3".into())])).unwrap();
    assert_eq!(top.rows(), &losses.rows()[..3].to_vec());
}

#[test]
fn a_report_calling_back_for_every_deal_still_meets_its_limits() {
    let (_tmp, inst, _) = crate::demo::company();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    // A few operations per deal: no single callback comes near the limit, all of them do.
    std::fs::write(
        dir.path().join("reports/count.rhai"),
        "fn report(p) { let n = 0; each_deal(|d| { n += 1; true }); #{ columns: [#{ name: \"n\", type: \"int\" }], rows: [[n]] } }",
    )
    .unwrap();
    let snap = inst.store().read().unwrap();
    let deals = snap.list::<Deal>(None, usize::MAX).unwrap().len();
    let roomy = Arc::new(ScriptHost::new(dir.path(), &Default::default()));
    let t = run_report(&roomy, &snap, "count", &Default::default()).unwrap();
    assert_eq!(t.rows()[0][0].as_u64(), Some(deals as u64));
    let limits = crmkit_rhai::RhaiSettings { report_max_operations: 2 * deals as u64, ..Default::default() };
    let tight = Arc::new(ScriptHost::new(dir.path(), &limits));
    let e = run_report(&tight, &snap, "count", &Default::default()).unwrap_err();
    assert!(e.to_string().contains("operations"), "{e}");
}

#[test]
fn a_report_that_returns_the_wrong_shape_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    std::fs::write(
        dir.path().join("reports/bad.rhai"),
        "fn report(p) { #{ columns: [#{ name: \"n\", type: \"int\" }], rows: [[1, 2]] } }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("reports/typed.rhai"),
        "fn report(p) { #{ columns: [#{ name: \"n\", type: \"int\" }], rows: [[\"x\"]] } }",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("reports/declared.rhai"),
        "fn parameters() { [#{ name: \"from\", description: \"a month, YYYY-MM\" }] }\nfn report(p) { #{ columns: [#{ name: \"from\" }], rows: [[p.from]] } }",
    )
    .unwrap();
    let host = Arc::new(ScriptHost::new(dir.path(), &Default::default()));
    let fx = Fixture::new();
    let snap = fx.store.read().unwrap();
    let e = run_report(&host, &snap, "bad", &Default::default()).unwrap_err();
    assert!(e.to_string().contains("row 1 has 2 values for 1 columns"), "{e}");
    let e = run_report(&host, &snap, "typed", &Default::default()).unwrap_err();
    assert!(e.to_string().contains("row 1, column n: \"x\" is not of type int"), "{e}");
    let e = run_report(&host, &snap, "missing", &Default::default()).unwrap_err();
    assert_eq!(e.to_string(), "there is no report \"missing\"; the installation has bad, declared, typed");
    // A report that declares its parameters refuses others, naming what it takes.
    let e = run_report(&host, &snap, "declared", &[("form".to_string(), "2025-01".to_string())].into()).unwrap_err();
    assert_eq!(e.to_string(), "report declared: it has no parameter \"form\" (it takes from)");
    let t = run_report(&host, &snap, "declared", &[("from".to_string(), "2025-01".to_string())].into()).unwrap();
    assert_eq!(t.rows()[0][0], serde_json::json!("2025-01"));
}

#[test]
fn a_watched_host_picks_up_an_edit_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("score.rhai");
    std::fs::write(&file, "fn score(ctx) { 1 }").unwrap();
    let host = ScriptHost::new(dir.path(), &Default::default()).watch(std::time::Duration::ZERO);
    let call = || host.call("score.rhai", "score", vec![rhai::Dynamic::UNIT], Default::default());
    assert_eq!(call().unwrap().as_int(), Ok(1));
    rewrite(&file, "fn score(ctx) { 2 }");
    assert_eq!(call().unwrap().as_int(), Ok(2));
    // A broken edit: the last version that compiled goes on answering.
    rewrite(&file, "fn score(ctx) { 3 ");
    assert_eq!(call().unwrap().as_int(), Ok(2));
}

#[test]
fn an_import_cycle_and_a_date_beyond_the_calendar_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.rhai"), "import \"b\" as b;\nfn x() { 1 }").unwrap();
    std::fs::write(dir.path().join("b.rhai"), "import \"a\" as a;\nfn y() { 2 }").unwrap();
    std::fs::write(dir.path().join("main.rhai"), "fn f(ctx) { import \"a\" as a; a::x() }\nfn g(ctx) { add_days(\"2026-01-01\", 100000000000) }\nfn h(ctx) { import \"missing\" as m; 1 }").unwrap();
    let host = ScriptHost::new(dir.path(), &Default::default());
    let call =
        |f: &str| host.call("main.rhai", f, vec![rhai::Dynamic::UNIT], Default::default()).unwrap_err().to_string();
    let e = call("f");
    assert!(e.contains("import cycle: a.rhai → b.rhai → a.rhai"), "{e}");
    let e = call("g");
    assert!(e.contains("beyond the calendar") && e.contains("main.rhai:2"), "{e}");
    let e = call("h");
    assert!(e.contains("there is no scripts/missing.rhai"), "{e}");
}

/// `days_between` and `add_days` read dates by core's rule of dates: `YYYY-MM-DD` (or an
/// RFC 3339 time, whose day it is), anything looser is a script error naming the value.
#[test]
fn the_date_functions_read_dates_by_the_rule_of_dates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.rhai"),
        "fn between(ctx) { days_between(ctx[0], ctx[1]) }\nfn add(ctx) { add_days(ctx[0], 10) }",
    )
    .unwrap();
    let host = ScriptHost::new(dir.path(), &Default::default());
    let call = |f: &str, args: &[&str]| {
        let arg: rhai::Array = args.iter().map(|a| rhai::Dynamic::from(a.to_string())).collect();
        host.call("main.rhai", f, vec![arg.into()], Default::default()).map_err(|e| e.to_string())
    };
    assert_eq!(call("between", &["2026-03-01", "2026-03-31"]).unwrap().as_int(), Ok(30));
    assert_eq!(call("between", &["2026-03-01T09:00:00Z", "2026-03-11"]).unwrap().as_int(), Ok(10));
    assert_eq!(call("add", &["2026-02-25"]).unwrap().into_string().unwrap(), "2026-03-07");
    for (f, args, needle) in [
        ("between", ["2026-3-1", "2026-03-31"], "\"2026-3-1\" is not a date written YYYY-MM-DD"),
        ("between", ["2026-03-01", "01.03.2026"], "\"01.03.2026\" is not a date written YYYY-MM-DD"),
        ("between", ["2026-03-01", "2026-03-01T9:00"], "\"2026-03-01T9:00\" is not a date written YYYY-MM-DD"),
        ("between", ["2026-03-01", "2026-02-30"], "\"2026-02-30\" is not a day of the calendar"),
        ("add", ["2026-3-1", ""], "\"2026-3-1\" is not a date written YYYY-MM-DD"),
        ("add", ["1899-12-31", ""], "1899-12-31 is outside the dates a field holds"),
    ] {
        let e = call(f, &args).unwrap_err();
        assert!(e.contains(needle) && e.contains("main.rhai:"), "{f}{args:?}: {e}");
    }
}

/// `ctx` and a deal in Rhai are derived from the hook contract: a script can read every field
/// of the contract's input and of its deal, by the same names.
#[test]
fn ctx_and_deal_have_every_field_of_the_contract() {
    use crmkit_core::hooks::wire::{DealV1, InputV1};
    let deal_fields = field_names(
        serde_json::json!({
            "id": "01JN8W7A1G0000000000000010", "version": 1, "created_at": "2026-03-02T09:00:00Z",
            "updated_at": "2026-03-02T09:00:00Z", "title": "t", "partner": "01JN8W6ZQ0000000000000000P",
            "counterparty": null, "kind": "b2b_sale", "stage": null, "status": "in_progress",
            "manager": "01JN8W6ZQ0000000000000000C", "amount": "1", "currency": "RUB", "expected_close": null,
            "probability": null, "source": null, "loss_reason": null, "competitor": null, "comment": "",
            "closed_at": null, "stage_entered_at": null, "checklist": [], "custom": {}
        }),
        |v| serde_json::to_value(serde_json::from_value::<DealV1>(v).unwrap()).unwrap(),
    );
    let input_fields = field_names(
        serde_json::json!({
            "v": 1, "hook": "deal.before_transition", "process_kind": null, "entity": "deal", "actor": null,
            "before": null, "after": null, "transition": null, "task": null, "depth": 0,
            "now": "2026-03-02T09:00:00Z"
        }),
        |v| serde_json::to_value(serde_json::from_value::<InputV1>(v).unwrap()).unwrap(),
    );
    let reads = |object: &str, fields: &[String]| {
        fields.iter().map(|f| format!("  let _{f} = {object}.{f};\n")).collect::<String>()
    };
    let script = format!(
        "fn check(ctx) {{\n{}{}  if ctx.v != 1 || ctx.process_kind != ctx.kind {{ return \"not the contract\" }}\n  true\n}}",
        reads("ctx", &input_fields),
        reads("ctx.after", &deal_fields)
    );
    let s = scripted(GUARD, &[("guards.rhai", &script)]).unwrap();
    let d = s.deal(10_000);
    s.move_to(&d, "needs_analysis").unwrap_or_else(|e| panic!("{e}\n{script}"));
}

/// The fields of a contract type, as its JSON form names them: `sample` read into the type
/// and written back by `through`.
fn field_names(sample: serde_json::Value, through: fn(serde_json::Value) -> serde_json::Value) -> Vec<String> {
    match through(sample) {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

// docs/scripting.md is the reference of what scripts may call; these keep it equal to the
// runtime's registration and to core's declarations.

/// The first cells (in backticks) of the table rows of docs/scripting.md under the heading
/// that starts with `heading`, up to the next heading of that level.
fn doc_cells(heading: &str) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scripting.md")).unwrap();
    let level = heading.split(' ').next().unwrap().to_string() + " ";
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with(&level) {
            inside = line.starts_with(heading);
        } else if inside && line.starts_with("| `") {
            let cell = line[3..].split('`').next().unwrap();
            out.push(cell.to_string());
        }
    }
    assert!(!out.is_empty(), "no table under {heading:?} in docs/scripting.md");
    out
}

/// A registered signature (`get$amount(_: &mut Deal) -> …`, `partner(_: string) -> …`) as the
/// docs write it: `Deal.amount`, `partner(string)`.
fn doc_form(signature: &str) -> String {
    let (name, rest) = signature.split_once('(').unwrap();
    let params: Vec<String> = rest
        .split(')')
        .next()
        .unwrap()
        .split(", ")
        .filter(|p| !p.is_empty())
        .map(|p| {
            let ty = p.split(": ").nth(1).unwrap_or(p).trim_start_matches("&mut ");
            if ty == "i64" {
                "int".to_string()
            } else {
                ty.to_string()
            }
        })
        .collect();
    match name.strip_prefix("get$") {
        Some(getter) => format!("{}.{getter}", params[0]),
        None => format!("{name}({})", params.join(", ")),
    }
}

#[test]
fn docs_list_every_function_and_getter_scripts_have_and_only_those() {
    use std::collections::BTreeSet;
    let registered: BTreeSet<String> = crmkit_rhai::signatures().iter().map(|s| doc_form(s)).collect();
    let documented: BTreeSet<String> = doc_cells("## `ctx` and the values it holds")
        .into_iter()
        .chain(doc_cells("## Functions").into_iter().filter(|c| c.contains('(')))
        .collect();
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(missing.is_empty() && extra.is_empty(), "not documented: {missing:?}; documented, not there: {extra:?}");
    // The Rhai functions the page names are Rhai's.
    let standard: BTreeSet<String> = rhai::Engine::new()
        .gen_fn_signatures(true)
        .iter()
        .map(|s| s.split('(').next().unwrap().to_string())
        // Statements of the language that write to the log through the engine's callbacks.
        .chain(["print", "debug"].map(String::from))
        .collect();
    for f in doc_cells("## Functions").into_iter().filter(|c| !c.contains('(')) {
        assert!(standard.contains(&f), "docs/scripting.md names {f}, which Rhai does not have");
    }
}

#[test]
fn docs_list_every_action_with_its_fields() {
    use crmkit_core::hooks::Action;
    // Every action, so that a new one fails to compile here until it is documented.
    let all = [
        Action::CreateTask {
            title: "t".into(),
            description: String::new(),
            executor: None,
            due_in_minutes: None,
            required: false,
        },
        Action::SetField { field: "probability".into(), value: serde_json::Value::Null },
        Action::AddNote { subject: "s".into(), body: String::new() },
        Action::PutOnHold { comment: String::new() },
    ];
    for a in &all {
        match a {
            Action::CreateTask { .. } | Action::SetField { .. } | Action::AddNote { .. } | Action::PutOnHold { .. } => {
            }
        }
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scripting.md")).unwrap();
    let documented = doc_cells("## Answers").into_iter().filter(|c| !c.contains([' ', '.'])).collect::<Vec<_>>();
    let mut names = Vec::new();
    for a in &all {
        let json = serde_json::to_value(a).unwrap();
        let name = json["action"].as_str().unwrap().to_string();
        let row = text.lines().find(|l| l.starts_with(&format!("| `{name}` |"))).unwrap_or_else(|| panic!("{name}"));
        for field in json.as_object().unwrap().keys().filter(|k| *k != "action") {
            assert!(row.contains(&format!("`{field}`")), "docs/scripting.md: {name} without its field {field}: {row}");
        }
        names.push(name);
    }
    assert_eq!(documented, names, "the actions of docs/scripting.md");
}

#[test]
fn docs_list_every_limit_key_with_its_default() {
    let defaults = serde_json::to_value(crmkit_rhai::RhaiSettings::default()).unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scripting.md")).unwrap();
    let mut expected: Vec<String> = defaults
        .as_object()
        .unwrap()
        .keys()
        .map(|k| match k.as_str() {
            "timeout_ms" | "report_timeout_ms" => format!("limits.{k}"),
            other => format!("runtimes.rhai.{other}"),
        })
        .collect();
    expected.sort();
    let mut documented = doc_cells("## Limits");
    documented.sort();
    assert_eq!(documented, expected);
    // Each default as written is the default, and each key is one config takes.
    let mut section = String::from("[runtimes.rhai]\n");
    for key in &documented {
        let row = text.lines().find(|l| l.starts_with(&format!("| `{key}` |"))).unwrap();
        let default = row.split('|').nth(2).unwrap().trim();
        let field = key.rsplit('.').next().unwrap();
        assert_eq!(defaults[field].to_string(), default, "{key}");
        if let Some(rhai_key) = key.strip_prefix("runtimes.rhai.") {
            section += &format!("{rhai_key} = {default}\n");
        }
    }
    let config = DEFAULT_CONFIG.replace("[runtimes.rhai]\nmax_operations = 1000000\nimports = true\n", &section);
    assert_ne!(config, DEFAULT_CONFIG);
    let settings = Settings::parse(&config, Path::new("crmkit.toml")).unwrap();
    assert_eq!(crmkit_rhai::RhaiSettings::from_settings(&settings).unwrap(), crmkit_rhai::RhaiSettings::default());
}

#[test]
fn docs_say_which_operation_fires_every_point() {
    use crmkit_core::hooks::HookPoint;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scripting.md")).unwrap();
    let table: String = text
        .split("## Which operation fires which point")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.rsplit('|').nth(1).unwrap().to_string())
        .collect();
    let named: std::collections::BTreeSet<&str> =
        table.split('`').filter(|w| w.contains('.') && !w.contains(' ')).collect();
    let points: std::collections::BTreeSet<&str> = HookPoint::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(named, points);
}

#[test]
fn a_script_reads_whether_a_step_closes_the_deal_and_leaves_its_stage() {
    let s = scripted(
        "[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"steps.rhai::no_closing\"\n",
        &[(
            "steps.rhai",
            "fn no_closing(ctx) {\n    let t = ctx.transition;\n    if t.closes { return `no ${t.how} (leaves ${t.leaves_stage})`; }\n    if t.leaves_stage { return \"no leaving\"; }\n    true\n}\n",
        )],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let d = s.deal(1000);
    let refused = |r: crmkit_core::Result<Deal>| match r {
        Err(crmkit_core::Error::Rejected { message, .. }) => message,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let won = s.fx.store.transact(Some(s.manager), |tx| {
        s.engine.close(tx, d.id, d.version, crmkit_core::process::Outcome::Won { comment: String::new() })
    });
    assert_eq!(refused(won), "no won (leaves true)");
    assert_eq!(refused(s.move_to(&d, "needs_analysis")), "no leaving");
    let held = s.fx.store.transact(Some(s.manager), |tx| s.engine.hold(tx, d.id, d.version, "May"));
    assert_eq!(held.unwrap().status, crmkit_core::model::DealStatus::OnHold);
}

#[test]
fn a_script_reads_a_multi_valued_field_as_an_array_and_sets_it_through_set_field() {
    let hooks = r#"[[hooks]]
point = "deal.after_transition"
handler = "kit.rhai::extend"
"#;
    let s = scripted(
        hooks,
        &[(
            "kit.rhai",
            r#"
            // Pumps need automation; "twice" asks for a value the field already holds.
            fn extend(ctx) {
                let kit = ctx.after.custom.equipment;
                if type_of(kit) != "array" || !kit.contains("pumps") { return []; }
                let add = if ctx.after.title == "twice" { "pumps" } else { "automation" };
                kit.push(add);
                [#{ action: "set_field", field: "custom.equipment", value: kit }]
            }
            "#,
        )],
    )
    .unwrap();
    let with_pumps = |title: &str| {
        let mut d = s.deal(10_000);
        d.title = title.into();
        d.custom.insert("equipment".into(), CustomValue::EnumSet(vec!["pumps".into()]));
        s.fx.store.transact(None, |tx| tx.update(d)).unwrap()
    };
    let moved = s.move_to(&with_pumps("Насосная станция"), "needs_analysis").unwrap();
    assert_eq!(moved.custom["equipment"], CustomValue::EnumSet(vec!["pumps".into(), "automation".into()]));

    let twice = with_pumps("twice");
    let text = s.refused_move(&twice, "needs_analysis").to_string();
    assert!(text.contains("custom.equipment") && text.contains("\"pumps\" twice"), "{text}");
}

const SCORE: &str = r#"[[hooks]]
point = "deal.score"
handler = "score.rhai::score"
"#;

#[test]
fn a_scoring_script_answers_deal_score_and_the_engine_keeps_it() {
    let script = r#"
        // A thousandth of the amount in percent, at most 100; 150 for a deal titled "wrong".
        fn score(ctx) {
            let d = ctx.after;
            if d.title == "wrong" {
                return #{ probability: 150, factors: [], model: "per-mille" };
            }
            let p = (d.amount / 1000).to_float();
            if p > 100.0 { p = 100.0; }
            #{ probability: p, factors: [#{ name: "amount", value: d.amount.to_string(), contribution: p }], model: "per-mille" }
        }
    "#;
    let s = scripted(SCORE, &[("score.rhai", script)]).unwrap();
    let d = s.deal(42_500);
    let score = d.score.clone().expect("scored");
    assert_eq!(
        (score.probability, score.handler.as_str(), score.model.as_deref()),
        (42.5, "score.rhai::score", Some("per-mille"))
    );
    assert_eq!(score.factors.len(), 1);
    assert_eq!(
        (score.factors[0].name.as_str(), &score.factors[0].value, score.factors[0].contribution),
        ("amount", &serde_json::json!("42500"), 42.5)
    );
    assert_eq!((d.probability, d.probability_manual), (Some(43), false), "the probability follows the score");
    assert_eq!(s.fx.store.read().unwrap().load::<Deal>(d.id).unwrap(), d, "stored as returned");

    // A wrong answer is the script's fault, on creation and on an edit; nothing is written.
    let p = s.fx.partner("Бета", crmkit_core::model::PartnerRole::Client);
    let mut wrong = new_deal(p.id, s.manager, 10_000);
    wrong.title = "wrong".into();
    let err = refused(&s.fx.store, Some(s.manager), |tx| s.engine.create_deal(tx, wrong.clone()));
    let text = err.to_string();
    assert!(matches!(err, Error::HookFault { .. }), "not a fault: {text}");
    assert!(
        text.starts_with("deal.score: handler score.rhai::score failed: ")
            && text.contains("probability is a percentage from 0 to 100, got 150"),
        "{text}"
    );
    let mut renamed = d.clone();
    renamed.title = "wrong".into();
    let err = refused(&s.fx.store, Some(s.manager), |tx| s.engine.update(tx, renamed.clone()));
    assert!(err.to_string().contains("handler score.rhai::score failed"), "{err}");
}

#[test]
fn shipped_scoring_model_gives_a_probability_with_its_factors() {
    let binding = r#"[[hooks]]
point = "deal.score"
handler = "scoring/logistic.rhai::win_probability"
"#;
    // The configs ship the binding commented out, word for word.
    let commented: String = binding.lines().map(|l| format!("# {l}\n")).collect();
    for config in [DEFAULT_CONFIG, crmkit_demo::DEMO_CONFIG] {
        assert!(config.contains(&commented), "the commented binding:\n{commented}");
    }
    let s = scripted(binding, &[]).unwrap();
    let handler = "scoring/logistic.rhai::win_probability";
    let check = |d: &Deal| -> f64 {
        let score = d.score.clone().unwrap_or_else(|| panic!("{} is not scored", d.title));
        assert_eq!((score.handler.as_str(), score.model.as_deref()), (handler, Some("logistic-v2")));
        assert!((0.0..=100.0).contains(&score.probability), "{}", score.probability);
        let names: Vec<&str> = score.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["intercept", "amount", "stage", "source", "days_to_stage", "partner_role", "partner_segment"]
        );
        // The contributions are the log-odds of the probability.
        let log_odds: f64 = score.factors.iter().map(|f| f.contribution).sum();
        let p = 100.0 / (1.0 + (-log_odds).exp());
        assert!((p - score.probability).abs() <= 0.05, "{p} against {}", score.probability);
        assert_eq!(d.probability, Some(score.percent()));
        score.probability
    };
    // Small deals are likelier than big ones; a deal further on likelier than one at the start.
    let small = s.deal(100_000);
    let big = s.deal(50_000_000);
    let (p_small, p_big) = (check(&small), check(&big));
    assert!(p_small > p_big, "{p_small} against {p_big}");
    let score = small.score.clone().unwrap();
    assert_eq!(score.factors[1].value, serde_json::json!("100000"));
    assert_eq!(score.factors[2].value, serde_json::json!("qualification"));
    assert_eq!(score.factors[3].value, serde_json::json!("website"));
    assert_eq!(score.factors[4].value, serde_json::json!(0));
    let moved = s.move_to(&small, "needs_analysis").unwrap();
    assert!(check(&moved) > p_small, "a later stage raises it");
    assert_eq!(moved.score.as_ref().unwrap().factors[2].value, serde_json::json!("needs_analysis"));
    // Asked again about the same deals, the model says the same: rescoring writes nothing.
    let before = s.fx.dump();
    let done = s.engine.rescore(&s.fx.store, None, true, &mut |_| {}).unwrap();
    assert_eq!((done.deals, done.changed), (2, 0));
    assert!(s.fx.dump() == before, "an unchanged score was written");
}

/// A scoring script and a stage guard that reads the deal's stored score: a deal the model
/// rates below 30 may not leave its stage, and the refusal writes nothing; a manual
/// probability is seen as such, beside the score.
#[test]
fn a_guard_refuses_a_deal_whose_score_is_low() {
    let hooks = r#"[[hooks]]
point = "deal.score"
handler = "scoring/amount.rhai::score"

[[hooks]]
point = "deal.before_transition"
handler = "guards.rhai::check"
"#;
    let scoring = r#"
        // One percent per 1,000 of the amount, at most 90.
        fn score(ctx) {
            let p = ctx.after.amount / 1000;
            if p > 90 { p = 90; }
            #{ probability: p.to_float(), factors: [#{ name: "amount", value: ctx.after.amount.to_string(), contribution: p.to_float() }], model: "amount-v1" }
        }
    "#;
    let guard = r#"
        fn check(ctx) {
            let deal = ctx.after;
            if ctx.transition.leaves_stage && deal.score != () && deal.score.probability < 30 {
                return #{ reject: `${deal.title}: the model gives ${deal.score.probability}% (${deal.score.model}, ${deal.score.factors.len()} factor), under 30%`, field: "score" };
            }
            if deal.probability_manual { return `manual ${deal.probability}, scored ${deal.score.probability}`; }
            true
        }
    "#;
    let s = scripted(hooks, &[("scoring/amount.rhai", scoring), ("guards.rhai", guard)]).unwrap();

    let low = s.deal(20_000);
    assert_eq!(low.score.as_ref().map(|s| s.probability), Some(20.0), "scored when created");
    let title = low.title.clone();
    match s.refused_move(&low, "needs_analysis") {
        Error::Rejected { message, field, .. } => {
            assert_eq!(message, format!("{title}: the model gives 20.0% (amount-v1, 1 factor), under 30%"));
            assert_eq!(field.as_deref(), Some("score"));
        }
        other => panic!("expected a rejection, got {other}"),
    }

    let high = s.deal(45_000);
    let moved = s.move_to(&high, "needs_analysis").unwrap();
    assert_eq!(moved.stage.as_deref(), Some("needs_analysis"));

    // A probability given by hand is kept and flagged; the guard reads both.
    let p = s.fx.partner("Бета", crmkit_core::model::PartnerRole::Client);
    let mut d = new_deal(p.id, s.manager, 50_000);
    d.source = Some("website".into());
    d.probability = Some(15);
    let manual = s.fx.store.transact(Some(s.manager), |tx| s.engine.create_deal(tx, d)).unwrap();
    assert!(manual.probability_manual);
    match s.refused_move(&manual, "needs_analysis") {
        Error::Rejected { message, .. } => assert_eq!(message, "manual 15, scored 50.0"),
        other => panic!("expected a rejection, got {other}"),
    }
}

/// `ctx.now` is the engine's clock, not the system's: with the clock standing still at a
/// chosen instant, a script sees exactly that instant, and measures time in a stage with it.
#[test]
fn ctx_now_is_the_engines_clock() {
    let guard = r#"
        fn check(ctx) {
            `now ${ctx.now}, ${days_between(ctx.before.stage_entered_at, ctx.now)} days in ${ctx.before.stage}`
        }
    "#;
    let s = scripted(GUARD, &[("guards.rhai", guard)]).unwrap();
    let d = s.deal(10_000);
    s.fx.clock.advance(3 * 86_400_000 + 5_000);
    let now = s.fx.store.clock().now();
    assert_eq!(now.to_string(), "2026-03-05T09:00:05.000Z");
    match s.refused_move(&d, "needs_analysis") {
        Error::Rejected { message, .. } => {
            assert_eq!(message, "now 2026-03-05T09:00:05.000Z, 3 days in qualification")
        }
        other => panic!("expected a rejection, got {other}"),
    }
}

/// A script's `history` and `user` reads answer the contract's forms (docs/hooks.md, "What
/// a handler may read"), key for key.
#[test]
fn history_and_user_reads_are_the_contract() {
    let guard = r#"
        fn check(ctx) {
            let steps = history(ctx.after);
            let who = user(ctx.after.manager);
            let keys = |m| { let k = m.keys(); k.sort(); k };
            `${keys.call(steps[0])} ${keys.call(who)} ${steps[0].how} ${steps[0].to_stage} ${who.login}`
        }
    "#;
    let s = scripted(GUARD, &[("guards.rhai", guard)]).unwrap();
    let d = s.deal(10_000);
    let manager = s.fx.store.read().unwrap().load::<crmkit_core::model::User>(s.manager).unwrap();
    match s.refused_move(&d, "needs_analysis") {
        Error::Rejected { message, .. } => assert_eq!(
            message,
            format!(
                "[\"actor\", \"at\", \"deal\", \"dwell_ms\", \"from_stage\", \"from_status\", \"how\", \"imported\", \"note\", \"step\", \"to_stage\", \"to_status\"] \
                 [\"active\", \"created_at\", \"custom\", \"department\", \"email\", \"id\", \"login\", \"name\", \"roles\", \"updated_at\", \"version\"] \
                 create qualification {}",
                manager.login
            )
        ),
        other => panic!("expected a rejection, got {other}"),
    }
}

/// The shipped report scripts on a company with more manager-and-month cells than a
/// script's map may hold (`max_map_size`): a report that kept a map entry per cell stops
/// there; the shipped ones count natively (`tally_deals`) and finish, adding up.
#[test]
fn shipped_reports_finish_where_a_map_per_cell_does_not_fit() {
    use crmkit_core::model::DealStatus;
    use std::collections::{BTreeMap, BTreeSet};
    let dir = tempfile::tempdir().unwrap();
    // Ten years of 2,000 managers: many more cells than deals, so nearly every won or open
    // deal opens a cell of its own.
    let base = crmkit_demo::DemoOptions::new(28_000, 7);
    let opts =
        crmkit_demo::DemoOptions { managers: 2_000, start: base.end.plus_millis(-10 * 365 * 86_400_000), ..base };
    let clock = Arc::new(crmkit_core::time::ManualClock::new(opts.start));
    let inst = crmkit_core::Installation::init(&dir.path().join("big"), Some(crmkit_demo::DEMO_CONFIG), clock.clone())
        .unwrap();
    crmkit_demo::populate(inst.store(), &clock, &opts, &mut |_| {}).unwrap();
    let snap = inst.store().read().unwrap();
    let mut cells = BTreeSet::new();
    let (mut won, mut open, mut lost) = (0i64, 0i64, 0i64);
    snap.for_each::<Deal>(|d| {
        let month = match d.status {
            DealStatus::Won => d.closed_at.map(|t| t.date()),
            DealStatus::InProgress | DealStatus::OnHold => d.expected_close,
            DealStatus::Lost => None,
        };
        won += (d.status == DealStatus::Won) as i64;
        open += (month.is_some() && d.status != DealStatus::Won) as i64;
        lost += (d.status == DealStatus::Lost) as i64;
        if let Some(m) = month {
            cells.insert((d.manager, m.format("%Y-%m").to_string()));
        }
        true
    })
    .unwrap();
    let limit = crmkit_rhai::RhaiSettings::default().max_map_size;
    assert!(cells.len() > limit, "{} cells, the map limit {limit}: the company is too small to show it", cells.len());

    // A report keeping a map entry per manager and month stops at the limit.
    let (_scripts, host) = shipped_host();
    std::fs::write(
        host.dir().join("reports/per_cell.rhai"),
        r#"fn report(p) {
            let cells = #{};
            each_deal(|d| {
                let day = if d.status == "won" { d.closed_at } else { d.expected_close };
                if day != () { cells[`${d.manager}|${day.sub_string(0, 7)}`] = true; }
                true
            });
            #{ columns: [#{ name: "cells", type: "int" }], rows: [[cells.len()]] }
        }"#,
    )
    .unwrap();
    host.load_all();
    let e = run_report(&host, &snap, "per_cell", &BTreeMap::new()).unwrap_err().to_string();
    assert!(e.contains("an object map grew past its limit (runtimes.rhai.max_map_size)"), "{e}");

    let sum = |t: &crmkit_core::report::Table, col: &str| -> i64 {
        let i = t.columns().iter().position(|c| c.name == col).unwrap();
        t.rows().iter().map(|r| r[i].as_i64().unwrap()).sum()
    };
    let pipeline = run_report(&host, &snap, "pipeline_by_manager", &BTreeMap::new()).unwrap();
    assert_eq!(pipeline.rows().len(), cells.len());
    assert_eq!((sum(&pipeline, "won_deals"), sum(&pipeline, "open_deals")), (won, open));
    let losses = run_report(&host, &snap, "losses_by_competitor", &BTreeMap::new()).unwrap();
    assert_eq!(sum(&losses, "deals"), lost);
}

#[test]
fn tally_deals_names_what_is_wrong_in_its_options() {
    let (_tmp, inst, _) = crate::demo::company();
    let snap = inst.store().read().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    for (options, expected) in [
        (r#"#{ status: ["won"] }"#, "tally_deals: by must name at least one key"),
        (r#"#{ by: ["mood"] }"#, "tally_deals: by: \"mood\" is not a key (keys: manager, kind, stage"),
        (r#"#{ by: ["manager"], status: ["won", "done"] }"#, "tally_deals: status: \"done\" is not a status"),
        (r#"#{ by: ["manager"], colour: 1 }"#, "tally_deals: unknown option \"colour\" (options: by, status, kind)"),
        (r#"#{ by: "manager" }"#, "tally_deals: by is string, not an array"),
    ] {
        std::fs::write(
            dir.path().join("reports/t.rhai"),
            format!("fn report(p) {{ tally_deals({options}); #{{ columns: [], rows: [] }} }}"),
        )
        .unwrap();
        let host = Arc::new(ScriptHost::new(dir.path(), &Default::default()));
        let e = run_report(&host, &snap, "t", &Default::default()).unwrap_err().to_string();
        assert!(e.contains(expected), "{options}: {e:?} does not contain {expected:?}");
    }
    // Grouped by status, the counts are the deals' by status.
    std::fs::write(
        dir.path().join("reports/t.rhai"),
        r#"fn report(p) {
            #{ columns: [#{ name: "status", type: "text" }, #{ name: "deals", type: "int" }],
               rows: tally_deals(#{ by: ["status"] }).map(|r| [r[0], r[1]]) }
        }"#,
    )
    .unwrap();
    let host = Arc::new(ScriptHost::new(dir.path(), &Default::default()));
    let t = run_report(&host, &snap, "t", &Default::default()).unwrap();
    let mut expected = std::collections::BTreeMap::<String, i64>::new();
    snap.for_each::<Deal>(|d| {
        *expected.entry(d.status.name().to_string()).or_default() += 1;
        true
    })
    .unwrap();
    let got: std::collections::BTreeMap<String, i64> =
        t.rows().iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap())).collect();
    assert_eq!(got, expected);
}

#[test]
fn join_rows_matches_two_tables_on_their_keys_and_names_a_bad_row() {
    let (_tmp, inst, _) = crate::demo::company();
    let snap = inst.store().read().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    let run = |body: &str| {
        std::fs::write(
            dir.path().join("reports/t.rhai"),
            format!(
                "fn report(p) {{ let rows = {body}; #{{ columns: [#{{ name: \"row\", type: \"text\" }}], \
                 rows: rows.map(|r| [`${{r}}`]) }} }}"
            ),
        )
        .unwrap();
        let host = Arc::new(ScriptHost::new(dir.path(), &Default::default()));
        run_report(&host, &snap, "t", &Default::default())
            .map(|t| t.rows().iter().map(|r| r[0].as_str().unwrap().to_string()).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    // Keys on either side, sorted: () first, then numbers, then text; a side without the
    // key gives () in each of its cells.
    let got = run(r#"join_rows([["b", 1, 10], ["a", 2, 20], [(), 0, 5]], [["a", 2, "x"], ["c", 1, "y"]], 2)"#).unwrap();
    assert_eq!(got, ["[(), 0, 5, ()]", "[\"a\", 2, 20, \"x\"]", "[\"b\", 1, 10, ()]", "[\"c\", 1, (), \"y\"]"]);
    // A side with no rows is as wide as the other.
    assert_eq!(run(r#"join_rows([], [["a", 1, 2]], 1)"#).unwrap(), ["[\"a\", (), (), 1, 2]"]);
    assert_eq!(run(r#"join_rows([["a", 1, 2]], [], 1)"#).unwrap(), ["[\"a\", 1, 2, (), ()]"]);
    // Two tally_deals answers joined per manager: every manager with a won or a lost deal.
    let got = run(
        r#"join_rows(tally_deals(#{ by: ["manager"], status: ["won"] }), tally_deals(#{ by: ["manager"], status: ["lost"] }), 1)"#,
    )
    .unwrap();
    let mut managers = std::collections::BTreeSet::new();
    snap.for_each::<Deal>(|d| {
        if d.status.is_closed() {
            managers.insert(d.manager);
        }
        true
    })
    .unwrap();
    assert_eq!(got.len(), managers.len());
    for (body, expected) in [
        (r#"join_rows([["a", 1]], [], 0)"#, "join_rows: keys is 0; it is how many leading cells of a row make its key"),
        (r#"join_rows([["a", 1], 5], [], 1)"#, "join_rows: left row 2: is i64, not an array"),
        (r#"join_rows([], [["a", 1], ["b"]], 2)"#, "join_rows: right row 2: has 1 cells, fewer than the 2 key cells"),
        (
            r#"join_rows([["a", 1], ["b", 1, 2]], [], 1)"#,
            "join_rows: left row 2: has 3 cells where the rows before have 2",
        ),
        (r#"join_rows([[#{ x: 1 }, 1]], [], 1)"#, "join_rows: left row 1: key cell 1 is map; keys are text, numbers"),
        (r#"join_rows([], [["a", 1], ["a", 2]], 1)"#, "join_rows: right row 2: its key is on an earlier right row too"),
    ] {
        let e = run(body).unwrap_err();
        assert!(e.contains(expected), "{body}: {e:?} does not contain {expected:?}");
    }
}

#[test]
fn a_report_script_reads_a_built_in_report_through_analytics() {
    use crmkit_core::analytics::Analytics;
    use crmkit_core::report::ReportSource as _;
    let (_tmp, inst, _) = crate::demo::company();
    let snap = inst.store().read().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    let script = |body: &str| {
        std::fs::write(dir.path().join("reports/t.rhai"), format!("fn report(p) {{ {body} }}")).unwrap();
        Arc::new(ScriptHost::new(dir.path(), &Default::default()))
    };
    // Passed on as it is, the table is the built-in report's, cell for cell.
    let host = script(r#"analytics("lost", #{ from: "2025-01-01", to: "2026-12-31" })"#);
    let got = run_report(&host, &snap, "t", &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let params = [("from", "2025-01-01"), ("to", "2026-12-31")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    let (columns, rows) = Analytics.run("lost", &params, &snap).unwrap();
    assert!(!rows.is_empty(), "the demo has lost deals");
    assert_eq!(
        got.columns().iter().map(|c| (&c.name, c.ty)).collect::<Vec<_>>(),
        columns.iter().map(|c| (&c.name, c.ty)).collect::<Vec<_>>()
    );
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cells = |rows: &[Vec<serde_json::Value>]| {
        rows.iter().map(|r| r.iter().map(text).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    assert_eq!(cells(got.rows()), cells(&rows));
    // Reshaped: the deals of every stage row of the funnel, summed in the script, are the sum
    // of the built-in report's column.
    let host = script(
        r#"let f = analytics("funnel");
           let at = f.columns.index_of(|c| c.name == "reached");
           let row = f.columns.index_of(|c| c.name == "row");
           let n = 0;
           for r in f.rows { if r[row] == "stage" { n += r[at]; } }
           #{ columns: [#{ name: "reached", type: "int" }], rows: [[n]] }"#,
    );
    let got = run_report(&host, &snap, "t", &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let (columns, rows) = Analytics.run("funnel", &Default::default(), &snap).unwrap();
    let (row, at) = ["row", "reached"].map(|n| columns.iter().position(|c| c.name == n).unwrap()).into();
    let sum: i64 = rows.iter().filter(|r| r[row] == "stage").map(|r| r[at].as_i64().unwrap()).sum();
    assert!(sum > 0);
    assert_eq!(got.rows()[0][0].as_i64(), Some(sum));
    // Mistakes are named: the report, the parameter.
    for (body, expected) in [
        (r#"analytics("forecast")"#, "analytics: there is no built-in report \"forecast\" (reports: funnel, "),
        (
            r#"analytics("lost", #{ kind: "yacht" })"#,
            "analytics: report lost: parameter kind: there is no process kind \"yacht\"",
        ),
        (r#"analytics("lost", #{ from: "1.3.2026" })"#, "analytics: report lost: parameter from: "),
        (r#"analytics("lost", #{ colour: "red" })"#, "analytics: report lost: there is no parameter \"colour\""),
    ] {
        let e = run_report(&script(body), &snap, "t", &Default::default()).unwrap_err().to_string();
        assert!(e.contains(expected), "{body}: {e:?} does not contain {expected:?}");
    }
}
