//! The bytes shared with Python: JSON cells, the result hash, the value hash, ETags.
//!
//! Every hash field mognet writes is a complete JSON document. Python's stdlib `json` writes
//! `NaN`/`Infinity` tokens and lone surrogate escapes that strict JSON parsers refuse, so every
//! cell read goes through [`normalize_python_json`] first: the non-standard tokens become `null`
//! and lone surrogates become U+FFFD. Big integers survive because cells are kept as raw JSON.
//! Writing always uses strict JSON and mognet's own canonical forms.

use std::borrow::Cow;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::{ResultId, ResultRecord, ResultState};

/// The 11 result-hash fields, in mognet's HSET order.
pub const RESULT_FIELDS: [&str; 11] = [
    "id",
    "name",
    "state",
    "number_of_starts",
    "number_of_stops",
    "parent_id",
    "created",
    "started",
    "finished",
    "node_id",
    "request_kwargs_repr",
];

/// `encoding` cell of a gzip value.
pub const ENCODING_GZIP: &[u8] = b"\"gzip\"";
/// `encoding` cell of a plain value.
pub const ENCODING_NONE: &[u8] = b"null";
/// The only `content_type` cell mognet accepts.
pub const CONTENT_TYPE_JSON: &[u8] = b"\"application/json\"";

/// A hash's contents as field/value pairs.
pub type Fields = Vec<(String, Bytes)>;

/// A stored hash that cannot be read as what its key says it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt field {field:?}: {reason}")]
pub struct CorruptField {
    /// The field.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn corrupt(field: &str, reason: impl Into<String>) -> CorruptField {
    CorruptField {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Rewrites Python-only JSON into strict JSON: `NaN`, `Infinity`, `-Infinity` → `null`,
/// lone surrogate escapes → `\ufffd`. Strict input is returned as it is.
pub fn normalize_python_json(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let suspicious = bytes.iter().any(|&b| b == b'N' || b == b'I' || b == b'\\');
    if !suspicious {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'\\' && i + 1 < bytes.len() {
                // Foreign bytes may put any character after the backslash, `\é` included: every
                // slice below is checked, so an invalid escape is left for the JSON parser to refuse.
                let unit = text
                    .get(i + 2..i + 6)
                    .filter(|_| bytes[i + 1] == b'u')
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                if let Some(unit) = unit {
                    if (0xD800..0xDC00).contains(&unit) {
                        // A high surrogate must be followed by an escaped low surrogate.
                        let low = text
                            .get(i + 6..i + 12)
                            .filter(|s| s.starts_with("\\u"))
                            .and_then(|s| u16::from_str_radix(&s[2..], 16).ok())
                            .filter(|u| (0xDC00..0xE000).contains(u));
                        if low.is_some() {
                            out.push_str(&text[i..i + 12]);
                            i += 12;
                        } else {
                            out.push_str("\\ufffd");
                            changed = true;
                            i += 6;
                        }
                        continue;
                    }
                    if (0xDC00..0xE000).contains(&unit) {
                        out.push_str("\\ufffd");
                        changed = true;
                        i += 6;
                        continue;
                    }
                }
                // The backslash and the whole character it escapes.
                let end = (i + 1 + utf8_len(bytes[i + 1])).min(bytes.len());
                out.push_str(text.get(i..end).unwrap_or("\\"));
                i = end;
                continue;
            }
            if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if text[i..].starts_with("NaN") {
            out.push_str("null");
            changed = true;
            i += 3;
            continue;
        } else if text[i..].starts_with("-Infinity") {
            out.push_str("null");
            changed = true;
            i += 9;
            continue;
        } else if text[i..].starts_with("Infinity") {
            out.push_str("null");
            changed = true;
            i += 8;
            continue;
        }
        // Copy one whole UTF-8 character.
        let len = utf8_len(b);
        out.push_str(&text[i..(i + len).min(bytes.len())]);
        i += len;
    }
    if changed { Cow::Owned(out) } else { Cow::Borrowed(text) }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Removes the insignificant whitespace of JSON text that is already known to be valid, keeping
/// every token (numbers, escapes, member order) exactly as written.
pub fn compact_json(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut start) = (false, false, 0);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            // ASCII whitespace is one byte, so `i` and `i + 1` are character boundaries.
            out.push_str(&text[start..i]);
            start = i + 1;
        }
    }
    out.push_str(&text[start..]);
    Cow::Owned(out)
}

/// Reads one JSON cell as raw JSON, accepting Python's dialect.
pub fn read_cell(field: &str, bytes: &[u8]) -> Result<Box<RawValue>, CorruptField> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(field, "not UTF-8"))?;
    let text = normalize_python_json(text);
    let raw: Box<RawValue> = serde_json::from_str(&text).map_err(|e| corrupt(field, format!("not JSON: {e}")))?;
    Ok(raw)
}

fn read_value(field: &str, bytes: &[u8]) -> Result<Value, CorruptField> {
    // The canonical cells (null, plain strings, small integers) need no JSON parser.
    match bytes {
        b"null" => return Ok(Value::Null),
        [b'"', inner @ .., b'"'] if inner.iter().all(|&b| b >= 0x20 && b != b'\\' && b != b'"') => {
            if let Ok(s) = std::str::from_utf8(inner) {
                return Ok(Value::String(s.to_owned()));
            }
        }
        [b'0'..=b'9', ..] if bytes.len() <= 18 && bytes.iter().all(u8::is_ascii_digit) => {
            if let Some(n) = std::str::from_utf8(bytes).ok().and_then(|t| t.parse::<i64>().ok()) {
                return Ok(Value::from(n));
            }
        }
        _ => {}
    }
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(field, "not UTF-8"))?;
    serde_json::from_str(&normalize_python_json(text)).map_err(|e| corrupt(field, format!("not JSON: {e}")))
}

fn opt_string(field: &str, v: Value) -> Result<Option<String>, CorruptField> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(corrupt(field, "expected a string")),
    }
}

fn integer(field: &str, v: &Value) -> Result<i64, CorruptField> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| corrupt(field, "expected an integer")),
        Value::String(s) => s.trim().parse().map_err(|_| corrupt(field, "expected an integer")),
        Value::Null => Ok(0),
        _ => Err(corrupt(field, "expected an integer")),
    }
}

fn opt_uuid(field: &str, v: Value) -> Result<Option<ResultId>, CorruptField> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let t = s.trim();
            let t = t.strip_prefix("urn:uuid:").unwrap_or(t);
            let t = t.trim_start_matches('{').trim_end_matches('}');
            uuid::Uuid::try_parse(t)
                .map(|u| Some(ResultId::from_uuid(u)))
                .map_err(|_| corrupt(field, "expected a UUID"))
        }
        _ => Err(corrupt(field, "expected a UUID")),
    }
}

/// Parses a timestamp as pydantic does: RFC 3339 with `Z` or an offset, a space for `T`,
/// naive (taken as UTC), or unix seconds.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let spaced = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&spaced) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&spaced, fmt) {
            return Some(t.and_utc());
        }
    }
    s.parse::<f64>().ok().and_then(from_unix_seconds)
}

fn from_unix_seconds(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let micros = ((secs - whole) * 1e6).round() as u32;
    DateTime::from_timestamp(whole as i64, micros * 1000)
}

fn opt_timestamp(field: &str, v: Value) -> Result<Option<DateTime<Utc>>, CorruptField> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => parse_timestamp(&s)
            .map(Some)
            .ok_or_else(|| corrupt(field, "expected a timestamp")),
        Value::Number(n) => n
            .as_f64()
            .and_then(from_unix_seconds)
            .map(Some)
            .ok_or_else(|| corrupt(field, "expected a timestamp")),
        _ => Err(corrupt(field, "expected a timestamp")),
    }
}

/// Formats a timestamp as mognet writes it: `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, microseconds,
/// the fraction left out when it is zero.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

/// Truncates a timestamp to the microseconds mognet keeps.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Decodes a result hash. A missing `state` reads as PENDING and a missing `id` as the key's id,
/// as mognet's reader does with `get_or_create` placeholders.
pub fn decode_record(id: ResultId, fields: &[(String, Bytes)]) -> Result<ResultRecord, CorruptField> {
    let mut record = ResultRecord {
        created: None,
        ..ResultRecord::pending(id, Utc::now())
    };
    for (name, bytes) in fields {
        match name.as_str() {
            "name" => record.name = opt_string(name, read_value(name, bytes)?)?,
            "state" => {
                record.state = match read_value(name, bytes)? {
                    Value::String(s) => {
                        ResultState::from_name(&s).ok_or_else(|| corrupt(name, format!("unknown state {s:?}")))?
                    }
                    Value::Null => ResultState::Pending,
                    _ => return Err(corrupt(name, "expected a state name")),
                }
            }
            "number_of_starts" => record.number_of_starts = integer(name, &read_value(name, bytes)?)?,
            "number_of_stops" => record.number_of_stops = integer(name, &read_value(name, bytes)?)?,
            "parent_id" => record.parent_id = opt_uuid(name, read_value(name, bytes)?)?,
            "created" => record.created = opt_timestamp(name, read_value(name, bytes)?)?,
            "started" => record.started = opt_timestamp(name, read_value(name, bytes)?)?,
            "finished" => record.finished = opt_timestamp(name, read_value(name, bytes)?)?,
            "node_id" => record.node_id = opt_string(name, read_value(name, bytes)?)?,
            "request_kwargs_repr" => {
                record.request_kwargs_repr = opt_string(name, read_value(name, bytes)?)?;
            }
            _ => {}
        }
    }
    Ok(record)
}

fn json_string(s: &str) -> Bytes {
    Bytes::from(Value::String(s.to_owned()).to_string())
}

fn opt_json_string(s: Option<&str>) -> Bytes {
    s.map_or(Bytes::from_static(b"null"), json_string)
}

fn opt_json_timestamp(t: Option<&DateTime<Utc>>) -> Bytes {
    t.map_or(Bytes::from_static(b"null"), |t| {
        Bytes::from(format!("\"{}\"", format_timestamp(t)))
    })
}

/// Encodes all 11 fields of a record, as `Result.set()` writes them.
pub fn encode_record(r: &ResultRecord) -> Fields {
    let values = [
        Bytes::from(format!("\"{}\"", r.id)),
        opt_json_string(r.name.as_deref()),
        Bytes::from(format!("\"{}\"", r.state)),
        Bytes::from(r.number_of_starts.to_string()),
        Bytes::from(r.number_of_stops.to_string()),
        r.parent_id
            .map_or(Bytes::from_static(b"null"), |p| Bytes::from(format!("\"{p}\""))),
        opt_json_timestamp(r.created.as_ref()),
        opt_json_timestamp(r.started.as_ref()),
        opt_json_timestamp(r.finished.as_ref()),
        opt_json_string(r.node_id.as_deref()),
        opt_json_string(r.request_kwargs_repr.as_deref()),
    ];
    RESULT_FIELDS
        .iter()
        .zip(values)
        .map(|(f, v)| ((*f).to_owned(), v))
        .collect()
}

/// The three cells of a value hash.
pub fn encode_value(contents: Bytes, gzip: bool) -> Fields {
    vec![
        ("contents".to_owned(), contents),
        (
            "encoding".to_owned(),
            Bytes::from_static(if gzip { ENCODING_GZIP } else { ENCODING_NONE }),
        ),
        ("content_type".to_owned(), Bytes::from_static(CONTENT_TYPE_JSON)),
    ]
}

/// A value hash as read: its contents and whether they are gzip.
#[derive(Debug, Clone)]
pub struct StoredValue {
    /// The stored bytes.
    pub contents: Bytes,
    /// Whether `contents` is a gzip stream (mognet's byte-exact rule).
    pub gzip: bool,
}

/// Decodes a value hash with mognet's rules: gzip only when `encoding` is exactly `"gzip"`,
/// `content_type` must be exactly `"application/json"`.
pub fn decode_value(fields: &[(String, Bytes)]) -> Result<StoredValue, CorruptField> {
    let get = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, v)| v);
    let contents = get("contents").ok_or_else(|| corrupt("contents", "missing"))?.clone();
    match get("content_type") {
        Some(ct) if ct.as_ref() == CONTENT_TYPE_JSON => {}
        Some(ct) => {
            return Err(corrupt(
                "content_type",
                format!("unknown content type {}", String::from_utf8_lossy(ct)),
            ));
        }
        None => return Err(corrupt("content_type", "missing")),
    }
    let gzip = get("encoding").is_some_and(|e| e.as_ref() == ENCODING_GZIP);
    Ok(StoredValue { contents, gzip })
}

/// A strong ETag over a hash's contents, independent of field order.
///
/// XXH3-128 over the length-prefixed, sorted pairs: a content fingerprint for change detection
/// and preconditions (not a security boundary), cheap enough to compute on every read.
pub fn etag(fields: &[(String, Bytes)]) -> String {
    let mut sorted: Vec<&(String, Bytes)> = fields.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (name, value) in sorted {
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(value.len() as u64).to_le_bytes());
        hasher.update(value);
    }
    format!("\"{:032x}\"", hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Bytes::from(v.to_string())))
            .collect()
    }

    #[test]
    fn python_tokens_become_strict_json() {
        assert_eq!(
            normalize_python_json("[NaN, Infinity, -Infinity]"),
            "[null, null, null]"
        );
        assert_eq!(normalize_python_json("\"NaN Infinity\""), "\"NaN Infinity\"");
        assert_eq!(normalize_python_json("\"\\udce9\""), "\"\\ufffd\"");
        assert_eq!(normalize_python_json("\"\\ud83d\\ude00\""), "\"\\ud83d\\ude00\"");
        assert_eq!(normalize_python_json("{\"\\u00fc\": 1.5}"), "{\"\\u00fc\": 1.5}");
    }

    #[test]
    fn compacting_keeps_tokens_and_strings_as_written() {
        assert_eq!(compact_json("{\"step\": 3, \"of\": 10}"), "{\"step\":3,\"of\":10}");
        assert_eq!(
            compact_json("[1180591620717411303424, 1.50, \"a b\"]"),
            "[1180591620717411303424,1.50,\"a b\"]"
        );
        assert_eq!(compact_json(" \"\\\" x \\u00fc\" "), "\"\\\" x \\u00fc\"");
        assert_eq!(compact_json("{\n\t\"ü k\" :\r\n null }"), "{\"ü k\":null}");
        assert!(matches!(compact_json("7"), Cow::Borrowed("7")));
    }

    #[test]
    fn fast_and_slow_cell_paths_agree() {
        for cell in [
            "null",
            "\"demo.add\"",
            "\"1, b=2\"",
            "0",
            "42",
            "\"a\\\"b\"",
            "\"\\u00fc\"",
            " 7",
            "7.0",
            "[1]",
            "\"é\"",
        ] {
            let fast = read_value("f", cell.as_bytes()).unwrap();
            let slow: Value = serde_json::from_str(cell).unwrap();
            assert_eq!(fast, slow, "{cell}");
        }
        assert!(
            read_value("f", b"\"a\tb\"").is_err(),
            "raw control characters are not JSON"
        );
        assert!(read_value("f", b"SUCCESS").is_err());
    }

    #[test]
    fn big_integers_are_kept_exactly() {
        let raw = read_cell("k", b"{\"k\": 1180591620717411303424}").unwrap();
        assert_eq!(raw.get(), "{\"k\": 1180591620717411303424}");
    }

    #[test]
    fn a_mognet_written_record_decodes() {
        let id = ResultId::parse("00000000-0000-4000-8000-000000000003").unwrap();
        let r = decode_record(
            id,
            &fields(&[
                ("id", "\"00000000-0000-4000-8000-000000000003\""),
                ("name", "\"demo.add\""),
                ("state", "\"SUCCESS\""),
                ("number_of_starts", "1"),
                ("number_of_stops", "1"),
                ("parent_id", "null"),
                ("created", "\"2026-11-23T00:33:03.371156Z\""),
                ("started", "\"2026-11-23T00:33:03+02:00\""),
                ("finished", "\"2026-11-23 00:33:03\""),
                ("node_id", "\"1234@host-a\""),
                ("request_kwargs_repr", "\"1, b=2\""),
            ]),
        )
        .unwrap();
        assert_eq!(r.state, ResultState::Success);
        assert_eq!(r.name.as_deref(), Some("demo.add"));
        assert_eq!(format_timestamp(&r.created.unwrap()), "2026-11-23T00:33:03.371156Z");
        assert_eq!(format_timestamp(&r.started.unwrap()), "2026-11-22T22:33:03Z");
        assert_eq!(format_timestamp(&r.finished.unwrap()), "2026-11-23T00:33:03Z");
    }

    #[test]
    fn a_get_or_create_placeholder_reads_as_pending() {
        let id = ResultId::new_v4();
        let r = decode_record(id, &fields(&[("id", &format!("\"{id}\""))])).unwrap();
        assert_eq!(r.state, ResultState::Pending);
        assert_eq!(r.created, None);
    }

    #[test]
    fn unknown_states_are_corrupt() {
        let id = ResultId::new_v4();
        assert!(decode_record(id, &fields(&[("state", "\"success\"")])).is_err());
        assert!(decode_record(id, &fields(&[("state", "SUCCESS")])).is_err());
    }

    #[test]
    fn records_encode_as_mognet_writes_them() {
        let id = ResultId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let t = parse_timestamp("2024-05-01T10:00:00Z").unwrap();
        let mut r = ResultRecord::pending(id, t);
        r.name = Some("démo".to_owned());
        let cells = encode_record(&r);
        let get = |f: &str| String::from_utf8(cells.iter().find(|(k, _)| k == f).unwrap().1.to_vec()).unwrap();
        assert_eq!(cells.len(), 11);
        assert_eq!(get("id"), "\"00000000-0000-4000-8000-000000000001\"");
        assert_eq!(get("state"), "\"PENDING\"");
        assert_eq!(get("created"), "\"2024-05-01T10:00:00Z\"");
        assert_eq!(get("started"), "null");
        assert_eq!(get("number_of_starts"), "0");
        assert_eq!(get("name"), "\"démo\"");
        assert_eq!(decode_record(id, &cells).unwrap(), r);
    }

    #[test]
    fn value_hashes_follow_the_byte_exact_rules() {
        let v = decode_value(&encode_value(Bytes::from_static(b"{}"), true)).unwrap();
        assert!(v.gzip);
        let v = decode_value(&fields(&[("contents", "{}"), ("content_type", "\"application/json\"")])).unwrap();
        assert!(!v.gzip);
        let v = decode_value(&fields(&[
            ("contents", "{}"),
            ("encoding", "\"GZIP\""),
            ("content_type", "\"application/json\""),
        ]))
        .unwrap();
        assert!(!v.gzip);
        assert!(decode_value(&fields(&[("contents", "{}"), ("content_type", "\"text/plain\"")])).is_err());
    }

    #[test]
    fn etags_ignore_field_order() {
        let a = fields(&[("a", "1"), ("b", "2")]);
        let b = fields(&[("b", "2"), ("a", "1")]);
        assert_eq!(etag(&a), etag(&b));
        assert_ne!(etag(&a), etag(&fields(&[("a", "1"), ("b", "3")])));
        assert_ne!(etag(&fields(&[("ab", "c")])), etag(&fields(&[("a", "bc")])));
    }

    /// Cells as another client may write them: arbitrary bytes, JSON-ish text dense in escapes,
    /// quotes and Python tokens, and valid JSON.
    fn foreign_cell() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            "[\"\\\\uéDdcC8a0-9fF NaInfty\\[\\]{}:,.é€😀\\x00-\\x1f]{0,40}".prop_map(String::into_bytes),
            "\"(\\\\(u[0-9a-fA-F]{0,4}|.)|[^\"\\\\]){0,12}\"".prop_map(String::into_bytes),
        ]
    }

    /// The record's fields and one it does not know.
    fn record_fields_and_another() -> Vec<&'static str> {
        RESULT_FIELDS.iter().copied().chain(["other"]).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        #[test]
        fn foreign_cells_never_panic(cell in foreign_cell()) {
            let raw = read_cell("f", &cell);
            let value = read_value("f", &cell);
            // Both readers agree on what is JSON.
            proptest::prop_assert_eq!(raw.is_ok(), value.is_ok());
            if let Ok(text) = std::str::from_utf8(&cell) {
                let normalized = normalize_python_json(text);
                // Strict JSON (lone surrogates aside, which become U+FFFD) stays the same JSON.
                if let Ok(before) = serde_json::from_str::<Value>(text) {
                    let after: Value = serde_json::from_str(&normalized).unwrap_or_default();
                    proptest::prop_assert_eq!(&before, &after);
                    let compacted: Value = serde_json::from_str(&compact_json(text)).unwrap_or_default();
                    proptest::prop_assert_eq!(&compacted, &before);
                }
            }
        }

        #[test]
        fn foreign_records_and_values_never_panic(
            cells in proptest::collection::vec((proptest::sample::select(record_fields_and_another()), foreign_cell()), 0..12),
            names in proptest::collection::vec(".{0,8}", 0..4),
        ) {
            let id = ResultId::parse("00000000-0000-4000-8000-000000000009").unwrap();
            let mut fields: Fields = cells.into_iter().map(|(f, c)| (f.to_owned(), Bytes::from(c))).collect();
            fields.extend(names.into_iter().map(|n| (n, Bytes::from_static(b"1"))));
            let _ = decode_record(id, &fields);
            let renamed: Fields = fields
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (["contents", "encoding", "content_type"][i % 3].to_owned(), v.clone()))
                .collect();
            let _ = decode_value(&renamed);
            let _ = etag(&fields);
        }
    }

    #[test]
    fn an_invalid_escape_before_a_multibyte_character_is_corrupt_not_a_panic() {
        for cell in ["\"\\é\"", "\"\\uéé\"", "\"\\u12é\"", "\"\\ud800\\uéé\"", "\"a\\"] {
            assert!(read_cell("name", cell.as_bytes()).is_err(), "{cell}");
            let id = ResultId::parse("00000000-0000-4000-8000-000000000009").unwrap();
            assert!(decode_record(id, &fields(&[("name", cell)])).is_err(), "{cell}");
        }
    }
}
