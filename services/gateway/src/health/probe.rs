//! The live probe: one short run per provider through the normal start path (the
//! control-plane's `POST /api/runs/start`, as the caller), followed to its end. A
//! succeeded run passes; any other end fails the check with the run's failure reason
//! (`probe_failed:<provider>:auth_invalid`), and a run that outlives its deadline (its
//! `timeoutMs` plus a grace, at most what is left of the report's budget) is stopped and
//! fails with `timeout`.
//!
//! Probe runs are real model runs, so they are rationed ([`Coalescer`]): one per
//! provider at a time, shared by every report that asks meanwhile, and its outcome
//! reused for `gateway.health_probe_cache_ms`. Each is followed in a task of its own, so
//! a report that gives up never leaves a run behind unstopped. A probe run is
//! recognisable among runs: app-less, with the prompt `gateway.health_probe_prompt`.

use super::coalesce::{Coalescer, Share};
use super::verdict::Blocker;
use super::{Check, ProbeSettings};
use crate::auth::{Principal, principal_headers};
use crate::control_plane::ControlPlane;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::api::{RunView, StartRunResponse};
use switchyard_contracts::{ProviderName, RunId, RunStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// How long after the run's own `timeoutMs` the check waits for its end to be
/// projected before it stops the run itself.
const GRACE: Duration = Duration::from_secs(5);
/// Pause between two reads of the run's status: the projection has no push channel to
/// the gateway, and a probe lasts seconds.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The probe's follower gives up this long before the report's deadline, so that its
/// outcome (a `timeout` naming the probe) reaches the report in time.
const HAND_OVER: Duration = Duration::from_millis(500);

/// Starts, shares and follows the probe runs.
#[derive(Clone)]
pub(super) struct Prober {
    control_plane: ControlPlane,
    settings: Arc<ProbeSettings>,
    runs: Coalescer<ProviderName, Check>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// What one probe needs, owned by its task.
struct Probe {
    control_plane: ControlPlane,
    settings: Arc<ProbeSettings>,
    principal: Principal,
    provider: ProviderName,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Prober {
    pub(super) fn new(
        control_plane: ControlPlane,
        settings: ProbeSettings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            runs: Coalescer::new(settings.cache, tasks.clone()),
            control_plane,
            settings: Arc::new(settings),
            tasks,
            shutdown,
        }
    }

    /// Probes every provider at once (each is a run of its own), by `deadline` (the
    /// report's).
    pub(super) async fn run_all(
        &self,
        principal: &Principal,
        providers: &[ProviderName],
        deadline: Instant,
    ) -> Vec<Check> {
        futures::future::join_all(
            providers
                .iter()
                .map(|provider| self.check(principal, *provider, deadline)),
        )
        .await
    }

    async fn check(
        &self,
        principal: &Principal,
        provider: ProviderName,
        deadline: Instant,
    ) -> Check {
        let share = self.runs.get(provider, || {
            let probe = Probe {
                control_plane: self.control_plane.clone(),
                settings: Arc::clone(&self.settings),
                principal: principal.clone(),
                provider,
                tasks: self.tasks.clone(),
                shutdown: self.shutdown.clone(),
            };
            let span = tracing::info_span!("health_probe", %provider);
            async move { probe.run(deadline).await }.instrument(span)
        });
        let (pending, joined) = match share {
            Share::Cached { value, age } => {
                return value.noted(&format!(
                    "cached: this probe ended {} ms ago; gateway.health_probe_cache_ms is {} ms",
                    age.as_millis(),
                    self.settings.cache.as_millis()
                ));
            }
            Share::Started(pending) => (pending, false),
            Share::Joined(pending) => (pending, true),
        };
        match tokio::time::timeout_at(deadline, pending.wait()).await {
            Ok(Some(check)) if joined => {
                check.noted("shared: the probe run was already under way for another report")
            }
            Ok(Some(check)) => check,
            Ok(None) => failed(
                provider,
                "interrupted",
                "the probe was interrupted: the gateway is shutting down".to_owned(),
            ),
            Err(_) if joined => failed(
                provider,
                "timeout",
                format!(
                    "the probe run started for an earlier report had not ended when this \
                     report's budget ({} ms, gateway.upstream_timeout_ms) ran out; it is \
                     followed, and stopped if need be, in the background",
                    self.settings.budget.as_millis()
                ),
            ),
            Err(_) => failed(
                provider,
                "timeout",
                format!(
                    "the report's budget ({} ms, gateway.upstream_timeout_ms) ran out before \
                     the probe had an outcome; it is followed, and stopped if need be, in the \
                     background",
                    self.settings.budget.as_millis()
                ),
            ),
        }
    }
}

fn failed(provider: ProviderName, reason: &str, detail: String) -> Check {
    Check::failed(
        format!("provider.{provider}.probe"),
        detail,
        Blocker::ProbeFailed(provider, reason.to_owned()),
    )
}

/// Time left until `deadline`, `None` once it has passed.
fn left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// When the follower of a probe started at `started` gives up: its own timeout plus
/// the grace, but never after the report's `deadline` (less the hand-over). `true` with
/// it when the report's deadline is the bound.
fn probe_deadline(
    started: Instant,
    timeout: Duration,
    report_deadline: Instant,
) -> (Instant, bool) {
    let own = started + timeout + GRACE;
    let report = report_deadline
        .checked_sub(HAND_OVER)
        .unwrap_or(report_deadline)
        .max(started);
    if report < own {
        (report, true)
    } else {
        (own, false)
    }
}

impl Probe {
    /// The check, and whether it may be reused by later reports (not when this report's
    /// deadline, rather than the probe's own, cut it short).
    async fn run(self, report_deadline: Instant) -> (Check, bool) {
        let started = Instant::now();
        let (deadline, budget_bound) =
            probe_deadline(started, self.settings.timeout, report_deadline);
        let run_id = match self.start(deadline).await {
            Ok(run_id) => run_id,
            Err(StartError::TimedOut) => {
                return (
                    failed(
                        self.provider,
                        "timeout",
                        format!(
                            "the start request had no answer within the report's budget ({} ms \
                             left of gateway.upstream_timeout_ms); if the run started, its own \
                             timeoutMs ends it",
                            deadline.saturating_duration_since(started).as_millis()
                        ),
                    ),
                    false,
                );
            }
            Err(StartError::Refused(detail)) => {
                return (failed(self.provider, "start_refused", detail), true);
            }
        };
        tracing::info!(run_id = %run_id, "health probe run started");
        self.follow(run_id, started, deadline, budget_bound).await
    }

    /// Reads the probe run's status until it ends or `deadline` passes.
    async fn follow(
        self,
        run_id: RunId,
        started: Instant,
        deadline: Instant,
        budget_bound: bool,
    ) -> (Check, bool) {
        let provider = self.provider;
        while let Some(limit) = left(deadline) {
            match self.status(run_id, limit).await {
                Ok(run) if run.status.is_terminal() => {
                    let took = started.elapsed().as_millis();
                    let check = if run.status == RunStatus::Succeeded {
                        Check::ok(
                            format!("provider.{provider}.probe"),
                            format!("run {run_id} succeeded in {took} ms"),
                        )
                    } else {
                        let reason = run.failure_reason.map_or_else(
                            || run.status.as_str().to_owned(),
                            |r| r.as_str().to_owned(),
                        );
                        failed(
                            provider,
                            &reason,
                            format!(
                                "run {run_id} ended {} ({reason}) after {took} ms: {}",
                                run.status.as_str(),
                                run.failure_detail.as_deref().unwrap_or("no detail")
                            ),
                        )
                    };
                    return (check, true);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(run_id = %run_id, error = %e, "probe status not readable yet")
                }
            }
            let Some(limit) = left(deadline) else { break };
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL.min(limit)) => {}
                () = self.shutdown.cancelled() => {
                    self.stop_detached(run_id);
                    return (
                        failed(
                            provider,
                            "interrupted",
                            format!("run {run_id} was stopped: the gateway is shutting down"),
                        ),
                        false,
                    );
                }
            }
        }
        let took = started.elapsed().as_millis();
        self.stop_detached(run_id);
        let detail = if budget_bound {
            format!(
                "run {run_id} had not ended after {took} ms, when the report's budget \
                 (gateway.upstream_timeout_ms) ran out; stopped"
            )
        } else {
            format!(
                "run {run_id} had not ended after {took} ms (gateway.health_probe_timeout_ms \
                 + 5 s); stopped"
            )
        };
        // A run cut short by the budget (not by its own timeout) says nothing about the
        // next report, which may have more time.
        (failed(provider, "timeout", detail), !budget_bound)
    }

    async fn start(&self, deadline: Instant) -> Result<RunId, StartError> {
        let limit = left(deadline).ok_or(StartError::TimedOut)?;
        let url = self
            .control_plane
            .api_url("/api/runs/start")
            .ok_or_else(|| {
                StartError::Refused("the control-plane URL has no /api/runs/start".to_owned())
            })?;
        let timeout_ms = u64::try_from(self.settings.timeout.as_millis()).unwrap_or(u64::MAX);
        // An app-less run: the provider's defaults and the credential a run naming none
        // gets, which is what the credentials check looked at.
        let body = serde_json::json!({
            "provider": self.provider.as_str(),
            "prompt": self.settings.prompt,
            "providerOptions": {"timeoutMs": timeout_ms},
        });
        let unreadable = |e: reqwest::Error, what: &str| {
            if e.is_timeout() {
                StartError::TimedOut
            } else {
                StartError::Refused(format!("{what}: {}", e.without_url()))
            }
        };
        let response = self
            .control_plane
            .http()
            .post(url)
            .headers(principal_headers(&self.principal))
            .timeout(limit)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreadable(e, "the start request failed"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| unreadable(e, "the start answer could not be read"))?;
        if !status.is_success() {
            return Err(StartError::Refused(format!(
                "the start request was refused: HTTP {status} {text}"
            )));
        }
        serde_json::from_str::<StartRunResponse>(&text)
            .map(|started| started.run_id)
            .map_err(|e| StartError::Refused(format!("the start answer is not a run: {e}")))
    }

    async fn status(&self, run_id: RunId, limit: Duration) -> Result<RunView, String> {
        let url = self
            .control_plane
            .api_url(&format!("/api/runs/{run_id}"))
            .ok_or_else(|| "no run URL".to_owned())?;
        let response = self
            .control_plane
            .http()
            .get(url)
            .headers(principal_headers(&self.principal))
            .timeout(limit)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        response
            .json::<RunView>()
            .await
            .map_err(|e| e.without_url().to_string())
    }

    /// Stops the run in a task of its own (tracked, so shutdown waits for it), so the
    /// outcome is not held up by the stop request. Best effort: the run has its own
    /// `timeoutMs` as a backstop.
    fn stop_detached(&self, run_id: RunId) {
        let Some(url) = self
            .control_plane
            .api_url(&format!("/api/runs/{run_id}/stop"))
        else {
            return;
        };
        let request = self
            .control_plane
            .http()
            .post(url)
            .headers(principal_headers(&self.principal))
            .json(&serde_json::json!({}));
        let span = tracing::info_span!("health_probe_stop", run_id = %run_id);
        self.tasks.spawn(
            async move {
                match request.send().await {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), "the probe run's stop was refused");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.without_url(), "could not stop the probe run");
                    }
                }
            }
            .instrument(span),
        );
    }
}

enum StartError {
    /// No answer before the deadline: the run may or may not have started.
    TimedOut,
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_waits_its_own_timeout_and_grace_unless_the_report_ends_first() {
        let started = Instant::now();
        let timeout = Duration::from_secs(20);
        // Plenty of budget: the probe's own deadline.
        let (deadline, budget_bound) =
            probe_deadline(started, timeout, started + Duration::from_secs(60));
        assert_eq!(deadline, started + Duration::from_secs(25));
        assert!(!budget_bound);
        // The report ends sooner: the follower hands over before it does.
        let (deadline, budget_bound) =
            probe_deadline(started, timeout, started + Duration::from_secs(10));
        assert_eq!(deadline, started + Duration::from_millis(9500));
        assert!(budget_bound);
        // Nothing left: give up at once, never before the start.
        let (deadline, budget_bound) = probe_deadline(started, timeout, started);
        assert_eq!(deadline, started);
        assert!(budget_bound);
    }

    #[tokio::test(start_paused = true)]
    async fn time_left_is_none_once_the_deadline_passed() {
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(left(deadline), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(left(deadline), None);
    }
}
