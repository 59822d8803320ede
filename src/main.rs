//! The `resultd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc: glibc's malloc serialises on arena locks when buffers cross worker threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    resultd::cli::run(resultd::cli::Cli::parse()).await
}
