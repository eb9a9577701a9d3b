//! `switchyard-gateway`: loads the configuration and runs the gateway until SIGINT or
//! SIGTERM.

use anyhow::Context as _;
use switchyard_platform::{config, shutdown, telemetry};

/// glibc's malloc took over a third of the platform's CPU under load (perf:
/// `_int_malloc`, `malloc_consolidate`, `free`): events, frames and messages are many
/// short-lived allocations freed on other threads, which mimalloc handles better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: switchyard_gateway::Config =
        config::load().context("loading the gateway configuration")?;
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_gateway::run(config, shutdown::on_signal()).await
}
