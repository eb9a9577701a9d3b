//! `switchyard up`: the four services in one process, configured from the same file and
//! environment as when they run apart.

use anyhow::Context;
use switchyard_platform::config;
use switchyard_platform::service::ServiceHandle;
use switchyard_platform::shutdown::Signals;

/// The running platform.
pub struct Platform {
    pub services: Vec<ServiceHandle>,
    pub gateway_url: String,
}

impl Platform {
    /// Waits until every service has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for service in self.services {
            let name = service.name;
            if let Err(e) = service.wait().await {
                tracing::error!(service = name, error = format!("{e:#}"), "service failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Loads every service's config and starts them in dependency order: the
/// control-plane (migrations, streams), executor, executor-manager, gateway. Every
/// service stops on `signals.graceful`; the executor then drains its runs until
/// `signals.immediate` (or its drain timeout).
pub async fn start(signals: Signals) -> anyhow::Result<Platform> {
    let shutdown = signals.graceful.clone();
    let mut control_plane: switchyard_control_plane::Config = config::load()?;
    let executor = config::load::<switchyard_executor::Config>()?.with_run_hosts_from_this_binary();
    let manager: switchyard_executor_manager::Config = config::load()?;
    let mut gateway: switchyard_gateway::Config = config::load()?;
    // In one process the gateway is the only legitimate caller of the control-plane:
    // both sides hold the same secret — the configured one if either names it, else a
    // fresh one (nothing outside this process needs to know it).
    let internal = &mut control_plane.control_plane.internal_token;
    let sent = &mut gateway.gateway.control_plane_token;
    match (internal.clone(), sent.clone()) {
        (None, None) => {
            let secret = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            *internal = Some(secret.clone().into());
            *sent = Some(secret.into());
        }
        (Some(secret), None) => *sent = Some(secret),
        (None, Some(secret)) => *internal = Some(secret),
        (Some(internal), Some(sent)) => {
            use switchyard_platform::config::ExposeSecret as _;
            if internal.expose_secret() != sent.expose_secret() {
                anyhow::bail!(
                    "control_plane.internal_token and gateway.control_plane_token differ: \
                     in one process the gateway could not call the control-plane; set one \
                     of them, or both to the same value"
                );
            }
        }
    }
    switchyard_platform::telemetry::init(&gateway.telemetry);
    control_plane.validate()?;
    executor.validate()?;
    manager.validate()?;
    gateway.validate()?;

    let mut services = Vec::new();
    let control_plane = switchyard_control_plane::start(control_plane, shutdown.clone())
        .await
        .context("control-plane failed to start")?;
    // The gateway of this process talks to the control-plane of this process, wherever
    // `control_plane.listen` put it (a moved port must not leave the gateway calling
    // the default one).
    if let Some(addr) = control_plane.http_addr {
        let host = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        gateway.gateway.control_plane_url =
            format!("http://{}", std::net::SocketAddr::new(host, addr.port()));
    }
    services.push(control_plane);
    services.push(
        switchyard_executor::start(executor, signals)
            .await
            .context("executor failed to start")?,
    );
    services.push(
        switchyard_executor_manager::start(manager, shutdown.clone())
            .await
            .context("executor-manager failed to start")?,
    );
    let gateway = switchyard_gateway::start(gateway, shutdown.clone())
        .await
        .context("gateway failed to start")?;
    let gateway_url = gateway
        .http_addr
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    services.push(gateway);
    for service in &services {
        if let Some(addr) = service.http_addr {
            tracing::info!(service = service.name, %addr, "listening");
        }
    }
    Ok(Platform {
        services,
        gateway_url,
    })
}
