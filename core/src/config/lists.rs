//! The configured value lists: the built-in link types and the check of a list's items.

use super::raw;
use super::source::Source;
use super::{ConfigError, List, ListItem};

/// The built-in partner link types; config may add more.
pub(super) const BUILTIN_PARTNER_LINKS: [(&str, &str); 4] = [
    ("holding", "Holding of (from is the holding, to the subsidiary)"),
    ("affiliated", "Affiliated with"),
    ("recommended_by", "Recommended by (from was recommended by to)"),
    ("competitor_of", "Competitor of"),
];
pub(super) const BUILTIN_CONTACT_LINKS: [(&str, &str); 3] =
    [("reports_to", "Reports to"), ("colleague", "Colleague of"), ("relative", "Relative of")];
pub(super) const BUILTIN_PARTICIPANT_LINKS: [(&str, &str); 3] =
    [("works_for", "Works for"), ("influences", "Influences"), ("subcontracts_for", "Subcontractor of")];

impl Source<'_> {
    pub(super) fn list(
        &self,
        name: &'static str,
        items: Vec<raw::Item>,
        builtin: &[(&str, &str)],
    ) -> Result<List, ConfigError> {
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
}
