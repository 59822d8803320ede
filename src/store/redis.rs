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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};

use super::codec::etag;
use super::{ChangeHub, Guard, HashSnapshot, HashWrite, IncrementOutcome, ResultStore, StoreError, WriteOutcome};
use crate::config::RedisSettings;

const READ_HASH: &str = r"
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
table.insert(h, 1, redis.call('PTTL', KEYS[1]))
return h
";

const WRITE_HASHES: &str = r"
local pos = 1
local writes = {}
local function num() local v = tonumber(ARGV[pos]); pos = pos + 1; return v end
for i = 1, #KEYS do
  local w = {key = KEYS[i]}
  w.guard = num(); w.ng = num(); w.gs = pos; pos = pos + 2 * w.ng
  w.replace = num() == 1; w.ttl = num()
  w.ns = num(); w.ss = pos; pos = pos + 2 * w.ns
  w.nd = num(); w.ds = pos; pos = pos + w.nd
  writes[i] = w
end
for i, w in ipairs(writes) do
  local ok = true
  if w.guard == 1 then ok = redis.call('EXISTS', w.key) == 0
  elseif w.guard == 2 then ok = redis.call('EXISTS', w.key) == 1
  elseif w.guard == 3 then
    if redis.call('HLEN', w.key) ~= w.ng then ok = false else
      for j = 0, w.ng - 1 do
        if redis.call('HGET', w.key, ARGV[w.gs + 2 * j]) ~= ARGV[w.gs + 2 * j + 1] then ok = false; break end
      end
    end
  end
  if not ok then return i end
end
local function chunked(cmd, key, start, count)
  local j = 0
  while j < count do
    local args = {}
    local last = math.min(j + 500, count)
    for k = j, last - 1 do args[#args + 1] = ARGV[start + k] end
    redis.call(cmd, key, unpack(args))
    j = last
  end
end
for _, w in ipairs(writes) do
  if w.replace then redis.call('DEL', w.key) end
  if w.ns > 0 then chunked('HSET', w.key, w.ss, 2 * w.ns) end
  if w.nd > 0 then chunked('HDEL', w.key, w.ds, w.nd) end
  if w.ttl > 0 and redis.call('EXISTS', w.key) == 1 then redis.call('PEXPIRE', w.key, w.ttl) end
end
return 0
";

const INCREMENT: &str = r"
local ok, v = pcall(redis.call, 'HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if not ok then
  local msg = tostring(v.err or v)
  if string.find(msg, 'WRONGTYPE') then return redis.error_reply(msg) end
  if string.find(msg, 'overflow') then return {'overflow'} end
  return {'nan', redis.call('HGET', KEYS[1], ARGV[1])}
end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
-- Lua numbers are doubles, exact only to 2^53: answer the stored text instead of v.
return {'ok', redis.call('HGET', KEYS[1], ARGV[1])}
";

const POP_FIELD: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
";

const ADD_TO_SET: &str = r"
local ttl = tonumber(ARGV[1])
local j = 2
while j <= #ARGV do
  local args = {}
  local last = math.min(j + 499, #ARGV)
  for k = j, last do args[#args + 1] = ARGV[k] end
  redis.call('SADD', KEYS[1], unpack(args))
  j = last + 1
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
";

struct Scripts {
    read_hash: Script,
    write_hashes: Script,
    increment: Script,
    pop_field: Script,
    add_to_set: Script,
}

struct Inner {
    pool: Pool,
    subscriber: SubscriberClient,
    changes: ChangeHub,
    scripts: Scripts,
    clustered: bool,
    notifications: AtomicBool,
}

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

fn ttl_ms(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
}

/// Maps a fred error: reachability problems are `Unavailable` (503), the rest `Backend`.
fn map_err(e: &Error) -> StoreError {
    let details = e.details();
    let transient = ["LOADING", "READONLY", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "BUSY"];
    match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Cluster
        | ErrorKind::Sentinel
        | ErrorKind::Routing
        | ErrorKind::Tls => StoreError::Unavailable(e.to_string()),
        _ if transient.iter().any(|t| details.starts_with(t)) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

fn bytes_of(v: Value) -> Bytes {
    match v {
        Value::Bytes(b) => b,
        Value::String(s) => s.into_inner(),
        Value::Integer(i) => Bytes::from(i.to_string()),
        Value::Double(d) => Bytes::from(d.to_string()),
        Value::Boolean(b) => Bytes::from(if b { "1" } else { "0" }),
        _ => Bytes::new(),
    }
}

fn string_of(v: Value) -> String {
    String::from_utf8_lossy(&bytes_of(v)).into_owned()
}

/// Decodes `[pttl, f1, v1, …]` (or nil) from the read script.
fn decode_snapshot(v: Value) -> Result<Option<HashSnapshot>, StoreError> {
    let items = match v {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        other => return Err(StoreError::Backend(format!("unexpected reply {other:?}"))),
    };
    let mut it = items.into_iter();
    let Some(Value::Integer(pttl)) = it.next() else {
        return Err(StoreError::Backend("read script returned no TTL".to_owned()));
    };
    let mut fields = Vec::with_capacity(it.len() / 2);
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        fields.push((string_of(f), bytes_of(v)));
    }
    Ok(Some(HashSnapshot {
        fields,
        ttl_ms: (pttl >= 0).then_some(pttl),
    }))
}

fn push_write_args(args: &mut Vec<Value>, w: &HashWrite) {
    let (kind, guard_fields): (i64, &[(String, Bytes)]) = match &w.guard {
        Guard::Any => (0, &[]),
        Guard::Absent => (1, &[]),
        Guard::Exists => (2, &[]),
        Guard::Unchanged(f) => (3, f),
    };
    args.push(Value::Integer(kind));
    args.push(Value::Integer(guard_fields.len() as i64));
    for (f, v) in guard_fields {
        args.push(Value::from(f.as_str()));
        args.push(Value::Bytes(v.clone()));
    }
    args.push(Value::Integer(i64::from(w.replace)));
    args.push(Value::Integer(ttl_ms(w.ttl)));
    args.push(Value::Integer(w.set.len() as i64));
    for (f, v) in &w.set {
        args.push(Value::from(f.as_str()));
        args.push(Value::Bytes(v.clone()));
    }
    args.push(Value::Integer(w.remove.len() as i64));
    for f in &w.remove {
        args.push(Value::from(f.as_str()));
    }
}

/// Reconnection events of one pool client and of the subscriber.
struct Reconnects {
    pool: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    subscriber: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
}

impl RedisStore {
    /// Connects to the Redis at `url` (waiting at most the connect timeout; commands sent while
    /// it is unreachable fail with `Unavailable` after the command timeout).
    pub async fn connect(url: &str, settings: &RedisSettings) -> Result<Self, StoreError> {
        let mut config =
            Config::from_url(url).map_err(|e| StoreError::Backend(format!("invalid Redis URL: {}", e.details())))?;
        // Redis down at startup is an outage like any other: keep reconnecting instead of giving up
        // on the first refused connection.
        config.fail_fast = false;
        let clustered = config.server.is_clustered();
        let db = config.database.unwrap_or(0);
        let command_timeout = Duration::from_millis(settings.command_timeout_ms);
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let max_delay = u32::try_from(settings.reconnect_max_delay_ms).unwrap_or(u32::MAX);
        let mut builder = Builder::from_config(config);
        builder
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
            })
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = command_timeout;
                c.max_command_attempts = 2;
                // A connection that stops answering (a blackholed network) is closed and
                // reconnected instead of failing every command until TCP gives up.
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(command_timeout),
                    interval: (command_timeout / 4).max(Duration::from_millis(50)),
                };
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..TcpConfig::default()
                };
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, max_delay.max(50), 2));
        let pool = builder.build_pool(settings.pool_size).map_err(|e| map_err(&e))?;
        let subscriber = builder.build_subscriber_client().map_err(|e| map_err(&e))?;
        // Listening before connecting, so that not even the first connection goes unnoticed.
        let reconnects = Reconnects {
            pool: pool.next().reconnect_rx(),
            subscriber: subscriber.reconnect_rx(),
        };
        pool.connect();
        subscriber.connect();
        // Unreachable at startup is not fatal: the service answers 503 until Redis is back.
        let connected = matches!(
            tokio::time::timeout(connect_timeout, pool.wait_for_connect()).await,
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
            subscriber,
            changes: ChangeHub::new(),
            scripts: Scripts {
                read_hash: Script::from_lua(READ_HASH),
                write_hashes: Script::from_lua(WRITE_HASHES),
                increment: Script::from_lua(INCREMENT),
                pop_field: Script::from_lua(POP_FIELD),
                add_to_set: Script::from_lua(ADD_TO_SET),
            },
            clustered,
            notifications: AtomicBool::new(false),
        });
        let store = Self { inner };
        store.start_change_feed(db, settings, connected, reconnects).await;
        Ok(store)
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

    /// Closes every connection (those that are down have nothing to close).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if self.inner.subscriber.is_connected() {
                let _ = self.inner.subscriber.quit().await;
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

    /// Turns notifications on (when allowed) and starts the feed that wakes waiters.
    ///
    /// When Redis did not answer at startup, notifications and the subscription are set up by
    /// the reconnect handler once it does, instead of waiting here for commands to time out.
    async fn start_change_feed(&self, db: u8, settings: &RedisSettings, connected: bool, reconnects: Reconnects) {
        let enabled = connected && self.enable_notifications(settings.configure_notifications).await;
        self.inner.notifications.store(enabled, Ordering::Relaxed);
        if enabled {
            tracing::info!("waits are woken by Redis keyspace notifications");
        } else if !connected {
            tracing::info!("keyspace notifications are set up once Redis answers; until then waits poll");
        } else {
            tracing::warn!(
                interval_ms = settings.poll_interval_ms,
                "keyspace notifications are unavailable (CONFIG refused or disabled): waits fall back to batched polling"
            );
        }
        // The subscriber: every keyspace event of this database wakes the waiters of its key.
        let pattern = format!("__keyspace@{db}__:*.mognet.*");
        drop(self.inner.subscriber.manage_subscriptions());
        if connected {
            let _ = self.inner.subscriber.psubscribe(pattern.clone()).await;
        }
        let weak = Arc::downgrade(&self.inner);
        let mut events = self.inner.subscriber.keyspace_event_rx();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
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
        // The subscriber sends nothing on its own, so a dead network would go unnoticed and
        // waits would sleep to their deadline: ping it, and let the unresponsive check reconnect.
        let weak = Arc::downgrade(&self.inner);
        let period = Duration::from_millis(settings.command_timeout_ms.clamp(100, 1000));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let _ = tokio::time::timeout(period * 4, inner.subscriber.ping::<Value>(None)).await;
            }
        });
        // After any reconnect: turn notifications back on and make every waiter re-read, so
        // nothing that happened while disconnected is missed.
        let store = self.clone();
        let configure = settings.configure_notifications;
        let Reconnects {
            pool: mut reconnects,
            subscriber: mut sub_reconnects,
        } = reconnects;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = reconnects.recv() => if r.is_err() { break },
                    r = sub_reconnects.recv() => if r.is_err() { break },
                }
                // The subscriber resubscribes only to patterns it once subscribed to: when Redis
                // was down at startup, the first subscription happens here.
                let subscriber = &store.inner.subscriber;
                if !subscriber.tracked_patterns().iter().any(|p| &**p == pattern.as_str()) {
                    let _ = subscriber.psubscribe(pattern.clone()).await;
                }
                let enabled = store.enable_notifications(configure).await;
                store.inner.notifications.store(enabled, Ordering::Relaxed);
                store.inner.changes.notify_all();
            }
        });
        // The poller runs always but only works while notifications are off.
        let weak = Arc::downgrade(&self.inner);
        let store = Arc::downgrade(&self.inner);
        let period = Duration::from_millis(settings.poll_interval_ms);
        tokio::spawn(async move {
            let mut seen: HashMap<String, String> = HashMap::new();
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let (Some(inner), Some(_)) = (weak.upgrade(), store.upgrade()) else {
                    break;
                };
                if inner.notifications.load(Ordering::Relaxed) {
                    seen.clear();
                    continue;
                }
                let keys = inner.changes.watched_keys();
                if keys.is_empty() {
                    seen.clear();
                    continue;
                }
                let this = Self {
                    inner: Arc::clone(&inner),
                };
                let Ok(snapshots) = this.read_hashes(&keys).await else {
                    continue;
                };
                let mut next = HashMap::with_capacity(keys.len());
                for (key, snap) in keys.into_iter().zip(snapshots) {
                    let tag = snap.map_or_else(String::new, |s| etag(&s.fields));
                    if seen.get(&key).is_some_and(|old| *old != tag) {
                        inner.changes.notify(&key);
                    }
                    next.insert(key, tag);
                }
                seen = next;
            }
        });
    }

    /// Makes sure `notify-keyspace-events` covers hash, generic and expiry events.
    async fn enable_notifications(&self, configure: bool) -> bool {
        let current: Result<HashMap<String, String>, _> = self.client().config_get("notify-keyspace-events").await;
        let Ok(current) = current else { return false };
        let flags = current.get("notify-keyspace-events").cloned().unwrap_or_default();
        let has = |c: char| flags.contains(c) || (flags.contains('A') && "hgx".contains(c));
        if flags.contains('K') && has('h') && has('g') && has('x') {
            return true;
        }
        if !configure {
            return false;
        }
        let mut wanted: String = flags;
        for c in ['K', 'h', 'g', 'x'] {
            if !wanted.contains(c) {
                wanted.push(c);
            }
        }
        self.client()
            .config_set::<_, _>("notify-keyspace-events", wanted)
            .await
            .is_ok()
    }
}

impl ResultStore for RedisStore {
    async fn read_hash(&self, key: &str, refresh: Option<Duration>) -> Result<Option<HashSnapshot>, StoreError> {
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
        if keys.len() == 1 || self.inner.clustered {
            // On a Cluster the keys may live on different nodes: one call each.
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.read_hash(key, None).await?);
            }
            return Ok(out);
        }
        let client = self.client();
        let script = &self.inner.scripts.read_hash;
        let pipeline = client.pipeline();
        for key in keys {
            let args = vec![
                Value::from(script.sha1().clone()),
                Value::Integer(1),
                Value::from(key.as_str()),
                Value::Integer(0),
            ];
            let _: () = pipeline
                .custom(CustomCommand::new_static("EVALSHA", ClusterHash::Random, false), args)
                .await
                .map_err(|e| map_err(&e))?;
        }
        let replies: Vec<Result<Value, Error>> = pipeline.try_all().await;
        let mut out = Vec::with_capacity(keys.len());
        for (key, reply) in keys.iter().zip(replies) {
            let snap = match reply {
                Ok(v) => decode_snapshot(v)?,
                Err(e) if e.details().starts_with("NOSCRIPT") => self.read_hash(key, None).await?,
                Err(e) => return Err(map_err(&e)),
            };
            out.push(snap);
        }
        Ok(out)
    }

    async fn write_hashes(&self, writes: &[HashWrite]) -> Result<WriteOutcome, StoreError> {
        // On a Cluster the keys of one result may sit in different slots: the writes then go
        // one script each, in order (a value before the state that makes it readable).
        let batches: Vec<&[HashWrite]> = if self.inner.clustered {
            writes.chunks(1).collect()
        } else {
            vec![writes]
        };
        for (offset, batch) in batches.into_iter().enumerate() {
            let mut args = Vec::new();
            for w in batch {
                push_write_args(&mut args, w);
            }
            let keys = batch.iter().map(|w| w.key.clone()).collect();
            match self.eval(&self.inner.scripts.write_hashes, keys, args).await? {
                Value::Integer(0) => {}
                Value::Integer(i) => {
                    let index = usize::try_from(i - 1).unwrap_or(0);
                    return Ok(WriteOutcome::GuardFailed(offset + index));
                }
                other => return Err(StoreError::Backend(format!("unexpected reply {other:?}"))),
            }
        }
        Ok(WriteOutcome::Written)
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
        let Value::Array(items) = reply else {
            return Err(StoreError::Backend("unexpected increment reply".to_owned()));
        };
        let mut it = items.into_iter();
        let tag = it.next().map(string_of).unwrap_or_default();
        Ok(match (tag.as_str(), it.next()) {
            ("ok", Some(v)) => IncrementOutcome::Value(
                string_of(v)
                    .parse()
                    .map_err(|_| StoreError::Backend("unexpected increment reply".to_owned()))?,
            ),
            ("overflow", _) => IncrementOutcome::Overflow,
            ("nan", v) => IncrementOutcome::NotInteger(v.map(bytes_of).unwrap_or_default()),
            _ => return Err(StoreError::Backend("unexpected increment reply".to_owned())),
        })
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
        let reply: Value = self
            .client()
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

    async fn ping(&self) -> Result<(), StoreError> {
        let _: Value = self.client().ping(None).await.map_err(|e| map_err(&e))?;
        Ok(())
    }

    fn changes(&self) -> &ChangeHub {
        &self.inner.changes
    }
}
