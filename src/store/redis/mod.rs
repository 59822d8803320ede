//! The Redis store: fred pool for commands, one subscriber connection for keyspace events.
//!
//! Every conditional or multi-step write is one Lua script, so the precondition, the data and
//! the TTL land together (mognet itself uses MULTI without WATCH; a script is the same
//! atomicity plus the check). Commands carry an explicit timeout and the pool reconnects with
//! capped back-off, so an outage answers 503 in bounded time instead of hanging.
//!
//! Waiting: Python workers write with plain `HSET` and never publish, so resultd listens to
//! keyspace notifications (`notify-keyspace-events` with `K`, `h`, `g`, `x`), enabled at startup
//! when `CONFIG` is allowed and again after every reconnect (a restarted Redis forgets it).
//! Where `CONFIG` is refused, a poller re-reads every waited key in one pipelined round trip per
//! interval and wakes the waiters of the keys whose content changed.

mod channels;
mod cluster;
mod connection;
mod feed;
pub(crate) mod reply;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};

pub use self::channels::ChannelHold;
use self::channels::Channels;
use self::connection::{Timeouts, builder, tls_with_ca_file};
use self::feed::Feed;
use self::reply::{bytes_of, decode_increment, decode_snapshot, map_err, snapshot_of, string_of};
use self::scripts::{Scripts, push_write_args};
use super::cache::ResultCache;
use super::layout::mognet::Mognet;
use super::layout::{KeyspaceWatch, Layout};
use super::tracking::Tracking;
use super::{
    ChangeHub, Fields, Guard, HashSnapshot, HashWrite, IncrementOutcome, Once, OnceOutcome, ResultStore, StoreError,
    StringSnapshot, SwapOutcome, WriteOutcome,
};
use crate::config::RedisSettings;

struct Inner {
    pool: Pool,
    /// The parsed URL, kept to build per-primary subscribers on a Cluster.
    config: Config,
    timeouts: Timeouts,
    feed: Feed,
    changes: ChangeHub,
    scripts: Scripts,
    clustered: bool,
    notifications: AtomicBool,
    /// The done-result cache's tracked reader and invalidation feed, once started.
    tracking: OnceLock<Arc<Tracking>>,
    /// Waiters on keys whose writers publish on the key's name (Celery).
    channel_changes: ChangeHub,
    /// The subscriber of those channels, connected with the first such wait.
    channels: tokio::sync::OnceCell<Arc<Channels>>,
}

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

fn ttl_ms(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
}

impl RedisStore {
    /// Connects to the Redis at `url` (waiting at most the connect timeout; commands sent while
    /// it is unreachable fail with `Unavailable` after the command timeout).
    ///
    /// `redis://` and `rediss://` (TLS; `redis.tls_ca_file` names a private CA) reach one
    /// server, `redis-sentinel://host:port/db?sentinelServiceName=NAME` the primary that the
    /// sentinels name (followed across failovers), `redis-cluster://host:port?node=…` a Cluster.
    /// A username and password in the URL authenticate with ACL `AUTH user pass`.
    pub async fn connect(url: &str, settings: &RedisSettings) -> Result<Self, StoreError> {
        Self::connect_watching(url, settings, &[]).await
    }

    /// [`RedisStore::connect`], with keyspace subscriptions for other layouts beside mognet's
    /// (their globs subscribed and their event classes turned on with mognet's); a watch with
    /// no classes is polled instead.
    pub async fn connect_watching(
        url: &str,
        settings: &RedisSettings,
        watches: &[KeyspaceWatch],
    ) -> Result<Self, StoreError> {
        let mut config =
            Config::from_url(url).map_err(|e| StoreError::Backend(format!("invalid Redis URL: {}", e.details())))?;
        if !settings.tls_ca_file.is_empty() {
            match &mut config.tls {
                Some(tls) => tls.connector = tls_with_ca_file(&settings.tls_ca_file)?,
                None => tracing::warn!("redis.tls_ca_file is set but the store URL does not use TLS (rediss://)"),
            }
        }
        // Redis down at startup is an outage like any other: keep reconnecting instead of giving up
        // on the first refused connection.
        config.fail_fast = false;
        let clustered = config.server.is_clustered();
        let db = if clustered { 0 } else { config.database.unwrap_or(0) };
        let timeouts = Timeouts {
            command: Duration::from_millis(settings.command_timeout_ms),
            connect: Duration::from_millis(settings.connect_timeout_ms),
            max_reconnect_delay: u32::try_from(settings.reconnect_max_delay_ms).unwrap_or(u32::MAX),
        };
        let pool = builder(config.clone(), timeouts)
            .build_pool(settings.pool_size)
            .map_err(|e| map_err(&e))?;
        pool.connect();
        // Unreachable at startup is not fatal: the service answers 503 until Redis is back.
        let connected = matches!(
            tokio::time::timeout(timeouts.connect, pool.wait_for_connect()).await,
            Ok(Ok(()))
        );
        if !connected {
            tracing::warn!(
                connect_timeout_ms = settings.connect_timeout_ms,
                "Redis is not reachable yet: requests get 503 store-unavailable until it is (reconnecting in the background)"
            );
        }
        let inner = Arc::new(Inner {
            pool,
            config,
            timeouts,
            feed: Feed {
                patterns: std::iter::once(Mognet.keyspace_glob().unwrap_or("*"))
                    .chain(
                        watches
                            .iter()
                            .filter(|w| !w.classes.is_empty())
                            .map(|w| w.glob.as_str()),
                    )
                    .map(|glob| format!("__keyspace@{db}__:{glob}"))
                    .collect(),
                classes: {
                    let mut classes = Mognet.keyspace_classes().to_owned();
                    for c in watches.iter().flat_map(|w| w.classes.chars()) {
                        if !classes.contains(c) {
                            classes.push(c);
                        }
                    }
                    classes
                },
                polled: watches
                    .iter()
                    .filter(|w| w.classes.is_empty())
                    .map(|w| w.glob.trim_end_matches('*').to_owned())
                    .collect(),
                db,
                configure: settings.configure_notifications,
                poll_interval: Duration::from_millis(settings.poll_interval_ms),
                subscribers: Mutex::new(HashMap::new()),
            },
            changes: ChangeHub::new(),
            scripts: Scripts::load(),
            clustered,
            notifications: AtomicBool::new(false),
            tracking: OnceLock::new(),
            channel_changes: ChangeHub::new(),
            channels: tokio::sync::OnceCell::new(),
        });
        let store = Self { inner };
        store.start_change_feed().await?;
        Ok(store)
    }

    /// Starts the done-result cache of `max_bytes` (0: off), kept exact by client tracking.
    /// On a Cluster it stays off: tracking redirection is per node.
    pub async fn start_cache(&self, max_bytes: u64) -> Result<(), StoreError> {
        let Some(cache) = ResultCache::new(max_bytes) else {
            return Ok(());
        };
        if self.inner.clustered {
            tracing::info!("the result cache is off on a Cluster (client tracking redirects per node)");
            return Ok(());
        }
        let t = self.inner.timeouts;
        let reader = builder(self.inner.config.clone(), t).build().map_err(|e| map_err(&e))?;
        let feed = builder(self.inner.config.clone(), t)
            .build_subscriber_client()
            .map_err(|e| map_err(&e))?;
        let tracking = Tracking::start(reader, feed, cache, t.connect, t.command).await;
        if self.inner.tracking.set(tracking).is_err() {
            tracing::warn!("the result cache was started twice; the second is ignored");
        }
        Ok(())
    }

    /// The done-result cache's tracking, when the cache is on.
    pub fn tracking(&self) -> Option<&Tracking> {
        self.inner.tracking.get().map(Arc::as_ref)
    }

    /// The waiters on published channels (Celery keys), apart from keyspace-woken keys.
    pub fn channel_changes(&self) -> &ChangeHub {
        &self.inner.channel_changes
    }

    /// Subscribes the exact channels named `keys` (reference-counted over all waiters) and
    /// holds them until the returned hold is dropped.
    pub async fn hold_channels(&self, keys: &[String]) -> Result<ChannelHold, StoreError> {
        let channels = self
            .inner
            .channels
            .get_or_try_init(|| async {
                let t = self.inner.timeouts;
                let client = builder(self.inner.config.clone(), t)
                    .build_subscriber_client()
                    .map_err(|e| map_err(&e))?;
                Ok::<_, StoreError>(
                    Channels::start(client, self.inner.channel_changes.clone(), t.connect, t.command).await,
                )
            })
            .await?;
        channels.hold(keys).await
    }

    /// Channels subscribed for waits now.
    pub fn subscribed_channels(&self) -> usize {
        self.inner.channels.get().map_or(0, |c| c.subscribed())
    }

    /// `keyspace-notifications` or `polling`.
    pub fn wake_mode(&self) -> &'static str {
        if self.inner.notifications.load(Ordering::Relaxed) {
            "keyspace-notifications"
        } else {
            "polling"
        }
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.inner.clustered
    }

    /// How many keyspace subscriptions are held (one per primary on a Cluster).
    pub fn subscriber_count(&self) -> usize {
        self.inner.feed.subscribers().len()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let subscribers: Vec<SubscriberClient> = self
            .inner
            .feed
            .subscribers()
            .drain()
            .map(|(_, (s, stop))| {
                stop.cancel();
                s
            })
            .collect();
        if let Some(tracking) = self.inner.tracking.get() {
            tracking.close().await;
        }
        if let Some(channels) = self.inner.channels.get() {
            channels.close().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            // Connections that are down have nothing to close.
            for s in subscribers.iter().filter(|s| s.is_connected()) {
                let _ = s.quit().await;
            }
            for client in self.inner.pool.clients() {
                if client.is_connected() {
                    let _ = client.quit().await;
                }
            }
        })
        .await;
    }

    fn client(&self) -> &Client {
        self.inner.pool.next()
    }

    async fn eval(&self, script: &Script, keys: Vec<String>, args: Vec<Value>) -> Result<Value, StoreError> {
        script
            .evalsha_with_reload::<Value, _, _>(self.client(), keys, args)
            .await
            .map_err(|e| map_err(&e))
    }

    /// Whether the guard of `w` holds now (a read-only check, on the node of its key).
    async fn guard_holds(&self, w: &HashWrite) -> Result<bool, StoreError> {
        let (kind, fields): (i64, &[(String, Bytes)]) = match &w.guard {
            Guard::Any => return Ok(true),
            Guard::Absent => (1, &[]),
            Guard::Exists => (2, &[]),
            Guard::Unchanged(f) => (3, f),
        };
        let mut args = vec![Value::Integer(kind), Value::Integer(fields.len() as i64)];
        for (f, v) in fields {
            args.push(Value::from(f.as_str()));
            args.push(Value::Bytes(v.clone()));
        }
        let reply = self
            .eval(&self.inner.scripts.guard_holds, vec![w.key.clone()], args)
            .await?;
        Ok(matches!(reply, Value::Integer(1)))
    }

    /// HGETALL and PTTL, queued back to back on one connection: they share a round trip with
    /// each other and with concurrent requests' commands (a pipeline or a script would be
    /// flushed on its own), and cost Redis less than a script.
    async fn read_plain(&self, key: &str) -> Result<Option<HashSnapshot>, StoreError> {
        let client = self.client();
        let (fields, pttl) = tokio::join!(client.hgetall::<Value, _>(key), client.pttl::<i64, _>(key));
        let fields = fields.map_err(|e| map_err(&e))?;
        let pttl = pttl.map_err(|e| map_err(&e))?;
        Ok(snapshot_of(fields, pttl))
    }

    /// Runs one `WRITE_HASHES` script over writes whose keys share a slot (or any keys, off
    /// Cluster); the index of a failed guard within the batch.
    async fn write_batch(&self, batch: &[HashWrite]) -> Result<Option<usize>, StoreError> {
        let mut args = Vec::new();
        for w in batch {
            push_write_args(&mut args, w);
        }
        let keys = batch.iter().map(|w| w.key.clone()).collect();
        match self.eval(&self.inner.scripts.write_hashes, keys, args).await? {
            Value::Integer(0) => Ok(None),
            Value::Integer(i) => Ok(Some(usize::try_from(i - 1).unwrap_or(0))),
            other => Err(StoreError::Backend(format!("unexpected reply {other:?}"))),
        }
    }
}

/// A `GET`'s error: a key of another type is `Corrupt` (it holds no string to read).
fn string_err(key: &str, e: &fred::error::Error) -> StoreError {
    if e.details().starts_with("WRONGTYPE") {
        StoreError::Corrupt {
            key: key.to_owned(),
            reason: "not a string".to_owned(),
        }
    } else {
        map_err(e)
    }
}

/// One `SCAN … MATCH … COUNT` step on one node.
async fn scan_step<C: ClientLike + Sync>(
    client: &C,
    pattern: &str,
    cursor: &str,
    count: u32,
) -> Result<(String, Vec<String>), StoreError> {
    let reply: Value = client
        .custom(
            CustomCommand::new_static("SCAN", ClusterHash::Random, false),
            vec![
                Value::from(cursor),
                Value::from("MATCH"),
                Value::from(pattern),
                Value::from("COUNT"),
                Value::Integer(i64::from(count)),
            ],
        )
        .await
        .map_err(|e| map_err(&e))?;
    let Value::Array(mut parts) = reply else {
        return Err(StoreError::Backend("unexpected SCAN reply".to_owned()));
    };
    if parts.len() != 2 {
        return Err(StoreError::Backend("unexpected SCAN reply".to_owned()));
    }
    let keys = match parts.pop() {
        Some(Value::Array(keys)) => keys.into_iter().map(string_of).collect(),
        _ => Vec::new(),
    };
    let next = parts.pop().map(string_of).unwrap_or_else(|| "0".to_owned());
    Ok((next, keys))
}

impl ResultStore for RedisStore {
    async fn read_hash(&self, key: &str, refresh: Option<Duration>) -> Result<Option<HashSnapshot>, StoreError> {
        if refresh.is_none() {
            return self.read_plain(key).await;
        }
        let reply = self
            .eval(
                &self.inner.scripts.read_hash,
                vec![key.to_owned()],
                vec![Value::Integer(ttl_ms(refresh))],
            )
            .await?;
        decode_snapshot(reply)
    }

    async fn read_hashes(&self, keys: &[String]) -> Result<Vec<Option<HashSnapshot>>, StoreError> {
        // Every key's commands at once: on one connection they share round trips; on a Cluster
        // each goes to its own node, concurrently.
        futures::future::try_join_all(keys.iter().map(|k| self.read_plain(k))).await
    }

    async fn read_fields(&self, keys: &[String]) -> Result<Vec<Option<Fields>>, StoreError> {
        let client = self.client();
        let replies = futures::future::try_join_all(keys.iter().map(|k| client.hgetall::<Value, _>(k.as_str())))
            .await
            .map_err(|e| map_err(&e))?;
        Ok(replies
            .into_iter()
            .map(|r| snapshot_of(r, -1).map(|s| s.fields))
            .collect())
    }

    async fn write_hashes(&self, writes: &[HashWrite]) -> Result<WriteOutcome, StoreError> {
        if !self.inner.clustered {
            return Ok(match self.write_batch(writes).await? {
                None => WriteOutcome::Written,
                Some(i) => WriteOutcome::GuardFailed(i),
            });
        }
        self.write_across_slots(writes).await
    }

    async fn upsert_hash(
        &self,
        key: &str,
        fields: &Fields,
        ttl: Option<Duration>,
    ) -> Result<Option<HashSnapshot>, StoreError> {
        let mut args = Vec::with_capacity(1 + 2 * fields.len());
        args.push(Value::Integer(ttl_ms(ttl)));
        for (f, v) in fields {
            args.push(Value::from(f.as_str()));
            args.push(Value::Bytes(v.clone()));
        }
        let reply = self
            .eval(&self.inner.scripts.upsert_hash, vec![key.to_owned()], args)
            .await?;
        decode_snapshot(reply)
    }

    async fn increment(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<IncrementOutcome, StoreError> {
        let reply = self
            .eval(
                &self.inner.scripts.increment,
                vec![key.to_owned()],
                vec![Value::from(field), Value::Integer(by), Value::Integer(ttl_ms(ttl))],
            )
            .await?;
        match decode_increment(reply)? {
            OnceOutcome::Ran(outcome) => Ok(outcome),
            _ => Err(StoreError::Backend("unexpected increment reply".to_owned())),
        }
    }

    async fn increment_once(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
        once: &Once,
    ) -> Result<OnceOutcome, StoreError> {
        let reply = self
            .eval(
                &self.inner.scripts.increment,
                vec![key.to_owned(), once.key.clone()],
                vec![
                    Value::from(field),
                    Value::Integer(by),
                    Value::Integer(ttl_ms(ttl)),
                    Value::from(once.fingerprint.as_str()),
                    Value::Integer(ttl_ms(Some(once.ttl))),
                ],
            )
            .await?;
        decode_increment(reply)
    }

    async fn pop_field(&self, key: &str, field: &str, ttl: Option<Duration>) -> Result<Option<Bytes>, StoreError> {
        let reply = self
            .eval(
                &self.inner.scripts.pop_field,
                vec![key.to_owned()],
                vec![Value::from(field), Value::Integer(ttl_ms(ttl))],
            )
            .await?;
        Ok(match reply {
            Value::Null => None,
            v => Some(bytes_of(v)),
        })
    }

    async fn read_set(&self, key: &str) -> Result<Vec<Bytes>, StoreError> {
        let members: Vec<Value> = self.client().smembers(key).await.map_err(|e| map_err(&e))?;
        Ok(members.into_iter().map(bytes_of).collect())
    }

    async fn add_to_set(&self, key: &str, members: &[Bytes], ttl: Option<Duration>) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(members.len() + 1);
        args.push(Value::Integer(ttl_ms(ttl)));
        args.extend(members.iter().cloned().map(Value::Bytes));
        self.eval(&self.inner.scripts.add_to_set, vec![key.to_owned()], args)
            .await?;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        if self.inner.clustered {
            let mut total = 0;
            for key in keys {
                let n: u64 = self.client().del(key).await.map_err(|e| map_err(&e))?;
                total += n;
            }
            return Ok(total);
        }
        self.client().del(keys.to_vec()).await.map_err(|e| map_err(&e))
    }

    async fn scan(&self, pattern: &str, cursor: &str, count: u32) -> Result<(String, Vec<String>), StoreError> {
        let cursor = if cursor.is_empty() { "0" } else { cursor };
        if !self.inner.clustered {
            return scan_step(self.client(), pattern, cursor, count).await;
        }
        self.scan_cluster(pattern, cursor, count).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: Value = self.client().ping(None).await.map_err(|e| map_err(&e))?;
        Ok(())
    }

    async fn read_string(&self, key: &str) -> Result<Option<StringSnapshot>, StoreError> {
        let client = self.client();
        let (value, pttl) = tokio::join!(client.get::<Value, _>(key), client.pttl::<i64, _>(key));
        let value = value.map_err(|e| string_err(key, &e))?;
        let pttl = pttl.map_err(|e| map_err(&e))?;
        Ok(match value {
            Value::Null => None,
            v => Some(StringSnapshot {
                value: bytes_of(v),
                ttl_ms: (pttl >= 0).then_some(pttl),
            }),
        })
    }

    async fn read_strings(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let client = self.client();
        let replies = futures::future::join_all(keys.iter().map(|k| client.get::<Value, _>(k.as_str()))).await;
        replies
            .into_iter()
            .zip(keys)
            .map(|(reply, key)| match reply {
                Ok(Value::Null) => Ok(None),
                Ok(v) => Ok(Some(bytes_of(v))),
                // As MGET answers: a key of another type reads as absent.
                Err(e) if matches!(string_err(key, &e), StoreError::Corrupt { .. }) => Ok(None),
                Err(e) => Err(map_err(&e)),
            })
            .collect()
    }

    async fn swap_string(
        &self,
        key: &str,
        expected: Option<&Bytes>,
        value: &Bytes,
        ttl: Option<Duration>,
        publish: bool,
    ) -> Result<SwapOutcome, StoreError> {
        let ttl_secs = ttl.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1));
        let args = vec![
            Value::Integer(i64::from(expected.is_some())),
            Value::Bytes(expected.cloned().unwrap_or_default()),
            Value::Bytes(value.clone()),
            Value::Integer(ttl_secs),
            Value::Integer(i64::from(publish)),
        ];
        let reply = self
            .eval(&self.inner.scripts.swap_string, vec![key.to_owned()], args)
            .await?;
        let Value::Array(mut parts) = reply else {
            return Err(StoreError::Backend("unexpected swap reply".to_owned()));
        };
        let current = if parts.len() == 2 { parts.pop() } else { None };
        match parts.first() {
            Some(Value::Integer(1)) => Ok(SwapOutcome::Swapped),
            Some(Value::Integer(0)) => Ok(SwapOutcome::Changed(match current {
                None | Some(Value::Null) => None,
                Some(v) => Some(bytes_of(v)),
            })),
            _ => Err(StoreError::Backend("unexpected swap reply".to_owned())),
        }
    }

    async fn read_sorted(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let start = i64::try_from(start).unwrap_or(i64::MAX);
        let stop = start.saturating_add(i64::try_from(count).unwrap_or(i64::MAX) - 1);
        let members: Vec<Value> = self
            .client()
            .zrange(key, start, stop, None, false, None, false)
            .await
            .map_err(|e| map_err(&e))?;
        Ok(members.into_iter().map(bytes_of).collect())
    }

    async fn add_sorted(&self, key: &str, score: f64, member: &Bytes) -> Result<(), StoreError> {
        let _: Value = self
            .client()
            .zadd(key, None, None, false, false, (score, member.clone()))
            .await
            .map_err(|e| map_err(&e))?;
        Ok(())
    }

    fn changes(&self) -> &ChangeHub {
        &self.inner.changes
    }
}
