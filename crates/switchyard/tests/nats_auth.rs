//! NATS auth: the example server config `nats/auth/nats-server.conf` (one user per
//! service, allow-list permissions) is enough to run the whole platform, each service
//! connected as its own user — and it refuses a service a subject it must not use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use switchyard::sse_client;
use switchyard_platform::config;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "nats-auth-admin-token";
const DEADLINE: Duration = Duration::from_secs(60);
const SERVICES: [&str; 4] = ["control-plane", "gateway", "executor-manager", "executor"];

fn password(user: &str) -> String {
    format!("pw-{user}-{}", uuid::Uuid::new_v4().simple())
}

/// The checked-in config with the passwords filled in (the server would read them from
/// its environment).
fn server_config(passwords: &HashMap<&str, String>) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../nats/auth/nats-server.conf"
    );
    let mut text = std::fs::read_to_string(path).expect("nats/auth/nats-server.conf");
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

struct Platform {
    nats: NatsServer,
    _db: TestDb,
    base: String,
    http: reqwest::Client,
    services: Vec<(ServiceHandle, CancellationToken)>,
}

fn env_for(base: &HashMap<String, String>, user: &str, password: &str) -> HashMap<String, String> {
    let mut env = base.clone();
    env.insert("SWITCHYARD_NATS__USER".to_owned(), user.to_owned());
    env.insert("SWITCHYARD_NATS__PASSWORD".to_owned(), password.to_owned());
    env
}

async fn start_platform(passwords: &HashMap<&str, String>) -> Platform {
    switchyard_test_support::init_tracing();
    let nats = NatsServer::start_with_config(&server_config(passwords))
        .await
        .expect("nats-server with the auth config");
    let db = TestDb::create().await.expect("test database");
    let workspace = tempfile::tempdir().expect("workspace root").keep();
    let mut env: HashMap<String, String> = [
        ("SWITCHYARD_NATS__URL", nats.url()),
        ("SWITCHYARD_DATABASE__URL", db.url.clone()),
        ("SWITCHYARD_CONTROL_PLANE__LISTEN", "127.0.0.1:0".to_owned()),
        ("SWITCHYARD_GATEWAY__LISTEN", "127.0.0.1:0".to_owned()),
        ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", TOKEN.to_owned()),
        ("SWITCHYARD_EXECUTOR__LISTEN", "127.0.0.1:0".to_owned()),
        ("SWITCHYARD_EXECUTOR__CAPACITY", "4".to_owned()),
        (
            "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
            workspace.display().to_string(),
        ),
        (
            "SWITCHYARD_EXECUTOR_MANAGER__LISTEN",
            "127.0.0.1:0".to_owned(),
        ),
        (
            "SWITCHYARD_EXECUTOR_MANAGER__NO_CAPACITY_DELAY_MS",
            "100".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut services = Vec::new();

    let token = CancellationToken::new();
    let cp_config: switchyard_control_plane::Config = config::load_from(
        None,
        env_for(&env, "control-plane", &passwords["control-plane"]),
    )
    .expect("control-plane config");
    let cp = switchyard_control_plane::start(cp_config, token.clone())
        .await
        .expect("control-plane starts as user control-plane");
    env.insert(
        "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL".to_owned(),
        format!("http://{}", cp.http_addr.unwrap()),
    );
    services.push((cp, token));

    let token = CancellationToken::new();
    let gw_config: switchyard_gateway::Config =
        config::load_from(None, env_for(&env, "gateway", &passwords["gateway"]))
            .expect("gateway config");
    let gw = switchyard_gateway::start(gw_config, token.clone())
        .await
        .expect("gateway starts as user gateway");
    let base = format!("http://{}", gw.http_addr.unwrap());
    services.push((gw, token));

    let token = CancellationToken::new();
    let ex_config: switchyard_executor::Config =
        config::load_from(None, env_for(&env, "executor", &passwords["executor"]))
            .expect("executor config");
    let ex = switchyard_executor::start(ex_config, token.clone())
        .await
        .expect("executor starts as user executor");
    services.push((ex, token));

    let token = CancellationToken::new();
    let em_config: switchyard_executor_manager::Config = config::load_from(
        None,
        env_for(&env, "executor-manager", &passwords["executor-manager"]),
    )
    .expect("executor-manager config");
    let em = switchyard_executor_manager::start(em_config, token.clone())
        .await
        .expect("executor-manager starts as user executor-manager");
    services.push((em, token));

    Platform {
        nats,
        _db: db,
        base,
        http: reqwest::Client::new(),
        services,
    }
}

impl Platform {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Reads the run's SSE stream until `stop` holds for an event (or the stream ends).
    async fn read_until(&self, run_id: &str, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/api/runs/{run_id}/stream", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let mut frames = Box::pin(sse_client::frames(response));
        let mut events = Vec::new();
        tokio::time::timeout(DEADLINE, async {
            while let Some(frame) = frames.next().await {
                let Some(event) = frame.unwrap().json() else {
                    continue;
                };
                let done = stop(&event);
                events.push(event);
                if done {
                    break;
                }
            }
        })
        .await
        .expect("the awaited event arrived");
        events
    }

    async fn wait_status(&self, run_id: &str, want: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let response = self
                .http
                .get(format!("{}/api/runs/{run_id}", self.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if body["status"] == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} never became {want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shutdown(self) {
        for (_, token) in &self.services {
            token.cancel();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            for (handle, _) in self.services {
                let _ = handle.wait().await;
            }
        })
        .await;
    }
}

fn violations(nats: &NatsServer) -> Vec<String> {
    std::fs::read_to_string(nats.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Violation"))
        .map(str::to_owned)
        .collect()
}

/// Connects as `user` and reports the server's errors (permission violations arrive
/// asynchronously, as `-ERR` lines).
async fn connect_as(
    nats: &NatsServer,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client =
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = tx.send(error.to_string());
                    }
                }
            })
            .connect(nats.url())
            .await
            .expect("connect");
    (client, rx)
}

async fn next_error(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the server reported an error")
        .expect("error channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_runs_as_its_own_user_with_only_the_documented_subjects() {
    let passwords: HashMap<&str, String> = SERVICES
        .iter()
        .map(|user| (*user, password(user)))
        .collect();
    let platform = start_platform(&passwords).await;

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

    // The read views: presence (KV) and the command queue (consumer info).
    for path in ["/api/providers", "/api/run-queue"] {
        let response = platform
            .http
            .get(format!("{}{path}", platform.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
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

    // An executor may not forge another service's traffic: dispatches, commands.
    let (executor, mut errors) =
        connect_as(&platform.nats, "executor", &passwords["executor"]).await;
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
