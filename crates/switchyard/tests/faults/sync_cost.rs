//! What `sync_interval: always` costs: JetStream publish throughput on a file stream
//! with the server's default (fsync every 2 minutes) and with an fsync per write.
//! nats-server takes `sync_interval` only from a config file, so each server here is
//! started from one. A measurement, not a test: `scripts/faults.sh` runs it (ignored in
//! the normal suite); the numbers are in `docs/reliability.md`.

use futures::StreamExt as _;
use std::process::Stdio;
use std::time::Duration;
use switchyard_contracts::event::MessageDelta;
use switchyard_contracts::{RunEventKind, RunId};
use switchyard_platform::events::EventLog;
use switchyard_platform::nats::{self, Resources};
use tokio::time::Instant;

const PAYLOAD: usize = 256;
const SEQUENTIAL: usize = 2_000;
const PIPELINED: usize = 20_000;
const WINDOW: usize = 256;
const RUNS: usize = 64;
const EVENTS_PER_RUN: usize = 100;

struct Server {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

async fn start(sync_always: bool) -> Server {
    let binary = switchyard_test_support::nats_server_binary().unwrap();
    let port = switchyard_test_support::free_port();
    let dir =
        std::env::temp_dir().join(format!("switchyard-sync-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("js")).unwrap();
    let sync = if sync_always {
        "  sync_interval: always\n"
    } else {
        ""
    };
    let config = format!(
        "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  max_file_store: 1TB\n{sync}}}\n",
        dir.join("js").display()
    );
    let file = dir.join("nats.conf");
    std::fs::write(&file, config).unwrap();
    let child = tokio::process::Command::new(binary)
        .arg("-c")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, dir, url }
}

struct Figures {
    sequential_per_s: f64,
    sequential_p50_ms: f64,
    sequential_p99_ms: f64,
    pipelined_per_s: f64,
    run_events_per_s: f64,
}

async fn measure(sync_always: bool) -> Figures {
    let mut server = start(sync_always).await;
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = vec![b'x'; PAYLOAD];

    // One publish at a time, each waiting for its ack: the latency of a single append.
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    let began = Instant::now();
    for i in 0..SEQUENTIAL {
        let one = Instant::now();
        js.publish(format!("bench.seq.{}", i % 16), payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        latencies.push(one.elapsed());
    }
    let sequential_per_s = SEQUENTIAL as f64 / began.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    // Many in flight: the server batches writes (and fsyncs) under load.
    let began = Instant::now();
    let mut sent = 0;
    while sent < PIPELINED {
        let mut acks = Vec::with_capacity(WINDOW);
        for _ in 0..WINDOW.min(PIPELINED - sent) {
            acks.push(
                js.publish(format!("bench.pipe.{}", sent % 16), payload.clone().into())
                    .await
                    .unwrap(),
            );
            sent += 1;
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let pipelined_per_s = PIPELINED as f64 / began.elapsed().as_secs_f64();

    // The platform's own pattern: many runs, each appending its events one after the
    // other with a fenced append (expected last subject sequence) through EventLog.
    nats::provision(
        &js,
        Resources {
            run_events: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let log = EventLog::open(js.clone()).await.unwrap();
    let began = Instant::now();
    futures::stream::iter(0..RUNS)
        .for_each_concurrent(RUNS, |_| {
            let log = log.clone();
            async move {
                let run_id = RunId::now_v7();
                let mut position = switchyard_contracts::dispatch::EventPosition::EMPTY;
                for i in 0..EVENTS_PER_RUN {
                    log.append(
                        run_id,
                        &mut position,
                        RunEventKind::MessageDelta(MessageDelta {
                            message_id: "m".into(),
                            text: format!("delta {i} {}", "x".repeat(200)),
                        }),
                    )
                    .await
                    .unwrap();
                }
            }
        })
        .await;
    let run_events_per_s = (RUNS * EVENTS_PER_RUN) as f64 / began.elapsed().as_secs_f64();

    // Disconnect before the server goes, or the client keeps reconnecting in the log.
    drop((log, js));
    let _ = client.drain().await;
    let _ = server.child.kill().await;
    let _ = std::fs::remove_dir_all(&server.dir);
    Figures {
        sequential_per_s,
        sequential_p50_ms: pct(0.5).as_secs_f64() * 1000.0,
        sequential_p99_ms: pct(0.99).as_secs_f64() * 1000.0,
        pipelined_per_s,
        run_events_per_s,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by scripts/faults.sh (or with --ignored)"]
async fn sync_interval_always_cost() {
    let mut table = String::from(
        "| sync_interval | 1 publish at a time | p50 / p99 ack latency | 256 in flight | run events, 64 runs appending (EventLog) |\n|---|---|---|---|---|\n",
    );
    for (label, always) in [("default (2 min)", false), ("always", true)] {
        let f = measure(always).await;
        table.push_str(&format!(
            "| {label} | {:.0} msg/s | {:.2} / {:.2} ms | {:.0} msg/s | {:.0} events/s |\n",
            f.sequential_per_s,
            f.sequential_p50_ms,
            f.sequential_p99_ms,
            f.pipelined_per_s,
            f.run_events_per_s
        ));
    }
    eprintln!("\n{table}");
    if let Ok(path) = std::env::var("SWITCHYARD_SYNC_REPORT")
        && !path.is_empty()
    {
        std::fs::write(path, &table).unwrap();
    }
    assert!(table.contains("always"));
}
