//! Principal and token management bodies (`/api/principals`, `/api/tokens`), the
//! gateway's token resolution (`/internal/auth/resolve`) and the NATS notice that a
//! principal's access changed ([`PrincipalChanged`], on
//! [`crate::subjects::PRINCIPAL_CHANGED`]).

use crate::auth::Role;
use crate::ids::{AppId, PrincipalId, TokenId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /api/principals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePrincipalRequest {
    /// 1-200 characters, for humans; not unique.
    pub name: String,
    pub role: Role,
    /// Apps the principal is a member of (what developers and viewers may see).
    #[serde(default)]
    pub apps: Vec<AppId>,
}

/// `PUT /api/principals/{id}/apps`: replaces the memberships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPrincipalAppsRequest {
    pub apps: Vec<AppId>,
}

/// `PUT /api/principals/{id}/role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPrincipalRoleRequest {
    pub role: Role,
}

/// One of a principal's tokens (never the token or its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: TokenId,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalView {
    pub id: PrincipalId,
    pub name: String,
    pub role: Role,
    pub apps: Vec<AppId>,
    pub created_at: DateTime<Utc>,
    /// Present in listings and `GET /api/principals/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
}

/// `201` of `POST /api/principals`: the principal and its first token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedPrincipal {
    #[serde(flatten)]
    pub principal: PrincipalView,
    pub token_id: TokenId,
    /// The only time the plaintext token is shown.
    pub token: String,
}

/// `201` of `POST /api/principals/{id}/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    pub token_id: TokenId,
    /// The only time the plaintext token is shown.
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalList {
    pub principals: Vec<PrincipalView>,
}

/// `200` of `DELETE /api/principals/{id}/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedTokens {
    /// How many tokens were active and are now revoked.
    pub revoked: u64,
}

/// `POST /internal/auth/resolve` (gateway → control-plane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveTokenRequest {
    pub token: String,
}

/// Whose an active token is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolveTokenResponse {
    pub principal_id: PrincipalId,
    pub role: Role,
    pub apps: Vec<AppId>,
}

/// Core NATS notice, published by the control-plane after a change to a principal's
/// access has been committed (token revoked, principal deleted, role or apps changed).
/// Gateways forget what they cached about the principal and end its open streams.
/// Carries the principal id only: never a token or a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalChanged {
    pub principal_id: PrincipalId,
}
