//! Phone number validation and normalization to E.164 (`+79123456789`), so
//! that contacts are stored in one canonical, dialable form whatever way
//! they were typed (`8 (912) 345-67-89`, `+7 912 345 67 89`, ...).

use std::fmt;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, ParseError, PhoneNumber};

use super::ValueError;

/// Longer input is rejected before parsing; no real number with formatting comes close.
const MAX_INPUT_CHARS: usize = 64;

/// A region without a national (trunk) prefix, used to parse fully
/// international numbers without the library stripping digits from them
/// (see [`workaround_candidates`]).
const NEUTRAL_REGION: Id = Id::IT;

/// What is wrong with a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhoneProblem {
    /// Nothing but whitespace.
    Empty,
    /// No phone number could be read from the text.
    NotANumber,
    /// The number starts with `+` and a country calling code that does not exist.
    UnknownCountryCode,
    /// The number has the shape of a phone number but is not a valid one.
    Invalid {
        /// The region the number was checked for (from its country code, or the default region).
        region: String,
        /// A more precise reason, such as `"too short"`, when known.
        detail: Option<&'static str>,
    },
    /// The number carries an extension, which E.164 cannot represent.
    HasExtension,
}

impl fmt::Display for PhoneProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneProblem::Empty => f.write_str("is empty"),
            PhoneProblem::NotANumber => f.write_str("is not a phone number"),
            PhoneProblem::UnknownCountryCode => f.write_str("has an unknown country calling code"),
            PhoneProblem::Invalid { region, detail } => {
                write!(f, "is not a valid number for region {region}")?;
                match detail {
                    Some(detail) => write!(f, " ({detail})"),
                    None => Ok(()),
                }
            }
            PhoneProblem::HasExtension => f.write_str("has an extension; enter the number without it"),
        }
    }
}

/// Checks that `region` is a two-letter upper-case region code the phone
/// metadata knows (e.g. `"RU"`, `"DE"`); for validating configuration.
pub fn check_region(region: &str) -> Result<(), ValueError> {
    region_id(region).map(|_| ())
}

/// The library id of a known region. Regions that exist as ids but have no
/// metadata (e.g. `AQ`) are rejected too: the library would panic on them.
fn region_id(region: &str) -> Result<Id, ValueError> {
    let unknown = || ValueError::UnknownRegion(region.to_owned());
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(unknown());
    }
    let id: Id = region.parse().map_err(|_| unknown())?;
    DATABASE.by_id(region).ok_or_else(unknown)?;
    Ok(id)
}

/// Parses a phone number and returns it in E.164 form (`+79123456789`).
///
/// Numbers starting with `+` carry their own country code; other numbers
/// are read as dialled in `default_region` (a two-letter code such as
/// `"RU"`), so Russian `8 (912) 345-67-89` becomes `+79123456789`. The
/// number must be valid according to the phone metadata, and must not have
/// an extension. Surrounding whitespace is ignored.
pub fn normalize_phone(s: &str, default_region: &str) -> Result<String, ValueError> {
    let region = region_id(default_region)?;
    let bad = |problem| ValueError::BadPhone { value: s.to_owned(), problem };
    let input = s.trim();
    if input.is_empty() {
        return Err(bad(PhoneProblem::Empty));
    }
    if input.chars().count() > MAX_INPUT_CHARS {
        return Err(bad(PhoneProblem::Invalid { region: default_region.to_owned(), detail: Some("too long") }));
    }
    let number = parse_valid(input, region, default_region).map_err(bad)?;
    if number.extension().is_some() {
        return Err(bad(PhoneProblem::HasExtension));
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

/// Parses `input` and returns the number only if it is valid.
fn parse_valid(input: &str, region: Id, region_name: &str) -> Result<PhoneNumber, PhoneProblem> {
    let first = phonenumber::parse(Some(region), input);
    if let Ok(number) = &first {
        if phonenumber::is_valid(number) {
            return Ok(number.clone());
        }
    }
    let retried = workaround_candidates(input, region)
        .into_iter()
        .filter_map(|candidate| phonenumber::parse(Some(NEUTRAL_REGION), candidate).ok())
        .find(phonenumber::is_valid);
    if let Some(number) = retried {
        return Ok(number);
    }
    Err(match first {
        Ok(number) => PhoneProblem::Invalid {
            region: number.country().id().map_or_else(|| region_name.to_owned(), |id| id.as_ref().to_owned()),
            detail: None,
        },
        Err(error) => parse_error_problem(&error, region_name),
    })
}

/// Alternative spellings of `input` to try when the library rejects it.
///
/// phonenumber 0.3.10 strips the national prefix (`8` in Russia) from the
/// national number even when it is part of the number itself, so
/// `+7 800 555-35-35`, `8 (812) 123-45-67` (St Petersburg) or
/// `8 (861) ...` come out one digit short and invalid
/// (whisperfish/rust-phonenumber#76). Fully international spellings parsed
/// with a region that has no national prefix are not affected, so this
/// builds those: the input itself if it starts with `+`; otherwise, for
/// input made of digits and common separators, `+<country code><digits>`
/// first without and then with a leading national prefix removed last.
fn workaround_candidates(input: &str, region: Id) -> Vec<String> {
    if input.starts_with('+') {
        return vec![input.to_owned()];
    }
    let plain = input.chars().all(|c| c.is_ascii_digit() || " -().".contains(c));
    let Some(meta) = DATABASE.by_id(region.as_ref()).filter(|_| plain) else {
        return Vec::new();
    };
    let digits: String = input.chars().filter(char::is_ascii_digit).collect();
    let code = meta.country_code();
    let mut candidates = Vec::new();
    if let Some(rest) = meta.national_prefix().and_then(|p| digits.strip_prefix(p)) {
        candidates.push(format!("+{code}{rest}"));
    }
    candidates.push(format!("+{code}{digits}"));
    candidates
}

/// Explains a parse failure of the phonenumber library.
fn parse_error_problem(error: &ParseError, region_name: &str) -> PhoneProblem {
    let invalid = |detail| PhoneProblem::Invalid { region: region_name.to_owned(), detail: Some(detail) };
    match error {
        ParseError::InvalidCountryCode => PhoneProblem::UnknownCountryCode,
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => invalid("too short"),
        ParseError::TooLong => invalid("too long"),
        _ => PhoneProblem::NotANumber,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(e164)` or `Err(message)`.
    fn check(input: (&str, &str), expected: Result<&str, &str>) {
        let got = normalize_phone(input.0, input.1).map_err(|e| e.to_string());
        assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "input {input:?}");
    }

    #[test]
    fn valid_numbers() {
        let cases = [
            // Russian mobile, every common spelling.
            (("8 (912) 345-67-89", "RU"), "+79123456789"),
            (("89123456789", "RU"), "+79123456789"),
            (("+7 912 345 67 89", "RU"), "+79123456789"),
            (("+7(912)345-67-89", "RU"), "+79123456789"),
            (("7 912 345 67 89", "RU"), "+79123456789"),
            (("79123456789", "RU"), "+79123456789"),
            (("912 345-67-89", "RU"), "+79123456789"),
            (("  +79123456789  ", "RU"), "+79123456789"),
            // Moscow landline.
            (("+7 495 123-45-67", "RU"), "+74951234567"),
            (("8 (495) 123-45-67", "RU"), "+74951234567"),
            // Numbers whose national part starts with 8 (library bug workaround).
            (("8 (800) 555-35-35", "RU"), "+78005553535"),
            (("+7 800 555 35 35", "RU"), "+78005553535"),
            (("8 (812) 123-45-67", "RU"), "+78121234567"),
            (("+7 812 123-45-67", "RU"), "+78121234567"),
            (("812 123-45-67", "RU"), "+78121234567"),
            (("8 (861) 234-56-78", "RU"), "+78612345678"),
            (("+375 800 111111", "RU"), "+375800111111"),
            // Kazakhstan shares +7.
            (("+7 7172 123456", "RU"), "+77172123456"),
            // German numbers, from Russia and from Germany.
            (("+49 30 1234567", "RU"), "+49301234567"),
            (("030 1234567", "DE"), "+49301234567"),
            (("8 10 49 30 1234567", "RU"), "+49301234567"),
            // A '+' number ignores the default region.
            (("+7 912 345 67 89", "DE"), "+79123456789"),
            (("+1 650 253 0000", "RU"), "+16502530000"),
        ];
        for (input, expected) in cases {
            check(input, Ok(expected));
            // Normalizing is idempotent, whatever the default region.
            check((expected, input.1), Ok(expected));
            check((expected, "US"), Ok(expected));
        }
    }

    #[test]
    fn invalid_numbers() {
        let cases = [
            (("", "RU"), "phone \"\" is empty"),
            (("   ", "RU"), "phone \"   \" is empty"),
            (("abc", "RU"), "phone \"abc\" is not a phone number"),
            (("call me", "RU"), "phone \"call me\" is not a phone number"),
            (("+", "RU"), "phone \"+\" is not a phone number"),
            (("+7 123", "RU"), "phone \"+7 123\" is not a valid number for region RU"),
            (("123", "RU"), "phone \"123\" is not a valid number for region RU"),
            (("8 912 345 67", "RU"), "phone \"8 912 345 67\" is not a valid number for region RU"),
            (("+7 912 345 67 890", "RU"), "phone \"+7 912 345 67 890\" is not a valid number for region RU"),
            (("+49 123", "RU"), "phone \"+49 123\" is not a valid number for region DE"),
            (("+999 123456", "RU"), "phone \"+999 123456\" has an unknown country calling code"),
            (
                ("+7 912 345 67 89 ext. 123", "RU"),
                "phone \"+7 912 345 67 89 ext. 123\" has an extension; enter the number without it",
            ),
        ];
        for (input, expected) in cases {
            check(input, Err(expected));
        }
        let long = "1".repeat(65);
        check((&long, "RU"), Err(&format!("phone \"{long}\" is not a valid number for region RU (too long)")));
    }

    #[test]
    fn regions() {
        assert_eq!(check_region("RU"), Ok(()));
        assert_eq!(check_region("DE"), Ok(()));
        for bad in ["ru", "R", "RUS", "", "XX", "ZZ", "AQ", "001", " RU"] {
            let err = check_region(bad).unwrap_err();
            assert_eq!(err, ValueError::UnknownRegion(bad.to_owned()));
        }
        assert_eq!(
            check_region("XX").unwrap_err().to_string(),
            "\"XX\" is not a known phone region code (expected two upper-case letters such as \"RU\")"
        );
        assert_eq!(normalize_phone("+79123456789", "XX"), Err(ValueError::UnknownRegion("XX".to_owned())));
        // A region id without metadata must not reach the library (it would panic).
        assert!(normalize_phone("+79123456789", "AQ").is_err());
    }

    #[test]
    fn neutral_region_has_no_national_prefix() {
        let meta = DATABASE.by_id(NEUTRAL_REGION.as_ref()).unwrap();
        assert_eq!(meta.national_prefix(), None);
        assert!(meta.national_prefix_for_parsing().is_none());
    }

    #[test]
    fn odd_input_does_not_panic() {
        let inputs = [
            "  2 22#:",
            "003-836-4618x3001",
            "++++",
            "+-+-",
            "(((",
            "8",
            "88",
            "+0",
            "+00 1",
            "tel:+7-912-345-67-89",
            "tel:",
            "1-800-FLOWERS",
            "７９１２３４５６７８９",
            "+7 ９１２",
            "8\u{200F}912",
            "x123",
            ";ext=1",
            "+7;ext=",
            "0000000000000000",
            "+8888888888888",
        ];
        for region in ["RU", "CH", "US", "DE", "KZ", "GB"] {
            for input in inputs {
                let _ = normalize_phone(input, region);
            }
        }
    }
}
