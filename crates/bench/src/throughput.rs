//! Sustained runs per second: many HTTP clients start scripted runs of ten provider
//! events as fast as the platform accepts them, with a bound on the runs in flight, and
//! the watcher counts `run.completed` events. The figure is the completions inside the
//! measurement window (after a warm-up) per second of that window.

use super::machine::CpuMark;
use super::platform::BenchPlatform;
use super::report::{Goal, Spec};
use super::samples::Percentiles;
use super::watcher::RunWatcher;
use anyhow::bail;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use uuid::Uuid;

pub(crate) const RUNS: Spec = Spec {
    name: "runs_per_sec",
    group: "runs",
    title: "sustained runs/s, start → run.completed",
    unit: "runs/s",
    goal: Goal::AtLeast(3_000.0),
    ratio_goal: None,
    goal_text: "≥ 3,000 runs/s",
};

pub(crate) const SCALING: Spec = Spec {
    name: "runs_per_sec_two_pairs",
    group: "scaling",
    title: "the same load, 2 managers + 2 executors",
    unit: "runs/s",
    goal: Goal::Report,
    ratio_goal: None,
    goal_text: "report (vs 1 + 1)",
};

/// Ten provider events: 4 deltas + message.completed, tool started/output/completed,
/// file.changed, usage. With run.queued, claimed, dispatched, started and completed a
/// run has 15 events.
pub(crate) fn ten_event_script() -> Value {
    json!([
        {"message": {"text": "Looking at the workspace before changing it.", "chunks": 4}},
        {"toolCall": {"name": "shell", "input": {"command": "ls"}, "output": "README.md\nsrc\n", "exitCode": 0}},
        {"fileChange": {"path": "hello.txt", "change": "added"}},
        {"usage": {"inputTokens": 120, "outputTokens": 42}}
    ])
}

/// Takes one of the runs-in-flight slots, waiting until `end` at most; `false` when the
/// time is up. The slot is given back by whoever sees the run complete.
pub(crate) async fn take_slot(permits: &Semaphore, end: Instant) -> bool {
    if Instant::now() >= end {
        return false;
    }
    let deadline = tokio::time::Instant::from_std(end);
    match tokio::time::timeout_at(deadline, permits.acquire()).await {
        Ok(Ok(permit)) => {
            permit.forget();
            true
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) duration: Duration,
    pub(crate) clients: usize,
    /// Runs started and not yet completed, at most.
    pub(crate) max_in_flight: usize,
    pub(crate) drain_timeout: Duration,
}

/// `(runs/s, details)`.
pub(crate) async fn sustained(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    load: Load,
    nats_pid: Option<u32>,
) -> anyhow::Result<(f64, Value)> {
    let script = Arc::new(ten_event_script());
    let permits = Arc::new(Semaphore::new(load.max_in_flight));
    watcher.release_on_completion(Some(permits.clone()));
    let started = Instant::now();
    let end = started + load.duration;
    let window_start = started + load.duration / 5;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.clients {
        let permits = permits.clone();
        let script = script.clone();
        let http = platform.http.clone();
        let url = format!("{}/api/runs/start", platform.gateway_url);
        let token = platform.token.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            let body = json!({"provider": "scripted", "prompt": "benchmark", "providerOptions": {"script": *script}});
            while take_slot(&permits, end).await {
                let sent = Instant::now();
                let response = http.post(&url).bearer_auth(&token).json(&body).send().await;
                let accepted = match response {
                    Ok(r) if r.status().as_u16() == 202 => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|b| b["runId"].as_str().and_then(|id| id.parse::<Uuid>().ok())),
                    Ok(r) => {
                        first_error.get_or_insert_with(|| format!("HTTP {}", r.status()));
                        None
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        None
                    }
                };
                match accepted {
                    Some(id) => {
                        latencies.push(sent.elapsed());
                        ids.push(id);
                    }
                    None => {
                        errors += 1;
                        permits.add_permits(1);
                    }
                }
            }
            (ids, latencies, errors, first_error)
        });
    }

    // Resource use inside the window only.
    tokio::time::sleep_until(tokio::time::Instant::from_std(window_start)).await;
    let pg_pids = postgres_backends(platform).await;
    let cpu = CpuMark::now(nats_pid, &pg_pids);
    let pg_before = pg_stats(platform).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let cpu = cpu.usage_since();
    let pg_after = pg_stats(platform).await;
    let projector_backlog = projector_backlog(platform).await;

    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    while let Some(joined) = tasks.join_next().await {
        let (i, l, e, f) = joined?;
        ids.extend(i);
        latencies.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let drained = watcher.wait_completed(&ids, load.drain_timeout).await;
    watcher.release_on_completion(None);
    let projection_lag = projection_caught_up(platform, end, load.drain_timeout).await;

    let (in_window, succeeded, failed) = watcher.with_runs(|runs| {
        let mut in_window = 0usize;
        let (mut succeeded, mut failed) = (0usize, 0usize);
        for id in &ids {
            if let Some((at, status)) = runs.get(id).and_then(|p| p.completed.as_ref()) {
                if *at >= window_start && *at < end {
                    in_window += 1;
                }
                if status == "succeeded" {
                    succeeded += 1;
                } else {
                    failed += 1;
                }
            }
        }
        (in_window, succeeded, failed)
    });
    let window = end.duration_since(window_start).as_secs_f64();
    if in_window == 0 {
        bail!(
            "no run completed inside the measurement window ({} started, {errors} start errors, first: {})",
            ids.len(),
            first_error.unwrap_or_else(|| "none".to_owned())
        );
    }
    let runs_per_sec = in_window as f64 / window;
    let per_run = |before: Option<i64>, after: Option<i64>| match (before, after) {
        (Some(b), Some(a)) => Some((a - b) as f64 / in_window as f64),
        _ => None,
    };
    let details = json!({
        "http_clients": load.clients,
        "max_runs_in_flight": load.max_in_flight,
        "load_seconds": load.duration.as_secs_f64(),
        "window_seconds": window,
        "completed_in_window": in_window,
        "runs_started": ids.len(),
        "start_errors": errors,
        "first_start_error": first_error,
        "succeeded": succeeded,
        "not_succeeded": failed,
        "all_completed_after_load": drained,
        "start_request_latency": Percentiles::of(&latencies),
        "events_per_run": 15,
        "script": *script,
        "cpu_in_window": cpu,
        "projector_backlog_at_window_end": projector_backlog,
        "projection_caught_up_secs_after_load": projection_lag,
        "cpu_ms_per_completed_run": {
            "switchyard_process": cpu.switchyard_process_cores.map(|c| c * window * 1e3 / in_window as f64),
            "nats_server": cpu.nats_server_cores.map(|c| c * window * 1e3 / in_window as f64),
            "postgres_backends": cpu.postgres_backends_cores.map(|c| c * window * 1e3 / in_window as f64),
        },
        "postgres_in_window_per_completed_run": {
            "note": "pg_stat_database deltas of the benchmark database; backends report at most once a second, so these are approximate",
            "commits": per_run(pg_before.map(|s| s.0), pg_after.map(|s| s.0)),
            "rows_inserted": per_run(pg_before.map(|s| s.1), pg_after.map(|s| s.1)),
            "rows_updated": per_run(pg_before.map(|s| s.2), pg_after.map(|s| s.2)),
            "rows_deleted": per_run(pg_before.map(|s| s.3), pg_after.map(|s| s.3)),
        },
    });
    Ok((runs_per_sec, details))
}

/// The OS process ids of the Postgres backends connected to the benchmark database.
pub(crate) async fn postgres_backends(platform: &BenchPlatform) -> Vec<u32> {
    sqlx::query_scalar!("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        .fetch_all(&platform.db.pool)
        .await
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect()
}

/// `(xact_commit, tup_inserted, tup_updated, tup_deleted)` of the benchmark database.
async fn pg_stats(platform: &BenchPlatform) -> Option<(i64, i64, i64, i64)> {
    sqlx::query!(
        r#"SELECT xact_commit AS "xact_commit!", tup_inserted AS "tup_inserted!",
                  tup_updated AS "tup_updated!", tup_deleted AS "tup_deleted!"
           FROM pg_stat_database WHERE datname = current_database()"#
    )
    .fetch_one(&platform.db.pool)
    .await
    .ok()
    .map(|s| (s.xact_commit, s.tup_inserted, s.tup_updated, s.tup_deleted))
}

/// Events the control-plane's projector had not yet applied (pending in its consumer,
/// or delivered and not acknowledged): how far the status in Postgres trails the log.
async fn projector_backlog(platform: &BenchPlatform) -> Option<Value> {
    let js = async_nats::jetstream::new(platform.nats_client.clone());
    let stream = js
        .get_stream(switchyard_contracts::subjects::RUN_EVENTS_STREAM)
        .await
        .ok()?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(switchyard_contracts::subjects::RUN_EVENTS_PROJECTOR_CONSUMER)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some(json!({
        "pending": info.num_pending,
        "ack_pending": info.num_ack_pending,
    }))
}

/// Seconds after the end of the load until the projector had applied every event, or
/// `None` if it had not within `timeout`.
async fn projection_caught_up(
    platform: &BenchPlatform,
    end: Instant,
    timeout: Duration,
) -> Option<f64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let backlog = projector_backlog(platform).await?;
        if backlog["pending"] == 0 && backlog["ack_pending"] == 0 {
            return Some(end.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
