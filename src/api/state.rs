//! Per-app state: `/state/{app}/{key}` and its fields, over mognet's state hashes (§7).
//!
//! A state is the hash `{app}.mognet.state.{key}`: one field per member, each field one JSON
//! document stored as compact JSON text (`{"step":3,"of":10}`, `7`), which Python's `json.loads`
//! reads as mognet's `State.get` does. Values are kept as raw JSON, so big integers, number
//! spellings, escapes and the member order inside a value survive as sent; the fields of the
//! object itself are answered sorted by name, because Redis keeps no order a client could rely on.
//!
//! Every write sets the TTL (`ttl.state_seconds`, or `?ttl=` clamped) in the same atomic step as
//! the data, and reads set it again when `state.refresh_on_read` is on, because mognet refreshes
//! it on every `get`, `set` and `pop`. The remaining TTL is in the `x-ttl` header.
//!
//! Redis keeps no empty hash, so there is no empty state: `PUT {}` is refused (DELETE instead),
//! and a PATCH that removes the last field deletes the state.
//!
//! A wait (`?wait=N` or `Prefer: wait=N`) holds a GET until the state's ETag is none of those in
//! `If-None-Match` (without the header: until the state exists), and answers 304 at the deadline
//! when nothing changed, 404 when the state was deleted or never appeared. The probes of a wait
//! never refresh the TTL: a refresh is itself a keyspace event and would wake the wait again.
//! The read that makes the answer does.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    ClientAddr, IDEMPOTENCY_TTL_WITHOUT_EXPIRY, IDEMPOTENT_REPLAYED_HEADER, JsonBody, Query, idempotency_key,
    if_none_match, matches_any, object_changes, object_members, write_precondition,
};
use super::results::precondition_failed;
use super::wait::{Probe, WaitEnd, WaitRequest, wait_request, wait_until, watch_key};
use crate::api::ApiContext;
use crate::domain::{AppName, StateField, StateKey};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::policy::TtlKind;
use crate::store::app_state::{self, StateView, StateWrite};
use crate::store::codec::compact_json;
use crate::store::{IncrementOutcome, Once, OnceOutcome, ResultStore, keys};

/// The response header with the state's remaining TTL in seconds (absent when it never expires).
pub const TTL_HEADER: &str = "x-ttl";

/// A state object: every field with its JSON document.
#[derive(Debug)]
pub struct StateBody;

// By hand: a derived newtype over a map documents no example.
impl utoipa::PartialSchema for StateBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A state: one JSON document per field."))
            .additional_properties(Some(AdditionalProperties::<utoipa::openapi::schema::Schema>::FreeForm(
                true,
            )))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$")),
            ))
            .examples([serde_json::json!({"counter": 7, "name": "ünïcode", "progress": {"step": 3, "of": 10}})])
            .into()
    }
}

impl ToSchema for StateBody {}

/// The body of `PUT /state/{app}/{key}`: at least one field.
#[derive(Debug)]
pub struct StateInput;

impl utoipa::PartialSchema for StateInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A whole state: one JSON document per field, at least one field."))
            .min_properties(Some(1))
            .additional_properties(Some(AdditionalProperties::<utoipa::openapi::schema::Schema>::FreeForm(
                true,
            )))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$")),
            ))
            .examples([serde_json::json!({"counter": 7, "name": "ünïcode", "progress": {"step": 3, "of": 10}})])
            .into()
    }
}

impl ToSchema for StateInput {}

/// `by` as an integer, also written as an integral number such as `5.0`.
fn integral_by<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    crate::api::results::integral(d)?.ok_or_else(|| serde::de::Error::custom("by must be an integer, not null"))
}

/// Body of an increment; an empty body adds 1.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"by": 5}))]
pub struct IncrementBody {
    /// How much to add (a 64-bit signed integer; negative subtracts).
    #[serde(default = "one", deserialize_with = "integral_by")]
    #[schema(default = 1)]
    pub by: i64,
}

fn one() -> i64 {
    1
}

/// The field's value after an increment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"value": 8}))]
pub struct IncrementResult {
    /// The new value, stored as a plain JSON integer.
    pub value: i64,
}

/// Query of `GET /state/{app}/{key}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetStateParams {
    /// Hold the request up to this many seconds until the state's ETag is none of those in
    /// `If-None-Match` (clamped to `wait.max_seconds`). `Prefer: wait=N` does the same.
    #[param(minimum = 0)]
    pub wait: Option<f64>,
}

/// Query of the state writes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteStateParams {
    /// TTL in seconds for this write, clamped to `[ttl.min_seconds, ttl.max_seconds]`;
    /// `ttl.state_seconds` when absent.
    #[param(minimum = 0, maximum = 10_000_000_000_u64)]
    #[serde(default, deserialize_with = "crate::api::extract::ttl_seconds")]
    pub ttl: Option<u64>,
}

/// `/state/{app}/{key}`, validated.
pub struct StatePath {
    app: AppName,
    key: StateKey,
}

/// `/state/{app}/{key}/{field}`, validated.
pub struct FieldPath {
    app: AppName,
    key: StateKey,
    field: StateField,
}

/// The code of a path parameter's problems.
fn param_code(name: &str) -> ErrorCode {
    match name {
        "app" => ErrorCode::InvalidApp,
        "field" => ErrorCode::InvalidStateField,
        _ => ErrorCode::InvalidStateKey,
    }
}

async fn path_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<HashMap<String, String>, ApiError> {
    match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
        Ok(Path(params)) => Ok(params),
        Err(PathRejection::FailedToDeserializePathParams(e)) => {
            let code = match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => param_code(key),
                _ => ErrorCode::InvalidStateKey,
            };
            Err(ApiError::new(code, e.body_text()))
        }
        Err(e) => Err(ApiError::new(ErrorCode::Internal, "the path could not be read").with_internal(e.body_text())),
    }
}

fn param(params: &HashMap<String, String>, name: &str) -> Result<String, ApiError> {
    params
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::new(param_code(name), format!("the path has no {name}")))
}

fn parse_path(params: &HashMap<String, String>) -> Result<StatePath, ApiError> {
    let app = AppName::parse(&param(params, "app")?).map_err(|e| ApiError::new(ErrorCode::InvalidApp, e.0))?;
    let key = StateKey::parse(&param(params, "key")?).map_err(|e| ApiError::new(ErrorCode::InvalidStateKey, e.0))?;
    Ok(StatePath { app, key })
}

fn field_name(raw: &str) -> Result<StateField, ApiError> {
    StateField::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidStateField, e.0))
}

impl<S: Send + Sync> FromRequestParts<S> for StatePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        parse_path(&path_params(parts, state).await?)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for FieldPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        let StatePath { app, key } = parse_path(&params)?;
        let field = field_name(&param(&params, "field")?)?;
        Ok(Self { app, key, field })
    }
}

/// Member names of a body are field names: the same rules as in the path.
fn checked_names<T>(members: Vec<(String, T)>) -> Result<Vec<(String, T)>, ApiError> {
    for (name, _) in &members {
        StateField::parse(name)
            .map_err(|e| ApiError::new(ErrorCode::InvalidStateField, format!("member {name:?}: {}", e.0)))?;
    }
    Ok(members)
}

/// Serialises raw fields as one JSON object, each value verbatim.
struct RawObject<'a>(&'a [(String, Box<RawValue>)]);

impl Serialize for RawObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn state_not_found(app: &AppName, key: &StateKey) -> ApiError {
    ApiError::new(ErrorCode::StateNotFound, format!("no state {key} in app {app}"))
}

fn field_not_found(app: &AppName, key: &StateKey, field: &StateField) -> ApiError {
    ApiError::new(
        ErrorCode::StateFieldNotFound,
        format!("state {key} in app {app} has no field {:?}", field.as_str()),
    )
}

/// The TTL a state read sets, when reads refresh it.
fn read_refresh(ctx: &ApiContext) -> Option<Duration> {
    if ctx.settings().state.refresh_on_read {
        ctx.ttl().for_write(TtlKind::State, None)
    } else {
        None
    }
}

fn set_ttl(response: &mut Response, ttl: Option<i64>) {
    if let Some(seconds) = ttl {
        response.headers_mut().insert(TTL_HEADER, HeaderValue::from(seconds));
    }
}

fn set_etag(response: &mut Response, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Answers a state object with its ETag and TTL.
fn state_response(status: StatusCode, view: &StateView) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(&RawObject(&view.fields)).map_err(|e| {
        ApiError::new(ErrorCode::Internal, "the state could not be encoded").with_internal(e.to_string())
    })?;
    let mut response = json_response(status, body);
    set_etag(&mut response, &view.etag);
    set_ttl(&mut response, view.ttl);
    Ok(response)
}

fn ttl_seconds(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn with_preference(mut response: Response, wait: Option<WaitRequest>) -> Response {
    if let Some(w) = wait.filter(|w| w.from_prefer)
        && let Ok(v) = HeaderValue::from_str(&w.preference_applied())
    {
        response.headers_mut().insert("preference-applied", v);
    }
    response
}

/// Reads a state object, or waits for it to change.
#[utoipa::path(
    get, path = "/state/{app}/{key}", tag = "state",
    params(("app" = String, Path, description = "The mognet app, `[A-Za-z0-9_.:-]`, without `.mognet.` and not ending with `.mognet`", pattern = "^[A-Za-z0-9_.:-]{1,128}$"),
           ("key" = String, Path, description = "The state key (mognet's request id), `[A-Za-z0-9_.:-]{1,200}`, without `.mognet.` and not starting with `mognet.`", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           GetStateParams,
           ("Prefer" = Option<String>, Header, description = "`wait=N`: long-poll like `?wait=N` (RFC 7240)"),
           ("If-None-Match" = Option<String>, Header, description = "ETag list: 304 when the state still matches; with a wait, the ETags to wait away from")),
    responses(
        (status = 200, description = "Every field with its JSON document, fields sorted by name (when waiting: the changed state)", body = StateBody,
         headers(("ETag" = String, description = "Strong ETag of the stored hash"),
                 ("x-ttl" = i64, description = "Seconds until the state expires (after the refresh, when reads refresh); absent when it never does"),
                 ("Preference-Applied" = String, description = "The wait used, when `Prefer: wait` was sent"))),
        (status = 304, description = "Not modified: If-None-Match matched (when waiting: nothing changed before the deadline)",
         headers(("ETag" = String, description = "Strong ETag of the stored hash"))),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-query`, `invalid-header`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`state-not-found`: no such state, or it was deleted or expired during the wait", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: a stored field is not JSON; `internal`: the key is not a hash", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_state(
    State(ctx): State<ApiContext>,
    StatePath { app, key }: StatePath,
    Query(params): Query<GetStateParams>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wait = wait_request(&ctx, params.wait, &headers)?;
    let store = ctx.store();
    let skey = keys::state(&app, &key);
    let refresh = read_refresh(&ctx);
    let seen = if_none_match(&headers);
    // As in get_result: a held wait keeps nothing of the request.
    drop(headers);
    let view = match wait {
        None => app_state::get(store, &skey, refresh).await?,
        Some(wait) => {
            let (_slot, watches) = watch_key(&ctx, client, std::slice::from_ref(&skey))?;
            let end = wait_until(&ctx, watches, wait.duration, || async {
                Ok(match app_state::get(store, &skey, None).await? {
                    Some(v) if matches_any(&seen, &v.etag) => Probe::Pending(v),
                    Some(v) => Probe::Ready(v),
                    None => Probe::Missing,
                })
            })
            .await?;
            match end {
                WaitEnd::Missing => None,
                // The answer's read refreshes the TTL, and answers what is stored now.
                WaitEnd::Done(_) if refresh.is_some() => app_state::get(store, &skey, refresh).await?,
                WaitEnd::Done(v) => Some(v),
            }
        }
    };
    let view = view.ok_or_else(|| state_not_found(&app, &key))?;
    let response = if matches_any(&seen, &view.etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set_etag(&mut response, &view.etag);
        set_ttl(&mut response, view.ttl);
        response
    } else {
        state_response(StatusCode::OK, &view)?
    };
    Ok(with_preference(response, wait))
}

/// Creates or replaces a whole state object.
#[utoipa::path(
    put, path = "/state/{app}/{key}", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           WriteStateParams,
           ("If-Match" = Option<String>, Header, description = "Write only if the current ETag matches (412 otherwise)"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: create only; ETags: only if the current ETag is none of them (412 otherwise)")),
    request_body(content = StateInput, description = "The whole object: every member becomes a field (`null` is stored as a JSON null). At least one member: Redis keeps no empty hash, DELETE the state instead"),
    responses(
        (status = 201, description = "Created", body = StateBody, headers(("ETag" = String, description = "Strong ETag of the stored hash"), ("x-ttl" = i64, description = "Seconds until the state expires"))),
        (status = 200, description = "Replaced", body = StateBody, headers(("ETag" = String, description = "Strong ETag of the stored hash"), ("x-ttl" = i64, description = "Seconds until the state expires"))),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-state-field` (a member name), `invalid-query`, `invalid-header`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`: over `limits.body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: not a JSON object, or an empty one", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: a stored field is not JSON; `internal`: the key is not a hash; `store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn put_state(
    State(ctx): State<ApiContext>,
    StatePath { app, key }: StatePath,
    Query(params): Query<WriteStateParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    let members = checked_names(object_members(&body)?)?;
    if members.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "a state needs at least one field (Redis keeps no empty hash); DELETE the state to clear it",
        ));
    }
    let ttl = ctx.ttl().for_write(TtlKind::State, params.ttl);
    let skey = keys::state(&app, &key);
    match app_state::write(ctx.store(), &skey, members, Vec::new(), true, &precondition, ttl).await? {
        StateWrite::Created(view) => state_response(StatusCode::CREATED, &view),
        StateWrite::Updated(view) => state_response(StatusCode::OK, &view),
        StateWrite::PreconditionFailed => Err(precondition_failed(&precondition)),
    }
}

/// Merges fields into a state object (JSON merge patch); `null` removes a field.
#[utoipa::path(
    patch, path = "/state/{app}/{key}", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           WriteStateParams,
           ("If-Match" = Option<String>, Header, description = "Write only if the current ETag matches (412 otherwise)"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: create only; ETags: only if the current ETag is none of them (412 otherwise)")),
    request_body(content = StateBody, content_type = "application/merge-patch+json",
        description = "RFC 7396 at field level: each member sets its field to the member's JSON document, `null` removes the field. `application/json` is accepted too"),
    responses(
        (status = 201, description = "The state did not exist and was created; the object after", body = StateBody, headers(("ETag" = String, description = "Strong ETag of the stored hash"), ("x-ttl" = i64, description = "Seconds until the state expires"))),
        (status = 200, description = "The object after the patch; `{}` (no ETag) when the patch removed the last field, which deletes the state", body = StateBody, headers(("ETag" = String, description = "Strong ETag of the stored hash"), ("x-ttl" = i64, description = "Seconds until the state expires"))),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-state-field` (a member name), `invalid-query`, `invalid-header`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`state-not-found`: the state does not exist and the patch only removes fields", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`: over `limits.body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: a stored field is not JSON; `internal`: the key is not a hash; `store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn patch_state(
    State(ctx): State<ApiContext>,
    StatePath { app, key }: StatePath,
    Query(params): Query<WriteStateParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for (name, value) in checked_names(object_changes(&body)?)? {
        match value {
            Some(v) => set.push((name, v)),
            None => remove.push(name),
        }
    }
    let ttl = ctx.ttl().for_write(TtlKind::State, params.ttl);
    let skey = keys::state(&app, &key);
    match app_state::write(ctx.store(), &skey, set, remove, false, &precondition, ttl).await? {
        // Nothing was there and nothing is now: the patch only removed fields.
        StateWrite::Created(view) if view.fields.is_empty() => Err(state_not_found(&app, &key)),
        StateWrite::Updated(view) if view.fields.is_empty() => Ok(json_response(StatusCode::OK, "{}")),
        StateWrite::Created(view) => state_response(StatusCode::CREATED, &view),
        StateWrite::Updated(view) => state_response(StatusCode::OK, &view),
        StateWrite::PreconditionFailed => Err(precondition_failed(&precondition)),
    }
}

/// Deletes a state object (mognet's `clear`).
#[utoipa::path(
    delete, path = "/state/{app}/{key}", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid-app`, `invalid-state-key`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`state-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_state(
    State(ctx): State<ApiContext>,
    StatePath { app, key }: StatePath,
) -> Result<StatusCode, ApiError> {
    if app_state::delete(ctx.store(), &keys::state(&app, &key)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(state_not_found(&app, &key))
    }
}

/// Reads one field of a state (mognet's `State.get`).
#[utoipa::path(
    get, path = "/state/{app}/{key}/{field}", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           ("field" = String, Path, description = "The field: 1 to 256 characters of text without control characters (percent-encode it)", pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$")),
    responses(
        (status = 200, description = "The field's JSON document", body = serde_json::Value,
         headers(("x-ttl" = i64, description = "Seconds until the state expires (after the refresh, when reads refresh)")), example = json!({"step": 3, "of": 10})),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-state-field`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`state-not-found`, `state-field-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: a stored field is not JSON; `internal`: the key is not a hash", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_state_field(
    State(ctx): State<ApiContext>,
    FieldPath { app, key, field }: FieldPath,
) -> Result<Response, ApiError> {
    let view = app_state::get(ctx.store(), &keys::state(&app, &key), read_refresh(&ctx))
        .await?
        .ok_or_else(|| state_not_found(&app, &key))?;
    let (_, value) = view
        .fields
        .iter()
        .find(|(name, _)| name == field.as_str())
        .ok_or_else(|| field_not_found(&app, &key, &field))?;
    let mut response = json_response(StatusCode::OK, value.get().to_owned());
    set_ttl(&mut response, view.ttl);
    Ok(response)
}

/// Sets one field of a state to a JSON document (mognet's `State.set`).
#[utoipa::path(
    put, path = "/state/{app}/{key}/{field}", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           ("field" = String, Path, description = "The field: 1 to 256 characters of text without control characters (percent-encode it)", pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$"),
           WriteStateParams,
           ("If-Match" = Option<String>, Header, description = "Write only if the whole state's current ETag matches (412 otherwise)"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: only if the state does not exist yet; ETags: only if the state's current ETag is none of them (412 otherwise)")),
    request_body(content = serde_json::Value, description = "Any JSON document; stored as its compact text", content_type = "application/json", example = json!({"step": 3, "of": 10})),
    responses(
        (status = 200, description = "Stored (whether the field or the state was new or not); the value as stored", body = serde_json::Value,
         headers(("x-ttl" = i64, description = "Seconds until the state expires")), example = json!({"step": 3, "of": 10})),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-state-field`, `invalid-query`, `invalid-header`, `invalid-json`, `malformed-request`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`: over `limits.body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: a stored field is not JSON; `internal`: the key is not a hash; `store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn put_state_field(
    State(ctx): State<ApiContext>,
    FieldPath { app, key, field }: FieldPath,
    Query(params): Query<WriteStateParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    let raw: Box<RawValue> = body.parse()?;
    let text = compact_json(raw.get()).into_owned();
    let ttl = ctx.ttl().for_write(TtlKind::State, params.ttl);
    let set = vec![(field.as_str().to_owned(), Bytes::from(text.clone()))];
    let skey = keys::state(&app, &key);
    match app_state::write(ctx.store(), &skey, set, Vec::new(), false, &precondition, ttl).await? {
        StateWrite::Created(view) | StateWrite::Updated(view) => {
            let mut response = json_response(StatusCode::OK, text);
            set_ttl(&mut response, view.ttl);
            Ok(response)
        }
        StateWrite::PreconditionFailed => Err(precondition_failed(&precondition)),
    }
}

/// Removes one field of a state and answers its value (mognet's `State.pop`).
#[utoipa::path(
    delete, path = "/state/{app}/{key}/{field}", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           ("field" = String, Path, description = "The field: 1 to 256 characters of text without control characters (percent-encode it)", pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$")),
    responses(
        (status = 200, description = "Removed; the field's JSON document. Removing the last field deletes the state; otherwise its TTL is set again, as mognet's `pop` does", body = serde_json::Value, example = json!(7)),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-state-field`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`state-not-found`, `state-field-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: the field is not JSON; `internal`: the key is not a hash; `store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_state_field(
    State(ctx): State<ApiContext>,
    FieldPath { app, key, field }: FieldPath,
) -> Result<Response, ApiError> {
    let skey = keys::state(&app, &key);
    let ttl = ctx.ttl().for_write(TtlKind::State, None);
    match app_state::pop(ctx.store(), &skey, field.as_str(), ttl).await? {
        Some(value) => Ok(json_response(StatusCode::OK, value.get().to_owned())),
        // Only which 404 depends on this second look.
        None => match app_state::get(ctx.store(), &skey, None).await? {
            Some(_) => Err(field_not_found(&app, &key, &field)),
            None => Err(state_not_found(&app, &key)),
        },
    }
}

/// What an increment refused, named after the stored JSON value.
fn not_incrementable(field: &StateField, stored: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(stored);
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && text.parse::<i64>().is_err() {
        return ApiError::new(
            ErrorCode::IncrementOverflow,
            format!("field {:?} holds an integer outside the 64-bit range", field.as_str()),
        );
    }
    let kind = match text {
        // Python's json.dumps writes these for float('nan') and the infinities.
        "NaN" | "Infinity" | "-Infinity" => "float",
        _ => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::String(_)) => "string",
            Ok(serde_json::Value::Number(n)) if n.is_f64() => "float",
            Ok(serde_json::Value::Number(_)) => "integer in a form Redis cannot add to",
            Ok(serde_json::Value::Bool(_)) => "bool",
            Ok(serde_json::Value::Null) => "null",
            Ok(serde_json::Value::Object(_)) => "object",
            Ok(serde_json::Value::Array(_)) => "array",
            Err(_) => "value that is not JSON",
        },
    };
    ApiError::new(
        ErrorCode::StateNotInteger,
        format!("field {:?} holds a JSON {kind}, not an integer", field.as_str()),
    )
}

/// Adds to an integer field atomically; a missing field (or state) counts as 0.
///
/// With an `Idempotency-Key` header the increment is applied at most once per key and state:
/// the key is remembered with the new value in the same atomic step, for the state's TTL
/// (24 hours when the state never expires), and a retry with the same key, field and amount
/// answers the first answer's value (with `idempotent-replayed: true`) without adding again.
/// Retry a 503 or a lost answer with the same key; a new increment needs a new key.
#[utoipa::path(
    post, path = "/state/{app}/{key}/{field}/increment", tag = "state",
    params(("app" = String, Path, description = "The mognet app", pattern = "^[A-Za-z0-9_.:-]{1,128}$"), ("key" = String, Path, description = "The state key", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
           ("field" = String, Path, description = "The field: 1 to 256 characters of text without control characters (percent-encode it)", pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$"),
           WriteStateParams,
           ("Idempotency-Key" = Option<String>, Header, description = "Apply the increment at most once for this key (1 to 255 visible ASCII characters): a retry with the same key, field and amount answers the first answer's value without adding again. Remembered for the state's TTL (24 hours when it never expires)", pattern = "^[!-~]{1,255}$", min_length = 1, max_length = 255)),
    request_body(content = Option<IncrementBody>, description = "`{\"by\": n}`; an empty body adds 1", example = json!({"by": 5})),
    responses(
        (status = 200, description = "The new value; the field stays a plain JSON integer", body = IncrementResult,
         headers(("x-ttl" = i64, description = "Seconds until the state expires"),
                 ("idempotent-replayed" = String, description = "`true` when the answer is the remembered answer of an earlier request with the same `Idempotency-Key`; nothing was added"))),
        (status = 400, description = "`invalid-app`, `invalid-state-key`, `invalid-state-field`, `invalid-query`, `invalid-json`, `malformed-request`, `invalid-header` (a bad `Idempotency-Key`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`state-not-integer` (the detail names the stored JSON type: string, float, object, array, bool, null), `increment-overflow`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: not `{\"by\": <64-bit integer>}`; `idempotency-key-reused`: the `Idempotency-Key` was used for another field or amount of this state", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal`: the key is not a hash; `store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the increment may or may not have been applied: retry with the same `Idempotency-Key` to have it applied once; `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn increment_state_field(
    State(ctx): State<ApiContext>,
    FieldPath { app, key, field }: FieldPath,
    Query(params): Query<WriteStateParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let by = if body.0.iter().all(u8::is_ascii_whitespace) || body.0.trim_ascii() == b"null" {
        1
    } else {
        let shape = |detail: String| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("the body must be {{\"by\": <64-bit integer>}}: {detail}"),
            )
        };
        let raw: Box<RawValue> = body.parse()?;
        // serde would also read a struct from an array (`[5]`): only an object is the shape.
        if !raw.get().starts_with('{') {
            return Err(shape(format!("got {}", raw.get())));
        }
        serde_json::from_str::<IncrementBody>(raw.get())
            .map_err(|e| shape(e.to_string()))?
            .by
    };
    let ttl = ctx.ttl().for_write(TtlKind::State, params.ttl);
    let skey = keys::state(&app, &key);
    let answer = |value: i64| {
        let mut response = axum::Json(IncrementResult { value }).into_response();
        set_ttl(&mut response, ttl_seconds(ttl));
        response
    };
    let outcome = match idempotency_key {
        None => app_state::increment(ctx.store(), &skey, field.as_str(), by, ttl).await?,
        Some(client_key) => {
            let once = Once {
                key: keys::idempotency(&app, &skey, &client_key),
                fingerprint: format!("increment\n{}\n{by}", field.as_str()),
                ttl: ttl.unwrap_or(IDEMPOTENCY_TTL_WITHOUT_EXPIRY),
            };
            match ctx
                .store()
                .increment_once(&skey, field.as_str(), by, ttl, &once)
                .await?
            {
                OnceOutcome::Ran(outcome) => outcome,
                OnceOutcome::Replayed(value) => {
                    let mut response = answer(value);
                    response
                        .headers_mut()
                        .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
                    return Ok(response);
                }
                OnceOutcome::Reused => {
                    return Err(ApiError::new(
                        ErrorCode::IdempotencyKeyReused,
                        "this Idempotency-Key was used for a different increment of this state \
                         (another field or amount); use a new key for a new request",
                    ));
                }
            }
        }
    };
    match outcome {
        IncrementOutcome::Value(value) => Ok(answer(value)),
        IncrementOutcome::NotInteger(stored) => Err(not_incrementable(&field, &stored)),
        IncrementOutcome::Overflow => Err(ApiError::new(
            ErrorCode::IncrementOverflow,
            format!(
                "adding {by} to field {:?} would overflow a 64-bit integer",
                field.as_str()
            ),
        )),
    }
}
