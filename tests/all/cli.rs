//! The `crmkit` command line as a user runs it: the real binary on installations built with
//! the core API — attachments, the partner graph, a competitor's and a contact's deals,
//! merges — with every refused write checked against a dump of the database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use crmkit_core::config::DEFAULT_CONFIG;
use crmkit_core::id::{DealId, PartnerId, UserId};
use crmkit_core::model::{
    ContactPerson, ContentHash, Deal, Participant, Partner, PartnerLink, PartnerRole, Role, User,
};
use crmkit_core::process::{Hooks, Outcome};
use crmkit_core::store::Reader;
use crmkit_core::time::ManualClock;
use crmkit_core::Installation;
use serde_json::Value;

use crate::common::{dump, native_engine, new_deal, Dump, T0};

/// The `crmkit` binary of this build: Cargo builds it for the tests of its package, which
/// these are, with their profile and target folder.
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_crmkit"))
}

fn crmkit(args: &[&str]) -> Output {
    Command::new(binary()).args(args).output().expect("crmkit runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `crmkit args`, which must succeed; returns its stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let o = crmkit(args);
    assert!(o.status.success(), "crmkit {args:?} failed: {}", text(&o));
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// Runs `crmkit args … --format json`, which must succeed; returns the JSON.
pub(crate) fn json(args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--format", "json"]).collect();
    let out = ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("crmkit {args:?}: not JSON ({e}): {out}"))
}

/// Runs `crmkit args`, which must fail with exit code 1; returns what it printed.
pub(crate) fn fails(args: &[&str]) -> String {
    let o = crmkit(args);
    assert_eq!(o.status.code(), Some(1), "crmkit {args:?} should have failed: {}", text(&o));
    text(&o)
}

/// An installation in a temporary folder, filled through the core API and closed again so
/// that the binary can open it.
pub(crate) struct Site {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
}

impl Site {
    /// A new installation with the default config, `edit` applied to its text.
    pub(crate) fn new(edit: impl FnOnce(String) -> String) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let config = edit(DEFAULT_CONFIG.to_string());
        Installation::init(&dir, Some(&config), Arc::new(ManualClock::new(T0))).unwrap();
        Site { _tmp: tmp, dir }
    }

    pub(crate) fn dir(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 temporary folder")
    }

    /// Opens the installation for `f`, and closes it again.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Installation) -> R) -> R {
        let inst = Installation::open(&self.dir, Arc::new(ManualClock::new(T0))).unwrap();
        f(&inst)
    }

    /// Every key and value of the database.
    pub(crate) fn dump(&self) -> Dump {
        self.with(|inst| dump(inst.store()))
    }

    pub(crate) fn partner(&self, name: &str, role: PartnerRole) -> PartnerId {
        self.with(|inst| inst.store().transact(None, |tx| Ok(tx.create(Partner::new(name, role))?.id)).unwrap())
    }

    fn link(&self, from: PartnerId, to: PartnerId, link_type: &str) {
        self.with(|inst| inst.store().transact(None, |tx| tx.create(PartnerLink::new(from, to, link_type))).unwrap());
    }

    pub(crate) fn manager(&self) -> UserId {
        self.with(|inst| {
            inst.store().transact(None, |tx| Ok(tx.create(User::new("petrov", "Пётр Петров", Role::Manager))?.id))
        })
        .unwrap()
    }

    pub(crate) fn deal(&self, partner: PartnerId, manager: UserId, amount: i64) -> DealId {
        self.with(|inst| {
            inst.store().transact(Some(manager), |tx| Ok(tx.create(new_deal(partner, manager, amount))?.id))
        })
        .unwrap()
    }

    /// Writes `bytes` to a file named `name` next to the installation.
    pub(crate) fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.with_file_name(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn blob_chunks(&self) -> u64 {
        json(&["stats", self.dir()])["blob_chunks"].as_u64().unwrap()
    }
}

/// `n` bytes that do not repeat in any short period.
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn attach_list_and_fetch_give_back_the_same_bytes() {
    let site = Site::new(|c| c);
    let client = site.partner("Альфа", PartnerRole::Client);
    let entity = format!("partner:{client}");
    // More than two of the store's 1 MiB chunks, so the content comes back in pieces.
    let bytes = noise(2_500_000, 1);
    let file = site.file("offer.pdf", &bytes);

    let attached = json(&["attach", site.dir(), &entity, &file]);
    let att = &attached["attachment"];
    assert_eq!(attached["already_stored"], false);
    assert_eq!((att["name"].as_str(), att["mime"].as_str()), (Some("offer.pdf"), Some("application/pdf")));
    assert_eq!(att["size"], bytes.len());
    assert_eq!(att["content"], ContentHash::of(&bytes).hex());
    let id = att["id"].as_str().unwrap();

    let listed = json(&["attachments", site.dir(), &entity]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(&listed[0], att);
    let table = ok(&["attachments", site.dir(), &entity]);
    for column in ["offer.pdf", "application/pdf", "2.4 MiB", &ContentHash::of(&bytes).hex(), id] {
        assert!(table.contains(column), "{column:?} missing from {table}");
    }

    let o = crmkit(&["fetch", site.dir(), id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stdout == bytes, "fetch to stdout gave {} other bytes", o.stdout.len());
    let out = site.dir.with_file_name("back.pdf");
    let said = ok(&["fetch", site.dir(), id, "--out", out.to_str().unwrap()]);
    assert!(said.contains(&format!("wrote {} bytes", bytes.len())), "{said}");
    assert!(std::fs::read(&out).unwrap() == bytes);

    // A name and a MIME type of one's own; an empty file is content too.
    let empty = site.file("empty", b"");
    let attached = json(&["attach", site.dir(), &entity, &empty, "--name", "Пусто.txt", "--mime", "text/plain"]);
    assert_eq!(
        (attached["attachment"]["name"].as_str(), attached["attachment"]["size"].as_u64()),
        (Some("Пусто.txt"), Some(0))
    );
    let o = crmkit(&["fetch", site.dir(), attached["attachment"]["id"].as_str().unwrap()]);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
}

#[test]
fn shared_content_is_stored_once_and_freed_with_its_last_attachment() {
    let site = Site::new(|c| c);
    let client = site.partner("Альфа", PartnerRole::Client);
    let manager = site.manager();
    let deal = site.deal(client, manager, 1_000_000);
    let bytes = noise(1_500_000, 2);
    let file = site.file("contract.docx", &bytes);
    assert_eq!(site.blob_chunks(), 0);

    let first = json(&["attach", site.dir(), &format!("partner:{client}"), &file]);
    assert_eq!(first["already_stored"], false);
    let chunks = site.blob_chunks();
    assert_eq!(chunks, 2, "1.5 MB in 1 MiB chunks");
    let second = ok(&["attach", site.dir(), &format!("deal:{deal}"), &file, "--as", "petrov"]);
    assert!(second.contains("already stored"), "{second}");
    assert_eq!(site.blob_chunks(), chunks, "the same content is not stored twice");
    let listed = json(&["attachments", site.dir(), &format!("deal:{deal}")]);
    let (one, two) = (first["attachment"]["id"].as_str().unwrap(), listed[0]["id"].as_str().unwrap());
    assert_eq!(listed[0]["content"], first["attachment"]["content"]);

    let said = ok(&["detach", site.dir(), one]);
    assert!(said.contains("stays: other attachments share it"), "{said}");
    assert_eq!(site.blob_chunks(), chunks);
    assert!(crmkit(&["fetch", site.dir(), two]).stdout == bytes, "the other attachment still has the content");
    assert!(fails(&["fetch", site.dir(), one]).contains(&format!("attachment {one} does not exist")));

    let said = ok(&["detach", site.dir(), two, "--as", "petrov"]);
    assert!(said.contains("is freed"), "{said}");
    assert_eq!(site.blob_chunks(), 0, "the last attachment took the content with it");
    assert_eq!(json(&["attachments", site.dir(), &format!("deal:{deal}")]), serde_json::json!([]));
    let refused = fails(&["detach", site.dir(), two]);
    assert!(refused.contains(&format!("attachment {two} does not exist")), "{refused}");
}

#[test]
fn an_attachment_over_the_limit_is_refused_and_writes_nothing() {
    let site = Site::new(|c| {
        assert_eq!(c.matches("max_size_mb = 25").count(), 1);
        c.replacen("max_size_mb = 25", "max_size_mb = 1", 1)
    });
    let client = site.partner("Альфа", PartnerRole::Client);
    let entity = format!("partner:{client}");
    let limit = 1024 * 1024;
    let big = site.file("scan.tiff", &noise(limit + 1, 3));
    let before = site.dump();
    let stats = ok(&["stats", site.dir(), "--format", "json"]);

    let refused = fails(&["attach", site.dir(), &entity, &big]);
    for part in [&big, &client.to_string(), "1048576", "attachments.max_size_mb", "nothing was written"] {
        assert!(refused.contains(part), "{part:?} missing from {refused}");
    }
    assert!(site.dump() == before, "a refused attachment changed the database");
    let listed = ok(&["attachments", site.dir(), &entity]);
    assert_eq!(listed.trim(), format!("partner {client}: 0 attachment(s)"));
    assert_eq!(ok(&["stats", site.dir(), "--format", "json"]), stats);

    // Exactly the limit is accepted.
    let fits = site.file("fits.bin", &noise(limit, 4));
    assert_eq!(json(&["attach", site.dir(), &entity, &fits])["attachment"]["size"], limit);

    // What else is refused names what was wrong, and writes nothing either.
    let before = site.dump();
    let cases: [(&[&str], &str); 6] = [
        (&["attach", site.dir(), "partner", &fits], "\"partner\" is not an entity: write KIND:ID"),
        (&["attach", site.dir(), "folder:01J9Z0CR00000000000000000E", &fits], "\"folder\" is not a kind of entity"),
        (
            &["attach", site.dir(), "deal:01J9Z0CR00000000000000000E", &fits],
            "deal 01J9Z0CR00000000000000000E does not exist",
        ),
        (&["attach", site.dir(), &entity, "/nonexistent/file.pdf"], "opening /nonexistent/file.pdf"),
        (&["attach", site.dir(), &entity, &fits, "--mime", "pdf"], "attachment.mime: \"pdf\" is not a MIME type"),
        (&["attach", site.dir(), &entity, &fits, "--as", "nobody"], "--as: no user has the login \"nobody\""),
    ];
    for (args, needle) in cases {
        let msg = fails(args);
        assert!(msg.contains(needle), "crmkit {args:?}: {needle:?} missing from {msg}");
    }
    assert!(site.dump() == before, "a refused attachment changed the database");
}

#[test]
fn neighbours_and_paths_on_a_small_graph() {
    let site = Site::new(|c| c);
    let holding = site.partner("Холдинг", PartnerRole::Client);
    let plant = site.partner("Завод", PartnerRole::Client);
    let referrer = site.partner("Рекомендатель", PartnerRole::Other);
    let alone = site.partner("Одиночка", PartnerRole::Client);
    site.link(holding, plant, "holding");
    site.link(referrer, plant, "recommended_by");

    let n = json(&["neighbours", site.dir(), "Завод"]);
    let mut seen: Vec<(String, String, String)> = n["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let s = |v: &Value| v.as_str().unwrap().to_string();
            (s(&x["partner"]["name"]), s(&x["link"]["link_type"]), s(&x["direction"]))
        })
        .collect();
    seen.sort();
    let expected = [("Рекомендатель", "recommended_by", "incoming"), ("Холдинг", "holding", "incoming")];
    assert_eq!(seen, expected.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
    let table = ok(&["neighbours", site.dir(), &holding.to_string(), "--link-type", "holding"]);
    assert!(table.contains("Холдинг") && table.contains(": 1 link(s) of type holding"), "{table}");
    assert!(table.lines().any(|l| l.split_whitespace().eq(["holding", "→", "Завод", &plant.to_string()])), "{table}");
    let only = json(&["neighbours", site.dir(), "Завод", "--link-type", "holding"]);
    assert_eq!(only["neighbours"].as_array().unwrap().len(), 1);
    let msg = fails(&["neighbours", site.dir(), "Завод", "--link-type", "friends"]);
    assert!(msg.contains("\"friends\" is not a partner link type (holding, affiliated"), "{msg}");
    assert!(ok(&["neighbours", site.dir(), "Одиночка"]).contains("0 link(s)"));

    // Холдинг → Завод along the holding link, then Завод → Рекомендатель against its link.
    let path = ok(&["path", site.dir(), "Холдинг", &referrer.to_string()]);
    let lines: Vec<&str> = path.lines().collect();
    assert_eq!(
        lines,
        [
            "Холдинг → Рекомендатель: 2 link(s)",
            "  1. Холдинг  -[holding]->  Завод",
            "  2. Завод  <-[recommended_by]-  Рекомендатель"
        ],
        "{path}"
    );
    let p = json(&["path", site.dir(), "Холдинг", "Рекомендатель"]);
    let hops = p["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!((hops[0]["direction"].as_str(), hops[1]["direction"].as_str()), (Some("forward"), Some("backward")));
    assert_eq!(hops[1]["to"]["id"], referrer.to_string());
    assert_eq!(
        ok(&["path", site.dir(), "Холдинг", "Рекомендатель", "--max-depth", "1"]).trim(),
        "no path within 1 link from Холдинг to Рекомендатель"
    );
    assert_eq!(
        ok(&["path", site.dir(), "Холдинг", "Одиночка"]).trim(),
        "no path within 6 links from Холдинг to Одиночка"
    );
    assert_eq!(json(&["path", site.dir(), "Холдинг", &alone.to_string()])["hops"], Value::Null);
    assert!(
        fails(&["path", site.dir(), "Холдинг", "Никто"]).contains("TO: no partner has the id or the name \"Никто\"")
    );
}

#[test]
fn a_competitors_deals_and_a_contacts_deals() {
    let site = Site::new(|c| c);
    let client = site.partner("Альфа", PartnerRole::Client);
    let rival = site.partner("Конкурент", PartnerRole::Competitor);
    let manager = site.manager();
    let open = site.deal(client, manager, 1_000_000);
    let lost = site.deal(client, manager, 250_000);
    let contact = site.with(|inst| {
        inst.store()
            .transact(Some(manager), |tx| {
                let mut c = ContactPerson::new(client, "Иван Сидоров");
                c.emails.push("i.sidorov@alfa.example".into());
                let c = tx.create(c)?;
                tx.create(Participant::partner(open, rival, "competitor"))?;
                tx.create(Participant::contact(open, c.id, "decision_maker"))?;
                let deal = tx.load::<Deal>(lost)?;
                let reason = "price".to_string();
                let outcome = Outcome::Lost { reason, competitor: Some(rival), comment: String::new() };
                native_engine(Hooks::new()).close(tx, lost, deal.version, outcome)?;
                Ok(c.id)
            })
            .unwrap()
    });

    let c = json(&["competitor", site.dir(), "Конкурент"]);
    let count = |k: &str| c["outcomes"][k]["deals"].as_u64().unwrap();
    let counts = ["in_progress", "on_hold", "won", "lost", "lost_to_them"].map(count);
    assert_eq!(counts, [1, 0, 0, 1, 1], "{c}");
    assert_eq!(c["outcomes"]["lost_to_them"]["amount"]["RUB"], "250000");
    let deals = c["deals"].as_array().unwrap();
    assert_eq!(deals.len(), 2);
    assert_eq!(deals[0]["deal"]["id"], open.to_string());
    assert_eq!(deals[0]["as_participant"][0]["role"], "competitor");
    assert_eq!(
        (deals[1]["deal"]["id"].as_str(), deals[1]["won_against_us"].as_bool()),
        (Some(&*lost.to_string()), Some(true))
    );
    let table = ok(&["competitor", site.dir(), &rival.to_string()]);
    assert!(table.contains("2 deal(s): 1 in progress (1000000 RUB), 0 on hold, 0 won by us, 1 lost (250000 RUB) — 1 of them to Конкурент (250000 RUB)"), "{table}");
    assert!(table.lines().any(|l| l.contains("lost to them") && l.contains("won the deal")), "{table}");

    for key in [contact.to_string(), "i.sidorov@ALFA.example".into(), "иван сидоров".into()] {
        let t = json(&["contact-deals", site.dir(), &key]);
        assert_eq!(t["contact"]["id"], contact.to_string(), "{key}");
        assert_eq!(t["deals"].as_array().unwrap().len(), 1, "{key}");
        assert_eq!(t["deals"][0]["as_participant"][0]["role"], "decision_maker");
    }
    let table = ok(&["contact-deals", site.dir(), "Иван Сидоров"]);
    assert!(table.starts_with("Иван Сидоров (Альфа)") && table.contains("decision_maker"), "{table}");
    let msg = fails(&["contact-deals", site.dir(), "Пётр Иванов"]);
    assert!(msg.contains("no contact person has the id, e-mail or name \"Пётр Иванов\""), "{msg}");
}

#[test]
fn a_refused_merge_writes_nothing() {
    let site = Site::new(|c| c);
    let client = site.partner("Альфа", PartnerRole::Client);
    site.partner("Бета", PartnerRole::Client);
    let before = site.dump();
    let msg = fails(&["merge", site.dir(), "Альфа", &client.to_string()]);
    assert!(msg.contains(&format!("partner {client} cannot be merged into itself")), "{msg}");
    assert!(msg.contains("nothing was written"), "{msg}");
    let msg = fails(&["merge", site.dir(), "Альфа", "Бета", "--as", "nobody"]);
    assert!(msg.contains("--as: no user has the login \"nobody\""), "{msg}");
    let msg = fails(&["merge", site.dir(), "Альфа", "Гамма"]);
    assert!(msg.contains("DUPLICATE: no partner has the id or the name \"Гамма\""), "{msg}");
    assert!(site.dump() == before, "a refused merge changed the database");
}

#[test]
fn a_merge_moves_everything_to_the_partner_that_stays() {
    let site = Site::new(|c| c);
    let keep = site.partner("Альфа", PartnerRole::Client);
    let dup = site.partner("Альфа (дубль)", PartnerRole::Client);
    let other = site.partner("Гамма", PartnerRole::Client);
    let manager = site.manager();
    let deal = site.deal(dup, manager, 500_000);
    site.link(dup, other, "affiliated");
    let file = site.file("card.txt", b"requisites");
    ok(&["attach", site.dir(), &format!("partner:{dup}"), &file]);

    let m = json(&["merge", site.dir(), "Альфа", "Альфа (дубль)", "--as", "petrov"]);
    assert_eq!(m["kept"]["id"], keep.to_string());
    assert_eq!(m["deleted"]["id"], dup.to_string());
    let moved = &m["moved"];
    assert_eq!([&moved["deals"], &moved["links_moved"], &moved["attachments"]], [1, 1, 1], "{m}");

    assert!(fails(&["neighbours", site.dir(), &dup.to_string()]).contains("no partner has the id or the name"));
    let n = json(&["neighbours", site.dir(), "Гамма"]);
    assert_eq!(n["neighbours"][0]["partner"]["id"], keep.to_string());
    assert_eq!(json(&["attachments", site.dir(), &format!("partner:{keep}")]).as_array().unwrap().len(), 1);
    let dossier = json(&["dossier", site.dir(), &keep.to_string()]);
    assert_eq!(dossier["deals"]["open"][0]["id"], deal.to_string());
    assert!(ok(&["check", site.dir()]).contains("indexes consistent"));
}

#[test]
fn import_reports_bad_rows_next_to_the_file_and_export_reads_back() {
    let site = Site::new(|c| c);
    // Spreadsheet-style: semicolons, Russian headers mapped by a mapping file.
    let input = site.file(
        "clients.csv",
        "Код;Наименование;Роли;Регион\nK1;Альфа;client;Сибирь\nK2;;client;Урал\nK3;Бета;supplier;Урал\n".as_bytes(),
    );
    let mapping = site.file(
        "clients.toml",
        "[columns]\n\"Код\" = \"key\"\n\"Наименование\" = \"name\"\n\"Роли\" = \"roles\"\n\"Регион\" = \"-\"\n"
            .as_bytes(),
    );
    let report = PathBuf::from(&input).with_file_name("clients.errors.csv");
    let before = site.dump();
    let out = fails(&["import", site.dir(), "--entity", "partners", &input, "--map", &mapping, "--dry-run"]);
    assert!(out.contains("dry run, nothing written") && out.contains("2 created"), "{out}");
    assert_eq!(before, site.dump(), "a dry run wrote something");
    let out = fails(&["import", site.dir(), "--entity", "partners", &input, "--map", &mapping]);
    assert!(out.contains("2 created") && out.contains("1 failed") && out.contains("row 2 (line 3), name"), "{out}");
    let listed = std::fs::read_to_string(&report).unwrap();
    assert_eq!(listed.lines().next(), Some("row,line,key,field,message"));
    assert!(listed.lines().nth(1).unwrap().starts_with("2,3,K2,name,"), "{listed}");
    // The fixed file again: the two partners stay as they are, the third comes in, and the
    // stale report goes away.
    std::fs::write(
        &input,
        "Код;Наименование;Роли;Регион\nK1;Альфа;client;Сибирь\nK2;Гамма;client;Урал\nK3;Бета;supplier;Урал\n",
    )
    .unwrap();
    let out = ok(&["import", site.dir(), "--entity", "partners", &input, "--map", &mapping]);
    assert!(out.contains("1 created, 0 updated, 2 unchanged, 0 failed"), "{out}");
    assert!(!report.exists(), "the report of the earlier run is still there");
    // Export to stdout and to a file: the keys come back, and the file imports unchanged.
    let csv = ok(&["export", site.dir(), "--entity", "partners"]);
    assert!(csv.starts_with("key,name,roles,parent,manager"), "{csv}");
    assert!(csv.contains("K2,Гамма,client,"), "{csv}");
    let out_file = site.dir.with_file_name("partners.jsonl");
    let said =
        ok(&["export", site.dir(), "--entity", "partners", "--format", "jsonl", "--out", out_file.to_str().unwrap()]);
    assert!(said.contains("3 partner rows written"), "{said}");
    let out = ok(&["import", site.dir(), "--entity", "partners", out_file.to_str().unwrap()]);
    assert!(out.contains("0 created, 0 updated, 3 unchanged"), "{out}");
    // A file that is not CSV all the way: the import stops at the broken quote and says where.
    let broken = site.file("broken.csv", b"key,name,roles\nK9,\"Open,client\n");
    let out = fails(&["import", site.dir(), "--entity", "partners", &broken]);
    assert!(out.contains("line 2") && out.contains("unterminated quote"), "{out}");
    let out = fails(&["import", site.dir(), "--entity", "leads", &broken]);
    assert!(out.contains("\"leads\" is not an entity"), "{out}");
}

#[test]
fn scripts_are_checked_and_run_from_the_command_line() {
    let site = Site::new(|c| c);
    let out = ok(&["check", site.dir()]);
    assert!(out.contains("scripts: ok (10 compiled, 4 bindings to script functions checked)"), "{out}");
    let out = ok(&["script", "check", site.dir()]);
    assert!(out.contains("10 scripts compiled"), "{out}");
    // A dry run of the route script against the installation: a client with no won deals,
    // its deal as the hook contract writes it (docs/hooks.md).
    let p = site.partner("Альфа", PartnerRole::Client);
    let id = site.deal(p, site.manager(), 2_000_000);
    let deal = site
        .with(|inst| crmkit_core::hooks::wire::DealV1::from(&inst.store().read().unwrap().load::<Deal>(id).unwrap()));
    let ctx = serde_json::json!({ "v": 1, "hook": "deal.route", "process_kind": "b2b_sale", "entity": "deal",
        "actor": null, "before": null, "after": deal, "transition": null, "task": null, "depth": 0 });
    let input = site.file("ctx.json", ctx.to_string().as_bytes());
    let out = ok(&["script", "run", site.dir(), "stages/routes.rhai", "approval_for_new_clients", "--input", &input]);
    assert_eq!(out.trim(), "\"approval\"");
    // A broken script: both checks name the file, line and column, and fail.
    let guards = site.dir.join("scripts/stages/guards.rhai");
    std::fs::write(&guards, "fn quote_before_leaving_proposal(ctx) {\n    let t = ;\n}\n").unwrap();
    let out = fails(&["script", "check", site.dir()]);
    assert!(out.contains("scripts/stages/guards.rhai:2:13"), "{out}");
    let out = fails(&["check", site.dir()]);
    assert!(out.contains("scripts/stages/guards.rhai:2:13"), "{out}");
}

#[test]
fn attach_takes_the_mime_type_from_the_same_table_as_imports() {
    let site = Site::new(|c| c);
    let entity = format!("partner:{}", site.partner("Альфа", PartnerRole::Client));
    for (name, mime) in [
        ("scan.JPG", "image/jpeg"),
        ("offer.odt", "application/vnd.oasis.opendocument.text"),
        ("photo.webp", "image/webp"),
        ("notes", "application/octet-stream"),
    ] {
        let file = site.file(name, name.as_bytes());
        let attached = json(&["attach", site.dir(), &entity, &file]);
        assert_eq!(attached["attachment"]["mime"].as_str(), Some(mime), "{name}");
        assert_eq!(crmkit_core::model::mime_of_name(name), mime, "{name}");
    }
}

/// The command line prints an error's chain; a file error says its cause once.
#[test]
fn a_file_error_says_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crm");
    let dir = dir.to_str().unwrap();
    ok(&["init", dir]);
    let out = fails(&["init", dir]);
    let config = std::path::Path::new(dir).join("config/crmkit.toml");
    assert_eq!(out.trim(), format!("error: {}: an installation is already there", config.display()));
}

/// `crmkit score` with no `deal.score` binding says so and scores nothing.
#[test]
fn score_without_a_bound_model_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crm");
    let dir = dir.to_str().unwrap();
    ok(&["init", dir]);
    let out = fails(&["score", dir, "--all"]);
    assert!(out.contains("no deal.score handler is bound in") && out.contains("nothing to score"), "{out}");
}
