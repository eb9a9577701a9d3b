//! The subset of Claude Code's stream-json protocol the adapter speaks (claude 2.1.197,
//! `-p --input-format stream-json --output-format stream-json --verbose
//! --permission-prompt-tool stdio --include-partial-messages`; see PROTOCOLS.md §2).
//!
//! Decoding is lenient on purpose: every field the adapter does not strictly need is
//! optional, unknown fields are ignored, and unknown line types, content blocks, stream
//! events and control subtypes decode to an `Other` variant instead of failing, so a
//! newer CLI that adds things does not break a run.

use serde::Deserialize;
use serde_json::{Value, json};

/// One stdout line of the CLI.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Line {
    System(SystemLine),
    Assistant(AssistantLine),
    User(UserLine),
    StreamEvent(StreamEventLine),
    Result(ResultLine),
    ControlRequest(ControlRequestLine),
    ControlResponse(ControlResponseLine),
    #[serde(other)]
    Other,
}

impl Line {
    /// Decodes one stdout line; `None` for anything that is not a JSON object of a
    /// shape we understand (the caller keeps it as evidence).
    pub(crate) fn parse(raw: &str) -> Option<Line> {
        serde_json::from_str(raw).ok()
    }
}

/// `system` lines: `init` (once per turn, carries the session id), `status`,
/// `api_retry`, `thinking_tokens`, hooks, compaction …
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct SystemLine {
    pub(crate) subtype: String,
    pub(crate) session_id: Option<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) model: Option<String>,
    /// `api_retry`: which attempt failed, of how many.
    pub(crate) attempt: Option<u64>,
    pub(crate) max_retries: Option<u64>,
    /// `api_retry`: the HTTP status of the failed request (`null` for connection errors).
    pub(crate) error_status: Option<i64>,
    /// `api_retry`: the error class (`authentication_failed`, `server_error`, `unknown` …).
    pub(crate) error: Option<String>,
}

/// An assistant message: the CLI prints one line per content block, and the blocks of
/// one API message share `message.id`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct AssistantLine {
    pub(crate) message: ApiMessage,
    pub(crate) parent_tool_use_id: Option<String>,
    pub(crate) session_id: Option<String>,
    /// Set on the synthetic messages the CLI makes up for errors
    /// (`authentication_failed`, `server_error` …).
    pub(crate) error: Option<String>,
}

impl AssistantLine {
    /// A message the CLI made up itself (an error text), not model output.
    pub(crate) fn is_synthetic(&self) -> bool {
        self.error.is_some() || self.message.model.as_deref() == Some("<synthetic>")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ApiMessage {
    pub(crate) id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) content: Vec<ContentBlock>,
}

/// A content block of an assistant or user message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        tool_use_id: String,
        /// A string, or an array of `{type: "text", text}` (and image) blocks.
        #[serde(default)]
        content: Value,
        #[serde(default)]
        is_error: bool,
    },
    #[serde(other)]
    Other,
}

/// A user message: the prompt echoed back, tool results, interruption notices and
/// synthetic nudges.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct UserLine {
    pub(crate) message: UserMessage,
    /// The structured result of the tool whose `tool_result` this line carries
    /// (`{stdout, stderr, interrupted}` for Bash, `{type: "create", filePath}` for Write,
    /// an error string …).
    pub(crate) tool_use_result: Option<Value>,
    #[serde(rename = "isSynthetic")]
    pub(crate) is_synthetic: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct UserMessage {
    pub(crate) content: UserContent,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum UserContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
    Other(Value),
}

impl Default for UserContent {
    fn default() -> Self {
        UserContent::Blocks(Vec::new())
    }
}

/// A raw Anthropic Messages streaming event (`--include-partial-messages`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct StreamEventLine {
    pub(crate) event: StreamEvent,
    #[serde(default)]
    pub(crate) parent_tool_use_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamEvent {
    MessageStart {
        #[serde(default)]
        message: ApiMessageStart,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        #[serde(default)]
        content_block: Value,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        delta: Delta,
    },
    ContentBlockStop,
    MessageDelta,
    MessageStop,
    #[serde(other)]
    Other,
}

impl StreamEvent {
    /// The type of block a `content_block_start` opens (`text`, `thinking`, `tool_use`).
    pub(crate) fn started_block_type(content_block: &Value) -> &str {
        content_block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ApiMessageStart {
    pub(crate) id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Delta {
    #[serde(rename = "text_delta")]
    Text {
        #[serde(default)]
        text: String,
    },
    #[serde(rename = "thinking_delta")]
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(other)]
    Other,
}

/// The end of a turn. `subtype` is `success` even for API errors: `is_error`,
/// `api_error_status` and the `result` text tell what happened.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ResultLine {
    pub(crate) subtype: String,
    pub(crate) is_error: bool,
    pub(crate) api_error_status: Option<i64>,
    pub(crate) result: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) num_turns: Option<u64>,
    pub(crate) usage: Option<ResultUsage>,
    pub(crate) terminal_reason: Option<String>,
    pub(crate) errors: Vec<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ResultUsage {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cache_creation_input_tokens: u64,
    pub(crate) cache_read_input_tokens: u64,
}

/// A request from the CLI that we must answer with a `control_response`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ControlRequestLine {
    pub(crate) request_id: String,
    pub(crate) request: ControlRequest,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(crate) enum ControlRequest {
    /// The permission prompt of `--permission-prompt-tool stdio`.
    CanUseTool(CanUseTool),
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct CanUseTool {
    pub(crate) tool_name: String,
    pub(crate) input: Value,
    pub(crate) description: Option<String>,
    pub(crate) tool_use_id: Option<String>,
    pub(crate) blocked_path: Option<String>,
}

/// The CLI's answer to one of our control requests (`initialize`, `interrupt`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ControlResponseLine {
    pub(crate) response: ControlResponseBody,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ControlResponseBody {
    pub(crate) subtype: String,
    pub(crate) request_id: String,
    pub(crate) error: Option<String>,
}

/// The lines we write to the CLI's stdin.
pub(crate) mod outgoing {
    use super::*;

    pub(crate) fn initialize(request_id: &str) -> String {
        json!({
            "type": "control_request",
            "request_id": request_id,
            "request": {"subtype": "initialize", "hooks": null},
        })
        .to_string()
    }

    pub(crate) fn interrupt(request_id: &str) -> String {
        json!({
            "type": "control_request",
            "request_id": request_id,
            "request": {"subtype": "interrupt"},
        })
        .to_string()
    }

    pub(crate) fn user_message(text: &str) -> String {
        json!({
            "type": "user",
            "message": {"role": "user", "content": [{"type": "text", "text": text}]},
            "parent_tool_use_id": null,
            "session_id": "",
        })
        .to_string()
    }

    /// Lets the tool run with its input unchanged.
    pub(crate) fn allow(request_id: &str, input: &Value) -> String {
        json!({
            "type": "control_response",
            "response": {
                "subtype": "success",
                "request_id": request_id,
                "response": {"behavior": "allow", "updatedInput": input},
            },
        })
        .to_string()
    }

    /// Refuses the tool; the model gets `message` as an error tool result and goes on.
    pub(crate) fn deny(request_id: &str, message: &str) -> String {
        json!({
            "type": "control_response",
            "response": {
                "subtype": "success",
                "request_id": request_id,
                "response": {"behavior": "deny", "message": message},
            },
        })
        .to_string()
    }

    /// The answer to a control request we do not handle.
    pub(crate) fn error(request_id: &str, message: &str) -> String {
        json!({
            "type": "control_response",
            "response": {"subtype": "error", "request_id": request_id, "error": message},
        })
        .to_string()
    }
}
