//! Bearer tokens: 401 without a known token, 403 outside the token's apps or scope.

use axum::http::{Method, StatusCode};
use resultd::config::{TokenScope, TokenSettings};
use serde_json::json;
use sha2::Digest;

use crate::support::{Kind, TestApp, new_id, test_settings};

fn token(secret: &str, apps: &[&str], scope: TokenScope) -> TokenSettings {
    TokenSettings {
        sha256: hex::encode(sha2::Sha256::digest(secret.as_bytes())),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
        scope,
    }
}

async fn app_with_tokens(protect_operations: bool) -> TestApp {
    let mut settings = test_settings();
    settings.auth.tokens = vec![
        token("writer-billing", &["billing", "test"], TokenScope::Write),
        token("reader-all", &["*"], TokenScope::Read),
    ];
    settings.auth.protect_operations = protect_operations;
    TestApp::with_settings(Kind::Memory, settings).await
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[tokio::test]
async fn requests_without_a_token_are_401_with_a_bearer_challenge() {
    let app = app_with_tokens(false).await;
    let r = app.get(&format!("/results/{}", new_id())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.problem_code(), "unauthorized");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert!(r.json()["request_id"].is_string());
}

#[tokio::test]
async fn unknown_or_malformed_tokens_are_401() {
    let app = app_with_tokens(false).await;
    let uri = format!("/results/{}", new_id());
    for value in ["Bearer nope", "Basic d3JpdGVyLWJpbGxpbmc=", "Bearer", "writer-billing"] {
        let r = app.call(Method::GET, &uri, None, &[("authorization", value)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(r.problem_code(), "unauthorized");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
}

#[tokio::test]
async fn a_write_token_writes_and_reads_its_apps() {
    let app = app_with_tokens(false).await;
    let auth = bearer("writer-billing");
    let id = new_id();
    let h = [("authorization", auth.as_str())];
    let r = app
        .call(Method::PUT, &format!("/results/{id}?app=billing"), Some(json!({})), &h)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .call(Method::GET, &format!("/results/{id}?app=billing"), None, &h)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // No ?app= means the default app ("test"), which this token lists too.
    let r = app
        .call(Method::PUT, &format!("/results/{id}"), Some(json!({})), &h)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_token_outside_its_apps_is_403() {
    let app = app_with_tokens(false).await;
    let auth = bearer("writer-billing");
    let h = [("authorization", auth.as_str())];
    let id = new_id();
    let r = app
        .call(Method::GET, &format!("/results/{id}?app=payroll"), None, &h)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.problem_code(), "forbidden");
    // A second app= cannot smuggle another app past the check.
    let r = app
        .call(Method::GET, &format!("/results/{id}?app=billing&app=payroll"), None, &h)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The app of a state path is its first segment.
    let r = app.call(Method::GET, "/state/payroll/k", None, &h).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.call(Method::GET, "/state/billing/k", None, &h).await;
    assert_ne!(r.status, StatusCode::FORBIDDEN);
    assert_ne!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_read_token_reads_but_may_not_write() {
    let app = app_with_tokens(false).await;
    let id = new_id();
    let writer = bearer("writer-billing");
    app.call(
        Method::PUT,
        &format!("/results/{id}?app=billing"),
        Some(json!({})),
        &[("authorization", writer.as_str())],
    )
    .await;
    let reader = bearer("reader-all");
    let h = [("authorization", reader.as_str())];
    let r = app
        .call(Method::GET, &format!("/results/{id}?app=billing"), None, &h)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for (method, uri) in [
        (Method::PUT, format!("/results/{id}?app=billing")),
        (Method::PATCH, format!("/results/{id}?app=billing")),
        (Method::DELETE, format!("/results/{id}?app=billing")),
        (Method::POST, format!("/results/{id}/children?app=billing")),
    ] {
        let r = app.call(method.clone(), &uri, Some(json!({})), &h).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(r.problem_code(), "forbidden");
    }
    // Waiting for many results only reads: the token passes (whatever the route answers).
    let r = app
        .call(
            Method::POST,
            "/results/wait",
            Some(json!({"ids": [id], "timeout": 0})),
            &h,
        )
        .await;
    assert_ne!(r.status, StatusCode::FORBIDDEN);
    assert_ne!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn operations_stay_open_unless_protected() {
    let open = app_with_tokens(false).await;
    for uri in ["/health/live", "/health/ready", "/metrics", "/openapi.json"] {
        assert_eq!(open.get(uri).await.status, StatusCode::OK, "{uri}");
    }
    let protected = app_with_tokens(true).await;
    for uri in ["/health/live", "/metrics", "/openapi.json"] {
        let r = protected.get(uri).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        // Any valid token opens them, read-only ones included.
        let reader = bearer("reader-all");
        let r = protected
            .call(Method::GET, uri, None, &[("authorization", reader.as_str())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn without_tokens_nothing_is_required() {
    let app = TestApp::new(Kind::Memory).await;
    let r = app.put(&format!("/results/{}", new_id()), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[test]
fn the_document_declares_an_optional_bearer_scheme() {
    let doc: serde_json::Value = serde_json::from_str(&resultd::api::openapi::spec()).unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let op = &doc["paths"]["/results/{id}"]["get"];
    assert_eq!(op["security"], json!([{}, {"bearer": []}]));
    assert!(op["responses"]["401"].is_object());
    assert!(op["responses"]["403"].is_object());
}
