//! The `resultd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    resultd::cli::run(resultd::cli::Cli::parse()).await
}
