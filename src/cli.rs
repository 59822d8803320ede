//! The command line: `serve` (default), `openapi`, `healthcheck`, `config`, `hash-token`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::api::ApiContext;
use crate::config::Settings;
use crate::server;

/// Task results and per-app state over HTTP, in mognet's Redis layout.
#[derive(Debug, Parser)]
#[command(
    name = "resultd",
    version,
    long_about = "Task results and per-app state over HTTP, in mognet's Redis layout.\n\n\
                  Stores, completes and serves results that mognet's Python workers see too, and lets\n\
                  any client wait for a result without polling. With no subcommand it serves.",
    after_help = "Examples:\n  \
        resultd                                    serve on 127.0.0.1:8080 with the embedded store;\n  \
        \x20                                          docs at http://127.0.0.1:8080/docs/\n  \
        RESULTD_STORE=redis://127.0.0.1:6379/0 resultd serve\n  \
        curl -s localhost:8080/health/ready\n  \
        resultd config                             the effective settings, passwords redacted\n\n\
        Settings: config/default.toml, the file named by RESULTD_CONFIG, then RESULTD_* variables\n\
        (RESULTD_LISTEN, RESULTD_STORE, RESULTD_REDIS__COMMAND_TIMEOUT_MS, ...)."
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and its docs page (the default).
    #[command(
        long_about = "Serve the HTTP API and its docs page (the default).\n\n\
                      Logs one line with the listen address, the store (password redacted), the\n\
                      default app and the docs URL. A store that is down at startup is not fatal:\n\
                      requests get 503 store-unavailable until it answers. SIGTERM or Ctrl-C answers\n\
                      held waits, drains requests for up to server.shutdown_grace_ms and exits 0.",
        after_help = "Examples:\n  \
            resultd serve\n  \
            RESULTD_LISTEN=0.0.0.0:8080 RESULTD_STORE=redis://redis:6379/0 resultd serve"
    )]
    Serve,
    /// Print the OpenAPI document (no store needed).
    #[command(after_help = "Example:\n  resultd openapi > openapi/openapi.json")]
    Openapi,
    /// Probe /health/ready of the configured listen address; exit 0 when ready.
    #[command(after_help = "Example (a Docker HEALTHCHECK):\n  resultd healthcheck && echo ready")]
    Healthcheck,
    /// Print the effective configuration as TOML, passwords redacted.
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
    let addr = listener.local_addr().unwrap_or(settings.listen);
    // Signals count from here on: a SIGTERM while the store is still connecting stops at once.
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let signalled = server::shutdown_signal();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutting down: answering waiters, draining requests");
        signal.cancel();
    });
    // One line that says where everything is, before anything can keep the operator waiting.
    tracing::info!(
        "resultd listening on {addr} store={} default_app={} docs={}",
        settings.store_redacted(),
        settings.default_app,
        docs_url(addr)
    );
    let store = tokio::select! {
        opened = server::open_store(&settings) => match opened {
            Ok(s) => s,
            Err(e) => return fail(&e),
        },
        () = shutdown.cancelled() => return ExitCode::SUCCESS,
    };
    let ctx = match ApiContext::new(settings, store, shutdown) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    server::serve(listener, ctx).await;
    ExitCode::SUCCESS
}

/// The address a browser on this machine opens for the docs page.
fn docs_url(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}/docs/")
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
