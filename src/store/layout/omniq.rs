//! OmniQ's Redis storage, **experimental**: the layout of `legout/omniQ@acdec6d`.
//!
//! That revision (branch `kilo`) is the one whose Redis storage this follows. OmniQ has no
//! release and has changed its storage twice; another revision may write other keys.
//!
//! - results: `{results_prefix}:result:{task_id}`, msgspec JSON of `TaskResult`, set with
//!   `SETEX` only when the result carries a `ttl` (worker results never do: no TTL);
//! - tasks: `{tasks_prefix}:task:{task_id}`, msgspec JSON of `Task`, no TTL;
//! - events: `{events_prefix}:event:{event_id}` (msgspec JSON of `TaskEvent`) indexed by the ZSET
//!   `{events_prefix}:events` (score: a naive UTC time read as local time; only the `timestamp`
//!   field is reliable).
//!
//! Writers use single plain commands, never publish: waiters are woken by keyspace `set` events
//! (class `$`). msgspec writes compact JSON in raw UTF-8, naive UTC datetimes and ISO 8601
//! durations; statuses are lowercase.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{KeyspaceWatch, Layout, Wake};
use crate::store::codec::{format_timestamp, parse_timestamp};

/// The longest accepted OmniQ task id.
pub const MAX_ID_LEN: usize = 255;

/// An OmniQ task id: free text in `A-Z a-z 0-9 _ . : -`, 1 to [`MAX_ID_LEN`] bytes. Ids with
/// `:` are served, though OmniQ's own listing splits them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId(String);

impl TaskId {
    /// Parses an id, refusing empty, overlong ids and characters outside the charset.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("is empty");
        }
        if s.len() > MAX_ID_LEN {
            return Err("is longer than 255 bytes");
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)) {
            return Err("may only hold A-Z a-z 0-9 _ . : -");
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// OmniQ's layout under its three prefixes.
#[derive(Debug, Clone)]
pub struct OmniQ {
    results_prefix: String,
    tasks_prefix: String,
    events_prefix: String,
}

impl OmniQ {
    /// The layout for the configured prefixes (defaults `omniq:results`, `omniq:tasks`,
    /// `omniq:events`).
    pub fn new(results_prefix: String, tasks_prefix: String, events_prefix: String) -> Self {
        Self {
            results_prefix,
            tasks_prefix,
            events_prefix,
        }
    }

    /// `{results_prefix}:result:{id}`.
    pub fn result_key(&self, id: &TaskId) -> String {
        format!("{}:result:{id}", self.results_prefix)
    }

    /// `{tasks_prefix}:task:{id}`.
    pub fn task_key(&self, id: &TaskId) -> String {
        format!("{}:task:{id}", self.tasks_prefix)
    }

    /// `{events_prefix}:events`, the ZSET of event ids.
    pub fn events_index_key(&self) -> String {
        format!("{}:events", self.events_prefix)
    }

    /// `{events_prefix}:event:{event_id}`.
    pub fn event_key(&self, event_id: &str) -> String {
        format!("{}:event:{event_id}", self.events_prefix)
    }

    /// The keyspace subscriptions that wake waiters: result and task keys, `set`, `del`, expiry.
    pub fn keyspace_watches(&self) -> Vec<KeyspaceWatch> {
        vec![
            KeyspaceWatch {
                glob: format!("{}:result:*", self.results_prefix),
                classes: self.keyspace_classes(),
            },
            KeyspaceWatch {
                glob: format!("{}:task:*", self.tasks_prefix),
                classes: self.keyspace_classes(),
            },
        ]
    }
}

impl Layout for OmniQ {
    fn name(&self) -> &'static str {
        "omniq"
    }

    fn wake(&self, _key: &str) -> Wake {
        Wake::Keyspace
    }

    fn keyspace_glob(&self) -> Option<&'static str> {
        // Configurable prefixes: see `keyspace_watches`.
        None
    }

    fn keyspace_classes(&self) -> &'static str {
        "$gx"
    }

    fn read_refreshes_ttl(&self) -> bool {
        false
    }
}

/// resultd's common state of an OmniQ result status (`ResultStatus`).
pub fn result_state(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" => "PENDING",
        "success" => "SUCCESS",
        "error" => "FAILURE",
        "cancelled" | "expired" => "REVOKED",
        _ => return None,
    })
}

/// resultd's common state of an OmniQ task status (`TaskStatus`), for a task with no result
/// yet: `completed` and `failed` still wait for their result, which the worker stores after.
pub fn task_state(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" => "PENDING",
        "running" | "completed" | "failed" => "RUNNING",
        "cancelled" | "expired" => "REVOKED",
        _ => return None,
    })
}

/// Why a stored OmniQ value could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not the JSON object msgspec writes for the model.
    #[error("not an OmniQ {model} record: {reason}")]
    Bad {
        /// `TaskResult`, `Task` or `TaskEvent`.
        model: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl DecodeError {
    /// A stable label (for metrics and problem details).
    pub fn reason(&self) -> &'static str {
        "bad-json"
    }
}

fn bad(model: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Bad {
        model,
        reason: reason.into(),
    }
}

/// Parses an ISO 8601 duration as msgspec writes a `timedelta` (`P1D`, `PT90.000005S`, `-P1D`,
/// `P1DT2H3M4S`) into seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let rest = rest.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    if date.is_empty() && time.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut read = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let (_, factor) = allowed.by_ref().find(|(u, _)| *u == c)?;
            let n: f64 = number.parse().ok()?;
            total += n * factor;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    read(date, &[('W', 604_800.0), ('D', 86_400.0)])?;
    read(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    Some(if negative { -total } else { total })
}

fn text(map: &mut Map<String, Value>, field: &str) -> Option<String> {
    match map.remove(field) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn time(model: &'static str, map: &mut Map<String, Value>, field: &str) -> Result<Option<String>, DecodeError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(&s)
            .map(|t| Some(format_timestamp(&t)))
            .ok_or_else(|| bad(model, format!("`{field}` {s:?} is not a datetime"))),
        Some(other) => Err(bad(model, format!("`{field}` is {other}, not a datetime"))),
    }
}

fn duration(model: &'static str, map: &mut Map<String, Value>, field: &str) -> Result<Option<f64>, DecodeError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(&s)
            .map(Some)
            .ok_or_else(|| bad(model, format!("`{field}` {s:?} is not an ISO 8601 duration"))),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(bad(model, format!("`{field}` is {other}, not a duration"))),
    }
}

fn object(model: &'static str, stored: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(stored) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad(model, "not a JSON object")),
        Err(e) => Err(bad(model, e.to_string())),
    }
}

/// A decoded `TaskResult`, datetimes in RFC 3339 UTC and durations in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultMeta {
    /// The stored status, lowercase (`success`, `error`, …).
    pub status: String,
    /// The result value.
    pub result: Value,
    /// `str(exc)` of a failure.
    pub error: Option<String>,
    /// `type(exc).__name__` of a failure.
    pub error_type: Option<String>,
    /// The traceback of a failure.
    pub traceback: Option<String>,
    /// When the result was created.
    pub created_at: Option<String>,
    /// When the task started.
    pub started_at: Option<String>,
    /// When the task completed.
    pub completed_at: Option<String>,
    /// The result's own `ttl`, in seconds.
    pub ttl: Option<f64>,
    /// `created_at + ttl`.
    pub expires_at: Option<String>,
    /// The worker's id.
    pub worker_id: Option<String>,
    /// Seconds the task ran.
    pub execution_time: Option<f64>,
    /// Memory the task used.
    pub memory_usage: Value,
    /// `metadata` as stored.
    pub metadata: Value,
    /// Fields of other revisions, kept.
    pub rest: Map<String, Value>,
}

/// Decodes a stored `TaskResult`.
pub fn decode_result(stored: &[u8]) -> Result<ResultMeta, DecodeError> {
    const MODEL: &str = "TaskResult";
    let mut map = object(MODEL, stored)?;
    let Some(status) = text(&mut map, "status") else {
        return Err(bad(MODEL, "no string `status`"));
    };
    map.remove("task_id");
    Ok(ResultMeta {
        result: map.remove("result").unwrap_or(Value::Null),
        error: text(&mut map, "error"),
        error_type: text(&mut map, "error_type"),
        traceback: text(&mut map, "traceback"),
        created_at: time(MODEL, &mut map, "created_at")?,
        started_at: time(MODEL, &mut map, "started_at")?,
        completed_at: time(MODEL, &mut map, "completed_at")?,
        ttl: duration(MODEL, &mut map, "ttl")?,
        expires_at: time(MODEL, &mut map, "expires_at")?,
        worker_id: text(&mut map, "worker_id"),
        execution_time: map.remove("execution_time").and_then(|v| v.as_f64()),
        memory_usage: map.remove("memory_usage").unwrap_or(Value::Null),
        metadata: map.remove("metadata").unwrap_or(Value::Null),
        status,
        rest: map,
    })
}

/// Decodes a stored `Task` into JSON with datetimes in RFC 3339 UTC and durations in seconds
/// (`ttl`, `retry_delay`); every other field as stored.
pub fn decode_task(stored: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    const MODEL: &str = "Task";
    let mut map = object(MODEL, stored)?;
    if !map.get("status").is_some_and(Value::is_string) {
        return Err(bad(MODEL, "no string `status`"));
    }
    for field in ["created_at", "run_at", "expires_at"] {
        let t = time(MODEL, &mut map, field)?;
        map.insert(field.to_owned(), t.map_or(Value::Null, Value::from));
    }
    for field in ["ttl", "retry_delay"] {
        let d = duration(MODEL, &mut map, field)?;
        map.insert(field.to_owned(), d.map_or(Value::Null, Value::from));
    }
    Ok(map)
}

/// A decoded `TaskEvent` and its `timestamp`.
pub type Event = (Map<String, Value>, Option<DateTime<Utc>>);

/// Decodes a stored `TaskEvent`, its `timestamp` (the reliable time) in RFC 3339 UTC.
pub fn decode_event(stored: &[u8]) -> Result<Event, DecodeError> {
    const MODEL: &str = "TaskEvent";
    let mut map = object(MODEL, stored)?;
    let timestamp = match map.get("timestamp") {
        Some(Value::String(s)) => {
            Some(parse_timestamp(s).ok_or_else(|| bad(MODEL, format!("`timestamp` {s:?} is not a datetime")))?)
        }
        _ => None,
    };
    map.insert(
        "timestamp".to_owned(),
        timestamp
            .as_ref()
            .map_or(Value::Null, |t| Value::from(format_timestamp(t))),
    );
    if let Some(d) = duration(MODEL, &mut map, "execution_time").ok().flatten() {
        map.insert("execution_time".to_owned(), Value::from(d));
    }
    Ok((map, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{"task_id":"task-123","status":"success","result":{"output":"Hello, World!"},"error":null,"error_type":null,"traceback":null,"created_at":"2025-07-15T10:00:00.123456","started_at":"2025-07-15T10:00:00","completed_at":"2025-07-15T10:00:01.500000","ttl":"P1D","expires_at":"2025-07-16T10:00:00.123456","worker_id":"worker-001","execution_time":1.5,"memory_usage":null,"metadata":{}}"#;

    #[test]
    fn omniq_keys_follow_the_configured_prefixes() {
        let o = OmniQ::new("omniq:results".into(), "omniq:tasks".into(), "omniq:events".into());
        let id = TaskId::parse("a:b").unwrap();
        assert_eq!(o.result_key(&id), "omniq:results:result:a:b");
        assert_eq!(o.task_key(&id), "omniq:tasks:task:a:b");
        assert_eq!(o.events_index_key(), "omniq:events:events");
        assert_eq!(o.event_key("e1"), "omniq:events:event:e1");
        assert_eq!(o.keyspace_watches()[0].glob, "omniq:results:result:*");
        assert!(TaskId::parse("has space").is_err() && TaskId::parse("").is_err());
    }

    #[test]
    fn omniq_results_decode_with_utc_times_and_durations() {
        let r = decode_result(SUCCESS.as_bytes()).unwrap();
        assert_eq!(r.status, "success");
        assert_eq!(r.result["output"], "Hello, World!");
        assert_eq!(r.created_at.as_deref(), Some("2025-07-15T10:00:00.123456Z"));
        assert_eq!(r.started_at.as_deref(), Some("2025-07-15T10:00:00Z"));
        assert_eq!(r.ttl, Some(86_400.0));
        assert_eq!(r.execution_time, Some(1.5));
        assert!(decode_result(b"{\"status\":1}").is_err());
        assert!(decode_result(b"[]").is_err());
    }

    #[test]
    fn iso_durations_parse_as_msgspec_writes_them() {
        for (text, secs) in [
            ("P1D", 86_400.0),
            ("P7D", 604_800.0),
            ("PT90.000005S", 90.000_005),
            ("-P1D", -86_400.0),
            ("P1DT2H3M4S", 93_784.0),
            ("PT0S", 0.0),
        ] {
            assert_eq!(parse_duration(text), Some(secs), "{text}");
        }
        for bad in ["", "P", "1D", "PT", "P1X", "PT1D"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn omniq_statuses_map_to_common_states() {
        assert_eq!(result_state("error"), Some("FAILURE"));
        assert_eq!(result_state("expired"), Some("REVOKED"));
        assert_eq!(task_state("running"), Some("RUNNING"));
        assert_eq!(task_state("completed"), Some("RUNNING"));
        assert_eq!(result_state("weird"), None);
    }
}
