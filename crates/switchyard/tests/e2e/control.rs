//! Stop and human-loop replies through the whole platform.

use crate::harness::{Harness, assert_gapless, events};
use crate::shared::shared;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_running_run_ends_it_stopped_and_keeps_what_it_emitted() {
    let h = shared().await;
    let run_id = h
        .start_scripted(json!([
            {"message": {"text": "working on it", "chunks": 2}},
            {"sleepMs": 60000},
            {"message": {"text": "never said", "chunks": 1}}
        ]))
        .await;
    // Wait until the run has visibly produced output, then stop it.
    h.read_until(&run_id, None, |e| e["type"] == "message.completed")
        .await;
    let (status, body) = h.post(&format!("/api/runs/{run_id}/stop"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "stopping");

    let events = events(&h.read_stream(&run_id, None).await);
    let types = assert_gapless(&events);
    let done = &events.last().unwrap()["data"];
    assert_eq!(done["status"], "stopped", "{types:?}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "message.completed" && e["data"]["text"] == "working on it")
    );
    assert!(!events.iter().any(|e| e["data"]["text"] == "never said"));
    h.wait_run(&run_id, |r| r["status"] == "stopped").await;

    // Stopping again is a conflict, not a second stop.
    let (status, body) = h.post(&format!("/api/runs/{run_id}/stop"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "run_finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_queued_run_concludes_it_without_an_executor() {
    // No executor: the run cannot leave the queue.
    let h = Harness::start(0, 1).await;
    let run_id = h
        .start_scripted(json!([{"message": {"text": "x", "chunks": 1}}]))
        .await;
    let (status, body) = h.post(&format!("/api/runs/{run_id}/stop"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "stopped");
    let events = events(&h.read_stream(&run_id, None).await);
    let types = assert_gapless(&events);
    assert_eq!(types.first().map(String::as_str), Some("run.queued"));
    assert_eq!(events.last().unwrap()["data"]["status"], "stopped");
    h.wait_run(&run_id, |r| r["status"] == "stopped").await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_loop_request_answered_mid_run_lets_the_run_complete() {
    let h = shared().await;
    let run_id = h
        .start_scripted(json!([
            {"message": {"text": "I need to run a command", "chunks": 1}},
            {"humanLoop": {"prompt": "Run `make test`?", "kind": "command"}},
            {"message": {"text": "ran it", "chunks": 1}}
        ]))
        .await;
    let seen = h
        .read_until(&run_id, None, |e| e["type"] == "human_loop.requested")
        .await;
    let request = crate::harness::events(&seen).pop().unwrap();
    let request_id = request["data"]["requestId"].as_str().unwrap().to_owned();
    h.wait_run(&run_id, |r| r["status"] == "waiting_for_human")
        .await;

    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let events = events(&h.read_stream(&run_id, None).await);
    assert_gapless(&events);
    let resolved = events
        .iter()
        .find(|e| e["type"] == "human_loop.resolved")
        .unwrap();
    assert_eq!(resolved["data"]["decision"], "approve");
    assert_eq!(resolved["data"]["requestId"], request_id.as_str());
    assert!(events.iter().any(|e| e["data"]["text"] == "ran it"));
    assert_eq!(events.last().unwrap()["data"]["status"], "succeeded");

    // Nothing is pending any more: a second reply is a conflict.
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"decision": "deny"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_run_with_nothing_pending_is_a_conflict() {
    let h = shared().await;
    let run_id = h
        .start_scripted(json!([{"message": {"text": "busy", "chunks": 1}}, {"sleepMs": 60000}]))
        .await;
    h.read_until(&run_id, None, |e| e["type"] == "message.completed")
        .await;
    let (status, body) = h
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "no_pending_request");
    let (status, _) = h.post(&format!("/api/runs/{run_id}/stop"), json!({})).await;
    assert_eq!(status, 202);
}
