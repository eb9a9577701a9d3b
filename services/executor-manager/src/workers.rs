//! Workers: fetch loops on the shared durable pull consumer `executor-manager`, each
//! message handled in its own task (at most `max_in_flight` per process) and settled
//! as an ack, a nak with delay or a term.
//!
//! Every manager process and every loop in it pulls from the same consumer, so adding
//! loops or processes adds throughput; JetStream hands each command to one of them at a
//! time and redelivers it when it is nakked or its ack wait runs out.

use crate::config::ExecutorManagerSettings;
use crate::dispatch::{Dispatcher, Outcome};
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use backon::BackoffBuilder;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::RunCommand;
use switchyard_platform::nats::ConnectionWatch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long one pull request waits for commands. New commands are delivered as soon
/// as they arrive; this only bounds how long a shutdown waits for the open request.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// Time on top of the dispatch timeout for in-flight commands to be settled at shutdown.
const SETTLE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot request a batch of run commands: {0}")]
    Pull(#[source] jetstream::consumer::pull::BatchError),
    #[error("a batch of run commands failed: {0}")]
    Batch(#[source] async_nats::Error),
    #[error("the in-flight limit was closed")]
    Closed,
}

/// The worker pool of one manager process.
pub(crate) struct Workers {
    /// Pull requests do not survive a reconnect: a fetch starts over on one.
    lifecycle: ConnectionWatch,
    consumer: PullConsumer,
    dispatcher: Dispatcher,
    settings: Arc<ExecutorManagerSettings>,
    in_flight: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Workers {
    pub(crate) fn new(
        lifecycle: ConnectionWatch,
        consumer: PullConsumer,
        dispatcher: Dispatcher,
        settings: Arc<ExecutorManagerSettings>,
    ) -> Arc<Self> {
        let permits = usize::try_from(settings.max_in_flight).unwrap_or(usize::MAX);
        Arc::new(Self {
            lifecycle,
            consumer,
            dispatcher,
            in_flight: Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS))),
            settings,
            tracker: TaskTracker::new(),
        })
    }

    /// Runs the fetch loops until `shutdown`, then waits (bounded) for the commands in
    /// flight to be settled.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut loops = JoinSet::new();
        for index in 0..self.settings.workers {
            loops.spawn(self.clone().fetch_loop(index, shutdown.clone()));
        }
        while let Some(result) = loops.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a fetch loop ended abnormally");
            }
        }
        self.tracker.close();
        let grace = self.settings.dispatch_timeout() + SETTLE_GRACE;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.tracker.len(),
                "commands still in flight at shutdown; JetStream redelivers them after the ack wait"
            );
        }
    }

    async fn fetch_loop(self: Arc<Self>, index: u32, shutdown: CancellationToken) {
        let backoff = crate::connection::reconnect_backoff();
        let mut delays = backoff.build();
        while !shutdown.is_cancelled() {
            // Ask only for what this process can start right away: a command waiting in
            // our memory for a permit would just age towards its ack wait.
            let first = tokio::select! {
                permit = self.in_flight.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = shutdown.cancelled() => return,
            };
            let batch_size = usize::try_from(self.settings.batch_size).unwrap_or(usize::MAX);
            let want = (1 + self.in_flight.available_permits()).min(batch_size);
            match self.fetch_batch(want, first, &shutdown).await {
                Ok(()) => delays = backoff.build(),
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(worker = index, %error, ?delay, "fetching run commands failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn fetch_batch(
        self: &Arc<Self>,
        want: usize,
        first: OwnedSemaphorePermit,
        shutdown: &CancellationToken,
    ) -> Result<(), FetchError> {
        let mut reconnects = self.lifecycle.clone();
        reconnects.catch_up();
        let mut batch = self
            .consumer
            .batch()
            .max_messages(want)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
            .map_err(FetchError::Pull)?;
        let mut first = Some(first);
        // Read the batch to its end even when shutting down: a command the server
        // already sent us and we ignored would sit out the whole ack wait.
        loop {
            let item = tokio::select! {
                item = batch.next() => item,
                // A restarted server forgot our pull request; async-nats would only
                // give up on it seconds after it expired.
                _ = reconnects.reconnected() => {
                    tracing::debug!("NATS reconnected; fetching anew");
                    return Ok(());
                }
            };
            let Some(item) = item else { break };
            let message = item.map_err(FetchError::Batch)?;
            if shutdown.is_cancelled() {
                settle(&message, Outcome::Retry(Duration::ZERO)).await;
                continue;
            }
            let permit = match first.take() {
                Some(permit) => permit,
                None => self
                    .in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| FetchError::Closed)?,
            };
            let this = Arc::clone(self);
            self.tracker.spawn(async move {
                this.process(message).await;
                drop(permit);
            });
        }
        Ok(())
    }

    async fn process(&self, message: jetstream::Message) {
        let stream_seq = message.info().ok().map(|info| info.stream_sequence);
        let command: RunCommand = match serde_json::from_slice(&message.payload) {
            Ok(command) => command,
            Err(error) => {
                tracing::warn!(
                    stream_seq,
                    subject = %message.subject,
                    %error,
                    "run command is not a valid RunCommand; terminating it"
                );
                settle(&message, Outcome::Terminal).await;
                return;
            }
        };
        let trace_id = crate::dispatch::trace_id(&message);
        let span = tracing::info_span!("run_command", run_id = %command.run_id, trace_id = trace_id.as_deref(), stream_seq);
        async {
            let outcome = self.dispatcher.dispatch(&command, &message).await;
            settle(&message, outcome).await;
        }
        .instrument(span)
        .await;
    }
}

/// Maps an outcome onto the message. An ack is a double ack: the command is only gone
/// once the server confirmed it, and a lost ack makes a redelivery that the run's event
/// log then recognises as already dispatched.
async fn settle(message: &jetstream::Message, outcome: Outcome) {
    let result = match outcome {
        Outcome::Ack => message.double_ack().await,
        Outcome::Retry(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
        Outcome::Terminal => message.ack_with(AckKind::Term).await,
    };
    match result {
        Ok(()) => tracing::debug!(?outcome, "command settled"),
        Err(error) => tracing::warn!(
            ?outcome,
            %error,
            "cannot settle the command; JetStream delivers it again after the ack wait"
        ),
    }
}
