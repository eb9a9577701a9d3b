//! Human-loop requests of runs, as projected from `human_loop.requested` and
//! `human_loop.resolved`. Either may be applied first after a redelivery, so both are
//! upserts that only fill in their own fields, and a resolved request stays resolved.
//! When a run ends, whatever is still pending is resolved `run_ended` (the run's owner
//! may be gone — an executor lost — and never write a resolution).

use super::StoreError;
use super::columns::{HumanLoopStatus, StoredDecision, StoredResolver};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use switchyard_contracts::event::{HumanLoopDecision, HumanLoopResolver};
use switchyard_contracts::{HumanLoopRequestId, RunId};

#[derive(Debug, Clone)]
pub(crate) struct Requested {
    pub(crate) run_id: RunId,
    pub(crate) request_id: HumanLoopRequestId,
    pub(crate) kind: String,
    pub(crate) prompt: String,
    pub(crate) details: serde_json::Value,
    pub(crate) requested_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) run_id: RunId,
    pub(crate) request_id: HumanLoopRequestId,
    pub(crate) decision: HumanLoopDecision,
    pub(crate) resolved_by: HumanLoopResolver,
    pub(crate) resolved_at: DateTime<Utc>,
}

/// A stored request, as listed by `GET /api/runs/{id}/human-loop`.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) request_id: String,
    pub(crate) kind: Option<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) details: Option<serde_json::Value>,
    pub(crate) status: HumanLoopStatus,
    pub(crate) decision: Option<StoredDecision>,
    pub(crate) resolved_by: Option<StoredResolver>,
    pub(crate) requested_at: Option<DateTime<Utc>>,
    pub(crate) resolved_at: Option<DateTime<Utc>>,
}

/// Records a pending request (a no-op for a run that is not in the table). A request
/// applied after its run's end (a late redelivery) is recorded resolved `run_ended`.
pub(crate) async fn requested(conn: &mut PgConnection, r: &Requested) -> Result<(), StoreError> {
    // A CASE of literals is `text`; the casts give it the columns' types.
    sqlx::query!(
        "INSERT INTO human_loop_requests
            (run_id, request_id, kind, prompt, details, status, requested_at,
             decision, resolved_by, resolved_at)
         SELECT $1, $2, $3, $4, $5,
                CASE WHEN runs.completed_at IS NULL THEN 'pending' ELSE 'resolved' END
                    ::human_loop_status,
                $6,
                CASE WHEN runs.completed_at IS NULL THEN NULL ELSE 'deny' END
                    ::human_loop_decision,
                CASE WHEN runs.completed_at IS NULL THEN NULL ELSE 'run_ended' END
                    ::human_loop_resolver,
                runs.completed_at
         FROM runs WHERE runs.run_id = $1
         ON CONFLICT (run_id, request_id) DO UPDATE SET
            kind = EXCLUDED.kind,
            prompt = EXCLUDED.prompt,
            details = EXCLUDED.details,
            requested_at = COALESCE(human_loop_requests.requested_at, EXCLUDED.requested_at)",
        r.run_id,
        r.request_id.as_str(),
        r.kind,
        r.prompt,
        r.details,
        r.requested_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a request resolved (creating the row if its request was not applied yet).
/// The first resolution wins, except over a `run_ended` one: that may be the
/// projection's own clean-up at `run.completed`, applied before a real resolution that
/// was redelivered late.
pub(crate) async fn resolved(conn: &mut PgConnection, r: &Resolved) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO human_loop_requests
            (run_id, request_id, status, decision, resolved_by, resolved_at)
         SELECT $1, $2, 'resolved', $3, $4, $5
         WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = $1)
         ON CONFLICT (run_id, request_id) DO UPDATE SET
            status = 'resolved',
            decision = CASE WHEN human_loop_requests.decision IS NULL
                              OR human_loop_requests.resolved_by = 'run_ended'
                            THEN EXCLUDED.decision ELSE human_loop_requests.decision END,
            resolved_by = CASE WHEN human_loop_requests.decision IS NULL
                              OR human_loop_requests.resolved_by = 'run_ended'
                            THEN EXCLUDED.resolved_by ELSE human_loop_requests.resolved_by END,
            resolved_at = CASE WHEN human_loop_requests.resolved_at IS NULL
                              OR human_loop_requests.resolved_by = 'run_ended'
                            THEN EXCLUDED.resolved_at ELSE human_loop_requests.resolved_at END",
        r.run_id,
        r.request_id.as_str(),
        StoredDecision::from(r.decision) as StoredDecision,
        StoredResolver::from(r.resolved_by) as StoredResolver,
        r.resolved_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Resolves every request still pending of runs that ended, `deny` by `run_ended`:
/// applied with each run's `run.completed`, which may come from the reconciler for a run
/// whose executor is gone and will never resolve them. One statement for a batch.
pub(crate) async fn runs_ended(
    conn: &mut PgConnection,
    ended: &[(RunId, DateTime<Utc>)],
) -> Result<u64, StoreError> {
    if ended.is_empty() {
        return Ok(0);
    }
    let ids: Vec<RunId> = ended.iter().map(|(id, _)| *id).collect();
    let times: Vec<DateTime<Utc>> = ended.iter().map(|(_, at)| *at).collect();
    let done = sqlx::query!(
        "UPDATE human_loop_requests AS h
         SET status = 'resolved', decision = 'deny', resolved_by = 'run_ended',
             resolved_at = e.ended_at
         FROM UNNEST($1::uuid[], $2::timestamptz[]) AS e(run_id, ended_at)
         WHERE h.run_id = e.run_id AND h.status = 'pending'",
        &ids,
        &times,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The requests of a run, oldest first; only the pending ones with `pending_only`.
pub(crate) async fn list(
    pool: impl PgExecutor<'_>,
    run_id: RunId,
    pending_only: bool,
) -> Result<Vec<Row>, StoreError> {
    Ok(sqlx::query_as!(
        Row,
        r#"SELECT request_id, kind, prompt, details, status AS "status: HumanLoopStatus",
                  decision AS "decision: StoredDecision",
                  resolved_by AS "resolved_by: StoredResolver", requested_at, resolved_at
           FROM human_loop_requests
           WHERE run_id = $1 AND (NOT $2 OR status = 'pending')
           ORDER BY requested_at NULLS LAST, request_id
           LIMIT 1000"#,
        run_id,
        pending_only,
    )
    .fetch_all(pool)
    .await?)
}
