//! What a script sees and answers: the hook's input as Rhai values, derived from version 1
//! of the hook contract (docs/hooks.md): `ctx` has a getter per field of the contract's
//! input, a deal is a typed value with a getter per field of the contract's deal (its
//! amounts and custom numbers as decimals), other entities are object maps of their contract
//! form. What a script returns goes back to core as JSON, which core reads against the point.

use crmkit_core::hooks::wire::{
    self, ActorV1, DocumentV1, InputV1, InteractionV1, PartnerV1, ScoreV1, SubjectV1, TaskV1, UserV1,
};
use crmkit_core::hooks::{HookInput, Reply, Subject, Transition, View};
use crmkit_core::model::{CustomFields, CustomValue, Deal, Role};
use std::cell::RefCell;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};

/// The functions that read the store.
pub const STORE_FUNCTIONS: [&str; 13] = [
    "each_deal(",
    "tally_deals(",
    "analytics(",
    "partner(",
    "user(",
    "deals(",
    "deal(",
    "deals_of(",
    "history(",
    "interactions(",
    "documents(",
    "users_with_role(",
    "open_tasks(",
];

/// Whether a script's text may read the store: it names a store function before a `(`, or
/// may call a function it does not name (`Fn`, `call`, `curry`), or imports one that might.
pub fn may_read_store(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    ["import", "Fn(", "call(", "curry("].iter().any(|w| compact.contains(w))
        || STORE_FUNCTIONS.iter().any(|f| compact.contains(f))
}

/// A read a script asks of the store.
pub enum Ask {
    Partner(String),
    User(String),
    Deals,
    DealsAfter(Option<String>, usize),
    Deal(String),
    DealsOf(String),
    History(String),
    Interactions(String),
    Documents(String),
    UsersWithRole(String),
    OpenTasks(String),
    Tally(crate::scan::Tally),
    Analytics(String, std::collections::BTreeMap<String, String>),
}

/// The answer to an [`Ask`].
pub type ReadReply = Result<Dynamic, String>;

type Link = (Sender<Ask>, Receiver<ReadReply>);

thread_local! {
    /// Where this thread's script sends its reads.
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
}

/// Connects this thread's script to the thread that answers its reads (`None`: none).
pub fn connect(link: Option<Link>) {
    LINK.with(|l| *l.borrow_mut() = link);
}

fn ask(function: &str, question: Ask) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    LINK.with(|l| match &*l.borrow() {
        Some((send, receive)) => {
            send.send(question).map_err(|_| format!("{function}(): the store went away"))?;
            receive.recv().map_err(|_| format!("{function}(): the store went away"))?.map_err(Into::into)
        }
        None => Err(format!("{function}(): the store is not open to this call").into()),
    })
}

fn id<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("\"{s}\" is not a {what} id"))
}

fn dynamic<T: serde::Serialize>(v: &T) -> ReadReply {
    rhai::serde::to_dynamic(v).map_err(|e| e.to_string())
}

fn deals(v: Vec<Deal>) -> Dynamic {
    v.into_iter().map(|d| Dynamic::from(Arc::new(d))).collect::<rhai::Array>().into()
}

/// Answers a script's read from `view`, on the thread that holds it.
pub fn answer_read(view: &dyn View, question: Ask) -> ReadReply {
    let err = |e: crmkit_core::Error| e.to_string();
    match question {
        Ask::Partner(p) => match view.partner(id("partner", &p)?).map_err(err)? {
            Some(p) => dynamic(&PartnerV1::from(&p)),
            None => Ok(Dynamic::UNIT),
        },
        Ask::User(u) => match view.user(id("user", &u)?).map_err(err)? {
            Some(u) => dynamic(&UserV1::from(&u)),
            None => Ok(Dynamic::UNIT),
        },
        Ask::Deals => {
            let mut all = rhai::Array::new();
            view.each_deal(&mut |d| {
                all.push(Dynamic::from(Arc::new(d.clone())));
                all.len() <= MAX_DEALS_AT_ONCE
            })
            .map_err(err)?;
            if all.len() > MAX_DEALS_AT_ONCE {
                return Err(format!(
                    "deals(): the installation has more than {MAX_DEALS_AT_ONCE} deals; go through them with each_deal(|deal| …)"
                ));
            }
            Ok(all.into())
        }
        Ask::DealsAfter(after, limit) => {
            let after = after.map(|a| id("deal", &a)).transpose()?;
            Ok(deals(view.deals_page(after, limit).map_err(err)?))
        }
        Ask::Deal(d) => {
            Ok(view.deal(id("deal", &d)?).map_err(err)?.map_or(Dynamic::UNIT, |d| Dynamic::from(Arc::new(d))))
        }
        Ask::DealsOf(p) => Ok(deals(view.deals_of(id("partner", &p)?).map_err(err)?)),
        Ask::History(d) => dynamic(&wire::history(&view.history(id("deal", &d)?).map_err(err)?)),
        Ask::Interactions(d) => {
            let all = view.interactions(id("deal", &d)?).map_err(err)?;
            dynamic(&all.iter().map(InteractionV1::from).collect::<Vec<_>>())
        }
        Ask::Documents(d) => {
            let all = view.documents(id("deal", &d)?).map_err(err)?;
            dynamic(&all.iter().map(DocumentV1::from).collect::<Vec<_>>())
        }
        Ask::OpenTasks(login) => {
            let user = view
                .user_with_login(&login)
                .map_err(err)?
                .ok_or_else(|| format!("no user has the login \"{login}\""))?;
            Ok(Dynamic::from_int(view.open_tasks(user.id).map_err(err)? as i64))
        }
        Ask::Tally(tally) => Ok(tally.run(view)?.into()),
        Ask::Analytics(name, params) => Ok(crate::scan::analytics(view, &name, &params)?.into()),
        Ask::UsersWithRole(r) => {
            let role: Role = serde_json::from_value(serde_json::Value::String(r.clone()))
                .map_err(|_| format!("\"{r}\" is not a role"))?;
            dynamic(&view.users_with_role(role).map_err(err)?.iter().map(UserV1::from).collect::<Vec<_>>())
        }
    }
}

/// The most deals `deals()` hands a script at once.
const MAX_DEALS_AT_ONCE: usize = 10_000;

/// Calls `f` with every deal, oldest first, a page at a time, until it returns `false`.
fn each_deal(ctx: rhai::NativeCallContext, f: rhai::FnPtr) -> Result<(), Box<rhai::EvalAltResult>> {
    let mut after: Option<String> = None;
    loop {
        let page = ask("each_deal", Ask::DealsAfter(after.clone(), 500))?.into_array()?;
        let Some(last) = page.last() else { return Ok(()) };
        after = Some(last.clone().cast::<Arc<Deal>>().id.to_string());
        for deal in page {
            let go_on: Dynamic = f.call_within_context(&ctx, (deal,))?;
            if go_on.as_bool() == Ok(false) {
                return Ok(());
            }
        }
    }
}

/// The signature of every function, getter and method the CRM adds for scripts (beyond
/// Rhai's own), sorted: what docs/scripting.md lists.
pub fn signatures() -> Vec<String> {
    let mut engine = Engine::new_raw();
    register(&mut engine);
    let mut all = engine.gen_fn_signatures(false);
    all.sort();
    all.dedup();
    all
}

/// Registers the types and functions scripts use.
pub fn register(engine: &mut Engine) {
    engine.register_fn("each_deal", each_deal);
    engine.register_fn("tally_deals", |options: Map| {
        ask("tally_deals", Ask::Tally(crate::scan::Tally::from_options(&options)?))
    });
    engine.register_fn("join_rows", |left: rhai::Array, right: rhai::Array, keys: i64| {
        crate::scan::join_rows(left, right, keys).map_err(Box::<rhai::EvalAltResult>::from)
    });
    engine.register_fn("analytics", |name: &str, params: Map| {
        let params = params.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ask("analytics", Ask::Analytics(name.to_string(), params))
    });
    engine
        .register_fn("analytics", |name: &str| ask("analytics", Ask::Analytics(name.to_string(), Default::default())));
    engine.register_fn("partner", |id: &str| ask("partner", Ask::Partner(id.into())));
    engine.register_fn("deal", |id: &str| ask("deal", Ask::Deal(id.into())));
    engine.register_fn("user", |id: &str| ask("user", Ask::User(id.into())));
    engine.register_fn("deals", || ask("deals", Ask::Deals));
    engine.register_fn("deals_of", |partner: &str| ask("deals_of", Ask::DealsOf(partner.into())));
    engine.register_fn("history", |deal: &str| ask("history", Ask::History(deal.into())));
    engine.register_fn("history", |deal: &mut Arc<Deal>| ask("history", Ask::History(deal.id.to_string())));
    engine.register_fn("interactions", |deal: &str| ask("interactions", Ask::Interactions(deal.into())));
    engine.register_fn("interactions", |deal: &mut Arc<Deal>| {
        ask("interactions", Ask::Interactions(deal.id.to_string()))
    });
    engine.register_fn("documents", |deal: &str| ask("documents", Ask::Documents(deal.into())));
    engine.register_fn("documents", |deal: &mut Arc<Deal>| ask("documents", Ask::Documents(deal.id.to_string())));
    engine.register_fn("users_with_role", |role: &str| ask("users_with_role", Ask::UsersWithRole(role.into())));
    engine.register_fn("open_tasks", |login: &str| ask("open_tasks", Ask::OpenTasks(login.into())));
    // A deal is shared, not copied, between the values that hold it.
    engine.register_type_with_name::<Arc<Deal>>("Deal");
    macro_rules! text {
        ($($name:ident),*) => {$(
            engine.register_get(stringify!($name), |d: &mut Arc<Deal>| -> Dynamic { d.$name.clone().into() });
        )*};
    }
    macro_rules! optional {
        ($($name:ident),*) => {$(
            engine.register_get(stringify!($name), |d: &mut Arc<Deal>| -> Dynamic {
                d.$name.as_ref().map_or(Dynamic::UNIT, |v| v.to_string().into())
            });
        )*};
    }
    text!(title, kind, comment);
    optional!(stage, source, loss_reason, counterparty, competitor, expected_close, closed_at, stage_entered_at);
    engine.register_get("id", |d: &mut Arc<Deal>| -> Dynamic { d.id.to_string().into() });
    engine.register_get("version", |d: &mut Arc<Deal>| -> Dynamic { Dynamic::from_int(d.version as i64) });
    engine.register_get("created_at", |d: &mut Arc<Deal>| -> Dynamic { d.created_at.to_string().into() });
    engine.register_get("updated_at", |d: &mut Arc<Deal>| -> Dynamic { d.updated_at.to_string().into() });
    engine.register_get("partner", |d: &mut Arc<Deal>| -> Dynamic { d.partner.to_string().into() });
    engine.register_get("manager", |d: &mut Arc<Deal>| -> Dynamic { d.manager.to_string().into() });
    engine.register_get("status", |d: &mut Arc<Deal>| -> Dynamic { d.status.name().into() });
    engine.register_get("amount", |d: &mut Arc<Deal>| -> Dynamic { Dynamic::from_decimal(d.amount.amount) });
    engine.register_get("currency", |d: &mut Arc<Deal>| -> Dynamic { d.amount.currency.to_string().into() });
    engine.register_get("probability", |d: &mut Arc<Deal>| -> Dynamic {
        d.probability.map_or(Dynamic::UNIT, |p| Dynamic::from_int(p.into()))
    });
    engine.register_get("probability_manual", |d: &mut Arc<Deal>| d.probability_manual);
    engine.register_get("score", |d: &mut Arc<Deal>| -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        match &d.score {
            Some(s) => rhai::serde::to_dynamic(ScoreV1::from(s)),
            None => Ok(Dynamic::UNIT),
        }
    });
    engine.register_get("checklist", |d: &mut Arc<Deal>| -> Dynamic {
        d.checklist.iter().map(|c| Dynamic::from(c.clone())).collect::<rhai::Array>().into()
    });
    engine.register_get("custom", |d: &mut Arc<Deal>| -> Dynamic { custom(&d.custom).into() });
    engine.register_fn("to_string", |d: &mut Arc<Deal>| format!("deal {} \"{}\"", d.id, d.title));
    register_context(engine);

    // Dates are `YYYY-MM-DD` text; times RFC 3339.
    engine.register_fn("days_between", |from: &str, to: &str| -> Result<i64, Box<rhai::EvalAltResult>> {
        Ok((date(to)? - date(from)?).num_days())
    });
    engine.register_fn("add_days", |day: &str, n: i64| -> Result<String, Box<rhai::EvalAltResult>> {
        let from = date(day)?;
        chrono::TimeDelta::try_days(n)
            .and_then(|d| from.checked_add_signed(d))
            .map(|d| d.to_string())
            .ok_or_else(|| format!("add_days(\"{day}\", {n}): beyond the calendar").into())
    });
    // The sequence number of an id: which came first, whatever the clock said.
    engine.register_fn("sequence", |id: &str| -> Result<i64, Box<rhai::EvalAltResult>> {
        let raw: crmkit_core::id::RawId = id.parse().map_err(|_| format!("\"{id}\" is not an id"))?;
        let bytes = raw.to_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        Ok((u64::from_be_bytes(low) & (i64::MAX as u64)) as i64)
    });
    engine.register_fn("log", |ctx: rhai::NativeCallContext, level: &str, message: &str| {
        let source = ctx.call_source().unwrap_or("?");
        let line = ctx.call_position().line().unwrap_or(0);
        match level {
            "error" => tracing::error!(target: "crmkit::script", script = source, line, "{message}"),
            "warn" => tracing::warn!(target: "crmkit::script", script = source, line, "{message}"),
            "debug" => tracing::debug!(target: "crmkit::script", script = source, line, "{message}"),
            "trace" => tracing::trace!(target: "crmkit::script", script = source, line, "{message}"),
            _ => tracing::info!(target: "crmkit::script", script = source, line, "{message}"),
        }
    });
}

/// A date argument: `YYYY-MM-DD` by core's rule of dates, or an RFC 3339 time (a record's
/// `created_at`, a stage's `stage_entered_at`), whose day it is as written.
fn date(s: &str) -> Result<chrono::NaiveDate, Box<rhai::EvalAltResult>> {
    let day = match s.get(..10) {
        Some(day) if s.len() > 10 && chrono::DateTime::parse_from_rfc3339(s).is_ok() => day,
        _ => s,
    };
    crmkit_core::values::date::parse(day).map_err(|m| format!("{m}: a date is YYYY-MM-DD text").into())
}

/// Custom values as plain script values: text, decimals, booleans; money as a map.
fn custom(values: &CustomFields) -> Map {
    values
        .iter()
        .map(|(k, v)| {
            let v: Dynamic = match v {
                CustomValue::String(s) | CustomValue::Enum(s) => s.clone().into(),
                CustomValue::Number(n) => Dynamic::from_decimal(*n),
                CustomValue::Money(m) => {
                    let mut map = Map::new();
                    map.insert("amount".into(), Dynamic::from_decimal(m.amount));
                    map.insert("currency".into(), m.currency.to_string().into());
                    map.into()
                }
                CustomValue::Date(d) => d.to_string().into(),
                CustomValue::Bool(b) => (*b).into(),
                CustomValue::Ref(id) => id.to_string().into(),
                CustomValue::EnumSet(set) => set.iter().cloned().map(Dynamic::from).collect::<rhai::Array>().into(),
            };
            (k.as_str().into(), v)
        })
        .collect()
}

fn subject(s: &Subject<'_>) -> Result<Dynamic, String> {
    Ok(match s {
        Subject::Deal(d) => Dynamic::from(Arc::new((*d).clone())),
        Subject::Claim(c) => claim(&crmkit_core::hooks::wire::ClaimV1::from(*c))?,
        other => rhai::serde::to_dynamic(SubjectV1::from(other)).map_err(|e| e.to_string())?,
    })
}

/// The `ctx` a script function is called with: a value with a getter per part, so that
/// nothing is built for the parts a script does not read. Its parts are shared, so a copy
/// of it (the engine keeps one to replay a call a limit stopped) costs one count.
#[derive(Clone)]
pub struct Ctx(Arc<Parts>);

/// The parts of a [`Ctx`].
struct Parts {
    hook: &'static str,
    kind: Dynamic,
    entity: &'static str,
    actor: Dynamic,
    before: Dynamic,
    after: Dynamic,
    transition: Dynamic,
    task: Dynamic,
    depth: i64,
    /// The operation's instant, RFC 3339 text.
    now: rhai::ImmutableString,
    /// `loyalty.accrue`: the card, its program and the sale's amount (unit elsewhere).
    loyalty: Dynamic,
    /// `partner.strategy`: the partner's figures (unit elsewhere).
    strategy: Dynamic,
    /// `claim.before_transition`, `claim.after_transition`: the claim's step (unit elsewhere).
    claim_step: Dynamic,
}

/// `ctx.strategy`: the contract's form with revenues and balances as decimals.
fn strategy(s: &crmkit_core::hooks::wire::StrategyV1) -> Result<Dynamic, String> {
    let mut value = rhai::serde::to_dynamic(s).map_err(|e| e.to_string())?;
    if let Some(mut map) = value.write_lock::<rhai::Map>() {
        if let Some(mut classes) = map.get_mut("classes").and_then(|c| c.write_lock::<rhai::Array>()) {
            for (c, wire) in classes.iter_mut().zip(&s.classes) {
                if let Some(mut c) = c.write_lock::<rhai::Map>() {
                    c.insert("revenue".into(), Dynamic::from_decimal(wire.revenue));
                }
            }
        }
        if let Some(mut cards) = map.get_mut("loyalty").and_then(|c| c.write_lock::<rhai::Array>()) {
            for (c, wire) in cards.iter_mut().zip(&s.loyalty) {
                if let Some(mut c) = c.write_lock::<rhai::Map>() {
                    c.insert("balance".into(), Dynamic::from_decimal(wire.balance));
                    c.insert("turnover".into(), Dynamic::from_decimal(wire.turnover));
                }
            }
        }
    }
    Ok(value)
}

/// A claim as a script sees it: the contract's form with the claimed and settled amounts as
/// decimals (`ctx.after.settled > ctx.after.claimed / 2`).
pub(crate) fn claim(c: &crmkit_core::hooks::wire::ClaimV1) -> Result<Dynamic, String> {
    let mut value = rhai::serde::to_dynamic(c).map_err(|e| e.to_string())?;
    let optional = |d: Option<rust_decimal::Decimal>| d.map_or(Dynamic::UNIT, Dynamic::from_decimal);
    if let Some(mut map) = value.write_lock::<rhai::Map>() {
        map.insert("claimed".into(), optional(c.claimed));
        map.insert("settled".into(), optional(c.settled));
    }
    Ok(value)
}

/// `ctx.loyalty`: the contract's form with its amounts as decimals, so that a rule compares
/// and multiplies them as numbers (`ctx.loyalty.card.turnover >= 100000`).
fn loyalty(l: &crmkit_core::hooks::wire::LoyaltyV1) -> Result<Dynamic, String> {
    let mut value = rhai::serde::to_dynamic(l).map_err(|e| e.to_string())?;
    let decimal = |d: rust_decimal::Decimal| Dynamic::from_decimal(d);
    let optional = |d: Option<rust_decimal::Decimal>| d.map_or(Dynamic::UNIT, Dynamic::from_decimal);
    if let Some(mut map) = value.write_lock::<rhai::Map>() {
        map.insert("sale_amount".into(), decimal(l.sale_amount));
        if let Some(mut card) = map.get_mut("card").and_then(|c| c.write_lock::<rhai::Map>()) {
            card.insert("balance".into(), decimal(l.card.balance));
            card.insert("turnover".into(), decimal(l.card.turnover));
        }
        if let Some(mut program) = map.get_mut("program").and_then(|c| c.write_lock::<rhai::Map>()) {
            program.insert("point_value".into(), optional(l.program.point_value));
            program.insert("accrual_pct".into(), optional(l.program.accrual_pct));
            program.insert("discount_pct".into(), optional(l.program.discount_pct));
        }
    }
    Ok(value)
}

/// Registers `Ctx` and `Transition` with their getters.
fn register_context(engine: &mut Engine) {
    engine.register_type_with_name::<Ctx>("Ctx");
    engine.register_get("v", |_: &mut Ctx| -> Dynamic { Dynamic::from_int(crmkit_core::hooks::wire::VERSION.into()) });
    engine.register_get("hook", |c: &mut Ctx| -> Dynamic { c.0.hook.into() });
    engine.register_get("process_kind", |c: &mut Ctx| c.0.kind.clone());
    engine.register_get("kind", |c: &mut Ctx| c.0.kind.clone());
    engine.register_get("entity", |c: &mut Ctx| -> Dynamic { c.0.entity.into() });
    engine.register_get("actor", |c: &mut Ctx| c.0.actor.clone());
    engine.register_get("before", |c: &mut Ctx| c.0.before.clone());
    engine.register_get("after", |c: &mut Ctx| c.0.after.clone());
    engine.register_get("transition", |c: &mut Ctx| c.0.transition.clone());
    engine.register_get("task", |c: &mut Ctx| c.0.task.clone());
    engine.register_get("depth", |c: &mut Ctx| c.0.depth);
    engine.register_get("now", |c: &mut Ctx| c.0.now.clone());
    engine.register_get("loyalty", |c: &mut Ctx| c.0.loyalty.clone());
    engine.register_get("strategy", |c: &mut Ctx| c.0.strategy.clone());
    engine.register_get("claim_step", |c: &mut Ctx| c.0.claim_step.clone());
    engine.register_type_with_name::<Arc<Transition>>("Transition");
    let text = |v: &Option<String>| v.as_ref().map_or(Dynamic::UNIT, |s| s.clone().into());
    engine.register_get("how", |t: &mut Arc<Transition>| -> Dynamic { t.how.name().into() });
    engine.register_get("from_stage", move |t: &mut Arc<Transition>| text(&t.from_stage));
    engine.register_get("to_stage", move |t: &mut Arc<Transition>| text(&t.to_stage));
    engine.register_get("from_status", |t: &mut Arc<Transition>| -> Dynamic { t.from_status.name().into() });
    engine.register_get("to_status", |t: &mut Arc<Transition>| -> Dynamic { t.to_status.name().into() });
    engine.register_get("note", move |t: &mut Arc<Transition>| text(&t.note));
    engine.register_get("closes", |t: &mut Arc<Transition>| t.closes());
    engine.register_get("leaves_stage", |t: &mut Arc<Transition>| t.leaves_stage());
}

/// The `ctx` of a call with `input`.
pub fn context(input: &HookInput<'_>) -> Result<Dynamic, String> {
    let json = |v: Option<Result<Dynamic, String>>| v.transpose().map(|d| d.unwrap_or(Dynamic::UNIT));
    let ctx = Parts {
        hook: input.hook.name(),
        kind: input.process_kind.map_or(Dynamic::UNIT, |k| k.to_string().into()),
        entity: input.entity.name(),
        actor: json(input.actor.map(|a| rhai::serde::to_dynamic(ActorV1::from(a)).map_err(|e| e.to_string())))?,
        before: json(input.before.as_ref().map(subject))?,
        after: json(input.after.as_ref().map(subject))?,
        transition: input.transition.map_or(Dynamic::UNIT, |t| Dynamic::from(Arc::new(t.clone()))),
        task: json(input.task.map(|t| rhai::serde::to_dynamic(TaskV1::from(t)).map_err(|e| e.to_string())))?,
        depth: input.depth.into(),
        now: input.now.to_string().into(),
        loyalty: match input.loyalty {
            Some(l) => loyalty(&crmkit_core::hooks::wire::LoyaltyV1 {
                card: l.card.into(),
                program: l.program.into(),
                sale_amount: l.sale_amount,
            })?,
            None => Dynamic::UNIT,
        },
        strategy: match input.strategy {
            Some(s) => strategy(s)?,
            None => Dynamic::UNIT,
        },
        claim_step: match input.claim_step {
            Some(t) => {
                rhai::serde::to_dynamic(crmkit_core::hooks::wire::ClaimStepV1::from(t)).map_err(|e| e.to_string())?
            }
            None => Dynamic::UNIT,
        },
    };
    Ok(Dynamic::from(Ctx(Arc::new(ctx))))
}

/// The `ctx` of a call whose input is written in its contract form, with `before` and
/// `after` already read into the values a script sees (see [`crate::input`]).
pub(crate) fn wire_context(input: &InputV1, before: Dynamic, after: Dynamic) -> Result<Dynamic, String> {
    let map = |v: Result<Dynamic, _>| v.map_err(|e: Box<rhai::EvalAltResult>| e.to_string());
    let ctx = Parts {
        hook: input.hook.name(),
        kind: input.process_kind.clone().map_or(Dynamic::UNIT, Into::into),
        entity: input.entity.name(),
        actor: match &input.actor {
            Some(a) => map(rhai::serde::to_dynamic(a))?,
            None => Dynamic::UNIT,
        },
        before,
        after,
        transition: input.transition.as_ref().map_or(Dynamic::UNIT, |t| {
            Dynamic::from(Arc::new(Transition {
                how: t.how,
                from_stage: t.from_stage.clone(),
                to_stage: t.to_stage.clone(),
                from_status: t.from_status,
                to_status: t.to_status,
                note: t.note.clone(),
            }))
        }),
        task: match &input.task {
            Some(t) => map(rhai::serde::to_dynamic(t))?,
            None => Dynamic::UNIT,
        },
        depth: input.depth.into(),
        now: input.now.to_string().into(),
        loyalty: match &input.loyalty {
            Some(l) => loyalty(l)?,
            None => Dynamic::UNIT,
        },
        strategy: match &input.strategy {
            Some(s) => strategy(s)?,
            None => Dynamic::UNIT,
        },
        claim_step: match &input.claim_step {
            Some(t) => map(rhai::serde::to_dynamic(t))?,
            None => Dynamic::UNIT,
        },
    };
    Ok(Dynamic::from(Ctx(Arc::new(ctx))))
}

/// `value` with every decimal in it written as its text, as the contract writes decimals
/// (`#{points: 12.5}` with a decimal is `{"points": "12.5"}`).
fn decimals_as_text(value: Dynamic) -> Dynamic {
    if let Some(d) = value.clone().try_cast::<rust_decimal::Decimal>() {
        return d.to_string().into();
    }
    if value.is_map() {
        let map = value.cast::<rhai::Map>();
        return Dynamic::from_map(map.into_iter().map(|(k, v)| (k, decimals_as_text(v))).collect());
    }
    if value.is_array() {
        let items = value.cast::<rhai::Array>();
        return Dynamic::from_array(items.into_iter().map(decimals_as_text).collect());
    }
    value
}

/// A script's return value as the JSON answer core reads against the point. The common
/// answers (nothing, a boolean, a message) are turned into JSON directly; anything else goes
/// through serde.
pub fn reply(value: Dynamic) -> Result<Reply, String> {
    use serde_json::Value;
    if value.is_unit() {
        return Ok(Reply::Json(Value::Null));
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Reply::Json(Value::Bool(b)));
    }
    if value.is_string() {
        return Ok(Reply::Json(Value::String(value.into_string().unwrap_or_default())));
    }
    let got = value.type_name();
    rhai::serde::from_dynamic::<Value>(&decimals_as_text(value))
        .map(Reply::Json)
        .map_err(|e| format!("returned {got}, which is not plain data: {e}"))
}
