//! `switchyard-gateway`: loads the configuration and runs the gateway until SIGINT or
//! SIGTERM.

use anyhow::Context as _;
use switchyard_platform::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: switchyard_gateway::Config =
        config::load().context("loading the gateway configuration")?;
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_gateway::run(config, shutdown::on_signal()).await
}
