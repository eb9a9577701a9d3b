//! Dispatch: core NATS request/reply on `executors.<id>.dispatch`, from an
//! executor-manager worker to the executor it picked.

use crate::command::RunCommand;
use crate::ids::WorkerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the next event of a run goes. Passed along with ownership so that the next
/// writer appends with `Nats-Expected-Last-Subject-Sequence` and a writer that lost
/// ownership (a zombie) is rejected by the stream instead of forking the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPosition {
    /// The `seq` the next event of the run gets.
    pub next_seq: u64,
    /// Stream sequence of the run's last stored event (0 when it has none).
    pub last_stream_seq: u64,
}

impl EventPosition {
    /// Position of a run with no events yet.
    pub const EMPTY: EventPosition = EventPosition {
        next_seq: 1,
        last_stream_seq: 0,
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatchRequest {
    pub command: RunCommand,
    /// The run's overall timeout, resolved by the executor-manager.
    pub timeout_ms: u64,
    pub worker_id: WorkerId,
    pub position: EventPosition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispatchOutcome {
    /// The executor owns the run now (or already did: redelivery is idempotent).
    Accepted,
    /// No free slot; try another executor or later.
    Full,
    /// The executor is shutting down and takes no new runs.
    Draining,
    /// The provider's binary is not installed on this executor.
    UnsupportedProvider,
    /// The run's history moved on (another owner, or it was concluded): drop the command.
    Conflict,
    /// The request could not be decoded.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatchReply {
    pub outcome: DispatchOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl DispatchReply {
    pub fn new(outcome: DispatchOutcome) -> Self {
        Self {
            outcome,
            message: None,
        }
    }

    pub fn with_message(outcome: DispatchOutcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: Some(message.into()),
        }
    }
}
