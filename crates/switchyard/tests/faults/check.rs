//! The invariants, checked against the ground truth in JetStream (`RUN_EVENTS`), what
//! each SSE reader stitched together, and the status projection.

use crate::cluster::TOKEN;
use crate::load::{Acked, ReaderLog};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// The bound the platform promises: every run terminal within this long after a fault
/// (on top of the run's own script, which the fault may have interrupted).
pub(crate) const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// The bound after a fault that can lose a command a worker had already received (in
/// its pull batch, or mid-dispatch): a kill -9 of an executor-manager, a NATS restart.
/// Such a command comes back only when the `executor-manager` consumer's `ack_wait`
/// runs out, so this bound is that ack wait plus 5 s; with the shipped 30 s it exceeds
/// [`RECOVERY_BOUND`] by a few seconds (see docs/reliability.md). Read from the
/// definition so that lowering the ack wait tightens the test.
pub(crate) fn redelivery_bound() -> Duration {
    let ack_wait =
        serde_json::from_str::<Value>(switchyard_platform::nats::EXECUTOR_MANAGER_CONSUMER_JSON)
            .ok()
            .and_then(|definition| definition["ack_wait"].as_u64())
            .map_or(RECOVERY_BOUND, Duration::from_nanos);
    RECOVERY_BOUND.max(ack_wait + Duration::from_secs(5))
}

/// A run's events, in order, from `RUN_EVENTS`.
pub(crate) async fn history(stream: &jetstream::stream::Stream, run_id: &str) -> Vec<Value> {
    let subject = format!("runs.events.{run_id}");
    let mut events = Vec::new();
    let mut next = 1;
    loop {
        match stream
            .direct_get_next_for_subject(subject.clone(), Some(next))
            .await
        {
            Ok(message) => {
                next = message.sequence + 1;
                events.push(serde_json::from_slice(&message.payload).unwrap_or(Value::Null));
            }
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {
                return events;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The last event of a run, if any.
async fn last_type(stream: &jetstream::stream::Stream, run_id: &str) -> Option<String> {
    let message = stream
        .direct_get_last_for_subject(format!("runs.events.{run_id}"))
        .await
        .ok()?;
    let event: Value = serde_json::from_slice(&message.payload).ok()?;
    event["type"].as_str().map(str::to_owned)
}

/// Waits (until `deadline`) for every run's log to end with `run.completed`; returns
/// the runs that did not.
pub(crate) async fn wait_terminal(
    stream: &jetstream::stream::Stream,
    runs: &[Acked],
    deadline: Instant,
) -> Vec<String> {
    let mut pending: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    loop {
        let mut still = Vec::new();
        for run_id in pending {
            if last_type(stream, &run_id).await.as_deref() != Some("run.completed") {
                still.push(run_id);
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What one fault did to the runs of its phase.
#[derive(Debug, Default)]
pub(crate) struct PhaseReport {
    pub(crate) name: String,
    pub(crate) note: String,
    pub(crate) runs: usize,
    /// Start requests that failed and were retried (not acknowledged).
    pub(crate) failed_starts: usize,
    /// Acknowledged runs not terminal by the deadline.
    pub(crate) lost: Vec<String>,
    /// Runs started (or dispatched, or completed) more than once.
    pub(crate) doubled: Vec<String>,
    /// Longest time from the fault to a run's terminal event.
    pub(crate) max_to_terminal: Duration,
    /// Runs that ended later than the recovery bound (plus their script) after the fault.
    pub(crate) late: Vec<String>,
    pub(crate) reader_gaps: usize,
    pub(crate) reader_duplicates: usize,
    /// Readers that did not get to `run.completed` or saw anything but seq 1..n.
    pub(crate) bad_readers: Vec<String>,
    pub(crate) reconnects: u32,
    pub(crate) resets: u32,
    pub(crate) executor_lost: usize,
    /// Runs whose outcome is not the expected one (succeeded, or executor_lost on the
    /// killed executor), with what they got.
    pub(crate) wrong_outcome: Vec<String>,
    /// Runs whose projected status disagrees with their log.
    pub(crate) projection: Vec<String>,
}

impl PhaseReport {
    pub(crate) fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut add = |what: &str, runs: &[String]| {
            if !runs.is_empty() {
                v.push(format!(
                    "{}: {what}: {} ({})",
                    self.name,
                    runs.len(),
                    runs.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        };
        add("acknowledged runs not terminal", &self.lost);
        add("runs started twice", &self.doubled);
        add("runs terminal too late", &self.late);
        add("readers with gaps, duplicates or no end", &self.bad_readers);
        add("unexpected outcomes", &self.wrong_outcome);
        add("projection disagrees with the log", &self.projection);
        v
    }

    pub(crate) fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.1} s | {} / {} | {} | {} | {} |",
            self.name,
            self.runs,
            self.lost.len(),
            self.doubled.len(),
            self.max_to_terminal.as_secs_f64(),
            self.reader_gaps,
            self.reader_duplicates,
            self.reconnects,
            self.executor_lost,
            self.note,
        )
    }

    pub(crate) const HEADER: &str = "| fault | runs | lost | doubled | max time to terminal | reader gaps / duplicates | reader reconnects | executor_lost | notes |\n|---|---|---|---|---|---|---|---|---|";
}

/// Everything the phase's runs must satisfy.
pub(crate) struct Expectation<'a> {
    pub(crate) fault_at: DateTime<Utc>,
    /// Runs dispatched to this executor that were not finished at `fault_at` must end
    /// `executor_lost`; every other run must succeed.
    pub(crate) killed_executor: Option<&'a str>,
    /// How long after the fault (on top of its script) a run may become terminal.
    pub(crate) bound: Duration,
}

pub(crate) async fn evaluate(
    report: &mut PhaseReport,
    stream: &jetstream::stream::Stream,
    runs: &[Acked],
    readers: &[(String, ReaderLog)],
    expect: &Expectation<'_>,
) -> HashMap<String, Vec<Value>> {
    report.runs = runs.len();
    let readers: HashMap<&str, &ReaderLog> =
        readers.iter().map(|(id, log)| (id.as_str(), log)).collect();
    let mut histories = HashMap::new();
    for run in runs {
        let events = history(stream, &run.run_id).await;
        let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
        // A run whose executor was lost before it started is queued and dispatched again
        // (once per `run.queued` after its first dispatch); it still starts only once.
        let requeued = events
            .iter()
            .skip_while(|e| e["type"] != "run.dispatched")
            .filter(|e| e["type"] == "run.queued")
            .count();
        if count("run.started") > 1
            || count("run.dispatched") > 1 + requeued
            || count("run.completed") > 1
        {
            report.doubled.push(run.run_id.clone());
        }
        let seqs_ok = events
            .iter()
            .enumerate()
            .all(|(i, e)| e["seq"].as_u64() == Some(i as u64 + 1));
        if !seqs_ok {
            report
                .doubled
                .push(format!("{} (log seq broken)", run.run_id));
        }
        let completed = events.last().filter(|e| e["type"] == "run.completed");
        if let Some(completed) = completed {
            let at = completed["time"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let after_fault = at
                .map(|t| t.signed_duration_since(expect.fault_at))
                .and_then(|d| d.to_std().ok())
                .unwrap_or(Duration::ZERO);
            report.max_to_terminal = report.max_to_terminal.max(after_fault);
            if after_fault > expect.bound + run.script {
                report.late.push(format!(
                    "{} ({:.1} s)",
                    run.run_id,
                    after_fault.as_secs_f64()
                ));
            }
            let status = completed["data"]["status"].as_str().unwrap_or("");
            let reason = completed["data"]["reason"].as_str().unwrap_or("");
            if reason == "executor_lost" {
                report.executor_lost += 1;
            }
            let executor = events
                .iter()
                .find(|e| e["type"] == "run.dispatched")
                .and_then(|e| e["data"]["executorId"].as_str());
            let on_killed = expect.killed_executor.is_some() && executor == expect.killed_executor;
            let ended_after_fault = at.is_some_and(|t| t > expect.fault_at);
            let expected_lost = on_killed && ended_after_fault && requeued == 0;
            let ok = if expected_lost {
                status == "failed" && reason == "executor_lost"
            } else {
                status == "succeeded"
            };
            if !ok {
                report.wrong_outcome.push(format!(
                    "{} on {} ended {status}/{reason}: {}",
                    run.run_id,
                    executor.unwrap_or("-"),
                    completed["data"]["detail"].as_str().unwrap_or("")
                ));
            }
        } else {
            report.lost.push(run.run_id.clone());
        }

        let n = events.len() as u64;
        match readers.get(run.run_id.as_str()) {
            Some(log) => {
                let distinct: HashSet<u64> = log.seqs.iter().copied().collect();
                let gaps = (1..=n).filter(|s| !distinct.contains(s)).count();
                let duplicates = log.seqs.len() - distinct.len();
                report.reader_gaps += gaps;
                report.reader_duplicates += duplicates;
                report.reconnects += log.connections.saturating_sub(1);
                report.resets += log.resets;
                let exact = log.seqs.iter().copied().eq(1..=n);
                if !exact
                    || !log.finished
                    || log.early_204
                    || log.resets > 0
                    || log.last_type.as_deref() != Some("run.completed")
                {
                    report.bad_readers.push(format!(
                        "{} (saw {} events of {n}, gaps {gaps}, duplicates {duplicates}, finished {}, last {:?})",
                        run.run_id,
                        log.seqs.len(),
                        log.finished,
                        log.last_type
                    ));
                }
            }
            None => report
                .bad_readers
                .push(format!("{} (no reader result)", run.run_id)),
        }
        histories.insert(run.run_id.clone(), events);
    }
    histories
}

/// Checks (until `deadline`) that `GET /api/runs/{id}` shows the status of the run's
/// terminal event.
pub(crate) async fn check_projection(
    report: &mut PhaseReport,
    http: &reqwest::Client,
    base: &str,
    histories: &HashMap<String, Vec<Value>>,
    deadline: Instant,
) {
    let mut pending: Vec<(&String, &str)> = histories
        .iter()
        .filter_map(|(id, events)| {
            let last = events.last()?;
            (last["type"] == "run.completed")
                .then(|| (id, last["data"]["status"].as_str().unwrap_or("")))
        })
        .collect();
    loop {
        let mut still = Vec::new();
        for (run_id, status) in pending {
            let view = http
                .get(format!("{base}/api/runs/{run_id}"))
                .bearer_auth(TOKEN)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            let shown = match view {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["status"].as_str().map(str::to_owned)),
                Err(_) => None,
            };
            if shown.as_deref() != Some(status) {
                still.push((run_id, status));
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report.projection = pending
        .into_iter()
        .map(|(id, status)| format!("{id} (log says {status})"))
        .collect();
}
