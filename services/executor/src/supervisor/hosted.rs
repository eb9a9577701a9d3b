//! Runs in run hosts (see [`crate::hosting`]): while the executor lives it watches the
//! host of each such run. A stop it is asked for (HTTP, the end of a drain) is
//! forwarded to the host, and a host that died without concluding its run gets the run
//! concluded `executor_lost`. At start-up it adopts the hosts an earlier process under
//! its id left running.

use crate::control;
use crate::executor::Executor;
use crate::hosting::{self, HostProcess, HostRecord};
use crate::runs::{RunState, StopCause};
use std::sync::Arc;
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::event::RunCompleted;
use switchyard_contracts::{FailureReason, RunEventKind, RunId};
use tracing::Instrument as _;

/// Holds the run's slot while its host runs: forwards a stop, and concludes the run
/// if the host ended without doing so.
pub(crate) async fn watch(executor: Arc<Executor>, run: Arc<RunState>, mut host: HostProcess) {
    let span = tracing::info_span!("run_host", run_id = %run.run_id, pid = host.pid());
    async move {
        tokio::select! {
            () = host.exited() => {}
            () = run.stop_requested() => {
                forward_stop(&executor, &run, &host).await;
                host.exited().await;
            }
        }
        // A host that was killed could not remove its record, nor what it started.
        hosting::reap(&executor.settings, run.run_id).await;
        conclude_if_abandoned(&executor, run.run_id).await;
        run.ended.cancel();
        executor.runs.finish(run.run_id);
        tracing::info!(run_id = %run.run_id, "run host exited");
    }
    .instrument(span)
    .await;
}

/// Sends the stop to the host over the run's control subject; signals it when that
/// fails (the host's supervisor then stops the run as a shutdown).
async fn forward_stop(executor: &Executor, run: &RunState, host: &HostProcess) {
    let reason = match run.cause() {
        StopCause::Requested(reason) => reason,
        StopCause::Shutdown(why) => Some(why.detail()),
        StopCause::Timeout | StopCause::LogLost | StopCause::OverBudget(_) => None,
    };
    let request = ControlRequest::Stop { reason };
    let reply = control::forward(&executor.client, run.run_id, &request).await;
    if reply.outcome == ControlOutcome::Accepted {
        return;
    }
    tracing::warn!(run_id = %run.run_id, outcome = ?reply.outcome, message = reply.message.as_deref(), "the run host did not take the stop; signalling it");
    if let Some(pid) = host.pid().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// A host that died (killed, crashed) leaves its run without `run.completed`: conclude
/// it at the log's position, so a writer that is still alive somewhere fences this.
async fn conclude_if_abandoned(executor: &Executor, run_id: RunId) {
    let last = match executor.log.last(run_id).await {
        Ok(Some(last)) => last,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%run_id, %error, "cannot read the run's log after its host exited; the reconciler will judge it");
            return;
        }
    };
    if last.header.is_terminal() {
        return;
    }
    let mut position = last.next_position();
    let completed = RunCompleted::failed(
        FailureReason::ExecutorLost,
        "the run's host process exited before the run ended",
    );
    match executor
        .log
        .append(run_id, &mut position, RunEventKind::RunCompleted(completed))
        .await
    {
        Ok(_) => {
            tracing::warn!(%run_id, "the run host exited without ending the run; concluded it executor_lost")
        }
        Err(error) => tracing::info!(%run_id, %error, "could not conclude the run its host left"),
    }
}

/// Adopts the hosts an earlier process under this executor's id left running.
pub(crate) async fn adopt(executor: &Arc<Executor>) {
    let dir = hosting::records_dir(&executor.settings);
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let record = match serde_json::from_slice::<HostRecord>(&bytes) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable run host record");
                continue;
            }
        };
        if record.executor_id != executor.id {
            continue;
        }
        if !hosting::is_run_host(record.pid, record.run_id) {
            // The host is gone (killed while no executor watched it, or with the
            // machine): what it started may still run, and its run may be unfinished.
            tracing::warn!(run_id = %record.run_id, pid = record.pid, "the host of a run is gone; reaping what it left");
            hosting::reap(&executor.settings, record.run_id).await;
            conclude_if_abandoned(executor, record.run_id).await;
            continue;
        }
        let Some(run) = executor
            .runs
            .adopt(record.run_id, record.admitted_at, record.pid)
        else {
            continue;
        };
        tracing::info!(run_id = %record.run_id, pid = record.pid, "adopted a run host left by an earlier process");
        executor.tasks.spawn(watch(
            executor.clone(),
            run,
            HostProcess::Adopted(record.pid),
        ));
    }
}
