//! The provider-runtime health check behind `GET /api/health`: is the platform able to
//! run an agent right now, and if not, is the environment or the runtime at fault?
//!
//! Everything is checked from where runs happen, never from the gateway's machine: NATS
//! and its JetStream resources through this gateway's connection (the one clients'
//! streams use), Postgres and its migrations through the control-plane (its internal
//! `GET /internal/health`), and the executors and their providers from the presence
//! records the executors write (binary installed and its version, which allowed
//! credential variables have a value — names only). With `probe`, a one-turn run of
//! each provider checked goes through the normal start path ([`probe`]).
//!
//! The whole report has one budget (`gateway.upstream_timeout_ms`; the request's
//! timeout layer cuts 5 s later), and every call in it gets what is left of it: when it
//! runs out, the check in progress fails saying so, and the report still gets out.
//!
//! [`verdict`] turns the failed checks into the report's `readinessCategory` and
//! `blockingReason`.

mod coalesce;
mod jetstream;
mod probe;
pub(crate) mod verdict;

use crate::auth::Principal;
use crate::control_plane::ControlPlane;
use chrono::Utc;
use std::time::Duration;
use switchyard_contracts::ProviderName;
use switchyard_contracts::health::{ControlPlaneHealth, HealthCheck, HealthReport};
use switchyard_contracts::presence::{ExecutorPresence, ProviderAvailability};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use verdict::Blocker;

/// What the probe runs are started with (`gateway.health_probe_*`), and the report's
/// budget.
#[derive(Debug, Clone)]
pub(crate) struct ProbeSettings {
    /// The probe run's own `timeoutMs`; the check waits a little longer for its end.
    pub(crate) timeout: Duration,
    pub(crate) prompt: String,
    /// How long a probe's outcome is reused (`gateway.health_probe_cache_ms`).
    pub(crate) cache: Duration,
    /// The longest a whole report may take, probes included
    /// ([`crate::config::GatewayConfig::health_report_budget`]).
    pub(crate) budget: Duration,
}

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthRequest {
    /// Check only this provider (else every provider a live executor offers).
    pub(crate) provider: Option<ProviderName>,
    /// Start a probe run per provider checked.
    pub(crate) probe: bool,
}

/// Runs the checks; built once by [`crate::start`].
#[derive(Clone)]
pub(crate) struct HealthChecker {
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    control_plane: ControlPlane,
    budget: Duration,
    prober: probe::Prober,
}

/// One check as it is being made: the wire form plus its blocker.
#[derive(Debug, Clone)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
    blocker: Option<Blocker>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            blocker: None,
        }
    }

    fn failed(name: impl Into<String>, detail: impl Into<String>, blocker: Blocker) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            blocker: Some(blocker),
        }
    }

    /// The same check, with `note` added to its detail (`cached: …`).
    fn noted(mut self, note: &str) -> Self {
        self.detail = format!("{} ({note})", self.detail);
        self
    }

    /// Not made, because what it depends on failed (that check carries the blocker).
    fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            blocker: None,
        }
    }
}

impl HealthChecker {
    pub(crate) fn new(
        nats: async_nats::Client,
        nats_timeout: Duration,
        control_plane: ControlPlane,
        probe: ProbeSettings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let mut js = async_nats::jetstream::new(nats.clone());
        js.set_timeout(nats_timeout);
        Self {
            nats,
            js,
            budget: probe.budget,
            prober: probe::Prober::new(control_plane.clone(), probe, tasks, shutdown),
            control_plane,
        }
    }

    /// The report; `principal` is who the probe runs are started as.
    pub(crate) async fn report(
        &self,
        principal: &Principal,
        request: &HealthRequest,
    ) -> HealthReport {
        let deadline = Instant::now() + self.budget;
        let budget_ms = self.budget.as_millis();
        let mut checks = Vec::new();
        let nats_up = self.check_nats(&mut checks);
        // The control-plane's answer does not depend on the JetStream checks: ask both
        // at once.
        let (_, control_plane) = tokio::join!(
            async {
                if nats_up {
                    let made = checks.len();
                    let finished =
                        tokio::time::timeout_at(deadline, jetstream::check(&self.js, &mut checks))
                            .await;
                    if finished.is_err() {
                        let done = checks.len() - made;
                        out_of_time(jetstream::check_names().skip(done), budget_ms, &mut checks);
                    }
                }
            },
            self.control_plane
                .internal_health(deadline.saturating_duration_since(Instant::now()))
        );
        let infrastructure_ok;
        let mut probe_ready = Vec::new();
        match control_plane {
            Err(e) => {
                tracing::warn!(error = %e, "health check: the control-plane does not answer");
                let detail = if e.is_timeout() && Instant::now() >= deadline {
                    format!(
                        "the control-plane's health endpoint had not answered when the \
                         report's budget ({budget_ms} ms, gateway.upstream_timeout_ms) ran out"
                    )
                } else {
                    format!(
                        "the control-plane's health endpoint does not answer: {}",
                        error_chain(&e)
                    )
                };
                checks.push(Check::failed(
                    "control-plane",
                    detail,
                    Blocker::ControlPlaneUnreachable,
                ));
                checks.push(Check::skipped(
                    "executors",
                    "not checked: the control-plane does not answer",
                ));
                infrastructure_ok = false;
            }
            Ok(health) => {
                checks.push(Check::ok("control-plane", "answers"));
                let postgres_ok = check_postgres(&health, &mut checks);
                infrastructure_ok = postgres_ok && checks.iter().all(|c| c.blocker.is_none());
                probe_ready = check_executors(&health, request.provider, nats_up, &mut checks);
            }
        }
        if request.probe {
            if infrastructure_ok {
                let probes = self.prober.run_all(principal, &probe_ready, deadline).await;
                checks.extend(probes);
            } else {
                checks.push(Check::skipped(
                    "probe",
                    "not run: the runtime underneath is not healthy",
                ));
            }
        }
        let (readiness_category, blocking_reason) =
            verdict::verdict(checks.iter().filter_map(|c| c.blocker.as_ref()));
        HealthReport {
            readiness_category,
            blocking_reason,
            checks: checks
                .into_iter()
                .map(|c| HealthCheck {
                    blocking_reason: c.blocker.as_ref().map(Blocker::code),
                    name: c.name,
                    ok: c.ok,
                    detail: c.detail,
                })
                .collect(),
            checked_at: Utc::now(),
        }
    }
}

/// The checks in `names` were not finished when the report's budget ran out: the first
/// was in progress (it fails, saying so), the others never began.
fn out_of_time(mut names: impl Iterator<Item = String>, budget_ms: u128, checks: &mut Vec<Check>) {
    let Some(first) = names.next() else { return };
    checks.push(Check::failed(
        first.clone(),
        format!(
            "not finished when the report's budget ({budget_ms} ms, gateway.upstream_timeout_ms) ran out"
        ),
        Blocker::CheckTimedOut(first),
    ));
    for name in names {
        checks.push(Check::skipped(
            name,
            "not checked: the report's budget ran out",
        ));
    }
}

/// An error with its causes (`a: b: c`): reqwest's own message alone says little
/// ("error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl HealthChecker {
    /// NATS reachable (this gateway's connection) and its version; `true` when up.
    fn check_nats(&self, checks: &mut Vec<Check>) -> bool {
        let state = self.nats.connection_state();
        if state == async_nats::connection::State::Connected {
            let info = self.nats.server_info();
            checks.push(Check::ok(
                "nats",
                format!(
                    "connected to nats-server {} ({})",
                    info.version, info.server_name
                ),
            ));
            true
        } else {
            checks.push(Check::failed(
                "nats",
                format!("the gateway's NATS connection is {state:?}"),
                Blocker::NatsUnreachable,
            ));
            false
        }
    }
}

/// Postgres reachable and migrations current; `true` when both hold.
fn check_postgres(health: &ControlPlaneHealth, checks: &mut Vec<Check>) -> bool {
    let postgres = &health.postgres;
    if !postgres.reachable {
        checks.push(Check::failed(
            "postgres",
            format!(
                "the control-plane cannot reach Postgres: {}",
                postgres.problem.as_deref().unwrap_or("no reason given")
            ),
            Blocker::PostgresUnreachable,
        ));
        checks.push(Check::skipped(
            "postgres.migrations",
            "not checked: Postgres is unreachable",
        ));
        return false;
    }
    checks.push(Check::ok("postgres", "reachable from the control-plane"));
    if postgres.pending.is_empty() {
        checks.push(Check::ok(
            "postgres.migrations",
            format!(
                "{} applied, latest {}",
                postgres.applied,
                postgres
                    .latest_applied
                    .map_or_else(|| "none".to_owned(), |v| v.to_string())
            ),
        ));
        true
    } else {
        let pending: Vec<String> = postgres
            .pending
            .iter()
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        checks.push(Check::failed(
            "postgres.migrations",
            format!(
                "{} migration(s) of this build not applied: {} (a control-plane applies them when it starts)",
                pending.len(),
                pending.join(", ")
            ),
            Blocker::MigrationsPending,
        ));
        false
    }
}

/// At least one executor present and not draining, then each selected provider's
/// binary and credentials on those executors. Returns the providers ready for a probe.
fn check_executors(
    health: &ControlPlaneHealth,
    only: Option<ProviderName>,
    nats_up: bool,
    checks: &mut Vec<Check>,
) -> Vec<ProviderName> {
    let Some(presences) = &health.executors else {
        let problem = health
            .executors_problem
            .as_deref()
            .unwrap_or("no reason given");
        let detail = format!("the executors' presence records cannot be read: {problem}");
        checks.push(if nats_up {
            Check::failed("executors", detail, Blocker::PresenceUnreadable)
        } else {
            Check::skipped("executors", detail)
        });
        return Vec::new();
    };
    let taking: Vec<&ExecutorPresence> = presences.iter().filter(|p| !p.draining).collect();
    let draining = presences.len() - taking.len();
    if taking.is_empty() {
        let detail = if draining > 0 {
            format!("every live executor ({draining}) is draining: none takes runs")
        } else {
            "no executor is present (none has a fresh presence record)".to_owned()
        };
        checks.push(Check::failed("executors", detail, Blocker::NoExecutor));
        return Vec::new();
    }
    let described: Vec<String> = taking
        .iter()
        .map(|p| {
            format!(
                "{} ({} of {} slots busy, v{})",
                p.executor_id, p.active, p.capacity, p.version
            )
        })
        .collect();
    let mut detail = format!("{} taking runs: {}", taking.len(), described.join(", "));
    if draining > 0 {
        detail.push_str(&format!("; {draining} draining"));
    }
    checks.push(Check::ok("executors", detail));

    let selected: Vec<ProviderName> = match only {
        Some(provider) => vec![provider],
        None => ProviderName::ALL
            .into_iter()
            .filter(|provider| {
                taking
                    .iter()
                    .any(|p| p.providers.iter().any(|a| is(a, *provider)))
            })
            .collect(),
    };
    let mut ready = Vec::new();
    for provider in selected {
        if check_provider(provider, &taking, checks) {
            ready.push(provider);
        }
    }
    ready
}

fn is(availability: &ProviderAvailability, provider: ProviderName) -> bool {
    ProviderName::parse(&availability.name) == Some(provider)
}

/// One provider's binary and credentials on the executors taking runs; `true` when
/// both are there on at least one executor.
fn check_provider(
    provider: ProviderName,
    executors: &[&ExecutorPresence],
    checks: &mut Vec<Check>,
) -> bool {
    let binary = format!("provider.{provider}.binary");
    let credentials = format!("provider.{provider}.credentials");
    let mut installed = Vec::new();
    let mut problems = Vec::new();
    for executor in executors {
        let offered: Vec<&ProviderAvailability> = executor
            .providers
            .iter()
            .filter(|a| is(a, provider))
            .collect();
        match offered.iter().find(|a| a.installed) {
            Some(availability) => installed.push((*executor, *availability)),
            None => {
                if let Some(availability) = offered.first() {
                    problems.push(format!(
                        "{}: {}",
                        executor.executor_id,
                        availability.problem.as_deref().unwrap_or("not installed")
                    ));
                }
            }
        }
    }
    if installed.is_empty() {
        let detail = if problems.is_empty() {
            format!("no executor taking runs offers {provider} (executor.providers)")
        } else {
            format!(
                "not installed on any executor taking runs: {}",
                problems.join("; ")
            )
        };
        checks.push(Check::failed(
            binary,
            detail,
            Blocker::ProviderBinaryMissing(provider),
        ));
        checks.push(Check::skipped(
            credentials,
            "not checked: the binary is missing",
        ));
        return false;
    }
    let versions: Vec<String> = installed
        .iter()
        .map(|(executor, a)| match &a.version {
            Some(version) => format!("{} ({version})", executor.executor_id),
            None => executor.executor_id.to_string(),
        })
        .collect();
    checks.push(Check::ok(
        binary,
        format!("installed on {}", versions.join(", ")),
    ));
    let resolvable: Vec<String> = installed
        .iter()
        .filter(|(_, a)| a.credentials_configured == Some(true))
        .map(|(executor, _)| executor.executor_id.to_string())
        .collect();
    if !resolvable.is_empty() {
        checks.push(Check::ok(
            credentials,
            format!("resolvable on {}", resolvable.join(", ")),
        ));
        return true;
    }
    let missing: Vec<String> = installed
        .iter()
        .map(|(executor, a)| {
            let default = a
                .credential_variables
                .first()
                .map_or("its credential", |v| v.name.as_str());
            let present: Vec<&str> = a
                .credential_variables
                .iter()
                .filter(|v| v.present)
                .map(|v| v.name.as_str())
                .collect();
            if present.is_empty() {
                format!(
                    "{}: no value for {default} (nor any other allowed variable)",
                    executor.executor_id
                )
            } else {
                format!(
                    "{}: no value for {default} (has {})",
                    executor.executor_id,
                    present.join(", ")
                )
            }
        })
        .collect();
    checks.push(Check::failed(
        credentials,
        format!(
            "no executor with {provider} installed can resolve its default credential: {}",
            missing.join("; ")
        ),
        Blocker::CredentialsMissing(provider),
    ));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_in_progress_when_the_budget_ran_out_fails_and_names_itself() {
        let mut checks = Vec::new();
        // Two JetStream checks were made before the budget ran out.
        out_of_time(jetstream::check_names().skip(2), 30_000, &mut checks);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "nats.consumer.RUN_COMMANDS.executor-manager",
                "nats.consumer.RUN_EVENTS.control-plane-projector",
                "nats.kv.EXECUTORS",
            ]
        );
        assert!(!checks[0].ok);
        assert!(
            checks[0].detail.contains("30000 ms"),
            "{}",
            checks[0].detail
        );
        assert_eq!(
            checks[0].blocker,
            Some(Blocker::CheckTimedOut(
                "nats.consumer.RUN_COMMANDS.executor-manager".into()
            ))
        );
        assert!(checks[1..].iter().all(|c| !c.ok && c.blocker.is_none()));
        let (category, reason) = verdict::verdict(checks.iter().filter_map(|c| c.blocker.as_ref()));
        assert_eq!(
            category,
            switchyard_contracts::health::ReadinessCategory::RuntimeUnhealthy
        );
        assert_eq!(
            reason.as_deref(),
            Some("check_timed_out:nats.consumer.RUN_COMMANDS.executor-manager")
        );
        // Nothing left to do: nothing added.
        let mut none = Vec::new();
        out_of_time(jetstream::check_names().skip(5), 1, &mut none);
        assert!(none.is_empty());
    }
}
