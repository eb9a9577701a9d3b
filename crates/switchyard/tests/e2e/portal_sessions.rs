//! Browser sessions against the real control-plane: a session cookie is only as good as
//! the token it was opened with and the access its principal had at sign-in. Revoking
//! the token ends the session (and its open streams) at once; changing the principal's
//! role or apps ends it too; a cookie alone never starts a run.

use crate::harness::{DEADLINE, Harness, TOKEN};
use crate::rbac::{call, create_principal};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use switchyard::sse_client;

struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(h: &Harness, token: &str) -> (Browser, Value) {
    let response = h
        .http
        .post(h.url("/api/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("sy_session="), "{set_cookie}");
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrfToken"].as_str().unwrap().to_owned();
    (Browser { cookie, csrf }, body)
}

/// A request as the portal makes it: the cookie, and the CSRF header on changes.
async fn browse(
    h: &Harness,
    browser: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = h
        .http
        .request(method.clone(), h.url(path))
        .header("cookie", &browser.cookie);
    if method != Method::GET {
        request = request.header("x-switchyard-csrf", &browser.csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        set_cookie,
    )
}

fn waiting_script() -> Value {
    json!({"script": [
        {"humanLoop": {"prompt": "go on?", "kind": "command"}},
        {"message": {"text": "done", "chunks": 1}}
    ]})
}

fn assert_signed_out(status: u16, body: &Value, set_cookie: Option<&str>, why: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(why), "{message}");
    let removal = set_cookie.expect("the cookie is removed");
    assert!(removal.starts_with("sy_session=;"), "{removal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_with_its_token_and_so_do_its_streams() {
    let h = Harness::start(1, 1).await;
    let (status, body) = h
        .post("/api/apps/register", json!({"appId": "app-a"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (principal_id, token) = create_principal(&h, "dev", "developer", &["app-a"]).await;
    let (browser, me) = sign_in(&h, &token).await;
    assert_eq!(me["principal"]["id"], principal_id.as_str());
    assert_eq!(me["principal"]["role"], "developer");
    assert_eq!(me["principal"]["apps"], json!(["app-a"]));

    // The cookie starts a run through the real control-plane and streams it.
    let (status, started, _) = browse(
        &h,
        &browser,
        Method::POST,
        "/api/runs/start",
        Some(
            json!({"appId": "app-a", "provider": "scripted", "prompt": "hi",
                    "providerOptions": waiting_script()}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["runId"].as_str().unwrap().to_owned();
    let stream = h
        .http
        .get(h.url(&format!("/api/runs/{run_id}/stream")))
        .header("cookie", &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut frames = Box::pin(sse_client::frames(stream));
    let mut last_id = None;
    tokio::time::timeout(DEADLINE, async {
        while let Some(frame) = frames.next().await {
            let frame = frame.unwrap();
            last_id = frame.id.clone();
            if frame
                .json()
                .is_some_and(|e| e["type"] == "human_loop.requested")
            {
                break;
            }
        }
    })
    .await
    .expect("the run asked for approval");

    // The admin revokes the token the session was opened with.
    let (status, principal) = call(
        &h,
        TOKEN,
        Method::GET,
        &format!("/api/principals/{principal_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{principal}");
    let token_id = principal["tokens"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &h,
        TOKEN,
        Method::DELETE,
        &format!("/api/tokens/{token_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // The open stream ends, and neither it nor any other request comes back.
    tokio::time::timeout(DEADLINE, async {
        while let Some(frame) = frames.next().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the session's stream ended");
    let resumed = h
        .http
        .get(h.url(&format!("/api/runs/{run_id}/stream")))
        .header("cookie", &browser.cookie)
        .header("last-event-id", last_id.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status().as_u16(), 401);
    let (status, body, removal) = browse(&h, &browser, Method::GET, "/api/runs", None).await;
    assert_signed_out(status, &body, removal.as_deref(), "no longer valid");
    let (status, body, removal) = browse(
        &h,
        &browser,
        Method::POST,
        &format!("/api/runs/{run_id}/human-loop/reply"),
        Some(json!({"decision": "approve"})),
    )
    .await;
    assert_signed_out(status, &body, removal.as_deref(), "no longer valid");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_its_principal_changes() {
    let h = Harness::start(1, 1).await;
    for app in ["app-a", "app-b"] {
        let (status, body) = h.post("/api/apps/register", json!({"appId": app})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (principal_id, token) = create_principal(&h, "dev", "developer", &["app-a"]).await;

    // A role change.
    let (browser, _) = sign_in(&h, &token).await;
    let (status, body, _) = browse(&h, &browser, Method::GET, "/api/runs", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &h,
        TOKEN,
        Method::PUT,
        &format!("/api/principals/{principal_id}/role"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, removal) = browse(&h, &browser, Method::GET, "/api/runs", None).await;
    assert_signed_out(status, &body, removal.as_deref(), "access changed");
    // Signing in again gives a session with the new role.
    let (browser, me) = sign_in(&h, &token).await;
    assert_eq!(me["principal"]["role"], "viewer");
    let (status, _, _) = browse(&h, &browser, Method::GET, "/api/runs", None).await;
    assert_eq!(status, 200);

    // An apps change.
    let (status, body) = call(
        &h,
        TOKEN,
        Method::PUT,
        &format!("/api/principals/{principal_id}/apps"),
        Some(json!({"apps": ["app-a", "app-b"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, removal) = browse(&h, &browser, Method::GET, "/api/apps", None).await;
    assert_signed_out(status, &body, removal.as_deref(), "access changed");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_without_the_csrf_header_starts_nothing() {
    let h = Harness::start(1, 1).await;
    let (browser, _) = sign_in(&h, TOKEN).await;
    // What a forged cross-site form would carry if the browser sent the cookie: the
    // cookie, a simple content type, no CSRF header.
    let forged = h
        .http
        .post(h.url("/api/runs/start"))
        .header("cookie", &browser.cookie)
        .header("content-type", "text/plain")
        .header("origin", "https://evil.example")
        .body(json!({"provider": "scripted", "prompt": "forged"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_rejected");
    let (status, runs) = h.get("/api/runs").await;
    assert_eq!(status, 200);
    assert_eq!(runs["runs"], json!([]), "no run was started");
    // The portal's own request, with the header, does start one.
    let (status, body, _) = browse(
        &h,
        &browser,
        Method::POST,
        "/api/runs/start",
        Some(json!({"provider": "scripted", "prompt": "mine"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    h.shutdown().await;
}
