//! Validation of process kinds: modes, loss reasons, stages with their moves, routes, tasks,
//! exit conditions and guidance.

use toml::Spanned;

use super::raw;
use super::source::Source;
use super::{ConfigError, Lists, ProcessKindSpec, StageSpec, UserSpec};
use crate::model::Role;
use crate::process::condition::{self, Condition};
use crate::process::spec::{self, Assignee, Guidance, Mode, Route, TaskTemplate};

impl Source<'_> {
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

    pub(super) fn process_kind(
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
}
