//! Cross-origin access to the API, off unless `gateway.cors_allowed_origins` lists
//! origins.
//!
//! Without origins the gateway sends no CORS header at all, so a browser keeps every
//! other site's page from reading its answers (the portal is served by the gateway
//! itself and needs none). A listed origin gets `Access-Control-Allow-Origin: <origin>`
//! (with `Vary: Origin`) on its requests, and its preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) are answered before authentication with the
//! methods and headers the API uses. Credentials are never allowed: cross-origin pages
//! authenticate with bearer tokens, and the session cookie (`SameSite=Strict`, no
//! `Access-Control-Allow-Credentials`) stays the portal's own. A preflight from an
//! origin that is not listed gets no `Access-Control-Allow-Origin`, so the browser
//! refuses the request it was asking about.

use axum::http::{HeaderName, HeaderValue, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a cross-origin page may send.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("last-event-id"),
];

/// Response headers a cross-origin page may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("idempotent-replayed"),
    HeaderName::from_static("x-request-id"),
];

/// The layer for `origins` (already checked by [`crate::config::Config::validate`]); `None`
/// when empty.
pub(super) fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::HEAD,
            ])
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origins_no_layer() {
        assert!(layer(&[]).is_none());
        assert!(layer(&["https://a.example".to_owned()]).is_some());
    }
}
