//! Celery's result backend over HTTP, on both stores: records in Celery's exact bytes read
//! back field by field, waits woken by the writer's PUBLISH, writes in kombu's dialect with
//! SUCCESS final under races, groups, Flower's shape, and exact channels that all go away.

use std::io::Write;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use resultd::config::Settings;
use resultd::store::{ResultStore, SwapOutcome};
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Kind, TestApp, test_settings};

fn celery_settings() -> Settings {
    let mut s = test_settings();
    s.celery.enabled = true;
    s
}

async fn app(kind: Kind) -> TestApp {
    TestApp::with_settings(kind, celery_settings()).await
}

/// Writes `value` at `key` as a foreign Celery writer would (SET and PUBLISH), whatever is there.
async fn foreign_write(app: &TestApp, key: &str, value: &[u8], ttl: Option<Duration>) {
    let store = app.ctx.store();
    let value = Bytes::copy_from_slice(value);
    for _ in 0..10 {
        let current = store.read_string(key).await.unwrap().map(|s| s.value);
        if store
            .swap_string(key, current.as_ref(), &value, ttl, true)
            .await
            .unwrap()
            == SwapOutcome::Swapped
        {
            return;
        }
    }
    panic!("could not write {key}");
}

/// Polls until no Celery channel is subscribed (bounded).
async fn channels_drain(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.ctx.store().subscribed_channels() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.ctx.store().subscribed_channels(), 0, "channels left subscribed");
}

const EXTENDED: &str = r#"{"status": "SUCCESS", "result": 4, "traceback": null, "children": [[["5b8d7c1e-0000-4000-8000-000000000001", null], null]], "date_done": "2026-11-23T11:00:00.123456+01:00", "group_id": "0f0e0d0c-0000-4000-8000-00000000000a", "parent_id": "aa11bb22-0000-4000-8000-000000000003", "name": "tasks.add", "args": [2, 2], "kwargs": {}, "worker": "celery@w1", "retries": 0, "queue": "celery", "stamp": "x", "task_id": "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e"}"#;

async fn celery_records_read_back_field_by_field(kind: Kind) {
    let app = app(kind).await;
    let id = "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e";
    foreign_write(
        &app,
        &format!("celery-task-meta-{id}"),
        EXTENDED.as_bytes(),
        Some(Duration::from_secs(600)),
    )
    .await;
    let r = app.get(&format!("/celery/results/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let b = r.json();
    assert_eq!(b["task_id"], id);
    assert_eq!(b["app"], "celery");
    assert_eq!(
        (b["status"].as_str(), b["state"].as_str(), b["done"].as_bool()),
        (Some("SUCCESS"), Some("SUCCESS"), Some(true))
    );
    assert_eq!(b["result"], 4);
    assert_eq!(b["traceback"], Value::Null);
    assert_eq!(
        b["children"],
        json!([[["5b8d7c1e-0000-4000-8000-000000000001", null], null]])
    );
    assert_eq!(b["date_done"], "2026-11-23T10:00:00.123456Z");
    assert_eq!(b["group_id"], "0f0e0d0c-0000-4000-8000-00000000000a");
    assert_eq!(b["parent_id"], "aa11bb22-0000-4000-8000-000000000003");
    assert_eq!(
        (
            &b["name"],
            &b["args"],
            &b["kwargs"],
            &b["worker"],
            &b["retries"],
            &b["queue"]
        ),
        (
            &json!("tasks.add"),
            &json!([2, 2]),
            &json!({}),
            &json!("celery@w1"),
            &json!(0),
            &json!("celery")
        )
    );
    assert_eq!(b["extra"], json!({"stamp": "x"}));
    let ttl = b["ttl"].as_i64().unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    // Reads never refresh the TTL, and the ETag answers 304.
    let etag = r.header("etag").unwrap().to_owned();
    let again = app
        .call(
            Method::GET,
            &format!("/celery/results/{id}"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let snap = app
        .ctx
        .store()
        .read_string(&format!("celery-task-meta-{id}"))
        .await
        .unwrap()
        .unwrap();
    assert!(snap.ttl_seconds().unwrap() <= 600);

    // Every state maps to the common one, the native one kept.
    for (status, state, done) in [
        ("PENDING", "PENDING", false),
        ("STARTED", "RUNNING", false),
        ("PROGRESS", "RUNNING", false),
        ("RETRY", "SUSPENDED", false),
        ("FAILURE", "FAILURE", true),
        ("REVOKED", "REVOKED", true),
    ] {
        let v = format!(
            r#"{{"status": "{status}", "result": null, "traceback": null, "children": [], "date_done": null, "task_id": "s-{status}"}}"#
        );
        foreign_write(&app, &format!("celery-task-meta-s-{status}"), v.as_bytes(), None).await;
        let b = app.get(&format!("/celery/results/s-{status}")).await.json();
        assert_eq!(
            (b["status"].as_str(), b["state"].as_str(), b["done"].as_bool()),
            (Some(status), Some(state), Some(done))
        );
        assert_eq!(b["ttl"], Value::Null);
    }
}

async fn unknown_bad_and_disabled_answer_problems(kind: Kind) {
    let app = app(kind).await;
    let r = app.get("/celery/results/never-written").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::NOT_FOUND, "result-not-found".to_owned())
    );
    let r = app.get("/celery/results/has%20space").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::BAD_REQUEST, "invalid-task-id".to_owned())
    );
    let r = app.get(&format!("/celery/results/{}", "x".repeat(256))).await;
    assert_eq!(r.problem_code(), "invalid-task-id");
    let r = app.get("/celery/results/t?app=nosuch").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::NOT_FOUND, "layout-disabled".to_owned())
    );
    let r = app.get("/celery/groups/nosuch").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::NOT_FOUND, "group-not-found".to_owned())
    );

    // Values resultd cannot read are precise problems, not 500s.
    let mut pickle = b"\x80\x04\x95".to_vec();
    pickle.extend_from_slice(b"pickled");
    foreign_write(&app, "celery-task-meta-pickled", &pickle, None).await;
    let r = app.get("/celery/results/pickled").await;
    assert_eq!(
        (r.status, r.problem_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "undecodable-record".to_owned())
    );
    let mut bz = b"\x00celery-compressed\x00application/x-bz2\x00".to_vec();
    bz.extend_from_slice(b"BZh91AY");
    foreign_write(&app, "celery-task-meta-bz", &bz, None).await;
    let r = app.get("/celery/results/bz").await;
    assert_eq!(r.problem_code(), "undecodable-record");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("compressed-unknown-codec")
    );

    let off = TestApp::with_settings(kind, test_settings()).await;
    for uri in ["/celery/results/t", "/celery/groups/g", "/api/task/result/t"] {
        let r = off.get(uri).await;
        assert_eq!(
            (r.status, r.problem_code()),
            (StatusCode::NOT_FOUND, "layout-disabled".to_owned()),
            "{uri}"
        );
    }
}

async fn compressed_records_inflate(kind: Kind) {
    let app = app(kind).await;
    let plain = r#"{"status": "SUCCESS", "result": [1, 2, 3], "traceback": null, "children": [], "date_done": "2026-11-23T10:00:00+00:00", "task_id": "z1"}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(plain.as_bytes()).unwrap();
    let mut stored = b"\x00celery-compressed\x00application/x-gzip\x00".to_vec();
    stored.extend_from_slice(&z.finish().unwrap());
    foreign_write(&app, "celery-task-meta-z1", &stored, None).await;
    let b = app.get("/celery/results/z1").await.json();
    assert_eq!(b["result"], json!([1, 2, 3]));
    assert_eq!(b["date_done"], "2026-11-23T10:00:00Z");
}

async fn writes_are_celerys_bytes_with_its_ttls(kind: Kind) {
    let mut settings = celery_settings();
    settings.celery.result_expires = 600;
    settings.celery.result_failure_expires = Some(1200);
    let app = TestApp::with_settings(kind, settings).await;
    let r = app
        .put(
            "/celery/results/w-1",
            json!({"status": "STARTED", "result": {"pid": 42, "hostname": "rust@w1"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let stored = app
        .ctx
        .store()
        .read_string("celery-task-meta-w-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&stored.value).unwrap(),
        r#"{"status": "STARTED", "result": {"pid": 42, "hostname": "rust@w1"}, "traceback": null, "children": [], "date_done": null, "task_id": "w-1"}"#
    );
    assert!((599..=600).contains(&stored.ttl_seconds().unwrap()));
    let r = app
        .put(
            "/celery/results/w-1",
            json!({"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad ü"], "exc_module": "builtins"},
                   "traceback": "Traceback (most recent call last):\nValueError: bad\n", "name": "jobs.x", "retries": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "FAILURE");
    let stored = app
        .ctx
        .store()
        .read_string("celery-task-meta-w-1")
        .await
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(&stored.value).unwrap();
    assert!(
        text.starts_with(r#"{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad \u00fc"], "exc_module": "builtins"}, "traceback": "Traceback (most recent call last):\nValueError: bad\n", "children": [], "date_done": ""#),
        "{text}"
    );
    assert!(
        text.ends_with(r#"+00:00", "name": "jobs.x", "retries": 1, "task_id": "w-1"}"#),
        "{text}"
    );
    assert!(
        (1199..=1200).contains(&stored.ttl_seconds().unwrap()),
        "FAILURE has its own TTL"
    );

    // Bad bodies are precise.
    for (body, code) in [
        (json!({"status": "FAILURE", "result": "boom"}), "invalid-body"),
        (json!({"status": "no spaces"}), "invalid-body"),
        (json!({"result": 1}), "invalid-body"),
        (json!({"status": "SUCCESS", "parent_id": "bad id"}), "invalid-body"),
        (json!({"status": "SUCCESS", "surprise": 1}), "invalid-body"),
    ] {
        let r = app.put("/celery/results/w-2", body.clone()).await;
        assert_eq!(r.problem_code(), code, "{body}");
    }

    // result_expires = 0: a plain SET, no TTL.
    let mut settings = celery_settings();
    settings.celery.result_expires = 0;
    let forever = TestApp::over(settings, app.ctx.store().clone(), None, None);
    forever
        .put("/celery/results/w-3", json!({"status": "SUCCESS", "result": 1}))
        .await;
    let stored = app
        .ctx
        .store()
        .read_string("celery-task-meta-w-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.ttl_ms, None);
}

async fn a_stored_success_is_final_under_racing_writers(kind: Kind) {
    let app = std::sync::Arc::new(app(kind).await);
    for round in 0..5 {
        let uri = format!("/celery/results/race-{round}");
        let mut tasks = Vec::new();
        for i in 0..12 {
            let app = std::sync::Arc::clone(&app);
            let uri = uri.clone();
            tasks.push(tokio::spawn(async move {
                let body = if i % 3 == 0 {
                    json!({"status": "SUCCESS", "result": i})
                } else {
                    json!({"status": "FAILURE", "result": {"exc_type": "E", "exc_message": [i], "exc_module": "m"}})
                };
                let r = app.put(&uri, body).await;
                (i % 3 == 0, r.status)
            }));
        }
        let mut successes_written = 0;
        for t in tasks {
            let (success, status) = t.await.unwrap();
            assert!(status.is_success() || status == StatusCode::CONFLICT, "{status}");
            if success && status.is_success() {
                successes_written += 1;
            }
        }
        assert_eq!(
            successes_written, 1,
            "exactly one SUCCESS lands; the others meet a final state"
        );
        let b = app.get(&uri).await.json();
        assert_eq!(b["status"], "SUCCESS");
        let r = app
            .put(&uri, json!({"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"}}))
            .await;
        assert_eq!(
            (r.status, r.problem_code()),
            (StatusCode::CONFLICT, "illegal-transition".to_owned())
        );
        assert_eq!(r.json()["current_state"], "SUCCESS");
    }
}

async fn waits_are_woken_by_the_writers_publish(kind: Kind) {
    let app = std::sync::Arc::new(app(kind).await);
    // A wait on an id with no record yet: the result appearing counts.
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/celery/results/wk-1?wait=20").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    foreign_write(
        &app,
        "celery-task-meta-wk-1",
        br#"{"status": "STARTED", "result": null, "traceback": null, "children": [], "date_done": null, "task_id": "wk-1"}"#,
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "STARTED is not ready");
    app.put("/celery/results/wk-1", json!({"status": "SUCCESS", "result": 7}))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.json()["status"].as_str(), r.json()["result"].as_i64()),
        (Some("SUCCESS"), Some(7))
    );

    // A wait that runs out answers the record as it is; Prefer is echoed.
    app.put(
        "/celery/results/wk-2",
        json!({"status": "PROGRESS", "result": {"step": 1}}),
    )
    .await;
    let r = app
        .call(Method::GET, "/celery/results/wk-2", None, &[("prefer", "wait=0.3")])
        .await;
    assert_eq!((r.status, r.json()["done"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(r.header("preference-applied"), Some("wait=0"));

    // An absent id stays absent: 404 at the deadline.
    let r = app.get("/celery/results/wk-never?wait=0.3").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Multi-wait, all: woken by each member.
    let multi = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            app.post(
                "/celery/results/wait",
                json!({"ids": ["wk-2", "wk-3", "wk-2"], "mode": "all", "timeout": 20}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.put("/celery/results/wk-2", json!({"status": "SUCCESS", "result": 2}))
        .await;
    app.put("/celery/results/wk-3", json!({"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"}})).await;
    let r = tokio::time::timeout(Duration::from_secs(10), multi)
        .await
        .unwrap()
        .unwrap();
    let b = r.json();
    assert_eq!(b["satisfied"], true);
    assert_eq!(b["done"], json!(["wk-2", "wk-3"]));
    assert_eq!(b["results"].as_array().unwrap().len(), 2);

    // Flower's shape: the state after the wait, a failure as its repr.
    let flower = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/api/task/result/wk-4?timeout=20").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.put(
        "/celery/results/wk-4",
        json!({"status": "FAILURE", "result": {"exc_type": "ZeroDivisionError", "exc_message": ["division by zero"], "exc_module": "builtins"}, "traceback": "Traceback\nZeroDivisionError: division by zero\n"}),
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(10), flower)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.json(),
        json!({"task-id": "wk-4", "state": "FAILURE", "result": "ZeroDivisionError('division by zero')", "traceback": "Traceback\nZeroDivisionError: division by zero\n"})
    );
    assert_eq!(
        app.get("/api/task/result/wk-none").await.json(),
        json!({"task-id": "wk-none", "state": "PENDING"})
    );
    assert_eq!(
        app.get("/api/task/result/wk-2").await.json(),
        json!({"task-id": "wk-2", "state": "SUCCESS", "result": 2})
    );
    assert_eq!(
        app.get("/api/task/result/wk-1?timeout=x").await.problem_code(),
        "invalid-query"
    );
    channels_drain(&app).await;
}

async fn events_follow_a_task_to_ready(kind: Kind) {
    let app = std::sync::Arc::new(app(kind).await);
    app.put(
        "/celery/results/ev-1",
        json!({"status": "STARTED", "result": {"pid": 1, "hostname": "h"}}),
    )
    .await;
    let follower = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/celery/results/ev-1/events").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.put(
        "/celery/results/ev-1",
        json!({"status": "PROGRESS", "result": {"step": 1}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.put("/celery/results/ev-1", json!({"status": "SUCCESS", "result": "ok"}))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let statuses: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses.first().map(String::as_str), Some("STARTED"), "{text}");
    assert_eq!(statuses.last().map(String::as_str), Some("SUCCESS"), "{text}");
    assert!(statuses.len() <= 3, "{text}");
    assert_eq!(
        app.get("/celery/results/ev-none/events").await.problem_code(),
        "result-not-found"
    );
    channels_drain(&app).await;
}

async fn groups_read_and_write_as_celery_saves_them(kind: Kind) {
    let app = app(kind).await;
    let r = app
        .put("/celery/groups/gr-1", json!({"results": ["m-1", "m-2", "m-3"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let stored = app
        .ctx
        .store()
        .read_string("celery-taskset-meta-gr-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&stored.value).unwrap(),
        r#"{"result": [["gr-1", null], [[["m-1", null], null], [["m-2", null], null], [["m-3", null], null]]]}"#
    );
    app.put("/celery/results/m-1", json!({"status": "SUCCESS", "result": 1}))
        .await;
    app.put(
        "/celery/results/m-2",
        json!({"status": "RETRY", "result": {"exc_type": "E", "exc_message": [], "exc_module": "m"}}),
    )
    .await;
    let r = app.get("/celery/groups/gr-1").await;
    let b = r.json();
    assert_eq!(
        (b["total"].as_u64(), b["completed"].as_u64(), b["done"].as_bool()),
        (Some(3), Some(1), Some(false))
    );
    assert_eq!(
        b["results"][0],
        json!({"task_id": "m-1", "found": true, "status": "SUCCESS", "state": "SUCCESS", "done": true})
    );
    assert_eq!(b["results"][1]["state"], "SUSPENDED");
    assert_eq!(
        b["results"][2],
        json!({"task_id": "m-3", "found": false, "status": null, "state": null, "done": false})
    );
    // The ETag covers the members: a member's change is a new ETag.
    let etag = r.header("etag").unwrap().to_owned();
    app.put("/celery/results/m-3", json!({"status": "SUCCESS", "result": 3}))
        .await;
    let r = app
        .call(Method::GET, "/celery/groups/gr-1", None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.put("/celery/groups/gr-1", json!({"results": []}))
            .await
            .problem_code(),
        "invalid-body"
    );
    assert_eq!(
        app.put("/celery/groups/gr-1", json!({"results": ["m-1"]})).await.status,
        StatusCode::OK
    );
}

async fn apps_select_their_literal_prefix(kind: Kind) {
    let mut settings = celery_settings();
    settings.celery.key_prefix = "main_".to_owned();
    settings.celery.apps.insert("billing".to_owned(), "bill:".to_owned());
    let app = TestApp::with_settings(kind, settings).await;
    app.put("/celery/results/p-1", json!({"status": "SUCCESS", "result": "main"}))
        .await;
    app.put(
        "/celery/results/p-1?app=billing",
        json!({"status": "SUCCESS", "result": "bill"}),
    )
    .await;
    let store = app.ctx.store();
    assert!(store.read_string("main_celery-task-meta-p-1").await.unwrap().is_some());
    assert!(store.read_string("bill:celery-task-meta-p-1").await.unwrap().is_some());
    assert_eq!(app.get("/celery/results/p-1").await.json()["result"], "main");
    let b = app.get("/celery/results/p-1?app=billing").await.json();
    assert_eq!(
        (b["result"].as_str(), b["app"].as_str()),
        (Some("bill"), Some("billing"))
    );
}

on_both_stores!(
    celery_records_read_back_field_by_field,
    unknown_bad_and_disabled_answer_problems,
    compressed_records_inflate,
    writes_are_celerys_bytes_with_its_ttls,
    a_stored_success_is_final_under_racing_writers,
    waits_are_woken_by_the_writers_publish,
    events_follow_a_task_to_ready,
    groups_read_and_write_as_celery_saves_them,
    apps_select_their_literal_prefix,
);

/// A message on a waited channel is only a hint: a publish from another DB (channels ignore
/// the DB number) with a made-up SUCCESS does not end the wait; the key is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_only_a_hint() {
    let app = std::sync::Arc::new(app(Kind::Redis).await);
    app.put("/celery/results/h-1", json!({"status": "STARTED", "result": null}))
        .await;
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/celery/results/h-1?wait=20").await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.ctx.store().subscribed_channels() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fake = r#"{"status": "SUCCESS", "result": "fake", "traceback": null, "children": [], "date_done": null, "task_id": "h-1"}"#;
    let receivers = app.redis().cli(&["-n", "5", "PUBLISH", "celery-task-meta-h-1", fake]);
    assert_eq!(receivers, "1", "the waited channel is subscribed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "a message alone does not answer the wait");
    app.put("/celery/results/h-1", json!({"status": "SUCCESS", "result": "real"}))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["result"], "real");
    channels_drain(&app).await;
    assert_eq!(
        app.redis().cli(&["PUBSUB", "NUMSUB", "celery-task-meta-h-1"]),
        "celery-task-meta-h-1\n0"
    );
}

/// A killed subscriber connection: the channels come back and every waiter reads again, so a
/// result whose message was missed still ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_survive_a_lost_subscriber() {
    let app = std::sync::Arc::new(app(Kind::Redis).await);
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.get("/celery/results/lost-1?wait=30").await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.ctx.store().subscribed_channels() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Written by a plain SET: no message, so only the re-read after the reconnect can see it.
    app.redis().cli(&[
        "SET",
        "celery-task-meta-lost-1",
        r#"{"status": "SUCCESS", "result": 1, "traceback": null, "children": [], "date_done": null, "task_id": "lost-1"}"#,
    ]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "nothing told the waiter yet");
    app.redis().cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let r = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["status"], "SUCCESS");
    channels_drain(&app).await;
}
