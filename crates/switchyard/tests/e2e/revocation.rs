//! Changes to a principal's access take effect at once, not when the gateways' token
//! caches expire: the control-plane announces them on NATS after the commit, every
//! gateway drops the principal's cached answers and ends its open SSE streams. The
//! gateway that forwarded the change applies it before answering (so the next request
//! is already affected); another gateway applies the NATS notice, which the tests
//! await with a deadline. The second gateway caches tokens for an hour, so its TTL
//! cannot be what makes a change visible.

use crate::harness::{DEADLINE, Harness, INTERNAL_TOKEN, TOKEN};
use crate::rbac::{call, create_principal, start_waiting_run};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use switchyard::sse_client;
use switchyard_platform::config;
use switchyard_platform::service::ServiceHandle;
use tokio_util::sync::CancellationToken;

/// A second gateway in front of the same control-plane and NATS.
struct OtherGateway {
    base: String,
    handle: ServiceHandle,
    shutdown: CancellationToken,
}

impl OtherGateway {
    async fn start(h: &Harness) -> OtherGateway {
        let cp = h
            .control_plane
            .handle
            .http_addr
            .expect("control-plane address");
        let env: HashMap<String, String> = [
            ("SWITCHYARD_NATS__URL", h.nats.url()),
            ("SWITCHYARD_GATEWAY__LISTEN", "127.0.0.1:0".to_owned()),
            ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", TOKEN.to_owned()),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN",
                INTERNAL_TOKEN.to_owned(),
            ),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL",
                format!("http://{cp}"),
            ),
            ("SWITCHYARD_GATEWAY__TOKEN_CACHE_SECS", "3600".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config: switchyard_gateway::Config =
            config::load_from(None, env).expect("gateway config");
        let shutdown = CancellationToken::new();
        let handle = switchyard_gateway::start(config, shutdown.clone())
            .await
            .expect("second gateway starts");
        OtherGateway {
            base: format!("http://{}", handle.http_addr.expect("gateway address")),
            handle,
            shutdown,
        }
    }

    async fn call(&self, h: &Harness, token: &str, method: Method, path: &str) -> (u16, Value) {
        let mut request = h
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if path == "/api/runs/start" {
            // Not a valid start: a writer gets a 4xx about the body, a viewer 403.
            request = request.json(&json!({}));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls until `token`'s request answers `want` (the NATS notice is asynchronous).
    async fn await_status(&self, h: &Harness, token: &str, method: Method, path: &str, want: u16) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.call(h, token, method.clone(), path).await;
            if status == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{method} {path} on the second gateway never answered {want}; last {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.wait().await.expect("second gateway stops");
    }
}

async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(h, TOKEN, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_and_membership_changes_apply_on_the_next_request() {
    let h = Harness::start(1, 1).await;
    let other = OtherGateway::start(&h).await;
    for app in ["app-a", "app-b"] {
        let (status, body) = h.post("/api/apps/register", json!({"appId": app})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (dev_id, dev) = create_principal(&h, "dev", "developer", &["app-a", "app-b"]).await;
    let run_b = start_waiting_run(&h, TOKEN, "app-b").await;
    // Both gateways now hold the developer's answer in their caches.
    let run_path = format!("/api/runs/{run_b}");
    let (status, _) = call(&h, &dev, Method::GET, &run_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(other.call(&h, &dev, Method::GET, &run_path).await.0, 200);

    // A change that bypasses the API (so nothing is announced) is not seen while the
    // cache holds: this is what the notices are for.
    sqlx::query("DELETE FROM principal_apps WHERE app_id = 'app-b'")
        .execute(&h.db.pool)
        .await
        .unwrap();
    let (status, _) = call(&h, &dev, Method::GET, &run_path, None).await;
    assert_eq!(status, 200, "the gateway's cache answered");

    // Through the API, the removal of app-b hides its runs on the very next request…
    let response = h
        .http
        .put(h.url(&format!("/api/principals/{dev_id}/apps")))
        .bearer_auth(TOKEN)
        .json(&json!({"apps": ["app-a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("x-switchyard-")),
        "internal headers reach the client: {:?}",
        response.headers()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["apps"], json!(["app-a"]));
    assert_eq!(body["id"], json!(dev_id));
    let (status, body) = call(&h, &dev, Method::GET, &run_path, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("run_not_found")),
        "{body}"
    );
    // …and on the other gateway as soon as the notice arrives.
    other
        .await_status(&h, &dev, Method::GET, &run_path, 404)
        .await;

    // A developer downgraded to viewer can no longer start runs: next request.
    let start = json!({"appId": "app-a", "provider": "scripted", "prompt": "x"});
    let (status, body) = call(&h, &dev, Method::POST, "/api/runs/start", Some(json!({}))).await;
    assert_eq!(
        status, 422,
        "a developer's bad start is a body error: {body}"
    );
    assert_eq!(
        other
            .call(&h, &dev, Method::POST, "/api/runs/start")
            .await
            .0,
        422
    );
    let (status, body) = admin(
        &h,
        Method::PUT,
        &format!("/api/principals/{dev_id}/role"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!((status, &body["role"]), (200, &json!("viewer")), "{body}");
    let (status, body) = call(&h, &dev, Method::POST, "/api/runs/start", Some(start)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    other
        .await_status(&h, &dev, Method::POST, "/api/runs/start", 403)
        .await;
    // Reading is still allowed, and the principal shows its new state.
    let (status, _) = call(&h, &dev, Method::GET, "/api/runs", None).await;
    assert_eq!(status, 200);
    let (status, shown) = admin(&h, Method::GET, &format!("/api/principals/{dev_id}"), None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["role"], "viewer");
    assert_eq!(shown["apps"], json!(["app-a"]));
    assert_eq!(shown["tokens"].as_array().unwrap().len(), 1, "{shown}");

    let (status, _) = h.post(&format!("/api/runs/{run_b}/stop"), json!({})).await;
    assert_eq!(status, 202);
    other.stop().await;
    h.shutdown().await;
}

type Frames = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<sse_client::Frame, sse_client::Error>> + Send>,
>;

/// Opens `run_id`'s stream as `token` and waits for its first event, so the stream is
/// known to be live.
async fn live_stream(h: &Harness, base: &str, token: &str, run_id: &str) -> Frames {
    let response = h
        .http
        .get(format!("{base}/api/runs/{run_id}/stream"))
        .bearer_auth(token)
        .send()
        .await
        .expect("stream request");
    assert_eq!(response.status().as_u16(), 200);
    let mut frames: Frames = Box::pin(sse_client::frames(response));
    let first = tokio::time::timeout(DEADLINE, frames.next())
        .await
        .expect("a first frame in time")
        .expect("the stream is open")
        .expect("a frame");
    assert!(first.json().is_some(), "{first:?}");
    frames
}

/// Reads until the server ends the stream (all frames must be well-formed).
async fn await_end(frames: &mut Frames, what: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let read = async {
        while let Some(frame) = frames.next().await {
            if let Some(event) = frame.expect("stream frame").json() {
                events.push(event);
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("{what}: the stream did not end in time"));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_deleted_principals_are_refused_at_once_and_their_streams_end() {
    let h = Harness::start(1, 1).await;
    let other = OtherGateway::start(&h).await;
    let (status, body) = h
        .post("/api/apps/register", json!({"appId": "app-a"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (viewer_id, viewer) = create_principal(&h, "viewer", "viewer", &["app-a"]).await;
    let (doomed_id, doomed) = create_principal(&h, "doomed", "viewer", &["app-a"]).await;
    let (bystander_id, bystander) = create_principal(&h, "bystander", "viewer", &["app-a"]).await;
    let run = start_waiting_run(&h, TOKEN, "app-a").await;
    h.wait_run(&run, |r| r["status"] == "waiting_for_human")
        .await;

    // Live streams on both gateways; every token has been resolved and cached.
    let mut viewer_here = live_stream(&h, &h.base, &viewer, &run).await;
    let mut viewer_there = live_stream(&h, &other.base, &viewer, &run).await;
    let mut doomed_there = live_stream(&h, &other.base, &doomed, &run).await;
    let mut bystander_here = live_stream(&h, &h.base, &bystander, &run).await;

    // Revoke the viewer's only token.
    let (status, listed) = admin(&h, Method::GET, "/api/principals", None).await;
    assert_eq!(status, 200);
    let token_id = listed["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "viewer")
        .map(|p| p["tokens"][0]["id"].as_str().unwrap().to_owned())
        .unwrap();
    let listener = async_nats::connect(h.nats.url()).await.unwrap();
    let mut notices = listener.subscribe("auth.principals.changed").await.unwrap();
    listener.flush().await.unwrap();
    let (status, _) = admin(&h, Method::DELETE, &format!("/api/tokens/{token_id}"), None).await;
    assert_eq!(status, 204);
    // The notice names the principal and nothing else: no token, no hash.
    let notice = tokio::time::timeout(DEADLINE, notices.next())
        .await
        .expect("a notice in time")
        .expect("the subscription is open");
    let payload: Value = serde_json::from_slice(&notice.payload).unwrap();
    assert_eq!(payload, json!({"principalId": viewer_id}));
    assert!(!String::from_utf8_lossy(&notice.payload).contains(&viewer));
    let (status, body) = call(&h, &viewer, Method::GET, "/api/runs", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
    await_end(&mut viewer_here, "revoked token, forwarding gateway").await;
    await_end(&mut viewer_there, "revoked token, other gateway").await;
    other
        .await_status(&h, &viewer, Method::GET, "/api/runs", 401)
        .await;
    // Reconnecting is authorised again, and refused.
    let response = h
        .http
        .get(h.url(&format!("/api/runs/{run}/stream")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // Delete a principal: its token is refused at once, its stream ends.
    let (status, _) = admin(
        &h,
        Method::DELETE,
        &format!("/api/principals/{doomed_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(&h, &doomed, Method::GET, "/api/runs", None).await;
    assert_eq!(status, 401);
    await_end(&mut doomed_there, "deleted principal, other gateway").await;
    other
        .await_status(&h, &doomed, Method::GET, "/api/runs", 401)
        .await;
    let (status, body) = admin(
        &h,
        Method::GET,
        &format!("/api/principals/{doomed_id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("principal_not_found"))
    );
    let (status, _) = admin(
        &h,
        Method::DELETE,
        &format!("/api/principals/{doomed_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "deleting twice finds nothing");

    // The bystander's stream was not touched: it carries the run to its end.
    let (status, body) = h
        .post(
            &format!("/api/runs/{run}/human-loop/reply"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events = await_end(&mut bystander_here, "bystander").await;
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("run.completed")),
        "{events:?}"
    );

    // Revoking all of a principal's tokens at once.
    let (status, issued) = admin(
        &h,
        Method::POST,
        &format!("/api/principals/{bystander_id}/tokens"),
        None,
    )
    .await;
    assert_eq!(status, 201);
    let second = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&h, &second, Method::GET, "/api/runs", None).await.0,
        200
    );
    let (status, body) = admin(
        &h,
        Method::DELETE,
        &format!("/api/principals/{bystander_id}/tokens"),
        None,
    )
    .await;
    assert_eq!((status, &body["revoked"]), (200, &json!(2)), "{body}");
    for token in [&bystander, &second] {
        assert_eq!(call(&h, token, Method::GET, "/api/runs", None).await.0, 401);
    }
    let (status, body) = admin(
        &h,
        Method::DELETE,
        &format!("/api/principals/{bystander_id}/tokens"),
        None,
    )
    .await;
    assert_eq!((status, &body["revoked"]), (200, &json!(0)), "{body}");

    other.stop().await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_endpoints_refuse_non_admins_and_garbage() {
    let h = Harness::start(0, 0).await;
    let (status, body) = h
        .post("/api/apps/register", json!({"appId": "app-a"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (target, _) = create_principal(&h, "target", "developer", &[]).await;
    let missing = uuid::Uuid::now_v7();
    let routes = |id: &str| {
        vec![
            (Method::GET, "/api/principals".to_owned(), None),
            (
                Method::POST,
                "/api/principals".to_owned(),
                Some(json!({"name": "x", "role": "admin"})),
            ),
            (Method::GET, format!("/api/principals/{id}"), None),
            (
                Method::PUT,
                format!("/api/principals/{id}/role"),
                Some(json!({"role": "admin"})),
            ),
            (
                Method::PUT,
                format!("/api/principals/{id}/apps"),
                Some(json!({"apps": ["x"]})),
            ),
            (Method::DELETE, format!("/api/principals/{id}"), None),
            (Method::POST, format!("/api/principals/{id}/tokens"), None),
            (Method::DELETE, format!("/api/principals/{id}/tokens"), None),
            (Method::DELETE, format!("/api/tokens/{id}"), None),
        ]
    };
    for role in ["operator", "developer", "viewer"] {
        let (_, token) = create_principal(&h, role, role, &["app-a"]).await;
        for (method, path, body) in routes(&target) {
            let (status, answer) = call(&h, &token, method.clone(), &path, body).await;
            assert_eq!(
                (status, &answer["error"]["code"]),
                (403, &json!("forbidden")),
                "{role}: {method} {path}: {answer}"
            );
        }
    }
    let (status, shown) = admin(&h, Method::GET, &format!("/api/principals/{target}"), None).await;
    assert_eq!(
        (status, &shown["role"]),
        (200, &json!("developer")),
        "unchanged"
    );

    // Unknown principals and ids that are not UUIDs.
    for (method, path, body) in routes(&missing.to_string()).into_iter().skip(2) {
        let (status, answer) = admin(&h, method.clone(), &path, body).await;
        let code = if path.starts_with("/api/tokens/") {
            "token_not_found"
        } else {
            "principal_not_found"
        };
        assert_eq!(
            (status, &answer["error"]["code"]),
            (404, &json!(code)),
            "{method} {path}: {answer}"
        );
    }
    for (method, path, body) in routes("not-a-uuid").into_iter().skip(2) {
        let (status, answer) = admin(&h, method.clone(), &path, body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("invalid_request")),
            "{method} {path}: {answer}"
        );
    }

    // Garbage bodies: 4xx with a JSON code, never 5xx, and nothing changes.
    let role_path = format!("/api/principals/{target}/role");
    let apps_path = format!("/api/principals/{target}/apps");
    let raw = |path: &str, content_type: &'static str, bytes: &'static [u8]| {
        h.http
            .put(h.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(bytes)
    };
    for path in [&role_path, &apps_path] {
        for (content_type, bytes) in [
            ("application/json", &b""[..]),
            ("application/json", b"{"),
            ("application/json", b"null"),
            ("application/json", b"[]"),
            ("application/json", b"{\"role\": 1, \"apps\": 2}"),
            (
                "application/json",
                b"{\"role\": \"admin\", \"apps\": [], \"extra\": 1}",
            ),
            ("application/json", b"\xff\xfe"),
            ("text/plain", b"{\"role\": \"viewer\"}"),
        ] {
            let response = raw(path, content_type, bytes).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a JSON error body");
            assert!(
                (400..500).contains(&status) && body["error"]["code"].is_string(),
                "PUT {path} {content_type} {bytes:?}: {status} {body}"
            );
        }
    }
    for (path, body, code) in [
        (&role_path, json!({"role": "root"}), "invalid_body"),
        (&role_path, json!({"role": "Admin"}), "invalid_body"),
        (&role_path, json!({}), "invalid_body"),
        (&apps_path, json!({"apps": ["bad app"]}), "invalid_request"),
        (&apps_path, json!({"apps": ["a.b"]}), "invalid_request"),
        (&apps_path, json!({"apps": "app-a"}), "invalid_body"),
        (&apps_path, json!({}), "invalid_body"),
    ] {
        let (status, answer) = admin(&h, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(
            (status / 100, &answer["error"]["code"]),
            (4, &json!(code)),
            "PUT {path} {body}: {answer}"
        );
    }
    let (status, shown) = admin(&h, Method::GET, &format!("/api/principals/{target}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["role"], "developer");
    assert_eq!(shown["apps"], json!([]));
    // A bad role on creation is refused the same way.
    let (status, answer) = admin(
        &h,
        Method::POST,
        "/api/principals",
        Some(json!({"name": "x", "role": "root"})),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (422, &json!("invalid_body"))
    );
    h.shutdown().await;
}

/// A notice sent while a gateway is cut off from NATS is lost; the gateway therefore
/// drops every cached answer when its connection comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_reconnect_drops_every_cached_answer() {
    let mut h = Harness::start(0, 0).await;
    let other = OtherGateway::start(&h).await;
    let (_, viewer) = create_principal(&h, "viewer", "viewer", &[]).await;
    assert_eq!(
        other.call(&h, &viewer, Method::GET, "/api/runs").await.0,
        200
    );
    // Revoked behind the control-plane's back: no notice, so the cache still answers.
    sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(
        other.call(&h, &viewer, Method::GET, "/api/runs").await.0,
        200
    );

    h.nats.restart().await.expect("nats-server restarts");
    other
        .await_status(&h, &viewer, Method::GET, "/api/runs", 401)
        .await;
    other.stop().await;
    h.shutdown().await;
}

/// The stream of a run the principal just started skips the control-plane lookup (a
/// read grant, see the gateway's `grants`); a change to the principal's access drops
/// the grant with the rest of what the gateway holds, so the next stream is judged by
/// the control-plane again.
#[tokio::test]
async fn a_just_started_runs_stream_is_judged_again_after_an_access_change() {
    let h = Harness::start(1, 1).await;
    let (status, body) = h
        .post("/api/apps/register", json!({"appId": "app-a"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (dev_id, dev) = create_principal(&h, "dev", "developer", &["app-a"]).await;
    let run = start_waiting_run(&h, &dev, "app-a").await;
    let stream = |token: &str| {
        h.http
            .get(h.url(&format!("/api/runs/{run}/stream")))
            .bearer_auth(token)
            .send()
    };
    // The grant serves its principal only: another principal is asked about.
    let response = stream(&dev).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    drop(response);
    let (_, outsider) = create_principal(&h, "outsider", "developer", &[]).await;
    assert_eq!(stream(&outsider).await.unwrap().status().as_u16(), 404);

    let (status, body) = admin(
        &h,
        Method::PUT,
        &format!("/api/principals/{dev_id}/apps"),
        Some(json!({"apps": []})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let response = stream(&dev).await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        404,
        "the grant outlived the change"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "run_not_found", "{body}");
    h.shutdown().await;
}
