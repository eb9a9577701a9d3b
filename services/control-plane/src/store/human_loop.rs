//! Human-loop requests of runs, as projected from `human_loop.requested` and
//! `human_loop.resolved`. Either may be applied first after a redelivery, so both are
//! upserts that only fill in their own fields, and a resolved request stays resolved.

use super::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use switchyard_contracts::RunId;

#[derive(Debug, Clone)]
pub struct Requested {
    pub run_id: RunId,
    pub request_id: String,
    pub kind: String,
    pub prompt: String,
    pub details: serde_json::Value,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub run_id: RunId,
    pub request_id: String,
    pub decision: String,
    pub resolved_at: DateTime<Utc>,
}

/// Records a pending request (a no-op for a run that is not in the table).
pub async fn requested(conn: &mut PgConnection, r: &Requested) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO human_loop_requests
            (run_id, request_id, kind, prompt, details, status, requested_at)
         SELECT $1, $2, $3, $4, $5, 'pending', $6
         WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = $1)
         ON CONFLICT (run_id, request_id) DO UPDATE SET
            kind = EXCLUDED.kind,
            prompt = EXCLUDED.prompt,
            details = EXCLUDED.details,
            requested_at = COALESCE(human_loop_requests.requested_at, EXCLUDED.requested_at)",
    )
    .bind(r.run_id)
    .bind(&r.request_id)
    .bind(&r.kind)
    .bind(&r.prompt)
    .bind(&r.details)
    .bind(r.requested_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a request resolved (creating the row if its request was not applied yet).
pub async fn resolved(conn: &mut PgConnection, r: &Resolved) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO human_loop_requests (run_id, request_id, status, decision, resolved_at)
         SELECT $1, $2, 'resolved', $3, $4
         WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = $1)
         ON CONFLICT (run_id, request_id) DO UPDATE SET
            status = 'resolved',
            decision = COALESCE(human_loop_requests.decision, EXCLUDED.decision),
            resolved_at = COALESCE(human_loop_requests.resolved_at, EXCLUDED.resolved_at)",
    )
    .bind(r.run_id)
    .bind(&r.request_id)
    .bind(&r.decision)
    .bind(r.resolved_at)
    .execute(conn)
    .await?;
    Ok(())
}
