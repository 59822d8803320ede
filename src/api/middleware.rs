//! The per-request frame (id, token, timeout, metrics, access log) and the problem answers
//! for unknown routes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::api::ApiContext;
use crate::error::{ApiError, ErrorCode, LoggedError};

/// The request id header, set on every response and propagated from requests.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request, in its extensions for the handlers that answer after the frame has
/// returned (event streams).
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self(Arc::from(new_request_id()))))
    }
}

/// A fresh id: a per-process random prefix and a counter, unique across replicas.
fn new_request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The one middleware every request passes through, outermost, so that it costs one boxed
/// future per request instead of one per concern.
///
/// Gives the request an id (the client's `x-request-id` when it is sane, else a fresh one): a
/// `request` span carries it on every log line of the request, problem bodies carry it, and the
/// response echoes it; checks its bearer token; bounds it by the request timeout; and records
/// its metrics, the warning of a failed request and one debug access-log line (method, route
/// template, status, duration, request id).
pub async fn frame(State(ctx): State<ApiContext>, mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let method = request.method().clone();
    // The route template, never the raw URI: ids must not become label values or log noise.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    request.extensions_mut().insert(RequestId(Arc::from(id.as_str())));
    let mut response = checked(&ctx, request, next).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let elapsed = started.elapsed();
    let status = response.status();
    let logged = response.extensions_mut().remove::<LoggedError>();
    if let Some(logged) = &logged {
        // The problem names its request: written again with the id, which only the frame knows.
        *response.body_mut() = Body::from(logged.body_for(&id));
        response.headers_mut().remove(CONTENT_LENGTH);
        if status.is_server_error() {
            span.in_scope(|| {
                tracing::warn!(
                    method = %method,
                    route = %route,
                    code = logged.code(),
                    internal = logged.internal.as_deref().unwrap_or(""),
                    "request failed"
                );
            });
        } else if let Some(internal) = &logged.internal {
            span.in_scope(|| tracing::debug!(code = logged.code(), internal, "request refused"));
        }
    }
    let code = logged.as_ref().map(LoggedError::code);
    let status = status.as_u16();
    crate::telemetry::record_request(method.as_str(), route, status, elapsed);
    // An access log line at debug level: opt in with `log.filter = "info,resultd::api=debug"`
    // (at info it costs about a sixth of the throughput of a small GET).
    tracing::debug!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        code,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The bearer-token check, then the handler under its deadline.
async fn checked(ctx: &ApiContext, request: Request, next: Next) -> Response {
    if let Err(response) = ctx
        .authenticator()
        .check(&request, ctx.default_app().as_str(), &ctx.layout_apps())
    {
        return *response;
    }
    let limit = request_limit(ctx, &request);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// Whether a request is a wait, which has its own deadline instead of the request timeout:
/// the multi-wait, an event stream, or a read asking to wait (`?wait=` or `Prefer: wait=` on
/// a write changes nothing, so it does not stretch the write's deadline).
fn is_wait(method: &Method, uri: &Uri, prefer_wait: bool) -> bool {
    let path = uri.path();
    if method == Method::POST && path == "/results/wait" {
        return true;
    }
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    prefer_wait
        || path.ends_with("/events")
        || uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("wait=")))
}

/// How long a request may take: `server.request_timeout_ms` (slow bodies included); waits get
/// `wait.max_seconds` on top, since they have their own, shorter deadline.
fn request_limit(ctx: &ApiContext, request: &Request) -> Duration {
    let prefer_wait = request
        .headers()
        .get_all("prefer")
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("wait")));
    let mut limit = Duration::from_millis(ctx.settings().server.request_timeout_ms);
    if is_wait(request.method(), request.uri(), prefer_wait) {
        limit += Duration::from_secs(ctx.settings().wait.max_seconds);
    }
    limit
}

/// The answer for routes that do not exist.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {}; the routes are listed at /docs/", uri.path()),
    )
}

/// The answer for a known route with an unsupported method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// Turns a panic into a 500 problem (the panic itself is logged by the hook).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(ErrorCode::Internal, "internal error; see the server log").into_response()
}
