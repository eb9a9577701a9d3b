//! The executor-manager: takes run commands off the shared `RUN_COMMANDS` work queue,
//! resolves each run's timeout, claims the run in its event log and dispatches it to
//! an executor with a free slot (see docs/architecture.md, "The path of a run").
//!
//! Any number of manager processes may run side by side: they share one durable
//! consumer, and the event log's fencing makes sure a run is dispatched at most once.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod connection;
mod dispatch;
mod executors;
mod timeouts;
mod workers;

pub use config::{Config, ExecutorManagerSettings, TimeoutTemplate};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::PullConsumer};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::{WorkerId, subjects};
use switchyard_platform::events::EventLog;
use switchyard_platform::http::{self, health_routes, nats_ready, with_common_layers};
use switchyard_platform::metrics::{Collector, Metrics};
use switchyard_platform::nats::{self as platform_nats, NatsConnection, Resources};
use switchyard_platform::service::ServiceHandle;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::executors::Executors;
use crate::workers::Workers;

/// How long start-up waits for the presence cache to load the executors already
/// known, so that a restarted manager does not nak its backlog as "no executor".
const PRESENCE_PRIME_LIMIT: Duration = Duration::from_secs(3);
/// Freshness window until the bucket's own TTL has been read.
const INITIAL_PRESENCE_TTL: Duration = Duration::from_secs(15);
/// Bound on answering a health probe.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on flushing the NATS connection at shutdown (NATS may be down).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects, provisions, loads executor presence, binds the health endpoints and starts
/// the workers. The returned handle's task ends after a graceful shutdown once
/// `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<ServiceHandle> {
    let settings = Arc::new(config.executor_manager.clone());
    let worker_id = settings
        .worker_id
        .clone()
        .unwrap_or_else(WorkerId::generate);

    let NatsConnection { client, lifecycle } =
        NatsConnection::open(&config.nats, "switchyard-executor-manager").await?;
    let js = jetstream::new(client.clone());
    platform_nats::provision(
        &js,
        Resources {
            run_commands: true,
            run_events: true,
            executor_manager_consumer: true,
            executors_kv: true,
            ..Resources::default()
        },
    )
    .await?;
    let metrics = Metrics::new("executor-manager", &shutdown);
    let events = EventLog::open(js.clone()).await?.with_metrics(&metrics);
    let consumer: PullConsumer = js
        .get_stream(subjects::RUN_COMMANDS_STREAM)
        .await
        .context("open the RUN_COMMANDS stream")?
        .get_consumer(subjects::RUN_COMMANDS_CONSUMER)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("open the executor-manager consumer")?;

    // The presence watch outlives the workers' shutdown: dispatches still in flight
    // need it. It is stopped once they are done.
    let background = CancellationToken::new();
    let executors = Executors::new(INITIAL_PRESENCE_TTL);
    let watcher = tokio::spawn(executors.clone().watch(
        js.clone(),
        lifecycle.clone(),
        background.clone(),
    ));
    if !executors.wait_primed(PRESENCE_PRIME_LIMIT).await {
        tracing::warn!("executor presence not loaded yet; starting the workers anyway");
    }

    let listener = http::bind(settings.listen)
        .await
        .with_context(|| format!("bind executor_manager.listen = {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let router = with_common_layers(
        Router::new()
            .merge(health_routes(nats_ready(client.clone())))
            .merge(switchyard_platform::metrics::routes(
                metrics.clone(),
                &config.metrics,
                Some(queue_gauges(&js, &metrics)),
            )),
        HTTP_TIMEOUT,
    );

    let dispatcher = Dispatcher::new(
        client.clone(),
        events,
        executors,
        settings.clone(),
        worker_id.clone(),
        shutdown.clone(),
        metrics,
    );
    let workers = Workers::new(lifecycle, consumer, dispatcher, settings.clone());
    tracing::info!(
        %worker_id,
        workers = settings.workers,
        max_in_flight = settings.max_in_flight,
        http = %addr,
        "executor-manager started"
    );

    let task = tokio::spawn(async move {
        let http = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { http::serve(listener, router, &config.http, shutdown).await }
        });
        workers.run(shutdown).await;
        background.cancel();
        if let Err(error) = watcher.await {
            tracing::error!(%error, "presence watch ended abnormally");
        }
        let served = http.await;
        match tokio::time::timeout(DRAIN_TIMEOUT, client.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "draining the NATS connection failed"),
            Err(_) => tracing::warn!("draining the NATS connection timed out"),
        }
        served
            .context("the health endpoint task ended abnormally")?
            .context("serving the health endpoints failed")?;
        tracing::info!("executor-manager stopped");
        Ok(())
    });
    Ok(ServiceHandle::new("executor-manager", Some(addr), task))
}

/// Samples the command queue (the RUN_COMMANDS work queue: a command stays in it until
/// a worker settles it) right before a scrape.
fn queue_gauges(js: &jetstream::Context, metrics: &Metrics) -> Collector {
    const DEPTH: &str = "switchyard_command_queue_depth";
    const OLDEST: &str = "switchyard_command_queue_oldest_age_seconds";
    metrics.describe_gauge(
        DEPTH,
        "Run commands in the RUN_COMMANDS queue (waiting or being dispatched).",
    );
    metrics.describe_gauge(
        OLDEST,
        "Age of the oldest run command in the queue, in seconds (0 when empty).",
    );
    let depth = metrics.gauge(DEPTH, &[]);
    let oldest = metrics.gauge(OLDEST, &[]);
    let js = js.clone();
    Arc::new(move || {
        let (js, depth, oldest) = (js.clone(), depth.clone(), oldest.clone());
        Box::pin(async move {
            let info = match js.get_stream(subjects::RUN_COMMANDS_STREAM).await {
                Ok(stream) => stream.get_info().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match info {
                Ok(info) => {
                    let state = info.state;
                    depth.set(state.messages as f64);
                    let age = if state.messages == 0 {
                        0.0
                    } else {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos() as i128);
                        ((now - state.first_timestamp.unix_timestamp_nanos()) as f64 / 1e9).max(0.0)
                    };
                    oldest.set(age);
                }
                // The gauges keep their last values; the scrape still answers.
                Err(error) => tracing::warn!(%error, "cannot sample the command queue"),
            }
        })
    })
}

/// [`start`], then waits until the service has shut down.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}
