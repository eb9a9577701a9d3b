//! RBAC through the gateway: principals with tokens, roles and app membership. A token
//! of app A cannot see or touch app B's runs (404, so ids do not leak); a viewer reads
//! but cannot start, stop or answer; revoked tokens are refused; tokens are stored
//! hashed.

use crate::harness::{Harness, TOKEN};
use reqwest::Method;
use serde_json::{Value, json};

/// One request as `token`; the status and the JSON body (`null` when there is none).
pub(crate) async fn call(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = h.http.request(method, h.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A run in `app` that waits for a human, so stop and reply have something to act on.
pub(crate) async fn start_waiting_run(h: &Harness, token: &str, app: &str) -> String {
    let (status, body) = call(
        h,
        token,
        Method::POST,
        "/api/runs/start",
        Some(json!({
            "appId": app,
            "provider": "scripted",
            "prompt": "rbac",
            "providerOptions": {"script": [
                {"humanLoop": {"prompt": "go on?", "kind": "command"}},
                {"message": {"text": "done", "chunks": 1}}
            ]}
        })),
    )
    .await;
    assert_eq!(status, 202, "start in {app}: {body}");
    body["runId"].as_str().unwrap().to_owned()
}

pub(crate) async fn create_principal(
    h: &Harness,
    name: &str,
    role: &str,
    apps: &[&str],
) -> (String, String) {
    let (status, body) = call(
        h,
        TOKEN,
        Method::POST,
        "/api/principals",
        Some(json!({"name": name, "role": role, "apps": apps})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["role"], role);
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sy_"), "{token}");
    (body["id"].as_str().unwrap().to_owned(), token)
}

fn run_ids(list: &Value) -> Vec<&str> {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runId"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_see_and_touch_only_what_their_role_and_apps_allow() {
    let h = Harness::start(1, 1).await;
    for app in ["app-a", "app-b"] {
        let (status, body) = h.post("/api/apps/register", json!({"appId": app})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, developer) = create_principal(&h, "dev of A", "developer", &["app-a"]).await;
    let (viewer_id, viewer) = create_principal(&h, "viewer of A", "viewer", &["app-a"]).await;

    let run_b = start_waiting_run(&h, TOKEN, "app-b").await;
    let run_a = start_waiting_run(&h, &developer, "app-a").await;
    h.wait_run(&run_b, |r| r["status"] == "waiting_for_human")
        .await;
    h.wait_run(&run_a, |r| r["status"] == "waiting_for_human")
        .await;

    // The developer of A: B's run does not exist for them, whatever they try.
    let reply = json!({"decision": "approve"});
    for (method, path, body) in [
        (Method::GET, format!("/api/runs/{run_b}"), None),
        (Method::GET, format!("/api/runs/{run_b}/stream"), None),
        (Method::GET, format!("/api/runs/{run_b}/human-loop"), None),
        (
            Method::POST,
            format!("/api/runs/{run_b}/stop"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/runs/{run_b}/human-loop/reply"),
            Some(reply.clone()),
        ),
    ] {
        let (status, body) = call(&h, &developer, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "run_not_found", "{method} {path}");
    }
    // Spoofed internal headers change nothing: the gateway drops them.
    let response = h
        .http
        .get(h.url(&format!("/api/runs/{run_b}")))
        .bearer_auth(&developer)
        .header("x-switchyard-role", "admin")
        .header("x-switchyard-apps", "app-b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // Nor can they start runs in B or follow up on B's conversation.
    let (status, body) = call(
        &h,
        &developer,
        Method::POST,
        "/api/runs/start",
        Some(json!({"appId": "app-b", "provider": "scripted", "prompt": "x"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("app_not_found")),
        "{body}"
    );
    let (status, body) = call(
        &h,
        &developer,
        Method::POST,
        "/api/runs/start",
        Some(json!({"parentRunId": run_b, "prompt": "x"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // Listings are filtered.
    let (status, list) = call(&h, &developer, Method::GET, "/api/runs", None).await;
    assert_eq!(status, 200, "{list}");
    let ids = run_ids(&list);
    assert!(
        ids.contains(&run_a.as_str()) && !ids.contains(&run_b.as_str()),
        "{ids:?}"
    );
    let (_, admin_list) = h.get("/api/runs").await;
    assert!(run_ids(&admin_list).contains(&run_b.as_str()));
    let (status, apps) = call(&h, &developer, Method::GET, "/api/apps", None).await;
    assert_eq!(status, 200);
    let app_ids: Vec<&str> = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["appId"].as_str().unwrap())
        .collect();
    assert_eq!(app_ids, ["app-a"]);
    let (status, _) = call(&h, &developer, Method::GET, "/api/apps/app-b", None).await;
    assert_eq!(status, 404);
    let (status, queue) = call(&h, &developer, Method::GET, "/api/run-queue", None).await;
    assert_eq!(status, 200, "{queue}");
    assert!(!run_ids(&queue).contains(&run_b.as_str()));
    // Principal management is for admins only.
    let (status, body) = call(&h, &developer, Method::GET, "/api/principals", None).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));

    // Their own app's run streams.
    let response = h
        .http
        .get(h.url(&format!("/api/runs/{run_a}/stream")))
        .bearer_auth(&developer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    drop(response);

    // The viewer of A reads A's run but changes nothing.
    let (status, body) = call(
        &h,
        &viewer,
        Method::GET,
        &format!("/api/runs/{run_a}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &h,
        &viewer,
        Method::GET,
        &format!("/api/runs/{run_a}/human-loop"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (path, body) in [
        (
            "/api/runs/start".to_owned(),
            json!({"appId": "app-a", "provider": "scripted", "prompt": "x"}),
        ),
        (format!("/api/runs/{run_a}/stop"), json!({})),
        (format!("/api/runs/{run_a}/human-loop/reply"), reply.clone()),
        ("/api/apps/register".to_owned(), json!({"appId": "app-a"})),
    ] {
        let (status, answer) = call(&h, &viewer, Method::POST, &path, Some(body)).await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    // …and B's run is as invisible to them as to the developer.
    let (status, _) = call(
        &h,
        &viewer,
        Method::POST,
        &format!("/api/runs/{run_b}/stop"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);

    // The developer answers their own run's request; the run completes.
    let (status, body) = call(
        &h,
        &developer,
        Method::POST,
        &format!("/api/runs/{run_a}/human-loop/reply"),
        Some(reply),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    h.wait_run(&run_a, |r| r["status"] == "succeeded").await;
    // B's run is untouched by all of the above.
    let (_, b) = h.get(&format!("/api/runs/{run_b}")).await;
    assert_eq!(b["status"], "waiting_for_human");

    // A new token works at once; revoked, it is refused.
    let (status, issued) = call(
        &h,
        TOKEN,
        Method::POST,
        &format!("/api/principals/{viewer_id}/tokens"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let second = issued["token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &h,
        &second,
        Method::GET,
        &format!("/api/runs/{run_a}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, listed) = h.get("/api/principals").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["principals"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    let third = {
        let (status, issued) = call(
            &h,
            TOKEN,
            Method::POST,
            &format!("/api/principals/{viewer_id}/tokens"),
            None,
        )
        .await;
        assert_eq!(status, 201);
        issued
    };
    let (status, _) = call(
        &h,
        TOKEN,
        Method::DELETE,
        &format!("/api/tokens/{}", third["tokenId"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &h,
        third["token"].as_str().unwrap(),
        Method::GET,
        "/api/runs",
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = call(&h, "sy_not-a-token", Method::GET, "/api/runs", None).await;
    assert_eq!(status, 401);

    // Only hashes are stored.
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 4);
    for plaintext in [&developer, &viewer, &second] {
        assert!(
            hashes
                .iter()
                .all(|h| h.as_slice() != plaintext.as_bytes() && h.len() == 32),
            "a token is stored in plaintext"
        );
    }

    let (status, _) = h.post(&format!("/api/runs/{run_b}/stop"), json!({})).await;
    assert_eq!(status, 202);
    h.shutdown().await;
}

/// The attack: a membership granted in an app nobody has registered (a typo, or a name
/// a developer asked for) let that developer register the app themselves — with
/// runtime defaults of their choosing. A membership needs an existing app: granting one
/// in an unknown app is 404 `app_not_found` and changes nothing, so a developer can
/// only ever re-register an app an admin or operator created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_needs_an_existing_app() {
    let h = Harness::start(0, 0).await;
    let (status, body) = h
        .post("/api/apps/register", json!({"appId": "app-a"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, before) = h.get("/api/principals").await;
    let principals = before["principals"].as_array().unwrap().len();

    let (status, body) = call(
        &h,
        TOKEN,
        Method::POST,
        "/api/principals",
        Some(json!({"name": "dev", "role": "developer", "apps": ["app-a", "ghost"]})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("app_not_found")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`ghost`") && !message.contains("`app-a`"),
        "{message}"
    );
    let (_, after) = h.get("/api/principals").await;
    assert_eq!(
        after["principals"].as_array().unwrap().len(),
        principals,
        "nothing was created: {after}"
    );

    let (dev_id, dev) = create_principal(&h, "dev", "developer", &["app-a"]).await;
    let (status, body) = call(
        &h,
        TOKEN,
        Method::PUT,
        &format!("/api/principals/{dev_id}/apps"),
        Some(json!({"apps": ["app-a", "ghost"]})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("app_not_found")),
        "{body}"
    );
    let (_, shown) = h.get(&format!("/api/principals/{dev_id}")).await;
    assert_eq!(shown["apps"], json!(["app-a"]), "memberships unchanged");

    // The developer cannot bring the app into existence either.
    let (status, body) = call(
        &h,
        &dev,
        Method::POST,
        "/api/apps/register",
        Some(json!({"appId": "ghost", "runtimeDefaults": {"provider": "scripted"}})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    let (status, _) = h.get("/api/apps/ghost").await;
    assert_eq!(status, 404);
    // Their own app they may still re-register.
    let (status, body) = call(
        &h,
        &dev,
        Method::POST,
        "/api/apps/register",
        Some(json!({"appId": "app-a", "name": "A"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    h.shutdown().await;
}
