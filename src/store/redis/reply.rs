//! Decoding Redis replies and errors into the store's types.

use bytes::Bytes;
use fred::prelude::*;

use crate::store::{HashSnapshot, IncrementOutcome, OnceOutcome, StoreError};

/// Maps a fred error: a full Redis is `Full` (507), a read-only replica `ReadOnly` (503), a
/// command the ACL user may not run `Denied` (500); reachability, authentication and
/// transient states (`LOADING`, `BUSY`, `MASTERDOWN`, …) are `Unavailable` (503); the rest
/// `Backend`. The detail goes to the log.
pub(crate) fn map_err(e: &Error) -> StoreError {
    // A script's error may carry its own prefix after the script's name; the code is the
    // reply's first word either way.
    let details = e.details();
    let code = details.split_whitespace().next().unwrap_or("");
    let transient = ["LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "BUSY"];
    match code {
        "OOM" => return StoreError::Full(e.to_string()),
        "READONLY" => return StoreError::ReadOnly(e.to_string()),
        "NOPERM" => return StoreError::Denied(e.to_string()),
        _ => {}
    }
    // Inside a script, an ACL refusal reads `ERR The user executing the script can't run …`.
    if details.contains("user executing the script can't run") {
        return StoreError::Denied(e.to_string());
    }
    match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Cluster
        | ErrorKind::Sentinel
        | ErrorKind::Routing
        | ErrorKind::Auth
        | ErrorKind::Tls => StoreError::Unavailable(e.to_string()),
        _ if transient.iter().any(|t| details.starts_with(t)) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(super) fn bytes_of(v: Value) -> Bytes {
    match v {
        Value::Bytes(b) => b,
        Value::String(s) => s.into_inner(),
        Value::Integer(i) => Bytes::from(i.to_string()),
        Value::Double(d) => Bytes::from(d.to_string()),
        Value::Boolean(b) => Bytes::from(if b { "1" } else { "0" }),
        _ => Bytes::new(),
    }
}

pub(super) fn string_of(v: Value) -> String {
    String::from_utf8_lossy(&bytes_of(v)).into_owned()
}

/// A snapshot from an `HGETALL` reply (a map, or a flat array) and a `PTTL`.
pub(crate) fn snapshot_of(reply: Value, pttl: i64) -> Option<HashSnapshot> {
    let fields: Vec<(String, Bytes)> = match reply {
        Value::Map(map) => map
            .inner()
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(k.as_bytes()).into_owned(), bytes_of(v)))
            .collect(),
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::with_capacity(it.len() / 2);
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                out.push((string_of(f), bytes_of(v)));
            }
            out
        }
        _ => Vec::new(),
    };
    if fields.is_empty() {
        return None;
    }
    Some(HashSnapshot {
        fields,
        ttl_ms: (pttl >= 0).then_some(pttl),
    })
}

/// Decodes `[pttl, f1, v1, …]` (or nil) from the read script.
pub(super) fn decode_snapshot(v: Value) -> Result<Option<HashSnapshot>, StoreError> {
    let items = match v {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        other => return Err(StoreError::Backend(format!("unexpected reply {other:?}"))),
    };
    let mut it = items.into_iter();
    let Some(Value::Integer(pttl)) = it.next() else {
        return Err(StoreError::Backend("read script returned no TTL".to_owned()));
    };
    let mut fields = Vec::with_capacity(it.len() / 2);
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        fields.push((string_of(f), bytes_of(v)));
    }
    Ok(Some(HashSnapshot {
        fields,
        ttl_ms: (pttl >= 0).then_some(pttl),
    }))
}

/// Decodes the increment script's `{tag, value}` reply.
pub(super) fn decode_increment(reply: Value) -> Result<OnceOutcome, StoreError> {
    let unexpected = || StoreError::Backend("unexpected increment reply".to_owned());
    let Value::Array(items) = reply else {
        return Err(unexpected());
    };
    let mut it = items.into_iter();
    let tag = it.next().map(string_of).unwrap_or_default();
    let integer = |v: Value| string_of(v).parse::<i64>().map_err(|_| unexpected());
    Ok(match (tag.as_str(), it.next()) {
        ("ok", Some(v)) => OnceOutcome::Ran(IncrementOutcome::Value(integer(v)?)),
        ("overflow", _) => OnceOutcome::Ran(IncrementOutcome::Overflow),
        ("nan", v) => OnceOutcome::Ran(IncrementOutcome::NotInteger(v.map(bytes_of).unwrap_or_default())),
        ("replay", Some(v)) => OnceOutcome::Replayed(integer(v)?),
        ("reused", _) => OnceOutcome::Reused,
        _ => return Err(unexpected()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(reply: &str) -> &'static str {
        map_err(&Error::new(ErrorKind::Unknown, reply.to_owned())).kind()
    }

    #[test]
    fn redis_error_replies_map_to_stable_store_errors() {
        assert_eq!(class("OOM command not allowed when used memory > 'maxmemory'."), "full");
        assert_eq!(
            class("READONLY You can't write against a read only replica."),
            "read-only"
        );
        assert_eq!(
            class("READONLY You can't write against a read only replica. script: 0123, on @user_script:3."),
            "read-only"
        );
        assert_eq!(
            class("NOPERM this user has no permissions to run the 'evalsha' command"),
            "denied"
        );
        assert_eq!(
            class("ERR The user executing the script can't run this command or subcommand"),
            "denied"
        );
        for transient in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            assert_eq!(class(transient), "unavailable", "{transient}");
        }
        assert_eq!(
            map_err(&Error::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair")).kind(),
            "unavailable"
        );
        assert_eq!(class("ERR unknown command"), "backend");
    }
}
