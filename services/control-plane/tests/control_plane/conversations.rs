//! Conversations: a follow-up run names its conversation (`conversationId`) or a run of
//! it (`parentRunId`), inherits its provider, model and app, and prefers the executor
//! that ran it last; a follow-up waits until the conversation's latest run has ended;
//! the migration gives every existing run a conversation of its own.

use crate::common::{Harness, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_contracts::event::{RunClaimed, RunCompleted, RunDispatched};
use switchyard_contracts::{RunCommand, RunEventKind, RunId};
use switchyard_control_plane::MIGRATOR;
use switchyard_test_support::{NatsServer, TestDb};

/// The command published for `run_id` (the last one on its provider's subject).
async fn command_of(h: &Harness, provider: &str, run_id: RunId) -> RunCommand {
    let message = h.command_of(provider, run_id).await;
    let command: RunCommand = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(command.run_id, run_id, "the last command is the run's");
    command
}

/// Plays the manager and an executor: claimed, then dispatched to `executor`; waits
/// until the projection shows the executor.
async fn dispatch_to(h: &Harness, run_id: RunId, executor: &str) {
    let mut position = h.events.position(run_id).await.unwrap();
    for kind in [
        RunEventKind::RunClaimed(RunClaimed {
            worker_id: "mgr-1".parse().unwrap(),
            attempt: 1,
        }),
        RunEventKind::RunDispatched(RunDispatched {
            executor_id: executor.parse().unwrap(),
            timeout_ms: 60_000,
        }),
    ] {
        h.events.append(run_id, &mut position, kind).await.unwrap();
    }
    h.run_until(run_id, "the executor projected", |v| {
        v["executorId"] == executor
    })
    .await;
}

/// Plays the executor finishing the run: `run.completed` in its log (the projection
/// may not have caught up when this returns).
async fn finish(h: &Harness, run_id: RunId) {
    let mut position = h.events.position(run_id).await.unwrap();
    h.events
        .append(
            run_id,
            &mut position,
            RunEventKind::RunCompleted(RunCompleted::succeeded()),
        )
        .await
        .unwrap();
}

/// Starts a run and waits until it is published (the `202` does not wait for it).
async fn start(h: &Harness, body: Value) -> Value {
    let (status, json) = h.post("/api/runs/start", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    h.published(&json).await;
    json
}

fn id(json: &Value, field: &str) -> RunId {
    json[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {json}"))
        .parse()
        .unwrap()
}

async fn run_count(h: &Harness) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM runs"#)
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_run_starts_a_conversation_of_its_own() {
    let h = Harness::start().await;
    let body = start(&h, json!({"provider": "scripted", "prompt": "first"})).await;
    let run_id = id(&body, "runId");
    assert_eq!(id(&body, "conversationId"), run_id);
    let (status, view) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id(&view, "conversationId"), run_id);

    let command = command_of(&h, "scripted", run_id).await;
    assert_eq!(command.conversation_id, Some(run_id));
    assert_eq!(command.preferred_executor, None);
    h.stop().await;
}

#[tokio::test]
async fn a_follow_up_inherits_provider_model_app_and_prefers_the_last_executor() {
    let h = Harness::start().await;
    h.register_app(json!({
        "appId": "agent",
        "runtimeDefaults": {"provider": "claude-code", "model": "sonnet",
                            "credentialEnv": ["ANTHROPIC_API_KEY"], "timeoutMs": 7000},
        "executionProfiles": {"small": {"model": "small", "timeoutMs": 5000}}
    }))
    .await;
    let first = id(
        &start(&h, json!({"appId": "agent", "prompt": "one"})).await,
        "runId",
    );
    dispatch_to(&h, first, "exec-7").await;
    finish(&h, first).await;

    // Through the parent run: everything comes from the conversation.
    let body = start(&h, json!({"parentRunId": first, "prompt": "two"})).await;
    let second = id(&body, "runId");
    assert_ne!(second, first);
    assert_eq!(id(&body, "conversationId"), first);
    assert_eq!(body["provider"], "claude-code");
    assert_eq!(body["model"], "sonnet");
    let command = command_of(&h, "claude-code", second).await;
    assert_eq!(command.conversation_id, Some(first));
    assert_eq!(command.preferred_executor.as_deref(), Some("exec-7"));
    assert_eq!(command.app_id.as_deref(), Some("agent"));
    assert_eq!(command.credential_env, ["ANTHROPIC_API_KEY"]);
    assert_eq!(command.timeout_ms, Some(7000));
    let (_, view) = h.get(&format!("/api/runs/{second}")).await;
    assert_eq!(id(&view, "conversationId"), first);
    finish(&h, second).await;

    // Through the conversation id, naming another model and a profile of the app: the
    // model and the profile's settings change, the provider stays the conversation's.
    let body = start(
        &h,
        json!({"conversationId": first, "executionProfile": "small", "model": "opus",
               "prompt": "three"}),
    )
    .await;
    let third = id(&body, "runId");
    assert_eq!(id(&body, "conversationId"), first);
    assert_eq!(body["provider"], "claude-code");
    assert_eq!(body["model"], "opus");
    let command = command_of(&h, "claude-code", third).await;
    assert_eq!(command.app_id.as_deref(), Some("agent"));
    assert_eq!(command.execution_profile.as_deref(), Some("small"));
    assert_eq!(command.timeout_ms, Some(5000));
    // The latest run that got an executor is still the first one.
    assert_eq!(command.preferred_executor.as_deref(), Some("exec-7"));

    // The latest run moved to another executor; a follow-up of an older run (with the
    // same provider named explicitly) prefers that one and inherits the latest model.
    dispatch_to(&h, third, "exec-9").await;
    finish(&h, third).await;
    let body = start(
        &h,
        json!({"parentRunId": second, "conversationId": first, "provider": "claude-code",
               "prompt": "four"}),
    )
    .await;
    let fourth = id(&body, "runId");
    assert_eq!(body["model"], "opus");
    let command = command_of(&h, "claude-code", fourth).await;
    assert_eq!(command.preferred_executor.as_deref(), Some("exec-9"));
    assert_eq!(command.conversation_id, Some(first));

    // The conversation's runs, newest first; another conversation is not listed.
    start(&h, json!({"appId": "agent", "prompt": "unrelated"})).await;
    let (status, list) = h.get(&format!("/api/runs?conversationId={first}")).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<RunId> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| id(r, "runId"))
        .collect();
    assert_eq!(ids, [fourth, third, second, first]);
    let (status, body) = h.get("/api/runs?conversationId=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_request");
    h.stop().await;
}

#[tokio::test]
async fn conversation_references_are_checked_before_anything_is_stored() {
    let h = Harness::start().await;
    let first = id(
        &start(&h, json!({"provider": "codex-app-server", "prompt": "one"})).await,
        "runId",
    );
    let other = id(
        &start(
            &h,
            json!({"provider": "codex-app-server", "prompt": "other"}),
        )
        .await,
        "runId",
    );
    let unknown = RunId::now_v7();
    let before = run_count(&h).await;

    let cases = [
        (
            json!({"parentRunId": unknown, "prompt": "p"}),
            StatusCode::NOT_FOUND,
            "run_not_found",
        ),
        (
            json!({"conversationId": unknown, "prompt": "p"}),
            StatusCode::NOT_FOUND,
            "conversation_not_found",
        ),
        (
            // A run id that is not a conversation's id (`other` starts its own).
            json!({"parentRunId": other, "conversationId": first, "prompt": "p"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"parentRunId": unknown, "conversationId": first, "prompt": "p"}),
            StatusCode::NOT_FOUND,
            "run_not_found",
        ),
        (
            json!({"conversationId": first, "provider": "claude-code", "prompt": "p"}),
            StatusCode::CONFLICT,
            "conversation_provider_mismatch",
        ),
        (
            json!({"conversationId": "not-a-uuid", "prompt": "p"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"conversationId": first, "provider": "gpt", "prompt": "p"}),
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
    ];
    for (body, status, code) in cases {
        let (got, json) = h.post("/api/runs/start", body.clone()).await;
        assert_eq!(got, status, "{body} → {json}");
        assert_eq!(error_code(&json), code, "{body}");
    }
    let (_, json) = h
        .post(
            "/api/runs/start",
            json!({"conversationId": first, "provider": "claude-code", "prompt": "p"}),
        )
        .await;
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("codex-app-server") && message.contains("claude-code"),
        "{message}"
    );
    assert_eq!(
        run_count(&h).await,
        before,
        "refused requests store nothing"
    );

    // The alias names the same provider; both references agreeing is fine.
    finish(&h, first).await;
    let body = start(
        &h,
        json!({"parentRunId": first, "conversationId": first, "provider": "codex-cli",
               "prompt": "p"}),
    )
    .await;
    assert_eq!(id(&body, "conversationId"), first);
    assert_eq!(body["provider"], "codex-app-server");
    h.stop().await;
}

#[tokio::test]
async fn a_follow_up_waits_until_the_conversations_latest_run_has_ended() {
    let h = Harness::start().await;
    let first = id(
        &start(&h, json!({"provider": "scripted", "prompt": "one"})).await,
        "runId",
    );
    dispatch_to(&h, first, "exec-1").await;
    let before = run_count(&h).await;

    // Running: both ways of naming the conversation are refused, and nothing is stored.
    for body in [
        json!({"parentRunId": first, "prompt": "two"}),
        json!({"conversationId": first, "prompt": "two"}),
    ] {
        let (status, json) = h.post("/api/runs/start", body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{json}");
        assert_eq!(error_code(&json), "conversation_busy");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&first.to_string()), "{message}");
    }
    assert_eq!(run_count(&h).await, before);

    // Ended in its log: accepted at once, whether or not the projection has caught up.
    // Two follow-ups racing: exactly one is accepted, the other finds it running.
    finish(&h, first).await;
    let body = json!({"conversationId": first, "prompt": "two"});
    let (a, b) = tokio::join!(
        h.post("/api/runs/start", body.clone()),
        h.post("/api/runs/start", body.clone())
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::ACCEPTED, StatusCode::CONFLICT],
        "{} / {}",
        a.1,
        b.1
    );
    let accepted = if a.0 == StatusCode::ACCEPTED {
        &a.1
    } else {
        &b.1
    };
    let refused = if a.0 == StatusCode::ACCEPTED {
        &b.1
    } else {
        &a.1
    };
    assert_eq!(error_code(refused), "conversation_busy");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(accepted["runId"].as_str().unwrap()),
        "the refusal names the run that won: {refused}"
    );
    assert_eq!(run_count(&h).await, before + 1);

    // A new conversation is never busy.
    start(&h, json!({"provider": "scripted", "prompt": "other"})).await;
    h.stop().await;
}

#[tokio::test]
async fn the_migration_gives_existing_runs_their_own_conversation() {
    switchyard_test_support::init_tracing();
    let nats = NatsServer::start().await.unwrap();
    let db = TestDb::create().await.unwrap();
    // The schema as it was before conversations, with runs in it. (A runtime query: the
    // macros check against today's schema, not this one.)
    MIGRATOR.run_to(5, &db.pool).await.unwrap();
    let old: Vec<RunId> = (0..3).map(|_| RunId::now_v7()).collect();
    for (i, run_id) in old.iter().enumerate() {
        sqlx::query(
            "INSERT INTO runs (run_id, provider, model, prompt, status, executor_id)
             VALUES ($1, 'scripted', 'm', 'old', 'succeeded', $2)",
        )
        .bind(run_id)
        .bind(format!("exec-{i}"))
        .execute(&db.pool)
        .await
        .unwrap();
    }

    // The control-plane applies the rest at start-up.
    let h = Harness::start_on(nats, db, |_| {}).await;
    let backfilled = sqlx::query!("SELECT run_id, conversation_id FROM runs ORDER BY run_id")
        .fetch_all(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(backfilled.len(), 3);
    assert!(
        backfilled
            .iter()
            .all(|row| row.run_id == row.conversation_id)
    );
    let nullable = sqlx::query_scalar!(
        r#"SELECT is_nullable::text AS "nullable!" FROM information_schema.columns
           WHERE table_name = 'runs' AND column_name = 'conversation_id'"#
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(nullable, "NO");
    let index = sqlx::query_scalar!(
        r#"SELECT indexdef AS "indexdef!" FROM pg_indexes
           WHERE indexname = 'runs_conversation_created_idx'"#
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert!(index.contains("(conversation_id, created_at)"), "{index}");

    // An old run can be continued like any other.
    let body = start(&h, json!({"parentRunId": old[1], "prompt": "again"})).await;
    assert_eq!(id(&body, "conversationId"), old[1]);
    assert_eq!(body["provider"], "scripted");
    assert_eq!(body["model"], "m");
    let command = command_of(&h, "scripted", id(&body, "runId")).await;
    assert_eq!(command.preferred_executor.as_deref(), Some("exec-1"));
    h.stop().await;
}

/// The attack: a conversation of app `cc` (claude-code, Anthropic key, Anthropic
/// endpoint) continued under app `cx` (another vendor's key and endpoint). Accepting it
/// would run `cc`'s provider with `cx`'s endpoint and credential, sending one vendor's
/// key to another vendor. Every way of naming the other app is refused, nothing is
/// stored, and the conversation's own app still continues it.
#[tokio::test]
async fn a_follow_up_under_another_app_is_refused() {
    let h = Harness::start().await;
    h.register_app(json!({
        "appId": "cc",
        "runtimeDefaults": {"provider": "claude-code", "credentialEnv": ["ANTHROPIC_API_KEY"],
                            "providerOptions": {"permissionMode": "default"}}
    }))
    .await;
    h.register_app(json!({
        "appId": "cx",
        "runtimeDefaults": {"provider": "codex-app-server", "credentialEnv": ["OPENAI_API_KEY"],
                            "providerOptions": {"approvalPolicy": "never"}},
        "executionProfiles": {"cx-only": {"model": "gpt-x"}}
    }))
    .await;
    let first = id(
        &start(&h, json!({"appId": "cc", "prompt": "one"})).await,
        "runId",
    );
    finish(&h, first).await;
    let appless = id(
        &start(&h, json!({"provider": "claude-code", "prompt": "no app"})).await,
        "runId",
    );
    finish(&h, appless).await;
    let before = run_count(&h).await;

    for body in [
        json!({"appId": "cx", "parentRunId": first, "prompt": "p"}),
        json!({"appId": "cx", "conversationId": first, "prompt": "p"}),
        json!({"appId": "cx", "executionProfile": "cx-only", "parentRunId": first, "prompt": "p"}),
        // A profile only the other app has names that app.
        json!({"executionProfile": "cx-only", "parentRunId": first, "prompt": "p"}),
        // A conversation without an app does not take one on either.
        json!({"appId": "cx", "parentRunId": appless, "prompt": "p"}),
    ] {
        let (status, json) = h.post("/api/runs/start", body.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body} → {json}");
        assert_eq!(error_code(&json), "conversation_app_mismatch", "{body}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("`cx`"), "{message}");
    }
    assert_eq!(
        run_count(&h).await,
        before,
        "refused follow-ups store nothing"
    );
    let commands =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM runs WHERE app_id = 'cx'"#)
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
    assert_eq!(commands, 0);

    // The conversation's own app, named or inherited, continues it with its settings.
    let body = start(
        &h,
        json!({"appId": "cc", "parentRunId": first, "prompt": "two"}),
    )
    .await;
    let second = id(&body, "runId");
    let command = command_of(&h, "claude-code", second).await;
    assert_eq!(command.app_id.as_deref(), Some("cc"));
    assert_eq!(command.credential_env, ["ANTHROPIC_API_KEY"]);
    assert_eq!(command.provider_options["permissionMode"], "default");
    assert!(
        command.provider_options.get("approvalPolicy").is_none(),
        "nothing of the other app's settings: {:?}",
        command.provider_options
    );
    h.stop().await;
}

/// Within one app, a follow-up naming a profile of another provider is refused: that
/// profile's options and credential names are another agent's, and the conversation's
/// session cannot move to it.
#[tokio::test]
async fn a_follow_up_naming_a_profile_of_another_provider_is_refused() {
    let h = Harness::start().await;
    h.register_app(json!({
        "appId": "mixed",
        "runtimeDefaults": {"provider": "claude-code", "credentialEnv": ["ANTHROPIC_API_KEY"]},
        "executionProfiles": {
            "codex": {"provider": "codex-app-server", "credentialEnv": ["OPENAI_API_KEY"],
                      "providerOptions": {"approvalPolicy": "never"}},
            "careful": {"provider": "claude-code", "providerOptions": {"permissionMode": "default"}}
        }
    }))
    .await;
    let first = id(
        &start(&h, json!({"appId": "mixed", "prompt": "one"})).await,
        "runId",
    );
    finish(&h, first).await;
    let before = run_count(&h).await;
    let (status, json) = h
        .post(
            "/api/runs/start",
            json!({"appId": "mixed", "executionProfile": "codex", "parentRunId": first, "prompt": "p"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert_eq!(error_code(&json), "conversation_provider_mismatch");
    assert_eq!(
        run_count(&h).await,
        before,
        "a refused follow-up stores nothing"
    );

    // A profile of the conversation's own provider continues it with that profile.
    let body = start(
        &h,
        json!({"appId": "mixed", "executionProfile": "careful", "parentRunId": first, "prompt": "two"}),
    )
    .await;
    let command = command_of(&h, "claude-code", id(&body, "runId")).await;
    assert_eq!(command.provider_options["permissionMode"], "default");
    assert_eq!(command.credential_env, ["ANTHROPIC_API_KEY"]);
    h.stop().await;
}
