//! mognet's layout.
//!
//! Hashes of JSON cells under `{app}.mognet.…`, written by Python workers with plain `HSET`
//! (no publish), so waiters are woken by keyspace notifications. Key names are in
//! [`crate::store::keys`], cells in [`crate::store::codec`], the lifecycle in
//! [`crate::store::results`].

use super::{Layout, Wake};

/// mognet 2.0.0's layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mognet;

impl Layout for Mognet {
    fn name(&self) -> &'static str {
        "mognet"
    }

    fn wake(&self, _key: &str) -> Wake {
        Wake::Keyspace
    }

    fn keyspace_glob(&self) -> Option<&'static str> {
        Some("*.mognet.*")
    }

    fn keyspace_classes(&self) -> &'static str {
        "hgx"
    }

    fn read_refreshes_ttl(&self) -> bool {
        true
    }
}
