//! Rigatoni's state store over the store's primitives: resume tokens read as stored bytes
//! (never refreshing a TTL), listed with SCAN, written with an atomic compare-and-set; locks
//! read only.

use std::time::Duration;

use bytes::Bytes;

use super::celery::etag_of;
use super::layout::rigatoni::{self, InvalidBson, Rigatoni};
use super::{ResultStore, Store, StoreError, StringSnapshot, SwapOutcome};

/// Most SCAN steps one listing page takes (a step may return nothing with more to come).
const MAX_SCAN_STEPS: usize = 32;

/// A resume token as stored.
#[derive(Debug, Clone)]
pub struct TokenView {
    /// The stored bytes, untouched.
    pub bytes: Bytes,
    /// Seconds until the key expires; `None` when it never does.
    pub ttl: Option<i64>,
    /// Strong ETag over the stored bytes.
    pub etag: String,
}

/// One entry of a listing page: a token or a lock.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name after `{prefix}resume_token:` or `{prefix}lock:`.
    pub name: String,
    /// The stored bytes.
    pub bytes: Bytes,
    /// Seconds until the key expires; `None` when it never does.
    pub ttl: Option<i64>,
}

/// Why a Rigatoni call failed.
#[derive(Debug, thiserror::Error)]
pub enum RigatoniError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored value (or a key of another type) is no BSON document.
    #[error("{key} holds no BSON document: {error}")]
    InvalidBson {
        /// The key.
        key: String,
        /// What is wrong.
        error: InvalidBson,
    },
    /// The write's precondition does not hold; `current` is the stored ETag, if any.
    #[error("the precondition does not hold")]
    PreconditionFailed {
        /// The stored token's ETag, `None` when there is none.
        current: Option<String>,
    },
}

fn read_err(key: &str, e: StoreError) -> RigatoniError {
    match e {
        StoreError::Corrupt { reason, .. } => {
            crate::telemetry::count_undecodable("invalid-bson");
            RigatoniError::InvalidBson {
                key: key.to_owned(),
                error: InvalidBson(format!("the key is {reason}")),
            }
        }
        e => RigatoniError::Store(e),
    }
}

fn view_of(snap: StringSnapshot) -> TokenView {
    TokenView {
        etag: etag_of(&snap.value),
        ttl: snap.ttl_seconds(),
        bytes: snap.value,
    }
}

/// Reads the token `name` (one GET and PTTL; the TTL is never touched).
pub async fn get(store: &Store, layout: &Rigatoni, name: &str) -> Result<Option<TokenView>, RigatoniError> {
    let key = layout.token_key(name);
    let snap = store.read_string(&key).await.map_err(|e| read_err(&key, e))?;
    Ok(snap.map(view_of))
}

/// Checks that a stored token is a BSON document.
pub fn decode(layout: &Rigatoni, name: &str, view: &TokenView) -> Result<bson::Document, RigatoniError> {
    rigatoni::decode(&view.bytes).map_err(|error| {
        crate::telemetry::count_undecodable("invalid-bson");
        RigatoniError::InvalidBson {
            key: layout.token_key(name),
            error,
        }
    })
}

/// One page of keys under `prefix` (SCAN `prefix*` from `cursor`), each read with its TTL;
/// keys of another type than string are left out. The next cursor is `None` at the end.
pub async fn list(
    store: &Store,
    prefix: &str,
    cursor: &str,
    limit: usize,
) -> Result<(Vec<Entry>, Option<String>), StoreError> {
    let pattern = format!("{prefix}*");
    let mut scan = cursor.to_owned();
    let mut keys: Vec<String> = Vec::new();
    let mut finished = false;
    let mut steps = 0;
    while !finished && keys.len() < limit && steps < MAX_SCAN_STEPS {
        steps += 1;
        let want = u32::try_from(limit - keys.len()).unwrap_or(u32::MAX).max(10);
        let (next, found) = store.scan(&pattern, &scan, want).await?;
        for k in found {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        scan = next;
        finished = scan == "0";
    }
    let reads = futures::future::join_all(keys.iter().map(|k| store.read_string(k))).await;
    let mut entries = Vec::with_capacity(keys.len());
    for (key, read) in keys.iter().zip(reads) {
        let snap = match read {
            Ok(Some(snap)) => snap,
            // Gone since the SCAN, or not a string: nothing Rigatoni wrote.
            Ok(None) | Err(StoreError::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        entries.push(Entry {
            name: key.strip_prefix(prefix).unwrap_or(key).to_owned(),
            ttl: snap.ttl_seconds(),
            bytes: snap.value,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((entries, (!finished).then_some(scan)))
}

/// What a write expects to find.
#[derive(Debug, Clone)]
pub enum Expect {
    /// `If-None-Match: *`: no token.
    Absent,
    /// `If-Match: *`: any token.
    Any,
    /// `If-Match`: a token whose ETag is one of these.
    OneOf(Vec<String>),
}

impl Expect {
    fn holds(&self, current: Option<&Bytes>) -> bool {
        match (self, current) {
            (Self::Absent, None) | (Self::Any, Some(_)) => true,
            (Self::OneOf(tags), Some(v)) => tags.iter().any(|t| *t == etag_of(v)),
            _ => false,
        }
    }
}

/// What a write did.
#[derive(Debug)]
pub enum PutOutcome {
    /// There was no token: this is the one written.
    Created(TokenView),
    /// A token was replaced: this is the one written.
    Replaced(TokenView),
}

/// Writes `value` (a checked BSON document) as the token `name` if `expect` holds.
///
/// One atomic compare-and-set on the bytes read: `SET … EX ttl`, or a plain `SET` without
/// `ttl` (which drops an earlier TTL, as Rigatoni's own writes do). Nothing is published.
pub async fn put(
    store: &Store,
    layout: &Rigatoni,
    name: &str,
    value: Bytes,
    expect: &Expect,
    ttl: Option<Duration>,
) -> Result<PutOutcome, RigatoniError> {
    let key = layout.token_key(name);
    let mut current = store
        .read_string(&key)
        .await
        .map_err(|e| read_err(&key, e))?
        .map(|s| s.value);
    for _ in 0..16 {
        if !expect.holds(current.as_ref()) {
            return Err(RigatoniError::PreconditionFailed {
                current: current.as_ref().map(|v| etag_of(v)),
            });
        }
        match store.swap_string(&key, current.as_ref(), &value, ttl, false).await? {
            SwapOutcome::Swapped => {
                let view = TokenView {
                    etag: etag_of(&value),
                    ttl: ttl.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                    bytes: value,
                };
                return Ok(if current.is_some() {
                    PutOutcome::Replaced(view)
                } else {
                    PutOutcome::Created(view)
                });
            }
            SwapOutcome::Changed(now) => current = now,
        }
    }
    Err(RigatoniError::Store(StoreError::Contended(key)))
}
