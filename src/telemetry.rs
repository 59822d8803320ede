//! Logging setup and the process-wide counters that logs and metrics share.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

static NOTIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// Counts one keyspace notification received.
pub fn count_notification() {
    NOTIFICATIONS.fetch_add(1, Ordering::Relaxed);
}

/// Keyspace notifications received so far.
pub fn notifications() -> u64 {
    NOTIFICATIONS.load(Ordering::Relaxed)
}

/// Installs the global log subscriber (`RUST_LOG` overrides `log.filter`).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or container logs.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
