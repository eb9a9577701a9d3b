//! The health report's verdict: which failed check blocks, and what category of fault it
//! is. Pure, so the ordering is tested without any server.
//!
//! The blocking reason is the most fundamental failure: the runtime underneath
//! everything (NATS, the control-plane, Postgres and its schema, the JetStream
//! resources) before the environment the executors offer (an executor at all, then per
//! provider its binary, then its credentials), before a live probe run — a probe of a
//! provider whose binary is missing says nothing new. Among failures of the same rank
//! the first checked wins (providers are checked in their canonical order).

use switchyard_contracts::ProviderName;
use switchyard_contracts::health::ReadinessCategory;

/// A failed check's contribution to the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// The gateway's NATS connection is down.
    NatsUnreachable,
    /// The control-plane does not answer its internal health endpoint.
    ControlPlaneUnreachable,
    /// The control-plane cannot reach Postgres.
    PostgresUnreachable,
    /// The database lacks migrations this build carries.
    MigrationsPending,
    /// A stream, consumer or KV bucket `nats/` declares does not exist.
    NatsResourceMissing(String),
    /// A consumer has messages waiting and nobody pulling them.
    ConsumerStalled(String),
    /// The named check was still running when the report's budget ran out.
    CheckTimedOut(String),
    /// The executors' presence records could not be read.
    PresenceUnreadable,
    /// No live executor that takes runs (none, or all draining).
    NoExecutor,
    ProviderBinaryMissing(ProviderName),
    CredentialsMissing(ProviderName),
    /// The probe run ended otherwise than `succeeded`; the string is its failure
    /// reason (`auth_invalid`, …) or `timeout`.
    ProbeFailed(ProviderName, String),
}

impl Blocker {
    /// Lower = more fundamental.
    fn rank(&self) -> u8 {
        match self {
            Blocker::NatsUnreachable => 0,
            Blocker::ControlPlaneUnreachable => 1,
            Blocker::PostgresUnreachable => 2,
            Blocker::MigrationsPending => 3,
            Blocker::NatsResourceMissing(_) => 4,
            Blocker::ConsumerStalled(_) => 5,
            Blocker::CheckTimedOut(_) => 6,
            Blocker::PresenceUnreadable => 7,
            Blocker::NoExecutor => 8,
            Blocker::ProviderBinaryMissing(_) => 9,
            Blocker::CredentialsMissing(_) => 10,
            Blocker::ProbeFailed(..) => 11,
        }
    }

    pub(crate) fn category(&self) -> ReadinessCategory {
        match self {
            Blocker::NoExecutor
            | Blocker::ProviderBinaryMissing(_)
            | Blocker::CredentialsMissing(_) => ReadinessCategory::EnvironmentNotReady,
            Blocker::NatsUnreachable
            | Blocker::ControlPlaneUnreachable
            | Blocker::PostgresUnreachable
            | Blocker::MigrationsPending
            | Blocker::NatsResourceMissing(_)
            | Blocker::ConsumerStalled(_)
            | Blocker::CheckTimedOut(_)
            | Blocker::PresenceUnreadable
            | Blocker::ProbeFailed(..) => ReadinessCategory::RuntimeUnhealthy,
        }
    }

    /// The stable code of `blockingReason`.
    pub(crate) fn code(&self) -> String {
        match self {
            Blocker::NatsUnreachable => "nats_unreachable".to_owned(),
            Blocker::ControlPlaneUnreachable => "control_plane_unreachable".to_owned(),
            Blocker::PostgresUnreachable => "postgres_unreachable".to_owned(),
            Blocker::MigrationsPending => "migrations_pending".to_owned(),
            Blocker::NatsResourceMissing(name) => format!("nats_resource_missing:{name}"),
            Blocker::ConsumerStalled(name) => format!("consumer_stalled:{name}"),
            Blocker::CheckTimedOut(name) => format!("check_timed_out:{name}"),
            Blocker::PresenceUnreadable => "executor_presence_unreadable".to_owned(),
            Blocker::NoExecutor => "no_executor".to_owned(),
            Blocker::ProviderBinaryMissing(p) => format!("provider_binary_missing:{p}"),
            Blocker::CredentialsMissing(p) => format!("credentials_missing:{p}"),
            Blocker::ProbeFailed(p, reason) => format!("probe_failed:{p}:{reason}"),
        }
    }
}

/// The category and blocking reason of a report whose failed checks contributed
/// `blockers`, in the order they were checked.
pub(crate) fn verdict<'a>(
    blockers: impl IntoIterator<Item = &'a Blocker>,
) -> (ReadinessCategory, Option<String>) {
    // `min_by_key` keeps the first of equal keys: the first checked wins a tie.
    match blockers.into_iter().min_by_key(|b| b.rank()) {
        Some(blocker) => (blocker.category(), Some(blocker.code())),
        None => (ReadinessCategory::Ready, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReadinessCategory::{EnvironmentNotReady, Ready, RuntimeUnhealthy};

    fn of(blockers: &[Blocker]) -> (ReadinessCategory, Option<String>) {
        verdict(blockers)
    }

    #[test]
    fn nothing_failed_is_ready() {
        assert_eq!(of(&[]), (Ready, None));
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let cases = [
            (
                Blocker::NatsUnreachable,
                "nats_unreachable",
                RuntimeUnhealthy,
            ),
            (
                Blocker::PostgresUnreachable,
                "postgres_unreachable",
                RuntimeUnhealthy,
            ),
            (
                Blocker::MigrationsPending,
                "migrations_pending",
                RuntimeUnhealthy,
            ),
            (Blocker::NoExecutor, "no_executor", EnvironmentNotReady),
            (
                Blocker::ProviderBinaryMissing(ProviderName::Opencode),
                "provider_binary_missing:opencode",
                EnvironmentNotReady,
            ),
            (
                Blocker::CredentialsMissing(ProviderName::ClaudeCode),
                "credentials_missing:claude-code",
                EnvironmentNotReady,
            ),
            (
                Blocker::ProbeFailed(ProviderName::CodexAppServer, "auth_invalid".into()),
                "probe_failed:codex-app-server:auth_invalid",
                RuntimeUnhealthy,
            ),
            (
                Blocker::ConsumerStalled("RUN_COMMANDS/executor-manager".into()),
                "consumer_stalled:RUN_COMMANDS/executor-manager",
                RuntimeUnhealthy,
            ),
            (
                Blocker::CheckTimedOut("nats.consumer.RUN_EVENTS.control-plane-projector".into()),
                "check_timed_out:nats.consumer.RUN_EVENTS.control-plane-projector",
                RuntimeUnhealthy,
            ),
        ];
        for (blocker, code, category) in cases {
            assert_eq!(
                of(std::slice::from_ref(&blocker)),
                (category, Some(code.to_owned()))
            );
        }
    }

    #[test]
    fn the_runtime_underneath_blocks_before_the_environment() {
        // NATS down also empties the executor list: the cause is NATS, not the fleet.
        assert_eq!(
            of(&[Blocker::NoExecutor, Blocker::NatsUnreachable]),
            (RuntimeUnhealthy, Some("nats_unreachable".into()))
        );
        assert_eq!(
            of(&[
                Blocker::CredentialsMissing(ProviderName::ClaudeCode),
                Blocker::MigrationsPending,
                Blocker::PostgresUnreachable,
            ]),
            (RuntimeUnhealthy, Some("postgres_unreachable".into()))
        );
    }

    #[test]
    fn the_environment_blocks_before_a_probe() {
        assert_eq!(
            of(&[
                Blocker::ProbeFailed(ProviderName::ClaudeCode, "timeout".into()),
                Blocker::CredentialsMissing(ProviderName::Opencode),
            ]),
            (
                EnvironmentNotReady,
                Some("credentials_missing:opencode".into())
            )
        );
        // A missing binary anywhere comes before missing credentials anywhere.
        assert_eq!(
            of(&[
                Blocker::CredentialsMissing(ProviderName::CodexAppServer),
                Blocker::ProviderBinaryMissing(ProviderName::Opencode),
            ]),
            (
                EnvironmentNotReady,
                Some("provider_binary_missing:opencode".into())
            )
        );
        assert_eq!(
            of(&[
                Blocker::NoExecutor,
                Blocker::ProviderBinaryMissing(ProviderName::Opencode)
            ]),
            (EnvironmentNotReady, Some("no_executor".into()))
        );
    }

    #[test]
    fn among_equals_the_first_checked_wins() {
        assert_eq!(
            of(&[
                Blocker::ProbeFailed(ProviderName::CodexAppServer, "auth_invalid".into()),
                Blocker::ProbeFailed(ProviderName::ClaudeCode, "rate_limited".into()),
            ])
            .1,
            Some("probe_failed:codex-app-server:auth_invalid".into())
        );
    }
}
