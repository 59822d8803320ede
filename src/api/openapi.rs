//! The OpenAPI document, generated from the routes alone (no store needed).
//!
//! The committed copy lives in `openapi/openapi.json`; `make openapi` regenerates it and the
//! `openapi` tests fail when the committed, generated and served documents differ.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::error::Problem;

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
        (name = "operations", description = "Health and metrics"),
    ),
    components(schemas(Problem))
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
    for item in doc.paths.paths.values_mut() {
        let ops: [&mut Option<Operation>; 8] = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
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
                    problem_response(
                        "`forbidden`: the token may not touch this app, or is read-only and this is a write",
                    )
                });
            }
        }
    }
}

/// The document as served.
pub fn document() -> Document {
    super::router().split_for_parts().1
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn spec() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
