//! Every error as an RFC 9457 problem: a stable `code`, a status, and the request id.
//!
//! Handlers return [`ApiError`]; nothing else writes error bodies. Internal detail (a Redis
//! message, a corrupt field) goes to the log line of the request, never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:ident, $title:literal),)*) => {
        /// The stable machine-readable error codes; part of the API contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as sent in problem bodies.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status of the code.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// A short human-readable summary.
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }
        }
    };
}

error_codes! {
    InvalidResultId = ("invalid-result-id", BAD_REQUEST, "The result id is not a UUID"),
    InvalidTaskId = ("invalid-task-id", BAD_REQUEST, "The Celery task or group id is not valid"),
    InvalidApp = ("invalid-app", BAD_REQUEST, "The app name is not valid"),
    InvalidStateKey = ("invalid-state-key", BAD_REQUEST, "The state key is not valid"),
    InvalidStateField = ("invalid-state-field", BAD_REQUEST, "The state field name is not valid"),
    InvalidQuery = ("invalid-query", BAD_REQUEST, "A query parameter is not valid"),
    InvalidHeader = ("invalid-header", BAD_REQUEST, "A request header is not valid"),
    InvalidJson = ("invalid-json", BAD_REQUEST, "The body is not valid JSON"),
    MalformedRequest = ("malformed-request", BAD_REQUEST, "The request's framing is broken"),
    UriTooLong = ("uri-too-long", URI_TOO_LONG, "The request target is too long"),
    HeadersTooLarge = ("headers-too-large", REQUEST_HEADER_FIELDS_TOO_LARGE, "The request head is too large"),
    InvalidBody = ("invalid-body", UNPROCESSABLE_ENTITY, "The body does not have the expected shape"),
    InvalidCursor = ("invalid-cursor", BAD_REQUEST, "The listing cursor is not valid"),
    UnsupportedMediaType = ("unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "The body's media type or encoding is not accepted"),
    PayloadTooLarge = ("payload-too-large", PAYLOAD_TOO_LARGE, "The body is larger than the limit"),
    Unauthorized = ("unauthorized", UNAUTHORIZED, "A valid bearer token is required"),
    Forbidden = ("forbidden", FORBIDDEN, "The token may not do this"),
    NotFound = ("not-found", NOT_FOUND, "No such route"),
    MethodNotAllowed = ("method-not-allowed", METHOD_NOT_ALLOWED, "The route does not accept this method"),
    ResultNotFound = ("result-not-found", NOT_FOUND, "No result with this id"),
    GroupNotFound = ("group-not-found", NOT_FOUND, "No saved group with this id"),
    LayoutDisabled = ("layout-disabled", NOT_FOUND, "This layout is not enabled on this server"),
    UndecodableRecord = ("undecodable-record", UNPROCESSABLE_ENTITY, "The stored record cannot be decoded"),
    ResultNotReady = ("result-not-ready", CONFLICT, "The result is not done yet"),
    ValueExpired = ("value-expired", GONE, "The result is done but its value is gone"),
    IllegalTransition = ("illegal-transition", CONFLICT, "The result is in a ready state, which is final"),
    SelfChild = ("self-child", CONFLICT, "A result cannot be its own child"),
    PreconditionFailed = ("precondition-failed", PRECONDITION_FAILED, "The resource does not match the precondition"),
    StateNotFound = ("state-not-found", NOT_FOUND, "No state with this key"),
    StateFieldNotFound = ("state-field-not-found", NOT_FOUND, "No such field in this state"),
    StateNotInteger = ("state-not-integer", CONFLICT, "The stored field is not an integer"),
    IdempotencyKeyReused = ("idempotency-key-reused", UNPROCESSABLE_ENTITY, "The Idempotency-Key was used for a different request"),
    IncrementOverflow = ("increment-overflow", CONFLICT, "The increment would overflow a 64-bit integer"),
    RequestTimeout = ("request-timeout", REQUEST_TIMEOUT, "The request took longer than the limit"),
    TooManyWaiters = ("too-many-waiters", TOO_MANY_REQUESTS, "This client holds too many waits"),
    WaitersExhausted = ("waiters-exhausted", SERVICE_UNAVAILABLE, "The server holds as many waits as it may"),
    StoreUnavailable = ("store-unavailable", SERVICE_UNAVAILABLE, "The store did not answer in time"),
    StoreFull = ("store-full", INSUFFICIENT_STORAGE, "The store is full; nothing was written"),
    StoreReadOnly = ("store-read-only", SERVICE_UNAVAILABLE, "The store accepts no writes right now; nothing was written"),
    StorePermissionDenied = ("store-permission-denied", INTERNAL_SERVER_ERROR, "The store refused a command to resultd's user"),
    ShuttingDown = ("shutting-down", SERVICE_UNAVAILABLE, "The server is shutting down"),
    CorruptData = ("corrupt-data", INTERNAL_SERVER_ERROR, "Stored data cannot be read"),
    Internal = ("internal", INTERNAL_SERVER_ERROR, "Internal error"),
}

/// `Retry-After` of `store-full`: memory is freed by expiring keys or an operator, not in a
/// second.
pub const STORE_FULL_RETRY_AFTER_SECS: u64 = 5;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:resultd:problem:result-not-found",
    "title": "No result with this id",
    "status": 404,
    "detail": "no result 3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10 in app billing",
    "code": "result-not-found",
    "request_id": "5d1c0e7a-17"
}))]
pub struct Problem {
    /// `urn:resultd:problem:{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The stable error code.
    pub code: String,
    /// The id of the request, as in the `x-request-id` header.
    pub request_id: Option<String>,
    /// The current state, for `illegal-transition` and `result-not-ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// The limit in bytes, for `payload-too-large`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    current_state: Option<String>,
    limit: Option<u64>,
    retry_after: Option<u64>,
    internal: Option<String>,
}

impl ApiError {
    /// An error with a code and a detail for the client.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            current_state: None,
            limit: None,
            retry_after: None,
            internal: None,
        }
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Adds the current state (for `illegal-transition`).
    #[must_use]
    pub fn with_current_state(mut self, state: impl Into<String>) -> Self {
        self.current_state = Some(state.into());
        self
    }

    /// Adds a byte limit (for `payload-too-large`).
    #[must_use]
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Adds a `Retry-After` header, in seconds.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds detail for the log only.
    #[must_use]
    pub fn with_internal(mut self, internal: impl Into<String>) -> Self {
        self.internal = Some(internal.into());
        self
    }

    /// A 413 naming the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        )
        .with_limit(limit as u64)
    }

    /// The problem document of this error, for the request `request_id`.
    pub fn problem(&self, request_id: Option<&str>) -> Problem {
        Problem {
            type_: format!("urn:resultd:problem:{}", self.code.as_str()),
            title: self.code.title().to_owned(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
            request_id: request_id.map(str::to_owned),
            current_state: self.current_state.clone(),
            limit: self.limit,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::new(
                ErrorCode::StoreUnavailable,
                "the store did not answer in time; retry later",
            )
            .with_retry_after(1)
            .with_internal(e.to_string()),
            StoreError::Full(_) => Self::new(
                ErrorCode::StoreFull,
                "the store is out of memory and refused the write before any effect; retry later",
            )
            .with_retry_after(STORE_FULL_RETRY_AFTER_SECS)
            .with_internal(e.to_string()),
            StoreError::ReadOnly(_) => Self::new(
                ErrorCode::StoreReadOnly,
                "the store accepts no writes right now (a failover?) and nothing was written; retry later",
            )
            .with_retry_after(1)
            .with_internal(e.to_string()),
            StoreError::Denied(_) => Self::new(
                ErrorCode::StorePermissionDenied,
                "the store refused a command to resultd's user; see the server log",
            )
            .with_internal(e.to_string()),
            StoreError::Corrupt { .. } => {
                Self::new(ErrorCode::CorruptData, "stored data cannot be read; see the server log")
                    .with_internal(e.to_string())
            }
            StoreError::Contended(_) => Self::new(
                ErrorCode::StoreUnavailable,
                "too many concurrent updates of this resource; retry",
            )
            .with_retry_after(1)
            .with_internal(e.to_string()),
            StoreError::Backend(_) => {
                Self::new(ErrorCode::Internal, "the store answered with an error").with_internal(e.to_string())
            }
        }
    }
}

/// What an error answer leaves for the request frame, which knows the request: the problem (its
/// body is written again with the request id) and the detail meant for the log only.
#[derive(Clone, Debug)]
pub struct LoggedError {
    /// The problem as answered, without a request id.
    pub problem: Problem,
    /// Internal detail for the log line, never sent.
    pub internal: Option<String>,
}

impl LoggedError {
    /// The stable code of the answer.
    pub fn code(&self) -> &str {
        &self.problem.code
    }

    /// The problem body with the request id in it.
    pub fn body_for(&self, request_id: &str) -> Vec<u8> {
        let mut problem = self.problem.clone();
        problem.request_id = Some(request_id.to_owned());
        serde_json::to_vec(&problem).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let problem = self.problem(None);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(LoggedError {
            problem,
            internal: self.internal,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{}", code.as_str());
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn store_outages_are_503_with_retry_after() {
        let r = ApiError::from(StoreError::Unavailable("timeout".into())).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn a_full_store_is_507_store_full_with_retry_after() {
        let e = ApiError::from(StoreError::Full("OOM command not allowed".into()));
        assert_eq!(e.code(), ErrorCode::StoreFull);
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn a_read_only_store_is_503_with_retry_after_and_a_denied_command_500() {
        let r = ApiError::from(StoreError::ReadOnly("READONLY".into())).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let e = ApiError::from(StoreError::Denied("NOPERM".into()));
        assert_eq!(e.code(), ErrorCode::StorePermissionDenied);
        assert_eq!(e.into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
