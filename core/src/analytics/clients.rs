//! The client classifications: ABC/XYZ (share of revenue, steadiness of monthly revenue)
//! and the BCG matrix (relative share against growth between two periods), for clients and
//! for the items sold on document lines; and the classes of every client at once, which the
//! dossier shows for one partner.
//!
//! Revenue is what 1C counts as sales: completed shipments (the sales documents, реализации),
//! by their date, in their own currency. Each currency is classified on its own: a client
//! paying in two currencies has a row, a class and a quadrant in each.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use super::funnel::escape;
use super::scope::dec;
use super::{column, split, Filter, Rows};
use crate::config::{AbcXyzSettings, BcgSettings};
use crate::hooks::View;
use crate::id::{DealId, IdMap, PartnerId};
use crate::model::{DocumentKind, DocumentState};
use crate::report::{ColumnType, Table};
use crate::store::{DealRow, DocumentRow};
use crate::values::Currency;

pub(super) const ABC_XYZ: &str = "clients by share of revenue (ABC: classes A, B, C covering 80/15/5% of it by default) and by the steadiness of their monthly revenue (XYZ: coefficient of variation up to 10%, 25%, above), revenue from completed shipments of the period, per currency";
pub(super) const BCG: &str = "clients and items sold in a BCG matrix: relative share (revenue over the largest client's or item's) against growth over the period before of the same length — star, cash cow, question mark, dog; revenue from completed shipments, per currency";

/// A month as (year, month).
type Month = (i32, u32);

fn month_of(d: NaiveDate) -> Month {
    (d.year(), d.month())
}

/// Which documents count: those of admitted deals when the filter names deals (kind,
/// manager, department), those of partners in the segment when it names one.
pub(super) struct DocScope {
    deals: Option<HashSet<DealId>>,
    partners: Option<HashSet<PartnerId>>,
}

impl DocScope {
    pub(super) fn new(view: &dyn View, filter: &Filter) -> Result<DocScope, String> {
        let scope = filter.deals(view)?;
        let deals = if filter.kind.is_some() || filter.manager.is_some() || filter.department.is_some() {
            let parts = split::fold(view, HashSet::new, |ids, d: &DealRow| {
                if scope.admits(d) {
                    ids.insert(d.id);
                }
                Ok(())
            })?;
            let mut parts = parts.into_iter();
            let mut ids = parts.next().unwrap_or_default();
            parts.for_each(|p| ids.extend(p));
            Some(ids)
        } else {
            None
        };
        // The segment's partners, looked up (and an unknown segment refused) by the filter.
        let partners = scope.partners.clone();
        Ok(DocScope { deals, partners })
    }

    /// Whether `d` is revenue the scope counts: a completed shipment dated `from..=to`
    /// (from the first day there is without `from`) that the scope admits.
    pub(super) fn counts(&self, d: &DocumentRow, from: Option<NaiveDate>, to: NaiveDate) -> bool {
        d.kind == DocumentKind::Shipment
            && d.state == DocumentState::Completed
            && d.date <= to
            && from.is_none_or(|f| d.date >= f)
            && self.admits(d.partner, d.deal)
    }

    pub(super) fn admits(&self, partner: PartnerId, deal: Option<DealId>) -> bool {
        self.partners.as_ref().is_none_or(|p| p.contains(&partner))
            && self.deals.as_ref().is_none_or(|ids| deal.is_some_and(|d| ids.contains(&d)))
    }
}

/// A client's revenue month by month: the months it had any, in order.
type Monthly = Vec<(Month, Decimal)>;

/// Revenue by client and currency, month by month.
type ByMonth = IdMap<(PartnerId, Currency), Monthly>;

/// A client to classify: its id, name, revenue in the period and revenue month by month.
type Classified = (PartnerId, String, Decimal, Monthly);

/// Adds `amount` to `month` of `monthly`. Shipments come mostly in date order: most add to
/// the last month or start the next.
fn add_month(monthly: &mut Monthly, month: Month, amount: Decimal) {
    match monthly.last_mut() {
        Some((m, v)) if *m == month => *v += amount,
        Some((m, _)) if *m > month => match monthly.binary_search_by(|(m, _)| m.cmp(&month)) {
            Ok(i) => monthly[i].1 += amount,
            Err(i) => monthly.insert(i, (month, amount)),
        },
        _ => monthly.push((month, amount)),
    }
}

/// Hands `f` a client's revenue in each month of `period`, in order: zero where it had none.
fn each_month(period: &[Month], monthly: &[(Month, Decimal)], mut f: impl FnMut(Decimal)) {
    let mut had = monthly.iter().peekable();
    for mo in period {
        while had.next_if(|(m, _)| m < mo).is_some() {}
        f(had.next_if(|(m, _)| m == mo).map_or(Decimal::ZERO, |(_, v)| *v));
    }
}

/// A dot of the BCG chart: its name, relative share, growth (none: new) and quadrant.
type Dot = (String, f64, Option<f64>, String);

/// The last day a report looks at: `to`, never after `as_of`; else `as_of`; else `today`.
pub(super) fn last_day(filter: &Filter, today: NaiveDate) -> NaiveDate {
    match (filter.to, filter.as_of) {
        (Some(t), Some(a)) => t.min(a),
        (Some(t), None) => t,
        (None, Some(a)) => a,
        (None, None) => today,
    }
}

/// Today by the installation's clock.
pub(super) fn today(view: &dyn View) -> NaiveDate {
    view.now().date()
}

/// Completed shipments dated `from..=to` that `scope` admits, by partner, currency and
/// month.
fn revenue(view: &dyn View, scope: &DocScope, from: Option<NaiveDate>, to: NaiveDate) -> Result<ByMonth, String> {
    let parts = split::fold_shipments(view, ByMonth::default, |clients, d: &DocumentRow| {
        if !scope.counts(d, from, to) {
            return Ok(());
        }
        let c = d.amount.currency;
        add_month(clients.entry((d.partner, c)).or_default(), month_of(d.date), d.amount.amount);
        Ok(())
    })?;
    let mut parts = parts.into_iter();
    let mut clients = parts.next().unwrap_or_default();
    for part in parts {
        for (key, months) in part {
            let mine = clients.entry(key).or_default();
            for (month, amount) in months {
                add_month(mine, month, amount);
            }
        }
    }
    Ok(clients)
}

/// The names of `ids`.
fn names(view: &dyn View, ids: &HashSet<PartnerId>) -> Result<HashMap<PartnerId, String>, String> {
    split::partner_names(view, ids)
}

/// A client's ABC/XYZ classification within its currency.
struct AbcXyz {
    pub revenue: Decimal,
    /// Share of the currency's revenue, percent (two decimals).
    pub share_pct: Decimal,
    /// The running share up to and including this client, percent (two decimals).
    pub cumulative_pct: Decimal,
    pub abc: char,
    /// The coefficient of variation of monthly revenue, percent (one decimal).
    pub cv_pct: Decimal,
    pub xyz: char,
    /// The months of the period with revenue.
    pub active: usize,
}

/// ABC then XYZ of every client of one currency. `clients` are (key, name, revenue, monthly
/// revenue); the months are those of `period` (zero where a client had none). A client is A while the share of
/// the clients before it (largest first) is below `a`, B while below `a + b`, else C — so
/// the client that crosses a boundary belongs to the class it starts in, and the largest
/// client is always A.
fn abc_xyz<K: Ord + Send + Sync>(
    mut clients: Vec<(K, String, Decimal, Monthly)>,
    period: &[Month],
    t: &AbcXyzSettings,
) -> Vec<(K, String, AbcXyz, Decimal)> {
    clients.retain(|c| c.2 > Decimal::ZERO);
    clients.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)).then_with(|| a.0.cmp(&b.0)));
    let total: Decimal = clients.iter().map(|c| c.2).sum();
    // The revenue of the clients before each one (the running sum), then each client
    // classified on its own, the list cut into a part per thread.
    let mut before = Decimal::ZERO;
    let befores: Vec<Decimal> = clients
        .iter()
        .map(|c| {
            let b = before;
            before += c.2;
            b
        })
        .collect();
    let one = |i: usize| {
        let (_, _, revenue, monthly) = &clients[i];
        let hundred = Decimal::ONE_HUNDRED;
        let before_pct = befores[i] * hundred / total;
        let abc = if before_pct < t.a {
            'A'
        } else if before_pct < t.a + t.b {
            'B'
        } else {
            'C'
        };
        let cv = cv_pct(period, monthly);
        let xyz = if cv <= t.x {
            'X'
        } else if cv <= t.y {
            'Y'
        } else {
            'Z'
        };
        let mean = (*revenue / Decimal::from(period.len().max(1) as u64)).round_dp(2);
        let mut active = 0;
        each_month(period, monthly, |m| active += usize::from(m > Decimal::ZERO));
        let c = AbcXyz {
            revenue: *revenue,
            share_pct: (*revenue * hundred / total).round_dp(2),
            cumulative_pct: ((befores[i] + *revenue) * hundred / total).round_dp(2),
            abc,
            cv_pct: cv,
            xyz,
            active,
        };
        (c, mean)
    };
    let classes = split::each(&split::ranges(clients.len()), |r| r.clone().map(one).collect::<Vec<_>>());
    clients
        .into_iter()
        .zip(classes.into_iter().flatten())
        .map(|((k, name, ..), (c, mean))| (k, name, c, mean))
        .collect()
}

/// Population standard deviation over mean of a client's monthly revenue (`monthly`) over
/// the months of `period`, in percent, to one decimal (0 when the mean is zero).
fn cv_pct(period: &[Month], monthly: &[(Month, Decimal)]) -> Decimal {
    // Most months of most clients are empty: zero without converting.
    let f = |m: Decimal| if m.is_zero() { 0.0 } else { m.to_f64().unwrap_or(0.0) };
    let n = period.len() as f64;
    let mut sum = 0.0;
    each_month(period, monthly, |m| sum += f(m));
    let mean = sum / n;
    if period.is_empty() || mean <= 0.0 {
        return Decimal::ZERO;
    }
    let mut squares = 0.0;
    each_month(period, monthly, |m| squares += (f(m) - mean) * (f(m) - mean));
    let var = squares / n;
    Decimal::try_from(var.sqrt() / mean * 100.0).unwrap_or_default().round_dp(1).normalize()
}

/// The months from `from` to `to`, both included.
fn months(from: NaiveDate, to: NaiveDate) -> Vec<Month> {
    let mut out = Vec::new();
    let mut m = month_of(from);
    while m <= month_of(to) {
        out.push(m);
        m = if m.1 == 12 { (m.0 + 1, 1) } else { (m.0, m.1 + 1) };
    }
    out
}

/// The ABC/XYZ report.
pub(super) fn run_abc_xyz(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = DocScope::new(view, filter)?;
    let to = last_day(filter, today(view));
    let clients = revenue(view, &scope, filter.from, to)?;
    let ids: HashSet<PartnerId> = clients.keys().map(|k| k.0).collect();
    let names = names(view, &ids)?;
    // Without `from`, the period starts with the first month anyone bought in.
    let first =
        filter.from.map(month_of).or_else(|| clients.values().filter_map(|m| m.first().map(|(mo, _)| *mo)).min());
    let period = match first {
        Some(f) => months(NaiveDate::from_ymd_opt(f.0, f.1, 1).unwrap_or(to), to),
        None => Vec::new(),
    };
    let mut by_currency: BTreeMap<Currency, Vec<Classified>> = BTreeMap::new();
    for ((p, c), m) in clients {
        let total = m.iter().map(|(_, v)| *v).sum();
        let name = names.get(&p).cloned().unwrap_or_else(|| p.to_string());
        by_currency.entry(c).or_default().push((p, name, total, m));
    }
    let t = &view.settings().analytics.abc_xyz;
    let columns = vec![
        column("currency", ColumnType::Text),
        column("partner", ColumnType::Text),
        column("name", ColumnType::Text),
        column("revenue", ColumnType::Decimal),
        column("share_pct", ColumnType::Decimal),
        column("cumulative_pct", ColumnType::Decimal),
        column("abc", ColumnType::Text),
        column("months", ColumnType::Int),
        column("months_with_revenue", ColumnType::Int),
        column("mean_monthly", ColumnType::Decimal),
        column("cv_pct", ColumnType::Decimal),
        column("xyz", ColumnType::Text),
        column("class", ColumnType::Text),
    ];
    let mut rows = Vec::new();
    for (currency, list) in by_currency {
        let classified = abc_xyz(list, &period, t);
        let row = |(p, name, c, mean): &(PartnerId, String, AbcXyz, Decimal)| {
            vec![
                Value::from(currency.to_string()),
                Value::from(p.to_string()),
                Value::from(name.clone()),
                dec(Some(c.revenue)),
                dec(Some(c.share_pct)),
                dec(Some(c.cumulative_pct)),
                Value::from(c.abc.to_string()),
                Value::from(period.len() as u64),
                Value::from(c.active as u64),
                dec(Some(*mean)),
                dec(Some(c.cv_pct)),
                Value::from(c.xyz.to_string()),
                Value::from(format!("{}{}", c.abc, c.xyz)),
            ]
        };
        // Written out a part per thread: a hundred thousand clients make a million values.
        let parts = split::each(&split::ranges(classified.len()), |r| classified[r.clone()].iter().map(row).collect());
        rows.extend(parts.into_iter().flat_map(|p: Vec<_>| p));
    }
    Ok((columns, rows))
}

/// The two periods of the BCG matrix: the current one (`from` to the last day; without
/// `from`, the twelve months ending with the last day) and the one of the same number of
/// days just before it.
fn bcg_periods(filter: &Filter, today: NaiveDate) -> ((NaiveDate, NaiveDate), (NaiveDate, NaiveDate)) {
    let to = last_day(filter, today);
    let from =
        filter.from.unwrap_or_else(|| to.checked_sub_months(Months::new(12)).and_then(|d| d.succ_opt()).unwrap_or(to));
    let days = (to - from).num_days() + 1;
    let prev_to = from.pred_opt().unwrap_or(from);
    let prev_from = from - chrono::Duration::days(days);
    ((from, to), (prev_from, prev_to))
}

/// A BCG quadrant.
pub fn quadrant(share_pct: Decimal, growth_pct: Option<Decimal>, t: &BcgSettings) -> &'static str {
    // No revenue before: new, so growing.
    let high_growth = growth_pct.is_none_or(|g| g >= t.growth);
    match (share_pct >= t.share, high_growth) {
        (true, true) => "star",
        (true, false) => "cash cow",
        (false, true) => "question mark",
        (false, false) => "dog",
    }
}

/// One line of the BCG matrix.
struct BcgLine {
    key: String,
    name: String,
    revenue: Decimal,
    previous: Decimal,
}

/// The BCG lines of one currency, largest first (then by previous revenue, name and key, so
/// that lines alike come in one order), with relative share, growth and quadrant.
fn bcg_rows(mut lines: Vec<BcgLine>, t: &BcgSettings) -> Vec<(BcgLine, Decimal, Option<Decimal>, &'static str)> {
    lines.sort_by(|a, b| {
        b.revenue
            .cmp(&a.revenue)
            .then_with(|| b.previous.cmp(&a.previous))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.key.cmp(&b.key))
    });
    let largest = lines.first().map(|l| l.revenue).unwrap_or_default();
    lines
        .into_iter()
        .map(|l| {
            let share = if largest > Decimal::ZERO {
                (l.revenue * Decimal::ONE_HUNDRED / largest).round_dp(2)
            } else {
                Decimal::ZERO
            };
            let growth = (l.previous > Decimal::ZERO)
                .then(|| ((l.revenue - l.previous) * Decimal::ONE_HUNDRED / l.previous).round_dp(2));
            let q = quadrant(share, growth, t);
            (l, share, growth, q)
        })
        .collect()
}

/// The BCG report.
pub(super) fn run_bcg(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = DocScope::new(view, filter)?;
    let ((from, to), (prev_from, _)) = bcg_periods(filter, today(view));
    // Months cannot split the periods (they need not start on the 1st): split by date.
    let (clients, items) = by_period(view, &scope, from, prev_from, to)?;
    let ids: HashSet<PartnerId> = clients.keys().filter_map(|k| k.0.parse().ok()).collect();
    let names = names(view, &ids)?;
    let t = &view.settings().analytics.bcg;
    let columns = vec![
        column("dimension", ColumnType::Text),
        column("currency", ColumnType::Text),
        column("key", ColumnType::Text),
        column("name", ColumnType::Text),
        column("revenue", ColumnType::Decimal),
        column("previous_revenue", ColumnType::Decimal),
        column("growth_pct", ColumnType::Decimal),
        column("relative_share_pct", ColumnType::Decimal),
        column("quadrant", ColumnType::Text),
    ];
    let mut rows = Vec::new();
    for (dimension, table) in [("client", clients), ("item", items)] {
        let mut by_currency: BTreeMap<Currency, Vec<BcgLine>> = BTreeMap::new();
        for ((key, c), (revenue, previous)) in table {
            let name = match key.parse::<PartnerId>() {
                Ok(p) if dimension == "client" => names.get(&p).cloned().unwrap_or_else(|| key.clone()),
                _ => key.clone(),
            };
            by_currency.entry(c).or_default().push(BcgLine { key, name, revenue, previous });
        }
        for (currency, lines) in by_currency {
            for (l, share, growth, q) in bcg_rows(lines, t) {
                rows.push(vec![
                    Value::from(dimension),
                    Value::from(currency.to_string()),
                    Value::from(l.key),
                    Value::from(l.name),
                    dec(Some(l.revenue)),
                    dec(Some(l.previous)),
                    dec(growth),
                    dec(Some(share)),
                    Value::from(q),
                ]);
            }
        }
    }
    Ok((columns, rows))
}

/// Revenue (current, previous) by client and by item.
type Split = HashMap<(String, Currency), (Decimal, Decimal)>;

/// Completed shipments of `prev_from..=to` split at `from` into the current and the
/// previous period, by client and by line item.
fn by_period(
    view: &dyn View,
    scope: &DocScope,
    from: NaiveDate,
    prev_from: NaiveDate,
    to: NaiveDate,
) -> Result<(Split, Split), String> {
    // Clients by id and items by currency then name while scanning (nothing allocated
    // per shipment but a new key), named after.
    type Items = HashMap<Currency, HashMap<String, (Decimal, Decimal)>>;
    let parts = split::fold_shipments(
        view,
        || (IdMap::<(PartnerId, Currency), (Decimal, Decimal)>::default(), Items::new()),
        |(clients, items), d: &DocumentRow| {
            if !scope.counts(d, Some(prev_from), to) {
                return Ok(());
            }
            let c = d.amount.currency;
            let current = d.date >= from;
            let add = |cell: &mut (Decimal, Decimal), a: Decimal| {
                if current {
                    cell.0 += a
                } else {
                    cell.1 += a
                }
            };
            add(clients.entry((d.partner, c)).or_default(), d.amount.amount);
            let items = items.entry(c).or_default();
            for l in d.lines() {
                let l = l.map_err(|e| e.to_string())?;
                let a = (l.qty * l.price).round_dp(c.minor_units());
                match items.get_mut(l.item) {
                    Some(cell) => add(cell, a),
                    None => add(items.entry(l.item.to_string()).or_default(), a),
                }
            }
            Ok(())
        },
    )?;
    let mut clients: Split = HashMap::new();
    let mut items: Split = HashMap::new();
    let sum = |cell: &mut (Decimal, Decimal), more: (Decimal, Decimal)| {
        cell.0 += more.0;
        cell.1 += more.1;
    };
    for (by_client, by_item) in parts {
        for ((partner, c), more) in by_client {
            sum(clients.entry((partner.to_string(), c)).or_default(), more);
        }
        for (c, named) in by_item {
            for (item, more) in named {
                sum(items.entry((item, c)).or_default(), more);
            }
        }
    }
    Ok((clients, items))
}

/// Every client's classes, for the dossier: ABC/XYZ over the twelve full months before
/// `today`'s month, BCG for those twelve months against the twelve before.
#[derive(Clone, Debug, Default)]
pub struct ClientClasses {
    /// The first and last day classified.
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub by_partner: HashMap<PartnerId, Vec<ClientClass>>,
}

/// One client's classes in one currency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientClass {
    pub currency: Currency,
    /// `A`, `B` or `C` then `X`, `Y` or `Z` (`AX`); none without revenue in the period.
    pub abc_xyz: Option<String>,
    /// Revenue in the period.
    pub revenue: Decimal,
    /// `star`, `cash cow`, `question mark` or `dog`.
    pub bcg: &'static str,
    /// The RFM scores (`535`) among the currency's clients; none without a purchase in
    /// the period.
    pub rfm: Option<String>,
    /// The RFM segment the scores name (`loyal`); none without a purchase in the period.
    pub rfm_segment: Option<&'static str>,
}

/// Classifies every client with revenue in the last twelve full months before `today` or
/// in the twelve before them: one pass over the revenue rows for ABC/XYZ and BCG, one for
/// the RFM scores of the twelve months.
pub fn client_classes(view: &dyn View, today: NaiveDate) -> Result<ClientClasses, String> {
    let first_of_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let to = first_of_month.pred_opt().unwrap_or(first_of_month);
    let from = first_of_month.checked_sub_months(Months::new(12)).unwrap_or(first_of_month);
    let prev_from = from.checked_sub_months(Months::new(12)).unwrap_or(from);
    let scope = DocScope { deals: None, partners: None };
    let monthly = revenue(view, &scope, Some(prev_from), to)?;
    let period = months(from, to);
    let settings = view.settings();
    let mut abc: BTreeMap<Currency, Vec<Classified>> = BTreeMap::new();
    let mut bcg: BTreeMap<Currency, Vec<BcgLine>> = BTreeMap::new();
    for ((p, c), m) in monthly {
        let mut current = Decimal::ZERO;
        each_month(&period, &m, |v| current += v);
        let previous: Decimal = m.iter().filter(|(mo, _)| *mo < month_of(from)).map(|(_, v)| *v).sum();
        abc.entry(c).or_default().push((p, p.to_string(), current, m));
        bcg.entry(c).or_default().push(BcgLine { key: p.to_string(), name: p.to_string(), revenue: current, previous });
    }
    let mut out = ClientClasses { period: Some((from, to)), by_partner: HashMap::new() };
    let mut rfm: HashMap<(PartnerId, Currency), (u8, u8, u8)> = HashMap::new();
    for (c, scored) in super::rfm::scores(view, &scope, Some(from), to)? {
        rfm.extend(scored.into_iter().map(|(p, _, r, f, m)| ((p, c), (r, f, m))));
    }
    let mut classes: HashMap<(PartnerId, Currency), String> = HashMap::new();
    for (c, list) in abc {
        for (p, _, cl, _) in abc_xyz(list, &period, &settings.analytics.abc_xyz) {
            classes.insert((p, c), format!("{}{}", cl.abc, cl.xyz));
        }
    }
    for (c, lines) in bcg {
        for (l, _, _, q) in bcg_rows(lines, &settings.analytics.bcg) {
            let Ok(p) = l.key.parse::<PartnerId>() else { continue };
            let scores = rfm.remove(&(p, c));
            out.by_partner.entry(p).or_default().push(ClientClass {
                currency: c,
                abc_xyz: classes.remove(&(p, c)),
                revenue: l.revenue,
                bcg: q,
                rfm: scores.map(|(r, f, m)| format!("{r}{f}{m}")),
                rfm_segment: scores.map(|(r, f, _)| super::rfm::segment(r, f)),
            });
        }
    }
    for v in out.by_partner.values_mut() {
        v.sort_by_key(|c| c.currency);
    }
    Ok(out)
}

/// The BCG table as an SVG chart: per dimension and currency, a matrix with relative share
/// across (0–100%) and growth up (clamped to −100%…+200%), the thresholds as lines, one
/// dot per line, named by a tooltip; the ten largest labelled.
pub(super) fn svg(table: &Table) -> Result<String, String> {
    let at = |name: &str| {
        table.columns().iter().position(|c| c.name == name).ok_or_else(|| format!("the table has no column {name}"))
    };
    let (dim, cur, name, share, growth, quad) =
        (at("dimension")?, at("currency")?, at("name")?, at("relative_share_pct")?, at("growth_pct")?, at("quadrant")?);
    let num = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let mut panels: Vec<(String, Vec<Dot>)> = Vec::new();
    for r in table.rows() {
        let title = format!("{} · {}", r[dim].as_str().unwrap_or_default(), r[cur].as_str().unwrap_or_default());
        if panels.last().is_none_or(|(t, _)| *t != title) {
            panels.push((title, Vec::new()));
        }
        let dot = (
            r[name].as_str().unwrap_or_default().to_string(),
            num(&r[share]).unwrap_or(0.0),
            num(&r[growth]),
            r[quad].as_str().unwrap_or_default().to_string(),
        );
        panels.last_mut().expect("pushed").1.push(dot);
    }
    const W: f64 = 720.0;
    const PLOT: f64 = 360.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 40.0;
    let panel_h = TOP + PLOT + 50.0;
    let height = 16.0 + panel_h * panels.len().max(1) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, "<title>BCG matrix</title>");
    let (gmin, gmax) = (-100.0f64, 200.0f64);
    let pw = W - LEFT - 30.0;
    let x_of = |s: f64| LEFT + s.clamp(0.0, 100.0) / 100.0 * pw;
    let colour = |q: &str| match q {
        "star" => "#daa520",
        "cash cow" => "#2e8b57",
        "question mark" => "#4682b4",
        _ => "#a0a0a0",
    };
    let mut y0 = 16.0;
    for (title, dots) in &panels {
        let y_of = |g: f64| y0 + TOP + (gmax - g.clamp(gmin, gmax)) / (gmax - gmin) * PLOT;
        let _ =
            writeln!(o, r#"<text x="8" y="{}" font-size="15" font-weight="bold">{}</text>"#, y0 + 20.0, escape(title));
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{}" width="{pw}" height="{PLOT}" fill="none" stroke="#000000"/>"##,
            y0 + TOP
        );
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle">relative share, % of the largest</text>"#,
            LEFT + pw / 2.0,
            y0 + TOP + PLOT + 32.0
        );
        let _ = writeln!(o, r#"<text x="8" y="{}">growth, %</text>"#, y0 + TOP - 6.0);
        for g in [gmin, 0.0, 100.0, gmax] {
            let _ = writeln!(o, r#"<text x="{}" y="{}" text-anchor="end">{g}</text>"#, LEFT - 6.0, y_of(g) + 4.0);
        }
        for s in [0.0, 50.0, 100.0] {
            let _ =
                writeln!(o, r#"<text x="{}" y="{}" text-anchor="middle">{s}</text>"#, x_of(s), y0 + TOP + PLOT + 16.0);
        }
        for (q, x, y) in [
            ("question mark", LEFT + 6.0, y0 + TOP + 16.0),
            ("star", LEFT + pw - 6.0, y0 + TOP + 16.0),
            ("dog", LEFT + 6.0, y0 + TOP + PLOT - 8.0),
            ("cash cow", LEFT + pw - 6.0, y0 + TOP + PLOT - 8.0),
        ] {
            let anchor = if x > LEFT + pw / 2.0 { "end" } else { "start" };
            let _ = writeln!(o, r#"<text x="{x}" y="{y}" text-anchor="{anchor}" fill="{}">{q}</text>"#, colour(q));
        }
        for (i, (label, s, g, q)) in dots.iter().enumerate() {
            let (x, y) = (x_of(*s), y_of(g.unwrap_or(gmax)));
            let _ = writeln!(
                o,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{}"><title>{}</title></circle>"#,
                colour(q),
                escape(&format!("{label}: share {s}%, growth {}", g.map_or("new".to_string(), |g| format!("{g}%"))))
            );
            if i < 10 {
                let _ = writeln!(
                    o,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                    x + 7.0,
                    y - 6.0,
                    escape(label)
                );
            }
        }
        y0 += panel_h;
    }
    o.push_str("</svg>\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcg_lines_alike_in_revenue_and_name_come_in_the_order_of_their_keys_whatever_order_they_came_in() {
        let line = |key: &str, revenue: i64| BcgLine {
            key: key.to_string(),
            name: "Транссистем".to_string(),
            revenue: Decimal::from(revenue),
            previous: Decimal::ZERO,
        };
        let t = BcgSettings { share: Decimal::from(50), growth: Decimal::from(10) };
        for lines in
            [vec![line("b", 200), line("a", 200), line("c", 400)], vec![line("a", 200), line("c", 400), line("b", 200)]]
        {
            let keys: Vec<String> = bcg_rows(lines, &t).into_iter().map(|(l, ..)| l.key).collect();
            assert_eq!(keys, ["c", "a", "b"]);
        }
    }
}
