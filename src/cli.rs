//! The command line: `serve` (default), `openapi`, `healthcheck`, `config`, `hash-token`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::server::{self, ApiContext};

/// Task results and per-app state over HTTP, in mognet's Redis layout.
#[derive(Debug, Parser)]
#[command(
    name = "resultd",
    version,
    after_help = "Examples:\n  resultd                                   serve on 127.0.0.1:8080 with the embedded store\n  RESULTD_STORE=redis://127.0.0.1:6379/0 resultd serve\n  resultd openapi > openapi/openapi.json\n  resultd config\n\nSettings: config/default.toml, the file named by RESULTD_CONFIG, then RESULTD_* variables."
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    #[command(after_help = "Example:\n  RESULTD_LISTEN=0.0.0.0:8080 RESULTD_STORE=redis://redis:6379/0 resultd serve")]
    Serve,
    /// Print the OpenAPI document (no store needed).
    #[command(after_help = "Example:\n  resultd openapi > openapi/openapi.json")]
    Openapi,
    /// Probe /health/ready of the configured listen address; exit 0 when ready.
    #[command(after_help = "Example (a Docker HEALTHCHECK):\n  resultd healthcheck")]
    Healthcheck,
    /// Print the effective configuration, secrets redacted.
    #[command(after_help = "Example:\n  RESULTD_STORE=redis://user:secret@h:6379/0 resultd config")]
    Config,
    /// Print the SHA-256 of a bearer token, for `auth.tokens` in the config.
    #[command(after_help = "Example:\n  resultd hash-token my-secret-token")]
    HashToken {
        /// The token.
        token: String,
    },
}

/// Runs the command line; the exit code of the process.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            print!("{}", crate::api::openapi::spec());
            ExitCode::SUCCESS
        }
        Command::HashToken { token } => {
            use sha2::Digest;
            println!("{}", hex::encode(sha2::Sha256::digest(token.as_bytes())));
            ExitCode::SUCCESS
        }
        Command::Config => match Settings::load() {
            Ok(s) => {
                print!("{}", s.to_redacted_toml());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Healthcheck => match Settings::load() {
            Ok(s) => healthcheck(&s).await,
            Err(e) => fail(&e),
        },
        Command::Serve => match Settings::load() {
            Ok(s) => serve(s).await,
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("resultd: {e}");
    ExitCode::from(2)
}

async fn serve(settings: Settings) -> ExitCode {
    crate::telemetry::init(&settings.log);
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}: {e}", settings.listen)),
    };
    let store = match server::open_store(&settings).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let shutdown = CancellationToken::new();
    let addr = listener
        .local_addr()
        .map_or_else(|_| settings.listen.to_string(), |a| a.to_string());
    tracing::info!(
        "resultd serving listen={addr} store={} default_app={} docs=http://{addr}/docs",
        settings.store_redacted(),
        settings.default_app
    );
    let ctx = match ApiContext::new(settings, store, shutdown.clone()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let signal = shutdown.clone();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        tracing::info!("shutting down: answering waiters, draining requests");
        signal.cancel();
    });
    match server::serve(listener, ctx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn healthcheck(settings: &Settings) -> ExitCode {
    let mut addr = settings.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /health/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Some(true)) => ExitCode::SUCCESS,
        _ => {
            eprintln!("resultd: {addr}/health/ready is not ready");
            ExitCode::FAILURE
        }
    }
}
