//! mognet's key layout, exactly as mognet 2.0.0 builds it.
//!
//! | key | type |
//! |---|---|
//! | `{app}.mognet.result.{id}` | hash of 11 JSON cells |
//! | `{app}.mognet.result.{id}/value` | hash `contents`, `encoding`, `content_type` |
//! | `{app}.mognet.result.{id}/metadata` | hash of JSON cells |
//! | `{app}.mognet.result.{id}/children` | set of 16-byte ids |
//! | `{app}.mognet.state.{key}` | hash of JSON cells |
//! | `{app}.resultd.idem.{{target}}.{hash}` | resultd's own: hash `fingerprint`, `value` of a write made under an `Idempotency-Key` |
//!
//! The app is used verbatim and ids are the canonical lowercase hyphenated form, because Python
//! readers build keys from `str(uuid)`. No hash tags: a mognet key must stay byte-identical, so on
//! Redis Cluster a result and its value may live on different nodes (see `docs/operations.md`).

use crate::domain::{AppName, ResultId, StateKey};

/// The result hash key.
pub fn result(app: &AppName, id: &ResultId) -> String {
    format!("{app}.mognet.result.{id}")
}

/// The value hash key.
pub fn value(app: &AppName, id: &ResultId) -> String {
    format!("{app}.mognet.result.{id}/value")
}

/// The metadata hash key.
pub fn metadata(app: &AppName, id: &ResultId) -> String {
    format!("{app}.mognet.result.{id}/metadata")
}

/// The children set key.
pub fn children(app: &AppName, id: &ResultId) -> String {
    format!("{app}.mognet.result.{id}/children")
}

/// The state hash key.
pub fn state(app: &AppName, key: &StateKey) -> String {
    format!("{app}.mognet.state.{key}")
}

/// The key that remembers a write to `target` made under a client's `Idempotency-Key`.
///
/// `{app}.resultd.idem.{target}.{key_hash}` (`key_hash`: hex): resultd's own key, not mognet's.
/// The braces are a hash tag, so on a Cluster it lives in `target`'s slot and the write and its
/// record stay one script.
pub fn idempotency(app: &AppName, target: &str, key_hash: &str) -> String {
    format!("{app}.resultd.idem.{{{target}}}.{key_hash}")
}

/// The `SCAN MATCH` pattern of an app's result hashes (it also matches their subkeys).
pub fn result_pattern(app: &AppName) -> String {
    format!("{app}.mognet.result.*")
}

/// The result id of a result hash key of `app`, or `None` for subkeys and other keys.
pub fn result_id_of(app: &AppName, key: &str) -> Option<ResultId> {
    let rest = key.strip_prefix(app.as_str())?.strip_prefix(".mognet.result.")?;
    if rest.len() != 36 {
        return None;
    }
    ResultId::parse(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_byte_identical_to_mognets() {
        let app = AppName::parse("probe").unwrap();
        let id = ResultId::parse("00000000-0000-4000-8000-000000000003").unwrap();
        assert_eq!(
            result(&app, &id),
            "probe.mognet.result.00000000-0000-4000-8000-000000000003"
        );
        assert_eq!(
            value(&app, &id),
            "probe.mognet.result.00000000-0000-4000-8000-000000000003/value"
        );
        assert_eq!(
            metadata(&app, &id),
            "probe.mognet.result.00000000-0000-4000-8000-000000000003/metadata"
        );
        assert_eq!(
            children(&app, &id),
            "probe.mognet.result.00000000-0000-4000-8000-000000000003/children"
        );
        let key = StateKey::parse("00000000-0000-4000-8000-00000000000d").unwrap();
        assert_eq!(
            state(&app, &key),
            "probe.mognet.state.00000000-0000-4000-8000-00000000000d"
        );
    }

    #[test]
    fn only_result_hash_keys_yield_ids() {
        let app = AppName::parse("probe").unwrap();
        let id = ResultId::new_v4();
        assert_eq!(result_id_of(&app, &result(&app, &id)), Some(id));
        assert_eq!(result_id_of(&app, &value(&app, &id)), None);
        assert_eq!(result_id_of(&AppName::parse("prob").unwrap(), &result(&app, &id)), None);
    }
}
