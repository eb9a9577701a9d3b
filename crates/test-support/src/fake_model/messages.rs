//! The Anthropic Messages wire API (`POST /v1/messages?beta=true`, SSE), as claude speaks
//! it.
//!
//! The stream is `message_start`, per content block `content_block_start` /
//! `content_block_delta` (`text_delta` or `input_json_delta`) / `content_block_stop`, then
//! `message_delta` (with `stop_reason` `tool_use` or `end_turn`) and `message_stop`
//! (`SCN_CUT` ends after two text deltas).
//! Tool results come back as `tool_result` blocks inside a user message; such a message
//! is a tool result, not a new turn, even when claude adds text blocks to it.

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    CUT_DELTAS, Conversation, Item, PATCH_FILE, PATCH_LINE, Reply, Script, next_id, slow_delta,
    text_deltas,
};

/// Reads the `messages` and the offered `tools` of a Messages request.
pub(super) fn conversation(body: &Value) -> Conversation {
    let mut conversation = Conversation::default();
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            conversation.items.push(Item::Other);
            continue;
        }
        match message.get("content") {
            Some(Value::String(text)) => conversation.items.push(Item::UserText(text.clone())),
            Some(Value::Array(blocks)) => {
                let has_result = blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
                let text = blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n");
                if has_result {
                    conversation.items.push(Item::ToolResult);
                } else {
                    conversation.items.push(Item::UserText(text));
                }
            }
            _ => conversation.items.push(Item::UserText(String::new())),
        }
    }
    conversation.tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    conversation
}

/// Claude's shell tool: `Bash {command, description}`.
pub(super) fn shell_call(conversation: &Conversation, command: &str) -> Option<Reply> {
    let tool = conversation.first_offered(&["Bash", "bash"])?;
    Some(Reply::ToolCall {
        tool,
        arguments: json!({ "command": command, "description": "Create hello.txt" }),
    })
}

/// Claude's file tool: `Write {file_path, content}`.
pub(super) fn patch_call(conversation: &Conversation) -> Option<Reply> {
    let tool = conversation.first_offered(&["Write"])?;
    Some(Reply::ToolCall {
        tool,
        arguments: json!({ "file_path": PATCH_FILE, "content": format!("{PATCH_LINE}\n") }),
    })
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
pub(super) fn error_body(status: StatusCode, message: &str) -> Value {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

/// The SSE events of a reply.
pub(super) fn script(model: &str, reply: &Reply) -> Script {
    let mut script = Script::default();
    let start = json!({
        "type": "message_start",
        "message": {
            "id": next_id("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {
                "input_tokens": 100, "output_tokens": 1,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0
            }
        }
    });
    script.push(Duration::ZERO, event(&start));

    let (stop_reason, output_tokens) = match reply {
        Reply::ToolCall { tool, arguments } => {
            push_tool_use(&mut script, tool, &arguments.to_string());
            ("tool_use", 20)
        }
        Reply::CustomToolCall { tool, input } => {
            push_tool_use(&mut script, tool, &json!({ "input": input }).to_string());
            ("tool_use", 20)
        }
        Reply::Text(text) => {
            let deltas = text_deltas(text);
            let count = deltas.len();
            push_text(&mut script, deltas, Duration::ZERO);
            ("end_turn", count)
        }
        Reply::Slow { deltas, interval } => {
            push_text(
                &mut script,
                (0..*deltas).map(slow_delta).collect(),
                *interval,
            );
            ("end_turn", usize::try_from(*deltas).unwrap_or(usize::MAX))
        }
        Reply::Empty => ("end_turn", 0),
        Reply::Cut => {
            push_text_head(
                &mut script,
                CUT_DELTAS.map(str::to_owned).to_vec(),
                Duration::ZERO,
            );
            // No content_block_stop, message_delta or message_stop.
            return script;
        }
    };
    let delta = json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason, "stop_sequence": null },
        "usage": { "output_tokens": output_tokens }
    });
    script.push(Duration::ZERO, event(&delta));
    script.push(Duration::ZERO, event(&json!({ "type": "message_stop" })));
    script
}

fn push_tool_use(script: &mut Script, tool: &str, arguments: &str) {
    let start = json!({
        "type": "content_block_start", "index": 0,
        "content_block": { "type": "tool_use", "id": next_id("toolu_"), "name": tool, "input": {} }
    });
    script.push(Duration::ZERO, event(&start));
    let delta = json!({
        "type": "content_block_delta", "index": 0,
        "delta": { "type": "input_json_delta", "partial_json": arguments }
    });
    script.push(Duration::ZERO, event(&delta));
    script.push(
        Duration::ZERO,
        event(&json!({ "type": "content_block_stop", "index": 0 })),
    );
}

fn push_text(script: &mut Script, deltas: Vec<String>, interval: Duration) {
    push_text_head(script, deltas, interval);
    script.push(
        Duration::ZERO,
        event(&json!({ "type": "content_block_stop", "index": 0 })),
    );
}

/// A text block's start and its deltas, without its stop.
fn push_text_head(script: &mut Script, deltas: Vec<String>, interval: Duration) {
    let start = json!({
        "type": "content_block_start", "index": 0,
        "content_block": { "type": "text", "text": "" }
    });
    script.push(Duration::ZERO, event(&start));
    for delta in deltas {
        let data = json!({
            "type": "content_block_delta", "index": 0,
            "delta": { "type": "text_delta", "text": delta }
        });
        script.push(interval, event(&data));
    }
}

fn event(data: &Value) -> Bytes {
    let name = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    super::sse_event(name, data)
}
