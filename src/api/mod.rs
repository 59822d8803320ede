//! The HTTP edge: extract, call the store and policies, answer. No business rules here.

pub mod auth;
pub mod celery;
pub mod context;
pub mod docs;
pub mod extract;
pub mod health;
pub mod metadata;
pub mod metrics;
pub mod middleware;
pub mod omniq;
pub mod openapi;
pub mod results;
pub mod rigatoni;
pub mod state;
pub mod values;
pub mod wait;
pub mod waiting;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use context::ApiContext;

/// Every documented route; routing and documentation are one chain, so a route cannot be
/// served without being in the document.
pub fn router() -> OpenApiRouter<ApiContext> {
    let mut router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(
            results::get_result,
            results::put_result,
            results::patch_result,
            results::delete_result
        ))
        .routes(routes!(results::list_results))
        .routes(routes!(waiting::wait_for_results))
        .routes(routes!(waiting::follow_result))
        .routes(routes!(values::get_result_value, values::put_result_value))
        .routes(routes!(metadata::get_result_metadata, metadata::patch_result_metadata))
        .routes(routes!(metadata::get_result_children, metadata::add_result_children))
        .routes(routes!(
            state::get_state,
            state::put_state,
            state::patch_state,
            state::delete_state
        ))
        .routes(routes!(
            state::get_state_field,
            state::put_state_field,
            state::delete_state_field
        ))
        .routes(routes!(state::increment_state_field))
        .routes(routes!(celery::get_celery_result, celery::put_celery_result))
        .routes(routes!(celery::follow_celery_result))
        .routes(routes!(celery::wait_for_celery_results))
        .routes(routes!(celery::get_celery_group, celery::put_celery_group))
        .routes(routes!(celery::flower_task_result))
        .routes(routes!(omniq::get_omniq_result))
        .routes(routes!(omniq::follow_omniq_result))
        .routes(routes!(omniq::get_omniq_task))
        .routes(routes!(omniq::list_omniq_events))
        .routes(routes!(rigatoni::list_resume_tokens))
        .routes(routes!(rigatoni::get_resume_token, rigatoni::put_resume_token))
        .routes(routes!(rigatoni::list_locks))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(docs::root));
    openapi::add_bearer_security(router.get_openapi_mut());
    router
}
