//! The done-result cache: served from memory, and every change by any writer seen by the next
//! reads (polled with a bound; no timing assertions).

use std::time::{Duration, Instant};

use resultd::store::cache::CacheStats;
use resultd::store::{RedisStore, Store};
use serde_json::{Value, json};

use crate::support::{Kind, RedisServer, TestApp, new_id, test_settings};

fn stats(app: &TestApp) -> CacheStats {
    app.ctx.store().tracking().expect("the cache is on").cache().stats()
}

/// Polls `uri` until `check` accepts the response, for at most 5 s.
async fn eventually(app: &TestApp, uri: &str, what: &str, check: impl Fn(u16, &Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.get(uri).await;
        let body = if r.status.as_u16() == 304 {
            Value::Null
        } else {
            r.json()
        };
        if check(r.status.as_u16(), &body) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {} {body}", r.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A SUCCESS result, read twice so the second read is a hit; its record key.
async fn cached_done_result(app: &TestApp) -> (String, String) {
    let id = new_id();
    let uri = format!("/results/{id}");
    assert_eq!(
        app.put(&uri, json!({"state": "SUCCESS", "name": "t"})).await.status,
        201
    );
    let before = stats(app).hits;
    // The first read may come while tracking is still being turned on; read until one hits.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(app).hits == before {
        assert_eq!(app.get(&uri).await.status, 200);
        assert!(
            Instant::now() < deadline,
            "never served from the cache: {:?}",
            stats(app)
        );
    }
    (uri, format!("test.mognet.result.{id}"))
}

/// Waits (at most 5 s) until the app's cache is live: tracking is on.
async fn until_live(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.ctx.store().tracking().expect("cache on").cache().is_live() {
        assert!(Instant::now() < deadline, "tracking never came on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cached_app() -> TestApp {
    let app = TestApp::new(Kind::Redis).await;
    until_live(&app).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_result_is_served_from_memory_with_its_ttl_counting_down() {
    let app = cached_app().await;
    let (uri, key) = cached_done_result(&app).await;
    app.redis().cli(&["PEXPIRE", &key, "500000"]);
    eventually(&app, &uri, "ttl after PEXPIRE", |s, b| {
        s == 200 && b["ttl"].as_i64().is_some_and(|t| t <= 500)
    })
    .await;
    let r = app.get(&uri).await;
    assert_eq!(r.status, 200);
    let misses = stats(&app).misses;
    let again = app.get(&uri).await;
    assert_eq!(stats(&app).misses, misses, "a hit, not a miss");
    assert_eq!(again.header("etag"), r.header("etag"));
    // 304 still works from memory.
    let etag = r.header("etag").unwrap().to_owned();
    let not_modified = app
        .call(axum::http::Method::GET, &uri, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(not_modified.status, 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hset_del_expire_and_flushdb_are_seen_by_the_next_reads() {
    let app = cached_app().await;
    let redis = app.redis();

    let (uri, key) = cached_done_result(&app).await;
    redis.cli(&["HSET", &key, "state", "\"FAILURE\""]);
    eventually(&app, &uri, "foreign HSET", |s, b| s == 200 && b["state"] == "FAILURE").await;

    let (uri, key) = cached_done_result(&app).await;
    redis.cli(&["DEL", &key]);
    eventually(&app, &uri, "foreign DEL", |s, _| s == 404).await;

    let (uri, key) = cached_done_result(&app).await;
    redis.cli(&["PEXPIRE", &key, "1"]);
    eventually(&app, &uri, "foreign EXPIRE", |s, _| s == 404).await;

    let (uri, _) = cached_done_result(&app).await;
    let flushes = stats(&app).flushes;
    redis.cli(&["FLUSHDB"]);
    eventually(&app, &uri, "FLUSHDB", |s, _| s == 404).await;
    assert!(stats(&app).flushes > flushes, "FLUSHDB flushed the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_is_served_from_memory_and_its_expiry_answers_410() {
    let app = cached_app().await;
    let id = new_id();
    let uri = format!("/results/{id}/value");
    assert_eq!(
        app.put(&format!("/results/{id}"), json!({"state": "RUNNING"}))
            .await
            .status,
        201
    );
    assert_eq!(
        app.put(&format!("{uri}?state=SUCCESS"), json!({"n": 1})).await.status,
        200
    );
    let hits = stats(&app).hits;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&app).hits < hits + 2 {
        let r = app.get(&uri).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["raw_value"], json!({"n": 1}));
        assert!(Instant::now() < deadline, "the value never came from memory");
    }
    app.redis().cli(&[
        "HSET",
        &format!("test.mognet.result.{id}/value"),
        "contents",
        "{\"value_type\": \"builtins:dict\", \"raw_value\": {\"n\": 2}}",
        "encoding",
        "null",
    ]);
    eventually(&app, &uri, "foreign value rewrite", |s, b| {
        s == 200 && b["raw_value"] == json!({"n": 2})
    })
    .await;
    app.redis()
        .cli(&["PEXPIRE", &format!("test.mognet.result.{id}/value"), "1"]);
    eventually(&app, &uri, "value expiry", |s, _| s == 410).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_patch_through_another_replica_is_seen() {
    let a = cached_app().await;
    let url = a.redis().url();
    let settings = test_settings();
    let other = RedisStore::connect(&url, &settings.redis).await.unwrap();
    other.start_cache(settings.cache.max_bytes).await.unwrap();
    let b = TestApp::over(settings, Store::Redis(other), None, None);
    let (uri, _) = cached_done_result(&a).await;
    let r = b
        .call(
            axum::http::Method::PATCH,
            &format!("{uri}?force=true"),
            Some(json!({"state": "REVOKED"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    eventually(&a, &uri, "forced patch on another replica", |s, b| {
        s == 200 && b["state"] == "REVOKED"
    })
    .await;
    // The replica that wrote answers the new state at once.
    assert_eq!(b.get(&uri).await.json()["state"], "REVOKED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_seen_at_once() {
    let app = cached_app().await;
    let (uri, _) = cached_done_result(&app).await;
    let r = app
        .call(
            axum::http::Method::PATCH,
            &format!("{uri}?force=true"),
            Some(json!({"state": "FAILURE"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    // No polling: a write invalidates before it is acknowledged.
    assert_eq!(app.get(&uri).await.json()["state"], "FAILURE");
    assert_eq!(app.delete(&uri).await.status, 204);
    assert_eq!(app.get(&uri).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_foreign_rewrites_end_with_every_reader_seeing_the_last() {
    let app = cached_app().await;
    let (uri, key) = cached_done_result(&app).await;
    let port = app.redis().port;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let key = key.clone();
            tokio::task::spawn_blocking(move || {
                for i in 0..50 {
                    crate::support::redis::raw_command(port, &format!("HSET {key} node_id '\"w{w}-{i}\"'"));
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let router = app.router.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                use tower::ServiceExt;
                for _ in 0..200 {
                    let req = axum::http::Request::get(&uri).body(axum::body::Body::empty()).unwrap();
                    let r = router.clone().oneshot(req).await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    crate::support::redis::raw_command(port, &format!("HSET {key} node_id '\"last\"'"));
    eventually(&app, &uri, "the last rewrite", |s, b| {
        s == 200 && b["node_id"] == "last"
    })
    .await;
    // Read many more times: no reader ever goes back to an older write.
    for _ in 0..50 {
        assert_eq!(app.get(&uri).await.json()["node_id"], "last");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_under_its_bound_with_ten_times_as_many_results_read() {
    let bound: u64 = 256 * 1024;
    let server = RedisServer::start();
    let mut settings = test_settings();
    settings.cache.max_bytes = bound;
    let store = RedisStore::connect(&server.url(), &settings.redis).await.unwrap();
    store.start_cache(bound).await.unwrap();
    let app = TestApp::over(settings, Store::Redis(store), Some(server), None);
    until_live(&app).await;
    // One entry weighs about 700 bytes here: 4 000 results are about ten times the bound.
    let ids: Vec<String> = (0..4000).map(|_| new_id()).collect();
    for chunk in ids.chunks(200) {
        let uris: Vec<String> = chunk.iter().map(|id| format!("/results/{id}")).collect();
        let puts = uris
            .iter()
            .map(|uri| app.put(uri, json!({"state": "SUCCESS", "name": "bound"})));
        for r in futures::future::join_all(puts).await {
            assert_eq!(r.status, 201);
        }
    }
    // Each chunk read twice: a result is kept on its second recent miss.
    for chunk in ids.chunks(200) {
        let uris: Vec<String> = chunk.iter().map(|id| format!("/results/{id}")).collect();
        for _ in 0..2 {
            let gets = uris.iter().map(|uri| app.get(uri));
            for r in futures::future::join_all(gets).await {
                assert_eq!(r.status, 200);
            }
        }
    }
    let s = stats(&app);
    assert!(s.bytes <= bound, "{s:?}");
    assert!(s.evictions > 0, "{s:?}");
    assert!(s.bytes * 10 >= bound * 5, "the cache is used: {s:?}");
    let metrics = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for name in [
        "resultd_cache_requests_total",
        "resultd_cache_deferred_total",
        "resultd_cache_evictions_total",
        "resultd_cache_invalidations_total",
        "resultd_cache_bytes",
    ] {
        assert!(text.contains(name), "{name} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_invalidation_feed_flushes_and_comes_back() {
    let app = cached_app().await;
    let (uri, key) = cached_done_result(&app).await;
    let flushes = stats(&app).flushes;
    app.redis().cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    app.redis().cli(&["HSET", &key, "state", "\"INVALID\""]);
    eventually(&app, &uri, "write while the feed was down", |s, b| {
        s == 200 && b["state"] == "INVALID"
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&app).flushes == flushes || !app.ctx.store().tracking().unwrap().cache().is_live() {
        assert!(
            Instant::now() < deadline,
            "no flush, or tracking not back: {:?}",
            stats(&app)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Tracking is on again: the result is cached anew and a later write is still seen.
    let (uri, key) = cached_done_result(&app).await;
    app.redis().cli(&["HSET", &key, "state", "\"FAILURE\""]);
    eventually(&app, &uri, "write after the feed came back", |s, b| {
        s == 200 && b["state"] == "FAILURE"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_nothing_is_kept() {
    let app = TestApp::new(Kind::RedisUncached).await;
    assert!(app.ctx.store().tracking().is_none());
    let id = new_id();
    assert_eq!(
        app.put(&format!("/results/{id}"), json!({"state": "SUCCESS"}))
            .await
            .status,
        201
    );
    app.redis()
        .cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"FAILURE\""]);
    assert_eq!(app.get(&format!("/results/{id}")).await.json()["state"], "FAILURE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_read_once_is_not_kept_and_one_read_again_is() {
    let app = cached_app().await;
    let id = new_id();
    let uri = format!("/results/{id}");
    assert_eq!(app.put(&uri, json!({"state": "SUCCESS"})).await.status, 201);
    let before = stats(&app);
    assert_eq!(app.get(&uri).await.status, 200);
    let after_one = stats(&app);
    assert_eq!(after_one.deferred, before.deferred + 1, "{after_one:?}");
    assert_eq!(
        after_one.entries, before.entries,
        "a first miss is not kept: {after_one:?}"
    );
    assert_eq!(app.get(&uri).await.status, 200);
    let after_two = stats(&app);
    assert_eq!(after_two.deferred, after_one.deferred, "{after_two:?}");
    assert_eq!(
        after_two.entries,
        after_one.entries + 1,
        "a second miss is kept: {after_two:?}"
    );
    assert_eq!(app.get(&uri).await.status, 200);
    assert_eq!(stats(&app).hits, after_two.hits + 1, "the third read is a hit");
}
