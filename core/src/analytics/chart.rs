//! The charts of the reports that draw horizontal bars — bottlenecks, lost deals,
//! managers — and the ABC/XYZ matrix: each an SVG document drawn from the report's table,
//! every text escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::funnel::escape;
use crate::report::Table;

/// A bar: its label, its length (in the group's unit), the text after it and, when there
/// is more to say than fits, its tooltip.
pub(super) struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub tip: Option<String>,
}

/// Groups of horizontal bars, a title over each group, as an SVG document titled `title`;
/// the bars of a group scaled to its longest.
pub(super) fn bars(title: &str, groups: &[(String, Vec<Bar>)]) -> String {
    const WIDTH: u32 = 860;
    const BAR: u32 = 22;
    const GAP: u32 = 6;
    const HEAD: u32 = 34;
    const LABELS: u32 = 220;
    // Room after the longest bar for its text.
    const TEXT: u32 = 330;
    let height: u32 = 16 + groups.iter().map(|(_, b)| HEAD + b.len() as u32 * (BAR + GAP) + 12).sum::<u32>();
    let span = (WIDTH - LABELS - TEXT) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, "<title>{}</title>", escape(title));
    let mut y = 16;
    for (group, list) in groups {
        let _ = writeln!(o, r#"<text x="8" y="{}" font-size="15" font-weight="bold">{}</text>"#, y + 18, escape(group));
        y += HEAD;
        let most = list.iter().map(|b| b.value).fold(0.0f64, f64::max);
        for b in list {
            let w = if most > 0.0 { (b.value.max(0.0) / most * span).round().max(1.0) } else { 1.0 };
            let _ = writeln!(
                o,
                r##"<rect class="bar" x="{LABELS}" y="{y}" width="{w}" height="{BAR}" fill="#4682b4"><title>{}</title></rect>"##,
                escape(&format!("{}: {}", b.label, b.tip.as_deref().unwrap_or(&b.text)))
            );
            let _ = writeln!(o, r#"<text x="8" y="{}">{}</text>"#, y + BAR / 2 + 4, escape(&clip(&b.label, 32)));
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}">{}</text>"#,
                LABELS as f64 + w + 6.0,
                y + BAR / 2 + 4,
                escape(&b.text)
            );
            y += BAR + GAP;
        }
        y += 12;
    }
    o.push_str("</svg>\n");
    o
}

/// `s`, cut to `n` characters with an ellipsis.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    out
}

/// The columns of `table` named, by their positions; an error names a missing one.
pub(super) fn columns<const N: usize>(table: &Table, names: [&str; N]) -> Result<[usize; N], String> {
    let mut out = [0; N];
    for (i, name) in names.iter().enumerate() {
        out[i] = table
            .columns()
            .iter()
            .position(|c| c.name == *name)
            .ok_or_else(|| format!("the table has no column {name}"))?;
    }
    Ok(out)
}

/// A cell as text: a string as it is, a number written, null as `—`.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// A cell as a number (decimals are strings in the tables); null and text as 0.
pub(super) fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Rows grouped by the text of the cells at `keys`, joined by ` · `, in table order.
pub(super) fn grouped<'t>(table: &'t Table, keys: &[usize]) -> Vec<(String, Vec<&'t [Value]>)> {
    let mut out: Vec<(String, Vec<&[Value]>)> = Vec::new();
    for r in table.rows() {
        let title = keys.iter().map(|k| text(&r[*k])).collect::<Vec<_>>().join(" · ");
        if out.last().is_none_or(|(t, _)| *t != title) {
            out.push((title, Vec::new()));
        }
        out.last_mut().expect("pushed").1.push(r.as_slice());
    }
    out
}

/// The clients and the revenue of each class (`("A", "X")` …) of one currency.
type Cells = BTreeMap<(String, String), (u64, f64)>;

/// The ABC/XYZ table as an SVG chart: per currency, the 3 × 3 matrix of classes (A, B, C
/// down; X, Y, Z across), each cell with its clients and their share of the revenue, the
/// shade by that share.
pub(super) fn abc_xyz(table: &Table) -> Result<String, String> {
    let [cur, revenue, abc, xyz] = columns(table, ["currency", "revenue", "abc", "xyz"])?;
    // Per currency: (clients, revenue) by class, and the revenue in all.
    let mut panels: Vec<(String, Cells, f64)> = Vec::new();
    for (currency, rows) in grouped(table, &[cur]) {
        let mut cells = BTreeMap::new();
        let mut all = 0.0;
        for r in rows {
            let c: &mut (u64, f64) = cells.entry((text(&r[abc]), text(&r[xyz]))).or_default();
            c.0 += 1;
            c.1 += number(&r[revenue]);
            all += number(&r[revenue]);
        }
        panels.push((currency, cells, all));
    }
    const CELL: f64 = 150.0;
    const LEFT: f64 = 60.0;
    const TOP: f64 = 56.0;
    let panel_h = TOP + 3.0 * CELL + 24.0;
    let width = LEFT + 3.0 * CELL + 20.0;
    let height = 16.0 + panel_h * panels.len().max(1) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    o.push_str("<title>ABC/XYZ matrix</title>\n");
    let mut y0 = 16.0;
    for (currency, cells, all) in &panels {
        let _ = writeln!(
            o,
            r#"<text x="8" y="{}" font-size="15" font-weight="bold">{}</text>"#,
            y0 + 18.0,
            escape(currency)
        );
        for (i, x) in ["X", "Y", "Z"].iter().enumerate() {
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{x}</text>"#,
                LEFT + CELL * (i as f64 + 0.5),
                y0 + TOP - 8.0
            );
        }
        for (j, a) in ["A", "B", "C"].iter().enumerate() {
            let top = y0 + TOP + CELL * j as f64;
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{a}</text>"#,
                LEFT / 2.0,
                top + CELL / 2.0 + 4.0
            );
            for (i, x) in ["X", "Y", "Z"].iter().enumerate() {
                let (n, sum) = cells.get(&(a.to_string(), x.to_string())).copied().unwrap_or((0, 0.0));
                let share = if *all > 0.0 { sum / all * 100.0 } else { 0.0 };
                // From a pale to a deep blue by the share of the revenue.
                let shade = (235.0 - share.min(100.0) * 1.6).round() as u8;
                let ink = if shade < 150 { "#ffffff" } else { "#000000" };
                let left = LEFT + CELL * i as f64;
                let _ = writeln!(
                    o,
                    r##"<rect class="cell" data-class="{a}{x}" x="{left}" y="{top}" width="{CELL}" height="{CELL}" fill="rgb({shade},{},{})" stroke="#ffffff" stroke-width="2"><title>{a}{x}: {n} clients, {share:.1}% of the revenue</title></rect>"##,
                    shade.saturating_add(10),
                    255
                );
                let _ = writeln!(
                    o,
                    r#"<text x="{}" y="{}" text-anchor="middle" font-size="18" fill="{ink}">{a}{x}</text>"#,
                    left + CELL / 2.0,
                    top + CELL / 2.0 - 14.0
                );
                let _ = writeln!(
                    o,
                    r#"<text x="{}" y="{}" text-anchor="middle" fill="{ink}">{n} · {share:.1}%</text>"#,
                    left + CELL / 2.0,
                    top + CELL / 2.0 + 10.0
                );
            }
        }
        y0 += panel_h;
    }
    o.push_str("</svg>\n");
    Ok(o)
}

/// The bottlenecks table as an SVG chart: per kind, a bar per stage as long as the median
/// days a visit stays, with the 90th percentile, the SLA breaches and the deals stuck now.
pub(super) fn bottlenecks(table: &Table) -> Result<String, String> {
    let [kind, name, p50, p90, breaches, stuck] =
        columns(table, ["kind", "stage_name", "p50_days", "p90_days", "sla_breaches", "stuck_now"])?;
    let groups = grouped(table, &[kind])
        .into_iter()
        .map(|(k, rows)| {
            let list = rows
                .iter()
                .map(|r| Bar {
                    label: text(&r[name]),
                    value: number(&r[p50]),
                    text: format!(
                        "p50 {} d · p90 {} d · SLA breaches {} · stuck {}",
                        text(&r[p50]),
                        text(&r[p90]),
                        text(&r[breaches]),
                        text(&r[stuck])
                    ),
                    tip: None,
                })
                .collect();
            (k, list)
        })
        .collect::<Vec<_>>();
    Ok(bars("Bottlenecks: median days in each stage", &groups))
}

/// The lost deals table as an SVG chart: per cut (reason, stage, competitor, …), a bar per
/// value as long as its deals in every currency, with their share; the amount lost in each
/// currency in its tooltip.
pub(super) fn lost(table: &Table) -> Result<String, String> {
    let [dimension, value, cur, deals, share, amount] =
        columns(table, ["dimension", "value", "currency", "deals", "share_pct", "amount"])?;
    let mut groups: Vec<(String, Vec<Bar>)> = Vec::new();
    for (cut, rows) in grouped(table, &[dimension]) {
        // The values in the order the rows first name them, their currencies together.
        let mut values: Vec<(String, f64, f64, Vec<String>)> = Vec::new();
        for r in rows {
            let name = text(&r[value]);
            let at = match values.iter().position(|v| v.0 == name) {
                Some(i) => i,
                None => {
                    values.push((name, 0.0, 0.0, Vec::new()));
                    values.len() - 1
                }
            };
            let v = &mut values[at];
            v.1 += number(&r[deals]);
            v.2 += number(&r[share]);
            v.3.push(format!("{} {}", text(&r[amount]), text(&r[cur])));
        }
        let list = values
            .into_iter()
            .map(|(label, n, pct, amounts)| Bar {
                label,
                value: n,
                text: format!("{n} ({pct:.1}%)"),
                tip: Some(format!("{n} deals ({pct:.1}%), {} lost", amounts.join(" + "))),
            })
            .collect();
        groups.push((cut, list));
    }
    Ok(bars("Lost deals", &groups))
}

/// The managers table as an SVG chart: per currency, a bar per manager as long as their
/// revenue, with the deals won of those opened and the win rate; the team's line is left
/// out (it would dwarf the bars).
pub(super) fn managers(table: &Table) -> Result<String, String> {
    let [manager, name, cur, revenue, won, opened, rate] =
        columns(table, ["manager", "name", "currency", "revenue", "won", "opened", "win_rate_pct"])?;
    let mut groups: Vec<(String, Vec<Bar>)> = Vec::new();
    for r in table.rows().iter().filter(|r| text(&r[manager]) != "(team)") {
        let currency = text(&r[cur]);
        if !groups.iter().any(|(c, _)| *c == currency) {
            groups.push((currency.clone(), Vec::new()));
        }
        let label = match text(&r[name]) {
            n if n == "—" || n.is_empty() => text(&r[manager]),
            n => n,
        };
        let bar = Bar {
            label,
            value: number(&r[revenue]),
            text: format!(
                "{} {currency} · won {} of {} · {}%",
                text(&r[revenue]),
                text(&r[won]),
                text(&r[opened]),
                text(&r[rate])
            ),
            tip: None,
        };
        groups.iter_mut().find(|(c, _)| *c == currency).expect("pushed").1.push(bar);
    }
    for (_, list) in &mut groups {
        list.sort_by(|a, b| b.value.total_cmp(&a.value));
    }
    Ok(bars("Managers: revenue", &groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_longest_and_escape_every_text() {
        let groups = vec![(
            "kind <b>".to_string(),
            vec![
                Bar { label: "a & b".into(), value: 10.0, text: "10".into(), tip: None },
                Bar { label: "c".into(), value: 5.0, text: "<5>".into(), tip: Some("five & more".into()) },
            ],
        )];
        let svg = bars("t", &groups);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("width=\"310\"") && svg.contains("width=\"155\""), "{svg}");
        assert!(svg.contains("kind &lt;b&gt;") && svg.contains("a &amp; b") && svg.contains("&lt;5&gt;"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("<title>c: five &amp; more</title>"), "{svg}");
    }
}
