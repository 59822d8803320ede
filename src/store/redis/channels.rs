//! Exact-channel subscriptions for layouts whose writers publish on the key's name (Celery).
//!
//! One `SUBSCRIBE` per waited key, reference-counted over all its waiters, and `UNSUBSCRIBE`
//! when the last one leaves, so the subscribed set is exactly the waited set: never a
//! `PSUBSCRIBE` over a prefix, which would send every result written to every replica. A wait
//! holds its channels *before* it reads the key, as with keyspace watches. A message is only a
//! hint (channels ignore the DB number): the waiter reads the key again from the configured DB.
//! After a reconnect every subscribed channel is subscribed again, and only then is every
//! waiter told to read again, so a result written while disconnected is not missed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::reply::map_err;
use crate::store::{ChangeHub, StoreError};

#[derive(Default)]
struct State {
    /// Waiters per channel.
    holders: HashMap<String, usize>,
    /// Channels subscribed on the connection now.
    subscribed: HashSet<String>,
}

/// The subscriber connection of published channels and its reference counts.
pub(super) struct Channels {
    client: SubscriberClient,
    hub: ChangeHub,
    state: Mutex<State>,
    /// Serialises SUBSCRIBE and UNSUBSCRIBE, so the subscribed set matches the connection's.
    ops: tokio::sync::Mutex<()>,
    command_timeout: Duration,
    stop: CancellationToken,
}

/// One wait's hold on its channels; dropping it releases them.
pub struct ChannelHold {
    channels: Arc<Channels>,
    keys: Vec<String>,
}

impl std::fmt::Debug for ChannelHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelHold").field("keys", &self.keys).finish()
    }
}

impl Channels {
    /// Connects `client` and starts its message reader, re-subscriber and heartbeat; messages
    /// wake the waiters of `hub`.
    pub(super) async fn start(
        client: SubscriberClient,
        hub: ChangeHub,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Arc<Self> {
        let mut messages = client.message_rx();
        let mut reconnects = client.reconnect_rx();
        client.connect();
        let _ = tokio::time::timeout(connect_timeout, client.wait_for_connect()).await;
        let channels = Arc::new(Self {
            client,
            hub,
            state: Mutex::new(State::default()),
            ops: tokio::sync::Mutex::new(()),
            command_timeout,
            stop: CancellationToken::new(),
        });
        let weak = Arc::downgrade(&channels);
        let stop = channels.stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    m = messages.recv() => m,
                    () = stop.cancelled() => break,
                };
                let Some(channels) = weak.upgrade() else { break };
                match message {
                    Ok(message) => {
                        crate::telemetry::count_channel_message();
                        channels.hub.notify(&message.channel);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => channels.hub.notify_all(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let weak = Arc::downgrade(&channels);
        let stop = channels.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = reconnects.recv() => if r.is_err() { break },
                    () = stop.cancelled() => break,
                }
                let Some(channels) = weak.upgrade() else { break };
                channels.resubscribe().await;
                channels.hub.notify_all();
            }
        });
        // A subscriber sends nothing on its own: ping it, so a dead network is noticed and the
        // connection is replaced rather than waits sleeping to their deadlines.
        let pinger = channels.client.clone();
        let stop = channels.stop.clone();
        let period = command_timeout.clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                if pinger.is_connected() {
                    let _ = tokio::time::timeout(period * 4, pinger.ping::<Value>(None)).await;
                }
            }
        });
        channels
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a few inserts and removes: the sets stay valid after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the channels named `keys` until the hold is dropped; returns once each is
    /// subscribed, so a message published after this returns reaches the hub.
    pub(super) async fn hold(self: &Arc<Self>, keys: &[String]) -> Result<ChannelHold, StoreError> {
        {
            let mut state = self.state();
            for key in keys {
                *state.holders.entry(key.clone()).or_default() += 1;
            }
        }
        // Built first, so an error below releases the counts again.
        let hold = ChannelHold {
            channels: Arc::clone(self),
            keys: keys.to_vec(),
        };
        self.subscribe_missing().await?;
        Ok(hold)
    }

    /// Subscribes every held channel that is not subscribed yet.
    async fn subscribe_missing(&self) -> Result<(), StoreError> {
        let _op = self.ops.lock().await;
        let missing: Vec<String> = {
            let state = self.state();
            state
                .holders
                .keys()
                .filter(|k| !state.subscribed.contains(*k))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(self.command_timeout, self.client.subscribe(missing.clone())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(map_err(&e)),
            Err(_) => return Err(StoreError::Unavailable("SUBSCRIBE timed out".to_owned())),
        }
        let mut state = self.state();
        state.subscribed.extend(missing);
        crate::telemetry::record_channels(state.subscribed.len());
        Ok(())
    }

    /// Unsubscribes every subscribed channel nobody holds any more.
    async fn unsubscribe_stale(&self) {
        let _op = self.ops.lock().await;
        let stale: Vec<String> = {
            let mut state = self.state();
            let stale: Vec<String> = state
                .subscribed
                .iter()
                .filter(|k| !state.holders.contains_key(*k))
                .cloned()
                .collect();
            for k in &stale {
                state.subscribed.remove(k);
            }
            crate::telemetry::record_channels(state.subscribed.len());
            stale
        };
        if stale.is_empty() {
            return;
        }
        // A failure leaves the channel on a connection that is down or about to be replaced:
        // the reconnect subscribes only what is still held.
        if let Ok(Err(e)) = tokio::time::timeout(self.command_timeout, self.client.unsubscribe(stale)).await {
            tracing::debug!(error = %e, "UNSUBSCRIBE failed");
        }
    }

    /// After a reconnect: subscribes every channel held now again.
    async fn resubscribe(&self) {
        let _op = self.ops.lock().await;
        let held: Vec<String> = {
            let mut state = self.state();
            state.subscribed = state.holders.keys().cloned().collect();
            crate::telemetry::record_channels(state.subscribed.len());
            state.subscribed.iter().cloned().collect()
        };
        if held.is_empty() {
            return;
        }
        match tokio::time::timeout(self.command_timeout, self.client.subscribe(held)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "re-subscribing waited channels failed; retried on reconnect"),
            Err(_) => tracing::warn!("re-subscribing waited channels timed out; retried on reconnect"),
        }
    }

    /// Channels subscribed now.
    pub(super) fn subscribed(&self) -> usize {
        self.state().subscribed.len()
    }

    /// Stops the tasks and closes the connection.
    pub(super) async fn close(&self) {
        self.stop.cancel();
        if self.client.is_connected() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.quit()).await;
        }
    }
}

impl Drop for ChannelHold {
    fn drop(&mut self) {
        let released = {
            let mut state = self.channels.state();
            let mut released = false;
            for key in &self.keys {
                if let Some(n) = state.holders.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        state.holders.remove(key);
                        released = true;
                    }
                }
            }
            released
        };
        if released && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let channels = Arc::clone(&self.channels);
            runtime.spawn(async move { channels.unsubscribe_stale().await });
        }
    }
}
