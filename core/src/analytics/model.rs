//! The built-in win-probability model: fitted from the closed deals' stage history (counts
//! per process kind, stage, manager, partner and configured field — never the deals), it
//! scores a deal by one of two methods (`[analytics.win_probability]`, docs/analytics.md): the win rate
//! onward from the deal's stage combined with its manager's and partner's (1C:ERP's way), or
//! naive Bayes over configured fields with Laplace smoothing (Odoo's predictive lead
//! scoring). Both answer log-odds contributions that sum to the score. It is also the native
//! `deal.score` handler [`HANDLER`], which keeps its fitted model for `refit_minutes`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::{ScoringMethod, WinProbability};
use crate::hooks::{Answer, Fault, Handler, HookInput, Hooks, Reply, Score, Subject};
use crate::id::{PartnerId, UserId};
use crate::model::{CustomFields, CustomValue, Deal, DealStatus, ScoreFactor, StageChange};
use crate::store::DealRow;
use crate::time::Timestamp;

/// The name the built-in model is registered under as a native `deal.score` handler.
pub const HANDLER: &str = "win_probability";

/// The value a deal without one shows for a field.
const NONE: &str = "(none)";

/// Makes the built-in model available to `[[hooks]]` bindings as the native handler
/// [`HANDLER`].
pub fn register(hooks: &mut Hooks) {
    hooks.register(HANDLER, WinProbabilityHandler::default());
}

/// Closed deals: how many were won and how many lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub won: u64,
    pub lost: u64,
}

impl Counts {
    fn add(&mut self, won: bool) {
        if won {
            self.won += 1;
        } else {
            self.lost += 1;
        }
    }

    /// Won and lost together.
    pub fn closed(&self) -> u64 {
        self.won + self.lost
    }
}

/// What the fit keeps of one process kind.
#[derive(Clone, Debug, Default)]
pub struct KindFit {
    /// Its closed deals.
    pub total: Counts,
    /// Per stage: the closed deals that reached it.
    pub stages: HashMap<String, Counts>,
    /// Per field other than the stage (`manager`, `partner`, the Bayes fields): per value.
    pub fields: HashMap<String, HashMap<String, Counts>>,
}

/// A deal's values of the fields the model reads, besides its stage: per field, the value
/// counted (a login, a partner's id, a band) and the value a factor shows (a partner's name).
#[derive(Clone, Debug, Default)]
pub struct Attributes(pub Vec<(String, String, Value)>);

/// A fitted model: counts per kind, with the settings it was fitted under.
#[derive(Clone, Debug)]
pub struct Model {
    pub settings: WinProbability,
    pub kinds: HashMap<String, KindFit>,
    /// When it was fitted (the engine's clock).
    pub fitted_at: Timestamp,
    /// The fields it reads of a deal besides the stage (from `settings`).
    fields: Vec<String>,
}

/// A score: the probability in percent (two decimals) and the factors, whose contributions
/// (log-odds, four decimals) sum to the logit of the probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub probability: f64,
    pub factors: Vec<ScoreFactor>,
}

/// How a deal stood at an instant, replayed from its history.
#[derive(Clone, Debug)]
pub struct Replayed<'a> {
    pub stage: Option<&'a str>,
    pub status: DealStatus,
    /// The stages it had reached, in order of first entry.
    pub reached: Vec<&'a str>,
    /// When it was last closed (its status turned won or lost), if it is closed.
    pub closed_at: Option<Timestamp>,
}

/// Replays `steps` (one deal's history, in order) up to `instant`; none when the deal did
/// not exist yet.
pub fn replay(steps: &[StageChange], instant: Timestamp) -> Option<Replayed<'_>> {
    let mut out: Option<Replayed> = None;
    for s in steps.iter().filter(|s| s.at <= instant) {
        let r = out.get_or_insert_with(|| Replayed {
            stage: None,
            status: s.to_status,
            reached: Vec::new(),
            closed_at: None,
        });
        if let Some(stage) = s.to_stage.as_deref() {
            if !r.reached.contains(&stage) {
                r.reached.push(stage);
            }
        }
        let closes = s.to_status.is_closed() && s.from_status != Some(s.to_status);
        if closes {
            r.closed_at = Some(s.at);
        } else if !s.to_status.is_closed() {
            r.closed_at = None;
        }
        r.stage = s.to_stage.as_deref();
        r.status = s.to_status;
    }
    out
}

/// Names the fit and the scoring read: users' logins, partners' names and segments.
pub trait Names {
    fn login(&self, user: UserId) -> Cow<'_, str>;
    /// A partner's name and segment.
    fn partner(&self, partner: PartnerId) -> Cow<'_, (String, Option<String>)>;
}

/// Names looked up one at a time in a view (scoring one deal).
pub struct LookUp<'a>(pub &'a dyn crate::hooks::View);

impl Names for LookUp<'_> {
    fn login(&self, user: UserId) -> Cow<'_, str> {
        Cow::Owned(match self.0.user(user) {
            Ok(Some(u)) => u.login,
            _ => user.to_string(),
        })
    }
    fn partner(&self, partner: PartnerId) -> Cow<'_, (String, Option<String>)> {
        Cow::Owned(match self.0.partner(partner) {
            Ok(Some(p)) => (p.name, p.segment),
            _ => (partner.to_string(), None),
        })
    }
}

/// Names read once for a whole scan: every user's login, and — when a field needs them —
/// every partner's name and segment.
pub struct Directory {
    logins: HashMap<UserId, String>,
    partners: HashMap<PartnerId, (String, Option<String>)>,
}

impl Directory {
    /// Reads the users, and the partners when `partners`.
    pub fn read(view: &dyn crate::hooks::View, partners: bool) -> Result<Directory, String> {
        let mut logins = HashMap::new();
        view.each_user(&mut |u| {
            logins.insert(u.id, u.login.clone());
            true
        })
        .map_err(|e| e.to_string())?;
        let mut names = HashMap::new();
        if partners {
            view.each_partner(&mut |p| {
                names.insert(p.id, (p.name.clone(), p.segment.clone()));
                true
            })
            .map_err(|e| e.to_string())?;
        }
        Ok(Directory { logins, partners: names })
    }
}

impl Names for Directory {
    fn login(&self, user: UserId) -> Cow<'_, str> {
        self.logins.get(&user).map_or_else(|| Cow::Owned(user.to_string()), |l| Cow::Borrowed(l.as_str()))
    }
    fn partner(&self, partner: PartnerId) -> Cow<'_, (String, Option<String>)> {
        self.partners.get(&partner).map_or_else(|| Cow::Owned((partner.to_string(), None)), Cow::Borrowed)
    }
}

/// The fields besides the stage a fit under `settings` counts: the manager and the partner
/// (the stages method), then the Bayes fields.
pub(super) fn fitted_fields(settings: &WinProbability) -> Vec<String> {
    let mut out = vec!["manager".to_string(), "partner".to_string()];
    for f in &settings.fields {
        if f != "stage" && !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// Whether the fields under `settings` need the partners' names or segments.
pub fn needs_partners(settings: &WinProbability) -> bool {
    settings.fields.iter().any(|f| f == "segment")
}

/// The text of a custom value, as a field's value.
fn custom_text(v: &CustomValue) -> String {
    match v {
        CustomValue::String(s) | CustomValue::Enum(s) => s.clone(),
        CustomValue::Number(n) => n.normalize().to_string(),
        CustomValue::Money(m) => format!("{} {}", m.amount.normalize(), m.currency),
        CustomValue::Date(d) => d.to_string(),
        CustomValue::Bool(b) => b.to_string(),
        CustomValue::Ref(r) => r.to_string(),
        CustomValue::EnumSet(items) => items.join("; "),
    }
}

/// The amount band `amount` falls in, given the bands' ascending upper bounds.
pub fn amount_band(amount: Decimal, bounds: &[Decimal]) -> String {
    match bounds.iter().position(|b| amount < *b) {
        Some(0) => format!("under {}", bounds[0].normalize()),
        Some(i) => format!("{} to {}", bounds[i - 1].normalize(), bounds[i].normalize()),
        None => format!("{} and above", bounds.last().copied().unwrap_or_default().normalize()),
    }
}

/// `text` cut to what a factor's value may hold.
fn shown(text: String) -> Value {
    Value::String(text.chars().take(crate::model::score::MAX_VALUE_TEXT).collect())
}

/// What the model reads of a deal: a stored record (scored live) or a scan row (fitting).
pub struct Facts<'a> {
    manager: UserId,
    partner: PartnerId,
    source: Option<&'a str>,
    amount: Decimal,
    custom: std::borrow::Cow<'a, CustomFields>,
}

impl<'a> Facts<'a> {
    /// The facts of a deal's record.
    pub fn of_deal(deal: &'a Deal) -> Facts<'a> {
        Facts {
            manager: deal.manager,
            partner: deal.partner,
            source: deal.source.as_deref(),
            amount: deal.amount.amount,
            custom: std::borrow::Cow::Borrowed(&deal.custom),
        }
    }

    /// The facts of a scan row; its custom fields are decoded only when `fields` name one.
    pub fn of_row(row: &'a DealRow, fields: &[String]) -> Result<Facts<'a>, String> {
        let custom = match fields.iter().any(|f| f.starts_with("custom.")) {
            true => row.custom().map_err(|e| e.to_string())?,
            false => CustomFields::new(),
        };
        Ok(Facts {
            manager: row.manager,
            partner: row.partner,
            source: row.source.as_deref(),
            amount: row.amount.amount,
            custom: std::borrow::Cow::Owned(custom),
        })
    }
}

/// Writes `deal`'s value of `field` — the value counted: a login, a partner's id, a
/// segment, a source, a band, a custom field's text — into `out`, cleared first.
fn key_into(out: &mut String, deal: &Facts<'_>, field: &str, settings: &WinProbability, names: &dyn Names) {
    use std::fmt::Write;
    out.clear();
    match field {
        "manager" => out.push_str(&names.login(deal.manager)),
        "partner" => {
            let _ = write!(out, "{}", deal.partner);
        }
        "segment" => out.push_str(names.partner(deal.partner).1.as_deref().unwrap_or(NONE)),
        "source" => out.push_str(deal.source.unwrap_or(NONE)),
        "amount_band" => out.push_str(&amount_band(deal.amount, &settings.amount_bands)),
        other => {
            let name = other.strip_prefix("custom.").unwrap_or(other);
            match deal.custom.get(name) {
                Some(v) => out.push_str(&custom_text(v)),
                None => out.push_str(NONE),
            }
        }
    }
}

/// A deal's values of `fields`: the value counted and the value a factor shows (a
/// partner's name for the partner, else the value counted).
pub(super) fn attributes(
    deal: &Facts<'_>,
    fields: &[String],
    settings: &WinProbability,
    names: &dyn Names,
) -> Attributes {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let mut key = String::new();
        key_into(&mut key, deal, f, settings, names);
        let show = match f.as_str() {
            "partner" => shown(names.partner(deal.partner).0.clone()),
            _ => shown(key.clone()),
        };
        out.push((f.clone(), key, show));
    }
    Attributes(out)
}

impl Model {
    /// Fits a model under `settings` from the deals closed (won or lost) at `instant`, as
    /// the history replayed to it says, that `train` lets through (given the deal and when
    /// it was closed). A deal counts once for its kind, once for each stage it reached, and
    /// once for its value of each field (its manager, partner and other fields as its
    /// record says now).
    pub fn fit(
        view: &dyn crate::hooks::View,
        settings: &WinProbability,
        instant: Timestamp,
        fitted_at: Timestamp,
        train: &dyn Fn(&DealRow, Timestamp) -> bool,
    ) -> Result<Model, String> {
        let names = Directory::read(view, needs_partners(settings))?;
        Model::fit_visiting(view, settings, &names, instant, fitted_at, train, &mut |_, _| Ok(()))
    }

    /// [`Model::fit`] with the names read already, handing every deal and its history to
    /// `visit` on the way (a report that needs another look at every deal makes one pass).
    pub fn fit_visiting(
        view: &dyn crate::hooks::View,
        settings: &WinProbability,
        names: &Directory,
        instant: Timestamp,
        fitted_at: Timestamp,
        train: &dyn Fn(&DealRow, Timestamp) -> bool,
        visit: &mut super::scope::Visit<'_>,
    ) -> Result<Model, String> {
        let fields = fitted_fields(settings);
        let mut kinds: HashMap<String, KindFit> = HashMap::new();
        // Each deal's value of a field, written here (a fit over a million deals allocates
        // only for values it has not counted yet).
        let mut key = String::new();
        super::scope::each_deal_with_history(view, &|_| true, &mut |deal, steps| {
            visit(deal, steps)?;
            let Some(r) = replay(steps, instant) else { return Ok(()) };
            let (Some(closed_at), true) = (r.closed_at, r.status.is_closed()) else { return Ok(()) };
            if !train(deal, closed_at) {
                return Ok(());
            }
            let won = r.status == DealStatus::Won;
            let kind = get_or_insert(&mut kinds, &deal.kind);
            kind.total.add(won);
            for s in &r.reached {
                get_or_insert(&mut kind.stages, s).add(won);
            }
            let facts = Facts::of_row(deal, &fields)?;
            for field in &fields {
                key_into(&mut key, &facts, field, settings, names);
                get_or_insert(get_or_insert(&mut kind.fields, field), &key).add(won);
            }
            Ok(())
        })?;
        Ok(Model { settings: settings.clone(), kinds, fitted_at, fields })
    }

    /// The fields this model reads of a deal besides the stage.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// A deal's values of the fields this model reads.
    pub fn attributes(&self, deal: &Facts<'_>, names: &dyn Names) -> Attributes {
        attributes(deal, &self.fields, &self.settings, names)
    }

    /// The score `method` gives a deal of `kind` in `stage` with `attrs` (fields missing
    /// from `attrs` are left out).
    pub fn score(&self, method: ScoringMethod, kind: &str, stage: Option<&str>, attrs: &Attributes) -> Scored {
        let empty = KindFit::default();
        let fit = self.kinds.get(kind).unwrap_or(&empty);
        let alpha = f(self.settings.smoothing);
        let min = self.settings.min_deals;
        let mut factors = Vec::new();
        let mut push = |name: &str, value: Value, contribution: f64| {
            factors.push(ScoreFactor { name: name.to_string(), value, contribution: round4(contribution) });
        };
        let (w, n) = (fit.total.won as f64, fit.total.closed() as f64);
        match method {
            ScoringMethod::Stages => {
                let base = (w + alpha) / (n + 2.0 * alpha);
                let m = f(self.settings.prior_weight);
                let delta = |c: Option<&Counts>| match c {
                    Some(c) if c.closed() >= min => {
                        logit((c.won as f64 + m * base) / (c.closed() as f64 + m)) - logit(base)
                    }
                    _ => 0.0,
                };
                push("kind", Value::String(kind.to_string()), logit(base));
                if let Some(s) = stage {
                    push("stage", Value::String(s.to_string()), delta(fit.stages.get(s)));
                }
                for (field, key, show) in attrs.0.iter().filter(|(f, _, _)| f == "manager" || f == "partner") {
                    push(field, show.clone(), delta(fit.fields.get(field).and_then(|v| v.get(key))));
                }
            }
            ScoringMethod::Bayes => {
                let l = fit.total.lost as f64;
                push("prior", Value::Null, ((w + alpha) / (l + alpha)).ln());
                for field in &self.settings.fields {
                    let (key, show, values) = if field == "stage" {
                        let Some(s) = stage else { continue };
                        (s.to_string(), Value::String(s.to_string()), Some(&fit.stages))
                    } else {
                        let Some((_, key, show)) = attrs.0.iter().find(|(f, _, _)| f == field) else { continue };
                        (key.clone(), show.clone(), fit.fields.get(field))
                    };
                    let seen = values.map_or(0, HashMap::len) as f64 + 1.0;
                    let contribution = match values.and_then(|v| v.get(&key)) {
                        Some(c) if c.closed() >= min => {
                            ((c.won as f64 + alpha) / (w + alpha * seen)).ln()
                                - ((c.lost as f64 + alpha) / (l + alpha * seen)).ln()
                        }
                        _ => 0.0,
                    };
                    push(field, show, contribution);
                }
            }
        }
        let sum: f64 = factors.iter().map(|f| f.contribution).sum();
        Scored { probability: round2(100.0 / (1.0 + (-sum).exp())), factors }
    }
}

/// The entry of `map` under `key`, inserted (default) when missing; a key already there
/// costs no allocation.
fn get_or_insert<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted")
}

/// A decimal setting as a float.
fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(1.0)
}

/// The log-odds of `p`.
pub fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The built-in model as a native `deal.score` handler: it answers no score for a won or
/// lost deal, and otherwise scores the deal by `[analytics.win_probability]`'s method with a model
/// fitted from every closed deal, kept for `refit_minutes` of the engine's clock (and fitted
/// again sooner when `[analytics.win_probability]` changed or the clock went back).
#[derive(Default)]
pub struct WinProbabilityHandler {
    fitted: Mutex<Option<Arc<Model>>>,
}

impl WinProbabilityHandler {
    /// The model to score with at `now`: the kept one while it is fresh, else a new fit.
    fn model(&self, view: &dyn crate::hooks::View, now: Timestamp) -> Result<Arc<Model>, String> {
        let settings = &view.settings().win_probability;
        let mut kept = self.fitted.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |m: &Model| {
            m.settings == *settings
                && now >= m.fitted_at
                && now.0 - m.fitted_at.0 < settings.refit_minutes.saturating_mul(60_000) as i64
        };
        if let Some(m) = kept.as_ref().filter(|m| fresh(m)) {
            return Ok(m.clone());
        }
        let model = Arc::new(Model::fit(view, settings, Timestamp(i64::MAX), now, &|_, _| true)?);
        *kept = Some(model.clone());
        Ok(model)
    }
}

impl Handler for WinProbabilityHandler {
    fn call(&self, input: &HookInput<'_>) -> Result<Reply, Fault> {
        let Some(Subject::Deal(deal)) = &input.after else { return Ok(Answer::Score(None).into()) };
        if matches!(deal.status, DealStatus::Won | DealStatus::Lost) {
            return Ok(Answer::Score(None).into());
        }
        let model = self.model(input.view, input.now).map_err(Fault)?;
        let method = model.settings.method;
        let attrs = model.attributes(&Facts::of_deal(deal), &LookUp(input.view));
        let s = model.score(method, &deal.kind, deal.stage.as_deref(), &attrs);
        Ok(Answer::Score(Some(Score {
            probability: s.probability,
            factors: s.factors,
            model: Some(format!("{HANDLER}/{}", method.name())),
        }))
        .into())
    }
}

/// The largest contributions of `factors` other than the base (`kind`, `prior`), as text:
/// `stage=proposal +0.41; manager=ann -0.12`, at most `n`.
pub fn top_factors(factors: &[ScoreFactor], n: usize) -> String {
    let mut f: Vec<&ScoreFactor> =
        factors.iter().filter(|f| f.name != "kind" && f.name != "prior" && f.contribution != 0.0).collect();
    f.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    f.iter()
        .take(n)
        .map(|f| {
            let v = match &f.value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{}={} {:+.2}", f.name, v, f.contribution)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_name_their_bounds() {
        let b = [Decimal::from(100), Decimal::from(1000)];
        assert_eq!(amount_band(Decimal::from(5), &b), "under 100");
        assert_eq!(amount_band(Decimal::from(100), &b), "100 to 1000");
        assert_eq!(amount_band(Decimal::from(1000), &b), "1000 and above");
    }
}
