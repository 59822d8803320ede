//! OmniQ's Redis storage over HTTP (experimental layout), on both stores: msgspec records read
//! back with UTC times and durations, RUNNING from the task before a result, waits woken by
//! plain SETs (keyspace `$`) or by polling, the event log paged as a bounded scan.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use resultd::config::Settings;
use resultd::store::{RedisStore, ResultStore, Store, SwapOutcome};
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Kind, RedisServer, TestApp, store, test_settings};

fn omniq_settings() -> Settings {
    let mut s = test_settings();
    s.omniq.enabled = true;
    s
}

/// The app over a store connected with the keyspace subscriptions the settings ask for.
async fn app_with(kind: Kind, settings: Settings) -> TestApp {
    if matches!(kind, Kind::Memory) {
        let t = store(Kind::Memory).await;
        return TestApp::over(settings, t.store, None, None);
    }
    let server = RedisServer::start();
    let redis = RedisStore::connect_watching(
        &server.url(),
        &settings.redis,
        &resultd::server::keyspace_watches(&settings),
    )
    .await
    .expect("redis store");
    if matches!(kind, Kind::Redis) {
        redis.start_cache(settings.cache.max_bytes).await.expect("cache");
    }
    TestApp::over(settings, Store::Redis(redis), Some(server), None)
}

async fn app(kind: Kind) -> TestApp {
    app_with(kind, omniq_settings()).await
}

/// Writes `value` at `key` as OmniQ does: a plain SET (no publish), on Redis through redis-cli.
async fn omniq_set(app: &TestApp, key: &str, value: &str) {
    if let Some(redis) = &app.redis {
        assert_eq!(redis.cli(&["SET", key, value]), "OK");
        return;
    }
    let store = app.ctx.store();
    let value = Bytes::copy_from_slice(value.as_bytes());
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

const SUCCESS: &str = r#"{"task_id":"task-123","status":"success","result":{"output":"Hello, World!"},"error":null,"error_type":null,"traceback":null,"created_at":"2025-07-15T10:00:00.123456","started_at":"2025-07-15T10:00:00","completed_at":"2025-07-15T10:00:01.500000","ttl":"P1D","expires_at":"2025-07-16T10:00:00.123456","worker_id":"worker-001","execution_time":1.5,"memory_usage":null,"metadata":{}}"#;
const ERROR: &str = r#"{"task_id":"t2","status":"error","result":null,"error":"division by zero","error_type":"ZeroDivisionError","traceback":"Traceback...","created_at":"2025-07-15T10:00:00","started_at":null,"completed_at":null,"ttl":null,"expires_at":null,"worker_id":null,"execution_time":null,"memory_usage":null,"metadata":{}}"#;

fn task_json(id: &str, status: &str) -> String {
    format!(
        r#"{{"func":"jobs.render","id":"{id}","args":[1],"kwargs":{{"ü":"😀"}},"queue_name":"default","priority":0,"created_at":"2025-07-15T10:00:00","run_at":null,"ttl":null,"expires_at":null,"status":"{status}","retry_count":0,"max_retries":3,"retry_delay":"PT1S","dependencies":[],"callbacks":[],"metadata":{{}}}}"#
    )
}

async fn omniq_results_read_back_with_utc_times(kind: Kind) {
    let app = app(kind).await;
    omniq_set(&app, "omniq:results:result:task-123", SUCCESS).await;
    let r = app.get("/omniq/results/task-123").await;
    assert_eq!(r.status, StatusCode::OK);
    let b = r.json();
    assert_eq!(
        (
            b["status"].as_str(),
            b["state"].as_str(),
            b["done"].as_bool(),
            b["source"].as_str()
        ),
        (Some("success"), Some("SUCCESS"), Some(true), Some("result"))
    );
    assert_eq!(b["result"], json!({"output": "Hello, World!"}));
    assert_eq!(b["created_at"], "2025-07-15T10:00:00.123456Z");
    assert_eq!(b["completed_at"], "2025-07-15T10:00:01.500000Z");
    assert_eq!(b["result_ttl"], 86_400.0);
    assert_eq!(b["expires_at"], "2025-07-16T10:00:00.123456Z");
    assert_eq!(
        (b["worker_id"].as_str(), b["execution_time"].as_f64()),
        (Some("worker-001"), Some(1.5))
    );
    assert_eq!(b["error"], Value::Null);
    // Worker results carry no Redis TTL, and a read adds none.
    assert_eq!(b["ttl"], Value::Null);
    let etag = r.header("etag").unwrap().to_owned();
    let again = app
        .call(
            Method::GET,
            "/omniq/results/task-123",
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let snap = app
        .ctx
        .store()
        .read_string("omniq:results:result:task-123")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.ttl_ms, None);

    omniq_set(&app, "omniq:results:result:t2", ERROR).await;
    let b = app.get("/omniq/results/t2").await.json();
    assert_eq!(
        (b["state"].as_str(), b["done"].as_bool()),
        (Some("FAILURE"), Some(true))
    );
    assert_eq!(
        b["error"],
        json!({"type": "ZeroDivisionError", "message": "division by zero", "traceback": "Traceback..."})
    );
    for (status, state) in [("cancelled", "REVOKED"), ("expired", "REVOKED"), ("pending", "PENDING")] {
        let id = format!("ns:{status}:1");
        let v = ERROR
            .replace("\"t2\"", &format!("\"{id}\""))
            .replace("\"error\",\"result\"", &format!("\"{status}\",\"result\""));
        omniq_set(&app, &format!("omniq:results:result:{id}"), &v).await;
        let b = app.get(&format!("/omniq/results/{id}")).await.json();
        assert_eq!(
            (b["status"].as_str(), b["state"].as_str()),
            (Some(status), Some(state)),
            "{id}"
        );
        assert_eq!(b["task_id"], id);
    }
}

async fn tasks_stand_in_until_the_result_exists(kind: Kind) {
    let app = app(kind).await;
    assert_eq!(
        app.get("/omniq/results/nothing").await.problem_code(),
        "result-not-found"
    );
    omniq_set(&app, "omniq:tasks:task:job-1", &task_json("job-1", "running")).await;
    let b = app.get("/omniq/results/job-1").await.json();
    assert_eq!(
        (
            b["status"].as_str(),
            b["state"].as_str(),
            b["done"].as_bool(),
            b["source"].as_str()
        ),
        (Some("running"), Some("RUNNING"), Some(false), Some("task"))
    );
    // OmniQ marks the task completed before it stores the result: still not done.
    omniq_set(&app, "omniq:tasks:task:job-1", &task_json("job-1", "completed")).await;
    let b = app.get("/omniq/results/job-1").await.json();
    assert_eq!(
        (b["state"].as_str(), b["done"].as_bool()),
        (Some("RUNNING"), Some(false))
    );
    let t = app.get("/omniq/tasks/job-1").await;
    assert_eq!(t.status, StatusCode::OK);
    let t = t.json();
    assert_eq!(t["record"]["func"], "jobs.render");
    assert_eq!(t["record"]["kwargs"], json!({"ü": "😀"}));
    assert_eq!(t["record"]["created_at"], "2025-07-15T10:00:00Z");
    assert_eq!(t["record"]["retry_delay"], 1.0);
    assert_eq!(app.get("/omniq/tasks/none").await.problem_code(), "result-not-found");

    // Precise problems.
    assert_eq!(
        app.get("/omniq/results/has%20space").await.problem_code(),
        "invalid-task-id"
    );
    omniq_set(&app, "omniq:results:result:bad", "{\"status\": 3}").await;
    let r = app.get("/omniq/results/bad").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "undecodable-record".to_owned())
    );
    let off = TestApp::over(test_settings(), app.ctx.store().clone(), None, None);
    assert_eq!(off.get("/omniq/results/job-1").await.problem_code(), "layout-disabled");
    assert_eq!(off.get("/omniq/events").await.problem_code(), "layout-disabled");
}

async fn waits_wake_on_omniqs_plain_sets(kind: Kind) {
    let app = std::sync::Arc::new(app(kind).await);
    omniq_set(&app, "omniq:tasks:task:w-1", &task_json("w-1", "running")).await;
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/omniq/results/w-1?wait=20").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    omniq_set(&app, "omniq:tasks:task:w-1", &task_json("w-1", "completed")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "completed without a result is not done");
    let v = SUCCESS.replace("task-123", "w-1");
    omniq_set(&app, "omniq:results:result:w-1", &v).await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["source"].as_str()),
        (Some("SUCCESS"), Some("result"))
    );

    // Following as events: the task's states, then the result.
    omniq_set(&app, "omniq:tasks:task:w-2", &task_json("w-2", "pending")).await;
    let follower = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/omniq/results/w-2/events").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    omniq_set(&app, "omniq:tasks:task:w-2", &task_json("w-2", "running")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    omniq_set(&app, "omniq:results:result:w-2", &ERROR.replace("\"t2\"", "\"w-2\"")).await;
    let r = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let states: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("PENDING"), "{text}");
    assert_eq!(states.last().map(String::as_str), Some("FAILURE"), "{text}");
}

async fn events_page_as_a_bounded_scan(kind: Kind) {
    let app = app(kind).await;
    let store = app.ctx.store();
    for i in 0..1100u32 {
        let task = if i % 100 == 7 { "needle" } else { "hay" };
        let id = format!("ev-{i:05}");
        let event = format!(
            r#"{{"task_id":"{task}","event_type":"completed","id":"{id}","timestamp":"2025-07-15T10:00:{:02}.250000","message":null,"details":{{}},"worker_id":null,"queue_name":"default","schedule_id":null,"error_type":null,"error_message":null,"traceback":null,"execution_time":null,"memory_usage":null,"metadata":{{}}}}"#,
            i % 60
        );
        let key = format!("omniq:events:event:{id}");
        store
            .swap_string(&key, None, &Bytes::from(event), None, false)
            .await
            .unwrap();
        store
            .add_sorted("omniq:events:events", f64::from(i), &Bytes::from(id))
            .await
            .unwrap();
    }
    let page = app.get("/omniq/events?limit=3").await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    assert_eq!(page["events"][0]["id"], "ev-00000");
    assert_eq!(page["events"][1]["timestamp"], "2025-07-15T10:00:01.250000Z");
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let page = app.get(&format!("/omniq/events?limit=3&cursor={next}")).await.json();
    assert_eq!(page["events"][0]["id"], "ev-00003");
    // A task filter scans at most 1000 entries a page: 10 needles there, the 11th on the next page.
    let page = app.get("/omniq/events?task_id=needle&limit=1000").await.json();
    assert_eq!(page["scanned"], 1000);
    assert_eq!(page["events"].as_array().unwrap().len(), 10);
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let page = app
        .get(&format!("/omniq/events?task_id=needle&cursor={next}"))
        .await
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["id"], "ev-01007");
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(app.get("/omniq/events?cursor=x").await.problem_code(), "invalid-cursor");
    assert_eq!(app.get("/omniq/events?limit=0").await.problem_code(), "invalid-query");
}

on_both_stores!(
    omniq_results_read_back_with_utc_times,
    tasks_stand_in_until_the_result_exists,
    waits_wake_on_omniqs_plain_sets,
    events_page_as_a_bounded_scan,
);

/// With `omniq.notify = false` no `$` events are turned on: waits on OmniQ keys are polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_polled_when_notifications_for_strings_are_off() {
    let mut settings = omniq_settings();
    settings.omniq.notify = false;
    let app = std::sync::Arc::new(app_with(Kind::Redis, settings).await);
    let flags = app.redis().cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    assert!(!flags.contains('$'), "{flags}");
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/omniq/results/p-1?wait=20").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    omniq_set(&app, "omniq:results:result:p-1", &SUCCESS.replace("task-123", "p-1")).await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["state"], "SUCCESS");
}

/// With notifications on, the `$` class is turned on beside mognet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_events_are_turned_on_for_omniq() {
    let app = app(Kind::Redis).await;
    let flags = app.redis().cli(&["CONFIG", "GET", "notify-keyspace-events"]);
    for c in ['K', 'h', 'g', 'x', '$'] {
        assert!(flags.contains(c), "{c} in {flags}");
    }
}

/// The Python of the OmniQ fixture writer: `RESULTD_OMNIQ_PYTHON`, else `.venv-omniq` (built by
/// `make omniq-venv`).
fn omniq_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("RESULTD_OMNIQ_PYTHON")
        .map_or_else(|| root.join(".venv-omniq/bin/python"), std::path::PathBuf::from);
    assert!(
        python.exists(),
        "the OmniQ fixture Python {} is missing: run make omniq-venv",
        python.display()
    );
    python
}

/// Records written by OmniQ's own models and msgspec (`interop/omniq/omniq_fixtures.py`), in
/// OmniQ's Redis storage's writes, read back over HTTP: a result with a ttl (SETEX) and an id
/// with `:`, an error, cancelled and expired results, a running task, the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_with_omniqs_models_read_back() {
    let app = app(Kind::Redis).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(omniq_python())
        .arg(root.join("interop/omniq/omniq_fixtures.py"))
        .args(["--redis", &app.redis().url()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<Value> = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(written.len(), 5);
    for w in &written {
        let id = w["task_id"].as_str().unwrap();
        let stored = w["stored"].as_str().unwrap();
        // msgspec: compact, raw UTF-8, lowercase statuses.
        assert!(!stored.contains(", \"") && !stored.contains("\\u00fc"), "{stored}");
        let r = app.get(&format!("/omniq/results/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{id}: {:?}", r.body);
        let body = r.json();
        for (field, expected) in w["expect"].as_object().unwrap() {
            if field == "has_ttl" {
                assert_eq!(
                    body["ttl"].is_i64(),
                    expected.as_bool().unwrap(),
                    "{id} ttl {}",
                    body["ttl"]
                );
                continue;
            }
            assert_eq!(&body[field], expected, "{id} {field}");
        }
    }
    let ttl = app.get("/omniq/results/report:2026:q4").await.json()["ttl"]
        .as_i64()
        .unwrap();
    assert!((86_390..=86_400).contains(&ttl), "{ttl}");
    let task = app.get("/omniq/tasks/report:2026:q4").await.json();
    assert_eq!(task["record"]["args"], json!([2026, 4]));
    assert_eq!(task["record"]["retry_delay"], 1.0);
    let events = app.get("/omniq/events?task_id=report:2026:q4").await.json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["enqueued", "dequeued", "executing", "completed"]);
    assert!(events["events"][0]["timestamp"].as_str().unwrap().ends_with('Z'));
}
