//! `[analytics.abc_xyz]` and `[analytics.bcg]`: the thresholds the client classification
//! reports (ABC/XYZ, BCG) and the dossier's classes use. Every key is optional; a value out
//! of range is named with its file, line and key.

use rust_decimal::Decimal;
use toml::Spanned;

use super::raw;
use super::source::Source;
use super::{AnalyticsSettings, ConfigError};

impl Source<'_> {
    pub(super) fn analytics(&self, raw: raw::Analytics) -> Result<AnalyticsSettings, ConfigError> {
        let d = AnalyticsSettings::default();
        let mut abc = d.abc_xyz.clone();
        if let Some(r) = raw.abc_xyz {
            let span = r.a.as_ref().or(r.b.as_ref()).or(r.c.as_ref()).map(|v| v.span());
            abc.a = self.percent(r.a, "analytics.abc_xyz.a", abc.a)?;
            abc.b = self.percent(r.b, "analytics.abc_xyz.b", abc.b)?;
            let c = self.percent(r.c, "analytics.abc_xyz.c", Decimal::ONE_HUNDRED - abc.a - abc.b)?;
            if abc.a + abc.b + c != Decimal::ONE_HUNDRED {
                return Err(self.error(
                    span.unwrap_or(0..0),
                    format!(
                        "analytics.abc_xyz: a + b + c must make 100 (percent of revenue), got {} + {} + {c} = {}",
                        abc.a,
                        abc.b,
                        abc.a + abc.b + c
                    ),
                ));
            }
            if abc.a == Decimal::ZERO {
                return Err(self.error(span.unwrap_or(0..0), "analytics.abc_xyz.a must be above zero, got 0"));
            }
            let y_span = r.y.as_ref().map(|v| v.span());
            abc.x = self.percent_any(r.x, "analytics.abc_xyz.x", abc.x)?;
            abc.y = self.percent_any(r.y, "analytics.abc_xyz.y", abc.y)?;
            if abc.y < abc.x {
                return Err(self.error(
                    y_span.or(span).unwrap_or(0..0),
                    format!(
                        "analytics.abc_xyz.y ({}) must not be below analytics.abc_xyz.x ({}): y is the larger coefficient of variation",
                        abc.y, abc.x
                    ),
                ));
            }
        }
        let mut bcg = d.bcg.clone();
        if let Some(r) = raw.bcg {
            bcg.share = self.percent(r.share, "analytics.bcg.share", bcg.share)?;
            bcg.growth = match r.growth {
                Some(v) => number(self, &v, "analytics.bcg.growth")?,
                None => bcg.growth,
            };
        }
        Ok(AnalyticsSettings { abc_xyz: abc, bcg })
    }

    /// A percentage from 0 to 100, or `default`.
    fn percent(&self, v: Option<Spanned<f64>>, key: &str, default: Decimal) -> Result<Decimal, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = number(self, &v, key)?;
        if n < Decimal::ZERO || n > Decimal::ONE_HUNDRED {
            return Err(self.error(v.span(), format!("{key} must be a percentage from 0 to 100, got {}", v.get_ref())));
        }
        Ok(n)
    }

    /// A percentage not below zero (a coefficient of variation may pass 100), or `default`.
    fn percent_any(&self, v: Option<Spanned<f64>>, key: &str, default: Decimal) -> Result<Decimal, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = number(self, &v, key)?;
        if n < Decimal::ZERO {
            return Err(self.error(v.span(), format!("{key} must not be negative, got {}", v.get_ref())));
        }
        Ok(n)
    }
}

/// A finite number as a decimal (to four places).
fn number(src: &Source<'_>, v: &Spanned<f64>, key: &str) -> Result<Decimal, ConfigError> {
    Decimal::try_from(*v.get_ref())
        .map(|d| d.round_dp(4).normalize())
        .map_err(|_| src.error(v.span(), format!("{key} must be a finite number, got {}", v.get_ref())))
}
