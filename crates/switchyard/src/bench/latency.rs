//! Latency from a start request to the first SSE event, on an otherwise idle platform:
//! one run at a time, each finished before the next starts. The phase first waits for
//! the machine to settle ([`BenchPlatform::settle`]).

use super::baselines::{LATENCY_P50, LATENCY_P99};
use super::platform::BenchPlatform;
use super::report::{Baseline, Figure, Goal, Spec};
use super::samples::Percentiles;
use super::sse::SseStream;
use super::watcher::RunWatcher;
use anyhow::{Context as _, bail};
use serde_json::json;
use std::time::{Duration, Instant};

pub(crate) const P50: Spec = Spec {
    name: "first_event_latency_p50_ms",
    group: "latency",
    title: "start request → first SSE event, p50 (idle)",
    unit: "ms",
    goal: Goal::AtMost(2.5),
    ratio_goal: None,
    goal_text: "≤ 2.5 ms",
};

pub(crate) const P99: Spec = Spec {
    name: "first_event_latency_p99_ms",
    group: "latency",
    title: "start request → first SSE event, p99 (idle)",
    unit: "ms",
    goal: Goal::AtMost(10.0),
    ratio_goal: None,
    goal_text: "≤ 10 ms",
};

/// `samples` sequential runs: POST /api/runs/start, then GET the stream on a new
/// connection, until the first event arrives. The client runs on a thread and runtime
/// of its own, like a client in another process: on the platform's two runtime workers
/// its own wake-ups would queue behind (and delay) the services it is timing.
pub(crate) async fn measure(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    samples: usize,
    raw: &[Baseline],
) -> anyhow::Result<Vec<Figure>> {
    let quiet = platform.settle().await;
    let (first_event, start_request, stream_open) = tokio::task::block_in_place(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("build the latency client's runtime")?
            .block_on(take_samples(platform, watcher, samples))
    })?;
    let first = Percentiles::of(&first_event).context("no samples")?;
    let details = json!({
        "first_event": first,
        "start_request_202": Percentiles::of(&start_request),
        "stream_request_to_first_event": Percentiles::of(&stream_open),
        "how": "POST /api/runs/start on a kept-alive connection, then GET /api/runs/{id}/stream on a new connection; timed to the first complete SSE event (run.queued)",
        "before_the_samples": quiet,
    });
    let find = |name: &str| raw.iter().find(|b| b.name == name);
    Ok(vec![
        P50.measured(first.p50_ms, find(LATENCY_P50.0), details.clone()),
        P99.measured(first.p99_ms, find(LATENCY_P99.0), details),
    ])
}

type Samples = (Vec<Duration>, Vec<Duration>, Vec<Duration>);

/// `(start → first event, start → 202, stream request → first event)` of each sample.
async fn take_samples(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    samples: usize,
) -> anyhow::Result<Samples> {
    let http = reqwest::Client::new();
    let script = json!([{"message": {"text": "hello", "chunks": 1}}]);
    let mut first_event = Vec::with_capacity(samples);
    let mut start_request = Vec::with_capacity(samples);
    let mut stream_open = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let run_id = platform.start_run_with(&http, &script).await?;
        let accepted = started.elapsed();
        let mut stream = SseStream::open(
            platform.gateway_addr,
            &BenchPlatform::stream_path(run_id),
            &platform.token,
            16 * 1024,
        )
        .await?;
        while stream.scan.events == 0 {
            if stream.read().await?.is_none() {
                bail!("the stream of run {run_id} ended without an event");
            }
        }
        let first = started.elapsed();
        first_event.push(first);
        start_request.push(accepted);
        stream_open.push(first - accepted);
        // Idle before the next sample: the run is over and its status projected.
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end())
            .await
            .context("the run did not finish")??;
        watcher
            .wait_completed(&[run_id], Duration::from_secs(30))
            .await;
    }
    Ok((first_event, start_request, stream_open))
}
