//! `switchyard-executor-manager`: loads the configuration and runs the service until
//! SIGINT or SIGTERM.

use switchyard_executor_manager::Config;
use switchyard_platform::{config, shutdown, telemetry};

/// glibc's malloc took over a third of the platform's CPU under load (perf:
/// `_int_malloc`, `malloc_consolidate`, `free`): events, frames and messages are many
/// short-lived allocations freed on other threads, which mimalloc handles better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::load()?;
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_executor_manager::run(config, shutdown::on_signal()).await
}
