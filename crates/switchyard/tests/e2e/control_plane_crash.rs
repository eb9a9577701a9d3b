//! A control-plane killed with SIGKILL while its projector holds events it received
//! but has not acknowledged: once it is restarted, the status projection catches up
//! within seconds, not after the projector consumer's ack wait (30 s) hands those
//! events out again. Also: an `Idempotency-Key` start retried through the gateway.

use crate::harness::{DEADLINE, Harness};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::service_command;
use tokio::process::Child;
use tokio::time::Instant;

/// How soon after the restarted process is spawned the projection must show the run's
/// end (the ack wait it must not depend on is 30 s).
const CATCH_UP_BOUND: Duration = Duration::from_secs(10);

/// `switchyard serve control-plane` as a process of its own, logging to `log`.
fn spawn_control_plane(env: &HashMap<String, String>, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = service_command(env!("CARGO_BIN_EXE_switchyard"), env);
    command
        .args(["serve", "control-plane"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    command.spawn().unwrap()
}

/// Polls until the control-plane answers through the gateway.
async fn wait_answering(h: &Harness, log: &Path) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _) = h.get("/api/runs?limit=1").await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the control-plane process never answered; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the harness's in-process control-plane and runs one as a process on its
/// address (the gateway keeps forwarding there); returns its environment.
async fn control_plane_as_process(h: &mut Harness, log: &Path) -> (Child, HashMap<String, String>) {
    let addr = h.control_plane.handle.http_addr.unwrap();
    let stopped = ServiceHandle::new("control-plane", None, tokio::spawn(async { Ok(()) }));
    let in_process = std::mem::replace(&mut h.control_plane.handle, stopped);
    h.control_plane.shutdown.cancel();
    tokio::time::timeout(DEADLINE, in_process.wait())
        .await
        .unwrap()
        .unwrap();
    let env = h.service_env(&[("SWITCHYARD_CONTROL_PLANE__LISTEN", addr.to_string())]);
    let child = spawn_control_plane(&env, log);
    wait_answering(h, log).await;
    (child, env)
}

/// Polls until `done` holds for the projector consumer's info.
async fn wait_consumer(
    js: &async_nats::jetstream::Context,
    done: impl Fn(&async_nats::jetstream::consumer::Info) -> bool,
) {
    let stream = js.get_stream("RUN_EVENTS").await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let info = stream
            .consumer_info("control-plane-projector")
            .await
            .unwrap();
        if done(&info) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumer never matched: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Backends of the test database other than the caller's that wait for a lock.
async fn lock_waiters(pool: &sqlx::PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_catches_up_within_seconds_of_a_control_plane_crash() {
    let mut h = Harness::start(1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("control-plane.log");
    let (mut control_plane, env) = control_plane_as_process(&mut h, &log).await;

    let run_id = h
        .start_scripted(json!([
            {"humanLoop": {"prompt": "finish?"}},
            {"message": {"text": "finished", "chunks": 1}}
        ]))
        .await;
    let request_id = h.pending_request(&run_id).await;
    h.wait_run(&run_id, |r| r["status"] == "waiting_for_human")
        .await;

    // Hold the run's row: the projector receives the run's last events and blocks on
    // the row before it can commit, so they stay unacknowledged.
    let pool = sqlx::PgPool::connect(&h.db.url).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("SELECT run_id FROM runs WHERE run_id = $1::uuid FOR UPDATE")
        .bind(&run_id)
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let js = h.jetstream().await;
    let events = js.get_stream("RUN_EVENTS").await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    let completed_seq = loop {
        let last = events
            .get_last_raw_message_by_subject(&format!("runs.events.{run_id}"))
            .await
            .unwrap();
        let event: Value = serde_json::from_slice(&last.payload).unwrap();
        if event["type"] == "run.completed" {
            break last.sequence;
        }
        assert!(
            Instant::now() < deadline,
            "the run never completed: {event}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_consumer(&js, |info| {
        info.delivered.stream_sequence >= completed_seq
            && info.ack_floor.stream_sequence < completed_seq
            && info.num_ack_pending > 0
    })
    .await;
    let deadline = Instant::now() + DEADLINE;
    while lock_waiters(&pool).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the projector never waited for the row"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGKILL. The dead process's statement must not commit when the row is released
    // (Postgres only notices a vanished client when it writes to it), so its backend
    // is ended first, as a crashed host's connection would be.
    control_plane.kill().await.unwrap();
    let waiters = lock_waiters(&pool).await;
    assert!(!waiters.is_empty());
    for pid in &waiters {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&pool)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let alive: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&waiters)
                .fetch_one(&pool)
                .await
                .unwrap();
        if alive == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the killed backends linger");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.rollback().await.unwrap();
    let (_, run) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_ne!(
        run["status"], "succeeded",
        "nothing projected the end yet: {run}"
    );

    let restarted_at = Instant::now();
    let _control_plane = spawn_control_plane(&env, &log);
    let run = h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    let took = restarted_at.elapsed();
    assert!(
        took < CATCH_UP_BOUND,
        "the projection showed the run's end {took:?} after the restart (bound \
         {CATCH_UP_BOUND:?}): {run}"
    );
    let resolved = h
        .wait_requests(&run_id, "", |r| r.iter().all(|r| r["status"] == "resolved"))
        .await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(
        restarted_at.elapsed() < CATCH_UP_BOUND,
        "the human-loop request was resolved too late"
    );
    h.shutdown().await;
}

/// Through the gateway: a retried start with its `Idempotency-Key` gets the same run,
/// marked as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_retried_with_its_idempotency_key_is_one_run() {
    let h = Harness::start(1, 1).await;
    let body = json!({"provider": "scripted", "prompt": "once",
                      "providerOptions": {"script": [{"message": {"text": "hi"}}]}});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = h
            .http
            .post(h.url("/api/runs/start"))
            .bearer_auth(crate::harness::TOKEN)
            .header("Idempotency-Key", "client-retry-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let replayed = response.headers().get("idempotent-replayed").cloned();
        let json: Value = response.json().await.unwrap();
        answers.push((replayed, json));
    }
    assert_eq!(answers[0].1, answers[1].1);
    assert_eq!(answers[0].0, None);
    assert_eq!(answers[1].0.as_ref().unwrap(), "true");
    let run_id = answers[0].1["runId"].as_str().unwrap();
    h.wait_run(run_id, |r| r["status"] == "succeeded").await;
    let (_, list) = h.get("/api/runs").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "{list}");
    h.shutdown().await;
}
