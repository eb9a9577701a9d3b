//! Property-test input for the adapters: arbitrary JSON shaped enough like the CLIs'
//! protocol lines (real type tags, method names and field names as keys) that the
//! translators get past their first `match` and into the field handling.

use proptest::prelude::*;
use serde_json::Value;

/// Words the three CLIs' protocols use as tags, methods and keys.
const WORDS: &[&str] = &[
    "type",
    "subtype",
    "id",
    "method",
    "params",
    "result",
    "error",
    "message",
    "content",
    "text",
    "delta",
    "event",
    "index",
    "content_block",
    "tool_use",
    "tool_result",
    "tool_use_id",
    "input",
    "name",
    "usage",
    "session_id",
    "sessionID",
    "properties",
    "part",
    "info",
    "status",
    "item",
    "itemId",
    "threadId",
    "turnId",
    "turn",
    "changes",
    "path",
    "kind",
    "diff",
    "system",
    "init",
    "assistant",
    "user",
    "stream_event",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_start",
    "message_stop",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "control_request",
    "control_response",
    "can_use_tool",
    "request",
    "request_id",
    "api_retry",
    "item/started",
    "item/completed",
    "item/agentMessage/delta",
    "item/commandExecution/outputDelta",
    "turn/started",
    "turn/completed",
    "thread/tokenUsage/updated",
    "error",
    "agentMessage",
    "commandExecution",
    "fileChange",
    "reasoning",
    "message.updated",
    "message.part.updated",
    "message.part.delta",
    "session.status",
    "session.idle",
    "session.error",
    "permission.asked",
    "permission.updated",
    "question.asked",
    "tool",
    "step-finish",
    "state",
    "callID",
    "messageID",
    "partID",
    "field",
    "tokens",
    "cost",
    "output",
    "metadata",
    "filediff",
    "completed",
    "running",
    "idle",
    "busy",
    "retry",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(str::to_owned),
        ".{0,12}",
    ]
}

/// Any JSON value, up to six levels deep.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::String),
        ".{0,64}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(word(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object carrying `tag` under `key` (`type`, `method` …) and arbitrary members.
pub(crate) fn tagged(key: &'static str) -> impl Strategy<Value = Value> {
    (word(), prop::collection::btree_map(word(), json(), 0..8)).prop_map(move |(tag, members)| {
        let mut object: serde_json::Map<String, Value> = members.into_iter().collect();
        object.insert(key.to_owned(), Value::String(tag));
        Value::Object(object)
    })
}

/// A protocol line: mostly JSON (arbitrary or tagged), sometimes any text.
pub(crate) fn line(key: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => tagged(key).prop_map(|v| v.to_string()),
        1 => json().prop_map(|v| v.to_string()),
        1 => ".{0,200}",
    ]
}
