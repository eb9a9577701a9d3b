//! Garbage in, clear errors out: the documented status and code, in the JSON shape.

use crate::harness::{Api, TOKEN};
use crate::shared::shared;
use serde_json::{Value, json};

async fn raw_post(h: &Api, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = h
        .http
        .post(h.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_documented_status_and_code() {
    let h = shared().await;
    let (s, b) = raw_post(
        &h,
        "/api/runs/start",
        "application/json",
        b"{\"prompt\": ".to_vec(),
    )
    .await;
    assert_eq!((s, code(&b)), (400, "invalid_json"), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let (s, b) = h
        .post(
            "/api/runs/start",
            json!({"provider": "gpt-9", "prompt": "x"}),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "unknown_provider"), "{b}");

    let (s, b) = h
        .post("/api/runs/start", json!({"provider": "scripted"}))
        .await;
    assert_eq!((s, code(&b)), (422, "invalid_body"), "{b}");

    let (s, b) = h.post("/api/runs/start", json!({"prompt": 5})).await;
    assert_eq!((s, code(&b)), (422, "invalid_body"), "{b}");

    let (s, b) = h.get(&format!("/api/runs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(s, 404, "{b}");
    assert!(code(&b).ends_with("not_found"), "{b}");

    let (s, b) = h.get("/api/runs/not-a-uuid").await;
    assert_eq!((s, code(&b)), (400, "invalid_run_id"), "{b}");

    let response = h
        .http
        .get(h.url(&format!("/api/runs/{}/stream", uuid::Uuid::now_v7())))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let huge = vec![b'a'; 3 * 1024 * 1024];
    let mut body = b"{\"prompt\":\"".to_vec();
    body.extend_from_slice(&huge);
    body.extend_from_slice(b"\"}");
    let (s, b) = raw_post(&h, "/api/runs/start", "application/json", body).await;
    assert_eq!((s, code(&b)), (413, "body_too_large"), "{b}");

    let (s, b) = h
        .post(
            &format!("/api/runs/{}/stop", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(s, 404, "{b}");

    let (s, b) = h
        .post("/api/apps/register", json!({"appId": "bad id with spaces"}))
        .await;
    assert_eq!(s, 400, "{b}");

    // Unauthenticated and wrongly authenticated requests.
    let response = h.http.get(h.url("/api/runs")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = h
        .http
        .get(h.url("/api/runs"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let b: Value = response.json().await.unwrap();
    assert_eq!(code(&b), "unauthorized");

    // The control-plane only answers gateways: a direct call, even with principal
    // headers claiming admin, is refused without the internal token.
    let cp = &h.control_plane_base;
    let direct = h
        .http
        .get(format!("{cp}/api/runs"))
        .header("x-switchyard-principal", "intruder")
        .header("x-switchyard-role", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status().as_u16(), 401);
    let wrong = h
        .http
        .get(format!("{cp}/api/runs"))
        .header("x-switchyard-internal-token", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let health = h.http.get(format!("{cp}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // The platform is still healthy after all that.
    let response = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
