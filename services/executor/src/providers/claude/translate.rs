//! Claude Code stream-json lines → Switchyard's provider-neutral run events.
//!
//! | claude line | events |
//! |---|---|
//! | `stream_event` `text_delta` | `message.delta` |
//! | `stream_event` `thinking_delta` | `reasoning.delta` |
//! | `assistant` text block | `message.completed` (after one `message.delta` with the whole text when nothing was streamed) |
//! | `assistant` thinking block | `reasoning.delta`, unless it was streamed |
//! | `assistant` tool_use block | `tool.started` |
//! | `user` tool_result block | `tool.output` (when not empty), `tool.completed`, and `file.changed` for a successful Write/Edit |
//! | `assistant` synthetic error message, `system` `api_retry` | `diagnostic` |
//! | `result` usage | `usage` (see [`Translator::usage`]) |
//!
//! The CLI prints each content block of an API message as its own `assistant` line,
//! and with partial messages also streams the same blocks as raw API events, so the
//! translator matches the two by message id and text-block ordinal: a streamed text is
//! not repeated, and a message id is unique per text block (`msg_1`, `msg_1-2` …).

use super::protocol::{
    AssistantLine, ContentBlock, Delta, ResultLine, StreamEvent, StreamEventLine, SystemLine,
    UserContent, UserLine,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use switchyard_contracts::RunEventKind;
use switchyard_contracts::event::{
    Diagnostic, DiagnosticLevel, FileChangeKind, FileChanged, MessageCompleted, MessageDelta,
    ReasoningDelta, ToolCompleted, ToolOutput, ToolStarted, ToolStatus, Usage,
};

/// The message id of the `ordinal`-th text block (from 0) of API message `message_id`.
fn text_id(message_id: &str, ordinal: usize) -> String {
    if ordinal == 0 {
        message_id.to_owned()
    } else {
        format!("{message_id}-{}", ordinal + 1)
    }
}

/// The API message being streamed (`--include-partial-messages`).
#[derive(Debug, Default)]
struct StreamedMessage {
    id: String,
    /// Content block index → ordinal among the message's text blocks.
    text_blocks: HashMap<u64, usize>,
}

#[derive(Debug, Clone)]
struct ToolCall {
    name: String,
    input: Value,
}

/// Translates the lines of one run (all its turns) into events. Pure: the caller emits.
#[derive(Debug, Default)]
pub(crate) struct Translator {
    /// The CLI's working directory (from `system/init`), to report file paths relative.
    cwd: Option<PathBuf>,
    streaming: Option<StreamedMessage>,
    /// Text ids that got at least one `message.delta` from the stream.
    streamed_text: HashSet<String>,
    /// API message ids whose thinking was streamed.
    streamed_thinking: HashSet<String>,
    /// API message id → text blocks seen in `assistant` lines so far.
    text_blocks_seen: HashMap<String, usize>,
    tools: HashMap<String, ToolCall>,
    /// Tool calls we denied through the permission prompt (their results are errors).
    denied: HashSet<String>,
    /// Whether the current turn produced assistant text.
    assistant_text: bool,
    /// For messages without an id (should not happen): a counter to make one.
    anonymous: usize,
}

impl Translator {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts a new turn (for [`Translator::turn_had_text`]).
    pub(crate) fn start_turn(&mut self) {
        self.assistant_text = false;
    }

    /// Whether the current turn produced any (non-synthetic) assistant text.
    pub(crate) fn turn_had_text(&self) -> bool {
        self.assistant_text
    }

    /// Notes that the permission prompt for this tool call was answered "deny", so its
    /// result completes `declined` rather than `failed`.
    pub(crate) fn mark_denied(&mut self, tool_use_id: &str) {
        self.denied.insert(tool_use_id.to_owned());
    }

    pub(crate) fn system(&mut self, line: &SystemLine) -> Vec<RunEventKind> {
        match line.subtype.as_str() {
            "init" => {
                if let Some(cwd) = &line.cwd {
                    self.cwd = Some(PathBuf::from(cwd));
                }
                Vec::new()
            }
            "api_retry" => {
                let status = line
                    .error_status
                    .map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}"));
                let error = line.error.as_deref().unwrap_or("unknown");
                let attempt = match (line.attempt, line.max_retries) {
                    (Some(a), Some(m)) => format!(" (attempt {a} of {m})"),
                    (Some(a), None) => format!(" (attempt {a})"),
                    _ => String::new(),
                };
                vec![diagnostic(
                    DiagnosticLevel::Warn,
                    format!("model API request failed: {error}, {status}; retrying{attempt}"),
                )]
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn stream_event(&mut self, line: &StreamEventLine) -> Vec<RunEventKind> {
        match &line.event {
            StreamEvent::MessageStart { message } => {
                let id = message.id.clone().unwrap_or_else(|| self.anonymous_id());
                self.streaming = Some(StreamedMessage {
                    id,
                    text_blocks: HashMap::new(),
                });
                Vec::new()
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                if StreamEvent::started_block_type(content_block) == "text"
                    && let Some(streaming) = &mut self.streaming
                {
                    let ordinal = streaming.text_blocks.len();
                    streaming.text_blocks.insert(*index, ordinal);
                }
                Vec::new()
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                Delta::Text { text } if !text.is_empty() => {
                    let Some(streaming) = &self.streaming else {
                        return Vec::new();
                    };
                    let Some(ordinal) = streaming.text_blocks.get(index) else {
                        return Vec::new();
                    };
                    let message_id = text_id(&streaming.id, *ordinal);
                    self.streamed_text.insert(message_id.clone());
                    self.assistant_text = true;
                    vec![RunEventKind::MessageDelta(MessageDelta {
                        message_id,
                        text: text.clone(),
                    })]
                }
                Delta::Thinking { thinking } if !thinking.is_empty() => {
                    if let Some(streaming) = &self.streaming {
                        self.streamed_thinking.insert(streaming.id.clone());
                    }
                    vec![RunEventKind::ReasoningDelta(ReasoningDelta {
                        text: thinking.clone(),
                    })]
                }
                _ => Vec::new(),
            },
            StreamEvent::MessageStop => {
                self.streaming = None;
                Vec::new()
            }
            StreamEvent::ContentBlockStop | StreamEvent::MessageDelta | StreamEvent::Other => {
                Vec::new()
            }
        }
    }

    pub(crate) fn assistant(&mut self, line: &AssistantLine) -> Vec<RunEventKind> {
        if line.is_synthetic() {
            // The CLI's own error text ("Invalid API key", "Not logged in" …): the result
            // line that follows classifies it; here it is only worth a diagnostic.
            return line
                .message
                .content
                .iter()
                .filter_map(|block| match block {
                    ContentBlock::Text { text } if !text.is_empty() => {
                        Some(diagnostic(DiagnosticLevel::Warn, format!("claude: {text}")))
                    }
                    _ => None,
                })
                .collect();
        }
        let message_id = match &line.message.id {
            Some(id) => id.clone(),
            None => self.anonymous_id(),
        };
        let mut events = Vec::new();
        for block in &line.message.content {
            match block {
                ContentBlock::Text { text } => {
                    if text.is_empty() {
                        continue;
                    }
                    let seen = self.text_blocks_seen.entry(message_id.clone()).or_default();
                    let id = text_id(&message_id, *seen);
                    *seen += 1;
                    if !self.streamed_text.remove(&id) {
                        events.push(RunEventKind::MessageDelta(MessageDelta {
                            message_id: id.clone(),
                            text: text.clone(),
                        }));
                    }
                    self.assistant_text = true;
                    events.push(RunEventKind::MessageCompleted(MessageCompleted {
                        message_id: id,
                        text: text.clone(),
                    }));
                }
                ContentBlock::Thinking { thinking } => {
                    if !thinking.is_empty() && !self.streamed_thinking.contains(&message_id) {
                        events.push(RunEventKind::ReasoningDelta(ReasoningDelta {
                            text: thinking.clone(),
                        }));
                    }
                }
                ContentBlock::ToolUse { id, name, input } => {
                    self.tools.insert(
                        id.clone(),
                        ToolCall {
                            name: name.clone(),
                            input: input.clone(),
                        },
                    );
                    events.push(RunEventKind::ToolStarted(ToolStarted {
                        call_id: id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                    }));
                }
                ContentBlock::ToolResult { .. } | ContentBlock::Other => {}
            }
        }
        events
    }

    pub(crate) fn user(&mut self, line: &UserLine) -> Vec<RunEventKind> {
        let UserContent::Blocks(blocks) = &line.message.content else {
            return Vec::new();
        };
        let mut events = Vec::new();
        for block in blocks {
            let ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } = block
            else {
                continue;
            };
            let output = tool_result_text(content);
            if !output.is_empty() {
                events.push(RunEventKind::ToolOutput(ToolOutput {
                    call_id: tool_use_id.clone(),
                    output: output.clone(),
                }));
            }
            let call = self.tools.remove(tool_use_id);
            let status = if self.denied.remove(tool_use_id) {
                ToolStatus::Declined
            } else if *is_error {
                ToolStatus::Failed
            } else {
                ToolStatus::Succeeded
            };
            let is_bash = call.as_ref().is_some_and(|c| c.name == "Bash");
            let exit_code = match status {
                ToolStatus::Succeeded if is_bash => Some(0),
                ToolStatus::Failed if is_bash => bash_exit_code(&output),
                _ => None,
            };
            events.push(RunEventKind::ToolCompleted(ToolCompleted {
                call_id: tool_use_id.clone(),
                status,
                exit_code,
            }));
            if status == ToolStatus::Succeeded
                && let Some(call) = &call
                && let Some(change) = self.file_change(call, line.tool_use_result.as_ref())
            {
                events.push(RunEventKind::FileChanged(change));
            }
        }
        events
    }

    /// The `usage` event of a turn. Anthropic counts cached input apart from
    /// `input_tokens`; Switchyard's `inputTokens` is all input (as OpenAI reports it),
    /// with the cache reads also in `cachedInputTokens`.
    pub(crate) fn usage(result: &ResultLine) -> Option<RunEventKind> {
        let usage = result.usage.as_ref()?;
        let input =
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens;
        if input == 0 && usage.output_tokens == 0 {
            return None;
        }
        Some(RunEventKind::Usage(Usage {
            input_tokens: input,
            output_tokens: usage.output_tokens,
            cached_input_tokens: (usage.cache_read_input_tokens > 0)
                .then_some(usage.cache_read_input_tokens),
        }))
    }

    fn file_change(&self, call: &ToolCall, tool_result: Option<&Value>) -> Option<FileChanged> {
        let change = match call.name.as_str() {
            "Write" => match tool_result
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str)
            {
                Some("create") => FileChangeKind::Added,
                _ => FileChangeKind::Modified,
            },
            "Edit" | "MultiEdit" | "NotebookEdit" => FileChangeKind::Modified,
            _ => return None,
        };
        let path = tool_result
            .and_then(|r| r.get("filePath"))
            .or_else(|| call.input.get("file_path"))
            .or_else(|| call.input.get("notebook_path"))
            .and_then(Value::as_str)?;
        let diff = tool_result
            .and_then(|r| r.get("structuredPatch"))
            .and_then(render_patch);
        Some(FileChanged {
            path: self.relative(path),
            change,
            diff,
        })
    }

    /// `path` relative to the workspace when it lies inside it.
    fn relative(&self, path: &str) -> String {
        self.cwd
            .as_deref()
            .and_then(|cwd| Path::new(path).strip_prefix(cwd).ok())
            .map_or_else(|| path.to_owned(), |p| p.display().to_string())
    }

    fn anonymous_id(&mut self) -> String {
        self.anonymous += 1;
        format!("claude-msg-{}", self.anonymous)
    }
}

fn diagnostic(level: DiagnosticLevel, message: String) -> RunEventKind {
    RunEventKind::Diagnostic(Diagnostic {
        level,
        message,
        raw: None,
    })
}

/// The text of a tool result: a string, or the text blocks of an array.
fn tool_result_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A failed Bash result starts with `Exit code N`.
fn bash_exit_code(output: &str) -> Option<i32> {
    output
        .strip_prefix("Exit code ")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A unified diff from the CLI's `structuredPatch` hunks
/// (`[{oldStart, oldLines, newStart, newLines, lines: ["-a", "+b"]}]`).
fn render_patch(hunks: &Value) -> Option<String> {
    let hunks = hunks.as_array().filter(|h| !h.is_empty())?;
    let mut diff = String::new();
    for hunk in hunks {
        let number = |key: &str| hunk.get(key).and_then(Value::as_u64).unwrap_or(0);
        diff.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            number("oldStart"),
            number("oldLines"),
            number("newStart"),
            number("newLines")
        ));
        for line in hunk
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            diff.push_str(line);
            diff.push('\n');
        }
    }
    Some(diff)
}
