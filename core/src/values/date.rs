//! Calendar dates: one parser and one range for every date field on every path (entity
//! JSON, imports, hook answers, report columns), so `+99999-01-01` or `-0001-01-01` is
//! refused everywhere with the same words.
//!
//! The range is 1900-01-01 to 2999-12-31: every year has four digits, so `YYYY-MM-DD` is the
//! whole of the format; it holds the birth dates of living contacts, the registration dates
//! of companies and contracts, and any plan a sales team makes, while a year with a digit
//! too many or too few (`20266`, `206`) is refused as the typing error it is.

use chrono::{Datelike, NaiveDate};

/// The first date a date field holds.
pub const FIRST: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => panic!("a valid date"),
};

/// The last date a date field holds.
pub const LAST: NaiveDate = match NaiveDate::from_ymd_opt(2999, 12, 31) {
    Some(d) => d,
    None => panic!("a valid date"),
};

/// Whether `d` is in the range a date field holds; else what is wrong with it.
pub fn check(d: NaiveDate) -> Result<(), String> {
    if (FIRST..=LAST).contains(&d) {
        Ok(())
    } else {
        Err(format!("{} is outside the dates a field holds ({FIRST} to {LAST})", shown(d)))
    }
}

/// A date written `YYYY-MM-DD` (four-digit year, two-digit month and day, nothing around
/// them), a real day of the calendar, in the range of [`check`].
pub fn parse(s: &str) -> Result<NaiveDate, String> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(format!("\"{s}\" is not a date written YYYY-MM-DD (like 2026-03-01)"));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("\"{s}\" is not a day of the calendar"))?;
    check(d)?;
    Ok(d)
}

/// Reading date fields with serde: JSON and other human-readable formats are input (a request
/// body, an import line, a script's answer), held to [`parse`]; the binary records of the
/// store are decoded as they were written, so a record stored before the rule stays readable.
/// Use with `#[serde(deserialize_with = "crate::values::date::input::…")]`.
pub mod input {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer};

    /// A date field.
    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        if !d.is_human_readable() {
            return NaiveDate::deserialize(d);
        }
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }

    /// An optional date field (`null` or absent is none).
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        if !d.is_human_readable() {
            return Option::<NaiveDate>::deserialize(d);
        }
        match Option::<std::borrow::Cow<str>>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// A date as `parse` reads it, also for years outside four digits (`+99999-01-01`).
fn shown(d: NaiveDate) -> String {
    if (0..=9999).contains(&d.year()) {
        d.to_string()
    } else {
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse("2026-03-01").unwrap(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert!(parse("1900-01-01").is_ok() && parse("2999-12-31").is_ok());
        assert_eq!(
            parse("1899-12-31").unwrap_err(),
            "1899-12-31 is outside the dates a field holds (1900-01-01 to 2999-12-31)"
        );
        assert!(parse("3000-01-01").unwrap_err().contains("outside"));
        assert_eq!(parse("2026-02-30").unwrap_err(), "\"2026-02-30\" is not a day of the calendar");
        for bad in [
            "+99999-01-01",
            "-0001-01-01",
            "2026-3-1",
            " 2026-03-01",
            "2026-03-01T00:00",
            "01.03.2026",
            "",
            "２０２６-03-01",
        ] {
            assert!(parse(bad).unwrap_err().contains("YYYY-MM-DD"), "{bad:?}");
        }
        let far = NaiveDate::from_ymd_opt(99999, 1, 1).unwrap();
        assert!(check(far).unwrap_err().starts_with("+99999-01-01 is outside"), "{:?}", check(far));
        assert!(check(NaiveDate::from_ymd_opt(-1, 1, 1).unwrap()).is_err());
    }

    #[derive(serde::Deserialize, serde::Serialize, Debug)]
    struct Holder {
        #[serde(deserialize_with = "input::date")]
        day: NaiveDate,
        #[serde(default, deserialize_with = "input::optional")]
        close: Option<NaiveDate>,
    }

    /// JSON is input and held to the rule; a binary record is read as it was written.
    #[test]
    fn input_is_strict_and_records_stay_readable() {
        let json = |t: &str| serde_json::from_str::<Holder>(t).map_err(|e| e.to_string());
        let h = json(r#"{"day":"2026-03-01","close":null}"#).unwrap();
        assert_eq!((h.day.to_string(), h.close), ("2026-03-01".into(), None));
        assert_eq!(json(r#"{"day":"2026-03-01"}"#).unwrap().close, None);
        assert!(json(r#"{"day":"2026-3-1"}"#).unwrap_err().contains("is not a date written YYYY-MM-DD"));
        let e = json(r#"{"day":"2026-03-01","close":"2026-3-1"}"#).unwrap_err();
        assert!(e.contains("\"2026-3-1\" is not a date written YYYY-MM-DD"), "{e}");
        assert!(json(r#"{"day":"1899-12-31"}"#).unwrap_err().contains("outside"));
        // A record written with a loose spelling (as chrono once read it) still decodes.
        #[derive(serde::Serialize)]
        struct Loose<'a> {
            day: &'a str,
            close: Option<&'a str>,
        }
        let bytes = rmp_serde::to_vec(&Loose { day: "2026-3-1", close: Some("1850-1-2") }).unwrap();
        let h: Holder = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((h.day.to_string(), h.close.unwrap().to_string()), ("2026-03-01".into(), "1850-01-02".into()));
    }
}
