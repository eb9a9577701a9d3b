//! The event sink of one run: the only way a provider (and the supervisor) writes the
//! run's events. Appends are fenced and strictly ordered, and a sink that lost the
//! run — another writer appended, or the log stayed unreachable — refuses every later
//! event, so a zombie never forks the history.
//!
//! Group commit: [`EventSink::emit`] queues the event and returns; one flush task per
//! sink appends what is queued, in order. Events emitted while an append is in flight
//! wait and go out together as the next append (one atomic batch where the log allows
//! it and the batch is large enough to pay for it), so a run is not bound to one
//! acknowledged publish per event. An event emitted while nothing is in flight goes
//! out at once.

use crate::budget::{Exceeded, Limits, Meter, Verdict};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{Diagnostic, DiagnosticLevel};
use switchyard_contracts::{RunEvent, RunEventKind, RunId};
use switchyard_platform::events::{EncodedEvent, EventLog, EventLogError};
use tokio::sync::{MutexGuard, Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// At most this many events, and about this many bytes, go out as one append: the
/// most nats-server takes in one atomic batch (1,000 messages). A run has one append in
/// flight (the next one's expected sequence is only known from this one's ack), so a
/// fast producer's throughput is a batch per round trip (256-event batches gave ~37k
/// events/s in the benchmark, 1,000-event ones 51–57k).
const BATCH_EVENTS: usize = 1000;
const BATCH_BYTES: usize = 1024 * 1024;
/// Smaller batches go out as separate fenced appends: an atomic batch costs the server
/// a fixed amount of work on top of its events (nats-server 2.12.8: in the runs/s
/// benchmark, batches of a few events doubled its CPU per run), which only a larger
/// batch pays back. Under load a run's queue grows and its batches cross this size.
const MIN_ATOMIC_BATCH: usize = 32;
/// Queued events beyond which `emit` waits for the flush to catch up: a provider runs
/// at most one batch ahead of the log (and a run's queue stays small in memory).
const QUEUE_LIMIT: usize = BATCH_EVENTS;

/// Why an event could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EmitError {
    /// The run's history moved on: another writer owns the run now. Stop at once.
    #[error("the run's event log moved on: another writer owns the run")]
    Fenced,
    /// The event log did not accept the event even after retries.
    #[error("the run's event log is unavailable")]
    Unavailable,
    /// The run is being concluded; no more provider events are accepted.
    #[error("the run has ended")]
    RunEnded,
    /// The run went over its budget (see [`crate::budget`]); it is being stopped.
    #[error("the run went over its budget")]
    OverBudget,
}

type OnStored = Box<dyn FnOnce() + Send>;

/// Told about every event the sink queues (but those of
/// [`EventSink::emit_unobserved`]), in the order they are written: the workspace
/// watcher ([`crate::file_changes`]) learns of tool calls this way. Called under the
/// queue's lock, so it must only hand the event on.
pub(crate) trait Observer: Send + Sync + 'static {
    fn see(&self, kind: &RunEventKind);
}

/// Who waits for a queued event to be stored, if anyone.
#[derive(Default)]
struct Waiter {
    done: Option<oneshot::Sender<Result<(), EmitError>>>,
    on_stored: Option<OnStored>,
}

impl Waiter {
    fn stored(self) {
        if let Some(on_stored) = self.on_stored {
            on_stored();
        }
        if let Some(done) = self.done {
            let _ = done.send(Ok(()));
        }
    }

    fn failed(self, reason: EmitError) {
        if let Some(done) = self.done {
            let _ = done.send(Err(reason));
        }
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(RunEventKind, Waiter)>,
    /// A flush task is running; it takes queued events until none are left.
    flushing: bool,
    /// Set by the supervisor before it writes the closing events.
    sealed: bool,
}

struct SinkInner {
    log: EventLog,
    run_id: RunId,
    /// Where the next event goes. Held by whoever appends: the flush task, or the
    /// supervisor through a [`SealedSink`].
    position: tokio::sync::Mutex<EventPosition>,
    queue: Mutex<Queue>,
    /// The flush tasks; [`EventSink::seal`] waits for them, so none outlives the run's
    /// supervisor.
    flushes: TaskTracker,
    /// Woken when queued events were taken (room for more) or the run was lost.
    room: Notify,
    lost: CancellationToken,
    lost_reason: OnceLock<EmitError>,
    /// Counts what the flush task writes against the run's budget.
    meter: Mutex<Meter>,
    /// Set once the run went over its budget; from then on nothing more is written
    /// but the closing events.
    exceeded: OnceLock<Exceeded>,
    over_budget: CancellationToken,
    /// Told about queued events, for the workspace watcher.
    observer: OnceLock<Box<dyn Observer>>,
}

impl SinkInner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses everything still queued: after a loss nothing more is written.
    fn mark_lost(&self, reason: EmitError) {
        let _ = self.lost_reason.set(reason);
        self.lost.cancel();
        let dropped = std::mem::take(&mut self.queue().items);
        for (_, waiter) in dropped {
            waiter.failed(reason);
        }
        self.room.notify_waiters();
    }

    /// Refuses everything still queued: the run went over its budget.
    fn mark_over_budget(&self, exceeded: Exceeded) {
        tracing::warn!(run_id = %self.run_id, limit = exceeded.limit.field(), max = exceeded.max, "the run went over its budget; stopping it");
        let _ = self.exceeded.set(exceeded);
        self.over_budget.cancel();
        let dropped = std::mem::take(&mut self.queue().items);
        for (_, waiter) in dropped {
            waiter.failed(EmitError::OverBudget);
        }
        self.room.notify_waiters();
    }

    /// Takes the next batch off the queue: up to [`BATCH_EVENTS`] events, stopping once
    /// [`BATCH_BYTES`] are reached or the run's budget is spent. `None` (and the flush
    /// ends) when nothing is queued.
    fn next_batch(&self, position: EventPosition) -> Option<(Vec<EncodedEvent>, Vec<Waiter>)> {
        let taken: Vec<_> = {
            let mut queue = self.queue();
            if queue.items.is_empty() {
                queue.flushing = false;
                return None;
            }
            let n = queue.items.len().min(BATCH_EVENTS);
            queue.items.drain(..n).collect()
        };
        self.room.notify_waiters();
        let mut events = Vec::with_capacity(taken.len());
        let mut waiters = Vec::with_capacity(taken.len());
        let mut bytes = 0;
        let mut rest = taken.into_iter();
        let mut exceeded = None;
        {
            let mut meter = self.meter.lock().unwrap_or_else(PoisonError::into_inner);
            for (kind, waiter) in rest.by_ref() {
                let seq = position.next_seq + events.len() as u64;
                let Ok(encoded) = EncodedEvent::new(RunEvent::new(self.run_id, seq, kind)) else {
                    // Logged by the event log; the next event takes this seq.
                    waiter.failed(EmitError::Unavailable);
                    continue;
                };
                match meter.admit(&encoded.event().kind, encoded.size()) {
                    Verdict::Write => {}
                    Verdict::WriteThenStop(over) => exceeded = Some(over),
                    Verdict::Refuse(over) => {
                        waiter.failed(EmitError::OverBudget);
                        exceeded = Some(over);
                        break;
                    }
                }
                bytes += encoded.size();
                events.push(encoded);
                waiters.push(waiter);
                if bytes >= BATCH_BYTES || exceeded.is_some() {
                    break;
                }
            }
        }
        if let Some(exceeded) = exceeded {
            // Nothing after the event that spent the budget is written.
            for (_, waiter) in rest {
                waiter.failed(EmitError::OverBudget);
            }
            self.mark_over_budget(exceeded);
            return Some((events, waiters));
        }
        // Over the byte budget: the remainder goes back to the front, in order.
        let rest: Vec<_> = rest.collect();
        if !rest.is_empty() {
            let mut queue = self.queue();
            for item in rest.into_iter().rev() {
                queue.items.push_front(item);
            }
        }
        Some((events, waiters))
    }

    /// Appends queued events until the queue is empty.
    async fn drain(&self, position: &mut EventPosition) {
        while let Some((events, waiters)) = self.next_batch(*position) {
            if let Some(reason) = self.lost_reason.get() {
                waiters.into_iter().for_each(|w| w.failed(*reason));
                continue;
            }
            let written = if events.len() >= MIN_ATOMIC_BATCH {
                self.write(position, events).await
            } else {
                self.write_each(position, events).await
            };
            match written {
                Ok(()) => waiters.into_iter().for_each(Waiter::stored),
                Err((stored, reason)) => {
                    let mut waiters = waiters.into_iter();
                    waiters.by_ref().take(stored).for_each(Waiter::stored);
                    waiters.for_each(|w| w.failed(reason));
                }
            }
        }
    }

    /// [`SinkInner::write`] one event at a time.
    async fn write_each(
        &self,
        position: &mut EventPosition,
        events: Vec<EncodedEvent>,
    ) -> Result<(), (usize, EmitError)> {
        for (i, event) in events.into_iter().enumerate() {
            self.write(position, vec![event])
                .await
                .map_err(|(stored, reason)| (i + stored, reason))?;
        }
        Ok(())
    }

    /// Appends consecutive events at `position` and advances it. A too-large event is
    /// replaced by a diagnostic saying so: one oversized tool output must not end the
    /// run. On failure: how many of the events are stored, and why the rest are not
    /// (the sink has then lost the run).
    async fn write(
        &self,
        position: &mut EventPosition,
        mut events: Vec<EncodedEvent>,
    ) -> Result<(), (usize, EmitError)> {
        let attempted = *position;
        let mut result = self.log.append_encoded(&events, attempted).await;
        // Each event can be replaced at most once, so this ends.
        for _ in 0..events.len() {
            let Err(EventLogError::TooLarge { size, seq, .. }) = result else {
                break;
            };
            let Some(slot) = events.iter_mut().find(|e| e.event().seq == seq) else {
                break;
            };
            let type_name = slot.event().kind.type_name();
            tracing::warn!(run_id = %self.run_id, event_type = type_name, size, "event too large for the stream; replaced by a diagnostic");
            let diagnostic = RunEventKind::Diagnostic(Diagnostic {
                level: DiagnosticLevel::Warn,
                message: format!(
                    "a {type_name} event of {size} bytes was larger than the event stream allows and was dropped"
                ),
                raw: None,
            });
            result = match EncodedEvent::new(RunEvent::new(self.run_id, seq, diagnostic)) {
                Ok(replacement) => {
                    *slot = replacement;
                    self.log.append_encoded(&events, attempted).await
                }
                Err(error) => Err(error),
            };
        }
        let error = match result {
            Ok(next) => {
                *position = next;
                return Ok(());
            }
            Err(error) => error,
        };
        // A lost ack (and even our own retry, answered "wrong last sequence") looks like
        // a failure: events of ours that the log holds anyway are stored, and the run is
        // still ours.
        let stored = self.stored_anyway(attempted, &events).await;
        if let Some((count, next)) = stored {
            *position = next;
            if count == events.len() {
                tracing::info!(run_id = %self.run_id, %error, "append reported an error, but the events are stored");
                return Ok(());
            }
        }
        let stored = stored.map_or(0, |(count, _)| count);
        let reason = match error {
            EventLogError::Fenced { .. } => {
                tracing::warn!(run_id = %self.run_id, "event append fenced: another writer owns the run");
                EmitError::Fenced
            }
            error => {
                tracing::error!(run_id = %self.run_id, error = %error, "event append failed after retries");
                EmitError::Unavailable
            }
        };
        self.mark_lost(reason);
        Err((stored, reason))
    }

    /// How many of `events` (appended at `attempted`) the log holds: its last event is
    /// byte-for-byte one of them, stored after `attempted`.
    async fn stored_anyway(
        &self,
        attempted: EventPosition,
        events: &[EncodedEvent],
    ) -> Option<(usize, EventPosition)> {
        let last = self.log.last(self.run_id).await.ok()??;
        if last.stream_seq <= attempted.last_stream_seq {
            return None;
        }
        let index = events.iter().position(|e| e.is(&last))?;
        Some((index + 1, last.next_position()))
    }
}

/// After an append error, whether the run's last event is nevertheless the one we
/// tried to write at `attempted` (checked by `is_ours`); then where the next event goes.
pub(crate) async fn stored_anyway(
    log: &EventLog,
    run_id: RunId,
    attempted: EventPosition,
    is_ours: impl FnOnce(&RunEvent) -> bool,
) -> Option<EventPosition> {
    let last = log.last(run_id).await.ok()??;
    if last.header.seq != attempted.next_seq || last.stream_seq <= attempted.last_stream_seq {
        return None;
    }
    let event = last.decode().ok()?;
    is_ours(&event).then(|| last.next_position())
}

/// Cheap to clone; every clone writes to the same run at the same position.
#[derive(Clone)]
pub(crate) struct EventSink {
    inner: Arc<SinkInner>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("run_id", &self.inner.run_id)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink whose next event goes to `position`.
    pub(crate) fn new(log: EventLog, run_id: RunId, position: EventPosition) -> Self {
        Self {
            inner: Arc::new(SinkInner {
                log,
                run_id,
                position: tokio::sync::Mutex::new(position),
                queue: Mutex::new(Queue::default()),
                flushes: TaskTracker::new(),
                room: Notify::new(),
                lost: CancellationToken::new(),
                lost_reason: OnceLock::new(),
                meter: Mutex::new(Meter::new(Limits::NONE)),
                exceeded: OnceLock::new(),
                over_budget: CancellationToken::new(),
                observer: OnceLock::new(),
            }),
        }
    }

    /// Meters the run's events against `limits` from now on.
    pub(crate) fn set_budget(&self, limits: Limits) {
        *self
            .inner
            .meter
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Meter::new(limits);
    }

    /// Completes when the run went over its budget.
    pub(crate) async fn over_budget(&self) {
        self.inner.over_budget.cancelled().await;
    }

    /// What the run went over, if it went over its budget.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.inner.exceeded.get().cloned()
    }

    /// Tells `observer` about every event queued from now on (but those of
    /// [`EventSink::emit_unobserved`]).
    pub(crate) fn observe(&self, observer: impl Observer) {
        let _ = self.inner.observer.set(Box::new(observer));
    }

    /// [`EventSink::emit`] without telling the observer: the watcher's own events.
    pub(crate) async fn emit_unobserved(&self, kind: RunEventKind) -> Result<(), EmitError> {
        self.enqueue(kind, Waiter::default(), false).await
    }

    pub(crate) fn run_id(&self) -> RunId {
        self.inner.run_id
    }

    /// Queues one event after every event emitted before it and returns; it is
    /// appended in order, in a batch with whatever else is queued by then. Waits only
    /// while the queue is full. An error means the event will not be written: the sink
    /// lost the run (a failed append shows on the next `emit` and through
    /// [`EventSink::lost`]) or the run is being concluded.
    pub(crate) async fn emit(&self, kind: RunEventKind) -> Result<(), EmitError> {
        self.enqueue(kind, Waiter::default(), true).await
    }

    /// Like [`EventSink::emit`], but returns only once the event is stored.
    pub(crate) async fn emit_stored(&self, kind: RunEventKind) -> Result<(), EmitError> {
        self.emit_then(kind, || {}).await
    }

    /// Appends one event and returns once it is stored; `on_stored` runs once it is
    /// stored, by the task holding the append position, so always before
    /// [`EventSink::seal`] returns (it may run after later events of the same batch
    /// are stored). The append is done by the
    /// sink's own task: a caller dropped mid-append (an abort after the stop grace)
    /// cannot leave a half-done append whose sequence number the closing event would
    /// then reuse.
    pub(crate) async fn emit_then(
        &self,
        kind: RunEventKind,
        on_stored: impl FnOnce() + Send + 'static,
    ) -> Result<(), EmitError> {
        let (done, stored) = oneshot::channel();
        let waiter = Waiter {
            done: Some(done),
            on_stored: Some(Box::new(on_stored)),
        };
        self.enqueue(kind, waiter, true).await?;
        stored.await.unwrap_or(Err(EmitError::RunEnded))
    }

    async fn enqueue(
        &self,
        kind: RunEventKind,
        waiter: Waiter,
        observed: bool,
    ) -> Result<(), EmitError> {
        let inner = &self.inner;
        let mut item = Some((kind, waiter));
        loop {
            // Registered before the queue is checked, so a wake-up in between is kept.
            let room = inner.room.notified();
            {
                let mut queue = inner.queue();
                if queue.sealed {
                    return Err(EmitError::RunEnded);
                }
                // Under the queue lock: a loss empties the queue after setting the
                // reason, so nothing queued after it can slip through.
                if let Some(reason) = inner.lost_reason.get() {
                    return Err(*reason);
                }
                if inner.exceeded.get().is_some() {
                    return Err(EmitError::OverBudget);
                }
                if queue.items.len() < QUEUE_LIMIT {
                    if let Some(item) = item.take() {
                        // Under the queue lock, so the observer sees events in the
                        // order they are written.
                        if observed && let Some(observer) = inner.observer.get() {
                            observer.see(&item.0);
                        }
                        queue.items.push_back(item);
                    }
                    if !queue.flushing {
                        queue.flushing = true;
                        let flusher = inner.clone();
                        inner.flushes.spawn(
                            async move {
                                let mut position = flusher.position.lock().await;
                                flusher.drain(&mut position).await;
                            }
                            .in_current_span(),
                        );
                    }
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Completes when the sink lost the run (fenced or log unavailable).
    pub(crate) async fn lost(&self) {
        self.inner.lost.cancelled().await;
    }

    /// Refuses every later `emit`, then appends what is still queued: from here on
    /// only the returned guard (the supervisor writing the closing events) appends.
    pub(crate) async fn seal(&self) -> SealedSink<'_> {
        self.inner.queue().sealed = true;
        // Sealed, the queue starts no flush task: wait for those running to write what
        // they took.
        self.inner.flushes.close();
        self.inner.flushes.wait().await;
        let mut position = self.inner.position.lock().await;
        // A flush task may have ended just before taking the last events: what is
        // queued goes before the closing events.
        self.inner.drain(&mut position).await;
        SealedSink {
            inner: &self.inner,
            position,
        }
    }
}

/// Exclusive access to a sealed sink.
pub(crate) struct SealedSink<'a> {
    inner: &'a SinkInner,
    position: MutexGuard<'a, EventPosition>,
}

impl SealedSink<'_> {
    /// Appends a closing event. After a transient failure the log gets one more chance
    /// (the run should still be concluded if it can be); after fencing nothing is written.
    pub(crate) async fn append(&mut self, kind: RunEventKind) -> Result<(), EmitError> {
        if self.lost_reason() == Some(EmitError::Fenced) {
            return Err(EmitError::Fenced);
        }
        let seq = self.position.next_seq;
        let event = EncodedEvent::new(RunEvent::new(self.inner.run_id, seq, kind))
            .map_err(|_| EmitError::Unavailable)?;
        self.inner
            .write(&mut self.position, vec![event])
            .await
            .map_err(|(_, reason)| reason)
    }

    pub(crate) fn lost_reason(&self) -> Option<EmitError> {
        self.inner.lost_reason.get().copied()
    }
}

#[cfg(test)]
mod tests;
