//! Principal and token management (admins only; [`crate::access::enforce`] checks
//! the role) and the gateway's internal token resolution.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/principals` `{name, role, apps[]}` | 201 principal + `token` (shown once) |
//! | `GET /api/principals` | 200 `{principals: [… tokens: [{id, createdAt, revokedAt}]]}` |
//! | `POST /api/principals/{id}/tokens` | 201 `{tokenId, token}` |
//! | `PUT /api/principals/{id}/apps` `{apps[]}` | 200 principal |
//! | `DELETE /api/tokens/{id}` | 204 |
//! | `POST /internal/auth/resolve` `{token}` | 200 `{principalId, role, apps}`; 401 |
//!
//! Tokens are `sy_` + base64url of random bytes, stored as SHA-256: a token is a
//! high-entropy secret, so a fast unsalted hash is enough (no dictionary to attack)
//! and lets the lookup be one indexed equality.

use super::{AppState, not_found};
use crate::access::Role;
use crate::runs::is_valid_name;
use crate::store::principals::{self, PrincipalRow};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post, put};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_platform::http::{ApiError, Json};
use uuid::Uuid;

const MAX_NAME_CHARS: usize = 200;
const MAX_APPS: usize = 1000;
const TOKEN_PREFIX: &str = "sy_";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/principals", post(create).get(list))
        .route("/api/principals/{id}/tokens", post(new_token))
        .route("/api/principals/{id}/apps", put(set_apps))
        .route("/api/tokens/{id}", delete(revoke))
        .route("/internal/auth/resolve", post(resolve))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePrincipal {
    name: String,
    role: String,
    #[serde(default)]
    apps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetApps {
    apps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveRequest {
    token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResolveResponse {
    principal_id: Uuid,
    role: String,
    apps: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    id: Uuid,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalView {
    id: Uuid,
    name: String,
    role: String,
    apps: Vec<String>,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<Vec<TokenView>>,
}

impl From<PrincipalRow> for PrincipalView {
    fn from(row: PrincipalRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            role: row.role,
            apps: row.apps,
            created_at: row.created_at,
            tokens: None,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedPrincipal {
    #[serde(flatten)]
    principal: PrincipalView,
    token_id: Uuid,
    /// The only time the plaintext token is shown.
    token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedToken {
    token_id: Uuid,
    token: String,
}

#[derive(Debug, Serialize)]
struct PrincipalList {
    principals: Vec<PrincipalView>,
}

/// A fresh token and its stored hash.
fn new_secret() -> (String, [u8; 32]) {
    // Two v4 UUIDs: 244 bits from the OS CSPRNG (uuid uses getrandom), without adding
    // another randomness crate to the workspace.
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&token);
    (token, hash)
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

fn check_apps(apps: &[String]) -> Result<(), ApiError> {
    if apps.len() > MAX_APPS || !apps.iter().all(|a| is_valid_name(a)) {
        return Err(invalid(format!(
            "`apps` must list at most {MAX_APPS} app ids of 1-64 characters of A-Z, a-z, 0-9, `_` and `-`"
        )));
    }
    Ok(())
}

fn principal_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    path.ok()
        .and_then(|Path(raw)| Uuid::parse_str(&raw).ok())
        .ok_or_else(|| invalid("the id must be a UUID"))
}

fn principal_not_found(id: Uuid) -> ApiError {
    not_found("principal_not_found", format!("no principal {id}"))
}

async fn create(
    State(state): State<AppState>,
    Json(request): Json<CreatePrincipal>,
) -> Result<(StatusCode, Json<CreatedPrincipal>), ApiError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(invalid(format!(
            "`name` must be 1-{MAX_NAME_CHARS} characters without NUL"
        )));
    }
    let role = Role::parse(&request.role)
        .ok_or_else(|| invalid("`role` must be admin, operator, developer or viewer"))?;
    check_apps(&request.apps)?;
    let (token, hash) = new_secret();
    let (row, token_id) =
        principals::create(&state.pool, name, role.as_str(), &request.apps, &hash).await?;
    tracing::info!(principal = %row.id, role = role.as_str(), "principal created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedPrincipal {
            principal: row.into(),
            token_id,
            token,
        }),
    ))
}

async fn list(State(state): State<AppState>) -> Result<Json<PrincipalList>, ApiError> {
    let rows = principals::list(&state.pool).await?;
    let tokens = principals::tokens(&state.pool).await?;
    let principals = rows
        .into_iter()
        .map(|row| {
            let id = row.id;
            let mut view = PrincipalView::from(row);
            view.tokens = Some(
                tokens
                    .iter()
                    .filter(|t| t.principal_id == id)
                    .map(|t| TokenView {
                        id: t.id,
                        created_at: t.created_at,
                        revoked_at: t.revoked_at,
                    })
                    .collect(),
            );
            view
        })
        .collect();
    Ok(Json(PrincipalList { principals }))
}

async fn new_token(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let id = principal_id(path)?;
    let (token, hash) = new_secret();
    let token_id = principals::add_token(&state.pool, id, &hash)
        .await?
        .ok_or_else(|| principal_not_found(id))?;
    tracing::info!(principal = %id, token = %token_id, "token issued");
    Ok((StatusCode::CREATED, Json(CreatedToken { token_id, token })))
}

async fn set_apps(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Json(request): Json<SetApps>,
) -> Result<Json<PrincipalView>, ApiError> {
    let id = principal_id(path)?;
    check_apps(&request.apps)?;
    if !principals::set_apps(&state.pool, id, &request.apps).await? {
        return Err(principal_not_found(id));
    }
    let row = principals::get(&state.pool, id)
        .await?
        .ok_or_else(|| principal_not_found(id))?;
    Ok(Json(row.into()))
}

async fn revoke(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = principal_id(path)?;
    if !principals::revoke(&state.pool, id).await? {
        return Err(not_found("token_not_found", format!("no token {id}")));
    }
    tracing::info!(token = %id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The gateway's question "whose token is this?". Not under `/api/`, so the gateway
/// never forwards a client to it.
async fn resolve(
    State(state): State<AppState>,
    Json(request): Json<ResolveRequest>,
) -> Result<Json<ResolveResponse>, ApiError> {
    if !request.token.starts_with(TOKEN_PREFIX) {
        return Err(ApiError::unauthorized("unknown token"));
    }
    let resolved = principals::resolve(&state.pool, &hash_token(&request.token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    Ok(Json(ResolveResponse {
        principal_id: resolved.principal_id,
        role: resolved.role,
        apps: resolved.apps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_hash_to_what_is_stored() {
        let (a, hash_a) = new_secret();
        let (b, _) = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a), hash_a);
        assert_ne!(&hash_a[..], a.as_bytes());
    }
}
