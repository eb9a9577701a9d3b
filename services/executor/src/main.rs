//! `switchyard-executor`: loads the config, starts telemetry and runs the executor
//! until SIGINT or SIGTERM. Started as `switchyard-executor run-host` (by itself) it is
//! the run host of one detached run.

use switchyard_executor::Config;
use switchyard_platform::{config, shutdown, telemetry};

/// glibc's malloc took over a third of the platform's CPU under load (perf:
/// `_int_malloc`, `malloc_consolidate`, `free`): events, frames and messages are many
/// short-lived allocations freed on other threads, which mimalloc handles better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(switchyard_executor::RUN_HOST_COMMAND) {
        return switchyard_executor::run_host().await;
    }
    let config = config::load::<Config>()?.with_run_hosts_from_this_binary();
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_executor::run(config, shutdown::on_signals()).await
}
