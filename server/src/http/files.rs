//! Attachments over HTTP, streamed both ways: an upload goes to a temporary file beside
//! the database as it arrives and is stored in one write once it is whole — an upload cut
//! off halfway leaves nothing — and a download is read from a snapshot chunk by chunk.

use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use crmkit_core::id::{AttachmentId, RawId};
use crmkit_core::model::{Attachment, EntityKind, EntityRef};
use crmkit_core::store::Reader;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

use super::access::{Access, Caller};
use super::entities;
use super::{parse_id, query, ApiError, App, Body, Code};

/// `POST /api/v1/attachments?owner_kind=deal&owner=ID&name=FILE` with the file as the body
/// and its MIME type as `Content-Type`.
pub async fn upload(app: &App, caller: &Caller, q: &str, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    super::may_write(caller)?;
    let q = query(q)?;
    let bad = |field: &str, m: String| ApiError::at(StatusCode::BAD_REQUEST, Code::BadQuery, field, m);
    let kinds = || EntityKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let kind = q.get("owner_kind").ok_or_else(|| bad("owner_kind", format!("owner_kind is required: {}", kinds())))?;
    let kind = EntityKind::from_name(kind)
        .ok_or_else(|| bad("owner_kind", format!("\"{kind}\" is not a kind of entity ({})", kinds())))?;
    let owner = q.get("owner").ok_or_else(|| bad("owner", "owner (the id of the entity) is required".into()))?;
    let owner = EntityRef { kind, id: parse_id::<RawId>("entity", owner)? };
    let name = q.get("name").cloned().ok_or_else(|| bad("name", "name (the file name) is required".into()))?;
    // The rule of file names, before a byte of the body is read; the write checks it again.
    crmkit_core::model::text::file_name(EntityKind::Attachment, "name", &name).map_err(crmkit_core::Error::from)?;
    let mime = match req.headers().get("content-type") {
        Some(m) => String::from_utf8_lossy(m.as_bytes()).into_owned(),
        None => crmkit_core::model::mime_of_name(&name).to_string(),
    };
    // Refused before a byte of the body is read: an owner out of scope, a declared size
    // over the limit.
    may_attach(app, caller, owner)?;
    let max = app.inst.settings().attachment_max_bytes;
    let file = spool(app, req, max, "attachments.max_size_mb").await?;
    let len = file.as_file().metadata().map_err(|e| ApiError::internal("an upload's temporary file", e))?.len();
    let created = attach(app, caller, owner, name, mime, file, (0, len)).await?;
    Ok(entities::entity_response(StatusCode::CREATED, &created))
}

/// Refuses attaching files to `owner` for `caller`: one that does not exist or that they
/// may not see (404), one that they may not change (403).
pub fn may_attach(app: &App, caller: &Caller, owner: EntityRef) -> Result<(), ApiError> {
    let r = app.inst.store().read()?;
    if !r.exists(owner.kind, owner.id)? || !caller.may_ref(&r, Access::Read, owner.kind, owner.id)? {
        return Err(ApiError::at(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "owner",
            format!("{} {} does not exist", owner.kind, owner.id),
        ));
    }
    if !caller.may_ref(&r, Access::Write, owner.kind, owner.id)? {
        return Err(not_yours(owner));
    }
    Ok(())
}

/// Stores `range` (offset, length) of the spooled `file` as an attachment of `owner` named
/// `name`: the API's upload and the web page's.
pub async fn attach(
    app: &App,
    caller: &Caller,
    owner: EntityRef,
    name: String,
    mime: String,
    file: tempfile::NamedTempFile,
    range: (u64, u64),
) -> Result<serde_json::Value, ApiError> {
    use std::io::{Read as _, Seek as _};
    let caller = caller.clone();
    app.writer
        .write(Some((caller.user.id, caller.role)), move |_, tx| {
            if !caller.may_ref(&*tx, Access::Write, owner.kind, owner.id)? {
                return Err(not_yours(owner).into_core());
            }
            let io = |e| crmkit_core::Error::Io { path: file.path().into(), error: e };
            let mut content = file.reopen().map_err(io)?;
            content.seek(std::io::SeekFrom::Start(range.0)).map_err(io)?;
            let a = tx.attach_from(owner, &name, &mime, &mut content.take(range.1))?;
            Ok(entities::to_json(&a))
        })
        .await
}

fn not_yours(owner: EntityRef) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        Code::Forbidden,
        format!("{} {} is not yours to attach files to", owner.kind, owner.id),
    )
}

/// The refusal of an upload over `max` bytes, the limit named (`limit`), at `field`.
pub fn over_limit(field: &str, max: u64, limit: &str) -> ApiError {
    ApiError::at(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::TooLarge,
        field,
        format!("the upload is over the limit of {max} bytes ({limit})"),
    )
}

/// A request body streamed into a temporary file in `data/uploads` (removed when dropped):
/// at most `max` bytes (the setting that says so named in the 413), no pause longer than
/// the body timeout, and as long as its `Content-Length` said.
pub async fn spool(
    app: &App,
    req: Request<Incoming>,
    max: u64,
    limit: &str,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let too_large = || over_limit("content", max, limit);
    let declared = req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let internal = |e: std::io::Error| ApiError::internal("an upload's temporary file", e);
    let mut file = tempfile::NamedTempFile::new_in(super::uploads_dir(app)).map_err(internal)?;
    let mut body = req.into_body();
    let mut received: u64 = 0;
    while let Some(data) = super::next_piece(&mut body, received).await? {
        received += data.len() as u64;
        if received > max {
            return Err(too_large());
        }
        file.write_all(&data).map_err(internal)?;
    }
    if let Some(n) = declared.filter(|n| *n != received) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::CutOff,
            format!("the upload ended after {received} of {n} bytes; nothing was stored"),
        ));
    }
    file.flush().map_err(internal)?;
    Ok(file)
}

/// `GET /api/v1/attachments/{id}/content`: the file, streamed from one snapshot.
pub fn download(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, ApiError> {
    use http_body_util::BodyExt as _;
    let id: AttachmentId = parse_id("attachment", id)?;
    let r = app.inst.store().read()?;
    let a: Attachment = entities::visible(&r, caller, id.0)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let hash = a.content;
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // A client that stops reading for longer than the body timeout lets go of the
        // thread and the snapshot.
        let send = |piece: std::io::Result<Bytes>| {
            runtime
                .block_on(async { tokio::time::timeout(super::BODY_TIMEOUT, tx.send(piece)).await })
                .is_ok_and(|sent| sent.is_ok())
        };
        let mut open = true;
        let found = r.blob_chunks(&hash, &mut |chunk| {
            open = send(Ok(Bytes::copy_from_slice(chunk)));
            open
        });
        let failure = match found {
            Ok(true) => None,
            Ok(false) => Some(format!("the content {} is missing from the store", hash.hex())),
            Err(e) => Some(e.to_string()),
        };
        if let (Some(m), true) = (failure, open) {
            tracing::error!("download of attachment {id}: {m}");
            send(Err(std::io::Error::other(m)));
        }
    });
    let disposition = format!("attachment; filename*=UTF-8''{}", percent_encode(&a.name));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", &a.mime)
        .header("content-length", a.size)
        .header("content-disposition", disposition)
        .header("etag", format!("\"{}\"", a.content.hex()))
        .body(Chunks { rx }.boxed())
        .expect("a valid response"))
}

/// A response body fed chunk by chunk through a channel.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}

/// RFC 5987 encoding of a file name for `Content-Disposition`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
