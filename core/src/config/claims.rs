//! `[[claim_types]]`: the types of claim an installation works with, each with its causes,
//! the days a claim of it is due in and whether satisfying one settles an amount.

use super::raw;
use super::source::Source;
use super::ConfigError;
use crate::model::{ClaimType, ListItem};

impl Source<'_> {
    pub(super) fn claim_types(&self, raw: Vec<raw::ClaimType>) -> Result<Vec<ClaimType>, ConfigError> {
        let mut out: Vec<ClaimType> = Vec::new();
        for t in raw {
            self.ident(&t.id, "claim_types")?;
            if out.iter().any(|o| o.id == *t.id.get_ref()) {
                return Err(self.error(t.id.span(), format!("duplicate claim type \"{}\"", t.id.get_ref())));
            }
            let name = t.name.get_ref().trim().to_string();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(self.error(t.name.span(), "claim_types.name: 1 to 200 characters"));
            }
            let due_days = match &t.due_days {
                None => 10,
                Some(d) if (1..=3660).contains(d.get_ref()) => *d.get_ref(),
                Some(d) => {
                    return Err(
                        self.error(d.span(), format!("claim_types.due_days: from 1 to 3660 days, got {}", d.get_ref()))
                    )
                }
            };
            let span = t.causes.span();
            let what = format!("claim_types.causes of {}", t.id.get_ref());
            if t.causes.get_ref().is_empty() {
                return Err(self.error(span, format!("{what}: a claim type lists at least one cause")));
            }
            let mut causes: Vec<ListItem> = Vec::new();
            for item in t.causes.into_inner() {
                self.ident(&item.id, &what)?;
                if causes.iter().any(|c| c.id == *item.id.get_ref()) {
                    return Err(
                        self.error(item.id.span(), format!("duplicate value \"{}\" in {what}", item.id.get_ref()))
                    );
                }
                causes.push(ListItem { id: item.id.into_inner(), name: item.name });
            }
            out.push(ClaimType {
                id: t.id.into_inner(),
                name,
                causes,
                due_days,
                settled_amount_required: t.settled_amount_required.unwrap_or(true),
            });
        }
        Ok(out)
    }
}
