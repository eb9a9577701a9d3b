//! The per-run budget through the whole platform: an app's budget (and a profile's,
//! and a start request's, merged field by field) reaches the executor, a run over it
//! ends `budget_exceeded` with evidence in the API, and bad budgets are refused at the
//! edge with the field named.

use crate::harness::{Api, assert_gapless, events};
use crate::shared::shared;
use serde_json::{Value, json};

async fn finished(h: &Api, body: Value) -> Value {
    let (status, started) = h.post("/api/runs/start", body).await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["runId"].as_str().unwrap().to_owned();
    let events = events(&h.read_stream(&run_id, None).await);
    assert_gapless(&events);
    let last = events.last().unwrap()["seq"].as_u64();
    h.wait_run(&run_id, |r| r["lastEventSeq"].as_u64() == last)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_budget_ends_a_runaway_run_and_bad_budgets_are_refused() {
    let h = shared().await;
    let filler = json!([{"filler": {"count": 200}}]);
    let (status, app) = h
        .post(
            "/api/apps/register",
            json!({"appId": "capped", "runtimeDefaults": {"provider": "scripted",
                   "providerOptions": {"script": filler, "budget": {"maxEvents": 30, "maxTurns": 5}}},
                   "executionProfiles": {"tight": {"providerOptions": {"budget": {"maxEvents": 10}}}}}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {app}");

    let run = finished(&h, json!({"appId": "capped", "prompt": "go"})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failureReason"], "budget_exceeded", "{run}");
    let detail = run["failureDetail"].as_str().unwrap();
    assert!(
        detail.contains("30 events") && detail.contains("maxEvents"),
        "{detail}"
    );
    assert_eq!(
        run["evidence"]["rawLines"][0], "budget exceeded: maxEvents = 30",
        "{run}"
    );

    let run = finished(
        &h,
        json!({"appId": "capped", "executionProfile": "tight", "prompt": "go"}),
    )
    .await;
    assert_eq!(run["failureReason"], "budget_exceeded", "{run}");
    assert!(
        run["failureDetail"].as_str().unwrap().contains("10 events"),
        "{run}"
    );

    // The request raises the event limit only; the app's turn limit still holds.
    let run = finished(
        &h,
        json!({"appId": "capped", "prompt": "go",
               "providerOptions": {"budget": {"maxEvents": 1000}}}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run = finished(
        &h,
        json!({"appId": "capped", "prompt": "go", "providerOptions": {
            "budget": {"maxEvents": 1000},
            "script": [{"toolCall": {"name": "a"}}, {"toolCall": {"name": "b"}},
                       {"toolCall": {"name": "c"}}, {"toolCall": {"name": "d"}},
                       {"toolCall": {"name": "e"}}, {"toolCall": {"name": "f"}}]}}),
    )
    .await;
    assert_eq!(run["failureReason"], "budget_exceeded", "{run}");
    assert!(
        run["failureDetail"].as_str().unwrap().contains("maxTurns"),
        "{run}"
    );

    for (budget, field) in [
        (json!({"maxEvents": 0}), "maxEvents"),
        (json!({"maxTurns": "lots"}), "maxTurns"),
        (json!({"maxEventBytes": 1u64 << 40}), "maxEventBytes"),
        (json!({"maxEvnts": 5}), "maxEvnts"),
    ] {
        let (status, body) = h
            .post(
                "/api/apps/register",
                json!({"appId": "bad", "runtimeDefaults": {"providerOptions": {"budget": budget}}}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("runtimeDefaults.providerOptions.budget") && message.contains(field),
            "{message}"
        );
        let (status, body) = h
            .post(
                "/api/runs/start",
                json!({"appId": "capped", "prompt": "go", "providerOptions": {"budget": budget}}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("providerOptions.budget") && message.contains(field),
            "{message}"
        );
    }
}
