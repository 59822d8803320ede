//! Names of per-app state entries: the hash `{app}.mognet.state.{key}` and its fields.

use std::fmt;

use super::id::{InvalidName, check_key_charset, check_no_separator};

/// The key of one state hash (mognet's request id, or any name of the same charset).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey(String);

impl StateKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 200;

    /// Parses a key of `[A-Za-z0-9_.:-]{1,200}` without `.mognet.` and not starting with
    /// `mognet.`.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        check_key_charset("state key", s, Self::MAX_LEN)?;
        check_no_separator("state key", s, true, false)?;
        Ok(Self(s.to_owned()))
    }

    /// The key as written in Redis.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One field of a state hash: mognet's state key, any text without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateField(String);

impl StateField {
    /// Longest accepted field name, in characters.
    pub const MAX_LEN: usize = 256;

    /// Parses a field name of 1 to 256 characters without control characters.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let len = s.chars().count();
        if len == 0 || len > Self::MAX_LEN {
            return Err(InvalidName(format!(
                "state field must be 1 to {} characters long, got {len}",
                Self::MAX_LEN
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidName("state field may not contain control characters".to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The field name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_follow_the_key_charset() {
        assert!(StateKey::parse("00000000-0000-4000-8000-00000000000d").is_ok());
        assert!(StateKey::parse("job:42").is_ok());
        assert!(StateKey::parse("a b").is_err());
        assert!(StateKey::parse(&"k".repeat(201)).is_err());
    }

    #[test]
    fn state_fields_allow_any_text_but_control_characters() {
        assert!(StateField::parse("progress").is_ok());
        assert!(StateField::parse("ünïcode key").is_ok());
        assert!(StateField::parse("").is_err());
        assert!(StateField::parse("a\tb").is_err());
    }
}
