//! Decisions that are not I/O: how long keys live and when values are compressed.

pub mod compression;
pub mod ttl;

pub use compression::{CompressionPolicy, InflateError};
pub use ttl::{TtlKind, TtlPolicy};
