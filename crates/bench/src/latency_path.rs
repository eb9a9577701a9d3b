//! The raw work behind the first-event latency figure, with nothing of Switchyard in it:
//! one bare axum server on the platform's runtime, driven by the same client as the
//! figure. Per sample:
//!
//! * `POST /start` inserts the run's row and its outbox entry in one statement (one
//!   fsync'd commit, as a start request does), answers 202 with the run id, and
//!   publishes `run.queued` after the answer (fenced at the subject's start, with a
//!   message id), as the control-plane does;
//! * `GET /stream/{id}`, on a new connection, reads the run's first event with one
//!   direct get (an ordered consumer when it is not stored yet) and answers it as one
//!   SSE frame.
//!
//! What it leaves out: the gateway (authentication, the proxy hop to the control-plane,
//! the hub's feed), request validation and the resolution of defaults, and the run
//! itself. What is left is what any implementation of the design pays from a start
//! request to its first event: an HTTP request, a commit, a JetStream publish and a
//! read on a second connection. Its percentiles, sampled on an idle machine like the
//! figure's (see `latency::IDLE_BEFORE_SAMPLE`), bound the figure's from below.

use super::reference_sse::BareServer;
use super::samples::Percentiles;
use super::sse::SseStream;
use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub(crate) const P50: (&str, &str) = (
    "raw_latency_path_p50_ms",
    "raw latency path p50 (idle, paced like the figure): a start request's commit, publish and first-event read, without Switchyard",
);
pub(crate) const P99: (&str, &str) = (
    "raw_latency_path_p99_ms",
    "raw latency path p99 (idle, paced like the figure): a start request's commit, publish and first-event read, without Switchyard",
);

const STREAM: &str = "BENCH_LATENCY_PATH";
const SUBJECT_PREFIX: &str = "bench.latpath.";

/// The bare server; [`LatencyPath::stop`] removes its stream and tables.
pub(crate) struct LatencyPath {
    pub(crate) addr: SocketAddr,
    js: Context,
    pool: sqlx::PgPool,
    server: BareServer,
}

#[derive(Clone)]
struct Shared {
    js: Context,
    stream: stream::Stream,
    pool: sqlx::PgPool,
}

impl LatencyPath {
    pub(crate) async fn start(
        client: &async_nats::Client,
        pool: &sqlx::PgPool,
    ) -> anyhow::Result<Self> {
        let js = jetstream::new(client.clone());
        let _ = js.delete_stream(STREAM).await;
        let stream = js
            .create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{SUBJECT_PREFIX}>")],
                storage: StorageType::File,
                allow_direct: true,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .context("create the latency-path stream")?;
        // The shapes of `runs` and `outbox` that a start request writes.
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS bench_latpath_outbox, bench_latpath_runs;
             CREATE TABLE bench_latpath_runs (
                 run_id uuid PRIMARY KEY, provider text NOT NULL, prompt text NOT NULL,
                 provider_options jsonb NOT NULL, status text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE bench_latpath_outbox (
                 id bigserial PRIMARY KEY,
                 run_id uuid NOT NULL REFERENCES bench_latpath_runs (run_id),
                 queued_event jsonb NOT NULL, command jsonb NOT NULL);",
        )
        .execute(pool)
        .await
        .context("create the latency-path tables")?;
        let shared = Shared {
            js: js.clone(),
            stream,
            pool: pool.clone(),
        };
        let app = Router::new()
            .route("/start", post(start))
            .route("/stream/{id}", get(first_event))
            .with_state(shared);
        let server = BareServer::start(app, "latency path").await?;
        Ok(Self {
            addr: server.addr,
            js,
            pool: pool.clone(),
            server,
        })
    }

    pub(crate) fn stream_path(run_id: Uuid) -> String {
        format!("/stream/{run_id}")
    }

    /// `POST /start`; the run id it answers.
    pub(crate) async fn start_run(&self, http: &reqwest::Client) -> anyhow::Result<Uuid> {
        let answer = http
            .post(format!("http://{}/start", self.addr))
            .header(header::CONTENT_TYPE, "application/json")
            .body(r#"{"provider":"scripted","prompt":"benchmark","providerOptions":{"script":[{"message":{"text":"hello","chunks":1}}]}}"#)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status() == StatusCode::ACCEPTED,
            "the latency path answered {}",
            answer.status()
        );
        let body: serde_json::Value = answer.json().await?;
        body["runId"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .context("no run id in the latency path's answer")
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
        let _ = self.js.delete_stream(STREAM).await;
        let _ = sqlx::raw_sql("DROP TABLE IF EXISTS bench_latpath_outbox, bench_latpath_runs")
            .execute(&self.pool)
            .await;
    }
}

/// The two baselines from the samples taken against [`LatencyPath`].
pub(crate) fn baselines(samples: &[Duration]) -> Vec<super::report::Baseline> {
    use super::report::Baseline;
    match Percentiles::of(samples) {
        Some(p) => {
            let details = serde_json::json!({ "first_event": p });
            vec![
                Baseline::measured(P50.0, P50.1, p.p50_ms, "ms", details.clone()),
                Baseline::measured(P99.0, P99.1, p.p99_ms, "ms", details),
            ]
        }
        None => [P50, P99]
            .iter()
            .map(|(name, title)| Baseline::not_measured(name, title, "ms", "no samples".into()))
            .collect(),
    }
}

fn failure(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn start(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let run_id = Uuid::now_v7();
    let queued =
        serde_json::json!({"type": "run.queued", "data": {"provider": request["provider"]}});
    // A runtime query: the tables are created by `LatencyPath::start`, so they are not
    // in the migrated schema the query macros check against.
    let inserted = sqlx::query(
        "WITH run AS (
             INSERT INTO bench_latpath_runs (run_id, provider, prompt, provider_options, status)
             VALUES ($1, $2, $3, $4, 'queued') RETURNING run_id)
         INSERT INTO bench_latpath_outbox (run_id, queued_event, command)
         SELECT run_id, $5, $6 FROM run",
    )
    .bind(run_id)
    .bind(request["provider"].as_str().unwrap_or_default())
    .bind(request["prompt"].as_str().unwrap_or_default())
    .bind(&request["providerOptions"])
    .bind(&queued)
    .bind(&request)
    .execute(&shared.pool)
    .await;
    if let Err(e) = inserted {
        return failure(e);
    }
    let js = shared.js.clone();
    tokio::spawn(async move {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{run_id}:1").as_str());
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let payload = Bytes::from(queued.to_string());
        let subject = format!("{SUBJECT_PREFIX}{run_id}");
        if let Ok(ack) = js.publish_with_headers(subject, headers, payload).await {
            let _ = ack.await;
        }
    });
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"runId":"{run_id}"}}"#),
    )
        .into_response()
}

async fn first_event(State(shared): State<Shared>, Path(run_id): Path<Uuid>) -> Response {
    let subject = format!("{SUBJECT_PREFIX}{run_id}");
    let (seq, payload) = match shared.stream.direct_get_first_for_subject(&subject).await {
        Ok(message) => (message.sequence, message.payload),
        Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
            match first_from_consumer(&shared.stream, subject).await {
                Ok(first) => first,
                Err(e) => return failure(e),
            }
        }
        Err(e) => return failure(e),
    };
    let mut frame = format!("id: {seq}\nevent: run.queued\ndata: ").into_bytes();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\n\n");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        frame,
    )
        .into_response()
}

/// The subject's first message once it is stored.
async fn first_from_consumer(
    stream: &stream::Stream,
    subject: String,
) -> anyhow::Result<(u64, Bytes)> {
    let mut messages = super::baselines::ordered_messages(stream, subject).await?;
    let message = messages
        .next()
        .await
        .context("the ordered consumer ended")??;
    let seq = message.info().map_err(anyhow::Error::msg)?.stream_sequence;
    Ok((seq, message.payload.clone()))
}

/// One sample against the bare server: start → 202, then the first event on a new
/// connection; `(start → first event, start → 202)`.
pub(crate) async fn sample(
    path: &LatencyPath,
    http: &reqwest::Client,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let run_id = path.start_run(http).await?;
    let accepted = started.elapsed();
    let mut stream =
        SseStream::open(path.addr, &LatencyPath::stream_path(run_id), "-", 4 * 1024).await?;
    stream.first_event().await.context("the latency path")?;
    Ok((started.elapsed(), accepted))
}
