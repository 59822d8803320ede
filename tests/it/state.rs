//! Per-app state over HTTP: every route and error on both stores, concurrency, waits, and on
//! Redis mognet's exact keys, bytes and TTLs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::on_both_stores;
use crate::support::{Kind, TestApp, TestResponse, test_settings};

/// Sends `body` as it is (not re-serialised), with `content-type: application/json` unless
/// another one is given.
async fn raw(app: &TestApp, method: Method, uri: &str, body: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut builder = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    app.send(builder.body(Body::from(body.to_owned())).unwrap()).await
}

/// A state key no other test uses.
fn new_key() -> String {
    format!("job:{}", uuid::Uuid::new_v4())
}

fn code(r: &TestResponse) -> (StatusCode, String) {
    (r.status, r.problem_code())
}

fn ttl_header(r: &TestResponse) -> i64 {
    r.header("x-ttl").expect("an x-ttl header").parse().unwrap()
}

/// Starts a GET on its own task, as another client would.
fn spawn_get(
    app: &TestApp,
    uri: String,
    headers: Vec<(String, String)>,
) -> tokio::task::JoinHandle<(TestResponse, Duration)> {
    let router = app.router.clone();
    tokio::spawn(async move {
        let mut builder = Request::get(uri);
        for (k, v) in &headers {
            builder = builder.header(k, v);
        }
        let started = Instant::now();
        let response = router.oneshot(builder.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (TestResponse { status, headers, body }, started.elapsed())
    })
}

async fn put_state_creates_then_replaces_the_whole_object(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let r = app
        .put(
            &uri,
            json!({"progress": {"step": 3, "of": 10}, "counter": 7, "nothing": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.json(),
        json!({"counter": 7, "nothing": null, "progress": {"step": 3, "of": 10}})
    );
    let etag = r.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(ttl_header(&r), 7200);
    let r = app.put(&uri, json!({"other": "x"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"other": "x"}));
    assert_ne!(r.header("etag").unwrap(), etag);
    let r = app.get(&uri).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"other": "x"}), "a PUT replaces, it does not merge");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

async fn get_state_returns_404_problem_when_absent(kind: Kind) {
    let app = TestApp::new(kind).await;
    let r = app.get(&format!("/state/billing/{}", new_key())).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
}

async fn get_state_answers_304_when_if_none_match_matches(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let etag = app.put(&uri, json!({"a": 1})).await.header("etag").unwrap().to_owned();
    let r = app.get(&uri).await;
    assert_eq!(r.header("etag"), Some(etag.as_str()), "the ETag is stable across reads");
    let r = app.call(Method::GET, &uri, None, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let weak = format!("W/{etag}");
    let r = app.call(Method::GET, &uri, None, &[("if-none-match", &weak)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app
        .call(Method::GET, &uri, None, &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn put_state_honours_if_match_and_if_none_match(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 1})), &[("if-match", "\"nope\"")])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND, "nothing written");
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 1})), &[("if-none-match", "*")])
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let etag = r.header("etag").unwrap().to_owned();
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 2})), &[("if-none-match", "*")])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 2})), &[("if-match", "\"nope\"")])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    assert_eq!(app.get(&uri).await.json(), json!({"a": 1}));
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 2})), &[("if-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"a": 2}));
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 3})), &[("if-match", &etag)])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned()),
        "the old ETag is stale"
    );
    // If-None-Match with tags: written unless the current ETag is one of them.
    let current = app.get(&uri).await.header("etag").unwrap().to_owned();
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 3})), &[("if-none-match", &current)])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    let r = app
        .call(Method::PUT, &uri, Some(json!({"a": 3})), &[("if-none-match", "\"x\"")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn put_state_refuses_an_empty_object(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let r = app.put(&uri, json!({})).await;
    assert_eq!(code(&r), (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body".to_owned()));
    assert!(r.json()["detail"].as_str().unwrap().contains("DELETE"));
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND);
}

async fn patch_state_merges_and_null_removes_fields(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let r = app.patch(&uri, json!({"a": 1, "b": {"z": 1, "y": [1, 2]}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "a PATCH may create");
    assert_eq!(ttl_header(&r), 7200);
    let r = app.patch(&uri, json!({"a": null, "c": "x"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"b": {"z": 1, "y": [1, 2]}, "c": "x"}));
    // Member order inside a value is kept as sent ({"z", "y"}, not sorted).
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(text, r#"{"b":{"z":1,"y":[1,2]},"c":"x"}"#);
    assert!(r.header("etag").is_some());
    // Preconditions as for PUT.
    let etag = r.header("etag").unwrap().to_owned();
    let r = app
        .call(Method::PATCH, &uri, Some(json!({"d": 1})), &[("if-match", "\"nope\"")])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    let r = app
        .call(Method::PATCH, &uri, Some(json!({"d": 1})), &[("if-none-match", "*")])
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    let r = app
        .call(Method::PATCH, &uri, Some(json!({"d": 1})), &[("if-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["d"], 1);
    // application/merge-patch+json is accepted.
    let r = raw(
        &app,
        Method::PATCH,
        &uri,
        r#"{"e": true}"#,
        &[("content-type", "application/merge-patch+json")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["e"], true);
    // Removing the last fields deletes the state.
    let r = app
        .patch(&uri, json!({"b": null, "c": null, "d": null, "e": null}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND);
    // Removing fields of a state that does not exist creates nothing.
    let r = app.patch(&uri, json!({"a": null})).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND);
}

async fn delete_state_answers_204_then_404(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    app.put(&uri, json!({"a": 1})).await;
    assert_eq!(app.delete(&uri).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND);
    let r = app.delete(&uri).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
}

async fn field_routes_get_put_and_pop_one_field(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let r = app.get(&format!("{uri}/progress")).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
    let r = raw(
        &app,
        Method::PUT,
        &format!("{uri}/progress"),
        r#"{"step": 3, "of": 10}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(String::from_utf8_lossy(&r.body), r#"{"step":3,"of":10}"#);
    assert_eq!(ttl_header(&r), 7200);
    let r = app.put(&format!("{uri}/name"), json!("ünïcode")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!("ünïcode"));
    let r = app.get(&format!("{uri}/progress")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"step": 3, "of": 10}));
    assert_eq!(ttl_header(&r), 7200);
    let r = app.get(&format!("{uri}/missing")).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-field-not-found".to_owned()));
    assert_eq!(
        app.get(&uri).await.json(),
        json!({"name": "ünïcode", "progress": {"step": 3, "of": 10}})
    );
    // Any JSON document, including null, a bare number and an array.
    for doc in [json!(null), json!(12.5), json!([1, "a"]), json!(false)] {
        let r = app.put(&format!("{uri}/doc"), doc.clone()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(app.get(&format!("{uri}/doc")).await.json(), doc);
    }
    // A field name with spaces and non-ASCII text, percent-encoded in the path.
    let r = app.put(&format!("{uri}/%C3%BC%20key"), json!(1)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get(&uri).await.json()["ü key"], 1);
    // DELETE is mognet's pop: the removed value, then 404.
    let r = app.delete(&format!("{uri}/progress")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"step": 3, "of": 10}));
    let r = app.delete(&format!("{uri}/progress")).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-field-not-found".to_owned()));
    app.delete(&format!("{uri}/name")).await;
    app.delete(&format!("{uri}/doc")).await;
    let r = app.delete(&format!("{uri}/%C3%BC%20key")).await;
    assert_eq!(r.json(), json!(1));
    assert_eq!(
        app.get(&uri).await.status,
        StatusCode::NOT_FOUND,
        "popping the last field deletes the state"
    );
    let r = app.delete(&format!("{uri}/name")).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
}

async fn put_state_field_honours_preconditions_on_the_whole_state(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let etag = app.put(&uri, json!({"a": 1})).await.header("etag").unwrap().to_owned();
    let r = app
        .call(
            Method::PUT,
            &format!("{uri}/b"),
            Some(json!(2)),
            &[("if-match", "\"nope\"")],
        )
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    let r = app
        .call(
            Method::PUT,
            &format!("{uri}/b"),
            Some(json!(2)),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(
        code(&r),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed".to_owned())
    );
    assert_eq!(app.get(&uri).await.json(), json!({"a": 1}));
    let r = app
        .call(Method::PUT, &format!("{uri}/b"), Some(json!(2)), &[("if-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get(&uri).await.json(), json!({"a": 1, "b": 2}));
}

async fn increment_adds_atomically_and_keeps_a_plain_integer(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    // An empty body adds 1, with or without a content type; a missing state starts at 0.
    let r = raw(&app, Method::POST, &format!("{uri}/counter/increment"), "", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"value": 1}));
    assert_eq!(ttl_header(&r), 7200);
    let r = app
        .send(
            Request::post(format!("{uri}/counter/increment"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.json(), json!({"value": 2}));
    let r = app.post(&format!("{uri}/counter/increment"), json!({})).await;
    assert_eq!(r.json(), json!({"value": 3}));
    let r = app.post(&format!("{uri}/counter/increment"), json!({"by": 5})).await;
    assert_eq!(r.json(), json!({"value": 8}));
    let r = app.post(&format!("{uri}/counter/increment"), json!({"by": -10})).await;
    assert_eq!(r.json(), json!({"value": -2}));
    let r = app.get(&format!("{uri}/counter")).await;
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "-2",
        "the field stays a plain JSON integer"
    );
    // A field written as a JSON integer can be incremented.
    app.put(&format!("{uri}/seven"), json!(7)).await;
    let r = app.post(&format!("{uri}/seven/increment"), json!({"by": 1})).await;
    assert_eq!(r.json(), json!({"value": 8}));
}

async fn increment_returns_409_when_field_is_not_an_integer(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let cases = [
        ("s", json!("7"), "string"),
        ("f", json!(7.5), "float"),
        ("o", json!({"a": 1}), "object"),
        ("a", json!([1]), "array"),
        ("b", json!(true), "bool"),
        ("n", json!(null), "null"),
    ];
    for (field, value, kind_name) in cases {
        app.put(&format!("{uri}/{field}"), value.clone()).await;
        let r = app.post(&format!("{uri}/{field}/increment"), json!({"by": 1})).await;
        assert_eq!(
            code(&r),
            (StatusCode::CONFLICT, "state-not-integer".to_owned()),
            "{field}"
        );
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(&format!("JSON {kind_name},")), "{detail}");
        assert_eq!(app.get(&format!("{uri}/{field}")).await.json(), value, "unchanged");
    }
    // 7.0 is a float, as Python's json.dumps(7.0) writes it.
    raw(&app, Method::PUT, &format!("{uri}/f7"), "7.0", &[]).await;
    let r = app.post(&format!("{uri}/f7/increment"), json!({})).await;
    assert!(r.json()["detail"].as_str().unwrap().contains("float"));
}

async fn increment_returns_409_on_overflow_and_422_on_a_bad_by(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    app.put(&format!("{uri}/big"), json!(i64::MAX - 1)).await;
    let r = app.post(&format!("{uri}/big/increment"), json!({"by": 1})).await;
    assert_eq!(r.json(), json!({"value": i64::MAX}));
    let r = app.post(&format!("{uri}/big/increment"), json!({"by": 1})).await;
    assert_eq!(code(&r), (StatusCode::CONFLICT, "increment-overflow".to_owned()));
    assert_eq!(app.get(&format!("{uri}/big")).await.json(), json!(i64::MAX));
    app.put(&format!("{uri}/small"), json!(i64::MIN)).await;
    let r = app.post(&format!("{uri}/small/increment"), json!({"by": -1})).await;
    assert_eq!(code(&r), (StatusCode::CONFLICT, "increment-overflow".to_owned()));
    // A stored integer past 64 bits cannot be added to either.
    raw(&app, Method::PUT, &format!("{uri}/huge"), "1180591620717411303424", &[]).await;
    let r = app.post(&format!("{uri}/huge/increment"), json!({})).await;
    assert_eq!(code(&r), (StatusCode::CONFLICT, "increment-overflow".to_owned()));
    for bad in [
        r#"{"by": 1.5}"#,
        r#"{"by": "1"}"#,
        r#"{"by": null}"#,
        r#"{"by": 9223372036854775808}"#,
        r#"{"by": 1, "extra": 2}"#,
        "[1]",
        "5",
    ] {
        let r = raw(&app, Method::POST, &format!("{uri}/c/increment"), bad, &[]).await;
        assert_eq!(
            code(&r),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body".to_owned()),
            "{bad}"
        );
    }
    let r = raw(&app, Method::POST, &format!("{uri}/c/increment"), "{\"by\":", &[]).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "invalid-json".to_owned()));
    assert_eq!(
        app.get(&format!("{uri}/c")).await.problem_code(),
        "state-field-not-found",
        "nothing written"
    );
}

async fn bad_input_is_refused_with_a_problem_and_nothing_written(kind: Kind) {
    let mut settings = test_settings();
    settings.limits.body_bytes = 1024;
    let app = TestApp::with_settings(kind, settings).await;
    let key = new_key();
    let uri = format!("/state/billing/{key}");
    let long_key = "k".repeat(201);
    let long_field = "f".repeat(257);
    let names: Vec<(String, &str)> = vec![
        (format!("/state/bad%20app/{key}"), "invalid-app"),
        (format!("/state/bad%FFapp/{key}"), "invalid-app"),
        ("/state/billing/bad%20key".to_owned(), "invalid-state-key"),
        (format!("/state/billing/{long_key}"), "invalid-state-key"),
    ];
    for (u, expected) in &names {
        for r in [
            app.get(u).await,
            app.put(u, json!({"a": 1})).await,
            app.patch(u, json!({"a": 1})).await,
            app.delete(u).await,
            app.get(&format!("{u}/f")).await,
            app.put(&format!("{u}/f"), json!(1)).await,
            app.post(&format!("{u}/f/increment"), json!({})).await,
        ] {
            assert_eq!(code(&r), (StatusCode::BAD_REQUEST, (*expected).to_owned()), "{u}");
        }
    }
    for field in ["a%09b", "a%0Ab", long_field.as_str(), "%FF"] {
        let f = format!("{uri}/{field}");
        for r in [
            app.get(&f).await,
            app.put(&f, json!(1)).await,
            app.delete(&f).await,
            app.post(&format!("{f}/increment"), json!({})).await,
        ] {
            assert_eq!(
                code(&r),
                (StatusCode::BAD_REQUEST, "invalid-state-field".to_owned()),
                "{field}"
            );
        }
    }
    // Member names of a body follow the field rules.
    let r = app.put(&uri, json!({"a\tb": 1})).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "invalid-state-field".to_owned()));
    let r = app.patch(&uri, json!({"": 1})).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "invalid-state-field".to_owned()));
    // Not an object where one is needed: 422.
    for body in ["[1, 2]", "7", "\"x\"", "null"] {
        for method in [Method::PUT, Method::PATCH] {
            let r = raw(&app, method.clone(), &uri, body, &[]).await;
            assert_eq!(
                code(&r),
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body".to_owned()),
                "{method} {body}"
            );
        }
    }
    // Malformed JSON: 400, also for a field document and for Python's NaN on input.
    for (method, u, body) in [
        (Method::PUT, uri.clone(), "{\"a\": "),
        (Method::PATCH, uri.clone(), "{a: 1}"),
        (Method::PUT, format!("{uri}/f"), "{\"a\": 1"),
        (Method::PUT, format!("{uri}/f"), ""),
        (Method::PUT, format!("{uri}/f"), "NaN"),
        (Method::PUT, uri.clone(), "{\"a\": 1} trailing"),
    ] {
        let r = raw(&app, method.clone(), &u, body, &[]).await;
        assert_eq!(
            code(&r),
            (StatusCode::BAD_REQUEST, "invalid-json".to_owned()),
            "{method} {u} {body:?}"
        );
    }
    // Over limits.body_bytes: 413 naming the limit.
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(2000));
    for (method, u) in [
        (Method::PUT, uri.clone()),
        (Method::PATCH, uri.clone()),
        (Method::PUT, format!("{uri}/f")),
    ] {
        let r = raw(&app, method.clone(), &u, &big, &[]).await;
        assert_eq!(
            code(&r),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large".to_owned()),
            "{method} {u}"
        );
        assert_eq!(r.json()["limit"], 1024);
    }
    // Wrong content type: 415.
    for (method, u) in [
        (Method::PUT, uri.clone()),
        (Method::PATCH, uri.clone()),
        (Method::PUT, format!("{uri}/f")),
        (Method::POST, format!("{uri}/f/increment")),
    ] {
        let r = raw(
            &app,
            method.clone(),
            &u,
            "{\"a\": 1}",
            &[("content-type", "text/plain")],
        )
        .await;
        assert_eq!(
            code(&r),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type".to_owned()),
            "{method} {u}"
        );
    }
    // A bad wait or ttl.
    let r = app.get(&format!("{uri}?wait=-1")).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "invalid-query".to_owned()));
    let r = app.put(&format!("{uri}?ttl=soon"), json!({"a": 1})).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "invalid-query".to_owned()));
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND, "nothing was written");
}

async fn values_round_trip_exactly(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let body = r#"{"big": 1180591620717411303424, "float": 1.50, "esc": "\u00fcn\u00efcode", "nested": {"z": [1, {"y": null}], "a": "b c"}}"#;
    let r = raw(&app, Method::PUT, &uri, body, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let text = String::from_utf8_lossy(&app.get(&uri).await.body).into_owned();
    assert_eq!(
        text,
        r#"{"big":1180591620717411303424,"esc":"\u00fcn\u00efcode","float":1.50,"nested":{"z":[1,{"y":null}],"a":"b c"}}"#
    );
    assert_eq!(app.get(&format!("{uri}/esc")).await.json(), json!("ünïcode"));
}

async fn put_state_ttl_is_clamped_by_the_policy(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let r = app.put(&format!("{uri}?ttl=60"), json!({"a": 1})).await;
    assert_eq!(ttl_header(&r), 60);
    let r = app.put(&format!("{uri}?ttl=0"), json!({"a": 1})).await;
    assert_eq!(ttl_header(&r), 1, "clamped to ttl.min_seconds");
    let r = app.put(&format!("{uri}?ttl=9999999999"), json!({"a": 1})).await;
    assert_eq!(ttl_header(&r), 31_536_000, "clamped to ttl.max_seconds");
    let r = app.put(&format!("{uri}?ttl=10000000001"), json!({"a": 1})).await;
    assert_eq!(
        code(&r),
        (StatusCode::BAD_REQUEST, "invalid-query".to_owned()),
        "past the documented maximum"
    );
    let r = app.patch(&format!("{uri}?ttl=120"), json!({"b": 1})).await;
    assert!((119..=120).contains(&ttl_header(&r)));
    let r = app.put(&format!("{uri}/c?ttl=90"), json!(1)).await;
    assert!((89..=90).contains(&ttl_header(&r)));
    let r = app.post(&format!("{uri}/n/increment?ttl=30"), json!({})).await;
    assert_eq!(ttl_header(&r), 30);
}

/// N = 1000 increments from M = 20 concurrent clients.
async fn concurrent_increments_lose_nothing(kind: Kind) {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 50;
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}/n/increment", new_key());
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let router = app.router.clone();
        let uri = uri.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(PER_CLIENT);
            for _ in 0..PER_CLIENT {
                let req = Request::post(&uri).body(Body::empty()).unwrap();
                let response = router.clone().oneshot(req).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let v: Value = serde_json::from_slice(&body).unwrap();
                seen.push(v["value"].as_i64().unwrap());
            }
            seen
        }));
    }
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    let total = (CLIENTS * PER_CLIENT) as i64;
    assert_eq!(answered.len() as i64, total);
    let distinct: BTreeSet<i64> = answered.iter().copied().collect();
    assert_eq!(
        distinct,
        (1..=total).collect::<BTreeSet<_>>(),
        "every value answered exactly once"
    );
    let field = uri.trim_end_matches("/increment");
    assert_eq!(app.get(field).await.json(), json!(total));
}

/// 200 merge patches of disjoint fields from 20 concurrent clients.
async fn concurrent_patches_of_disjoint_fields_all_land(kind: Kind) {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 10;
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let router = app.router.clone();
        let uri = uri.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_CLIENT {
                let body = json!({format!("c{c}_{i}"): {"client": c, "i": i}}).to_string();
                let req = Request::patch(&uri)
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap();
                let status = router.clone().oneshot(req).await.unwrap().status();
                assert!(status == StatusCode::OK || status == StatusCode::CREATED, "{status}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let state = app.get(&uri).await.json();
    let fields = state.as_object().unwrap();
    assert_eq!(fields.len(), CLIENTS * PER_CLIENT);
    for c in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            assert_eq!(state[format!("c{c}_{i}")], json!({"client": c, "i": i}));
        }
    }
}

async fn a_state_wait_is_woken_by_a_patch(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let etag = app
        .put(&uri, json!({"step": 1}))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let waiter = spawn_get(
        &app,
        format!("{uri}?wait=20"),
        vec![("if-none-match".to_owned(), etag.clone())],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.ctx.wait_limiter().held(),
        1,
        "the wait is held while nothing changes"
    );
    app.patch(&uri, json!({"step": 2})).await;
    let (r, elapsed) = waiter.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"step": 2}));
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(app.ctx.wait_limiter().held(), 0);
}

async fn a_state_wait_answers_304_at_the_deadline(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let etag = app
        .put(&uri, json!({"step": 1}))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let r = app
        .call(
            Method::GET,
            &uri,
            None,
            &[("if-none-match", &etag), ("prefer", "wait=1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("preference-applied"), Some("wait=1"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Without If-None-Match an existing state answers at once.
    let started = Instant::now();
    let r = app.get(&format!("{uri}?wait=20")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(10));
    // An ETag that is not the current one answers at once too.
    let r = app
        .call(
            Method::GET,
            &format!("{uri}?wait=20"),
            None,
            &[("if-none-match", "\"old\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn a_state_deleted_during_the_wait_ends_it_with_404(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let etag = app
        .put(&uri, json!({"step": 1}))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let waiter = spawn_get(&app, format!("{uri}?wait=20"), vec![("if-none-match".to_owned(), etag)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.delete(&uri).await;
    let (r, elapsed) = waiter.await.unwrap();
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

async fn a_state_created_during_the_wait_answers_it(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/billing/{}", new_key());
    let waiter = spawn_get(&app, format!("{uri}?wait=20"), Vec::new());
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.put(&format!("{uri}/step"), json!(1)).await;
    let (r, elapsed) = waiter.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"step": 1}));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // Nothing appearing before the deadline: 404.
    let r = app.get(&format!("/state/billing/{}?wait=0.5", new_key())).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "state-not-found".to_owned()));
}

on_both_stores!(
    put_state_creates_then_replaces_the_whole_object,
    get_state_returns_404_problem_when_absent,
    get_state_answers_304_when_if_none_match_matches,
    put_state_honours_if_match_and_if_none_match,
    put_state_refuses_an_empty_object,
    patch_state_merges_and_null_removes_fields,
    delete_state_answers_204_then_404,
    field_routes_get_put_and_pop_one_field,
    put_state_field_honours_preconditions_on_the_whole_state,
    increment_adds_atomically_and_keeps_a_plain_integer,
    increment_returns_409_when_field_is_not_an_integer,
    increment_returns_409_on_overflow_and_422_on_a_bad_by,
    bad_input_is_refused_with_a_problem_and_nothing_written,
    values_round_trip_exactly,
    put_state_ttl_is_clamped_by_the_policy,
    concurrent_increments_lose_nothing,
    concurrent_patches_of_disjoint_fields_all_land,
    a_state_wait_is_woken_by_a_patch,
    a_state_wait_answers_304_at_the_deadline,
    a_state_deleted_during_the_wait_ends_it_with_404,
    a_state_created_during_the_wait_answers_it,
);

fn redis_ttl(app: &TestApp, key: &str) -> i64 {
    app.redis().cli(&["TTL", key]).parse().unwrap()
}

/// Sets the key's TTL low, so that a later TTL near 7200 proves it was set again.
fn lower_ttl(app: &TestApp, key: &str) {
    assert_eq!(app.redis().cli(&["EXPIRE", key, "100"]), "1");
    assert!(redis_ttl(app, key) <= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_stored_in_mognets_key_and_bytes() {
    let app = TestApp::new(Kind::Redis).await;
    let key = new_key();
    let uri = format!("/state/probe/{key}");
    let r = raw(
        &app,
        Method::PUT,
        &uri,
        r#"{"progress": {"step": 3, "of": 10}, "counter": 7, "nothing": null, "name": "\u00fcn\u00efcode"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let redis = app.redis();
    let rkey = format!("probe.mognet.state.{key}");
    assert_eq!(redis.cli(&["TYPE", &rkey]), "hash");
    assert_eq!(redis.cli(&["HGET", &rkey, "progress"]), r#"{"step":3,"of":10}"#);
    assert_eq!(redis.cli(&["HGET", &rkey, "counter"]), "7");
    assert_eq!(redis.cli(&["HGET", &rkey, "nothing"]), "null");
    assert_eq!(redis.cli(&["HGET", &rkey, "name"]), r#""\u00fcn\u00efcode""#);
    assert_eq!(redis.cli(&["HLEN", &rkey]), "4");
    assert!((7190..=7200).contains(&redis_ttl(&app, &rkey)));
    app.post(&format!("{uri}/counter/increment"), json!({"by": 2})).await;
    assert_eq!(redis.cli(&["HGET", &rkey, "counter"]), "9");
    // Nothing else was written.
    assert_eq!(redis.cli(&["KEYS", "*"]), rkey);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_write_sets_the_ttl_and_reads_refresh_it() {
    let app = TestApp::new(Kind::Redis).await;
    let key = new_key();
    let uri = format!("/state/probe/{key}");
    let rkey = format!("probe.mognet.state.{key}");
    app.put(&uri, json!({"a": 1, "b": 2, "c": 3})).await;
    let near = |app: &TestApp| {
        let ttl = redis_ttl(app, &rkey);
        assert!((7190..=7200).contains(&ttl), "TTL {ttl}");
    };
    near(&app);
    let steps: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("PUT", Method::PUT, uri.clone(), Some(json!({"a": 1, "b": 2, "c": 3}))),
        ("PATCH", Method::PATCH, uri.clone(), Some(json!({"d": 4}))),
        ("PUT field", Method::PUT, format!("{uri}/e"), Some(json!(5))),
        ("increment", Method::POST, format!("{uri}/n/increment"), Some(json!({}))),
        ("pop", Method::DELETE, format!("{uri}/e"), None),
        ("GET", Method::GET, uri.clone(), None),
        ("GET field", Method::GET, format!("{uri}/a"), None),
    ];
    for (what, method, u, body) in steps {
        lower_ttl(&app, &rkey);
        let r = app.call(method, &u, body, &[]).await;
        assert!(r.status.is_success(), "{what}: {}", r.status);
        let ttl = redis_ttl(&app, &rkey);
        assert!((7190..=7200).contains(&ttl), "{what} left TTL {ttl}");
    }
    // A read's x-ttl is the refreshed TTL.
    lower_ttl(&app, &rkey);
    let r = app.get(&uri).await;
    assert!((7190..=7200).contains(&ttl_header(&r)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_leave_the_ttl_alone_when_refresh_on_read_is_off() {
    let mut settings = test_settings();
    settings.state.refresh_on_read = false;
    let app = TestApp::with_settings(Kind::Redis, settings).await;
    let key = new_key();
    let uri = format!("/state/probe/{key}");
    let rkey = format!("probe.mognet.state.{key}");
    app.put(&uri, json!({"a": 1})).await;
    lower_ttl(&app, &rkey);
    let r = app.get(&uri).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(ttl_header(&r) <= 100);
    app.get(&format!("{uri}/a")).await;
    let ttl = redis_ttl(&app, &rkey);
    assert!((1..=100).contains(&ttl), "TTL {ttl}");
    // Writes still set it.
    app.patch(&uri, json!({"b": 2})).await;
    assert!((7190..=7200).contains(&redis_ttl(&app, &rkey)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_written_state_reads_back() {
    let app = TestApp::new(Kind::Redis).await;
    let key = "00000000-0000-4000-8000-00000000000d";
    let rkey = format!("probe.mognet.state.{key}");
    // mognet-layout §7, as observed: json.dumps output with its spaces, escapes and NaN.
    app.redis().cli(&[
        "HSET",
        &rkey,
        "counter",
        "7",
        "name",
        r#""\u00fcn\u00efcode""#,
        "nothing",
        "null",
        "progress",
        r#"{"step": 3, "of": 10}"#,
        "ratio",
        "NaN",
    ]);
    let uri = format!("/state/probe/{key}");
    let r = app.get(&uri).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"counter": 7, "name": "ünïcode", "nothing": null, "progress": {"step": 3, "of": 10}, "ratio": null})
    );
    assert_eq!(
        app.get(&format!("{uri}/progress")).await.json(),
        json!({"step": 3, "of": 10})
    );
    let r = app.post(&format!("{uri}/counter/increment"), json!({})).await;
    assert_eq!(r.json(), json!({"value": 8}));
    let r = app.post(&format!("{uri}/ratio/increment"), json!({})).await;
    assert_eq!(code(&r), (StatusCode::CONFLICT, "state-not-integer".to_owned()));
    assert!(r.json()["detail"].as_str().unwrap().contains("float"));
    let r = app.delete(&format!("{uri}/ratio")).await;
    assert_eq!(r.json(), Value::Null, "NaN reads back as null");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hset_from_another_connection_wakes_a_state_waiter() {
    let app = TestApp::new(Kind::Redis).await;
    assert_eq!(app.ctx.store().wake_mode(), "keyspace-notifications");
    let key = new_key();
    let uri = format!("/state/probe/{key}");
    let etag = app
        .put(&uri, json!({"step": 1}))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let waiter = spawn_get(&app, format!("{uri}?wait=20"), vec![("if-none-match".to_owned(), etag)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.ctx.wait_limiter().held(), 1, "the wait's own reads do not wake it");
    app.redis()
        .cli(&["HSET", &format!("probe.mognet.state.{key}"), "step", "2"]);
    let (r, elapsed) = waiter.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"step": 2}));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_state_answers_a_500_problem() {
    let app = TestApp::new(Kind::Redis).await;
    let redis = app.redis();
    redis.cli(&["HSET", "probe.mognet.state.corrupt", "ok", "1", "bad", "{not json"]);
    let r = app.get("/state/probe/corrupt").await;
    assert_eq!(code(&r), (StatusCode::INTERNAL_SERVER_ERROR, "corrupt-data".to_owned()));
    assert!(
        !r.json()["detail"].as_str().unwrap().contains("not json"),
        "no internal detail in the body"
    );
    redis.cli(&["SET", "probe.mognet.state.string", "x"]);
    let r = app.get("/state/probe/string").await;
    assert_eq!(code(&r), (StatusCode::INTERNAL_SERVER_ERROR, "internal".to_owned()));
    let r = app.post("/state/probe/string/n/increment", json!({})).await;
    assert_eq!(code(&r), (StatusCode::INTERNAL_SERVER_ERROR, "internal".to_owned()));
    assert_eq!(redis.cli(&["GET", "probe.mognet.state.string"]), "x", "left as it was");
}
