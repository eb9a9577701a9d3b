//! Read grants: "this principal may read this run", learnt from the runs this gateway
//! just started for the principal, so that the stream a client opens right after its
//! `202` needs no control-plane lookup (an HTTP round trip and a query, most of the
//! time to the first event).
//!
//! A principal allowed to start a run in an app may read that app's runs (starting
//! needs `developer`, reading `viewer`), so the start's answer proves the grant at that
//! moment. A grant lives [`GRANT_TTL`] at most and is dropped with everything else the
//! gateway caches about the principal when its access changes (see
//! [`Revocations`](crate::revocation::Revocations), which holds the grants under its
//! lock so a notice and a grant cannot interleave).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use switchyard_contracts::RunId;

/// How long a grant is trusted: the stream of a just-started run opens within it; a
/// later one asks the control-plane.
pub(crate) const GRANT_TTL: Duration = Duration::from_secs(60);
/// Most grants held; the oldest go first.
const MAX_GRANTS: usize = 10_000;

struct Grant {
    principal: String,
    at: Instant,
}

/// Bounded, insertion-ordered grants (a run has one: the principal that started it).
#[derive(Default)]
pub(crate) struct ReadGrants {
    grants: HashMap<RunId, Grant>,
    order: VecDeque<RunId>,
}

impl ReadGrants {
    pub(crate) fn grant(&mut self, principal: &str, run_id: RunId, now: Instant) {
        self.expire(now);
        if self.grants.len() >= MAX_GRANTS
            && let Some(oldest) = self.order.pop_front()
        {
            self.grants.remove(&oldest);
        }
        let grant = Grant {
            principal: principal.to_owned(),
            at: now,
        };
        if self.grants.insert(run_id, grant).is_none() {
            self.order.push_back(run_id);
        }
    }

    pub(crate) fn may_read(&self, principal: &str, run_id: RunId, now: Instant) -> bool {
        self.grants.get(&run_id).is_some_and(|grant| {
            grant.principal == principal && now.duration_since(grant.at) < GRANT_TTL
        })
    }

    pub(crate) fn forget_principal(&mut self, principal: &str) {
        self.grants.retain(|_, grant| grant.principal != principal);
        self.order.retain(|run_id| self.grants.contains_key(run_id));
    }

    pub(crate) fn clear(&mut self) {
        self.grants.clear();
        self.order.clear();
    }

    fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.order.front() {
            match self.grants.get(oldest) {
                Some(grant) if now.duration_since(grant.at) < GRANT_TTL => break,
                _ => {
                    if let Some(gone) = self.order.pop_front() {
                        self.grants.remove(&gone);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.grants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_for_its_principal_and_run_only() {
        let mut grants = ReadGrants::default();
        let now = Instant::now();
        let (run, other_run) = (RunId::now_v7(), RunId::now_v7());
        grants.grant("alice", run, now);
        assert!(grants.may_read("alice", run, now));
        assert!(!grants.may_read("bob", run, now));
        assert!(!grants.may_read("alice", other_run, now));
    }

    #[test]
    fn grants_expire_and_are_forgotten_with_their_principal() {
        let mut grants = ReadGrants::default();
        let now = Instant::now();
        let (a, b, c) = (RunId::now_v7(), RunId::now_v7(), RunId::now_v7());
        grants.grant("alice", a, now);
        grants.grant("bob", b, now);
        assert!(!grants.may_read("alice", a, now + GRANT_TTL));
        grants.forget_principal("bob");
        assert!(!grants.may_read("bob", b, now));
        assert!(grants.may_read("alice", a, now));
        // Expired grants make room as new ones come in.
        grants.grant("carol", c, now + GRANT_TTL);
        assert_eq!(grants.len(), 1);
        grants.clear();
        assert!(!grants.may_read("carol", c, now + GRANT_TTL));
    }

    #[test]
    fn the_oldest_grant_goes_when_full() {
        let mut grants = ReadGrants::default();
        let now = Instant::now();
        let runs: Vec<RunId> = (0..=MAX_GRANTS).map(|_| RunId::now_v7()).collect();
        for run in &runs {
            grants.grant("alice", *run, now);
        }
        assert_eq!(grants.len(), MAX_GRANTS);
        assert!(!grants.may_read("alice", runs[0], now));
        assert!(grants.may_read("alice", runs[MAX_GRANTS], now));
    }
}
