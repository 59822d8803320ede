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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::{Server, ServerConfig, TlsConnector, UnresponsiveConfig};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};

use tokio_util::sync::CancellationToken;

use super::cache::ResultCache;
use super::codec::etag;
use super::tracking::Tracking;
use super::{
    ChangeHub, Fields, Guard, HashSnapshot, HashWrite, IncrementOutcome, Once, OnceOutcome, ResultStore, StoreError,
    WriteOutcome,
};
use crate::config::RedisSettings;

// A full Redis (`maxmemory` with `noeviction`): every script that writes opens with a `#!lua`
// shebang and no `allow-oom` flag, so Redis refuses it with `OOM` before it runs, whatever it
// would write. Without the shebang Redis only checks memory at the script's first
// memory-growing command, and a script that first ran `DEL` (not such a command) could then
// grow the data set past the limit unchecked. A shebang script on a read-only replica is
// refused with `READONLY` the same way, before any effect. Keys are always passed in `KEYS`,
// as shebang scripts on a Cluster require.
//
// `READ_HASH` and `POP_FIELD` keep the old form: they only refresh a TTL and remove a field
// (`PEXPIRE`, `HDEL`, which Redis allows under `OOM`), so a read keeps answering while the store
// is full, and so does a delete, which is how space is made again.
const READ_HASH: &str = r"
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
table.insert(h, 1, redis.call('PTTL', KEYS[1]))
return h
";

const UPSERT_HASH: &str = r"#!lua
local ttl = tonumber(ARGV[1])
local before = false
if redis.call('EXISTS', KEYS[1]) == 1 then
  local set = {}
  for i = 2, #ARGV, 2 do set[ARGV[i]] = true end
  local h = redis.call('HGETALL', KEYS[1])
  before = {0}
  for i = 1, #h, 2 do
    if not set[h[i]] then before[#before + 1] = h[i]; before[#before + 1] = h[i + 1] end
  end
end
local j = 2
while j <= #ARGV do
  local last = math.min(j + 999, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, j, last))
  j = last + 1
end
if ttl > 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
if before then before[1] = redis.call('PTTL', KEYS[1]) end
return before
";

const WRITE_HASHES: &str = r"#!lua
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

// With a second key, the increment is done at most once for it: the key remembers the request's
// fingerprint and the new value (ARGV[4], for ARGV[5] ms), and a repeat is answered from it.
const INCREMENT: &str = r"#!lua
if #KEYS == 2 then
  local seen = redis.call('HMGET', KEYS[2], 'fingerprint', 'value')
  if seen[1] then
    if seen[1] == ARGV[4] and seen[2] then return {'replay', seen[2]} end
    return {'reused'}
  end
end
local ok, v = pcall(redis.call, 'HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if not ok then
  -- Only HINCRBY's own two refusals are answers; any other error (WRONGTYPE, NOPERM, …)
  -- goes back to the caller as the error it is.
  local msg = type(v) == 'table' and tostring(v.err) or tostring(v)
  if string.find(msg, 'hash value is not an integer', 1, true) then
    return {'nan', redis.call('HGET', KEYS[1], ARGV[1])}
  end
  if string.find(msg, 'increment or decrement would overflow', 1, true) then return {'overflow'} end
  return redis.error_reply(msg)
end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
-- Lua numbers are doubles, exact only to 2^53: answer the stored text instead of v.
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if #KEYS == 2 then
  redis.call('HSET', KEYS[2], 'fingerprint', ARGV[4], 'value', stored)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {'ok', stored}
";

const POP_FIELD: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
";

const ADD_TO_SET: &str = r"#!lua
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

const GUARD_HOLDS: &str = r"#!lua flags=no-writes
local kind = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
if kind == 1 then return redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0 end
if kind == 2 then return redis.call('EXISTS', KEYS[1]) end
if kind == 3 then
  if redis.call('HLEN', KEYS[1]) ~= n then return 0 end
  for j = 0, n - 1 do
    if redis.call('HGET', KEYS[1], ARGV[3 + 2 * j]) ~= ARGV[4 + 2 * j] then return 0 end
  end
end
return 1
";

struct Scripts {
    read_hash: Script,
    write_hashes: Script,
    upsert_hash: Script,
    guard_holds: Script,
    increment: Script,
    pop_field: Script,
    add_to_set: Script,
}

/// How waiters learn of changes, and the connections that tell them.
struct Feed {
    /// The keyspace pattern subscribed to.
    pattern: String,
    /// The database whose events count (always 0 on a Cluster).
    db: u8,
    /// Whether resultd may turn notifications on with `CONFIG SET`.
    configure: bool,
    /// Re-read interval of the poller, used while notifications are off.
    poll_interval: Duration,
    /// Standalone and Sentinel: the one subscriber. Cluster: one per primary (notifications
    /// are published only on the node that holds the key), by address.
    subscribers: Mutex<HashMap<Server, (SubscriberClient, CancellationToken)>>,
}

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
}

#[derive(Clone, Copy)]
struct Timeouts {
    command: Duration,
    connect: Duration,
    max_reconnect_delay: u32,
}

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

fn ttl_ms(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
}

/// Maps a fred error: a full Redis is `Full` (507), a read-only replica `ReadOnly` (503), a
/// command the ACL user may not run `Denied` (500); reachability, authentication and
/// transient states (`LOADING`, `BUSY`, `MASTERDOWN`, …) are `Unavailable` (503); the rest
/// `Backend`. The detail goes to the log.
pub(super) fn map_err(e: &Error) -> StoreError {
    // A script's error may carry its own prefix after the script's name; the code is the
    // reply's first word either way.
    let details = e.details();
    let code = details.split_whitespace().next().unwrap_or("");
    let transient = ["LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "BUSY"];
    match code {
        "OOM" => return StoreError::Full(e.to_string()),
        "READONLY" => return StoreError::ReadOnly(e.to_string()),
        "NOPERM" => return StoreError::Denied(e.to_string()),
        _ => {}
    }
    // Inside a script, an ACL refusal reads `ERR The user executing the script can't run …`.
    if details.contains("user executing the script can't run") {
        return StoreError::Denied(e.to_string());
    }
    match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Cluster
        | ErrorKind::Sentinel
        | ErrorKind::Routing
        | ErrorKind::Auth
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

/// A snapshot from an `HGETALL` reply (a map, or a flat array) and a `PTTL`.
pub(super) fn snapshot_of(reply: Value, pttl: i64) -> Option<HashSnapshot> {
    let fields: Vec<(String, Bytes)> = match reply {
        Value::Map(map) => map
            .inner()
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(k.as_bytes()).into_owned(), bytes_of(v)))
            .collect(),
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::with_capacity(it.len() / 2);
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                out.push((string_of(f), bytes_of(v)));
            }
            out
        }
        _ => Vec::new(),
    };
    if fields.is_empty() {
        return None;
    }
    Some(HashSnapshot {
        fields,
        ttl_ms: (pttl >= 0).then_some(pttl),
    })
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

/// Decodes the increment script's `{tag, value}` reply.
fn decode_increment(reply: Value) -> Result<OnceOutcome, StoreError> {
    let unexpected = || StoreError::Backend("unexpected increment reply".to_owned());
    let Value::Array(items) = reply else {
        return Err(unexpected());
    };
    let mut it = items.into_iter();
    let tag = it.next().map(string_of).unwrap_or_default();
    let integer = |v: Value| string_of(v).parse::<i64>().map_err(|_| unexpected());
    Ok(match (tag.as_str(), it.next()) {
        ("ok", Some(v)) => OnceOutcome::Ran(IncrementOutcome::Value(integer(v)?)),
        ("overflow", _) => OnceOutcome::Ran(IncrementOutcome::Overflow),
        ("nan", v) => OnceOutcome::Ran(IncrementOutcome::NotInteger(v.map(bytes_of).unwrap_or_default())),
        ("replay", Some(v)) => OnceOutcome::Replayed(integer(v)?),
        ("reused", _) => OnceOutcome::Reused,
        _ => return Err(unexpected()),
    })
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

/// A fred builder with resultd's timeouts and reconnect policy.
fn builder(config: Config, t: Timeouts) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = t.command;
        })
        .with_connection_config(|c| {
            c.connection_timeout = t.connect;
            c.internal_command_timeout = t.command;
            c.max_command_attempts = 2;
            // A connection that stops answering (a blackholed network) is closed and
            // reconnected instead of failing every command until TCP gives up.
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(t.command),
                interval: (t.command / 4).max(Duration::from_millis(50)),
            };
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            };
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            50,
            t.max_reconnect_delay.max(50),
            2,
        ));
    builder
}

/// A rustls client config trusting the PEM certificates of `path` (and nothing else).
fn tls_with_ca_file(path: &str) -> Result<TlsConnector, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |e: &dyn std::fmt::Display| StoreError::Backend(format!("redis.tls_ca_file {path}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(&e))? {
        roots.add(cert.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
    }
    if roots.is_empty() {
        return Err(fail(&"no certificate in the file"));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(config))
}

/// Checks `notify-keyspace-events` on one node and, when allowed, adds `K`, `h`, `g`, `x`.
async fn ensure_notify_flags<C: ConfigInterface + Sync>(node: &C, configure: bool) -> bool {
    let current: Result<HashMap<String, String>, _> = node.config_get("notify-keyspace-events").await;
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
    node.config_set::<_, _>("notify-keyspace-events", wanted).await.is_ok()
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
                pattern: format!("__keyspace@{db}__:*.mognet.*"),
                db,
                configure: settings.configure_notifications,
                poll_interval: Duration::from_millis(settings.poll_interval_ms),
                subscribers: Mutex::new(HashMap::new()),
            },
            changes: ChangeHub::new(),
            scripts: Scripts {
                read_hash: Script::from_lua(READ_HASH),
                write_hashes: Script::from_lua(WRITE_HASHES),
                upsert_hash: Script::from_lua(UPSERT_HASH),
                guard_holds: Script::from_lua(GUARD_HOLDS),
                increment: Script::from_lua(INCREMENT),
                pop_field: Script::from_lua(POP_FIELD),
                add_to_set: Script::from_lua(ADD_TO_SET),
            },
            clustered,
            notifications: AtomicBool::new(false),
            tracking: OnceLock::new(),
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

    /// The primaries of the Cluster as last seen, in address order (empty when not clustered).
    pub fn cluster_primaries(&self) -> Vec<Server> {
        if !self.inner.clustered {
            return Vec::new();
        }
        let mut primaries = self
            .inner
            .pool
            .next()
            .cached_cluster_state()
            .map(|s| s.unique_primary_nodes())
            .unwrap_or_default();
        primaries.sort_by_key(ToString::to_string);
        primaries
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

    /// Turns notifications on (when allowed), subscribes, and starts the tasks that wake
    /// waiters: the event readers, the re-subscription after reconnects, the poller, and on a
    /// Cluster the task that follows the set of primaries.
    async fn start_change_feed(&self) -> Result<(), StoreError> {
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
    async fn add_subscriber(&self, key: Server, subscriber: SubscriberClient) {
        let pattern = self.inner.feed.pattern.clone();
        let db = self.inner.feed.db;
        // Reconnects (and the first connect) re-subscribe here rather than through fred's
        // subscription tracking, so the wake-up of waiters comes after the subscription is live.
        let mut reconnects = subscriber.reconnect_rx();
        let mut events = subscriber.keyspace_event_rx();
        let stop = CancellationToken::new();
        subscriber.connect();
        let _ = tokio::time::timeout(self.inner.timeouts.connect, subscriber.wait_for_connect()).await;
        if let Err(e) = subscriber.psubscribe(pattern.clone()).await {
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
                if let Err(e) = resubscriber.psubscribe(pattern.clone()).await {
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

    /// Cluster: one subscriber per primary, added and dropped as primaries come and go.
    async fn sync_cluster_subscribers(&self) {
        let primaries = self.cluster_primaries();
        let current: Vec<Server> = self.inner.feed.subscribers().keys().cloned().collect();
        let gone: Vec<Server> = current.iter().filter(|s| !primaries.contains(s)).cloned().collect();
        let mut changed = !gone.is_empty();
        for server in gone {
            if let Some((old, stop)) = self.inner.feed.subscribers().remove(&server) {
                stop.cancel();
                tokio::spawn(async move {
                    let _ = old.quit().await;
                });
            }
        }
        for primary in primaries.iter().filter(|p| !current.contains(p)) {
            let config = Config {
                server: ServerConfig::Centralized {
                    server: primary.clone(),
                },
                ..self.inner.config.clone()
            };
            match builder(config, self.inner.timeouts).build_subscriber_client() {
                Ok(subscriber) => {
                    self.add_subscriber(primary.clone(), subscriber).await;
                    changed = true;
                }
                Err(e) => tracing::warn!(node = %primary, error = %e, "cannot build a keyspace subscriber"),
            }
        }
        if changed {
            let enabled = self.enable_notifications().await;
            self.inner.notifications.store(enabled, Ordering::Relaxed);
            self.inner.changes.notify_all();
            tracing::info!(
                primaries = primaries.len(),
                "keyspace subscriptions follow the Cluster's primaries"
            );
        }
    }

    fn spawn_cluster_follower(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut changes = self.inner.pool.next().cluster_change_rx();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = changes.recv() => if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { break },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                Self { inner }.sync_cluster_subscribers().await;
            }
        });
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

    /// The poller runs always but only works while notifications are off.
    fn spawn_poller(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.feed.poll_interval;
        tokio::spawn(async move {
            let mut seen: HashMap<String, String> = HashMap::new();
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if inner.notifications.load(Ordering::Relaxed) {
                    seen.clear();
                    continue;
                }
                let keys = inner.changes.watched_keys();
                if keys.is_empty() {
                    seen.clear();
                    continue;
                }
                let this = Self { inner };
                let Ok(snapshots) = this.read_hashes(&keys).await else {
                    continue;
                };
                let mut next = HashMap::with_capacity(keys.len());
                for (key, snap) in keys.into_iter().zip(snapshots) {
                    let tag = snap.map_or_else(String::new, |s| etag(&s.fields));
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

    /// Makes sure `notify-keyspace-events` covers hash, generic and expiry events, on every
    /// primary of a Cluster.
    async fn enable_notifications(&self) -> bool {
        let configure = self.inner.feed.configure;
        if !self.inner.clustered {
            return ensure_notify_flags(self.client(), configure).await;
        }
        let primaries = self.cluster_primaries();
        if primaries.is_empty() {
            return false;
        }
        let mut all = true;
        for primary in primaries {
            all &= ensure_notify_flags(&self.client().with_cluster_node(primary), configure).await;
        }
        all
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

impl Feed {
    fn subscribers(&self) -> MutexGuard<'_, HashMap<Server, (SubscriberClient, CancellationToken)>> {
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        // On a Cluster the keys of one batch may sit in different slots, and a script may only
        // touch one slot. Consecutive writes of one slot still go in one script; across slots
        // every guard is first checked (read-only), then the groups are written in order (a
        // value before the state that makes it readable), each group re-checking its own
        // guards atomically. See docs/operations.md for what this leaves non-atomic.
        let mut groups: Vec<(usize, &[HashWrite])> = Vec::new();
        let mut start = 0;
        for i in 1..=writes.len() {
            let boundary = i == writes.len()
                || fred::util::redis_keyslot(writes[i].key.as_bytes())
                    != fred::util::redis_keyslot(writes[start].key.as_bytes());
            if boundary {
                groups.push((start, &writes[start..i]));
                start = i;
            }
        }
        if groups.len() > 1 {
            for (i, w) in writes.iter().enumerate() {
                if !self.guard_holds(w).await? {
                    return Ok(WriteOutcome::GuardFailed(i));
                }
            }
        }
        for (offset, group) in groups {
            if let Some(i) = self.write_batch(group).await? {
                return Ok(WriteOutcome::GuardFailed(offset + i));
            }
        }
        Ok(WriteOutcome::Written)
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
        // A Cluster: SCAN each primary in address order; the cursor is `{node}-{cursor}`.
        let primaries = self.cluster_primaries();
        if primaries.is_empty() {
            return Err(StoreError::Unavailable(
                "the Cluster's primaries are not known yet".to_owned(),
            ));
        }
        let (node, node_cursor) = match cursor.split_once('-') {
            Some((n, c)) => (
                n.parse::<usize>()
                    .map_err(|_| StoreError::Backend(format!("invalid cursor {cursor:?}")))?,
                c,
            ),
            None => (0, cursor),
        };
        let Some(server) = primaries.get(node) else {
            return Ok(("0".to_owned(), Vec::new()));
        };
        let (next, keys) = scan_step(
            &self.client().with_cluster_node(server.clone()),
            pattern,
            node_cursor,
            count,
        )
        .await?;
        let next = match (next.as_str(), node + 1 < primaries.len()) {
            ("0", true) => format!("{}-0", node + 1),
            ("0", false) => "0".to_owned(),
            (c, _) => format!("{node}-{c}"),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn class(reply: &str) -> &'static str {
        map_err(&Error::new(ErrorKind::Unknown, reply.to_owned())).kind()
    }

    #[test]
    fn redis_error_replies_map_to_stable_store_errors() {
        assert_eq!(class("OOM command not allowed when used memory > 'maxmemory'."), "full");
        assert_eq!(
            class("READONLY You can't write against a read only replica."),
            "read-only"
        );
        assert_eq!(
            class("READONLY You can't write against a read only replica. script: 0123, on @user_script:3."),
            "read-only"
        );
        assert_eq!(
            class("NOPERM this user has no permissions to run the 'evalsha' command"),
            "denied"
        );
        assert_eq!(
            class("ERR The user executing the script can't run this command or subcommand"),
            "denied"
        );
        for transient in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            assert_eq!(class(transient), "unavailable", "{transient}");
        }
        assert_eq!(
            map_err(&Error::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair")).kind(),
            "unavailable"
        );
        assert_eq!(class("ERR unknown command"), "backend");
    }
}
