//! The status projection: a durable pull consumer (`control-plane-projector`) over
//! every run's events that keeps `runs` (and `human_loop_requests`) in Postgres up to
//! date.
//!
//! Each fetched batch is applied in one transaction and acknowledged after the commit,
//! so an event is never acknowledged before it is stored. Every update is guarded by
//! the event's `seq` (see `store::runs::RunChanges`), which makes redelivery harmless.
//! Garbage is terminated with a warning; an event Postgres rejects is isolated and
//! terminated with an error log; while Postgres is unreachable the batch is retried in
//! place (keeping its order) with in-progress acks, and handed back with a delayed nak
//! on shutdown or after a long outage.
//!
//! Each time it opens the consumer (at start-up, after an outage) the projector first
//! catches up: it reads the events the consumer handed out but nobody acknowledged —
//! after a crash, the dead process's — straight from the stream and applies them. The
//! server would hand them out again only when their ack wait (30 s) ran out, and their
//! runs' status would lag that long; applied twice, they change nothing.

use crate::store::{self, StoreError, clean_json, clean_text};
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::jetstream::{self, AckKind, Message};
use backon::{BackoffBuilder as _, ExponentialBuilder};
use futures::{FutureExt as _, StreamExt as _};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use switchyard_contracts::event::RunEventHeader;
use switchyard_contracts::{RunEvent, RunEventKind, RunId, RunStatus, subjects};
use switchyard_platform::metrics::Metrics;
use switchyard_platform::nats::{self, Resources};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Messages applied per transaction at most. Under load every round trip to Postgres
/// waits its turn for the CPU and the WAL flush whatever its size, so the projection
/// keeps up only when each one carries many events (with 64-event batches it fell
/// hundreds of thousands of events behind a 1,000-runs-in-flight load).
const BATCH: usize = 1024;
/// How long a batch is retried in place while Postgres is unreachable before it is
/// handed back to the stream (so another control-plane may take it).
const MAX_IN_PLACE_RETRY: Duration = Duration::from_secs(30);
/// Redelivery delay of a batch handed back.
const NAK_DELAY: Duration = Duration::from_secs(2);
/// Events read at most when catching up: twice what the consumer lets a process hold
/// unacknowledged (`max_ack_pending`), leaving room for acks out of order. Older ones
/// come back after the ack wait, as before.
const MAX_CATCH_UP: u64 = 8192;
/// Direct reads in flight at once while catching up.
const CATCH_UP_READS: usize = 32;
/// Longest status detail stored (a human-loop prompt can be long).
const MAX_DETAIL_CHARS: usize = 1_000;

/// What one event changes.
#[derive(Debug, Clone)]
enum Update {
    Lifecycle {
        projection: Box<store::runs::Projection>,
        human_loop: Option<HumanLoopChange>,
    },
    Bump(store::runs::SeqBump),
}

#[derive(Debug, Clone)]
enum HumanLoopChange {
    Requested(store::human_loop::Requested),
    Resolved(store::human_loop::Resolved),
    /// The run ended: whatever is still pending will never be answered.
    RunEnded(chrono::DateTime<chrono::Utc>),
}

impl Update {
    fn run_id(&self) -> RunId {
        match self {
            Update::Lifecycle { projection, .. } => projection.run_id,
            Update::Bump(bump) => bump.run_id,
        }
    }

    fn seq(&self) -> i64 {
        match self {
            Update::Lifecycle { projection, .. } => projection.seq,
            Update::Bump(bump) => bump.seq,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error("cannot read the unacknowledged events: {0}")]
    Nats(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("cannot open the projector consumer: {0}")]
    Open(String),
    #[error("the consumer's message stream failed: {0}")]
    Messages(String),
    #[error("the consumer's message stream ended")]
    Ended,
}

/// Projects through `pool`, which must be the projector's own (one connection): its
/// prepared statements are refreshed on that connection.
pub(crate) struct Projector {
    js: jetstream::Context,
    pool: PgPool,
    metrics: Metrics,
    /// Batches applied (wrapping): every `REFRESH_PLANS_EVERY`th refreshes the plans.
    batches_applied: AtomicU32,
}

impl Projector {
    pub(crate) fn new(js: jetstream::Context, pool: PgPool, metrics: Metrics) -> Self {
        metrics.describe_counter(
            RUNS_STARTED,
            "Runs that started on an executor, by provider (each run once).",
        );
        metrics.describe_counter(
            RUNS_FINISHED,
            "Runs that ended, by provider, final status and failure reason (`none` when it did not fail; each run once).",
        );
        Self {
            js,
            pool,
            metrics,
            batches_applied: AtomicU32::new(0),
        }
    }

    /// Projects until `shutdown`; reconnects after NATS or Postgres outages.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut delays = reconnect_delays();
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "projector lost its consumer; reopening");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::debug!("projector stopped");
    }

    async fn open(&self) -> Result<PullConsumer, ConsumeError> {
        let open = async {
            let stream = self
                .js
                .get_stream(subjects::RUN_EVENTS_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .get_consumer::<jetstream::consumer::pull::Config>(
                    subjects::RUN_EVENTS_PROJECTOR_CONSUMER,
                )
                .await
                .map_err(|e| e.to_string())
        };
        match open.await {
            Ok(consumer) => Ok(consumer),
            Err(first) => {
                // Deleted by an operator or lost with the server's store: provision again.
                tracing::debug!(error = %first, "projector consumer missing; provisioning");
                let resources = Resources {
                    run_events: true,
                    projector_consumer: true,
                    ..Default::default()
                };
                nats::provision(&self.js, resources)
                    .await
                    .map_err(|e| ConsumeError::Open(e.to_string()))?;
                let stream = self
                    .js
                    .get_stream(subjects::RUN_EVENTS_STREAM)
                    .await
                    .map_err(|e| ConsumeError::Open(e.to_string()))?;
                stream
                    .get_consumer(subjects::RUN_EVENTS_PROJECTOR_CONSUMER)
                    .await
                    .map_err(|e| ConsumeError::Open(e.to_string()))
            }
        }
    }

    async fn consume(&self, shutdown: &CancellationToken) -> Result<(), ConsumeError> {
        let mut consumer = self.open().await?;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = self.catch_up(&mut consumer) => {}
        }
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| ConsumeError::Messages(e.to_string()))?;
        let mut missed_heartbeats = 0;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let first = match next {
                None => return Err(ConsumeError::Ended),
                Some(Ok(message)) => message,
                // A NATS restart or network blip: the stream pulls again once the
                // connection is back. Several in a row: start over with a new stream.
                Some(Err(e)) if matches!(e.kind(), MessagesErrorKind::MissingHeartbeat) => {
                    missed_heartbeats += 1;
                    if missed_heartbeats > 3 {
                        return Err(ConsumeError::Messages(e.to_string()));
                    }
                    tracing::debug!(error = %e, "projector missed a heartbeat");
                    continue;
                }
                Some(Err(e)) => return Err(ConsumeError::Messages(e.to_string())),
            };
            missed_heartbeats = 0;
            // Take whatever else is already buffered (without waiting) so a burst is
            // applied in one transaction while a lone event is applied at once. Out of
            // tokio's cooperative budget: within it every message costs two units and
            // the budget (128) ends the batch at 64, however many are waiting.
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match tokio::task::unconstrained(messages.next()).now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(e))) => {
                        tracing::debug!(error = %e, "projector stream error while batching");
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            self.project(batch, shutdown).await;
        }
    }

    /// Applies what the consumer handed out and nobody acknowledged yet (see the module
    /// doc). Best effort: whatever it cannot apply comes back after the ack wait.
    async fn catch_up(&self, consumer: &mut PullConsumer) {
        match self.try_catch_up(consumer).await {
            Ok(0) => {}
            Ok(applied) => {
                tracing::info!(
                    events = applied,
                    "projector caught up with unacknowledged events"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "projector could not catch up; the unacknowledged events come back after the ack wait");
            }
        }
    }

    async fn try_catch_up(&self, consumer: &mut PullConsumer) -> Result<usize, CatchUpError> {
        let info = consumer
            .info()
            .await
            .map_err(|e| CatchUpError::Nats(e.to_string()))?;
        if info.num_ack_pending == 0 {
            return Ok(0);
        }
        // Everything unacknowledged lies between the ack floor and the last delivery.
        let last = info.delivered.stream_sequence;
        let first = (info.ack_floor.stream_sequence + 1)
            .max(last.saturating_sub(MAX_CATCH_UP - 1))
            .max(1);
        let stream = self
            .js
            .get_stream(subjects::RUN_EVENTS_STREAM)
            .await
            .map_err(|e| CatchUpError::Nats(e.to_string()))?;
        let mut applied = 0;
        let mut start = first;
        while start <= last {
            let end = last.min(start.saturating_add(BATCH as u64 - 1));
            let reads: Vec<_> = futures::stream::iter(start..=end)
                .map(|seq| {
                    let stream = &stream;
                    async move { (seq, stream.direct_get(seq).await) }
                })
                .buffered(CATCH_UP_READS)
                .collect()
                .await;
            let mut updates = Vec::with_capacity(reads.len());
            for (seq, read) in reads {
                match read {
                    Ok(message) => {
                        match decode_stored(message.subject.as_str(), seq, &message.payload) {
                            Ok(update) => updates.push(update),
                            // Garbage is terminated when it comes back.
                            Err(problem) => tracing::debug!(
                                seq,
                                problem,
                                "skipping a stored message that is not a run event"
                            ),
                        }
                    }
                    // Removed by retention (or a gap): nothing to apply.
                    Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {}
                    Err(e) => return Err(CatchUpError::Nats(e.to_string())),
                }
            }
            applied += self.apply_without_acks(&updates).await?;
            start = end + 1;
        }
        Ok(applied)
    }

    /// Applies `updates` as one batch, or one by one when Postgres rejects the batch
    /// (an event it rejects is left for its redelivery, which terminates it).
    async fn apply_without_acks(&self, updates: &[Update]) -> Result<usize, CatchUpError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let all: Vec<&Update> = updates.iter().collect();
        match self.apply(&all).await {
            Ok(()) => return Ok(updates.len()),
            Err(e) if e.is_unavailable() => return Err(CatchUpError::Store(e)),
            Err(_) => {}
        }
        let mut applied = 0;
        for update in updates {
            match self.apply(&[update]).await {
                Ok(()) => applied += 1,
                Err(e) if e.is_unavailable() => return Err(CatchUpError::Store(e)),
                Err(e) => {
                    tracing::debug!(run_id = %update.run_id(), error = %e, "catch-up skips an event Postgres rejects");
                }
            }
        }
        Ok(applied)
    }

    async fn project(&self, batch: Vec<Message>, shutdown: &CancellationToken) {
        let mut items = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(&message) {
                Ok(update) => items.push((update, message)),
                Err(problem) => {
                    tracing::warn!(subject = %message.subject, problem, "not a run event; dropping it");
                    ack(&message, AckKind::Term).await;
                }
            }
        }
        if items.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut delays = reconnect_delays();
        loop {
            let updates: Vec<&Update> = items.iter().map(|(u, _)| u).collect();
            match self.apply(&updates).await {
                Ok(()) => {
                    for (_, message) in &items {
                        ack(message, AckKind::Ack).await;
                    }
                    return;
                }
                Err(e) if e.is_unavailable() => {
                    if shutdown.is_cancelled() || started.elapsed() > MAX_IN_PLACE_RETRY {
                        tracing::warn!(error = %e, events = items.len(), "Postgres unavailable; handing the batch back");
                        for (_, message) in &items {
                            ack(message, AckKind::Nak(Some(NAK_DELAY))).await;
                        }
                        return;
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Postgres unavailable; retrying the batch");
                    // Keep the batch ours while we wait (the ack wait is 30 s).
                    for (_, message) in &items {
                        ack(message, AckKind::Progress).await;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Postgres rejected a batch; applying its events one by one");
                    self.project_one_by_one(items).await;
                    return;
                }
            }
        }
    }

    /// Isolates the event(s) Postgres rejects so the rest of the batch is not held up.
    async fn project_one_by_one(&self, items: Vec<(Update, Message)>) {
        for (update, message) in items {
            match self.apply(&[&update]).await {
                Ok(()) => ack(&message, AckKind::Ack).await,
                Err(e) if e.is_unavailable() => {
                    ack(&message, AckKind::Nak(Some(NAK_DELAY))).await;
                }
                Err(e) => {
                    tracing::error!(run_id = %update.run_id(), error = %e, "event cannot be projected; dropping it");
                    ack(&message, AckKind::Term).await;
                }
            }
        }
    }

    /// Applies a batch: each run's events folded in `seq` order into one change, all
    /// runs in one statement. A batch that opens or resolves human-loop requests also
    /// writes those, in stream order, in the same transaction; a batch without them (the
    /// common case) is one statement, which matters when the machine is busy and every
    /// round trip to Postgres waits its turn.
    async fn apply(&self, updates: &[&Update]) -> Result<(), StoreError> {
        let applied = self.batches_applied.fetch_add(1, Ordering::Relaxed);
        if applied
            .wrapping_add(1)
            .is_multiple_of(store::runs::REFRESH_PLANS_EVERY)
        {
            store::runs::refresh_plans(&mut *self.pool.acquire().await?).await?;
        }
        let mut by_run: Vec<&Update> = updates.to_vec();
        // A stable row order keeps two projectors from deadlocking on the same runs.
        by_run.sort_by_key(|u| (u.run_id(), u.seq()));
        let mut changes: Vec<store::runs::RunChanges> = Vec::new();
        for update in by_run {
            let run_id = update.run_id();
            if changes.last().is_none_or(|c| c.run_id != run_id) {
                changes.push(store::runs::RunChanges::new(run_id));
            }
            if let Some(change) = changes.last_mut() {
                match update {
                    Update::Lifecycle { projection, .. } => change.add(projection),
                    Update::Bump(bump) => change.bump(bump),
                }
            }
        }
        let mut requests = Vec::new();
        let mut ended = Vec::new();
        for update in updates {
            if let Update::Lifecycle {
                projection,
                human_loop: Some(change),
            } = update
            {
                match change {
                    HumanLoopChange::RunEnded(at) => ended.push((projection.run_id, *at)),
                    other => requests.push((projection.run_id, other)),
                }
            }
        }
        if requests.is_empty() {
            let applied = store::runs::apply_changes(&self.pool, &changes, &ended).await?;
            self.count(&applied);
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let applied = store::runs::apply_changes(&mut *tx, &changes, &[]).await?;
        let known: HashSet<RunId> = applied.iter().map(|a| a.run_id).collect();
        for (run_id, change) in requests {
            if !known.contains(&run_id) {
                continue;
            }
            match change {
                HumanLoopChange::Requested(r) => store::human_loop::requested(&mut tx, r).await?,
                HumanLoopChange::Resolved(r) => store::human_loop::resolved(&mut tx, r).await?,
                HumanLoopChange::RunEnded(_) => {}
            }
        }
        // After the requests: a run's end resolves what it still had pending, including
        // a request opened earlier in this batch.
        let ended: Vec<_> = ended
            .into_iter()
            .filter(|(id, _)| known.contains(id))
            .collect();
        store::human_loop::runs_ended(&mut tx, &ended).await?;
        tx.commit().await?;
        self.count(&applied);
        Ok(())
    }

    /// Counts the runs a committed batch started or ended. The store says which ones
    /// this batch moved, so a redelivered or caught-up event is not counted again.
    fn count(&self, applied: &[store::runs::Applied]) {
        for run in applied {
            let provider = bounded(&run.provider);
            if run.started {
                self.metrics
                    .counter(RUNS_STARTED, &[("provider", provider)])
                    .increment(1);
            }
            if run.finished {
                let status = RunStatus::from(run.status);
                let reason = run.failure_reason.as_deref().map_or("none", bounded);
                self.metrics
                    .counter(
                        RUNS_FINISHED,
                        &[
                            ("provider", provider),
                            ("status", status.as_str()),
                            ("reason", reason),
                        ],
                    )
                    .increment(1);
            }
        }
    }
}

/// `switchyard_runs_started_total{provider}`.
const RUNS_STARTED: &str = "switchyard_runs_started_total";
/// `switchyard_runs_finished_total{provider,status,reason}`.
const RUNS_FINISHED: &str = "switchyard_runs_finished_total";

/// A label value from a column the control-plane wrote from a closed set (provider
/// names, failure reasons); anything unexpected becomes `other` so that a label never
/// grows without bound.
fn bounded(value: &str) -> &str {
    let plain = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b':');
    if plain { value } else { "other" }
}

fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

async fn ack(message: &Message, kind: AckKind) {
    // A lost ack only means a redelivery, which the seq guard makes harmless.
    if let Err(e) = message.ack_with(kind).await {
        tracing::debug!(error = %e, "could not acknowledge an event");
    }
}

fn is_lifecycle(event_type: &str) -> bool {
    matches!(
        event_type,
        "run.queued"
            | "run.claimed"
            | "run.dispatched"
            | "run.started"
            | "run.completed"
            | "human_loop.requested"
            | "human_loop.resolved"
    )
}

/// Reads what the projection needs from one message; `Err` names why it is garbage.
fn decode(message: &Message) -> Result<Update, String> {
    let stream_seq = message
        .info()
        .map_err(|e| format!("no delivery info: {e}"))?
        .stream_sequence;
    decode_stored(message.subject.as_str(), stream_seq, &message.payload)
}

/// [`decode`] for a message read from the stream by its sequence.
fn decode_stored(subject: &str, stream_seq: u64, payload: &[u8]) -> Result<Update, String> {
    let header: RunEventHeader =
        serde_json::from_slice(payload).map_err(|e| format!("not a run event envelope: {e}"))?;
    decode_event(subject, stream_seq, payload, header)
}

fn decode_event(
    subject: &str,
    stream_seq: u64,
    payload: &[u8],
    header: RunEventHeader,
) -> Result<Update, String> {
    // An event filed under another run's subject would corrupt that run's record.
    if subject != subjects::run_events(&header.run_id) {
        return Err(format!(
            "runId {} does not match the subject",
            header.run_id
        ));
    }
    let seq = i64::try_from(header.seq)
        .ok()
        .filter(|s| *s >= 1)
        .ok_or_else(|| format!("seq {} is out of range", header.seq))?;
    let stream_seq = store::to_bigint(stream_seq);
    if !is_lifecycle(&header.event_type) {
        return Ok(Update::Bump(store::runs::SeqBump {
            run_id: header.run_id,
            seq,
            first_stream_seq: (seq == 1).then_some(stream_seq),
        }));
    }
    let event: RunEvent = serde_json::from_slice(payload)
        .map_err(|e| format!("{} event does not decode: {e}", header.event_type))?;
    Ok(lifecycle(event, seq, stream_seq))
}

fn lifecycle(event: RunEvent, seq: i64, stream_seq: i64) -> Update {
    let mut p = store::runs::Projection {
        run_id: event.run_id,
        seq,
        stream_seq,
        ..Default::default()
    };
    let mut human_loop = None;
    match event.kind {
        RunEventKind::RunQueued(_) => p.status = Some(RunStatus::Queued),
        RunEventKind::RunClaimed(claimed) => {
            p.status = Some(RunStatus::Claimed);
            p.status_detail = Some(detail(&format!(
                "claimed by worker {} (attempt {})",
                claimed.worker_id, claimed.attempt
            )));
            p.worker_id = Some(claimed.worker_id.clone());
            p.claimed_at = Some(event.time);
        }
        RunEventKind::RunDispatched(dispatched) => {
            p.status = Some(RunStatus::Dispatched);
            p.status_detail = Some(detail(&format!(
                "dispatched to executor {}",
                dispatched.executor_id
            )));
            p.executor_id = Some(dispatched.executor_id.clone());
        }
        RunEventKind::RunStarted(_) => {
            p.status = Some(RunStatus::Running);
            p.started_at = Some(event.time);
        }
        RunEventKind::RunCompleted(completed) => {
            p.status = Some(RunStatus::from(completed.status));
            p.status_detail = completed.detail.as_deref().map(detail);
            p.completed_at = Some(event.time);
            human_loop = Some(HumanLoopChange::RunEnded(event.time));
            p.failure_reason = completed.reason.map(|r| r.as_str().to_owned());
            p.failure_detail = completed.detail.as_deref().map(clean_text);
            // Evidence that cannot be serialised is logged (in `json`) and left out: the
            // run's end is projected all the same.
            if !completed.evidence.is_empty() {
                p.evidence = crate::json::to_value("a run's evidence", &completed.evidence)
                    .ok()
                    .map(clean_json);
            }
        }
        RunEventKind::HumanLoopRequested(requested) => {
            p.status = Some(RunStatus::WaitingForHuman);
            p.status_detail = Some(detail(&requested.prompt));
            human_loop = Some(HumanLoopChange::Requested(store::human_loop::Requested {
                run_id: event.run_id,
                request_id: requested.request_id.clone(),
                kind: wire_name(&requested.kind),
                prompt: clean_text(&requested.prompt),
                details: clean_json(requested.details),
                requested_at: event.time,
            }));
        }
        RunEventKind::HumanLoopResolved(resolved) => {
            p.status = Some(RunStatus::Running);
            human_loop = Some(HumanLoopChange::Resolved(store::human_loop::Resolved {
                run_id: event.run_id,
                request_id: resolved.request_id.clone(),
                decision: resolved.decision,
                resolved_by: resolved.resolved_by,
                resolved_at: event.time,
            }));
        }
        // Only lifecycle types reach here (see `is_lifecycle`); anything else just
        // advances the seq.
        _ => {}
    }
    Update::Lifecycle {
        projection: Box::new(p),
        human_loop,
    }
}

fn detail(text: &str) -> String {
    clean_text(&text.chars().take(MAX_DETAIL_CHARS).collect::<String>())
}

/// The serde name of a unit enum variant (`command`, `file_change` …). One that is not
/// a string is logged and stored empty, as a kind not known yet is shown.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match crate::json::to_value("a human-loop kind", value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => {
            tracing::error!(failure = "serialization", what = "a human-loop kind", value = %other, "a human-loop kind is not a name");
            String::new()
        }
        // Logged in `json`.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contracts::FailureReason;
    use switchyard_contracts::event::{Evidence, RunCompleted};

    fn decode_json(subject: &str, json: &[u8]) -> Result<Update, String> {
        let header: RunEventHeader = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        decode_event(subject, 7, json, header)
    }

    #[test]
    fn garbage_and_mismatched_subjects_are_rejected() {
        let run = RunId::now_v7();
        assert!(decode_json("runs.events.x", b"not json").is_err());
        let event = RunEvent::new(
            run,
            1,
            RunEventKind::RunCompleted(RunCompleted::succeeded()),
        );
        let json = serde_json::to_vec(&event).unwrap();
        assert!(decode_json("runs.events.x", &json).is_err());
        assert!(decode_json(&subjects::run_events(&run), &json).is_ok());
        let bad_seq = format!(r#"{{"runId":"{run}","seq":0,"type":"usage","data":{{}}}}"#);
        assert!(decode_json(&subjects::run_events(&run), bad_seq.as_bytes()).is_err());
        let broken_lifecycle =
            format!(r#"{{"runId":"{run}","seq":2,"type":"run.claimed","data":{{}}}}"#);
        assert!(decode_json(&subjects::run_events(&run), broken_lifecycle.as_bytes()).is_err());
    }

    #[test]
    fn other_types_only_bump_the_seq_and_remember_the_first_stream_seq() {
        let run = RunId::now_v7();
        let json =
            format!(r#"{{"runId":"{run}","seq":1,"type":"some.future.type","data":{{"x":1}}}}"#);
        match decode_json(&subjects::run_events(&run), json.as_bytes()).unwrap() {
            Update::Bump(b) => {
                assert_eq!((b.seq, b.first_stream_seq), (1, Some(7)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_failed_completion_carries_reason_detail_and_evidence() {
        let run = RunId::now_v7();
        let mut completed = RunCompleted::failed(FailureReason::AuthMissing, "no key\0");
        completed.evidence = Evidence {
            stderr_tail: vec!["boom\0".into()],
            ..Default::default()
        };
        let Update::Lifecycle { projection, .. } = lifecycle(
            RunEvent::new(run, 5, RunEventKind::RunCompleted(completed)),
            5,
            9,
        ) else {
            panic!("run.completed is a lifecycle event");
        };
        assert_eq!(projection.status, Some(RunStatus::Failed));
        assert_eq!(projection.failure_reason.as_deref(), Some("auth_missing"));
        assert_eq!(projection.failure_detail.as_deref(), Some("no key\u{FFFD}"));
        assert_eq!(
            projection.evidence.unwrap()["stderrTail"][0],
            "boom\u{FFFD}"
        );
    }
}
