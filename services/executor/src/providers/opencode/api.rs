//! The HTTP client for one `opencode serve` process on a loopback port: the few calls
//! the driver needs (health, sessions, `prompt_async`, abort, permission and question
//! replies) and the reader of its SSE event stream (`GET /event`).
//!
//! Every request carries the server's basic-auth credentials (a random password per
//! server, see `session.rs`). Ids that go into a URL path are checked to be plain
//! opencode ids first, so that nothing read from the stream can redirect a request.

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_platform::sse::client::Parser;
use tokio::sync::mpsc;

/// The basic-auth user name (`OPENCODE_SERVER_USERNAME`, set explicitly at spawn).
pub(crate) const SERVER_USERNAME: &str = "opencode";

/// Bound on a single API call (not the event stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An SSE event larger than this is dropped (and reported) instead of buffered.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("request to the opencode server failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the opencode server answered {path} with HTTP {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("not a valid opencode id: {0:?}")]
    InvalidId(String),
    #[error("unexpected answer from the opencode server to {path}: {problem}")]
    Decode { path: String, problem: String },
}

/// The model a prompt names (`providerID/modelID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelRef {
    pub(crate) provider_id: String,
    pub(crate) model_id: String,
}

#[cfg(test)]
tokio::task_local! {
    /// Lets a test put a proxy between the adapter and the server (to cut the event
    /// stream while the server lives on): maps the server's port to the port the
    /// adapter connects to. See `live_tests/proxy.rs`.
    pub(crate) static ROUTE: std::sync::Arc<dyn Fn(u16) -> u16 + Send + Sync>;
}

#[cfg(test)]
fn connect_port(port: u16) -> u16 {
    ROUTE.try_with(|route| route(port)).unwrap_or(port)
}

#[cfg(not(test))]
fn connect_port(port: u16) -> u16 {
    port
}

/// A client of one server.
#[derive(Clone)]
pub(crate) struct ServerApi {
    client: reqwest::Client,
    base: String,
    password: String,
}

impl std::fmt::Debug for ServerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ServerApi {
    pub(crate) fn new(port: u16, password: String) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            // The server is on loopback: a proxy from the environment must not apply.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            base: format!("http://127.0.0.1:{}", connect_port(port)),
            password,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .basic_auth(SERVER_USERNAME, Some(&self.password))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, String), ApiError> {
        let mut request = self.request(method, path).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, text))
    }

    async fn expect_success(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<String, ApiError> {
        let (status, text) = self.call(method, path, body).await?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(ApiError::Status {
                path: path.to_owned(),
                status,
                body: shorten(&text, 500),
            })
        }
    }

    /// Whether the server answers its health check (with our credentials).
    pub(crate) async fn healthy(&self) -> bool {
        let request = self
            .request(reqwest::Method::GET, "/global/health")
            .timeout(Duration::from_secs(2));
        matches!(request.send().await, Ok(response) if response.status().is_success())
    }

    /// Opens the event stream; events flow into the returned reader.
    pub(crate) async fn events(&self) -> Result<EventReader, ApiError> {
        let response = self
            .request(reqwest::Method::GET, "/event")
            .header("accept", "text/event-stream")
            .send()
            .await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                path: "/event".to_owned(),
                status,
                body: String::new(),
            });
        }
        Ok(EventReader::spawn(response.bytes_stream()))
    }

    /// Whether a session exists on this server (its data directory).
    pub(crate) async fn session_exists(&self, session_id: &str) -> Result<bool, ApiError> {
        let path = format!("/session/{}", checked_id(session_id)?);
        let (status, text) = self.call(reqwest::Method::GET, &path, None).await?;
        match status {
            200..=299 => Ok(true),
            // An id of a session that does not exist is a 404 (or a 400 if the
            // server rejects its shape): either way there is nothing to continue.
            400 | 404 => Ok(false),
            status => Err(ApiError::Status {
                path,
                status,
                body: shorten(&text, 500),
            }),
        }
    }

    /// Creates a session; returns its id.
    pub(crate) async fn create_session(&self, title: &str) -> Result<String, ApiError> {
        let path = "/session";
        let text = self
            .expect_success(reqwest::Method::POST, path, Some(json!({"title": title})))
            .await?;
        let session: Value = serde_json::from_str(&text).map_err(|e| ApiError::Decode {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        session
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_plain_id(id))
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Decode {
                path: path.to_owned(),
                problem: "no session id in the answer".to_owned(),
            })
    }

    /// Starts a turn; returns once the prompt is accepted (the turn runs on).
    pub(crate) async fn prompt_async(
        &self,
        session_id: &str,
        text: &str,
        model: Option<&ModelRef>,
    ) -> Result<(), ApiError> {
        let path = format!("/session/{}/prompt_async", checked_id(session_id)?);
        let mut body = json!({"parts": [{"type": "text", "text": text}]});
        if let Some(model) = model {
            body["model"] = json!({"providerID": model.provider_id, "modelID": model.model_id});
        }
        self.expect_success(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// Aborts the session's running turn.
    pub(crate) async fn abort(&self, session_id: &str) -> Result<(), ApiError> {
        let path = format!("/session/{}/abort", checked_id(session_id)?);
        self.expect_success(reqwest::Method::POST, &path, None)
            .await
            .map(drop)
    }

    /// Answers a permission request: allow this once, or reject (with the human's
    /// message, which opencode hands to the model).
    pub(crate) async fn reply_permission(
        &self,
        permission_id: &str,
        approve: bool,
        message: Option<&str>,
    ) -> Result<(), ApiError> {
        let path = format!("/permission/{}/reply", checked_id(permission_id)?);
        let mut body = json!({"reply": if approve { "once" } else { "reject" }});
        if let Some(message) = message.filter(|m| !approve && !m.is_empty()) {
            body["message"] = json!(message);
        }
        self.expect_success(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// The status of every session that is not idle (`{sessionID: {type, …}}`; an idle
    /// session is absent).
    pub(crate) async fn session_statuses(
        &self,
    ) -> Result<serde_json::Map<String, Value>, ApiError> {
        match self.get_json("/session/status").await? {
            Value::Object(statuses) => Ok(statuses),
            _ => Err(not_shaped("/session/status", "an object")),
        }
    }

    /// The permission requests waiting for a reply, of every session.
    pub(crate) async fn pending_permissions(&self) -> Result<Vec<Value>, ApiError> {
        self.get_list("/permission").await
    }

    /// The question-tool questions waiting for an answer, of every session.
    pub(crate) async fn pending_questions(&self) -> Result<Vec<Value>, ApiError> {
        self.get_list("/question").await
    }

    /// The session's whole history, oldest first: `[{info, parts}]`.
    pub(crate) async fn messages(&self, session_id: &str) -> Result<Vec<Value>, ApiError> {
        self.get_list(&format!("/session/{}/message", checked_id(session_id)?))
            .await
    }

    async fn get_json(&self, path: &str) -> Result<Value, ApiError> {
        let text = self
            .expect_success(reqwest::Method::GET, path, None)
            .await?;
        serde_json::from_str(&text).map_err(|e| ApiError::Decode {
            path: path.to_owned(),
            problem: e.to_string(),
        })
    }

    async fn get_list(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        match self.get_json(path).await? {
            Value::Array(items) => Ok(items),
            _ => Err(not_shaped(path, "a list")),
        }
    }

    /// Rejects a question of the question tool.
    pub(crate) async fn reject_question(&self, question_id: &str) -> Result<(), ApiError> {
        let path = format!("/question/{}/reject", checked_id(question_id)?);
        self.expect_success(reqwest::Method::POST, &path, None)
            .await
            .map(drop)
    }
}

fn not_shaped(path: &str, expected: &str) -> ApiError {
    ApiError::Decode {
        path: path.to_owned(),
        problem: format!("the answer is not {expected}"),
    }
}

/// opencode ids look like `ses_deccef1d6ffe0Yqkh2sldwkxQG`.
pub(crate) fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn checked_id(id: &str) -> Result<&str, ApiError> {
    if is_plain_id(id) {
        Ok(id)
    } else {
        Err(ApiError::InvalidId(shorten(id, 80)))
    }
}

/// The first `max` bytes of `text` (on a char boundary), marked when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[+{} bytes]", &text[..end], text.len() - end)
}

/// One item of the event stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamItem {
    /// A decoded event and its raw `data` payload.
    Event { raw: String, event: Value },
    /// A payload that is not JSON (kept as evidence, otherwise ignored).
    Garbage(String),
    /// The stream ended (the error, if it broke).
    Closed(Option<String>),
}

/// Reads the event stream in a task of its own (so that reading never waits on the
/// driver); the task ends when the stream ends or the reader is dropped.
pub(crate) struct EventReader {
    items: mpsc::UnboundedReceiver<StreamItem>,
    task: tokio::task::JoinHandle<()>,
}

impl EventReader {
    fn spawn<S, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let (tx, items) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut parser = Parser::with_max_event_bytes(MAX_EVENT_BYTES);
            let closed = loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        for item in parse_chunk(&mut parser, &chunk) {
                            if tx.send(item).is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break None,
                }
            };
            let _ = tx.send(StreamItem::Closed(closed));
        });
        Self { items, task }
    }

    /// The next item; `Closed` once more after the stream ended, then `Closed` forever.
    pub(crate) async fn next(&mut self) -> StreamItem {
        self.items.recv().await.unwrap_or(StreamItem::Closed(None))
    }
}

impl Drop for EventReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The items `chunk` completes: every event's `data` decoded, an oversized event as a
/// note of what was dropped.
pub(super) fn parse_chunk(parser: &mut Parser, chunk: &[u8]) -> Vec<StreamItem> {
    parser
        .feed(chunk)
        .into_iter()
        .map(|event| match event {
            Ok(event) => decode(event.data),
            Err(too_large) => StreamItem::Garbage(too_large.to_string()),
        })
        .collect()
}

fn decode(raw: String) -> StreamItem {
    match serde_json::from_str::<Value>(&raw) {
        Ok(event) if event.is_object() => StreamItem::Event { raw, event },
        _ => StreamItem::Garbage(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_on_blank_lines_across_chunks() {
        let mut parser = Parser::with_max_event_bytes(MAX_EVENT_BYTES);
        let mut items = parse_chunk(&mut parser, b"data: {\"type\":\"server.connected\",\"prop");
        assert!(items.is_empty());
        items.extend(parse_chunk(
            &mut parser,
            b"erties\":{}}\r\n\r\n: comment\nevent: x\ndata: not json\n\n",
        ));
        items.extend(parse_chunk(
            &mut parser,
            b"data: {\"a\":\ndata: 1}\n\ndata: [1]\n\n\n",
        ));
        assert_eq!(
            items,
            [
                StreamItem::Event {
                    raw: r#"{"type":"server.connected","properties":{}}"#.into(),
                    event: json!({"type": "server.connected", "properties": {}}),
                },
                StreamItem::Garbage("not json".into()),
                StreamItem::Event {
                    raw: "{\"a\":\n1}".into(),
                    event: json!({"a": 1}),
                },
                StreamItem::Garbage("[1]".into()),
            ]
        );
    }

    #[test]
    fn an_oversized_event_is_dropped_and_the_stream_goes_on() {
        let mut parser = Parser::with_max_event_bytes(MAX_EVENT_BYTES);
        let mut big = b"data: ".to_vec();
        big.resize(MAX_EVENT_BYTES + 10, b'x');
        let items = parse_chunk(&mut parser, &big);
        assert!(
            matches!(items.as_slice(), [StreamItem::Garbage(note)] if note.contains("dropped"))
        );
        let items = parse_chunk(&mut parser, b"xxx\n\ndata: {\"ok\":true}\n\n");
        assert_eq!(
            items,
            [StreamItem::Event {
                raw: r#"{"ok":true}"#.into(),
                event: json!({"ok": true}),
            }]
        );
    }

    #[tokio::test]
    async fn the_reader_reports_the_end_of_the_stream() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"data: {\"type\":\"a\"}\n\n")),
            Err(std::io::Error::other("reset")),
        ];
        let mut reader = EventReader::spawn(futures::stream::iter(chunks));
        assert!(matches!(reader.next().await, StreamItem::Event { .. }));
        assert_eq!(
            reader.next().await,
            StreamItem::Closed(Some("reset".into()))
        );
        assert_eq!(reader.next().await, StreamItem::Closed(None));
    }

    #[test]
    fn ids_that_could_change_a_url_are_refused() {
        assert!(is_plain_id("ses_deccef1d6ffe0Yqkh2sldwkxQG"));
        assert!(is_plain_id("per_213311423001AXeMWNgsR5Eb6M"));
        assert!(!is_plain_id(""));
        assert!(!is_plain_id("../global/dispose"));
        assert!(!is_plain_id("ses_1?directory=/"));
        assert_eq!(shorten("héllo", 2), "h…[+5 bytes]");
    }
}
