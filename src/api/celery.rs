//! Celery's Redis result backend over HTTP: `/celery/results/…`, `/celery/groups/…` and
//! Flower's `GET /api/task/result/{task_id}`.
//!
//! Reads decode the stored kombu JSON as data; waits hold one exact channel per waited id and
//! re-read the key on every message (a message is only a hint); writes go through the store's
//! compare-and-set, so a stored SUCCESS stays final however many writers race.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ClientAddr, JsonBody, Path, Query, none_match, with_etag};
use super::middleware::RequestId;
use super::wait::{Probe, WaitEnd, WaitSlot, timeout_seconds, wait_for_many, wait_request, wait_until};
use super::waiting::WaitMode;
use crate::api::ApiContext;
use crate::domain::ResultState;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::store::celery::{self as service, CeleryError, GroupView, PutOutcome, TaskView};
use crate::store::layout::celery::{self, Celery, EXTENDED_FIELDS, TaskId, TaskWrite};
use crate::store::{ChannelHold, KeyWatch};

/// Most ids one `POST /celery/results/wait` or one group write may name.
pub const MAX_IDS: usize = 1000;

/// A Celery task or group id: 1 to 255 characters of `A-Z a-z 0-9 - _ . : @ + =`.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$", example = "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e")]
pub struct CeleryTaskId(#[allow(dead_code)] String);

/// A Celery result as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "task_id": "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e", "app": "celery", "status": "SUCCESS", "state": "SUCCESS",
    "done": true, "result": 4, "traceback": null, "children": [], "date_done": "2026-11-23T10:00:00.123456Z",
    "group_id": null, "parent_id": null, "name": "tasks.add", "args": [2, 2], "kwargs": {}, "worker": "celery@w1",
    "retries": 0, "queue": "celery", "extra": {}, "ttl": 86380
}))]
pub struct CeleryResultBody {
    /// The task id.
    pub task_id: String,
    /// The Celery app (its key prefix).
    pub app: String,
    /// Celery's own status, exactly as stored (`SUCCESS`, `STARTED`, `RETRY`, `PROGRESS`, …).
    pub status: String,
    /// resultd's common state: STARTED and custom states are RUNNING, RETRY is SUSPENDED.
    pub state: ResultState,
    /// Whether Celery counts the status as ready (SUCCESS, FAILURE, REVOKED).
    pub done: bool,
    /// The result as stored; for FAILURE, RETRY and REVOKED the exception as data
    /// (`{exc_type, exc_message, exc_module}`, never resolved). kombu's `__type__` envelopes
    /// are passed through.
    pub result: Value,
    /// The formatted traceback (FAILURE, RETRY).
    pub traceback: Option<String>,
    /// The children tuples as stored (`[[[id, parent], null], …]`).
    pub children: Value,
    /// When the task became ready, RFC 3339 UTC (stored naive, `+00:00` or with an offset).
    pub date_done: Option<String>,
    /// The group the task belongs to.
    pub group_id: Option<String>,
    /// The parent task.
    pub parent_id: Option<String>,
    /// Task name (`result_extended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Value>,
    /// Positional arguments (`result_extended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Keyword arguments (`result_extended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<Value>,
    /// The worker's hostname (`result_extended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<Value>,
    /// Retries so far (`result_extended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Value>,
    /// The queue (`result_extended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<Value>,
    /// Every other top-level key of the stored record (stamps, …).
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
    /// Seconds until the record expires; null when it never does. Reads never refresh it.
    pub ttl: Option<i64>,
}

impl CeleryResultBody {
    /// The API form of a record.
    pub fn new(app: &str, id: &str, view: &TaskView) -> Self {
        let meta = &view.meta;
        let mut rest = meta.rest.clone();
        rest.remove("task_id");
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let group_id = text(rest.remove("group_id"));
        let parent_id = text(rest.remove("parent_id"));
        let mut take = |name: &str| rest.remove(name);
        let [name, args, kwargs, worker, retries, queue] = EXTENDED_FIELDS.map(&mut take);
        Self {
            task_id: id.to_owned(),
            app: app.to_owned(),
            state: ResultState::from_name(celery::common_state(&meta.status)).unwrap_or(ResultState::Running),
            done: celery::is_ready(&meta.status),
            status: meta.status.clone(),
            result: meta.result.clone(),
            traceback: meta.traceback.clone(),
            children: meta.children.clone(),
            date_done: meta.date_done_rfc3339(),
            group_id,
            parent_id,
            name,
            args,
            kwargs,
            worker,
            retries,
            queue,
            extra: rest,
            ttl: view.ttl,
        }
    }
}

/// What a non-Python worker stores for a task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "SUCCESS", "result": 42, "name": "tasks.add", "args": [40, 2], "kwargs": {}, "worker": "rust@w1", "retries": 0, "queue": "celery"}))]
pub struct CeleryResultInput {
    /// Celery status: SUCCESS, FAILURE, REVOKED, STARTED, RETRY, PENDING or a custom state
    /// (`A-Z a-z 0-9 _ -`, 1 to 64 characters).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub status: String,
    /// The result; for FAILURE, RETRY and REVOKED an exception object
    /// `{"exc_type": "ValueError", "exc_message": ["bad"], "exc_module": "builtins"}`.
    #[serde(default)]
    pub result: Value,
    /// The formatted traceback.
    #[serde(default)]
    pub traceback: Option<String>,
    /// Children tuples; `[]` when absent.
    #[serde(default)]
    pub children: Option<Vec<Value>>,
    /// The group the task belongs to.
    #[serde(default)]
    #[schema(value_type = Option<CeleryTaskId>)]
    pub group_id: Option<String>,
    /// The parent task.
    #[serde(default)]
    #[schema(value_type = Option<CeleryTaskId>)]
    pub parent_id: Option<String>,
    /// Task name (stored as `result_extended` does).
    #[serde(default)]
    pub name: Option<String>,
    /// Positional arguments.
    #[serde(default)]
    pub args: Option<Vec<Value>>,
    /// Keyword arguments.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub kwargs: Option<Map<String, Value>>,
    /// The worker's hostname.
    #[serde(default)]
    pub worker: Option<String>,
    /// Retries so far.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_147_483_647)]
    pub retries: Option<u32>,
    /// The queue.
    #[serde(default)]
    pub queue: Option<String>,
}

fn invalid_body(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidBody, detail)
}

impl CeleryResultInput {
    /// Checks the body and turns it into what is stored.
    fn into_write(self) -> Result<TaskWrite, ApiError> {
        if self.status.is_empty()
            || self.status.len() > 64
            || !self
                .status
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid_body("status must be 1 to 64 characters of A-Z a-z 0-9 _ -"));
        }
        if matches!(self.status.as_str(), "FAILURE" | "RETRY" | "REVOKED") {
            let is_text = |k: &str| self.result.get(k).is_some_and(Value::is_string);
            let message_ok = self
                .result
                .get("exc_message")
                .is_some_and(|m| m.is_array() || m.is_string());
            if !(is_text("exc_type") && is_text("exc_module") && message_ok) {
                return Err(invalid_body(format!(
                    "a {} result is an exception: {{\"exc_type\": \"…\", \"exc_message\": [\"…\"], \"exc_module\": \"…\"}}",
                    self.status
                )));
            }
        }
        for (field, id) in [("group_id", &self.group_id), ("parent_id", &self.parent_id)] {
            if let Some(id) = id {
                TaskId::parse(id).map_err(|e| invalid_body(format!("{field} {e}")))?;
            }
        }
        let mut extended: Vec<(&'static str, Value)> = Vec::new();
        let given = [
            self.name.map(Value::from),
            self.args.map(Value::Array),
            self.kwargs.map(Value::Object),
            self.worker.map(Value::from),
            self.retries.map(Value::from),
            self.queue.map(Value::from),
        ];
        for (name, value) in EXTENDED_FIELDS.into_iter().zip(given) {
            if let Some(v) = value {
                extended.push((name, v));
            }
        }
        Ok(TaskWrite {
            status: self.status,
            result: self.result,
            traceback: self.traceback,
            children: Value::Array(self.children.unwrap_or_default()),
            group_id: self.group_id,
            parent_id: self.parent_id,
            extended,
        })
    }
}

/// `?app=` of the Celery routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CeleryAppParam {
    /// The Celery app: `celery.app` (default) or a name in `celery.apps`; selects the key prefix.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
}

/// Query of `GET /celery/results/{task_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CeleryGetParams {
    /// The Celery app: `celery.app` (default) or a name in `celery.apps`; selects the key prefix.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// Hold the request up to this many seconds until the task is ready (clamped to
    /// `wait.max_seconds`). `Prefer: wait=N` does the same.
    #[param(minimum = 0)]
    pub wait: Option<f64>,
}

/// Query of Flower's `GET /api/task/result/{task_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlowerParams {
    /// Seconds to wait for the task to be ready (clamped to `wait.max_seconds`); absent or 0
    /// answers at once.
    #[param(minimum = 0)]
    pub timeout: Option<f64>,
    /// The Celery app: `celery.app` (default) or a name in `celery.apps`.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
}

/// The app name and layout a request selects, or why not.
fn layout_for<'a>(ctx: &'a ApiContext, app: Option<&'a str>) -> Result<(&'a str, &'a Celery), ApiError> {
    let settings = &ctx.settings().celery;
    if !settings.enabled {
        return Err(ApiError::new(
            ErrorCode::LayoutDisabled,
            "the Celery routes are off on this server (celery.enabled = false)",
        ));
    }
    let name = app.unwrap_or(settings.app.as_str());
    match ctx.celery_layout(name) {
        Some(layout) => Ok((name, layout)),
        None => Err(ApiError::new(
            ErrorCode::LayoutDisabled,
            format!("no Celery app {name:?} is configured on this server (celery.app or celery.apps)"),
        )),
    }
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidTaskId, format!("the id {e}")))
}

fn max_inflated(ctx: &ApiContext) -> usize {
    ctx.settings().compression.max_inflated_bytes
}

impl From<CeleryError> for ApiError {
    fn from(e: CeleryError) -> Self {
        match e {
            CeleryError::Store(e) => e.into(),
            CeleryError::Undecodable { key, error } => Self::new(
                ErrorCode::UndecodableRecord,
                format!(
                    "{key} holds no Celery JSON record resultd can read ({}): {error}",
                    error.reason()
                ),
            ),
        }
    }
}

fn not_found(app: &str, id: &TaskId) -> ApiError {
    ApiError::new(
        ErrorCode::ResultNotFound,
        format!("no Celery result {id} in app {app} (queued, unknown, forgotten and expired tasks all have none)"),
    )
}

/// Takes a wait slot, registers the waiters of `keys`, then subscribes their channels: all
/// before the first read, so no write in between is missed.
async fn watch_channels(
    ctx: &ApiContext,
    client: Option<IpAddr>,
    keys: &[String],
) -> Result<(WaitSlot, ChannelHold, Vec<KeyWatch>), ApiError> {
    if ctx.shutdown_token().is_cancelled() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down").with_retry_after(1));
    }
    let slot = ctx.wait_limiter().acquire(client, keys.len())?;
    let hub = ctx.store().channel_changes();
    let watches = keys.iter().map(|k| hub.watch(k)).collect();
    let hold = ctx.store().hold_channels(keys).await?;
    Ok((slot, hold, watches))
}

fn record_response(status: StatusCode, app: &str, id: &TaskId, view: &TaskView) -> Response {
    with_etag(
        (status, Json(CeleryResultBody::new(app, id.as_str(), view))).into_response(),
        &view.etag,
    )
}

/// Holds until the task is ready, the wait runs out, or it vanishes.
async fn wait_ready(
    ctx: &ApiContext,
    client: Option<IpAddr>,
    layout: &Celery,
    id: &TaskId,
    duration: Duration,
) -> Result<WaitEnd<TaskView>, ApiError> {
    let (_slot, _hold, watches) = watch_channels(ctx, client, &[layout.task_key(id)]).await?;
    let store = ctx.store();
    let max = max_inflated(ctx);
    wait_until(ctx, watches, duration, || async {
        Ok(match service::get(store, layout, id, max).await? {
            Some(v) if celery::is_ready(&v.meta.status) => Probe::Ready(v),
            Some(v) => Probe::Pending(v),
            None => Probe::Missing,
        })
    })
    .await
}

/// Reads a Celery result, or waits for it to be ready.
#[utoipa::path(
    get, path = "/celery/results/{task_id}", tag = "celery",
    description = "Reads `{prefix}celery-task-meta-{task_id}` and decodes it as data: the native `status` and the common `state`, `date_done` in UTC, the exception of a failure as `{exc_type, exc_message, exc_module}` (never resolved), kombu `__type__` envelopes passed through, 5.7's in-band compression inflated under `compression.max_inflated_bytes`. An id with no record is a 404, never a made-up PENDING. With `?wait=N` or `Prefer: wait=N` the request is held until the task is ready: a result that appears during the wait counts, and the wait is woken by Celery's own PUBLISH on the key (one exact channel per waited id, unsubscribed when its last waiter leaves).",
    params(("task_id" = String, Path, description = "Celery task id: 1 to 255 characters of `A-Z a-z 0-9 - _ . : @ + =`", pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$"), CeleryGetParams,
           ("Prefer" = Option<String>, Header, description = "`wait=N`: long-poll like `?wait=N` (RFC 7240)"),
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when the record still matches")),
    responses(
        (status = 200, description = "The record (when waiting: ready, or the wait ran out; `done` tells)", body = CeleryResultBody,
         headers(("ETag" = String, description = "Strong ETag of the stored bytes"), ("Preference-Applied" = String, description = "The wait used, when `Prefer: wait` was sent"))),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "`invalid-task-id`, `invalid-app`, `invalid-query`, `invalid-header`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`: no record (or it was forgotten or expired during the wait); `layout-disabled`: `celery.enabled` is false, or `?app=` names no configured Celery app", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`: the stored value is not Celery JSON resultd can read (another serializer, a codec other than zlib, too large when inflated)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_celery_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<CeleryGetParams>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, layout) = layout_for(&ctx, params.app.as_deref())?;
    let id = task_id(&raw_id)?;
    let wait = wait_request(&ctx, params.wait, &headers)?;
    let view = match wait {
        None => service::get(ctx.store(), layout, &id, max_inflated(&ctx))
            .await?
            .ok_or_else(|| not_found(app, &id))?,
        Some(wait) => match wait_ready(&ctx, client, layout, &id, wait.duration).await? {
            WaitEnd::Done(v) => {
                return Ok(wait.applied_to(record_response(StatusCode::OK, app, &id, &v)));
            }
            WaitEnd::Missing => return Err(not_found(app, &id)),
        },
    };
    if none_match(&headers, &view.etag) {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), &view.etag));
    }
    Ok(record_response(StatusCode::OK, app, &id, &view))
}

/// Stores a task's state or result, as a Celery worker does.
#[utoipa::path(
    put, path = "/celery/results/{task_id}", tag = "celery",
    description = "Writes `{prefix}celery-task-meta-{task_id}` exactly as Celery's `store_result` does: the record in kombu's JSON dialect and Celery's key order (`date_done` set for ready states), `SETEX` with `celery.result_expires` (FAILURE: `celery.result_failure_expires`; 0: a plain `SET`), then `PUBLISH` of the value on the key's name, so `AsyncResult.get()` waiters wake. A stored SUCCESS is final: the check and the write are one atomic step (Celery's own check is a separate read). Uncompressed, so every Celery 5.x reader reads it.",
    params(("task_id" = String, Path, description = "Celery task id: 1 to 255 characters of `A-Z a-z 0-9 - _ . : @ + =`", pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$"), CeleryAppParam),
    request_body(content = CeleryResultInput),
    responses(
        (status = 201, description = "Stored; there was no record", body = CeleryResultBody, headers(("ETag" = String, description = "Strong ETag of the stored bytes"))),
        (status = 200, description = "Stored over an earlier state", body = CeleryResultBody, headers(("ETag" = String, description = "Strong ETag of the stored bytes"))),
        (status = 400, description = "`invalid-task-id`, `invalid-app`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: Celery is off, or `?app=` names no configured Celery app", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`illegal-transition`: a SUCCESS is stored, which is final (`current_state` SUCCESS)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: a bad status, an exception state without an exception object, a bad group or parent id", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied; `store-read-only`: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis refused the write before any effect", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn put_celery_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<CeleryAppParam>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let (app, layout) = layout_for(&ctx, params.app.as_deref())?;
    let id = task_id(&raw_id)?;
    let write = body.parse_object::<CeleryResultInput>()?.into_write()?;
    match service::put(ctx.store(), layout, &id, &write, Utc::now(), max_inflated(&ctx)).await? {
        PutOutcome::Created(v) => Ok(record_response(StatusCode::CREATED, app, &id, &v)),
        PutOutcome::Replaced(v) => Ok(record_response(StatusCode::OK, app, &id, &v)),
        PutOutcome::Final(_) => Err(ApiError::new(
            ErrorCode::IllegalTransition,
            format!("Celery result {id} is SUCCESS, which is final; nothing was written"),
        )
        .with_current_state("SUCCESS")),
    }
}

/// Which Celery results to wait for, and how long.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e", "task-2"], "mode": "all", "timeout": 30}))]
pub struct CeleryWaitInput {
    /// Task ids (1 to 1000).
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<CeleryTaskId>)]
    pub ids: Vec<String>,
    /// `any` (default) or `all`.
    #[serde(default)]
    pub mode: WaitMode,
    /// Seconds to wait at most (clamped to `wait.max_seconds`); 0 or absent answers at once.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub timeout: Option<f64>,
}

/// Where each waited Celery result stands.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mode": "all", "satisfied": false, "done": ["d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e"], "pending": ["task-2"], "missing": [], "results": []}))]
pub struct CeleryWaitOutcome {
    /// The mode used.
    pub mode: WaitMode,
    /// Whether the mode's condition was met (false: the wait ran out).
    pub satisfied: bool,
    /// Ids of ready results.
    pub done: Vec<String>,
    /// Ids of results stored in a state that is not ready.
    pub pending: Vec<String>,
    /// Ids with no record.
    pub missing: Vec<String>,
    /// The records of the ready results.
    pub results: Vec<CeleryResultBody>,
}

type Reading = Option<TaskView>;

async fn read_tasks(ctx: &ApiContext, layout: &Celery, ids: &[TaskId]) -> Result<Vec<Reading>, ApiError> {
    let max = max_inflated(ctx);
    let store = ctx.store();
    let reads = futures::future::try_join_all(ids.iter().map(|id| service::get(store, layout, id, max))).await?;
    Ok(reads)
}

fn is_ready(r: &Reading) -> bool {
    r.as_ref().is_some_and(|v| celery::is_ready(&v.meta.status))
}

fn wait_satisfied(readings: &[Reading], mode: WaitMode) -> bool {
    match mode {
        WaitMode::Any => readings.iter().any(is_ready),
        WaitMode::All => readings.iter().all(is_ready),
    }
}

fn wait_outcome(app: &str, ids: &[TaskId], readings: &[Reading], mode: WaitMode) -> CeleryWaitOutcome {
    let mut out = CeleryWaitOutcome {
        mode,
        satisfied: wait_satisfied(readings, mode),
        done: Vec::new(),
        pending: Vec::new(),
        missing: Vec::new(),
        results: Vec::new(),
    };
    for (id, reading) in ids.iter().zip(readings) {
        match reading {
            Some(v) if celery::is_ready(&v.meta.status) => {
                out.done.push(id.to_string());
                out.results.push(CeleryResultBody::new(app, id.as_str(), v));
            }
            Some(_) => out.pending.push(id.to_string()),
            None => out.missing.push(id.to_string()),
        }
    }
    out
}

/// Waits for any or all of several Celery results to be ready.
#[utoipa::path(
    post, path = "/celery/results/wait", tag = "celery",
    description = "One request waits on many task ids, each woken by Celery's PUBLISH on its own key (exact channels, reference-counted across every waiter of this process).",
    params(CeleryAppParam),
    request_body(content = CeleryWaitInput),
    responses(
        (status = 200, description = "Where each result stands when the condition was met or the wait ran out", body = CeleryWaitOutcome),
        (status = 400, description = "`invalid-app`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: Celery is off, or `?app=` names no configured Celery app", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: no ids, more than 1000, or one that is not a valid task id; `undecodable-record`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn wait_for_celery_results(
    State(ctx): State<ApiContext>,
    Query(params): Query<CeleryAppParam>,
    ClientAddr(client): ClientAddr,
    body: JsonBody,
) -> Result<Json<CeleryWaitOutcome>, ApiError> {
    let (app, layout) = layout_for(&ctx, params.app.as_deref())?;
    let input: CeleryWaitInput = body.parse_object()?;
    if input.ids.is_empty() || input.ids.len() > MAX_IDS {
        return Err(invalid_body(format!("ids must name 1 to {MAX_IDS} tasks")));
    }
    let mut ids = Vec::with_capacity(input.ids.len());
    let mut seen = HashSet::new();
    for raw in &input.ids {
        let id = TaskId::parse(raw).map_err(|e| invalid_body(format!("task id {raw:?} {e}")))?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    let timeout = timeout_seconds(&ctx, input.timeout, ErrorCode::InvalidBody)?;
    let mode = input.mode;
    if timeout.is_zero() {
        let readings = read_tasks(&ctx, layout, &ids).await?;
        return Ok(Json(wait_outcome(app, &ids, &readings, mode)));
    }
    let keys: Vec<String> = ids.iter().map(|id| layout.task_key(id)).collect();
    let (_slot, _hold, watches) = watch_channels(&ctx, client, &keys).await?;
    let readings = wait_for_many(
        &ctx,
        watches,
        timeout,
        |indices: Vec<usize>| {
            let subset: Vec<TaskId> = indices.iter().map(|&i| ids[i].clone()).collect();
            let ctx = &ctx;
            async move { read_tasks(ctx, layout, &subset).await }
        },
        |readings: &[Reading]| wait_satisfied(readings, mode),
    )
    .await?;
    Ok(Json(wait_outcome(app, &ids, &readings, mode)))
}

/// One Server-Sent Event of `GET /celery/results/{task_id}/events`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"event": "result", "id": "5d701b90b6c74daf5598ceaf9826871f", "data": "{\"task_id\":\"t-1\",\"status\":\"PROGRESS\",\"state\":\"RUNNING\",\"done\":false}"}))]
pub struct CeleryResultEvent {
    /// `result`, `deleted` or `error`.
    event: String,
    /// The record's ETag (`result` events).
    id: Option<String>,
    /// The record (`result`), `{"task_id","app"}` (`deleted`) or a problem (`error`), as JSON text.
    data: String,
}

struct Follow {
    ctx: ApiContext,
    app: String,
    id: TaskId,
    watch: Option<KeyWatch>,
    _hold: ChannelHold,
    _slot: WaitSlot,
    last_etag: Option<String>,
    deadline: Instant,
    finished: bool,
    request_id: RequestId,
}

async fn next_event(mut f: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    if f.finished {
        return None;
    }
    loop {
        let read = match f.ctx.celery_layout(&f.app) {
            Some(layout) => service::get(f.ctx.store(), layout, &f.id, max_inflated(&f.ctx))
                .await
                .map_err(ApiError::from),
            None => Err(ApiError::new(ErrorCode::InvalidApp, "the Celery app is gone")),
        };
        let view = match read {
            Ok(v) => v,
            Err(e) => {
                f.finished = true;
                let data = serde_json::to_string(&e.problem(Some(&f.request_id.0))).unwrap_or_default();
                return Some((Ok(Event::default().event("error").data(data)), f));
            }
        };
        let Some(v) = view else {
            f.finished = true;
            let data = serde_json::json!({"task_id": f.id.as_str(), "app": f.app}).to_string();
            return Some((Ok(Event::default().event("deleted").data(data)), f));
        };
        let tag = v.etag.trim_matches('"').to_owned();
        let ready = celery::is_ready(&v.meta.status);
        if f.last_etag.as_deref() != Some(tag.as_str()) {
            let body = serde_json::to_string(&CeleryResultBody::new(&f.app, f.id.as_str(), &v)).unwrap_or_default();
            let event = Event::default().event("result").id(tag.clone()).data(body);
            f.last_etag = Some(tag);
            f.finished = ready;
            return Some((Ok(event), f));
        }
        if ready {
            return None;
        }
        let shutdown = f.ctx.shutdown_token().clone();
        let watch = f.watch.as_mut()?;
        tokio::select! {
            () = watch.changed() => {}
            () = tokio::time::sleep_until(f.deadline) => return None,
            () = shutdown.cancelled() => return None,
        }
    }
}

/// Follows one Celery result as Server-Sent Events until it is ready.
#[utoipa::path(
    get, path = "/celery/results/{task_id}/events", tag = "celery",
    description = "The first event is the current record, then one `result` event per change (STARTED, PROGRESS updates, RETRY, …); the stream ends after a ready state, with a `deleted` event when the record is forgotten or expires, or after `wait.max_seconds` (reconnect with `Last-Event-ID` to resume without repeats).",
    params(("task_id" = String, Path, description = "Celery task id", pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$"), CeleryAppParam,
           ("Last-Event-ID" = Option<String>, Header, description = "Resume: the record is sent again only if it changed since this event id")),
    responses(
        (status = 200, description = "An event stream: `result` events carry the record as JSON (event id = its ETag); `deleted` and `error` end it", content_type = "text/event-stream", body = CeleryResultEvent),
        (status = 400, description = "`invalid-task-id`, `invalid-app`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`, `layout-disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow_celery_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<CeleryAppParam>,
    ClientAddr(client): ClientAddr,
    request_id: RequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, layout) = layout_for(&ctx, params.app.as_deref())?;
    let app = app.to_owned();
    let id = task_id(&raw_id)?;
    let (slot, hold, mut watches) = watch_channels(&ctx, client, &[layout.task_key(&id)]).await?;
    if service::get(ctx.store(), layout, &id, max_inflated(&ctx))
        .await?
        .is_none()
    {
        return Err(not_found(&app, &id));
    }
    let last_etag = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().trim_matches('"').to_owned());
    let deadline = Instant::now() + Duration::from_secs(ctx.settings().wait.max_seconds);
    let follow = Follow {
        ctx,
        app,
        id,
        watch: watches.pop(),
        _hold: hold,
        _slot: slot,
        last_etag,
        deadline,
        finished: false,
        request_id,
    };
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(futures::stream::unfold(follow, next_event));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One member of a Celery group.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeleryGroupMember {
    /// The member's task id.
    pub task_id: String,
    /// Whether the member has a record.
    pub found: bool,
    /// Its native status; null without a record.
    pub status: Option<String>,
    /// Its common state; null without a record.
    pub state: Option<ResultState>,
    /// Whether it is ready.
    pub done: bool,
    /// Why its record cannot be decoded, when it cannot (`bad-json`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecodable: Option<String>,
}

/// A saved Celery group and where its members stand.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"group_id": "0f0e0d0c-0000-4000-8000-00000000000a", "app": "celery", "results": [
    {"task_id": "t1", "found": true, "status": "SUCCESS", "state": "SUCCESS", "done": true},
    {"task_id": "t2", "found": true, "status": "STARTED", "state": "RUNNING", "done": false}],
    "done": false, "completed": 1, "total": 2, "ttl": 86390}))]
pub struct CeleryGroupBody {
    /// The group id.
    pub group_id: String,
    /// The Celery app.
    pub app: String,
    /// The members, in the group's order.
    pub results: Vec<CeleryGroupMember>,
    /// Whether every member is ready.
    pub done: bool,
    /// How many members are ready (`GroupResult.completed_count()` counts SUCCESS only; this
    /// counts every ready state).
    pub completed: usize,
    /// How many members the group has.
    pub total: usize,
    /// Seconds until the group record expires; null when it never does.
    pub ttl: Option<i64>,
}

fn group_body(app: &str, group_id: &TaskId, view: &GroupView) -> CeleryGroupBody {
    let results: Vec<CeleryGroupMember> = view
        .members
        .iter()
        .map(|m| match &m.record {
            Some(Ok(meta)) => CeleryGroupMember {
                task_id: m.task_id.clone(),
                found: true,
                status: Some(meta.status.clone()),
                state: ResultState::from_name(celery::common_state(&meta.status)),
                done: celery::is_ready(&meta.status),
                undecodable: None,
            },
            Some(Err(e)) => CeleryGroupMember {
                task_id: m.task_id.clone(),
                found: true,
                status: None,
                state: None,
                done: false,
                undecodable: Some(e.reason().to_owned()),
            },
            None => CeleryGroupMember {
                task_id: m.task_id.clone(),
                found: false,
                status: None,
                state: None,
                done: false,
                undecodable: None,
            },
        })
        .collect();
    let completed = results.iter().filter(|m| m.done).count();
    CeleryGroupBody {
        group_id: group_id.to_string(),
        app: app.to_owned(),
        done: completed == results.len(),
        completed,
        total: results.len(),
        results,
        ttl: view.ttl,
    }
}

/// Reads a saved Celery group with its members' states.
#[utoipa::path(
    get, path = "/celery/groups/{group_id}", tag = "celery",
    description = "Reads `{prefix}celery-taskset-meta-{group_id}` (what `GroupResult.save()` writes) and every member's record in one round trip. Chord bookkeeping keys (`.j`, `.t`, `.s`, `.d`, `.c`) are never decoded as groups.",
    params(("group_id" = String, Path, description = "Celery group id", pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$"), CeleryAppParam,
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when the group and its members still match")),
    responses(
        (status = 200, description = "The group", body = CeleryGroupBody, headers(("ETag" = String, description = "Strong ETag of the group record and its members' records"))),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "`invalid-task-id`, `invalid-app`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`group-not-found`: no saved group (only saved groups have a record), `layout-disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`: the group record is not one resultd can read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_celery_group(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<CeleryAppParam>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, layout) = layout_for(&ctx, params.app.as_deref())?;
    let group_id = task_id(&raw_id)?;
    let Some(view) = service::get_group(ctx.store(), layout, &group_id, max_inflated(&ctx)).await? else {
        return Err(ApiError::new(
            ErrorCode::GroupNotFound,
            format!("no saved Celery group {group_id} in app {app}"),
        ));
    };
    if none_match(&headers, &view.etag) {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), &view.etag));
    }
    Ok(with_etag(
        Json(group_body(app, &group_id, &view)).into_response(),
        &view.etag,
    ))
}

/// The members of a group to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"results": ["t1", "t2"]}))]
pub struct CeleryGroupInput {
    /// The member task ids, in order (1 to 1000).
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<CeleryTaskId>)]
    pub results: Vec<String>,
}

/// Saves a Celery group, as `GroupResult.save()` does.
#[utoipa::path(
    put, path = "/celery/groups/{group_id}", tag = "celery",
    description = "Writes `{prefix}celery-taskset-meta-{group_id}` as `GroupResult.save()` does (`{\"result\": [[group_id, null], [[[id, null], null], …]]}`, SUCCESS's TTL, published), so `GroupResult.restore(group_id)` finds it.",
    params(("group_id" = String, Path, description = "Celery group id", pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$"), CeleryAppParam),
    request_body(content = CeleryGroupInput),
    responses(
        (status = 201, description = "Saved; there was no group record", body = CeleryGroupBody),
        (status = 200, description = "Saved over an earlier group record", body = CeleryGroupBody),
        (status = 400, description = "`invalid-task-id`, `invalid-app`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: Celery is off, or `?app=` names no configured Celery app", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: no members, more than 1000, or a bad task id", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `store-read-only`", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn put_celery_group(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<CeleryAppParam>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let (app, layout) = layout_for(&ctx, params.app.as_deref())?;
    let group_id = task_id(&raw_id)?;
    let input: CeleryGroupInput = body.parse_object()?;
    if input.results.is_empty() || input.results.len() > MAX_IDS {
        return Err(invalid_body(format!("results must name 1 to {MAX_IDS} tasks")));
    }
    let members = input
        .results
        .iter()
        .map(|raw| TaskId::parse(raw).map_err(|e| invalid_body(format!("task id {raw:?} {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let created = service::put_group(ctx.store(), layout, &group_id, &members).await?;
    let view = service::get_group(ctx.store(), layout, &group_id, max_inflated(&ctx))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::GroupNotFound,
                "the group was removed right after it was saved",
            )
        })?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(
        (status, Json(group_body(app, &group_id, &view))).into_response(),
        &view.etag,
    ))
}

/// Flower's answer of `GET /api/task/result/{task_id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"task-id": "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e", "state": "FAILURE", "result": "ZeroDivisionError('division by zero')", "traceback": "Traceback (most recent call last):\n  ...\nZeroDivisionError: division by zero\n"}))]
pub struct FlowerResult {
    /// The task id.
    #[serde(rename = "task-id")]
    pub task_id: String,
    /// Celery's status after the wait; PENDING when there is no record (as Flower answers).
    pub state: String,
    /// The result, only when ready; for an exception its Python `repr`, as Flower sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The traceback, only for FAILURE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// Python's `repr` of a JSON value (strings in single quotes unless they hold one and no
/// double quote), as `repr(exc)` shows exception arguments.
fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::with_capacity(s.len() + 2);
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push(quote);
            out
        }
        Value::Array(items) => format!("[{}]", items.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_repr(&Value::from(k.as_str())), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `repr(exc)` of a stored exception `{exc_type, exc_message}`: `ZeroDivisionError('division by zero')`.
fn exception_repr(result: &Value) -> Option<String> {
    let exc_type = result.get("exc_type")?.as_str()?;
    let args = match result.get("exc_message") {
        Some(Value::Array(args)) => args.iter().map(python_repr).collect::<Vec<_>>().join(", "),
        Some(Value::Null) | None => String::new(),
        Some(other) => python_repr(other),
    };
    Some(format!("{exc_type}({args})"))
}

fn flower_body(id: &TaskId, view: Option<&TaskView>) -> FlowerResult {
    let Some(view) = view else {
        return FlowerResult {
            task_id: id.to_string(),
            state: "PENDING".to_owned(),
            result: None,
            traceback: None,
        };
    };
    let meta = &view.meta;
    let ready = celery::is_ready(&meta.status);
    let result = ready.then(|| match meta.status.as_str() {
        "FAILURE" | "REVOKED" => exception_repr(&meta.result).map_or_else(|| meta.result.clone(), Value::from),
        _ => meta.result.clone(),
    });
    FlowerResult {
        task_id: id.to_string(),
        state: meta.status.clone(),
        result,
        traceback: if meta.status == "FAILURE" {
            meta.traceback.clone()
        } else {
            None
        },
    }
}

/// Flower's task result route, for Flower API users.
#[utoipa::path(
    get, path = "/api/task/result/{task_id}", tag = "celery",
    description = "Flower's `GET /api/task/result/{task_id}?timeout=` shape: `{\"task-id\", \"state\"}`, plus `result` when ready (an exception as its Python `repr`, as Flower sends it) and `traceback` for FAILURE. An unknown id is 200 PENDING, as in Flower. Differences from Flower 2.2: `state` is the state *after* the wait (Flower sends the state read before it), waits are woken by Celery's PUBLISH with no cap of five concurrent waits, and a timeout answers 200 with the current state.",
    params(("task_id" = String, Path, description = "Celery task id", pattern = "^[A-Za-z0-9_.:@+=-]{1,255}$"), FlowerParams),
    responses(
        (status = 200, description = "The task's state, with its result when ready", body = FlowerResult),
        (status = 400, description = "`invalid-task-id`, `invalid-app`, `invalid-query` (a bad `timeout`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`: Celery is off, or `?app=` names no configured Celery app", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn flower_task_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<FlowerParams>,
    ClientAddr(client): ClientAddr,
) -> Result<Json<FlowerResult>, ApiError> {
    let (_, layout) = layout_for(&ctx, params.app.as_deref())?;
    let id = task_id(&raw_id)?;
    let timeout = timeout_seconds(&ctx, params.timeout, ErrorCode::InvalidQuery)?;
    let view = if timeout.is_zero() {
        service::get(ctx.store(), layout, &id, max_inflated(&ctx)).await?
    } else {
        match wait_ready(&ctx, client, layout, &id, timeout).await? {
            WaitEnd::Done(v) => Some(v),
            WaitEnd::Missing => None,
        }
    };
    Ok(Json(flower_body(&id, view.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_show_as_python_reprs() {
        let zde = serde_json::json!({"exc_type": "ZeroDivisionError", "exc_message": ["division by zero"], "exc_module": "builtins"});
        assert_eq!(exception_repr(&zde).unwrap(), "ZeroDivisionError('division by zero')");
        let many = serde_json::json!({"exc_type": "KeyError", "exc_message": ["it's", 3, null, true]});
        assert_eq!(exception_repr(&many).unwrap(), "KeyError(\"it's\", 3, None, True)");
        let none = serde_json::json!({"exc_type": "TaskRevokedError", "exc_message": []});
        assert_eq!(exception_repr(&none).unwrap(), "TaskRevokedError()");
        assert_eq!(python_repr(&Value::from("a\nb'\"")), "'a\\nb\\'\"'");
    }
}
