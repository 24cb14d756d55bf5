//! An installation: a folder with `config/`, `scripts/`, `plugins/` and the database file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Settings, CONFIG_FILE, DEFAULT_CONFIG};
use crate::model::User;
use crate::store::{Reader, Store};
use crate::time::Clock;
use crate::{Error, Result};

/// The scripts a new installation starts with: the default and demo configs bind them (the
/// scoring model is left for the installation to bind: a commented binding in each config).
pub const SHIPPED_SCRIPTS: [(&str, &str); 11] = [
    ("README.md", include_str!("../../scripts/README.md")),
    ("stages/guards.rhai", include_str!("../../scripts/stages/guards.rhai")),
    ("stages/routes.rhai", include_str!("../../scripts/stages/routes.rhai")),
    ("stages/reactions.rhai", include_str!("../../scripts/stages/reactions.rhai")),
    ("tasks/assignees.rhai", include_str!("../../scripts/tasks/assignees.rhai")),
    ("scoring/logistic.rhai", include_str!("../../scripts/scoring/logistic.rhai")),
    ("loyalty/tiers.rhai", include_str!("../../scripts/loyalty/tiers.rhai")),
    ("strategy/segments.rhai", include_str!("../../scripts/strategy/segments.rhai")),
    ("claims/rules.rhai", include_str!("../../scripts/claims/rules.rhai")),
    ("reports/pipeline_by_manager.rhai", include_str!("../../scripts/reports/pipeline_by_manager.rhai")),
    ("reports/losses_by_competitor.rhai", include_str!("../../scripts/reports/losses_by_competitor.rhai")),
];

/// An opened installation: its settings and its store.
pub struct Installation {
    dir: PathBuf,
    store: Store,
    /// Every client's ABC/XYZ class and BCG quadrant and the day they were computed for
    /// (see [`Installation::client_classes`]).
    classes: std::sync::Mutex<Option<(chrono::NaiveDate, Arc<crate::analytics::ClientClasses>)>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io { path: path.to_path_buf(), error }
}

impl Installation {
    /// Creates a new installation in `dir` (created if missing; it must not hold one yet)
    /// with `config` as its `config/crmkit.toml` (the default installation's when `None`).
    pub fn init(dir: &Path, config: Option<&str>, clock: Arc<dyn Clock>) -> Result<Installation> {
        let file = dir.join(CONFIG_FILE);
        if file.exists() {
            return Err(Error::Io {
                path: file,
                error: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "an installation is already there"),
            });
        }
        let text = config.unwrap_or(DEFAULT_CONFIG);
        let mut settings = Settings::parse(text, &file)?;
        for sub in ["config", "scripts", "plugins"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(&dir.join(sub)))?;
        }
        for (name, text) in SHIPPED_SCRIPTS {
            let path = dir.join("scripts").join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        std::fs::write(&file, text).map_err(io(&file))?;
        if settings.database.is_relative() {
            settings.database = dir.join(&settings.database);
        }
        if let Some(parent) = settings.database.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let store = Store::create(&settings.database.clone(), Arc::new(settings), clock)?;
        let inst = Installation { dir: dir.to_path_buf(), store, classes: Default::default() };
        inst.sync_users()?;
        Ok(inst)
    }

    /// Opens the installation in `dir`: reads and validates its config, opens the database
    /// and brings the users declared in config into it.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Installation> {
        let settings = Settings::load_installation(dir)?;
        let store = Store::open(&settings.database.clone(), Arc::new(settings), clock)?;
        let inst = Installation { dir: dir.to_path_buf(), store, classes: Default::default() };
        inst.sync_users()?;
        inst.check_plans()?;
        Ok(inst)
    }

    /// Opens the installation in `dir` for reading only: reads and validates its config and
    /// opens the database without writing anything to it (see [`Store::open_read_only`]);
    /// the users declared in config are not brought in.
    pub fn open_read_only(dir: &Path, clock: Arc<dyn Clock>) -> Result<Installation> {
        let settings = Settings::load_installation(dir)?;
        let store = Store::open_read_only(&settings.database.clone(), Arc::new(settings), clock)?;
        Ok(Installation { dir: dir.to_path_buf(), store, classes: Default::default() })
    }

    /// The installation folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store.
    /// Every client's ABC/XYZ class and BCG quadrant, as the dossier shows them. They cover
    /// the twelve full months before the current one, so they are computed (one pass over
    /// the documents) at most once a day and kept: a document entered or changed in those
    /// months shows in the classes the next day, or after a restart.
    pub fn client_classes(&self) -> Result<Arc<crate::analytics::ClientClasses>> {
        let today = self.store.clock().now().date();
        let mut cached = self.classes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((day, classes)) = cached.as_ref() {
            if *day == today {
                return Ok(classes.clone());
            }
        }
        let r = self.store.read()?;
        let classes = Arc::new(crate::analytics::client_classes(&r, today).map_err(Error::NotAllowed)?);
        *cached = Some((today, classes.clone()));
        Ok(classes)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        self.store.settings()
    }

    /// Checks config's `[[plans]]` against the plans stored over the API: a manager's plans
    /// may neither overlap nor mix currencies, whichever way they were set. A write of a
    /// stored plan is refused when it would break that; a config edited afterwards is
    /// refused here, naming its line and the stored plan.
    pub fn check_plans(&self) -> Result<()> {
        let settings = self.settings();
        if settings.plans.is_empty() {
            return Ok(());
        }
        let snapshot = self.store.read()?;
        let mut clash = None;
        snapshot.for_each::<crate::model::Plan>(|stored| {
            let Ok(Some(user)) = snapshot.get::<User>(stored.manager) else { return true };
            for p in settings.plans.iter().filter(|p| p.manager == user.login) {
                let message = if p.amount.currency != stored.amount.currency {
                    format!(
                        "plans: {}'s plan {} stored in the database is in {}, so this one cannot be in {}",
                        user.login, stored.id, stored.amount.currency, p.amount.currency
                    )
                } else if p.from <= stored.to && stored.from <= p.to {
                    format!(
                        "plans: {}'s plan from {} to {} overlaps plan {} stored in the database, from {} to {}",
                        user.login, p.from, p.to, stored.id, stored.from, stored.to
                    )
                } else {
                    continue;
                };
                clash = Some(crate::config::ConfigError {
                    file: settings.source.file.clone(),
                    line: Some((p.line, 1)),
                    message,
                });
                return false;
            }
            true
        })?;
        match clash {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Creates the users declared in config that the store lacks and updates those whose
    /// declaration changed; writes nothing when all agree.
    pub fn sync_users(&self) -> Result<()> {
        let specs = &self.settings().users;
        let snapshot = self.store.read()?;
        let mut pending = Vec::new();
        for spec in specs {
            let mut user = match snapshot.user_by_login(&spec.login)? {
                Some(u) => u,
                None => User::new(&spec.login, &spec.name, spec.roles[0]),
            };
            // Config owns the name and roles of the users it declares; e-mail and department
            // only when it gives them, so values set elsewhere are kept.
            let before = user.clone();
            user.name = spec.name.clone();
            user.roles = spec.roles.clone();
            if spec.email.is_some() {
                user.email = spec.email.clone();
            }
            if spec.department.is_some() {
                user.department = spec.department.clone();
            }
            if user.version == 0 || user != before {
                pending.push(user);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        self.store.transact(None, |tx| {
            for u in pending {
                if u.version == 0 {
                    tx.create(u)?;
                } else {
                    tx.update(u)?;
                }
            }
            Ok(())
        })
    }
}
