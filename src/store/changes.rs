//! In-process fan-out of key changes to the requests waiting on them.
//!
//! Each waited key has one `watch` channel, however many requests wait on it. A waiter takes a
//! [`KeyWatch`] *before* it reads the key, so a change between its read and its sleep is never
//! missed: the channel's version moved, and `changed()` returns at once. Dropping the watch
//! (completion, timeout, client disconnect, shutdown) removes the waiter; the channel goes with
//! its last waiter, so nothing accumulates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

#[derive(Default)]
struct Inner {
    keys: Mutex<HashMap<String, Channel>>,
    waiters: AtomicUsize,
}

struct Channel {
    tx: watch::Sender<u64>,
    watchers: usize,
}

/// The registry of waited keys of one store.
#[derive(Clone, Default)]
pub struct ChangeHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeHub").field("waiters", &self.waiters()).finish()
    }
}

impl Inner {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ChangeHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts watching `key`; changes from now on make [`KeyWatch::changed`] return.
    pub fn watch(&self, key: &str) -> KeyWatch {
        let mut keys = self.inner.keys();
        let channel = keys.entry(key.to_owned()).or_insert_with(|| Channel {
            tx: watch::channel(0).0,
            watchers: 0,
        });
        channel.watchers += 1;
        let rx = channel.tx.subscribe();
        drop(keys);
        self.inner.waiters.fetch_add(1, Ordering::Relaxed);
        KeyWatch {
            inner: Arc::clone(&self.inner),
            key: key.to_owned(),
            rx,
        }
    }

    /// Tells the waiters of `key` that it changed.
    pub fn notify(&self, key: &str) {
        if let Some(channel) = self.inner.keys().get(key) {
            channel.tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Tells every waiter to re-read (after a reconnect, when changes may have been missed).
    pub fn notify_all(&self) {
        for channel in self.inner.keys().values() {
            channel.tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The keys waited on now.
    pub fn watched_keys(&self) -> Vec<String> {
        self.inner.keys().keys().cloned().collect()
    }

    /// Whether anyone waits on `key`.
    pub fn is_watched(&self, key: &str) -> bool {
        self.inner.keys().contains_key(key)
    }

    /// How many watches are held.
    pub fn waiters(&self) -> usize {
        self.inner.waiters.load(Ordering::Relaxed)
    }
}

/// One waiter's interest in one key; dropping it unregisters the waiter.
pub struct KeyWatch {
    inner: Arc<Inner>,
    key: String,
    rx: watch::Receiver<u64>,
}

impl KeyWatch {
    /// The watched key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Waits for the next change of the key.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives as long as any watch of the key, so this cannot happen; never
            // spin if it does.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        let mut keys = self.inner.keys();
        if let Some(channel) = keys.get_mut(&self.key) {
            channel.watchers -= 1;
            if channel.watchers == 0 {
                keys.remove(&self.key);
            }
        }
        drop(keys);
        self.inner.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_change_after_watching_wakes_the_waiter() {
        let hub = ChangeHub::new();
        let mut w = hub.watch("k");
        hub.notify("k");
        tokio::time::timeout(Duration::from_secs(1), w.changed()).await.unwrap();
    }

    #[tokio::test]
    async fn other_keys_do_not_wake_the_waiter() {
        let hub = ChangeHub::new();
        let mut w = hub.watch("k");
        hub.notify("other");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.changed())
                .await
                .is_err()
        );
    }

    #[test]
    fn dropping_the_last_watch_forgets_the_key() {
        let hub = ChangeHub::new();
        let a = hub.watch("k");
        let b = hub.watch("k");
        assert_eq!(hub.waiters(), 2);
        drop(a);
        assert!(hub.is_watched("k"));
        drop(b);
        assert!(!hub.is_watched("k"));
        assert_eq!(hub.waiters(), 0);
    }
}
