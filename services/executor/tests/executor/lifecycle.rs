//! Presence heartbeats and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use serde_json::json;
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::event::{FailureReason, TerminalStatus};

#[tokio::test]
async fn presence_is_published_and_follows_active_runs() {
    let harness = Harness::start_with(|s| s.capacity = 4).await;
    // Written before start() returned.
    let record = harness.presence().await.expect("a presence record");
    assert_eq!(record.executor_id, harness.executor_id);
    assert_eq!(record.capacity, 4);
    assert_eq!(record.active, 0);
    assert!(!record.draining);
    assert!(record.supports("scripted"));
    assert_eq!(record.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(record.free_slots(), 4);

    let request = fresh_dispatch(json!([{"sleepMs": 60000}]));
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let busy = harness.wait_for_presence(|p| p.active == 1).await;
    assert_eq!(busy.free_slots(), 3);
    assert!(busy.heartbeat_at >= record.heartbeat_at);
    assert_eq!(busy.started_at, record.started_at);
}

#[tokio::test]
async fn shutdown_stops_active_runs_and_withdraws_presence() {
    let mut harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"message": {"text": "started"}},
        {"sleepMs": 60000}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "message.completed")
        .await;

    harness.shutdown().await;

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::Stopped);
    assert_eq!(completed.reason, Some(FailureReason::Stopped));
    assert!(harness.presence().await.is_none(), "presence withdrawn");
    // Nobody answers on the dispatch subject any more.
    let gone = harness
        .client
        .request(
            switchyard_contracts::subjects::executor_dispatch(&harness.executor_id),
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await;
    assert!(gone.is_err(), "{gone:?}");
}
