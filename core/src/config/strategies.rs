//! `[[strategies]]` and `[strategy]`: a relationship strategy per partner segment — contact
//! frequency, the level of the responsible manager, the discount policy, the recommended
//! actions — and how often the server runs them.

use super::raw;
use super::source::Source;
use super::{ConfigError, ManagerLevel, Strategy};

impl Source<'_> {
    pub(super) fn strategies(&self, raw: Vec<raw::Strategy>) -> Result<Vec<Strategy>, ConfigError> {
        let mut out: Vec<Strategy> = Vec::new();
        for s in raw {
            let segment = s.segment.get_ref().trim().to_string();
            let valid = !segment.is_empty()
                && segment.len() <= 64
                && segment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(self.error(
                    s.segment.span(),
                    format!("strategies.segment: \"{segment}\" is not an id (1 to 64 of a-z, 0-9 and _)"),
                ));
            }
            if let Some(other) = out.iter().find(|o| o.segment == segment) {
                return Err(self.error(
                    s.segment.span(),
                    format!("strategies.segment: \"{segment}\" has a strategy already (line {})", other.line),
                ));
            }
            let name = s.name.get_ref().trim().to_string();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(self.error(s.name.span(), "strategies.name: 1 to 200 characters"));
            }
            let days = *s.contact_every_days.get_ref();
            if !(1..=3660).contains(&days) {
                return Err(self.error(
                    s.contact_every_days.span(),
                    format!("strategies.contact_every_days: from 1 to 3660 days, got {days}"),
                ));
            }
            let manager_level = match s.manager_level.as_ref().map(|l| (l.get_ref().as_str(), l.span())) {
                None | Some(("manager", _)) => ManagerLevel::Manager,
                Some(("head", _)) => ManagerLevel::Head,
                Some((other, span)) => {
                    return Err(
                        self.error(span, format!("strategies.manager_level: \"{other}\" is not manager or head"))
                    )
                }
            };
            let discount_policy = s.discount_policy.map(|d| d.into_inner().trim().to_string()).unwrap_or_default();
            if discount_policy.chars().count() > 1000 {
                return Err(self.error(s.name.span(), "strategies.discount_policy: at most 1000 characters"));
            }
            let mut actions = Vec::new();
            for a in &s.actions {
                let text = a.get_ref().trim();
                if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
                    return Err(self.error(a.span(), "strategies.actions: each a line of 1 to 200 characters"));
                }
                if actions.iter().any(|x: &String| x == text) {
                    return Err(self.error(a.span(), format!("strategies.actions: \"{text}\" is listed twice")));
                }
                actions.push(text.to_string());
            }
            if actions.len() > 20 {
                return Err(self.error(s.segment.span(), "strategies.actions: at most 20"));
            }
            let line = self.position(s.segment.span().start).0;
            out.push(Strategy {
                segment,
                name,
                contact_every_days: days,
                manager_level,
                discount_policy,
                actions,
                line,
            });
        }
        Ok(out)
    }

    pub(super) fn strategy_every(&self, raw: raw::StrategyRun) -> Result<Option<std::time::Duration>, ConfigError> {
        let Some(h) = raw.run_every_hours else { return Ok(None) };
        let hours = *h.get_ref();
        if hours == 0.0 {
            return Ok(None);
        }
        let most = f64::from(24 * 366);
        if !(0.001..=most).contains(&hours) {
            return Err(self.error(
                h.span(),
                format!("strategy.run_every_hours: from 0.001 (3.6 seconds) to {most} (a year), or 0 for never; got {hours}"),
            ));
        }
        Ok(Some(std::time::Duration::from_secs_f64(hours * 3600.0)))
    }
}
