//! The in-process cache of done results: record and value hashes, as stored, bounded by bytes.
//!
//! A done record (SUCCESS, FAILURE, REVOKED, INVALID) changes only by a forced patch, a delete,
//! a foreign rewrite or expiry, so it can be answered from memory as long as every change is
//! seen. The cache itself only keeps entries and refuses stale ones; what tells it of changes
//! (Redis client tracking, resultd's own writes) lives with the store.
//!
//! The fetch-then-insert race: a reader takes a [`Ticket`] before it reads the store, and its
//! entry is kept only if no invalidation of that key (or flush) happened since. Invalidation
//! bumps the key's generation *before* removing the entry, and an insert re-checks the
//! generation *after* inserting, so whichever of the two runs last, no stale entry survives.
//!
//! Admission: a done result is kept on its second miss, not its first (a doorkeeper of recent
//! misses' fingerprints, overwritten as others come). A result read once, as in a scan over many,
//! costs one plain read and no insert, eviction or tracked key; one read again soon is kept.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

use super::{Fields, HashSnapshot};

/// Generation slots: keys share one by hash, so an invalidation may cost an unrelated insert.
const SLOTS: usize = 4096;

/// Bytes of cache per doorkeeper slot: the doorkeeper remembers about as many recent misses as
/// the cache holds entries.
const BYTES_PER_DOORKEEPER_SLOT: u64 = 512;

/// Bounds of the doorkeeper's slot count (powers of two).
const DOORKEEPER_SLOTS: std::ops::RangeInclusive<usize> = 1024..=(1 << 20);

/// Bytes counted for an entry beyond its key and cells (allocation and bookkeeping).
const ENTRY_OVERHEAD: usize = 160;

/// One cached hash and when it expires in the store.
struct Entry {
    fields: Fields,
    /// The store's expiry, read with the hash (`None`: never expires).
    expires_at: Option<Instant>,
    /// What a reader made of the cells (a decoded view, a rendered answer), made once.
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

/// A cached hash as a reader holds it: its cells, its remaining TTL, what was derived from it.
pub struct Held {
    entry: Arc<Entry>,
    /// Remaining time to live in milliseconds; `None` when the key never expires.
    pub ttl_ms: Option<i64>,
}

impl Held {
    /// The cached cells.
    pub fn fields(&self) -> &Fields {
        &self.entry.fields
    }

    /// What `derive` makes of the cells, made on the first call and shared by the later ones
    /// (the cells never change: a changed key is a new entry).
    pub fn derived<T: Any + Send + Sync, E>(&self, derive: impl FnOnce(&Fields) -> Result<T, E>) -> Result<Arc<T>, E> {
        if let Some(done) = self.entry.derived.get()
            && let Ok(done) = Arc::clone(done).downcast::<T>()
        {
            return Ok(done);
        }
        let made = Arc::new(derive(&self.entry.fields)?);
        // A concurrent reader may have set it first: both made the same thing.
        let _ = self.entry.derived.set(made.clone());
        Ok(made)
    }
}

/// A reader's claim, taken before it reads the store: its entry is kept only if still valid.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    slot: usize,
    generation: u64,
    started: Instant,
}

/// Cache counters, for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    deferred: AtomicU64,
    evictions: Arc<AtomicU64>,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

/// What the cache counted so far, and what it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to the store.
    pub misses: u64,
    /// Misses not kept because they were a result's first (the doorkeeper).
    pub deferred: u64,
    /// Entries dropped to stay under the byte bound.
    pub evictions: u64,
    /// Keys invalidated one by one.
    pub invalidations: u64,
    /// Whole-cache flushes (lost invalidation feed, reconnect, `FLUSHDB`).
    pub flushes: u64,
    /// Bytes held (weighted size).
    pub bytes: u64,
    /// Entries held.
    pub entries: u64,
}

/// The bounded cache of done result hashes.
pub struct ResultCache {
    entries: moka::sync::Cache<String, Arc<Entry>>,
    generations: Box<[AtomicU64]>,
    /// Fingerprints of recent misses, one per slot (0: none).
    doorkeeper: Box<[AtomicU64]>,
    epoch: AtomicU64,
    /// Whether changes are being seen now; while not, nothing is inserted.
    live: AtomicBool,
    counters: Counters,
    max_bytes: u64,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache").field("stats", &self.stats()).finish()
    }
}

/// An entry's bytes: its key, its cells, and what readers derive from them (a rendered answer
/// is about as large as the values, so they count twice).
fn weight(key: &str, fields: &Fields) -> u32 {
    let cells: usize = fields.iter().map(|(f, v)| f.len() + 2 * v.len() + 32).sum();
    u32::try_from(key.len() + cells + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

impl ResultCache {
    /// A cache of at most `max_bytes`; `None` when 0 (the cache is off). It starts not live.
    pub fn new(max_bytes: u64) -> Option<Self> {
        if max_bytes == 0 {
            return None;
        }
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&evictions);
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Arc<Entry>| weight(key, &entry.fields))
            .eviction_listener(move |_key, _entry, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let doorkeeper_slots = usize::try_from(max_bytes / BYTES_PER_DOORKEEPER_SLOT)
            .unwrap_or(usize::MAX)
            .clamp(*DOORKEEPER_SLOTS.start(), *DOORKEEPER_SLOTS.end())
            .next_power_of_two();
        Some(Self {
            entries,
            generations: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            doorkeeper: (0..doorkeeper_slots).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            counters: Counters {
                evictions,
                ..Counters::default()
            },
            max_bytes,
        })
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn slot(key: &str) -> usize {
        // SLOTS is a power of two far below u64's range: the cast keeps the low bits.
        (xxh3_64(key.as_bytes()) as usize) & (SLOTS - 1)
    }

    /// The entry of `key`, when held and not yet expired (a hit or a miss, counted).
    pub fn hold(&self, key: &str) -> Option<Held> {
        let found = self.entries.get(key).and_then(|entry| {
            let ttl_ms = match entry.expires_at {
                None => None,
                Some(at) => {
                    let left = at.checked_duration_since(Instant::now())?;
                    if left.is_zero() {
                        return None;
                    }
                    Some(i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1))
                }
            };
            Some(Held { entry, ttl_ms })
        });
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The snapshot of `key`, when held and not yet expired.
    pub fn get(&self, key: &str) -> Option<HashSnapshot> {
        self.hold(key).map(|held| HashSnapshot {
            fields: held.fields().clone(),
            ttl_ms: held.ttl_ms,
        })
    }

    /// Whether a miss of `key` should be read for keeping: true on its second recent miss.
    ///
    /// A first miss leaves the key's fingerprint behind; a later miss that finds it is admitted.
    /// Fingerprints share slots by hash, so a busy cache forgets a key read long ago.
    pub fn admit(&self, key: &str) -> bool {
        let hash = xxh3_64(key.as_bytes());
        // The slot comes from the high bits, the fingerprint from all of them (never 0).
        let slot = ((hash >> 32) as usize) & (self.doorkeeper.len() - 1);
        let fingerprint = hash | 1;
        let seen = self.doorkeeper[slot].swap(fingerprint, Ordering::Relaxed) == fingerprint;
        if !seen {
            self.counters.deferred.fetch_add(1, Ordering::Relaxed);
        }
        seen
    }

    /// A ticket for reading `key` from the store; `None` while changes are not being seen.
    pub fn ticket(&self, key: &str) -> Option<Ticket> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let slot = Self::slot(key);
        Some(Ticket {
            epoch: self.epoch.load(Ordering::SeqCst),
            slot,
            generation: self.generations[slot].load(Ordering::SeqCst),
            started: Instant::now(),
        })
    }

    fn still_valid(&self, ticket: &Ticket) -> bool {
        self.live.load(Ordering::SeqCst)
            && self.epoch.load(Ordering::SeqCst) == ticket.epoch
            && self.generations[ticket.slot].load(Ordering::SeqCst) == ticket.generation
    }

    /// Keeps `snapshot` of `key`, read under `ticket`, unless the key changed since the ticket.
    ///
    /// The expiry counts from when the ticket was taken (before the read), so an entry never
    /// outlives the stored key.
    pub fn insert(&self, ticket: &Ticket, key: &str, snapshot: &HashSnapshot) {
        if !self.still_valid(ticket) {
            return;
        }
        let expires_at = match snapshot.ttl_ms {
            None => None,
            Some(ms) if ms <= 0 => return,
            Some(ms) => ticket
                .started
                .checked_add(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        };
        let entry = Arc::new(Entry {
            fields: snapshot.fields.clone(),
            expires_at,
            derived: OnceLock::new(),
        });
        self.entries.insert(key.to_owned(), entry);
        if !self.still_valid(ticket) {
            // An invalidation ran between the check and the insert: it may have removed the
            // entry before it existed.
            self.entries.invalidate(key);
        }
    }

    /// Forgets `key`: its cached entry, and any read of it in flight.
    pub fn invalidate(&self, key: &str) {
        self.generations[Self::slot(key)].fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(key);
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets everything, and every read in flight.
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks whether changes are being seen. Going live flushes first: whatever was missed
    /// while not live is forgotten.
    pub fn set_live(&self, live: bool) {
        if live {
            self.flush();
            self.live.store(true, Ordering::SeqCst);
        } else if self.live.swap(false, Ordering::SeqCst) {
            self.flush();
        }
    }

    /// Whether entries are being inserted now.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Counters and size now (pending evictions applied first).
    pub fn stats(&self) -> CacheStats {
        self.entries.run_pending_tasks();
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            deferred: self.counters.deferred.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            invalidations: self.counters.invalidations.load(Ordering::Relaxed),
            flushes: self.counters.flushes.load(Ordering::Relaxed),
            bytes: self.entries.weighted_size(),
            entries: self.entries.entry_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn snap(v: &str, ttl_ms: Option<i64>) -> HashSnapshot {
        HashSnapshot {
            fields: vec![("state".to_owned(), Bytes::from(v.to_owned()))],
            ttl_ms,
        }
    }

    fn live_cache() -> ResultCache {
        let c = ResultCache::new(1 << 20).unwrap();
        c.set_live(true);
        c
    }

    #[test]
    fn an_insert_is_read_back_with_a_counting_down_ttl() {
        let c = live_cache();
        let t = c.ticket("k").unwrap();
        c.insert(&t, "k", &snap("SUCCESS", Some(60_000)));
        let got = c.get("k").unwrap();
        assert_eq!(got.fields, snap("SUCCESS", None).fields);
        let ttl = got.ttl_ms.unwrap();
        assert!(ttl <= 60_000 && ttl > 50_000, "{ttl}");
    }

    #[test]
    fn what_is_derived_from_an_entry_is_made_once_and_dies_with_it() {
        let c = live_cache();
        let t = c.ticket("k").unwrap();
        c.insert(&t, "k", &snap("SUCCESS", None));
        let made = AtomicU64::new(0);
        let derive = |f: &Fields| {
            made.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ()>(f[0].1.len())
        };
        for _ in 0..3 {
            assert_eq!(*c.hold("k").unwrap().derived(derive).unwrap(), 7);
        }
        assert_eq!(made.load(Ordering::Relaxed), 1);
        // Another type is made from the cells without replacing the first.
        assert_eq!(
            *c.hold("k").unwrap().derived(|_| Ok::<_, ()>("other")).unwrap(),
            "other"
        );
        assert_eq!(*c.hold("k").unwrap().derived(derive).unwrap(), 7);
        assert_eq!(made.load(Ordering::Relaxed), 1);
        // A new entry for the key derives afresh; a failed derivation is not kept.
        c.invalidate("k");
        let t = c.ticket("k").unwrap();
        c.insert(&t, "k", &snap("FAILURE", None));
        assert_eq!(
            c.hold("k").unwrap().derived(|_| Err::<usize, _>("bad")).unwrap_err(),
            "bad"
        );
        assert_eq!(*c.hold("k").unwrap().derived(derive).unwrap(), 7);
        assert_eq!(made.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_kept() {
        let c = live_cache();
        let t = c.ticket("k").unwrap();
        c.invalidate("k");
        c.insert(&t, "k", &snap("SUCCESS", None));
        assert!(c.get("k").is_none());
        // A fresh ticket after the invalidation is fine.
        let t = c.ticket("k").unwrap();
        c.insert(&t, "k", &snap("SUCCESS", None));
        assert!(c.get("k").is_some());
    }

    #[test]
    fn a_flush_forgets_entries_and_reads_in_flight() {
        let c = live_cache();
        let t1 = c.ticket("a").unwrap();
        c.insert(&t1, "a", &snap("SUCCESS", None));
        let t2 = c.ticket("b").unwrap();
        c.flush();
        c.insert(&t2, "b", &snap("SUCCESS", None));
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_none());
    }

    #[test]
    fn nothing_is_kept_while_not_live() {
        let c = ResultCache::new(1 << 20).unwrap();
        assert!(c.ticket("k").is_none());
        c.set_live(true);
        let t = c.ticket("k").unwrap();
        c.set_live(false);
        c.insert(&t, "k", &snap("SUCCESS", None));
        assert!(c.get("k").is_none());
    }

    #[test]
    fn an_expired_entry_is_a_miss() {
        let c = live_cache();
        let t = c.ticket("k").unwrap();
        // A TTL that ran out before the read answered is never kept.
        c.insert(&t, "k", &snap("SUCCESS", Some(0)));
        assert!(c.get("k").is_none());
        // One whose expiry has passed is a miss.
        let t = Ticket {
            started: Instant::now().checked_sub(Duration::from_secs(10)).unwrap(),
            ..c.ticket("k").unwrap()
        };
        c.insert(&t, "k", &snap("SUCCESS", Some(1000)));
        assert!(c.get("k").is_none());
    }

    #[test]
    fn the_byte_bound_holds() {
        let c = ResultCache::new(64 * 1024).unwrap();
        c.set_live(true);
        for i in 0..10_000 {
            let key = format!("app.mognet.result.{i}");
            let t = c.ticket(&key).unwrap();
            c.insert(&t, &key, &snap(&"x".repeat(100), None));
        }
        let stats = c.stats();
        assert!(stats.bytes <= 64 * 1024, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
    }

    #[test]
    fn a_key_is_admitted_on_its_second_miss() {
        let c = live_cache();
        assert!(!c.admit("a"), "a first miss is not kept");
        assert!(!c.admit("b"));
        assert!(c.admit("a"), "a second one is");
        assert!(c.admit("a"), "and stays admitted while remembered");
        assert_eq!(c.stats().deferred, 2);
    }

    #[test]
    fn the_doorkeeper_forgets_misses_long_ago() {
        let c = live_cache();
        assert!(!c.admit("old"));
        // Far more distinct misses than slots: "old" has been overwritten.
        for i in 0..(1 << 16) {
            c.admit(&format!("k{i}"));
        }
        assert!(!c.admit("old"));
    }

    #[test]
    fn zero_bytes_is_off() {
        assert!(ResultCache::new(0).is_none());
    }
}
