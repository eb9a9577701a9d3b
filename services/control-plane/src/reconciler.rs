//! Reconciliation: no run stays non-terminal without a live owner.
//!
//! A pass runs at start-up and then every `control_plane.reconcile_interval_ms`. It does
//! two things, each recorded as events in the run's own stream so clients see why:
//!
//! * **Lost executors.** Every run the projection shows as `dispatched`, `running` or
//!   `waiting_for_human` whose executor has no live presence record in `EXECUTORS`
//!   (no key, a `heartbeatAt` older than the bucket's TTL, or a record of a *newer*
//!   process that took the same id after the run was dispatched) is concluded with
//!   `run.completed {status: failed, reason: executor_lost}` — appended at the
//!   position read from the run's log, so if anyone moved the run on meanwhile the
//!   append is fenced and the run is left for the next pass. Two vetoes keep a live
//!   executor's runs alive: the presence bucket must be at least one TTL old (after a
//!   NATS restart the in-memory bucket starts empty and executors need a TTL to
//!   heartbeat again), and nobody may answer on the run's control subject (an
//!   executor that answers is alive whatever its presence record says — a clock
//!   skew, a broken bucket). A draining executor (graceful shutdown) still heartbeats,
//!   so its runs are left to finish. An executor that was only partitioned learns
//!   about the conclusion from its next append, which is fenced: it stops its provider.
//!   A run whose last event is its `run.dispatched` never started (the executor
//!   appends `run.started` before it spawns the provider): it is queued again instead,
//!   like a lost command below, so another executor runs it; the lost executor's late
//!   `run.started` is fenced by the diagnostic at its position.
//! * **Lost commands.** A run still `queued` or `claimed` after `stuck_after`
//!   (default 60 s: several of the work queue's ack waits) that has no outbox entry, no
//!   command left in `RUN_COMMANDS` and no `run.dispatched` in its history since its
//!   last `run.queued` can never be dispatched: its command was acknowledged or lost without an executor taking
//!   it. Its command is published again from the `runs` row with
//!   `Nats-Msg-Id = <run_id>:retry:<n>` (n = the `seq` of the diagnostic below, so
//!   two control-planes reconciling the same state deduplicate), after a `diagnostic`
//!   event saying so and a second `run.queued` — the manager only dispatches a run
//!   whose last event is `run.queued` or `run.claimed`. Looking for lost commands
//!   reads the whole work queue, so it happens at most every `stuck_after / 4`.
//!
//! A run concluded here may still have a provider process on a partitioned executor
//! until that provider's next event; the fence guarantees the event is never stored.

use crate::config::ControlPlaneSettings;
use crate::store::{self, StoreError};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::dispatch::EventPosition;
use switchyard_contracts::event::{
    Diagnostic, DiagnosticLevel, RunCompleted, RunEventHeader, RunQueued,
};
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::{ExecutorId, FailureReason, RunEvent, RunEventKind, RunId, subjects};
use switchyard_platform::events::{EventLog, EventLogError, StoredEvent};
use switchyard_platform::nats::{self, Resources};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// Rows read per query.
const BATCH: i64 = 500;
/// Runs of lost executors examined per pass; the next pass takes the rest.
const MAX_SUSPECTS: usize = 5_000;
/// Waiting runs examined per pass for a lost command; the next pass takes the rest.
const MAX_WAITING: usize = 10_000;
/// Runs of lost executors examined at once (each may wait for a probe to time out).
const PARALLEL: usize = 64;
/// How long an executor has to answer the liveness probe on a run's control subject.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most `RUN_COMMANDS` messages read per pass to find the commands still queued.
const MAX_COMMAND_SCAN: usize = 50_000;
/// Most events of one run read to learn whether it was ever dispatched.
const MAX_HISTORY_SCAN: usize = 10_000;
/// Bound on reading the presence bucket.
const PRESENCE_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest interval between passes (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Presence TTL when the bucket definition has none (it should: see nats/kv).
const FALLBACK_TTL: Duration = Duration::from_secs(15);
/// The default bound on waiting for a dispatch: six times the `executor-manager`
/// consumer's 10 s ack wait, so longer than any dispatch attempt (at most half the ack
/// wait, see `executor_manager.dispatch_timeout_ms`) and any redelivery of an
/// unacknowledged command.
pub(crate) const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(60);

/// Liveness probe sent on `runs.control.<run_id>`. No executor understands it, and that
/// is the point: the owner answers `invalid`, which proves it is there, and no action is
/// taken on the run.
const PROBE_PAYLOAD: &[u8] = br#"{"action":"liveness_probe"}"#;

/// How a pass judges and what it waits for.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// Time between passes.
    pub interval: Duration,
    /// A presence record whose `heartbeatAt` is older than this is dead (the
    /// `EXECUTORS` bucket's max age).
    pub presence_ttl: Duration,
    /// How old the presence bucket must be before an executor's absence from it means
    /// anything (the bucket is in memory: a NATS restart empties it).
    pub presence_settle: Duration,
    /// How long a run may wait for a dispatch before a lost command is suspected.
    pub stuck_after: Duration,
}

impl ReconcileSettings {
    pub(crate) fn from_control_plane(settings: &ControlPlaneSettings) -> Self {
        let ttl = presence_ttl();
        Self {
            interval: Duration::from_millis(settings.reconcile_interval_ms).max(MIN_INTERVAL),
            presence_ttl: ttl,
            presence_settle: ttl,
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }
}

/// The `EXECUTORS` bucket's max age (`nats/kv/EXECUTORS.json`).
pub(crate) fn presence_ttl() -> Duration {
    serde_json::from_str::<serde_json::Value>(nats::EXECUTORS_KV_JSON)
        .ok()
        .and_then(|definition| definition["max_age"].as_u64())
        .map(Duration::from_nanos)
        .filter(|ttl| !ttl.is_zero())
        .unwrap_or(FALLBACK_TTL)
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Runs concluded `executor_lost`.
    pub concluded: Vec<RunId>,
    /// Runs whose command was published again.
    pub requeued: Vec<RunId>,
    /// Runs of lost executors that had not started, queued and published again.
    pub redispatched: Vec<RunId>,
    /// Recoveries skipped because the run's log moved on while deciding.
    pub fenced: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Events(#[from] EventLogError),
    #[error("JetStream request failed: {0}")]
    Nats(String),
    #[error("could not serialise the run command: {0}")]
    Encode(#[source] serde_json::Error),
}

fn nats_error(e: impl std::fmt::Display) -> ReconcileError {
    ReconcileError::Nats(e.to_string())
}

/// Why a run's owner counts as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gone {
    /// No record, or a record that stopped heartbeating.
    Silent,
    /// A process started with the same id after the run was dispatched to the old one.
    Restarted,
}

/// Presence as far as a pass can judge it.
enum Presence {
    /// Too early or impossible to tell who is alive; nothing is concluded.
    Unknown,
    Known(HashMap<ExecutorId, ExecutorPresence>),
}

pub struct Reconciler {
    client: async_nats::Client,
    js: jetstream::Context,
    pool: PgPool,
    events: EventLog,
    settings: ReconcileSettings,
    last_waiting_check: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Reconciler {
    pub async fn open(
        client: async_nats::Client,
        js: jetstream::Context,
        pool: PgPool,
        settings: ReconcileSettings,
    ) -> Result<Self, ReconcileError> {
        let events = EventLog::open(js.clone()).await?;
        Ok(Self {
            client,
            js,
            pool,
            events,
            settings,
            last_waiting_check: std::sync::Mutex::new(None),
        })
    }

    /// One pass over both kinds of orphans. Failures are logged; the next pass retries.
    pub async fn pass(&self) -> PassReport {
        let mut report = PassReport::default();
        if let Err(e) = self.conclude_lost(&mut report).await {
            tracing::warn!(error = %e, "reconciling runs of lost executors failed; retrying next pass");
        }
        if let Err(e) = self.requeue_waiting(&mut report).await {
            tracing::warn!(error = %e, "reconciling runs waiting for a dispatch failed; retrying next pass");
        }
        if !report.concluded.is_empty()
            || !report.requeued.is_empty()
            || !report.redispatched.is_empty()
        {
            tracing::info!(
                concluded = report.concluded.len(),
                requeued = report.requeued.len(),
                redispatched = report.redispatched.len(),
                fenced = report.fenced,
                "reconciliation pass recovered runs"
            );
        }
        report
    }

    async fn conclude_lost(&self, report: &mut PassReport) -> Result<(), ReconcileError> {
        let executors = store::reconcile::owning_executors(&self.pool).await?;
        if executors.is_empty() {
            return Ok(());
        }
        let Presence::Known(presence) = self.presence().await? else {
            return Ok(());
        };
        let now = Utc::now();
        let ttl = self.settings.presence_ttl;
        let mut suspects = Vec::new();
        for executor_id in executors {
            let record = presence.get(&executor_id).cloned();
            // A silent executor lost all its runs; a live one at most those of an
            // earlier process under its id (and the ones not started yet are dated by
            // their dispatch in `conclude_one`).
            let started_before = match &record {
                Some(record) if !is_silent(record, now, ttl) => Some(record.started_at),
                _ => None,
            };
            let mut after = None;
            loop {
                let page = store::reconcile::owned_runs(
                    &self.pool,
                    &executor_id,
                    started_before,
                    after,
                    BATCH,
                )
                .await?;
                let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= BATCH;
                after = page.last().map(|run| run.run_id);
                for run in page {
                    let verdict = judge(record.as_ref(), run.started_at, now, ttl);
                    suspects.push((run, record.clone(), verdict));
                }
                if !full || suspects.len() >= MAX_SUSPECTS {
                    break;
                }
            }
        }
        // Concurrently: a frozen executor's runs each cost a probe timeout.
        let outcomes: Vec<_> = futures::stream::iter(
            suspects
                .into_iter()
                .map(|(run, record, verdict)| self.conclude_traced(run, record, verdict, now)),
        )
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
        for (run_id, outcome) in outcomes {
            match outcome {
                Ok(Concluded::Yes) => report.concluded.push(run_id),
                Ok(Concluded::Requeued) => report.redispatched.push(run_id),
                Ok(Concluded::Fenced) => report.fenced += 1,
                Ok(Concluded::No) | Err(_) => {}
            }
        }
        Ok(())
    }

    async fn conclude_traced(
        &self,
        run: store::reconcile::OwnedRun,
        record: Option<ExecutorPresence>,
        verdict: Option<Gone>,
        now: DateTime<Utc>,
    ) -> (RunId, Result<Concluded, ReconcileError>) {
        let span = tracing::info_span!(
            "reconcile_lost",
            run_id = %run.run_id,
            executor_id = %run.executor_id,
            status = run.status.as_str()
        );
        let outcome = self
            .conclude_one(&run, record.as_ref(), verdict, now)
            .instrument(span.clone())
            .await;
        if let Err(e) = &outcome {
            span.in_scope(|| tracing::warn!(error = %e, "could not reconcile the run"));
        }
        (run.run_id, outcome)
    }

    async fn conclude_one(
        &self,
        run: &store::reconcile::OwnedRun,
        record: Option<&ExecutorPresence>,
        verdict: Option<Gone>,
        now: DateTime<Utc>,
    ) -> Result<Concluded, ReconcileError> {
        let run_id = run.run_id;
        let Some(last) = self.events.last(run_id).await? else {
            tracing::warn!(%run_id, "the run has no events left; nothing to conclude");
            return Ok(Concluded::No);
        };
        if last.header.is_terminal() {
            // The projection is behind the log.
            return Ok(Concluded::No);
        }
        // Not started yet in the projection: when the last event is the dispatch itself,
        // its time (the executor's clock, like the record's) dates the ownership.
        let verdict = match (verdict, run.started_at) {
            (Some(verdict), _) => verdict,
            (None, Some(_)) => return Ok(Concluded::No),
            (None, None) => {
                let dispatched_at = dispatched_at(&last);
                match judge(record, dispatched_at, now, self.settings.presence_ttl) {
                    Some(verdict) if dispatched_at.is_some() => verdict,
                    _ => return Ok(Concluded::No),
                }
            }
        };
        match self.probe(run_id).await {
            Probe::Answered => {
                tracing::warn!(%run_id, executor_id = %run.executor_id, "the executor has no live presence record but answers for the run; leaving it alone");
                return Ok(Concluded::No);
            }
            Probe::Unknown(e) => {
                tracing::debug!(%run_id, error = %e, "liveness probe failed; deciding next pass");
                return Ok(Concluded::No);
            }
            Probe::Silent => {}
        }
        let gone = match verdict {
            Gone::Silent => "stopped heartbeating",
            Gone::Restarted => "restarted (a new process took its id)",
        };
        // Nothing ran yet: the executor appends `run.started` right after accepting,
        // before the provider is spawned. Fenced at this position, its late
        // `run.started` can never be stored, so another executor may take the run.
        if last.header.event_type == "run.dispatched" {
            return self.redispatch(run, &last, gone).await;
        }
        let detail = format!(
            "executor {} {gone} while the run was {}",
            run.executor_id,
            run.status.as_str()
        );
        let mut position = last.next_position();
        let completed = RunCompleted::failed(FailureReason::ExecutorLost, detail.clone());
        match self
            .events
            .append(run_id, &mut position, RunEventKind::RunCompleted(completed))
            .await
        {
            Ok(_) => {
                tracing::info!(%run_id, executor_id = %run.executor_id, detail, "run concluded: executor lost");
                Ok(Concluded::Yes)
            }
            Err(EventLogError::Fenced { .. }) => {
                tracing::info!(%run_id, "the run moved on while concluding it; checking again next pass");
                Ok(Concluded::Fenced)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Queues a run whose executor was lost before the run started and publishes its
    /// command again.
    async fn redispatch(
        &self,
        run: &store::reconcile::OwnedRun,
        last: &StoredEvent,
        gone: &str,
    ) -> Result<Concluded, ReconcileError> {
        let Some(row) = store::reconcile::command_of(&self.pool, run.run_id).await? else {
            tracing::warn!(run_id = %run.run_id, "the run has no row; cannot dispatch it again");
            return Ok(Concluded::No);
        };
        let message = format!(
            "executor {} {gone} after the run was dispatched to it and before it started; \
             dispatching the run again",
            run.executor_id
        );
        self.requeue(&row, last.next_position(), message).await
    }

    /// Who is alive, or [`Presence::Unknown`] when absence would prove nothing.
    async fn presence(&self) -> Result<Presence, ReconcileError> {
        let kv = match self.js.get_key_value(subjects::EXECUTORS_BUCKET).await {
            Ok(kv) => kv,
            Err(e) => {
                // In memory, so a NATS restart removes it; executors recreate it only
                // at start-up. Recreate it so that they can heartbeat again.
                tracing::info!(error = %e, "the EXECUTORS bucket is missing; creating it");
                nats::provision(
                    &self.js,
                    Resources {
                        executors_kv: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(nats_error)?;
                return Ok(Presence::Unknown);
            }
        };
        let created = self.bucket_created().await?;
        let age = Utc::now().signed_duration_since(created);
        if age.to_std().unwrap_or(Duration::ZERO) < self.settings.presence_settle {
            tracing::debug!(
                age_ms = age.num_milliseconds(),
                "the presence bucket is younger than its TTL; not judging executors yet"
            );
            return Ok(Presence::Unknown);
        }
        let read = async {
            let mut keys = kv.keys().await.map_err(nats_error)?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                names.push(key.map_err(nats_error)?);
            }
            let mut records = HashMap::new();
            for key in names {
                let Some(value) = kv.get(&key).await.map_err(nats_error)? else {
                    continue;
                };
                match serde_json::from_slice::<ExecutorPresence>(&value) {
                    Ok(record) if record.executor_id == key.as_str() => {
                        records.insert(record.executor_id.clone(), record);
                    }
                    Ok(_) => {
                        tracing::debug!(key, "presence record names another executor; ignored");
                    }
                    Err(e) => {
                        tracing::debug!(key, error = %e, "presence record does not decode; ignored");
                    }
                }
            }
            Ok::<_, ReconcileError>(records)
        };
        match tokio::time::timeout(PRESENCE_READ_TIMEOUT, read).await {
            Ok(records) => Ok(Presence::Known(records?)),
            Err(_) => Err(ReconcileError::Nats(
                "reading the presence bucket timed out".to_owned(),
            )),
        }
    }

    /// When the presence bucket's stream was created (server clock). Asked through the
    /// raw API: async-nats' typed date depends on a crate feature.
    async fn bucket_created(&self) -> Result<DateTime<Utc>, ReconcileError> {
        let subject = format!("STREAM.INFO.KV_{}", subjects::EXECUTORS_BUCKET);
        let info: serde_json::Value = self
            .js
            .request(subject, &serde_json::json!({}))
            .await
            .map_err(nats_error)?;
        info["created"]
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|created| created.with_timezone(&Utc))
            .ok_or_else(|| {
                ReconcileError::Nats(format!(
                    "the presence bucket's stream info has no creation time: {}",
                    info.get("error").unwrap_or(&serde_json::Value::Null)
                ))
            })
    }

    /// Whether anyone answers on the run's control subject.
    async fn probe(&self, run_id: RunId) -> Probe {
        let request = async_nats::Request::new()
            .payload(Bytes::from_static(PROBE_PAYLOAD))
            .timeout(Some(PROBE_TIMEOUT));
        match self
            .client
            .send_request(subjects::run_control(&run_id), request)
            .await
        {
            Ok(_) => Probe::Answered,
            Err(e) => match e.kind() {
                async_nats::RequestErrorKind::NoResponders => Probe::Silent,
                // Subscribed but unable to answer for seconds while its presence is
                // gone too: it is not doing its job.
                async_nats::RequestErrorKind::TimedOut => Probe::Silent,
                _ => Probe::Unknown(e.to_string()),
            },
        }
    }

    async fn requeue_waiting(&self, report: &mut PassReport) -> Result<(), ReconcileError> {
        if !self.waiting_check_due() {
            return Ok(());
        }
        let idle_ms =
            store::to_bigint(u64::try_from(self.settings.stuck_after.as_millis()).unwrap_or(0));
        let mut waiting = Vec::new();
        let mut after = None;
        loop {
            let page = store::reconcile::waiting_runs(&self.pool, idle_ms, after, BATCH).await?;
            let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= BATCH;
            after = page.last().map(|run| run.run_id);
            waiting.extend(page);
            if !full || waiting.len() >= MAX_WAITING {
                break;
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let queued = self.queued_commands().await?;
        for run in waiting {
            if queued.contains(&run.run_id) {
                continue;
            }
            let span = tracing::info_span!("reconcile_waiting", run_id = %run.run_id, status = run.status.as_str());
            match self.requeue_one(&run).instrument(span.clone()).await {
                Ok(Concluded::Requeued) => report.requeued.push(run.run_id),
                Ok(Concluded::Fenced) => report.fenced += 1,
                Ok(Concluded::No | Concluded::Yes) => {}
                Err(e) => {
                    span.in_scope(
                        || tracing::warn!(error = %e, "could not republish the run's command"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Looking for lost commands reads the whole work queue, and a backlog of runs
    /// waiting for capacity looks the same in Postgres every pass: so it runs at most
    /// every quarter of `stuck_after` (every pass when passes are further apart).
    fn waiting_check_due(&self) -> bool {
        let every = self.settings.stuck_after / 4;
        let mut last = self
            .last_waiting_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        // A pass may come a little early on its interval: allow for the jitter.
        let due = last.is_none_or(|at| now.duration_since(at) + MIN_INTERVAL > every);
        if due {
            *last = Some(now);
        }
        due
    }

    async fn requeue_one(
        &self,
        run: &store::reconcile::WaitingRun,
    ) -> Result<Concluded, ReconcileError> {
        let run_id = run.id();
        let last = self.events.last(run_id).await?;
        if last.as_ref().is_some_and(|l| l.header.is_terminal()) {
            return Ok(Concluded::No);
        }
        if self.was_dispatched(run_id).await? {
            // An executor owns it (the projection is behind); the lost-executor part
            // takes care of it if that executor is gone.
            return Ok(Concluded::No);
        }
        let position = last
            .as_ref()
            .map_or(EventPosition::EMPTY, StoredEvent::next_position);
        let message = format!(
            "command republished after the run stayed {} for {:.0} s with no command left in \
             the work queue",
            run.status.as_str(),
            run.idle_secs
        );
        self.requeue(run, position, message).await
    }

    /// Appends a `diagnostic` saying why and a new `run.queued` at `position` (so the
    /// manager dispatches the run again), then publishes its command with
    /// `Nats-Msg-Id = <run_id>:retry:<seq of the diagnostic>`: two control-planes
    /// doing the same deduplicate, and only one of them gets past the fence anyway.
    async fn requeue(
        &self,
        run: &store::reconcile::WaitingRun,
        mut position: EventPosition,
        message: String,
    ) -> Result<Concluded, ReconcileError> {
        let run_id = run.id();
        // Before anything is appended: a row that cannot make a command stops here.
        let command = run.command()?;
        let diagnostic = RunEventKind::Diagnostic(Diagnostic {
            level: DiagnosticLevel::Warn,
            message: message.clone(),
            raw: None,
        });
        let noted = match self.events.append(run_id, &mut position, diagnostic).await {
            Ok(event) => event,
            Err(EventLogError::Fenced { .. }) => return Ok(Concluded::Fenced),
            Err(e) => return Err(e.into()),
        };
        let queued = RunEventKind::RunQueued(RunQueued {
            provider: run.provider.clone(),
            model: run.model.clone(),
            app_id: command.app_id.clone(),
        });
        match self.events.append(run_id, &mut position, queued).await {
            Ok(_) => {}
            // A stop concluded it right after the diagnostic: nothing to dispatch.
            Err(EventLogError::Fenced { .. }) => return Ok(Concluded::Fenced),
            Err(e) => return Err(e.into()),
        }
        let payload =
            crate::json::to_vec("a run command", &command).map_err(ReconcileError::Encode)?;
        let mut headers = HeaderMap::new();
        headers.insert(subjects::HEADER_RUN_ID, run_id.to_string().as_str());
        let publish = PublishMessage::build()
            .payload(Bytes::from(payload))
            .headers(headers)
            .message_id(format!("{run_id}:retry:{}", noted.seq));
        self.js
            .send_publish(subjects::run_command(&run.provider), publish)
            .await
            .map_err(nats_error)?
            .await
            .map_err(nats_error)?;
        tracing::info!(%run_id, message, "run command republished");
        Ok(Concluded::Requeued)
    }

    /// Run ids of the commands still in `RUN_COMMANDS` (waiting, or being dispatched by
    /// a worker that has not acknowledged them). A work-queue stream admits no second
    /// consumer on the same subjects, so the messages are read one by one.
    async fn queued_commands(&self) -> Result<HashSet<RunId>, ReconcileError> {
        let stream = self
            .js
            .get_stream(subjects::RUN_COMMANDS_STREAM)
            .await
            .map_err(nats_error)?;
        let mut queued = HashSet::new();
        let mut next = 1;
        for _ in 0..MAX_COMMAND_SCAN {
            let message = match stream
                .get_first_raw_message_by_subject(subjects::RUN_COMMANDS_ALL, next)
                .await
            {
                Ok(message) => message,
                Err(e)
                    if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    return Ok(queued);
                }
                Err(e) => return Err(nats_error(e)),
            };
            next = message.sequence + 1;
            let from_header = message
                .headers
                .get(subjects::HEADER_RUN_ID)
                .and_then(|v| v.as_str().parse::<RunId>().ok());
            let run_id = from_header.or_else(|| {
                serde_json::from_slice::<switchyard_contracts::RunCommand>(&message.payload)
                    .ok()
                    .map(|c| c.run_id)
            });
            if let Some(run_id) = run_id {
                queued.insert(run_id);
            }
        }
        Err(ReconcileError::Nats(format!(
            "more than {MAX_COMMAND_SCAN} commands are queued; not looking for lost ones"
        )))
    }

    /// Whether the run's history holds a `run.dispatched` after its last `run.queued`
    /// (a run queued again after its executor was lost waits for a new dispatch).
    async fn was_dispatched(&self, run_id: RunId) -> Result<bool, ReconcileError> {
        let stream = self
            .js
            .get_stream(subjects::RUN_EVENTS_STREAM)
            .await
            .map_err(nats_error)?;
        let subject = subjects::run_events(&run_id);
        let mut next = 1;
        let mut dispatched = false;
        for _ in 0..MAX_HISTORY_SCAN {
            let message = match stream
                .direct_get_next_for_subject(subject.clone(), Some(next))
                .await
            {
                Ok(message) => message,
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {
                    return Ok(dispatched);
                }
                Err(e) => return Err(nats_error(e)),
            };
            next = message.sequence + 1;
            match serde_json::from_slice::<RunEventHeader>(&message.payload) {
                Ok(h) if h.event_type == "run.dispatched" => dispatched = true,
                Ok(h) if h.event_type == "run.queued" => dispatched = false,
                _ => {}
            }
        }
        // A run with this many events has certainly been dispatched.
        Ok(true)
    }
}

/// The outcome of one recovery attempt.
enum Concluded {
    Yes,
    /// Queued again and its command republished.
    Requeued,
    No,
    Fenced,
}

enum Probe {
    Answered,
    Silent,
    Unknown(String),
}

/// Whether the owner of a run owned since `owned_since` (executor clock) is gone.
fn judge(
    record: Option<&ExecutorPresence>,
    owned_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Option<Gone> {
    let Some(record) = record else {
        return Some(Gone::Silent);
    };
    if is_silent(record, now, ttl) {
        return Some(Gone::Silent);
    }
    match owned_since {
        Some(since) if record.started_at > since => Some(Gone::Restarted),
        _ => None,
    }
}

/// Whether the record's last heartbeat is older than the TTL.
fn is_silent(record: &ExecutorPresence, now: DateTime<Utc>, ttl: Duration) -> bool {
    now.signed_duration_since(record.heartbeat_at)
        .to_std()
        .is_ok_and(|silent| silent > ttl)
}

/// The time of a `run.dispatched` event.
fn dispatched_at(last: &StoredEvent) -> Option<DateTime<Utc>> {
    if last.header.event_type != "run.dispatched" {
        return None;
    }
    last.decode().ok().map(|event: RunEvent| event.time)
}

/// Passes at start-up and every interval until `shutdown`.
pub(crate) async fn run(
    client: async_nats::Client,
    js: jetstream::Context,
    pool: PgPool,
    settings: Arc<ControlPlaneSettings>,
    metrics: switchyard_platform::metrics::Metrics,
    shutdown: CancellationToken,
) {
    metrics.describe_counter(
        RECONCILER_ACTIONS,
        "What the reconciler did, by action: concluded (a lost executor's run), requeued (a lost command), redispatched (a lost executor's unstarted run), fenced (skipped: the run moved on).",
    );
    let settings = ReconcileSettings::from_control_plane(&settings);
    let reconciler = loop {
        match Reconciler::open(client.clone(), js.clone(), pool.clone(), settings.clone()).await {
            Ok(reconciler) => break reconciler,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler cannot open the event log; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(settings.interval) => {}
                }
            }
        }
    };
    // The first tick fires at once: that is the start-up pass.
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            report = reconciler.pass() => count(&metrics, &report),
        }
    }
    tracing::debug!("reconciler stopped");
}

/// `switchyard_reconciler_actions_total{action}`.
const RECONCILER_ACTIONS: &str = "switchyard_reconciler_actions_total";

fn count(metrics: &switchyard_platform::metrics::Metrics, report: &PassReport) {
    for (action, n) in [
        ("concluded", report.concluded.len()),
        ("requeued", report.requeued.len()),
        ("redispatched", report.redispatched.len()),
        ("fenced", report.fenced),
    ] {
        if n > 0 {
            metrics
                .counter(RECONCILER_ACTIONS, &[("action", action)])
                .increment(n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Span;

    fn record(started: DateTime<Utc>, heartbeat: DateTime<Utc>) -> ExecutorPresence {
        ExecutorPresence {
            executor_id: "exec-1".parse().unwrap(),
            version: "0".into(),
            capacity: 1,
            active: 1,
            draining: false,
            providers: Vec::new(),
            started_at: started,
            heartbeat_at: heartbeat,
        }
    }

    #[test]
    fn an_owner_is_gone_when_absent_silent_or_reborn() {
        let now = Utc::now();
        let ttl = Duration::from_secs(15);
        let since = now - Span::seconds(30);
        assert_eq!(judge(None, Some(since), now, ttl), Some(Gone::Silent));
        let live = record(now - Span::seconds(60), now - Span::seconds(1));
        assert_eq!(judge(Some(&live), Some(since), now, ttl), None);
        assert_eq!(judge(Some(&live), None, now, ttl), None);
        let silent = record(now - Span::seconds(60), now - Span::seconds(16));
        assert_eq!(
            judge(Some(&silent), Some(since), now, ttl),
            Some(Gone::Silent)
        );
        let reborn = record(now - Span::seconds(5), now);
        assert_eq!(
            judge(Some(&reborn), Some(since), now, ttl),
            Some(Gone::Restarted)
        );
        // A heartbeat from a clock ahead of ours is not silence.
        let ahead = record(since - Span::seconds(1), now + Span::seconds(3));
        assert_eq!(judge(Some(&ahead), Some(since), now, ttl), None);
    }

    #[test]
    fn the_ttl_comes_from_the_bucket_definition() {
        assert_eq!(presence_ttl(), Duration::from_secs(15));
    }
}
