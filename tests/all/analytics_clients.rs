//! The execution, ABC/XYZ and BCG reports on small hand-made sets of deals and documents,
//! with every figure worked out by hand and written out, through the command line and the
//! API; the BCG chart; the `[analytics.*]` thresholds and their mistakes; the dossier's
//! classes and weighted pipeline; and a document's `due` date through the API, import and a
//! Rhai hook, a refused value leaving the database as it was.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use crmkit_core::analytics::client_classes;
use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::dossier::{dossier, DossierOptions};
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::{Document, DocumentKind, DocumentLine, DocumentState, Partner, PartnerRole};
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::values::{Currency, Money};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::analytics::well_formed;
use crate::api::{Office, Served};
use crate::cli::{fails, ok};
use crate::common::new_deal;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A document of `partner` dated `date`; `lines` as (item, price) with qty 1.
fn doc(
    partner: PartnerId,
    kind: DocumentKind,
    date: &str,
    amount: &str,
    currency: Currency,
    state: DocumentState,
    lines: &[(&str, &str)],
) -> Document {
    let n = format!("{}-{date}-{amount}-{}", kind.name(), lines.len());
    let mut d = Document::new(kind, n, day(date), partner, Money::new(amount.parse().unwrap(), currency));
    d.state = state;
    for (item, price) in lines {
        d.lines.push(DocumentLine {
            item: item.to_string(),
            qty: Decimal::ONE,
            unit: None,
            price: price.parse().unwrap(),
        });
    }
    d
}

/// The CSV the command line prints for `report` with `args`, lines trimmed.
fn csv(dir: &str, report: &str, args: &[&str]) -> String {
    let mut all = vec!["analytics", report, dir, "--format", "csv"];
    all.extend_from_slice(args);
    ok(&all).lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

fn lines(expected: &str) -> String {
    expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// Completed shipments (revenue), RUB unless said:
///
/// | client  | 2025-10-02 | 2025-11 | 2025-12 | 2026-01 | 2026-02 | 2026-03 | lines |
/// |---------|-----------|---------|---------|---------|---------|---------|-------|
/// | Alfa    |           | 5000 (15th) |     | 2000    | 2000    | 2000    | Pumps; March: Pumps 1500 + Valves 500; Nov: Pumps 5000 |
/// | Beta    |           |         | 3000 (10th) | 1000 | 600   | 800     | Valves |
/// | Gamma   | 100       |         |         |         | 1200    |         | none  |
/// | Delta   |           |         | 777 (31st) | 130  | 140     | 130     | none  |
/// | Zeta    |           | 1000 (1st) |      |         |         |         | none  |
/// | Epsilon |           |         |         |         |         | 500 EUR | none  |
///
/// Beta's shipments are of a deal of the south manager; the others of no deal. What must not
/// count: Alfa's issued (not completed) shipment of 5000 in February, Beta's payment of 999.
fn clients_office() -> (Office, [PartnerId; 6]) {
    let office = Office::new();
    let south = office.south;
    let ids = office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut ids = Vec::new();
                for name in ["Alfa", "Beta", "Gamma", "Delta", "Zeta", "Epsilon"] {
                    ids.push(tx.create(Partner::new(name, PartnerRole::Client))?.id);
                }
                let [a, b, g, d, z, e] = [ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]];
                let beta_deal = tx.create(new_deal(b, south, 5400))?.id;
                let (rub, eur) = (Currency::RUB, Currency::EUR);
                let done = DocumentState::Completed;
                let ship = DocumentKind::Shipment;
                let mut docs = vec![
                    doc(a, ship, "2025-11-15", "5000", rub, done, &[("Pumps", "5000")]),
                    doc(a, ship, "2026-01-20", "2000", rub, done, &[("Pumps", "2000")]),
                    doc(a, ship, "2026-02-20", "2000", rub, done, &[("Pumps", "2000")]),
                    doc(a, ship, "2026-03-20", "2000", rub, done, &[("Pumps", "1500"), ("Valves", "500")]),
                    doc(a, ship, "2026-02-21", "5000", rub, DocumentState::Issued, &[]),
                    doc(g, ship, "2025-10-02", "100", rub, done, &[]),
                    doc(g, ship, "2026-02-10", "1200", rub, done, &[]),
                    doc(d, ship, "2025-12-31", "777", rub, done, &[]),
                    doc(d, ship, "2026-01-05", "130", rub, done, &[]),
                    doc(d, ship, "2026-02-05", "140", rub, done, &[]),
                    doc(d, ship, "2026-03-05", "130", rub, done, &[]),
                    doc(z, ship, "2025-11-01", "1000", rub, done, &[]),
                    doc(e, ship, "2026-03-10", "500", eur, done, &[]),
                ];
                for (date, amount) in
                    [("2025-12-10", "3000"), ("2026-01-10", "1000"), ("2026-02-10", "600"), ("2026-03-10", "800")]
                {
                    let mut s = doc(b, ship, date, amount, rub, done, &[("Valves", amount)]);
                    s.deal = Some(beta_deal);
                    docs.push(s);
                }
                let mut pay = doc(b, DocumentKind::Payment, "2026-02-11", "999", rub, done, &[]);
                pay.deal = Some(beta_deal);
                docs.push(pay);
                for d in docs {
                    tx.create(d)?;
                }
                Ok([a, b, g, d, z, e])
            })
            .unwrap()
    });
    (office, ids)
}

#[test]
fn abc_xyz_and_bcg_of_a_hand_made_history_have_the_figures_worked_out_by_hand() {
    let (office, [alfa, beta, gamma, delta, zeta, epsilon]) = clients_office();
    let dir = office.site.dir();
    let before = office.site.dump();
    let q1 = ["--from", "2026-01-01", "--to", "2026-03-31"];
    // RUB: revenue 6000 + 2400 + 1200 + 400 = 10000. ABC by the share before each client:
    // Alfa 0% → A, Beta 60% → A, Gamma 84% → B, Delta 96% → C.
    // XYZ over Jan–Mar: Alfa 2000/2000/2000 → 0% X; Beta 1000/600/800: mean 800, σ² =
    // (200² + 200² + 0)/3 = 26666.67, σ = 163.30, 20.4% → Y; Gamma 0/1200/0: mean 400, σ² =
    // (400² + 800² + 400²)/3 = 320000, σ = 565.69, 141.4% → Z; Delta 130/140/130: mean
    // 133.33, σ² = (3.33² + 6.67² + 3.33²)/3 = 22.22, σ = 4.71, 3.5% → X.
    // EUR on its own: Epsilon 0/0/500: mean 166.67, σ = 235.70, 141.4% → A Z.
    let want = format!(
        "currency,partner,name,revenue,share_pct,cumulative_pct,abc,months,months_with_revenue,mean_monthly,cv_pct,xyz,class
        EUR,{epsilon},Epsilon,500,100,100,A,3,1,166.67,141.4,Z,AZ
        RUB,{alfa},Alfa,6000,60,60,A,3,3,2000,0,X,AX
        RUB,{beta},Beta,2400,24,84,A,3,3,800,20.4,Y,AY
        RUB,{gamma},Gamma,1200,12,96,B,3,1,400,141.4,Z,BZ
        RUB,{delta},Delta,400,4,100,C,3,3,133.33,3.5,X,CX"
    );
    assert_eq!(csv(dir, "abc-xyz", &q1), lines(&want));
    // Only the south manager's deals: Beta's shipments alone.
    let want = format!(
        "currency,partner,name,revenue,share_pct,cumulative_pct,abc,months,months_with_revenue,mean_monthly,cv_pct,xyz,class
        RUB,{beta},Beta,2400,100,100,A,3,3,800,20.4,Y,AY"
    );
    assert_eq!(csv(dir, "abc-xyz", &[&q1[..], &["--manager", "south"]].concat()), lines(&want));

    // BCG: Jan 1 – Mar 31 is 90 days; the period before is the 90 days 2025-10-03 –
    // 2025-12-31 (Gamma's shipment of 10-02 falls outside it). Relative share against
    // Alfa's 6000; growth against the period before:
    // Alfa 6000 vs 5000: +20%, share 100 → star; Beta 2400 vs 3000: −20%, 40 → dog;
    // Gamma 1200, nothing before: new, 20 → question mark; Delta 400 vs 777: −377/777 =
    // −48.52%, 6.67 → dog; Zeta 0 vs 1000: −100%, 0 → dog. EUR: Epsilon new, 100 → star.
    // Items (RUB lines): Pumps 2000 + 2000 + 1500 = 5500 vs 5000: +10% (high from 10),
    // share 100 → star; Valves 500 + 2400 = 2900 vs 3000: −3.33%, 2900/5500 = 52.73 → cash cow.
    let want = format!(
        "dimension,currency,key,name,revenue,previous_revenue,growth_pct,relative_share_pct,quadrant
        client,EUR,{epsilon},Epsilon,500,0,,100,star
        client,RUB,{alfa},Alfa,6000,5000,20,100,star
        client,RUB,{beta},Beta,2400,3000,-20,40,dog
        client,RUB,{gamma},Gamma,1200,0,,20,question mark
        client,RUB,{delta},Delta,400,777,-48.52,6.67,dog
        client,RUB,{zeta},Zeta,0,1000,-100,0,dog
        item,RUB,Pumps,Pumps,5500,5000,10,100,star
        item,RUB,Valves,Valves,2900,3000,-3.33,52.73,cash cow"
    );
    assert_eq!(csv(dir, "bcg", &q1), lines(&want));

    // The chart: well-formed, a dot per row, names escaped.
    let svg = ok(&["analytics", "bcg", dir, "--format", "svg", "--from", "2026-01-01", "--to", "2026-03-31"]);
    well_formed(&svg);
    assert_eq!(svg.matches("<circle").count(), 8, "{svg}");
    assert!(svg.contains("<title>Alfa: share 100%, growth 20%</title>"), "{svg}");
    assert!(svg.contains(">client · RUB<") && svg.contains(">item · RUB<"), "{svg}");

    // The API answers the same tables as JSON, and the chart; execution has none.
    let server = Served::start(&office.site);
    let (status, body) =
        server.request("GET", "/api/v1/analytics/abc-xyz?from=2026-01-01&to=2026-03-31", Some(office.token("boss")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"][1],
        json!(["RUB", alfa.to_string(), "Alfa", "6000", "60", "60", "A", 3, 3, "2000", "0", "X", "AX"])
    );
    let (status, body) =
        server.request("GET", "/api/v1/analytics/bcg?from=2026-01-01&to=2026-03-31", Some(office.token("watcher")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"][4],
        json!(["client", "RUB", delta.to_string(), "Delta", "400", "777", "-48.52", "6.67", "dog"])
    );
    let chart = server.exchange(
        "GET",
        "/api/v1/analytics/bcg?from=2026-01-01&to=2026-03-31",
        Some(office.token("boss")),
        &[("accept", "image/svg+xml")],
        None,
    );
    assert_eq!(chart.status, 200);
    well_formed(&chart.text());
    // The ABC/XYZ matrix: nine cells per currency, each with its clients.
    let matrix = server.exchange(
        "GET",
        "/api/v1/analytics/abc-xyz",
        Some(office.token("boss")),
        &[("accept", "image/svg+xml")],
        None,
    );
    assert_eq!(matrix.status, 200, "{}", matrix.text());
    well_formed(&matrix.text());
    let (_, table) = server.request("GET", "/api/v1/analytics/abc-xyz", Some(office.token("boss")));
    let rows = table["rows"].as_array().unwrap();
    let currencies: std::collections::BTreeSet<String> = rows.iter().map(|r| r[0].to_string()).collect();
    assert_eq!(matrix.text().matches("class=\"cell\"").count(), 9 * currencies.len(), "{}", matrix.text());
    let clients: usize =
        matrix.text().split(" clients, ").filter_map(|piece| piece.rsplit(' ').next()?.parse::<usize>().ok()).sum();
    assert_eq!(clients, rows.len(), "every client in one cell: {}", matrix.text());
    let (status, body) = server.request("GET", "/api/v1/analytics/bcg?segment=vip", Some(office.token("boss")));
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("report bcg: parameter segment:"), "{body}");
    drop(server);
    let said = fails(&["analytics", "abc-xyz", dir, "--from", "2026-04-01", "--to", "2026-03-01"]);
    assert!(said.contains("parameter to: the period ends (2026-03-01) before it starts (2026-04-01)"), "{said}");
    assert_eq!(office.site.dump(), before, "a report changed the database");
}

#[test]
fn rfm_segments_of_a_hand_made_history_have_the_scores_worked_out_by_hand() {
    let (office, [alfa, beta, gamma, delta, _zeta, epsilon]) = clients_office();
    let dir = office.site.dir();
    let before = office.site.dump();
    // Q1 2026, up to 03-31. RUB purchases (completed shipments; Alfa's issued one does not
    // count, Zeta bought none in the period): Alfa 3, last 03-20 (11 days), 6000; Beta 3,
    // last 03-10 (21 days), 2400; Delta 3, last 03-05 (26 days), 400; Gamma 1, last 02-10
    // (49 days), 1200. A score is 1 + ⌊5 × the share of the currency's clients below⌋:
    // recency (fewer days better) Alfa 1 + ⌊15/4⌋ = 4, Beta 1 + ⌊10/4⌋ = 3, Delta 1 + ⌊5/4⌋
    // = 2, Gamma 1; frequency 3 purchases 1 + ⌊5/4⌋ = 2, one 1; monetary Alfa 4, Beta 3,
    // Gamma 2, Delta 1. Segments by R and F: Alfa (4, 2) promising, Beta (3, 2) needs
    // attention, Delta (2, 2) hibernating, Gamma (1, 1) lost. EUR on its own: Epsilon alone,
    // below no one: 1-1-1.
    let want = format!(
        "currency,partner,name,last_purchase,recency_days,purchases,revenue,r,f,m,rfm,segment
        EUR,{epsilon},Epsilon,2026-03-10,21,1,500,1,1,1,111,lost
        RUB,{alfa},Alfa,2026-03-20,11,3,6000,4,2,4,424,promising
        RUB,{beta},Beta,2026-03-10,21,3,2400,3,2,3,323,needs attention
        RUB,{delta},Delta,2026-03-05,26,3,400,2,2,1,221,hibernating
        RUB,{gamma},Gamma,2026-02-10,49,1,1200,1,1,2,112,lost"
    );
    assert_eq!(csv(dir, "rfm", &["--from", "2026-01-01", "--to", "2026-03-31"]), lines(&want));
    // Only the south manager's deals: Beta alone scores 1 on each.
    let want = format!(
        "currency,partner,name,last_purchase,recency_days,purchases,revenue,r,f,m,rfm,segment
        RUB,{beta},Beta,2026-03-10,21,3,2400,1,1,1,111,lost"
    );
    assert_eq!(csv(dir, "rfm", &["--from", "2026-01-01", "--to", "2026-03-31", "--manager", "south"]), lines(&want));
    // The whole history up to 03-31: Zeta (one purchase of 1000 on 2025-11-01, 150 days)
    // joins; Alfa now has 4 purchases (11,000), Beta 4 (5,400), Delta 4 (1,177), Gamma 2
    // (1,300). Recency: Alfa above the four others → 5, Zeta 1. Frequency: 4 is above two
    // of five → 1 + ⌊10/5⌋ = 3. Monetary: Alfa 5, Zeta (the least) 1. Alfa (5, 3) is loyal.
    let all = csv(dir, "rfm", &["--to", "2026-03-31"]);
    assert!(all.contains(&format!("RUB,{alfa},Alfa,2026-03-20,11,4,11000,5,3,5,535,loyal")), "{all}");
    assert!(all.contains("Zeta,2025-11-01,150,1,1000,1,1,1,111,lost"), "{all}");

    // The API answers the same table.
    let server = Served::start(&office.site);
    let (status, body) =
        server.request("GET", "/api/v1/analytics/rfm?from=2026-01-01&to=2026-03-31", Some(office.token("watcher")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"][1],
        json!(["RUB", alfa.to_string(), "Alfa", "2026-03-20", 11, 3, "6000", 4, 2, 4, "424", "promising"])
    );
    drop(server);
    assert_eq!(office.site.dump(), before, "a report changed the database");
}

#[test]
fn cohorts_of_a_hand_made_history_have_retention_and_churn_worked_out_by_hand() {
    let (office, _) = clients_office();
    let dir = office.site.dir();
    let before = office.site.dump();
    // Months with a completed shipment, up to 2026-03-31: Gamma 2025-10 and 2026-02; Alfa
    // 2025-11, 2026-01, -02, -03 (its issued shipment does not count); Zeta 2025-11; Beta
    // 2025-12 to 2026-03; Delta 2025-12 (the 31st) to 2026-03; Epsilon 2026-03 (EUR: a
    // client is a client whatever the currency). Cohorts: 2025-10 {Gamma}, 2025-11 {Alfa,
    // Zeta}, 2025-12 {Beta, Delta}, 2026-03 {Epsilon}. Gamma is active again in February and
    // churned from March; Zeta churned from December.
    let want = "cohort,clients,month,months_since,active,retention_pct,churned,churn_pct
        2025-10,1,2025-10,0,1,100,0,0
        2025-10,1,2025-11,1,0,0,0,0
        2025-10,1,2025-12,2,0,0,0,0
        2025-10,1,2026-01,3,0,0,0,0
        2025-10,1,2026-02,4,1,100,0,0
        2025-10,1,2026-03,5,0,0,1,100
        2025-11,2,2025-11,0,2,100,0,0
        2025-11,2,2025-12,1,0,0,1,50
        2025-11,2,2026-01,2,1,50,1,50
        2025-11,2,2026-02,3,1,50,1,50
        2025-11,2,2026-03,4,1,50,1,50
        2025-12,2,2025-12,0,2,100,0,0
        2025-12,2,2026-01,1,2,100,0,0
        2025-12,2,2026-02,2,2,100,0,0
        2025-12,2,2026-03,3,2,100,0,0
        2026-03,1,2026-03,0,1,100,0,0";
    assert_eq!(csv(dir, "cohorts", &["--to", "2026-03-31"]), lines(want));
    // From December on, and only the south manager's deals (Beta's shipments alone).
    let got = csv(dir, "cohorts", &["--from", "2025-12-01", "--to", "2026-03-31"]);
    assert!(got.lines().skip(1).all(|l| l.starts_with("2025-12,2,") || l.starts_with("2026-03,1,")), "{got}");
    let want = "cohort,clients,month,months_since,active,retention_pct,churned,churn_pct
        2025-12,1,2025-12,0,1,100,0,0
        2025-12,1,2026-01,1,1,100,0,0
        2025-12,1,2026-02,2,1,100,0,0
        2025-12,1,2026-03,3,1,100,0,0";
    assert_eq!(csv(dir, "cohorts", &["--to", "2026-03-31", "--manager", "south"]), lines(want));
    // Over the API too.
    let server = Served::start(&office.site);
    let (status, body) = server.request("GET", "/api/v1/analytics/cohorts?to=2026-03-31", Some(office.token("boss")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][7], json!(["2025-11", 2, "2025-12", 1, 0, "0", 1, "50"]));
    drop(server);
    assert_eq!(office.site.dump(), before, "a report changed the database");
}

#[test]
fn thresholds_come_from_config_and_mistakes_are_named_with_file_line_and_key() {
    let file = Path::new("config/crmkit.toml");
    let parse = |extra: &str| Settings::parse(&format!("{DEFAULT_CONFIG}\n{extra}"), file);
    let s = parse("[analytics.abc_xyz]\na = 70\nb = 20\nx = 5\ny = 30\n[analytics.bcg]\nshare = 35\ngrowth = 0\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let t = &s.analytics;
    assert_eq!((t.abc_xyz.a, t.abc_xyz.b, t.abc_xyz.x, t.abc_xyz.y), (70.into(), 20.into(), 5.into(), 30.into()));
    assert_eq!((t.bcg.share, t.bcg.growth), (35.into(), 0.into()));
    let d = Settings::parse(DEFAULT_CONFIG, file).unwrap().analytics;
    assert_eq!((d.abc_xyz.a, d.abc_xyz.b, d.abc_xyz.x, d.abc_xyz.y), (80.into(), 15.into(), 10.into(), 25.into()));
    assert_eq!((d.bcg.share, d.bcg.growth), (50.into(), 10.into()));
    let line = DEFAULT_CONFIG.lines().count() + 3;
    for (extra, message) in [
        (
            "[analytics.abc_xyz]\na = 80\nb = 15\nc = 10\n",
            "analytics.abc_xyz: a + b + c must make 100 (percent of revenue), got 80 + 15 + 10 = 105",
        ),
        ("[analytics.abc_xyz]\nb = 150\nx = 10\n", "analytics.abc_xyz.b must be a percentage from 0 to 100, got 150"),
        (
            "[analytics.abc_xyz]\ny = 10\nx = 20\nb = 5\n",
            "analytics.abc_xyz.y (10) must not be below analytics.abc_xyz.x (20)",
        ),
        ("[analytics.bcg]\nmarket = 3\nshare = 20\n", "unknown key \"market\" in [analytics.bcg]"),
    ] {
        let e = parse(extra).err().unwrap_or_else(|| panic!("{extra} was taken"));
        let text = e.to_string();
        assert!(text.contains(message), "{extra}: {text}");
        assert!(
            text.contains(&format!("crmkit.toml:{line}")) || text.contains(&format!("line {line}")),
            "{extra}: {text}"
        );
    }
}

/// The execution history: every deal won on 2026-03-02 (the sites' clock), looked at as of
/// 2026-03-20.
///
/// | deal | manager | client | amount | expected close | documents |
/// |------|---------|--------|--------|----------------|-----------|
/// | E1 | north | Alfa | 10000 | 02-28 (won late) | order 10000 agreed due 03-10; invoice 10000 issued due 03-15; payment 4000 completed; payment 100 EUR completed (another currency: left out); shipment 10000 completed |
/// | E2 | south | Beta | 5000 | 03-31 | order 5000 issued due 03-25; cancelled order 9999; invoice 3000 completed due 03-05; invoice 2000 draft; payment 3000 completed; shipment 2000 completed; shipment 3000 issued |
/// | E3 | north | Beta | 2000 | none | order 2000 agreed due 03-12; invoice 2000 agreed without due; shipment 500 completed |
/// | E4 | north | Alfa | 3000, probability 40 | – | open; an order of 3000 |
/// | E5 | north | Alfa | 500 USD, probability 50 | – | open |
/// | E6 | south | Beta | 700 | – | lost; an invoice of 700 due 03-03 |
fn execution_office() -> (Office, PartnerId, PartnerId) {
    let office = Office::new();
    let (north, south) = (office.north, office.south);
    let e = Engine::without_hooks();
    let ids = office.site.with(|inst| {
        inst.store()
            .transact(Some(north), |tx| {
                let alfa = tx.create(Partner::new("Alfa", PartnerRole::Client))?.id;
                let beta = tx.create(Partner::new("Beta", PartnerRole::Client))?.id;
                let deal = |tx: &mut crmkit_core::store::WriteTxn<'_>,
                            p: PartnerId,
                            m: UserId,
                            amount: i64,
                            close: Option<&str>| {
                    let mut d = new_deal(p, m, amount);
                    d.kind = "repeat_sale".into();
                    d.stage = None;
                    d.expected_close = close.map(day);
                    e.create_deal(tx, d)
                };
                let won = |tx: &mut crmkit_core::store::WriteTxn<'_>, d: crmkit_core::model::Deal| {
                    e.close(tx, d.id, d.version, Outcome::Won { comment: String::new() })
                };
                let e1 = deal(tx, alfa, north, 10000, Some("2026-02-28"))?;
                let e1 = won(tx, e1)?;
                let e2 = deal(tx, beta, south, 5000, Some("2026-03-31"))?;
                let e2 = won(tx, e2)?;
                let e3 = deal(tx, beta, north, 2000, None)?;
                let e3 = won(tx, e3)?;
                let mut e4 = new_deal(alfa, north, 3000);
                e4.probability = Some(40);
                let e4 = tx.create(e4)?;
                let mut e5 = new_deal(alfa, north, 500);
                e5.amount = Money::new(500.into(), Currency::USD);
                e5.probability = Some(50);
                tx.create(e5)?;
                let e6 = deal(tx, beta, south, 700, None)?;
                let e6 = e.close(
                    tx,
                    e6.id,
                    e6.version,
                    Outcome::Lost { reason: "price".into(), competitor: None, comment: String::new() },
                )?;
                use DocumentKind::*;
                use DocumentState::*;
                let rub = Currency::RUB;
                let with = |mut d: Document, deal: &crmkit_core::model::Deal, due: Option<&str>| {
                    d.deal = Some(deal.id);
                    d.due = due.map(day);
                    d
                };
                let date = "2026-03-02";
                for d in [
                    with(doc(alfa, Order, date, "10000", rub, Agreed, &[]), &e1, Some("2026-03-10")),
                    with(doc(alfa, Invoice, date, "10000", rub, Issued, &[]), &e1, Some("2026-03-15")),
                    with(doc(alfa, Payment, "2026-03-12", "4000", rub, Completed, &[]), &e1, None),
                    with(doc(alfa, Payment, "2026-03-12", "100", Currency::EUR, Completed, &[]), &e1, None),
                    with(doc(alfa, Shipment, "2026-03-09", "10000", rub, Completed, &[]), &e1, None),
                    with(doc(beta, Order, date, "5000", rub, Issued, &[]), &e2, Some("2026-03-25")),
                    with(doc(beta, Order, date, "9999", rub, Cancelled, &[]), &e2, Some("2026-03-03")),
                    with(doc(beta, Invoice, date, "3000", rub, Completed, &[]), &e2, Some("2026-03-05")),
                    with(doc(beta, Invoice, date, "2000", rub, Draft, &[]), &e2, Some("2026-03-05")),
                    with(doc(beta, Payment, "2026-03-04", "3000", rub, Completed, &[]), &e2, None),
                    with(doc(beta, Shipment, "2026-03-06", "2000", rub, Completed, &[]), &e2, None),
                    with(doc(beta, Shipment, "2026-03-07", "3000", rub, Issued, &[]), &e2, Some("2026-03-25")),
                    with(doc(beta, Order, date, "2000", rub, Agreed, &[]), &e3, Some("2026-03-12")),
                    with(doc(beta, Invoice, date, "2000", rub, Agreed, &[]), &e3, None),
                    with(doc(beta, Shipment, "2026-03-08", "500", rub, Completed, &[]), &e3, None),
                    with(doc(alfa, Order, date, "3000", rub, Agreed, &[]), &e4, Some("2026-03-03")),
                    with(doc(beta, Invoice, date, "700", rub, Issued, &[]), &e6, Some("2026-03-03")),
                ] {
                    tx.create(d)?;
                }
                Ok((alfa, beta))
            })
            .unwrap()
    });
    (office, ids.0, ids.1)
}

#[test]
fn execution_of_the_won_deals_has_the_figures_worked_out_by_hand() {
    let (office, alfa, beta) = execution_office();
    let dir = office.site.dir();
    let before = office.site.dump();
    // As of 03-20: E1 owes 10000 invoiced by 03-15 − 4000 paid = 6000 overdue, its order
    // shipped in full; E2's invoice due 03-05 is paid, its order is due 03-25 (not yet);
    // E3's order of 2000 was due 03-12 and 500 shipped: 1500 overdue, its invoice has no due.
    // north: E1 + E3 = 12000 won, ordered 12000, invoiced 12000, paid 4000, shipped 10500,
    // to pay 8000, to ship 1500; south: E2. Alfa: E1; Beta: E2 + E3.
    let want = format!(
        "dimension,key,name,currency,won_deals,won_amount,ordered,invoiced,paid,shipped,to_pay,to_ship,overdue_payment,overdue_payment_deals,overdue_shipment,overdue_shipment_deals,won_after_expected_close
        manager,north,NORTH,RUB,2,12000,12000,12000,4000,10500,8000,1500,6000,1,1500,1,1
        manager,south,SOUTH,RUB,1,5000,5000,3000,3000,2000,0,3000,0,0,0,0,0
        partner,{alfa},Alfa,RUB,1,10000,10000,10000,4000,10000,6000,0,6000,1,0,0,1
        partner,{beta},Beta,RUB,2,7000,7000,5000,3000,2500,2000,4500,0,0,1500,1,0
        total,,all won deals,RUB,3,17000,17000,15000,7000,12500,8000,4500,6000,1,1500,1,1"
    );
    assert_eq!(csv(dir, "execution", &["--as-of", "2026-03-20"]), lines(&want));
    // As of 03-11 nothing is overdue: E1's order (due 03-10) is shipped in full, E3's order
    // is due 03-12 and E1's invoice 03-15. Documents created on 03-02 all count.
    let got = csv(dir, "execution", &["--as-of", "2026-03-11", "--manager", "north"]);
    assert_eq!(
        got.lines().nth(1).unwrap(),
        "manager,north,NORTH,RUB,2,12000,12000,12000,4000,10500,8000,1500,0,0,0,0,1"
    );
    // Won before the period: nothing.
    assert_eq!(csv(dir, "execution", &["--from", "2026-03-03"]).lines().count(), 1);

    // The API, as a head of the north department sees it: the north's deals only.
    let server = Served::start(&office.site);
    let (status, body) =
        server.request("GET", "/api/v1/analytics/execution?as_of=2026-03-20", Some(office.token("head")));
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{body}");
    assert_eq!(
        rows[3],
        json!([
            "total",
            null,
            "all won deals",
            "RUB",
            2,
            "12000",
            "12000",
            "12000",
            "4000",
            "10500",
            "8000",
            "1500",
            "6000",
            1,
            "1500",
            1,
            1
        ])
    );

    // Lost deals and managers read the heads through the head's view too: what the head
    // sees is what an admin sees of the north department; the admin sees the south's loss.
    for report in ["lost", "managers"] {
        let get = |login: &str, query: &str| {
            let (status, body) =
                server.request("GET", &format!("/api/v1/analytics/{report}?{query}"), Some(office.token(login)));
            assert_eq!(status, 200, "{report} as {login}: {body}");
            body["rows"].clone()
        };
        let head = get("head", "as_of=2026-03-20");
        assert_eq!(head, get("boss", "as_of=2026-03-20&department=north"), "{report}");
        assert_ne!(head, get("boss", "as_of=2026-03-20"), "{report}");
    }
    let (_, lost) = server.request("GET", "/api/v1/analytics/lost?as_of=2026-03-20", Some(office.token("boss")));
    assert!(lost["rows"].to_string().contains("price"), "{lost}");

    // The dossier over the API: the weighted pipeline of Alfa's open deals (3000 × 40% and
    // 500 USD × 50%) and its classes (a list; what they hold depends on today's date).
    let (status, d) = server.request("GET", &format!("/api/v1/partners/{alfa}/dossier"), Some(office.token("boss")));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["weighted_pipeline"], json!({ "RUB": "1200", "USD": "250" }));
    assert!(d["classes"]["by_currency"].is_array(), "{d}");
    drop(server);
    let said = ok(&["dossier", dir, "Alfa"]);
    assert!(said.contains("weighted pipeline: 1200 RUB + 250 USD"), "{said}");
    assert!(said.contains("client class ("), "{said}");
    assert_eq!(office.site.dump(), before, "a report changed the database");

    // The classes for a fixed day: 2026-04-15 classifies April 2025 – March 2026. RUB
    // revenue: Alfa 10000, Beta 2000 + 500 = 2500 of 12500: Alfa A; Beta starts at exactly
    // 80% → B. Each was shipped to in one month of twelve: cv = √11 = 331.7% → Z. Nothing
    // before: both new, so growing; share Alfa 100 → star, Beta 25 → question mark. RFM to
    // 03-31 among the two: Alfa bought once (03-09, 22 days, 10000), Beta twice (last 03-08,
    // 23 days, 2500): recency Alfa 1 + ⌊5/2⌋ = 3, Beta 1; frequency Alfa 1, Beta 3; monetary
    // Alfa 3, Beta 1 — Alfa 313 needs attention, Beta 131 at risk.
    office.site.with(|inst| {
        let r = inst.store().read().unwrap();
        let classes = Arc::new(client_classes(&r, day("2026-04-15")).unwrap());
        assert_eq!(classes.period, Some((day("2025-04-01"), day("2026-03-31"))));
        let of = |p: PartnerId| {
            let d = dossier(&r, p, DossierOptions { classes: Some(classes.clone()), ..Default::default() }).unwrap();
            serde_json::to_value(&d.classes).unwrap()
        };
        assert_eq!(
            of(alfa),
            json!({ "from": "2025-04-01", "to": "2026-03-31", "by_currency": [
                { "currency": "RUB", "abc_xyz": "AZ", "revenue": "10000", "bcg": "star",
                  "rfm": "313", "rfm_segment": "needs attention" }
            ]})
        );
        // Without the classes handed in, the dossier does not compute them.
        let plain = dossier(&r, alfa, DossierOptions::default()).unwrap();
        assert!(plain.classes.by_currency.is_empty() && plain.classes.from.is_none());
        assert_eq!(
            of(beta)["by_currency"],
            json!([{ "currency": "RUB", "abc_xyz": "BZ", "revenue": "2500", "bcg": "question mark",
                       "rfm": "131", "rfm_segment": "at risk" }])
        );
    });
}

#[test]
fn a_documents_due_date_goes_through_the_api_import_and_hooks_and_a_bad_one_is_refused() {
    // A consultant's guard reads `due`: payment terms of more than 60 days are refused.
    let office =
        Office::with_config(|c| c + "\n[[hooks]]\npoint = \"entity.before_save\"\nhandler = \"terms.rhai::terms\"\n");
    std::fs::write(
        office.site.dir.join("scripts/terms.rhai"),
        r#"
fn terms(ctx) {
    if ctx.entity != "document" { return true; }
    let d = ctx.after;
    if d.due != () && d.kind == "invoice" && d.due > "2026-05-31" {
        return #{ reject: "payment terms are at most 60 days: due " + d.due, field: "due" };
    }
    true
}
"#,
    )
    .unwrap();
    let p = office.site.partner("Alfa", PartnerRole::Client);
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let body = |due: &str| {
        format!(
            r#"{{"kind":"invoice","number":"СЧ-1","date":"2026-04-01","partner":"{p}","amount":{{"amount":"100","currency":"RUB"}},"state":"issued"{due}}}"#
        )
    };
    let (status, created) = server.send("POST", "/api/v1/documents", boss, body(r#","due":"2026-04-30""#).as_bytes());
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["due"], "2026-04-30");
    let id = created["id"].as_str().unwrap().to_string();
    let (_, got) = server.request("GET", &format!("/api/v1/documents/{id}"), Some(boss));
    assert_eq!(got["due"], "2026-04-30");
    let (_, none) = server.send("POST", "/api/v1/documents", boss, body("").as_bytes());
    assert_eq!(none["due"], Value::Null, "{none}");
    server.stop();
    let before = office.site.dump();
    let server = Served::start(&office.site);
    for (extra, status, field, message) in [
        (r#","due":"2026-03-31""#, 422, "due", "falls due (2026-03-31) before the document's date (2026-04-01)"),
        (r#","due":"2026-02-30""#, 422, "due", ""),
        (r#","due":"2026-07-01""#, 422, "due", "payment terms are at most 60 days: due 2026-07-01"),
    ] {
        let (s, e) = server.send("POST", "/api/v1/documents", boss, body(extra).as_bytes());
        assert_eq!(s, status, "{extra}: {e}");
        assert_eq!(e["field"], field, "{extra}: {e}");
        assert!(e["message"].as_str().unwrap().contains(message), "{extra}: {e}");
    }
    let patch = server.exchange(
        "PATCH",
        &format!("/api/v1/documents/{id}"),
        Some(boss),
        &[("content-type", "application/merge-patch+json"), ("If-Match", "\"1\"")],
        Some(br#"{"due":"2026-03-01"}"#),
    );
    assert_eq!(patch.status, 422, "{}", patch.text());
    server.stop();
    assert_eq!(office.site.dump(), before, "a refused due date changed the database");

    // Import: a `due` column; a bad one refuses its row and writes nothing.
    let bad = office.site.file(
        "bad.csv",
        format!("key,kind,number,date,partner,amount,currency,state,due\nD9,invoice,СЧ-9,2026-04-01,{p},50,RUB,issued,2026-03-01\n")
            .as_bytes(),
    );
    let said = fails(&["import", office.site.dir(), "--entity", "documents", &bad]);
    assert!(said.contains("due") && said.contains("1 failed"), "{said}");
    assert_eq!(office.site.dump(), before, "a refused import changed the database");
    let good = office.site.file(
        "good.csv",
        format!("key,kind,number,date,partner,amount,currency,state,due\nD8,invoice,СЧ-8,2026-04-01,{p},50,RUB,issued,2026-04-20\n")
            .as_bytes(),
    );
    let said = ok(&["import", office.site.dir(), "--entity", "documents", &good]);
    assert!(said.contains("1 created"), "{said}");
    office.site.with(|inst| {
        let r = inst.store().read().unwrap();
        let docs: Vec<Document> = crmkit_core::store::Reader::list(&r, None, usize::MAX).unwrap();
        let imported = docs.iter().find(|d| d.number == "СЧ-8").unwrap();
        assert_eq!(imported.due, Some(day("2026-04-20")));
    });

    // The hook contract: `due` is in a document's version 1 form, and a form without it
    // (an older plugin's) still reads, as null.
    let mut d = doc(p, DocumentKind::Order, "2026-04-01", "10", Currency::RUB, DocumentState::Issued, &[]);
    d.due = Some(day("2026-04-10"));
    let wire = serde_json::to_value(crmkit_core::hooks::wire::DocumentV1::from(&d)).unwrap();
    assert_eq!(wire["due"], "2026-04-10");
    let mut older = wire.clone();
    older.as_object_mut().unwrap().remove("due");
    let back: crmkit_core::hooks::wire::DocumentV1 = serde_json::from_value(older).unwrap();
    assert_eq!(back.due, None);
}

#[test]
fn the_demo_company_has_due_dates_and_some_of_them_overdue() {
    let (_, inst, _) = crate::demo::company();
    let r = inst.store().read().unwrap();
    let today = inst.store().clock().now().date();
    let docs: Vec<Document> = crmkit_core::store::Reader::list(&r, None, usize::MAX).unwrap();
    let (mut orders, mut invoices) = (0, 0);
    for d in &docs {
        match d.kind {
            // Delivery promised in 14 days, payment in 10, 20 or 30.
            DocumentKind::Order => {
                assert_eq!(d.due.map(|due| (due - d.date).num_days()), Some(14), "{d:?}");
                orders += 1;
            }
            DocumentKind::Invoice => {
                let terms = d.due.map(|due| (due - d.date).num_days());
                assert!(matches!(terms, Some(10 | 20 | 30)), "{d:?}");
                invoices += 1;
            }
            DocumentKind::Quote | DocumentKind::Payment => assert_eq!(d.due, None, "{d:?}"),
            DocumentKind::Shipment => assert!(d.due.is_none_or(|due| due >= d.date), "{d:?}"),
        }
    }
    assert!(orders > 100 && invoices == orders, "{orders} orders, {invoices} invoices");
    let params = std::collections::BTreeMap::from([("as_of".to_string(), today.to_string())]);
    let table = crmkit_core::report::Reports::new();
    let mut reports = table;
    reports.add(Arc::new(crmkit_core::analytics::Analytics));
    let t = reports.run("execution", &params, &r).unwrap();
    let col = |name: &str| t.columns().iter().position(|c| c.name == name).unwrap();
    let total = t.rows().iter().find(|row| row[0] == "total" && row[3] == "RUB").expect("a RUB total");
    for (amount, deals) in
        [("overdue_payment", "overdue_payment_deals"), ("overdue_shipment", "overdue_shipment_deals")]
    {
        let due: Decimal = total[col(amount)].as_str().unwrap().parse().unwrap();
        assert!(due > Decimal::ZERO && total[col(deals)].as_u64().unwrap() > 0, "{amount}: {total:?}");
    }
    // Without `as_of`, "today" is the installation's (the demo's clock stopped where its
    // history ends, not the machine's day): the reports that measure against it answer as
    // they do as of that day.
    use crmkit_core::time::Clock;
    assert_ne!(today, crmkit_core::time::SystemClock.now().date(), "the demo's clock is its own");
    let none = std::collections::BTreeMap::new();
    for report in ["execution", "abc-xyz", "bcg"] {
        let without = reports.run(report, &none, &r).unwrap();
        let as_of_today = reports.run(report, &params, &r).unwrap();
        assert!(
            without.rows() == as_of_today.rows(),
            "{report} without as_of differs from it as of the installation's today"
        );
    }
}
