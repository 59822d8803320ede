//! The Lua scripts (in `lua/`), loaded once per store, and the argument layout they read.

use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;

use super::ttl_ms;
use crate::store::{Guard, HashWrite};

// A full Redis (`maxmemory` with `noeviction`): every script that writes opens with a `#!lua`
// shebang and no `allow-oom` flag, so Redis refuses it with `OOM` before it runs, whatever it
// would write. Without the shebang Redis only checks memory at the script's first
// memory-growing command, and a script that first ran `DEL` (not such a command) could then
// grow the data set past the limit unchecked. A shebang script on a read-only replica is
// refused with `READONLY` the same way, before any effect. Keys are always passed in `KEYS`,
// as shebang scripts on a Cluster require.
//
// `READ_HASH` and `POP_FIELD` keep the old form: they only refresh a TTL and remove a field
// (`PEXPIRE`, `HDEL`, which Redis allows under `OOM`), so a read keeps answering while the store
// is full, and so does a delete, which is how space is made again.
const READ_HASH: &str = include_str!("lua/read_hash.lua");

const UPSERT_HASH: &str = include_str!("lua/upsert_hash.lua");

const WRITE_HASHES: &str = include_str!("lua/write_hashes.lua");

// With a second key, the increment is done at most once for it: the key remembers the request's
// fingerprint and the new value (ARGV[4], for ARGV[5] ms), and a repeat is answered from it.
const INCREMENT: &str = include_str!("lua/increment.lua");

const POP_FIELD: &str = include_str!("lua/pop_field.lua");

const ADD_TO_SET: &str = include_str!("lua/add_to_set.lua");

const GUARD_HOLDS: &str = include_str!("lua/guard_holds.lua");

const SWAP_STRING: &str = include_str!("lua/swap_string.lua");

const FINGERPRINT: &str = include_str!("lua/fingerprint.lua");

/// The store's scripts, each sent by SHA and reloaded when Redis has forgotten it.
pub(super) struct Scripts {
    pub(super) read_hash: Script,
    pub(super) write_hashes: Script,
    pub(super) upsert_hash: Script,
    pub(super) guard_holds: Script,
    pub(super) increment: Script,
    pub(super) pop_field: Script,
    pub(super) add_to_set: Script,
    pub(super) swap_string: Script,
    pub(super) fingerprint: Script,
}

impl Scripts {
    /// Every script, ready to run.
    pub(super) fn load() -> Self {
        Self {
            read_hash: Script::from_lua(READ_HASH),
            write_hashes: Script::from_lua(WRITE_HASHES),
            upsert_hash: Script::from_lua(UPSERT_HASH),
            guard_holds: Script::from_lua(GUARD_HOLDS),
            increment: Script::from_lua(INCREMENT),
            pop_field: Script::from_lua(POP_FIELD),
            add_to_set: Script::from_lua(ADD_TO_SET),
            swap_string: Script::from_lua(SWAP_STRING),
            fingerprint: Script::from_lua(FINGERPRINT),
        }
    }
}

/// Appends one write's arguments in the layout `write_hashes.lua` reads.
pub(super) fn push_write_args(args: &mut Vec<Value>, w: &HashWrite) {
    let (kind, guard_fields): (i64, &[(String, Bytes)]) = match &w.guard {
        Guard::Any => (0, &[]),
        Guard::Absent => (1, &[]),
        Guard::Exists => (2, &[]),
        Guard::Unchanged(f) => (3, f),
    };
    args.push(Value::Integer(kind));
    args.push(Value::Integer(guard_fields.len() as i64));
    for (f, v) in guard_fields {
        args.push(Value::from(f.as_str()));
        args.push(Value::Bytes(v.clone()));
    }
    args.push(Value::Integer(i64::from(w.replace)));
    args.push(Value::Integer(ttl_ms(w.ttl)));
    args.push(Value::Integer(w.set.len() as i64));
    for (f, v) in &w.set {
        args.push(Value::from(f.as_str()));
        args.push(Value::Bytes(v.clone()));
    }
    args.push(Value::Integer(w.remove.len() as i64));
    for f in &w.remove {
        args.push(Value::from(f.as_str()));
    }
}
