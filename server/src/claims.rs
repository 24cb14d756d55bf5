//! `crmkit claims …`: an installation's claims — listed, shown with their steps, registered
//! and taken through their lifecycle (review, postpone, decide, close, reopen), each step
//! through the process engine and its hooks as the API takes it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::Subcommand;
use crmkit_core::id::{ClaimId, TypedId};
use crmkit_core::model::{Claim, ClaimStatus, Decision, Document, Partner, User};
use crmkit_core::store::{Index, Reader};
use crmkit_core::values::{Currency, Money};
use crmkit_core::Installation;
use rust_decimal::Decimal;

use crate::cli::acting_user;
use crate::console;

#[derive(Subcommand)]
pub enum What {
    /// List the claims, newest first: of one partner (--partner, by name or id), in one
    /// status (--status), or only those past the day they were due by (--overdue).
    List {
        dir: PathBuf,
        #[arg(long)]
        partner: Option<String>,
        #[arg(long, value_parser = status)]
        status: Option<ClaimStatus>,
        #[arg(long)]
        overdue: bool,
    },
    /// Print a claim with its steps.
    Show { dir: PathBuf, id: ClaimId },
    /// Register a claim of a partner (by name or id): its type and cause as config's
    /// [[claim_types]] names them, the subject, and what it is about.
    Register {
        dir: PathBuf,
        #[arg(long)]
        partner: String,
        /// The claim type's id.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        #[arg(long)]
        cause: String,
        #[arg(long)]
        subject: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The amount claimed, in --currency (the installation's default currency).
        #[arg(long)]
        claimed: Option<Decimal>,
        #[arg(long)]
        currency: Option<String>,
        /// The document it is about: its number or id.
        #[arg(long)]
        document: Option<String>,
        /// Who works on it (a login; default: the acting user).
        #[arg(long)]
        responsible: Option<String>,
        /// The day it was received (default: today).
        #[arg(long, value_parser = date)]
        registered: Option<NaiveDate>,
        /// The day it is due by (default: its type's due_days later).
        #[arg(long, value_parser = date)]
        due: Option<NaiveDate>,
        /// The user recorded as the actor (a login).
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Take a registered claim up for review.
    Review {
        dir: PathBuf,
        id: ClaimId,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Put off the answer to a claim awaiting its decision, with the reason.
    Postpone {
        dir: PathBuf,
        id: ClaimId,
        #[arg(long, value_parser = date)]
        until: NaiveDate,
        #[arg(long)]
        reason: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Decide a claim: satisfied, partly_satisfied or rejected, with the amount settled (in
    /// the claim's currency) and the reply to the client.
    Decide {
        dir: PathBuf,
        id: ClaimId,
        #[arg(long, value_parser = decision)]
        decision: Decision,
        #[arg(long)]
        settled: Option<Decimal>,
        #[arg(long)]
        reply: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Close a decided claim.
    Close {
        dir: PathBuf,
        id: ClaimId,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Reopen a decided or closed claim for review, with the reason.
    Reopen {
        dir: PathBuf,
        id: ClaimId,
        #[arg(long)]
        reason: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
}

fn date(s: &str) -> Result<NaiveDate, String> {
    crmkit_core::values::date::parse(s)
}

fn status(s: &str) -> Result<ClaimStatus, String> {
    one_of(s, &ClaimStatus::ALL, ClaimStatus::name, "a claim status")
}

fn decision(s: &str) -> Result<Decision, String> {
    one_of(s, &Decision::ALL, Decision::name, "a decision")
}

/// The value of `all` named `s`, or what the names are.
fn one_of<T: Copy>(s: &str, all: &[T], name: fn(T) -> &'static str, what: &str) -> Result<T, String> {
    all.iter().copied().find(|x| name(*x) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|x| name(*x)).collect();
        format!("\"{s}\" is not {what} ({})", names.join(", "))
    })
}

impl What {
    /// The installation the command works on.
    pub fn dir(&self) -> &Path {
        match self {
            What::List { dir, .. }
            | What::Show { dir, .. }
            | What::Register { dir, .. }
            | What::Review { dir, .. }
            | What::Postpone { dir, .. }
            | What::Decide { dir, .. }
            | What::Close { dir, .. }
            | What::Reopen { dir, .. } => dir,
        }
    }
}

fn money(m: &Option<Money>) -> String {
    m.map(|m| format!("{} {}", m.amount, m.currency)).unwrap_or_else(|| "—".into())
}

/// One line of a claim, for the list.
fn line(r: &impl Reader, c: &Claim, today: NaiveDate) -> Result<String> {
    let partner = r.get::<Partner>(c.partner)?.map(|p| p.name).unwrap_or_default();
    let overdue = if c.is_overdue(today) { " OVERDUE" } else { "" };
    Ok(format!(
        "{}  {}  due {}  {:<12} {}/{}  {}  claimed {}  {}{overdue}",
        c.id,
        c.registered_on(),
        c.due_by(),
        c.status.name(),
        c.kind,
        c.cause,
        partner,
        money(&c.claimed),
        c.subject
    ))
}

/// The document a command names: by id or number (of `partner`'s documents).
fn find_document(r: &impl Reader, partner: &Partner, name: &str) -> Result<Document> {
    if let Ok(id) = name.parse::<crmkit_core::id::DocumentId>() {
        if let Some(d) = r.get::<Document>(id)? {
            return Ok(d);
        }
    }
    let docs: Vec<Document> = r.find(Index::DocumentByPartner, &partner.id.raw().to_bytes(), None, usize::MAX)?;
    let mut found: Vec<Document> = docs.into_iter().filter(|d| d.number == name.trim()).collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("partner \"{}\" has no document with the number or id \"{name}\"", partner.name),
        _ => bail!("partner \"{}\" has several documents numbered \"{name}\": give the id", partner.name),
    }
}

/// Runs a `crmkit claims` command.
pub fn run(what: What) -> Result<()> {
    let inst = console::installation(what.dir())?;
    match what {
        What::List { partner, status, overdue, .. } => {
            let r = inst.store().read()?;
            let mut claims: Vec<Claim> = match (&partner, status) {
                (Some(name), _) => {
                    let p = crmkit_core::dossier::find_partner(&r, name)?;
                    r.find(Index::ClaimByPartner, &p.id.raw().to_bytes(), None, usize::MAX)?
                }
                (None, Some(s)) => {
                    r.find(Index::ClaimByStatus, &crmkit_core::model::claim_status_prefix(s), None, usize::MAX)?
                }
                (None, None) => r.list(None, usize::MAX)?,
            };
            let today = r.now().date();
            claims.retain(|c| status.is_none_or(|s| c.status == s) && (!overdue || c.is_overdue(today)));
            claims.sort_by_key(|c| std::cmp::Reverse(c.id));
            for c in &claims {
                say!("{}", line(&r, c, today)?);
            }
            say!("{} claim(s)", claims.len());
        }
        What::Show { id, .. } => {
            let r = inst.store().read()?;
            let c: Claim = r.get(id)?.with_context(|| format!("no claim has the id {id}"))?;
            let today = r.now().date();
            say!("{}", line(&r, &c, today)?);
            let responsible = r.get::<User>(c.responsible)?.map(|u| u.login).unwrap_or_default();
            say!("responsible {responsible}; registered {}, due {}", c.registered_on(), c.due_by());
            if !c.description.is_empty() {
                say!("{}", c.description);
            }
            if let Some(d) = c.decision {
                say!("decision: {} settling {}: {}", d.name(), money(&c.settled), c.reply);
            }
            for s in &c.steps {
                let actor = match s.actor {
                    Some(a) => r.get::<User>(a)?.map(|u| u.login).unwrap_or_default(),
                    None => "system".into(),
                };
                say!(
                    "  {} {}  {:<8} {} -> {}  {}{}",
                    s.step,
                    s.at,
                    s.action.name(),
                    s.from.map_or("—", |f| f.name()),
                    s.to.name(),
                    actor,
                    s.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
                );
            }
        }
        What::Register {
            partner,
            kind,
            cause,
            subject,
            description,
            claimed,
            currency,
            document,
            responsible,
            registered,
            due,
            as_user,
            ..
        } => {
            let r = inst.store().read()?;
            let p = crmkit_core::dossier::find_partner(&r, &partner)?;
            let actor = acting_user(&r, as_user.as_deref())?;
            let responsible = match (responsible, actor) {
                (Some(login), _) => {
                    r.user_by_login(&login)?.with_context(|| format!("no user has the login {login}"))?.id
                }
                (None, Some(a)) => a,
                (None, None) => bail!("whose is the claim? --responsible LOGIN (or --as LOGIN)"),
            };
            let document = document.map(|d| find_document(&r, &p, &d)).transpose()?;
            let currency = match currency {
                Some(c) => Currency::parse(&c).map_err(|e| anyhow::anyhow!("--currency: {e}"))?,
                None => inst.settings().default_currency,
            };
            drop(r);
            let engine = crate::script::engine(&inst)?;
            let c = inst.store().transact(actor, |tx| {
                let mut c =
                    Claim::new(p.id, kind.clone(), cause.clone(), subject.clone(), responsible, registered, due);
                c.description = description.clone();
                c.claimed = claimed.map(|a| Money::new(a, currency));
                if let Some(d) = &document {
                    c.document = Some(d.id);
                    c.deal = d.deal;
                    c.counterparty = d.counterparty.filter(|x| p.counterparties.contains(x));
                }
                engine.create(tx, c)
            })?;
            say!("registered claim {} of {}, due {}", c.id, p.name, c.due_by());
        }
        What::Review { id, comment, as_user, .. } => {
            let c =
                step(&inst, as_user.as_deref(), id, |engine, tx, c| engine.review_claim(tx, id, c.version, &comment))?;
            say!("claim {} is {}", c.id, c.status.name());
        }
        What::Postpone { id, until, reason, as_user, .. } => {
            let c = step(&inst, as_user.as_deref(), id, |engine, tx, c| {
                engine.postpone_claim(tx, id, c.version, until, &reason)
            })?;
            say!("claim {} is postponed until {until}", c.id);
        }
        What::Decide { id, decision, settled, reply, as_user, .. } => {
            let default_currency = inst.settings().default_currency;
            let c = step(&inst, as_user.as_deref(), id, |engine, tx, c| {
                let currency = c.claimed.map_or(default_currency, |m| m.currency);
                let settled = settled.map(|a| Money::new(a, currency));
                engine.decide_claim(tx, id, c.version, decision, settled, &reply)
            })?;
            say!("claim {} is decided: {}, settling {}", c.id, decision.name(), money(&c.settled));
        }
        What::Close { id, comment, as_user, .. } => {
            let c =
                step(&inst, as_user.as_deref(), id, |engine, tx, c| engine.close_claim(tx, id, c.version, &comment))?;
            say!("claim {} is closed", c.id);
        }
        What::Reopen { id, reason, as_user, .. } => {
            let c =
                step(&inst, as_user.as_deref(), id, |engine, tx, c| engine.reopen_claim(tx, id, c.version, &reason))?;
            say!("claim {} is reopened: {}", c.id, c.status.name());
        }
    }
    Ok(())
}

/// Runs `op` on claim `id`, as it is now, in a transaction of `as_user` through the engine.
fn step(
    inst: &Installation,
    as_user: Option<&str>,
    id: ClaimId,
    op: impl FnOnce(
        &crmkit_core::process::Engine,
        &mut crmkit_core::store::WriteTxn<'_>,
        &Claim,
    ) -> crmkit_core::Result<Claim>,
) -> Result<Claim> {
    let engine = crate::script::engine(inst)?;
    let r = inst.store().read()?;
    let actor = acting_user(&r, as_user)?;
    let claim: Claim = r.get(id)?.with_context(|| format!("no claim has the id {id}"))?;
    drop(r);
    inst.store().transact(actor, |tx| op(&engine, tx, &claim)).with_context(|| format!("claim {id}"))
}
