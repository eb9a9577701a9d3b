//! NATS auth: the example server config `nats/auth/nats-server.conf` (one user per
//! service and per executor, allow-list permissions) is enough to run the whole
//! platform, each service connected as its own user — and it refuses a service a subject
//! it must not use. `nats_auth/nkey_users.rs`: the same config with nkey users instead
//! of passwords, and one executor's identity refused another executor's subjects.
mod nkey_users;
mod platform;

use self::platform::{
    Credential, TOKEN, USERS, checked_in_config, connect_watching_errors, next_error,
    start_platform, violations,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

fn password(user: &str) -> String {
    format!("pw-{user}-{}", uuid::Uuid::new_v4().simple())
}

/// The checked-in config with the passwords filled in (the server would read them from
/// its environment).
fn server_config(passwords: &HashMap<&str, String>) -> String {
    let mut text = checked_in_config();
    for (user, password) in passwords {
        let var = format!(
            "$SWITCHYARD_NATS_{}_PASSWORD",
            user.to_uppercase().replace('-', "_")
        );
        assert!(text.contains(&var), "{var} is not in the config");
        text = text.replace(&var, &format!("\"{password}\""));
    }
    text
}

async fn connect_as(
    nats: &switchyard_test_support::NatsServer,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    connect_watching_errors(
        nats,
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_runs_as_its_own_user_with_only_the_documented_subjects() {
    let passwords: HashMap<&str, String> =
        USERS.iter().map(|user| (*user, password(user))).collect();
    let credentials: HashMap<&str, Credential> = passwords
        .iter()
        .map(|(user, password)| {
            (
                *user,
                Credential::Password {
                    user: (*user).to_owned(),
                    password: password.clone(),
                },
            )
        })
        .collect();
    let platform = start_platform(&server_config(&passwords), &credentials, &["executor-1"]).await;

    // A run to the end: command, claim, dispatch, events, a human-loop reply relayed to
    // the owning executor, projection, SSE.
    let (status, body) = platform
        .post(
            "/api/runs/start",
            json!({"provider": "scripted", "prompt": "auth", "providerOptions": {"script": [
                {"message": {"text": "hello from a locked-down platform", "chunks": 2}},
                {"humanLoop": {"prompt": "Run ls?", "kind": "command", "details": {}}},
                {"toolCall": {"name": "shell", "input": {"cmd": "ls"}, "output": "a\nb", "exitCode": 0}},
            ]}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    let asked = platform
        .read_until(&run_id, |e| e["type"] == "human_loop.requested")
        .await;
    let request_id = asked.last().unwrap()["data"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = platform
        .post(
            &format!("/api/runs/{run_id}/human-loop/reply"),
            json!({"requestId": request_id, "decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events = platform
        .read_until(&run_id, |e| e["type"] == "run.completed")
        .await;
    let done = events.last().unwrap();
    assert_eq!(done["data"]["status"], "succeeded", "{events:?}");
    assert!(events.iter().any(|e| e["type"] == "tool.completed"));
    platform.wait_status(&run_id, "succeeded").await;

    // The read views: presence (KV) and the command queue (consumer info), and the
    // health report, which reads every stream, consumer and bucket as the gateway.
    for path in ["/api/providers", "/api/run-queue", "/api/health"] {
        let response = platform
            .http
            .get(format!("{}{path}", platform.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        if path == "/api/health" {
            let report: Value = response.json().await.unwrap();
            let nats_checks: Vec<&Value> = report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|check| check["name"].as_str().unwrap().starts_with("nats."))
                .collect();
            assert!(nats_checks.len() >= 4, "{report}");
            for check in nats_checks {
                assert_eq!(check["ok"], true, "{check} in {report}");
            }
        }
    }

    // A stop: control-plane → owning executor over runs.control.<id>, and its reply.
    let (status, body) = platform
        .post(
            "/api/runs/start",
            json!({"provider": "scripted", "prompt": "stop me", "providerOptions": {"script": [
                {"message": {"text": "busy", "chunks": 1}},
                {"sleepMs": 60000},
            ]}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    platform
        .read_until(&run_id, |e| e["type"] == "message.completed")
        .await;
    let (status, body) = platform
        .post(&format!("/api/runs/{run_id}/stop"), json!({}))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("stopping")),
        "{body}"
    );
    let events = platform
        .read_until(&run_id, |e| e["type"] == "run.completed")
        .await;
    assert_eq!(events.last().unwrap()["data"]["status"], "stopped");
    platform.wait_status(&run_id, "stopped").await;

    assert_eq!(
        violations(&platform.nats),
        Vec::<String>::new(),
        "the documented permissions must be sufficient"
    );

    // The gateway's user may not queue work, nor read the command queue.
    let (gateway, mut errors) = connect_as(&platform.nats, "gateway", &passwords["gateway"]).await;
    gateway
        .publish("runs.commands.scripted", "{}".into())
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(
        error.contains("Permissions Violation for Publish to \"runs.commands.scripted\""),
        "{error}"
    );
    let _sub = gateway.subscribe("runs.commands.>").await.unwrap();
    gateway.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(
        error.contains("Permissions Violation for Subscription to \"runs.commands.>\""),
        "{error}"
    );

    // Nor forge a revocation notice: only the control-plane announces access changes
    // (a forged notice could end any principal's streams).
    gateway
        .publish(
            switchyard_contracts::subjects::PRINCIPAL_CHANGED,
            "{}".into(),
        )
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(
        error.contains("Permissions Violation for Publish to \"auth.principals.changed\""),
        "{error}"
    );

    // An executor may not forge another service's traffic: dispatches, commands.
    let (executor, mut errors) =
        connect_as(&platform.nats, "executor-1", &passwords["executor-1"]).await;
    executor
        .publish("executors.someone-else.dispatch", "{}".into())
        .await
        .unwrap();
    executor.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(
        error.contains("Permissions Violation for Publish"),
        "{error}"
    );

    // The server log names the refusals: the check of the first half could fail.
    let logged = violations(&platform.nats);
    assert!(
        logged.iter().any(|l| l.contains("runs.commands.scripted")),
        "{logged:?}"
    );

    // A wrong password is refused outright.
    let refused = async_nats::ConnectOptions::with_user_and_password(
        "control-plane".to_owned(),
        "not-the-password".to_owned(),
    )
    .connect(platform.nats.url());
    let refused = tokio::time::timeout(Duration::from_secs(10), refused).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a wrong password must not connect"
    );

    platform.shutdown().await;
}
