//! The route table (kept equal to the OpenAPI document) and the dispatch of each request
//! to its handler, with the request log line.

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
use super::reports::{get_report, list_reports};
use super::{entities, files, full, import, json_response, tasks, ApiError, App, Body};

/// Runs a long read — a report, a dossier, a deal's file — on the blocking pool, so that
/// the async workers go on serving.
async fn blocking(
    f: impl FnOnce() -> Result<Response<Body>, ApiError> + Send + 'static,
) -> Result<Response<Body>, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal("a read stopped", e))?
}

/// The response to a request (its log line and metrics are `metrics::observed`'s).
pub(super) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    })
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
];

/// Every route the server answers: method and path template, as the OpenAPI document
/// writes them. The router recognizes requests by this table, first match first: fixed
/// paths come before the templates they would also match.
static ROUTES: std::sync::LazyLock<Vec<(&'static str, String)>> = std::sync::LazyLock::new(|| {
    let fixed = [
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/metrics"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/process-kinds"),
        ("get", "/api/v1/process-kinds/{id}"),
        ("get", "/api/v1/tasks/mine"),
        ("get", "/api/v1/tasks/overdue"),
        ("post", "/api/v1/tasks/{id}/{action}"),
        ("get", "/api/v1/deals/{id}/file"),
        ("post", "/api/v1/deals/{id}/{action}"),
        ("get", "/api/v1/partners/{id}/dossier"),
        ("get", "/api/v1/reports"),
        ("get", "/api/v1/reports/{name}"),
        ("get", "/api/v1/attachments/{id}/content"),
        ("post", "/api/v1/import/{entity}"),
        ("get", "/api/v1/scripts"),
        ("post", "/api/v1/scripts/reload"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
    ];
    let mut routes: Vec<(&'static str, String)> = fixed.iter().map(|(m, p)| (*m, p.to_string())).collect();
    for (name, deletable) in RESOURCES {
        routes.push(("get", format!("/api/v1/{name}")));
        routes.push(("post", format!("/api/v1/{name}")));
        routes.push(("get", format!("/api/v1/{name}/{{id}}")));
        routes.push(("patch", format!("/api/v1/{name}/{{id}}")));
        if *deletable {
            routes.push(("delete", format!("/api/v1/{name}/{{id}}")));
        }
    }
    routes
});

/// The route `method path` takes, with the values of its `{…}` segments.
pub(super) fn find_route<'p>(method: &Method, path: &'p str) -> Option<(&'static str, Vec<&'p str>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Methods are case-sensitive: `get` is not GET.
    let name = match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => return None,
    };
    ROUTES.iter().find_map(|(m, template)| {
        if *m != name {
            return None;
        }
        let mut parts = template.trim_matches('/').split('/');
        let mut values = Vec::new();
        for s in &segments {
            let t = parts.next()?;
            if t.starts_with('{') {
                values.push(*s);
            } else if t != *s {
                return None;
            }
        }
        parts.next().is_none().then_some((template.as_str(), values))
    })
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let Some((template, values)) = find_route(req.method(), &path) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no_route", format!("no resource {} {path}", req.method())));
    };
    let values: Vec<String> = values.into_iter().map(str::to_string).collect();
    match template {
        "/health" => return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
        "/metrics" => return super::metrics::respond(app, &req),
        "/openapi.json" => {
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
    match (req.method().as_str(), template) {
        ("GET", "/api/v1/me") => Ok(json_response(
            StatusCode::OK,
            &json!({ "id": caller.user.id, "login": caller.user.login, "name": caller.user.name, "role": caller.role }),
        )),
        ("GET", "/api/v1/process-kinds") => {
            Ok(json_response(StatusCode::OK, &json!({ "items": app.inst.settings().process_kinds })))
        }
        ("GET", "/api/v1/process-kinds/{id}") => {
            let kind = app.inst.settings().process_kind(&values[0]).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no process kind \"{}\"", values[0]))
            })?;
            Ok(json_response(StatusCode::OK, &json!(kind)))
        }
        ("GET", "/api/v1/tasks/mine") => tasks::mine(app, &caller, &q),
        ("GET", "/api/v1/tasks/overdue") => tasks::overdue(app, &caller, &q),
        ("POST", "/api/v1/tasks/{id}/{action}") => tasks::finish(app, &caller, &values[0], &values[1], req).await,
        ("GET", "/api/v1/deals/{id}/file") => {
            let app = app.clone();
            blocking(move || get_deal_file(&app, &caller, &values[0], &q)).await
        }
        ("POST", "/api/v1/deals/{id}/{action}") => deal_action(app, &caller, &values[0], &values[1], req).await,
        ("GET", "/api/v1/partners/{id}/dossier") => {
            let app = app.clone();
            blocking(move || get_dossier(&app, &caller, &values[0])).await
        }
        ("GET", "/api/v1/reports") => list_reports(app, &caller),
        ("GET", "/api/v1/reports/{name}") => {
            let app = app.clone();
            let accept = req.headers().get("accept").and_then(|a| a.to_str().ok()).unwrap_or_default();
            let csv = accept.contains("text/csv");
            blocking(move || get_report(&app, &caller, &values[0], &q, csv)).await
        }
        ("POST", "/api/v1/attachments") => files::upload(app, &caller, &q, req).await,
        ("GET", "/api/v1/attachments/{id}/content") => files::download(app, &caller, &values[0]),
        ("POST", "/api/v1/import/{entity}") => import::upload(app, &caller, &values[0], &q, req).await,
        ("GET", "/api/v1/scripts") => scripts_status(app, &caller),
        ("POST", "/api/v1/scripts/reload") => scripts_reload(app, &caller),
        ("GET", "/api/v1/tokens") => list_tokens(app, &caller),
        ("POST", "/api/v1/tokens") => create_token(app, &caller, req).await,
        ("DELETE", "/api/v1/tokens/{id}") => revoke_token(app, &caller, &values[0]),
        (method, template) => {
            let no_handler = || {
                tracing::error!("route {method} {template} has no handler");
                ApiError::new(StatusCode::NOT_FOUND, "no_route", format!("no resource {method} {path}"))
            };
            let mut parts = template.trim_start_matches("/api/v1/").split('/');
            let resource = parts.next().unwrap_or_default();
            let with_id = parts.next().is_some();
            entities::with_resource!(resource, E => match (method, with_id) {
                ("GET", false) => entities::list::<E>(app, &caller, &q),
                ("POST", false) => entities::create::<E>(app, &caller, req).await,
                ("GET", true) => entities::get::<E>(app, &caller, &values[0]),
                ("PATCH", true) => entities::update::<E>(app, &caller, &values[0], req).await,
                ("DELETE", true) => entities::delete::<E>(app, &caller, &values[0], req).await,
                _ => Err(no_handler()),
            }, else Err(no_handler()))
        }
    }
}

/// The id in a path, or a 400 naming it.
pub(super) fn parse_id<T: std::str::FromStr>(what: &str, id: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    id.parse()
        .map_err(|e| ApiError::at(StatusCode::BAD_REQUEST, "bad_id", "id", format!("\"{id}\" is not a {what} id: {e}")))
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
        let mut routed: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.clone())).collect();
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
        let (t, v) = find_route(&Method::POST, "/api/v1/deals/01ABC/move").unwrap();
        assert_eq!((t, v), ("/api/v1/deals/{id}/{action}", vec!["01ABC", "move"]));
        assert_eq!(find_route(&Method::GET, "/api/v1/deals").unwrap().0, "/api/v1/deals");
        assert!(find_route(&Method::DELETE, "/api/v1/deals").is_none());
        assert!(find_route(&Method::GET, "/api/v1/nothing").is_none());
    }
}
