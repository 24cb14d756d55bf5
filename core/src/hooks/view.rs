//! What a handler may read besides its input: the store as the write being decided sees
//! it, behind an object-safe trait so native handlers, scripts and plugins read alike.

use std::collections::BTreeMap;

use crate::config::Settings;
use crate::id::{ContactId, DealId, PartnerId, TypedId, UserId};
use crate::model::{
    ContactPerson, Deal, Document, Interaction, LoyaltyCard, LoyaltyEntry, LoyaltyProgram, Partner, Plan, Role,
    StageChange, Task, User,
};
use crate::store::{
    DealDocuments, DealHead, DealRow, DocumentRow, FunnelKey, FunnelRollupKey, FunnelTotals, Index, InteractionRow,
    Reader, Snapshot, TaskRow,
};
use crate::time::Timestamp;
use crate::Result;

/// What a handler may read besides its input: the store as the write being decided sees
/// it. Object-safe, so scripts and plugins reach it through their host functions.
pub trait View {
    /// A partner.
    fn partner(&self, id: PartnerId) -> Result<Option<Partner>>;
    /// A deal.
    fn deal(&self, id: DealId) -> Result<Option<Deal>>;
    /// A contact person.
    fn contact(&self, id: ContactId) -> Result<Option<ContactPerson>>;
    /// A user.
    fn user(&self, id: UserId) -> Result<Option<User>>;
    /// The deals of a partner, oldest first.
    fn deals_of(&self, partner: PartnerId) -> Result<Vec<Deal>>;
    /// A deal's stage history, step by step.
    fn history(&self, deal: DealId) -> Result<Vec<StageChange>>;
    /// A deal's interactions, oldest first.
    fn interactions(&self, deal: DealId) -> Result<Vec<Interaction>>;
    /// A deal's documents, oldest first.
    fn documents(&self, deal: DealId) -> Result<Vec<Document>>;
    /// The active users with a role.
    fn users_with_role(&self, role: Role) -> Result<Vec<User>>;
    /// How many open tasks a user has.
    fn open_tasks(&self, user: UserId) -> Result<usize>;
    /// The user with a login.
    fn user_with_login(&self, login: &str) -> Result<Option<User>>;
    /// Visits every deal, oldest first, until `f` returns `false` (reports).
    fn each_deal(&self, f: &mut dyn FnMut(&Deal) -> bool) -> Result<()>;
    /// Deals after `after` (none: from the first), oldest first, at most `limit`.
    fn deals_page(&self, after: Option<DealId>, limit: usize) -> Result<Vec<Deal>>;
    /// Visits every step of every deal's stage history — deal by deal (oldest deal first),
    /// each deal's steps in order — until `f` returns `false`. One pass over the history as
    /// it is stored, holding one step at a time (reports).
    fn each_stage_change(&self, f: &mut dyn FnMut(&StageChange) -> bool) -> Result<()>;
    /// Visits every deal with its whole stage history as the scan layout keeps them (the
    /// fields reports group and sum by, not the full record), oldest first, until `f`
    /// returns `false`. One row at a time; the fastest way over every deal (reports).
    fn scan_deals(&self, f: &mut dyn FnMut(&DealRow) -> bool) -> Result<()>;
    /// Visits every deal's head — the fields reports group and sum by, and how the deal
    /// stands now, without its history — oldest first, until `f` returns `false`. One head
    /// at a time; the fastest way over every deal when the present state is enough (reports).
    fn scan_deal_heads(&self, f: &mut dyn FnMut(&DealHead) -> bool) -> Result<()>;
    /// An instant no step of any deal's history is after (none: no step yet): at it and
    /// later, every deal's head tells how the deal stands (reports).
    fn latest_step_at(&self) -> Result<Option<Timestamp>>;
    /// Visits every partner, oldest first, until `f` returns `false` (reports).
    fn each_partner(&self, f: &mut dyn FnMut(&Partner) -> bool) -> Result<()>;
    /// Visits every document, oldest first, until `f` returns `false` (reports).
    fn each_document(&self, f: &mut dyn FnMut(&Document) -> bool) -> Result<()>;
    /// Visits every document as the scan layout keeps it (what the reports over every
    /// document read, not the full record), oldest first, until `f` returns `false`. One
    /// row at a time; the fastest way over every document (reports).
    fn scan_documents(&self, f: &mut dyn FnMut(&DocumentRow) -> bool) -> Result<()>;
    /// Visits the documents of every deal that has any — kind, state, creation, due day and
    /// amount of each, oldest first — deal by deal in id order, until `f` returns `false`.
    /// One deal's row at a time; the fastest way over deals and their documents together
    /// (reports).
    fn scan_deal_documents(&self, f: &mut dyn FnMut(&DealDocuments) -> bool) -> Result<()>;
    /// Visits every completed shipment — the documents counted as revenue — as the scan
    /// layout keeps it (its document row), oldest first, until `f` returns `false`: the
    /// revenue without reading the other documents (reports).
    fn scan_shipments(&self, f: &mut dyn FnMut(&DocumentRow) -> bool) -> Result<()>;
    /// Visits every interaction, oldest first, until `f` returns `false` (reports).
    fn each_interaction(&self, f: &mut dyn FnMut(&Interaction) -> bool) -> Result<()>;
    /// Visits every interaction as the scan layout keeps it (kind, instant, partner, deal
    /// and author, not the full record), oldest first, until `f` returns `false`. One row at
    /// a time; the fastest way over every interaction (reports).
    fn scan_interactions(&self, f: &mut dyn FnMut(&InteractionRow) -> bool) -> Result<()>;
    /// Visits every task, oldest first, until `f` returns `false` (reports).
    fn each_task(&self, f: &mut dyn FnMut(&Task) -> bool) -> Result<()>;
    /// Visits every task as the scan layout keeps it (creation, executor, due date, status,
    /// deal and finish, not the full record), oldest first, until `f` returns `false`. One
    /// row at a time; the fastest way over every task (reports).
    fn scan_tasks(&self, f: &mut dyn FnMut(&TaskRow) -> bool) -> Result<()>;
    /// Visits every user, oldest first, until `f` returns `false` (reports).
    fn each_user(&self, f: &mut dyn FnMut(&User) -> bool) -> Result<()>;
    /// Whether the view covers `user`'s work: the deals they manage are among those it
    /// sees (every user but in a head of department's view: their department's). Reports
    /// that list people, idle ones too, list those it covers.
    fn covers(&self, user: UserId) -> bool {
        let _ = user;
        true
    }
    /// The funnel totals kept at write time for process kind `kind` (every kind: `None`):
    /// per kind, manager and line (all deals, those that entered a stage, those won, each
    /// stage), what the deals this view sees add up to. A report reads them instead of
    /// every deal where it needs no more.
    fn funnel_totals(&self, kind: Option<&str>) -> Result<BTreeMap<FunnelKey, FunnelTotals>>;
    /// The rollup lines of the funnel totals of `kind` (every kind: `None`): per kind and
    /// line, the lines of [`View::funnel_totals`] summed over every manager, kept at write
    /// time — a few lines per stage whatever the number of managers. `None` when this view
    /// sees the deals of some managers only (a department's): add up their lines instead.
    fn funnel_rollup(&self, kind: Option<&str>) -> Result<Option<BTreeMap<FunnelRollupKey, FunnelTotals>>>;
    /// Visits every sales plan stored (set over the API; config's `[[plans]]` are in
    /// [`View::settings`]), oldest first, until `f` returns `false` (reports).
    fn each_plan(&self, f: &mut dyn FnMut(&Plan) -> bool) -> Result<()>;
    /// Visits every loyalty program, oldest first, until `f` returns `false` (reports).
    fn each_loyalty_program(&self, f: &mut dyn FnMut(&LoyaltyProgram) -> bool) -> Result<()>;
    /// Visits every loyalty card the view sees (a head of department's: those its partners
    /// hold), oldest first, until `f` returns `false` (reports).
    fn each_loyalty_card(&self, f: &mut dyn FnMut(&LoyaltyCard) -> bool) -> Result<()>;
    /// Visits every entry of the ledgers of the cards the view sees, oldest first, until `f`
    /// returns `false` (reports).
    fn each_loyalty_entry(&self, f: &mut dyn FnMut(&LoyaltyEntry) -> bool) -> Result<()>;
    /// Visits every claim the view sees (a head of department's: those its people are
    /// responsible for or its partners made), oldest first, until `f` returns `false`
    /// (reports).
    fn each_claim(&self, f: &mut dyn FnMut(&crate::model::Claim) -> bool) -> Result<()>;
    /// The installation's config: process kinds and their stages, lists, limits.
    fn settings(&self) -> &Settings;
    /// Now, by the installation's clock: what "overdue" and "stuck now" are measured against.
    fn now(&self) -> Timestamp;
    /// The snapshot behind this view when it passes every row of it and several threads
    /// may read it at once, so that a report can split its scans across the machine's
    /// cores; `None`, the default, when it is read from the calling thread only (a write
    /// transaction's view) or filters what it passes (a department's).
    fn shared(&self) -> Option<&Snapshot> {
        None
    }
}

impl<R: Reader> View for R {
    fn partner(&self, id: PartnerId) -> Result<Option<Partner>> {
        self.get(id)
    }
    fn deal(&self, id: DealId) -> Result<Option<Deal>> {
        self.get(id)
    }
    fn contact(&self, id: ContactId) -> Result<Option<ContactPerson>> {
        self.get(id)
    }
    fn user(&self, id: UserId) -> Result<Option<User>> {
        self.get(id)
    }
    fn deals_of(&self, partner: PartnerId) -> Result<Vec<Deal>> {
        self.find(Index::DealByPartner, &partner.raw().to_bytes(), None, usize::MAX)
    }
    fn history(&self, deal: DealId) -> Result<Vec<StageChange>> {
        self.stage_history(deal)
    }
    fn interactions(&self, deal: DealId) -> Result<Vec<Interaction>> {
        self.find(Index::InteractionByDeal, &deal.raw().to_bytes(), None, usize::MAX)
    }
    fn documents(&self, deal: DealId) -> Result<Vec<Document>> {
        self.find(Index::DocumentByDeal, &deal.raw().to_bytes(), None, usize::MAX)
    }
    fn users_with_role(&self, role: Role) -> Result<Vec<User>> {
        let mut out = Vec::new();
        self.for_each::<User>(|u| {
            if u.active && u.roles.contains(&role) {
                out.push(u);
            }
            true
        })?;
        Ok(out)
    }
    fn each_deal(&self, f: &mut dyn FnMut(&Deal) -> bool) -> Result<()> {
        self.for_each::<Deal>(|d| f(&d))
    }
    fn deals_page(&self, after: Option<DealId>, limit: usize) -> Result<Vec<Deal>> {
        self.list(after, limit)
    }
    fn each_stage_change(&self, f: &mut dyn FnMut(&StageChange) -> bool) -> Result<()> {
        self.for_each_stage_change(|c| f(&c))
    }
    fn scan_deals(&self, f: &mut dyn FnMut(&DealRow) -> bool) -> Result<()> {
        Reader::scan_deals(self, f)
    }
    fn scan_deal_heads(&self, f: &mut dyn FnMut(&DealHead) -> bool) -> Result<()> {
        Reader::scan_deal_heads(self, f)
    }
    fn latest_step_at(&self) -> Result<Option<Timestamp>> {
        Reader::latest_step_at(self)
    }
    fn shared(&self) -> Option<&Snapshot> {
        Reader::snapshot(self)
    }
    fn each_partner(&self, f: &mut dyn FnMut(&Partner) -> bool) -> Result<()> {
        self.for_each::<Partner>(|p| f(&p))
    }
    fn each_document(&self, f: &mut dyn FnMut(&Document) -> bool) -> Result<()> {
        self.for_each::<Document>(|d| f(&d))
    }
    fn scan_documents(&self, f: &mut dyn FnMut(&DocumentRow) -> bool) -> Result<()> {
        Reader::scan_documents(self, f)
    }
    fn scan_shipments(&self, f: &mut dyn FnMut(&DocumentRow) -> bool) -> Result<()> {
        Reader::scan_shipments(self, f)
    }
    fn scan_deal_documents(&self, f: &mut dyn FnMut(&DealDocuments) -> bool) -> Result<()> {
        Reader::scan_deal_documents(self, f)
    }
    fn each_interaction(&self, f: &mut dyn FnMut(&Interaction) -> bool) -> Result<()> {
        self.for_each::<Interaction>(|i| f(&i))
    }
    fn scan_interactions(&self, f: &mut dyn FnMut(&InteractionRow) -> bool) -> Result<()> {
        Reader::scan_interactions(self, f)
    }
    fn each_task(&self, f: &mut dyn FnMut(&Task) -> bool) -> Result<()> {
        self.for_each::<Task>(|t| f(&t))
    }
    fn scan_tasks(&self, f: &mut dyn FnMut(&TaskRow) -> bool) -> Result<()> {
        Reader::scan_tasks(self, f)
    }
    fn each_user(&self, f: &mut dyn FnMut(&User) -> bool) -> Result<()> {
        self.for_each::<User>(|u| f(&u))
    }
    fn funnel_totals(&self, kind: Option<&str>) -> Result<BTreeMap<FunnelKey, FunnelTotals>> {
        Reader::funnel_totals(self, kind)
    }
    fn funnel_rollup(&self, kind: Option<&str>) -> Result<Option<BTreeMap<FunnelRollupKey, FunnelTotals>>> {
        Reader::funnel_rollup(self, kind).map(Some)
    }
    fn each_plan(&self, f: &mut dyn FnMut(&Plan) -> bool) -> Result<()> {
        self.for_each::<Plan>(|p| f(&p))
    }
    fn each_loyalty_program(&self, f: &mut dyn FnMut(&LoyaltyProgram) -> bool) -> Result<()> {
        self.for_each::<LoyaltyProgram>(|p| f(&p))
    }
    fn each_loyalty_card(&self, f: &mut dyn FnMut(&LoyaltyCard) -> bool) -> Result<()> {
        self.for_each::<LoyaltyCard>(|c| f(&c))
    }
    fn each_loyalty_entry(&self, f: &mut dyn FnMut(&LoyaltyEntry) -> bool) -> Result<()> {
        self.for_each::<LoyaltyEntry>(|e| f(&e))
    }
    fn each_claim(&self, f: &mut dyn FnMut(&crate::model::Claim) -> bool) -> Result<()> {
        self.for_each::<crate::model::Claim>(|c| f(&c))
    }
    fn settings(&self) -> &Settings {
        Reader::settings(self)
    }
    fn now(&self) -> Timestamp {
        Reader::now(self)
    }
    fn user_with_login(&self, login: &str) -> Result<Option<User>> {
        Reader::user_by_login(self, login)
    }
    fn open_tasks(&self, user: UserId) -> Result<usize> {
        let prefix = crate::model::task_executor_prefix(user, crate::model::TaskStatus::Open);
        Ok(self.ids_by(Index::TaskByExecutor, &prefix, None, usize::MAX)?.len())
    }
}
