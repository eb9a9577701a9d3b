//! The subset of the `codex app-server` JSON-RPC protocol (codex 0.169) this adapter
//! speaks: framing of the three kinds of incoming lines, the outgoing requests and
//! answers, and the few payload types it reads.
//!
//! Every type tolerates unknown fields and every field the adapter can live without is
//! optional: the server adds fields between versions, leaves out `"jsonrpc":"2.0"` and
//! puts `emittedAtMs` next to `params`. Server→client requests have their own id space
//! (integers from 0), so their ids are kept as raw JSON and echoed back untouched.

use serde::Deserialize;
use serde_json::{Value, json};

/// JSON-RPC "method not found", used to refuse server requests this adapter does not handle.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;

/// One line from the server's stdout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    /// The answer to one of our requests.
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
    /// A server→client request that must be answered (approvals and the like).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
}

/// Why a line is not a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("a JSON value that is not a JSON-RPC message")]
    NotRpc,
}

/// The `error` member of a JSON-RPC response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct RpcError {
    #[serde(default)]
    pub(crate) code: i64,
    #[serde(default)]
    pub(crate) message: String,
}

impl Incoming {
    pub(crate) fn parse(line: &str) -> Result<Incoming, FrameError> {
        let value: Value =
            serde_json::from_str(line).map_err(|error| FrameError::NotJson(error.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(FrameError::NotRpc);
        };
        let id = map.remove("id").filter(|id| !id.is_null());
        let method = match map.remove("method") {
            Some(Value::String(method)) => Some(method),
            Some(_) => return Err(FrameError::NotRpc),
            None => None,
        };
        let params = map.remove("params").unwrap_or(Value::Null);
        match (id, method) {
            (Some(id), Some(method)) => Ok(Incoming::Request { id, method, params }),
            (None, Some(method)) => Ok(Incoming::Notification { method, params }),
            (Some(id), None) => {
                if let Some(error) = map.remove("error") {
                    let error = serde_json::from_value(error.clone()).unwrap_or(RpcError {
                        code: 0,
                        message: error.to_string(),
                    });
                    Ok(Incoming::Response {
                        id,
                        outcome: Err(error),
                    })
                } else {
                    let result = map.remove("result").ok_or(FrameError::NotRpc)?;
                    Ok(Incoming::Response {
                        id,
                        outcome: Ok(result),
                    })
                }
            }
            (None, None) => Err(FrameError::NotRpc),
        }
    }
}

/// A client request line.
pub(crate) fn request(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// A client notification line.
pub(crate) fn notification(method: &str) -> String {
    json!({"jsonrpc": "2.0", "method": method}).to_string()
}

/// The answer to a server request.
pub(crate) fn result(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// The refusal of a server request.
pub(crate) fn error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// `initialize` params: who we are.
pub(crate) fn initialize_params() -> Value {
    json!({
        "clientInfo": {
            "name": "switchyard",
            "title": "Switchyard",
            "version": env!("CARGO_PKG_VERSION"),
        }
    })
}

/// `thread` in the results of `thread/start` and `thread/resume`, and in `thread/started`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ThreadResult {
    pub(crate) thread: Thread,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Thread {
    pub(crate) id: String,
}

/// The result of `turn/start`, and the params of `turn/started` and `turn/completed`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct TurnEnvelope {
    pub(crate) turn: Turn,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Turn {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) status: TurnStatus,
    #[serde(default)]
    pub(crate) error: Option<TurnError>,
    /// With `itemsView: "summary"` (on `turn/completed`): the turn's agent messages.
    #[serde(default)]
    pub(crate) items: Vec<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum TurnStatus {
    Completed,
    Interrupted,
    Failed,
    #[default]
    InProgress,
    #[serde(other)]
    Unknown,
}

/// An error of a turn: in `turn.error` and in the `error` notification.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TurnError {
    #[serde(default)]
    pub(crate) message: String,
    /// A string (`"unauthorized"`, `"other"` …) or an object with an `httpStatusCode`
    /// (`{"httpConnectionFailed":{"httpStatusCode":401}}` …); kept raw.
    #[serde(default)]
    pub(crate) codex_error_info: Option<Value>,
    #[serde(default)]
    pub(crate) additional_details: Option<String>,
}

/// Params of the `error` notification.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorNotification {
    pub(crate) error: TurnError,
    #[serde(default)]
    pub(crate) will_retry: bool,
}

/// Params of `item/started` and `item/completed`: the item is kept raw and read by type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ItemEnvelope {
    pub(crate) item: Value,
}

/// Params of the streaming deltas (`item/agentMessage/delta`, `item/reasoning/*Delta`,
/// `item/commandExecution/outputDelta`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemDelta {
    pub(crate) item_id: String,
    #[serde(default)]
    pub(crate) delta: String,
}

/// Params of `thread/tokenUsage/updated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenUsageUpdated {
    pub(crate) token_usage: ThreadTokenUsage,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ThreadTokenUsage {
    /// Cumulative for the thread (across turns and processes).
    pub(crate) total: TokenUsageBreakdown,
    /// The request that caused this update.
    pub(crate) last: TokenUsageBreakdown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct TokenUsageBreakdown {
    pub(crate) input_tokens: u64,
    pub(crate) cached_input_tokens: u64,
    pub(crate) output_tokens: u64,
}

/// Params of `item/commandExecution/requestApproval` (the fields shown to a human).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CommandApproval {
    pub(crate) item_id: String,
    pub(crate) command: Option<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) reason: Option<String>,
}

/// Params of `item/fileChange/requestApproval`; the changes themselves were announced in
/// the `item/started` of the same item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct FileChangeApproval {
    pub(crate) item_id: String,
    pub(crate) reason: Option<String>,
    pub(crate) grant_root: Option<String>,
}

/// The server requests this adapter answers.
pub(crate) mod server_requests {
    pub(crate) const COMMAND_APPROVAL: &str = "item/commandExecution/requestApproval";
    pub(crate) const FILE_CHANGE_APPROVAL: &str = "item/fileChange/requestApproval";
    /// v1 forms, still in the 0.169 schema; answered with `approved` / `denied`.
    pub(crate) const LEGACY_EXEC_APPROVAL: &str = "execCommandApproval";
    pub(crate) const LEGACY_PATCH_APPROVAL: &str = "applyPatchApproval";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_responses_requests_and_notifications_without_jsonrpc() {
        assert_eq!(
            Incoming::parse(r#"{"id":1,"result":{"userAgent":"x"}}"#).unwrap(),
            Incoming::Response {
                id: json!(1),
                outcome: Ok(json!({"userAgent":"x"}))
            }
        );
        assert_eq!(
            Incoming::parse(
                r#"{"id":7,"error":{"code":-32600,"message":"no such thread","data":1}}"#
            )
            .unwrap(),
            Incoming::Response {
                id: json!(7),
                outcome: Err(RpcError {
                    code: -32600,
                    message: "no such thread".into()
                })
            }
        );
        assert_eq!(
            Incoming::parse(
                r#"{"method":"item/fileChange/requestApproval","id":0,"params":{"itemId":"c"}}"#
            )
            .unwrap(),
            Incoming::Request {
                id: json!(0),
                method: "item/fileChange/requestApproval".into(),
                params: json!({"itemId":"c"})
            }
        );
        assert_eq!(
            Incoming::parse(r#"{"method":"warning","params":{"message":"m"},"emittedAtMs":1}"#)
                .unwrap(),
            Incoming::Notification {
                method: "warning".into(),
                params: json!({"message":"m"})
            }
        );
        assert!(matches!(
            Incoming::parse("WARNING: proceeding"),
            Err(FrameError::NotJson(_))
        ));
        assert_eq!(Incoming::parse("[1,2]"), Err(FrameError::NotRpc));
        assert_eq!(Incoming::parse(r#"{"id":3}"#), Err(FrameError::NotRpc));
        assert_eq!(Incoming::parse(r#"{"method":5}"#), Err(FrameError::NotRpc));
    }

    #[test]
    fn outgoing_lines_echo_server_ids_untouched() {
        let line = result(&json!(0), json!({"decision": "accept"}));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["id"], json!(0));
        assert_eq!(value["result"]["decision"], "accept");
        let refusal: Value =
            serde_json::from_str(&error(&json!("x-1"), METHOD_NOT_FOUND, "no")).unwrap();
        assert_eq!(refusal["id"], "x-1");
        assert_eq!(refusal["error"]["code"], METHOD_NOT_FOUND);
    }

    #[test]
    fn turn_status_tolerates_values_added_later() {
        let turn: Turn =
            serde_json::from_value(json!({"id":"t","status":"paused","extra":1})).unwrap();
        assert_eq!(turn.status, TurnStatus::Unknown);
    }
}
