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
