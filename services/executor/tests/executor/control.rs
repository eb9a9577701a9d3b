//! Control of owned runs over NATS: stop, human-loop replies, timeouts, fencing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use serde_json::json;
use std::time::Duration;
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::event::{
    FailureReason, HumanLoopDecision, HumanLoopKind, HumanLoopResolver, RunCompleted,
    TerminalStatus,
};
use switchyard_contracts::{HumanLoopRequestId, RunEventKind};

fn requested_id(event: &switchyard_contracts::RunEvent) -> Option<HumanLoopRequestId> {
    match &event.kind {
        RunEventKind::HumanLoopRequested(r) => Some(r.request_id.clone()),
        _ => None,
    }
}

fn reply(request_id: Option<HumanLoopRequestId>, decision: HumanLoopDecision) -> ControlRequest {
    ControlRequest::HumanLoopReply {
        request_id,
        decision,
        message: None,
    }
}

#[tokio::test]
async fn a_stop_request_ends_the_run_stopped_and_keeps_its_events() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"message": {"text": "partial output", "chunks": 2}},
        {"sleepMs": 60000},
        {"message": {"text": "never"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "message.completed")
        .await;

    let reply = harness
        .control(
            run_id,
            &ControlRequest::Stop {
                reason: Some("user pressed stop".into()),
            },
        )
        .await;
    assert_eq!(reply.outcome, ControlOutcome::Accepted);

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(
        types(&events),
        vec![
            "run.dispatched",
            "run.started",
            "message.delta",
            "message.delta",
            "message.completed",
            "run.completed"
        ]
    );
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::Stopped);
    assert_eq!(completed.reason, Some(FailureReason::Stopped));
    assert!(completed.detail.unwrap().contains("user pressed stop"));

    // The run is over: nobody owns it any more (no responder, or `unknown_run` while
    // the subscription is being drained).
    let after = harness
        .control_raw(
            run_id,
            serde_json::to_vec(&ControlRequest::Stop { reason: None }).unwrap(),
        )
        .await;
    assert!(
        after
            .as_ref()
            .map_or(true, |r| r.outcome == ControlOutcome::UnknownRun),
        "{after:?}"
    );
}

#[tokio::test]
async fn human_loop_replies_resolve_requests_and_the_run_goes_on() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "Run ls?", "kind": "command", "details": {"command": "ls"}}},
        {"humanLoop": {"prompt": "Run rm -rf build?"}},
        {"message": {"text": "done"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );

    let first = harness
        .wait_for_event(run_id, |e| requested_id(e).is_some())
        .await;
    let first_id = requested_id(&first).unwrap();
    let answer = harness
        .control(
            run_id,
            &reply(Some(first_id.clone()), HumanLoopDecision::Approve),
        )
        .await;
    assert_eq!(answer.outcome, ControlOutcome::Accepted);

    let second = harness
        .wait_for_event(run_id, |e| requested_id(e).is_some_and(|id| id != first_id))
        .await;
    let second_id = requested_id(&second).unwrap();
    // The first request is resolved: naming it again finds nothing pending.
    let stale = harness
        .control(
            run_id,
            &reply(Some(first_id.clone()), HumanLoopDecision::Approve),
        )
        .await;
    assert_eq!(stale.outcome, ControlOutcome::NoPendingRequest);
    // Without an id, the reply goes to the oldest pending request: the second.
    let deny = harness
        .control(run_id, &reply(None, HumanLoopDecision::Deny))
        .await;
    assert_eq!(deny.outcome, ControlOutcome::Accepted);

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(
        types(&events),
        vec![
            "run.dispatched",
            "run.started",
            "human_loop.requested",
            "human_loop.resolved",
            "human_loop.requested",
            "human_loop.resolved",
            "diagnostic",
            "message.delta",
            "message.completed",
            "run.completed"
        ]
    );
    let resolutions: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::HumanLoopResolved(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resolutions[0].request_id, first_id);
    assert_eq!(resolutions[0].decision, HumanLoopDecision::Approve);
    assert_eq!(resolutions[0].resolved_by, HumanLoopResolver::Human);
    assert_eq!(resolutions[1].request_id, second_id);
    assert_eq!(resolutions[1].decision, HumanLoopDecision::Deny);
    match &first.kind {
        RunEventKind::HumanLoopRequested(r) => {
            assert_eq!(r.kind, HumanLoopKind::Command);
            assert_eq!(r.prompt, "Run ls?");
            assert_eq!(r.details["command"], "ls");
        }
        _ => unreachable!(),
    }
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn a_reply_when_nothing_is_pending_is_refused() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([{"sleepMs": 60000}]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let answer = harness
        .control(run_id, &reply(None, HumanLoopDecision::Approve))
        .await;
    assert_eq!(answer.outcome, ControlOutcome::NoPendingRequest);
    let stop = harness
        .control(run_id, &ControlRequest::Stop { reason: None })
        .await;
    assert_eq!(stop.outcome, ControlOutcome::Accepted);
    let events = harness.events_until_terminal(run_id).await;
    assert_eq!(completion(&events).status, TerminalStatus::Stopped);
}

#[tokio::test]
async fn a_stop_while_a_human_is_asked_resolves_the_request_run_ended() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([{"humanLoop": {"prompt": "Deploy?"}}]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let asked = harness
        .wait_for_event(run_id, |e| requested_id(e).is_some())
        .await;
    let stop = harness
        .control(run_id, &ControlRequest::Stop { reason: None })
        .await;
    assert_eq!(stop.outcome, ControlOutcome::Accepted);

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    let n = events.len();
    match &events[n - 2].kind {
        RunEventKind::HumanLoopResolved(r) => {
            assert_eq!(Some(r.request_id.clone()), requested_id(&asked));
            assert_eq!(r.resolved_by, HumanLoopResolver::RunEnded);
            assert_eq!(r.decision, HumanLoopDecision::Deny);
        }
        other => panic!("expected human_loop.resolved before run.completed, got {other:?}"),
    }
    assert_eq!(completion(&events).status, TerminalStatus::Stopped);
}

#[tokio::test]
async fn the_run_timeout_ends_the_run_timed_out() {
    let harness = Harness::start().await;
    let mut request = fresh_dispatch(json!([
        {"message": {"text": "working"}},
        {"sleepMs": 60000}
    ]));
    request.timeout_ms = 300;
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert!(types(&events).contains(&"message.completed"));
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::TimedOut);
    assert_eq!(completed.reason, Some(FailureReason::Timeout));
    assert!(completed.detail.unwrap().contains("300 ms"));
}

#[tokio::test]
async fn time_waiting_for_a_human_does_not_count_toward_the_timeout() {
    let harness = Harness::start().await;
    let mut request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "Proceed?"}},
        {"message": {"text": "proceeding"}}
    ]));
    request.timeout_ms = 300;
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness
        .wait_for_event(run_id, |e| requested_id(e).is_some())
        .await;
    // Twice the timeout passes while the human thinks: that is the point of the test.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = harness
        .control(run_id, &reply(None, HumanLoopDecision::Approve))
        .await;
    assert_eq!(answer.outcome, ControlOutcome::Accepted);

    let events = harness.events_until_terminal(run_id).await;
    assert_eq!(
        completion(&events),
        RunCompleted::succeeded(),
        "{:?}",
        types(&events)
    );
    assert!(types(&events).contains(&"message.completed"));
}

#[tokio::test]
async fn garbage_control_requests_get_invalid_and_the_run_stays_controllable() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([{"sleepMs": 60000}]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    for garbage in [
        b"stop".to_vec(),
        b"{\"action\": \"explode\"}".to_vec(),
        b"{\"action\": \"human_loop_reply\", \"decision\": \"maybe\"}".to_vec(),
        vec![0xff],
    ] {
        let reply = harness.control_raw(run_id, garbage).await.unwrap();
        assert_eq!(reply.outcome, ControlOutcome::Invalid, "{reply:?}");
    }
    let stop = harness
        .control(run_id, &ControlRequest::Stop { reason: None })
        .await;
    assert_eq!(stop.outcome, ControlOutcome::Accepted);
    let events = harness.events_until_terminal(run_id).await;
    assert_eq!(completion(&events).status, TerminalStatus::Stopped);
}

#[tokio::test]
async fn a_fenced_executor_stops_the_run_and_writes_nothing_more() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"message": {"text": "before"}},
        {"sleepMs": 1000},
        {"message": {"text": "after"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness.wait_for_presence(|p| p.active == 1).await;
    harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "message.completed")
        .await;
    // Another writer takes the run over (as recovery would) while the provider sleeps.
    let mut position = harness.log.position(run_id).await.unwrap();
    let takeover = RunCompleted::failed(FailureReason::ExecutorLost, "taken over by a test");
    harness
        .log
        .append(
            run_id,
            &mut position,
            RunEventKind::RunCompleted(takeover.clone()),
        )
        .await
        .unwrap();

    // The executor notices at its next append, stops, and frees the slot.
    harness.wait_for_presence(|p| p.active == 0).await;
    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(completion(&events), takeover);
    let last = harness.log.last(run_id).await.unwrap().unwrap();
    assert_eq!(
        last.header.seq,
        events.len() as u64,
        "nothing after the takeover"
    );
    let deltas = types(&events)
        .iter()
        .filter(|t| **t == "message.delta")
        .count();
    assert_eq!(deltas, 1, "only the message before the takeover");
}
