//! The running service: shared context, the layer stack, serving and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use crate::api;
use crate::api::auth::Authenticator;
use crate::api::wait::WaitLimiter;
use crate::config::Settings;
use crate::domain::AppName;
use crate::policy::{CompressionPolicy, TtlPolicy};
use crate::store::{MemoryStore, RedisStore, Store, StoreError};

struct Inner {
    store: Store,
    settings: Settings,
    default_app: AppName,
    ttl: TtlPolicy,
    compression: CompressionPolicy,
    waits: Arc<WaitLimiter>,
    auth: Authenticator,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
}

/// What every handler shares: the store, the policies and the shutdown signal.
#[derive(Clone)]
pub struct ApiContext {
    inner: Arc<Inner>,
}

impl ApiContext {
    /// Builds the context over an opened store.
    pub fn new(settings: Settings, store: Store, shutdown: CancellationToken) -> Result<Self, String> {
        let default_app = AppName::parse(&settings.default_app).map_err(|e| e.0)?;
        Ok(Self {
            inner: Arc::new(Inner {
                ttl: TtlPolicy::new(settings.ttl.clone()),
                compression: CompressionPolicy::new(settings.compression.clone()),
                waits: Arc::new(WaitLimiter::new(
                    settings.wait.max_waiters,
                    settings.wait.max_waiters_per_client,
                )),
                auth: Authenticator::new(&settings.auth),
                metrics: crate::telemetry::metrics_handle(),
                default_app,
                store,
                settings,
                shutdown,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The app of requests that name none.
    pub fn default_app(&self) -> &AppName {
        &self.inner.default_app
    }

    /// The TTL policy.
    pub fn ttl(&self) -> &TtlPolicy {
        &self.inner.ttl
    }

    /// The compression policy.
    pub fn compression(&self) -> &CompressionPolicy {
        &self.inner.compression
    }

    /// The wait caps.
    pub fn wait_limiter(&self) -> &Arc<WaitLimiter> {
        &self.inner.waits
    }

    /// The bearer-token checks.
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The process's Prometheus handle (`None` when another recorder was installed first).
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// Cancelled when the server starts shutting down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}

/// Opens the store named by `settings.store`.
pub async fn open_store(settings: &Settings) -> Result<Store, StoreError> {
    if settings.store.starts_with("memory://") {
        let store = MemoryStore::new();
        store.spawn_sweeper(Duration::from_secs(1));
        return Ok(Store::Memory(store));
    }
    Ok(Store::Redis(
        RedisStore::connect(&settings.store, &settings.redis).await?,
    ))
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
    let server = crate::connections::serve(listener, app(ctx), shutdown.clone());
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
