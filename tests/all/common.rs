//! Shared fixtures: a store on a real redb file in a temporary folder, driven by a manual
//! clock, and a byte-exact dump of everything it holds.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::config::Settings;
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::{Counterparty, CounterpartyKind, Deal, Partner, PartnerRole, Role, User};
use crmkit_core::store::{tables, Reader, Store};
use crmkit_core::time::{ManualClock, Timestamp};
use crmkit_core::values::{ru, Currency, Money};
use rust_decimal::Decimal;

/// 2026-03-02T09:00:00Z.
pub const T0: Timestamp = Timestamp(1_772_442_000_000);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub store: Store,
}

impl Fixture {
    /// A new store with the built-in settings.
    pub fn new() -> Fixture {
        Fixture::with_settings(Settings::builtin())
    }

    pub fn with_settings(settings: Settings) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(T0));
        let store =
            Store::create(&dir.path().join("crm.redb"), Arc::new(settings), clock.clone()).expect("create store");
        Fixture { dir, clock, store }
    }

    /// Closes and reopens the database file.
    pub fn reopen(self) -> Fixture {
        let Fixture { dir, clock, store } = self;
        let settings = store.settings().clone();
        drop(store);
        let store = Store::open(&dir.path().join("crm.redb"), settings, clock.clone()).expect("reopen");
        Fixture { dir, clock, store }
    }

    /// Every key and value of every table.
    pub fn dump(&self) -> Dump {
        dump(&self.store)
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
