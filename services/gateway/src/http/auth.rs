//! Authentication of every `/api/*` request but the session endpoints: the bearer
//! token, or without one the browser's session cookie ([`crate::session`]), turned
//! into the [`Principal`] request extension, with the
//! [`AuthEpoch`](crate::revocation::AuthEpoch) the check started at (see
//! [`crate::revocation`]).
//!
//! * `Authorization: Bearer <token>` goes to the configured
//!   [`Authenticator`](crate::auth::Authenticator) ([`crate::tokens`]). Missing or
//!   unknown: 401 `unauthorized` with `WWW-Authenticate: Bearer`.
//! * A session cookie (and no `Authorization` header) is authenticated by the token
//!   sealed inside it, through the same authenticator and cache as a bearer token: a
//!   revoked token (or a rotated admin token) ends the session at once, as it ends the
//!   token's streams. When the principal's role or apps differ from the ones the
//!   session was opened for, the session ends too: the user signs in again.
//! * A request the cookie authenticates with a method other than GET / HEAD / OPTIONS
//!   must carry `X-Switchyard-CSRF: <the session's CSRF token>`, else 403
//!   `csrf_rejected`: the cookie alone never authorises a change. (SameSite=Strict
//!   already keeps other sites' requests from carrying it; the header check also holds
//!   where SameSite does not, e.g. a sibling subdomain.)
//! * A cookie that is not valid any more (expired, tampered with, token revoked,
//!   principal changed) is answered 401 `unauthorized` with a `Set-Cookie` that
//!   removes it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::ExposeSecret;
use switchyard_platform::http::ApiError;

use super::state::AppState;
use crate::auth::{AuthError, Principal};
use crate::session::{CSRF_HEADER, Session, SessionError, Sessions, cookie_value, has_cookie};

/// The token of an `Authorization: Bearer <token>` header; `Ok(None)` without one,
/// `Invalid` with anything else there (another scheme, an empty token, two headers).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    match switchyard_platform::http::bearer_token(headers) {
        Some(token) => Ok(Some(token)),
        None if headers.contains_key(header::AUTHORIZATION) => Err(AuthError::Invalid),
        None => Ok(None),
    }
}

/// Middleware: authenticates the request and stores its [`Principal`] and the
/// [`AuthEpoch`](crate::revocation::AuthEpoch) it started at, or answers 401
/// `unauthorized` with `WWW-Authenticate: Bearer`.
pub(crate) async fn require_principal(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let epoch = state.revocations.epoch();
    let outcome = match bearer_token(request.headers()) {
        // No bearer token: a browser's session cookie, if it sent one.
        Ok(None) if has_cookie(request.headers()) => {
            match authenticate_cookie(&state, request.method(), request.headers()).await {
                Ok((principal, _)) => Ok(principal),
                Err(refusal) => return refusal.into_response(&state.sessions),
            }
        }
        Ok(token) => state.authenticator.authenticate(token).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(epoch);
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

/// Why a cookie did not authenticate a request.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// 401, and the cookie is removed.
    SignedOut(&'static str),
    /// 403 `csrf_rejected`.
    Csrf,
    /// 503: the credential store could not be asked.
    Unavailable(anyhow::Error),
}

impl Refusal {
    pub(crate) fn into_response(self, sessions: &Sessions) -> Response {
        match self {
            Refusal::SignedOut(message) => {
                let mut response = ApiError::unauthorized(message).into_response();
                let headers = response.headers_mut();
                headers.insert(header::SET_COOKIE, sessions.removal_cookie());
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Refusal::Csrf => ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                format!(
                    "a request signed in by the session cookie must send the session's CSRF \
                     token (from GET /api/session) in the `{CSRF_HEADER}` header"
                ),
            )
            .into_response(),
            Refusal::Unavailable(cause) => {
                ApiError::unavailable("authentication is unavailable; retry later", cause)
                    .into_response()
            }
        }
    }
}

/// Authenticates a request by its session cookie (the caller checked there is one):
/// the sealed token must still authenticate, as the same principal, and a
/// state-changing `method` must carry the CSRF header.
pub(crate) async fn authenticate_cookie(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(Principal, Session), Refusal> {
    const ENDED: &str = "your session has ended; sign in again";
    let value = cookie_value(headers)
        .ok()
        .flatten()
        .ok_or(Refusal::SignedOut(ENDED))?;
    let session = state
        .sessions
        .open(&value, Utc::now())
        .map_err(|e| match e {
            SessionError::Expired => Refusal::SignedOut("your session has expired; sign in again"),
            SessionError::Invalid => Refusal::SignedOut(ENDED),
        })?;
    let principal = match state
        .authenticator
        .authenticate(Some(session.token().expose_secret()))
        .await
    {
        Ok(principal) => principal,
        Err(AuthError::Unavailable(cause)) => return Err(Refusal::Unavailable(cause)),
        Err(_) => {
            return Err(Refusal::SignedOut(
                "the token this session was opened with is no longer valid; sign in again",
            ));
        }
    };
    if !session.is_for(&principal) {
        return Err(Refusal::SignedOut(
            "your access changed since you signed in; sign in again",
        ));
    }
    if !is_safe(method) && !session.csrf_matches(headers) {
        return Err(Refusal::Csrf);
    }
    Ok((principal, session))
}

/// Methods that change nothing, so need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
