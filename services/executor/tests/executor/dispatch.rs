//! Dispatch over NATS: acceptance, idempotency, fencing, capacity, providers, garbage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use serde_json::json;
use switchyard_contracts::RunEventKind;
use switchyard_contracts::control::{ControlOutcome, ControlRequest};
use switchyard_contracts::dispatch::{DispatchOutcome, EventPosition};
use switchyard_contracts::event::{FailureReason, RunClaimed, TerminalStatus, ToolStatus};

#[tokio::test]
async fn a_dispatched_scripted_run_succeeds_with_a_gapless_history() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([
        {"message": {"text": "hello world", "chunks": 3}},
        {"reasoning": {"text": "thinking"}},
        {"toolCall": {"name": "shell", "input": {"cmd": "ls"}, "output": "a.txt", "exitCode": 0}},
        {"fileChange": {"path": "a.txt", "change": "added"}},
        {"usage": {"inputTokens": 1, "outputTokens": 2}}
    ]));
    let run_id = request.command.run_id;

    let reply = harness.dispatch(&request).await;
    assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(
        types(&events),
        vec![
            "run.dispatched",
            "run.started",
            "message.delta",
            "message.delta",
            "message.delta",
            "message.completed",
            "reasoning.delta",
            "tool.started",
            "tool.output",
            "tool.completed",
            "file.changed",
            "usage",
            "run.completed",
        ]
    );
    match &events[0].kind {
        RunEventKind::RunDispatched(d) => {
            assert_eq!(d.executor_id, harness.executor_id);
            assert_eq!(d.timeout_ms, 60_000);
        }
        other => panic!("unexpected first event {other:?}"),
    }
    let text: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::MessageDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "hello world");
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        RunEventKind::ToolCompleted(t) if t.status == ToolStatus::Succeeded && t.exit_code == Some(0)
    )));
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::Succeeded);
    assert_eq!(completed.reason, None);
}

#[tokio::test]
async fn a_dispatch_after_queued_and_claimed_continues_at_the_given_position() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!(null));
    let run_id = request.command.run_id;
    // What the control-plane and the executor-manager write before dispatching.
    let mut position = EventPosition::EMPTY;
    harness.append(run_id, &mut position, queued()).await;
    harness
        .append(
            run_id,
            &mut position,
            RunEventKind::RunClaimed(RunClaimed {
                worker_id: "w1".parse().unwrap(),
                attempt: 1,
            }),
        )
        .await;

    let reply = harness
        .dispatch(&dispatch_request(request.command, position, 60_000))
        .await;
    assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    assert_eq!(
        types(&events),
        vec![
            "run.queued",
            "run.claimed",
            "run.dispatched",
            "run.started",
            "message.delta",
            "message.delta",
            "message.completed",
            "run.completed"
        ]
    );
    let text = events.iter().find_map(|e| match &e.kind {
        RunEventKind::MessageCompleted(m) => Some(m.text.clone()),
        _ => None,
    });
    assert_eq!(
        text.as_deref(),
        Some(switchyard_executor::test_support::SCRIPTED_DEFAULT_MESSAGE)
    );
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn a_redelivered_dispatch_is_accepted_without_starting_the_run_twice() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([{"sleepMs": 300}, {"message": {"text": "once"}}]));
    let run_id = request.command.run_id;

    // Concurrently (the second may find the first still being admitted) and once more.
    let (first, second) = tokio::join!(harness.dispatch(&request), harness.dispatch(&request));
    assert_eq!(first.outcome, DispatchOutcome::Accepted, "{first:?}");
    assert_eq!(second.outcome, DispatchOutcome::Accepted, "{second:?}");
    let third = harness.dispatch(&request).await;
    assert_eq!(third.outcome, DispatchOutcome::Accepted, "{third:?}");

    let events = harness.events_until_terminal(run_id).await;
    assert_contiguous(&events);
    let count = |name: &str| types(&events).iter().filter(|t| **t == name).count();
    assert_eq!(count("run.dispatched"), 1);
    assert_eq!(count("run.started"), 1);
    assert_eq!(count("message.completed"), 1);
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);

    // A late redelivery after the run ended here must not run it again.
    let late = harness.dispatch(&request).await;
    assert_eq!(late.outcome, DispatchOutcome::Conflict, "{late:?}");
    let last = harness.log.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.seq, events.len() as u64);
}

#[tokio::test]
async fn a_dispatch_with_a_stale_position_is_a_conflict_and_frees_the_slot() {
    let harness = Harness::start_with(|s| s.capacity = 1).await;
    let request = fresh_dispatch(json!(null));
    let run_id = request.command.run_id;
    // Someone concluded the run (e.g. a stop while queued) after the position was read.
    let mut position = EventPosition::EMPTY;
    harness.append(run_id, &mut position, queued()).await;

    let reply = harness.dispatch(&request).await;
    assert_eq!(reply.outcome, DispatchOutcome::Conflict, "{reply:?}");
    let last = harness.log.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.event_type, "run.queued", "nothing was appended");
    // Nobody owns the run: its control subject has no responder.
    assert!(
        harness
            .control_raw(
                run_id,
                serde_json::to_vec(&ControlRequest::Stop { reason: None }).unwrap()
            )
            .await
            .is_err()
    );

    // The only slot is free again.
    let next = fresh_dispatch(json!(null));
    let reply = harness.dispatch(&next).await;
    assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");
    let events = harness.events_until_terminal(next.command.run_id).await;
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn a_full_executor_answers_full() {
    let harness = Harness::start_with(|s| s.capacity = 1).await;
    let long = fresh_dispatch(json!([{"sleepMs": 60000}]));
    let reply = harness.dispatch(&long).await;
    assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");

    let second = fresh_dispatch(json!(null));
    let reply = harness.dispatch(&second).await;
    assert_eq!(reply.outcome, DispatchOutcome::Full, "{reply:?}");
    assert!(
        harness
            .log
            .last(second.command.run_id)
            .await
            .unwrap()
            .is_none()
    );

    let stop = harness
        .control(long.command.run_id, &ControlRequest::Stop { reason: None })
        .await;
    assert_eq!(stop.outcome, ControlOutcome::Accepted);
    let events = harness.events_until_terminal(long.command.run_id).await;
    assert_eq!(completion(&events).status, TerminalStatus::Stopped);
}

#[tokio::test]
async fn concurrent_dispatches_never_overfill_the_executor() {
    let harness = Harness::start_with(|s| s.capacity = 3).await;
    let requests: Vec<_> = (0..8)
        .map(|_| fresh_dispatch(json!([{"sleepMs": 60000}])))
        .collect();
    let replies = futures::future::join_all(requests.iter().map(|r| harness.dispatch(r))).await;
    let accepted: Vec<_> = requests
        .iter()
        .zip(&replies)
        .filter(|(_, reply)| reply.outcome == DispatchOutcome::Accepted)
        .map(|(request, _)| request.command.run_id)
        .collect();
    assert_eq!(accepted.len(), 3, "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|r| matches!(r.outcome, DispatchOutcome::Accepted | DispatchOutcome::Full))
    );
    for run_id in accepted {
        let reply = harness
            .control(run_id, &ControlRequest::Stop { reason: None })
            .await;
        assert_eq!(reply.outcome, ControlOutcome::Accepted);
        let events = harness.events_until_terminal(run_id).await;
        assert_eq!(completion(&events).status, TerminalStatus::Stopped);
    }
}

#[tokio::test]
async fn providers_not_offered_or_not_installed_are_unsupported() {
    let harness =
        Harness::start_with(|s| s.providers = vec!["scripted".into(), "claude-code".into()]).await;
    for provider in ["claude-code", "opencode", "no-such-provider"] {
        let mut request = fresh_dispatch(json!(null));
        request.command.provider = provider.to_owned();
        let reply = harness.dispatch(&request).await;
        assert_eq!(
            reply.outcome,
            DispatchOutcome::UnsupportedProvider,
            "{provider}: {reply:?}"
        );
        assert!(
            harness
                .log
                .last(request.command.run_id)
                .await
                .unwrap()
                .is_none()
        );
    }
    let presence = harness.presence().await.unwrap();
    assert!(presence.supports("scripted"));
    assert!(!presence.supports("claude-code"));
    assert!(presence.providers.iter().any(|p| p.name == "claude-code"));
}

#[tokio::test]
async fn garbage_dispatch_requests_get_invalid_and_the_executor_keeps_working() {
    let harness = Harness::start().await;
    for garbage in [
        b"not json".to_vec(),
        b"{}".to_vec(),
        b"{\"command\": 42}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        Vec::new(),
    ] {
        let reply = harness.dispatch_raw(garbage).await;
        assert_eq!(reply.outcome, DispatchOutcome::Invalid, "{reply:?}");
        assert!(reply.message.is_some());
    }
    let request = fresh_dispatch(json!(null));
    let reply = harness.dispatch(&request).await;
    assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");
    let events = harness.events_until_terminal(request.command.run_id).await;
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn scripted_failures_and_invalid_scripts_end_the_run_failed() {
    let harness = Harness::start().await;

    let failing = fresh_dispatch(json!([
        {"message": {"text": "trying"}},
        {"fail": {"reason": "auth_invalid", "detail": "the API key was rejected"}},
        {"message": {"text": "never"}}
    ]));
    assert_eq!(
        harness.dispatch(&failing).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(failing.command.run_id).await;
    assert_contiguous(&events);
    assert_eq!(
        types(&events),
        vec![
            "run.dispatched",
            "run.started",
            "message.delta",
            "message.completed",
            "run.completed"
        ]
    );
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::Failed);
    assert_eq!(completed.reason, Some(FailureReason::AuthInvalid));
    assert_eq!(
        completed.detail.as_deref(),
        Some("the API key was rejected")
    );

    let invalid = fresh_dispatch(json!([{"dance": {}}]));
    assert_eq!(
        harness.dispatch(&invalid).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(invalid.command.run_id).await;
    assert_eq!(
        types(&events),
        vec!["run.dispatched", "run.started", "run.completed"]
    );
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::Failed);
    assert_eq!(completed.reason, Some(FailureReason::ProviderError));
    assert!(
        completed
            .detail
            .unwrap()
            .contains("invalid providerOptions.script")
    );
}

#[tokio::test]
async fn a_filler_script_writes_every_event_in_order() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([{"filler": {"count": 200}}]));
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    let events = harness.events_until_terminal(request.command.run_id).await;
    assert_contiguous(&events);
    assert_eq!(events.len(), 203);
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
}

#[tokio::test]
async fn our_own_stored_dispatch_is_recognised_instead_of_reported_as_a_conflict() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!(null));
    let run_id = request.command.run_id;
    // What the log holds when this executor's append was stored but its ack was lost
    // (or the executor restarted right after it): the retry is answered "wrong last
    // sequence", yet the run is ours and was never started.
    let mut position = EventPosition::EMPTY;
    harness
        .append(
            run_id,
            &mut position,
            RunEventKind::RunDispatched(switchyard_contracts::event::RunDispatched {
                executor_id: harness.executor_id.clone(),
                timeout_ms: request.timeout_ms,
            }),
        )
        .await;

    let reply = harness.dispatch(&request).await;
    assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");
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

    // The same history written by another executor is a conflict.
    let other = fresh_dispatch(json!(null));
    let mut position = EventPosition::EMPTY;
    harness
        .append(
            other.command.run_id,
            &mut position,
            RunEventKind::RunDispatched(switchyard_contracts::event::RunDispatched {
                executor_id: "exec-someone-else".parse().unwrap(),
                timeout_ms: other.timeout_ms,
            }),
        )
        .await;
    let reply = harness.dispatch(&other).await;
    assert_eq!(reply.outcome, DispatchOutcome::Conflict, "{reply:?}");
}

#[tokio::test]
async fn a_dispatch_at_a_later_position_is_a_new_dispatch_of_the_run() {
    let harness = Harness::start().await;
    let mut request = fresh_dispatch(json!([{"sleepMs": 60000}]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        DispatchOutcome::Accepted
    );
    harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "run.started")
        .await;
    // The run is queued again (as the reconciler does for a lost executor's run), and
    // a manager asks this executor again, at the new position, while the earlier
    // dispatch is still here: another executor must take it.
    let mut position = harness.log.position(run_id).await.unwrap();
    harness.append(run_id, &mut position, queued()).await;
    request.position = position;
    let busy = harness.dispatch(&request).await;
    assert_eq!(busy.outcome, DispatchOutcome::Full, "{busy:?}");
    assert!(
        busy.message.as_deref().unwrap().contains("winding down"),
        "{busy:?}"
    );
    // The earlier dispatch learns from its fenced append that it lost the run; stop it
    // so that it ends now rather than at its next event.
    let stopped = harness
        .control(run_id, &ControlRequest::Stop { reason: None })
        .await;
    assert_eq!(stopped.outcome, ControlOutcome::Accepted);
    let deadline = tokio::time::Instant::now() + WAIT;
    let again = loop {
        let reply = harness.dispatch(&request).await;
        if reply.outcome != DispatchOutcome::Full {
            break reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "{reply:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Once the earlier dispatch has ended, the later position is admitted, once.
    assert_eq!(again.outcome, DispatchOutcome::Accepted, "{again:?}");
    harness
        .wait_for_event(run_id, |e| {
            e.seq == position.next_seq + 1 && e.kind.type_name() == "run.started"
        })
        .await;
    let redelivered = harness.dispatch(&request).await;
    assert_eq!(redelivered.outcome, DispatchOutcome::Accepted);
    let dispatched = harness.log.last(run_id).await.unwrap().unwrap().header.seq;
    assert_eq!(dispatched, position.next_seq + 1, "nothing appended twice");
}
