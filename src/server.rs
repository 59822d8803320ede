//! The running service: opening the store, the layer stack, serving and graceful shutdown.

use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::api::{self, ApiContext};
use crate::config::Settings;
use crate::store::layout::KeyspaceWatch;
use crate::store::layout::omniq::OmniQ;
use crate::store::layout::rigatoni::Rigatoni;
use crate::store::{MemoryStore, RedisStore, Store, StoreError};

/// Opens the store named by `settings.store`.
pub async fn open_store(settings: &Settings) -> Result<Store, StoreError> {
    if settings.store.starts_with("memory://") {
        let store = MemoryStore::new();
        store.spawn_sweeper(Duration::from_secs(1));
        return Ok(Store::Memory(store));
    }
    let store = RedisStore::connect_watching(&settings.store, &settings.redis, &keyspace_watches(settings)).await?;
    store.start_cache(settings.cache.max_bytes).await?;
    Ok(Store::Redis(store))
}

/// The keyspace subscriptions the enabled layouts need beside mognet's (Celery's writers
/// publish on their own channels and need none).
pub fn keyspace_watches(settings: &Settings) -> Vec<KeyspaceWatch> {
    let mut watches = Vec::new();
    if settings.omniq.enabled {
        let mut omniq = omniq_layout(settings).keyspace_watches();
        if !settings.omniq.notify {
            for w in &mut omniq {
                w.classes = "";
            }
        }
        watches.extend(omniq);
    }
    if settings.rigatoni.enabled {
        watches.push(Rigatoni::new(settings.rigatoni.key_prefix.clone()).keyspace_watch());
    }
    watches
}

/// OmniQ's layout under the configured prefixes.
pub fn omniq_layout(settings: &Settings) -> OmniQ {
    let o = &settings.omniq;
    OmniQ::new(
        o.results_prefix.clone(),
        o.tasks_prefix.clone(),
        o.events_prefix.clone(),
    )
}

/// The full application: routes plus the layer stack.
pub fn app(ctx: ApiContext) -> Router {
    let (router, _) = api::router().split_for_parts();
    router
        .merge(api::docs::router())
        .fallback(api::middleware::not_found)
        .method_not_allowed_fallback(api::middleware::method_not_allowed)
        // Innermost first: a panic in a handler becomes a problem, and the frame (request id,
        // token check, timeout, metrics, access log) wraps everything.
        .layer(CatchPanicLayer::custom(api::middleware::panic_response))
        .layer(from_fn_with_state(ctx.clone(), api::middleware::frame))
        .with_state(ctx)
}

/// Serves on `listener` until `shutdown` is cancelled, then drains for at most the grace period.
pub async fn serve(listener: TcpListener, ctx: ApiContext) {
    let shutdown = ctx.shutdown_token().clone();
    let grace = Duration::from_millis(ctx.settings().server.shutdown_grace_ms);
    let store = ctx.store().clone();
    let limits = crate::connections::ConnectionLimits::from_settings(&ctx.settings().server);
    let server = crate::connections::serve(listener, app(ctx), limits, shutdown.clone());
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still running after the grace period; exiting");
        }
    }
    store.close().await;
}

/// Resolves on SIGTERM or Ctrl-C; the handlers are in place as soon as this returns, so a
/// signal that arrives before the future is first polled still counts.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
