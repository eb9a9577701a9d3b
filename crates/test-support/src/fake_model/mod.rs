//! A fake model server that the real agent CLIs (codex, claude, opencode) talk to in
//! tests, so a whole agent turn runs offline and deterministically.
//!
//! One port serves all three wire APIs:
//!
//! | route | wire API | used by |
//! |---|---|---|
//! | `POST /v1/responses` | OpenAI Responses, SSE (`responses.rs`) | codex |
//! | `POST /v1/chat/completions` | OpenAI Chat Completions, SSE (`chat.rs`) | opencode |
//! | `POST /v1/messages` (`?beta=true` allowed) | Anthropic Messages, SSE (`messages.rs`) | claude |
//! | `HEAD /`, `GET /` | 200, empty | claude's preconnect |
//!
//! The server is stateless: what it answers depends only on the request. A marker in the
//! conversation's user text picks the [`Scenario`]: the last marker of any user message
//! wins, so a later turn of a resumed conversation can switch scenarios, and a later
//! turn without a marker keeps the earlier one (`SCN_TOOL` switches back to the default).
//! Without a marker the default scenario calls the shell tool the request offers with
//! [`TOOL_COMMAND`] and, once the current turn holds a tool result, answers
//! [`FINAL_ANSWER`]. A request without an API key (`Authorization: Bearer …` or
//! `x-api-key`) is answered 401. Every request is recorded for assertions
//! ([`FakeModel::requests`]).
//!
//! A model API nobody answers (connection refused) is [`Unreachable`]: a port that is
//! reserved but not listening.

mod chat;
mod messages;
mod responses;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt as _, stream};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The shell command the default scenario asks the CLI to run (in its working directory).
pub const TOOL_COMMAND: &str = "echo hello from fake model > hello.txt && cat hello.txt";
/// The file [`TOOL_COMMAND`] creates.
pub const TOOL_FILE: &str = "hello.txt";
/// The final text of the default scenario, sent once the turn holds a tool result.
pub const FINAL_ANSWER: &str = "Done. I ran the command and created hello.txt. FINAL_ANSWER_OK";
/// The token tests look for in a CLI's output to know the final answer arrived.
pub const FINAL_MARKER: &str = "FINAL_ANSWER_OK";
/// The answer of [`Scenario::Text`] (and of requests that offer no usable tool).
pub const TEXT_ANSWER: &str = "Hello from the fake model. TEXT_ANSWER_OK";
/// The token inside [`TEXT_ANSWER`].
pub const TEXT_MARKER: &str = "TEXT_ANSWER_OK";
/// The file [`Scenario::Patch`] adds.
pub const PATCH_FILE: &str = "patched.txt";
/// The content line [`Scenario::Patch`] writes into [`PATCH_FILE`].
pub const PATCH_LINE: &str = "patched by fake model";
/// The final text of [`Scenario::Patch`], sent once the turn holds the tool result.
pub const PATCH_ANSWER: &str = "Done. I applied the patch and created patched.txt. FINAL_ANSWER_OK";
/// Every text delta of [`Scenario::Slow`] is this word followed by its index and a space.
pub const SLOW_DELTA_PREFIX: &str = "tick";
/// The message of the 401 JSON error body (both for `SCN_E401` and a missing key).
pub const ERROR_MESSAGE_401: &str = "Incorrect API key provided";
/// The message of the 429 JSON error body (`SCN_E429`).
pub const ERROR_MESSAGE_429: &str = "fake rate limit exceeded";
/// The message of the 500 JSON error body (`SCN_E500`).
pub const ERROR_MESSAGE_500: &str = "fake internal error";
/// The two text deltas [`Scenario::Cut`] sends before the connection closes.
pub const CUT_DELTAS: [&str; 2] = ["This answer is cut ", "off in the middle of a "];

/// How many deltas `SCN_SLOW` sends when the marker does not say.
pub const SLOW_DEFAULT_DELTAS: u32 = 120;
/// The pause before each `SCN_SLOW` delta when the marker does not say.
pub const SLOW_DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// What the fake model does with a conversation, picked by a marker in the user text.
///
/// Markers: `SCN_TOOL` (the default, to switch back in a later turn), `SCN_TEXT`, `SCN_SLOW` (optionally `SCN_SLOW:<deltas>x<millis>`, e.g.
/// `SCN_SLOW:20x100` = 20 deltas 100 ms apart), `SCN_RUN[[<command>]]`, `SCN_PATCH`,
/// `SCN_E401`, `SCN_E429`, `SCN_E500`, `SCN_HANG`, `SCN_STALL`, `SCN_CUT`, `SCN_EMPTY`. No marker =
/// [`Scenario::ToolThenText`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Call the shell tool with [`TOOL_COMMAND`]; once the turn holds a tool result,
    /// answer [`FINAL_ANSWER`]. Requests that offer no shell tool get [`TEXT_ANSWER`].
    ToolThenText,
    /// Answer [`TEXT_ANSWER`] in a few deltas.
    Text,
    /// Like [`Scenario::ToolThenText`], but the shell tool runs the command the marker
    /// carries (`SCN_RUN[[<command>]]`, see [`run_marker`]) instead of [`TOOL_COMMAND`]:
    /// what a hostile model would make the agent do.
    Run,
    /// `deltas` text deltas (`"tick0 "`, `"tick1 "`, …), each after `interval`.
    Slow {
        /// Number of deltas.
        deltas: u32,
        /// Pause before each delta.
        interval: Duration,
    },
    /// Add [`PATCH_FILE`]: codex gets an `apply_patch` call (the tool when offered, else
    /// `apply_patch` through its shell tool, which codex intercepts as a file change);
    /// claude and opencode get their file-writing tool (`Write` / `write`). Then
    /// [`PATCH_ANSWER`].
    Patch,
    /// HTTP 401 with the vendor's JSON error body.
    E401,
    /// HTTP 429 with the vendor's JSON error body.
    E429,
    /// HTTP 500 with the vendor's JSON error body.
    E500,
    /// Never send response headers (the request stays open until the server stops).
    Hang,
    /// Send headers and the first SSE event, then nothing (until the server stops).
    Stall,
    /// Start a text answer, send the two [`CUT_DELTAS`], then close the stream without
    /// its end (no `finish_reason` / `[DONE]`, no `response.completed`, no
    /// `message_stop`): the connection was cut mid-answer.
    Cut,
    /// A well-formed, complete stream with no output at all.
    Empty,
}

impl Scenario {
    /// The scenario the LAST marker in `text` names; `None` when `text` has no marker.
    pub fn from_text(text: &str) -> Option<Scenario> {
        let mut found = None;
        let mut rest = text;
        while let Some(at) = rest.find("SCN_") {
            let after = &rest[at + 4..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
                .unwrap_or(after.len());
            let (name, tail) = after.split_at(name_len);
            let scenario = match name {
                "TOOL" => Some(Scenario::ToolThenText),
                "TEXT" => Some(Scenario::Text),
                "SLOW" => Some(parse_slow(tail)),
                "RUN" if run_command(tail).is_some() => Some(Scenario::Run),
                "PATCH" => Some(Scenario::Patch),
                "E401" => Some(Scenario::E401),
                "E429" => Some(Scenario::E429),
                "E500" => Some(Scenario::E500),
                "HANG" => Some(Scenario::Hang),
                "STALL" => Some(Scenario::Stall),
                "CUT" => Some(Scenario::Cut),
                "EMPTY" => Some(Scenario::Empty),
                _ => None,
            };
            if scenario.is_some() {
                found = scenario;
            }
            rest = tail;
        }
        found
    }

    /// The HTTP error status this scenario answers with, if it is an error scenario.
    pub fn error_status(self) -> Option<StatusCode> {
        match self {
            Scenario::E401 => Some(StatusCode::UNAUTHORIZED),
            Scenario::E429 => Some(StatusCode::TOO_MANY_REQUESTS),
            Scenario::E500 => Some(StatusCode::INTERNAL_SERVER_ERROR),
            _ => None,
        }
    }
}

/// The marker that makes the model run `command` with the agent's shell tool
/// ([`Scenario::Run`]). The command must not contain `]]`.
pub fn run_marker(command: &str) -> String {
    format!("SCN_RUN{RUN_OPEN}{command}{RUN_CLOSE}")
}

const RUN_OPEN: &str = "[[";
const RUN_CLOSE: &str = "]]";

/// The command of a `SCN_RUN` marker, from the text right after `SCN_RUN`.
fn run_command(tail: &str) -> Option<&str> {
    let rest = tail.strip_prefix(RUN_OPEN)?;
    rest.find(RUN_CLOSE).map(|end| &rest[..end])
}

/// `:<deltas>x<millis>` right after `SCN_SLOW`, else the defaults.
fn parse_slow(tail: &str) -> Scenario {
    let parsed = tail.strip_prefix(':').and_then(|spec| {
        let end = spec
            .find(|c: char| !(c.is_ascii_digit() || c == 'x'))
            .unwrap_or(spec.len());
        let (deltas, millis) = spec[..end].split_once('x')?;
        Some((deltas.parse().ok()?, millis.parse().ok()?))
    });
    match parsed {
        Some((deltas, millis)) => Scenario::Slow {
            deltas,
            interval: Duration::from_millis(millis),
        },
        None => Scenario::Slow {
            deltas: SLOW_DEFAULT_DELTAS,
            interval: SLOW_DEFAULT_INTERVAL,
        },
    }
}

/// Which of the three wire APIs a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireApi {
    /// OpenAI Responses (`/v1/responses`).
    Responses,
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// Anthropic Messages (`/v1/messages`).
    Messages,
}

impl WireApi {
    fn from_path(path: &str) -> Option<WireApi> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/responses") {
            Some(WireApi::Responses)
        } else if path.ends_with("/chat/completions") {
            Some(WireApi::Chat)
        } else if path.ends_with("/messages") {
            Some(WireApi::Messages)
        } else {
            None
        }
    }
}

/// What the fake model answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a model request (`HEAD /`, `GET /`): 200.
    Probe,
    /// Unknown path: 404.
    NotFound,
    /// The body was not a JSON object: 400.
    BadRequest,
    /// The request carried no API key: 401.
    MissingKey,
    /// A call of the named tool (shell or file tool).
    ToolCall {
        /// The tool name as the request offered it.
        tool: String,
    },
    /// [`FINAL_ANSWER`] or [`PATCH_ANSWER`] after a tool result.
    FinalText,
    /// [`TEXT_ANSWER`].
    Text,
    /// The slow stream of [`Scenario::Slow`].
    Slow,
    /// An HTTP error status of an error scenario.
    Error(u16),
    /// No response headers ([`Scenario::Hang`]).
    Hang,
    /// Headers and the first event, then silence ([`Scenario::Stall`]).
    Stall,
    /// A text answer cut off mid-stream ([`Scenario::Cut`]).
    Cut,
    /// A complete stream without output ([`Scenario::Empty`]).
    Empty,
}

/// One request the fake model received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `POST`, `HEAD`, …
    pub method: String,
    /// The path without the query, e.g. `/v1/messages`.
    pub path: String,
    /// The query string without `?`, e.g. `beta=true`.
    pub query: Option<String>,
    /// Lowercased header names → values (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body; `Null` when empty, a JSON string when not JSON.
    pub body: Value,
    /// The wire API of the path, if it is a model route.
    pub api: Option<WireApi>,
    /// The scenario picked from the conversation (model routes only).
    pub scenario: Option<Scenario>,
    /// What was answered.
    pub decision: Decision,
}

impl RecordedRequest {
    /// The value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The API key the request carried: `x-api-key`, else the token of
    /// `Authorization: Bearer …`. Empty values count as absent.
    pub fn api_key(&self) -> Option<&str> {
        api_key(&self.headers)
    }

    /// All user text of the conversation in order (user messages only, tool results
    /// excluded), joined by newlines. Useful for "the resumed conversation contained the
    /// earlier turn".
    pub fn user_text(&self) -> String {
        self.conversation()
            .map(|c| {
                c.items
                    .iter()
                    .filter_map(|item| match item {
                        Item::UserText(text) => Some(text.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The whole body as JSON text, for `contains` checks over everything that was sent
    /// (assistant turns and tool outputs included).
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }

    /// Names of the tools the request offered.
    pub fn tool_names(&self) -> Vec<String> {
        self.conversation().map(|c| c.tools).unwrap_or_default()
    }

    /// Number of tool results in the conversation.
    pub fn tool_result_count(&self) -> usize {
        self.conversation()
            .map(|c| {
                c.items
                    .iter()
                    .filter(|i| matches!(i, Item::ToolResult))
                    .count()
            })
            .unwrap_or(0)
    }

    fn conversation(&self) -> Option<Conversation> {
        Some(Conversation::parse(self.api?, &self.body))
    }
}

/// A running fake model server on 127.0.0.1. Dropping it stops the server and ends every
/// open (hanging or stalled) response.
#[derive(Debug)]
pub struct FakeModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    count: watch::Sender<usize>,
    shutdown: CancellationToken,
}

impl Shared {
    fn record(&self, request: RecordedRequest) {
        let count = {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            requests.push(request);
            requests.len()
        };
        self.count.send_replace(count);
    }
}

impl FakeModel {
    /// Binds a free port on 127.0.0.1 and starts serving.
    pub async fn start() -> anyhow::Result<FakeModel> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("bind the fake model server on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("local address of the fake model server")?;
        let (count, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            count,
            shutdown: CancellationToken::new(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let shutdown = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "fake model server failed");
            }
        });
        tracing::debug!(%addr, "fake model server listening");
        Ok(FakeModel { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT` — the Anthropic base URL (`ANTHROPIC_BASE_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1` — the OpenAI base URL (codex `base_url`, opencode
    /// `baseURL`).
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests whose path starts with `path_prefix` (e.g. `/v1/messages`).
    pub fn requests_for(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .collect()
    }

    /// The model requests (any of the three wire APIs), in arrival order.
    pub fn model_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.api.is_some())
            .collect()
    }

    /// Waits until a recorded request matches `predicate` and returns the first such
    /// request; fails after `timeout` (listing what was received).
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        predicate: impl Fn(&RecordedRequest) -> bool,
    ) -> anyhow::Result<RecordedRequest> {
        let mut count = self.shared.count.subscribe();
        let wait = async {
            loop {
                count.borrow_and_update();
                if let Some(found) = self.requests().into_iter().find(|r| predicate(r)) {
                    return found;
                }
                if count.changed().await.is_err() {
                    // The sender lives in `self.shared`, so this cannot happen while we
                    // hold `self`; park instead of spinning.
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(found) => Ok(found),
            Err(_) => {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} -> {:?}", r.method, r.path, r.decision))
                    .collect();
                anyhow::bail!(
                    "no matching request at the fake model within {timeout:?}; received: {seen:?}"
                )
            }
        }
    }

    /// Stops the server and ends every open response.
    pub fn stop(&self) {
        self.shared.shutdown.cancel();
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.task.abort();
    }
}

/// A model API that refuses every connection: a 127.0.0.1 port bound by this value but
/// not listening, so a connect gets "connection refused" at once and no other process
/// can take the port while the value lives.
#[derive(Debug)]
pub struct Unreachable {
    addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl Unreachable {
    /// Reserves a free port on 127.0.0.1 without listening on it.
    pub fn new() -> anyhow::Result<Unreachable> {
        let socket = tokio::net::TcpSocket::new_v4().context("create a TCP socket")?;
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("bind a port on 127.0.0.1")?;
        let addr = socket
            .local_addr()
            .context("local address of the reserved port")?;
        Ok(Unreachable {
            addr,
            _socket: socket,
        })
    }

    /// `http://127.0.0.1:PORT`, like [`FakeModel::url`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, like [`FakeModel::openai_url`].
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.url())
    }
}

/// One element of a conversation, reduced to what the scenarios need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Text a user message carried (a new turn starts at each one).
    UserText(String),
    /// The result of a tool call.
    ToolResult,
    /// Anything else (assistant output, system text, tool calls).
    Other,
}

/// A request body reduced to its conversation and offered tools; each wire module knows
/// how to read its own format.
#[derive(Debug, Clone, Default)]
struct Conversation {
    items: Vec<Item>,
    tools: Vec<String>,
    /// The offered tools that take freeform text instead of JSON arguments (codex's
    /// `custom` tools such as `apply_patch`).
    freeform_tools: Vec<String>,
}

impl Conversation {
    fn parse(api: WireApi, body: &Value) -> Conversation {
        match api {
            WireApi::Responses => responses::conversation(body),
            WireApi::Chat => chat::conversation(body),
            WireApi::Messages => messages::conversation(body),
        }
    }

    fn scenario(&self) -> Scenario {
        self.items
            .iter()
            .filter_map(|item| match item {
                Item::UserText(text) => Scenario::from_text(text),
                _ => None,
            })
            .next_back()
            .unwrap_or(Scenario::ToolThenText)
    }

    /// The command of the last `SCN_RUN` marker of the user texts.
    fn run_command(&self) -> Option<String> {
        self.items
            .iter()
            .filter_map(|item| match item {
                Item::UserText(text) => text
                    .rmatch_indices("SCN_RUN")
                    .find_map(|(at, _)| run_command(&text[at + "SCN_RUN".len()..])),
                _ => None,
            })
            .next_back()
            .map(str::to_owned)
    }

    /// Whether a tool result follows the last user text, i.e. the current turn already
    /// ran a tool.
    fn turn_has_tool_result(&self) -> bool {
        let start = self
            .items
            .iter()
            .rposition(|i| matches!(i, Item::UserText(_)))
            .map_or(0, |i| i + 1);
        self.items[start..]
            .iter()
            .any(|i| matches!(i, Item::ToolResult))
    }

    fn offers(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t == name)
    }

    fn first_offered(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find(|name| self.offers(name))
            .map(|name| (*name).to_owned())
    }
}

/// What a wire module is asked to stream.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    /// Call `tool` with these JSON arguments.
    ToolCall { tool: String, arguments: Value },
    /// Call codex's freeform (custom) `apply_patch` tool with this patch text.
    CustomToolCall { tool: String, input: String },
    /// Answer this text, split into a few deltas.
    Text(String),
    /// `deltas` text deltas, each after `interval`.
    Slow { deltas: u32, interval: Duration },
    /// A complete stream with no output.
    Empty,
    /// The start of a text answer ([`CUT_DELTAS`]), without the stream's end.
    Cut,
}

/// The text of the `SCN_SLOW` delta number `index`.
fn slow_delta(index: u32) -> String {
    format!("{SLOW_DELTA_PREFIX}{index} ")
}

/// The patch [`Scenario::Patch`] sends to codex.
fn patch_text() -> String {
    format!("*** Begin Patch\n*** Add File: {PATCH_FILE}\n+{PATCH_LINE}\n*** End Patch\n")
}

/// An SSE body to stream: each event after its delay.
#[derive(Debug, Default)]
struct Script {
    events: Vec<(Duration, Bytes)>,
}

impl Script {
    fn push(&mut self, delay: Duration, event: Bytes) {
        self.events.push((delay, event));
    }

    fn into_stream(
        self,
        stall: bool,
        shutdown: CancellationToken,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        let mut events = self.events;
        if stall {
            events.truncate(1);
        }
        let timed = stream::iter(events).then(|(delay, bytes)| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(bytes)
        });
        let silence = stream::once(async move {
            if stall {
                std::future::pending::<()>().await;
            }
        })
        .filter_map(|()| async { None });
        // A stopped FakeModel leaves no stream open (slow or stalled ones included).
        timed.chain(silence).take_until(shutdown.cancelled_owned())
    }
}

/// The single handler: records the request and answers it.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let path = parts.uri.path().to_owned();
    let api = WireApi::from_path(&path);
    let headers = lowercase_headers(&parts.headers);

    let (scenario, decision, response) = match api {
        None => {
            let (decision, response) = probe(&parts.method, &path);
            (None, decision, response)
        }
        Some(api) => {
            let (scenario, decision, response) = answer(api, &headers, &body, &shared.shutdown);
            (scenario, decision, response)
        }
    };
    tracing::debug!(method = %parts.method, %path, ?scenario, ?decision, "fake model request");
    shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        body,
        api,
        scenario,
        decision: decision.clone(),
    });

    if decision == Decision::Hang {
        // Headers are never sent; the request ends only when the server stops.
        shared.shutdown.cancelled().await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    response
}

fn probe(method: &Method, path: &str) -> (Decision, Response) {
    if path == "/" && (method == Method::HEAD || method == Method::GET) {
        (Decision::Probe, StatusCode::OK.into_response())
    } else {
        (Decision::NotFound, StatusCode::NOT_FOUND.into_response())
    }
}

fn answer(
    api: WireApi,
    headers: &BTreeMap<String, String>,
    body: &Value,
    shutdown: &CancellationToken,
) -> (Option<Scenario>, Decision, Response) {
    if !body.is_object() {
        return (
            None,
            Decision::BadRequest,
            error_response(api, StatusCode::BAD_REQUEST, "request body is not JSON"),
        );
    }
    if api_key(headers).is_none() {
        return (
            None,
            Decision::MissingKey,
            error_response(api, StatusCode::UNAUTHORIZED, ERROR_MESSAGE_401),
        );
    }
    let conversation = Conversation::parse(api, body);
    let scenario = conversation.scenario();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_owned();

    if let Some(status) = scenario.error_status() {
        let message = match scenario {
            Scenario::E401 => ERROR_MESSAGE_401,
            Scenario::E429 => ERROR_MESSAGE_429,
            _ => ERROR_MESSAGE_500,
        };
        return (
            Some(scenario),
            Decision::Error(status.as_u16()),
            error_response(api, status, message),
        );
    }
    if scenario == Scenario::Hang {
        return (
            Some(scenario),
            Decision::Hang,
            StatusCode::SERVICE_UNAVAILABLE.into_response(),
        );
    }

    let (decision, reply) = plan(api, scenario, &conversation);
    let stall = scenario == Scenario::Stall;
    let decision = if stall { Decision::Stall } else { decision };
    let script = match api {
        WireApi::Responses => responses::script(&model, &reply),
        WireApi::Chat => chat::script(&model, &reply),
        WireApi::Messages => messages::script(&model, &reply),
    };
    let body = Body::from_stream(script.into_stream(stall, shutdown.clone()));
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    (Some(scenario), decision, response)
}

/// What to stream for a scenario that produces a stream.
fn plan(api: WireApi, scenario: Scenario, conversation: &Conversation) -> (Decision, Reply) {
    let after_tool = conversation.turn_has_tool_result();
    match scenario {
        Scenario::Text | Scenario::Stall => (Decision::Text, Reply::Text(TEXT_ANSWER.to_owned())),
        Scenario::Slow { deltas, interval } => (Decision::Slow, Reply::Slow { deltas, interval }),
        Scenario::Empty => (Decision::Empty, Reply::Empty),
        Scenario::Cut => (Decision::Cut, Reply::Cut),
        Scenario::Patch if after_tool => {
            (Decision::FinalText, Reply::Text(PATCH_ANSWER.to_owned()))
        }
        Scenario::Patch => match patch_call(api, conversation) {
            Some(reply) => (tool_decision(&reply), reply),
            None => (Decision::Text, Reply::Text(TEXT_ANSWER.to_owned())),
        },
        _ if after_tool => (Decision::FinalText, Reply::Text(FINAL_ANSWER.to_owned())),
        Scenario::Run => {
            let command = conversation.run_command().unwrap_or_default();
            match shell_call(api, conversation, &command) {
                Some(reply) => (tool_decision(&reply), reply),
                None => (Decision::Text, Reply::Text(TEXT_ANSWER.to_owned())),
            }
        }
        _ => match shell_call(api, conversation, TOOL_COMMAND) {
            Some(reply) => (tool_decision(&reply), reply),
            None => (Decision::Text, Reply::Text(TEXT_ANSWER.to_owned())),
        },
    }
}

fn tool_decision(reply: &Reply) -> Decision {
    match reply {
        Reply::ToolCall { tool, .. } | Reply::CustomToolCall { tool, .. } => {
            Decision::ToolCall { tool: tool.clone() }
        }
        _ => Decision::Text,
    }
}

/// The call of the request's shell tool running `command`.
fn shell_call(api: WireApi, conversation: &Conversation, command: &str) -> Option<Reply> {
    match api {
        WireApi::Responses => responses::shell_call(conversation, command),
        WireApi::Chat => chat::shell_call(conversation, command),
        WireApi::Messages => messages::shell_call(conversation, command),
    }
}

/// The call that adds [`PATCH_FILE`].
fn patch_call(api: WireApi, conversation: &Conversation) -> Option<Reply> {
    match api {
        WireApi::Responses => responses::patch_call(conversation),
        WireApi::Chat => chat::patch_call(conversation),
        WireApi::Messages => messages::patch_call(conversation),
    }
}

fn error_response(api: WireApi, status: StatusCode, message: &str) -> Response {
    let body = match api {
        WireApi::Responses | WireApi::Chat => openai_error_body(status, message),
        WireApi::Messages => messages::error_body(status, message),
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
fn openai_error_body(status: StatusCode, message: &str) -> Value {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        400 => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "server_error"),
    };
    serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    })
}

fn lowercase_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

fn api_key(headers: &BTreeMap<String, String>) -> Option<&str> {
    let from_x_api_key = headers
        .get("x-api-key")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    from_x_api_key.or_else(|| {
        headers
            .get("authorization")
            .and_then(|v| {
                let v = v.trim();
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|v| !v.is_empty())
    })
}

/// Splits `text` into a few deltas (by words), so clients see real streaming.
fn text_deltas(text: &str) -> Vec<String> {
    let mut deltas = Vec::new();
    let mut current = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        current.push_str(word);
        if i % 3 == 2 {
            deltas.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        deltas.push(current);
    }
    deltas
}

/// `event: <name>\ndata: <json>\n\n`.
fn sse_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// `data: <payload>\n\n`.
fn sse_data(payload: &str) -> Bytes {
    Bytes::from(format!("data: {payload}\n\n"))
}

/// A short random-looking id with a prefix, unique per process.
fn next_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_pick_scenarios() {
        assert_eq!(Scenario::from_text("create hello.txt"), None);
        assert_eq!(Scenario::from_text("SCN_TEXT say hi"), Some(Scenario::Text));
        assert_eq!(
            Scenario::from_text("do it: SCN_E401."),
            Some(Scenario::E401)
        );
        assert_eq!(
            Scenario::from_text("SCN_TEXT first, then SCN_E500"),
            Some(Scenario::E500)
        );
        assert_eq!(Scenario::from_text("SCN_UNKNOWN"), None);
        assert_eq!(Scenario::from_text("SCN_CUT now"), Some(Scenario::Cut));
        assert_eq!(
            Scenario::from_text("SCN_TEXT before, SCN_TOOL now"),
            Some(Scenario::ToolThenText)
        );
        assert_eq!(
            Scenario::from_text(&format!("please {}", run_marker("cat /etc/hostname"))),
            Some(Scenario::Run)
        );
        assert_eq!(
            Scenario::from_text("SCN_RUN without a command"),
            None,
            "a marker without its command is no marker"
        );
        assert_eq!(
            Scenario::from_text("SCN_SLOW please"),
            Some(Scenario::Slow {
                deltas: SLOW_DEFAULT_DELTAS,
                interval: SLOW_DEFAULT_INTERVAL
            })
        );
        assert_eq!(
            Scenario::from_text("SCN_SLOW:20x100 please"),
            Some(Scenario::Slow {
                deltas: 20,
                interval: Duration::from_millis(100)
            })
        );
    }

    #[test]
    fn the_last_run_marker_names_the_command() {
        let c = Conversation {
            items: vec![
                Item::UserText(run_marker("echo first")),
                Item::ToolResult,
                Item::UserText(format!("now {} and nothing else", run_marker("ls -la"))),
            ],
            ..Conversation::default()
        };
        assert_eq!(c.scenario(), Scenario::Run);
        assert_eq!(c.run_command().as_deref(), Some("ls -la"));
    }

    #[test]
    fn turn_boundaries() {
        let mut c = Conversation {
            items: vec![Item::UserText("a".into()), Item::Other, Item::ToolResult],
            ..Conversation::default()
        };
        assert!(c.turn_has_tool_result());
        c.items.push(Item::Other);
        c.items.push(Item::UserText("SCN_TEXT b".into()));
        assert!(!c.turn_has_tool_result());
        assert_eq!(c.scenario(), Scenario::Text);
    }

    #[test]
    fn api_keys() {
        let mut h = BTreeMap::new();
        assert_eq!(api_key(&h), None);
        h.insert("authorization".to_owned(), "Bearer ".to_owned());
        assert_eq!(api_key(&h), None);
        h.insert("authorization".to_owned(), "Bearer k".to_owned());
        assert_eq!(api_key(&h), Some("k"));
        h.insert("x-api-key".to_owned(), "x".to_owned());
        assert_eq!(api_key(&h), Some("x"));
    }

    #[test]
    fn deltas_rebuild_text() {
        assert_eq!(text_deltas(FINAL_ANSWER).concat(), FINAL_ANSWER);
        assert!(text_deltas(FINAL_ANSWER).len() > 1);
    }
}
