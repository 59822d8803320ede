//! The seven mognet result states and the sets mognet groups them in.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A mognet `ResultState`, stored as an uppercase JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ResultState {
    /// Submitted, not started.
    Pending,
    /// A worker runs it.
    Running,
    /// Paused by its worker; it will resume.
    Suspended,
    /// Finished with a value.
    Success,
    /// Finished with an exception.
    Failure,
    /// Cancelled.
    Revoked,
    /// Could not run (for example an unknown task name).
    Invalid,
}

impl ResultState {
    /// Every state, in mognet's order.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Running,
        Self::Suspended,
        Self::Success,
        Self::Failure,
        Self::Revoked,
        Self::Invalid,
    ];

    /// The uppercase name mognet stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Suspended => "SUSPENDED",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Revoked => "REVOKED",
            Self::Invalid => "INVALID",
        }
    }

    /// Parses the uppercase name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// mognet's `READY_STATES`: the result is done and will not change by itself.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Revoked | Self::Invalid)
    }

    /// mognet's `STARTED_STATES`.
    pub fn is_started(self) -> bool {
        matches!(self, Self::Running | Self::Suspended)
    }

    /// mognet's `STOPPED_STATES`: SUSPENDED and the ready states.
    pub fn is_stopped(self) -> bool {
        self == Self::Suspended || self.is_done()
    }
}

impl std::fmt::Display for ResultState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_states_are_the_four_terminal_ones() {
        let done: Vec<_> = ResultState::ALL.into_iter().filter(|s| s.is_done()).collect();
        assert_eq!(
            done,
            [
                ResultState::Success,
                ResultState::Failure,
                ResultState::Revoked,
                ResultState::Invalid
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in ResultState::ALL {
            assert_eq!(ResultState::from_name(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(ResultState::from_name("success"), None);
    }
}
