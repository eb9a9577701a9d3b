//! The transactional outbox: run commands (and their `run.queued` event) accepted but
//! not yet acknowledged by JetStream.

use super::StoreError;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{RunCommand, RunId};

/// One pending publication.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub run_id: RunId,
    pub queued: RunQueued,
    pub command: RunCommand,
}

#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    run_id: uuid::Uuid,
    queued_event: serde_json::Value,
    command: serde_json::Value,
    #[allow(dead_code)]
    created_at: DateTime<Utc>,
}

impl OutboxRow {
    fn decode(self) -> Result<OutboxEntry, StoreError> {
        let corrupt = |source| StoreError::Corrupt {
            what: "outbox entry",
            source,
        };
        Ok(OutboxEntry {
            id: self.id,
            run_id: self.run_id,
            queued: serde_json::from_value(self.queued_event).map_err(corrupt)?,
            command: serde_json::from_value(self.command).map_err(corrupt)?,
        })
    }
}

/// Adds an entry; call it in the transaction that inserts the run. Returns its id.
pub async fn insert(
    conn: &mut PgConnection,
    run_id: RunId,
    queued: &RunQueued,
    command: &RunCommand,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar::<_, i64>(
        "INSERT INTO outbox (run_id, queued_event, command) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(run_id)
    .bind(Json(queued))
    .bind(Json(command))
    .fetch_one(conn)
    .await?)
}

/// Removes a published entry.
pub async fn delete(conn: impl PgExecutor<'_>, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes published entries.
pub async fn delete_many(conn: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks up to `limit` entries older than `min_age_ms` for this transaction, skipping
/// ones another control-plane is republishing. Entries that cannot be decoded are
/// returned as errors next to the good ones so one bad row does not block the rest.
pub async fn lock_stale(
    conn: &mut PgConnection,
    min_age_ms: i64,
    limit: i64,
) -> Result<Vec<Result<OutboxEntry, (i64, StoreError)>>, StoreError> {
    let rows = sqlx::query_as::<_, OutboxRow>(
        "SELECT id, run_id, queued_event, command, created_at FROM outbox
         WHERE created_at < now() - ($1 * interval '1 millisecond')
         ORDER BY id
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(min_age_ms)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let id = row.id;
            row.decode().map_err(|e| (id, e))
        })
        .collect())
}

/// How many entries are waiting (for tests and diagnostics).
pub async fn count(conn: impl PgExecutor<'_>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
        .fetch_one(conn)
        .await?)
}
