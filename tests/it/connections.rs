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
