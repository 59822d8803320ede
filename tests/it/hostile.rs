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
        .compress(bytes::Bytes::copy_from_slice(data))
        .await
        .unwrap()
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

/// Ten gzip bombs at once are each refused at the cap, and meanwhile an unrelated read answers
/// promptly: inflation runs off the async workers, a bounded number of jobs at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gzip_bombs_do_not_stall_other_requests() {
    let mut settings = test_settings();
    settings.compression.max_inflated_bytes = 8 << 20;
    settings.compression.blocking_jobs = 2;
    let live = LiveServer::start(Kind::Memory, settings).await;
    let http = reqwest::Client::new();
    let other = new_id();
    let r = http
        .put(live.url(&format!("/results/{other}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let bomb = bytes::Bytes::from(gzip(&vec![b'0'; 24 << 20]).await);
    assert!(bomb.len() < 100 << 10, "{}", bomb.len());
    let mut bombs = Vec::new();
    for _ in 0..10 {
        let id = new_id();
        http.put(live.url(&format!("/results/{id}")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let (http, url, bomb) = (http.clone(), live.url(&format!("/results/{id}/value")), bomb.clone());
        bombs.push(tokio::spawn(async move {
            let r = http
                .put(url)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(bomb)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, body["code"].as_str().unwrap_or_default().to_owned())
        }));
    }
    // Reads of another result while the bombs are being inflated.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let r = http.get(live.url(&format!("/results/{other}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    for bomb in bombs {
        let (status, code) = bomb.await.unwrap();
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
        );
    }
    assert!(slowest < Duration::from_secs(1), "an unrelated GET took {slowest:?}");
    live.stop().await;
}

/// A value just under the write limit is stored and reads back, gzip-accepting or not: the
/// holder's own bytes around it do not push the stored value past the read path's cap.
#[tokio::test]
async fn values_at_the_size_limit_read_back() {
    for kind in [Kind::Memory, Kind::Redis] {
        let mut settings = test_settings();
        settings.compression.max_inflated_bytes = 2 << 20;
        settings.limits.value_body_bytes = 2 << 20;
        let app = TestApp::with_settings(kind, settings).await;
        // A JSON string just under the limit as sent, and one of exactly the limit sent gzipped.
        let plain = format!("\"{}\"", "a".repeat((2 << 20) - 16));
        let at_cap = format!("\"{}\"", "b".repeat((2 << 20) - 2));
        let uploads = [
            (plain, vec![("content-type", "application/json")], false),
            (
                at_cap,
                vec![("content-type", "application/json"), ("content-encoding", "gzip")],
                true,
            ),
        ];
        for (value, headers, gzipped) in uploads {
            let id = new_id();
            app.put(&format!("/results/{id}"), json!({})).await;
            let body = if gzipped {
                gzip(value.as_bytes()).await
            } else {
                value.clone().into_bytes()
            };
            let r = app
                .send(raw(
                    Method::PUT,
                    &format!("/results/{id}/value?state=SUCCESS"),
                    &headers,
                    body,
                ))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{kind:?} gzip={gzipped}: {}", r.json());
            let r = app.get(&format!("/results/{id}/value")).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{kind:?} gzip={gzipped}: plain read: {}",
                r.json()
            );
            assert_eq!(r.header("content-encoding"), None);
            assert_eq!(r.json()["raw_value"].as_str().map(str::len), Some(value.len() - 2));
            let r = app
                .call(
                    Method::GET,
                    &format!("/results/{id}/value"),
                    None,
                    &[("accept-encoding", "gzip")],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            let holder = resultd::policy::compression::inflate_bounded(&r.body, 4 << 20).unwrap();
            let holder: serde_json::Value = serde_json::from_slice(&holder).unwrap();
            assert_eq!(holder["raw_value"].as_str().map(str::len), Some(value.len() - 2));
        }
        // One byte past the cap, inflated, is refused with its limit.
        let id = new_id();
        app.put(&format!("/results/{id}"), json!({})).await;
        let over = gzip(format!("\"{}\"", "c".repeat((2 << 20) - 1)).as_bytes()).await;
        let r = app
            .send(raw(
                Method::PUT,
                &format!("/results/{id}/value"),
                &[("content-type", "application/json"), ("content-encoding", "gzip")],
                over,
            ))
            .await;
        assert_eq!(
            (r.status, r.problem_code().as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
        );
        assert_eq!(r.json()["limit"], 2 << 20);
    }
}
