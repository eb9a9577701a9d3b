//! Dispatch: taking ownership of a run. Requests arrive on
//! `executors.<executor_id>.dispatch` (from executor-manager workers) or from the
//! standalone HTTP API; both go through [`accept`].
//!
//! Acceptance order matters: reserve a slot, subscribe to the run's control subject,
//! and only then append `run.dispatched` at the position the requester read. Once a run
//! is visibly dispatched its owner answers control requests, and a requester with a
//! stale position is fenced by the stream (`conflict`) instead of starting the run twice.
//! A request is judged at its own position: a redelivery of the dispatch that admitted
//! a run here gets the same answer, a request at a later position (the run was queued
//! again after this executor was taken for lost) is a new dispatch.

use crate::control;
use crate::executor::Executor;
use crate::hosting::{HostSpec, RunHosts};
use crate::runs::{self, Acceptance, Admission, Ticket};
use crate::sink::{EventSink, stored_anyway};
use crate::supervisor::{self, Supervised, hosted};
use async_nats::{Message, Subscriber};
use futures::StreamExt;
use std::sync::Arc;
use switchyard_contracts::dispatch::{
    DispatchOutcome, DispatchReply, DispatchRequest, EventPosition,
};
use switchyard_contracts::event::RunDispatched;
use switchyard_contracts::{RunEvent, RunEventKind, subjects};
use switchyard_platform::events::EventLogError;
use switchyard_platform::trace::{TRACEPARENT, trace_id_of};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Answers dispatch requests until `stop` is cancelled; then unsubscribes and answers
/// the requests still in flight (with `draining`, as the executor is draining by then).
pub(crate) async fn serve(
    executor: Arc<Executor>,
    mut subscriber: Subscriber,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => spawn_handler(&executor, message),
                None => {
                    tracing::warn!("dispatch subscription closed");
                    return;
                }
            },
        }
    }
    if let Err(error) = subscriber.drain().await {
        tracing::debug!(%error, "could not drain the dispatch subscription");
        return;
    }
    let leftovers = async {
        while let Some(message) = subscriber.next().await {
            spawn_handler(&executor, message);
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), leftovers).await;
}

/// Requests are handled concurrently: one slow append must not hold up the others.
fn spawn_handler(executor: &Arc<Executor>, message: Message) {
    let executor_for_task = executor.clone();
    executor
        .tasks
        .spawn(async move { handle(executor_for_task, message).await });
}

async fn handle(executor: Arc<Executor>, message: Message) {
    let Some(reply_to) = message.reply else {
        tracing::debug!("dispatch message without a reply subject ignored");
        return;
    };
    // The start request's trace, which the manager passes on (see platform::trace).
    let trace_id = trace_id_of(
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(TRACEPARENT))
            .map(|v| v.as_str()),
    );
    let (run_id, reply) = match serde_json::from_slice::<DispatchRequest>(&message.payload) {
        Ok(request) => (
            Some(request.command.run_id),
            accept(&executor, request, trace_id).await,
        ),
        Err(error) => {
            tracing::warn!(%error, "undecodable dispatch request");
            let reply = DispatchReply::with_message(
                DispatchOutcome::Invalid,
                format!("cannot decode the dispatch request: {error}"),
            );
            (None, reply)
        }
    };
    // A reply that cannot be encoded is not sent at all: the requester times out and
    // retries, rather than reading an empty answer.
    let payload = match serde_json::to_vec(&reply) {
        Ok(payload) => payload,
        Err(error) => {
            switchyard_platform::metrics::serialization_failed();
            tracing::error!(run_id = run_id.map(tracing::field::display), %error, outcome = ?reply.outcome, "cannot encode the answer to a dispatch request; not answering");
            return;
        }
    };
    if let Err(error) = executor.client.publish(reply_to, payload.into()).await {
        tracing::warn!(run_id = run_id.map(tracing::field::display), %error, "could not answer a dispatch request");
    }
}

/// Takes ownership of the run, or says why not. Idempotent: a redelivered request for
/// a run admitted here answers like the first one did. `trace_id` (of the start
/// request, when known) goes on the dispatch's and the run's spans.
pub(crate) async fn accept(
    executor: &Arc<Executor>,
    request: DispatchRequest,
    trace_id: Option<String>,
) -> DispatchReply {
    let run_id = request.command.run_id;
    let span = tracing::info_span!("dispatch", run_id = %run_id, trace_id = trace_id.as_deref(), worker_id = %request.worker_id);
    let reply = accept_inner(executor, request, trace_id)
        .instrument(span.clone())
        .await;
    span.in_scope(|| tracing::info!(run_id = %run_id, outcome = ?reply.outcome, message = reply.message.as_deref(), "dispatch answered"));
    reply
}

async fn accept_inner(
    executor: &Arc<Executor>,
    request: DispatchRequest,
    trace_id: Option<String>,
) -> DispatchReply {
    let run_id = request.command.run_id;
    if executor.runs.is_draining() {
        return DispatchReply::new(DispatchOutcome::Draining);
    }
    // A request for a run being admitted here waits for that admission. If it was
    // rejected, that verdict was about the earlier request's position, not this one's
    // (a newer claim moved the log on): its slot is free again, so judge this request
    // on its own.
    let next_seq = request.position.next_seq;
    while let Some((acceptance, admitted_at)) = executor.runs.acceptance_of(&run_id) {
        match runs::settled(acceptance).await {
            Acceptance::Rejected(_) => continue,
            settled => return existing_reply(settled, admitted_at, next_seq),
        }
    }
    let Some(provider) = executor
        .providers
        .get(&request.command.provider)
        .filter(|p| p.availability().installed)
    else {
        return DispatchReply::with_message(
            DispatchOutcome::UnsupportedProvider,
            format!(
                "provider {:?} is not available on this executor",
                request.command.provider
            ),
        );
    };
    let ticket = match executor.runs.admit(run_id, next_seq) {
        Admission::Admitted(ticket) => ticket,
        // Raced with another request for the run: answer like it, or, if it was
        // rejected, let the manager retry (a conflict makes it read the log again).
        Admission::Existing(acceptance, admitted_at) => {
            return existing_reply(runs::settled(acceptance).await, admitted_at, next_seq);
        }
        Admission::Full => {
            return DispatchReply::with_message(
                DispatchOutcome::Full,
                format!("all {} slots are taken", executor.runs.capacity()),
            );
        }
        Admission::Draining => return DispatchReply::new(DispatchOutcome::Draining),
        Admission::AlreadyRan => {
            return DispatchReply::with_message(
                DispatchOutcome::Conflict,
                "the run already ran on this executor",
            );
        }
    };

    if let Some(hosts) = executor
        .hosts
        .as_ref()
        .filter(|hosts| hosts.detaches(provider.as_ref()))
    {
        return accept_hosted(executor, hosts, request, ticket).await;
    }

    // Subscribe first: the SUB goes out on the same connection before the append's PUB,
    // so the server knows the owner before anyone can see `run.dispatched`.
    let control = match executor
        .client
        .subscribe(subjects::run_control(&run_id))
        .await
    {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(run_id = %run_id, %error, "cannot subscribe to the run's control subject");
            ticket.reject(DispatchOutcome::Full);
            return DispatchReply::with_message(
                DispatchOutcome::Full,
                "the executor cannot take runs right now (NATS subscription failed)",
            );
        }
    };
    let position = match append_dispatched(executor, &request).await {
        Ok(position) => position,
        Err(reply) => {
            ticket.reject(reply.outcome);
            return reply;
        }
    };

    let run = ticket.run().clone();
    ticket.accept();
    executor.tasks.spawn(control::serve(
        executor.client.clone(),
        run.clone(),
        control,
    ));
    executor.tasks.spawn(supervisor::supervise(
        executor.clone(),
        Supervised {
            run,
            provider,
            command: request.command,
            timeout_ms: request.timeout_ms,
            sink: EventSink::new(executor.log.clone(), run_id, position),
            trace_id,
        },
    ));
    DispatchReply::new(DispatchOutcome::Accepted)
}

/// Like the in-process path, with a run host in the executor's place: the host
/// subscribes to the control subject before `run.dispatched` is appended, then runs the
/// run from the position after it.
async fn accept_hosted(
    executor: &Arc<Executor>,
    hosts: &RunHosts,
    request: DispatchRequest,
    ticket: Ticket,
) -> DispatchReply {
    let run_id = request.command.run_id;
    let spec = HostSpec {
        executor_id: executor.id.clone(),
        command: request.command.clone(),
        timeout_ms: request.timeout_ms,
        admitted_at: request.position.next_seq,
    };
    let started = match hosts.start(&spec).await {
        Ok(started) => started,
        Err(problem) => {
            tracing::error!(run_id = %run_id, %problem, "cannot start a run host");
            ticket.reject(DispatchOutcome::Full);
            return DispatchReply::with_message(
                DispatchOutcome::Full,
                format!("the executor cannot start a run host: {problem}"),
            );
        }
    };
    if let Some(pid) = started.pid() {
        let _ = ticket.run().host.set(pid);
    }
    let position = match append_dispatched(executor, &request).await {
        Ok(position) => position,
        Err(reply) => {
            started.abandon().await;
            ticket.reject(reply.outcome);
            return reply;
        }
    };
    // Dispatched: from here the run is the host's. A host that cannot take it is
    // concluded by the watcher like one that died.
    let host = started.go(position).await;
    let run = ticket.run().clone();
    ticket.accept();
    executor
        .tasks
        .spawn(hosted::watch(executor.clone(), run, host));
    DispatchReply::new(DispatchOutcome::Accepted)
}

/// Appends `run.dispatched` at the requester's position: the position after it, or the
/// answer refusing the dispatch.
async fn append_dispatched(
    executor: &Executor,
    request: &DispatchRequest,
) -> Result<EventPosition, DispatchReply> {
    let run_id = request.command.run_id;
    let mut position = request.position;
    let dispatched = RunEventKind::RunDispatched(RunDispatched {
        executor_id: executor.id.clone(),
        timeout_ms: request.timeout_ms,
    });
    let Err(error) = executor.log.append(run_id, &mut position, dispatched).await else {
        return Ok(position);
    };
    // A retry of our own stored append is answered "wrong last sequence" too, so a
    // fenced append is only a conflict when the stored event is not ours.
    let ours = |event: &RunEvent| matches!(&event.kind, RunEventKind::RunDispatched(d) if d.executor_id == executor.id);
    match stored_anyway(&executor.log, run_id, request.position, ours).await {
        Some(next) => {
            tracing::info!(run_id = %run_id, %error, "run.dispatched append reported an error, but our event is stored");
            Ok(next)
        }
        None if matches!(error, EventLogError::Fenced { .. }) => Err(DispatchReply::with_message(
            DispatchOutcome::Conflict,
            "the run's event log moved past the given position",
        )),
        None => {
            tracing::error!(run_id = %run_id, %error, "cannot append run.dispatched");
            Err(DispatchReply::with_message(
                DispatchOutcome::Full,
                "the executor cannot write to the event log right now",
            ))
        }
    }
}

/// The answer to a request for a run admitted here at `admitted_at`, asked at
/// `next_seq`.
fn existing_reply(acceptance: Acceptance, admitted_at: u64, next_seq: u64) -> DispatchReply {
    match acceptance {
        // The run was queued again after this executor was taken for lost, and that
        // earlier dispatch has not wound down yet (its next append is fenced). The
        // manager skips a full executor until its next heartbeat: let another take it.
        Acceptance::Accepted | Acceptance::Pending if next_seq > admitted_at => {
            DispatchReply::with_message(
                DispatchOutcome::Full,
                "an earlier dispatch of the run is still winding down on this executor",
            )
        }
        Acceptance::Accepted | Acceptance::Pending => DispatchReply::with_message(
            DispatchOutcome::Accepted,
            "the run is already owned by this executor",
        ),
        Acceptance::Rejected(outcome) => DispatchReply::new(outcome),
    }
}
