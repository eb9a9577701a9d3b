//! A CLI that is there but cannot start is not installed: codex is a node script, and
//! an executor whose `PATH` has no `node` must not offer it. The providers list says
//! why, and a codex run ends `binary_missing` at once instead of crashing with exit 127.

use crate::crash::Crash;
use crate::harness::DEADLINE;
use crate::provider_support;
use serde_json::{Value, json};
use std::time::Duration;

/// The entry of `provider` in `GET /api/providers` once `done` holds for it.
async fn provider_where(crash: &Crash, provider: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, list) = crash.harness.get("/api/providers").await;
        assert_eq!(status, 200, "{list}");
        let entry = list["providers"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == provider))
            .cloned()
            .unwrap_or(Value::Null);
        if done(&entry) {
            return entry;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{provider} never matched; last: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn codex_without_node_is_not_installed_and_its_runs_fail_binary_missing() {
    let (fake, _config_dir, toml) = provider_support::cli_executor_config().await;
    let crash = Crash::start(&[
        ("SWITCHYARD_CONFIG", toml.display().to_string()),
        // No directory of this PATH has `node` (nor anything else).
        ("PATH", "/nonexistent/switchyard-no-node".to_owned()),
    ])
    .await;
    // The executor is up and has checked its CLIs: the native ones start without PATH.
    let claude = provider_where(&crash, "claude-code", |p| p["installed"] == true).await;
    assert_eq!(
        claude["executors"][0]["executorId"], "crash-exec",
        "{claude}"
    );
    let codex = provider_where(&crash, "codex-app-server", |p| {
        p["unavailable"].as_array().is_some_and(|u| !u.is_empty())
    })
    .await;
    assert_eq!(codex["installed"], false, "{codex}");
    assert_eq!(codex["executors"], json!([]), "{codex}");
    let problem = codex["unavailable"][0]["problem"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        codex["unavailable"][0]["executorId"], "crash-exec",
        "{codex}"
    );
    assert!(
        problem.contains("exited with code 127") && problem.contains("node"),
        "the reason names the failed start: {problem}"
    );

    let app_id = provider_support::register(&crash.harness, "codex-app-server").await;
    let run_id = provider_support::start(
        &crash.harness,
        json!({"appId": app_id, "prompt": "Create hello.txt please"}),
    )
    .await;
    let run = crash
        .harness
        .wait_run(&run_id, |r| r["status"] == "failed")
        .await;
    assert_eq!(run["failureReason"], "binary_missing", "{run}");
    assert!(
        fake.model_requests().is_empty(),
        "codex never ran: {:?}",
        fake.model_requests()
    );
    crash.stop().await;
}
