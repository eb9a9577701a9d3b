//! `switchyard-executor`: loads the config, starts telemetry and runs the executor
//! until SIGINT or SIGTERM.

use switchyard_executor::Config;
use switchyard_platform::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::load()?;
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_executor::run(config, shutdown::on_signals()).await
}
