//! A result's metadata hash and children set.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};

use super::extract::{JsonBody, Path, Query, app_name, object_changes, result_id};
use super::results::{AppParam, not_found};
use crate::api::ApiContext;
use crate::domain::ResultId;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::policy::TtlKind;
use crate::store::results;

/// Metadata: one JSON document per key.
#[derive(Debug, Serialize)]
pub struct MetadataBody(serde_json::Map<String, serde_json::Value>);

// By hand: a derived newtype over a map documents no example.
impl utoipa::PartialSchema for MetadataBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("Metadata: one JSON document per key."))
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .examples([serde_json::json!({"priority": 5, "tags": ["a", "b"], "user": "alice"})])
            .into()
    }
}

impl ToSchema for MetadataBody {}

/// Child ids of a result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["00000000-0000-4000-8000-000000000008", "00000000-0000-4000-8000-000000000009"]}))]
pub struct ChildrenBody {
    /// Result ids.
    #[schema(value_type = Vec<crate::api::waiting::UuidString>)]
    pub ids: Vec<String>,
}

/// The metadata as an HTTP body, each cell passed through as the raw JSON it is stored as.
type MetadataJson = Json<BTreeMap<String, Box<RawValue>>>;

fn metadata_json(fields: Vec<(String, Box<RawValue>)>) -> MetadataJson {
    // Raw cells keep Python's unbounded integers exact; going through `Value` would turn
    // 2**70 into a float.
    Json(fields.into_iter().collect())
}

/// Reads a result's metadata.
#[utoipa::path(
    get, path = "/results/{id}/metadata", tag = "results",
    params(("id" = String, Path, description = "Result id", format = Uuid), AppParam),
    responses(
        (status = 200, description = "The metadata (empty when none was set)", body = MetadataBody),
        (status = 400, description = "`invalid-result-id`, `invalid-app`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_result_metadata(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<AppParam>,
) -> Result<MetadataJson, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let fields = results::metadata(ctx.store(), &app, &id)
        .await?
        .ok_or_else(|| not_found(&app, &id))?;
    Ok(metadata_json(fields))
}

/// Merges keys into a result's metadata; `null` removes a key.
#[utoipa::path(
    patch, path = "/results/{id}/metadata", tag = "results",
    params(("id" = String, Path, description = "Result id", format = Uuid), AppParam),
    request_body(content = MetadataBody, description = "Keys to set (any JSON) or remove (null)"),
    responses(
        (status = 200, description = "The metadata after the merge", body = MetadataBody),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn patch_result_metadata(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<AppParam>,
    body: JsonBody,
) -> Result<MetadataJson, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let changes = object_changes(&body)?;
    let ttl = ctx.ttl().for_write(TtlKind::Result, None);
    if !results::patch_metadata(ctx.store(), &app, &id, changes, ttl).await? {
        return Err(not_found(&app, &id));
    }
    let fields = results::metadata(ctx.store(), &app, &id)
        .await?
        .ok_or_else(|| not_found(&app, &id))?;
    Ok(metadata_json(fields))
}

/// Lists a result's child ids.
#[utoipa::path(
    get, path = "/results/{id}/children", tag = "results",
    params(("id" = String, Path, description = "Result id", format = Uuid), AppParam),
    responses(
        (status = 200, description = "Child ids, sorted", body = ChildrenBody),
        (status = 400, description = "`invalid-result-id`, `invalid-app`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_result_children(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<AppParam>,
) -> Result<Json<ChildrenBody>, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    if !results::exists(ctx.store(), &app, &id).await? {
        return Err(not_found(&app, &id));
    }
    let ids = results::children(ctx.store(), &app, &id).await?;
    Ok(Json(ChildrenBody {
        ids: ids.iter().map(ToString::to_string).collect(),
    }))
}

/// Adds children to a result and sets their `parent_id`.
#[utoipa::path(
    post, path = "/results/{id}/children", tag = "results",
    params(("id" = String, Path, description = "Result id", format = Uuid), AppParam),
    request_body(content = ChildrenBody),
    responses(
        (status = 200, description = "All child ids after the addition", body = ChildrenBody),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`: the parent does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`self-child`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: ids missing or not UUIDs", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn add_result_children(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<AppParam>,
    body: JsonBody,
) -> Result<Json<ChildrenBody>, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let input: ChildrenBody = body.parse_object()?;
    let mut ids = Vec::with_capacity(input.ids.len());
    for raw in &input.ids {
        let child = ResultId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidBody, e.0))?;
        if child == id {
            return Err(ApiError::new(ErrorCode::SelfChild, "a result cannot be its own child"));
        }
        ids.push(child);
    }
    let ttl = ctx.ttl().for_write(TtlKind::Result, None);
    if !results::add_children(ctx.store(), &app, &id, &ids, ttl).await? {
        return Err(not_found(&app, &id));
    }
    let all = results::children(ctx.store(), &app, &id).await?;
    Ok(Json(ChildrenBody {
        ids: all.iter().map(ToString::to_string).collect(),
    }))
}
