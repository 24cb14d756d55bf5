//! The customer dossier (досье партнера): everything about one partner in one call, read
//! from one snapshot.
//!
//! Each section is a field of [`Dossier`] built by one function from a [`Cx`]; adding a
//! section (claims, loyalty, strategy — later) is one more field and one more
//! function. The whole value serializes to JSON for the API; the CLI prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::analytics::{ClientClass, ClientClasses};
use crate::id::{ContactId, DealId, InteractionId, PartnerId, RawId, TypedId};
use crate::model::{
    ContactLink, ContactPerson, Counterparty, Deal, DealStatus, Document, DocumentKind, DocumentState, Interaction,
    Partner, PartnerLink, Task, TaskStatus,
};
use crate::store::{Index, Reader};
use crate::time::Timestamp;
use crate::values::Currency;
use crate::{Error, Result};

/// How much of the long sections to return.
#[derive(Clone, Debug)]
pub struct DossierOptions {
    /// Interactions per page of the timeline.
    pub timeline_limit: usize,
    /// The timeline page: interactions recorded before this one (`None`: the latest).
    pub timeline_before: Option<InteractionId>,
    /// Documents listed (the latest); balances always cover all of them.
    pub documents_limit: usize,
    /// How deep the group tree is followed.
    pub group_depth: usize,
    /// Every client's classes, computed beforehand (an installation keeps them for the day:
    /// [`crate::Installation::client_classes`]); `None` leaves the dossier's `classes`
    /// empty, so that a dossier never scans every document of the installation unasked.
    pub classes: Option<Arc<ClientClasses>>,
}

impl Default for DossierOptions {
    fn default() -> Self {
        DossierOptions {
            timeline_limit: 20,
            timeline_before: None,
            documents_limit: 20,
            group_depth: 16,
            classes: None,
        }
    }
}

/// Amounts per currency.
pub type Amounts = BTreeMap<Currency, Decimal>;

/// The partner's deals, summed up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DealsSection {
    /// Deals in progress or on hold, newest first.
    pub open: Vec<Deal>,
    pub open_amount: Amounts,
    pub won: usize,
    pub won_amount: Amounts,
    pub lost: usize,
    pub lost_amount: Amounts,
    /// Lost deals by loss reason.
    pub lost_by_reason: BTreeMap<String, usize>,
}

/// The partner's documents and what they add up to.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DocumentsSection {
    /// The latest documents, newest first.
    pub latest: Vec<Document>,
    pub count: usize,
    /// Invoices issued and not cancelled.
    pub invoiced: Amounts,
    /// Completed payments.
    pub paid: Amounts,
    /// Completed shipments.
    pub shipped: Amounts,
    /// Invoiced minus paid (what the client owes).
    pub receivable: Amounts,
}

/// The partner's place in its group of companies.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupSection {
    /// From the direct parent up to the top of the group.
    pub parents: Vec<Partner>,
    /// Every descendant (divisions, subsidiaries), breadth first.
    pub members: Vec<Partner>,
}

/// A page of the interaction timeline, latest first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TimelineSection {
    pub interactions: Vec<Interaction>,
    pub total: usize,
    /// Pass as `timeline_before` for the next page (`None`: this was the last).
    pub next_before: Option<InteractionId>,
}

/// Everything about one partner.
#[derive(Clone, Debug, Serialize)]
pub struct Dossier {
    pub partner: Partner,
    pub counterparties: Vec<Counterparty>,
    pub contacts: Vec<ContactPerson>,
    pub contact_links: Vec<ContactLink>,
    /// Links to other partners, with the partner at the other end.
    pub partner_links: Vec<(PartnerLink, Partner)>,
    pub group: GroupSection,
    pub deals: DealsSection,
    pub timeline: TimelineSection,
    pub documents: DocumentsSection,
    /// Won deals' amounts by the month they were closed (`2026-03`).
    pub revenue_by_month: BTreeMap<String, Amounts>,
    /// When the partner was last contacted (the latest interaction).
    pub last_contact: Option<Timestamp>,
    /// The open task on the partner's deals that is due first.
    pub next_task: Option<Task>,
    /// The partner as a client: its ABC/XYZ class and BCG quadrant per currency.
    pub classes: ClassesSection,
    /// The open deals' amounts times their probability (in percent, none counting as 0),
    /// per currency.
    pub weighted_pipeline: Amounts,
    /// The loyalty cards the partner and its contact persons hold, with their balances and
    /// turnover, oldest first.
    pub loyalty_cards: Vec<crate::model::LoyaltyCard>,
    /// The programs of those cards.
    pub loyalty_programs: Vec<crate::model::LoyaltyProgram>,
    /// The strategy of the partner's segment (`[[strategies]]`), when it has one: when
    /// contact is due and what to do.
    pub strategy: Option<StrategySection>,
    /// The partner's claims: those awaiting a decision and the latest others, with counts
    /// and the amounts claimed and settled.
    pub claims: ClaimsSection,
}

/// The partner's claims, summed up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClaimsSection {
    /// Claims registered or under review, the one due first first.
    pub open: Vec<crate::model::Claim>,
    /// The latest decided or closed claims (as many as the documents listed), newest first.
    pub latest: Vec<crate::model::Claim>,
    pub count: usize,
    /// Open claims past the day they were due by.
    pub overdue: usize,
    /// Amounts claimed, over every claim.
    pub claimed: Amounts,
    /// Amounts settled by the decisions standing.
    pub settled: Amounts,
}

/// The partner's relationship strategy, as its segment has it.
#[derive(Clone, Debug, Serialize)]
pub struct StrategySection {
    pub segment: String,
    pub strategy: crate::config::Strategy,
    /// The day contact is due: the last contact plus the strategy's days (never contacted:
    /// today).
    pub next_contact: chrono::NaiveDate,
    pub overdue: bool,
    /// What to do next: the strategy's actions when contact is due, none before.
    pub next_actions: Vec<String>,
}

/// The partner's place among the installation's clients.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassesSection {
    /// The months classified: the twelve full months before the day they were computed
    /// (the BCG growth is against the twelve before them); none when the caller did not
    /// ask for the classes.
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
    /// One entry per currency the partner had revenue in, in either period; empty when it
    /// had none.
    pub by_currency: Vec<ClientClass>,
}

/// What the section builders read from.
pub struct Cx<'r, R: Reader> {
    pub r: &'r R,
    pub partner: Partner,
    pub options: DossierOptions,
}

/// Builds the dossier of `partner` from one consistent view.
pub fn dossier<R: Reader>(r: &R, partner: PartnerId, options: DossierOptions) -> Result<Dossier> {
    let cx = Cx { r, partner: r.load(partner)?, options };
    let deals = partner_deals(&cx)?;
    let timeline = timeline(&cx)?;
    let classes = match &cx.options.classes {
        Some(c) => ClassesSection {
            from: c.period.map(|p| p.0),
            to: c.period.map(|p| p.1),
            by_currency: c.by_partner.get(&partner).cloned().unwrap_or_default(),
        },
        None => ClassesSection::default(),
    };
    let (loyalty_cards, loyalty_programs) = loyalty(&cx)?;
    let last_contact = timeline.interactions.iter().map(|i| i.at).max();
    let strategy = strategy(&cx, last_contact);
    Ok(Dossier {
        claims: claims(&cx)?,
        strategy,
        loyalty_cards,
        loyalty_programs,
        classes,
        weighted_pipeline: weighted_pipeline(&deals),
        counterparties: counterparties(&cx)?,
        contacts: contacts(&cx)?,
        contact_links: contact_links(&cx)?,
        partner_links: partner_links(&cx)?,
        group: group(&cx)?,
        revenue_by_month: revenue_by_month(&deals),
        next_task: next_task(&cx, &deals)?,
        last_contact,
        deals: deals_section(deals),
        documents: documents(&cx)?,
        timeline,
        partner: cx.partner,
    })
}

fn ids<R: Reader>(cx: &Cx<'_, R>, index: Index, of: RawId) -> Result<Vec<RawId>> {
    cx.r.ids_by(index, &of.to_bytes(), None, usize::MAX)
}

fn counterparties<R: Reader>(cx: &Cx<'_, R>) -> Result<Vec<Counterparty>> {
    cx.partner.counterparties.iter().map(|id| cx.r.load(*id)).collect()
}

/// The strategy of the partner's segment, with when contact is due.
fn strategy<R: Reader>(cx: &Cx<'_, R>, last_contact: Option<Timestamp>) -> Option<StrategySection> {
    let segment = cx.partner.segment.clone()?;
    let strategy = cx.r.settings().strategy(&segment)?.clone();
    let today = cx.r.now().date();
    let next_contact =
        last_contact.map_or(today, |t| t.date() + chrono::Duration::days(i64::from(strategy.contact_every_days)));
    let overdue = next_contact <= today;
    let next_actions = if overdue { strategy.actions.clone() } else { Vec::new() };
    Some(StrategySection { segment, strategy, next_contact, overdue, next_actions })
}

/// The partner's claims: the open ones, the latest others, and what they add up to.
fn claims<R: Reader>(cx: &Cx<'_, R>) -> Result<ClaimsSection> {
    let all: Vec<crate::model::Claim> =
        cx.r.find(Index::ClaimByPartner, &cx.partner.id.raw().to_bytes(), None, usize::MAX)?;
    let today = cx.r.now().date();
    let mut out = ClaimsSection { count: all.len(), ..ClaimsSection::default() };
    for c in &all {
        if let Some(m) = c.claimed {
            *out.claimed.entry(m.currency).or_default() += m.amount;
        }
        if let Some(m) = c.settled {
            *out.settled.entry(m.currency).or_default() += m.amount;
        }
        out.overdue += usize::from(c.is_overdue(today));
    }
    let (mut open, mut done): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| c.status.is_open());
    open.sort_by_key(|c| (c.due_by(), c.id));
    done.sort_by_key(|c| std::cmp::Reverse(c.id));
    done.truncate(cx.options.documents_limit);
    out.open = open;
    out.latest = done;
    Ok(out)
}

/// The cards the partner and its contact persons hold, and their programs.
fn loyalty<R: Reader>(cx: &Cx<'_, R>) -> Result<(Vec<crate::model::LoyaltyCard>, Vec<crate::model::LoyaltyProgram>)> {
    let mut ids = ids(cx, Index::LoyaltyCardByPartner, cx.partner.id.raw())?;
    for contact in ids_of_contacts(cx)? {
        ids.extend(self::ids(cx, Index::LoyaltyCardByContact, contact)?);
    }
    ids.sort();
    let cards: Vec<crate::model::LoyaltyCard> =
        ids.into_iter().map(|id| cx.r.load(crate::id::LoyaltyCardId(id))).collect::<Result<_>>()?;
    let mut programs: Vec<crate::model::LoyaltyProgram> = Vec::new();
    for c in &cards {
        if !programs.iter().any(|p| p.id == c.program) {
            programs.push(cx.r.load(c.program)?);
        }
    }
    Ok((cards, programs))
}

fn ids_of_contacts<R: Reader>(cx: &Cx<'_, R>) -> Result<Vec<RawId>> {
    ids(cx, Index::ContactByPartner, cx.partner.id.raw())
}

fn contacts<R: Reader>(cx: &Cx<'_, R>) -> Result<Vec<ContactPerson>> {
    ids(cx, Index::ContactByPartner, cx.partner.id.raw())?.into_iter().map(|id| cx.r.load(ContactId(id))).collect()
}

fn contact_links<R: Reader>(cx: &Cx<'_, R>) -> Result<Vec<ContactLink>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for contact in ids(cx, Index::ContactByPartner, cx.partner.id.raw())? {
        for link in ids(cx, Index::ContactLinkByContact, contact)? {
            if seen.insert(link) {
                out.push(cx.r.load(crate::id::ContactLinkId(link))?);
            }
        }
    }
    Ok(out)
}

fn partner_links<R: Reader>(cx: &Cx<'_, R>) -> Result<Vec<(PartnerLink, Partner)>> {
    let mut out = Vec::new();
    for id in ids(cx, Index::PartnerLinkByPartner, cx.partner.id.raw())? {
        let link: PartnerLink = cx.r.load(crate::id::PartnerLinkId(id))?;
        let other = if link.from == cx.partner.id { link.to } else { link.from };
        out.push((link, cx.r.load(other)?));
    }
    Ok(out)
}

fn group<R: Reader>(cx: &Cx<'_, R>) -> Result<GroupSection> {
    let mut parents = Vec::new();
    let mut at = cx.partner.parent;
    while let Some(p) = at.filter(|_| parents.len() < cx.options.group_depth) {
        let parent: Partner = cx.r.load(p)?;
        at = parent.parent;
        parents.push(parent);
    }
    let mut members = Vec::new();
    let mut level = vec![cx.partner.id];
    for _ in 0..cx.options.group_depth {
        let mut next = Vec::new();
        for p in level {
            for child in ids(cx, Index::PartnerByParent, p.raw())? {
                let child: Partner = cx.r.load(PartnerId(child))?;
                next.push(child.id);
                members.push(child);
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(GroupSection { parents, members })
}

fn partner_deals<R: Reader>(cx: &Cx<'_, R>) -> Result<Vec<Deal>> {
    ids(cx, Index::DealByPartner, cx.partner.id.raw())?.into_iter().map(|id| cx.r.load(DealId(id))).collect()
}

fn add(to: &mut Amounts, currency: Currency, amount: Decimal) {
    *to.entry(currency).or_default() += amount;
}

fn deals_section(deals: Vec<Deal>) -> DealsSection {
    let mut s = DealsSection::default();
    for d in deals.into_iter().rev() {
        match d.status {
            DealStatus::Won => {
                s.won += 1;
                add(&mut s.won_amount, d.amount.currency, d.amount.amount);
            }
            DealStatus::Lost => {
                s.lost += 1;
                add(&mut s.lost_amount, d.amount.currency, d.amount.amount);
                *s.lost_by_reason.entry(d.loss_reason.clone().unwrap_or_default()).or_default() += 1;
            }
            DealStatus::InProgress | DealStatus::OnHold => {
                add(&mut s.open_amount, d.amount.currency, d.amount.amount);
                s.open.push(d);
            }
        }
    }
    s
}

fn weighted_pipeline(deals: &[Deal]) -> Amounts {
    let mut out = Amounts::new();
    for d in deals.iter().filter(|d| !d.status.is_closed()) {
        let p = Decimal::from(d.probability.unwrap_or(0));
        add(&mut out, d.amount.currency, (d.amount.amount * p / Decimal::ONE_HUNDRED).round_dp(2));
    }
    out
}

fn revenue_by_month(deals: &[Deal]) -> BTreeMap<String, Amounts> {
    let mut out: BTreeMap<String, Amounts> = BTreeMap::new();
    for d in deals.iter().filter(|d| d.status == DealStatus::Won) {
        if let Some(at) = d.closed_at {
            let month = at.date().format("%Y-%m").to_string();
            add(out.entry(month).or_default(), d.amount.currency, d.amount.amount);
        }
    }
    out
}

fn next_task<R: Reader>(cx: &Cx<'_, R>, deals: &[Deal]) -> Result<Option<Task>> {
    let mut best: Option<Task> = None;
    for d in deals.iter().filter(|d| !d.status.is_closed()) {
        for t in cx.r.tasks_of_deal(d.id)? {
            // Tasks with a due instant first, the earliest first.
            let key = |x: &Task| (x.due.is_none(), x.due);
            if t.status == TaskStatus::Open && best.as_ref().is_none_or(|b| key(&t) < key(b)) {
                best = Some(t);
            }
        }
    }
    Ok(best)
}

/// The interactions are listed in the order they were recorded (their ids), latest first.
fn timeline<R: Reader>(cx: &Cx<'_, R>) -> Result<TimelineSection> {
    let all = ids(cx, Index::InteractionByPartner, cx.partner.id.raw())?;
    let end = match cx.options.timeline_before {
        Some(before) => all.partition_point(|id| *id < before.raw()),
        None => all.len(),
    };
    let start = end.saturating_sub(cx.options.timeline_limit);
    let mut interactions = Vec::with_capacity(end - start);
    for id in all[start..end].iter().rev() {
        interactions.push(cx.r.load(InteractionId(*id))?);
    }
    let next_before = (start > 0).then(|| InteractionId(all[start]));
    Ok(TimelineSection { interactions, total: all.len(), next_before })
}

fn documents<R: Reader>(cx: &Cx<'_, R>) -> Result<DocumentsSection> {
    let ids = ids(cx, Index::DocumentByPartner, cx.partner.id.raw())?;
    let mut s = DocumentsSection { count: ids.len(), ..Default::default() };
    for (n, id) in ids.iter().rev().enumerate() {
        let d: Document = cx.r.load(crate::id::DocumentId(*id))?;
        let (c, a) = (d.amount.currency, d.amount.amount);
        match (d.kind, d.state) {
            (_, DocumentState::Cancelled | DocumentState::Draft) => {}
            (DocumentKind::Invoice, _) => add(&mut s.invoiced, c, a),
            (DocumentKind::Payment, DocumentState::Completed) => add(&mut s.paid, c, a),
            (DocumentKind::Shipment, DocumentState::Completed) => add(&mut s.shipped, c, a),
            _ => {}
        }
        if n < cx.options.documents_limit {
            s.latest.push(d);
        }
    }
    let currencies: BTreeSet<Currency> = s.invoiced.keys().chain(s.paid.keys()).copied().collect();
    for c in currencies {
        let owed = s.invoiced.get(&c).copied().unwrap_or_default() - s.paid.get(&c).copied().unwrap_or_default();
        s.receivable.insert(c, owed);
    }
    Ok(s)
}

/// Finds a partner by id (26 characters) or by exact name (case does not matter).
pub fn find_partner<R: Reader>(r: &R, key: &str) -> Result<Partner> {
    if let Ok(id) = key.parse::<PartnerId>() {
        if let Some(p) = r.get::<Partner>(id)? {
            return Ok(p);
        }
    }
    let found: Vec<Partner> =
        r.find(Index::PartnerByName, &crate::model::text_prefix(&[&key.trim().to_lowercase()]), None, 2)?;
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(Error::NotAllowed(format!("no partner has the id or the name \"{key}\""))),
        _ => Err(Error::NotAllowed(format!("several partners are named \"{key}\": give the id"))),
    }
}
