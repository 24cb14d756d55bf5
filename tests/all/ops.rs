//! Operations: what a running server tells its operator (`GET /metrics`, the JSON request
//! log), progress reports of long commands, the demo's login instructions, `stats`, and
//! what an import says it wrote.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crmkit_core::hooks::Hooks;
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::How;
use crmkit_core::model::{Deal, DealStatus, PartnerRole};
use crmkit_core::process::ImportStep;
use crmkit_core::values::{Currency, Money};
use serde_json::Value;

use crate::api::{Office, Served};
use crate::cli::{binary, ok, Site};
use crate::common::{native_engine, T0};

/// The samples of an OpenMetrics text: `name{labels}` (labels as `k="v"` pairs in order) to
/// value. Comment lines (`# TYPE`, `# HELP`, `# EOF`) are checked for shape and skipped.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "the exposition ends with # EOF");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment == "EOF"
                    || comment.starts_with("TYPE ")
                    || comment.starts_with("HELP ")
                    || comment.starts_with("UNIT "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(samples.insert(series.to_string(), value).is_none(), "{series} twice");
    }
    samples
}

/// The value of the series `name` whose labels include every one of `labels` (0 when no
/// series has them: a counter not yet created has counted nothing).
fn sample(m: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = m
        .iter()
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), "}"));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|p| p.trim_end_matches('}') == format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} names several series: {found:?}");
    found.first().copied().unwrap_or(0.0)
}

fn scrape(server: &Served) -> BTreeMap<String, f64> {
    let a = server.exchange("GET", "/metrics", None, &[], None);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    parse_metrics(&a.text())
}

#[test]
fn metrics_count_requests_by_route_writes_hooks_and_imports_and_the_json_log_has_a_line_per_request() {
    let office = Office::new();
    let p = office.site.partner("Альфа", PartnerRole::Client);
    let log = office.site.dir.with_file_name("serve.log");
    let server = Served::start_logging(&office.site, &log);
    let (boss, north) = (office.token("boss").to_string(), office.token("north").to_string());

    let before = scrape(&server);
    // Reads: two lists, three deals by id that are not there, one path no route has.
    for _ in 0..2 {
        assert_eq!(server.request("GET", "/api/v1/deals", Some(&boss)).0, 200);
    }
    for id in ["01J00000000000000000000001", "01J00000000000000000000002", "01J00000000000000000000003"] {
        assert_eq!(server.request("GET", &format!("/api/v1/deals/{id}"), Some(&boss)).0, 404);
    }
    assert_eq!(server.request("GET", "/no/such/place", None).0, 404);
    // A write: one deal, one group commit.
    let body = format!(
        "{{\"title\":\"Поставка\",\"partner\":\"{p}\",\"kind\":\"b2b_sale\",\"amount\":{{\"amount\":\"150000.00\",\"currency\":\"RUB\"}},\"source\":\"website\",\"expected_close\":\"2026-06-30\"}}"
    );
    let (status, deal) = server.send("POST", "/api/v1/deals", &north, body.as_bytes());
    assert_eq!(status, 201, "{deal}");
    let read_back = format!("/api/v1/deals/{}", deal["id"].as_str().unwrap());
    assert_eq!(server.request("GET", &read_back, Some(&north)).0, 200);
    assert_eq!(server.request("GET", &read_back, Some(&north)).0, 200);
    // An import: two rows created, one refused.
    let csv = "key,name,roles\nP1,Бета,client\nP2,,client\nP3,Гамма,client; supplier\n";
    let a = server.exchange(
        "POST",
        "/api/v1/import/partners",
        Some(&boss),
        &[("Content-Type", "text/csv")],
        Some(csv.as_bytes()),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let after_write = scrape(&server);

    let delta =
        |name: &str, labels: &[(&str, &str)]| sample(&after_write, name, labels) - sample(&before, name, labels);
    let requests = "crmkit_http_requests_total";
    assert_eq!(delta(requests, &[("method", "GET"), ("route", "/api/v1/deals"), ("status", "200")]), 2.0);
    assert_eq!(delta(requests, &[("method", "GET"), ("route", "/api/v1/deals/{id}"), ("status", "404")]), 3.0);
    assert_eq!(delta(requests, &[("method", "GET"), ("route", "/api/v1/deals/{id}"), ("status", "200")]), 2.0);
    assert_eq!(delta(requests, &[("method", "GET"), ("route", "unmatched"), ("status", "404")]), 1.0);
    assert_eq!(delta(requests, &[("method", "POST"), ("route", "/api/v1/deals"), ("status", "201")]), 1.0);
    assert_eq!(delta(requests, &[("method", "POST"), ("route", "/api/v1/import/{entity}"), ("status", "200")]), 1.0);
    // The first scrape is counted once it answered.
    assert_eq!(delta(requests, &[("method", "GET"), ("route", "/metrics"), ("status", "200")]), 1.0);
    // No raw path becomes a label.
    assert!(after_write.keys().all(|k| !k.contains("01J000") && !k.contains("/no/such")), "{after_write:?}");
    let latency = "crmkit_http_request_duration_seconds_count";
    assert_eq!(delta(latency, &[("method", "GET"), ("route", "/api/v1/deals/{id}")]), 5.0);
    assert_eq!(
        delta(
            "crmkit_http_request_duration_seconds_bucket",
            &[("method", "GET"), ("route", "/api/v1/deals/{id}"), ("le", "+Inf")]
        ),
        5.0
    );
    // One deal written: one group of one, one commit; nothing waits now.
    assert_eq!(delta("crmkit_writer_group_size_count", &[]), 1.0);
    assert_eq!(delta("crmkit_writer_group_size_sum", &[]), 1.0);
    assert_eq!(delta("crmkit_writer_commit_duration_seconds_count", &[]), 1.0);
    assert_eq!(sample(&after_write, "crmkit_writer_queue", &[]), 0.0);
    let imported = |outcome| delta("crmkit_import_rows_total", &[("entity", "partners"), ("outcome", outcome)]);
    assert_eq!((imported("created"), imported("failed"), imported("updated")), (2.0, 1.0, 0.0));
    // Reading the deal twice went through the record cache: a miss, then a hit at least.
    let lookups = delta("crmkit_record_cache_hits_total", &[]) + delta("crmkit_record_cache_misses_total", &[]);
    assert!(lookups >= 2.0, "{lookups}");
    assert!(delta("crmkit_record_cache_hits_total", &[]) >= 1.0);

    // A transition asks the guard bound for b2b sales once; it allows, so no fault.
    let guard = [("point", "deal.before_transition"), ("handler", "stages/guards.rhai::quote_before_leaving_proposal")];
    let calls = sample(&after_write, "crmkit_hook_calls_total", &guard);
    let (status, moved) = server.send(
        "POST",
        &format!("{read_back}/move"),
        &north,
        format!("{{\"version\":{},\"stage\":\"needs_analysis\"}}", deal["version"]).as_bytes(),
    );
    assert_eq!(status, 200, "{moved}");
    let after_move = scrape(&server);
    assert_eq!(sample(&after_move, "crmkit_hook_calls_total", &guard) - calls, 1.0);
    assert_eq!(sample(&after_move, "crmkit_hook_faults_total", &guard), 0.0);
    assert!(sample(&after_move, "crmkit_hook_duration_seconds_total", &guard) > 0.0);

    // A client's request id comes back; without one the server makes one.
    let a = server.exchange("GET", "/health", None, &[("X-Request-Id", "trace-42")], None);
    assert_eq!(a.header("x-request-id"), Some("trace-42"));
    let made = server.exchange("GET", "/health", None, &[], None).header("x-request-id").map(str::to_string);
    assert!(made.as_deref().is_some_and(|id| !id.is_empty()), "{made:?}");
    server.stop();

    // Every line of the log is a JSON object; each request has its line with its fields.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    // 3 scrapes, 2 lists, 3 + 2 deal reads, 1 unmatched, 1 create, 1 import, 1 move, 2 health.
    assert_eq!(requests.len(), 16, "{text}");
    for r in &requests {
        for field in ["timestamp", "method", "route", "status", "latency_ms", "user", "request_id"] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        assert!(r["latency_ms"].as_f64().is_some() && r["status"].as_u64().is_some(), "{r}");
    }
    let create = requests.iter().find(|r| r["method"] == "POST" && r["route"] == "/api/v1/deals").unwrap();
    assert_eq!((create["status"].as_u64(), create["user"].as_str()), (Some(201), Some("north")), "{create}");
    let unmatched = requests.iter().find(|r| r["route"] == "unmatched").unwrap();
    assert_eq!((unmatched["path"].as_str(), unmatched["user"].as_str()), (Some("/no/such/place"), Some("-")));
    assert!(requests.iter().any(|r| r["request_id"] == "trace-42"));
    let ids: std::collections::BTreeSet<&str> = requests.iter().filter_map(|r| r["request_id"].as_str()).collect();
    assert_eq!(ids.len(), requests.len(), "request ids are unique");
}

#[test]
fn the_text_log_stays_the_default() {
    let office = Office::new();
    let log = office.site.dir.with_file_name("serve.log");
    let mut child = Command::new(binary())
        .args(["serve", office.site.dir(), "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap().to_string();
    let server = Served { child, addr };
    assert_eq!(server.request("GET", "/health", None).0, 200);
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("request")).unwrap_or_else(|| panic!("{text}"));
    assert!(serde_json::from_str::<Value>(line).is_err() && line.contains("route=\"/health\""), "{line}");
}

/// `crmkit ARGS` in `cwd`: its stdout, after checking it succeeded.
fn run_in(cwd: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new(binary()).args(args).current_dir(cwd).output().unwrap();
    assert!(
        o.status.success(),
        "crmkit {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_demo_names_its_admin_and_its_instructions_for_a_token_work_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let said = run_in(tmp.path(), &["demo", "--dir", "shop", "--deals", "60", "--no-serve"]);
    assert!(said.contains("the admin login: admin"), "{said}");
    // Follow the printed commands: the token, the server, the call.
    let command = |starts: &str| -> Vec<String> {
        let line = said
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no `{starts}` in {said}"));
        line.split_whitespace().skip(1).map(str::to_string).collect()
    };
    let create = command("crmkit token create");
    let token = run_in(tmp.path(), &create.iter().map(String::as_str).collect::<Vec<_>>()).trim().to_string();
    let mut serve = command("crmkit serve");
    let at = serve.iter().position(|a| a == "--addr").unwrap();
    serve[at + 1] = "127.0.0.1:0".into();
    let mut child = Command::new(binary())
        .args(&serve)
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
    let server = Served { child, addr };
    let curl = command("curl -H 'Authorization: Bearer TOKEN'");
    let path = curl.last().unwrap().split_once("8080").unwrap().1.to_string();
    let (status, me) = server.request("GET", &path, Some(&token));
    assert_eq!((status, me["login"].as_str(), me["role"].as_str()), (200, Some("admin"), Some("admin")), "{me}");
    // And the other way it names: an admin's token makes another over the API.
    let (status, made) = server.send("POST", "/api/v1/tokens", &token, br#"{"login":"admin","role":"admin"}"#);
    assert_eq!(status, 201, "{made}");
    let other = made["token"].as_str().unwrap_or_else(|| panic!("{made}"));
    assert_eq!(server.request("GET", "/api/v1/me", Some(other)).0, 200);
    server.stop();
}

/// The columns of a `crmkit stats` line: runs of two or more spaces separate them.
fn columns(line: &str) -> Vec<&str> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// Sums per currency as the text form writes them, from the JSON's map.
fn amounts(json: &Value) -> String {
    let map = json.as_object().unwrap();
    if map.is_empty() {
        return "0".into();
    }
    map.iter()
        .map(|(c, v)| format!("{} {c}", v.as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap().round_dp(2)))
        .collect::<Vec<_>>()
        .join(" + ")
}

#[test]
fn stats_as_json_carries_every_figure_of_the_text_form() {
    let tmp = tempfile::tempdir().unwrap();
    run_in(tmp.path(), &["demo", "--dir", "shop", "--deals", "80", "--no-serve"]);
    // The demo compacts its file; redb records its allocator state at the first clean close
    // after, growing the file by a page: the two runs compared come after that one.
    run_in(tmp.path(), &["stats", "shop"]);
    let text = run_in(tmp.path(), &["stats", "shop"]);
    let json: Value = serde_json::from_str(&run_in(tmp.path(), &["stats", "shop", "--format", "json"])).unwrap();
    let sections: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(sections.len(), 3, "entities, deals by status, pipeline: {text}");
    let mut figures = 0;
    for line in sections[0].lines().skip(1) {
        // `NAME   FIGURE`: the figure is the last column (a size has its unit after it).
        let (name, figure) = match line.rsplit_once("  ") {
            Some((n, f)) => (n.trim(), f.trim()),
            None => panic!("{line}"),
        };
        let in_json = match name {
            "audit entries" => json["audit_entries"].to_string(),
            "history steps" => json["stage_history_steps"].to_string(),
            "file size" => crmkit::cli::human_bytes(json["file_bytes"].as_u64().unwrap()),
            kind => json["entities"][kind].to_string(),
        };
        assert_eq!(in_json, figure, "{name}: text {figure}, JSON {in_json}");
        figures += 1;
    }
    assert_eq!(figures, json["entities"].as_object().unwrap().len() + 3, "{text}");
    assert!(json["entities"]["deal"].as_u64() == Some(80));

    let statuses = json["deals_by_status"].as_array().unwrap();
    let lines: Vec<&str> = sections[1].lines().skip(1).collect();
    assert_eq!(columns(sections[1].lines().next().unwrap()), ["deals by status", "count", "amount"]);
    assert_eq!(lines.len(), statuses.len(), "{text}");
    for (line, s) in lines.iter().zip(statuses) {
        let want = [s["status"].as_str().unwrap().replace('_', " "), s["count"].to_string(), amounts(&s["amount"])];
        assert_eq!(columns(line), want, "{line}");
    }
    let total: u64 = statuses.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 80, "every deal has one status");

    let pipeline = json["pipeline"].as_array().unwrap();
    let lines: Vec<&str> = sections[2].trim_end().lines().skip(1).collect();
    assert_eq!(lines.len(), pipeline.len(), "{text}");
    for (line, p) in lines.iter().zip(pipeline) {
        let label = match p["stage_name"].as_str().or(p["stage"].as_str()) {
            Some(stage) => format!("{} / {stage}", p["kind_name"].as_str().unwrap()),
            None => p["kind_name"].as_str().unwrap().to_string(),
        };
        assert_eq!(columns(line), [label, p["count"].to_string(), amounts(&p["amount"])], "{line}");
    }
    assert!(pipeline.iter().any(|p| p["count"].as_u64() > Some(0)), "the demo has open deals: {text}");
}

/// A deal of `kind` at `stage` with `status` over `amount` in `currency`, brought in by the
/// process engine with a history that gets it there from the kind's first stage.
fn stats_deal(
    site: &Site,
    partner: PartnerId,
    manager: UserId,
    (kind, stage, status): (&str, Option<&str>, DealStatus),
    (amount, currency): (&str, &str),
) {
    let mut d = Deal::new(
        "Stats",
        partner,
        kind,
        stage.map(str::to_string),
        manager,
        Money::new(amount.parse().unwrap(), currency.parse::<Currency>().unwrap()),
    );
    d.status = status;
    if status == DealStatus::Lost {
        d.loss_reason = Some("price".into());
    }
    // The route up to `stage`, one stage after the other.
    let route: Vec<String> = site.with(|inst| {
        let k = inst.settings().process_kinds.iter().find(|k| k.id == kind).unwrap();
        let upto = stage.map_or(0, |s| k.position(s).unwrap());
        k.stages[..k.stages.len().min(upto + 1)].iter().map(|s| s.id.clone()).collect()
    });
    let day = 86_400_000;
    let step = |days: i64, how: How, to_stage: Option<&str>, to_status: DealStatus| ImportStep {
        at: T0.plus_millis(-days * day),
        how,
        to_stage: to_stage.map(str::to_string),
        to_status,
        actor: None,
        note: None,
    };
    let mut steps = vec![step(20, How::Create, route.first().map(String::as_str), DealStatus::InProgress)];
    for (i, s) in route.iter().enumerate().skip(1) {
        steps.push(step(20 - i as i64, How::Manual, Some(s), DealStatus::InProgress));
    }
    match status {
        DealStatus::InProgress => {}
        DealStatus::OnHold => steps.push(step(1, How::Hold, stage, status)),
        DealStatus::Won => steps.push(step(1, How::Won, stage, status)),
        DealStatus::Lost => {
            let mut lost = step(1, How::Lost, stage, status);
            lost.note = Some("price".into());
            steps.push(lost);
        }
    }
    site.with(|inst| {
        inst.store().transact(Some(manager), |tx| native_engine(Hooks::new()).import_deal(tx, d, steps)).unwrap()
    });
}

#[test]
fn stats_counts_deals_by_status_and_the_open_pipeline_of_a_known_installation() {
    use DealStatus::*;
    let site = Site::new(|c| c);
    let client = site.partner("ООО Ромашка", PartnerRole::Client);
    let manager = site.manager();
    #[rustfmt::skip]
    let deals = [
        (("b2b_sale", Some("qualification"), InProgress), ("100.50", "RUB")),
        (("b2b_sale", Some("qualification"), InProgress), ("200", "RUB")),
        (("b2b_sale", Some("qualification"), OnHold), ("10", "EUR")),
        (("b2b_sale", Some("proposal"), InProgress), ("1000", "RUB")),
        (("b2b_sale", Some("contract"), Won), ("5000", "RUB")),
        (("b2b_sale", Some("negotiation"), Lost), ("700", "USD")),
        (("repeat_sale", Some("order"), InProgress), ("42", "USD")),
        (("repeat_sale", Some("order"), Won), ("3", "EUR")),
        (("project", None, OnHold), ("9000", "RUB")),
        (("project", None, Lost), ("1", "RUB")),
    ];
    for (what, money) in deals {
        stats_deal(&site, client, manager, what, money);
    }
    let json = crate::cli::json(&["stats", site.dir()]);
    assert_eq!(json["entities"]["deal"], 10);
    let by_status: Vec<(&str, u64, Value)> = json["deals_by_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["status"].as_str().unwrap(), s["count"].as_u64().unwrap(), s["amount"].clone()))
        .collect();
    assert_eq!(
        by_status,
        [
            ("in_progress", 4, serde_json::json!({"RUB": "1300.50", "USD": "42"})),
            ("won", 2, serde_json::json!({"EUR": "3", "RUB": "5000"})),
            ("lost", 2, serde_json::json!({"RUB": "1", "USD": "700"})),
            ("on_hold", 2, serde_json::json!({"EUR": "10", "RUB": "9000"})),
        ]
    );
    let pipeline: Vec<(String, u64, Value)> = json["pipeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let at = format!("{}/{}", p["kind"].as_str().unwrap(), p["stage"].as_str().unwrap_or("-"));
            (at, p["count"].as_u64().unwrap(), p["amount"].clone())
        })
        .collect();
    let none = serde_json::json!({});
    #[rustfmt::skip]
    let want = [
        ("b2b_sale/qualification", 3, serde_json::json!({"EUR": "10", "RUB": "300.50"})),
        ("b2b_sale/needs_analysis", 0, none.clone()),
        ("b2b_sale/proposal", 1, serde_json::json!({"RUB": "1000"})),
        ("b2b_sale/negotiation", 0, none.clone()),
        ("b2b_sale/contract", 0, none.clone()),
        ("tender/announcement", 0, none.clone()),
        ("tender/documentation", 0, none.clone()),
        ("tender/approval", 0, none.clone()),
        ("tender/bid", 0, none.clone()),
        ("tender/award", 0, none.clone()),
        ("repeat_sale/request", 0, none.clone()),
        ("repeat_sale/quote", 0, none.clone()),
        ("repeat_sale/order", 1, serde_json::json!({"USD": "42"})),
        ("project/-", 1, serde_json::json!({"RUB": "9000"})),
    ];
    let want: Vec<(String, u64, Value)> = want.into_iter().map(|(a, n, v)| (a.to_string(), n, v)).collect();
    assert_eq!(pipeline, want);
    let text = ok(&["stats", site.dir()]);
    for line in [
        "in progress  4  1300.50 RUB + 42 USD",
        "on hold  2  10 EUR + 9000 RUB",
        "B2B sale / Qualification  3  10 EUR + 300.50 RUB",
        "B2B sale / Contract  0  0",
        "Long project (no stages)  1  9000 RUB",
    ] {
        let want = columns(line);
        assert!(text.lines().any(|l| columns(l) == want), "no line {line:?} in\n{text}");
    }
}

#[test]
fn importing_the_same_file_twice_writes_nothing_the_second_time_and_says_so() {
    let site = Site::new(|c| c);
    let input = site.file("partners.csv", "key,name,roles\nP1,Альфа,client\nP2,Бета,client; supplier\n".as_bytes());
    let first = ok(&["import", site.dir(), "--entity", "partners", &input]);
    assert!(first.starts_with("imported: 2 rows read; 2 created, 0 updated, 0 unchanged, 0 failed"), "{first}");
    let before = site.dump();
    let second = ok(&["import", site.dir(), "--entity", "partners", &input]);
    assert!(
        second.starts_with("imported, nothing written: 2 rows read; 0 created, 0 updated, 2 unchanged, 0 failed"),
        "{second}"
    );
    assert_eq!(before, site.dump(), "an import of unchanged rows wrote something");
    // One row changed among unchanged ones is written, and said to be.
    std::fs::write(&input, "key,name,roles\nP1,Альфа,client\nP2,Бета Плюс,client; supplier\n").unwrap();
    let third = ok(&["import", site.dir(), "--entity", "partners", &input]);
    assert!(third.starts_with("imported: 2 rows read; 0 created, 1 updated, 1 unchanged, 0 failed"), "{third}");
    assert_ne!(before, site.dump());
}
