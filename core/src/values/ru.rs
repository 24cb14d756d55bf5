//! Russian registration identifiers (INN, KPP, OGRN, BIK, bank accounts) and
//! IBANs: format and check-digit validation, plus generators for synthetic
//! demo data. Input must already be trimmed; whitespace is an error.

use std::fmt;

use super::ValueError;

/// What kind of taxpayer an INN belongs to, as told by its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InnKind {
    /// 10-digit INN of a legal entity.
    Legal,
    /// 12-digit INN of an individual or sole trader.
    Individual,
}

/// What is wrong with an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdProblem {
    /// The string is empty.
    Empty,
    /// The string has the wrong number of characters.
    WrongLength {
        /// The accepted lengths, in words (e.g. `"10 or 12 digits"`).
        expected: &'static str,
        /// The number of characters found.
        found: usize,
    },
    /// A character that is not allowed at its position.
    UnexpectedChar {
        /// 1-based character position in the input.
        position: usize,
        /// The offending character.
        found: char,
        /// What is allowed there, in words (e.g. `"a digit"`).
        expected: &'static str,
    },
    /// A check digit does not match the rest of the number.
    WrongCheckDigit {
        /// 1-based position of the check digit, when the number has several.
        position: Option<usize>,
        /// The check digit the other digits call for.
        expected: u8,
    },
    /// The identifier does not start as it must.
    WrongPrefix {
        /// The required start, in words.
        expected: &'static str,
    },
    /// A bank account's control key (9th digit) does not match the BIK.
    WrongKey {
        /// The BIK the account was checked against.
        bik: String,
        /// The key digit that would make the account valid.
        expected: u8,
    },
    /// An IBAN whose check digits are outside 02..=98.
    ReservedCheckDigits {
        /// The two check digits found.
        found: String,
    },
    /// An IBAN that fails the ISO 13616 mod-97 check.
    ChecksumMismatch,
    /// An IBAN whose country code is not in the IBAN registry.
    UnknownIbanCountry {
        /// The two letters found.
        country: String,
    },
    /// An IBAN whose length or layout after the check digits is not its country's.
    WrongIbanLayout {
        /// The country code.
        country: String,
    },
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdProblem::Empty => f.write_str("is empty"),
            IdProblem::WrongLength { expected, found } => {
                write!(f, "must have {expected}, has {found}")
            }
            IdProblem::UnexpectedChar { position, found, expected } => {
                write!(f, "has {found:?} at position {position} where {expected} is expected")
            }
            IdProblem::WrongCheckDigit { position: None, expected } => {
                write!(f, "has a wrong check digit (expected {expected})")
            }
            IdProblem::WrongCheckDigit { position: Some(position), expected } => {
                write!(f, "has a wrong check digit at position {position} (expected {expected})")
            }
            IdProblem::WrongPrefix { expected } => write!(f, "must start with {expected}"),
            IdProblem::WrongKey { bik, expected } => {
                write!(f, "has a wrong control key for BIK {bik:?} (expected {expected} at position 9)")
            }
            IdProblem::ReservedCheckDigits { found } => {
                write!(f, "has check digits {found:?}; valid IBAN check digits are 02 to 98")
            }
            IdProblem::ChecksumMismatch => f.write_str("fails the ISO 13616 mod-97 check"),
            IdProblem::UnknownIbanCountry { country } => {
                write!(f, "starts with {country:?}, which is not a country of the IBAN registry")
            }
            IdProblem::WrongIbanLayout { country } => write!(
                f,
                "does not have the length and layout of a {country} IBAN (which positions hold letters or digits)"
            ),
        }
    }
}

const INN10_WEIGHTS: [u32; 9] = [2, 4, 10, 3, 5, 9, 4, 6, 8];
const INN12_WEIGHTS_11: [u32; 10] = [7, 2, 4, 10, 3, 5, 9, 4, 6, 8];
const INN12_WEIGHTS_12: [u32; 11] = [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8];
const ACCOUNT_WEIGHTS: [u32; 3] = [7, 1, 3];
/// Index of the control key inside a 20-digit account number.
const KEY_INDEX: usize = 8;

/// Converts an all-digit string of one of the allowed lengths into digit values.
fn digits(s: &str, lengths: &[usize], expected: &'static str) -> Result<Vec<u8>, IdProblem> {
    if s.is_empty() {
        return Err(IdProblem::Empty);
    }
    let mut out = Vec::with_capacity(s.len());
    for (index, c) in s.chars().enumerate() {
        // `to_digit` accepts only ASCII digits, not other Unicode digits.
        let d =
            c.to_digit(10).ok_or(IdProblem::UnexpectedChar { position: index + 1, found: c, expected: "a digit" })?;
        out.push(d as u8);
    }
    if !lengths.contains(&out.len()) {
        return Err(IdProblem::WrongLength { expected, found: out.len() });
    }
    Ok(out)
}

/// Like [`digits`], for the generators: panics with a clear message on bad input.
fn generator_digits(s: &str, len: usize, function: &str) -> Vec<u8> {
    digits(s, &[len], "").unwrap_or_else(|_| panic!("{function} needs exactly {len} ASCII digits, got {s:?}"))
}

fn digits_to_string(d: &[u8]) -> String {
    d.iter().map(|&x| char::from(b'0' + x)).collect()
}

/// INN-style check digit: weighted sum mod 11 mod 10.
fn inn_check_digit(d: &[u8], weights: &[u32]) -> u8 {
    let sum: u32 = d.iter().zip(weights).map(|(&x, &w)| u32::from(x) * w).sum();
    (sum % 11 % 10) as u8
}

/// Verifies the check digit at `index` against the weighted sum of the digits before it.
fn expect_inn_digit(d: &[u8], index: usize, weights: &[u32], report_position: bool) -> Result<(), IdProblem> {
    let expected = inn_check_digit(&d[..index], weights);
    if d[index] == expected {
        Ok(())
    } else {
        Err(IdProblem::WrongCheckDigit { position: report_position.then_some(index + 1), expected })
    }
}

/// Validates an INN (ИНН): 10 digits for a legal entity, 12 for an
/// individual or sole trader, with their check digits.
pub fn check_inn(s: &str) -> Result<InnKind, ValueError> {
    let bad = |problem| ValueError::BadInn { value: s.to_owned(), problem };
    let d = digits(s, &[10, 12], "10 or 12 digits").map_err(bad)?;
    if d.len() == 10 {
        expect_inn_digit(&d, 9, &INN10_WEIGHTS, false).map_err(bad)?;
        Ok(InnKind::Legal)
    } else {
        expect_inn_digit(&d, 10, &INN12_WEIGHTS_11, true).map_err(bad)?;
        expect_inn_digit(&d, 11, &INN12_WEIGHTS_12, true).map_err(bad)?;
        Ok(InnKind::Individual)
    }
}

/// Validates a KPP (КПП): 9 characters — 4 digits, 2 characters that are
/// each a digit or an upper-case Latin letter, then 3 digits.
pub fn check_kpp(s: &str) -> Result<(), ValueError> {
    let bad = |problem| ValueError::BadKpp { value: s.to_owned(), problem };
    if s.is_empty() {
        return Err(bad(IdProblem::Empty));
    }
    for (index, c) in s.chars().enumerate() {
        let letter_allowed = index == 4 || index == 5;
        let ok = c.is_ascii_digit() || (letter_allowed && c.is_ascii_uppercase());
        if !ok && index < 9 {
            let expected = if letter_allowed { "a digit or an upper-case Latin letter" } else { "a digit" };
            return Err(bad(IdProblem::UnexpectedChar { position: index + 1, found: c, expected }));
        }
    }
    let found = s.chars().count();
    if found != 9 {
        return Err(bad(IdProblem::WrongLength { expected: "9 characters", found }));
    }
    Ok(())
}

/// Check digit of an OGRN (13 digits) or OGRNIP (15 digits) from the digits before it.
fn ogrn_check_digit(d: &[u8]) -> u8 {
    let number = d.iter().fold(0u64, |n, &x| n * 10 + u64::from(x));
    let modulus = if d.len() == 12 { 11 } else { 13 };
    (number % modulus % 10) as u8
}

/// Validates an OGRN (ОГРН, 13 digits, legal entities) or OGRNIP
/// (ОГРНИП, 15 digits, sole traders) including its check digit.
pub fn check_ogrn(s: &str) -> Result<(), ValueError> {
    let bad = |problem| ValueError::BadOgrn { value: s.to_owned(), problem };
    let d = digits(s, &[13, 15], "13 digits (OGRN) or 15 digits (OGRNIP)").map_err(bad)?;
    let last = d.len() - 1;
    let expected = ogrn_check_digit(&d[..last]);
    if d[last] != expected {
        return Err(bad(IdProblem::WrongCheckDigit { position: None, expected }));
    }
    Ok(())
}

/// Validates a Russian BIK (БИК): 9 digits starting with `04`.
pub fn check_bik(s: &str) -> Result<(), ValueError> {
    bik_digits(s).map(|_| ())
}

fn bik_digits(s: &str) -> Result<Vec<u8>, ValueError> {
    let bad = |problem| ValueError::BadBik { value: s.to_owned(), problem };
    let d = digits(s, &[9], "9 digits").map_err(bad)?;
    if !s.starts_with("04") {
        return Err(bad(IdProblem::WrongPrefix { expected: "\"04\" (Russian BIK)" }));
    }
    Ok(d)
}

/// Central Bank control sum over a 3-digit prefix and a 20-digit account:
/// Σ (low digit of dᵢ·wᵢ) with weights 7, 1, 3 repeating.
fn account_control_sum(prefix: &[u8], account: &[u8]) -> u32 {
    prefix.iter().chain(account).zip(ACCOUNT_WEIGHTS.iter().cycle()).map(|(&d, &w)| u32::from(d) * w % 10).sum()
}

/// The control key digit (index 8) that makes `account` valid for `prefix`.
fn account_key(prefix: &[u8], account: &[u8]) -> u8 {
    let mut zeroed = account.to_vec();
    zeroed[KEY_INDEX] = 0;
    let sum = account_control_sum(prefix, &zeroed);
    // The key sits at position 11 of the 23 digits, so its weight is 3;
    // 3·k ≡ −sum (mod 10) gives k = 3·sum mod 10 (because 3·3 = 9 ≡ −1).
    (sum % 10 * 3 % 10) as u8
}

/// Checks a 20-digit account's key against a 3-digit prefix.
fn check_key(prefix: &[u8], account: &[u8], bik: &str) -> Result<(), IdProblem> {
    if account_control_sum(prefix, account).is_multiple_of(10) {
        Ok(())
    } else {
        Err(IdProblem::WrongKey { bik: bik.to_owned(), expected: account_key(prefix, account) })
    }
}

/// Validates a 20-digit settlement account (расчётный счёт) against the BIK
/// of its bank: the control key uses the last 3 digits of the BIK.
pub fn check_account(account: &str, bik: &str) -> Result<(), ValueError> {
    let b = bik_digits(bik)?;
    let bad = |problem| ValueError::BadAccount { value: account.to_owned(), problem };
    let a = digits(account, &[20], "20 digits").map_err(bad)?;
    check_key(&b[6..9], &a, bik).map_err(bad)
}

/// Validates a 20-digit correspondent account (корреспондентский счёт)
/// against the BIK: it must start with `301`, and its control key uses
/// `0` followed by BIK digits 5–6.
pub fn check_corr_account(corr: &str, bik: &str) -> Result<(), ValueError> {
    let b = bik_digits(bik)?;
    let bad = |problem| ValueError::BadCorrAccount { value: corr.to_owned(), problem };
    let a = digits(corr, &[20], "20 digits").map_err(bad)?;
    if !corr.starts_with("301") {
        return Err(bad(IdProblem::WrongPrefix { expected: "\"301\"" }));
    }
    check_key(&[0, b[4], b[5]], &a, bik).map_err(bad)
}

/// Appends the check digit to the first 9 digits of a legal-entity INN.
///
/// For generating synthetic data. Panics if `first9` is not exactly 9 ASCII digits.
pub fn complete_inn10(first9: &str) -> String {
    let d = generator_digits(first9, 9, "complete_inn10");
    format!("{first9}{}", inn_check_digit(&d, &INN10_WEIGHTS))
}

/// Appends both check digits to the first 10 digits of an individual's INN.
///
/// For generating synthetic data. Panics if `first10` is not exactly 10 ASCII digits.
pub fn complete_inn12(first10: &str) -> String {
    let mut d = generator_digits(first10, 10, "complete_inn12");
    d.push(inn_check_digit(&d, &INN12_WEIGHTS_11));
    d.push(inn_check_digit(&d, &INN12_WEIGHTS_12));
    digits_to_string(&d)
}

/// Appends the check digit to the first 12 digits of an OGRN.
///
/// For generating synthetic data. Panics if `first12` is not exactly 12 ASCII digits.
pub fn complete_ogrn(first12: &str) -> String {
    let d = generator_digits(first12, 12, "complete_ogrn");
    format!("{first12}{}", ogrn_check_digit(&d))
}

/// Returns `account_with_zero_key` with the correct control key (the 9th
/// digit, index 8) for `bik`; whatever digit was at index 8 is replaced.
///
/// For generating synthetic data. Panics if `bik` is not exactly 9 ASCII
/// digits or `account_with_zero_key` is not exactly 20 ASCII digits.
pub fn complete_account(bik: &str, account_with_zero_key: &str) -> String {
    let b = generator_digits(bik, 9, "complete_account (bik)");
    let mut a = generator_digits(account_with_zero_key, 20, "complete_account (account)");
    a[KEY_INDEX] = account_key(&b[6..9], &a);
    digits_to_string(&a)
}

/// Validates an IBAN (ISO 13616): spaces are allowed and ignored, letters
/// may be in either case; 15 to 34 characters, a two-letter country code,
/// two check digits in 02..=98, and the mod-97 check must give 1. Then the
/// country's entry in the IBAN registry (the `iban_validate` crate's copy of
/// SWIFT's registry) decides: the country must be there, and the IBAN must
/// have its length and layout (`DE` 22 characters, all digits after the check
/// digits; `GB` 22, four letters of the bank code first).
pub fn check_iban(s: &str) -> Result<(), ValueError> {
    let bad = |problem| ValueError::BadIban { value: s.to_owned(), problem };
    let chars = iban_chars(s).map_err(bad)?;
    check_iban_layout(&chars).map_err(bad)?;
    let check: String = chars[2..4].iter().map(|&(_, c)| c).collect();
    if !("02"..="98").contains(&check.as_str()) {
        return Err(bad(IdProblem::ReservedCheckDigits { found: check }));
    }
    let rearranged = chars[4..].iter().chain(&chars[..4]).map(|&(_, c)| c);
    if iban_mod97(rearranged) != 1 {
        return Err(bad(IdProblem::ChecksumMismatch));
    }
    let electronic: String = chars.iter().map(|&(_, c)| c).collect();
    let country: String = electronic[..2].to_string();
    match electronic.parse::<iban::Iban>() {
        Ok(_) => Ok(()),
        Err(iban::ParseIbanError::UnknownCountry(_)) => Err(bad(IdProblem::UnknownIbanCountry { country })),
        Err(iban::ParseIbanError::InvalidBban(_)) => Err(bad(IdProblem::WrongIbanLayout { country })),
        // The shape and the checksum were checked above, more precisely.
        Err(iban::ParseIbanError::InvalidBaseIban { .. }) => Err(bad(IdProblem::ChecksumMismatch)),
    }
}

/// The IBAN's non-space characters, upper-cased, with their 1-based
/// positions in the input; rejects anything but ASCII letters and digits.
fn iban_chars(s: &str) -> Result<Vec<(usize, char)>, IdProblem> {
    let mut out = Vec::new();
    for (index, c) in s.chars().enumerate() {
        if c == ' ' {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            return Err(IdProblem::UnexpectedChar {
                position: index + 1,
                found: c,
                expected: "a Latin letter or a digit",
            });
        }
        out.push((index + 1, c.to_ascii_uppercase()));
    }
    if out.is_empty() {
        return Err(IdProblem::Empty);
    }
    if !(15..=34).contains(&out.len()) {
        return Err(IdProblem::WrongLength { expected: "15 to 34 letters and digits", found: out.len() });
    }
    Ok(out)
}

/// Checks the country code (2 letters) and check digits (2 digits).
fn check_iban_layout(chars: &[(usize, char)]) -> Result<(), IdProblem> {
    for (i, &(position, c)) in chars[..4].iter().enumerate() {
        let (ok, expected) = if i < 2 {
            (c.is_ascii_alphabetic(), "a letter of the country code")
        } else {
            (c.is_ascii_digit(), "a check digit")
        };
        if !ok {
            return Err(IdProblem::UnexpectedChar { position, found: c, expected });
        }
    }
    Ok(())
}

/// Remainder mod 97 of the number formed by replacing A..Z with 10..35.
fn iban_mod97(chars: impl Iterator<Item = char>) -> u32 {
    chars.fold(0u32, |rem, c| match c.to_digit(36) {
        Some(v) if v < 10 => (rem * 10 + v) % 97,
        Some(v) => (rem * 100 + v) % 97,
        None => rem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on every input and compares with `Ok(..)` or `Err(message)`.
    fn check<T: PartialEq + fmt::Debug + Clone>(
        f: impl Fn(&str) -> Result<T, ValueError>,
        cases: &[(&str, Result<T, &str>)],
    ) {
        for (input, expected) in cases {
            let got = f(input).map_err(|e| e.to_string());
            let expected = expected.clone().map_err(str::to_owned);
            assert_eq!(got, expected, "input {input:?}");
        }
    }

    /// Replaces the digit at `index` with the next digit (mod 10).
    fn bump(s: &str, index: usize) -> String {
        let mut b = s.as_bytes().to_vec();
        b[index] = b'0' + (b[index] - b'0' + 1) % 10;
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn inn_table() {
        check(
            check_inn,
            &[
                ("7707083893", Ok(InnKind::Legal)), // Sberbank
                ("7736207543", Ok(InnKind::Legal)), // Yandex
                ("500100732259", Ok(InnKind::Individual)),
                // Often quoted as Sberbank's INN, but the check digit says otherwise.
                ("7707083894", Err("INN \"7707083894\" has a wrong check digit (expected 3)")),
                ("7736207540", Err("INN \"7736207540\" has a wrong check digit (expected 3)")),
                ("500100732269", Err("INN \"500100732269\" has a wrong check digit at position 11 (expected 5)")),
                ("500100732258", Err("INN \"500100732258\" has a wrong check digit at position 12 (expected 9)")),
                ("", Err("INN \"\" is empty")),
                ("770708389", Err("INN \"770708389\" must have 10 or 12 digits, has 9")),
                ("77070838941", Err("INN \"77070838941\" must have 10 or 12 digits, has 11")),
                ("770708389x", Err("INN \"770708389x\" has 'x' at position 10 where a digit is expected")),
                (" 7707083893", Err("INN \" 7707083893\" has ' ' at position 1 where a digit is expected")),
                (
                    "77О7083893", // Cyrillic О
                    Err("INN \"77О7083893\" has 'О' at position 3 where a digit is expected"),
                ),
                (
                    "７７07083893", // full-width digits
                    Err("INN \"７７07083893\" has '７' at position 1 where a digit is expected"),
                ),
            ],
        );
    }

    #[test]
    fn inn12_every_position_is_guarded() {
        let valid = "500100732259";
        assert_eq!(check_inn(valid), Ok(InnKind::Individual));
        for index in 0..12 {
            let broken = bump(valid, index);
            let err = check_inn(&broken).unwrap_err();
            assert!(
                matches!(err, ValueError::BadInn { problem: IdProblem::WrongCheckDigit { .. }, .. }),
                "{broken}: {err}"
            );
        }
        // Changing only the 12th digit is caught by the second check digit.
        let err = check_inn(&bump(valid, 11)).unwrap_err();
        assert!(err.to_string().contains("at position 12"), "{err}");
    }

    #[test]
    fn inn10_every_position_is_guarded() {
        for valid in ["7707083893", "7736207543"] {
            for index in 0..10 {
                assert!(check_inn(&bump(valid, index)).is_err(), "{valid} at {index}");
            }
        }
    }

    #[test]
    fn inn_generators_round_trip() {
        assert_eq!(complete_inn10("770708389"), "7707083893");
        assert_eq!(complete_inn10("773620754"), "7736207543");
        assert_eq!(complete_inn12("5001007322"), "500100732259");
        for seed in 0..1000u64 {
            let first9 = format!("{:09}", seed * 7_919_111 % 1_000_000_000);
            assert_eq!(check_inn(&complete_inn10(&first9)), Ok(InnKind::Legal));
            let first10 = format!("{:010}", seed * 7_919_111_113 % 10_000_000_000);
            assert_eq!(check_inn(&complete_inn12(&first10)), Ok(InnKind::Individual));
        }
    }

    #[test]
    #[should_panic(expected = "complete_inn10 needs exactly 9 ASCII digits")]
    fn inn_generator_panics_on_bad_input() {
        complete_inn10("12345678x");
    }

    #[test]
    fn kpp_table() {
        check(
            check_kpp,
            &[
                ("773601001", Ok(())),
                ("7736AB001", Ok(())),
                ("77360Z001", Ok(())),
                ("", Err("KPP \"\" is empty")),
                ("77360100", Err("KPP \"77360100\" must have 9 characters, has 8")),
                ("7736010010", Err("KPP \"7736010010\" must have 9 characters, has 10")),
                (
                    "7736ab001",
                    Err("KPP \"7736ab001\" has 'a' at position 5 where a digit or an upper-case Latin letter is expected"),
                ),
                (
                    "773A01001",
                    Err("KPP \"773A01001\" has 'A' at position 4 where a digit is expected"),
                ),
                (
                    "7736010A1",
                    Err("KPP \"7736010A1\" has 'A' at position 8 where a digit is expected"),
                ),
                (
                    "7736ЖЖ001",
                    Err("KPP \"7736ЖЖ001\" has 'Ж' at position 5 where a digit or an upper-case Latin letter is expected"),
                ),
            ],
        );
    }

    #[test]
    fn ogrn_table() {
        check(
            check_ogrn,
            &[
                ("1027700132195", Ok(())), // Sberbank
                ("1027700229193", Ok(())), // Yandex
                ("304500116000157", Ok(())),
                ("1027700132194", Err("OGRN \"1027700132194\" has a wrong check digit (expected 5)")),
                ("304500116000158", Err("OGRN \"304500116000158\" has a wrong check digit (expected 7)")),
                ("10277001321", Err("OGRN \"10277001321\" must have 13 digits (OGRN) or 15 digits (OGRNIP), has 11")),
                (
                    "10277001321955",
                    Err("OGRN \"10277001321955\" must have 13 digits (OGRN) or 15 digits (OGRNIP), has 14"),
                ),
                ("102770013219-", Err("OGRN \"102770013219-\" has '-' at position 13 where a digit is expected")),
                ("", Err("OGRN \"\" is empty")),
            ],
        );
    }

    #[test]
    fn ogrn_generator_round_trips() {
        assert_eq!(complete_ogrn("102770013219"), "1027700132195");
        for seed in 0..1000u64 {
            let first12 = format!("{:012}", seed * 7_919_111_113_117 % 1_000_000_000_000);
            assert_eq!(check_ogrn(&complete_ogrn(&first12)), Ok(()), "{first12}");
        }
    }

    #[test]
    fn bik_table() {
        check(
            check_bik,
            &[
                ("044525225", Ok(())),
                ("044525974", Ok(())),
                ("", Err("BIK \"\" is empty")),
                ("04452522", Err("BIK \"04452522\" must have 9 digits, has 8")),
                ("144525225", Err("BIK \"144525225\" must start with \"04\" (Russian BIK)")),
                ("04452522O", Err("BIK \"04452522O\" has 'O' at position 9 where a digit is expected")),
            ],
        );
    }

    #[test]
    fn real_corr_account_pairs() {
        // Published correspondent accounts of Sberbank (Moscow) and T-Bank.
        assert_eq!(check_corr_account("30101810400000000225", "044525225"), Ok(()));
        assert_eq!(check_corr_account("30101810145250000974", "044525974"), Ok(()));
    }

    #[test]
    fn account_table() {
        let bik = "044525225";
        let valid = complete_account(bik, "40702810000000000001");
        let wrong_key = bump(&valid, 8);
        let key = valid.as_bytes()[8] - b'0';
        let cases = vec![
            (valid.clone(), Ok(())),
            (
                wrong_key.clone(),
                Err(format!(
                    "account \"{wrong_key}\" has a wrong control key for BIK \"044525225\" (expected {key} at position 9)"
                )),
            ),
            (
                "4070281000000000000".to_owned(),
                Err("account \"4070281000000000000\" must have 20 digits, has 19".to_owned()),
            ),
            (
                "4070281000000000000a".to_owned(),
                Err("account \"4070281000000000000a\" has 'a' at position 20 where a digit is expected".to_owned()),
            ),
        ];
        for (account, expected) in cases {
            assert_eq!(check_account(&account, bik).map_err(|e| e.to_string()), expected, "{account}");
        }
        assert_eq!(
            check_account(&valid, "144525225").unwrap_err().to_string(),
            "BIK \"144525225\" must start with \"04\" (Russian BIK)"
        );
        // The example pair from the design notes: the key digit is 6, not 9.
        assert_eq!(
            check_account("40702810938000000000", bik).unwrap_err().to_string(),
            "account \"40702810938000000000\" has a wrong control key for BIK \"044525225\" (expected 6 at position 9)"
        );
        assert_eq!(complete_account(bik, "40702810938000000000"), "40702810638000000000");
        assert_eq!(check_account("40702810638000000000", bik), Ok(()));
        // The same account is (almost always) wrong for another bank.
        assert!(check_account(&valid, "044525974").is_err());
    }

    #[test]
    fn account_generator_round_trips_and_every_digit_is_guarded() {
        for (bik, seed) in [("044525225", 1u64), ("044525974", 2), ("040702615", 3), ("045004641", 4)] {
            for n in 0..200u64 {
                let raw = format!("40702810{:012}", (n * 1_000_003 + seed) % 1_000_000_000_000);
                let account = complete_account(bik, &raw);
                assert_eq!(account.len(), 20);
                assert_eq!(&account[..8], &raw[..8]);
                assert_eq!(&account[9..], &raw[9..]);
                assert_eq!(check_account(&account, bik), Ok(()), "{bik} {account}");
                for index in 0..20 {
                    assert!(check_account(&bump(&account, index), bik).is_err(), "{account} @ {index}");
                }
            }
        }
    }

    #[test]
    fn corr_account_table() {
        let bik = "044525225";
        check(
            |corr| check_corr_account(corr, bik),
            &[
                ("30101810400000000225", Ok(())),
                (
                    "30101810500000000225",
                    Err("correspondent account \"30101810500000000225\" has a wrong control key for BIK \"044525225\" (expected 4 at position 9)"),
                ),
                (
                    "40702810400000000225",
                    Err("correspondent account \"40702810400000000225\" must start with \"301\""),
                ),
                (
                    "3010181040000000022",
                    Err("correspondent account \"3010181040000000022\" must have 20 digits, has 19"),
                ),
            ],
        );
        // Settlement-account and correspondent-account keys use different prefixes.
        assert!(check_account("30101810400000000225", bik).is_err());
    }

    #[test]
    fn iban_table() {
        check(
            check_iban,
            &[
                ("GB82WEST12345698765432", Ok(())),
                ("GB82 WEST 1234 5698 7654 32", Ok(())),
                ("gb82west12345698765432", Ok(())),
                ("DE89370400440532013000", Ok(())),
                ("FR1420041010050500013M02606", Ok(())),
                ("GB82WEST12345698765433", Err("IBAN \"GB82WEST12345698765433\" fails the ISO 13616 mod-97 check")),
                ("GB83WEST12345698765432", Err("IBAN \"GB83WEST12345698765432\" fails the ISO 13616 mod-97 check")),
                ("", Err("IBAN \"\" is empty")),
                ("   ", Err("IBAN \"   \" is empty")),
                ("GB82WEST1234", Err("IBAN \"GB82WEST1234\" must have 15 to 34 letters and digits, has 12")),
                (
                    "GB82-WEST-12345698765432",
                    Err("IBAN \"GB82-WEST-12345698765432\" has '-' at position 5 where a Latin letter or a digit is expected"),
                ),
                (
                    "1282WEST12345698765432",
                    Err("IBAN \"1282WEST12345698765432\" has '1' at position 1 where a letter of the country code is expected"),
                ),
                (
                    "GBX2WEST12345698765432",
                    Err("IBAN \"GBX2WEST12345698765432\" has 'X' at position 3 where a check digit is expected"),
                ),
                (
                    "GB01WEST12345698765432",
                    Err("IBAN \"GB01WEST12345698765432\" has check digits \"01\"; valid IBAN check digits are 02 to 98"),
                ),
                // The checksum holds; the country's registry entry does not.
                (
                    "DE5137040044053201300",
                    Err("IBAN \"DE5137040044053201300\" does not have the length and layout of a DE IBAN (which positions hold letters or digits)"),
                ),
                (
                    "GB25123412345698765432",
                    Err("IBAN \"GB25123412345698765432\" does not have the length and layout of a GB IBAN (which positions hold letters or digits)"),
                ),
                (
                    "ZZ591234567890123456",
                    Err("IBAN \"ZZ591234567890123456\" starts with \"ZZ\", which is not a country of the IBAN registry"),
                ),
            ],
        );
    }

    #[test]
    fn iban_every_digit_is_guarded() {
        let valid = "GB82WEST12345698765432";
        for index in (2..4).chain(8..22) {
            assert!(check_iban(&bump(valid, index)).is_err(), "{index}");
        }
    }
}
