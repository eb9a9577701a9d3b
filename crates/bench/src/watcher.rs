//! Follows every run's events from the outside, the way an operator would: one ordered
//! consumer on `runs.events.>` (new events only), recording per run the last event,
//! when it started and when and how it completed. The load phases count completions
//! here rather than through the API, so counting costs the platform nothing but one
//! more JetStream consumer.

use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use switchyard_contracts::event::RunEventHeader;
use switchyard_contracts::subjects;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Shortest time between two checks of a waiter's condition.
const CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// What the watcher knows about one run.
#[derive(Debug, Clone)]
pub(crate) struct RunProgress {
    /// When the watcher saw the run's first event (after it started watching).
    pub(crate) first_seen: Instant,
    pub(crate) last_seq: u64,
    pub(crate) last_type: String,
    pub(crate) started_at: Option<Instant>,
    /// When `run.completed` was seen, and its `data.status`.
    pub(crate) completed: Option<(Instant, String)>,
}

#[derive(Default)]
struct State {
    runs: HashMap<Uuid, RunProgress>,
    events: u64,
    /// Given one permit per completed run (the throughput phase bounds the runs in flight
    /// with it).
    completion_permits: Option<Arc<Semaphore>>,
}

/// The running watcher. Dropping it stops the consumer.
pub(crate) struct RunWatcher {
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    stop: CancellationToken,
}

impl Drop for RunWatcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RunWatcher {
    pub(crate) async fn start(client: async_nats::Client) -> anyhow::Result<Self> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(subjects::RUN_EVENTS_STREAM).await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subjects::RUN_EVENTS_ALL.to_owned(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, changed) = watch::channel(0u64);
        let stop = CancellationToken::new();
        let task_state = state.clone();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = task_stop.cancelled() => return,
                    message = messages.next() => message,
                };
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "run watcher: consumer error");
                        continue;
                    }
                    None => return,
                };
                let Ok(header) = serde_json::from_slice::<RunEventHeader>(&message.payload) else {
                    continue;
                };
                let now = Instant::now();
                let status = header
                    .is_terminal()
                    .then(|| completion_status(&message.payload));
                let count = {
                    let mut state = task_state.lock().unwrap_or_else(PoisonError::into_inner);
                    state.events += 1;
                    let progress = state.runs.entry(header.run_id).or_insert(RunProgress {
                        first_seen: now,
                        last_seq: 0,
                        last_type: String::new(),
                        started_at: None,
                        completed: None,
                    });
                    progress.last_seq = header.seq;
                    if header.event_type == "run.started" {
                        progress.started_at = Some(now);
                    }
                    progress.last_type = header.event_type;
                    if let Some(status) = status {
                        progress.completed = Some((now, status));
                        if let Some(permits) = &state.completion_permits {
                            permits.add_permits(1);
                        }
                    }
                    state.events
                };
                tx.send_replace(count);
            }
        });
        Ok(Self {
            state,
            changed,
            stop,
        })
    }

    /// From now on, every completed run adds one permit to `permits`.
    pub(crate) fn release_on_completion(&self, permits: Option<Arc<Semaphore>>) {
        self.lock().completion_permits = permits;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn progress(&self, run_id: Uuid) -> Option<RunProgress> {
        self.lock().runs.get(&run_id).cloned()
    }

    /// Applies `f` to the watcher's view of every run.
    pub(crate) fn with_runs<T>(&self, f: impl FnOnce(&HashMap<Uuid, RunProgress>) -> T) -> T {
        f(&self.lock().runs)
    }

    /// Waits until `done` holds for the watcher's view, or `timeout` passes; returns
    /// whether it held. `done` is checked after new events, at most every
    /// [`CHECK_INTERVAL`], so a waiter over thousands of runs does not compete with the
    /// platform for CPU.
    pub(crate) async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&HashMap<Uuid, RunProgress>) -> bool,
    ) -> bool {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.lock().runs) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {
                    tokio::time::sleep_until(
                        deadline.min(tokio::time::Instant::now() + CHECK_INTERVAL),
                    )
                    .await;
                }
                // The consumer task ended or time is up: one last look.
                Ok(Err(_)) | Err(_) => return done(&self.lock().runs),
            }
        }
    }

    /// Waits until every run in `ids` has completed.
    pub(crate) async fn wait_completed(&self, ids: &[Uuid], timeout: Duration) -> bool {
        self.wait_all(ids, timeout, |p| p.completed.is_some()).await
    }

    /// Waits until `done` holds for every run in `ids`.
    pub(crate) async fn wait_all(
        &self,
        ids: &[Uuid],
        timeout: Duration,
        done: impl Fn(&RunProgress) -> bool,
    ) -> bool {
        // Runs that are done stay done, so only the others are looked at again.
        let mut pending = ids.to_vec();
        self.wait_until(timeout, |runs| {
            pending.retain(|id| !runs.get(id).is_some_and(&done));
            pending.is_empty()
        })
        .await
    }
}

/// `data.status` of a `run.completed` event, or `unknown`.
fn completion_status(payload: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|event| event["data"]["status"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
