//! The Switchyard executor: owns up to `capacity` runs at once, runs a provider for
//! each under a supervisor, writes the run's events to JetStream with fenced appends,
//! obeys stop and human-loop replies on `runs.control.<run_id>`, heartbeats its
//! presence into the `EXECUTORS` bucket, and serves the standalone provider-run API.
//!
//! Graceful shutdown is a drain. On the first signal (the `graceful` token) the
//! presence record says `draining`, so managers dispatch elsewhere, and dispatches are
//! answered `draining`; the runs already here go on — their control subjects still take
//! human-loop replies and stop requests, presence keeps heartbeating so the reconciler
//! leaves them alone — until they end or `executor.drain_timeout_ms` passes. Then the
//! runs still active are stopped, each with a `diagnostic` and a `run.completed
//! {status: stopped, reason: stopped}` whose detail starts "executor shutdown". A
//! second signal (the `immediate` token) stops them at once. Last the HTTP server
//! stops and the presence record is deleted, and the service handle completes.
//!
//! In the binaries, runs of the agent CLIs run in run hosts (see [`hosting`]): processes
//! of their own that outlive the executor, adopted by its successor under the same id.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod budget;
mod cli;
mod clock;
mod config;
mod control;
mod dispatch;
mod executor;
mod file_changes;
mod host;
mod hosting;
mod http;
mod human_loop;
mod presence;
mod provider;
mod providers;
mod runs;
mod settings;
mod sink;
mod supervisor;
mod workdirs;

use anyhow::Context as _;
use chrono::Utc;
use executor::Executor;
use std::sync::Arc;
use switchyard_contracts::subjects;
use switchyard_platform::events::EventLog;
use switchyard_platform::metrics::{Collector, Metrics};
use switchyard_platform::nats::{self, Resources};
use switchyard_platform::service::ServiceHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// The public surface: what the binaries, the all-in-one `switchyard` command and the
// benchmark use — the functions below, and the configuration.
pub use budget::BudgetSettings;
pub use config::Config;
pub use hosting::RUN_HOST_COMMAND;
pub use settings::{
    DetachRuns, ExecutorSettings, LivenessSettings, ProviderCredentialSettings, WorkspaceCleanup,
};
pub use switchyard_platform::shutdown::Signals;

/// What the integration tests of this crate and the workspace's end-to-end tests use
/// besides the configuration: finding the CLIs and reading credentials the way the
/// executor does, whether a process is alive, and the scripted provider's default
/// message. Not an API for anything else.
#[doc(hidden)]
pub mod test_support {
    pub use crate::cli::binaries::CliLocator;
    pub use crate::cli::credentials::{Credentials, CredentialsError, MissingCredentials};
    pub use crate::cli::process::process_alive;
    pub use crate::providers::scripted::DEFAULT_MESSAGE as SCRIPTED_DEFAULT_MESSAGE;
}

/// Connects, provisions, binds and spawns everything; returns once the executor takes
/// dispatches and its presence record is written. `shutdown` is a token (a graceful
/// shutdown only) or [`Signals`] (graceful, then immediate).
pub async fn start(config: Config, shutdown: impl Into<Signals>) -> anyhow::Result<ServiceHandle> {
    let Signals {
        graceful: shutdown,
        immediate,
    } = shutdown.into();
    config.validate()?;
    // This process holds the NATS credentials and more; the agents it starts must not
    // be able to read them from /proc, even when they run as its user.
    cli::isolation::harden_this_process();
    let settings = config.executor.clone();
    // Probing the CLI versions runs `--version` on each binary: keep it off the runtime.
    let cli = {
        let setup = settings.cli_setup()?;
        tokio::task::spawn_blocking(move || cli::CliEnv::new(setup))
            .await
            .context("prepare the CLI environment")??
    };
    match cli.isolation.user {
        Some(user) => tracing::info!(%user, "agent CLIs run as the provider user"),
        None if nix::unistd::Uid::effective().is_root() => tracing::warn!(
            "agent CLIs run as root (executor.provider_user = none): they can read every secret of this executor"
        ),
        None => {}
    }
    let providers = providers::ProviderRegistry::from_names(&settings.providers, &Arc::new(cli))?;
    let id = settings.resolve_executor_id();

    let client = nats::connect(&config.nats, &format!("switchyard-executor-{id}")).await?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(config.nats.request_timeout());
    nats::provision(
        &js,
        Resources {
            run_events: true,
            executors_kv: true,
            ..Default::default()
        },
    )
    .await?;
    let metrics = Metrics::new("executor", &shutdown);
    let log = EventLog::open(js.clone()).await?.with_metrics(&metrics);
    let kv = js
        .get_key_value(subjects::EXECUTORS_BUCKET)
        .await
        .context("open the EXECUTORS presence bucket")?;
    let listener = switchyard_platform::http::bind(settings.listen)
        .await
        .with_context(|| format!("bind the executor API on {}", settings.listen))?;
    let http_addr = listener.local_addr()?;
    let dispatch_subscriber = client
        .subscribe(subjects::executor_dispatch(&id))
        .await
        .context("subscribe to the dispatch subject")?;

    let executor = Arc::new(Executor {
        id: id.clone(),
        runs: runs::Runs::new(settings.capacity),
        hosts: hosting::RunHosts::from_settings(&settings),
        settings,
        client: client.clone(),
        log,
        providers,
        tasks: TaskTracker::new(),
        http_stop: CancellationToken::new(),
        started_at: Utc::now(),
    });

    // Before the first dispatch: the runs a predecessor under this id left in run hosts
    // hold slots here (and a redelivered dispatch of one is answered from its slot).
    supervisor::hosted::adopt(&executor).await;
    // The subscription must be registered before anyone can find us through presence.
    client
        .flush()
        .await
        .context("flush the dispatch subscription")?;
    // The service's own tasks are joined by the shutdown below, each at its step;
    // everything a run does goes into `executor.tasks`.
    let dispatch_stop = CancellationToken::new();
    let dispatch_task = tokio::spawn(dispatch::serve(
        executor.clone(),
        dispatch_subscriber,
        dispatch_stop.clone(),
    ));
    presence::publish(&executor, &kv).await;
    let presence_stop = CancellationToken::new();
    let presence_task = tokio::spawn(presence::serve(
        executor.clone(),
        kv.clone(),
        presence_stop.clone(),
    ));
    let http_task = tokio::spawn({
        let router = http::router(
            executor.clone(),
            switchyard_platform::metrics::routes(
                metrics.clone(),
                &config.metrics,
                Some(slot_gauges(&executor, &metrics)),
            ),
        );
        let stop = executor.http_stop.clone();
        async move { switchyard_platform::http::serve(listener, router, &config.http, stop).await }
    });
    tracing::info!(executor_id = %id, %http_addr, capacity = executor.settings.capacity, "executor started");

    let task = tokio::spawn(async move {
        shutdown.cancelled().await;
        executor.runs.start_draining();
        tracing::info!(
            executor_id = %executor.id,
            active = executor.runs.active(),
            drain_timeout_ms = executor.settings.drain_timeout_ms,
            "executor draining: no new runs; the active ones go on"
        );
        presence::publish(&executor, &kv).await;
        dispatch_stop.cancel();
        if let Err(error) = dispatch_task.await {
            tracing::error!(executor_id = %executor.id, %error, "the dispatch task failed");
        }
        executor.tasks.close();
        drain(&executor, &immediate).await;
        executor.tasks.wait().await;
        executor.http_stop.cancel();
        let served = http_task.await;
        presence_stop.cancel();
        if let Err(error) = presence_task.await {
            tracing::error!(executor_id = %executor.id, %error, "the presence task failed");
        }
        presence::withdraw(&executor, &kv).await;
        if let Err(error) = executor.client.flush().await {
            tracing::warn!(%error, "could not flush NATS at shutdown");
        }
        tracing::info!(executor_id = %executor.id, "executor stopped");
        match served {
            Ok(result) => result.context("executor HTTP server"),
            Err(join_error) => Err(anyhow::anyhow!("executor HTTP server task: {join_error}")),
        }
    });
    Ok(ServiceHandle::new("executor", Some(http_addr), task))
}

/// Samples the slot table and the agent CLI processes right before a scrape.
fn slot_gauges(executor: &Arc<Executor>, metrics: &Metrics) -> Collector {
    metrics.describe_gauge(
        "switchyard_executor_slots_used",
        "Run slots in use on this executor.",
    );
    metrics.describe_gauge(
        "switchyard_executor_slots_free",
        "Run slots free on this executor (0 while draining).",
    );
    metrics.describe_gauge(
        "switchyard_provider_processes",
        "Agent CLI processes this executor process holds.",
    );
    let used = metrics.gauge("switchyard_executor_slots_used", &[]);
    let free = metrics.gauge("switchyard_executor_slots_free", &[]);
    let processes = metrics.gauge("switchyard_provider_processes", &[]);
    let executor = Arc::downgrade(executor);
    Arc::new(move || {
        if let Some(executor) = executor.upgrade() {
            let active = executor.runs.active();
            used.set(f64::from(active));
            let room = if executor.runs.is_draining() {
                0
            } else {
                executor.runs.capacity().saturating_sub(active)
            };
            free.set(f64::from(room));
        }
        processes.set(cli::process::live_processes() as f64);
        Box::pin(async {})
    })
}

/// Waits until every run ended, or the drain timeout passed or `immediate` was
/// cancelled: then stops the runs still active (the caller waits for them to end).
async fn drain(executor: &Executor, immediate: &CancellationToken) {
    let drain_timeout_ms = executor.settings.drain_timeout_ms;
    let why = tokio::select! {
        biased;
        // Supervisors, control loops and dispatch handlers: nothing left means drained.
        () = executor.tasks.wait() => {
            tracing::info!(executor_id = %executor.id, "every run ended; executor drained");
            return;
        }
        () = immediate.cancelled() => runs::Shutdown::Immediate,
        () = tokio::time::sleep(executor.settings.drain_timeout()) => {
            runs::Shutdown::DrainTimeout(drain_timeout_ms)
        }
    };
    tracing::warn!(
        executor_id = %executor.id,
        active = executor.runs.active(),
        cause = ?why,
        "stopping the runs still active"
    );
    executor.runs.stop_all(why);
}

/// The run host entry point of an executor binary started as `run-host`: loads the same
/// configuration as the executor (file and environment are inherited) and runs the run
/// handed over on stdin.
pub async fn run_host() -> anyhow::Result<()> {
    let config: Config = switchyard_platform::config::load()?;
    switchyard_platform::telemetry::init(&config.telemetry);
    host::run(config).await
}

/// Starts the executor and waits until it has shut down.
pub async fn run(config: Config, shutdown: impl Into<Signals>) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}
