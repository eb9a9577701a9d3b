//! The whole platform in-process, each service connected to a locked-down nats-server
//! as its own NATS identity, and the helpers the tests use to drive and inspect it.

use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use switchyard::sse_client;
use switchyard_platform::config;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

pub(crate) const TOKEN: &str = "nats-auth-admin-token";
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
/// Every user of the checked-in config. The executors' users are named after the
/// executor id they serve.
pub(crate) const USERS: [&str; 5] = [
    "control-plane",
    "gateway",
    "executor-manager",
    "executor-1",
    "executor-2",
];

/// The checked-in server config.
pub(crate) fn checked_in_config() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../nats/auth/nats-server.conf"
    );
    std::fs::read_to_string(path).expect("nats/auth/nats-server.conf")
}

/// How a service proves who it is.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    Password { user: String, password: String },
    Seed(String),
}

impl Credential {
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Credential::Password { user, password } => vec![
                ("SWITCHYARD_NATS__USER", user.clone()),
                ("SWITCHYARD_NATS__PASSWORD", password.clone()),
            ],
            Credential::Seed(seed) => vec![("SWITCHYARD_NATS__NKEY_SEED", seed.clone())],
        }
    }
}

pub(crate) struct Platform {
    pub(crate) nats: NatsServer,
    _db: TestDb,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    services: Vec<(ServiceHandle, CancellationToken)>,
}

fn env_with(base: &HashMap<String, String>, credential: &Credential) -> HashMap<String, String> {
    let mut env = base.clone();
    for (key, value) in credential.env() {
        env.insert(key.to_owned(), value);
    }
    env
}

/// Starts nats-server from `server_config`, then control-plane, gateway, the executors
/// named in `executors` (each under its id) and an executor-manager, each with its
/// entry of `credentials`.
pub(crate) async fn start_platform(
    server_config: &str,
    credentials: &HashMap<&str, Credential>,
    executors: &[&str],
) -> Platform {
    switchyard_test_support::init_tracing();
    let nats = NatsServer::start_with_config(server_config)
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
        (
            "SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN",
            "nats-auth-internal-token".to_owned(),
        ),
        (
            "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN",
            "nats-auth-internal-token".to_owned(),
        ),
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
    let cp_config: switchyard_control_plane::Config =
        config::load_from(None, env_with(&env, &credentials["control-plane"]))
            .expect("control-plane config");
    let cp = switchyard_control_plane::start(cp_config, token.clone())
        .await
        .expect("control-plane starts as its own NATS user");
    env.insert(
        "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL".to_owned(),
        format!("http://{}", cp.http_addr.unwrap()),
    );
    services.push((cp, token));

    let token = CancellationToken::new();
    let gw_config: switchyard_gateway::Config =
        config::load_from(None, env_with(&env, &credentials["gateway"])).expect("gateway config");
    let gw = switchyard_gateway::start(gw_config, token.clone())
        .await
        .expect("gateway starts as its own NATS user");
    let base = format!("http://{}", gw.http_addr.unwrap());
    services.push((gw, token));

    for id in executors {
        let token = CancellationToken::new();
        let mut ex_env = env_with(&env, &credentials[id]);
        ex_env.insert(
            "SWITCHYARD_EXECUTOR__EXECUTOR_ID".to_owned(),
            (*id).to_owned(),
        );
        let ex_config: switchyard_executor::Config =
            config::load_from(None, ex_env).expect("executor config");
        let ex = switchyard_executor::start(ex_config, token.clone())
            .await
            .expect("executor starts as its own NATS user");
        services.push((ex, token));
    }

    let token = CancellationToken::new();
    let em_config: switchyard_executor_manager::Config =
        config::load_from(None, env_with(&env, &credentials["executor-manager"]))
            .expect("executor-manager config");
    let em = switchyard_executor_manager::start(em_config, token.clone())
        .await
        .expect("executor-manager starts as its own NATS user");
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
    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
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
    pub(crate) async fn read_until(
        &self,
        run_id: &str,
        stop: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
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

    pub(crate) async fn wait_status(&self, run_id: &str, want: &str) {
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

    /// Stops every service gracefully (executors draining, withdrawing their presence);
    /// NATS stays up.
    pub(crate) async fn stop_services(&mut self) {
        for (_, token) in &self.services {
            token.cancel();
        }
        let services = std::mem::take(&mut self.services);
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            for (handle, _) in services {
                let _ = handle.wait().await;
            }
        })
        .await;
    }

    pub(crate) async fn shutdown(mut self) {
        self.stop_services().await;
    }
}

/// The server log's permission violations.
pub(crate) fn violations(nats: &NatsServer) -> Vec<String> {
    std::fs::read_to_string(nats.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Violation"))
        .map(str::to_owned)
        .collect()
}

/// Connects with `options` and reports the server's errors (permission violations
/// arrive asynchronously, as `-ERR` lines).
pub(crate) async fn connect_watching_errors(
    nats: &NatsServer,
    options: async_nats::ConnectOptions,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = options
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

pub(crate) async fn next_error(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the server reported an error")
        .expect("error channel open")
}
