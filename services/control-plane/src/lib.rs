//! The control-plane: apps, execution profiles and runs in Postgres. It accepts runs
//! (persisting each with an outbox entry, then publishing `run.queued` and the run
//! command), groups them into conversations, projects run status from the events
//! stream, carries stops and human-loop replies to whoever owns a run, and lists the
//! providers live executors offer. See `docs/architecture.md`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod actor;
mod config;
mod control;
mod database;
mod durations;
mod http;
mod idempotency;
mod json;
mod outbox;
mod projector;
mod providers;
mod queue;
mod reconciler;
mod revocation;
mod runs;
mod state;
mod store;
mod waiting;

pub use config::{Config, ControlPlaneSettings};

/// The `(method, path)` of every `/api/*` route the control-plane serves (the gateway
/// forwards them), so a test can hold the gateway's OpenAPI description to them.
pub fn api_routes() -> Vec<switchyard_platform::routes::Route> {
    http::api_routes()
}

/// What the integration tests of this crate and the workspace's end-to-end tests drive
/// directly: one reconciliation pass on demand. Not an API for anything else.
#[doc(hidden)]
pub mod test_support {
    pub use crate::reconciler::{PassReport, ReconcileError, ReconcileSettings, Reconciler};
    pub use crate::store::StoreError;
}

use anyhow::Context as _;
use async_nats::jetstream;
use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::events::EventLog;
use switchyard_platform::http::ReadinessCheck;
use switchyard_platform::metrics::Metrics;
use switchyard_platform::nats::{self, Resources};
use switchyard_platform::service::ServiceHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The schema, embedded at compile time from the repository's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connects to NATS and Postgres, provisions the streams and the projector consumer,
/// migrates, binds the HTTP listener and spawns the projector and the outbox sweeper.
/// The returned handle's task ends after a graceful shutdown once `shutdown` is
/// cancelled: stop accepting requests → finish the projector's batch, the sweep and
/// the publications of runs just accepted → drain NATS → close the pool.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<ServiceHandle> {
    config.validate()?;
    let settings = Arc::new(config.control_plane.clone());

    let client = nats::connect(&config.nats, "switchyard-control-plane").await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(config.nats.request_timeout())
        .build(client.clone());
    nats::provision(
        &js,
        Resources {
            run_commands: true,
            run_events: true,
            projector_consumer: true,
            ..Default::default()
        },
    )
    .await?;
    let events = EventLog::open(js.clone()).await?;

    let pool = database::connect(&config.database).await?;
    database::migrate(&pool).await?;

    // Our own token, so that a failed HTTP server stops this service's tasks without
    // cancelling the caller's (other services may share it in `switchyard up`).
    let shutdown = shutdown.child_token();
    let metrics = Metrics::new("control-plane", &shutdown);
    let events = events.with_metrics(&metrics);
    let publisher = Arc::new(outbox::Publisher::new(js.clone(), events.clone()));
    let tracker = TaskTracker::new();
    let (cleaner, clean_task) = outbox::Cleaner::new(
        pool.clone(),
        settings.outbox_sweep_interval(),
        shutdown.clone(),
    );
    let state = Arc::new(state::Shared {
        pool: pool.clone(),
        js: js.clone(),
        runs: Arc::new(runs::Runs::new(
            pool.clone(),
            publisher.clone(),
            events.clone(),
            cleaner,
            settings.clone(),
            config.nats.request_timeout(),
            tracker.clone(),
        )),
        control: Arc::new(control::RunControl::new(
            client.clone(),
            events,
            settings.control_timeout(),
            config.nats.request_timeout(),
        )),
        settings: settings.clone(),
        nats_timeout: config.nats.request_timeout(),
    });
    let router = http::router(
        state,
        readiness(client.clone(), pool.clone()),
        switchyard_platform::metrics::routes(metrics.clone(), &config.metrics, None),
    );
    let listener = switchyard_platform::http::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let http_addr = listener.local_addr()?;
    tracing::info!(%http_addr, "control-plane listening");

    tracker.spawn(clean_task);
    // One connection: the projector applies one batch at a time.
    let projector_pool = database::dedicated(&pool, 1);
    tracker.spawn(
        projector::Projector::new(js.clone(), projector_pool.clone(), metrics.clone())
            .run(shutdown.clone()),
    );
    tracker.spawn(outbox::sweep_loop(
        pool.clone(),
        publisher,
        settings.outbox_sweep_interval(),
        shutdown.clone(),
    ));
    tracker.spawn(reconciler::run(
        client.clone(),
        js.clone(),
        pool.clone(),
        settings.clone(),
        metrics,
        shutdown.clone(),
    ));

    let task = tokio::spawn(async move {
        let served =
            switchyard_platform::http::serve(listener, router, &config.http, shutdown.clone())
                .await;
        // However the server ended, the background tasks must stop too.
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        if let Err(e) = client.drain().await {
            tracing::debug!(error = %e, "NATS drain failed");
        }
        projector_pool.close().await;
        pool.close().await;
        tracing::info!("control-plane stopped");
        served.context("HTTP server failed")
    });
    Ok(ServiceHandle::new("control-plane", Some(http_addr), task))
}

/// [`start`], then wait until the service has shut down.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

/// Ready when NATS is connected and Postgres answers.
fn readiness(client: async_nats::Client, pool: sqlx::PgPool) -> ReadinessCheck {
    let nats_ready = switchyard_platform::http::nats_ready(client);
    Arc::new(move || {
        let nats_ready = nats_ready.clone();
        let pool = pool.clone();
        Box::pin(async move {
            nats_ready().await?;
            let ping = sqlx::query_scalar!("SELECT 1 AS one").fetch_one(&pool);
            match tokio::time::timeout(Duration::from_secs(2), ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("Postgres does not answer: {}", describe(&e))),
                Err(_) => Err("Postgres does not answer in time".to_owned()),
            }
        })
    })
}

/// A short, secret-free description of a sqlx error (its text may quote connection
/// details).
fn describe(e: &sqlx::Error) -> &'static str {
    if database::is_unavailable(e) {
        "unavailable"
    } else {
        "query failed"
    }
}
