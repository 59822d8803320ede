//! Rigatoni's Redis state store over HTTP: `/rigatoni/resume-tokens…` and `/rigatoni/locks`.
//!
//! Tokens are raw BSON documents under `{prefix}resume_token:{name}` (the name opaque: it may
//! hold `:` and `.`). Reads answer the stored bytes (`application/bson`) or canonical Extended
//! JSON and never touch a TTL; waits are woken by keyspace `set` events on the token's key;
//! writes (only with `rigatoni.writable`, only with a precondition) are one compare-and-set.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ClientAddr, Path, Query, if_none_match, matches_any, read_body, strong_etag_list, with_etag};
use super::wait::{Probe, WaitEnd, wait_request, wait_until, watch_key};
use crate::api::ApiContext;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::store::layout::rigatoni::{self, Rigatoni};
use crate::store::rigatoni::{self as service, Entry, Expect, PutOutcome, RigatoniError, TokenView};

/// The media type of raw BSON.
pub const BSON: &str = "application/bson";

/// Largest `limit` of a listing page.
pub const MAX_PAGE: usize = 1000;

/// The cluster time a hex `_data` appears to carry (best effort: `MongoDB` calls tokens opaque).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterTime {
    /// Seconds since the epoch.
    pub t: u32,
    /// The increment within the second.
    pub i: u32,
}

/// A resume token as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "resume_token:shop:orders", "token": {"_data": "8266A1B2C3000000012B022C0100296E5A1004"},
    "size": 55, "ttl": null, "cluster_time": {"t": 1_721_873_091, "i": 1}
}))]
pub struct ResumeTokenBody {
    /// The token's name: everything after `{prefix}resume_token:`.
    pub name: String,
    /// The stored document as canonical Extended JSON (`{"_data": "82…"}`, or
    /// `{"_data": {"$binary": …}}` for `MongoDB` 3.6's `BinData` tokens).
    #[schema(value_type = Object)]
    pub token: Value,
    /// The stored value's size in bytes.
    pub size: usize,
    /// Seconds until the key expires; null when it never does (Rigatoni's default). Reads never
    /// refresh it.
    pub ttl: Option<i64>,
    /// Decoded from a hex `_data` that starts with `82`; best effort, null otherwise.
    pub cluster_time: Option<ClusterTime>,
}

/// One token of a listing page.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "resume_token:shop:orders", "size": 55, "ttl": null}))]
pub struct ResumeTokenEntry {
    /// The token's name (URL-encode it in `/rigatoni/resume-tokens/{name}`).
    pub name: String,
    /// The stored value's size in bytes.
    pub size: usize,
    /// Seconds until the key expires; null when it never does.
    pub ttl: Option<i64>,
}

/// One page of resume tokens.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [{"name": "orders", "size": 55, "ttl": null}, {"name": "resume_token:shop:orders", "size": 55, "ttl": 3590}], "next_cursor": null}))]
pub struct ResumeTokenPage {
    /// The tokens of this page, by name.
    pub items: Vec<ResumeTokenEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// One lock: which owner holds which collection.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "shop:orders", "owner": "pipeline-7f3a", "ttl": 28}))]
pub struct LockEntry {
    /// The lock's name: everything after `{prefix}lock:` (`{db}:{coll}`, `{db}:__database__`,
    /// `__deployment__`).
    pub name: String,
    /// The owner id stored in the lock (lossy UTF-8).
    pub owner: String,
    /// Seconds until the lock expires; null when it never does.
    pub ttl: Option<i64>,
}

/// One page of locks.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [{"name": "shop:orders", "owner": "pipeline-7f3a", "ttl": 28}], "next_cursor": null}))]
pub struct LockPage {
    /// The locks of this page, by name.
    pub items: Vec<LockEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// Query of the listings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `next_cursor` of the previous page, as given; absent, empty or `0` starts over.
    pub cursor: Option<String>,
    /// About how many entries a page holds (1 to 1000, default 100; SCAN's count is a hint).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Query of `GET /rigatoni/resume-tokens/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenGetParams {
    /// Hold the request up to this many seconds (clamped to `wait.max_seconds`) until the token's
    /// ETag is none of `If-None-Match` (without it: until the token exists). `Prefer: wait=N`
    /// does the same.
    #[param(minimum = 0)]
    pub wait: Option<f64>,
}

/// Query of `PUT /rigatoni/resume-tokens/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenPutParams {
    /// Seconds the token lives (`SET … EX`, at least 1); absent: a plain `SET`, which also
    /// drops an earlier TTL (as Rigatoni's own writes without a configured TTL do).
    #[param(minimum = 1, maximum = 10_000_000_000_u64)]
    #[serde(default, deserialize_with = "super::extract::ttl_seconds")]
    pub ttl: Option<u64>,
}

/// The layout, or 404 `layout-disabled` when Rigatoni is off.
fn layout_for(ctx: &ApiContext) -> Result<Rigatoni, ApiError> {
    let settings = &ctx.settings().rigatoni;
    if !settings.enabled {
        return Err(ApiError::new(
            ErrorCode::LayoutDisabled,
            "the Rigatoni routes are off on this server (rigatoni.enabled = false)",
        ));
    }
    Ok(Rigatoni::new(settings.key_prefix.clone()))
}

fn token_name(raw: &str) -> Result<(), ApiError> {
    rigatoni::check_name(raw).map_err(|e| ApiError::new(ErrorCode::InvalidTokenName, format!("the token name {e}")))
}

impl From<RigatoniError> for ApiError {
    fn from(e: RigatoniError) -> Self {
        match e {
            RigatoniError::Store(e) => e.into(),
            e @ RigatoniError::InvalidBson { .. } => Self::new(ErrorCode::InvalidBson, e.to_string()),
            RigatoniError::PreconditionFailed { current: Some(etag) } => Self::new(
                ErrorCode::PreconditionFailed,
                format!("the stored token's ETag is {etag}, which the precondition does not name"),
            ),
            RigatoniError::PreconditionFailed { current: None } => Self::new(
                ErrorCode::PreconditionFailed,
                "there is no such token (use If-None-Match: * to create it)",
            ),
        }
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::TokenNotFound, format!("no Rigatoni resume token {name:?}"))
}

/// Whether the request asks for raw BSON (`Accept` names `application/bson`).
fn wants_bson(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|m| m.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(BSON)))
        })
    })
}

fn token_response(
    status: StatusCode,
    layout: &Rigatoni,
    name: &str,
    view: &TokenView,
    bson: bool,
) -> Result<Response, ApiError> {
    let doc = service::decode(layout, name, view)?;
    let response = if bson {
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(BSON))],
            view.bytes.clone(),
        )
            .into_response()
    } else {
        let body = ResumeTokenBody {
            name: name.to_owned(),
            token: rigatoni::to_extjson(&doc),
            size: view.bytes.len(),
            ttl: view.ttl,
            cluster_time: rigatoni::cluster_time(&doc).map(|(t, i)| ClusterTime { t, i }),
        };
        (status, Json(body)).into_response()
    };
    let mut response = with_etag(response, &view.etag);
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

/// Holds until the token's ETag is none of `seen` (with `seen` empty: until it exists), the
/// wait runs out, or it vanishes.
async fn wait_change(
    ctx: &ApiContext,
    client: Option<IpAddr>,
    layout: &Rigatoni,
    name: &str,
    seen: &[String],
    duration: Duration,
) -> Result<WaitEnd<TokenView>, ApiError> {
    let (_slot, watches) = watch_key(ctx, client, &[layout.token_key(name)])?;
    let store = ctx.store();
    wait_until(ctx, watches, duration, || async {
        Ok(match service::get(store, layout, name).await? {
            Some(v) if !matches_any(seen, &v.etag) => Probe::Ready(v),
            Some(v) => Probe::Pending(v),
            None => Probe::Missing,
        })
    })
    .await
}

/// Lists resume tokens.
#[utoipa::path(
    get, path = "/rigatoni/resume-tokens", tag = "rigatoni",
    description = "Pages through `{prefix}resume_token:*` with `SCAN` (no `KEYS`): each token's opaque name (everything after the prefix, which may hold `:` and `.`: Rigatoni 0.1 names the bare collection, 0.2's pipeline `resume_token:{db}:{coll}`, its batch flushes `{coll}`, `__db:{db}`, `__deployment__`), its size and TTL. Follow `next_cursor` until it is null; as with SCAN, a token that exists for the whole listing appears at least once. Values are not decoded, so one bad value does not fail the listing (Rigatoni's own `list_resume_tokens` fails whole).",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = ResumeTokenPage),
        (status = 400, description = "`invalid-query` (e.g. `limit=0` or over 1000), `invalid-cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: `rigatoni.enabled` is false", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_resume_tokens(
    State(ctx): State<ApiContext>,
    Query(params): Query<ListParams>,
) -> Result<Json<ResumeTokenPage>, ApiError> {
    let layout = layout_for(&ctx)?;
    let (entries, next_cursor) = page(&ctx, &layout.token_prefix(), &params).await?;
    Ok(Json(ResumeTokenPage {
        items: entries
            .into_iter()
            .map(|e| ResumeTokenEntry {
                name: e.name,
                size: e.bytes.len(),
                ttl: e.ttl,
            })
            .collect(),
        next_cursor,
    }))
}

async fn page(ctx: &ApiContext, prefix: &str, params: &ListParams) -> Result<(Vec<Entry>, Option<String>), ApiError> {
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let cursor = params.cursor.as_deref().filter(|c| !c.is_empty()).unwrap_or("0");
    if !ctx.store().accepts_scan_cursor(prefix, cursor) {
        return Err(ApiError::new(
            ErrorCode::InvalidCursor,
            "the cursor is not one this server handed out",
        ));
    }
    Ok(service::list(ctx.store(), prefix, cursor, limit).await?)
}

/// Reads one resume token, or waits for it to change.
#[utoipa::path(
    get, path = "/rigatoni/resume-tokens/{name}", tag = "rigatoni",
    description = "Reads `{prefix}resume_token:{name}` (one GET and PTTL; reads never refresh a TTL). `Accept: application/bson` answers the stored bytes untouched; otherwise the document as canonical Extended JSON with its size, TTL and a best-effort cluster time. The ETag hashes the stored bytes, so Rigatoni rewriting the same token keeps it. With `?wait=N` (or `Prefer: wait=N`) and `If-None-Match`, the request is held until the ETag is none of those listed (304 at the deadline), woken by the keyspace `set` event of the key (class `$`; the polling fallback where notifications are off).",
    params(("name" = String, Path, description = "The token's name, URL-encoded (`resume_token%3Ashop%3Aorders`): 1 to 1024 characters, no control characters, no `* ? [ ] \\`", pattern = "^[^*?\\[\\]\\\\\\u0000-\\u001f\\u007f-\\u009f]{1,1024}$"), TokenGetParams,
           ("Accept" = Option<String>, Header, description = "`application/bson` for the stored bytes; JSON otherwise"),
           ("Prefer" = Option<String>, Header, description = "`wait=N`: long-poll like `?wait=N` (RFC 7240)"),
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when the token still matches (at the deadline of a wait)")),
    responses(
        (status = 200, description = "The token: canonical Extended JSON with size and TTL, or the stored bytes (`Accept: application/bson`)",
         content(
            (ResumeTokenBody = "application/json"),
            (Vec<u8> = "application/bson", example = "7\u{0}\u{0}\u{0}\u{2}_data\u{0}'\u{0}\u{0}\u{0}8266A1B2C3000000012B022C0100296E5A1004\u{0}\u{0}"),
         ),
         headers(("ETag" = String, description = "Strong ETag of the stored bytes"), ("Preference-Applied" = String, description = "The wait used, when `Prefer: wait` was sent"))),
        (status = 304, description = "Not modified: the token still matches If-None-Match (when waiting: it did not change before the deadline)"),
        (status = 400, description = "`invalid-token-name`, `invalid-query`, `invalid-header`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`token-not-found`: no such token (or it was deleted or expired during the wait); `layout-disabled`: `rigatoni.enabled` is false", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-bson`: the stored value is not one BSON document (its length prefix disagrees with its size, a bad element, or the key is not a string)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_resume_token(
    State(ctx): State<ApiContext>,
    path: Result<Path<String>, ApiError>,
    Query(params): Query<TokenGetParams>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let layout = layout_for(&ctx)?;
    let name = path_name(path)?;
    let wait = wait_request(&ctx, params.wait, &headers)?;
    let seen = if_none_match(&headers);
    let view = match wait {
        None => service::get(ctx.store(), &layout, &name)
            .await?
            .ok_or_else(|| not_found(&name))?,
        Some(wait) => match wait_change(&ctx, client, &layout, &name, &seen, wait.duration).await? {
            WaitEnd::Done(v) => v,
            WaitEnd::Missing => return Err(not_found(&name)),
        },
    };
    let response = if matches_any(&seen, &view.etag) {
        with_etag(StatusCode::NOT_MODIFIED.into_response(), &view.etag)
    } else {
        token_response(StatusCode::OK, &layout, &name, &view, wants_bson(&headers))?
    };
    Ok(match wait {
        Some(wait) => wait.applied_to(response),
        None => response,
    })
}

fn path_name(path: Result<Path<String>, ApiError>) -> Result<String, ApiError> {
    let Path(name) =
        path.map_err(|_| ApiError::new(ErrorCode::InvalidTokenName, "the token name is not UTF-8 once decoded"))?;
    token_name(&name)?;
    Ok(name)
}

/// Writes one resume token.
#[utoipa::path(
    put, path = "/rigatoni/resume-tokens/{name}", tag = "rigatoni",
    description = "Writes `{prefix}resume_token:{name}` as Rigatoni does (`SET`, or `SET … EX` with `?ttl=`; no PUBLISH), only when `rigatoni.writable` is true and only with a precondition: `If-Match` with the token's ETag (or `*`: any token), or `If-None-Match: *` to create one. The check and the write are one atomic compare-and-set, which Rigatoni itself lacks. The body is raw BSON (`Content-Type: application/bson`) or canonical Extended JSON (`application/json`); either must be one BSON document. A pipeline resumes from this value: a wrong write replays or skips changes. Without `?ttl=` the plain `SET` drops an earlier TTL. Locks are never written.",
    params(("name" = String, Path, description = "The token's name, URL-encoded: 1 to 1024 characters, no control characters, no `* ? [ ] \\`", pattern = "^[^*?\\[\\]\\\\\\u0000-\\u001f\\u007f-\\u009f]{1,1024}$"), TokenPutParams,
           ("If-Match" = Option<String>, Header, description = "The ETag the token must have (or `*`)"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: the token must not exist")),
    request_body(content(
        (Object = "application/json", example = json!({"_data": "8266A1B2C3000000012B022C0100296E5A1004"})),
        (Vec<u8> = "application/bson", example = "7\u{0}\u{0}\u{0}\u{2}_data\u{0}'\u{0}\u{0}\u{0}8266A1B2C3000000012B022C0100296E5A1004\u{0}\u{0}"),
    )),
    responses(
        (status = 201, description = "Stored; there was no token", body = ResumeTokenBody, headers(("ETag" = String, description = "Strong ETag of the stored bytes"))),
        (status = 200, description = "Stored over the token the precondition named", body = ResumeTokenBody, headers(("ETag" = String, description = "Strong ETag of the stored bytes"))),
        (status = 400, description = "`invalid-token-name`, `invalid-query` (`ttl=0`), `invalid-json`, `invalid-header`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`layout-read-only`: `rigatoni.writable` is false", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: `rigatoni.enabled` is false", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`: the token's ETag is not the one named, or it exists despite `If-None-Match: *`, or it does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: neither application/bson nor application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-bson`: the body is not one BSON document, or the JSON is not a document in Extended JSON", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`: neither If-Match nor If-None-Match: *", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied; `store-read-only`: nothing was written", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_resume_token(
    State(ctx): State<ApiContext>,
    path: Result<Path<String>, ApiError>,
    Query(params): Query<TokenPutParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let layout = layout_for(&ctx)?;
    if !ctx.settings().rigatoni.writable {
        return Err(ApiError::new(
            ErrorCode::LayoutReadOnly,
            "Rigatoni resume tokens are read-only on this server (rigatoni.writable = false)",
        ));
    }
    let name = path_name(path)?;
    let ttl = match params.ttl {
        Some(0) => return Err(ApiError::new(ErrorCode::InvalidQuery, "ttl must be at least 1 second")),
        t => t.map(Duration::from_secs),
    };
    let expect = precondition(request.headers())?;
    let (headers, body) = read_body(request, ctx.settings().limits.body_bytes).await?;
    let value = body_bson(&headers, body)?;
    match service::put(ctx.store(), &layout, &name, value, &expect, ttl).await? {
        PutOutcome::Created(v) => token_response(StatusCode::CREATED, &layout, &name, &v, false),
        PutOutcome::Replaced(v) => token_response(StatusCode::OK, &layout, &name, &v, false),
    }
}

fn precondition(headers: &HeaderMap) -> Result<Expect, ApiError> {
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::new(ErrorCode::InvalidHeader, format!("{name} is not ASCII")))
            })
            .transpose()
    };
    if let Some(v) = text(header::IF_MATCH)? {
        if v.trim() == "*" {
            return Ok(Expect::Any);
        }
        return Ok(Expect::OneOf(strong_etag_list(&v)));
    }
    if let Some(v) = text(header::IF_NONE_MATCH)?
        && v.trim() == "*"
    {
        return Ok(Expect::Absent);
    }
    Err(ApiError::new(
        ErrorCode::PreconditionRequired,
        "a resume token write needs If-Match with the token's ETag, or If-None-Match: * to create it",
    ))
}

/// The body as checked BSON bytes: raw BSON kept as sent, Extended JSON converted.
fn body_bson(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let invalid =
        |e: rigatoni::InvalidBson| ApiError::new(ErrorCode::InvalidBson, format!("the body is no BSON document: {e}"));
    if media == BSON {
        rigatoni::decode(&body).map_err(invalid)?;
        return Ok(body);
    }
    if media == "application/json" || (media.starts_with("application/") && media.ends_with("+json")) {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid body: {e}")))?;
        return Ok(Bytes::from(rigatoni::from_extjson(value).map_err(invalid)?));
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("expected Content-Type application/bson or application/json, got {media:?}"),
    ))
}

/// Lists Rigatoni's locks.
#[utoipa::path(
    get, path = "/rigatoni/locks", tag = "rigatoni",
    description = "Pages through `{prefix}lock:*` with `SCAN`: which owner holds which collection (`{db}:{coll}`, `{db}:__database__`, `__deployment__`), and for how long (Rigatoni takes them with `SET NX EX` and refreshes them while it runs). Read-only: resultd never writes a lock.",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = LockPage),
        (status = 400, description = "`invalid-query` (e.g. `limit=0` or over 1000), `invalid-cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: `rigatoni.enabled` is false", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_locks(
    State(ctx): State<ApiContext>,
    Query(params): Query<ListParams>,
) -> Result<Json<LockPage>, ApiError> {
    let layout = layout_for(&ctx)?;
    let (entries, next_cursor) = page(&ctx, &layout.lock_prefix(), &params).await?;
    Ok(Json(LockPage {
        items: entries
            .into_iter()
            .map(|e| LockEntry {
                name: e.name,
                owner: String::from_utf8_lossy(&e.bytes).into_owned(),
                ttl: e.ttl,
            })
            .collect(),
        next_cursor,
    }))
}
