//! The real agent CLIs through the whole platform: HTTP start at the gateway, the
//! control-plane, the work queue, an executor running the CLI against a local fake model
//! server, SSE out.

use crate::harness::{Harness, events};
use crate::provider_support::{
    UNSET_KEY, completed, follow, platform_with_clis, register, start, tool_turn, workspace_of,
};
use serde_json::json;
use std::path::Path;
use switchyard_test_support::fake_model::TOOL_FILE;

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
    let app = register(&h, provider).await;

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
    // A credential the operator allows but the executor has no value for: refused
    // before the CLI is spawned.
    let (status, body) = h
        .post(
            "/api/apps/register",
            json!({"appId": "no-key", "runtimeDefaults": {"provider": provider,
                   "credentialEnv": [UNSET_KEY]}}),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_real_turn_through_the_platform_also_by_its_old_name() {
    let (h, _fake, _dir) = platform_with_clis().await;
    let app = register(&h, "codex-app-server").await;
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
    let (h, _fake, _dir) = platform_with_clis().await;
    let app = register(&h, "claude-code").await;
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
    let (h, _fake, _dir) = platform_with_clis().await;
    let app = register(&h, "opencode").await;
    let started = std::time::Instant::now();
    tool_turn(&h, &app, "opencode").await;
    eprintln!(
        "opencode turn through the platform: {:?}",
        started.elapsed()
    );
    h.shutdown().await;
}
