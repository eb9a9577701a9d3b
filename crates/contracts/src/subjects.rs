//! Subject and resource names. Every service builds subjects through these functions so
//! that a rename happens in one place and operators can rely on the documented shapes.

use crate::RunId;
use crate::ids::ExecutorId;

/// Work-queue stream holding run commands until an executor-manager worker dispatches them.
pub const RUN_COMMANDS_STREAM: &str = "RUN_COMMANDS";
/// Durable pull consumer shared by every executor-manager worker.
pub const RUN_COMMANDS_CONSUMER: &str = "executor-manager";
/// Limits stream holding every run's ordered event history.
pub const RUN_EVENTS_STREAM: &str = "RUN_EVENTS";
/// Durable consumer the control-plane uses to project run status into Postgres.
pub const RUN_EVENTS_PROJECTOR_CONSUMER: &str = "control-plane-projector";
/// KV bucket with one presence record per live executor.
pub const EXECUTORS_BUCKET: &str = "EXECUTORS";

/// Filter covering every run's events (a `>` suffix keeps replay on the fast path).
pub const RUN_EVENTS_ALL: &str = "runs.events.>";
/// Filter covering every run command.
pub const RUN_COMMANDS_ALL: &str = "runs.commands.>";

/// `runs.commands.<provider>`: where the control-plane publishes a run command.
pub fn run_command(provider: &str) -> String {
    format!("runs.commands.{provider}")
}

/// `runs.events.<run_id>`: the run's ordered event history.
pub fn run_events(run_id: &RunId) -> String {
    format!("runs.events.{run_id}")
}

/// `runs.control.<run_id>`: core request/reply for stop and human-loop replies,
/// answered by the executor that owns the run.
pub fn run_control(run_id: &RunId) -> String {
    format!("runs.control.{run_id}")
}

/// `executors.<executor_id>.dispatch`: core request/reply to hand a run to an executor.
pub fn executor_dispatch(executor_id: &ExecutorId) -> String {
    format!("executors.{executor_id}.dispatch")
}

/// Core NATS subject of [`crate::principals::PrincipalChanged`] notices: the
/// control-plane publishes, every gateway subscribes. At-most-once by design: a missed
/// notice is covered by the gateway's token cache TTL.
pub const PRINCIPAL_CHANGED: &str = "auth.principals.changed";

/// Message id of a run event, used by JetStream's duplicate window: `<run_id>:<seq>`.
pub fn event_msg_id(run_id: &RunId, seq: u64) -> String {
    format!("{run_id}:{seq}")
}

/// Header carrying the event type, so `nats stream view` shows it without decoding JSON.
pub const HEADER_EVENT_TYPE: &str = "Switchyard-Event-Type";
/// Header carrying the run id on commands and events.
pub const HEADER_RUN_ID: &str = "Switchyard-Run-Id";
