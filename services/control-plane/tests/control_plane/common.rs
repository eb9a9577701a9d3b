//! A control-plane started in-process against a private nats-server and a fresh
//! Postgres database, plus small HTTP and JetStream helpers.

use async_nats::jetstream;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use switchyard_contracts::RunId;
use switchyard_control_plane::Config;
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::EventLog;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, TestDb};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bound of every wait for an observable state.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);
/// `control_plane.internal_token` of the tests' control-planes.
pub(crate) const INTERNAL_TOKEN: &str = "cp-test-internal-token-7a3f";

/// A client that calls the control-plane the way a gateway does: with the internal
/// token on every request.
pub(crate) fn gateway_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        switchyard_contracts::auth::INTERNAL_TOKEN_HEADER,
        INTERNAL_TOKEN.parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub(crate) fn config(nats: &NatsServer, db: &TestDb) -> Config {
    let mut config = Config {
        nats: NatsConfig {
            url: nats.url(),
            ..Default::default()
        },
        ..Default::default()
    };
    config.database.url = SecretString::from(db.url.clone());
    config.database.max_connections = 5;
    config.control_plane.listen = "127.0.0.1:0".parse().unwrap();
    config.control_plane.outbox_sweep_ms = 100;
    config.control_plane.control_timeout_ms = 1_000;
    config.control_plane.internal_token = Some(SecretString::from(INTERNAL_TOKEN));
    config
}

pub(crate) struct Harness {
    pub(crate) nats: NatsServer,
    pub(crate) db: TestDb,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) events: EventLog,
    shutdown: CancellationToken,
    handle: Option<ServiceHandle>,
}

impl Harness {
    pub(crate) async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.unwrap();
        let db = TestDb::create().await.unwrap();
        Self::start_on(nats, db, tweak).await
    }

    /// Starts the control-plane on existing servers (e.g. a database prepared by the test).
    pub(crate) async fn start_on(
        nats: NatsServer,
        db: TestDb,
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut config = config(&nats, &db);
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let handle = switchyard_control_plane::start(config, shutdown.clone())
            .await
            .unwrap();
        let base = format!("http://{}", handle.http_addr.unwrap());
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let events = EventLog::open(js.clone()).await.unwrap();
        Harness {
            nats,
            db,
            base,
            http: gateway_client(),
            client,
            js,
            events,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Graceful shutdown; the service's task must end cleanly.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(DEADLINE, handle.wait())
                .await
                .expect("the control-plane shuts down in time")
                .unwrap();
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub(crate) async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        json: bool,
    ) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if json {
            request = request.header("content-type", "application/json");
        }
        decode(request.send().await.unwrap()).await
    }

    /// Starts a run and returns its id (asserting 202).
    /// Starts a run and waits until it is published: `run.queued` in its log and its
    /// command on the work queue (the `202` does not wait for them).
    pub(crate) async fn start_run(&self, body: Value) -> RunId {
        let (status, json) = self.post("/api/runs/start", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        self.published(&json).await
    }

    /// Waits until the run a `202` answered is published; returns its id.
    pub(crate) async fn published(&self, accepted: &Value) -> RunId {
        let run_id: RunId = accepted["runId"].as_str().unwrap().parse().unwrap();
        self.command_of(accepted["provider"].as_str().unwrap(), run_id)
            .await;
        eventually("run.queued in the run's log", || async {
            self.events.last(run_id).await.ok().flatten()
        })
        .await;
        run_id
    }

    pub(crate) async fn register_app(&self, body: Value) {
        let (status, json) = self.post("/api/apps/register", body).await;
        assert!(status.is_success(), "{status} {json}");
    }

    /// Polls `GET /api/runs/{id}` until `check` accepts the view.
    pub(crate) async fn run_until(
        &self,
        run_id: RunId,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, || async {
            let (status, json) = self.get(&format!("/api/runs/{run_id}")).await;
            (status == StatusCode::OK && check(&json)).then_some(json)
        })
        .await
    }

    /// Waits until the last command on `runs.commands.<provider>` is the run's.
    pub(crate) async fn command_of(
        &self,
        provider: &str,
        run_id: RunId,
    ) -> jetstream::message::StreamMessage {
        let run = run_id.to_string();
        eventually("the run's command on the work queue", || async {
            self.last_command(provider).await.filter(|command| {
                command
                    .headers
                    .get(switchyard_contracts::subjects::HEADER_RUN_ID)
                    .is_some_and(|value| value.as_str() == run)
            })
        })
        .await
    }

    /// The last command on `runs.commands.<provider>`, with its headers.
    pub(crate) async fn last_command(
        &self,
        provider: &str,
    ) -> Option<jetstream::message::StreamMessage> {
        let stream = self.js.get_stream("RUN_COMMANDS").await.unwrap();
        stream
            .get_last_raw_message_by_subject(&format!("runs.commands.{provider}"))
            .await
            .ok()
    }
}

async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
    };
    (status, json)
}

/// Asserts the shared error shape and returns the code.
/// How many outbox entries wait for their publication.
pub(crate) async fn outbox_len(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM outbox"#)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub(crate) fn error_code(json: &Value) -> &str {
    let error = json["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an error body: {json}"));
    assert_eq!(error.len(), 2, "{json}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    error["code"].as_str().unwrap()
}

/// Waits (bounded) until `probe` yields a value.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
