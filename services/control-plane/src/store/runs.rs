//! Run records: inserting an accepted run, reading and listing them, and the status
//! projection's updates.

use super::{StoreError, from_bigint, stored_opt_id};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use std::collections::HashSet;
use switchyard_contracts::api::RunView;
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{
    AppId, ExecutorId, FailureReason, ProfileName, RunCommand, RunId, RunStatus, WorkerId,
};
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
    pub app_id: Option<AppId>,
    pub execution_profile: Option<ProfileName>,
    pub provider: String,
    pub model: Option<String>,
    pub prompt: String,
    pub provider_options: serde_json::Value,
    pub credential_env: Vec<String>,
    pub timeout_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// The principal that started it (RBAC).
    pub created_by: Option<String>,
    /// The start's `Idempotency-Key` and the SHA-256 of its request.
    pub idempotency: Option<(String, Vec<u8>)>,
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
                               created_at, updated_at, conversation_id, created_by,
                               idempotency_key, idempotency_fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11, $12,
                     $15, $16)
             RETURNING run_id)
         INSERT INTO outbox (run_id, queued_event, command)
         SELECT run_id, $13, $14 FROM run
         RETURNING id",
    )
    .bind(run.run_id)
    .bind(run.app_id.as_ref().map(AppId::as_str))
    .bind(run.execution_profile.as_ref().map(ProfileName::as_str))
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
    .bind(run.idempotency.as_ref().map(|(key, _)| key))
    .bind(run.idempotency.as_ref().map(|(_, fingerprint)| fingerprint))
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
    /// The run's app, checked like any other input.
    pub fn app(&self) -> Result<Option<AppId>, StoreError> {
        stored_opt_id("app id of a run", self.app_id.clone())
    }

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
            app_id: stored_opt_id("app id of a run", self.app_id)?,
            execution_profile: stored_opt_id("execution profile of a run", self.execution_profile)?,
            provider: self.provider,
            model: self.model,
            status,
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
) -> Result<Option<(Option<AppId>, Option<String>)>, StoreError> {
    sqlx::query_as::<_, (Option<String>, Option<String>)>(
        "SELECT app_id, created_by FROM runs WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?
    .map(|(app_id, created_by)| Ok((stored_opt_id("app id of a run", app_id)?, created_by)))
    .transpose()
}

/// Filters of `GET /api/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub app_id: Option<AppId>,
    /// Canonical provider name.
    pub provider: Option<String>,
    pub conversation_id: Option<RunId>,
    /// Only runs listed after this one (newest first), i.e. created before it.
    pub before: Option<RunId>,
    pub limit: i64,
    /// RBAC: only runs of these apps, or app-less runs started by `visible_to`. `None`
    /// lists every run.
    pub app_scope: Option<Vec<AppId>>,
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
        "AND ($8::text IS NULL OR provider = $8) ",
        "ORDER BY created_at DESC, run_id DESC LIMIT $4"
    ))
    .bind(filter.status.map(RunStatus::as_str))
    .bind(filter.app_id.as_ref().map(AppId::as_str))
    .bind(filter.before)
    .bind(filter.limit)
    .bind(filter.conversation_id)
    .bind(
        filter
            .app_scope
            .as_ref()
            .map(|apps| apps.iter().map(AppId::as_str).collect::<Vec<_>>()),
    )
    .bind(&filter.visible_to)
    .bind(&filter.provider)
    .fetch_all(pool)
    .await?)
}

/// What a follow-up inherits from its conversation: the latest run's settings, and the
/// executor of the latest run that got one (its workspace and session are there).
#[derive(Debug, Clone)]
pub struct ConversationHead {
    pub conversation_id: Uuid,
    pub provider: String,
    pub model: Option<String>,
    pub app_id: Option<AppId>,
    pub execution_profile: Option<ProfileName>,
    pub executor_id: Option<ExecutorId>,
}

#[derive(Debug, sqlx::FromRow)]
struct HeadRow {
    conversation_id: Uuid,
    provider: String,
    model: Option<String>,
    app_id: Option<String>,
    execution_profile: Option<String>,
    executor_id: Option<String>,
}

/// The head of a conversation, `None` when no run belongs to it.
pub async fn conversation_head(
    pool: impl PgExecutor<'_>,
    conversation_id: RunId,
) -> Result<Option<ConversationHead>, StoreError> {
    let Some(row) = sqlx::query_as::<_, HeadRow>(
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
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(ConversationHead {
        conversation_id: row.conversation_id,
        provider: row.provider,
        model: row.model,
        app_id: stored_opt_id("app id of a run", row.app_id)?,
        execution_profile: stored_opt_id("execution profile of a run", row.execution_profile)?,
        executor_id: stored_opt_id("executor id of a run", row.executor_id)?,
    }))
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
    pub worker_id: Option<WorkerId>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub executor_id: Option<ExecutorId>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub failure_detail: Option<String>,
    pub evidence: Option<serde_json::Value>,
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
pub struct RunChanges {
    pub run_id: RunId,
    /// The newest event's `seq`.
    pub seq: i64,
    /// The stream sequence of the run's first event, if the batch held it.
    pub first_stream_seq: Option<i64>,
    /// Whether any event was a lifecycle event (a batch of deltas alone touches the row
    /// only to advance `seq`).
    pub lifecycle: bool,
    pub status: Option<(i64, RunStatus, Option<String>)>,
    pub claim: Option<(i64, Option<WorkerId>, Option<DateTime<Utc>>)>,
    pub executor: Option<(i64, ExecutorId)>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub failure_detail: Option<String>,
    pub evidence: Option<serde_json::Value>,
}

impl RunChanges {
    pub fn new(run_id: RunId) -> Self {
        Self {
            run_id,
            ..Default::default()
        }
    }

    /// Folds in an event that changes nothing but the run's `seq`. Events must be
    /// folded in `seq` order.
    pub fn bump(&mut self, bump: &SeqBump) {
        self.seq = self.seq.max(bump.seq);
        self.first_stream_seq = self.first_stream_seq.or(bump.first_stream_seq);
    }

    /// Folds in a lifecycle event. Events must be folded in `seq` order.
    pub fn add(&mut self, p: &Projection) {
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

// The batch update of the status projection, shared by its two statements (below).
macro_rules! apply_changes_sql {
    ($($rest:literal),*) => {
        concat!(
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
                THEN COALESCE(u.worker_id, r.worker_id) ELSE COALESCE(r.worker_id, u.worker_id) END,
            claimed_at = CASE WHEN r.last_event_seq < u.claim_seq
                THEN COALESCE(u.claimed_at, r.claimed_at) ELSE COALESCE(r.claimed_at, u.claimed_at) END,
            executor_id = CASE WHEN r.last_event_seq < u.executor_seq
                THEN COALESCE(u.executor_id, r.executor_id) ELSE COALESCE(r.executor_id, u.executor_id) END,
            started_at = COALESCE(r.started_at, u.started_at),
            completed_at = COALESCE(r.completed_at, u.completed_at),
            failure_reason = COALESCE(r.failure_reason, u.failure_reason),
            failure_detail = COALESCE(r.failure_detail, u.failure_detail),
            evidence = COALESCE(r.evidence, u.evidence),
            first_event_stream_seq = COALESCE(r.first_event_stream_seq, u.first_stream_seq),
            last_event_seq = GREATEST(r.last_event_seq, u.seq),
            updated_at = now()
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bool[], $5::text[],
                     $6::text[], $7::bigint[], $8::text[], $9::timestamptz[], $10::bigint[],
                     $11::text[], $12::bigint[], $13::timestamptz[], $14::timestamptz[],
                     $15::text[], $16::text[], $17::jsonb[])
              AS u(run_id, seq, first_stream_seq, lifecycle, status, status_detail,
                   status_seq, worker_id, claimed_at, claim_seq, executor_id, executor_seq,
                   started_at, completed_at, failure_reason, failure_detail, evidence)
         WHERE r.run_id = u.run_id
           AND (u.lifecycle OR r.last_event_seq < u.seq
                OR (u.first_stream_seq IS NOT NULL AND r.first_event_stream_seq IS NULL))
         RETURNING r.run_id)",
            $($rest),*
        )
    };
}

/// The projection's statement for a batch in which no run ended (nearly every batch).
const APPLY_CHANGES: &str = apply_changes_sql!(" SELECT run_id FROM changed");
/// The same, also resolving what the `ended` runs still had pending.
const APPLY_CHANGES_AND_ENDS: &str = apply_changes_sql!(
    ",
         ended AS (
         UPDATE human_loop_requests AS h
         SET status = 'resolved', decision = 'deny', resolved_by = 'run_ended',
             resolved_at = e.ended_at
         FROM UNNEST($18::uuid[], $19::timestamptz[]) AS e(run_id, ended_at)
         WHERE h.run_id = e.run_id AND h.status = 'pending'
           AND e.run_id IN (SELECT run_id FROM changed))
         SELECT run_id FROM changed"
);

/// Applies the changes of a batch (one entry per run) in one statement, rows locked in
/// `run_id` order (the caller sorts) so two projectors never deadlock, and resolves what
/// the `ended` runs still had pending, as [`super::human_loop::runs_ended`] does.
/// Returns the runs that are in the table; a run that is not (started through an
/// executor's standalone API) is left alone.
pub async fn apply_changes(
    conn: impl PgExecutor<'_>,
    changes: &[RunChanges],
    ended: &[(RunId, DateTime<Utc>)],
) -> Result<HashSet<RunId>, StoreError> {
    if changes.is_empty() {
        return Ok(HashSet::new());
    }
    let column = |f: &dyn Fn(&RunChanges) -> Option<i64>| -> Vec<Option<i64>> {
        changes.iter().map(f).collect()
    };
    let ids: Vec<Uuid> = changes.iter().map(|c| c.run_id).collect();
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    let lifecycle: Vec<bool> = changes.iter().map(|c| c.lifecycle).collect();
    let status: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.status.as_ref().map(|(_, s, _)| s.as_str()))
        .collect();
    let status_detail: Vec<Option<String>> = changes
        .iter()
        .map(|c| c.status.as_ref().and_then(|(_, _, d)| d.clone()))
        .collect();
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
    let executor_id: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.executor.as_ref().map(|(_, e)| e.as_str()))
        .collect();
    let mut query = sqlx::query_scalar::<_, Uuid>(if ended.is_empty() {
        APPLY_CHANGES
    } else {
        APPLY_CHANGES_AND_ENDS
    })
    .bind(&ids)
    .bind(&seqs)
    .bind(column(&|c| c.first_stream_seq))
    .bind(&lifecycle)
    .bind(&status)
    .bind(&status_detail)
    .bind(column(&|c| c.status.as_ref().map(|(seq, _, _)| *seq)))
    .bind(&worker_id)
    .bind(&claimed_at)
    .bind(column(&|c| c.claim.as_ref().map(|(seq, _, _)| *seq)))
    .bind(&executor_id)
    .bind(column(&|c| c.executor.as_ref().map(|(seq, _)| *seq)))
    .bind(changes.iter().map(|c| c.started_at).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.completed_at).collect::<Vec<_>>())
    .bind(
        changes
            .iter()
            .map(|c| c.failure_reason.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        changes
            .iter()
            .map(|c| c.failure_detail.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        changes
            .iter()
            .map(|c| c.evidence.clone())
            .collect::<Vec<_>>(),
    );
    if !ended.is_empty() {
        let ended_ids: Vec<Uuid> = ended.iter().map(|(id, _)| *id).collect();
        let ended_at: Vec<DateTime<Utc>> = ended.iter().map(|(_, at)| *at).collect();
        query = query.bind(ended_ids).bind(ended_at);
    }
    // Prepared once per connection: planning this statement costs several times its
    // execution, and most batches carry one or two events. A generic plan made while
    // `runs` was small scans the whole table until it is made again; the projector
    // makes it again now and then (`refresh_plans`).
    let rows = query.fetch_all(conn).await?;
    Ok(rows.into_iter().collect())
}

/// Batches a connection serves with its prepared projection statements before
/// [`refresh_plans`] prepares them again.
pub const REFRESH_PLANS_EVERY: u32 = 256;

/// Forgets `conn`'s prepared statements, so the next batches are planned for the tables
/// as they are now. Postgres keeps a statement's generic plan for the connection's life
/// (or until the next ANALYZE), and one made while `runs` held a few rows reads the
/// whole table for every batch once it holds thousands; planned at most
/// [`REFRESH_PLANS_EVERY`] batches ago, a plan lags the table by at most that many
/// batches' runs. Once `runs` is large enough for the key lookup to win, every plan
/// made keeps it.
pub async fn refresh_plans(conn: &mut PgConnection) -> Result<(), StoreError> {
    use sqlx::Connection as _;
    conn.clear_cached_statements().await?;
    Ok(())
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
}
