//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::ApiContext;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::store::ResultStore;

/// Health of the process and its store.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "store": "redis", "wake_mode": "keyspace-notifications", "waiters": 0}))]
pub struct HealthBody {
    /// `live` or `ready`.
    pub status: String,
    /// `memory` or `redis`.
    pub store: String,
    /// How waits learn of changes: `in-process`, `keyspace-notifications` or `polling`.
    pub wake_mode: String,
    /// Long-polls held now.
    pub waiters: usize,
}

fn body(ctx: &ApiContext, status: &str) -> HealthBody {
    HealthBody {
        status: status.to_owned(),
        store: ctx.store().kind().to_owned(),
        wake_mode: ctx.store().wake_mode().to_owned(),
        waiters: ctx.wait_limiter().held(),
    }
}

/// Answers while the process runs, whatever the store does.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process is up", body = HealthBody)))]
pub async fn live(State(ctx): State<ApiContext>) -> Json<HealthBody> {
    Json(body(&ctx, "live"))
}

/// Answers 200 when the store answers a ping in time, else a 503 problem.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = HealthBody),
        (status = 503, description = "`store-unavailable` or `shutting-down`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(State(ctx): State<ApiContext>) -> Result<Json<HealthBody>, ApiError> {
    if ctx.shutdown_token().is_cancelled() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down").with_retry_after(1));
    }
    let limit = Duration::from_millis(ctx.settings().redis.command_timeout_ms);
    match tokio::time::timeout(limit, ctx.store().ping()).await {
        Ok(Ok(())) => Ok(Json(body(&ctx, "ready"))),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(
            ApiError::new(ErrorCode::StoreUnavailable, "the store did not answer a ping in time").with_retry_after(1),
        ),
    }
}
