//! The OpenAPI document, generated from the routes alone (no store needed).
//!
//! The committed copy lives in `openapi/openapi.json`; `make openapi` regenerates it and the
//! `openapi` tests fail when the committed, generated and served documents differ.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::error::{ApiError, ErrorCode, PROBLEM_JSON, Problem};

/// Document-level information: title, tags, shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "resultd",
        description = "Task results and per-app state over HTTP, in mognet's Redis layout, with long-poll waiting. Every error is an RFC 9457 problem with a stable `code`.",
        license(name = "MIT"),
    ),
    tags(
        (name = "results", description = "Result records, metadata and children"),
        (name = "values", description = "Result values (gzip passed through)"),
        (name = "waiting", description = "Waiting for results without polling"),
        (name = "state", description = "Per-app state hashes"),
        (name = "omniq", description = "OmniQ's Redis storage, read-only and experimental (`omniq.enabled`; the layout of legout/omniQ@acdec6d)"),
        (name = "celery", description = "Celery's Redis result backend: read, wait for and write Celery results (`celery.enabled`)"),
        (name = "rigatoni", description = "Rigatoni's Redis state store: read, wait for and (when `rigatoni.writable`) write resume tokens; read locks (`rigatoni.enabled`)"),
        (name = "operations", description = "Health and metrics"),
    ),
    components(schemas(
        Problem,
        crate::api::values::ContentCoding,
        crate::api::values::ReadyState,
        crate::api::values::JsonObject,
        crate::api::values::ExceptionInfoUpload
    ))
)]
pub struct ApiDoc;

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::error::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Declares the optional bearer scheme and adds its 401/403 answers to every operation.
///
/// Authentication is off unless `auth.tokens` is configured, so each operation's security is
/// `[{}, {"bearer": []}]`: anonymous or bearer. Operations tagged `operations` need a token only
/// with `auth.protect_operations`, and any valid token opens them (no 403).
pub fn add_bearer_security(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "Optional: only when `auth.tokens` is configured. The token's SHA-256 goes into the config (`resultd hash-token`); each token names the apps it may touch and its scope (`read` or `write`).",
                ))
                .build(),
        ),
    );
    for op in operations_mut(doc) {
        let operations = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "operations"));
        op.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
        ]);
        let responses = &mut op.responses.responses;
        if operations {
            responses.entry("401".to_owned()).or_insert_with(|| {
                problem_response(
                    "`unauthorized`: only with `auth.protect_operations`, when no valid bearer token is sent",
                )
            });
        } else {
            responses.entry("401".to_owned()).or_insert_with(|| {
                    problem_response("`unauthorized`: tokens are configured and no valid bearer token was sent (`WWW-Authenticate: Bearer`)")
                });
            responses.entry("403".to_owned()).or_insert_with(|| {
                problem_response("`forbidden`: the token may not touch this app, or is read-only and this is a write")
            });
        }
    }
}

/// The document as served: the routes' document, with a problem example of every error code
/// that each error response names in its description.
pub fn document() -> Document {
    let mut doc = super::router().split_for_parts().1;
    add_problem_examples(&mut doc);
    headers_are_never_null(&mut doc);
    doc
}

/// An optional header is absent, never `null`: `Option<String>` header parameters become plain
/// strings (Swagger would show their type as "stringnull").
fn headers_are_never_null(doc: &mut Document) {
    for operation in operations_mut(doc) {
        for parameter in operation.parameters.iter_mut().flatten() {
            if parameter.parameter_in != ParameterIn::Header {
                continue;
            }
            if let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema
                && let SchemaType::Array(types) = &object.schema_type
                && let [only] = types.iter().filter(|t| **t != Type::Null).collect::<Vec<_>>()[..]
            {
                object.schema_type = SchemaType::Type(only.clone());
            }
            // An optional header of a named type: `oneOf [null, $ref]` becomes the `$ref`.
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &parameter.schema {
                let not_null: Vec<&RefOr<Schema>> = one_of
                    .items
                    .iter()
                    .filter(
                        |s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null)),
                    )
                    .collect();
                if let [only] = not_null[..] {
                    parameter.schema = Some(only.clone());
                }
            }
        }
    }
}

/// Fills `examples` of every `application/problem+json` response with one example per code
/// named (in backticks) by its description, so Swagger shows the real code of each case.
fn add_problem_examples(doc: &mut Document) {
    for operation in operations_mut(doc) {
        for response in operation.responses.responses.values_mut() {
            let RefOr::T(response) = response else { continue };
            let codes = named_codes(&response.description);
            let Some(content) = response.content.get_mut(PROBLEM_JSON) else {
                continue;
            };
            for code in codes {
                let example = ExampleBuilder::new()
                    .summary(format!("{}: {}", code.as_str(), code.title()))
                    .value(Some(problem_example(code)))
                    .build();
                content.examples.insert(code.as_str().to_owned(), RefOr::T(example));
            }
        }
    }
}

/// Every operation of the document, whatever its method.
fn operations_mut(doc: &mut Document) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// The error codes a description names in backticks, in order.
fn named_codes(description: &str) -> Vec<ErrorCode> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|word| ErrorCode::ALL.iter().copied().find(|c| c.as_str() == word))
        .collect()
}

/// A problem document of `code` as the server writes it.
fn problem_example(code: ErrorCode) -> serde_json::Value {
    let error = match code {
        ErrorCode::PayloadTooLarge => ApiError::too_large(1_048_576),
        ErrorCode::IllegalTransition => ApiError::new(code, example_detail(code)).with_current_state("SUCCESS"),
        ErrorCode::ResultNotReady => ApiError::new(code, example_detail(code)).with_current_state("RUNNING"),
        _ => ApiError::new(code, example_detail(code)),
    };
    serde_json::to_value(error.problem(Some("5d1c0e7a-17"))).unwrap_or_default()
}

/// A detail as the server writes it for `code`.
fn example_detail(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidResultId => {
            "result id must be a hyphenated UUID such as 3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10, got \"not-a-uuid\""
        }
        ErrorCode::InvalidTaskId => "the id may only hold A-Z a-z 0-9 - _ . : @ + =",
        ErrorCode::GroupNotFound => "no saved Celery group 0f0e0d0c-0000-4000-8000-00000000000a in app celery",
        ErrorCode::LayoutDisabled => "the Celery routes are off on this server (celery.enabled = false)",
        ErrorCode::UndecodableRecord => {
            "celery-task-meta-t-1 holds no Celery JSON record resultd can read (bad-json): not a Celery JSON record: expected value at line 1 column 1"
        }
        ErrorCode::InvalidBson => {
            "rigatoni:resume_token:orders holds no BSON document: the length prefix says 1952805748 bytes, the value has 9"
        }
        ErrorCode::InvalidTokenName => "the token name may not hold control characters or * ? [ ] \\",
        ErrorCode::TokenNotFound => "no Rigatoni resume token \"resume_token:shop:orders\"",
        ErrorCode::LayoutReadOnly => "Rigatoni resume tokens are read-only on this server (rigatoni.writable = false)",
        ErrorCode::PreconditionRequired => {
            "a resume token write needs If-Match with the token's ETag, or If-None-Match: * to create it"
        }
        ErrorCode::InvalidApp => "app name may only contain letters, digits, '_', '.', ':' and '-', found ' '",
        ErrorCode::InvalidStateKey => "state key may not be empty",
        ErrorCode::InvalidStateField => "state field may not be empty",
        ErrorCode::InvalidQuery => "invalid query: invalid float literal",
        ErrorCode::InvalidHeader => "Prefer: wait= must be a number of seconds",
        ErrorCode::InvalidJson => "invalid body: EOF while parsing a value at line 1 column 8",
        ErrorCode::MalformedRequest => "the body could not be read: error reading a body from connection",
        ErrorCode::UriTooLong => "the request target is longer than the server parses",
        ErrorCode::HeadersTooLarge => "the request head is larger than the server's read buffer",
        ErrorCode::InvalidBody => "invalid body: invalid type: string \"x\", expected i64 at line 1 column 23",
        ErrorCode::InvalidCursor => "the cursor is not one this server handed out",
        ErrorCode::UnsupportedMediaType => "expected Content-Type application/json, got \"text/plain\"",
        ErrorCode::PayloadTooLarge => "the body is larger than the limit of 1048576 bytes",
        ErrorCode::Unauthorized => "a bearer token is required",
        ErrorCode::Forbidden => "this token may not write to app billing",
        ErrorCode::NotFound => "no route for /result; the routes are listed at /docs/",
        ErrorCode::MethodNotAllowed => "/results/3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10 does not accept POST",
        ErrorCode::ResultNotFound => "no result 3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10 in app billing",
        ErrorCode::ResultNotReady => {
            "result 3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10 is RUNNING; its value is not there yet"
        }
        ErrorCode::ValueExpired => {
            "result 3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10 is SUCCESS but its value expired or was never stored"
        }
        ErrorCode::IllegalTransition => {
            "result is SUCCESS and may not become RUNNING: ready states are final (use force=true to override)"
        }
        ErrorCode::SelfChild => "a result cannot be its own child",
        ErrorCode::PreconditionFailed => "the resource's current ETag does not match If-Match",
        ErrorCode::StateNotFound => "no state invoices in app billing",
        ErrorCode::StateFieldNotFound => "no field counter in state invoices of app billing",
        ErrorCode::StateNotInteger => "field counter holds \"ten\", not an integer",
        ErrorCode::IdempotencyKeyReused => {
            "this Idempotency-Key was used for a different increment of this state (another field or amount); use a new key for a new request"
        }
        ErrorCode::IncrementOverflow => "field counter would overflow a 64-bit integer",
        ErrorCode::RequestTimeout => "the request took longer than 30000 ms",
        ErrorCode::TooManyWaiters => "this client already holds 1000 waits",
        ErrorCode::WaitersExhausted => "the server already holds 10000 waits",
        ErrorCode::StoreUnavailable => "the store did not answer in time; retry later",
        ErrorCode::StoreFull => "the store is out of memory and refused the write before any effect; retry later",
        ErrorCode::StoreReadOnly => {
            "the store accepts no writes right now (a failover?) and nothing was written; retry later"
        }
        ErrorCode::StorePermissionDenied => "the store refused a command to resultd's user; see the server log",
        ErrorCode::ShuttingDown => "the server is shutting down",
        ErrorCode::CorruptData => "stored data cannot be read; see the server log",
        ErrorCode::Internal => "internal error; see the server log",
    }
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn spec() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
