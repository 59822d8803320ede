//! What every handler shares: the store, the settings, the policies and the shutdown signal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::api::auth::Authenticator;
use crate::api::wait::WaitLimiter;
use crate::config::{CelerySettings, Settings};
use crate::domain::AppName;
use crate::policy::{CompressionPolicy, TtlPolicy};
use crate::store::Store;
use crate::store::layout::celery::Celery;
use crate::store::layout::omniq::OmniQ;

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
    celery: BTreeMap<String, Celery>,
    omniq: OmniQ,
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
                celery: celery_layouts(&settings.celery),
                omniq: crate::server::omniq_layout(&settings),
                default_app,
                store,
                settings,
                shutdown,
            }),
        })
    }

    /// The Celery layout of an app (`celery.app` or a name in `celery.apps`).
    pub fn celery_layout(&self, app: &str) -> Option<&Celery> {
        self.inner.celery.get(app)
    }

    /// The path prefixes of other layouts' routes with the app token scopes give them.
    pub fn layout_apps(&self) -> [(&'static str, &str); 4] {
        let s = self.settings();
        [
            ("/celery/", s.celery.app.as_str()),
            ("/api/task/", s.celery.app.as_str()),
            ("/omniq/", s.omniq.app.as_str()),
            ("/rigatoni/", s.rigatoni.app.as_str()),
        ]
    }

    /// OmniQ's layout under the configured prefixes.
    pub fn omniq_layout(&self) -> &OmniQ {
        &self.inner.omniq
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

/// One Celery layout per configured app, each under its literal prefix.
fn celery_layouts(settings: &CelerySettings) -> BTreeMap<String, Celery> {
    let expires = (settings.result_expires > 0).then(|| Duration::from_secs(settings.result_expires));
    let failure = settings
        .result_failure_expires
        .map(|s| (s > 0).then(|| Duration::from_secs(s)));
    let layout = |prefix: &str| {
        let mut layout = Celery::new(prefix.to_owned(), expires, None);
        if let Some(failure) = failure {
            layout = layout.with_failure_expires(failure);
        }
        layout
    };
    std::iter::once((settings.app.clone(), layout(&settings.key_prefix)))
        .chain(settings.apps.iter().map(|(app, prefix)| (app.clone(), layout(prefix))))
        .collect()
}
