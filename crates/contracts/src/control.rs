//! Control messages: core NATS request/reply on `runs.control.<run_id>`, answered by the
//! executor that owns the run.

use crate::event::HumanLoopDecision;
use crate::ids::HumanLoopRequestId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Stop the run: protocol interrupt first, then signals to the process group.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Answer a pending human-loop request. Without `requestId`, the oldest pending one.
    #[serde(rename_all = "camelCase")]
    HumanLoopReply {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<HumanLoopRequestId>,
        decision: HumanLoopDecision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlOutcome {
    Accepted,
    /// This executor does not own the run (it never did, or the run already ended).
    UnknownRun,
    /// The run has no pending human-loop request (or not the one named).
    NoPendingRequest,
    /// The request could not be decoded.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlReply {
    pub outcome: ControlOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ControlReply {
    pub fn new(outcome: ControlOutcome) -> Self {
        Self {
            outcome,
            message: None,
        }
    }

    pub fn with_message(outcome: ControlOutcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: Some(message.into()),
        }
    }
}
