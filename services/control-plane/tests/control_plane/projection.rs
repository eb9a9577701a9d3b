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
            worker_id: "mgr-1".into(),
            attempt: 1,
        }),
        RunEventKind::RunDispatched(RunDispatched {
            executor_id: executor.into(),
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
    let (worker, claimed_at): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT worker_id, claimed_at FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
    assert_eq!(worker.as_deref(), Some("mgr-1"));
    assert!(claimed_at.is_some());
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
        request_id: "r1".into(),
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
    let (status, kind): (String, Option<String>) = sqlx::query_as(
        "SELECT status, kind FROM human_loop_requests WHERE run_id = $1 AND request_id = 'r1'",
    )
    .bind(run_id)
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), kind.as_deref()),
        ("pending", Some("command"))
    );

    append_all(
        &h,
        run_id,
        vec![
            RunEventKind::HumanLoopResolved(HumanLoopResolved {
                request_id: "r1".into(),
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
    let (status, decision): (String, Option<String>) = sqlx::query_as(
        "SELECT status, decision FROM human_loop_requests WHERE run_id = $1 AND request_id = 'r1'",
    )
    .bind(run_id)
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), decision.as_deref()),
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

/// The projector's batch statement is prepared once per connection (planning it costs
/// more than running it), and Postgres keeps the generic plan it made while `runs` was
/// nearly empty: a fresh deployment meets its first burst with no `ANALYZE` in between,
/// and that plan scans the whole table for every batch, so the projection falls ever
/// further behind. `refresh_plans`, which the projector calls every
/// `REFRESH_PLANS_EVERY` batches, must bring it back to reading rows by key.
#[tokio::test]
async fn the_batch_update_reads_runs_by_key_after_the_table_grew() {
    use switchyard_control_plane::database;
    use switchyard_control_plane::store::runs::{
        RunChanges, SeqBump, apply_changes, refresh_plans,
    };

    let db = switchyard_test_support::TestDb::create().await.unwrap();
    let config = switchyard_platform::config::DatabaseConfig {
        url: secrecy::SecretString::from(db.url.clone()),
        ..Default::default()
    };
    let pool = database::connect(&config).await.unwrap();
    database::migrate(&pool).await.unwrap();
    // One transaction on one connection: every statement shares its plan cache, and
    // `pg_stat_xact_user_tables` counts this transaction's scans at once.
    let mut tx = pool.begin().await.unwrap();
    let insert_runs = "INSERT INTO runs (run_id, conversation_id, provider, prompt, status)
         SELECT id, id, 'scripted', 'p', 'queued'
         FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS ids
         RETURNING run_id";
    let early: Vec<uuid::Uuid> = sqlx::query_scalar(insert_runs)
        .bind(3)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let batch = |seq: i64| {
        let mut change = RunChanges::new(early[0]);
        change.bump(&SeqBump {
            run_id: early[0],
            seq,
            first_stream_seq: None,
        });
        vec![change]
    };
    // More executions than Postgres needs to settle on a generic plan (five).
    for seq in 1..=8 {
        apply_changes(&mut *tx, &batch(seq), &[]).await.unwrap();
    }
    sqlx::query(insert_runs)
        .bind(20_000)
        .execute(&mut *tx)
        .await
        .unwrap();
    async fn full_scans_of(tx: &mut sqlx::PgConnection, batches: Vec<Vec<RunChanges>>) -> i64 {
        let scans =
            "SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'runs'";
        let before: i64 = sqlx::query_scalar(scans).fetch_one(&mut *tx).await.unwrap();
        for changes in batches {
            apply_changes(&mut *tx, &changes, &[]).await.unwrap();
        }
        let after: i64 = sqlx::query_scalar(scans).fetch_one(&mut *tx).await.unwrap();
        after - before
    }
    // The premise: the plan prepared while `runs` was small still reads all of it.
    let stale = full_scans_of(&mut tx, (9..=12).map(batch).collect()).await;
    assert!(
        stale > 0,
        "the prepared plan did not scan `runs` ({stale} scans)"
    );
    refresh_plans(&mut tx).await.unwrap();
    let fresh = full_scans_of(&mut tx, (13..=20).map(batch).collect()).await;
    assert_eq!(
        fresh, 0,
        "the batch update scanned all of `runs` {fresh} times"
    );
    let seq: i64 = sqlx::query_scalar("SELECT last_event_seq FROM runs WHERE run_id = $1")
        .bind(early[0])
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seq, 20, "the batches were applied");
}
