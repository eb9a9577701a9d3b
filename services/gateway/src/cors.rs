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
use reqwest::Url;
use serde::{Deserialize, Deserializer};
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

/// The layer for `origins` (already checked by [`check_origin`]); `None` when empty.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
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

/// An origin as browsers send it in `Origin`: `http(s)://host[:port]`, lower case, no
/// path, no trailing slash. Anything else could never match, so it is refused at
/// start-up instead of silently allowing nothing.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" || origin == "null" {
        return Err(format!(
            "`{origin}` is not allowed: list each origin (https://host[:port])"
        ));
    }
    let url = Url::parse(origin).map_err(|e| format!("`{origin}` is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{origin}` must be an http:// or https:// origin"));
    }
    let canonical = url.origin().ascii_serialization();
    if canonical != origin {
        return Err(format!(
            "`{origin}` is not an origin as browsers send it; write `{canonical}` (scheme, \
             host and port only, no path or trailing slash)"
        ));
    }
    Ok(())
}

/// `cors_allowed_origins` from a list (TOML) or one comma-separated string (the
/// environment variable `SWITCHYARD_GATEWAY__CORS_ALLOWED_ORIGINS`).
pub fn deserialize_origins<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Origins {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Origins::deserialize(deserializer)? {
        Origins::List(list) => list,
        Origins::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_origins_as_browsers_send_them_are_accepted() {
        for good in [
            "https://tools.example.com",
            "http://127.0.0.1:5173",
            "http://localhost:3000",
        ] {
            check_origin(good).unwrap();
        }
        for bad in [
            "*",
            "null",
            "https://tools.example.com/",
            "https://tools.example.com/path",
            "https://Tools.example.com",
            "https://tools.example.com:443",
            "ftp://tools.example.com",
            "tools.example.com",
            "",
        ] {
            assert!(check_origin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_origins_no_layer() {
        assert!(layer(&[]).is_none());
        assert!(layer(&["https://a.example".to_owned()]).is_some());
    }
}
