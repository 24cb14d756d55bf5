//! The lost-deals report: the deals lost in the period, cut by reason, stage reached,
//! competitor, manager, process kind and month, with the lost amount and the time to loss —
//! every cut in one long table so it prints, exports and charts like any other report.

use std::collections::{BTreeMap, HashMap};

use chrono::Datelike;
use rust_decimal::Decimal;
use serde_json::Value;

use super::scope::{dec, fold_deals, median_mean_days, percent, Scope};
use super::{column, Filter, Rows};
use crate::hooks::View;
use crate::id::{DealId, IdMap, PartnerId, UserId};
use crate::model::DealStatus;
use crate::report::ColumnType;
use crate::store::DealHead;
use crate::time::Timestamp;
use crate::values::Currency;

/// The cuts, in the order their rows come.
const DIMENSIONS: [&str; 7] = ["total", "reason", "stage", "competitor", "manager", "kind", "month"];

/// What one cut's value gathers: its deals, amount and times to loss.
#[derive(Default)]
struct Cell {
    value: String,
    /// Where the value sorts in its cut when the cut has a natural order (stages, months).
    order: Option<(usize, usize)>,
    deals: u64,
    amount: Decimal,
    to_loss_ms: Vec<i64>,
}

/// A deal's place in one cut, before it is named: cheap to hash, so that the pass over
/// every deal allocates only for values it has not seen. Texts are interned.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// The cut's "none" (no reason, no stage, no competitor) or the total.
    Nothing,
    Text(u32),
    Partner(PartnerId),
    User(UserId),
    /// `year * 12 + month0`.
    Month(i32),
}

/// What one cut's value gathers before it is named.
#[derive(Default)]
struct Acc {
    deals: u64,
    amount: Decimal,
    to_loss_ms: Vec<i64>,
    /// The position in config of the process kind of the newest deal counted (a stage's
    /// name and order are that kind's), and that deal.
    kind: Option<usize>,
    newest: Option<DealId>,
}

impl Acc {
    fn absorb(&mut self, other: Acc) {
        self.deals += other.deals;
        self.amount += other.amount;
        self.to_loss_ms.extend(other.to_loss_ms);
        if other.newest > self.newest {
            (self.kind, self.newest) = (other.kind, other.newest);
        }
    }
}

/// Texts seen in the pass, each stored once.
#[derive(Default)]
struct Interned {
    ids: HashMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
}

impl Interned {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }
}

/// One thread's share of the pass over the deals.
#[derive(Default)]
struct Pass {
    /// Keyed by ids and interned numbers, never by text: hashed cheaply.
    accs: IdMap<(u8, Key, Currency), Acc>,
    texts: Interned,
    total: u64,
}

impl Pass {
    /// Adds another thread's share, its texts renumbered into this one's.
    fn absorb(&mut self, other: Pass) {
        self.total += other.total;
        let texts = other.texts.texts;
        for ((dim, key, currency), acc) in other.accs {
            let key = match key {
                Key::Text(id) => Key::Text(self.texts.id(&texts[id as usize])),
                k => k,
            };
            self.accs.entry((dim, key, currency)).or_default().absorb(acc);
        }
    }
}

/// A value's name in one cut: its id (none where it has none), its name, and where it
/// sorts when the cut has a natural order.
type Cut = (Option<String>, String, Option<(usize, usize)>);

/// Runs the report.
pub(super) fn run(view: &dyn View, filter: &Filter) -> Result<Rows, String> {
    let scope = Scope::new(view, filter, Timestamp(i64::MAX))?;
    let settings = view.settings();
    let passes = fold_deals(view, &scope, Pass::default, |pass: &mut Pass, d: &DealHead, closed| {
        if !scope.deal(d) {
            return Ok(());
        }
        let Some(loss) = closed else { return Ok(()) };
        if loss.status != DealStatus::Lost || !scope.in_period(loss.at) {
            return Ok(());
        }
        let Pass { accs, texts, total } = pass;
        *total += 1;
        let kind = settings.process_kinds.iter().position(|k| k.id == d.kind);
        let text = |t: Option<&str>, texts: &mut Interned| t.map_or(Key::Nothing, |t| Key::Text(texts.id(t)));
        // The deal records the competitor of its last loss only.
        let competitor = d.competitor.filter(|_| !loss.lost_again && d.status == DealStatus::Lost);
        let date = loss.at.date();
        let keys = [
            Key::Nothing,
            text(loss.note, texts),
            text(loss.stage, texts),
            competitor.map_or(Key::Nothing, Key::Partner),
            Key::User(d.manager),
            Key::Text(texts.id(&d.kind)),
            Key::Month(date.year() * 12 + date.month0() as i32),
        ];
        for (dim, key) in keys.into_iter().enumerate() {
            let acc = accs.entry((dim as u8, key, d.amount.currency)).or_default();
            acc.deals += 1;
            acc.amount += d.amount.amount;
            acc.to_loss_ms.push(loss.at.0 - d.created_at.0);
            if Some(d.id) > acc.newest {
                (acc.kind, acc.newest) = (kind, Some(d.id));
            }
        }
        Ok(())
    })?;
    let mut passes = passes.into_iter();
    let mut pass = passes.next().unwrap_or_default();
    for other in passes {
        pass.absorb(other);
    }
    let Pass { accs, texts, total } = pass;

    // Each value named.
    let mut competitors: HashMap<PartnerId, String> = HashMap::new();
    let mut cells: BTreeMap<(usize, Option<String>, Currency), Cell> = BTreeMap::new();
    for ((dim, key, currency), acc) in accs {
        let dim = usize::from(dim);
        let spec = acc.kind.map(|k| &settings.process_kinds[k]);
        let kind_position = acc.kind.unwrap_or(usize::MAX);
        let text = |k: Key| match k {
            Key::Text(id) => Some(&*texts.texts[id as usize]),
            _ => None,
        };
        let (id, value, order): Cut = match (DIMENSIONS[dim], key) {
            ("total", _) => (None, "all lost deals".into(), None),
            ("reason", Key::Nothing) => (None, "(no reason recorded)".into(), None),
            ("reason", k) => {
                let r = text(k).unwrap_or_default();
                let name = settings.lists.loss_reasons.items.iter().find(|i| i.id == r).map_or(r, |i| &i.name);
                (Some(r.to_string()), name.to_string(), None)
            }
            ("stage", Key::Nothing) => (None, "(no stage)".into(), Some((kind_position, usize::MAX))),
            ("stage", k) => {
                let s = text(k).unwrap_or_default();
                let position = spec.and_then(|k| k.stages.iter().position(|st| st.id == s));
                let name = spec.and_then(|k| k.stage(s)).map_or(s, |st| st.name.as_str());
                (Some(s.to_string()), name.to_string(), Some((kind_position, position.unwrap_or(usize::MAX))))
            }
            ("competitor", Key::Partner(id)) => {
                let name = match competitors.get(&id) {
                    Some(n) => n.clone(),
                    None => {
                        let n = view.partner(id).map_err(|e| e.to_string())?.map_or_else(|| id.to_string(), |p| p.name);
                        competitors.insert(id, n.clone());
                        n
                    }
                };
                (Some(id.to_string()), name, None)
            }
            ("competitor", _) => (None, "(none recorded)".into(), None),
            ("manager", Key::User(m)) => {
                let (login, name) = scope
                    .people
                    .get(&m)
                    .map_or_else(|| (m.to_string(), m.to_string()), |p| (p.login.clone(), p.name.clone()));
                (Some(login), name, None)
            }
            ("kind", k) => {
                let id = text(k).unwrap_or_default();
                (Some(id.to_string()), spec.map_or_else(|| id.to_string(), |k| k.name.clone()), None)
            }
            (_, Key::Month(m)) => {
                let month = format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1);
                (Some(month.clone()), month, None)
            }
            (cut, _) => unreachable!("no {cut} key of this shape"),
        };
        let cell = Cell { value, order, deals: acc.deals, amount: acc.amount, to_loss_ms: acc.to_loss_ms };
        cells.insert((dim, id, currency), cell);
    }

    // Within a cut: stages in route order, months in time order, the rest by deals (over
    // every currency) then name; the currencies of a value together.
    let mut per_key: HashMap<(usize, Option<String>), u64> = HashMap::new();
    for ((dim, key, _), cell) in &cells {
        *per_key.entry((*dim, key.clone())).or_default() += cell.deals;
    }
    let mut rows: Vec<_> = cells.into_iter().collect();
    rows.sort_by(|((da, ka, ca), a), ((db, kb, cb), b)| {
        let rank = |dim: usize, key: &Option<String>, cell: &Cell| {
            let deals = per_key[&(dim, key.clone())];
            (cell.order.unwrap_or((0, 0)), if DIMENSIONS[dim] == "month" { 0 } else { u64::MAX - deals })
        };
        da.cmp(db)
            .then_with(|| rank(*da, ka, a).cmp(&rank(*db, kb, b)))
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| ka.cmp(kb))
            .then_with(|| ca.cmp(cb))
    });
    let columns = vec![
        column("dimension", ColumnType::Text),
        column("key", ColumnType::Text),
        column("value", ColumnType::Text),
        column("currency", ColumnType::Text),
        column("deals", ColumnType::Int),
        column("share_pct", ColumnType::Decimal),
        column("amount", ColumnType::Decimal),
        column("median_days_to_loss", ColumnType::Decimal),
        column("mean_days_to_loss", ColumnType::Decimal),
    ];
    let rows = rows
        .into_iter()
        .map(|((dim, key, currency), mut cell)| {
            let (median, mean) = median_mean_days(&mut cell.to_loss_ms);
            vec![
                Value::from(DIMENSIONS[dim]),
                key.map_or(Value::Null, Value::from),
                Value::from(cell.value),
                Value::from(currency.to_string()),
                Value::from(cell.deals),
                dec(percent(cell.deals, total)),
                dec(Some(cell.amount)),
                dec(median),
                dec(mean),
            ]
        })
        .collect();
    Ok((columns, rows))
}
