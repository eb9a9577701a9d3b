//! Forwarding `/api/*` to the control-plane.
//!
//! Method, path, query and body go through unchanged; so do end-to-end headers, except
//! `Authorization` and `Cookie` (the control-plane trusts the gateway, not client
//! tokens; the session cookie holds one) and every client-sent `x-switchyard-*` header
//! (the CSRF header among them): the authenticated principal replaces them.
//! Hop-by-hop headers are dropped both ways, and `Accept-Encoding` is not forwarded so
//! the body we pass back is never in an encoding we did not negotiate.
//!
//! An answer naming a principal in `x-switchyard-principal-changed` (a management
//! request changed its access) makes this gateway forget that principal before it
//! answers ([`Revocations::forget`]); like every internal header it is not passed on.
//!
//! Bodies are buffered (at most `max_body_bytes` in; the control-plane's answers are
//! small JSON documents) so that a failing upstream yields a clean error response
//! instead of a truncated one. When the control-plane is unreachable or slower than
//! `upstream_timeout_ms`, clients get **503** `unavailable` — not 502 — because it is a
//! condition to retry after, the same answer every other service gives when a
//! dependency is down. reqwest's error text only goes to the log.
//!
//! A `202` to `POST /api/runs/start` also grants the principal reading the new run for
//! a while (see [`crate::grants`]), so the stream opened right after it skips a lookup.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use switchyard_platform::http::ApiError;

use switchyard_contracts::RunId;
use switchyard_contracts::auth::PRINCIPAL_CHANGED_HEADER;

use super::state::AppState;
use crate::auth::{INTERNAL_HEADER_PREFIX, Principal, principal_headers};
use crate::revocation::{AuthEpoch, Revocations};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers never forwarded besides the hop-by-hop ones.
const REQUEST_DROPPED: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "accept-encoding",
];

/// `*` /api/* → the same path on the control-plane.
pub(super) async fn forward(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(epoch): Extension<AuthEpoch>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(switchyard_platform::http::body_rejection)?;
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let url = state
        .control_plane
        .api_url(&path_and_query)
        .ok_or_else(|| ApiError::not_found("no such endpoint"))?;

    let mut upstream_headers = forwardable(&headers, REQUEST_DROPPED);
    upstream_headers.extend(principal_headers(&principal));
    let upstream = state
        .control_plane
        .http()
        .request(method.clone(), url)
        .headers(upstream_headers)
        .body(body)
        .send()
        .await
        .map_err(control_plane_unavailable)?;
    let status = upstream.status();
    if let Some(changed) = upstream
        .headers()
        .get(PRINCIPAL_CHANGED_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        state.revocations.forget(changed);
    }
    let response_headers = forwardable(upstream.headers(), &["content-length"]);
    let bytes = upstream.bytes().await.map_err(control_plane_unavailable)?;
    tracing::debug!(%method, path = uri.path(), %status, "forwarded to the control-plane");
    if status == StatusCode::ACCEPTED && method == Method::POST && uri.path() == START_PATH {
        note_started(&state.revocations, epoch, &principal, &bytes);
    }

    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// Where runs are started (the one answer that grants reading a run, see `grants`).
const START_PATH: &str = "/api/runs/start";

/// The part of a start's answer the gateway reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    run_id: RunId,
}

/// The principal may stream the run it just started without another lookup.
fn note_started(revocations: &Revocations, epoch: AuthEpoch, principal: &Principal, body: &[u8]) {
    match serde_json::from_slice::<Started>(body) {
        Ok(started) => revocations.grant_read(epoch, &principal.id, started.run_id),
        Err(error) => tracing::debug!(%error, "a start answer without a run id"),
    }
}

fn control_plane_unavailable(e: reqwest::Error) -> ApiError {
    ApiError::unavailable("the control-plane is unavailable; retry later", e)
}

/// `headers` minus hop-by-hop headers, the ones the `Connection` header names, and
/// `extra`.
fn forwardable(headers: &HeaderMap, extra: &[&str]) -> HeaderMap {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name_str = name.as_str();
        let dropped = HOP_BY_HOP.contains(&name_str)
            || extra.contains(&name_str)
            || name_str.starts_with(INTERNAL_HEADER_PREFIX)
            || named_by_connection.iter().any(|n| n == name_str);
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    #[test]
    fn hop_by_hop_and_private_headers_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer secret"),
            ("cookie", "sy_session=sealed-token"),
            ("x-switchyard-csrf", "abc"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("x-switchyard-principal", "spoofed"),
            ("x-switchyard-role", "admin"),
            ("x-switchyard-apps", "b"),
            ("x-switchyard-anything", "1"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-request-id", "abc"),
        ] {
            headers.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forwardable(&headers, REQUEST_DROPPED);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "accept", "x-request-id"]);
    }
}
