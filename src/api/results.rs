//! Result records: `GET`/`PUT`/`PATCH`/`DELETE /results/{id}` and listing.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ClientAddr, JsonBody, Path, Query, app_name, none_match, result_id, write_precondition};
use super::wait::{Probe, WaitEnd, wait_request, wait_until, watch_key};
use crate::api::ApiContext;
use crate::domain::{AppName, RecordPatch, ResultId, ResultRecord, ResultState};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::policy::TtlKind;
use crate::store::codec::{format_timestamp, parse_timestamp, to_micros};
use crate::store::keys;
use crate::store::results::{self, PatchOutcome, Precondition, PutOutcome, ResultView};

/// A result record as the API shows it: mognet's 11 fields plus `app`, `done` and `ttl`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10", "app": "billing", "name": "invoices.render",
    "state": "SUCCESS", "done": true, "number_of_starts": 1, "number_of_stops": 1,
    "parent_id": null, "created": "2026-11-23T23:31:16.069966Z",
    "started": "2026-11-23T23:31:16.089905Z", "finished": "2026-11-23T23:31:16.104517Z",
    "node_id": "1234@worker-a", "request_kwargs_repr": "42", "ttl": 1814400
}))]
pub struct ResultBody {
    /// The result id.
    pub id: String,
    /// The mognet app the result belongs to.
    pub app: String,
    /// Task name.
    pub name: Option<String>,
    /// Lifecycle state.
    pub state: ResultState,
    /// Whether the state is a ready state (SUCCESS, FAILURE, REVOKED, INVALID).
    pub done: bool,
    /// Starts and resumes so far.
    pub number_of_starts: i64,
    /// Suspensions and finishes so far.
    pub number_of_stops: i64,
    /// The parent result, for subtasks.
    pub parent_id: Option<String>,
    /// Submission time (RFC 3339, UTC).
    pub created: Option<String>,
    /// First start time.
    pub started: Option<String>,
    /// Finish time.
    pub finished: Option<String>,
    /// Worker node id.
    pub node_id: Option<String>,
    /// Debugging repr of the arguments.
    pub request_kwargs_repr: Option<String>,
    /// Seconds until the record expires; null when it never does.
    pub ttl: Option<i64>,
}

impl ResultBody {
    /// The API form of a record.
    pub fn new(app: &AppName, view: &ResultView) -> Self {
        let r = &view.record;
        Self {
            id: r.id.to_string(),
            app: app.to_string(),
            name: r.name.clone(),
            state: r.state,
            done: r.is_done(),
            number_of_starts: r.number_of_starts,
            number_of_stops: r.number_of_stops,
            parent_id: r.parent_id.map(|p| p.to_string()),
            created: r.created.as_ref().map(format_timestamp),
            started: r.started.as_ref().map(format_timestamp),
            finished: r.finished.as_ref().map(format_timestamp),
            node_id: r.node_id.clone(),
            request_kwargs_repr: r.request_kwargs_repr.clone(),
            ttl: view.ttl,
        }
    }
}

/// Deserialises a present field (even `null`) as `Some(value)`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Deserialises an integer, also written as an integral number such as `3.0` (JSON Schema
/// counts it as an integer).
pub(crate) fn integral<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(f))
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a 64-bit integer, got {n}")))
}

/// Fields of a record to write; absent fields keep their value (PATCH) or default (PUT).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "invoices.render", "state": "RUNNING", "node_id": "1234@worker-a", "request_kwargs_repr": "42"}))]
pub struct ResultInput {
    /// Task name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// Lifecycle state.
    #[serde(default)]
    pub state: Option<ResultState>,
    /// Start count (≥ 0).
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 0)]
    pub number_of_starts: Option<i64>,
    /// Stop count (≥ 0).
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 0)]
    pub number_of_stops: Option<i64>,
    /// Parent result id.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<Option<String>>,
    /// Submission time, RFC 3339.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created: Option<Option<String>>,
    /// Start time, RFC 3339.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started: Option<Option<String>>,
    /// Finish time, RFC 3339.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished: Option<Option<String>>,
    /// Worker node id.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub node_id: Option<Option<String>>,
    /// Debugging repr of the arguments.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub request_kwargs_repr: Option<Option<String>>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidBody, detail)
}

fn timestamp(field: &str, v: Option<Option<String>>) -> Result<Option<Option<chrono::DateTime<Utc>>>, ApiError> {
    v.map(|inner| {
        inner
            .map(|s| {
                parse_timestamp(&s)
                    .map(to_micros)
                    .ok_or_else(|| invalid(format!("{field} must be an RFC 3339 timestamp, got {s:?}")))
            })
            .transpose()
    })
    .transpose()
}

fn counter(field: &str, v: Option<i64>) -> Result<Option<i64>, ApiError> {
    match v {
        Some(n) if n < 0 => Err(invalid(format!("{field} must not be negative"))),
        other => Ok(other),
    }
}

impl ResultInput {
    /// Checks the body and turns it into a patch for the record `id`.
    pub fn into_patch(self, id: &ResultId) -> Result<RecordPatch, ApiError> {
        let parent_id = self
            .parent_id
            .map(|p| {
                p.map(|s| ResultId::parse(&s).map_err(|e| invalid(format!("parent_id: {}", e.0))))
                    .transpose()
            })
            .transpose()?;
        if parent_id == Some(Some(*id)) {
            return Err(ApiError::new(ErrorCode::SelfChild, "a result cannot be its own parent"));
        }
        Ok(RecordPatch {
            name: self.name,
            state: self.state,
            number_of_starts: counter("number_of_starts", self.number_of_starts)?,
            number_of_stops: counter("number_of_stops", self.number_of_stops)?,
            parent_id,
            created: timestamp("created", self.created)?,
            started: timestamp("started", self.started)?,
            finished: timestamp("finished", self.finished)?,
            node_id: self.node_id,
            request_kwargs_repr: self.request_kwargs_repr,
        })
    }
}

/// `?app=` alone.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppParam {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
}

/// Query of `GET /results`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListResultsParams {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Most results on the page: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// One page of an app's results.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"results": [], "next_cursor": null}))]
pub struct ResultPage {
    /// The records of this page, in no particular order.
    pub results: Vec<ResultBody>,
    /// The cursor of the next page; `null` when the listing is complete.
    pub next_cursor: Option<String>,
}

/// Default page size of `GET /results`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size of `GET /results`.
pub const MAX_PAGE: usize = 1000;

/// The wire form of a listing cursor: base64url (no padding) of this JSON.
#[derive(Debug, Serialize, Deserialize)]
struct WireCursor {
    /// The store's scan cursor.
    s: String,
    /// Ids found but not answered yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    p: Vec<String>,
}

fn encode_cursor(cursor: &results::ListCursor) -> String {
    use base64::Engine;
    let wire = WireCursor {
        s: cursor.scan.clone(),
        p: cursor.pending.iter().map(ToString::to_string).collect(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

fn decode_cursor(ctx: &ApiContext, app: &AppName, raw: &str) -> Result<results::ListCursor, ApiError> {
    use base64::Engine;
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidCursor,
            "the cursor is not one this server handed out (use next_cursor as given)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .map_err(|_| invalid())?;
    let wire: WireCursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let prefix = keys::result_pattern(app);
    let prefix = prefix.trim_end_matches('*');
    if !ctx.store().accepts_scan_cursor(prefix, &wire.s) || wire.p.len() > MAX_PAGE * 4 {
        return Err(invalid());
    }
    let pending = wire
        .p
        .iter()
        .map(|p| ResultId::parse(p).map_err(|_| invalid()))
        .collect::<Result<_, _>>()?;
    Ok(results::ListCursor { scan: wire.s, pending })
}

/// Lists an app's results, a page at a time (SCAN, never KEYS).
#[utoipa::path(
    get, path = "/results", tag = "results",
    description = "Pages through the result hashes of an app with `SCAN`. Follow `next_cursor` until it is `null`. As with SCAN, a result that exists for the whole listing appears at least once, one created or deleted meanwhile may or may not, and an id may appear on two pages. On Redis Cluster the listing walks every primary in turn.",
    params(ListResultsParams),
    responses(
        (status = 200, description = "One page", body = ResultPage),
        (status = 400, description = "`invalid-app`, `invalid-query` (e.g. `limit=0` or over 1000), `invalid-cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_results(
    State(ctx): State<ApiContext>,
    Query(params): Query<ListResultsParams>,
) -> Result<axum::Json<ResultPage>, ApiError> {
    let app = app_name(&ctx, params.app.as_deref())?;
    let limit = match params.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit must be from 1 to {MAX_PAGE}"),
            ));
        }
    };
    let cursor = match params.cursor.as_deref() {
        None | Some("") => results::ListCursor::default(),
        Some(raw) => decode_cursor(&ctx, &app, raw)?,
    };
    let store = ctx.store();
    let (ids, next) = results::list(store, &app, &cursor, limit).await?;
    let keys: Vec<String> = ids.iter().map(|id| keys::result(&app, id)).collect();
    let mut page = Vec::with_capacity(ids.len());
    for (chunk_ids, chunk_keys) in ids.chunks(100).zip(keys.chunks(100)) {
        let snaps = crate::store::ResultStore::read_hashes(store, chunk_keys).await?;
        for ((id, key), snap) in chunk_ids.iter().zip(chunk_keys).zip(snaps) {
            // Gone since the scan: skip it, as SCAN would have.
            let Some(snap) = snap else { continue };
            match results::view_of(key, *id, &snap) {
                Ok(view) => page.push(ResultBody::new(&app, &view)),
                Err(e) => {
                    crate::telemetry::count_skipped_record();
                    tracing::warn!(key, error = %e, "listing skips a result it cannot read");
                }
            }
        }
    }
    Ok(axum::Json(ResultPage {
        results: page,
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}

/// Query of `GET /results/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetResultParams {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// Hold the request up to this many seconds until the result is done (clamped to
    /// `wait.max_seconds`). `Prefer: wait=N` does the same.
    #[param(minimum = 0)]
    pub wait: Option<f64>,
}

/// Query of `PUT`/`PATCH /results/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteResultParams {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// TTL in seconds for this write, clamped to `[ttl.min_seconds, ttl.max_seconds]`.
    #[param(minimum = 0, maximum = 10_000_000_000_u64)]
    #[serde(default, deserialize_with = "crate::api::extract::ttl_seconds")]
    pub ttl: Option<u64>,
    /// PATCH only: allow moving a result out of a ready state.
    #[serde(default)]
    pub force: bool,
}

/// Query of `DELETE /results/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteResultParams {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// Also delete the children, recursively.
    #[serde(default)]
    pub recursive: bool,
}

/// Answers a record with its ETag.
pub fn record_response(status: StatusCode, app: &AppName, view: &ResultView) -> Response {
    let mut response = (status, axum::Json(ResultBody::new(app, view))).into_response();
    if let Ok(v) = HeaderValue::from_str(&view.etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// A record's `200` answer made once but for its TTL, which counts down: a cached record keeps
/// it, so a read from memory decodes, hashes and serialises nothing.
#[derive(Debug)]
pub struct RenderedRecord {
    etag: String,
    etag_header: Option<HeaderValue>,
    body: ResultBody,
    /// The JSON body up to the TTL's value (the body ends with `ttl`).
    head: Option<Vec<u8>>,
}

impl RenderedRecord {
    /// The answer for `view` (whose `ttl` is ignored).
    pub fn of(app: &AppName, view: &ResultView) -> Self {
        let mut body = ResultBody::new(app, view);
        body.ttl = None;
        let head = serde_json::to_vec(&body).ok().and_then(|mut json| {
            let tail: &[u8] = b"\"ttl\":null}";
            json.ends_with(tail).then(|| {
                json.truncate(json.len() - b"null}".len());
                json
            })
        });
        Self {
            etag_header: HeaderValue::from_str(&view.etag).ok(),
            etag: view.etag.clone(),
            body,
            head,
        }
    }

    /// The record's strong ETag.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// The `304` answer.
    fn not_modified(&self) -> Response {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Some(v) = &self.etag_header {
            response.headers_mut().insert(header::ETAG, v.clone());
        }
        response
    }

    /// The `200` answer with `ttl` seconds left (`None`: never expires).
    fn response(&self, ttl: Option<i64>) -> Response {
        let mut response = match &self.head {
            Some(head) => {
                use std::io::Write;
                let mut json = Vec::with_capacity(head.len() + 21);
                json.extend_from_slice(head);
                match ttl {
                    Some(t) => {
                        let _ = write!(json, "{t}");
                    }
                    None => json.extend_from_slice(b"null"),
                }
                json.push(b'}');
                let mut response = Response::new(axum::body::Body::from(json));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            None => {
                let mut body = self.body.clone();
                body.ttl = ttl;
                axum::Json(body).into_response()
            }
        };
        if let Some(v) = &self.etag_header {
            response.headers_mut().insert(header::ETAG, v.clone());
        }
        response
    }
}

pub(crate) fn not_found(app: &AppName, id: &ResultId) -> ApiError {
    ApiError::new(ErrorCode::ResultNotFound, format!("no result {id} in app {app}"))
}

/// Reads a result, or waits for it to be done.
#[utoipa::path(
    get, path = "/results/{id}", tag = "results",
    params(("id" = String, Path, description = "Result id (a hyphenated UUID, any case)", format = Uuid), GetResultParams,
           ("Prefer" = Option<String>, Header, description = "`wait=N`: long-poll like `?wait=N` (RFC 7240)"),
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when the record still matches")),
    responses(
        (status = 200, description = "The record (when waiting: done, or the wait ran out; `done` tells)", body = ResultBody,
         headers(("ETag" = String, description = "Strong ETag of the record"), ("Preference-Applied" = String, description = "The wait used, when `Prefer: wait` was sent"))),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-query`, `invalid-header`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`: no such result, or it was deleted or expired during the wait", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<GetResultParams>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let wait = wait_request(&ctx, params.wait, &headers)?;
    let store = ctx.store();
    let (rendered, ttl) = match wait {
        None => results::get_rendered(store, &app, &id, |view| RenderedRecord::of(&app, view))
            .await?
            .ok_or_else(|| not_found(&app, &id))?,
        Some(wait) => {
            // A held wait keeps nothing of the request: its headers share hyper's read buffer,
            // which would then stay allocated beside the one hyper reads the next bytes into.
            drop(headers);
            let (_slot, watches) = watch_key(&ctx, client, &[keys::result(&app, &id)])?;
            let end = wait_until(&ctx, watches, wait.duration, || async {
                Ok(match results::get(store, &app, &id).await? {
                    Some(v) if v.record.is_done() => Probe::Ready(v),
                    Some(v) => Probe::Pending(v),
                    None => Probe::Missing,
                })
            })
            .await?;
            match end {
                WaitEnd::Done(v) => {
                    return Ok(wait.applied_to(record_response(StatusCode::OK, &app, &v)));
                }
                WaitEnd::Missing => return Err(not_found(&app, &id)),
            }
        }
    };
    if none_match(&headers, rendered.etag()) {
        return Ok(rendered.not_modified());
    }
    Ok(rendered.response(ttl))
}

/// Creates or replaces a result record.
#[utoipa::path(
    put, path = "/results/{id}", tag = "results",
    params(("id" = String, Path, description = "Result id (a hyphenated UUID, any case)", format = Uuid), WriteResultParams,
           ("If-Match" = Option<String>, Header, description = "Write only if the current ETag matches (412 otherwise)"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: create only; ETags: only if the current ETag is none of them (412 otherwise)")),
    request_body(content = ResultInput, description = "All fields optional: state defaults to PENDING, counters to 0, created to now"),
    responses(
        (status = 201, description = "Created", body = ResultBody, headers(("ETag" = String, description = "Strong ETag of the record"))),
        (status = 200, description = "Replaced", body = ResultBody, headers(("ETag" = String, description = "Strong ETag of the record"))),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-query`, `invalid-header`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`self-child`: the record names itself as parent", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn put_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<WriteResultParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let precondition = write_precondition(&headers)?;
    let patch = body.parse_object::<ResultInput>()?.into_patch(&id)?;
    let now = to_micros(Utc::now());
    let base = ResultRecord::pending(id, now);
    // A PUT writes the fields as given: no lifecycle bookkeeping on top.
    let record = RecordPatch {
        state: None,
        ..patch.clone()
    }
    .apply(
        &ResultRecord {
            state: patch.state.unwrap_or(ResultState::Pending),
            ..base
        },
        now,
        true,
    )
    .map_err(|e| ApiError::new(ErrorCode::IllegalTransition, e.to_string()))?;
    let ttl = ctx.ttl().for_write(TtlKind::Result, params.ttl);
    match results::put(ctx.store(), &app, &record, &precondition, ttl).await? {
        PutOutcome::Created(view) => Ok(record_response(StatusCode::CREATED, &app, &view)),
        PutOutcome::Replaced(view) => Ok(record_response(StatusCode::OK, &app, &view)),
        PutOutcome::PreconditionFailed => Err(precondition_failed(&precondition)),
    }
}

pub(crate) fn precondition_failed(p: &Precondition) -> ApiError {
    let detail = match p {
        Precondition::IfAbsent => "the resource already exists (If-None-Match: *)",
        Precondition::IfNoneMatch(_) => "the resource's current ETag matches If-None-Match",
        _ => "the resource's current ETag does not match If-Match",
    };
    ApiError::new(ErrorCode::PreconditionFailed, detail)
}

pub(crate) fn illegal(e: &crate::domain::TransitionError) -> ApiError {
    ApiError::new(ErrorCode::IllegalTransition, e.to_string()).with_current_state(e.from.as_str())
}

/// Changes some fields of a result atomically (JSON merge patch).
#[utoipa::path(
    patch, path = "/results/{id}", tag = "results",
    params(("id" = String, Path, description = "Result id (a hyphenated UUID, any case)", format = Uuid), WriteResultParams,
           ("If-Match" = Option<String>, Header, description = "Write only if the current ETag matches (412 otherwise)")),
    request_body(content = ResultInput, description = "Fields to change. A state change keeps mognet's bookkeeping (starts, stops, started, finished) unless those fields are given"),
    responses(
        (status = 200, description = "The record after the patch", body = ResultBody, headers(("ETag" = String, description = "Strong ETag of the record"))),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-query`, `invalid-header`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`illegal-transition` (with `current_state`), `self-child`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn patch_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<WriteResultParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let precondition = write_precondition(&headers)?;
    let patch = body.parse_object::<ResultInput>()?.into_patch(&id)?;
    let ttl = ctx.ttl().for_write(TtlKind::Result, params.ttl);
    let now = to_micros(Utc::now());
    match results::patch(ctx.store(), &app, &id, &patch, params.force, &precondition, ttl, now).await? {
        PatchOutcome::Patched(view) => Ok(record_response(StatusCode::OK, &app, &view)),
        PatchOutcome::NotFound => Err(not_found(&app, &id)),
        PatchOutcome::PreconditionFailed => Err(precondition_failed(&precondition)),
        PatchOutcome::Illegal(e) => Err(illegal(&e)),
    }
}

/// Deletes a result with its value, metadata and children keys.
#[utoipa::path(
    delete, path = "/results/{id}", tag = "results",
    params(("id" = String, Path, description = "Result id (a hyphenated UUID, any case)", format = Uuid), DeleteResultParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<DeleteResultParams>,
) -> Result<StatusCode, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    if results::delete(ctx.store(), &app, &id, params.recursive).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&app, &id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn a_rendered_record_answers_what_the_record_body_says_for_any_ttl() {
        let app = AppName::parse("test").expect("an app");
        let mut record = ResultRecord::pending(ResultId::new_v4(), Utc::now());
        record.name = Some("tasks.\"quoted\"".to_owned());
        let view = ResultView {
            record,
            etag: "\"0123\"".to_owned(),
            ttl: Some(99),
        };
        let rendered = RenderedRecord::of(&app, &view);
        assert!(rendered.head.is_some(), "the body ends with its ttl");
        for ttl in [Some(1_814_400), Some(1), None] {
            let response = rendered.response(ttl);
            assert_eq!(response.headers()[header::ETAG], "\"0123\"");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let mut expected = ResultBody::new(&app, &view);
            expected.ttl = ttl;
            assert_eq!(body_of(response).await, serde_json::to_value(&expected).expect("JSON"));
        }
        assert_eq!(rendered.not_modified().status(), StatusCode::NOT_MODIFIED);
    }
}
