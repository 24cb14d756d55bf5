//! The entity resources: `/api/v1/partners`, `/api/v1/contacts`, … — list with filters and
//! a cursor, get, create, update by JSON merge patch with the version read, delete — one
//! generic implementation over [`Resource`], with the role rules of [`super::access`].

use crmkit_core::config::Settings;
use crmkit_core::id::{RawId, TypedId};
use crmkit_core::model::{
    ContactLink, ContactPerson, Counterparty, CustomValue, Deal, Document, Entity, EntityKind, IndexEntry, Interaction,
    Participant, ParticipantLink, Partner, PartnerLink, Plan, Task, User,
};
use crmkit_core::process::Engine;
use crmkit_core::store::{Index, Reader, WriteTxn};
use crmkit_core::Error;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::access::{Access, Caller, Scoped};
use super::{body_json, json_response, parse_id, query, ApiError, App, Body, Code};

/// A list filter: the query parameter, the index it reads, and how its value becomes the
/// index prefix.
pub struct Filter {
    pub name: &'static str,
    pub index: Index,
    pub prefix: fn(&str, &Settings) -> Result<Vec<u8>, String>,
}

const fn filter(name: &'static str, index: Index, prefix: fn(&str, &Settings) -> Result<Vec<u8>, String>) -> Filter {
    Filter { name, index, prefix }
}

/// An id value.
fn id(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    s.parse::<RawId>().map(|id| id.to_bytes().to_vec()).map_err(|e| e.to_string())
}

/// A text value, matched exactly.
fn text(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    Ok(crmkit_core::model::text_prefix(&[s]))
}

/// A text value, matched without regard to case.
fn lower(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    Ok(crmkit_core::model::text_prefix(&[&s.to_lowercase()]))
}

/// An e-mail address in the form contacts store it (an internationalized domain in its ASCII
/// form), matched without regard to case; text that is no address is matched as it is.
fn email(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    let address = crmkit_core::values::email::normalize_email(s).unwrap_or_else(|_| s.to_string());
    Ok(crmkit_core::model::text_prefix(&[&address.to_lowercase()]))
}

/// A phone number in the form contacts store it (normalized in the configured region).
fn phone(s: &str, settings: &Settings) -> Result<Vec<u8>, String> {
    let number = crmkit_core::values::phone::normalize_phone(s, &settings.phone_region).map_err(|e| e.to_string())?;
    Ok(crmkit_core::model::text_prefix(&[&number]))
}

/// A deal status.
fn deal_status(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    let status: crmkit_core::model::DealStatus = serde_json::from_value(Value::String(s.to_string()))
        .map_err(|_| "is not a deal status (in_progress, won, lost, on_hold)".to_string())?;
    Ok(crmkit_core::model::text_prefix(&[status.name()]))
}

/// `KIND/STAGE`.
fn kind_stage(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    let (kind, stage) = s.split_once('/').ok_or("is not KIND/STAGE, like b2b_sale/proposal")?;
    Ok(crmkit_core::model::text_prefix(&[kind, stage]))
}

/// What the API needs to know about an entity kind beyond its scope.
pub trait Resource: Scoped {
    /// The path segment: `partners`.
    const PATH: &'static str;
    /// The filters its list takes.
    const FILTERS: &'static [Filter];
    /// Fields only the server or the process engine sets; a body may not name them.
    const SERVER_FIELDS: &'static [&'static str] = &[];
    /// Fields set when the entity is created and never changed after.
    const FIXED_FIELDS: &'static [&'static str] = &[];

    /// Values a new entity's body may leave out, filled for `caller`.
    fn defaults(caller: &Caller) -> Vec<(&'static str, Value)> {
        let _ = caller;
        Vec::new()
    }

    /// The index an unfiltered list of `caller` walks instead of every entity.
    fn scope_index(caller: &Caller) -> Option<IndexEntry> {
        let _ = caller;
        None
    }

    /// Creates the entity.
    fn create(engine: &Engine, tx: &mut WriteTxn<'_>, e: Self) -> crmkit_core::Result<Self> {
        engine.create(tx, e)
    }
}

/// The fields every entity has that the store keeps.
const META_FIELDS: [&str; 6] = ["id", "version", "created_at", "updated_at", "created_by", "updated_by"];

impl Resource for Partner {
    const PATH: &'static str = "partners";
    const FILTERS: &'static [Filter] = &[
        filter("name", Index::PartnerByName, lower),
        filter("parent", Index::PartnerByParent, id),
        filter("manager", Index::PartnerByManager, id),
        filter("counterparty", Index::PartnerByCounterparty, id),
    ];
}

impl Resource for Counterparty {
    const PATH: &'static str = "counterparties";
    const FILTERS: &'static [Filter] = &[filter("tax_id", Index::CounterpartyByTaxId, text)];
}

impl Resource for ContactPerson {
    const PATH: &'static str = "contacts";
    const FILTERS: &'static [Filter] = &[
        filter("partner", Index::ContactByPartner, id),
        filter("email", Index::ContactByEmail, email),
        filter("phone", Index::ContactByPhone, phone),
    ];
}

impl Resource for PartnerLink {
    const PATH: &'static str = "partner-links";
    const FILTERS: &'static [Filter] = &[filter("partner", Index::PartnerLinkByPartner, id)];
}

impl Resource for ContactLink {
    const PATH: &'static str = "contact-links";
    const FILTERS: &'static [Filter] = &[filter("contact", Index::ContactLinkByContact, id)];
}

impl Resource for User {
    const PATH: &'static str = "users";
    const FILTERS: &'static [Filter] = &[filter("login", Index::UserByLogin, text)];
    /// Tokens name their user by login: a login given up must not pass to someone else.
    const FIXED_FIELDS: &'static [&'static str] = &["login"];
}

impl Resource for Deal {
    const PATH: &'static str = "deals";
    const FILTERS: &'static [Filter] = &[
        filter("partner", Index::DealByPartner, id),
        filter("manager", Index::DealByManager, id),
        filter("status", Index::DealByStatus, deal_status),
        filter("stage", Index::DealByStage, kind_stage),
        filter("counterparty", Index::DealByCounterparty, id),
        filter("competitor", Index::DealByCompetitor, id),
    ];
    const SERVER_FIELDS: &'static [&'static str] = &[
        "stage",
        "status",
        "closed_at",
        "stage_entered_at",
        "checklist",
        "history_steps",
        "loss_reason",
        "competitor",
        "probability_manual",
        "score",
    ];
    const FIXED_FIELDS: &'static [&'static str] = &["kind"];

    fn defaults(caller: &Caller) -> Vec<(&'static str, Value)> {
        vec![("manager", json!(caller.user.id)), ("status", json!("in_progress"))]
    }

    fn scope_index(caller: &Caller) -> Option<IndexEntry> {
        (caller.role == crmkit_core::model::Role::Manager)
            .then(|| IndexEntry::by_id(Index::DealByManager, caller.user.id))
    }

    fn create(engine: &Engine, tx: &mut WriteTxn<'_>, e: Self) -> crmkit_core::Result<Self> {
        engine.create_deal(tx, e)
    }
}

impl Resource for Participant {
    const PATH: &'static str = "participants";
    const FILTERS: &'static [Filter] = &[
        filter("deal", Index::ParticipantByDeal, id),
        filter("partner", Index::ParticipantByPartner, id),
        filter("contact", Index::ParticipantByContact, id),
    ];
}

impl Resource for ParticipantLink {
    const PATH: &'static str = "participant-links";
    const FILTERS: &'static [Filter] = &[filter("participant", Index::ParticipantLinkByParticipant, id)];
}

impl Resource for Interaction {
    const PATH: &'static str = "interactions";
    const FILTERS: &'static [Filter] = &[
        filter("partner", Index::InteractionByPartner, id),
        filter("deal", Index::InteractionByDeal, id),
        filter("contact", Index::InteractionByContact, id),
    ];
    /// Its author is whoever recorded it.
    const SERVER_FIELDS: &'static [&'static str] = &["author"];

    fn defaults(caller: &Caller) -> Vec<(&'static str, Value)> {
        vec![("author", json!(caller.user.id))]
    }
}

impl Resource for Document {
    const PATH: &'static str = "documents";
    const FILTERS: &'static [Filter] = &[
        filter("partner", Index::DocumentByPartner, id),
        filter("deal", Index::DocumentByDeal, id),
        filter("counterparty", Index::DocumentByCounterparty, id),
        filter("card", Index::DocumentByCard, id),
    ];
}

impl Resource for crmkit_core::model::Attachment {
    const PATH: &'static str = "attachments";
    const FILTERS: &'static [Filter] = &[filter("owner", Index::AttachmentByOwner, id)];
    /// The content is uploaded (`POST /api/v1/attachments`), never written as JSON.
    const SERVER_FIELDS: &'static [&'static str] = &["owner", "size", "content"];
}

impl Resource for Task {
    const PATH: &'static str = "tasks";
    const FILTERS: &'static [Filter] =
        &[filter("deal", Index::TaskByDeal, id), filter("claim", Index::TaskByClaim, id)];
    const SERVER_FIELDS: &'static [&'static str] = &["status", "finished_at", "finished_by", "stage", "required"];
    const FIXED_FIELDS: &'static [&'static str] = &["deal", "claim"];

    fn defaults(caller: &Caller) -> Vec<(&'static str, Value)> {
        vec![("executor", json!(caller.user.id)), ("status", json!("open"))]
    }
}

impl Resource for Plan {
    const PATH: &'static str = "plans";
    const FILTERS: &'static [Filter] = &[filter("manager", Index::PlanByManager, id)];
}

impl Resource for crmkit_core::model::LoyaltyProgram {
    const PATH: &'static str = "loyalty-programs";
    const FILTERS: &'static [Filter] = &[];
    const FIXED_FIELDS: &'static [&'static str] = &["kind", "currency"];
}

impl Resource for crmkit_core::model::LoyaltyCard {
    const PATH: &'static str = "loyalty-cards";
    const FILTERS: &'static [Filter] = &[
        filter("number", Index::LoyaltyCardByNumber, text),
        filter("barcode", Index::LoyaltyCardByBarcode, text),
        filter("magnetic_code", Index::LoyaltyCardByMagneticCode, text),
        filter("program", Index::LoyaltyCardByProgram, id),
        filter("partner", Index::LoyaltyCardByPartner, id),
        filter("contact", Index::LoyaltyCardByContact, id),
    ];
    /// The loyalty operations keep them (`/redeem`, `/correct`, `/block`, `/reissue`, a
    /// sale's accrual, the expiry run).
    const SERVER_FIELDS: &'static [&'static str] =
        &["status", "status_note", "balance", "turnover", "entries", "last_activity", "reissued_from"];
    const FIXED_FIELDS: &'static [&'static str] = &["program", "partner", "contact"];
}

impl Resource for crmkit_core::model::LoyaltyEntry {
    const PATH: &'static str = "loyalty-entries";
    const FILTERS: &'static [Filter] =
        &[filter("card", Index::LoyaltyEntryByCard, id), filter("document", Index::LoyaltyEntryByDocument, id)];
    /// Every field: the loyalty operations write the entries.
    const SERVER_FIELDS: &'static [&'static str] =
        &["card", "kind", "date", "points", "turnover", "balance", "document", "other_card", "rule", "comment"];
}

impl Resource for crmkit_core::model::Claim {
    const PATH: &'static str = "claims";
    const FILTERS: &'static [Filter] = &[
        filter("partner", Index::ClaimByPartner, id),
        filter("responsible", Index::ClaimByResponsible, id),
        filter("status", Index::ClaimByStatus, claim_status),
        filter("deal", Index::ClaimByDeal, id),
        filter("document", Index::ClaimByDocument, id),
        filter("counterparty", Index::ClaimByCounterparty, id),
        filter("contact", Index::ClaimByContact, id),
    ];
    /// The claim's steps keep them (`/review`, `/postpone`, `/decide`, `/close`, `/reopen`).
    const SERVER_FIELDS: &'static [&'static str] =
        &["status", "decision", "settled", "reply", "decided_at", "closed_at", "postponed_until", "steps"];
    const FIXED_FIELDS: &'static [&'static str] = &["partner"];

    fn defaults(caller: &Caller) -> Vec<(&'static str, Value)> {
        vec![("responsible", json!(caller.user.id)), ("status", json!("registered"))]
    }
}

fn claim_status(s: &str, _: &Settings) -> Result<Vec<u8>, String> {
    let status: crmkit_core::model::ClaimStatus = serde_json::from_value(Value::String(s.to_string()))
        .map_err(|_| "is not a claim status (registered, under_review, decided, closed)".to_string())?;
    Ok(crmkit_core::model::claim_status_prefix(status))
}

/// Runs `$body` with `$E` the entity type of the resource named `$path`, `$none` when no
/// resource has that name.
macro_rules! with_resource {
    ($path:expr, $E:ident => $body:expr, else $none:expr) => {
        match $crate::http::entities::kind_at($path) {
            Some(kind) => crmkit_core::with_kind!(kind, $E => $body),
            None => $none,
        }
    };
}
pub(crate) use with_resource;

/// The entity kind whose resource is at `path` (`"partners"`, `"partner-links"`, …).
pub(crate) fn kind_at(path: &str) -> Option<EntityKind> {
    EntityKind::ALL.into_iter().find(|k| crmkit_core::with_kind!(*k, E => <E as Resource>::PATH == path))
}

/// The most entities one list request looks at; a page that is not full by then ends with
/// a cursor to go on from.
const SCAN_BUDGET: usize = 5_000;

/// The `limit` of a list request: 1 to 500, 50 when absent.
pub fn page_limit(q: &std::collections::BTreeMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        Some(l) => l.parse().ok().filter(|n| (1..=500).contains(n)).ok_or_else(|| {
            ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadQuery,
                "limit",
                format!("limit \"{l}\" is not a number from 1 to 500"),
            )
        }),
        None => Ok(50),
    }
}

/// The position the `after` cursor of a list names.
pub fn after(app: &App, list: &str, q: &std::collections::BTreeMap<String, String>) -> Result<Option<RawId>, ApiError> {
    q.get("after")
        .map(|a| {
            app.cursors.open(list, a).map_err(|e| {
                ApiError::at(
                    StatusCode::BAD_REQUEST,
                    Code::BadCursor,
                    "after",
                    format!("after \"{a}\" {e}; pass the \"next\" of the page before"),
                )
            })
        })
        .transpose()
}

/// The cursor of `list` stopped at `id`.
pub fn seal(app: &App, list: &str, id: RawId) -> Result<String, ApiError> {
    app.cursors.seal(list, id).map_err(|e| ApiError::internal("sealing a cursor", e))
}

/// `GET /api/v1/RESOURCE?FILTER=VALUE&after=CURSOR&limit=N`: a page of what the caller may
/// A list filter on a declared custom field, `custom.NAME=VALUE`: the value read as the
/// field's type; a multi-valued field matches when it holds the value.
fn custom_filter(app: &App, kind: EntityKind, name: &str, value: &str) -> Result<(String, CustomValue), ApiError> {
    let field = &name["custom.".len()..];
    let defs = app.inst.settings().custom_fields_of(kind);
    let bad = |m: String| ApiError::at(StatusCode::BAD_REQUEST, Code::BadQuery, name, m);
    let def = defs.iter().find(|d| d.name == field).ok_or_else(|| {
        let declared: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        bad(if declared.is_empty() {
            format!("\"{field}\" is not a custom field: none are declared for {kind}")
        } else {
            format!("\"{field}\" is not a custom field of {kind} (declared: {})", declared.join(", "))
        })
    })?;
    let wanted = def.filter_value(value).map_err(|m| bad(format!("{name} {m}")))?;
    Ok((field.to_string(), wanted))
}

/// `GET /api/v1/RESOURCE?FILTER=VALUE&custom.NAME=VALUE&after=CURSOR&limit=N`: a page of
/// what the caller may see, oldest first; `next` is the cursor of the next page (`null`:
/// none). Custom-field filters have no index: they narrow what the other filters (or the
/// caller's scope) walk, within the same budget per page.
pub fn list<E: Resource>(app: &App, caller: &Caller, q: &str) -> Result<Response<Body>, ApiError> {
    let q = query(q)?;
    let limit = page_limit(&q)?;
    let after = after(app, E::PATH, &q)?;
    let mut wanted = Vec::new();
    let mut custom_wanted = Vec::new();
    for (name, value) in &q {
        if name == "after" || name == "limit" {
            continue;
        }
        if name.starts_with("custom.") {
            custom_wanted.push(custom_filter(app, E::KIND, name, value)?);
            continue;
        }
        let f = E::FILTERS.iter().find(|f| f.name == name).ok_or_else(|| {
            let names: Vec<&str> = E::FILTERS.iter().map(|f| f.name).collect();
            ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadQuery,
                name,
                format!(
                    "{} cannot be filtered by \"{name}\"; the filters are {}, and custom.NAME for a declared custom field",
                    E::PATH,
                    names.join(", ")
                ),
            )
        })?;
        let prefix = (f.prefix)(value, app.inst.settings()).map_err(|m| {
            ApiError::at(StatusCode::BAD_REQUEST, Code::BadQuery, name, format!("{name} \"{value}\" {m}"))
        })?;
        wanted.push(IndexEntry { index: f.index, prefix });
    }
    // The index walked: a filter's, unless it is a value shared by many (a status, a stage)
    // and the caller's scope has an index of its own (a manager's deals), which is smaller.
    let walk = match (wanted.first(), E::scope_index(caller)) {
        (Some(w), Some(scope)) if w.index.target() == crmkit_core::store::Target::Value => Some(scope),
        (Some(w), _) => Some(w.clone()),
        (None, scope) => scope,
    };
    let r = app.inst.store().read()?;
    let mut items: Vec<E> = Vec::new();
    let mut cursor = after;
    let mut next = None;
    let mut scanned = 0;
    let mut entries = Vec::new();
    'slices: loop {
        let slice: Vec<E> = match &walk {
            Some(w) => r.find(w.index, &w.prefix, cursor, 200)?,
            None => r.list(cursor.map(E::Id::from_raw), 200)?,
        };
        let Some(last) = slice.last() else { break };
        cursor = Some(last.meta().id);
        for e in slice {
            entries.clear();
            e.index_entries(&mut entries);
            let custom_match = || {
                custom_wanted.iter().all(|(field, w)| e.custom().and_then(|c| c.get(field)).is_some_and(|v| v.holds(w)))
            };
            if wanted.iter().all(|w| entries.contains(w)) && custom_match() && caller.may(&r, Access::Read, &e)? {
                if items.len() == limit {
                    next = items.last().map(|e| seal(app, E::PATH, e.meta().id)).transpose()?;
                    break 'slices;
                }
                items.push(e);
            }
        }
        scanned += 200;
        if scanned >= SCAN_BUDGET {
            next = cursor.map(|c| seal(app, E::PATH, c)).transpose()?;
            break;
        }
    }
    Ok(json_response(StatusCode::OK, &json!({ "items": items, "next": next })))
}

/// The entity `id` if it exists and `caller` may see it; 404 otherwise.
pub fn visible<E: Scoped>(r: &impl Reader, caller: &Caller, id: RawId) -> crmkit_core::Result<E> {
    let not_found = || Error::NotFound { kind: E::KIND, id };
    let e: E = r.get(E::Id::from_raw(id))?.ok_or_else(not_found)?;
    if !caller.may(r, Access::Read, &e)? {
        return Err(not_found());
    }
    Ok(e)
}

/// [`visible`], and writable by `caller` (403 otherwise).
pub fn writable<E: Scoped>(r: &impl Reader, caller: &Caller, id: RawId) -> crmkit_core::Result<E> {
    let e: E = visible(r, caller, id)?;
    if !caller.may(r, Access::Write, &e)? {
        return Err(Error::Forbidden(format!("{} {id} is not yours to change as {}", E::KIND, caller.role.name())));
    }
    Ok(e)
}

/// An entity as the answer, with its version as the `ETag`.
pub fn entity_response(status: StatusCode, e: &Value) -> Response<Body> {
    let mut response = json_response(status, e);
    if let Some(v) = e.get("version").and_then(Value::as_u64) {
        response.headers_mut().insert("etag", format!("\"{v}\"").parse().expect("a valid header"));
    }
    response
}

/// `GET /api/v1/RESOURCE/{id}`.
pub fn get<E: Resource>(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, ApiError> {
    let id: RawId = parse_id(E::KIND.name(), id)?;
    let r = app.inst.store().read()?;
    let e: E = visible(&r, caller, id)?;
    // Written straight from the entity: no JSON tree on the hottest read.
    let body = serde_json::to_vec(&e).expect("entities serialize");
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("etag", format!("\"{}\"", e.meta().version))
        .body(super::full(body))
        .expect("a valid response"))
}

pub fn to_json<E: Entity>(e: &E) -> Value {
    serde_json::to_value(e).expect("entities serialize")
}

/// Refuses body fields the store or the process engine keeps, and (`change`) the fields
/// fixed at creation.
fn refuse_server_fields<E: Resource>(body: &Map<String, Value>, change: bool) -> Result<(), ApiError> {
    for key in body.keys().map(String::as_str) {
        let refused = |why: &str| {
            Err(ApiError::at(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, key, format!("{}.{key} {why}", E::KIND)))
        };
        if META_FIELDS.contains(&key) || E::SERVER_FIELDS.contains(&key) {
            return refused("is set by the server, not by a request");
        }
        if change && E::FIXED_FIELDS.contains(&key) {
            return refused("is set when it is created and does not change");
        }
    }
    Ok(())
}

/// Refuses a reference to an entity the caller may not see as if it did not exist, so that
/// a write does not tell which ids exist. References the stored version `old` already made
/// stand (an entity may point at what its owner no longer sees).
fn refuse_unseen_refs<E: Entity>(r: &impl Reader, caller: &Caller, e: &E, old: Option<&E>) -> crmkit_core::Result<()> {
    let settings = r.settings();
    let before = old.map(|o| crmkit_core::model::references(o, settings)).unwrap_or_default();
    for x in crmkit_core::model::references(e, settings).into_iter().filter(|x| !before.contains(x)) {
        hidden_as_absent(r, caller, E::KIND, &x.field, x.kind, x.id)?;
    }
    Ok(())
}

/// An error, as for an id that does not exist, when `kind` `id` exists but `caller` may not
/// see it.
pub fn hidden_as_absent(
    r: &impl Reader,
    caller: &Caller,
    entity: crmkit_core::model::EntityKind,
    field: &str,
    kind: crmkit_core::model::EntityKind,
    id: RawId,
) -> crmkit_core::Result<()> {
    if r.exists(kind, id)? && !caller.may_ref(r, Access::Read, kind, id)? {
        let message = format!("refers to {kind} {id}, which does not exist");
        return Err(Error::Invalid(crmkit_core::model::FieldError::new(entity, field, message)));
    }
    Ok(())
}

/// The top-level field names of a struct `T`, as its `Deserialize` declares them.
fn field_names<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The entity a JSON object describes: fields the entity does not have are refused, and
/// errors name the field.
fn from_json<E: Entity>(value: Value) -> crmkit_core::Result<E> {
    use crmkit_core::model::FieldError;
    let known = field_names::<E>();
    if let Some(unknown) = value.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        let fields: Vec<&str> = known.iter().copied().filter(|f| !META_FIELDS.contains(f)).collect();
        let message = format!("{unknown} is not a field of {}; its fields are {}", E::KIND, fields.join(", "));
        return Err(Error::Invalid(FieldError::new(E::KIND, unknown.clone(), message)));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let message = err.inner().to_string();
        let path = err.path().to_string();
        // A missing field is an error of the object holding it: name the field.
        let field = match message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            Some(f) if path == "." => f.to_string(),
            Some(f) => format!("{path}.{f}"),
            None => path,
        };
        // A custom value's type tag and parts (`custom.signed_on.date`) are of its field.
        let field = match field.strip_prefix("custom.").and_then(|rest| rest.split_once('.')) {
            Some((name, _)) => format!("custom.{name}"),
            None => field,
        };
        Error::Invalid(FieldError::new(E::KIND, field, message))
    })
}

/// A request body that must be a JSON object.
async fn object_body(req: Request<Incoming>) -> Result<Map<String, Value>, ApiError> {
    match body_json(req).await? {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Code::Invalid, "the body is not a JSON object")),
    }
}

/// `POST /api/v1/RESOURCE`: a new entity from its fields.
pub async fn create<E: Resource>(
    app: &App,
    caller: &Caller,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    super::may_write(caller)?;
    let body = object_body(req).await?;
    let body = new_entity::<E>(caller, body)?;
    let caller = caller.clone();
    let created = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| create_entity::<E>(engine, tx, &caller, body))
        .await?;
    Ok(entity_response(StatusCode::CREATED, &created))
}

/// The fields of a new entity from what a request gave: no server field, the caller's
/// defaults where it gave none, and the server fields blank.
pub fn new_entity<E: Resource>(caller: &Caller, mut body: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    refuse_server_fields::<E>(&body, false)?;
    for (field, value) in E::defaults(caller) {
        body.entry(field).or_insert(value);
    }
    body.insert("id".into(), json!(RawId::default()));
    body.insert("version".into(), json!(0));
    for at in ["created_at", "updated_at"] {
        body.insert(at.into(), json!(crmkit_core::time::Timestamp::default()));
    }
    Ok(body)
}

/// Creates the entity of `body` (from [`new_entity`]) as `caller`: the API's `POST` and the
/// web page's forms.
pub fn create_entity<E: Resource>(
    engine: &crmkit_core::process::Engine,
    tx: &mut crmkit_core::store::WriteTxn<'_>,
    caller: &Caller,
    body: Map<String, Value>,
) -> crmkit_core::Result<Value> {
    let e: E = from_json(Value::Object(body))?;
    refuse_unseen_refs(&*tx, caller, &e, None)?;
    if !caller.may(&*tx, Access::Write, &e)? {
        return Err(Error::Forbidden(format!(
            "a {} may not create this {}: it would be outside their scope",
            caller.role.name(),
            E::KIND
        )));
    }
    Ok(to_json(&E::create(engine, tx, e)?))
}

/// The version `If-Match` names, if the request has one.
pub fn if_match(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    let Some(h) = req.headers().get("if-match") else { return Ok(None) };
    let text = String::from_utf8_lossy(h.as_bytes()).into_owned();
    let tag = text.trim();
    let v = tag.strip_prefix("W/").unwrap_or(tag).strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
    v.parse().map(Some).map_err(|_| {
        ApiError::at(
            StatusCode::BAD_REQUEST,
            Code::BadVersion,
            "version",
            format!("If-Match {text} is not a version like \"3\" (a change always names the version it was made to)"),
        )
    })
}

/// The version a write of an existing entity names: `If-Match` or `given` (the body's
/// `version`, or the query's for a delete); both must agree.
pub fn version_named(if_match: Option<u64>, given: Option<u64>) -> Result<u64, ApiError> {
    let bad = |m: &str| ApiError::at(StatusCode::BAD_REQUEST, Code::BadVersion, "version", m);
    match (if_match, given) {
        (Some(a), Some(b)) if a != b => Err(bad("If-Match and version name different versions")),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(bad("a change names the version it was made to: \"version\" or If-Match")),
    }
}

/// The `version` member of a body, if any.
fn body_version(v: Option<Value>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadVersion,
                "version",
                format!("version {v} is not a whole number"),
            )
        }),
    }
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { unreachable!("made an object above") };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(&k);
        } else {
            merge(t.entry(k).or_insert(Value::Null), v);
        }
    }
}

/// Changes entity `id` by a JSON merge patch as `caller`, from `version` (a stale one is a
/// conflict): the API's `PATCH` and the web page's edit forms. `set_by_hand` marks a deal's
/// probability as set by a person.
pub fn patch_entity<E: Resource>(
    engine: &crmkit_core::process::Engine,
    tx: &mut crmkit_core::store::WriteTxn<'_>,
    caller: &Caller,
    id: RawId,
    version: u64,
    patch: Map<String, Value>,
    set_by_hand: bool,
) -> crmkit_core::Result<Value> {
    let current: E = writable(&*tx, caller, id)?;
    let stored = current.meta().version;
    if stored != version {
        return Err(Error::Conflict { kind: E::KIND, id, given: version, stored });
    }
    let mut value = to_json(&current);
    merge(&mut value, Value::Object(patch));
    if set_by_hand {
        value["probability_manual"] = Value::Bool(true);
    }
    let next: E = from_json(value)?;
    refuse_unseen_refs(&*tx, caller, &next, Some(&current))?;
    if !caller.may(&*tx, Access::Write, &next)? {
        return Err(Error::Forbidden(format!(
            "this change would take {} {id} out of the scope of a {}",
            E::KIND,
            caller.role.name()
        )));
    }
    Ok(to_json(&engine.update(tx, next)?))
}

/// `PATCH /api/v1/RESOURCE/{id}` with a JSON merge patch and the version read (body
/// `version` or `If-Match`): a stale version is a 409.
pub async fn update<E: Resource>(
    app: &App,
    caller: &Caller,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    super::may_write(caller)?;
    let id: RawId = parse_id(E::KIND.name(), id)?;
    let header = if_match(&req)?;
    let mut patch = object_body(req).await?;
    let version = version_named(header, body_version(patch.remove("version"))?)?;
    refuse_server_fields::<E>(&patch, true)?;
    // A probability a request sets is set by hand, even when it is the value the deal has.
    let set_by_hand = E::KIND == EntityKind::Deal && patch.get("probability").is_some_and(|p| !p.is_null());
    let caller = caller.clone();
    let updated = app
        .writer
        .write(Some((caller.user.id, caller.role)), move |engine, tx| {
            patch_entity::<E>(engine, tx, &caller, id, version, patch, set_by_hand)
        })
        .await?;
    Ok(entity_response(StatusCode::OK, &updated))
}

/// `DELETE /api/v1/RESOURCE/{id}` with `If-Match` or `?version=`: refused while anything
/// refers to the entity.
pub async fn delete<E: Resource>(
    app: &App,
    caller: &Caller,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    super::may_write(caller)?;
    let id: RawId = parse_id(E::KIND.name(), id)?;
    let q = query(req.uri().query().unwrap_or(""))?;
    let given = q.get("version").map(|v| {
        v.parse::<u64>().map_err(|_| {
            ApiError::at(
                StatusCode::BAD_REQUEST,
                Code::BadVersion,
                "version",
                format!("version \"{v}\" is not a whole number"),
            )
        })
    });
    let version = version_named(if_match(&req)?, given.transpose()?)?;
    let caller = caller.clone();
    app.writer
        .write(Some((caller.user.id, caller.role)), move |_, tx| {
            let current: E = writable(&*tx, &caller, id)?;
            tx.delete::<E>(current.id(), version)?;
            Ok(Value::Null)
        })
        .await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(super::empty()).expect("a valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_of_an_entity_are_those_it_declares() {
        let fields = field_names::<Partner>();
        assert!(fields.contains(&"name") && fields.contains(&"manager") && fields.contains(&"custom"), "{fields:?}");
        assert!(!fields.contains(&"nme"));
        assert_eq!(
            field_names::<Task>().len(),
            to_json(&Task::new("t", Default::default())).as_object().unwrap().len()
        );
    }

    #[test]
    fn a_merge_patch_merges_objects_removes_nulls_and_replaces_the_rest() {
        let mut v = json!({ "a": 1, "b": { "c": 2, "d": 3 }, "e": [1, 2] });
        merge(&mut v, json!({ "a": null, "b": { "c": 5, "d": null }, "e": [3], "f": "x" }));
        assert_eq!(v, json!({ "b": { "c": 5 }, "e": [3], "f": "x" }));
        // An object patched onto what is not an object merges into an empty one.
        merge(&mut v, json!({ "e": { "g": null, "h": 1 } }));
        assert_eq!(v["e"], json!({ "h": 1 }));
    }
}
