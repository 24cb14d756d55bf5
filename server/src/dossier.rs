//! `crmkit dossier`: everything about one partner, as a terminal page or JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use crmkit_core::dossier::{dossier, find_partner, Amounts, Dossier, DossierOptions};
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

use crate::Format;

pub fn run(dir: &Path, partner: &str, format: Format, timeline: usize) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let p = find_partner(&r, partner)?;
    let options =
        DossierOptions { timeline_limit: timeline, classes: Some(inst.client_classes()?), ..Default::default() };
    let d = dossier(&r, p.id, options)?;
    match format {
        Format::Json => say!("{}", serde_json::to_string_pretty(&d)?),
        Format::Table => say!("{}", render(&d)),
    }
    Ok(())
}

/// Sums per currency, `1200.00 RUB + 30.00 EUR` (`0` when empty).
pub(crate) fn amounts(a: &Amounts) -> String {
    if a.is_empty() {
        return "0".into();
    }
    a.iter().map(|(c, v)| format!("{} {c}", v.round_dp(2))).collect::<Vec<_>>().join(" + ")
}

/// The dossier as a readable page.
pub fn render(d: &Dossier) -> String {
    let mut o = String::new();
    let p = &d.partner;
    let roles: Vec<&str> = p.roles.iter().map(|r| r.name()).collect();
    let _ = writeln!(o, "{}  ({})  {}", p.name, roles.join(", "), p.id);
    if let Some(s) = &p.segment {
        let _ = writeln!(o, "segment: {s}");
    }
    let _ = writeln!(
        o,
        "last contact: {}   next task: {}",
        d.last_contact.map_or("never".to_string(), |t| t.to_string()),
        d.next_task.as_ref().map_or("none".to_string(), |t| format!(
            "{} (due {})",
            t.title,
            t.due.map_or("-".to_string(), |d| d.to_string())
        ))
    );
    let _ = writeln!(o, "\ncounterparties ({})", d.counterparties.len());
    for c in &d.counterparties {
        let _ = writeln!(o, "  {}  INN {}", c.name, c.tax_id.as_deref().unwrap_or("-"));
    }
    let _ = writeln!(o, "\ncontacts ({}, {} links)", d.contacts.len(), d.contact_links.len());
    for c in &d.contacts {
        let _ = writeln!(
            o,
            "  {}  {}  {}",
            c.name,
            if c.position.is_empty() { "-" } else { &c.position },
            c.phones.first().map(String::as_str).unwrap_or("")
        );
    }
    if !d.partner_links.is_empty() || !d.group.parents.is_empty() || !d.group.members.is_empty() {
        let _ = writeln!(o, "\nrelations");
        for parent in &d.group.parents {
            let _ = writeln!(o, "  group parent: {}", parent.name);
        }
        for m in &d.group.members {
            let _ = writeln!(o, "  group member: {}", m.name);
        }
        for (link, other) in &d.partner_links {
            let _ = writeln!(o, "  {} {}", link.link_type, other.name);
        }
    }
    let s = &d.deals;
    let _ = writeln!(
        o,
        "\ndeals: {} open ({}), {} won ({}), {} lost ({})",
        s.open.len(),
        amounts(&s.open_amount),
        s.won,
        amounts(&s.won_amount),
        s.lost,
        amounts(&s.lost_amount)
    );
    for deal in s.open.iter().take(10) {
        let _ = writeln!(
            o,
            "  {}  {} / {}  {}  {}",
            deal.title,
            deal.kind,
            deal.stage.as_deref().unwrap_or("-"),
            deal.status.name(),
            deal.amount
        );
    }
    if !s.lost_by_reason.is_empty() {
        let reasons: Vec<String> = s.lost_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(o, "  lost by reason: {}", reasons.join(", "));
    }
    let docs = &d.documents;
    let _ = writeln!(
        o,
        "\ndocuments ({}): invoiced {}, paid {}, shipped {}, receivable {}",
        docs.count,
        amounts(&docs.invoiced),
        amounts(&docs.paid),
        amounts(&docs.shipped),
        amounts(&docs.receivable)
    );
    for doc in docs.latest.iter().take(10) {
        let _ = writeln!(o, "  {}  {}  {}  {}  {:?}", doc.date, doc.kind.name(), doc.number, doc.amount, doc.state);
    }
    let _ = writeln!(o, "weighted pipeline: {}", amounts(&d.weighted_pipeline));
    if let Some(s) = &d.strategy {
        let _ = writeln!(
            o,
            "strategy: {} ({}): contact every {} days, next by {}{}{}",
            s.strategy.name,
            s.segment,
            s.strategy.contact_every_days,
            s.next_contact,
            if s.overdue { " (due)" } else { "" },
            if s.strategy.discount_policy.is_empty() {
                String::new()
            } else {
                format!("; discounts: {}", s.strategy.discount_policy)
            }
        );
        for a in &s.next_actions {
            let _ = writeln!(o, "  next: {a}");
        }
    }
    if !d.loyalty_cards.is_empty() {
        let _ = writeln!(o, "\nloyalty cards ({})", d.loyalty_cards.len());
        for c in &d.loyalty_cards {
            let program = d.loyalty_programs.iter().find(|p| p.id == c.program);
            let (name, currency) =
                program.map_or(("?".to_string(), String::new()), |p| (p.name.clone(), p.currency.to_string()));
            let holder = if c.contact.is_some() { ", a contact's" } else { "" };
            let _ = writeln!(
                o,
                "  {}  {name}{holder}  {}: {} points, turnover {} {currency}, {} entries{}",
                c.number,
                c.status.name(),
                c.balance,
                c.turnover,
                c.entries,
                c.last_activity.map(|d| format!(", last {d}")).unwrap_or_default()
            );
        }
    }
    if d.claims.count > 0 {
        let c = &d.claims;
        let _ = writeln!(
            o,
            "\nclaims ({}): {} open, {} overdue; claimed {}, settled {}",
            c.count,
            c.open.len(),
            c.overdue,
            amounts(&c.claimed),
            amounts(&c.settled)
        );
        for claim in c.open.iter().chain(&c.latest) {
            let _ = writeln!(
                o,
                "  {}  {:<12} due {}  {}/{}  {}{}",
                claim.registered_on(),
                claim.status.name(),
                claim.due_by(),
                claim.kind,
                claim.cause,
                claim.subject,
                claim.decision.map(|x| format!(" ({})", x.name())).unwrap_or_default()
            );
        }
    }
    if let (Some(from), Some(to)) = (d.classes.from, d.classes.to) {
        let classes: Vec<String> = d
            .classes
            .by_currency
            .iter()
            .map(|c| {
                let rfm = match (&c.rfm, c.rfm_segment) {
                    (Some(code), Some(segment)) => format!(", RFM {code} {segment}"),
                    _ => String::new(),
                };
                format!("{}: {} {}{rfm}", c.currency, c.abc_xyz.as_deref().unwrap_or("-"), c.bcg)
            })
            .collect();
        let shown = if classes.is_empty() { "no revenue".to_string() } else { classes.join(", ") };
        let _ = writeln!(o, "client class ({from}..{to}, ABC/XYZ, BCG and RFM): {shown}");
    }
    if !d.revenue_by_month.is_empty() {
        let _ = writeln!(o, "\nrevenue (won deals) by month");
        for (m, a) in d.revenue_by_month.iter().rev().take(12) {
            let _ = writeln!(o, "  {m}  {}", amounts(a));
        }
    }
    let t = &d.timeline;
    let _ = writeln!(o, "\ntimeline ({} of {}, latest first)", t.interactions.len(), t.total);
    for i in &t.interactions {
        let _ = writeln!(o, "  {}  {:<7}  {}", i.at, i.kind.name(), i.subject);
    }
    o
}

/// `crmkit deal`: a deal's file, oldest first.
pub fn deal(dir: &Path, deal: &str, only: &[String], format: Format) -> Result<()> {
    use crmkit_core::deal_file::{deal_file, FileItem, FileQuery, ItemKind};

    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let id: crmkit_core::id::DealId = deal.parse().map_err(|e| anyhow::anyhow!("\"{deal}\" is not a deal id: {e}"))?;
    let mut kinds = Vec::new();
    for k in only {
        let names: Vec<&str> = ItemKind::ALL.iter().map(|k| k.name()).collect();
        kinds.push(
            ItemKind::from_name(k)
                .ok_or_else(|| anyhow::anyhow!("--only: \"{k}\" is not a kind of item ({})", names.join(", ")))?,
        );
    }
    let file = deal_file(&r, id, &FileQuery { kinds, ..Default::default() })?;
    if format == Format::Json {
        say!("{}", serde_json::to_string_pretty(&file)?);
        return Ok(());
    }
    let d = &file.deal;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}  {}  {} / {}  {}  {}",
        d.title,
        d.id,
        d.kind,
        d.stage.as_deref().unwrap_or("-"),
        d.status.name(),
        d.amount
    );
    let _ = writeln!(
        o,
        "environment: {} participant(s), {} link(s)",
        file.participants.len(),
        file.participant_links.len()
    );
    for p in &file.participants {
        let _ = writeln!(o, "  {}  {:?}", p.role, p.attitude);
    }
    let _ = writeln!(o, "\nfile ({} items, oldest first)", file.total);
    for item in &file.items {
        let what = match item {
            FileItem::Step(s) => format!(
                "{} {} → {} ({})",
                s.how.name(),
                s.from_stage.as_deref().unwrap_or("-"),
                s.to_stage.as_deref().unwrap_or("-"),
                s.to_status.name()
            ),
            FileItem::Task(t) => format!("{} [{}]", t.title, t.status.name()),
            FileItem::Interaction(i) => format!("{} {}", i.kind.name(), i.subject),
            FileItem::Document(doc) => format!("{} {} {} {:?}", doc.kind.name(), doc.number, doc.amount, doc.state),
            FileItem::Attachment(a) => format!("{} ({} bytes)", a.name, a.size),
            FileItem::Audit(a) => {
                let fields: Vec<&str> = a.changes.iter().map(|c| c.field.as_str()).collect();
                format!("{:?} {}", a.op, fields.join(", "))
            }
        };
        let _ = writeln!(o, "  {}  {:<11}  {what}", item.at(), item.kind().name());
    }
    say!("{o}");
    Ok(())
}

/// `crmkit group`: the group a partner belongs to, with every member's figures.
pub fn group(dir: &Path, partner: &str, format: Format) -> Result<()> {
    use crmkit_core::graph::group_rollup;

    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let p = find_partner(&r, partner)?;
    let g = group_rollup(&r, p.id, 10_000)?;
    if format == Format::Json {
        say!("{}", serde_json::to_string_pretty(&g)?);
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(o, "group of {} ({} members)", g.head.name, g.members.len());
    let line = |o: &mut String, name: &str, f: &crmkit_core::graph::Figures| {
        let _ = writeln!(
            o,
            "  {name:<40} deals {:>4} open / {:>4} won / {:>4} lost   won {}   invoiced {}   paid {}",
            f.open_deals,
            f.won_deals,
            f.lost_deals,
            amounts(&f.won_amount),
            amounts(&f.invoiced),
            amounts(&f.paid)
        );
    };
    for (m, f) in &g.members {
        line(&mut o, &m.name, f);
    }
    line(&mut o, "total", &g.total);
    say!("{o}");
    Ok(())
}
