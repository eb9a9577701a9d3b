//! Who chooses where a credential goes and which secret an agent gets: the operator,
//! in the executor's config, never a developer. A developer who points a run, an app
//! or a profile at an endpoint of their choosing is refused before anything runs; an
//! app naming a variable of the executor's own environment (the admin token, the
//! database URL) or any variable the operator did not allow for the provider gets
//! `auth_missing`, and the value goes nowhere.

use crate::harness::{DEADLINE, Harness, TOKEN};
use crate::provider_support::{self, ANTHROPIC_SECRET, completed, follow};
use crate::rbac::{call, create_principal};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Stdio;
use switchyard_test_support::service_command;
use switchyard_test_support::trap::Trap;

/// Asserts a 400 `option_not_allowed` that names the field and where the operator sets it.
fn assert_option_refused(status: u16, body: &Value, field: &str, trap: &Trap, what: &str) {
    assert!(
        status == 400 && body["error"]["code"] == "option_not_allowed",
        "{what}: answered {status} {body}; the listener got {} connection(s){}: {:?}",
        trap.connections(),
        if trap.received().contains(ANTHROPIC_SECRET) {
            ", WITH the executor's Anthropic key"
        } else {
            ""
        },
        trap.received().chars().take(600).collect::<String>()
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{what}: {message}");
    assert!(
        message.contains("executor.credentials."),
        "{what}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_cannot_point_a_run_app_or_profile_at_an_endpoint() {
    let (h, _fake, _dir) = provider_support::platform_with_clis().await;
    let trap = Trap::start().await.unwrap();
    let (_, developer) = create_principal(&h, "mallory", "developer", &[]).await;

    // An app-less run of a provider whose key the executor holds, sent to the listener.
    for key in ["baseUrl", "base_url", "baseURL"] {
        let (status, body) = call(
            &h,
            &developer,
            Method::POST,
            "/api/runs/start",
            Some(json!({"provider": "claude-code", "prompt": "hello",
                        "providerOptions": {key: trap.url()}})),
        )
        .await;
        if status == 202 {
            // Let the attack run its course, so the failure says what it achieved.
            trap.wait_until(DEADLINE, |text| text.contains(ANTHROPIC_SECRET))
                .await;
        }
        assert_option_refused(status, &body, key, &trap, "start request");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("executor.credentials.claude-code.base_url"),
            "{body}"
        );
    }
    let (_, runs) = call(&h, &developer, Method::GET, "/api/runs", None).await;
    assert_eq!(runs["runs"], json!([]), "no run was created: {runs}");

    // Nor through an app's defaults or an execution profile: not a member's, and not
    // even an admin's (the endpoint is the executor operator's).
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": "team", "runtimeDefaults": {"provider": "claude-code"}}),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let (_, member) = create_principal(&h, "member", "developer", &["team"]).await;
    let attempts = [
        (
            "runtimeDefaults.providerOptions.baseUrl",
            json!({"appId": "team", "runtimeDefaults": {"provider": "claude-code",
                   "providerOptions": {"baseUrl": trap.url()}}}),
        ),
        (
            "executionProfiles.fast.providerOptions.baseUrl",
            json!({"appId": "team", "runtimeDefaults": {"provider": "claude-code"},
                   "executionProfiles": {"fast": {"providerOptions": {"baseUrl": trap.url()}}}}),
        ),
    ];
    for (field, body) in &attempts {
        for token in [member.as_str(), TOKEN] {
            let (status, answer) = call(
                &h,
                token,
                Method::POST,
                "/api/apps/register",
                Some(body.clone()),
            )
            .await;
            assert_option_refused(status, &answer, field, &trap, "app registration");
        }
    }
    let (_, app) = h.get("/api/apps/team").await;
    assert_eq!(
        app["runtimeDefaults"]["providerOptions"],
        json!({}),
        "the app kept its options: {app}"
    );
    let (status, body) = call(
        &h,
        &member,
        Method::POST,
        "/api/runs/start",
        Some(json!({"appId": "team", "prompt": "hello",
                    "providerOptions": {"baseUrl": trap.url()}})),
    )
    .await;
    assert_option_refused(status, &body, "baseUrl", &trap, "start in an app");
    assert_eq!(trap.connections(), 0, "{}", trap.received());
    h.shutdown().await;
}

/// `switchyard serve executor` as a process of its own, with the environment a
/// deployment that shares one environment block between services would give it.
struct ExecutorProcess {
    /// Killed when dropped.
    _child: tokio::process::Child,
    log: std::path::PathBuf,
}

impl ExecutorProcess {
    fn start(env: &HashMap<String, String>, log: std::path::PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let mut command = service_command(env!("CARGO_BIN_EXE_switchyard"), env);
        command
            .args(["serve", "executor"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        Self {
            _child: command.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Registers `app` for claude-code with `credential_env` as a developer member would.
async fn register_as(h: &Harness, token: &str, app: &str, credential_env: &[&str]) {
    let (status, body) = call(
        h,
        token,
        Method::POST,
        "/api/apps/register",
        Some(json!({"appId": app, "runtimeDefaults": {
            "provider": "claude-code", "model": "fake-model",
            "credentialEnv": credential_env, "timeoutMs": 120000}})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cannot_name_a_secret_of_the_executor_environment() {
    let h = Harness::start(0, 1).await;
    let (fake, dir, toml) = provider_support::cli_executor_config().await;
    let private = format!("e2e-executor-private-{}", uuid::Uuid::new_v4().simple());
    // The executor's environment holds what a shared environment block gives every
    // service: the admin token and the database URL with its password — plus a
    // variable of its own that no provider was allowed.
    let env = h.service_env(&[
        ("SWITCHYARD_CONFIG", toml.display().to_string()),
        ("SWITCHYARD_EXECUTOR__CAPACITY", "4".to_owned()),
        (
            "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
            dir.path().join("runs").display().to_string(),
        ),
        (
            "SWITCHYARD_EXECUTOR__CREDENTIALS_FROM_ENVIRONMENT",
            "true".to_owned(),
        ),
        ("E2E_EXECUTOR_PRIVATE_VALUE", private.clone()),
    ]);
    let secrets = [
        ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", TOKEN.to_owned()),
        (
            "SWITCHYARD_DATABASE__URL",
            env["SWITCHYARD_DATABASE__URL"].clone(),
        ),
        ("E2E_EXECUTOR_PRIVATE_VALUE", private.clone()),
    ];
    let executor = ExecutorProcess::start(&env, dir.path().join("executor.log"));

    h.post(
        "/api/apps/register",
        json!({"appId": "victim", "runtimeDefaults": {"provider": "claude-code"}}),
    )
    .await;
    let (_, developer) = create_principal(&h, "mallory", "developer", &["victim"]).await;

    // The executor works: an allowed credential reaches the operator's endpoint.
    register_as(&h, &developer, "victim", &["ANTHROPIC_API_KEY"]).await;
    let run =
        provider_support::start(&h, json!({"appId": "victim", "prompt": "SCN_TEXT hi"})).await;
    let done = follow(&h, &run, "deny").await;
    assert_eq!(
        completed(&done)["status"],
        "succeeded",
        "{}\nexecutor log:\n{}",
        completed(&done),
        executor.log()
    );
    assert!(
        fake.model_requests()
            .iter()
            .any(|r| r.api_key() == Some(ANTHROPIC_SECRET)),
        "the allowed key reached the configured endpoint"
    );
    let before = fake.requests().len();

    for (name, value) in &secrets {
        register_as(&h, &developer, "victim", &[name]).await;
        let run =
            provider_support::start(&h, json!({"appId": "victim", "prompt": "SCN_TEXT hi"})).await;
        let events = follow(&h, &run, "deny").await;
        let done = completed(&events);
        let stream = serde_json::to_string(&events).unwrap();
        let (_, view) = call(
            &h,
            &developer,
            Method::GET,
            &format!("/api/runs/{run}"),
            None,
        )
        .await;
        let recorded: String = fake.requests().iter().map(|r| format!("{r:?}")).collect();
        assert!(
            !recorded.contains(value.as_str()),
            "the value of {name} reached the model endpoint"
        );
        assert!(
            !stream.contains(value.as_str()),
            "{name} leaked into the stream"
        );
        assert!(
            !view.to_string().contains(value.as_str()),
            "{name} leaked into the API"
        );
        assert_eq!(done["reason"], "auth_missing", "{name}: {done}");
        let detail = done["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(name), "{detail}");
        assert!(
            detail.contains("executor.credentials.claude-code.env"),
            "{detail}"
        );
    }
    assert_eq!(fake.requests().len(), before, "no CLI was started");
    assert!(
        !executor.log().contains(&private) && !executor.log().contains(TOKEN),
        "a secret reached the executor's log"
    );
    drop(executor);
    h.shutdown().await;
}
