//! The OpenAI Chat Completions wire API (`POST /v1/chat/completions`, SSE), as opencode
//! speaks it through `@ai-sdk/openai-compatible`.
//!
//! Chunks are `data: {chat.completion.chunk}` lines; the stream ends with a chunk that
//! has a `finish_reason`, a usage chunk (opencode asks for `include_usage`) and
//! `data: [DONE]` (except in `SCN_CUT`, which ends after two content chunks). Opencode's first request of a new session is title generation, which
//! offers no tools: the default scenario answers it with plain text.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    CUT_DELTAS, Conversation, Item, PATCH_FILE, PATCH_LINE, Reply, Script, next_id, slow_delta,
    sse_data, text_deltas,
};

/// Reads the `messages` and the offered `tools` of a Chat Completions request.
pub(super) fn conversation(body: &Value) -> Conversation {
    let mut conversation = Conversation::default();
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let item = match message.get("role").and_then(Value::as_str) {
            Some("tool") | Some("function") => Item::ToolResult,
            Some("user") => Item::UserText(content_text(message.get("content"))),
            _ => Item::Other,
        };
        conversation.items.push(item);
    }
    conversation.tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    conversation
}

fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Opencode's shell tool: `bash {command, description}`.
pub(super) fn shell_call(conversation: &Conversation, command: &str) -> Option<Reply> {
    let tool = conversation.first_offered(&["bash", "shell"])?;
    Some(Reply::ToolCall {
        tool,
        arguments: json!({ "command": command, "description": "Create hello.txt" }),
    })
}

/// Opencode's file tool: `write {filePath, content}` (relative to the project directory).
pub(super) fn patch_call(conversation: &Conversation) -> Option<Reply> {
    let tool = conversation.first_offered(&["write"])?;
    Some(Reply::ToolCall {
        tool,
        arguments: json!({ "filePath": PATCH_FILE, "content": format!("{PATCH_LINE}\n") }),
    })
}

/// The SSE chunks of a reply.
pub(super) fn script(model: &str, reply: &Reply) -> Script {
    let chunk_id = next_id("chatcmpl-");
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
    };
    let mut script = Script::default();
    script.push(
        Duration::ZERO,
        data(&chunk(json!({ "role": "assistant", "content": "" }), None)),
    );

    let (finish, output_tokens) = match reply {
        Reply::ToolCall { tool, arguments } => {
            let call = json!({ "tool_calls": [{
                "index": 0, "id": next_id("call_"), "type": "function",
                "function": { "name": tool, "arguments": "" }
            }]});
            script.push(Duration::ZERO, data(&chunk(call, None)));
            let args = json!({ "tool_calls": [{
                "index": 0, "function": { "arguments": arguments.to_string() }
            }]});
            script.push(Duration::ZERO, data(&chunk(args, None)));
            ("tool_calls", 20)
        }
        Reply::CustomToolCall { tool, input } => {
            // Chat Completions has no freeform tools: send the input as a JSON argument.
            let call = json!({ "tool_calls": [{
                "index": 0, "id": next_id("call_"), "type": "function",
                "function": { "name": tool, "arguments": json!({ "input": input }).to_string() }
            }]});
            script.push(Duration::ZERO, data(&chunk(call, None)));
            ("tool_calls", 20)
        }
        Reply::Text(text) => {
            let deltas = text_deltas(text);
            let count = deltas.len();
            for delta in deltas {
                script.push(
                    Duration::ZERO,
                    data(&chunk(json!({ "content": delta }), None)),
                );
            }
            ("stop", count)
        }
        Reply::Slow { deltas, interval } => {
            for index in 0..*deltas {
                script.push(
                    *interval,
                    data(&chunk(json!({ "content": slow_delta(index) }), None)),
                );
            }
            ("stop", usize::try_from(*deltas).unwrap_or(usize::MAX))
        }
        Reply::Empty => ("stop", 0),
        Reply::Cut => {
            for delta in CUT_DELTAS {
                script.push(
                    Duration::ZERO,
                    data(&chunk(json!({ "content": delta }), None)),
                );
            }
            // No chunk with a finish_reason, no usage, no [DONE].
            return script;
        }
    };
    script.push(Duration::ZERO, data(&chunk(json!({}), Some(finish))));
    let usage = json!({
        "id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": 100, "completion_tokens": output_tokens,
            "total_tokens": 100 + output_tokens
        }
    });
    script.push(Duration::ZERO, data(&usage));
    script.push(Duration::ZERO, sse_data("[DONE]"));
    script
}

fn data(chunk: &Value) -> Bytes {
    sse_data(&chunk.to_string())
}
