//! Executor memory per active run: many runs sleeping inside their scripted provider
//! on one executor, and how much this process's resident memory grew to hold them.

use super::machine::rss_kib;
use super::platform::BenchPlatform;
use super::report::{Figure, Goal, Spec};
use super::watcher::RunWatcher;
use anyhow::Context as _;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub(crate) const PER_RUN: Spec = Spec {
    name: "executor_memory_per_run_kib",
    group: "executor_memory",
    title: "memory per active run, one executor (RSS growth)",
    unit: "KiB/run",
    goal: Goal::AtMost(1024.0),
    ratio_goal: None,
    goal_text: "≤ 1 MiB",
};

pub(crate) const HELD: Spec = Spec {
    name: "executor_runs_held",
    group: "executor_memory",
    title: "active runs held by one executor",
    unit: "runs",
    goal: Goal::AtLeast(1000.0),
    ratio_goal: None,
    goal_text: "1,000",
};

/// Starts `runs` runs that sleep for an hour on the platform's only executor and
/// measures; the runs stay active (the caller stops them) so that what is measured
/// next cannot reuse their memory.
pub(crate) async fn measure(
    platform: &BenchPlatform,
    watcher: &RunWatcher,
    runs: usize,
    timeout: Duration,
) -> anyhow::Result<(Vec<Figure>, Vec<Uuid>)> {
    let executors = platform.executor_count();
    let before = rss_kib().context("no /proc/self/status VmRSS on this system")?;
    let started = Instant::now();
    let script = json!([{"sleepMs": 3_600_000}]);
    let ids = platform.start_runs(&script, runs, 32).await?;
    let all_started = watcher
        .wait_all(&ids, timeout, |p| p.started_at.is_some())
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let after = rss_kib().context("no /proc/self/status VmRSS on this system")?;
    let active = watcher.with_runs(|r| {
        ids.iter()
            .filter(|id| {
                r.get(id)
                    .is_some_and(|p| p.started_at.is_some() && p.completed.is_none())
            })
            .count()
    });
    if active == 0 {
        anyhow::bail!("none of the {runs} runs started within {timeout:?}");
    }
    let growth = after.saturating_sub(before) as f64;
    let details = json!({
        "runs_requested": runs,
        "runs_active": active,
        "all_started": all_started,
        "executors": executors,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "seconds_to_start_all": seconds,
        "script": script,
        "what_grows": "the whole process: executor (supervisor, provider task, control subscription, workspace), manager, control-plane and watcher state of every run; an upper bound for the executor alone",
    });
    Ok((
        vec![
            PER_RUN.measured(growth / active as f64, None, details.clone()),
            HELD.measured(active as f64, None, details),
        ],
        ids,
    ))
}
