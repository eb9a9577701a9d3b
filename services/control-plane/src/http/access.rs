//! Access control at the HTTP edge: the middleware in front of the whole API that
//! authenticates the caller (the shared internal token), reads the principal the
//! gateway forwarded into an [`Actor`], hides runs the caller may not see and keeps
//! each role to what it may do (see [`crate::actor`]); and the extractor handlers read
//! the actor with.
//!
//! The gateway authenticates bearer tokens and forwards the principal in the
//! `x-switchyard-principal`, `x-switchyard-role` and `x-switchyard-apps` headers,
//! after dropping whatever a client sent under those names. The control-plane trusts
//! them because it serves only callers that send the shared internal token
//! (`control_plane.internal_token`, which only gateways hold; see
//! `docs/architecture.md`, "Access control"). A request with the token but without a
//! role header comes from a holder of that secret and acts as admin.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use switchyard_contracts::RunId;
use switchyard_contracts::auth::{APPS_HEADER, PRINCIPAL_HEADER, ROLE_HEADER, Role};
use switchyard_platform::http::{ApiError, secret_matches};

use super::errors::run_not_found;
use crate::actor::Actor;
use crate::state::AppState;
use crate::store;

/// Reads the gateway's headers. `None` when a role header is present but the
/// headers are unusable (an unknown role, no principal, an app id that breaks its
/// rule): the gateway never sends that, so the request is refused.
fn actor_from_headers(headers: &HeaderMap) -> Option<Actor> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(role) = headers.get(ROLE_HEADER) else {
        return Some(Actor::internal());
    };
    let role = Role::parse(role.to_str().ok()?)?;
    let id = text(PRINCIPAL_HEADER)
        .filter(|id| !id.is_empty())?
        .to_owned();
    let apps = text(APPS_HEADER)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.parse().ok())
        .collect::<Option<_>>()?;
    Some(Actor { id, role, apps })
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    /// [`enforce`] has already refused requests with unusable headers and stored the
    /// actor; the fallback only serves routers built without it (unit tests).
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .or_else(|| actor_from_headers(&parts.headers))
            .unwrap_or_else(Actor::internal))
    }
}

pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The run id of a `/api/runs/{id}` or `/api/runs/{id}/…` path (not `/api/runs/start`).
fn run_of_path(path: &str) -> Option<RunId> {
    let rest = path.strip_prefix("/api/runs/")?;
    let id = percent_decode(rest.split('/').next()?)?;
    RunId::parse_str(&id).ok()
}

/// The segment as axum's `Path` extractor decodes it, so `%2D` cannot smuggle a run id
/// past the check.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the request carries the configured internal token (compared in constant
/// time). Without a configured token nobody does: the service refuses to start
/// without one, and a router built otherwise must not serve anyone.
fn internal_token_matches(headers: &HeaderMap, expected: Option<&secrecy::SecretString>) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let mut given = headers
        .get_all(switchyard_contracts::auth::INTERNAL_TOKEN_HEADER)
        .iter();
    match (given.next(), given.next()) {
        (Some(value), None) => secret_matches(value.as_bytes(), expected),
        _ => false,
    }
}

/// Middleware in front of the whole API: identifies the caller, hides runs they may
/// not see (404 whatever the sub-resource — stream lookup, stop, human-loop), keeps
/// viewers read-only and principal management to admins. Per-handler checks add what
/// depends on the body (the app a run starts in, listing filters).
pub(crate) async fn enforce(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/healthz" || path == "/readyz" {
        return next.run(request).await;
    }
    if !internal_token_matches(request.headers(), state.settings.internal_token.as_ref()) {
        return ApiError::unauthorized("only a gateway may call the control-plane").into_response();
    }
    let Some(actor) = actor_from_headers(request.headers()) else {
        return ApiError::unauthorized("the principal headers are not valid").into_response();
    };
    if !path.starts_with("/api/") {
        // Health routes and the gateway's internal endpoints.
        return next.run(request).await;
    }
    if let Some(run_id) = run_of_path(&path)
        && !actor.sees_everything()
    {
        match store::runs::owner(&state.pool, run_id).await {
            Ok(Some((app_id, created_by))) => {
                if !actor.may_see_run(app_id.as_ref(), created_by.as_deref()) {
                    return run_hidden(run_id);
                }
            }
            // Let the handler answer its usual 404.
            Ok(None) => {}
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    let management = path == "/api/principals"
        || path.starts_with("/api/principals/")
        || path.starts_with("/api/tokens/");
    if management && actor.role != Role::Admin {
        return forbidden("only admins manage principals and tokens").into_response();
    }
    let read_only = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !read_only && !actor.may_write() {
        return forbidden("viewers have read-only access").into_response();
    }
    request.extensions_mut().insert(actor);
    next.run(request).await
}

fn run_hidden(run_id: RunId) -> Response {
    tracing::debug!(run_id = %run_id, "run hidden from the caller");
    run_not_found(run_id).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use switchyard_contracts::AppId;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn app(id: &str) -> AppId {
        id.parse().unwrap()
    }

    #[test]
    fn headers_become_an_actor() {
        assert_eq!(actor_from_headers(&headers(&[])), Some(Actor::internal()));
        let dev = actor_from_headers(&headers(&[
            (PRINCIPAL_HEADER, "p1"),
            (ROLE_HEADER, "developer"),
            (APPS_HEADER, "a, b,,"),
        ]))
        .unwrap();
        assert_eq!(dev.apps, ["a", "b"]);
        assert!(dev.may_see_run(Some(&app("a")), None));
        assert!(!dev.may_see_run(Some(&app("c")), Some("p1")));
        assert!(dev.may_see_run(None, Some("p1")));
        assert!(!dev.may_see_run(None, Some("p2")));
        assert!(!dev.may_see_run(None, None));
        assert!(dev.may_write());
        // A role header the gateway would never send is refused, not defaulted.
        assert_eq!(
            actor_from_headers(&headers(&[(PRINCIPAL_HEADER, "p"), (ROLE_HEADER, "root")])),
            None
        );
        assert_eq!(
            actor_from_headers(&headers(&[(ROLE_HEADER, "viewer")])),
            None
        );
        let op = actor_from_headers(&headers(&[
            (PRINCIPAL_HEADER, "o"),
            (ROLE_HEADER, "operator"),
        ]))
        .unwrap();
        assert!(op.may_see_run(Some(&app("z")), None) && op.app_scope().is_none());
        // The gateway never sends an app id that breaks the rule.
        assert_eq!(
            actor_from_headers(&headers(&[
                (PRINCIPAL_HEADER, "p"),
                (ROLE_HEADER, "viewer"),
                (APPS_HEADER, "a,b c"),
            ])),
            None
        );
    }

    #[test]
    fn run_paths_are_recognised() {
        let id = RunId::now_v7();
        assert_eq!(run_of_path(&format!("/api/runs/{id}")), Some(id));
        assert_eq!(run_of_path(&format!("/api/runs/{id}/stop")), Some(id));
        assert_eq!(run_of_path("/api/runs/start"), None);
        let encoded = id.to_string().replace('-', "%2D");
        assert_eq!(run_of_path(&format!("/api/runs/{encoded}/stop")), Some(id));
        assert_eq!(run_of_path("/api/runs"), None);
    }
}
