//! The deal execution report: for the deals won in the period, what was ordered, invoiced,
//! paid and shipped against the amount won, what is still owed or undelivered, and what of
//! it is overdue by the documents' due dates — per manager, per partner and in total.
//!
//! Which documents count: orders and invoices once issued (issued, agreed or completed —
//! drafts and cancelled ones do not), payments and shipments once completed. A payment is
//! overdue by the invoices whose `due` day has passed: their sum less what was paid (paid
//! money settles the earliest invoices first); a shipment by the orders whose `due`
//! (delivery) day has passed, less what was shipped. Documents in another currency than
//! their deal's are left out.

use std::collections::HashSet;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::scope::{dec, fold_deals, Scope};
use super::{column, split, Filter, Rows};
use crate::hooks::View;
use crate::id::{DealId, IdMap, PartnerId, UserId};
use crate::model::{DealStatus, DocumentKind, DocumentState};
use crate::report::ColumnType;
use crate::store::{DealDocuments, DealHead};
use crate::values::Currency;

pub(super) const ABOUT: &str = "deals won in the period: amount won, ordered, invoiced, paid and shipped, what is left to pay and to ship, overdue payments and shipments by the documents' due dates, deals won after their expected close — per manager, per partner and in total";

/// A won deal.
struct Won {
    manager: UserId,
    partner: PartnerId,
    currency: Currency,
    amount: Decimal,
    won_late: bool,
}

/// A won deal's documents, summed.
#[derive(Default)]
struct Sums {
    ordered: Decimal,
    invoiced: Decimal,
    paid: Decimal,
    shipped: Decimal,
    /// Invoiced and ordered amounts whose due day has passed.
    invoices_due: Decimal,
    orders_due: Decimal,
}

/// Whose sums a row holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Manager(UserId),
    Partner(PartnerId),
    Total,
}

/// One row's sums.
#[derive(Default)]
struct Cell {
    name: String,
    deals: u64,
    won: Decimal,
    ordered: Decimal,
    invoiced: Decimal,
    paid: Decimal,
    shipped: Decimal,
    overdue_payment: Decimal,
    overdue_payment_deals: u64,
    overdue_shipment: Decimal,
    overdue_shipment_deals: u64,
    won_late: u64,
}

impl Cell {
    fn add(&mut self, o: &Cell) {
        self.deals += o.deals;
        self.won += o.won;
        self.ordered += o.ordered;
        self.invoiced += o.invoiced;
        self.paid += o.paid;
        self.shipped += o.shipped;
        self.overdue_payment += o.overdue_payment;
        self.overdue_payment_deals += o.overdue_payment_deals;
        self.overdue_shipment += o.overdue_shipment;
        self.overdue_shipment_deals += o.overdue_shipment_deals;
        self.won_late += o.won_late;
    }
}

impl Cell {
    /// Adds a won deal's documents (`docs`) to the cell.
    fn add_documents(&mut self, docs: &Sums) {
        let overdue_payment = (docs.invoices_due - docs.paid).max(Decimal::ZERO);
        let overdue_shipment = (docs.orders_due - docs.shipped).max(Decimal::ZERO);
        self.ordered += docs.ordered;
        self.invoiced += docs.invoiced;
        self.paid += docs.paid;
        self.shipped += docs.shipped;
        self.overdue_payment += overdue_payment;
        self.overdue_payment_deals += u64::from(overdue_payment > Decimal::ZERO);
        self.overdue_shipment += overdue_shipment;
        self.overdue_shipment_deals += u64::from(overdue_shipment > Decimal::ZERO);
    }
}

/// Sums by whom and currency.
type Cells = IdMap<(Who, Currency), Cell>;

/// The cells a won deal adds to: its manager's, its partner's and the total, in its
/// currency.
fn cells_of(d: &Won) -> [(Who, Currency); 3] {
    let c = d.currency;
    [(Who::Manager(d.manager), c), (Who::Partner(d.partner), c), (Who::Total, c)]
}

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = Scope::new(view, filter, view.now())?;
    let today: NaiveDate = scope.instant.date();
    // The won deals, then each one's place in one list.
    let won = fold_deals(view, &scope, Vec::new, |deals, d: &DealHead, closed| {
        if !scope.deal(d) {
            return Ok(());
        }
        let Some(win) = closed else { return Ok(()) };
        if win.status != DealStatus::Won || !scope.in_period(win.at) {
            return Ok(());
        }
        let won_late = d.expected_close.is_some_and(|e| win.at.date() > e);
        let deal = Won {
            manager: d.manager,
            partner: d.partner,
            currency: d.amount.currency,
            amount: d.amount.amount,
            won_late,
        };
        deals.push((d.id, deal));
        Ok(())
    })?;
    let won: Vec<(DealId, Won)> = won.into_iter().flatten().collect();
    let mut place: IdMap<DealId, u32> = IdMap::with_capacity_and_hasher(won.len(), Default::default());
    place.extend(won.iter().enumerate().map(|(i, (id, _))| (*id, i as u32)));

    // What the won deals' documents add up to, a deal's documents at a time (they come
    // together in its row); then what the deals themselves add, a range of them per thread.
    // Every cell only adds, so the parts merge in any order.
    let mut parts = split::fold(view, Cells::default, |cells, row: &DealDocuments| {
        let Some(d) = place.get(&row.deal).map(|at| &won[*at as usize].1) else { return Ok(()) };
        let mut docs = Sums::default();
        for doc in &row.documents {
            let issued = matches!(doc.state, DocumentState::Issued | DocumentState::Agreed | DocumentState::Completed);
            let counted = match doc.kind {
                DocumentKind::Order | DocumentKind::Invoice => issued,
                DocumentKind::Payment | DocumentKind::Shipment => doc.state == DocumentState::Completed,
                DocumentKind::Quote => false,
            };
            if !counted || doc.created_at > scope.instant || doc.amount.currency != d.currency {
                continue;
            }
            let a = doc.amount.amount;
            let passed = doc.due.is_some_and(|due| due < today);
            match doc.kind {
                DocumentKind::Order => {
                    docs.ordered += a;
                    if passed {
                        docs.orders_due += a;
                    }
                }
                DocumentKind::Invoice => {
                    docs.invoiced += a;
                    if passed {
                        docs.invoices_due += a;
                    }
                }
                DocumentKind::Payment => docs.paid += a,
                DocumentKind::Shipment => docs.shipped += a,
                DocumentKind::Quote => {}
            }
        }
        for key in cells_of(d) {
            cells.entry(key).or_default().add_documents(&docs);
        }
        Ok(())
    })?;
    parts.extend(split::each(&split::ranges(won.len()), |range| {
        let mut cells = Cells::default();
        for (_, d) in &won[range.clone()] {
            for key in cells_of(d) {
                let cell = cells.entry(key).or_default();
                cell.deals += 1;
                cell.won += d.amount;
                cell.won_late += u64::from(d.won_late);
            }
        }
        cells
    }));
    let mut parts = parts.into_iter();
    let mut sums = parts.next().unwrap_or_default();
    for part in parts {
        for (key, cell) in part {
            sums.entry(key).or_default().add(&cell);
        }
    }

    let partners: HashSet<PartnerId> = won.iter().map(|(_, d)| d.partner).collect();
    let names = split::partner_names(view, &partners)?;
    // (dimension, key, currency) and cell, each once; dimension 0 manager, 1 partner, 2 total.
    let mut rows: Vec<((u8, String, Currency), Cell)> = Vec::with_capacity(sums.len());
    for ((who, c), mut cell) in sums {
        let (dim, key, name) = match who {
            Who::Manager(m) => {
                let (login, name) = scope
                    .people
                    .get(&m)
                    .map_or_else(|| (m.to_string(), m.to_string()), |p| (p.login.clone(), p.name.clone()));
                (0u8, login, name)
            }
            Who::Partner(p) => (1, p.to_string(), names.get(&p).cloned().unwrap_or_else(|| p.to_string())),
            Who::Total => (2, String::new(), "all won deals".to_string()),
        };
        cell.name = name;
        rows.push(((dim, key, c), cell));
    }
    // Managers and partners by amount won (largest first), then name (the keys are
    // unique, so the order is total).
    rows.sort_unstable_by(|((da, ka, ca), a), ((db, kb, cb), b)| {
        da.cmp(db)
            .then_with(|| b.won.cmp(&a.won))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| ka.cmp(kb))
            .then_with(|| ca.cmp(cb))
    });
    let columns = vec![
        column("dimension", ColumnType::Text),
        column("key", ColumnType::Text),
        column("name", ColumnType::Text),
        column("currency", ColumnType::Text),
        column("won_deals", ColumnType::Int),
        column("won_amount", ColumnType::Decimal),
        column("ordered", ColumnType::Decimal),
        column("invoiced", ColumnType::Decimal),
        column("paid", ColumnType::Decimal),
        column("shipped", ColumnType::Decimal),
        column("to_pay", ColumnType::Decimal),
        column("to_ship", ColumnType::Decimal),
        column("overdue_payment", ColumnType::Decimal),
        column("overdue_payment_deals", ColumnType::Int),
        column("overdue_shipment", ColumnType::Decimal),
        column("overdue_shipment_deals", ColumnType::Int),
        column("won_after_expected_close", ColumnType::Int),
    ];
    let row = |((dim, key, currency), c): &((u8, String, Currency), Cell)| {
        let dim = *dim;
        vec![
            Value::from(["manager", "partner", "total"][dim as usize]),
            if dim == 2 { Value::Null } else { Value::from(key.clone()) },
            Value::from(c.name.clone()),
            Value::from(currency.to_string()),
            Value::from(c.deals),
            dec(Some(c.won)),
            dec(Some(c.ordered)),
            dec(Some(c.invoiced)),
            dec(Some(c.paid)),
            dec(Some(c.shipped)),
            dec(Some((c.invoiced - c.paid).max(Decimal::ZERO))),
            dec(Some((c.ordered - c.shipped).max(Decimal::ZERO))),
            dec(Some(c.overdue_payment)),
            Value::from(c.overdue_payment_deals),
            dec(Some(c.overdue_shipment)),
            Value::from(c.overdue_shipment_deals),
            Value::from(c.won_late),
        ]
    };
    // Written out a part per thread: a hundred thousand partners make two million values.
    let parts = split::each(&split::ranges(rows.len()), |r| rows[r.clone()].iter().map(row).collect::<Vec<_>>());
    Ok((columns, parts.into_iter().flatten().collect()))
}
