//! Result operations over the store primitives: one implementation for both stores.
//!
//! Read-decide-write steps (create-or-replace, patch, complete) read the hash, decide with the
//! domain rules, then write under [`Guard::Unchanged`] and retry when a concurrent writer got
//! in between. A value and the state that makes it readable go in one atomic batch, value first,
//! so a Python waiter that sees a ready state always finds the value (mognet-layout §12.3).

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::codec::{self, StoredValue};
use super::{Guard, HashSnapshot, HashWrite, Once, ResultStore, Store, StoreError, WriteOutcome, keys};
use crate::domain::{AppName, RecordPatch, ResultId, ResultRecord, ResultState, TransitionError};

/// How many times a conditional update is retried against concurrent writers.
const MAX_ATTEMPTS: usize = 32;

/// A record as read, with its ETag and remaining TTL.
#[derive(Debug, Clone)]
pub struct ResultView {
    /// The decoded record.
    pub record: ResultRecord,
    /// Strong ETag of the stored hash.
    pub etag: String,
    /// Remaining TTL in seconds; `None` when it never expires.
    pub ttl: Option<i64>,
}

/// An HTTP-style precondition on a resource's ETag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// No condition.
    #[default]
    None,
    /// `If-Match`: the current ETag must be one of these (`*`: must exist).
    IfMatch(Vec<String>),
    /// `If-None-Match: *`: must not exist.
    IfAbsent,
    /// `If-None-Match` with tags: the current ETag (if any) must be none of these.
    IfNoneMatch(Vec<String>),
}

impl Precondition {
    /// Whether a resource with `etag` (or none) meets the condition.
    pub fn holds(&self, etag: Option<&str>) -> bool {
        match self {
            Self::None => true,
            Self::IfAbsent => etag.is_none(),
            Self::IfNoneMatch(tags) => etag.is_none_or(|e| !tags.iter().any(|t| t == e)),
            Self::IfMatch(tags) => etag.is_some_and(|e| tags.iter().any(|t| t == "*" || t == e)),
        }
    }
}

/// What a create-or-replace did.
#[derive(Debug)]
pub enum PutOutcome {
    /// The record did not exist.
    Created(ResultView),
    /// The record existed and was replaced.
    Replaced(ResultView),
    /// The precondition failed; nothing was written.
    PreconditionFailed,
}

/// What a patch did.
#[derive(Debug)]
pub enum PatchOutcome {
    /// The record after the patch.
    Patched(ResultView),
    /// No such result.
    NotFound,
    /// The precondition failed.
    PreconditionFailed,
    /// The patch would leave a ready state.
    Illegal(TransitionError),
}

/// What reading a value found.
#[derive(Debug)]
pub enum ValueRead {
    /// No such result.
    NotFound,
    /// The result is not done.
    NotReady(Arc<ResultView>),
    /// Done, but the value key is gone (expired or never written).
    Expired(Arc<ResultView>),
    /// The stored value.
    Value(Arc<ResultView>, Arc<StoredValue>),
}

fn corrupt(key: &str, e: &codec::CorruptField) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// Decodes a record snapshot into a view.
pub fn view_of(key: &str, id: ResultId, snap: &HashSnapshot) -> Result<ResultView, StoreError> {
    Ok(ResultView {
        record: codec::decode_record(id, &snap.fields).map_err(|e| corrupt(key, &e))?,
        etag: codec::etag(&snap.fields),
        ttl: snap.ttl_seconds(),
    })
}

fn written_view(
    record: ResultRecord,
    fields: &[(String, Bytes)],
    previous: Option<&HashSnapshot>,
    ttl: Option<Duration>,
) -> ResultView {
    // The stored hash is the previous one with the 11 fields overwritten (extra fields survive).
    let mut merged: Vec<(String, Bytes)> = previous
        .map(|p| {
            p.fields
                .iter()
                .filter(|(f, _)| !codec::RESULT_FIELDS.contains(&f.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    merged.extend(fields.iter().cloned());
    ResultView {
        record,
        etag: codec::etag(&merged),
        ttl: ttl
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .or_else(|| previous.and_then(HashSnapshot::ttl_seconds)),
    }
}

fn guard_for(snap: Option<&HashSnapshot>) -> Guard {
    snap.map_or(Guard::Absent, |s| Guard::Unchanged(s.fields.clone()))
}

/// Reads one result.
pub async fn get<S: ResultStore>(store: &S, app: &AppName, id: &ResultId) -> Result<Option<ResultView>, StoreError> {
    let key = keys::result(app, id);
    match store.read_hash(&key, None).await? {
        Some(snap) => Ok(Some(view_of(&key, *id, &snap)?)),
        None => Ok(None),
    }
}

/// Creates or replaces a record with all 11 fields.
pub async fn put<S: ResultStore>(
    store: &S,
    app: &AppName,
    record: &ResultRecord,
    precondition: &Precondition,
    ttl: Option<Duration>,
) -> Result<PutOutcome, StoreError> {
    let key = keys::result(app, &record.id);
    let fields = codec::encode_record(record);
    if *precondition == Precondition::None {
        // Nothing to check first: one atomic write that also tells what was there.
        let before = store.upsert_hash(&key, &fields, ttl).await?;
        let view = written_view(record.clone(), &fields, before.as_ref(), ttl);
        return Ok(if before.is_some() {
            PutOutcome::Replaced(view)
        } else {
            PutOutcome::Created(view)
        });
    }
    for attempt in 0..MAX_ATTEMPTS {
        let snap = store.read_hash(&key, None).await?;
        let current = snap.as_ref().map(|s| codec::etag(&s.fields));
        if !precondition.holds(current.as_deref()) {
            return Ok(PutOutcome::PreconditionFailed);
        }
        // The precondition held on what was read: write only if that is still what is there.
        let write = HashWrite::set(key.clone(), fields.clone(), ttl).guarded(guard_for(snap.as_ref()));
        if store.write_hashes(std::slice::from_ref(&write)).await? != WriteOutcome::Written {
            backoff(attempt).await;
            continue;
        }
        let view = written_view(record.clone(), &fields, snap.as_ref(), ttl);
        return Ok(if snap.is_some() {
            PutOutcome::Replaced(view)
        } else {
            PutOutcome::Created(view)
        });
    }
    Err(StoreError::Contended(key))
}

/// A short, growing, jittered pause after losing a compare-and-set race, so that contending
/// writers spread out instead of colliding again at once.
pub(crate) async fn backoff(attempt: usize) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let cap_us = 100u64 << attempt.min(6);
    let pause = u64::from(nanos) % cap_us.max(1);
    tokio::time::sleep(Duration::from_micros(pause)).await;
}

/// Applies a patch atomically, with mognet's lifecycle bookkeeping.
#[allow(clippy::too_many_arguments)]
pub async fn patch<S: ResultStore>(
    store: &S,
    app: &AppName,
    id: &ResultId,
    patch: &RecordPatch,
    force: bool,
    precondition: &Precondition,
    ttl: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<PatchOutcome, StoreError> {
    let key = keys::result(app, id);
    for attempt in 0..MAX_ATTEMPTS {
        let Some(snap) = store.read_hash(&key, None).await? else {
            return Ok(if matches!(precondition, Precondition::IfAbsent) {
                PatchOutcome::PreconditionFailed
            } else {
                PatchOutcome::NotFound
            });
        };
        let current = view_of(&key, *id, &snap)?;
        if !precondition.holds(Some(&current.etag)) {
            return Ok(PatchOutcome::PreconditionFailed);
        }
        let next = match patch.apply(&current.record, now, force) {
            Ok(next) => next,
            Err(e) => return Ok(PatchOutcome::Illegal(e)),
        };
        let fields = codec::encode_record(&next);
        let write = HashWrite::set(key.clone(), fields.clone(), ttl).guarded(Guard::Unchanged(snap.fields.clone()));
        if store.write_hashes(&[write]).await? == WriteOutcome::Written {
            return Ok(PatchOutcome::Patched(written_view(next, &fields, Some(&snap), ttl)));
        }
        backoff(attempt).await;
    }
    Err(StoreError::Contended(key))
}

/// What storing a value did.
#[derive(Debug)]
pub enum StoreValueOutcome {
    /// Stored; the record as it is now.
    Stored(ResultView),
    /// No such result.
    NotFound,
    /// Completing would leave a ready state.
    Illegal(TransitionError),
    /// The precondition on the record failed.
    PreconditionFailed,
    /// The idempotency key was used before for the same request: nothing was written; the
    /// record as it is now.
    Replayed(ResultView),
    /// The idempotency key was used before for a different request: nothing was written.
    KeyReused,
}

/// Stores a value and, with `state`, completes the result in the same atomic step.
///
/// With `once`, the write also creates the idempotency record (under `Guard::Absent`, in the
/// record's slot), so a request repeated with the same key is answered from the record instead.
#[allow(clippy::too_many_arguments)]
pub async fn store_value<S: ResultStore>(
    store: &S,
    app: &AppName,
    id: &ResultId,
    value_cells: codec::Fields,
    state: Option<ResultState>,
    precondition: &Precondition,
    result_ttl: Option<Duration>,
    value_ttl: Option<Duration>,
    now: DateTime<Utc>,
    once: Option<&Once>,
) -> Result<StoreValueOutcome, StoreError> {
    let key = keys::result(app, id);
    let value_key = keys::value(app, id);
    for attempt in 0..MAX_ATTEMPTS {
        let Some(snap) = store.read_hash(&key, None).await? else {
            return Ok(StoreValueOutcome::NotFound);
        };
        let current = view_of(&key, *id, &snap)?;
        // Before the precondition: a retry of an applied `If-Match` write is a replay, not a 412.
        if let Some(once) = once
            && let Some(seen) = store.read_hash(&once.key, None).await?
        {
            return Ok(
                if seen
                    .get("fingerprint")
                    .is_some_and(|f| f == once.fingerprint.as_bytes())
                {
                    StoreValueOutcome::Replayed(current)
                } else {
                    StoreValueOutcome::KeyReused
                },
            );
        }
        if !precondition.holds(Some(&current.etag)) {
            return Ok(StoreValueOutcome::PreconditionFailed);
        }
        let value_write = HashWrite {
            replace: true,
            ..HashWrite::set(value_key.clone(), value_cells.clone(), value_ttl)
        };
        let (record_write, view) = match state {
            Some(state) => {
                let next = match RecordPatch::to_state(state).apply(&current.record, now, false) {
                    Ok(next) => next,
                    Err(e) => return Ok(StoreValueOutcome::Illegal(e)),
                };
                let fields = codec::encode_record(&next);
                let view = written_view(next, &fields, Some(&snap), result_ttl);
                (HashWrite::set(key.clone(), fields, result_ttl), view)
            }
            None => (HashWrite::set(key.clone(), Vec::new(), None), current),
        };
        let record_write = record_write.guarded(Guard::Unchanged(snap.fields.clone()));
        let mut writes = vec![value_write, record_write];
        if let Some(once) = once {
            // A concurrent request with the same key that wrote first fails this guard; the
            // next attempt replays it.
            let fields = vec![("fingerprint".to_owned(), Bytes::from(once.fingerprint.clone()))];
            writes.push(HashWrite::set(once.key.clone(), fields, Some(once.ttl)).guarded(Guard::Absent));
        }
        if store.write_hashes(&writes).await? == WriteOutcome::Written {
            return Ok(StoreValueOutcome::Stored(view));
        }
        backoff(attempt).await;
    }
    Err(StoreError::Contended(key))
}

/// Reads a result and its value in one round trip (the TTLs are not read: the view's is `None`).
pub async fn get_value<S: ResultStore>(store: &S, app: &AppName, id: &ResultId) -> Result<ValueRead, StoreError> {
    let key = keys::result(app, id);
    let value_key = keys::value(app, id);
    let mut hashes = store.read_fields(&[key.clone(), value_key.clone()]).await?;
    let value = hashes.pop().flatten();
    value_read(&key, &value_key, *id, hashes.pop().flatten(), value)
}

/// [`get`] for a plain read, as what `render` makes of the view, with the TTL in seconds.
///
/// `render` is not given the TTL (it counts down). A done result may be answered from the
/// cache, rendered once while it is held.
pub async fn get_rendered<T: Any + Send + Sync>(
    store: &Store,
    app: &AppName,
    id: &ResultId,
    render: impl FnOnce(&ResultView) -> T,
) -> Result<Option<(Arc<T>, Option<i64>)>, StoreError> {
    let key = keys::result(app, id);
    let Some(found) = store.read_record(&key).await? else {
        return Ok(None);
    };
    let rendered = found.derived(|fields| Ok(render(&untimed_view(&key, *id, fields)?)))?;
    Ok(Some((rendered, super::seconds_left(found.ttl_ms()))))
}

/// The view of a record's cells, without a TTL.
fn untimed_view(key: &str, id: ResultId, fields: &codec::Fields) -> Result<ResultView, StoreError> {
    Ok(ResultView {
        record: codec::decode_record(id, fields).map_err(|e| corrupt(key, &e))?,
        etag: codec::etag(fields),
        ttl: None,
    })
}

/// [`get_value`] for a plain read: a done result and its value may be answered from the cache,
/// decoded once while they are held.
pub async fn get_value_cached(store: &Store, app: &AppName, id: &ResultId) -> Result<ValueRead, StoreError> {
    let key = keys::result(app, id);
    let value_key = keys::value(app, id);
    let (record, value) = store.read_record_and_value(&key, &value_key).await?;
    let Some(record) = record else {
        return Ok(ValueRead::NotFound);
    };
    let view = record.derived(|fields| untimed_view(&key, *id, fields))?;
    let stored = match &value {
        Some(v) if view.record.is_done() => {
            Some(v.derived(|fields| codec::decode_value(fields).map_err(|e| corrupt(&value_key, &e)))?)
        }
        _ => None,
    };
    Ok(value_outcome(view, stored))
}

fn value_read(
    key: &str,
    value_key: &str,
    id: ResultId,
    record: Option<codec::Fields>,
    value: Option<codec::Fields>,
) -> Result<ValueRead, StoreError> {
    let Some(fields) = record else {
        return Ok(ValueRead::NotFound);
    };
    let view = Arc::new(untimed_view(key, id, &fields)?);
    let stored = match value {
        Some(v) if view.record.is_done() => {
            Some(Arc::new(codec::decode_value(&v).map_err(|e| corrupt(value_key, &e))?))
        }
        _ => None,
    };
    Ok(value_outcome(view, stored))
}

/// What a read of a record and its decoded value (read only when the record is done) found.
fn value_outcome(view: Arc<ResultView>, stored: Option<Arc<StoredValue>>) -> ValueRead {
    if !view.record.is_done() {
        return ValueRead::NotReady(view);
    }
    match stored {
        None => ValueRead::Expired(view),
        Some(stored) => ValueRead::Value(view, stored),
    }
}

/// Deletes a result's four keys (and, with `recursive`, its descendants'); false when absent.
pub async fn delete<S: ResultStore>(
    store: &S,
    app: &AppName,
    id: &ResultId,
    recursive: bool,
) -> Result<bool, StoreError> {
    let mut seen = HashSet::new();
    let mut stack = vec![*id];
    let mut doomed = Vec::new();
    while let Some(next) = stack.pop() {
        if !seen.insert(next) || seen.len() > 100_000 {
            continue;
        }
        doomed.push(next);
        if recursive {
            stack.extend(children(store, app, &next).await?);
        }
    }
    let existed = store.read_hash(&keys::result(app, id), None).await?.is_some();
    let mut all = Vec::with_capacity(doomed.len() * 4);
    for d in &doomed {
        all.extend([
            keys::result(app, d),
            keys::value(app, d),
            keys::metadata(app, d),
            keys::children(app, d),
        ]);
    }
    for chunk in all.chunks(400) {
        store.delete(chunk).await?;
    }
    Ok(existed)
}

/// The child ids of a result (members that are not 16 bytes are skipped, as unreadable).
pub async fn children<S: ResultStore>(store: &S, app: &AppName, id: &ResultId) -> Result<Vec<ResultId>, StoreError> {
    let members = store.read_set(&keys::children(app, id)).await?;
    let mut ids: Vec<ResultId> = members
        .iter()
        .filter_map(|m| <[u8; 16]>::try_from(m.as_ref()).ok())
        .map(|b| ResultId::from_uuid(uuid::Uuid::from_bytes(b)))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Whether a result exists.
pub async fn exists<S: ResultStore>(store: &S, app: &AppName, id: &ResultId) -> Result<bool, StoreError> {
    Ok(store.read_hash(&keys::result(app, id), None).await?.is_some())
}

/// Adds children to a result and sets their `parent_id` (children that exist only).
pub async fn add_children<S: ResultStore>(
    store: &S,
    app: &AppName,
    parent: &ResultId,
    ids: &[ResultId],
    ttl: Option<Duration>,
) -> Result<bool, StoreError> {
    if !exists(store, app, parent).await? {
        return Ok(false);
    }
    let members: Vec<Bytes> = ids.iter().map(|i| Bytes::copy_from_slice(i.as_bytes())).collect();
    store.add_to_set(&keys::children(app, parent), &members, ttl).await?;
    let parent_cell = Bytes::from(format!("\"{parent}\""));
    for child in ids {
        let write = HashWrite::set(
            keys::result(app, child),
            vec![("parent_id".to_owned(), parent_cell.clone())],
            None,
        )
        .guarded(Guard::Exists);
        store.write_hashes(&[write]).await?;
    }
    Ok(true)
}

/// A result's metadata: `None` when the result does not exist.
pub async fn metadata<S: ResultStore>(
    store: &S,
    app: &AppName,
    id: &ResultId,
) -> Result<Option<Vec<(String, Box<RawValue>)>>, StoreError> {
    let key = keys::metadata(app, id);
    let mut snaps = store.read_hashes(&[keys::result(app, id), key.clone()]).await?;
    let meta = snaps.pop().flatten();
    if snaps.pop().flatten().is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (field, bytes) in meta.map(|m| m.fields).unwrap_or_default() {
        let raw = codec::read_cell(&field, &bytes).map_err(|e| corrupt(&key, &e))?;
        out.push((field, raw));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(out))
}

/// Merges metadata fields (`None` removes); false when the result does not exist.
pub async fn patch_metadata<S: ResultStore>(
    store: &S,
    app: &AppName,
    id: &ResultId,
    changes: Vec<(String, Option<Bytes>)>,
    ttl: Option<Duration>,
) -> Result<bool, StoreError> {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for (field, value) in changes {
        match value {
            Some(v) => set.push((field, v)),
            None => remove.push(field),
        }
    }
    let exists = HashWrite::set(keys::result(app, id), Vec::new(), None).guarded(Guard::Exists);
    let meta = HashWrite {
        remove,
        ..HashWrite::set(keys::metadata(app, id), set, ttl)
    };
    Ok(store.write_hashes(&[exists, meta]).await? == WriteOutcome::Written)
}

/// Where a listing stands: the store's SCAN cursor, and ids a SCAN step returned beyond the
/// last page's limit (a SCAN step cannot be cut short, so they wait for the next page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCursor {
    /// The store cursor; `"0"` (or empty) starts and ends a scan.
    pub scan: String,
    /// Ids found but not answered yet.
    pub pending: Vec<ResultId>,
}

/// One page of an app's result ids: at most `limit`, and the cursor of the next page.
///
/// SCAN semantics hold: every result that exists for the whole listing is returned at least
/// once; one that is created or deleted meanwhile may or may not be; an id may come twice.
pub async fn list<S: ResultStore>(
    store: &S,
    app: &AppName,
    cursor: &ListCursor,
    limit: usize,
) -> Result<(Vec<ResultId>, Option<ListCursor>), StoreError> {
    let limit = limit.max(1);
    let pattern = keys::result_pattern(app);
    let mut ids = cursor.pending.clone();
    let mut scan = if cursor.scan.is_empty() {
        "0".to_owned()
    } else {
        cursor.scan.clone()
    };
    let mut finished = scan == "0" && !cursor.pending.is_empty();
    // A SCAN step may return nothing with more to come; take a bounded number of steps.
    let mut steps = 0;
    while !finished && ids.len() < limit && steps < 32 {
        steps += 1;
        let want = u32::try_from(limit - ids.len()).unwrap_or(u32::MAX).max(10);
        let (next, keys) = store.scan(&pattern, &scan, want).await?;
        for id in keys.iter().filter_map(|k| keys::result_id_of(app, k)) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        scan = next;
        finished = scan == "0";
    }
    let pending = if ids.len() > limit {
        ids.split_off(limit)
    } else {
        Vec::new()
    };
    let next = (!finished || !pending.is_empty()).then_some(ListCursor { scan, pending });
    Ok((ids, next))
}
