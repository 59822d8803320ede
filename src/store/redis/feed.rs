//! The change feed: keyspace subscriptions, their reconnects, and the poller used while
//! notifications are off.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::Server;
use tokio_util::sync::CancellationToken;

use super::RedisStore;
use super::connection::builder;
use super::reply::map_err;
use crate::store::StoreError;

/// How waiters learn of changes, and the connections that tell them.
pub(super) struct Feed {
    /// The keyspace patterns subscribed to: mognet's, and those of the other layouts served.
    pub(super) patterns: Vec<String>,
    /// The event classes those layouts need (`notify-keyspace-events` letters besides `K`).
    pub(super) classes: String,
    /// Key prefixes of layouts served without notifications: their waited keys are polled
    /// even while notifications are on.
    pub(super) polled: Vec<String>,
    /// The database whose events count (always 0 on a Cluster).
    pub(super) db: u8,
    /// Whether resultd may turn notifications on with `CONFIG SET`.
    pub(super) configure: bool,
    /// Re-read interval of the poller, used while notifications are off.
    pub(super) poll_interval: Duration,
    /// Standalone and Sentinel: the one subscriber. Cluster: one per primary (notifications
    /// are published only on the node that holds the key), by address.
    pub(super) subscribers: Mutex<HashMap<Server, (SubscriberClient, CancellationToken)>>,
}

impl Feed {
    pub(super) fn subscribers(&self) -> MutexGuard<'_, HashMap<Server, (SubscriberClient, CancellationToken)>> {
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks `notify-keyspace-events` on one node and, when allowed, adds `K` and `classes`
/// (`h g x` for mognet; `$` for layouts written with plain `SET`).
pub(super) async fn ensure_notify_flags<C: ConfigInterface + Sync>(node: &C, configure: bool, classes: &str) -> bool {
    let current: Result<HashMap<String, String>, _> = node.config_get("notify-keyspace-events").await;
    let Ok(current) = current else { return false };
    let flags = current.get("notify-keyspace-events").cloned().unwrap_or_default();
    // `A` stands for every class but `m`, `n`, `t`, `d`, `e` (and `K`/`E`).
    let has = |c: char| flags.contains(c) || (flags.contains('A') && "g$lshzxe".contains(c));
    if flags.contains('K') && classes.chars().all(has) {
        return true;
    }
    if !configure {
        return false;
    }
    let mut wanted: String = flags;
    for c in std::iter::once('K').chain(classes.chars()) {
        if !wanted.contains(c) {
            wanted.push(c);
        }
    }
    node.config_set::<_, _>("notify-keyspace-events", wanted).await.is_ok()
}

impl RedisStore {
    /// Turns notifications on (when allowed), subscribes, and starts the tasks that wake
    /// waiters: the event readers, the re-subscription after reconnects, the poller, and on a
    /// Cluster the task that follows the set of primaries.
    pub(super) async fn start_change_feed(&self) -> Result<(), StoreError> {
        let enabled = self.enable_notifications().await;
        self.inner.notifications.store(enabled, Ordering::Relaxed);
        if enabled {
            tracing::info!("waits are woken by Redis keyspace notifications");
        } else {
            tracing::warn!(
                interval_ms = self.inner.feed.poll_interval.as_millis() as u64,
                "keyspace notifications are unavailable (CONFIG refused or disabled): waits fall back to batched polling"
            );
        }
        if self.inner.clustered {
            self.sync_cluster_subscribers().await;
            self.spawn_cluster_follower();
        } else {
            let config = self.inner.config.clone();
            let subscriber = builder(config, self.inner.timeouts)
                .build_subscriber_client()
                .map_err(|e| map_err(&e))?;
            let key = self
                .inner
                .config
                .server
                .hosts()
                .first()
                .cloned()
                .unwrap_or_else(|| Server::new("redis", 6379));
            self.add_subscriber(key, subscriber).await;
        }
        self.spawn_reconnect_hook();
        self.spawn_poller();
        Ok(())
    }

    /// Connects a subscriber, subscribes it, and starts reading its events; on each of its
    /// reconnects it subscribes again and every waiter re-reads.
    pub(super) async fn add_subscriber(&self, key: Server, subscriber: SubscriberClient) {
        let patterns = self.inner.feed.patterns.clone();
        let db = self.inner.feed.db;
        // Reconnects (and the first connect) re-subscribe here rather than through fred's
        // subscription tracking, so the wake-up of waiters comes after the subscription is live.
        let mut reconnects = subscriber.reconnect_rx();
        let mut events = subscriber.keyspace_event_rx();
        let stop = CancellationToken::new();
        subscriber.connect();
        let _ = tokio::time::timeout(self.inner.timeouts.connect, subscriber.wait_for_connect()).await;
        if let Err(e) = subscriber.psubscribe(patterns.clone()).await {
            tracing::warn!(node = %key, error = %e, "keyspace subscription failed; retried on reconnect");
        }
        let weak = Arc::downgrade(&self.inner);
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    () = stopped.cancelled() => break,
                };
                match event {
                    Ok(event) => {
                        let Some(inner) = weak.upgrade() else { break };
                        if event.db != db {
                            continue;
                        }
                        crate::telemetry::count_notification();
                        if let Some(key) = event.key.as_str() {
                            inner.changes.notify(key);
                        }
                    }
                    // Missed events: make every waiter look again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let Some(inner) = weak.upgrade() else { break };
                        inner.changes.notify_all();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        // A subscriber sends nothing on its own, so a dead network would go unnoticed and waits
        // would sleep to their deadline: ping it, and let the unresponsive check reconnect.
        let pinger = subscriber.clone();
        let stopped = stop.clone();
        let period = self
            .inner
            .timeouts
            .command
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stopped.cancelled() => break,
                }
                if pinger.is_connected() {
                    let _ = tokio::time::timeout(period * 4, pinger.ping::<Value>(None)).await;
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let resubscriber = subscriber.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = reconnects.recv() => if r.is_err() { break },
                    () = stopped.cancelled() => break,
                }
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = resubscriber.psubscribe(patterns.clone()).await {
                    tracing::warn!(error = %e, "keyspace re-subscription failed");
                }
                let store = Self { inner };
                let enabled = store.enable_notifications().await;
                store.inner.notifications.store(enabled, Ordering::Relaxed);
                store.inner.changes.notify_all();
            }
        });
        if let Some((_, old)) = self.inner.feed.subscribers().insert(key, (subscriber, stop)) {
            old.cancel();
        }
    }

    /// After any reconnect of the pool: turn notifications back on (a restarted or promoted
    /// Redis does not have them) and make every waiter re-read, so nothing that happened while
    /// disconnected is missed.
    fn spawn_reconnect_hook(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut reconnects = self.inner.pool.next().reconnect_rx();
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                let Some(inner) = weak.upgrade() else { break };
                let store = Self { inner };
                let enabled = store.enable_notifications().await;
                store.inner.notifications.store(enabled, Ordering::Relaxed);
                store.inner.changes.notify_all();
            }
        });
    }

    /// The poller runs always but only works while notifications are off, or for the keys of
    /// layouts served without them.
    fn spawn_poller(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.feed.poll_interval;
        tokio::spawn(async move {
            let mut seen: HashMap<String, String> = HashMap::new();
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let notified = inner.notifications.load(Ordering::Relaxed);
                if notified && inner.feed.polled.is_empty() {
                    seen.clear();
                    continue;
                }
                let mut keys = inner.changes.watched_keys();
                if notified {
                    // Notifications wake the other keys; only layouts without them are polled.
                    keys.retain(|k| inner.feed.polled.iter().any(|p| k.starts_with(p.as_str())));
                }
                if keys.is_empty() {
                    seen.clear();
                    continue;
                }
                let this = Self { inner };
                let Ok(tags) = this.fingerprints(&keys).await else {
                    continue;
                };
                let mut next = HashMap::with_capacity(keys.len());
                for (key, tag) in keys.into_iter().zip(tags) {
                    // A key seen for the first time wakes its waiters too: it may have changed
                    // between their read and this first look, which no later diff would show.
                    if seen.get(&key).is_none_or(|old| *old != tag) {
                        this.inner.changes.notify(&key);
                    }
                    next.insert(key, tag);
                }
                seen = next;
            }
        });
    }

    /// A content fingerprint per key, any type (`""`: absent), all in one round trip.
    async fn fingerprints(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let script = &self.inner.scripts.fingerprint;
        let client = self.client();
        let replies = futures::future::try_join_all(
            keys.iter()
                .map(|k| script.evalsha_with_reload::<Value, _, _>(client, vec![k.clone()], Vec::<Value>::new())),
        )
        .await
        .map_err(|e| map_err(&e))?;
        Ok(replies.into_iter().map(super::reply::string_of).collect())
    }

    /// Makes sure `notify-keyspace-events` covers hash, generic and expiry events, on every
    /// primary of a Cluster.
    pub(super) async fn enable_notifications(&self) -> bool {
        let configure = self.inner.feed.configure;
        let classes = self.inner.feed.classes.as_str();
        if !self.inner.clustered {
            return ensure_notify_flags(self.client(), configure, classes).await;
        }
        let primaries = self.cluster_primaries();
        if primaries.is_empty() {
            return false;
        }
        let mut all = true;
        for primary in primaries {
            all &= ensure_notify_flags(&self.client().with_cluster_node(primary), configure, classes).await;
        }
        all
    }
}
