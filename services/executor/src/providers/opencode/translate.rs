//! Translation of the opencode server's SSE events (`GET /event`) into Switchyard run
//! events, and the classification of its errors into failure reasons.
//!
//! Pure and synchronous: the driver (`session.rs`) feeds one decoded event at a time and
//! acts on the [`Step`]s it gets back. Only events of the run's own session become run
//! events; permission and question requests are passed on whatever their session (a
//! subagent's child session asks through the same server).
//!
//! The mapping, from what opencode 1.18 sends:
//!
//! | opencode | Switchyard |
//! |---|---|
//! | `message.part.delta` (field `text`) of an assistant text part | `message.delta` (message id = the part id) |
//! | `message.part.updated` text part with `time.end` | `message.completed` |
//! | reasoning part deltas / updates | `reasoning.delta` |
//! | tool part `running` / growing `metadata.output` / `completed` / `error` | `tool.started` / `tool.output` / `tool.completed` |
//! | completed `write` / `edit` / `multiedit` tool | `file.changed` |
//! | `step-start` part | nothing (the driver counts it as the model's first output, see [`Translator::starts_model_stream`]) |
//! | `step-finish` part tokens | `usage` (one per model call) |
//! | `step-finish` part with reason `unknown` (the model's stream ended without a finish reason, and opencode calls the model again) | [`Step::Retry`] |
//! | `permission.asked` | [`Step::Ask`] |
//! | `session.status` `retry` | [`Step::Retry`] |
//! | `session.idle` (after the session was busy) | [`Step::Idle`] |
//!
//! Text parts of user messages (the prompt echoed back) are not output.

use crate::cli::names_connection_failure;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use switchyard_contracts::event::{
    FileChangeKind, FileChanged, HumanLoopKind, MessageCompleted, MessageDelta, ReasoningDelta,
    ToolCompleted, ToolOutput, ToolStarted, ToolStatus, Usage,
};
use switchyard_contracts::{FailureReason, RunEventKind};

/// Event types the translator reads or deliberately ignores (server housekeeping,
/// echoes of what it already knows); others are unfamiliar and logged.
const KNOWN_EVENTS: &[&str] = &[
    "server.connected",
    "server.heartbeat",
    "session.created",
    "session.updated",
    "session.status",
    "session.idle",
    "session.error",
    "session.diff",
    "session.compacted",
    "message.updated",
    "message.removed",
    "message.part.updated",
    "message.part.removed",
    "message.part.delta",
    "permission.asked",
    "permission.replied",
    "question.asked",
    "question.replied",
    "question.rejected",
    "file.edited",
    "file.watcher.updated",
    "todo.updated",
    "plugin.added",
    "catalog.updated",
    "reference.updated",
    "integration.updated",
    "lsp.updated",
    "project.updated",
    "vcs.branch.updated",
    "command.executed",
];

/// The event's type, if it is not one the translator knows.
pub(crate) fn unfamiliar_type(event: &Value) -> Option<&str> {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("(no type)");
    (!KNOWN_EVENTS.contains(&kind)).then_some(kind)
}

/// What the driver should do after one event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Append this run event.
    Emit(RunEventKind),
    /// opencode waits for a permission decision.
    Ask(PermissionAsk),
    /// The question tool asks the user something; there is no channel for free-text
    /// answers, so the driver rejects it.
    DeclineQuestion(String),
    /// A model API call failed and opencode will retry it.
    Retry(RetryNotice),
    /// The session went idle after having been busy: the turn is over.
    Idle,
}

/// A `permission.asked` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PermissionAsk {
    pub(crate) id: String,
    pub(crate) session_id: String,
    /// `bash`, `edit`, `webfetch`, …
    pub(crate) permission: String,
    pub(crate) patterns: Vec<String>,
    pub(crate) metadata: Value,
    pub(crate) call_id: Option<String>,
}

impl PermissionAsk {
    pub(crate) fn kind(&self) -> HumanLoopKind {
        match self.permission.as_str() {
            "bash" => HumanLoopKind::Command,
            "edit" | "write" | "patch" | "multiedit" => HumanLoopKind::FileChange,
            _ => HumanLoopKind::Permission,
        }
    }

    /// One line a human can decide on; paths inside `workspace` are shown relative.
    pub(crate) fn prompt(&self, workspace: Option<&Path>) -> String {
        let metadata_str = |key: &str| self.metadata.get(key).and_then(Value::as_str);
        match self.kind() {
            HumanLoopKind::Command => match metadata_str("command") {
                Some(command) => format!("Run `{command}`?"),
                None => format!("Run `{}`?", self.patterns.join(" && ")),
            },
            HumanLoopKind::FileChange => {
                let path = metadata_str("filepath")
                    .or_else(|| metadata_str("filePath"))
                    .map(|path| relative_to(path, workspace))
                    .unwrap_or_else(|| self.patterns.join(", "));
                format!("Change {path}?")
            }
            HumanLoopKind::Permission if self.patterns.is_empty() => {
                format!("Allow {}?", self.permission)
            }
            HumanLoopKind::Permission => {
                format!(
                    "Allow {} for {}?",
                    self.permission,
                    self.patterns.join(", ")
                )
            }
        }
    }

    /// Details for a richer UI.
    pub(crate) fn details(&self) -> Value {
        serde_json::json!({
            "provider": "opencode",
            "permissionId": self.id,
            "sessionId": self.session_id,
            "permission": self.permission,
            "patterns": self.patterns,
            "metadata": self.metadata,
            "callId": self.call_id,
        })
    }
}

/// A model call that failed and that opencode makes again: a `session.status` `retry`
/// notice, or a model stream that ended without its finish (opencode then calls the
/// model again with the partial answer, without end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryNotice {
    pub(crate) attempt: u64,
    pub(crate) message: String,
    pub(crate) cause: RetryCause,
}

/// Why opencode calls the model again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryCause {
    /// opencode's own retry of a failed request (`session.status` `retry`).
    Status,
    /// The response stream ended without a finish reason (cut mid-answer).
    CutStream,
}

/// What a [`RetryCause::CutStream`] notice says.
const CUT_STREAM: &str = "the model's response stream ended without a finish reason \
                          (cut mid-answer; opencode calls the model again)";

impl RetryNotice {
    /// Whether the request never reached the model API (the retry is no sign of life).
    pub(crate) fn unreachable(&self) -> bool {
        self.cause == RetryCause::Status && names_connection_failure(&self.message)
    }

    /// The failure this retry points at, for when the retry budget is spent: opencode
    /// only gives the error's message, so a rate limit or a connection failure is
    /// recognised by its words.
    pub(crate) fn reason(&self) -> FailureReason {
        if self.cause == RetryCause::CutStream {
            return FailureReason::ProviderError;
        }
        if self.unreachable() {
            return FailureReason::ProviderUnreachable;
        }
        let message = self.message.to_ascii_lowercase();
        let rate_limited = [
            "rate limit",
            "rate_limit",
            "ratelimit",
            "too many requests",
            "429",
            "quota",
        ]
        .iter()
        .any(|marker| message.contains(marker));
        if rate_limited {
            FailureReason::RateLimited
        } else {
            FailureReason::ProviderError
        }
    }
}

/// How opencode reported the end of a turn that went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// `MessageAbortedError`: the session was aborted.
    Aborted,
    Failed {
        reason: FailureReason,
        detail: String,
    },
}

/// Classifies a `session.error` / assistant `info.error` object
/// (`{"name": "APIError", "data": {"statusCode": 401, "message": …}}`).
pub(crate) fn classify_error(error: &Value) -> ErrorClass {
    let name = error.get("name").and_then(Value::as_str).unwrap_or("");
    let data = error.get("data").unwrap_or(&Value::Null);
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let with_message = |prefix: String| {
        if message.is_empty() {
            prefix
        } else {
            format!("{prefix}: {message}")
        }
    };
    let failed = |reason, detail| ErrorClass::Failed { reason, detail };
    match name {
        "MessageAbortedError" => ErrorClass::Aborted,
        "APIError" => {
            let status = data.get("statusCode").and_then(Value::as_u64);
            let reason = match status {
                Some(401 | 403) => FailureReason::AuthInvalid,
                Some(429) => FailureReason::RateLimited,
                None if names_connection_failure(&message) => FailureReason::ProviderUnreachable,
                _ => FailureReason::ProviderError,
            };
            let prefix = match status {
                Some(status) => format!("the model API answered HTTP {status}"),
                None => "the model API call failed".to_owned(),
            };
            failed(reason, with_message(prefix))
        }
        "ProviderAuthError" => failed(
            FailureReason::AuthInvalid,
            with_message("the model provider rejected the credentials".to_owned()),
        ),
        "MessageOutputLengthError"
        | "ContextOverflowError"
        | "ContentFilterError"
        | "StructuredOutputError"
        | "UnknownError" => failed(
            FailureReason::ProviderError,
            with_message(format!("opencode reported {name}")),
        ),
        _ => failed(
            FailureReason::UnknownFailure,
            with_message(format!(
                "opencode reported an unknown error {}",
                if name.is_empty() { "(no name)" } else { name }
            )),
        ),
    }
}

/// How a turn ended, once the session is idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Succeeded,
    NoOutput,
    Aborted,
    Failed {
        reason: FailureReason,
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Reasoning,
}

#[derive(Debug)]
struct TextPart {
    kind: PartKind,
    /// What was emitted as deltas so far.
    emitted: String,
    completed: bool,
    /// Rebuilt from the REST API after a re-subscription: the deltas the new stream
    /// brings for it may already be in `emitted`, so they are dropped and the rest
    /// comes with the part's final update.
    resynced: bool,
}

#[derive(Debug, Default)]
struct ToolCall {
    started: bool,
    /// The tool output emitted so far.
    output: String,
    done: bool,
}

/// The translation state of one turn of one session.
#[derive(Debug)]
pub(crate) struct Translator {
    session_id: String,
    workspace: Option<PathBuf>,
    /// The session was seen busy: an idle after this ends the turn.
    busy: bool,
    roles: HashMap<String, Role>,
    parts: HashMap<String, TextPart>,
    /// Text parts in the order they appeared, to complete leftovers in order.
    text_order: Vec<String>,
    tools: HashMap<String, ToolCall>,
    /// Tool calls whose permission a human denied.
    declined: HashSet<String>,
    error: Option<Value>,
    /// Any assistant output: text, reasoning or a tool call.
    output: bool,
    /// The model request is under way (an assistant message exists).
    model_called: bool,
    /// Handling events rebuilt after a re-subscription (see [`Translator::recover`]).
    resyncing: bool,
    /// What was already passed on, so that what a re-subscription brings twice (the
    /// REST API's view and the new stream's) is passed on once: `step-finish` parts,
    /// permission requests, questions, and the last retry notice.
    usage_parts: HashSet<String>,
    asked: HashSet<String>,
    questions: HashSet<String>,
    last_retry: Option<RetryNotice>,
    /// Model calls of this turn whose stream ended without a finish reason.
    cut_streams: u64,
}

impl Translator {
    pub(crate) fn new(session_id: impl Into<String>, workspace: Option<&Path>) -> Self {
        Self {
            session_id: session_id.into(),
            workspace: workspace.map(Path::to_path_buf),
            busy: false,
            roles: HashMap::new(),
            parts: HashMap::new(),
            text_order: Vec::new(),
            tools: HashMap::new(),
            declined: HashSet::new(),
            error: None,
            output: false,
            model_called: false,
            resyncing: false,
            usage_parts: HashSet::new(),
            asked: HashSet::new(),
            questions: HashSet::new(),
            last_retry: None,
            cut_streams: 0,
        }
    }

    /// Whether the turn produced assistant output (text, reasoning or a tool call).
    #[cfg(test)]
    pub(crate) fn had_output(&self) -> bool {
        self.output
    }

    /// Whether a model request was made in this turn (an assistant message exists).
    pub(crate) fn model_called(&self) -> bool {
        self.model_called
    }

    /// Whether the event concerns this run's session (for liveness).
    pub(crate) fn concerns_session(&self, event: &Value) -> bool {
        session_of(event) == Some(self.session_id.as_str())
    }

    /// Whether the event says a model response stream started (a `step-start` part of
    /// this session): the model answered, which counts as its first output for
    /// liveness, so that a stream that then goes silent is an inactivity `timeout`
    /// as on the other providers, not a model that never answered.
    pub(crate) fn starts_model_stream(&self, event: &Value) -> bool {
        event.get("type").and_then(Value::as_str) == Some("message.part.updated")
            && self.concerns_session(event)
            && event
                .pointer("/properties/part/type")
                .and_then(Value::as_str)
                == Some("step-start")
    }

    /// A human denied the permission of this tool call: its failure is a decline.
    pub(crate) fn declined(&mut self, call_id: &str) {
        self.declined.insert(call_id.to_owned());
    }

    /// Translates one event.
    pub(crate) fn handle(&mut self, event: &Value) -> Vec<Step> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let props = event.get("properties").unwrap_or(&Value::Null);
        match kind {
            "permission.asked" => {
                return permission_ask(props)
                    .filter(|ask| self.asked.insert(ask.id.clone()))
                    .map(Step::Ask)
                    .into_iter()
                    .collect();
            }
            "question.asked" => {
                return str_field(props, "id")
                    .filter(|id| self.questions.insert((*id).to_owned()))
                    .map(|id| Step::DeclineQuestion(id.to_owned()))
                    .into_iter()
                    .collect();
            }
            _ => {}
        }
        if !self.concerns_session(event) {
            return Vec::new();
        }
        match kind {
            "session.status" => self.status(props.get("status").unwrap_or(&Value::Null)),
            "session.idle" => self.idle(),
            "session.error" => {
                if let Some(error) = props.get("error").filter(|e| e.is_object()) {
                    self.record_error(error);
                }
                Vec::new()
            }
            "message.updated" => {
                self.message_updated(props.get("info").unwrap_or(&Value::Null));
                Vec::new()
            }
            "message.part.updated" => self.part_updated(props.get("part").unwrap_or(&Value::Null)),
            "message.part.delta" => self.part_delta(props),
            _ => Vec::new(),
        }
    }

    /// Translates the events rebuilt from the server's REST API after the event stream
    /// was re-subscribed (see `recover.rs`): only what was not passed on yet comes out.
    /// Text parts still streaming are marked resynced (see [`TextPart::resynced`]).
    pub(crate) fn recover(&mut self, events: &[Value]) -> Vec<Step> {
        self.resyncing = true;
        let steps = events.iter().flat_map(|event| self.handle(event)).collect();
        self.resyncing = false;
        steps
    }

    /// Completes text parts that never got their final update (the turn ended first).
    pub(crate) fn finish(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        for id in &self.text_order {
            if let Some(part) = self.parts.get_mut(id)
                && part.kind == PartKind::Text
                && !part.completed
                && !part.emitted.is_empty()
            {
                part.completed = true;
                steps.push(Step::Emit(RunEventKind::MessageCompleted(
                    MessageCompleted {
                        message_id: id.clone(),
                        text: part.emitted.clone(),
                    },
                )));
            }
        }
        steps
    }

    /// How the turn ended, judged at idle.
    pub(crate) fn verdict(&self) -> Verdict {
        if let Some(error) = &self.error {
            return match classify_error(error) {
                ErrorClass::Aborted => Verdict::Aborted,
                ErrorClass::Failed { reason, detail } => Verdict::Failed { reason, detail },
            };
        }
        if self.output {
            Verdict::Succeeded
        } else {
            Verdict::NoOutput
        }
    }

    fn status(&mut self, status: &Value) -> Vec<Step> {
        match status.get("type").and_then(Value::as_str) {
            Some("busy") => {
                self.busy = true;
                Vec::new()
            }
            Some("idle") => self.idle(),
            Some("retry") => {
                let notice = RetryNotice {
                    attempt: status.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                    message: str_field(status, "message").unwrap_or("").to_owned(),
                    cause: RetryCause::Status,
                };
                if self.last_retry.as_ref() == Some(&notice) {
                    return Vec::new();
                }
                self.last_retry = Some(notice.clone());
                vec![Step::Retry(notice)]
            }
            _ => Vec::new(),
        }
    }

    fn idle(&mut self) -> Vec<Step> {
        if std::mem::take(&mut self.busy) {
            vec![Step::Idle]
        } else {
            Vec::new()
        }
    }

    fn record_error(&mut self, error: &Value) {
        // The first error is the cause; an abort that follows it changes nothing.
        if self.error.is_none() {
            self.error = Some(error.clone());
        }
    }

    fn message_updated(&mut self, info: &Value) {
        let Some(id) = str_field(info, "id") else {
            return;
        };
        let role = match str_field(info, "role") {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return,
        };
        self.roles.insert(id.to_owned(), role);
        if role == Role::Assistant {
            self.model_called = true;
            if let Some(error) = info.get("error").filter(|e| e.is_object()) {
                self.record_error(error);
            }
        }
    }

    fn is_user_message(&self, message_id: Option<&str>) -> bool {
        message_id.and_then(|id| self.roles.get(id)) == Some(&Role::User)
    }

    fn part_updated(&mut self, part: &Value) -> Vec<Step> {
        let Some(part_id) = str_field(part, "id") else {
            return Vec::new();
        };
        if self.is_user_message(str_field(part, "messageID")) {
            return Vec::new();
        }
        match str_field(part, "type") {
            Some("text") => {
                let hidden = part.get("synthetic").and_then(Value::as_bool) == Some(true)
                    || part.get("ignored").and_then(Value::as_bool) == Some(true);
                if hidden {
                    return Vec::new();
                }
                let ended = part.pointer("/time/end").is_some_and(|end| !end.is_null());
                self.text_update(part_id, PartKind::Text, str_field(part, "text"), ended)
            }
            Some("reasoning") => {
                self.text_update(part_id, PartKind::Reasoning, str_field(part, "text"), false)
            }
            Some("tool") => self.tool_update(part_id, part),
            Some("step-finish") => self.step_finished(part_id, part),
            _ => Vec::new(),
        }
    }

    /// The usage of a model call, once per `step-finish` part; and a cut stream
    /// (reason `unknown`: no finish reason came) as a retry, since opencode loops on it.
    fn step_finished(&mut self, part_id: &str, part: &Value) -> Vec<Step> {
        if !self.usage_parts.insert(part_id.to_owned()) {
            return Vec::new();
        }
        let mut steps: Vec<Step> = usage(part)
            .map(|usage| Step::Emit(RunEventKind::Usage(usage)))
            .into_iter()
            .collect();
        if str_field(part, "reason") == Some("unknown") {
            self.cut_streams += 1;
            steps.push(Step::Retry(RetryNotice {
                attempt: self.cut_streams,
                message: CUT_STREAM.to_owned(),
                cause: RetryCause::CutStream,
            }));
        }
        steps
    }

    fn part_delta(&mut self, props: &Value) -> Vec<Step> {
        let (Some(part_id), Some(delta)) = (str_field(props, "partID"), str_field(props, "delta"))
        else {
            return Vec::new();
        };
        if str_field(props, "field") != Some("text")
            || delta.is_empty()
            || self.is_user_message(str_field(props, "messageID"))
        {
            return Vec::new();
        }
        let part = self.part_entry(part_id, PartKind::Text);
        if part.completed || part.resynced {
            return Vec::new();
        }
        part.emitted.push_str(delta);
        let kind = part.kind;
        self.output = true;
        vec![Step::Emit(text_event(kind, part_id, delta))]
    }

    fn part_entry(&mut self, part_id: &str, kind: PartKind) -> &mut TextPart {
        if !self.parts.contains_key(part_id) {
            self.text_order.push(part_id.to_owned());
        }
        self.parts
            .entry(part_id.to_owned())
            .or_insert_with(|| TextPart {
                kind,
                emitted: String::new(),
                completed: false,
                resynced: false,
            })
    }

    /// A full-text update: emits what the deltas have not covered yet, then the
    /// completion when the part ended.
    fn text_update(
        &mut self,
        part_id: &str,
        kind: PartKind,
        text: Option<&str>,
        ended: bool,
    ) -> Vec<Step> {
        let resyncing = self.resyncing;
        let part = self.part_entry(part_id, kind);
        if part.completed {
            return Vec::new();
        }
        part.resynced |= resyncing;
        let mut steps = Vec::new();
        let text = text.unwrap_or("");
        if let Some(rest) = text.strip_prefix(part.emitted.as_str())
            && !rest.is_empty()
        {
            steps.push(Step::Emit(text_event(part.kind, part_id, rest)));
            part.emitted = text.to_owned();
        }
        let mut completed = None;
        if ended && part.kind == PartKind::Text {
            part.completed = true;
            // The final text is authoritative even if it diverged from the deltas.
            let final_text = if text.is_empty() {
                part.emitted.clone()
            } else {
                text.to_owned()
            };
            if !final_text.is_empty() {
                completed = Some(final_text);
            }
        }
        if !part.emitted.is_empty() {
            self.output = true;
        }
        if let Some(text) = completed {
            steps.push(Step::Emit(RunEventKind::MessageCompleted(
                MessageCompleted {
                    message_id: part_id.to_owned(),
                    text,
                },
            )));
        }
        steps
    }

    fn tool_update(&mut self, part_id: &str, part: &Value) -> Vec<Step> {
        let state = part.get("state").unwrap_or(&Value::Null);
        let status = str_field(state, "status").unwrap_or("");
        if !matches!(status, "running" | "completed" | "error") {
            // `pending`: the input is still streaming in; nothing to show yet.
            return Vec::new();
        }
        let call_id = str_field(part, "callID").unwrap_or(part_id).to_owned();
        let name = str_field(part, "tool").unwrap_or("tool").to_owned();
        let declined = self.declined.contains(&call_id);
        let workspace = self.workspace.clone();
        let call = self.tools.entry(part_id.to_owned()).or_default();
        if call.done {
            return Vec::new();
        }
        self.output = true;
        let mut steps = Vec::new();
        let input = state.get("input").cloned().unwrap_or(Value::Null);
        if !call.started {
            call.started = true;
            steps.push(Step::Emit(RunEventKind::ToolStarted(ToolStarted {
                call_id: call_id.clone(),
                name: name.clone(),
                input: input.clone(),
            })));
        }
        let output = match status {
            "completed" => str_field(state, "output"),
            _ => state.pointer("/metadata/output").and_then(Value::as_str),
        };
        if let Some(output) = output {
            let rest = match output.strip_prefix(call.output.as_str()) {
                Some(rest) => rest.to_owned(),
                // Rewritten (e.g. truncated) output: only show it if nothing was shown.
                None if call.output.is_empty() => output.to_owned(),
                None => String::new(),
            };
            if !rest.is_empty() {
                call.output.push_str(&rest);
                steps.push(Step::Emit(RunEventKind::ToolOutput(ToolOutput {
                    call_id: call_id.clone(),
                    output: rest,
                })));
            }
        }
        let exit_code = state
            .pointer("/metadata/exit")
            .and_then(Value::as_i64)
            .and_then(|code| i32::try_from(code).ok());
        match status {
            "completed" => {
                call.done = true;
                let status = match exit_code {
                    Some(code) if code != 0 => ToolStatus::Failed,
                    _ => ToolStatus::Succeeded,
                };
                steps.push(Step::Emit(RunEventKind::ToolCompleted(ToolCompleted {
                    call_id,
                    status,
                    exit_code,
                })));
                if let Some(change) = file_change(&name, &input, state, workspace.as_deref()) {
                    steps.push(Step::Emit(RunEventKind::FileChanged(change)));
                }
            }
            "error" => {
                call.done = true;
                let error = str_field(state, "error").unwrap_or("");
                let rejected = declined || error.contains("rejected permission");
                if !error.is_empty() && call.output.is_empty() {
                    steps.push(Step::Emit(RunEventKind::ToolOutput(ToolOutput {
                        call_id: call_id.clone(),
                        output: error.to_owned(),
                    })));
                }
                steps.push(Step::Emit(RunEventKind::ToolCompleted(ToolCompleted {
                    call_id,
                    status: if rejected {
                        ToolStatus::Declined
                    } else {
                        ToolStatus::Failed
                    },
                    exit_code,
                })));
            }
            _ => {}
        }
        steps
    }
}

fn text_event(kind: PartKind, part_id: &str, text: &str) -> RunEventKind {
    match kind {
        PartKind::Text => RunEventKind::MessageDelta(MessageDelta {
            message_id: part_id.to_owned(),
            text: text.to_owned(),
        }),
        PartKind::Reasoning => RunEventKind::ReasoningDelta(ReasoningDelta {
            text: text.to_owned(),
        }),
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The session an event belongs to (`properties.sessionID`, or the part's / info's).
fn session_of(event: &Value) -> Option<&str> {
    let props = event.get("properties")?;
    str_field(props, "sessionID")
        .or_else(|| props.get("part").and_then(|p| str_field(p, "sessionID")))
        .or_else(|| props.get("info").and_then(|i| str_field(i, "sessionID")))
}

fn permission_ask(props: &Value) -> Option<PermissionAsk> {
    Some(PermissionAsk {
        id: str_field(props, "id")?.to_owned(),
        session_id: str_field(props, "sessionID").unwrap_or("").to_owned(),
        permission: str_field(props, "permission")
            .unwrap_or("permission")
            .to_owned(),
        patterns: props
            .get("patterns")
            .and_then(Value::as_array)
            .map(|patterns| {
                patterns
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        metadata: props.get("metadata").cloned().unwrap_or(Value::Null),
        call_id: props
            .pointer("/tool/callID")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The usage of one model call (a `step-finish` part).
fn usage(part: &Value) -> Option<Usage> {
    let tokens = part.get("tokens")?;
    let count = |pointer: &str| {
        tokens
            .pointer(pointer)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite() && *n >= 0.0)
            // Token counts are integers sent as JSON numbers.
            .map(|n| n as u64)
    };
    Some(Usage {
        input_tokens: count("/input").unwrap_or(0),
        output_tokens: count("/output").unwrap_or(0),
        cached_input_tokens: count("/cache/read").filter(|n| *n > 0),
    })
}

/// `path` relative to `workspace` when it is inside it, else as it is.
fn relative_to(path: &str, workspace: Option<&Path>) -> String {
    workspace
        .and_then(|workspace| Path::new(path).strip_prefix(workspace).ok())
        .map(|relative| relative.display().to_string())
        .unwrap_or_else(|| path.to_owned())
}

/// The file change a completed file tool made.
fn file_change(
    tool: &str,
    input: &Value,
    state: &Value,
    workspace: Option<&Path>,
) -> Option<FileChanged> {
    let change = match tool {
        "write" => {
            if state.pointer("/metadata/exists").and_then(Value::as_bool) == Some(true) {
                FileChangeKind::Modified
            } else {
                FileChangeKind::Added
            }
        }
        "edit" | "multiedit" => FileChangeKind::Modified,
        _ => return None,
    };
    let path = str_field(input, "filePath").or_else(|| str_field(input, "path"))?;
    let path = relative_to(path, workspace);
    let diff = state
        .pointer("/metadata/diff")
        .and_then(Value::as_str)
        .filter(|diff| !diff.is_empty())
        .map(str::to_owned);
    Some(FileChanged { path, change, diff })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Copies of the captured transcripts from `shared/protocol-samples/opencode/`.
    const SAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/providers/opencode/testdata"
    );

    /// The SSE events of a captured `serve-sse-*.jsonl` transcript, in order.
    fn sse_events(name: &str) -> Vec<Value> {
        let path = format!("{SAMPLES}/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["dir"] == "sse")
            .map(|line| line["event"].clone())
            .collect()
    }

    fn session_in(events: &[Value]) -> String {
        events
            .iter()
            .find_map(|e| session_of(e).map(str::to_owned))
            .unwrap()
    }

    /// Feeds a transcript until the turn ends; returns the steps and whether it ended.
    fn play(name: &str) -> (Translator, Vec<Step>, bool) {
        let events = sse_events(name);
        let mut translator = Translator::new(session_in(&events), None);
        let mut steps = Vec::new();
        for event in &events {
            let out = translator.handle(event);
            let idle = out.contains(&Step::Idle);
            steps.extend(out);
            if idle {
                steps.extend(translator.finish());
                return (translator, steps, true);
            }
        }
        (translator, steps, false)
    }

    fn emitted(steps: &[Step]) -> Vec<&RunEventKind> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Emit(kind) => Some(kind),
                _ => None,
            })
            .collect()
    }

    fn types(steps: &[Step]) -> Vec<&'static str> {
        emitted(steps).iter().map(|k| k.type_name()).collect()
    }

    #[test]
    fn a_permitted_tool_turn_becomes_tool_text_and_usage_events() {
        let (translator, steps, ended) = play("serve-sse-permission-once.jsonl");
        assert!(ended);
        let ask = steps
            .iter()
            .find_map(|s| match s {
                Step::Ask(ask) => Some(ask),
                _ => None,
            })
            .unwrap();
        assert_eq!(ask.id, "per_213311423001AXeMWNgsR5Eb6M");
        assert_eq!(ask.kind(), HumanLoopKind::Command);
        assert_eq!(
            ask.prompt(None),
            "Run `echo hello from fake model > hello.txt && cat hello.txt`?"
        );
        assert_eq!(ask.call_id.as_deref(), Some("call_b62c8cf7008a4c6d"));

        assert_eq!(
            types(&steps),
            [
                "tool.started",
                "tool.output",
                "tool.completed",
                "usage",
                "message.delta",
                "message.delta",
                "message.delta",
                "message.delta",
                "message.delta",
                "message.delta",
                "message.completed",
                "usage",
            ]
        );
        let events = emitted(&steps);
        assert_eq!(
            events[0],
            &RunEventKind::ToolStarted(ToolStarted {
                call_id: "call_b62c8cf7008a4c6d".into(),
                name: "bash".into(),
                input: json!({"command": "echo hello from fake model > hello.txt && cat hello.txt", "description": "Create hello.txt"}),
            })
        );
        assert_eq!(
            events[1],
            &RunEventKind::ToolOutput(ToolOutput {
                call_id: "call_b62c8cf7008a4c6d".into(),
                output: "hello from fake model\n".into(),
            })
        );
        assert_eq!(
            events[2],
            &RunEventKind::ToolCompleted(ToolCompleted {
                call_id: "call_b62c8cf7008a4c6d".into(),
                status: ToolStatus::Succeeded,
                exit_code: Some(0),
            })
        );
        assert_eq!(
            events[3],
            &RunEventKind::Usage(Usage {
                input_tokens: 100,
                output_tokens: 20,
                cached_input_tokens: None,
            })
        );
        let deltas: String = events
            .iter()
            .filter_map(|k| match k {
                RunEventKind::MessageDelta(d) => Some(d.text.as_str()),
                _ => None,
            })
            .collect();
        let final_text = "Done. I ran the command and created hello.txt. FINAL_ANSWER_OK";
        assert_eq!(deltas, final_text);
        assert_eq!(
            events[10],
            &RunEventKind::MessageCompleted(MessageCompleted {
                message_id: "prt_21331153a001pUP19CU5TDWaiT".into(),
                text: final_text.into(),
            })
        );
        // The prompt echoed back as the user's text part is not output.
        assert!(!deltas.contains("Create hello.txt please"));
        assert_eq!(translator.verdict(), Verdict::Succeeded);
    }

    #[test]
    fn a_rejected_permission_declines_the_tool_and_the_turn_still_succeeds() {
        let events = sse_events("serve-sse-permission-reject.jsonl");
        let mut translator = Translator::new(session_in(&events), None);
        let mut steps = Vec::new();
        for event in &events {
            for step in translator.handle(event) {
                if let Step::Ask(ask) = &step {
                    translator.declined(ask.call_id.as_deref().unwrap());
                }
                steps.push(step);
            }
            if steps.contains(&Step::Idle) {
                break;
            }
        }
        assert!(steps.contains(&Step::Idle));
        let completed = emitted(&steps)
            .into_iter()
            .find_map(|k| match k {
                RunEventKind::ToolCompleted(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(completed.status, ToolStatus::Declined);
        assert!(types(&steps).contains(&"tool.output"));
        assert!(!types(&steps).contains(&"message.delta"));
        assert_eq!(translator.verdict(), Verdict::Succeeded);
    }

    #[test]
    fn an_http_401_is_auth_invalid() {
        let (translator, steps, ended) = play("serve-sse-http401.jsonl");
        assert!(ended);
        assert!(types(&steps).is_empty());
        match translator.verdict() {
            Verdict::Failed { reason, detail } => {
                assert_eq!(reason, FailureReason::AuthInvalid);
                assert!(detail.contains("401"), "{detail}");
                assert!(detail.contains("Incorrect API key provided"), "{detail}");
            }
            other => panic!("unexpected verdict {other:?}"),
        }
    }

    #[test]
    fn retries_are_reported_and_an_abort_ends_the_turn() {
        let (translator, steps, ended) = play("serve-sse-http500-retry-then-abort.jsonl");
        assert!(ended);
        let retries: Vec<&RetryNotice> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Retry(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(retries.len(), 3);
        assert_eq!(retries[0].attempt, 1);
        assert_eq!(retries[0].message, "fake internal error");
        assert_eq!(retries[0].reason(), FailureReason::ProviderError);
        assert!(translator.model_called());
        assert_eq!(translator.verdict(), Verdict::NoOutput);
    }

    #[test]
    fn an_aborted_slow_stream_keeps_its_deltas_and_reports_the_abort() {
        let (translator, steps, ended) = play("serve-sse-abort.jsonl");
        assert!(ended);
        let kinds = types(&steps);
        assert_eq!(kinds.iter().filter(|t| **t == "message.delta").count(), 4);
        // The final part update came after the idle: the driver completes it.
        assert_eq!(kinds.last(), Some(&"message.completed"));
        assert_eq!(translator.verdict(), Verdict::Aborted);
    }

    #[test]
    fn errors_are_classified_by_status_code_and_name() {
        let api = |status: u64| json!({"name": "APIError", "data": {"message": "m", "statusCode": status, "isRetryable": false}});
        let reason = |error: &Value| match classify_error(error) {
            ErrorClass::Failed { reason, .. } => Some(reason),
            ErrorClass::Aborted => None,
        };
        assert_eq!(reason(&api(401)), Some(FailureReason::AuthInvalid));
        assert_eq!(reason(&api(403)), Some(FailureReason::AuthInvalid));
        assert_eq!(reason(&api(429)), Some(FailureReason::RateLimited));
        assert_eq!(reason(&api(500)), Some(FailureReason::ProviderError));
        assert_eq!(reason(&api(503)), Some(FailureReason::ProviderError));
        assert_eq!(reason(&api(400)), Some(FailureReason::ProviderError));
        assert_eq!(
            reason(
                &json!({"name": "ProviderAuthError", "data": {"providerID": "x", "message": "no key"}})
            ),
            Some(FailureReason::AuthInvalid)
        );
        assert_eq!(
            reason(&json!({"name": "UnknownError", "data": {"message": "boom"}})),
            Some(FailureReason::ProviderError)
        );
        assert_eq!(
            reason(&json!({"name": "SomethingNew"})),
            Some(FailureReason::UnknownFailure)
        );
        assert_eq!(
            classify_error(&json!({"name": "MessageAbortedError", "data": {"message": "Aborted"}})),
            ErrorClass::Aborted
        );
        let retry = |message: &str| RetryNotice {
            attempt: 1,
            message: message.into(),
            cause: RetryCause::Status,
        };
        assert_eq!(
            retry("Rate limit exceeded").reason(),
            FailureReason::RateLimited
        );
        assert_eq!(
            retry("Too Many Requests").reason(),
            FailureReason::RateLimited
        );
        assert_eq!(retry("Overloaded").reason(), FailureReason::ProviderError);
        let refused = retry(
            "Cannot connect to API: Unable to connect. Is the computer able to access the url?",
        );
        assert!(refused.unreachable());
        assert_eq!(refused.reason(), FailureReason::ProviderUnreachable);
        assert!(!retry("fake internal error").unreachable());
        assert_eq!(
            reason(
                &json!({"name": "APIError", "data": {"message": "Unable to connect. Is the computer able to access the url?", "isRetryable": true}})
            ),
            Some(FailureReason::ProviderUnreachable)
        );
    }

    #[test]
    fn a_step_start_of_the_session_starts_the_model_stream() {
        let translator = Translator::new("ses_1", None);
        let part = |session: &str, kind: &str| {
            json!({"type": "message.part.updated", "properties": {"sessionID": session, "part": {
                "id": "prt_1", "messageID": "msg_a", "sessionID": session, "type": kind
            }}})
        };
        assert!(translator.starts_model_stream(&part("ses_1", "step-start")));
        assert!(!translator.starts_model_stream(&part("ses_other", "step-start")));
        assert!(!translator.starts_model_stream(&part("ses_1", "step-finish")));
        assert!(!translator.starts_model_stream(&json!({"type": "session.idle"})));
    }

    #[test]
    fn a_stream_cut_before_its_finish_is_a_retry_of_its_own() {
        let mut translator = Translator::new("ses_1", None);
        let step_finish = |id: &str, reason: &str| {
            json!({"type": "message.part.updated", "properties": {"sessionID": "ses_1", "part": {
                "id": id, "messageID": "msg_a", "sessionID": "ses_1", "type": "step-finish",
                "reason": reason, "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"write": 0, "read": 0}}, "cost": 0
            }}})
        };
        let cut = |steps: Vec<Step>| -> Vec<RetryNotice> {
            steps
                .into_iter()
                .filter_map(|s| match s {
                    Step::Retry(r) => Some(r),
                    _ => None,
                })
                .collect()
        };
        assert!(cut(translator.handle(&step_finish("prt_1", "stop"))).is_empty());
        assert!(cut(translator.handle(&step_finish("prt_2", "tool-calls"))).is_empty());
        let first = cut(translator.handle(&step_finish("prt_3", "unknown")));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempt, 1);
        assert_eq!(first[0].cause, RetryCause::CutStream);
        assert_eq!(first[0].reason(), FailureReason::ProviderError);
        assert!(!first[0].unreachable());
        // The same part again (a re-subscription's replay) is not a second cut.
        assert!(cut(translator.handle(&step_finish("prt_3", "unknown"))).is_empty());
        let second = cut(translator.handle(&step_finish("prt_4", "unknown")));
        assert_eq!(second[0].attempt, 2);
    }

    #[test]
    fn other_sessions_unknown_events_and_garbage_produce_nothing() {
        let mut translator = Translator::new("ses_mine", None);
        for event in [
            json!({"type": "message.part.delta", "properties": {"sessionID": "ses_other", "messageID": "msg_1", "partID": "prt_1", "field": "text", "delta": "hi"}}),
            json!({"type": "session.idle", "properties": {"sessionID": "ses_other"}}),
            json!({"type": "brand.new", "properties": {"sessionID": "ses_mine", "x": [1, 2]}}),
            json!({"type": "server.heartbeat", "properties": {}}),
            json!({"type": 7}),
            json!([1, 2, 3]),
            json!(null),
            json!({"type": "message.part.updated", "properties": {"sessionID": "ses_mine", "part": "nope"}}),
            json!({"type": "message.part.delta", "properties": {"sessionID": "ses_mine", "partID": 3}}),
            // Idle without having been busy: not the end of our turn.
            json!({"type": "session.idle", "properties": {"sessionID": "ses_mine"}}),
        ] {
            assert_eq!(translator.handle(&event), Vec::new(), "{event}");
        }
        assert_eq!(
            unfamiliar_type(&json!({"type": "brand.new"})),
            Some("brand.new")
        );
        assert_eq!(unfamiliar_type(&json!({"type": "session.idle"})), None);
        assert!(!translator.had_output());
    }

    #[test]
    fn a_subagent_permission_is_still_asked() {
        let mut translator = Translator::new("ses_mine", None);
        let steps = translator.handle(&json!({"type": "permission.asked", "properties": {
            "id": "per_1", "sessionID": "ses_child", "permission": "edit",
            "patterns": ["w/src/a.rs"], "metadata": {"filepath": "/w/src/a.rs"}, "always": []}}));
        let [Step::Ask(ask)] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert_eq!(ask.kind(), HumanLoopKind::FileChange);
        assert_eq!(ask.prompt(Some(Path::new("/w"))), "Change src/a.rs?");
        assert_eq!(ask.prompt(None), "Change /w/src/a.rs?");
        assert_eq!(ask.details()["permissionId"], "per_1");
    }

    #[test]
    fn file_tools_report_file_changes_relative_to_the_workspace() {
        let mut translator = Translator::new("ses_1", Some(Path::new("/w/run")));
        let part = |tool: &str, metadata: Value| {
            json!({"type": "message.part.updated", "properties": {"sessionID": "ses_1", "part": {
                "id": format!("prt_{tool}"), "messageID": "msg_1", "sessionID": "ses_1", "type": "tool",
                "tool": tool, "callID": format!("call_{tool}"),
                "state": {"status": "completed", "input": {"filePath": "/w/run/src/new.txt"},
                          "output": "", "title": "", "metadata": metadata, "time": {"start": 1, "end": 2}}}}})
        };
        let changes: Vec<FileChanged> = [
            part("write", json!({"exists": false})),
            part("edit", json!({"diff": "@@ -1 +1 @@"})),
            part("read", json!({})),
        ]
        .iter()
        .flat_map(|event| translator.handle(event))
        .filter_map(|step| match step {
            Step::Emit(RunEventKind::FileChanged(change)) => Some(change),
            _ => None,
        })
        .collect();
        assert_eq!(
            changes,
            [
                FileChanged {
                    path: "src/new.txt".into(),
                    change: FileChangeKind::Added,
                    diff: None
                },
                FileChanged {
                    path: "src/new.txt".into(),
                    change: FileChangeKind::Modified,
                    diff: Some("@@ -1 +1 @@".into())
                },
            ]
        );
    }

    #[test]
    fn reasoning_parts_become_reasoning_deltas() {
        let mut translator = Translator::new("ses_1", None);
        let mut steps = translator.handle(&json!({"type": "message.part.updated", "properties": {"sessionID": "ses_1", "part": {
            "id": "prt_r", "messageID": "msg_1", "sessionID": "ses_1", "type": "reasoning", "text": "", "time": {"start": 1}}}}));
        steps.extend(translator.handle(&json!({"type": "message.part.delta", "properties": {
            "sessionID": "ses_1", "messageID": "msg_1", "partID": "prt_r", "field": "text", "delta": "thinking"}})));
        steps.extend(translator.handle(&json!({"type": "message.part.updated", "properties": {"sessionID": "ses_1", "part": {
            "id": "prt_r", "messageID": "msg_1", "sessionID": "ses_1", "type": "reasoning", "text": "thinking hard", "time": {"start": 1, "end": 2}}}})));
        assert_eq!(
            emitted(&steps),
            [
                &RunEventKind::ReasoningDelta(ReasoningDelta {
                    text: "thinking".into()
                }),
                &RunEventKind::ReasoningDelta(ReasoningDelta {
                    text: " hard".into()
                }),
            ]
        );
        assert!(translator.finish().is_empty());
        assert!(translator.had_output());
    }
}

/// Garbage from `opencode serve`: any bytes on the event stream, any JSON event, never
/// panic the SSE parser, the translator, or the permission and retry handling.
#[cfg(test)]
mod garbage {
    use super::super::api::parse_chunk;
    use super::*;
    use crate::providers::arbitrary;
    use proptest::prelude::*;
    use switchyard_platform::sse::client::Parser;

    const SESSION: &str = "ses_1";

    /// An event of a real-looking type, usually about our session.
    fn event() -> impl Strategy<Value = Value> {
        (
            arbitrary::tagged("type"),
            prop::collection::btree_map(
                prop_oneof![
                    Just("part".to_owned()),
                    Just("info".to_owned()),
                    Just("status".to_owned()),
                    Just("error".to_owned()),
                    Just("field".to_owned()),
                    Just("delta".to_owned()),
                    Just("partID".to_owned()),
                    Just("messageID".to_owned()),
                    Just("id".to_owned()),
                ],
                arbitrary::json(),
                0..5,
            ),
            any::<bool>(),
        )
            .prop_map(|(mut event, props, ours)| {
                let mut props: serde_json::Map<String, Value> = props.into_iter().collect();
                if ours {
                    props.insert("sessionID".to_owned(), SESSION.into());
                    for nested in ["part", "info"] {
                        if let Some(Value::Object(inner)) = props.get_mut(nested) {
                            inner.insert("sessionID".to_owned(), SESSION.into());
                        }
                    }
                }
                event["properties"] = Value::Object(props);
                event
            })
    }

    fn feed(translator: &mut Translator, event: &Value, workspace: Option<&Path>) {
        let _ = unfamiliar_type(event);
        let _ = translator.concerns_session(event);
        for step in translator.handle(event) {
            match step {
                Step::Ask(ask) => {
                    let _ = (ask.kind(), ask.prompt(workspace), ask.details());
                }
                Step::Retry(notice) => {
                    let _ = notice.reason();
                }
                _ => {}
            }
        }
        if let Some(error) = event.pointer("/properties/error") {
            let _ = classify_error(error);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_sequence_of_events_never_panics(
            events in prop::collection::vec(
                prop_oneof![3 => event(), 1 => arbitrary::json()],
                1..16,
            ),
            workspace in prop::option::of(prop_oneof![Just("/work/x".to_owned()), ".{0,8}"]),
        ) {
            let workspace = workspace.map(std::path::PathBuf::from);
            let mut translator = Translator::new(SESSION, workspace.as_deref());
            for event in &events {
                feed(&mut translator, event, workspace.as_deref());
            }
            let _ = translator.finish();
            let _ = translator.verdict();
            let _ = translator.model_called();
        }

        #[test]
        fn any_bytes_on_the_event_stream_never_panic(
            chunks in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..64),
                    arbitrary::line("type").prop_map(|l| format!("data: {l}\n\n").into_bytes()),
                    Just(b"\r\n".to_vec()),
                    Just(b"data:".to_vec()),
                ],
                0..16,
            )
        ) {
            let mut parser = Parser::with_max_event_bytes(64);
            for chunk in &chunks {
                let _ = parse_chunk(&mut parser, chunk);
            }
        }
    }
}
