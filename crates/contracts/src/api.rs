//! HTTP request and response bodies of the public API (gateway → control-plane) and the
//! executor's standalone provider-run API.

use crate::RunId;
use crate::event::{FailureReason, HumanLoopDecision, HumanLoopResolver, RunStatus};
use crate::ids::{AppId, ExecutorId, HumanLoopRequestId, ProfileName};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every error response: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_json`.
    pub code: String,
    /// Human-readable explanation; never contains internal error text.
    pub message: String,
}

/// Defaults an app registers for its runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Names of environment variables the provider needs; values stay on executors.
    #[serde(default)]
    pub credential_env: Vec<String>,
    #[serde(default)]
    pub provider_options: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterAppRequest {
    pub app_id: AppId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub runtime_defaults: RuntimeDefaults,
    /// Named execution profiles; each overrides the app defaults it sets.
    #[serde(default)]
    pub execution_profiles: BTreeMap<ProfileName, RuntimeDefaults>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    pub app_id: AppId,
    pub name: String,
    pub runtime_defaults: RuntimeDefaults,
    pub execution_profiles: BTreeMap<ProfileName, RuntimeDefaults>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppList {
    pub apps: Vec<AppView>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_profile: Option<ProfileName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_options: Option<serde_json::Map<String, serde_json::Value>>,
    /// Continue this conversation (a conversation's id is the run id of its first run).
    /// The run inherits the conversation's provider, model, app and profile unless the
    /// request names them; it stays in the conversation's app (naming another app is
    /// refused with 409 `conversation_app_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<RunId>,
    /// Continue the conversation of this run; may be given with `conversationId` if
    /// both name the same conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<RunId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartRunResponse {
    pub run_id: RunId,
    /// The conversation the run belongs to (its own run id when it starts one).
    pub conversation_id: RunId,
    pub status: RunStatus,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Relative URL of the run's SSE stream on the gateway.
    pub stream_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: RunId,
    /// The conversation the run belongs to (its own run id when it started one).
    pub conversation_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_profile: Option<ProfileName>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<FailureReason>,
    /// What went wrong, in words (from the run's `run.completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_detail: Option<String>,
    /// Raw material kept for a failed run (the `evidence` of its `run.completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    /// `seq` of the last event the projection has applied.
    pub last_event_seq: u64,
    pub stream_url: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Why a `queued` or `claimed` run has no executor yet, judged from the live
    /// executors' presence when the answer was made; absent for other runs, and when a
    /// live executor offering the provider has a free slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<WaitingReason>,
    /// The waiting reason in words: the provider, and the executors it considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_detail: Option<String>,
}

/// Why a run waits for an executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitingReason {
    /// No executor is live at all.
    NoExecutor,
    /// Executors are live, but none offers the run's provider.
    NoExecutorForProvider,
    /// Every live executor offering the provider that is not draining has all its slots
    /// taken.
    AllExecutorsFull,
    /// Every live executor offering the provider is draining (shutting down; it takes no
    /// new runs).
    AllExecutorsDraining,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<RunView>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopRunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopRunResponse {
    pub run_id: RunId,
    /// `stopping` when the owning executor accepted the stop, `stopped` when the run
    /// had not been dispatched yet and was concluded at once.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HumanLoopReplyRequest {
    /// The request being answered; without it, the run's oldest pending request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<HumanLoopRequestId>,
    pub decision: HumanLoopDecision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HumanLoopReplyResponse {
    pub run_id: RunId,
    pub accepted: bool,
}

/// Body of `GET /api/runs/{id}/human-loop`: the run's human-loop requests, oldest
/// first (`?status=pending` lists only those still waiting for an answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HumanLoopRequestList {
    pub requests: Vec<HumanLoopRequestView>,
}

/// One human-loop request of a run as the control-plane stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HumanLoopRequestView {
    pub request_id: HumanLoopRequestId,
    /// `command`, `file_change` or `permission`; empty while only the resolution is known.
    pub kind: String,
    pub prompt: String,
    #[serde(default)]
    pub details: serde_json::Value,
    /// `pending` or `resolved`.
    pub status: String,
    /// `approve` or `deny`, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<HumanLoopDecision>,
    /// `human`, `timeout` or `run_ended`, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<HumanLoopResolver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Body of `GET /api/providers`: every provider this platform knows, whether or not
/// a live executor offers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
    /// The provider a run gets when neither the request, its execution profile nor its
    /// app names one (`control_plane.default_provider`).
    pub default_provider: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    /// Canonical name, used in requests, subjects and responses.
    pub name: String,
    /// Other names requests may use for it.
    pub aliases: Vec<String>,
    /// Its CLI is installed on at least one live executor.
    pub installed: bool,
    /// The live executors it is installed on, by id.
    pub executors: Vec<ProviderExecutor>,
    /// The live executors that offer it but cannot run it, with the reason each gives
    /// (its CLI is missing, or fails its start check).
    #[serde(default)]
    pub unavailable: Vec<ProviderUnavailable>,
    /// `true` when a live executor that has it can resolve its credentials, `false`
    /// when every one of them says it cannot, `null` when that is unknown.
    #[serde(default)]
    pub credentials_configured: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderExecutor {
    pub executor_id: ExecutorId,
    /// Version of the provider's CLI there (`null` when the executor did not report it).
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderUnavailable {
    pub executor_id: ExecutorId,
    /// Why the provider cannot run there (`null` when the executor did not say).
    #[serde(default)]
    pub problem: Option<String>,
}

/// What the work queue holds right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunQueueView {
    /// Commands in the stream not yet delivered to a worker.
    pub pending: u64,
    /// Commands delivered to a worker and not yet acknowledged.
    pub in_flight: u64,
    /// Runs whose projected status is queued or claimed, oldest first, each with its
    /// `waitingReason`.
    pub runs: Vec<RunView>,
}

/// Body of `POST /provider-runs/start` on an executor (standalone mode, no
/// control-plane involved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRunStartRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub provider_options: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub credential_env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRunStartResponse {
    pub run_id: RunId,
    pub stream_url: String,
}
