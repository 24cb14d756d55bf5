//! The analytics page: a built-in report's table, and its SVG chart where it draws one,
//! over what the caller may report on (heads: their department's deals) — the same reports,
//! parameters and scope as `GET /api/v1/analytics/NAME`.

use crmkit_core::report::Table;
use maud::{html, Markup, PreEscaped};

use super::i18n::t;

/// The page: the report links, the period and kind form, the chart and the table.
pub fn page(
    lang: &str,
    names: &[String],
    name: &str,
    kinds: &[(String, String)],
    params: &[(String, String)],
    chart: Option<&str>,
    table: &Table,
) -> Markup {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_default();
    html! {
        h1 { (t(lang, "analytics")) ": " (name) }
        nav.kinds {
            @for n in names {
                @if n == name { strong { (n) } } @else { a href={ "/analytics?report=" (n) } { (n) } }
                " "
            }
        }
        form.search method="get" action="/analytics" {
            input type="hidden" name="report" value=(name);
            select name="kind" aria-label=(t(lang, "kind")) {
                option value="" { "—" }
                @for (id, label) in kinds { option value=(id) selected[param("kind") == id] { (label) } }
            }
            input type="date" name="from" value=(param("from")) aria-label=(t(lang, "from"));
            input type="date" name="to" value=(param("to")) aria-label=(t(lang, "to"));
            button type="submit" { (t(lang, "show")) }
        }
        @if let Some(svg) = chart {
            // The chart is drawn by the report's own code, every text in it escaped.
            section.card.chart { (PreEscaped(svg.trim_start_matches(|c: char| c != '<'))) }
        }
        section.card {
            table.report {
                thead { tr { @for c in table.columns() { th { (c.name) } } } }
                tbody {
                    @for row in table.rows() {
                        tr {
                            @for v in row {
                                td { @match v { serde_json::Value::String(s) => (s), serde_json::Value::Null => "", other => (other.to_string()) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
