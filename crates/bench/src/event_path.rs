//! The raw JetStream work behind every run event in this design, with nothing of
//! Switchyard in it: messages of a run event's size published pipelined, each with its
//! deduplication id (`RUN_EVENTS` requires one), on one subject of a stream shaped like
//! `RUN_EVENTS`, while a durable consumer acknowledges each message (the projector's
//! shape) and two ordered consumers read them (the run's feed in the gateway and the
//! benchmark's watcher: the consumers that are active in the events/s window). Events/s
//! from an executor to SSE clients goes through at least this on the same server, so
//! this is the rate it is bounded by, before any encoding, fencing or HTTP.
//!
//! The same load is also measured with the parts added one by one (the "ladder"), so
//! the report shows what each costs the server.

use super::baselines::{PUBLISH_BATCH, sample_event};
use super::machine::CpuMark;
use super::report::Baseline;
use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::{self, stream::StorageType};
use futures::StreamExt as _;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub(crate) const EVENT_PATH: (&str, &str) = (
    "jetstream_event_path",
    "raw JetStream event path: publish with dedup ids, an acking durable consumer, 2 ordered readers",
);

const STREAM: &str = "BENCH_RAW_PATH";
const SUBJECT: &str = "bench.path.run";
/// What the projector pulls per request.
const PULL_BATCH: usize = 256;
const DEADLINE: Duration = Duration::from_secs(120);

/// One rung of the ladder: which parts of the event path are present.
#[derive(Debug, Clone, Copy)]
struct Stage {
    name: &'static str,
    dedup_ids: bool,
    acking_consumer: bool,
    ordered_readers: usize,
}

const LADDER: [Stage; 5] = [
    Stage {
        name: "publish",
        dedup_ids: false,
        acking_consumer: false,
        ordered_readers: 0,
    },
    Stage {
        name: "+ dedup ids",
        dedup_ids: true,
        acking_consumer: false,
        ordered_readers: 0,
    },
    Stage {
        name: "+ 1 ordered reader",
        dedup_ids: true,
        acking_consumer: false,
        ordered_readers: 1,
    },
    Stage {
        name: "+ acking durable consumer",
        dedup_ids: true,
        acking_consumer: true,
        ordered_readers: 1,
    },
    Stage {
        name: "+ a second ordered reader (the event path)",
        dedup_ids: true,
        acking_consumer: true,
        ordered_readers: 2,
    },
];

/// Measures every rung; the last is the baseline, the others go into its details.
pub(crate) async fn measure(
    client: &async_nats::Client,
    messages: usize,
    nats_pid: Option<u32>,
) -> Baseline {
    let js = jetstream::new(client.clone());
    let mut ladder = Vec::new();
    let mut last = None;
    for stage in LADDER {
        let outcome = run(&js, stage, messages, nats_pid).await;
        let _ = js.delete_stream(STREAM).await;
        match outcome {
            Ok((rate, details)) => {
                ladder.push(json!({"stage": stage.name, "msg_per_sec": rate, "details": details}));
                last = Some(rate);
            }
            Err(e) => {
                return Baseline::not_measured(
                    EVENT_PATH.0,
                    EVENT_PATH.1,
                    "msg/s",
                    format!("{}: {e:#}", stage.name),
                );
            }
        }
    }
    match last {
        Some(rate) => Baseline::measured(
            EVENT_PATH.0,
            EVENT_PATH.1,
            rate,
            "msg/s",
            json!({
                "messages": messages,
                "acks_awaited_per_batch": PUBLISH_BATCH,
                "projector_pull_batch": PULL_BATCH,
                "ladder": ladder,
            }),
        ),
        None => Baseline::not_measured(EVENT_PATH.0, EVENT_PATH.1, "msg/s", "no stage".into()),
    }
}

async fn run(
    js: &jetstream::Context,
    stage: Stage,
    messages: usize,
    nats_pid: Option<u32>,
) -> anyhow::Result<(f64, serde_json::Value)> {
    let _ = js.delete_stream(STREAM).await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["bench.path.>".to_owned()],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        })
        .await
        .context("create the event-path stream")?;
    let total = messages as u64;
    let mut consumers: Vec<JoinHandle<anyhow::Result<Instant>>> = Vec::new();
    if stage.acking_consumer {
        consumers.push(acking_consumer(&stream, total).await?);
    }
    for _ in 0..stage.ordered_readers {
        consumers.push(ordered_reader(&stream, total).await?);
    }

    let payload = sample_event(1)?;
    let cpu = CpuMark::now(nats_pid, &[]);
    let started = Instant::now();
    let mut sent = 0;
    while sent < messages {
        let batch = PUBLISH_BATCH.min(messages - sent);
        let mut acks = Vec::with_capacity(batch);
        for i in sent..sent + batch {
            let mut headers = HeaderMap::new();
            if stage.dedup_ids {
                headers.insert("Nats-Msg-Id", format!("bench:{i}").as_str());
            }
            acks.push(
                js.publish_with_headers(SUBJECT, headers, payload.clone())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        sent += batch;
    }
    let published = started.elapsed();
    let mut done = started + published;
    for consumer in consumers {
        let at = tokio::time::timeout(DEADLINE, consumer)
            .await
            .context("a consumer stalled")???;
        done = done.max(at);
    }
    let cpu = cpu.usage_since();
    let seconds = done.duration_since(started).as_secs_f64();
    let nats_us_per_message = cpu
        .nats_server_cores
        .map(|cores| cores * cpu.seconds / messages as f64 * 1e6);
    Ok((
        messages as f64 / seconds,
        json!({
            "publish_seconds": published.as_secs_f64(),
            "seconds_until_every_consumer_had_all": seconds,
            "nats_server_cpu_us_per_message": nats_us_per_message,
            "cpu": cpu,
        }),
    ))
}

/// The projector's shape: a durable pull consumer, every message acknowledged.
async fn acking_consumer(
    stream: &jetstream::stream::Stream,
    total: u64,
) -> anyhow::Result<JoinHandle<anyhow::Result<Instant>>> {
    let durable = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-projector".to_owned()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: 4096,
            ..Default::default()
        })
        .await
        .context("create the acking consumer")?;
    let mut messages = durable
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await?;
    Ok(tokio::spawn(async move {
        for _ in 0..total {
            let message = messages.next().await.context("the consumer ended")??;
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(Instant::now())
    }))
}

/// A run feed's shape: an ordered consumer from the start of the subject.
async fn ordered_reader(
    stream: &jetstream::stream::Stream,
    total: u64,
) -> anyhow::Result<JoinHandle<anyhow::Result<Instant>>> {
    let ordered = stream
        .create_consumer(OrderedConfig {
            filter_subject: SUBJECT.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("create an ordered reader")?;
    let mut messages = ordered.messages().await?;
    Ok(tokio::spawn(async move {
        for _ in 0..total {
            messages.next().await.context("the reader ended")??;
        }
        Ok(Instant::now())
    }))
}
