//! Run records: inserting an accepted run, reading and listing them, and the status
//! projection's updates.

use super::{StoreError, from_bigint};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use switchyard_contracts::api::RunView;
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{FailureReason, RunCommand, RunId, RunStatus};
use uuid::Uuid;

// The columns of a `RunRow`, in one place. sqlx wants `&'static str` SQL; `concat!`
// keeps it static, so no statement is ever assembled at run time.
macro_rules! select_runs {
    ($($rest:literal),*) => {
        concat!(
            "SELECT run_id, conversation_id, app_id, execution_profile, provider, model, status, ",
            "status_detail, failure_reason, failure_detail, evidence, executor_id, ",
            "last_event_seq, created_at, started_at, completed_at, created_by FROM runs ",
            $($rest),*
        )
    };
}

/// A run as accepted by `POST /api/runs/start`, before any event.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: RunId,
    pub conversation_id: RunId,
    pub app_id: Option<String>,
    pub execution_profile: Option<String>,
    pub provider: String,
    pub model: Option<String>,
    pub prompt: String,
    pub provider_options: serde_json::Value,
    pub credential_env: Vec<String>,
    pub timeout_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// The principal that started it (RBAC).
    pub created_by: Option<String>,
}

/// Inserts a queued run and its outbox entry in one statement: one round trip, and a
/// statement of its own is a transaction of its own (both rows or neither), so a new
/// run needs no BEGIN and COMMIT. Returns the outbox entry's id.
pub async fn insert_queued(
    conn: impl PgExecutor<'_>,
    run: &NewRun,
    queued: &RunQueued,
    command: &RunCommand,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar::<_, i64>(
        "WITH run AS (
             INSERT INTO runs (run_id, app_id, execution_profile, provider, model, prompt,
                               provider_options, credential_env, timeout_ms, status,
                               created_at, updated_at, conversation_id, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11, $12)
             RETURNING run_id)
         INSERT INTO outbox (run_id, queued_event, command)
         SELECT run_id, $13, $14 FROM run
         RETURNING id",
    )
    .bind(run.run_id)
    .bind(&run.app_id)
    .bind(&run.execution_profile)
    .bind(&run.provider)
    .bind(&run.model)
    .bind(&run.prompt)
    .bind(&run.provider_options)
    .bind(&run.credential_env)
    .bind(run.timeout_ms)
    .bind(run.created_at)
    .bind(run.conversation_id)
    .bind(&run.created_by)
    .bind(Json(queued))
    .bind(Json(command))
    .fetch_one(conn)
    .await?)
}

/// The columns a [`RunView`] shows (the prompt and options stay in the table).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub run_id: Uuid,
    pub conversation_id: Uuid,
    pub app_id: Option<String>,
    pub execution_profile: Option<String>,
    pub provider: String,
    pub model: Option<String>,
    pub status: String,
    pub status_detail: Option<String>,
    pub failure_reason: Option<String>,
    pub failure_detail: Option<String>,
    pub evidence: Option<serde_json::Value>,
    pub executor_id: Option<String>,
    pub last_event_seq: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
}

impl RunRow {
    /// The API view; `stream_url` is built by the caller's configuration.
    pub fn into_view(self, stream_url: String) -> Result<RunView, StoreError> {
        let status = RunStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            what: "run status",
            source: serde::de::Error::custom(format!("unknown status {:?}", self.status)),
        })?;
        // A reason this build does not know (written by a newer executor) is shown in
        // the detail rather than failing the whole read.
        let failure_reason = self.failure_reason.as_deref().and_then(|r| {
            serde_json::from_value::<FailureReason>(serde_json::Value::String(r.to_owned())).ok()
        });
        Ok(RunView {
            run_id: self.run_id,
            conversation_id: self.conversation_id,
            app_id: self.app_id,
            execution_profile: self.execution_profile,
            provider: self.provider,
            model: self.model,
            status,
            status_detail: self.status_detail,
            failure_reason,
            failure_detail: self.failure_detail,
            evidence: self.evidence,
            executor_id: self.executor_id,
            last_event_seq: from_bigint(self.last_event_seq),
            stream_url,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
        })
    }
}

pub async fn get(pool: impl PgExecutor<'_>, run_id: RunId) -> Result<Option<RunRow>, StoreError> {
    Ok(
        sqlx::query_as::<_, RunRow>(select_runs!("WHERE run_id = $1"))
            .bind(run_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The app and the starting principal of a run (what RBAC decides on); `None` for an
/// unknown run.
pub async fn owner(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
    Ok(sqlx::query_as::<_, (Option<String>, Option<String>)>(
        "SELECT app_id, created_by FROM runs WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?)
}

/// Filters of `GET /api/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub app_id: Option<String>,
    pub conversation_id: Option<RunId>,
    /// Only runs listed after this one (newest first), i.e. created before it.
    pub before: Option<RunId>,
    pub limit: i64,
    /// RBAC: only runs of these apps, or app-less runs started by `visible_to`. `None`
    /// lists every run.
    pub app_scope: Option<Vec<String>>,
    pub visible_to: Option<String>,
}

/// Newest first. `before` is a keyset cursor: the last run id of the previous page.
pub async fn list(
    pool: impl PgExecutor<'_>,
    filter: &RunFilter,
) -> Result<Vec<RunRow>, StoreError> {
    Ok(sqlx::query_as::<_, RunRow>(select_runs!(
        "WHERE ($1::text IS NULL OR status = $1) ",
        "AND ($2::text IS NULL OR app_id = $2) ",
        "AND ($3::uuid IS NULL OR (created_at, run_id) < ",
        "(SELECT created_at, run_id FROM runs WHERE run_id = $3)) ",
        "AND ($5::uuid IS NULL OR conversation_id = $5) ",
        "AND ($6::text[] IS NULL OR app_id = ANY($6) ",
        "OR (app_id IS NULL AND created_by = $7)) ",
        "ORDER BY created_at DESC, run_id DESC LIMIT $4"
    ))
    .bind(filter.status.map(RunStatus::as_str))
    .bind(&filter.app_id)
    .bind(filter.before)
    .bind(filter.limit)
    .bind(filter.conversation_id)
    .bind(&filter.app_scope)
    .bind(&filter.visible_to)
    .fetch_all(pool)
    .await?)
}

/// What a follow-up inherits from its conversation: the latest run's settings, and the
/// executor of the latest run that got one (its workspace and session are there).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationHead {
    pub conversation_id: Uuid,
    pub provider: String,
    pub model: Option<String>,
    pub app_id: Option<String>,
    pub execution_profile: Option<String>,
    pub executor_id: Option<String>,
}

/// The head of a conversation, `None` when no run belongs to it.
pub async fn conversation_head(
    pool: impl PgExecutor<'_>,
    conversation_id: RunId,
) -> Result<Option<ConversationHead>, StoreError> {
    Ok(sqlx::query_as::<_, ConversationHead>(
        "SELECT r.conversation_id, r.provider, r.model, r.app_id, r.execution_profile,
                (SELECT e.executor_id FROM runs e
                  WHERE e.conversation_id = $1 AND e.executor_id IS NOT NULL
                  ORDER BY e.created_at DESC, e.run_id DESC LIMIT 1) AS executor_id
         FROM runs r
         WHERE r.conversation_id = $1
         ORDER BY r.created_at DESC, r.run_id DESC
         LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(pool)
    .await?)
}

/// Takes the conversation's start lock until the transaction ends: follow-ups of one
/// conversation are accepted one at a time, so two of them cannot both find it idle.
pub async fn lock_conversation(
    conn: &mut PgConnection,
    conversation_id: RunId,
) -> Result<(), StoreError> {
    // A 64-bit key from the 128-bit id: a collision only serialises two unrelated
    // conversations' starts for the length of a transaction.
    let (high, low) = conversation_id.as_u64_pair();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind((high ^ low) as i64)
        .execute(conn)
        .await?;
    Ok(())
}

/// The conversation's latest run and its projected status.
pub async fn latest_in_conversation(
    conn: &mut PgConnection,
    conversation_id: RunId,
) -> Result<Option<(RunId, String)>, StoreError> {
    Ok(sqlx::query_as::<_, (Uuid, String)>(
        "SELECT run_id, status FROM runs WHERE conversation_id = $1
         ORDER BY created_at DESC, run_id DESC LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(conn)
    .await?)
}

/// The conversation a run belongs to, `None` for an unknown run.
pub async fn conversation_of(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
) -> Result<Option<RunId>, StoreError> {
    Ok(
        sqlx::query_scalar::<_, Uuid>("SELECT conversation_id FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Runs not yet handed to an executor, oldest first.
pub async fn waiting(pool: impl PgExecutor<'_>, limit: i64) -> Result<Vec<RunRow>, StoreError> {
    Ok(sqlx::query_as::<_, RunRow>(select_runs!(
        "WHERE status IN ('queued', 'claimed') ORDER BY created_at, run_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// What one lifecycle event changes on its run. `None` fields are left alone.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub run_id: RunId,
    pub seq: i64,
    pub stream_seq: i64,
    pub status: Option<RunStatus>,
    pub status_detail: Option<String>,
    pub worker_id: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub executor_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub failure_detail: Option<String>,
    pub evidence: Option<serde_json::Value>,
}

/// Applies one lifecycle event. The status (and its detail) only moves when the event
/// is newer than everything applied so far and the run is not terminal; facts that an
/// event carries (who claimed it, which executor, when it started) are filled in even
/// from an event that arrives late, so a redelivery after a failed batch loses nothing.
/// Who claimed and which executor took the run follow the newest event: a run queued
/// again after its executor was lost is dispatched anew.
/// Returns `false` when the run is not in the table (started through an executor's
/// standalone API).
pub async fn apply(conn: &mut PgConnection, p: &Projection) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE runs SET
            status = CASE
                WHEN last_event_seq < $2 AND $3::text IS NOT NULL
                     AND status NOT IN ('succeeded', 'failed', 'stopped', 'timed_out')
                THEN $3 ELSE status END,
            status_detail = CASE
                WHEN last_event_seq < $2 AND $3::text IS NOT NULL
                     AND status NOT IN ('succeeded', 'failed', 'stopped', 'timed_out')
                THEN $4 ELSE status_detail END,
            worker_id = CASE WHEN last_event_seq < $2
                THEN COALESCE($5, worker_id) ELSE COALESCE(worker_id, $5) END,
            claimed_at = CASE WHEN last_event_seq < $2
                THEN COALESCE($6, claimed_at) ELSE COALESCE(claimed_at, $6) END,
            executor_id = CASE WHEN last_event_seq < $2
                THEN COALESCE($7, executor_id) ELSE COALESCE(executor_id, $7) END,
            started_at = COALESCE(started_at, $8),
            completed_at = COALESCE(completed_at, $9),
            failure_reason = COALESCE(failure_reason, $10),
            failure_detail = COALESCE(failure_detail, $11),
            evidence = COALESCE(evidence, $12),
            first_event_stream_seq = CASE WHEN $2 = 1
                THEN COALESCE(first_event_stream_seq, $13) ELSE first_event_stream_seq END,
            last_event_seq = GREATEST(last_event_seq, $2),
            updated_at = now()
         WHERE run_id = $1",
    )
    .bind(p.run_id)
    .bind(p.seq)
    .bind(p.status.map(RunStatus::as_str))
    .bind(&p.status_detail)
    .bind(&p.worker_id)
    .bind(p.claimed_at)
    .bind(&p.executor_id)
    .bind(p.started_at)
    .bind(p.completed_at)
    .bind(&p.failure_reason)
    .bind(&p.failure_detail)
    .bind(&p.evidence)
    .bind(p.stream_seq)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// The newest `seq` seen for a run in a batch of events that do not change its status
/// (messages, tool calls …), and the stream sequence of its first event if the batch
/// held it.
#[derive(Debug, Clone, Copy)]
pub struct SeqBump {
    pub run_id: RunId,
    pub seq: i64,
    pub first_stream_seq: Option<i64>,
}

/// Advances `last_event_seq` for many runs in one statement (the hot path: a busy run
/// emits many deltas per second).
pub async fn bump_seqs(conn: &mut PgConnection, bumps: &[SeqBump]) -> Result<(), StoreError> {
    if bumps.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = bumps.iter().map(|b| b.run_id).collect();
    let seqs: Vec<i64> = bumps.iter().map(|b| b.seq).collect();
    let firsts: Vec<Option<i64>> = bumps.iter().map(|b| b.first_stream_seq).collect();
    sqlx::query(
        "UPDATE runs AS r SET
            last_event_seq = GREATEST(r.last_event_seq, v.seq),
            first_event_stream_seq = COALESCE(r.first_event_stream_seq, v.first_stream_seq),
            updated_at = now()
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS v(run_id, seq, first_stream_seq)
         WHERE r.run_id = v.run_id
           AND (r.last_event_seq < v.seq
                OR (v.first_stream_seq IS NOT NULL AND r.first_event_stream_seq IS NULL))",
    )
    .bind(&ids)
    .bind(&seqs)
    .bind(&firsts)
    .execute(conn)
    .await?;
    Ok(())
}
