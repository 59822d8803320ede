//! The embedded store: Redis's data model in process memory, expiry honoured.
//!
//! It keeps hashes and sets under the same key names as Redis, so the layers above run
//! unchanged on it. Every operation holds one lock for its whole duration, which is what makes
//! guarded batches and increments atomic. Expired keys vanish on access and are swept every
//! second; the sweep wakes their waiters, as a Redis `expired` event does.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    ChangeHub, Fields, Guard, HashSnapshot, HashWrite, IncrementOutcome, Once, OnceOutcome, ResultStore, StoreError,
    StringSnapshot, SwapOutcome, WriteOutcome,
};

enum Data {
    Hash(BTreeMap<String, Bytes>),
    Set(BTreeSet<Bytes>),
    String(Bytes),
    /// Member → score.
    Sorted(BTreeMap<Bytes, f64>),
}

struct Entry {
    data: Data,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

#[derive(Default)]
struct Keys {
    map: BTreeMap<String, Entry>,
}

impl Keys {
    /// The live entry at `key`, removing it first when it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| !e.live(now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn hash(&mut self, key: &str, now: Instant) -> Option<&mut BTreeMap<String, Bytes>> {
        match self.live(key, now) {
            Some(Entry {
                data: Data::Hash(h), ..
            }) => Some(h),
            _ => None,
        }
    }

    fn expire(&mut self, key: &str, ttl: Option<Duration>, now: Instant) {
        if let (Some(ttl), Some(entry)) = (ttl, self.live(key, now)) {
            entry.expires_at = Some(now + ttl);
        }
    }

    /// Drops the key when its hash or set became empty, as Redis does.
    fn drop_if_empty(&mut self, key: &str) {
        let empty = match self.map.get(key).map(|e| &e.data) {
            Some(Data::Hash(h)) => h.is_empty(),
            Some(Data::Set(s)) => s.is_empty(),
            Some(Data::Sorted(z)) => z.is_empty(),
            Some(Data::String(_)) | None => false,
        };
        if empty {
            self.map.remove(key);
        }
    }

    fn guard_holds(&mut self, key: &str, guard: &Guard, now: Instant) -> bool {
        match guard {
            Guard::Any => true,
            Guard::Absent => self.live(key, now).is_none(),
            Guard::Exists => self.live(key, now).is_some(),
            Guard::Unchanged(expected) => match self.hash(key, now) {
                None => expected.is_empty(),
                Some(h) => h.len() == expected.len() && expected.iter().all(|(f, v)| h.get(f) == Some(v)),
            },
        }
    }
}

struct Inner {
    keys: Mutex<Keys>,
    changes: ChangeHub,
}

/// The embedded in-memory store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store. Call [`MemoryStore::spawn_sweeper`] inside a runtime to sweep expired keys.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: Mutex::new(Keys::default()),
                changes: ChangeHub::new(),
            }),
        }
    }

    fn keys(&self) -> MutexGuard<'_, Keys> {
        // Every operation leaves the map consistent before it can panic, so a poisoned lock
        // still guards valid data.
        self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sweeps expired keys every `period` and wakes their waiters, until the store is dropped.
    pub fn spawn_sweeper(&self, period: Duration) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let now = Instant::now();
                let expired: Vec<String> = {
                    let mut keys = inner.keys.lock().unwrap_or_else(PoisonError::into_inner);
                    let gone: Vec<String> = keys
                        .map
                        .iter()
                        .filter(|(_, e)| !e.live(now))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in &gone {
                        keys.map.remove(k);
                    }
                    gone
                };
                for key in expired {
                    inner.changes.notify(&key);
                }
            }
        });
    }

    fn notify(&self, keys: impl IntoIterator<Item = impl AsRef<str>>) {
        for key in keys {
            self.inner.changes.notify(key.as_ref());
        }
    }
}

/// Milliseconds until `entry` expires; `None` when it never does.
fn remaining_ms(entry: &Entry, now: Instant) -> Option<i64> {
    entry
        .expires_at
        .map(|t| i64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX))
}

fn snapshot(entry: &Entry, now: Instant) -> Option<HashSnapshot> {
    match &entry.data {
        Data::Hash(h) => Some(HashSnapshot {
            fields: h.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Fields>(),
            ttl_ms: remaining_ms(entry, now),
        }),
        Data::Set(_) | Data::String(_) | Data::Sorted(_) => None,
    }
}

/// Adds `by` to an integer field under the lock (a missing field counts as 0), as `HINCRBY`.
fn increment_in(
    keys: &mut Keys,
    key: &str,
    field: &str,
    by: i64,
    ttl: Option<Duration>,
    now: Instant,
) -> Result<IncrementOutcome, StoreError> {
    if keys.live(key, now).is_none() {
        keys.map.insert(
            key.to_owned(),
            Entry {
                data: Data::Hash(BTreeMap::new()),
                expires_at: None,
            },
        );
    }
    let Some(h) = keys.hash(key, now) else {
        return Err(StoreError::Backend(format!("{key} is not a hash")));
    };
    let current = match h.get(field) {
        None => 0,
        Some(v) => match std::str::from_utf8(v).ok().and_then(redis_integer) {
            Some(n) => n,
            None => {
                let stored = v.clone();
                keys.drop_if_empty(key);
                return Ok(IncrementOutcome::NotInteger(stored));
            }
        },
    };
    let Some(next) = current.checked_add(by) else {
        keys.drop_if_empty(key);
        return Ok(IncrementOutcome::Overflow);
    };
    h.insert(field.to_owned(), Bytes::from(next.to_string()));
    keys.expire(key, ttl, now);
    Ok(IncrementOutcome::Value(next))
}

impl ResultStore for MemoryStore {
    async fn read_hash(&self, key: &str, refresh: Option<Duration>) -> Result<Option<HashSnapshot>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        keys.expire(key, refresh, now);
        Ok(keys.live(key, now).and_then(|e| snapshot(e, now)))
    }

    async fn read_hashes(&self, wanted: &[String]) -> Result<Vec<Option<HashSnapshot>>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        Ok(wanted
            .iter()
            .map(|k| keys.live(k, now).and_then(|e| snapshot(e, now)))
            .collect())
    }

    async fn read_fields(&self, wanted: &[String]) -> Result<Vec<Option<Fields>>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        Ok(wanted
            .iter()
            .map(|k| keys.live(k, now).and_then(|e| snapshot(e, now)).map(|s| s.fields))
            .collect())
    }

    async fn write_hashes(&self, writes: &[HashWrite]) -> Result<WriteOutcome, StoreError> {
        let now = Instant::now();
        {
            let mut keys = self.keys();
            for (i, w) in writes.iter().enumerate() {
                if !keys.guard_holds(&w.key, &w.guard, now) {
                    return Ok(WriteOutcome::GuardFailed(i));
                }
            }
            for w in writes {
                if w.replace {
                    keys.map.remove(&w.key);
                }
                if keys.live(&w.key, now).is_some_and(|e| !matches!(e.data, Data::Hash(_))) {
                    return Err(StoreError::Backend(format!("{} is not a hash", w.key)));
                }
                let entry = keys.map.entry(w.key.clone()).or_insert_with(|| Entry {
                    data: Data::Hash(BTreeMap::new()),
                    expires_at: None,
                });
                if let Data::Hash(h) = &mut entry.data {
                    for (f, v) in &w.set {
                        h.insert(f.clone(), v.clone());
                    }
                    for f in &w.remove {
                        h.remove(f);
                    }
                }
                keys.drop_if_empty(&w.key);
                keys.expire(&w.key, w.ttl, now);
            }
        }
        self.notify(writes.iter().map(|w| &w.key));
        Ok(WriteOutcome::Written)
    }

    async fn upsert_hash(
        &self,
        key: &str,
        fields: &Fields,
        ttl: Option<Duration>,
    ) -> Result<Option<HashSnapshot>, StoreError> {
        let now = Instant::now();
        let before = {
            let mut keys = self.keys();
            let before = match keys.live(key, now) {
                None => None,
                Some(Entry {
                    data: Data::Hash(h), ..
                }) => Some(
                    h.iter()
                        .filter(|(f, _)| !fields.iter().any(|(set, _)| set == *f))
                        .map(|(f, v)| (f.clone(), v.clone()))
                        .collect::<Fields>(),
                ),
                Some(_) => return Err(StoreError::Backend(format!("{key} is not a hash"))),
            };
            if !fields.is_empty() {
                let entry = keys.map.entry(key.to_owned()).or_insert_with(|| Entry {
                    data: Data::Hash(BTreeMap::new()),
                    expires_at: None,
                });
                if let Data::Hash(h) = &mut entry.data {
                    for (f, v) in fields {
                        h.insert(f.clone(), v.clone());
                    }
                }
            }
            keys.expire(key, ttl, now);
            let ttl_ms = keys.live(key, now).and_then(|e| remaining_ms(e, now));
            before.map(|fields| HashSnapshot { fields, ttl_ms })
        };
        self.notify([key]);
        Ok(before)
    }

    async fn increment(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<IncrementOutcome, StoreError> {
        let outcome = increment_in(&mut self.keys(), key, field, by, ttl, Instant::now())?;
        if matches!(outcome, IncrementOutcome::Value(_)) {
            self.notify([key]);
        }
        Ok(outcome)
    }

    async fn increment_once(
        &self,
        key: &str,
        field: &str,
        by: i64,
        ttl: Option<Duration>,
        once: &Once,
    ) -> Result<OnceOutcome, StoreError> {
        let now = Instant::now();
        let outcome = {
            let mut keys = self.keys();
            if let Some(seen) = keys.hash(&once.key, now) {
                let same = seen
                    .get("fingerprint")
                    .is_some_and(|f| f == once.fingerprint.as_bytes());
                let value = seen
                    .get("value")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok());
                return Ok(match (same, value) {
                    (true, Some(v)) => OnceOutcome::Replayed(v),
                    _ => OnceOutcome::Reused,
                });
            }
            let outcome = increment_in(&mut keys, key, field, by, ttl, now)?;
            if let IncrementOutcome::Value(v) = outcome {
                let record = BTreeMap::from([
                    ("fingerprint".to_owned(), Bytes::from(once.fingerprint.clone())),
                    ("value".to_owned(), Bytes::from(v.to_string())),
                ]);
                keys.map.insert(
                    once.key.clone(),
                    Entry {
                        data: Data::Hash(record),
                        expires_at: Some(now + once.ttl),
                    },
                );
            }
            outcome
        };
        if matches!(outcome, IncrementOutcome::Value(_)) {
            self.notify([key]);
        }
        Ok(OnceOutcome::Ran(outcome))
    }

    async fn pop_field(&self, key: &str, field: &str, ttl: Option<Duration>) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let popped = {
            let mut keys = self.keys();
            let popped = keys.hash(key, now).and_then(|h| h.remove(field));
            keys.drop_if_empty(key);
            keys.expire(key, ttl, now);
            popped
        };
        if popped.is_some() {
            self.notify([key]);
        }
        Ok(popped)
    }

    async fn read_set(&self, key: &str) -> Result<Vec<Bytes>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        Ok(match keys.live(key, now) {
            Some(Entry { data: Data::Set(s), .. }) => s.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }

    async fn add_to_set(&self, key: &str, members: &[Bytes], ttl: Option<Duration>) -> Result<(), StoreError> {
        let now = Instant::now();
        {
            let mut keys = self.keys();
            keys.live(key, now);
            let entry = keys.map.entry(key.to_owned()).or_insert_with(|| Entry {
                data: Data::Set(BTreeSet::new()),
                expires_at: None,
            });
            let Data::Set(s) = &mut entry.data else {
                return Err(StoreError::Backend(format!("{key} is not a set")));
            };
            s.extend(members.iter().cloned());
            keys.drop_if_empty(key);
            keys.expire(key, ttl, now);
        }
        self.notify([key]);
        Ok(())
    }

    async fn delete(&self, wanted: &[String]) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut removed = Vec::new();
        {
            let mut keys = self.keys();
            for k in wanted {
                if keys.live(k, now).is_some() {
                    keys.map.remove(k);
                    removed.push(k.clone());
                }
            }
        }
        let count = removed.len() as u64;
        self.notify(removed);
        Ok(count)
    }

    async fn scan(&self, pattern: &str, cursor: &str, count: u32) -> Result<(String, Vec<String>), StoreError> {
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        let now = Instant::now();
        let keys = self.keys();
        let start = if cursor.is_empty() || cursor == "0" {
            Bound::Included(prefix.to_owned())
        } else {
            Bound::Excluded(cursor.to_owned())
        };
        let mut found = Vec::new();
        let mut last = None;
        for (k, e) in keys.map.range::<String, _>((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            last = Some(k.clone());
            if e.live(now) {
                found.push(k.clone());
            }
            if found.len() >= count as usize {
                break;
            }
        }
        let more = last.as_ref().is_some_and(|l| {
            keys.map
                .range::<String, _>((Bound::Excluded(l.clone()), Bound::Unbounded))
                .next()
                .is_some_and(|(k, _)| k.starts_with(prefix))
        });
        let next = if more { last.unwrap_or_default() } else { "0".to_owned() };
        Ok((next, found))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read_string(&self, key: &str) -> Result<Option<StringSnapshot>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        Ok(match keys.live(key, now) {
            Some(e) => match &e.data {
                Data::String(v) => Some(StringSnapshot {
                    value: v.clone(),
                    ttl_ms: remaining_ms(e, now),
                }),
                _ => {
                    return Err(StoreError::Corrupt {
                        key: key.to_owned(),
                        reason: "not a string".to_owned(),
                    });
                }
            },
            None => None,
        })
    }

    async fn read_strings(&self, wanted: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        Ok(wanted
            .iter()
            .map(|k| match keys.live(k, now) {
                Some(Entry {
                    data: Data::String(v), ..
                }) => Some(v.clone()),
                _ => None,
            })
            .collect())
    }

    async fn swap_string(
        &self,
        key: &str,
        expected: Option<&Bytes>,
        value: &Bytes,
        ttl: Option<Duration>,
        publish: bool,
    ) -> Result<SwapOutcome, StoreError> {
        let now = Instant::now();
        {
            let mut keys = self.keys();
            let current = match keys.live(key, now) {
                None => None,
                Some(Entry {
                    data: Data::String(v), ..
                }) => Some(v.clone()),
                Some(_) => return Err(StoreError::Backend(format!("{key} is not a string"))),
            };
            if current.as_ref() != expected {
                return Ok(SwapOutcome::Changed(current));
            }
            keys.map.insert(
                key.to_owned(),
                Entry {
                    data: Data::String(value.clone()),
                    expires_at: ttl.map(|t| now + t),
                },
            );
        }
        // In process, a waiter is woken by the write itself, published or not.
        let _ = publish;
        self.notify([key]);
        Ok(SwapOutcome::Swapped)
    }

    async fn read_sorted(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        let now = Instant::now();
        let mut keys = self.keys();
        let Some(entry) = keys.live(key, now) else {
            return Ok(Vec::new());
        };
        let Data::Sorted(z) = &entry.data else {
            return Err(StoreError::Backend(format!("{key} is not a sorted set")));
        };
        let mut ranked: Vec<(&Bytes, f64)> = z.iter().map(|(m, s)| (m, *s)).collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        Ok(ranked
            .into_iter()
            .skip(start)
            .take(count)
            .map(|(m, _)| m.clone())
            .collect())
    }

    async fn add_sorted(&self, key: &str, score: f64, member: &Bytes) -> Result<(), StoreError> {
        let now = Instant::now();
        {
            let mut keys = self.keys();
            keys.live(key, now);
            let entry = keys.map.entry(key.to_owned()).or_insert_with(|| Entry {
                data: Data::Sorted(BTreeMap::new()),
                expires_at: None,
            });
            let Data::Sorted(z) = &mut entry.data else {
                return Err(StoreError::Backend(format!("{key} is not a sorted set")));
            };
            z.insert(member.clone(), score);
        }
        self.notify([key]);
        Ok(())
    }

    fn changes(&self) -> &ChangeHub {
        &self.inner.changes
    }
}

/// Parses an integer the way Redis's `HINCRBY` accepts one: optional `-`, digits, no leading
/// zeros, no spaces.
fn redis_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::redis_integer;

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        assert_eq!(redis_integer("7"), Some(7));
        assert_eq!(redis_integer("-12"), Some(-12));
        assert_eq!(redis_integer("0"), Some(0));
        for bad in ["", "07", " 7", "7.0", "null", "\"7\"", "-0", "99999999999999999999"] {
            assert_eq!(redis_integer(bad), None, "{bad:?}");
        }
    }
}
