//! Redis-only: exact key names, mognet's bytes and TTLs, Python-written data read back.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Kind, TestApp, new_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_values_are_stored_in_mognets_bytes() {
    let app = TestApp::new(Kind::Redis).await;
    let id = new_id();
    app.put(
        &format!("/results/{id}?app=billing"),
        json!({"name": "invoices.render", "request_kwargs_repr": "42"}),
    )
    .await;
    app.patch(
        &format!("/results/{id}?app=billing"),
        json!({"state": "RUNNING", "node_id": "1234@worker-a"}),
    )
    .await;
    app.put(
        &format!("/results/{id}/value?app=billing&state=SUCCESS"),
        json!({"total": 42.5}),
    )
    .await;
    let redis = app.redis();
    let key = format!("billing.mognet.result.{id}");
    assert_eq!(redis.cli(&["TYPE", &key]), "hash");
    assert_eq!(redis.cli(&["HGET", &key, "id"]), format!("\"{id}\""));
    assert_eq!(redis.cli(&["HGET", &key, "state"]), "\"SUCCESS\"");
    assert_eq!(redis.cli(&["HGET", &key, "name"]), "\"invoices.render\"");
    assert_eq!(redis.cli(&["HGET", &key, "parent_id"]), "null");
    assert_eq!(redis.cli(&["HGET", &key, "number_of_starts"]), "1");
    assert_eq!(redis.cli(&["HLEN", &key]), "11");
    let ttl: i64 = redis.cli(&["TTL", &key]).parse().unwrap();
    assert!((1_814_390..=1_814_400).contains(&ttl));
    let value = format!("{key}/value");
    assert_eq!(
        redis.cli(&["HGET", &value, "contents"]),
        r#"{"value_type":"builtins:dict","raw_value":{"total":42.5}}"#
    );
    assert_eq!(redis.cli(&["HGET", &value, "encoding"]), "null");
    assert_eq!(redis.cli(&["HGET", &value, "content_type"]), "\"application/json\"");
    let ttl: i64 = redis.cli(&["TTL", &value]).parse().unwrap();
    assert!((604_790..=604_800).contains(&ttl));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_written_records_read_back() {
    let app = TestApp::new(Kind::Redis).await;
    let id = new_id();
    let key = format!("probe.mognet.result.{id}");
    let redis = app.redis();
    redis.cli(&[
        "HSET",
        &key,
        "id",
        &format!("\"{id}\""),
        "name",
        "\"demo.add\"",
        "state",
        "\"SUCCESS\"",
        "number_of_starts",
        "1",
        "number_of_stops",
        "1",
        "parent_id",
        "null",
        "created",
        "\"2026-11-23T00:33:03.371156Z\"",
        "started",
        "\"2026-11-23T00:33:03+00:00\"",
        "finished",
        "\"2026-11-23T00:33:04Z\"",
        "node_id",
        "\"1234@host-a\"",
        "request_kwargs_repr",
        "\"1, b=2\"",
        "x_extra",
        "\"kept\"",
    ]);
    redis.cli(&[
        "HSET",
        &format!("{key}/metadata"),
        "nested",
        r#"{"k": null, "\u00fc": 1.5}"#,
        "big",
        "1180591620717411303424",
        "nan",
        "NaN",
    ]);
    let r = app.get(&format!("/results/{id}?app=probe")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["state"], "SUCCESS");
    assert_eq!(body["started"], "2026-11-23T00:33:03Z");
    assert_eq!(body["ttl"], serde_json::Value::Null);
    let r = app.get(&format!("/results/{id}/metadata?app=probe")).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.json()["nested"], json!({"k": null, "ü": 1.5}), "{text}");
    assert_eq!(r.json()["nan"], serde_json::Value::Null, "{text}");
    // Python's unbounded integers reach the client exactly, not as a float.
    assert!(text.contains("\"big\":1180591620717411303424"), "{text}");
    // A PATCH keeps fields mognet does not know.
    app.patch(&format!("/results/{id}?app=probe"), json!({"node_id": "other"}))
        .await;
    assert_eq!(redis.cli(&["HGET", &key, "x_extra"]), "\"kept\"");
    // The value is lost: 410.
    let r = app.get(&format!("/results/{id}/value?app=probe")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::GONE, "value-expired")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pythons_gzip_values_are_passed_through_or_inflated() {
    let app = TestApp::new(Kind::Redis).await;
    let id = new_id();
    let key = format!("probe.mognet.result.{id}");
    let redis = app.redis();
    redis.cli(&["HSET", &key, "id", &format!("\"{id}\""), "state", "\"SUCCESS\""]);
    // mognet's own 61 bytes for 42 (mognet-layout §4.1), written with redis-cli's escapes.
    let gz = "\\x1f\\x8b\\x08\\x00\\xbf\\x89\\x03\\x6b\\x02\\xff\\xab\\x56\\x2a\\x4b\\xcc\\x29\\x4d\\x8d\\x2f\\xa9\\x2c\\x48\\x55\\xb2\\x52\\x4a\\x2a\\xcd\\xcc\\x29\\xc9\\xcc\\x2b\\xb6\\xca\\xcc\\x2b\\x51\\xd2\\x51\\x2a\\x4a\\x2c\\x8f\\x07\\xcb\\x2b\\x59\\x99\\x18\\xd5\\x02\\x00\\x9a\\x29\\xf4\\x7f\\x2c\\x00\\x00\\x00";
    let script = format!(
        "HSET \"{key}/value\" contents \"{gz}\" encoding \"\\\"gzip\\\"\" content_type \"\\\"application/json\\\"\""
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' '{}' | redis-cli -p {}",
            script.replace('\'', "'\\''"),
            redis.port
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = app.get(&format!("/results/{id}/value?app=probe")).await;
    assert_eq!(r.json(), json!({"value_type": "builtins:int", "raw_value": 42}));
    let r = app
        .call(
            axum::http::Method::GET,
            &format!("/results/{id}/value?app=probe"),
            None,
            &[("accept-encoding", "gzip, br")],
        )
        .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body.len(), 61);
}

/// Another client wrote cells that are not JSON (`"\é"` once panicked the decoder): the record
/// answers `corrupt-data`, and a listing skips and counts it but lists the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_bytes_are_corrupt_data_and_listings_skip_them() {
    let app = TestApp::new(Kind::Redis).await;
    let redis = app.redis();
    let good = new_id();
    app.put(&format!("/results/{good}?app=mixed"), json!({})).await;
    let cells = ["\"\\é\"", "\"\\u12é\"", "\"\\ud800\\uéé\"", "\u{fffd}\\", "\"a\\"];
    let mut bad = Vec::new();
    for cell in cells {
        let id = new_id();
        redis.cli(&[
            "HSET",
            &format!("mixed.mognet.result.{id}"),
            "id",
            &format!("\"{id}\""),
            "name",
            cell,
        ]);
        let r = app.get(&format!("/results/{id}?app=mixed")).await;
        assert_eq!(
            (r.status, r.problem_code().as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "corrupt-data"),
            "{cell}"
        );
        bad.push(id);
    }
    let page = app.get("/results?app=mixed&limit=1000").await;
    assert_eq!(page.status, StatusCode::OK);
    let listed: Vec<String> = page.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        vec![good.clone()],
        "the readable record is listed, the others skipped"
    );
    let metrics = String::from_utf8_lossy(&app.get("/metrics").await.body).into_owned();
    let skipped = metrics
        .lines()
        .find(|l| l.starts_with("resultd_listing_skipped_records_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    // The metrics registry is global to the test process: at least this listing's skips.
    assert!(skipped >= bad.len() as f64, "{skipped}");
}
