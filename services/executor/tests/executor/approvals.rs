//! Approval timeouts: a human-loop request nobody answers in time is declined
//! (`deny`, resolved by `timeout`) and the run goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use serde_json::json;
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::dispatch::DispatchOutcome;
use switchyard_contracts::event::{
    HumanLoopDecision, HumanLoopResolved, HumanLoopResolver, RunCompleted,
};
use switchyard_contracts::{HumanLoopRequestId, RunEventKind};

fn resolutions(events: &[switchyard_contracts::RunEvent]) -> Vec<HumanLoopResolved> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::HumanLoopResolved(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn requested_id(event: &switchyard_contracts::RunEvent) -> Option<HumanLoopRequestId> {
    match &event.kind {
        RunEventKind::HumanLoopRequested(r) => Some(r.request_id.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn an_unanswered_request_is_declined_by_timeout_and_the_run_goes_on() {
    let harness = Harness::start().await;
    let mut request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "Deploy?"}},
        {"message": {"text": "carrying on"}}
    ]));
    request.command.provider_options["humanLoopTimeoutMs"] = json!(300);
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(
        completion(&events),
        RunCompleted::succeeded(),
        "{:?}",
        types(&events)
    );
    let asked = events.iter().find_map(requested_id).expect("a request");
    let resolved = resolutions(&events);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0].request_id, asked);
    assert_eq!(resolved[0].decision, HumanLoopDecision::Deny);
    assert_eq!(resolved[0].resolved_by, HumanLoopResolver::Timeout);
    assert!(
        resolved[0].message.as_deref().unwrap().contains("300 ms"),
        "{resolved:?}"
    );
    // The script went on after the denial.
    assert!(types(&events).contains(&"message.completed"));
}

#[tokio::test]
async fn the_configured_timeout_applies_and_a_prompt_answer_beats_it() {
    let harness = Harness::start_with(|s| s.human_loop_timeout_ms = 400).await;
    // First request: nobody answers; second: answered at once (well within 400 ms
    // of active waiting), so it is the human's decision that counts.
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "First?"}},
        {"humanLoop": {"prompt": "Second?"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness
        .wait_for_event(
            run_id,
            |e| matches!(&e.kind, RunEventKind::HumanLoopRequested(r) if r.prompt == "Second?"),
        )
        .await;
    let answer = harness
        .control(
            run_id,
            &ControlRequest::HumanLoopReply {
                request_id: None,
                decision: HumanLoopDecision::Approve,
                message: None,
            },
        )
        .await;
    assert_eq!(answer.outcome, ControlOutcome::Accepted, "{answer:?}");
    let events = harness.events_until_terminal(run_id).await;
    assert_eq!(completion(&events), RunCompleted::succeeded());
    let resolved = resolutions(&events);
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert_eq!(resolved[0].resolved_by, HumanLoopResolver::Timeout);
    assert_eq!(resolved[0].decision, HumanLoopDecision::Deny);
    assert_eq!(resolved[1].resolved_by, HumanLoopResolver::Human);
    assert_eq!(resolved[1].decision, HumanLoopDecision::Approve);
}
