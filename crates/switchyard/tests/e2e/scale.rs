//! Many runs through several workers and executors: each executed exactly once.

use crate::harness::{DEADLINE, Harness};
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Reads `runs.events.>` from the start until `runs` runs have completed.
pub(crate) async fn collect_until_completed(
    h: &Harness,
    runs: usize,
) -> HashMap<String, Vec<Value>> {
    let js = h.jetstream().await;
    let stream = js.get_stream("RUN_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: "runs.events.>".into(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut by_run: HashMap<String, Vec<Value>> = HashMap::new();
    let mut completed = 0;
    let read = async {
        while completed < runs {
            let message = messages.next().await.unwrap().unwrap();
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            if event["type"] == "run.completed" {
                completed += 1;
            }
            by_run
                .entry(event["runId"].as_str().unwrap().to_owned())
                .or_default()
                .push(event);
        }
    };
    tokio::time::timeout(DEADLINE * 3, read)
        .await
        .expect("all runs completed in time");
    by_run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_and_two_executors_run_200_runs_each_exactly_once() {
    let h = Harness::start(2, 2).await;
    const RUNS: usize = 200;
    let script = json!([{"message": {"text": "hi there", "chunks": 2}}]);
    let run_ids: Vec<String> = futures::stream::iter(0..RUNS)
        .map(|_| h.start_scripted(script.clone()))
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(run_ids.iter().collect::<HashSet<_>>().len(), RUNS);

    let by_run = collect_until_completed(&h, RUNS).await;
    assert_eq!(by_run.len(), RUNS, "events for runs that were not started?");
    let mut executors = HashSet::new();
    for run_id in &run_ids {
        let events = &by_run[run_id];
        let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
        assert_eq!(
            count("run.dispatched"),
            1,
            "run {run_id} dispatched {} times",
            count("run.dispatched")
        );
        assert_eq!(
            count("run.started"),
            1,
            "run {run_id} started {} times",
            count("run.started")
        );
        assert_eq!(count("run.completed"), 1);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e["seq"].as_u64(),
                Some(i as u64 + 1),
                "run {run_id} has a gap"
            );
        }
        assert_eq!(events.last().unwrap()["data"]["status"], "succeeded");
        let dispatched = events
            .iter()
            .find(|e| e["type"] == "run.dispatched")
            .unwrap();
        executors.insert(
            dispatched["data"]["executorId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(executors.len(), 2, "both executors should have taken runs");

    // The projection converges on the same answer.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, body) = h.get("/api/runs?status=succeeded&limit=500").await;
        let n = body["runs"].as_array().map_or(0, Vec::len);
        if n == RUNS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projection shows {n} succeeded runs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Nothing is left in the work queue.
    let mut commands = h
        .jetstream()
        .await
        .get_stream("RUN_COMMANDS")
        .await
        .unwrap();
    assert_eq!(commands.info().await.unwrap().state.messages, 0);
    h.shutdown().await;
}
