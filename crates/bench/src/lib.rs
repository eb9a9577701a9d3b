//! `switchyard-bench`: starts the platform against a private nats-server and a fresh
//! Postgres database and measures, in one run, the performance figures next to the raw
//! baselines that bound them (JetStream publish and replay, Postgres commits, a bare
//! axum SSE server), measured on the same servers in the same run. Prints a table and
//! writes everything as JSON. `--quick` is a tiny load of each (what CI runs).
//!
//! Every value is measured; what cannot be measured here is reported as not measured,
//! with the reason. Method and results: `docs/performance.md`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod baselines;
mod event_path;
mod fanout;
mod latency;
mod latency_path;
pub mod machine;
mod memory;
mod platform;
mod reference_sse;
pub mod report;
mod run_path;
mod samples;
mod sse;
mod streaming;
mod swarm;
mod throughput;
mod watcher;

pub use report::{Baseline, Figure, Goal, Report};

use anyhow::{Context as _, bail};
use platform::BenchPlatform;
use report::Spec;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use watcher::RunWatcher;

/// Where the JSON goes unless `--json` says otherwise.
pub const DEFAULT_JSON_PATH: &str = "target/bench/latest.json";

/// Every figure, in table order.
pub const FIGURES: &[Spec] = &[
    throughput::RUNS,
    latency::P50,
    latency::P99,
    streaming::EVENTS,
    fanout::CLIENTS,
    fanout::MEMORY,
    fanout::FANOUT,
    streaming::REPLAY,
    streaming::REPLAY_FIRST_EVENT,
    memory::PER_RUN,
    memory::HELD,
    throughput::SCALING,
];

/// The raw path that bounds each figure it exists for: the design's own work with
/// nothing of Switchyard (docs/performance.md, "What bounds each figure").
const BOUNDS: &[(&str, &str)] = &[
    (throughput::RUNS.name, run_path::RUN_PATH.0),
    (latency::P50.name, latency_path::P50.0),
    (latency::P99.name, latency_path::P99.0),
    (streaming::EVENTS.name, event_path::EVENT_PATH.0),
    (streaming::REPLAY.name, baselines::REPLAY_RATE.0),
    (
        streaming::REPLAY_FIRST_EVENT.name,
        baselines::REPLAY_FIRST.0,
    ),
];

/// The `--only` names: each measures the figures of its group.
pub const GROUPS: &[&str] = &[
    "runs",
    "latency",
    "events",
    "clients",
    "replay",
    "executor_memory",
    "scaling",
];

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub quick: bool,
    pub json_path: PathBuf,
    /// Groups (or figure names) to measure; `None` = all.
    pub only: Option<Vec<String>>,
    /// The `switchyard-bench` executable, run as the SSE client process
    /// (`switchyard-bench --sse-client-worker`) and the reference SSE server
    /// (`--sse-reference-worker`). Without it the client figures are not measured.
    pub client_exe: Option<PathBuf>,
}

impl BenchOptions {
    fn selected(&self, group: &str) -> bool {
        self.only.as_ref().is_none_or(|only| {
            only.iter().any(|name| {
                name == group
                    || FIGURES
                        .iter()
                        .any(|f| f.group == group && f.name == name.as_str())
            })
        })
    }
}

/// The load of each phase.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    load: throughput::Load,
    latency_samples: usize,
    stream_filler: usize,
    stream_clients: usize,
    fanout_clients: usize,
    fanout_events: u64,
    replay_filler: usize,
    memory_runs: usize,
    raw: baselines::RawSizes,
    timeout: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                load: throughput::Load {
                    duration: Duration::from_secs(2),
                    clients: 8,
                    max_in_flight: 64,
                    drain_timeout: Duration::from_secs(60),
                },
                latency_samples: 20,
                stream_filler: 2_000,
                stream_clients: 2,
                fanout_clients: 50,
                fanout_events: 20,
                replay_filler: 1_000,
                // Enough for the growth to show: 20 runs once fitted in memory the
                // process already held, and the figure came out 0.
                memory_runs: 200,
                raw: baselines::RawSizes {
                    pipelined_messages: 10_000,
                    sequential_messages: 1_000,
                    latency_samples: 100,
                    pg_duration: Duration::from_millis(500),
                },
                timeout: Duration::from_secs(120),
            }
        } else {
            Self {
                load: throughput::Load {
                    duration: Duration::from_secs(20),
                    clients: 64,
                    max_in_flight: 1_000,
                    drain_timeout: Duration::from_secs(300),
                },
                latency_samples: 200,
                stream_filler: 50_000,
                stream_clients: 4,
                fanout_clients: 10_000,
                fanout_events: 100,
                replay_filler: 10_000,
                memory_runs: 1_000,
                raw: baselines::RawSizes {
                    pipelined_messages: 200_000,
                    sequential_messages: 10_000,
                    latency_samples: 2_000,
                    pg_duration: Duration::from_secs(5),
                },
                timeout: Duration::from_secs(600),
            }
        }
    }
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// What the phases produce.
#[derive(Default)]
struct Results {
    baselines: Vec<Baseline>,
    figures: Vec<Figure>,
    notes: Vec<String>,
}

impl Results {
    /// Records a phase's figures, or every spec as not measured with the phase's error.
    fn phase(&mut self, specs: &[Spec], outcome: anyhow::Result<Vec<Figure>>) {
        match outcome {
            Ok(figures) => self.figures.extend(figures),
            Err(e) => {
                let reason = format!("the measurement failed: {e:#}");
                progress(&format!("{}: {reason}", specs[0].group));
                self.figures
                    .extend(specs.iter().map(|s| s.not_measured(reason.clone())));
            }
        }
    }

    fn baseline(&self, name: &str) -> Option<&Baseline> {
        named(&self.baselines, name)
    }

    /// Ties each figure to the raw path that bounds it ([`BOUNDS`]), when measured.
    fn bind_bounds(&mut self) {
        for figure in &mut self.figures {
            let bound = BOUNDS
                .iter()
                .find(|(figure_name, _)| *figure_name == figure.name)
                .and_then(|(_, bound)| named(&self.baselines, bound));
            if let Some(bound) = bound {
                figure.bind(bound);
            }
        }
    }
}

fn named<'a>(baselines: &'a [Baseline], name: &str) -> Option<&'a Baseline> {
    baselines.iter().find(|b| b.name == name)
}

/// Runs the benchmark, prints nothing but progress (stderr), writes the JSON to
/// `options.json_path` and returns the report.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    if let Some(only) = &options.only {
        for name in only {
            if !GROUPS.contains(&name.as_str()) && !FIGURES.iter().any(|f| f.name == name) {
                bail!(
                    "--only: unknown name {name:?} (groups: {}; or a figure name from the JSON)",
                    GROUPS.join(", ")
                );
            }
        }
    }
    switchyard_platform::telemetry::init(&switchyard_platform::telemetry::TelemetryConfig {
        filter: "warn,async_nats=error".to_owned(),
        ..Default::default()
    });
    let sizes = Sizes::new(options.quick);
    let machine = machine::MachineInfo::read();
    let started_at = chrono::Utc::now().to_rfc3339();
    let started = Instant::now();

    let capacity = u32::try_from((sizes.memory_runs + 64).max(512)).unwrap_or(u32::MAX);
    progress("starting nats-server, a fresh database and the four services");
    let mut platform = BenchPlatform::start(capacity).await?;
    let software = json!({
        "nats_server": platform.nats_client.server_info().version,
        "executor_capacity": capacity,
        "executor_manager": "default settings (workers, batch size, in-flight limit)",
        "log_filter": "warn (RUST_LOG overrides)",
    });
    let outcome = measure(&mut platform, options, &sizes).await;
    progress("stopping the platform");
    platform.shutdown().await;
    let mut results = outcome?;
    results.bind_bounds();

    if options.quick {
        results.notes.push(
            "quick mode: a tiny load that checks the harness; the goals are for the full load, so none is judged here".to_owned(),
        );
        for figure in &mut results.figures {
            figure.unjudged();
        }
    }
    let report = Report {
        mode: if options.quick { "quick" } else { "full" },
        started_at,
        duration_secs: started.elapsed().as_secs_f64(),
        machine,
        software,
        load_average_at_end: machine::load_average(),
        baselines: results.baselines,
        figures: order(results.figures),
        notes: results.notes,
    };
    write_json(&report, &options.json_path)?;
    Ok(report)
}

/// Figures in table order.
fn order(mut figures: Vec<Figure>) -> Vec<Figure> {
    figures.sort_by_key(|f| FIGURES.iter().position(|s| s.name == f.name));
    figures
}

fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

async fn measure(
    platform: &mut BenchPlatform,
    options: &BenchOptions,
    sizes: &Sizes,
) -> anyhow::Result<Results> {
    let mut results = Results::default();
    let nats_pid = platform.nats.pid();
    let watcher = RunWatcher::start(platform.nats_client.clone())
        .await
        .context("start the run watcher")?;

    // A few runs end to end first: the platform works, and pools and caches are warm.
    progress("warm-up runs");
    let warm = platform
        .start_runs(&throughput::ten_event_script(), 8, 8)
        .await
        .context("the warm-up runs could not start")?;
    if !watcher.wait_completed(&warm, Duration::from_secs(60)).await {
        bail!("the warm-up runs did not complete within 60 s: the platform does not work");
    }

    // Memory first, while nothing has been freed that a later allocation could reuse;
    // the executor's runs stay active while the SSE clients connect for the same reason.
    let mut held_runs = Vec::new();
    if options.selected("executor_memory") {
        progress(&format!(
            "executor memory: {} sleeping runs on one executor",
            sizes.memory_runs
        ));
        let outcome = memory::measure(platform, &watcher, sizes.memory_runs, sizes.timeout).await;
        let outcome = outcome.map(|(figures, ids)| {
            held_runs = ids;
            figures
        });
        results.phase(&[memory::PER_RUN, memory::HELD], outcome);
    } else {
        not_selected(&mut results, "executor_memory");
    }

    let clients_specs = [fanout::CLIENTS, fanout::MEMORY, fanout::FANOUT];
    let mut gateway_swarm = None;
    if options.selected("clients") {
        match &options.client_exe {
            Some(exe) => {
                let plan = swarm_plan(exe, sizes);
                progress(&format!(
                    "SSE clients: connecting {} clients to one gateway",
                    plan.clients
                ));
                match fanout::connect_gateway(platform, &watcher, &plan).await {
                    Ok(connected) => gateway_swarm = Some(connected),
                    Err(e) => results.phase(&clients_specs, Err(e)),
                }
            }
            None => results.figures.extend(clients_specs.iter().map(|s| {
                s.not_measured("no client executable given (the clients run in a child `switchyard-bench --sse-client-worker` process)")
            })),
        }
    } else {
        not_selected(&mut results, "clients");
    }

    if !held_runs.is_empty() {
        progress("stopping the sleeping runs");
        if let Err(e) = platform.stop_runs(&held_runs, 32).await {
            results
                .notes
                .push(format!("stopping the executor-memory runs failed: {e:#}"));
        }
        if !watcher.wait_completed(&held_runs, sizes.timeout).await {
            results
                .notes
                .push("not every executor-memory run had stopped before the next phase".to_owned());
        }
    }

    if let Some((connected, run_id)) = gateway_swarm {
        progress(&format!(
            "fan-out: {} events to {} clients",
            sizes.fanout_events,
            connected.clients_ready()
        ));
        let gateway = connected.deliver(platform.approve(run_id)).await;
        let exe = options.client_exe.as_deref().unwrap_or(Path::new(""));
        progress("reference: the same clients on a bare axum SSE server");
        let reference = fanout::reference(&swarm_plan(exe, sizes))
            .await
            .map_err(|e| format!("the reference measurement failed: {e:#}"));
        let reference = fanout::reference_baselines(&reference);
        let outcome = gateway.map(|g| fanout::figures(&g, &reference));
        results.baselines.extend(reference);
        results.phase(&clients_specs, outcome);
    }

    progress("raw baselines: JetStream publish and latency, Postgres commits");
    results
        .baselines
        .extend(baselines::jetstream(&platform.nats_client, sizes.raw).await);
    results
        .baselines
        .push(baselines::postgres(&platform.db.url, sizes.raw.pg_duration).await);

    if options.selected("latency") {
        progress(&format!(
            "latency: {} sequential runs, start → first SSE event",
            sizes.latency_samples
        ));
        let outcome = latency::measure(
            platform,
            &watcher,
            sizes.latency_samples,
            &mut results.baselines,
        )
        .await;
        results.phase(&[latency::P50, latency::P99], outcome);
    } else {
        not_selected(&mut results, "latency");
    }

    let mut one_pair = Err(anyhow::anyhow!("not measured"));
    if options.selected("runs") || options.selected("scaling") {
        progress(&format!(
            "runs/s: {} s of load, {} HTTP clients, 1 manager + 1 executor",
            sizes.load.duration.as_secs(),
            sizes.load.clients
        ));
        one_pair = throughput::sustained(platform, &watcher, sizes.load, nats_pid).await;
    }
    if options.selected("runs") {
        let load = throughput::Load {
            duration: sizes.load.duration / 2,
            ..sizes.load
        };
        progress(&format!(
            "raw baseline: the run path ({} s, {} clients; no Switchyard)",
            load.duration.as_secs_f64(),
            load.clients
        ));
        results.baselines.push(
            run_path::measure(
                &platform.nats_client,
                &platform.db.pool,
                load,
                nats_pid,
                async || throughput::postgres_backends(platform).await,
            )
            .await,
        );
        let pg = results.baseline(baselines::PG_COMMITS.0).cloned();
        let outcome = match &one_pair {
            Ok((rate, details)) => Ok(vec![throughput::RUNS.measured(
                *rate,
                pg.as_ref(),
                details.clone(),
            )]),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        results.phase(&[throughput::RUNS], outcome);
    } else {
        not_selected(&mut results, "runs");
    }

    if options.selected("scaling") {
        let outcome = match one_pair {
            Ok((one_pair, _)) => {
                progress("scaling: adding a second manager and executor, the same load again");
                async {
                    let capacity =
                        u32::try_from(sizes.load.max_in_flight.max(512)).unwrap_or(u32::MAX);
                    platform.add_executor_and_manager(capacity).await?;
                    let (rate, details) =
                        throughput::sustained(platform, &watcher, sizes.load, nats_pid).await?;
                    Ok(vec![throughput::SCALING.measured_against(
                        rate,
                        Some(report::BaselineRef {
                            name: "runs_per_sec with 1 manager + 1 executor",
                            value: one_pair,
                            unit: "runs/s",
                        }),
                        details,
                    )])
                }
                .await
            }
            Err(e) => Err(e.context("the 1 + 1 load it is compared with failed")),
        };
        results.phase(&[throughput::SCALING], outcome);
    } else {
        not_selected(&mut results, "scaling");
    }

    if options.selected("events") {
        // Here rather than with the other raw baselines: it writes and deletes a million
        // messages, which should not overlap the latency phase.
        let settled = platform.settle().await;
        results
            .notes
            .push(format!("before the events phase: {settled}"));
        progress("raw baseline: the JetStream event path (publish, acking consumer, readers)");
        results.baselines.push(
            event_path::measure(
                &platform.nats_client,
                sizes.raw.pipelined_messages,
                nats_pid,
            )
            .await,
        );
        progress(&format!(
            "events/s: one run of {} filler events, {} SSE clients",
            sizes.stream_filler, sizes.stream_clients
        ));
        let outcome = streaming::events_per_sec(
            platform,
            &watcher,
            sizes.stream_filler,
            sizes.stream_clients,
            &results.baselines,
            nats_pid,
            sizes.timeout,
        )
        .await
        .map(|f| vec![f]);
        results.phase(&[streaming::EVENTS], outcome);
    } else {
        not_selected(&mut results, "events");
    }

    if options.selected("replay") {
        progress(&format!(
            "replay: a finished run of {} filler events to a new client",
            sizes.replay_filler
        ));
        let outcome = streaming::replay(platform, &watcher, sizes.replay_filler, sizes.timeout)
            .await
            .map(|(figures, raw)| {
                results.baselines.extend(raw);
                figures
            });
        results.phase(&[streaming::REPLAY, streaming::REPLAY_FIRST_EVENT], outcome);
    } else {
        not_selected(&mut results, "replay");
    }
    Ok(results)
}

fn swarm_plan<'a>(exe: &'a Path, sizes: &Sizes) -> fanout::SwarmPlan<'a> {
    fanout::SwarmPlan {
        exe,
        clients: sizes.fanout_clients,
        events_after_go: sizes.fanout_events,
        connect_timeout: sizes.timeout,
        deliver_timeout: sizes.timeout,
    }
}

fn not_selected(results: &mut Results, group: &str) {
    results.figures.extend(
        FIGURES
            .iter()
            .filter(|f| f.group == group)
            .map(|f| f.not_measured("not selected (--only)")),
    );
}

/// The SSE client swarm's child process (`switchyard-bench --sse-client-worker`).
pub async fn sse_client_worker() -> anyhow::Result<()> {
    swarm::worker_main().await
}

/// The reference SSE server's child process (`switchyard-bench --sse-reference-worker`).
pub async fn sse_reference_worker() -> anyhow::Result<()> {
    reference_sse::worker_main().await
}
