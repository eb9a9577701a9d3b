//! The whole platform in one test process: a fresh nats-server and Postgres database,
//! and the four services started through their public `start` functions, configured
//! through the same config loader (keys, not struct literals) that production uses.

use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use switchyard::sse_client::{self, Frame};
use switchyard_platform::config;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

pub(crate) const TOKEN: &str = "e2e-admin-token";
/// The gateway ↔ control-plane secret: only gateways may call the control-plane.
pub(crate) const INTERNAL_TOKEN: &str = "e2e-internal-token-4d7f1a";
/// Upper bound for anything a test waits for; generous for a loaded 2-core CI machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) struct Service {
    pub(crate) handle: ServiceHandle,
    pub(crate) shutdown: CancellationToken,
}

/// What a test talks to: the gateway's URL and an HTTP client of the test's own.
///
/// A client belongs to the runtime of the test that built it (its pooled connections are
/// tasks of that runtime), so every test, and every user of the shared platform, gets
/// its own.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub(crate) base: String,
    /// `http://127.0.0.1:PORT` of the control-plane (which only answers gateways).
    pub(crate) control_plane_base: String,
}

/// A platform of the test's own, for tests that kill, restart or add services, talk to
/// its NATS or database directly, or need other settings. Tests that only use the HTTP
/// API take [`shared`] instead.
pub(crate) struct Harness {
    pub(crate) api: Api,
    pub(crate) nats: NatsServer,
    /// Held so the database lives exactly as long as the harness.
    #[allow(dead_code)]
    pub(crate) db: TestDb,
    pub(crate) control_plane: Service,
    pub(crate) gateway: Service,
    pub(crate) executors: Vec<Service>,
    pub(crate) managers: Vec<Service>,
    env: HashMap<String, String>,
    /// The executors' workspace roots, removed when the harness goes.
    workspaces: Vec<tempfile::TempDir>,
}

impl std::ops::Deref for Harness {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The tests' HTTP client. The services close a connection idle for
/// `http.header_read_timeout_ms` (10 s); the pool lets go of one before that, so a
/// request never races that close.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

fn env_with(base: &HashMap<String, String>, extra: &[(&str, String)]) -> HashMap<String, String> {
    let mut env = base.clone();
    for (k, v) in extra {
        env.insert((*k).to_owned(), v.clone());
    }
    env
}

/// The settings every service of a test platform starts with.
pub(crate) fn platform_env(nats_url: String, database_url: String) -> HashMap<String, String> {
    [
        ("SWITCHYARD_NATS__URL", nats_url),
        ("SWITCHYARD_DATABASE__URL", database_url),
        ("SWITCHYARD_CONTROL_PLANE__LISTEN", "127.0.0.1:0".to_owned()),
        ("SWITCHYARD_GATEWAY__LISTEN", "127.0.0.1:0".to_owned()),
        ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", TOKEN.to_owned()),
        (
            "SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN",
            INTERNAL_TOKEN.to_owned(),
        ),
        (
            "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN",
            INTERNAL_TOKEN.to_owned(),
        ),
        ("SWITCHYARD_EXECUTOR__LISTEN", "127.0.0.1:0".to_owned()),
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
    .collect()
}

/// The control-plane (which applies the migrations and creates the streams) and a
/// gateway in front of it; returns them and `env` completed with the control-plane's URL.
pub(crate) async fn start_front(
    env: HashMap<String, String>,
) -> (Service, Service, Api, HashMap<String, String>) {
    let shutdown = CancellationToken::new();
    let cp_config: switchyard_control_plane::Config =
        config::load_from(None, env.clone()).expect("control-plane config");
    let cp = switchyard_control_plane::start(cp_config, shutdown.clone())
        .await
        .expect("control-plane starts");
    let cp_url = format!("http://{}", cp.http_addr.expect("control-plane address"));
    let control_plane = Service {
        handle: cp,
        shutdown,
    };

    let env = env_with(
        &env,
        &[("SWITCHYARD_GATEWAY__CONTROL_PLANE_URL", cp_url.clone())],
    );
    let shutdown = CancellationToken::new();
    let gw_config: switchyard_gateway::Config =
        config::load_from(None, env.clone()).expect("gateway config");
    let gw = switchyard_gateway::start(gw_config, shutdown.clone())
        .await
        .expect("gateway starts");
    let api = Api {
        http: client(),
        base: format!("http://{}", gw.http_addr.expect("gateway address")),
        control_plane_base: cp_url,
    };
    let gateway = Service {
        handle: gw,
        shutdown,
    };
    (control_plane, gateway, api, env)
}

/// An executor with its workspace root in `workspace`. Unless `extra`
/// says otherwise, its shutdown stops its runs at once (`drain_timeout_ms = 0`), so that
/// a test ending with runs still active ends promptly.
pub(crate) async fn start_executor(
    env: &HashMap<String, String>,
    workspace: &std::path::Path,
    capacity: u32,
    toml: Option<&std::path::Path>,
    extra: &[(&str, String)],
) -> Service {
    let mut settings = vec![
        ("SWITCHYARD_EXECUTOR__CAPACITY", capacity.to_string()),
        (
            "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
            workspace.display().to_string(),
        ),
        ("SWITCHYARD_EXECUTOR__DRAIN_TIMEOUT_MS", "0".to_owned()),
    ];
    settings.extend(extra.iter().cloned());
    let config: switchyard_executor::Config =
        config::load_from(toml, env_with(env, &settings)).expect("executor config");
    let shutdown = CancellationToken::new();
    let handle = switchyard_executor::start(config, shutdown.clone())
        .await
        .expect("executor starts");
    Service { handle, shutdown }
}

/// A fresh directory for an executor's workspace root, removed on drop.
pub(crate) fn workspace_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sy-e2e-")
        .tempdir()
        .expect("executor workspace root")
}

pub(crate) async fn start_manager(env: &HashMap<String, String>) -> Service {
    let config: switchyard_executor_manager::Config =
        config::load_from(None, env.clone()).expect("manager config");
    let shutdown = CancellationToken::new();
    let handle = switchyard_executor_manager::start(config, shutdown.clone())
        .await
        .expect("executor-manager starts");
    Service { handle, shutdown }
}

impl Harness {
    /// Starts NATS, Postgres, a control-plane, a gateway, and the given number of
    /// executors (capacity 16 each) and executor-manager processes.
    pub(crate) async fn start(executors: usize, managers: usize) -> Harness {
        Self::start_with_env(executors, managers, &[]).await
    }

    /// [`Harness::start`] with extra `SWITCHYARD_*` variables for every service.
    pub(crate) async fn start_with_env(
        executors: usize,
        managers: usize,
        extra: &[(&str, String)],
    ) -> Harness {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.expect("nats-server");
        let db = TestDb::create().await.expect("test database");
        let (control_plane, gateway, api, env) =
            start_front(env_with(&platform_env(nats.url(), db.url.clone()), extra)).await;
        let mut harness = Harness {
            api,
            nats,
            db,
            control_plane,
            gateway,
            executors: Vec::new(),
            managers: Vec::new(),
            env,
            workspaces: Vec::new(),
        };
        for _ in 0..executors {
            harness.add_executor(16).await;
        }
        for _ in 0..managers {
            harness.add_manager().await;
        }
        harness
    }

    pub(crate) async fn add_executor(&mut self, capacity: u32) -> usize {
        self.add_executor_with(capacity, None).await
    }

    /// Adds an executor; `toml` is an extra config file for it (e.g. the CLI search path
    /// and credentials of the provider tests).
    pub(crate) async fn add_executor_with(
        &mut self,
        capacity: u32,
        toml: Option<&std::path::Path>,
    ) -> usize {
        self.add_executor_env(capacity, toml, &[]).await
    }

    /// Adds an executor with extra `SWITCHYARD_*` variables (see [`start_executor`]).
    pub(crate) async fn add_executor_env(
        &mut self,
        capacity: u32,
        toml: Option<&std::path::Path>,
        extra: &[(&str, String)],
    ) -> usize {
        let workspace = workspace_root();
        let service = start_executor(&self.env, workspace.path(), capacity, toml, extra).await;
        self.executors.push(service);
        self.workspaces.push(workspace);
        self.executors.len() - 1
    }

    pub(crate) async fn add_manager(&mut self) -> usize {
        self.managers.push(start_manager(&self.env).await);
        self.managers.len() - 1
    }

    /// Shuts the control-plane down gracefully and starts a fresh one on the same
    /// address, so the gateway keeps forwarding to it.
    #[allow(dead_code)]
    pub(crate) async fn restart_control_plane(&mut self) {
        let addr = self
            .control_plane
            .handle
            .http_addr
            .expect("control-plane address");
        let config: switchyard_control_plane::Config = config::load_from(
            None,
            env_with(
                &self.env,
                &[("SWITCHYARD_CONTROL_PLANE__LISTEN", addr.to_string())],
            ),
        )
        .expect("control-plane config");
        let restarted = restart(&mut self.control_plane, "control-plane", |token| {
            switchyard_control_plane::start(config, token)
        })
        .await;
        assert_eq!(
            restarted,
            Some(addr),
            "the control-plane came back on its address"
        );
    }

    /// Shuts the gateway down gracefully and starts a fresh one on the same address
    /// (clients keep their URL; their pooled connections are dropped).
    #[allow(dead_code)]
    pub(crate) async fn restart_gateway(&mut self) {
        let addr = self.gateway.handle.http_addr.expect("gateway address");
        let config: switchyard_gateway::Config = config::load_from(
            None,
            env_with(
                &self.env,
                &[("SWITCHYARD_GATEWAY__LISTEN", addr.to_string())],
            ),
        )
        .expect("gateway config");
        let restarted = restart(&mut self.gateway, "gateway", |token| {
            switchyard_gateway::start(config, token)
        })
        .await;
        assert_eq!(
            restarted,
            Some(addr),
            "the gateway came back on its address"
        );
        self.api.http = client();
    }

    /// The environment the services of this harness are configured with, plus `extra`:
    /// for a service started as a process of its own.
    pub(crate) fn service_env(&self, extra: &[(&str, String)]) -> HashMap<String, String> {
        env_with(&self.env, extra)
    }

    /// A separate connection, as an operator's CLI would have.
    pub(crate) async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.nats.url())
            .await
            .expect("operator connection");
        async_nats::jetstream::new(client)
    }

    pub(crate) async fn shutdown(self) {
        self.gateway.shutdown.cancel();
        for s in self.managers.iter().chain(self.executors.iter()) {
            s.shutdown.cancel();
        }
        self.control_plane.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            let _ = self.gateway.handle.wait().await;
            for s in self.managers.into_iter().chain(self.executors) {
                let _ = s.handle.wait().await;
            }
            let _ = self.control_plane.handle.wait().await;
        })
        .await;
    }
}

impl Api {
    /// The gateway's address.
    pub(crate) fn gateway_addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("the gateway's address")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts a scripted run and returns its id.
    pub(crate) async fn start_scripted(&self, script: Value) -> String {
        let (status, body) = self
            .post(
                "/api/runs/start",
                json!({"provider": "scripted", "prompt": "e2e", "providerOptions": {"script": script}}),
            )
            .await;
        assert_eq!(status, 202, "start failed: {body}");
        body["runId"].as_str().expect("runId").to_owned()
    }

    /// Opens the run's SSE stream (optionally from a cursor).
    pub(crate) async fn open_stream(
        &self,
        run_id: &str,
        cursor: Option<&str>,
    ) -> reqwest::Response {
        let mut url = self.url(&format!("/api/runs/{run_id}/stream"));
        if let Some(cursor) = cursor {
            url.push_str(&format!("?cursor={cursor}"));
        }
        self.http
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("stream request")
    }

    /// Reads the run's stream (from a cursor) until the server ends it.
    pub(crate) async fn read_stream(&self, run_id: &str, cursor: Option<&str>) -> Vec<Frame> {
        let response = self.open_stream(run_id, cursor).await;
        assert_eq!(response.status().as_u16(), 200, "stream status");
        let frames = sse_client::frames(response)
            .map(|f| f.expect("stream frame"))
            .collect::<Vec<_>>();
        tokio::time::timeout(DEADLINE, frames)
            .await
            .expect("stream ended in time")
    }

    /// Reads the stream until `stop` returns true for a frame, then drops the connection.
    pub(crate) async fn read_until(
        &self,
        run_id: &str,
        cursor: Option<&str>,
        mut stop: impl FnMut(&Value) -> bool,
    ) -> Vec<Frame> {
        let response = self.open_stream(run_id, cursor).await;
        assert_eq!(response.status().as_u16(), 200, "stream status");
        let mut stream = Box::pin(sse_client::frames(response));
        let mut frames = Vec::new();
        let read = async {
            while let Some(frame) = stream.next().await {
                let frame = frame.expect("stream frame");
                let done = frame.json().is_some_and(|e| stop(&e));
                frames.push(frame);
                if done {
                    break;
                }
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("awaited event arrived in time");
        frames
    }

    /// Polls the run's projected status until `done` holds (the projection is eventually
    /// consistent with the stream, so there is no event to await on this side).
    pub(crate) async fn wait_run(&self, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.get(&format!("/api/runs/{run_id}")).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} never matched; last: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `GET /api/runs/{id}/human-loop[?query]` until `done` holds for the list.
    pub(crate) async fn wait_requests(
        &self,
        run_id: &str,
        query: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = self
                .get(&format!("/api/runs/{run_id}/human-loop{query}"))
                .await;
            assert_eq!(status, 200, "{body}");
            let requests = body["requests"].as_array().cloned().unwrap_or_default();
            if done(&requests) {
                return requests;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "human-loop requests of {run_id} never matched; last: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the run has a pending human-loop request; returns its id.
    pub(crate) async fn pending_request(&self, run_id: &str) -> String {
        let pending = self
            .wait_requests(run_id, "?status=pending", |r| !r.is_empty())
            .await;
        pending[0]["requestId"]
            .as_str()
            .expect("requestId")
            .to_owned()
    }
}

/// Stops `service` gracefully, waits until it is gone, then starts its successor with
/// `start` and a fresh shutdown token; returns the successor's HTTP address.
async fn restart<F, Fut>(
    service: &mut Service,
    name: &'static str,
    start: F,
) -> Option<std::net::SocketAddr>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ServiceHandle>>,
{
    let stopped = ServiceHandle::new(name, None, tokio::spawn(async { Ok(()) }));
    let old = std::mem::replace(&mut service.handle, stopped);
    service.shutdown.cancel();
    tokio::time::timeout(DEADLINE, old.wait())
        .await
        .expect("the old service stopped in time")
        .expect("the old service stopped cleanly");
    let shutdown = CancellationToken::new();
    let handle = start(shutdown.clone()).await.expect("the service restarts");
    let addr = handle.http_addr;
    *service = Service { handle, shutdown };
    addr
}

/// The run events in SSE frames, decoded.
pub(crate) fn events(frames: &[Frame]) -> Vec<Value> {
    frames.iter().filter_map(Frame::json).collect()
}

/// Asserts seq runs 1..=n without gaps and returns the event types.
pub(crate) fn assert_gapless(events: &[Value]) -> Vec<String> {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "gap or reorder at {i}: {events:?}"
        );
    }
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}
