//! Rigatoni's Redis state store (`rigatoni-stores` 0.2.0, and the v0.1 key form).
//!
//! One raw BSON document per resume token under `{prefix}resume_token:{name}`, written with a
//! plain `SET` (no TTL configured, which also drops an earlier TTL) or `SET … EX` in whole
//! seconds; no `PUBLISH`, so waiters are woken by keyspace `set` events (class `$`). The name
//! is opaque: Rigatoni 0.1 writes the bare collection, 0.2's pipeline writes
//! `resume_token:{db}:{coll}` (so the key reads `rigatoni:resume_token:resume_token:db:coll`)
//! and its batch flushes `{coll}`, `__db:{db}` or `__deployment__`. Locks are
//! `{prefix}lock:{…}` strings holding the owner id, `SET NX EX`; resultd only reads them.
//! Reads never refresh a TTL.

use bson::Document;

use super::{KeyspaceWatch, Layout, Wake};

/// The longest accepted token name, in characters.
pub const MAX_NAME_LEN: usize = 1024;

/// Rigatoni's layout under one key prefix (`rigatoni:` by default).
#[derive(Debug, Clone)]
pub struct Rigatoni {
    prefix: String,
}

impl Rigatoni {
    /// The layout for `prefix`, which both `resume_token:` and `lock:` follow.
    pub fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}resume_token:`, in front of every token name.
    pub fn token_prefix(&self) -> String {
        format!("{}resume_token:", self.prefix)
    }

    /// `{prefix}lock:`, in front of every lock name.
    pub fn lock_prefix(&self) -> String {
        format!("{}lock:", self.prefix)
    }

    /// The key of the token `name`.
    pub fn token_key(&self, name: &str) -> String {
        format!("{}resume_token:{name}", self.prefix)
    }

    /// The token name of `key`, when it is a token key of this layout.
    pub fn token_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix("resume_token:")
    }

    /// The lock name of `key`, when it is a lock key of this layout.
    pub fn lock_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix("lock:")
    }

    /// The keyspace subscription the token waits need.
    pub fn keyspace_watch(&self) -> KeyspaceWatch {
        KeyspaceWatch {
            glob: format!("{}*", self.token_prefix()),
            classes: "$gx",
        }
    }
}

impl Layout for Rigatoni {
    fn name(&self) -> &'static str {
        "rigatoni"
    }

    fn wake(&self, _key: &str) -> Wake {
        Wake::Keyspace
    }

    fn keyspace_glob(&self) -> Option<&'static str> {
        Some("rigatoni:resume_token:*")
    }

    fn keyspace_classes(&self) -> &'static str {
        "$gx"
    }

    fn read_refreshes_ttl(&self) -> bool {
        false
    }
}

/// Checks a token name: 1 to [`MAX_NAME_LEN`] characters, no control characters and no glob
/// characters (`* ? [ ] \`), which SCAN patterns would read as patterns.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err("is longer than 1024 characters");
    }
    if name.chars().any(|c| c.is_control() || "*?[]\\".contains(c)) {
        return Err("may not hold control characters or * ? [ ] \\");
    }
    Ok(())
}

/// Why stored bytes are not a BSON document.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidBson(pub String);

/// Decodes a stored value as one BSON document, refusing a length prefix that disagrees with
/// the value's size and trailing bytes (`bson::from_slice` as Rigatoni reads it).
pub fn decode(stored: &[u8]) -> Result<Document, InvalidBson> {
    let Some(head) = stored.get(..4) else {
        return Err(InvalidBson(format!(
            "{} bytes: shorter than a BSON length prefix",
            stored.len()
        )));
    };
    let declared = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if usize::try_from(declared).ok() != Some(stored.len()) {
        return Err(InvalidBson(format!(
            "the length prefix says {declared} bytes, the value has {}",
            stored.len()
        )));
    }
    let mut reader = stored;
    Document::from_reader(&mut reader).map_err(|e| InvalidBson(e.to_string()))
}

/// The canonical Extended JSON of a document (`MongoDB` Extended JSON v2, canonical mode).
pub fn to_extjson(doc: &Document) -> serde_json::Value {
    bson::Bson::Document(doc.clone()).into_canonical_extjson()
}

/// The BSON of a canonical (or relaxed) Extended JSON object.
pub fn from_extjson(value: serde_json::Value) -> Result<Vec<u8>, InvalidBson> {
    if !value.is_object() {
        return Err(InvalidBson("a resume token is a JSON object".to_owned()));
    }
    let bson = bson::Bson::try_from(value).map_err(|e| InvalidBson(e.to_string()))?;
    let bson::Bson::Document(doc) = bson else {
        return Err(InvalidBson("the Extended JSON is not a document".to_owned()));
    };
    bson::to_vec(&doc).map_err(|e| InvalidBson(e.to_string()))
}

/// The cluster time `{t, i}` a hex `_data` appears to start with (`82`, then 4 bytes of
/// seconds and 4 of increment, big endian); best effort, since `MongoDB` calls tokens opaque.
pub fn cluster_time(doc: &Document) -> Option<(u32, u32)> {
    let data = doc.get_str("_data").ok()?;
    let rest = data.strip_prefix("82")?;
    let t = u32::from_str_radix(rest.get(..8)?, 16).ok()?;
    let i = u32::from_str_radix(rest.get(8..16)?, 16).ok()?;
    Some((t, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"_data": "8266A1B2C3000000012B022C0100296E5A1004"}` as bson writes it (55 bytes).
    fn sample() -> Vec<u8> {
        let doc = bson::doc! {"_data": "8266A1B2C3000000012B022C0100296E5A1004"};
        bson::to_vec(&doc).unwrap()
    }

    #[test]
    fn keys_names_and_watches() {
        let l = Rigatoni::new("rigatoni:".to_owned());
        assert_eq!(
            l.token_key("resume_token:db:c.x"),
            "rigatoni:resume_token:resume_token:db:c.x"
        );
        assert_eq!(l.token_name("rigatoni:resume_token:a:b.c"), Some("a:b.c"));
        assert_eq!(l.token_name("rigatoni:lock:a"), None);
        assert_eq!(l.lock_name("rigatoni:lock:db:users"), Some("db:users"));
        assert_eq!(l.keyspace_watch().glob, "rigatoni:resume_token:*");
        assert!(!l.read_refreshes_ttl());
        assert!(check_name("db:coll.x").is_ok());
        assert!(check_name("").is_err() && check_name("a*").is_err() && check_name("a\n").is_err());
    }

    #[test]
    fn bson_round_trip_and_refusals() {
        let bytes = sample();
        assert_eq!(bytes.len(), 55);
        let doc = decode(&bytes).unwrap();
        assert_eq!(
            to_extjson(&doc),
            serde_json::json!({"_data": "8266A1B2C3000000012B022C0100296E5A1004"})
        );
        assert_eq!(cluster_time(&doc), Some((0x66A1_B2C3, 1)));
        assert_eq!(from_extjson(to_extjson(&doc)).unwrap(), bytes);
        assert!(decode(b"").is_err());
        assert!(decode(b"not bson at all").is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        let mut broken = bytes;
        broken[4] = 0x7f;
        assert!(decode(&broken).is_err());
        let bin = serde_json::json!({"_data": {"$binary": {"base64": "ggE=", "subType": "00"}}});
        let raw = from_extjson(bin.clone()).unwrap();
        assert_eq!(raw, b"\x13\x00\x00\x00\x05_data\x00\x02\x00\x00\x00\x00\x82\x01\x00");
        assert_eq!(to_extjson(&decode(&raw).unwrap()), bin);
        assert!(from_extjson(serde_json::json!([1])).is_err());
    }
}
