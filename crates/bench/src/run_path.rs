//! The raw work behind every run in this design, with nothing of Switchyard in it: the
//! Postgres commit and the JetStream messages one run needs, driven by the plainest
//! client code, under the load shape of the runs/s figure. Per run:
//!
//! * a client inserts the run's row (one commit), appends `run.queued` (fenced at the
//!   subject's start) and publishes the command to a work-queue stream;
//! * a worker pulls the command from a durable consumer, acknowledges it, appends
//!   `run.claimed` and hands the run to an executor with a core NATS request;
//! * the executor appends the run's other thirteen events one at a time, each fenced on
//!   the previous one's stream sequence (a run has one append in flight);
//! * a projector pulls every event from a durable consumer, applies each batch in one
//!   Postgres statement and acknowledges every event;
//! * a watcher (the benchmark's own, as in the figure) reads every event with an ordered
//!   consumer and counts completions.
//!
//! No HTTP, no JSON decoding beyond a header, no retries, no records beyond a row: an
//! upper bound for any implementation of the design on the same servers.

use super::baselines::sample_event;
use super::machine::CpuMark;
use super::report::Baseline;
use super::throughput::{Load, take_slot};
use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use futures::{FutureExt as _, StreamExt as _};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

pub(crate) const RUN_PATH: (&str, &str) = (
    "raw_run_path",
    "raw run path: one commit and a run's JetStream messages, without Switchyard",
);

const EVENTS_STREAM: &str = "BENCH_RUN_EVENTS";
const COMMANDS_STREAM: &str = "BENCH_RUN_COMMANDS";
const DISPATCH: &str = "bench.runpath.dispatch";
/// A run's events, as in the figure: queued, claimed, then thirteen from the executor.
const EVENTS_PER_RUN: u64 = 15;
const TERMINAL: &str = "Bench-Terminal";
/// As the control-plane's projector: a batch is whatever is buffered, up to this many.
const PULL_BATCH: usize = 1024;

/// Runs the load for `load.duration`; the value is completions per second in the window
/// after the first fifth.
pub(crate) async fn measure(
    client: &async_nats::Client,
    pool: &sqlx::PgPool,
    load: Load,
    nats_pid: Option<u32>,
    postgres_pids: impl AsyncFnOnce() -> Vec<u32>,
) -> Baseline {
    let js = jetstream::new(client.clone());
    let outcome = run(client, &js, pool, load, nats_pid, postgres_pids).await;
    let _ = js.delete_stream(EVENTS_STREAM).await;
    let _ = js.delete_stream(COMMANDS_STREAM).await;
    let _ = sqlx::raw_sql("DROP TABLE IF EXISTS bench_runpath_runs")
        .execute(pool)
        .await;
    match outcome {
        Ok((rate, details)) => Baseline::measured(RUN_PATH.0, RUN_PATH.1, rate, "runs/s", details),
        Err(e) => Baseline::not_measured(RUN_PATH.0, RUN_PATH.1, "runs/s", format!("{e:#}")),
    }
}

async fn run(
    client: &async_nats::Client,
    js: &Context,
    pool: &sqlx::PgPool,
    load: Load,
    nats_pid: Option<u32>,
    postgres_pids: impl AsyncFnOnce() -> Vec<u32>,
) -> anyhow::Result<(f64, serde_json::Value)> {
    let (events, commands) = streams(js).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bench_runpath_runs;
         CREATE TABLE bench_runpath_runs (id uuid PRIMARY KEY, status text NOT NULL, last_seq bigint NOT NULL DEFAULT 0);",
    )
    .execute(pool)
    .await
    .context("create the run-path table")?;

    let mut services = JoinSet::new();
    let completions = Arc::new(Completions::default());
    let permits = Arc::new(Semaphore::new(load.max_in_flight));
    services.spawn(executor(client.clone(), js.clone()).await?);
    services.spawn(worker(client.clone(), js.clone(), &commands).await?);
    // As the control-plane's: a connection of its own, not queued behind the inserts.
    let projector_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .context("connect the run path's projector")?;
    services.spawn(projector(projector_pool, &events).await?);
    services.spawn(watcher(&events, completions.clone(), permits.clone()).await?);

    let started = Instant::now();
    let end = started + load.duration;
    let window_start = started + load.duration / 5;
    let mut clients = JoinSet::new();
    for _ in 0..load.clients {
        let (js, pool, permits) = (js.clone(), pool.clone(), permits.clone());
        clients.spawn(async move {
            let mut started_runs = 0u64;
            while take_slot(&permits, end).await {
                start_run(&js, &pool).await?;
                started_runs += 1;
            }
            anyhow::Ok(started_runs)
        });
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(window_start)).await;
    let cpu = CpuMark::now(nats_pid, &postgres_pids().await);
    let completed_before = completions.count.load(Ordering::Relaxed);
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let completed = completions.count.load(Ordering::Relaxed) - completed_before;
    let cpu = cpu.usage_since();
    let mut started_runs = 0;
    while let Some(joined) = clients.join_next().await {
        started_runs += joined??;
    }
    services.abort_all();
    let window = end.duration_since(window_start).as_secs_f64();
    anyhow::ensure!(completed > 0, "no run completed inside the window");
    let per_run_ms = |cores: Option<f64>| cores.map(|c| c * window * 1e3 / completed as f64);
    Ok((
        completed as f64 / window,
        json!({
            "clients": load.clients,
            "max_runs_in_flight": load.max_in_flight,
            "load_seconds": load.duration.as_secs_f64(),
            "window_seconds": window,
            "completed_in_window": completed,
            "runs_started": started_runs,
            "events_per_run": EVENTS_PER_RUN,
            "cpu_in_window": cpu,
            "cpu_ms_per_completed_run": {
                "benchmark_process": per_run_ms(cpu.switchyard_process_cores),
                "nats_server": per_run_ms(cpu.nats_server_cores),
                "postgres_backends": per_run_ms(cpu.postgres_backends_cores),
            },
        }),
    ))
}

async fn streams(
    js: &Context,
) -> anyhow::Result<(jetstream::stream::Stream, jetstream::stream::Stream)> {
    let _ = js.delete_stream(EVENTS_STREAM).await;
    let _ = js.delete_stream(COMMANDS_STREAM).await;
    let events = js
        .create_stream(jetstream::stream::Config {
            name: EVENTS_STREAM.to_owned(),
            subjects: vec!["bench.runpath.events.>".to_owned()],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        })
        .await
        .context("create the run-path event stream")?;
    let commands = js
        .create_stream(jetstream::stream::Config {
            name: COMMANDS_STREAM.to_owned(),
            subjects: vec!["bench.runpath.commands.>".to_owned()],
            storage: StorageType::File,
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .context("create the run-path command stream")?;
    Ok((events, commands))
}

fn events_subject(run_id: Uuid) -> String {
    format!("bench.runpath.events.{run_id}")
}

/// Appends event `seq` of a run fenced on `last_stream_seq`; returns its stream sequence.
async fn append(js: &Context, run_id: Uuid, seq: u64, last_stream_seq: u64) -> anyhow::Result<u64> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{run_id}:{seq}").as_str());
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        last_stream_seq.to_string().as_str(),
    );
    if seq == EVENTS_PER_RUN {
        headers.insert(TERMINAL, "1");
    }
    let ack = js
        .publish_with_headers(events_subject(run_id), headers, sample_event(seq))
        .await?
        .await?;
    Ok(ack.sequence)
}

async fn start_run(js: &Context, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let run_id = Uuid::now_v7();
    // Runtime queries in this module: its table is created by `run`, so it is not in
    // the migrated schema the query macros check against.
    sqlx::query("INSERT INTO bench_runpath_runs (id, status) VALUES ($1, 'queued')")
        .bind(run_id)
        .execute(pool)
        .await?;
    let queued = append(js, run_id, 1, 0).await?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", run_id.to_string().as_str());
    js.publish_with_headers(
        format!("bench.runpath.commands.{run_id}"),
        headers,
        format!("{run_id} {queued}").into(),
    )
    .await?
    .await?;
    Ok(())
}

/// The executor-manager's shape: pull a command, acknowledge it, claim, dispatch.
async fn worker(
    client: async_nats::Client,
    js: Context,
    commands: &jetstream::stream::Stream,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let consumer = commands
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-worker".to_owned()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 1024,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(32)
        .messages()
        .await?;
    Ok(async move {
        let mut dispatches = JoinSet::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let (client, js) = (client.clone(), js.clone());
            dispatches.spawn(async move {
                let text = std::str::from_utf8(&message.payload)?;
                let (run_id, queued) = text.split_once(' ').context("a bad command")?;
                let run_id: Uuid = run_id.parse()?;
                let claimed = append(&js, run_id, 2, queued.parse()?).await?;
                client
                    .request(DISPATCH, format!("{run_id} {claimed}").into())
                    .await?;
                anyhow::Ok(())
            });
            while dispatches.try_join_next().is_some() {}
        }
        Ok(())
    })
}

/// The executor's shape: accept a dispatch, append the run's events one at a time.
async fn executor(
    client: async_nats::Client,
    js: Context,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let mut requests = client.subscribe(DISPATCH).await?;
    client.flush().await?;
    Ok(async move {
        let mut runs = JoinSet::new();
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply.clone() else {
                continue;
            };
            client.publish(reply, "ok".into()).await?;
            let js = js.clone();
            runs.spawn(async move {
                let text = std::str::from_utf8(&request.payload)?;
                let (run_id, claimed) = text.split_once(' ').context("a bad dispatch")?;
                let run_id: Uuid = run_id.parse()?;
                let mut last = claimed.parse()?;
                for seq in 3..=EVENTS_PER_RUN {
                    last = append(&js, run_id, seq, last).await?;
                }
                anyhow::Ok(())
            });
            while runs.try_join_next().is_some() {}
        }
        Ok(())
    })
}

/// The projector's shape: every event acknowledged after its batch is in Postgres, one
/// statement per batch, planned with the batch's real size.
async fn projector(
    pool: sqlx::PgPool,
    events: &jetstream::stream::Stream,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let consumer = events
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-projector".to_owned()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 4096,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await?;
    Ok(async move {
        while let Some(first) = messages.next().await {
            let mut batch = vec![first?];
            while batch.len() < PULL_BATCH {
                // As the projector: outside tokio's budget, which would end it at 64.
                match tokio::task::unconstrained(messages.next()).now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    _ => break,
                }
            }
            let mut last_seq: HashMap<Uuid, i64> = HashMap::new();
            for message in &batch {
                let (run_id, seq) = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .and_then(|id| id.as_str().split_once(':'))
                    .context("an event without its id")?;
                let (run_id, seq): (Uuid, i64) = (run_id.parse()?, seq.parse()?);
                let entry = last_seq.entry(run_id).or_insert(seq);
                *entry = (*entry).max(seq);
            }
            let (ids, seqs): (Vec<Uuid>, Vec<i64>) = last_seq.into_iter().unzip();
            sqlx::query(
                "UPDATE bench_runpath_runs r SET last_seq = GREATEST(r.last_seq, u.seq),
                     status = CASE WHEN u.seq >= $3 THEN 'succeeded' ELSE 'running' END
                 FROM unnest($1::uuid[], $2::bigint[]) AS u(id, seq) WHERE r.id = u.id",
            )
            .bind(&ids)
            .bind(&seqs)
            .bind(EVENTS_PER_RUN as i64)
            .persistent(false)
            .execute(&pool)
            .await?;
            for message in &batch {
                message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        Ok(())
    })
}

#[derive(Default)]
struct Completions {
    count: AtomicU64,
}

/// The benchmark watcher's shape: every event, a completion counted and its permit given
/// back.
async fn watcher(
    events: &jetstream::stream::Stream,
    completions: Arc<Completions>,
    permits: Arc<Semaphore>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let consumer = events
        .create_consumer(OrderedConfig {
            filter_subject: "bench.runpath.events.>".to_owned(),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    Ok(async move {
        while let Some(message) = messages.next().await {
            let message = message?;
            if message
                .headers
                .as_ref()
                .is_some_and(|h| h.get(TERMINAL).is_some())
            {
                completions.count.fetch_add(1, Ordering::Relaxed);
                permits.add_permits(1);
            }
        }
        Ok(())
    })
}
