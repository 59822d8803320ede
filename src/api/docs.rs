//! The served contract: `/openapi.json` and the vendored Swagger UI at `/docs`.

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::api::ApiContext;

/// Routes of the docs page and the document.
///
/// The page loads nothing from outside the server: Swagger UI is vendored, and its online
/// validator badge (which would send the document's address to a public service) is off.
pub fn router() -> Router<ApiContext> {
    Router::new()
        .merge(
            SwaggerUi::new("/docs")
                .url("/openapi.json", super::openapi::document())
                .config(Config::default().validator_url("none")),
        )
        .layer(axum::middleware::map_response(problem_for_missing_asset))
}

/// Sends a browser that opens the server's address to the docs page.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 307, description = "To the docs page", headers(("location" = String, description = "`/docs/`")))))]
pub async fn root() -> Redirect {
    Redirect::temporary("/docs/")
}

/// Swagger UI answers an unknown asset with an empty 404; it gets the problem of any unknown
/// route instead.
async fn problem_for_missing_asset(uri: Uri, response: Response) -> Response {
    if response.status() == StatusCode::NOT_FOUND {
        return super::middleware::not_found(uri).await.into_response();
    }
    response
}
