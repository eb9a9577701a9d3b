//! Dispatch of one run command: decide from the run's event log whether it still needs
//! an executor, claim it, and hand it to an executor with a free slot — the one that
//! ran the run's conversation before when it has room (its workspace and provider
//! session are there). A run whose provider no live executor has installed is failed
//! `binary_missing` instead of waiting forever.
//!
//! Every decision is an [`Outcome`]; the worker turns it into an ack, a nak with delay
//! or a term. A command is acked only once an executor accepted it (or the run's
//! history shows it needs no dispatch any more), so nothing is lost to a crash or a
//! NATS restart: the command is simply delivered again and the event log says where
//! the run stands.

use crate::config::ExecutorManagerSettings;
use crate::executors::{Executors, Reservation};
use crate::timeouts;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::dispatch::{
    DispatchOutcome, DispatchReply, DispatchRequest, EventPosition,
};
use switchyard_contracts::event::{RunClaimed, RunCompleted};
use switchyard_contracts::{
    ExecutorId, FailureReason, ProviderName, RunCommand, RunEventKind, RunId, WorkerId, subjects,
};
use switchyard_platform::events::{EventLog, EventLogError};
use switchyard_platform::metrics::Metrics;
use switchyard_platform::trace::{TRACEPARENT, TraceParent, trace_id_of};
use tokio_util::sync::CancellationToken;

/// Redelivery delay after losing an append race: the run's history moved on (a stop, a
/// second worker after a redelivery), so the command is re-read promptly.
const FENCED_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Redelivery delay after a NATS failure (typically a server restart in progress).
const NATS_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What to do with a command message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done: an executor owns the run, or the run needs no dispatch.
    Ack,
    /// Deliver it again after the delay.
    Retry(Duration),
    /// Never deliver it again (garbage, or the run was concluded here).
    Terminal,
}

/// Dispatches run commands for one manager process.
pub(crate) struct Dispatcher {
    client: async_nats::Client,
    events: EventLog,
    executors: Executors,
    settings: Arc<ExecutorManagerSettings>,
    worker_id: WorkerId,
    shutdown: CancellationToken,
    metrics: Metrics,
}

/// `switchyard_dispatch_seconds{outcome}`: from taking a command to settling it.
const DISPATCH_SECONDS: &str = "switchyard_dispatch_seconds";

/// A claimed run's dispatch request, as offered to each executor in turn.
struct Request {
    payload: Bytes,
    timeout_ms: u64,
    /// Where the executor appends `run.dispatched` (right after our `run.claimed`).
    position: EventPosition,
}

/// The answer to one dispatch request, as far as the worker cares.
enum Attempt {
    Reply(DispatchReply),
    Garbage(String),
    TimedOut,
    NoResponders,
    TooLarge,
    Nats(async_nats::RequestError),
}

impl Dispatcher {
    pub(crate) fn new(
        client: async_nats::Client,
        events: EventLog,
        executors: Executors,
        settings: Arc<ExecutorManagerSettings>,
        worker_id: WorkerId,
        shutdown: CancellationToken,
        metrics: Metrics,
    ) -> Self {
        metrics.describe_histogram(
            DISPATCH_SECONDS,
            "Time from taking a run command off the queue to settling it, by outcome (ack: dispatched or needs none; retry: delivered again later; terminal: dropped or concluded), in seconds.",
        );
        Self {
            client,
            events,
            executors,
            settings,
            worker_id,
            shutdown,
            metrics,
        }
    }

    /// Decides the fate of `command`, delivered as `message`. Runs inside the
    /// command's span, so every line it logs carries the run id.
    ///
    /// The phases, each of which may settle the command early: read where the run
    /// stands, check its provider, reserve an executor, claim the run, then offer it to
    /// executors until one accepts.
    pub(crate) async fn dispatch(
        &self,
        command: &RunCommand,
        message: &jetstream::Message,
    ) -> Outcome {
        let phases = async {
            let position = self.run_state(command.run_id).await?;
            let provider = self.provider(command, position).await?;
            let reservation = self.pick_executor(command, provider, position).await?;
            let position = self.claim(command, message, position).await?;
            let request = self.request_for(command, position)?;
            Continue(
                self.hand_over(command, message, provider, reservation, request)
                    .await,
            )
        };
        let started = std::time::Instant::now();
        let outcome = match phases.await {
            Break(outcome) | Continue(outcome) => outcome,
        };
        let label = match outcome {
            Outcome::Ack => "ack",
            Outcome::Retry(_) => "retry",
            Outcome::Terminal => "terminal",
        };
        self.metrics
            .histogram(DISPATCH_SECONDS, &[("outcome", label)])
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Where the run's next event goes, unless its history shows that it needs no
    /// dispatch (any more) or cannot be read.
    async fn run_state(&self, run_id: RunId) -> ControlFlow<Outcome, EventPosition> {
        let last = match self.events.last(run_id).await {
            Ok(last) => last,
            Err(error) => return Break(event_log_failure(error, "read the run's last event")),
        };
        match &last {
            Some(last) if last.header.is_terminal() => {
                tracing::info!("run already concluded; dropping its command");
                Break(Outcome::Ack)
            }
            Some(last)
                if !matches!(
                    last.header.event_type.as_str(),
                    "run.queued" | "run.claimed"
                ) =>
            {
                tracing::info!(
                    last_event = %last.header.event_type,
                    "run already dispatched; its executor owns it"
                );
                Break(Outcome::Ack)
            }
            Some(last) => Continue(last.next_position()),
            None => {
                // The control-plane writes run.queued before it publishes the command,
                // so this is a hand-published command or an expired history; the run
                // can still be served from an empty log.
                tracing::warn!("run has no events; dispatching it from an empty history");
                Continue(EventPosition::EMPTY)
            }
        }
    }

    /// The run's provider; a run naming one this platform does not know is failed.
    async fn provider(
        &self,
        command: &RunCommand,
        position: EventPosition,
    ) -> ControlFlow<Outcome, ProviderName> {
        if let Some(provider) = ProviderName::parse(&command.provider) {
            return Continue(provider);
        }
        tracing::warn!(provider = %command.provider, "run names an unknown provider; failing it");
        let completed = RunCompleted::failed(
            FailureReason::UnsupportedProvider,
            format!(
                "provider `{}` is not supported by this platform",
                command.provider
            ),
        );
        Break(self.conclude(command, position, completed).await)
    }

    /// A slot on an executor with the provider installed, the conversation's own
    /// executor first. Reserved before the run is claimed: a run nobody can take stays
    /// `queued` and gets no event at all, however often it is redelivered.
    async fn pick_executor(
        &self,
        command: &RunCommand,
        provider: ProviderName,
        position: EventPosition,
    ) -> ControlFlow<Outcome, Reservation> {
        let preferred = command.preferred_executor.as_ref();
        let Some(reservation) = self.executors.reserve_preferring(provider, preferred, &[]) else {
            if let Some(live) = self
                .executors
                .without_provider(provider, self.settings.binary_missing_grace())
            {
                tracing::warn!(
                    %provider,
                    live_executors = live.len(),
                    "no live executor has the provider installed; failing the run"
                );
                let completed = RunCompleted::failed(
                    FailureReason::BinaryMissing,
                    binary_missing_detail(provider, &live),
                );
                return Break(self.conclude(command, position, completed).await);
            }
            tracing::debug!(%provider, "no executor has room; the run stays queued");
            return Break(Outcome::Retry(self.settings.no_capacity_delay()));
        };
        if let Some(preferred) = preferred {
            if reservation.executor_id() == preferred {
                tracing::info!(
                    executor_id = %preferred,
                    "trying the conversation's executor first"
                );
            } else {
                // The executor there starts a fresh provider session.
                tracing::info!(
                    %preferred,
                    executor_id = %reservation.executor_id(),
                    "the conversation's executor has no room or is gone; dispatching elsewhere"
                );
            }
        }
        Continue(reservation)
    }

    /// Appends `run.claimed` at `position`; the position after it.
    async fn claim(
        &self,
        command: &RunCommand,
        message: &jetstream::Message,
        mut position: EventPosition,
    ) -> ControlFlow<Outcome, EventPosition> {
        let attempt = message
            .info()
            .map_or(1, |info| u64::try_from(info.delivered).unwrap_or(1).max(1));
        let claimed = RunEventKind::RunClaimed(RunClaimed {
            worker_id: self.worker_id.clone(),
            attempt,
        });
        match self
            .events
            .append(command.run_id, &mut position, claimed)
            .await
        {
            Ok(_) => Continue(position),
            Err(EventLogError::Fenced { .. }) => {
                tracing::info!("run history moved on while claiming it; reading it again");
                Break(Outcome::Retry(FENCED_RETRY_DELAY))
            }
            Err(error) => Break(event_log_failure(error, "append run.claimed")),
        }
    }

    /// The dispatch request for a claimed run (its timeout resolved), encoded once for
    /// every executor it is offered to.
    fn request_for(
        &self,
        command: &RunCommand,
        position: EventPosition,
    ) -> ControlFlow<Outcome, Request> {
        let timeout = timeouts::resolve(
            command,
            &self.settings.timeout_templates,
            self.settings.default_run_timeout_ms,
        );
        tracing::debug!(
            timeout_ms = timeout.timeout_ms,
            timeout_source = timeout.source.as_str(),
            "run timeout resolved"
        );
        let request = DispatchRequest {
            command: command.clone(),
            timeout_ms: timeout.timeout_ms,
            worker_id: self.worker_id.clone(),
            position,
        };
        match serde_json::to_vec(&request) {
            Ok(payload) => Continue(Request {
                payload: Bytes::from(payload),
                timeout_ms: timeout.timeout_ms,
                position,
            }),
            Err(error) => {
                switchyard_platform::metrics::serialization_failed();
                tracing::error!(%error, "cannot encode the dispatch request");
                Break(Outcome::Retry(NATS_RETRY_DELAY))
            }
        }
    }

    /// Offers the claimed run to the reserved executor, then to the next ones with
    /// room, until one accepts, the answer settles the command, or nobody is left.
    async fn hand_over(
        &self,
        command: &RunCommand,
        message: &jetstream::Message,
        provider: ProviderName,
        mut reservation: Reservation,
        request: Request,
    ) -> Outcome {
        let mut tried: Vec<ExecutorId> = Vec::new();
        loop {
            let executor_id = reservation.executor_id().clone();
            // Keep the command ours while the executor answers (ack_wait restarts).
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                tracing::warn!(%error, "cannot extend the command's ack deadline");
            }
            let attempt = self
                .send(
                    command,
                    &executor_id,
                    request.payload.clone(),
                    passed_on(message),
                )
                .await;
            if let Break(outcome) = self
                .outcome_of(command, provider, reservation, &request, attempt)
                .await
            {
                return outcome;
            }
            tried.push(executor_id);
            if self.shutdown.is_cancelled() {
                // Let another manager try the rest rather than hold up the shutdown.
                tracing::info!("shutting down; handing the command back to the queue");
                return Outcome::Retry(Duration::ZERO);
            }
            reservation = match self.executors.reserve(provider, &tried) {
                Some(next) => next,
                None => {
                    tracing::info!(
                        tried = tried.len(),
                        "no executor took the run; it stays claimed and is retried"
                    );
                    return Outcome::Retry(self.settings.no_capacity_delay());
                }
            };
        }
    }

    /// What one executor's answer means: the command's outcome, or `Continue` to offer
    /// the run to the next executor. Keeps or releases the reservation accordingly.
    async fn outcome_of(
        &self,
        command: &RunCommand,
        provider: ProviderName,
        reservation: Reservation,
        request: &Request,
        attempt: Attempt,
    ) -> ControlFlow<Outcome> {
        let executor_id = reservation.executor_id().clone();
        match attempt {
            Attempt::Reply(reply) => match reply.outcome {
                DispatchOutcome::Accepted => {
                    reservation.keep();
                    tracing::info!(
                        %executor_id,
                        timeout_ms = request.timeout_ms,
                        next_seq = request.position.next_seq,
                        "run dispatched"
                    );
                    Break(Outcome::Ack)
                }
                DispatchOutcome::Conflict => {
                    // The log moved past our position: another executor took the run,
                    // or another worker claimed it again after a redelivery (and may
                    // itself be answered `conflict`). Only the log can tell which:
                    // the next delivery reads it and acks once the run is dispatched.
                    tracing::info!(
                        %executor_id,
                        message = reply.message.as_deref().unwrap_or(""),
                        "executor reports the run's history moved on; reading it again"
                    );
                    Break(Outcome::Retry(FENCED_RETRY_DELAY))
                }
                DispatchOutcome::Full | DispatchOutcome::Draining => {
                    tracing::debug!(%executor_id, outcome = ?reply.outcome, "executor declined; trying the next one");
                    reservation.mark_unavailable();
                    Continue(())
                }
                DispatchOutcome::UnsupportedProvider => {
                    tracing::info!(%executor_id, %provider, "executor cannot run the provider; trying the next one");
                    Continue(())
                }
                DispatchOutcome::Invalid => {
                    tracing::error!(
                        %executor_id,
                        message = reply.message.as_deref().unwrap_or(""),
                        "executor rejected the dispatch request as invalid; trying the next one"
                    );
                    Continue(())
                }
            },
            Attempt::Garbage(error) => {
                tracing::error!(%executor_id, %error, "executor answered with an invalid dispatch reply; trying the next one");
                Continue(())
            }
            Attempt::TimedOut => {
                // Ambiguous: it may still accept. A second executor is safe anyway:
                // only one of them can append run.dispatched at the claimed position.
                tracing::warn!(%executor_id, "executor did not answer the dispatch in time; trying the next one");
                Continue(())
            }
            Attempt::NoResponders => {
                tracing::info!(%executor_id, "executor is not listening (gone?); trying the next one");
                reservation.mark_unavailable();
                Continue(())
            }
            Attempt::TooLarge => {
                drop(reservation);
                let completed = RunCompleted::failed(
                    FailureReason::UnknownFailure,
                    "the run command is too large to dispatch over NATS",
                );
                tracing::error!("run command exceeds the NATS payload limit; failing the run");
                Break(self.conclude(command, request.position, completed).await)
            }
            Attempt::Nats(error) => {
                tracing::warn!(%executor_id, %error, "dispatch request failed; the command will be retried");
                Break(Outcome::Retry(NATS_RETRY_DELAY))
            }
        }
    }

    /// Sends the dispatch request to one executor.
    async fn send(
        &self,
        command: &RunCommand,
        executor_id: &ExecutorId,
        payload: Bytes,
        trace: Option<TraceParent>,
    ) -> Attempt {
        let mut headers = HeaderMap::new();
        headers.insert(subjects::HEADER_RUN_ID, command.run_id.to_string().as_str());
        if let Some(trace) = trace {
            headers.insert(TRACEPARENT, trace.to_string().as_str());
        }
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(headers)
            .timeout(Some(self.settings.dispatch_timeout()));
        match self
            .client
            .send_request(subjects::executor_dispatch(executor_id), request)
            .await
        {
            Ok(reply) => match serde_json::from_slice::<DispatchReply>(&reply.payload) {
                Ok(reply) => Attempt::Reply(reply),
                Err(error) => Attempt::Garbage(error.to_string()),
            },
            Err(error) => match error.kind() {
                async_nats::RequestErrorKind::TimedOut => Attempt::TimedOut,
                async_nats::RequestErrorKind::NoResponders => Attempt::NoResponders,
                async_nats::RequestErrorKind::MaxPayloadExceeded => Attempt::TooLarge,
                _ => Attempt::Nats(error),
            },
        }
    }

    /// Ends a run that was never dispatched by appending `run.completed` at `position`.
    async fn conclude(
        &self,
        command: &RunCommand,
        mut position: EventPosition,
        completed: RunCompleted,
    ) -> Outcome {
        let reason = completed.reason.map(FailureReason::as_str);
        match self
            .events
            .append(
                command.run_id,
                &mut position,
                RunEventKind::RunCompleted(completed),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(reason, "run concluded before dispatch");
                Outcome::Terminal
            }
            Err(EventLogError::Fenced { .. }) => {
                tracing::info!("run history moved on while concluding it; reading it again");
                Outcome::Retry(FENCED_RETRY_DELAY)
            }
            Err(error) => event_log_failure(error, "append run.completed"),
        }
    }
}

/// Executor ids listed in a `binary_missing` detail; a large fleet is cut short.
const LISTED_EXECUTORS: usize = 10;

/// The command's trace (its `traceparent` header, when valid) as this service passes
/// it on: the same trace id, a new parent id.
fn passed_on(message: &jetstream::Message) -> Option<TraceParent> {
    let value = message.headers.as_ref()?.get(TRACEPARENT)?;
    TraceParent::parse(value.as_str()).map(|t| t.child())
}

/// The trace id of a command's `traceparent` header, for its span.
pub(crate) fn trace_id(message: &jetstream::Message) -> Option<String> {
    trace_id_of(
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(TRACEPARENT))
            .map(|v| v.as_str()),
    )
}

/// "<provider> is installed on none of the N live executors (a, b, …)".
fn binary_missing_detail(provider: ProviderName, live: &[ExecutorId]) -> String {
    let mut ids = live
        .iter()
        .take(LISTED_EXECUTORS)
        .map(ExecutorId::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if live.len() > LISTED_EXECUTORS {
        ids.push_str(", …");
    }
    let plural = if live.len() == 1 { "" } else { "s" };
    format!(
        "{provider} is installed on none of the {} live executor{plural} ({ids})",
        live.len()
    )
}

fn event_log_failure(error: EventLogError, doing: &'static str) -> Outcome {
    match error {
        EventLogError::Fenced { .. } => Outcome::Retry(FENCED_RETRY_DELAY),
        // The run's history cannot be read (or our event cannot be written), so no
        // decision about it is safe, and retrying cannot repair it: an operator has to
        // look.
        EventLogError::Corrupt { .. } | EventLogError::Encode { .. } => {
            tracing::error!(error = %error, doing, "run event log is corrupt; terminating the command");
            Outcome::Terminal
        }
        other => {
            tracing::warn!(error = %other, doing, "event log unavailable; the command will be retried");
            Outcome::Retry(NATS_RETRY_DELAY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ExecutorId {
        text.parse().unwrap()
    }

    #[test]
    fn the_binary_missing_detail_names_the_provider_and_the_executors() {
        assert_eq!(
            binary_missing_detail(ProviderName::ClaudeCode, &[id("a"), id("b")]),
            "claude-code is installed on none of the 2 live executors (a, b)"
        );
        assert_eq!(
            binary_missing_detail(ProviderName::Opencode, &[id("a")]),
            "opencode is installed on none of the 1 live executor (a)"
        );
        let many: Vec<ExecutorId> = (0..12).map(|i| id(&format!("e{i}"))).collect();
        let detail = binary_missing_detail(ProviderName::Scripted, &many);
        assert!(detail.starts_with("scripted is installed on none of the 12 live executors (e0, "));
        assert!(detail.ends_with("e9, …)"), "{detail}");
    }
}
