//! Storage: a handful of atomic primitives on mognet's keys, in two implementations.
//!
//! [`ResultStore`] is deliberately small: reading and conditionally writing hashes, integer
//! increments, sets, deletes and scans. Everything above it (the result lifecycle, ETags, value
//! encoding, state merge patches) is written once in [`results`] and [`app_state`] over these
//! primitives, so the embedded store and Redis cannot drift apart in behaviour: both run the
//! same conformance suite.
//!
//! Conditional writes are compare-and-set on content ([`Guard::Unchanged`]): the caller reads a
//! hash, decides, and writes only if the hash still holds exactly what it read. On Redis the
//! check and the write are one Lua script, so a concurrent writer (another replica, a Python
//! worker) either lands before the check, and the write retries, or after the write.

pub mod app_state;
pub mod cache;
pub mod celery;
pub mod changes;
pub mod codec;
pub mod keys;
pub mod layout;
pub mod memory;
pub mod omniq;
pub mod redis;
pub mod results;
pub mod rigatoni;
pub mod tracking;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use changes::{ChangeHub, KeyWatch};
pub use codec::Fields;
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// A hash as read, with its remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSnapshot {
    /// Field/value pairs, in no particular order.
    pub fields: Fields,
    /// Remaining time to live in milliseconds; `None` when the key never expires.
    pub ttl_ms: Option<i64>,
}

impl HashSnapshot {
    /// The value of one field.
    pub fn get(&self, field: &str) -> Option<&Bytes> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, v)| v)
    }

    /// Remaining TTL in whole seconds, rounded up.
    pub fn ttl_seconds(&self) -> Option<i64> {
        seconds_left(self.ttl_ms)
    }
}

/// A hash as a plain read found it: held in the cache, or read from the store now.
pub enum Found {
    /// From the cache: what is derived from it is kept with it.
    Held(cache::Held),
    /// From the store.
    Read(HashSnapshot),
}

impl Found {
    /// What `derive` makes of the cells: made once per cached entry, or now for a read.
    pub fn derived<T: std::any::Any + Send + Sync, E>(
        &self,
        derive: impl FnOnce(&Fields) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        match self {
            Self::Held(held) => held.derived(derive),
            Self::Read(snap) => Ok(Arc::new(derive(&snap.fields)?)),
        }
    }

    /// Remaining time to live in milliseconds; `None` when the key never expires (or its TTL
    /// was not read).
    pub fn ttl_ms(&self) -> Option<i64> {
        match self {
            Self::Held(held) => held.ttl_ms,
            Self::Read(snap) => snap.ttl_ms,
        }
    }
}

/// A remaining TTL in milliseconds as whole seconds, rounded up.
pub fn seconds_left(ttl_ms: Option<i64>) -> Option<i64> {
    ttl_ms.map(|ms| (ms + 999) / 1000)
}

/// A wait's hold on the published channels of its keys; dropping it releases them.
#[derive(Debug)]
pub struct ChannelHold(#[allow(dead_code)] Option<redis::ChannelHold>);

/// A string key as read, with its remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringSnapshot {
    /// The stored bytes.
    pub value: Bytes,
    /// Remaining time to live in milliseconds; `None` when the key never expires.
    pub ttl_ms: Option<i64>,
}

impl StringSnapshot {
    /// Remaining TTL in whole seconds, rounded up.
    pub fn ttl_seconds(&self) -> Option<i64> {
        seconds_left(self.ttl_ms)
    }
}

/// What a compare-and-set of a string key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// Written and published.
    Swapped,
    /// The key no longer held the expected bytes: nothing was written; this is what it holds.
    Changed(Option<Bytes>),
}

/// The condition a hash must meet for a write to happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Always write.
    Any,
    /// Only if the key does not exist.
    Absent,
    /// Only if the key exists.
    Exists,
    /// Only if the hash holds exactly these pairs (no more, no fewer); empty means absent.
    Unchanged(Fields),
}

/// One hash write in an atomic batch.
#[derive(Debug, Clone)]
pub struct HashWrite {
    /// The key.
    pub key: String,
    /// What the key must hold for the batch to be written.
    pub guard: Guard,
    /// Delete the hash before setting fields.
    pub replace: bool,
    /// Fields to set.
    pub set: Fields,
    /// Fields to remove.
    pub remove: Vec<String>,
    /// TTL to set with the write; `None` leaves the key's TTL as it is.
    pub ttl: Option<Duration>,
}

impl HashWrite {
    /// Sets `fields` on `key` unconditionally.
    pub fn set(key: String, fields: Fields, ttl: Option<Duration>) -> Self {
        Self {
            key,
            guard: Guard::Any,
            replace: false,
            set: fields,
            remove: Vec::new(),
            ttl,
        }
    }

    /// The same write under a guard.
    #[must_use]
    pub fn guarded(mut self, guard: Guard) -> Self {
        self.guard = guard;
        self
    }
}

/// What an atomic batch of writes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Every write happened.
    Written,
    /// The guard of the write at this index failed; nothing was written.
    GuardFailed(usize),
}

/// What an integer increment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementOutcome {
    /// The new value.
    Value(i64),
    /// The stored value is not an integer; it is returned so the error can name its type.
    NotInteger(Bytes),
    /// The result would not fit in 64 bits.
    Overflow,
}

/// A client's idempotency key for a write: the write is remembered under `key` (with the
/// request's `fingerprint`, for `ttl`) in the same atomic step, and a repeat is answered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    /// The store key that remembers the write.
    pub key: String,
    /// What the request asked for; a repeat that asks for something else is refused.
    pub fingerprint: String,
    /// How long the write is remembered.
    pub ttl: Duration,
}

/// What an increment under an idempotency key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceOutcome {
    /// The key was new: the increment ran (and is remembered when it was applied).
    Ran(IncrementOutcome),
    /// The key was used before for the same request: nothing ran; the first answer's value.
    Replayed(i64),
    /// The key was used before for a different request: nothing ran.
    Reused,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store is out of memory (Redis `OOM`: `maxmemory` reached under `noeviction`); the
    /// write was refused before any effect.
    #[error("store full: {0}")]
    Full(String),
    /// The store accepts no writes (Redis `READONLY`: a replica); the write had no effect.
    #[error("store read-only: {0}")]
    ReadOnly(String),
    /// The store's user may not run a command it needs (Redis `NOPERM`).
    #[error("store permission denied: {0}")]
    Denied(String),
    /// The store answered with an error that is not about reachability.
    #[error("store error: {0}")]
    Backend(String),
    /// A key holds data resultd cannot read.
    #[error("corrupt data at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A conditional update kept losing to concurrent writers.
    #[error("too many concurrent updates of {0}")]
    Contended(String),
}

impl StoreError {
    /// The error's kind as a metric label: `unavailable`, `full`, `read-only`, `denied`,
    /// `backend`, `corrupt` or `contended`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Full(_) => "full",
            Self::ReadOnly(_) => "read-only",
            Self::Denied(_) => "denied",
            Self::Backend(_) => "backend",
            Self::Corrupt { .. } => "corrupt",
            Self::Contended(_) => "contended",
        }
    }
}

/// The storage primitives both stores implement.
pub trait ResultStore: Send + Sync {
    /// Reads a hash and its TTL; with `refresh`, first resets its TTL (atomically).
    fn read_hash(
        &self,
        key: &str,
        refresh: Option<Duration>,
    ) -> impl Future<Output = Result<Option<HashSnapshot>, StoreError>> + Send;

    /// Reads several hashes in one round trip.
    fn read_hashes(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<HashSnapshot>>, StoreError>> + Send;

    /// Reads the fields of several hashes in one round trip, without their TTLs.
    fn read_fields(&self, keys: &[String]) -> impl Future<Output = Result<Vec<Option<Fields>>, StoreError>> + Send;

    /// Checks every guard, then applies every write, as one atomic step.
    fn write_hashes(&self, writes: &[HashWrite]) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Sets `fields` on a hash unconditionally, and the TTL, in one atomic step; answers what
    /// the hash held before apart from those fields, with its TTL after the write (`None`: it
    /// did not exist). One round trip where a read and a guarded write take two.
    fn upsert_hash(
        &self,
        key: &str,
        fields: &Fields,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<Option<HashSnapshot>, StoreError>> + Send;

    /// Adds `by` to an integer field (a missing field counts as 0) and sets the TTL.
    fn increment(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<IncrementOutcome, StoreError>> + Send;

    /// [`ResultStore::increment`] at most once per [`Once`] key: the increment and its record
    /// under the key are one atomic step, so a retry of a request whose answer was lost is
    /// answered, not applied again. Only an applied increment is remembered.
    fn increment_once(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
        once: &Once,
    ) -> impl Future<Output = Result<OnceOutcome, StoreError>> + Send;

    /// Removes a field and returns its value, resetting the TTL (mognet's state `pop`).
    fn pop_field(
        &self,
        key: &str,
        field: &str,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// The members of a set.
    fn read_set(&self, key: &str) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send;

    /// Adds members to a set and sets its TTL.
    fn add_to_set(
        &self,
        key: &str,
        members: &[Bytes],
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes keys; answers how many existed.
    fn delete(&self, keys: &[String]) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// One step of a cursor over keys matching `pattern` (a `*` suffix glob).
    fn scan(
        &self,
        pattern: &str,
        cursor: &str,
        count: u32,
    ) -> impl Future<Output = Result<(String, Vec<String>), StoreError>> + Send;

    /// Checks that the store answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a string key and its remaining TTL (`None`: no such key).
    fn read_string(&self, key: &str) -> impl Future<Output = Result<Option<StringSnapshot>, StoreError>> + Send;

    /// Reads many string keys at once; a missing key is `None`.
    fn read_strings(&self, keys: &[String]) -> impl Future<Output = Result<Vec<Option<Bytes>>, StoreError>> + Send;

    /// Sets `key` to `value` (with `ttl`, or none: never expires) and, with `publish`, publishes
    /// `value` on the channel named `key`, atomically, if the key holds `expected` (`None`:
    /// absent) right now.
    fn swap_string(
        &self,
        key: &str,
        expected: Option<&Bytes>,
        value: &Bytes,
        ttl: Option<Duration>,
        publish: bool,
    ) -> impl Future<Output = Result<SwapOutcome, StoreError>> + Send;

    /// Members of a sorted set by rank, lowest score first (ties by member), from `start`, at
    /// most `count` (`ZRANGE key start stop`).
    fn read_sorted(
        &self,
        key: &str,
        start: usize,
        count: usize,
    ) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send;

    /// Adds or moves `member` in a sorted set with `score` (`ZADD`).
    fn add_sorted(&self, key: &str, score: f64, member: &Bytes) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where waiters register for changes of keys.
    fn changes(&self) -> &ChangeHub;
}

/// The store a server runs on, chosen by the URL scheme.
#[derive(Clone)]
pub enum Store {
    /// The embedded in-memory store.
    Memory(MemoryStore),
    /// Redis through fred.
    Redis(RedisStore),
}

/// Every store call goes through this dispatch, so each is timed and its errors counted once
/// (`resultd_store_call_duration_seconds`, `resultd_store_errors_total`).
///
/// Each call's future is boxed: fred's are several KiB, and held inline they would make every
/// caller's future (a held wait among them) that large for its whole life, and be copied on
/// every move.
macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Memory($s) => Box::pin($e).await,
            Store::Redis($s) => Box::pin($e).await,
        }
    };
}

/// Runs one store call under the store-call metrics.
async fn instrumented<T>(op: &'static str, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    crate::telemetry::store_call(op, StoreError::kind, call).await
}

impl ResultStore for Store {
    async fn read_hash(&self, key: &str, refresh: Option<Duration>) -> Result<Option<HashSnapshot>, StoreError> {
        let outcome = instrumented("read_hash", async { dispatch!(self, s => s.read_hash(key, refresh)) }).await;
        if refresh.is_some() {
            // The TTL moved: a cached expiry would be wrong.
            self.invalidate([key]);
        }
        outcome
    }
    async fn read_hashes(&self, keys: &[String]) -> Result<Vec<Option<HashSnapshot>>, StoreError> {
        instrumented("read_hashes", async { dispatch!(self, s => s.read_hashes(keys)) }).await
    }
    async fn read_fields(&self, keys: &[String]) -> Result<Vec<Option<Fields>>, StoreError> {
        instrumented("read_fields", async { dispatch!(self, s => s.read_fields(keys)) }).await
    }
    async fn write_hashes(&self, writes: &[HashWrite]) -> Result<WriteOutcome, StoreError> {
        let outcome = instrumented("write_hashes", async { dispatch!(self, s => s.write_hashes(writes)) }).await;
        self.invalidate(writes.iter().map(|w| w.key.as_str()));
        outcome
    }
    async fn upsert_hash(
        &self,
        key: &str,
        fields: &Fields,
        ttl: Option<Duration>,
    ) -> Result<Option<HashSnapshot>, StoreError> {
        let outcome = instrumented("upsert_hash", async {
            dispatch!(self, s => s.upsert_hash(key, fields, ttl))
        })
        .await;
        self.invalidate([key]);
        outcome
    }
    async fn increment(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<IncrementOutcome, StoreError> {
        let outcome = instrumented("increment", async {
            dispatch!(self, s => s.increment(key, field, by, ttl))
        })
        .await;
        self.invalidate([key]);
        outcome
    }
    async fn increment_once(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
        once: &Once,
    ) -> Result<OnceOutcome, StoreError> {
        let outcome = instrumented("increment_once", async {
            dispatch!(self, s => s.increment_once(key, field, by, ttl, once))
        })
        .await;
        self.invalidate([key]);
        outcome
    }
    async fn pop_field(&self, key: &str, field: &str, ttl: Option<Duration>) -> Result<Option<Bytes>, StoreError> {
        let outcome = instrumented("pop_field", async {
            dispatch!(self, s => s.pop_field(key, field, ttl))
        })
        .await;
        self.invalidate([key]);
        outcome
    }
    async fn read_set(&self, key: &str) -> Result<Vec<Bytes>, StoreError> {
        instrumented("read_set", async { dispatch!(self, s => s.read_set(key)) }).await
    }
    async fn add_to_set(&self, key: &str, members: &[Bytes], ttl: Option<Duration>) -> Result<(), StoreError> {
        let outcome = instrumented("add_to_set", async {
            dispatch!(self, s => s.add_to_set(key, members, ttl))
        })
        .await;
        self.invalidate([key]);
        outcome
    }
    async fn delete(&self, keys: &[String]) -> Result<u64, StoreError> {
        let outcome = instrumented("delete", async { dispatch!(self, s => s.delete(keys)) }).await;
        self.invalidate(keys.iter().map(String::as_str));
        outcome
    }
    async fn scan(&self, pattern: &str, cursor: &str, count: u32) -> Result<(String, Vec<String>), StoreError> {
        instrumented("scan", async { dispatch!(self, s => s.scan(pattern, cursor, count)) }).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        instrumented("ping", async { dispatch!(self, s => s.ping()) }).await
    }
    async fn read_string(&self, key: &str) -> Result<Option<StringSnapshot>, StoreError> {
        instrumented("read_string", async { dispatch!(self, s => s.read_string(key)) }).await
    }
    async fn read_strings(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        instrumented("read_strings", async { dispatch!(self, s => s.read_strings(keys)) }).await
    }
    async fn swap_string(
        &self,
        key: &str,
        expected: Option<&Bytes>,
        value: &Bytes,
        ttl: Option<Duration>,
        publish: bool,
    ) -> Result<SwapOutcome, StoreError> {
        let outcome = instrumented("swap_string", async {
            dispatch!(self, s => s.swap_string(key, expected, value, ttl, publish))
        })
        .await;
        self.invalidate([key]);
        outcome
    }
    async fn read_sorted(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        instrumented("read_sorted", async {
            dispatch!(self, s => s.read_sorted(key, start, count))
        })
        .await
    }
    async fn add_sorted(&self, key: &str, score: f64, member: &Bytes) -> Result<(), StoreError> {
        instrumented("add_sorted", async {
            dispatch!(self, s => s.add_sorted(key, score, member))
        })
        .await
    }
    fn changes(&self) -> &ChangeHub {
        match self {
            Self::Memory(s) => s.changes(),
            Self::Redis(s) => s.changes(),
        }
    }
}

/// Whether a record hash holds a done state (only those are cached).
fn is_done_record(snap: &HashSnapshot) -> bool {
    snap.get("state")
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix('"')?.strip_suffix('"'))
        .and_then(crate::domain::ResultState::from_name)
        .is_some_and(crate::domain::ResultState::is_done)
}

impl Store {
    /// The done-result cache's tracking, when the cache is on (Redis only: the embedded store
    /// is in process already).
    pub fn tracking(&self) -> Option<&tracking::Tracking> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(r) => r.tracking(),
        }
    }

    /// Forgets cached entries of `keys`; every write calls it before it answers.
    fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if let Some(t) = self.tracking() {
            for key in keys {
                t.cache().invalidate(key);
            }
        }
    }

    /// Reads a result record for a plain read: a done record comes from the cache when held,
    /// and one read from Redis on its second recent miss is kept for the next.
    pub async fn read_record(&self, key: &str) -> Result<Option<Found>, StoreError> {
        let Some(tracking) = self.tracking() else {
            return Ok(self.read_hash(key, None).await?.map(Found::Read));
        };
        let cache = tracking.cache();
        if let Some(held) = cache.hold(key) {
            return Ok(Some(Found::Held(held)));
        }
        if !cache.admit(key) {
            // A first miss: a plain read, neither kept nor tracked.
            return Ok(self.read_hash(key, None).await?.map(Found::Read));
        }
        let Some(ticket) = cache.ticket(key) else {
            return Ok(self.read_hash(key, None).await?.map(Found::Read));
        };
        // fred's futures are several KiB: boxed, as in every store call, so that a caller's
        // future (a held wait's) stays small.
        let snap = instrumented("read_hash", Box::pin(tracking.read(key))).await?;
        if let Some(s) = &snap
            && is_done_record(s)
        {
            cache.insert(&ticket, key, s);
        }
        Ok(snap.map(Found::Read))
    }

    /// Reads a record and its value holder for a plain read, from the cache when both are held
    /// (a done record and its value are kept together).
    pub async fn read_record_and_value(
        &self,
        record_key: &str,
        value_key: &str,
    ) -> Result<(Option<Found>, Option<Found>), StoreError> {
        let uncached = async {
            let mut hashes = self.read_fields(&[record_key.to_owned(), value_key.to_owned()]).await?;
            let as_snapshot = |f: Option<Fields>| f.map(|fields| Found::Read(HashSnapshot { fields, ttl_ms: None }));
            let value = as_snapshot(hashes.pop().flatten());
            Ok((as_snapshot(hashes.pop().flatten()), value))
        };
        let Some(tracking) = self.tracking() else {
            return uncached.await;
        };
        let cache = tracking.cache();
        if let Some(record) = cache.hold(record_key)
            && let Some(value) = cache.hold(value_key)
        {
            return Ok((Some(Found::Held(record)), Some(Found::Held(value))));
        }
        if !cache.admit(record_key) {
            return uncached.await;
        }
        let (Some(record_ticket), Some(value_ticket)) = (cache.ticket(record_key), cache.ticket(value_key)) else {
            return uncached.await;
        };
        let [record, value] = instrumented("read_fields", Box::pin(tracking.read_pair(record_key, value_key))).await?;
        if let (Some(r), Some(v)) = (&record, &value)
            && is_done_record(r)
        {
            cache.insert(&value_ticket, value_key, v);
            cache.insert(&record_ticket, record_key, r);
        }
        Ok((record.map(Found::Read), value.map(Found::Read)))
    }

    /// The waiters on keys whose writers publish on the key's name (Celery): apart from the
    /// keyspace-woken keys on Redis, the same hub on the embedded store.
    pub fn channel_changes(&self) -> &ChangeHub {
        match self {
            Self::Memory(s) => s.changes(),
            Self::Redis(r) => r.channel_changes(),
        }
    }

    /// Subscribes the exact channels of `keys` before a waiter reads them (Redis; the embedded
    /// store wakes its waiters on write), held until the hold is dropped.
    pub async fn hold_channels(&self, keys: &[String]) -> Result<ChannelHold, StoreError> {
        match self {
            Self::Memory(_) => Ok(ChannelHold(None)),
            Self::Redis(r) => Ok(ChannelHold(Some(Box::pin(r.hold_channels(keys)).await?))),
        }
    }

    /// Channels subscribed for waits now (0 on the embedded store).
    pub fn subscribed_channels(&self) -> usize {
        match self {
            Self::Memory(_) => 0,
            Self::Redis(r) => r.subscribed_channels(),
        }
    }

    /// The store's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// How waiters learn of changes: `in-process`, `keyspace-notifications` or `polling`.
    pub fn wake_mode(&self) -> &'static str {
        match self {
            Self::Memory(_) => "in-process",
            Self::Redis(r) => r.wake_mode(),
        }
    }

    /// Whether `cursor` is a scan cursor this store could have made for keys under `prefix`
    /// (a client-supplied cursor is checked before it reaches the store).
    pub fn accepts_scan_cursor(&self, prefix: &str, cursor: &str) -> bool {
        if cursor == "0" {
            return true;
        }
        match self {
            // The embedded store resumes after the last key it returned.
            Self::Memory(_) => cursor.starts_with(prefix),
            // Redis: a SCAN cursor; on a Cluster `{node}-{cursor}`.
            Self::Redis(r) => {
                let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
                match cursor.split_once('-') {
                    Some((node, c)) => r.is_clustered() && digits(node) && digits(c),
                    None => digits(cursor),
                }
            }
        }
    }

    /// Closes connections.
    pub async fn close(&self) {
        if let Self::Redis(r) = self {
            r.close().await;
        }
    }
}
