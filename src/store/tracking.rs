//! Redis client tracking for the done-result cache: a reader connection whose reads Redis
//! remembers, and a feed connection that hears when any of those keys changes.
//!
//! The reader runs `CLIENT TRACKING ON REDIRECT <feed id>`; the feed (RESP2) subscribes to
//! `__redis__:invalidate`. Redis then sends the feed every key the reader read once it is
//! written, deleted, expired or evicted, by any client, and a null message on `FLUSHDB` and
//! `FLUSHALL` (which keyspace notifications never report). Either connection lost (or a lagging
//! feed) and the whole cache is flushed and kept empty until tracking is on again, so what was
//! missed meanwhile is never served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::SubscriberClient;
use fred::interfaces::TrackingInterface;
use fred::prelude::*;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::cache::ResultCache;
use super::{HashSnapshot, StoreError};

/// The channel Redis sends redirected invalidations to.
const INVALIDATION_CHANNEL: &str = "__redis__:invalidate";

/// How often the feed is checked for life while nothing else happens.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The reader, the feed and the cache they keep exact.
pub struct Tracking {
    reader: Client,
    feed: SubscriberClient,
    cache: Arc<ResultCache>,
    command_timeout: Duration,
    stop: CancellationToken,
    /// Whether the last attempt to turn tracking on failed (it is retried every heartbeat, but
    /// warned about once).
    failing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking").field("cache", &self.cache).finish()
    }
}

impl Tracking {
    /// Connects both (waiting at most `connect_timeout`), turns tracking on, and starts the task
    /// that applies invalidations and restores tracking after every reconnect.
    pub async fn start(
        reader: Client,
        feed: SubscriberClient,
        cache: ResultCache,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Arc<Self> {
        let tracking = Arc::new(Self {
            reader,
            feed,
            cache: Arc::new(cache),
            command_timeout,
            stop: CancellationToken::new(),
            failing: std::sync::atomic::AtomicBool::new(false),
        });
        // Subscribed before connecting, so the first connect's events are not missed.
        let invalidations = tracking.feed.invalidation_rx();
        let feed_reconnects = tracking.feed.reconnect_rx();
        let reader_reconnects = tracking.reader.reconnect_rx();
        tracking.reader.connect();
        tracking.feed.connect();
        let _ = tokio::time::timeout(connect_timeout, async {
            let _ = tracking.reader.wait_for_connect().await;
            let _ = tracking.feed.wait_for_connect().await;
        })
        .await;
        tracking.enable().await;
        let runner = Arc::clone(&tracking);
        tokio::spawn(async move {
            runner.run(invalidations, feed_reconnects, reader_reconnects).await;
        });
        tracking
    }

    /// The cache this tracking keeps exact.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// Turns tracking on from scratch; the cache goes live only when it succeeded.
    async fn enable(&self) -> bool {
        self.cache.set_live(false);
        let steps = async {
            // A subscribed RESP2 connection accepts no other command: leave the channel, ask the
            // connection's id, then listen again.
            let _: () = self.feed.unsubscribe(INVALIDATION_CHANNEL).await?;
            let id: i64 = self.feed.client_id().await?;
            let _: () = self.feed.subscribe(INVALIDATION_CHANNEL).await?;
            let _: () = self
                .reader
                .client_tracking("on", Some(id), Vec::<String>::new(), false, false, false, false)
                .await?;
            Ok::<(), Error>(())
        };
        let failure = match tokio::time::timeout(self.command_timeout * 4, steps).await {
            Ok(Ok(())) => {
                self.cache.set_live(true);
                self.failing.store(false, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("result cache: client tracking is on");
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if self.failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(error = %failure, "result cache: client tracking is still off");
        } else {
            tracing::warn!(error = %failure, "result cache: client tracking could not be turned on; reads go to Redis until it is (retried every second)");
        }
        false
    }

    async fn run(
        self: Arc<Self>,
        mut invalidations: tokio::sync::broadcast::Receiver<fred::types::client::Invalidation>,
        mut feed_reconnects: tokio::sync::broadcast::Receiver<Server>,
        mut reader_reconnects: tokio::sync::broadcast::Receiver<Server>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                message = invalidations.recv() => match message {
                    Ok(invalidation) if invalidation.keys.is_empty() => self.cache.flush(),
                    Ok(invalidation) => {
                        for key in &invalidation.keys {
                            // A key that is not text is not one resultd reads: nothing is cached under it.
                            if let Some(k) = key.as_str() {
                                self.cache.invalidate(k);
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.cache.flush(),
                    Err(RecvError::Closed) => {
                        self.cache.set_live(false);
                        break;
                    }
                },
                reconnect = feed_reconnects.recv() => {
                    if matches!(reconnect, Err(RecvError::Closed)) { self.cache.set_live(false); break; }
                    self.enable().await;
                }
                reconnect = reader_reconnects.recv() => {
                    if matches!(reconnect, Err(RecvError::Closed)) { self.cache.set_live(false); break; }
                    self.enable().await;
                }
                _ = heartbeat.tick() => {
                    if !self.cache.is_live() {
                        self.enable().await;
                    } else if !self.feed_answers().await {
                        // A silent feed may be missing invalidations: serve nothing from memory
                        // until tracking is proven on again.
                        tracing::warn!("result cache: the invalidation feed does not answer; cache flushed");
                        self.cache.set_live(false);
                    }
                }
            }
        }
    }

    async fn feed_answers(&self) -> bool {
        self.feed.is_connected()
            && self.reader.is_connected()
            && matches!(
                tokio::time::timeout(self.command_timeout, self.feed.ping::<()>(None)).await,
                Ok(Ok(()))
            )
    }

    /// Reads a hash and its TTL on the tracked connection (both commands share one round trip).
    pub async fn read(&self, key: &str) -> Result<Option<HashSnapshot>, StoreError> {
        let (fields, pttl) = tokio::join!(self.reader.hgetall::<Value, _>(key), self.reader.pttl::<i64, _>(key));
        let fields = fields.map_err(|e| super::redis::reply::map_err(&e))?;
        let pttl = pttl.map_err(|e| super::redis::reply::map_err(&e))?;
        Ok(super::redis::reply::snapshot_of(fields, pttl))
    }

    /// Reads two hashes and their TTLs on the tracked connection, in one round trip.
    pub async fn read_pair(&self, a: &str, b: &str) -> Result<[Option<HashSnapshot>; 2], StoreError> {
        let (first, second) = tokio::join!(self.read(a), self.read(b));
        Ok([first?, second?])
    }

    /// Stops the task and closes both connections.
    pub async fn close(&self) {
        self.stop.cancel();
        self.cache.set_live(false);
        let deadline = Instant::now() + self.command_timeout;
        let _ = tokio::time::timeout_at(deadline.into(), async {
            let _ = self.reader.quit().await;
            let _ = self.feed.quit().await;
        })
        .await;
    }
}
