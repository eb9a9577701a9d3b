//! A real nats-server and an in-process executor per test, plus helpers that talk to
//! it the way the executor-manager and control-plane do: NATS requests and the run's
//! event log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use switchyard_contracts::control::{ControlReply, ControlRequest};
use switchyard_contracts::dispatch::{DispatchReply, DispatchRequest, EventPosition};
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::{ExecutorId, RunCommand, RunEvent, RunEventKind, RunId, subjects};
use switchyard_executor::{Config, ExecutorSettings};
use switchyard_platform::config::NatsConfig;
use switchyard_platform::events::EventLog;
use switchyard_platform::service::ServiceHandle;
use switchyard_test_support::NatsServer;
use tokio_util::sync::CancellationToken;

/// Bound on anything a test waits for; generous for a loaded 2-core machine.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Harness {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) log: EventLog,
    pub(crate) executor_id: ExecutorId,
    pub(crate) http: SocketAddr,
    shutdown: CancellationToken,
    /// The second shutdown signal: stop the runs still draining at once.
    pub(crate) immediate: CancellationToken,
    handle: Option<ServiceHandle>,
    // Dropped last: kills the server.
    _nats: NatsServer,
}

impl Harness {
    pub(crate) async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut ExecutorSettings)) -> Harness {
        switchyard_test_support::init_tracing();
        let nats = NatsServer::start().await.expect("start nats-server");
        let workspaces = std::env::temp_dir().join("switchyard-executor-tests");
        let executor_id: ExecutorId = format!(
            "exec-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
        .parse()
        .unwrap();
        let mut settings = ExecutorSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            executor_id: Some(executor_id.clone()),
            workspace_root: workspaces,
            heartbeat_ms: 500,
            stop_grace_ms: 2_000,
            ..ExecutorSettings::default()
        };
        adjust(&mut settings);
        let config = Config {
            nats: NatsConfig {
                url: nats.url(),
                ..Default::default()
            },
            executor: settings,
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let immediate = CancellationToken::new();
        let signals = switchyard_executor::Signals {
            graceful: shutdown.clone(),
            immediate: immediate.clone(),
        };
        let handle = switchyard_executor::start(config, signals)
            .await
            .expect("start the executor");
        let http = handle.http_addr.expect("the executor serves HTTP");
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let log = EventLog::open(js.clone()).await.unwrap();
        Harness {
            client,
            js,
            log,
            executor_id,
            http,
            shutdown,
            immediate,
            handle: Some(handle),
            _nats: nats,
        }
    }

    /// Cancels the shutdown token and waits for a clean stop.
    pub(crate) async fn shutdown(&mut self) {
        self.begin_shutdown();
        self.stopped().await;
    }

    /// Cancels the shutdown token (the executor begins to drain).
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the executor's service handle completes, cleanly.
    pub(crate) async fn stopped(&mut self) {
        let handle = self.handle.take().expect("not shut down yet");
        tokio::time::timeout(WAIT, handle.wait())
            .await
            .expect("executor shut down in time")
            .expect("executor shut down cleanly");
    }

    /// Whether the service handle has completed (without consuming it).
    pub(crate) fn is_stopped(&self) -> bool {
        self.handle.as_ref().is_none_or(ServiceHandle::is_finished)
    }

    /// Appends what another writer (the control-plane, a manager) would.
    pub(crate) async fn append(
        &self,
        run_id: RunId,
        position: &mut EventPosition,
        kind: RunEventKind,
    ) {
        self.log.append(run_id, position, kind).await.unwrap();
    }

    pub(crate) async fn dispatch(&self, request: &DispatchRequest) -> DispatchReply {
        self.dispatch_raw(serde_json::to_vec(request).unwrap())
            .await
    }

    pub(crate) async fn dispatch_raw(&self, payload: Vec<u8>) -> DispatchReply {
        let reply = self
            .client
            .request(
                subjects::executor_dispatch(&self.executor_id),
                payload.into(),
            )
            .await
            .expect("the executor answers dispatch requests");
        serde_json::from_slice(&reply.payload).expect("a dispatch reply")
    }

    pub(crate) async fn control(&self, run_id: RunId, request: &ControlRequest) -> ControlReply {
        self.control_raw(run_id, serde_json::to_vec(request).unwrap())
            .await
            .expect("the owning executor answers control requests")
    }

    /// `Err` when nobody answers (no executor owns the run).
    pub(crate) async fn control_raw(
        &self,
        run_id: RunId,
        payload: Vec<u8>,
    ) -> Result<ControlReply, async_nats::RequestError> {
        let reply = self
            .client
            .request(subjects::run_control(&run_id), payload.into())
            .await?;
        Ok(serde_json::from_slice(&reply.payload).expect("a control reply"))
    }

    /// Every event of the run up to and including `run.completed`.
    pub(crate) async fn events_until_terminal(&self, run_id: RunId) -> Vec<RunEvent> {
        let mut events = Vec::new();
        self.wait_for_event(run_id, |event| {
            events.push(event.clone());
            event.is_terminal()
        })
        .await;
        events
    }

    /// Reads the run's events from the start until `matches` says stop; returns that event.
    pub(crate) async fn wait_for_event(
        &self,
        run_id: RunId,
        mut matches: impl FnMut(&RunEvent) -> bool,
    ) -> RunEvent {
        let read = async {
            let mut tail = Box::pin(self.log.tail(run_id, 0).await.unwrap());
            while let Some(stored) = tail.next().await {
                let event = stored.unwrap().decode().unwrap();
                if matches(&event) {
                    return event;
                }
            }
            panic!("the event tail of {run_id} ended");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for an event of run {run_id}"))
    }

    /// The presence record, read from the KV bucket.
    pub(crate) async fn presence(&self) -> Option<ExecutorPresence> {
        let kv = self
            .js
            .get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .unwrap();
        kv.get(self.executor_id.as_str())
            .await
            .unwrap()
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }

    /// Waits (watching the KV key) until the presence record satisfies `matches`.
    pub(crate) async fn wait_for_presence(
        &self,
        matches: impl Fn(&ExecutorPresence) -> bool,
    ) -> ExecutorPresence {
        let kv = self
            .js
            .get_key_value(subjects::EXECUTORS_BUCKET)
            .await
            .unwrap();
        let watch = async {
            let mut entries = kv
                .watch_with_history(self.executor_id.as_str())
                .await
                .unwrap();
            while let Some(entry) = entries.next().await {
                let entry = entry.unwrap();
                if let Ok(record) = serde_json::from_slice::<ExecutorPresence>(&entry.value)
                    && matches(&record)
                {
                    return record;
                }
            }
            panic!("presence watch ended");
        };
        tokio::time::timeout(WAIT, watch)
            .await
            .expect("presence record reached the expected state")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.immediate.cancel();
    }
}

/// A scripted run command.
/// The `run.queued` of a scripted run.
pub(crate) fn queued() -> RunEventKind {
    RunEventKind::RunQueued(RunQueued {
        provider: "scripted".into(),
        model: None,
        app_id: None,
    })
}

pub(crate) fn command(script: Value) -> RunCommand {
    RunCommand {
        run_id: RunId::now_v7(),
        provider: "scripted".to_owned(),
        model: None,
        prompt: "test".to_owned(),
        app_id: None,
        execution_profile: None,
        provider_options: json!({ "script": script }),
        credential_env: Vec::new(),
        timeout_ms: None,
        conversation_id: None,
        preferred_executor: None,
        created_at: chrono::Utc::now(),
    }
}

pub(crate) fn dispatch_request(
    command: RunCommand,
    position: EventPosition,
    timeout_ms: u64,
) -> DispatchRequest {
    DispatchRequest {
        command,
        timeout_ms,
        worker_id: "test-worker".parse().unwrap(),
        position,
    }
}

/// A dispatch of a fresh scripted run at the position of a run without events.
pub(crate) fn fresh_dispatch(script: Value) -> DispatchRequest {
    dispatch_request(command(script), EventPosition::EMPTY, 60_000)
}

pub(crate) fn types(events: &[RunEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

pub(crate) fn completion(events: &[RunEvent]) -> switchyard_contracts::event::RunCompleted {
    match &events.last().expect("at least one event").kind {
        RunEventKind::RunCompleted(completed) => completed.clone(),
        other => panic!("last event is {}, not run.completed", other.type_name()),
    }
}

pub(crate) fn assert_contiguous(events: &[RunEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "seq must be 1..n without gaps");
}
