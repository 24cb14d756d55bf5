//! The web page in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) against `crmkit serve` on loopback. People sign in with their
//! passwords and see what their role may; a partner named like markup is shown as text;
//! a form from elsewhere is refused; an ended session goes back to the sign-in page. Each
//! test keeps screenshots of the pages in a temporary folder (printed) to look at.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crmkit_core::id::UserId;
use crmkit_core::model::{Partner, PartnerRole, Task};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::api::{Office, Served};

/// Whether `path` (with its query) is one of the web page's, not the API's.
pub(crate) fn is_page(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    !path.starts_with("/api/") && !matches!(path, "/health" | "/openapi.json" | "/metrics")
}

/// A chromedriver on a free loopback port, and a headless Chromium session through it.
struct Browser {
    driver: Child,
    client: Client,
    rt: tokio::runtime::Runtime,
    profile: tempfile::TempDir,
    shots: PathBuf,
    /// Where the browser saves what it downloads.
    downloads: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    fn start(test: &str) -> Browser {
        Browser::sized(test, (1366, 900))
    }

    /// A browser with a window of `size` (width, height) in CSS pixels.
    fn sized(test: &str, size: (u32, u32)) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut caps = serde_json::Map::new();
        let mut options = json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", format!("--window-size={},{}", size.0, size.1),
                    "--lang=en-US", format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                }
        });
        // A window narrower than a desktop's is a phone's screen: Chromium's emulation (a
        // headless window is never narrower than 500 px).
        if size.0 < 500 {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": size.0, "height": size.1, "pixelRatio": 2.0 } });
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session");
        let shots = std::env::temp_dir().join("crmkit-web-screenshots").join(test);
        std::fs::create_dir_all(&shots).unwrap();
        Browser { driver, client, rt, profile, shots, downloads }
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.client.goto(url)).unwrap();
    }

    /// Waits (up to 20 s) until the page's address ends with `suffix`: a click that
    /// navigates returns before the next page is there.
    fn wait_url(&self, suffix: &str) {
        let started = Instant::now();
        while !self.url().ends_with(suffix) {
            assert!(started.elapsed() < Duration::from_secs(20), "still at {}, not at …{suffix}", self.url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 20 s) for an element matching `css`.
    fn wait_for(&self, css: &str) {
        self.rt
            .block_on(self.client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("no {css} came: {e}"));
    }

    /// Waits (up to 20 s) until the text of `css` is `expected` — through the navigation a
    /// form's post or a reload starts, when the element may be gone for a moment.
    fn wait_text(&self, css: &str, expected: &str) {
        let started = Instant::now();
        loop {
            let found = self.rt.block_on(async {
                let e = self.client.find(Locator::Css(css)).await.ok()?;
                e.text().await.ok()
            });
            if found.as_deref() == Some(expected) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{css} is {found:?}, not {expected:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        self.rt.block_on(self.client.current_url()).unwrap().to_string()
    }

    fn text(&self, css: &str) -> String {
        let e = self.rt.block_on(self.client.find(Locator::Css(css))).unwrap_or_else(|e| panic!("{css}: {e}"));
        self.rt.block_on(e.text()).unwrap()
    }

    fn count(&self, css: &str) -> usize {
        self.rt.block_on(self.client.find_all(Locator::Css(css))).unwrap().len()
    }

    fn fill(&self, css: &str, value: &str) {
        let e = self.rt.block_on(self.client.find(Locator::Css(css))).unwrap();
        self.rt.block_on(e.clear()).unwrap();
        self.rt.block_on(e.send_keys(value)).unwrap();
    }

    fn click(&self, css: &str) {
        let e = self.rt.block_on(self.client.find(Locator::Css(css))).unwrap();
        self.rt.block_on(e.click()).unwrap();
    }

    /// Drags the element `from` onto the element `to` with the mouse, in steps, as a
    /// person does.
    fn drag(&self, from: &str, to: &str) {
        use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
        let find =
            |css: &str| self.rt.block_on(self.client.find(Locator::Css(css))).unwrap_or_else(|e| panic!("{css}: {e}"));
        let (from, to) = (find(from), find(to));
        let step = Some(Duration::from_millis(100));
        let actions = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement { element: from, duration: None, x: 0.0, y: 0.0 })
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(PointerAction::MoveBy { duration: step, x: 20.0, y: 10.0 })
            .then(PointerAction::MoveToElement { element: to.clone(), duration: step, x: 0.0, y: 0.0 })
            .then(PointerAction::MoveToElement { element: to, duration: step, x: 2.0, y: 2.0 })
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
        self.rt.block_on(self.client.perform_actions(actions)).unwrap();
        self.rt.block_on(self.client.release_actions()).unwrap();
    }

    /// The value of the form field `css`.
    fn value(&self, css: &str) -> String {
        let e = self.rt.block_on(self.client.find(Locator::Css(css))).unwrap_or_else(|e| panic!("{css}: {e}"));
        self.rt.block_on(e.prop("value")).unwrap().unwrap_or_default()
    }

    /// Chooses the file at `path` in the file input `css`.
    fn choose_file(&self, css: &str, path: &std::path::Path) {
        let e = self.rt.block_on(self.client.find(Locator::Css(css))).unwrap();
        self.rt.block_on(e.send_keys(&path.display().to_string())).unwrap();
    }

    /// Clicks `css` (a form's button, a link) and waits (up to 20 s) until the next page
    /// has loaded in place of this one.
    fn click_and_load(&self, css: &str) {
        self.rt.block_on(self.client.execute("document.documentElement.dataset.left = '1'", vec![])).unwrap();
        self.click(css);
        let started = Instant::now();
        loop {
            let fresh = self.rt.block_on(self.client.execute(
                "return document.readyState === 'complete' && !document.documentElement.dataset.left",
                vec![],
            ));
            if fresh.is_ok_and(|v| v == json!(true)) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no next page came after clicking {css}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn source(&self) -> String {
        self.rt.block_on(self.client.source()).unwrap()
    }

    /// Keeps a screenshot of the page as NAME.png.
    fn shot(&self, name: &str) {
        let png = self.rt.block_on(self.client.screenshot()).unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    fn sign_in(&self, base: &str, login: &str, password: &str) {
        self.goto(&format!("{base}/sign-in"));
        self.fill("#login", login);
        self.fill("#password", password);
        self.click("form.sign-in button");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = &self.profile;
    }
}

const PASSWORD: &str = "correct horse battery";

/// Writes `f` in one transaction of the office's store as `actor`.
fn write<T>(
    office: &Office,
    actor: Option<UserId>,
    f: impl FnOnce(&mut crmkit_core::store::WriteTxn<'_>) -> crmkit_core::Result<T>,
) -> T {
    office.site.with(|inst| inst.store().transact(actor, f).unwrap())
}

/// The office (admin, head and two managers of two departments, a viewer), each with a
/// password set by the admin over the API, and a task for each manager, one overdue.
fn office() -> (Office, UserId, UserId) {
    office_with(|c| c)
}

/// [`office`] with its config text edited by `edit`.
fn office_with(edit: impl FnOnce(String) -> String) -> (Office, UserId, UserId) {
    let office = Office::with_config(edit);
    let (north, south) = (office.north, office.south);
    write(&office, None, |tx| {
        for (manager, title) in [(north, "Call the northern client"), (south, "Call the southern client")] {
            let mut t = Task::new(title, manager);
            t.due = Some(crmkit_core::time::Timestamp(crate::common::T0.0 - 86_400_000));
            tx.create(t)?;
        }
        Ok(())
    });
    let logins = ["boss", "head", "north", "south", "watcher"];
    let ids: Vec<UserId> = office.site.with(|inst| {
        use crmkit_core::store::Reader as _;
        let r = inst.store().read().unwrap();
        logins.iter().map(|l| r.user_by_login(l).unwrap().unwrap().id).collect()
    });
    let server = Served::start(&office.site);
    for id in ids {
        let body = json!({ "password": PASSWORD }).to_string();
        let (status, answer) =
            server.send("PUT", &format!("/api/v1/users/{id}/password"), office.token("boss"), body.as_bytes());
        assert_eq!(status, 200, "{answer}");
    }
    server.stop();
    (office, north, south)
}

#[test]
fn each_role_signs_in_with_its_password_and_sees_its_own_work() {
    let (office, _, _) = office();
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("sign-in");
    b.goto(&format!("{base}/"));
    assert!(b.url().ends_with("/sign-in"), "{}", b.url());
    b.shot("sign-in");
    // A wrong password: the message, still on the page, the login kept.
    b.sign_in(&base, "north", "not the password");
    b.wait_for("p.error");
    assert_eq!(b.text("p.error"), "The login or the password is wrong.");
    assert!(b.url().ends_with("/sign-in"));
    b.shot("sign-in-refused");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    assert!(b.text("header.top .who").contains("NORTH"), "{}", b.text("header.top .who"));
    let page = b.source();
    assert!(page.contains("Call the northern client"), "the manager's own overdue task");
    assert!(!page.contains("Call the southern client"), "never another manager's");
    b.shot("work-manager");
    b.click("header.top form button");
    b.wait_url("/sign-in");
    b.goto(&format!("{base}/work"));
    assert!(b.url().ends_with("/sign-in"), "signed out, the page is closed: {}", b.url());
    // Russian, by the language link, kept in a cookie.
    b.goto(&format!("{base}/sign-in?lang=ru"));
    assert_eq!(b.text("form.sign-in h1"), "Войти");
    b.sign_in(&base, "watcher", PASSWORD);
    b.wait_url("/work");
    assert!(b.text("h1").contains("Мои дела"), "{}", b.text("h1"));
    assert!(b.text("header.top .who").contains("наблюдатель"));
    b.shot("work-viewer-ru");
    drop(b);
    server.stop();
}

#[test]
fn a_partner_named_like_markup_is_shown_as_text() {
    let (office, north, _) = office();
    let evil = "<img src=x onerror=alert(1)>";
    write(&office, None, |tx| {
        let mut p = Partner::new(evil, PartnerRole::Client);
        p.manager = Some(north);
        let p = tx.create(p)?;
        // A deal with no open task needs attention: it is listed with its partner.
        tx.create(crate::common::new_deal(p.id, north, 5000))
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("markup");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    let cells: Vec<String> = {
        let found = b.rt.block_on(b.client.find_all(Locator::Css("td"))).unwrap();
        found.iter().map(|e| b.rt.block_on(e.text()).unwrap()).collect()
    };
    assert!(cells.iter().any(|c| c == evil), "the name as text: {cells:?}");
    assert_eq!(b.count("main img"), 0, "no image element made of the name");
    assert!(b.source().contains("&lt;img src=x onerror=alert(1)&gt;"));
    b.shot("markup-as-text");
    drop(b);
    server.stop();
}

#[test]
fn a_form_from_elsewhere_is_refused_and_an_ended_session_goes_back_to_sign_in() {
    let (office, _, _) = office();
    let server = Served::start_with(&office.site, &[("CRMKIT_WEB_SESSION_SECONDS", "2")]);
    let base = format!("http://{}", server.addr);
    // Posted from another origin, or without the page's token: 403, nobody signed in.
    let form = format!("login=north&password={}&csrf=guess", PASSWORD.replace(' ', "+"));
    let a = server.exchange(
        "POST",
        "/sign-in",
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "http://evil.example"),
            ("cookie", "crmkit_pre=guess"),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(a.status, 403);
    assert!(!a.headers.iter().any(|(k, v)| k == "set-cookie" && v.starts_with("crmkit_session=")));
    let a = server.exchange(
        "POST",
        "/sign-in",
        None,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    assert_eq!(a.status, 403, "no token of the page");
    // Every page says what may run and be framed.
    let a = server.exchange("GET", "/sign-in", None, &[], None);
    let csp = a.headers.iter().find(|(k, _)| k == "content-security-policy").map(|(_, v)| v.clone());
    assert!(csp.is_some_and(|c| c.contains("script-src 'self'") && !c.contains("unsafe-inline")));
    // A session ends after its idle time: the next page is the sign-in page, saying so.
    let b = Browser::start("session");
    b.sign_in(&base, "head", PASSWORD);
    b.wait_url("/work");
    std::thread::sleep(Duration::from_millis(2500));
    b.goto(&format!("{base}/work"));
    b.wait_url("/sign-in");
    assert_eq!(b.text("p.error"), "Your session has ended. Sign in again.");
    b.shot("session-ended");
    drop(b);
    server.stop();
}

#[test]
fn passwords_are_set_from_the_terminal_and_by_an_admin_and_kept_only_as_hashes() {
    use std::io::Write as _;
    let office = Office::new();
    let dir = office.site.dir().to_string();
    let passwd = |login: &str, password: &str| {
        let mut child = Command::new(crate::cli::binary())
            .args(["user", "passwd", &dir, login])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = passwd("north", PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (login, password, says) in [
        ("north", "short", "at least 10 characters"),
        ("north", "aaaaaaaaaaaa", "one character repeated"),
        ("nobody", PASSWORD, "no user has the login \"nobody\""),
    ] {
        let out = passwd(login, password);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{says}: {out:?}");
    }
    let stored = std::fs::read_to_string(office.site.dir.join("data/passwords.jsonl")).unwrap();
    assert!(stored.contains("$argon2id$") && !stored.contains("horse"), "{stored}");
    // Over the API: admins only, the same rules, nothing stored when refused.
    let server = Served::start(&office.site);
    let id = office.north.to_string();
    let path = format!("/api/v1/users/{id}/password");
    let body = |p: &str| json!({ "password": p }).to_string();
    for (token, password, status) in
        [("north", PASSWORD, 403), ("head", PASSWORD, 403), ("boss", "short", 422), ("boss", "x\u{7}yyyyyyyyyyy", 422)]
    {
        let (got, answer) = server.send("PUT", &path, office.token(token), body(password).as_bytes());
        assert_eq!(got, status, "{token}: {answer}");
    }
    assert_eq!(std::fs::read_to_string(office.site.dir.join("data/passwords.jsonl")).unwrap(), stored);
    let (got, answer) = server.send("PUT", &path, office.token("boss"), body("another long password").as_bytes());
    assert_eq!((got, &answer["password_set"]), (200, &json!(true)), "{answer}");
    server.stop();
}

/// A deal of `manager`'s in stage "proposal" of b2b_sale, brought there through the engine.
fn deal_in_proposal(office: &Office, manager: UserId, title: &str) -> crmkit_core::id::DealId {
    write(office, Some(manager), |tx| {
        let engine = crmkit_core::process::Engine::without_hooks();
        let p = tx.create(Partner::new(format!("Клиент {title}"), PartnerRole::Client))?;
        let mut d = crate::common::new_deal(p.id, manager, 120_000);
        d.title = title.to_string();
        d.source = Some("website".into());
        let d = engine.create_deal(tx, d)?;
        let d = engine.move_deal(tx, d.id, d.version, "needs_analysis", None)?;
        let d = engine.set_checked(tx, d.id, d.version, "needs_recorded", true)?;
        let d = engine.move_deal(tx, d.id, d.version, "proposal", None)?;
        Ok(d.id)
    })
}

#[test]
fn on_the_board_a_card_dragged_on_is_moved_and_one_a_guard_refuses_comes_back_with_the_message_nothing_written() {
    let (office, north, south) = office();
    let mine = deal_in_proposal(&office, north, "Серверы для склада");
    deal_in_proposal(&office, south, "Чужая сделка");
    // A deal whose needs are recorded: it may move on to the proposal.
    let ready = write(&office, Some(north), |tx| {
        let engine = crmkit_core::process::Engine::without_hooks();
        let p = tx.create(Partner::new("Готовый клиент", PartnerRole::Client))?;
        let mut d = crate::common::new_deal(p.id, north, 80_000);
        d.title = "Готова к предложению".into();
        d.source = Some("website".into());
        let d = engine.create_deal(tx, d)?;
        let d = engine.move_deal(tx, d.id, d.version, "needs_analysis", None)?;
        Ok(engine.set_checked(tx, d.id, d.version, "needs_recorded", true)?.id)
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("board");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/board?kind=b2b_sale"));
    assert!(b.source().contains("Серверы для склада"));
    assert!(!b.source().contains("Чужая сделка"), "another manager's deal is not on the board");
    assert_eq!(b.text("section.column[data-stage=proposal] .count"), "(1)");
    b.shot("board");
    // A deal that may move is dragged on and stays where it was dropped.
    let ready_card = format!("article.card[data-deal='{ready}']");
    assert_eq!(b.count(&format!("section.column[data-stage=needs_analysis] {ready_card}")), 1);
    b.drag(&format!("{ready_card} .partner"), "section.column[data-stage=proposal] h2");
    b.wait_for(&format!("section.column[data-stage=proposal] {ready_card}"));
    // The page reloads after the move: the count comes from the server.
    b.wait_text("section.column[data-stage=proposal] .count", "(2)");
    b.shot("board-dragged");
    drop(b);
    server.stop();
    let stage = office.site.with(|inst| {
        use crmkit_core::store::Reader as _;
        inst.store().read().unwrap().get::<crmkit_core::model::Deal>(ready).unwrap().unwrap().stage
    });
    assert_eq!(stage.as_deref(), Some("proposal"));

    let before = office.site.dump();
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("board-refused");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/board?kind=b2b_sale"));
    // Dragged forward, the shipped guard refuses (no quote): the card comes back to its
    // column with the guard's message and the field it names.
    let card = format!("article.card[data-deal='{mine}']");
    b.drag(&format!("{card} .partner"), "section.column[data-stage=negotiation] h2");
    b.wait_for(&format!("{card} .refusal"));
    let refusal = b.text(&format!("{card} .refusal"));
    assert!(refusal.contains("leaves the proposal stage without a quote"), "{refusal}");
    assert!(refusal.starts_with("documents:"), "{refusal}");
    assert_eq!(b.count(&format!("section.column[data-stage=proposal] {card}")), 1, "the card is back in its column");
    b.shot("board-drag-refused");
    // The same move by the card's form (no script needed): the board again, the message on
    // the card.
    b.goto(&format!("{base}/board?kind=b2b_sale"));
    assert_eq!(b.count(&format!("{card} .refusal")), 0);
    let select = format!("{card} select[name=stage]");
    let e = b.rt.block_on(b.client.find(Locator::Css(&select))).unwrap();
    b.rt.block_on(e.select_by_value("negotiation")).unwrap();
    b.click(&format!("{card} form.move button"));
    b.wait_for(&format!("{card} p.refusal[data-field=documents]"));
    assert_eq!(b.count(&format!("section.column[data-stage=proposal] {card}")), 1);
    b.shot("board-refused");
    drop(b);
    server.stop();
    assert!(office.site.dump() == before, "a refused move wrote something");
}

#[test]
fn the_board_filters_by_manager_and_amount_pages_a_big_column_and_a_managed_kind_moves_by_its_tasks() {
    let (office, north, south) = office();
    // 60 of north's deals in the first stage, amounts 1,000 … 60,000; 3 of south's.
    write(&office, Some(north), |tx| {
        let engine = crmkit_core::process::Engine::without_hooks();
        let p = tx.create(Partner::new("Оптовый клиент", PartnerRole::Client))?;
        for (i, manager) in (1..=60).map(|i| (i, north)).chain((61..=63).map(|i| (i, south))) {
            let mut d = crate::common::new_deal(p.id, manager, i * 1000);
            d.title = format!("Поставка {i}");
            engine.create_deal(tx, d)?;
        }
        Ok(())
    });
    // A deal of a managed kind, for the end.
    let tender = write(&office, Some(north), |tx| {
        let engine = crmkit_core::process::Engine::without_hooks();
        let p = tx.create(Partner::new("Госзаказчик", PartnerRole::Client))?;
        let mut d = crate::common::new_deal(p.id, north, 900_000);
        d.title = "Тендер на серверы".into();
        d.kind = "tender".into();
        d.stage = None;
        Ok(engine.create_deal(tx, d)?.id)
    });
    let first = office.site.with(|inst| inst.settings().process_kind("b2b_sale").unwrap().stages[0].id.clone());
    let column = format!("section.column[data-stage={first}]");
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("board-filters");
    b.sign_in(&base, "boss", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/board?kind=b2b_sale"));
    assert_eq!(b.text(&format!("{column} .count")), "(63)");
    assert_eq!(b.count(&format!("{column} article.card")), 50, "a page of 50 cards");
    b.click(&format!("{column} nav.pages a.next"));
    b.wait_url("page=2");
    assert_eq!(b.count(&format!("{column} article.card")), 13, "the rest on the second page");
    // The filters: south's deals only; then north's from 55,000.
    b.goto(&format!("{base}/board?kind=b2b_sale"));
    let e = b.rt.block_on(b.client.find(Locator::Css("form.filters select[name=manager]"))).unwrap();
    b.rt.block_on(e.select_by_value(&south.to_string())).unwrap();
    b.click("form.filters button");
    b.wait_url(&format!("manager={south}&from=&to=&min=&max="));
    assert_eq!(b.text(&format!("{column} .count")), "(3)");
    b.goto(&format!("{base}/board?kind=b2b_sale&manager={north}&min=55000"));
    assert_eq!(b.text(&format!("{column} .count")), "(6)");
    b.shot("board-filtered");
    b.goto(&format!("{base}/board?kind=b2b_sale&min=lots"));
    assert!(b.text("main").contains("min: \"lots\" is not an amount"), "{}", b.text("main"));
    // The managed kind: the card shows its stage's tasks; the one done moves the deal on.
    drop(b);
    let b = Browser::start("board-managed");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/board?kind=tender"));
    let card = format!("article.card[data-deal='{tender}']");
    assert_eq!(b.count(&format!("section.column[data-stage=announcement] {card}")), 1);
    assert_eq!(b.count(&format!("{card} form.move")), 0, "a managed deal is not moved by hand");
    assert!(b.text(&format!("{card} ul.tasks")).contains("Study the tender documentation"));
    b.shot("board-managed");
    b.click(&format!("{card} ul.tasks form.task button"));
    b.wait_for(&format!("section.column[data-stage=documentation] {card}"));
    assert!(b.text(&format!("{card} ul.tasks")).contains("Prepare the bid documents"));
    b.shot("board-managed-moved");
    drop(b);
    server.stop();
}

#[test]
fn on_the_deal_page_a_deal_is_lost_with_its_reason_and_another_won_a_missing_reason_named_at_its_field() {
    let (office, north, _) = office();
    let lost = deal_in_proposal(&office, north, "Проигранная сделка");
    let won = write(&office, Some(north), |tx| {
        let p = tx.create(Partner::new("Клиент на выигрыш", PartnerRole::Client))?;
        // A repeat sale: stageless, won without a quote.
        let mut d = crate::common::new_deal(p.id, north, 40_000);
        d.title = "Выигранная сделка".into();
        d.kind = "repeat_sale".into();
        d.stage = None;
        Ok(crmkit_core::process::Engine::without_hooks().create_deal(tx, d)?.id)
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("deal");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/deal/{lost}"));
    assert_eq!(b.text("h1"), "Проигранная сделка");
    assert!(b.count("section.timeline tr[data-item=step]") >= 3, "created, moved twice");
    b.shot("deal");
    // Lost without a reason: refused, the message at the reason, nothing changed.
    b.click("form[data-action=lose] button");
    b.wait_for("form[data-action=lose] .refusal");
    assert_eq!(
        b.rt.block_on(
            b.rt.block_on(b.client.find(Locator::Css("form[data-action=lose] .refusal"))).unwrap().attr("data-field")
        )
        .unwrap()
        .as_deref(),
        Some("loss_reason")
    );
    assert_eq!(b.text("td.status"), "in_progress");
    b.shot("deal-lose-refused");
    let e = b.rt.block_on(b.client.find(Locator::Css("form[data-action=lose] select[name=reason]"))).unwrap();
    b.rt.block_on(e.select_by_value("price")).unwrap();
    b.click("form[data-action=lose] button");
    b.wait_for("td.loss-reason");
    assert_eq!((b.text("td.status"), b.text("td.loss-reason")), ("lost".to_string(), "price".to_string()));
    b.shot("deal-lost");
    b.goto(&format!("{base}/deal/{won}"));
    b.click("form[data-action=win] button");
    b.wait_for("form[data-action=reopen]");
    assert_eq!(b.text("td.status"), "won");
    // Another manager's deal is not there for this one.
    drop(b);
    server.stop();
    let south_deal = deal_in_proposal(&office, office.south, "Чужая");
    let server = Served::start(&office.site);
    let b = Browser::start("deal-scope");
    b.sign_in(&format!("http://{}", server.addr), "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("http://{}/deal/{south_deal}", server.addr));
    assert!(!b.source().contains("Чужая"), "another manager's deal is not shown");
    drop(b);
    server.stop();
}

#[test]
fn partners_are_found_by_name_tax_id_and_e_mail_and_a_big_partners_dossier_reads_whole() {
    use crmkit_core::model::{ContactPerson, Counterparty, CounterpartyKind, Interaction, InteractionKind};
    let (office, north, south) = office();
    let big = write(&office, Some(north), |tx| {
        let mut c = Counterparty::new(CounterpartyKind::LegalEntity, "ООО «Большой клиент»");
        c.tax_id = Some(crmkit_core::values::ru::complete_inn10("770708389"));
        let c = tx.create(c)?;
        let mut p = Partner::new("Большой клиент", PartnerRole::Client);
        p.manager = Some(north);
        p.counterparties.push(c.id);
        let p = tx.create(p)?;
        let mut k = ContactPerson::new(p.id, "Ирина Закупщица");
        k.emails.push("irina@big.example".into());
        k.phones.push("+7 (495) 111-22-33".into());
        tx.create(k)?;
        for i in 0..60 {
            let mut d = crate::common::new_deal(p.id, north, 10_000 + i);
            d.title = format!("Поставка №{i}");
            tx.create(d)?;
        }
        for i in 0..300 {
            let at = crmkit_core::time::Timestamp(crate::common::T0.0 - i * 3_600_000);
            tx.create(Interaction::new(InteractionKind::Call, at, p.id, format!("Звонок {i}")))?;
        }
        let mut other = Partner::new("Большой чужой", PartnerRole::Client);
        other.manager = Some(south);
        tx.create(other)?;
        Ok(p.id)
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("partners");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    let found = |q: &str| -> Vec<String> {
        let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("q", q).finish();
        b.goto(&format!("{base}/partners?{q}"));
        let cells = b.rt.block_on(b.client.find_all(Locator::Css("table.found td a"))).unwrap();
        cells.iter().map(|e| b.rt.block_on(e.text()).unwrap()).collect()
    };
    assert_eq!(found("большой"), ["Большой клиент"], "by the start of the name, in the caller's scope only");
    assert_eq!(found(&crmkit_core::values::ru::complete_inn10("770708389")), ["Большой клиент"]);
    assert_eq!(found("IRINA@big.example"), ["Большой клиент"]);
    assert_eq!(found("+7 495 111 22 33"), ["Большой клиент"], "by a contact's phone, written another way");
    assert_eq!(found("8 (495) 1112233"), ["Большой клиент"]);
    assert!(found("нет такого").is_empty());
    b.shot("partners-search");
    b.goto(&format!("{base}/partner/{big}"));
    assert_eq!(b.text("h1"), "Большой клиент");
    assert_eq!(b.count("table.open-deals tbody tr"), 60);
    assert!(b.source().contains("Ирина Закупщица") && b.source().contains("irina@big.example"));
    assert!(b.source().contains("(300)"), "the timeline's count");
    b.shot("dossier");
    // The timeline pages back through all 300 interactions, none twice.
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let rows = b.rt.block_on(b.client.find_all(Locator::Css("tr[data-interaction]"))).unwrap();
        for r in rows {
            assert!(seen.insert(b.rt.block_on(r.attr("data-interaction")).unwrap().unwrap()), "an interaction twice");
        }
        if b.count("nav.pages a.next") == 0 {
            break;
        }
        let next = b.rt.block_on(b.client.find(Locator::Css("nav.pages a.next"))).unwrap();
        let href = b.rt.block_on(next.attr("href")).unwrap().unwrap();
        b.goto(&format!("{base}{href}"));
    }
    assert_eq!(seen.len(), 300);
    drop(b);
    server.stop();
}

#[test]
fn the_funnel_chart_has_a_band_per_stage_with_the_counts_of_the_heads_department() {
    let (office, north, south) = office();
    deal_in_proposal(&office, north, "Первая");
    deal_in_proposal(&office, north, "Вторая");
    write(&office, Some(north), |tx| {
        let p = tx.create(Partner::new("Новый клиент", PartnerRole::Client))?;
        let mut d = crate::common::new_deal(p.id, north, 1000);
        d.source = Some("website".into());
        crmkit_core::process::Engine::without_hooks().create_deal(tx, d)
    });
    // The south's deal is another department's: not in the head's funnel.
    deal_in_proposal(&office, south, "Южная");
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("analytics");
    b.sign_in(&base, "head", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/analytics?report=funnel&kind=b2b_sale"));
    b.wait_for("section.chart svg");
    // One band per stage and one for the won deals, each with the deals that reached it.
    assert_eq!(b.count("section.chart svg rect"), 6);
    let counts: Vec<String> = {
        let found =
            b.rt.block_on(b.client.find_all(Locator::Css("section.chart svg text[text-anchor=middle]"))).unwrap();
        found
            .iter()
            .map(|e| b.rt.block_on(e.text()).unwrap().split(' ').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        counts,
        ["3", "2", "2", "0", "0", "0"],
        "qualification, needs analysis, proposal, negotiation, contract, won"
    );
    b.shot("funnel");
    // Managers are not shown reports.
    drop(b);
    let b = Browser::start("analytics-manager");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    assert_eq!(b.count("header.top nav a[href='/analytics']"), 0);
    b.goto(&format!("{base}/analytics?report=funnel"));
    assert!(b.source().contains("Reports are for heads, admins and viewers."));
    drop(b);
    server.stop();
}

#[test]
fn a_claim_is_worked_on_its_page_and_a_decision_without_the_amount_its_type_settles_is_refused() {
    use crmkit_core::model::Claim;
    let (office, north, south) = office();
    let (mine, theirs) = write(&office, Some(north), |tx| {
        let mut p = Partner::new("Клиент с претензией", PartnerRole::Client);
        p.manager = Some(north);
        let p = tx.create(p)?;
        let mut c = Claim::new(p.id, "quality", "defect", "Брак в партии", north, None, None);
        c.claimed = Some(crmkit_core::values::Money::new(8000.into(), crmkit_core::values::Currency::RUB));
        let mine = tx.create(c)?.id;
        let mut q = Partner::new("Южный клиент", PartnerRole::Client);
        q.manager = Some(south);
        let q = tx.create(q)?;
        let theirs = tx.create(Claim::new(q.id, "service", "staff", "Южная претензия", south, None, None))?.id;
        Ok((mine, theirs))
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("claims");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/claims"));
    assert!(b.source().contains("Брак в партии") && !b.source().contains("Южная претензия"));
    b.shot("claims");
    b.goto(&format!("{base}/claim/{mine}"));
    b.click_and_load("form[data-action=review] button");
    b.wait_for("form[data-action=decide]");
    assert_eq!(b.text("td.status"), "under_review");
    // Satisfied without the amount its type settles: refused at `settled`, nothing decided.
    b.fill("form[data-action=decide] input[name=reply]", "Заменим партию");
    b.click_and_load("form[data-action=decide] button");
    b.wait_for("form[data-action=decide] .refusal");
    let refusal = b.text("form[data-action=decide] .refusal");
    assert!(refusal.starts_with("settled:") && refusal.contains("needs the settled amount"), "{refusal}");
    assert_eq!(b.text("td.status"), "under_review");
    b.shot("claim-refused");
    let e = b.rt.block_on(b.client.find(Locator::Css("form[data-action=decide] select[name=decision]"))).unwrap();
    b.rt.block_on(e.select_by_value("partly_satisfied")).unwrap();
    b.fill("form[data-action=decide] input[name=settled]", "5000");
    b.fill("form[data-action=decide] input[name=reply]", "Возместим 5000");
    b.click_and_load("form[data-action=decide] button");
    b.wait_for("td.decision");
    assert_eq!((b.text("td.decision"), b.text("td.settled")), ("partly_satisfied".to_string(), "5000 RUB".to_string()));
    b.click_and_load("form[data-action=close] button");
    b.wait_for("form[data-action=reopen]");
    assert_eq!(b.text("td.status"), "closed");
    assert_eq!(b.count("section.steps tr"), 4, "register, review, decide, close");
    b.shot("claim-closed");
    b.goto(&format!("{base}/claim/{theirs}"));
    assert!(!b.source().contains("Южная претензия"), "another manager's claim is not shown");
    drop(b);
    server.stop();
}

#[test]
fn on_the_deal_page_a_file_goes_up_and_comes_down_byte_identical_one_too_big_is_refused_and_a_stale_edit_is_explained()
{
    use crmkit_core::model::{ContactPerson, Participant, ParticipantLink};
    use crmkit_core::store::Reader as _;
    let (office, north, _) = office_with(|c| c.replace("max_size_mb = 25", "max_size_mb = 1"));
    let deal = deal_in_proposal(&office, north, "Сделка с файлами");
    write(&office, Some(north), |tx| {
        let rival = tx.create(Partner::new("Конкурент <b>Альфа</b>", PartnerRole::Competitor))?;
        let d: crmkit_core::model::Deal = tx.load(deal)?;
        let person = tx.create(ContactPerson::new(d.partner, "Ирина Петрова"))?;
        let buyer = tx.create(Participant::contact(deal, person.id, "decision_maker"))?;
        let mut rival_member = Participant::partner(deal, rival.id, "competitor");
        rival_member.note = "демпингует".into();
        let rival_member = tx.create(rival_member)?;
        tx.create(ParticipantLink::new(deal, rival_member.id, buyer.id, "influences"))?;
        Ok(())
    });
    let files = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let offer = files.path().join("Коммерческое предложение №7.bin");
    std::fs::write(&offer, &content).unwrap();
    let big = files.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 1_100_000]).unwrap();

    // Refused uploads write nothing: one over attachments.max_size_mb, and none chosen.
    let before = office.site.dump();
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("deal-files");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/deal/{deal}"));
    assert_eq!(b.count("section.participants tr[data-participant]"), 2);
    assert!(b.source().contains("Конкурент &lt;b&gt;Альфа&lt;/b&gt;"), "a participant's name is text");
    assert!(b.text("section.participants ul.links").contains("influences"), "{}", b.text("section.participants"));
    b.shot("deal-participants");
    b.choose_file("form.upload input[type=file]", &big);
    b.click("form.upload button");
    b.wait_for("form.upload .refusal");
    let refusal = b.text("form.upload .refusal");
    assert!(refusal.contains("attachments.max_size_mb"), "{refusal}");
    b.click_and_load("form.upload button");
    b.wait_for("form.upload .refusal");
    assert!(b.text("form.upload .refusal").contains("Choose a file"), "{}", b.text("form.upload .refusal"));
    b.shot("deal-upload-refused");
    // A multipart form from another site, or without the page's token, with the session's
    // cookie: 403.
    let session = b.rt.block_on(b.client.get_named_cookie("crmkit_session")).unwrap().value().to_string();
    let body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\nhello\r\n--b--\r\n";
    for origin in [Some("http://evil.example"), None] {
        let cookie = format!("crmkit_session={session}");
        let mut headers = vec![("content-type", "multipart/form-data; boundary=b"), ("cookie", cookie.as_str())];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let a = server.exchange("POST", &format!("/deal/{deal}/attach"), None, &headers, Some(body.as_bytes()));
        assert_eq!(a.status, 403, "{origin:?}: {}", a.text());
    }
    drop(b);
    server.stop();
    assert!(office.site.dump() == before, "a refused upload wrote something");

    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("deal-files");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/deal/{deal}"));
    b.choose_file("form.upload input[type=file]", &offer);
    b.click("form.upload button");
    b.wait_for("section.attachments tr[data-attachment]");
    assert_eq!(b.text("section.attachments tr[data-attachment] a.download"), "Коммерческое предложение №7.bin");
    b.shot("deal-uploaded");
    // Downloaded by the browser, byte for byte what went up.
    b.click("section.attachments tr[data-attachment] a.download");
    let saved = b.downloads.join("Коммерческое предложение №7.bin");
    let started = Instant::now();
    while std::fs::read(&saved).map_or(true, |got| got.len() != content.len()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the download did not come: {:?}",
            std::fs::read_dir(&b.downloads).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::read(&saved).unwrap() == content, "the downloaded file differs from the uploaded one");

    // A stale edit: the title changed here while someone changed the amount over the API.
    let version = b.value("form.edit input[name=version]");
    b.fill("#edit-title", "Сделка с файлами и скидкой");
    let patch = json!({ "version": version.parse::<u64>().unwrap(), "amount": { "amount": "150000" } }).to_string();
    let (status, answer) =
        server.send("PATCH", &format!("/api/v1/deals/{deal}"), office.token("north"), patch.as_bytes());
    assert_eq!(status, 200, "{answer}");
    b.click("form.edit button");
    b.wait_for("div.stale");
    assert_eq!(b.text("div.stale tr[data-field=amount] td.now"), "150000");
    assert_eq!(b.text("div.stale tr[data-field=amount] td.was"), "120000");
    assert_eq!(b.text("div.stale tr[data-field=title] td.mine"), "Сделка с файлами и скидкой");
    assert_eq!(b.text("div.stale tr[data-field=title] td.now"), "Сделка с файлами");
    assert_eq!(b.count("div.stale tr"), 3, "a head row and the two fields that differ");
    assert_eq!(b.value("#edit-title"), "Сделка с файлами и скидкой", "the person's change is kept");
    assert_eq!(b.value("#edit-amount"), "150000", "the newer amount is taken");
    assert_eq!(b.text("td.amount"), "150000 RUB");
    b.shot("deal-stale");
    // Saved again: their change over the newer version, the other change kept.
    b.click("form.edit button");
    b.wait_text("h1", "Сделка с файлами и скидкой");
    assert_eq!(b.text("td.amount"), "150000 RUB");
    assert_eq!(b.count("div.stale"), 0);
    b.shot("deal-edited");
    drop(b);
    server.stop();
}

#[test]
fn an_admin_manages_users_passwords_and_tokens_reloads_the_scripts_and_imports_a_file_with_its_report() {
    let (office, _, _) = office();
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("partners.csv");
    std::fs::write(&csv, "key,name,roles\nP1,Альфа,client\nP2,,client\nP3,Гамма,client; supplier\n").unwrap();
    let users = office.site.with(|inst| {
        use crmkit_core::store::Reader as _;
        inst.store().read().unwrap().count(crmkit_core::model::EntityKind::User).unwrap() as usize
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    // Not for a manager.
    let b = Browser::start("admin");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/admin"));
    assert!(b.text("main").contains("for administrators"), "{}", b.text("main"));
    assert_eq!(b.count("header.top a[href='/admin']"), 0);
    drop(b);

    let b = Browser::start("admin");
    b.sign_in(&base, "boss", PASSWORD);
    b.wait_url("/work");
    b.click("header.top a[href='/admin']");
    b.wait_for("section.users");
    assert_eq!(b.count("section.users tr[data-user]"), users);
    b.shot("admin");
    // A new user, given a password too weak and then a good one, and made a head.
    b.fill("form.new-user input[name=login]", "east");
    b.fill("form.new-user input[name=name]", "Восточный <менеджер>");
    b.click_and_load("form.new-user button");
    b.wait_for("tr[data-user=east]");
    assert!(b.text("tr[data-user=east]").contains("Восточный <менеджер>"));
    b.fill("tr[data-user=east] form.password input[name=password]", "aaaaaaaaaaaa");
    b.click_and_load("tr[data-user=east] form.password button");
    b.wait_for("tr[data-user=east] form.password .refusal");
    assert!(b.text("tr[data-user=east] form.password .refusal").starts_with("password:"));
    b.fill("tr[data-user=east] form.password input[name=password]", "a long enough east password");
    b.click_and_load("tr[data-user=east] form.password button");
    b.wait_for("section.users p.ok");
    b.click("tr[data-user=east] form.roles input[value=head]");
    b.click_and_load("tr[data-user=east] form.roles button");
    b.wait_for("tr[data-user=east] form.roles input[value=head]:checked");
    // Nobody is left without a role: the API's rule, at its field.
    for r in ["head", "manager"] {
        b.click(&format!("tr[data-user=east] form.roles input[value={r}]"));
    }
    b.click_and_load("tr[data-user=east] form.roles button");
    b.wait_for("tr[data-user=east] form.roles .refusal");
    b.shot("admin-users");
    // A token: its secret shown once, working over the API, then revoked.
    b.fill("form.new-token input[name=login]", "north");
    let e = b.rt.block_on(b.client.find(Locator::Css("form.new-token select[name=role]"))).unwrap();
    b.rt.block_on(e.select_by_value("manager")).unwrap();
    b.click_and_load("form.new-token button");
    b.wait_for("section.tokens code.token");
    let secret = b.text("section.tokens code.token");
    let (status, _) = server.request("GET", "/api/v1/deals", Some(&secret));
    assert_eq!(status, 200);
    b.shot("admin-token");
    b.goto(&format!("{base}/admin"));
    assert_eq!(b.count("section.tokens code.token"), 0, "the secret is shown once");
    let id = &crmkit::token::hash(&secret)[..12];
    b.click_and_load(&format!("section.tokens tr[data-token='{id}'] form.revoke button"));
    b.wait_text(&format!("section.tokens tr[data-token='{id}'] td:last-child"), "revoked");
    let (status, _) = server.request("GET", "/api/v1/deals", Some(&secret));
    assert_eq!(status, 401, "a revoked token is refused");
    // Scripts and plugins, and their reload.
    assert!(b.count("section.scripts tr[data-script]") > 0);
    b.click_and_load("form.reload button");
    b.wait_for("section.scripts p.ok");
    // An import with a bad row: the report names the row and the field.
    let e = b.rt.block_on(b.client.find(Locator::Css("form.import select[name=entity]"))).unwrap();
    b.rt.block_on(e.select_by_value("partners")).unwrap();
    b.choose_file("form.import input[type=file]", &csv);
    b.click_and_load("form.import button");
    b.wait_for("div.report");
    assert_eq!(
        (b.text("div.report td.rows"), b.text("div.report td.created"), b.text("div.report td.failed")),
        ("3".to_string(), "2".to_string(), "1".to_string())
    );
    assert_eq!(b.text("table.row-errors tr[data-row='2'] td.field"), "name");
    b.shot("admin-import");
    drop(b);
    server.stop();
    office.site.with(|inst| {
        use crmkit_core::store::Reader as _;
        let r = inst.store().read().unwrap();
        let east = r.user_by_login("east").unwrap().unwrap();
        assert_eq!(east.roles, [crmkit_core::model::Role::Head, crmkit_core::model::Role::Manager]);
        assert_eq!(r.count(crmkit_core::model::EntityKind::Partner).unwrap(), 2, "the two good rows");
    });
    let stored = std::fs::read_to_string(std::path::Path::new(office.site.dir()).join("data/passwords.jsonl")).unwrap();
    assert!(stored.contains("\"east\"") && !stored.contains("a long enough east password"));
}

#[test]
fn a_loyalty_card_is_worked_on_its_page_the_strategies_run_and_a_claim_is_registered_from_its_partner() {
    use crmkit_core::model::{LoyaltyCard, LoyaltyProgram};
    use crmkit_core::values::Currency;
    use rust_decimal::Decimal;
    let (office, north, _) = office();
    let (partner, card) = write(&office, Some(north), |tx| {
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut p = Partner::new("Клиент с картой", PartnerRole::Client);
        p.manager = Some(north);
        p.segment = Some("key".into());
        let p = tx.create(p)?;
        let program =
            tx.create(LoyaltyProgram::bonus("Бонусный клуб", Currency::RUB, Decimal::ONE, day("2026-01-01")))?;
        let card = tx.create(LoyaltyCard::new("7000001", program.id, p.id, day("2026-02-01")))?;
        let engine = crmkit_core::process::Engine::without_hooks();
        engine.correct(tx, card.id, Decimal::from(500), Decimal::ZERO, "приветственные баллы")?;
        Ok((p.id, card.id))
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("programs");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    // Found by its number; redeemed; more than the balance refused at its field.
    b.click_and_load("header.top a[href='/cards']");
    b.fill("form.search input[name=q]", "7000001");
    b.click_and_load("form.search button");
    b.click_and_load("table.found a");
    assert_eq!(b.text("td.balance"), "500");
    b.fill("form[data-action=redeem] input[name=points]", "120");
    b.click_and_load("form[data-action=redeem] button");
    assert_eq!(b.text("td.balance"), "380");
    assert_eq!(b.count("section.ledger tr[data-entry]"), 2);
    b.fill("form[data-action=redeem] input[name=points]", "1000");
    b.click_and_load("form[data-action=redeem] button");
    let refusal = b.text("form[data-action=redeem] .refusal");
    assert!(refusal.starts_with("points:") && refusal.contains("has 380"), "{refusal}");
    assert_eq!(b.text("td.balance"), "380", "nothing written");
    assert_eq!(b.count("form[data-action=correct]"), 0, "corrections are for heads and admins");
    b.shot("card");
    // Reissued: the new card carries the balance; the old one is closed.
    b.fill("form[data-action=reissue] input[name=number]", "7000002");
    b.click_and_load("form[data-action=reissue] button");
    assert_eq!(b.text("h1"), "Loyalty card 7000002");
    assert_eq!(b.text("td.balance"), "380");
    b.shot("card-reissued");
    b.goto(&format!("{base}/card/{card}"));
    assert_eq!(b.count("section.actions"), 0, "a reissued card takes no operation");
    // The strategies: the manager's client in its segment; no run for a manager.
    b.click_and_load("header.top a[href='/strategies']");
    assert_eq!(b.text("tr[data-segment=key] td.clients"), "1");
    assert_eq!(b.count("form.run"), 0);
    // A claim from the partner's page: without a subject refused at it, then registered.
    b.goto(&format!("{base}/partner/{partner}"));
    b.click_and_load("a.new-claim");
    let e = b.rt.block_on(b.client.find(Locator::Css("select[name=cause]"))).unwrap();
    b.rt.block_on(e.select_by_value("defect")).unwrap();
    b.fill("#claim-claimed", "15000");
    b.click_and_load("form.new-claim button");
    let refusal = b.text("form.new-claim .refusal");
    assert!(refusal.starts_with("subject:"), "{refusal}");
    assert_eq!(b.value("#claim-claimed"), "15000", "the values are kept");
    b.fill("#claim-subject", "Брак в партии кабеля");
    b.click_and_load("form.new-claim button");
    assert_eq!(b.text("h1"), "Брак в партии кабеля");
    b.shot("claim-registered");
    drop(b);
    // An admin runs the strategies, applied.
    let b = Browser::start("programs");
    b.sign_in(&base, "boss", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/strategies"));
    b.click("form.run input[name=apply]");
    b.click_and_load("form.run button");
    assert_eq!(b.text("section.ran td.applied"), "true");
    assert!(b.text("section.last-run").contains("true"), "the run is kept as the last");
    b.shot("strategies-run");
    drop(b);
    server.stop();
}

#[test]
fn on_a_phone_every_page_fits_the_screen_without_sideways_scrolling() {
    let (office, north, _) = office();
    let deal = deal_in_proposal(&office, north, "Сделка на телефоне с длинным названием для проверки переносов");
    let partner = office.site.with(|inst| {
        use crmkit_core::store::Reader as _;
        inst.store().read().unwrap().get::<crmkit_core::model::Deal>(deal).unwrap().unwrap().partner
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::sized("phone", (390, 844));
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    for (name, path) in [
        ("work", "/work".to_string()),
        ("board", "/board?kind=b2b_sale".to_string()),
        ("deal", format!("/deal/{deal}")),
        ("dossier", format!("/partner/{partner}")),
        ("partners", "/partners?q=клиент".to_string()),
        ("claims", "/claims".to_string()),
        ("cards", "/cards".to_string()),
        ("strategies", "/strategies".to_string()),
    ] {
        b.goto(&format!("{base}{path}"));
        let widths =
            b.rt.block_on(b.client.execute(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
                vec![],
            ))
            .unwrap();
        let (scroll, client) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
        b.shot(&format!("phone-{name}"));
        assert!(scroll <= client, "{path} is {scroll} px wide on a {client} px screen");
    }
    drop(b);
    server.stop();
}

#[test]
fn a_long_deal_file_opens_at_its_latest_page_and_pages_back_by_kind() {
    use crmkit_core::model::{Interaction, InteractionKind};
    let (office, north, _) = office();
    let deal = deal_in_proposal(&office, north, "Долгая сделка");
    write(&office, Some(north), |tx| {
        use crmkit_core::store::Reader as _;
        let d: crmkit_core::model::Deal = tx.load(deal)?;
        for i in 0..150 {
            let at = crmkit_core::time::Timestamp(crate::common::T0.0 + (i + 1) * 60_000);
            let mut x = Interaction::new(InteractionKind::Call, at, d.partner, format!("Звонок {i:03}"));
            x.deal = Some(deal);
            tx.create(x)?;
        }
        Ok(())
    });
    let server = Served::start(&office.site);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("deal-timeline");
    b.sign_in(&base, "north", PASSWORD);
    b.wait_url("/work");
    b.goto(&format!("{base}/deal/{deal}"));
    // The latest items first: the last page, with the last call on it.
    let total: usize =
        b.text("section.timeline h2").trim_start_matches("Timeline (").trim_end_matches(')').parse().unwrap();
    assert!(total > 150, "{total}");
    assert_eq!(b.text("section.timeline nav.pages span"), format!("{0} / {0}", total.div_ceil(100)));
    assert!(b.text("section.timeline tbody").contains("Звонок 149"));
    b.click_and_load("section.timeline nav.pages a.prev");
    assert!(b.text("section.timeline tbody").contains("Звонок 000"));
    // Only the calls: 150 of them, the first page of two.
    b.goto(&format!("{base}/deal/{deal}"));
    b.click("section.timeline form.kinds input[value=interaction]");
    b.click_and_load("section.timeline form.kinds button");
    assert_eq!(b.text("section.timeline h2"), "Timeline (150)");
    assert_eq!(b.count("section.timeline tr[data-item=interaction]"), 50, "the last page of the calls");
    assert_eq!(b.count("section.timeline tr[data-item=step]"), 0);
    b.shot("deal-timeline");
    drop(b);
    server.stop();
}
