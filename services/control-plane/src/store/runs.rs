//! Run records: inserting an accepted run, reading and listing them, and the status
//! projection's updates.

use super::columns::StoredRunStatus;
use super::{StoreError, from_bigint, stored_opt_id};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use switchyard_contracts::api::RunView;
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{
    AppId, ExecutorId, FailureReason, ProfileName, RunCommand, RunId, RunStatus, WorkerId,
};
use uuid::Uuid;

// The columns of a `RunRow`, in one place: `query_as!` takes a literal or literals
// joined by `+`, so the shared part and each caller's rest stay static SQL the
// compiler checks against the schema.
macro_rules! select_runs {
    ($rest:literal $(, $($args:tt)*)?) => {
        sqlx::query_as!(
            RunRow,
            r#"SELECT run_id, conversation_id, app_id, execution_profile, provider, model,
                      status AS "status: StoredRunStatus", status_detail, failure_reason,
                      failure_detail, evidence, executor_id, last_event_seq, created_at,
                      started_at, completed_at, created_by
               FROM runs "# + $rest
            $(, $($args)*)?
        )
    };
}

/// A run as accepted by `POST /api/runs/start`, before any event.
#[derive(Debug, Clone)]
pub(crate) struct NewRun {
    pub(crate) run_id: RunId,
    pub(crate) conversation_id: RunId,
    pub(crate) app_id: Option<AppId>,
    pub(crate) execution_profile: Option<ProfileName>,
    pub(crate) provider: String,
    pub(crate) model: Option<String>,
    pub(crate) prompt: String,
    pub(crate) provider_options: serde_json::Value,
    pub(crate) credential_env: Vec<String>,
    pub(crate) timeout_ms: Option<i64>,
    pub(crate) created_at: DateTime<Utc>,
    /// The principal that started it (RBAC).
    pub(crate) created_by: Option<String>,
    /// The start's `Idempotency-Key` and the SHA-256 of its request.
    pub(crate) idempotency: Option<(String, Vec<u8>)>,
}

/// Inserts a queued run and its outbox entry in one statement: one round trip, and a
/// statement of its own is a transaction of its own (both rows or neither), so a new
/// run needs no BEGIN and COMMIT. Returns the outbox entry's id.
pub(crate) async fn insert_queued(
    conn: impl PgExecutor<'_>,
    run: &NewRun,
    queued: &RunQueued,
    command: &RunCommand,
) -> Result<i64, StoreError> {
    // The wire types go in as `jsonb` through `Json`, which the macro cannot match
    // against `serde_json::Value`: `as _` takes the encoding as given.
    Ok(sqlx::query_scalar!(
        "WITH run AS (
             INSERT INTO runs (run_id, app_id, execution_profile, provider, model, prompt,
                               provider_options, credential_env, timeout_ms, status,
                               created_at, updated_at, conversation_id, created_by,
                               idempotency_key, idempotency_fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11, $12,
                     $15, $16)
             RETURNING run_id)
         INSERT INTO outbox (run_id, queued_event, command)
         SELECT run_id, $13, $14 FROM run
         RETURNING id",
        run.run_id,
        run.app_id.as_ref().map(AppId::as_str),
        run.execution_profile.as_ref().map(ProfileName::as_str),
        run.provider,
        run.model,
        run.prompt,
        run.provider_options,
        &run.credential_env,
        run.timeout_ms,
        run.created_at,
        run.conversation_id,
        run.created_by,
        Json(queued) as _,
        Json(command) as _,
        run.idempotency.as_ref().map(|(key, _)| key.as_str()),
        run.idempotency
            .as_ref()
            .map(|(_, fingerprint)| fingerprint.as_slice()),
    )
    .fetch_one(conn)
    .await?)
}

/// The columns a [`RunView`] shows (the prompt and options stay in the table).
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub(crate) run_id: Uuid,
    pub(crate) conversation_id: Uuid,
    pub(crate) app_id: Option<String>,
    pub(crate) execution_profile: Option<String>,
    pub(crate) provider: String,
    pub(crate) model: Option<String>,
    pub(crate) status: RunStatus,
    pub(crate) status_detail: Option<String>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) failure_detail: Option<String>,
    pub(crate) evidence: Option<serde_json::Value>,
    pub(crate) executor_id: Option<String>,
    pub(crate) last_event_seq: i64,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
    pub(crate) created_by: Option<String>,
}

impl RunRow {
    /// The run's app, checked like any other input.
    pub(crate) fn app(&self) -> Result<Option<AppId>, StoreError> {
        stored_opt_id("app id of a run", self.app_id.clone())
    }

    /// The API view; `stream_url` is built by the caller's configuration.
    pub(crate) fn into_view(self, stream_url: String) -> Result<RunView, StoreError> {
        // A reason this build does not know (written by a newer executor) is shown in
        // the detail rather than failing the whole read.
        let failure_reason = self.failure_reason.as_deref().and_then(|r| {
            serde_json::from_value::<FailureReason>(serde_json::Value::String(r.to_owned())).ok()
        });
        Ok(RunView {
            run_id: self.run_id,
            conversation_id: self.conversation_id,
            app_id: stored_opt_id("app id of a run", self.app_id)?,
            execution_profile: stored_opt_id("execution profile of a run", self.execution_profile)?,
            provider: self.provider,
            model: self.model,
            status: self.status,
            status_detail: self.status_detail,
            failure_reason,
            failure_detail: self.failure_detail,
            evidence: self.evidence,
            executor_id: stored_opt_id("executor id of a run", self.executor_id)?,
            last_event_seq: from_bigint(self.last_event_seq),
            stream_url,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            waiting_reason: None,
            waiting_detail: None,
        })
    }
}

pub(crate) async fn get(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
) -> Result<Option<RunRow>, StoreError> {
    Ok(select_runs!("WHERE run_id = $1", run_id)
        .fetch_optional(pool)
        .await?)
}

/// The app and the starting principal of a run (what RBAC decides on); `None` for an
/// unknown run.
pub(crate) async fn owner(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
) -> Result<Option<(Option<AppId>, Option<String>)>, StoreError> {
    sqlx::query!(
        "SELECT app_id, created_by FROM runs WHERE run_id = $1",
        run_id
    )
    .fetch_optional(pool)
    .await?
    .map(|row| {
        Ok((
            stored_opt_id("app id of a run", row.app_id)?,
            row.created_by,
        ))
    })
    .transpose()
}

/// Filters of `GET /api/runs`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunFilter {
    pub(crate) status: Option<RunStatus>,
    pub(crate) app_id: Option<AppId>,
    /// Canonical provider name.
    pub(crate) provider: Option<String>,
    pub(crate) conversation_id: Option<RunId>,
    /// Only runs listed after this one (newest first), i.e. created before it.
    pub(crate) before: Option<RunId>,
    pub(crate) limit: i64,
    /// RBAC: only runs of these apps, or app-less runs started by `visible_to`. `None`
    /// lists every run.
    pub(crate) app_scope: Option<Vec<AppId>>,
    pub(crate) visible_to: Option<String>,
}

/// Newest first. `before` is a keyset cursor: the last run id of the previous page.
pub(crate) async fn list(
    pool: impl PgExecutor<'_>,
    filter: &RunFilter,
) -> Result<Vec<RunRow>, StoreError> {
    // Every filter is optional: an absent one binds NULL and its `IS NULL` arm passes.
    let app_scope: Option<Vec<String>> = filter
        .app_scope
        .as_ref()
        .map(|apps| apps.iter().map(|app| app.as_str().to_owned()).collect());
    Ok(select_runs!(
        "WHERE ($1::run_status IS NULL OR status = $1)
           AND ($2::text IS NULL OR app_id = $2)
           AND ($3::uuid IS NULL OR (created_at, run_id) <
                (SELECT created_at, run_id FROM runs WHERE run_id = $3))
           AND ($5::uuid IS NULL OR conversation_id = $5)
           AND ($6::text[] IS NULL OR app_id = ANY($6)
                OR (app_id IS NULL AND created_by = $7))
           AND ($8::text IS NULL OR provider = $8)
         ORDER BY created_at DESC, run_id DESC LIMIT $4",
        filter.status.map(StoredRunStatus::from) as Option<StoredRunStatus>,
        filter.app_id.as_ref().map(AppId::as_str),
        filter.before,
        filter.limit,
        filter.conversation_id,
        app_scope.as_deref(),
        filter.visible_to,
        filter.provider,
    )
    .fetch_all(pool)
    .await?)
}

/// What a follow-up inherits from its conversation: the latest run's settings, and the
/// executor of the latest run that got one (its workspace and session are there).
#[derive(Debug, Clone)]
pub(crate) struct ConversationHead {
    pub(crate) provider: String,
    pub(crate) model: Option<String>,
    pub(crate) app_id: Option<AppId>,
    pub(crate) execution_profile: Option<ProfileName>,
    pub(crate) executor_id: Option<ExecutorId>,
}

#[derive(Debug)]
struct HeadRow {
    provider: String,
    model: Option<String>,
    app_id: Option<String>,
    execution_profile: Option<String>,
    executor_id: Option<String>,
}

/// The head of a conversation, `None` when no run belongs to it.
pub(crate) async fn conversation_head(
    pool: impl PgExecutor<'_>,
    conversation_id: RunId,
) -> Result<Option<ConversationHead>, StoreError> {
    let Some(row) = sqlx::query_as!(
        HeadRow,
        "SELECT r.provider, r.model, r.app_id, r.execution_profile,
                (SELECT e.executor_id FROM runs e
                  WHERE e.conversation_id = $1 AND e.executor_id IS NOT NULL
                  ORDER BY e.created_at DESC, e.run_id DESC LIMIT 1) AS executor_id
         FROM runs r
         WHERE r.conversation_id = $1
         ORDER BY r.created_at DESC, r.run_id DESC
         LIMIT 1",
        conversation_id
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(ConversationHead {
        provider: row.provider,
        model: row.model,
        app_id: stored_opt_id("app id of a run", row.app_id)?,
        execution_profile: stored_opt_id("execution profile of a run", row.execution_profile)?,
        executor_id: stored_opt_id("executor id of a run", row.executor_id)?,
    }))
}

/// Takes the conversation's start lock until the transaction ends: follow-ups of one
/// conversation are accepted one at a time, so two of them cannot both find it idle.
pub(crate) async fn lock_conversation(
    conn: &mut PgConnection,
    conversation_id: RunId,
) -> Result<(), StoreError> {
    // A 64-bit key from the 128-bit id: a collision only serialises two unrelated
    // conversations' starts for the length of a transaction.
    let (high, low) = conversation_id.as_u64_pair();
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", (high ^ low) as i64)
        .execute(conn)
        .await?;
    Ok(())
}

/// The conversation's latest run and its projected status.
pub(crate) async fn latest_in_conversation(
    conn: &mut PgConnection,
    conversation_id: RunId,
) -> Result<Option<(RunId, RunStatus)>, StoreError> {
    Ok(sqlx::query!(
        r#"SELECT run_id, status AS "status: StoredRunStatus" FROM runs
           WHERE conversation_id = $1
           ORDER BY created_at DESC, run_id DESC LIMIT 1"#,
        conversation_id
    )
    .fetch_optional(conn)
    .await?
    .map(|row| (row.run_id, row.status.into())))
}

/// The conversation a run belongs to, `None` for an unknown run.
pub(crate) async fn conversation_of(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
) -> Result<Option<RunId>, StoreError> {
    Ok(
        sqlx::query_scalar!("SELECT conversation_id FROM runs WHERE run_id = $1", run_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Runs not yet handed to an executor, oldest first.
pub(crate) async fn waiting(
    pool: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<RunRow>, StoreError> {
    Ok(select_runs!(
        "WHERE status IN ('queued', 'claimed') ORDER BY created_at, run_id LIMIT $1",
        limit
    )
    .fetch_all(pool)
    .await?)
}

/// What one lifecycle event changes on its run. `None` fields are left alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Projection {
    pub(crate) run_id: RunId,
    pub(crate) seq: i64,
    pub(crate) stream_seq: i64,
    pub(crate) status: Option<RunStatus>,
    pub(crate) status_detail: Option<String>,
    pub(crate) worker_id: Option<WorkerId>,
    pub(crate) claimed_at: Option<DateTime<Utc>>,
    pub(crate) executor_id: Option<ExecutorId>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) failure_detail: Option<String>,
    pub(crate) evidence: Option<serde_json::Value>,
}

/// What one batch of events changes on one run: the projections of its events folded
/// in `seq` order, each moving field remembering the `seq` of the event that set it, so
/// that [`apply_changes`] applies them in one statement exactly as the events one by
/// one would have been. The status (and its detail) only moves when its event is newer
/// than everything applied so far and the run is not terminal; facts that an event
/// carries (when it started, how it failed) are filled in even from an event that
/// arrives late, so a redelivery after a failed batch loses nothing. Who claimed and
/// which executor took the run follow the newest event: a run queued again after its
/// executor was lost is dispatched anew.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunChanges {
    pub(crate) run_id: RunId,
    /// The newest event's `seq`.
    pub(crate) seq: i64,
    /// The stream sequence of the run's first event, if the batch held it.
    pub(crate) first_stream_seq: Option<i64>,
    /// Whether any event was a lifecycle event (a batch of deltas alone touches the row
    /// only to advance `seq`).
    pub(crate) lifecycle: bool,
    pub(crate) status: Option<(i64, RunStatus, Option<String>)>,
    pub(crate) claim: Option<(i64, Option<WorkerId>, Option<DateTime<Utc>>)>,
    pub(crate) executor: Option<(i64, ExecutorId)>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) failure_detail: Option<String>,
    pub(crate) evidence: Option<serde_json::Value>,
}

impl RunChanges {
    pub(crate) fn new(run_id: RunId) -> Self {
        Self {
            run_id,
            ..Default::default()
        }
    }

    /// Folds in an event that changes nothing but the run's `seq`. Events must be
    /// folded in `seq` order.
    pub(crate) fn bump(&mut self, bump: &SeqBump) {
        self.seq = self.seq.max(bump.seq);
        self.first_stream_seq = self.first_stream_seq.or(bump.first_stream_seq);
    }

    /// Folds in a lifecycle event. Events must be folded in `seq` order.
    pub(crate) fn add(&mut self, p: &Projection) {
        self.lifecycle = true;
        self.seq = self.seq.max(p.seq);
        if p.seq == 1 {
            self.first_stream_seq = self.first_stream_seq.or(Some(p.stream_seq));
        }
        if let Some(status) = p.status
            && !self
                .status
                .as_ref()
                .is_some_and(|(_, s, _)| s.is_terminal())
        {
            self.status = Some((p.seq, status, p.status_detail.clone()));
        }
        if p.worker_id.is_some() || p.claimed_at.is_some() {
            self.claim = Some((p.seq, p.worker_id.clone(), p.claimed_at));
        }
        if let Some(executor_id) = &p.executor_id {
            self.executor = Some((p.seq, executor_id.clone()));
        }
        // First one wins, as `COALESCE(existing, new)` would have had it.
        self.started_at = self.started_at.or(p.started_at);
        self.completed_at = self.completed_at.or(p.completed_at);
        self.failure_reason = self
            .failure_reason
            .take()
            .or_else(|| p.failure_reason.clone());
        self.failure_detail = self
            .failure_detail
            .take()
            .or_else(|| p.failure_detail.clone());
        self.evidence = self.evidence.take().or_else(|| p.evidence.clone());
    }
}

/// A run [`apply_changes`] updated.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) run_id: RunId,
    pub(crate) provider: String,
    pub(crate) status: StoredRunStatus,
    pub(crate) failure_reason: Option<String>,
    /// This statement set the run's `started_at`.
    pub(crate) started: bool,
    /// This statement set the run's `completed_at`.
    pub(crate) finished: bool,
}

/// Applies the changes of a batch (one entry per run) in one statement, rows locked in
/// `run_id` order (the caller sorts) so two projectors never deadlock, and resolves what
/// the `ended` runs still had pending, as [`super::human_loop::runs_ended`] does.
/// Returns the runs that are in the table; a run that is not (started through an
/// executor's standalone API) is left alone. Each says whether this very statement
/// started or ended it (its `started_at` / `completed_at` went from unset to set,
/// judged on the row locked before the update): true once per run however often its
/// events are applied, which is what the run counters need.
pub(crate) async fn apply_changes(
    conn: impl PgExecutor<'_>,
    changes: &[RunChanges],
    ended: &[(RunId, DateTime<Utc>)],
) -> Result<Vec<Applied>, StoreError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: &dyn Fn(&RunChanges) -> Option<i64>| -> Vec<Option<i64>> {
        changes.iter().map(f).collect()
    };
    let ids: Vec<Uuid> = changes.iter().map(|c| c.run_id).collect();
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    let first_stream_seq = column(&|c| c.first_stream_seq);
    let lifecycle: Vec<bool> = changes.iter().map(|c| c.lifecycle).collect();
    let status: Vec<Option<StoredRunStatus>> = changes
        .iter()
        .map(|c| c.status.as_ref().map(|(_, s, _)| StoredRunStatus::from(*s)))
        .collect();
    let status_detail: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.status.as_ref().and_then(|(_, _, d)| d.as_deref()))
        .collect();
    let status_seq = column(&|c| c.status.as_ref().map(|(seq, _, _)| *seq));
    let worker_id: Vec<Option<&str>> = changes
        .iter()
        .map(|c| {
            c.claim
                .as_ref()
                .and_then(|(_, w, _)| w.as_ref())
                .map(WorkerId::as_str)
        })
        .collect();
    let claimed_at: Vec<Option<DateTime<Utc>>> = changes
        .iter()
        .map(|c| c.claim.as_ref().and_then(|(_, _, at)| *at))
        .collect();
    let claim_seq = column(&|c| c.claim.as_ref().map(|(seq, _, _)| *seq));
    let executor_id: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.executor.as_ref().map(|(_, e)| e.as_str()))
        .collect();
    let executor_seq = column(&|c| c.executor.as_ref().map(|(seq, _)| *seq));
    let started_at: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.started_at).collect();
    let completed_at: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.completed_at).collect();
    let failure_reason: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.failure_reason.as_deref())
        .collect();
    let failure_detail: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.failure_detail.as_deref())
        .collect();
    let evidence: Vec<Option<&serde_json::Value>> =
        changes.iter().map(|c| c.evidence.as_ref()).collect();

    // The two statements share the update and its parameters; `$rest` ends the
    // statement, `$more` are its own parameters. The macro matches array parameters
    // against arrays of non-null values, and most of these hold NULL for "no change":
    // each of those names its type instead (an `as` the compiler checks).
    macro_rules! apply_changes {
        ($rest:literal $(, $more:expr)*) => {
            sqlx::query_as!(
                Applied,
                "WITH changed AS (
                 UPDATE runs AS r SET
                    status = CASE
                        WHEN u.status IS NOT NULL AND r.last_event_seq < u.status_seq
                             AND r.status NOT IN ('succeeded', 'failed', 'stopped', 'timed_out')
                        THEN u.status ELSE r.status END,
                    status_detail = CASE
                        WHEN u.status IS NOT NULL AND r.last_event_seq < u.status_seq
                             AND r.status NOT IN ('succeeded', 'failed', 'stopped', 'timed_out')
                        THEN u.status_detail ELSE r.status_detail END,
                    worker_id = CASE WHEN r.last_event_seq < u.claim_seq
                        THEN COALESCE(u.worker_id, r.worker_id)
                        ELSE COALESCE(r.worker_id, u.worker_id) END,
                    claimed_at = CASE WHEN r.last_event_seq < u.claim_seq
                        THEN COALESCE(u.claimed_at, r.claimed_at)
                        ELSE COALESCE(r.claimed_at, u.claimed_at) END,
                    executor_id = CASE WHEN r.last_event_seq < u.executor_seq
                        THEN COALESCE(u.executor_id, r.executor_id)
                        ELSE COALESCE(r.executor_id, u.executor_id) END,
                    started_at = COALESCE(r.started_at, u.started_at),
                    completed_at = COALESCE(r.completed_at, u.completed_at),
                    failure_reason = COALESCE(r.failure_reason, u.failure_reason),
                    failure_detail = COALESCE(r.failure_detail, u.failure_detail),
                    evidence = COALESCE(r.evidence, u.evidence),
                    first_event_stream_seq = COALESCE(r.first_event_stream_seq, u.first_stream_seq),
                    last_event_seq = GREATEST(r.last_event_seq, u.seq),
                    updated_at = now()
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bool[],
                             $5::run_status[], $6::text[], $7::bigint[], $8::text[],
                             $9::timestamptz[], $10::bigint[], $11::text[], $12::bigint[],
                             $13::timestamptz[], $14::timestamptz[], $15::text[], $16::text[],
                             $17::jsonb[])
                      AS u(run_id, seq, first_stream_seq, lifecycle, status, status_detail,
                           status_seq, worker_id, claimed_at, claim_seq, executor_id,
                           executor_seq, started_at, completed_at, failure_reason,
                           failure_detail, evidence)
                 JOIN (SELECT run_id, started_at, completed_at FROM runs
                       WHERE run_id = ANY($1::uuid[]) ORDER BY run_id FOR UPDATE) AS o
                   ON o.run_id = u.run_id
                 WHERE r.run_id = u.run_id
                   AND (u.lifecycle OR r.last_event_seq < u.seq
                        OR (u.first_stream_seq IS NOT NULL AND r.first_event_stream_seq IS NULL))
                 RETURNING r.run_id, r.provider, r.status, r.failure_reason,
                    (o.started_at IS NULL AND r.started_at IS NOT NULL) AS started,
                    (o.completed_at IS NULL AND r.completed_at IS NOT NULL) AS finished)" + $rest,
                &ids[..],
                &seqs[..],
                first_stream_seq.as_slice() as &[Option<i64>],
                &lifecycle[..],
                status.as_slice() as &[Option<StoredRunStatus>],
                status_detail.as_slice() as &[Option<&str>],
                status_seq.as_slice() as &[Option<i64>],
                worker_id.as_slice() as &[Option<&str>],
                claimed_at.as_slice() as &[Option<DateTime<Utc>>],
                claim_seq.as_slice() as &[Option<i64>],
                executor_id.as_slice() as &[Option<&str>],
                executor_seq.as_slice() as &[Option<i64>],
                started_at.as_slice() as &[Option<DateTime<Utc>>],
                completed_at.as_slice() as &[Option<DateTime<Utc>>],
                failure_reason.as_slice() as &[Option<&str>],
                failure_detail.as_slice() as &[Option<&str>],
                evidence.as_slice() as &[Option<&serde_json::Value>]
                $(, $more)*
            )
        };
    }
    // Prepared once per connection: planning this statement costs several times its
    // execution, and most batches carry one or two events. A generic plan made while
    // `runs` was small scans the whole table until it is made again; the projector
    // makes it again now and then (`refresh_plans`).
    let rows = if ended.is_empty() {
        // The statement for a batch in which no run ended (nearly every batch).
        apply_changes!(
            r#" SELECT run_id AS "run_id!", provider AS "provider!",
                   status AS "status!: StoredRunStatus", failure_reason,
                   started AS "started!", finished AS "finished!" FROM changed"#
        )
        .fetch_all(conn)
        .await?
    } else {
        let ended_ids: Vec<Uuid> = ended.iter().map(|(id, _)| *id).collect();
        let ended_at: Vec<DateTime<Utc>> = ended.iter().map(|(_, at)| *at).collect();
        apply_changes!(
            r#",
            ended AS (
                UPDATE human_loop_requests AS h
                SET status = 'resolved', decision = 'deny', resolved_by = 'run_ended',
                    resolved_at = e.ended_at
                FROM UNNEST($18::uuid[], $19::timestamptz[]) AS e(run_id, ended_at)
                WHERE h.run_id = e.run_id AND h.status = 'pending'
                  AND e.run_id IN (SELECT run_id FROM changed))
            SELECT run_id AS "run_id!", provider AS "provider!",
                   status AS "status!: StoredRunStatus", failure_reason,
                   started AS "started!", finished AS "finished!" FROM changed"#,
            &ended_ids[..],
            &ended_at[..]
        )
        .fetch_all(conn)
        .await?
    };
    Ok(rows)
}

/// Batches a connection serves with its prepared projection statements before
/// [`refresh_plans`] prepares them again.
pub(crate) const REFRESH_PLANS_EVERY: u32 = 256;

/// Forgets `conn`'s prepared statements, so the next batches are planned for the tables
/// as they are now. Postgres keeps a statement's generic plan for the connection's life
/// (or until the next ANALYZE), and one made while `runs` held a few rows reads the
/// whole table for every batch once it holds thousands; planned at most
/// [`REFRESH_PLANS_EVERY`] batches ago, a plan lags the table by at most that many
/// batches' runs. Once `runs` is large enough for the key lookup to win, every plan
/// made keeps it.
pub(crate) async fn refresh_plans(conn: &mut PgConnection) -> Result<(), StoreError> {
    use sqlx::Connection as _;
    conn.clear_cached_statements().await?;
    Ok(())
}

/// The newest `seq` seen for a run in a batch of events that do not change its status
/// (messages, tool calls …), and the stream sequence of its first event if the batch
/// held it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqBump {
    pub(crate) run_id: RunId,
    pub(crate) seq: i64,
    pub(crate) first_stream_seq: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, status: RunStatus) -> Projection {
        Projection {
            run_id: RunId::nil(),
            seq,
            stream_seq: 100 + seq,
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn a_whole_lifecycle_folds_into_what_its_events_one_by_one_would_leave() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let mut changes = RunChanges::new(RunId::nil());
        changes.add(&event(1, RunStatus::Queued));
        for (seq, worker) in [(2, "w-1"), (3, "w-2")] {
            changes.add(&Projection {
                worker_id: Some(worker.parse().unwrap()),
                claimed_at: Some(t(seq)),
                ..event(seq, RunStatus::Claimed)
            });
        }
        changes.add(&Projection {
            executor_id: Some("exec-1".parse().unwrap()),
            ..event(4, RunStatus::Dispatched)
        });
        changes.add(&Projection {
            started_at: Some(t(5)),
            ..event(5, RunStatus::Running)
        });
        changes.bump(&SeqBump {
            run_id: RunId::nil(),
            seq: 6,
            first_stream_seq: None,
        });
        changes.add(&Projection {
            completed_at: Some(t(7)),
            failure_reason: Some("timeout".into()),
            status_detail: Some("too slow".into()),
            ..event(7, RunStatus::TimedOut)
        });
        // An event after the end (a stale copy) moves nothing but facts not yet known.
        changes.add(&Projection {
            started_at: Some(t(99)),
            ..event(8, RunStatus::Running)
        });

        assert_eq!(changes.seq, 8);
        assert_eq!(changes.first_stream_seq, Some(101));
        assert!(changes.lifecycle);
        assert_eq!(
            changes.status,
            Some((7, RunStatus::TimedOut, Some("too slow".into())))
        );
        assert_eq!(
            changes.claim,
            Some((3, Some("w-2".parse().unwrap()), Some(t(3))))
        );
        assert_eq!(changes.executor, Some((4, "exec-1".parse().unwrap())));
        assert_eq!(changes.started_at, Some(t(5)), "the first start wins");
        assert_eq!(changes.completed_at, Some(t(7)));
        assert_eq!(changes.failure_reason.as_deref(), Some("timeout"));
    }

    #[test]
    fn deltas_alone_only_advance_the_seq() {
        let mut changes = RunChanges::new(RunId::nil());
        for seq in [3, 4, 9] {
            changes.bump(&SeqBump {
                run_id: RunId::nil(),
                seq,
                first_stream_seq: None,
            });
        }
        assert_eq!(changes.seq, 9);
        assert!(!changes.lifecycle);
        assert!(changes.status.is_none() && changes.claim.is_none());
    }

    /// The projector's batch statement is prepared once per connection (planning it
    /// costs more than running it), and Postgres keeps the generic plan it made while
    /// `runs` was nearly empty: a fresh deployment meets its first burst with no
    /// `ANALYZE` in between, and that plan scans the whole table for every batch, so
    /// the projection falls ever further behind. `refresh_plans`, which the projector
    /// calls every `REFRESH_PLANS_EVERY` batches, must bring it back to reading rows by
    /// key.
    #[tokio::test]
    async fn the_batch_update_reads_runs_by_key_after_the_table_grew() {
        let db = switchyard_test_support::TestDb::create().await.unwrap();
        let config = switchyard_platform::config::DatabaseConfig {
            url: secrecy::SecretString::from(db.url.clone()),
            ..Default::default()
        };
        let pool = crate::database::connect(&config).await.unwrap();
        crate::database::migrate(&pool).await.unwrap();
        // One transaction on one connection: every statement shares its plan cache, and
        // `pg_stat_xact_user_tables` counts this transaction's scans at once.
        let mut tx = pool.begin().await.unwrap();
        async fn insert_runs(conn: &mut PgConnection, count: i32) -> Vec<Uuid> {
            sqlx::query_scalar!(
                "INSERT INTO runs (run_id, conversation_id, provider, prompt, status)
                 SELECT id, id, 'scripted', 'p', 'queued'
                 FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS ids
                 RETURNING run_id",
                count
            )
            .fetch_all(conn)
            .await
            .unwrap()
        }
        let early = insert_runs(&mut tx, 3).await;
        let batch = |seq: i64| {
            let mut change = RunChanges::new(early[0]);
            change.bump(&SeqBump {
                run_id: early[0],
                seq,
                first_stream_seq: None,
            });
            vec![change]
        };
        // More executions than Postgres needs to settle on a generic plan (five).
        for seq in 1..=8 {
            apply_changes(&mut *tx, &batch(seq), &[]).await.unwrap();
        }
        insert_runs(&mut tx, 20_000).await;
        async fn full_scans_of(tx: &mut PgConnection, batches: Vec<Vec<RunChanges>>) -> i64 {
            async fn scans(conn: &mut PgConnection) -> i64 {
                sqlx::query_scalar!(
                    r#"SELECT coalesce(seq_scan, 0) AS "scans!" FROM pg_stat_xact_user_tables
                       WHERE relname = 'runs'"#
                )
                .fetch_one(conn)
                .await
                .unwrap()
            }
            let before = scans(tx).await;
            for changes in batches {
                apply_changes(&mut *tx, &changes, &[]).await.unwrap();
            }
            scans(tx).await - before
        }
        // The premise: the plan prepared while `runs` was small still reads all of it.
        let stale = full_scans_of(&mut tx, (9..=12).map(batch).collect()).await;
        assert!(
            stale > 0,
            "the prepared plan did not scan `runs` ({stale} scans)"
        );
        refresh_plans(&mut tx).await.unwrap();
        let fresh = full_scans_of(&mut tx, (13..=20).map(batch).collect()).await;
        assert_eq!(
            fresh, 0,
            "the batch update scanned all of `runs` {fresh} times"
        );
        let seq = sqlx::query_scalar!(
            "SELECT last_event_seq FROM runs WHERE run_id = $1",
            early[0]
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(seq, 20, "the batches were applied");
    }
}
