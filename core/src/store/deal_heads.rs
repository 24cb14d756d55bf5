//! The deal heads: every deal's head — the fields the reports over every deal group and sum
//! by, and how the deal stands now if it is closed (won or lost: when, in which stage, with
//! which note) — in a narrow row of its own, a function of the deal's scan row
//! (`scan.rs`). The reports that ask how each deal stands now (lost deals, managers,
//! execution) read a head of about a hundred bytes per deal instead of the scan row with its
//! whole stage history, which is most of that row's bytes.
//!
//! A head holds at any instant from its deal's last step on ([`DealHead::closing_at`]); a
//! report asking about an earlier instant replays the history instead. A commit rewrites
//! the heads of the deals whose scan rows it rewrites, from those rows (encoded once), and
//! deletes those of the deals it deletes; a write transaction's own scans see its pending
//! writes. `crmkit check` compares every head with the one the deal's record and history
//! make.
//!
//! Layout (integers little-endian, a string is a LEB128 length and UTF-8 bytes, an optional
//! value a 0/1 byte then the value):
//!
//! ```text
//! version (1) · kind · partner (16) · status (1) · manager (16) · amount (Decimal, 16)
//! · currency (3) · expected_close? (i32 days from 0001-01-01) · competitor? (16)
//! · created_at (i64 ms) · last_step_at? (i64 ms) · closing?, being:
//! status (1) · at (i64 ms) · stage? · note?
//! ```

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::kv::KvError;
use super::rows::{self, put_opt_id, put_opt_str, put_opt_time, put_str, Cursor, PendingRows, Span, Texts};
use super::scan::{status, status_byte, DealRow};
use super::schema::LATEST_STEP;
use super::tables::{DEAL_HEADS, META};
use super::{Reader, Store, WriteTxn};
use crate::id::{DealId, PartnerId, RawId, UserId};
use crate::model::{Deal, DealStatus, EntityKind, StageChange};
use crate::progress::{self, Meter, Progress};
use crate::time::Timestamp;
use crate::values::{Currency, Money};
use crate::Result;

/// The head format this build writes.
const VERSION: u8 = 1;

/// How a deal stood at an instant when it was closed then (see [`closing`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Closing<'a> {
    pub status: DealStatus,
    /// When it was closed (the step that closed it last before the instant).
    pub at: Timestamp,
    /// The stage it was closed in.
    pub stage: Option<&'a str>,
    /// The closing step's note: the loss reason of a loss.
    pub note: Option<&'a str>,
    /// Whether the deal was closed as lost again after the instant: its competitor as the
    /// deal records it now belongs to that later loss.
    pub lost_again: bool,
}

/// Replays a deal's history (`steps`, in order) up to `instant`: how it stood then if it
/// was closed (won or lost). A step closes a deal when its status turns won or lost; a
/// reopening undoes it.
pub fn closing(steps: &[StageChange], instant: Timestamp) -> Option<Closing<'_>> {
    let mut state: Option<Closing> = None;
    for s in steps {
        let closes = s.to_status.is_closed() && s.from_status != Some(s.to_status);
        if s.at <= instant {
            if closes {
                state = Some(Closing {
                    status: s.to_status,
                    at: s.at,
                    stage: s.to_stage.as_deref(),
                    note: s.note.as_deref(),
                    lost_again: false,
                });
            } else if let Some(c) = state.as_mut() {
                c.status = s.to_status;
            }
        } else if closes && s.to_status == DealStatus::Lost {
            if let Some(c) = state.as_mut() {
                c.lost_again = true;
            }
        }
    }
    state.filter(|c| c.status.is_closed())
}

/// A deal's head: what the reports over every deal read of it, and how it stands now.
/// Decoding into a kept head reuses its strings.
#[derive(Clone, Debug, PartialEq)]
pub struct DealHead {
    pub id: DealId,
    pub kind: String,
    pub partner: PartnerId,
    pub status: DealStatus,
    pub manager: UserId,
    pub amount: Money,
    pub expected_close: Option<NaiveDate>,
    pub competitor: Option<PartnerId>,
    pub created_at: Timestamp,
    /// When the last step of its stage history was taken (none: it has no history, which
    /// only a damaged store shows).
    pub last_step_at: Option<Timestamp>,
    /// Whether the deal is closed now; the closing's fields are kept either way, so that
    /// a scan reuses their strings.
    closed: bool,
    close_status: DealStatus,
    close_at: Timestamp,
    close_stage: Option<String>,
    close_note: Option<String>,
}

impl Default for DealHead {
    fn default() -> DealHead {
        let zero = RawId::from_bytes(&[0; 16]).expect("16 bytes");
        DealHead {
            id: DealId(zero),
            kind: String::new(),
            partner: PartnerId(zero),
            status: DealStatus::InProgress,
            manager: UserId(zero),
            amount: Money { amount: Decimal::ZERO, currency: Currency::RUB },
            expected_close: None,
            competitor: None,
            created_at: Timestamp(0),
            last_step_at: None,
            closed: false,
            close_status: DealStatus::Won,
            close_at: Timestamp(0),
            close_stage: None,
            close_note: None,
        }
    }
}

impl DealHead {
    /// How the deal stands now if it is closed: its history replayed to the end of time.
    pub fn closing(&self) -> Option<Closing<'_>> {
        self.closed.then_some(Closing {
            status: self.close_status,
            at: self.close_at,
            stage: self.close_stage.as_deref(),
            note: self.close_note.as_deref(),
            lost_again: false,
        })
    }

    /// How the deal stood at `instant` if it was closed then, when the head tells it: at
    /// any instant from the deal's last step on (`Some`). `None`: an earlier instant, for
    /// which only the history (`closing` of its steps) tells.
    pub fn closing_at(&self, instant: Timestamp) -> Option<Option<Closing<'_>>> {
        self.last_step_at.is_none_or(|last| last <= instant).then(|| self.closing())
    }

    /// Fills the head from `row` (a deal's scan row), reusing its strings.
    pub fn fill(&mut self, row: &DealRow) {
        self.id = row.id;
        self.kind.clone_from(&row.kind);
        self.partner = row.partner;
        self.status = row.status;
        self.manager = row.manager;
        self.amount = row.amount;
        self.expected_close = row.expected_close;
        self.competitor = row.competitor;
        self.created_at = row.created_at;
        self.last_step_at = row.steps.last().map(|s| s.at);
        match closing(&row.steps, Timestamp(i64::MAX)) {
            Some(c) => {
                self.closed = true;
                self.close_status = c.status;
                self.close_at = c.at;
                set(&mut self.close_stage, c.stage);
                set(&mut self.close_note, c.note);
            }
            None => self.closed = false,
        }
    }

    /// The head `row` makes, encoded.
    pub fn encode(row: &DealRow) -> Vec<u8> {
        let mut head = DealHead::default();
        head.fill(row);
        head.to_bytes()
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(128);
        w.push(VERSION);
        put_str(&mut w, &self.kind);
        w.extend_from_slice(&self.partner.0.to_bytes());
        w.push(status_byte(self.status));
        w.extend_from_slice(&self.manager.0.to_bytes());
        w.extend_from_slice(&self.amount.amount.serialize());
        w.extend_from_slice(self.amount.currency.as_str().as_bytes());
        match self.expected_close {
            Some(d) => {
                w.push(1);
                w.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
            }
            None => w.push(0),
        }
        put_opt_id(&mut w, self.competitor.map(|p| p.0));
        w.extend_from_slice(&self.created_at.0.to_le_bytes());
        put_opt_time(&mut w, self.last_step_at);
        match self.closing() {
            Some(c) => {
                w.push(1);
                w.push(status_byte(c.status));
                w.extend_from_slice(&c.at.0.to_le_bytes());
                put_opt_str(&mut w, c.stage);
                put_opt_str(&mut w, c.note);
            }
            None => w.push(0),
        }
        w
    }

    /// Fills the head from the stored head of deal `id`, reusing its strings.
    pub(crate) fn decode_into(&mut self, id: DealId, bytes: &[u8]) -> std::result::Result<(), KvError> {
        self.decode_with(id, bytes, &mut Texts::default())
    }

    fn decode_with(&mut self, id: DealId, bytes: &[u8], texts: &mut Texts) -> std::result::Result<(), KvError> {
        let mut r = Cursor::new(bytes, "deal head", id.0, texts);
        let version = r.u8()?;
        if version != VERSION {
            return Err(r.corrupt(format!("unknown head format {version}")));
        }
        self.id = id;
        r.str_into(&mut self.kind)?;
        self.partner = PartnerId(r.id()?);
        self.status = status(&mut r)?;
        self.manager = UserId(r.id()?);
        let amount = r.decimal()?;
        self.amount = Money { amount, currency: r.currency(self.amount.currency)? };
        self.expected_close = if r.flag()? { Some(r.date("expected close")?) } else { None };
        self.competitor = r.opt_id()?.map(PartnerId);
        self.created_at = Timestamp(r.i64()?);
        self.last_step_at = r.opt_i64()?.map(Timestamp);
        self.closed = r.flag()?;
        if self.closed {
            self.close_status = status(&mut r)?;
            self.close_at = Timestamp(r.i64()?);
            r.opt_str_into(&mut self.close_stage)?;
            r.opt_str_into(&mut self.close_note)?;
        }
        r.end("closing")
    }
}

/// Sets `slot` to `text`, reusing the string it holds.
fn set(slot: &mut Option<String>, text: Option<&str>) {
    match (slot.as_mut(), text) {
        (Some(s), Some(t)) => {
            s.clear();
            s.push_str(t);
        }
        (_, t) => *slot = t.map(str::to_string),
    }
}

/// Visits every head in `span` that `r` sees, in deal id order, with `pending` heads in
/// place of the stored ones, until `f` returns `false`.
pub(super) fn scan(
    r: &(impl Reader + ?Sized),
    span: Span,
    pending: Option<PendingRows>,
    f: &mut dyn FnMut(&DealHead) -> bool,
) -> Result<()> {
    let mut head = DealHead::default();
    let mut texts = Texts::default();
    rows::scan(r, DEAL_HEADS, "deal head", span, pending, &mut |id, bytes| {
        head.decode_with(DealId(id), bytes, &mut texts)?;
        Ok(f(&head))
    })
}

/// The heads of pending deal rows (`deals`, as a commit writes them): a deleted deal's
/// as none, so that its stored head goes.
pub(super) fn heads_of(deals: &PendingRows) -> Result<PendingRows> {
    Ok(heads_and_latest(deals)?.0)
}

/// [`heads_of`], and the latest instant of a step among those deals' histories.
pub(super) fn heads_and_latest(deals: &PendingRows) -> Result<(PendingRows, Option<Timestamp>)> {
    let mut row = DealRow::default();
    let mut head = DealHead::default();
    let mut out = PendingRows::new();
    let mut latest = None;
    for (key, bytes) in deals {
        let value = match bytes {
            Some(bytes) => {
                let id = DealId(RawId::from_bytes(key).unwrap_or_default());
                row.decode_into(id, bytes)?;
                head.fill(&row);
                latest = latest.max(head.last_step_at);
                Some(head.to_bytes())
            }
            None => None,
        };
        out.insert(*key, value);
    }
    Ok((out, latest))
}

/// The stored bound on every step's instant (`meta.latest_step_at`), none before the first.
pub(super) fn latest_step(r: &(impl Reader + ?Sized)) -> Result<Option<Timestamp>> {
    read_latest_step(r.kv_get(META, LATEST_STEP)?)
}

/// The bound as `meta` holds it (`bytes`).
fn read_latest_step(bytes: Option<Vec<u8>>) -> Result<Option<Timestamp>> {
    let Some(bytes) = bytes else { return Ok(None) };
    let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| crate::Error::Corrupt {
        what: "meta.latest_step_at".to_string(),
        message: format!("{} bytes, not 8", bytes.len()),
    })?;
    Ok(Some(Timestamp(i64::from_be_bytes(bytes))))
}

/// Raises the stored bound to `latest` when that is later (the bound never falls: a
/// deleted deal's steps may leave it later than every step there is, which only sends some
/// reports to the histories).
pub(super) fn raise_latest_step(tx: &mut WriteTxn<'_>, latest: Option<Timestamp>) -> Result<()> {
    let Some(latest) = latest else { return Ok(()) };
    if read_latest_step(tx.kv.base().get(META, LATEST_STEP)?)?.is_none_or(|stored| stored < latest) {
        tx.changes.put(META, LATEST_STEP.to_vec(), latest.0.to_be_bytes().to_vec());
    }
    Ok(())
}

impl WriteTxn<'_> {
    /// The heads of the deals the pending changes write, as they stand in the transaction.
    pub(super) fn pending_deal_heads(&self) -> Result<PendingRows> {
        heads_of(&self.pending_deal_rows()?)
    }

    /// The bound on every step's instant as the transaction stands: the stored one, or
    /// the latest pending step when that is later.
    pub(super) fn pending_latest_step(&self) -> Result<Option<Timestamp>> {
        let stored = read_latest_step(self.kv.base().get(META, LATEST_STEP)?)?;
        Ok(stored.max(heads_and_latest(&self.pending_deal_rows()?)?.1))
    }
}

impl Store {
    /// Checks every stored deal head against the head the deal's record and history make;
    /// returns one line per difference, naming the deal.
    pub fn verify_deal_heads(&self) -> Result<Vec<String>> {
        self.verify_deal_heads_with_progress(&mut progress::ignore)
    }

    /// [`Store::verify_deal_heads`], reporting its stage `"deal heads"` to `progress`: the
    /// deals read.
    pub fn verify_deal_heads_with_progress(&self, progress: &mut dyn FnMut(Progress)) -> Result<Vec<String>> {
        let r = self.read()?;
        let total = r.count(EntityKind::Deal)?;
        let mut meter = Meter::start(progress, "deal heads", total);
        let mut row = DealRow::default();
        // The latest step of all, and its deal.
        let mut latest: Option<(Timestamp, DealId)> = None;
        let mut expected = |f: &mut dyn FnMut(RawId, Vec<u8>) -> Result<()>| {
            rows::each_record(&r, &mut |d: &Deal| {
                row.decode_into(d.id, &DealRow::encode(d, &r.stage_history(d.id)?))?;
                if let Some(last) = row.steps.last().filter(|s| latest.is_none_or(|(l, _)| s.at > l)) {
                    latest = Some((last.at, d.id));
                }
                f(d.id.0, DealHead::encode(&row))
            })
        };
        let misread = |id: RawId, got: &[u8]| match DealHead::default().decode_into(DealId(id), got) {
            Ok(()) => "differs from what its record and stage history make".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let mut problems = rows::verify(&r, DEAL_HEADS, "deal head", &mut meter, &mut expected, &misread)?;
        meter.finish();
        let stored = latest_step(&r);
        match (stored, latest) {
            (Err(e), _) => problems.push(format!("the latest step's instant cannot be read ({e})")),
            (Ok(stored), Some((at, deal))) if stored.is_none_or(|s| s < at) => problems.push(format!(
                "the latest step's instant ({}) is before the last step of deal {deal} ({at})",
                stored.map_or_else(|| "none".to_string(), |s| s.to_string())
            )),
            _ => {}
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::How;

    fn step(n: u32, at: i64, from: Option<DealStatus>, to: DealStatus, stage: &str, note: Option<&str>) -> StageChange {
        StageChange {
            deal: DealId(RawId(1)),
            step: n,
            at: Timestamp(at),
            actor: None,
            how: How::Manual,
            from_stage: None,
            to_stage: Some(stage.to_string()),
            from_status: from,
            to_status: to,
            dwell_ms: None,
            note: note.map(str::to_string),
            imported: false,
        }
    }

    #[test]
    fn a_head_tells_the_closing_from_the_last_step_on_and_defers_to_the_history_before() {
        use DealStatus::{InProgress, Lost, Won};
        // Created, lost at 20 in "proposal", reopened at 30, won at 40 in "contract".
        let steps = vec![
            step(0, 10, None, InProgress, "first", None),
            step(1, 20, Some(InProgress), Lost, "proposal", Some("price")),
            step(2, 30, Some(Lost), InProgress, "proposal", None),
            step(3, 40, Some(InProgress), Won, "contract", None),
        ];
        let mut row = DealRow::default();
        row.steps = steps.clone();
        row.kind = "b2b".into();
        let mut head = DealHead::default();
        head.decode_into(row.id, &DealHead::encode(&row)).unwrap();
        assert_eq!(head.last_step_at, Some(Timestamp(40)));
        let won = head.closing().unwrap();
        assert_eq!((won.status, won.at, won.stage, won.note), (Won, Timestamp(40), Some("contract"), None));
        assert_eq!(head.closing_at(Timestamp(40)), Some(closing(&steps, Timestamp(40))));
        assert_eq!(head.closing_at(Timestamp(i64::MAX)), Some(closing(&steps, Timestamp(i64::MAX))));
        assert_eq!(head.closing_at(Timestamp(39)), None, "before the last step the history tells");
        let lost = closing(&steps, Timestamp(25)).unwrap();
        assert_eq!((lost.status, lost.stage, lost.note), (Lost, Some("proposal"), Some("price")));
        assert_eq!(closing(&steps, Timestamp(35)), None, "reopened");

        // Decoding an open deal's head into the kept one clears the closing.
        let mut open = row.clone();
        open.steps.truncate(1);
        head.decode_into(open.id, &DealHead::encode(&open)).unwrap();
        assert_eq!(head.closing(), None);
        assert_eq!(head.closing_at(Timestamp(10)), Some(None));
        assert_eq!(head.kind, "b2b");

        // A head cut short or of an unknown format is refused, naming the deal.
        let bytes = DealHead::encode(&row);
        let err = head.decode_into(row.id, &bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("scan row of deal head") && err.contains("cut short"), "{err}");
        let mut other = bytes.clone();
        other[0] = 9;
        let err = head.decode_into(row.id, &other).unwrap_err().to_string();
        assert!(err.contains("unknown head format 9"), "{err}");
    }
}
