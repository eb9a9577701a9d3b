//! Control of an owned run: stop and human-loop replies, as core NATS requests on
//! `runs.control.<run_id>` (from the control-plane) or calls from the standalone HTTP
//! API. The subscription lives exactly as long as the executor owns the run; a run in
//! a run host is controlled by the host's subscription, and the executor forwards its
//! own requests there.

use crate::executor::Executor;
use crate::human_loop::HumanReply;
use crate::runs::{RunState, StopCause};
use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::control::{ControlOutcome, ControlReply, ControlRequest};
use switchyard_contracts::{RunId, subjects};

/// Bound on draining the subscription after the run ended (a NATS outage must not
/// keep the task alive forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies a control request to a run owned here (or `None` when it is not).
pub(crate) fn apply(run: Option<&RunState>, request: ControlRequest) -> ControlReply {
    let Some(run) = run.filter(|run| !run.has_ended()) else {
        return ControlReply::with_message(
            ControlOutcome::UnknownRun,
            "this executor does not own the run (it never did, or the run ended)",
        );
    };
    match request {
        ControlRequest::Stop { reason } => {
            tracing::info!(run_id = %run.run_id, reason = reason.as_deref(), "stop requested");
            run.request_stop(StopCause::Requested(reason));
            ControlReply::new(ControlOutcome::Accepted)
        }
        ControlRequest::HumanLoopReply {
            request_id,
            decision,
            message,
        } => match run
            .pending
            .answer(request_id.as_ref(), HumanReply { decision, message })
        {
            Ok(()) => ControlReply::new(ControlOutcome::Accepted),
            Err(e) => ControlReply::with_message(ControlOutcome::NoPendingRequest, e.to_string()),
        },
    }
}

/// Applies a control request from the HTTP API: to the run in-process, or forwarded
/// to the run host that runs it.
pub(crate) async fn apply_here(
    executor: &Executor,
    run_id: RunId,
    request: ControlRequest,
) -> ControlReply {
    match executor.runs.get(&run_id) {
        Some(run) if run.is_hosted() && !run.has_ended() => {
            forward(&executor.client, run_id, &request).await
        }
        run => apply(run.as_deref(), request),
    }
}

/// Sends a control request to whoever answers the run's control subject (its run
/// host), over NATS.
pub(crate) async fn forward(
    client: &Client,
    run_id: RunId,
    request: &ControlRequest,
) -> ControlReply {
    let payload = match serde_json::to_vec(request) {
        Ok(payload) => payload,
        Err(error) => {
            switchyard_platform::metrics::serialization_failed();
            tracing::error!(%run_id, %error, "cannot encode a control request for the run host");
            return ControlReply::with_message(
                ControlOutcome::Invalid,
                "the executor could not encode the control request",
            );
        }
    };
    match client
        .request(subjects::run_control(&run_id), payload.into())
        .await
    {
        Ok(message) => serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
            ControlReply::with_message(
                ControlOutcome::Invalid,
                format!("undecodable answer from the run host: {e}"),
            )
        }),
        Err(e) => ControlReply::with_message(
            ControlOutcome::UnknownRun,
            format!("the run host did not answer: {e}"),
        ),
    }
}

/// Answers the run's control subject until the run has ended, then unsubscribes and
/// answers what was still in flight with `unknown_run`.
pub(crate) async fn serve(client: Client, run: Arc<RunState>, mut subscriber: Subscriber) {
    loop {
        tokio::select! {
            biased;
            _ = run.ended.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => respond(&client, &run, message).await,
                None => return,
            },
        }
    }
    if let Err(error) = subscriber.drain().await {
        tracing::debug!(run_id = %run.run_id, %error, "could not drain the control subscription");
        return;
    }
    let leftovers = async {
        while let Some(message) = subscriber.next().await {
            respond(&client, &run, message).await;
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, leftovers).await;
}

async fn respond(client: &Client, run: &RunState, message: Message) {
    let Some(reply_to) = message.reply else {
        tracing::debug!(run_id = %run.run_id, "control message without a reply subject ignored");
        return;
    };
    let reply = match serde_json::from_slice::<ControlRequest>(&message.payload) {
        Ok(request) => apply(Some(run), request),
        Err(error) => {
            tracing::warn!(run_id = %run.run_id, %error, "undecodable control request");
            ControlReply::with_message(
                ControlOutcome::Invalid,
                format!("cannot decode the control request: {error}"),
            )
        }
    };
    // A reply that cannot be encoded is not sent at all: the requester times out and
    // sees no answer rather than an empty one it would misread.
    let payload = match serde_json::to_vec(&reply) {
        Ok(payload) => payload,
        Err(error) => {
            switchyard_platform::metrics::serialization_failed();
            tracing::error!(run_id = %run.run_id, %error, outcome = ?reply.outcome, "cannot encode the answer to a control request; not answering");
            return;
        }
    };
    if let Err(error) = client.publish(reply_to, payload.into()).await {
        tracing::warn!(run_id = %run.run_id, %error, "could not answer a control request");
    }
}
