//! The driver of one `claude-code` run: one `claude -p` process speaking stream-json
//! on stdio, one turn.
//!
//! 1. Before spawning: decode the providerOptions (`provider_error` when wrong), resolve
//!    the credentials (`auth_missing`), find the binary (`binary_missing`).
//! 2. Spawn (resuming the conversation's session when there is one), send the
//!    `initialize` control request and the prompt as a `user` message.
//! 3. Translate every line into events; `can_use_tool` permission prompts become
//!    human-loop requests (asked concurrently, with liveness paused) answered allow or
//!    deny; the turn ends at the `result` line, classified by [`super::outcome`].
//! 4. Stop: the `interrupt` control request, a short wait for the turn's result, then
//!    the process group is terminated. Liveness limits end a CLI that hangs.
//!
//! A `--resume` that fails before the session starts (the session is gone or unusable)
//! is retried once as a fresh session in the same workspace.

use super::launch::{ClaudeOptions, Launch};
use super::outcome::{self, TurnFacts, TurnOutcome};
use super::protocol::{CanUseTool, ControlRequest, Line, ResultLine, outgoing};
use super::translate::Translator;
use crate::cli::{CliCommand, CliEnv, CliProcess, Liveness, LivenessFailure};
use crate::human_loop::{HumanLoop, HumanLoopAnswer};
use crate::provider::{ProviderOutcome, RunContext};
use crate::sink::EmitError;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::event::{Diagnostic, DiagnosticLevel, Evidence, HumanLoopKind};
use switchyard_contracts::{FailureReason, ProviderName, RunEventKind};
use tracing::Instrument as _;

/// The program name looked up with [`crate::cli::CliLocator::find`].
pub(crate) const PROGRAM: &str = "claude";
/// Raw protocol lines kept as evidence.
const RAW_LINES_KEPT: usize = 20;
/// Longest raw line kept as evidence (the `initialize` answer alone is ~10 KB).
const RAW_LINE_MAX_CHARS: usize = 2_000;
/// After the turn's result, how long the CLI gets to exit on its own once stdin closes.
const EXIT_AFTER_RESULT: Duration = Duration::from_secs(5);
/// Longest command or path shown in a human-loop prompt.
const PROMPT_MAX_CHARS: usize = 200;

pub(super) async fn run(env: Arc<CliEnv>, ctx: RunContext) -> ProviderOutcome {
    let span = tracing::info_span!("claude", run_id = %ctx.command.run_id);
    run_inner(env, ctx).instrument(span).await
}

async fn run_inner(env: Arc<CliEnv>, ctx: RunContext) -> ProviderOutcome {
    let options = match ClaudeOptions::from_provider_options(&ctx.command.provider_options) {
        Ok(options) => options,
        Err(error) => {
            return ProviderOutcome::failed(FailureReason::ProviderError, error.to_string());
        }
    };
    let (program, credentials) = match env.preflight(
        ProviderName::ClaudeCode,
        PROGRAM,
        &ctx.command.credential_env,
    ) {
        Ok(ready) => (ready.program, ready.credentials),
        Err(outcome) => return outcome,
    };
    let base_url = env.policy(ProviderName::ClaudeCode).base_url;
    // A model request that never answers must fail inside the CLI before the
    // first-output or inactivity limit ends the run with less to say.
    let limits = env.liveness.with_overrides(&ctx.command.provider_options);
    let liveness_bound = [limits.first_output, limits.inactivity]
        .into_iter()
        .filter(|limit| !limit.is_zero())
        .min();
    let api_timeout = options.api_timeout(liveness_bound);
    let mut resume = ctx.conversation.as_ref().and_then(|c| c.session_id.clone());
    loop {
        let launch = Launch {
            options: &options,
            model: ctx.command.model.as_deref(),
            resume: resume.as_deref(),
            credentials: &credentials,
            base_url: base_url.as_deref(),
            home: ctx.dirs.state.clone(),
            api_timeout,
        };
        let command = CliCommand {
            program: program.clone(),
            args: launch.args(),
            env: launch.env(),
            cwd: ctx.dirs.workspace.clone(),
            stdin_piped: true,
        };
        let process = match env.spawn(command, &ctx.dirs).await {
            Ok(process) => process,
            Err(error) => return env.spawn_failure(PROGRAM, error),
        };
        tracing::info!(
            pid = process.pid(),
            resume = resume.is_some(),
            "claude started"
        );
        let session = Session::new(&env, &ctx, process, resume.is_some());
        match session.drive().await {
            Driven::Finished(outcome) => return outcome,
            Driven::ResumeFailed(detail) => {
                let Some(old) = resume.take() else {
                    return ProviderOutcome::failed(FailureReason::ProviderCrashed, detail);
                };
                tracing::warn!(session_id = %old, %detail, "resuming the claude session failed; starting a fresh one");
                let notice = RunEventKind::Diagnostic(Diagnostic {
                    level: DiagnosticLevel::Warn,
                    message: format!(
                        "could not resume claude session {old} ({detail}); continuing in a fresh session in the same workspace"
                    ),
                    raw: None,
                });
                let notice = redact_event(&env.credentials, notice);
                if ctx.events.emit(notice).await.is_err() || ctx.stop.is_cancelled() {
                    return ProviderOutcome::Stopped;
                }
            }
        }
    }
}

/// How driving one process ended.
enum Driven {
    Finished(ProviderOutcome),
    /// `--resume` failed before the session started; the detail says how.
    ResumeFailed(String),
}

/// A human's answer to a permission prompt, with what is needed to reply.
struct Answered {
    request_id: String,
    tool_use_id: Option<String>,
    input: Value,
    answer: HumanLoopAnswer,
}

/// The last raw lines, redacted and shortened, for the evidence of a failure.
#[derive(Default)]
struct RawLines(VecDeque<String>);

impl RawLines {
    fn push(&mut self, line: String) {
        if self.0.len() == RAW_LINES_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(shorten(line, RAW_LINE_MAX_CHARS));
    }

    fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

struct Session<'a> {
    env: &'a CliEnv,
    ctx: &'a RunContext,
    process: CliProcess,
    liveness: Liveness,
    translator: Translator,
    raw: RawLines,
    resuming: bool,
    /// The `system/init` line arrived: the session exists.
    started: bool,
    session_id: Option<String>,
    interrupted: bool,
    /// The model produced output in this run (what [`Liveness::output_seen`] was told).
    model_output: bool,
    next_request: u64,
}

/// Why the main loop stopped before a result.
enum Halt {
    Outcome(ProviderOutcome),
    Resume(String),
}

impl From<EmitError> for Halt {
    /// The sink refused an event: the supervisor knows why (it watches the same sink);
    /// the outcome we report is a formality.
    fn from(_: EmitError) -> Self {
        Halt::Outcome(ProviderOutcome::Stopped)
    }
}

impl<'a> Session<'a> {
    fn new(env: &'a CliEnv, ctx: &'a RunContext, process: CliProcess, resuming: bool) -> Self {
        Self {
            env,
            ctx,
            process,
            liveness: Liveness::new(env.liveness, &ctx.command.provider_options),
            translator: Translator::new(),
            raw: RawLines::default(),
            resuming,
            started: false,
            session_id: None,
            interrupted: false,
            model_output: false,
            next_request: 0,
        }
    }

    async fn drive(mut self) -> Driven {
        let result = self.turn().await;
        let driven = match result {
            Ok(outcome) => {
                self.finish_process().await;
                Driven::Finished(outcome)
            }
            Err(Halt::Outcome(outcome)) => {
                if outcome == ProviderOutcome::Stopped {
                    // Left before the signals too: the supervisor may abort us meanwhile.
                    self.ctx.report_evidence(self.evidence(None));
                }
                self.process.terminate(self.env.stop_grace).await;
                Driven::Finished(outcome)
            }
            Err(Halt::Resume(detail)) => {
                self.process.terminate(self.env.stop_grace).await;
                Driven::ResumeFailed(detail)
            }
        };
        // Evidence was collected before the process ended; what the CLI printed while
        // going down is in the stderr tail now, and its exit code is known.
        match driven {
            Driven::Finished(ProviderOutcome::Failed {
                reason,
                detail,
                mut evidence,
            }) => {
                evidence.stderr_tail = self.process.stderr_tail();
                if evidence.exit_code.is_none() {
                    evidence.exit_code = self.process.try_wait().flatten();
                }
                Driven::Finished(ProviderOutcome::Failed {
                    reason,
                    detail,
                    evidence,
                })
            }
            Driven::Finished(ProviderOutcome::Stopped) => {
                let exit_code = self.process.try_wait().flatten();
                self.ctx.report_evidence(self.evidence(exit_code));
                Driven::Finished(ProviderOutcome::Stopped)
            }
            other => other,
        }
    }

    /// Runs the turn to its result (or a stop, a liveness failure, an early exit).
    async fn turn(&mut self) -> Result<ProviderOutcome, Halt> {
        let init = self.request_id("initialize");
        self.send(&outgoing::initialize(&init)).await?;
        self.send(&outgoing::user_message(&self.ctx.command.prompt))
            .await?;
        self.translator.start_turn();
        let liveness = self.liveness.clone();
        let mut asks: FuturesUnordered<BoxFuture<'static, Answered>> = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                () = self.ctx.stop.cancelled() => return Err(Halt::Outcome(self.stop().await)),
                failure = liveness.expired() => return Err(Halt::Outcome(self.expired(failure))),
                Some(answered) = asks.next(), if !asks.is_empty() => self.reply(answered).await?,
                line = self.process.next_line() => {
                    let Some(line) = line else {
                        return Err(self.exited_early().await);
                    };
                    if let Some(result) = self.line(line, &mut asks).await? {
                        return self.concluded(&result).await;
                    }
                }
            }
        }
    }

    /// Handles one stdout line; returns the turn's result line when it is one.
    async fn line(
        &mut self,
        raw: String,
        asks: &mut FuturesUnordered<BoxFuture<'static, Answered>>,
    ) -> Result<Option<ResultLine>, Halt> {
        let redacted = self.env.credentials.redact(&raw);
        self.liveness.activity();
        let Some(line) = Line::parse(&raw) else {
            tracing::debug!(line = %shorten(redacted.clone(), 500), "claude printed a line that is not protocol");
            self.raw.push(redacted);
            return Ok(None);
        };
        self.raw.push(redacted);
        let events = match line {
            Line::System(system) => {
                if system.subtype == "init" {
                    self.started = true;
                    self.liveness.handshake_done();
                    if let Some(id) = &system.session_id {
                        self.session_started(id);
                    }
                }
                self.translator.system(&system)
            }
            Line::StreamEvent(event) => {
                // The model answered: whatever it streams counts as output.
                self.output_seen();
                self.translator.stream_event(&event)
            }
            Line::Assistant(assistant) => {
                if !assistant.is_synthetic() {
                    self.output_seen();
                }
                self.translator.assistant(&assistant)
            }
            Line::User(user) => self.translator.user(&user),
            Line::ControlRequest(request) => {
                match request.request {
                    ControlRequest::CanUseTool(can_use) => {
                        asks.push(self.ask(request.request_id, can_use));
                    }
                    ControlRequest::Other => {
                        tracing::debug!(request_id = %request.request_id, "unsupported control request from claude");
                        self.send(&outgoing::error(
                            &request.request_id,
                            "not supported by this client",
                        ))
                        .await?;
                    }
                }
                Vec::new()
            }
            Line::ControlResponse(response) => {
                if let Some(error) = &response.response.error {
                    tracing::warn!(request_id = %response.response.request_id, error = %self.env.credentials.redact(error), "claude refused a control request");
                }
                Vec::new()
            }
            Line::Result(result) => return Ok(Some(result)),
            Line::Other => {
                tracing::debug!("claude line of an unknown type");
                Vec::new()
            }
        };
        for event in events {
            self.emit(event).await?;
        }
        Ok(None)
    }

    /// The turn's result line arrived: report usage and classify.
    async fn concluded(&mut self, result: &ResultLine) -> Result<ProviderOutcome, Halt> {
        if self.resuming && !self.started && !self.interrupted {
            // `--resume` of a session that does not exist (any more) answers with an
            // error result before any `system/init`.
            let text = result.result.clone().unwrap_or_default();
            let tail = self.process.stderr_tail().join(" / ");
            let detail = [text, tail]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            return Err(Halt::Resume(if detail.is_empty() {
                format!(
                    "claude ended with {} before the session started",
                    result.subtype
                )
            } else {
                shorten(detail, 500)
            }));
        }
        if let Some(id) = result.session_id.as_deref().filter(|_| self.started) {
            self.session_started(id);
        }
        if let Some(usage) = Translator::usage(result) {
            self.emit(usage).await?;
        }
        let facts = TurnFacts {
            interrupted: self.interrupted,
            assistant_text: self.translator.turn_had_text(),
            model_output: self.model_output,
        };
        Ok(match outcome::classify(result, facts) {
            TurnOutcome::Succeeded => ProviderOutcome::Succeeded,
            TurnOutcome::Interrupted => ProviderOutcome::Stopped,
            TurnOutcome::Failed { reason, detail } => {
                tracing::info!(reason = reason.as_str(), %detail, "claude turn failed");
                self.failed(reason, detail, None)
            }
        })
    }

    /// Stdout ended before the turn's result: the CLI exited (or closed stdout).
    async fn exited_early(&mut self) -> Halt {
        let exit = tokio::time::timeout(self.env.stop_grace, self.process.wait()).await;
        let code = exit.ok().flatten();
        if self.resuming && !self.started {
            let tail = self.process.stderr_tail().join(" / ");
            return Halt::Resume(shorten(
                format!(
                    "claude exited ({}) before the session started: {tail}",
                    describe_exit(code)
                ),
                500,
            ));
        }
        let detail = format!(
            "claude exited ({}) before the turn ended",
            describe_exit(code)
        );
        tracing::warn!(exit_code = code, "claude exited before the turn ended");
        Halt::Outcome(self.failed(FailureReason::ProviderCrashed, detail, code))
    }

    /// A liveness limit was exceeded.
    fn expired(&mut self, failure: LivenessFailure) -> ProviderOutcome {
        let detail = self.liveness.describe(failure);
        tracing::warn!(?failure, %detail, "claude run is not live");
        self.failed(failure.reason(), detail, None)
    }

    /// Stop: interrupt the turn over the protocol, give the CLI a moment to end it,
    /// and leave the rest (the process group) to [`Session::drive`].
    async fn stop(&mut self) -> ProviderOutcome {
        self.interrupted = true;
        let id = self.request_id("interrupt");
        if self
            .process
            .send_line(&outgoing::interrupt(&id))
            .await
            .is_err()
        {
            return ProviderOutcome::Stopped;
        }
        tracing::info!("interrupt sent to claude");
        let wait_for_result = async {
            while let Some(line) = self.process.next_line().await {
                let redacted = self.env.credentials.redact(&line);
                self.raw.push(redacted);
                if matches!(Line::parse(&line), Some(Line::Result(_))) {
                    return true;
                }
            }
            false
        };
        let ended = tokio::time::timeout(self.env.stop_grace, wait_for_result).await;
        tracing::debug!(
            turn_ended = matches!(ended, Ok(true)),
            "claude after the interrupt"
        );
        ProviderOutcome::Stopped
    }

    /// After the result: close stdin so that the CLI exits on its own (its session is
    /// saved by then), and terminate it if it does not.
    async fn finish_process(&mut self) {
        self.process.close_stdin();
        let exited = tokio::time::timeout(EXIT_AFTER_RESULT, self.process.wait()).await;
        if exited.is_err() {
            tracing::debug!("claude did not exit after the turn; terminating it");
        }
        self.process.terminate(self.env.stop_grace).await;
    }

    /// A permission prompt, asked as a human-loop request. The future owns what it
    /// needs, so the main loop keeps reading lines (and answering) while it waits.
    fn ask(&self, request_id: String, can_use: CanUseTool) -> BoxFuture<'static, Answered> {
        let human_loop: HumanLoop = self.ctx.human_loop.clone();
        let liveness = &self.liveness;
        let (kind, prompt) = describe_tool(&can_use);
        let details = json!({
            "tool": can_use.tool_name,
            "input": can_use.input,
            "description": can_use.description,
            "toolUseId": can_use.tool_use_id,
            "blockedPath": can_use.blocked_path,
        });
        let details = redact_value(&self.env.credentials, details);
        let prompt = self.env.credentials.redact(&prompt);
        // Paused from now, not from the future's first poll.
        let paused = liveness.pause();
        Box::pin(async move {
            let _paused = paused;
            let answer = human_loop.ask(kind, prompt, details).await;
            Answered {
                request_id,
                tool_use_id: can_use.tool_use_id,
                input: can_use.input,
                answer,
            }
        })
    }

    async fn reply(&mut self, answered: Answered) -> Result<(), Halt> {
        let Answered {
            request_id,
            tool_use_id,
            input,
            answer,
        } = answered;
        let line = if answer.approved() {
            outgoing::allow(&request_id, &input)
        } else {
            if let Some(id) = &tool_use_id {
                self.translator.mark_denied(id);
            }
            let message = answer
                .message
                .clone()
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| "The user denied this tool use.".to_owned());
            outgoing::deny(&request_id, &message)
        };
        // A resolved ask is a sign of life; the pause it held is over.
        self.liveness.activity();
        self.send(&line).await
    }

    fn output_seen(&mut self) {
        self.model_output = true;
        self.liveness.output_seen();
    }

    fn session_started(&mut self, id: &str) {
        if self.session_id.as_deref() == Some(id) {
            return;
        }
        tracing::info!(session_id = %id, "claude session");
        self.session_id = Some(id.to_owned());
        self.ctx.set_session_id(id.to_owned());
    }

    async fn send(&mut self, line: &str) -> Result<(), Halt> {
        if let Err(error) = self.process.send_line(line).await {
            // The CLI went away; its stdout tells the rest (EOF → exited_early).
            tracing::debug!(%error, "writing to claude failed");
        }
        Ok(())
    }

    /// Emits one event, with every known credential value redacted from it: the agent
    /// runs commands in an environment that holds the key and may print it.
    async fn emit(&self, event: RunEventKind) -> Result<(), Halt> {
        let event = redact_event(&self.env.credentials, event);
        self.ctx.events.emit(event).await?;
        Ok(())
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

    fn evidence(&self, exit_code: Option<i32>) -> Evidence {
        Evidence {
            stderr_tail: self.process.stderr_tail(),
            raw_lines: self.raw.to_vec(),
            exit_code,
        }
    }

    fn request_id(&mut self, what: &str) -> String {
        self.next_request += 1;
        format!("switchyard_{what}_{}", self.next_request)
    }
}

/// The kind and one-line prompt of a permission request.
fn describe_tool(can_use: &CanUseTool) -> (HumanLoopKind, String) {
    let input = &can_use.input;
    let field = |key: &str| input.get(key).and_then(Value::as_str);
    match can_use.tool_name.as_str() {
        "Bash" => {
            let command = field("command").unwrap_or_default();
            (
                HumanLoopKind::Command,
                format!("Run `{}`?", one_line(command)),
            )
        }
        name @ ("Write" | "Edit" | "MultiEdit" | "NotebookEdit") => {
            let path = field("file_path")
                .or_else(|| field("notebook_path"))
                .or(can_use.blocked_path.as_deref())
                .unwrap_or("a file");
            let verb = if name == "Write" { "Write" } else { "Edit" };
            (
                HumanLoopKind::FileChange,
                format!("{verb} {}?", one_line(path)),
            )
        }
        name => {
            let what = can_use
                .description
                .clone()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| input.to_string());
            (
                HumanLoopKind::Permission,
                format!("Allow {name}: {}?", one_line(&what)),
            )
        }
    }
}

/// The first line of `text`, shortened, with a marker when something was cut.
fn one_line(text: &str) -> String {
    let mut lines = text.trim().lines();
    let first = lines.next().unwrap_or_default();
    let more = lines.next().is_some();
    let mut shown = shorten(first.to_owned(), PROMPT_MAX_CHARS);
    if more && !shown.ends_with('…') {
        shown.push_str(" …");
    }
    shown
}

fn shorten(text: String, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text;
    }
    let mut cut: String = text.chars().take(max_chars).collect();
    cut.push('…');
    cut
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// `value` with every known credential value redacted from its strings.
fn redact_value(credentials: &crate::cli::Credentials, value: Value) -> Value {
    let text = value.to_string();
    let redacted = credentials.redact(&text);
    if redacted == text {
        return value;
    }
    serde_json::from_str(&redacted).unwrap_or(Value::Null)
}

fn redact_event(credentials: &crate::cli::Credentials, event: RunEventKind) -> RunEventKind {
    let dropped = |event: &RunEventKind| {
        RunEventKind::Diagnostic(Diagnostic {
            level: DiagnosticLevel::Warn,
            message: format!(
                "a {} event was dropped: it held a credential",
                event.type_name()
            ),
            raw: None,
        })
    };
    let text = match serde_json::to_string(&event) {
        Ok(text) => text,
        Err(error) => {
            // Unchecked, it may hold a credential: withheld rather than passed on.
            tracing::error!(%error, event = event.type_name(), "cannot encode an event to redact it; withholding it");
            switchyard_platform::metrics::serialization_failed();
            return dropped(&event);
        }
    };
    let redacted = credentials.redact(&text);
    if redacted == text {
        return event;
    }
    serde_json::from_str(&redacted).unwrap_or_else(|_| dropped(&event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn can_use(tool: &str, input: Value) -> CanUseTool {
        CanUseTool {
            tool_name: tool.to_owned(),
            input,
            description: None,
            tool_use_id: Some("toolu_1".to_owned()),
            blocked_path: None,
        }
    }

    #[test]
    fn permission_prompts_are_one_line_of_the_right_kind() {
        assert_eq!(
            describe_tool(&can_use(
                "Bash",
                json!({"command": "echo hi > hello.txt\nrm -rf /", "description": "x"})
            )),
            (
                HumanLoopKind::Command,
                "Run `echo hi > hello.txt …`?".to_owned()
            )
        );
        assert_eq!(
            describe_tool(&can_use("Write", json!({"file_path": "/w/a.txt"}))),
            (HumanLoopKind::FileChange, "Write /w/a.txt?".to_owned())
        );
        assert_eq!(
            describe_tool(&can_use("Edit", json!({"file_path": "/w/a.txt"}))),
            (HumanLoopKind::FileChange, "Edit /w/a.txt?".to_owned())
        );
        let mut fetch = can_use("WebFetch", json!({"url": "http://x"}));
        assert_eq!(
            describe_tool(&fetch),
            (
                HumanLoopKind::Permission,
                r#"Allow WebFetch: {"url":"http://x"}?"#.to_owned()
            )
        );
        fetch.description = Some("Fetch http://x".to_owned());
        assert_eq!(describe_tool(&fetch).1, "Allow WebFetch: Fetch http://x?");
        let long = "x".repeat(500);
        let (_, prompt) = describe_tool(&can_use("Bash", json!({"command": long})));
        assert!(prompt.chars().count() < 220, "{prompt}");
    }

    #[test]
    fn raw_lines_keep_the_last_few_shortened() {
        let mut raw = RawLines::default();
        for i in 0..30 {
            raw.push(format!("line {i}"));
        }
        raw.push("y".repeat(5_000));
        let kept = raw.to_vec();
        assert_eq!(kept.len(), RAW_LINES_KEPT);
        assert_eq!(kept[0], "line 11");
        assert_eq!(
            kept.last().map(|l| l.chars().count()),
            Some(RAW_LINE_MAX_CHARS + 1)
        );
    }

    #[test]
    fn credentials_are_redacted_from_events_and_details() {
        let credentials =
            crate::cli::Credentials::from_pairs([("ANTHROPIC_API_KEY", "sk-ant-secret-123")]);
        let event = RunEventKind::ToolOutput(switchyard_contracts::event::ToolOutput {
            call_id: "c".into(),
            output: "key=sk-ant-secret-123".into(),
        });
        let redacted = serde_json::to_string(&redact_event(&credentials, event)).unwrap();
        assert!(!redacted.contains("sk-ant-secret-123"), "{redacted}");
        assert!(redacted.contains("[redacted]"), "{redacted}");
        let details = redact_value(
            &credentials,
            json!({"input": {"command": "echo sk-ant-secret-123"}}),
        );
        assert_eq!(details["input"]["command"], "echo [redacted]");
    }
}
