//! The mognet result record and the lifecycle rules of its transitions.

use chrono::{DateTime, Utc};

use super::{ResultId, ResultState};

/// The eleven fields of a mognet `Result`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    /// The result id (mognet's request id).
    pub id: ResultId,
    /// Task name.
    pub name: Option<String>,
    /// Lifecycle state.
    pub state: ResultState,
    /// How many times a worker started or resumed the task.
    pub number_of_starts: i64,
    /// How many times the task stopped (suspended or finished).
    pub number_of_stops: i64,
    /// The parent result, for subtasks.
    pub parent_id: Option<ResultId>,
    /// When the task was submitted.
    pub created: Option<DateTime<Utc>>,
    /// When a worker first started it.
    pub started: Option<DateTime<Utc>>,
    /// When it reached a ready state.
    pub finished: Option<DateTime<Utc>>,
    /// The worker node that ran it.
    pub node_id: Option<String>,
    /// A debugging repr of the task's arguments.
    pub request_kwargs_repr: Option<String>,
}

impl ResultRecord {
    /// A fresh PENDING record created `now`, as `App.submit` writes it.
    pub fn pending(id: ResultId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            name: None,
            state: ResultState::Pending,
            number_of_starts: 0,
            number_of_stops: 0,
            parent_id: None,
            created: Some(now),
            started: None,
            finished: None,
            node_id: None,
            request_kwargs_repr: None,
        }
    }

    /// Whether the state is one of mognet's ready states.
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }
}

/// A change to some fields of a record; `Some(None)` sets a nullable field to null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordPatch {
    /// New task name.
    pub name: Option<Option<String>>,
    /// New state.
    pub state: Option<ResultState>,
    /// New start count.
    pub number_of_starts: Option<i64>,
    /// New stop count.
    pub number_of_stops: Option<i64>,
    /// New parent.
    pub parent_id: Option<Option<ResultId>>,
    /// New creation time.
    pub created: Option<Option<DateTime<Utc>>>,
    /// New start time.
    pub started: Option<Option<DateTime<Utc>>>,
    /// New finish time.
    pub finished: Option<Option<DateTime<Utc>>>,
    /// New worker node id.
    pub node_id: Option<Option<String>>,
    /// New argument repr.
    pub request_kwargs_repr: Option<Option<String>>,
}

/// A patch that would move a result out of a ready state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("result is {from} and may not become {to}: ready states are final (use force=true to override)")]
pub struct TransitionError {
    /// The current, ready state.
    pub from: ResultState,
    /// The state the patch asked for.
    pub to: ResultState,
}

impl RecordPatch {
    /// A patch that only sets the state.
    pub fn to_state(state: ResultState) -> Self {
        Self {
            state: Some(state),
            ..Self::default()
        }
    }

    /// Applies the patch the way mognet's own transitions would.
    ///
    /// A state change keeps mognet's bookkeeping unless the patch sets those fields itself:
    /// entering RUNNING counts a start (and stamps `started` when leaving PENDING), entering
    /// SUSPENDED or a ready state counts a stop, and a ready state stamps `finished`. Workers refuse
    /// tasks whose `starts - stops` exceeds their `max_retries`, so the counters must stay true.
    /// Ready states are final unless `force` is set.
    pub fn apply(
        &self,
        current: &ResultRecord,
        now: DateTime<Utc>,
        force: bool,
    ) -> Result<ResultRecord, TransitionError> {
        let mut next = current.clone();
        if let Some(to) = self.state {
            let from = current.state;
            if from.is_done() && to != from && !force {
                return Err(TransitionError { from, to });
            }
            if to != from {
                if to == ResultState::Running {
                    next.number_of_starts = next.number_of_starts.saturating_add(1);
                    if from == ResultState::Pending || next.started.is_none() {
                        next.started = Some(now);
                    }
                }
                if to.is_stopped() {
                    next.number_of_stops = next.number_of_stops.saturating_add(1);
                }
                if to.is_done() {
                    next.finished = Some(now);
                }
            }
            next.state = to;
        }
        if let Some(v) = &self.name {
            next.name.clone_from(v);
        }
        if let Some(v) = self.number_of_starts {
            next.number_of_starts = v;
        }
        if let Some(v) = self.number_of_stops {
            next.number_of_stops = v;
        }
        if let Some(v) = self.parent_id {
            next.parent_id = v;
        }
        if let Some(v) = self.created {
            next.created = v;
        }
        if let Some(v) = self.started {
            next.started = v;
        }
        if let Some(v) = self.finished {
            next.finished = v;
        }
        if let Some(v) = &self.node_id {
            next.node_id.clone_from(v);
        }
        if let Some(v) = &self.request_kwargs_repr {
            next.request_kwargs_repr.clone_from(v);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn pending() -> ResultRecord {
        ResultRecord::pending(ResultId::new_v4(), at(1))
    }

    #[test]
    fn starting_counts_a_start_and_stamps_started() {
        let r = RecordPatch::to_state(ResultState::Running)
            .apply(&pending(), at(2), false)
            .unwrap();
        assert_eq!((r.number_of_starts, r.number_of_stops), (1, 0));
        assert_eq!(r.started, Some(at(2)));
        assert_eq!(r.finished, None);
    }

    #[test]
    fn finishing_counts_a_stop_and_stamps_finished() {
        let running = RecordPatch::to_state(ResultState::Running)
            .apply(&pending(), at(2), false)
            .unwrap();
        let done = RecordPatch::to_state(ResultState::Success)
            .apply(&running, at(3), false)
            .unwrap();
        assert_eq!((done.number_of_starts, done.number_of_stops), (1, 1));
        assert_eq!(done.started, Some(at(2)));
        assert_eq!(done.finished, Some(at(3)));
    }

    #[test]
    fn resuming_keeps_the_first_start_time() {
        let r = pending();
        let r = RecordPatch::to_state(ResultState::Running)
            .apply(&r, at(2), false)
            .unwrap();
        let r = RecordPatch::to_state(ResultState::Suspended)
            .apply(&r, at(3), false)
            .unwrap();
        let r = RecordPatch::to_state(ResultState::Running)
            .apply(&r, at(4), false)
            .unwrap();
        assert_eq!((r.number_of_starts, r.number_of_stops), (2, 1));
        assert_eq!(r.started, Some(at(2)));
    }

    #[test]
    fn ready_states_are_final_unless_forced() {
        let done = RecordPatch::to_state(ResultState::Failure)
            .apply(&pending(), at(2), false)
            .unwrap();
        let err = RecordPatch::to_state(ResultState::Running)
            .apply(&done, at(3), false)
            .unwrap_err();
        assert_eq!(err.from, ResultState::Failure);
        assert!(
            RecordPatch::to_state(ResultState::Running)
                .apply(&done, at(3), true)
                .is_ok()
        );
        // Repeating the same ready state is not a transition.
        assert!(
            RecordPatch::to_state(ResultState::Failure)
                .apply(&done, at(3), false)
                .is_ok()
        );
    }

    #[test]
    fn explicit_fields_win_over_bookkeeping() {
        let patch = RecordPatch {
            state: Some(ResultState::Running),
            number_of_starts: Some(7),
            started: Some(None),
            ..RecordPatch::default()
        };
        let r = patch.apply(&pending(), at(2), false).unwrap();
        assert_eq!(r.number_of_starts, 7);
        assert_eq!(r.started, None);
    }
}
