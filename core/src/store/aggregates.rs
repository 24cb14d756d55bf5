//! The funnel totals: what the deals of each process kind, manager and stage add up to, kept
//! in their own table and brought up to date by every commit that writes a deal or a step of
//! its stage history, so that the unfiltered funnel and the forecast read a few keys instead
//! of every deal. Beside the lines of each manager, each kind has rollup lines — the same
//! lines summed over every manager — written by the same commit, so that a funnel of every
//! manager reads a few keys per stage whatever the number of managers. `crmkit check`
//! compares both with a naive recomputation.
//!
//! What one deal adds is a pure function of its record and its stage history
//! ([`contribution`]). A commit finds the deals it writes among its pending changes — records
//! of the deal table and steps of the stage history, whatever wrote them — and adds, per
//! deal, what it adds now less what it added in the committed state the transaction started
//! from. A write transaction's own reads of the totals add the same difference, so they see
//! its writes like every other read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::kv::{self, KvRead};
use super::postings::prefix_end;
use super::tables::{entity_table, Table, FUNNEL_TOTALS, STAGE_HISTORY};
use super::{Reader, Store, WriteTxn};
use crate::config::Settings;
use crate::id::{DealId, RawId, UserId};
use crate::model::{Deal, DealStatus, EntityKind, How, StageChange};
use crate::progress::{self, Meter, Progress};
use crate::values::Currency;
use crate::{Error, Result};

/// Sums per currency (a currency summing to zero is left out).
pub type Amounts = BTreeMap<Currency, Decimal>;

/// What a line of the totals is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunnelLine {
    /// Every deal of the kind and manager; `currencies` counts them per currency.
    Deals,
    /// The deals that entered at least one stage.
    Reached,
    /// The deals with a step that closed them as won (reopened since or not).
    Won,
    /// A stage: the deals that ever entered it, and those in it now.
    Stage(String),
}

/// The key of a line: process kind, the deal's current manager, the line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunnelKey {
    pub kind: String,
    pub manager: UserId,
    pub line: FunnelLine,
}

/// What the deals of a line add up to. Counts are signed so that differences add up too; a
/// stored line is never negative and never all zero (such a line is deleted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelTotals {
    /// The deals on the line (for a stage: the distinct deals that ever entered it).
    pub deals: i64,
    /// Their current amounts.
    pub amount: Amounts,
    /// Of them, those won now.
    pub won: i64,
    /// Of them, those lost now.
    pub lost: i64,
    /// Deals in the stage now, in progress or on hold (stage lines only).
    pub open: i64,
    /// Their amounts.
    pub open_amount: Amounts,
    /// Their amounts times their probabilities (Σ amount × probability / 100).
    pub weighted: Amounts,
    /// Σ probability / 100 over them.
    pub expected_wins: Decimal,
    /// The deals per currency of their amount (the `Deals` line only).
    pub currencies: BTreeMap<Currency, i64>,
}

impl FunnelTotals {
    /// Adds `other` (`sign` 1) or takes it away (`sign` -1).
    pub fn add(&mut self, other: &FunnelTotals, sign: i64) {
        let s = Decimal::from(sign);
        self.deals += sign * other.deals;
        self.won += sign * other.won;
        self.lost += sign * other.lost;
        self.open += sign * other.open;
        self.expected_wins += s * other.expected_wins;
        for (mine, theirs) in [
            (&mut self.amount, &other.amount),
            (&mut self.open_amount, &other.open_amount),
            (&mut self.weighted, &other.weighted),
        ] {
            for (c, a) in theirs {
                let v = mine.entry(*c).or_default();
                *v += s * *a;
                if v.is_zero() {
                    mine.remove(c);
                }
            }
        }
        for (c, n) in &other.currencies {
            let v = self.currencies.entry(*c).or_default();
            *v += sign * n;
            if *v == 0 {
                self.currencies.remove(c);
            }
        }
    }

    /// Whether the line adds nothing.
    pub fn is_zero(&self) -> bool {
        self.deals == 0
            && self.won == 0
            && self.lost == 0
            && self.open == 0
            && self.expected_wins.is_zero()
            && self.amount.is_empty()
            && self.open_amount.is_empty()
            && self.weighted.is_empty()
            && self.currencies.is_empty()
    }
}

impl fmt::Display for FunnelTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn sums(a: &Amounts) -> String {
            if a.is_empty() {
                return "0".into();
            }
            a.iter().map(|(c, v)| format!("{} {c}", v.normalize())).collect::<Vec<_>>().join(" + ")
        }
        write!(
            f,
            "deals {}, amount {}, won {}, lost {}, open {}, open amount {}, weighted {}, expected wins {}",
            self.deals,
            sums(&self.amount),
            self.won,
            self.lost,
            self.open,
            sums(&self.open_amount),
            sums(&self.weighted),
            self.expected_wins.normalize()
        )?;
        if !self.currencies.is_empty() {
            let per: Vec<String> = self.currencies.iter().map(|(c, n)| format!("{n} in {c}")).collect();
            write!(f, ", deals per currency {}", per.join(", "))?;
        }
        Ok(())
    }
}

/// The key of a rollup line: a process kind's line summed over every manager.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunnelRollupKey {
    pub kind: String,
    pub line: FunnelLine,
}

impl FunnelKey {
    /// The rollup line this line adds to.
    pub fn rollup(&self) -> FunnelRollupKey {
        FunnelRollupKey { kind: self.kind.clone(), line: self.line.clone() }
    }
}

impl fmt::Display for FunnelLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FunnelLine::Deals => write!(f, "all deals"),
            FunnelLine::Reached => write!(f, "deals that entered a stage"),
            FunnelLine::Won => write!(f, "deals won"),
            FunnelLine::Stage(s) => write!(f, "stage \"{s}\""),
        }
    }
}

impl fmt::Display for FunnelRollupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kind \"{}\", every manager, {}", self.kind, self.line)
    }
}

impl fmt::Display for FunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kind \"{}\", manager {}, {}", self.kind, self.manager, self.line)
    }
}

/// What one deal adds to the totals, given its stage history (steps in order). A deal
/// without steps (only a damaged store has one) counts as having entered the stage its
/// record names.
pub fn contribution(deal: &Deal, history: &[StageChange]) -> Vec<(FunnelKey, FunnelTotals)> {
    let money = deal.amount.currency;
    let amount = |a: &mut Amounts| {
        if !deal.amount.amount.is_zero() {
            a.insert(money, deal.amount.amount);
        }
    };
    let counted = |t: &mut FunnelTotals| {
        t.deals = 1;
        amount(&mut t.amount);
        t.won = i64::from(deal.status == DealStatus::Won);
        t.lost = i64::from(deal.status == DealStatus::Lost);
    };
    let mut lines: BTreeMap<FunnelLine, FunnelTotals> = BTreeMap::new();
    counted(lines.entry(FunnelLine::Deals).or_default());
    lines.get_mut(&FunnelLine::Deals).expect("inserted").currencies.insert(money, 1);
    let mut entered: BTreeSet<&str> = BTreeSet::new();
    let mut won = false;
    if history.is_empty() {
        entered.extend(deal.stage.as_deref());
    }
    for c in history {
        let enters = matches!(c.how, How::Create | How::Reopen) || c.from_stage != c.to_stage;
        if let (true, Some(s)) = (enters, c.to_stage.as_deref()) {
            entered.insert(s);
        }
        won |= c.how == How::Won;
    }
    if !entered.is_empty() {
        counted(lines.entry(FunnelLine::Reached).or_default());
    }
    for s in entered {
        counted(lines.entry(FunnelLine::Stage(s.to_string())).or_default());
    }
    if won {
        let t = lines.entry(FunnelLine::Won).or_default();
        counted(t);
    }
    if let (Some(s), DealStatus::InProgress | DealStatus::OnHold) = (&deal.stage, deal.status) {
        let t = lines.entry(FunnelLine::Stage(s.clone())).or_default();
        t.open = 1;
        amount(&mut t.open_amount);
        if let Some(p) = deal.probability {
            let share = Decimal::from(p) / Decimal::from(100);
            let w = deal.amount.amount * share;
            if !w.is_zero() {
                t.weighted.insert(money, w);
            }
            t.expected_wins = share;
        }
    }
    lines.into_iter().map(|(line, t)| (FunnelKey { kind: deal.kind.clone(), manager: deal.manager, line }, t)).collect()
}

/// Adds what `deal` contributes (`sign` 1) or takes it away (-1).
fn add_deal(into: &mut BTreeMap<FunnelKey, FunnelTotals>, deal: &Deal, history: &[StageChange], sign: i64) {
    for (k, t) in contribution(deal, history) {
        let line = into.entry(k).or_default();
        line.add(&t, sign);
    }
}

/// The rollup lines: what each line of the managers of a kind adds up to over every
/// manager (lines that add up to nothing are left out).
pub(super) fn rollup(lines: &BTreeMap<FunnelKey, FunnelTotals>) -> BTreeMap<FunnelRollupKey, FunnelTotals> {
    let mut out: BTreeMap<FunnelRollupKey, FunnelTotals> = BTreeMap::new();
    for (key, t) in lines {
        out.entry(key.rollup()).or_default().add(t, 1);
    }
    out.retain(|_, t| !t.is_zero());
    out
}

/// The first byte of a rollup line's key: no process kind id starts with it (an id starts
/// with a lowercase letter), so the rollup lines of every kind come first in the table,
/// apart from the lines of the managers.
const ROLLUP: u8 = 0;

/// The key prefix of a kind's lines of managers.
fn kind_prefix(kind: &str) -> Vec<u8> {
    let mut k = kind.as_bytes().to_vec();
    k.push(0);
    k
}

/// The key prefix of a kind's rollup lines (every kind's: `None`).
fn rollup_prefix(kind: Option<&str>) -> Vec<u8> {
    let mut k = vec![ROLLUP];
    if let Some(kind) = kind {
        k.extend_from_slice(&kind_prefix(kind));
    }
    k
}

/// Appends the line tag and, for a stage line, the stage id.
fn encode_line(k: &mut Vec<u8>, line: &FunnelLine) {
    match line {
        FunnelLine::Deals => k.push(0),
        FunnelLine::Reached => k.push(1),
        FunnelLine::Won => k.push(2),
        FunnelLine::Stage(s) => {
            k.push(3);
            k.extend_from_slice(s.as_bytes());
        }
    }
}

fn decode_line(b: &[u8]) -> Option<FunnelLine> {
    Some(match b.split_first()? {
        (0, []) => FunnelLine::Deals,
        (1, []) => FunnelLine::Reached,
        (2, []) => FunnelLine::Won,
        (3, s) => FunnelLine::Stage(std::str::from_utf8(s).ok()?.to_string()),
        _ => return None,
    })
}

/// The stored key of a manager's line: kind, 0, manager id, line tag, stage id.
fn encode_key(key: &FunnelKey) -> Vec<u8> {
    let mut k = kind_prefix(&key.kind);
    k.extend_from_slice(&key.manager.0.to_bytes());
    encode_line(&mut k, &key.line);
    k
}

/// The stored key of a rollup line: 0, kind, 0, line tag, stage id.
fn encode_rollup_key(key: &FunnelRollupKey) -> Vec<u8> {
    let mut k = rollup_prefix(Some(&key.kind));
    encode_line(&mut k, &key.line);
    k
}

/// A manager's line from its stored key.
fn decode_key(k: &[u8]) -> Option<FunnelKey> {
    let nul = k.iter().position(|b| *b == 0)?;
    let kind = std::str::from_utf8(&k[..nul]).ok()?.to_string();
    let rest = k.get(nul + 1..)?;
    let manager = UserId(RawId::from_bytes(rest.get(..16)?)?);
    Some(FunnelKey { kind, manager, line: decode_line(&rest[16..])? })
}

/// A rollup line from its stored key.
fn decode_rollup_key(k: &[u8]) -> Option<FunnelRollupKey> {
    let rest = k.strip_prefix(&[ROLLUP])?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let kind = std::str::from_utf8(&rest[..nul]).ok()?.to_string();
    Some(FunnelRollupKey { kind, line: decode_line(&rest[nul + 1..])? })
}

/// The stored lines with keys from `prefix` up to `end` (no end: to the end of the table),
/// through `r`'s raw reads, each key decoded by `decode_key`.
fn scan<K: Ord + fmt::Display>(
    r: &(impl Reader + ?Sized),
    prefix: &[u8],
    end: Option<Vec<u8>>,
    decode_key: fn(&[u8]) -> Option<K>,
) -> Result<BTreeMap<K, FunnelTotals>> {
    let mut out = BTreeMap::new();
    let mut err = None;
    r.kv_scan(
        FUNNEL_TOTALS,
        Bound::Included(prefix),
        end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
        false,
        &mut |k, v| {
            let line = decode_key(k)
                .ok_or_else(|| Error::Corrupt {
                    what: format!("funnel totals key {k:02x?}"),
                    message: "malformed".into(),
                })
                .and_then(|key| {
                    let t: FunnelTotals = decode(v, || format!("funnel totals of {key}"))?;
                    Ok((key, t))
                });
            match line {
                Ok((key, t)) => {
                    out.insert(key, t);
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        },
    )?;
    err.map_or(Ok(out), Err)
}

/// The stored lines of managers of one kind (all kinds: `None`), through `r`'s raw reads.
pub(super) fn stored(r: &(impl Reader + ?Sized), kind: Option<&str>) -> Result<BTreeMap<FunnelKey, FunnelTotals>> {
    match kind {
        Some(kind) => {
            let prefix = kind_prefix(kind);
            scan(r, &prefix, prefix_end(&prefix), decode_key)
        }
        // Every kind's: all that follows the rollup lines.
        None => scan(r, &[ROLLUP + 1], None, decode_key),
    }
}

/// The stored rollup lines of one kind (all kinds: `None`), through `r`'s raw reads.
pub(super) fn stored_rollup(
    r: &(impl Reader + ?Sized),
    kind: Option<&str>,
) -> Result<BTreeMap<FunnelRollupKey, FunnelTotals>> {
    let prefix = rollup_prefix(kind);
    scan(r, &prefix, prefix_end(&prefix), decode_rollup_key)
}

/// The committed state a write transaction started from, read as a [`Reader`].
struct Base<'a> {
    kv: &'a dyn KvRead,
    settings: &'a Settings,
    clock: &'a dyn crate::time::Clock,
}

impl Reader for Base<'_> {
    fn kv_get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(t, key)?)
    }
    fn kv_get_decoded(&self, t: Table, key: &[u8], decode: &kv::Decode<'_>) -> Result<Option<kv::Decoded>> {
        Ok(self.kv.get_decoded(t, key, decode)?)
    }
    fn kv_scan(
        &self,
        t: Table,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        reverse: bool,
        visit: kv::Visit<'_>,
    ) -> Result<()> {
        Ok(self.kv.scan(t, from, to, reverse, visit)?)
    }
    fn settings(&self) -> &Settings {
        self.settings
    }
    fn now(&self) -> crate::time::Timestamp {
        self.clock.now()
    }
}

impl WriteTxn<'_> {
    /// What the transaction's pending writes change in the totals: per line, what the
    /// deals it writes add now less what they added when it started (lines that do not
    /// change are left out).
    pub(super) fn funnel_changes(&self) -> Result<BTreeMap<FunnelKey, FunnelTotals>> {
        let deals = self.touched_deals();
        let deal_table = entity_table(EntityKind::Deal);
        let mut delta = BTreeMap::new();
        if deals.is_empty() {
            return Ok(delta);
        }
        let base = Base { kv: self.kv.base(), settings: &self.store.settings, clock: &*self.store.clock };
        for id in deals {
            let id = DealId(id);
            let in_base = base.kv.contains(deal_table, &id.0.to_bytes())?;
            if in_base {
                if let Some(old) = base.get_shared::<Deal>(id)? {
                    add_deal(&mut delta, &old, &base.stage_history(id)?, -1);
                }
            }
            if let Some(new) = self.get_shared::<Deal>(id)? {
                // A deal the committed state does not have has no steps there either (a
                // deal is deleted with its history): its steps are all pending, read
                // without a look at the backend (what keeps a bulk load's commit cheap).
                let history = if in_base { self.stage_history(id)? } else { self.pending_steps(id)? };
                add_deal(&mut delta, &new, &history, 1);
            }
        }
        delta.retain(|_, t| !t.is_zero());
        Ok(delta)
    }

    /// The deals the pending changes write: their records or steps of their histories.
    pub(super) fn touched_deals(&self) -> BTreeSet<RawId> {
        let mut deals: BTreeSet<RawId> = BTreeSet::new();
        for t in [entity_table(EntityKind::Deal), STAGE_HISTORY] {
            let mut last = None;
            for k in self.changes.tables[t.slot].keys() {
                if let Some(id) = k.get(..16).and_then(RawId::from_bytes) {
                    if last != Some(id) {
                        deals.insert(id);
                        last = Some(id);
                    }
                }
            }
        }
        deals
    }

    /// The pending steps of a deal's stage history, in order.
    pub(super) fn pending_steps(&self, deal: DealId) -> Result<Vec<StageChange>> {
        let prefix = deal.0.to_bytes().to_vec();
        let mut out = Vec::new();
        for (k, v) in self.changes.tables[STAGE_HISTORY.slot].range(prefix.clone()..) {
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(v) = v {
                out.push(decode(v, || format!("stage history of deal {deal}"))?);
            }
        }
        Ok(out)
    }

    /// Writes the totals the pending changes make, the lines of managers and the rollup
    /// lines they add to (called once, at commit).
    pub(super) fn write_funnel_changes(&mut self) -> Result<()> {
        let delta = self.funnel_changes()?;
        for (key, change) in rollup(&delta) {
            self.add_to_line(encode_rollup_key(&key), &key, &change)?;
        }
        for (key, change) in delta {
            self.add_to_line(encode_key(&key), &key, &change)?;
        }
        Ok(())
    }

    /// Adds `change` to the stored line under `k` (named `key`), deleting a line that adds
    /// up to nothing.
    fn add_to_line(&mut self, k: Vec<u8>, key: &dyn fmt::Display, change: &FunnelTotals) -> Result<()> {
        let mut line: FunnelTotals = match self.kv_get(FUNNEL_TOTALS, &k)? {
            Some(v) => decode(&v, || format!("funnel totals of {key}"))?,
            None => FunnelTotals::default(),
        };
        line.add(change, 1);
        if line.is_zero() {
            self.changes.delete(FUNNEL_TOTALS, k);
        } else {
            self.changes.put(FUNNEL_TOTALS, k, encode(&line));
        }
        Ok(())
    }

    /// Replaces the stored totals, lines of managers and rollup lines, with those the
    /// records and histories make (the migrations that introduce them).
    pub(super) fn rebuild_funnel_totals(&mut self) -> Result<()> {
        let mut keys = Vec::new();
        self.kv_scan(FUNNEL_TOTALS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, _| {
            keys.push(k.to_vec());
            true
        })?;
        for k in keys {
            self.changes.delete(FUNNEL_TOTALS, k);
        }
        let lines = recompute(self, &mut || {})?;
        for (key, line) in rollup(&lines) {
            self.changes.put(FUNNEL_TOTALS, encode_rollup_key(&key), encode(&line));
        }
        for (key, line) in lines {
            self.changes.put(FUNNEL_TOTALS, encode_key(&key), encode(&line));
        }
        Ok(())
    }
}

/// The totals computed from scratch: every deal's record with its stage history.
fn recompute(r: &impl Reader, each: &mut dyn FnMut()) -> Result<BTreeMap<FunnelKey, FunnelTotals>> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page: Vec<Deal> = r.list(after, 1024)?;
        for d in &page {
            add_deal(&mut out, d, &r.stage_history(d.id)?, 1);
            each();
        }
        match page.last() {
            Some(d) if page.len() == 1024 => after = Some(d.id),
            _ => break,
        }
    }
    out.retain(|_, t| !t.is_zero());
    Ok(out)
}

/// Adds `pending` to `lines`, leaving out the lines that then add up to nothing.
fn add_pending<K: Ord + Clone>(lines: &mut BTreeMap<K, FunnelTotals>, pending: BTreeMap<K, FunnelTotals>) {
    for (key, change) in pending {
        let line = lines.entry(key.clone()).or_default();
        line.add(&change, 1);
        if line.is_zero() {
            lines.remove(&key);
        }
    }
}

/// The stored lines of managers of `kind` (every kind: `None`) as `r` sees them, with a
/// write transaction's pending changes (`pending`).
pub(super) fn read_totals(
    r: &(impl Reader + ?Sized),
    kind: Option<&str>,
    mut pending: Option<BTreeMap<FunnelKey, FunnelTotals>>,
) -> Result<BTreeMap<FunnelKey, FunnelTotals>> {
    let mut lines = stored(r, kind)?;
    if let Some(pending) = &mut pending {
        pending.retain(|key, _| kind.is_none_or(|k| k == key.kind));
    }
    add_pending(&mut lines, pending.unwrap_or_default());
    Ok(lines)
}

/// The stored rollup lines of `kind` (every kind: `None`) as `r` sees them, with a write
/// transaction's pending changes of the lines of managers (`pending`).
pub(super) fn read_rollup(
    r: &(impl Reader + ?Sized),
    kind: Option<&str>,
    mut pending: Option<BTreeMap<FunnelKey, FunnelTotals>>,
) -> Result<BTreeMap<FunnelRollupKey, FunnelTotals>> {
    let mut lines = stored_rollup(r, kind)?;
    if let Some(pending) = &mut pending {
        pending.retain(|key, _| kind.is_none_or(|k| k == key.kind));
        add_pending(&mut lines, rollup(pending));
    }
    Ok(lines)
}

/// One line per difference between the `stored` lines and those the records make
/// (`expected`): the line, and both values.
fn differences<K: Ord + fmt::Display>(
    expected: &BTreeMap<K, FunnelTotals>,
    stored: &BTreeMap<K, FunnelTotals>,
    problems: &mut Vec<String>,
) {
    for (key, want) in expected {
        match stored.get(key) {
            Some(got) if got == want => {}
            Some(got) => problems.push(format!("funnel totals of {key}: stored {got}; the records say {want}")),
            None => problems.push(format!("funnel totals of {key}: missing; the records say {want}")),
        }
    }
    for (key, got) in stored.iter().filter(|(k, _)| !expected.contains_key(*k)) {
        problems.push(format!("funnel totals of {key}: stored {got}; the records say there is no such line"));
    }
}

impl Store {
    /// Checks the stored funnel totals, the lines of managers and the rollup lines, against
    /// a recomputation from every deal and its stage history; returns one line per
    /// difference, naming the line and both values.
    pub fn verify_funnel_totals(&self) -> Result<Vec<String>> {
        self.verify_funnel_totals_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_funnel_totals`], reporting its stage `"funnel totals"` to
    /// `progress`: the deals read.
    pub fn verify_funnel_totals_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Deal)?;
        let mut meter = Meter::start(progress, "funnel totals", total);
        let expected = recompute(&r, &mut || meter.add(1))?;
        let stored_lines = stored(&r, None)?;
        let stored_rollups = stored_rollup(&r, None)?;
        meter.finish();
        let mut problems = Vec::new();
        differences(&expected, &stored_lines, &mut problems);
        // A rollup line must be the sum of the kind's lines of every manager, as the records
        // make them.
        differences(&rollup(&expected), &stored_rollups, &mut problems);
        Ok(problems)
    }
}
