//! Operations: what a running server tells its operator (`GET /metrics`, the JSON request
//! log), progress reports of long commands, the demo's login instructions and `stats`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crmkit_core::model::PartnerRole;
use serde_json::Value;

use crate::api::{Office, Served};
use crate::cli::binary;

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

/// `crmkit serve --log-format json` on a free loopback port, its stderr in `log`.
fn serve_logging_json(site: &crate::cli::Site, log: &std::path::Path) -> Served {
    use std::io::BufRead as _;
    let mut child = Command::new(binary())
        .args(["serve", site.dir(), "--addr", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("crmkit serve starts");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
    Served { child, addr }
}

#[test]
fn metrics_count_requests_by_route_writes_hooks_and_imports_and_the_json_log_has_a_line_per_request() {
    let office = Office::new();
    let p = office.site.partner("Альфа", PartnerRole::Client);
    let log = office.site.dir.with_file_name("serve.log");
    let server = serve_logging_json(&office.site, &log);
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

#[test]
fn stats_as_json_carries_every_figure_of_the_text_form() {
    let tmp = tempfile::tempdir().unwrap();
    run_in(tmp.path(), &["demo", "--dir", "shop", "--deals", "80", "--no-serve"]);
    let text = run_in(tmp.path(), &["stats", "shop"]);
    let json: Value = serde_json::from_str(&run_in(tmp.path(), &["stats", "shop", "--format", "json"])).unwrap();
    let mut figures = 0;
    for line in text.lines().skip(1) {
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
}
