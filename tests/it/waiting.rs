//! Long-poll waiting, on both stores, and woken by foreign writers on Redis.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use resultd::store::ResultStore;

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

async fn a_result_expiring_during_the_wait_ends_it_with_404(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}?ttl=1"), json!({})).await;
    let started = Instant::now();
    let r = app.get(&format!("/results/{id}?wait=20")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::NOT_FOUND, "result-not-found")
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
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
    one_client_cannot_watch_more_ids_than_its_cap,
    a_held_wait_keeps_a_small_future,
    a_done_result_answers_a_wait_at_once,
    a_wait_is_woken_by_completion,
    a_wait_times_out_with_the_current_record,
    a_result_created_during_the_wait_counts,
    a_result_deleted_during_the_wait_ends_it_with_404,
    waits_past_the_cap_are_refused,
    a_result_expiring_during_the_wait_ends_it_with_404,
    a_multi_wait_answers_any_and_all,
    a_multi_wait_runs_out_unsatisfied,
    events_stream_every_change_until_done,
    shutdown_answers_waiters_at_once,
    a_disconnected_client_leaves_no_waiter,
    one_client_past_its_cap_gets_429,
    a_thousand_waiters_are_all_woken,
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

async fn a_multi_wait_answers_any_and_all(kind: Kind) {
    let app = TestApp::new(kind).await;
    let (a, b, missing) = (new_id(), new_id(), new_id());
    app.put(&format!("/results/{a}"), json!({"state": "SUCCESS"})).await;
    app.put(&format!("/results/{b}"), json!({})).await;
    let r = app
        .post(
            "/results/wait",
            json!({"ids": [a, b, missing], "mode": "any", "timeout": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["satisfied"], true);
    assert_eq!(body["done"], json!([a]));
    assert_eq!(body["pending"], json!([b]));
    assert_eq!(body["missing"], json!([missing]));
    assert_eq!(body["results"][0]["state"], "SUCCESS");
    // "all" waits for b too, and is woken by its completion.
    let router = app.router.clone();
    let (a2, b2) = (a.clone(), b.clone());
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        let req = axum::http::Request::post("/results/wait")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({"ids": [a2, b2], "mode": "all", "timeout": 20}).to_string(),
            ))
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.patch(&format!("/results/{b}"), json!({"state": "FAILURE"})).await;
    let body = waiter.await.unwrap();
    assert_eq!(body["satisfied"], true);
    assert_eq!(body["done"].as_array().unwrap().len(), 2);
    let r = app
        .post("/results/wait", json!({"ids": [b], "mode": "all", "timeout": 0}))
        .await;
    assert_eq!(r.json()["satisfied"], true);
    let r = app.post("/results/wait", json!({"ids": []})).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body")
    );
    let r = app.post("/results/wait", json!({"ids": ["nope"]})).await;
    assert_eq!(r.problem_code(), "invalid-body");
}

async fn a_multi_wait_runs_out_unsatisfied(kind: Kind) {
    let app = TestApp::new(kind).await;
    let a = new_id();
    app.put(&format!("/results/{a}"), json!({})).await;
    let r = app.post("/results/wait", json!({"ids": [a], "timeout": 0.5})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["satisfied"], false);
    assert_eq!(r.json()["pending"], json!([a]));
}

async fn events_stream_every_change_until_done(kind: Kind) {
    let server = crate::support::LiveServer::start(kind, crate::support::test_settings()).await;
    let client = reqwest::Client::new();
    let id = new_id();
    let uri = server.url(&format!("/results/{id}"));
    client.put(&uri).json(&json!({})).send().await.unwrap();
    let r = client
        .get(server.url(&format!("/results/{}/events", new_id())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let mut stream = client.get(format!("{uri}/events")).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    text.push_str(&String::from_utf8_lossy(&first));
    assert!(text.contains("\"state\":\"PENDING\""), "{text}");
    client
        .patch(&uri)
        .json(&json!({"state": "RUNNING"}))
        .send()
        .await
        .unwrap();
    client
        .put(format!("{uri}/value?state=SUCCESS"))
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Some(chunk) = stream.chunk().await.unwrap() {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await
    .expect("the stream ends once the result is done");
    text.push_str(&rest);
    assert!(text.contains("\"state\":\"SUCCESS\""), "{text}");
    let events = text.matches("event: result").count();
    assert!((2..=3).contains(&events), "{events} events: {text}");
    // Resuming with the last event id sends nothing new: the result is done and unchanged.
    let last_id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let resumed = client
        .get(format!("{uri}/events"))
        .header("last-event-id", last_id)
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), resumed.text())
        .await
        .unwrap()
        .unwrap();
    assert!(!body.contains("event: result"), "{body}");
    server.stop().await;
}

async fn shutdown_answers_waiters_at_once(kind: Kind) {
    let server = crate::support::LiveServer::start(kind, crate::support::test_settings()).await;
    let client = reqwest::Client::new();
    let id = new_id();
    client
        .put(server.url(&format!("/results/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let url = server.url(&format!("/results/{id}?wait=30"));
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let r = client.get(url).send().await.unwrap();
        (
            r.status(),
            r.json::<serde_json::Value>().await.unwrap(),
            started.elapsed(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    server.stop().await;
    let (status, body, _) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["done"], false);
    assert!(stopping.elapsed() < Duration::from_secs(5), "{:?}", stopping.elapsed());
}

async fn a_disconnected_client_leaves_no_waiter(kind: Kind) {
    let server = crate::support::LiveServer::start(kind, crate::support::test_settings()).await;
    let id = new_id();
    reqwest::Client::new()
        .put(server.url(&format!("/results/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = server.url(&format!("/results/{id}?wait=30"));
    let waiter = tokio::spawn(async move { client.get(url).send().await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.ctx.wait_limiter().held() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.ctx.wait_limiter().held(), 1);
    assert_eq!(server.ctx.store().changes().waiters(), 1);
    waiter.abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.ctx.wait_limiter().held() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.ctx.wait_limiter().held(), 0);
    assert_eq!(server.ctx.store().changes().waiters(), 0);
    server.stop().await;
}

async fn one_client_past_its_cap_gets_429(kind: Kind) {
    let mut settings = crate::support::test_settings();
    settings.wait.max_waiters_per_client = 2;
    let server = crate::support::LiveServer::start(kind, settings).await;
    let client = reqwest::Client::new();
    let id = new_id();
    client
        .put(server.url(&format!("/results/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let (c, url) = (client.clone(), server.url(&format!("/results/{id}?wait=3")));
        held.push(tokio::spawn(async move { c.get(url).send().await.unwrap().status() }));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.ctx.wait_limiter().held() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client
        .get(server.url(&format!("/results/{id}?wait=3")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "too-many-waiters");
    for h in held {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    server.stop().await;
}

async fn a_thousand_waiters_are_all_woken(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let mut waiters = Vec::new();
    for _ in 0..1000 {
        let router = app.router.clone();
        let uri = format!("/results/{id}?wait=30");
        waiters.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let resp = router
                .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.ctx.wait_limiter().held() < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.ctx.wait_limiter().held(), 1000);
    app.patch(&format!("/results/{id}"), json!({"state": "REVOKED"})).await;
    for w in waiters {
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), w).await.unwrap().unwrap(),
            "REVOKED"
        );
    }
    assert_eq!(app.ctx.wait_limiter().held(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_fall_back_to_polling_when_config_is_refused() {
    let server = crate::support::RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let settings = crate::support::test_settings();
    let store = resultd::store::RedisStore::connect(&server.url(), &settings.redis)
        .await
        .unwrap();
    assert_eq!(store.wake_mode(), "polling");
    let live = crate::support::LiveServer::over(resultd::store::Store::Redis(store), Some(server), settings).await;
    let r = reqwest::get(live.url("/health/ready"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(r["wake_mode"], "polling");
    let client = reqwest::Client::new();
    let id = new_id();
    client
        .put(live.url(&format!("/results/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let url = live.url(&format!("/results/{id}?wait=20"));
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let r = client
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    live.redis
        .as_ref()
        .unwrap()
        .cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"SUCCESS\""]);
    let (body, elapsed) = waiter.await.unwrap();
    assert_eq!(body["state"], "SUCCESS");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_during_a_wait_misses_no_completion() {
    let server = crate::support::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let settings = crate::support::test_settings();
    let store = resultd::store::RedisStore::connect(&server.url(), &settings.redis)
        .await
        .unwrap();
    let mut live = crate::support::LiveServer::over(resultd::store::Store::Redis(store), Some(server), settings).await;
    let client = reqwest::Client::new();
    let id = new_id();
    client
        .put(live.url(&format!("/results/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let url = live.url(&format!("/results/{id}?wait=30"));
    let c = client.clone();
    let waiter = tokio::spawn(async move {
        c.get(url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = live.redis.as_mut().unwrap();
    redis.restart();
    // Completed while resultd is still reconnecting: no notification reaches it for this write.
    redis.cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"SUCCESS\""]);
    let body = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(body["state"], "SUCCESS");
    // Notifications are back on after the restart, so new waits wake at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flags = live
            .redis
            .as_ref()
            .unwrap()
            .cli(&["CONFIG", "GET", "notify-keyspace-events"]);
        if flags.contains('K') || Instant::now() > deadline {
            assert!(flags.contains('K'), "{flags}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    live.stop().await;
}

/// A held wait costs its handler's future for its whole life: store calls are boxed, so it
/// stays small on either store (fred's futures alone are several KiB when held inline).
async fn a_held_wait_keeps_a_small_future(kind: Kind) {
    use axum::extract::State;
    use resultd::api::extract::Path;
    use resultd::api::extract::{ClientAddr, Query};
    use resultd::api::results::{GetResultParams, get_result};
    let app = TestApp::new(kind).await;
    let params = GetResultParams {
        app: None,
        wait: Some(30.0),
    };
    let wait = get_result(
        State(app.ctx),
        Path(new_id()),
        Query(params),
        ClientAddr(None),
        Default::default(),
    );
    let size = std::mem::size_of_val(&wait);
    assert!(size <= 4096, "GET /results/{{id}}?wait= holds a {size}-byte future");
}

/// Commands Redis has processed so far.
fn redis_commands(redis: &crate::support::RedisServer) -> u64 {
    redis
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Many multi-waits over many ids: one change re-reads that one id per waiter, not all of them
/// (this once turned one PATCH into ~225 000 Redis commands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_costs_each_multi_wait_one_read_of_the_changed_id() {
    const WAITERS: usize = 20;
    const IDS: usize = 500;
    let mut settings = crate::support::test_settings();
    settings.wait.max_watched_ids_per_client = WAITERS * IDS;
    // The first readings of 20 × 500 ids at once may take a while on a loaded machine.
    settings.redis.command_timeout_ms = 10_000;
    let redis = crate::support::RedisServer::start();
    let store = resultd::store::Store::Redis(
        resultd::store::RedisStore::connect(&redis.url(), &settings.redis)
            .await
            .unwrap(),
    );
    let server = crate::support::LiveServer::over(store, None, settings).await;
    let client = reqwest::Client::new();
    let ids: Vec<String> = (0..IDS).map(|_| new_id()).collect();
    for chunk in ids.chunks(50) {
        let puts = chunk.iter().map(|id| {
            client
                .put(server.url(&format!("/results/{id}")))
                .json(&json!({}))
                .send()
        });
        for r in futures::future::join_all(puts).await {
            assert_eq!(r.unwrap().status(), StatusCode::CREATED);
        }
    }
    let mut waits = Vec::new();
    for _ in 0..WAITERS {
        let (c, url, body) = (
            client.clone(),
            server.url("/results/wait"),
            json!({"ids": ids, "mode": "all", "timeout": 30}),
        );
        waits.push(tokio::spawn(async move { c.post(url).json(&body).send().await }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.ctx.wait_limiter().held() < WAITERS {
        assert!(Instant::now() < deadline, "the waits were not all held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The waits' first readings (taken after their slots) have all landed once Redis is quiet.
    let mut before = redis_commands(&redis);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = redis_commands(&redis);
        if now - before <= 2 {
            before = now;
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "Redis never went quiet"
        );
        before = now;
    }
    for w in &waits {
        assert!(!w.is_finished(), "a wait ended before the change");
    }
    let r = client
        .patch(server.url(&format!("/results/{}", ids[7])))
        .json(&json!({"node_id": "w-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let spent = redis_commands(&redis) - before;
    // The PATCH itself, the INFO calls, and one small read per waiter: far below a read of
    // every id by every waiter (WAITERS × IDS = 10 000).
    assert!(
        spent <= (WAITERS * 4 + 20) as u64,
        "one change cost {spent} Redis commands"
    );
    // Still held, and woken for real: completing every id answers all of them.
    assert_eq!(server.ctx.wait_limiter().held(), WAITERS);
    for chunk in ids.chunks(50) {
        let puts = chunk.iter().map(|id| {
            client
                .put(server.url(&format!("/results/{id}/value?state=SUCCESS")))
                .json(&json!(1))
                .send()
        });
        for r in futures::future::join_all(puts).await {
            assert_eq!(r.unwrap().status(), StatusCode::OK);
        }
    }
    for w in waits {
        let r = tokio::time::timeout(Duration::from_secs(15), w)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let out: serde_json::Value = r.json().await.unwrap();
        assert_eq!(out["satisfied"], true);
        assert_eq!(out["done"].as_array().unwrap().len(), IDS);
    }
    println!("one PATCH under {WAITERS} multi-waits of {IDS} ids: {spent} Redis commands");
    server.stop().await;
}

async fn one_client_cannot_watch_more_ids_than_its_cap(kind: Kind) {
    let mut settings = crate::support::test_settings();
    settings.wait.max_watched_ids_per_client = 1500;
    let server = crate::support::LiveServer::start(kind, settings).await;
    let client = reqwest::Client::new();
    let ids = |n: usize| (0..n).map(|_| new_id()).collect::<Vec<_>>();
    let first = {
        let (c, url, body) = (
            client.clone(),
            server.url("/results/wait"),
            json!({"ids": ids(1000), "timeout": 2}),
        );
        tokio::spawn(async move { c.post(url).json(&body).send().await.unwrap().status() })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.ctx.wait_limiter().held() < 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client
        .post(server.url("/results/wait"))
        .json(&json!({"ids": ids(600), "timeout": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "too-many-waiters");
    let r = client
        .post(server.url("/results/wait"))
        .json(&json!({"ids": ids(500), "timeout": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "within the cap");
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    // The ids are given back when the wait ends.
    let r = client
        .post(server.url("/results/wait"))
        .json(&json!({"ids": ids(1000), "timeout": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop().await;
}
