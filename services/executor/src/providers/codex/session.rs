//! The driver of one run: spawns `codex app-server`, performs the handshake
//! (`initialize` → `initialized` → `thread/start` or `thread/resume` → `turn/start`),
//! translates the stream into events, answers approval requests from the human loop,
//! enforces liveness, and ends the run at `turn/completed`, at the process's exit, at a
//! liveness limit or at a stop (`turn/interrupt`, then the signals).
//!
//! Reading never stops while a human is asked: the questions run as futures beside the
//! reader, so a stop, the process's death or further notifications are noticed at once.

use super::failure;
use super::home;
use super::noise;
use super::options::CodexOptions;
use super::protocol::{
    self, CommandApproval, FileChangeApproval, Incoming, METHOD_NOT_FOUND, ThreadResult,
    TurnEnvelope, TurnStatus, server_requests,
};
use super::translate::{ApiContact, Translator};
use crate::cli::{CliCommand, CliEnv, CliProcess, Liveness, LivenessFailure};
use crate::provider::{ProviderOutcome, RunContext};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::event::{
    Diagnostic, DiagnosticLevel, Evidence, FileChanged, HumanLoopKind, MessageCompleted,
    MessageDelta, ReasoningDelta, ToolOutput, ToolStarted,
};
use switchyard_contracts::{FailureReason, ProviderName, RunEventKind};

/// The executable looked up on the search path.
pub(crate) const PROGRAM: &str = "codex";
/// Raw protocol lines kept as evidence.
const RAW_LINES: usize = 20;
/// Longest raw line kept as evidence (a line can carry a whole command output).
const RAW_LINE_CHARS: usize = 2_000;
/// How long a finished app-server gets to exit by itself once its stdin is closed.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// `codex app-server` and the switches that keep it offline and quiet.
pub(crate) fn app_server_args() -> Vec<String> {
    [
        "app-server",
        "--disable",
        "plugins",
        "--disable",
        "apps",
        "-c",
        "analytics.enabled=false",
        "-c",
        "check_for_update_on_startup=false",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs one run to its end.
pub(crate) async fn run(env: Arc<CliEnv>, ctx: RunContext) -> ProviderOutcome {
    let policy = env.policy(ProviderName::CodexAppServer);
    let mut options = match CodexOptions::from_command(&ctx.command, &policy) {
        Ok(options) => options,
        Err(invalid) => {
            return ProviderOutcome::failed(FailureReason::ProviderError, invalid.to_string());
        }
    };
    let limits = env.liveness.with_overrides(&ctx.command.provider_options);
    let stream_bound = [limits.first_output, limits.inactivity]
        .into_iter()
        .filter(|limit| !limit.is_zero())
        .min();
    options.fit_stream_idle_timeout(&ctx.command.provider_options, stream_bound);
    let (program, credentials) = match env.preflight(
        ProviderName::CodexAppServer,
        PROGRAM,
        &options.credential_env,
    ) {
        Ok(ready) => (ready.program, ready.credentials),
        Err(outcome) => return outcome,
    };
    let codex_home = home::codex_home(&ctx.dirs.state);
    if let Err(error) = home::prepare(&env.state_files(&ctx.dirs), &options).await {
        return ProviderOutcome::failed(
            FailureReason::ProviderError,
            format!("cannot write {}: {error}", codex_home.display()),
        );
    }
    let mut child_env = vec![
        ("CODEX_HOME".to_owned(), codex_home.display().to_string()),
        // Plain stderr: it becomes evidence, not terminal output.
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    child_env.extend(
        credentials
            .iter()
            .map(|(name, value)| (name.clone(), value.expose_secret().to_owned())),
    );
    let command = CliCommand {
        program,
        args: app_server_args(),
        env: child_env,
        cwd: ctx.workspace.clone(),
        stdin_piped: true,
    };
    let process = match env.spawn(command, &ctx.dirs).await {
        Ok(process) => process,
        Err(error) => return env.spawn_failure(PROGRAM, error),
    };
    tracing::info!(run_id = %ctx.command.run_id, pid = process.pid(), "codex app-server started");
    if let Some(pid) = process.pid() {
        // The pid lets an operator (and the tests) check that a stop left nothing behind.
        let _ = ctx
            .events
            .emit(RunEventKind::Diagnostic(Diagnostic {
                level: DiagnosticLevel::Info,
                message: format!("codex app-server started (pid {pid})"),
                raw: None,
            }))
            .await;
    }
    let liveness = Liveness::new(env.liveness, &ctx.command.provider_options);
    let translator = Translator::new(&ctx.workspace);
    let session = Session {
        env,
        options,
        process,
        liveness,
        translator,
        raw: VecDeque::with_capacity(RAW_LINES),
        next_id: 1,
        phase: Phase::Initializing,
        stopping: false,
        steers: Vec::new(),
    };
    session.drive(ctx).await
}

/// Where the handshake stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// `initialize` sent (id 1).
    Initializing,
    /// `thread/start` or `thread/resume` sent with this id; `resuming` names the thread.
    OpeningThread { id: u64, resuming: Option<String> },
    /// `turn/start` sent with this id.
    Turn { id: u64 },
}

/// A human's answer to a server request, ready to be sent.
struct Answer {
    id: Value,
    style: ApprovalStyle,
    approved: bool,
    /// What the human said with the answer (a decline's reason), if anything.
    message: Option<String>,
}

/// How an approval is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApprovalStyle {
    /// v2: `{"decision": "accept" | "decline"}`.
    Current,
    /// v1: `{"decision": "approved" | "denied"}`.
    Legacy,
}

impl ApprovalStyle {
    /// The `decision` of the answer. v1 carries a decline's message in the decision
    /// itself (`{"denied": {"rejection": …}}`); v2 has no place for it (see
    /// [`Session::answer`]).
    fn decision(self, approved: bool, message: Option<&str>) -> Value {
        match (self, approved, message) {
            (ApprovalStyle::Current, true, _) => json!("accept"),
            (ApprovalStyle::Current, false, _) => json!("decline"),
            (ApprovalStyle::Legacy, true, _) => json!("approved"),
            (ApprovalStyle::Legacy, false, Some(message)) => {
                json!({"denied": {"rejection": message}})
            }
            (ApprovalStyle::Legacy, false, None) => json!("denied"),
        }
    }
}

/// Why the loop ended.
enum End {
    Outcome(ProviderOutcome),
    /// The event sink refused an event: the run is no longer ours.
    Lost,
}

struct Session {
    env: Arc<CliEnv>,
    options: CodexOptions,
    process: CliProcess,
    liveness: Liveness,
    translator: Translator,
    raw: VecDeque<String>,
    next_id: u64,
    phase: Phase,
    stopping: bool,
    /// Ids of the `turn/steer` requests that carry a decline's message.
    steers: Vec<u64>,
}

impl Session {
    async fn drive(mut self, ctx: RunContext) -> ProviderOutcome {
        let end = self.run_loop(&ctx).await;
        let outcome = match end {
            End::Outcome(outcome) => outcome,
            End::Lost => ProviderOutcome::Stopped,
        };
        if let Some(usage) = self.translator.take_usage() {
            let _ = ctx.events.emit(RunEventKind::Usage(usage)).await;
        }
        let stopped = outcome == ProviderOutcome::Stopped;
        if stopped {
            // Left before the shutdown too: the supervisor may abort us during it.
            ctx.report_evidence(self.evidence(None));
        }
        self.shut_down().await;
        if stopped {
            let exit_code = self.process.try_wait().flatten();
            ctx.report_evidence(self.evidence(exit_code));
        }
        tracing::info!(run_id = %ctx.command.run_id, outcome = ?outcome_name(&outcome), "codex run ended");
        outcome
    }

    async fn run_loop(&mut self, ctx: &RunContext) -> End {
        let mut asks: FuturesUnordered<BoxFuture<'static, Answer>> = FuturesUnordered::new();
        // Our ids start at 1 (`initialize`); the server's own requests count from 0 in
        // a separate id space, so the two never need telling apart by value.
        let initialize = protocol::request(1, "initialize", protocol::initialize_params());
        self.send(&initialize).await;
        let mut interrupt_deadline: Option<tokio::time::Instant> = None;
        loop {
            let interrupt_wait = async {
                match interrupt_deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                line = self.process.next_line() => {
                    let Some(line) = line else {
                        return End::Outcome(self.exited_early().await);
                    };
                    match self.handle_line(ctx, &line, &mut asks).await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(end) => return end,
                    }
                }
                failure = self.liveness.expired(), if !self.stopping => {
                    return End::Outcome(self.liveness_failed(failure));
                }
                () = ctx.stop.cancelled(), if !self.stopping => {
                    tracing::info!(run_id = %ctx.command.run_id, "stopping the codex turn");
                    match self.interrupt().await {
                        Some(deadline) => interrupt_deadline = Some(deadline),
                        None => return End::Outcome(ProviderOutcome::Stopped),
                    }
                }
                () = interrupt_wait => {
                    tracing::info!(run_id = %ctx.command.run_id, "no turn/completed after turn/interrupt");
                    return End::Outcome(ProviderOutcome::Stopped);
                }
                Some(answer) = asks.next(), if !asks.is_empty() => self.answer(answer).await,
            }
        }
    }

    /// Handles one stdout line. `Ok(Some(end))` ends the run.
    async fn handle_line(
        &mut self,
        ctx: &RunContext,
        line: &str,
        asks: &mut FuturesUnordered<BoxFuture<'static, Answer>>,
    ) -> Result<Option<End>, End> {
        self.keep_raw(line);
        let message = match Incoming::parse(line) {
            Ok(message) => message,
            Err(error) => {
                self.liveness.activity();
                tracing::debug!(run_id = %ctx.command.run_id, %error, "app-server line not understood");
                return Ok(None);
            }
        };

        match message {
            Incoming::Response { id, outcome } => {
                self.liveness.activity();
                self.response(ctx, &id, outcome).await
            }
            Incoming::Request { id, method, params } => {
                self.liveness.activity();
                self.server_request(ctx, id, &method, &params, asks).await;
                Ok(None)
            }
            Incoming::Notification { method, params } => {
                let translated = self.translator.notification(&method, &params);
                match translated.api_contact {
                    // "Reconnecting... waiting for network" is no sign of life: codex
                    // repeats it for ever while the model API cannot be connected to.
                    Some(ApiContact::Unreachable) => self.liveness.unreachable(),
                    Some(ApiContact::Answered) => {
                        self.liveness.reachable();
                        self.liveness.activity();
                    }
                    // The stream had started: the model answered, and the silence is
                    // the inactivity fault, as on the other providers.
                    Some(ApiContact::StreamWentSilent) => self.liveness.output_seen(),
                    None => self.liveness.activity(),
                }
                if translated.model_output {
                    self.liveness.output_seen();
                }
                for event in translated.events {
                    self.emit(ctx, event).await?;
                }
                match translated.turn_end {
                    Some(turn) => Ok(Some(End::Outcome(self.turn_ended(turn)))),
                    None => Ok(None),
                }
            }
        }
    }

    async fn response(
        &mut self,
        ctx: &RunContext,
        id: &Value,
        outcome: Result<Value, protocol::RpcError>,
    ) -> Result<Option<End>, End> {
        let id = id.as_u64();
        match self.phase.clone() {
            Phase::Initializing if id == Some(1) => {
                if let Err(error) = outcome {
                    return Ok(Some(self.protocol_failure(format!(
                        "codex refused initialize: {}",
                        error.message
                    ))));
                }
                self.send(&protocol::notification("initialized")).await;
                let resume = ctx
                    .conversation
                    .as_ref()
                    .and_then(|conversation| conversation.session_id.clone());
                self.open_thread(ctx, resume).await;
                Ok(None)
            }
            Phase::OpeningThread {
                id: expected,
                resuming,
            } if id == Some(expected) => {
                let thread = outcome.and_then(|result| {
                    serde_json::from_value::<ThreadResult>(result).map_err(|error| {
                        protocol::RpcError {
                            code: 0,
                            message: format!("unexpected result: {error}"),
                        }
                    })
                });
                match (thread, resuming) {
                    (Ok(ThreadResult { thread }), _) => {
                        self.translator.set_thread(&thread.id);
                        ctx.set_session_id(thread.id.clone());
                        self.liveness.handshake_done();
                        let id = self.take_id();
                        self.phase = Phase::Turn { id };
                        let params = json!({
                            "threadId": thread.id,
                            "input": [{"type": "text", "text": ctx.command.prompt}],
                        });
                        self.send(&protocol::request(id, "turn/start", params))
                            .await;
                        Ok(None)
                    }
                    (Err(error), Some(thread_id)) => {
                        // A poisoned or vanished session: start fresh in the same workspace.
                        tracing::warn!(run_id = %ctx.command.run_id, thread_id, error = %error.message, "cannot resume the codex thread; starting a new one");
                        self.emit(
                            ctx,
                            RunEventKind::Diagnostic(Diagnostic {
                                level: DiagnosticLevel::Warn,
                                message: format!(
                                    "could not resume codex thread {thread_id} ({}); started a new thread in the same workspace",
                                    error.message
                                ),
                                raw: None,
                            }),
                        )
                        .await?;
                        self.open_thread(ctx, None).await;
                        Ok(None)
                    }
                    (Err(error), None) => Ok(Some(self.protocol_failure(format!(
                        "codex refused thread/start: {}",
                        error.message
                    )))),
                }
            }
            Phase::Turn { id: expected } if id == Some(expected) => match outcome {
                Ok(result) => {
                    if let Ok(TurnEnvelope { turn }) = serde_json::from_value(result)
                        && self.translator.turn_id().is_none()
                    {
                        self.translator.set_turn(&turn.id);
                    }
                    Ok(None)
                }
                Err(error) => Ok(Some(self.protocol_failure(format!(
                    "codex refused turn/start: {}",
                    error.message
                )))),
            },
            _ if id.is_some_and(|id| self.steers.contains(&id)) => {
                if let Err(error) = outcome {
                    tracing::warn!(run_id = %ctx.command.run_id, error = %error.message, "codex refused the decline's message");
                    self.emit(
                        ctx,
                        RunEventKind::Diagnostic(Diagnostic {
                            level: DiagnosticLevel::Warn,
                            message: format!(
                                "codex refused the message of a declined request (turn/steer: {}); the model did not see it",
                                error.message
                            ),
                            raw: None,
                        }),
                    )
                    .await?;
                }
                Ok(None)
            }
            // `turn/interrupt` answers and anything late.
            _ => Ok(None),
        }
    }

    /// Asks codex to interrupt the running turn; returns how long to wait for its
    /// `turn/completed`, or `None` when there is no turn to interrupt yet.
    async fn interrupt(&mut self) -> Option<tokio::time::Instant> {
        self.stopping = true;
        let turn_id = self.translator.turn_id()?.to_owned();
        let id = self.take_id();
        let params = json!({"threadId": self.thread_id_param(), "turnId": turn_id});
        self.send(&protocol::request(id, "turn/interrupt", params))
            .await;
        Some(tokio::time::Instant::now() + self.env.stop_grace)
    }

    async fn open_thread(&mut self, ctx: &RunContext, resume: Option<String>) {
        let id = self.take_id();
        let workspace = ctx.workspace.display().to_string();
        // The thread runs with this run's settings, also when it was started by an
        // earlier run with others (`model` is also in config.toml; naming it here makes
        // a resumed thread switch to it).
        let mut params = json!({
            "cwd": workspace,
            "approvalPolicy": self.options.approval_policy,
            "sandbox": self.options.sandbox,
            "modelProvider": home::MODEL_PROVIDER,
        });
        if let Some(model) = &self.options.model {
            params["model"] = json!(model);
        }
        let method = match &resume {
            Some(thread_id) => {
                params["threadId"] = json!(thread_id);
                // The history stays with codex; loading it here would only cost time.
                params["excludeTurns"] = json!(true);
                "thread/resume"
            }
            None => "thread/start",
        };
        let line = protocol::request(id, method, params);
        self.phase = Phase::OpeningThread {
            id,
            resuming: resume,
        };
        self.send(&line).await;
    }

    /// Approval requests go to a human; everything else is refused.
    async fn server_request(
        &mut self,
        ctx: &RunContext,
        id: Value,
        method: &str,
        params: &Value,
        asks: &mut FuturesUnordered<BoxFuture<'static, Answer>>,
    ) {
        let redact = |text: &str| self.env.credentials.redact(text);
        let question = match method {
            server_requests::COMMAND_APPROVAL => {
                let request: CommandApproval = approval_params(method, params);
                let command = request
                    .command
                    .clone()
                    .unwrap_or_else(|| "a command".to_owned());
                let details = json!({
                    "itemId": request.item_id,
                    "command": request.command,
                    "cwd": request.cwd,
                    "reason": request.reason,
                });
                Some((
                    HumanLoopKind::Command,
                    command,
                    details,
                    ApprovalStyle::Current,
                ))
            }
            server_requests::FILE_CHANGE_APPROVAL => {
                let request: FileChangeApproval = approval_params(method, params);
                let (files, changes) = self.translator.file_change_summary(&request.item_id);
                let prompt = if files.is_empty() {
                    "a file change".to_owned()
                } else {
                    files.join(", ")
                };
                let details = json!({
                    "itemId": request.item_id,
                    "changes": changes,
                    "reason": request.reason,
                    "grantRoot": request.grant_root,
                });
                Some((
                    HumanLoopKind::FileChange,
                    prompt,
                    details,
                    ApprovalStyle::Current,
                ))
            }
            server_requests::LEGACY_EXEC_APPROVAL => {
                let command = params
                    .get("command")
                    .and_then(Value::as_array)
                    .map(|argv| {
                        argv.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| "a command".to_owned());
                Some((
                    HumanLoopKind::Command,
                    command,
                    params.clone(),
                    ApprovalStyle::Legacy,
                ))
            }
            server_requests::LEGACY_PATCH_APPROVAL => {
                let files = params
                    .get("fileChanges")
                    .and_then(Value::as_object)
                    .map(|changes| {
                        changes
                            .keys()
                            .map(|path| self.translator.relative(path))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| "a file change".to_owned());
                Some((
                    HumanLoopKind::FileChange,
                    files,
                    params.clone(),
                    ApprovalStyle::Legacy,
                ))
            }
            _ => None,
        };
        let Some((kind, prompt, details, style)) = question else {
            tracing::debug!(run_id = %ctx.command.run_id, method, "refusing an app-server request this adapter does not handle");
            let refusal = protocol::error(
                &id,
                METHOD_NOT_FOUND,
                &format!("{method} is not supported by this client"),
            );
            self.send(&refusal).await;
            return;
        };
        self.liveness.output_seen();
        let prompt = redact(&prompt);
        let details = redact_value(&details, &self.env.credentials);
        let human_loop = ctx.human_loop.clone();
        let liveness = self.liveness.clone();
        asks.push(Box::pin(async move {
            let _paused = liveness.pause();
            let answer = human_loop.ask(kind, prompt, details).await;
            Answer {
                id,
                style,
                approved: answer.approved(),
                message: answer.message.filter(|m| !m.trim().is_empty()),
            }
        }));
    }

    /// Sends a human's answer. The v2 approval answer has no field for a decline's
    /// message, so the message goes to the model as input steered into the running
    /// turn (`turn/steer`), sent before the decline: codex then hands the model the
    /// declined call's result and the message in the same next request.
    async fn answer(&mut self, answer: Answer) {
        let Answer {
            id,
            style,
            approved,
            message,
        } = answer;
        if let (ApprovalStyle::Current, false, Some(message)) = (style, approved, &message)
            && let (Some(thread_id), Some(turn_id)) =
                (self.translator.thread_id(), self.translator.turn_id())
        {
            let text = format!("The user declined that request: {message}");
            let params = json!({
                "threadId": thread_id,
                "expectedTurnId": turn_id,
                "input": [{"type": "text", "text": text}],
            });
            let steer_id = self.take_id();
            self.steers.push(steer_id);
            self.send(&protocol::request(steer_id, "turn/steer", params))
                .await;
        }
        let decision = style.decision(approved, message.as_deref());
        self.send(&protocol::result(&id, json!({ "decision": decision })))
            .await;
    }

    /// The outcome of our turn's `turn/completed`.
    fn turn_ended(&mut self, turn: protocol::Turn) -> ProviderOutcome {
        match turn.status {
            TurnStatus::Completed if self.translator.agent_output() => ProviderOutcome::Succeeded,
            TurnStatus::Completed => self.failed(
                FailureReason::ProviderNoOutput,
                "the codex turn completed without an agent message".to_owned(),
                None,
            ),
            TurnStatus::Interrupted => ProviderOutcome::Stopped,
            TurnStatus::Failed => {
                let (reason, detail) =
                    failure::classify(turn.error.as_ref(), self.translator.errors());
                self.failed(reason, detail, None)
            }
            TurnStatus::InProgress | TurnStatus::Unknown => self.failed(
                FailureReason::UnknownFailure,
                "codex reported the turn completed with an unknown status".to_owned(),
                None,
            ),
        }
    }

    /// The app-server closed stdout before the turn completed.
    async fn exited_early(&mut self) -> ProviderOutcome {
        if self.stopping {
            return ProviderOutcome::Stopped;
        }
        // Stdout closes at the exit; a process that closed it and lives on is ended.
        let (exit_code, how) = match tokio::time::timeout(EXIT_WAIT, self.process.wait()).await {
            Ok(Some(code)) => (Some(code), format!("exited with code {code}")),
            Ok(None) => (None, "was killed by a signal".to_owned()),
            Err(_) => {
                self.process.terminate(self.env.stop_grace).await;
                (None, "closed its output".to_owned())
            }
        };
        self.failed(
            FailureReason::ProviderCrashed,
            format!("codex app-server {how} before the turn completed"),
            exit_code,
        )
    }

    fn liveness_failed(&mut self, failure: LivenessFailure) -> ProviderOutcome {
        let mut detail = self.liveness.describe(failure);
        // The last retry notice says what codex was waiting for.
        if let Some(last) = self.translator.errors().last() {
            detail = format!("{detail}; last codex error: {}", last.error.message);
            if let Some(details) = last.error.additional_details.as_deref()
                && !details.is_empty()
            {
                detail = format!("{detail} ({details})");
            }
        }
        self.failed(failure.reason(), detail, None)
    }

    fn protocol_failure(&mut self, detail: String) -> End {
        End::Outcome(self.failed(FailureReason::ProviderError, detail, None))
    }

    fn failed(
        &self,
        reason: FailureReason,
        detail: String,
        exit_code: Option<i32>,
    ) -> ProviderOutcome {
        ProviderOutcome::Failed {
            reason,
            detail: self.env.credentials.redact(&detail),
            evidence: self.evidence(exit_code),
        }
    }

    /// The stderr tail (without codex's start-up noise) and the last protocol lines
    /// (both redacted).
    fn evidence(&self, exit_code: Option<i32>) -> Evidence {
        Evidence {
            stderr_tail: self
                .process
                .stderr_tail()
                .iter()
                .filter(|line| !noise::is_benign(line))
                .map(|line| strip_ansi(line))
                .collect(),
            raw_lines: self.raw.iter().cloned().collect(),
            exit_code,
        }
    }

    /// Ends the child: a finished app-server exits when its stdin closes; anything
    /// still there after a moment gets the signals.
    async fn shut_down(&mut self) {
        self.process.close_stdin();
        if !self.stopping
            && tokio::time::timeout(EXIT_WAIT, self.process.wait())
                .await
                .is_ok()
        {
            // Exited by itself; terminate still sweeps leftovers of the group.
            self.process.terminate(Duration::from_millis(100)).await;
            return;
        }
        self.process.terminate(self.env.stop_grace).await;
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn thread_id_param(&self) -> Value {
        self.translator
            .thread_id()
            .map_or(Value::Null, |id| Value::String(id.to_owned()))
    }

    /// Writes a line to the app-server. A failure is only logged: the process is gone,
    /// and its exit (EOF on stdout) ends the run with the evidence.
    async fn send(&mut self, line: &str) {
        if let Err(error) = self.process.send_line(line).await {
            tracing::debug!(%error, "cannot write to codex app-server");
        }
    }

    async fn emit(&self, ctx: &RunContext, event: RunEventKind) -> Result<(), End> {
        let event = redact_event(event, &self.env.credentials);
        ctx.events.emit(event).await.map_err(|error| {
            tracing::debug!(run_id = %ctx.command.run_id, %error, "event refused; ending the run");
            End::Lost
        })
    }

    fn keep_raw(&mut self, line: &str) {
        if noise::is_benign(line) {
            return;
        }
        if self.raw.len() == RAW_LINES {
            self.raw.pop_front();
        }
        let mut kept: String = line.chars().take(RAW_LINE_CHARS).collect();
        if kept.len() < line.len() {
            kept.push_str("…[truncated]");
        }
        self.raw.push_back(self.env.credentials.redact(&kept));
    }
}

/// `text` without ANSI escape sequences (codex colours its log lines whatever the
/// output is).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters… final byte in @..~; other escapes: ESC + one char.
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

fn outcome_name(outcome: &ProviderOutcome) -> &'static str {
    match outcome {
        ProviderOutcome::Succeeded => "succeeded",
        ProviderOutcome::Failed { reason, .. } => reason.as_str(),
        ProviderOutcome::Stopped => "stopped",
    }
}

/// The params of an approval request. A shape this adapter does not know is logged and
/// read as empty: the human is still asked (about "a command" or "a file change"), and
/// the run goes on.
fn approval_params<T: serde::de::DeserializeOwned + Default>(method: &str, params: &Value) -> T {
    serde_json::from_value(params.clone()).unwrap_or_else(|error| {
        tracing::warn!(method, %error, "codex sent approval params of an unknown shape");
        T::default()
    })
}

fn redact_value(value: &Value, credentials: &crate::cli::Credentials) -> Value {
    match value {
        Value::String(text) => Value::String(credentials.redact(text)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| redact_value(item, credentials))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), redact_value(item, credentials)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every text an event carries, redacted: the agent can print an environment variable.
fn redact_event(event: RunEventKind, credentials: &crate::cli::Credentials) -> RunEventKind {
    let r = |text: String| credentials.redact(&text);
    match event {
        RunEventKind::MessageDelta(MessageDelta { message_id, text }) => {
            RunEventKind::MessageDelta(MessageDelta {
                message_id,
                text: r(text),
            })
        }
        RunEventKind::MessageCompleted(MessageCompleted { message_id, text }) => {
            RunEventKind::MessageCompleted(MessageCompleted {
                message_id,
                text: r(text),
            })
        }
        RunEventKind::ReasoningDelta(ReasoningDelta { text }) => {
            RunEventKind::ReasoningDelta(ReasoningDelta { text: r(text) })
        }
        RunEventKind::ToolStarted(ToolStarted {
            call_id,
            name,
            input,
        }) => RunEventKind::ToolStarted(ToolStarted {
            call_id,
            name,
            input: redact_value(&input, credentials),
        }),
        RunEventKind::ToolOutput(ToolOutput { call_id, output }) => {
            RunEventKind::ToolOutput(ToolOutput {
                call_id,
                output: r(output),
            })
        }
        RunEventKind::FileChanged(FileChanged { path, change, diff }) => {
            RunEventKind::FileChanged(FileChanged {
                path: r(path),
                change,
                diff: diff.map(r),
            })
        }
        RunEventKind::Diagnostic(Diagnostic {
            level,
            message,
            raw,
        }) => RunEventKind::Diagnostic(Diagnostic {
            level,
            message: r(message),
            raw: raw.map(r),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Credentials;

    #[test]
    fn events_are_redacted() {
        let credentials = Credentials::from_pairs([("OPENAI_API_KEY", "sk-very-secret-1")]);
        let event = RunEventKind::ToolStarted(ToolStarted {
            call_id: "c".into(),
            name: "shell".into(),
            input: json!({"command": "echo sk-very-secret-1", "n": 1}),
        });
        let RunEventKind::ToolStarted(started) = redact_event(event, &credentials) else {
            panic!("same event type");
        };
        assert_eq!(started.input, json!({"command": "echo [redacted]", "n": 1}));
        let event = RunEventKind::ToolOutput(ToolOutput {
            call_id: "c".into(),
            output: "key=sk-very-secret-1\n".into(),
        });
        assert_eq!(
            redact_event(event, &credentials),
            RunEventKind::ToolOutput(ToolOutput {
                call_id: "c".into(),
                output: "key=[redacted]\n".into()
            })
        );
    }

    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m boom"),
            "2026 ERROR boom"
        );
        assert_eq!(strip_ansi("plain"), "plain");
        assert_eq!(strip_ansi("cut \u{1b}["), "cut ");
    }

    #[test]
    fn the_app_server_runs_offline() {
        let args = app_server_args();
        assert_eq!(args[0], "app-server");
        assert!(args.windows(2).any(|w| w == ["--disable", "plugins"]));
        assert!(args.windows(2).any(|w| w == ["--disable", "apps"]));
    }
}
