//! The binary as a newcomer runs it: its help, its startup line, SIGTERM, and a Redis that is
//! not there yet.

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::support::{RedisServer, TestApp, new_id, test_settings};

const BINARY: &str = env!("CARGO_BIN_EXE_resultd");

/// A Redis URL with a password and nothing listening behind it.
const UNREACHABLE_STORE: &str = "redis://user:secret@127.0.0.1:1/0";

async fn run(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(BINARY).args(args).stdin(Stdio::null()).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("resultd {args:?} took longer than 20 s"))
    .expect("run resultd");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn help_of_resultd_and_of_every_subcommand_shows_an_example() {
    let (ok, help) = run(&["--help"]).await;
    assert!(ok, "resultd --help failed");
    assert!(help.contains("Example"), "resultd --help:\n{help}");
    assert!(help.contains("/docs"), "resultd --help names no docs page:\n{help}");
    // The subcommands as the help lists them, so a new one cannot skip its example.
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(
        commands,
        ["serve", "openapi", "healthcheck", "config", "hash-token"],
        "resultd --help:\n{help}"
    );
    for command in commands {
        let (ok, text) = run(&[command, "--help"]).await;
        assert!(ok, "resultd {command} --help failed");
        assert!(
            text.contains("Example"),
            "resultd {command} --help has no example:\n{text}"
        );
        assert!(
            text.lines().next().is_some_and(|l| l.len() > 20),
            "resultd {command} --help does not say what it does:\n{text}"
        );
    }
}

/// `resultd serve` on a free loopback port with `store`, stderr piped.
fn spawn_serve(store: &str) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(BINARY)
        .arg("serve")
        .env("RESULTD_LISTEN", format!("127.0.0.1:{port}"))
        .env("RESULTD_STORE", store)
        .env("RUST_LOG", "info")
        .env_remove("RESULTD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn resultd serve");
    (child, port)
}

/// Reads stderr until the startup line (the one naming the docs page); all lines so far.
async fn startup_line(child: &mut Child) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = rx.recv().await {
            if line.contains("docs=") {
                return line;
            }
        }
        panic!("resultd exited without a startup line");
    })
    .await
    .expect("no startup line within 20 s");
    (line, reader)
}

/// Sends SIGTERM to the child by PID and waits (bounded) for its exit.
async fn terminate(child: &mut Child) -> (std::process::ExitStatus, Duration) {
    let pid = child.id().expect("running child").to_string();
    let sent = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("resultd did not exit within 10 s of SIGTERM")
        .expect("wait");
    (exit, sent.elapsed())
}

fn assert_startup_line(line: &str, port: u16) {
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("store=redis://user:***@127.0.0.1:1/0"), "{line}");
    assert!(!line.contains("secret"), "the password is in the log: {line}");
    assert!(line.contains("default_app=default"), "{line}");
    assert!(line.contains(&format!("docs=http://127.0.0.1:{port}/docs/")), "{line}");
    assert!(!line.contains('\u{1b}'), "colour codes in a piped log: {line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_its_address_store_app_and_docs_then_stops_on_sigterm_while_redis_is_unreachable() {
    let (mut child, port) = spawn_serve(UNREACHABLE_STORE);
    let (line, reader) = startup_line(&mut child).await;
    assert_startup_line(&line, port);
    // SIGTERM while the store is still connecting.
    let (exit, took) = terminate(&mut child).await;
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    let log = reader.await.unwrap().join("\n");
    assert!(!log.contains("secret"), "the password is in the log:\n{log}");
    println!("exited {took:?} after SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_503_and_stops_on_sigterm_when_redis_is_unreachable() {
    let (mut child, port) = spawn_serve(UNREACHABLE_STORE);
    let (line, reader) = startup_line(&mut child).await;
    assert_startup_line(&line, port);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/health/live")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/health/live never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = http.get(format!("{base}/health/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let problem: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(problem["code"], "store-unavailable");
    let (exit, took) = terminate(&mut child).await;
    assert!(exit.success(), "exit after SIGTERM: {exit}");
    let log = reader.await.unwrap().join("\n");
    assert!(!log.contains("secret"), "the password is in the log:\n{log}");
    println!("exited {took:?} after SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_connects_and_wakes_waiters_when_redis_comes_up_after_resultd() {
    let mut redis = RedisServer::start();
    redis.stop();
    let settings = test_settings();
    let store = resultd::store::RedisStore::connect(&redis.url(), &settings.redis)
        .await
        .expect("connecting to a Redis that is down is not an error");
    let ctx =
        resultd::api::ApiContext::new(settings, resultd::store::Store::Redis(store), CancellationToken::new()).unwrap();
    let app = TestApp {
        router: resultd::server::app(ctx.clone()),
        ctx,
        redis: None,
        topology: None,
    };
    assert_eq!(app.get("/health/ready").await.status, StatusCode::SERVICE_UNAVAILABLE);
    redis.restart();
    let started = Instant::now();
    while app.get("/health/ready").await.status != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still not ready 20 s after Redis came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The keyspace subscription is made once Redis answers, so a plain HSET wakes a waiter.
    while redis.cli(&["PUBSUB", "NUMPAT"]) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no keyspace subscription 20 s after Redis came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = new_id();
    assert_eq!(
        app.put(&format!("/results/{id}"), json!({})).await.status,
        StatusCode::CREATED
    );
    let router = app.router.clone();
    let uri = format!("/results/{id}?wait=20");
    let waiter = tokio::spawn(async move {
        use tower::ServiceExt;
        let r = router
            .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    });
    while app.ctx.wait_limiter().held() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.cli(&["HSET", &format!("test.mognet.result.{id}"), "state", "\"SUCCESS\""]);
    let record = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiter never returned")
        .unwrap();
    assert_eq!(record["state"], "SUCCESS");
    assert_eq!(
        record["done"], true,
        "the wait ran out instead of being woken: {record}"
    );
}

#[tokio::test]
async fn the_root_and_unknown_routes_point_to_the_docs_page() {
    let app = TestApp::new(crate::support::Kind::Memory).await;
    let r = app.get("/").await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.header("location"), Some("/docs/"));
    for uri in ["/result", "/docs/no-such-asset.js"] {
        let r = app.get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.problem_code(), "not-found");
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("/docs/"), "{uri}: {detail}");
    }
    let r = app.get("/docs").await;
    assert!(r.status.is_redirection(), "/docs answers {}", r.status);
    assert_eq!(r.header("location"), Some("/docs/"));
}
