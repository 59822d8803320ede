//! Redis Cluster: the primaries, one keyspace subscriber per primary, writes split by slot,
//! and SCAN over every primary.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{Server, ServerConfig};

use super::RedisStore;
use super::connection::builder;
use super::scan_step;
use crate::store::{HashWrite, StoreError, WriteOutcome};

impl RedisStore {
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

    /// Cluster: one subscriber per primary, added and dropped as primaries come and go.
    pub(super) async fn sync_cluster_subscribers(&self) {
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

    pub(super) fn spawn_cluster_follower(&self) {
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

    /// Writes a batch whose keys may sit in different slots.
    pub(super) async fn write_across_slots(&self, writes: &[HashWrite]) -> Result<WriteOutcome, StoreError> {
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

    /// One step of a SCAN over every primary.
    pub(super) async fn scan_cluster(
        &self,
        pattern: &str,
        cursor: &str,
        count: u32,
    ) -> Result<(String, Vec<String>), StoreError> {
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
}
