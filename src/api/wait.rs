//! Long-poll waiting: hold a request until its resource changes the way it asked, or time out.
//!
//! The order of steps is what makes this correct: register interest in the key, *then* read it.
//! A change that lands between the read and the sleep has already bumped the key's channel, so
//! the sleep ends at once and the waiter reads again. Every wake re-reads the store; a
//! notification only says "look again", never what changed, so a missed or duplicated
//! notification cannot produce a wrong answer, only an extra read.
//!
//! A wait ends with the resource when it is ready, with the last seen resource at the deadline
//! (clamped to `wait.max_seconds`) or at shutdown, and with a 404 when a resource seen during the
//! wait disappears (deleted or expired). Dropping the request (client gone) drops the watch, so
//! no waiter outlives its connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::Instant;

use crate::api::ApiContext;
use crate::error::{ApiError, ErrorCode};
use crate::store::{KeyWatch, ResultStore};

/// What one look at a waited resource found.
pub enum Probe<T> {
    /// The resource is as the waiter wants: answer now.
    Ready(T),
    /// Not yet: keep waiting, answer this at the deadline.
    Pending(T),
    /// The resource does not exist (now).
    Missing,
}

/// How a wait ended.
pub enum WaitEnd<T> {
    /// Ready, or the deadline or shutdown came with this as the last look.
    Done(T),
    /// The resource never existed or vanished during the wait.
    Missing,
}

/// The wait a request asked for: `?wait=N` or `Prefer: wait=N`, clamped to the maximum.
#[derive(Debug, Clone, Copy)]
pub struct WaitRequest {
    /// How long to hold the request.
    pub duration: Duration,
    /// Whether it came from `Prefer` (the answer then carries `Preference-Applied`).
    pub from_prefer: bool,
}

impl WaitRequest {
    /// The `Preference-Applied` value of the wait used.
    pub fn preference_applied(&self) -> String {
        format!("wait={}", self.duration.as_secs())
    }

    /// Adds `Preference-Applied` to the answer of this wait when it came from `Prefer`.
    pub fn applied_to(&self, mut response: axum::response::Response) -> axum::response::Response {
        if self.from_prefer
            && let Ok(h) = axum::http::HeaderValue::from_str(&self.preference_applied())
        {
            response.headers_mut().insert("preference-applied", h);
        }
        response
    }
}

/// Reads `?wait=` (seconds, fractions allowed) or `Prefer: wait=` from a request.
pub fn wait_request(
    ctx: &ApiContext,
    query_wait: Option<f64>,
    headers: &HeaderMap,
) -> Result<Option<WaitRequest>, ApiError> {
    let max = Duration::from_secs(ctx.settings().wait.max_seconds);
    // A bad `?wait=` is the query's fault, a bad `Prefer: wait=` the header's.
    let clamp = |secs: f64, code: ErrorCode| -> Result<Duration, ApiError> {
        if !secs.is_finite() || secs < 0.0 {
            let what = if code == ErrorCode::InvalidHeader {
                "Prefer: wait="
            } else {
                "wait"
            };
            return Err(ApiError::new(code, format!("{what} must be a number of seconds ≥ 0")));
        }
        Ok(Duration::from_secs_f64(secs.min(max.as_secs_f64())))
    };
    if let Some(secs) = query_wait {
        return Ok(Some(WaitRequest {
            duration: clamp(secs, ErrorCode::InvalidQuery)?,
            from_prefer: false,
        }));
    }
    for value in headers.get_all("prefer") {
        let Ok(value) = value.to_str() else { continue };
        for pref in value.split(',') {
            let pref = pref.trim();
            if let Some(v) = pref.strip_prefix("wait=") {
                let secs: f64 = v.trim().parse().map_err(|_| {
                    ApiError::new(ErrorCode::InvalidHeader, "Prefer: wait= must be a number of seconds")
                })?;
                return Ok(Some(WaitRequest {
                    duration: clamp(secs, ErrorCode::InvalidHeader)?,
                    from_prefer: true,
                }));
            }
        }
    }
    Ok(None)
}

/// A `timeout` in seconds (a multi-wait's body, Flower's query): absent is no wait, the rest is
/// clamped to `wait.max_seconds`; a negative or non-finite one is refused with `code`.
pub fn timeout_seconds(ctx: &ApiContext, timeout: Option<f64>, code: ErrorCode) -> Result<Duration, ApiError> {
    match timeout {
        Some(t) if !t.is_finite() || t < 0.0 => Err(ApiError::new(code, "timeout must be a number of seconds ≥ 0")),
        Some(t) => Ok(Duration::from_secs_f64(t.min(ctx.settings().wait.max_seconds as f64))),
        None => Ok(Duration::ZERO),
    }
}

/// Caps on held waits, global and per client address, and on the ids one client watches.
#[derive(Default)]
pub struct WaitLimiter {
    held: Mutex<Held>,
    max_total: usize,
    max_per_client: usize,
    max_ids_per_client: usize,
}

/// What is held now: waits in all, and per client its waits and watched ids.
#[derive(Default)]
struct Held {
    total: usize,
    clients: HashMap<IpAddr, (usize, usize)>,
}

/// A held wait slot; dropping it frees the slot.
pub struct WaitSlot {
    limiter: Arc<WaitLimiter>,
    client: Option<IpAddr>,
    ids: usize,
}

impl WaitLimiter {
    /// A limiter with the given caps.
    pub fn new(max_total: usize, max_per_client: usize, max_ids_per_client: usize) -> Self {
        Self {
            held: Mutex::new(Held::default()),
            max_total,
            max_per_client,
            max_ids_per_client,
        }
    }

    /// Takes a slot for a wait on `ids` results, or answers 503 (server full) / 429 (this
    /// client holds too many waits, or watches too many ids).
    pub fn acquire(self: &Arc<Self>, client: Option<IpAddr>, ids: usize) -> Result<WaitSlot, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.total >= self.max_total {
            return Err(ApiError::new(
                ErrorCode::WaitersExhausted,
                format!("the server already holds {} waits", self.max_total),
            )
            .with_retry_after(1));
        }
        if let Some(ip) = client {
            let (waits, watched) = held.clients.entry(ip).or_insert((0, 0));
            if *waits >= self.max_per_client {
                return Err(ApiError::new(
                    ErrorCode::TooManyWaiters,
                    format!("this client already holds {} waits", self.max_per_client),
                )
                .with_retry_after(1));
            }
            if *watched + ids > self.max_ids_per_client {
                let watched = *watched;
                if watched == 0 {
                    held.clients.remove(&ip);
                }
                return Err(ApiError::new(
                    ErrorCode::TooManyWaiters,
                    format!(
                        "this client already waits on {watched} ids; {ids} more would pass the limit of {}",
                        self.max_ids_per_client
                    ),
                )
                .with_retry_after(1));
            }
            *waits += 1;
            *watched += ids;
        }
        held.total += 1;
        Ok(WaitSlot {
            limiter: Arc::clone(self),
            client,
            ids,
        })
    }

    /// Waits held now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut held = self.limiter.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(ip) = self.client
            && let Some((waits, watched)) = held.clients.get_mut(&ip)
        {
            *waits = waits.saturating_sub(1);
            *watched = watched.saturating_sub(self.ids);
            if *waits == 0 {
                held.clients.remove(&ip);
            }
        }
    }
}

/// Holds until `probe` finds the resource ready, it vanishes, the deadline passes or the server
/// shuts down; re-probes whenever any key in `watches` changes.
///
/// Once a probe has succeeded, a store outage (a failover, a restart) does not end the wait:
/// the probe is retried every `redis.poll_interval_ms` until the store answers again or the
/// deadline comes, which then answers the last resource seen. Only a wait whose very first
/// probe fails answers 503 at once.
pub async fn wait_until<T, F, Fut>(
    ctx: &ApiContext,
    mut watches: Vec<KeyWatch>,
    duration: Duration,
    mut probe: F,
) -> Result<WaitEnd<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, ApiError>>,
{
    let deadline = Instant::now() + duration;
    let shutdown = ctx.shutdown_token();
    let retry = Duration::from_millis(ctx.settings().redis.poll_interval_ms.clamp(50, 1000));
    let mut last: Option<T> = None;
    let mut probed = false;
    loop {
        let failed = match probe().await {
            Ok(Probe::Ready(t)) => return Ok(WaitEnd::Done(t)),
            Ok(Probe::Pending(t)) => {
                last = Some(t);
                false
            }
            Ok(Probe::Missing) if last.is_some() => return Ok(WaitEnd::Missing),
            Ok(Probe::Missing) => false,
            Err(e) if probed && e.code() == ErrorCode::StoreUnavailable => {
                tracing::debug!(error = %e, "a wait's probe failed; retrying until the deadline");
                true
            }
            Err(e) => return Err(e),
        };
        probed = true;
        let any_change = futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        let retry_sleep = async {
            if failed {
                tokio::time::sleep(retry).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = any_change => {}
            () = retry_sleep => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = shutdown.cancelled() => break,
        }
    }
    Ok(last.map_or(WaitEnd::Missing, WaitEnd::Done))
}

/// Holds a wait on many resources until `satisfied` holds, the deadline passes or the server
/// shuts down; answers the last readings.
///
/// `read` reads the resources at the given indices (all of them first, then only those whose
/// watch fired: one write costs a waiter one small read, not a read of everything it waits
/// on). `watches[i]` is the watch of resource `i`, taken before the first read. As with single
/// waits, only a failing first reading answers 503; later outages are retried every
/// `redis.poll_interval_ms` until the deadline.
pub async fn wait_for_many<T, R, Fut>(
    ctx: &ApiContext,
    watches: Vec<KeyWatch>,
    timeout: Duration,
    mut read: R,
    satisfied: impl Fn(&[T]) -> bool,
) -> Result<Vec<T>, ApiError>
where
    R: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<T>, ApiError>>,
{
    use futures::{FutureExt, StreamExt};
    let deadline = Instant::now() + timeout;
    let shutdown = ctx.shutdown_token();
    let retry = Duration::from_millis(ctx.settings().redis.poll_interval_ms.clamp(50, 1000));
    let count = watches.len();
    let mut changes = futures::stream::select_all(watches.into_iter().enumerate().map(|(index, watch)| {
        futures::stream::unfold(watch, move |mut watch| async move {
            watch.changed().await;
            Some((index, watch))
        })
        .boxed()
    }));
    let mut readings = read((0..count).collect()).await?;
    let mut stale: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    loop {
        if stale.is_empty() && satisfied(&readings) {
            break;
        }
        let retry_sleep = async {
            if stale.is_empty() {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(retry).await;
            }
        };
        tokio::select! {
            Some(index) = changes.next() => {
                stale.insert(index);
                // Every change already signalled joins the same re-read.
                while let Some(Some(index)) = changes.next().now_or_never() {
                    stale.insert(index);
                }
            }
            () = retry_sleep => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = shutdown.cancelled() => break,
        }
        match read(stale.iter().copied().collect()).await {
            Ok(fresh) => {
                for (index, reading) in stale.iter().zip(fresh) {
                    readings[*index] = reading;
                }
                stale.clear();
            }
            Err(e) if e.code() == ErrorCode::StoreUnavailable => {
                tracing::debug!(error = %e, "a multi-wait's re-read failed; retrying until the deadline");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(readings)
}

/// Registers a waiter on `key` after taking a slot; the slot is freed with the returned guard.
pub fn watch_key(
    ctx: &ApiContext,
    client: Option<IpAddr>,
    keys: &[String],
) -> Result<(WaitSlot, Vec<KeyWatch>), ApiError> {
    if ctx.shutdown_token().is_cancelled() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down").with_retry_after(1));
    }
    let slot = ctx.wait_limiter().acquire(client, keys.len())?;
    let hub = ctx.store().changes();
    Ok((slot, keys.iter().map(|k| hub.watch(k)).collect()))
}
