//! The standalone provider-run API: start, SSE stream with resume, stop, human-loop
//! replies, the error shapes, and who may call it (the bearer token of
//! `executor.api_token`; without one the API is off).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_contracts::api::ProviderRunStartResponse;
use switchyard_contracts::event::{FailureReason, TerminalStatus};
use switchyard_contracts::{RunEvent, RunId};

#[derive(Debug, Clone)]
struct Frame {
    id: String,
    event: String,
    data: RunEvent,
}

/// Parses an SSE body (the server ends it after `run.completed`).
fn parse_sse(body: &str) -> Vec<Frame> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            Some(Frame {
                id: id?,
                event: event?,
                data: data?,
            })
        })
        .collect()
}

/// The token the tests' executors are configured with.
const API_TOKEN: &str = "executor-api-test-token-5e2b9c";

/// An executor whose provider-run API is on.
async fn harness_with_api(
    adjust: impl FnOnce(&mut switchyard_executor::ExecutorSettings),
) -> Harness {
    Harness::start_with(|settings| {
        settings.api_token = Some(API_TOKEN.into());
        adjust(settings);
    })
    .await
}

struct Api {
    base: String,
    http: reqwest::Client,
}

/// A client that sends `Authorization: Bearer <token>` with every request.
fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

impl Api {
    fn new(harness: &Harness) -> Api {
        Api::with_client(harness, authorized_client(API_TOKEN))
    }

    fn with_client(harness: &Harness, http: reqwest::Client) -> Api {
        Api {
            base: format!("http://{}", harness.http),
            http,
        }
    }

    async fn start(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/provider-runs/start", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn start_ok(&self, body: Value) -> ProviderRunStartResponse {
        let response = self.start(body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Reads a whole stream (it ends after the terminal event).
    async fn stream(&self, path: &str, last_event_id: Option<&str>) -> (StatusCode, Vec<Frame>) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .unwrap()
            .unwrap();
        let status = response.status();
        if status == StatusCode::OK {
            assert_eq!(
                response.headers()["content-type"].to_str().unwrap(),
                "text/event-stream"
            );
        }
        let body = tokio::time::timeout(WAIT, response.text())
            .await
            .expect("the stream ends after run.completed")
            .unwrap();
        (status, parse_sse(&body))
    }
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn start_stream_resume_and_no_content_after_the_end() {
    let harness = harness_with_api(|_| {}).await;
    let api = Api::new(&harness);
    let started = api
        .start_ok(json!({
            "provider": "scripted",
            "prompt": "say hello",
            "providerOptions": {"script": [
                {"message": {"text": "hello world", "chunks": 3}},
                {"toolCall": {"name": "shell", "output": "ok"}}
            ]}
        }))
        .await;
    assert_eq!(
        started.stream_url,
        format!("/provider-runs/{}/stream", started.run_id)
    );
    assert_eq!(started.run_id.get_version_num(), 7);

    let (status, frames) = api.stream(&started.stream_url, None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "run.dispatched",
            "run.started",
            "message.delta",
            "message.delta",
            "message.delta",
            "message.completed",
            "tool.started",
            "tool.output",
            "tool.completed",
            "run.completed"
        ]
    );
    let events: Vec<RunEvent> = frames.iter().map(|f| f.data.clone()).collect();
    assert_contiguous(&events);
    assert!(events.iter().all(|e| e.run_id == started.run_id));
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);

    // Resume after the third event with ?cursor=: exactly the rest, no duplicate.
    let (status, rest) = api
        .stream(
            &format!("{}?cursor={}", started.stream_url, frames[2].id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let rest_seqs: Vec<u64> = rest.iter().map(|f| f.data.seq).collect();
    assert_eq!(rest_seqs, (4..=frames.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        rest.iter().map(|f| &f.id).collect::<Vec<_>>(),
        frames[3..].iter().map(|f| &f.id).collect::<Vec<_>>()
    );

    // Resume with Last-Event-ID (what EventSource sends).
    let (status, rest) = api.stream(&started.stream_url, Some(&frames[0].id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest.len(), frames.len() - 1);
    assert_eq!(rest[0].data.seq, 2);

    // Resume at the terminal event: nothing follows, 204 stops EventSource.
    let terminal = &frames.last().unwrap().id;
    let (status, rest) = api.stream(&started.stream_url, Some(terminal)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(rest.is_empty());
    let (status, _) = api
        .stream(&format!("{}?cursor={terminal}", started.stream_url), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A cursor that is not one of ours.
    let response = api
        .get(&format!("{}?cursor=bogus", started.stream_url))
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "invalid_cursor".to_owned())
    );

    // Another run's cursors are refused, before and after that run ended.
    let other = api
        .start_ok(json!({
            "provider": "scripted",
            "prompt": "wait",
            "providerOptions": {"script": [{"humanLoop": {"prompt": "go on?"}}]}
        }))
        .await;
    let raw = api.get(&other.stream_url).await;
    let mut body = raw.bytes_stream();
    let first = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut body))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        first.starts_with(b"retry: 1000\n\n"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    drop(body);
    for id in [&frames[2].id, terminal] {
        let response = api.get(&format!("{}?cursor={id}", other.stream_url)).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_cursor".to_owned())
        );
    }
    let response = api
        .post(&format!("/provider-runs/{}/stop", other.run_id), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (status, _) = api.stream(&other.stream_url, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.stream(&other.stream_url, Some(terminal)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a finished run too");

    // The same run id cannot be started again.
    let response = api
        .start(json!({"runId": started.run_id, "provider": "scripted", "prompt": "again"}))
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::CONFLICT, "run_exists".to_owned())
    );
}

#[tokio::test]
async fn a_live_stream_follows_human_loop_replies_and_a_stop() {
    let harness = harness_with_api(|_| {}).await;
    let api = Api::new(&harness);
    let started = api
        .start_ok(json!({
            "provider": "scripted",
            "prompt": "x",
            "providerOptions": {"script": [{"humanLoop": {"prompt": "Go?"}}, {"sleepMs": 60000}]}
        }))
        .await;
    let run_id = started.run_id;
    // Open the stream while the run is live; it must end by itself after the stop.
    let stream = tokio::spawn({
        let base = api.base.clone();
        let url = started.stream_url.clone();
        async move {
            let api = Api {
                base,
                http: authorized_client(API_TOKEN),
            };
            api.stream(&url, None).await
        }
    });

    harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "human_loop.requested")
        .await;
    let reply_path = format!("/provider-runs/{run_id}/human-loop/reply");
    let response = api.post(&reply_path, json!({"decision": "approve"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], true);
    assert_eq!(body["runId"], run_id.to_string());
    let response = api.post(&reply_path, json!({"decision": "deny"})).await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::CONFLICT, "no_pending_request".to_owned())
    );

    let response = api
        .post(&format!("/provider-runs/{run_id}/stop"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "stopping");

    let (status, frames) = stream.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "run.dispatched",
            "run.started",
            "human_loop.requested",
            "human_loop.resolved",
            "run.completed"
        ]
    );
    let events: Vec<RunEvent> = frames.into_iter().map(|f| f.data).collect();
    let completed = completion(&events);
    assert_eq!(completed.status, TerminalStatus::Stopped);
    assert_eq!(completed.reason, Some(FailureReason::Stopped));

    // The run ended: stop and replies find nothing here any more.
    let response = api
        .post(&format!("/provider-runs/{run_id}/stop"), json!({}))
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
}

#[tokio::test]
async fn requests_the_api_cannot_serve_get_the_shared_error_shape() {
    let harness = harness_with_api(|s| s.capacity = 1).await;
    let api = Api::new(&harness);
    let unknown_run = uuid::Uuid::now_v7();

    let cases: Vec<(reqwest::Response, StatusCode, &str)> = vec![
        (
            api.start(json!({"provider": "gpt-9", "prompt": "x"})).await,
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            api.start(json!({"provider": "claude-code", "prompt": "x"}))
                .await,
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            api.http
                .post(format!("{}/provider-runs/start", api.base))
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            api.start(json!({"provider": "scripted"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            api.get(&format!("/provider-runs/{unknown_run}/stream"))
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            api.get("/provider-runs/not-a-uuid/stream").await,
            StatusCode::BAD_REQUEST,
            "invalid_run_id",
        ),
        (
            api.post(&format!("/provider-runs/{unknown_run}/stop"), json!({}))
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            api.post("/provider-runs/nope/stop", json!({})).await,
            StatusCode::BAD_REQUEST,
            "invalid_run_id",
        ),
        (
            api.post(
                &format!("/provider-runs/{unknown_run}/human-loop/reply"),
                json!({"decision": "approve"}),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(error_code(response).await, (status, code.to_owned()));
    }

    let oversized = "x".repeat(2 * 1024 * 1024);
    let response = api
        .start(json!({"provider": "scripted", "prompt": oversized}))
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".to_owned())
    );

    // One slot: a long run takes it, the next start is refused with 503.
    let long = api
        .start_ok(json!({"provider": "scripted", "prompt": "x",
            "providerOptions": {"script": [{"sleepMs": 60000}]}}))
        .await;
    let response = api
        .start(json!({"provider": "scripted", "prompt": "x"}))
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "executor_full".to_owned())
    );
    let response = api
        .post(&format!("/provider-runs/{}/stop", long.run_id), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(api.get("/readyz").await.status(), StatusCode::OK);
}

/// The answer to a caller without the right token: 401 `unauthorized` with a Bearer
/// challenge, in the shared error shape.
async fn assert_unauthorized(response: reqwest::Response, what: &str) {
    // Checked before the body is read: a stream served by mistake would never end.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        error_code(response).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
        "{what}"
    );
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{what}: WWW-Authenticate {challenge:?}"
    );
}

#[tokio::test]
async fn without_the_token_nobody_reads_approves_stops_or_starts_a_run() {
    let harness = harness_with_api(|_| {}).await;
    // A run waiting for an approval, dispatched the way the platform does (NATS).
    let request = fresh_dispatch(json!([
        {"humanLoop": {"prompt": "run rm -rf / ?", "kind": "command"}},
        {"message": {"text": "approved by the owner"}}
    ]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        switchyard_contracts::dispatch::DispatchOutcome::Accepted
    );
    let asked = harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "human_loop.requested")
        .await;

    let stream = format!("/provider-runs/{run_id}/stream");
    let reply = format!("/provider-runs/{run_id}/human-loop/reply");
    let stop = format!("/provider-runs/{run_id}/stop");
    let intruder_run = RunId::now_v7();
    let start = json!({
        "runId": intruder_run,
        "provider": "scripted",
        "prompt": "x",
        "credentialEnv": ["SWITCHYARD_NATS__PASSWORD"],
    });
    let attackers = [
        ("no Authorization header", reqwest::Client::new()),
        (
            "a wrong token",
            authorized_client("executor-api-test-token-guess0"),
        ),
        (
            "the token with one byte off",
            authorized_client(&format!("{}X", &API_TOKEN[..API_TOKEN.len() - 1])),
        ),
    ];
    for (who, client) in attackers {
        let api = Api::with_client(&harness, client);
        assert_unauthorized(api.get(&stream).await, &format!("stream with {who}")).await;
        assert_unauthorized(
            api.post(&reply, json!({"decision": "approve"})).await,
            &format!("approval with {who}"),
        )
        .await;
        assert_unauthorized(
            api.post(&stop, json!({})).await,
            &format!("stop with {who}"),
        )
        .await;
        assert_unauthorized(api.start(start.clone()).await, &format!("start with {who}")).await;
    }
    // Another scheme carrying the token is not a bearer token either.
    let basic = api_with_header(&harness, &format!("Basic {API_TOKEN}"));
    assert_unauthorized(basic.post(&stop, json!({})).await, "stop with Basic").await;

    // Nothing happened: the run still waits for its approval, the intruder's run was
    // never started.
    let last = harness.log.last(run_id).await.unwrap().unwrap();
    assert_eq!(
        last.header.seq, asked.seq,
        "the run moved on: {:?}",
        last.header
    );
    assert!(harness.log.last(intruder_run).await.unwrap().is_none());

    // The holder of the token is served: the approval goes through and the run ends.
    let api = Api::new(&harness);
    let response = api.post(&reply, json!({"decision": "approve"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (status, frames) = api.stream(&stream, None).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<RunEvent> = frames.into_iter().map(|f| f.data).collect();
    assert_eq!(completion(&events).status, TerminalStatus::Succeeded);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        switchyard_contracts::RunEventKind::HumanLoopResolved(r)
            if r.decision == switchyard_contracts::event::HumanLoopDecision::Approve
    )));
}

/// A client that sends `Authorization: <value>` with every request.
fn api_with_header(harness: &Harness, value: &str) -> Api {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    Api::with_client(
        harness,
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn without_a_configured_token_the_api_is_off() {
    let harness = Harness::start().await;
    let request = fresh_dispatch(json!([{"humanLoop": {"prompt": "Go?"}}]));
    let run_id = request.command.run_id;
    assert_eq!(
        harness.dispatch(&request).await.outcome,
        switchyard_contracts::dispatch::DispatchOutcome::Accepted
    );
    let asked = harness
        .wait_for_event(run_id, |e| e.kind.type_name() == "human_loop.requested")
        .await;
    // Whatever the caller sends, the API answers that it is off, and says how to turn
    // it on.
    for api in [
        Api::with_client(&harness, reqwest::Client::new()),
        Api::new(&harness),
    ] {
        let responses = [
            api.get(&format!("/provider-runs/{run_id}/stream")).await,
            api.post(
                &format!("/provider-runs/{run_id}/human-loop/reply"),
                json!({"decision": "approve"}),
            )
            .await,
            api.post(&format!("/provider-runs/{run_id}/stop"), json!({}))
                .await,
            api.start(json!({"provider": "scripted", "prompt": "x"}))
                .await,
        ];
        for response in responses {
            // Checked before the body is read: a stream served by mistake never ends.
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "api_disabled", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("executor.api_token"),
                "{body}"
            );
        }
    }
    let last = harness.log.last(run_id).await.unwrap().unwrap();
    assert_eq!(last.header.seq, asked.seq, "the run moved on");
    // Health answers carry no data and stay open.
    let api = Api::with_client(&harness, reqwest::Client::new());
    assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(api.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_quiet_stream_gets_keep_alive_comments_between_its_frames() {
    let harness = harness_with_api(|settings| settings.keep_alive_secs = 1).await;
    let api = Api::new(&harness);
    let started = api
        .start_ok(json!({
            "provider": "scripted",
            "prompt": "x",
            "providerOptions": {"script": [{"sleepMs": 2500}]}
        }))
        .await;
    let response = tokio::time::timeout(
        WAIT,
        api.http
            .get(format!("{}{}", api.base, started.stream_url))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("the stream ends after run.completed")
        .unwrap();
    assert!(body.starts_with("retry: "), "{body}");
    // The run is silent for 2.5 s: at least one comment comes between two events.
    let quiet = body.find("\n\n:\n\n").expect("a keep-alive comment");
    let completed = body
        .find("event: run.completed")
        .expect("the terminal event");
    assert!(quiet < completed, "{body}");
    let frames = parse_sse(&body);
    assert_eq!(
        frames.last().map(|f| f.event.as_str()),
        Some("run.completed"),
        "{body}"
    );
}
