//! Concurrent SSE clients on one gateway and the fan-out rate to them, next to the same
//! clients on the bare axum reference server.
//!
//! The gateway's clients all watch one run that waits for a human decision: every
//! client connects and reads the run's first events, the resident memory of this
//! process (the platform, without the clients: they live in a child process) is read
//! before and after, and then the decision is sent; the run plays its filler events and
//! ends, and every client reads them all. Fan-out is deliveries ÷ time from the
//! decision to the last delivery.

use super::machine::rss_kib;
use super::platform::BenchPlatform;
use super::reference_sse::{self, ReferenceChild, ReferenceJob};
use super::report::{Baseline, BaselineRef, Figure, Goal, Spec};
use super::swarm::{Swarm, SwarmJob, SwarmMessage, now_unix_ns};
use super::watcher::RunWatcher;
use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub(crate) const CLIENTS: Spec = Spec {
    name: "sse_clients_held",
    group: "clients",
    title: "concurrent SSE clients on one gateway",
    unit: "clients",
    goal: Goal::AtLeast(10_000.0),
    ratio_goal: None,
    goal_text: "10,000",
};

pub(crate) const MEMORY: Spec = Spec {
    name: "sse_memory_per_client_kib",
    group: "clients",
    title: "platform memory per SSE client (RSS growth)",
    unit: "KiB/client",
    goal: Goal::AtMost(30.0),
    ratio_goal: None,
    goal_text: "≤ 30 KiB",
};

pub(crate) const FANOUT: Spec = Spec {
    name: "fanout_deliveries_per_sec",
    group: "clients",
    title: "fan-out to those clients",
    unit: "deliveries/s",
    goal: Goal::AtLeast(500_000.0),
    ratio_goal: None,
    goal_text: "≥ 500k/s",
};

pub(crate) const REFERENCE_MEMORY: (&str, &str) = (
    "axum_sse_memory_per_connection",
    "bare axum SSE server (own process), memory per connection (RSS growth)",
);
pub(crate) const REFERENCE_FANOUT: (&str, &str) = (
    "axum_sse_fanout",
    "bare axum SSE server (own process), fan-out deliveries",
);

/// What one swarm measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SwarmResult {
    pub(crate) clients_requested: usize,
    pub(crate) clients_ready: usize,
    pub(crate) clients_failed: usize,
    pub(crate) first_connect_error: Option<String>,
    pub(crate) connect_seconds: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    pub(crate) kib_per_client: Option<f64>,
    pub(crate) events_per_client: u64,
    pub(crate) deliveries: u64,
    pub(crate) deliveries_expected: u64,
    pub(crate) clients_finished: usize,
    pub(crate) stream_errors: usize,
    pub(crate) first_stream_error: Option<String>,
    pub(crate) fanout_seconds: Option<f64>,
    pub(crate) deliveries_per_sec: Option<f64>,
    pub(crate) sse_bytes_per_delivery: Option<f64>,
}

/// Sizes of the swarm phases.
#[derive(Debug, Clone)]
pub(crate) struct SwarmPlan<'a> {
    pub(crate) exe: &'a Path,
    pub(crate) clients: usize,
    /// Events sent to every client after the go signal.
    pub(crate) events_after_go: u64,
    pub(crate) connect_timeout: Duration,
    pub(crate) deliver_timeout: Duration,
}

/// A connected swarm, waiting for the go signal.
pub(crate) struct Connected {
    swarm: Swarm,
    result: SwarmResult,
    deliver_timeout: Duration,
}

/// Whose resident memory a swarm's connections are charged to.
enum Server<'a> {
    /// This process: the platform.
    Platform,
    /// The reference server's child process.
    Reference(&'a mut ReferenceChild),
}

impl Server<'_> {
    async fn rss_kib(&mut self) -> anyhow::Result<u64> {
        match self {
            Server::Platform => rss_kib().context("no /proc/self/status VmRSS on this system"),
            Server::Reference(child) => child.rss_kib().await,
        }
    }
}

async fn connect(
    plan: &SwarmPlan<'_>,
    job: SwarmJob,
    mut server: Server<'_>,
) -> anyhow::Result<Connected> {
    let before = server.rss_kib().await?;
    let started = Instant::now();
    let mut swarm = Swarm::spawn(plan.exe, &job).await?;
    let ready = swarm
        .next(plan.connect_timeout + Duration::from_secs(30))
        .await?;
    let connect_seconds = started.elapsed().as_secs_f64();
    let after = server.rss_kib().await?;
    let SwarmMessage::Ready {
        ready,
        failed,
        first_error,
    } = ready
    else {
        bail!("the SSE client process reported out of order");
    };
    if ready == 0 {
        bail!(
            "no client connected: {}",
            first_error.unwrap_or_else(|| "no reason given".to_owned())
        );
    }
    Ok(Connected {
        swarm,
        deliver_timeout: plan.deliver_timeout,
        result: SwarmResult {
            clients_requested: job.clients,
            clients_ready: ready,
            clients_failed: failed,
            first_connect_error: first_error,
            connect_seconds,
            rss_before_kib: before,
            rss_after_kib: after,
            kib_per_client: Some(after.saturating_sub(before) as f64 / ready as f64),
            events_per_client: plan.events_after_go,
            deliveries: 0,
            deliveries_expected: plan.events_after_go * ready as u64,
            clients_finished: 0,
            stream_errors: 0,
            first_stream_error: None,
            fanout_seconds: None,
            deliveries_per_sec: None,
            sse_bytes_per_delivery: None,
        },
    })
}

impl Connected {
    pub(crate) fn clients_ready(&self) -> usize {
        self.result.clients_ready
    }

    /// Gives the go signal (`go` runs right after the clock starts) and waits for every
    /// client to read every event.
    pub(crate) async fn deliver(
        mut self,
        go: impl std::future::Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<SwarmResult> {
        let started_ns = now_unix_ns();
        go.await?;
        let done = self
            .swarm
            .next(self.deliver_timeout + Duration::from_secs(30))
            .await?;
        self.swarm.finish().await;
        let SwarmMessage::Done {
            finished,
            deliveries,
            body_bytes,
            last_delivery_unix_ns,
            errors,
            first_error,
        } = done
        else {
            bail!("the SSE client process reported out of order");
        };
        let mut result = self.result;
        result.deliveries = deliveries;
        result.clients_finished = finished;
        result.stream_errors = errors;
        result.first_stream_error = first_error;
        if let Some(last) = last_delivery_unix_ns
            && last > started_ns
        {
            let seconds = (last - started_ns) as f64 / 1e9;
            result.fanout_seconds = Some(seconds);
            result.deliveries_per_sec = Some(deliveries as f64 / seconds);
        }
        if deliveries > 0 {
            // Includes the response head and the events before the go signal: a slight
            // overestimate of one frame's size.
            result.sse_bytes_per_delivery = Some(body_bytes as f64 / deliveries as f64);
        }
        Ok(result)
    }
}

/// Connects the gateway swarm to a run that holds at a human-loop request.
pub(crate) async fn connect_gateway(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    plan: &SwarmPlan<'_>,
) -> anyhow::Result<(Connected, Uuid)> {
    // After the decision: `human_loop.resolved`, the filler deltas, `run.completed`.
    let filler = plan.events_after_go.saturating_sub(2).max(1);
    let script = json!([
        {"humanLoop": {"prompt": "benchmark fan-out: hold until every client is connected", "kind": "command"}},
        {"filler": {"count": filler}}
    ]);
    let run_id = platform.start_run(&script).await?;
    let waiting = watcher
        .wait_until(Duration::from_secs(60), |runs| {
            runs.get(&run_id)
                .is_some_and(|p| p.last_type == "human_loop.requested")
        })
        .await;
    if !waiting {
        bail!("the fan-out run never reached its human-loop request");
    }
    let ready_events = watcher
        .progress(run_id)
        .map(|p| p.last_seq)
        .context("the watcher lost the fan-out run")?;
    let job = SwarmJob {
        addr: platform.gateway_addr,
        path: BenchPlatform::stream_path(run_id),
        token: platform.token.clone(),
        clients: plan.clients,
        ready_events,
        connect_concurrency: 64,
        timeout_secs: (plan.connect_timeout + plan.deliver_timeout).as_secs(),
    };
    let mut plan = plan.clone();
    plan.events_after_go = filler + 2;
    Ok((connect(&plan, job, Server::Platform).await?, run_id))
}

/// The same swarm against the bare axum reference server, in its own process.
pub(crate) async fn reference(plan: &SwarmPlan<'_>) -> anyhow::Result<SwarmResult> {
    let job = ReferenceJob {
        events_after_go: usize::try_from(plan.events_after_go).unwrap_or(usize::MAX),
    };
    let (mut server, _) = ReferenceChild::spawn(plan.exe, &job).await?;
    let swarm_job = SwarmJob {
        addr: server.addr,
        path: reference_sse::PATH.to_owned(),
        token: String::new(),
        clients: plan.clients,
        ready_events: 1,
        connect_concurrency: 64,
        timeout_secs: (plan.connect_timeout + plan.deliver_timeout).as_secs(),
    };
    let result = async {
        let connected = connect(plan, swarm_job, Server::Reference(&mut server)).await?;
        connected.deliver(server.go()).await
    }
    .await;
    server.stop().await;
    result
}

/// The reference's baselines (or why they are missing).
pub(crate) fn reference_baselines(reference: &Result<SwarmResult, String>) -> Vec<Baseline> {
    match reference {
        Ok(r) => {
            let details = details_of(r);
            vec![
                match r.kib_per_client {
                    Some(kib) if kib > 0.0 => Baseline::measured(
                        REFERENCE_MEMORY.0,
                        REFERENCE_MEMORY.1,
                        kib,
                        "KiB/conn",
                        details.clone(),
                    ),
                    kib => Baseline::not_measured(
                        REFERENCE_MEMORY.0,
                        REFERENCE_MEMORY.1,
                        "KiB/conn",
                        kib.map_or_else(|| "no RSS reading".to_owned(), |_| no_growth(r)),
                    ),
                },
                match r.deliveries_per_sec {
                    Some(rate) => Baseline::measured(
                        REFERENCE_FANOUT.0,
                        REFERENCE_FANOUT.1,
                        rate,
                        "deliveries/s",
                        details,
                    ),
                    None => Baseline::not_measured(
                        REFERENCE_FANOUT.0,
                        REFERENCE_FANOUT.1,
                        "deliveries/s",
                        "no delivery was timed".to_owned(),
                    ),
                },
            ]
        }
        Err(reason) => vec![
            Baseline::not_measured(
                REFERENCE_MEMORY.0,
                REFERENCE_MEMORY.1,
                "KiB/conn",
                reason.clone(),
            ),
            Baseline::not_measured(
                REFERENCE_FANOUT.0,
                REFERENCE_FANOUT.1,
                "deliveries/s",
                reason.clone(),
            ),
        ],
    }
}

fn baseline_ref(baselines: &[Baseline], name: &'static str) -> Option<BaselineRef> {
    baselines.iter().find(|b| b.name == name).and_then(|b| {
        b.value.map(|value| BaselineRef {
            name: b.name,
            value,
            unit: b.unit,
        })
    })
}

/// The three figures from the gateway swarm.
/// Why a swarm's memory per client is not a figure: a few clients' memory can come
/// entirely from what the process freed before (quick mode has 50), and a zero or a
/// shrink is not a measurement of what a client costs.
fn no_growth(swarm: &SwarmResult) -> String {
    format!(
        "RSS did not grow while {} clients connected ({} → {} KiB): too few clients to see past memory freed earlier",
        swarm.clients_ready, swarm.rss_before_kib, swarm.rss_after_kib
    )
}

pub(crate) fn figures(gateway: &SwarmResult, reference: &[Baseline]) -> Vec<Figure> {
    let details = details_of(gateway);
    let mut out = vec![CLIENTS.measured(gateway.clients_ready as f64, None, details.clone())];
    out.push(match gateway.kib_per_client {
        Some(kib) if kib > 0.0 => MEMORY.measured_against(
            kib,
            baseline_ref(reference, REFERENCE_MEMORY.0),
            json!({
                "swarm": details,
                "what_grows": "the whole platform process with the clients outside it: gateway connection, SSE stream and subscription, plus the control-plane lookup each stream open makes",
            }),
        ),
        Some(_) => MEMORY.not_measured(no_growth(gateway)),
        None => MEMORY.not_measured("no RSS reading"),
    });
    out.push(match gateway.deliveries_per_sec {
        Some(rate) if gateway.deliveries > 0 => {
            FANOUT.measured_against(rate, baseline_ref(reference, REFERENCE_FANOUT.0), details)
        }
        _ => FANOUT.not_measured(format!(
            "no delivery was timed ({} of {} expected deliveries arrived; first error: {})",
            gateway.deliveries,
            gateway.deliveries_expected,
            gateway
                .first_stream_error
                .clone()
                .unwrap_or_else(|| "none".to_owned())
        )),
    });
    out
}

/// A swarm's measurements as the report's details; a failure to serialise them is
/// written into the report instead of leaving the details empty.
fn details_of(swarm: &SwarmResult) -> serde_json::Value {
    serde_json::to_value(swarm)
        .unwrap_or_else(|e| json!({"error": format!("cannot serialise the measurements: {e}")}))
}
