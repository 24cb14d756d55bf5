//! `[[plans]]`: the managers' sales plans per period, which the managers report measures
//! won revenue against. Each names a manager of `[[users]]`, a month or a from/to period, and
//! an amount; a manager's plans do not overlap and share one currency.

use chrono::{Datelike, NaiveDate};
use toml::Spanned;

use super::raw;
use super::source::Source;
use super::{ConfigError, Plan, UserSpec};
use crate::values::{Currency, Money};

impl Source<'_> {
    pub(super) fn plans(
        &self,
        raw: Vec<raw::Plan>,
        users: &[UserSpec],
        default_currency: Currency,
    ) -> Result<Vec<Plan>, ConfigError> {
        let mut plans: Vec<Plan> = Vec::new();
        for p in raw {
            let login = p.manager.get_ref();
            if !users.iter().any(|u| &u.login == login) {
                let known: Vec<&str> = users.iter().map(|u| u.login.as_str()).collect();
                return Err(self.error(
                    p.manager.span(),
                    format!(
                        "plans.manager: there is no user \"{login}\" in [[users]] ({})",
                        if known.is_empty() { "none declared".to_string() } else { known.join(", ") }
                    ),
                ));
            }
            let line = self.position(p.manager.span().start).0;
            let (from, to) =
                match (p.period, p.from, p.to) {
                    (Some(m), None, None) => self.month(&m)?,
                    (None, Some(f), Some(t)) => {
                        let from = self.date(&f, "plans.from")?;
                        let to = self.date(&t, "plans.to")?;
                        if to < from {
                            return Err(self
                                .error(t.span(), format!("plans.to: the plan ends ({to}) before it starts ({from})")));
                        }
                        (from, to)
                    }
                    (Some(m), _, _) => {
                        return Err(self.error(m.span(), "plans: give either period (a month) or from and to, not both"))
                    }
                    (None, f, t) => {
                        let at = f.map(|f| f.span()).or(t.map(|t| t.span())).unwrap_or(p.manager.span());
                        return Err(self
                            .error(at, "plans: a plan needs period = \"YYYY-MM\", or both from and to (YYYY-MM-DD)"));
                    }
                };
            let currency = match &p.currency {
                Some(c) => c.get_ref().as_str(),
                None => default_currency.as_str(),
            };
            let span = p.currency.as_ref().map_or(p.amount.span(), |c| c.span());
            let amount = Money::parse(p.amount.get_ref(), currency)
                .map_err(|e| self.error(span.clone(), format!("plans.amount: {e}")))?;
            if amount.is_negative() || amount.is_zero() {
                return Err(
                    self.error(p.amount.span(), format!("plans.amount must be above zero, got {}", amount.amount))
                );
            }
            for other in plans.iter().filter(|o| o.manager == *login) {
                if other.amount.currency != amount.currency {
                    return Err(self.error(
                        span.clone(),
                        format!(
                            "plans: {login}'s plans are in {}, so this one cannot be in {} (line {})",
                            other.amount.currency, amount.currency, other.line
                        ),
                    ));
                }
                if other.from <= to && from <= other.to {
                    return Err(self.error(
                        p.manager.span(),
                        format!(
                            "plans: {login}'s plan for {from}..{to} overlaps the one for {}..{} (line {})",
                            other.from, other.to, other.line
                        ),
                    ));
                }
            }
            plans.push(Plan { manager: login.clone(), from, to, amount, line });
        }
        Ok(plans)
    }

    fn date(&self, v: &Spanned<String>, key: &str) -> Result<NaiveDate, ConfigError> {
        crate::values::date::parse(v.get_ref()).map_err(|e| self.error(v.span(), format!("{key}: {e}")))
    }

    /// The first and last day of a `YYYY-MM` month.
    fn month(&self, v: &Spanned<String>) -> Result<(NaiveDate, NaiveDate), ConfigError> {
        let s = v.get_ref();
        let bad =
            || self.error(v.span(), format!("plans.period: \"{s}\" is not a month written YYYY-MM (like 2026-03)"));
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !s.bytes().enumerate().all(|(i, b)| i == 4 || b.is_ascii_digit()) {
            return Err(bad());
        }
        let first =
            NaiveDate::from_ymd_opt(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, 1).ok_or_else(bad)?;
        let next = if first.month() == 12 {
            NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
        };
        let last = next.and_then(|n| n.pred_opt()).ok_or_else(bad)?;
        Ok((first, last))
    }
}
