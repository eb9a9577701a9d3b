//! A planned executor restart: the old executor drains — its runs go
//! on and a pending approval stays answerable through the gateway — while a new
//! executor takes the new work; a run still active when the drain timeout passes is
//! stopped with a reason the client can read.

use crate::harness::{DEADLINE, Harness, events};
use serde_json::{Value, json};

fn ended(run: &Value) -> bool {
    matches!(
        run["status"].as_str(),
        Some("succeeded" | "failed" | "stopped" | "timed_out")
    )
}

#[tokio::test]
async fn a_pending_approval_survives_a_planned_executor_restart() {
    let mut harness = Harness::start(0, 1).await;
    let old = harness
        .add_executor_env(
            4,
            None,
            &[("SWITCHYARD_EXECUTOR__DRAIN_TIMEOUT_MS", "60000".to_owned())],
        )
        .await;
    let waiting = harness
        .start_scripted(json!([
            {"humanLoop": {"prompt": "Deploy to prod?", "kind": "command",
                           "details": {"command": "deploy --prod"}}},
            {"message": {"text": "deployed"}}
        ]))
        .await;
    let request_id = harness.pending_request(&waiting).await;
    let (_, run) = harness.get(&format!("/api/runs/{waiting}")).await;
    let old_id = run["executorId"].as_str().expect("executorId").to_owned();

    // The planned restart: the old executor begins to drain, a new one comes up.
    harness.executors[old].shutdown.cancel();
    harness.add_executor(4).await;

    let fresh = harness
        .start_scripted(json!([{"message": {"text": "on the new executor"}}]))
        .await;
    let run = harness.wait_run(&fresh, ended).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_ne!(run["executorId"], old_id.as_str(), "{run}");
    assert!(
        !harness.executors[old].handle.is_finished(),
        "the old executor waits for its run"
    );

    // Answered through the gateway after the drain began: the old executor still
    // holds the request and finishes the run.
    let (status, body) = harness
        .post(
            &format!("/api/runs/{waiting}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], true, "{body}");
    let run = harness.wait_run(&waiting, ended).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["executorId"], old_id.as_str(), "{run}");
    let types: Vec<Value> = events(&harness.read_stream(&waiting, None).await)
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "run.dispatched").count(),
        1,
        "{types:?}"
    );
    assert!(!types.contains(&json!("diagnostic")), "{types:?}");

    // Its last run over, the old executor's service handle completes.
    let drained = harness.executors.remove(old);
    tokio::time::timeout(DEADLINE, drained.handle.wait())
        .await
        .expect("the old executor stopped after its last run")
        .expect("the old executor stopped cleanly");
    harness.shutdown().await;
}

#[tokio::test]
async fn the_drain_timeout_stops_the_run_left_and_says_so() {
    let mut harness = Harness::start(0, 1).await;
    let executor = harness
        .add_executor_env(
            4,
            None,
            &[("SWITCHYARD_EXECUTOR__DRAIN_TIMEOUT_MS", "1500".to_owned())],
        )
        .await;
    let run_id = harness
        .start_scripted(json!([
            {"humanLoop": {"prompt": "Anyone there?"}},
            {"message": {"text": "never"}}
        ]))
        .await;
    harness.pending_request(&run_id).await;

    harness.executors[executor].shutdown.cancel();
    let stopped = harness.executors.remove(executor);
    tokio::time::timeout(DEADLINE, stopped.handle.wait())
        .await
        .expect("the executor stopped after its drain timeout")
        .expect("the executor stopped cleanly");

    let run = harness.wait_run(&run_id, ended).await;
    assert_eq!(run["status"], "stopped", "{run}");
    assert_eq!(run["failureReason"], "stopped", "{run}");
    let detail = run["failureDetail"].as_str().expect("failureDetail");
    assert!(
        detail.starts_with("executor shutdown") && detail.contains("drain timeout of 1500 ms"),
        "{detail}"
    );
    let events = events(&harness.read_stream(&run_id, None).await);
    let diagnostic = events
        .iter()
        .find(|e| e["type"] == "diagnostic")
        .expect("a diagnostic event");
    assert_eq!(diagnostic["data"]["message"], detail, "{diagnostic}");
    let resolved = events
        .iter()
        .find(|e| e["type"] == "human_loop.resolved")
        .expect("the pending request is resolved");
    assert_eq!(resolved["data"]["resolvedBy"], "run_ended", "{resolved}");
    let completed = events.last().expect("events");
    assert_eq!(completed["type"], "run.completed");
    assert_eq!(completed["data"]["detail"], detail);
    harness.shutdown().await;
}
