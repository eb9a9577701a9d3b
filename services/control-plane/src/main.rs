//! `switchyard-control-plane`: loads the configuration and runs the control-plane until
//! SIGINT or SIGTERM.

use switchyard_platform::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: switchyard_control_plane::Config = config::load()?;
    telemetry::init(&config.telemetry);
    config.validate()?;
    switchyard_control_plane::run(config, shutdown::on_signal()).await
}
