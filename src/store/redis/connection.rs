//! Building fred clients: timeouts, reconnect policy and TLS.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{TlsConnector, UnresponsiveConfig};

use crate::store::StoreError;

/// The timeouts every client of the store is built with.
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) command: Duration,
    pub(super) connect: Duration,
    pub(super) max_reconnect_delay: u32,
}

/// A fred builder with resultd's timeouts and reconnect policy.
pub(super) fn builder(config: Config, t: Timeouts) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = t.command;
        })
        .with_connection_config(|c| {
            c.connection_timeout = t.connect;
            c.internal_command_timeout = t.command;
            c.max_command_attempts = 2;
            // A connection that stops answering (a blackholed network) is closed and
            // reconnected instead of failing every command until TCP gives up.
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(t.command),
                interval: (t.command / 4).max(Duration::from_millis(50)),
            };
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            };
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            50,
            t.max_reconnect_delay.max(50),
            2,
        ));
    builder
}

/// A rustls client config trusting the PEM certificates of `path` (and nothing else).
pub(super) fn tls_with_ca_file(path: &str) -> Result<TlsConnector, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |e: &dyn std::fmt::Display| StoreError::Backend(format!("redis.tls_ca_file {path}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(&e))? {
        roots.add(cert.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
    }
    if roots.is_empty() {
        return Err(fail(&"no certificate in the file"));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(config))
}
