//! Shared harness of the gateway's integration tests: a real nats-server, a small HTTP
//! app playing the control-plane's API (a peer service over a real connection), the
//! gateway started in-process on port 0, and a minimal SSE reader.
#![allow(dead_code, unreachable_pub)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::{Stream, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{MessageDelta, RunCompleted, RunQueued};
use switchyard_contracts::{RunEventKind, RunId};
use switchyard_gateway::{Config, GatewayConfig};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::EventLog;
use switchyard_platform::service::ServiceHandle;
use switchyard_platform::sse::client::{Item, Parser};
use switchyard_test_support::NatsServer;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-admin-token";
/// `gateway.control_plane_token`: the gateway proves itself to the control-plane with it.
pub const INTERNAL_TOKEN: &str = "test-internal-token-91c4";
/// Upper bound for anything a test waits on; a hang fails the test instead.
pub const WAIT: Duration = Duration::from_secs(20);

/// The control-plane's HTTP side as far as the gateway uses it.
pub struct FakeControlPlane {
    pub addr: SocketAddr,
    /// Known runs and their projected status.
    pub runs: Arc<Mutex<HashMap<RunId, String>>>,
    shutdown: CancellationToken,
}

impl FakeControlPlane {
    pub async fn start() -> FakeControlPlane {
        let runs: Arc<Mutex<HashMap<RunId, String>>> = Arc::default();
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/secret", get(|| async { "leaked" }))
            .route("/api/runs/{id}", get(get_run))
            .route(
                "/api/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route("/api/echo/{*rest}", any(echo))
            .with_state(runs.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        FakeControlPlane {
            addr,
            runs,
            shutdown,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn get_run(
    State(runs): State<Arc<Mutex<HashMap<RunId, String>>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = id
        .parse::<RunId>()
        .ok()
        .and_then(|id| runs.lock().unwrap().get(&id).cloned().map(|s| (id, s)));
    match run {
        Some((id, status)) => {
            let principal = headers
                .get("x-switchyard-principal")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            axum::Json(
                serde_json::json!({"runId": id, "status": status, "seenPrincipal": principal}),
            )
            .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": {"code": "not_found", "message": "no such run"}}),
            ),
        )
            .into_response(),
    }
}

/// Answers with what it received; `x-echo-status` picks the status (default 201).
async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = header("x-echo-status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::CREATED);
    let seen = serde_json::json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "body": String::from_utf8_lossy(&body),
        "contentType": header("content-type"),
        "accept": header("accept"),
        "authorization": header("authorization"),
        "cookie": header("cookie"),
        "principal": header("x-switchyard-principal"),
        "internalToken": header("x-switchyard-internal-token"),
        "private": header("x-private"),
        "custom": header("x-custom"),
        "acceptEncoding": header("accept-encoding"),
    });
    (
        status,
        [
            ("content-type", "application/vnd.echo+json"),
            ("x-echo", "yes"),
        ],
        seen.to_string(),
    )
        .into_response()
}

/// A real NATS, the fake control-plane and a gateway in front of them.
pub struct Harness {
    pub nats: NatsServer,
    pub control_plane: FakeControlPlane,
    pub gateway: Option<ServiceHandle>,
    pub base: String,
    pub shutdown: CancellationToken,
    pub log: EventLog,
    pub js: async_nats::jetstream::Context,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Starts everything; `adjust` changes the gateway section (the control-plane URL
    /// is already set).
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Harness {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.unwrap();
        let control_plane = FakeControlPlane::start().await;
        let mut gateway = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            control_plane_url: control_plane.url(),
            admin_token: Some(TOKEN.into()),
            control_plane_token: Some(INTERNAL_TOKEN.into()),
            keep_alive_secs: 1,
            upstream_timeout_ms: 5_000,
            ..Default::default()
        };
        adjust(&mut gateway);
        let nats_config = NatsConfig {
            url: nats.url(),
            ..Default::default()
        };
        let config = Config {
            nats: nats_config.clone(),
            gateway,
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let handle = switchyard_gateway::start(config, shutdown.clone())
            .await
            .unwrap();
        let base = format!("http://{}", handle.http_addr.unwrap());

        let client = switchyard_platform::nats::connect(&nats_config, "gateway-test")
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let log = EventLog::open(js.clone()).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Harness {
            nats,
            control_plane,
            gateway: Some(handle),
            base,
            shutdown,
            log,
            js,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(Method::GET, path)
    }

    /// Registers a run with the control-plane (no events yet).
    pub fn new_run(&self) -> RunId {
        let run_id = uuid::Uuid::now_v7();
        self.control_plane
            .runs
            .lock()
            .unwrap()
            .insert(run_id, "running".to_owned());
        run_id
    }

    /// Appends events and returns their stream sequences.
    pub async fn append(
        &self,
        run_id: RunId,
        position: &mut EventPosition,
        kinds: Vec<RunEventKind>,
    ) -> Vec<u64> {
        let mut stream_seqs = Vec::new();
        for kind in kinds {
            self.log.append(run_id, position, kind).await.unwrap();
            stream_seqs.push(position.last_stream_seq);
        }
        stream_seqs
    }

    /// A registered run with `deltas` message deltas between `run.queued` and
    /// `run.completed`: `deltas + 2` events.
    pub async fn finished_run(&self, deltas: usize) -> (RunId, Vec<u64>) {
        let run_id = self.new_run();
        let mut position = EventPosition::EMPTY;
        let mut kinds = vec![queued()];
        kinds.extend((0..deltas).map(delta));
        kinds.push(completed());
        let seqs = self.append(run_id, &mut position, kinds).await;
        (run_id, seqs)
    }

    pub async fn stream(&self, run_id: RunId, cursor: Option<&str>) -> reqwest::Response {
        let mut path = format!("/api/runs/{run_id}/stream");
        if let Some(cursor) = cursor {
            path.push_str(&format!("?cursor={cursor}"));
        }
        tokio::time::timeout(WAIT, self.get(&path).send())
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn stream_with_last_event_id(&self, run_id: RunId, id: &str) -> reqwest::Response {
        let request = self
            .get(&format!("/api/runs/{run_id}/stream"))
            .header("last-event-id", id);
        tokio::time::timeout(WAIT, request.send())
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn consumer_count(&self) -> usize {
        let mut stream = self.js.get_stream("RUN_EVENTS").await.unwrap();
        stream.info().await.unwrap().state.consumer_count
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn queued() -> RunEventKind {
    RunEventKind::RunQueued(RunQueued {
        provider: "scripted".into(),
        model: None,
        app_id: None,
    })
}

pub fn delta(i: usize) -> RunEventKind {
    RunEventKind::MessageDelta(MessageDelta {
        message_id: "m1".into(),
        text: format!("part {i}"),
    })
}

pub fn completed() -> RunEventKind {
    RunEventKind::RunCompleted(RunCompleted::succeeded())
}

/// One SSE event as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }

    /// The run event's `seq` (panics for frames that are not run events).
    pub fn seq(&self) -> u64 {
        self.json()["seq"].as_u64().unwrap()
    }
}

/// Reads an SSE response body frame by frame, with the platform's parser.
pub struct SseReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: Parser,
    /// Events parsed but not yet returned.
    ready: VecDeque<Frame>,
    /// Comment lines seen so far (keep-alives).
    pub comments: usize,
    /// The last `retry:` field seen, and after how many events.
    pub retry: Option<(u64, usize)>,
    events: usize,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseReader {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::default(),
            ready: VecDeque::new(),
            comments: 0,
            retry: None,
            events: 0,
        }
    }

    /// The next event (comments are counted and skipped), `None` when the body ended.
    pub async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("no SSE frame within the deadline")
    }

    async fn next_inner(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some(frame);
            }
            match self.body.next().await {
                Some(chunk) => self.feed(&chunk.expect("SSE body failed")),
                None => {
                    assert!(!self.parser.is_mid_event(), "unterminated frame");
                    return None;
                }
            }
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        let Self {
            parser,
            ready,
            comments,
            retry,
            events,
            ..
        } = self;
        parser.feed_with(chunk, |item| {
            match item.expect("an event within the size limit") {
                Item::Event(event) => {
                    *events += 1;
                    let event = event.to_event();
                    ready.push_back(Frame {
                        id: event.id,
                        event: event.event,
                        data: event.data,
                    });
                }
                Item::Comment(_) => *comments += 1,
                Item::Retry(millis) => *retry = Some((millis, *events)),
            }
        });
    }

    /// Every remaining event until the body ends.
    pub async fn rest(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }

    /// Waits until at least one more keep-alive comment arrived, failing on an event.
    pub async fn wait_for_comment(&mut self) {
        let before = self.comments;
        assert!(self.ready.is_empty(), "unexpected event {:?}", self.ready);
        tokio::time::timeout(WAIT, async {
            while self.comments == before {
                match self.body.next().await {
                    Some(chunk) => {
                        self.feed(&chunk.unwrap());
                        assert!(self.ready.is_empty(), "unexpected event {:?}", self.ready);
                    }
                    None => panic!("stream ended while waiting for a keep-alive"),
                }
            }
        })
        .await
        .expect("no keep-alive comment within the deadline");
    }
}

/// The JSON error body's `code`.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}
