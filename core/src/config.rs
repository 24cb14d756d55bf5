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

use crate::hooks::{runtime_of, CallLimits, HookBinding, HookPoint, Limits};
use crate::model::check_login;
use crate::model::{CustomFieldDef, CustomFieldType, EntityKind, ListId, Role, Rules};
use crate::process::condition::{self, Condition};
use crate::process::spec::{self, Assignee, Guidance, Mode, ProcessSettings, Route, TaskTemplate};
pub use crate::process::spec::{ProcessKindSpec, StageSpec};
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

pub use crate::model::{List, ListItem};

/// The configured value lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lists {
    pub loss_reasons: List,
    pub sources: List,
    pub participant_roles: List,
    pub decision_roles: List,
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
    pub process: ProcessSettings,
    /// Hook bindings, in file order.
    pub hooks: Vec<HookBinding>,
    /// What every hook runtime's calls may take (`[limits]`).
    pub limits: Limits,
    /// The runtimes' own sections (`[runtimes.NAME]`), by name, with the line each starts
    /// on; each runtime reads its own with [`Settings::runtime_section`].
    pub runtimes: BTreeMap<String, usize>,
    /// The config text and its file, for the sections core leaves to the runtimes.
    pub source: ConfigSource,
}

/// The config as it was read: its file (for messages) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigSource {
    pub file: PathBuf,
    #[serde(skip)]
    pub text: std::sync::Arc<str>,
}

impl Settings {
    /// Reads the config text as `T`, a runtime's view of the file (usually a struct whose
    /// only field is `runtimes`, holding the runtime's own section with
    /// `deny_unknown_fields`). Errors name the file, line and key, as core's own do.
    pub fn runtime_section<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let source = Source { text: &self.source.text, file: &self.source.file };
        toml::from_str(&self.source.text).map_err(|e| source.toml_error(&e))
    }

    /// A config error at `span` of the config text (a span a runtime's section reported).
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        Source { text: &self.source.text, file: &self.source.file }.error(span, message)
    }

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

impl Rules for Settings {
    fn list(&self, list: ListId) -> &List {
        match list {
            ListId::LossReasons => &self.lists.loss_reasons,
            ListId::Sources => &self.lists.sources,
            ListId::ParticipantRoles => &self.lists.participant_roles,
            ListId::DecisionRoles => &self.lists.decision_roles,
            ListId::PartnerLinkTypes => &self.partner_link_types,
            ListId::ContactLinkTypes => &self.contact_link_types,
            ListId::ParticipantLinkTypes => &self.participant_link_types,
        }
    }

    fn custom_fields_of(&self, kind: EntityKind) -> &[CustomFieldDef] {
        Settings::custom_fields_of(self, kind)
    }

    fn phone_region(&self) -> &str {
        &self.phone_region
    }

    fn process_kinds(&self) -> Vec<&str> {
        self.process_kinds.iter().map(|p| p.id.as_str()).collect()
    }

    fn stages_of(&self, kind: &str) -> Option<Vec<&str>> {
        self.process_kind(kind).map(|k| k.stages.iter().map(|s| s.id.as_str()).collect())
    }

    fn creation_step(
        &self,
        deal: &mut crate::model::Deal,
        actor: Option<crate::id::UserId>,
    ) -> Result<crate::model::StageChange, crate::model::FieldError> {
        crate::process::creation_step(self.process_kind(&deal.kind), deal, actor)
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
        #[serde(default)]
        pub process: Process,
        #[serde(default)]
        pub hooks: Vec<Hook>,
        #[serde(default)]
        pub limits: Limits,
        /// Each runtime's own section, which the runtime reads and checks.
        #[serde(default)]
        pub runtimes: BTreeMap<Spanned<String>, Spanned<toml::Table>>,
        /// The section limits and runtimes replaced: refused with where its keys went.
        pub scripting: Option<Spanned<toml::Table>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub timeout_ms: Option<Spanned<u64>>,
        pub report_timeout_ms: Option<Spanned<u64>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Process {
        pub max_reaction_depth: Option<Spanned<u32>>,
        pub complete_others_tasks: Option<Vec<Spanned<String>>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Hook {
        pub point: Spanned<String>,
        pub handler: Spanned<String>,
        pub runtime: Option<Spanned<String>>,
        #[serde(default)]
        pub kinds: Vec<Spanned<String>>,
        pub timeout_ms: Option<Spanned<u64>>,
        pub max_operations: Option<Spanned<u64>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Guidance {
        pub title: Spanned<String>,
        pub url: Option<String>,
        pub file: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Task {
        pub title: Spanned<String>,
        #[serde(default)]
        pub description: String,
        pub assignee: Option<Spanned<String>>,
        pub due: Option<Spanned<String>>,
        #[serde(default)]
        pub required: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Route {
        pub to: Spanned<String>,
        pub when: Option<Spanned<String>>,
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
        pub mode: Option<Spanned<String>>,
        pub loss_reasons: Option<Vec<Spanned<String>>>,
        #[serde(default)]
        pub require_competitor: bool,
        #[serde(default)]
        pub require_loss_comment: bool,
        pub reopen_roles: Option<Vec<Spanned<String>>>,
        #[serde(default)]
        pub guidance: Vec<Guidance>,
        #[serde(default)]
        pub stages: Vec<Stage>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stage {
        pub id: Spanned<String>,
        pub name: String,
        pub sla: Option<Spanned<String>>,
        pub probability: Option<Spanned<i64>>,
        #[serde(default)]
        pub required_fields: Vec<Spanned<String>>,
        #[serde(default)]
        pub checklist: Vec<Item>,
        #[serde(default)]
        pub tasks: Vec<Task>,
        #[serde(default)]
        pub guidance: Vec<Guidance>,
        pub to: Option<Vec<Spanned<String>>>,
        #[serde(default)]
        pub routes: Vec<Route>,
        pub exit_when: Option<Spanned<String>>,
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

    /// A number that must be above zero, or `default` when not given.
    fn positive_or<T: PartialOrd + Default + Copy + fmt::Display>(
        &self,
        v: Option<Spanned<T>>,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        v.map(|v| self.positive(v, key)).transpose().map(|v| v.unwrap_or(default))
    }

    /// A number that must be above zero.
    fn positive<T: PartialOrd + Default + Copy + fmt::Display>(
        &self,
        v: Spanned<T>,
        key: &str,
    ) -> Result<T, ConfigError> {
        let n = *v.get_ref();
        if n > T::default() {
            Ok(n)
        } else {
            Err(self.error(v.span(), format!("{key} must be above zero, got {n}")))
        }
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
                roles.push(self.role(&r)?);
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

        let deal_custom: Vec<&str> = custom_fields
            .get(&EntityKind::Deal)
            .map_or(Vec::new(), |d: &Vec<CustomFieldDef>| d.iter().map(|f| f.name.as_str()).collect());
        let mut process_kinds: Vec<ProcessKindSpec> = Vec::new();
        for k in raw.process_kinds {
            if process_kinds.iter().any(|p| p.id == *k.id.get_ref()) {
                return Err(self.error(k.id.span(), format!("duplicate process kind \"{}\"", k.id.get_ref())));
            }
            process_kinds.push(self.process_kind(k, &lists, &users, &deal_custom)?);
        }
        let process = ProcessSettings {
            max_reaction_depth: match raw.process.max_reaction_depth {
                Some(d) if *d.get_ref() > 16 => {
                    return Err(self.error(d.span(), "process.max_reaction_depth must be at most 16"))
                }
                Some(d) => d.into_inner(),
                None => ProcessSettings::default().max_reaction_depth,
            },
            complete_others_tasks: match raw.process.complete_others_tasks {
                Some(roles) => roles.iter().map(|r| self.role(r)).collect::<Result<_, _>>()?,
                None => ProcessSettings::default().complete_others_tasks,
            },
        };
        let mut hooks = Vec::new();
        for h in raw.hooks {
            let point = HookPoint::from_name(h.point.get_ref()).ok_or_else(|| {
                let names: Vec<&str> = HookPoint::ALL.iter().map(|p| p.name()).collect();
                self.error(
                    h.point.span(),
                    format!("hooks: unknown hook point \"{}\" ({})", h.point.get_ref(), names.join(", ")),
                )
            })?;
            if h.handler.get_ref().trim().is_empty() {
                return Err(self.error(h.handler.span(), "hooks: the handler name must not be empty"));
            }
            for kind in &h.kinds {
                if !process_kinds.iter().any(|p| p.id == *kind.get_ref()) {
                    return Err(self.error(kind.span(), format!("hooks: \"{}\" is not a process kind", kind.get_ref())));
                }
            }
            let limits = CallLimits {
                timeout_ms: h.timeout_ms.map(|t| self.positive(t, "hooks.timeout_ms")).transpose()?,
                max_operations: h.max_operations.map(|t| self.positive(t, "hooks.max_operations")).transpose()?,
            };
            let runtime = match h.runtime {
                Some(r) if r.get_ref().trim().is_empty() => {
                    return Err(self.error(r.span(), "hooks: the runtime name must not be empty"))
                }
                Some(r) => r.into_inner(),
                None => runtime_of(h.handler.get_ref()).to_string(),
            };
            let origin = format!("{}:{}", self.file.display(), self.position(h.handler.span().start).0);
            hooks.push(HookBinding {
                point,
                handler: h.handler.into_inner(),
                runtime,
                kinds: h.kinds.into_iter().map(Spanned::into_inner).collect(),
                limits,
                origin,
            });
        }
        if let Some(old) = &raw.scripting {
            return Err(self.error(
                old.span(),
                "[scripting] is split: timeout_ms and report_timeout_ms go to [limits] (every runtime), the Rhai limits (max_operations, report_max_operations, max_call_depth, max_expr_depth, max_string_size, max_array_size, max_map_size, imports) to [runtimes.rhai]",
            ));
        }
        let d = Limits::default();
        let limits = Limits {
            timeout_ms: self.positive_or(raw.limits.timeout_ms, "limits.timeout_ms", d.timeout_ms)?,
            report_timeout_ms: self.positive_or(
                raw.limits.report_timeout_ms,
                "limits.report_timeout_ms",
                d.report_timeout_ms,
            )?,
        };
        let mut runtimes = BTreeMap::new();
        for name in raw.runtimes.keys() {
            self.ident(name, "runtimes")?;
            runtimes.insert(name.get_ref().clone(), self.position(name.span().start).0);
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
            process,
            hooks,
            limits,
            runtimes,
            source: ConfigSource { file: self.file.to_path_buf(), text: self.text.into() },
        })
    }

    fn role(&self, r: &Spanned<String>) -> Result<Role, ConfigError> {
        Ok(match r.get_ref().as_str() {
            "admin" => Role::Admin,
            "head" => Role::Head,
            "manager" => Role::Manager,
            "viewer" => Role::Viewer,
            other => {
                return Err(self.error(r.span(), format!("unknown role \"{other}\" (admin, head, manager, viewer)")))
            }
        })
    }

    fn guidance(&self, items: Vec<raw::Guidance>) -> Result<Vec<Guidance>, ConfigError> {
        items
            .into_iter()
            .map(|g| {
                if g.url.is_some() == g.file.is_some() {
                    return Err(self.error(g.title.span(), "guidance needs exactly one of \"url\" and \"file\""));
                }
                Ok(Guidance { title: g.title.into_inner(), url: g.url, file: g.file })
            })
            .collect()
    }

    fn condition(&self, text: &Spanned<String>, deal_custom: &[&str]) -> Result<Condition, ConfigError> {
        Condition::parse(text.get_ref(), deal_custom).map_err(|m| self.error(text.span(), m))
    }

    fn process_kind(
        &self,
        k: raw::ProcessKind,
        lists: &Lists,
        users: &[UserSpec],
        deal_custom: &[&str],
    ) -> Result<ProcessKindSpec, ConfigError> {
        self.ident(&k.id, "process_kinds")?;
        let kind_id = k.id.get_ref().clone();
        let mode = match &k.mode {
            None if k.stages.is_empty() => Mode::Stageless,
            None => Mode::Manual,
            Some(m) => match m.get_ref().as_str() {
                "managed" => Mode::Managed,
                "manual" => Mode::Manual,
                "stageless" => Mode::Stageless,
                other => {
                    return Err(self.error(m.span(), format!("unknown mode \"{other}\" (managed, manual, stageless)")))
                }
            },
        };
        match (mode, k.stages.is_empty(), &k.mode) {
            (Mode::Stageless, false, Some(m)) => {
                return Err(self.error(m.span(), format!("process kind \"{kind_id}\" is stageless but declares stages")))
            }
            (Mode::Managed | Mode::Manual, true, Some(m)) => {
                return Err(
                    self.error(m.span(), format!("process kind \"{kind_id}\" is {} but has no stages", mode.name()))
                )
            }
            _ => {}
        }
        let loss_reasons = match k.loss_reasons {
            None => lists.loss_reasons.items.iter().map(|i| i.id.clone()).collect(),
            Some(ids) => {
                let mut out = Vec::new();
                for id in ids {
                    if !lists.loss_reasons.contains(id.get_ref()) {
                        return Err(self.error(
                            id.span(),
                            format!(
                                "\"{}\" is not in lists.loss_reasons ({})",
                                id.get_ref(),
                                lists.loss_reasons.ids_joined()
                            ),
                        ));
                    }
                    out.push(id.into_inner());
                }
                if out.is_empty() {
                    return Err(self.error(k.id.span(), format!("process kind \"{kind_id}\": loss_reasons is empty")));
                }
                out
            }
        };
        let reopen_roles = match k.reopen_roles {
            Some(roles) => roles.iter().map(|r| self.role(r)).collect::<Result<_, _>>()?,
            None => vec![Role::Admin, Role::Head],
        };
        let ids: Vec<String> = k.stages.iter().map(|s| s.id.get_ref().clone()).collect();
        let mut stages: Vec<StageSpec> = Vec::new();
        for (n, s) in k.stages.into_iter().enumerate() {
            self.ident(&s.id, "process_kinds.stages")?;
            let sid = s.id.get_ref().clone();
            if stages.iter().any(|x| x.id == sid) {
                return Err(self.error(s.id.span(), format!("duplicate stage \"{sid}\" in process kind \"{kind_id}\"")));
            }
            let stage_ref = |t: &Spanned<String>, what: &str| -> Result<String, ConfigError> {
                if ids.contains(t.get_ref()) {
                    Ok(t.get_ref().clone())
                } else {
                    Err(self.error(
                        t.span(),
                        format!(
                            "{what}: \"{}\" is not a stage of process kind \"{kind_id}\" ({})",
                            t.get_ref(),
                            ids.join(", ")
                        ),
                    ))
                }
            };
            let to = match &s.to {
                Some(list) => {
                    if let Some(own) = list.iter().find(|t| *t.get_ref() == sid) {
                        return Err(self.error(own.span(), format!("to: stage \"{sid}\" cannot move to itself")));
                    }
                    list.iter().map(|t| stage_ref(t, "to")).collect::<Result<Vec<_>, _>>()?
                }
                None => {
                    let mut to = Vec::new();
                    if let Some(next) = ids.get(n + 1) {
                        to.push(next.clone());
                    }
                    if n > 0 {
                        to.push(ids[n - 1].clone());
                    }
                    to
                }
            };
            let mut routes = Vec::new();
            for r in &s.routes {
                let target = stage_ref(&r.to, "routes.to")?;
                if !to.contains(&target) {
                    return Err(self.error(
                        r.to.span(),
                        format!(
                            "routes.to: \"{target}\" is not among the stages \"{sid}\" may move to ({})",
                            to.join(", ")
                        ),
                    ));
                }
                let when = r.when.as_ref().map(|w| self.condition(w, deal_custom)).transpose()?;
                routes.push(Route { to: target, when });
            }
            if !routes.is_empty() && mode != Mode::Managed {
                return Err(self.error(
                    s.id.span(),
                    format!("stage \"{sid}\" has routes, but process kind \"{kind_id}\" is not managed"),
                ));
            }
            let sla_ms = s
                .sla
                .as_ref()
                .map(|t| spec::parse_duration(t.get_ref()).map_err(|m| self.error(t.span(), format!("sla: {m}"))))
                .transpose()?;
            let probability = match s.probability {
                Some(p) if !(0..=100).contains(p.get_ref()) => {
                    return Err(
                        self.error(p.span(), format!("probability is a percentage from 0 to 100, got {}", p.get_ref()))
                    )
                }
                Some(p) => Some(p.into_inner() as u8),
                None => None,
            };
            let mut required_fields = Vec::new();
            for f in s.required_fields {
                condition::check_field(f.get_ref(), deal_custom)
                    .map_err(|m| self.error(f.span(), format!("required_fields: {m}")))?;
                required_fields.push(f.into_inner());
            }
            let checklist = self.list("checklist", s.checklist, &[])?.items;
            let mut tasks = Vec::new();
            for t in s.tasks {
                if t.title.get_ref().trim().is_empty() {
                    return Err(self.error(t.title.span(), "tasks.title must not be empty"));
                }
                let assignee = match &t.assignee {
                    None => Assignee::Manager,
                    Some(a) => match a.get_ref().split_once(':') {
                        None if a.get_ref() == "manager" => Assignee::Manager,
                        None if a.get_ref() == "hook" => Assignee::Hook,
                        Some(("role", r)) => Assignee::Role(self.role(&Spanned::new(a.span(), r.to_string()))?),
                        Some(("user", login)) => {
                            if !users.iter().any(|u| u.login == login) {
                                return Err(self.error(
                                    a.span(),
                                    format!("assignee: \"{login}\" is not a user declared in [[users]]"),
                                ));
                            }
                            Assignee::User(login.to_string())
                        }
                        _ => {
                            return Err(self.error(
                                a.span(),
                                format!(
                                    "assignee \"{}\" is not one of manager, role:ROLE, user:LOGIN, hook",
                                    a.get_ref()
                                ),
                            ))
                        }
                    },
                };
                let due_ms = t
                    .due
                    .as_ref()
                    .map(|d| {
                        spec::parse_duration(d.get_ref()).map_err(|m| self.error(d.span(), format!("tasks.due: {m}")))
                    })
                    .transpose()?;
                tasks.push(TaskTemplate {
                    title: t.title.into_inner().trim().to_string(),
                    description: t.description,
                    assignee,
                    due_ms,
                    required: t.required,
                });
            }
            if !tasks.is_empty() && mode != Mode::Managed {
                return Err(self.error(s.id.span(), format!("stage \"{sid}\" creates tasks, but process kind \"{kind_id}\" is not managed: only a managed route creates tasks")));
            }
            let exit_when = s.exit_when.as_ref().map(|w| self.condition(w, deal_custom)).transpose()?;
            stages.push(StageSpec {
                id: sid,
                name: s.name,
                sla_ms,
                probability,
                required_fields,
                checklist,
                tasks,
                guidance: self.guidance(s.guidance)?,
                to,
                routes,
                exit_when,
            });
        }
        Ok(ProcessKindSpec {
            id: kind_id,
            name: k.name,
            mode,
            stages,
            loss_reasons,
            require_competitor: k.require_competitor,
            require_loss_comment: k.require_loss_comment,
            reopen_roles,
            guidance: self.guidance(k.guidance)?,
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
