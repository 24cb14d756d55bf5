//! Exact money amounts in a known currency, so that prices, totals and
//! payments are never computed with floats or silently mixed across currencies.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::{Currency, ValueError};

/// An exact decimal amount in a currency.
///
/// Serialized as `{"amount":"1234.50","currency":"RUB"}`: the amount is a
/// decimal string, never a JSON float. Deserialization accepts any decimal
/// string (so that whatever was stored reads back unchanged) but validates
/// the currency code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Money {
    /// The amount, in major units (e.g. rubles, not kopecks).
    pub amount: Decimal,
    /// The currency the amount is in.
    pub currency: Currency,
}

/// What is wrong with an amount string given to [`Money::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmountProblem {
    /// The string is empty.
    Empty,
    /// The string has no digits (e.g. just `-`).
    NoDigits,
    /// The number is written with an exponent (`1e5`).
    Exponent,
    /// A comma is used where a decimal point is expected.
    Comma,
    /// More than one decimal point.
    SeveralPoints,
    /// A decimal point without digits on both sides (`.5`, `5.`).
    BarePoint,
    /// Any other character that is not part of a plain decimal number.
    UnexpectedChar {
        /// 1-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// More significant fractional digits than the currency has minor units.
    TooManyFractionDigits {
        /// The currency of the amount.
        currency: Currency,
        /// How many fractional digits the currency allows.
        allowed: u32,
        /// How many significant fractional digits the amount has.
        found: u32,
    },
    /// The number is too large to be stored with the currency's precision.
    TooLarge,
}

impl fmt::Display for AmountProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountProblem::Empty => f.write_str("is empty"),
            AmountProblem::NoDigits => f.write_str("has no digits"),
            AmountProblem::Exponent => f.write_str("uses exponent notation; write the number out in full"),
            AmountProblem::Comma => f.write_str("contains ','; use '.' as the decimal separator"),
            AmountProblem::SeveralPoints => f.write_str("has more than one decimal point"),
            AmountProblem::BarePoint => f.write_str("needs digits on both sides of the decimal point"),
            AmountProblem::UnexpectedChar { position, found } => {
                write!(f, "has {found:?} at position {position}; only digits, one '.' and a leading '-' are allowed")
            }
            AmountProblem::TooManyFractionDigits { currency, allowed, found } => {
                write!(f, "has {found} digits after the decimal point, but {currency} allows at most {allowed}")
            }
            AmountProblem::TooLarge => f.write_str("is too large"),
        }
    }
}

impl Money {
    /// Wraps an amount as is (no rounding, no precision check).
    pub fn new(amount: Decimal, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// Zero in the given currency, carrying the currency's minor units
    /// (serializes as `"0.00"` for RUB).
    pub fn zero(currency: Currency) -> Money {
        Money::new(Decimal::new(0, currency.minor_units()), currency)
    }

    /// Parses a plain decimal string (`"1234.5"`, `"-10"`, `"0.99"`) and a
    /// currency code.
    ///
    /// No exponent, no thousands separators, no `+`, no surrounding
    /// whitespace. Trailing zeros are fine, but significant fractional digits
    /// beyond the currency's minor units are an error (`"10.005"` RUB is
    /// rejected, `"10.500"` RUB is `10.50`). The result always carries exactly
    /// the currency's minor units, so `"10.5"` RUB serializes as `"10.50"`.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, ValueError> {
        let currency = Currency::parse(currency)?;
        let bad = |problem| ValueError::BadAmount { value: amount.to_owned(), problem };
        check_amount_syntax(amount).map_err(bad)?;
        let allowed = currency.minor_units();
        // Counted on the text: the decimal parser would silently round
        // fractions beyond its 28-digit precision.
        let found = significant_fraction_digits(amount);
        if found > allowed {
            return Err(bad(AmountProblem::TooManyFractionDigits { currency, allowed, found }));
        }
        let parsed: Decimal = amount.parse().map_err(|_| bad(AmountProblem::TooLarge))?;
        let mut exact = parsed.normalize();
        exact.rescale(allowed);
        if exact.scale() != allowed {
            return Err(bad(AmountProblem::TooLarge));
        }
        Ok(Money::new(exact, currency))
    }

    /// True if the amount is below zero (`-0.00` is not negative).
    pub fn is_negative(&self) -> bool {
        self.amount < Decimal::ZERO
    }

    /// True if the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Sum of two amounts in the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        self.amount
            .checked_add(other.amount)
            .map(|amount| Money::new(amount, self.currency))
            .ok_or_else(|| self.overflow("addition"))
    }

    /// Difference of two amounts in the same currency.
    pub fn checked_sub(self, other: Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        self.amount
            .checked_sub(other.amount)
            .map(|amount| Money::new(amount, self.currency))
            .ok_or_else(|| self.overflow("subtraction"))
    }

    /// Price × quantity, rounded half-to-even to the currency's minor units.
    pub fn mul_qty(self, qty: Decimal) -> Result<Money, ValueError> {
        self.amount
            .checked_mul(qty)
            .map(|amount| Money::new(amount, self.currency).round_minor())
            .ok_or_else(|| self.overflow("multiplication"))
    }

    /// Rounds half-to-even to the currency's minor units and pads to exactly
    /// that many decimal places (when the magnitude leaves room for them).
    pub fn round_minor(self) -> Money {
        Money::new(to_minor_units(self.amount, self.currency), self.currency)
    }

    fn same_currency(self, other: Money) -> Result<(), ValueError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(ValueError::CurrencyMismatch { left: self.currency, right: other.currency })
        }
    }

    fn overflow(self, operation: &'static str) -> ValueError {
        ValueError::AmountOverflow { operation, currency: self.currency }
    }
}

/// Rounds half-to-even to the currency's minor units and rescales up to them.
fn to_minor_units(amount: Decimal, currency: Currency) -> Decimal {
    let minor = currency.minor_units();
    let mut rounded = amount.round_dp_with_strategy(minor, RoundingStrategy::MidpointNearestEven);
    // `rescale` keeps the value and falls back to the largest possible scale.
    rounded.rescale(minor);
    rounded
}

/// Number of digits after the decimal point, ignoring trailing zeros.
fn significant_fraction_digits(s: &str) -> u32 {
    let fraction = s.split_once('.').map_or("", |(_, fraction)| fraction);
    fraction.trim_end_matches('0').len() as u32
}

/// Checks that `s` is `-?[0-9]+(\.[0-9]+)?`, explaining the first problem.
fn check_amount_syntax(s: &str) -> Result<(), AmountProblem> {
    if s.is_empty() {
        return Err(AmountProblem::Empty);
    }
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut points = 0;
    for (index, c) in body.chars().enumerate() {
        let position = index + 1 + (s.len() - body.len());
        match c {
            '0'..='9' => {}
            '.' => points += 1,
            'e' | 'E' => return Err(AmountProblem::Exponent),
            ',' => return Err(AmountProblem::Comma),
            _ => return Err(AmountProblem::UnexpectedChar { position, found: c }),
        }
    }
    if points > 1 {
        return Err(AmountProblem::SeveralPoints);
    }
    if !body.bytes().any(|b| b.is_ascii_digit()) {
        return Err(AmountProblem::NoDigits);
    }
    if body.starts_with('.') || body.ends_with('.') {
        return Err(AmountProblem::BarePoint);
    }
    Ok(())
}

impl fmt::Display for Money {
    /// `1234.50 RUB`: always exactly the currency's minor units, rounding
    /// half-to-even if the stored amount is more precise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minor = self.currency.minor_units() as usize;
        let mut rounded = self.amount.round_dp_with_strategy(minor as u32, RoundingStrategy::MidpointNearestEven);
        if rounded.is_zero() {
            rounded.set_sign_positive(true);
        }
        let digits = rounded.to_string();
        let have = digits.split_once('.').map_or(0, |(_, frac)| frac.len());
        let point = if have == 0 && minor > 0 { "." } else { "" };
        let pad = "0".repeat(minor.saturating_sub(have));
        write!(f, "{digits}{point}{pad} {}", self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// `Ok(display)` for accepted input, `Err(message)` for rejected input.
    fn check(input: (&str, &str), expected: Result<&str, &str>) {
        let got = Money::parse(input.0, input.1).map(|m| m.to_string()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "input {input:?}");
    }

    /// `((amount, currency), expected)`.
    type Case = ((&'static str, &'static str), Result<&'static str, &'static str>);

    #[test]
    fn parse_table() {
        let cases: &[Case] = &[
            (("1234.5", "RUB"), Ok("1234.50 RUB")),
            (("1234.50", "RUB"), Ok("1234.50 RUB")),
            (("10.5", "RUB"), Ok("10.50 RUB")),
            (("10.500", "RUB"), Ok("10.50 RUB")),
            (("10", "RUB"), Ok("10.00 RUB")),
            (("0", "RUB"), Ok("0.00 RUB")),
            (("-0.00", "RUB"), Ok("0.00 RUB")),
            (("-15.75", "USD"), Ok("-15.75 USD")),
            (("007.10", "EUR"), Ok("7.10 EUR")),
            (("1500", "JPY"), Ok("1500 JPY")),
            (("1500.0", "JPY"), Ok("1500 JPY")),
            (("1.234", "KWD"), Ok("1.234 KWD")),
            (("1.2", "BHD"), Ok("1.200 BHD")),
            (
                ("10.005", "RUB"),
                Err("amount \"10.005\" has 3 digits after the decimal point, but RUB allows at most 2"),
            ),
            (
                ("1500.5", "JPY"),
                Err("amount \"1500.5\" has 1 digits after the decimal point, but JPY allows at most 0"),
            ),
            (("", "RUB"), Err("amount \"\" is empty")),
            (("-", "RUB"), Err("amount \"-\" has no digits")),
            (
                ("1e5", "RUB"),
                Err("amount \"1e5\" uses exponent notation; write the number out in full"),
            ),
            (
                ("10,50", "RUB"),
                Err("amount \"10,50\" contains ','; use '.' as the decimal separator"),
            ),
            (("1.2.3", "RUB"), Err("amount \"1.2.3\" has more than one decimal point")),
            (
                (".5", "RUB"),
                Err("amount \".5\" needs digits on both sides of the decimal point"),
            ),
            (
                ("5.", "RUB"),
                Err("amount \"5.\" needs digits on both sides of the decimal point"),
            ),
            (
                ("+5", "RUB"),
                Err("amount \"+5\" has '+' at position 1; only digits, one '.' and a leading '-' are allowed"),
            ),
            (
                (" 5", "RUB"),
                Err("amount \" 5\" has ' ' at position 1; only digits, one '.' and a leading '-' are allowed"),
            ),
            (
                ("1 000", "RUB"),
                Err("amount \"1 000\" has ' ' at position 2; only digits, one '.' and a leading '-' are allowed"),
            ),
            (
                ("--5", "RUB"),
                Err("amount \"--5\" has '-' at position 2; only digits, one '.' and a leading '-' are allowed"),
            ),
            (
                ("NaN", "RUB"),
                Err("amount \"NaN\" has 'N' at position 1; only digits, one '.' and a leading '-' are allowed"),
            ),
            (
                ("99999999999999999999999999999999", "RUB"),
                Err("amount \"99999999999999999999999999999999\" is too large"),
            ),
            (
                ("79228162514264337593543950335", "RUB"),
                Err("amount \"79228162514264337593543950335\" is too large"),
            ),
            (
                ("1.00000000000000000000000000000001", "RUB"),
                Err("amount \"1.00000000000000000000000000000001\" has 32 digits after the decimal point, but RUB allows at most 2"),
            ),
            (("1.000000000000000000000000000000000", "RUB"), Ok("1.00 RUB")),
            (("10", "RUR"), Err("\"RUR\" is not an ISO 4217 currency code")),
            (
                ("10", "rub"),
                Err("currency code \"rub\" must be written in upper case: \"RUB\""),
            ),
        ];
        for (input, expected) in cases {
            check(*input, *expected);
        }
    }

    #[test]
    fn parse_keeps_minor_unit_scale() {
        let m = Money::parse("10.5", "RUB").unwrap();
        assert_eq!(m.amount.scale(), 2);
        assert_eq!(m.amount, dec("10.5"));
        let big = Money::parse("792281625142643375935439503", "RUB").unwrap();
        assert_eq!(big.amount.scale(), 2);
    }

    #[test]
    fn zero_and_sign() {
        let zero = Money::zero(Currency::RUB);
        assert!(zero.is_zero());
        assert!(!zero.is_negative());
        assert_eq!(zero.to_string(), "0.00 RUB");
        assert_eq!(Money::zero(Currency::parse("JPY").unwrap()).to_string(), "0 JPY");
        assert!(Money::parse("-0.01", "RUB").unwrap().is_negative());
        assert!(!Money::parse("-0.00", "RUB").unwrap().is_negative());
        assert!(Money::parse("-0.00", "RUB").unwrap().is_zero());
    }

    #[test]
    fn add_and_sub() {
        let a = Money::parse("100.10", "RUB").unwrap();
        let b = Money::parse("0.95", "RUB").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "101.05 RUB");
        assert_eq!(b.checked_sub(a).unwrap().to_string(), "-99.15 RUB");

        let usd = Money::parse("1", "USD").unwrap();
        let err = a.checked_add(usd).unwrap_err();
        assert_eq!(err.to_string(), "cannot combine an amount in RUB with an amount in USD");
        assert_eq!(a.checked_sub(usd), Err(ValueError::CurrencyMismatch { left: Currency::RUB, right: Currency::USD }));
    }

    #[test]
    fn overflow_is_an_error() {
        let max = Money::new(Decimal::MAX, Currency::RUB);
        let min = Money::new(Decimal::MIN, Currency::RUB);
        let one = Money::parse("1", "RUB").unwrap();
        assert_eq!(max.checked_add(one).unwrap_err().to_string(), "addition of RUB amounts overflows");
        assert_eq!(min.checked_sub(one).unwrap_err().to_string(), "subtraction of RUB amounts overflows");
        assert_eq!(max.mul_qty(dec("2")).unwrap_err().to_string(), "multiplication of RUB amounts overflows");
    }

    #[test]
    fn mul_qty_rounds_half_even() {
        // (price, qty, expected display)
        let cases = [
            ("10.00", "3", "30.00 RUB"),
            ("0.10", "0.25", "0.02 RUB"),  // 0.025 -> 0.02 (even)
            ("0.10", "0.35", "0.04 RUB"),  // 0.035 -> 0.04 (even)
            ("0.10", "0.45", "0.04 RUB"),  // 0.045 -> 0.04
            ("19.99", "1.5", "29.98 RUB"), // 29.985 -> 29.98
            ("19.99", "-2", "-39.98 RUB"),
            ("33.33", "0.333", "11.10 RUB"), // 11.09889 -> 11.10
            ("5", "0", "0.00 RUB"),
        ];
        for (price, qty, expected) in cases {
            let m = Money::parse(price, "RUB").unwrap().mul_qty(dec(qty)).unwrap();
            assert_eq!(m.to_string(), expected, "{price} x {qty}");
            assert_eq!(m.amount.scale(), 2, "{price} x {qty}");
        }
        let yen = Money::parse("125", "JPY").unwrap().mul_qty(dec("0.5")).unwrap();
        assert_eq!(yen.to_string(), "62 JPY"); // 62.5 -> 62
    }

    #[test]
    fn round_minor_and_display_of_precise_amounts() {
        let precise = Money::new(dec("2.675"), Currency::USD);
        assert_eq!(precise.to_string(), "2.68 USD");
        assert_eq!(precise.round_minor().amount, dec("2.68"));
        let short = Money::new(dec("7"), Currency::EUR).round_minor();
        assert_eq!(short.amount.scale(), 2);
        assert_eq!(Money::new(dec("-0.001"), Currency::RUB).to_string(), "0.00 RUB");
        assert_eq!(Money::new(Decimal::MAX, Currency::RUB).to_string(), "79228162514264337593543950335.00 RUB");
    }

    #[test]
    fn serde_round_trip() {
        let m = Money::parse("1234.5", "RUB").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"1234.50","currency":"RUB"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.amount.scale(), 2);

        let err = serde_json::from_str::<Money>(r#"{"amount":"1","currency":"RUR"}"#).unwrap_err();
        assert!(err.to_string().contains("\"RUR\" is not an ISO 4217"), "{err}");
        assert!(serde_json::from_str::<Money>(r#"{"amount":"abc","currency":"RUB"}"#).is_err());
    }

    #[test]
    fn equal_values_hash_equal() {
        use std::collections::HashSet;
        let a = Money::new(dec("10.5"), Currency::RUB);
        let b = Money::new(dec("10.50"), Currency::RUB);
        assert_eq!(a, b);
        let set: HashSet<Money> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_ne!(a, Money::new(dec("10.5"), Currency::USD));
    }
}
