//! Presence: this executor's record in the `EXECUTORS` KV bucket (key = executor id),
//! which executor-manager workers read to pick an executor. Refreshed every
//! `heartbeat_ms` and right after a run starts or ends — also while the executor drains
//! (`draining: true`, so nobody dispatches to it and the reconciler sees it alive);
//! the bucket's TTL removes the record of an executor that died without withdrawing it.

use crate::executor::Executor;
use async_nats::jetstream::kv;
use chrono::Utc;
use std::sync::Arc;
use switchyard_contracts::presence::ExecutorPresence;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// The record as of now.
pub(crate) fn record(executor: &Executor) -> ExecutorPresence {
    ExecutorPresence {
        executor_id: executor.id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capacity: executor.runs.capacity(),
        active: executor.runs.active(),
        draining: executor.runs.is_draining(),
        providers: executor.providers.availability(),
        started_at: executor.started_at,
        heartbeat_at: Utc::now(),
    }
}

/// Writes the current record. Failures are logged and retried by the next heartbeat.
pub(crate) async fn publish(executor: &Executor, kv: &kv::Store) -> bool {
    let payload = match serde_json::to_vec(&record(executor)) {
        Ok(payload) => payload,
        Err(error) => {
            switchyard_platform::metrics::serialization_failed();
            tracing::error!(%error, "cannot encode the presence record");
            return false;
        }
    };
    match kv.put(&executor.id, payload.into()).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(executor_id = %executor.id, %error, "presence heartbeat failed");
            false
        }
    }
}

/// Heartbeats until `stop` is cancelled. Changes in a burst (many runs ending at once)
/// coalesce into one write: the change notification holds at most one permit.
pub(crate) async fn serve(executor: Arc<Executor>, kv: kv::Store, stop: CancellationToken) {
    let mut heartbeat = tokio::time::interval(executor.settings.heartbeat());
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = executor.runs.changed() => {}
            _ = heartbeat.tick() => {}
        }
        publish(&executor, &kv).await;
    }
}

/// Removes the record (graceful shutdown), so that nobody picks this executor any more.
pub(crate) async fn withdraw(executor: &Executor, kv: &kv::Store) {
    if let Err(error) = kv.delete(&executor.id).await {
        tracing::warn!(executor_id = %executor.id, %error, "could not withdraw the presence record");
    }
}
