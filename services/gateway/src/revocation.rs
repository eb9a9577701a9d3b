//! Making a change to a principal's access effective at once on this gateway.
//!
//! The control-plane announces every committed change (token revoked, principal
//! deleted, role or apps changed) on the core NATS subject
//! [`PRINCIPAL_CHANGED`](switchyard_contracts::subjects::PRINCIPAL_CHANGED) with the
//! principal's id only. [`listen`] applies each notice through [`Revocations::forget`]:
//! the principal's cached token answers are dropped (its next request is resolved
//! again) and its open SSE streams end (the client reconnects and is authorised again:
//! a revoked token gets 401, a removed app 404). The gateway that forwarded the change
//! does the same from the answer's `x-switchyard-principal-changed` header before it
//! answers, so the admin's own next request never races the notice.
//!
//! Core NATS is at-most-once: a notice sent while this gateway was disconnected is
//! lost. The token cache TTL (`gateway.token_cache_secs`) still bounds how long a
//! cached answer is trusted, and on every reconnect the whole cache is dropped. Streams
//! that were open across a missed notice keep running until they end or reconnect.
//!
//! Requests already in flight when a notice arrives are handled with an epoch: each
//! authentication notes the epoch it started at, and a principal forgotten since then
//! is neither cached from that resolution nor given a stream that outlives the notice.

use futures::StreamExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use switchyard_contracts::RunId;
use switchyard_contracts::principals::PrincipalChanged;
use switchyard_platform::nats::ConnectionWatch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::auth::Principal;
use crate::grants::ReadGrants;
use crate::token_cache::TokenCache;

/// Most principals remembered as "forgotten at epoch n"; past it the record restarts
/// and everything in flight counts as forgotten (a spurious reconnect at worst).
const MAX_FORGOTTEN: usize = 10_000;

/// The epoch a request's authentication started at (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthEpoch(u64);

/// Cached answers and open streams per principal, and the epochs of forgetting them.
#[derive(Clone)]
pub(crate) struct Revocations {
    cache: Option<Arc<TokenCache>>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    epoch: u64,
    /// Principal id → epoch it was last forgotten at.
    forgotten: HashMap<String, u64>,
    /// Everyone counts as forgotten at this epoch (reconnects, a full record).
    everyone_at: u64,
    streams: HashMap<String, Streams>,
    generations: u64,
    /// Runs principals started here and may stream without a control-plane lookup.
    grants: ReadGrants,
}

/// The open streams of one principal share one token; cancelling it ends them all.
struct Streams {
    cancel: CancellationToken,
    open: usize,
    /// Tells this set from the one a principal gets after being forgotten.
    generation: u64,
}

impl Inner {
    fn forgotten_since(&self, principal: &str, since: u64) -> bool {
        self.everyone_at > since || self.forgotten.get(principal).is_some_and(|&at| at > since)
    }
}

impl Revocations {
    /// `cache` is the token cache to evict from (`None` when tokens are not cached).
    pub(crate) fn new(cache: Option<Arc<TokenCache>>) -> Self {
        Self {
            cache,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Noted before an authentication starts.
    pub(crate) fn epoch(&self) -> AuthEpoch {
        AuthEpoch(self.lock().epoch)
    }

    /// Drops what is cached about the principal and ends its open streams.
    pub(crate) fn forget(&self, principal: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        let epoch = inner.epoch;
        if inner.forgotten.len() >= MAX_FORGOTTEN && !inner.forgotten.contains_key(principal) {
            inner.forgotten.clear();
            inner.everyone_at = epoch;
        }
        inner.forgotten.insert(principal.to_owned(), epoch);
        // Under the lock, so a resolution that started earlier cannot re-cache it.
        if let Some(cache) = &self.cache {
            cache.forget_principal(principal);
        }
        inner.grants.forget_principal(principal);
        if let Some(streams) = inner.streams.remove(principal) {
            tracing::info!(
                principal,
                streams = streams.open,
                "ending a changed principal's streams"
            );
            streams.cancel.cancel();
        }
    }

    /// Drops every cached answer (a reconnect may have lost notices); open streams stay.
    pub(crate) fn forget_all_cached(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.everyone_at = inner.epoch;
        inner.forgotten.clear();
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        inner.grants.clear();
    }

    /// Notes that `principal`, authenticated at `since`, just started `run_id` here, so
    /// it may read the run (see [`crate::grants`]); not if it was forgotten meanwhile.
    pub(crate) fn grant_read(&self, since: AuthEpoch, principal: &str, run_id: RunId) {
        let mut inner = self.lock();
        if !inner.forgotten_since(principal, since.0) {
            inner.grants.grant(principal, run_id, Instant::now());
        }
    }

    /// Whether a grant lets `principal` read `run_id` without asking the control-plane.
    pub(crate) fn may_read(&self, principal: &str, run_id: RunId) -> bool {
        self.lock()
            .grants
            .may_read(principal, run_id, Instant::now())
    }

    /// Caches a resolution made since `since`, unless the principal was forgotten
    /// meanwhile (the answer may predate the change).
    pub(crate) fn cache_if_current(&self, since: AuthEpoch, key: [u8; 32], principal: &Principal) {
        let inner = self.lock();
        if inner.forgotten_since(&principal.id, since.0) {
            return;
        }
        if let Some(cache) = &self.cache {
            cache.insert(key, principal.clone());
        }
    }

    /// Registers an SSE stream of a principal authenticated at `since`; the watch fires
    /// when the principal is forgotten (at once if that happened since `since`).
    pub(crate) fn watch(&self, principal: &str, since: AuthEpoch) -> StreamWatch {
        let mut inner = self.lock();
        if inner.forgotten_since(principal, since.0) {
            let cancel = CancellationToken::new();
            cancel.cancel();
            return StreamWatch::new(cancel, None);
        }
        inner.generations += 1;
        let next = inner.generations;
        let streams = inner
            .streams
            .entry(principal.to_owned())
            .or_insert_with(|| Streams {
                cancel: CancellationToken::new(),
                open: 0,
                generation: next,
            });
        streams.open += 1;
        let registration = Registration {
            principal: principal.to_owned(),
            generation: streams.generation,
            revocations: self.clone(),
        };
        StreamWatch::new(streams.cancel.clone(), Some(registration))
    }

    /// Open streams being watched (all principals).
    #[cfg(test)]
    fn open_streams(&self) -> usize {
        self.lock().streams.values().map(|s| s.open).sum()
    }

    fn release(&self, registration: &Registration) {
        let mut inner = self.lock();
        let principal = registration.principal.as_str();
        let Some(streams) = inner.streams.get_mut(principal) else {
            return;
        };
        // After a `forget` the entry, if any, belongs to newer streams.
        if streams.generation == registration.generation {
            streams.open = streams.open.saturating_sub(1);
            if streams.open == 0 {
                inner.streams.remove(principal);
            }
        }
    }
}

struct Registration {
    principal: String,
    generation: u64,
    revocations: Revocations,
}

/// Held by an SSE connection: [`StreamWatch::revoked`] completes when the principal's
/// access changed; dropping it unregisters the stream.
pub(crate) struct StreamWatch {
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    registration: Option<Registration>,
}

impl StreamWatch {
    fn new(cancel: CancellationToken, registration: Option<Registration>) -> Self {
        Self {
            revoked: Box::pin(cancel.cancelled_owned()),
            registration,
        }
    }

    /// Completes once the principal has been forgotten.
    pub(crate) async fn revoked(&mut self) {
        self.revoked.as_mut().await;
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if let Some(registration) = &self.registration {
            registration.revocations.release(registration);
        }
    }
}

/// Applies the control-plane's notices until `shutdown` (or the subscription ends),
/// and drops the whole cache whenever `connection` (the one `notices` come over) has
/// been re-established.
pub(crate) async fn listen(
    mut connection: ConnectionWatch,
    mut notices: async_nats::Subscriber,
    revocations: Revocations,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            message = notices.next() => {
                let Some(message) = message else { break };
                match serde_json::from_slice::<PrincipalChanged>(&message.payload) {
                    Ok(notice) => {
                        tracing::debug!(principal = %notice.principal_id, "principal changed");
                        revocations.forget(&notice.principal_id.to_string());
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed principal notice"),
                }
            }
            _ = connection.reconnected() => {
                tracing::info!("NATS reconnected: dropping every cached token answer");
                revocations.forget_all_cached();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use futures::FutureExt;
    use std::time::Duration;

    fn principal(id: &str) -> Principal {
        Principal {
            id: id.to_owned(),
            role: Role::Developer,
            apps: Vec::new(),
        }
    }

    fn revocations() -> (Revocations, Arc<TokenCache>) {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(3600), 100));
        (Revocations::new(Some(cache.clone())), cache)
    }

    #[test]
    fn forgetting_drops_only_that_principals_answers() {
        let (revocations, cache) = revocations();
        let since = revocations.epoch();
        for (token, id) in [("sy_a1", "a"), ("sy_a2", "a"), ("sy_b", "b")] {
            revocations.cache_if_current(since, TokenCache::key(token), &principal(id));
        }
        assert_eq!(cache.len(), 3);
        revocations.forget("a");
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&TokenCache::key("sy_b")).is_some());
        revocations.forget_all_cached();
        assert!(cache.is_empty());
    }

    #[test]
    fn a_resolution_overtaken_by_a_notice_is_not_cached() {
        let (revocations, cache) = revocations();
        let before = revocations.epoch();
        revocations.forget("a");
        revocations.cache_if_current(before, TokenCache::key("sy_a"), &principal("a"));
        revocations.cache_if_current(before, TokenCache::key("sy_b"), &principal("b"));
        assert!(cache.get(&TokenCache::key("sy_a")).is_none());
        assert!(cache.get(&TokenCache::key("sy_b")).is_some());
        let after = revocations.epoch();
        revocations.cache_if_current(after, TokenCache::key("sy_a"), &principal("a"));
        assert!(cache.get(&TokenCache::key("sy_a")).is_some());
        // After a reconnect nothing resolved before it is trusted.
        revocations.forget_all_cached();
        revocations.cache_if_current(after, TokenCache::key("sy_c"), &principal("c"));
        assert!(cache.get(&TokenCache::key("sy_c")).is_none());
    }

    #[tokio::test]
    async fn forgetting_ends_the_principals_streams_only() {
        let (revocations, _) = revocations();
        let since = revocations.epoch();
        let mut a1 = revocations.watch("a", since);
        let mut a2 = revocations.watch("a", since);
        let mut b = revocations.watch("b", since);
        assert_eq!(revocations.open_streams(), 3);
        assert!(a1.revoked().now_or_never().is_none());
        revocations.forget("a");
        a1.revoked().await;
        a2.revoked().await;
        assert!(b.revoked().now_or_never().is_none());
        drop((a1, a2));
        assert_eq!(revocations.open_streams(), 1);
        // A stream authorised before the notice but registered after it ends at once.
        let mut late = revocations.watch("a", since);
        late.revoked().await;
        // One authorised afterwards lives on, and its closing is counted.
        let fresh = revocations.watch("a", revocations.epoch());
        assert_eq!(revocations.open_streams(), 2);
        drop(fresh);
        drop(b);
        assert_eq!(revocations.open_streams(), 0);
    }
}
