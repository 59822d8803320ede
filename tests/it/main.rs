//! The one integration test binary: support code and one module per area.
#![allow(unreachable_pub, missing_docs, dead_code, clippy::unwrap_used)]

mod auth;
mod browser;
mod cache;
mod celery;
mod celery_interop;
mod clients;
mod conformance;
mod connections;
mod generated_clients;
mod hostile;
mod idempotency;
mod interop;
mod listing;
mod logging;
mod metrics;
mod omniq;
mod openapi;
mod outage;
mod protocol;
mod redis_layout;
mod results;
mod rigatoni;
mod startup;
mod state;
mod store_errors;
mod support;
mod topologies;
mod tour;
mod waiting;
