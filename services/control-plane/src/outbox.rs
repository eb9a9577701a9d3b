//! Publishing accepted runs: `run.queued` at the head of the run's event log, then the
//! run command on the work queue, then the outbox entry is deleted. The sweeper
//! republishes entries whose publication did not finish (a crash between commit and
//! publish, NATS down), so an accepted run is never lost.
//!
//! The delete is off the start request's path: the [`Cleaner`] deletes published
//! entries in the background, many per statement. An entry whose delete is lost (a
//! crash, a full queue) is republished by the sweeper, which is harmless (below).
//!
//! Every step is idempotent: `run.queued` is appended at position (1, 0), so a second
//! append is rejected as fenced (or deduplicated by its message id), and the command
//! carries `Nats-Msg-Id = <run_id>`, deduplicated by RUN_COMMANDS' 10-minute window.

use crate::store::outbox::OutboxEntry;
use crate::store::{self, StoreError};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::{RunEventKind, subjects};
use switchyard_platform::events::{EventLog, EventLogError};
use switchyard_platform::trace::TRACEPARENT;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// Entries republished per sweep transaction.
const SWEEP_BATCH: i64 = 100;
/// Published entries waiting for their delete; past this the sweeper gets the rest.
const CLEAN_QUEUE: usize = 8192;
/// Entries deleted per statement.
const CLEAN_BATCH: usize = 512;
/// How long the cleaner gathers entries before a delete of fewer than [`CLEAN_BATCH`]
/// (at most half the sweep interval: the sweeper takes entries two intervals old).
const MAX_CLEAN_LINGER: Duration = Duration::from_millis(100);

/// Deletes published outbox entries in the background, in batches. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Cleaner {
    tx: mpsc::Sender<i64>,
}

impl Cleaner {
    /// The handle and the task to spawn; the task deletes what is queued until
    /// `shutdown`, then once more what was queued by then. `sweep_interval` is the
    /// sweeper's, whose work the cleaner's must not overlap.
    pub(crate) fn new(
        pool: PgPool,
        sweep_interval: Duration,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(CLEAN_QUEUE);
        let linger = MAX_CLEAN_LINGER.min(sweep_interval / 2);
        (Self { tx }, clean_loop(pool, rx, linger, shutdown))
    }

    /// Queues the delete of a published entry. Never waits: a full queue or a stopped
    /// task leaves the entry to the sweeper.
    pub(crate) fn published(&self, outbox_id: i64) {
        if self.tx.try_send(outbox_id).is_err() {
            tracing::debug!(
                outbox_id,
                "outbox cleaner is busy or stopped; the sweeper removes the entry"
            );
        }
    }
}

async fn clean_loop(
    pool: PgPool,
    mut rx: mpsc::Receiver<i64>,
    linger: Duration,
    shutdown: CancellationToken,
) {
    let mut ids = Vec::with_capacity(CLEAN_BATCH);
    loop {
        let received = tokio::select! {
            biased;
            n = rx.recv_many(&mut ids, CLEAN_BATCH) => n,
            () = shutdown.cancelled() => {
                rx.close();
                while let Some(id) = rx.recv().await {
                    ids.push(id);
                }
                delete(&pool, &mut ids).await;
                return;
            }
        };
        if received == 0 {
            return;
        }
        if ids.len() < CLEAN_BATCH {
            // Under a light load every start would cost a delete (a commit) of its own,
            // made while its run's first events go out; gathering for a moment makes it
            // one commit for the starts of that moment.
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(linger) => {}
            }
            while let Ok(id) = rx.try_recv() {
                ids.push(id);
            }
        }
        delete(&pool, &mut ids).await;
    }
}

async fn delete(pool: &PgPool, ids: &mut Vec<i64>) {
    for chunk in ids.chunks(CLEAN_BATCH) {
        if let Err(e) = store::outbox::delete_many(pool, chunk).await {
            // Harmless: the sweeper republishes them, and both streams deduplicate.
            tracing::warn!(error = %e, entries = chunk.len(), "could not delete published outbox entries");
        }
    }
    ids.clear();
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("could not append run.queued: {0}")]
    Queued(#[source] EventLogError),
    #[error("could not publish the run command: {0}")]
    Command(#[source] jetstream::context::PublishError),
    #[error("could not encode the run command: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Publishes outbox entries.
pub(crate) struct Publisher {
    js: jetstream::Context,
    events: EventLog,
}

impl Publisher {
    pub(crate) fn new(js: jetstream::Context, events: EventLog) -> Self {
        Self { js, events }
    }

    /// `run.queued` first, so that whoever reads the command finds the run's history
    /// started; then the command, acknowledged by the stream.
    pub(crate) async fn publish(&self, entry: &OutboxEntry) -> Result<(), PublishError> {
        let run_id = entry.run_id;
        let mut position = EventPosition::EMPTY;
        match self
            .events
            .append(
                run_id,
                &mut position,
                RunEventKind::RunQueued(entry.queued.clone()),
            )
            .await
        {
            Ok(_) => {}
            // Already appended by an earlier attempt, or the run was stopped before it
            // was published (its history starts with run.completed): either way the
            // command still goes out, and the manager drops it if the run is over.
            Err(EventLogError::Fenced { .. }) => {
                tracing::debug!(%run_id, "run.queued was already appended");
            }
            Err(e) => return Err(PublishError::Queued(e)),
        }
        let payload =
            crate::json::to_vec("a run command", &entry.command).map_err(PublishError::Encode)?;
        let mut headers = HeaderMap::new();
        headers.insert(subjects::HEADER_RUN_ID, run_id.to_string().as_str());
        if let Some(trace) = &entry.trace {
            headers.insert(TRACEPARENT, trace.to_string().as_str());
        }
        let message = PublishMessage::build()
            .payload(Bytes::from(payload))
            .headers(headers)
            .message_id(run_id.to_string());
        let ack = self
            .js
            .send_publish(subjects::run_command(&entry.command.provider), message)
            .await
            .map_err(PublishError::Command)?
            .await
            .map_err(PublishError::Command)?;
        tracing::debug!(%run_id, stream_seq = ack.sequence, duplicate = ack.duplicate, "run command published");
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SweepError {
    fn from(e: sqlx::Error) -> Self {
        SweepError::Store(e.into())
    }
}

/// Republishes stale outbox entries every `interval` until `shutdown`.
pub(crate) async fn sweep_loop(
    pool: PgPool,
    publisher: Arc<Publisher>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An entry younger than two intervals is most likely still being published by the
    // request that created it.
    let min_age_ms =
        store::to_bigint(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)).saturating_mul(2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match sweep_once(&pool, &publisher, min_age_ms).await {
            Ok(0) => {}
            Ok(published) => tracing::info!(published, "outbox sweeper republished runs"),
            Err(e) => tracing::warn!(error = %e, "outbox sweep failed; retrying next interval"),
        }
    }
}

/// One pass: lock stale entries (skipping ones another control-plane holds), publish,
/// delete what was published. Stops at the first publish failure: NATS is likely down
/// and the next pass retries.
async fn sweep_once(
    pool: &PgPool,
    publisher: &Publisher,
    min_age_ms: i64,
) -> Result<usize, SweepError> {
    let mut tx = pool.begin().await?;
    let entries = store::outbox::lock_stale(&mut tx, min_age_ms, SWEEP_BATCH).await?;
    let mut published = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err((id, e)) => {
                // Left in place for an operator to inspect; it cannot be published.
                tracing::error!(outbox_id = id, error = %e, "outbox entry is corrupt");
                continue;
            }
        };
        let span = tracing::info_span!("outbox_republish", run_id = %entry.run_id);
        match publisher.publish(&entry).instrument(span.clone()).await {
            Ok(()) => published.push(entry.id),
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "republication failed"));
                break;
            }
        }
    }
    store::outbox::delete_many(&mut *tx, &published).await?;
    tx.commit().await?;
    Ok(published.len())
}
