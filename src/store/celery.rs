//! Celery results over the store's primitives: read, write (a stored SUCCESS is final, checked
//! atomically), and groups.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::layout::celery::{self, Celery, DecodeError, TaskId, TaskMeta, TaskWrite};
use super::{ResultStore, Store, StoreError, StringSnapshot, SwapOutcome};

/// Most compare-and-set rounds a write makes against concurrent writers before it gives up.
const MAX_SWAP_ROUNDS: usize = 16;

/// A task record as read.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// The decoded record.
    pub meta: TaskMeta,
    /// Seconds until the key expires; `None` when it never does.
    pub ttl: Option<i64>,
    /// Strong ETag over the stored bytes.
    pub etag: String,
}

/// Why a Celery call failed.
#[derive(Debug, thiserror::Error)]
pub enum CeleryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored value is not a Celery record resultd can read.
    #[error("{key} cannot be decoded: {error}")]
    Undecodable {
        /// The key.
        key: String,
        /// What is wrong.
        error: DecodeError,
    },
}

/// A strong ETag over stored bytes.
pub fn etag_of(stored: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(stored))
}

fn undecodable(key: &str, error: DecodeError) -> CeleryError {
    crate::telemetry::count_undecodable(error.reason());
    CeleryError::Undecodable {
        key: key.to_owned(),
        error,
    }
}

/// A key of another type than string holds no Celery record.
fn read_err(key: &str, e: StoreError) -> CeleryError {
    match e {
        StoreError::Corrupt { reason, .. } => undecodable(key, DecodeError::BadJson(format!("the key is {reason}"))),
        e => CeleryError::Store(e),
    }
}

fn view_of(key: &str, snap: &StringSnapshot, max_inflated: usize) -> Result<TaskView, CeleryError> {
    Ok(TaskView {
        meta: celery::decode_task(&snap.value, max_inflated).map_err(|e| undecodable(key, e))?,
        ttl: snap.ttl_seconds(),
        etag: etag_of(&snap.value),
    })
}

/// Reads the task `id`; `None` when no key exists (never a made-up PENDING).
pub async fn get(
    store: &Store,
    layout: &Celery,
    id: &TaskId,
    max_inflated: usize,
) -> Result<Option<TaskView>, CeleryError> {
    let key = layout.task_key(id);
    let snap = store.read_string(&key).await.map_err(|e| read_err(&key, e))?;
    snap.map(|s| view_of(&key, &s, max_inflated)).transpose()
}

/// What a write did.
#[derive(Debug)]
pub enum PutOutcome {
    /// There was no record: this is the one written.
    Created(TaskView),
    /// A record was replaced: this is the one written.
    Replaced(TaskView),
    /// A SUCCESS is stored, which is final: nothing was written; this is the stored record.
    Final(TaskView),
}

/// Stores a task's state as Celery's `store_result` does, unless a SUCCESS is stored.
///
/// The write is SETEX with the state's TTL, then PUBLISH on the key; the check and the write
/// are one atomic step (a compare-and-set on the bytes read), where Celery's own check is a
/// separate GET.
pub async fn put(
    store: &Store,
    layout: &Celery,
    id: &TaskId,
    write: &TaskWrite,
    now: DateTime<Utc>,
    max_inflated: usize,
) -> Result<PutOutcome, CeleryError> {
    let key = layout.task_key(id);
    let value = Bytes::from(celery::encode_task(id, write, now));
    let ttl = layout.write_ttl(&write.status);
    let written = || -> Result<TaskView, CeleryError> {
        Ok(TaskView {
            meta: celery::decode_task(&value, max_inflated).map_err(|e| undecodable(&key, e))?,
            ttl: ttl.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            etag: etag_of(&value),
        })
    };
    let mut current = store.read_string(&key).await.map_err(|e| read_err(&key, e))?;
    for _ in 0..MAX_SWAP_ROUNDS {
        if let Some(snap) = &current {
            // An undecodable record is overwritten: it is no state to keep.
            if let Ok(view) = view_of(&key, snap, max_inflated)
                && view.meta.status == "SUCCESS"
            {
                return Ok(PutOutcome::Final(view));
            }
        }
        let expected = current.as_ref().map(|s| &s.value);
        match store.swap_string(&key, expected, &value, ttl, true).await? {
            SwapOutcome::Swapped if current.is_some() => return Ok(PutOutcome::Replaced(written()?)),
            SwapOutcome::Swapped => return Ok(PutOutcome::Created(written()?)),
            SwapOutcome::Changed(now_stored) => {
                current = now_stored.map(|value| StringSnapshot { value, ttl_ms: None });
            }
        }
    }
    Err(CeleryError::Store(StoreError::Contended(key)))
}

/// A group member as read.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's task id as stored in the group.
    pub task_id: String,
    /// Its record, when one exists; `Err` when it cannot be decoded.
    pub record: Option<Result<TaskMeta, DecodeError>>,
}

/// A saved group as read.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// The members, in the group's order.
    pub members: Vec<Member>,
    /// Seconds until the group record expires; `None` when it never does.
    pub ttl: Option<i64>,
    /// Strong ETag over the group record and every member's stored bytes.
    pub etag: String,
}

/// Reads a saved group and its members' records; `None` when no group record exists.
pub async fn get_group(
    store: &Store,
    layout: &Celery,
    group_id: &TaskId,
    max_inflated: usize,
) -> Result<Option<GroupView>, CeleryError> {
    let key = layout.group_key(group_id);
    let Some(snap) = store.read_string(&key).await.map_err(|e| read_err(&key, e))? else {
        return Ok(None);
    };
    let ids = celery::decode_group(&snap.value, max_inflated).map_err(|e| undecodable(&key, e))?;
    // A member id outside the accepted charset cannot be a key resultd reads: it reads as absent.
    let keys: Vec<Option<String>> = ids
        .iter()
        .map(|m| TaskId::parse(m).ok().map(|id| layout.task_key(&id)))
        .collect();
    let wanted: Vec<String> = keys.iter().flatten().cloned().collect();
    let mut stored = store.read_strings(&wanted).await?.into_iter();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&snap.value);
    let mut members = Vec::with_capacity(ids.len());
    for (task_id, key) in ids.into_iter().zip(keys) {
        let value = if key.is_some() { stored.next().flatten() } else { None };
        if let Some(v) = &value {
            hasher.update(&(v.len() as u64).to_le_bytes());
            hasher.update(v);
        } else {
            hasher.update(&u64::MAX.to_le_bytes());
        }
        members.push(Member {
            task_id,
            record: value.map(|v| celery::decode_task(&v, max_inflated)),
        });
    }
    Ok(Some(GroupView {
        members,
        ttl: snap.ttl_seconds(),
        etag: format!("\"{:032x}\"", hasher.digest128()),
    }))
}

/// Saves a group as `GroupResult.save()` does (with SUCCESS's TTL, published); `true` when
/// it was new.
pub async fn put_group(
    store: &Store,
    layout: &Celery,
    group_id: &TaskId,
    members: &[TaskId],
) -> Result<bool, CeleryError> {
    let key = layout.group_key(group_id);
    let value = Bytes::from(celery::encode_group(group_id, members));
    let ttl = layout.write_ttl("SUCCESS");
    let mut current = store.read_string(&key).await.map_err(|e| read_err(&key, e))?;
    for _ in 0..MAX_SWAP_ROUNDS {
        let expected = current.as_ref().map(|s| &s.value);
        match store.swap_string(&key, expected, &value, ttl, true).await? {
            SwapOutcome::Swapped => return Ok(current.is_none()),
            SwapOutcome::Changed(now_stored) => {
                current = now_stored.map(|value| StringSnapshot { value, ttl_ms: None });
            }
        }
    }
    Err(CeleryError::Store(StoreError::Contended(key)))
}
