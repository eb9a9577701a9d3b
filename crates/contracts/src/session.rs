//! Browser sessions: `POST /api/session` exchanges an API token for a session cookie,
//! `GET /api/session` says who the caller is, `DELETE /api/session` signs out.

use crate::auth::Role;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Body of `POST /api/session`: the API token to sign in with (the admin token or an
/// issued `sy_…` token). It is sealed into the cookie and never sent back.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInRequest {
    pub token: String,
}

// The token is a secret: never print it.
impl std::fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRequest")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// How the request that asked was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionAuth {
    /// The `sy_session` cookie.
    Cookie,
    /// An `Authorization: Bearer` header.
    Bearer,
    /// Nothing: the gateway serves everyone as the anonymous admin
    /// (`gateway.allow_anonymous` without an admin token).
    Anonymous,
}

/// Who a session (or a bearer token) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionPrincipal {
    pub id: String,
    pub role: Role,
    /// Apps the principal is a member of (empty for admins and operators, who see all).
    pub apps: Vec<crate::AppId>,
}

/// Body of `POST /api/session` and `GET /api/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub principal: SessionPrincipal,
    pub auth: SessionAuth,
    /// Send it back as `X-Switchyard-CSRF` on every state-changing request the cookie
    /// authenticates; `null` unless `auth` is `cookie`.
    #[serde(default)]
    pub csrf_token: Option<String>,
    /// When the cookie stops working; `null` unless `auth` is `cookie`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output() {
        let request = SignInRequest {
            token: "sy_very-secret".to_owned(),
        };
        assert!(!format!("{request:?}").contains("very-secret"));
    }
}
