//! A run's whole path: start over HTTP, every event over SSE, the projection agrees.

use crate::harness::{assert_gapless, events};
use crate::shared::shared;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_streams_every_event_in_order_and_the_api_agrees() {
    let h = shared().await;
    let run_id = h
        .start_scripted(json!([
            {"message": {"text": "hello there world", "chunks": 3}},
            {"toolCall": {"name": "shell", "input": {"command": "ls"}, "output": "a\nb\n", "exitCode": 0}},
            {"fileChange": {"path": "hello.txt", "change": "added"}},
            {"usage": {"inputTokens": 3, "outputTokens": 5}}
        ]))
        .await;

    let frames = h.read_stream(&run_id, None).await;
    let events = events(&frames);
    let types = assert_gapless(&events);
    assert_eq!(
        &types[..4],
        ["run.queued", "run.claimed", "run.dispatched", "run.started"],
        "{types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("run.completed"));
    assert_eq!(events.last().unwrap()["data"]["status"], "succeeded");
    for wanted in [
        "message.delta",
        "message.completed",
        "tool.started",
        "tool.output",
        "tool.completed",
        "file.changed",
        "usage",
    ] {
        assert!(
            types.iter().any(|t| t == wanted),
            "missing {wanted}: {types:?}"
        );
    }
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "message.delta")
        .map(|e| e["data"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, "hello there world");
    // Every frame's id is a cursor and every event belongs to this run.
    assert!(
        frames
            .iter()
            .all(|f| f.id.as_deref().is_some_and(|c| !c.is_empty()))
    );
    assert!(events.iter().all(|e| e["runId"] == run_id.as_str()));

    let last_seq = events.len() as u64;
    let run = h
        .wait_run(&run_id, |r| r["lastEventSeq"].as_u64() == Some(last_seq))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["provider"], "scripted");
    assert!(run["executorId"].as_str().is_some(), "{run}");
    assert!(
        run.get("failureReason").is_none() || run["failureReason"].is_null(),
        "{run}"
    );

    let (status, list) = h.get("/api/runs").await;
    assert_eq!(status, 200);
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runId"] == run_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_ends_failed_with_its_reason_and_detail() {
    let h = shared().await;
    let run_id = h
        .start_scripted(json!([
            {"message": {"text": "trying", "chunks": 1}},
            {"fail": {"reason": "auth_invalid", "detail": "HTTP 401 from the model API"}}
        ]))
        .await;
    let events = events(&h.read_stream(&run_id, None).await);
    assert_gapless(&events);
    let done = &events.last().unwrap()["data"];
    assert_eq!(done["status"], "failed");
    assert_eq!(done["reason"], "auth_invalid");
    let run = h.wait_run(&run_id, |r| r["status"] == "failed").await;
    assert_eq!(run["failureReason"], "auth_invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_register_defaults_that_runs_inherit() {
    let h = shared().await;
    let (status, app) = h
        .post(
            "/api/apps/register",
            json!({"appId": "lifecycle-defaults", "runtimeDefaults": {"provider": "scripted", "model": "m1",
                   "providerOptions": {"script": [{"message": {"text": "from app defaults", "chunks": 1}}]}}}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {app}");
    let (status, body) = h
        .post(
            "/api/runs/start",
            json!({"appId": "lifecycle-defaults", "prompt": "go"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["provider"], "scripted");
    assert_eq!(body["model"], "m1");
    let run_id = body["runId"].as_str().unwrap();
    let events = events(&h.read_stream(run_id, None).await);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "message.completed" && e["data"]["text"] == "from app defaults")
    );
    let (_, apps) = h.get("/api/apps").await;
    assert!(
        apps["apps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["appId"] == "lifecycle-defaults")
    );
}
