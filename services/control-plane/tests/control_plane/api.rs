//! The HTTP API: registering apps, starting runs, listing them, and the error shape of
//! every kind of bad input.

use crate::common::{Harness, INTERNAL_TOKEN, config, error_code, eventually, outbox_len};
use reqwest::StatusCode;
use serde_json::json;
use switchyard_contracts::{RunCommand, RunId};

#[tokio::test]
async fn start_run_persists_the_run_and_publishes_event_and_command() {
    let h = Harness::start().await;
    let (status, app) = h
        .post(
            "/api/apps/register",
            json!({"appId": "demo", "runtimeDefaults": {
                "provider": "scripted", "model": "m1", "credentialEnv": ["OPENAI_API_KEY"],
                "providerOptions": {"script": {"steps": []}, "keep": 1}, "timeoutMs": 5000}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(app["name"], "demo");
    let (status, _) = h
        .post(
            "/api/apps/register",
            json!({"appId": "demo", "name": "Demo", "runtimeDefaults": {
                "provider": "scripted", "model": "m1", "credentialEnv": ["OPENAI_API_KEY"],
                "providerOptions": {"script": {"steps": []}, "keep": 1}, "timeoutMs": 5000}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "re-registering updates");
    let (status, apps) = h.get("/api/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(apps["apps"][0]["name"], "Demo");

    let (status, body) = h
        .post(
            "/api/runs/start",
            json!({"appId": "demo", "prompt": "hello", "providerOptions": {"keep": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run_id: uuid::Uuid = body["runId"].as_str().unwrap().parse().unwrap();
    assert_eq!(run_id.get_version_num(), 7);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["provider"], "scripted");
    assert_eq!(body["model"], "m1");
    assert_eq!(body["streamUrl"], format!("/api/runs/{run_id}/stream"));
    // The publication runs beside the answer.
    h.published(&body).await;

    let row = sqlx::query!(
        r#"SELECT status::text AS "status!", app_id, provider_options, credential_env,
                  timeout_ms
           FROM runs WHERE run_id = $1"#,
        run_id
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(row.status, "queued");
    assert_eq!(row.app_id.as_deref(), Some("demo"));
    assert_eq!(
        row.provider_options,
        json!({"script": {"steps": []}, "keep": 2})
    );
    assert_eq!(row.credential_env, vec!["OPENAI_API_KEY"]);
    assert_eq!(row.timeout_ms, Some(5000));

    let last = h
        .events
        .last(run_id)
        .await
        .unwrap()
        .expect("run.queued exists");
    assert_eq!(last.header.seq, 1);
    assert_eq!(last.header.event_type, "run.queued");

    let command = h.command_of("scripted", run_id).await;
    let msg_id = command.headers.get("Nats-Msg-Id").map(|v| v.to_string());
    assert_eq!(msg_id, Some(run_id.to_string()));
    let run_header = command
        .headers
        .get(switchyard_contracts::subjects::HEADER_RUN_ID)
        .map(|v| v.to_string());
    assert_eq!(run_header, Some(run_id.to_string()));
    let command: RunCommand = serde_json::from_slice(&command.payload).unwrap();
    assert_eq!(command.run_id, run_id);
    assert_eq!(command.prompt, "hello");
    assert_eq!(command.timeout_ms, Some(5000));
    assert_eq!(command.credential_env, vec!["OPENAI_API_KEY"]);
    // Deleted in the background once published.
    eventually("an empty outbox", || async {
        (outbox_len(&h.db.pool).await == 0).then_some(())
    })
    .await;

    let (status, view) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["runId"], run_id.to_string());
    assert_eq!(view["provider"], "scripted");
    h.stop().await;
}

#[tokio::test]
async fn provider_resolves_request_then_profile_then_app_then_default() {
    let h = Harness::start().await;
    h.register_app(json!({
        "appId": "app1",
        "runtimeDefaults": {"provider": "claude-code", "model": "sonnet"},
        "executionProfiles": {"fast": {"provider": "opencode", "model": "small"}}
    }))
    .await;
    h.register_app(json!({"appId": "bare"})).await;

    let cases = [
        (
            json!({"appId": "app1", "executionProfile": "fast", "provider": "scripted", "prompt": "p"}),
            "scripted",
            Some("small"),
        ),
        (
            json!({"appId": "app1", "executionProfile": "fast", "prompt": "p"}),
            "opencode",
            Some("small"),
        ),
        (
            json!({"executionProfile": "fast", "prompt": "p"}),
            "opencode",
            Some("small"),
        ),
        (
            json!({"appId": "app1", "prompt": "p", "model": "opus"}),
            "claude-code",
            Some("opus"),
        ),
        (
            json!({"appId": "bare", "prompt": "p"}),
            "codex-app-server",
            None,
        ),
        (json!({"prompt": "p"}), "codex-app-server", None),
        (
            json!({"prompt": "p", "provider": "codex-cli"}),
            "codex-app-server",
            None,
        ),
    ];
    for (body, provider, model) in cases {
        let (status, json) = h.post("/api/runs/start", body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}: {json}");
        assert_eq!(json["provider"], provider, "{body}");
        assert_eq!(json["model"].as_str(), model, "{body}");
        let run_id: uuid::Uuid = json["runId"].as_str().unwrap().parse().unwrap();
        let stored = sqlx::query_scalar!("SELECT provider FROM runs WHERE run_id = $1", run_id)
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
        assert_eq!(stored, provider, "{body}");
        let command = h.command_of(provider, run_id).await;
        let command: RunCommand = serde_json::from_slice(&command.payload).unwrap();
        assert_eq!(command.run_id, run_id, "{body}");
    }
    // An app registered with the alias stores the canonical name.
    let (status, app) = h
        .post(
            "/api/apps/register",
            json!({"appId": "legacy", "runtimeDefaults": {"provider": "codex-cli"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app["runtimeDefaults"]["provider"], "codex-app-server");

    // Re-registering replaces the whole set of profiles.
    h.register_app(json!({"appId": "app1", "executionProfiles": {"slow": {}}}))
        .await;
    let (status, app) = h.get("/api/apps/app1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app["executionProfiles"],
        json!({"slow": {"credentialEnv": [], "providerOptions": {}}})
    );
    let (status, body) = h
        .post(
            "/api/runs/start",
            json!({"appId": "app1", "executionProfile": "fast", "prompt": "p"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(crate::common::error_code(&body), "profile_not_found");
    h.stop().await;
}

/// A profile's `credentialEnv` adds to the app's list rather than replacing it: the
/// profile's names first (the first name is the provider's primary credential), then
/// the app's names it does not repeat.
#[tokio::test]
async fn a_profiles_credential_env_adds_to_the_apps() {
    let h = Harness::start().await;
    h.register_app(json!({
        "appId": "merged",
        "runtimeDefaults": {"provider": "scripted",
                            "credentialEnv": ["ANTHROPIC_API_KEY", "SHARED_TOKEN"]},
        "executionProfiles": {
            "staging": {"credentialEnv": ["ANTHROPIC_STAGING_KEY", "SHARED_TOKEN"]},
            "plain": {"model": "m"}
        }
    }))
    .await;
    let cases = [
        (
            json!({"appId": "merged", "executionProfile": "staging", "prompt": "p"}),
            vec!["ANTHROPIC_STAGING_KEY", "SHARED_TOKEN", "ANTHROPIC_API_KEY"],
        ),
        (
            json!({"appId": "merged", "executionProfile": "plain", "prompt": "p"}),
            vec!["ANTHROPIC_API_KEY", "SHARED_TOKEN"],
        ),
        (
            json!({"appId": "merged", "prompt": "p"}),
            vec!["ANTHROPIC_API_KEY", "SHARED_TOKEN"],
        ),
    ];
    for (body, expected) in cases {
        let run_id = h.start_run(body.clone()).await;
        let command = h.command_of("scripted", run_id).await;
        let command: RunCommand = serde_json::from_slice(&command.payload).unwrap();
        assert_eq!(command.credential_env, expected, "{body}");
        let stored =
            sqlx::query_scalar!("SELECT credential_env FROM runs WHERE run_id = $1", run_id)
                .fetch_one(&h.db.pool)
                .await
                .unwrap();
        assert_eq!(stored, expected, "{body}");
    }
    h.stop().await;
}

#[tokio::test]
async fn an_endpoint_is_refused_in_requests_apps_profiles_and_stored_defaults() {
    let h = Harness::start().await;
    let refused = |status: StatusCode, body: &serde_json::Value, field: &str| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(body), "option_not_allowed", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
        assert!(message.contains("executor.credentials."), "{message}");
    };
    let url = "http://127.0.0.1:9";
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": "a", "runtimeDefaults": {"provider": "opencode",
                   "providerOptions": {"baseURL": url}}}),
        )
        .await;
    refused(status, &body, "runtimeDefaults.providerOptions.baseURL");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("executor.credentials.opencode.base_url")
    );
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": "a", "runtimeDefaults": {"provider": "opencode"},
                   "executionProfiles": {"p": {"providerOptions": {"base_url": url}}}}),
        )
        .await;
    refused(
        status,
        &body,
        "executionProfiles.p.providerOptions.base_url",
    );
    let (status, body) = h.get("/api/apps/a").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored: {body}");
    let (status, body) = h
        .post(
            "/api/runs/start",
            json!({"provider": "claude-code", "prompt": "p", "providerOptions": {"baseUrl": url}}),
        )
        .await;
    refused(status, &body, "providerOptions.baseUrl");

    // An app stored with one (written before registration refused it) runs nothing.
    sqlx::query!(
        "INSERT INTO apps (app_id, name, runtime_defaults) VALUES ('old', 'old', $1)",
        json!({"provider": "codex-app-server", "providerOptions": {"baseUrl": url}}),
    )
    .execute(&h.db.pool)
    .await
    .unwrap();
    let (status, body) = h
        .post("/api/runs/start", json!({"appId": "old", "prompt": "p"}))
        .await;
    refused(status, &body, "providerOptions.baseUrl");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("register the app again"),
        "{body}"
    );
    let (_, runs) = h.get("/api/runs").await;
    assert_eq!(runs["runs"], json!([]), "no run was accepted: {runs}");
    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_json_error_shape_and_the_right_status() {
    let h = Harness::start_with(|c| {
        c.control_plane.max_body_bytes = 8 * 1024;
        c.control_plane.max_prompt_bytes = 1024;
    })
    .await;
    h.register_app(json!({"appId": "app1"})).await;

    // (method, path, JSON body, raw body when there is no JSON body, status, code)
    type Case = (
        &'static str,
        &'static str,
        Option<serde_json::Value>,
        &'static [u8],
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "post",
            "/api/runs/start",
            None,
            b"{\"prompt\": ",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "post",
            "/api/runs/start",
            None,
            b"not json at all",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": 5})),
            b"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({})),
            b"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x", "bogus": 1})),
            b"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "   "})),
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x", "appId": "no such"})),
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x", "provider": "gpt-9"})),
            b"",
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x", "appId": "ghost"})),
            b"",
            StatusCode::NOT_FOUND,
            "app_not_found",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x", "appId": "app1", "executionProfile": "nope"})),
            b"",
            StatusCode::NOT_FOUND,
            "profile_not_found",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x", "executionProfile": "nope"})),
            b"",
            StatusCode::NOT_FOUND,
            "profile_not_found",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x".repeat(2000)})),
            b"",
            StatusCode::PAYLOAD_TOO_LARGE,
            "prompt_too_large",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "x".repeat(20_000)})),
            b"",
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "post",
            "/api/runs/start",
            Some(json!({"prompt": "a\u{0}b"})),
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "post",
            "/api/apps/register",
            Some(json!({"appId": "a", "runtimeDefaults": {"provider": "nope"}})),
            b"",
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            "post",
            "/api/apps/register",
            Some(json!({"appId": "a b"})),
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "post",
            "/api/apps/register",
            Some(json!({"appId": "a", "runtimeDefaults": {"credentialEnv": ["NOT-VALID"]}})),
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "post",
            "/api/apps/register",
            Some(json!({"appId": "a", "runtimeDefaults": {"timeoutMs": -1}})),
            b"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "get",
            "/api/runs/not-a-uuid",
            None,
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_run_id",
        ),
        (
            "get",
            "/api/runs/0190f5c2-0000-7000-8000-000000000000",
            None,
            b"",
            StatusCode::NOT_FOUND,
            "run_not_found",
        ),
        (
            "post",
            "/api/runs/0190f5c2-0000-7000-8000-000000000000/stop",
            None,
            b"",
            StatusCode::NOT_FOUND,
            "run_not_found",
        ),
        (
            "post",
            "/api/runs/nope/stop",
            None,
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_run_id",
        ),
        (
            "post",
            "/api/runs/0190f5c2-0000-7000-8000-000000000000/stop",
            None,
            b"{oops",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "post",
            "/api/runs/0190f5c2-0000-7000-8000-000000000000/human-loop/reply",
            Some(json!({"decision": "approve"})),
            b"",
            StatusCode::NOT_FOUND,
            "run_not_found",
        ),
        (
            "post",
            "/api/runs/0190f5c2-0000-7000-8000-000000000000/human-loop/reply",
            Some(json!({"decision": "maybe"})),
            b"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_decision",
        ),
        (
            "get",
            "/api/apps/ghost",
            None,
            b"",
            StatusCode::NOT_FOUND,
            "app_not_found",
        ),
        (
            "get",
            "/api/runs?limit=abc",
            None,
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "get",
            "/api/runs?limit=0",
            None,
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "get",
            "/api/runs?status=sleeping",
            None,
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "get",
            "/api/runs?before=xyz",
            None,
            b"",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "get",
            "/api/nothing-here",
            None,
            b"",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, json_body, raw, status, code) in cases {
        let (got, body) = match (method, json_body) {
            ("get", _) => h.get(path).await,
            (_, Some(body)) => h.post(path, body).await,
            (_, None) => h.post_raw(path, raw.to_vec(), true).await,
        };
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(error_code(&body), code, "{method} {path}: {body}");
    }
    // Without a JSON content type.
    let (status, body) = h
        .post_raw("/api/runs/start", r#"{"prompt":"x"}"#, false)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&body), "unsupported_media_type");
    // Nothing was accepted by any of the above.
    let (_, list) = h.get("/api/runs").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 0, "{list}");
    h.stop().await;
}

/// An id that breaks its rule is refused where it enters, wherever the request carries
/// it (body field, map key, list item, path, query), as 400 `invalid_request` naming
/// the field and the rule in our words: not serde's wording, not its line and column,
/// not the rejected value. Nothing is stored.
#[tokio::test]
async fn bad_ids_are_refused_naming_the_field_in_our_words() {
    let h = Harness::start().await;
    h.register_app(json!({"appId": "app1", "executionProfiles": {"fast": {}}}))
        .await;
    const NAME: &str = "must be 1-64 characters of A-Z, a-z, 0-9, `_` and `-`";
    const TOKEN: &str = "must be 1-128 characters of A-Z, a-z, 0-9, `_` and `-`";
    let reply = format!("/api/runs/{}/human-loop/reply", RunId::now_v7());
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        (
            "/api/runs/start",
            json!({"prompt": "x", "appId": "no such"}),
            format!("`appId` {NAME}"),
        ),
        (
            "/api/runs/start",
            json!({"prompt": "x", "executionProfile": "a.b"}),
            format!("`executionProfile` {NAME}"),
        ),
        (
            "/api/apps/register",
            json!({"appId": "x".repeat(65)}),
            format!("`appId` {NAME}"),
        ),
        (
            "/api/apps/register",
            json!({"appId": "ok", "executionProfiles": {"no good": {}}}),
            format!("the keys of `executionProfiles` {NAME}"),
        ),
        (
            "/api/principals",
            json!({"name": "n", "role": "viewer", "apps": ["app1", "sneaky,app"]}),
            format!("`apps[1]` {NAME}"),
        ),
        (
            &reply,
            json!({"requestId": "r 1", "decision": "approve"}),
            format!("`requestId` {TOKEN}"),
        ),
    ];
    for (path, body, message) in cases {
        let (status, answer) = h.post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(error_code(&answer), "invalid_request", "{path}: {answer}");
        assert_eq!(answer["error"]["message"], message.as_str(), "{path}");
    }

    let (status, answer) = h.get("/api/apps/bad%20id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(error_code(&answer), "invalid_request");
    assert_eq!(
        answer["error"]["message"],
        format!("the app id in the path {NAME}").as_str()
    );
    let (status, answer) = h.get("/api/runs?appId=a.b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        format!("`appId` {NAME}").as_str()
    );

    let (_, apps) = h.get("/api/apps").await;
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1, "{apps}");
    let (_, principals) = h.get("/api/principals").await;
    assert_eq!(principals["principals"], json!([]), "{principals}");
    let (_, runs) = h.get("/api/runs").await;
    assert_eq!(runs["runs"], json!([]), "{runs}");
    h.stop().await;
}

/// A row whose id column breaks the id's rule (written around the service) is an
/// internal error of that one read, with the generic message: never a panic, never a
/// value passed on as if it were valid, never the row's text in the answer.
#[tokio::test]
async fn a_stored_id_that_breaks_its_rule_is_an_internal_error_not_a_panic() {
    let h = Harness::start().await;
    let run_id = RunId::now_v7();
    sqlx::query!(
        "INSERT INTO runs (run_id, conversation_id, provider, prompt, status, app_id)
         VALUES ($1, $1, 'scripted', 'p', 'queued', 'not an app id')",
        run_id
    )
    .execute(&h.db.pool)
    .await
    .unwrap();
    let (status, answer) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(error_code(&answer), "internal");
    assert!(!answer.to_string().contains("not an app id"), "{answer}");
    // The service goes on answering.
    let (status, _) = h.get("/api/apps").await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn runs_are_listed_newest_first_with_filters_and_a_cursor() {
    let h = Harness::start().await;
    h.register_app(json!({"appId": "a1"})).await;
    let first = h.start_run(json!({"prompt": "1", "appId": "a1"})).await;
    let second = h.start_run(json!({"prompt": "2"})).await;
    let third = h.start_run(json!({"prompt": "3", "appId": "a1"})).await;

    let ids = |json: &serde_json::Value| -> Vec<String> {
        json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["runId"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page) = h.get("/api/runs?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), vec![third.to_string(), second.to_string()]);
    let (_, next) = h.get(&format!("/api/runs?limit=2&before={second}")).await;
    assert_eq!(ids(&next), vec![first.to_string()]);
    let (_, by_app) = h.get("/api/runs?appId=a1").await;
    assert_eq!(ids(&by_app), vec![third.to_string(), first.to_string()]);
    let (_, queued) = h.get("/api/runs?status=queued&limit=1000").await;
    assert_eq!(ids(&queued).len(), 3);
    let (_, failed) = h.get("/api/runs?status=failed").await;
    assert!(ids(&failed).is_empty());
    // By provider, by name or alias.
    let fourth = h
        .start_run(json!({"prompt": "4", "provider": "scripted"}))
        .await;
    let (_, scripted) = h.get("/api/runs?provider=scripted").await;
    assert_eq!(ids(&scripted), vec![fourth.to_string()]);
    let (_, codex) = h.get("/api/runs?provider=codex-cli&appId=a1").await;
    assert_eq!(ids(&codex), vec![third.to_string(), first.to_string()]);
    let (_, codex) = h.get("/api/runs?provider=codex-app-server").await;
    assert_eq!(ids(&codex).len(), 3);
    let (status, body) = h.get("/api/runs?provider=gpt").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "unknown_provider");
    h.stop().await;
}

#[tokio::test]
async fn run_queue_counts_pending_commands_and_lists_waiting_runs() {
    let h = Harness::start().await;
    let run_id = h
        .start_run(json!({"prompt": "wait", "provider": "scripted"}))
        .await;
    let (status, queue) = h.get("/api/run-queue").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["pending"], 1, "{queue}");
    assert_eq!(queue["inFlight"], 0, "{queue}");
    assert_eq!(queue["runs"][0]["runId"], run_id.to_string());

    let (status, ready) = h.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    h.stop().await;
}

#[tokio::test]
async fn the_control_plane_does_not_start_without_an_internal_token() {
    switchyard_test_support::init_tracing();
    let nats = switchyard_test_support::NatsServer::start().await.unwrap();
    let db = switchyard_test_support::TestDb::create().await.unwrap();
    for token in [None, Some("short"), Some("  padded-internal-token  ")] {
        let mut config = config(&nats, &db);
        config.control_plane.internal_token = token.map(Into::into);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let error = match switchyard_control_plane::start(config, shutdown.clone()).await {
            Ok(_) => {
                shutdown.cancel();
                panic!("the control-plane started with internal_token {token:?}")
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains("control_plane.internal_token"), "{error}");
        if let Some(token) = token {
            assert!(!error.contains(token.trim()), "{error} echoes the token");
        }
    }
}

#[tokio::test]
async fn a_caller_without_the_internal_token_is_refused_whatever_it_claims() {
    let h = Harness::start().await;
    h.register_app(json!({"appId": "secret-app", "runtimeDefaults": {"provider": "scripted"}}))
        .await;
    let start = json!({"appId": "secret-app", "prompt": "intrude"});
    let attempts: Vec<(&str, reqwest::RequestBuilder)> = {
        let raw = reqwest::Client::new();
        let url = |path: &str| format!("{}{path}", h.base);
        let mut attempts = Vec::new();
        for (who, token) in [
            ("no token", None),
            ("a wrong token", Some("cp-test-internal-token-guess")),
            (
                "the token with a byte off",
                Some("cp-test-internal-token-7a3F"),
            ),
        ] {
            let with = |request: reqwest::RequestBuilder| match token {
                Some(token) => {
                    request.header(switchyard_contracts::auth::INTERNAL_TOKEN_HEADER, token)
                }
                None => request,
            };
            attempts.push((who, with(raw.get(url("/api/principals")))));
            attempts.push((who, with(raw.get(url("/api/runs")))));
            // Principal headers that claim admin change nothing.
            attempts.push((
                who,
                with(
                    raw.post(url("/api/runs/start"))
                        .header("x-switchyard-principal", "admin")
                        .header("x-switchyard-role", "admin")
                        .json(&start),
                ),
            ));
            attempts.push((
                who,
                with(
                    raw.post(url("/internal/auth/resolve"))
                        .json(&json!({"token": "sy_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})),
                ),
            ));
            attempts.push((
                who,
                with(
                    raw.post(url("/api/principals"))
                        .json(&json!({"name": "mallory", "role": "admin", "apps": []})),
                ),
            ));
        }
        attempts
    };
    for (who, request) in attempts {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{who}");
    }
    // Nothing happened: no run, no principal.
    let (status, runs) = h.get("/api/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
    let (status, principals) = h.get("/api/principals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!principals.to_string().contains("mallory"), "{principals}");
    // Health carries no data and stays open; the gateway's client is served.
    let health = reqwest::get(format!("{}/healthz", h.base)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (status, _) = h.post("/api/runs/start", start).await;
    assert_eq!(status, StatusCode::ACCEPTED, "with {INTERNAL_TOKEN:?}");
}
