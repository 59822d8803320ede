//! The one integration test binary: support code and one module per area.
#![allow(unreachable_pub, missing_docs, dead_code, clippy::unwrap_used)]

mod auth;
mod clients;
mod conformance;
mod listing;
mod logging;
mod metrics;
mod openapi;
mod redis_layout;
mod results;
mod support;
mod topologies;
mod waiting;
