//! Pure types and rules of results and state: no HTTP, no Redis, no I/O.

pub mod app_state;
pub mod id;
pub mod result;
pub mod state;
pub mod value;

pub use app_state::{StateField, StateKey};
pub use id::{AppName, InvalidName, ResultId};
pub use result::{RecordPatch, ResultRecord, TransitionError};
pub use state::ResultState;
pub use value::{Encoding, ValueHolder};
