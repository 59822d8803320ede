//! Logging setup, the Prometheus recorder and the process-wide counters that logs and metrics
//! share.
//!
//! Metric names (all prefixed `resultd_`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method` (a standard method or `OTHER`), `route` (the route template), `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//! | `store_call_duration_seconds` | histogram | `op` (the store primitive) |
//! | `store_errors_total` | counter | `op`, `error` (`unavailable`, `backend`, `corrupt`, `contended`) |
//! | `waiters` | gauge | (long-polls held now) |
//! | `change_watches` | gauge | (key watches registered in the changes hub) |
//! | `keyspace_notifications_total` | counter | (Redis keyspace events received) |
//! | `cache_requests_total` | counter | `outcome` (`hit`, `miss`): plain reads of done-result candidates |
//! | `cache_deferred_total` | counter | (misses not kept: a result's first recent miss) |
//! | `cache_evictions_total` | counter | (entries dropped to stay under `cache.max_bytes`) |
//! | `cache_invalidations_total` | counter | (keys invalidated by a write or a tracking message) |
//! | `cache_flushes_total` | counter | (whole-cache flushes: reconnect, lost feed, `FLUSHDB`) |
//! | `cache_bytes`, `cache_entries` | gauge | (what the cache holds now) |
//! | `celery_channels` | gauge | (exact pub/sub channels subscribed for Celery waits) |
//! | `channel_messages_total` | counter | (messages received on those channels) |
//! | `celery_undecodable_total` | counter | `reason` (`bad-json`, `bad-compression`, …): stored Celery values that could not be read |

use std::future::Future;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

static NOTIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// Histogram buckets of request and store latencies, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counts one keyspace notification received.
pub fn count_notification() {
    NOTIFICATIONS.fetch_add(1, Ordering::Relaxed);
}

/// Keyspace notifications received so far.
pub fn notifications() -> u64 {
    NOTIFICATIONS.load(Ordering::Relaxed)
}

/// Installs the global log subscriber (`RUST_LOG` overrides `log.filter`).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or container logs.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process's Prometheus handle: the recorder is installed on first use, once per process
/// (many servers in one process, as in tests, share it). `None` when another recorder was
/// installed first.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".to_owned()), LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            // Histograms are drained by upkeep; without a scrape they would grow unbounded.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::park_timeout(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            describe();
            Some(handle)
        })
        .clone()
}

/// The `# HELP` lines.
fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        "resultd_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    metrics::describe_histogram!(
        "resultd_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by method and route template"
    );
    metrics::describe_histogram!(
        "resultd_store_call_duration_seconds",
        Unit::Seconds,
        "Latency of store primitives, by operation"
    );
    metrics::describe_counter!(
        "resultd_store_errors_total",
        "Failed store calls, by operation and error kind"
    );
    metrics::describe_gauge!("resultd_waiters", "Long-polls held now");
    metrics::describe_gauge!("resultd_change_watches", "Key watches registered for wake-ups");
    metrics::describe_counter!(
        "resultd_keyspace_notifications_total",
        "Redis keyspace notifications received"
    );
    metrics::describe_counter!(
        "resultd_cache_requests_total",
        "Plain reads of results looked up in the done-result cache, by outcome (hit, miss)"
    );
    metrics::describe_counter!(
        "resultd_cache_deferred_total",
        "Done-result cache misses not kept because they were a result's first recent miss"
    );
    metrics::describe_counter!(
        "resultd_cache_evictions_total",
        "Done-result cache entries dropped to stay under cache.max_bytes"
    );
    metrics::describe_counter!(
        "resultd_cache_invalidations_total",
        "Done-result cache keys invalidated by a write or a Redis tracking message"
    );
    metrics::describe_counter!(
        "resultd_cache_flushes_total",
        "Whole done-result cache flushes (reconnect, lost invalidation feed, FLUSHDB)"
    );
    metrics::describe_gauge!(
        "resultd_cache_bytes",
        Unit::Bytes,
        "Bytes held by the done-result cache"
    );
    metrics::describe_gauge!("resultd_cache_entries", "Entries held by the done-result cache");
    metrics::describe_gauge!(
        "resultd_celery_channels",
        "Exact pub/sub channels subscribed for Celery waits (one per waited id)"
    );
    metrics::describe_counter!(
        "resultd_channel_messages_total",
        "Messages received on the subscribed Celery channels"
    );
    metrics::describe_counter!(
        "resultd_celery_undecodable_total",
        "Stored Celery values that could not be decoded, by reason"
    );
    metrics::describe_counter!(
        "resultd_listing_skipped_records_total",
        "Result records left out of listings because their stored bytes cannot be read"
    );
}

/// Sets how many Celery channels are subscribed.
pub fn record_channels(subscribed: usize) {
    metrics::gauge!("resultd_celery_channels").set(subscribed as f64);
}

/// Counts one message received on a subscribed channel.
pub fn count_channel_message() {
    metrics::counter!("resultd_channel_messages_total").increment(1);
}

/// Counts one stored Celery value that could not be decoded.
pub fn count_undecodable(reason: &'static str) {
    metrics::counter!("resultd_celery_undecodable_total", "reason" => reason).increment(1);
}

/// Counts one unreadable record a listing left out.
pub fn count_skipped_record() {
    metrics::counter!("resultd_listing_skipped_records_total").increment(1);
}

/// Most (method, route, status) handle sets kept in the cache.
///
/// The labels are bounded already (ten method labels, the route templates, the statuses
/// resultd answers), so this is only a backstop: past it, requests are recorded through the
/// recorder's own lookup.
const MAX_CACHED_REQUEST_LABELS: usize = 2048;

/// The `method` label of a request: one of the nine standard methods, else `OTHER`.
///
/// Any token is a valid HTTP method, so labelling the raw name would let clients add metric
/// series without bound.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("OTHER")
}

/// Records one answered request (`method` is labelled as [`method_label`] says).
pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    if let Some(handles) = request_handles(method, route, status) {
        handles.duration.record(elapsed.as_secs_f64());
        handles.count.increment(1);
    }
}

/// The metric handles of one (method, route, status), registered once: looking them up in the
/// recorder on every request (label strings, hashing, a lock) costs more than the recording.
struct RequestHandles {
    method: &'static str,
    route: String,
    status: u16,
    duration: metrics::Histogram,
    count: metrics::Counter,
}

/// The cached handles for a request's labels; `None` until the recorder is installed.
fn request_handles(method: &'static str, route: &str, status: u16) -> Option<std::sync::Arc<RequestHandles>> {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, PoisonError, RwLock};
    type Cache = RwLock<HashMap<u64, Vec<Arc<RequestHandles>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CACHED: AtomicUsize = AtomicUsize::new(0);
    let cache = CACHE.get_or_init(Cache::default);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (method, route, status).hash(&mut hasher);
    let hash = hasher.finish();
    let same = |h: &&Arc<RequestHandles>| h.status == status && h.method == method && h.route == route;
    if let Some(found) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&hash)
        .and_then(|v| v.iter().find(same))
    {
        return Some(Arc::clone(found));
    }
    metrics_handle()?;
    let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
    let bucket = cache.entry(hash).or_default();
    if let Some(found) = bucket.iter().find(same) {
        return Some(Arc::clone(found));
    }
    let handles = Arc::new(register_request_handles(method, route, status));
    if CACHED.load(Ordering::Relaxed) < MAX_CACHED_REQUEST_LABELS {
        CACHED.fetch_add(1, Ordering::Relaxed);
        bucket.push(Arc::clone(&handles));
    }
    Some(handles)
}

/// Looks up (registering on first use) the recorder's handles for one request's labels.
fn register_request_handles(method: &'static str, route: &str, status: u16) -> RequestHandles {
    let labels = [("method", method.to_owned()), ("route", route.to_owned())];
    let duration = metrics::histogram!("resultd_http_request_duration_seconds", &labels);
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let count = metrics::counter!("resultd_http_requests_total", &labels);
    RequestHandles {
        method,
        route: route.to_owned(),
        status,
        duration,
        count,
    }
}

/// Runs one store call, recording its latency and, when it fails, the kind of its error
/// (`kind` classifies it, so this module knows nothing of the store's error type).
pub async fn store_call<T, E>(
    op: &'static str,
    kind: impl FnOnce(&E) -> &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    store_call_histogram(op).record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        metrics::counter!("resultd_store_errors_total", "op" => op, "error" => kind(e)).increment(1);
    }
    result
}

/// The latency histogram of one store primitive, registered once per primitive.
fn store_call_histogram(op: &'static str) -> metrics::Histogram {
    use std::sync::{PoisonError, RwLock};
    static CACHE: RwLock<Vec<(&'static str, metrics::Histogram)>> = RwLock::new(Vec::new());
    if let Some((_, h)) = CACHE
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(o, _)| *o == op)
    {
        return h.clone();
    }
    let histogram = metrics::histogram!("resultd_store_call_duration_seconds", "op" => op);
    if metrics_handle().is_some() {
        CACHE
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((op, histogram.clone()));
    }
    histogram
}

/// Sets the gauges read at scrape time.
pub fn record_gauges(waiters: usize, watches: usize) {
    metrics::gauge!("resultd_waiters").set(waiters as f64);
    metrics::gauge!("resultd_change_watches").set(watches as f64);
    metrics::counter!("resultd_keyspace_notifications_total").absolute(notifications());
}

/// Sets the done-result cache's counters and gauges, read at scrape time.
pub fn record_cache(stats: &crate::store::cache::CacheStats) {
    metrics::counter!("resultd_cache_requests_total", "outcome" => "hit").absolute(stats.hits);
    metrics::counter!("resultd_cache_requests_total", "outcome" => "miss").absolute(stats.misses);
    metrics::counter!("resultd_cache_deferred_total").absolute(stats.deferred);
    metrics::counter!("resultd_cache_evictions_total").absolute(stats.evictions);
    metrics::counter!("resultd_cache_invalidations_total").absolute(stats.invalidations);
    metrics::counter!("resultd_cache_flushes_total").absolute(stats.flushes);
    metrics::gauge!("resultd_cache_bytes").set(stats.bytes as f64);
    metrics::gauge!("resultd_cache_entries").set(stats.entries as f64);
}
