//! HTTP details: every error is a problem, preconditions and content negotiation follow RFC 9110.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Kind, LiveServer, TestApp, new_id, test_settings};

fn request(method: Method, uri: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes or 5 s.
async fn raw_exchange(live: &LiveServer, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(live.addr()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn arrays_are_refused_where_objects_are_required() {
    let app = TestApp::new(Kind::Memory).await;
    let id = new_id();
    let uri = format!("/results/{id}");
    // serde reads a struct from the array of its fields: this once created a SUCCESS record.
    let r = app
        .send(request(Method::PUT, &uri, "application/json", r#"["n","SUCCESS",7,3]"#))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body")
    );
    assert_eq!(app.get(&uri).await.status, StatusCode::NOT_FOUND, "nothing was created");
    // A syntax error is still a syntax error.
    let r = app.send(request(Method::PUT, &uri, "application/json", "[1,")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-json")
    );

    app.put(&uri, json!({})).await;
    let cases = [
        (
            Method::PATCH,
            uri.clone(),
            "application/json",
            r#"["n","SUCCESS"]"#.to_owned(),
        ),
        (
            Method::POST,
            "/results/wait".to_owned(),
            "application/json",
            format!(r#"[["{id}"]]"#),
        ),
        (
            Method::POST,
            format!("{uri}/children"),
            "application/json",
            format!(r#"[["{}"]]"#, new_id()),
        ),
        (
            Method::PUT,
            format!("{uri}/value"),
            "application/vnd.mognet.value+json",
            r#"["builtins:int", 1]"#.to_owned(),
        ),
    ];
    for (method, path, content_type, body) in cases {
        let r = app.send(request(method.clone(), &path, content_type, &body)).await;
        assert_eq!(
            (r.status, r.problem_code().as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body"),
            "{method} {path} {body}"
        );
    }
    let record = app.get(&uri).await.json();
    assert_eq!(record["state"], "PENDING", "no array body changed the record: {record}");
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_problem() {
    let app = TestApp::new(Kind::Memory).await;
    for path in [
        "/results/%FF",
        "/results/%C3%28/value",
        "/results/%FF/metadata",
        "/results/%FF/events",
    ] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.problem_code().as_str()),
            (StatusCode::BAD_REQUEST, "invalid-result-id"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_unknown_docs_asset_is_a_problem_and_the_root_leads_to_the_docs() {
    let app = TestApp::new(Kind::Memory).await;
    let r = app.get("/docs/no-such-asset.js").await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::NOT_FOUND, "not-found")
    );
    assert_eq!(
        app.get("/docs/").await.status,
        StatusCode::OK,
        "the page itself is served"
    );
    let r = app.get("/").await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.header("location"), Some("/docs/"));
}

#[tokio::test]
async fn the_holder_media_type_is_matched_without_case() {
    let app = TestApp::new(Kind::Memory).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let r = app
        .send(request(
            Method::PUT,
            &format!("/results/{id}/value?state=SUCCESS"),
            "Application/VND.Mognet.Value+JSON; charset=utf-8",
            r#"{"value_type": "builtins:str", "raw_value": "x"}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let holder = app.get(&format!("/results/{id}/value")).await.json();
    assert_eq!(
        holder,
        json!({"value_type": "builtins:str", "raw_value": "x"}),
        "read as a holder, not wrapped"
    );
}

#[tokio::test]
async fn a_negative_wait_names_where_it_came_from() {
    let app = TestApp::new(Kind::Memory).await;
    let id = new_id();
    let uri = format!("/results/{id}");
    app.put(&uri, json!({})).await;
    let r = app.call(Method::GET, &uri, None, &[("prefer", "wait=-1")]).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-header")
    );
    let r = app.get(&format!("{uri}?wait=-1")).await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-query")
    );
}

#[tokio::test]
async fn broken_chunked_framing_is_a_400_problem() {
    let live = LiveServer::start(Kind::Memory, test_settings()).await;
    let id = new_id();
    let head = format!(
        "PUT /results/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_exchange(&live, format!("{head}zz\r\n{{}}\r\n0\r\n\r\n").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed-request"), "{answer}");
    let r = reqwest::get(live.url(&format!("/results/{id}"))).await.unwrap();
    assert_eq!(r.status(), 404, "nothing was written");
    live.stop().await;
}

#[tokio::test]
async fn a_wait_parameter_on_a_write_does_not_stretch_its_deadline() {
    let mut settings = test_settings();
    settings.server.request_timeout_ms = 500;
    settings.wait.max_seconds = 30;
    let live = LiveServer::start(Kind::Memory, settings).await;
    for (query, prefer) in [("?wait=30", ""), ("", "Prefer: wait=30\r\n")] {
        let id = new_id();
        // The body never arrives: the write is cut at the request timeout, not 30 s later.
        let head = format!(
            "PUT /results/{id}{query} HTTP/1.1\r\nHost: x\r\n{prefer}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        );
        let started = Instant::now();
        let answer = raw_exchange(&live, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{query}{prefer}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }
    live.stop().await;
}

#[tokio::test]
async fn if_match_compares_strongly() {
    let app = TestApp::new(Kind::Memory).await;
    let uri = format!("/results/{}", new_id());
    let etag = app.put(&uri, json!({})).await.header("etag").unwrap().to_owned();
    let weak = format!("W/{etag}");
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(json!({"node_id": "w"})),
            &[("if-match", &weak)],
        )
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::PRECONDITION_FAILED, "precondition-failed"),
        "a weak tag never matches If-Match"
    );
    // If-None-Match compares weakly: the weak form of the current tag matches.
    let r = app.call(Method::GET, &uri, None, &[("if-none-match", &weak)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app
        .call(
            Method::PATCH,
            &uri,
            Some(json!({"node_id": "w"})),
            &[("if-match", &format!("{weak}, {etag}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "the strong tag in the list matches");
}

#[tokio::test]
async fn accept_encoding_weights_decide_gzip() {
    let app = TestApp::new(Kind::Memory).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let big: Vec<u32> = (0..2000).collect();
    app.put(&format!("/results/{id}/value?state=SUCCESS"), json!(big)).await;
    let cases = [
        ("gzip", true),
        ("GZIP", true),
        ("x-gzip", true),
        ("gzip;q=0.5, br", true),
        ("*", true),
        ("br, *;q=0.1", true),
        ("gzip;q=0, *", false),
        ("gzip; Q=0.000, *", false),
        ("*;q=0", false),
        ("identity", false),
        ("br", false),
    ];
    for (accept, gzipped) in cases {
        let r = app
            .call(
                Method::GET,
                &format!("/results/{id}/value"),
                None,
                &[("accept-encoding", accept)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{accept}");
        assert_eq!(
            r.header("content-encoding") == Some("gzip"),
            gzipped,
            "Accept-Encoding: {accept}"
        );
    }
}

#[tokio::test]
async fn requests_the_parser_refuses_get_problems_too() {
    let live = LiveServer::start(Kind::Memory, test_settings()).await;
    let many_headers: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long_uri = format!("/results/{}", "a".repeat(70_000));
    let cases = [
        ("GARBAGE\r\n\r\n".to_owned(), "400", "malformed-request"),
        (
            "GET /health/live HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n".to_owned(),
            "400",
            "malformed-request",
        ),
        (
            format!("GET /health/live HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            "431",
            "headers-too-large",
        ),
        (
            format!("GET {long_uri} HTTP/1.1\r\nHost: x\r\n\r\n"),
            "414",
            "uri-too-long",
        ),
    ];
    for (bytes, status, code) in cases {
        let answer = raw_exchange(&live, bytes.as_bytes()).await;
        let what = &bytes[..bytes.len().min(40)];
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{what}: {answer}");
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: {answer}"));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(problem["code"], code, "{what}");
        assert_eq!(problem["status"].to_string(), status);
    }
    // The server keeps serving, and its own answers are untouched.
    let r = reqwest::get(live.url("/health/live")).await.unwrap();
    assert_eq!(r.status(), 200);
    live.stop().await;
}
