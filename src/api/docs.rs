//! The served contract: `/openapi.json` and the vendored Swagger UI at `/docs`.

use axum::Router;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::api::ApiContext;

/// Routes of the docs page and the document.
///
/// The page loads nothing from outside the server: Swagger UI is vendored, and its online
/// validator badge (which would send the document's address to a public service) is off.
pub fn router() -> Router<ApiContext> {
    Router::new().merge(
        SwaggerUi::new("/docs")
            .url("/openapi.json", super::openapi::document())
            .config(Config::default().validator_url("none")),
    )
}
