//! Who may read and write what: the one place the API's role rules live.
//!
//! - `admin`: everything, and alone writes users, scripts and imports.
//! - `head`: the deals, partners, tasks and their files of their department (users sharing
//!   their `department`), and reports.
//! - `manager`: their own deals, partners and tasks, and what hangs off them; partners with
//!   no manager are shared by everyone.
//! - `viewer`: reads everything, writes nothing.
//!
//! Reference data — users, counterparties, process kinds — every role reads. An entity
//! outside a caller's scope answers 404, as if it did not exist: a manager does not learn
//! which ids exist.

use crmkit_core::id::{ContactId, DealId, PartnerId, UserId};
use crmkit_core::model::{
    Attachment, ContactLink, ContactPerson, Counterparty, Deal, Document, Entity, EntityKind, Interaction, Participant,
    ParticipantLink, Partner, PartnerLink, Plan, Role, Task, User,
};
use crmkit_core::store::Reader;
use crmkit_core::Result;

/// The user a request's token names, with the role it was issued for.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: User,
    pub role: Role,
}

/// Reading or writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Caller {
    /// Whether the caller may `access` `thing`: viewers never write; otherwise the thing's
    /// scope decides.
    pub fn may<E: Scoped>(&self, r: &impl Reader, access: Access, thing: &E) -> Result<bool> {
        if access == Access::Write && self.role == Role::Viewer {
            return Ok(false);
        }
        thing.in_scope(r, self, access)
    }

    /// Visits every entity of a kind the caller may read, until `f` returns `false`.
    pub fn each_readable<E: Scoped>(&self, r: &impl Reader, f: &mut dyn FnMut(E) -> bool) -> Result<()> {
        let mut failed = None;
        r.for_each::<E>(|e| match self.may(r, Access::Read, &e) {
            Ok(true) => f(e),
            Ok(false) => true,
            Err(err) => {
                failed = Some(err);
                false
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Whether the things `owner` is responsible for (as a deal's or partner's manager, a
    /// task's executor) are in the caller's scope: admins' and viewers' everyone's, heads'
    /// their department's, managers' their own.
    pub fn covers(&self, r: &impl Reader, owner: UserId) -> Result<bool> {
        Ok(match self.role {
            Role::Admin | Role::Viewer => true,
            Role::Manager => owner == self.user.id,
            Role::Head => {
                owner == self.user.id || {
                    let u: Option<std::sync::Arc<User>> = r.get_shared(owner)?;
                    u.is_some_and(|m| m.department.is_some() && m.department == self.user.department)
                }
            }
        })
    }

    /// Whether the entity `id` of `kind` is in scope (a missing one is: the write that
    /// names it fails on the reference instead).
    pub fn may_ref(
        &self,
        r: &impl Reader,
        access: Access,
        kind: EntityKind,
        id: crmkit_core::id::RawId,
    ) -> Result<bool> {
        use crmkit_core::id::TypedId;
        fn one<E: Scoped>(c: &Caller, r: &impl Reader, a: Access, id: crmkit_core::id::RawId) -> Result<bool> {
            match r.get_shared::<E>(E::Id::from_raw(id))? {
                Some(e) => c.may(r, a, e.as_ref()),
                None => Ok(true),
            }
        }
        crmkit_core::with_kind!(kind, E => one::<E>(self, r, access, id))
    }

    fn partner(&self, r: &impl Reader, access: Access, id: PartnerId) -> Result<bool> {
        self.may_ref(r, access, EntityKind::Partner, id.0)
    }

    fn deal(&self, r: &impl Reader, access: Access, id: DealId) -> Result<bool> {
        self.may_ref(r, access, EntityKind::Deal, id.0)
    }

    fn contact(&self, r: &impl Reader, access: Access, id: ContactId) -> Result<bool> {
        self.may_ref(r, access, EntityKind::Contact, id.0)
    }
}

/// An entity whose scope the rules above decide.
pub trait Scoped: Entity {
    /// Whether the entity is in `caller`'s scope for `access` (the viewer rule aside).
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool>;
}

impl Scoped for Deal {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, _: Access) -> Result<bool> {
        caller.covers(r, self.manager)
    }
}

impl Scoped for Partner {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, _: Access) -> Result<bool> {
        match self.manager {
            Some(m) => caller.covers(r, m),
            None => Ok(true),
        }
    }
}

impl Scoped for Counterparty {
    fn in_scope(&self, _: &impl Reader, _: &Caller, _: Access) -> Result<bool> {
        Ok(true)
    }
}

impl Scoped for User {
    fn in_scope(&self, _: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        Ok(access == Access::Read || caller.role == Role::Admin)
    }
}

impl Scoped for ContactPerson {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        caller.partner(r, access, self.partner)
    }
}

/// A link is read by whoever sees both its ends and written by whoever may write its
/// `from` end and see its `to` end.
fn link(
    access: Access,
    from: impl FnOnce(Access) -> Result<bool>,
    to: impl FnOnce(Access) -> Result<bool>,
) -> Result<bool> {
    match access {
        Access::Read => Ok(from(Access::Read)? && to(Access::Read)?),
        Access::Write => Ok(from(Access::Write)? && to(Access::Read)?),
    }
}

impl Scoped for PartnerLink {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        link(access, |a| caller.partner(r, a, self.from), |a| caller.partner(r, a, self.to))
    }
}

impl Scoped for ContactLink {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        link(access, |a| caller.contact(r, a, self.from), |a| caller.contact(r, a, self.to))
    }
}

impl Scoped for Participant {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        caller.deal(r, access, self.deal)
    }
}

impl Scoped for ParticipantLink {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        caller.deal(r, access, self.deal)
    }
}

impl Scoped for Interaction {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        // Its author reads it wherever it was recorded; writing takes the deal's or the
        // partner's scope.
        if access == Access::Read && self.author == Some(caller.user.id) {
            return Ok(true);
        }
        match self.deal {
            Some(d) => caller.deal(r, access, d),
            None => caller.partner(r, access, self.partner),
        }
    }
}

impl Scoped for Document {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        match self.deal {
            Some(d) => caller.deal(r, access, d),
            None => caller.partner(r, access, self.partner),
        }
    }
}

impl Scoped for Attachment {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        caller.may_ref(r, access, self.owner.kind, self.owner.id)
    }
}

impl Scoped for Task {
    /// Read by its executor, those who cover the executor, and those who see its deal;
    /// written, when it belongs to a deal, by those who may write the deal, otherwise by
    /// those who cover the executor. (Finishing a task is its executor's whatever the deal:
    /// the process engine decides that.)
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        match (access, self.deal) {
            (Access::Write, Some(d)) => caller.deal(r, access, d),
            (Access::Write, None) => caller.covers(r, self.executor),
            (Access::Read, deal) => Ok(self.executor == caller.user.id
                || caller.covers(r, self.executor)?
                || deal.map_or(Ok(false), |d| caller.deal(r, access, d))?),
        }
    }
}

impl Scoped for Plan {
    /// Read by the plan's manager and those who cover the manager; written by admins, and
    /// by heads for the managers of their department (not their own: a head's plan is set
    /// from above).
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        match (access, caller.role) {
            (Access::Read, _) => caller.covers(r, self.manager),
            (Access::Write, Role::Admin) => Ok(true),
            (Access::Write, Role::Head) => Ok(self.manager != caller.user.id && caller.covers(r, self.manager)?),
            (Access::Write, Role::Manager | Role::Viewer) => Ok(false),
        }
    }
}

impl Scoped for crmkit_core::model::LoyaltyProgram {
    /// Read by everyone (reference data); written by admins.
    fn in_scope(&self, _: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        Ok(access == Access::Read || caller.role == Role::Admin)
    }
}

/// A claim is its responsible person's and within its client's scope: a manager reads and
/// works the claims they are responsible for and those of their clients.
impl Scoped for crmkit_core::model::Claim {
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        Ok(self.responsible == caller.user.id
            || caller.covers(r, self.responsible)?
            || caller.partner(r, access, self.partner)?)
    }
}

impl Scoped for crmkit_core::model::LoyaltyCard {
    /// As its holder: the partner, or the contact person's partner.
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        match (self.partner, self.contact) {
            (Some(p), _) => caller.partner(r, access, p),
            (None, Some(c)) => caller.contact(r, access, c),
            (None, None) => Ok(caller.role == Role::Admin),
        }
    }
}

impl Scoped for crmkit_core::model::LoyaltyEntry {
    /// As its card.
    fn in_scope(&self, r: &impl Reader, caller: &Caller, access: Access) -> Result<bool> {
        caller.may_ref(r, access, EntityKind::LoyaltyCard, self.card.0)
    }
}

/// Takes out of a dossier what `caller` may not see: others' deals, documents,
/// interactions and tasks, partners of other scopes in links and the group. The partner's
/// totals (counts and amounts of its deals and documents) stay: they describe the partner
/// the caller sees.
pub fn scope_dossier(r: &impl Reader, caller: &Caller, d: &mut crmkit_core::dossier::Dossier) -> Result<()> {
    if matches!(caller.role, Role::Admin | Role::Viewer) {
        return Ok(());
    }
    fn keep<E: Scoped>(r: &impl Reader, caller: &Caller, items: &mut Vec<E>) -> Result<()> {
        let mut kept = Vec::with_capacity(items.len());
        for e in items.drain(..) {
            if caller.may(r, Access::Read, &e)? {
                kept.push(e);
            }
        }
        *items = kept;
        Ok(())
    }
    keep(r, caller, &mut d.contact_links)?;
    keep(r, caller, &mut d.group.parents)?;
    keep(r, caller, &mut d.group.members)?;
    keep(r, caller, &mut d.deals.open)?;
    let shown = d.timeline.interactions.len();
    keep(r, caller, &mut d.timeline.interactions)?;
    // What the hidden ones would tell: when they were, how many.
    if d.timeline.interactions.len() != shown {
        d.timeline.total = d.timeline.interactions.len();
        d.last_contact = d.timeline.interactions.iter().map(|i| i.at).max();
    }
    // The next page starts before the oldest interaction shown (one hidden is not named).
    if d.timeline.next_before.is_some() {
        d.timeline.next_before = d.timeline.interactions.iter().map(|i| i.id).min();
    }
    keep(r, caller, &mut d.documents.latest)?;
    let mut links = Vec::with_capacity(d.partner_links.len());
    for (link, other) in d.partner_links.drain(..) {
        if caller.may(r, Access::Read, &link)? {
            links.push((link, other));
        }
    }
    d.partner_links = links;
    if let Some(t) = &d.next_task {
        if !caller.may(r, Access::Read, t)? {
            d.next_task = None;
        }
    }
    Ok(())
}

/// The store as a head's report sees it: the deals of their department (and what hangs off
/// them) and nothing of other departments'; partners and users as everyone reads them.
pub struct DepartmentView<'a, R: Reader> {
    r: &'a R,
    caller: &'a Caller,
    /// The users whose deals the head covers.
    covered: std::collections::BTreeSet<UserId>,
}

impl<'a, R: Reader> DepartmentView<'a, R> {
    /// Visits every entity of a kind the head may read, until `f` returns `false`.
    fn each_readable<E: Scoped>(&self, f: &mut dyn FnMut(&E) -> bool) -> Result<()> {
        self.caller.each_readable(self.r, &mut |e: E| f(&e))
    }

    /// The view of `caller`'s department over `r`.
    pub fn new(r: &'a R, caller: &'a Caller) -> Result<DepartmentView<'a, R>> {
        let mut covered = std::collections::BTreeSet::from([caller.user.id]);
        if caller.user.department.is_some() {
            r.for_each::<User>(|u| {
                if u.department == caller.user.department {
                    covered.insert(u.id);
                }
                true
            })?;
        }
        Ok(DepartmentView { r, caller, covered })
    }

    fn sees(&self, deal: &Deal) -> bool {
        self.covered.contains(&deal.manager)
    }

    fn sees_id(&self, id: DealId) -> Result<bool> {
        Ok(self.r.get_shared::<Deal>(id)?.is_some_and(|d| self.sees(&d)))
    }

    /// Visits the rows `scan` hands out that the head sees: those of a deal the head sees
    /// (`deal_of`), and those of no deal that `no_deal` lets through; stops at the first
    /// deal that cannot be read, and fails with it.
    fn scan_seen<T>(
        &self,
        scan: &mut Scan<'_, T>,
        deal_of: &dyn Fn(&T) -> Option<DealId>,
        no_deal: &dyn Fn(&T) -> bool,
        f: &mut dyn FnMut(&T) -> bool,
    ) -> Result<()> {
        let mut failed = None;
        scan(&mut |row| {
            let seen = match deal_of(row) {
                Some(deal) => match self.sees_id(deal) {
                    Ok(seen) => seen,
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                },
                None => no_deal(row),
            };
            !seen || f(row)
        })?;
        failed.map_or(Ok(()), Err)
    }
}

/// A scan of the store's rows of one kind: it hands each row to its argument until that
/// returns `false`.
type Scan<'a, T> = dyn FnMut(&mut dyn FnMut(&T) -> bool) -> Result<()> + 'a;

impl<R: Reader> crmkit_core::process::View for DepartmentView<'_, R> {
    fn partner(&self, id: PartnerId) -> Result<Option<Partner>> {
        match self.r.get::<Partner>(id)? {
            Some(p) if self.caller.may(self.r, Access::Read, &p)? => Ok(Some(p)),
            _ => Ok(None),
        }
    }
    fn deal(&self, id: DealId) -> Result<Option<Deal>> {
        Ok(self.r.get::<Deal>(id)?.filter(|d| self.sees(d)))
    }
    fn contact(&self, id: ContactId) -> Result<Option<ContactPerson>> {
        match self.r.get::<ContactPerson>(id)? {
            Some(c) if self.caller.may(self.r, Access::Read, &c)? => Ok(Some(c)),
            _ => Ok(None),
        }
    }
    fn user(&self, id: UserId) -> Result<Option<User>> {
        self.r.get(id)
    }
    fn deals_of(&self, partner: PartnerId) -> Result<Vec<Deal>> {
        Ok(crmkit_core::process::View::deals_of(self.r, partner)?.into_iter().filter(|d| self.sees(d)).collect())
    }
    fn history(&self, deal: DealId) -> Result<Vec<crmkit_core::model::StageChange>> {
        if !self.sees_id(deal)? {
            return Ok(Vec::new());
        }
        self.r.stage_history(deal)
    }
    fn interactions(&self, deal: DealId) -> Result<Vec<Interaction>> {
        if !self.sees_id(deal)? {
            return Ok(Vec::new());
        }
        crmkit_core::process::View::interactions(self.r, deal)
    }
    fn documents(&self, deal: DealId) -> Result<Vec<Document>> {
        if !self.sees_id(deal)? {
            return Ok(Vec::new());
        }
        crmkit_core::process::View::documents(self.r, deal)
    }
    fn users_with_role(&self, role: Role) -> Result<Vec<User>> {
        crmkit_core::process::View::users_with_role(self.r, role)
    }
    fn open_tasks(&self, user: UserId) -> Result<usize> {
        match self.covered.contains(&user) {
            true => crmkit_core::process::View::open_tasks(self.r, user),
            false => Ok(0),
        }
    }
    fn user_with_login(&self, login: &str) -> Result<Option<User>> {
        self.r.user_by_login(login)
    }
    fn each_deal(&self, f: &mut dyn FnMut(&Deal) -> bool) -> Result<()> {
        crmkit_core::process::View::each_deal(self.r, &mut |d| !self.sees(d) || f(d))
    }
    fn deals_page(&self, after: Option<DealId>, limit: usize) -> Result<Vec<Deal>> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            let page = self.r.list::<Deal>(cursor, 500)?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            out.extend(page.into_iter().filter(|d| self.sees(d)));
        }
        out.truncate(limit);
        Ok(out)
    }
    fn each_stage_change(&self, f: &mut dyn FnMut(&crmkit_core::model::StageChange) -> bool) -> Result<()> {
        // Steps come deal by deal: the deal's verdict is looked up once for its steps.
        let mut current: Option<(DealId, bool)> = None;
        let mut failed = None;
        self.r.for_each_stage_change(|c| {
            let seen = match current {
                Some((id, seen)) if id == c.deal => seen,
                _ => match self.sees_id(c.deal) {
                    Ok(seen) => {
                        current = Some((c.deal, seen));
                        seen
                    }
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                },
            };
            !seen || f(&c)
        })?;
        failed.map_or(Ok(()), Err)
    }
    fn scan_deals(&self, f: &mut dyn FnMut(&crmkit_core::store::DealRow) -> bool) -> Result<()> {
        self.r.scan_deals(&mut |d| !self.covered.contains(&d.manager) || f(d))
    }
    fn scan_deal_heads(&self, f: &mut dyn FnMut(&crmkit_core::store::DealHead) -> bool) -> Result<()> {
        self.r.scan_deal_heads(&mut |d| !self.covered.contains(&d.manager) || f(d))
    }
    fn latest_step_at(&self) -> Result<Option<crmkit_core::time::Timestamp>> {
        self.r.latest_step_at()
    }
    fn each_partner(&self, f: &mut dyn FnMut(&Partner) -> bool) -> Result<()> {
        self.each_readable(f)
    }
    fn each_document(&self, f: &mut dyn FnMut(&Document) -> bool) -> Result<()> {
        self.each_of_deals(|d: &Document| d.deal, f)
    }
    fn scan_documents(&self, f: &mut dyn FnMut(&crmkit_core::store::DocumentRow) -> bool) -> Result<()> {
        // As `each_document`: the documents of a deal the head sees.
        self.scan_seen(&mut |g| self.r.scan_documents(g), &|d| d.deal, &|_| false, f)
    }
    fn scan_shipments(&self, f: &mut dyn FnMut(&crmkit_core::store::DocumentRow) -> bool) -> Result<()> {
        // As `scan_documents`: the shipments of a deal the head sees.
        self.scan_seen(&mut |g| self.r.scan_shipments(g), &|d| d.deal, &|_| false, f)
    }
    fn scan_deal_documents(&self, f: &mut dyn FnMut(&crmkit_core::store::DealDocuments) -> bool) -> Result<()> {
        // As `scan_documents`: the documents of a deal the head sees.
        self.scan_seen(&mut |g| self.r.scan_deal_documents(g), &|d| Some(d.deal), &|_| false, f)
    }
    fn each_interaction(&self, f: &mut dyn FnMut(&Interaction) -> bool) -> Result<()> {
        self.each_of_deals(|i: &Interaction| i.deal, f)
    }
    fn scan_interactions(&self, f: &mut dyn FnMut(&crmkit_core::store::InteractionRow) -> bool) -> Result<()> {
        // As `each_interaction`: the interactions of a deal the head sees.
        self.scan_seen(&mut |g| self.r.scan_interactions(g), &|i| i.deal, &|_| false, f)
    }
    fn each_plan(&self, f: &mut dyn FnMut(&Plan) -> bool) -> Result<()> {
        self.r.for_each::<Plan>(|p| !self.covered.contains(&p.manager) || f(&p))
    }
    fn each_loyalty_program(&self, f: &mut dyn FnMut(&crmkit_core::model::LoyaltyProgram) -> bool) -> Result<()> {
        self.r.for_each::<crmkit_core::model::LoyaltyProgram>(|p| f(&p))
    }
    fn each_loyalty_card(&self, f: &mut dyn FnMut(&crmkit_core::model::LoyaltyCard) -> bool) -> Result<()> {
        self.each_readable(f)
    }
    fn each_claim(&self, f: &mut dyn FnMut(&crmkit_core::model::Claim) -> bool) -> Result<()> {
        self.each_readable(f)
    }
    fn each_loyalty_entry(&self, f: &mut dyn FnMut(&crmkit_core::model::LoyaltyEntry) -> bool) -> Result<()> {
        // The entries of the cards the head sees.
        let mut seen = std::collections::BTreeSet::new();
        self.each_loyalty_card(&mut |c| {
            seen.insert(c.id);
            true
        })?;
        self.r.for_each::<crmkit_core::model::LoyaltyEntry>(|e| !seen.contains(&e.card) || f(&e))
    }
    fn each_task(&self, f: &mut dyn FnMut(&crmkit_core::model::Task) -> bool) -> Result<()> {
        let mut failed = None;
        self.r.for_each::<crmkit_core::model::Task>(|t| {
            let seen = match t.deal {
                Some(deal) => match self.sees_id(deal) {
                    Ok(seen) => seen,
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                },
                None => self.covered.contains(&t.executor),
            };
            !seen || f(&t)
        })?;
        failed.map_or(Ok(()), Err)
    }
    fn scan_tasks(&self, f: &mut dyn FnMut(&crmkit_core::store::TaskRow) -> bool) -> Result<()> {
        // As `each_task`: the tasks of a deal the head sees, and those of no deal that one
        // of the department does.
        self.scan_seen(&mut |g| self.r.scan_tasks(g), &|t| t.deal, &|t| self.covered.contains(&t.executor), f)
    }
    fn covers(&self, user: UserId) -> bool {
        self.covered.contains(&user)
    }
    fn each_user(&self, f: &mut dyn FnMut(&User) -> bool) -> Result<()> {
        crmkit_core::process::View::each_user(self.r, f)
    }
    fn funnel_totals(
        &self,
        kind: Option<&str>,
    ) -> Result<std::collections::BTreeMap<crmkit_core::store::FunnelKey, crmkit_core::store::FunnelTotals>> {
        // The lines of the department's managers: a head's funnel adds up theirs.
        let mut lines = self.r.funnel_totals(kind)?;
        lines.retain(|k, _| self.covered.contains(&k.manager));
        Ok(lines)
    }
    fn funnel_rollup(
        &self,
        _kind: Option<&str>,
    ) -> Result<Option<std::collections::BTreeMap<crmkit_core::store::FunnelRollupKey, crmkit_core::store::FunnelTotals>>>
    {
        // The rollup adds up every manager's deals, the department's and the others'.
        Ok(None)
    }
    fn settings(&self) -> &crmkit_core::config::Settings {
        self.r.settings()
    }
    fn now(&self) -> crmkit_core::time::Timestamp {
        self.r.now()
    }
}

impl<R: Reader> DepartmentView<'_, R> {
    /// Visits the records of kind `E` that hang off a deal the head sees (records of no
    /// deal are not a department's).
    fn each_of_deals<E: crmkit_core::model::Entity>(
        &self,
        deal_of: impl Fn(&E) -> Option<DealId>,
        f: &mut dyn FnMut(&E) -> bool,
    ) -> Result<()> {
        let mut failed = None;
        self.r.for_each::<E>(|e| match deal_of(&e).map(|d| self.sees_id(d)) {
            Some(Ok(true)) => f(&e),
            Some(Ok(false)) | None => true,
            Some(Err(err)) => {
                failed = Some(err);
                false
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crmkit_core::config::Settings;
    use crmkit_core::model::{DealStatus, InteractionKind, PartnerRole};
    use crmkit_core::process::View;
    use crmkit_core::store::Store;
    use crmkit_core::time::{SystemClock, Timestamp};
    use crmkit_core::values::{Currency, Money};

    use super::*;

    #[test]
    fn a_heads_scans_of_interactions_and_tasks_pass_what_the_walks_over_the_records_pass() {
        let store = Store::in_memory(Arc::new(Settings::builtin()), Arc::new(SystemClock)).unwrap();
        let user = |login: &str, role: Role, department: &str| {
            let mut u = User::new(login, login, role);
            u.department = Some(department.into());
            u
        };
        let (head, north, south, ids) = store
            .transact(None, |tx| {
                let head = tx.create(user("head", Role::Head, "north"))?;
                let north = tx.create(user("north", Role::Manager, "north"))?.id;
                let south = tx.create(user("south", Role::Manager, "south"))?.id;
                let partner = tx.create(Partner::new("Альфа", PartnerRole::Client))?.id;
                let mut ids = Vec::new();
                for manager in [north, south] {
                    let amount = Money::new(1000.into(), Currency::RUB);
                    let mut d =
                        Deal::new("Поставка", partner, "b2b_sale", Some("qualification".into()), manager, amount);
                    d.expected_close = chrono::NaiveDate::from_ymd_opt(2026, 6, 30);
                    let deal = tx.create(d)?;
                    assert_eq!(deal.status, DealStatus::InProgress);
                    let mut i = Interaction::new(InteractionKind::Call, Timestamp(1), partner, "Звонок");
                    i.deal = Some(deal.id);
                    let mut t = Task::new("Перезвонить", manager);
                    t.deal = Some(deal.id);
                    ids.push((tx.create(i)?.id, tx.create(t)?.id));
                    // Of no deal: an interaction (a head sees none) and a task (theirs if
                    // its executor is of the department).
                    let i = tx.create(Interaction::new(InteractionKind::Note, Timestamp(2), partner, "Заметка"))?;
                    let t = tx.create(Task::new("Отчёт", manager))?;
                    ids.push((i.id, t.id));
                }
                Ok((head, north, south, ids))
            })
            .unwrap();
        let r = store.read().unwrap();
        let caller = Caller { user: head, role: Role::Head };
        let view = DepartmentView::new(&r, &caller).unwrap();
        let (mut walked, mut scanned) = (Vec::new(), Vec::new());
        view.each_interaction(&mut |i| {
            walked.push(i.id);
            true
        })
        .unwrap();
        view.scan_interactions(&mut |i| {
            scanned.push(i.id);
            true
        })
        .unwrap();
        assert_eq!(walked, [ids[0].0], "the interaction of the north's deal");
        assert_eq!(scanned, walked);
        let (mut walked, mut scanned) = (Vec::new(), Vec::new());
        view.each_task(&mut |t| {
            walked.push((t.id, t.executor));
            true
        })
        .unwrap();
        view.scan_tasks(&mut |t| {
            scanned.push((t.id, t.executor));
            true
        })
        .unwrap();
        assert_eq!(walked, [(ids[0].1, north), (ids[1].1, north)], "the north's tasks, of its deal and of none");
        assert_eq!(scanned, walked);
        assert!(!scanned.iter().any(|(_, e)| *e == south));
    }
}
