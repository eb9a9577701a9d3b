//! Helpers for driving the real agent CLIs through the whole platform: a platform whose
//! executor finds the pinned CLIs and reads fake keys from an env file, a fake model,
//! app registration, and following a run while answering its approvals.

use crate::harness::{Harness, assert_gapless, events};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use switchyard_test_support::fake_model::{FINAL_MARKER, FakeModel, TOOL_FILE};

/// Recognisable fake credentials: the secret scan looks for exactly these strings.
pub(crate) const OPENAI_SECRET: &str = "sk-e2e-openai-5f1c0d2e9a7b4c3d";
pub(crate) const ANTHROPIC_SECRET: &str = "sk-ant-e2e-8b6a4f2c1d0e9f7a";

pub(crate) fn installed_clis() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/providers/node_modules/.bin");
    for cli in ["codex", "claude", "opencode"] {
        assert!(
            dir.join(cli).is_file(),
            "{cli} is missing: run scripts/install-providers.sh"
        );
    }
    dir.canonicalize().unwrap()
}

/// A credential variable each CLI provider is allowed that has no value anywhere.
pub(crate) const UNSET_KEY: &str = "E2E_UNSET_KEY";

/// `NAME=value` lines, as an executor's credentials env file holds them.
pub(crate) fn env_lines(vars: &[(&str, &str)]) -> String {
    vars.iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect()
}

/// Writes a credentials env file of `vars`, readable by its owner only (the executor
/// refuses one the agents, another user, could read).
pub(crate) fn write_env_file(path: &Path, vars: &[(&str, &str)]) {
    std::fs::write(path, env_lines(vars)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A platform with one executor that finds the pinned CLIs, reads the fake keys from an
/// env file (and not from the test process's environment) and points every CLI at the
/// fake model, plus that fake model.
pub(crate) async fn platform_with_clis() -> (Harness, FakeModel, tempfile::TempDir) {
    let (fake, dir, toml) = cli_executor_config().await;
    let mut h = Harness::start(0, 1).await;
    h.add_executor_with(4, Some(&toml)).await;
    (h, fake, dir)
}

/// A fake model, and an executor config file (in the returned directory) that finds
/// the pinned CLIs, reads the fake keys from an env file, allows each CLI provider its
/// vendor's key (and [`UNSET_KEY`]) and points it at the fake model.
pub(crate) async fn cli_executor_config() -> (FakeModel, tempfile::TempDir, PathBuf) {
    let fake = FakeModel::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("provider-env");
    // The variable names the apps register; the values are the fake keys above.
    write_env_file(
        &env_file,
        &[
            ("OPENAI_API_KEY", OPENAI_SECRET),
            ("ANTHROPIC_API_KEY", ANTHROPIC_SECRET),
        ],
    );
    let toml = dir.path().join("executor.toml");
    let mut text = format!(
        "[executor]\ncli_search_path = [{:?}]\ncredentials_env_file = {:?}\n\
         credentials_from_environment = false\n\
         [executor.liveness]\nhandshake_ms = 60000\nfirst_output_ms = 60000\ninactivity_ms = 60000\n",
        installed_clis().display().to_string(),
        env_file.display().to_string()
    );
    // The endpoint and the allowed variables are the operator's, per provider.
    for (provider, key, base_url) in [
        ("codex-app-server", "OPENAI_API_KEY", fake.openai_url()),
        ("claude-code", "ANTHROPIC_API_KEY", fake.url()),
        ("opencode", "OPENAI_API_KEY", fake.openai_url()),
    ] {
        text.push_str(&format!(
            "[executor.credentials.{provider}]\nenv = [{key:?}, {UNSET_KEY:?}]\nbase_url = {base_url:?}\n"
        ));
    }
    std::fs::write(&toml, text).unwrap();
    (fake, dir, toml)
}

/// Registers an app for `provider` with its vendor's key and returns its id (the
/// executor points the CLI at the fake model).
pub(crate) async fn register(h: &Harness, provider: &str) -> String {
    let key = match provider {
        "claude-code" => "ANTHROPIC_API_KEY",
        _ => "OPENAI_API_KEY",
    };
    // Approvals on: claude and opencode ask for shell commands by default; codex's
    // default (`on-request`) lets the agent work inside its sandbox, so ask for
    // everything. The tests answer like a human would, through the platform.
    let mut options = json!({});
    if provider == "codex-app-server" {
        options["approvalPolicy"] = json!("untrusted");
    }
    let app_id = format!("app-{}", provider.replace('-', "_"));
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": app_id, "runtimeDefaults": {
                "provider": provider, "model": "fake-model", "credentialEnv": [key],
                "providerOptions": options,
                "timeoutMs": 120000}}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    app_id
}

/// Starts a run through the gateway and returns its id.
pub(crate) async fn start(h: &Harness, body: Value) -> String {
    let (status, reply) = h.post("/api/runs/start", body).await;
    assert_eq!(status, 202, "{reply}");
    reply["runId"].as_str().unwrap().to_owned()
}

/// Follows the run's stream to its end, answering every approval request with
/// `decision` like a human would, and returns all its events (re-read from the start, so
/// the answer also checks that the stored history is whole).
pub(crate) async fn follow(h: &Harness, run_id: &str, decision: &str) -> Vec<Value> {
    let mut cursor: Option<String> = None;
    loop {
        let frames = h
            .read_until(run_id, cursor.as_deref(), |e| {
                e["type"] == "human_loop.requested" || e["type"] == "run.completed"
            })
            .await;
        let last = frames.last().unwrap();
        let event = last.json().unwrap();
        if event["type"] == "run.completed" {
            break;
        }
        let request_id = event["data"]["requestId"].as_str().unwrap();
        let (status, body) = h
            .post(
                &format!("/api/runs/{run_id}/human-loop/reply"),
                json!({"requestId": request_id, "decision": decision}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        cursor = last.id.clone();
    }
    let events = events(&h.read_stream(run_id, None).await);
    assert_gapless(&events);
    events
}

pub(crate) fn workspace_of(events: &[Value]) -> PathBuf {
    events
        .iter()
        .find(|e| e["type"] == "run.started")
        .and_then(|e| e["data"]["workspace"].as_str())
        .map(PathBuf::from)
        .unwrap()
}

pub(crate) fn completed(events: &[Value]) -> &Value {
    &events.last().unwrap()["data"]
}

/// Runs one tool turn of `provider` (the request may name an alias) through the
/// gateway and checks the outcome; returns the run's events.
pub(crate) async fn tool_turn(h: &Harness, app_id: &str, provider: &str) -> Vec<Value> {
    let run_id = start(
        h,
        json!({"appId": app_id, "provider": provider, "prompt": "Create hello.txt please"}),
    )
    .await;
    let events = follow(h, &run_id, "approve").await;
    assert_eq!(
        completed(&events)["status"],
        "succeeded",
        "{provider}: {}",
        completed(&events)
    );
    let said: String = events
        .iter()
        .filter(|e| e["type"] == "message.completed")
        .map(|e| e["data"]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(said.contains(FINAL_MARKER), "{provider} said {said:?}");
    assert!(
        events.iter().any(|e| e["type"] == "tool.started"),
        "{provider}: no tool call"
    );
    let workspace = workspace_of(&events);
    assert!(
        workspace.join(TOOL_FILE).is_file(),
        "{provider}: {TOOL_FILE} not in {workspace:?}"
    );
    let run = h.wait_run(&run_id, |r| r["status"] == "succeeded").await;
    assert_eq!(run["provider"], ProviderCanonical::of(provider));
    events
}

/// The canonical name a request's provider name (or alias) is stored under.
pub(crate) struct ProviderCanonical;
impl ProviderCanonical {
    pub(crate) fn of(name: &str) -> &str {
        if name == "codex-cli" {
            "codex-app-server"
        } else {
            name
        }
    }
}
