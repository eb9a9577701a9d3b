//! Stop and human-loop replies: concluding a run that was not dispatched, asking the
//! owning executor otherwise, and the conflicts.

use crate::common::{Harness, error_code};
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::json;
use switchyard_contracts::control::{ControlOutcome, ControlReply, ControlRequest};
use switchyard_contracts::event::{RunClaimed, RunDispatched};
use switchyard_contracts::{RunEvent, RunEventKind, RunId, TerminalStatus, subjects};
use tokio::sync::mpsc;

/// Plays the owning executor: answers every control request with `outcome` and hands
/// the requests to the test.
async fn fake_owner(
    h: &Harness,
    run_id: RunId,
    outcome: ControlOutcome,
) -> mpsc::UnboundedReceiver<ControlRequest> {
    let mut sub = h
        .client
        .subscribe(subjects::run_control(&run_id))
        .await
        .unwrap();
    h.client.flush().await.unwrap();
    let client = h.client.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            let request: ControlRequest = serde_json::from_slice(&message.payload).unwrap();
            let _ = tx.send(request);
            if let Some(reply) = message.reply {
                let body = serde_json::to_vec(&ControlReply::new(outcome)).unwrap();
                client.publish(reply, body.into()).await.unwrap();
            }
        }
    });
    rx
}

async fn dispatch(h: &Harness, run_id: RunId) {
    let mut position = h.events.position(run_id).await.unwrap();
    for kind in [
        RunEventKind::RunClaimed(RunClaimed {
            worker_id: "mgr".parse().unwrap(),
            attempt: 1,
        }),
        RunEventKind::RunDispatched(RunDispatched {
            executor_id: "exec".parse().unwrap(),
            timeout_ms: 1000,
        }),
    ] {
        h.events.append(run_id, &mut position, kind).await.unwrap();
    }
}

#[tokio::test]
async fn stopping_a_queued_run_concludes_it_and_a_second_stop_conflicts() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;

    let (status, body) = h
        .post_raw(&format!("/api/runs/{run_id}/stop"), Vec::new(), false)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"runId": run_id, "status": "stopped"}));
    let last = h.events.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.seq, 2);
    let event: RunEvent = last.decode().unwrap();
    let RunEventKind::RunCompleted(completed) = event.kind else {
        panic!("expected run.completed, got {event:?}");
    };
    assert_eq!(completed.status, TerminalStatus::Stopped);
    assert_eq!(completed.reason.map(|r| r.as_str()), Some("stopped"));

    let view = h
        .run_until(run_id, "status stopped", |v| v["status"] == "stopped")
        .await;
    assert_eq!(view["failureReason"], "stopped");

    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/stop"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "run_finished");
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "run_finished");
    h.stop().await;
}

#[tokio::test]
async fn a_reply_to_a_queued_run_has_no_pending_request() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": "r1", "decision": "deny"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "no_pending_request");
    h.stop().await;
}

#[tokio::test]
async fn a_dispatched_run_is_stopped_and_answered_through_its_owner() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    dispatch(&h, run_id).await;

    // Nobody owns it (the executor died): bounded retries, then 503.
    let started = std::time::Instant::now();
    let (status, body) = h
        .post_raw(&format!("/api/runs/{run_id}/stop"), Vec::new(), false)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "owner_unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    let mut requests = fake_owner(&h, run_id, ControlOutcome::Accepted).await;
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/stop"),
            json!({"reason": "enough"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "stopping");
    assert_eq!(
        requests.recv().await.unwrap(),
        ControlRequest::Stop {
            reason: Some("enough".into())
        }
    );
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": "r9", "decision": "approve", "message": "go"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"runId": run_id, "accepted": true}));
    assert!(matches!(
        requests.recv().await.unwrap(),
        ControlRequest::HumanLoopReply { request_id: Some(ref r), .. } if r == "r9"
    ));
    h.stop().await;
}

#[tokio::test]
async fn an_owner_without_a_pending_request_gives_409() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    dispatch(&h, run_id).await;
    let _requests = fake_owner(&h, run_id, ControlOutcome::NoPendingRequest).await;
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "no_pending_request");
    h.stop().await;
}
