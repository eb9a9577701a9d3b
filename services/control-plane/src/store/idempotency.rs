//! Idempotency keys of run starts, kept on the run they started (see
//! [`crate::idempotency`]).

use super::StoreError;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// The run a key started, with what its `202` said.
#[derive(Debug, Clone)]
pub(crate) struct KeyedRun {
    pub(crate) run_id: Uuid,
    pub(crate) conversation_id: Uuid,
    pub(crate) provider: String,
    pub(crate) model: Option<String>,
    pub(crate) idempotency_fingerprint: Vec<u8>,
}

/// The run `principal` started with `key` at or after `since`.
pub(crate) async fn find(
    conn: impl PgExecutor<'_>,
    principal: &str,
    key: &str,
    since: DateTime<Utc>,
) -> Result<Option<KeyedRun>, StoreError> {
    Ok(sqlx::query_as!(
        KeyedRun,
        r#"SELECT run_id, conversation_id, provider, model,
                  idempotency_fingerprint AS "idempotency_fingerprint!"
           FROM runs
           WHERE created_by = $1 AND idempotency_key = $2 AND created_at >= $3
             AND idempotency_fingerprint IS NOT NULL"#,
        principal,
        key,
        since,
    )
    .fetch_optional(conn)
    .await?)
}

/// Takes the key's lock until the transaction ends, so that a retry racing the first
/// attempt waits for its commit and then finds its run.
pub(crate) async fn lock(
    conn: &mut PgConnection,
    principal: &str,
    key: &str,
) -> Result<(), StoreError> {
    // A 64-bit key from a hash of both parts (a collision only serialises two unrelated
    // starts for the length of a transaction).
    let digest = Sha256::new()
        .chain_update(principal.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1)",
        i64::from_be_bytes(bytes)
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Frees a key whose window has passed (held by a run created before `since`), so that
/// it can start a new run.
pub(crate) async fn release_expired(
    conn: impl PgExecutor<'_>,
    principal: &str,
    key: &str,
    since: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE runs SET idempotency_key = NULL
         WHERE created_by = $1 AND idempotency_key = $2 AND created_at < $3",
        principal,
        key,
        since,
    )
    .execute(conn)
    .await?;
    Ok(())
}
