//! The run command: what the control-plane publishes to the work queue and an
//! executor-manager worker hands to an executor.

use crate::RunId;
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
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_profile: Option<String>,
    /// Provider-specific options (for `scripted`: the script).
    #[serde(default)]
    pub provider_options: serde_json::Value,
    /// Names of the environment variables the provider needs (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_env: Vec<String>,
    /// Timeout from the app or profile defaults; `providerOptions.timeoutMs` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    pub created_at: DateTime<Utc>,
}
