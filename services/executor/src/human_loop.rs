//! Human-loop requests of one run: a provider asks ("run `rm -rf build`?"), the request
//! is published as `human_loop.requested`, and the run waits — with its clock paused —
//! until a reply arrives over the control subject or the HTTP API, the run ends, or the
//! request's own timeout declines it (the run then goes on with the denial).

use crate::clock::ActiveClock;
use crate::sink::EventSink;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use switchyard_contracts::event::{
    HumanLoopDecision, HumanLoopKind, HumanLoopRequested, HumanLoopResolved, HumanLoopResolver,
};
use switchyard_contracts::{HumanLoopRequestId, RunEventKind};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A human's reply to a pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HumanReply {
    pub decision: HumanLoopDecision,
    pub message: Option<String>,
}

/// How a request was settled, as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HumanLoopAnswer {
    pub request_id: HumanLoopRequestId,
    pub decision: HumanLoopDecision,
    pub message: Option<String>,
    pub resolved_by: HumanLoopResolver,
}

impl HumanLoopAnswer {
    pub(crate) fn approved(&self) -> bool {
        self.decision == HumanLoopDecision::Approve
    }
}

/// The run has no pending request (or not the one named).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run has no pending human-loop request with that id")]
pub(crate) struct NoPendingRequest;

#[derive(Default)]
struct Desk {
    /// Requests waiting for a reply, oldest first.
    waiting: VecDeque<(HumanLoopRequestId, oneshot::Sender<HumanReply>)>,
    /// Requests announced with `human_loop.requested` and not yet resolved in the log.
    /// Whatever is left here when the run ends is resolved `run_ended` by the supervisor.
    open: Vec<HumanLoopRequestId>,
}

/// The pending human-loop requests of one run.
#[derive(Default)]
pub(crate) struct PendingRequests {
    desk: Mutex<Desk>,
}

impl PendingRequests {
    fn desk(&self) -> std::sync::MutexGuard<'_, Desk> {
        // Nothing panics while holding the lock, and the data stays consistent anyway.
        self.desk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, request_id: &HumanLoopRequestId) -> oneshot::Receiver<HumanReply> {
        let (tx, rx) = oneshot::channel();
        let mut desk = self.desk();
        desk.waiting.push_back((request_id.clone(), tx));
        desk.open.push(request_id.clone());
        rx
    }

    fn forget(&self, request_id: &HumanLoopRequestId) {
        let mut desk = self.desk();
        desk.waiting.retain(|(id, _)| id != request_id);
        desk.open.retain(|id| id != request_id);
    }

    /// Takes a request off the waiting list (it timed out) but keeps it open until its
    /// resolution is stored. Under the lock, so a racing reply either got in before (and
    /// is in the receiver) or finds no waiter.
    fn withdraw(&self, request_id: &HumanLoopRequestId) {
        self.desk().waiting.retain(|(id, _)| id != request_id);
    }

    fn mark_resolved(&self, request_id: &HumanLoopRequestId) {
        self.desk().open.retain(|id| id != request_id);
    }

    /// Delivers a reply to the named request, or to the oldest one without a name.
    pub(crate) fn answer(
        &self,
        request_id: Option<&HumanLoopRequestId>,
        reply: HumanReply,
    ) -> Result<(), NoPendingRequest> {
        let mut desk = self.desk();
        // A waiter whose provider went away (aborted) cannot take a reply any more.
        desk.waiting.retain(|(_, tx)| !tx.is_closed());
        let index = match request_id {
            Some(wanted) => desk.waiting.iter().position(|(id, _)| id == wanted),
            None if desk.waiting.is_empty() => None,
            None => Some(0),
        }
        .ok_or(NoPendingRequest)?;
        let (_, tx) = desk.waiting.remove(index).ok_or(NoPendingRequest)?;
        tx.send(reply).map_err(|_| NoPendingRequest)
    }

    #[cfg(test)]
    fn has_waiting(&self) -> bool {
        self.desk().waiting.iter().any(|(_, tx)| !tx.is_closed())
    }

    /// Ends the desk: drops every waiter and returns the requests never resolved in the
    /// log, which the caller resolves `run_ended`.
    pub(crate) fn close(&self) -> Vec<HumanLoopRequestId> {
        let mut desk = self.desk();
        desk.waiting.clear();
        std::mem::take(&mut desk.open)
    }
}

/// What a provider uses to ask a human. Cheap to clone.
#[derive(Clone)]
pub(crate) struct HumanLoop {
    pending: Arc<PendingRequests>,
    clock: Arc<ActiveClock>,
    sink: EventSink,
    stop: CancellationToken,
    /// How long one request waits for a human; `None` = as long as the run lives.
    timeout: Option<Duration>,
}

impl HumanLoop {
    pub(crate) fn new(
        pending: Arc<PendingRequests>,
        clock: Arc<ActiveClock>,
        sink: EventSink,
        stop: CancellationToken,
    ) -> Self {
        Self {
            pending,
            clock,
            sink,
            stop,
            timeout: None,
        }
    }

    /// Declines a request nobody answered within `timeout` (wall time while waiting).
    pub(crate) fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Asks a human and waits for the decision. The run clock is paused while waiting.
    /// When the run is stopped first, or the request cannot be published, the answer is
    /// a denial resolved by `run_ended` (the supervisor writes that resolution). When
    /// nobody answers within the run's human-loop timeout, the answer is a denial
    /// resolved by `timeout` (written here) and the provider goes on.
    pub(crate) async fn ask(
        &self,
        kind: HumanLoopKind,
        prompt: impl Into<String>,
        details: serde_json::Value,
    ) -> HumanLoopAnswer {
        let request_id = HumanLoopRequestId::generate();
        let ended = |request_id: HumanLoopRequestId| HumanLoopAnswer {
            request_id,
            decision: HumanLoopDecision::Deny,
            message: None,
            resolved_by: HumanLoopResolver::RunEnded,
        };
        if self.stop.is_cancelled() {
            return ended(request_id);
        }
        // Register before publishing: a reply that races the event must find the waiter.
        let mut reply = self.pending.register(&request_id);
        let _paused = self.clock.pause();
        let requested = RunEventKind::HumanLoopRequested(HumanLoopRequested {
            request_id: request_id.clone(),
            kind,
            prompt: prompt.into(),
            details,
        });
        if let Err(error) = self.sink.emit_stored(requested).await {
            tracing::debug!(run_id = %self.sink.run_id(), %request_id, %error, "human-loop request not published");
            self.pending.forget(&request_id);
            return ended(request_id);
        }
        tracing::info!(run_id = %self.sink.run_id(), %request_id, ?kind, "waiting for a human");
        let expired = async {
            match self.timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let answer = tokio::select! {
            reply = &mut reply => reply.ok().map(|r| (r, HumanLoopResolver::Human)),
            _ = self.stop.cancelled() => None,
            _ = expired => {
                self.pending.withdraw(&request_id);
                // A reply that won the race against the timeout still counts.
                Some(match reply.try_recv() {
                    Ok(r) => (r, HumanLoopResolver::Human),
                    Err(_) => {
                        let ms = self.timeout.map_or(0, |t| t.as_millis());
                        tracing::info!(run_id = %self.sink.run_id(), %request_id, timeout_ms = ms as u64, "nobody answered in time; declining");
                        (
                            HumanReply {
                                decision: HumanLoopDecision::Deny,
                                message: Some(format!("nobody answered within {ms} ms")),
                            },
                            HumanLoopResolver::Timeout,
                        )
                    }
                })
            }
        };
        let Some((HumanReply { decision, message }, resolved_by)) = answer else {
            return ended(request_id);
        };
        let resolved = RunEventKind::HumanLoopResolved(HumanLoopResolved {
            request_id: request_id.clone(),
            decision,
            resolved_by,
            message: message.clone(),
        });
        let pending = self.pending.clone();
        let id = request_id.clone();
        // Marked resolved only once the event is stored, under the append lock: the
        // supervisor either sees it resolved or writes the `run_ended` resolution itself.
        if let Err(error) = self
            .sink
            .emit_then(resolved, move || pending.mark_resolved(&id))
            .await
        {
            tracing::debug!(run_id = %self.sink.run_id(), %request_id, %error, "human-loop resolution not published");
            return ended(request_id);
        }
        tracing::info!(run_id = %self.sink.run_id(), %request_id, ?decision, ?resolved_by, "human-loop request resolved");
        HumanLoopAnswer {
            request_id,
            decision,
            message,
            resolved_by,
        }
    }
}

/// Events resolving the requests still open when a run ends.
pub(crate) fn run_ended_resolutions(open: Vec<HumanLoopRequestId>) -> Vec<RunEventKind> {
    open.into_iter()
        .map(|request_id| {
            RunEventKind::HumanLoopResolved(HumanLoopResolved {
                request_id,
                decision: HumanLoopDecision::Deny,
                resolved_by: HumanLoopResolver::RunEnded,
                message: Some("the run ended before a human answered".to_owned()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> HumanLoopRequestId {
        text.parse().unwrap()
    }

    fn reply(decision: HumanLoopDecision) -> HumanReply {
        HumanReply {
            decision,
            message: None,
        }
    }

    #[test]
    fn replies_go_to_the_named_or_the_oldest_request() {
        let pending = PendingRequests::default();
        let mut first = pending.register(&id("a"));
        let mut second = pending.register(&id("b"));
        pending
            .answer(Some(&id("b")), reply(HumanLoopDecision::Deny))
            .unwrap();
        assert_eq!(second.try_recv().unwrap().decision, HumanLoopDecision::Deny);
        assert_eq!(
            pending.answer(Some(&id("zzz")), reply(HumanLoopDecision::Approve)),
            Err(NoPendingRequest)
        );
        pending
            .answer(None, reply(HumanLoopDecision::Approve))
            .unwrap();
        assert_eq!(
            first.try_recv().unwrap().decision,
            HumanLoopDecision::Approve
        );
        assert_eq!(
            pending.answer(None, reply(HumanLoopDecision::Approve)),
            Err(NoPendingRequest)
        );
        // Both were announced and neither resolution was stored: both are still open.
        assert_eq!(pending.close(), vec![id("a"), id("b")]);
    }

    #[test]
    fn a_timed_out_request_takes_no_reply_but_stays_open_until_resolved() {
        let pending = PendingRequests::default();
        let _rx = pending.register(&id("a"));
        pending.withdraw(&id("a"));
        assert_eq!(
            pending.answer(Some(&id("a")), reply(HumanLoopDecision::Approve)),
            Err(NoPendingRequest)
        );
        assert_eq!(pending.close(), vec![id("a")]);
    }

    #[test]
    fn a_waiter_that_went_away_is_not_pending() {
        let pending = PendingRequests::default();
        drop(pending.register(&id("a")));
        assert!(!pending.has_waiting());
        assert_eq!(
            pending.answer(None, reply(HumanLoopDecision::Approve)),
            Err(NoPendingRequest)
        );
    }
}
