//! `providerOptions.workspaceDir` is the app's decision: a start request may repeat
//! the app's (or profile's) value but never set or change it.

use crate::common::{Harness, error_code};
use reqwest::StatusCode;
use serde_json::json;
use switchyard_contracts::RunCommand;

#[tokio::test]
async fn only_the_app_or_its_profile_sets_the_workspace_dir() {
    let h = Harness::start().await;
    h.register_app(json!({
        "appId": "repo-app",
        "runtimeDefaults": {"provider": "scripted", "providerOptions": {"workspaceDir": "/srv/repo"}},
        "executionProfiles": {"other": {"providerOptions": {"workspaceDir": "/srv/other"}}}
    }))
    .await;
    h.register_app(json!({"appId": "plain", "runtimeDefaults": {"provider": "scripted"}}))
        .await;

    let refused = [
        json!({"prompt": "p", "providerOptions": {"workspaceDir": "/etc"}}),
        json!({"appId": "plain", "prompt": "p", "providerOptions": {"workspaceDir": "/srv/repo"}}),
        json!({"appId": "repo-app", "prompt": "p", "providerOptions": {"workspaceDir": "/srv/other"}}),
        json!({"appId": "repo-app", "executionProfile": "other", "prompt": "p",
               "providerOptions": {"workspaceDir": "/srv/repo"}}),
        json!({"appId": "repo-app", "prompt": "p", "providerOptions": {"workspaceDir": null}}),
    ];
    for body in refused {
        let (status, json) = h.post("/api/runs/start", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(error_code(&json), "invalid_request", "{body}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("providerOptions.workspaceDir"),
            "{message}"
        );
    }

    let allowed = [
        (json!({"appId": "repo-app", "prompt": "p"}), "/srv/repo"),
        (
            json!({"appId": "repo-app", "prompt": "p", "providerOptions": {"workspaceDir": "/srv/repo"}}),
            "/srv/repo",
        ),
        (
            json!({"appId": "repo-app", "executionProfile": "other", "prompt": "p"}),
            "/srv/other",
        ),
    ];
    for (body, dir) in allowed {
        let run_id = h.start_run(body.clone()).await;
        let message = h.command_of("scripted", run_id).await;
        let command: RunCommand = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(command.run_id, run_id, "{body}");
        assert_eq!(command.provider_options["workspaceDir"], dir, "{body}");
    }
    h.stop().await;
}
