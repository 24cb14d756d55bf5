//! The HTTP API as its clients use it: `crmkit serve` on a loopback port against a real
//! installation — tokens and roles, every resource, writes group-committed, crashes, slow
//! and hostile clients — with every refused request checked against a dump of the database.

use std::process::Command;

use crmkit_core::id::DealId;
use crmkit_core::model::{Partner, PartnerRole, Role, User};
use crmkit_core::store::Reader;
use serde_json::Value;

use crate::cli::{binary, fails, ok, Site};
use crate::client::{self, Answer};
use crate::common::new_deal;

/// A `crmkit serve` process on a free loopback port, stopped (SIGTERM) when dropped.
pub(crate) struct Served {
    pub(crate) child: std::process::Child,
    pub(crate) addr: String,
}

impl Served {
    pub(crate) fn start(site: &Site) -> Served {
        Served::start_with(site, &[])
    }

    /// A server with environment variables `env` set.
    pub(crate) fn start_with(site: &Site, env: &[(&str, &str)]) -> Served {
        use std::io::BufRead as _;
        let mut child = Command::new(binary())
            .args(["serve", site.dir(), "--addr", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("crmkit serve starts");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
        Served { child, addr }
    }

    /// `crmkit serve --log-format json` on a free loopback port, its log lines (one JSON
    /// object each: a line per request, scripts' `print`) written to `log` as they happen.
    pub(crate) fn start_logging(site: &Site, log: &std::path::Path) -> Served {
        use std::io::BufRead as _;
        let mut child = Command::new(binary())
            .args(["serve", site.dir(), "--addr", "127.0.0.1:0", "--log-format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("crmkit serve starts");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
        Served { child, addr }
    }

    /// Reads what the server prints until a line that starts with `prefix` (byte by byte,
    /// so that nothing after it is taken from what [`Served::stop`] reads).
    pub(crate) fn wait_for_said(&mut self, prefix: &str) {
        use std::io::Read as _;
        let out = self.child.stdout.as_mut().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        loop {
            assert_eq!(out.read(&mut byte).unwrap(), 1, "the server ended before saying {prefix:?}");
            if byte[0] != b'\n' {
                line.push(byte[0]);
            } else if line.starts_with(prefix.as_bytes()) {
                return;
            } else {
                line.clear();
            }
        }
    }

    /// One request over its own connection: status and JSON body.
    pub(crate) fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let a = self.exchange(method, path, token, &[], None);
        (a.status, a.json())
    }

    /// One request over its own connection, with extra headers and a body: see
    /// [`client::exchange`]. The server must answer.
    pub(crate) fn exchange(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        client::exchange(&self.addr, method, path, token, headers, body)
            .unwrap_or_else(|| panic!("{method} {path}: the server at {} gave no answer", self.addr))
    }

    /// Kills the server with SIGKILL, as a crash would stop it, and waits until it is gone.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops the server as an operator would, and returns what it printed.
    pub(crate) fn stop(self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.stop_after_signal()
    }

    /// Waits for a server that was sent SIGTERM to stop; returns what it printed.
    fn stop_after_signal(mut self) -> String {
        use std::io::Read as _;
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the server stopped with {status}");
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_api_answers_over_loopback_by_token_and_role_and_stops_cleanly() {
    let site = Site::new(|c| c);
    let petrov = site.manager();
    let (mine, theirs) = site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let other = tx.create(User::new("sidorov", "Сидор Сидоров", Role::Manager))?.id;
                let p = tx.create(Partner::new("Альфа", PartnerRole::Client))?.id;
                let mine = tx.create(new_deal(p, petrov, 100))?.id;
                let theirs = tx.create(new_deal(p, other, 200))?.id;
                Ok((mine, theirs))
            })
            .unwrap()
    });
    site.with(|inst| inst.store().transact(None, |tx| tx.create(User::new("boss", "Босс", Role::Admin))).unwrap());
    let admin = ok(&["token", "create", site.dir(), "--user", "boss", "--role", "admin"]).trim().to_string();
    let manager = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let out = fails(&["token", "create", site.dir(), "--user", "petrov", "--role", "admin"]);
    assert!(out.contains("does not have the role admin"), "{out}");

    let server = Served::start(&site);
    assert_eq!(server.request("GET", "/health", None), (200, serde_json::json!({ "status": "ok" })));
    let (status, doc) = server.request("GET", "/openapi.json", None);
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/api/v1/deals/{id}"]["get"].is_object());
    let deal = |id: &DealId| format!("/api/v1/deals/{id}");
    let (status, body) = server.request("GET", &deal(&mine), None);
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = server.request("GET", &deal(&mine), Some("crmk_not_a_token"));
    assert_eq!(status, 401);
    let (status, body) = server.request("GET", &deal(&theirs), Some(&admin));
    assert_eq!((status, body["id"].as_str()), (200, Some(theirs.to_string().as_str())));
    assert_eq!(body["amount"]["currency"], "RUB");
    // A manager sees their own deals; another's is as good as absent.
    assert_eq!(server.request("GET", &deal(&mine), Some(&manager)).0, 200);
    let (status, body) = server.request("GET", &deal(&theirs), Some(&manager));
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = server.request("GET", "/api/v1/deals/%FF%FE", Some(&admin));
    assert_eq!((status, body["field"].as_str()), (400, Some("id")));
    let (status, body) = server.request("GET", "/api/v1/nothing", Some(&admin));
    assert_eq!((status, body["code"].as_str()), (404, Some("no_route")));
    let said = server.stop();
    assert!(said.contains("stopped; the database is closed"), "{said}");
    // The database opens cleanly after the server let go of it.
    ok(&["check", site.dir()]);
    // A revoked token is refused by the next server.
    let id = ok(&["token", "list", site.dir()]).lines().find(|l| l.contains("petrov")).unwrap()[..12].to_string();
    ok(&["token", "revoke", site.dir(), &id]);
    let server = Served::start(&site);
    assert_eq!(server.request("GET", &deal(&mine), Some(&manager)).0, 401);
    server.stop();
}

impl Served {
    /// A request with a JSON body: status and JSON body.
    pub(crate) fn send(&self, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
        let a = self.exchange(method, path, Some(token), &[], Some(body));
        (a.status, a.json())
    }
}

#[test]
fn writes_through_the_api_are_checked_and_group_committed() {
    let site = Site::new(|c| c);
    site.manager();
    let p = site.partner("Альфа", PartnerRole::Client);
    site.with(|inst| {
        inst.store().transact(None, |tx| tx.create(User::new("watcher", "Наблюдатель", Role::Viewer))).unwrap()
    });
    let manager = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let viewer = ok(&["token", "create", site.dir(), "--user", "watcher", "--role", "viewer"]).trim().to_string();
    let before = site.dump();
    let server = Served::start(&site);
    let post = |token: &str, body: &str| server.send("POST", "/api/v1/interactions", token, body.as_bytes());
    let call = |subject: &str| {
        format!("{{\"kind\":\"call\",\"direction\":\"outgoing\",\"at\":\"2026-03-02T10:00:00Z\",\"subject\":\"{subject}\",\"partner\":\"{p}\"}}")
    };
    // Every bad request is refused with its own status, and nothing is written.
    let (status, body) = post(&manager, "{\"kind\": \"call\",");
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_json")));
    let (status, body) = post(&manager, &call("x").replace("\"subject\"", "\"subjekt\""));
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("subjekt"), "{body}");
    let (status, body) = post(&manager, &call("x").replace("\"call\"", "42"));
    assert_eq!(status, 422, "{body}");
    let (status, body) = post(&manager, &call("x").replace(&p.to_string(), "01JBJGB4000000000000000016"));
    assert_eq!((status, body["field"].as_str()), (422, Some("partner")), "{body}");
    let (status, body) = post(&viewer, &call("x"));
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let big = format!(
        "{{\"kind\":\"note\",\"at\":\"2026-03-02T10:00:00Z\",\"body\":\"{}\",\"partner\":\"{p}\"}}",
        "x".repeat(2 << 20)
    );
    let (status, body) = post(&manager, &big);
    assert_eq!((status, body["code"].as_str()), (413, Some("too_large")));
    // 32 clients writing at once: each gets its own answer, all are there afterwards.
    std::thread::scope(|s| {
        for i in 0..32 {
            let (post, call, manager) = (&post, &call, &manager);
            s.spawn(move || {
                for j in 0..4 {
                    let (status, body) = post(manager, &call(&format!("Звонок {i}-{j}")));
                    assert_eq!(status, 201, "{body}");
                    assert_eq!(body["subject"], format!("Звонок {i}-{j}"));
                }
            });
        }
    });
    server.stop();
    let after = site.dump();
    assert_eq!(after["interactions"].len(), before["interactions"].len() + 128);
    ok(&["check", site.dir()]);
}

#[test]
fn every_acknowledged_write_survives_a_kill_mid_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let site = Site::new(|c| c);
    site.manager();
    let p = site.partner("Альфа", PartnerRole::Client);
    let token = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    for round in 0..3 {
        let mut server = Served::start(&site);
        let acknowledged = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        // Each acknowledgement is announced, so that the kill comes in the middle of the load
        // however fast or slow the machine is.
        let (said, heard) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            for client in 0..8 {
                let (addr, acknowledged, stop, token) = (server.addr.clone(), &acknowledged, &stop, &token);
                let said = said.clone();
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let subject = format!("r{round}-c{client}-{n}");
                        let body = format!("{{\"kind\":\"note\",\"at\":\"2026-03-02T10:00:00Z\",\"subject\":\"{subject}\",\"partner\":\"{p}\"}}");
                        let answer =
                            client::exchange(&addr, "POST", "/api/v1/interactions", Some(token), &[], Some(body.as_bytes()));
                        match answer.map(|a| a.status) {
                            Some(201) => {
                                acknowledged.lock().unwrap().push(subject);
                                let _ = said.send(());
                            }
                            Some(other) => panic!("{subject}: {other}"),
                            None => break,
                        }
                    }
                });
            }
            drop(said);
            for _ in 0..40 {
                heard.recv().expect("the clients write until the kill");
            }
            server.child.kill().unwrap(); // SIGKILL, in the middle of the load
            server.child.wait().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
        let acknowledged = acknowledged.into_inner().unwrap();
        assert!(acknowledged.len() >= 40, "round {round}: only {} writes went through", acknowledged.len());
        // The database opens cleanly and holds every acknowledged write.
        let stored: std::collections::HashSet<String> = site.with(|inst| {
            let mut all = std::collections::HashSet::new();
            inst.store()
                .read()
                .unwrap()
                .for_each::<crmkit_core::model::Interaction>(|i| {
                    all.insert(i.subject);
                    true
                })
                .unwrap();
            all
        });
        let lost: Vec<&String> = acknowledged.iter().filter(|s| !stored.contains(*s)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged writes are missing: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        ok(&["check", site.dir()]);
    }
}

#[test]
fn a_deal_lives_through_the_api_and_a_script_guard_has_its_say() {
    let site = Site::new(|c| c);
    site.manager();
    let p = site.partner("Альфа", PartnerRole::Client);
    let manager = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let server = Served::start(&site);
    let post = |path: &str, body: String| server.send("POST", path, &manager, body.as_bytes());
    let (status, deal) = post(
        "/api/v1/deals",
        format!("{{\"title\":\"Поставка\",\"partner\":\"{p}\",\"kind\":\"b2b_sale\",\"amount\":{{\"amount\":\"150000.00\",\"currency\":\"RUB\"}},\"source\":\"website\",\"expected_close\":\"2026-06-30\"}}"),
    );
    assert_eq!(status, 201, "{deal}");
    assert_eq!((deal["stage"].as_str(), deal["status"].as_str()), (Some("qualification"), Some("in_progress")));
    let id = deal["id"].as_str().unwrap().to_string();
    let act = |action: &str, version: &Value, extra: &str| {
        post(&format!("/api/v1/deals/{id}/{action}"), format!("{{\"version\":{version}{extra}}}"))
    };
    let (status, moved) = act("move", &deal["version"], ",\"stage\":\"needs_analysis\"");
    assert_eq!((status, moved["stage"].as_str()), (200, Some("needs_analysis")), "{moved}");
    // The version read before the move is stale now.
    let (status, body) = act("move", &deal["version"], ",\"stage\":\"proposal\"");
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    // Leaving the stage forward needs its checklist: the engine says so.
    let (status, body) = act("move", &moved["version"], ",\"stage\":\"proposal\"");
    assert_eq!((status, body["field"].as_str()), (422, Some("checklist")), "{body}");
    let (status, checked) = act("check", &moved["version"], ",\"item\":\"needs_recorded\"");
    assert_eq!(status, 200, "{checked}");
    let (status, proposal) = act("move", &checked["version"], ",\"stage\":\"proposal\"");
    assert_eq!(status, 200, "{proposal}");
    // The shipped Rhai guard: no leaving the proposal without a quote.
    let (status, body) = act("move", &proposal["version"], ",\"stage\":\"negotiation\"");
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (422, Some("rejected"), Some("documents")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("without a quote"), "{body}");
    // With a quote the guard lets the deal go on.
    let quote = format!(
        r#"{{"kind":"quote","number":"КП-17","date":"2026-03-01","partner":"{p}","deal":"{id}","amount":{{"amount":"150000.00","currency":"RUB"}},"state":"issued"}}"#
    );
    let (status, doc) = post("/api/v1/documents", quote);
    assert_eq!(status, 201, "{doc}");
    let (status, negotiation) = act("move", &proposal["version"], ",\"stage\":\"negotiation\"");
    assert_eq!((status, negotiation["stage"].as_str()), (200, Some("negotiation")), "{negotiation}");
    let (status, lost) = act("lose", &negotiation["version"], ",\"reason\":\"price\"");
    assert_eq!((status, lost["status"].as_str()), (200, Some("lost")), "{lost}");
    // The list pages by cursor and filters; the dossier sums the partner up.
    for i in 0..3 {
        let (status, _) = post(
            "/api/v1/deals",
            format!("{{\"title\":\"Ещё {i}\",\"partner\":\"{p}\",\"kind\":\"b2b_sale\",\"amount\":{{\"amount\":\"10\",\"currency\":\"RUB\"}}}}"),
        );
        assert_eq!(status, 201);
    }
    let (status, page) = server.request("GET", "/api/v1/deals?limit=2", Some(&manager));
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 2), "{page}");
    let next = page["next"].as_str().unwrap().to_string();
    let (_, rest) = server.request("GET", &format!("/api/v1/deals?limit=2&after={next}"), Some(&manager));
    assert_eq!(rest["items"].as_array().unwrap().len(), 2, "{rest}");
    assert!(rest["next"].is_null());
    let (_, lost_only) = server.request("GET", "/api/v1/deals?status=lost", Some(&manager));
    assert_eq!(lost_only["items"].as_array().unwrap().len(), 1);
    let (status, body) = server.request("GET", "/api/v1/deals?status=maybe", Some(&manager));
    assert_eq!((status, body["field"].as_str()), (400, Some("status")));
    let (status, dossier) = server.request("GET", &format!("/api/v1/partners/{p}/dossier"), Some(&manager));
    assert_eq!(status, 200, "{dossier}");
    assert_eq!(dossier["partner"]["name"], "Альфа");
    // Reports are for heads, admins and viewers; a manager is refused.
    let (status, _) = server.request("GET", "/api/v1/reports/losses_by_competitor", Some(&manager));
    assert_eq!(status, 403);
    server.stop();
    site.with(|inst| {
        inst.store().transact(None, |tx| tx.create(User::new("watcher", "Наблюдатель", Role::Viewer))).unwrap()
    });
    let viewer = ok(&["token", "create", site.dir(), "--user", "watcher", "--role", "viewer"]).trim().to_string();
    let server = Served::start(&site);
    let (status, table) = server.request("GET", "/api/v1/reports/losses_by_competitor?top=5", Some(&viewer));
    assert_eq!(status, 200, "{table}");
    assert_eq!(table["rows"][0], serde_json::json!(["(none named)", "price", 1, "150000"]));
    let (status, body) = server.request("GET", "/api/v1/reports/nope", Some(&viewer));
    assert_eq!((status, body["code"].as_str()), (404, Some("report_failed")), "{body}");
    server.stop();
}

#[test]
fn a_client_that_never_finishes_its_headers_is_dropped_and_others_are_served() {
    use std::io::{Read as _, Write as _};
    let site = Site::new(|c| c);
    let server = Served::start(&site);
    let mut slow = std::net::TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: crmkit\r\nX-Slow: ").unwrap();
    // Others go on being served meanwhile.
    for _ in 0..5 {
        assert_eq!(server.request("GET", "/health", None).0, 200);
    }
    // The header timeout (10 s) closes the slow connection.
    slow.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(25), "the slow client was kept {waited:?}");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(server.request("GET", "/health", None).0, 200);
    server.stop();
}

#[test]
fn a_flood_of_headers_and_a_10_mb_body_are_refused_and_the_server_goes_on() {
    use std::io::{Read as _, Write as _};
    let site = Site::new(|c| c);
    site.manager();
    let token = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let before = site.dump();
    let server = Served::start(&site);
    // Thousands of headers: refused before any handler runs.
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    let mut request = String::from("GET /health HTTP/1.1\r\nHost: crmkit\r\n");
    for i in 0..5000 {
        request.push_str(&format!("X-Flood-{i}: {}\r\n", "y".repeat(40)));
    }
    request.push_str("\r\n");
    let _ = s.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("200 OK"), "{answer}");
    // A 10 MB body: 413 from its declared length, nothing read or written.
    let body = format!(
        "{{\"kind\":\"note\",\"at\":\"2026-03-02T10:00:00Z\",\"body\":\"{}\",\"partner\":\"x\"}}",
        "z".repeat(10 << 20)
    );
    let (status, reply) = server.send("POST", "/api/v1/interactions", &token, body.as_bytes());
    assert_eq!((status, reply["code"].as_str()), (413, Some("too_large")));
    assert_eq!(server.request("GET", "/health", None).0, 200);
    server.stop();
    assert_eq!(before, site.dump());
}

/// The people of a small sales office, with a token each: an admin, the head of the north
/// department, a north manager, a south manager and a viewer.
pub(crate) struct Office {
    pub(crate) site: Site,
    tokens: std::collections::BTreeMap<&'static str, String>,
    /// The north manager's and the south manager's user ids.
    pub(crate) north: crmkit_core::id::UserId,
    pub(crate) south: crmkit_core::id::UserId,
}

impl Office {
    pub(crate) fn new() -> Office {
        Office::with_config(|c| c)
    }

    /// The office with its config text edited by `edit`.
    pub(crate) fn with_config(edit: impl FnOnce(String) -> String) -> Office {
        let site = Site::new(edit);
        let people = [
            ("boss", Role::Admin, None),
            ("head", Role::Head, Some("north")),
            ("north", Role::Manager, Some("north")),
            ("south", Role::Manager, Some("south")),
            ("watcher", Role::Viewer, None),
        ];
        let ids = site.with(|inst| {
            inst.store()
                .transact(None, |tx| {
                    let mut ids = Vec::new();
                    for (login, role, department) in people {
                        let mut u = User::new(login, login.to_uppercase(), role);
                        u.department = department.map(str::to_string);
                        ids.push(tx.create(u)?.id);
                    }
                    Ok(ids)
                })
                .unwrap()
        });
        let mut tokens = std::collections::BTreeMap::new();
        for (login, role, _) in people {
            let role = serde_json::to_value(role).unwrap().as_str().unwrap().to_string();
            tokens.insert(
                login,
                ok(&["token", "create", site.dir(), "--user", login, "--role", &role]).trim().to_string(),
            );
        }
        Office { site, tokens, north: ids[2], south: ids[3] }
    }

    pub(crate) fn token(&self, login: &str) -> &str {
        &self.tokens[login]
    }
}

/// One entity of each kind on the north manager's side and one on the south manager's,
/// made through the store: `(resource path, north id, south id, a harmless change)`.
pub(crate) fn two_of_everything(office: &Office) -> Vec<(&'static str, String, String, Value)> {
    use crmkit_core::model::{
        ContactLink, ContactPerson, Counterparty, CounterpartyKind, Document, DocumentKind, EntityKind, EntityRef,
        Interaction, InteractionKind, Participant, ParticipantLink, PartnerLink, Task,
    };
    use serde_json::json;
    let (north, south) = (office.north, office.south);
    let shared = office.site.partner("Общий конкурент", PartnerRole::Competitor);
    office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut sides = Vec::new();
                for (i, manager) in [north, south].into_iter().enumerate() {
                    let mut p = Partner::new(format!("Клиент {i}"), PartnerRole::Client);
                    p.manager = Some(manager);
                    let p = tx.create(p)?.id;
                    let c =
                        tx.create(Counterparty::new(CounterpartyKind::LegalEntity, format!("ООО «Сторона {i}»")))?.id;
                    let k = tx.create(ContactPerson::new(p, format!("Контакт {i}")))?.id;
                    let k2 = tx.create(ContactPerson::new(p, format!("Начальник {i}")))?.id;
                    let pl = tx.create(PartnerLink::new(p, shared, "recommended_by"))?.id;
                    let cl = tx.create(ContactLink::new(k, k2, "reports_to"))?.id;
                    let d = tx.create(new_deal(p, manager, 1000))?.id;
                    let pa = tx.create(Participant::partner(d, shared, "influencer"))?.id;
                    let pa2 = tx.create(Participant::contact(d, k, "decision_maker"))?.id;
                    let pal = tx.create(ParticipantLink::new(d, pa, pa2, "influences"))?.id;
                    let mut it = Interaction::new(InteractionKind::Call, crate::common::T0, p, "Звонок");
                    it.deal = Some(d);
                    let it = tx.create(it)?.id;
                    let mut doc = Document::new(
                        DocumentKind::Quote,
                        format!("КП-{i}"),
                        chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
                        p,
                        crmkit_core::values::Money::new(1000.into(), crmkit_core::values::Currency::RUB),
                    );
                    doc.deal = Some(d);
                    let doc = tx.create(doc)?.id;
                    let mut t = Task::new("Перезвонить", manager);
                    t.deal = Some(d);
                    let t = tx.create(t)?.id;
                    let a =
                        tx.attach(EntityRef { kind: EntityKind::Deal, id: d.0 }, "kp.pdf", "application/pdf", b"%PDF")?;
                    let january = |day| chrono::NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
                    let money = crmkit_core::values::Money::new(50_000.into(), crmkit_core::values::Currency::RUB);
                    let plan = tx.create(crmkit_core::model::Plan::new(manager, january(1), january(31), money))?.id;
                    let program = tx
                        .create(crmkit_core::model::LoyaltyProgram::bonus(
                            format!("Клуб {i}"),
                            crmkit_core::values::Currency::RUB,
                            1.into(),
                            january(1),
                        ))?
                        .id;
                    let card =
                        tx.create(crmkit_core::model::LoyaltyCard::new(format!("880{i}"), program, p, january(2)))?.id;
                    let entry = crmkit_core::process::Engine::without_hooks()
                        .correct(tx, card, 10.into(), 0.into(), "начальный остаток")?
                        .id;
                    let mut claim = crmkit_core::model::Claim::new(
                        p,
                        "quality",
                        "defect",
                        "Брак в поставке",
                        manager,
                        Some(january(10)),
                        None,
                    );
                    claim.deal = Some(d);
                    let claim = tx.create(claim)?.id;
                    sides.push(vec![
                        p.to_string(),
                        c.to_string(),
                        k.to_string(),
                        pl.to_string(),
                        cl.to_string(),
                        manager.to_string(),
                        d.to_string(),
                        pa.to_string(),
                        pal.to_string(),
                        it.to_string(),
                        doc.to_string(),
                        t.to_string(),
                        a.id.to_string(),
                        plan.to_string(),
                        program.to_string(),
                        card.to_string(),
                        entry.to_string(),
                        claim.to_string(),
                    ]);
                }
                let changes = [
                    ("partners", json!({ "comment": "изменено" })),
                    ("counterparties", json!({ "full_name": "Изменено" })),
                    ("contacts", json!({ "position": "Директор" })),
                    ("partner-links", json!({ "note": "изменено" })),
                    ("contact-links", json!({ "note": "изменено" })),
                    ("users", json!({ "email": "someone@example.com" })),
                    ("deals", json!({ "comment": "изменено" })),
                    ("participants", json!({ "note": "изменено" })),
                    ("participant-links", json!({ "note": "изменено" })),
                    ("interactions", json!({ "body": "изменено" })),
                    ("documents", json!({ "comment": "изменено" })),
                    ("tasks", json!({ "description": "изменено" })),
                    ("attachments", json!({ "name": "kp-v2.pdf" })),
                    ("plans", json!({ "comment": "изменено" })),
                    ("loyalty-programs", json!({ "comment": "изменено" })),
                    ("loyalty-cards", json!({ "comment": "изменено" })),
                    ("loyalty-entries", json!({ "comment": "изменено" })),
                    ("claims", json!({ "description": "изменено" })),
                ];
                Ok(changes
                    .into_iter()
                    .enumerate()
                    .map(|(n, (path, change))| (path, sides[0][n].clone(), sides[1][n].clone(), change))
                    .collect())
            })
            .unwrap()
    })
}

/// The id of the north (or south) side's entity of `path` among [`two_of_everything`]'s.
pub(crate) fn side(all: &[(&'static str, String, String, Value)], path: &str, north: bool) -> String {
    let (_, n, s, _) = all.iter().find(|(p, ..)| *p == path).unwrap();
    if north {
        n.clone()
    } else {
        s.clone()
    }
}

/// What a role may do to one side's entity of a resource: the status of a read and of a
/// change. The rules: admins everything; heads their department (the north); managers
/// their own (the north manager); viewers read everything; users and counterparties are
/// reference data every role reads, and so are loyalty programs; only admins change users and
/// programs; a manager reads but does not set their own plan; nobody changes a ledger entry.
fn expected(login: &str, resource: &str, north_side: bool) -> (u16, u16) {
    let reference = matches!(resource, "users" | "counterparties" | "loyalty-programs");
    let read = match login {
        "boss" | "watcher" => 200,
        _ if north_side || reference => 200,
        _ => 404,
    };
    let write = match login {
        "watcher" => 403,
        // Every field of an entry is the server's: the body is refused before the scope.
        _ if resource == "loyalty-entries" => 422,
        _ if read == 404 => 404,
        "boss" => 200,
        _ if matches!(resource, "users" | "loyalty-programs") => 403,
        "north" if resource == "plans" => 403,
        _ => 200,
    };
    (read, write)
}

#[test]
fn every_role_on_every_resource_reads_and_writes_what_its_scope_allows() {
    let office = Office::new();
    let resources = two_of_everything(&office);
    let logins = ["boss", "head", "north", "watcher"];
    let before = office.site.dump();
    let server = Served::start(&office.site);
    // Reads, lists and every refused change; the database must come out as it went in.
    let mut allowed = Vec::new();
    for (resource, north_id, south_id, change) in &resources {
        for login in logins {
            let token = office.token(login);
            let mut listed = Vec::new();
            let mut after = String::new();
            loop {
                let (status, page) =
                    server.request("GET", &format!("/api/v1/{resource}?limit=500{after}"), Some(token));
                assert_eq!(status, 200, "{login} lists {resource}: {page}");
                listed.extend(page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()));
                match page["next"].as_str() {
                    Some(n) => after = format!("&after={n}"),
                    None => break,
                }
            }
            for (id, north_side) in [(north_id, true), (south_id, false)] {
                let (read, write) = expected(login, resource, north_side);
                let got = server.exchange("GET", &format!("/api/v1/{resource}/{id}"), Some(token), &[], None);
                assert_eq!(got.status, read, "{login} reads {resource} {id} ({}): {}", north_side, got.json());
                assert_eq!(listed.contains(id), read == 200, "{login} lists {resource}: {listed:?} and {id}");
                if read == 200 {
                    let version = got.json()["version"].as_u64().unwrap();
                    assert_eq!(got.header("etag"), Some(format!("\"{version}\"").as_str()));
                }
                if write == 200 {
                    allowed.push((login, *resource, id.clone(), change.clone()));
                    continue;
                }
                let mut body = change.clone();
                body["version"] = 1.into();
                let (status, answer) =
                    server.send("PATCH", &format!("/api/v1/{resource}/{id}"), token, body.to_string().as_bytes());
                assert_eq!(status, write, "{login} changes {resource} {id}: {answer}");
            }
        }
    }
    // Creating out of scope: a viewer anything, a manager a partner or a deal of another.
    let watcher = office.token("watcher");
    let (status, _) = server.send("POST", "/api/v1/counterparties", watcher, br#"{"kind":"legal_entity","name":"X"}"#);
    assert_eq!(status, 403);
    let south = office.south.to_string();
    let partner = format!(r#"{{"name":"Чужой","roles":["client"],"manager":"{south}"}}"#);
    let (status, answer) = server.send("POST", "/api/v1/partners", office.token("north"), partner.as_bytes());
    assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")), "{answer}");
    let (status, _) =
        server.send("POST", "/api/v1/users", office.token("head"), br#"{"login":"x1","name":"X","roles":["manager"]}"#);
    assert_eq!(status, 403);
    server.stop();
    assert!(office.site.dump() == before, "a refused request wrote something");

    // Every change the rules allow goes through, with the version read.
    let server = Served::start(&office.site);
    for (login, resource, id, change) in allowed {
        let token = office.token(login);
        let got = server.exchange("GET", &format!("/api/v1/{resource}/{id}"), Some(token), &[], None);
        let etag = got.header("etag").unwrap().to_string();
        let body = change.to_string();
        let answer = server.exchange(
            "PATCH",
            &format!("/api/v1/{resource}/{id}"),
            Some(token),
            &[("If-Match", &etag), ("Content-Type", "application/merge-patch+json")],
            Some(body.as_bytes()),
        );
        assert_eq!(answer.status, 200, "{login} changes {resource} {id}: {}", answer.json());
        for (field, value) in change.as_object().unwrap() {
            assert_eq!(&answer.json()[field], value, "{login} changes {resource}");
        }
    }
    server.stop();
    ok(&["check", office.site.dir()]);
}

#[test]
fn an_entity_is_created_changed_by_version_and_deleted_and_bad_changes_write_nothing() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let north = office.token("north");
    let me = office.north.to_string();
    // Created with the caller as manager when the body names none of its own.
    let (status, p) = server.send(
        "POST",
        "/api/v1/partners",
        north,
        format!(
            r#"{{"name":"Ромашка","roles":["client"],"manager":"{me}","custom":{{"employees":{{"number":"120"}}}}}}"#
        )
        .as_bytes(),
    );
    assert_eq!(status, 201, "{p}");
    assert_eq!((p["version"].as_u64(), p["created_by"].as_str()), (Some(1), Some(me.as_str())));
    let id = p["id"].as_str().unwrap().to_string();
    let url = format!("/api/v1/partners/{id}");
    // Bad changes: each refused with what and where, nothing written.
    /// What is wrong, extra headers, the body, and the status, code and field answered.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u16, &'a str, Option<&'a str>);
    let cases: [Case; 9] = [
        ("stale version", &[], r#"{"version":7,"comment":"x"}"#, 409, "conflict", None),
        ("stale If-Match", &[("If-Match", "\"0\"")], r#"{"comment":"x"}"#, 409, "conflict", None),
        ("no version", &[], r#"{"comment":"x"}"#, 400, "bad_version", Some("version")),
        ("unknown field", &[], r#"{"version":1,"comennt":"x"}"#, 422, "invalid", Some("comennt")),
        (
            "server field",
            &[],
            r#"{"version":1,"created_at":"2020-01-01T00:00:00Z"}"#,
            422,
            "invalid",
            Some("created_at"),
        ),
        ("wrong type", &[], r#"{"version":1,"roles":"client"}"#, 422, "invalid", Some("roles")),
        ("a rule", &[], r#"{"version":1,"name":"  "}"#, 422, "invalid", Some("name")),
        (
            "custom field type",
            &[],
            r#"{"version":1,"custom":{"employees":{"string":"many"}}}"#,
            422,
            "invalid",
            Some("custom.employees"),
        ),
        ("not an object", &[], r#"[1,2]"#, 422, "invalid", None),
    ];
    for (what, headers, body, status, code, field) in cases {
        let a = server.exchange("PATCH", &url, Some(north), headers, Some(body.as_bytes()));
        let j = a.json();
        assert_eq!((a.status, j["code"].as_str()), (status, Some(code)), "{what}: {j}");
        if field.is_some() {
            assert_eq!(j["field"].as_str(), field, "{what}: {j}");
        }
    }
    let (_, now) = server.request("GET", &url, Some(north));
    assert_eq!(now["version"], 1, "a refused change wrote: {now}");
    // A merge patch: the named fields change, `null` clears, the rest stays.
    let (status, p) = server.send(
        "PATCH",
        &url,
        north,
        br#"{"version":1,"comment":"VIP","custom":{"employees":null},"segment":"A"}"#,
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (p["version"].as_u64(), p["comment"].as_str(), p["segment"].as_str()),
        (Some(2), Some("VIP"), Some("A"))
    );
    assert_eq!((p["custom"].get("employees"), p["name"].as_str()), (None, Some("Ромашка")));
    let (status, p) = server.send("PATCH", &url, north, br#"{"version":2,"segment":null}"#);
    assert_eq!((status, p["segment"].is_null(), p["version"].as_u64()), (200, true, Some(3)));
    // Lists filter by indexed fields and page with a cursor.
    for n in 0..7 {
        let body = format!(
            r#"{{"partner":"{id}","name":"Контакт {n}","emails":["c{n}@romashka.ru"],"phones":["+7 495 100-00-0{n}"]}}"#
        );
        assert_eq!(server.send("POST", "/api/v1/contacts", north, body.as_bytes()).0, 201);
    }
    let (status, page) = server.request("GET", "/api/v1/contacts?email=C3@Romashka.ru", Some(north));
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 1), "{page}");
    // By phone, written another way (the configured region reads a leading 8).
    let (status, page) = server.request("GET", "/api/v1/contacts?phone=8%20(495)%201000004", Some(north));
    assert_eq!((status, page["items"][0]["name"].as_str()), (200, Some("Контакт 4")), "{page}");
    let (status, page) = server.request("GET", "/api/v1/contacts?phone=abc", Some(north));
    assert_eq!((status, page["field"].as_str()), (400, Some("phone")), "{page}");
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/contacts?partner={id}&limit=3");
    loop {
        let (_, page) = server.request("GET", &path, Some(north));
        seen.extend(page["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/contacts?partner={id}&limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|n| format!("Контакт {n}")).collect::<Vec<_>>());
    let (status, e) = server.request("GET", "/api/v1/contacts?colour=red", Some(north));
    assert_eq!((status, e["field"].as_str()), (400, Some("colour")), "{e}");
    let (status, e) = server.request("GET", "/api/v1/contacts?partner=nonsense", Some(north));
    assert_eq!((status, e["field"].as_str()), (400, Some("partner")), "{e}");
    let (status, e) = server.request("GET", "/api/v1/contacts?limit=0", Some(north));
    assert_eq!((status, e["field"].as_str()), (400, Some("limit")), "{e}");
    // Deleting: with the version; refused while something refers to the partner.
    let (_, contacts) = server.request("GET", &format!("/api/v1/contacts?partner={id}"), Some(north));
    let contact = &contacts["items"][0];
    let curl = format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap());
    assert_eq!(server.exchange("DELETE", &curl, Some(north), &[], None).status, 400);
    assert_eq!(server.exchange("DELETE", &format!("{curl}?version=9"), Some(north), &[], None).status, 409);
    assert_eq!(server.exchange("DELETE", &curl, Some(north), &[("If-Match", "\"1\"")], None).status, 204);
    assert_eq!(server.request("GET", &curl, Some(north)).0, 404);
    let (status, e) = server.send("DELETE", &format!("{url}?version=3"), north, b"");
    assert_eq!((status, e["code"].as_str()), (409, Some("referenced")), "{e}");
    // Users and deals are not deleted; the path does not take DELETE.
    let (status, e) = server.request("DELETE", &format!("/api/v1/users/{me}"), Some(office.token("boss")));
    assert_eq!((status, e["code"].as_str()), (405, Some("method_not_allowed")), "{e}");
    // A deal through the generic create: the process engine puts it in its first stage;
    // what the engine keeps cannot be written.
    let deal = format!(
        r#"{{"title":"Поставка","partner":"{id}","kind":"b2b_sale","amount":{{"amount":"150000.00","currency":"RUB"}}}}"#
    );
    let (status, d) = server.send("POST", "/api/v1/deals", north, deal.as_bytes());
    assert_eq!(
        (status, d["manager"].as_str(), d["stage"].as_str()),
        (201, Some(me.as_str()), Some("qualification")),
        "{d}"
    );
    let durl = format!("/api/v1/deals/{}", d["id"].as_str().unwrap());
    let (status, e) = server.send("PATCH", &durl, north, br#"{"version":1,"stage":"won"}"#);
    assert_eq!((status, e["field"].as_str()), (422, Some("stage")), "{e}");
    let (status, e) = server.send("PATCH", &durl, north, br#"{"version":1,"kind":"tender"}"#);
    assert_eq!((status, e["field"].as_str()), (422, Some("kind")), "{e}");
    let (status, d) =
        server.send("PATCH", &durl, north, br#"{"version":1,"amount":{"amount":"175000.50","currency":"RUB"}}"#);
    assert_eq!((status, d["amount"]["amount"].as_str()), (200, Some("175000.50")), "{d}");
    server.stop();
    ok(&["check", office.site.dir()]);
}

#[test]
fn two_writers_of_one_deal_one_wins_the_other_gets_409_and_nothing_is_lost() {
    let office = Office::new();
    let p = office.site.partner("Альфа", PartnerRole::Client);
    let deal = office.site.deal(p, office.north, 500);
    let server = Served::start(&office.site);
    let url = format!("/api/v1/deals/{deal}");
    let (north, head) = (office.token("north"), office.token("head"));
    for round in 0..10u64 {
        let version = round + 1;
        let barrier = std::sync::Barrier::new(2);
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let writers: Vec<_> = [(north, "менеджер"), (head, "руководитель")]
                .into_iter()
                .map(|(token, who)| {
                    let (server, url, barrier) = (&server, &url, &barrier);
                    s.spawn(move || {
                        let body = format!(r#"{{"version":{version},"comment":"{who} {round}"}}"#);
                        barrier.wait();
                        server.send("PATCH", url, token, body.as_bytes())
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {answers:?}");
        let winner = &answers.iter().find(|a| a.0 == 200).unwrap().1;
        let (_, now) = server.request("GET", &url, Some(north));
        assert_eq!((now["version"].as_u64(), &now["comment"]), (Some(version + 1), &winner["comment"]));
    }
    server.stop();
}

/// Waits (up to 30 s) until the JSON log at `log` (see [`Served::start_logging`]) has a line
/// for which `seen` holds, and returns it. The server writes a line when its event happens;
/// the file is read again every few milliseconds, which paces the polling, not the test.
pub(crate) fn wait_for_log(log: &std::path::Path, seen: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        // The last line may be half written: only whole lines count.
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        if let Some(v) = whole.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| seen(v)) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "no such log line in 30 s:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Reads the `100 Continue` a server sends on a connection whose request said `Expect:
/// 100-continue` once its handler starts reading the body: the request is in flight.
fn read_continue(s: &mut std::net::TcpStream) {
    use std::io::Read as _;
    let mut got = Vec::new();
    let mut byte = [0u8];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "the connection ended: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n", "{}", String::from_utf8_lossy(&got));
}

/// Sends a request head and then `body` in pieces over a raw socket, and lets the
/// connection go without finishing when `complete` is false; the status answered, if any.
/// Raw, as a body cut off or shorter than its declared length is no request hyper sends.
fn upload_raw(addr: &str, head: &str, body: &[&[u8]], complete: bool) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    if head.contains("Expect: 100-continue") {
        // The handler is reading the body: what comes is streamed into the upload it began.
        read_continue(&mut s);
    }
    for piece in body {
        if s.write_all(piece).is_err() {
            break;
        }
    }
    if !complete {
        let _ = s.shutdown(std::net::Shutdown::Both);
        return None;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).split(' ').nth(1)?.parse().ok()
}

#[test]
fn attachments_stream_up_and_down_and_an_upload_cut_off_halfway_leaves_nothing() {
    let office = Office::new();
    let p = office.site.partner("Альфа", PartnerRole::Client);
    let (mine, theirs) = (office.site.deal(p, office.north, 100), office.site.deal(p, office.south, 200));
    let north = office.token("north").to_string();
    let uploads = office.site.dir.join("data/uploads");
    let file = crate::cli::noise(3 << 20, 7);
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let to = |deal: &DealId, name: &str| format!("/api/v1/attachments?owner_kind=deal&owner={deal}&name={name}");
    let head = |path: &str, length: Option<usize>| {
        let length =
            length.map_or("Transfer-Encoding: chunked\r\n".to_string(), |n| format!("Content-Length: {n}\r\n"));
        format!("POST {path} HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {north}\r\nContent-Type: application/pdf\r\n{length}\r\n")
    };
    // Cut off halfway, once the server is reading the body: by length, and chunked with no
    // last chunk.
    let expecting = |head: String| head.replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
    let halves: Vec<&[u8]> = file[..1 << 20].chunks(64 << 10).collect();
    upload_raw(&server.addr, &expecting(head(&to(&mine, "half.pdf"), Some(file.len()))), &halves, false);
    let chunked: Vec<Vec<u8>> = file[..1 << 20]
        .chunks(64 << 10)
        .map(|c| [format!("{:x}\r\n", c.len()).into_bytes(), c.to_vec(), b"\r\n".to_vec()].concat())
        .collect();
    let chunked: Vec<&[u8]> = chunked.iter().map(Vec::as_slice).collect();
    upload_raw(&server.addr, &expecting(head(&to(&mine, "half.pdf"), None)), &chunked, false);
    // Over the limit (25 MB): said in advance, or found out while streaming.
    let declared = upload_raw(&server.addr, &head(&to(&mine, "big.pdf"), Some(26 << 20)), &[], true);
    assert_eq!(declared, Some(413));
    let big = vec![0u8; 1 << 20];
    let mut endless: Vec<u8> = format!("{:x}\r\n", big.len()).into_bytes();
    endless.extend_from_slice(&big);
    endless.extend_from_slice(b"\r\n");
    let pieces: Vec<&[u8]> = std::iter::repeat_n(endless.as_slice(), 27).collect();
    assert_eq!(upload_raw(&server.addr, &head(&to(&mine, "big.pdf"), None), &pieces, true), Some(413));
    // Someone else's deal, a bad owner, a bad name.
    let a = server.exchange(
        "POST",
        &to(&theirs, "x.pdf"),
        Some(&north),
        &[("Content-Type", "application/pdf")],
        Some(b"%PDF"),
    );
    assert_eq!((a.status, a.json()["field"].as_str()), (404, Some("owner")));
    let a =
        server.exchange("POST", "/api/v1/attachments?owner_kind=dael&owner=1&name=x", Some(&north), &[], Some(b"x"));
    assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("owner_kind")));
    let a = server.exchange(
        "POST",
        &to(&mine, "..%2Fx.pdf"),
        Some(&north),
        &[("Content-Type", "application/pdf")],
        Some(b"%PDF"),
    );
    assert_eq!((a.status, a.json()["field"].as_str()), (422, Some("name")), "{}", a.json());
    server.stop();
    assert!(office.site.dump() == before, "a refused or broken upload wrote something");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0, "an upload left a temporary file");

    // A whole upload of 3 MB, streamed to disk as it comes, comes back byte for byte.
    let server = Served::start(&office.site);
    let path = to(&mine, "%D0%9A%D0%9F%20v1.pdf");
    let a = server.exchange("POST", &path, Some(&north), &[("Content-Type", "application/pdf")], Some(&file));
    assert_eq!(a.status, 201, "{}", a.text());
    let (_, list) = server.request("GET", &format!("/api/v1/attachments?owner={mine}"), Some(&north));
    let a = &list["items"][0];
    assert_eq!((a["name"].as_str(), a["size"].as_u64()), (Some("КП v1.pdf"), Some(file.len() as u64)), "{list}");
    let got = server.exchange(
        "GET",
        &format!("/api/v1/attachments/{}/content", a["id"].as_str().unwrap()),
        Some(&north),
        &[],
        None,
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/pdf"));
    assert_eq!(got.header("content-disposition"), Some("attachment; filename*=UTF-8''%D0%9A%D0%9F%20v1.pdf"));
    assert!(got.body == file, "the download differs from the upload");
    // Others do not see it; its owner renames and deletes it.
    let south = office.token("south");
    let url = format!("/api/v1/attachments/{}", a["id"].as_str().unwrap());
    assert_eq!(server.exchange("GET", &format!("{url}/content"), Some(south), &[], None).status, 404);
    let (status, renamed) = server.send("PATCH", &url, &north, br#"{"version":1,"name":"offer.pdf"}"#);
    assert_eq!((status, renamed["name"].as_str()), (200, Some("offer.pdf")));
    let (status, e) = server.send("PATCH", &url, &north, br#"{"version":2,"size":1}"#);
    assert_eq!((status, e["field"].as_str()), (422, Some("size")));
    assert_eq!(server.exchange("DELETE", &url, Some(&north), &[("If-Match", "\"2\"")], None).status, 204);
    server.stop();
    ok(&["check", office.site.dir()]);
}

#[test]
fn tasks_mine_and_overdue_by_role_and_completed_with_their_version() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let (north, south, head) = (office.token("north"), office.token("south"), office.token("head"));
    let (status, t) =
        server.send("POST", "/api/v1/tasks", north, br#"{"title":"Call back","due":"2020-01-10T09:00:00Z"}"#);
    assert_eq!((status, t["executor"].as_str()), (201, Some(office.north.to_string().as_str())), "{t}");
    let (status, e) = server.send("POST", "/api/v1/tasks", north, br#"{"title":"x","status":"done"}"#);
    assert_eq!((status, e["field"].as_str()), (422, Some("status")));
    let (status, _) = server.send("POST", "/api/v1/tasks", south, br#"{"title":"Later","due":"2099-01-01T00:00:00Z"}"#);
    assert_eq!(status, 201);
    let id = t["id"].as_str().unwrap();
    let ids = |path: &str, token: &str| -> Vec<String> {
        let (status, page) = server.request("GET", path, Some(token));
        assert_eq!(status, 200, "{path}: {page}");
        page["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids("/api/v1/tasks/mine", north), [id]);
    assert_eq!(ids("/api/v1/tasks/overdue", north), [id]);
    assert_eq!(ids("/api/v1/tasks/overdue", head), [id]);
    assert!(ids("/api/v1/tasks/overdue", south).is_empty());
    assert_eq!(ids("/api/v1/tasks/mine", south).len(), 1);
    let (status, e) = server.request("GET", "/api/v1/tasks/mine?status=finished", Some(north));
    assert_eq!((status, e["field"].as_str()), (400, Some("status")));
    // Completing: with the version; not someone else's out of scope; not twice.
    let done = format!("/api/v1/tasks/{id}/complete");
    assert_eq!(server.send("POST", &done, north, br#"{"version":5}"#).0, 409);
    assert_eq!(server.send("POST", &done, south, br#"{"version":1}"#).0, 404);
    assert_eq!(server.send("POST", &format!("/api/v1/tasks/{id}/finish"), north, br#"{"version":1}"#).0, 404);
    let (status, t) = server.send("POST", &done, north, br#"{"version":1}"#);
    assert_eq!(
        (status, t["status"].as_str(), t["finished_by"].as_str()),
        (200, Some("done"), Some(office.north.to_string().as_str()))
    );
    assert_eq!(server.send("POST", &done, north, br#"{"version":2}"#).0, 422);
    assert!(ids("/api/v1/tasks/mine", north).is_empty());
    assert_eq!(ids("/api/v1/tasks/mine?status=done", north), [id]);
    server.stop();
}

#[test]
fn an_import_upload_answers_the_per_row_report_and_an_atomic_one_writes_all_or_nothing() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let csv = |body: &str| -> (u16, Value) {
        let a = server.exchange(
            "POST",
            "/api/v1/import/partners",
            Some(boss),
            &[("Content-Type", "text/csv")],
            Some(body.as_bytes()),
        );
        (a.status, a.json())
    };
    let good_and_bad = "key,name,roles\nP1,Альфа,client\nP2,,client\nP3,Гамма,client; supplier\n";
    // Atomic and dry runs write nothing.
    let (status, r) = server
        .exchange(
            "POST",
            "/api/v1/import/partners?atomic=true",
            Some(boss),
            &[("Content-Type", "text/csv")],
            Some(good_and_bad.as_bytes()),
        )
        .pipe(|a| (a.status, a.json()));
    assert_eq!((status, r["written"].as_bool(), r["failed"].as_u64()), (422, Some(false), Some(1)), "{r}");
    let (status, r) = server
        .exchange(
            "POST",
            "/api/v1/import/partners?dry_run",
            Some(boss),
            &[("Content-Type", "text/csv")],
            Some(good_and_bad.as_bytes()),
        )
        .pipe(|a| (a.status, a.json()));
    assert_eq!((status, r["created"].as_u64(), r["written"].as_bool()), (200, Some(2), Some(false)), "{r}");
    let (_, list) = server.request("GET", "/api/v1/partners", Some(boss));
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // A plain run: good rows in, the bad one reported with its row, line and field.
    let (status, r) = csv(good_and_bad);
    assert_eq!((status, r["created"].as_u64(), r["failed"].as_u64()), (200, Some(2), Some(1)), "{r}");
    let e = &r["errors"][0];
    assert_eq!(
        (e["row"].as_u64(), e["line"].as_u64(), e["key"].as_str(), e["field"].as_str()),
        (Some(2), Some(3), Some("P2"), Some("name")),
        "{r}"
    );
    // Again: nothing new.
    let (_, r) = csv("key,name,roles\nP1,Альфа,client\n");
    assert_eq!((r["created"].as_u64(), r["unchanged"].as_u64()), (Some(0), Some(1)), "{r}");
    // Refused: a file naming files on the server's disk, an unknown entity, no format, a manager.
    let (_, r) = server
        .exchange(
            "POST",
            "/api/v1/import/interactions",
            Some(boss),
            &[("Content-Type", "text/csv")],
            Some(b"key,kind,at,subject,partner,attachments\nI1,note,2026-03-01T10:00:00Z,x,P1,/etc/passwd\n"),
        )
        .pipe(|a| (a.status, a.json()));
    assert_eq!((r["failed"].as_u64(), r["errors"][0]["field"].as_str()), (Some(1), Some("attachments")), "{r}");
    let a =
        server.exchange("POST", "/api/v1/import/widgets", Some(boss), &[("Content-Type", "text/csv")], Some(b"a\n1\n"));
    assert_eq!(a.status, 404);
    let a = server.exchange(
        "POST",
        "/api/v1/import/partners",
        Some(boss),
        &[("Content-Type", "application/pdf")],
        Some(b"a\n1\n"),
    );
    assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("format")));
    let a = server.exchange(
        "POST",
        "/api/v1/import/partners",
        Some(office.token("north")),
        &[("Content-Type", "text/csv")],
        Some(b"a\n1\n"),
    );
    assert_eq!(a.status, 403);
    // An atomic run holds the one write transaction throughout: over the API it is kept small.
    let head = format!("POST /api/v1/import/partners?atomic HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {boss}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n", 17 << 20);
    assert_eq!(upload_raw(&server.addr, &head, &[], true), Some(413));
    let (_, list) = server.request("GET", "/api/v1/partners", Some(boss));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    server.stop();
    ok(&["check", office.site.dir()]);
}

/// `x.pipe(f)`: `f(x)`, to keep a long call readable.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn admins_see_the_scripts_state_and_reload_them() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let (status, s) = server.request("GET", "/api/v1/scripts", Some(boss));
    assert_eq!(status, 200);
    let guards = s["scripts"].as_array().unwrap().iter().find(|f| f["file"] == "stages/guards.rhai").unwrap().clone();
    assert_eq!(
        (guards["error"].is_null(), guards["functions"][0].as_str()),
        (true, Some("quote_before_leaving_proposal/1")),
        "{s}"
    );
    assert!(s["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["handler"] == "stages/guards.rhai::quote_before_leaving_proposal"));
    assert_eq!(server.request("GET", "/api/v1/scripts", Some(office.token("head"))).0, 403);
    assert_eq!(server.send("POST", "/api/v1/scripts/reload", office.token("north"), b"").0, 403);
    // A broken edit: reported with file and line; the last good version stays in use.
    let path = office.site.dir.join("scripts/stages/guards.rhai");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, "fn quote_before_leaving_proposal(ctx) {\n    let t = ;\n}\n").unwrap();
    let (status, r) = server.send("POST", "/api/v1/scripts/reload", boss, b"");
    assert_eq!(status, 422, "{r}");
    assert!(r["errors"][0].as_str().unwrap().contains("scripts/stages/guards.rhai:2:13"), "{r}");
    let guards = r["scripts"].as_array().unwrap().iter().find(|f| f["file"] == "stages/guards.rhai").unwrap().clone();
    assert_eq!((guards["in_use"].as_bool(), guards["error"].is_string()), (Some(true), true), "{r}");
    std::fs::write(&path, good).unwrap();
    let (status, r) = server.send("POST", "/api/v1/scripts/reload", boss, b"");
    assert_eq!((status, r["errors"].as_array().unwrap().len()), (200, 0), "{r}");
    server.stop();
}

#[test]
fn admins_issue_and_revoke_tokens_through_the_api_and_both_take_effect_at_once() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let (status, t) = server.send("POST", "/api/v1/tokens", boss, br#"{"login":"north","role":"manager"}"#);
    assert_eq!((status, t["login"].as_str(), t["role"].as_str()), (201, Some("north"), Some("manager")), "{t}");
    let secret = t["token"].as_str().unwrap().to_string();
    let id = t["id"].as_str().unwrap().to_string();
    let (status, me) = server.request("GET", "/api/v1/me", Some(&secret));
    assert_eq!((status, me["login"].as_str()), (200, Some("north")));
    // The list names tokens by id and never shows a secret or a hash.
    let (_, list) = server.request("GET", "/api/v1/tokens", Some(boss));
    assert_eq!(list["items"].as_array().unwrap().len(), 6);
    assert!(!list.to_string().contains(&secret) && !list.to_string().contains("hash"), "{list}");
    // Refused: a role the user lacks, an unknown login, a non-admin, an unknown id.
    let (status, e) = server.send("POST", "/api/v1/tokens", boss, br#"{"login":"north","role":"admin"}"#);
    assert_eq!((status, e["field"].as_str()), (422, Some("role")));
    let (status, e) = server.send("POST", "/api/v1/tokens", boss, br#"{"login":"nobody","role":"viewer"}"#);
    assert_eq!((status, e["field"].as_str()), (422, Some("login")));
    assert_eq!(server.request("GET", "/api/v1/tokens", Some(office.token("head"))).0, 403);
    assert_eq!(server.request("DELETE", "/api/v1/tokens/0123456789ab", Some(boss)).0, 404);
    // Revoked: refused from the next request on, and after a restart.
    let (status, r) = server.request("DELETE", &format!("/api/v1/tokens/{id}"), Some(boss));
    assert_eq!((status, r["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(server.request("GET", "/api/v1/me", Some(&secret)).0, 401);
    // A role taken from its user takes the user's token for that role with it.
    let head = office.token("head");
    let (_, users) = server.request("GET", "/api/v1/users?login=head", Some(boss));
    let (user, version) = (users["items"][0]["id"].as_str().unwrap(), users["items"][0]["version"].as_u64().unwrap());
    let change = format!(r#"{{"version":{version},"roles":["manager"]}}"#);
    assert_eq!(server.send("PATCH", &format!("/api/v1/users/{user}"), boss, change.as_bytes()).0, 200);
    let (status, e) = server.request("GET", "/api/v1/me", Some(head));
    assert_eq!((status, e["code"].as_str()), (401, Some("unauthorized")));
    server.stop();
    let server = Served::start(&office.site);
    assert_eq!(server.request("GET", "/api/v1/me", Some(&secret)).0, 401);
    assert_eq!(server.request("GET", "/api/v1/me", Some(office.token("north"))).0, 200);
    server.stop();
}

#[test]
fn a_managed_deal_moves_through_the_api_as_its_tasks_are_completed() {
    // A consultant's guard on the tender: the bid goes out only with a quote.
    let office = Office::with_config(|c| {
        c + "\n[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"stages/bid.rhai::bid_needs_a_quote\"\nkinds = [\"tender\"]\n"
    });
    std::fs::write(
        office.site.dir.join("scripts/stages/bid.rhai"),
        r#"
fn bid_needs_a_quote(ctx) {
    let t = ctx.transition;
    if t == () || t.from_stage != "bid" { return true; }
    for doc in documents(ctx.after) {
        if doc.kind == "quote" { return true; }
    }
    #{ reject: "the bid goes out with a quote: add it first", field: "documents" }
}
"#,
    )
    .unwrap();
    let p = office.site.partner("Заказчик", PartnerRole::Client);
    let server = Served::start(&office.site);
    let (north, head) = (office.token("north"), office.token("head"));
    let body = format!(
        r#"{{"title":"Тендер на поставку","partner":"{p}","kind":"tender","amount":{{"amount":"900000","currency":"RUB"}}}}"#
    );
    let (status, deal) = server.send("POST", "/api/v1/deals", north, body.as_bytes());
    assert_eq!((status, deal["stage"].as_str()), (201, Some("announcement")), "{deal}");
    let id = deal["id"].as_str().unwrap().to_string();
    // A managed deal does not move by hand.
    let (status, e) =
        server.send("POST", &format!("/api/v1/deals/{id}/move"), north, br#"{"version":1,"stage":"documentation"}"#);
    assert_eq!(status, 422, "{e}");
    let open_task = |token: &str| -> Value {
        let (_, tasks) = server.request("GET", &format!("/api/v1/tasks?deal={id}"), Some(token));
        tasks["items"].as_array().unwrap().iter().find(|t| t["status"] == "open").cloned().unwrap_or(Value::Null)
    };
    let complete = |token: &str, task: &Value| {
        let url = format!("/api/v1/tasks/{}/complete", task["id"].as_str().unwrap());
        server.exchange("POST", &url, Some(token), &[("If-Match", &format!("\"{}\"", task["version"]))], Some(b"{}"))
    };
    let stage = || server.request("GET", &format!("/api/v1/deals/{id}"), Some(north)).1;
    let t = open_task(north);
    assert_eq!(t["title"], "Study the tender documentation");
    assert_eq!(complete(north, &t).status, 200);
    assert_eq!(stage()["stage"], "documentation");
    // The next stage's task done, the deal waits for the tender number the stage requires,
    // and moves on once a change supplies it.
    assert_eq!(complete(north, &open_task(north)).status, 200);
    let d = stage();
    assert_eq!(d["stage"], "documentation");
    let change =
        format!(r#"{{"version":{},"custom":{{"tender_number":{{"string":"0373100000126000017"}}}}}}"#, d["version"]);
    assert_eq!(server.send("PATCH", &format!("/api/v1/deals/{id}"), north, change.as_bytes()).0, 200);
    // Under 5,000,000 the route skips approval; the bid task goes to the least busy
    // manager, chosen by the shipped script.
    assert_eq!(stage()["stage"], "bid");
    let t = open_task(head);
    assert_eq!(
        (t["title"].as_str(), t["executor"].as_str()),
        (Some("Submit the bid on the tender platform"), Some(office.north.to_string().as_str()))
    );
    // The guard refuses the step the completed task would make, and nothing is written.
    let refused = complete(north, &t);
    assert_eq!(
        (refused.status, refused.json()["code"].as_str(), refused.json()["field"].as_str()),
        (422, Some("rejected"), Some("documents")),
        "{}",
        refused.json()
    );
    assert_eq!((stage()["stage"].as_str(), open_task(north)["id"].as_str()), (Some("bid"), t["id"].as_str()));
    let quote = format!(
        r#"{{"kind":"quote","number":"Т-1","date":"2026-03-01","partner":"{p}","deal":"{id}","amount":{{"amount":"900000","currency":"RUB"}},"state":"issued"}}"#
    );
    assert_eq!(server.send("POST", "/api/v1/documents", north, quote.as_bytes()).0, 201);
    assert_eq!(complete(north, &t).status, 200);
    assert_eq!(stage()["stage"], "award");
    let (status, file) = server.request("GET", &format!("/api/v1/deals/{id}/file?kinds=step"), Some(head));
    assert_eq!(status, 200, "{file}");
    let stages: Vec<&str> =
        file["items"].as_array().unwrap().iter().filter_map(|i| i["item"]["to_stage"].as_str()).collect();
    assert_eq!(stages, ["announcement", "documentation", "bid", "award"], "{file}");
    assert_eq!(server.request("GET", &format!("/api/v1/deals/{id}/file"), Some(office.token("south"))).0, 404);
    server.stop();
}

#[test]
fn a_stopping_server_finishes_the_requests_in_flight() {
    use std::io::{Read as _, Write as _};
    let office = Office::new();
    let p = office.site.partner("Альфа", PartnerRole::Client);
    let mut server = Served::start(&office.site);
    let north = office.token("north");
    // Eight writes whose bodies are half sent when the server is told to stop: each in its
    // handler, reading the body (the server has said 100 Continue), before the signal.
    let body = format!(r#"{{"kind":"note","at":"2026-03-02T10:00:00Z","subject":"В полёте","partner":"{p}"}}"#);
    let mut streams: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
            write!(s, "POST /api/v1/interactions HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {north}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", body.len()).unwrap();
            read_continue(&mut s);
            s.write_all(&body.as_bytes()[..10]).unwrap();
            s
        })
        .collect();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    server.wait_for_said("shutting down");
    // The server is stopping. Its connections are told so a moment later; the pause lets that
    // happen first, so that a stop that dropped requests in flight would be caught here — the
    // requests must be answered whether or not it has happened yet.
    std::thread::sleep(std::time::Duration::from_millis(100));
    for s in &mut streams {
        s.write_all(&body.as_bytes()[10..]).unwrap();
    }
    for s in &mut streams {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert_eq!(Answer::parse(&raw).status, 201, "{}", String::from_utf8_lossy(&raw));
    }
    let said = server.stop_after_signal();
    assert!(said.contains("stopped; the database is closed"), "{said}");
    let notes = office.site.with(|inst| {
        let mut n = 0;
        inst.store()
            .read()
            .unwrap()
            .for_each::<crmkit_core::model::Interaction>(|i| {
                n += usize::from(i.subject == "В полёте");
                true
            })
            .unwrap();
        n
    });
    assert_eq!(notes, 8);
    ok(&["check", office.site.dir()]);
}

#[test]
fn a_client_that_stalls_in_its_body_gets_408_and_nothing_is_written() {
    use std::io::{Read as _, Write as _};
    let office = Office::new();
    let p = office.site.partner("Альфа", PartnerRole::Client);
    let deal = office.site.deal(p, office.north, 100);
    let north = office.token("north");
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let stall = |head: String, part: &[u8]| {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(part).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        s
    };
    let json = stall(
        format!("POST /api/v1/interactions HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {north}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"),
        br#"{"kind":"note","#,
    );
    let upload = stall(
        format!("POST /api/v1/attachments?owner_kind=deal&owner={deal}&name=a.pdf HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {north}\r\nContent-Type: application/pdf\r\nContent-Length: 300000\r\n\r\n"),
        &[7u8; 100_000],
    );
    // Others are served while the two wait.
    for _ in 0..5 {
        assert_eq!(server.request("GET", "/api/v1/me", Some(north)).0, 200);
    }
    let started = std::time::Instant::now();
    for mut s in [json, upload] {
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        assert_eq!(Answer::parse(&raw).status, 408, "{}", String::from_utf8_lossy(&raw));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    server.stop();
    assert!(office.site.dump() == before, "a stalled request wrote something");
}

#[test]
fn nothing_points_into_anothers_scope_and_nothing_tells_which_ids_exist() {
    use crmkit_core::model::Task;
    let office = Office::new();
    let all = two_of_everything(&office);
    let id = |path: &str, north: bool| side(&all, path, north);
    let (p_north, p_south, d_north, d_south) =
        (id("partners", true), id("partners", false), id("deals", true), id("deals", false));
    // A task of the south manager's on the north manager's deal (as a route might assign).
    let lent = office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut t = Task::new("Помочь с расчётом", office.south);
                t.deal = Some(d_north.parse().unwrap());
                Ok(tx.create(t)?.id)
            })
            .unwrap()
    });
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let north = office.token("north");
    let nowhere = "01KJPWD6M000000000000000ZZ";
    // Pointing a new or changed entity at someone else's deal or partner reads exactly like
    // pointing it at an id that does not exist.
    let refused = |method: &str, path: &str, body: String| -> Value {
        let (status, e) = server.send(method, path, north, body.as_bytes());
        assert_eq!((status, e["code"].as_str()), (422, Some("invalid")), "{method} {path} {body}: {e}");
        e
    };
    let note = |partner: &str, deal: &str| {
        format!(
            r#"{{"kind":"note","at":"2026-03-02T10:00:00Z","subject":"Заметка","partner":"{partner}","deal":"{deal}"}}"#
        )
    };
    let hidden = refused("POST", "/api/v1/interactions", note(&p_north, &d_south));
    let absent = refused("POST", "/api/v1/interactions", note(&p_north, nowhere));
    assert_eq!((hidden["field"].as_str(), absent["field"].as_str()), (Some("deal"), Some("deal")), "{hidden} {absent}");
    assert_eq!(
        hidden["message"].as_str().unwrap().replace(&d_south, "ID"),
        absent["message"].as_str().unwrap().replace(nowhere, "ID")
    );
    assert_eq!(refused("POST", "/api/v1/interactions", note(&p_south, &d_south))["field"], "partner");
    assert_eq!(refused("POST", "/api/v1/tasks", format!(r#"{{"title":"x","deal":"{d_south}"}}"#))["field"], "deal");
    let doc = format!(
        r#"{{"kind":"quote","number":"1","date":"2026-03-01","partner":"{p_south}","amount":{{"amount":"1","currency":"RUB"}},"state":"draft"}}"#
    );
    assert_eq!(refused("POST", "/api/v1/documents", doc)["field"], "partner");
    let contact = format!(r#"{{"partner":"{p_south}","name":"Шпион"}}"#);
    assert_eq!(refused("POST", "/api/v1/contacts", contact)["field"], "partner");
    let (status, e) = server.send(
        "POST",
        "/api/v1/interactions",
        north,
        format!(
            r#"{{"kind":"note","at":"2026-03-02T10:00:00Z","subject":"Заметка","partner":"{p_north}","author":"{}"}}"#,
            office.south
        )
        .as_bytes(),
    );
    assert_eq!((status, e["field"].as_str()), (422, Some("author")), "{e}");
    let own_note = id("interactions", true);
    let moved = refused(
        "PATCH",
        &format!("/api/v1/interactions/{own_note}"),
        format!(r#"{{"version":1,"deal":"{d_south}","partner":"{p_south}"}}"#),
    );
    assert!(["deal", "partner"].contains(&moved["field"].as_str().unwrap()), "{moved}");
    // Lists: cursors are sealed; a raw id is not one.
    let (_, page) = server.request("GET", "/api/v1/deals?limit=1", Some(office.token("boss")));
    let next = page["next"].as_str().unwrap();
    assert!(!all.iter().any(|(_, n, s, _)| next.contains(n.as_str()) || next.contains(s.as_str())), "{next}");
    let (status, e) = server.request("GET", &format!("/api/v1/deals?after={d_north}"), Some(north));
    assert_eq!((status, e["field"].as_str()), (400, Some("after")));
    server.stop();
    assert!(office.site.dump() == before, "a refused request wrote something");

    let server = Served::start(&office.site);
    // The dossier of the partner both sides link to shows the north manager only the north side.
    let (_, links) = server.request("GET", &format!("/api/v1/partner-links?partner={p_north}"), Some(north));
    let competitor = links["items"][0]["to"].as_str().unwrap().to_string();
    let (status, d) = server.request("GET", &format!("/api/v1/partners/{competitor}/dossier"), Some(north));
    assert_eq!(status, 200, "{d}");
    let others: Vec<&str> =
        d["partner_links"].as_array().unwrap().iter().map(|l| l[1]["id"].as_str().unwrap()).collect();
    assert_eq!(others, [p_north.as_str()], "{d}");
    let (_, d) = server.request("GET", &format!("/api/v1/partners/{competitor}/dossier"), Some(office.token("boss")));
    assert_eq!(d["partner_links"].as_array().unwrap().len(), 2);
    // A task lent to the south manager on the north deal: its executor sees and finishes it.
    let south = office.token("south");
    let (status, t) = server.request("GET", &format!("/api/v1/tasks/{lent}"), Some(south));
    assert_eq!(status, 200, "{t}");
    let (status, t) = server.send("POST", &format!("/api/v1/tasks/{lent}/complete"), south, br#"{"version":1}"#);
    assert_eq!((status, t["status"].as_str()), (200, Some("done")), "{t}");
    // A finished task is a record: it does not change.
    let (status, e) = server.send(
        "PATCH",
        &format!("/api/v1/tasks/{lent}"),
        office.token("boss"),
        r#"{"version":2,"title":"Иначе"}"#.as_bytes(),
    );
    assert_eq!((status, e["field"].as_str()), (422, Some("title")), "{e}");
    // A manager may not finish another's task; the If-Match header alone is enough otherwise.
    let theirs = id("tasks", false);
    let (status, _) = server.send("POST", &format!("/api/v1/tasks/{theirs}/complete"), north, br#"{"version":1}"#);
    assert_eq!(status, 404);
    let own = id("tasks", true);
    let a = server.exchange(
        "POST",
        &format!("/api/v1/tasks/{own}/complete"),
        Some(north),
        &[("If-Match", "\"1\"")],
        Some(b""),
    );
    assert_eq!((a.status, a.json()["status"].as_str()), (200, Some("done")), "{}", a.json());
    let a = server.exchange(
        "POST",
        &format!("/api/v1/deals/{d_north}/hold"),
        Some(north),
        &[("If-Match", "\"1\"")],
        Some(br#"{"version":2}"#),
    );
    assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("version")));
    server.stop();
}

#[test]
fn a_stopping_server_does_not_wait_out_a_long_report() {
    let office = Office::new();
    std::fs::write(
        office.site.dir.join("scripts/reports/forever.rhai"),
        "fn report(p) { print(\"forever: running\"); let n = 0; loop { n += 1; } }",
    )
    .unwrap();
    let log = office.site.dir.with_file_name("serve.log");
    let server = Served::start_logging(&office.site, &log);
    let boss = office.token("boss").to_string();
    let addr = server.addr.clone();
    let asked =
        std::thread::spawn(move || client::exchange(&addr, "GET", "/api/v1/reports/forever", Some(&boss), &[], None));
    // The report is running when the server is told to stop.
    wait_for_log(&log, |l| l["message"] == "forever: running");
    let started = std::time::Instant::now();
    let said = server.stop();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the stop waited {:?}", started.elapsed());
    assert!(said.contains("stopped; the database is closed"), "{said}");
    let answer = asked.join().unwrap().expect("the report is answered");
    assert!(answer.text().contains("shutting down"), "{} {}", answer.status, answer.text());
    ok(&["check", office.site.dir()]);
}

#[test]
fn a_heads_report_reads_the_deals_of_their_department_only() {
    let office = Office::new();
    let all = two_of_everything(&office);
    std::fs::write(
        office.site.dir.join("scripts/reports/deals_by_manager.rhai"),
        r#"
fn report(p) {
    let counts = #{};
    each_deal(|d| {
        let login = user(d.manager).login;
        if !counts.contains(login) { counts[login] = 0; }
        counts[login] += 1;
        true
    });
    let rows = [];
    for k in counts.keys() { rows.push([k, counts[k]]); }
    rows.sort(|a, b| if a[0] < b[0] { -1 } else if a[0] > b[0] { 1 } else { 0 });
    #{ columns: [#{ name: "manager", type: "text" }, #{ name: "deals", type: "int" }], rows: rows }
}
"#,
    )
    .unwrap();
    let south_deal = side(&all, "deals", false);
    let server = Served::start(&office.site);
    let rows = |login: &str| {
        server.request("GET", "/api/v1/reports/deals_by_manager", Some(office.token(login))).1["rows"].clone()
    };
    assert_eq!(rows("boss"), serde_json::json!([["north", 1], ["south", 1]]));
    assert_eq!(rows("watcher"), serde_json::json!([["north", 1], ["south", 1]]));
    assert_eq!(rows("head"), serde_json::json!([["north", 1]]));
    assert_eq!(server.request("GET", "/api/v1/reports/deals_by_manager", Some(office.token("north"))).0, 403);
    // The list names every report and what the shipped ones take; a parameter a report does
    // not declare is refused, naming those it takes.
    let (status, list) = server.request("GET", "/api/v1/reports", Some(office.token("head")));
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["reports"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "abc-xyz",
            "bcg",
            "bottlenecks",
            "calibration",
            "claims",
            "cohorts",
            "deals_by_manager",
            "execution",
            "funnel",
            "losses_by_competitor",
            "lost",
            "loyalty",
            "managers",
            "pipeline_by_manager",
            "rfm",
            "win-probability"
        ]
    );
    assert_eq!(list["reports"][6]["parameters"], serde_json::Value::Null);
    assert_eq!(list["reports"][7]["runtime"], "native");
    assert_eq!(list["reports"][13]["runtime"], "rhai");
    assert_eq!(list["reports"][13]["parameters"][0]["name"], "from");
    assert_eq!(server.request("GET", "/api/v1/reports", Some(office.token("north"))).0, 403);
    let (status, body) =
        server.request("GET", "/api/v1/reports/pipeline_by_manager?form=2025-01", Some(office.token("head")));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["message"], "report pipeline_by_manager: it has no parameter \"form\" (it takes from, to)");
    assert_eq!(server.request("GET", "/api/v1/reports/nothing", Some(office.token("head"))).0, 404);
    // Nor does a head's report reach another department's deal by its id.
    std::fs::write(
        office.site.dir.join("scripts/reports/one_deal.rhai"),
        format!(r#"fn report(p) {{ let d = deal("{south_deal}"); #{{ columns: [#{{ name: "found", type: "int" }}], rows: [[if d == () {{ 0 }} else {{ 1 }}]] }} }}"#),
    )
    .unwrap();
    let found = |login: &str| {
        server.request("GET", "/api/v1/reports/one_deal", Some(office.token(login))).1["rows"][0][0].clone()
    };
    assert_eq!((found("boss"), found("head")), (serde_json::json!(1), serde_json::json!(0)));
    server.stop();
}

#[test]
fn custom_references_competitors_methods_and_roles_are_held_to_the_same_rules() {
    let office = Office::with_config(|c| {
        c + "\n[[custom_fields.interaction]]\nname = \"about\"\nlabel = \"About the deal\"\ntype = \"reference\"\ntarget = \"deal\"\n"
    });
    let all = two_of_everything(&office);
    let id = |path: &str, north: bool| side(&all, path, north);
    let (p_north, d_north, d_south, p_south) =
        (id("partners", true), id("deals", true), id("deals", false), id("partners", false));
    // A user who is a manager and a head, with a token for each role.
    let lead = office.site.with(|inst| {
        inst.store()
            .transact(None, |tx| {
                let mut u = User::new("lead", "LEAD", Role::Manager);
                u.roles.push(Role::Head);
                u.department = Some("north".into());
                Ok(tx.create(u)?.id)
            })
            .unwrap()
    });
    let lead_deal = office.site.deal(p_north.parse().unwrap(), lead, 300);
    let as_manager =
        ok(&["token", "create", office.site.dir(), "--user", "lead", "--role", "manager"]).trim().to_string();
    let as_head = ok(&["token", "create", office.site.dir(), "--user", "lead", "--role", "head"]).trim().to_string();
    let server = Served::start(&office.site);
    let north = office.token("north");
    // A custom reference into another's deal reads like one to nothing.
    let note = |about: &str| {
        format!(
            r#"{{"kind":"note","at":"2026-03-02T10:00:00Z","subject":"Заметка","partner":"{p_north}","custom":{{"about":{{"ref":"{about}"}}}}}}"#
        )
    };
    let (status, e) = server.send("POST", "/api/v1/interactions", north, note(&d_south).as_bytes());
    assert_eq!((status, e["field"].as_str()), (422, Some("custom.about")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("does not exist"), "{e}");
    assert_eq!(server.send("POST", "/api/v1/interactions", north, note(&d_north).as_bytes()).0, 201);
    // So does a competitor from another scope; a shared one is named freely.
    let lose =
        |competitor: &str| format!(r#"{{"version":1,"reason":"competitor_product","competitor":"{competitor}"}}"#);
    let (status, e) = server.send("POST", &format!("/api/v1/deals/{d_north}/lose"), north, lose(&p_south).as_bytes());
    assert_eq!((status, e["field"].as_str()), (422, Some("competitor")), "{e}");
    assert!(!e["message"].as_str().unwrap().contains("Клиент"), "{e}");
    let (_, links) = server.request("GET", &format!("/api/v1/partner-links?partner={p_north}"), Some(north));
    let shared = links["items"][0]["to"].as_str().unwrap().to_string();
    let (status, lost) = server.send("POST", &format!("/api/v1/deals/{d_north}/lose"), north, lose(&shared).as_bytes());
    assert_eq!((status, lost["competitor"].as_str()), (200, Some(shared.as_str())), "{lost}");
    // Methods are what HTTP says they are: `get` is not GET, and nothing breaks.
    let a = server.exchange("get", "/api/v1/me", Some(north), &[], None);
    assert_eq!((a.status, a.json()["code"].as_str()), (405, Some("method_not_allowed")));
    assert_eq!(a.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(server.request("GET", "/api/v1/me", Some(north)).0, 200);
    // A token acts in its role only: as a manager the user may not reopen; as a head, may.
    let lose_own = r#"{"version":1,"reason":"price"}"#;
    assert_eq!(
        server.send("POST", &format!("/api/v1/deals/{lead_deal}/lose"), &as_manager, lose_own.as_bytes()).0,
        200
    );
    let (status, e) =
        server.send("POST", &format!("/api/v1/deals/{lead_deal}/reopen"), &as_manager, br#"{"version":2}"#);
    assert_eq!((status, e["code"].as_str()), (403, Some("forbidden")), "{e}");
    let (status, d) = server.send("POST", &format!("/api/v1/deals/{lead_deal}/reopen"), &as_head, br#"{"version":2}"#);
    assert_eq!((status, d["status"].as_str()), (200, Some("in_progress")), "{d}");
    server.stop();
    ok(&["check", office.site.dir()]);
}

#[test]
fn json_writes_need_a_json_content_type_and_paths_are_exact() {
    let office = Office::new();
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let partner = r#"{"name":"Альфа","roles":["client"]}"#.as_bytes();
    for (content_type, field) in [
        ("text/plain", "Content-Type"),
        ("", "Content-Type"),
        ("application/jsonx", "Content-Type"),
        ("application/json; charset=latin1", "Content-Type"),
        ("multipart/form-data", "Content-Type"),
    ] {
        let a =
            server.exchange("POST", "/api/v1/partners", Some(boss), &[("Content-Type", content_type)], Some(partner));
        let j = a.json();
        assert_eq!(
            (a.status, j["code"].as_str(), j["field"].as_str()),
            (415, Some("unsupported_media_type"), Some(field)),
            "{content_type}: {j}"
        );
    }
    // An action's body is JSON too; an empty one needs no type.
    let a = server.exchange(
        "POST",
        "/api/v1/tasks/01KJPWD6M0000000000000000T/complete",
        Some(boss),
        &[("Content-Type", "text/plain")],
        Some(br#"{"version":1}"#),
    );
    assert_eq!(a.status, 415, "{}", a.json());
    // Paths are case-sensitive and exact.
    for path in ["/API/v1/partners", "/api/V1/partners", "/api/v1/Partners", "/api/v1/partners/", "/api/v1//partners"] {
        let a = server.exchange("POST", path, Some(boss), &[], Some(partner));
        assert_eq!((a.status, a.json()["code"].as_str()), (404, Some("no_route")), "{path}");
    }
    server.stop();
    assert_eq!(office.site.dump(), before);
    // With the type (and its charset in any case), the write is made.
    let server = Served::start(&office.site);
    let a = server.exchange(
        "POST",
        "/api/v1/partners",
        Some(boss),
        &[("Content-Type", "Application/JSON; Charset=\"UTF-8\"")],
        Some(partner),
    );
    assert_eq!(a.status, 201, "{}", a.json());
    server.stop();
}

#[test]
fn every_route_answers_options_and_head_and_a_wrong_method_gets_405_with_allow() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let (_, doc) = server.request("GET", "/openapi.json", None);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "01KJPWD6M0000000000000000T" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let mut methods: Vec<String> = ops.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        if methods.iter().any(|m| m == "GET") {
            methods.push("HEAD".into());
        }
        methods.push("OPTIONS".into());
        let a = server.exchange("OPTIONS", &concrete, None, &[], None);
        assert_eq!(a.status, 204, "OPTIONS {concrete}");
        let mut allow: Vec<String> = a.header("allow").unwrap().split(", ").map(str::to_string).collect();
        allow.sort();
        methods.sort();
        assert_eq!(allow, methods, "{path}");
        if let Some(wrong) = ["PUT", "DELETE", "PATCH", "POST"].into_iter().find(|m| !methods.iter().any(|x| x == m)) {
            let a = server.exchange(wrong, &concrete, Some(boss), &[], None);
            let j = a.json();
            assert_eq!((a.status, j["code"].as_str()), (405, Some("method_not_allowed")), "{wrong} {path}: {j}");
            let mut got: Vec<&str> = a.header("allow").unwrap().split(", ").collect();
            got.sort();
            assert_eq!(got, methods.iter().map(String::as_str).collect::<Vec<_>>(), "{path}");
        }
    }
    // HEAD is GET without the body: the same status and length.
    for path in ["/health", "/api/v1/partners", "/api/v1/deals/nope"] {
        let get = server.exchange("GET", path, Some(boss), &[], None);
        let head = server.exchange("HEAD", path, Some(boss), &[], None);
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(head.header("content-length"), Some(get.body.len().to_string().as_str()), "{path}");
    }
    server.stop();
}

#[test]
fn query_strings_are_form_decoded_and_a_repeated_parameter_is_refused() {
    let office = Office::new();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    // `%+5` is not an escape: it stays, `+` a space, and "% 5" is no limit.
    let (status, j) = server.request("GET", "/api/v1/partners?limit=%+5", Some(boss));
    assert_eq!((status, j["code"].as_str(), j["field"].as_str()), (400, Some("bad_query"), Some("limit")), "{j}");
    assert!(j["message"].as_str().unwrap().contains("\"% 5\""), "{j}");
    let (status, _) = server.request("GET", "/api/v1/partners?limit=%31%30", Some(boss));
    assert_eq!(status, 200);
    let (status, j) = server.request("GET", "/api/v1/partners?limit=1&limit=2", Some(boss));
    assert_eq!((status, j["code"].as_str(), j["field"].as_str()), (400, Some("bad_query"), Some("limit")), "{j}");
    server.stop();
}

#[test]
fn a_tampered_cut_or_foreign_cursor_is_refused_with_bad_cursor() {
    let office = Office::new();
    for name in ["Альфа", "Бета", "Гамма"] {
        office.site.partner(name, PartnerRole::Client);
    }
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let (_, page) = server.request("GET", "/api/v1/partners?limit=1", Some(boss));
    let next = page["next"].as_str().unwrap().to_string();
    let (status, second) = server.request("GET", &format!("/api/v1/partners?limit=1&after={next}"), Some(boss));
    assert_eq!(status, 200);
    assert_ne!(second["items"][0]["id"], page["items"][0]["id"]);
    let (_, users) = server.request("GET", "/api/v1/users?limit=1", Some(boss));
    let foreign = users["next"].as_str().unwrap().to_string();
    let flip = |at: usize| {
        let mut b = next.clone().into_bytes();
        b[at] = if b[at] == b'a' { b'b' } else { b'a' };
        String::from_utf8(b).unwrap()
    };
    for bad in [
        flip(0),
        flip(60),
        flip(next.len() - 1),
        next[..next.len() - 2].to_string(),
        foreign,
        "zz".into(),
        String::new(),
    ] {
        let (status, j) = server.request("GET", &format!("/api/v1/partners?limit=1&after={bad}"), Some(boss));
        assert_eq!(
            (status, j["code"].as_str(), j["field"].as_str()),
            (400, Some("bad_cursor"), Some("after")),
            "{bad}: {j}"
        );
    }
    server.stop();
}

#[test]
fn import_parameters_are_checked_and_written_says_whether_anything_was() {
    let office = Office::new();
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let file = "key,name,roles\nP1,Альфа,client\n";
    let import = |query: &str, content_type: &str| {
        let a = server.exchange(
            "POST",
            &format!("/api/v1/import/partners{query}"),
            Some(boss),
            &[("Content-Type", content_type)],
            Some(file.as_bytes()),
        );
        (a.status, a.json())
    };
    for (query, field) in [
        ("?atomik=1", "atomik"),
        ("?atomic=yes", "atomic"),
        ("?dry_run=2", "dry_run"),
        ("?format=xml", "format"),
        ("?delimiter=ab", "delimiter"),
        ("?format=jsonl&delimiter=%3B", "delimiter"),
        ("?map=", "map"),
        ("?atomic&atomic", "atomic"),
    ] {
        let (status, j) = import(query, "text/csv");
        assert_eq!(
            (status, j["code"].as_str(), j["field"].as_str()),
            (400, Some("bad_query"), Some(field)),
            "{query}: {j}"
        );
    }
    server.stop();
    assert_eq!(office.site.dump(), before);
    let server = Served::start(&office.site);
    let import = |query: &str| {
        let a = server.exchange(
            "POST",
            &format!("/api/v1/import/partners{query}"),
            Some(boss),
            &[("Content-Type", "text/csv")],
            Some(file.as_bytes()),
        );
        (a.status, a.json())
    };
    let (status, r) = import("");
    assert_eq!((status, r["created"].as_u64(), r["written"].as_bool()), (200, Some(1), Some(true)), "{r}");
    // The same file again changes nothing, and says so.
    let (status, r) = import("");
    assert_eq!((status, r["unchanged"].as_u64(), r["written"].as_bool()), (200, Some(1), Some(false)), "{r}");
    server.stop();
}

/// An HTTP/2 client with prior knowledge (h2c) on a connection of its own.
async fn h2_client(
    addr: &str,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

#[test]
fn http2_is_spoken_and_idle_connections_are_closed_after_the_timeout() {
    use http_body_util::BodyExt as _;
    let office = Office::new();
    let server = Served::start_with(&office.site, &[("CRMKIT_HTTP_IDLE_TIMEOUT", "0.5")]);
    let boss = office.token("boss").to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (mut send, conn) = h2_client(&server.addr).await;
        let req = hyper::Request::get(format!("http://{}/api/v1/me", server.addr))
            .header("authorization", format!("Bearer {boss}"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.version(), hyper::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let me: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(me["login"], "boss");
        // An error over h2 is the same JSON.
        let req = hyper::Request::delete(format!("http://{}/api/v1/deals", server.addr))
            .body(http_body_util::Empty::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 405);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], "method_not_allowed");
        // Then idle: the server closes the connection (GOAWAY) after the timeout.
        let started = std::time::Instant::now();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        assert!(ended.is_ok(), "the idle h2 connection is still open after 5 s");
        assert!(started.elapsed() >= std::time::Duration::from_millis(300), "{:?}", started.elapsed());
        // A connection that never sends a request is closed too.
        let (_send, conn) = h2_client(&server.addr).await;
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), conn).await.is_ok());
    });
    // HTTP/1 kept alive: closed after the same timeout.
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("the server closes the idle connection within 5 s");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "{:?}", started.elapsed());
    server.stop();
}

#[test]
fn money_is_taken_only_in_the_decimal_form_the_schema_declares() {
    let office = Office::new();
    let partner = office.site.partner("Альфа", PartnerRole::Client);
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let boss = office.token("boss");
    let deal = |amount: &str| {
        format!(
            r#"{{"title":"Поставка","partner":"{partner}","kind":"b2b_sale","amount":{{"amount":{amount},"currency":"RUB"}}}}"#
        )
    };
    for amount in [
        r#""1e5""#,
        r#""1E5""#,
        r#""+5""#,
        r#"" 5""#,
        r#""5 ""#,
        r#""1_000""#,
        r#""5.""#,
        r#"".5""#,
        r#""10.005""#,
        r#""0x10""#,
        r#""5,50""#,
        r#""""#,
        "5",
        "5.5",
        r#""1.2.3""#,
    ] {
        let (status, e) = server.send("POST", "/api/v1/deals", boss, deal(amount).as_bytes());
        assert_eq!(
            (status, e["code"].as_str(), e["field"].as_str()),
            (422, Some("invalid"), Some("amount.amount")),
            "{amount}: {e}"
        );
    }
    server.stop();
    assert_eq!(office.site.dump(), before);
    let server = Served::start(&office.site);
    let (status, d) = server.send("POST", "/api/v1/deals", boss, deal(r#""10.500""#).as_bytes());
    assert_eq!((status, d["amount"]["amount"].as_str()), (201, Some("10.50")), "{d}");
    server.stop();
}

/// Closing a deal over HTTP asks the guards of leaving its stage (the shipped
/// `quote_before_leaving_proposal`); a loss naming no competitor, the free text of a step
/// and an upload's file name are checked before any hook runs, answer 422 naming the field,
/// and write nothing.
#[test]
fn closing_over_http_asks_the_guards_of_leaving_and_checks_its_input_first() {
    use crmkit_core::process::Engine;
    let site = Site::new(|c| c);
    let petrov = site.manager();
    let client = site.partner("Альфа", PartnerRole::Client);
    let rival = site.partner("ПромЛидер", PartnerRole::Competitor);
    // In "proposal", without a quote.
    let deal = site.with(|inst| {
        let e = Engine::without_hooks();
        inst.store()
            .transact(Some(petrov), |tx| {
                let mut d = new_deal(client, petrov, 150_000);
                d.source = Some("website".into());
                let d = e.create_deal(tx, d)?;
                let d = e.move_deal(tx, d.id, d.version, "needs_analysis", None)?;
                let d = e.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
                e.move_deal(tx, d.id, d.version, "proposal", None)
            })
            .unwrap()
    });
    let manager = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let before = site.dump();
    let server = Served::start(&site);
    let id = deal.id;
    let act = |action: &str, extra: &str| {
        let body = format!("{{\"version\":{}{extra}}}", deal.version);
        server.send("POST", &format!("/api/v1/deals/{id}/{action}"), &manager, body.as_bytes())
    };
    // The guard bound to deal.before_transition stops a win from the proposal.
    let (status, body) = act("win", "");
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (422, Some("rejected"), Some("documents")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("without a quote"), "{body}");
    // A competitor that is nothing, a user, the deal itself, or a partner who is no competitor:
    // refused before the shipped reaction that reads the competitor runs.
    let ghost = "01JBJGB4000000000000000016".to_string();
    for (competitor, needle) in [
        (ghost, "does not exist"),
        (petrov.to_string(), "does not exist"),
        (id.to_string(), "does not exist"),
        (client.to_string(), "does not have the competitor role"),
    ] {
        let (status, body) = act("lose", &format!(",\"reason\":\"price\",\"competitor\":\"{competitor}\""));
        assert_eq!((status, body["code"].as_str(), body["field"].as_str()), (422, Some("invalid"), Some("competitor")));
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
    // The free text of a step: too long, a NUL, terminal escapes.
    let long = "ж".repeat(100_000);
    for (action, extra, needle) in [
        ("hold", format!(",\"comment\":\"{long}\""), "the limit is 2000"),
        ("hold", ",\"comment\":\"a\\u0000b\"".to_string(), "control character"),
        (
            "move",
            ",\"stage\":\"needs_analysis\",\"comment\":\"\\u001b[2J\\u001b[31mred\"".to_string(),
            "control character",
        ),
        ("lose", format!(",\"reason\":\"price\",\"comment\":\"{long}\""), "the limit is 10000"),
        ("lose", ",\"reason\":\"price\",\"comment\":\"\\u001b[31m\"".to_string(), "control character"),
    ] {
        let (status, body) = act(action, &extra);
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (422, Some("invalid"), Some("comment")),
            "{action}: {body}"
        );
        assert!(body["message"].as_str().unwrap().contains(needle), "{action}: {body}");
    }
    // A file name on more than one line, or with a control character.
    for name in ["offer%0D%0Ax.pdf", "offer%00.pdf", "%1B%5B31moffer.pdf"] {
        let a = server.exchange(
            "POST",
            &format!("/api/v1/attachments?owner_kind=deal&owner={id}&name={name}"),
            Some(&manager),
            &[("content-type", "application/pdf")],
            Some(b"%PDF-1.4"),
        );
        let body = a.json();
        assert_eq!((a.status, body["field"].as_str()), (422, Some("name")), "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains("control character"), "{body}");
    }
    server.stop();
    assert!(site.dump() == before, "a refused request wrote something");
    // A loss to a real competitor goes through, and the shipped reaction follows it up.
    let server = Served::start(&site);
    let body = format!(
        "{{\"version\":{},\"reason\":\"price\",\"competitor\":\"{rival}\",\"comment\":\"Скидка 12%\\nи рассрочка\"}}",
        deal.version
    );
    let (status, lost) = server.send("POST", &format!("/api/v1/deals/{id}/lose"), &manager, body.as_bytes());
    assert_eq!(
        (status, lost["status"].as_str(), lost["competitor"].as_str()),
        (200, Some("lost"), Some(rival.to_string().as_str())),
        "{lost}"
    );
    let (status, tasks) = server.request("GET", &format!("/api/v1/tasks?deal={id}"), Some(&manager));
    assert_eq!(status, 200, "{tasks}");
    assert!(tasks.to_string().contains("Call back: lost"), "{tasks}");
    server.stop();
}

/// A comment sent with a resume, a win or a reopen is kept as the step's note in the stage
/// history, as a move's and a hold's are; a comment too long or with a control character is
/// refused naming `comment`, and nothing is written.
#[test]
fn comments_on_resume_win_and_reopen_are_kept_in_the_history() {
    use crmkit_core::process::Engine;
    let site = Site::new(|c| c);
    let petrov = site.manager();
    let client = site.partner("Альфа", PartnerRole::Client);
    site.with(|inst| inst.store().transact(None, |tx| tx.create(User::new("boss", "Начальник", Role::Admin))).unwrap());
    let held = site.with(|inst| {
        let e = Engine::without_hooks();
        inst.store()
            .transact(Some(petrov), |tx| {
                let d = e.create_deal(tx, new_deal(client, petrov, 150_000))?;
                e.hold(tx, d.id, d.version, "Ждём бюджет")
            })
            .unwrap()
    });
    let manager = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let admin = ok(&["token", "create", site.dir(), "--user", "boss", "--role", "admin"]).trim().to_string();
    let id = held.id;
    let act = |server: &Served, token: &str, action: &str, version: u64, comment: &str| {
        let body = format!("{{\"version\":{version},\"comment\":{}}}", serde_json::json!(comment));
        server.send("POST", &format!("/api/v1/deals/{id}/{action}"), token, body.as_bytes())
    };
    let long = "ж".repeat(2001);
    let bad: [(&str, &str); 3] =
        [(&long, "the limit is 2000"), ("a\u{0}b", "control character"), ("\u{1b}[31mred", "control character")];
    let refuses = |server: &Served, token: &str, action: &str, version: u64| {
        for (comment, needle) in bad {
            let (status, body) = act(server, token, action, version, comment);
            assert_eq!(
                (status, body["code"].as_str(), body["field"].as_str()),
                (422, Some("invalid"), Some("comment")),
                "{action}: {body}"
            );
            assert!(body["message"].as_str().unwrap().contains(needle), "{action}: {body}");
        }
    };
    let steps = || {
        site.with(|inst| {
            let history = inst.store().read().unwrap().stage_history(id).unwrap();
            history.iter().map(|s| (s.how.name().to_string(), s.note.clone())).collect::<Vec<_>>()
        })
    };
    let step = |how: &str, note: Option<&str>| (how.to_string(), note.map(str::to_string));

    // Each action: the bad comments first (nothing written), then a good one, kept.
    let mut version = held.version;
    for (action, token, comment, how) in [
        ("resume", &manager, "Бюджет утверждён\nв марте", "resume"),
        ("win", &manager, "Подписан договор №17", "won"),
        ("reopen", &admin, "Клиент расторг договор", "reopen"),
    ] {
        let before = site.dump();
        let server = Served::start(&site);
        refuses(&server, token, action, version);
        server.stop();
        assert!(site.dump() == before, "a refused {action} wrote something");
        let server = Served::start(&site);
        let (status, d) = act(&server, token, action, version, comment);
        assert_eq!(status, 200, "{action}: {d}");
        version = d["version"].as_u64().unwrap();
        server.stop();
        assert_eq!(steps().last(), Some(&step(how, Some(comment))), "{action}");
    }
    // Without a comment (or with blanks only), a step has no note.
    let server = Served::start(&site);
    let (status, d) = act(&server, &manager, "hold", version, "");
    assert_eq!(status, 200, "{d}");
    let (status, _) = act(&server, &manager, "resume", d["version"].as_u64().unwrap(), "  ");
    assert_eq!(status, 200);
    server.stop();
    assert_eq!(
        steps(),
        [
            step("create", None),
            step("hold", Some("Ждём бюджет")),
            step("resume", Some("Бюджет утверждён\nв марте")),
            step("won", Some("Подписан договор №17")),
            step("reopen", Some("Клиент расторг договор")),
            step("hold", None),
            step("resume", None),
        ]
    );
}

/// Dates over HTTP: a deal's `expected_close`, a document's `date` and a custom date field, in
/// a new entity and a change of one, are exactly `YYYY-MM-DD` from 1900-01-01 to 2999-12-31;
/// others (a loose spelling like `2026-3-1` included) answer 422 naming the field and write
/// nothing.
#[test]
fn dates_over_http_are_held_to_their_range() {
    let site = Site::new(|c| {
        format!("{c}\n[[custom_fields.deal]]\nname = \"signed_on\"\nlabel = \"Signed on\"\ntype = \"date\"\n")
    });
    site.manager();
    let p = site.partner("Альфа", PartnerRole::Client);
    let manager = ok(&["token", "create", site.dir(), "--user", "petrov", "--role", "manager"]).trim().to_string();
    let server = Served::start(&site);
    let deal = |close: &str, signed: &str| {
        format!("{{\"title\":\"Поставка\",\"partner\":\"{p}\",\"kind\":\"b2b_sale\",\"amount\":{{\"amount\":\"10\",\"currency\":\"RUB\"}},\"expected_close\":\"{close}\",\"custom\":{{\"signed_on\":{{\"date\":\"{signed}\"}}}}}}")
    };
    let (status, created) = server.send("POST", "/api/v1/deals", &manager, deal("2026-06-30", "2026-03-01").as_bytes());
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["expected_close"].as_str(), created["custom"]["signed_on"]["date"].as_str()),
        (Some("2026-06-30"), Some("2026-03-01"))
    );
    let id = created["id"].as_str().unwrap().to_string();
    let (status, found) = server.request("GET", "/api/v1/deals?custom.signed_on=2026-3-1", Some(&manager));
    assert_eq!(
        (status, found["code"].as_str(), found["field"].as_str()),
        (400, Some("bad_query"), Some("custom.signed_on")),
        "{found}"
    );
    assert!(found["message"].as_str().unwrap().contains("is not a date written YYYY-MM-DD"), "{found}");
    server.stop();
    let before = site.dump();
    let server = Served::start(&site);
    for (bad, needle) in [
        ("+99999-01-01", "\"+99999-01-01\" is not a date written YYYY-MM-DD"),
        ("-0001-01-01", "is not a date written YYYY-MM-DD"),
        ("2026-3-1", "\"2026-3-1\" is not a date written YYYY-MM-DD (like 2026-03-01)"),
        ("2026-03-1", "is not a date written YYYY-MM-DD"),
        ("01.03.2026", "is not a date written YYYY-MM-DD"),
        ("2026-03-01T00:00:00Z", "is not a date written YYYY-MM-DD"),
        (" 2026-03-01", "is not a date written YYYY-MM-DD"),
        ("2026-02-30", "is not a day of the calendar"),
        ("1899-12-31", "1899-12-31 is outside the dates a field holds"),
        ("3000-01-01", "3000-01-01 is outside the dates a field holds"),
    ] {
        let refused = |status: u16, body: &serde_json::Value, field: &str| {
            assert_eq!((status, body["field"].as_str()), (422, Some(field)), "{bad}: {body}");
            assert!(body["message"].as_str().unwrap().contains(needle), "{bad}: {body}");
        };
        let (status, body) = server.send("POST", "/api/v1/deals", &manager, deal(bad, "2026-03-01").as_bytes());
        refused(status, &body, "expected_close");
        let (status, body) = server.send("POST", "/api/v1/deals", &manager, deal("2026-06-30", bad).as_bytes());
        refused(status, &body, "custom.signed_on");
        let patch = format!("{{\"version\":{},\"expected_close\":\"{bad}\"}}", created["version"]);
        let (status, body) = server.send("PATCH", &format!("/api/v1/deals/{id}"), &manager, patch.as_bytes());
        refused(status, &body, "expected_close");
        let patch =
            format!("{{\"version\":{},\"custom\":{{\"signed_on\":{{\"date\":\"{bad}\"}}}}}}", created["version"]);
        let (status, body) = server.send("PATCH", &format!("/api/v1/deals/{id}"), &manager, patch.as_bytes());
        refused(status, &body, "custom.signed_on");
        let doc = format!(
            r#"{{"kind":"quote","number":"КП-1","date":"{bad}","partner":"{p}","amount":{{"amount":"10","currency":"RUB"}},"state":"draft"}}"#
        );
        let (status, body) = server.send("POST", "/api/v1/documents", &manager, doc.as_bytes());
        refused(status, &body, "date");
    }
    server.stop();
    assert!(site.dump() == before, "a refused request wrote something");
}

/// `s` percent-encoded for a query string.
fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn multi_valued_fields_are_checked_and_filtered_and_ibans_and_e_mails_are_checked_through_the_api() {
    let site = Site::new(|c| c);
    let petrov = site.manager();
    let p = site.partner("Альфа", PartnerRole::Client);
    site.with(|inst| inst.store().transact(None, |tx| tx.create(User::new("boss", "Босс", Role::Admin))).unwrap());
    let admin = ok(&["token", "create", site.dir(), "--user", "boss", "--role", "admin"]).trim().to_string();
    let mut server = Served::start(&site);
    let post = |server: &Served, path: &str, body: String| server.send("POST", path, &admin, body.as_bytes());
    let deal = |title: &str, custom: &str| {
        format!("{{\"title\":\"{title}\",\"partner\":\"{p}\",\"manager\":\"{petrov}\",\"kind\":\"b2b_sale\",\"amount\":{{\"amount\":\"1000.00\",\"currency\":\"RUB\"}},\"custom\":{{{custom}}}}}")
    };
    let (status, pumps) =
        post(&server, "/api/v1/deals", deal("Насосы", r#""equipment":{"enum_set":["pumps","valves"]}"#));
    assert_eq!(status, 201, "{pumps}");
    assert_eq!(pumps["custom"]["equipment"], serde_json::json!({ "enum_set": ["pumps", "valves"] }));
    let (status, compressors) =
        post(&server, "/api/v1/deals", deal("Компрессоры", r#""equipment":{"enum_set":["compressors"]}"#));
    assert_eq!(status, 201, "{compressors}");
    let (status, plain) = post(&server, "/api/v1/deals", deal("Без оборудования", ""));
    assert_eq!(status, 201, "{plain}");

    // Refused on create and on change, naming the field; nothing written (the database is
    // compared with the server stopped).
    server.stop();
    let before = site.dump();
    server = Served::start(&site);
    for (custom, needle) in [
        (r#""equipment":{"enum_set":["pumps","valves","pumps"]}"#, "\"pumps\" twice"),
        (r#""equipment":{"enum_set":["boats"]}"#, "\"boats\" is not one of the allowed values"),
        (r#""equipment":{"enum":"pumps"}"#, "expected a enum_set"),
        (r#""delivery_region":{"enum_set":["volga"]}"#, "expected a enum value, got a enum_set value"),
    ] {
        let (status, body) = post(&server, "/api/v1/deals", deal("Плохая", custom));
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid")), "{custom}: {body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{custom}: {body}");
        assert!(body["field"].as_str().unwrap().starts_with("custom."), "{body}");
    }
    let url = format!("/api/v1/deals/{}", pumps["id"].as_str().unwrap());
    let patch = |server: &Served, set: &str, version: &Value| {
        let body = format!(r#"{{"version":{version},"custom":{{"equipment":{{"enum_set":{set}}}}}}}"#);
        server.send("PATCH", &url, &admin, body.as_bytes())
    };
    let (status, body) = patch(&server, r#"["valves","valves"]"#, &pumps["version"]);
    assert_eq!((status, body["field"].as_str()), (422, Some("custom.equipment")), "{body}");
    server.stop();
    assert!(site.dump() == before, "a refused request wrote something");
    server = Served::start(&site);

    // A filter on a multi-valued field matches the records holding the value.
    let ids = |query: &str| -> Vec<String> {
        let (status, page) = server.request("GET", &format!("/api/v1/deals?{query}"), Some(&admin));
        assert_eq!(status, 200, "{query}: {page}");
        page["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
    };
    let id = |d: &Value| d["id"].as_str().unwrap().to_string();
    assert_eq!(ids("custom.equipment=pumps"), [id(&pumps)]);
    assert_eq!(ids("custom.equipment=compressors"), [id(&compressors)]);
    assert_eq!(ids("custom.equipment=automation"), Vec::<String>::new());
    assert_eq!(ids(&format!("custom.equipment=valves&partner={p}&status=in_progress")), [id(&pumps)]);
    let (status, _) = patch(&server, r#"["valves","compressors"]"#, &pumps["version"]);
    assert_eq!(status, 200);
    assert_eq!(ids("custom.equipment=compressors"), [id(&pumps), id(&compressors)]);
    assert_eq!(ids("custom.equipment=pumps"), Vec::<String>::new());
    assert_eq!(ids("custom.tender_number=42"), Vec::<String>::new());
    for (query, needle) in [
        ("custom.equipment=boats", "\"boats\" is not one of the allowed values"),
        ("custom.equipmnet=pumps", "declared: tender_number, delivery_region, equipment"),
    ] {
        let (status, body) = server.request("GET", &format!("/api/v1/deals?{query}"), Some(&admin));
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_query")), "{body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }

    // E-mail domains in any script, stored in their ASCII form and found by either.
    let contact = |email: &str| format!(r#"{{"partner":"{p}","name":"Петров","emails":["{email}"]}}"#);
    let (status, c) = post(&server, "/api/v1/contacts", contact("info@пример.рф"));
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["emails"], serde_json::json!(["info@xn--e1afmkfd.xn--p1ai"]));
    for query in ["info@пример.рф", "info@xn--e1afmkfd.xn--p1ai", "INFO@ПРИМЕР.РФ"] {
        let (status, page) = server.request("GET", &format!("/api/v1/contacts?email={}", encoded(query)), Some(&admin));
        assert_eq!((status, page["items"][0]["id"].as_str()), (200, c["id"].as_str()), "{query}: {page}");
    }
    // IBANs by their country's registry entry.
    let counterparty = |iban: &str| {
        format!(
            r#"{{"kind":"legal_entity","name":"Muster GmbH","country":"DE","bank_accounts":[{{"bank":"Commerzbank","account":"{iban}","currency":"EUR"}}]}}"#
        )
    };
    server.stop();
    let before = site.dump();
    server = Served::start(&site);
    for (body, field, needle) in [
        (contact("info@xn--zz.рф"), "emails[0]", "not a valid internationalized domain name"),
        (counterparty("DE5137040044053201300"), "bank_accounts[0].account", "length and layout of a DE IBAN"),
        (counterparty("ZZ591234567890123456"), "bank_accounts[0].account", "not a country of the IBAN registry"),
    ] {
        let path = if body.contains("emails") { "/api/v1/contacts" } else { "/api/v1/counterparties" };
        let (status, answer) = post(&server, path, body);
        assert_eq!((status, answer["field"].as_str()), (422, Some(field)), "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(needle), "{answer}");
    }
    server.stop();
    assert!(site.dump() == before, "a refused request wrote something");
    let server = Served::start(&site);
    let (status, body) = post(&server, "/api/v1/counterparties", counterparty("DE89 3704 0044 0532 0130 00"));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn every_field_openapi_marks_read_only_is_refused_on_input_and_nothing_is_written() {
    let office = Office::new();
    let doc: Value = serde_json::from_str(include_str!("../../server/src/http/openapi.json")).unwrap();
    let schemas = &doc["components"]["schemas"];
    let name_of =
        |r: &Value| r["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")).map(str::to_string);
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let mut tried = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let post = &ops["post"];
        let (Some(new), Some(entity)) = (
            name_of(&post["requestBody"]["content"]["application/json"]["schema"]),
            name_of(&post["responses"]["201"]["content"]["application/json"]["schema"]),
        ) else {
            continue;
        };
        for (field, property) in schemas[&entity]["properties"].as_object().unwrap() {
            if property["readOnly"] != true {
                continue;
            }
            // The document does not offer what the server refuses...
            assert!(schemas[&new]["properties"].get(field).is_none(), "{new} names the read-only {field}");
            if field != "version" {
                let patch = format!("{entity}Patch");
                assert!(schemas[&patch]["properties"].get(field).is_none(), "{patch} names the read-only {field}");
            }
            // ...and the server refuses it, naming it.
            let (status, body) =
                server.send("POST", path, office.token("boss"), format!("{{\"{field}\": null}}").as_bytes());
            assert_eq!(
                (status, body["field"].as_str()),
                (422, Some(field.as_str())),
                "POST {path} with {field}: {body}"
            );
            tried += 1;
        }
        // A field the document offers for a new entity is not refused as the server's.
        for field in schemas[&new]["properties"].as_object().unwrap().keys() {
            let (status, body) =
                server.send("POST", path, office.token("boss"), format!("{{\"{field}\": null}}").as_bytes());
            let server_set = body["message"].as_str().is_some_and(|m| m.contains("set by the server"));
            assert!(!server_set, "POST {path} with {field}, which {new} offers: {status} {body}");
        }
    }
    assert!(tried > 80, "{tried} read-only fields tried");
    server.stop();
    assert_eq!(office.site.dump(), before);
}
