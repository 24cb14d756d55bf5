//! The columns of each entity kind in import and export files: their names, what the
//! values are, and where they go in the entity.

use crate::config::Settings;
use crate::model::{CustomFieldDef, EntityKind};

/// What a column holds.
#[derive(Clone, Debug)]
pub enum Ty {
    /// Text.
    Text,
    /// One of the listed names.
    Enum(&'static [&'static str]),
    /// A list of the listed names (`;`-separated, or a JSON array).
    EnumList(&'static [&'static str]),
    /// A whole number up to the bound.
    Int(u64),
    /// A decimal amount, as text (`1234.50`).
    Amount,
    /// A currency code (`RUB`).
    Currency,
    /// A calendar date (`2026-03-01`; `01.03.2026` is read too).
    Date,
    /// An instant (RFC 3339; `2026-03-01 09:30` is read as UTC).
    Time,
    /// A reference to an entity of the kind, by its external key or its id.
    Key(EntityKind),
    /// A list of such references (`;`-separated, or a JSON array).
    Keys(EntityKind),
    /// A user, by login.
    Login,
    /// A list of text values (`;`-separated, or a JSON array).
    List,
    /// A nested value written as JSON, checked by the function.
    Json(fn(&serde_json::Value) -> Result<(), String>),
    /// A declared custom field.
    Custom(CustomFieldDef),
    /// A deal's stage history (JSON array of steps).
    History,
    /// Files to attach, relative to the input file (`;`-separated).
    Attachments,
}

/// What an empty value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Empty {
    /// The field is unset (`null`).
    Null,
    /// The field's empty value (`""`, `[]`).
    Blank,
    /// The field's default on creation (left as it is on update).
    Default,
    /// Not allowed: the column must have a value.
    Required,
}

/// One column of an import or export file.
#[derive(Clone, Debug)]
pub struct Column {
    /// Its name in files.
    pub name: String,
    /// Where it goes in the entity's JSON form, dotted (`amount.currency`); empty for the
    /// columns that are not fields (the key, the history, attachments).
    pub path: String,
    pub ty: Ty,
    pub empty: Empty,
    /// Whether a file must have the column.
    pub required: bool,
    /// Whether export writes it.
    pub exported: bool,
}

/// The name of the external-key column.
pub const KEY: &str = "key";

fn col(name: &str, ty: Ty, empty: Empty) -> Column {
    Column {
        name: name.to_string(),
        path: name.to_string(),
        ty,
        required: empty == Empty::Required,
        empty,
        exported: true,
    }
}

fn at(mut c: Column, path: &str) -> Column {
    c.path = path.to_string();
    c
}

fn not_a_field(mut c: Column) -> Column {
    c.path = String::new();
    c
}

fn import_only(mut c: Column) -> Column {
    c.exported = false;
    c
}

const INTERACTION_KINDS: &[&str] = &["email", "call", "meeting", "note"];
const DIRECTIONS: &[&str] = &["incoming", "outgoing"];
const ROLES: &[&str] = &["client", "supplier", "competitor", "other"];
const COUNTERPARTY_KINDS: &[&str] = &["legal_entity", "sole_trader", "individual"];
const ATTITUDES: &[&str] = &["supporter", "neutral", "opponent"];
const DOCUMENT_KINDS: &[&str] = &["quote", "invoice", "order", "shipment", "payment"];
const DOCUMENT_STATES: &[&str] = &["draft", "issued", "agreed", "completed", "cancelled"];
const DEAL_STATUSES: &[&str] = &["in_progress", "won", "lost", "on_hold"];
const PROGRAM_KINDS: &[&str] = &["discount", "bonus"];
const SALE_KINDS: &[&str] = &["payment", "shipment"];

fn check<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<(), String> {
    serde_json::from_value::<T>(v.clone()).map(|_| ()).map_err(|e| e.to_string())
}

/// The entity kinds files can carry, in the order a migration imports them: each refers
/// only to kinds before it.
pub const KINDS: [EntityKind; 9] = [
    EntityKind::Counterparty,
    EntityKind::Partner,
    EntityKind::Contact,
    EntityKind::LoyaltyProgram,
    EntityKind::LoyaltyCard,
    EntityKind::Deal,
    EntityKind::Interaction,
    EntityKind::Document,
    EntityKind::Claim,
];

/// The columns of `kind`, the declared custom fields last; `None` for kinds files do not
/// carry.
pub fn columns(kind: EntityKind, settings: &Settings) -> Option<Vec<Column>> {
    use Empty::{Blank, Default, Null, Required};
    use EntityKind as K;
    let key = not_a_field(col(KEY, Ty::Text, Required));
    let mut c = match kind {
        K::Counterparty => vec![
            key,
            col("kind", Ty::Enum(COUNTERPARTY_KINDS), Required),
            col("name", Ty::Text, Required),
            col("full_name", Ty::Text, Blank),
            col("country", Ty::Text, Default),
            col("tax_id", Ty::Text, Null),
            col("kpp", Ty::Text, Null),
            col("reg_number", Ty::Text, Null),
            col("addresses", Ty::Json(check::<Vec<crate::model::Address>>), Blank),
            col("bank_accounts", Ty::Json(check::<Vec<crate::model::BankAccount>>), Blank),
        ],
        K::Partner => vec![
            key,
            col("name", Ty::Text, Required),
            col("roles", Ty::EnumList(ROLES), Required),
            col("parent", Ty::Key(K::Partner), Null),
            col("manager", Ty::Login, Null),
            col("segment", Ty::Text, Null),
            col("counterparties", Ty::Keys(K::Counterparty), Blank),
            col("source", Ty::Text, Null),
            col("comment", Ty::Text, Blank),
        ],
        K::Contact => vec![
            key,
            col("partner", Ty::Key(K::Partner), Required),
            col("name", Ty::Text, Required),
            col("position", Ty::Text, Blank),
            col("phones", Ty::List, Blank),
            col("emails", Ty::List, Blank),
            col("decision_role", Ty::Text, Null),
            col("attitude", Ty::Enum(ATTITUDES), Null),
            col("comment", Ty::Text, Blank),
        ],
        K::LoyaltyProgram => vec![
            key,
            col("name", Ty::Text, Required),
            col("kind", Ty::Enum(PROGRAM_KINDS), Required),
            col("currency", Ty::Currency, Required),
            col("discount_pct", Ty::Amount, Null),
            col("point_value", Ty::Amount, Null),
            col("accrual_pct", Ty::Amount, Null),
            col("points_expire_days", Ty::Int(3660), Null),
            col("accrue_on", Ty::Enum(SALE_KINDS), Required),
            col("valid_from", Ty::Date, Required),
            col("valid_to", Ty::Date, Null),
            col("comment", Ty::Text, Blank),
        ],
        K::LoyaltyCard => vec![
            key,
            col("number", Ty::Text, Required),
            col("barcode", Ty::Text, Null),
            col("magnetic_code", Ty::Text, Null),
            col("program", Ty::Key(K::LoyaltyProgram), Required),
            col("partner", Ty::Key(K::Partner), Null),
            col("contact", Ty::Key(K::Contact), Null),
            col("issued", Ty::Date, Required),
            col("expires", Ty::Date, Null),
            col("comment", Ty::Text, Blank),
        ],
        K::Deal => vec![
            key,
            col("title", Ty::Text, Required),
            col("kind", Ty::Text, Required),
            col("partner", Ty::Key(K::Partner), Required),
            col("counterparty", Ty::Key(K::Counterparty), Null),
            col("manager", Ty::Login, Required),
            at(col("amount", Ty::Amount, Required), "amount.amount"),
            at(col("currency", Ty::Currency, Required), "amount.currency"),
            col("expected_close", Ty::Date, Null),
            col("probability", Ty::Int(100), Null),
            col("source", Ty::Text, Null),
            col("comment", Ty::Text, Blank),
            col("checklist", Ty::List, Blank),
            col("stage", Ty::Text, Null),
            col("status", Ty::Enum(DEAL_STATUSES), Null),
            col("loss_reason", Ty::Text, Null),
            col("competitor", Ty::Key(K::Partner), Null),
            not_a_field(col("history", Ty::History, Null)),
        ],
        K::Interaction => vec![
            key,
            col("kind", Ty::Enum(INTERACTION_KINDS), Required),
            col("direction", Ty::Enum(DIRECTIONS), Null),
            col("at", Ty::Time, Required),
            col("duration_min", Ty::Int(24 * 60), Null),
            col("subject", Ty::Text, Blank),
            col("body", Ty::Text, Blank),
            col("partner", Ty::Key(K::Partner), Required),
            col("deal", Ty::Key(K::Deal), Null),
            col("contacts", Ty::Keys(K::Contact), Blank),
            col("author", Ty::Login, Null),
        ],
        K::Document => vec![
            key,
            col("kind", Ty::Enum(DOCUMENT_KINDS), Required),
            col("number", Ty::Text, Required),
            col("date", Ty::Date, Required),
            col("partner", Ty::Key(K::Partner), Required),
            col("deal", Ty::Key(K::Deal), Null),
            col("counterparty", Ty::Key(K::Counterparty), Null),
            col("due", Ty::Date, Null),
            at(col("amount", Ty::Amount, Required), "amount.amount"),
            at(col("currency", Ty::Currency, Required), "amount.currency"),
            col("state", Ty::Enum(DOCUMENT_STATES), Required),
            col("lines", Ty::Json(check::<Vec<crate::model::DocumentLine>>), Blank),
            col("comment", Ty::Text, Blank),
            col("card", Ty::Key(K::LoyaltyCard), Null),
        ],
        // A claim comes in registered: its lifecycle (review, decision, closing) is taken
        // through its steps, which a file does not carry.
        K::Claim => vec![
            key,
            col("partner", Ty::Key(K::Partner), Required),
            col("counterparty", Ty::Key(K::Counterparty), Null),
            col("contact", Ty::Key(K::Contact), Null),
            col("deal", Ty::Key(K::Deal), Null),
            col("document", Ty::Key(K::Document), Null),
            col("kind", Ty::Text, Required),
            col("cause", Ty::Text, Required),
            col("subject", Ty::Text, Required),
            col("description", Ty::Text, Blank),
            at(col("claimed", Ty::Amount, Null), "claimed.amount"),
            at(col("currency", Ty::Currency, Null), "claimed.currency"),
            col("responsible", Ty::Login, Required),
            col("registered", Ty::Date, Null),
            col("due", Ty::Date, Null),
        ],
        _ => return None,
    };
    for def in settings.custom_fields_of(kind) {
        let mut column = col(&format!("custom.{}", def.name), Ty::Custom(def.clone()), Null);
        column.required = false;
        c.push(column);
    }
    if matches!(kind, K::Deal | K::Interaction | K::Document | K::Partner | K::Contact | K::Counterparty | K::Claim) {
        c.push(import_only(not_a_field(col("attachments", Ty::Attachments, Blank))));
    }
    Some(c)
}
