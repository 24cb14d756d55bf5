//! `POST /api/v1/import/{entity}`: a CSV or JSON-lines file uploaded and imported as
//! `crmkit import` does — bad rows skipped and listed, batches committed, `atomic` for all
//! or nothing, `dry_run` for nothing — answered with the same per-row report.

use crmkit_core::transfer::{Format, ImportOptions, Importer, Mapping, Report};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::access::Caller;
use super::{json_response, query, ApiError, App, Body, Code};

/// The largest file an import takes.
const MAX_IMPORT: u64 = 512 << 20;
/// The largest file an atomic or dry-run import takes: it holds the one write transaction
/// from its first row to its last, and the API's writes wait meanwhile (a plain import lets
/// them in between its batches).
const MAX_HELD_IMPORT: u64 = 16 << 20;

/// The query parameters an import takes.
const PARAMETERS: &[&str] = &["format", "atomic", "dry_run", "delimiter", "map"];
/// How long a batch of a plain import writes, once another write waits, before it commits
/// and lets the writes waiting go first: what an API write waits for at most, besides the
/// batch's commit.
const BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether a query flag is on: present with no value, `true` or `1`.
fn flag(q: &std::collections::BTreeMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("") | Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::at(
            StatusCode::BAD_REQUEST,
            Code::BadQuery,
            name,
            format!("{name} \"{other}\" is not true or false"),
        )),
    }
}

pub async fn upload(
    app: &App,
    caller: &Caller,
    entity: &str,
    q: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    super::admin_only(caller, "imports")?;
    let q = query(q)?;
    let content_type = req.headers().get("content-type").map(|v| String::from_utf8_lossy(v.as_bytes()).to_lowercase());
    let opts = options(entity, &q, content_type.as_deref())?;
    // One import at a time, claimed before the upload is read and held until the import
    // has finished even if its client goes away.
    let running = claim(app)?;
    let (max, limit) = limit(&opts);
    let file = super::files::spool(app, req, max, limit).await?;
    let file = file.reopen().map_err(|e| ApiError::internal("an import's temporary file", e))?;
    let (report, refused) = run(app, caller, entity, opts, running, file).await?;
    let status = if refused { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    Ok(json_response(status, &serde_json::to_value(&report).expect("a report serializes")))
}

/// The options of an import of `entity` from its parameters (`format`, `atomic`,
/// `dry_run`, `delimiter`, `map`) and the file's type: the API's query and the web page's
/// form.
pub fn options(
    entity: &str,
    q: &std::collections::BTreeMap<String, String>,
    content_type: Option<&str>,
) -> Result<ImportOptions, ApiError> {
    let kind = crate::transfer::entity(entity)
        .map_err(|e| ApiError::at(StatusCode::NOT_FOUND, Code::NotFound, "entity", e.to_string()))?;
    let bad = |field: &str, m: String| ApiError::at(StatusCode::BAD_REQUEST, Code::BadQuery, field, m);
    if let Some(unknown) = q.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Err(bad(
            unknown,
            format!("an import takes no parameter \"{unknown}\"; it takes {}", PARAMETERS.join(", ")),
        ));
    }
    let format = match (q.get("format"), content_type) {
        (Some(f), _) => Format::from_name(f).ok_or_else(|| bad("format", format!("\"{f}\" is not csv or jsonl")))?,
        (None, Some(t)) if t.starts_with("text/csv") => Format::Csv,
        (None, Some(t)) if t.contains("ndjson") || t.contains("jsonl") => Format::Jsonl,
        _ => {
            return Err(bad(
                "format",
                "say what the file is: Content-Type text/csv or application/x-ndjson, or ?format=csv|jsonl".into(),
            ))
        }
    };
    let mut opts = ImportOptions::new(kind, format);
    opts.atomic = flag(q, "atomic")?;
    opts.dry_run = flag(q, "dry_run")?;
    opts.base_dir = None;
    opts.batch_time = Some(BATCH_TIME);
    if let Some(d) = q.get("delimiter") {
        if format != Format::Csv {
            return Err(bad("delimiter", "delimiter is for CSV files; this one is JSON lines".into()));
        }
        let mut chars = d.chars();
        opts.delimiter = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii() && !matches!(c, '"' | '\n' | '\r') => Some(c as u8),
            _ => return Err(bad("delimiter", format!("\"{d}\" cannot separate CSV fields; use , ; or a tab"))),
        };
    }
    if let Some(m) = q.get("map") {
        if m.trim().is_empty() {
            return Err(bad("map", "map is empty; give COLUMN=field pairs".into()));
        }
        opts.mapping = Mapping::parse_pairs(m).map_err(|e| bad("map", e))?;
    }
    Ok(opts)
}

/// Claims the one import that may run at a time (a 409 while another runs).
pub fn claim(app: &App) -> Result<tokio::sync::OwnedMutexGuard<()>, ApiError> {
    app.importing.clone().try_lock_owned().map_err(|_| {
        ApiError::new(StatusCode::CONFLICT, Code::Busy, "another import is running; try again when it has finished")
    })
}

/// The largest file an import with `opts` takes, and the limit's name.
pub fn limit(opts: &ImportOptions) -> (u64, &'static str) {
    match opts.atomic || opts.dry_run {
        true => (MAX_HELD_IMPORT, "the limit of an atomic or dry-run import over the API; use crmkit import for more"),
        false => (MAX_IMPORT, "the import limit"),
    }
}

/// Runs the import of `input` as `caller`, holding the claim until it ends: its report,
/// and whether the file was refused (nothing written because of its errors: an atomic
/// import with a bad row, or a file stopped before anything was written).
pub async fn run(
    app: &App,
    caller: &Caller,
    entity: &str,
    opts: ImportOptions,
    running: tokio::sync::OwnedMutexGuard<()>,
    input: impl std::io::Read + Send + 'static,
) -> Result<(Report, bool), ApiError> {
    let (dry_run, atomic) = (opts.dry_run, opts.atomic);
    let inst = app.inst.clone();
    let engine = app.bound.engine();
    let actor = caller.user.id;
    let report = tokio::task::spawn_blocking(move || {
        let _running = running;
        Importer::new(inst.store(), &engine, Some(actor), &opts)?.run(input, &mut |_| {})
    })
    .await
    .map_err(|e| ApiError::internal("the import stopped", e))??;
    // Rows refused while others went in are in the report of a 200, as is a dry run; a
    // file of which nothing was written because of its errors is a 422: an atomic import
    // with a bad row, or a file stopped (at its header, say) before anything was written.
    // Rows that failed among unchanged ones are not a refusal of the file.
    let refused = !dry_run && !report.written && ((atomic && report.failed > 0) || report.stopped.is_some());
    if !dry_run {
        app.metrics.imported(entity, &report, refused);
    }
    Ok((report, refused))
}
