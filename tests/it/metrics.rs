//! `/metrics`: Prometheus text with route templates, latencies, store calls and waiters.

use axum::http::StatusCode;
use serde_json::json;

use crate::on_both_stores;
use crate::support::{Kind, LiveServer, TestApp, new_id, test_settings};

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
    assert!(
        text.contains("resultd_celery_channels 0"),
        "the channel gauge is there from the start"
    );
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

/// Sends one request with `method` over the live server and answers nothing (any status).
async fn send_method(client: &reqwest::Client, url: &str, method: &str) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    client.request(method, url).send().await.unwrap();
}

async fn scrape(client: &reqwest::Client, server: &LiveServer) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_methods_share_one_other_label_and_add_no_series() {
    let server = LiveServer::start(Kind::Memory, test_settings()).await;
    let client = reqwest::Client::new();
    let odd = |i: usize| format!("ODDMETHOD{i}X");
    // Warm up: the OTHER series of both routes exist, and /metrics itself has been counted.
    for i in 0..5 {
        send_method(&client, &server.url("/health/live"), &odd(i)).await;
        send_method(&client, &server.url("/no/such/route"), &odd(i)).await;
    }
    let before = scrape(&client, &server).await;
    let before = scrape(&client, &server).await.len().max(before.len());
    for i in 5..205 {
        let path = if i % 2 == 0 { "/health/live" } else { "/no/such/route" };
        send_method(&client, &server.url(path), &odd(i)).await;
    }
    // A standard method keeps its own label.
    send_method(&client, &server.url("/health/live"), "DELETE").await;
    let text = scrape(&client, &server).await;
    assert!(
        text.contains(r#"resultd_http_requests_total{method="OTHER",route="/health/live""#),
        "{text}"
    );
    assert!(
        text.contains(r#"resultd_http_requests_total{method="OTHER",route="unmatched""#),
        "{text}"
    );
    assert!(text.contains(r#"method="DELETE",route="/health/live""#), "{text}");
    assert!(
        !text.to_ascii_uppercase().contains("ODDMETHOD"),
        "an odd method became a label: {text}"
    );
    // Counts grow a digit or two; 200 new series would add about 3 KB each.
    let grown = text.len().saturating_sub(before);
    assert!(grown < 4096, "/metrics grew by {grown} bytes over 200 odd methods");
    server.stop().await;
}

#[test]
fn only_the_standard_methods_are_labelled_by_name() {
    use resultd::telemetry::method_label;
    for m in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ] {
        assert_eq!(method_label(m), m);
    }
    for m in ["get", "PROPFIND", "BREW", "", "GETX"] {
        assert_eq!(method_label(m), "OTHER", "{m}");
    }
}
