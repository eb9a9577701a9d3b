//! The platform as separate processes (`switchyard serve <service>`), each on its own
//! port with its stderr in a log file, so that any of them can be killed with SIGKILL
//! and started again exactly as it was.

use anyhow::{Context as _, bail};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchyard_test_support::{NatsServer, TestDb, free_port, service_command};
use tokio::process::Child;
use tokio::time::Instant;

pub(crate) const TOKEN: &str = "faults-admin-token";
/// The gateway ↔ control-plane secret.
const INTERNAL_TOKEN: &str = "faults-internal-token";
/// How long a (re)started service has to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One service process.
pub(crate) struct Service {
    pub(crate) name: String,
    kind: &'static str,
    env: Vec<(String, String)>,
    pub(crate) port: u16,
    log: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Service {
    fn new(
        name: &str,
        kind: &'static str,
        dir: &Path,
        env: Vec<(String, String)>,
        port: u16,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            env,
            port,
            log: dir.join(format!("{name}.log")),
            dir: dir.to_owned(),
            child: None,
            starts: 0,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it is ready.
    pub(crate) async fn start(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        writeln!(log, "==== {} start #{} ====", self.name, self.starts)?;
        let mut command = service_command(
            env!("CARGO_BIN_EXE_switchyard"),
            self.env.iter().map(|(k, v)| (k, v)),
        );
        command
            .arg("serve")
            .arg(self.kind)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("spawn switchyard serve {}", self.kind))?,
        );
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!(
                    "{} exited during start-up ({status}); log:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            let ready = http.get(format!("{}/readyz", self.url())).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub(crate) async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let mut log = OpenOptions::new().append(true).open(&self.log).ok();
        if let Some(log) = log.as_mut() {
            let _ = writeln!(log, "==== {} killed with SIGKILL ====", self.name);
        }
    }

    /// Sends a signal (`STOP`, `CONT` …) to the process.
    pub(crate) async fn signal(&self, name: &str) {
        let Some(pid) = self.child.as_ref().and_then(Child::id) else {
            return;
        };
        let sent = tokio::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .await;
        assert!(
            sent.is_ok_and(|s| s.success()),
            "kill -{name} {pid} ({}) failed",
            self.name
        );
    }

    /// Lines of the process's log containing `needle`.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The last `max` bytes of the process's log (all its starts).
    pub(crate) fn log_tail(&self, max: usize) -> String {
        let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let start = text.len().saturating_sub(max);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }
}

/// NATS, Postgres and the six service processes.
pub(crate) struct Cluster {
    pub(crate) nats: NatsServer,
    /// Held so the database lives exactly as long as the cluster.
    #[allow(dead_code)]
    pub(crate) db: TestDb,
    pub(crate) dir: PathBuf,
    pub(crate) control_plane: Service,
    pub(crate) gateway: Service,
    pub(crate) managers: Vec<Service>,
    pub(crate) executors: Vec<Service>,
}

impl Cluster {
    /// Starts everything: control-plane first (migrations, streams), then executors,
    /// managers and the gateway. `capacity` is per executor.
    pub(crate) async fn start(capacity: u32) -> anyhow::Result<Cluster> {
        Self::start_on(capacity, TestDb::create().await?).await
    }

    /// [`Cluster::start`] with the control-plane on `db`.
    pub(crate) async fn start_on(capacity: u32, db: TestDb) -> anyhow::Result<Cluster> {
        let nats = NatsServer::start().await?;
        let dir = std::env::temp_dir().join(format!(
            "switchyard-faults-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let common = vec![("SWITCHYARD_NATS__URL".to_owned(), nats.url())];
        let with = |extra: &[(&str, String)]| {
            let mut env = common.clone();
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };

        let cp_port = free_port();
        let control_plane = Service::new(
            "control-plane",
            "control-plane",
            &dir,
            with(&[
                ("SWITCHYARD_DATABASE__URL", db.url.clone()),
                (
                    "SWITCHYARD_CONTROL_PLANE__LISTEN",
                    format!("127.0.0.1:{cp_port}"),
                ),
                (
                    "SWITCHYARD_CONTROL_PLANE__INTERNAL_TOKEN",
                    INTERNAL_TOKEN.to_owned(),
                ),
            ]),
            cp_port,
        );
        let gw_port = free_port();
        let gateway = Service::new(
            "gateway",
            "gateway",
            &dir,
            with(&[
                ("SWITCHYARD_GATEWAY__LISTEN", format!("127.0.0.1:{gw_port}")),
                ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", TOKEN.to_owned()),
                // Every reader shares one token and reconnects after each fault: the
                // per-token opening rate is not what this suite is about.
                (
                    "SWITCHYARD_GATEWAY__STREAM_OPENS_PER_MINUTE",
                    "0".to_owned(),
                ),
                (
                    "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL",
                    format!("http://127.0.0.1:{cp_port}"),
                ),
                (
                    "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN",
                    INTERNAL_TOKEN.to_owned(),
                ),
            ]),
            gw_port,
        );
        let managers = (0..2)
            .map(|i| {
                let port = free_port();
                Service::new(
                    &format!("manager-{i}"),
                    "executor-manager",
                    &dir,
                    with(&[
                        (
                            "SWITCHYARD_EXECUTOR_MANAGER__LISTEN",
                            format!("127.0.0.1:{port}"),
                        ),
                        ("SWITCHYARD_EXECUTOR_MANAGER__WORKER_ID", format!("mgr-{i}")),
                        (
                            "SWITCHYARD_EXECUTOR_MANAGER__NO_CAPACITY_DELAY_MS",
                            "200".to_owned(),
                        ),
                    ]),
                    port,
                )
            })
            .collect();
        let executors = ["a", "b"]
            .iter()
            .map(|name| {
                let port = free_port();
                Service::new(
                    &format!("executor-{name}"),
                    "executor",
                    &dir,
                    with(&[
                        ("SWITCHYARD_EXECUTOR__LISTEN", format!("127.0.0.1:{port}")),
                        ("SWITCHYARD_EXECUTOR__EXECUTOR_ID", format!("exec-{name}")),
                        ("SWITCHYARD_EXECUTOR__CAPACITY", capacity.to_string()),
                        (
                            "SWITCHYARD_EXECUTOR__WORKSPACE_ROOT",
                            dir.join(format!("workspaces-{name}")).display().to_string(),
                        ),
                    ]),
                    port,
                )
            })
            .collect();

        let mut cluster = Cluster {
            nats,
            db,
            dir,
            control_plane,
            gateway,
            managers,
            executors,
        };
        cluster.control_plane.start().await?;
        for executor in &mut cluster.executors {
            executor.start().await?;
        }
        for manager in &mut cluster.managers {
            manager.start().await?;
        }
        cluster.gateway.start().await?;
        Ok(cluster)
    }

    pub(crate) fn base(&self) -> String {
        self.gateway.url()
    }

    pub(crate) fn services(&self) -> impl Iterator<Item = &Service> {
        [&self.control_plane, &self.gateway]
            .into_iter()
            .chain(self.managers.iter())
            .chain(self.executors.iter())
    }

    /// The tail of every service's log, for a failure message.
    pub(crate) fn logs(&self, per_service: usize) -> String {
        let mut text = format!("logs in {}\n", self.dir.display());
        for service in self.services() {
            text.push_str(&format!(
                "\n----- {} ({}) -----\n{}",
                service.name,
                service.log_path().display(),
                service.log_tail(per_service)
            ));
        }
        text
    }

    /// Lines of the services' logs at WARN or ERROR since the test started, counted per
    /// service (a summary for the report).
    pub(crate) fn warnings(&self) -> Vec<(String, usize, usize)> {
        self.services()
            .map(|s| {
                let text = strip_ansi(&std::fs::read_to_string(s.log_path()).unwrap_or_default());
                let warns = text.lines().filter(|l| l.contains(" WARN ")).count();
                let errors = text.lines().filter(|l| l.contains(" ERROR ")).count();
                (s.name.clone(), warns, errors)
            })
            .collect()
    }

    /// Removes the log directory (after a successful run).
    pub(crate) fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The text without terminal colour sequences (`ESC [ … m`), which the services write
/// even to a file.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
