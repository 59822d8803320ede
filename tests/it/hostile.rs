//! Hostile input: each gets its documented problem, and the server keeps serving.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Kind, LiveServer, TestApp, new_id, test_settings};

fn raw(method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

async fn gzip(data: &[u8]) -> Vec<u8> {
    resultd::policy::CompressionPolicy::new(resultd::config::CompressionSettings::default())
        .compress(data)
        .await
}

#[tokio::test]
async fn ten_megabyte_bodies_are_refused_before_they_are_read() {
    let app = TestApp::new(Kind::Memory).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let big = vec![b' '; 10 << 20];
    let r = app
        .send(raw(
            Method::PATCH,
            &format!("/results/{id}/metadata"),
            &[
                ("content-type", "application/json"),
                ("content-length", &big.len().to_string()),
            ],
            big.clone(),
        ))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
    );
    // Without a Content-Length the limit still holds while streaming.
    let stream =
        futures::stream::iter((0..200).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 100 << 10]))));
    let r = app
        .send(raw(
            Method::PUT,
            &format!("/results/{id}/value"),
            &[("content-type", "application/json")],
            Body::from_stream(stream),
        ))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
    );
    assert_eq!(r.json()["limit"], 16 << 20);
}

#[tokio::test]
async fn gzip_bombs_stop_at_the_inflation_cap() {
    let mut settings = test_settings();
    settings.compression.max_inflated_bytes = 1 << 20;
    let app = TestApp::with_settings(Kind::Memory, settings).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let bomb = gzip(&vec![b'0'; 32 << 20]).await;
    assert!(bomb.len() < 100 << 10, "{}", bomb.len());
    let r = app
        .send(raw(
            Method::PUT,
            &format!("/results/{id}/value?state=SUCCESS"),
            &[("content-type", "application/json"), ("content-encoding", "gzip")],
            bomb,
        ))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
    );
    assert_eq!(r.json()["limit"], 1 << 20);
    let r = app
        .send(raw(
            Method::PUT,
            &format!("/results/{id}/value"),
            &[("content-encoding", "gzip")],
            "not gzip",
        ))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-json")
    );
    let good = gzip(br#"{"ok": true}"#).await;
    let r = app
        .send(raw(
            Method::PUT,
            &format!("/results/{id}/value?state=SUCCESS"),
            &[("content-encoding", "gzip")],
            good,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/results/{id}/value")).await.json()["raw_value"],
        json!({"ok": true})
    );
}

#[tokio::test]
async fn deeply_nested_json_and_invalid_utf8_are_400() {
    let app = TestApp::new(Kind::Memory).await;
    let id = new_id();
    app.put(&format!("/results/{id}"), json!({})).await;
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let r = app
        .send(raw(
            Method::PUT,
            &format!("/results/{id}/value"),
            &[("content-type", "application/json")],
            deep,
        ))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-json")
    );
    let r = app
        .send(raw(
            Method::PATCH,
            &format!("/results/{id}/metadata"),
            &[("content-type", "application/json")],
            b"{\"a\": \"\xff\xfe\"}".to_vec(),
        ))
        .await;
    assert_eq!(
        (r.status, r.problem_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid-json")
    );
    assert_eq!(
        app.get(&format!("/results/{id}/metadata")).await.json(),
        json!({}),
        "nothing was written"
    );
}

#[tokio::test]
async fn huge_headers_are_refused_and_the_server_keeps_serving() {
    let live = LiveServer::start(Kind::Memory, test_settings()).await;
    let addr = live.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let header = "x".repeat(1 << 20);
    let req = format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: {header}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(n == 0 || head.starts_with("HTTP/1.1 431"), "{head}");
    let r = reqwest::get(live.url("/health/live")).await.unwrap();
    assert_eq!(r.status(), 200);
    live.stop().await;
}

#[tokio::test]
async fn a_trickling_body_gets_408_at_the_request_timeout() {
    let mut settings = test_settings();
    settings.server.request_timeout_ms = 700;
    let live = LiveServer::start(Kind::Memory, settings).await;
    let addr = live.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let id = new_id();
    let head = format!(
        "PUT /results/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1024];
    let reader = async {
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Ok(_) | Err(_) => String::new(),
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    live.stop().await;
}

#[tokio::test]
async fn sigterm_answers_waiters_and_exits_within_the_grace_period() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_resultd"))
        .arg("serve")
        .env("RESULTD_LISTEN", format!("127.0.0.1:{port}"))
        .env("RESULTD_SERVER__SHUTDOWN_GRACE_MS", "3000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(format!("{base}/health/live")).send().await.is_err() {
        assert!(Instant::now() < deadline, "resultd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = new_id();
    http.put(format!("{base}/results/{id}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let url = format!("{base}/results/{id}?wait=30");
    let c = http.clone();
    let waiter = tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK, "the waiter is answered, not cut");
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(6),
            "did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        http.get(format!("{base}/health/live")).send().await.is_err(),
        "new connections are refused"
    );
}
