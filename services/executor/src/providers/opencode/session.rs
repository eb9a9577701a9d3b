//! The driver of one opencode run: start `opencode serve` on a loopback port with a
//! random password and the run's own HOME / XDG dirs, wait for it to answer, subscribe
//! to its events, create (or continue) the session, prompt it, and follow the event
//! stream until the session goes idle — answering permission requests through the
//! human loop, enforcing liveness and the retry budget, aborting on stop, and
//! re-subscribing (with what was missed read back from the REST API, see `recover.rs`)
//! when the stream breaks mid-turn while the server lives on. This file starts the
//! server and the session; following the turn is in `turn.rs`.
//!
//! The server lives for one run; the session survives in the state directory's
//! database, so a follow-up run of the conversation prompts the same session in a new
//! server. `opencode serve` ends at SIGINT (unlike `opencode run`, which ignores it),
//! so the staged termination after the turn is quick.

use super::api::{self, ApiError, EventReader, SERVER_USERNAME, ServerApi, StreamItem};
use super::options::OpencodeOptions;
use super::recover;
use super::translate::{self, PermissionAsk, RetryNotice, Step, Translator, Verdict};
use crate::cli::{
    CliCommand, CliEnv, CliProcess, Credentials, Liveness, LivenessFailure, StateFiles,
};
use crate::human_loop::HumanLoopAnswer;
use crate::provider::{ProviderOutcome, RunContext};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::event::{Diagnostic, DiagnosticLevel, Evidence};
use switchyard_contracts::{FailureReason, ProviderName, RunEventKind};
use tokio::time::Instant;
use tracing::Instrument as _;

mod turn;

/// The CLI's program name.
pub(crate) const PROGRAM: &str = "opencode";

/// How often the server's health is polled until it answers.
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// How long an abort (sent on a failure we detected) may take to show as idle.
const ABORT_SETTLE: Duration = Duration::from_secs(2);
/// Bound on the abort request itself.
const ABORT_REQUEST: Duration = Duration::from_secs(3);
/// How long the exit code is waited for once the server closed its stdout.
const EXIT_WAIT: Duration = Duration::from_secs(3);
/// Raw protocol lines kept as evidence.
const RAW_LINES: usize = 20;
/// Longest raw line kept as evidence.
const RAW_LINE_BYTES: usize = 2000;

/// Runs one opencode turn.
pub(crate) async fn run(env: Arc<CliEnv>, ctx: RunContext) -> ProviderOutcome {
    let span = tracing::info_span!("opencode", run_id = %ctx.events.run_id());
    drive(&env, &ctx).instrument(span).await
}

/// How a run ended, before evidence is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Succeeded,
    Stopped,
    Failed {
        reason: FailureReason,
        detail: String,
    },
}

impl End {
    fn failed(reason: FailureReason, detail: impl Into<String>) -> Self {
        End::Failed {
            reason,
            detail: detail.into(),
        }
    }
}

async fn drive(env: &CliEnv, ctx: &RunContext) -> ProviderOutcome {
    if ctx.stop.is_cancelled() {
        return ProviderOutcome::Stopped;
    }
    let policy = env.policy(ProviderName::Opencode);
    let options = match OpencodeOptions::from_command(&ctx.command, &policy) {
        Ok(options) => options,
        Err(detail) => return ProviderOutcome::failed(FailureReason::ProviderError, detail),
    };
    let (program, credentials) =
        match env.preflight(ProviderName::Opencode, PROGRAM, &options.credential_env) {
            Ok(ready) => (ready.program, ready.credentials),
            Err(outcome) => return outcome,
        };
    let dirs = StateDirs::under(&ctx.dirs.state);
    let config = options.config_json();
    if let Err(error) = dirs.prepare(&env.state_files(&ctx.dirs), &config).await {
        return ProviderOutcome::failed(
            FailureReason::ProviderCrashed,
            format!("cannot prepare opencode's state directory: {error}"),
        );
    }
    let port = match free_port() {
        Ok(port) => port,
        Err(error) => {
            return ProviderOutcome::failed(
                FailureReason::ProviderCrashed,
                format!("no free loopback port for the opencode server: {error}"),
            );
        }
    };
    let password = random_password();
    let api = match ServerApi::new(port, password.clone()) {
        Ok(api) => api,
        Err(error) => {
            return ProviderOutcome::failed(FailureReason::ProviderCrashed, error.to_string());
        }
    };
    let mut child_env = dirs.env();
    // The same config again, inline: opencode merges it over every file it reads
    // (including `~/.opencode/`, which is the state directory an earlier turn's agent
    // could write to), so the endpoint, key and model are ours whatever those say.
    child_env.push(("OPENCODE_CONFIG_CONTENT".to_owned(), config.to_string()));
    child_env.extend(
        [
            ("OPENCODE_SERVER_USERNAME", SERVER_USERNAME),
            ("OPENCODE_SERVER_PASSWORD", password.as_str()),
            ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_DISABLE_SHARE", "1"),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
            // An `opencode.json` or `.opencode/` in the workspace (an earlier turn's
            // agent can write one) is not read at all: its providers, plugins and MCP
            // servers are not the operator's.
            ("OPENCODE_DISABLE_PROJECT_CONFIG", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    child_env.extend(
        credentials
            .iter()
            .map(|(name, value)| (name.clone(), value.expose_secret().to_owned())),
    );
    let command = CliCommand {
        program,
        args: vec![
            "serve".into(),
            "--port".into(),
            port.to_string(),
            "--hostname".into(),
            "127.0.0.1".into(),
        ],
        env: child_env,
        cwd: ctx.dirs.workspace.clone(),
        stdin_piped: false,
    };
    let liveness = Liveness::new(env.liveness, &ctx.command.provider_options);
    let process = match env.spawn(command, &ctx.dirs).await {
        Ok(process) => process,
        Err(error) => return env.spawn_failure(PROGRAM, error),
    };
    tracing::info!(port, pid = process.pid(), "opencode server started");
    let mut server = Server {
        env,
        ctx,
        options,
        api,
        process,
        liveness,
        raw: RawLines::new(env.credentials.clone(), password),
        exit_code: None,
    };
    let end = server.session().await;
    if end == End::Stopped {
        // Left before the signals too: the supervisor may abort us meanwhile.
        ctx.report_evidence(server.evidence());
    }
    server.process.terminate(env.stop_grace).await;
    match &end {
        End::Failed { reason, .. } => {
            tracing::info!(reason = reason.as_str(), "opencode run failed");
        }
        end => tracing::info!(outcome = ?end, "opencode run ended"),
    }
    match end {
        End::Succeeded => ProviderOutcome::Succeeded,
        End::Stopped => {
            if server.exit_code.is_none() {
                server.exit_code = server.process.try_wait().flatten();
            }
            ctx.report_evidence(server.evidence());
            ProviderOutcome::Stopped
        }
        End::Failed { reason, detail } => ProviderOutcome::Failed {
            reason,
            detail: server.raw.redact(&detail),
            evidence: server.evidence(),
        },
    }
}

/// Why a guarded wait ended early.
enum Halt {
    Stop,
    Expired(LivenessFailure),
    /// The server exited (its exit code, when it had one).
    Exited(Option<i32>),
}

/// Why a subscription to the event stream did not become live.
#[derive(Debug, thiserror::Error)]
enum SubscribeFailure {
    #[error(transparent)]
    Api(ApiError),
    #[error("the stream ended before the server confirmed it{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("the server did not confirm the subscription in time")]
    TimedOut,
}

/// `work`, unless `deadline` passes first (`None`).
async fn within<T>(deadline: Option<Instant>, work: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    }
}

/// The detail of an event stream that ended (with its error, if it broke).
fn broken_stream(error: Option<&str>) -> String {
    match error {
        Some(error) => format!("opencode's event stream broke: {error}"),
        None => "opencode's event stream ended".to_owned(),
    }
}

/// "with code N", or "by a signal".
fn how_exited(code: Option<i32>) -> String {
    code.map_or_else(|| "by a signal".to_owned(), |c| format!("with code {c}"))
}

/// Waits for `work` while watching the stop token, the liveness limits and the server
/// process (draining its stdout into the evidence).
async fn guard<T>(
    process: &mut CliProcess,
    liveness: &Liveness,
    stop: &tokio_util::sync::CancellationToken,
    raw: &mut RawLines,
    work: impl Future<Output = T>,
) -> Result<T, Halt> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(Halt::Stop),
            failure = liveness.expired() => return Err(Halt::Expired(failure)),
            line = process.next_line() => match line {
                Some(line) => raw.push("stdout", &line),
                None => return Err(Halt::Exited(exit_code(process).await)),
            },
            out = &mut work => return Ok(out),
        }
    }
}

/// The exit code once stdout closed (bounded: a server that closed stdout but lives
/// on is ended by the caller).
async fn exit_code(process: &mut CliProcess) -> Option<i32> {
    tokio::time::timeout(EXIT_WAIT, process.wait())
        .await
        .ok()
        .flatten()
}

/// One server and its run.
struct Server<'a> {
    env: &'a CliEnv,
    ctx: &'a RunContext,
    options: OpencodeOptions,
    api: ServerApi,
    process: CliProcess,
    liveness: Liveness,
    raw: RawLines,
    exit_code: Option<i32>,
}

impl Server<'_> {
    /// The stderr tail and the last raw lines (both redacted), and the exit code.
    fn evidence(&self) -> Evidence {
        Evidence {
            stderr_tail: self
                .process
                .stderr_tail()
                .iter()
                .map(|line| self.raw.redact(line))
                .collect(),
            raw_lines: self.raw.lines(),
            exit_code: self.exit_code,
        }
    }

    /// Awaits `work` under [`guard`].
    async fn watch<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Halt> {
        guard(
            &mut self.process,
            &self.liveness,
            &self.ctx.stop,
            &mut self.raw,
            work,
        )
        .await
    }

    /// Awaits `work` under [`guard`]; an early end becomes the run's end.
    async fn guarded<T>(&mut self, during: &str, work: impl Future<Output = T>) -> Result<T, End> {
        match self.watch(work).await {
            Ok(out) => Ok(out),
            Err(halt) => Err(self.halted(halt, during, false)),
        }
    }

    fn halted(&mut self, halt: Halt, during: &str, model_called: bool) -> End {
        match halt {
            Halt::Stop => End::Stopped,
            Halt::Expired(failure) => self.expired(failure, model_called),
            Halt::Exited(code) => {
                self.exit_code = code;
                End::failed(
                    FailureReason::ProviderCrashed,
                    format!("the opencode server exited {} {during}", how_exited(code)),
                )
            }
        }
    }

    /// A liveness limit ran out. No output while a model request is under way means the
    /// model API never answered: `provider_no_output`, as on every provider.
    fn expired(&self, failure: LivenessFailure, model_called: bool) -> End {
        let detail = self.liveness.describe(failure);
        match failure {
            LivenessFailure::FirstOutput if model_called => End::failed(
                failure.reason(),
                format!("the model API did not answer: {detail}"),
            ),
            failure => End::failed(failure.reason(), detail),
        }
    }

    /// Handshake, session, prompt, turn.
    async fn session(&mut self) -> End {
        let api = self.api.clone();
        let health = async {
            while !api.healthy().await {
                tokio::time::sleep(HEALTH_POLL).await;
            }
        };
        if let Err(end) = self.guarded("before answering", health).await {
            return end;
        }
        tracing::debug!("opencode server answers");

        let mut events = match self.subscribe(None).await {
            Ok(Ok(events)) => events,
            Ok(Err(SubscribeFailure::Api(error))) => {
                return self.api_failed("subscribing to its events", error);
            }
            Ok(Err(SubscribeFailure::Closed(error))) => return self.stream_closed(error).await,
            Ok(Err(failure @ SubscribeFailure::TimedOut)) => {
                return self
                    .server_gone(format!("opencode's event stream: {failure}"))
                    .await;
            }
            Err(halt) => return self.halted(halt, "while subscribing", false),
        };

        let session_id = match self.open_session(&api).await {
            Ok(id) => id,
            Err(end) => return end,
        };
        self.ctx.set_session_id(session_id.clone());
        tracing::info!(session_id = %session_id, "prompting the opencode session");
        // Taken before the prompt, so that every message of the turn is newer.
        let since_ms = recover::now_ms();
        let model = self.options.model.clone();
        let prompt = api.prompt_async(&session_id, &self.ctx.command.prompt, model.as_ref());
        match self.guarded("while prompting", prompt).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return self.api_failed("prompting the session", error),
            Err(end) => return end,
        }
        // The handshake ends with the prompt accepted: the first-output limit measures
        // the model, not the server's start-up (slow on a loaded machine).
        self.liveness.handshake_done();
        self.turn(&mut events, &session_id, since_ms).await
    }

    /// Opens the event stream and waits until it is live: the server says so with
    /// `server.connected`, and prompting (or reading a snapshot) before that could miss
    /// events. `deadline` bounds it (a re-subscription must not hang the turn).
    async fn subscribe(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Result<EventReader, SubscribeFailure>, Halt> {
        let api = self.api.clone();
        let mut events = match self.watch(within(deadline, api.events())).await? {
            Some(Ok(events)) => events,
            Some(Err(error)) => return Ok(Err(SubscribeFailure::Api(error))),
            None => return Ok(Err(SubscribeFailure::TimedOut)),
        };
        loop {
            match self.watch(within(deadline, events.next())).await? {
                Some(StreamItem::Event { raw, event }) => {
                    if !is_noise(&event) {
                        self.raw.push("sse", &raw);
                    }
                    if event.get("type").and_then(Value::as_str) == Some("server.connected") {
                        return Ok(Ok(events));
                    }
                }
                Some(StreamItem::Garbage(raw)) => self.raw.push("sse", &raw),
                Some(StreamItem::Closed(error)) => return Ok(Err(SubscribeFailure::Closed(error))),
                None => return Ok(Err(SubscribeFailure::TimedOut)),
            }
        }
    }

    /// The session to prompt: the conversation's, if the server still has it, else a
    /// fresh one in the same workspace.
    async fn open_session(&mut self, api: &ServerApi) -> Result<String, End> {
        let previous = self
            .ctx
            .conversation
            .as_ref()
            .and_then(|conversation| conversation.session_id.clone());
        if let Some(previous) = previous {
            let found = if api::is_plain_id(&previous) {
                self.guarded(
                    "while looking up the session",
                    api.session_exists(&previous),
                )
                .await?
            } else {
                Ok(false)
            };
            match found {
                Ok(true) => {
                    tracing::info!(session_id = %previous, "continuing the conversation's opencode session");
                    return Ok(previous);
                }
                Ok(false) => {
                    self.diagnostic(
                        DiagnosticLevel::Warn,
                        format!(
                            "the conversation's opencode session {} is gone; starting a fresh session in the same workspace",
                            api::shorten(&previous, 80)
                        ),
                    )
                    .await;
                }
                Err(error) => {
                    self.diagnostic(
                        DiagnosticLevel::Warn,
                        format!(
                            "cannot look up the conversation's opencode session ({}); starting a fresh session in the same workspace",
                            self.raw.redact(&error.to_string())
                        ),
                    )
                    .await;
                }
            }
        }
        let title = format!("Switchyard run {}", self.ctx.events.run_id());
        match self
            .guarded("while creating a session", api.create_session(&title))
            .await?
        {
            Ok(id) => Ok(id),
            Err(error) => Err(self.api_failed("creating a session", error)),
        }
    }

    /// A failed API call: a refusal is the provider's error, anything else means the
    /// server is not working.
    fn api_failed(&mut self, what: &str, error: ApiError) -> End {
        let reason = match error {
            ApiError::Status { .. } | ApiError::Decode { .. } => FailureReason::ProviderError,
            ApiError::Http(_) | ApiError::InvalidId(_) => FailureReason::ProviderCrashed,
        };
        End::failed(reason, format!("{what}: {error}"))
    }

    /// The event stream ended before the turn: the server is going away (or broke the
    /// stream).
    async fn stream_closed(&mut self, error: Option<String>) -> End {
        self.server_gone(broken_stream(error.as_deref())).await
    }

    /// The run's end once the event stream is gone for good: `provider_crashed`, with
    /// the server's exit code if it exits within [`EXIT_WAIT`].
    async fn server_gone(&mut self, detail: String) -> End {
        match tokio::time::timeout(EXIT_WAIT, self.process.wait()).await {
            Ok(code) => {
                self.exit_code = code;
                End::failed(
                    FailureReason::ProviderCrashed,
                    format!("{detail}; the server exited {}", how_exited(code)),
                )
            }
            Err(_) => End::failed(FailureReason::ProviderCrashed, detail),
        }
    }

    async fn diagnostic(&self, level: DiagnosticLevel, message: String) {
        let event = RunEventKind::Diagnostic(Diagnostic {
            level,
            message,
            raw: None,
        });
        if let Err(error) = self.ctx.events.emit(event).await {
            tracing::debug!(%error, "diagnostic not published");
        }
    }

    /// Asks opencode to abort the turn (bounded; a failure only means the signals will
    /// do it).
    async fn abort(&self, session_id: &str) {
        let bound = ABORT_REQUEST.min(self.env.stop_grace);
        match tokio::time::timeout(bound, self.api.abort(session_id)).await {
            Ok(Ok(())) => tracing::debug!("opencode session aborted"),
            Ok(Err(error)) => tracing::warn!(%error, "could not abort the opencode session"),
            Err(_) => tracing::warn!("the opencode abort request did not answer"),
        }
    }
}

/// Server housekeeping events (dozens at start-up) that would crowd the evidence.
fn is_noise(event: &Value) -> bool {
    matches!(
        event.get("type").and_then(Value::as_str),
        Some(
            "plugin.added"
                | "catalog.updated"
                | "reference.updated"
                | "integration.updated"
                | "server.heartbeat"
                | "session.diff"
                | "session.updated"
        )
    )
}

/// The last raw lines (SSE payloads, stdout), redacted, for evidence.
struct RawLines {
    lines: VecDeque<String>,
    credentials: Credentials,
    /// The server's password: not a credential the executor knows, redacted here.
    password: String,
}

impl RawLines {
    fn new(credentials: Credentials, password: String) -> Self {
        Self {
            lines: VecDeque::with_capacity(RAW_LINES),
            credentials,
            password,
        }
    }

    fn redact(&self, text: &str) -> String {
        self.credentials
            .redact(text)
            .replace(self.password.as_str(), "[redacted]")
    }

    /// Redacts every string of `value` in place; whether anything changed.
    fn redact_value(&self, value: &mut Value) -> bool {
        match value {
            Value::String(text) => {
                let redacted = self.redact(text);
                let changed = redacted != *text;
                *text = redacted;
                changed
            }
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    // Every item, not just up to the first change.
                    changed |= self.redact_value(item);
                }
                changed
            }
            Value::Object(fields) => {
                let mut changed = false;
                for item in fields.values_mut() {
                    changed |= self.redact_value(item);
                }
                changed
            }
            _ => false,
        }
    }

    /// The event with credential values replaced in all its text (a command the agent
    /// ran may well print its environment).
    fn redact_event(&self, kind: RunEventKind) -> RunEventKind {
        let type_name = kind.type_name();
        let withheld = || {
            RunEventKind::Diagnostic(Diagnostic {
                level: DiagnosticLevel::Warn,
                message: format!("a {type_name} event held a credential and was withheld"),
                raw: None,
            })
        };
        let mut value = match serde_json::to_value(&kind) {
            Ok(value) => value,
            Err(error) => {
                // Unchecked, it may hold a credential: withheld rather than passed on.
                tracing::error!(%error, event = type_name, "cannot encode an event to redact it; withholding it");
                switchyard_platform::metrics::serialization_failed();
                return withheld();
            }
        };
        if !self.redact_value(&mut value) {
            return kind;
        }
        serde_json::from_value(value).unwrap_or_else(|_| withheld())
    }

    fn push(&mut self, source: &str, line: &str) {
        let line = self.redact(&api::shorten(line, RAW_LINE_BYTES));
        if self.lines.len() == RAW_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(format!("{source}: {line}"));
    }

    fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// The files of opencode's global config directory that it reads besides
/// `opencode.json` (and merges over it).
const OTHER_GLOBAL_CONFIG_FILES: &[&str] = &["opencode.jsonc", "config.json"];

/// opencode's HOME and XDG directories inside the run's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StateDirs {
    home: PathBuf,
    config: PathBuf,
    data: PathBuf,
    cache: PathBuf,
    state: PathBuf,
}

impl StateDirs {
    fn under(state: &Path) -> Self {
        Self {
            home: state.to_path_buf(),
            config: state.join(".config"),
            data: state.join(".local/share"),
            cache: state.join(".cache"),
            state: state.join(".local/state"),
        }
    }

    /// Creates the directories and writes the run's `opencode.json` (replacing the
    /// previous run's: each run brings its own model API and permissions), through
    /// `files`, the state directory these directories are in. The other files opencode
    /// would merge over it are removed: the directory lives as long as the conversation,
    /// and an earlier turn's agent could have written one.
    async fn prepare(&self, files: &StateFiles, config: &Value) -> std::io::Result<()> {
        let below = |dir: &Path| dir.strip_prefix(files.root()).map(Path::to_path_buf);
        for dir in [&self.data, &self.cache, &self.state] {
            let relative = below(dir).map_err(std::io::Error::other)?;
            files.create_dir(relative).await?;
        }
        let config_dir = below(&self.config)
            .map_err(std::io::Error::other)?
            .join("opencode");
        for other in OTHER_GLOBAL_CONFIG_FILES {
            files.remove(config_dir.join(other)).await?;
        }
        let text = serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?;
        files.write(config_dir.join("opencode.json"), text).await
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("HOME", &self.home),
            ("XDG_CONFIG_HOME", &self.config),
            ("XDG_DATA_HOME", &self.data),
            ("XDG_CACHE_HOME", &self.cache),
            ("XDG_STATE_HOME", &self.state),
        ]
        .into_iter()
        .map(|(name, dir)| (name.to_owned(), dir.display().to_string()))
        .collect()
    }
}

/// A loopback port nobody listens on right now (the server binds it a moment later).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The server's basic-auth password: two v4 UUIDs, 244 random bits. Every local
/// process (another run's agent included) can reach the loopback port; only the
/// adapter knows this.
fn random_password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_state_directory_gets_xdg_dirs_and_the_config() {
        let root = tempfile::tempdir().unwrap();
        let dirs = StateDirs::under(root.path());
        dirs.prepare(
            &StateFiles::new(root.path(), None),
            &serde_json::json!({"model": "a/b"}),
        )
        .await
        .unwrap();
        let written =
            std::fs::read_to_string(root.path().join(".config/opencode/opencode.json")).unwrap();
        assert!(written.contains("\"a/b\""));
        let env = dirs.env();
        assert!(env.contains(&("HOME".into(), root.path().display().to_string())));
        assert!(
            env.iter()
                .any(|(k, v)| k == "XDG_DATA_HOME" && v.ends_with(".local/share"))
        );
        assert!(root.path().join(".local/state").is_dir());
    }

    #[test]
    fn raw_lines_are_bounded_and_redacted() {
        let credentials = Credentials::from_pairs([("OPENAI_API_KEY", "sk-live-abcdef123456")]);
        let mut raw = RawLines::new(credentials, "pw-0123456789abcdef".into());
        for i in 0..30 {
            raw.push(
                "sse",
                &format!("{i} key sk-live-abcdef123456 pw-0123456789abcdef"),
            );
        }
        let lines = raw.lines();
        assert_eq!(lines.len(), RAW_LINES);
        assert!(lines[0].starts_with("sse: 10 "), "{}", lines[0]);
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("sk-live") && !l.contains("pw-0123"))
        );
        assert_ne!(random_password(), random_password());
        let event = RunEventKind::ToolOutput(switchyard_contracts::event::ToolOutput {
            call_id: "call_1".into(),
            output: "MODEL_API_KEY=sk-live-abcdef123456\n".into(),
        });
        let redacted = serde_json::to_string(&raw.redact_event(event)).unwrap();
        assert!(redacted.contains("MODEL_API_KEY=[redacted]"), "{redacted}");
        assert_eq!(random_password().len(), 64);
    }
}
