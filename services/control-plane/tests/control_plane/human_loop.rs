//! `GET /api/runs/{id}/human-loop`: requests projected from the run's events, listed
//! pending then resolved, and cleaned up when the run ends without resolving them.

use crate::common::{Harness, error_code, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_contracts::event::{
    HumanLoopDecision, HumanLoopKind, HumanLoopRequested, HumanLoopResolved, HumanLoopResolver,
    RunClaimed, RunCompleted, RunDispatched, RunStarted,
};
use switchyard_contracts::{FailureReason, RunEventKind, RunId};

async fn append_all(h: &Harness, run_id: RunId, kinds: Vec<RunEventKind>) {
    let mut position = h.events.position(run_id).await.unwrap();
    for kind in kinds {
        h.events.append(run_id, &mut position, kind).await.unwrap();
    }
}

fn running() -> Vec<RunEventKind> {
    vec![
        RunEventKind::RunClaimed(RunClaimed {
            worker_id: "mgr-1".parse().unwrap(),
            attempt: 1,
        }),
        RunEventKind::RunDispatched(RunDispatched {
            executor_id: "exec-1".parse().unwrap(),
            timeout_ms: 60_000,
        }),
        RunEventKind::RunStarted(RunStarted {
            provider: "scripted".into(),
            model: None,
            workspace: None,
        }),
    ]
}

fn requested(id: &str, prompt: &str) -> RunEventKind {
    RunEventKind::HumanLoopRequested(HumanLoopRequested {
        request_id: id.parse().unwrap(),
        kind: HumanLoopKind::Command,
        prompt: prompt.into(),
        details: json!({"command": prompt}),
    })
}

fn resolved(id: &str, decision: HumanLoopDecision, by: HumanLoopResolver) -> RunEventKind {
    RunEventKind::HumanLoopResolved(HumanLoopResolved {
        request_id: id.parse().unwrap(),
        decision,
        resolved_by: by,
        message: None,
    })
}

/// Waits until the listing (with `query`) matches `done`.
async fn requests_until(
    h: &Harness,
    run_id: RunId,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually("the human-loop listing", || async {
        let (status, body) = h
            .get(&format!("/api/runs/{run_id}/human-loop{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let requests = body["requests"].as_array().cloned().unwrap_or_default();
        done(&requests).then_some(requests)
    })
    .await
}

fn ids(requests: &[Value]) -> Vec<&str> {
    requests
        .iter()
        .map(|r| r["requestId"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn requests_are_listed_pending_then_resolved() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let mut kinds = running();
    kinds.push(requested("hl-a", "ls"));
    kinds.push(requested("hl-b", "rm -rf build"));
    append_all(&h, run_id, kinds).await;

    let pending = requests_until(&h, run_id, "?status=pending", |r| r.len() == 2).await;
    assert_eq!(ids(&pending), ["hl-a", "hl-b"]);
    assert_eq!(pending[0]["status"], "pending");
    assert_eq!(pending[0]["kind"], "command");
    assert_eq!(pending[0]["prompt"], "ls");
    assert_eq!(pending[0]["details"]["command"], "ls");
    assert!(pending[0]["requestedAt"].is_string(), "{pending:?}");
    assert!(pending[0].get("decision").is_none(), "{pending:?}");

    append_all(
        &h,
        run_id,
        vec![resolved(
            "hl-a",
            HumanLoopDecision::Approve,
            HumanLoopResolver::Human,
        )],
    )
    .await;
    let pending = requests_until(&h, run_id, "?status=pending", |r| r.len() == 1).await;
    assert_eq!(ids(&pending), ["hl-b"]);

    append_all(
        &h,
        run_id,
        vec![resolved(
            "hl-b",
            HumanLoopDecision::Deny,
            HumanLoopResolver::Timeout,
        )],
    )
    .await;
    let all = requests_until(&h, run_id, "", |r| {
        r.len() == 2 && r.iter().all(|x| x["status"] == "resolved")
    })
    .await;
    assert_eq!(ids(&all), ["hl-a", "hl-b"]);
    assert_eq!(all[0]["decision"], "approve");
    assert_eq!(all[0]["resolvedBy"], "human");
    assert!(all[0]["resolvedAt"].is_string(), "{all:?}");
    assert_eq!(all[1]["decision"], "deny");
    assert_eq!(all[1]["resolvedBy"], "timeout");
    let (_, resolved_only) = h
        .get(&format!("/api/runs/{run_id}/human-loop?status=resolved"))
        .await;
    assert_eq!(resolved_only["requests"].as_array().unwrap().len(), 2);

    let (status, body) = h
        .get(&format!("/api/runs/{run_id}/human-loop?status=maybe"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_request");
    let (status, body) = h
        .get(&format!("/api/runs/{}/human-loop", RunId::now_v7()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "run_not_found");
    let (status, body) = h.get("/api/runs/not-a-uuid/human-loop").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_run_id");
    h.stop().await;
}

#[tokio::test]
async fn pending_requests_resolve_run_ended_when_the_run_ends_without_resolving_them() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let mut kinds = running();
    kinds.push(requested("hl-lost", "deploy"));
    append_all(&h, run_id, kinds).await;
    requests_until(&h, run_id, "?status=pending", |r| r.len() == 1).await;

    // What the reconciler appends for a run whose executor disappeared: no
    // human_loop.resolved, only the end of the run.
    append_all(
        &h,
        run_id,
        vec![RunEventKind::RunCompleted(RunCompleted::failed(
            FailureReason::ExecutorLost,
            "executor exec-1 disappeared",
        ))],
    )
    .await;
    let all = requests_until(&h, run_id, "", |r| {
        r.len() == 1 && r[0]["status"] == "resolved"
    })
    .await;
    assert_eq!(all[0]["requestId"], "hl-lost");
    assert_eq!(all[0]["decision"], "deny");
    assert_eq!(all[0]["resolvedBy"], "run_ended");
    assert!(all[0]["resolvedAt"].is_string(), "{all:?}");
    let (_, pending) = h
        .get(&format!("/api/runs/{run_id}/human-loop?status=pending"))
        .await;
    assert_eq!(pending["requests"], json!([]));
    h.stop().await;
}

/// A decision the API does not know is answered in our words, naming the accepted
/// values (serde's "unknown variant" text is not an answer for a client); every
/// accepted spelling gets past the body check (to the run lookup: 404 here).
#[tokio::test]
async fn a_bad_decision_is_answered_in_our_words_with_the_accepted_values() {
    let h = Harness::start().await;
    let path = format!("/api/runs/{}/human-loop/reply", RunId::now_v7());
    for body in [
        json!({"decision": "yes"}),
        json!({"decision": "APPROVE"}),
        json!({"decision": 5}),
        json!({"decision": null}),
        json!({"requestId": "r1"}),
    ] {
        let (status, json) = h.post(&path, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {json}");
        assert_eq!(error_code(&json), "invalid_decision", "{body}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`approve`") && message.contains("`deny`"),
            "{message}"
        );
        assert!(
            !message.contains("variant") && !message.contains("line "),
            "serde's wording: {message}"
        );
    }
    for decision in [
        "approve", "accept", "allow", "approved", "deny", "decline", "reject", "denied",
    ] {
        let (status, json) = h.post(&path, json!({"decision": decision})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{decision} → {json}");
        assert_eq!(error_code(&json), "run_not_found");
    }
    // The rest of the body is still checked.
    let (status, json) = h
        .post(&path, json!({"decision": "approve", "extra": 1}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(error_code(&json), "invalid_body");
    h.stop().await;
}
