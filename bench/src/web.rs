//! The web page on a big installation: the server's time for each page a manager opens
//! (a real `crmkit serve` on loopback, a signed-in session, requests one after another),
//! the page's own JavaScript and CSS, and — through Debian's Chromium and chromedriver —
//! how soon the manager's board is interactive (Navigation Timing).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crmkit::say;
use crmkit_core::id::{DealId, PartnerId, UserId};
use crmkit_core::model::{Deal, DealStatus, Partner, Role, User};
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

/// The password the benchmark gives the manager it signs in as.
const PASSWORD: &str = "bench web page password";

/// An answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// One keep-alive HTTP/1.1 connection to the server.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Conn { reader: BufReader::new(s.try_clone()?), writer: s })
    }

    fn send(&mut self, method: &str, path: &str, cookie: &str, body: Option<&str>) -> Result<Answer> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nAccept-Language: ru\r\n");
        if !cookie.is_empty() {
            req += &format!("Cookie: {cookie}\r\n");
        }
        if let Some(b) = body {
            req += &format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", b.len());
        }
        req += "\r\n";
        if let Some(b) = body {
            req += b;
        }
        self.writer.write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split(' ').nth(1).context("a status line")?.parse()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(Ok(0), |(_, v)| v.parse())?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(Answer { status, headers, body })
    }
}

/// The value a `Set-Cookie` of `answer` gives `name`.
fn cookie_of(answer: &Answer, name: &str) -> Option<String> {
    answer.header("set-cookie").into_iter().find_map(|c| {
        let (k, rest) = c.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or_default().to_string())
    })
}

/// The text after `marker` up to the next `"`.
fn after(text: &str, marker: &str) -> Option<String> {
    let at = text.find(marker)? + marker.len();
    Some(text[at..].split('"').next()?.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the benchmark reads of the installation before serving it: the manager with the
/// number of open deals nearest `target`, their busiest kind, some of their deals and
/// partners.
struct Sample {
    login: String,
    open: usize,
    kind: String,
    deals: Vec<DealId>,
    partners: Vec<PartnerId>,
    prefix: String,
}

fn sample(inst: &Installation, target: usize) -> Result<Sample> {
    let r = inst.store().read()?;
    let mut managers: HashMap<UserId, String> = HashMap::new();
    r.for_each::<User>(|u| {
        if u.active && u.roles.contains(&Role::Manager) {
            managers.insert(u.id, u.login.clone());
        }
        true
    })?;
    let mut open: HashMap<UserId, HashMap<String, usize>> = HashMap::new();
    r.for_each::<Deal>(|d| {
        if d.status == DealStatus::InProgress && managers.contains_key(&d.manager) {
            *open.entry(d.manager).or_default().entry(d.kind.clone()).or_default() += 1;
        }
        true
    })?;
    let total = |m: &UserId| open.get(m).map_or(0, |k| k.values().sum::<usize>());
    let Some(manager) = managers.keys().min_by_key(|m| (total(m).abs_diff(target), **m)).copied() else {
        bail!("the installation has no active manager");
    };
    let kinds = open.remove(&manager).unwrap_or_default();
    let kind = kinds.iter().max_by_key(|(_, n)| **n).map(|(k, _)| k.clone()).unwrap_or_default();
    let theirs: Vec<Deal> = r.find(
        crmkit_core::store::Index::DealByManager,
        &crmkit_core::id::TypedId::raw(manager).to_bytes(),
        None,
        usize::MAX,
    )?;
    let open_ones: Vec<&Deal> = theirs.iter().filter(|d| d.status == DealStatus::InProgress).collect();
    let deals: Vec<DealId> = open_ones.iter().step_by((open_ones.len() / 50).max(1)).map(|d| d.id).take(50).collect();
    // The partners the manager manages (a deal's partner may be another manager's).
    let managed: Vec<PartnerId> = r
        .ids_by(
            crmkit_core::store::Index::PartnerByManager,
            &crmkit_core::id::TypedId::raw(manager).to_bytes(),
            None,
            usize::MAX,
        )?
        .into_iter()
        .map(crmkit_core::id::TypedId::from_raw)
        .collect();
    let partners: Vec<PartnerId> = managed.iter().step_by((managed.len() / 50).max(1)).copied().take(50).collect();
    let name = match partners.first() {
        Some(p) => r.get::<Partner>(*p)?.map(|p| p.name).unwrap_or_default(),
        None => String::new(),
    };
    let prefix: String = name.to_lowercase().chars().take(4).collect();
    Ok(Sample { login: managers[&manager].clone(), open: open_ones.len(), kind, deals, partners, prefix })
}

/// Runs the benchmark on the installation in `dir`; `rounds` requests per page.
pub fn run(dir: &Path, rounds: usize, target: usize) -> Result<()> {
    let inst = Arc::new(Installation::open(dir, Arc::new(SystemClock))?);
    let started = Instant::now();
    let s = sample(&inst, target)?;
    say!(
        "crmkit-bench web: manager {} with {} open deals (the nearest to {target}), board of kind {}; read in {:.1} s",
        s.login,
        s.open,
        s.kind,
        started.elapsed().as_secs_f64()
    );
    crmkit::password::set(&inst, &s.login, PASSWORD)?;
    let tokens = crmkit::token::load(dir)?;
    let (engine, scripts) = crmkit::engine_and_scripts(&inst)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            crmkit::Served::new(inst, tokens, engine, scripts)?
                .run(listener, async move {
                    let _ = stopped.await;
                })
                .await;
            Ok(())
        })
    });
    // Signed in as the manager, through the sign-in form.
    let mut c = Conn::open(addr)?;
    let form = c.send("GET", "/sign-in", "", None)?;
    let pre = cookie_of(&form, "crmkit_pre").context("the sign-in page's cookie")?;
    let csrf =
        after(&String::from_utf8_lossy(&form.body), "name=\"csrf\" value=\"").context("the sign-in form's token")?;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("login", &s.login)
        .append_pair("password", PASSWORD)
        .append_pair("csrf", &csrf)
        .finish();
    let signed = c.send("POST", "/sign-in", &format!("crmkit_pre={pre}"), Some(&body))?;
    let session = cookie_of(&signed, "crmkit_session").context("signing in")?;
    let cookie = format!("crmkit_session={session}");
    let work = c.send("GET", "/work", &cookie, None)?;
    if work.status != 200 {
        bail!("/work answered {}", work.status);
    }
    // The page's own assets.
    let html = String::from_utf8_lossy(&work.body).into_owned();
    let mut asset_bytes = 0;
    for marker in ["rel=\"stylesheet\" href=\"", "<script src=\""] {
        let path = after(&html, marker).context("an asset's address")?;
        asset_bytes += c.send("GET", &path, &cookie, None)?.body.len();
    }
    let kind = form_urlencoded::byte_serialize(s.kind.as_bytes()).collect::<String>();
    let q = form_urlencoded::byte_serialize(s.prefix.as_bytes()).collect::<String>();
    let deal_paths: Vec<String> = s.deals.iter().map(|d| format!("/deal/{d}")).collect();
    let partner_paths: Vec<String> = s.partners.iter().map(|p| format!("/partner/{p}")).collect();
    let pages: Vec<(&str, Vec<String>)> = vec![
        ("my work", vec!["/work".into()]),
        ("board", vec![format!("/board?kind={kind}")]),
        ("deal", deal_paths),
        ("dossier", partner_paths),
        ("partner search", vec![format!("/partners?q={q}")]),
        ("claims", vec!["/claims".into()]),
        ("loyalty cards", vec!["/cards?q=0000001".into()]),
        ("strategies", vec!["/strategies".into()]),
    ];
    say!("  the page's own CSS and JavaScript: {asset_bytes} bytes");
    say!("  {:<16} {:>9} {:>9} {:>9} {:>10}", "page", "p50 ms", "p95 ms", "max ms", "bytes");
    let mut worst = Duration::ZERO;
    for (name, paths) in &pages {
        if paths.is_empty() {
            continue;
        }
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for i in 0..rounds + 3 {
            let path = &paths[i % paths.len()];
            let t = Instant::now();
            let a = c.send("GET", path, &cookie, None)?;
            let took = t.elapsed();
            if a.status != 200 {
                bail!("{path} answered {}", a.status);
            }
            bytes = a.body.len();
            // The first few warm the caches.
            if i >= 3 {
                times.push(took);
            }
        }
        times.sort();
        let p95 = percentile(&times, 0.95);
        worst = worst.max(p95);
        say!(
            "  {:<16} {:>9.2} {:>9.2} {:>9.2} {:>10}",
            name,
            ms(percentile(&times, 0.5)),
            ms(p95),
            ms(*times.last().expect("rounds")),
            bytes
        );
    }
    say!("  the slowest page's p95: {:.2} ms", ms(worst));
    let base = format!("http://{addr}");
    match board_in_chromium(&base, &s.login, &format!("/board?kind={kind}")) {
        Ok(figures) => say!("{figures}"),
        Err(e) => say!("  Chromium: not measured ({e:#})"),
    }
    let _ = stop.send(());
    server.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    Ok(())
}

/// Opens the board in headless Chromium (through chromedriver) five times and reads its
/// Navigation Timing: when the page became interactive and when it had loaded.
fn board_in_chromium(base: &str, login: &str, board: &str) -> Result<String> {
    use fantoccini::{ClientBuilder, Locator};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut driver = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("chromedriver (Debian's chromium-driver)")?;
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = driver.kill();
            bail!("chromedriver did not listen");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,900", format!("--user-data-dir={}", profile.path().display())]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await?;
        client.goto(&format!("{base}/sign-in")).await?;
        client.find(Locator::Css("#login")).await?.send_keys(login).await?;
        client.find(Locator::Css("#password")).await?.send_keys(PASSWORD).await?;
        client.find(Locator::Css("form.sign-in button")).await?.click().await?;
        client.wait().for_element(Locator::Css("header.top")).await?;
        let mut interactive = Vec::new();
        let mut loaded = Vec::new();
        let mut cards = 0;
        for _ in 0..6 {
            client.goto(&format!("{base}{board}")).await?;
            let t = client
                .execute(
                    "const n = performance.getEntriesByType('navigation')[0]; \
                     return [n.domInteractive, n.loadEventEnd, document.querySelectorAll('article.card').length];",
                    vec![],
                )
                .await?;
            interactive.push(t[0].as_f64().unwrap_or_default());
            loaded.push(t[1].as_f64().unwrap_or_default());
            cards = t[2].as_u64().unwrap_or_default();
        }
        client.close().await?;
        // The first load fills the caches (and the assets); the five after it count.
        let median = |v: &mut Vec<f64>| {
            v.remove(0);
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        anyhow::Ok(format!(
            "  the board in Chromium ({cards} cards): interactive (domInteractive) median {:.0} ms, loaded (loadEventEnd) median {:.0} ms, of 5 loads",
            median(&mut interactive),
            median(&mut loaded)
        ))
    });
    let _ = driver.kill();
    let _ = driver.wait();
    result
}
