//! Sales plans: the revenue a manager is to win in a period, set over the API (or in config's
//! `[[plans]]`) and measured by the managers report.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::rules::{money, optional_text, trim};
use super::Index;
use super::{entity_meta, Cx, Entity, EntityKind, FieldError, IndexEntry, Ref, Requirement};
use crate::id::{PlanId, UserId};
use crate::time::Timestamp;
use crate::values::Money;

/// The revenue one manager is to win from `from` to `to` (both days included). A manager's
/// plans — stored and configured — do not overlap and are all in one currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: PlanId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who set it (`None`: the system).
    #[serde(default)]
    pub created_by: Option<UserId>,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<UserId>,
    /// The manager whose plan it is.
    pub manager: UserId,
    /// The period's first day.
    #[serde(deserialize_with = "crate::values::date::input::date")]
    pub from: NaiveDate,
    /// The period's last day.
    #[serde(deserialize_with = "crate::values::date::input::date")]
    pub to: NaiveDate,
    /// The revenue planned, above zero.
    pub amount: Money,
    #[serde(default)]
    pub comment: String,
}

impl Plan {
    /// A new plan; the store assigns id and instants.
    pub fn new(manager: UserId, from: NaiveDate, to: NaiveDate, amount: Money) -> Plan {
        Plan {
            id: PlanId::default(),
            version: 0,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            created_by: None,
            updated_by: None,
            manager,
            from,
            to,
            amount,
            comment: String::new(),
        }
    }
}

impl Entity for Plan {
    const KIND: EntityKind = EntityKind::Plan;
    const TABLE: &'static str = "plans";
    type Id = PlanId;
    entity_meta!(PlanId);

    fn normalize(&mut self, _cx: Cx<'_>) -> Result<(), FieldError> {
        trim(&mut self.comment);
        Ok(())
    }

    fn validate(&self, _cx: Cx<'_>) -> Result<(), FieldError> {
        let k = Self::KIND;
        let e = |f: &str, m: String| FieldError::new(k, f, m);
        crate::values::date::check(self.from).map_err(|m| e("from", m))?;
        crate::values::date::check(self.to).map_err(|m| e("to", m))?;
        if self.to < self.from {
            return Err(e("to", format!("the plan ends ({}) before it starts ({})", self.to, self.from)));
        }
        money(k, "amount", &self.amount)?;
        if self.amount.is_zero() {
            return Err(e("amount", format!("must be above zero, got {}", self.amount)));
        }
        optional_text(k, "comment", &self.comment, 10_000)
    }

    fn refs(&self, out: &mut Vec<Ref>) {
        let fits =
            Requirement::PlanFits { plan: self.id, from: self.from, to: self.to, currency: self.amount.currency };
        out.push(Ref::new("manager", EntityKind::User, self.manager).must(fits));
    }

    fn index_entries(&self, out: &mut Vec<IndexEntry>) {
        out.push(IndexEntry::by_id(Index::PlanByManager, self.manager));
    }
}
