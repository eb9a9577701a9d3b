//! Real NATS and real Postgres for tests.
//!
//! * [`NatsServer`] starts a private `nats-server` (>= 2.10, JetStream on) on a free
//!   127.0.0.1 port with its own store directory, so a test can SIGKILL it and start it
//!   again on the same port and store.
//! * [`TestDb`] creates a fresh, uniquely named database on an admin Postgres server and
//!   drops it again when the value is dropped.
//! * [`trap::Trap`] is a TCP listener standing for an attacker's endpoint: it records
//!   who connected and what they sent.
//!
//! The binaries come from the project-local environment that `scripts/dev-deps.sh`
//! installs (`.local/venv/bin/nats-server`); see [`nats_server_binary`].

pub mod fake_model;
pub mod trap;

use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr as _;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Environment variable naming the `nats-server` binary to use.
pub const NATS_SERVER_BIN_ENV: &str = "SWITCHYARD_NATS_SERVER_BIN";
/// Environment variable naming the admin Postgres URL test databases are created on.
pub const TEST_DATABASE_URL_ENV: &str = "SWITCHYARD_TEST_DATABASE_URL";
/// Admin Postgres URL used when [`TEST_DATABASE_URL_ENV`] is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Oldest nats-server the platform supports (JetStream features of 2.10).
const MIN_NATS_VERSION: (u64, u64) = (2, 10);
/// How long [`NatsServer::start`] / [`NatsServer::restart`] wait for the server to accept clients.
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NatsServer::stop`] waits after SIGTERM before it falls back to SIGKILL.
const NATS_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports [`NatsServer::start`] tries (another process may grab a free port).
const NATS_START_ATTEMPTS: usize = 3;

/// JetStream's store limit for every test server. Unset, nats-server takes 75% of the
/// disk space free at its start, and a stream's `max_bytes` is reserved against that
/// limit up front: on a machine with a few GB free (a CI host just after a fresh build)
/// `RUN_EVENTS` (4 GiB) would be refused before a single event is written. The limit is
/// a ceiling, not an allocation; tests write a few megabytes.
pub const TEST_JETSTREAM_LIMITS: &str = "jetstream { max_file_store: 1TB }\n";
/// Bound on every step of dropping a test database.
const DB_DROP_TIMEOUT: Duration = Duration::from_secs(10);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Free TCP port on 127.0.0.1 (bound once by the OS, then released).
///
/// # Panics
///
/// Panics when no socket can be bound on 127.0.0.1 at all (the machine is unusable for
/// tests then).
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind an ephemeral port on 127.0.0.1");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// A command for a service under test, as a process of its own, that sees only the
/// configuration the test gives it: the developer's own `SWITCHYARD_*` variables (a
/// config file, the dev NATS), `RUST_LOG` and `EXECUTOR_RUN_TIMEOUT_MS` are removed, and
/// `env` is added. The child is killed when the handle drops.
pub fn service_command<K, V>(
    program: impl AsRef<std::ffi::OsStr>,
    env: impl IntoIterator<Item = (K, V)>,
) -> tokio::process::Command
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut command = tokio::process::Command::new(program);
    command.kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("SWITCHYARD_") || key == "RUST_LOG" || key == "EXECUTOR_RUN_TIMEOUT_MS" {
            command.env_remove(key);
        }
    }
    command.envs(env);
    command
}

/// Installs a `tracing` subscriber for tests once per process: `RUST_LOG` is respected
/// (default `info`), output goes through the test harness's capture.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be installed by the test itself: that is fine.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Parses the first `MAJOR.MINOR.PATCH` (optionally `v`-prefixed) found in `text`, e.g. in
/// `nats-server: v2.12.8` or an INFO `version` field `2.10.0-beta.1`.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .filter_map(|word| {
            let word = word.trim_start_matches('v');
            let mut parts = word.split(['.', '-', '+']);
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            let patch = parts.next()?.parse().ok()?;
            Some((major, minor, patch))
        })
        .next()
}

/// Whether a nats-server version string is at least [`MIN_NATS_VERSION`].
fn version_supported(text: &str) -> bool {
    parse_version(text).is_some_and(|(major, minor, _)| (major, minor) >= MIN_NATS_VERSION)
}

/// Path of a nats-server >= 2.10: `$SWITCHYARD_NATS_SERVER_BIN`, else
/// `<workspace>/.local/venv/bin/nats-server` (installed by `scripts/dev-deps.sh`), else
/// `nats-server` on `PATH`. The chosen binary's `--version` must say >= 2.10.
pub fn nats_server_binary() -> anyhow::Result<PathBuf> {
    const HINT: &str = "run scripts/dev-deps.sh (it installs a pinned nats-server into \
                        .local/venv) or set SWITCHYARD_NATS_SERVER_BIN to a nats-server >= 2.10";

    let (path, origin) = match std::env::var_os(NATS_SERVER_BIN_ENV).filter(|p| !p.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                bail!(
                    "{NATS_SERVER_BIN_ENV}={} does not name a file; {HINT}",
                    path.display()
                );
            }
            (path, NATS_SERVER_BIN_ENV)
        }
        None => {
            let local = workspace_root()
                .join(".local")
                .join("venv")
                .join("bin")
                .join("nats-server");
            if local.is_file() {
                (local, ".local/venv")
            } else {
                (PathBuf::from("nats-server"), "PATH")
            }
        }
    };

    let output = std::process::Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run `{} --version` (from {origin}); {HINT}", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if !version_supported(&text) {
        bail!(
            "{} (from {origin}) is not a nats-server >= {}.{}: `--version` said {:?}; {HINT}",
            path.display(),
            MIN_NATS_VERSION.0,
            MIN_NATS_VERSION.1,
            text.trim()
        );
    }
    Ok(path)
}

/// A private nats-server with JetStream, on its own port and store directory.
///
/// Dropping it SIGKILLs the process and deletes the store directory.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    /// The server config file (`-c`): [`TEST_JETSTREAM_LIMITS`] and, for tests of auth
    /// and permissions, the caller's accounts and users; the port, address and store
    /// flags still come from the command line and win over it.
    config: PathBuf,
    /// Holds `jetstream/` (the `-sd` store) and `nats.log`; declared last so it is removed
    /// after the child was killed.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a fresh nats-server with JetStream on a free 127.0.0.1 port and a temporary
    /// store directory, and waits (up to ~10 s) until it accepts client connections.
    pub async fn start() -> anyhow::Result<NatsServer> {
        Self::start_inner(None).await
    }

    /// Like [`NatsServer::start`], with `conf` (nats-server config text: accounts, users,
    /// permissions …) as the server's config file.
    pub async fn start_with_config(conf: &str) -> anyhow::Result<NatsServer> {
        Self::start_inner(Some(conf)).await
    }

    async fn start_inner(conf: Option<&str>) -> anyhow::Result<NatsServer> {
        let binary = nats_server_binary()?;
        let mut last_err = None;
        for _ in 0..NATS_START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("switchyard-nats-")
                .tempdir()
                .context("create a temporary directory for nats-server")?;
            let config = dir.path().join("nats-server.conf");
            // The caller's text comes last so that its own `jetstream` block wins.
            let text = format!("{TEST_JETSTREAM_LIMITS}{}\n", conf.unwrap_or_default());
            std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
            let mut server = NatsServer {
                child: None,
                port: free_port(),
                binary: binary.clone(),
                config,
                dir,
            };
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(err) => {
                    // The port may have been taken between free_port() and the bind: try
                    // another one (dropping `server` kills the child and removes its dir).
                    server.kill().await;
                    tracing::debug!(%err, "nats-server did not start, retrying on another port");
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not start")))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The TCP port clients connect to; it stays the same across [`NatsServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (`-sd`); it survives [`NatsServer::kill`].
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The file the server's stdout and stderr are appended to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// The PID of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGKILLs the server and waits until it exited. The store directory is kept.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(err) = child.kill().await
        {
            tracing::warn!(%err, port = self.port, "killing nats-server failed");
        }
    }

    /// Stops the server gracefully: SIGTERM, then waits for it to exit (SIGKILL after 10 s).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let sent = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if let Err(err) = sent {
                tracing::warn!(%err, pid, "sending SIGTERM to nats-server failed");
            }
            match tokio::time::timeout(NATS_STOP_TIMEOUT, child.wait()).await {
                Ok(_) => return,
                Err(_) => tracing::warn!(pid, "nats-server ignored SIGTERM, killing it"),
            }
        }
        if let Err(err) = child.kill().await {
            tracing::warn!(%err, port = self.port, "killing nats-server failed");
        }
    }

    /// Starts the server again on the same port with the same store directory (stopping
    /// it first with SIGKILL if it still runs), and waits until it accepts clients.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        // The port was just released; give a lingering bind a few tries.
        let deadline = Instant::now() + NATS_READY_TIMEOUT;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() < deadline && self.log_says_port_in_use() => {
                    tracing::debug!(%err, port = self.port, "port still busy, retrying restart");
                    self.kill().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn log_says_port_in_use(&self) -> bool {
        log_tail(&self.log_path(), 2048).contains("address already in use")
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let store = self.store_dir();
        std::fs::create_dir_all(&store)
            .with_context(|| format!("create nats store directory {}", store.display()))?;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open nats log {}", log_path.display()))?;
        let log_err = log.try_clone().context("clone nats log handle")?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);

        let mut command = Command::new(&self.binary);
        command.arg("-c").arg(&self.config);
        let child = command
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let pid = child.id();
        self.child = Some(child);

        let deadline = Instant::now() + NATS_READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!(
                    "nats-server on port {} exited during start-up ({status}); log:\n{}",
                    self.port,
                    log_tail_from(&log_path, log_start, 4096)
                );
            }
            if probe_nats(self.port).await {
                tracing::debug!(port = self.port, ?pid, "nats-server ready");
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server on port {} did not accept connections within {:?}; log:\n{}",
                    self.port,
                    NATS_READY_TIMEOUT,
                    log_tail_from(&log_path, log_start, 4096)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// True when something on 127.0.0.1:`port` greets like a NATS server (`INFO {...}`).
async fn probe_nats(port: u16) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        line.starts_with("INFO ").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(()))
    )
}

fn log_tail(path: &Path, max: u64) -> String {
    log_tail_from(path, 0, max)
}

/// The last `max` bytes of `path` written at or after offset `from`.
fn log_tail_from(path: &Path, from: u64, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = from.max(len.saturating_sub(max)).min(len);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|err| format!("<cannot read {}: {err}>", path.display()))
}

/// A fresh database on the admin Postgres server, dropped (`WITH (FORCE)`) on drop.
/// Migrations are not run: the caller does that on [`TestDb::pool`].
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of the fresh database.
    pub url: String,
    /// Pool on the fresh database (at most 5 connections).
    pub pool: sqlx::PgPool,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a uniquely named database (`switchyard_test_<uuid>`) on the server named by
    /// `$SWITCHYARD_TEST_DATABASE_URL` (default
    /// `postgres://postgres@127.0.0.1:5432/postgres`) and connects a pool to it.
    pub async fn create() -> anyhow::Result<TestDb> {
        let admin_url = std::env::var(TEST_DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_DATABASE_URL.to_owned());
        Self::create_on(&admin_url).await
    }

    /// [`TestDb::create`] on the server `admin_url` names (a Postgres the test runs
    /// itself, for instance).
    pub async fn create_on(admin_url: &str) -> anyhow::Result<TestDb> {
        let admin_url = admin_url.to_owned();
        let name = format!("switchyard_test_{}", uuid::Uuid::new_v4().simple());

        let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
            format!(
                "connect to the admin Postgres {} (set {TEST_DATABASE_URL_ENV} or run \
                 scripts/dev-deps.sh)",
                redact(&admin_url)
            )
        })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .with_context(|| format!("create database {name}"))?;
        let _ = admin.close().await;

        let url = with_database(&admin_url, &name);
        let options = PgConnectOptions::from_str(&admin_url)
            .with_context(|| format!("parse {}", redact(&admin_url)))?
            .database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .with_context(|| format!("connect to test database {name}"))?;
        Ok(TestDb {
            url,
            pool,
            name,
            admin_url,
        })
    }

    /// Name of the database.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("drop-test-db".into())
            .spawn(move || {
                let result = drop_database(&admin_url, &name);
                if let Err(err) = &result {
                    eprintln!(
                        "switchyard-test-support: could not drop test database {name}: {err:#}"
                    );
                }
                let _ = done_tx.send(());
            });
        if spawned.is_ok() {
            // Wait (bounded) so the database is gone before the test binary exits.
            let _ = done_rx.recv_timeout(DB_DROP_TIMEOUT * 2);
        }
    }
}

fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build a runtime")?;
    runtime.block_on(async {
        tokio::time::timeout(DB_DROP_TIMEOUT, async {
            let mut admin = PgConnection::connect(admin_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .execute(&mut admin)
            .await?;
            let _ = admin.close().await;
            anyhow::Ok(())
        })
        .await
        .context("timed out")?
    })
}

/// `url` with its database path replaced by `/database` (query string kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.12.8"), Some((2, 12, 8)));
        assert_eq!(parse_version("nats-server: v2.9.10\n"), Some((2, 9, 10)));
        assert_eq!(parse_version("2.10.0-beta.1"), Some((2, 10, 0)));
        assert_eq!(parse_version("garbage"), None);
        assert!(version_supported("nats-server: v2.12.8"));
        assert!(version_supported("v2.10.0"));
        assert!(!version_supported("nats-server: v2.9.10"));
        assert!(!version_supported(""));
    }

    #[test]
    fn replaces_database_in_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(with_database("postgres://h?a=b", "x"), "postgres://h/x?a=b");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact("postgres://u@h:1/db"), "postgres://u@h:1/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
