//! Installation configuration: `config/crmkit.toml` parsed in two layers.
//!
//! [`raw`] mirrors the TOML exactly (unknown keys are errors) and keeps source positions;
//! [`Settings`] is the validated value the rest of the engine reads. Every error names the
//! file, the line and the key: `config/crmkit.toml:14:1: unknown key "stgaes" in [[process_kinds]]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;

use crate::model::check_login;
use crate::model::{CustomFieldDef, CustomFieldType, EntityKind, Role};
use crate::values::{phone, Currency};

/// The installation's config file, relative to the installation folder.
pub const CONFIG_FILE: &str = "config/crmkit.toml";

/// A configuration error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, as given to the loader.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a position.
    pub line: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// An entry of a configured list: a stable id and a name to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListItem {
    pub id: String,
    pub name: String,
}

/// A configured list of values (loss reasons, sources, link types, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct List {
    /// The list's name as config spells it (`lists.loss_reasons`).
    pub name: &'static str,
    pub items: Vec<ListItem>,
}

impl List {
    /// Whether `id` is in the list.
    pub fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|i| i.id == id)
    }

    /// The ids, comma-separated (for messages).
    pub fn ids_joined(&self) -> String {
        self.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The name shown for `id` (the id itself if unknown).
    pub fn label<'a>(&'a self, id: &'a str) -> &'a str {
        self.items.iter().find(|i| i.id == id).map_or(id, |i| i.name.as_str())
    }
}

/// The configured value lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lists {
    pub loss_reasons: List,
    pub sources: List,
    pub participant_roles: List,
    pub decision_roles: List,
}

/// A stage of a process kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageSpec {
    pub id: String,
    pub name: String,
}

/// A process kind (вид сделки) and its ordered stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessKindSpec {
    pub id: String,
    pub name: String,
    pub stages: Vec<StageSpec>,
}

impl ProcessKindSpec {
    /// The stage with this id.
    pub fn stage(&self, id: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// A user declared in config; synchronized into the store when the installation opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSpec {
    pub login: String,
    pub name: String,
    pub email: Option<String>,
    pub department: Option<String>,
    pub roles: Vec<Role>,
}

/// The validated configuration of an installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// A name for the installation (shown by the CLI).
    pub name: String,
    /// The database file (absolute, or relative to the working directory).
    pub database: PathBuf,
    /// Memory for cached database pages, in bytes.
    pub cache_bytes: usize,
    /// Memory for cached entity records (shared by all readers), in bytes; 0 turns it off.
    pub record_cache_bytes: usize,
    pub default_currency: Currency,
    /// ISO 3166 region for phone numbers written without a country code.
    pub phone_region: String,
    /// The largest attachment accepted, in bytes.
    pub attachment_max_bytes: u64,
    pub users: Vec<UserSpec>,
    pub lists: Lists,
    pub partner_link_types: List,
    pub contact_link_types: List,
    pub participant_link_types: List,
    pub custom_fields: BTreeMap<EntityKind, Vec<CustomFieldDef>>,
    pub process_kinds: Vec<ProcessKindSpec>,
}

impl Settings {
    /// The process kind with this id.
    pub fn process_kind(&self, id: &str) -> Option<&ProcessKindSpec> {
        self.process_kinds.iter().find(|k| k.id == id)
    }

    /// The custom fields declared for `kind`.
    pub fn custom_fields_of(&self, kind: EntityKind) -> &[CustomFieldDef] {
        self.custom_fields.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// Reads and validates `DIR/config/crmkit.toml`; a relative database path is taken
    /// relative to `dir`.
    pub fn load_installation(dir: &Path) -> Result<Settings, ConfigError> {
        let file = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut s = Settings::parse(&text, &file)?;
        if s.database.is_relative() {
            s.database = dir.join(&s.database);
        }
        Ok(s)
    }

    /// Parses and validates config text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Settings, ConfigError> {
        let raw: raw::Config = toml::from_str(text).map_err(|e| Source { text, file }.toml_error(&e))?;
        Source { text, file }.validate(raw)
    }

    /// Settings for tests and examples: the built-in lists and one process kind.
    pub fn builtin() -> Settings {
        Settings::parse(DEFAULT_CONFIG, Path::new("<built-in>")).expect("the built-in config is valid")
    }
}

/// The default installation's config, also used by `crmkit init`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/crmkit.toml");

/// The built-in partner link types; config may add more.
const BUILTIN_PARTNER_LINKS: [(&str, &str); 4] = [
    ("holding", "Holding of (from is the holding, to the subsidiary)"),
    ("affiliated", "Affiliated with"),
    ("recommended_by", "Recommended by (from was recommended by to)"),
    ("competitor_of", "Competitor of"),
];
const BUILTIN_CONTACT_LINKS: [(&str, &str); 3] =
    [("reports_to", "Reports to"), ("colleague", "Colleague of"), ("relative", "Relative of")];
const BUILTIN_PARTICIPANT_LINKS: [(&str, &str); 3] =
    [("works_for", "Works for"), ("influences", "Influences"), ("subcontracts_for", "Subcontractor of")];

/// The raw layer: mirrors the TOML exactly.
mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        #[serde(default)]
        pub installation: Installation,
        #[serde(default)]
        pub database: Database,
        #[serde(default)]
        pub defaults: Defaults,
        #[serde(default)]
        pub attachments: Attachments,
        #[serde(default)]
        pub users: Vec<User>,
        #[serde(default)]
        pub lists: Lists,
        #[serde(default)]
        pub partner_link_types: Vec<Item>,
        #[serde(default)]
        pub contact_link_types: Vec<Item>,
        #[serde(default)]
        pub participant_link_types: Vec<Item>,
        #[serde(default)]
        pub custom_fields: BTreeMap<Spanned<String>, Vec<CustomField>>,
        #[serde(default)]
        pub process_kinds: Vec<ProcessKind>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Installation {
        pub name: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Database {
        pub path: Option<String>,
        pub cache_mb: Option<Spanned<u64>>,
        pub record_cache_mb: Option<Spanned<u64>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Defaults {
        pub currency: Option<Spanned<String>>,
        pub phone_region: Option<Spanned<String>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Attachments {
        pub max_size_mb: Option<Spanned<u64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct User {
        pub login: Spanned<String>,
        pub name: Spanned<String>,
        pub email: Option<Spanned<String>>,
        pub department: Option<String>,
        pub roles: Spanned<Vec<Spanned<String>>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Lists {
        pub loss_reasons: Option<Vec<Item>>,
        pub sources: Option<Vec<Item>>,
        pub participant_roles: Option<Vec<Item>>,
        pub decision_roles: Option<Vec<Item>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Item {
        pub id: Spanned<String>,
        pub name: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CustomField {
        pub name: Spanned<String>,
        pub label: Option<String>,
        #[serde(rename = "type")]
        pub ty: Spanned<String>,
        #[serde(default)]
        pub required: bool,
        pub values: Option<Spanned<Vec<Spanned<String>>>>,
        pub target: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ProcessKind {
        pub id: Spanned<String>,
        pub name: String,
        #[serde(default)]
        pub stages: Vec<Stage>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stage {
        pub id: Spanned<String>,
        pub name: String,
    }
}

/// The text being validated, for turning byte spans into positions.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    /// The text before `offset` (moved back to a character boundary).
    fn before(&self, offset: usize) -> &str {
        let mut at = offset.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        &self.text[..at]
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.before(offset);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// The `[table]` or `[[array]]` header in force at `offset` (none when the offset is on
    /// a header line itself: that key is a top-level one).
    fn section(&self, offset: usize) -> Option<&str> {
        let before = self.before(offset);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if self.text[line_start..].trim_start().starts_with('[') {
            return None;
        }
        let before = &self.text[..line_start];
        before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.split('#').next().unwrap_or(l).trim())
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.to_path_buf(), line: Some(self.position(span.start)), message: message.into() }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e.message().trim().to_string();
        // The key path, which the error only prints when it has no input to quote.
        let mut bare = e.clone();
        bare.set_input(None);
        let key = bare
            .to_string()
            .lines()
            .find_map(|l| l.strip_prefix("in `").and_then(|k| k.strip_suffix('`')).map(str::to_string));
        if let Some(key) = key.filter(|_| !message.starts_with("unknown field")) {
            message = format!("{key}: {message}");
        }
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once('`') {
                let expected = expected.trim_start_matches(", ").replace('`', "");
                let section =
                    e.span().and_then(|s| self.section(s.start)).map(|s| format!(" in {s}")).unwrap_or_default();
                message = format!("unknown key \"{key}\"{section} ({expected})");
            }
        }
        match e.span() {
            Some(span) => self.error(span, message),
            None => ConfigError { file: self.file.to_path_buf(), line: None, message },
        }
    }

    fn list(&self, name: &'static str, items: Vec<raw::Item>, builtin: &[(&str, &str)]) -> Result<List, ConfigError> {
        let mut out: Vec<ListItem> =
            builtin.iter().map(|(id, n)| ListItem { id: id.to_string(), name: n.to_string() }).collect();
        for item in items {
            self.ident(&item.id, name)?;
            if out.iter().any(|i| i.id == *item.id.get_ref()) {
                let what = if builtin.iter().any(|(b, _)| b == item.id.get_ref()) { "built-in" } else { "duplicate" };
                return Err(self.error(item.id.span(), format!("{what} value \"{}\" in {name}", item.id.get_ref())));
            }
            out.push(ListItem { id: item.id.into_inner(), name: item.name });
        }
        Ok(List { name, items: out })
    }

    fn ident(&self, id: &Spanned<String>, what: &str) -> Result<(), ConfigError> {
        let s = id.get_ref();
        let ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && s.len() <= 64;
        if ok {
            Ok(())
        } else {
            Err(self.error(
                id.span(),
                format!("\"{s}\" in {what} must be an identifier: a-z, 0-9 and '_', starting with a letter"),
            ))
        }
    }

    fn validate(&self, raw: raw::Config) -> Result<Settings, ConfigError> {
        let default_currency = match raw.defaults.currency {
            Some(c) => {
                Currency::parse(c.get_ref()).map_err(|e| self.error(c.span(), format!("defaults.currency: {e}")))?
            }
            None => Currency::RUB,
        };
        let phone_region = match raw.defaults.phone_region {
            Some(r) => {
                phone::check_region(r.get_ref())
                    .map_err(|e| self.error(r.span(), format!("defaults.phone_region: {e}")))?;
                r.into_inner()
            }
            None => "RU".to_string(),
        };
        let cache_bytes = match raw.database.cache_mb {
            Some(m) if !(16..=65_536).contains(m.get_ref()) => {
                return Err(self.error(m.span(), "database.cache_mb must be between 16 and 65536"))
            }
            Some(m) => (m.into_inner() as usize) << 20,
            None => 256 << 20,
        };
        let record_cache_bytes = match raw.database.record_cache_mb {
            Some(m) if *m.get_ref() > 65_536 => {
                return Err(self.error(m.span(), "database.record_cache_mb must be at most 65536"))
            }
            Some(m) => (m.into_inner() as usize) << 20,
            None => 64 << 20,
        };
        let attachment_max_bytes = match raw.attachments.max_size_mb {
            Some(m) if *m.get_ref() == 0 || *m.get_ref() > 4096 => {
                return Err(self.error(m.span(), "attachments.max_size_mb must be between 1 and 4096"))
            }
            Some(m) => m.into_inner() * 1024 * 1024,
            None => 25 * 1024 * 1024,
        };

        let mut users = Vec::new();
        let mut logins = BTreeSet::new();
        for u in raw.users {
            check_login(u.login.get_ref()).map_err(|m| self.error(u.login.span(), format!("users: {m}")))?;
            if !logins.insert(u.login.get_ref().clone()) {
                return Err(self.error(u.login.span(), format!("duplicate user login \"{}\"", u.login.get_ref())));
            }
            let email = match u.email {
                Some(e) => Some(
                    crate::values::email::normalize_email(e.get_ref())
                        .map_err(|err| self.error(e.span(), format!("users.email: {err}")))?,
                ),
                None => None,
            };
            if u.roles.get_ref().is_empty() {
                return Err(self.error(u.roles.span(), "a user needs at least one role (admin, head, manager, viewer)"));
            }
            if u.name.get_ref().trim().is_empty() || u.name.get_ref().chars().count() > 200 {
                return Err(self.error(u.name.span(), "users.name must not be empty and at most 200 characters"));
            }
            let mut roles = Vec::new();
            for r in u.roles.into_inner() {
                roles.push(match r.get_ref().as_str() {
                    "admin" => Role::Admin,
                    "head" => Role::Head,
                    "manager" => Role::Manager,
                    "viewer" => Role::Viewer,
                    other => {
                        return Err(
                            self.error(r.span(), format!("unknown role \"{other}\" (admin, head, manager, viewer)"))
                        )
                    }
                });
            }
            roles.sort();
            roles.dedup();
            let department = u.department.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
            let name = u.name.into_inner().trim().to_string();
            users.push(UserSpec { login: u.login.into_inner(), name, email, department, roles });
        }

        let lists = Lists {
            loss_reasons: self.list("lists.loss_reasons", raw.lists.loss_reasons.unwrap_or_default(), &[])?,
            sources: self.list("lists.sources", raw.lists.sources.unwrap_or_default(), &[])?,
            participant_roles: self.list(
                "lists.participant_roles",
                raw.lists.participant_roles.unwrap_or_default(),
                &[],
            )?,
            decision_roles: self.list("lists.decision_roles", raw.lists.decision_roles.unwrap_or_default(), &[])?,
        };

        let partner_link_types = self.list("partner_link_types", raw.partner_link_types, &BUILTIN_PARTNER_LINKS)?;
        let contact_link_types = self.list("contact_link_types", raw.contact_link_types, &BUILTIN_CONTACT_LINKS)?;
        let participant_link_types =
            self.list("participant_link_types", raw.participant_link_types, &BUILTIN_PARTICIPANT_LINKS)?;

        let mut custom_fields = BTreeMap::new();
        for (entity, defs) in raw.custom_fields {
            let kind = EntityKind::from_name(entity.get_ref()).filter(|k| k.has_custom_fields()).ok_or_else(|| {
                let names: Vec<&str> =
                    EntityKind::ALL.iter().filter(|k| k.has_custom_fields()).map(|k| k.name()).collect();
                self.error(
                    entity.span(),
                    format!(
                        "custom_fields: \"{}\" is not an entity type with custom fields ({})",
                        entity.get_ref(),
                        names.join(", ")
                    ),
                )
            })?;
            let mut out: Vec<CustomFieldDef> = Vec::new();
            for d in defs {
                self.ident(&d.name, "custom_fields")?;
                if out.iter().any(|o| o.name == *d.name.get_ref()) {
                    return Err(self
                        .error(d.name.span(), format!("duplicate custom field \"{}\" for {kind}", d.name.get_ref())));
                }
                let ty = self.field_type(&d)?;
                let name = d.name.into_inner();
                out.push(CustomFieldDef {
                    label: d.label.unwrap_or_else(|| name.clone()),
                    name,
                    ty,
                    required: d.required,
                });
            }
            custom_fields.insert(kind, out);
        }

        let mut process_kinds: Vec<ProcessKindSpec> = Vec::new();
        for k in raw.process_kinds {
            self.ident(&k.id, "process_kinds")?;
            if process_kinds.iter().any(|p| p.id == *k.id.get_ref()) {
                return Err(self.error(k.id.span(), format!("duplicate process kind \"{}\"", k.id.get_ref())));
            }
            let mut stages: Vec<StageSpec> = Vec::new();
            for s in k.stages {
                self.ident(&s.id, "process_kinds.stages")?;
                if stages.iter().any(|x| x.id == *s.id.get_ref()) {
                    return Err(self.error(
                        s.id.span(),
                        format!("duplicate stage \"{}\" in process kind \"{}\"", s.id.get_ref(), k.id.get_ref()),
                    ));
                }
                stages.push(StageSpec { id: s.id.into_inner(), name: s.name });
            }
            process_kinds.push(ProcessKindSpec { id: k.id.into_inner(), name: k.name, stages });
        }

        if lists.loss_reasons.items.is_empty() {
            return Err(ConfigError {
                file: self.file.to_path_buf(),
                line: None,
                message: "lists.loss_reasons is empty: a deal could never be closed as lost".into(),
            });
        }
        if process_kinds.is_empty() {
            return Err(ConfigError {
                file: self.file.to_path_buf(),
                line: None,
                message: "no [[process_kinds]]: a deal needs a process kind".into(),
            });
        }
        // Config users are created without custom values, so none may be required.
        if !users.is_empty() {
            if let Some(def) =
                custom_fields.get(&EntityKind::User).and_then(|d: &Vec<CustomFieldDef>| d.iter().find(|d| d.required))
            {
                return Err(ConfigError {
                    file: self.file.to_path_buf(),
                    line: None,
                    message: format!(
                        "custom_fields.user: \"{}\" cannot be required while [[users]] are declared in config (they are created without custom values)",
                        def.name
                    ),
                });
            }
        }

        Ok(Settings {
            name: raw.installation.name.unwrap_or_else(|| "crmkit".to_string()),
            database: PathBuf::from(raw.database.path.unwrap_or_else(|| "data/crmkit.redb".to_string())),
            cache_bytes,
            record_cache_bytes,
            default_currency,
            phone_region,
            attachment_max_bytes,
            users,
            lists,
            partner_link_types,
            contact_link_types,
            participant_link_types,
            custom_fields,
            process_kinds,
        })
    }

    fn field_type(&self, d: &raw::CustomField) -> Result<CustomFieldType, ConfigError> {
        let no_values = |what: &str| -> Result<(), ConfigError> {
            if let Some(v) = &d.values {
                return Err(self.error(v.span(), format!("\"values\" is only for enum fields, not {what}")));
            }
            Ok(())
        };
        let no_target = |what: &str| -> Result<(), ConfigError> {
            if let Some(t) = &d.target {
                return Err(self.error(t.span(), format!("\"target\" is only for reference fields, not {what}")));
            }
            Ok(())
        };
        let ty = d.ty.get_ref().as_str();
        match ty {
            "enum" => {
                no_target(ty)?;
                let Some(values) = &d.values else {
                    return Err(self.error(d.ty.span(), "an enum field needs \"values\""));
                };
                if values.get_ref().is_empty() {
                    return Err(self.error(values.span(), "an enum field needs at least one value"));
                }
                let mut seen = BTreeSet::new();
                for v in values.get_ref() {
                    if v.get_ref().trim().is_empty() || !seen.insert(v.get_ref().clone()) {
                        return Err(self.error(v.span(), format!("empty or duplicate enum value \"{}\"", v.get_ref())));
                    }
                }
                Ok(CustomFieldType::Enum { values: values.get_ref().iter().map(|v| v.get_ref().clone()).collect() })
            }
            "reference" => {
                no_values(ty)?;
                let Some(t) = &d.target else {
                    return Err(self.error(d.ty.span(), "a reference field needs \"target\" (an entity type)"));
                };
                let target = EntityKind::from_name(t.get_ref())
                    .ok_or_else(|| self.error(t.span(), format!("\"{}\" is not an entity type", t.get_ref())))?;
                Ok(CustomFieldType::Reference { target })
            }
            "string" | "number" | "money" | "date" | "bool" => {
                no_values(ty)?;
                no_target(ty)?;
                Ok(match ty {
                    "string" => CustomFieldType::String,
                    "number" => CustomFieldType::Number,
                    "money" => CustomFieldType::Money,
                    "date" => CustomFieldType::Date,
                    _ => CustomFieldType::Bool,
                })
            }
            other => Err(self.error(
                d.ty.span(),
                format!("unknown custom field type \"{other}\" (string, number, money, date, bool, enum, reference)"),
            )),
        }
    }
}
