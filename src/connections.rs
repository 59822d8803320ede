//! The accept loop: one task per TCP connection, HTTP/1.1 served by hyper straight on the socket.
//!
//! `axum::serve` first hands every connection to hyper-util's protocol sniffer, which reads up
//! to 24 bytes (the HTTP/2 preface length) on its own and replays them to hyper. hyper's reader
//! then sees a partial request first, and growing its 8 KiB buffer for the rest doubles it to
//! 16 KiB, kept for the connection's life: the largest part of what a held long-poll costs.
//! resultd speaks HTTP/1.1 only, so nothing needs sniffing: hyper reads the socket itself.
//!
//! Slow and idle clients: hyper's header-read timeout (`server.header_read_timeout_ms`) runs
//! whenever a connection is waiting for a request head, which is from the accept until the head
//! is complete and again after each response. So it closes a slowloris connection that trickles
//! a head, a connection that never sends a byte, and an idle keep-alive connection alike. It
//! does not run while a request is in flight, so a held wait is never cut by it (hyper 1.x,
//! `proto/h1/conn.rs` `poll_read_head`; the dispatcher only reads a head in `Reading::Init`).
//!
//! At most `server.max_connections` connections are open at once: past it the loop stops
//! accepting, so the open ones keep working and new ones wait in the listen backlog until one
//! closes, instead of the process running out of file descriptors.
//!
//! Shutdown: once `shutdown` is cancelled no connection is accepted, idle ones close, and
//! [`serve`] returns when every connection has finished its requests.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tower::Service;

mod parse_errors;

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, idle keep-alive time included.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits `server` settings name.
    pub fn from_settings(server: &crate::config::ServerSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            max_connections: server.max_connections,
        }
    }
}

/// Serves `router` on every connection `listener` accepts until `shutdown` is cancelled, then
/// waits for the open connections to finish.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, shutdown: CancellationToken) {
    // Each connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    let slots = Arc::new(Semaphore::new(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let mut full = FullWarning::default();
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                full.hit(limits.max_connections);
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // The semaphore is never closed.
                        Err(_) => break,
                    },
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after_accept_error(&e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, router, limits, shutdown).await;
            drop(slot);
            drop(open);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
}

/// Warns that the connection cap is reached, once per burst: at most once in
/// [`FullWarning::EVERY`], counting the times it was reached in between.
#[derive(Default)]
struct FullWarning {
    last: Option<Instant>,
    since: u64,
}

impl FullWarning {
    const EVERY: Duration = Duration::from_secs(10);

    fn hit(&mut self, max_connections: usize) {
        self.since += 1;
        if self.last.is_some_and(|last| last.elapsed() < Self::EVERY) {
            return;
        }
        tracing::warn!(
            max_connections,
            times = self.since,
            "connection limit reached; new connections wait until one closes"
        );
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

/// Backs off after a failed `accept`: not at all for an aborted handshake, a second when the
/// process is out of file descriptors or memory, so the loop does not spin.
async fn pause_after_accept_error(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves the requests of one connection until it closes, or, after `shutdown`, until its
/// current request is answered.
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(remote));
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(parse_errors::ProblemAnswers::new(stream)), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Most are clients that went away mid-request.
        tracing::trace!(error = %e, "connection ended with an error");
    }
}
