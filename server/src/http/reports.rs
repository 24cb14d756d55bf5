//! The reports: the list with their parameters, and one report's table as JSON or CSV,
//! over the deals the caller's role may report on.

use crmkit_core::model::Role;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::{access, full, json_response, query, ApiError, App, Body, Caller, Code};

/// `GET /api/v1/reports`: the installation's reports, with the parameters each declares.
pub(super) fn list_reports(app: &App, caller: &Caller) -> Result<Response<Body>, ApiError> {
    if caller.role == Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, "reports are for heads, admins and viewers"));
    }
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
    if caller.role == Role::Manager {
        return Err(ApiError::new(StatusCode::FORBIDDEN, Code::Forbidden, "reports are for heads, admins and viewers"));
    }
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
    let table = app.reports.run(name, &params, view).map_err(|e| {
        use crmkit_core::report::ReportError as E;
        let status = match e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, Code::ReportFailed, e.to_string())
    })?;
    if !wants_csv {
        let body = serde_json::to_value(&table)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, e.to_string()))?;
        return Ok(json_response(StatusCode::OK, &body));
    }
    let out = table.to_csv();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .body(full(out))
        .expect("a valid response"))
}
