//! Redis topologies through fred: ACL users, TLS with a private CA, Sentinel failover, Cluster.
//!
//! Each test starts its own processes on free loopback ports and stays well under 60 s.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use resultd::store::{RedisStore, Store};
use serde_json::json;

use crate::support::topology::{ClusterSet, SentinelSet, TlsRedis, cli, eventually, have_openssl};
use crate::support::{Kind, RedisServer, TestApp, Topology, new_id, test_settings};

/// Starts `GET {uri}` in the background; its status and how long it took.
fn spawn_get(app: &TestApp, uri: String) -> tokio::task::JoinHandle<(StatusCode, Duration)> {
    let router = app.router.clone();
    tokio::spawn(async move {
        use tower::ServiceExt;
        let started = Instant::now();
        let r = router
            .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        (r.status(), started.elapsed())
    })
}

async fn until_held(app: &TestApp, n: usize) {
    for _ in 0..100 {
        if app.ctx.wait_limiter().held() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the waiters did not register");
}

async fn app_over(url: &str, settings: resultd::config::Settings) -> TestApp {
    let store = RedisStore::connect(url, &settings.redis).await.expect("store");
    TestApp::over(settings, Store::Redis(store), None, None)
}

async fn store_complete_and_read(app: &TestApp) {
    let id = new_id();
    assert_eq!(
        app.put(&format!("/results/{id}"), json!({})).await.status,
        StatusCode::CREATED
    );
    let waiter = spawn_get(app, format!("/results/{id}/value?wait=20"));
    until_held(app, 1).await;
    let r = app.put(&format!("/results/{id}/value?state=SUCCESS"), json!(42)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (status, elapsed) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let r = app.get(&format!("/results/{id}/value")).await;
    assert_eq!(r.json()["raw_value"], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_stores_and_waits() {
    let server = RedisServer::start();
    let setup = server.cli(&["ACL", "SETUSER", "resultd", "on", ">s3cret-pass", "~*", "&*", "+@all"]);
    assert_eq!(setup, "OK");
    assert_eq!(server.cli(&["ACL", "SETUSER", "default", "off"]), "OK");
    let url = format!("redis://resultd:s3cret-pass@127.0.0.1:{}/0", server.port);
    let app = app_over(&url, test_settings()).await;
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);
    assert_eq!(app.ctx.store().wake_mode(), "keyspace-notifications");
    store_complete_and_read(&app).await;
    // The default user is off: only the ACL user got in.
    assert!(!server.cli(&["PING"]).contains("PONG"));
    // A wrong password is an unavailable store (503), not a crash or a 500.
    let wrong = app_over(
        &format!("redis://resultd:wrong@127.0.0.1:{}/0", server.port),
        test_settings(),
    )
    .await;
    let r = wrong.get("/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.problem_code(), "store-unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_without_config_falls_back_to_polling_and_still_wakes() {
    let server = RedisServer::start();
    server.cli(&[
        "ACL", "SETUSER", "limited", "on", ">p4ss", "~*", "&*", "+@all", "-config",
    ]);
    let url = format!("redis://limited:p4ss@127.0.0.1:{}/0", server.port);
    let app = app_over(&url, test_settings()).await;
    assert_eq!(app.ctx.store().wake_mode(), "polling");
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let waiter = spawn_get(&app, format!("/results/{id}?wait=20"));
    until_held(&app, 1).await;
    server.cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"SUCCESS\""]);
    let (status, elapsed) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_stores_and_waits() {
    if !have_openssl() {
        eprintln!("SKIPPED tls_with_a_private_ca_stores_and_waits: the openssl command is not installed");
        return;
    }
    let tls = tokio::task::spawn_blocking(TlsRedis::start).await.unwrap();
    let mut settings = test_settings();
    settings.redis.tls_ca_file = tls.ca_file.display().to_string();
    let app = app_over(&tls.url(), settings).await;
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);
    store_complete_and_read(&app).await;
    // A foreign writer over TLS wakes a waiter through the TLS subscriber.
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let waiter = spawn_get(&app, format!("/results/{id}?wait=20"));
    until_held(&app, 1).await;
    tls.cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"FAILURE\""]);
    assert_eq!(waiter.await.unwrap().0, StatusCode::OK);

    // Without the CA the server's certificate is not trusted: the store is unavailable.
    let untrusted = app_over(&tls.url(), test_settings()).await;
    let r = untrusted.get("/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.problem_code(), "store-unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_stops_startup_with_its_name() {
    let mut settings = test_settings();
    settings.redis.tls_ca_file = "/nonexistent/ca.pem".to_owned();
    let Err(e) = RedisStore::connect("rediss://127.0.0.1:1/0", &settings.redis).await else {
        panic!("connected without a CA file");
    };
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

/// Sentinel: SIGKILL the primary; writes come back on the promoted replica, a record written
/// before reads back, and a waiter started before the failover is woken by a write on the new
/// primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_records_and_waiters() {
    let test_started = Instant::now();
    let set = tokio::task::spawn_blocking(SentinelSet::start).await.unwrap();
    let setup = test_started.elapsed();
    let app = app_over(&set.url(), test_settings()).await;
    assert_eq!(app.ctx.store().wake_mode(), "keyspace-notifications");
    let old_primary = set.primary.port;
    assert_eq!(set.current_primary_port(), Some(old_primary));

    // Before: a completed record and a pending one with a waiter on it.
    let before = new_id();
    app.put(&format!("/results/{before}"), json!({"name": "before"})).await;
    app.put(&format!("/results/{before}/value?state=SUCCESS"), json!("kept"))
        .await;
    let waited = new_id();
    app.put(&format!("/results/{waited}"), json!({})).await;
    // Both must be on the replica before the primary dies (replication is asynchronous).
    let replica = set.replica.port;
    let keys = [
        format!("test.mognet.result.{before}"),
        format!("test.mognet.result.{before}/value"),
        format!("test.mognet.result.{waited}"),
    ];
    let replicated = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), || {
            let mut args = vec!["EXISTS"];
            args.extend(keys.iter().map(String::as_str));
            cli(replica, &args) == "3"
        })
    })
    .await
    .unwrap();
    assert!(replicated, "the replica has the records");
    let waiter = spawn_get(&app, format!("/results/{waited}?wait=55"));
    until_held(&app, 1).await;
    // Let its first look at the record finish: a wait whose first read fails answers 503 at
    // once, by design; one that is already waiting rides out the outage.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut set = set;
    let killed = Instant::now();
    set.primary.kill();

    // Writes fail (503) until the sentinels promote the replica and fred follows them.
    let mut failed_writes = 0;
    let mut writes_back = None;
    while killed.elapsed() < Duration::from_secs(40) {
        let r = app.put(&format!("/results/{}", new_id()), json!({})).await;
        if r.status == StatusCode::CREATED {
            writes_back = Some(killed.elapsed());
            break;
        }
        assert_eq!(r.problem_code(), "store-unavailable");
        failed_writes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes_back = writes_back.expect("writes came back after the failover");
    // The sentinel asked may learn of the failover a moment after the one that led it.
    let asked = Instant::now();
    while set.current_primary_port() != Some(set.replica.port) && asked.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_primary = set.current_primary_port().expect("a primary");
    assert_eq!(new_primary, set.replica.port, "the replica was promoted");

    let r = app.get(&format!("/results/{before}/value")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["raw_value"], "kept");

    // The subscriber follows the primary too; then a foreign write on it wakes the waiter.
    let resubscribed = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(20), || {
            cli(new_primary, &["PUBSUB", "NUMPAT"]).trim() != "0"
        })
    })
    .await
    .unwrap();
    assert!(resubscribed, "the keyspace subscription moved to the new primary");
    let subscribed_after = killed.elapsed();
    if app.ctx.wait_limiter().held() != 1 {
        let (status, elapsed) = waiter.await.unwrap();
        panic!("the waiter ended during the failover: {status} after {elapsed:?}");
    }
    cli(
        new_primary,
        &["HSET", &format!("test.mognet.result.{waited}"), "state", "\"SUCCESS\""],
    );
    let (status, waited_for) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let woken_after = killed.elapsed();
    assert!(woken_after < Duration::from_secs(50), "{woken_after:?}");
    let r = app.get(&format!("/results/{waited}")).await;
    assert_eq!(r.json()["state"], "SUCCESS");
    eprintln!(
        "sentinel failover: setup {setup:?}; writes back {writes_back:?} after SIGKILL ({failed_writes} writes answered 503); \
         subscription on the new primary after {subscribed_after:?}; waiter woken after {woken_after:?} (held {waited_for:?} in all)"
    );
}

fn cluster_of(app: &TestApp) -> &ClusterSet {
    match &app.topology {
        Some(Topology::Cluster(c)) => c,
        _ => panic!("a Cluster-backed app"),
    }
}

/// Cluster: a subscription per primary, waits woken by foreign writes on every node, a value
/// and its state completed across slots, and a listing that covers every primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_waits_completes_and_lists_across_every_primary() {
    let test_started = Instant::now();
    let app = TestApp::new(Kind::Cluster).await;
    let setup = test_started.elapsed();
    let cluster = cluster_of(&app);
    let Store::Redis(redis) = app.ctx.store() else {
        panic!("redis")
    };
    assert!(redis.is_clustered());
    assert_eq!(redis.cluster_primaries().len(), 3);
    assert_eq!(redis.subscriber_count(), 3, "one keyspace subscription per primary");
    assert_eq!(app.ctx.store().wake_mode(), "keyspace-notifications");
    for node in &cluster.nodes {
        assert_eq!(cli(node.port, &["PUBSUB", "NUMPAT"]), "1", "node {}", node.port);
    }

    // A waiter per node, each woken by a plain HSET on the node that holds its key.
    let mut per_node: std::collections::BTreeMap<u16, String> = std::collections::BTreeMap::new();
    while per_node.len() < 3 {
        let id = new_id();
        per_node
            .entry(cluster.node_of(&format!("test.mognet.result.{id}")))
            .or_insert(id);
    }
    let mut woken = Vec::new();
    for (port, id) in &per_node {
        app.put(&format!("/results/{id}"), json!({})).await;
        let waiter = spawn_get(&app, format!("/results/{id}?wait=20"));
        until_held(&app, 1).await;
        cli(
            *port,
            &["HSET", &format!("test.mognet.result.{id}"), "state", "\"SUCCESS\""],
        );
        let (status, elapsed) = waiter.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(elapsed < Duration::from_secs(10), "node {port}: {elapsed:?}");
        woken.push(elapsed);
    }

    // Value and state in different slots (on different nodes): completion still lands both.
    let split = loop {
        let id = new_id();
        if cluster.node_of(&format!("test.mognet.result.{id}"))
            != cluster.node_of(&format!("test.mognet.result.{id}/value"))
        {
            break id;
        }
    };
    app.put(&format!("/results/{split}"), json!({})).await;
    let waiter = spawn_get(&app, format!("/results/{split}/value?wait=20"));
    until_held(&app, 1).await;
    let r = app
        .put(&format!("/results/{split}/value?state=SUCCESS"), json!({"n": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "SUCCESS");
    assert_eq!(waiter.await.unwrap().0, StatusCode::OK);
    let r = app.get(&format!("/results/{split}/value")).await;
    assert_eq!(r.json()["raw_value"], json!({"n": 1}));

    // A listing walks every primary.
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let id = new_id();
        app.put(&format!("/results/{id}?app=listed"), json!({})).await;
        ids.insert(id);
    }
    let nodes_used: std::collections::BTreeSet<u16> = ids
        .iter()
        .map(|id| cluster.node_of(&format!("listed.mognet.result.{id}")))
        .collect();
    assert_eq!(nodes_used.len(), 3);
    let (seen, pages) = crate::listing::list_all(&app, "app=listed", 7).await;
    assert_eq!(seen, ids);
    eprintln!(
        "cluster: setup {setup:?}; 3 subscriptions; waits woken after {woken:?}; {} results listed in {pages} pages of 7 over 3 primaries; total {:?}",
        seen.len(),
        test_started.elapsed()
    );
}
