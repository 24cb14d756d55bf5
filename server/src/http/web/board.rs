//! The deal board of a process kind: a column per stage with the deals in progress the
//! caller may see, each card with its amount, partner, days in the stage and score. A card
//! is moved by its form (a stage to move to) or, with the page's script, by dragging it to
//! another column; either way the move is the process engine's, with its guards, and a
//! refusal comes back on the card with its message and the field it names.

use std::collections::HashMap;

use crmkit_core::id::{DealId, TypedId};
use crmkit_core::model::{Deal, DealStatus, Partner};
use crmkit_core::process::{Mode, ProcessKindSpec};
use crmkit_core::store::{Index, Reader};
use crmkit_core::time::Timestamp;
use maud::{html, Markup};

use super::super::{ApiError, Caller};
use super::i18n::t;

/// Cards shown per column; the count says how many there are.
pub const PER_COLUMN: usize = 50;

/// A refusal shown on a card.
pub struct Refusal {
    pub deal: DealId,
    pub message: String,
    pub field: Option<String>,
}

/// One column: the stage, the cards shown and how many deals are in it.
pub struct Column<'a> {
    pub stage: &'a str,
    pub name: &'a str,
    pub cards: Vec<(Deal, String)>,
    pub total: usize,
}

/// The columns of `kind` as `caller` sees them (managers: their deals; heads: their
/// department's; admins and viewers: all), each a page of [`PER_COLUMN`] cards.
pub fn columns<'a>(r: &impl Reader, caller: &Caller, kind: &'a ProcessKindSpec) -> Result<Vec<Column<'a>>, ApiError> {
    let mut names: HashMap<crmkit_core::id::PartnerId, String> = HashMap::new();
    let mut out = Vec::new();
    for stage in &kind.stages {
        let prefix = crmkit_core::model::text_prefix(&[&kind.id, &stage.id]);
        let mut cards = Vec::new();
        let mut total = 0;
        let mut after = None;
        loop {
            let page: Vec<Deal> = r.find(Index::DealByStage, &prefix, after, 1000).map_err(ApiError::from)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.raw());
            for d in page {
                if d.status != DealStatus::InProgress
                    || !caller.may(r, super::super::access::Access::Read, &d).map_err(ApiError::from)?
                {
                    continue;
                }
                total += 1;
                if cards.len() < PER_COLUMN {
                    let name = match names.get(&d.partner) {
                        Some(n) => n.clone(),
                        None => {
                            let n = r
                                .get::<Partner>(d.partner)
                                .map_err(ApiError::from)?
                                .map(|p| p.name)
                                .unwrap_or_default();
                            names.insert(d.partner, n.clone());
                            n
                        }
                    };
                    cards.push((d, name));
                }
            }
        }
        out.push(Column { stage: &stage.id, name: &stage.name, cards, total });
    }
    Ok(out)
}

fn days_in_stage(d: &Deal, now: Timestamp) -> i64 {
    (now.0 - d.stage_entered_at.unwrap_or(d.created_at).0).max(0) / 86_400_000
}

/// What the board page shows.
#[derive(Clone, Copy)]
pub struct Board<'a> {
    /// Every process kind, for the links to their boards.
    pub kinds: &'a [ProcessKindSpec],
    pub kind: &'a ProcessKindSpec,
    pub columns: &'a [Column<'a>],
    pub now: Timestamp,
    pub csrf: &'a str,
    /// A move refused, shown on its card.
    pub refusal: Option<&'a Refusal>,
    /// Whether the cards carry their move forms (not for viewers).
    pub may_move: bool,
}

/// The board page.
pub fn page(lang: &str, b: &Board<'_>) -> Markup {
    let Board { kinds, kind, columns, now, csrf, refusal, may_move } = *b;
    let managed = kind.mode == Mode::Managed;
    html! {
        h1 { (t(lang, "board")) ": " (kind.name) }
        nav.kinds {
            @for k in kinds {
                @if k.id == kind.id { strong { (k.name) } } @else { a href={ "/board?kind=" (k.id) } { (k.name) } }
                " "
            }
        }
        @if managed { p.note { (t(lang, "board_managed")) } }
        div.board data-kind=(kind.id) {
            @for c in columns {
                section.column data-stage=(c.stage) {
                    h2 { (c.name) " " span.count { "(" (c.total) ")" } }
                    @for (d, partner) in &c.cards {
                        @let refused = refusal.filter(|r| r.deal == d.id);
                        article.card data-deal=(d.id) data-version=(d.version) draggable=[(may_move && !managed).then_some("true")] {
                            div.title { a href={ "/deal/" (d.id) } { (d.title) } }
                            div.partner { (partner) }
                            div.facts {
                                span.amount { (d.amount.amount) " " (d.amount.currency) }
                                " · " span.days { (days_in_stage(d, now)) " " (t(lang, "days")) }
                                @if let Some(s) = &d.score { " · " span.score { (format!("{:.0}", s.probability)) "%" } }
                            }
                            @if let Some(r) = refused {
                                p.error.refusal role="alert" data-field=[r.field.as_deref()] {
                                    @if let Some(f) = &r.field { strong { (f) } ": " }
                                    (r.message)
                                }
                            }
                            @if may_move && !managed {
                                form.move method="post" action="/board/move" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="deal" value=(d.id);
                                    input type="hidden" name="version" value=(d.version);
                                    select name="stage" aria-label=(t(lang, "move_to")) {
                                        @for other in columns.iter().filter(|o| o.stage != c.stage) {
                                            option value=(other.stage) { (other.name) }
                                        }
                                    }
                                    button type="submit" { (t(lang, "move")) }
                                }
                            }
                        }
                    }
                    @if c.total > c.cards.len() { p.more { "+" (c.total - c.cards.len()) } }
                }
            }
        }
    }
}
