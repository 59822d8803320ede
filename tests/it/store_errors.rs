//! Redis refusing commands: a full Redis (`OOM`), a read-only replica, an ACL that forbids a
//! command, a busy script, a replica cut off from its primary, and a flushed script cache. Each
//! answers a stable problem, and nothing a refused write would have stored is stored.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use resultd::store::{RedisStore, Store};
use serde_json::json;

use crate::support::{Kind, RedisServer, TestApp, TestResponse, new_id, test_settings};

/// `used_memory` of a server, in bytes.
fn used_memory(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// `len` characters that gzip cannot shrink much (a xorshift over 64 symbols), as a JSON string.
fn incompressible(seed: u64, len: usize) -> String {
    const SYMBOLS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(SYMBOLS[(x % 64) as usize])
        })
        .collect()
}

fn assert_problem(r: &TestResponse, status: StatusCode, code: &str, retry_after: Option<&str>) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.problem_code(), code);
    assert_eq!(r.header("retry-after"), retry_after, "Retry-After of {code}");
}

async fn increment(app: &TestApp, uri: &str) -> TestResponse {
    app.call(Method::POST, uri, Some(json!({"by": 1})), &[]).await
}

#[tokio::test]
async fn value_writes_turn_507_store_full_and_redis_stays_near_maxmemory_when_redis_is_full() {
    const MAXMEMORY: u64 = 5 * 1024 * 1024;
    const WRITES: u64 = 60;
    const VALUE_CHARS: usize = 200 * 1024;
    let app = TestApp::new(Kind::Redis).await;
    let redis = app.redis();
    // Stored before the store fills: each must stay readable.
    let early = new_id();
    assert_eq!(
        app.put(&format!("/results/{early}"), json!({"name": "early"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = app
        .put(&format!("/results/{early}/value?state=SUCCESS"), json!({"n": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let state = "/state/test/full-store";
    assert_eq!(app.put(state, json!({"count": 1})).await.status, StatusCode::CREATED);
    assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]), "OK");
    assert_eq!(redis.cli(&["CONFIG", "SET", "maxmemory", &MAXMEMORY.to_string()]), "OK");

    let (mut stored, mut full, mut first_full) = (0u64, 0u64, None);
    for i in 0..WRITES {
        let id = new_id();
        let created = app.put(&format!("/results/{id}"), json!({"name": "flood"})).await;
        let r = if created.status == StatusCode::CREATED {
            let value = json!(incompressible(i + 1, VALUE_CHARS));
            app.put(&format!("/results/{id}/value?state=SUCCESS"), value).await
        } else {
            created
        };
        if r.status == StatusCode::OK {
            stored += 1;
            assert!(
                first_full.is_none(),
                "write {i} was stored after write {first_full:?} was refused"
            );
        } else {
            assert_problem(&r, StatusCode::INSUFFICIENT_STORAGE, "store-full", Some("5"));
            full += 1;
            first_full.get_or_insert(i);
        }
    }
    let used = used_memory(redis);
    eprintln!(
        "flood: {WRITES} writes of ~{VALUE_CHARS} B values: {stored} stored, {full} answered 507 store-full; \
         Redis used_memory {used} B against maxmemory {MAXMEMORY} B ({:.2}x)",
        used as f64 / MAXMEMORY as f64
    );
    assert!(full > 0, "no write was refused: {stored} stored");
    assert!(stored > 0, "the first writes fit in 5 MB");
    // Each script is refused before it runs once memory is over the limit: at most the last
    // admitted write (one value) lands past it.
    assert!(
        used < MAXMEMORY + MAXMEMORY / 2,
        "used_memory {used} against maxmemory {MAXMEMORY}"
    );

    // Memory now sits just around the limit, where a small write may still fit: put the limit
    // well below it, as a full Redis would be.
    assert_eq!(
        redis.cli(&["CONFIG", "SET", "maxmemory", &(used / 2).to_string()]),
        "OK"
    );
    // Reads keep working, the state read's TTL refresh included.
    let r = app.get(&format!("/results/{early}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.get(&format!("/results/{early}/value")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["raw_value"], json!({"n": 1}));
    let r = app.get(state).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"count": 1}));
    // Every kind of write is refused the same way, the increment included.
    let r = increment(&app, &format!("{state}/count/increment")).await;
    assert_problem(&r, StatusCode::INSUFFICIENT_STORAGE, "store-full", Some("5"));
    let r = app.put(&format!("{state}/count"), json!(7)).await;
    assert_problem(&r, StatusCode::INSUFFICIENT_STORAGE, "store-full", Some("5"));
    let r = app.patch(state, json!({"other": 2})).await;
    assert_problem(&r, StatusCode::INSUFFICIENT_STORAGE, "store-full", Some("5"));
    assert_eq!(
        app.get(state).await.json(),
        json!({"count": 1}),
        "nothing of the refused writes landed"
    );
    // Deletes are how space is made: they still work.
    assert_eq!(app.delete(&format!("{state}/count")).await.status, StatusCode::OK);
    assert_eq!(
        app.delete(&format!("/results/{early}")).await.status,
        StatusCode::NO_CONTENT
    );
}

/// Waits until `replica` has finished its sync with its primary.
async fn wait_for_link(replica: &RedisServer) {
    let start = Instant::now();
    while !replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
        assert!(start.elapsed() < Duration::from_secs(10), "the replica did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn writes_answer_503_store_read_only_when_redis_became_a_replica() {
    let app = TestApp::new(Kind::Redis).await;
    let old_primary = app.redis();
    let id = new_id();
    assert_eq!(
        app.put(&format!("/results/{id}"), json!({"name": "x"})).await.status,
        StatusCode::CREATED
    );
    let state = "/state/test/read-only";
    assert_eq!(app.put(state, json!({"count": 1})).await.status, StatusCode::CREATED);
    // A failover resultd was not told of: another server takes the data and becomes the
    // primary, and the one resultd talks to follows it as a replica.
    let new_primary = RedisServer::start();
    new_primary.cli(&["REPLICAOF", "127.0.0.1", &old_primary.port.to_string()]);
    wait_for_link(&new_primary).await;
    new_primary.cli(&["REPLICAOF", "NO", "ONE"]);
    old_primary.cli(&["REPLICAOF", "127.0.0.1", &new_primary.port.to_string()]);
    wait_for_link(old_primary).await;

    let mut r = app.get(&format!("/results/{id}")).await;
    // The role change may close resultd's connections once; the read after the reconnect counts.
    for _ in 0..20 {
        if r.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        r = app.get(&format!("/results/{id}")).await;
    }
    assert_eq!(r.status, StatusCode::OK, "reads are served by the replica");
    let r = app.put(&format!("/results/{id}/value?state=SUCCESS"), json!(1)).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-read-only", Some("1"));
    let r = app.put(&format!("/results/{}", new_id()), json!({"name": "y"})).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-read-only", Some("1"));
    let r = increment(&app, &format!("{state}/count/increment")).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-read-only", Some("1"));
    let r = app.delete(&format!("{state}/count")).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-read-only", Some("1"));
    let r = app.delete(state).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-read-only", Some("1"));
    assert_eq!(new_primary.cli(&["HGET", "test.mognet.state.read-only", "count"]), "1");
}

#[tokio::test]
async fn increment_answers_store_permission_denied_when_the_acl_forbids_hincrby() {
    let redis = RedisServer::start();
    assert_eq!(
        redis.cli(&[
            "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-hincrby"
        ]),
        "OK"
    );
    let settings = test_settings();
    let url = format!("redis://limited:pw@127.0.0.1:{}/0", redis.port);
    let store = RedisStore::connect(&url, &settings.redis).await.expect("redis store");
    let app = TestApp::over(settings, Store::Redis(store), Some(redis), None);
    let state = "/state/test/acl";
    assert_eq!(app.put(state, json!({"count": 1})).await.status, StatusCode::CREATED);
    let r = increment(&app, &format!("{state}/count/increment")).await;
    assert_problem(&r, StatusCode::INTERNAL_SERVER_ERROR, "store-permission-denied", None);
    assert_eq!(app.get(state).await.json(), json!({"count": 1}));
}

#[tokio::test]
async fn increment_of_a_string_field_still_answers_409_state_not_integer() {
    let app = TestApp::new(Kind::Redis).await;
    let state = "/state/test/nan";
    assert_eq!(app.put(state, json!({"name": "ten"})).await.status, StatusCode::CREATED);
    let r = increment(&app, &format!("{state}/name/increment")).await;
    assert_problem(&r, StatusCode::CONFLICT, "state-not-integer", None);
    app.redis()
        .cli(&["HSET", "test.mognet.state.nan", "big", "9223372036854775807"]);
    let r = increment(&app, &format!("{state}/big/increment")).await;
    assert_problem(&r, StatusCode::CONFLICT, "increment-overflow", None);
}

#[tokio::test]
async fn requests_answer_503_store_unavailable_while_a_script_keeps_redis_busy() {
    let app = TestApp::new(Kind::Redis).await;
    let redis = app.redis();
    let id = new_id();
    assert_eq!(
        app.put(&format!("/results/{id}"), json!({"name": "x"})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(redis.cli(&["CONFIG", "SET", "busy-reply-threshold", "100"]), "OK");
    let mut busy = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "EVAL", "while true do end", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = app.get(&format!("/results/{id}")).await;
    let w = increment(&app, "/state/test/busy/count/increment").await;
    let killed = redis.cli(&["SCRIPT", "KILL"]);
    let _ = busy.kill();
    let _ = busy.wait();
    assert_eq!(killed, "OK");
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", Some("1"));
    assert_problem(&w, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", Some("1"));
    let start = Instant::now();
    while app.get(&format!("/results/{id}")).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no recovery after SCRIPT KILL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reads_answer_503_store_unavailable_when_a_replica_lost_its_primary_and_serves_no_stale_data() {
    let app = TestApp::new(Kind::Redis).await;
    let redis = app.redis();
    assert_eq!(redis.cli(&["CONFIG", "SET", "replica-serve-stale-data", "no"]), "OK");
    // A primary that is not there: the link stays down.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    redis.cli(&["REPLICAOF", "127.0.0.1", &gone.to_string()]);
    let r = app.get(&format!("/results/{}", new_id())).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", Some("1"));
    redis.cli(&["REPLICAOF", "NO", "ONE"]);
}

#[tokio::test]
async fn writes_still_work_after_redis_forgets_its_scripts() {
    let app = TestApp::new(Kind::Redis).await;
    let state = "/state/test/noscript";
    assert_eq!(
        increment(&app, &format!("{state}/count/increment")).await.json(),
        json!({"value": 1})
    );
    // NOSCRIPT on the next EVALSHA: the script is loaded again and the call answered once.
    assert_eq!(app.redis().cli(&["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(
        increment(&app, &format!("{state}/count/increment")).await.json(),
        json!({"value": 2})
    );
    assert_eq!(app.get(state).await.json(), json!({"count": 2}));
}
