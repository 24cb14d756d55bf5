//! `crmkit loyalty …`: an installation's loyalty programs and cards, a card's ledger, and the
//! operations on cards — issue, redeem, correct, block, reissue — with the accrual of sales written
//! before their cards and the expiry run, each through the process engine as the API does.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::Subcommand;
use crmkit_core::id::{LoyaltyCardId, TypedId};
use crmkit_core::model::{Document, LoyaltyCard, LoyaltyEntry, LoyaltyProgram};
use crmkit_core::process::loyalty;
use crmkit_core::store::{Index, Reader};
use crmkit_core::Installation;
use rust_decimal::Decimal;

use crate::cli::acting_user;
use crate::console;

#[derive(Subcommand)]
pub enum What {
    /// List the loyalty programs.
    Programs { dir: PathBuf },
    /// List the cards (of one partner, by name or id, with --partner), with their balances.
    Cards {
        dir: PathBuf,
        #[arg(long)]
        partner: Option<String>,
    },
    /// Issue card NUMBER of a program (its name or id) to a partner or a contact person
    /// (their id or name; a contact also by e-mail): active, with an empty ledger.
    Issue {
        dir: PathBuf,
        number: String,
        #[arg(long)]
        program: String,
        #[arg(long, conflicts_with = "contact", required_unless_present = "contact")]
        partner: Option<String>,
        #[arg(long)]
        contact: Option<String>,
        #[arg(long)]
        barcode: Option<String>,
        #[arg(long)]
        magnetic_code: Option<String>,
        /// The day it is issued (default: today).
        #[arg(long, value_parser = date)]
        issued: Option<NaiveDate>,
        /// Its last day of use (default: its program's).
        #[arg(long, value_parser = date)]
        expires: Option<NaiveDate>,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Print a card's ledger, oldest entry first (CARD: its number, barcode or id).
    Ledger { dir: PathBuf, card: String },
    /// Spend POINTS of an active bonus card (at most its balance).
    Redeem {
        dir: PathBuf,
        card: String,
        points: Decimal,
        #[arg(long, default_value = "")]
        comment: String,
        /// The user recorded as the actor (a login).
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Add POINTS (negative: take; the balance not below 0) and, with --turnover, turnover,
    /// with the reason.
    Correct {
        dir: PathBuf,
        card: String,
        #[arg(allow_hyphen_values = true)]
        points: Decimal,
        #[arg(long, allow_hyphen_values = true)]
        turnover: Option<Decimal>,
        #[arg(long)]
        comment: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Block an active card, with the reason.
    Block {
        dir: PathBuf,
        card: String,
        #[arg(long)]
        reason: String,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Issue card NUMBER in place of CARD: same program and holder, the balance and turnover
    /// carried over, the old card blocked.
    Reissue {
        dir: PathBuf,
        card: String,
        number: String,
        #[arg(long)]
        barcode: Option<String>,
        #[arg(long)]
        magnetic_code: Option<String>,
        #[arg(long = "as", value_name = "LOGIN")]
        as_user: Option<String>,
    },
    /// Let every completed sale earn on its cards where it has not (sales written before
    /// their cards were issued, or while the rule was unbound), in one transaction.
    Accrue { dir: PathBuf },
    /// Expire cards past their last day and points past their program's days, as of --date
    /// (today by default); run again the same day, it writes nothing.
    Expire {
        dir: PathBuf,
        #[arg(long, value_parser = date)]
        date: Option<NaiveDate>,
    },
}

fn date(s: &str) -> Result<NaiveDate, String> {
    crmkit_core::values::date::parse(s)
}

impl What {
    /// The installation the command works on.
    pub fn dir(&self) -> &Path {
        match self {
            What::Programs { dir }
            | What::Issue { dir, .. }
            | What::Cards { dir, .. }
            | What::Ledger { dir, .. }
            | What::Redeem { dir, .. }
            | What::Correct { dir, .. }
            | What::Block { dir, .. }
            | What::Reissue { dir, .. }
            | What::Accrue { dir }
            | What::Expire { dir, .. } => dir,
        }
    }
}

/// The program a command names: by id or exact name.
fn find_program(r: &impl Reader, name: &str) -> Result<LoyaltyProgram> {
    if let Ok(id) = name.parse::<crmkit_core::id::LoyaltyProgramId>() {
        if let Some(p) = r.get::<LoyaltyProgram>(id)? {
            return Ok(p);
        }
    }
    let mut found = Vec::new();
    r.for_each::<LoyaltyProgram>(|p| {
        if p.name == name.trim() {
            found.push(p);
        }
        true
    })?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no loyalty program has the id or the name \"{name}\""),
        _ => bail!("several loyalty programs are named \"{name}\": give the id"),
    }
}

/// The card a command names: by number, barcode, magnetic code or id.
fn find_card(r: &impl Reader, name: &str) -> Result<LoyaltyCard> {
    let text = crmkit_core::model::text_prefix(&[name]);
    for index in [Index::LoyaltyCardByNumber, Index::LoyaltyCardByBarcode, Index::LoyaltyCardByMagneticCode] {
        if let Some(card) = r.find::<LoyaltyCard>(index, &text, None, 1)?.pop() {
            return Ok(card);
        }
    }
    if let Ok(id) = name.parse::<LoyaltyCardId>() {
        if let Some(card) = r.get::<LoyaltyCard>(id)? {
            return Ok(card);
        }
    }
    bail!("no loyalty card has the number, barcode, magnetic code or id \"{name}\"")
}

fn say_entry(e: &LoyaltyEntry) {
    say!(
        "{}  {:<10} {:>12} {:>14} {:>12}  {}{}",
        e.date,
        e.kind.name(),
        e.points.to_string(),
        e.turnover.to_string(),
        e.balance.to_string(),
        e.comment,
        e.rule.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default()
    );
}

/// Runs a `crmkit loyalty` command.
pub fn run(what: What) -> Result<()> {
    let inst = console::installation(what.dir())?;
    match what {
        What::Programs { .. } => {
            let r = inst.store().read()?;
            let mut n = 0;
            r.for_each::<LoyaltyProgram>(|p| {
                n += 1;
                let terms = match p.kind {
                    crmkit_core::model::ProgramKind::Discount => {
                        format!("discount {}%", p.discount_pct.unwrap_or_default())
                    }
                    crmkit_core::model::ProgramKind::Bonus => format!(
                        "bonus, a point worth {} {}{}{}",
                        p.point_value.unwrap_or_default(),
                        p.currency,
                        p.accrual_pct.map(|a| format!(", {a}% of a sale")).unwrap_or_default(),
                        p.points_expire_days.map(|d| format!(", points for {d} days")).unwrap_or_default()
                    ),
                };
                let to = p.valid_to.map(|d| d.to_string()).unwrap_or_else(|| "…".into());
                say!("{}  {}: {terms}; earns on {}s; {} to {to}", p.id, p.name, p.accrue_on.name(), p.valid_from);
                true
            })?;
            say!("{n} program(s)");
        }
        What::Cards { partner, .. } => {
            let r = inst.store().read()?;
            let cards: Vec<LoyaltyCard> = match partner {
                Some(name) => {
                    let p = crmkit_core::dossier::find_partner(&r, &name)?;
                    r.find(Index::LoyaltyCardByPartner, &p.id.raw().to_bytes(), None, usize::MAX)?
                }
                None => r.list(None, usize::MAX)?,
            };
            for c in &cards {
                say!(
                    "{:<16} {:<8} balance {:>12}  turnover {:>14}  {} entries{}",
                    c.number,
                    c.status.name(),
                    c.balance.to_string(),
                    c.turnover.to_string(),
                    c.entries,
                    c.last_activity.map(|d| format!(", last {d}")).unwrap_or_default()
                );
            }
            say!("{} card(s)", cards.len());
        }
        What::Issue { number, program, partner, contact, barcode, magnetic_code, issued, expires, as_user, .. } => {
            let r = inst.store().read()?;
            let program = find_program(&r, &program)?;
            let (partner, contact) = match (partner, contact) {
                (Some(p), _) => (Some(crmkit_core::dossier::find_partner(&r, &p)?.id), None),
                (None, Some(c)) => (None, Some(crate::graph::find_contact(&r, &c)?.id)),
                (None, None) => bail!("a card needs its holder: --partner or --contact"),
            };
            let actor = acting_user(&r, as_user.as_deref())?;
            drop(r);
            let engine = crate::script::engine(&inst)?;
            let card = inst.store().transact(actor, |tx| {
                let today = tx.now().date();
                let mut card =
                    LoyaltyCard::new(number.clone(), program.id, partner.unwrap_or_default(), issued.unwrap_or(today));
                card.partner = partner;
                card.contact = contact;
                card.barcode = barcode.clone();
                card.magnetic_code = magnetic_code.clone();
                card.expires = expires;
                engine.create(tx, card)
            })?;
            say!("issued card {} ({}) of {}, {}", card.number, card.id, program.name, card.issued);
        }
        What::Ledger { card, .. } => {
            let r = inst.store().read()?;
            let card = find_card(&r, &card)?;
            say!("card {} ({}): balance {}, turnover {}", card.number, card.status.name(), card.balance, card.turnover);
            for e in loyalty::ledger(&r, card.id)? {
                say_entry(&e);
            }
        }
        What::Redeem { card, points, comment, as_user, .. } => {
            let e = write(&inst, as_user.as_deref(), &card, |engine, tx, card| {
                engine.redeem(tx, card.id, points, None, &comment)
            })?;
            say!("redeemed {points} points; the card has {} left", e.balance);
        }
        What::Correct { card, points, turnover, comment, as_user, .. } => {
            let e = write(&inst, as_user.as_deref(), &card, |engine, tx, card| {
                engine.correct(tx, card.id, points, turnover.unwrap_or_default(), &comment)
            })?;
            say!("corrected by {points} points; the card has {}", e.balance);
        }
        What::Block { card, reason, as_user, .. } => {
            let c = write(&inst, as_user.as_deref(), &card, |engine, tx, card| {
                engine.block(tx, card.id, card.version, &reason)
            })?;
            say!("blocked card {} ({})", c.number, c.status_note);
        }
        What::Reissue { card, number, barcode, magnetic_code, as_user, .. } => {
            let c = write(&inst, as_user.as_deref(), &card, |engine, tx, card| {
                let today = tx.now().date();
                let mut new = LoyaltyCard::new(number.clone(), card.program, card.partner.unwrap_or_default(), today);
                new.barcode = barcode.clone();
                new.magnetic_code = magnetic_code.clone();
                new.expires = card.expires;
                engine.reissue(tx, card.id, card.version, new)
            })?;
            say!("issued card {} in place of {card}: balance {}, turnover {}", c.number, c.balance, c.turnover);
        }
        What::Accrue { .. } => {
            let engine = crate::script::engine(&inst)?;
            let (sales, entries) = inst.store().transact(None, |tx| {
                let mut ids = Vec::new();
                tx.for_each::<Document>(|d| {
                    if loyalty::is_sale(d.kind, d.state) {
                        ids.push(d.id);
                    }
                    true
                })?;
                let mut written = 0;
                for id in &ids {
                    written += engine.accrue(tx, *id)?.len();
                }
                Ok((ids.len(), written))
            })?;
            say!("{sales} completed sale(s) looked at: {entries} accrual(s) written");
        }
        What::Expire { date, .. } => {
            let engine = crate::script::engine(&inst)?;
            let done = inst.store().transact(None, |tx| {
                let today = date.unwrap_or_else(|| tx.now().date());
                engine.expire(tx, today)
            })?;
            say!(
                "{} card(s) looked at: {} expired, {} expiry entr(ies) taking {} points",
                done.cards,
                done.cards_expired,
                done.entries,
                done.points
            );
        }
    }
    Ok(())
}

/// Runs `op` on the card named `card` in a transaction of `as_user` through the engine.
fn write<R>(
    inst: &Installation,
    as_user: Option<&str>,
    card: &str,
    op: impl FnOnce(
        &crmkit_core::process::Engine,
        &mut crmkit_core::store::WriteTxn<'_>,
        &LoyaltyCard,
    ) -> crmkit_core::Result<R>,
) -> Result<R> {
    let engine = crate::script::engine(inst)?;
    let actor = acting_user(&inst.store().read()?, as_user)?;
    let card = find_card(&inst.store().read()?, card)?;
    inst.store().transact(actor, |tx| op(&engine, tx, &card)).with_context(|| format!("card {}", card.number))
}
