//! Config errors name the file, the line and the key; the shipped configs are valid.

use std::path::Path;

use crmkit_core::config::{Settings, DEFAULT_CONFIG};
use crmkit_core::model::{CustomFieldType, EntityKind};

/// Parses `text` as `config/crmkit.toml` and expects an error rendered exactly as `expected`.
fn check(text: &str, expected: &str) {
    let err = Settings::parse(text, Path::new("config/crmkit.toml")).expect_err("config must be refused");
    assert_eq!(err.to_string(), expected);
}

#[test]
fn unknown_keys_name_file_line_and_section() {
    check(
        "[defaults]\ncurrency = \"RUB\"\n\n[[process_kinds]]\nid = \"b2b\"\nname = \"B2B\"\nstgaes = []\n",
        "config/crmkit.toml:7:1: unknown key \"stgaes\" in [[process_kinds]] (expected one of id, name, mode, loss_reasons, require_competitor, require_loss_comment, reopen_roles, guidance, stages)",
    );
    check("[databse]\npath = \"x.redb\"\n", "config/crmkit.toml:1:2: unknown key \"databse\" (expected one of installation, database, defaults, attachments, users, lists, partner_link_types, contact_link_types, participant_link_types, custom_fields, process_kinds, process, hooks, limits, plans, analytics, strategies, strategy, claim_types, runtimes, scripting)");
}

#[test]
fn wrong_types_name_the_position() {
    let err = Settings::parse("[attachments]\nmax_size_mb = \"big\"\n", Path::new("config/crmkit.toml")).unwrap_err();
    assert_eq!(err.line, Some((2, 15)), "{err}");
    assert!(
        err.to_string().starts_with(
            "config/crmkit.toml:2:15: attachments.max_size_mb: invalid type: string \"big\", expected u64"
        ),
        "{err}"
    );
    let err = Settings::parse("[[users]]\nlogin = \"a.b\"\nname = \"A\"\nroles = \"admin\"\n", Path::new("c.toml"))
        .unwrap_err();
    assert!(
        err.to_string().starts_with("c.toml:4:9: users.roles: invalid type: string \"admin\", expected a sequence"),
        "{err}"
    );
}

#[test]
fn duplicate_list_values_and_other_semantic_errors() {
    check(
        "[lists]\nloss_reasons = [\n  { id = \"price\", name = \"Price\" },\n  { id = \"price\", name = \"Again\" },\n]\n",
        "config/crmkit.toml:4:10: duplicate value \"price\" in lists.loss_reasons",
    );
    check(
        "[[partner_link_types]]\nid = \"holding\"\nname = \"Mine\"\n",
        "config/crmkit.toml:2:6: built-in value \"holding\" in partner_link_types",
    );
    check(
        "[[users]]\nlogin = \"ann\"\nname = \"A\"\nroles = [\"admin\"]\n[[users]]\nlogin = \"ann\"\nname = \"B\"\nroles = [\"boss\"]\n",
        "config/crmkit.toml:6:9: duplicate user login \"ann\"",
    );
    check(
        "[[users]]\nlogin = \"bob\"\nname = \"B\"\nroles = [\"boss\"]\n",
        "config/crmkit.toml:4:10: unknown role \"boss\" (admin, head, manager, viewer)",
    );
    check(
        "[defaults]\ncurrency = \"RUR\"\n",
        "config/crmkit.toml:2:12: defaults.currency: \"RUR\" is not an ISO 4217 currency code",
    );
    check(
        "[[custom_fields.deal]]\nname = \"size\"\ntype = \"enum\"\nvalues = [\"s\", \"m\", \"s\"]\n",
        "config/crmkit.toml:4:21: empty or duplicate enum value \"s\"",
    );
    check(
        "[[custom_fields.deal]]\nname = \"x\"\ntype = \"colour\"\n",
        "config/crmkit.toml:3:8: unknown custom field type \"colour\" (string, number, money, date, bool, enum, reference)",
    );
    check(
        "[[custom_fields.deals]]\nname = \"x\"\ntype = \"string\"\n",
        "config/crmkit.toml:1:17: custom_fields: \"deals\" is not an entity type with custom fields (user, counterparty, partner, contact, deal, interaction, document, claim)",
    );
    check(
        "[[process_kinds]]\nid = \"a\"\nname = \"A\"\n[[process_kinds.stages]]\nid = \"s1\"\nname = \"S\"\n[[process_kinds.stages]]\nid = \"s1\"\nname = \"S again\"\n",
        "config/crmkit.toml:8:6: duplicate stage \"s1\" in process kind \"a\"",
    );
}

#[test]
fn the_shipped_configs_are_valid() {
    let s = Settings::parse(DEFAULT_CONFIG, Path::new("config/crmkit.toml")).unwrap();
    assert_eq!(s.process_kinds.len(), 4);
    assert!(s.lists.loss_reasons.contains("price"));
    assert!(s.partner_link_types.contains("holding") && s.partner_link_types.contains("dealer_of"));
    let deal_fields = s.custom_fields_of(EntityKind::Deal);
    assert!(matches!(deal_fields[1].ty, CustomFieldType::Enum { .. }));
    Settings::parse(crmkit_demo::DEMO_CONFIG, Path::new("config/demo.toml")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for entry in std::fs::read_dir(root.join("config")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        Settings::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_broken_installation_config_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(crmkit_core::time::SystemClock);
    crmkit_core::Installation::init(dir.path(), None, clock.clone()).unwrap();
    let file = dir.path().join("config/crmkit.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace("[attachments]", "[attachments]\nmax_size = 3");
    std::fs::write(&file, text).unwrap();
    let err = crmkit_core::Installation::open(dir.path(), clock).err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("config/crmkit.toml:") && msg.contains("unknown key \"max_size\" in [attachments]"), "{msg}");
}

#[test]
fn config_users_and_lists_are_checked_when_loading() {
    let base = crmkit_core::config::DEFAULT_CONFIG;
    let err =
        Settings::parse(&base.replace("name = \"Administrator\"", "name = \"  \""), Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("users.name must not be empty"), "{err}");
    // The list is there and empty (not renamed away, which an unknown key would refuse first).
    let start = base.find("loss_reasons = [\n").expect("the default lists loss reasons");
    let end = start + base[start..].find("\n]\n").expect("the list ends") + 2;
    let no_reasons = format!("{}loss_reasons = []{}", &base[..start], &base[end..]);
    let err = Settings::parse(&no_reasons, Path::new("c.toml")).unwrap_err();
    assert_eq!(err.to_string(), "c.toml: lists.loss_reasons is empty: a deal could never be closed as lost");
    let required_user_field =
        format!("{base}\n[[custom_fields.user]]\nname = \"badge\"\ntype = \"string\"\nrequired = true\n");
    let err = Settings::parse(&required_user_field, Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("cannot be required while [[users]] are declared"), "{err}");
}

#[test]
fn opening_an_installation_again_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock =
        std::sync::Arc::new(crmkit_core::time::ManualClock::new(crmkit_core::time::Timestamp(1_700_000_000_000)));
    let config = crmkit_core::config::DEFAULT_CONFIG
        .replace("roles = [\"admin\"]", "roles = [\"viewer\", \"admin\"]")
        .replace("name = \"Administrator\"", "name = \" Administrator \"");
    drop(crmkit_core::Installation::init(dir.path(), Some(&config), clock.clone()).unwrap());
    let first = crmkit_core::Installation::open(dir.path(), clock.clone()).unwrap();
    let before = crate::common::dump(first.store());
    drop(first);
    let again = crmkit_core::Installation::open(dir.path(), clock).unwrap();
    assert!(crate::common::dump(again.store()) == before, "reopening rewrote the config users");
}

#[test]
fn script_limits_are_read_and_checked() {
    use crmkit_rhai::RhaiSettings;
    let s = Settings::parse(DEFAULT_CONFIG, Path::new("crmkit.toml")).unwrap();
    assert_eq!((s.limits.timeout_ms, s.limits.report_timeout_ms), (20, 60_000));
    let rhai = RhaiSettings::from_settings(&s).unwrap();
    assert_eq!((rhai.timeout_ms, rhai.max_operations, rhai.imports), (20, 1_000_000, true));
    assert!(s.hooks.iter().any(|h| h.handler == "stages/guards.rhai::quote_before_leaving_proposal"));
    let text = DEFAULT_CONFIG.replacen("[limits]\ntimeout_ms = 20", "[limits]\ntimeout_ms = 0", 1);
    let err = Settings::parse(&text, Path::new("crmkit.toml")).unwrap_err().to_string();
    assert!(err.starts_with("crmkit.toml:") && err.contains("limits.timeout_ms must be above zero, got 0"), "{err}");
    // The Rhai runtime reads and checks its own section, naming file, line and key.
    let line_of = |text: &str, what: &str| text.lines().position(|l| l.starts_with(what)).unwrap() + 1;
    let text = DEFAULT_CONFIG.replacen("max_operations = 1000000", "max_operations = 0", 1);
    let err = RhaiSettings::from_settings(&Settings::parse(&text, Path::new("crmkit.toml")).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "crmkit.toml:{}:18: runtimes.rhai.max_operations must be above zero, got 0",
            line_of(&text, "max_operations = 0")
        )
    );
    let text = DEFAULT_CONFIG.replacen("max_operations = 1000000", "max_operatoins = 5", 1);
    let err = RhaiSettings::from_settings(&Settings::parse(&text, Path::new("crmkit.toml")).unwrap()).unwrap_err();
    let err = err.to_string();
    assert!(
        err.starts_with(&format!("crmkit.toml:{}:1: unknown key \"max_operatoins\"", line_of(&text, "max_operatoins"))),
        "{err}"
    );
    assert!(
        err.contains("runtimes.rhai") && err.contains("max_call_depth"),
        "it names the section and the keys: {err}"
    );
    let text = DEFAULT_CONFIG.replacen("imports = true", "imports = \"yes\"", 1);
    let err = RhaiSettings::from_settings(&Settings::parse(&text, Path::new("crmkit.toml")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("imports"), "{err}");
    // A config written before the split says where its keys went.
    let text = DEFAULT_CONFIG.replacen("[limits]", "[scripting]", 1);
    let err = Settings::parse(&text, Path::new("crmkit.toml")).unwrap_err().to_string();
    assert!(err.contains("[scripting] is split: timeout_ms and report_timeout_ms go to [limits]"), "{err}");
    let text =
        format!("{DEFAULT_CONFIG}\n[[hooks]]\npoint = \"deal.route\"\nhandler = \"x.rhai::f\"\nmax_operations = 0\n");
    let err = Settings::parse(&text, Path::new("crmkit.toml")).unwrap_err().to_string();
    assert!(err.contains("hooks.max_operations must be above zero"), "{err}");
}

#[test]
fn multiple_is_for_enum_fields_only_and_an_unknown_key_is_still_an_error() {
    check(
        "[[custom_fields.deal]]\nname = \"note\"\ntype = \"string\"\nmultiple = true\n",
        "config/crmkit.toml:4:12: \"multiple\" is only for enum fields, not string",
    );
    check(
        "[[custom_fields.partner]]\nname = \"owner\"\ntype = \"reference\"\ntarget = \"user\"\nmultiple = false\n",
        "config/crmkit.toml:5:12: \"multiple\" is only for enum fields, not reference",
    );
    check(
        "[[custom_fields.deal]]\nname = \"kit\"\ntype = \"enum\"\nvalues = [\"a\"]\nmultipel = true\n",
        "config/crmkit.toml:5:1: unknown key \"multipel\" in [[custom_fields.deal]] (expected one of name, label, type, required, values, target, multiple)",
    );
    check(
        "[[custom_fields.deal]]\nname = \"kit\"\ntype = \"enum\"\nvalues = [\"a\"]\nmultiple = \"yes\"\n",
        "config/crmkit.toml:5:12: custom_fields.deal.multiple: invalid type: string \"yes\", expected a boolean",
    );
    let text = format!(
        "{DEFAULT_CONFIG}\n[[custom_fields.deal]]\nname = \"kit\"\ntype = \"enum\"\nvalues = [\"a\", \"b\"]\nmultiple = true\n[[custom_fields.deal]]\nname = \"one\"\ntype = \"enum\"\nvalues = [\"a\"]\n"
    );
    let s = Settings::parse(&text, Path::new("c.toml")).unwrap();
    let defs = s.custom_fields_of(EntityKind::Deal);
    let ty = |name: &str| &defs.iter().find(|d| d.name == name).unwrap().ty;
    assert_eq!(*ty("kit"), CustomFieldType::Enum { values: vec!["a".into(), "b".into()], multiple: true });
    assert_eq!(*ty("one"), CustomFieldType::Enum { values: vec!["a".into()], multiple: false });
    // The default installation declares one, so that every installation can see the form.
    let builtin = Settings::builtin();
    assert!(builtin.custom_fields_of(EntityKind::Deal).iter().any(|d| d.name == "equipment" && d.ty.is_multiple()));
}

#[test]
fn wasm_runtime_mistakes_name_file_line_and_key() {
    use crmkit_wasm::WasmSettings;
    let wasm = |section: &str| {
        let text = format!("{DEFAULT_CONFIG}\n[runtimes.wasm]\n{section}\n");
        let line = text.lines().count();
        let settings = Settings::parse(&text, Path::new("crmkit.toml")).unwrap();
        (WasmSettings::from_settings(&settings).map_err(|e| e.to_string()), line)
    };
    for (section, expected) in [
        ("max_host_calls = 0", "runtimes.wasm.max_host_calls must be above zero, got 0"),
        ("memory_mb = 128", "runtimes.wasm.memory_mb (128) is above runtimes.wasm.max_memory_mb (64)"),
        (
            "grants.scoring = [\"read_everything\"]",
            "runtimes.wasm.grants.scoring: unknown capability \"read_everything\"",
        ),
        ("instance_slots = 5000", "runtimes.wasm.instance_slots is 5000, at most 4096"),
        ("dir = \" \"", "runtimes.wasm.dir must not be empty"),
        ("reuse = \"scoring\"", "invalid type: string \"scoring\", expected a sequence"),
        ("reuses = [\"scoring\"]", "unknown key \"reuses\" in [runtimes.wasm] (expected one of dir, max_timeout_ms, memory_mb, max_memory_mb, max_input_bytes, max_answer_bytes, max_host_calls, fuel, cache, grants, reuse, instance_slots)"),
    ] {
        let (result, line) = wasm(section);
        let err = result.expect_err(section);
        assert!(err.starts_with(&format!("crmkit.toml:{line}:")), "{section}: {err}");
        assert!(err.contains(expected), "{section}: {err:?} does not contain {expected:?}");
    }
    let (ok, _) = wasm("reuse = [\"scoring\"]\ninstance_slots = 0");
    let ok = ok.unwrap();
    assert_eq!((ok.reuse, ok.instance_slots), (vec!["scoring".to_string()], 0));
}
