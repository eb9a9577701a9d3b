//! Principals, their API tokens (only SHA-256 hashes are stored) and app memberships.

use super::StoreError;
use super::columns::StoredRole;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use switchyard_contracts::auth::Role;
use switchyard_contracts::{AppId, PrincipalId, TokenId};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub(crate) struct PrincipalRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) apps: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenRow {
    pub(crate) id: Uuid,
    pub(crate) principal_id: Uuid,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

/// What an active token resolves to.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) principal_id: Uuid,
    pub(crate) role: Role,
    pub(crate) apps: Vec<String>,
}

// The columns of a `PrincipalRow`, in one place: `query_as!` takes literals joined by
// `+`, so the shared part and each caller's rest stay static SQL the compiler checks.
macro_rules! select_principals {
    ($rest:literal $(, $($args:tt)*)?) => {
        sqlx::query_as!(
            PrincipalRow,
            r#"SELECT p.id, p.name, p.role AS "role: StoredRole", p.created_at,
                      ARRAY(SELECT a.app_id FROM principal_apps a
                            WHERE a.principal_id = p.id ORDER BY a.app_id) AS "apps!"
               FROM principals p "# + $rest
            $(, $($args)*)?
        )
    };
}

/// Creates a principal with its memberships and first token, in one transaction.
pub(crate) async fn create(
    pool: &PgPool,
    name: &str,
    role: Role,
    apps: &[AppId],
    token_hash: &[u8],
) -> Result<(PrincipalRow, TokenId), StoreError> {
    let id = PrincipalId::from_uuid(Uuid::now_v7());
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO principals (id, name, role) VALUES ($1, $2, $3)",
        id.as_uuid(),
        name,
        StoredRole::from(role) as StoredRole,
    )
    .execute(&mut *tx)
    .await?;
    insert_memberships(&mut tx, id, apps).await?;
    let token_id = insert_token(&mut tx, id, token_hash).await?;
    tx.commit().await?;
    let principal = get(pool, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok((principal, token_id))
}

async fn insert_memberships(
    conn: &mut sqlx::PgConnection,
    principal_id: PrincipalId,
    apps: &[AppId],
) -> Result<(), StoreError> {
    let apps: Vec<String> = apps.iter().map(|app| app.as_str().to_owned()).collect();
    sqlx::query!(
        "INSERT INTO principal_apps (principal_id, app_id)
         SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        principal_id.as_uuid(),
        &apps,
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_token(
    conn: &mut sqlx::PgConnection,
    principal_id: PrincipalId,
    token_hash: &[u8],
) -> Result<TokenId, StoreError> {
    let id = TokenId::from_uuid(Uuid::now_v7());
    sqlx::query!(
        "INSERT INTO api_tokens (id, principal_id, token_hash) VALUES ($1, $2, $3)",
        id.as_uuid(),
        principal_id.as_uuid(),
        token_hash,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// A new token for an existing principal; `None` when there is no such principal.
pub(crate) async fn add_token(
    pool: &PgPool,
    principal_id: PrincipalId,
    token_hash: &[u8],
) -> Result<Option<TokenId>, StoreError> {
    let mut tx = pool.begin().await?;
    if !lock(&mut tx, principal_id).await? {
        return Ok(None);
    }
    let id = insert_token(&mut tx, principal_id, token_hash).await?;
    tx.commit().await?;
    Ok(Some(id))
}

pub(crate) async fn get(
    pool: &PgPool,
    id: PrincipalId,
) -> Result<Option<PrincipalRow>, StoreError> {
    Ok(select_principals!("WHERE p.id = $1", id.as_uuid())
        .fetch_optional(pool)
        .await?)
}

pub(crate) async fn list(pool: &PgPool) -> Result<Vec<PrincipalRow>, StoreError> {
    Ok(select_principals!("ORDER BY p.created_at, p.id")
        .fetch_all(pool)
        .await?)
}

pub(crate) async fn tokens(pool: &PgPool) -> Result<Vec<TokenRow>, StoreError> {
    Ok(sqlx::query_as!(
        TokenRow,
        "SELECT id, principal_id, created_at, revoked_at FROM api_tokens ORDER BY created_at, id"
    )
    .fetch_all(pool)
    .await?)
}

/// Replaces a principal's memberships; `false` when there is no such principal.
pub(crate) async fn set_apps(
    pool: &PgPool,
    id: PrincipalId,
    apps: &[AppId],
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    if !lock(&mut tx, id).await? {
        return Ok(false);
    }
    sqlx::query!(
        "DELETE FROM principal_apps WHERE principal_id = $1",
        id.as_uuid()
    )
    .execute(&mut *tx)
    .await?;
    insert_memberships(&mut tx, id, apps).await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes a token; the principal it belonged to, `None` when there is no such token.
/// Revoking twice is harmless.
pub(crate) async fn revoke(
    pool: &PgPool,
    token_id: TokenId,
) -> Result<Option<PrincipalId>, StoreError> {
    Ok(sqlx::query_scalar!(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 RETURNING principal_id",
        token_id.as_uuid()
    )
    .fetch_optional(pool)
    .await?
    .map(PrincipalId::from_uuid))
}

/// Revokes every active token of a principal; how many, `None` when there is no such
/// principal.
pub(crate) async fn revoke_all(
    pool: &PgPool,
    principal_id: PrincipalId,
) -> Result<Option<u64>, StoreError> {
    let mut tx = pool.begin().await?;
    if !lock(&mut tx, principal_id).await? {
        return Ok(None);
    }
    let result = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE principal_id = $1 AND revoked_at IS NULL",
        principal_id.as_uuid()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(result.rows_affected()))
}

/// Changes a principal's role; `false` when there is no such principal.
pub(crate) async fn set_role(
    pool: &PgPool,
    id: PrincipalId,
    role: Role,
) -> Result<bool, StoreError> {
    let result = sqlx::query!(
        "UPDATE principals SET role = $2 WHERE id = $1",
        id.as_uuid(),
        StoredRole::from(role) as StoredRole,
    )
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes a principal with its tokens and memberships (the foreign keys cascade);
/// `false` when there is no such principal. Runs keep its id in `created_by`.
pub(crate) async fn delete(pool: &PgPool, id: PrincipalId) -> Result<bool, StoreError> {
    let result = sqlx::query!("DELETE FROM principals WHERE id = $1", id.as_uuid())
        .execute(pool)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The tokens of one principal.
pub(crate) async fn tokens_of(
    pool: &PgPool,
    principal_id: PrincipalId,
) -> Result<Vec<TokenRow>, StoreError> {
    Ok(sqlx::query_as!(
        TokenRow,
        "SELECT id, principal_id, created_at, revoked_at FROM api_tokens
         WHERE principal_id = $1 ORDER BY created_at, id",
        principal_id.as_uuid()
    )
    .fetch_all(pool)
    .await?)
}

/// Locks the principal's row for the transaction; `false` when there is none.
async fn lock(conn: &mut sqlx::PgConnection, id: PrincipalId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM principals WHERE id = $1 FOR UPDATE",
        id.as_uuid()
    )
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// The principal of an active (not revoked) token.
pub(crate) async fn resolve(
    pool: &PgPool,
    token_hash: &[u8],
) -> Result<Option<Resolved>, StoreError> {
    Ok(sqlx::query_as!(
        Resolved,
        r#"SELECT p.id AS principal_id, p.role AS "role: StoredRole",
                  ARRAY(SELECT a.app_id FROM principal_apps a
                        WHERE a.principal_id = p.id ORDER BY a.app_id) AS "apps!"
           FROM api_tokens t JOIN principals p ON p.id = t.principal_id
           WHERE t.token_hash = $1 AND t.revoked_at IS NULL"#,
        token_hash
    )
    .fetch_optional(pool)
    .await?)
}
