//! `crmkit neighbours`, `path`, `competitor`, `contact-deals` and `merge`: the partner graph
//! and the deal environment across deals, in the terminal or as JSON, and merging duplicate
//! partners.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use crmkit_core::dossier::{find_partner, Amounts};
use crmkit_core::graph::{self, Involvement};
use crmkit_core::id::{ContactId, PartnerId};
use crmkit_core::merge::merge_partners;
use crmkit_core::model::{text_prefix, ContactPerson, Partner, PartnerLink};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::SystemClock;
use crmkit_core::values::email::normalize_email;
use crmkit_core::Installation;
use serde_json::{json, Value};

use crate::dossier::amounts;
use crate::{acting_user, Format};

/// A partner in JSON output: id and name.
fn partner_ref(p: &Partner) -> Value {
    json!({ "id": p.id, "name": p.name })
}

/// Loads partners by id, each once.
struct Partners<'r, R: Reader> {
    r: &'r R,
    loaded: BTreeMap<PartnerId, Partner>,
}

impl<'r, R: Reader> Partners<'r, R> {
    fn new(r: &'r R) -> Self {
        Partners { r, loaded: BTreeMap::new() }
    }

    fn name(&mut self, id: PartnerId) -> Result<String> {
        if !self.loaded.contains_key(&id) {
            self.loaded.insert(id, self.r.load(id)?);
        }
        Ok(self.loaded[&id].name.clone())
    }
}

/// Whether `link` leaves `partner` (`→`) or arrives at it (`←`).
fn arrow(link: &PartnerLink, partner: PartnerId) -> &'static str {
    if link.from == partner {
        "→"
    } else {
        "←"
    }
}

/// `crmkit neighbours`: the partners linked to one, with each link's type and direction.
pub fn neighbours(dir: &Path, partner: &str, link_type: Option<&str>, format: Format) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let p = find_partner(&r, partner)?;
    let types = &inst.settings().partner_link_types;
    if let Some(t) = link_type {
        if !types.contains(t) {
            bail!("--link-type: \"{t}\" is not a partner link type ({})", types.ids_joined());
        }
    }
    let found = graph::neighbours(&r, p.id, link_type)?;
    if format == Format::Json {
        let items: Vec<Value> = found
            .iter()
            .map(|(link, other)| {
                let direction = if link.from == p.id { "outgoing" } else { "incoming" };
                json!({ "link": link, "direction": direction, "partner": other })
            })
            .collect();
        say!("{}", serde_json::to_string_pretty(&json!({ "partner": p, "neighbours": items }))?);
        return Ok(());
    }
    let mut o = String::new();
    let only = link_type.map_or(String::new(), |t| format!(" of type {t}"));
    let _ = writeln!(o, "{}  {}: {} link(s){only}", p.name, p.id, found.len());
    if !found.is_empty() {
        let _ = writeln!(o, "  {:<16} {:<3} {:<40} id", "link type", "", "partner");
        for (link, other) in &found {
            let _ = writeln!(o, "  {:<16} {:<3} {:<40} {}", link.link_type, arrow(link, p.id), other.name, other.id);
        }
        let _ = writeln!(o, "(→ a link from {} to the partner, ← the other way)", p.name);
    }
    say!("{}", o.trim_end());
    Ok(())
}

/// `crmkit path`: the shortest chain of partner links between two partners, hop by hop.
pub fn path(dir: &Path, from: &str, to: &str, max_depth: usize, format: Format) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let a = find_partner(&r, from).context("FROM")?;
    let b = find_partner(&r, to).context("TO")?;
    let chain = graph::path(&r, a.id, b.id, max_depth)?;
    // Each hop as walked: the partner it leaves, the link, the partner it reaches.
    let mut hops: Vec<(Partner, PartnerLink, Partner)> = Vec::new();
    let mut at = a.clone();
    for link in chain.iter().flatten() {
        let next: Partner = r.load(if link.from == at.id { link.to } else { link.from })?;
        hops.push((at, link.clone(), next.clone()));
        at = next;
    }
    if format == Format::Json {
        let hops = chain.as_ref().map(|_| {
            hops.iter()
                .map(|(x, link, y)| {
                    let direction = if link.from == x.id { "forward" } else { "backward" };
                    json!({
                        "from": partner_ref(x),
                        "to": partner_ref(y),
                        "link_type": link.link_type,
                        "direction": direction,
                        "link": link.id,
                    })
                })
                .collect::<Vec<_>>()
        });
        let out = json!({ "from": partner_ref(&a), "to": partner_ref(&b), "max_depth": max_depth, "hops": hops });
        say!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if chain.is_none() {
        let links = if max_depth == 1 { "link" } else { "links" };
        say!("no path within {max_depth} {links} from {} to {}", a.name, b.name);
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(o, "{} → {}: {} link(s)", a.name, b.name, hops.len());
    for (i, (x, link, y)) in hops.iter().enumerate() {
        let edge =
            if link.from == x.id { format!("-[{}]->", link.link_type) } else { format!("<-[{}]-", link.link_type) };
        let _ = writeln!(o, "  {}. {}  {edge}  {}", i + 1, x.name, y.name);
    }
    say!("{}", o.trim_end());
    Ok(())
}

/// How the deals of an involvement list ended: count and amount per outcome.
fn outcomes(deals: &[Involvement]) -> BTreeMap<&'static str, (usize, Amounts)> {
    let mut out: BTreeMap<&'static str, (usize, Amounts)> = BTreeMap::new();
    for key in ["in_progress", "on_hold", "won", "lost", "lost_to_them"] {
        out.insert(key, (0, Amounts::new()));
    }
    for i in deals {
        let d = &i.deal;
        let mut keys = vec![d.status.name()];
        if i.won_against_us {
            keys.push("lost_to_them");
        }
        for key in keys {
            let (n, sum) = out.get_mut(key).expect("every status is counted");
            *n += 1;
            *sum.entry(d.amount.currency).or_default() += d.amount.amount;
        }
    }
    out
}

fn outcomes_json(o: &BTreeMap<&'static str, (usize, Amounts)>) -> Value {
    o.iter().map(|(k, (n, a))| (k.to_string(), json!({ "deals": n, "amount": a }))).collect()
}

/// `s` cut to at most `width` characters, ending in `…` when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The outcomes as one line: `12 deal(s): 1 in progress (…), 0 on hold, …`, and how many
/// were lost to `winner` when it is given.
fn outcomes_line(total: usize, ended: &BTreeMap<&'static str, (usize, Amounts)>, winner: Option<&str>) -> String {
    let part = |key: &str, what: &str| {
        let (n, a) = &ended[key];
        if *n == 0 {
            format!("0 {what}")
        } else {
            format!("{n} {what} ({})", amounts(a))
        }
    };
    let mut line = format!(
        "{total} deal(s): {}, {}, {}, {}",
        part("in_progress", "in progress"),
        part("on_hold", "on hold"),
        part("won", "won by us"),
        part("lost", "lost")
    );
    if let Some(winner) = winner {
        let _ = write!(line, " — {}", part("lost_to_them", &format!("of them to {winner}")));
    }
    line
}

/// One line per deal: created, status, title, client, amount and how the partner or contact
/// took part.
fn involvement_table<R: Reader>(r: &R, deals: &[Involvement], o: &mut String) -> Result<()> {
    let mut partners = Partners::new(r);
    let _ =
        writeln!(o, "  {:<10}  {:<12}  {:<36}  {:<28}  {:>18}  how", "created", "status", "deal", "client", "amount");
    for i in deals {
        let d = &i.deal;
        let status = if i.won_against_us { "lost to them" } else { d.status.name() };
        let mut how: Vec<String> = i.as_participant.iter().map(|p| p.role.clone()).collect();
        if how.is_empty() {
            how.push(if i.won_against_us { "won the deal".into() } else { "interaction".into() });
        }
        let created = d.created_at.to_string();
        let _ = writeln!(
            o,
            "  {:<10}  {:<12}  {:<36}  {:<28}  {:>18}  {}",
            created.get(..10).unwrap_or(&created),
            status,
            fit(&d.title, 36),
            fit(&partners.name(d.partner)?, 28),
            d.amount.to_string(),
            how.join(", ")
        );
    }
    Ok(())
}

/// `crmkit competitor`: the deals a partner took part in, or that were lost to it, and how
/// they ended.
pub fn competitor(dir: &Path, partner: &str, format: Format) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let p = find_partner(&r, partner)?;
    let deals = graph::deals_involving_partner(&r, p.id)?;
    let ended = outcomes(&deals);
    if format == Format::Json {
        let out = json!({ "partner": p, "outcomes": outcomes_json(&ended), "deals": deals });
        say!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut o = String::new();
    let roles: Vec<&str> = p.roles.iter().map(|r| r.name()).collect();
    let _ = writeln!(o, "{}  ({})  {}", p.name, roles.join(", "), p.id);
    let _ = writeln!(o, "{}", outcomes_line(deals.len(), &ended, Some(&p.name)));
    if !deals.is_empty() {
        let _ = writeln!(o);
        involvement_table(&r, &deals, &mut o)?;
    }
    say!("{}", o.trim_end());
    Ok(())
}

/// The contact person `key` names: an id, an e-mail address, or an exact name (compared
/// without case).
pub(crate) fn find_contact<R: Reader>(r: &R, key: &str) -> Result<ContactPerson> {
    if let Ok(id) = key.parse::<ContactId>() {
        if let Some(c) = r.get::<ContactPerson>(id)? {
            return Ok(c);
        }
    }
    if let Ok(email) = normalize_email(key.trim()) {
        let found: Vec<ContactPerson> = r.find(Index::ContactByEmail, &text_prefix(&[&email]), None, 2)?;
        match found.len() {
            1 => return Ok(found.into_iter().next().expect("one")),
            0 => {}
            _ => bail!("several contact persons have the e-mail \"{email}\": give the id"),
        }
    }
    let wanted = key.trim().to_lowercase();
    let mut found = Vec::new();
    r.for_each::<ContactPerson>(|c| {
        if c.name.to_lowercase() == wanted {
            found.push(c);
        }
        found.len() < 2
    })?;
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => bail!("no contact person has the id, e-mail or name \"{key}\""),
        _ => bail!("several contact persons are named \"{key}\": give the id or the e-mail"),
    }
}

/// `crmkit contact-deals`: the deals a contact person touched.
pub fn contact_deals(dir: &Path, contact: &str, format: Format) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let r = inst.store().read()?;
    let c = find_contact(&r, contact)?;
    let deals = graph::deals_touched_by_contact(&r, c.id)?;
    if format == Format::Json {
        let out = json!({ "contact": c, "outcomes": outcomes_json(&outcomes(&deals)), "deals": deals });
        say!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let partner: Partner = r.load(c.partner)?;
    let mut o = String::new();
    let position = if c.position.is_empty() { String::new() } else { format!(", {}", c.position) };
    let _ = writeln!(o, "{}{position} ({})  {}", c.name, partner.name, c.id);
    let _ = writeln!(o, "{}", outcomes_line(deals.len(), &outcomes(&deals), None));
    if !deals.is_empty() {
        let _ = writeln!(o);
        involvement_table(&r, &deals, &mut o)?;
    }
    say!("{}", o.trim_end());
    Ok(())
}

/// `crmkit merge`: merges partner `duplicate` into `keep` in one write transaction; a
/// refusal writes nothing.
pub fn merge(dir: &Path, keep: &str, duplicate: &str, login: Option<&str>, format: Format) -> Result<()> {
    let inst = Installation::open(dir, Arc::new(SystemClock))?;
    let (keep, dup, actor) = {
        let r = inst.store().read()?;
        (
            find_partner(&r, keep).context("KEEP")?,
            find_partner(&r, duplicate).context("DUPLICATE")?,
            acting_user(&r, login)?,
        )
    };
    let report = inst.store().transact(actor, |tx| merge_partners(tx, keep.id, dup.id)).with_context(|| {
        format!(
            "merging partner \"{}\" ({}) into \"{}\" ({}): nothing was written",
            dup.name, dup.id, keep.name, keep.id
        )
    })?;
    if format == Format::Json {
        let out = json!({ "kept": partner_ref(&keep), "deleted": partner_ref(&dup), "moved": report });
        say!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(o, "merged \"{}\" ({}) into \"{}\" ({})", dup.name, dup.id, keep.name, keep.id);
    let _ = writeln!(o, "\"{}\" is deleted; what referred to it now refers to \"{}\":", dup.name, keep.name);
    let Value::Object(fields) = serde_json::to_value(&report)? else {
        return Err(anyhow!("a merge report serializes as an object"));
    };
    for (field, n) in fields {
        let _ = writeln!(o, "  {:<16} {n:>8}", field.replace('_', " "));
    }
    say!("{}", o.trim_end());
    Ok(())
}
