//! Scripts as a consultant tries and changes them: `crmkit script run` on the hook contract's
//! JSON answers as the engine does, limits and misspellings are named where they are, and a
//! running server reloads its `[[hooks]]` bindings — or keeps the ones in force and says why.

use std::process::Command;
use std::sync::{Arc, Mutex};

use crmkit_core::hooks::{Answer, Fault, HookInput};
use crmkit_core::model::{Deal, PartnerRole, Role, User};
use crmkit_core::process::{Engine, Hooks};
use crmkit_core::store::Reader;
use crmkit_core::Installation;
use crmkit_rhai::{RhaiProvider, RhaiSettings, ScriptHost};
use serde_json::{json, Value};

use crate::api::Served;
use crate::cli::{binary, fails, ok, Site};
use crate::common::new_deal;

/// A guard comparing a deal's amount and currency.
const DEALS: &str = r#"// Guards on the amount of a deal entering the needs analysis.
fn big_enough(ctx) {
    let d = ctx.after;
    if ctx.transition.to_stage != "needs_analysis" {
        return true;
    }
    if d.currency != "RUB" {
        return `only roubles, not ${d.currency}`;
    }
    if d.amount < 100000 {
        return #{ reject: `deal "${d.title}": ${d.amount} ${d.currency} is below 100000`, field: "amount" };
    }
    true
}

fn under_a_million(ctx) {
    if ctx.after.amount > 1000000 {
        return `${ctx.after.amount} is above a million`;
    }
    true
}
"#;

/// The default config with `hooks` appended.
fn with_hooks(hooks: &str) -> impl FnOnce(String) -> String + '_ {
    move |c| format!("{c}\n{hooks}")
}

/// Writes `text` as `scripts/NAME` of the site.
fn script(site: &Site, name: &str, text: &str) {
    std::fs::write(site.dir.join("scripts").join(name), text).unwrap();
}

/// The process engine of the installation's config, with the native handler `record` that
/// keeps the contract JSON of every call it sees (and allows).
fn recording_engine(inst: &Installation, seen: Arc<Mutex<Vec<Value>>>) -> Engine {
    let limits = RhaiSettings::from_settings(inst.settings()).unwrap();
    let host = Arc::new(ScriptHost::new(&inst.dir().join("scripts"), &limits));
    assert_eq!(host.load_all(), Vec::new());
    let mut hooks = Hooks::new();
    hooks.provider(Arc::new(RhaiProvider::new(host)));
    hooks.register("record", move |input: &HookInput<'_>| -> Result<Answer, Fault> {
        seen.lock().unwrap().push(serde_json::to_value(input.to_wire()).unwrap());
        Ok(Answer::Allow)
    });
    Engine::new(inst.settings(), hooks).unwrap()
}

#[test]
fn script_run_on_the_contract_json_answers_as_the_engine_does() {
    let site = Site::new(with_hooks(
        "[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"record\"\n\n\
         [[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"deals.rhai::big_enough\"\nkinds = [\"b2b_sale\"]\n",
    ));
    script(&site, "deals.rhai", DEALS);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let manager = site.manager();
    let partner = site.partner("Альфа", PartnerRole::Client);
    // Through the engine, on a real store: a small deal is refused, a big one goes on.
    let answers: Vec<Result<(), String>> = site.with(|inst| {
        let engine = recording_engine(inst, seen.clone());
        [50_000, 150_000]
            .into_iter()
            .map(|amount| {
                let d: Deal = inst
                    .store()
                    .transact(Some(manager), |tx| {
                        let mut d = new_deal(partner, manager, amount);
                        d.source = Some("website".into());
                        engine.create_deal(tx, d)
                    })
                    .unwrap();
                let moved = inst
                    .store()
                    .transact(Some(manager), |tx| engine.move_deal(tx, d.id, d.version, "needs_analysis", None));
                moved.map(|_| ()).map_err(|e| match e {
                    crmkit_core::Error::Rejected { message, .. } => message,
                    other => panic!("not a refusal: {other}"),
                })
            })
            .collect()
    });
    assert_eq!(
        answers,
        vec![Err("deal \"Поставка оборудования\": 50000 RUB is below 100000".to_string()), Ok(())],
        "the engine's answers"
    );
    let inputs: Vec<Value> =
        seen.lock().unwrap().iter().filter(|i| i["transition"]["to_stage"] == "needs_analysis").cloned().collect();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    // The same inputs, as the contract writes them, through the command line.
    for (input, engine_said) in inputs.iter().zip(&answers) {
        let file = site.file("ctx.json", input.to_string().as_bytes());
        let out = ok(&["script", "run", site.dir(), "deals.rhai", "big_enough", "--input", &file]);
        let answer: Value = serde_json::from_str(&out).unwrap();
        match engine_said {
            Ok(()) => assert_eq!(answer, json!(true), "{input}"),
            Err(message) => assert_eq!(answer, json!({ "reject": message, "field": "amount" }), "{input}"),
        }
    }
    // Another currency is compared as the engine would.
    let mut dollars = inputs[1].clone();
    dollars["after"]["currency"] = json!("USD");
    let file = site.file("ctx.json", dollars.to_string().as_bytes());
    let out = ok(&["script", "run", site.dir(), "deals.rhai", "big_enough", "--input", &file]);
    assert_eq!(out.trim(), "\"only roubles, not USD\"");
}

#[test]
fn script_run_refuses_input_that_is_not_the_contract_naming_the_field() {
    let site = Site::new(|c| c);
    script(&site, "deals.rhai", DEALS);
    let manager = site.manager();
    let partner = site.partner("Альфа", PartnerRole::Client);
    let id = site.deal(partner, manager, 150_000);
    let d = site.with(|inst| inst.store().read().unwrap().load::<Deal>(id).unwrap());
    let wire = serde_json::to_value(crmkit_core::hooks::wire::DealV1::from(&d)).unwrap();
    let good = json!({
        "v": 1, "hook": "deal.before_transition", "process_kind": "b2b_sale", "entity": "deal", "actor": null,
        "before": wire, "after": wire, "depth": 0, "task": null,
        "transition": { "how": "manual", "from_stage": "qualification", "to_stage": "needs_analysis",
                        "from_status": "in_progress", "to_status": "in_progress", "note": null }
    });
    let run = |input: &Value| {
        let file = site.file("ctx.json", input.to_string().as_bytes());
        let args = ["script", "run", site.dir(), "deals.rhai", "big_enough", "--input", &file];
        (Command::new(binary()).args(args).output().unwrap(), file)
    };
    let (out, _) = run(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
    // The deal as the HTTP API gives it (amount with its currency), a misspelled field, a
    // missing version, an undeclared custom field, a wrong type deeper down.
    let mut api_form = good.clone();
    api_form["after"]["amount"] = json!({ "amount": "150000.00", "currency": "RUB" });
    let mut misspelled = good.clone();
    misspelled["after"]["amout"] = json!("150000");
    let mut unversioned = good.clone();
    unversioned.as_object_mut().unwrap().remove("v");
    let mut custom = good.clone();
    custom["after"]["custom"] = json!({ "colour": "red" });
    let mut status = good.clone();
    status["transition"]["to_status"] = json!("finished");
    for (input, says) in [
        (&api_form, "after.amount: invalid type: map"),
        (&misspelled, "unknown field `amout`"),
        (&unversioned, "v: missing"),
        (&custom, "after.custom.colour: no custom field \"colour\" is declared for deals"),
        (&status, "transition.to_status: unknown variant `finished`"),
        (&json!([1, 2]), "a JSON object of the hook contract"),
    ] {
        let (out, file) = run(input);
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{input}: {text}");
        assert!(text.contains(&format!("{file}: not a hook input of the contract")), "{text}");
        assert!(text.contains(says), "{text:?} does not say {says:?}");
    }
}

/// A site whose scripts are stopped by small limits: 5,000 operations a call, strings,
/// arrays and maps of at most 10,000 bytes, 20 items, 20 entries, 2 s.
fn limited_site() -> Site {
    let site = Site::new(limited);
    script(&site, "runaway.rhai", RUNAWAY);
    site
}

/// `config` with the small limits of [`limited_site`].
pub(crate) fn limited(config: String) -> String {
    config
        .replace(
            "max_operations = 1000000\n",
            "max_operations = 5000\nmax_string_size = 10000\nmax_array_size = 20\nmax_map_size = 20\n",
        )
        .replace("[limits]\ntimeout_ms = 20\n", "[limits]\ntimeout_ms = 2000\n")
}

/// Scripts that run into each limit, on known lines.
pub(crate) const RUNAWAY: &str = r#"fn spin(ctx) {
    let i = 0;
    loop { i += 1; }
}
fn deep(n) {
    deep(n + 1)
}
fn recurse(ctx) {
    deep(0)
}
fn long_string(ctx) {
    let s = "x";
    loop { s += s; }
}
fn big_array(ctx) {
    let a = [];
    loop { a.push(1); }
}
fn big_map(ctx) {
    let m = #{};
    let i = 0;
    loop {
        let one = #{};
        one[`k${i}`] = i;
        m += one;
        i += 1;
    }
}
"#;

/// What each function of [`RUNAWAY`] is stopped by: function, where, what.
pub(crate) const STOPPED: [(&str, &str, &str); 5] = [
    ("spin", "runaway.rhai:3:", "in spin(): stopped after 5000 operations"),
    ("recurse", "runaway.rhai:6:", "in deep(): calls nested too deep (runtimes.rhai.max_call_depth)"),
    (
        "long_string",
        "runaway.rhai:13:",
        "in long_string(): a string grew past its limit (runtimes.rhai.max_string_size)",
    ),
    ("big_array", "runaway.rhai:17:", "in big_array(): an array grew past its limit (runtimes.rhai.max_array_size)"),
    ("big_map", "runaway.rhai:25:", "in big_map(): an object map grew past its limit (runtimes.rhai.max_map_size)"),
];

#[test]
fn script_run_names_the_line_where_a_limit_stopped_the_script() {
    let site = limited_site();
    for (function, place, what) in STOPPED {
        let out = fails(&["script", "run", site.dir(), "runaway.rhai", function]);
        assert!(out.contains(&format!("scripts/{place}")), "{function}: {out}");
        assert!(out.contains(what), "{function}: {out:?} does not say {what:?}");
    }
}

#[test]
fn a_misspelled_variable_fails_the_checks_naming_its_line() {
    let site = Site::new(|c| c);
    let out = ok(&["script", "check", site.dir()]);
    assert!(out.contains("10 scripts compiled"), "the shipped scripts check clean: {out}");
    script(&site, "typo.rhai", "fn check(ctx) {\n    let amount = ctx.after.amount;\n    amout > 100000\n}\n");
    for args in [
        vec!["script", "check", site.dir()],
        vec!["script", "check", site.dir(), "typo.rhai"],
        vec!["check", site.dir()],
    ] {
        let out = fails(&args);
        assert!(out.contains("scripts/typo.rhai:3:5: Undefined variable: amout"), "{args:?}: {out}");
    }
}

/// The line of `needle` in the site's config file.
fn config_line(site: &Site, needle: &str) -> usize {
    let text = std::fs::read_to_string(site.dir.join("config/crmkit.toml")).unwrap();
    text.lines().position(|l| l.contains(needle)).expect("in the config") + 1
}

#[test]
fn a_binding_to_a_missing_function_names_the_config_line() {
    let site =
        Site::new(with_hooks("[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"deals.rhai::big_enuogh\"\n"));
    script(&site, "deals.rhai", DEALS);
    let line = config_line(&site, "big_enuogh");
    let place = format!("config/crmkit.toml:{line}: hooks: deals.rhai::big_enuogh bound to deal.before_transition");
    for args in [
        vec!["script", "check", site.dir()],
        vec!["check", site.dir()],
        vec!["serve", site.dir(), "--addr", "127.0.0.1:0"],
    ] {
        let out = fails(&args);
        assert!(out.contains(&place), "{args:?}: {out:?} does not say {place:?}");
        assert!(
            out.contains("defines no function big_enuogh; it defines big_enough(ctx), under_a_million(ctx)"),
            "{out}"
        );
    }
}

/// Rewrites the site's config file with `edit`, moving its modification time on.
fn edit_config(site: &Site, edit: impl FnOnce(String) -> String) {
    let path = site.dir.join("config/crmkit.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[test]
fn a_reload_applies_changed_bindings_and_keeps_them_when_the_config_is_bad() {
    let binding = "[[hooks]]\npoint = \"deal.before_transition\"\nhandler = \"deals.rhai::big_enough\"\n";
    let site = Site::new(with_hooks(binding));
    script(&site, "deals.rhai", DEALS);
    site.with(|inst| inst.store().transact(None, |tx| tx.create(User::new("boss", "Босс", Role::Admin))).unwrap());
    let admin = ok(&["token", "create", site.dir(), "--user", "boss", "--role", "admin"]).trim().to_string();
    let partner = site.partner("Альфа", PartnerRole::Client);
    let server = Served::start(&site);
    let deal = |amount: &str| {
        let body = json!({ "title": format!("Сделка на {amount}"), "partner": partner, "kind": "b2b_sale", "source": "website",
                           "amount": { "amount": amount, "currency": "RUB" } });
        let (status, d) = server.send("POST", "/api/v1/deals", &admin, body.to_string().as_bytes());
        assert_eq!(status, 201, "{d}");
        d
    };
    let try_move = |d: &Value| {
        let body = json!({ "version": d["version"], "stage": "needs_analysis" });
        server.send(
            "POST",
            &format!("/api/v1/deals/{}/move", d["id"].as_str().unwrap()),
            &admin,
            body.to_string().as_bytes(),
        )
    };
    let reload = || server.request("POST", "/api/v1/scripts/reload", Some(&admin));
    let small = deal("50000");
    let (status, body) = try_move(&small);
    assert_eq!((status, body["code"].as_str()), (422, Some("rejected")), "{body}");
    // The binding changes to another guard: after the reload the new one decides.
    edit_config(&site, |c| c.replace("deals.rhai::big_enough", "deals.rhai::under_a_million"));
    let (status, body) = reload();
    assert_eq!((status, &body["applied"]), (200, &json!(true)), "{body}");
    assert_eq!(
        body["bindings"].as_array().unwrap().iter().filter(|b| b["handler"] == "deals.rhai::under_a_million").count(),
        1,
        "{body}"
    );
    let (status, body) = try_move(&small);
    assert_eq!(status, 200, "the old guard is gone: {body}");
    let big = deal("2000000");
    let (status, body) = try_move(&big);
    assert_eq!(
        (status, body["message"].as_str()),
        (422, Some("deals.rhai::under_a_million: 2000000.00 is above a million")),
        "{body}"
    );
    let (_, listed) = server.request("GET", "/api/v1/scripts", Some(&admin));
    assert!(listed["bindings"].to_string().contains("deals.rhai::under_a_million"), "{listed}");
    // Bad configs: each refused with its file and line, the guard in force stays.
    let config = site.dir.join("config/crmkit.toml").display().to_string();
    let line = config_line(&site, "under_a_million");
    let good = std::fs::read_to_string(site.dir.join("config/crmkit.toml")).unwrap();
    let limits = config_line(&site, "[limits]");
    let cases = [
        // A binding to a function the script does not define.
        (
            good.replace("deals.rhai::under_a_million", "deals.rhai::nowhere"),
            format!(
                "{config}:{line}: hooks: deals.rhai::nowhere bound to deal.before_transition: \
                 scripts/deals.rhai: in nowhere(): defines no function nowhere"
            ),
        ),
        // Not TOML: an unterminated string.
        (
            good.replace(
                "point = \"deal.before_transition\"\nhandler = \"deals.rhai::under",
                "point = \"deal.before_transition\nhandler = \"deals.rhai::under",
            ),
            format!("{config}:{}", line - 1),
        ),
        // Another section changed with the binding: neither is applied.
        (
            good.replace("[limits]\ntimeout_ms = 20\n", "[limits]\ntimeout_ms = 200\n")
                .replace("under_a_million", "big_enough"),
            format!(
                "{config}:{limits}: [limits] changed; a reload applies [[hooks]] bindings and scripts only: \
                 restart the server"
            ),
        ),
    ];
    for (text, says) in cases {
        std::fs::write(site.dir.join("config/crmkit.toml"), text).unwrap();
        let (status, body) = reload();
        assert_eq!((status, &body["applied"]), (422, &json!(false)), "{body}");
        assert!(body["errors"].to_string().contains(&says.replace('"', "\\\"")), "{body} does not say {says:?}");
        let huge = deal("3000000");
        let (status, body) = try_move(&huge);
        assert_eq!(
            (status, body["message"].as_str()),
            (422, Some("deals.rhai::under_a_million: 3000000.00 is above a million")),
            "{body}"
        );
    }
    // A script that no longer compiles keeps the bindings in force too, and says where.
    std::fs::write(site.dir.join("config/crmkit.toml"), good.replace("under_a_million", "big_enough")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    script(&site, "deals.rhai", &DEALS.replace("let d = ctx.after;", "let d = ;"));
    let (status, body) = reload();
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"].to_string().contains("scripts/deals.rhai:3:13"), "{body}");
    let (status, _) = try_move(&deal("4000000"));
    assert_eq!(status, 422, "the guard in force still refuses");
    // Fixed: the change applies.
    script(&site, "deals.rhai", DEALS);
    let (status, body) = reload();
    assert_eq!((status, &body["applied"]), (200, &json!(true)), "{body}");
    let (status, body) = try_move(&deal("5000000"));
    assert_eq!(status, 200, "big_enough lets a big deal in: {body}");
}
