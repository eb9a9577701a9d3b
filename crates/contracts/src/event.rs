//! The run event envelope and the provider-neutral event types.
//!
//! Every event of a run lives on `runs.events.<run_id>` with a per-run `seq` that starts
//! at 1 and has no gaps; the envelope is the same whoever wrote the event (control-plane,
//! executor-manager or executor).

use crate::RunId;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One event of a run, as stored in JetStream and sent over SSE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    pub run_id: RunId,
    /// Position in the run's history: 1, 2, 3 … without gaps.
    pub seq: u64,
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: RunEventKind,
}

impl RunEvent {
    pub fn new(run_id: RunId, seq: u64, kind: RunEventKind) -> Self {
        Self {
            run_id,
            seq,
            time: Utc::now(),
            kind,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.kind, RunEventKind::RunCompleted(_))
    }
}

/// The part of an event every reader can decode, whatever its type: readers that only
/// need ordering or the type (the gateway, the projector) use it so that an event type
/// added later does not break them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEventHeader {
    pub run_id: RunId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: String,
}

impl RunEventHeader {
    pub fn is_terminal(&self) -> bool {
        self.event_type == RUN_COMPLETED
    }
}

/// Wire name of the terminal event.
pub const RUN_COMPLETED: &str = "run.completed";

/// Provider-neutral event types. `type` names the variant, `data` holds its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum RunEventKind {
    #[serde(rename = "run.queued")]
    RunQueued(RunQueued),
    #[serde(rename = "run.claimed")]
    RunClaimed(RunClaimed),
    #[serde(rename = "run.dispatched")]
    RunDispatched(RunDispatched),
    #[serde(rename = "run.started")]
    RunStarted(RunStarted),
    #[serde(rename = "run.completed")]
    RunCompleted(RunCompleted),
    #[serde(rename = "message.delta")]
    MessageDelta(MessageDelta),
    #[serde(rename = "message.completed")]
    MessageCompleted(MessageCompleted),
    #[serde(rename = "reasoning.delta")]
    ReasoningDelta(ReasoningDelta),
    #[serde(rename = "tool.started")]
    ToolStarted(ToolStarted),
    #[serde(rename = "tool.output")]
    ToolOutput(ToolOutput),
    #[serde(rename = "tool.completed")]
    ToolCompleted(ToolCompleted),
    #[serde(rename = "file.changed")]
    FileChanged(FileChanged),
    #[serde(rename = "human_loop.requested")]
    HumanLoopRequested(HumanLoopRequested),
    #[serde(rename = "human_loop.resolved")]
    HumanLoopResolved(HumanLoopResolved),
    #[serde(rename = "usage")]
    Usage(Usage),
    #[serde(rename = "diagnostic")]
    Diagnostic(Diagnostic),
}

impl RunEventKind {
    /// The wire name of this event type (the `type` field).
    pub fn type_name(&self) -> &'static str {
        match self {
            RunEventKind::RunQueued(_) => "run.queued",
            RunEventKind::RunClaimed(_) => "run.claimed",
            RunEventKind::RunDispatched(_) => "run.dispatched",
            RunEventKind::RunStarted(_) => "run.started",
            RunEventKind::RunCompleted(_) => RUN_COMPLETED,
            RunEventKind::MessageDelta(_) => "message.delta",
            RunEventKind::MessageCompleted(_) => "message.completed",
            RunEventKind::ReasoningDelta(_) => "reasoning.delta",
            RunEventKind::ToolStarted(_) => "tool.started",
            RunEventKind::ToolOutput(_) => "tool.output",
            RunEventKind::ToolCompleted(_) => "tool.completed",
            RunEventKind::FileChanged(_) => "file.changed",
            RunEventKind::HumanLoopRequested(_) => "human_loop.requested",
            RunEventKind::HumanLoopResolved(_) => "human_loop.resolved",
            RunEventKind::Usage(_) => "usage",
            RunEventKind::Diagnostic(_) => "diagnostic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunQueued {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunClaimed {
    pub worker_id: String,
    /// How many times the work queue has delivered this command (1 on the first claim).
    pub attempt: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDispatched {
    pub executor_id: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStarted {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminalStatus {
    Succeeded,
    Failed,
    Stopped,
    TimedOut,
}

impl TerminalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalStatus::Succeeded => "succeeded",
            TerminalStatus::Failed => "failed",
            TerminalStatus::Stopped => "stopped",
            TerminalStatus::TimedOut => "timed_out",
        }
    }
}

/// Why a run did not succeed. A closed set: every failure maps to exactly one reason,
/// and `unknown_failure` always carries raw evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    AuthMissing,
    AuthInvalid,
    RateLimited,
    Timeout,
    ProviderNoOutput,
    ProviderError,
    /// The model API could not be reached (connection refused, DNS, network down) for
    /// longer than the executor's bound, or the CLI gave up connecting.
    ProviderUnreachable,
    ProviderCrashed,
    BinaryMissing,
    UnsupportedProvider,
    ExecutorLost,
    Stopped,
    UnknownFailure,
    /// The run went over its budget (`providerOptions.budget`: model turns, output
    /// tokens, events or bytes of events); the detail names the limit.
    BudgetExceeded,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::AuthMissing => "auth_missing",
            FailureReason::AuthInvalid => "auth_invalid",
            FailureReason::RateLimited => "rate_limited",
            FailureReason::Timeout => "timeout",
            FailureReason::ProviderNoOutput => "provider_no_output",
            FailureReason::ProviderError => "provider_error",
            FailureReason::ProviderUnreachable => "provider_unreachable",
            FailureReason::ProviderCrashed => "provider_crashed",
            FailureReason::BinaryMissing => "binary_missing",
            FailureReason::UnsupportedProvider => "unsupported_provider",
            FailureReason::ExecutorLost => "executor_lost",
            FailureReason::Stopped => "stopped",
            FailureReason::UnknownFailure => "unknown_failure",
            FailureReason::BudgetExceeded => "budget_exceeded",
        }
    }

    /// Platform failures may be retried automatically; provider failures may not,
    /// because an agent turn is not idempotent and the same input fails the same way.
    pub fn is_platform_failure(self) -> bool {
        matches!(self, FailureReason::ExecutorLost)
    }
}

/// Raw material kept for a failed run so that a human can see what happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw_lines: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl Evidence {
    pub fn is_empty(&self) -> bool {
        self.stderr_tail.is_empty() && self.raw_lines.is_empty() && self.exit_code.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCompleted {
    pub status: TerminalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Evidence::is_empty")]
    pub evidence: Evidence,
}

impl RunCompleted {
    pub fn succeeded() -> Self {
        Self {
            status: TerminalStatus::Succeeded,
            reason: None,
            detail: None,
            evidence: Evidence::default(),
        }
    }

    pub fn failed(reason: FailureReason, detail: impl Into<String>) -> Self {
        let status = match reason {
            FailureReason::Stopped => TerminalStatus::Stopped,
            FailureReason::Timeout => TerminalStatus::TimedOut,
            _ => TerminalStatus::Failed,
        };
        Self {
            status,
            reason: Some(reason),
            detail: Some(detail.into()),
            evidence: Evidence::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelta {
    pub message_id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageCompleted {
    pub message_id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolStarted {
    pub call_id: String,
    pub name: String,
    #[serde(default)]
    pub input: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolOutput {
    pub call_id: String,
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Succeeded,
    Failed,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolCompleted {
    pub call_id: String,
    pub status: ToolStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileChanged {
    pub path: String,
    pub change: FileChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// What the agent asks a human to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HumanLoopKind {
    /// Run a command.
    Command,
    /// Apply a file change.
    FileChange,
    /// Use a tool or permission not covered above.
    Permission,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HumanLoopRequested {
    pub request_id: String,
    pub kind: HumanLoopKind,
    /// One line a human can decide on ("Run `rm -rf build`?").
    pub prompt: String,
    /// Provider details (command, cwd, diff …) for a richer UI.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// A human's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HumanLoopDecision {
    #[serde(alias = "accept", alias = "allow", alias = "approved")]
    Approve,
    #[serde(alias = "decline", alias = "reject", alias = "denied")]
    Deny,
}

/// Who resolved a human-loop request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HumanLoopResolver {
    Human,
    /// Nobody answered in time; the request was declined, the run went on.
    Timeout,
    /// The run ended (stop, failure) while the request was pending.
    RunEnded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HumanLoopResolved {
    pub request_id: String,
    pub decision: HumanLoopDecision,
    pub resolved_by: HumanLoopResolver,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticLevel {
    Info,
    Warn,
    Error,
}

/// Provider stderr, unknown protocol lines and platform notices (recoveries, retries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    pub level: DiagnosticLevel,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// A run's status as projected from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Claimed,
    Dispatched,
    Running,
    WaitingForHuman,
    Succeeded,
    Failed,
    Stopped,
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Claimed => "claimed",
            RunStatus::Dispatched => "dispatched",
            RunStatus::Running => "running",
            RunStatus::WaitingForHuman => "waiting_for_human",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Stopped => "stopped",
            RunStatus::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Stopped | RunStatus::TimedOut
        )
    }
}

impl From<TerminalStatus> for RunStatus {
    fn from(s: TerminalStatus) -> Self {
        match s {
            TerminalStatus::Succeeded => RunStatus::Succeeded,
            TerminalStatus::Failed => RunStatus::Failed,
            TerminalStatus::Stopped => RunStatus::Stopped,
            TerminalStatus::TimedOut => RunStatus::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_type_and_data_at_top_level() {
        let event = RunEvent::new(
            uuid::Uuid::nil(),
            3,
            RunEventKind::MessageDelta(MessageDelta {
                message_id: "m1".into(),
                text: "hi".into(),
            }),
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "message.delta");
        assert_eq!(json["data"]["text"], "hi");
        assert_eq!(json["seq"], 3);
        let back: RunEvent = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, event);
        let header: RunEventHeader = serde_json::from_value(json).unwrap();
        assert_eq!(header.event_type, "message.delta");
        assert!(!header.is_terminal());
    }

    #[test]
    fn type_name_matches_serialized_tag() {
        let kind = RunEventKind::RunCompleted(RunCompleted::failed(FailureReason::Stopped, "x"));
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["type"], kind.type_name());
        assert_eq!(json["data"]["status"], "stopped");
    }

    #[test]
    fn run_status_round_trips_through_its_name() {
        for s in [
            RunStatus::Queued,
            RunStatus::WaitingForHuman,
            RunStatus::TimedOut,
        ] {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunStatus::parse("nope"), None);
    }
}
