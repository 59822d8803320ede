//! What every handler shares: the store, the settings, the policies and the shutdown signal.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::api::auth::Authenticator;
use crate::api::wait::WaitLimiter;
use crate::config::Settings;
use crate::domain::AppName;
use crate::policy::{CompressionPolicy, TtlPolicy};
use crate::store::Store;

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
                    settings.wait.max_watched_ids_per_client,
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
