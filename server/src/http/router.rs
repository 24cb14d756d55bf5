//! The route table (kept equal to the OpenAPI document) and the dispatch of each request
//! to its handler (the request's log line and metrics are `metrics::observed`'s).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::admin::{create_token, list_tokens, revoke_token, scripts_reload, scripts_status};
use super::auth::authenticate;
use super::deals::deal_action;
use super::dossier::{get_deal_file, get_dossier};
use super::reports::{get_analytics, get_report, list_reports, Wants};
use super::{entities, files, full, import, json_response, tasks, ApiError, App, Body, Code};

/// Runs a long read — a report, a dossier, a deal's file — on the blocking pool, so that
/// the async workers go on serving.
async fn blocking(
    f: impl FnOnce() -> Result<Response<Body>, ApiError> + Send + 'static,
) -> Result<Response<Body>, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal("a read stopped", e))?
}

/// The response to a request.
pub(super) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let mut response = match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if method == Method::HEAD {
        // GET's answer without its body; its length stays said.
        use hyper::body::Body as _;
        if let Some(len) = response.body().size_hint().exact() {
            response.headers_mut().insert("content-length", len.into());
        }
        *response.body_mut() = super::empty();
    }
    Ok(response)
}

/// The OpenAPI 3.1 document of the API; a test keeps it and [`ROUTES`] the same.
const OPENAPI: &str = include_str!("openapi.json");

/// The entity resources, with whether they take `DELETE` (users are deactivated, deals
/// and tasks closed, never deleted).
const RESOURCES: &[(&str, bool)] = &[
    ("partners", true),
    ("counterparties", true),
    ("contacts", true),
    ("partner-links", true),
    ("contact-links", true),
    ("users", false),
    ("deals", false),
    ("participants", true),
    ("participant-links", true),
    ("interactions", true),
    ("documents", true),
    ("tasks", false),
    ("attachments", true),
    ("plans", true),
    ("loyalty-programs", true),
    ("loyalty-cards", true),
    ("loyalty-entries", false),
    ("claims", false),
];

/// What a route does: the handler a request of its method and path goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Health,
    OpenApi,
    Metrics,
    Me,
    ProcessKinds,
    ProcessKind,
    TasksMine,
    TasksOverdue,
    TaskAction,
    DealFile,
    DealAction,
    CardAction,
    CardLedger,
    ClaimAction,
    LoyaltyExpire,
    Strategies,
    StrategiesRun,
    Dossier,
    Reports,
    Report,
    Analytics,
    Upload,
    AttachmentContent,
    Import,
    Scripts,
    ScriptsReload,
    Tokens,
    TokenCreate,
    TokenRevoke,
    UserPassword,
    List(&'static str),
    Create(&'static str),
    Get(&'static str),
    Update(&'static str),
    Delete(&'static str),
}

/// Every route the server answers: method, path template as the OpenAPI document writes
/// it, and its handler. The router ([`TABLE`]) is built from it alone.
static ROUTES: std::sync::LazyLock<Vec<(Method, String, Op)>> = std::sync::LazyLock::new(|| {
    let fixed = [
        (Method::GET, "/health", Op::Health),
        (Method::GET, "/openapi.json", Op::OpenApi),
        (Method::GET, "/metrics", Op::Metrics),
        (Method::GET, "/api/v1/me", Op::Me),
        (Method::GET, "/api/v1/process-kinds", Op::ProcessKinds),
        (Method::GET, "/api/v1/process-kinds/{id}", Op::ProcessKind),
        (Method::GET, "/api/v1/tasks/mine", Op::TasksMine),
        (Method::GET, "/api/v1/tasks/overdue", Op::TasksOverdue),
        (Method::POST, "/api/v1/tasks/{id}/{action}", Op::TaskAction),
        (Method::GET, "/api/v1/deals/{id}/file", Op::DealFile),
        (Method::POST, "/api/v1/deals/{id}/{action}", Op::DealAction),
        (Method::POST, "/api/v1/loyalty-cards/{id}/{action}", Op::CardAction),
        (Method::GET, "/api/v1/loyalty-cards/{id}/ledger", Op::CardLedger),
        (Method::POST, "/api/v1/loyalty/expire", Op::LoyaltyExpire),
        (Method::POST, "/api/v1/claims/{id}/{action}", Op::ClaimAction),
        (Method::GET, "/api/v1/strategies", Op::Strategies),
        (Method::POST, "/api/v1/strategies/run", Op::StrategiesRun),
        (Method::GET, "/api/v1/partners/{id}/dossier", Op::Dossier),
        (Method::GET, "/api/v1/reports", Op::Reports),
        (Method::GET, "/api/v1/reports/{name}", Op::Report),
        (Method::GET, "/api/v1/analytics/{name}", Op::Analytics),
        (Method::GET, "/api/v1/attachments/{id}/content", Op::AttachmentContent),
        (Method::POST, "/api/v1/import/{entity}", Op::Import),
        (Method::GET, "/api/v1/scripts", Op::Scripts),
        (Method::POST, "/api/v1/scripts/reload", Op::ScriptsReload),
        (Method::GET, "/api/v1/tokens", Op::Tokens),
        (Method::POST, "/api/v1/tokens", Op::TokenCreate),
        (Method::DELETE, "/api/v1/tokens/{id}", Op::TokenRevoke),
        (Method::PUT, "/api/v1/users/{id}/password", Op::UserPassword),
    ];
    let mut routes: Vec<(Method, String, Op)> = fixed.into_iter().map(|(m, p, op)| (m, p.to_string(), op)).collect();
    for (name, deletable) in RESOURCES {
        let create = if *name == "attachments" { Op::Upload } else { Op::Create(name) };
        routes.push((Method::GET, format!("/api/v1/{name}"), Op::List(name)));
        routes.push((Method::POST, format!("/api/v1/{name}"), create));
        routes.push((Method::GET, format!("/api/v1/{name}/{{id}}"), Op::Get(name)));
        routes.push((Method::PATCH, format!("/api/v1/{name}/{{id}}"), Op::Update(name)));
        if *deletable {
            routes.push((Method::DELETE, format!("/api/v1/{name}/{{id}}"), Op::Delete(name)));
        }
    }
    routes
});

/// A path template and the methods it takes, with their handlers.
type PathRoutes = (&'static str, Vec<(Method, Op)>);

/// The path templates of [`ROUTES`], matched by `matchit` (fixed segments before `{…}`
/// ones), each with the methods it takes and their handlers.
static TABLE: std::sync::LazyLock<matchit::Router<PathRoutes>> = std::sync::LazyLock::new(|| {
    let mut by_path: Vec<(&'static str, Vec<(Method, Op)>)> = Vec::new();
    for (method, path, op) in ROUTES.iter() {
        match by_path.iter_mut().find(|(p, _)| p == path) {
            Some((_, ops)) => ops.push((method.clone(), *op)),
            None => by_path.push((path, vec![(method.clone(), *op)])),
        }
    }
    let mut router = matchit::Router::new();
    for (path, ops) in by_path {
        router.insert(path, (path, ops)).unwrap_or_else(|e| panic!("route {path}: {e}"));
    }
    router
});

/// Why a request found no handler.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    /// No route has the path.
    NoRoute,
    /// The path is a route's, not with this method; the methods it takes (`Allow`).
    Method(String),
}

/// The handler of `method path` (HEAD: GET's) and the values of its `{…}` segments.
fn find_route(method: &Method, path: &str) -> Result<(Op, Vec<(String, String)>), Miss> {
    let found = TABLE.at(path).map_err(|_| Miss::NoRoute)?;
    let wanted = if method == Method::HEAD { &Method::GET } else { method };
    let params = || found.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match found.value.1.iter().find(|(m, _)| m == wanted) {
        Some((_, op)) => Ok((*op, params())),
        None => Err(Miss::Method(allow(&found.value.1))),
    }
}

/// The path template of the route `path` matches (`/api/v1/deals/{id}`), whatever the
/// method: what the metrics label a request with.
pub(super) fn pattern(path: &str) -> Option<&'static str> {
    TABLE.at(path).ok().map(|found| found.value.0)
}

/// The `Allow` header of a path taking `ops`: their methods, HEAD with GET, and OPTIONS.
fn allow(ops: &[(Method, Op)]) -> String {
    let mut methods: Vec<&str> = ops.iter().map(|(m, _)| m.as_str()).collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.push("OPTIONS");
    methods.join(", ")
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    if super::web::serves(&path) {
        return super::web::handle(app, req).await;
    }
    let (op, params) = match find_route(req.method(), &path) {
        Ok(found) => found,
        Err(Miss::Method(allow)) if req.method() == Method::OPTIONS => {
            return Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header("allow", allow)
                .body(super::empty())
                .expect("a valid response"))
        }
        Err(Miss::Method(allow)) => {
            let mut r = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::MethodNotAllowed,
                format!("{path} does not take {}; it takes {allow}", req.method()),
            )
            .into_response();
            r.headers_mut().insert("allow", allow.parse().expect("method names are a header value"));
            return Ok(r);
        }
        Err(Miss::NoRoute) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                Code::NoRoute,
                format!("no resource {} {path}", req.method()),
            ))
        }
    };
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (id, action) = (param("id"), param("action"));
    match op {
        Op::Health => return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
        Op::Metrics => return super::metrics::respond(app, &req),
        Op::OpenApi => {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(full(Bytes::from_static(OPENAPI.as_bytes())))
                .expect("a valid response"))
        }
        _ => {}
    }
    let caller = authenticate(app, &req)?;
    let q = req.uri().query().unwrap_or("").to_string();
    match op {
        Op::Health | Op::OpenApi | Op::Metrics => unreachable!("answered above"),
        Op::Me => Ok(json_response(
            StatusCode::OK,
            &json!({ "id": caller.user.id, "login": caller.user.login, "name": caller.user.name, "role": caller.role }),
        )),
        Op::ProcessKinds => Ok(json_response(StatusCode::OK, &json!({ "items": app.inst.settings().process_kinds }))),
        Op::ProcessKind => {
            let kind = app.inst.settings().process_kind(&id).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, format!("there is no process kind \"{id}\""))
            })?;
            Ok(json_response(StatusCode::OK, &json!(kind)))
        }
        Op::TasksMine => tasks::mine(app, &caller, &q),
        Op::TasksOverdue => tasks::overdue(app, &caller, &q),
        Op::TaskAction => tasks::finish(app, &caller, &id, &action, req).await,
        Op::DealFile => {
            let app = app.clone();
            blocking(move || get_deal_file(&app, &caller, &id, &q)).await
        }
        Op::DealAction => deal_action(app, &caller, &id, &action, req).await,
        Op::CardAction => super::loyalty::card_action(app, &caller, &id, &action, req).await,
        Op::CardLedger => super::loyalty::ledger(app, &caller, &id, &q),
        Op::ClaimAction => super::claims::claim_action(app, &caller, &id, &action, req).await,
        Op::LoyaltyExpire => super::loyalty::expire(app, &caller, &q).await,
        Op::Strategies => {
            let app = app.clone();
            blocking(move || super::strategies::get(&app, &caller)).await
        }
        Op::StrategiesRun => super::strategies::run(app, &caller, &q).await,
        Op::Dossier => {
            let app = app.clone();
            blocking(move || get_dossier(&app, &caller, &id)).await
        }
        Op::Reports => list_reports(app, &caller),
        Op::Report => {
            let app = app.clone();
            let accept = req.headers().get("accept").and_then(|a| a.to_str().ok()).unwrap_or_default();
            let csv = accept.contains("text/csv");
            let name = param("name");
            blocking(move || get_report(&app, &caller, &name, &q, csv)).await
        }
        Op::Analytics => {
            let app = app.clone();
            let accept = req.headers().get("accept").and_then(|a| a.to_str().ok()).unwrap_or_default();
            let wants = Wants::from_accept(accept);
            let name = param("name");
            blocking(move || get_analytics(&app, &caller, &name, &q, wants)).await
        }
        Op::Upload => files::upload(app, &caller, &q, req).await,
        Op::AttachmentContent => files::download(app, &caller, &id),
        Op::Import => import::upload(app, &caller, &param("entity"), &q, req).await,
        Op::Scripts => scripts_status(app, &caller),
        Op::ScriptsReload => scripts_reload(app, &caller),
        Op::Tokens => list_tokens(app, &caller),
        Op::TokenCreate => create_token(app, &caller, req).await,
        Op::TokenRevoke => revoke_token(app, &caller, &id),
        Op::UserPassword => super::admin::set_password(app, &caller, &id, req).await,
        Op::List(resource) | Op::Create(resource) | Op::Get(resource) | Op::Update(resource) | Op::Delete(resource) => {
            let no_handler = || {
                tracing::error!("route {op:?} has no entity");
                ApiError::internal("routing", format!("{resource} has no entity"))
            };
            entities::with_resource!(resource, E => match op {
                Op::List(_) => entities::list::<E>(app, &caller, &q),
                Op::Create(_) => entities::create::<E>(app, &caller, req).await,
                Op::Get(_) => entities::get::<E>(app, &caller, &id),
                Op::Update(_) => entities::update::<E>(app, &caller, &id, req).await,
                _ => entities::delete::<E>(app, &caller, &id, req).await,
            }, else Err(no_handler()))
        }
    }
}

/// The id in a path, or a 400 naming it.
pub(super) fn parse_id<T: std::str::FromStr>(what: &str, id: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    id.parse().map_err(|e| {
        ApiError::at(StatusCode::BAD_REQUEST, Code::BadId, "id", format!("\"{id}\" is not a {what} id: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_and_the_routes_are_the_same() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> =
            ROUTES.iter().map(|(m, p, _)| (m.as_str().to_lowercase(), p.clone())).collect();
        routed.sort();
        assert_eq!(documented, routed);
        // Every documented path parameter is a segment of its template, and back.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let mut in_path: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
            in_path.sort();
            for (method, op) in ops.as_object().unwrap() {
                let mut declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                declared.sort();
                assert_eq!(in_path, declared, "{method} {path}");
            }
        }
    }

    #[test]
    fn every_resource_of_the_table_is_served_by_the_entity_of_its_path() {
        use entities::Resource as _;
        for (name, _) in RESOURCES {
            entities::with_resource!(*name, E => assert_eq!(E::PATH, *name), else panic!("{name} has no entity"));
        }
    }

    #[test]
    fn requests_find_their_route_and_its_values() {
        let (op, v) = find_route(&Method::POST, "/api/v1/deals/01ABC/move").unwrap();
        assert_eq!(op, Op::DealAction);
        assert_eq!(v, vec![("id".to_string(), "01ABC".to_string()), ("action".to_string(), "move".to_string())]);
        assert_eq!(find_route(&Method::GET, "/api/v1/deals/01ABC/file").unwrap().0, Op::DealFile);
        assert_eq!(find_route(&Method::GET, "/api/v1/deals").unwrap().0, Op::List("deals"));
        assert_eq!(find_route(&Method::HEAD, "/api/v1/deals").unwrap().0, Op::List("deals"));
        assert_eq!(find_route(&Method::GET, "/api/v1/tasks/mine").unwrap().0, Op::TasksMine);
        assert_eq!(find_route(&Method::POST, "/api/v1/attachments").unwrap().0, Op::Upload);
        assert_eq!(find_route(&Method::DELETE, "/api/v1/deals"), Err(Miss::Method("GET, POST, HEAD, OPTIONS".into())));
        assert_eq!(find_route(&Method::GET, "/api/v1/nothing"), Err(Miss::NoRoute));
        assert_eq!(find_route(&Method::GET, "/API/v1/deals"), Err(Miss::NoRoute));
        assert_eq!(find_route(&Method::GET, "/api/v1/deals/"), Err(Miss::NoRoute));
    }
}
