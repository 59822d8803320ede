//! Per-app state operations over the store primitives, in mognet's bytes (§7).
//!
//! One hash per key, one JSON document per field. Every write sets the TTL in the same script
//! as the data; reads refresh it too when asked (mognet refreshes on every access).

use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::codec;
use super::results::Precondition;
use super::{Guard, HashSnapshot, HashWrite, IncrementOutcome, ResultStore, StoreError, WriteOutcome};

const MAX_ATTEMPTS: usize = 32;

/// A state hash as read.
#[derive(Debug, Clone)]
pub struct StateView {
    /// Fields and their JSON documents, sorted by name.
    pub fields: Vec<(String, Box<RawValue>)>,
    /// Strong ETag of the stored hash.
    pub etag: String,
    /// Remaining TTL in seconds.
    pub ttl: Option<i64>,
}

/// What a conditional state write did.
#[derive(Debug)]
pub enum StateWrite {
    /// Written; the hash did not exist before.
    Created(StateView),
    /// Written over an existing hash.
    Updated(StateView),
    /// The precondition failed.
    PreconditionFailed,
}

fn view_of(key: &str, snap: &HashSnapshot) -> Result<StateView, StoreError> {
    let mut fields = Vec::with_capacity(snap.fields.len());
    for (field, bytes) in &snap.fields {
        let raw = codec::read_cell(field, bytes).map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        fields.push((field.clone(), raw));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(StateView {
        fields,
        etag: codec::etag(&snap.fields),
        ttl: snap.ttl_seconds(),
    })
}

/// Reads a state hash, refreshing its TTL when `refresh` is set.
pub async fn get<S: ResultStore>(
    store: &S,
    key: &str,
    refresh: Option<Duration>,
) -> Result<Option<StateView>, StoreError> {
    match store.read_hash(key, refresh).await? {
        Some(snap) => Ok(Some(view_of(key, &snap)?)),
        None => Ok(None),
    }
}

fn merged(previous: Option<&HashSnapshot>, set: &[(String, Bytes)], remove: &[String], replace: bool) -> HashSnapshot {
    let mut fields: Vec<(String, Bytes)> = if replace {
        Vec::new()
    } else {
        previous.map(|p| p.fields.clone()).unwrap_or_default()
    };
    fields.retain(|(f, _)| !remove.contains(f) && !set.iter().any(|(s, _)| s == f));
    fields.extend(set.iter().cloned());
    HashSnapshot { fields, ttl_ms: None }
}

/// Writes fields (replacing the whole hash with `replace`), under a precondition.
pub async fn write<S: ResultStore>(
    store: &S,
    key: &str,
    set: Vec<(String, Bytes)>,
    remove: Vec<String>,
    replace: bool,
    precondition: &Precondition,
    ttl: Option<Duration>,
) -> Result<StateWrite, StoreError> {
    for attempt in 0..MAX_ATTEMPTS {
        let snap = store.read_hash(key, None).await?;
        let current = snap.as_ref().map(|s| codec::etag(&s.fields));
        if !precondition.holds(current.as_deref()) {
            return Ok(StateWrite::PreconditionFailed);
        }
        let guard = match (precondition, &snap) {
            // Unconditional merges need no read-check: HSET/HDEL are atomic on their own and
            // concurrent patches of disjoint fields must all land.
            (Precondition::None, _) if !replace => Guard::Any,
            // A replace without a precondition that lost a race writes over the winner.
            (Precondition::None, _) if attempt > 0 => Guard::Any,
            (_, Some(s)) => Guard::Unchanged(s.fields.clone()),
            (_, None) => Guard::Absent,
        };
        let write = HashWrite {
            key: key.to_owned(),
            guard: guard.clone(),
            replace,
            set: set.clone(),
            remove: remove.clone(),
            ttl,
        };
        if store.write_hashes(&[write]).await? == WriteOutcome::Written {
            let after = if guard == Guard::Any {
                // Another writer may have changed other fields meanwhile: answer what is stored.
                store.read_hash(key, None).await?.unwrap_or(HashSnapshot {
                    fields: Vec::new(),
                    ttl_ms: None,
                })
            } else {
                let mut m = merged(snap.as_ref(), &set, &remove, replace);
                m.ttl_ms = ttl.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                m
            };
            let view = view_of(key, &after)?;
            return Ok(if snap.is_some() {
                StateWrite::Updated(view)
            } else {
                StateWrite::Created(view)
            });
        }
        super::results::backoff(attempt).await;
    }
    Err(StoreError::Contended(key.to_owned()))
}

/// Adds `by` to an integer field.
pub async fn increment<S: ResultStore>(
    store: &S,
    key: &str,
    field: &str,
    by: i64,
    ttl: Option<Duration>,
) -> Result<IncrementOutcome, StoreError> {
    store.increment(key, field, by, ttl).await
}

/// Removes a field and answers its JSON document (mognet's `pop`).
pub async fn pop<S: ResultStore>(
    store: &S,
    key: &str,
    field: &str,
    ttl: Option<Duration>,
) -> Result<Option<Box<RawValue>>, StoreError> {
    match store.pop_field(key, field, ttl).await? {
        None => Ok(None),
        Some(bytes) => codec::read_cell(field, &bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key: key.to_owned(),
                reason: e.to_string(),
            }),
    }
}

/// Deletes a state hash; false when it did not exist.
pub async fn delete<S: ResultStore>(store: &S, key: &str) -> Result<bool, StoreError> {
    Ok(store.delete(&[key.to_owned()]).await? > 0)
}
