//! Long-poll waiting, on both stores, and woken by foreign writers on Redis.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::on_both_stores;
use crate::support::{Kind, TestApp, new_id};

async fn a_done_result_answers_a_wait_at_once(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({"state": "SUCCESS"})).await;
    let started = Instant::now();
    let r = app.get(&format!("/results/{id}?wait=30")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn a_wait_is_woken_by_completion(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let waiter = {
        let router = app.router.clone();
        let uri = format!("/results/{id}/value?wait=20");
        tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
            let started = Instant::now();
            let resp = router.oneshot(req).await.unwrap();
            (resp.status(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.ctx.wait_limiter().held(), 1);
    app.put(&format!("/results/{id}/value?state=SUCCESS"), json!(7)).await;
    let (status, elapsed) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(app.ctx.wait_limiter().held(), 0, "no waiter outlives its request");
}

async fn a_wait_times_out_with_the_current_record(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let r = app
        .call(Method::GET, &format!("/results/{id}"), None, &[("prefer", "wait=1")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["done"], false);
    assert_eq!(r.header("preference-applied"), Some("wait=1"));
}

async fn a_result_created_during_the_wait_counts(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    let router = app.router.clone();
    let uri = format!("/results/{id}?wait=20");
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        router
            .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.put(&format!("/results/{id}"), json!({"state": "REVOKED"})).await;
    assert_eq!(waiter.await.unwrap(), StatusCode::OK);
}

async fn a_result_deleted_during_the_wait_ends_it_with_404(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let router = app.router.clone();
    let uri = format!("/results/{id}?wait=20");
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        router
            .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.delete(&format!("/results/{id}")).await;
    assert_eq!(waiter.await.unwrap(), StatusCode::NOT_FOUND);
}

async fn waits_past_the_cap_are_refused(kind: Kind) {
    let mut settings = crate::support::test_settings();
    settings.wait.max_waiters = 1;
    let app = TestApp::with_settings(kind, settings).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let router = app.router.clone();
    let uri = format!("/results/{id}?wait=3");
    let first = tokio::spawn(async move {
        use tower::ServiceExt;
        router
            .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.get(&format!("/results/{id}?wait=3")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "waiters-exhausted")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

on_both_stores!(
    a_done_result_answers_a_wait_at_once,
    a_wait_is_woken_by_completion,
    a_wait_times_out_with_the_current_record,
    a_result_created_during_the_wait_counts,
    a_result_deleted_during_the_wait_ends_it_with_404,
    waits_past_the_cap_are_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hset_from_another_connection_wakes_a_waiter() {
    let app = TestApp::new(Kind::Redis).await;
    assert_eq!(app.ctx.store().wake_mode(), "keyspace-notifications");
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let router = app.router.clone();
    let uri = format!("/results/{id}?wait=20");
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        let started = Instant::now();
        let r = router
            .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        (r.status(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.redis()
        .cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"SUCCESS\""]);
    let (status, elapsed) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
