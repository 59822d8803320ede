//! The results API, on both stores.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::on_both_stores;
use crate::support::{Kind, TestApp, new_id};

async fn put_creates_then_replaces_a_record(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    let r = app
        .put(
            &format!("/results/{id}?app=billing"),
            json!({"name": "invoices.render", "request_kwargs_repr": "42"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let body = r.json();
    assert_eq!(body["state"], "PENDING");
    assert_eq!(body["done"], false);
    assert_eq!(body["app"], "billing");
    assert_eq!(body["number_of_starts"], 0);
    assert!(body["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["ttl"], 1_814_400);
    assert!(r.header("etag").unwrap().starts_with('"'));
    let r = app
        .put(&format!("/results/{id}?app=billing"), json!({"state": "RUNNING"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["name"], serde_json::Value::Null, "PUT replaces");
}

async fn concurrent_puts_of_one_record_all_land_and_one_creates(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    let mut tasks = Vec::new();
    for client in 0..20 {
        let router = app.router.clone();
        let uri = format!("/results/{id}");
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let mut statuses = Vec::new();
            for n in 0..10 {
                let body = json!({"name": format!("client-{client}-{n}"), "state": "RUNNING"}).to_string();
                let req = axum::http::Request::put(&uri)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap();
                statuses.push(router.clone().oneshot(req).await.unwrap().status());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 200);
    assert_eq!(all.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{all:?}");
    assert!(
        all.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{all:?}"
    );
    assert!(
        app.get(&format!("/results/{id}")).await.json()["name"]
            .as_str()
            .unwrap()
            .starts_with("client-")
    );
}

async fn get_returns_404_problem_when_id_is_unknown(kind: Kind) {
    let app = TestApp::new(kind).await;
    let r = app.get(&format!("/results/{}", new_id())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.problem_code(), "result-not-found");
    assert!(r.json()["request_id"].is_string());
}

async fn ids_are_canonicalised_and_garbage_is_refused(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{}", id.to_uppercase()), json!({})).await;
    let r = app.get(&format!("/results/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["id"], id);
    let r = app.get("/results/not-a-uuid").await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-result-id")
    );
    let r = app.get(&format!("/results/{id}?app=a*b")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-app")
    );
}

async fn etags_drive_304_and_412(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    let uri = format!("/results/{id}");
    let etag = app.put(&uri, json!({})).await.header("etag").unwrap().to_owned();
    let r = app.call(Method::GET, &uri, None, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app
        .call(Method::PUT, &uri, Some(json!({})), &[("if-none-match", "*")])
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed")
    );
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(json!({"node_id": "w"})),
            &[("if-match", "\"stale\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(json!({"node_id": "w"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.header("etag").unwrap(), etag);
    // The ETag answered by a write is the one a read sees.
    let written = r.header("etag").unwrap().to_owned();
    assert_eq!(app.get(&uri).await.header("etag").unwrap(), written);
}

async fn patch_keeps_mognets_lifecycle_bookkeeping(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    let uri = format!("/results/{id}");
    app.put(&uri, json!({"name": "t"})).await;
    let r = app
        .patch(&uri, json!({"state": "RUNNING", "node_id": "1@w"}))
        .await
        .json();
    assert_eq!(
        (r["number_of_starts"].as_i64(), r["number_of_stops"].as_i64()),
        (Some(1), Some(0))
    );
    assert!(r["started"].is_string());
    let r = app.patch(&uri, json!({"state": "FAILURE"})).await.json();
    assert_eq!(r["number_of_stops"], 1);
    assert!(r["finished"].is_string());
    assert_eq!(r["done"], true);
    let r = app.patch(&uri, json!({"state": "RUNNING"})).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::CONFLICT, "illegal-transition")
    );
    assert_eq!(r.json()["current_state"], "FAILURE");
    let r = app
        .patch(&format!("{uri}?force=true"), json!({"state": "RUNNING"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn bad_bodies_get_precise_problems(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/results/{}", new_id());
    let raw = |body: &'static str, ct: &'static str| {
        axum::http::Request::builder()
            .method(Method::PUT)
            .uri(uri.clone())
            .header("content-type", ct)
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let r = app.send(raw("{", "application/json")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-json")
    );
    let r = app.send(raw("{\"state\":\"success\"}", "application/json")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body")
    );
    let r = app.send(raw("{\"colour\":1}", "application/json")).await;
    assert_eq!(r.problem_code(), "invalid-body");
    let r = app.send(raw("{}", "text/plain")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
    );
    let r = app.put(&uri, json!({"created": "yesterday"})).await;
    assert_eq!(r.problem_code(), "invalid-body");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 << 20));
    let r = app
        .send(
            axum::http::Request::builder()
                .method(Method::PUT)
                .uri(uri.clone())
                .header("content-type", "application/json")
                .body(axum::body::Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
    );
    assert_eq!(r.json()["limit"], 1_048_576);
}

async fn values_complete_results_in_one_step(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let r = app.get(&format!("/results/{id}/value")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::CONFLICT, "result-not-ready")
    );
    let r = app
        .put(&format!("/results/{id}/value?state=SUCCESS"), json!({"total": 42.5}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "SUCCESS");
    assert_eq!(r.json()["number_of_stops"], 1);
    let r = app.get(&format!("/results/{id}/value")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"value_type": "builtins:dict", "raw_value": {"total": 42.5}})
    );
    let r = app.put(&format!("/results/{id}/value?state=FAILURE"), json!("x")).await;
    assert_eq!(r.problem_code(), "illegal-transition");
    let r = app.put(&format!("/results/{}/value", new_id()), json!(1)).await;
    assert_eq!(r.problem_code(), "result-not-found");
    let r = app.put(&format!("/results/{id}/value?state=RUNNING"), json!(1)).await;
    assert_eq!(r.problem_code(), "invalid-query");
}

async fn large_values_are_gzipped_and_passed_through(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let big: Vec<u32> = (0..2000).collect();
    app.put(&format!("/results/{id}/value?state=SUCCESS"), json!(big)).await;
    let r = app
        .call(
            Method::GET,
            &format!("/results/{id}/value"),
            None,
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
    let plain = resultd::policy::compression::inflate_bounded(&r.body, 1 << 20).unwrap();
    let holder: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(holder["value_type"], "builtins:list");
    let r = app.get(&format!("/results/{id}/value")).await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.json()["raw_value"][1999], 1999);
}

async fn holders_are_checked_and_exceptions_lose_their_pickle(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let holder = |body: serde_json::Value| {
        axum::http::Request::builder()
            .method(Method::PUT)
            .uri(format!("/results/{id}/value?state=FAILURE"))
            .header("content-type", "application/vnd.mognet.value+json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let r = app
        .send(holder(json!({"value_type": "os:system", "raw_value": "rm"})))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body")
    );
    let r = app
        .send(holder(json!({"value_type": "mognet.model.result:_ExceptionInfo",
            "raw_value": {"name": "builtins:ValueError", "message": "boom", "traceback": "tb", "raw_data": "gASV", "raw_data_encoding": "application/python-pickle"}})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = app.get(&format!("/results/{id}/value")).await.json();
    assert_eq!(v["raw_value"]["raw_data"], serde_json::Value::Null);
    assert_eq!(v["raw_value"]["message"], "boom");
}

async fn metadata_merges_and_null_removes(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    let r = app.get(&format!("/results/{id}/metadata")).await;
    assert_eq!(r.problem_code(), "result-not-found");
    app.put(&format!("/results/{id}"), json!({})).await;
    assert_eq!(app.get(&format!("/results/{id}/metadata")).await.json(), json!({}));
    app.patch(&format!("/results/{id}/metadata"), json!({"a": 1, "b": [1, 2]}))
        .await;
    let r = app
        .patch(&format!("/results/{id}/metadata"), json!({"a": null, "c": "x"}))
        .await;
    assert_eq!(r.json(), json!({"b": [1, 2], "c": "x"}));
    let r = app.patch(&format!("/results/{id}/metadata"), json!([1])).await;
    assert_eq!(r.problem_code(), "invalid-body");
}

async fn metadata_keeps_big_integers_exact(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let big = "1180591620717411303424";
    let request = axum::http::Request::patch(format!("/results/{id}/metadata"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(format!(r#"{{"big": {big}, "neg": -{big}}}"#)))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::OK);
    for body in [r.body.clone(), app.get(&format!("/results/{id}/metadata")).await.body] {
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(text.contains(&format!("\"big\":{big}")), "{text}");
        assert!(text.contains(&format!("\"neg\":-{big}")), "{text}");
    }
}

async fn children_are_added_and_get_their_parent(kind: Kind) {
    let app = TestApp::new(kind).await;
    let (parent, a, b) = (new_id(), new_id(), new_id());
    for id in [&parent, &a] {
        app.put(&format!("/results/{id}"), json!({})).await;
    }
    let r = app
        .post(&format!("/results/{parent}/children"), json!({"ids": [a, b]}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(r.json()["ids"], json!(want));
    assert_eq!(app.get(&format!("/results/{a}")).await.json()["parent_id"], parent);
    let r = app
        .post(&format!("/results/{parent}/children"), json!({"ids": [parent]}))
        .await;
    assert_eq!(r.problem_code(), "self-child");
    let r = app.delete(&format!("/results/{parent}?recursive=true")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/results/{a}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&format!("/results/{parent}")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn unknown_routes_and_methods_are_problems(kind: Kind) {
    let app = TestApp::new(kind).await;
    let r = app.get("/nope").await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::NOT_FOUND, "not-found")
    );
    let r = app
        .call(Method::POST, &format!("/results/{}", new_id()), None, &[])
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed")
    );
}

async fn request_ids_are_echoed_and_in_problems(kind: Kind) {
    let app = TestApp::new(kind).await;
    let r = app
        .call(Method::GET, "/results/x", None, &[("x-request-id", "abc-123")])
        .await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(r.json()["request_id"], "abc-123");
    let r = app.get("/health/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("x-request-id").is_some());
}

on_both_stores!(
    put_creates_then_replaces_a_record,
    concurrent_puts_of_one_record_all_land_and_one_creates,
    get_returns_404_problem_when_id_is_unknown,
    ids_are_canonicalised_and_garbage_is_refused,
    etags_drive_304_and_412,
    patch_keeps_mognets_lifecycle_bookkeeping,
    bad_bodies_get_precise_problems,
    values_complete_results_in_one_step,
    large_values_are_gzipped_and_passed_through,
    holders_are_checked_and_exceptions_lose_their_pickle,
    metadata_merges_and_null_removes,
    metadata_keeps_big_integers_exact,
    children_are_added_and_get_their_parent,
    unknown_routes_and_methods_are_problems,
    request_ids_are_echoed_and_in_problems,
);
