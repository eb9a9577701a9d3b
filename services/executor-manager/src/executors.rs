//! The presence cache: which executors are alive, what they run and how many free slots
//! they have, kept current by a watch on the `EXECUTORS` KV bucket.
//!
//! Heartbeats arrive every few seconds, but commands arrive in bursts. So the cache also
//! holds local *reservations*: a worker reserves a slot before it dispatches, and the
//! slot stays taken until the executor's next heartbeat (which then counts the run in
//! `active`) or until the dispatch failed. Without them a burst of commands between two
//! heartbeats would all pick the same "emptiest" executor.
//!
//! The bucket's TTL removes a dead executor's key, but an expiry produces no watch
//! event; that is why every entry also carries a local freshness deadline.
//!
//! The cache also answers whether a provider is missing altogether: live executors
//! exist, none has it installed, and none offered it for a grace period (an executor
//! that restarts or upgrades its CLIs drops out of presence for a moment, and a
//! starting manager has not heard of everyone yet).

use async_nats::jetstream::{self, kv};
use backon::BackoffBuilder;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::{ExecutorId, ProviderName, subjects};
use switchyard_platform::nats::{self as platform_nats, ConnectionWatch, Resources};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Presence freshness when the bucket has no TTL of its own (it should: see nats/kv).
const FALLBACK_TTL: Duration = Duration::from_secs(15);
/// Key filter matching every key of the bucket.
const ALL_KEYS: &str = ">";

/// Live executors, shared by every worker of the process.
#[derive(Clone)]
pub(crate) struct Executors {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    primed: watch::Sender<bool>,
}

struct State {
    ttl: Duration,
    known: HashMap<ExecutorId, Known>,
    /// When this cache started: nothing is concluded about a provider before it has
    /// had time to hear of the executors offering it.
    created: Instant,
    /// When an executor last stopped offering a provider (it left, or its new record
    /// no longer lists it installed).
    withdrawn: HashMap<ProviderName, Instant>,
}

struct Known {
    presence: ExecutorPresence,
    /// When the last heartbeat stops vouching for the executor.
    fresh_until: Instant,
    /// Slots this process handed out since the last heartbeat.
    reserved: u32,
    /// Incremented per heartbeat, so that a reservation made before a heartbeat does not
    /// release a slot counted by the next one.
    generation: u64,
    /// The executor said full/draining, or nobody answered on its subject: skip it until
    /// its next heartbeat says otherwise. (A draining executor's own record has no free
    /// slot either: it is never dispatched to while it drains.)
    unavailable: bool,
}

impl Known {
    fn free_slots(&self, now: Instant) -> u32 {
        if self.unavailable || now >= self.fresh_until {
            return 0;
        }
        self.presence.free_slots().saturating_sub(self.reserved)
    }

    fn supports(&self, provider: ProviderName) -> bool {
        supports(&self.presence, provider)
    }
}

/// The record lists `provider` (under its name or an alias) as installed.
fn supports(presence: &ExecutorPresence, provider: ProviderName) -> bool {
    presence.supports(provider.as_str()) || provider.aliases().iter().any(|a| presence.supports(a))
}

fn record_withdrawal(
    withdrawn: &mut HashMap<ProviderName, Instant>,
    provider: ProviderName,
    at: Instant,
) {
    let entry = withdrawn.entry(provider).or_insert(at);
    *entry = (*entry).max(at);
}

impl Executors {
    pub(crate) fn new(ttl: Duration) -> Self {
        let (primed, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    ttl,
                    known: HashMap::new(),
                    created: Instant::now(),
                    withdrawn: HashMap::new(),
                }),
                primed,
            }),
        }
    }

    // A panic while holding the lock cannot leave the map half-updated in a way that
    // matters (every update is a single insert/remove), so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Executors that run `provider` and have a free slot, most free slots first (the
    /// order `reserve` tries them in).
    #[cfg(test)]
    fn candidates(&self, provider: ProviderName) -> Vec<ExecutorId> {
        let state = self.state();
        ranked(&state, provider, &[], Instant::now())
            .into_iter()
            .map(|(id, _)| (*id).clone())
            .collect()
    }

    /// Reserves a slot on the best candidate not in `exclude`.
    pub(crate) fn reserve(
        &self,
        provider: ProviderName,
        exclude: &[ExecutorId],
    ) -> Option<Reservation> {
        self.reserve_preferring(provider, None, exclude)
    }

    /// Reserves a slot on `preferred` when it is a candidate (runs the provider, has a
    /// free slot, not in `exclude`), otherwise on the best candidate. A conversation's
    /// follow-up prefers the executor holding its workspace and provider session.
    pub(crate) fn reserve_preferring(
        &self,
        provider: ProviderName,
        preferred: Option<&ExecutorId>,
        exclude: &[ExecutorId],
    ) -> Option<Reservation> {
        let mut state = self.state();
        let ranked = ranked(&state, provider, exclude, Instant::now());
        let id = preferred
            .and_then(|preferred| ranked.iter().find(|(id, _)| *id == preferred))
            .or_else(|| ranked.first())
            .map(|(id, _)| (*id).clone())?;
        let known = state.known.get_mut(&id)?;
        known.reserved += 1;
        Some(Reservation {
            executors: self.clone(),
            generation: known.generation,
            executor_id: id,
            settled: false,
        })
    }

    /// Records a heartbeat. `live` is false for values replayed when a watch starts:
    /// those may be up to a TTL old, so their age is taken from `heartbeat_at`.
    pub(crate) fn upsert(&self, presence: ExecutorPresence, live: bool) {
        let now = Instant::now();
        let mut state = self.state();
        let ttl = state.ttl;
        let age = if live {
            Duration::ZERO
        } else {
            (chrono::Utc::now() - presence.heartbeat_at)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(ttl)
        };
        let fresh_until = now + (ttl - age);
        let id = presence.executor_id.clone();
        let State {
            known, withdrawn, ..
        } = &mut *state;
        match known.get_mut(&id) {
            Some(known) => {
                for provider in ProviderName::ALL {
                    if known.supports(provider) && !supports(&presence, provider) {
                        record_withdrawal(withdrawn, provider, now.min(known.fresh_until));
                    }
                }
                known.presence = presence;
                known.fresh_until = fresh_until;
                known.reserved = 0;
                known.generation += 1;
                known.unavailable = false;
            }
            None => {
                tracing::info!(
                    executor_id = %id,
                    capacity = presence.capacity,
                    active = presence.active,
                    "executor present"
                );
                known.insert(
                    id,
                    Known {
                        presence,
                        fresh_until,
                        reserved: 0,
                        generation: 0,
                        unavailable: false,
                    },
                );
            }
        }
    }

    pub(crate) fn remove(&self, executor_id: &str) {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(gone) = state.known.remove(executor_id) {
            tracing::info!(executor_id, "executor left");
            for provider in ProviderName::ALL {
                if gone.supports(provider) {
                    record_withdrawal(&mut state.withdrawn, provider, now.min(gone.fresh_until));
                }
            }
        }
    }

    /// The live executors, sorted by id, when there are some and none of them has
    /// `provider` installed, and no executor offered it within `grace` (nor did this
    /// cache start less than `grace` ago). `None` means: wait, an executor with the
    /// provider may be on its way (or there is no executor at all).
    pub(crate) fn without_provider(
        &self,
        provider: ProviderName,
        grace: Duration,
    ) -> Option<Vec<ExecutorId>> {
        self.without_provider_at(provider, grace, Instant::now())
    }

    fn without_provider_at(
        &self,
        provider: ProviderName,
        grace: Duration,
        now: Instant,
    ) -> Option<Vec<ExecutorId>> {
        if !*self.inner.primed.borrow() {
            return None;
        }
        let state = self.state();
        let mut last_offered = state.created;
        if let Some(withdrawn) = state.withdrawn.get(&provider) {
            last_offered = last_offered.max(*withdrawn);
        }
        let mut live = Vec::new();
        for (id, known) in &state.known {
            let fresh = now < known.fresh_until;
            if known.supports(provider) {
                if fresh {
                    return None;
                }
                last_offered = last_offered.max(known.fresh_until);
            } else if fresh {
                live.push(id.clone());
            }
        }
        if live.is_empty() || now.saturating_duration_since(last_offered) < grace {
            return None;
        }
        live.sort();
        Some(live)
    }

    fn set_ttl(&self, ttl: Duration) {
        self.state().ttl = ttl;
    }

    /// Applies one entry of the bucket watch. Garbage is logged and ignored: one
    /// misbehaving writer must not blind the manager to every other executor.
    pub(crate) fn apply(&self, entry: &kv::Entry, live: bool) {
        let key = entry.key.as_str();
        match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => self.remove(key),
            kv::Operation::Put => {
                if key.parse::<ExecutorId>().is_err() {
                    tracing::warn!(key, "ignoring a presence key that cannot be an executor id");
                    return;
                }
                match serde_json::from_slice::<ExecutorPresence>(&entry.value) {
                    Ok(presence) if presence.executor_id == key => self.upsert(presence, live),
                    Ok(presence) => tracing::warn!(
                        key,
                        executor_id = %presence.executor_id,
                        "ignoring a presence value whose executor id differs from its key"
                    ),
                    Err(error) => tracing::warn!(
                        key,
                        revision = entry.revision,
                        %error,
                        "ignoring a presence value that is not a valid ExecutorPresence"
                    ),
                }
            }
        }
    }

    fn mark_primed(&self) {
        self.inner.primed.send_replace(true);
    }

    /// Waits until the first watch delivered the bucket's initial values (or `limit`
    /// passed), so that a starting manager does not nak its whole backlog as "no
    /// executor" before it has even heard of the executors.
    pub(crate) async fn wait_primed(&self, limit: Duration) -> bool {
        let mut primed = self.inner.primed.subscribe();
        tokio::time::timeout(limit, primed.wait_for(|p| *p))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Follows the `EXECUTORS` bucket until `shutdown`, re-creating the watch whenever it
    /// ends or fails (a NATS restart; the bucket lives in memory and may have to be
    /// provisioned again).
    pub(crate) async fn watch(
        self,
        js: jetstream::Context,
        mut lifecycle: ConnectionWatch,
        shutdown: CancellationToken,
    ) {
        let backoff = crate::connection::reconnect_backoff();
        let mut delays = backoff.build();
        'watch: loop {
            lifecycle.catch_up();
            let opened = tokio::select! {
                opened = self.open_watch(&js) => opened,
                () = shutdown.cancelled() => return,
            };
            let mut entries = match opened {
                Ok(entries) => entries,
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(%error, ?delay, "cannot watch executor presence; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            loop {
                let item = tokio::select! {
                    item = entries.next() => item,
                    _ = lifecycle.reconnected() => {
                        // The watch's ordered consumer would resume at its old stream
                        // sequence, which means nothing if the in-memory bucket was
                        // lost with the server: start over from the current values.
                        tracing::info!("NATS reconnected; re-creating the executor presence watch");
                        delays = backoff.build();
                        continue 'watch;
                    }
                    () = shutdown.cancelled() => return,
                };
                match item {
                    Some(Ok(entry)) => {
                        delays = backoff.build();
                        self.apply(&entry, entry.seen_current);
                        if entry.seen_current {
                            self.mark_primed();
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "executor presence watch failed; re-creating it");
                        break;
                    }
                    None => {
                        tracing::warn!("executor presence watch ended; re-creating it");
                        break;
                    }
                }
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn open_watch(&self, js: &jetstream::Context) -> Result<kv::Watch, WatchError> {
        let store = match js.get_key_value(subjects::EXECUTORS_BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket lives in memory: a restarted NATS has forgotten it.
                platform_nats::provision(
                    js,
                    Resources {
                        executors_kv: true,
                        ..Resources::default()
                    },
                )
                .await?;
                js.get_key_value(subjects::EXECUTORS_BUCKET).await?
            }
        };
        // `get_key_value` just fetched the stream info, so its state is current.
        let status = store.status().await?;
        let ttl = status.max_age();
        self.set_ttl(if ttl.is_zero() { FALLBACK_TTL } else { ttl });
        let empty = status.info.state.messages == 0;
        // `watch_all` only sees new updates; `>` with history first replays the
        // current value of every key, then follows updates.
        let watch = store.watch_with_history(ALL_KEYS).await?;
        if empty {
            // No entry will ever carry `seen_current` for an empty bucket.
            self.mark_primed();
        }
        Ok(watch)
    }
}

#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Provision(#[from] platform_nats::NatsError),
    #[error("cannot open the presence bucket: {0}")]
    Bucket(#[from] jetstream::context::KeyValueError),
    #[error("cannot read the presence bucket's status: {0}")]
    Status(#[from] kv::StatusError),
    #[error("cannot watch the presence bucket: {0}")]
    Watch(#[from] kv::WatchError),
}

/// Candidates ranked by free slots (desc), then id (so the order is deterministic).
fn ranked<'a>(
    state: &'a State,
    provider: ProviderName,
    exclude: &[ExecutorId],
    now: Instant,
) -> Vec<(&'a ExecutorId, u32)> {
    let mut ranked: Vec<(&ExecutorId, u32)> = state
        .known
        .iter()
        .filter(|(id, known)| known.supports(provider) && !exclude.contains(id))
        .map(|(id, known)| (id, known.free_slots(now)))
        .filter(|(_, free)| *free > 0)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
}

/// One slot reserved on one executor. Dropping it unsettled gives the slot back.
pub(crate) struct Reservation {
    executors: Executors,
    executor_id: ExecutorId,
    generation: u64,
    settled: bool,
}

impl Reservation {
    pub(crate) fn executor_id(&self) -> &ExecutorId {
        &self.executor_id
    }

    /// The executor took the run: the slot stays taken until its next heartbeat, which
    /// counts the run in `active`.
    pub(crate) fn keep(mut self) {
        self.settled = true;
    }

    /// The executor cannot take runs now (full, draining, gone): skip it until its
    /// next heartbeat.
    pub(crate) fn mark_unavailable(mut self) {
        self.settled = true;
        let mut state = self.executors.state();
        if let Some(known) = state.known.get_mut(&self.executor_id) {
            known.unavailable = true;
            if known.generation == self.generation {
                known.reserved = known.reserved.saturating_sub(1);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut state = self.executors.state();
        if let Some(known) = state.known.get_mut(&self.executor_id)
            && known.generation == self.generation
        {
            known.reserved = known.reserved.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contracts::presence::ProviderAvailability;

    fn presence(id: &str, capacity: u32, active: u32, providers: &[&str]) -> ExecutorPresence {
        ExecutorPresence {
            executor_id: id.parse().unwrap(),
            version: "test".into(),
            capacity,
            active,
            draining: false,
            providers: providers
                .iter()
                .map(|p| ProviderAvailability {
                    name: (*p).into(),
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

    #[test]
    fn candidates_are_filtered_by_provider_and_ordered_by_free_slots() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.upsert(presence("a", 2, 1, &["scripted"]), true);
        executors.upsert(presence("b", 4, 0, &["scripted", "claude-code"]), true);
        executors.upsert(presence("c", 3, 3, &["scripted"]), true);
        executors.upsert(presence("d", 9, 0, &["opencode"]), true);
        assert_eq!(executors.candidates(ProviderName::Scripted), ["b", "a"]);
        assert_eq!(executors.candidates(ProviderName::ClaudeCode), ["b"]);
        assert!(
            executors
                .candidates(ProviderName::CodexAppServer)
                .is_empty()
        );
    }

    #[test]
    fn draining_and_uninstalled_executors_are_not_candidates() {
        let executors = Executors::new(Duration::from_secs(15));
        let mut draining = presence("a", 2, 0, &["scripted"]);
        draining.draining = true;
        executors.upsert(draining, true);
        let mut missing = presence("b", 2, 0, &["scripted"]);
        missing.providers[0].installed = false;
        executors.upsert(missing, true);
        assert!(executors.candidates(ProviderName::Scripted).is_empty());
    }

    #[test]
    fn reservations_hold_slots_until_the_next_heartbeat() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.upsert(presence("a", 2, 0, &["scripted"]), true);
        let first = executors.reserve(ProviderName::Scripted, &[]).unwrap();
        let second = executors.reserve(ProviderName::Scripted, &[]).unwrap();
        assert!(executors.reserve(ProviderName::Scripted, &[]).is_none());
        first.keep();
        drop(second);
        // The failed dispatch gave its slot back; the accepted one still holds its slot.
        assert_eq!(executors.candidates(ProviderName::Scripted), ["a"]);
        let third = executors.reserve(ProviderName::Scripted, &[]).unwrap();
        third.keep();
        assert!(executors.candidates(ProviderName::Scripted).is_empty());
        // The next heartbeat reports both runs as active: still full.
        executors.upsert(presence("a", 2, 2, &["scripted"]), true);
        assert!(executors.candidates(ProviderName::Scripted).is_empty());
        // One finished.
        executors.upsert(presence("a", 2, 1, &["scripted"]), true);
        assert_eq!(executors.candidates(ProviderName::Scripted), ["a"]);
    }

    #[test]
    fn a_reservation_from_before_a_heartbeat_does_not_free_a_counted_slot() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.upsert(presence("a", 2, 0, &["scripted"]), true);
        let stale = executors.reserve(ProviderName::Scripted, &[]).unwrap();
        executors.upsert(presence("a", 2, 1, &["scripted"]), true);
        let fresh = executors.reserve(ProviderName::Scripted, &[]).unwrap();
        drop(stale);
        assert!(executors.candidates(ProviderName::Scripted).is_empty());
        drop(fresh);
        assert_eq!(executors.candidates(ProviderName::Scripted), ["a"]);
    }

    #[test]
    fn unavailable_executors_are_skipped_until_their_next_heartbeat() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.upsert(presence("a", 5, 0, &["scripted"]), true);
        executors.upsert(presence("b", 1, 0, &["scripted"]), true);
        let r = executors.reserve(ProviderName::Scripted, &[]).unwrap();
        assert_eq!(r.executor_id(), "a");
        r.mark_unavailable();
        assert_eq!(executors.candidates(ProviderName::Scripted), ["b"]);
        let excluded = executors.reserve(ProviderName::Scripted, &["b".parse().unwrap()]);
        assert!(excluded.is_none());
        executors.upsert(presence("a", 5, 0, &["scripted"]), true);
        assert_eq!(executors.candidates(ProviderName::Scripted), ["a", "b"]);
    }

    #[test]
    fn stale_heartbeats_do_not_count() {
        let executors = Executors::new(Duration::from_secs(15));
        let mut old = presence("a", 2, 0, &["scripted"]);
        old.heartbeat_at = chrono::Utc::now() - chrono::Duration::seconds(60);
        executors.upsert(old.clone(), false);
        assert!(executors.candidates(ProviderName::Scripted).is_empty());
        // A live update is fresh whatever the executor's clock says.
        executors.upsert(old, true);
        assert_eq!(executors.candidates(ProviderName::Scripted), ["a"]);
        executors.remove("a");
        assert!(executors.candidates(ProviderName::Scripted).is_empty());
    }

    #[test]
    fn the_preferred_executor_is_reserved_when_it_has_room() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.upsert(presence("big", 10, 0, &["scripted"]), true);
        executors.upsert(presence("small", 2, 1, &["scripted"]), true);
        let pick = |preferred: Option<&str>, exclude: &[ExecutorId]| {
            let preferred = preferred.map(|p| p.parse::<ExecutorId>().unwrap());
            let r = executors.reserve_preferring(
                ProviderName::Scripted,
                preferred.as_ref(),
                exclude,
            )?;
            let id = r.executor_id().to_string();
            r.keep();
            Some(id)
        };
        assert_eq!(pick(Some("small"), &[]).as_deref(), Some("small"));
        // Its only free slot is taken now: the best other candidate.
        assert_eq!(pick(Some("small"), &[]).as_deref(), Some("big"));
        assert_eq!(pick(Some("gone"), &[]).as_deref(), Some("big"));
        assert_eq!(pick(None, &[]).as_deref(), Some("big"));
        executors.upsert(presence("small", 2, 0, &["scripted"]), true);
        assert_eq!(
            pick(Some("small"), &["small".parse().unwrap()]).as_deref(),
            Some("big")
        );
        // It has room but not the provider.
        assert!(
            executors
                .reserve_preferring(
                    ProviderName::ClaudeCode,
                    Some(&"small".parse().unwrap()),
                    &[]
                )
                .is_none()
        );
        // It is draining (a planned restart): the conversation moves on.
        let mut draining = presence("small", 2, 0, &["scripted"]);
        draining.draining = true;
        executors.upsert(draining, true);
        assert_eq!(pick(Some("small"), &[]).as_deref(), Some("big"));
        // A draining executor still offers the provider: not `binary_missing`.
        executors.mark_primed();
        assert_eq!(
            executors.without_provider(ProviderName::Scripted, Duration::ZERO),
            None
        );
    }

    #[test]
    fn a_provider_is_missing_when_live_executors_lack_it_past_the_grace() {
        let grace = Duration::from_secs(10);
        let executors = Executors::new(Duration::from_secs(3600));
        let now = Instant::now();
        let later = now + Duration::from_secs(11);
        executors.upsert(presence("b", 1, 0, &["claude-code"]), true);
        executors.upsert(presence("a", 1, 1, &["opencode"]), true);
        let missing = |at| executors.without_provider_at(ProviderName::Scripted, grace, at);
        assert_eq!(missing(later), None, "presence not loaded yet");
        executors.mark_primed();
        assert_eq!(missing(now), None, "within the start-up grace");
        assert_eq!(
            missing(later),
            Some(vec!["a".parse().unwrap(), "b".parse().unwrap()])
        );
        assert_eq!(
            executors.without_provider_at(ProviderName::ClaudeCode, grace, later),
            None
        );

        // Pretend the cache started long ago, so only withdrawals count from here on.
        executors.state().created = now - Duration::from_secs(3600);
        // A full executor that has the provider: wait for its slot.
        executors.upsert(presence("c", 1, 1, &["scripted"]), true);
        assert_eq!(missing(later), None);
        // It left just now: wait out the grace in case it comes back.
        executors.remove("c");
        assert_eq!(missing(Instant::now()), None);
        assert_eq!(missing(later).map(|ids| ids.len()), Some(2));
        // Same when an executor's new record no longer lists the provider.
        executors.upsert(presence("d", 1, 0, &["scripted"]), true);
        executors.upsert(presence("d", 1, 0, &["opencode"]), true);
        assert_eq!(missing(Instant::now()), None);
        assert_eq!(missing(later).map(|ids| ids.len()), Some(3));
    }

    #[test]
    fn no_live_executor_means_waiting_not_missing() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.mark_primed();
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(
            executors.without_provider_at(ProviderName::Scripted, Duration::ZERO, later),
            None
        );
        let mut old = presence("a", 2, 0, &["claude-code"]);
        old.heartbeat_at = chrono::Utc::now() - chrono::Duration::seconds(60);
        executors.upsert(old, false);
        assert_eq!(
            executors.without_provider_at(ProviderName::Scripted, Duration::ZERO, later),
            None,
            "a stale record is not a live executor"
        );
    }

    #[test]
    fn aliases_in_presence_match_the_canonical_provider() {
        let executors = Executors::new(Duration::from_secs(15));
        executors.upsert(presence("a", 1, 0, &["codex-cli"]), true);
        assert_eq!(executors.candidates(ProviderName::CodexAppServer), ["a"]);
    }
}
