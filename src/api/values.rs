//! Result values: `GET`/`PUT /results/{id}/value`, gzip passed through both ways.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    ClientAddr, Path, Query, app_name, parse_json, parse_json_object, read_body, require_json_media_type, result_id,
    write_precondition,
};
use super::results::{ResultBody, illegal, not_found, precondition_failed, record_response};
use super::wait::{Probe, WaitEnd, wait_request, wait_until, watch_key};
use crate::api::ApiContext;
use crate::api::extract::{IDEMPOTENCY_TTL_WITHOUT_EXPIRY, IDEMPOTENT_REPLAYED_HEADER, idempotency_key};
use crate::domain::value::{ALLOWED_VALUE_TYPES, EXCEPTION_INFO_TYPE};
use crate::domain::{ResultState, ValueHolder};
use crate::error::{ApiError, ErrorCode, Problem};
use crate::policy::{InflateError, TtlKind};
use crate::store::codec::{encode_value, to_micros};
use crate::store::results::{self, StoreValueOutcome, ValueRead};
use crate::store::{Once, keys};

/// The media type of a full value holder upload.
pub const HOLDER_MEDIA_TYPE: &str = "application/vnd.mognet.value+json";

/// Whether a `Content-Type` names the holder media type (compared without case or parameters).
pub fn is_holder_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(HOLDER_MEDIA_TYPE)
}

/// mognet's value holder: the Python type and the value as JSON.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"value_type": "builtins:dict", "raw_value": {"total": 42.5}}))]
#[allow(dead_code)]
pub struct ValueHolderBody {
    /// `module:Class` of the value. Uploads accept `builtins:NoneType|bool|int|float|str|list|dict`
    /// and `mognet.model.result:_ExceptionInfo`.
    value_type: String,
    /// The value as JSON (any JSON; for exceptions `{"name","message","traceback",…}`).
    raw_value: serde_json::Value,
}

/// A value holder as a client may upload it: one of the plain `builtins:` types with a matching
/// value (or null), or an exception record.
#[derive(Debug)]
pub struct ValueHolderUpload;

impl utoipa::PartialSchema for ValueHolderUpload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
        use utoipa::openapi::{Ref, RefOr, schema::Schema};
        let holder = |value_type: &str, raw: RefOr<Schema>| {
            ObjectBuilder::new()
                .property(
                    "value_type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([value_type])),
                )
                .required("value_type")
                .property("raw_value", raw)
                .required("raw_value")
                .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::<
                    utoipa::openapi::schema::Schema,
                >::FreeForm(false)))
        };
        let of = |t: Type| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([t, Type::Null]))
                .into()
        };
        // Arrays and objects as `anyOf` with null (not a type list): generators read them then.
        let or_null = |schema: RefOr<Schema>| {
            AnyOfBuilder::new()
                .item(schema)
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .into()
        };
        let list = or_null(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue))
                .into(),
        );
        let dict = or_null(Ref::from_schema_name("JsonObject").into());
        OneOfBuilder::new()
            .item(holder("builtins:NoneType", ObjectBuilder::new().schema_type(Type::Null).into()))
            .item(holder("builtins:bool", of(Type::Boolean)))
            .item(holder("builtins:int", of(Type::Integer)))
            .item(holder("builtins:float", of(Type::Number)))
            .item(holder("builtins:str", of(Type::String)))
            .item(holder("builtins:list", list))
            .item(holder("builtins:dict", dict))
            .item(holder(EXCEPTION_INFO_TYPE, Ref::from_schema_name("ExceptionInfoUpload").into()))
            .description(Some("A holder upload (`application/vnd.mognet.value+json`)"))
            .examples([serde_json::json!({"value_type": "mognet.model.result:_ExceptionInfo",
                "raw_value": {"name": "builtins:ValueError", "message": "printer is out of paper", "traceback": "Traceback (most recent call last): …"}})])
            .into()
    }
}

impl ToSchema for ValueHolderUpload {}

/// Any JSON object (the value of a `builtins:dict` holder).
#[derive(Debug)]
pub struct JsonObject;

impl utoipa::PartialSchema for JsonObject {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::<utoipa::openapi::schema::Schema>::FreeForm(
                true,
            )))
            .description(Some("Any JSON object"))
            .into()
    }
}

impl ToSchema for JsonObject {}

/// The exception record of a `mognet.model.result:_ExceptionInfo` holder upload.
#[derive(Debug)]
pub struct ExceptionInfoUpload;

impl utoipa::PartialSchema for ExceptionInfoUpload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("name", text())
            .required("name")
            .property("message", text())
            .required("message")
            .property("traceback", text())
            .required("traceback")
            .description(Some(
                "`raw_data` and `raw_data_encoding` may be given and are always dropped",
            ))
            .into()
    }
}

impl ToSchema for ExceptionInfoUpload {}

/// The ready states a value upload may complete a result with.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReadyState {
    /// Finished with a value.
    Success,
    /// Finished with an exception.
    Failure,
    /// Cancelled.
    Revoked,
    /// Could not run.
    Invalid,
}

impl From<ReadyState> for ResultState {
    fn from(s: ReadyState) -> Self {
        match s {
            ReadyState::Success => Self::Success,
            ReadyState::Failure => Self::Failure,
            ReadyState::Revoked => Self::Revoked,
            ReadyState::Invalid => Self::Invalid,
        }
    }
}

/// Whether a holder's value can be read back as its `builtins:` type (`null` always can).
fn value_fits_type(value_type: &str, raw: &RawValue) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
        return false;
    };
    use serde_json::Value as J;
    match (value_type, &value) {
        (_, J::Null) => true,
        ("builtins:NoneType", _) => false,
        ("builtins:bool", J::Bool(_)) | ("builtins:str", J::String(_)) | ("builtins:list", J::Array(_)) => true,
        ("builtins:dict", J::Object(_)) | ("builtins:float", J::Number(_)) => true,
        ("builtins:int", J::Number(n)) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// The content codings a value upload may carry.
#[derive(Debug, ToSchema)]
#[allow(dead_code, non_camel_case_types)]
pub enum ContentCoding {
    /// gzip, inflated and checked.
    gzip,
    /// The legacy name of gzip.
    #[schema(rename = "x-gzip")]
    x_gzip,
    /// No coding.
    identity,
}

/// Query of `GET /results/{id}/value`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetValueParams {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// Hold the request up to this many seconds until the result is done.
    #[param(minimum = 0)]
    pub wait: Option<f64>,
}

/// Query of `PUT /results/{id}/value`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutValueParams {
    /// The mognet app (key prefix; no `.mognet.` inside, not ending with `.mognet`); the configured `default_app` when absent.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,128}$", min_length = 1, max_length = 128)]
    pub app: Option<String>,
    /// Complete the result in the same atomic step: SUCCESS, FAILURE, REVOKED or INVALID.
    pub state: Option<ReadyState>,
    /// TTL in seconds of the record (the value's TTL is never longer).
    #[param(minimum = 0, maximum = 10_000_000_000_u64)]
    #[serde(default, deserialize_with = "crate::api::extract::ttl_seconds")]
    pub ttl: Option<u64>,
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) with a
/// non-zero weight, or, when gzip is not named, `*` with a non-zero weight.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let weight = it
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
            let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if coding == "*" {
                &mut any
            } else {
                continue;
            };
            // The most favourable weight given wins when a coding is named twice.
            *slot = Some(slot.map_or(weight, |w: f32| w.max(weight)));
        }
    }
    gzip.or(any).is_some_and(|w| w > 0.0)
}

/// Reads a result's value holder, or waits for the result to be done first.
#[utoipa::path(
    get, path = "/results/{id}/value", tag = "values",
    params(("id" = String, Path, description = "Result id (a hyphenated UUID, any case)", format = Uuid), GetValueParams,
           ("Prefer" = Option<String>, Header, description = "`wait=N`: long-poll like `?wait=N`"),
           ("Accept-Encoding" = Option<String>, Header, description = "With `gzip`, a gzip-stored value goes out as stored")),
    responses(
        (status = 200, description = "The value holder (with `Content-Encoding: gzip` when stored so and accepted)", body = ValueHolderBody),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-query`, `invalid-header`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`result-not-ready`: the result is not done (or the wait ran out)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`value-expired`: done, but the value is gone", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too-many-waiters`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`corrupt-data`: the stored value cannot be read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`, `waiters-exhausted`, `shutting-down`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_result_value(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<GetValueParams>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let wait = wait_request(&ctx, params.wait, &headers)?;
    let store = ctx.store();
    let gzip_accepted = accepts_gzip(&headers);
    let read = match wait {
        None => results::get_value_cached(store, &app, &id).await?,
        Some(wait) => {
            // As in get_result: the held wait keeps nothing of the request.
            drop(headers);
            let (_slot, watches) = watch_key(&ctx, client, &[keys::result(&app, &id)])?;
            let end = wait_until(&ctx, watches, wait.duration, || async {
                Ok(match results::get_value(store, &app, &id).await? {
                    ValueRead::NotFound => Probe::Missing,
                    r @ ValueRead::NotReady(_) => Probe::Pending(r),
                    r => Probe::Ready(r),
                })
            })
            .await?;
            match end {
                WaitEnd::Done(r) => r,
                WaitEnd::Missing => ValueRead::NotFound,
            }
        }
    };
    let (view, stored) = match read {
        ValueRead::NotFound => return Err(not_found(&app, &id)),
        ValueRead::NotReady(v) => {
            return Err(ApiError::new(
                ErrorCode::ResultNotReady,
                format!("result {id} is {}; its value is not there yet", v.record.state),
            )
            .with_current_state(v.record.state.as_str()));
        }
        ValueRead::Expired(v) => {
            return Err(ApiError::new(
                ErrorCode::ValueExpired,
                format!(
                    "result {id} is {} but its value expired or was never stored",
                    v.record.state
                ),
            ));
        }
        ValueRead::Value(view, stored) => (view, stored),
    };
    let (body, gzip) = if stored.gzip && gzip_accepted {
        (stored.contents.clone(), true)
    } else if stored.gzip {
        let plain = ctx
            .compression()
            .inflate_stored(stored.contents.clone())
            .await
            .map_err(|e| match e {
                InflateError::Interrupted(_) => ApiError::new(ErrorCode::Internal, "the value could not be inflated")
                    .with_internal(format!("{}: {e}", keys::value(&app, &id))),
                _ => ApiError::new(ErrorCode::CorruptData, "the stored value cannot be inflated")
                    .with_internal(format!("{}: {e}", keys::value(&app, &id))),
            })?;
        (Bytes::from(plain), false)
    } else {
        (stored.contents.clone(), false)
    };
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(w) = wait.filter(|w| w.from_prefer)
        && let Ok(v) = HeaderValue::from_str(&w.preference_applied())
    {
        h.insert("preference-applied", v);
    }
    if let Ok(v) = HeaderValue::from_str(&view.etag) {
        h.insert("x-result-etag", v);
    }
    Ok(response)
}

/// Checks an uploaded holder: allowed types only, and exception records lose any pickle.
fn checked_holder(raw: &[u8]) -> Result<String, ApiError> {
    let holder: ValueHolder = parse_json_object(raw)?;
    if !ALLOWED_VALUE_TYPES.contains(&holder.value_type.as_str()) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "value_type {:?} is not accepted; use one of {}",
                holder.value_type,
                ALLOWED_VALUE_TYPES.join(", ")
            ),
        ));
    }
    if holder.value_type != EXCEPTION_INFO_TYPE {
        if !value_fits_type(&holder.value_type, &holder.raw_value) {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                format!(
                    "raw_value is not a {}: Python could not read it back",
                    holder.value_type
                ),
            ));
        }
        return Ok(holder.to_json());
    }
    #[derive(Deserialize)]
    struct ExceptionInfo {
        name: String,
        message: String,
        traceback: String,
    }
    let info: ExceptionInfo = serde_json::from_str(holder.raw_value.get()).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("an exception value needs string name, message and traceback: {e}"),
        )
    })?;
    let raw_value = serde_json::json!({
        "name": info.name, "message": info.message, "traceback": info.traceback,
        "raw_data": null, "raw_data_encoding": null,
    });
    Ok(format!(
        "{{\"value_type\":\"{EXCEPTION_INFO_TYPE}\",\"raw_value\":{raw_value}}}"
    ))
}

/// Stores a result's value and, with `?state=`, completes the result in the same step.
#[utoipa::path(
    put, path = "/results/{id}/value", tag = "values",
    params(("id" = String, Path, description = "Result id (a hyphenated UUID, any case)", format = Uuid), PutValueParams,
           ("If-Match" = Option<String>, Header, description = "Write only if the record's current ETag matches"),
           ("Content-Encoding" = Option<ContentCoding>, Header, description = "`gzip` (or `x-gzip`) uploads are inflated (bounded by `compression.max_inflated_bytes`) and checked"),
           ("Idempotency-Key" = Option<String>, Header, description = "Write at most once for this key (1 to 255 visible ASCII characters): a retry with the same key, value and state answers the record as it is now, without writing again (so also without a 412 from an `If-Match` the first write made stale). Remembered for the result's TTL (24 hours when it never expires)", pattern = "^[!-~]{1,255}$", min_length = 1, max_length = 255)),
    request_body(description = "Any JSON (stored as the matching `builtins:` type), or with `Content-Type: application/vnd.mognet.value+json` a full holder",
        content(
            (serde_json::Value = "application/json", example = json!({"total": 42.5, "lines": [{"sku": "BOLT-M8", "qty": 500}]})),
            (ValueHolderUpload = "application/vnd.mognet.value+json"),
        )),
    responses(
        (status = 200, description = "Stored; the record as it is now", body = ResultBody, headers(("ETag" = String, description = "Strong ETag of the record"),
            ("idempotent-replayed" = String, description = "`true` when an earlier request with the same `Idempotency-Key` made the write; nothing was written now"))),
        (status = 400, description = "`invalid-result-id`, `invalid-app`, `invalid-query`, `invalid-json` (also bad gzip), `malformed-request`, `invalid-header` (a bad `Idempotency-Key`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`result-not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`illegal-transition`: the result is already in another ready state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload-too-large`: over `limits.value_body_bytes` as sent, or over `compression.max_inflated_bytes` (after inflating a gzip upload)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal`: the value could not be compressed or inflated (the server is stopping)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: a holder of a refused type or shape; `idempotency-key-reused`: the `Idempotency-Key` was used for another value or state of this result", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store-permission-denied`: Redis's ACL refuses a command to resultd's user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store-unavailable`: Redis did not answer in time, so the write may or may not have been applied: retry with the same `Idempotency-Key`, or just repeat it (see docs/operations.md); `store-read-only`: the store accepts no writes (a replica), nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "`store-full`: Redis is at `maxmemory` (with `noeviction`) and refused the write before any effect; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn put_result_value(
    State(ctx): State<ApiContext>,
    Path(raw_id): Path<String>,
    Query(params): Query<PutValueParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = result_id(&raw_id)?;
    let app = app_name(&ctx, params.app.as_deref())?;
    let state = params.state.map(ResultState::from);
    let limit = ctx.settings().limits.value_body_bytes;
    let (headers, body) = read_body(request, limit).await?;
    let precondition = write_precondition(&headers)?;
    let idempotency_key = idempotency_key(&headers)?;
    require_json_media_type(&headers, true)?;
    let body = match headers.get(CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None => body,
        Some(b"gzip" | b"x-gzip") => Bytes::from(ctx.compression().inflate(body).await.map_err(|e| match e {
            InflateError::TooLarge { limit } => ApiError::too_large(limit),
            InflateError::Invalid(_) => {
                ApiError::new(ErrorCode::InvalidJson, "the gzip body is not a valid gzip stream")
            }
            InflateError::Interrupted(_) => {
                ApiError::new(ErrorCode::Internal, "the gzip body could not be inflated").with_internal(e.to_string())
            }
        })?),
        Some(b"identity") => body,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Encoding {:?} is not accepted; use gzip",
                    String::from_utf8_lossy(other)
                ),
            ));
        }
    };
    let is_holder = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_holder_media_type);
    let holder_json = if is_holder {
        checked_holder(&body)?
    } else {
        let raw: Box<RawValue> = parse_json(&body)?;
        ValueHolder::from_json(raw).to_json()
    };
    // The request as stored: the state it completes with and the holder, whatever the upload's
    // encoding or media type.
    let once = idempotency_key.map(|client_key| {
        use sha2::Digest;
        let holder = hex::encode(sha2::Sha256::digest(holder_json.as_bytes()));
        let key = keys::result(&app, &id);
        Once {
            key: keys::idempotency(&app, &key, &client_key),
            fingerprint: format!("value\n{}\n{holder}", state.map_or("", |s| s.as_str())),
            ttl: ctx
                .ttl()
                .for_write(TtlKind::Result, params.ttl)
                .unwrap_or(IDEMPOTENCY_TTL_WITHOUT_EXPIRY),
        }
    });
    let compression = ctx.compression();
    // Every accepted value must read back: a plain upload is held to the same cap as an
    // inflated one, and the holder to the cap stored values are inflated under.
    if body.len() > compression.max_inflated_bytes() || holder_json.len() > compression.max_stored_bytes() {
        return Err(ApiError::too_large(compression.max_inflated_bytes()));
    }
    let (contents, gzip) = if compression.should_compress(holder_json.len()) {
        let gz = compression.compress(Bytes::from(holder_json)).await.map_err(|e| {
            ApiError::new(ErrorCode::Internal, "the value could not be compressed").with_internal(e.to_string())
        })?;
        (Bytes::from(gz), true)
    } else {
        (Bytes::from(holder_json), false)
    };
    let result_ttl = ctx.ttl().for_write(TtlKind::Result, params.ttl);
    let value_ttl = ctx.ttl().value_for_result(params.ttl);
    let now = to_micros(Utc::now());
    let outcome = results::store_value(
        ctx.store(),
        &app,
        &id,
        encode_value(contents, gzip),
        state,
        &precondition,
        result_ttl,
        value_ttl,
        now,
        once.as_ref(),
    )
    .await?;
    match outcome {
        StoreValueOutcome::Stored(view) => Ok(record_response(StatusCode::OK, &app, &view).into_response()),
        StoreValueOutcome::Replayed(view) => {
            let mut response = record_response(StatusCode::OK, &app, &view).into_response();
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
            Ok(response)
        }
        StoreValueOutcome::KeyReused => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different value or state of this result; use a new key for a new request",
        )),
        StoreValueOutcome::NotFound => Err(not_found(&app, &id)),
        StoreValueOutcome::Illegal(e) => Err(illegal(&e)),
        StoreValueOutcome::PreconditionFailed => Err(precondition_failed(&precondition)),
    }
}
