//! The OpenAPI document, generated from the routes alone (no store needed).
//!
//! The committed copy lives in `openapi/openapi.json`; `make openapi` regenerates it and the
//! `openapi` tests fail when the committed, generated and served documents differ.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

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
