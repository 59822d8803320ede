//! The TTL policy: which expiry every write sets, and how per-request TTLs are clamped.
//!
//! Every write sets its key's TTL in the same script or transaction as the data, so no key is
//! ever left without one. Reads of results never refresh a TTL (as in mognet); reads of state do
//! when `state.refresh_on_read` is on, because mognet's state backend refreshes on every access.

use std::time::Duration;

use crate::config::TtlSettings;

/// Which kind of key a TTL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlKind {
    /// The result hash, its metadata and its children (mognet's `result_ttl`).
    Result,
    /// The `/value` hash (mognet's `result_value_ttl`).
    Value,
    /// A state hash (mognet's `state_ttl`).
    State,
}

/// Chooses the TTL of each write.
#[derive(Debug, Clone)]
pub struct TtlPolicy {
    settings: TtlSettings,
}

impl TtlPolicy {
    /// Builds the policy from settings (already validated).
    pub fn new(settings: TtlSettings) -> Self {
        Self { settings }
    }

    /// The TTL a write of `kind` gets: the client's wish clamped to `[min, max]`, or the default.
    /// `None` means no expiry (a default of 0, as mognet's `None`).
    pub fn for_write(&self, kind: TtlKind, requested: Option<u64>) -> Option<Duration> {
        let default = match kind {
            TtlKind::Result => self.settings.result_seconds,
            TtlKind::Value => self.settings.value_seconds,
            TtlKind::State => self.settings.state_seconds,
        };
        let seconds = match requested {
            Some(r) => r.clamp(self.settings.min_seconds, self.settings.max_seconds),
            None if default == 0 => return None,
            None => default,
        };
        Some(Duration::from_secs(seconds))
    }

    /// The TTL that each value write gets alongside a result TTL the client asked for:
    /// a requested result TTL shortens (never lengthens) the value's default.
    pub fn value_for_result(&self, requested: Option<u64>) -> Option<Duration> {
        let value = self.for_write(TtlKind::Value, None);
        match (requested.map(|_| self.for_write(TtlKind::Result, requested)), value) {
            (Some(Some(r)), Some(v)) => Some(r.min(v)),
            (Some(Some(r)), None) => Some(r),
            _ => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TtlPolicy {
        TtlPolicy::new(TtlSettings::default())
    }

    #[test]
    fn defaults_are_mognets() {
        let p = policy();
        assert_eq!(p.for_write(TtlKind::Result, None), Some(Duration::from_secs(1_814_400)));
        assert_eq!(p.for_write(TtlKind::Value, None), Some(Duration::from_secs(604_800)));
        assert_eq!(p.for_write(TtlKind::State, None), Some(Duration::from_secs(7_200)));
    }

    #[test]
    fn requested_ttls_are_clamped() {
        let p = policy();
        assert_eq!(p.for_write(TtlKind::State, Some(0)), Some(Duration::from_secs(1)));
        assert_eq!(
            p.for_write(TtlKind::Result, Some(u64::MAX)),
            Some(Duration::from_secs(TtlSettings::default().max_seconds))
        );
        assert_eq!(p.for_write(TtlKind::Result, Some(60)), Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_zero_default_means_no_expiry() {
        let p = TtlPolicy::new(TtlSettings {
            result_seconds: 0,
            ..TtlSettings::default()
        });
        assert_eq!(p.for_write(TtlKind::Result, None), None);
    }

    #[test]
    fn a_short_result_ttl_shortens_the_value_ttl() {
        let p = policy();
        assert_eq!(p.value_for_result(Some(60)), Some(Duration::from_secs(60)));
        assert_eq!(p.value_for_result(None), Some(Duration::from_secs(604_800)));
    }
}
