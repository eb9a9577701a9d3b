//! Back-pressure: with no executor capacity runs wait in the queue, then run.

use crate::harness::{DEADLINE, Harness, assert_gapless, events};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_stay_queued_without_an_executor_and_run_when_one_appears() {
    let mut h = Harness::start(0, 1).await;
    let run_ids = [
        h.start_scripted(json!([{"message": {"text": "a", "chunks": 1}}]))
            .await,
        h.start_scripted(json!([{"message": {"text": "b", "chunks": 1}}]))
            .await,
    ];
    // Wait until the manager has seen the commands and put them back (redelivered),
    // which is the observable proof that it had nowhere to send them.
    let js = h.jetstream().await;
    let stream = js.get_stream("RUN_COMMANDS").await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let info = stream.consumer_info("executor-manager").await.unwrap();
        if info.num_redelivered >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "manager never retried: {info:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for run_id in &run_ids {
        let (_, run) = h.get(&format!("/api/runs/{run_id}")).await;
        assert_eq!(run["status"], "queued", "{run}");
    }
    let (status, queue) = h.get("/api/run-queue").await;
    assert_eq!(status, 200);
    let queued: Vec<_> = queue["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runId"].clone())
        .collect();
    for run_id in &run_ids {
        assert!(queued.contains(&json!(run_id)), "{queue}");
    }

    h.add_executor(4).await;
    for run_id in &run_ids {
        let events = events(&h.read_stream(run_id, None).await);
        assert_gapless(&events);
        assert_eq!(events.last().unwrap()["data"]["status"], "succeeded");
        // The waiting did not write events: no claim without an executor.
        assert_eq!(
            events.iter().filter(|e| e["type"] == "run.claimed").count(),
            1
        );
    }
    h.shutdown().await;
}

/// Polls the run until its `waitingReason` is `reason`; returns the run.
async fn wait_reason(h: &Harness, run_id: &str, reason: &str) -> serde_json::Value {
    h.wait_run(run_id, |run| run["waitingReason"] == reason)
        .await
}

/// Polls `GET /api/run-queue` until it lists the run with `reason`.
async fn wait_queue_reason(h: &Harness, run_id: &str, reason: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, queue) = h.get("/api/run-queue").await;
        assert_eq!(status, 200, "{queue}");
        let listed = queue["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["runId"] == run_id)
            .cloned();
        if listed
            .as_ref()
            .is_some_and(|r| r["waitingReason"] == reason && r["waitingDetail"].is_string())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run queue never said {reason} for {run_id}: {queue}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A run waiting for an executor says why, in the run and in the run queue, as the
/// executors change under it: none at all, one without the provider, the provider's
/// only executor full, then draining. Once dispatched the reason is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_says_why_it_waits() {
    let mut h = Harness::start(0, 0).await;
    let first = h
        .start_scripted(json!([
            {"humanLoop": {"prompt": "hold the slot?"}},
            {"message": {"text": "released", "chunks": 1}}
        ]))
        .await;
    let run = wait_reason(&h, &first, "no_executor").await;
    assert_eq!(run["status"], "queued", "{run}");
    wait_queue_reason(&h, &first, "no_executor").await;

    // An executor that does not offer the run's provider (no manager yet, so the run is
    // not failed `binary_missing` meanwhile).
    let dir = tempfile::tempdir().unwrap();
    let claude_only = dir.path().join("claude-only.toml");
    std::fs::write(&claude_only, "[executor]\nproviders = [\"claude-code\"]\n").unwrap();
    h.add_executor_with(4, Some(&claude_only)).await;
    let run = wait_reason(&h, &first, "no_executor_for_provider").await;
    let detail = run["waitingDetail"].as_str().unwrap();
    assert!(detail.contains("`scripted`"), "{detail}");
    wait_queue_reason(&h, &first, "no_executor_for_provider").await;

    // The provider's only executor, with one slot, taken by the first run.
    let busy = h
        .add_executor_env(
            1,
            None,
            &[("SWITCHYARD_EXECUTOR__DRAIN_TIMEOUT_MS", "60000".to_owned())],
        )
        .await;
    h.add_manager().await;
    let request_id = h.pending_request(&first).await;
    let run = h
        .wait_run(&first, |r| r["status"] == "waiting_for_human")
        .await;
    assert!(run.get("waitingReason").is_none(), "{run}");
    let second = h
        .start_scripted(json!([{"message": {"text": "second", "chunks": 1}}]))
        .await;
    let run = wait_reason(&h, &second, "all_executors_full").await;
    assert!(
        run["waitingDetail"]
            .as_str()
            .unwrap()
            .contains("1 runs on 1 slots"),
        "{run}"
    );
    wait_queue_reason(&h, &second, "all_executors_full").await;

    // It drains: takes nothing new while its run goes on.
    h.executors[busy].shutdown.cancel();
    wait_reason(&h, &second, "all_executors_draining").await;
    wait_queue_reason(&h, &second, "all_executors_draining").await;
    let (_, run) = h.get(&format!("/api/runs/{second}")).await;
    assert_eq!(run["status"], "queued", "{run}");

    let (status, body) = h
        .post(
            &format!("/api/runs/{first}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    h.wait_run(&first, |r| r["status"] == "succeeded").await;
    h.shutdown().await;
}
