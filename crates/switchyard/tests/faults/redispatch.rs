//! A run accepted by an executor that is lost before the run started is not failed
//! but dispatched again: the reconciler queues it again and another executor runs it,
//! exactly once.
//!
//! To hold an executor between its `run.dispatched` and its `run.started` without a
//! test hook, the run is a follow-up in a conversation whose directory on that
//! executor holds a FIFO where the provider session record belongs: reading it (the
//! last step before `run.started`) blocks until someone writes. The executor is then
//! frozen (SIGSTOP) like a partitioned one. Once the run has completed elsewhere it is
//! resumed and the FIFO released: its late `run.started` must be fenced.

use crate::check;
use crate::cluster::{Cluster, TOKEN};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// Presence TTL (15 s) + a reconcile interval (5 s) + a probe timeout (2 s), with room
/// for a loaded machine.
const REDISPATCH_DEADLINE: Duration = Duration::from_secs(60);

async fn start_run(http: &reqwest::Client, base: &str, body: Value) -> String {
    let response = http
        .post(format!("{base}/api/runs/start"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    body["runId"].as_str().unwrap().to_owned()
}

async fn wait_view(
    http: &reqwest::Client,
    base: &str,
    run_id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let view: Value = http
            .get(format!("{base}/api/runs/{run_id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never matched: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_executor_is_lost_before_it_started_runs_elsewhere_once() {
    switchyard_test_support::init_tracing();
    let _one_cluster = crate::ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(4).await.expect("the cluster starts");
    let base = cluster.base();
    let http = reqwest::Client::new();
    let script = |text: &str| json!({"script": [{"message": {"text": text}}]});

    let first = start_run(
        &http,
        &base,
        json!({"provider": "scripted", "prompt": "first", "providerOptions": script("one")}),
    )
    .await;
    let view = wait_view(&http, &base, &first, REDISPATCH_DEADLINE, |v| {
        v["status"] == "succeeded"
    })
    .await;
    let lost_id = view["executorId"].as_str().unwrap().to_owned();
    let conversation = view["conversationId"].as_str().unwrap().to_owned();
    let name = lost_id.trim_start_matches("exec-");
    let lost = cluster
        .executors
        .iter()
        .position(|e| e.name == format!("executor-{name}"))
        .expect("the executor of the first run");

    let session = cluster
        .dir
        .join(format!("workspaces-{name}"))
        .join(&conversation)
        .join("session.json");
    let _ = std::fs::remove_file(&session);
    let made = tokio::process::Command::new("mkfifo")
        .arg(&session)
        .status()
        .await
        .unwrap();
    assert!(made.success(), "mkfifo {}", session.display());

    // The follow-up prefers the executor holding the conversation, which accepts it
    // and blocks before run.started.
    let second = start_run(
        &http,
        &base,
        json!({"provider": "scripted", "prompt": "second", "conversationId": conversation,
               "providerOptions": script("two")}),
    )
    .await;
    let view = wait_view(&http, &base, &second, REDISPATCH_DEADLINE, |v| {
        v["status"] == "dispatched"
    })
    .await;
    assert_eq!(view["executorId"], lost_id.as_str(), "{view}");

    cluster.executors[lost].signal("STOP").await;
    let frozen_at = Instant::now();
    let view = wait_view(&http, &base, &second, REDISPATCH_DEADLINE, |v| {
        matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "stopped" | "timed_out")
        )
    })
    .await;
    let took = frozen_at.elapsed();
    assert_eq!(
        view["status"],
        "succeeded",
        "{view}\n{}",
        cluster.logs(3000)
    );
    assert_ne!(view["executorId"], lost_id.as_str(), "{view}");
    tracing::info!(
        took_ms = took.as_millis() as u64,
        "re-dispatched run completed"
    );

    // The frozen executor comes back and gets past the FIFO: its run.started is fenced.
    cluster.executors[lost].signal("CONT").await;
    let fifo = session.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || std::fs::write(fifo, b"{}")),
    )
    .await
    .expect("the executor opened the FIFO")
    .unwrap()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.executors[lost].log_count("run fenced") == 0 {
        assert!(
            Instant::now() < deadline,
            "the resumed executor never saw its append fenced:\n{}",
            cluster.executors[lost].log_tail(3000)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = async_nats::connect(cluster.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("RUN_EVENTS").await.unwrap();
    let history = check::history(&stream, &second).await;
    for (i, event) in history.iter().enumerate() {
        assert_eq!(event["seq"], i as u64 + 1, "{history:?}");
    }
    let of = |kind: &str| -> Vec<&Value> { history.iter().filter(|e| e["type"] == kind).collect() };
    assert_eq!(of("run.started").len(), 1, "{history:?}");
    assert_eq!(of("run.completed").len(), 1, "{history:?}");
    assert_eq!(of("run.queued").len(), 2, "{history:?}");
    let dispatched = of("run.dispatched");
    assert_eq!(dispatched.len(), 2, "{history:?}");
    assert_eq!(dispatched[0]["data"]["executorId"], lost_id.as_str());
    assert_eq!(dispatched[1]["data"]["executorId"], view["executorId"]);
    let note = of("diagnostic")[0]["data"]["message"].as_str().unwrap();
    assert!(
        note.contains(&lost_id) && note.contains("before it started"),
        "{note}"
    );
    assert_eq!(of("run.completed")[0]["data"]["status"], "succeeded");
    eprintln!(
        "re-dispatch: the run completed on {} {:.1} s after {lost_id} froze",
        view["executorId"],
        took.as_secs_f64()
    );
    for executor in &mut cluster.executors {
        executor.kill9().await;
    }
    cluster.clean_up();
}
