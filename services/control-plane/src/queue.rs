//! The run queue as operators see it: what the work-queue stream holds, what workers
//! have claimed, and which runs are still waiting for an executor (and why: see
//! [`crate::waiting`]).

use crate::actor::Actor;
use crate::config::ControlPlaneSettings;
use crate::store::{self, StoreError};
use async_nats::jetstream::{self, context::ConsumerInfoErrorKind};
use sqlx::PgPool;
use switchyard_contracts::api::RunQueueView;
use switchyard_contracts::subjects;

/// Runs listed in the view.
const LISTED_RUNS: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub(crate) enum QueueError {
    #[error("cannot read the {stream} stream: {message}")]
    Nats {
        stream: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) async fn snapshot(
    js: &jetstream::Context,
    pool: &PgPool,
    settings: &ControlPlaneSettings,
    actor: &Actor,
    nats_timeout: std::time::Duration,
) -> Result<RunQueueView, QueueError> {
    let nats_error = |e: &dyn std::fmt::Display| QueueError::Nats {
        stream: subjects::RUN_COMMANDS_STREAM,
        message: e.to_string(),
    };
    let mut stream = js
        .get_stream(subjects::RUN_COMMANDS_STREAM)
        .await
        .map_err(|e| nats_error(&e))?;
    let messages = stream
        .info()
        .await
        .map_err(|e| nats_error(&e))?
        .state
        .messages;
    // Work-queue retention removes a command once a worker acks it, so the stream holds
    // the undelivered commands plus the ones a worker is dispatching right now.
    let in_flight = match stream.consumer_info(subjects::RUN_COMMANDS_CONSUMER).await {
        Ok(info) => info.num_ack_pending as u64,
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => 0,
        Err(e) => return Err(nats_error(&e)),
    };
    let mut runs = Vec::new();
    for row in store::runs::waiting(pool, LISTED_RUNS).await? {
        if actor.may_see_run(row.app()?.as_ref(), row.created_by.as_deref()) {
            let url = settings.stream_url(&row.run_id);
            runs.push(row.into_view(url)?);
        }
    }
    crate::waiting::annotate(js, nats_timeout, &mut runs).await;
    Ok(RunQueueView {
        pending: messages.saturating_sub(in_flight),
        in_flight,
        runs,
    })
}
