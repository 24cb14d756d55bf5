//! ISO 4217 currency codes with their minor units, so that money amounts can
//! be validated and rounded to what the currency actually allows.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use super::ValueError;

/// An ISO 4217 currency, stored as its three-letter alphabetic code.
///
/// Only codes from the built-in table can be constructed, so every
/// `Currency` value is known to be valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// One row of the ISO 4217 table: alphabetic code and number of minor units.
struct Entry {
    code: &'static str,
    minor_units: u32,
}

const fn e(code: &'static str, minor_units: u32) -> Entry {
    Entry { code, minor_units }
}

/// Active ISO 4217 currencies (list one as published 2026-01-01), sorted by
/// code so that lookups can use binary search.
///
/// Fund codes (BOV, CLF, CHE, ...), bond-market units, SDR, precious metals
/// and the testing / "no currency" codes (XTS, XXX) are deliberately left
/// out: a CRM never prices a deal in them. Two codes withdrawn recently are
/// kept so that existing records stay readable: ANG (replaced by XCG in
/// 2025) and BGN (replaced by EUR in 2026).
const TABLE: &[Entry] = &[
    e("AED", 2),
    e("AFN", 2),
    e("ALL", 2),
    e("AMD", 2),
    e("ANG", 2),
    e("AOA", 2),
    e("ARS", 2),
    e("AUD", 2),
    e("AWG", 2),
    e("AZN", 2),
    e("BAM", 2),
    e("BBD", 2),
    e("BDT", 2),
    e("BGN", 2),
    e("BHD", 3),
    e("BIF", 0),
    e("BMD", 2),
    e("BND", 2),
    e("BOB", 2),
    e("BRL", 2),
    e("BSD", 2),
    e("BTN", 2),
    e("BWP", 2),
    e("BYN", 2),
    e("BZD", 2),
    e("CAD", 2),
    e("CDF", 2),
    e("CHF", 2),
    e("CLP", 0),
    e("CNY", 2),
    e("COP", 2),
    e("CRC", 2),
    e("CUP", 2),
    e("CVE", 2),
    e("CZK", 2),
    e("DJF", 0),
    e("DKK", 2),
    e("DOP", 2),
    e("DZD", 2),
    e("EGP", 2),
    e("ERN", 2),
    e("ETB", 2),
    e("EUR", 2),
    e("FJD", 2),
    e("FKP", 2),
    e("GBP", 2),
    e("GEL", 2),
    e("GHS", 2),
    e("GIP", 2),
    e("GMD", 2),
    e("GNF", 0),
    e("GTQ", 2),
    e("GYD", 2),
    e("HKD", 2),
    e("HNL", 2),
    e("HTG", 2),
    e("HUF", 2),
    e("IDR", 2),
    e("ILS", 2),
    e("INR", 2),
    e("IQD", 3),
    e("IRR", 2),
    e("ISK", 0),
    e("JMD", 2),
    e("JOD", 3),
    e("JPY", 0),
    e("KES", 2),
    e("KGS", 2),
    e("KHR", 2),
    e("KMF", 0),
    e("KPW", 2),
    e("KRW", 0),
    e("KWD", 3),
    e("KYD", 2),
    e("KZT", 2),
    e("LAK", 2),
    e("LBP", 2),
    e("LKR", 2),
    e("LRD", 2),
    e("LSL", 2),
    e("LYD", 3),
    e("MAD", 2),
    e("MDL", 2),
    e("MGA", 2),
    e("MKD", 2),
    e("MMK", 2),
    e("MNT", 2),
    e("MOP", 2),
    e("MRU", 2),
    e("MUR", 2),
    e("MVR", 2),
    e("MWK", 2),
    e("MXN", 2),
    e("MYR", 2),
    e("MZN", 2),
    e("NAD", 2),
    e("NGN", 2),
    e("NIO", 2),
    e("NOK", 2),
    e("NPR", 2),
    e("NZD", 2),
    e("OMR", 3),
    e("PAB", 2),
    e("PEN", 2),
    e("PGK", 2),
    e("PHP", 2),
    e("PKR", 2),
    e("PLN", 2),
    e("PYG", 0),
    e("QAR", 2),
    e("RON", 2),
    e("RSD", 2),
    e("RUB", 2),
    e("RWF", 0),
    e("SAR", 2),
    e("SBD", 2),
    e("SCR", 2),
    e("SDG", 2),
    e("SEK", 2),
    e("SGD", 2),
    e("SHP", 2),
    e("SLE", 2),
    e("SOS", 2),
    e("SRD", 2),
    e("SSP", 2),
    e("STN", 2),
    e("SVC", 2),
    e("SYP", 2),
    e("SZL", 2),
    e("THB", 2),
    e("TJS", 2),
    e("TMT", 2),
    e("TND", 3),
    e("TOP", 2),
    e("TRY", 2),
    e("TTD", 2),
    e("TWD", 2),
    e("TZS", 2),
    e("UAH", 2),
    e("UGX", 0),
    e("USD", 2),
    e("UYU", 2),
    e("UZS", 2),
    e("VED", 2),
    e("VES", 2),
    e("VND", 0),
    e("VUV", 0),
    e("WST", 2),
    e("XAD", 2),
    e("XAF", 0),
    e("XCD", 2),
    e("XCG", 2),
    e("XOF", 0),
    e("XPF", 0),
    e("YER", 2),
    e("ZAR", 2),
    e("ZMW", 2),
    e("ZWG", 2),
];

/// Finds the table row for a code; `None` if the code is not in the table.
fn lookup(code: &[u8]) -> Option<&'static Entry> {
    TABLE.binary_search_by(|entry| entry.code.as_bytes().cmp(code)).ok().map(|index| &TABLE[index])
}

/// Turns a table row into a `Currency`.
fn from_entry(entry: &Entry) -> Currency {
    let b = entry.code.as_bytes();
    Currency([b[0], b[1], b[2]])
}

impl Currency {
    /// Russian ruble.
    pub const RUB: Currency = Currency(*b"RUB");
    /// US dollar.
    pub const USD: Currency = Currency(*b"USD");
    /// Euro.
    pub const EUR: Currency = Currency(*b"EUR");
    /// Chinese yuan renminbi.
    pub const CNY: Currency = Currency(*b"CNY");

    /// Parses an ISO 4217 code: exactly three upper-case ASCII letters that
    /// are in the table. Lower-case input is rejected with a message that
    /// suggests the upper-case form; surrounding whitespace is not allowed.
    pub fn parse(s: &str) -> Result<Currency, ValueError> {
        if let Some(entry) = lookup(s.as_bytes()) {
            return Ok(from_entry(entry));
        }
        let upper = s.to_ascii_uppercase();
        match lookup(upper.as_bytes()) {
            Some(entry) => Err(ValueError::CurrencyNotUppercase { given: s.to_owned(), suggestion: from_entry(entry) }),
            None => Err(ValueError::UnknownCurrency(s.to_owned())),
        }
    }

    /// The three-letter code, e.g. `"RUB"`.
    pub fn as_str(&self) -> &str {
        // Always ASCII: values are only built from the table or the constants.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Number of digits after the decimal point the currency uses
    /// (2 for RUB, 0 for JPY, 3 for KWD).
    pub fn minor_units(&self) -> u32 {
        // Every constructed value is in the table; 2 is an unreachable fallback.
        lookup(&self.0).map_or(2, |entry| entry.minor_units)
    }

    /// All currencies in the table, in code order (for pick lists and docs).
    pub fn all() -> impl Iterator<Item = Currency> {
        TABLE.iter().map(from_entry)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Serde visitor that accepts a string and validates it with [`Currency::parse`].
struct CurrencyVisitor;

impl Visitor<'_> for CurrencyVisitor {
    type Value = Currency;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO 4217 currency code such as \"RUB\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Currency, E> {
        Currency::parse(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CurrencyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(minor units)` for accepted codes, `Err(message)` for rejected ones.
    fn check(input: &str, expected: Result<u32, &str>) {
        let got = Currency::parse(input)
            .map(|c| {
                assert_eq!(c.as_str(), input, "code must round-trip");
                c.minor_units()
            })
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "input {input:?}");
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<u32, &str>)] = &[
            ("RUB", Ok(2)),
            ("USD", Ok(2)),
            ("EUR", Ok(2)),
            ("CNY", Ok(2)),
            ("KZT", Ok(2)),
            ("BYN", Ok(2)),
            ("GBP", Ok(2)),
            ("JPY", Ok(0)),
            ("KRW", Ok(0)),
            ("KWD", Ok(3)),
            ("BHD", Ok(3)),
            ("XCG", Ok(2)),
            ("rub", Err("currency code \"rub\" must be written in upper case: \"RUB\"")),
            ("Usd", Err("currency code \"Usd\" must be written in upper case: \"USD\"")),
            ("RUR", Err("\"RUR\" is not an ISO 4217 currency code")),
            ("rur", Err("\"rur\" is not an ISO 4217 currency code")),
            ("XXX", Err("\"XXX\" is not an ISO 4217 currency code")),
            ("XTS", Err("\"XTS\" is not an ISO 4217 currency code")),
            ("QQQ", Err("\"QQQ\" is not an ISO 4217 currency code")),
            ("", Err("\"\" is not an ISO 4217 currency code")),
            ("RU", Err("\"RU\" is not an ISO 4217 currency code")),
            ("RUBL", Err("\"RUBL\" is not an ISO 4217 currency code")),
            (" RUB", Err("\" RUB\" is not an ISO 4217 currency code")),
            ("РУБ", Err("\"РУБ\" is not an ISO 4217 currency code")),
        ];
        for (input, expected) in cases {
            check(input, *expected);
        }
    }

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].code < pair[1].code, "{} before {}", pair[0].code, pair[1].code);
        }
        for entry in TABLE {
            assert_eq!(entry.code.len(), 3);
            assert!(entry.code.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(entry.minor_units <= 3, "{}", entry.code);
        }
        assert!(TABLE.len() > 150);
        assert_eq!(Currency::all().count(), TABLE.len());
    }

    #[test]
    fn constants_are_in_the_table() {
        for (c, code) in
            [(Currency::RUB, "RUB"), (Currency::USD, "USD"), (Currency::EUR, "EUR"), (Currency::CNY, "CNY")]
        {
            assert_eq!(Currency::parse(code), Ok(c));
            assert_eq!(c.minor_units(), 2);
        }
    }

    #[test]
    fn display_debug_and_from_str() {
        assert_eq!(Currency::RUB.to_string(), "RUB");
        assert_eq!(format!("{:?}", Currency::EUR), "EUR");
        assert_eq!("CNY".parse::<Currency>(), Ok(Currency::CNY));
        assert!("cny".parse::<Currency>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&Currency::RUB).unwrap();
        assert_eq!(json, "\"RUB\"");
        let back: Currency = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Currency::RUB);

        let err = serde_json::from_str::<Currency>("\"RUR\"").unwrap_err();
        assert!(err.to_string().contains("\"RUR\" is not an ISO 4217 currency code"), "{err}");
        assert!(serde_json::from_str::<Currency>("643").is_err());
    }
}
