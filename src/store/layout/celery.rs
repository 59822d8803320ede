//! Celery's Redis result backend (5.x).
//!
//! One kombu-JSON string per task under `{prefix}celery-task-meta-{task_id}`, one per saved
//! group under `{prefix}celery-taskset-meta-{group_id}`. Every write is `MULTI SETEX key ttl value;
//! PUBLISH key value; EXEC`, so a waiter is woken by the message on the key's own channel.
//! Reads never touch the TTL; every write sets it again (`result_expires`, FAILURE
//! `result_failure_expires`; none means no expiry).
//!
//! The prefix is taken literally as written (Celery's own `global_keyprefix` separator rule
//! changed between 5.3 and 5.5). Stored values are decoded as data only: exceptions stay
//! `{exc_type, exc_module, exc_message}` and are never resolved, kombu's `__type__` envelopes
//! pass through, and 5.7's in-band compression marker is inflated under a cap.

use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Layout, Wake};
use crate::store::codec::{format_timestamp, normalize_python_json, parse_timestamp};

/// The longest accepted Celery task or group id.
pub const MAX_ID_LEN: usize = 255;

/// 5.7's in-band marker of a compressed value: magic, content type, NUL, body.
const COMPRESSED_MAGIC: &[u8] = b"\x00celery-compressed\x00";

/// A Celery task or group id: free text in a bounded charset (`A-Z a-z 0-9 - _ . : @ + =`),
/// 1 to [`MAX_ID_LEN`] bytes.
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
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@+=".contains(&b)) {
            return Err("may only hold A-Z a-z 0-9 - _ . : @ + =");
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

/// Celery's layout under one literal key prefix, with its TTL settings.
#[derive(Debug, Clone)]
pub struct Celery {
    prefix: String,
    result_expires: Option<Duration>,
    failure_expires: Option<Duration>,
}

impl Celery {
    /// The layout for `prefix` (e.g. `""` or `"myapp:"`), `result_expires` and
    /// `result_failure_expires` (`None` falls back to `result_expires`).
    pub fn new(prefix: String, result_expires: Option<Duration>, failure_expires: Option<Duration>) -> Self {
        Self {
            prefix,
            result_expires,
            failure_expires: failure_expires.or(result_expires),
        }
    }

    /// The same layout with FAILURE's own TTL (`None`: FAILURE results never expire).
    #[must_use]
    pub fn with_failure_expires(mut self, failure_expires: Option<Duration>) -> Self {
        self.failure_expires = failure_expires;
        self
    }

    /// The literal key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}celery-task-meta-{id}`.
    pub fn task_key(&self, id: &TaskId) -> String {
        format!("{}celery-task-meta-{id}", self.prefix)
    }

    /// `{prefix}celery-taskset-meta-{id}`.
    pub fn group_key(&self, id: &TaskId) -> String {
        format!("{}celery-taskset-meta-{id}", self.prefix)
    }

    /// The TTL a write of `status` sets, as Celery's `_set`: FAILURE its own, every other
    /// state `result_expires`; `None` is a plain `SET` (which also clears an existing TTL).
    pub fn write_ttl(&self, status: &str) -> Option<Duration> {
        if status == "FAILURE" {
            self.failure_expires
        } else {
            self.result_expires
        }
    }
}

impl Layout for Celery {
    fn name(&self) -> &'static str {
        "celery"
    }

    fn wake(&self, key: &str) -> Wake {
        Wake::Channel(key.to_owned())
    }

    fn keyspace_glob(&self) -> Option<&'static str> {
        None
    }

    fn keyspace_classes(&self) -> &'static str {
        ""
    }

    fn read_refreshes_ttl(&self) -> bool {
        false
    }
}

/// resultd's common state of a Celery status.
///
/// `PENDING` (only stored by user code) is PENDING; `STARTED` and custom states such as
/// `PROGRESS` are RUNNING; `RETRY` is SUSPENDED; the ready states keep their names.
pub fn common_state(status: &str) -> &'static str {
    match status {
        "PENDING" | "RECEIVED" => "PENDING",
        "RETRY" => "SUSPENDED",
        "SUCCESS" => "SUCCESS",
        "FAILURE" => "FAILURE",
        "REVOKED" => "REVOKED",
        _ => "RUNNING",
    }
}

/// Whether Celery counts `status` as ready (`READY_STATES`).
pub fn is_ready(status: &str) -> bool {
    matches!(status, "SUCCESS" | "FAILURE" | "REVOKED")
}

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The compression marker names a codec resultd does not inflate.
    #[error("compressed with {0}, which resultd does not inflate (only zlib, Celery's `gzip`)")]
    UnsupportedCodec(String),
    /// The compressed value inflates to more than the cap.
    #[error("inflates to more than {0} bytes")]
    TooLarge(usize),
    /// The compressed body is not a valid stream.
    #[error("compressed body is not a valid zlib stream")]
    BadCompression,
    /// The value is not the JSON object Celery writes.
    #[error("not a Celery JSON record: {0}")]
    BadJson(String),
}

impl DecodeError {
    /// A stable label (for metrics and problem codes).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedCodec(_) => "compressed-unknown-codec",
            Self::TooLarge(_) => "inflated-too-large",
            Self::BadCompression => "bad-compression",
            Self::BadJson(_) => "bad-json",
        }
    }
}

/// Strips 5.7's compression marker and inflates the body (at most `max_inflated` bytes);
/// a value without the marker is returned as it is.
pub fn uncompress(stored: &[u8], max_inflated: usize) -> Result<Vec<u8>, DecodeError> {
    let Some(rest) = stored.strip_prefix(COMPRESSED_MAGIC) else {
        return Ok(stored.to_vec());
    };
    let Some(nul) = rest.iter().position(|&b| b == 0) else {
        return Err(DecodeError::BadCompression);
    };
    let (content_type, body) = (&rest[..nul], &rest[nul + 1..]);
    // Celery's `gzip` and `zlib` are both kombu's zlib codec: an RFC 1950 stream.
    if content_type != b"application/x-gzip" {
        return Err(DecodeError::UnsupportedCodec(
            String::from_utf8_lossy(content_type).into_owned(),
        ));
    }
    let mut out = Vec::new();
    let limit = u64::try_from(max_inflated).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::ZlibDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::BadCompression)?;
    if out.len() > max_inflated {
        return Err(DecodeError::TooLarge(max_inflated));
    }
    Ok(out)
}

/// A decoded Celery task record.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMeta {
    /// The stored status, exactly (`SUCCESS`, `PROGRESS`, …).
    pub status: String,
    /// `result` as stored (an exception stays `{exc_type, exc_module, exc_message}`).
    pub result: Value,
    /// The formatted traceback (FAILURE, RETRY).
    pub traceback: Option<String>,
    /// `children` as stored.
    pub children: Value,
    /// `date_done` in UTC (naive values are UTC, offsets are converted).
    pub date_done: Option<DateTime<Utc>>,
    /// Every other top-level key (`task_id`, `group_id`, `parent_id`, the extended fields, …).
    pub rest: Map<String, Value>,
}

impl TaskMeta {
    /// `date_done` as RFC 3339 UTC with `Z`.
    pub fn date_done_rfc3339(&self) -> Option<String> {
        self.date_done.as_ref().map(format_timestamp)
    }
}

/// Decodes a stored task value (compressed or not) written with the JSON serializer.
pub fn decode_task(stored: &[u8], max_inflated: usize) -> Result<TaskMeta, DecodeError> {
    let raw = uncompress(stored, max_inflated)?;
    let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::BadJson("not UTF-8".to_owned()))?;
    let value: Value =
        serde_json::from_str(&normalize_python_json(text)).map_err(|e| DecodeError::BadJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::BadJson("not an object".to_owned()));
    };
    let Some(Value::String(status)) = map.remove("status") else {
        return Err(DecodeError::BadJson("no string `status`".to_owned()));
    };
    let traceback = match map.remove("traceback") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let date_done = match map.remove("date_done") {
        Some(Value::String(s)) => {
            Some(parse_timestamp(&s).ok_or_else(|| DecodeError::BadJson(format!("`date_done` {s:?} is not a date")))?)
        }
        _ => None,
    };
    Ok(TaskMeta {
        status,
        result: map.remove("result").unwrap_or(Value::Null),
        traceback,
        children: map.remove("children").unwrap_or(Value::Null),
        date_done,
        rest: map,
    })
}

/// The members of a saved group record (`{"result": [[gid, null], [child tuples…]]}`): each
/// child tuple's id, in order. Nested groups count as their own id.
pub fn decode_group(stored: &[u8], max_inflated: usize) -> Result<Vec<String>, DecodeError> {
    let raw = uncompress(stored, max_inflated)?;
    let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::BadJson("not UTF-8".to_owned()))?;
    let value: Value =
        serde_json::from_str(&normalize_python_json(text)).map_err(|e| DecodeError::BadJson(e.to_string()))?;
    let bad =
        || DecodeError::BadJson("not a Celery group record ({\"result\": [[id, parent], [children]]})".to_owned());
    let children = value
        .get("result")
        .and_then(|r| r.get(1))
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    children
        .iter()
        .map(|child| {
            child
                .get(0)
                .and_then(|head| head.get(0))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(bad)
        })
        .collect()
}

/// The group record `GroupResult.save()` writes for `members`, in kombu's JSON dialect.
pub fn encode_group(group_id: &TaskId, members: &[TaskId]) -> String {
    let children: Vec<Value> = members
        .iter()
        .map(|m| {
            Value::Array(vec![
                Value::Array(vec![Value::from(m.as_str()), Value::Null]),
                Value::Null,
            ])
        })
        .collect();
    let record = serde_json::json!({
        "result": [[group_id.as_str(), null], children],
    });
    python_dumps(&record)
}

/// What a non-Python worker stores for a task, in the order Celery writes the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWrite {
    /// The status (`SUCCESS`, `PROGRESS`, …).
    pub status: String,
    /// The result (for FAILURE, RETRY and REVOKED `{exc_type, exc_message, exc_module}`).
    pub result: Value,
    /// The formatted traceback.
    pub traceback: Option<String>,
    /// The children tuples.
    pub children: Value,
    /// The group the task belongs to.
    pub group_id: Option<String>,
    /// The parent task.
    pub parent_id: Option<String>,
    /// `result_extended` fields, in Celery's order (`name`, `args`, `kwargs`, `worker`,
    /// `retries`, `queue`): only the ones given.
    pub extended: Vec<(&'static str, Value)>,
}

/// The `result_extended` fields, in the order Celery writes them.
pub const EXTENDED_FIELDS: [&str; 6] = ["name", "args", "kwargs", "worker", "retries", "queue"];

/// `date_done` as Celery ≥ 5.5 writes it with a UTC app timezone (Python `isoformat`).
pub fn format_date_done(t: &DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// The stored bytes of a task write, as Celery's `_store_result` writes them.
///
/// Keys in Celery's order: `status`, `result`, `traceback`, `children`, `date_done` (ready
/// states only), `group_id`, `parent_id`, the extended fields, `task_id` last.
pub fn encode_task(id: &TaskId, write: &TaskWrite, now: DateTime<Utc>) -> String {
    let mut map = Map::new();
    map.insert("status".to_owned(), Value::from(write.status.as_str()));
    map.insert("result".to_owned(), write.result.clone());
    map.insert(
        "traceback".to_owned(),
        write.traceback.as_deref().map_or(Value::Null, Value::from),
    );
    map.insert("children".to_owned(), write.children.clone());
    let date_done = is_ready(&write.status).then(|| format_date_done(&now));
    map.insert("date_done".to_owned(), date_done.map_or(Value::Null, Value::from));
    if let Some(g) = &write.group_id {
        map.insert("group_id".to_owned(), Value::from(g.as_str()));
    }
    if let Some(p) = &write.parent_id {
        map.insert("parent_id".to_owned(), Value::from(p.as_str()));
    }
    for (name, value) in &write.extended {
        map.insert((*name).to_owned(), value.clone());
    }
    map.insert("task_id".to_owned(), Value::from(id.as_str()));
    python_dumps(&Value::Object(map))
}

/// JSON as Python's `json.dumps` writes it by default (kombu's dialect): `", "` and `": "`
/// separators, non-ASCII escaped (`ensure_ascii`), floats as Python's `repr`.
pub fn python_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_python(&mut out, v);
    out
}

fn write_python(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => out.push_str(&python_float(f)),
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_python_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_str(out, k);
                out.push_str(": ");
                write_python(out, item);
            }
            out.push('}');
        }
    }
}

fn write_python_str(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr`: shortest round-trip digits, fixed notation for exponents from
/// -4 to 15, else `1e+16` / `1.5e-07`.
fn python_float(f: f64) -> String {
    if !f.is_finite() {
        // Only reachable from JSON input, which has no NaN or infinities.
        return "null".to_owned();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let fixed = format!("{f}");
        if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const SUCCESS: &str = r#"{"status": "SUCCESS", "result": 4, "traceback": null, "children": [], "date_done": "2026-11-23T10:00:00.123456+00:00", "task_id": "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e"}"#;

    #[test]
    fn celery_layout_keys_and_ttls() {
        let c = Celery::new(String::new(), Some(Duration::from_secs(86_400)), None);
        let id = TaskId::parse("d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e").unwrap();
        assert_eq!(c.task_key(&id), "celery-task-meta-d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e");
        assert_eq!(
            c.group_key(&id),
            "celery-taskset-meta-d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e"
        );
        assert_eq!(c.write_ttl("FAILURE"), Some(Duration::from_secs(86_400)));
        let c = Celery::new(
            "app_".to_owned(),
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(600)),
        );
        assert_eq!(
            c.task_key(&id),
            "app_celery-task-meta-d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e"
        );
        assert_eq!(c.write_ttl("FAILURE"), Some(Duration::from_secs(600)));
        assert_eq!(c.write_ttl("SUCCESS"), Some(Duration::from_secs(60)));
    }

    #[test]
    fn celery_task_ids_are_bounded_free_text() {
        assert!(TaskId::parse("task-123").is_ok());
        assert!(TaskId::parse("a.b:c@d+e=f_g").is_ok());
        assert!(TaskId::parse("").is_err());
        assert!(TaskId::parse("has space").is_err());
        assert!(TaskId::parse("star*").is_err());
        assert!(TaskId::parse(&"x".repeat(256)).is_err());
        assert!(TaskId::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn celery_states_map_to_common_states() {
        for (native, common) in [
            ("PENDING", "PENDING"),
            ("STARTED", "RUNNING"),
            ("PROGRESS", "RUNNING"),
            ("RETRY", "SUSPENDED"),
            ("SUCCESS", "SUCCESS"),
            ("FAILURE", "FAILURE"),
            ("REVOKED", "REVOKED"),
        ] {
            assert_eq!(common_state(native), common, "{native}");
        }
        assert!(is_ready("REVOKED") && !is_ready("RETRY"));
    }

    #[test]
    fn celery_record_decodes_with_date_done_in_utc() {
        let m = decode_task(SUCCESS.as_bytes(), 1 << 20).unwrap();
        assert_eq!(m.status, "SUCCESS");
        assert_eq!(m.result, Value::from(4));
        assert_eq!(m.date_done_rfc3339().as_deref(), Some("2026-11-23T10:00:00.123456Z"));
        assert_eq!(m.rest["task_id"], "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e");
        for (stored, utc) in [
            ("2023-05-19T08:19:16.866296", "2023-05-19T08:19:16.866296Z"),
            ("2026-11-23T11:00:00+01:00", "2026-11-23T10:00:00Z"),
        ] {
            let v = format!(r#"{{"status": "SUCCESS", "result": null, "date_done": "{stored}"}}"#);
            assert_eq!(
                decode_task(v.as_bytes(), 1024).unwrap().date_done_rfc3339().as_deref(),
                Some(utc)
            );
        }
    }

    #[test]
    fn celery_exceptions_and_envelopes_stay_data() {
        let v = r#"{"status": "FAILURE", "result": {"exc_type": "system", "exc_message": ["rm -rf /"], "exc_module": "os"}, "traceback": "Traceback\n", "children": [], "date_done": "2026-11-23T10:00:00+00:00", "when": {"__type__": "nosuch", "__value__": 1}, "x": NaN}"#;
        let m = decode_task(v.as_bytes(), 1 << 20).unwrap();
        assert_eq!(m.result["exc_module"], "os");
        assert_eq!(m.result["exc_message"][0], "rm -rf /");
        assert_eq!(m.traceback.as_deref(), Some("Traceback\n"));
        assert_eq!(m.rest["when"]["__type__"], "nosuch");
        assert_eq!(m.rest["x"], Value::Null);
    }

    #[test]
    fn celery_compressed_values_inflate_under_a_cap() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(SUCCESS.as_bytes()).unwrap();
        let body = z.finish().unwrap();
        assert_eq!(&body[..2], b"\x78\x9c");
        let mut stored = b"\x00celery-compressed\x00application/x-gzip\x00".to_vec();
        stored.extend_from_slice(&body);
        assert_eq!(decode_task(&stored, 1 << 20).unwrap().status, "SUCCESS");
        assert_eq!(decode_task(&stored, 10).unwrap_err(), DecodeError::TooLarge(10));
        let mut bz = b"\x00celery-compressed\x00application/x-bz2\x00".to_vec();
        bz.extend_from_slice(b"BZh9");
        assert_eq!(
            decode_task(&bz, 1 << 20).unwrap_err().reason(),
            "compressed-unknown-codec"
        );
        assert_eq!(decode_task(b"\x80\x04pickle", 1024).unwrap_err().reason(), "bad-json");
    }

    #[test]
    fn celery_writes_are_kombu_json_in_celerys_key_order() {
        let id = TaskId::parse("d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let write = TaskWrite {
            status: "SUCCESS".to_owned(),
            result: Value::from(4),
            traceback: None,
            children: Value::Array(vec![]),
            group_id: None,
            parent_id: None,
            extended: vec![],
        };
        assert_eq!(encode_task(&id, &write, now), SUCCESS);
        let write = TaskWrite {
            status: "PROGRESS".to_owned(),
            result: serde_json::json!({"done": 1.0, "of": 1e16, "tiny": 1.5e-7, "name": "Zürich ✓ 😀"}),
            group_id: Some("g".to_owned()),
            extended: vec![("name", Value::from("tasks.add")), ("args", serde_json::json!([2, 2]))],
            ..write
        };
        assert_eq!(
            encode_task(&id, &write, now),
            r#"{"status": "PROGRESS", "result": {"done": 1.0, "of": 1e+16, "tiny": 1.5e-07, "name": "Z\u00fcrich \u2713 \ud83d\ude00"}, "traceback": null, "children": [], "date_done": null, "group_id": "g", "name": "tasks.add", "args": [2, 2], "task_id": "d9b1f3a4-3c1e-4a65-9f0e-1f2a3b4c5d6e"}"#
        );
        let whole = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_date_done(&whole), "2026-11-23T10:00:00+00:00");
    }

    #[test]
    fn celery_group_records_round_trip() {
        let g = TaskId::parse("0f0e0d0c-0000-4000-8000-00000000000a").unwrap();
        let members = [TaskId::parse("t1").unwrap(), TaskId::parse("t2").unwrap()];
        let stored = encode_group(&g, &members);
        assert_eq!(
            stored,
            r#"{"result": [["0f0e0d0c-0000-4000-8000-00000000000a", null], [[["t1", null], null], [["t2", null], null]]]}"#
        );
        assert_eq!(decode_group(stored.as_bytes(), 1 << 20).unwrap(), ["t1", "t2"]);
        assert!(decode_group(b"[1, \"t\", \"SUCCESS\", 4]", 1 << 20).is_err());
    }
}
