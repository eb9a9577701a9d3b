//! The platform under test: a private nats-server and a fresh Postgres database (from
//! the test-support crate, so every benchmark run starts from empty streams and
//! tables), and the four services started in this process through their public
//! `start` functions, configured through the same config loader production uses.

use super::machine::CpuMark;
use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchyard_platform::config;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Bound on one HTTP request of the load generator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a graceful shutdown of the whole platform.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

struct Service {
    handle: ServiceHandle,
    shutdown: CancellationToken,
}

/// Everything running for one benchmark.
pub(crate) struct BenchPlatform {
    pub(crate) nats: NatsServer,
    pub(crate) db: TestDb,
    pub(crate) token: String,
    pub(crate) gateway_addr: SocketAddr,
    pub(crate) gateway_url: String,
    /// The load generator's HTTP client (connection pool shared by all its tasks).
    pub(crate) http: reqwest::Client,
    /// The benchmark's own NATS connection (watcher, raw baselines).
    pub(crate) nats_client: async_nats::Client,
    env: HashMap<String, String>,
    control_plane: Service,
    gateway: Service,
    executors: Vec<Service>,
    managers: Vec<Service>,
    /// The executors' workspace roots, removed when the platform goes (last: after the
    /// services that work in them).
    workspaces: Vec<tempfile::TempDir>,
}

fn with(base: &HashMap<String, String>, extra: &[(&str, String)]) -> HashMap<String, String> {
    let mut env = base.clone();
    for (key, value) in extra {
        env.insert((*key).to_owned(), value.clone());
    }
    env
}

/// Below this many busy cores (of the whole machine, over a quarter of a second) the
/// machine counts as quiet.
const QUIET_CORES: f64 = 0.25;
const QUIET_WAIT: Duration = Duration::from_secs(15);

impl BenchPlatform {
    /// Lets the machine settle before a phase that needs it idle: in a full run each
    /// phase follows heavier ones, whose after-effects (Postgres writing back what they
    /// inserted, closed connections, deleted streams) would land in its samples. Asks
    /// Postgres to write back its dirty pages now (a checkpoint that would otherwise
    /// start mid-phase stalls commits), then waits, at most [`QUIET_WAIT`], until the
    /// machine is quiet. Reports what it saw.
    pub(crate) async fn settle(&self) -> Value {
        let checkpoint = sqlx::query!("CHECKPOINT")
            .execute(&self.db.pool)
            .await
            .map(|_| "done".to_owned())
            .unwrap_or_else(|e| format!("not possible: {e}"));
        let started = Instant::now();
        let mut busy = None;
        while started.elapsed() < QUIET_WAIT {
            let mark = CpuMark::now(None, &[]);
            tokio::time::sleep(Duration::from_millis(250)).await;
            busy = mark.usage_since().machine_busy_cores;
            if busy.is_none_or(|cores| cores < QUIET_CORES) {
                break;
            }
        }
        json!({
            "postgres_checkpoint": checkpoint,
            "waited_ms": started.elapsed().as_secs_f64() * 1e3,
            "machine_busy_cores_at_start": busy,
        })
    }

    /// Waits until the run's row shows it ended: its status projected into Postgres, so
    /// the projector's commits are over.
    pub(crate) async fn wait_projected(
        &self,
        run_id: Uuid,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = sqlx::query_scalar!(
                r#"SELECT status::text AS "status!" FROM runs WHERE run_id = $1"#,
                run_id
            )
            .fetch_optional(&self.db.pool)
            .await?;
            if status.as_deref().is_some_and(|s| {
                switchyard_contracts::RunStatus::parse(s).is_some_and(|s| s.is_terminal())
            }) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "run {run_id} was not projected as ended"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Starts NATS, a fresh database, the control-plane, the gateway, and one
    /// executor-manager with one executor of `executor_capacity` slots.
    pub(crate) async fn start(executor_capacity: u32) -> anyhow::Result<Self> {
        let nats = NatsServer::start()
            .await
            .context("start a private nats-server (run scripts/dev-deps.sh first)")?;
        let db = TestDb::create()
            .await
            .context("create a fresh benchmark database")?;
        let token = format!("bench-{}", Uuid::new_v4().simple());
        let internal = format!("bench-internal-{}", Uuid::new_v4().simple());
        let env: HashMap<String, String> = [
            ("SWITCHYARD_NATS__URL", nats.url()),
            ("SWITCHYARD_DATABASE__URL", db.url.clone()),
            ("SWITCHYARD_CONTROL_PLANE__LISTEN", "127.0.0.1:0".to_owned()),
            ("SWITCHYARD_GATEWAY__LISTEN", "127.0.0.1:0".to_owned()),
            ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", token.clone()),
            ("SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN", internal.clone()),
            ("SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN", internal),
            // One token opens every benchmark stream; the per-token limit protects
            // production gateways from one client, not what is measured here.
            (
                "SWITCHYARD_GATEWAY__MAX_STREAMS_PER_TOKEN",
                "1000000".to_owned(),
            ),
            (
                "SWITCHYARD_GATEWAY__STREAM_OPENS_PER_MINUTE",
                "0".to_owned(),
            ),
            ("SWITCHYARD_EXECUTOR__LISTEN", "127.0.0.1:0".to_owned()),
            (
                "SWITCHYARD_EXECUTOR_MANAGER__LISTEN",
                "127.0.0.1:0".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();

        let shutdown = CancellationToken::new();
        let cp_config: switchyard_control_plane::Config =
            config::load_from(None, env.clone()).context("control-plane config")?;
        cp_config.validate()?;
        let cp = switchyard_control_plane::start(cp_config, shutdown.clone())
            .await
            .context("control-plane failed to start")?;
        let cp_addr = cp
            .http_addr
            .context("the control-plane has no HTTP address")?;
        let control_plane = Service {
            handle: cp,
            shutdown,
        };

        let env = with(
            &env,
            &[(
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL",
                format!("http://{cp_addr}"),
            )],
        );
        let shutdown = CancellationToken::new();
        let gw_config: switchyard_gateway::Config =
            config::load_from(None, env.clone()).context("gateway config")?;
        gw_config.validate()?;
        let gw = switchyard_gateway::start(gw_config, shutdown.clone())
            .await
            .context("gateway failed to start")?;
        let gateway_addr = gw.http_addr.context("the gateway has no HTTP address")?;
        let gateway = Service {
            handle: gw,
            shutdown,
        };

        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            // The gateway closes connections idle for `http.header_read_timeout_ms`
            // (10 s): let go of them first rather than race its close.
            .pool_idle_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("build the HTTP client")?;
        let nats_client = async_nats::connect(nats.url())
            .await
            .context("connect the benchmark's NATS client")?;
        let mut platform = Self {
            nats,
            db,
            token,
            gateway_addr,
            gateway_url: format!("http://{gateway_addr}"),
            http,
            nats_client,
            env,
            control_plane,
            gateway,
            executors: Vec::new(),
            managers: Vec::new(),
            workspaces: Vec::new(),
        };
        platform.add_executor_and_manager(executor_capacity).await?;
        Ok(platform)
    }

    pub(crate) fn executor_count(&self) -> usize {
        self.executors.len()
    }

    /// Adds one executor (`capacity` slots) and one executor-manager process with the
    /// default manager settings (workers, batch size, in-flight limit).
    pub(crate) async fn add_executor_and_manager(&mut self, capacity: u32) -> anyhow::Result<()> {
        let workspace = tempfile::Builder::new()
            .prefix("switchyard-bench-")
            .tempdir()
            .context("create the executor's workspace root")?;
        let env = with(
            &self.env,
            &[
                ("SWITCHYARD_EXECUTOR__CAPACITY", capacity.to_string()),
                (
                    "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
                    workspace.path().display().to_string(),
                ),
                // The end of a benchmark stops whatever still runs at once.
                ("SWITCHYARD_EXECUTOR__DRAIN_TIMEOUT_MS", "0".to_owned()),
            ],
        );
        let config: switchyard_executor::Config =
            config::load_from(None, env).context("executor config")?;
        config.validate()?;
        let shutdown = CancellationToken::new();
        let handle = switchyard_executor::start(config, shutdown.clone())
            .await
            .context("executor failed to start")?;
        self.executors.push(Service { handle, shutdown });
        self.workspaces.push(workspace);

        let config: switchyard_executor_manager::Config =
            config::load_from(None, self.env.clone()).context("executor-manager config")?;
        config.validate()?;
        let shutdown = CancellationToken::new();
        let handle = switchyard_executor_manager::start(config, shutdown.clone())
            .await
            .context("executor-manager failed to start")?;
        self.managers.push(Service { handle, shutdown });
        Ok(())
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.post_with(&self.http, path, body).await
    }

    /// [`Self::post`] through a client of the caller's (one living on another runtime).
    async fn post_with(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let response = http
            .post(format!("{}{path}", self.gateway_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Starts a scripted run through the gateway; returns its id.
    pub(crate) async fn start_run(&self, script: &Value) -> anyhow::Result<Uuid> {
        self.start_run_with(&self.http, script).await
    }

    /// [`Self::start_run`] through a client of the caller's.
    pub(crate) async fn start_run_with(
        &self,
        http: &reqwest::Client,
        script: &Value,
    ) -> anyhow::Result<Uuid> {
        let (status, body) = self
            .post_with(
                http,
                "/api/runs/start",
                &json!({
                    "provider": "scripted",
                    "prompt": "benchmark",
                    "providerOptions": {"script": script},
                }),
            )
            .await?;
        if status != 202 {
            bail!("starting a run answered {status}: {body}");
        }
        body["runId"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("the start response has no run id: {body}"))
    }

    pub(crate) async fn stop_run(&self, run_id: Uuid) -> anyhow::Result<()> {
        let (status, body) = self
            .post(&format!("/api/runs/{run_id}/stop"), &json!({}))
            .await?;
        if status != 202 && status != 409 {
            bail!("stopping run {run_id} answered {status}: {body}");
        }
        Ok(())
    }

    pub(crate) async fn approve(&self, run_id: Uuid) -> anyhow::Result<()> {
        let (status, body) = self
            .post(
                &format!("/api/runs/{run_id}/human-loop/reply"),
                &json!({"decision": "approve"}),
            )
            .await?;
        if !(200..300).contains(&status) {
            bail!("replying to run {run_id} answered {status}: {body}");
        }
        Ok(())
    }

    /// Starts `count` runs of `script`, `concurrency` requests at a time.
    pub(crate) async fn start_runs(
        &self,
        script: &Value,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Uuid>> {
        use futures::StreamExt as _;
        futures::stream::iter(0..count)
            .map(|_| self.start_run(script))
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Stops every run in `ids`, `concurrency` requests at a time.
    pub(crate) async fn stop_runs(&self, ids: &[Uuid], concurrency: usize) -> anyhow::Result<()> {
        use futures::StreamExt as _;
        futures::stream::iter(ids.iter().copied())
            .map(|id| self.stop_run(id))
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// The gateway path of a run's SSE stream.
    pub(crate) fn stream_path(run_id: Uuid) -> String {
        format!("/api/runs/{run_id}/stream")
    }

    /// Stops every service (gateway first, control-plane last) and waits, bounded.
    pub(crate) async fn shutdown(self) {
        self.gateway.shutdown.cancel();
        for service in self.managers.iter().chain(self.executors.iter()) {
            service.shutdown.cancel();
        }
        self.control_plane.shutdown.cancel();
        let waited = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
            let services = std::iter::once(self.gateway)
                .chain(self.managers)
                .chain(self.executors)
                .chain(std::iter::once(self.control_plane));
            for service in services {
                let name = service.handle.name;
                if let Err(e) = service.handle.wait().await {
                    tracing::warn!(
                        service = name,
                        error = format!("{e:#}"),
                        "service ended with an error"
                    );
                }
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!("the platform did not shut down within {SHUTDOWN_TIMEOUT:?}");
        }
        drop(self.nats_client);
        drop(self.db);
        drop(self.nats);
    }
}
