//! The real agent CLIs through the whole platform: HTTP start at the gateway, the
//! control-plane, the work queue, an executor running the CLI against a local fake model
//! server, SSE out. Each provider runs one real turn with a shell tool call.

use crate::harness::{Harness, assert_gapless, events};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use switchyard_test_support::fake_model::{FINAL_MARKER, FakeModel, TOOL_FILE};

/// Recognisable fake credentials: the secret scan looks for exactly these strings.
pub(crate) const OPENAI_SECRET: &str = "sk-e2e-openai-5f1c0d2e9a7b4c3d";
pub(crate) const ANTHROPIC_SECRET: &str = "sk-ant-e2e-8b6a4f2c1d0e9f7a";

fn installed_clis() -> PathBuf {
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

/// A platform with one executor that finds the pinned CLIs and reads the fake keys from
/// an env file (and not from the test process's environment), plus a fake model.
pub(crate) async fn platform_with_clis() -> (Harness, FakeModel, tempfile::TempDir) {
    let fake = FakeModel::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("provider-env");
    std::fs::write(
        &env_file,
        format!("OPENAI_API_KEY={OPENAI_SECRET}\nANTHROPIC_API_KEY={ANTHROPIC_SECRET}\n"),
    )
    .unwrap();
    let toml = dir.path().join("executor.toml");
    std::fs::write(
        &toml,
        format!(
            "[executor]\ncli_search_path = [{:?}]\ncredentials_env_file = {:?}\n\
             credentials_from_environment = false\n\
             [executor.liveness]\nhandshake_ms = 60000\nfirst_output_ms = 60000\ninactivity_ms = 60000\n",
            installed_clis().display().to_string(),
            env_file.display().to_string()
        ),
    )
    .unwrap();
    let mut h = Harness::start(0, 1).await;
    h.add_executor_with(4, Some(&toml)).await;
    (h, fake, dir)
}

/// Registers an app for `provider` pointed at the fake model and returns its id.
pub(crate) async fn register(h: &Harness, fake: &FakeModel, provider: &str) -> String {
    let (base_url, key) = match provider {
        "claude-code" => (fake.url(), "ANTHROPIC_API_KEY"),
        _ => (fake.openai_url(), "OPENAI_API_KEY"),
    };
    // Approvals on: claude and opencode ask for shell commands by default; codex's
    // default (`on-request`) lets the agent work inside its sandbox, so ask for
    // everything. The tests answer like a human would, through the platform.
    let mut options = json!({"baseUrl": base_url});
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

fn completed(events: &[Value]) -> &Value {
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

/// Processes whose working directory is inside `dir` (a CLI and its children).
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            !zombie
                && std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Approval denied, stop mid-turn, a follow-up in the same conversation, and every
/// failure class the fake model can provoke — for one provider, through the platform.
async fn the_provider_lifecycle(provider: &str) {
    let (h, fake, _dir) = platform_with_clis().await;
    let app = register(&h, &fake, provider).await;

    // 1. A turn whose command is approved, then a follow-up in the same conversation.
    let first = tool_turn(&h, &app, provider).await;
    let first_run = first[0]["runId"].as_str().unwrap().to_owned();
    let follow_up = start(
        &h,
        json!({"appId": app, "parentRunId": first_run, "prompt": "SCN_TEXT what did you do?"}),
    )
    .await;
    let events = follow(&h, &follow_up, "approve").await;
    assert_eq!(
        completed(&events)["status"],
        "succeeded",
        "{provider} follow-up: {}",
        completed(&events)
    );
    assert_eq!(
        workspace_of(&events),
        workspace_of(&first),
        "{provider}: follow-up changed workspace"
    );
    let last_request = fake.model_requests().last().cloned().unwrap();
    assert!(
        last_request.user_text().contains("Create hello.txt please"),
        "{provider}: the follow-up did not carry the first turn: {}",
        last_request.user_text()
    );

    // 2. A denied command: the file is not created and the run still completes.
    let denied = start(
        &h,
        json!({"appId": app, "prompt": "SCN_TOOL create hello.txt again"}),
    )
    .await;
    let events = follow(&h, &denied, "deny").await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "human_loop.resolved" && e["data"]["decision"] == "deny")
    );
    assert!(
        !workspace_of(&events).join(TOOL_FILE).exists(),
        "{provider}: denied command ran"
    );
    assert_eq!(
        completed(&events)["status"],
        "succeeded",
        "{provider} deny: {}",
        completed(&events)
    );

    // 3. Stop mid-turn: the run ends stopped and no process of it is left.
    let slow = start(
        &h,
        json!({"appId": app, "prompt": "SCN_SLOW:200x100 tell me a long story"}),
    )
    .await;
    let seen = h
        .read_until(&slow, None, |e| e["type"] == "message.delta")
        .await;
    let workspace = workspace_of(&crate::harness::events(&seen));
    let (status, body) = h.post(&format!("/api/runs/{slow}/stop"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    let events = follow(&h, &slow, "deny").await;
    assert_eq!(
        completed(&events)["status"],
        "stopped",
        "{provider}: {}",
        completed(&events)
    );
    assert!(
        events.iter().any(|e| e["type"] == "message.delta"),
        "partial output kept"
    );
    assert_eq!(
        processes_in(&workspace),
        Vec::<u32>::new(),
        "{provider}: processes left after stop"
    );

    // 4. Failures, each with its reason and evidence, in bounded time.
    for (marker, reason) in [
        ("SCN_E401", "auth_invalid"),
        ("SCN_E429", "rate_limited"),
        ("SCN_E500", "provider_error"),
        ("SCN_EMPTY", "provider_no_output"),
    ] {
        let run = start(
            &h,
            json!({"appId": app, "prompt": format!("{marker} hello")}),
        )
        .await;
        let started = std::time::Instant::now();
        let events = follow(&h, &run, "deny").await;
        let done = completed(&events);
        assert_eq!(done["reason"], reason, "{provider} {marker}: {done}");
        assert!(
            done.get("evidence").is_some() || done.get("detail").is_some(),
            "{done}"
        );
        eprintln!("{provider} {marker} -> {reason} in {:?}", started.elapsed());
        let view = h.wait_run(&run, |r| r["failureReason"] == reason).await;
        assert!(
            view["failureDetail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{view}"
        );
    }
    // A credential the executor does not have: refused before the CLI is spawned.
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": "no-key", "runtimeDefaults": {"provider": provider,
                   "credentialEnv": ["SWITCHYARD_E2E_UNSET_KEY"],
                   "providerOptions": {"baseUrl": fake.openai_url()}}}),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let run = start(&h, json!({"appId": "no-key", "prompt": "hello"})).await;
    let events = follow(&h, &run, "deny").await;
    assert_eq!(
        completed(&events)["reason"],
        "auth_missing",
        "{provider}: {}",
        completed(&events)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_lifecycle_through_the_platform() {
    the_provider_lifecycle("codex-app-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_lifecycle_through_the_platform() {
    the_provider_lifecycle("claude-code").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_lifecycle_through_the_platform() {
    the_provider_lifecycle("opencode").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_installed_on_no_live_executor_fails_binary_missing() {
    // The default executor of the harness finds no CLI (its search path is empty of them
    // and the test process's PATH has none), so it offers only `scripted`.
    let h = Harness::start(1, 1).await;
    let run = start(&h, json!({"provider": "claude-code", "prompt": "hello"})).await;
    let events = events(&h.read_stream(&run, None).await);
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["reason"], "binary_missing", "{done}");
    let (_, providers) = h.get("/api/providers").await;
    let claude = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "claude-code")
        .unwrap();
    assert_eq!(claude["installed"], false, "{providers}");
    h.shutdown().await;
}

struct ProviderCanonical;
impl ProviderCanonical {
    fn of(name: &str) -> &str {
        if name == "codex-cli" {
            "codex-app-server"
        } else {
            name
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_real_turn_through_the_platform_also_by_its_old_name() {
    let (h, fake, _dir) = platform_with_clis().await;
    let app = register(&h, &fake, "codex-app-server").await;
    let started = std::time::Instant::now();
    tool_turn(&h, &app, "codex-app-server").await;
    eprintln!(
        "codex-app-server turn through the platform: {:?}",
        started.elapsed()
    );
    tool_turn(&h, &app, "codex-cli").await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_a_real_turn_through_the_platform() {
    let (h, fake, _dir) = platform_with_clis().await;
    let app = register(&h, &fake, "claude-code").await;
    let started = std::time::Instant::now();
    tool_turn(&h, &app, "claude-code").await;
    eprintln!(
        "claude-code turn through the platform: {:?}",
        started.elapsed()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_runs_a_real_turn_through_the_platform() {
    let (h, fake, _dir) = platform_with_clis().await;
    let app = register(&h, &fake, "opencode").await;
    let started = std::time::Instant::now();
    tool_turn(&h, &app, "opencode").await;
    eprintln!(
        "opencode turn through the platform: {:?}",
        started.elapsed()
    );
    h.shutdown().await;
}
