//! The raw limits of the parts Switchyard stands on, measured in the same run and on the
//! same servers as the figures: JetStream publish (pipelined and one at a time),
//! JetStream publish→consume latency and ordered replay, and single-row Postgres
//! commits. Each uses the plainest client code that does the job, so the ratio of a
//! figure to its baseline is the cost Switchyard adds.

use super::report::Baseline;
use super::samples::Percentiles;
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;
use sqlx::Connection as _;
use std::time::{Duration, Instant};
use switchyard_contracts::event::MessageDelta;
use switchyard_contracts::{RunEvent, RunEventKind};
use uuid::Uuid;

const RAW_STREAM: &str = "BENCH_RAW";
/// Acks awaited together by the pipelined publisher.
pub(crate) const PUBLISH_BATCH: usize = 1_000;

/// The bytes of a typical run event (a filler `message.delta`, as the executor writes
/// it), so that raw messages are as large as the platform's.
pub(crate) fn sample_event(seq: u64) -> Bytes {
    let event = RunEvent::new(
        Uuid::now_v7(),
        seq,
        RunEventKind::MessageDelta(MessageDelta {
            message_id: "msg-1".to_owned(),
            text: format!("filler {seq} "),
        }),
    );
    Bytes::from(serde_json::to_vec(&event).unwrap_or_default())
}

/// Sizes of the raw measurements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawSizes {
    pub(crate) pipelined_messages: usize,
    pub(crate) sequential_messages: usize,
    pub(crate) latency_samples: usize,
    pub(crate) pg_duration: Duration,
}

/// A file-storage stream shaped like `RUN_EVENTS`, for the raw publishers.
async fn raw_stream(js: &jetstream::Context) -> anyhow::Result<jetstream::stream::Stream> {
    let _ = js.delete_stream(RAW_STREAM).await;
    js.create_stream(jetstream::stream::Config {
        name: RAW_STREAM.to_owned(),
        subjects: vec!["bench.raw.>".to_owned()],
        storage: jetstream::stream::StorageType::File,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .context("create the raw benchmark stream")
}

/// Raw JetStream: pipelined publish, one-at-a-time publish, publish→consume latency.
pub(crate) async fn jetstream(client: &async_nats::Client, sizes: RawSizes) -> Vec<Baseline> {
    let js = jetstream::new(client.clone());
    let stream = match raw_stream(&js).await {
        Ok(stream) => stream,
        Err(e) => {
            let reason = format!("{e:#}");
            return vec![
                Baseline::not_measured(PIPELINED.0, PIPELINED.1, "msg/s", reason.clone()),
                Baseline::not_measured(SEQUENTIAL.0, SEQUENTIAL.1, "msg/s", reason.clone()),
                Baseline::not_measured(LATENCY_P50.0, LATENCY_P50.1, "ms", reason.clone()),
                Baseline::not_measured(LATENCY_P99.0, LATENCY_P99.1, "ms", reason),
            ];
        }
    };
    let payload = sample_event(1);
    let mut out = Vec::new();
    out.push(
        pipelined_publish(&js, &payload, sizes.pipelined_messages)
            .await
            .unwrap_or_else(|e| {
                Baseline::not_measured(PIPELINED.0, PIPELINED.1, "msg/s", format!("{e:#}"))
            }),
    );
    out.push(
        sequential_publish(&js, &payload, sizes.sequential_messages)
            .await
            .unwrap_or_else(|e| {
                Baseline::not_measured(SEQUENTIAL.0, SEQUENTIAL.1, "msg/s", format!("{e:#}"))
            }),
    );
    match publish_consume_latency(&js, &stream, &payload, sizes.latency_samples).await {
        Ok(baselines) => out.extend(baselines),
        Err(e) => {
            let reason = format!("{e:#}");
            out.push(Baseline::not_measured(
                LATENCY_P50.0,
                LATENCY_P50.1,
                "ms",
                reason.clone(),
            ));
            out.push(Baseline::not_measured(
                LATENCY_P99.0,
                LATENCY_P99.1,
                "ms",
                reason,
            ));
        }
    }
    let _ = js.delete_stream(RAW_STREAM).await;
    out
}

pub(crate) const PIPELINED: (&str, &str) = (
    "jetstream_publish_pipelined",
    "raw JetStream publish, pipelined",
);
pub(crate) const SEQUENTIAL: (&str, &str) = (
    "jetstream_publish_sequential",
    "raw JetStream publish, one ack at a time",
);
pub(crate) const LATENCY_P50: (&str, &str) = (
    "jetstream_publish_consume_p50",
    "raw JetStream publish→consume latency p50",
);
pub(crate) const LATENCY_P99: (&str, &str) = (
    "jetstream_publish_consume_p99",
    "raw JetStream publish→consume latency p99",
);
pub(crate) const REPLAY_RATE: (&str, &str) = (
    "jetstream_ordered_replay",
    "raw JetStream ordered-consumer replay of the same run",
);
pub(crate) const REPLAY_FIRST: (&str, &str) = (
    "jetstream_ordered_replay_first",
    "raw JetStream ordered consumer: first message",
);
pub(crate) const PG_COMMITS: (&str, &str) = (
    "postgres_single_row_commits",
    "raw Postgres single-row insert commits, one connection",
);

async fn pipelined_publish(
    js: &jetstream::Context,
    payload: &Bytes,
    messages: usize,
) -> anyhow::Result<Baseline> {
    let started = Instant::now();
    let mut sent = 0;
    while sent < messages {
        let batch = PUBLISH_BATCH.min(messages - sent);
        let mut acks = Vec::with_capacity(batch);
        for _ in 0..batch {
            acks.push(js.publish("bench.raw.pipelined", payload.clone()).await?);
        }
        for ack in acks {
            ack.await?;
        }
        sent += batch;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Baseline::measured(
        PIPELINED.0,
        PIPELINED.1,
        messages as f64 / seconds,
        "msg/s",
        json!({
            "messages": messages,
            "payload_bytes": payload.len(),
            "acks_awaited_per_batch": PUBLISH_BATCH,
            "seconds": seconds,
        }),
    ))
}

async fn sequential_publish(
    js: &jetstream::Context,
    payload: &Bytes,
    messages: usize,
) -> anyhow::Result<Baseline> {
    let started = Instant::now();
    for _ in 0..messages {
        js.publish("bench.raw.sequential", payload.clone())
            .await?
            .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Baseline::measured(
        SEQUENTIAL.0,
        SEQUENTIAL.1,
        messages as f64 / seconds,
        "msg/s",
        json!({
            "messages": messages,
            "payload_bytes": payload.len(),
            "seconds": seconds,
            "why": "one fenced append in flight per run: what a run's event rate is bounded by when its events cannot be batched (nats-server < 2.12, or a stream without allow_atomic)",
        }),
    ))
}

async fn publish_consume_latency(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    payload: &Bytes,
    samples: usize,
) -> anyhow::Result<Vec<Baseline>> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: "bench.raw.latency".to_owned(),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let ack = js.publish("bench.raw.latency", payload.clone()).await?;
        tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("the published message never reached the consumer")?
            .context("the consumer ended")??;
        latencies.push(started.elapsed());
        ack.await?;
    }
    let p = Percentiles::of(&latencies).context("no samples")?;
    let details = json!({"percentiles": p, "consumer": "ordered pull consumer, deliver new"});
    Ok(vec![
        Baseline::measured(
            LATENCY_P50.0,
            LATENCY_P50.1,
            p.p50_ms,
            "ms",
            details.clone(),
        ),
        Baseline::measured(LATENCY_P99.0, LATENCY_P99.1, p.p99_ms, "ms", details),
    ])
}

/// `subject`'s messages from its first, through one ordered consumer.
pub(crate) async fn ordered_messages(
    stream: &jetstream::stream::Stream,
    subject: String,
) -> anyhow::Result<jetstream::consumer::pull::Ordered> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// Replays `subject` of `RUN_EVENTS` with one ordered consumer, the way the gateway's
/// run feed does; returns (messages, time to the first, time to the last).
pub(crate) async fn ordered_replay(
    client: &async_nats::Client,
    subject: String,
    expected: u64,
) -> anyhow::Result<(u64, Duration, Duration)> {
    let js = jetstream::new(client.clone());
    let started = Instant::now();
    let stream = js
        .get_stream(switchyard_contracts::subjects::RUN_EVENTS_STREAM)
        .await?;
    let mut messages = ordered_messages(&stream, subject).await?;
    let mut first = None;
    let mut count = 0;
    // One deadline for the whole replay: a timer per message would cost the baseline
    // more than the messages themselves.
    let reading = async {
        while count < expected {
            messages.next().await.context("the replay ended early")??;
            count += 1;
            first.get_or_insert_with(|| started.elapsed());
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .context("the replay stalled")??;
    Ok((count, first.unwrap_or_default(), started.elapsed()))
}

/// Sequential single-row inserts, each its own transaction, on one connection to the
/// benchmark's database.
pub(crate) async fn postgres(database_url: &str, duration: Duration) -> Baseline {
    match postgres_commits(database_url, duration).await {
        Ok(baseline) => baseline,
        Err(e) => Baseline::not_measured(PG_COMMITS.0, PG_COMMITS.1, "commits/s", format!("{e:#}")),
    }
}

async fn postgres_commits(database_url: &str, duration: Duration) -> anyhow::Result<Baseline> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .context("connect to the benchmark database")?;
    let settings = sqlx::query!(
        r#"SELECT current_setting('server_version') AS "version!",
                  current_setting('synchronous_commit') AS "synchronous_commit!",
                  current_setting('fsync') AS "fsync!""#
    )
    .fetch_one(&mut conn)
    .await?;
    let (version, synchronous_commit, fsync) = (
        settings.version,
        settings.synchronous_commit,
        settings.fsync,
    );
    sqlx::raw_sql(
        "CREATE TABLE bench_raw_commits (id bigserial PRIMARY KEY, run_id uuid NOT NULL, payload jsonb NOT NULL);
         CREATE TEMP TABLE bench_raw_commits_temp (id bigserial PRIMARY KEY, run_id uuid NOT NULL, payload jsonb NOT NULL);",
    )
    .execute(&mut conn)
    .await?;
    let payload = json!({"prompt": "benchmark", "provider": "scripted"});
    let logged = insert_for(&mut conn, "bench_raw_commits", &payload, duration).await?;
    // A temporary table writes no WAL, so its commits do not wait for a WAL flush: shown
    // for comparison only, it is not what the platform's tables cost.
    let temp = insert_for(&mut conn, "bench_raw_commits_temp", &payload, duration / 2).await?;
    let _ = sqlx::raw_sql("DROP TABLE bench_raw_commits")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    Ok(Baseline::measured(
        PG_COMMITS.0,
        PG_COMMITS.1,
        logged,
        "commits/s",
        json!({
            "table": "ordinary (WAL-logged) table in the benchmark's database",
            "temp_table_commits_per_sec": temp,
            "server_version": version,
            "synchronous_commit": synchronous_commit,
            "fsync": fsync,
            "seconds": duration.as_secs_f64(),
        }),
    ))
}

async fn insert_for(
    conn: &mut sqlx::PgConnection,
    table: &str,
    payload: &serde_json::Value,
    duration: Duration,
) -> anyhow::Result<f64> {
    // Runtime queries: the benchmark's own tables are created here, so they are not in
    // the migrated schema the query macros check against.
    let sql = match table {
        "bench_raw_commits" => "INSERT INTO bench_raw_commits (run_id, payload) VALUES ($1, $2)",
        _ => "INSERT INTO bench_raw_commits_temp (run_id, payload) VALUES ($1, $2)",
    };
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < duration {
        sqlx::query(sql)
            .bind(Uuid::now_v7())
            .bind(payload)
            .execute(&mut *conn)
            .await?;
        commits += 1;
    }
    Ok(commits as f64 / started.elapsed().as_secs_f64())
}
