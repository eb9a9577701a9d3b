//! `switchyard` — run the whole platform in one process, or a demo run against it.
//!
//! ```text
//! switchyard up [--demo] [--exit-after-demo]   start all four services (config: see docs/configuration.md)
//! switchyard demo [--gateway URL] [--token T]  start a scripted run and print its events
//! switchyard serve <service>                   one service per process: gateway, control-plane,
//!                                               executor-manager or executor
//! ```

use anyhow::bail;
use switchyard::{demo, up};

const USAGE: &str = "usage: switchyard up [--demo] [--exit-after-demo]\n       switchyard demo [--gateway URL] [--token TOKEN] [--prompt TEXT]\n       switchyard serve <gateway|control-plane|executor-manager|executor>\n       switchyard bench [--quick] [--json PATH] [--only NAME,...]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => {
            let demo = args.iter().any(|a| a == "--demo");
            let exit_after_demo = args.iter().any(|a| a == "--exit-after-demo");
            let signals = switchyard_platform::shutdown::on_signals();
            let shutdown = signals.graceful.clone();
            let platform = up::start(signals).await?;
            println!("switchyard is up: gateway at {}", platform.gateway_url);
            if demo || exit_after_demo {
                let token = admin_token();
                let result = demo::run(&demo::DemoOptions {
                    gateway_url: platform.gateway_url.clone(),
                    token,
                    prompt: "Create hello.txt please".to_owned(),
                })
                .await;
                if exit_after_demo {
                    shutdown.cancel();
                    platform.wait().await?;
                    let status = result?;
                    if status != "succeeded" {
                        bail!("the demo run ended {status}");
                    }
                    return Ok(());
                }
                if let Err(e) = result {
                    eprintln!("demo run failed: {e:#}");
                }
                println!("platform still running; Ctrl-C to stop");
            }
            platform.wait().await
        }
        Some("demo") => {
            let gateway_url =
                flag(&args, "--gateway").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
            let token = flag(&args, "--token").unwrap_or_else(admin_token);
            let prompt =
                flag(&args, "--prompt").unwrap_or_else(|| "Create hello.txt please".to_owned());
            let status = demo::run(&demo::DemoOptions {
                gateway_url,
                token,
                prompt,
            })
            .await?;
            if status != "succeeded" {
                bail!("the demo run ended {status}");
            }
            Ok(())
        }
        // One service per process, configured from file and environment exactly like
        // its own binary: what the fault-injection tests start and kill -9.
        Some("serve") => {
            use switchyard_platform::{config, shutdown, telemetry};
            match args.get(1).map(String::as_str) {
                Some("gateway") => {
                    let config: switchyard_gateway::Config = config::load()?;
                    telemetry::init(&config.telemetry);
                    config.validate()?;
                    switchyard_gateway::run(config, shutdown::on_signal()).await
                }
                Some("control-plane") => {
                    let config: switchyard_control_plane::Config = config::load()?;
                    telemetry::init(&config.telemetry);
                    config.validate()?;
                    switchyard_control_plane::run(config, shutdown::on_signal()).await
                }
                Some("executor-manager") => {
                    let config: switchyard_executor_manager::Config = config::load()?;
                    telemetry::init(&config.telemetry);
                    config.validate()?;
                    switchyard_executor_manager::run(config, shutdown::on_signal()).await
                }
                Some("executor") => {
                    let config = config::load::<switchyard_executor::Config>()?
                        .with_run_hosts_from_this_binary();
                    telemetry::init(&config.telemetry);
                    config.validate()?;
                    switchyard_executor::run(config, shutdown::on_signals()).await
                }
                _ => {
                    eprintln!(
                        "usage: switchyard serve <gateway|control-plane|executor-manager|executor>"
                    );
                    std::process::exit(2);
                }
            }
        }
        Some("bench") => switchyard::bench::cli(&args[1..]).await,
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        // Started by an executor of this process for a detached run.
        Some(switchyard_executor::RUN_HOST_COMMAND) => switchyard_executor::run_host().await,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The admin token the demo authenticates with: the gateway's configured one.
fn admin_token() -> String {
    switchyard_platform::config::load::<switchyard_gateway::Config>()
        .ok()
        .and_then(|c| c.gateway.admin_token)
        .map(|t| {
            use switchyard_platform::config::ExposeSecret;
            t.expose_secret().to_owned()
        })
        .unwrap_or_default()
}
