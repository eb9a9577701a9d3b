//! `switchyard`: see `switchyard --help` (and [`switchyard::cli`]).

use clap::Parser as _;
use std::process::ExitCode;

/// glibc's malloc took over a third of the platform's CPU under load (perf:
/// `_int_malloc`, `malloc_consolidate`, `free`): events, frames and messages are many
/// short-lived allocations freed on other threads, which mimalloc handles better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Started by an executor of this process for a detached run: not a user command.
    if std::env::args().nth(1).as_deref() == Some(switchyard_executor::RUN_HOST_COMMAND) {
        return match switchyard_executor::run_host().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = switchyard::cli::Cli::parse();
    switchyard::cli::run(cli).await.into()
}
