//! Event throughput from the executor to SSE clients, and replay of a finished run to a
//! new client.

use super::baselines::{self, REPLAY_FIRST, REPLAY_RATE};
use super::event_path::EVENT_PATH;
use super::machine::CpuMark;
use super::platform::BenchPlatform;
use super::report::{Baseline, Figure, Goal, Spec};
use super::sse::SseStream;
use super::watcher::RunWatcher;
use anyhow::{Context as _, bail};
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard_contracts::subjects;

pub(crate) const EVENTS: Spec = Spec {
    name: "sse_events_per_sec",
    group: "events",
    title: "events/s, executor → SSE client",
    unit: "events/s",
    goal: Goal::AtLeast(100_000.0),
    ratio_goal: Some(0.7),
    goal_text: "≥ 100k/s and ≥ 0.7× raw publish",
};

pub(crate) const REPLAY: Spec = Spec {
    name: "replay_events_per_sec",
    group: "replay",
    title: "replay of a finished run to a new client",
    unit: "events/s",
    goal: Goal::AtLeast(150_000.0),
    ratio_goal: None,
    goal_text: "≥ 150k/s",
};

pub(crate) const REPLAY_FIRST_EVENT: Spec = Spec {
    name: "replay_first_event_ms",
    group: "replay",
    title: "replay: request → first event",
    unit: "ms",
    goal: Goal::AtMost(5.0),
    ratio_goal: None,
    goal_text: "≤ 5 ms",
};

/// Read buffer of the throughput clients.
const BUFFER: usize = 64 * 1024;

/// One client's view of a stream.
#[derive(Debug, Clone, Copy)]
struct Read {
    events: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    terminal: bool,
}

async fn read_stream(
    platform: &BenchPlatform,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Read> {
    let mut stream = SseStream::open(platform.gateway_addr, path, &platform.token, BUFFER).await?;
    let mut read = Read {
        events: 0,
        first: None,
        last: None,
        terminal: false,
    };
    let reading = async {
        loop {
            if stream.scan.events > 0 {
                let now = Instant::now();
                read.first.get_or_insert(now);
            }
            if stream.scan.terminal {
                break;
            }
            match stream.read().await? {
                Some(new) if new > 0 => {
                    let now = Instant::now();
                    read.first.get_or_insert(now);
                    read.last = Some(now);
                }
                Some(_) => {}
                None => break,
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, reading)
        .await
        .context("the stream did not end in time")??;
    read.events = stream.scan.events;
    read.terminal = stream.scan.terminal;
    Ok(read)
}

/// A run with `filler` events read by `clients` SSE clients at once; the figure is the
/// slowest client's rate from its first to its last event.
pub(crate) async fn events_per_sec(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    filler: usize,
    clients: usize,
    raw: &[Baseline],
    nats_pid: Option<u32>,
    timeout: Duration,
) -> anyhow::Result<Figure> {
    let cpu = CpuMark::now(nats_pid, &[]);
    let run_id = platform
        .start_run(&json!([{"filler": {"count": filler}}]))
        .await?;
    let path = BenchPlatform::stream_path(run_id);
    let reads: Vec<anyhow::Result<Read>> =
        futures::future::join_all((0..clients).map(|_| read_stream(platform, &path, timeout)))
            .await;
    let cpu = cpu.usage_since();
    let reads: Vec<Read> = reads.into_iter().collect::<anyhow::Result<_>>()?;
    watcher.wait_completed(&[run_id], timeout).await;
    let progress = watcher
        .progress(run_id)
        .context("the watcher lost the run")?;
    let mut rates = Vec::new();
    for read in &reads {
        let (Some(first), Some(last)) = (read.first, read.last) else {
            bail!("a client read no events");
        };
        if !read.terminal || read.events != progress.last_seq {
            bail!(
                "a client read {} events (terminal: {}), the run has {}",
                read.events,
                read.terminal,
                progress.last_seq
            );
        }
        let seconds = last.duration_since(first).as_secs_f64();
        if seconds > 0.0 {
            rates.push((read.events - 1) as f64 / seconds);
        }
    }
    let slowest = rates
        .iter()
        .copied()
        .min_by(f64::total_cmp)
        .context("the events arrived too fast to time")?;
    // The executor's side, seen by the watcher: first event to run.completed.
    let production = progress
        .completed
        .as_ref()
        .map(|(at, _)| at.duration_since(progress.first_seen).as_secs_f64())
        .filter(|s| *s > 0.0)
        .map(|s| (progress.last_seq - 1) as f64 / s);
    let pipelined = raw.iter().find(|b| b.name == baselines::PIPELINED.0);
    let sequential = raw
        .iter()
        .find(|b| b.name == baselines::SEQUENTIAL.0)
        .and_then(|b| b.value);
    let event_path = raw
        .iter()
        .find(|b| b.name == EVENT_PATH.0)
        .and_then(|b| b.value);
    Ok(EVENTS.measured(
        slowest,
        pipelined,
        json!({
            "run_events": progress.last_seq,
            "clients": clients,
            "per_client_events_per_sec": rates,
            "executor_append_rate_seen_by_watcher": production,
            "raw_sequential_publish_msg_per_sec": sequential,
            "ratio_to_raw_sequential_publish": sequential.filter(|v| *v > 0.0).map(|v| slowest / v),
            "raw_event_path_msg_per_sec": event_path,
            "ratio_to_raw_event_path": event_path.filter(|v| *v > 0.0).map(|v| slowest / v),
            "cpu": cpu,
        }),
    ))
}

/// Replays of each kind: one replay lasts tens of milliseconds, so a single one is at
/// the mercy of whatever else the machine does in that moment.
const REPLAY_ROUNDS: usize = 5;

/// A finished run of `filler` events replayed to one new client, and the same subject
/// replayed with a raw ordered consumer: [`REPLAY_ROUNDS`] of each, alternating, the
/// figures being the medians.
pub(crate) async fn replay(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    filler: usize,
    timeout: Duration,
) -> anyhow::Result<(Vec<Figure>, Vec<Baseline>)> {
    let run_id = platform
        .start_run(&json!([{"filler": {"count": filler}}]))
        .await?;
    if !watcher.wait_completed(&[run_id], timeout).await {
        bail!("the run to replay did not finish within {timeout:?}");
    }
    let events = watcher
        .progress(run_id)
        .context("the watcher lost the run")?
        .last_seq;
    let subject = subjects::run_events(&run_id);
    // Once to warm the server's caches, so that neither reader pays for a cold block.
    let warm = baselines::ordered_replay(&platform.nats_client, subject.clone(), events).await?;

    let mut gateway = Vec::with_capacity(REPLAY_ROUNDS);
    let mut raw = Vec::with_capacity(REPLAY_ROUNDS);
    for _ in 0..REPLAY_ROUNDS {
        // Each replay's client is new, and the previous one has left: the gateway has no
        // feed for the run and tails it from its first event again.
        gateway.push(replay_once(platform, run_id, events, timeout).await?);
        let (count, first, total) =
            baselines::ordered_replay(&platform.nats_client, subject.clone(), events).await?;
        raw.push((first, count as f64 / total.as_secs_f64()));
    }
    let rates = |samples: &[(Duration, f64)]| samples.iter().map(|s| s.1).collect::<Vec<_>>();
    let firsts_ms = |samples: &[(Duration, f64)]| {
        samples
            .iter()
            .map(|s| s.0.as_secs_f64() * 1e3)
            .collect::<Vec<_>>()
    };
    let raw_details = json!({
        "messages": events,
        "rounds": REPLAY_ROUNDS,
        "msg_per_sec": rates(&raw),
        "first_message_ms": firsts_ms(&raw),
        "consumer": "ordered pull consumer filtered on the run's subject, from the stream's first message, created by the measurement",
        "warm_up_replay_seconds": warm.2.as_secs_f64(),
    });
    let raw_rate = Baseline::measured(
        REPLAY_RATE.0,
        REPLAY_RATE.1,
        median(rates(&raw)),
        "msg/s",
        raw_details.clone(),
    );
    let raw_first = Baseline::measured(
        REPLAY_FIRST.0,
        REPLAY_FIRST.1,
        median(firsts_ms(&raw)),
        "ms",
        raw_details,
    );
    let details = json!({
        "run_events": events,
        "rounds": REPLAY_ROUNDS,
        "events_per_sec": rates(&gateway),
        "first_event_ms": firsts_ms(&gateway),
        "definition": "per round: events ÷ time from sending the request to reading the terminal event (connection, authorization lookup and tail set-up included); the figure is the median round, the rounds alternating with the raw consumer's",
    });
    Ok((
        vec![
            REPLAY.measured(median(rates(&gateway)), Some(&raw_rate), details.clone()),
            REPLAY_FIRST_EVENT.measured(median(firsts_ms(&gateway)), Some(&raw_first), details),
        ],
        vec![raw_rate, raw_first],
    ))
}

/// One new client reads the whole finished run: (time to its first event, events/s).
async fn replay_once(
    platform: &BenchPlatform,
    run_id: uuid::Uuid,
    events: u64,
    timeout: Duration,
) -> anyhow::Result<(Duration, f64)> {
    let started = Instant::now();
    let mut stream = SseStream::open(
        platform.gateway_addr,
        &BenchPlatform::stream_path(run_id),
        &platform.token,
        BUFFER,
    )
    .await?;
    let reading = async {
        let mut first = None;
        while !stream.scan.terminal {
            if stream.read().await?.is_none() {
                break;
            }
            if stream.scan.events > 0 {
                first.get_or_insert_with(|| started.elapsed());
            }
        }
        anyhow::Ok(first)
    };
    let first = tokio::time::timeout(timeout, reading)
        .await
        .context("the replay did not end in time")??
        .context("the replay delivered no event")?;
    let total = started.elapsed();
    if stream.scan.events != events || !stream.scan.terminal {
        bail!(
            "the replay delivered {} of {events} events (terminal: {})",
            stream.scan.events,
            stream.scan.terminal
        );
    }
    Ok((first, events as f64 / total.as_secs_f64()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
