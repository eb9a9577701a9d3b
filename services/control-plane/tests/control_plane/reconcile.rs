//! The reconciler against a real nats-server and Postgres: runs of lost executors are
//! concluded `executor_lost` (or dispatched again when they had not started), live
//! owners are left alone, and a run whose command vanished before any dispatch gets it
//! published again.
//!
//! The test plays manager and executor itself by appending their events, and passes
//! are driven by hand (`Reconciler::pass`) so each assertion follows one pass.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{RunClaimed, RunDispatched, RunStarted};
use switchyard_contracts::{RunEventKind, RunId};
use switchyard_control_plane::Config;
use switchyard_control_plane::test_support::{ReconcileSettings, Reconciler};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::{EventLog, EventLogError};
use switchyard_platform::nats::{self, Resources};
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, TestDb};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);
/// What a gateway would send (`control_plane.internal_token`).
const INTERNAL_TOKEN: &str = "reconcile-test-internal-token";

struct Setup {
    // Held for their lifetime: the server and database go away with them.
    _nats: NatsServer,
    _db: TestDb,
    pool: sqlx::PgPool,
    base: String,
    http: reqwest::Client,
    client: async_nats::Client,
    js: jetstream::Context,
    events: EventLog,
    kv: jetstream::kv::Store,
    shutdown: CancellationToken,
    handle: ServiceHandle,
}

impl Setup {
    async fn start() -> Setup {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.unwrap();
        let db = TestDb::create().await.unwrap();
        let mut config = Config {
            nats: NatsConfig {
                url: nats.url(),
                ..Default::default()
            },
            ..Default::default()
        };
        config.database.url = db.url.clone().into();
        config.database.max_connections = 4;
        config.control_plane.listen = "127.0.0.1:0".parse().unwrap();
        config.control_plane.internal_token = Some(INTERNAL_TOKEN.into());
        // Only the start-up pass of the service's own reconciler runs (on an empty
        // database); the test drives its passes itself.
        config.control_plane.reconcile_interval_ms = 3_600_000;
        let shutdown = CancellationToken::new();
        let handle = switchyard_control_plane::start(config, shutdown.clone())
            .await
            .unwrap();
        let base = format!("http://{}", handle.http_addr.unwrap());
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        nats::provision(
            &js,
            Resources {
                executors_kv: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let kv = js.get_key_value("EXECUTORS").await.unwrap();
        let events = EventLog::open(js.clone()).await.unwrap();
        Setup {
            pool: db.pool.clone(),
            _nats: nats,
            _db: db,
            base,
            http: {
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(
                    switchyard_contracts::auth::INTERNAL_TOKEN_HEADER,
                    INTERNAL_TOKEN.parse().unwrap(),
                );
                reqwest::Client::builder()
                    .default_headers(headers)
                    .build()
                    .unwrap()
            },
            client,
            js,
            events,
            kv,
            shutdown,
            handle,
        }
    }

    async fn reconciler(&self, tweak: impl FnOnce(&mut ReconcileSettings)) -> Reconciler {
        let mut settings = ReconcileSettings {
            interval: Duration::from_secs(3600),
            presence_ttl: Duration::from_secs(15),
            // The bucket was created a moment ago by the test.
            presence_settle: Duration::ZERO,
            stuck_after: Duration::from_secs(3600),
        };
        tweak(&mut settings);
        Reconciler::open(
            self.client.clone(),
            self.js.clone(),
            self.pool.clone(),
            settings,
        )
        .await
        .unwrap()
    }

    async fn start_run(&self) -> RunId {
        let response = self
            .http
            .post(format!("{}/api/runs/start", self.base))
            .json(&json!({"provider": "scripted", "prompt": "reconcile me"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: Value = response.json().await.unwrap();
        let run_id: RunId = body["runId"].as_str().unwrap().parse().unwrap();
        // The publication runs beside the answer: run.queued is appended first, then
        // the command is published, then the outbox entry is deleted (with others, a
        // moment later). Wait for all of it, so the log and the outbox are where the
        // publication leaves them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let commands = self.js.get_stream("RUN_COMMANDS").await.unwrap();
            let published = commands
                .get_last_raw_message_by_subject("runs.commands.scripted")
                .await
                .is_ok_and(|command| {
                    command
                        .headers
                        .get(switchyard_contracts::subjects::HEADER_RUN_ID)
                        .is_some_and(|value| value.as_str() == run_id.to_string())
                });
            let in_outbox = sqlx::query_scalar!(
                r#"SELECT count(*) AS "count!" FROM outbox WHERE run_id = $1"#,
                run_id
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if published && in_outbox == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} never published (command published: {published}, outbox entries: {in_outbox})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_status(run_id, "queued").await;
        run_id
    }

    async fn position(&self, run_id: RunId) -> EventPosition {
        self.events.position(run_id).await.unwrap()
    }

    /// Appends what a manager and an executor would: claimed, dispatched and, when
    /// `started`, run.started.
    async fn dispatch(&self, run_id: RunId, executor_id: &str, started: bool) {
        let mut position = self.position(run_id).await;
        let kinds = [
            RunEventKind::RunClaimed(RunClaimed {
                worker_id: "test-manager".parse().unwrap(),
                attempt: 1,
            }),
            RunEventKind::RunDispatched(RunDispatched {
                executor_id: executor_id.parse().unwrap(),
                timeout_ms: 60_000,
            }),
            RunEventKind::RunStarted(RunStarted {
                provider: "scripted".into(),
                model: None,
                workspace: None,
            }),
        ];
        let count = if started { 3 } else { 2 };
        for kind in kinds.into_iter().take(count) {
            self.events
                .append(run_id, &mut position, kind)
                .await
                .unwrap();
        }
        self.wait_status(run_id, if started { "running" } else { "dispatched" })
            .await;
    }

    async fn status(&self, run_id: RunId) -> Value {
        let response = self
            .http
            .get(format!("{}/api/runs/{run_id}", self.base))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn wait_status(&self, run_id: RunId, status: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let view = self.status(run_id).await;
            if view["status"] == status {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} never became {status}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn put_presence(
        &self,
        executor_id: &str,
        started_at: DateTime<Utc>,
        heartbeat_at: DateTime<Utc>,
    ) {
        let record = json!({
            "executorId": executor_id,
            "version": "test",
            "capacity": 4,
            "active": 1,
            "providers": [{"name": "scripted", "installed": true}],
            "startedAt": started_at,
            "heartbeatAt": heartbeat_at,
        });
        self.kv
            .put(executor_id, serde_json::to_vec(&record).unwrap().into())
            .await
            .unwrap();
    }

    /// The run's events, in order.
    async fn history(&self, run_id: RunId) -> Vec<Value> {
        let last = self.events.last(run_id).await.unwrap().unwrap();
        let mut tail = Box::pin(self.events.tail(run_id, 0).await.unwrap());
        let mut events = Vec::new();
        while let Some(event) = tail.next().await {
            let event = event.unwrap();
            events.push(serde_json::from_slice(&event.payload).unwrap());
            if event.stream_seq == last.stream_seq {
                break;
            }
        }
        events
    }

    async fn last_event(&self, run_id: RunId) -> Value {
        serde_json::from_slice(&self.events.last(run_id).await.unwrap().unwrap().payload).unwrap()
    }

    /// Removes the run's command from RUN_COMMANDS, as if a worker had acknowledged it
    /// without an executor taking the run (or the server lost it).
    async fn lose_command(&self) {
        let stream = self.js.get_stream("RUN_COMMANDS").await.unwrap();
        let message = stream
            .get_last_raw_message_by_subject("runs.commands.scripted")
            .await
            .unwrap();
        assert!(stream.delete_message(message.sequence).await.unwrap());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.handle.wait())
            .await
            .expect("the control-plane stops in time")
            .unwrap();
    }
}

#[tokio::test]
async fn runs_of_gone_executors_end_executor_lost_and_live_owners_keep_theirs() {
    let s = Setup::start().await;
    let now = Utc::now();

    let absent = s.start_run().await;
    s.dispatch(absent, "exec-absent", true).await;
    let silent = s.start_run().await;
    s.dispatch(silent, "exec-silent", true).await;
    s.put_presence(
        "exec-silent",
        now - chrono::Duration::seconds(120),
        now - chrono::Duration::seconds(60),
    )
    .await;
    let garbage = s.start_run().await;
    s.dispatch(garbage, "exec-garbage", true).await;
    s.kv.put("exec-garbage", "not a presence record".into())
        .await
        .unwrap();
    let live = s.start_run().await;
    s.dispatch(live, "exec-live", true).await;
    s.put_presence(
        "exec-live",
        now - chrono::Duration::seconds(120),
        Utc::now(),
    )
    .await;
    // Dispatched (not started) to the previous process of an id that restarted since.
    let reborn = s.start_run().await;
    s.dispatch(reborn, "exec-reborn", false).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.put_presence("exec-reborn", Utc::now(), Utc::now()).await;
    // No presence, but it still answers for its run: alive.
    let quiet = s.start_run().await;
    s.dispatch(quiet, "exec-quiet", true).await;
    let mut control = s
        .client
        .subscribe(format!("runs.control.{quiet}"))
        .await
        .unwrap();
    let answering_client = s.client.clone();
    let probes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let probes_seen = probes.clone();
    let answering = tokio::spawn(async move {
        while let Some(message) = control.next().await {
            probes_seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(reply) = message.reply {
                answering_client
                    .publish(reply, r#"{"outcome":"invalid"}"#.into())
                    .await
                    .unwrap();
            }
        }
    });
    s.client.flush().await.unwrap();

    // A bucket younger than the settle time proves nothing: nobody is concluded.
    let cautious = s
        .reconciler(|settings| settings.presence_settle = Duration::from_secs(3600))
        .await;
    let report = cautious.pass().await;
    assert!(report.concluded.is_empty(), "{report:?}");

    let reconciler = s.reconciler(|_| {}).await;
    let report = reconciler.pass().await;
    let mut concluded = report.concluded.clone();
    concluded.sort();
    let mut expected = vec![absent, silent, garbage];
    expected.sort();
    assert_eq!(concluded, expected, "{report:?}");
    // It had not started: queued and dispatched again instead.
    assert_eq!(report.redispatched, vec![reborn], "{report:?}");
    let note = s.history(reborn).await[3]["data"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        note.contains("exec-reborn restarted") && note.contains("before it started"),
        "{note}"
    );
    assert_eq!(s.last_event(reborn).await["type"], "run.queued");

    for (run_id, executor_id, what) in [
        (
            absent,
            "exec-absent",
            "stopped heartbeating while the run was running",
        ),
        (
            silent,
            "exec-silent",
            "stopped heartbeating while the run was running",
        ),
        (
            garbage,
            "exec-garbage",
            "stopped heartbeating while the run was running",
        ),
    ] {
        let last = s.last_event(run_id).await;
        assert_eq!(last["type"], "run.completed", "{last}");
        assert_eq!(last["data"]["status"], "failed");
        assert_eq!(last["data"]["reason"], "executor_lost");
        let detail = last["data"]["detail"].as_str().unwrap();
        assert!(
            detail.contains(executor_id) && detail.contains(what),
            "{detail}"
        );
        let view = s.wait_status(run_id, "failed").await;
        assert_eq!(view["failureReason"], "executor_lost");
    }
    for run_id in [live, quiet] {
        assert_eq!(s.last_event(run_id).await["type"], "run.started");
        assert_eq!(s.status(run_id).await["status"], "running");
    }

    // Nothing is concluded twice, whatever the projection shows by then.
    let report = reconciler.pass().await;
    assert!(report.concluded.is_empty(), "{report:?}");
    assert!(report.redispatched.is_empty(), "{report:?}");
    for run_id in [absent, silent, garbage] {
        let completed = s
            .history(run_id)
            .await
            .iter()
            .filter(|e| e["type"] == "run.completed")
            .count();
        assert_eq!(completed, 1);
    }

    assert!(
        probes.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the quiet executor was never probed"
    );
    answering.abort();
    s.stop().await;
}

#[tokio::test]
async fn a_run_whose_command_vanished_before_dispatch_gets_it_republished_once() {
    let s = Setup::start().await;
    let run_id = s.start_run().await;
    let reconciler = s
        .reconciler(|settings| settings.stuck_after = Duration::ZERO)
        .await;

    // Its command is still queued: nothing to do.
    let report = reconciler.pass().await;
    assert!(report.requeued.is_empty(), "{report:?}");

    // A worker claims it, then the command disappears without a dispatch.
    let mut position = s.position(run_id).await;
    s.events
        .append(
            run_id,
            &mut position,
            RunEventKind::RunClaimed(RunClaimed {
                worker_id: "test-manager".parse().unwrap(),
                attempt: 1,
            }),
        )
        .await
        .unwrap();
    s.wait_status(run_id, "claimed").await;
    s.lose_command().await;

    let report = reconciler.pass().await;
    assert_eq!(report.requeued, vec![run_id], "{report:?}");
    let history = s.history(run_id).await;
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["run.queued", "run.claimed", "diagnostic", "run.queued"]
    );
    let note = history[2]["data"]["message"].as_str().unwrap();
    assert!(
        note.starts_with("command republished after the run stayed claimed"),
        "{note}"
    );

    let stream = s.js.get_stream("RUN_COMMANDS").await.unwrap();
    let command = stream
        .get_last_raw_message_by_subject("runs.commands.scripted")
        .await
        .unwrap();
    assert_eq!(
        command.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("{run_id}:retry:3").as_str())
    );
    let body: Value = serde_json::from_slice(&command.payload).unwrap();
    assert_eq!(body["runId"], run_id.to_string());
    assert_eq!(body["prompt"], "reconcile me");
    assert_eq!(body["provider"], "scripted");

    // The republished command is queued now: the next pass leaves the run alone.
    s.wait_status(run_id, "queued").await;
    let report = reconciler.pass().await;
    assert!(report.requeued.is_empty(), "{report:?}");

    // A run that was dispatched is never requeued, even if the projection says claimed.
    let dispatched = s.start_run().await;
    s.dispatch(dispatched, "exec-x", false).await;
    s.lose_command().await;
    sqlx::query!(
        "UPDATE runs SET status = 'claimed' WHERE run_id = $1",
        dispatched
    )
    .execute(&s.pool)
    .await
    .unwrap();
    let report = reconciler.pass().await;
    assert!(!report.requeued.contains(&dispatched), "{report:?}");
    assert_eq!(s.last_event(dispatched).await["type"], "run.dispatched");

    s.stop().await;
}

#[tokio::test]
async fn a_run_whose_executor_was_lost_before_it_started_is_dispatched_again_once() {
    let s = Setup::start().await;
    let run_id = s.start_run().await;
    s.dispatch(run_id, "exec-gone", false).await;
    // Where the lost executor would append its run.started.
    let zombie_position = s.position(run_id).await;

    let reconciler = s.reconciler(|_| {}).await;
    let report = reconciler.pass().await;
    assert_eq!(report.redispatched, vec![run_id], "{report:?}");
    assert!(report.concluded.is_empty(), "{report:?}");
    let history = s.history(run_id).await;
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "run.queued",
            "run.claimed",
            "run.dispatched",
            "diagnostic",
            "run.queued"
        ]
    );
    let note = history[3]["data"]["message"].as_str().unwrap();
    assert_eq!(
        note,
        "executor exec-gone stopped heartbeating after the run was dispatched to it and \
         before it started; dispatching the run again"
    );
    let stream = s.js.get_stream("RUN_COMMANDS").await.unwrap();
    let command = stream
        .get_last_raw_message_by_subject("runs.commands.scripted")
        .await
        .unwrap();
    assert_eq!(
        command.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("{run_id}:retry:4").as_str())
    );
    let body: Value = serde_json::from_slice(&command.payload).unwrap();
    assert_eq!(body["runId"], run_id.to_string());
    assert_eq!(body["prompt"], "reconcile me");
    s.wait_status(run_id, "queued").await;

    // The lost executor, back from a partition, cannot start the run any more.
    let mut position = zombie_position;
    let late = s
        .events
        .append(
            run_id,
            &mut position,
            RunEventKind::RunStarted(RunStarted {
                provider: "scripted".into(),
                model: None,
                workspace: None,
            }),
        )
        .await;
    assert!(
        matches!(late, Err(EventLogError::Fenced { .. })),
        "{late:?}"
    );

    // Once is enough.
    let report = reconciler.pass().await;
    assert_eq!(report, Default::default());

    // The next dispatch is to another executor, and the projection follows it.
    s.dispatch(run_id, "exec-next", true).await;
    assert_eq!(s.status(run_id).await["executorId"], "exec-next");
    s.stop().await;
}
