//! The reports: the list with their parameters, one report's table as JSON or CSV, and a
//! built-in analytics report's table as JSON, CSV or its SVG chart — over the deals the
//! caller's role may report on, by one rule for both routes.

use crmkit_core::model::Role;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::{access, full, json_response, query, ApiError, App, Body, Caller, Code};

/// `GET /api/v1/reports`: the installation's reports, with the parameters each declares.
pub(super) fn list_reports(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    refuse_managers(caller)?;
    Ok(json_response(StatusCode::OK, &json!({ "reports": app.reports.list() })))
}

/// `GET /api/v1/reports/NAME?param=value`: a report script's table, as JSON or (with
/// `Accept: text/csv`) CSV. Admins and viewers report over every deal, heads over the deals of
/// their department; managers do not run reports.
pub(super) fn get_report(
    app: &App,
    caller: &Caller,
    name: &str,
    q: &str,
    wants_csv: bool,
) -> Result<Response<Body>, ApiError> {
    let table = table(app, &app.reports, caller, name, q)?;
    if !wants_csv {
        return json_table(&table);
    }
    Ok(csv_table(&table))
}

/// What a client asks an analytics report as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wants {
    Json,
    Csv,
    Svg,
}

impl Wants {
    /// The representation `accept` (an `Accept` header) asks for: CSV or SVG when it names
    /// them, else JSON.
    pub(super) fn from_accept(accept: &str) -> Wants {
        if accept.contains("image/svg+xml") {
            Wants::Svg
        } else if accept.contains("text/csv") {
            Wants::Csv
        } else {
            Wants::Json
        }
    }
}

/// `GET /api/v1/analytics/NAME?kind=…`: a built-in report's table as JSON, CSV, or — for
/// a report that draws one — its SVG chart; 406 for a chart a report does not have. The same
/// callers and scope as the reports.
pub(super) fn get_analytics(
    app: &App,
    caller: &Caller,
    name: &str,
    q: &str,
    wants: Wants,
) -> Result<Response<Body>, ApiError> {
    refuse_managers(caller)?;
    let builtins = crate::analytics::reports(Some(app.bound.engine().hooks().clone()));
    if wants == Wants::Svg && builtins.list().iter().any(|r| r.name == name) {
        if let Some(m) = crate::analytics::no_chart(name) {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                Code::NotAcceptable,
                format!("{m}; report {name} is offered as application/json or text/csv"),
            ));
        }
    }
    let table = table(app, &builtins, caller, name, q)?;
    match wants {
        Wants::Json => json_table(&table),
        Wants::Csv => Ok(csv_table(&table)),
        Wants::Svg => {
            let svg = crate::analytics::svg(name, &table)
                .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, m))?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "image/svg+xml; charset=utf-8")
                .body(full(svg.into_bytes()))
                .expect("a valid response"))
        }
    }
}

/// Managers do not run reports.
fn refuse_managers(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, "reports are for heads, admins and viewers"));
    }
    Ok(())
}

/// Report `name` of `reports` with the parameters of query `q`, over what `caller` may
/// report on: every deal for admins and viewers, their department's for heads.
pub(super) fn table(
    app: &App,
    reports: &crmkit_core::report::Reports,
    caller: &Caller,
    name: &str,
    q: &str,
) -> Result<crmkit_core::report::Table, ApiError> {
    refuse_managers(caller)?;
    let params = query(q)?;
    let r = app.inst.store().read()?;
    // A head's report reads the deals of their department only.
    let department;
    let view: &dyn crmkit_core::process::View = match caller.role {
        Role::Head => {
            department = access::DepartmentView::new(&r, caller)?;
            &department
        }
        _ => &r,
    };
    reports.run(name, &params, view).map_err(|e| {
        use crmkit_core::report::ReportError as E;
        let status = match e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, Code::ReportFailed, e.to_string())
    })
}

fn json_table(table: &crmkit_core::report::Table) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_value(table)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, e.to_string()))?;
    Ok(json_response(StatusCode::OK, &body))
}

fn csv_table(table: &crmkit_core::report::Table) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .body(full(table.to_csv()))
        .expect("a valid response")
}
