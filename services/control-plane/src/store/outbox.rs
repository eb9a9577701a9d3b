//! The transactional outbox: run commands (and their `run.queued` event) accepted but
//! not yet acknowledged by JetStream.

use super::StoreError;
use sqlx::{PgConnection, PgExecutor};
use switchyard_contracts::event::RunQueued;
use switchyard_contracts::{RunCommand, RunId};
use switchyard_platform::trace::TraceParent;

/// One pending publication.
#[derive(Debug, Clone)]
pub(crate) struct OutboxEntry {
    pub(crate) id: i64,
    pub(crate) run_id: RunId,
    pub(crate) queued: RunQueued,
    pub(crate) command: RunCommand,
    /// The start request's trace, for the command's `traceparent` header. Not stored:
    /// a command the sweeper republishes after a crash goes out without one.
    pub(crate) trace: Option<TraceParent>,
}

#[derive(Debug)]
struct OutboxRow {
    id: i64,
    run_id: uuid::Uuid,
    queued_event: serde_json::Value,
    command: serde_json::Value,
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
            trace: None,
        })
    }
}

/// Removes published entries.
pub(crate) async fn delete_many(conn: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks up to `limit` entries older than `min_age_ms` for this transaction, skipping
/// ones another control-plane is republishing. Entries that cannot be decoded are
/// returned as errors next to the good ones so one bad row does not block the rest.
pub(crate) async fn lock_stale(
    conn: &mut PgConnection,
    min_age_ms: i64,
    limit: i64,
) -> Result<Vec<Result<OutboxEntry, (i64, StoreError)>>, StoreError> {
    let rows = sqlx::query_as!(
        OutboxRow,
        "SELECT id, run_id, queued_event, command FROM outbox
         WHERE created_at < now() - ($1::bigint * interval '1 millisecond')
         ORDER BY id
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
        min_age_ms,
        limit,
    )
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
