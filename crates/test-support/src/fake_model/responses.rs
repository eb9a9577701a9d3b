//! The OpenAI Responses wire API (`POST /v1/responses`, SSE), as codex speaks it.
//!
//! Codex reads the `type` of each `data:` payload; it needs `response.created` first and
//! `response.completed` last (without it the turn counts as a disconnected stream and is
//! retried; `SCN_CUT` leaves it out on purpose). Tool calls and messages are taken from `response.output_item.done`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    CUT_DELTAS, Conversation, Item, Reply, Script, next_id, patch_text, slow_delta, text_deltas,
};

/// Reads the `input` items and the offered `tools` of a Responses request.
pub(super) fn conversation(body: &Value) -> Conversation {
    let mut conversation = Conversation::default();
    if let Some(input) = body.get("input") {
        match input {
            Value::String(text) => conversation.items.push(Item::UserText(text.clone())),
            Value::Array(items) => {
                for item in items {
                    conversation.items.push(input_item(item));
                }
            }
            _ => {}
        }
    }
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = tool
            .get("name")
            .or_else(|| tool.get("type"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if tool.get("type").and_then(Value::as_str) == Some("custom") {
            conversation.freeform_tools.push(name.to_owned());
        }
        conversation.tools.push(name.to_owned());
    }
    conversation
}

fn input_item(item: &Value) -> Item {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    if kind.ends_with("_output") {
        return Item::ToolResult;
    }
    let is_user = item.get("role").and_then(Value::as_str) == Some("user");
    if kind != "message" || !is_user {
        return Item::Other;
    }
    let text = match item.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    Item::UserText(text)
}

/// Codex's shell tool: `exec_command {cmd}` (unified exec, current codex), else the
/// older `shell {command: [argv]}` / `shell_command {command}`.
pub(super) fn shell_call(conversation: &Conversation, command: &str) -> Option<Reply> {
    if conversation.offers("exec_command") {
        return Some(Reply::ToolCall {
            tool: "exec_command".to_owned(),
            arguments: json!({ "cmd": command }),
        });
    }
    if conversation.offers("shell_command") {
        return Some(Reply::ToolCall {
            tool: "shell_command".to_owned(),
            arguments: json!({ "command": command }),
        });
    }
    if conversation.offers("shell") {
        return Some(Reply::ToolCall {
            tool: "shell".to_owned(),
            arguments: json!({ "command": ["bash", "-lc", command] }),
        });
    }
    None
}

/// `apply_patch` adding the patch file: the freeform tool when codex offers it (known
/// model slugs), else through the shell tool, which codex intercepts as a file change.
pub(super) fn patch_call(conversation: &Conversation) -> Option<Reply> {
    if conversation
        .freeform_tools
        .iter()
        .any(|t| t == "apply_patch")
    {
        return Some(Reply::CustomToolCall {
            tool: "apply_patch".to_owned(),
            input: patch_text(),
        });
    }
    if conversation.offers("apply_patch") {
        return Some(Reply::ToolCall {
            tool: "apply_patch".to_owned(),
            arguments: json!({ "input": patch_text() }),
        });
    }
    let heredoc = format!("apply_patch <<'EOF'\n{}EOF\n", patch_text());
    shell_call(conversation, &heredoc)
}

/// The SSE events of a reply.
pub(super) fn script(model: &str, reply: &Reply) -> Script {
    let response_id = next_id("resp_");
    let mut script = Script::default();
    let created = json!({
        "type": "response.created",
        "response": {
            "id": response_id, "object": "response", "created_at": 0, "status": "in_progress",
            "model": model, "output": []
        }
    });
    script.push(Duration::ZERO, event(&created));

    let mut output_tokens = 0u32;
    match reply {
        Reply::ToolCall { tool, arguments } => {
            let item = json!({
                "type": "function_call", "id": next_id("fc_"), "call_id": next_id("call_"),
                "name": tool, "arguments": arguments.to_string(), "status": "completed"
            });
            push_item(&mut script, &item);
            output_tokens = 20;
        }
        Reply::CustomToolCall { tool, input } => {
            let item = json!({
                "type": "custom_tool_call", "id": next_id("ctc_"), "call_id": next_id("call_"),
                "name": tool, "input": input, "status": "completed"
            });
            push_item(&mut script, &item);
            output_tokens = 20;
        }
        Reply::Text(text) => {
            let deltas = text_deltas(text);
            output_tokens = u32::try_from(deltas.len()).unwrap_or(u32::MAX);
            push_message(&mut script, deltas, Duration::ZERO);
        }
        Reply::Slow { deltas, interval } => {
            output_tokens = *deltas;
            push_message(
                &mut script,
                (0..*deltas).map(slow_delta).collect(),
                *interval,
            );
        }
        Reply::Empty => {}
        Reply::Cut => {
            push_message_head(&mut script, CUT_DELTAS.map(str::to_owned).to_vec());
            // No text done, no item done, no `response.completed`.
            return script;
        }
    }

    let completed = json!({
        "type": "response.completed",
        "response": {
            "id": response_id, "object": "response", "created_at": 0, "status": "completed",
            "model": model, "output": [],
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": { "cached_tokens": 0 },
                "output_tokens": output_tokens,
                "output_tokens_details": { "reasoning_tokens": 0 },
                "total_tokens": 100 + output_tokens
            }
        }
    });
    script.push(Duration::ZERO, event(&completed));
    script
}

fn push_item(script: &mut Script, item: &Value) {
    let added = json!({ "type": "response.output_item.added", "output_index": 0, "item": item });
    let done = json!({ "type": "response.output_item.done", "output_index": 0, "item": item });
    script.push(Duration::ZERO, event(&added));
    script.push(Duration::ZERO, event(&done));
}

/// The start of an assistant message and its `deltas`, without the events that end it.
fn push_message_head(script: &mut Script, deltas: Vec<String>) {
    let item_id = next_id("msg_");
    push_message_start(script, &item_id);
    for delta in deltas {
        script.push(Duration::ZERO, event(&text_delta(&item_id, &delta)));
    }
}

fn push_message_start(script: &mut Script, item_id: &str) {
    let added = json!({
        "type": "response.output_item.added", "output_index": 0,
        "item": {
            "type": "message", "id": item_id, "role": "assistant", "status": "in_progress",
            "content": []
        }
    });
    script.push(Duration::ZERO, event(&added));
    let part = json!({
        "type": "response.content_part.added", "item_id": item_id, "output_index": 0,
        "content_index": 0, "part": { "type": "output_text", "text": "", "annotations": [] }
    });
    script.push(Duration::ZERO, event(&part));
}

fn text_delta(item_id: &str, delta: &str) -> Value {
    json!({
        "type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
        "content_index": 0, "delta": delta
    })
}

/// An assistant message streamed as `deltas`, each after `interval`.
fn push_message(script: &mut Script, deltas: Vec<String>, interval: Duration) {
    let item_id = next_id("msg_");
    push_message_start(script, &item_id);
    let mut text = String::new();
    for delta in deltas {
        script.push(interval, event(&text_delta(&item_id, &delta)));
        text.push_str(&delta);
    }
    let text_done = json!({
        "type": "response.output_text.done", "item_id": item_id, "output_index": 0,
        "content_index": 0, "text": text
    });
    script.push(Duration::ZERO, event(&text_done));
    let done = json!({
        "type": "response.output_item.done", "output_index": 0,
        "item": {
            "type": "message", "id": item_id, "role": "assistant", "status": "completed",
            "content": [{ "type": "output_text", "text": text, "annotations": [] }]
        }
    });
    script.push(Duration::ZERO, event(&done));
}

fn event(data: &Value) -> Bytes {
    let name = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    super::sse_event(name, data)
}
