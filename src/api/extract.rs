//! Extractors that turn every malformed input into our problem answers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::api::ApiContext;
use crate::domain::{AppName, ResultId};
use crate::error::{ApiError, ErrorCode};
use crate::store::codec::compact_json;
use crate::store::results::Precondition;

/// Query parameters, parsed into `T`; malformed ones are a 400 `invalid-query` problem.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("invalid query: {e}")))
    }
}

/// The path parameter of the result routes (the id); one that is not UTF-8 is a 400
/// `invalid-result-id` problem, as any other malformed id.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::new(ErrorCode::InvalidResultId, e.body_text()))
            }
            Err(e) => {
                Err(ApiError::new(ErrorCode::Internal, "the path could not be read").with_internal(e.body_text()))
            }
        }
    }
}

/// Largest `?ttl=` accepted (larger values are refused; in range they are clamped by the policy).
pub const MAX_TTL_PARAM: u64 = 10_000_000_000;

/// Deserialises `?ttl=`: whole seconds from 0 to [`MAX_TTL_PARAM`].
pub fn ttl_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = <Option<u64> as serde::Deserialize>::deserialize(d)?;
    match value {
        Some(v) if v > MAX_TTL_PARAM => Err(serde::de::Error::custom(format!(
            "ttl must be at most {MAX_TTL_PARAM} seconds"
        ))),
        other => Ok(other),
    }
}

/// Parses the `{id}` of a result path.
pub fn result_id(raw: &str) -> Result<ResultId, ApiError> {
    ResultId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidResultId, e.0))
}

/// Parses an app name, the configured default when absent.
pub fn app_name(ctx: &ApiContext, raw: Option<&str>) -> Result<AppName, ApiError> {
    match raw {
        None => Ok(ctx.default_app().clone()),
        Some(s) => AppName::parse(s).map_err(|e| ApiError::new(ErrorCode::InvalidApp, e.0)),
    }
}

/// The client's IP address, when the server knows it.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        ))
    }
}

/// Reads a body up to `limit` bytes; longer bodies are a 413 naming the limit, before reading
/// when `Content-Length` already says so.
pub async fn read_body(request: Request, limit: usize) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts.headers, collected.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::too_large(limit)),
        // hyper's body errors: broken chunked framing, a body shorter than its length.
        Err(e) => Err(ApiError::new(
            ErrorCode::MalformedRequest,
            format!("the body could not be read: {e}"),
        )),
    }
}

/// A JSON request body within the general body limit.
pub struct JsonBody(pub Bytes);

impl FromRequest<ApiContext> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, ctx: &ApiContext) -> Result<Self, Self::Rejection> {
        let limit = ctx.settings().limits.body_bytes;
        let (headers, bytes) = read_body(request, limit).await?;
        require_json_media_type(&headers, false)?;
        if headers.contains_key(CONTENT_ENCODING) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Content-Encoding is only accepted on PUT /results/{id}/value",
            ));
        }
        Ok(Self(bytes))
    }
}

impl JsonBody {
    /// Parses the body into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.0)
    }

    /// Parses a body that must be a JSON object into `T` (serde would also read a struct from
    /// an array of its fields in order).
    pub fn parse_object<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json_object(&self.0)
    }
}

/// Parses JSON that must be an object into `T`: anything else well-formed is 422 `invalid-body`.
pub fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Syntax errors still answer `invalid-json`.
        parse_json::<serde::de::IgnoredAny>(bytes)?;
        return Err(ApiError::new(ErrorCode::InvalidBody, "the body must be a JSON object"));
    }
    parse_json(bytes)
}

/// Sets the answer's `ETag`.
pub fn with_etag(mut response: axum::response::Response, etag: &str) -> axum::response::Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(etag) {
        response.headers_mut().insert(axum::http::header::ETAG, v);
    }
    response
}

/// Whether a media type is JSON (`application/json` or any `+json`).
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Refuses a body whose `Content-Type` is present and not JSON (415).
pub fn require_json_media_type(headers: &HeaderMap, allow_holder: bool) -> Result<(), ApiError> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("");
    // curl -d sends this by default; the body is parsed as JSON either way.
    let curl_default = ct.starts_with("application/x-www-form-urlencoded");
    if is_json_media_type(ct) || curl_default || (allow_holder && crate::api::values::is_holder_media_type(ct)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("expected Content-Type application/json, got {ct:?}"),
        ))
    }
}

/// Parses JSON: syntax errors (and bad UTF-8, and nesting past 128) are 400 `invalid-json`,
/// well-formed JSON of the wrong shape is 422 `invalid-body`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if nesting_depth(bytes) > MAX_JSON_DEPTH {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("invalid body: JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::InvalidBody
        } else {
            ErrorCode::InvalidJson
        };
        ApiError::new(code, format!("invalid body: {e}"))
    })
}

/// Deepest JSON nesting accepted anywhere (Python's `json.loads` must be able to read it back).
pub const MAX_JSON_DEPTH: usize = 128;

/// The deepest nesting of arrays and objects in a JSON text (strings skipped).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Reads a JSON object body as its members, each value as compact JSON text (tokens, escapes and
/// nested member order as sent). A repeated member keeps its last value, as JSON parsers do.
pub fn object_members(body: &JsonBody) -> Result<Vec<(String, Bytes)>, ApiError> {
    let object: std::collections::BTreeMap<String, Box<RawValue>> = body.parse().map_err(|e| {
        if e.code() == ErrorCode::InvalidJson {
            e
        } else {
            ApiError::new(ErrorCode::InvalidBody, "the body must be a JSON object")
        }
    })?;
    Ok(object
        .into_iter()
        .map(|(k, v)| (k, Bytes::from(compact_json(v.get()).into_owned())))
        .collect())
}

/// Reads a JSON object body as field changes (RFC 7396 at the top level): a value to set
/// (compact JSON) or, for `null`, `None` to remove the field.
pub fn object_changes(body: &JsonBody) -> Result<Vec<(String, Option<Bytes>)>, ApiError> {
    Ok(object_members(body)?
        .into_iter()
        .map(|(k, v)| if v.as_ref() == b"null" { (k, None) } else { (k, Some(v)) })
        .collect())
}

/// Reads `If-Match` / `If-None-Match: *` as a write precondition.
pub fn write_precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::InvalidHeader, "If-Match is not ASCII"))?;
        return Ok(Precondition::IfMatch(strong_etag_list(v)));
    }
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::InvalidHeader, "If-None-Match is not ASCII"))?;
        let tags = etag_list(v);
        if tags.iter().any(|t| t == "*") {
            return Ok(Precondition::IfAbsent);
        }
        return Ok(Precondition::IfNoneMatch(tags));
    }
    Ok(Precondition::None)
}

/// The entity tags of an `If-Match` / `If-None-Match` list (weak tags compare by their value).
pub fn etag_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| t.strip_prefix("W/").unwrap_or(t).to_owned())
        .collect()
}

/// The entity tags of an `If-Match` list, compared strongly (RFC 9110 §13.1.1): a weak tag
/// never matches, so it is left out.
pub fn strong_etag_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty() && !t.starts_with("W/"))
        .map(str::to_owned)
        .collect()
}

/// Whether `If-None-Match` matches the current ETag (a GET then answers 304).
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    matches_any(&if_none_match(headers), etag)
}

/// The entity tags of `If-None-Match`, owned (empty when absent).
pub fn if_none_match(headers: &HeaderMap) -> Vec<String> {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(etag_list)
        .unwrap_or_default()
}

/// Whether an entity-tag list names `etag` (or is `*`).
pub fn matches_any(tags: &[String], etag: &str) -> bool {
    tags.iter().any(|t| t == "*" || t == etag)
}

/// The response header set on an answer replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// How long an `Idempotency-Key` is remembered for a state that never expires.
pub const IDEMPOTENCY_TTL_WITHOUT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The longest `Idempotency-Key` accepted, in bytes.
const IDEMPOTENCY_KEY_MAX: usize = 255;

/// The `Idempotency-Key` header, as the hex SHA-256 of its value (so any text the client picks
/// makes a fixed-size, harmless store key).
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    use sha2::Digest;
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let visible = |b: &u8| (0x21..=0x7e).contains(b);
    if values.next().is_some() || bytes.is_empty() || bytes.len() > IDEMPOTENCY_KEY_MAX || !bytes.iter().all(visible) {
        return Err(ApiError::new(
            ErrorCode::InvalidHeader,
            format!("Idempotency-Key must be one value of 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"),
        ));
    }
    Ok(Some(hex::encode(sha2::Sha256::digest(bytes))))
}
