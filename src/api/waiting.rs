//! Multi-result waits and Server-Sent Events.
//!
//! `POST /results/wait` waits on many results at once; `GET /results/{id}/events` follows one as
//! a stream. Both use the same watch-then-read loop as the single-result long-poll (`wait.rs`).

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::ToSchema;

use super::extract::{ClientAddr, JsonBody, Path, Query, app_name, result_id};
use super::results::{AppParam, ResultBody, not_found};
use super::wait::{timeout_seconds, wait_for_many, watch_key};
use crate::api::ApiContext;
use crate::api::middleware::RequestId;
use crate::domain::{AppName, ResultId};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::store::results::{self, ResultView};
use crate::store::{ResultStore, keys};

/// Most ids one `POST /results/wait` may name.
pub const MAX_WAIT_IDS: usize = 1000;

/// A result id: a hyphenated UUID, any case.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", example = "3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10")]
pub struct UuidString(#[allow(dead_code)] String);

/// One Server-Sent Event of `GET /results/{id}/events`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"event": "result", "id": "5d701b90b6c74daf5598ceaf9826871f", "data": "{\"id\":\"3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10\",\"state\":\"RUNNING\",\"done\":false}"}))]
pub struct ResultEvent {
    /// `result`, `deleted` or `error`.
    event: String,
    /// The record's ETag (`result` events).
    id: Option<String>,
    /// The record (`result`), `{"id","app"}` (`deleted`) or a problem (`error`), as JSON text.
    data: String,
}

/// When a multi-wait is satisfied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    /// As soon as one result is done.
    #[default]
    Any,
    /// When every result is done.
    All,
}

/// Which results to wait for, and how long.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10", "00000000-0000-4000-8000-000000000008"], "mode": "all", "timeout": 30}))]
pub struct WaitInput {
    /// Result ids (1 to 1000).
    #[schema(min_items = 1, max_items = 1000, inline, value_type = Vec<UuidString>)]
    pub ids: Vec<String>,
    /// `any` (default) or `all`.
    #[serde(default)]
    pub mode: WaitMode,
    /// Seconds to wait at most (clamped to `wait.max_seconds`); 0 or absent answers at once.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub timeout: Option<f64>,
}

/// Where each waited result stands.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"mode": "all", "satisfied": false, "done": ["3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10"],
    "pending": ["00000000-0000-4000-8000-000000000008"], "missing": [], "results": []}))]
pub struct WaitOutcome {
    /// The mode used.
    pub mode: WaitMode,
    /// Whether the mode's condition was met (false: the wait ran out).
    pub satisfied: bool,
    /// Ids of results in a ready state.
    pub done: Vec<String>,
    /// Ids of results that exist and are not done.
    pub pending: Vec<String>,
    /// Ids with no result.
    pub missing: Vec<String>,
    /// The records of the done results.
    pub results: Vec<ResultBody>,
}

fn outcome(app: &AppName, ids: &[ResultId], views: &[Option<ResultView>], mode: WaitMode) -> WaitOutcome {
    let mut out = WaitOutcome {
        mode,
        satisfied: false,
        done: Vec::new(),
        pending: Vec::new(),
        missing: Vec::new(),
        results: Vec::new(),
    };
    for (id, view) in ids.iter().zip(views) {
        match view {
            Some(v) if v.record.is_done() => {
                out.done.push(id.to_string());
                out.results.push(ResultBody::new(app, v));
            }
            Some(_) => out.pending.push(id.to_string()),
            None => out.missing.push(id.to_string()),
        }
    }
    out.satisfied = satisfied(views, mode);
    out
}

async fn read_all(ctx: &ApiContext, app: &AppName, ids: &[ResultId]) -> Result<Vec<Option<ResultView>>, ApiError> {
    let record_keys: Vec<String> = ids.iter().map(|id| keys::result(app, id)).collect();
    let snaps = ctx.store().read_hashes(&record_keys).await?;
    let mut views = Vec::with_capacity(ids.len());
    for ((key, id), snap) in record_keys.iter().zip(ids).zip(snaps) {
        views.push(match snap {
            Some(s) => Some(results::view_of(key, *id, &s)?),
            None => None,
        });
    }
    Ok(views)
}

/// Waits for any or all of several results to be done.
#[utoipa::path(
    post, path = "/results/wait", tag = "waiting",
    params(AppParam),
    request_body(content = WaitInput),
    responses(
        (status = 200, description = "Where each result stands when the condition was met or the wait ran out", body = WaitOutcome),
        (status = 400, description = "`invalid-app`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: no ids, more than 1000, or one that is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`: this client holds `wait.max_waiters_per_client` waits, or these ids would take it past `wait.max_watched_ids_per_client`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn wait_for_results(
    State(ctx): State<ApiContext>,
    Query(params): Query<AppParam>,
    ClientAddr(client): ClientAddr,
    body: JsonBody,
) -> Result<Json<WaitOutcome>, ApiError> {
    let app = app_name(&ctx, params.app.as_deref())?;
    let input: WaitInput = body.parse_object()?;
    if input.ids.is_empty() || input.ids.len() > MAX_WAIT_IDS {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("ids must name 1 to {MAX_WAIT_IDS} results"),
        ));
    }
    let mut ids = Vec::with_capacity(input.ids.len());
    let mut seen = HashSet::new();
    for raw in &input.ids {
        let id = ResultId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.0))?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    let timeout = timeout_seconds(&ctx, input.timeout, ErrorCode::InvalidBody)?;
    let mode = input.mode;
    if timeout.is_zero() {
        let views = read_all(&ctx, &app, &ids).await?;
        return Ok(Json(outcome(&app, &ids, &views, mode)));
    }
    let record_keys: Vec<String> = ids.iter().map(|id| keys::result(&app, id)).collect();
    let (_slot, watches) = watch_key(&ctx, client, &record_keys)?;
    let views = wait_for_many(
        &ctx,
        watches,
        timeout,
        |indices: Vec<usize>| {
            let subset: Vec<ResultId> = indices.iter().map(|&i| ids[i]).collect();
            let (ctx, app) = (&ctx, &app);
            async move { read_all(ctx, app, &subset).await }
        },
        |views: &[Option<ResultView>]| satisfied(views, mode),
    )
    .await?;
    Ok(Json(outcome(&app, &ids, &views, mode)))
}

/// Whether the readings meet the mode's condition.
fn satisfied(views: &[Option<ResultView>], mode: WaitMode) -> bool {
    let done = |v: &Option<ResultView>| v.as_ref().is_some_and(|v| v.record.is_done());
    match mode {
        WaitMode::Any => views.iter().any(done),
        WaitMode::All => views.iter().all(done),
    }
}

struct Follow {
    ctx: ApiContext,
    app: AppName,
    id: ResultId,
    watch: Option<crate::store::KeyWatch>,
    _slot: super::wait::WaitSlot,
    last_etag: Option<String>,
    deadline: Instant,
    finished: bool,
    /// The request's id: the stream outlives the request frame, so error events carry it.
    request_id: RequestId,
}

fn record_event(app: &AppName, view: &ResultView) -> Event {
    let body = serde_json::to_string(&ResultBody::new(app, view)).unwrap_or_default();
    Event::default()
        .event("result")
        .id(view.etag.trim_matches('"'))
        .data(body)
}

/// The next event of a followed result, or `None` when the stream ends.
async fn next_event(mut f: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    if f.finished {
        return None;
    }
    loop {
        let view = match results::get(f.ctx.store(), &f.app, &f.id).await {
            Ok(v) => v,
            Err(e) => {
                f.finished = true;
                let problem = ApiError::from(e).problem(Some(&f.request_id.0));
                let data = serde_json::to_string(&problem).unwrap_or_default();
                return Some((Ok(Event::default().event("error").data(data)), f));
            }
        };
        match view {
            None => {
                f.finished = true;
                let data = format!("{{\"id\":\"{}\",\"app\":\"{}\"}}", f.id, f.app);
                return Some((Ok(Event::default().event("deleted").data(data)), f));
            }
            Some(v) => {
                let tag = v.etag.trim_matches('"').to_owned();
                if f.last_etag.as_deref() != Some(tag.as_str()) {
                    f.last_etag = Some(tag);
                    f.finished = v.record.is_done();
                    let event = record_event(&f.app, &v);
                    return Some((Ok(event), f));
                }
                if v.record.is_done() {
                    return None;
                }
            }
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

/// Follows one result as Server-Sent Events until it is done.
///
/// The first event is the current record, then one `result` event per change; the stream ends
/// after the record reaches a ready state, with a `deleted` event when the result disappears, or
/// after `wait.max_seconds` (reconnect with `Last-Event-ID` to resume without repeats).
#[utoipa::path(
    get, path = "/results/{id}/events", tag = "waiting",
    params(("id" = String, Path, description = "Result id", format = Uuid), AppParam,
           ("Last-Event-ID" = Option<String>, Header, description = "Resume: the record is sent again only if it changed since this event id")),
    responses(
        (status = 200, description = "An event stream: `result` events carry the record as JSON (event id = its ETag); `deleted` and `error` end it", content_type = "text/event-stream", body = ResultEvent),
        (status = 400, description = "`invalid-result-id`, `invalid-app`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow_result(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<AppParam>,
    ClientAddr(client): ClientAddr,
    request_id: RequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let (slot, mut watches) = watch_key(&ctx, client, &[keys::result(&app, &id)])?;
    if results::get(ctx.store(), &app, &id).await?.is_none() {
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
