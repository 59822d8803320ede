//! OmniQ's Redis storage over HTTP, read-only and experimental (the layout of
//! `legout/omniQ@acdec6d`): `/omniq/results/…`, `/omniq/tasks/…`, `/omniq/events`.
//!
//! OmniQ writes with plain `SET`s and never publishes, so waits are woken by keyspace `set`
//! events (class `$`, turned on with resultd's own classes unless `omniq.notify` is off, when
//! the waited keys are polled). Reads never add or refresh a TTL.

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ClientAddr, Path, Query, none_match, with_etag};
use super::middleware::RequestId;
use super::wait::{Probe, WaitEnd, WaitSlot, wait_request, wait_until, watch_key};
use crate::api::ApiContext;
use crate::domain::ResultState;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::store::KeyWatch;
use crate::store::layout::omniq::{OmniQ, TaskId};
use crate::store::omniq::{self as service, OmniqError, TaskView};

/// Default page size of `GET /omniq/events`.
pub const DEFAULT_EVENTS: usize = 100;
/// Largest page size of `GET /omniq/events`.
pub const MAX_EVENTS: usize = 1000;

/// An OmniQ task id: 1 to 255 characters of `A-Z a-z 0-9 _ . : -`.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9_.:-]{1,255}$", example = "task-123")]
pub struct OmniqTaskId(#[allow(dead_code)] String);

/// A failed task's error, as OmniQ stores it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OmniqFailure {
    /// `type(exc).__name__` (no module).
    #[serde(rename = "type")]
    pub error_type: Option<String>,
    /// `str(exc)`.
    pub message: Option<String>,
    /// The traceback.
    pub traceback: Option<String>,
}

/// An OmniQ task's result, or where the task stands before there is one.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "task_id": "task-123", "status": "success", "state": "SUCCESS", "done": true, "source": "result",
    "result": {"output": "Hello, World!"}, "error": null, "created_at": "2025-07-15T10:00:00.123456Z",
    "started_at": "2025-07-15T10:00:00Z", "completed_at": "2025-07-15T10:00:01.5Z", "result_ttl": 86400.0,
    "expires_at": "2025-07-16T10:00:00.123456Z", "worker_id": "worker-001", "execution_time": 1.5,
    "memory_usage": null, "metadata": {}, "extra": {}, "ttl": null
}))]
pub struct OmniqResultBody {
    /// The task id.
    pub task_id: String,
    /// OmniQ's own status, lowercase: the result's (`pending`, `success`, `error`, `cancelled`,
    /// `expired`), or the task's (`pending`, `running`, `completed`, `failed`, …) before a result exists.
    pub status: String,
    /// resultd's common state (`error` is FAILURE, `cancelled` and `expired` are REVOKED; a task
    /// whose result is not stored yet is RUNNING).
    pub state: ResultState,
    /// Whether the state is final.
    pub done: bool,
    /// `result` when a result is stored, `task` when only the task record is.
    pub source: String,
    /// The result value (null before a result exists).
    pub result: Value,
    /// A failure's error; null otherwise.
    pub error: Option<OmniqFailure>,
    /// When the result was created (RFC 3339 UTC; OmniQ stores naive UTC).
    pub created_at: Option<String>,
    /// When the task started.
    pub started_at: Option<String>,
    /// When the task completed.
    pub completed_at: Option<String>,
    /// The result's own `ttl` field, in seconds (ISO 8601 duration as stored); worker results have none.
    pub result_ttl: Option<f64>,
    /// `created_at + ttl`.
    pub expires_at: Option<String>,
    /// The worker that ran the task.
    pub worker_id: Option<String>,
    /// Seconds the task ran.
    pub execution_time: Option<f64>,
    /// Memory the task used, as stored.
    pub memory_usage: Value,
    /// `metadata` as stored.
    pub metadata: Value,
    /// Fields of the stored result this revision does not name.
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
    /// Seconds until the result key expires; null when it never does (worker results) or
    /// before a result exists. Reads never add one.
    pub ttl: Option<i64>,
}

impl OmniqResultBody {
    fn new(id: &TaskId, view: &TaskView) -> Self {
        let state = ResultState::from_name(view.state).unwrap_or(ResultState::Running);
        let mut body = Self {
            task_id: id.to_string(),
            status: view.status.clone(),
            state,
            done: view.done,
            source: if view.result.is_some() { "result" } else { "task" }.to_owned(),
            result: Value::Null,
            error: None,
            created_at: None,
            started_at: None,
            completed_at: None,
            result_ttl: None,
            expires_at: None,
            worker_id: None,
            execution_time: None,
            memory_usage: Value::Null,
            metadata: Value::Null,
            extra: Map::new(),
            ttl: view.ttl,
        };
        if let Some(r) = &view.result {
            body.result = r.result.clone();
            if r.error.is_some() || r.error_type.is_some() || r.traceback.is_some() {
                body.error = Some(OmniqFailure {
                    error_type: r.error_type.clone(),
                    message: r.error.clone(),
                    traceback: r.traceback.clone(),
                });
            }
            body.created_at = r.created_at.clone();
            body.started_at = r.started_at.clone();
            body.completed_at = r.completed_at.clone();
            body.result_ttl = r.ttl;
            body.expires_at = r.expires_at.clone();
            body.worker_id = r.worker_id.clone();
            body.execution_time = r.execution_time;
            body.memory_usage = r.memory_usage.clone();
            body.metadata = r.metadata.clone();
            body.extra = r.rest.clone();
        }
        body
    }
}

/// Query of `GET /omniq/results/{task_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OmniqGetParams {
    /// Hold the request up to this many seconds until the task is done (clamped to
    /// `wait.max_seconds`). `Prefer: wait=N` does the same.
    #[param(minimum = 0)]
    pub wait: Option<f64>,
}

/// Query of `GET /omniq/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OmniqEventsParams {
    /// Only this task's events.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,255}$")]
    pub task_id: Option<String>,
    /// The `next_cursor` of the previous page; absent or empty for the first page.
    #[param(pattern = "^[0-9]{0,19}$")]
    pub cursor: Option<String>,
    /// Most events on the page: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A page of OmniQ events.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"events": [{"task_id": "task-123", "event_type": "completed", "id": "8d6f…", "timestamp": "2025-07-15T10:00:01.5Z", "message": null}], "next_cursor": null, "scanned": 3}))]
pub struct OmniqEventPage {
    /// The events, in the index's order, each as stored with `timestamp` in RFC 3339 UTC.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Map<String, Value>>,
    /// The cursor of the next page; null when the index is exhausted.
    pub next_cursor: Option<String>,
    /// How many index entries this page examined (at most 1000).
    pub scanned: usize,
}

/// An OmniQ task record.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"task_id": "task-123", "record": {"id": "task-123", "func": "jobs.render", "status": "running", "queue_name": "default", "created_at": "2025-07-15T10:00:00Z", "ttl": null, "retry_delay": 1.0}, "ttl": null}))]
pub struct OmniqTaskBody {
    /// The task id.
    pub task_id: String,
    /// The task as stored (`func`, `args`, `kwargs`, `queue_name`, `priority`, `status`, …),
    /// datetimes in RFC 3339 UTC, `ttl` and `retry_delay` in seconds.
    #[schema(value_type = Object)]
    pub record: Map<String, Value>,
    /// Seconds until the task key expires; null when it never does.
    pub ttl: Option<i64>,
}

fn layout(ctx: &ApiContext) -> Result<&OmniQ, ApiError> {
    if ctx.settings().omniq.enabled {
        Ok(ctx.omniq_layout())
    } else {
        Err(ApiError::new(
            ErrorCode::LayoutDisabled,
            "the OmniQ routes are off on this server (omniq.enabled = false)",
        ))
    }
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidTaskId, format!("the id {e}")))
}

impl From<OmniqError> for ApiError {
    fn from(e: OmniqError) -> Self {
        match e {
            OmniqError::Store(e) => e.into(),
            OmniqError::Undecodable { key, error } => Self::new(
                ErrorCode::UndecodableRecord,
                format!("{key} holds no OmniQ record resultd can read: {error}"),
            ),
        }
    }
}

fn not_found(id: &TaskId) -> ApiError {
    ApiError::new(ErrorCode::ResultNotFound, format!("no OmniQ result or task {id}"))
}

async fn wait_done(
    ctx: &ApiContext,
    client: Option<IpAddr>,
    layout: &OmniQ,
    id: &TaskId,
    duration: Duration,
) -> Result<WaitEnd<TaskView>, ApiError> {
    let (_slot, watches) = watch_key(ctx, client, &[layout.result_key(id), layout.task_key(id)])?;
    let store = ctx.store();
    wait_until(ctx, watches, duration, || async {
        Ok(match service::get(store, layout, id).await? {
            Some(v) if v.done => Probe::Ready(v),
            Some(v) => Probe::Pending(v),
            None => Probe::Missing,
        })
    })
    .await
}

/// Reads an OmniQ task's result, or waits for it.
#[utoipa::path(
    get, path = "/omniq/results/{task_id}", tag = "omniq",
    description = "Experimental (OmniQ `legout/omniQ@acdec6d`). Reads `{results_prefix}:result:{task_id}`; before a result exists, the task's own status from `{tasks_prefix}:task:{task_id}` (OmniQ stores the result only after it marks the task completed, so `completed` without a result is a short, normal window, shown as RUNNING). 404 when neither exists. msgspec's naive UTC datetimes become RFC 3339 UTC and ISO 8601 durations seconds. `?wait=N` or `Prefer: wait=N` holds the request until the task is done, woken by keyspace `set` events.",
    params(("task_id" = String, Path, description = "OmniQ task id (`A-Z a-z 0-9 _ . : -`, 1 to 255)", pattern = "^[A-Za-z0-9_.:-]{1,255}$"), OmniqGetParams,
           ("Prefer" = Option<String>, Header, description = "`wait=N`: long-poll like `?wait=N` (RFC 7240)"),
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when nothing changed")),
    responses(
        (status = 200, description = "The result, or the task's status before it", body = OmniqResultBody,
         headers(("ETag" = String, description = "Strong ETag of the stored result and task"), ("Preference-Applied" = String, description = "The wait used, when `Prefer: wait` was sent"))),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "`invalid-task-id`, `invalid-query`, `invalid-header`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`: neither a result nor a task; `layout-disabled`: `omniq.enabled` is false", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`: the stored value is not OmniQ's msgspec JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_omniq_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<OmniqGetParams>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let layout = layout(&ctx)?;
    let id = task_id(&raw_id)?;
    let wait = wait_request(&ctx, params.wait, &headers)?;
    let view = match wait {
        None => service::get(ctx.store(), layout, &id)
            .await?
            .ok_or_else(|| not_found(&id))?,
        Some(wait) => match wait_done(&ctx, client, layout, &id, wait.duration).await? {
            WaitEnd::Done(v) => {
                return Ok(wait.applied_to(with_etag(Json(OmniqResultBody::new(&id, &v)).into_response(), &v.etag)));
            }
            WaitEnd::Missing => return Err(not_found(&id)),
        },
    };
    if none_match(&headers, &view.etag) {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), &view.etag));
    }
    Ok(with_etag(
        Json(OmniqResultBody::new(&id, &view)).into_response(),
        &view.etag,
    ))
}

/// Reads an OmniQ task record.
#[utoipa::path(
    get, path = "/omniq/tasks/{task_id}", tag = "omniq",
    description = "Experimental. `{tasks_prefix}:task:{task_id}` as stored, datetimes in UTC and durations in seconds.",
    params(("task_id" = String, Path, description = "OmniQ task id", pattern = "^[A-Za-z0-9_.:-]{1,255}$"),
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when the record still matches")),
    responses(
        (status = 200, description = "The task", body = OmniqTaskBody, headers(("ETag" = String, description = "Strong ETag of the stored bytes"))),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "`invalid-task-id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`: no such task; `layout-disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_omniq_task(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let layout = layout(&ctx)?;
    let id = task_id(&raw_id)?;
    let task = service::get_task(ctx.store(), layout, &id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ResultNotFound, format!("no OmniQ task {id}")))?;
    if none_match(&headers, &task.etag) {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), &task.etag));
    }
    let body = OmniqTaskBody {
        task_id: id.to_string(),
        record: task.record,
        ttl: task.ttl,
    };
    Ok(with_etag(Json(body).into_response(), &task.etag))
}

/// Pages through OmniQ's event log.
#[utoipa::path(
    get, path = "/omniq/events", tag = "omniq",
    description = "Experimental. Walks the event index `{events_prefix}:events` in order, reading each event and its `timestamp` field (the index's scores are off by the writer's UTC offset). OmniQ keeps no per-task index, so `?task_id=` is a bounded scan: one page examines at most 1000 index entries and may hold fewer events than `limit`; follow `next_cursor` until it is null.",
    params(OmniqEventsParams),
    responses(
        (status = 200, description = "One page", body = OmniqEventPage),
        (status = 400, description = "`invalid-task-id`, `invalid-cursor`, `invalid-query` (`limit` 0 or over 1000)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`layout-disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_omniq_events(
    State(ctx): State<ApiContext>,
    Query(params): Query<OmniqEventsParams>,
) -> Result<Json<OmniqEventPage>, ApiError> {
    let layout = layout(&ctx)?;
    let task = params.task_id.as_deref().map(task_id).transpose()?;
    let limit = match params.limit {
        None => DEFAULT_EVENTS,
        Some(n) if (1..=MAX_EVENTS as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit must be from 1 to {MAX_EVENTS}"),
            ));
        }
    };
    let from = match params.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "the cursor is not one this server handed out (use next_cursor as given)",
            )
        })?,
    };
    let page = service::events(ctx.store(), layout, task.as_ref(), from, limit).await?;
    Ok(Json(OmniqEventPage {
        events: page.events,
        next_cursor: page.next.map(|n| n.to_string()),
        scanned: page.scanned,
    }))
}

/// One Server-Sent Event of `GET /omniq/results/{task_id}/events`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"event": "result", "id": "5d701b90b6c74daf5598ceaf9826871f", "data": "{\"task_id\":\"task-123\",\"status\":\"running\",\"state\":\"RUNNING\",\"done\":false}"}))]
pub struct OmniqResultEvent {
    /// `result`, `deleted` or `error`.
    event: String,
    /// The ETag (`result` events).
    id: Option<String>,
    /// The body of `GET /omniq/results/{task_id}` (`result`), `{"task_id"}` (`deleted`) or a problem (`error`), as JSON text.
    data: String,
}

struct Follow {
    ctx: ApiContext,
    id: TaskId,
    watches: Vec<KeyWatch>,
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
        let view = match service::get(f.ctx.store(), f.ctx.omniq_layout(), &f.id).await {
            Ok(v) => v,
            Err(e) => {
                f.finished = true;
                let data = serde_json::to_string(&ApiError::from(e).problem(Some(&f.request_id.0))).unwrap_or_default();
                return Some((Ok(Event::default().event("error").data(data)), f));
            }
        };
        let Some(v) = view else {
            f.finished = true;
            let data = serde_json::json!({"task_id": f.id.as_str()}).to_string();
            return Some((Ok(Event::default().event("deleted").data(data)), f));
        };
        let tag = v.etag.trim_matches('"').to_owned();
        if f.last_etag.as_deref() != Some(tag.as_str()) {
            let body = serde_json::to_string(&OmniqResultBody::new(&f.id, &v)).unwrap_or_default();
            let event = Event::default().event("result").id(tag.clone()).data(body);
            f.last_etag = Some(tag);
            f.finished = v.done;
            return Some((Ok(event), f));
        }
        if v.done {
            return None;
        }
        let shutdown = f.ctx.shutdown_token().clone();
        if f.watches.is_empty() {
            return None;
        }
        let any_change = futures::future::select_all(f.watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = any_change => {}
            () = tokio::time::sleep_until(f.deadline) => return None,
            () = shutdown.cancelled() => return None,
        }
    }
}

/// Follows an OmniQ task as Server-Sent Events until it is done.
#[utoipa::path(
    get, path = "/omniq/results/{task_id}/events", tag = "omniq",
    description = "Experimental. The first event is the current state (from the result, or the task before it), then one `result` event per change; the stream ends when the task is done, with `deleted` when both keys disappear, or after `wait.max_seconds` (reconnect with `Last-Event-ID` to resume without repeats).",
    params(("task_id" = String, Path, description = "OmniQ task id", pattern = "^[A-Za-z0-9_.:-]{1,255}$"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume: the state is sent again only if it changed since this event id")),
    responses(
        (status = 200, description = "An event stream: `result` events carry the body of `GET /omniq/results/{task_id}` (event id = its ETag); `deleted` and `error` end it", content_type = "text/event-stream", body = OmniqResultEvent),
        (status = 400, description = "`invalid-task-id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`, `layout-disabled`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`undecodable-record`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow_omniq_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    ClientAddr(client): ClientAddr,
    request_id: RequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let layout = layout(&ctx)?;
    let id = task_id(&raw_id)?;
    let (slot, watches) = watch_key(&ctx, client, &[layout.result_key(&id), layout.task_key(&id)])?;
    if service::get(ctx.store(), layout, &id).await?.is_none() {
        return Err(not_found(&id));
    }
    let last_etag = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().trim_matches('"').to_owned());
    let deadline = Instant::now() + Duration::from_secs(ctx.settings().wait.max_seconds);
    let follow = Follow {
        ctx,
        id,
        watches,
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
