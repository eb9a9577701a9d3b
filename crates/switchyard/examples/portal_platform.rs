//! A throwaway platform for the portal's browser tests (`portal/e2e`, started by
//! Playwright's global setup): a private nats-server, a fresh Postgres database, the
//! fake model server, the control-plane, one executor (scripted and the pinned agent
//! CLIs, pointed at the fake model) and an executor-manager in this process — and the
//! gateway as a process of its own (`switchyard serve gateway`), serving the built
//! portal, so that a test can SIGKILL it and start it again on the same port.
//!
//! ```text
//! portal_platform --switchyard target/debug/switchyard --portal-dir portal/dist
//! ```
//!
//! Prints one JSON line on stdout once everything answers: `gatewayUrl`, `adminToken`,
//! `controlUrl` (this process's own control API: `POST /gateway/restart` kills the
//! gateway with SIGKILL and starts it again, answering once it is ready),
//! `fakeModelUrl`, `fakeModelOpenaiUrl`, `gatewayLog`. Runs until stdin closes or a
//! SIGTERM / SIGINT arrives, then stops everything and removes its data.

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::config;
use switchyard_test_support::fake_model::FakeModel;
use switchyard_test_support::{NatsServer, TestDb, free_port, service_command};
use tokio::io::AsyncReadExt as _;
use tokio::process::Child;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "portal-e2e-admin-token";
/// The fake key the executor hands the CLIs (they send it to the fake model only).
const OPENAI_KEY: &str = "sk-portal-e2e-0a1b2c3d4e5f";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    switchyard: PathBuf,
    portal_dir: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let switchyard =
        value("--switchyard").context("--switchyard <path of the switchyard binary>")?;
    let portal_dir = value("--portal-dir").context("--portal-dir <the built portal>")?;
    if !switchyard.is_file() {
        bail!(
            "{} is not a file: build it with `cargo build -p switchyard`",
            switchyard.display()
        );
    }
    Ok(Options {
        switchyard,
        portal_dir,
    })
}

/// The gateway process: its command line, port and log, restartable.
struct Gateway {
    switchyard: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Gateway {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(log, "==== gateway start #{} ====", self.starts)?;
        let mut command = service_command(&self.switchyard, self.env.iter().map(|(k, v)| (k, v)));
        command
            .args(["serve", "gateway"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(command.spawn().context("spawn switchyard serve gateway")?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!(
                    "the gateway exited during start-up ({status}); see {}",
                    self.log.display()
                );
            }
            let ready = http.get(format!("{}/readyz", self.url())).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the gateway was not ready in time; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, and wait until the process is gone (its port is free again).
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

type Shared = Arc<Mutex<Gateway>>;

async fn restart(State(gateway): State<Shared>) -> (StatusCode, String) {
    let mut gateway = gateway.lock().await;
    gateway.kill().await;
    match gateway.start().await {
        Ok(()) => (StatusCode::OK, "restarted".to_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn kill(State(gateway): State<Shared>) -> (StatusCode, String) {
    gateway.lock().await.kill().await;
    (StatusCode::OK, "killed".to_owned())
}

async fn start(State(gateway): State<Shared>) -> (StatusCode, String) {
    match gateway.lock().await.start().await {
        Ok(()) => (StatusCode::OK, "started".to_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let nats = NatsServer::start().await?;
    let db = TestDb::create().await?;
    let fake = FakeModel::start().await?;
    let dir = tempfile::tempdir()?;
    let internal_token = uuid::Uuid::new_v4().simple().to_string();

    // The executor finds the pinned CLIs and takes the fake key from an env file.
    let clis = workspace_root().join(".local/providers/node_modules/.bin");
    let env_file = dir.path().join("provider-env");
    std::fs::write(&env_file, format!("{}={OPENAI_KEY}\n", "OPENAI_API_KEY"))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600))?;
    }
    // The endpoint and the allowed variables are the operator's, per provider: the
    // CLIs send the fake key to the fake model only.
    let executor_toml = dir.path().join("executor.toml");
    let mut text = format!(
        "[executor]\ncli_search_path = [{:?}]\ncredentials_env_file = {:?}\n\
         credentials_from_environment = false\n\
         [executor.liveness]\nhandshake_ms = 60000\nfirst_output_ms = 60000\ninactivity_ms = 60000\n",
        clis.display().to_string(),
        env_file.display().to_string()
    );
    for (provider, base_url) in [
        ("codex-app-server", fake.openai_url()),
        ("opencode", fake.openai_url()),
    ] {
        text.push_str(&format!(
            "[executor.credentials.{provider}]\nenv = [\"OPENAI_API_KEY\"]\nbase_url = {base_url:?}\n"
        ));
    }
    std::fs::write(&executor_toml, text)?;

    let env: HashMap<String, String> = [
        ("SWITCHYARD_NATS__URL", nats.url()),
        ("SWITCHYARD_DATABASE__URL", db.url.clone()),
        ("SWITCHYARD_CONTROL_PLANE__LISTEN", "127.0.0.1:0".to_owned()),
        (
            "SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN",
            internal_token.clone(),
        ),
        ("SWITCHYARD_EXECUTOR__LISTEN", "127.0.0.1:0".to_owned()),
        ("SWITCHYARD_EXECUTOR__CAPACITY", "8".to_owned()),
        (
            "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
            dir.path().join("workspaces").display().to_string(),
        ),
        ("SWITCHYARD_EXECUTOR__DRAIN_TIMEOUT_MS", "0".to_owned()),
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

    let shutdown = CancellationToken::new();
    let control_plane = switchyard_control_plane::start(
        config::load_from(None, env.clone()).context("control-plane config")?,
        shutdown.child_token(),
    )
    .await
    .context("control-plane starts")?;
    let control_plane_url = format!(
        "http://{}",
        control_plane.http_addr.context("control-plane address")?
    );
    let executor = switchyard_executor::start(
        config::load_from(Some(&executor_toml), env.clone()).context("executor config")?,
        shutdown.child_token(),
    )
    .await
    .context("executor starts")?;
    let manager = switchyard_executor_manager::start(
        config::load_from(None, env.clone()).context("executor-manager config")?,
        shutdown.child_token(),
    )
    .await
    .context("executor-manager starts")?;

    let port = free_port();
    let gateway = Gateway {
        switchyard: options.switchyard.clone(),
        env: vec![
            ("SWITCHYARD_NATS__URL".to_owned(), nats.url()),
            (
                "SWITCHYARD_GATEWAY__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "SWITCHYARD_GATEWAY__ADMIN_TOKEN".to_owned(),
                ADMIN_TOKEN.to_owned(),
            ),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL".to_owned(),
                control_plane_url,
            ),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN".to_owned(),
                internal_token,
            ),
            (
                "SWITCHYARD_GATEWAY__PORTAL_DIR".to_owned(),
                options.portal_dir.display().to_string(),
            ),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ],
        port,
        log: dir.path().join("gateway.log"),
        child: None,
        starts: 0,
    };
    let gateway: Shared = Arc::new(Mutex::new(gateway));
    gateway.lock().await.start().await?;
    let (gateway_url, gateway_log) = {
        let g = gateway.lock().await;
        (g.url(), g.log.display().to_string())
    };

    let control = Router::new()
        .route("/gateway/restart", post(restart))
        .route("/gateway/kill", post(kill))
        .route("/gateway/start", post(start))
        .with_state(gateway.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let control_url = format!("http://{}", listener.local_addr()?);
    let stop_control = shutdown.child_token();
    let control_task = tokio::spawn(async move {
        axum::serve(listener, control)
            .with_graceful_shutdown(stop_control.cancelled_owned())
            .await
    });

    let ready = serde_json::json!({
        "gatewayUrl": gateway_url,
        "adminToken": ADMIN_TOKEN,
        "controlUrl": control_url,
        "fakeModelUrl": fake.url(),
        "fakeModelOpenaiUrl": fake.openai_url(),
        "gatewayLog": gateway_log,
    });
    println!("{ready}");
    std::io::stdout().flush()?;

    // Until the test runner lets go of stdin, or signals.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 256];
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            read = stdin.read(&mut sink) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    gateway.lock().await.kill().await;
    shutdown.cancel();
    for service in [manager, executor, control_plane] {
        if let Err(e) = service.wait().await {
            eprintln!("portal platform: a service ended with an error: {e:#}");
        }
    }
    let _ = control_task.await;
    drop(fake);
    drop(db);
    drop(nats);
    Ok(())
}
