//! The `crmkit` command line as a user runs it: the real binary on installations built with
//! the core API — attachments, the partner graph, a competitor's and a contact's deals,
//! merges — with every refused write checked against a dump of the database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use crmkit_core::config::DEFAULT_CONFIG;
use crmkit_core::id::{DealId, PartnerId, UserId};
use crmkit_core::model::{
    ContactPerson, ContentHash, Deal, Participant, Partner, PartnerLink, PartnerRole, Role, User,
};
use crmkit_core::process::{Engine, Hooks, Outcome};
use crmkit_core::store::Reader;
use crmkit_core::time::ManualClock;
use crmkit_core::Installation;
use serde_json::Value;

use crate::common::{dump, new_deal, Dump, T0};

/// The `crmkit` binary of this build. Cargo hands its path (`CARGO_BIN_EXE_crmkit`) only to
/// the tests of the binary's own package, so it is built here, once, by the cargo running
/// these tests, with their profile and target folder; when it is fresh that costs a moment.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // The tests run from <target>/<profile folder>/deps/.
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("the test binary lives in <target>/<profile>/deps");
        let target = profile_dir.parent().expect("a target folder");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(other) => other.to_string(),
            None => panic!("{} names no profile", profile_dir.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "crmkit", "--bin", "crmkit", "--profile", &profile])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the crmkit binary failed: {status}");
        let bin = profile_dir.join(format!("crmkit{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "cargo built crmkit, but not at {}", bin.display());
        bin
    })
}

fn crmkit(args: &[&str]) -> Output {
    Command::new(binary()).args(args).output().expect("crmkit runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `crmkit args`, which must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
    let o = crmkit(args);
    assert!(o.status.success(), "crmkit {args:?} failed: {}", text(&o));
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// Runs `crmkit args … --format json`, which must succeed; returns the JSON.
fn json(args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--format", "json"]).collect();
    let out = ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("crmkit {args:?}: not JSON ({e}): {out}"))
}

/// Runs `crmkit args`, which must fail with exit code 1; returns what it printed.
fn fails(args: &[&str]) -> String {
    let o = crmkit(args);
    assert_eq!(o.status.code(), Some(1), "crmkit {args:?} should have failed: {}", text(&o));
    text(&o)
}

/// An installation in a temporary folder, filled through the core API and closed again so
/// that the binary can open it.
struct Site {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Site {
    /// A new installation with the default config, `edit` applied to its text.
    fn new(edit: impl FnOnce(String) -> String) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let config = edit(DEFAULT_CONFIG.to_string());
        Installation::init(&dir, Some(&config), Arc::new(ManualClock::new(T0))).unwrap();
        Site { _tmp: tmp, dir }
    }

    fn dir(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 temporary folder")
    }

    /// Opens the installation for `f`, and closes it again.
    fn with<R>(&self, f: impl FnOnce(&Installation) -> R) -> R {
        let inst = Installation::open(&self.dir, Arc::new(ManualClock::new(T0))).unwrap();
        f(&inst)
    }

    /// Every key and value of the database.
    fn dump(&self) -> Dump {
        self.with(|inst| dump(inst.store()))
    }

    fn partner(&self, name: &str, role: PartnerRole) -> PartnerId {
        self.with(|inst| inst.store().transact(None, |tx| Ok(tx.create(Partner::new(name, role))?.id)).unwrap())
    }

    fn link(&self, from: PartnerId, to: PartnerId, link_type: &str) {
        self.with(|inst| inst.store().transact(None, |tx| tx.create(PartnerLink::new(from, to, link_type))).unwrap());
    }

    fn manager(&self) -> UserId {
        self.with(|inst| {
            inst.store().transact(None, |tx| Ok(tx.create(User::new("petrov", "Пётр Петров", Role::Manager))?.id))
        })
        .unwrap()
    }

    fn deal(&self, partner: PartnerId, manager: UserId, amount: i64) -> DealId {
        self.with(|inst| {
            inst.store().transact(Some(manager), |tx| Ok(tx.create(new_deal(partner, manager, amount))?.id))
        })
        .unwrap()
    }

    /// Writes `bytes` to a file named `name` next to the installation.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.with_file_name(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn blob_chunks(&self) -> u64 {
        json(&["stats", self.dir()])["blob_chunks"].as_u64().unwrap()
    }
}

/// `n` bytes that do not repeat in any short period.
fn noise(n: usize, seed: u64) -> Vec<u8> {
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
                Engine::new(Hooks::new()).close(tx, lost, deal.version, outcome)?;
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
    assert!(out.contains("scripts: ok (6 compiled, 3 bindings to script functions checked)"), "{out}");
    let out = ok(&["script", "check", site.dir()]);
    assert!(out.contains("6 scripts compiled"), "{out}");
    // A dry run of the route script against the installation: a client with no won deals.
    let p = site.partner("Альфа", PartnerRole::Client);
    let input =
        site.file("ctx.json", format!("{{\"after\": {{\"amount\": 2000000, \"partner\": \"{p}\"}}}}").as_bytes());
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

/// A `crmkit serve` process on a free loopback port, stopped (SIGTERM) when dropped.
struct Served {
    child: std::process::Child,
    addr: String,
}

impl Served {
    fn start(site: &Site) -> Served {
        use std::io::BufRead as _;
        let mut child = Command::new(binary())
            .args(["serve", site.dir(), "--addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("crmkit serve starts");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first}")).to_string();
        Served { child, addr }
    }

    /// One HTTP/1.1 request over its own connection: status and body.
    fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: crmkit\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{text}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Stops the server as an operator would, and returns what it printed.
    fn stop(mut self) -> String {
        use std::io::Read as _;
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
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
    /// A request with a JSON body: status and body.
    fn send(&self, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{text}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
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

/// A POST to `addr` that may meet a dead server: the status, or `None` when no answer came.
fn try_post(addr: &str, path: &str, token: &str, body: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: crmkit\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw).split(' ').nth(1)?.parse().ok()
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
        std::thread::scope(|s| {
            for client in 0..8 {
                let (addr, acknowledged, stop, token) = (server.addr.clone(), &acknowledged, &stop, &token);
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let subject = format!("r{round}-c{client}-{n}");
                        let body = format!("{{\"kind\":\"note\",\"at\":\"2026-03-02T10:00:00Z\",\"subject\":\"{subject}\",\"partner\":\"{p}\"}}");
                        match try_post(&addr, "/api/v1/interactions", token, &body) {
                            Some(201) => acknowledged.lock().unwrap().push(subject),
                            Some(other) => panic!("{subject}: {other}"),
                            None => break,
                        }
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(600));
            server.child.kill().unwrap(); // SIGKILL, in the middle of the load
            server.child.wait().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
        let acknowledged = acknowledged.into_inner().unwrap();
        assert!(acknowledged.len() > 10, "round {round}: only {} writes went through", acknowledged.len());
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
    let (status, lost) = act("lose", &proposal["version"], ",\"reason\":\"price\"");
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
