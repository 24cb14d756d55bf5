//! What a server measures and says about each request: the Prometheus metrics of
//! `GET /metrics` (requests by route and status with their latency, the writer's queue,
//! group sizes and commit time, the record cache, imports, hook handlers) and the one log
//! line per request, with its id, route, status, latency and user.
//!
//! Labels take bounded values only: a route is its pattern (`/api/v1/deals/{id}`), never
//! the path it was called with; a request no route matches is `unmatched`. Core keeps plain
//! counters (`Store::record_cache_stats`, `Hooks::stats`) that this module reads at each
//! scrape; core knows nothing of Prometheus.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crmkit_core::Installation;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::{full, ApiError, App, Body};

/// The content type of the OpenMetrics text `GET /metrics` answers, which Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request no route matches.
const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImportLabels {
    entity: String,
    outcome: &'static str,
}

/// The writer thread's figures, which it updates itself (see `writer.rs`).
#[derive(Clone)]
pub(super) struct WriterMetrics {
    /// Writes sent and not yet taken into a group.
    pub queued: Gauge,
    /// Writes per committed group.
    pub group_size: Histogram,
    /// How long a group's commit took, in seconds.
    pub commit_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            queued: Gauge::default(),
            // 1, 2, 4, … 256 (the most a group takes).
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            // 0.1 ms to about 3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
        }
    }
}

/// A server's metrics, registered once and encoded at each scrape.
pub(super) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    import_rows: Family<ImportLabels, Counter>,
    next_request: AtomicU64,
    /// Makes generated request ids differ between server runs.
    boot: u64,
}

impl Metrics {
    /// The metrics of a server over `inst`, whose writer reports into `writer` and whose
    /// writes and imports run through the engine `bound` holds (replaced by a reload).
    pub fn new(inst: Arc<Installation>, writer: &WriterMetrics, bound: Arc<crate::script::Bound>) -> Metrics {
        let mut registry = Registry::with_prefix("crmkit");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status",
            requests.clone(),
        );
        // Histograms need their buckets: the family makes each with this constructor.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response, by method and route pattern",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register("writer_queue", "Writes waiting for the writer thread", writer.queued.clone());
        registry.register("writer_group_size", "Writes per group commit", writer.group_size.clone());
        registry.register_with_unit(
            "writer_commit_duration",
            "Time a group commit takes to be durable",
            Unit::Seconds,
            writer.commit_seconds.clone(),
        );
        let import_rows = Family::<ImportLabels, Counter>::default();
        registry.register(
            "import_rows",
            "Rows of API imports by entity and outcome (created, updated, unchanged, failed); dry runs are not counted",
            import_rows.clone(),
        );
        registry.register_collector(Box::new(CoreStats { inst, bound }));
        let boot =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        Metrics { registry, requests, latency, import_rows, next_request: AtomicU64::new(0), boot }
    }

    /// Counts the rows of an import of `entity` (not a dry run): the rows refused, and the
    /// created, updated and unchanged ones unless the import was `refused` as a whole (an
    /// atomic import with a bad row writes none).
    pub fn imported(&self, entity: &str, report: &crmkit_core::transfer::Report, refused: bool) {
        let written = |n: u64| if refused { 0 } else { n };
        for (outcome, n) in [
            ("created", written(report.created)),
            ("updated", written(report.updated)),
            ("unchanged", written(report.unchanged)),
            ("failed", report.failed),
        ] {
            self.import_rows.get_or_create(&ImportLabels { entity: entity.to_string(), outcome }).inc_by(n);
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Core's plain counters, read at each scrape.
struct CoreStats {
    inst: Arc<Installation>,
    /// The engine in force, whose hook registry counts per handler (the writer's writes and
    /// the imports share it; a reload brings a new registry, whose counts start at zero, as
    /// a restarted process's do).
    bound: Arc<crate::script::Bound>,
}

impl std::fmt::Debug for CoreStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreStats").finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    point: String,
    handler: String,
}

impl Collector for CoreStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cache) = self.inst.store().record_cache_stats() {
            for (name, help, value) in [
                ("record_cache_hits", "Record lookups the record cache answered", cache.hits),
                ("record_cache_misses", "Record lookups the record cache could not answer", cache.misses),
            ] {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
            }
            let held = ConstGauge::new(cache.bytes as i64);
            held.encode(encoder.encode_descriptor(
                "record_cache_size",
                "Memory the records in the record cache are counted for",
                Some(&Unit::Bytes),
                held.metric_type(),
            )?)?;
        }
        let mut by_handler: std::collections::BTreeMap<(String, String), (u64, u64, u64)> = Default::default();
        {
            for h in self.bound.engine().hooks().stats() {
                let e = by_handler.entry((h.point.name().to_string(), h.handler)).or_default();
                e.0 += h.calls;
                e.1 += h.faults;
                e.2 += h.nanos;
            }
        }
        let series = [
            ("hook_calls", "Calls of each bound hook handler", None),
            ("hook_faults", "Calls of a hook handler that faulted (failed, panicked, answered wrongly)", None),
            ("hook_duration", "Time spent in each hook handler", Some(Unit::Seconds)),
        ];
        for (i, (name, help, unit)) in series.iter().enumerate() {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), ConstCounter::new(0u64).metric_type())?;
            for ((point, handler), (calls, faults, nanos)) in &by_handler {
                let labels = HandlerLabels { point: point.clone(), handler: handler.clone() };
                let series = family.encode_family(&labels)?;
                match i {
                    0 => ConstCounter::new(*calls).encode(series)?,
                    1 => ConstCounter::new(*faults).encode(series)?,
                    _ => ConstCounter::new(*nanos as f64 / 1e9).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// The address a request came from, put in its extensions by [`observed`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Peer(pub SocketAddr);

/// Where authentication notes the caller's login, for the request's log line.
#[derive(Clone, Debug, Default)]
pub(super) struct User(Arc<OnceLock<String>>);

impl User {
    /// Notes the login of the request's caller.
    pub fn note(req: &Request<Incoming>, login: &str) {
        if let Some(u) = req.extensions().get::<User>() {
            let _ = u.0.set(login.to_string());
        }
    }
}

/// A request id a client sent in `X-Request-Id`, when it is one we can log and send back:
/// 1 to 128 letters, digits, `-`, `_`, `.` or `:`.
fn client_request_id(req: &Request<Incoming>) -> Option<String> {
    let id = req.headers().get("x-request-id")?.to_str().ok()?;
    let fits = (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    fits.then(|| id.to_string())
}

/// Serves one request through `handle` (the router), measuring it: counts it by route
/// pattern and status, times it, logs its line and answers with its `X-Request-Id`.
pub(super) async fn observed<F, Fut>(
    app: Arc<App>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    handle: F,
) -> Result<Response<Body>, std::convert::Infallible>
where
    F: FnOnce(Arc<App>, Request<Incoming>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Body>, std::convert::Infallible>>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = super::router::pattern(&path).unwrap_or(UNMATCHED);
    let metrics = &app.metrics;
    let id = client_request_id(&req)
        .unwrap_or_else(|| format!("{:x}-{:x}", metrics.boot, metrics.next_request.fetch_add(1, Ordering::Relaxed)));
    let user = User::default();
    req.extensions_mut().insert(Peer(peer));
    req.extensions_mut().insert(user.clone());
    let Ok(mut response) = handle(app.clone(), req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let metrics = &app.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels { method: method.to_string(), route: route.to_string(), status })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method: method.to_string(), route: route.to_string() })
        .observe(elapsed.as_secs_f64());
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let user = user.0.get().map(String::as_str).unwrap_or("-");
    tracing::info!(
        request_id = id.as_str(),
        %method,
        route,
        path,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        user,
        "request"
    );
    Ok(response)
}

/// `GET /metrics`: to anyone connecting from the loopback interface, else to an admin's
/// token (operational data: who writes how much, which handlers fault).
pub(super) fn respond(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let local = req.extensions().get::<Peer>().is_some_and(|p| p.0.ip().is_loopback());
    if !local {
        let caller = super::auth::authenticate(app, req)?;
        super::admin_only(&caller, "metrics")?;
    }
    let text = app.metrics.encode().map_err(|e| ApiError::internal("encoding the metrics", e))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", CONTENT_TYPE)
        .body(full(bytes::Bytes::from(text)))
        .expect("a valid response"))
}
