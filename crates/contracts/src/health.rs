//! The provider-runtime health check: the report `GET /api/health` answers (gateway,
//! admins and operators), and what the control-plane tells the gateway about the parts
//! only it can see (`GET /internal/health`: Postgres and its migrations, the live
//! executors' presence records).

use crate::presence::ExecutorPresence;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether runs can work, and if not, whose side is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessCategory {
    /// Every check passed.
    Ready,
    /// The deployment lacks something runs need: an executor, a provider's binary, its
    /// credentials. Fixed by the operator's configuration, not by a restart.
    EnvironmentNotReady,
    /// Something that should work does not: NATS or Postgres unreachable, migrations
    /// pending, a JetStream resource missing or a consumer stalled, a probe run failed.
    RuntimeUnhealthy,
}

impl ReadinessCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadinessCategory::Ready => "ready",
            ReadinessCategory::EnvironmentNotReady => "environment_not_ready",
            ReadinessCategory::RuntimeUnhealthy => "runtime_unhealthy",
        }
    }
}

/// One check of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// What was checked: `nats`, `nats.stream.RUN_EVENTS`, `postgres.migrations`,
    /// `provider.claude-code.credentials`, `provider.claude-code.probe`, …
    pub name: String,
    pub ok: bool,
    /// What was found, in words (versions, executor ids, missing variable names).
    pub detail: String,
    /// The blocking reason this check contributes when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking_reason: Option<String>,
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub readiness_category: ReadinessCategory,
    /// The most fundamental failure, as a stable code (`nats_unreachable`,
    /// `postgres_unreachable`, `migrations_pending`, `no_executor`,
    /// `provider_binary_missing:<provider>`, `credentials_missing:<provider>`,
    /// `probe_failed:<provider>:<failure reason>`, …); absent when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking_reason: Option<String>,
    /// Every check made, in the order they were made.
    pub checks: Vec<HealthCheck>,
    pub checked_at: DateTime<Utc>,
}

/// One migration the control-plane's build carries but the database has not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingMigration {
    pub version: i64,
    pub description: String,
}

/// Postgres as the control-plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresHealth {
    pub reachable: bool,
    /// Why it is not reachable (no secret: the URL is never part of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Migrations applied, and the newest of them.
    pub applied: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_applied: Option<i64>,
    pub pending: Vec<PendingMigration>,
}

/// `GET /internal/health` on the control-plane (gateways only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneHealth {
    pub postgres: PostgresHealth,
    /// The live executors' presence records; absent when they could not be read
    /// (`executorsProblem` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executors: Option<Vec<ExecutorPresence>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executors_problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_have_their_documented_names() {
        for category in [
            ReadinessCategory::Ready,
            ReadinessCategory::EnvironmentNotReady,
            ReadinessCategory::RuntimeUnhealthy,
        ] {
            assert_eq!(
                serde_json::to_value(category).unwrap(),
                serde_json::Value::String(category.as_str().to_owned())
            );
        }
    }
}
