//! Why a run waits for an executor: for each `queued` or `claimed` run, what the live
//! executors' presence records (the `EXECUTORS` bucket, read as the provider registry
//! reads it) say about its provider — no executor at all, none offering the provider,
//! all of those full, or all of them draining. Judged when a run is read, so it is as
//! fresh as the presence records (a heartbeat every few seconds).

use crate::providers;
use std::time::Duration;
use switchyard_contracts::api::{RunView, WaitingReason};
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::{ProviderName, RunStatus};

/// Executor ids named in a detail at most.
const NAMED_EXECUTORS: usize = 5;

/// Whether the run has not reached an executor yet.
fn is_waiting(run: &RunView) -> bool {
    matches!(run.status, RunStatus::Queued | RunStatus::Claimed)
}

/// Fills in the waiting reason of every waiting run among `runs`. The presence records
/// are read once, and only when a run waits; when they cannot be read the runs are
/// shown without a reason (the read itself must not fail for it).
pub(crate) async fn annotate(
    js: &async_nats::jetstream::Context,
    timeout: Duration,
    runs: &mut [RunView],
) {
    if !runs.iter().any(is_waiting) {
        return;
    }
    let presences = match providers::live(js, timeout).await {
        Ok(presences) => presences,
        Err(e) => {
            tracing::debug!(error = %e, "executor presence unreadable; waiting runs shown without a reason");
            return;
        }
    };
    for run in runs.iter_mut().filter(|run| is_waiting(run)) {
        if let Some((reason, detail)) = reason(&run.provider, &presences) {
            run.waiting_reason = Some(reason);
            run.waiting_detail = Some(detail);
        }
    }
}

/// Why a run of `provider` cannot be dispatched to any of `presences`, or `None` when
/// an executor offering it has a free slot (the run is about to be dispatched).
pub(crate) fn reason(
    provider: &str,
    presences: &[ExecutorPresence],
) -> Option<(WaitingReason, String)> {
    if presences.is_empty() {
        return Some((WaitingReason::NoExecutor, "no executor is live".to_owned()));
    }
    let offering: Vec<&ExecutorPresence> =
        presences.iter().filter(|p| offers(p, provider)).collect();
    if offering.is_empty() {
        return Some((
            WaitingReason::NoExecutorForProvider,
            format!(
                "no live executor offers `{provider}` (live: {})",
                ids(presences.iter())
            ),
        ));
    }
    if offering.iter().all(|p| p.draining) {
        return Some((
            WaitingReason::AllExecutorsDraining,
            format!(
                "every executor offering `{provider}` is draining and takes no new runs ({})",
                ids(offering.iter().copied())
            ),
        ));
    }
    let open: Vec<&ExecutorPresence> = offering.iter().copied().filter(|p| !p.draining).collect();
    if open.iter().all(|p| p.free_slots() == 0) {
        let capacity: u64 = open.iter().map(|p| u64::from(p.capacity)).sum();
        let active: u64 = open.iter().map(|p| u64::from(p.active)).sum();
        return Some((
            WaitingReason::AllExecutorsFull,
            format!(
                "every executor offering `{provider}` is full ({active} runs on {capacity} \
                 slots: {})",
                ids(open.iter().copied())
            ),
        ));
    }
    None
}

/// The record offers `provider` under its canonical name or an alias.
fn offers(presence: &ExecutorPresence, provider: &str) -> bool {
    match ProviderName::parse(provider) {
        Some(name) => {
            presence.supports(name.as_str())
                || name.aliases().iter().any(|alias| presence.supports(alias))
        }
        None => presence.supports(provider),
    }
}

fn ids<'a>(presences: impl Iterator<Item = &'a ExecutorPresence>) -> String {
    let mut all: Vec<&str> = presences.map(|p| p.executor_id.as_str()).collect();
    all.sort_unstable();
    let more = all.len().saturating_sub(NAMED_EXECUTORS);
    let mut text = all[..all.len().min(NAMED_EXECUTORS)].join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contracts::presence::ProviderAvailability;

    fn executor(
        id: &str,
        providers: &[&str],
        capacity: u32,
        active: u32,
        draining: bool,
    ) -> ExecutorPresence {
        ExecutorPresence {
            executor_id: id.parse().unwrap(),
            version: "test".into(),
            capacity,
            active,
            draining,
            providers: providers
                .iter()
                .map(|name| ProviderAvailability {
                    name: (*name).into(),
                    installed: true,
                    version: None,
                    problem: None,
                    credentials_configured: None,
                    credential_variables: Vec::new(),
                })
                .collect(),
            started_at: chrono::Utc::now(),
            heartbeat_at: chrono::Utc::now(),
        }
    }

    fn reason_of(provider: &str, presences: &[ExecutorPresence]) -> Option<WaitingReason> {
        reason(provider, presences).map(|(r, _)| r)
    }

    #[test]
    fn each_reason_and_none_when_a_slot_is_free() {
        use WaitingReason::*;
        assert_eq!(reason_of("scripted", &[]), Some(NoExecutor));
        let other = executor("e1", &["claude-code"], 4, 0, false);
        assert_eq!(
            reason_of("scripted", std::slice::from_ref(&other)),
            Some(NoExecutorForProvider)
        );
        let full = executor("e2", &["scripted"], 2, 2, false);
        let draining = executor("e3", &["scripted"], 4, 1, true);
        assert_eq!(
            reason_of("scripted", &[other.clone(), full.clone()]),
            Some(AllExecutorsFull)
        );
        assert_eq!(
            reason_of("scripted", std::slice::from_ref(&draining)),
            Some(AllExecutorsDraining)
        );
        // Full and draining: what would free a slot is the full one finishing a run.
        assert_eq!(
            reason_of("scripted", &[full.clone(), draining.clone()]),
            Some(AllExecutorsFull)
        );
        let free = executor("e4", &["scripted"], 2, 1, false);
        assert_eq!(reason_of("scripted", &[full, draining, free, other]), None);
    }

    #[test]
    fn aliases_count_for_the_canonical_name_and_details_name_executors() {
        let legacy = executor("old", &["codex-cli"], 1, 1, false);
        let (why, detail) = reason("codex-app-server", &[legacy]).unwrap();
        assert_eq!(why, WaitingReason::AllExecutorsFull);
        assert!(detail.contains("1 runs on 1 slots: old"), "{detail}");
        let many: Vec<_> = (0..7)
            .map(|i| executor(&format!("e{i}"), &[], 1, 0, false))
            .collect();
        let (_, detail) = reason("opencode", &many).unwrap();
        assert!(
            detail.ends_with("(live: e0, e1, e2, e3, e4 and 2 more)"),
            "{detail}"
        );
    }
}
