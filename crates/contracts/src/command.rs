//! The run command: what the control-plane publishes to the work queue and an
//! executor-manager worker hands to an executor.

use crate::RunId;
use crate::ids::{AppId, ExecutorId, ProfileName};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request to run one provider turn. Carries credential *names* only: executors
/// resolve the values from their own environment, so no secret ever travels on NATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCommand {
    pub run_id: RunId,
    /// Canonical provider name (see [`crate::ProviderName`]). Kept as a string so that a
    /// command naming a provider this build does not know can still be concluded
    /// cleanly instead of being dropped as garbage.
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_profile: Option<ProfileName>,
    /// Provider-specific options (for `scripted`: the script).
    #[serde(default)]
    pub provider_options: serde_json::Value,
    /// Names of the environment variables the provider needs (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_env: Vec<String>,
    /// Timeout from the app or profile defaults; `providerOptions.timeoutMs` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The conversation the run belongs to (the run id of its first run). An executor
    /// that ran the conversation before resumes its provider session in the same
    /// workspace; elsewhere a fresh session starts. Absent on commands from before
    /// conversations existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<RunId>,
    /// The executor that ran the conversation's latest run: the manager tries it first
    /// when it has a free slot, because the workspace and session state are there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_executor: Option<ExecutorId>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_fields_are_optional_and_omitted_when_absent() {
        let old = serde_json::json!({
            "runId": "0190a0e0-0000-7000-8000-000000000001",
            "provider": "scripted",
            "prompt": "hi",
            "createdAt": "2026-01-01T00:00:00Z"
        });
        let command: RunCommand = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(command.conversation_id, None);
        assert_eq!(command.preferred_executor, None);
        let mut json = serde_json::to_value(&command).unwrap();
        assert!(json.get("conversationId").is_none());
        assert!(json.get("preferredExecutor").is_none());

        json["conversationId"] = old["runId"].clone();
        json["preferredExecutor"] = "exec-1".into();
        let command: RunCommand = serde_json::from_value(json).unwrap();
        assert_eq!(Some(command.run_id), command.conversation_id);
        assert_eq!(
            command.preferred_executor.as_ref().map(ExecutorId::as_str),
            Some("exec-1")
        );
    }
}
