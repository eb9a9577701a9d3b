//! Executor presence: one record per live executor in the `EXECUTORS` KV bucket, kept
//! alive by heartbeats and expired by the bucket's TTL when an executor dies.

use crate::ids::ExecutorId;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorPresence {
    pub executor_id: ExecutorId,
    /// Switchyard version of the executor binary.
    pub version: String,
    /// Runs it accepts at once.
    pub capacity: u32,
    /// Runs it owns right now.
    pub active: u32,
    /// Shutting down: takes no new runs.
    #[serde(default)]
    pub draining: bool,
    pub providers: Vec<ProviderAvailability>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

impl ExecutorPresence {
    pub fn free_slots(&self) -> u32 {
        if self.draining {
            0
        } else {
            self.capacity.saturating_sub(self.active)
        }
    }

    pub fn supports(&self, provider: &str) -> bool {
        self.providers
            .iter()
            .any(|p| p.installed && p.name == provider)
    }
}

/// Whether a provider can run on an executor, and which version of its CLI is there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderAvailability {
    pub name: String,
    pub installed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it is not installed: its CLI was not found, or it was found but cannot start
    /// (`<cli> --version` failed, e.g. exit 127 when its interpreter is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Whether the executor can resolve the credentials the provider needs (names only
    /// are known to it; the values never leave it). Absent when it cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_configured: Option<bool>,
    /// The credential variables the operator allows the provider
    /// (`[executor.credentials.<provider>] env`), each with whether the executor has a
    /// value for it. Names only: values never leave the executor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_variables: Vec<CredentialVariable>,
}

/// One allowed credential variable of a provider on an executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialVariable {
    pub name: String,
    /// The executor has a non-empty value for it.
    pub present: bool,
}
