//! Validation from the raw layer to `Settings`: the driver that checks every section in turn
//! (defaults, database, users, lists, custom fields, process kinds, hooks, limits, runtimes)
//! and the whole file's own rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use toml::Spanned;

use super::lists::{BUILTIN_CONTACT_LINKS, BUILTIN_PARTICIPANT_LINKS, BUILTIN_PARTNER_LINKS};
use super::raw;
use super::source::Source;
use super::{ConfigError, ConfigSource, Lists, ProcessKindSpec, Settings, UserSpec};
use crate::hooks::{runtime_of, CallLimits, HookBinding, HookPoint, Limits};
use crate::model::check_login;
use crate::model::{CustomFieldDef, EntityKind, Role};
use crate::process::spec::ProcessSettings;
use crate::values::{phone, Currency};

impl Source<'_> {
    pub(super) fn validate(&self, raw: raw::Config) -> Result<Settings, ConfigError> {
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

        let plans = self.plans(raw.plans, &users, default_currency)?;
        let mut raw_analytics = raw.analytics;
        let raw_win_probability = std::mem::take(&mut raw_analytics.win_probability);
        let analytics = self.analytics(raw_analytics)?;
        let deal_fields = custom_fields.get(&EntityKind::Deal).map_or(&[][..], Vec::as_slice);
        let win_probability = self.win_probability(raw_win_probability, deal_fields)?;
        let strategies = self.strategies(raw.strategies)?;
        let strategy_every = self.strategy_every(raw.strategy)?;
        let claim_types = self.claim_types(raw.claim_types)?;

        Ok(Settings {
            name: raw.installation.name.unwrap_or_else(|| "crmkit".to_string()),
            database: PathBuf::from(raw.database.path.unwrap_or_else(|| "data/crmkit.redb".to_string())),
            cache_bytes,
            record_cache_bytes,
            quick_repair: raw.database.quick_repair.unwrap_or(true),
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
            plans,
            analytics,
            win_probability,
            strategies,
            strategy_every,
            claim_types,
            runtimes,
            source: ConfigSource { file: self.file.to_path_buf(), text: self.text.into() },
        })
    }

    pub(super) fn role(&self, r: &Spanned<String>) -> Result<Role, ConfigError> {
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
}
