//! `/metrics`: Prometheus text with route templates, latencies, store calls and waiters.

use axum::http::StatusCode;
use serde_json::json;

use crate::on_both_stores;
use crate::support::{Kind, TestApp, new_id};

async fn metrics_count_requests_by_route_template(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    app.get(&format!("/results/{id}")).await;
    app.get(&format!("/results/{}", new_id())).await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        text.contains(r#"resultd_http_requests_total{method="GET",route="/results/{id}",status="404"}"#),
        "{text}"
    );
    assert!(text.contains(r#"resultd_http_requests_total{method="PUT",route="/results/{id}",status="201"}"#));
    assert!(!text.contains(&id), "raw paths never become labels");
    assert!(text.contains("resultd_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"resultd_store_call_duration_seconds_bucket{op="read_hash""#));
    assert!(text.contains("resultd_waiters "));
    assert!(text.contains("resultd_change_watches "));
    assert!(text.contains("resultd_keyspace_notifications_total "));
    assert!(text.contains("# HELP resultd_http_requests_total"), "{text}");
    assert!(text.contains("# TYPE resultd_http_request_duration_seconds histogram"));
}

on_both_stores!(metrics_count_requests_by_route_template);

#[tokio::test]
async fn store_errors_are_counted() {
    let mut app = TestApp::new(Kind::Redis).await;
    app.redis.as_mut().unwrap().stop();
    let r = app.get(&format!("/results/{}", new_id())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        text.contains(r#"resultd_store_errors_total{op="read_hash",error="unavailable"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_routes_are_labelled_unmatched() {
    let app = TestApp::new(Kind::Memory).await;
    app.get("/no/such/route/xyz").await;
    let text = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(!text.contains("/no/such/route/xyz"));
}
