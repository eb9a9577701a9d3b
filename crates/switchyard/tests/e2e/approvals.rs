//! Durable approvals: a pending human-loop request is listed from Postgres and can be
//! answered through a gateway and a control-plane that were both restarted while the
//! run waited (the owning executor holds the request and answers over NATS).

use crate::harness::Harness;
use serde_json::json;

#[tokio::test]
async fn a_pending_approval_survives_gateway_and_control_plane_restarts() {
    let mut harness = Harness::start(1, 1).await;
    let run_id = harness
        .start_scripted(json!([
            {"humanLoop": {"prompt": "Deploy to prod?", "kind": "command",
                           "details": {"command": "deploy --prod"}}},
            {"message": {"text": "deployed"}}
        ]))
        .await;

    let pending = harness
        .wait_requests(&run_id, "?status=pending", |r| r.len() == 1)
        .await;
    let request = &pending[0];
    let request_id = request["requestId"].as_str().expect("requestId").to_owned();
    assert_eq!(request["status"], "pending");
    assert_eq!(request["kind"], "command");
    assert_eq!(request["prompt"], "Deploy to prod?");
    assert_eq!(request["details"]["command"], "deploy --prod");
    assert!(request["requestedAt"].is_string(), "{request}");
    assert!(request.get("decision").is_none(), "{request}");

    harness.restart_gateway().await;
    harness.restart_control_plane().await;

    // Listed again, from Postgres, through the new gateway and control-plane.
    let (status, body) = harness
        .get(&format!("/api/runs/{run_id}/human-loop?status=pending"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requests"][0]["requestId"], request_id.as_str());

    let (status, body) = harness
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], true);

    let run = harness
        .wait_run(&run_id, |r| {
            r["status"] == "succeeded" || r["status"] == "failed"
        })
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let all = harness
        .wait_requests(&run_id, "", |r| {
            r.len() == 1 && r[0]["status"] == "resolved"
        })
        .await;
    assert_eq!(all[0]["requestId"], request_id.as_str());
    assert_eq!(all[0]["decision"], "approve");
    assert_eq!(all[0]["resolvedBy"], "human");
    assert!(all[0]["resolvedAt"].is_string(), "{all:?}");
    let (status, body) = harness
        .get(&format!("/api/runs/{run_id}/human-loop?status=pending"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["requests"], json!([]));

    let (status, body) = harness
        .get(&format!("/api/runs/{}/human-loop", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "run_not_found");
    harness.shutdown().await;
}
