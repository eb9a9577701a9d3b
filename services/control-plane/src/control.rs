//! Stop and human-loop replies.
//!
//! Who may act on a run depends on how far its history went. Before dispatch (last
//! event `run.queued` or `run.claimed`, or no event yet) anyone may conclude it, so a
//! stop appends `run.completed {stopped}` at the position it read; the fenced append
//! makes that safe against a manager or executor moving the run on at the same moment.
//! After dispatch only the owning executor appends, so the request goes to it over
//! `runs.control.<run_id>`; executors subscribe before they append `run.dispatched`,
//! so a missing responder is a crash or a restart in progress, and we retry for a
//! bounded time.

use async_nats::client::RequestErrorKind;
use backon::{BackoffBuilder as _, ExponentialBuilder};
use bytes::Bytes;
use std::time::Duration;
use switchyard_contracts::control::{ControlOutcome, ControlReply, ControlRequest};
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{HumanLoopDecision, RunCompleted};
use switchyard_contracts::{FailureReason, HumanLoopRequestId, RunEventKind, RunId, subjects};
use switchyard_platform::events::{EventLog, EventLogError, StoredEvent};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    #[error("the run has already finished")]
    Finished,
    #[error("{0}")]
    NoPendingRequest(String),
    #[error("the executor that owns the run did not answer in time")]
    OwnerUnavailable,
    #[error("the run's owner rejected the request: {0}")]
    Rejected(String),
    #[error("the run's owner sent a reply that could not be decoded: {0}")]
    BadReply(#[source] serde_json::Error),
    #[error("the control request could not be serialised: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    EventLog(#[from] EventLogError),
}

/// What a stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopOutcome {
    /// The run had not been dispatched: it is concluded `stopped` now.
    Stopped,
    /// The owning executor accepted the stop; the run ends `stopped` shortly.
    Stopping,
}

impl StopOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StopOutcome::Stopped => "stopped",
            StopOutcome::Stopping => "stopping",
        }
    }
}

/// Where a run's history stands.
enum Stage {
    /// Not dispatched: the next event may be appended by anyone at this position.
    BeforeDispatch(EventPosition),
    Dispatched,
    Finished,
}

fn stage(last: Option<&StoredEvent>) -> Stage {
    match last {
        None => Stage::BeforeDispatch(EventPosition::EMPTY),
        Some(event) if event.header.is_terminal() => Stage::Finished,
        Some(event)
            if matches!(
                event.header.event_type.as_str(),
                "run.queued" | "run.claimed"
            ) =>
        {
            Stage::BeforeDispatch(event.next_position())
        }
        Some(_) => Stage::Dispatched,
    }
}

pub(crate) struct RunControl {
    client: async_nats::Client,
    events: EventLog,
    /// Overall bound of one stop or reply while the owner does not answer.
    timeout: Duration,
    /// Bound of one request to the owner.
    request_timeout: Duration,
}

impl RunControl {
    pub(crate) fn new(
        client: async_nats::Client,
        events: EventLog,
        timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        Self {
            client,
            events,
            timeout,
            request_timeout,
        }
    }

    #[tracing::instrument(skip_all, fields(run_id = %run_id))]
    pub(crate) async fn stop(
        &self,
        run_id: RunId,
        reason: Option<String>,
    ) -> Result<StopOutcome, ControlError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = self.events.last(run_id).await?;
            match stage(last.as_ref()) {
                Stage::Finished => return Err(ControlError::Finished),
                Stage::BeforeDispatch(mut position) => {
                    let mut completed =
                        RunCompleted::failed(FailureReason::Stopped, "stopped before dispatch");
                    if let Some(reason) = &reason {
                        completed.detail = Some(format!("stopped before dispatch: {reason}"));
                    }
                    match self
                        .events
                        .append(run_id, &mut position, RunEventKind::RunCompleted(completed))
                        .await
                    {
                        Ok(_) => {
                            tracing::info!("run stopped before dispatch");
                            return Ok(StopOutcome::Stopped);
                        }
                        // Someone appended first (a claim, a dispatch, the end): look again.
                        Err(EventLogError::Fenced { .. }) if Instant::now() < deadline => {
                            tracing::debug!("stop raced another writer; re-reading the run");
                        }
                        Err(EventLogError::Fenced { .. }) => {
                            return Err(ControlError::OwnerUnavailable);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Stage::Dispatched => {
                    let reply = self
                        .ask_owner(run_id, &ControlRequest::Stop { reason }, deadline)
                        .await?;
                    return match reply.outcome {
                        ControlOutcome::Accepted => {
                            tracing::info!("the owning executor accepted the stop");
                            Ok(StopOutcome::Stopping)
                        }
                        // Not meaningful for a stop; treat like any other refusal.
                        ControlOutcome::NoPendingRequest
                        | ControlOutcome::Invalid
                        | ControlOutcome::UnknownRun => Err(ControlError::Rejected(
                            reply
                                .message
                                .unwrap_or_else(|| format!("{:?}", reply.outcome)),
                        )),
                    };
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(run_id = %run_id))]
    pub(crate) async fn reply(
        &self,
        run_id: RunId,
        request_id: Option<HumanLoopRequestId>,
        decision: HumanLoopDecision,
        message: Option<String>,
    ) -> Result<(), ControlError> {
        let deadline = Instant::now() + self.timeout;
        let last = self.events.last(run_id).await?;
        match stage(last.as_ref()) {
            Stage::Finished => Err(ControlError::Finished),
            Stage::BeforeDispatch(_) => Err(ControlError::NoPendingRequest(
                "the run has not started yet, so nothing is waiting for a reply".into(),
            )),
            Stage::Dispatched => {
                let request = ControlRequest::HumanLoopReply {
                    request_id,
                    decision,
                    message,
                };
                let reply = self.ask_owner(run_id, &request, deadline).await?;
                match reply.outcome {
                    ControlOutcome::Accepted => Ok(()),
                    ControlOutcome::NoPendingRequest => Err(ControlError::NoPendingRequest(
                        reply
                            .message
                            .unwrap_or_else(|| "the run has no pending human-loop request".into()),
                    )),
                    ControlOutcome::Invalid | ControlOutcome::UnknownRun => {
                        Err(ControlError::Rejected(
                            reply
                                .message
                                .unwrap_or_else(|| format!("{:?}", reply.outcome)),
                        ))
                    }
                }
            }
        }
    }

    /// Sends `request` to the run's owner until it answers or `deadline` passes. "No
    /// responders", a timeout and "unknown run" are retried (the owner may be
    /// subscribing, busy, or about to end the run); in between, a run that ended
    /// meanwhile turns the request into [`ControlError::Finished`].
    async fn ask_owner(
        &self,
        run_id: RunId,
        request: &ControlRequest,
        deadline: Instant,
    ) -> Result<ControlReply, ControlError> {
        let subject = subjects::run_control(&run_id);
        let payload = Bytes::from(
            crate::json::to_vec("a control request", request).map_err(ControlError::Encode)?,
        );
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(500))
            .without_max_times()
            .build();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ControlError::OwnerUnavailable);
            }
            let attempt = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(remaining.min(self.request_timeout)));
            match self.client.send_request(subject.clone(), attempt).await {
                Ok(message) => {
                    let reply: ControlReply =
                        serde_json::from_slice(&message.payload).map_err(ControlError::BadReply)?;
                    if reply.outcome != ControlOutcome::UnknownRun {
                        return Ok(reply);
                    }
                    tracing::debug!("the responder does not own the run (yet or any more)");
                }
                Err(e) => match e.kind() {
                    RequestErrorKind::NoResponders
                    | RequestErrorKind::TimedOut
                    | RequestErrorKind::Other => {
                        tracing::debug!(error = %e, "the run's owner did not answer; retrying");
                    }
                    RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                        return Err(ControlError::Rejected(e.to_string()));
                    }
                },
            }
            if let Some(last) = self.events.last(run_id).await?
                && last.header.is_terminal()
            {
                return Err(ControlError::Finished);
            }
            let delay = delays.next().unwrap_or(Duration::from_millis(500));
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ControlError::OwnerUnavailable);
            }
            tokio::time::sleep(delay.min(remaining)).await;
        }
    }
}
