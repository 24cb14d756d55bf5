//! Counterparties: the legal subjects (legal entities, sole traders, individuals) that
//! accounting deals with, kept apart from partners.

use serde::{Deserialize, Serialize};

use super::rules::{optional_text, required_text, trim, trim_opt};
use super::Index;
use super::{entity_meta, CustomFields, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref};
use crate::id::{CounterpartyId, UserId};
use crate::time::Timestamp;
use crate::values::{ru, Currency};

const KIND: EntityKind = EntityKind::Counterparty;

/// What kind of legal subject a counterparty is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CounterpartyKind {
    /// A company (ООО, АО, …): a 10-digit INN, KPP and a 13-digit OGRN in Russia.
    #[default]
    LegalEntity,
    /// An individual entrepreneur (ИП): a 12-digit INN and a 15-digit OGRNIP.
    SoleTrader,
    /// A private person: a 12-digit INN when known.
    Individual,
}

/// What an address is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    #[default]
    Legal,
    Postal,
    Actual,
    Delivery,
}

/// An address of a counterparty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub kind: AddressKind,
    pub text: String,
}

/// A bank account of a counterparty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    /// The bank's name.
    pub bank: String,
    /// Russian bank id (БИК), 9 digits; with it the account's control key is checked.
    #[serde(default)]
    pub bik: Option<String>,
    /// SWIFT/BIC of a foreign bank.
    #[serde(default)]
    pub swift: Option<String>,
    /// The account number: 20 digits with a BIK, an IBAN or free text otherwise.
    pub account: String,
    /// Correspondent account (Russian banks).
    #[serde(default)]
    pub corr_account: Option<String>,
    /// The account's currency.
    pub currency: Currency,
}

/// A legal subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterparty {
    pub id: CounterpartyId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who created it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    pub kind: CounterpartyKind,
    /// Short name used in lists (`Ромашка`).
    pub name: String,
    /// Full legal name (`Общество с ограниченной ответственностью «Ромашка»`).
    #[serde(default)]
    pub full_name: String,
    /// ISO 3166 alpha-2 country of registration; decides how ids are checked.
    #[serde(default = "default_country")]
    pub country: String,
    /// Tax id: the INN in Russia (check digits validated), free text elsewhere.
    #[serde(default)]
    pub tax_id: Option<String>,
    /// Russian KPP (legal entities).
    #[serde(default)]
    pub kpp: Option<String>,
    /// Primary state registration number: OGRN (13 digits) or OGRNIP (15 digits).
    #[serde(default)]
    pub reg_number: Option<String>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub bank_accounts: Vec<BankAccount>,
    #[serde(default)]
    pub custom: CustomFields,
}

fn default_country() -> String {
    "RU".to_string()
}

impl Counterparty {
    /// A new counterparty with the given kind and name; the store assigns id and instants.
    pub fn new(kind: CounterpartyKind, name: impl Into<String>) -> Counterparty {
        Counterparty {
            id: CounterpartyId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            kind,
            name: name.into(),
            full_name: String::new(),
            country: default_country(),
            tax_id: None,
            kpp: None,
            reg_number: None,
            addresses: Vec::new(),
            bank_accounts: Vec::new(),
            custom: CustomFields::new(),
        }
    }

    fn is_russian(&self) -> bool {
        self.country == "RU"
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(KIND, field, message)
}

impl Entity for Counterparty {
    const KIND: EntityKind = KIND;
    const TABLE: &'static str = "counterparties";
    type Id = CounterpartyId;
    entity_meta!(CounterpartyId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.name);
        trim(&mut self.full_name);
        self.country = self.country.trim().to_ascii_uppercase();
        trim_opt(&mut self.tax_id);
        trim_opt(&mut self.kpp);
        trim_opt(&mut self.reg_number);
        for a in &mut self.bank_accounts {
            a.account.retain(|c| !c.is_whitespace());
            trim_opt(&mut a.bik);
            trim_opt(&mut a.swift);
            trim_opt(&mut a.corr_account);
        }
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        required_text(KIND, "name", &self.name, 200)?;
        optional_text(KIND, "full_name", &self.full_name, 500)?;
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(err("country", format!("\"{}\" is not an ISO 3166 alpha-2 country code", self.country)));
        }
        if let Some(tax_id) = &self.tax_id {
            if self.is_russian() {
                let kind = ru::check_inn(tax_id).map_err(|e| err("tax_id", e.to_string()))?;
                match (self.kind, kind) {
                    (CounterpartyKind::LegalEntity, ru::InnKind::Legal)
                    | (CounterpartyKind::SoleTrader | CounterpartyKind::Individual, ru::InnKind::Individual) => {}
                    (CounterpartyKind::LegalEntity, _) => {
                        return Err(err("tax_id", "a legal entity's INN has 10 digits"));
                    }
                    _ => return Err(err("tax_id", "the INN of a sole trader or an individual has 12 digits")),
                }
            } else {
                optional_text(KIND, "tax_id", tax_id, 50)?;
            }
        }
        if let Some(kpp) = &self.kpp {
            if self.kind != CounterpartyKind::LegalEntity {
                return Err(err("kpp", "only a legal entity has a KPP"));
            }
            if self.is_russian() {
                ru::check_kpp(kpp).map_err(|e| err("kpp", e.to_string()))?;
            }
        }
        if let Some(reg) = &self.reg_number {
            if self.kind == CounterpartyKind::Individual {
                return Err(err("reg_number", "a private person has no state registration number (OGRN/OGRNIP)"));
            }
            if self.is_russian() {
                ru::check_ogrn(reg).map_err(|e| err("reg_number", e.to_string()))?;
                let (want, first) = if self.kind == CounterpartyKind::LegalEntity { (13, "15") } else { (15, "3") };
                if reg.len() != want {
                    return Err(err(
                        "reg_number",
                        format!("a {} has a {want}-digit registration number", kind_label(self.kind)),
                    ));
                }
                if !reg.starts_with(|c| first.contains(c)) {
                    let what = if want == 13 { "an OGRN starts with 1 or 5" } else { "an OGRNIP starts with 3" };
                    return Err(err("reg_number", format!("\"{reg}\": {what}")));
                }
            } else {
                optional_text(KIND, "reg_number", reg, 50)?;
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            required_text(KIND, &format!("addresses[{i}].text"), &a.text, 1000)?;
        }
        for (i, a) in self.bank_accounts.iter().enumerate() {
            let f = |name: &str| format!("bank_accounts[{i}].{name}");
            required_text(KIND, &f("bank"), &a.bank, 300)?;
            if let Some(bik) = &a.bik {
                ru::check_bik(bik).map_err(|e| err(f("bik"), e.to_string()))?;
                ru::check_account(&a.account, bik).map_err(|e| err(f("account"), e.to_string()))?;
                check_account_currency(&a.account, a.currency).map_err(|m| err(f("account"), m))?;
                if let Some(corr) = &a.corr_account {
                    ru::check_corr_account(corr, bik).map_err(|e| err(f("corr_account"), e.to_string()))?;
                }
            } else if a.corr_account.is_some() {
                return Err(err(f("corr_account"), "a correspondent account needs the bank's BIK"));
            } else if a.account.len() >= 15 && a.account.as_bytes()[..2].iter().all(u8::is_ascii_alphabetic) {
                ru::check_iban(&a.account).map_err(|e| err(f("account"), e.to_string()))?;
            } else {
                required_text(KIND, &f("account"), &a.account, 64)?;
            }
        }
        Ok(())
    }

    fn refs(&self, _out: &mut Vec<Ref>) {}

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        if let Some(tax_id) = &self.tax_id {
            out.push(IndexEntry::by_text(Index::CounterpartyByTaxId, &[tax_id]));
        }
    }

    fn custom(&self) -> Option<&CustomFields> {
        Some(&self.custom)
    }
}

/// Digits 6–8 of a Russian account number name its currency: 810 (or 643) for roubles, the
/// ISO 4217 numeric code otherwise. Checked for the currencies listed here.
fn check_account_currency(account: &str, currency: Currency) -> Result<(), String> {
    const CODES: [(&str, &[&str]); 9] = [
        ("RUB", &["810", "643"]),
        ("USD", &["840"]),
        ("EUR", &["978"]),
        ("CNY", &["156"]),
        ("KZT", &["398"]),
        ("BYN", &["933"]),
        ("GBP", &["826"]),
        ("JPY", &["392"]),
        ("CHF", &["756"]),
    ];
    let Some(digits) = account.get(5..8) else { return Ok(()) };
    match CODES.iter().find(|(c, _)| *c == currency.as_str()) {
        Some((_, codes)) if !codes.contains(&digits) => Err(format!(
            "account {account} is in the currency coded {digits} (its digits 6–8), not {currency} ({})",
            codes.join(" or ")
        )),
        _ => Ok(()),
    }
}

fn kind_label(kind: CounterpartyKind) -> &'static str {
    match kind {
        CounterpartyKind::LegalEntity => "legal entity",
        CounterpartyKind::SoleTrader => "sole trader",
        CounterpartyKind::Individual => "individual",
    }
}
