//! Shared fixtures: a store on a real redb file in a temporary folder or in memory, driven
//! by a manual clock; running a test on every backend; a byte-exact dump of everything a
//! store holds; running a refused write in a transaction that commits anyway and checking
//! the database is byte-for-byte what it was.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::config::Settings;
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::{Counterparty, CounterpartyKind, Deal, Partner, PartnerRole, Role, User};
use crmkit_core::store::{tables, Reader, Store, WriteTxn};
use crmkit_core::time::{ManualClock, Timestamp};
use crmkit_core::values::{ru, Currency, Money};
use rust_decimal::Decimal;

/// 2026-03-02T09:00:00Z.
pub const T0: Timestamp = Timestamp(1_772_442_000_000);

/// The backends a store can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A redb file in the fixture's folder (what installations use).
    Redb,
    /// `MemoryBackend`.
    Memory,
}

/// Declares the listed functions, each `fn(Backend)`, as tests on every backend:
/// `MODULE::on_redb::NAME` and `MODULE::on_memory::NAME`, so a failure names its backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Backend::Redb)
            })*
        }
        mod on_memory {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Backend::Memory)
            })*
        }
    };
}
pub(crate) use on_every_backend;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub store: Store,
    pub backend: Backend,
}

impl Fixture {
    /// A new store on a redb file with the built-in settings.
    pub fn new() -> Fixture {
        Fixture::on(Backend::Redb)
    }

    /// A new store on `backend` with the built-in settings.
    pub fn on(backend: Backend) -> Fixture {
        Fixture::on_with(backend, Settings::builtin())
    }

    /// A new store on a redb file.
    pub fn with_settings(settings: Settings) -> Fixture {
        Fixture::on_with(Backend::Redb, settings)
    }

    /// A new store on `backend`.
    pub fn on_with(backend: Backend, settings: Settings) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(T0));
        let settings = Arc::new(settings);
        let store = match backend {
            Backend::Redb => Store::create(&dir.path().join("crm.redb"), settings, clock.clone()),
            Backend::Memory => Store::in_memory(settings, clock.clone()),
        };
        Fixture { dir, clock, store: store.expect("create store"), backend }
    }

    /// Closes and reopens the database: the file, or the same memory.
    pub fn reopen(self) -> Fixture {
        let Fixture { dir, clock, store, backend } = self;
        let settings = store.settings().clone();
        let store = match backend {
            Backend::Redb => {
                drop(store);
                Store::open(&dir.path().join("crm.redb"), settings, clock.clone())
            }
            Backend::Memory => Store::with_backend(store.into_backend(), settings, clock.clone()),
        };
        Fixture { dir, clock, store: store.expect("reopen"), backend }
    }

    /// Every key and value of every table.
    pub fn dump(&self) -> Dump {
        dump(&self.store)
    }

    /// See [`refused`].
    pub fn refused<R: std::fmt::Debug>(
        &self,
        actor: Option<UserId>,
        write: impl FnOnce(&mut WriteTxn<'_>) -> crmkit_core::Result<R>,
    ) -> crmkit_core::Error {
        refused(&self.store, actor, write)
    }

    pub fn user(&self, login: &str) -> UserId {
        self.store
            .transact(None, |tx| Ok(tx.create(User::new(login, format!("User {login}"), Role::Manager))?.id))
            .unwrap()
    }

    pub fn partner(&self, name: &str, role: PartnerRole) -> Partner {
        self.store.transact(None, |tx| tx.create(Partner::new(name, role))).unwrap()
    }

    /// A client partner with one legal counterparty, and a manager.
    pub fn client(&self, name: &str) -> (Partner, UserId) {
        let n = self.store.stats().unwrap().entities[&crmkit_core::model::EntityKind::User];
        let manager = self.user(&format!("manager{n}"));
        let p = self
            .store
            .transact(None, |tx| {
                let mut c = Counterparty::new(CounterpartyKind::LegalEntity, format!("ООО «{name}»"));
                c.tax_id = Some(ru::complete_inn10("770708389"));
                let c = tx.create(c)?;
                let mut p = Partner::new(name, PartnerRole::Client);
                p.counterparties.push(c.id);
                p.manager = Some(manager);
                tx.create(p)
            })
            .unwrap();
        (p, manager)
    }

    pub fn deal(&self, partner: PartnerId, manager: UserId, amount: i64) -> Deal {
        self.store.transact(Some(manager), |tx| tx.create(new_deal(partner, manager, amount))).unwrap()
    }
}

pub fn new_deal(partner: PartnerId, manager: UserId, amount: i64) -> Deal {
    let mut d = Deal::new(
        "Поставка оборудования",
        partner,
        "b2b_sale",
        Some("qualification".into()),
        manager,
        Money::new(Decimal::from(amount), Currency::RUB),
    );
    d.expected_close = NaiveDate::from_ymd_opt(2026, 6, 30);
    d
}

/// Runs `write` by `actor` in a transaction that commits whatever `write` answers, expects
/// `write` to fail, and checks the committed database holds exactly what it held before: a
/// refused write must take back everything it wrote by itself, so a partial write would
/// reach the file and fail the comparison. Returns the error.
pub fn refused<R: std::fmt::Debug>(
    store: &Store,
    actor: Option<UserId>,
    write: impl FnOnce(&mut WriteTxn<'_>) -> crmkit_core::Result<R>,
) -> crmkit_core::Error {
    let before = dump(store);
    let mut tx = store.write(actor).expect("a write transaction");
    let err = write(&mut tx).expect_err("the write must be refused");
    tx.commit().expect("the transaction commits after the refusal");
    let after = dump(store);
    if after != before {
        panic!("a refused write ({err}) changed the database: {}", dump_diff(&before, &after));
    }
    err
}

/// The tables whose rows differ between two dumps, with the number of rows in each.
pub fn dump_diff(before: &Dump, after: &Dump) -> String {
    let mut out = Vec::new();
    for (table, rows) in after {
        let old = before.get(table).map_or(&[][..], Vec::as_slice);
        if old != rows.as_slice() {
            out.push(format!("{table} ({} rows, was {})", rows.len(), old.len()));
        }
    }
    out.join(", ")
}

pub type Dump = BTreeMap<&'static str, Vec<(Vec<u8>, Vec<u8>)>>;

pub fn dump(store: &Store) -> Dump {
    let snap = store.read().unwrap();
    let mut out = BTreeMap::new();
    for t in tables::all_tables() {
        let mut rows = Vec::new();
        snap.kv_scan(t, Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        out.insert(t.name, rows);
    }
    out
}

/// A process engine calling the native handlers of `hooks` only: the built-in config binds
/// the shipped Rhai scripts, which the tests of the engine itself do not run.
pub fn native_engine(hooks: crmkit_core::hooks::Hooks) -> crmkit_core::process::Engine {
    let mut settings = Settings::builtin();
    settings.hooks.clear();
    crmkit_core::process::Engine::new(&settings, hooks).expect("native bindings")
}

/// The built-in config without hooks, required fields or checklists: deals move between
/// stages freely, and what the engine refuses it refuses by its own rules.
pub fn free_moving_settings() -> Settings {
    let mut s = Settings::builtin();
    s.hooks.clear();
    for k in &mut s.process_kinds {
        for stage in &mut k.stages {
            stage.required_fields.clear();
            stage.checklist.clear();
        }
    }
    s
}
