//! Relationship strategies: every client partner's segment, named by the `partner.strategy`
//! rule from the partner's figures (its classes among the clients, its deals, its last
//! contact, its loyalty cards), and the strategy config gives each segment (`[[strategies]]`):
//! how often the partner is to be contacted, by whom, the discount policy and the actions
//! recommended when contact is due.
//!
//! [`evaluate`] reads one snapshot and writes nothing: per partner, the segment now and after,
//! and whether contact is due; a rule that faults for a partner is reported for it and the
//! others go on. [`apply`] writes what an evaluation found, partner by partner, each
//! all-or-nothing: the new segment, and the recommended tasks of partners due for contact,
//! never a second open one with the same title for the same executor — so running it twice
//! writes nothing new.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::analytics::ClientClasses;
use crate::config::{ManagerLevel, Settings};
use crate::hooks::wire::{CardSummaryV1, ClassV1, StrategyV1};
use crate::hooks::{Answer, HookInput, HookPoint, Hooks, Subject, View};
use crate::id::{LoyaltyProgramId, PartnerId, UserId};
use crate::model::{DealStatus, EntityKind, Partner, PartnerRole, Role, Task, TaskStatus, User};
use crate::process::Engine;
use crate::store::{Reader, WriteTxn};
use crate::time::Timestamp;
use crate::Result;

/// What the run found for one partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub partner: PartnerId,
    pub name: String,
    /// The segment before the run, and the one the rule named (the same when it named none).
    pub from: Option<String>,
    pub to: Option<String>,
    /// The latest interaction's day (none: never contacted).
    pub last_contact: Option<NaiveDate>,
    /// When contact is due by the segment's strategy (none: the segment has no strategy).
    pub due: Option<NaiveDate>,
    /// Whether contact is due by the run's day (never contacted: due).
    pub overdue: bool,
}

impl Outcome {
    /// Whether the run moves the partner to another segment.
    pub fn changes(&self) -> bool {
        self.from != self.to
    }
}

/// A partner the run could not decide, and why; nothing is written for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerFault {
    pub partner: PartnerId,
    pub name: String,
    pub message: String,
}

/// What [`evaluate`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The day contact is measured to.
    pub day: Option<NaiveDate>,
    /// One per client partner decided, in id order.
    pub outcomes: Vec<Outcome>,
    pub faults: Vec<PartnerFault>,
}

impl Evaluation {
    /// Partners per segment after the run (`""`: none).
    pub fn segments(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for o in &self.outcomes {
            *out.entry(o.to.clone().unwrap_or_default()).or_default() += 1;
        }
        out
    }
}

/// What [`apply`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub segments_changed: u64,
    pub tasks_created: u64,
    /// Tasks not created again: an open one with the title is there.
    pub tasks_open_already: u64,
    /// Partners due for contact with no one to give the tasks to (no manager, or no head
    /// in the manager's department).
    pub without_executor: u64,
    /// Partners whose write was refused (a guard, a rule), with why; nothing was written
    /// for them.
    pub faults: Vec<PartnerFault>,
}

/// Each client's figures but its classes, gathered in one pass over each scan.
struct Gathered {
    open: HashMap<PartnerId, u32>,
    won: HashMap<PartnerId, u32>,
    last_contact: HashMap<PartnerId, Timestamp>,
    cards: HashMap<PartnerId, Vec<CardSummaryV1>>,
    /// Open claims, and claims registered in the year to the day, per partner.
    claims: HashMap<PartnerId, (u32, u32)>,
}

fn gather(view: &dyn View, day: NaiveDate) -> Result<Gathered> {
    use crate::analytics::split::fold;
    use crate::store::{DealHead, InteractionRow};
    let failed = |m: String| crate::Error::NotAllowed(m);
    let mut g = Gathered {
        open: HashMap::new(),
        won: HashMap::new(),
        last_contact: HashMap::new(),
        cards: HashMap::new(),
        claims: HashMap::new(),
    };
    let year_ago = day - chrono::Duration::days(365);
    view.each_claim(&mut |c| {
        let n = g.claims.entry(c.partner).or_default();
        n.0 += u32::from(c.status.is_open());
        n.1 += u32::from(c.registered_on() > year_ago && c.registered_on() <= day);
        true
    })?;
    // The deals and the interactions, split across the machine's cores.
    let parts = fold(
        view,
        || (HashMap::<PartnerId, u32>::new(), HashMap::<PartnerId, u32>::new()),
        |(open, won), d: &DealHead| {
            match d.status {
                DealStatus::InProgress | DealStatus::OnHold => *open.entry(d.partner).or_default() += 1,
                DealStatus::Won => *won.entry(d.partner).or_default() += 1,
                DealStatus::Lost => {}
            }
            Ok(())
        },
    )
    .map_err(failed)?;
    for (open, won) in parts {
        for (p, n) in open {
            *g.open.entry(p).or_default() += n;
        }
        for (p, n) in won {
            *g.won.entry(p).or_default() += n;
        }
    }
    let parts = fold(view, HashMap::<PartnerId, Timestamp>::new, |last, i: &InteractionRow| {
        let at = last.entry(i.partner).or_insert(i.at);
        *at = (*at).max(i.at);
        Ok(())
    })
    .map_err(failed)?;
    for part in parts {
        for (p, at) in part {
            let mine = g.last_contact.entry(p).or_insert(at);
            *mine = (*mine).max(at);
        }
    }
    let mut programs: HashMap<LoyaltyProgramId, String> = HashMap::new();
    view.each_loyalty_program(&mut |p| {
        programs.insert(p.id, p.name.clone());
        true
    })?;
    let mut held = Vec::new();
    view.each_loyalty_card(&mut |c| {
        held.push(c.clone());
        true
    })?;
    for c in held {
        let partner = match (c.partner, c.contact) {
            (Some(p), _) => Some(p),
            (None, Some(person)) => view.contact(person)?.map(|p| p.partner),
            (None, None) => None,
        };
        let Some(partner) = partner else { continue };
        g.cards.entry(partner).or_default().push(CardSummaryV1 {
            number: c.number.clone(),
            program: programs.get(&c.program).cloned().unwrap_or_default(),
            status: c.status,
            balance: c.balance,
            turnover: c.turnover,
        });
    }
    Ok(g)
}

/// Decides every client partner's segment on `day` by the `partner.strategy` handlers of
/// `hooks`, from `view` and the clients' `classes`; writes nothing. A handler's fault, or a
/// segment config has no strategy for, is that partner's fault: reported, and the run goes
/// on with the others.
pub fn evaluate(view: &dyn View, hooks: &Hooks, classes: &ClientClasses, day: NaiveDate) -> Result<Evaluation> {
    let settings = view.settings();
    let g = gather(view, day)?;
    let parts = crate::analytics::split::fold(view, Vec::new, |clients: &mut Vec<Partner>, p: &Partner| {
        if p.has_role(PartnerRole::Client) {
            clients.push(p.clone());
        }
        Ok(())
    })
    .map_err(crate::Error::NotAllowed)?;
    let mut clients: Vec<Partner> = parts.into_iter().flatten().collect();
    clients.sort_by_key(|p| p.id);
    let point = HookPoint::PartnerStrategy;
    let asks = hooks.any(point, None);
    let now = view.now();
    let mut ev = Evaluation { day: Some(day), ..Evaluation::default() };
    for p in clients {
        let last = g.last_contact.get(&p.id).map(|t| t.date());
        let figures = StrategyV1 {
            segment: p.segment.clone(),
            classes: classes
                .by_partner
                .get(&p.id)
                .map(|cs| {
                    cs.iter()
                        .map(|c| ClassV1 {
                            currency: c.currency.to_string(),
                            revenue: c.revenue,
                            abc_xyz: c.abc_xyz.clone(),
                            bcg: c.bcg.to_string(),
                            rfm: c.rfm.clone(),
                            rfm_segment: c.rfm_segment.map(str::to_string),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            open_deals: g.open.get(&p.id).copied().unwrap_or_default(),
            won_deals: g.won.get(&p.id).copied().unwrap_or_default(),
            last_contact: last,
            days_since_contact: last.map(|d| (day - d).num_days()),
            loyalty: g.cards.get(&p.id).cloned().unwrap_or_default(),
            open_claims: g.claims.get(&p.id).map_or(0, |c| c.0),
            recent_claims: g.claims.get(&p.id).map_or(0, |c| c.1),
        };
        let named = if asks {
            let input = HookInput {
                hook: point,
                process_kind: None,
                entity: EntityKind::Partner,
                actor: None,
                before: None,
                after: Some(Subject::Partner(&p)),
                transition: None,
                task: None,
                depth: 0,
                now,
                view,
                loyalty: None,
                strategy: Some(&figures),
                claim_step: None,
            };
            match decide(hooks, &input, settings) {
                Ok(named) => named,
                Err(message) => {
                    ev.faults.push(PartnerFault { partner: p.id, name: p.name.clone(), message });
                    continue;
                }
            }
        } else {
            None
        };
        let to = named.or_else(|| p.segment.clone());
        let due = to
            .as_deref()
            .and_then(|s| settings.strategy(s))
            .map(|s| last.map_or(day, |l| l + chrono::Duration::days(i64::from(s.contact_every_days))));
        ev.outcomes.push(Outcome {
            partner: p.id,
            name: p.name.clone(),
            from: p.segment.clone(),
            to,
            last_contact: last,
            due,
            overdue: due.is_some_and(|d| d <= day),
        });
    }
    Ok(ev)
}

/// The segment the first handler names, checked to have a strategy; `None`: every handler
/// answered null. A fault is the error's text.
fn decide(hooks: &Hooks, input: &HookInput<'_>, settings: &Settings) -> std::result::Result<Option<String>, String> {
    for asked in hooks.ask(input) {
        match asked {
            Ok((name, Answer::Segment(Some(segment)))) => {
                if settings.strategy(&segment).is_none() {
                    let known: Vec<&str> = settings.strategies.iter().map(|s| s.segment.as_str()).collect();
                    return Err(format!(
                        "partner.strategy: handler {name} named segment \"{segment}\", which has no [[strategies]] entry ({})",
                        if known.is_empty() { "none configured".to_string() } else { known.join(", ") }
                    ));
                }
                return Ok(Some(segment));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(None)
}

/// What tells a strategy's open task apart: its title and the partner it is for.
type TaskKey = (String, Option<PartnerId>);

/// How a strategy's task names its partner, at the end of its description.
const PARTNER_MARK: &str = "(partner ";

/// The partner a strategy's task description names, if it names one.
fn partner_of(description: &str) -> Option<PartnerId> {
    let at = description.rfind(PARTNER_MARK)?;
    description[at + PARTNER_MARK.len()..].strip_suffix(')')?.parse().ok()
}

/// The title of a recommended task for a partner.
pub fn task_title(action: &str, partner: &str) -> String {
    let mut title = format!("{action}: {partner}");
    if title.chars().count() > 300 {
        title = title.chars().take(299).collect::<String>() + "…";
    }
    title
}

/// Writes what `ev` found through `engine`, each partner all-or-nothing: the segments it
/// changes and, for the partners due for contact, the strategy's recommended tasks (to the
/// partner's manager, or the head of their department), due in three days — none that the
/// executor has open already for the partner (its title, and the partner its description
/// names).
pub fn apply(tx: &mut WriteTxn<'_>, engine: &Engine, ev: &Evaluation) -> Result<Applied> {
    let settings = tx.settings_arc();
    let mut done = Applied::default();
    let mut heads: HashMap<String, Option<UserId>> = HashMap::new();
    let mut open_tasks: HashMap<UserId, HashSet<TaskKey>> = HashMap::new();
    let due = tx.now().plus_millis(3 * 86_400_000);
    for o in &ev.outcomes {
        let strategy = o.to.as_deref().and_then(|s| settings.strategy(s));
        #[allow(clippy::type_complexity)]
        let written = tx.attempt(|tx| -> Result<(u64, Vec<(UserId, TaskKey)>, u64, bool)> {
            let mut changed = 0;
            if o.changes() {
                let mut p: Partner = tx.load(o.partner)?;
                p.segment = o.to.clone();
                engine.update(tx, p)?;
                changed = 1;
            }
            let (mut created, mut open) = (Vec::new(), 0);
            let Some(s) = strategy.filter(|s| o.overdue && !s.actions.is_empty()) else {
                return Ok((changed, Vec::new(), 0, false));
            };
            let p: Partner = tx.load(o.partner)?;
            let executor = match (p.manager, s.manager_level) {
                (None, _) => None,
                (Some(m), ManagerLevel::Manager) => Some(m),
                (Some(m), ManagerLevel::Head) => {
                    let user: User = tx.load(m)?;
                    match user.department {
                        None => None,
                        Some(dept) => match heads.get(&dept) {
                            Some(h) => *h,
                            None => {
                                let h = head_of(tx, &dept)?;
                                heads.insert(dept, h);
                                h
                            }
                        },
                    }
                }
            };
            let Some(executor) = executor else { return Ok((changed, Vec::new(), 0, true)) };
            if let std::collections::hash_map::Entry::Vacant(slot) = open_tasks.entry(executor) {
                // Each executor's open tasks, read once: a title, and the partner a
                // strategy's task names in its description.
                slot.insert(
                    tx.tasks_of(executor, TaskStatus::Open, usize::MAX)?
                        .into_iter()
                        .map(|t| (t.title, partner_of(&t.description)))
                        .collect(),
                );
            }
            let contact = match o.last_contact {
                Some(d) => format!("last contact {d}"),
                None => "never contacted".to_string(),
            };
            for action in &s.actions {
                let title = task_title(action, &p.name);
                let key = (title.clone(), Some(p.id));
                if open_tasks[&executor].contains(&key) {
                    open += 1;
                    continue;
                }
                let mut t = Task::new(title, executor);
                t.description = format!(
                    "Strategy \"{}\" ({}): contact every {} days, {contact}.{} {PARTNER_MARK}{})",
                    s.name,
                    s.segment,
                    s.contact_every_days,
                    if s.discount_policy.is_empty() {
                        String::new()
                    } else {
                        format!(" Discount policy: {}.", s.discount_policy)
                    },
                    p.id
                );
                t.due = Some(due);
                engine.create(tx, t)?;
                created.push((executor, key));
            }
            Ok((changed, created, open, false))
        });
        let written = written.map(|(changed, created, open, no_one)| {
            let n = created.len() as u64;
            for (executor, key) in created {
                open_tasks.entry(executor).or_default().insert(key);
            }
            (changed, n, open, no_one)
        });
        match written {
            Ok((changed, created, open, no_one)) => {
                done.segments_changed += changed;
                done.tasks_created += created;
                done.tasks_open_already += open;
                done.without_executor += u64::from(no_one);
            }
            Err(e) => {
                done.faults.push(PartnerFault { partner: o.partner, name: o.name.clone(), message: e.to_string() })
            }
        }
    }
    Ok(done)
}

/// The first active head of department `dept`.
fn head_of(tx: &WriteTxn<'_>, dept: &str) -> Result<Option<UserId>> {
    let mut found = None;
    tx.for_each::<User>(|u| {
        if u.active && u.roles.contains(&Role::Head) && u.department.as_deref() == Some(dept) {
            found = Some(u.id);
            return false;
        }
        true
    })?;
    Ok(found)
}

/// What a run reports: the evaluation's counts and the writes, for the command line, the
/// API and the server's schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub at: Timestamp,
    pub day: Option<NaiveDate>,
    pub applied: bool,
    pub partners: u64,
    pub changed: u64,
    pub overdue: u64,
    pub segments: BTreeMap<String, u64>,
    pub faults: Vec<PartnerFault>,
    pub written: Option<Applied>,
}

impl Summary {
    /// The summary of `ev` (and of what `applied` wrote, if it was applied), at `at`.
    pub fn of(ev: &Evaluation, applied: Option<Applied>, at: Timestamp) -> Summary {
        Summary {
            at,
            day: ev.day,
            applied: applied.is_some(),
            partners: ev.outcomes.len() as u64 + ev.faults.len() as u64,
            changed: ev.outcomes.iter().filter(|o| o.changes()).count() as u64,
            overdue: ev.outcomes.iter().filter(|o| o.overdue).count() as u64,
            segments: ev.segments(),
            faults: ev.faults.clone(),
            written: applied,
        }
    }
}
