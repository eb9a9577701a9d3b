//! SQL of the reconciler: runs the projection says an executor owns, and runs that have
//! waited for a dispatch suspiciously long with nothing left to publish for them.

use super::columns::StoredRunStatus;
use super::{StoreError, stored_id, stored_opt_id};
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use switchyard_contracts::{ExecutorId, RunCommand, RunId, RunStatus};
use uuid::Uuid;

/// A run the projection shows as owned by an executor (dispatched, running or waiting
/// for a human).
#[derive(Debug, Clone)]
pub(crate) struct OwnedRun {
    pub(crate) run_id: Uuid,
    pub(crate) status: RunStatus,
    pub(crate) executor_id: String,
    /// Time of its `run.started` event (the executor's clock), when projected.
    pub(crate) started_at: Option<DateTime<Utc>>,
}

/// Executors the projection shows owning runs.
pub(crate) async fn owning_executors(
    pool: impl PgExecutor<'_>,
) -> Result<Vec<ExecutorId>, StoreError> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT executor_id AS "executor_id!" FROM runs
           WHERE status IN ('dispatched', 'running', 'waiting_for_human')
             AND executor_id IS NOT NULL"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|id| stored_id("executor id of a run", id))
    .collect()
}

/// Runs owned by `executor_id`, by run id after `after`. With `started_before`, only
/// runs that started before it or have no projected start yet: a process that started
/// at that time cannot own the others' predecessors.
pub(crate) async fn owned_runs(
    pool: impl PgExecutor<'_>,
    executor_id: &ExecutorId,
    started_before: Option<DateTime<Utc>>,
    after: Option<RunId>,
    limit: i64,
) -> Result<Vec<OwnedRun>, StoreError> {
    Ok(sqlx::query_as!(
        OwnedRun,
        r#"SELECT run_id, status AS "status: StoredRunStatus",
                  executor_id AS "executor_id!", started_at
           FROM runs
           WHERE status IN ('dispatched', 'running', 'waiting_for_human')
             AND executor_id = $1
             AND ($2::timestamptz IS NULL OR started_at IS NULL OR started_at < $2)
             AND ($3::uuid IS NULL OR run_id > $3)
           ORDER BY run_id
           LIMIT $4"#,
        executor_id.as_str(),
        started_before,
        after,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// A run still waiting for a dispatch: everything needed to publish its command again.
#[derive(Debug, Clone)]
pub(crate) struct WaitingRun {
    pub(crate) run_id: Uuid,
    pub(crate) status: RunStatus,
    pub(crate) provider: String,
    pub(crate) model: Option<String>,
    pub(crate) prompt: String,
    pub(crate) app_id: Option<String>,
    pub(crate) execution_profile: Option<String>,
    pub(crate) provider_options: serde_json::Value,
    pub(crate) credential_env: Vec<String>,
    pub(crate) timeout_ms: Option<i64>,
    pub(crate) conversation_id: Uuid,
    pub(crate) created_at: DateTime<Utc>,
    /// Seconds since the projection last changed the run (database clock).
    pub(crate) idle_secs: f64,
    /// Executor of the conversation's latest other run that got one (its workspace is
    /// there), as `POST /api/runs/start` prefers it.
    pub(crate) preferred_executor: Option<String>,
}

impl WaitingRun {
    /// The run command as it was accepted.
    pub(crate) fn command(&self) -> Result<RunCommand, StoreError> {
        Ok(RunCommand {
            run_id: self.run_id,
            provider: self.provider.clone(),
            model: self.model.clone(),
            prompt: self.prompt.clone(),
            app_id: stored_opt_id("app id of a run", self.app_id.clone())?,
            execution_profile: stored_opt_id(
                "execution profile of a run",
                self.execution_profile.clone(),
            )?,
            provider_options: self.provider_options.clone(),
            credential_env: self.credential_env.clone(),
            timeout_ms: self.timeout_ms.and_then(|t| u64::try_from(t).ok()),
            conversation_id: Some(self.conversation_id),
            preferred_executor: stored_opt_id(
                "executor id of a run",
                self.preferred_executor.clone(),
            )?,
            created_at: self.created_at,
        })
    }

    pub(crate) fn id(&self) -> RunId {
        self.run_id
    }
}

// The columns of a `WaitingRun`, in one place: `query_as!` takes literals joined by
// `+`, so the shared part and each caller's rest stay static SQL the compiler checks.
macro_rules! select_waiting {
    ($rest:literal $(, $($args:tt)*)?) => {
        sqlx::query_as!(
            WaitingRun,
            r#"SELECT r.run_id, r.status AS "status: StoredRunStatus", r.provider, r.model,
                      r.prompt, r.app_id, r.execution_profile, r.provider_options,
                      r.credential_env, r.timeout_ms, r.conversation_id, r.created_at,
                      EXTRACT(EPOCH FROM (now() - r.updated_at))::float8 AS "idle_secs!",
                      (SELECT e.executor_id FROM runs e
                        WHERE e.conversation_id = r.conversation_id AND e.run_id <> r.run_id
                          AND e.executor_id IS NOT NULL
                        ORDER BY e.created_at DESC, e.run_id DESC LIMIT 1) AS preferred_executor
               FROM runs r "# + $rest
            $(, $($args)*)?
        )
    };
}

/// The row of one run, to publish its command again (a run dispatched to an executor
/// that was lost before the run started). `None` when the run is not in the table.
pub(crate) async fn command_of(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
) -> Result<Option<WaitingRun>, StoreError> {
    Ok(select_waiting!("WHERE r.run_id = $1", run_id)
        .fetch_optional(pool)
        .await?)
}

/// Runs `queued` or `claimed` whose projection has not moved for `idle_ms` and that have
/// no outbox entry (a pending publication is the outbox sweeper's business), by run id
/// after `after`.
pub(crate) async fn waiting_runs(
    pool: impl PgExecutor<'_>,
    idle_ms: i64,
    after: Option<RunId>,
    limit: i64,
) -> Result<Vec<WaitingRun>, StoreError> {
    Ok(select_waiting!(
        "WHERE r.status IN ('queued', 'claimed')
           AND r.updated_at < now() - ($1::bigint * interval '1 millisecond')
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.run_id)
           AND ($2::uuid IS NULL OR r.run_id > $2)
         ORDER BY r.run_id
         LIMIT $3",
        idle_ms,
        after,
        limit,
    )
    .fetch_all(pool)
    .await?)
}
