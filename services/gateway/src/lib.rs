//! The public HTTP entry point of Switchyard.
//!
//! * authenticates every `/api/*` request with a bearer token or a browser session
//!   cookie (`http/auth.rs`, `tokens.rs`), with a CSRF check on cookie-authenticated
//!   changes; `/api/session` signs in and out (`http/session.rs`, `session.rs`);
//! * forwards the API to the control-plane (`http/proxy.rs`, `control_plane.rs`);
//! * serves `GET /api/runs/{id}/stream` as SSE straight from the run's JetStream
//!   history (`http/streams.rs`), with one JetStream tail per run per gateway fanned
//!   out in memory to every client of that run (`hub.rs`);
//! * applies the control-plane's access-change notices (NATS) at once: a principal's
//!   cached token answers are dropped and its SSE streams ended (`revocation.rs`);
//! * serves the portal (the built web workbench) at `/` (`portal.rs`) and, when
//!   configured, answers cross-origin requests of listed origins (`http/cors.rs`);
//! * answers `/healthz` and `/readyz` without authentication, and `GET /api/health`
//!   (admins and operators): whether runs can work, and whose side is at fault
//!   (`health`);
//! * describes its whole API (its own routes and the forwarded ones) as OpenAPI 3.1 at
//!   `GET /api/openapi.json`, with a page at `GET /api/docs` (`openapi.rs`).
//!
//! The gateway keeps no state of its own besides the in-memory fan-out and token cache,
//! so any number of gateways can run side by side behind a load balancer.
//!
//! Outside this crate only [`start`], [`run`] and the [`Config`] are used. Inside, a
//! module imports only from the layers below its own:
//!
//! | layer | modules |
//! |---|---|
//! | HTTP | `http` (the router), its middleware and handlers, `http::state` |
//! | authentication | `tokens` (who a bearer token belongs to) |
//! | shared parts | `revocation`, `hub`, `control_plane`, `session`, `portal`, `health` |
//! | leaves | `config`, `auth` (the principal types), `token_cache`, `grants`, `openapi` |
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod auth;
mod config;
mod control_plane;
mod grants;
mod health;
mod http;
mod hub;
mod openapi;
mod portal;
mod revocation;
mod session;
mod token_cache;
mod tokens;

pub use config::{Config, GatewayConfig};

use async_nats::jetstream;
use switchyard_contracts::subjects::PRINCIPAL_CHANGED;
use switchyard_platform::events::EventLog;
use switchyard_platform::metrics::Metrics;
use switchyard_platform::nats::{self, NatsConnection, Resources};
use switchyard_platform::service::ServiceHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connects to NATS, provisions the `RUN_EVENTS` stream (read-only use), binds the HTTP
/// listener and serves until `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<ServiceHandle> {
    config.validate()?;
    let gateway = config.gateway.clone();
    if gateway.admin_token.is_none() {
        tracing::warn!("gateway.admin_token is not set: the API is served without authentication");
    }

    let NatsConnection {
        client,
        lifecycle: connection,
    } = NatsConnection::open(&config.nats, "switchyard-gateway").await?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(config.nats.request_timeout());
    nats::provision(
        &js,
        Resources {
            run_events: true,
            ..Default::default()
        },
    )
    .await?;
    let metrics = Metrics::new("gateway", &shutdown);
    let log = EventLog::open(js).await?.with_metrics(&metrics);

    let tasks = TaskTracker::new();
    let hub = hub::Hub::new(
        log.clone(),
        connection.clone(),
        shutdown.child_token(),
        tasks.clone(),
    );
    let control_plane =
        control_plane::ControlPlane::new(&gateway, config.http.header_read_timeout())?;
    let (authenticator, revocations) = tokens::from_config(&gateway, control_plane.clone());
    // Subscribed (and the server told) before serving, so no notice about a request
    // this gateway answers can be missed for want of a subscription.
    let notices = client.subscribe(PRINCIPAL_CHANGED).await?;
    client.flush().await?;
    tasks.spawn(revocation::listen(
        connection,
        notices,
        revocations.clone(),
        shutdown.child_token(),
    ));
    let sessions = session::Sessions::from_config(&gateway)?;
    let state = std::sync::Arc::new(http::state::Shared {
        authenticator,
        sessions,
        portal: portal::Portal::new(&gateway.portal_dir),
        revocations,
        control_plane: control_plane.clone(),
        health: health::HealthChecker::new(
            client.clone(),
            config.nats.request_timeout(),
            control_plane.clone(),
            health::ProbeSettings {
                timeout: gateway.health_probe_timeout(),
                prompt: gateway.health_probe_prompt.clone(),
                cache: gateway.health_probe_cache(),
                budget: gateway.health_report_budget(),
            },
            tasks.clone(),
            shutdown.child_token(),
        ),
        hub,
        log,
        quota: http::quota::StreamQuota::new(
            gateway.max_streams_per_token,
            gateway.stream_opens_per_minute,
        ),
        keep_alive: gateway.keep_alive(),
        retry_frame: switchyard_platform::sse::retry(gateway.sse_retry_ms),
        sse: http::state::SseMetrics::new(&metrics),
    });
    let metrics = switchyard_platform::metrics::routes(metrics, &config.metrics, None);
    let router = http::router(state, &gateway, client.clone(), metrics);

    let listener = switchyard_platform::http::bind(gateway.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, control_plane = %control_plane.display_url(), "gateway listening");

    let task = tokio::spawn(async move {
        // Cancelling `shutdown` ends every SSE stream (their feeds stop), so the graceful
        // shutdown of the HTTP server does not wait on clients that never disconnect.
        let served =
            switchyard_platform::http::serve(listener, router, &config.http, shutdown).await;
        tasks.close();
        tasks.wait().await;
        if let Err(e) = client.drain().await {
            tracing::warn!(error = %e, "draining the NATS connection failed");
        }
        tracing::info!("gateway stopped");
        served.map_err(Into::into)
    });
    Ok(ServiceHandle::new("gateway", Some(addr), task))
}

/// The `(method, path)` of every route the gateway answers itself (health routes and
/// its own `/api/*` ones; the portal's aside), so a test can hold the OpenAPI
/// description to them together with the control-plane's forwarded routes.
pub fn own_routes() -> Vec<switchyard_platform::routes::Route> {
    http::own_routes()
}

/// [`start`], then wait until the gateway has shut down.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}
