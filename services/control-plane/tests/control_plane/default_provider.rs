//! `control_plane.default_provider` and its legacy spelling `CONTROL_PLANE_PROVIDER_MODE`:
//! the provider of a start that names none, neither in the request nor in its app.

use crate::common::Harness;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use switchyard_contracts::ProviderName;
use switchyard_control_plane::Config;

/// The configuration a deployment with only `vars` in its environment would load.
fn loaded(vars: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    switchyard_platform::config::load_from(None, env).unwrap()
}

/// Starts a run naming no provider (with `app_id` if given) and returns the provider it
/// was queued for, after checking its command is on that provider's subject.
async fn provider_of_a_start_without_one(h: &Harness, app_id: Option<&str>) -> String {
    let mut body = json!({"prompt": "which provider?"});
    if let Some(app_id) = app_id {
        body["appId"] = json!(app_id);
    }
    let (status, accepted) = h.post("/api/runs/start", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    // `published` waits for the command on `runs.commands.<the answered provider>`.
    let run_id = h.published(&accepted).await;
    let (status, run) = h.get(&format!("/api/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["provider"], accepted["provider"], "{run}");
    accepted["provider"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_legacy_provider_mode_sends_runs_without_a_provider_to_scripted() {
    let config = loaded(&[("CONTROL_PLANE_PROVIDER_MODE", "scripted")]);
    assert_eq!(
        config.control_plane.default_provider,
        ProviderName::Scripted
    );
    let h = Harness::start_with(|c| {
        c.control_plane.default_provider = config.control_plane.default_provider;
    })
    .await;
    assert_eq!(provider_of_a_start_without_one(&h, None).await, "scripted");

    // An app that names its provider keeps it: the default is only the last level.
    h.register_app(json!({
        "appId": "claude-app",
        "runtimeDefaults": {"provider": "claude-code"}
    }))
    .await;
    assert_eq!(
        provider_of_a_start_without_one(&h, Some("claude-app")).await,
        "claude-code"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_configured_default_provider_wins_over_the_legacy_variable() {
    let config = loaded(&[
        ("CONTROL_PLANE_PROVIDER_MODE", "scripted"),
        ("SWITCHYARD_CONTROL_PLANE__DEFAULT_PROVIDER", "opencode"),
    ]);
    let h = Harness::start_with(|c| {
        c.control_plane.default_provider = config.control_plane.default_provider;
    })
    .await;
    assert_eq!(provider_of_a_start_without_one(&h, None).await, "opencode");
    // Clients (the portal's start form) learn it from the provider list.
    let (status, providers) = h.get("/api/providers").await;
    assert_eq!(status, StatusCode::OK, "{providers}");
    assert_eq!(providers["defaultProvider"], "opencode", "{providers}");
    h.stop().await;
}

/// The real binary with an unknown provider in the legacy variable: it exits at
/// start-up with a message naming the key and the accepted names, before it connects
/// to anything (no NATS or Postgres is given).
#[test]
fn an_unknown_default_provider_stops_the_binary_at_start_up() {
    for (name, value) in [
        ("CONTROL_PLANE_PROVIDER_MODE", "real"),
        ("SWITCHYARD_CONTROL_PLANE__DEFAULT_PROVIDER", "gpt-5"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-control-plane"))
            .env_clear()
            .env("SWITCHYARD_CONFIG", "/dev/null")
            .env(
                "SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN",
                "0123456789abcdef-internal",
            )
            // Unreachable on purpose: the process must fail before it tries them.
            .env("SWITCHYARD_NATS__URL", "nats://127.0.0.1:1")
            .env(
                "SWITCHYARD_DATABASE__URL",
                "postgres://nobody@127.0.0.1:1/none",
            )
            .env(name, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("control_plane.default_provider") && stderr.contains(value),
            "{name}={value}: {stderr}"
        );
        assert!(
            stderr.contains("scripted"),
            "lists the accepted names: {stderr}"
        );
    }
}
