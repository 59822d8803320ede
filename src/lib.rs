//! resultd: task results and per-app state over HTTP, in mognet's Redis layout.
//!
//! Layers point one way: [`api`] (the HTTP edge) calls [`policy`] (TTL and compression
//! decisions) and [`store`] (atomic primitives on mognet's keys, embedded or Redis), and both
//! speak [`domain`] (ids, records, states: no I/O). [`server`] wires the layers into a running
//! service and [`connections`] serves it on each accepted connection; [`config`] loads the
//! settings; [`cli`] is the command line.
//!
//! A request's life: middleware gives it a request id and a timeout, an extractor parses its
//! path, query and body into domain types (any failure is a problem+json answer), the handler
//! asks the store, and the answer goes out with an ETag or a problem.

pub mod api;
pub mod cli;
pub mod config;
pub mod connections;
pub mod domain;
pub mod error;
pub mod policy;
pub mod server;
pub mod store;
pub mod telemetry;
