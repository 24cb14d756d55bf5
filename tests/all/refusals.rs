//! Requests the API must refuse — a role that may not, a record out of the caller's scope, a
//! deal in the wrong state, a stale version — each checked the only way that can fail: the
//! server is stopped, and the whole database and the token file are compared with what they
//! were before it started.

use serde_json::Value;

use crate::api::{side, two_of_everything, Office, Served};
use crate::common::{dump_diff, Dump};

/// The database and the token file of the office's installation.
fn state(office: &Office) -> (Dump, Vec<u8>) {
    let tokens = std::fs::read(office.site.dir.join("data").join("tokens.jsonl")).expect("the token file");
    (office.site.dump(), tokens)
}

/// Serves the office while `requests` runs, stops the server, and checks that the database
/// and the tokens are byte-for-byte what they were.
fn check(office: &Office, requests: impl FnOnce(&Served)) {
    let (db, tokens) = state(office);
    let server = Served::start(&office.site);
    requests(&server);
    server.stop();
    let (db_after, tokens_after) = state(office);
    assert!(tokens_after == tokens, "a refused request changed the tokens");
    if db_after != db {
        panic!("a refused request changed the database: {}", dump_diff(&db, &db_after));
    }
}

/// Sends the request (with a JSON body when `body` is given) and expects `status` with the
/// error `code`; returns the error.
fn refused(server: &Served, method: &str, path: &str, token: &str, body: Option<&str>, want: (u16, &str)) -> Value {
    let answer = server.exchange(method, path, Some(token), &[], body.map(str::as_bytes));
    let e = answer.json();
    assert_eq!((answer.status, e["code"].as_str().unwrap_or("")), want, "{method} {path} {body:?}: {e}");
    assert!(!e["message"].as_str().unwrap_or("").is_empty(), "{method} {path}: an error without a message: {e}");
    e
}

const DELETABLE: [&str; 10] = [
    "partners",
    "counterparties",
    "contacts",
    "partner-links",
    "contact-links",
    "participants",
    "participant-links",
    "interactions",
    "documents",
    "attachments",
];

#[test]
fn deleting_with_the_wrong_role_or_out_of_scope_writes_nothing() {
    let office = Office::new();
    let all = two_of_everything(&office);
    check(&office, |server| {
        for resource in DELETABLE {
            let (north, south) = (side(&all, resource, true), side(&all, resource, false));
            // A viewer deletes nothing, not even what it reads.
            for id in [&north, &south] {
                refused(
                    server,
                    "DELETE",
                    &format!("/api/v1/{resource}/{id}?version=1"),
                    office.token("watcher"),
                    None,
                    (403, "forbidden"),
                );
            }
            // Counterparties are reference data every writing role keeps; everything else
            // of the south manager's is, to the north manager and the north's head, not there.
            if resource != "counterparties" {
                for login in ["north", "head"] {
                    let e = refused(
                        server,
                        "DELETE",
                        &format!("/api/v1/{resource}/{south}?version=1"),
                        office.token(login),
                        None,
                        (404, "not_found"),
                    );
                    assert!(e["message"].as_str().unwrap().contains(&south), "{e}");
                }
            }
            // A stale version is a conflict even for an admin.
            refused(
                server,
                "DELETE",
                &format!("/api/v1/{resource}/{north}?version=2"),
                office.token("boss"),
                None,
                (409, "conflict"),
            );
        }
        // Users, deals and tasks are never deleted, not even by an admin: their paths do not
        // take DELETE.
        for resource in ["users", "deals", "tasks"] {
            let id = side(&all, resource, true);
            refused(
                server,
                "DELETE",
                &format!("/api/v1/{resource}/{id}?version=1"),
                office.token("boss"),
                None,
                (405, "method_not_allowed"),
            );
        }
    });
}

#[test]
fn winning_and_resuming_are_refused_to_the_wrong_user_and_in_the_wrong_state() {
    let office = Office::new();
    let all = two_of_everything(&office);
    let (north_deal, south_deal) = (side(&all, "deals", true), side(&all, "deals", false));
    // A deal of the north manager's already won.
    let won = office.site.with(|inst| {
        let engine = crmkit_core::process::Engine::without_hooks();
        let p = side(&all, "partners", true).parse().unwrap();
        inst.store()
            .transact(Some(office.north), |tx| {
                let won = tx.create(crate::common::new_deal(p, office.north, 500))?;
                engine.close(tx, won.id, won.version, crmkit_core::process::Outcome::Won { comment: String::new() })
            })
            .unwrap()
    });
    let action = |id: &str, what: &str| format!("/api/v1/deals/{id}/{what}");
    check(&office, |server| {
        let v1 = Some(r#"{"version":1}"#);
        for what in ["win", "resume"] {
            // A viewer may not; another manager's deal is not there for the north manager, the
            // south one's for the north's head.
            refused(server, "POST", &action(&north_deal, what), office.token("watcher"), v1, (403, "forbidden"));
            refused(server, "POST", &action(&north_deal, what), office.token("south"), v1, (404, "not_found"));
            refused(server, "POST", &action(&south_deal, what), office.token("head"), v1, (404, "not_found"));
            refused(server, "POST", &action(&south_deal, what), office.token("north"), v1, (404, "not_found"));
            // A stale version, and no version at all.
            let stale = Some(r#"{"version":2}"#);
            refused(server, "POST", &action(&north_deal, what), office.token("north"), stale, (409, "conflict"));
            let e = refused(
                server,
                "POST",
                &action(&north_deal, what),
                office.token("north"),
                Some("{}"),
                (400, "bad_version"),
            );
            assert_eq!(e["field"].as_str(), Some("version"), "{e}");
        }
        // The wrong state: a won deal is not won again nor resumed; a deal in progress is not
        // resumed.
        let won_v = format!(r#"{{"version":{}}}"#, won.version);
        for what in ["win", "resume"] {
            let e = refused(
                server,
                "POST",
                &action(&won.id.to_string(), what),
                office.token("north"),
                Some(&won_v),
                (422, "not_allowed"),
            );
            assert!(e["message"].as_str().unwrap().contains("won"), "{e}");
        }
        let e =
            refused(server, "POST", &action(&north_deal, "resume"), office.token("north"), v1, (422, "not_allowed"));
        assert!(e["message"].as_str().unwrap().contains("not on hold"), "{e}");
    });
}

#[test]
fn links_and_participants_are_not_created_into_anothers_scope() {
    let office = Office::new();
    let all = two_of_everything(&office);
    let id = |path: &str, north: bool| side(&all, path, north);
    let (p_n, p_s) = (id("partners", true), id("partners", false));
    let (c_n, c_s) = (id("contacts", true), id("contacts", false));
    let (d_n, d_s) = (id("deals", true), id("deals", false));
    let (pa_n, pa_s) = (id("participants", true), id("participants", false));
    let attempts = [
        ("partner-links", format!(r#"{{"from":"{p_n}","to":"{p_s}","link_type":"recommended_by"}}"#), "to"),
        ("partner-links", format!(r#"{{"from":"{p_s}","to":"{p_n}","link_type":"recommended_by"}}"#), "from"),
        ("contact-links", format!(r#"{{"from":"{c_n}","to":"{c_s}","link_type":"reports_to"}}"#), "to"),
        ("participants", format!(r#"{{"deal":"{d_s}","partner":"{p_n}","role":"influencer"}}"#), "deal"),
        ("participants", format!(r#"{{"deal":"{d_n}","contact":"{c_s}","role":"decision_maker"}}"#), "contact"),
        (
            "participant-links",
            format!(r#"{{"deal":"{d_n}","from":"{pa_n}","to":"{pa_s}","link_type":"influences"}}"#),
            "to",
        ),
        (
            "participant-links",
            format!(r#"{{"deal":"{d_s}","from":"{pa_s}","to":"{pa_n}","link_type":"influences"}}"#),
            "deal",
        ),
    ];
    check(&office, |server| {
        for (resource, body, field) in &attempts {
            let e = refused(
                server,
                "POST",
                &format!("/api/v1/{resource}"),
                office.token("north"),
                Some(body),
                (422, "invalid"),
            );
            assert_eq!(e["field"].as_str(), Some(*field), "{resource} {body}: {e}");
        }
    });
}

#[test]
fn a_dossier_out_of_scope_is_not_there() {
    let office = Office::new();
    let all = two_of_everything(&office);
    let south = side(&all, "partners", false);
    check(&office, |server| {
        for login in ["north", "head"] {
            let e = refused(
                server,
                "GET",
                &format!("/api/v1/partners/{south}/dossier"),
                office.token(login),
                None,
                (404, "not_found"),
            );
            assert!(e["message"].as_str().unwrap().contains(&south), "{e}");
        }
        let (status, _) =
            server.request("GET", &format!("/api/v1/partners/{south}/dossier"), Some(office.token("south")));
        assert_eq!(status, 200, "the owner reads it");
    });
}

#[test]
fn only_admins_manage_tokens_and_bad_requests_of_admins_change_nothing() {
    let office = Office::new();
    let boss = office.token("boss");
    check(&office, |server| {
        let (_, list) = server.request("GET", "/api/v1/tokens", Some(boss));
        let ids: Vec<String> =
            list["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 5, "{list}");
        for login in ["head", "north", "watcher"] {
            let token = office.token(login);
            refused(server, "GET", "/api/v1/tokens", token, None, (403, "forbidden"));
            let own_role = if login == "watcher" { "viewer" } else { "manager" };
            let body = format!(r#"{{"login":"{login}","role":"{own_role}"}}"#);
            refused(server, "POST", "/api/v1/tokens", token, Some(&body), (403, "forbidden"));
            for id in &ids {
                refused(server, "DELETE", &format!("/api/v1/tokens/{id}"), token, None, (403, "forbidden"));
            }
        }
        // An admin's requests that cannot be carried out.
        let e = refused(
            server,
            "POST",
            "/api/v1/tokens",
            boss,
            Some(r#"{"login":"north","role":"admin"}"#),
            (422, "invalid"),
        );
        assert_eq!(e["field"].as_str(), Some("role"), "{e}");
        let e = refused(
            server,
            "POST",
            "/api/v1/tokens",
            boss,
            Some(r#"{"login":"никто","role":"viewer"}"#),
            (422, "invalid"),
        );
        assert_eq!(e["field"].as_str(), Some("login"), "{e}");
        let e = refused(
            server,
            "POST",
            "/api/v1/tokens",
            boss,
            Some(r#"{"login":"north","role":"manager","ttl":1}"#),
            (422, "invalid"),
        );
        assert_eq!(e["field"].as_str(), Some("ttl"), "{e}");
        refused(server, "DELETE", "/api/v1/tokens/0123456789ab", boss, None, (404, "not_found"));
    });
}

/// The comparison itself: one accepted write inside `check` fails it.
#[test]
#[should_panic(expected = "a refused request changed the database")]
fn the_check_sees_an_accepted_write() {
    let office = Office::new();
    let all = two_of_everything(&office);
    let partner = side(&all, "partners", true);
    check(&office, |server| {
        let body =
            format!(r#"{{"kind":"note","at":"2026-03-02T10:00:00Z","subject":"Принято","partner":"{partner}"}}"#);
        let (status, answer) = server.send("POST", "/api/v1/interactions", office.token("north"), body.as_bytes());
        assert_eq!(status, 201, "{answer}");
    });
}
