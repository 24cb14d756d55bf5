//! E-mail address validation and normalization, so that contacts are stored
//! in one canonical form (`local@lowercased-ascii-domain`) and obvious typos are
//! caught at input time.

use std::fmt;

use super::ValueError;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;
/// RFC 5321 limit on a forward path (the address without angle brackets).
const MAX_ADDRESS: usize = 254;
const LOCAL_SPECIALS: &str = ".!#$%&'*+/=?^_`{|}~-";

/// What is wrong with an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailProblem {
    /// Nothing but whitespace.
    Empty,
    /// No `@` at all.
    NoAt,
    /// More than one `@`.
    SeveralAts,
    /// Longer than 254 characters.
    TooLong,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// More than 64 characters before the `@`.
    LocalPartTooLong,
    /// A character not allowed before the `@`.
    BadLocalChar(char),
    /// The part before the `@` starts or ends with a dot.
    LocalPartEdgeDot,
    /// Two dots in a row before the `@`.
    LocalPartDoubleDot,
    /// Nothing after the `@`.
    EmptyDomain,
    /// More than 253 characters after the `@`.
    DomainTooLong,
    /// An internationalized domain (non-ASCII, or with `xn--` labels) that is not a valid
    /// IDNA domain name.
    BadInternationalDomain,
    /// A character not allowed in a domain.
    BadDomainChar(char),
    /// An empty domain label (leading, trailing or double dot).
    EmptyLabel,
    /// A domain label longer than 63 characters.
    LabelTooLong(String),
    /// A domain label starting or ending with `-`.
    LabelEdgeHyphen(String),
    /// The domain has a single label.
    NoTopLevelDomain,
    /// The last label is not alphabetic with at least two letters.
    BadTopLevelDomain(String),
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmailProblem::Empty => f.write_str("is empty"),
            EmailProblem::NoAt => f.write_str("has no '@'"),
            EmailProblem::SeveralAts => f.write_str("has more than one '@'"),
            EmailProblem::TooLong => write!(f, "is longer than {MAX_ADDRESS} characters"),
            EmailProblem::EmptyLocalPart => f.write_str("has nothing before the '@'"),
            EmailProblem::LocalPartTooLong => {
                write!(f, "has more than {MAX_LOCAL} characters before the '@'")
            }
            EmailProblem::BadLocalChar(c) => {
                write!(f, "has {c:?} before the '@', which is not allowed")
            }
            EmailProblem::LocalPartEdgeDot => f.write_str("has a dot at the start or end of the part before the '@'"),
            EmailProblem::LocalPartDoubleDot => f.write_str("has two dots in a row before the '@'"),
            EmailProblem::EmptyDomain => f.write_str("has no domain after the '@'"),
            EmailProblem::DomainTooLong => {
                write!(f, "has a domain longer than {MAX_DOMAIN} characters")
            }
            EmailProblem::BadInternationalDomain => {
                f.write_str("has a domain that is not a valid internationalized domain name")
            }
            EmailProblem::BadDomainChar(c) => {
                write!(f, "has {c:?} in the domain, which is not allowed")
            }
            EmailProblem::EmptyLabel => f.write_str("has an empty part in the domain (check the dots)"),
            EmailProblem::LabelTooLong(label) => {
                write!(f, "has a domain part {label:?} longer than {MAX_LABEL} characters")
            }
            EmailProblem::LabelEdgeHyphen(label) => {
                write!(f, "has a domain part {label:?} that starts or ends with '-'")
            }
            EmailProblem::NoTopLevelDomain => f.write_str("has no top-level domain"),
            EmailProblem::BadTopLevelDomain(tld) => {
                write!(f, "has a top-level domain {tld:?} that is not at least two letters")
            }
        }
    }
}

/// Validates an e-mail address and returns it as `local@lowercased-ascii-domain`.
///
/// Surrounding whitespace is trimmed. The local part keeps its case (it is
/// case-sensitive in principle) and must be 1–64 characters of
/// `A-Za-z0-9.!#$%&'*+/=?^_`{|}~-` without leading, trailing or doubled
/// dots. An internationalized domain (`пример.рф`) is converted to its ASCII
/// form by IDNA (UTS 46: `xn--e1afmkfd.xn--p1ai`), and a domain already in
/// that form must decode; the address is stored with the ASCII form, so it has
/// one spelling however it was typed and every mail system accepts it. The
/// domain is lower-cased and needs at least two labels of `a-z0-9-` (1–63
/// characters, no leading or trailing `-`); the top-level label must be at
/// least two letters or a punycode label (`xn--...`).
pub fn normalize_email(s: &str) -> Result<String, ValueError> {
    let bad = |problem| ValueError::BadEmail { value: s.to_owned(), problem };
    let trimmed = s.trim();
    let (local, domain) = split_address(trimmed).map_err(bad)?;
    check_local(local).map_err(bad)?;
    let domain = normalize_domain(domain).map_err(bad)?;
    let address = format!("{local}@{domain}");
    if address.len() > MAX_ADDRESS {
        return Err(bad(EmailProblem::TooLong));
    }
    Ok(address)
}

/// Splits at the single `@`, checking the overall shape.
fn split_address(s: &str) -> Result<(&str, &str), EmailProblem> {
    if s.is_empty() {
        return Err(EmailProblem::Empty);
    }
    let (local, domain) = s.split_once('@').ok_or(EmailProblem::NoAt)?;
    if domain.contains('@') {
        return Err(EmailProblem::SeveralAts);
    }
    Ok((local, domain))
}

fn check_local(local: &str) -> Result<(), EmailProblem> {
    if local.is_empty() {
        return Err(EmailProblem::EmptyLocalPart);
    }
    if let Some(c) = local.chars().find(|&c| !(c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))) {
        return Err(EmailProblem::BadLocalChar(c));
    }
    if local.len() > MAX_LOCAL {
        return Err(EmailProblem::LocalPartTooLong);
    }
    if local.starts_with('.') || local.ends_with('.') {
        return Err(EmailProblem::LocalPartEdgeDot);
    }
    if local.contains("..") {
        return Err(EmailProblem::LocalPartDoubleDot);
    }
    Ok(())
}

fn normalize_domain(domain: &str) -> Result<String, EmailProblem> {
    if domain.is_empty() {
        return Err(EmailProblem::EmptyDomain);
    }
    let international = !domain.is_ascii()
        || domain.split('.').any(|label| label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--"));
    let domain = if international {
        idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::EMPTY)
            .map_err(|_| EmailProblem::BadInternationalDomain)?
            .into_owned()
    } else {
        domain.to_ascii_lowercase()
    };
    if let Some(c) = domain.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')) {
        return Err(EmailProblem::BadDomainChar(c));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(EmailProblem::DomainTooLong);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        check_label(label)?;
    }
    match labels.as_slice() {
        [.., tld] if labels.len() >= 2 => check_tld(tld)?,
        _ => return Err(EmailProblem::NoTopLevelDomain),
    }
    Ok(domain)
}

fn check_label(label: &str) -> Result<(), EmailProblem> {
    if label.is_empty() {
        return Err(EmailProblem::EmptyLabel);
    }
    if label.len() > MAX_LABEL {
        return Err(EmailProblem::LabelTooLong(label.to_owned()));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(EmailProblem::LabelEdgeHyphen(label.to_owned()));
    }
    Ok(())
}

/// The top-level label: letters only (2+), or a punycode label such as `xn--p1ai` (.рф).
fn check_tld(tld: &str) -> Result<(), EmailProblem> {
    let alphabetic = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_lowercase());
    let punycode = tld.len() > 4 && tld.starts_with("xn--");
    if alphabetic || punycode {
        Ok(())
    } else {
        Err(EmailProblem::BadTopLevelDomain(tld.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(normalized)` or `Err(message)`.
    fn check(input: &str, expected: Result<&str, &str>) {
        let got = normalize_email(input).map_err(|e| e.to_string());
        assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "input {input:?}");
    }

    #[test]
    fn valid_addresses() {
        let cases = [
            ("user@example.com", "user@example.com"),
            ("  User.Name@Example.COM \n", "User.Name@example.com"),
            ("ivan.petrov+crm@mail.ru", "ivan.petrov+crm@mail.ru"),
            ("a@b.co", "a@b.co"),
            ("o'brien@sub.domain.example.org", "o'brien@sub.domain.example.org"),
            ("!#$%&'*+/=?^_`{|}~-@example.com", "!#$%&'*+/=?^_`{|}~-@example.com"),
            ("info@xn--e1afmkfd.xn--p1ai", "info@xn--e1afmkfd.xn--p1ai"),
            ("info@пример.рф", "info@xn--e1afmkfd.xn--p1ai"),
            ("Info@ПРИМЕР.РФ", "Info@xn--e1afmkfd.xn--p1ai"),
            ("info@XN--E1AFMKFD.xn--p1ai", "info@xn--e1afmkfd.xn--p1ai"),
            ("kontakt@müller.de", "kontakt@xn--mller-kva.de"),
            ("x@my-host.example", "x@my-host.example"),
            ("x@123.example.com", "x@123.example.com"),
        ];
        for (input, expected) in cases {
            check(input, Ok(expected));
        }
        let local64 = "a".repeat(64);
        check(&format!("{local64}@example.com"), Ok(&format!("{local64}@example.com")));
        let label63 = "b".repeat(63);
        check(&format!("x@{label63}.com"), Ok(&format!("x@{label63}.com")));
    }

    #[test]
    fn invalid_addresses() {
        let cases = [
            ("", "e-mail \"\" is empty"),
            ("   ", "e-mail \"   \" is empty"),
            ("a@b", "e-mail \"a@b\" has no top-level domain"),
            ("userexample.com", "e-mail \"userexample.com\" has no '@'"),
            ("a@b@example.com", "e-mail \"a@b@example.com\" has more than one '@'"),
            ("@example.com", "e-mail \"@example.com\" has nothing before the '@'"),
            ("user@", "e-mail \"user@\" has no domain after the '@'"),
            (
                ".user@example.com",
                "e-mail \".user@example.com\" has a dot at the start or end of the part before the '@'",
            ),
            (
                "user.@example.com",
                "e-mail \"user.@example.com\" has a dot at the start or end of the part before the '@'",
            ),
            ("us..er@example.com", "e-mail \"us..er@example.com\" has two dots in a row before the '@'"),
            ("us er@example.com", "e-mail \"us er@example.com\" has ' ' before the '@', which is not allowed"),
            (
                "\"quoted\"@example.com",
                "e-mail \"\\\"quoted\\\"@example.com\" has '\"' before the '@', which is not allowed",
            ),
            ("иван@example.com", "e-mail \"иван@example.com\" has 'и' before the '@', which is not allowed"),
            (
                "info@xn--zz.xn--p1ai",
                "e-mail \"info@xn--zz.xn--p1ai\" has a domain that is not a valid internationalized domain name",
            ),
            (
                "info@\u{301}пример.рф",
                "e-mail \"info@\\u{301}пример.рф\" has a domain that is not a valid internationalized domain name",
            ),
            ("info@пример_.рф", "e-mail \"info@пример_.рф\" has '_' in the domain, which is not allowed"),
            ("user@exa_mple.com", "e-mail \"user@exa_mple.com\" has '_' in the domain, which is not allowed"),
            ("user@example..com", "e-mail \"user@example..com\" has an empty part in the domain (check the dots)"),
            ("user@.example.com", "e-mail \"user@.example.com\" has an empty part in the domain (check the dots)"),
            ("user@example.com.", "e-mail \"user@example.com.\" has an empty part in the domain (check the dots)"),
            (
                "user@-example.com",
                "e-mail \"user@-example.com\" has a domain part \"-example\" that starts or ends with '-'",
            ),
            (
                "user@example-.com",
                "e-mail \"user@example-.com\" has a domain part \"example-\" that starts or ends with '-'",
            ),
            (
                "user@example.c",
                "e-mail \"user@example.c\" has a top-level domain \"c\" that is not at least two letters",
            ),
            (
                "user@example.c0m",
                "e-mail \"user@example.c0m\" has a top-level domain \"c0m\" that is not at least two letters",
            ),
            ("user@10.0.0.1", "e-mail \"user@10.0.0.1\" has a top-level domain \"1\" that is not at least two letters"),
            ("user@[10.0.0.1]", "e-mail \"user@[10.0.0.1]\" has '[' in the domain, which is not allowed"),
        ];
        for (input, expected) in cases {
            check(input, Err(expected));
        }
    }

    #[test]
    fn length_limits() {
        let local65 = "a".repeat(65);
        check(
            &format!("{local65}@example.com"),
            Err(&format!("e-mail \"{local65}@example.com\" has more than 64 characters before the '@'")),
        );
        let label64 = "b".repeat(64);
        let input = format!("x@{label64}.com");
        check(&input, Err(&format!("e-mail \"{input}\" has a domain part \"{label64}\" longer than 63 characters")));
        let long_domain = format!("{}.com", vec!["c".repeat(60); 4].join("."));
        let input = format!("x@{long_domain}");
        assert!(long_domain.len() > 240 && long_domain.len() <= MAX_DOMAIN);
        check(&input, Ok(&input));
        let too_long = format!("{}.com", vec!["c".repeat(62); 4].join("."));
        assert!(too_long.len() > MAX_DOMAIN);
        let input = format!("x@{too_long}");
        check(&input, Err(&format!("e-mail \"{input}\" has a domain longer than 253 characters")));
        let input = format!("{local64}@{long_domain}", local64 = "a".repeat(64));
        check(&input, Err(&format!("e-mail \"{input}\" is longer than 254 characters")));
    }
}
