//! The executor-manager against a real nats-server. No executor crate is involved: each
//! test plays the executor over NATS itself — a presence record in the `EXECUTORS`
//! bucket and a subscriber on its dispatch subject that appends `run.dispatched` at the
//! position it was given (fenced, like a real executor) and answers as the test needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_contracts::dispatch::{
    DispatchOutcome, DispatchReply, DispatchRequest, EventPosition,
};
use switchyard_contracts::event::{RunCompleted, RunDispatched, RunQueued};
use switchyard_contracts::presence::{ExecutorPresence, ProviderAvailability};
use switchyard_contracts::{
    ExecutorId, FailureReason, RunCommand, RunEvent, RunEventKind, RunId, TerminalStatus, subjects,
};
use switchyard_executor_manager::{Config, TimeoutTemplate};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::{EventLog, EventLogError};
use switchyard_platform::nats::{self as platform_nats, Resources};
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::{NatsServer, init_tracing};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

struct Env {
    server: NatsServer,
    client: async_nats::Client,
    js: jetstream::Context,
    events: EventLog,
}

impl Env {
    async fn new() -> Env {
        init_tracing();
        let server = NatsServer::start().await.unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        platform_nats::provision(&js, Resources::ALL).await.unwrap();
        let events = EventLog::open(js.clone()).await.unwrap();
        Env {
            server,
            client,
            js,
            events,
        }
    }

    fn config(&self) -> Config {
        let mut config = Config {
            nats: NatsConfig {
                url: self.server.url(),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = &mut config.executor_manager;
        s.listen = "127.0.0.1:0".parse().unwrap();
        s.dispatch_timeout_ms = 2_000;
        s.no_capacity_delay_ms = 100;
        config
    }

    async fn start(&self, config: Config) -> Manager {
        config.validate().unwrap();
        let shutdown = CancellationToken::new();
        let handle = switchyard_executor_manager::start(config, shutdown.clone())
            .await
            .unwrap();
        Manager { handle, shutdown }
    }

    /// What the control-plane does: run.queued at seq 1, then the command.
    async fn queue(&self, provider: &str, options: serde_json::Value) -> RunCommand {
        self.queue_follow_up(provider, options, None).await
    }

    /// [`Env::queue`] for a run of a conversation last run on `preferred`.
    async fn queue_follow_up(
        &self,
        provider: &str,
        options: serde_json::Value,
        preferred: Option<&str>,
    ) -> RunCommand {
        let run_id = uuid::Uuid::now_v7();
        let command = RunCommand {
            run_id,
            provider: provider.into(),
            model: None,
            prompt: "do the thing".into(),
            app_id: None,
            execution_profile: None,
            provider_options: options,
            credential_env: Vec::new(),
            timeout_ms: None,
            conversation_id: Some(run_id),
            preferred_executor: preferred.map(|p| p.parse().unwrap()),
            created_at: chrono::Utc::now(),
        };
        let mut position = EventPosition::EMPTY;
        self.events
            .append(
                command.run_id,
                &mut position,
                RunEventKind::RunQueued(RunQueued {
                    provider: provider.into(),
                    model: None,
                    app_id: None,
                }),
            )
            .await
            .unwrap();
        self.publish_command(
            provider,
            &command.run_id.to_string(),
            serde_json::to_vec(&command).unwrap(),
        )
        .await;
        command
    }

    async fn publish_command(&self, provider: &str, msg_id: &str, payload: Vec<u8>) {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(msg_id);
        self.js
            .send_publish(subjects::run_command(provider), publish)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn executors_kv(&self) -> jetstream::kv::Store {
        self.js
            .get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .unwrap()
    }

    /// Waits until the work queue has delivered commands `n` times in all.
    async fn deliveries(&self, n: u64) {
        eventually(&format!("{n} deliveries"), || async {
            self.consumer_info().await.delivered.consumer_sequence >= n
        })
        .await;
    }

    async fn commands_in_stream(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(subjects::RUN_COMMANDS_STREAM)
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    async fn consumer_info(&self) -> jetstream::consumer::Info {
        let stream = self
            .js
            .get_stream(subjects::RUN_COMMANDS_STREAM)
            .await
            .unwrap();
        let mut consumer: PullConsumer = stream
            .get_consumer(subjects::RUN_COMMANDS_CONSUMER)
            .await
            .unwrap();
        consumer.info().await.unwrap().clone()
    }

    /// Waits until every command is gone from the work queue and nothing is pending.
    async fn assert_queue_drains(&self) {
        eventually("the work queue drains", || async {
            self.commands_in_stream().await == 0 && self.consumer_info().await.num_ack_pending == 0
        })
        .await;
    }

    async fn last_event(&self, run_id: RunId) -> RunEvent {
        self.events
            .last(run_id)
            .await
            .unwrap()
            .unwrap()
            .decode()
            .unwrap()
    }

    /// The run's first `n` events, in order, with their stream sequences.
    async fn events_of(&self, run_id: RunId, n: usize) -> Vec<(u64, RunEvent)> {
        let tail = self.events.tail(run_id, 0).await.unwrap();
        let stored: Vec<_> = tokio::time::timeout(WAIT, tail.take(n).collect::<Vec<_>>())
            .await
            .expect("the run has that many events");
        stored
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                (e.stream_seq, e.decode().unwrap())
            })
            .collect()
    }
}

struct Manager {
    handle: ServiceHandle,
    shutdown: CancellationToken,
}

impl Manager {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle.wait())
            .await
            .expect("the manager shuts down in time")
            .expect("the manager shuts down cleanly");
    }
}

/// How the fake executor answers dispatch requests.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Like a real executor: append run.dispatched at the given position (fenced) and
    /// answer accepted, or conflict when the append is fenced.
    Accept,
    /// Answer with this outcome and do nothing else.
    Answer(DispatchOutcome),
}

struct FakeExecutor {
    requests: Arc<Mutex<Vec<DispatchRequest>>>,
    received: mpsc::UnboundedReceiver<DispatchRequest>,
}

impl FakeExecutor {
    /// Subscribes to the dispatch subject first, then announces itself in `EXECUTORS`
    /// with `scripted` installed and every slot free.
    async fn start(env: &Env, id: &str, capacity: u32, behaviour: Behaviour) -> FakeExecutor {
        Self::start_with(env, &Record::new(id, capacity), behaviour).await
    }

    async fn start_with(env: &Env, record: &Record<'_>, behaviour: Behaviour) -> FakeExecutor {
        let id: ExecutorId = record.id.parse().unwrap();
        let mut subscription = env
            .client
            .subscribe(subjects::executor_dispatch(&id))
            .await
            .unwrap();
        env.client.flush().await.unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, received) = mpsc::unbounded_channel();
        let (client, events, executor_id) = (env.client.clone(), env.events.clone(), id);
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let request: DispatchRequest = serde_json::from_slice(&message.payload).unwrap();
                recorded.lock().unwrap().push(request.clone());
                let (client, events, executor_id, tx) = (
                    client.clone(),
                    events.clone(),
                    executor_id.clone(),
                    tx.clone(),
                );
                tokio::spawn(async move {
                    let outcome = match behaviour {
                        Behaviour::Answer(outcome) => outcome,
                        Behaviour::Accept => {
                            let mut position = request.position;
                            let dispatched = RunEventKind::RunDispatched(RunDispatched {
                                executor_id,
                                timeout_ms: request.timeout_ms,
                            });
                            match events
                                .append(request.command.run_id, &mut position, dispatched)
                                .await
                            {
                                Ok(_) => DispatchOutcome::Accepted,
                                Err(EventLogError::Fenced { .. }) => DispatchOutcome::Conflict,
                                Err(e) => panic!("append run.dispatched: {e}"),
                            }
                        }
                    };
                    let reply = serde_json::to_vec(&DispatchReply::new(outcome)).unwrap();
                    client
                        .publish(message.reply.unwrap(), reply.into())
                        .await
                        .unwrap();
                    let _ = tx.send(request);
                });
            }
        });
        record.put(env).await;
        FakeExecutor { requests, received }
    }

    /// The next dispatch request this executor answered.
    async fn next_request(&mut self) -> DispatchRequest {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("a dispatch request arrives")
            .unwrap()
    }

    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn put_presence(env: &Env, id: &str, capacity: u32) {
    Record::new(id, capacity).put(env).await;
}

/// A presence record as a test wants it.
struct Record<'a> {
    id: &'a str,
    capacity: u32,
    active: u32,
    /// `(provider, installed)`.
    providers: Vec<(&'a str, bool)>,
}

impl<'a> Record<'a> {
    fn new(id: &'a str, capacity: u32) -> Self {
        Record {
            id,
            capacity,
            active: 0,
            providers: vec![("scripted", true)],
        }
    }

    fn active(mut self, active: u32) -> Self {
        self.active = active;
        self
    }

    fn providers(mut self, providers: &[(&'a str, bool)]) -> Self {
        self.providers = providers.to_vec();
        self
    }

    async fn put(&self, env: &Env) {
        let now = chrono::Utc::now();
        let presence = ExecutorPresence {
            executor_id: self.id.parse().unwrap(),
            version: "test".into(),
            capacity: self.capacity,
            active: self.active,
            draining: false,
            providers: self
                .providers
                .iter()
                .map(|(name, installed)| ProviderAvailability {
                    name: (*name).into(),
                    installed: *installed,
                    version: None,
                    problem: None,
                    credentials_configured: None,
                    credential_variables: Vec::new(),
                })
                .collect(),
            started_at: now,
            heartbeat_at: now,
        };
        env.executors_kv()
            .await
            .put(self.id, serde_json::to_vec(&presence).unwrap().into())
            .await
            .unwrap();
    }
}

/// Polls `condition` until it holds; fails the test after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_command_is_dispatched_with_its_timeout_and_position_and_acked() {
    let env = Env::new().await;
    let mut executor = FakeExecutor::start(&env, "exec-1", 4, Behaviour::Accept).await;
    let mut config = env.config();
    config.executor_manager.worker_id = Some("mgr-test".parse().unwrap());
    config.executor_manager.default_run_timeout_ms = 4_321;
    config.executor_manager.timeout_templates = vec![TimeoutTemplate {
        provider: "scripted".into(),
        model: Some("big".into()),
        timeout_ms: 9_999,
    }];
    let manager = env.start(config).await;

    let command = env
        .queue("scripted", serde_json::json!({"timeoutMs": 1234}))
        .await;
    let request = executor.next_request().await;
    assert_eq!(request.command, command);
    assert_eq!(request.timeout_ms, 1234);
    assert_eq!(request.worker_id, "mgr-test");
    assert_eq!(request.position.next_seq, 3);
    env.assert_queue_drains().await;

    let events = env.events_of(command.run_id, 3).await;
    let types: Vec<_> = events.iter().map(|(_, e)| e.kind.type_name()).collect();
    assert_eq!(types, ["run.queued", "run.claimed", "run.dispatched"]);
    let (claimed_stream_seq, claimed) = &events[1];
    match &claimed.kind {
        RunEventKind::RunClaimed(claimed) => {
            assert_eq!(claimed.worker_id, "mgr-test");
            assert_eq!(claimed.attempt, 1);
        }
        other => panic!("expected run.claimed, got {other:?}"),
    }
    // The position handed over is exactly where the claim left the log.
    assert_eq!(request.position.last_stream_seq, *claimed_stream_seq);

    // No option and no matching template: the configured default.
    let plain = env.queue("scripted", serde_json::json!({})).await;
    let request = executor.next_request().await;
    assert_eq!(request.command.run_id, plain.run_id);
    assert_eq!(request.timeout_ms, 4_321);
    env.assert_queue_drains().await;

    manager.stop().await;
}

#[tokio::test]
async fn a_command_waits_in_the_queue_until_an_executor_appears() {
    let env = Env::new().await;
    let manager = env.start(env.config()).await;
    let command = env.queue("scripted", serde_json::json!({})).await;

    // Delivered, nakked for lack of capacity and delivered again.
    eventually("the command is redelivered", || async {
        env.consumer_info().await.delivered.consumer_sequence >= 2
    })
    .await;
    assert_eq!(env.commands_in_stream().await, 1);
    let last = env.last_event(command.run_id).await;
    assert_eq!(
        last.seq, 1,
        "no event is written while no executor has room"
    );
    assert_eq!(last.kind.type_name(), "run.queued");

    let mut executor = FakeExecutor::start(&env, "late-exec", 1, Behaviour::Accept).await;
    let request = executor.next_request().await;
    assert_eq!(request.command.run_id, command.run_id);
    assert_eq!(request.position.next_seq, 3);
    env.assert_queue_drains().await;
    assert_eq!(
        env.last_event(command.run_id).await.kind.type_name(),
        "run.dispatched"
    );

    manager.stop().await;
}

#[tokio::test]
async fn a_full_executor_passes_the_run_to_the_next_one() {
    let env = Env::new().await;
    // More free slots, so it is asked first, but it says it is full.
    let mut full = FakeExecutor::start(
        &env,
        "exec-full",
        4,
        Behaviour::Answer(DispatchOutcome::Full),
    )
    .await;
    let mut spare = FakeExecutor::start(&env, "exec-spare", 2, Behaviour::Accept).await;
    let manager = env.start(env.config()).await;

    let command = env.queue("scripted", serde_json::json!({})).await;
    assert_eq!(full.next_request().await.command.run_id, command.run_id);
    let request = spare.next_request().await;
    assert_eq!(request.command.run_id, command.run_id);
    // Both saw the same claim position: only one of them may append run.dispatched.
    assert_eq!(request.position.next_seq, 3);
    env.assert_queue_drains().await;
    assert_eq!(full.request_count(), 1);
    assert_eq!(spare.request_count(), 1);
    match env.last_event(command.run_id).await.kind {
        RunEventKind::RunDispatched(d) => assert_eq!(d.executor_id, "exec-spare"),
        other => panic!("expected run.dispatched, got {other:?}"),
    }

    manager.stop().await;
}

#[tokio::test]
async fn an_unknown_provider_fails_the_run_and_removes_the_command() {
    let env = Env::new().await;
    let executor = FakeExecutor::start(&env, "exec-1", 4, Behaviour::Accept).await;
    let manager = env.start(env.config()).await;

    let command = env.queue("gpt-9", serde_json::json!({})).await;
    eventually("the run is concluded", || async {
        env.events
            .last(command.run_id)
            .await
            .unwrap()
            .is_some_and(|e| e.header.is_terminal())
    })
    .await;
    let last = env.last_event(command.run_id).await;
    assert_eq!(last.seq, 2);
    match last.kind {
        RunEventKind::RunCompleted(completed) => {
            assert_eq!(completed.status, TerminalStatus::Failed);
            assert_eq!(completed.reason, Some(FailureReason::UnsupportedProvider));
            assert!(completed.detail.unwrap().contains("gpt-9"));
        }
        other => panic!("expected run.completed, got {other:?}"),
    }
    env.assert_queue_drains().await;
    assert_eq!(executor.request_count(), 0);

    manager.stop().await;
}

#[tokio::test]
async fn a_command_of_a_concluded_run_is_dropped_without_dispatch() {
    let env = Env::new().await;
    let mut executor = FakeExecutor::start(&env, "exec-1", 4, Behaviour::Accept).await;

    // Stopped while queued, before the manager saw it.
    let stopped = RunCommand {
        run_id: uuid::Uuid::now_v7(),
        provider: "scripted".into(),
        model: None,
        prompt: "never runs".into(),
        app_id: None,
        execution_profile: None,
        provider_options: serde_json::json!({}),
        credential_env: Vec::new(),
        timeout_ms: None,
        conversation_id: None,
        preferred_executor: None,
        created_at: chrono::Utc::now(),
    };
    let mut position = EventPosition::EMPTY;
    for kind in [
        RunEventKind::RunQueued(RunQueued {
            provider: "scripted".into(),
            model: None,
            app_id: None,
        }),
        RunEventKind::RunCompleted(RunCompleted::failed(FailureReason::Stopped, "stopped")),
    ] {
        env.events
            .append(stopped.run_id, &mut position, kind)
            .await
            .unwrap();
    }
    env.publish_command(
        "scripted",
        &stopped.run_id.to_string(),
        serde_json::to_vec(&stopped).unwrap(),
    )
    .await;
    let manager = env.start(env.config()).await;
    // A live run queued after it proves the manager got past the stopped one.
    let live = env.queue("scripted", serde_json::json!({})).await;
    assert_eq!(executor.next_request().await.command.run_id, live.run_id);
    env.assert_queue_drains().await;

    assert_eq!(executor.request_count(), 1);
    let last = env.last_event(stopped.run_id).await;
    assert_eq!(last.seq, 2);
    assert!(last.is_terminal());

    manager.stop().await;
}

#[tokio::test]
async fn a_garbage_command_is_terminated_and_the_worker_goes_on() {
    let env = Env::new().await;
    let mut executor = FakeExecutor::start(&env, "exec-1", 4, Behaviour::Accept).await;
    let mut config = env.config();
    // One loop, one command at a time: the valid command is only reached if the
    // garbage before it did not wedge the worker.
    config.executor_manager.workers = 1;
    config.executor_manager.max_in_flight = 1;
    config.executor_manager.batch_size = 1;
    env.publish_command("scripted", "garbage-1", b"{not json".to_vec())
        .await;
    env.publish_command("scripted", "garbage-2", br#"{"runId": 5}"#.to_vec())
        .await;
    let manager = env.start(config).await;
    let command = env.queue("scripted", serde_json::json!({})).await;

    assert_eq!(executor.next_request().await.command.run_id, command.run_id);
    env.assert_queue_drains().await;
    assert_eq!(executor.request_count(), 1);

    manager.stop().await;
}

#[tokio::test]
async fn two_managers_dispatch_every_run_exactly_once() {
    let env = Env::new().await;
    let a = FakeExecutor::start(&env, "exec-a", 100, Behaviour::Accept).await;
    let b = FakeExecutor::start(&env, "exec-b", 100, Behaviour::Accept).await;
    let mut config = env.config();
    config.executor_manager.max_in_flight = 8;
    config.executor_manager.batch_size = 4;
    let first = env.start(config.clone()).await;
    let second = env.start(config).await;

    let mut run_ids = Vec::new();
    for _ in 0..100 {
        run_ids.push(env.queue("scripted", serde_json::json!({})).await.run_id);
    }
    eventually("every run is dispatched", || async {
        a.request_count() + b.request_count() >= 100
    })
    .await;
    env.assert_queue_drains().await;

    let mut per_run: HashMap<RunId, usize> = HashMap::new();
    let mut managers = std::collections::HashSet::new();
    for request in a
        .requests
        .lock()
        .unwrap()
        .iter()
        .chain(b.requests.lock().unwrap().iter())
    {
        *per_run.entry(request.command.run_id).or_default() += 1;
        managers.insert(request.worker_id.clone());
    }
    assert_eq!(per_run.len(), 100);
    assert!(per_run.values().all(|n| *n == 1), "{per_run:?}");
    for run_id in run_ids {
        let last = env.last_event(run_id).await;
        assert_eq!(last.kind.type_name(), "run.dispatched", "run {run_id}");
        assert_eq!(last.seq, 3, "run {run_id} was claimed exactly once");
    }
    assert!(!managers.is_empty());

    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn workers_survive_a_nats_restart() {
    let mut env = Env::new().await;
    let mut executor = FakeExecutor::start(&env, "exec-1", 4, Behaviour::Accept).await;
    let manager = env.start(env.config()).await;
    let before = env.queue("scripted", serde_json::json!({})).await;
    assert_eq!(executor.next_request().await.command.run_id, before.run_id);
    env.assert_queue_drains().await;

    env.server.restart().await.unwrap();
    // The presence bucket lives in memory: it may be gone, and the manager
    // re-provisions it. Announce the executor again once it is there.
    eventually("the presence bucket is back", || async {
        env.js
            .get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .is_ok()
    })
    .await;
    put_presence(&env, "exec-1", 4).await;

    let after = env.queue("scripted", serde_json::json!({})).await;
    assert_eq!(executor.next_request().await.command.run_id, after.run_id);
    env.assert_queue_drains().await;

    manager.stop().await;
}

#[tokio::test]
async fn health_endpoints_answer_and_shutdown_is_graceful() {
    let env = Env::new().await;
    let manager = env.start(env.config()).await;
    let addr = manager.handle.http_addr.expect("the manager serves HTTP");
    let http = reqwest::Client::new();
    for (path, status) in [("healthz", "ok"), ("readyz", "ready")] {
        let response = http
            .get(format!("http://{addr}/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], status, "/{path}");
    }
    manager.stop().await;
    assert!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err(),
        "the listener is closed after shutdown"
    );
}

/// The executor a run was dispatched to, from its `run.dispatched`.
async fn dispatched_to(env: &Env, run_id: RunId) -> String {
    match env.last_event(run_id).await.kind {
        RunEventKind::RunDispatched(d) => d.executor_id.into_string(),
        other => panic!("expected run.dispatched, got {other:?}"),
    }
}

#[tokio::test]
async fn a_follow_up_goes_to_the_conversations_executor_while_it_has_room() {
    let env = Env::new().await;
    // Without affinity the roomier executor is always asked first.
    let mut home = FakeExecutor::start(&env, "exec-home", 1, Behaviour::Accept).await;
    let mut big = FakeExecutor::start(&env, "exec-big", 10, Behaviour::Accept).await;
    let manager = env.start(env.config()).await;

    let first = env
        .queue_follow_up("scripted", serde_json::json!({}), Some("exec-home"))
        .await;
    let request = home.next_request().await;
    assert_eq!(request.command.run_id, first.run_id);
    assert_eq!(
        request.command.preferred_executor.as_deref(),
        Some("exec-home")
    );
    env.assert_queue_drains().await;
    assert_eq!(dispatched_to(&env, first.run_id).await, "exec-home");

    // Its only slot is taken by that run now: the next follow-up goes elsewhere (where
    // the executor starts a fresh provider session).
    let second = env
        .queue_follow_up("scripted", serde_json::json!({}), Some("exec-home"))
        .await;
    assert_eq!(big.next_request().await.command.run_id, second.run_id);
    env.assert_queue_drains().await;
    assert_eq!(dispatched_to(&env, second.run_id).await, "exec-big");

    // A preferred executor that is not (or no longer) present changes nothing.
    let third = env
        .queue_follow_up("scripted", serde_json::json!({}), Some("exec-gone"))
        .await;
    assert_eq!(big.next_request().await.command.run_id, third.run_id);
    env.assert_queue_drains().await;

    assert_eq!(home.request_count(), 1);
    assert_eq!(big.request_count(), 2);

    manager.stop().await;
}

#[tokio::test]
async fn a_run_fails_binary_missing_when_no_live_executor_has_its_provider() {
    let env = Env::new().await;
    let claude = Record::new("exec-claude", 4).providers(&[("claude-code", true)]);
    let claude = FakeExecutor::start_with(&env, &claude, Behaviour::Accept).await;
    let other = Record::new("exec-other", 4).providers(&[("opencode", true), ("scripted", false)]);
    let other = FakeExecutor::start_with(&env, &other, Behaviour::Accept).await;
    let mut config = env.config();
    config.executor_manager.binary_missing_grace_ms = 4_000;
    let manager = env.start(config).await;

    let command = env.queue("scripted", serde_json::json!({})).await;
    // Right after start-up the manager gives executors time to show up.
    env.deliveries(2).await;
    assert_eq!(
        env.last_event(command.run_id).await.kind.type_name(),
        "run.queued",
        "nothing is concluded within the grace"
    );

    eventually("the run is concluded", || async {
        env.events
            .last(command.run_id)
            .await
            .unwrap()
            .is_some_and(|e| e.header.is_terminal())
    })
    .await;
    let last = env.last_event(command.run_id).await;
    assert_eq!(last.seq, 2, "concluded without a claim");
    match last.kind {
        RunEventKind::RunCompleted(completed) => {
            assert_eq!(completed.status, TerminalStatus::Failed);
            assert_eq!(completed.reason, Some(FailureReason::BinaryMissing));
            assert_eq!(
                completed.detail.as_deref(),
                Some(
                    "scripted is installed on none of the 2 live executors (exec-claude, exec-other)"
                )
            );
        }
        other => panic!("expected run.completed, got {other:?}"),
    }
    // The command is gone (terminated), and nobody was asked to run it.
    env.assert_queue_drains().await;
    assert_eq!(claude.request_count() + other.request_count(), 0);

    manager.stop().await;
}

#[tokio::test]
async fn a_run_waits_while_no_executor_is_alive_or_the_ones_with_its_provider_are_full() {
    let env = Env::new().await;
    let mut config = env.config();
    config.executor_manager.binary_missing_grace_ms = 0;
    let manager = env.start(config).await;
    let command = env.queue("scripted", serde_json::json!({})).await;

    // No executor at all: the run waits, however often it comes round.
    env.deliveries(3).await;
    assert_eq!(env.last_event(command.run_id).await.seq, 1);

    // One executor has the provider but no room, another has room but not the
    // provider: still waiting. (The full one is announced first, so the manager never
    // sees the other one alone.)
    Record::new("exec-full", 1).active(1).put(&env).await;
    Record::new("exec-other", 4)
        .providers(&[("claude-code", true)])
        .put(&env)
        .await;
    let seen = env.consumer_info().await.delivered.consumer_sequence;
    env.deliveries(seen + 3).await;
    let last = env.last_event(command.run_id).await;
    assert_eq!(last.kind.type_name(), "run.queued");
    assert_eq!(env.commands_in_stream().await, 1);

    // The executor with the provider leaves: nothing can run it any more.
    env.executors_kv().await.delete("exec-full").await.unwrap();
    eventually("the run is concluded", || async {
        env.events
            .last(command.run_id)
            .await
            .unwrap()
            .is_some_and(|e| e.header.is_terminal())
    })
    .await;
    match env.last_event(command.run_id).await.kind {
        RunEventKind::RunCompleted(completed) => {
            assert_eq!(completed.reason, Some(FailureReason::BinaryMissing));
            assert!(
                completed
                    .detail
                    .unwrap()
                    .contains("none of the 1 live executor (exec-other)")
            );
        }
        other => panic!("expected run.completed, got {other:?}"),
    }
    env.assert_queue_drains().await;

    manager.stop().await;
}
