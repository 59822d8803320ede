//! The accept loop: one task per TCP connection, HTTP/1.1 served by hyper straight on the socket.
//!
//! `axum::serve` first hands every connection to hyper-util's protocol sniffer, which reads up
//! to 24 bytes (the HTTP/2 preface length) on its own and replays them to hyper. hyper's reader
//! then sees a partial request first, and growing its 8 KiB buffer for the rest doubles it to
//! 16 KiB, kept for the connection's life: the largest part of what a held long-poll costs.
//! resultd speaks HTTP/1.1 only, so nothing needs sniffing: hyper reads the socket itself.
//!
//! Shutdown: once `shutdown` is cancelled no connection is accepted, idle ones close, and
//! [`serve`] returns when every connection has finished its requests.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Serves `router` on every connection `listener` accepts until `shutdown` is cancelled, then
/// waits for the open connections to finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    // Each connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    loop {
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
            serve_connection(stream, remote, router, shutdown).await;
            drop(open);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
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
async fn serve_connection(stream: TcpStream, remote: SocketAddr, router: Router, shutdown: CancellationToken) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(remote));
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
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
