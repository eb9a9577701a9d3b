//! Principal and token management (admins only; [`super::access::enforce`] checks
//! the role) and the gateway's internal token resolution. Bodies are the wire types of
//! [`switchyard_contracts::principals`].
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/principals` `{name, role, apps[]}` | 201 principal + `token` (shown once); 404 `app_not_found` for an app not registered |
//! | `GET /api/principals` | 200 `{principals: [… tokens: [{id, createdAt, revokedAt}]]}` |
//! | `GET /api/principals/{id}` | 200 principal with its tokens |
//! | `PUT /api/principals/{id}/role` `{role}` | 200 principal |
//! | `PUT /api/principals/{id}/apps` `{apps[]}` | 200 principal; 404 `app_not_found` for an app not registered |
//! | `DELETE /api/principals/{id}` | 204 (its tokens and memberships go with it) |
//! | `POST /api/principals/{id}/tokens` | 201 `{tokenId, token}` |
//! | `DELETE /api/principals/{id}/tokens` | 200 `{revoked}`: every active token revoked |
//! | `DELETE /api/tokens/{id}` | 204 |
//! | `POST /internal/auth/resolve` `{token}` | 200 `{principalId, role, apps}`; 401 |
//!
//! Every change to what a principal may do (role, apps, deletion, revocation) is
//! announced to the gateways after it is committed ([`crate::revocation`]), and the
//! answer names the principal in [`PRINCIPAL_CHANGED_HEADER`] for the gateway that
//! forwarded it.
//!
//! Tokens are `sy_` + base64url of random bytes, stored as SHA-256: a token is a
//! high-entropy secret, so a fast unsalted hash is enough (no dictionary to attack)
//! and lets the lookup be one indexed equality.

use super::errors::not_found;
use crate::revocation;
use crate::state::AppState;
use crate::store::principals::{self, PrincipalRow, TokenRow};
use crate::store::{StoreError, stored_id};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use switchyard_contracts::auth::PRINCIPAL_CHANGED_HEADER;
use switchyard_contracts::principals::{
    CreatePrincipalRequest, CreatedPrincipal, CreatedToken, PrincipalList, PrincipalView,
    ResolveTokenRequest, ResolveTokenResponse, RevokedTokens, SetPrincipalAppsRequest,
    SetPrincipalRoleRequest, TokenView,
};
use switchyard_contracts::{AppId, PrincipalId, TokenId};
use switchyard_platform::http::{ApiError, Json};
use switchyard_platform::routes::RouteTable;
use uuid::Uuid;

const MAX_NAME_CHARS: usize = 200;
const MAX_APPS: usize = 1000;
const TOKEN_PREFIX: &str = "sy_";

pub(super) fn router() -> RouteTable<AppState> {
    RouteTable::new()
        .post("/api/principals", create)
        .get("/api/principals", list)
        .get("/api/principals/{id}", show)
        .delete("/api/principals/{id}", remove)
        .put("/api/principals/{id}/role", set_role)
        .put("/api/principals/{id}/apps", set_apps)
        .post("/api/principals/{id}/tokens", new_token)
        .delete("/api/principals/{id}/tokens", revoke_all)
        .delete("/api/tokens/{id}", revoke)
        .post("/internal/auth/resolve", resolve)
}

fn view(row: PrincipalRow, tokens: Option<Vec<TokenView>>) -> Result<PrincipalView, StoreError> {
    Ok(PrincipalView {
        id: PrincipalId::from_uuid(row.id),
        name: row.name,
        role: row.role,
        apps: stored_apps(row.apps)?,
        created_at: row.created_at,
        tokens,
    })
}

fn stored_apps(apps: Vec<String>) -> Result<Vec<AppId>, StoreError> {
    apps.into_iter()
        .map(|app| stored_id("app id of a membership", app))
        .collect()
}

fn token_view(t: &TokenRow) -> TokenView {
    TokenView {
        id: TokenId::from_uuid(t.id),
        created_at: t.created_at,
        revoked_at: t.revoked_at,
    }
}

/// Tells the gateways that `id`'s access changed, then answers `response` naming the
/// principal for the gateway that forwarded the request.
async fn changed(state: &AppState, id: PrincipalId, response: impl IntoResponse) -> Response {
    revocation::announce(&state.js.client(), id, state.nats_timeout).await;
    let mut response = response.into_response();
    // A UUID is always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response
            .headers_mut()
            .insert(PRINCIPAL_CHANGED_HEADER, value);
    }
    response
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

fn check_apps(apps: &[AppId]) -> Result<(), ApiError> {
    if apps.len() > MAX_APPS {
        return Err(invalid(format!(
            "`apps` must list at most {MAX_APPS} app ids"
        )));
    }
    Ok(())
}

/// A membership needs an existing app (the foreign key holds it too): otherwise its
/// holder could register the app, with defaults of their choosing.
async fn ensure_apps_exist(state: &AppState, apps: &[AppId]) -> Result<(), ApiError> {
    let missing = crate::store::apps::missing(&state.pool, apps).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing
        .iter()
        .take(10)
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(not_found(
        "app_not_found",
        format!("no app {names} is registered; a membership needs an existing app"),
    ))
}

/// The `{id}` of a principal or token route.
fn path_id<T: std::str::FromStr>(path: Result<Path<String>, PathRejection>) -> Result<T, ApiError> {
    path.ok()
        .and_then(|Path(raw)| raw.parse().ok())
        .ok_or_else(|| invalid("the id must be a UUID"))
}

fn principal_id(path: Result<Path<String>, PathRejection>) -> Result<PrincipalId, ApiError> {
    path_id(path)
}

fn principal_not_found(id: PrincipalId) -> ApiError {
    not_found("principal_not_found", format!("no principal {id}"))
}

async fn create(
    State(state): State<AppState>,
    Json(request): Json<CreatePrincipalRequest>,
) -> Result<(StatusCode, Json<CreatedPrincipal>), ApiError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(invalid(format!(
            "`name` must be 1-{MAX_NAME_CHARS} characters without NUL"
        )));
    }
    check_apps(&request.apps)?;
    ensure_apps_exist(&state, &request.apps).await?;
    let role = request.role;
    let (token, hash) = new_secret();
    let (row, token_id) = principals::create(&state.pool, name, role, &request.apps, &hash).await?;
    tracing::info!(principal = %row.id, role = role.as_str(), "principal created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedPrincipal {
            principal: view(row, None)?,
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
            let own = tokens
                .iter()
                .filter(|t| t.principal_id == id)
                .map(token_view)
                .collect();
            view(row, Some(own))
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(PrincipalList { principals }))
}

async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PrincipalView>, ApiError> {
    let id = principal_id(path)?;
    let row = principals::get(&state.pool, id)
        .await?
        .ok_or_else(|| principal_not_found(id))?;
    let tokens = principals::tokens_of(&state.pool, id).await?;
    Ok(Json(view(
        row,
        Some(tokens.iter().map(token_view).collect()),
    )?))
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

async fn set_role(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Json(request): Json<SetPrincipalRoleRequest>,
) -> Result<Response, ApiError> {
    let id = principal_id(path)?;
    if !principals::set_role(&state.pool, id, request.role).await? {
        return Err(principal_not_found(id));
    }
    tracing::info!(principal = %id, role = request.role.as_str(), "principal role changed");
    let row = principals::get(&state.pool, id)
        .await?
        .ok_or_else(|| principal_not_found(id))?;
    Ok(changed(&state, id, Json(view(row, None)?)).await)
}

async fn set_apps(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Json(request): Json<SetPrincipalAppsRequest>,
) -> Result<Response, ApiError> {
    let id = principal_id(path)?;
    check_apps(&request.apps)?;
    // The principal in the path is judged before the apps in the body.
    if principals::get(&state.pool, id).await?.is_none() {
        return Err(principal_not_found(id));
    }
    ensure_apps_exist(&state, &request.apps).await?;
    if !principals::set_apps(&state.pool, id, &request.apps).await? {
        return Err(principal_not_found(id));
    }
    tracing::info!(principal = %id, apps = request.apps.len(), "principal apps changed");
    let row = principals::get(&state.pool, id)
        .await?
        .ok_or_else(|| principal_not_found(id))?;
    Ok(changed(&state, id, Json(view(row, None)?)).await)
}

async fn remove(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = principal_id(path)?;
    if !principals::delete(&state.pool, id).await? {
        return Err(principal_not_found(id));
    }
    tracing::info!(principal = %id, "principal deleted");
    Ok(changed(&state, id, StatusCode::NO_CONTENT).await)
}

async fn revoke_all(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = principal_id(path)?;
    let revoked = principals::revoke_all(&state.pool, id)
        .await?
        .ok_or_else(|| principal_not_found(id))?;
    tracing::info!(principal = %id, revoked, "principal's tokens revoked");
    Ok(changed(&state, id, Json(RevokedTokens { revoked })).await)
}

async fn revoke(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id: TokenId = path_id(path)?;
    let principal = principals::revoke(&state.pool, id)
        .await?
        .ok_or_else(|| not_found("token_not_found", format!("no token {id}")))?;
    tracing::info!(token = %id, principal = %principal, "token revoked");
    Ok(changed(&state, principal, StatusCode::NO_CONTENT).await)
}

/// The gateway's question "whose token is this?". Not under `/api/`, so the gateway
/// never forwards a client to it.
async fn resolve(
    State(state): State<AppState>,
    Json(request): Json<ResolveTokenRequest>,
) -> Result<Json<ResolveTokenResponse>, ApiError> {
    if !request.token.starts_with(TOKEN_PREFIX) {
        return Err(ApiError::unauthorized("unknown token"));
    }
    let resolved = principals::resolve(&state.pool, &hash_token(&request.token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    Ok(Json(ResolveTokenResponse {
        principal_id: PrincipalId::from_uuid(resolved.principal_id),
        role: resolved.role,
        apps: stored_apps(resolved.apps)?,
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
