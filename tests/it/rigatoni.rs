//! Rigatoni's state store over HTTP: resume tokens and locks written by the real
//! `rigatoni-stores` 0.2.0 `RedisStore` (the `tests/rigatoni-writer` program) against a real
//! redis-server, read back as raw BSON and canonical Extended JSON, long-polls woken by the
//! writer's rewrites, and the write rules on both stores.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use resultd::config::Settings;
use resultd::server;
use resultd::store::{RedisStore, ResultStore, Store, SwapOutcome};
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Kind, RedisServer, TestApp, TestResponse, test_settings};

/// `{"_data": "8266A1B2C3000000012B022C0100296E5A1004"}` as BSON (55 bytes).
const DATA: &str = "8266A1B2C3000000012B022C0100296E5A1004";
const DATA2: &str = "8266A1B2D4000000022B022C0100296E5A1004";

fn bson_of(data: &str) -> Vec<u8> {
    let mut doc = Vec::new();
    let mut body = vec![0x02];
    body.extend_from_slice(b"_data\0");
    body.extend_from_slice(&u32::try_from(data.len() + 1).unwrap().to_le_bytes());
    body.extend_from_slice(data.as_bytes());
    body.push(0);
    body.push(0);
    doc.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_le_bytes());
    doc.extend_from_slice(&body);
    doc
}

fn settings(writable: bool) -> Settings {
    let mut s = test_settings();
    s.rigatoni.enabled = true;
    s.rigatoni.writable = writable;
    s
}

/// The writer program, built once if `make rigatoni-writer` has not built it.
fn writer_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let binary = root.join("target/rigatoni-writer/debug/rigatoni-writer");
        if !binary.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--locked", "--manifest-path"])
                .arg(root.join("tests/rigatoni-writer/Cargo.toml"))
                .arg("--target-dir")
                .arg(root.join("target/rigatoni-writer"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "the Rigatoni writer did not build");
        }
        binary
    })
}

/// Runs the writer against `redis` and returns what it printed.
async fn writer(redis: &RedisServer, args: &[&str]) -> String {
    let url = redis.url();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(writer_binary())
            .arg(&url)
            .args(&args)
            .output()
            .expect("the writer runs");
        assert!(
            out.status.success(),
            "rigatoni-writer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .await
    .expect("the writer task")
}

/// The app over a real redis-server, subscribed to Rigatoni's keyspace events as `serve` is.
async fn redis_app(settings: Settings) -> TestApp {
    let redis = RedisServer::start();
    let store = RedisStore::connect_watching(&redis.url(), &settings.redis, &server::keyspace_watches(&settings))
        .await
        .expect("redis store");
    store.start_cache(settings.cache.max_bytes).await.expect("result cache");
    TestApp::over(settings, Store::Redis(store), Some(redis), None)
}

async fn app(kind: Kind, writable: bool) -> TestApp {
    match kind {
        Kind::Memory => TestApp::with_settings(kind, settings(writable)).await,
        _ => {
            let mut s = settings(writable);
            if matches!(kind, Kind::RedisUncached) {
                s.cache.max_bytes = 0;
            }
            redis_app(s).await
        }
    }
}

/// Stores `value` at `key` as a foreign writer would, whatever is there.
async fn foreign_write(app: &TestApp, key: &str, value: &[u8]) {
    let store = app.ctx.store();
    let value = Bytes::copy_from_slice(value);
    for _ in 0..10 {
        let current = store.read_string(key).await.unwrap().map(|s| s.value);
        if store
            .swap_string(key, current.as_ref(), &value, None, false)
            .await
            .unwrap()
            == SwapOutcome::Swapped
        {
            return;
        }
    }
    panic!("could not write {key}");
}

async fn get_with(app: &TestApp, uri: &str, headers: &[(&str, &str)]) -> TestResponse {
    app.call(Method::GET, uri, None, headers).await
}

async fn put_bson(app: &TestApp, uri: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> TestResponse {
    let mut builder = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("content-type", "application/bson");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    app.send(builder.body(Body::from(body)).unwrap()).await
}

async fn list_names(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let uri = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={}", urlencoding(c)),
            None => format!("{path}?limit={limit}"),
        };
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let b = r.json();
        items.extend(b["items"].as_array().unwrap().iter().cloned());
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("the listing did not end");
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_written_by_rigatoni_read_back_as_bson_and_extended_json() {
    let app = redis_app(settings(false)).await;
    let redis = app.redis();
    // v0.1's key form (the bare collection), v0.2's pipeline form, a BinData token with a TTL,
    // and a name holding `.` and `:`.
    writer(redis, &["save", "orders", DATA]).await;
    let v02 = writer(redis, &["save-v02", "shop", "orders", DATA]).await;
    assert_eq!(v02, "resume_token:shop:orders");
    writer(redis, &["save-bin", "legacy", "8201", "600"]).await;
    writer(redis, &["save", "shop.v2:line.items", DATA2]).await;
    let keys = redis.cli(&["--scan", "--pattern", "rigatoni:*"]);
    assert!(
        keys.contains("rigatoni:resume_token:resume_token:shop:orders"),
        "{keys}"
    );

    let items = list_names(&app, "/rigatoni/resume-tokens", 100).await;
    assert_eq!(
        items,
        vec![
            json!({"name": "legacy", "size": 19, "ttl": items[0]["ttl"]}),
            json!({"name": "orders", "size": 55, "ttl": null}),
            json!({"name": "resume_token:shop:orders", "size": 55, "ttl": null}),
            json!({"name": "shop.v2:line.items", "size": 55, "ttl": null}),
        ]
    );
    let ttl = items[0]["ttl"].as_i64().unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");

    let r = app.get("/rigatoni/resume-tokens/resume_token%3Ashop%3Aorders").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"name": "resume_token:shop:orders", "token": {"_data": DATA}, "size": 55, "ttl": null,
               "cluster_time": {"t": 0x66A1_B2C3_u32, "i": 1}})
    );
    let etag = r.header("etag").unwrap().to_owned();

    // The raw bytes are exactly what Rigatoni stored.
    let raw = get_with(
        &app,
        "/rigatoni/resume-tokens/resume_token:shop:orders",
        &[("accept", "application/bson")],
    )
    .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.header("content-type"), Some("application/bson"));
    assert_eq!(raw.header("etag"), Some(etag.as_str()));
    let stored = app
        .ctx
        .store()
        .read_string("rigatoni:resume_token:resume_token:shop:orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.body, stored.value);
    assert_eq!(raw.body.as_ref(), bson_of(DATA).as_slice());

    let bin = app.get("/rigatoni/resume-tokens/legacy").await.json();
    assert_eq!(
        bin["token"],
        json!({"_data": {"$binary": {"base64": "ggE=", "subType": "00"}}})
    );
    assert_eq!(bin["cluster_time"], Value::Null);
    let dotted = app.get("/rigatoni/resume-tokens/shop.v2%3Aline.items").await.json();
    assert_eq!(dotted["token"], json!({"_data": DATA2}));

    // Reads never add or refresh a TTL.
    assert_eq!(redis.cli(&["TTL", "rigatoni:resume_token:orders"]), "-1");
    let legacy_ttl: i64 = redis.cli(&["TTL", "rigatoni:resume_token:legacy"]).parse().unwrap();
    assert!(legacy_ttl <= ttl, "{legacy_ttl} > {ttl}");

    let missing = app.get("/rigatoni/resume-tokens/nope").await;
    assert_eq!(
        (missing.status, missing.problem_code()),
        (StatusCode::NOT_FOUND, "token-not-found".to_owned())
    );
    // What Rigatoni's own list_resume_tokens reads back is the same set.
    let listed = writer(redis, &["list"]).await;
    assert_eq!(listed.lines().count(), 4, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_woken_by_rigatonis_rewrite_and_a_same_token_rewrite_keeps_the_etag() {
    let app = redis_app(settings(false)).await;
    let redis_server = app.redis();
    // Woken by keyspace events (class `$` for string writes turned on at connect), not by polling.
    assert_eq!(app.ctx.store().wake_mode(), "keyspace-notifications");
    let classes = redis_server.cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(
        classes
            .lines()
            .nth(1)
            .is_some_and(|c| c.contains('$') && c.contains('K')),
        "{classes}"
    );
    writer(redis_server, &["save", "orders", DATA]).await;
    let first = app.get("/rigatoni/resume-tokens/orders").await;
    let etag = first.header("etag").unwrap().to_owned();

    // Rigatoni rewrites the same token on every event: the ETag stays.
    writer(redis_server, &["save", "orders", DATA]).await;
    let again = get_with(&app, "/rigatoni/resume-tokens/orders", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    // No change until the deadline: 304.
    let idle = get_with(
        &app,
        "/rigatoni/resume-tokens/orders?wait=0.3",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(idle.status, StatusCode::NOT_MODIFIED);

    // A held wait ends with the new token once Rigatoni writes one.
    let router = app.router.clone();
    let held_etag = etag.clone();
    let held = tokio::spawn(async move {
        use tower::ServiceExt;
        let request = Request::builder()
            .uri("/rigatoni/resume-tokens/orders?wait=20")
            .header("if-none-match", held_etag)
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body)
    });
    // Wait (bounded) until the request is held, then rewrite through the real writer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.ctx.wait_limiter().held() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.ctx.wait_limiter().held(), 1, "the wait was not held");
    writer(redis_server, &["save", "orders", DATA2, "120"]).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let b: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(b["token"], json!({"_data": DATA2}));
    let ttl = b["ttl"].as_i64().unwrap();
    assert!((110..=120).contains(&ttl), "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_taken_by_rigatoni_show_their_owner_and_ttl_read_only() {
    let app = redis_app(settings(true)).await;
    let redis = app.redis();
    assert_eq!(
        writer(redis, &["lock", "rigatoni:lock:shop:orders", "pipeline-a", "30"]).await,
        "acquired"
    );
    assert_eq!(
        writer(redis, &["lock", "rigatoni:lock:shop:orders", "pipeline-b", "30"]).await,
        "held"
    );
    assert_eq!(
        writer(redis, &["lock", "rigatoni:lock:__deployment__", "pipeline-b", "60"]).await,
        "acquired"
    );
    let items = list_names(&app, "/rigatoni/locks", 1).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        (&items[0]["name"], &items[0]["owner"]),
        (&json!("__deployment__"), &json!("pipeline-b"))
    );
    assert_eq!(
        (&items[1]["name"], &items[1]["owner"]),
        (&json!("shop:orders"), &json!("pipeline-a"))
    );
    let ttl = items[1]["ttl"].as_i64().unwrap();
    assert!((1..=30).contains(&ttl), "{ttl}");
    // Locks have no write route, and listing them did not touch them.
    let r = app.call(Method::PUT, "/rigatoni/locks", Some(json!({})), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        writer(redis, &["release", "rigatoni:lock:shop:orders", "pipeline-a"]).await,
        "released"
    );
    let items = list_names(&app, "/rigatoni/locks", 10).await;
    assert_eq!(items.len(), 1, "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_written_over_http_are_what_rigatoni_reads_back() {
    let app = redis_app(settings(true)).await;
    let created = app
        .call(
            Method::PUT,
            "/rigatoni/resume-tokens/resume_token%3Ashop%3Aorders",
            Some(json!({"_data": DATA})),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let listed = writer(app.redis(), &["list"]).await;
    assert_eq!(listed, format!(r#"resume_token:shop:orders={{"_data":"{DATA}"}}"#));
    // Then Rigatoni writes again: the ETag resultd handed out no longer matches.
    writer(app.redis(), &["save", "resume_token:shop:orders", DATA2]).await;
    let etag = created.header("etag").unwrap();
    let stale = put_bson(
        &app,
        "/rigatoni/resume-tokens/resume_token:shop:orders",
        bson_of(DATA),
        &[("if-match", etag)],
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.problem_code(), "precondition-failed");
}

async fn a_corrupt_value_is_a_422_never_a_500(kind: Kind) {
    let app = app(kind, false).await;
    foreign_write(&app, "rigatoni:resume_token:bad", b"not bson!").await;
    let mut short = bson_of(DATA);
    short.truncate(30);
    foreign_write(&app, "rigatoni:resume_token:short", &short).await;
    let mut wrong = bson_of(DATA);
    wrong[4] = 0x7e;
    foreign_write(&app, "rigatoni:resume_token:wrong", &wrong).await;
    for name in ["bad", "short", "wrong"] {
        for accept in ["application/json", "application/bson"] {
            let r = get_with(&app, &format!("/rigatoni/resume-tokens/{name}"), &[("accept", accept)]).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name} {accept}");
            assert_eq!(r.problem_code(), "invalid-bson");
        }
    }
    // A key of another type is no token either.
    app.ctx
        .store()
        .write_hashes(&[resultd::store::HashWrite::set(
            "rigatoni:resume_token:hash".to_owned(),
            vec![("f".to_owned(), Bytes::from_static(b"v"))],
            None,
        )])
        .await
        .unwrap();
    let r = app.get("/rigatoni/resume-tokens/hash").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-bson".to_owned())
    );
    // The listing does not decode values, so bad ones do not fail it.
    let names: Vec<Value> = list_names(&app, "/rigatoni/resume-tokens", 2)
        .await
        .into_iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("bad"), json!("short"), json!("wrong")]);
}

async fn writes_need_writable_and_a_precondition(kind: Kind) {
    let ro = app(kind, false).await;
    let r = ro
        .call(
            Method::PUT,
            "/rigatoni/resume-tokens/orders",
            Some(json!({"_data": DATA})),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::FORBIDDEN, "layout-read-only".to_owned())
    );
    assert!(
        ro.ctx
            .store()
            .read_string("rigatoni:resume_token:orders")
            .await
            .unwrap()
            .is_none()
    );

    let app = app(kind, true).await;
    let uri = "/rigatoni/resume-tokens/orders";
    let r = app.call(Method::PUT, uri, Some(json!({"_data": DATA})), &[]).await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::PRECONDITION_REQUIRED, "precondition-required".to_owned())
    );
    let r = app
        .call(
            Method::PUT,
            uri,
            Some(json!({"_data": DATA})),
            &[("if-match", "\"abc\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );

    let created = app
        .call(
            Method::PUT,
            uri,
            Some(json!({"_data": DATA})),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["token"], json!({"_data": DATA}));
    assert_eq!(created.json()["ttl"], Value::Null);
    let etag = created.header("etag").unwrap().to_owned();
    let stored = app
        .ctx
        .store()
        .read_string("rigatoni:resume_token:orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value.as_ref(), bson_of(DATA).as_slice());
    assert_eq!(stored.ttl_ms, None);

    let again = app
        .call(
            Method::PUT,
            uri,
            Some(json!({"_data": DATA2})),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);

    // Raw BSON with the right ETag and a TTL: SET … EX.
    let replaced = put_bson(&app, &format!("{uri}?ttl=300"), bson_of(DATA2), &[("if-match", &etag)]).await;
    assert_eq!(
        replaced.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&replaced.body)
    );
    let etag2 = replaced.header("etag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    let ttl = app.get(uri).await.json()["ttl"].as_i64().unwrap();
    assert!((290..=300).contains(&ttl), "{ttl}");
    // Without ?ttl= the plain SET drops the TTL.
    let plain = put_bson(&app, uri, bson_of(DATA), &[("if-match", "*")]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(app.get(uri).await.json()["ttl"], Value::Null);
    // The same bytes give the same ETag as the first write.
    assert_eq!(plain.header("etag"), Some(etag.as_str()));

    for (body, code) in [
        (b"nope".to_vec(), "invalid-bson"),
        (
            {
                let mut b = bson_of(DATA);
                b.push(0);
                b
            },
            "invalid-bson",
        ),
    ] {
        let r = put_bson(&app, uri, body, &[("if-match", "*")]).await;
        assert_eq!(
            (r.status, r.problem_code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code.to_owned())
        );
    }
    let r = app
        .call(Method::PUT, uri, Some(json!([1, 2])), &[("if-match", "*")])
        .await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-bson".to_owned())
    );
    let r = app
        .call(
            Method::PUT,
            &format!("{uri}?ttl=0"),
            Some(json!({"_data": DATA})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::BAD_REQUEST, "invalid-query".to_owned())
    );
    let text = app
        .send(
            Request::builder()
                .method(Method::PUT)
                .uri(uri)
                .header("content-type", "text/plain")
                .header("if-match", "*")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // If-Match: * on a missing token fails.
    let r = app
        .call(
            Method::PUT,
            "/rigatoni/resume-tokens/none",
            Some(json!({"_data": DATA})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

async fn listing_pages_through_every_token_and_the_routes_are_off_by_default(kind: Kind) {
    let app = app(kind, false).await;
    let mut want = Vec::new();
    for i in 0..7 {
        let name = format!("resume_token:db:c{i}.x");
        foreign_write(&app, &format!("rigatoni:resume_token:{name}"), &bson_of(DATA)).await;
        want.push(json!(name));
    }
    foreign_write(&app, "rigatoni:lock:db:c0.x", b"owner").await;
    let mut names: Vec<Value> = list_names(&app, "/rigatoni/resume-tokens", 2)
        .await
        .into_iter()
        .map(|i| i["name"].clone())
        .collect();
    names.sort_by_key(ToString::to_string);
    names.dedup();
    assert_eq!(names, want);
    for bad in ["limit=0", "limit=1001", "cursor=not-a-cursor"] {
        let r = app.get(&format!("/rigatoni/resume-tokens?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = app.get("/rigatoni/resume-tokens/a%2A").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::BAD_REQUEST, "invalid-token-name".to_owned())
    );

    let off = TestApp::new(kind).await;
    for path in [
        "/rigatoni/resume-tokens",
        "/rigatoni/resume-tokens/x",
        "/rigatoni/locks",
    ] {
        let r = off.get(path).await;
        assert_eq!(
            (r.status, r.problem_code()),
            (StatusCode::NOT_FOUND, "layout-disabled".to_owned()),
            "{path}"
        );
    }
}

async fn a_wait_ends_when_the_token_changes_or_goes(kind: Kind) {
    let app = app(kind, false).await;
    let key = "rigatoni:resume_token:resume_token:db:orders";
    let uri = "/rigatoni/resume-tokens/resume_token%3Adb%3Aorders";
    // Without If-None-Match a wait holds until the token exists.
    let router = app.router.clone();
    let held = tokio::spawn(async move {
        use tower::ServiceExt;
        let request = Request::builder()
            .uri(format!("{uri}?wait=20"))
            .header("prefer", "return=minimal")
            .body(Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.ctx.wait_limiter().held() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    foreign_write(&app, key, &bson_of(DATA)).await;
    let status = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let etag = app.get(uri).await.header("etag").unwrap().to_owned();
    // The same bytes again: still the same ETag, so the wait runs to its deadline (304).
    foreign_write(&app, key, &bson_of(DATA)).await;
    let idle = get_with(&app, uri, &[("if-none-match", &etag), ("prefer", "wait=0.2")]).await;
    assert_eq!(idle.status, StatusCode::NOT_MODIFIED);
    assert_eq!(idle.header("preference-applied"), Some("wait=0"));
    // A change answers the new token at once; a deletion during a wait is a 404.
    foreign_write(&app, key, &bson_of(DATA2)).await;
    let changed = get_with(&app, &format!("{uri}?wait=5"), &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.json()["token"], json!({"_data": DATA2}));
    let etag2 = changed.header("etag").unwrap().to_owned();
    let router = app.router.clone();
    let held = tokio::spawn(async move {
        use tower::ServiceExt;
        let request = Request::builder()
            .uri(format!("{uri}?wait=20"))
            .header("if-none-match", etag2)
            .body(Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.ctx.wait_limiter().held() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.ctx.store().delete(&[key.to_owned()]).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both_stores!(
    a_wait_ends_when_the_token_changes_or_goes,
    a_corrupt_value_is_a_422_never_a_500,
    writes_need_writable_and_a_precondition,
    listing_pages_through_every_token_and_the_routes_are_off_by_default,
);
