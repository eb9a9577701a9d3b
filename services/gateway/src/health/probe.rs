//! The live probe: one short run per provider through the normal start path (the
//! control-plane's `POST /api/runs/start`, as the caller), followed to its end. A
//! succeeded run passes; any other end fails the check with the run's failure reason
//! (`probe_failed:<provider>:auth_invalid`), and a run that outlives its deadline (its
//! `timeoutMs` plus a grace, at most `gateway.upstream_timeout_ms`) is stopped and
//! fails with `timeout`.

use super::verdict::Blocker;
use super::{Check, ProbeSettings};
use crate::auth::{Principal, principal_headers};
use crate::control_plane::ControlPlane;
use std::time::{Duration, Instant};
use switchyard_contracts::api::{RunView, StartRunResponse};
use switchyard_contracts::{ProviderName, RunId, RunStatus};
use tracing::Instrument as _;

/// How long after the run's own `timeoutMs` the check waits for its end to be
/// projected before it stops the run itself.
const GRACE: Duration = Duration::from_secs(5);
/// Pause between two reads of the run's status: the projection has no push channel to
/// the gateway, and a probe lasts seconds.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Probes every provider at once (each is a run of its own).
pub(super) async fn run_all(
    control_plane: &ControlPlane,
    principal: &Principal,
    settings: &ProbeSettings,
    providers: &[ProviderName],
) -> Vec<Check> {
    futures::future::join_all(
        providers
            .iter()
            .map(|provider| probe(control_plane, principal, settings, *provider)),
    )
    .await
}

async fn probe(
    control_plane: &ControlPlane,
    principal: &Principal,
    settings: &ProbeSettings,
    provider: ProviderName,
) -> Check {
    let name = format!("provider.{provider}.probe");
    let started = Instant::now();
    let failed = |reason: &str, detail: String| {
        Check::failed(
            name.clone(),
            detail,
            Blocker::ProbeFailed(provider, reason.to_owned()),
        )
    };
    let run_id = match start(control_plane, principal, settings, provider).await {
        Ok(run_id) => run_id,
        Err(detail) => return failed("start_refused", detail),
    };
    let span = tracing::info_span!("health_probe", run_id = %run_id, %provider);
    follow(
        control_plane,
        principal,
        settings,
        run_id,
        started,
        failed,
        name.clone(),
    )
    .instrument(span)
    .await
}

/// Reads the probe run's status until it ends or its deadline passes.
async fn follow(
    control_plane: &ControlPlane,
    principal: &Principal,
    settings: &ProbeSettings,
    run_id: RunId,
    started: Instant,
    failed: impl Fn(&str, String) -> Check,
    name: String,
) -> Check {
    let deadline = started + (settings.timeout + GRACE).min(settings.wait_limit);
    loop {
        match status(control_plane, principal, run_id).await {
            Ok(run) if run.status.is_terminal() => {
                let took = started.elapsed().as_millis();
                return if run.status == RunStatus::Succeeded {
                    Check::ok(name, format!("run {run_id} succeeded in {took} ms"))
                } else {
                    let reason = run
                        .failure_reason
                        .map_or_else(|| run.status.as_str().to_owned(), |r| r.as_str().to_owned());
                    failed(
                        &reason,
                        format!(
                            "run {run_id} ended {} ({reason}) after {took} ms: {}",
                            run.status.as_str(),
                            run.failure_detail.as_deref().unwrap_or("no detail")
                        ),
                    )
                };
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "probe status not readable yet"),
        }
        if Instant::now() >= deadline {
            stop(control_plane, principal, run_id).await;
            return failed(
                "timeout",
                format!(
                    "run {run_id} had not ended after {} ms (gateway.health_probe_timeout_ms + 5 s, at most gateway.upstream_timeout_ms); stopped",
                    started.elapsed().as_millis()
                ),
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn start(
    control_plane: &ControlPlane,
    principal: &Principal,
    settings: &ProbeSettings,
    provider: ProviderName,
) -> Result<RunId, String> {
    let url = control_plane
        .api_url("/api/runs/start")
        .ok_or_else(|| "the control-plane URL has no /api/runs/start".to_owned())?;
    let timeout_ms = u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX);
    // An app-less run: the provider's defaults and the credential a run naming none
    // gets, which is what the credentials check looked at.
    let body = serde_json::json!({
        "provider": provider.as_str(),
        "prompt": settings.prompt,
        "providerOptions": {"timeoutMs": timeout_ms},
    });
    let response = control_plane
        .http()
        .post(url)
        .headers(principal_headers(principal))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("the start request failed: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("the start answer could not be read: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "the start request was refused: HTTP {status} {text}"
        ));
    }
    serde_json::from_str::<StartRunResponse>(&text)
        .map(|started| started.run_id)
        .map_err(|e| format!("the start answer is not a run: {e}"))
}

async fn status(
    control_plane: &ControlPlane,
    principal: &Principal,
    run_id: RunId,
) -> Result<RunView, String> {
    let url = control_plane
        .api_url(&format!("/api/runs/{run_id}"))
        .ok_or_else(|| "no run URL".to_owned())?;
    let response = control_plane
        .http()
        .get(url)
        .headers(principal_headers(principal))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    response.json::<RunView>().await.map_err(|e| e.to_string())
}

/// Best effort: the run has its own `timeoutMs` as a backstop.
async fn stop(control_plane: &ControlPlane, principal: &Principal, run_id: RunId) {
    let Some(url) = control_plane.api_url(&format!("/api/runs/{run_id}/stop")) else {
        return;
    };
    let sent = control_plane
        .http()
        .post(url)
        .headers(principal_headers(principal))
        .json(&serde_json::json!({}))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not stop the probe run");
    }
}
