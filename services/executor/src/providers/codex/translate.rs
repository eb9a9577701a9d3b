//! App-server notifications → Switchyard's provider-neutral events, for one turn.
//!
//! | notification | events |
//! |---|---|
//! | `item/agentMessage/delta` | `message.delta` |
//! | `item/completed` agentMessage | `message.completed` |
//! | `item/reasoning/summaryTextDelta`, `item/reasoning/textDelta` (or a reasoning item that streamed nothing) | `reasoning.delta` |
//! | `item/started` commandExecution / fileChange / mcpToolCall / dynamicToolCall / webSearch | `tool.started` |
//! | `item/commandExecution/outputDelta` (or `aggregatedOutput` when nothing streamed) | `tool.output` |
//! | `item/completed` of a tool item | `tool.completed` (`declined` when a human refused) |
//! | `item/completed` fileChange with status completed | one `file.changed` per file (paths relative to the workspace) |
//! | `thread/tokenUsage/updated` | tallied; one `usage` for the run at its end ([`Translator::take_usage`]) |
//! | `error` | `diagnostic` (kept for the failure classification; a retry because the model API cannot be connected to is [`ApiContact::Unreachable`]) |
//! | `warning`, `configWarning` | `diagnostic` |
//! | `turn/completed` | the end of the turn ([`TurnEnd`]) |
//!
//! Everything else (status changes, rate-limit snapshots, `serverRequest/resolved`,
//! methods added in later versions …) produces nothing. Notifications about another
//! thread (sub-agents) are ignored.

use super::failure;
use super::protocol::{
    ErrorNotification, ItemDelta, ItemEnvelope, TokenUsageBreakdown, TokenUsageUpdated, Turn,
    TurnEnvelope,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use switchyard_contracts::RunEventKind;
use switchyard_contracts::event::{
    Diagnostic, DiagnosticLevel, FileChangeKind, FileChanged, MessageCompleted, MessageDelta,
    ReasoningDelta, ToolCompleted, ToolOutput, ToolStarted, ToolStatus, Usage,
};

/// Notifications codex 0.169 sends that carry nothing for the run's events.
const IGNORED: &[&str] = &[
    "thread/started",
    "thread/status/changed",
    "thread/goal/cleared",
    "thread/name/updated",
    "thread/settings/updated",
    "turn/diff/updated",
    "turn/plan/updated",
    "serverRequest/resolved",
    "account/rateLimits/updated",
    "remoteControl/status/changed",
    "deprecationNotice",
    "item/reasoning/summaryPartAdded",
    "mcpServer/startupStatus/updated",
    "skills/changed",
];

/// What one notification meant.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Translated {
    pub(crate) events: Vec<RunEventKind>,
    /// The model produced something (text, reasoning, a tool call): the run is alive.
    pub(crate) model_output: bool,
    /// `turn/completed` of our turn.
    pub(crate) turn_end: Option<Turn>,
    /// What an `error` notification says about the model API.
    pub(crate) api_contact: Option<ApiContact>,
}

/// Whether the model API could be reached, as an `error` notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiContact {
    /// The request did not reach the API ("Reconnecting... waiting for network"): no
    /// sign of life, whatever codex keeps printing.
    Unreachable,
    /// The API answered (with an error status, or a stream that broke).
    Answered,
    /// A response stream started and then went silent until codex's stream idle
    /// timeout (which applies only once the headers arrived): the model answered.
    StreamWentSilent,
}

/// The state of one turn's translation.
#[derive(Debug, Default)]
pub(crate) struct Translator {
    /// Both the workspace as given and as resolved, to make the CLI's absolute paths relative.
    workspace: Vec<PathBuf>,
    thread_id: Option<String>,
    turn_id: Option<String>,
    /// A non-empty agent message completed.
    agent_output: bool,
    tools_started: HashSet<String>,
    tools_completed: HashSet<String>,
    output_streamed: HashSet<String>,
    reasoning_streamed: HashSet<String>,
    /// fileChange item id → its changes, for the approval prompt.
    file_changes: HashMap<String, Vec<Value>>,
    errors: Vec<ErrorNotification>,
    usage: UsageTally,
}

#[derive(Debug, Default)]
struct UsageTally {
    /// The thread's total before this run's first request (a resumed thread has history).
    baseline: Option<TokenUsageBreakdown>,
    latest: Option<TokenUsageBreakdown>,
}

impl Translator {
    pub(crate) fn new(workspace: &Path) -> Self {
        let mut roots = vec![workspace.to_path_buf()];
        if let Ok(resolved) = workspace.canonicalize()
            && resolved != workspace
        {
            roots.push(resolved);
        }
        Self {
            workspace: roots,
            ..Self::default()
        }
    }

    /// The thread this run drives; notifications about other threads are ignored.
    pub(crate) fn set_thread(&mut self, thread_id: &str) {
        self.thread_id = Some(thread_id.to_owned());
    }

    /// The turn this run started (from the `turn/start` result or `turn/started`).
    pub(crate) fn set_turn(&mut self, turn_id: &str) {
        self.turn_id = Some(turn_id.to_owned());
    }

    pub(crate) fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    pub(crate) fn turn_id(&self) -> Option<&str> {
        self.turn_id.as_deref()
    }

    /// Whether a non-empty agent message was seen in this turn.
    pub(crate) fn agent_output(&self) -> bool {
        self.agent_output
    }

    /// The `error` notifications seen, oldest first.
    pub(crate) fn errors(&self) -> &[ErrorNotification] {
        &self.errors
    }

    pub(crate) fn notification(&mut self, method: &str, params: &Value) -> Translated {
        if let (Some(ours), Some(theirs)) = (
            self.thread_id.as_deref(),
            params.get("threadId").and_then(Value::as_str),
        ) && ours != theirs
        {
            return Translated::default();
        }
        let mut out = Translated::default();
        match method {
            "item/agentMessage/delta" => {
                if let Some(delta) = parse::<ItemDelta>(params)
                    && !delta.delta.is_empty()
                {
                    out.model_output = true;
                    out.events.push(RunEventKind::MessageDelta(MessageDelta {
                        message_id: delta.item_id,
                        text: delta.delta,
                    }));
                }
            }
            "item/reasoning/summaryTextDelta" | "item/reasoning/textDelta" => {
                if let Some(delta) = parse::<ItemDelta>(params)
                    && !delta.delta.is_empty()
                {
                    out.model_output = true;
                    self.reasoning_streamed.insert(delta.item_id);
                    out.events
                        .push(RunEventKind::ReasoningDelta(ReasoningDelta {
                            text: delta.delta,
                        }));
                }
            }
            "item/commandExecution/outputDelta" => {
                if let Some(delta) = parse::<ItemDelta>(params)
                    && !delta.delta.is_empty()
                {
                    out.model_output = true;
                    self.output_streamed.insert(delta.item_id.clone());
                    out.events.push(RunEventKind::ToolOutput(ToolOutput {
                        call_id: delta.item_id,
                        output: delta.delta,
                    }));
                }
            }
            "item/started" => {
                if let Some(ItemEnvelope { item }) = parse(params) {
                    self.item_started(&item, &mut out);
                }
            }
            "item/completed" => {
                if let Some(ItemEnvelope { item }) = parse(params) {
                    self.item_completed(&item, &mut out);
                }
            }
            "thread/tokenUsage/updated" => {
                if let Some(TokenUsageUpdated { token_usage }) = parse(params) {
                    if self.usage.baseline.is_none() {
                        self.usage.baseline = Some(minus(token_usage.total, token_usage.last));
                    }
                    self.usage.latest = Some(token_usage.total);
                }
            }
            "error" => {
                if let Some(error) = parse::<ErrorNotification>(params) {
                    let mut message = error.error.message.clone();
                    if let Some(details) = error.error.additional_details.as_deref()
                        && !details.is_empty()
                    {
                        message = format!("{message} ({details})");
                    }
                    out.api_contact = Some(if failure::is_connection_failure(&error.error) {
                        ApiContact::Unreachable
                    } else if failure::is_idle_timeout(&error.error) {
                        ApiContact::StreamWentSilent
                    } else {
                        ApiContact::Answered
                    });
                    out.events.push(RunEventKind::Diagnostic(Diagnostic {
                        level: if error.will_retry {
                            DiagnosticLevel::Warn
                        } else {
                            DiagnosticLevel::Error
                        },
                        message,
                        raw: None,
                    }));
                    self.errors.push(error);
                }
            }
            "warning" => {
                if let Some(message) = params.get("message").and_then(Value::as_str) {
                    out.events.push(diagnostic(DiagnosticLevel::Warn, message));
                }
            }
            "configWarning" => {
                if let Some(summary) = params.get("summary").and_then(Value::as_str) {
                    out.events.push(diagnostic(DiagnosticLevel::Info, summary));
                }
            }
            "turn/started" => {
                if let Some(TurnEnvelope { turn }) = parse(params)
                    && self.turn_id.is_none()
                {
                    self.turn_id = Some(turn.id);
                }
            }
            "turn/completed" => {
                if let Some(TurnEnvelope { turn }) = parse(params)
                    && self.turn_id.as_deref().is_none_or(|ours| ours == turn.id)
                {
                    // `itemsView: "summary"` repeats the turn's agent messages: a message
                    // whose `item/completed` we missed still counts as output.
                    if turn.items.iter().any(is_non_empty_agent_message) {
                        self.agent_output = true;
                    }
                    out.turn_end = Some(turn);
                }
            }
            known if IGNORED.contains(&known) => {}
            unknown => tracing::debug!(method = unknown, "unknown app-server notification ignored"),
        }
        out
    }

    fn item_started(&mut self, item: &Value, out: &mut Translated) {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return;
        };
        if item_type(item) == "fileChange" {
            let changes = item
                .get("changes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            self.file_changes.insert(id.to_owned(), changes);
        }
        if let Some((name, input)) = self.tool_call(item) {
            out.model_output = true;
            self.start_tool(id, name, input, out);
        }
    }

    fn item_completed(&mut self, item: &Value, out: &mut Translated) {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return;
        };
        let status = item.get("status").and_then(Value::as_str).unwrap_or("");
        match item_type(item) {
            "agentMessage" => {
                let text = item.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    self.agent_output = true;
                    out.model_output = true;
                }
                out.events
                    .push(RunEventKind::MessageCompleted(MessageCompleted {
                        message_id: id.to_owned(),
                        text: text.to_owned(),
                    }));
            }
            // Reasoning that streamed no deltas is reported whole.
            "reasoning" if !self.reasoning_streamed.contains(id) => {
                let text = joined_text(item.get("summary"))
                    .filter(|t| !t.is_empty())
                    .or_else(|| joined_text(item.get("content")))
                    .unwrap_or_default();
                if !text.is_empty() {
                    out.model_output = true;
                    out.events
                        .push(RunEventKind::ReasoningDelta(ReasoningDelta { text }));
                }
            }
            "commandExecution" => {
                self.ensure_started(item, id, out);
                if !self.output_streamed.contains(id)
                    && let Some(output) = item.get("aggregatedOutput").and_then(Value::as_str)
                    && !output.is_empty()
                {
                    out.events.push(RunEventKind::ToolOutput(ToolOutput {
                        call_id: id.to_owned(),
                        output: output.to_owned(),
                    }));
                }
                let exit_code = item
                    .get("exitCode")
                    .and_then(Value::as_i64)
                    .and_then(|code| i32::try_from(code).ok());
                let status = match (status, exit_code) {
                    ("completed", None | Some(0)) => ToolStatus::Succeeded,
                    ("declined", _) => ToolStatus::Declined,
                    _ => ToolStatus::Failed,
                };
                self.complete_tool(id, status, exit_code, out);
            }
            "fileChange" => {
                self.ensure_started(item, id, out);
                if status == "completed" {
                    let changes = item.get("changes").and_then(Value::as_array);
                    for change in changes.into_iter().flatten() {
                        if let Some(event) = self.file_changed(change) {
                            out.events.push(event);
                        }
                    }
                }
                let status = match status {
                    "completed" => ToolStatus::Succeeded,
                    "declined" => ToolStatus::Declined,
                    _ => ToolStatus::Failed,
                };
                self.complete_tool(id, status, None, out);
            }
            "mcpToolCall" | "dynamicToolCall" => {
                self.ensure_started(item, id, out);
                let result = item
                    .get("result")
                    .or_else(|| item.get("contentItems"))
                    .or_else(|| item.get("error"))
                    .filter(|v| !v.is_null());
                if let Some(result) = result {
                    let output = match result {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    out.events.push(RunEventKind::ToolOutput(ToolOutput {
                        call_id: id.to_owned(),
                        output,
                    }));
                }
                let failed = status == "failed"
                    || item.get("success").and_then(Value::as_bool) == Some(false);
                let status = if failed {
                    ToolStatus::Failed
                } else {
                    ToolStatus::Succeeded
                };
                self.complete_tool(id, status, None, out);
            }
            "webSearch" => {
                self.ensure_started(item, id, out);
                self.complete_tool(id, ToolStatus::Succeeded, None, out);
            }
            _ => {}
        }
    }

    /// The tool name and input of an item that is a tool call.
    fn tool_call(&self, item: &Value) -> Option<(String, Value)> {
        let field = |name: &str| item.get(name).cloned().unwrap_or(Value::Null);
        match item_type(item) {
            "commandExecution" => Some((
                "shell".to_owned(),
                json!({"command": field("command"), "cwd": field("cwd")}),
            )),
            "fileChange" => {
                let files: Vec<Value> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|change| {
                        json!({
                            "path": change.get("path").and_then(Value::as_str).map(|p| self.relative(p)),
                            "kind": change.pointer("/kind/type"),
                        })
                    })
                    .collect();
                Some(("apply_patch".to_owned(), json!({"changes": files})))
            }
            "mcpToolCall" => {
                let server = item.get("server").and_then(Value::as_str).unwrap_or("mcp");
                let tool = item.get("tool").and_then(Value::as_str).unwrap_or("tool");
                Some((format!("{server}.{tool}"), field("arguments")))
            }
            "dynamicToolCall" => Some((
                item.get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or("tool")
                    .to_owned(),
                field("arguments"),
            )),
            "webSearch" => Some(("web_search".to_owned(), json!({"query": field("query")}))),
            _ => None,
        }
    }

    /// A tool item whose `item/started` we did not see still gets its `tool.started`.
    fn ensure_started(&mut self, item: &Value, id: &str, out: &mut Translated) {
        if !self.tools_started.contains(id)
            && let Some((name, input)) = self.tool_call(item)
        {
            self.start_tool(id, name, input, out);
        }
    }

    fn start_tool(&mut self, id: &str, name: String, input: Value, out: &mut Translated) {
        if self.tools_started.insert(id.to_owned()) {
            out.events.push(RunEventKind::ToolStarted(ToolStarted {
                call_id: id.to_owned(),
                name,
                input,
            }));
        }
    }

    fn complete_tool(
        &mut self,
        id: &str,
        status: ToolStatus,
        exit_code: Option<i32>,
        out: &mut Translated,
    ) {
        if self.tools_completed.insert(id.to_owned()) {
            out.model_output = true;
            out.events.push(RunEventKind::ToolCompleted(ToolCompleted {
                call_id: id.to_owned(),
                status,
                exit_code,
            }));
        }
    }

    fn file_changed(&self, change: &Value) -> Option<RunEventKind> {
        let path = change.get("path").and_then(Value::as_str)?;
        let change_kind = match change.pointer("/kind/type").and_then(Value::as_str) {
            Some("add") => FileChangeKind::Added,
            Some("delete") => FileChangeKind::Deleted,
            _ => FileChangeKind::Modified,
        };
        Some(RunEventKind::FileChanged(FileChanged {
            path: self.relative(path),
            change: change_kind,
            diff: change
                .get("diff")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        }))
    }

    /// `path` relative to the workspace when it lies inside it.
    pub(crate) fn relative(&self, path: &str) -> String {
        let candidate = Path::new(path);
        self.workspace
            .iter()
            .find_map(|root| candidate.strip_prefix(root).ok())
            .filter(|rest| !rest.as_os_str().is_empty())
            .map(|rest| rest.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_owned())
    }

    /// What a human is asked to approve for a file change: the files (relative paths)
    /// and the details of each change, from the item's `item/started`.
    pub(crate) fn file_change_summary(&self, item_id: &str) -> (Vec<String>, Value) {
        let changes = self.file_changes.get(item_id).cloned().unwrap_or_default();
        let files: Vec<String> = changes
            .iter()
            .filter_map(|change| change.get("path").and_then(Value::as_str))
            .map(|path| self.relative(path))
            .collect();
        let details: Vec<Value> = changes
            .iter()
            .map(|change| {
                json!({
                    "path": change.get("path").and_then(Value::as_str).map(|p| self.relative(p)),
                    "kind": change.pointer("/kind/type"),
                    "diff": change.get("diff"),
                })
            })
            .collect();
        (files, Value::Array(details))
    }

    /// The tokens this run used (the thread's total now minus before the run), once.
    pub(crate) fn take_usage(&mut self) -> Option<Usage> {
        let latest = self.usage.latest.take()?;
        let baseline = self.usage.baseline.take().unwrap_or_default();
        let used = minus(latest, baseline);
        Some(Usage {
            input_tokens: used.input_tokens,
            output_tokens: used.output_tokens,
            cached_input_tokens: Some(used.cached_input_tokens),
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(params: &Value) -> Option<T> {
    match T::deserialize(params) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            tracing::debug!(%error, "app-server notification params not understood");
            None
        }
    }
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

fn is_non_empty_agent_message(item: &Value) -> bool {
    item_type(item) == "agentMessage"
        && item
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|text| !text.is_empty())
}

/// Reasoning summaries and contents are arrays of strings (or of `{text}` objects).
fn joined_text(parts: Option<&Value>) -> Option<String> {
    let parts = parts?.as_array()?;
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|part| part.as_str().or_else(|| part.get("text")?.as_str()))
        .collect();
    Some(texts.join("\n"))
}

fn minus(a: TokenUsageBreakdown, b: TokenUsageBreakdown) -> TokenUsageBreakdown {
    TokenUsageBreakdown {
        input_tokens: a.input_tokens.saturating_sub(b.input_tokens),
        cached_input_tokens: a.cached_input_tokens.saturating_sub(b.cached_input_tokens),
        output_tokens: a.output_tokens.saturating_sub(b.output_tokens),
    }
}

fn diagnostic(level: DiagnosticLevel, message: &str) -> RunEventKind {
    RunEventKind::Diagnostic(Diagnostic {
        level,
        message: message.to_owned(),
        raw: None,
    })
}
