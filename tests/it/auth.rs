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

/// Every route that names an app or a state key, as (method, path, body).
fn routes_naming(app: &str, key: &str, id: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let q = format!("app={app}");
    vec![
        (Method::GET, format!("/results/{id}?{q}"), None),
        (
            Method::PUT,
            format!("/results/{id}?{q}"),
            Some(json!({"state": "SUCCESS"})),
        ),
        (
            Method::PATCH,
            format!("/results/{id}?{q}"),
            Some(json!({"node_id": "n"})),
        ),
        (Method::DELETE, format!("/results/{id}?{q}"), None),
        (Method::GET, format!("/results/{id}/value?{q}"), None),
        (Method::PUT, format!("/results/{id}/value?{q}"), Some(json!(1))),
        (Method::GET, format!("/results/{id}/metadata?{q}"), None),
        (
            Method::PATCH,
            format!("/results/{id}/metadata?{q}"),
            Some(json!({"a": 1})),
        ),
        (Method::GET, format!("/results/{id}/children?{q}"), None),
        (
            Method::POST,
            format!("/results/{id}/children?{q}"),
            Some(json!({"ids": [new_id()]})),
        ),
        (Method::GET, format!("/results/{id}/events?{q}"), None),
        (Method::GET, format!("/results?{q}"), None),
        (Method::POST, format!("/results/wait?{q}"), Some(json!({"ids": [id]}))),
        (Method::GET, format!("/state/{app}/{key}"), None),
        (Method::PUT, format!("/state/{app}/{key}"), Some(json!({"f": 1}))),
        (Method::PATCH, format!("/state/{app}/{key}"), Some(json!({"f": 1}))),
        (Method::DELETE, format!("/state/{app}/{key}"), None),
        (Method::GET, format!("/state/{app}/{key}/f"), None),
        (Method::PUT, format!("/state/{app}/{key}/f"), Some(json!(1))),
        (Method::DELETE, format!("/state/{app}/{key}/f"), None),
        (
            Method::POST,
            format!("/state/{app}/{key}/f/increment"),
            Some(json!({"by": 1})),
        ),
    ]
}

/// A state key with `.mognet.` once spelled another app's result key: `/state/appB/x.mognet.result.{id}`
/// is `appB.mognet.state.x.mognet.result.{id}`, the result `{id}` of the app `appB.mognet.state.x`.
async fn names_that_spell_another_apps_keys_are_refused_everywhere(kind: Kind) {
    let mut settings = test_settings();
    settings.auth.tokens = vec![
        token("appb-writer", &["appB"], TokenScope::Write),
        token("all-writer", &["*"], TokenScope::Write),
    ];
    let app = TestApp::with_settings(kind, settings).await;
    let id = new_id();
    let aliasing_keys = [
        format!("x.mognet.result.{id}"),
        "mognet.state.y".to_owned(),
        "a.mognet.b".to_owned(),
    ];
    let aliasing_apps = ["appB.mognet.state.x", "appB.mognet", "x.mognet.result"];
    let mut cases = Vec::new();
    for key in &aliasing_keys {
        for route in routes_naming("appB", key, &id)
            .into_iter()
            .filter(|r| r.1.starts_with("/state/"))
        {
            cases.push(("invalid-state-key", route));
        }
    }
    for bad_app in aliasing_apps {
        for route in routes_naming(bad_app, "k", &id) {
            cases.push(("invalid-app", route));
        }
    }
    for (code, (method, path, body)) in cases {
        for secret in ["appb-writer", "all-writer"] {
            let auth = bearer(secret);
            let r = app
                .call(method.clone(), &path, body.clone(), &[("authorization", auth.as_str())])
                .await;
            // The token for appB may be refused first (403: not its app); no token gets through.
            let expected_403 = secret == "appb-writer" && code == "invalid-app";
            if expected_403 {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{secret}: {method} {path}");
            } else {
                assert_eq!(
                    (r.status, r.problem_code().as_str()),
                    (StatusCode::BAD_REQUEST, code),
                    "{secret}: {method} {path}"
                );
            }
        }
    }
    // Names that merely contain the word stay valid.
    let auth = bearer("all-writer");
    let h = [("authorization", auth.as_str())];
    for path in [
        "/state/mognet/k",
        "/state/a.mognetx/mognet",
        "/state/appB/x.mognet",
        "/state/mognet.a/amognet.b",
    ] {
        let r = app.call(Method::PUT, path, Some(json!({"f": 1})), &h).await;
        assert!(r.status.is_success(), "{path}: {} {:?}", r.status, r.body);
    }
    if let Some(redis) = &app.redis {
        let mut keys: Vec<String> = redis.cli(&["KEYS", "*"]).lines().map(str::to_owned).collect();
        keys.sort();
        let expected = [
            "a.mognetx.mognet.state.mognet",
            "appB.mognet.state.x.mognet",
            "mognet.a.mognet.state.amognet.b",
            "mognet.mognet.state.k",
        ];
        assert_eq!(keys, expected, "only the valid names were written");
    }
}

crate::on_both_stores!(names_that_spell_another_apps_keys_are_refused_everywhere);

#[test]
fn the_config_refuses_a_default_app_that_aliases() {
    use figment::providers::{Format, Toml};
    let figment = resultd::config::Settings::figment().merge(Toml::string("default_app = \"appB.mognet.state.x\""));
    let error = resultd::config::Settings::from_figment(figment)
        .err()
        .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("default_app") && e.contains(".mognet.")),
        "{error:?}"
    );
}

#[tokio::test]
async fn rigatoni_routes_are_scoped_by_the_rigatoni_app() {
    let mut settings = test_settings();
    settings.rigatoni.enabled = true;
    settings.rigatoni.writable = true;
    settings.auth.tokens = vec![
        token("rig-writer", &["rigatoni"], TokenScope::Write),
        token("rig-reader", &["rigatoni"], TokenScope::Read),
        token("test-writer", &["test"], TokenScope::Write),
    ];
    let app = TestApp::with_settings(Kind::Memory, settings).await;
    let put = |secret: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                "/rigatoni/resume-tokens/orders",
                Some(json!({"_data": "82"})),
                &[("authorization", &bearer(secret)), ("if-none-match", "*")],
            )
            .await
            .status
        }
    };
    // The default app of a Rigatoni route is rigatoni.app, not default_app.
    assert_eq!(put("test-writer").await, StatusCode::FORBIDDEN);
    assert_eq!(put("rig-reader").await, StatusCode::FORBIDDEN);
    assert_eq!(put("rig-writer").await, StatusCode::CREATED);
    for path in ["/rigatoni/resume-tokens/orders", "/rigatoni/locks"] {
        for (secret, want) in [("rig-reader", StatusCode::OK), ("test-writer", StatusCode::FORBIDDEN)] {
            let auth = bearer(secret);
            let r = app.call(Method::GET, path, None, &[("authorization", &auth)]).await;
            assert_eq!(r.status, want, "{secret} {path}");
        }
    }
}

#[tokio::test]
async fn celery_routes_are_scoped_by_their_celery_app() {
    let mut settings = test_settings();
    settings.celery.enabled = true;
    settings.celery.apps.insert("billing".to_owned(), "billing_".to_owned());
    settings.auth.tokens = vec![
        token("celery-writer", &["celery"], TokenScope::Write),
        token("celery-reader", &["celery"], TokenScope::Read),
        token("billing-writer", &["billing"], TokenScope::Write),
    ];
    let app = TestApp::with_settings(Kind::Memory, settings).await;
    let put = |secret: &'static str, uri: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                uri,
                Some(json!({"status": "SUCCESS", "result": 1})),
                &[("authorization", &bearer(secret))],
            )
            .await
            .status
        }
    };
    assert_eq!(put("celery-writer", "/celery/results/a-1").await, StatusCode::CREATED);
    assert_eq!(put("celery-reader", "/celery/results/a-2").await, StatusCode::FORBIDDEN);
    // The default app of a Celery route is celery.app, not default_app.
    assert_eq!(
        put("billing-writer", "/celery/results/a-3").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put("billing-writer", "/celery/results/a-3?app=billing").await,
        StatusCode::CREATED
    );
    let get = |secret: &'static str, uri: &'static str| {
        let app = &app;
        async move {
            app.call(Method::GET, uri, None, &[("authorization", &bearer(secret))])
                .await
                .status
        }
    };
    assert_eq!(get("celery-reader", "/celery/results/a-1").await, StatusCode::OK);
    assert_eq!(get("celery-reader", "/api/task/result/a-1").await, StatusCode::OK);
    assert_eq!(
        get("celery-reader", "/celery/results/a-3?app=billing").await,
        StatusCode::FORBIDDEN
    );
    // Waiting for many is a read.
    let r = app
        .call(
            Method::POST,
            "/celery/results/wait",
            Some(json!({"ids": ["a-1"]})),
            &[("authorization", &bearer("celery-reader"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn omniq_routes_are_scoped_by_the_omniq_app() {
    let mut settings = test_settings();
    settings.omniq.enabled = true;
    settings.auth.tokens = vec![
        token("omniq-reader", &["omniq"], TokenScope::Read),
        token("test-writer", &["test"], TokenScope::Write),
    ];
    let app = TestApp::with_settings(Kind::Memory, settings).await;
    let get = |secret: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::GET,
                "/omniq/results/t-1",
                None,
                &[("authorization", &bearer(secret))],
            )
            .await
            .status
        }
    };
    assert_eq!(
        get("omniq-reader").await,
        StatusCode::NOT_FOUND,
        "allowed: no such result"
    );
    assert_eq!(
        get("test-writer").await,
        StatusCode::FORBIDDEN,
        "the default app does not cover OmniQ"
    );
}
