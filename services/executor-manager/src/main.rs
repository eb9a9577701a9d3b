//! `switchyard-executor-manager`: loads the configuration and runs the service until
//! SIGINT or SIGTERM.

use switchyard_executor_manager::Config;
use switchyard_platform::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::load()?;
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_executor_manager::run(config, shutdown::on_signal()).await
}
