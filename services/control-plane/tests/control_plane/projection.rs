//! The status projection from RUN_EVENTS into Postgres.

use crate::common::{Harness, eventually};
use bytes::Bytes;
use serde_json::json;
use switchyard_contracts::event::{
    Evidence, HumanLoopDecision, HumanLoopKind, HumanLoopRequested, HumanLoopResolved,
    HumanLoopResolver, MessageDelta, RunClaimed, RunCompleted, RunDispatched, RunStarted,
};
use switchyard_contracts::{FailureReason, RunEventKind, RunId};

async fn append_all(h: &Harness, run_id: RunId, kinds: Vec<RunEventKind>) {
    let mut position = h.events.position(run_id).await.unwrap();
    for kind in kinds {
        h.events.append(run_id, &mut position, kind).await.unwrap();
    }
}

fn dispatched(executor: &str) -> Vec<RunEventKind> {
    vec![
        RunEventKind::RunClaimed(RunClaimed {
            worker_id: "mgr-1".parse().unwrap(),
            attempt: 1,
        }),
        RunEventKind::RunDispatched(RunDispatched {
            executor_id: executor.parse().unwrap(),
            timeout_ms: 60_000,
        }),
        RunEventKind::RunStarted(RunStarted {
            provider: "scripted".into(),
            model: None,
            workspace: None,
        }),
    ]
}

#[tokio::test]
async fn lifecycle_events_drive_the_run_status_to_a_failure_with_its_reason() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let mut kinds = dispatched("exec-1");
    kinds.push(RunEventKind::MessageDelta(MessageDelta {
        message_id: "m".into(),
        text: "hi".into(),
    }));
    let mut completed =
        RunCompleted::failed(FailureReason::AuthMissing, "OPENAI_API_KEY is not set");
    completed.evidence = Evidence {
        stderr_tail: vec!["error: no key".into()],
        ..Default::default()
    };
    kinds.push(RunEventKind::RunCompleted(completed));
    append_all(&h, run_id, kinds).await;

    let view = h
        .run_until(run_id, "status failed", |v| v["status"] == "failed")
        .await;
    assert_eq!(view["failureReason"], "auth_missing", "{view}");
    assert_eq!(view["failureDetail"], "OPENAI_API_KEY is not set");
    assert_eq!(view["evidence"]["stderrTail"][0], "error: no key");
    assert_eq!(view["executorId"], "exec-1");
    assert_eq!(view["lastEventSeq"], 6);
    assert!(
        view["startedAt"].is_string() && view["completedAt"].is_string(),
        "{view}"
    );
    let claim = sqlx::query!(
        "SELECT worker_id, claimed_at FROM runs WHERE run_id = $1",
        run_id
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(claim.worker_id.as_deref(), Some("mgr-1"));
    assert!(claim.claimed_at.is_some());
    let (_, failed) = h.get("/api/runs?status=failed").await;
    assert_eq!(failed["runs"][0]["runId"], run_id.to_string());
    h.stop().await;
}

#[tokio::test]
async fn human_loop_requests_are_projected_and_resolved() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let mut kinds = dispatched("exec-2");
    kinds.push(RunEventKind::HumanLoopRequested(HumanLoopRequested {
        request_id: "r1".parse().unwrap(),
        kind: HumanLoopKind::Command,
        prompt: "Run `make`?".into(),
        details: json!({"command": "make"}),
    }));
    append_all(&h, run_id, kinds).await;
    let view = h
        .run_until(run_id, "waiting for a human", |v| {
            v["status"] == "waiting_for_human"
        })
        .await;
    assert_eq!(view["statusDetail"], "Run `make`?");
    let request = sqlx::query!(
        r#"SELECT status::text AS "status!", kind FROM human_loop_requests
           WHERE run_id = $1 AND request_id = 'r1'"#,
        run_id
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (request.status.as_str(), request.kind.as_deref()),
        ("pending", Some("command"))
    );

    append_all(
        &h,
        run_id,
        vec![
            RunEventKind::HumanLoopResolved(HumanLoopResolved {
                request_id: "r1".parse().unwrap(),
                decision: HumanLoopDecision::Approve,
                resolved_by: HumanLoopResolver::Human,
                message: None,
            }),
            RunEventKind::RunCompleted(RunCompleted::succeeded()),
        ],
    )
    .await;
    h.run_until(run_id, "succeeded", |v| v["status"] == "succeeded")
        .await;
    let request = sqlx::query!(
        r#"SELECT status::text AS "status!", decision::text FROM human_loop_requests
           WHERE run_id = $1 AND request_id = 'r1'"#,
        run_id
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (request.status.as_str(), request.decision.as_deref()),
        ("resolved", Some("approve"))
    );
    h.stop().await;
}

#[tokio::test]
async fn garbage_and_unknown_runs_are_skipped_without_blocking_the_projection() {
    let h = Harness::start().await;
    // Garbage, an event whose runId does not match its subject, and a well-formed event
    // of a run the control-plane never saw (started on an executor's standalone API).
    let stranger = RunId::now_v7();
    let mismatched = json!({"runId": RunId::now_v7(), "seq": 1, "time": "2025-01-01T00:00:00Z",
        "type": "run.started", "data": {"provider": "scripted"}});
    let garbage: Vec<(String, Bytes)> = vec![
        (
            "runs.events.x".into(),
            Bytes::from_static(b"\x00\xffnot json"),
        ),
        (
            "runs.events.y".into(),
            Bytes::from_static(b"{\"runId\": 1}"),
        ),
        (
            format!("runs.events.{}", RunId::now_v7()),
            Bytes::from(serde_json::to_vec(&mismatched).unwrap()),
        ),
    ];
    for (subject, payload) in garbage {
        h.js.publish(subject, payload).await.unwrap().await.unwrap();
    }
    append_all(&h, stranger, dispatched("exec-x")).await;

    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    append_all(
        &h,
        run_id,
        vec![RunEventKind::RunCompleted(RunCompleted::succeeded())],
    )
    .await;
    h.run_until(run_id, "succeeded", |v| v["status"] == "succeeded")
        .await;

    let stream = h.js.get_stream("RUN_EVENTS").await.unwrap();
    eventually("every message acknowledged or terminated", || async {
        let info = stream
            .consumer_info("control-plane-projector")
            .await
            .unwrap();
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    let (status, _) = h.get(&format!("/api/runs/{stranger}")).await;
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "standalone runs are not invented"
    );
    h.stop().await;
}

#[tokio::test]
async fn redelivered_or_late_events_never_move_a_run_backwards() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let mut kinds = dispatched("exec-3");
    kinds.push(RunEventKind::RunCompleted(RunCompleted::failed(
        FailureReason::Stopped,
        "stopped by a user",
    )));
    append_all(&h, run_id, kinds).await;
    h.run_until(run_id, "stopped", |v| v["status"] == "stopped")
        .await;
    // A copy of an older event (e.g. re-published under a new stream sequence) arrives
    // after the end: the run stays stopped and its seq does not go back.
    let stale = json!({"runId": run_id, "seq": 3, "time": "2025-01-01T00:00:00Z",
        "type": "run.dispatched", "data": {"executorId": "zombie", "timeoutMs": 1}});
    h.js.publish(
        format!("runs.events.{run_id}"),
        Bytes::from(serde_json::to_vec(&stale).unwrap()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let stream = h.js.get_stream("RUN_EVENTS").await.unwrap();
    eventually("the stale event consumed", || async {
        let info = stream
            .consumer_info("control-plane-projector")
            .await
            .unwrap();
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    let (_, view) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(view["status"], "stopped", "{view}");
    assert_eq!(view["lastEventSeq"], 5);
    assert_eq!(view["executorId"], "exec-3");
    assert_eq!(view["failureReason"], "stopped");
    h.stop().await;
}

/// The value of the series written exactly as `series` (name and labels in the
/// exporter's order) in `GET /metrics`, `None` when it is absent.
async fn metric(h: &Harness, token: &str, series: &str) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", h.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .map(|(_, value)| value.parse().unwrap())
}

#[tokio::test]
async fn a_run_is_counted_once_however_often_its_events_arrive() {
    const TOKEN: &str = "cp-test-metrics-token-93c1";
    const STARTED: &str =
        r#"switchyard_runs_started_total{service="control-plane",provider="scripted"}"#;
    const FINISHED: &str = r#"switchyard_runs_finished_total{service="control-plane",provider="scripted",status="failed",reason="auth_missing"}"#;
    let h = Harness::start_with(|c| c.metrics.token = Some(TOKEN.to_owned().into())).await;
    let run_id = h
        .start_run(json!({"prompt": "p", "provider": "scripted"}))
        .await;
    let mut kinds = dispatched("exec-4");
    kinds.push(RunEventKind::RunCompleted(RunCompleted::failed(
        FailureReason::AuthMissing,
        "no key",
    )));
    append_all(&h, run_id, kinds).await;
    h.run_until(run_id, "failed", |v| v["status"] == "failed")
        .await;
    eventually("the run counted", || async {
        (metric(&h, TOKEN, FINISHED).await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(metric(&h, TOKEN, STARTED).await, Some(1.0));

    // Copies of its start and end (as a redelivery after a lost ack, or a republish,
    // would bring them) are projected again but not counted again.
    let stream = h.js.get_stream("RUN_EVENTS").await.unwrap();
    // This test's NATS holds only this run's events: stream sequence = event seq.
    for (seq, event_type) in [(4, "run.started"), (5, "run.completed")] {
        let stored = stream
            .direct_get_next_for_subject(format!("runs.events.{run_id}"), Some(seq))
            .await
            .unwrap();
        let header = stored
            .headers
            .get(switchyard_contracts::subjects::HEADER_EVENT_TYPE);
        assert_eq!(header.map(|v| v.as_str()), Some(event_type));
        h.js.publish(stored.subject.to_string(), stored.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually("the copies consumed", || async {
        let info = stream
            .consumer_info("control-plane-projector")
            .await
            .unwrap();
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    assert_eq!(metric(&h, TOKEN, STARTED).await, Some(1.0));
    assert_eq!(metric(&h, TOKEN, FINISHED).await, Some(1.0));
    h.stop().await;
}
