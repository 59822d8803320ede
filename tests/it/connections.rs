//! The accept loop: HTTP/1.1 on raw sockets, keep-alive, and what shutdown does to open connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Kind, LiveServer, test_settings};

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Reads one response head (up to the blank line) and returns it.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert_eq!(
            n,
            1,
            "the connection closed mid-head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// Reads the body announced by `head`'s Content-Length.
async fn read_body(stream: &mut TcpStream, head: &str) -> Vec<u8> {
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.expect("the body");
    body
}

/// Whether the server closes `stream` within 5 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_request_head_split_across_writes_is_served() {
    let server = LiveServer::start(Kind::Memory, test_settings()).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    for part in [&LIVE[..3], &LIVE[3..20], &LIVE[20..]] {
        stream.write_all(part).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.stop().await;
}

#[tokio::test]
async fn one_connection_serves_requests_one_after_another() {
    let server = LiveServer::start(Kind::Memory, test_settings()).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    for _ in 0..3 {
        stream.write_all(LIVE).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        read_body(&mut stream, &head).await;
    }
    // Pipelined: both answered, in order.
    let missing = b"GET /results/00000000-0000-4000-8000-000000000001 HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(&[LIVE, &missing[..]].concat()).await.unwrap();
    let first = read_head(&mut stream).await;
    read_body(&mut stream, &first).await;
    let second = read_head(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 404"), "{second}");
    server.stop().await;
}

#[tokio::test]
async fn something_that_is_not_http_gets_400_and_a_close() {
    let server = LiveServer::start(Kind::Memory, test_settings()).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"HELLO THERE\r\n\r\n").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    read_body(&mut stream, &head).await;
    assert!(closed_by_server(&mut stream).await);
    // HTTP/2 with prior knowledge is not spoken: the connection is closed.
    let mut h2 = TcpStream::connect(server.addr()).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), h2.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s")
        .ok();
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_and_silent_connections_at_once() {
    let server = LiveServer::start(Kind::Memory, test_settings()).await;
    // One connection idle after a request (keep-alive), one that never sent a byte.
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    idle.write_all(LIVE).await.unwrap();
    let head = read_head(&mut idle).await;
    read_body(&mut idle, &head).await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = std::time::Instant::now();
    // `stop` fails the test unless the server is gone within 10 s.
    server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2), "{:?}", stopping.elapsed());
    assert!(
        closed_by_server(&mut idle).await,
        "the idle keep-alive connection stayed open"
    );
    assert!(closed_by_server(&mut silent).await, "the silent connection stayed open");
}

/// Settings with a 300 ms header-read timeout.
fn short_header_timeout() -> resultd::config::Settings {
    let mut settings = test_settings();
    settings.server.header_read_timeout_ms = 300;
    settings
}

/// Waits up to `limit` for the server to close `stream`, answering how long that took; a byte
/// from the server (a response) counts as not closed.
async fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        Ok(Ok(_)) | Err(_) => None,
    }
}

/// One GET /health/live on a fresh connection, answering its status line.
async fn live_status(server: &LiveServer) -> String {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(LIVE).await.unwrap();
    let head = read_head(&mut stream).await;
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_closed_after_the_header_timeout_while_requests_keep_answering() {
    const SLOW: usize = 200;
    let server = LiveServer::start(Kind::Memory, short_header_timeout()).await;
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        slow.push(tokio::spawn(async move {
            let opened = std::time::Instant::now();
            stream
                .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            // One header byte every 50 ms, never the blank line, until the server hangs up.
            let mut buf = [0u8; 64];
            for _ in 0..200 {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(opened.elapsed()),
                        Ok(_) => return None,
                    },
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if stream.write_all(b"X").await.is_err() {
                            return Some(opened.elapsed());
                        }
                    }
                }
            }
            None
        }));
    }
    // Meanwhile normal requests are answered promptly.
    for _ in 0..10 {
        let asked = std::time::Instant::now();
        assert_eq!(live_status(&server).await, "HTTP/1.1 200 OK");
        assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut longest = Duration::ZERO;
    for task in slow {
        let closed = task
            .await
            .unwrap()
            .expect("a slow connection was answered or left open for 10 s");
        assert!(
            closed >= Duration::from_millis(250),
            "closed before the timeout: {closed:?}"
        );
        longest = longest.max(closed);
    }
    eprintln!(
        "{SLOW} slow connections: all closed {:?} after the first opened, the longest {longest:?} after its own start",
        started.elapsed()
    );
    assert!(longest < Duration::from_secs(3), "{longest:?}");
    assert_eq!(live_status(&server).await, "HTTP/1.1 200 OK");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_connection_and_an_idle_keep_alive_one_are_closed_after_the_header_timeout() {
    let server = LiveServer::start(Kind::Memory, short_header_timeout()).await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    idle.write_all(LIVE).await.unwrap();
    let head = read_head(&mut idle).await;
    read_body(&mut idle, &head).await;
    let silent_closed = time_to_close(&mut silent, Duration::from_secs(5)).await;
    let idle_closed = time_to_close(&mut idle, Duration::from_secs(5)).await;
    let silent_closed = silent_closed.expect("the silent connection stayed open");
    assert!(idle_closed.is_some(), "the idle keep-alive connection stayed open");
    assert!(
        (Duration::from_millis(200)..Duration::from_secs(2)).contains(&silent_closed),
        "{silent_closed:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_wait_longer_than_the_header_timeout_completes() {
    let server = LiveServer::start(Kind::Memory, short_header_timeout()).await;
    let id = crate::support::new_id();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let put = format!(
        "PUT /results/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(put.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    read_body(&mut stream, &head).await;
    // The same connection, a wait of 1 s: more than three header timeouts.
    let asked = std::time::Instant::now();
    let wait = format!("GET /results/{id}?wait=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(wait.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&read_body(&mut stream, &head).await).unwrap();
    assert_eq!(body["done"], false);
    assert!(asked.elapsed() >= Duration::from_millis(900), "{:?}", asked.elapsed());
    // Idle again afterwards, it is closed like any other.
    assert!(time_to_close(&mut stream, Duration::from_secs(5)).await.is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    const MAX: usize = 3;
    let mut settings = test_settings();
    settings.server.max_connections = MAX;
    let server = LiveServer::start(Kind::Memory, settings).await;
    let mut open = Vec::new();
    for _ in 0..MAX {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(LIVE).await.unwrap();
        let head = read_head(&mut stream).await;
        read_body(&mut stream, &head).await;
        open.push(stream);
    }
    // The kernel completes the handshake, but resultd does not take the connection.
    let mut extra = TcpStream::connect(server.addr()).await.unwrap();
    extra.write_all(LIVE).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), extra.read(&mut byte))
            .await
            .is_err(),
        "connection {} was served past max_connections = {MAX}",
        MAX + 1
    );
    // The open ones keep working.
    for stream in &mut open {
        stream.write_all(LIVE).await.unwrap();
        let head = read_head(stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        read_body(stream, &head).await;
    }
    // One closes: the waiting one is served.
    drop(open.pop());
    let head = read_head(&mut extra).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.stop().await;
}
