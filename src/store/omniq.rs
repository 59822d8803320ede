//! OmniQ results, tasks and events over the store's primitives (experimental layout).

use serde_json::{Map, Value};

use super::layout::omniq::{self, DecodeError, OmniQ, ResultMeta, TaskId};
use super::{ResultStore, Store, StoreError};

/// Most event ids one events request examines (the index has no per-task lookup).
pub const MAX_EVENTS_SCANNED: usize = 1000;

/// Why an OmniQ call failed.
#[derive(Debug, thiserror::Error)]
pub enum OmniqError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value is not an OmniQ record resultd can read.
    #[error("{key} cannot be decoded: {error}")]
    Undecodable {
        /// The key.
        key: String,
        /// What is wrong.
        error: DecodeError,
    },
}

fn undecodable(key: &str, error: DecodeError) -> OmniqError {
    OmniqError::Undecodable {
        key: key.to_owned(),
        error,
    }
}

fn read_err(key: &str, e: StoreError) -> OmniqError {
    match e {
        StoreError::Corrupt { reason, .. } => undecodable(
            key,
            DecodeError::Bad {
                model: "string",
                reason: format!("the key is {reason}"),
            },
        ),
        e => OmniqError::Store(e),
    }
}

/// Where a task stands, from its result or, before there is one, from its task record.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// The native status (`success`, `error`, … of the result; `running`, … of the task).
    pub status: String,
    /// resultd's common state.
    pub state: &'static str,
    /// Whether the state is final.
    pub done: bool,
    /// The decoded result, when one is stored.
    pub result: Option<ResultMeta>,
    /// Seconds until the result key expires; `None` when it never does or there is no result.
    pub ttl: Option<i64>,
    /// Strong ETag over the stored result and task bytes.
    pub etag: String,
}

/// Reads a task's result, falling back to its task record; `None` when neither exists.
pub async fn get(store: &Store, layout: &OmniQ, id: &TaskId) -> Result<Option<TaskView>, OmniqError> {
    let (result_key, task_key) = (layout.result_key(id), layout.task_key(id));
    let (result, task) = tokio::join!(store.read_string(&result_key), store.read_string(&task_key));
    let result = result.map_err(|e| read_err(&result_key, e))?;
    let task = task.map_err(|e| read_err(&task_key, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in [&result, &task] {
        match part {
            Some(s) => {
                hasher.update(&(s.value.len() as u64).to_le_bytes());
                hasher.update(&s.value);
            }
            None => hasher.update(&u64::MAX.to_le_bytes()),
        }
    }
    let etag = format!("\"{:032x}\"", hasher.digest128());
    if let Some(snap) = result {
        let meta = omniq::decode_result(&snap.value).map_err(|e| undecodable(&result_key, e))?;
        let state = omniq::result_state(&meta.status).ok_or_else(|| {
            undecodable(
                &result_key,
                DecodeError::Bad {
                    model: "TaskResult",
                    reason: format!("unknown status {:?}", meta.status),
                },
            )
        })?;
        return Ok(Some(TaskView {
            status: meta.status.clone(),
            state,
            done: state != "PENDING",
            result: Some(meta),
            ttl: snap.ttl_seconds(),
            etag,
        }));
    }
    let Some(snap) = task else { return Ok(None) };
    let record = omniq::decode_task(&snap.value).map_err(|e| undecodable(&task_key, e))?;
    let status = record
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let state = omniq::task_state(&status).ok_or_else(|| {
        undecodable(
            &task_key,
            DecodeError::Bad {
                model: "Task",
                reason: format!("unknown status {status:?}"),
            },
        )
    })?;
    Ok(Some(TaskView {
        status,
        state,
        done: state == "REVOKED",
        result: None,
        ttl: None,
        etag,
    }))
}

/// A task record as read: decoded JSON and the key's TTL.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// The record, datetimes in UTC and durations in seconds.
    pub record: Map<String, Value>,
    /// Seconds until the key expires; `None` when it never does.
    pub ttl: Option<i64>,
    /// Strong ETag over the stored bytes.
    pub etag: String,
}

/// Reads a task record; `None` when there is none.
pub async fn get_task(store: &Store, layout: &OmniQ, id: &TaskId) -> Result<Option<TaskRecord>, OmniqError> {
    let key = layout.task_key(id);
    let Some(snap) = store.read_string(&key).await.map_err(|e| read_err(&key, e))? else {
        return Ok(None);
    };
    Ok(Some(TaskRecord {
        record: omniq::decode_task(&snap.value).map_err(|e| undecodable(&key, e))?,
        ttl: snap.ttl_seconds(),
        etag: format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&snap.value)),
    }))
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events found, in index order.
    pub events: Vec<Map<String, Value>>,
    /// The index position to continue from; `None` when the index is exhausted.
    pub next: Option<usize>,
    /// How many index entries this page examined.
    pub scanned: usize,
}

/// Walks the event index from position `from`, keeping events of `task_id` (all when `None`).
///
/// It stops when `limit` are found or [`MAX_EVENTS_SCANNED`] entries were examined. Events
/// whose record is gone or unreadable are skipped.
pub async fn events(
    store: &Store,
    layout: &OmniQ,
    task_id: Option<&TaskId>,
    from: usize,
    limit: usize,
) -> Result<EventPage, OmniqError> {
    const BATCH: usize = 100;
    let index = layout.events_index_key();
    let mut page = EventPage {
        events: Vec::new(),
        next: None,
        scanned: 0,
    };
    let mut position = from;
    while page.events.len() < limit && page.scanned < MAX_EVENTS_SCANNED {
        let want = BATCH.min(MAX_EVENTS_SCANNED - page.scanned);
        let ids = store.read_sorted(&index, position, want).await?;
        if ids.is_empty() {
            return Ok(page);
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| layout.event_key(&String::from_utf8_lossy(id)))
            .collect();
        let stored = store.read_strings(&keys).await?;
        let fetched = ids.len();
        for (offset, value) in stored.into_iter().enumerate() {
            page.scanned += 1;
            position += 1;
            let Some(value) = value else { continue };
            let Ok((event, _)) = omniq::decode_event(&value) else {
                tracing::debug!(key = %keys[offset], "an unreadable OmniQ event is skipped");
                continue;
            };
            if task_id.is_none_or(|t| event.get("task_id").and_then(Value::as_str) == Some(t.as_str())) {
                page.events.push(event);
                if page.events.len() == limit {
                    page.next = Some(position);
                    return Ok(page);
                }
            }
        }
        if fetched < want {
            return Ok(page);
        }
    }
    page.next = Some(position);
    Ok(page)
}
