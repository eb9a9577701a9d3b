//! Authentication: turns the request's bearer token into a [`Principal`].
//!
//! Today there is one credential, the configured admin token (or none at all in
//! anonymous mode). The [`Authenticator`] trait is the seam for RBAC: an implementation
//! that looks hashed tokens up through the control-plane yields principals with other
//! roles, and nothing else in the gateway changes — handlers read the `Principal`
//! request extension, and the proxy forwards its id as `x-switchyard-principal`.
//!
//! The token is never logged; the comparison takes the same time whatever the given
//! token's content.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use switchyard_platform::http::ApiError;

use crate::GatewayConfig;

/// Header carrying the authenticated principal's id to the control-plane. Whatever a
/// client sends under this name is dropped, so the control-plane can trust it.
pub const PRINCIPAL_HEADER: &str = "x-switchyard-principal";

/// What a principal may do. Only `Admin` exists until RBAC lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
}

/// The authenticated caller, stored as a request extension by [`require_principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    /// The credential store could not be asked (future RBAC backends).
    #[error("the credential store is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Decides who a bearer token belongs to. `token` is `None` when the request carries
/// no `Authorization` header.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

/// The configured admin token.
pub struct AdminToken {
    token: SecretString,
}

impl AdminToken {
    pub const PRINCIPAL_ID: &'static str = "admin";

    pub fn new(token: SecretString) -> Self {
        Self { token }
    }
}

impl Authenticator for AdminToken {
    fn authenticate<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        let result = match token {
            None => Err(AuthError::Missing),
            Some(given)
                if constant_time_eq(self.token.expose_secret().as_bytes(), given.as_bytes()) =>
            {
                Ok(Principal {
                    id: Self::PRINCIPAL_ID.to_owned(),
                    role: Role::Admin,
                })
            }
            Some(_) => Err(AuthError::Invalid),
        };
        Box::pin(std::future::ready(result))
    }
}

/// `allow_anonymous = true` without a token: everyone is the anonymous admin.
pub struct Anonymous;

impl Anonymous {
    pub const PRINCIPAL_ID: &'static str = "anonymous";
}

impl Authenticator for Anonymous {
    fn authenticate<'a>(
        &'a self,
        _token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(std::future::ready(Ok(Principal {
            id: Self::PRINCIPAL_ID.to_owned(),
            role: Role::Admin,
        })))
    }
}

/// The authenticator the configuration asks for. [`crate::Config::validate`] has
/// already refused a missing token without `allow_anonymous`.
pub fn from_config(config: &GatewayConfig) -> Arc<dyn Authenticator> {
    match &config.admin_token {
        Some(token) => Arc::new(AdminToken::new(token.clone())),
        None => Arc::new(Anonymous),
    }
}

/// Equality of two byte strings in time that depends only on `expected`'s length, so a
/// caller probing tokens learns nothing from response times.
pub fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = expected.len() ^ given.len();
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(byte ^ other);
    }
    // Keep the optimizer from turning the loop into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header; `Ok(None)` without one.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Invalid);
    }
    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Invalid);
    }
    Ok(Some(token))
}

/// Middleware: authenticates the request and stores its [`Principal`], or answers 401
/// `unauthorized` with `WWW-Authenticate: Bearer`.
pub async fn require_principal(
    State(authenticator): State<Arc<dyn Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let outcome = match bearer_token(request.headers()) {
        Ok(token) => authenticator.authenticate(token).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(AuthError::Unavailable(cause)) => {
            ApiError::unavailable("authentication is unavailable; retry later", cause)
                .into_response()
        }
        Err(e) => {
            tracing::debug!(reason = %e, path = %request.uri().path(), "request not authenticated");
            let (message, challenge) = match e {
                AuthError::Missing => (
                    "this endpoint needs `Authorization: Bearer <token>`",
                    HeaderValue::from_static("Bearer"),
                ),
                _ => (
                    "the bearer token is not valid",
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ),
            };
            let mut response = ApiError::unauthorized(message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(constant_time_eq(b"", b""));
        // A prefix padded with NULs must not pass for the shorter token.
        assert!(!constant_time_eq(b"ab", b"ab\0"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token(&headers(&[])).unwrap(), None);
        assert_eq!(
            bearer_token(&headers(&["Bearer abc"])).unwrap(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(&["bearer  abc "])).unwrap(),
            Some("abc")
        );
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            assert!(bearer_token(&headers(&[bad])).is_err(), "{bad:?}");
        }
        assert!(bearer_token(&headers(&["Bearer a", "Bearer b"])).is_err());
    }

    #[tokio::test]
    async fn the_admin_token_yields_the_admin_principal() {
        let auth = AdminToken::new(SecretString::from("tok"));
        let principal = auth.authenticate(Some("tok")).await.unwrap();
        assert_eq!(principal.id, "admin");
        assert_eq!(principal.role, Role::Admin);
        assert!(matches!(
            auth.authenticate(Some("tak")).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Missing)
        ));
        let principal = Anonymous.authenticate(None).await.unwrap();
        assert_eq!(principal.id, "anonymous");
    }
}
