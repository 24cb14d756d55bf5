//! Validated value types shared by the whole engine: currencies, money, calendar dates,
//! Russian registration identifiers, IBANs, e-mail addresses and phone numbers.
//!
//! Every check here is a pure function or constructor that either returns the
//! accepted (possibly normalized) value or a [`ValueError`] that says, in plain
//! words, what is wrong with the value. The caller adds which field it was.

pub mod currency;
pub mod date;
pub mod email;
pub mod money;
pub mod phone;
pub mod ru;

pub use currency::Currency;
pub use money::Money;

use email::EmailProblem;
use money::AmountProblem;
use phone::PhoneProblem;
use ru::IdProblem;

/// Why a value was rejected. Messages say what is wrong with the value (the caller adds which field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A three-letter code that is not in the ISO 4217 table (e.g. the obsolete `RUR`).
    #[error("{0:?} is not an ISO 4217 currency code")]
    UnknownCurrency(String),

    /// A known currency code written in lower or mixed case.
    #[error("currency code {given:?} must be written in upper case: \"{suggestion}\"")]
    CurrencyNotUppercase {
        /// The code as given.
        given: String,
        /// The upper-case code that was probably meant.
        suggestion: Currency,
    },

    /// A money amount that could not be accepted.
    #[error("amount {value:?} {problem}")]
    BadAmount {
        /// The amount as given.
        value: String,
        /// What is wrong with it.
        problem: AmountProblem,
    },

    /// Arithmetic between amounts in different currencies.
    #[error("cannot combine an amount in {left} with an amount in {right}")]
    CurrencyMismatch {
        /// Currency of the left operand.
        left: Currency,
        /// Currency of the right operand.
        right: Currency,
    },

    /// Arithmetic whose result does not fit the decimal type.
    #[error("{operation} of {currency} amounts overflows")]
    AmountOverflow {
        /// `"addition"`, `"subtraction"` or `"multiplication"`.
        operation: &'static str,
        /// Currency of the operands.
        currency: Currency,
    },

    /// A Russian taxpayer number (ИНН) that fails validation.
    #[error("INN {value:?} {problem}")]
    BadInn {
        /// The INN as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// A Russian tax registration reason code (КПП) that fails validation.
    #[error("KPP {value:?} {problem}")]
    BadKpp {
        /// The KPP as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// A Russian state registration number (ОГРН / ОГРНИП) that fails validation.
    #[error("OGRN {value:?} {problem}")]
    BadOgrn {
        /// The OGRN as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// A Russian bank identification code (БИК) that fails validation.
    #[error("BIK {value:?} {problem}")]
    BadBik {
        /// The BIK as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// A Russian settlement account (расчётный счёт) that fails validation.
    #[error("account {value:?} {problem}")]
    BadAccount {
        /// The account number as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// A Russian correspondent account (корр. счёт) that fails validation.
    #[error("correspondent account {value:?} {problem}")]
    BadCorrAccount {
        /// The account number as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// An international bank account number that fails validation.
    #[error("IBAN {value:?} {problem}")]
    BadIban {
        /// The IBAN as given.
        value: String,
        /// What is wrong with it.
        problem: IdProblem,
    },

    /// An e-mail address that fails validation.
    #[error("e-mail {value:?} {problem}")]
    BadEmail {
        /// The address as given.
        value: String,
        /// What is wrong with it.
        problem: EmailProblem,
    },

    /// A phone number that fails validation.
    #[error("phone {value:?} {problem}")]
    BadPhone {
        /// The number as given.
        value: String,
        /// What is wrong with it.
        problem: PhoneProblem,
    },

    /// A phone region that is not a known two-letter region code.
    #[error("{0:?} is not a known phone region code (expected two upper-case letters such as \"RU\")")]
    UnknownRegion(String),
}
