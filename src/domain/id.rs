//! Names that become parts of Redis keys, parsed once at the edge.
//!
//! mognet builds keys by plain string formatting (`{app}.mognet.result.{id}`), so every name that
//! reaches a key must be free of glob characters, separators and control characters: an app name
//! with `*` would make a `SCAN MATCH` pattern match other apps, and a `/` would collide with the
//! `/value` subkeys.

use std::fmt;

use uuid::Uuid;

/// Why a name was refused, in words meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

/// Checks `s` against `[A-Za-z0-9_.:-]{1,max}`.
pub(crate) fn check_key_charset(what: &str, s: &str, max: usize) -> Result<(), InvalidName> {
    if s.is_empty() || s.len() > max {
        return Err(InvalidName(format!(
            "{what} must be 1 to {max} characters long, got {}",
            s.len()
        )));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(InvalidName(format!(
            "{what} may only contain letters, digits, '_', '.', ':' and '-', found {bad:?}"
        )));
    }
    Ok(())
}

/// The separator between an app and the rest of every key (`{app}.mognet.{kind}.{rest}`).
pub const LAYOUT_SEPARATOR: &str = ".mognet.";

/// Refuses a name that would put a second [`LAYOUT_SEPARATOR`] into a key built from it: then
/// one app's name (or state key) could spell another app's key, and a token for the one would
/// reach the other. `before` and `after` tell whether the key has a `.` on that side of the name.
pub(crate) fn check_no_separator(what: &str, s: &str, before: bool, after: bool) -> Result<(), InvalidName> {
    let bare = LAYOUT_SEPARATOR.trim_matches('.');
    let aliases = s.contains(LAYOUT_SEPARATOR)
        || (after && s.strip_suffix(bare).is_some_and(|head| head.ends_with('.')))
        || (before && s.strip_prefix(bare).is_some_and(|tail| tail.starts_with('.')));
    if aliases {
        return Err(InvalidName(format!(
            "{what} may not contain {LAYOUT_SEPARATOR:?}{}: its keys would alias another app's",
            match (before, after) {
                (true, _) => ", nor start with \"mognet.\"",
                (_, true) => ", nor end with \".mognet\"",
                _ => "",
            }
        )));
    }
    Ok(())
}

/// A mognet app name, used verbatim as the key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

impl AppName {
    /// Longest accepted app name.
    pub const MAX_LEN: usize = 128;

    /// Parses an app name of `[A-Za-z0-9_.:-]{1,128}` without `.mognet.` and not ending with
    /// `.mognet`.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        check_key_charset("app name", s, Self::MAX_LEN)?;
        check_no_separator("app name", s, false, true)?;
        Ok(Self(s.to_owned()))
    }

    /// The name as written in keys.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A result id: a UUID, always printed in the canonical lowercase hyphenated form mognet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultId(Uuid);

impl ResultId {
    /// Parses a hyphenated UUID in any case; other spellings are refused so keys stay canonical.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let refuse = || {
            InvalidName(format!(
                "result id must be a hyphenated UUID such as 3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10, got {:?}",
                truncate(s, 64)
            ))
        };
        if s.len() != 36 {
            return Err(refuse());
        }
        Uuid::try_parse(s).map(Self).map_err(|_| refuse())
    }

    /// Wraps a UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// A fresh random id.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID.
    pub fn uuid(&self) -> Uuid {
        self.0
    }

    /// The 16 raw bytes mognet stores in `/children` sets.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for ResultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Cuts `s` to at most `max` characters for an error message.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_accept_the_documented_charset() {
        for ok in ["billing", "a", "my-app_2.prod:eu", &"x".repeat(128)] {
            assert!(AppName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a*", "a?", "a[b]", "a/b", "ü", "a\n", &"x".repeat(129)] {
            assert!(AppName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn result_ids_are_canonicalised_to_lowercase() {
        let id = ResultId::parse("3F0C8A52-1F4E-4B7A-9D55-0E8F2B4C6A10").unwrap();
        assert_eq!(id.to_string(), "3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10");
    }

    #[test]
    fn result_ids_other_than_hyphenated_uuids_are_refused() {
        for bad in [
            "",
            "x",
            "3f0c8a521f4e4b7a9d550e8f2b4c6a10",
            "{3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a10}",
            "3f0c8a52-1f4e-4b7a-9d55-0e8f2b4c6a1g",
        ] {
            assert!(ResultId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
