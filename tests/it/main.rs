//! The one integration test binary: support code and one module per area.
#![allow(unreachable_pub, missing_docs, dead_code, clippy::unwrap_used)]

mod conformance;
mod hostile;
mod interop;
mod openapi;
mod outage;
mod redis_layout;
mod results;
mod state;
mod support;
mod waiting;
