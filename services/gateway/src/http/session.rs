//! `/api/session`: signing in to the portal with an API token, asking who one is, and
//! signing out. The cookie is [`crate::session`]'s; [`super::auth`] authenticates the
//! other requests by it.
//!
//! * `POST /api/session {"token"}` checks the token like a bearer token and answers
//!   with the principal, a CSRF token, the expiry and the `Set-Cookie` of a new
//!   session. It needs `Content-Type: application/json`, which a cross-site form
//!   cannot send and a cross-site script cannot send without a preflight the gateway
//!   refuses.
//! * `GET /api/session` says who the caller is (cookie, bearer or anonymous) and, for
//!   a cookie, returns its CSRF token, so a reloaded page needs no second sign-in.
//! * `DELETE /api/session` (CSRF header required while the session is valid) clears
//!   the cookie.
//!
//! Every answer carrying a session is `Cache-Control: no-store`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use switchyard_contracts::session::{SessionAuth, SessionPrincipal, SessionView, SignInRequest};
use switchyard_platform::http::{ApiError, Json};

use super::auth::{Refusal, authenticate_cookie, bearer_token};
use super::state::AppState;
use crate::auth::{AuthError, Principal};
use crate::session::{cookie_value, has_cookie};

fn view(
    principal: Principal,
    auth: SessionAuth,
    csrf_token: Option<String>,
    expires_at: Option<DateTime<Utc>>,
) -> SessionView {
    SessionView {
        principal: SessionPrincipal {
            id: principal.id,
            role: principal.role,
            apps: principal.apps,
        },
        auth,
        csrf_token,
        expires_at,
    }
}

/// Answers that carry a session must not be stored by any cache.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /api/session {"token"}`: sign in.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    Json(request): Json<SignInRequest>,
) -> Response {
    let token = request.token.trim();
    if token.is_empty() {
        return ApiError::bad_request("invalid_request", "`token` must not be empty")
            .into_response();
    }
    let principal = match state.authenticator.authenticate(Some(token)).await {
        Ok(principal) => principal,
        Err(AuthError::Unavailable(cause)) => {
            return ApiError::unavailable("authentication is unavailable; retry later", cause)
                .into_response();
        }
        Err(_) => {
            tracing::debug!("sign-in refused: the token is not valid");
            return ApiError::unauthorized("the token is not valid").into_response();
        }
    };
    let (value, csrf, expires_at) = match state.sessions.seal(token, &principal, Utc::now()) {
        Ok(sealed) => sealed,
        Err(cause) => return ApiError::internal(cause).into_response(),
    };
    tracing::info!(principal = %principal.id, "signed in: session opened");
    let body = view(principal, SessionAuth::Cookie, Some(csrf), Some(expires_at));
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.sessions.set_cookie(value));
    no_store(response)
}

/// `GET /api/session`: who is asking, by bearer token, session cookie, or neither.
pub(crate) async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = bearer_token(&headers);
    let answer = match bearer {
        Ok(Some(token)) => match state.authenticator.authenticate(Some(token)).await {
            Ok(principal) => Ok(view(principal, SessionAuth::Bearer, None, None)),
            Err(e) => Err(e),
        },
        Ok(None) if has_cookie(&headers) => {
            return match authenticate_cookie(&state, &Method::GET, &headers).await {
                Ok((principal, session)) => no_store(
                    Json(view(
                        principal,
                        SessionAuth::Cookie,
                        Some(session.csrf_token().to_owned()),
                        Some(session.expires_at()),
                    ))
                    .into_response(),
                ),
                Err(refusal) => refusal.into_response(&state.sessions),
            };
        }
        Ok(None) => match state.authenticator.authenticate(None).await {
            Ok(principal) => Ok(view(principal, SessionAuth::Anonymous, None, None)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match answer {
        Ok(body) => no_store(Json(body).into_response()),
        Err(AuthError::Unavailable(cause)) => {
            ApiError::unavailable("authentication is unavailable; retry later", cause)
                .into_response()
        }
        Err(AuthError::Missing) => ApiError::unauthorized("you are not signed in").into_response(),
        Err(AuthError::Invalid) => {
            ApiError::unauthorized("the bearer token is not valid").into_response()
        }
    }
}

/// `DELETE /api/session`: sign out (clears the cookie). A valid session must send its
/// CSRF token; one that is no longer valid is cleared without it.
pub(crate) async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Ok(Some(value)) = cookie_value(&headers)
        && let Ok(session) = state.sessions.open(&value, Utc::now())
        && !session.csrf_matches(&headers)
    {
        return Refusal::Csrf.into_response(&state.sessions);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.sessions.removal_cookie());
    no_store(response)
}
