//! The served contract: `/openapi.json` and the vendored Swagger UI at `/docs`.

use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

use crate::server::ApiContext;

/// Routes of the docs page and the document.
pub fn router() -> Router<ApiContext> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", super::openapi::document()))
}
