//! Embedding crmkit-core: open a store, record a client with its legal subject, a contact
//! and a deal, then read them back through the indexes and the audit log.
//!
//! Run with `cargo run -p crmkit-core --example embed`.

use std::sync::Arc;

use crmkit_core::config::Settings;
use crmkit_core::model::{ContactPerson, Counterparty, CounterpartyKind, Deal, Partner, PartnerRole, Role, User};
use crmkit_core::store::{Index, Reader, Store};
use crmkit_core::time::SystemClock;
use crmkit_core::values::{ru, Money};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::create(&dir.path().join("crm.redb"), Arc::new(Settings::builtin()), Arc::new(SystemClock))?;

    let amount = Money::parse("1250000.00", "RUB")?;
    let deal = store.transact(None, |tx| {
        let manager = tx.create(User::new("a.ivanova", "Иванова Анна", Role::Manager))?;
        let mut legal = Counterparty::new(CounterpartyKind::LegalEntity, "ООО «Ромашка»");
        legal.tax_id = Some(ru::complete_inn10("500100732"));
        let legal = tx.create(legal)?;
        let mut client = Partner::new("Ромашка", PartnerRole::Client);
        client.counterparties.push(legal.id);
        client.manager = Some(manager.id);
        let client = tx.create(client)?;
        let mut boss = ContactPerson::new(client.id, "Петров Иван Сергеевич");
        boss.phones.push("8 (912) 345-67-89".into()); // stored as +79123456789
        tx.create(boss)?;
        let deal = Deal::new(
            "Поставка насосной станции",
            client.id,
            "b2b_sale",
            Some("qualification".into()),
            manager.id,
            amount,
        );
        tx.create(deal)
    })?;

    let snapshot = store.read()?;
    let of_partner = snapshot.find::<Deal>(Index::DealByPartner, &deal.partner.0.to_bytes(), None, 10)?;
    println!("deals of the partner: {}", of_partner.len());
    for entry in snapshot.audit_of::<Deal>(deal.id)? {
        println!("{} {:?} {} by {:?}", entry.at, entry.op, entry.entity.kind, entry.actor);
    }

    // A refused write names the field, and nothing is written.
    let mut bad = deal.clone();
    bad.amount = Money::parse("-1.00", "RUB")?;
    let err = store.transact(None, |tx| tx.update(bad)).unwrap_err();
    println!("refused: {err}");
    Ok(())
}
