//! `GET /metrics`: the Prometheus text exposition of the process's metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ApiContext;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::store::ResultStore;

/// The Prometheus text format media type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics: requests, latencies, store calls, waiters, notifications.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    description = "Prometheus text format (version 0.0.4). Request metrics are labelled with the route template (`/results/{id}`), never the raw path. Open like `/health/*` unless `auth.protect_operations` is set.",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4",
         example = json!("# TYPE resultd_waiters gauge\nresultd_waiters 0\n")),
        (status = 500, description = "`internal`: no metrics recorder could be installed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(State(ctx): State<ApiContext>) -> Result<Response, ApiError> {
    let Some(handle) = ctx.metrics() else {
        return Err(ApiError::new(
            ErrorCode::Internal,
            "no metrics recorder is installed in this process",
        ));
    };
    crate::telemetry::record_gauges(ctx.wait_limiter().held(), ctx.store().changes().waiters());
    crate::telemetry::record_channels(ctx.store().subscribed_channels());
    if let Some(tracking) = ctx.store().tracking() {
        crate::telemetry::record_cache(&tracking.cache().stats());
    }
    let mut response = (StatusCode::OK, handle.render()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    Ok(response)
}
