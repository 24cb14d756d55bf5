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
}
