//! The event sink of one run: the only way a provider (and the supervisor) writes the
//! run's events. Appends are fenced and strictly ordered, and a sink that lost the
//! run — another writer appended, or the log stayed unreachable — refuses every later
//! event, so a zombie never forks the history.

use std::sync::{Arc, OnceLock};
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{Diagnostic, DiagnosticLevel};
use switchyard_contracts::{RunEvent, RunEventKind, RunId};
use switchyard_platform::events::{EventLog, EventLogError};
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Why an event could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The run's history moved on: another writer owns the run now. Stop at once.
    #[error("the run's event log moved on: another writer owns the run")]
    Fenced,
    /// The event log did not accept the event even after retries.
    #[error("the run's event log is unavailable")]
    Unavailable,
    /// The run is being concluded; no more provider events are accepted.
    #[error("the run has ended")]
    RunEnded,
}

struct SinkState {
    position: EventPosition,
    /// Set by the supervisor before it writes the closing events.
    sealed: bool,
}

struct SinkInner {
    log: EventLog,
    run_id: RunId,
    state: Mutex<SinkState>,
    lost: CancellationToken,
    lost_reason: OnceLock<EmitError>,
}

impl SinkInner {
    fn mark_lost(&self, reason: EmitError) {
        let _ = self.lost_reason.set(reason);
        self.lost.cancel();
    }

    /// Appends under the lock, unless the sink already lost the run.
    async fn append(&self, state: &mut SinkState, kind: RunEventKind) -> Result<(), EmitError> {
        if let Some(reason) = self.lost_reason.get() {
            return Err(*reason);
        }
        self.append_unchecked(state, kind).await
    }

    /// A too-large event is replaced by a diagnostic saying so: one oversized tool
    /// output must not end the run.
    async fn append_unchecked(
        &self,
        state: &mut SinkState,
        kind: RunEventKind,
    ) -> Result<(), EmitError> {
        let attempted = state.position;
        let type_name = kind.type_name();
        let mut sent = kind.clone();
        let mut result = self
            .log
            .append(self.run_id, &mut state.position, kind)
            .await;
        if let Err(EventLogError::TooLarge { size, .. }) = result {
            tracing::warn!(run_id = %self.run_id, event_type = type_name, size, "event too large for the stream; replaced by a diagnostic");
            sent = RunEventKind::Diagnostic(Diagnostic {
                level: DiagnosticLevel::Warn,
                message: format!(
                    "a {type_name} event of {size} bytes was larger than the event stream allows and was dropped"
                ),
                raw: None,
            });
            result = self
                .log
                .append(self.run_id, &mut state.position, sent.clone())
                .await;
        }
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        // Both a lost ack and our own retry of a stored append look like failures (the
        // retry is even answered "wrong last sequence"): if the log's last event is the
        // one we sent, at the seq we sent it, it is stored and the run is still ours.
        if let Some(next) = stored_anyway(&self.log, self.run_id, attempted, |event| {
            event.kind == sent
        })
        .await
        {
            tracing::info!(run_id = %self.run_id, %error, "append reported an error, but the event is stored");
            state.position = next;
            return Ok(());
        }
        match error {
            EventLogError::Fenced { .. } => {
                tracing::warn!(run_id = %self.run_id, "event append fenced: another writer owns the run");
                self.mark_lost(EmitError::Fenced);
                Err(EmitError::Fenced)
            }
            error => {
                tracing::error!(run_id = %self.run_id, error = %error, "event append failed after retries");
                self.mark_lost(EmitError::Unavailable);
                Err(EmitError::Unavailable)
            }
        }
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
pub struct EventSink {
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
                state: Mutex::new(SinkState {
                    position,
                    sealed: false,
                }),
                lost: CancellationToken::new(),
                lost_reason: OnceLock::new(),
            }),
        }
    }

    pub fn run_id(&self) -> RunId {
        self.inner.run_id
    }

    /// Appends one event after every event emitted before it.
    pub async fn emit(&self, kind: RunEventKind) -> Result<(), EmitError> {
        self.emit_then(kind, || {}).await
    }

    /// Appends one event and, only once it is stored and still under the append lock,
    /// runs `on_stored`. The append runs in its own task: a provider future that is
    /// dropped mid-append (an abort after the stop grace) cannot leave a half-done
    /// append whose sequence number the closing event would then reuse.
    pub(crate) async fn emit_then(
        &self,
        kind: RunEventKind,
        on_stored: impl FnOnce() + Send + 'static,
    ) -> Result<(), EmitError> {
        let inner = self.inner.clone();
        let append = tokio::spawn(async move {
            let mut state = inner.state.lock().await;
            if state.sealed {
                return Err(EmitError::RunEnded);
            }
            inner.append(&mut state, kind).await?;
            on_stored();
            Ok(())
        });
        append.await.unwrap_or(Err(EmitError::RunEnded))
    }

    /// Completes when the sink lost the run (fenced or log unavailable).
    pub(crate) async fn lost(&self) {
        self.inner.lost.cancelled().await;
    }

    /// Waits for in-flight appends, then refuses every later `emit`: from here on only
    /// the returned guard (the supervisor writing the closing events) appends.
    pub(crate) async fn seal(&self) -> SealedSink<'_> {
        let mut state = self.inner.state.lock().await;
        state.sealed = true;
        SealedSink {
            inner: &self.inner,
            state,
        }
    }
}

/// Exclusive access to a sealed sink.
pub(crate) struct SealedSink<'a> {
    inner: &'a SinkInner,
    state: MutexGuard<'a, SinkState>,
}

impl SealedSink<'_> {
    /// Appends a closing event. After a transient failure the log gets one more chance
    /// (the run should still be concluded if it can be); after fencing nothing is written.
    pub(crate) async fn append(&mut self, kind: RunEventKind) -> Result<(), EmitError> {
        if self.lost_reason() == Some(EmitError::Fenced) {
            return Err(EmitError::Fenced);
        }
        self.inner.append_unchecked(&mut self.state, kind).await
    }

    pub(crate) fn lost_reason(&self) -> Option<EmitError> {
        self.inner.lost_reason.get().copied()
    }
}
