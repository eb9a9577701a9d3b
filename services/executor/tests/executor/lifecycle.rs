//! Presence heartbeats and graceful shutdown (a drain).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use serde_json::json;
use switchyard_contracts::RunEventKind;
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::event::{FailureReason, HumanLoopDecision, RunCompleted, TerminalStatus};

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

/// Whether the events hold the shutdown `diagnostic` before a `run.completed` whose
/// detail says the same; returns that detail.
fn shutdown_detail(events: &[switchyard_contracts::RunEvent]) -> String {
    let completed = completion(events);
    assert_eq!(completed.status, TerminalStatus::Stopped);
    assert_eq!(completed.reason, Some(FailureReason::Stopped));
    let detail = completed.detail.expect("a detail");
    assert!(detail.starts_with("executor shutdown"), "{detail}");
    let noted = events
        .iter()
        .any(|e| matches!(&e.kind, RunEventKind::Diagnostic(d) if d.message == detail));
    assert!(noted, "no shutdown diagnostic in {:?}", types(events));
    detail
}

#[tokio::test]
async fn a_draining_executor_finishes_its_runs_then_stops() {
    let mut harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "Deploy?"}},
        {"message": {"text": "deployed"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "human_loop.requested")
        .await;

    harness.begin_shutdown();
    let record = harness.wait_for_presence(|p| p.draining).await;
    assert_eq!((record.active, record.free_slots()), (1, 0));
    // It left the dispatch subject (requests in flight were answered `draining`).
    let refused = harness
        .client
        .request(
            switchyard_contracts::subjects::executor_dispatch(&harness.executor_id),
            serde_json::to_vec(&fresh_dispatch(json!([])))
                .unwrap()
                .into(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(!harness.is_stopped(), "the executor waits for its run");

    // The run still answers for itself: the approval goes through.
    let reply = harness
        .control(
            run_id,
            &ControlRequest::HumanLoopReply {
                request_id: None,
                decision: HumanLoopDecision::Approve,
                message: None,
            },
        )
        .await;
    assert_eq!(reply.outcome, ControlOutcome::Accepted, "{reply:?}");
    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(completion(&events), RunCompleted::succeeded());

    harness.stopped().await;
    assert!(harness.presence().await.is_none(), "presence withdrawn");
}

#[tokio::test]
async fn the_drain_timeout_stops_the_runs_left_and_says_why() {
    let mut harness = Harness::start_with(|s| s.drain_timeout_ms = 500).await;
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
    let detail = shutdown_detail(&events);
    assert!(detail.contains("drain timeout of 500 ms"), "{detail}");
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

#[tokio::test]
async fn a_second_signal_stops_the_draining_runs_at_once() {
    // The default drain timeout (10 minutes) would outlast the test.
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
    harness.begin_shutdown();
    harness.wait_for_presence(|p| p.draining).await;
    assert!(!harness.is_stopped(), "the executor waits for its run");

    harness.immediate.cancel();
    harness.stopped().await;
    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    let detail = shutdown_detail(&events);
    assert!(detail.contains("stop at once"), "{detail}");
}
