//! Serving: the listener, connections under a cap and timeouts, and the shutdown that lets
//! requests in flight finish, stops the writer and closes the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::framing::JsonErrors;
use super::router::handle;
use super::{cursor, metrics, uploads_dir, writer, App};
use crate::token::{self, Token};

/// The most connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) read.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// How long a connection, HTTP/1 kept alive or HTTP/2, may stay open with no request
/// running before the server closes it (HTTP/2: GOAWAY); `CRMKIT_HTTP_IDLE_TIMEOUT`
/// (seconds) changes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long in-flight requests may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long scripts still running on shutdown (a long report) may go on before they are
/// ended.
const SCRIPT_GRACE: Duration = Duration::from_secs(2);

/// What a server needs: the installation, its tokens and its process engine.
pub struct Served {
    app: Arc<App>,
    idle: Duration,
}

impl Served {
    /// The installation `inst` with `tokens`, writing through `engine`, which calls `runtimes`.
    pub fn new(
        inst: Arc<Installation>,
        tokens: Vec<Token>,
        engine: crmkit_core::process::Engine,
        runtimes: crate::script::Runtimes,
    ) -> Result<Served> {
        let crate::script::Runtimes { scripts, plugins } = runtimes;
        let bound = Arc::new(crate::script::Bound::new(engine, Arc::new(inst.settings().clone()), plugins));
        let writer = writer::Writer::start(inst.clone(), bound.clone());
        let metrics = metrics::Metrics::new(inst.clone(), &writer.metrics, bound.clone());
        let tokens = std::sync::RwLock::new(tokens);
        let cursors = cursor::Cursors::load_or_create(inst.dir())?;
        let app = App {
            inst,
            tokens,
            token_writes: std::sync::Mutex::new(()),
            writer,
            reports: crate::script::reports(&scripts),
            scripts,
            bound,
            importing: Arc::default(),
            cursors,
            metrics,
            web: super::web::Web::new(),
        };
        let uploads = uploads_dir(&app);
        if uploads.exists() {
            std::fs::remove_dir_all(&uploads).with_context(|| format!("emptying {}", uploads.display()))?;
        }
        std::fs::create_dir_all(&uploads).with_context(|| format!("creating {}", uploads.display()))?;
        Ok(Served { app: Arc::new(app), idle: idle_timeout()? })
    }

    /// Serves connections from `listener` until `stop` completes, then lets requests in
    /// flight finish and stops the writer; whether everything let go of the store.
    pub async fn run(self, listener: TcpListener, stop: impl std::future::Future<Output = ()>) -> bool {
        let (app, idle) = (self.app, self.idle);
        // The command line reaches the installation through this server while it runs.
        let commands = crate::beside::Listener::start(app.inst.clone());
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let (stopping, _) = tokio::sync::watch::channel(false);
        // The strategies, applied on their schedule.
        if let Some(every) = app.inst.settings().strategy_every {
            tokio::spawn(super::strategies::schedule(app.clone(), every, stopping.subscribe()));
        }
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT.min(idle)).max_buf_size(MAX_HEAD);
        builder.http2().timer(TokioTimer::new());
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore stays open"),
                _ = &mut stop => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: wait a moment rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let activity = Arc::new(Activity::new());
            let seen = activity.clone();
            let service = hyper::service::service_fn(move |req| {
                let running = seen.start();
                let app = app.clone();
                async move {
                    let answer = metrics::observed(app, peer, req, handle).await;
                    drop(running);
                    answer
                }
            });
            let conn =
                builder.serve_connection_with_upgrades(TokioIo::new(JsonErrors::new(stream)), service).into_owned();
            let mut stopping = stopping.subscribe();
            tokio::spawn(async move {
                tokio::pin!(conn);
                let mut closing = false;
                loop {
                    tokio::select! {
                        ended = conn.as_mut() => {
                            if let Err(e) = ended {
                                tracing::debug!("connection ended: {e}");
                            }
                            break;
                        }
                        _ = activity.idle_for(idle), if !closing => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        _ = stopping.wait_for(|s| *s), if !closing => {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
                drop(permit);
            });
        }
        if let Some(commands) = commands {
            commands.stop(SHUTDOWN_GRACE).await;
        }
        // Requests in flight finish (every connection gives its slot back); reports still
        // running after a moment are ended, so that their requests answer at once.
        stopping.send_replace(true);
        let finished = slots.acquire_many(MAX_CONNECTIONS as u32);
        tokio::pin!(finished);
        tokio::select! {
            _ = &mut finished => {}
            _ = tokio::time::sleep(SCRIPT_GRACE) => {
                app.scripts.stop_reports();
                tokio::select! {
                    _ = finished => {}
                    _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; stopping"),
                }
            }
        }
        // Reports whose clients went away end too; an import running finishes (its batches
        // are its own transactions); the writer finishes what it was given and commits.
        app.scripts.stop_reports();
        if tokio::time::timeout(SHUTDOWN_GRACE, app.importing.lock()).await.is_err() {
            tracing::warn!("an import is still running after {SHUTDOWN_GRACE:?}; it stops with the process");
        }
        let stopping = app.clone();
        let _ = tokio::task::spawn_blocking(move || stopping.writer.stop()).await;
        // The last reads let go of the store, which closes with the app.
        let mut app = app;
        let waited = std::time::Instant::now();
        loop {
            match Arc::try_unwrap(app) {
                Ok(_) => return true,
                Err(still) if waited.elapsed() < SHUTDOWN_GRACE => {
                    app = still;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    tracing::warn!("reads still hold the store after {SHUTDOWN_GRACE:?}; it closes with the process");
                    return false;
                }
            }
        }
    }
}

/// The idle timeout: `CRMKIT_HTTP_IDLE_TIMEOUT` seconds (a decimal number over 0), or
/// [`IDLE_TIMEOUT`].
fn idle_timeout() -> Result<Duration> {
    match std::env::var("CRMKIT_HTTP_IDLE_TIMEOUT") {
        Err(_) => Ok(IDLE_TIMEOUT),
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
            .map(Duration::from_secs_f64)
            .with_context(|| {
                format!("CRMKIT_HTTP_IDLE_TIMEOUT \"{text}\" is not a number of seconds over 0 (at most 86400)")
            }),
    }
}

/// What a connection is doing: requests running, and when the last one began or ended.
struct Activity {
    running: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
}

/// A request running on a connection; its end counts as activity.
struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Activity {
        Activity { running: 0.into(), last: std::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    fn start(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.touch();
        Running(self.clone())
    }

    /// Completes once no request has run on the connection for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 && last.elapsed() >= idle {
                return;
            }
            // Looked at again when the last activity is `idle` old, or `idle` from now while
            // a request runs.
            match self.running.load(std::sync::atomic::Ordering::SeqCst) {
                0 => tokio::time::sleep_until(last + idle).await,
                _ => tokio::time::sleep(idle).await,
            }
        }
    }
}

/// Serves the installation in `dir` on `addr` until SIGINT or SIGTERM; prints the address
/// it listens on first.
pub fn serve(dir: &Path, addr: &str) -> Result<()> {
    serve_then(dir, addr, |_| {})
}

/// [`serve`], calling `listening` with the URL once the socket is bound.
pub fn serve_then(dir: &Path, addr: &str, listening: impl FnOnce(&str)) -> Result<()> {
    let inst = Arc::new(Installation::open(dir, Arc::new(SystemClock))?);
    let tokens = token::load(dir)?;
    let (engine, runtimes) = crate::script::engine_and_scripts(&inst)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let closed = runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        say!("listening on http://{local}");
        listening(&format!("http://{local}"));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            say!("shutting down: finishing requests in flight");
        };
        anyhow::Ok(Served::new(inst, tokens, engine, runtimes)?.run(listener, stop).await)
    })?;
    // Work still on the blocking pool is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match closed {
        true => say!("stopped; the database is closed"),
        false => say!("stopped; reads were still running, so the database was not closed cleanly"),
    }
    Ok(())
}
