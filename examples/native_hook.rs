//! Native hook handlers: an embedding program teaches the process engine a rule of its own
//! and a reaction, without any script. The guard keeps a B2B deal from leaving the proposal
//! stage until an agreed quote is attached; the reaction asks the manager for a follow-up
//! call whenever a deal is put on hold.
//!
//! Run with `cargo run -p crmkit-core --example native_hook`.

use std::sync::Arc;

use crmkit_core::config::Settings;
use crmkit_core::hooks::{Action, Answer, Fault, HookInput, HookPoint, Hooks, Subject};
use crmkit_core::model::{Deal, Document, DocumentKind, DocumentState, Partner, PartnerRole, Role, User};
use crmkit_core::process::Engine;
use crmkit_core::store::{Index, Reader, Store};
use crmkit_core::time::{Clock, ManualClock, Timestamp};
use crmkit_core::values::Money;
use crmkit_core::Error;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(Timestamp::parse("2026-03-02T09:00:00Z")?));
    // The built-in config binds the shipped Rhai scripts; this program has no Rhai runtime
    // and binds native handlers only, so it keeps the config's processes without its bindings.
    let mut settings = Settings::builtin();
    settings.hooks.clear();
    let store = Arc::new(Store::create(&dir.path().join("crm.redb"), Arc::new(settings.clone()), clock.clone())?);

    // The guard reads the store: handlers are plain closures and may capture what they need.
    // It reads the last committed state, not the transaction it guards.
    let mut hooks = Hooks::new();
    let for_guard = store.clone();
    hooks.register("require_agreed_quote", move |input: &HookInput<'_>| {
        let (Some(Subject::Deal(deal)), Some(t)) = (&input.after, input.transition) else { return Ok(Answer::Allow) };
        if t.from_stage.as_deref() != Some("proposal") || t.to_stage.as_deref() != Some("negotiation") {
            return Ok(Answer::Allow);
        }
        let r = for_guard.read().map_err(|e| Fault(e.to_string()))?;
        let docs: Vec<Document> =
            r.find(Index::DocumentByDeal, &deal.id.0.to_bytes(), None, 100).map_err(|e| Fault(e.to_string()))?;
        if docs.iter().any(|d| d.kind == DocumentKind::Quote && d.state == DocumentState::Agreed) {
            Ok(Answer::Allow)
        } else {
            Ok(Answer::Reject {
                message: "negotiation starts from an agreed quote".into(),
                field: Some("documents".into()),
            })
        }
    });
    hooks.register("follow_up_on_hold", |input: &HookInput<'_>| {
        let on_hold = input.transition.is_some_and(|t| t.how == crmkit_core::model::How::Hold);
        Ok(Answer::Actions(if on_hold {
            vec![Action::CreateTask {
                title: "Call the client back about the paused deal".into(),
                description: String::new(),
                executor: None,
                due_in_minutes: Some(7 * 24 * 60),
                required: false,
            }]
        } else {
            Vec::new()
        }))
    });
    hooks.bind(HookPoint::DealBeforeTransition, "require_agreed_quote", &["b2b_sale"])?;
    hooks.bind(HookPoint::DealAfterTransition, "follow_up_on_hold", &[])?;
    let engine = Engine::new(&settings, hooks)?;

    let amount = Money::parse("1250000", "RUB")?;
    let (manager, deal) = store.transact(None, |tx| {
        let manager = tx.create(User::new("a.ivanova", "Иванова Анна", Role::Manager))?;
        let client = tx.create(Partner::new("Ромашка", PartnerRole::Client))?;
        let mut deal = Deal::new("Поставка насосов", client.id, "b2b_sale", None, manager.id, amount);
        deal.source = Some("website".into());
        deal.expected_close = Some("2026-05-31".parse().expect("a date"));
        Ok((manager, engine.create_deal(tx, deal)?))
    })?;
    println!("created {} in stage {:?}", deal.id, deal.stage);

    // Through the route to the proposal, ticking off the needs analysis checklist.
    let mut deal = store.transact(Some(manager.id), |tx| {
        clock.advance(2 * 86_400_000);
        let d = engine.move_deal(tx, deal.id, deal.version, "needs_analysis", None)?;
        let d = engine.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
        clock.advance(5 * 86_400_000);
        engine.move_deal(tx, d.id, d.version, "proposal", None)
    })?;

    // The guard refuses negotiation without an agreed quote; nothing is written.
    let refused =
        store.transact(Some(manager.id), |tx| engine.move_deal(tx, deal.id, deal.version, "negotiation", None));
    match refused {
        Err(Error::Rejected { handler, message, .. }) => println!("{handler} refused: {message}"),
        other => println!("unexpected: {other:?}"),
    }

    // With the quote agreed (and committed, so that the guard's snapshot sees it), the move
    // goes through.
    store.transact(Some(manager.id), |tx| {
        let mut quote = Document::new(DocumentKind::Quote, "КП-26-0001", clock.now().date(), deal.partner, deal.amount);
        quote.deal = Some(deal.id);
        quote.state = DocumentState::Agreed;
        tx.create(quote)
    })?;
    clock.advance(86_400_000);
    deal = store.transact(Some(manager.id), |tx| engine.move_deal(tx, deal.id, deal.version, "negotiation", None))?;
    // Putting it on hold makes the reaction create a task in the same transaction.
    deal = store.transact(Some(manager.id), |tx| engine.hold(tx, deal.id, deal.version, "budget frozen until Q3"))?;

    let r = store.read()?;
    for step in r.stage_history(deal.id)? {
        println!(
            "{} {:>8} {:?} → {:?} ({}), {} days in the stage left",
            step.at,
            step.how.name(),
            step.from_stage,
            step.to_stage,
            step.to_status.name(),
            step.dwell_ms.map_or("-".to_string(), |ms| format!("{:.1}", ms as f64 / 86_400_000.0))
        );
    }
    for task in r.tasks_of_deal(deal.id)? {
        println!("task: {} for {} due {:?}", task.title, task.executor, task.due);
    }
    Ok(())
}
