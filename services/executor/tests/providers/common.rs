//! Helpers for the end-to-end provider tests: a real nats-server, a fake model server
//! and an in-process executor that finds the pinned CLIs installed by
//! `scripts/install-providers.sh`, with credentials from an env file of fake keys; plus
//! a driver that dispatches a run over NATS (as an executor-manager worker does),
//! reads its events from the event log, answers human-loop requests and stops it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_contracts::control::{ControlOutcome, ControlReply, ControlRequest};
use switchyard_contracts::dispatch::{
    DispatchOutcome, DispatchReply, DispatchRequest, EventPosition,
};
use switchyard_contracts::event::{
    FileChangeKind, HumanLoopDecision, HumanLoopRequested, RunCompleted,
};
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::{
    ExecutorId, HumanLoopRequestId, RunCommand, RunEvent, RunEventKind, RunId, subjects,
};
use switchyard_executor::{
    Config, ExecutorSettings, LivenessSettings, ProviderCredentialSettings, WorkspaceCleanup,
};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::EventLog;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::NatsServer;
use switchyard_test_support::fake_model::FakeModel;
use tokio_util::sync::CancellationToken;

/// Bound on one wait for an event (CLIs start slowly on a loaded 2-core machine).
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// The credential variables the env file of every harness defines (fake keys; the fake
/// model only checks that a key is sent). `OTHER_SERVICE_TOKEN` stands for a secret of
/// the deployment that sits in the same file but that no provider is allowed.
pub(crate) const CREDENTIAL_NAMES: &[&str] =
    &["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OTHER_SERVICE_TOKEN"];

/// A credential variable every CLI provider of the harness is allowed but that has no
/// value anywhere (→ `auth_missing`).
pub(crate) const UNSET_CREDENTIAL: &str = "UNSET_PROVIDER_TEST_KEY";

/// The repository's pinned CLI directory (`scripts/install-providers.sh`).
pub(crate) fn installed_bin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.local/providers/node_modules/.bin")
        .canonicalize()
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/providers/node_modules/.bin")
        })
}

/// The installed CLI `program`; panics with how to install it when it is missing (the
/// tests must run against the real CLIs, never be skipped silently).
pub(crate) fn require_cli(program: &str) -> PathBuf {
    let path = installed_bin_dir().join(program);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-providers.sh",
        path.display()
    );
    path
}

/// A run to dispatch.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    pub(crate) provider: String,
    pub(crate) prompt: String,
    pub(crate) model: Option<String>,
    pub(crate) credential_env: Vec<String>,
    pub(crate) provider_options: serde_json::Map<String, Value>,
    pub(crate) conversation_id: Option<RunId>,
    /// The run timeout the executor-manager would resolve (ms).
    pub(crate) timeout_ms: u64,
}

impl RunSpec {
    pub(crate) fn new(provider: &str, prompt: impl Into<String>) -> Self {
        Self {
            provider: provider.to_owned(),
            prompt: prompt.into(),
            model: None,
            credential_env: Vec::new(),
            provider_options: serde_json::Map::new(),
            conversation_id: None,
            timeout_ms: 180_000,
        }
    }

    pub(crate) fn credential(mut self, name: &str) -> Self {
        self.credential_env.push(name.to_owned());
        self
    }

    pub(crate) fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_owned());
        self
    }

    pub(crate) fn option(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.provider_options.insert(key.to_owned(), value.into());
        self
    }

    /// Continues the conversation whose first run is `conversation_id`.
    pub(crate) fn conversation(mut self, conversation_id: RunId) -> Self {
        self.conversation_id = Some(conversation_id);
        self
    }

    pub(crate) fn timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    pub(crate) fn command(&self, run_id: RunId) -> RunCommand {
        RunCommand {
            run_id,
            provider: self.provider.clone(),
            model: self.model.clone(),
            prompt: self.prompt.clone(),
            app_id: None,
            execution_profile: None,
            provider_options: Value::Object(self.provider_options.clone()),
            credential_env: self.credential_env.clone(),
            timeout_ms: Some(self.timeout_ms),
            conversation_id: self.conversation_id,
            preferred_executor: None,
            created_at: chrono::Utc::now(),
        }
    }
}

/// How a driven run went.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) run_id: RunId,
    /// Every event, `run.completed` last.
    pub(crate) events: Vec<RunEvent>,
    /// The human-loop requests that were answered, in order.
    pub(crate) asked: Vec<HumanLoopRequested>,
}

impl Finished {
    pub(crate) fn completed(&self) -> RunCompleted {
        match &self.events.last().expect("at least one event").kind {
            RunEventKind::RunCompleted(completed) => completed.clone(),
            other => panic!("last event is {}, not run.completed", other.type_name()),
        }
    }

    pub(crate) fn types(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.type_name()).collect()
    }

    /// The text of every `message.completed`, joined with newlines.
    pub(crate) fn final_text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                RunEventKind::MessageCompleted(m) => Some(m.text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The workspace `run.started` named.
    pub(crate) fn workspace(&self) -> PathBuf {
        self.events
            .iter()
            .find_map(|e| match &e.kind {
                RunEventKind::RunStarted(started) => started.workspace.clone(),
                _ => None,
            })
            .map(PathBuf::from)
            .expect("run.started names the workspace")
    }

    /// Every `file.changed` as `(path, change)`, in order.
    pub(crate) fn file_changes(&self) -> Vec<(String, FileChangeKind)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                RunEventKind::FileChanged(changed) => Some((changed.path.clone(), changed.change)),
                _ => None,
            })
            .collect()
    }

    /// Every event as JSON, one per line (for secret scans and failure messages).
    pub(crate) fn json(&self) -> String {
        self.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(crate) struct ProviderHarness {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) log: EventLog,
    pub(crate) executor_id: ExecutorId,
    /// The executor's standalone HTTP API.
    pub(crate) http: SocketAddr,
    pub(crate) fake: FakeModel,
    /// `<workspace_root>` of the executor (a temporary directory).
    pub(crate) workspace_root: PathBuf,
    /// The credential values of the env file, by name.
    pub(crate) secrets: Vec<(String, String)>,
    shutdown: CancellationToken,
    handle: Option<ServiceHandle>,
    _dir: tempfile::TempDir,
    // Dropped last: kills the server.
    _nats: NatsServer,
}

impl ProviderHarness {
    pub(crate) async fn start() -> ProviderHarness {
        Self::start_with(|_| {}).await
    }

    /// Starts nats-server, the fake model and an executor offering every provider, with
    /// the pinned CLIs on its search path, credentials only from its env file (fake
    /// keys named [`CREDENTIAL_NAMES`]), each CLI provider allowed its vendor's key and
    /// [`UNSET_CREDENTIAL`] and pointed at the fake model, short liveness limits and a
    /// run directory under a temporary root; `adjust` may change the settings before the
    /// start.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut ExecutorSettings)) -> ProviderHarness {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.expect("start nats-server");
        let fake = FakeModel::start().await.expect("start the fake model");
        let dir = tempfile::tempdir().unwrap();
        let workspace_root = dir.path().join("runs");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let secrets: Vec<(String, String)> = CREDENTIAL_NAMES
            .iter()
            .map(|name| {
                let value = format!(
                    "sk-test-{}-{}",
                    name.to_lowercase().replace('_', ""),
                    &suffix[..12]
                );
                ((*name).to_owned(), value)
            })
            .collect();
        let env_file = dir.path().join("provider-env");
        let lines: Vec<String> = secrets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        std::fs::write(&env_file, lines.join("\n") + "\n").unwrap();
        // The executor refuses an env file the agents (another user) could read.
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();

        let executor_id: ExecutorId = format!("exec-prov-{}", &suffix[..8]).parse().unwrap();
        let mut settings = ExecutorSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            executor_id: Some(executor_id.clone()),
            workspace_root: workspace_root.clone(),
            heartbeat_ms: 500,
            stop_grace_ms: 8_000,
            cli_search_path: vec![installed_bin_dir()],
            credentials_env_file: Some(env_file),
            credentials_from_environment: false,
            credentials: [
                ("codex-app-server", "OPENAI_API_KEY", fake.openai_url()),
                ("claude-code", "ANTHROPIC_API_KEY", fake.url()),
                ("opencode", "OPENAI_API_KEY", fake.openai_url()),
            ]
            .into_iter()
            .map(|(provider, key, base_url)| {
                let table = ProviderCredentialSettings {
                    env: Some(vec![key.to_owned(), UNSET_CREDENTIAL.to_owned()]),
                    base_url: Some(base_url),
                };
                (provider.to_owned(), table)
            })
            .collect(),
            liveness: LivenessSettings {
                handshake_ms: 60_000,
                first_output_ms: 30_000,
                inactivity_ms: 30_000,
                unreachable_ms: 10_000,
            },
            workspace_cleanup: WorkspaceCleanup::Keep,
            ..ExecutorSettings::default()
        };
        adjust(&mut settings);
        let config = Config {
            nats: NatsConfig {
                url: nats.url(),
                ..Default::default()
            },
            executor: settings,
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let handle = switchyard_executor::start(config, shutdown.clone())
            .await
            .expect("start the executor");
        let http = handle.http_addr.expect("the executor serves HTTP");
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let log = EventLog::open(js.clone()).await.unwrap();
        ProviderHarness {
            client,
            js,
            log,
            executor_id,
            http,
            fake,
            workspace_root,
            secrets,
            shutdown,
            handle: Some(handle),
            _dir: dir,
            _nats: nats,
        }
    }

    /// The fake key the env file holds for `name`.
    pub(crate) fn secret(&self, name: &str) -> &str {
        self.secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no credential {name} in the harness"))
    }

    /// Panics when any credential value of the env file appears in `text`.
    pub(crate) fn assert_no_secret_in(&self, what: &str, text: &str) {
        for (name, value) in &self.secrets {
            assert!(
                !text.contains(value.as_str()),
                "the value of {name} leaked into {what}"
            );
        }
    }

    /// Cancels the shutdown token and waits for a clean stop.
    pub(crate) async fn shutdown(&mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("not shut down yet");
        tokio::time::timeout(WAIT, handle.wait())
            .await
            .expect("executor shut down in time")
            .expect("executor shut down cleanly");
    }

    /// Dispatches the run the way an executor-manager worker does; returns the reply.
    pub(crate) async fn dispatch_reply(&self, spec: &RunSpec, run_id: RunId) -> DispatchReply {
        let request = DispatchRequest {
            command: spec.command(run_id),
            timeout_ms: spec.timeout_ms,
            worker_id: "provider-tests".parse().unwrap(),
            position: EventPosition::EMPTY,
        };
        let reply = self
            .client
            .request(
                subjects::executor_dispatch(&self.executor_id),
                serde_json::to_vec(&request).unwrap().into(),
            )
            .await
            .expect("the executor answers dispatch requests");
        serde_json::from_slice(&reply.payload).expect("a dispatch reply")
    }

    /// Dispatches the run and asserts that the executor accepted it.
    pub(crate) async fn dispatch(&self, spec: &RunSpec) -> RunId {
        let run_id = RunId::now_v7();
        let reply = self.dispatch_reply(spec, run_id).await;
        assert_eq!(reply.outcome, DispatchOutcome::Accepted, "{reply:?}");
        run_id
    }

    /// Dispatches and drives the run to its end, answering every human-loop request
    /// with `decide(request)`.
    pub(crate) async fn run(
        &self,
        spec: &RunSpec,
        decide: impl FnMut(&HumanLoopRequested) -> HumanLoopDecision,
    ) -> Finished {
        let run_id = self.dispatch(spec).await;
        self.drive(run_id, decide).await
    }

    /// Dispatches and drives a run that asks nobody (a request is denied).
    pub(crate) async fn run_simple(&self, spec: &RunSpec) -> Finished {
        self.run(spec, |_| HumanLoopDecision::Deny).await
    }

    /// Reads the run's events until `run.completed`, answering each human-loop request
    /// with `decide(request)` as it appears.
    pub(crate) async fn drive(
        &self,
        run_id: RunId,
        mut decide: impl FnMut(&HumanLoopRequested) -> HumanLoopDecision,
    ) -> Finished {
        self.drive_with(run_id, |request| (decide(request), None))
            .await
    }

    /// [`drive`](Self::drive), answering each request with a decision and a message.
    pub(crate) async fn drive_with(
        &self,
        run_id: RunId,
        mut answer: impl FnMut(&HumanLoopRequested) -> (HumanLoopDecision, Option<String>),
    ) -> Finished {
        let mut events = Vec::new();
        let mut asked = Vec::new();
        let read = async {
            let mut tail = Box::pin(self.log.tail(run_id, 0).await.unwrap());
            while let Some(stored) = tail.next().await {
                let event = stored.unwrap().decode().unwrap();
                let terminal = event.is_terminal();
                if let RunEventKind::HumanLoopRequested(request) = &event.kind {
                    let (decision, message) = answer(request);
                    let reply = self
                        .control(
                            run_id,
                            &ControlRequest::HumanLoopReply {
                                request_id: Some(request.request_id.clone()),
                                decision,
                                message,
                            },
                        )
                        .await;
                    assert_eq!(reply.outcome, ControlOutcome::Accepted, "{reply:?}");
                    asked.push(request.clone());
                }
                events.push(event);
                if terminal {
                    return;
                }
            }
            panic!("the event tail of {run_id} ended");
        };
        if tokio::time::timeout(WAIT * 2, read).await.is_err() {
            panic!(
                "run {run_id} did not complete in time; events so far: {:?}",
                events
                    .iter()
                    .map(|e: &RunEvent| e.kind.type_name())
                    .collect::<Vec<_>>()
            );
        }
        Finished {
            run_id,
            events,
            asked,
        }
    }

    /// Reads the run's events from the start until `matches` says stop; returns that event.
    pub(crate) async fn wait_for_event(
        &self,
        run_id: RunId,
        mut matches: impl FnMut(&RunEvent) -> bool,
    ) -> RunEvent {
        let read = async {
            let mut tail = Box::pin(self.log.tail(run_id, 0).await.unwrap());
            while let Some(stored) = tail.next().await {
                let event = stored.unwrap().decode().unwrap();
                if matches(&event) {
                    return event;
                }
            }
            panic!("the event tail of {run_id} ended");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for an event of run {run_id}"))
    }

    /// Every event of the run up to and including `run.completed` (no answers given).
    pub(crate) async fn events_until_terminal(&self, run_id: RunId) -> Vec<RunEvent> {
        let mut events = Vec::new();
        self.wait_for_event(run_id, |event| {
            events.push(event.clone());
            event.is_terminal()
        })
        .await;
        events
    }

    /// Answers a human-loop request (the oldest pending one without an id).
    pub(crate) async fn reply(
        &self,
        run_id: RunId,
        request_id: Option<HumanLoopRequestId>,
        decision: HumanLoopDecision,
    ) -> ControlReply {
        self.control(
            run_id,
            &ControlRequest::HumanLoopReply {
                request_id,
                decision,
                message: None,
            },
        )
        .await
    }

    /// Sends a stop request.
    pub(crate) async fn stop(&self, run_id: RunId) -> ControlReply {
        self.control(
            run_id,
            &ControlRequest::Stop {
                reason: Some("test".to_owned()),
            },
        )
        .await
    }

    pub(crate) async fn control(&self, run_id: RunId, request: &ControlRequest) -> ControlReply {
        let reply = self
            .client
            .request(
                subjects::run_control(&run_id),
                serde_json::to_vec(request).unwrap().into(),
            )
            .await
            .expect("the owning executor answers control requests");
        serde_json::from_slice(&reply.payload).expect("a control reply")
    }

    /// The executor's presence record.
    pub(crate) async fn presence(&self) -> ExecutorPresence {
        let kv = self
            .js
            .get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .unwrap();
        let bytes = kv
            .get(self.executor_id.as_str())
            .await
            .unwrap()
            .expect("the executor has a presence record");
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every process whose command line mentions `needle` (e.g. a run's workspace path),
    /// not counting zombies: what a stop must leave behind is nothing.
    pub(crate) fn processes_mentioning(&self, needle: &str) -> Vec<u32> {
        processes_mentioning(needle)
    }
}

impl Drop for ProviderHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Live (non-zombie) processes whose command line or working directory mentions `needle`.
pub(crate) fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if (cmdline.contains(needle) || cwd.contains(needle))
            && switchyard_executor::test_support::process_alive(pid)
        {
            found.push(pid);
        }
    }
    found
}

/// Waits (bounded) until no live process mentions `needle`; returns the survivors.
pub(crate) async fn wait_no_process_mentioning(needle: &str, within: Duration) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
