//! `switchyard up` and `switchyard serve <service>`: the platform in this process, all
//! four services or one.

use crate::cli::Service;
use crate::cli::exit::Exit;
use crate::{demo, up};
use switchyard_platform::{config, shutdown, telemetry};

/// `switchyard up [--demo] [--exit-after-demo]`.
pub async fn up(run_demo: bool, exit_after_demo: bool) -> anyhow::Result<Exit> {
    let signals = shutdown::on_signals();
    let graceful = signals.graceful.clone();
    let platform = up::start(signals).await?;
    println!("switchyard is up: gateway at {}", platform.gateway_url);
    if run_demo || exit_after_demo {
        let result = demo::run(&demo::DemoOptions {
            gateway_url: platform.gateway_url.clone(),
            token: admin_token(),
            prompt: "Create hello.txt please".to_owned(),
        })
        .await;
        if exit_after_demo {
            graceful.cancel();
            platform.wait().await?;
            let status = result?;
            if status != "succeeded" {
                anyhow::bail!("the demo run ended {status}");
            }
            return Ok(Exit::Success);
        }
        if let Err(e) = result {
            eprintln!("demo run failed: {e:#}");
        }
        println!("platform still running; Ctrl-C to stop");
    }
    platform.wait().await?;
    Ok(Exit::Success)
}

/// One service per process, configured from file and environment exactly like its own
/// binary: what the fault-injection tests start and kill -9.
pub async fn serve(service: Service) -> anyhow::Result<Exit> {
    match service {
        Service::Gateway => {
            let config: switchyard_gateway::Config = config::load()?;
            telemetry::init(&config.telemetry);
            config.validate()?;
            switchyard_gateway::run(config, shutdown::on_signal()).await?;
        }
        Service::ControlPlane => {
            let config: switchyard_control_plane::Config = config::load()?;
            telemetry::init(&config.telemetry);
            config.validate()?;
            switchyard_control_plane::run(config, shutdown::on_signal()).await?;
        }
        Service::ExecutorManager => {
            let config: switchyard_executor_manager::Config = config::load()?;
            telemetry::init(&config.telemetry);
            config.validate()?;
            switchyard_executor_manager::run(config, shutdown::on_signal()).await?;
        }
        Service::Executor => {
            let config =
                config::load::<switchyard_executor::Config>()?.with_run_hosts_from_this_binary();
            telemetry::init(&config.telemetry);
            config.validate()?;
            switchyard_executor::run(config, shutdown::on_signals()).await?;
        }
    }
    Ok(Exit::Success)
}

/// The admin token of the gateway configured here (file and environment), for the demo.
pub fn admin_token() -> String {
    config::load::<switchyard_gateway::Config>()
        .ok()
        .and_then(|c| c.gateway.admin_token)
        .map(|t| {
            use switchyard_platform::config::ExposeSecret;
            t.expose_secret().to_owned()
        })
        .unwrap_or_default()
}
